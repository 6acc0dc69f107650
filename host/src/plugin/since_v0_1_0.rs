//! Host bindings for the frozen WIT `tandem:plugin@0.1.0` (`wit/since_v0.1.0/`), one
//! `bindgen!` per world, so plugins built against 0.1.0 keep loading in a 0.2 host.
//!
//! One module per WIT version (Zed's pattern); the newest is `since_v0_2_0`. The host adapts
//! a 0.1.0 plugin to the newest API: `mapping` calls go one record at a time (0.1.0 has no
//! batches), `record-filter` and `conflict-resolution` are the same in both versions. The
//! `filter` and `conflict-policy` worlds reuse the `types` and `host` bindings of `mapper`,
//! so one `Host` implementation serves all three.

/// The `mapper` world (home of the shared `types` and `host` bindings).
pub mod mapper {
    wasmtime::component::bindgen!({
        path: "../wit/since_v0.1.0",
        world: "tandem:plugin/mapper@0.1.0",
    });
}

/// The `filter` world.
pub mod filter {
    wasmtime::component::bindgen!({
        path: "../wit/since_v0.1.0",
        world: "tandem:plugin/filter@0.1.0",
        with: {
            "tandem:plugin/types@0.1.0": super::mapper::tandem::plugin::types,
            "tandem:plugin/host@0.1.0": super::mapper::tandem::plugin::host,
        },
    });
}

/// The `conflict-policy` world.
pub mod conflict_policy {
    wasmtime::component::bindgen!({
        path: "../wit/since_v0.1.0",
        world: "tandem:plugin/conflict-policy@0.1.0",
        with: {
            "tandem:plugin/types@0.1.0": super::mapper::tandem::plugin::types,
            "tandem:plugin/host@0.1.0": super::mapper::tandem::plugin::host,
        },
    });
}

pub use mapper::tandem::plugin::{host, types};

/// The WIT names a component of each kind must export.
pub const MAPPING_EXPORT: &str = "tandem:plugin/mapping@0.1.0";
/// See [`MAPPING_EXPORT`].
pub const FILTER_EXPORT: &str = "tandem:plugin/record-filter@0.1.0";
/// See [`MAPPING_EXPORT`].
pub const CONFLICT_EXPORT: &str = "tandem:plugin/conflict-resolution@0.1.0";

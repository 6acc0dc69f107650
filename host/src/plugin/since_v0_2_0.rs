//! Host bindings for WIT `tandem:plugin@0.2.0` (`wit/tandem-plugin.wit`, the newest), one
//! `bindgen!` per world. New in 0.2.0: `mapping` takes packed record batches. The `filter`
//! and `conflict-policy` worlds reuse the `types` and `host` bindings of `mapper`.

/// The `mapper` world (home of the shared `types` and `host` bindings).
pub mod mapper {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "tandem:plugin/mapper@0.2.0",
    });
}

/// The `filter` world.
pub mod filter {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "tandem:plugin/filter@0.2.0",
        with: {
            "tandem:plugin/types@0.2.0": super::mapper::tandem::plugin::types,
            "tandem:plugin/host@0.2.0": super::mapper::tandem::plugin::host,
        },
    });
}

/// The `conflict-policy` world.
pub mod conflict_policy {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "tandem:plugin/conflict-policy@0.2.0",
        with: {
            "tandem:plugin/types@0.2.0": super::mapper::tandem::plugin::types,
            "tandem:plugin/host@0.2.0": super::mapper::tandem::plugin::host,
        },
    });
}

pub use mapper::tandem::plugin::{host, types};

/// The WIT names a component of each kind must export.
pub const MAPPING_EXPORT: &str = "tandem:plugin/mapping@0.2.0";
/// See [`MAPPING_EXPORT`].
pub const FILTER_EXPORT: &str = "tandem:plugin/record-filter@0.2.0";
/// See [`MAPPING_EXPORT`].
pub const CONFLICT_EXPORT: &str = "tandem:plugin/conflict-resolution@0.2.0";

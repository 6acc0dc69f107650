//! The wit-bindgen output, kept private: plugin authors use the plain types and traits of
//! the crate root, so a wit-bindgen upgrade never breaks a plugin's source.
//!
//! One `generate!` per world. `pub_export_macro` makes wit-bindgen put only the world's
//! *imports* into this crate's component-type section and move the exports into the section
//! emitted by the export macro, which expands in the plugin's crate. So a plugin that uses
//! `export_mapper!` carries the `mapper` exports only, never the filter or conflict-policy
//! ones (which would make `wasm-component-ld` demand functions the plugin doesn't have).

#![allow(missing_docs, clippy::all, unsafe_code)]

/// The `mapper` world; also the home of the shared `types` and `host` interfaces.
pub mod mapper {
    wit_bindgen::generate!({
        path: "../wit",
        world: "tandem:plugin/mapper@0.2.0",
        pub_export_macro: true,
        export_macro_name: "__tandem_export_mapper_world",
        default_bindings_module: "$crate::__private::wit::mapper",
    });
}

/// The `filter` world, sharing `types` and `host` with [`mapper`].
pub mod filter {
    wit_bindgen::generate!({
        path: "../wit",
        world: "tandem:plugin/filter@0.2.0",
        pub_export_macro: true,
        export_macro_name: "__tandem_export_filter_world",
        default_bindings_module: "$crate::__private::wit::filter",
        with: {
            "tandem:plugin/types@0.2.0": super::mapper::tandem::plugin::types,
            "tandem:plugin/host@0.2.0": super::mapper::tandem::plugin::host,
        },
    });
}

/// The `conflict-policy` world, sharing `types` and `host` with [`mapper`].
pub mod conflict_policy {
    wit_bindgen::generate!({
        path: "../wit",
        world: "tandem:plugin/conflict-policy@0.2.0",
        pub_export_macro: true,
        export_macro_name: "__tandem_export_conflict_policy_world",
        default_bindings_module: "$crate::__private::wit::conflict_policy",
        with: {
            "tandem:plugin/types@0.2.0": super::mapper::tandem::plugin::types,
            "tandem:plugin/host@0.2.0": super::mapper::tandem::plugin::host,
        },
    });
}

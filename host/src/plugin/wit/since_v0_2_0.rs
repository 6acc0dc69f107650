//! WIT `tandem:plugin@0.2.0` (`wit/tandem-plugin.wit`, the newest): its bindings, one
//! `bindgen!` per world, the conversions of host records to and from its types, and its
//! calls. New in 0.2.0: `mapping` takes packed record batches (`super::super::packed`). The
//! `filter` and `conflict-policy` worlds reuse the `types` and `host` bindings of `mapper`.

use semver::Version;
use wasmtime::component::{HasSelf, Linker};

use super::{
    ConflictPolicyBindings, ConflictPolicyPre, FilterBindings, FilterPre, MapperBindings, MapperPre,
};
use crate::plugin::mapper::Direction;
use crate::plugin::packed::{self, PackedAnswer, PackedBatch};
use crate::plugin::runtime::{Live, Loaded};
use crate::plugin::sandbox::PluginState;
use crate::plugin::{CallContext, Conflict, PluginCallError, PluginError, Resolution, Side};
use crate::record::Fields;

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

/// The first API version (a package manifest's `api`) these bindings load.
pub const MIN_VERSION: Version = Version::new(0, 2, 0);
/// The last one: every 0.2.x (a patch changes nothing a component sees).
pub const MAX_VERSION: Version = Version::new(0, 2, u64::MAX);

/// The WIT names a component of each kind must export.
pub const MAPPING_EXPORT: &str = "tandem:plugin/mapping@0.2.0";
/// See [`MAPPING_EXPORT`].
pub const FILTER_EXPORT: &str = "tandem:plugin/record-filter@0.2.0";
/// See [`MAPPING_EXPORT`].
pub const CONFLICT_EXPORT: &str = "tandem:plugin/conflict-resolution@0.2.0";

field_conversions!(super::types);

/// Adds this version's host imports to `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
    mapper::Mapper::add_to_linker::<PluginState, HasSelf<PluginState>>(linker, |state| state)
}

impl types::Host for PluginState {}

impl host::Host for PluginState {
    fn log(&mut self, level: host::Level, message: String) {
        self.write_log(level, message);
    }

    fn config(&mut self, key: String) -> Option<String> {
        self.config_value(key)
    }
}

/// The call context as this version's `context`.
fn context(ctx: &CallContext) -> types::Context {
    types::Context {
        domain: ctx.domain.clone(),
        user: ctx.user.clone(),
    }
}

impl From<types::PluginError> for PluginError {
    fn from(error: types::PluginError) -> Self {
        match error {
            types::PluginError::InvalidRecord(m) => PluginError::InvalidRecord(m),
            types::PluginError::Other(m) => PluginError::Other(m),
        }
    }
}

/// The batch packed into one call. Answers whose record can't be sent are `BadInput` in
/// place; the others come from the plugin in order.
pub(crate) fn map_batch<'a>(
    loaded: &Loaded,
    pre: &MapperPre,
    live: &mut Option<Live<MapperBindings>>,
    ctx: &CallContext,
    records: impl IntoIterator<Item = &'a Fields>,
    direction: Direction,
) -> Result<Vec<Result<Fields, PluginCallError>>, PluginCallError> {
    let records = records.into_iter();
    let mut answers = Vec::with_capacity(records.size_hint().0);
    let mut sent_to = Vec::with_capacity(records.size_hint().0);
    let mut batch = PackedBatch::new(records.size_hint().0);
    for record in records {
        match batch.push(record) {
            Ok(()) => {
                sent_to.push(answers.len());
                answers.push(Ok(Fields::new()));
            }
            Err(message) => answers.push(Err(loaded.bad_input(message))),
        }
    }
    if batch.len() == 0 {
        return Ok(answers);
    }
    let batch = batch.finish();
    let ctx = context(ctx);
    let packed_results = loaded.call(
        direction.function(),
        live,
        |store| pre.instantiate(store),
        |bindings, store| {
            let MapperBindings::V0_2(bindings) = bindings else {
                return Err(Loaded::version_mismatch());
            };
            let mapping = bindings.tandem_plugin_mapping();
            match direction {
                Direction::ToExchange => mapping.call_to_exchange(store, &ctx, &batch),
                Direction::ToSiebel => mapping.call_to_siebel(store, &ctx, &batch),
            }
        },
    )?;
    let results = loaded.output(packed::unpack_answers(packed_results, sent_to.len()))?;
    for (slot, result) in sent_to.into_iter().zip(results) {
        answers[slot] = match result {
            PackedAnswer::Record(fields) => loaded.output(fields),
            PackedAnswer::Error(error) => Err(loaded.plugin_error(error)),
        };
    }
    Ok(answers)
}

record_filter_call!(V0_2);
conflict_resolution_call!(V0_2);

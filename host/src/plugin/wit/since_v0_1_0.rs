//! The frozen WIT `tandem:plugin@0.1.0` (`wit/since_v0.1.0/`): its bindings, one `bindgen!`
//! per world, so plugins built against it keep loading; the conversions of host records to
//! and from its types; and its adapters to the newest version: `mapping` calls go one record
//! at a time (0.1.0 has no batches), the host imports forward to the newest ones;
//! `record-filter` and `conflict-resolution` are the same in both versions. The `filter` and
//! `conflict-policy` worlds reuse the `types` and `host` bindings of `mapper`.

use semver::Version;
use wasmtime::component::{HasSelf, Linker};

use super::latest;
use super::{
    ConflictPolicyBindings, ConflictPolicyPre, FilterBindings, FilterPre, MapperBindings, MapperPre,
};
use crate::plugin::mapper::Direction;
use crate::plugin::runtime::{Live, Loaded};
use crate::plugin::sandbox::PluginState;
use crate::plugin::{CallContext, Conflict, PluginCallError, PluginError, Resolution, Side};
use crate::record::Fields;

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

/// The first API version (a package manifest's `api`) these bindings load.
pub const MIN_VERSION: Version = Version::new(0, 1, 0);
/// The last one: every 0.1.x (a patch changes nothing a component sees).
pub const MAX_VERSION: Version = Version::new(0, 1, u64::MAX);

/// The WIT names a component of each kind must export.
pub const MAPPING_EXPORT: &str = "tandem:plugin/mapping@0.1.0";
/// See [`MAPPING_EXPORT`].
pub const FILTER_EXPORT: &str = "tandem:plugin/record-filter@0.1.0";
/// See [`MAPPING_EXPORT`].
pub const CONFLICT_EXPORT: &str = "tandem:plugin/conflict-resolution@0.1.0";

field_conversions!(super::types);

/// Adds this version's host imports to `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
    mapper::Mapper::add_to_linker::<PluginState, HasSelf<PluginState>>(linker, |state| state)
}

impl types::Host for PluginState {}

impl host::Host for PluginState {
    fn log(&mut self, level: host::Level, message: String) {
        self.write_log(level.into(), message);
    }

    fn config(&mut self, key: String) -> Option<String> {
        self.config_value(key)
    }
}

impl From<host::Level> for latest::host::Level {
    fn from(level: host::Level) -> Self {
        match level {
            host::Level::Trace => latest::host::Level::Trace,
            host::Level::Debug => latest::host::Level::Debug,
            host::Level::Info => latest::host::Level::Info,
            host::Level::Warn => latest::host::Level::Warn,
            host::Level::Error => latest::host::Level::Error,
        }
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

/// One record per call: a batch adapted to a version without batches.
pub(crate) fn map_batch<'a>(
    loaded: &Loaded,
    pre: &MapperPre,
    live: &mut Option<Live<MapperBindings>>,
    ctx: &CallContext,
    records: impl IntoIterator<Item = &'a Fields>,
    direction: Direction,
) -> Result<Vec<Result<Fields, PluginCallError>>, PluginCallError> {
    records
        .into_iter()
        .map(|record| map_one(loaded, pre, live, ctx, record, direction))
        .collect()
}

/// `Ok` holds the record's own answer; `Err` is a failure of the call (trap, timeout,
/// out-of-memory).
fn map_one(
    loaded: &Loaded,
    pre: &MapperPre,
    live: &mut Option<Live<MapperBindings>>,
    ctx: &CallContext,
    record: &Fields,
    direction: Direction,
) -> Result<Result<Fields, PluginCallError>, PluginCallError> {
    let input = match loaded.input(convert::fields_to_wit(record)) {
        Ok(input) => input,
        Err(bad_input) => return Ok(Err(bad_input)),
    };
    let ctx = context(ctx);
    let result = loaded.call(
        direction.function(),
        live,
        |store| pre.instantiate(store),
        |bindings, store| {
            let MapperBindings::V0_1(bindings) = bindings else {
                return Err(Loaded::version_mismatch());
            };
            let mapping = bindings.tandem_plugin_mapping();
            match direction {
                Direction::ToExchange => mapping.call_to_exchange(store, &ctx, &input),
                Direction::ToSiebel => mapping.call_to_siebel(store, &ctx, &input),
            }
        },
    )?;
    Ok(match result {
        Ok(fields) => loaded.output(convert::fields_from_wit(fields)),
        Err(error) => Err(loaded.plugin_error(error)),
    })
}

record_filter_call!(V0_1);
conflict_resolution_call!(V0_1);

#[cfg(test)]
mod tests;

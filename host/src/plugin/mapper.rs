//! Mapping plugins: [`MapperPlugin`], a loaded mapper, and [`MapperInstance`], one store's
//! instance, which maps records one at a time or in batches (how a call goes depends on the
//! WIT version of the component: `wit`).

use std::collections::BTreeMap;
use std::fmt;

use super::runtime::{Live, Loaded, wrong_shape};
use super::wit::{self, MapperBindings, MapperPre};
use super::{CacheOutcome, CallContext, Limits, PluginCallError, PluginLoadError, PluginRuntime};
use crate::record::Fields;

impl PluginRuntime {
    /// Loads a mapping plugin (world `mapper`, WIT 0.2.0 or 0.1.0).
    pub fn load_mapper(
        &self,
        name: &str,
        wasm: &[u8],
        limits: Limits,
        config: BTreeMap<String, String>,
    ) -> Result<MapperPlugin, PluginLoadError> {
        let exports = wit::MAPPING_EXPORTS;
        let (loaded, export) = self.load(name, wasm, limits, config, "mapper", exports)?;
        let pre = MapperPre::new(export, loaded.instance_pre.clone())
            .map_err(|e| wrong_shape(&loaded, "mapper", export, e))?;
        Ok(MapperPlugin { loaded, pre })
    }
}

/// Which way a mapping goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    ToExchange,
    ToSiebel,
}

impl Direction {
    /// The WIT function's name, for spans and metrics.
    pub(crate) fn function(self) -> &'static str {
        match self {
            Direction::ToExchange => "to_exchange",
            Direction::ToSiebel => "to_siebel",
        }
    }
}

/// A loaded mapping plugin. Cheap to clone; instantiate once per sync.
#[derive(Clone)]
pub struct MapperPlugin {
    loaded: Loaded,
    pre: MapperPre,
}

impl fmt::Debug for MapperPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapperPlugin")
            .field("name", &self.name())
            .field("sha256", &self.sha256())
            .finish()
    }
}

impl MapperPlugin {
    plugin_handle_accessors!();

    /// A fresh instance with its own store (runs the component's start-up under the deadline).
    pub fn instantiate(&self) -> Result<MapperInstance, PluginCallError> {
        let live = self
            .loaded
            .instantiate(|store| self.pre.instantiate(store))?;
        Ok(MapperInstance {
            plugin: self.clone(),
            live: Some(live),
        })
    }
}

/// A mapping plugin instance: one store, used for the records of one sync.
pub struct MapperInstance {
    plugin: MapperPlugin,
    pub(super) live: Option<Live<MapperBindings>>,
}

impl fmt::Debug for MapperInstance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapperInstance")
            .field("plugin", &self.plugin.name())
            .finish()
    }
}

impl MapperInstance {
    /// Maps a Siebel record to the fields of the Exchange item.
    pub fn to_exchange(
        &mut self,
        ctx: &CallContext,
        siebel: &Fields,
    ) -> Result<Fields, PluginCallError> {
        self.map_one(ctx, siebel, Direction::ToExchange)
    }

    /// Maps an Exchange item to the fields of the Siebel record.
    pub fn to_siebel(
        &mut self,
        ctx: &CallContext,
        exchange: &Fields,
    ) -> Result<Fields, PluginCallError> {
        self.map_one(ctx, exchange, Direction::ToSiebel)
    }

    /// Maps Siebel records to Exchange items in one plugin call (WIT 0.2.0; a 0.1.0 plugin is
    /// called once per record): one answer per record, in order. A record the plugin refused
    /// or answered wrongly, or that can't be sent, fails alone (`Plugin`, `BadOutput`,
    /// `BadInput`); a trap, timeout or out-of-memory fails the whole batch (the outer `Err`)
    /// and discards the instance. The call deadline covers the whole batch, so keep batches
    /// to what fits in it (a few hundred records at most).
    pub fn to_exchange_batch<'a>(
        &mut self,
        ctx: &CallContext,
        siebel: impl IntoIterator<Item = &'a Fields>,
    ) -> Result<Vec<Result<Fields, PluginCallError>>, PluginCallError> {
        self.map_batch(ctx, siebel, Direction::ToExchange)
    }

    /// Maps Exchange items to Siebel records in one plugin call; as
    /// [`to_exchange_batch`](Self::to_exchange_batch).
    pub fn to_siebel_batch<'a>(
        &mut self,
        ctx: &CallContext,
        exchange: impl IntoIterator<Item = &'a Fields>,
    ) -> Result<Vec<Result<Fields, PluginCallError>>, PluginCallError> {
        self.map_batch(ctx, exchange, Direction::ToSiebel)
    }

    fn map_one(
        &mut self,
        ctx: &CallContext,
        record: &Fields,
        direction: Direction,
    ) -> Result<Fields, PluginCallError> {
        let mut answers = self.map_batch(ctx, [record], direction)?;
        match answers.pop() {
            Some(answer) if answers.is_empty() => answer,
            _ => Err(self
                .plugin
                .loaded
                .bad_output("not one answer for one record".into())),
        }
    }

    fn map_batch<'a>(
        &mut self,
        ctx: &CallContext,
        records: impl IntoIterator<Item = &'a Fields>,
        direction: Direction,
    ) -> Result<Vec<Result<Fields, PluginCallError>>, PluginCallError> {
        let plugin = &self.plugin;
        wit::map_batch(
            &plugin.loaded,
            &plugin.pre,
            &mut self.live,
            ctx,
            records,
            direction,
        )
    }
}

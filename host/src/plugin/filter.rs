//! Filter plugins: [`FilterPlugin`], a loaded filter, and [`FilterInstance`], one store's
//! instance, which tells whether a record takes part in the sync.

use std::collections::BTreeMap;
use std::fmt;

use super::runtime::{Live, Loaded, wrong_shape};
use super::wit::{self, FilterBindings, FilterPre};
use super::{
    CacheOutcome, CallContext, Limits, PluginCallError, PluginLoadError, PluginRuntime, Side,
};
use crate::record::Fields;

impl PluginRuntime {
    /// Loads a filter plugin (world `filter`, WIT 0.2.0 or 0.1.0).
    pub fn load_filter(
        &self,
        name: &str,
        wasm: &[u8],
        limits: Limits,
        config: BTreeMap<String, String>,
    ) -> Result<FilterPlugin, PluginLoadError> {
        let exports = wit::FILTER_EXPORTS;
        let (loaded, export) = self.load(name, wasm, limits, config, "filter", exports)?;
        let pre = FilterPre::new(export, loaded.instance_pre.clone())
            .map_err(|e| wrong_shape(&loaded, "filter", export, e))?;
        Ok(FilterPlugin { loaded, pre })
    }
}

/// A loaded filter plugin. Cheap to clone; instantiate once per sync.
#[derive(Clone)]
pub struct FilterPlugin {
    loaded: Loaded,
    pre: FilterPre,
}

impl fmt::Debug for FilterPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FilterPlugin")
            .field("name", &self.name())
            .field("sha256", &self.sha256())
            .finish()
    }
}

impl FilterPlugin {
    plugin_handle_accessors!();

    /// A fresh instance with its own store.
    pub fn instantiate(&self) -> Result<FilterInstance, PluginCallError> {
        self.instantiate_with_config(BTreeMap::new())
    }

    /// A fresh instance whose `config` answers `overrides` before the package's own values
    /// (a user's own ExtractStartDate over the global one).
    pub fn instantiate_with_config(
        &self,
        overrides: BTreeMap<String, String>,
    ) -> Result<FilterInstance, PluginCallError> {
        let mut live = self
            .loaded
            .instantiate(|store| self.pre.instantiate(store))?;
        live.store.data_mut().config_overrides = overrides;
        Ok(FilterInstance {
            plugin: self.clone(),
            live: Some(live),
        })
    }
}

/// A filter plugin instance.
pub struct FilterInstance {
    plugin: FilterPlugin,
    live: Option<Live<FilterBindings>>,
}

impl fmt::Debug for FilterInstance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FilterInstance")
            .field("plugin", &self.plugin.name())
            .finish()
    }
}

impl FilterInstance {
    /// True when the record should take part in the sync.
    pub fn include(
        &mut self,
        ctx: &CallContext,
        side: Side,
        record: &Fields,
    ) -> Result<bool, PluginCallError> {
        let plugin = &self.plugin;
        wit::include(
            &plugin.loaded,
            &plugin.pre,
            &mut self.live,
            ctx,
            side,
            record,
        )
    }
}

//! Conflict-policy plugins: [`ConflictPolicyPlugin`], a loaded policy, and
//! [`ConflictPolicyInstance`], one store's instance, which decides a conflicting pair.

use std::collections::BTreeMap;
use std::fmt;

use super::runtime::{Live, Loaded, wrong_shape};
use super::wit::{self, ConflictPolicyBindings, ConflictPolicyPre};
use super::{
    CacheOutcome, CallContext, Conflict, Limits, PluginCallError, PluginLoadError, PluginRuntime,
    Resolution,
};

impl PluginRuntime {
    /// Loads a conflict-policy plugin (world `conflict-policy`, WIT 0.2.0 or 0.1.0).
    pub fn load_conflict_policy(
        &self,
        name: &str,
        wasm: &[u8],
        limits: Limits,
        config: BTreeMap<String, String>,
    ) -> Result<ConflictPolicyPlugin, PluginLoadError> {
        let exports = wit::CONFLICT_EXPORTS;
        let kind = "conflict-policy";
        let (loaded, export) = self.load(name, wasm, limits, config, kind, exports)?;
        let pre = ConflictPolicyPre::new(export, loaded.instance_pre.clone())
            .map_err(|e| wrong_shape(&loaded, kind, export, e))?;
        Ok(ConflictPolicyPlugin { loaded, pre })
    }
}

/// A loaded conflict-policy plugin. Cheap to clone; instantiate once per sync.
#[derive(Clone)]
pub struct ConflictPolicyPlugin {
    loaded: Loaded,
    pre: ConflictPolicyPre,
}

impl fmt::Debug for ConflictPolicyPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConflictPolicyPlugin")
            .field("name", &self.name())
            .field("sha256", &self.sha256())
            .finish()
    }
}

impl ConflictPolicyPlugin {
    plugin_handle_accessors!();

    /// A fresh instance with its own store.
    pub fn instantiate(&self) -> Result<ConflictPolicyInstance, PluginCallError> {
        let live = self
            .loaded
            .instantiate(|store| self.pre.instantiate(store))?;
        Ok(ConflictPolicyInstance {
            plugin: self.clone(),
            live: Some(live),
        })
    }
}

/// A conflict-policy plugin instance.
pub struct ConflictPolicyInstance {
    plugin: ConflictPolicyPlugin,
    live: Option<Live<ConflictPolicyBindings>>,
}

impl fmt::Debug for ConflictPolicyInstance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConflictPolicyInstance")
            .field("plugin", &self.plugin.name())
            .finish()
    }
}

impl ConflictPolicyInstance {
    /// The policy's decision for `conflict`.
    pub fn resolve(
        &mut self,
        ctx: &CallContext,
        conflict: &Conflict,
    ) -> Result<Resolution, PluginCallError> {
        let plugin = &self.plugin;
        wit::resolve(&plugin.loaded, &plugin.pre, &mut self.live, ctx, conflict)
    }
}

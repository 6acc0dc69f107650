//! Which plugin serves which domain right now.
//!
//! The engine asks the registry for a domain's mapper at the start of each user sync and
//! keeps that version for the whole run, so swapping a plugin never changes a sync in flight.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde::Serialize;

use crate::plugin::{Limits, MapperPlugin, PluginRuntime};

/// A loaded mapping plugin and what the admin API shows of it.
#[derive(Clone)]
pub struct LoadedMapper {
    pub info: PluginInfo,
    pub plugin: MapperPlugin,
}

/// One row of `GET /api/v1/plugins`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub kind: String,
    pub sha256: String,
    pub status: String,
    pub domains: Vec<String>,
}

/// The plugins in use, by domain.
#[derive(Clone, Default)]
pub struct PluginRegistry {
    mappers: Arc<RwLock<BTreeMap<String, LoadedMapper>>>,
}

impl PluginRegistry {
    /// A registry holding the default plugins built into this binary.
    pub fn with_defaults(runtime: &PluginRuntime) -> anyhow::Result<Self> {
        let registry = Self::default();
        let plugin = runtime
            .load_mapper("contact-mapping", crate::plugin::builtin::CONTACT_MAPPING, Limits::default(), BTreeMap::new())
            .map_err(|e| anyhow::anyhow!("cannot load the built-in contact-mapping plugin: {e}"))?;
        registry.set_mapper(
            "contacts",
            LoadedMapper {
                info: PluginInfo {
                    name: "contact-mapping".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    kind: "mapper".into(),
                    sha256: plugin.sha256().to_owned(),
                    status: "active".into(),
                    domains: vec!["contacts".into()],
                },
                plugin,
            },
        );
        Ok(registry)
    }

    pub fn set_mapper(&self, domain: &str, mapper: LoadedMapper) {
        let mut mappers = self.mappers.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        mappers.insert(domain.to_owned(), mapper);
    }

    /// The mapper serving `domain` now.
    pub fn mapper(&self, domain: &str) -> Option<LoadedMapper> {
        let mappers = self.mappers.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        mappers.get(domain).cloned()
    }

    /// Every loaded plugin once, for the admin API.
    pub fn list(&self) -> Vec<PluginInfo> {
        let mappers = self.mappers.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut infos: Vec<PluginInfo> = Vec::new();
        for loaded in mappers.values() {
            if !infos.iter().any(|info| info.sha256 == loaded.info.sha256 && info.name == loaded.info.name) {
                infos.push(loaded.info.clone());
            }
        }
        infos
    }
}

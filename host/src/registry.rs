//! Which plugin serves which domain right now, and the plugins directory that changes it
//! while the service runs (hot reload).
//!
//! The engine asks the registry for a domain's mapper at the start of each user sync and
//! keeps that version for the whole run, so swapping a plugin never changes a sync in flight.
//! Packages (`*.tpkg`, see [`crate::package`]) in the plugins directory override the
//! built-in plugins for their domains; a rescan ([`PluginRegistry::reload`], or the watcher
//! of [`PluginRegistry::watch`]) loads new and changed packages. A package that is broken,
//! unsigned (when a trust list is set) or built for an incompatible API is refused, logged
//! and listed with its reason, and whatever served its domains before stays live.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::package::{Package, PackageError, PluginKind, TrustList};
use crate::plugin::{Limits, MapperPlugin, PluginCallError, PluginRuntime};

/// Consecutive failed calls after which a plugin is listed as `unhealthy`.
pub const UNHEALTHY_AFTER: u32 = 5;

/// How often [`PluginRegistry::watch`] looks at the plugins directory.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// The extension of plugin package files.
pub const PACKAGE_EXTENSION: &str = "tpkg";

/// A loaded mapping plugin and what the admin API shows of it.
#[derive(Clone)]
pub struct LoadedMapper {
    /// What `GET /api/v1/plugins` shows.
    pub info: PluginInfo,
    /// The plugin; instantiate once per run.
    pub plugin: MapperPlugin,
    /// Consecutive call failures, shared by every run of this version.
    pub health: Arc<PluginHealth>,
}

/// Consecutive call failures of one plugin version: the engine reports each call's outcome
/// with [`PluginHealth::record`]; [`UNHEALTHY_AFTER`] failures in a row mark it unhealthy.
#[derive(Debug, Default)]
pub struct PluginHealth {
    consecutive_failures: AtomicU32,
}

impl PluginHealth {
    /// Notes one call's outcome.
    pub fn record<T>(&self, outcome: &Result<T, PluginCallError>) {
        match outcome {
            Ok(_) => self.consecutive_failures.store(0, Ordering::Relaxed),
            // A plugin declining a record is the plugin working as designed.
            Err(PluginCallError::Plugin { .. }) => {}
            Err(_) => {
                self.consecutive_failures.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Failures in a row since the last success.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures.load(Ordering::Relaxed)
    }

    /// True after [`UNHEALTHY_AFTER`] failures in a row.
    pub fn is_unhealthy(&self) -> bool {
        self.consecutive_failures() >= UNHEALTHY_AFTER
    }
}

/// One row of `GET /api/v1/plugins`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PluginInfo {
    /// Plugin name.
    pub name: String,
    /// Plugin version.
    pub version: String,
    /// "mapper", "filter" or "conflict-policy".
    pub kind: String,
    /// sha256 of the component.
    pub sha256: String,
    /// "active", "unhealthy", "standby" (valid, but another version serves its domains),
    /// or "refused".
    pub status: String,
    /// The domains it serves (or would serve).
    pub domains: Vec<String>,
    /// Where it comes from: "builtin" or the package file name.
    #[serde(default)]
    pub source: String,
    /// Hex public key of the signer, for signed packages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// Why it was refused, or why it is unhealthy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Where the registry finds packages and whose signatures it accepts.
#[derive(Debug, Clone, Default)]
pub struct PluginDirSettings {
    /// The plugins directory (created when missing).
    pub dir: PathBuf,
    /// When set, only packages signed by one of these keys are accepted.
    pub trust: Option<TrustList>,
}

/// The trust-list file name looked for in a state folder (see
/// [`PluginDirSettings::for_state_dir`]).
pub const TRUST_LIST_FILE: &str = "trusted-plugin-keys";

impl PluginDirSettings {
    /// The layout `tandem serve` and `tandem demo` use: packages in `<state>/plugins`; when
    /// `<state>/trusted-plugin-keys` exists (one hex ed25519 public key per line), only
    /// packages signed by one of those keys are accepted.
    pub fn for_state_dir(state_dir: &Path) -> anyhow::Result<Self> {
        let trust_file = state_dir.join(TRUST_LIST_FILE);
        let trust = if trust_file.is_file() {
            Some(TrustList::read(&trust_file)?)
        } else {
            None
        };
        Ok(PluginDirSettings {
            dir: state_dir.join("plugins"),
            trust,
        })
    }
}

/// One package file as last scanned.
#[derive(Clone)]
struct ScannedPackage {
    /// Modification time and size: a change means "read it again".
    stamp: (Option<SystemTime>, u64),
    outcome: Result<LoadedMapper, PluginInfo>,
}

#[derive(Default)]
struct State {
    /// What serves each domain now.
    mappers: BTreeMap<String, LoadedMapper>,
    /// The built-in plugins, served when no package overrides them.
    builtin: BTreeMap<String, LoadedMapper>,
    /// Package files by path, as last scanned.
    packages: BTreeMap<PathBuf, ScannedPackage>,
}

#[derive(Default)]
struct Inner {
    runtime: Option<PluginRuntime>,
    dir: Option<PluginDirSettings>,
    state: RwLock<State>,
    /// One rescan at a time.
    rescan: Mutex<()>,
}

/// The plugins in use, by domain. Cheap to clone.
#[derive(Clone, Default)]
pub struct PluginRegistry {
    inner: Arc<Inner>,
}

impl PluginRegistry {
    /// A registry holding the default plugins built into this binary.
    pub fn with_defaults(runtime: &PluginRuntime) -> anyhow::Result<Self> {
        Self::build(runtime, None)
    }

    /// The default plugins, overridden by the packages of a plugins directory (scanned once
    /// now; call [`PluginRegistry::watch`] or [`PluginRegistry::reload`] for changes).
    pub fn with_plugins_dir(
        runtime: &PluginRuntime,
        settings: PluginDirSettings,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&settings.dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot create the plugins directory {}: {e}",
                settings.dir.display()
            )
        })?;
        let registry = Self::build(runtime, Some(settings))?;
        registry.reload();
        Ok(registry)
    }

    fn build(runtime: &PluginRuntime, dir: Option<PluginDirSettings>) -> anyhow::Result<Self> {
        let plugin = runtime
            .load_mapper(
                "contact-mapping",
                crate::plugin::builtin::CONTACT_MAPPING,
                Limits::default(),
                BTreeMap::new(),
            )
            .map_err(|e| anyhow::anyhow!("cannot load the built-in contact-mapping plugin: {e}"))?;
        let contacts = LoadedMapper {
            info: PluginInfo {
                name: "contact-mapping".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                kind: "mapper".into(),
                sha256: plugin.sha256().to_owned(),
                status: "active".into(),
                domains: vec!["contacts".into()],
                source: "builtin".into(),
                signer: None,
                reason: None,
            },
            plugin,
            health: Arc::default(),
        };
        let mut state = State::default();
        state.builtin.insert("contacts".into(), contacts.clone());
        state.mappers.insert("contacts".into(), contacts);
        Ok(PluginRegistry {
            inner: Arc::new(Inner {
                runtime: Some(runtime.clone()),
                dir,
                state: RwLock::new(state),
                rescan: Mutex::new(()),
            }),
        })
    }

    /// Makes `mapper` serve `domain` (until the next rescan decides otherwise for a domain a
    /// package serves).
    pub fn set_mapper(&self, domain: &str, mapper: LoadedMapper) {
        let mut state = self.write();
        state.mappers.insert(domain.to_owned(), mapper);
    }

    /// The plugins directory this registry watches, when it has one.
    pub fn plugins_dir(&self) -> Option<&Path> {
        self.inner.dir.as_ref().map(|d| d.dir.as_path())
    }

    /// The mapper serving `domain` now.
    pub fn mapper(&self, domain: &str) -> Option<LoadedMapper> {
        self.read().mappers.get(domain).cloned()
    }

    /// Every plugin once, for the admin API: the live ones, then the packages that are on
    /// standby or refused.
    pub fn list(&self) -> Vec<PluginInfo> {
        let state = self.read();
        let mut infos: Vec<PluginInfo> = Vec::new();
        let mut push = |info: PluginInfo| {
            if !infos
                .iter()
                .any(|i| i.sha256 == info.sha256 && i.name == info.name && i.source == info.source)
            {
                infos.push(info);
            }
        };
        for loaded in state.mappers.values() {
            let mut info = loaded.info.clone();
            if loaded.health.is_unhealthy() {
                info.status = "unhealthy".into();
                info.reason = Some(format!(
                    "{} calls in a row failed",
                    loaded.health.consecutive_failures()
                ));
            }
            push(info);
        }
        for scanned in state.packages.values() {
            match &scanned.outcome {
                Ok(loaded) => {
                    let mut info = loaded.info.clone();
                    info.status = "standby".into();
                    push(info);
                }
                Err(refused) => push(refused.clone()),
            }
        }
        infos
    }

    /// Rescans the plugins directory now and answers with [`PluginRegistry::list`].
    /// Compiles new packages: call it from a blocking context (`spawn_blocking`).
    pub fn reload(&self) -> Vec<PluginInfo> {
        if let (Some(runtime), Some(settings)) = (&self.inner.runtime, &self.inner.dir) {
            let _one_at_a_time = self
                .inner
                .rescan
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            self.rescan(runtime, settings);
        }
        self.list()
    }

    /// Watches the plugins directory: every [`WATCH_INTERVAL`], when a package file appeared,
    /// changed or went away, rescans. Stops when the returned task is aborted.
    pub fn watch(&self) -> tokio::task::JoinHandle<()> {
        let registry = self.clone();
        tokio::spawn(async move {
            let Some(settings) = registry.inner.dir.clone() else {
                return;
            };
            let mut last = package_stamps(&settings.dir);
            loop {
                tokio::time::sleep(WATCH_INTERVAL).await;
                let now = package_stamps(&settings.dir);
                if now == last {
                    continue;
                }
                last = now;
                let rescan = registry.clone();
                if let Err(error) = tokio::task::spawn_blocking(move || rescan.reload()).await {
                    tracing::error!(%error, "The plugins directory rescan failed.");
                }
            }
        })
    }

    fn rescan(&self, runtime: &PluginRuntime, settings: &PluginDirSettings) {
        let previous = self.read().packages.clone();
        let mut packages = BTreeMap::new();
        for (path, stamp) in package_stamps(&settings.dir) {
            let scanned = match previous.get(&path) {
                Some(known) if known.stamp == stamp => known.clone(),
                _ => {
                    let outcome = load_package(runtime, settings, &path);
                    match &outcome {
                        Ok(loaded) => tracing::info!(
                            plugin = %loaded.info.name,
                            version = %loaded.info.version,
                            file = %path.display(),
                            "Plugin package accepted."
                        ),
                        Err(refused) => tracing::error!(
                            file = %path.display(),
                            reason = refused.reason.as_deref().unwrap_or(""),
                            "Plugin package refused; whatever served its domains stays live."
                        ),
                    }
                    ScannedPackage { stamp, outcome }
                }
            };
            packages.insert(path, scanned);
        }

        let mut state = self.write();
        // Built-ins first, then every domain a package served before and now can't (refused:
        // the previous version stays live), then the accepted packages, highest version wins.
        let mut mappers = state.builtin.clone();
        for (domain, live) in &state.mappers {
            let from_refused_file = live.info.source != "builtin"
                && packages
                    .get(&settings.dir.join(&live.info.source))
                    .is_some_and(|p| p.outcome.is_err());
            if from_refused_file {
                mappers.insert(domain.clone(), live.clone());
            }
        }
        let mut chosen: BTreeMap<String, (semver::Version, LoadedMapper)> = BTreeMap::new();
        for scanned in packages.values() {
            let Ok(loaded) = &scanned.outcome else { continue };
            let version = semver::Version::parse(&loaded.info.version)
                .unwrap_or_else(|_| semver::Version::new(0, 0, 0));
            for domain in &loaded.info.domains {
                let better = chosen.get(domain).is_none_or(|(best, _)| version > *best);
                if better {
                    chosen.insert(domain.clone(), (version.clone(), loaded.clone()));
                }
            }
        }
        for (domain, (_, loaded)) in chosen {
            let mut loaded = loaded;
            loaded.info.status = "active".into();
            mappers.insert(domain, loaded);
        }
        // Keep the health counter of a version that stays live.
        for (domain, mapper) in &mut mappers {
            if let Some(live) = state.mappers.get(domain)
                && live.info.sha256 == mapper.info.sha256
                && live.info.source == mapper.info.source
            {
                mapper.health = live.health.clone();
            }
        }
        state.mappers = mappers;
        state.packages = packages;
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.inner
            .state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.inner
            .state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The `*.tpkg` files of `dir` with their modification time and size, sorted by path.
fn package_stamps(dir: &Path) -> Vec<(PathBuf, (Option<SystemTime>, u64))> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut stamps: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == PACKAGE_EXTENSION))
        .filter_map(|path| {
            let meta = std::fs::metadata(&path).ok()?;
            meta.is_file()
                .then(|| (path, (meta.modified().ok(), meta.len())))
        })
        .collect();
    stamps.sort_by(|a, b| a.0.cmp(&b.0));
    stamps
}

/// Reads, verifies and loads one package; a refusal comes back as its list row.
fn load_package(
    runtime: &PluginRuntime,
    settings: &PluginDirSettings,
    path: &Path,
) -> Result<LoadedMapper, PluginInfo> {
    let source = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let refused = |name: String, version: String, kind: String, domains: Vec<String>, sha256: String, reason: String| PluginInfo {
        name,
        version,
        kind,
        sha256,
        status: "refused".into(),
        domains,
        source: source.clone(),
        signer: None,
        reason: Some(reason),
    };
    let package = Package::read(path).map_err(|e| {
        refused(source.clone(), String::new(), String::new(), Vec::new(), String::new(), e.to_string())
    })?;
    let manifest = &package.manifest;
    let sha256 = package.component_sha256();
    let refuse = |reason: String| {
        refused(
            manifest.name.clone(),
            manifest.version.clone(),
            manifest.kind.to_string(),
            manifest.domains.clone(),
            sha256.clone(),
            reason,
        )
    };
    let signer = package
        .verify(settings.trust.as_ref())
        .map_err(|e: PackageError| refuse(e.to_string()))?;
    manifest.check_compatible().map_err(|e| refuse(e.to_string()))?;
    if manifest.kind != PluginKind::Mapper {
        return Err(refuse(format!(
            "{} packages are not served by this host yet; only mappers are",
            manifest.kind
        )));
    }
    let defaults = Limits::default();
    let limits = Limits {
        call_deadline: manifest
            .limits
            .call_deadline_ms
            .map_or(defaults.call_deadline, Duration::from_millis),
        memory_bytes: manifest
            .limits
            .memory_mib
            .and_then(|mib| usize::try_from(mib).ok())
            .map_or(defaults.memory_bytes, |mib| mib.saturating_mul(1 << 20)),
    };
    let plugin = runtime
        .load_mapper(&manifest.name, &package.component, limits, manifest.config.clone())
        .map_err(|e| refuse(e.to_string()))?;
    Ok(LoadedMapper {
        info: PluginInfo {
            name: manifest.name.clone(),
            version: manifest.version.clone(),
            kind: manifest.kind.to_string(),
            sha256,
            status: "active".into(),
            domains: manifest.domains.clone(),
            source,
            signer,
            reason: None,
        },
        plugin,
        health: Arc::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::{CallContext, builtin};
    use crate::record::{Fields, Value};

    const MANIFEST: &str = "name = \"contact-mapping\"\nversion = \"2.0.0\"\nkind = \"mapper\"\n\
                            domains = [\"contacts\"]\napi = \"0.1.0\"\n";

    fn surname_after_mapping(mapper: &LoadedMapper) -> Value {
        let mut record = Fields::new();
        record.insert("Last Name".into(), Value::from("Hopper"));
        let ctx = CallContext { domain: "contacts".into(), user: "U".into() };
        let mut instance = mapper.plugin.instantiate().expect("instantiates");
        let out = instance.to_exchange(&ctx, &record).expect("maps");
        out.get("Surname").cloned().unwrap_or(Value::Null)
    }

    fn registry(trust: Option<TrustList>) -> (tempfile::TempDir, PluginRegistry) {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = PluginRuntime::new(None).expect("runtime");
        let settings = PluginDirSettings { dir: dir.path().to_path_buf(), trust };
        let registry = PluginRegistry::with_plugins_dir(&runtime, settings).expect("registry");
        (dir, registry)
    }

    fn v2() -> Package {
        Package::new(MANIFEST.into(), builtin::TEST_CONTACT_MAPPING_V2.to_vec()).expect("package")
    }

    #[test]
    fn a_run_in_flight_keeps_its_version_and_the_next_gets_the_new_one() {
        let (dir, registry) = registry(None);
        let in_flight = registry.mapper("contacts").expect("built-in");
        assert_eq!(in_flight.info.source, "builtin");
        v2().write(&dir.path().join("v2.tpkg")).expect("written");
        let list = registry.reload();
        assert!(list.iter().any(|i| i.source == "v2.tpkg" && i.status == "active"), "{list:?}");
        assert_eq!(surname_after_mapping(&in_flight), Value::from("Hopper"));
        let next = registry.mapper("contacts").expect("v2");
        assert_eq!(next.info.version, "2.0.0");
        assert_eq!(surname_after_mapping(&next), Value::from("HOPPER"));
    }

    #[test]
    fn a_broken_replacement_is_refused_and_the_previous_version_stays_live() {
        let (dir, registry) = registry(None);
        let path = dir.path().join("cm.tpkg");
        v2().write(&path).expect("written");
        registry.reload();
        // Same file, now garbage: refused, v2 still serves, also on later rescans.
        std::fs::write(&path, b"TANDEMP1garbage").expect("written");
        for _ in 0..2 {
            let list = registry.reload();
            assert!(list.iter().any(|i| i.status == "refused" && i.reason.is_some()), "{list:?}");
            assert_eq!(registry.mapper("contacts").expect("live").info.version, "2.0.0");
        }
        std::fs::remove_file(&path).expect("removed");
        registry.reload();
        assert_eq!(registry.mapper("contacts").expect("live").info.source, "builtin");
    }

    #[test]
    fn with_a_trust_list_unsigned_packages_are_refused() {
        let key = crate::package::generate_signing_key();
        let trust = TrustList::parse(&hex::encode(key.verifying_key().to_bytes())).expect("trust");
        let (dir, registry) = registry(Some(trust));
        v2().write(&dir.path().join("unsigned.tpkg")).expect("written");
        let list = registry.reload();
        let row = list.iter().find(|i| i.source == "unsigned.tpkg").expect("listed");
        assert_eq!(row.status, "refused");
        assert!(row.reason.as_deref().unwrap_or("").contains("not signed"), "{row:?}");
        assert_eq!(registry.mapper("contacts").expect("live").info.source, "builtin");

        let mut signed = v2();
        signed.sign(&key);
        signed.write(&dir.path().join("signed.tpkg")).expect("written");
        registry.reload();
        let live = registry.mapper("contacts").expect("live");
        assert_eq!(live.info.source, "signed.tpkg");
        assert!(live.info.signer.is_some());
    }

    #[test]
    fn repeated_failures_mark_a_plugin_unhealthy_until_a_success() {
        let (_dir, registry) = registry(None);
        let live = registry.mapper("contacts").expect("built-in");
        let failure: Result<(), PluginCallError> =
            Err(PluginCallError::Trap { plugin: "p".into(), message: "boom".into() });
        for _ in 0..UNHEALTHY_AFTER {
            live.health.record(&failure);
        }
        let list = registry.list();
        assert_eq!(list[0].status, "unhealthy", "{list:?}");
        live.health.record(&Ok::<(), PluginCallError>(()));
        assert_eq!(registry.list()[0].status, "active");
    }
}

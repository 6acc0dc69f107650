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
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::domain;
use crate::package::{Package, PackageError, PluginKind, TrustList};
use crate::plugin::{
    ConflictPolicyPlugin, FilterPlugin, Limits, MapperPlugin, PluginCallError, PluginLoadError,
    PluginRuntime,
};

/// Consecutive failed calls after which a plugin is listed as `unhealthy`.
pub const UNHEALTHY_AFTER: u32 = 5;

/// How often [`PluginRegistry::watch`] looks at the plugins directory.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// The extension of plugin package files.
pub const PACKAGE_EXTENSION: &str = "tpkg";

/// A loaded plugin of kind `P` and what the admin API shows of it.
#[derive(Clone)]
pub struct Loaded<P> {
    /// What `GET /api/v1/plugins` shows.
    pub info: PluginInfo,
    /// The plugin; instantiate once per run.
    pub plugin: P,
    /// Consecutive call failures, shared by every run of this version.
    pub health: Arc<PluginHealth>,
}

/// The mapper serving a domain.
pub type LoadedMapper = Loaded<MapperPlugin>;
/// The filter serving a domain.
pub type LoadedFilter = Loaded<FilterPlugin>;
/// The conflict policy serving a domain.
pub type LoadedConflictPolicy = Loaded<ConflictPolicyPlugin>;

/// A plugin of any kind, as the registry stores it.
#[derive(Clone)]
pub enum AnyPlugin {
    /// World `mapper`.
    Mapper(MapperPlugin),
    /// World `filter`.
    Filter(FilterPlugin),
    /// World `conflict-policy`.
    ConflictPolicy(ConflictPolicyPlugin),
}

impl AnyPlugin {
    /// Compiles `wasm` as a plugin of `kind`.
    fn load(
        runtime: &PluginRuntime,
        kind: PluginKind,
        name: &str,
        wasm: &[u8],
        limits: Limits,
        config: BTreeMap<String, String>,
    ) -> Result<Self, PluginLoadError> {
        Ok(match kind {
            PluginKind::Mapper => Self::Mapper(runtime.load_mapper(name, wasm, limits, config)?),
            PluginKind::Filter => Self::Filter(runtime.load_filter(name, wasm, limits, config)?),
            PluginKind::ConflictPolicy => {
                Self::ConflictPolicy(runtime.load_conflict_policy(name, wasm, limits, config)?)
            }
        })
    }

    fn kind(&self) -> PluginKind {
        match self {
            Self::Mapper(_) => PluginKind::Mapper,
            Self::Filter(_) => PluginKind::Filter,
            Self::ConflictPolicy(_) => PluginKind::ConflictPolicy,
        }
    }

    fn sha256(&self) -> &str {
        match self {
            Self::Mapper(p) => p.sha256(),
            Self::Filter(p) => p.sha256(),
            Self::ConflictPolicy(p) => p.sha256(),
        }
    }
}

impl Loaded<AnyPlugin> {
    /// This plugin as kind `P`, when it is one.
    fn narrow<P>(self, pick: impl FnOnce(AnyPlugin) -> Option<P>) -> Option<Loaded<P>> {
        Some(Loaded {
            plugin: pick(self.plugin)?,
            info: self.info,
            health: self.health,
        })
    }
}

type LoadedAny = Loaded<AnyPlugin>;

/// The sync domains, as plugin manifests and the engine name them.
pub const DOMAINS: [&str; 5] = domain::NAMES;

/// A plugin built into this binary, serving its domains unless a package overrides them.
struct Builtin {
    name: &'static str,
    kind: PluginKind,
    wasm: &'static [u8],
    domains: &'static [&'static str],
}

/// The built-in plugins, in the order the admin API lists them. Compiled on first use.
const BUILTINS: [Builtin; 6] = {
    use crate::plugin::builtin as b;
    [
        Builtin { name: "contact-mapping", kind: PluginKind::Mapper, wasm: b::CONTACT_MAPPING, domains: &[domain::CONTACTS] },
        Builtin {
            name: "personal-contact-mapping",
            kind: PluginKind::Mapper,
            wasm: b::PERSONAL_CONTACT_MAPPING,
            domains: &[domain::PERSONAL_CONTACTS],
        },
        Builtin { name: "employee-mapping", kind: PluginKind::Mapper, wasm: b::EMPLOYEE_MAPPING, domains: &[domain::EMPLOYEES] },
        Builtin {
            name: "activity-mapping",
            kind: PluginKind::Mapper,
            wasm: b::ACTIVITY_MAPPING,
            domains: &[domain::CALENDAR, domain::TASKS],
        },
        Builtin { name: "default-filters", kind: PluginKind::Filter, wasm: b::DEFAULT_FILTERS, domains: &DOMAINS },
        Builtin {
            name: "conflict-policies",
            kind: PluginKind::ConflictPolicy,
            wasm: b::CONFLICT_POLICIES,
            domains: &DOMAINS,
        },
    ]
};

impl Builtin {
    fn info(&self, sha256: String) -> PluginInfo {
        PluginInfo {
            name: self.name.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: self.kind.to_string(),
            sha256,
            status: "active".into(),
            domains: self.domains.iter().map(|d| (*d).to_owned()).collect(),
            source: "builtin".into(),
            signer: None,
            reason: None,
        }
    }
}

/// What a plugin serves: one kind for one domain.
type Slot = (PluginKind, String);

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
    outcome: Result<LoadedAny, PluginInfo>,
}

#[derive(Default)]
struct State {
    /// What packages (or [`PluginRegistry::set_mapper`]) serve now; a slot missing here is
    /// served by its built-in plugin.
    live: BTreeMap<Slot, LoadedAny>,
    /// Package files by path, as last scanned.
    packages: BTreeMap<PathBuf, ScannedPackage>,
}

struct Inner {
    runtime: PluginRuntime,
    dir: Option<PluginDirSettings>,
    state: RwLock<State>,
    /// The built-in plugins, each compiled on first use (index as in [`BUILTINS`]).
    builtins: [OnceLock<LoadedAny>; BUILTINS.len()],
    /// One rescan at a time.
    rescan: Mutex<()>,
}

/// The plugins in use, by kind and domain. Cheap to clone.
#[derive(Clone)]
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
        let registry = PluginRegistry {
            inner: Arc::new(Inner {
                runtime: runtime.clone(),
                dir,
                state: RwLock::new(State::default()),
                builtins: Default::default(),
                rescan: Mutex::new(()),
            }),
        };
        // The contact mapping is what every sync needs first: compile it now, so a broken
        // build fails at start-up rather than in the first run.
        registry
            .get(PluginKind::Mapper, "contacts")
            .map_err(|e| anyhow::anyhow!("cannot load the built-in contact mapping: {e}"))?;
        Ok(registry)
    }

    /// Makes `mapper` serve `domain` (until the next rescan decides otherwise).
    pub fn set_mapper(&self, domain: &str, mapper: LoadedMapper) {
        let loaded = Loaded {
            plugin: AnyPlugin::Mapper(mapper.plugin),
            info: mapper.info,
            health: mapper.health,
        };
        self.write().live.insert((PluginKind::Mapper, domain.to_owned()), loaded);
    }

    /// The plugins directory this registry watches, when it has one.
    pub fn plugins_dir(&self) -> Option<&Path> {
        self.inner.dir.as_ref().map(|d| d.dir.as_path())
    }

    /// The mapper serving `domain` now (`None` for a domain no plugin maps).
    pub fn mapper(&self, domain: &str) -> Option<LoadedMapper> {
        self.serving(PluginKind::Mapper, domain)?.narrow(|p| match p {
            AnyPlugin::Mapper(p) => Some(p),
            _ => None,
        })
    }

    /// The filter serving `domain` now.
    pub fn filter(&self, domain: &str) -> Option<LoadedFilter> {
        self.serving(PluginKind::Filter, domain)?.narrow(|p| match p {
            AnyPlugin::Filter(p) => Some(p),
            _ => None,
        })
    }

    /// The conflict policy serving `domain` now.
    pub fn conflict_policy(&self, domain: &str) -> Option<LoadedConflictPolicy> {
        self.serving(PluginKind::ConflictPolicy, domain)?.narrow(|p| match p {
            AnyPlugin::ConflictPolicy(p) => Some(p),
            _ => None,
        })
    }

    /// What serves a slot, logging a built-in that fails to compile (it can't: the build
    /// compiled it, but the answer must not be a panic).
    fn serving(&self, kind: PluginKind, domain: &str) -> Option<LoadedAny> {
        self.get(kind, domain)
            .map_err(|error| tracing::error!(%kind, domain, %error, "A built-in plugin failed to load."))
            .ok()
            .flatten()
    }

    fn get(&self, kind: PluginKind, domain: &str) -> Result<Option<LoadedAny>, PluginLoadError> {
        if let Some(live) = self.read().live.get(&(kind, domain.to_owned())) {
            return Ok(Some(live.clone()));
        }
        let Some(index) = BUILTINS.iter().position(|b| b.kind == kind && b.domains.contains(&domain)) else {
            return Ok(None);
        };
        self.builtin(index).map(Some)
    }

    /// Built-in number `index`, compiled on first use.
    fn builtin(&self, index: usize) -> Result<LoadedAny, PluginLoadError> {
        let slot = &self.inner.builtins[index];
        if let Some(loaded) = slot.get() {
            return Ok(loaded.clone());
        }
        let builtin = &BUILTINS[index];
        let plugin = AnyPlugin::load(
            &self.inner.runtime,
            builtin.kind,
            builtin.name,
            builtin.wasm,
            Limits::default(),
            BTreeMap::new(),
        )?;
        let loaded = Loaded {
            info: builtin.info(plugin.sha256().to_owned()),
            plugin,
            health: Arc::default(),
        };
        Ok(slot.get_or_init(|| loaded).clone())
    }

    /// Every plugin once, for the admin API: the built-ins still serving some domain, the
    /// live packages, then the packages that are on standby or refused.
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
        let with_health = |loaded: &LoadedAny| {
            let mut info = loaded.info.clone();
            if loaded.health.is_unhealthy() {
                info.status = "unhealthy".into();
                info.reason = Some(format!(
                    "{} calls in a row failed",
                    loaded.health.consecutive_failures()
                ));
            }
            info
        };
        for (index, builtin) in BUILTINS.iter().enumerate() {
            let overridden = builtin
                .domains
                .iter()
                .all(|d| state.live.contains_key(&(builtin.kind, (*d).to_owned())));
            if overridden {
                continue;
            }
            match self.inner.builtins[index].get() {
                Some(loaded) => push(with_health(loaded)),
                None => push(builtin.info(crate::plugin::sha256_hex(builtin.wasm))),
            }
        }
        for loaded in state.live.values() {
            push(with_health(loaded));
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
        if let Some(settings) = &self.inner.dir {
            let _one_at_a_time = self
                .inner
                .rescan
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            self.rescan(&self.inner.runtime, settings);
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
                            kind = %loaded.info.kind,
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
        // Every slot a package served before and now can't (refused: the previous version
        // stays live), then the accepted packages, highest version wins; the rest fall back
        // to the built-ins.
        let mut live = BTreeMap::new();
        for (slot, loaded) in &state.live {
            let from_refused_file = loaded.info.source != "builtin"
                && packages
                    .get(&settings.dir.join(&loaded.info.source))
                    .is_some_and(|p| p.outcome.is_err());
            if from_refused_file {
                live.insert(slot.clone(), loaded.clone());
            }
        }
        let mut chosen: BTreeMap<Slot, (semver::Version, LoadedAny)> = BTreeMap::new();
        for scanned in packages.values() {
            let Ok(loaded) = &scanned.outcome else { continue };
            let kind = loaded.plugin.kind();
            let version = semver::Version::parse(&loaded.info.version)
                .unwrap_or_else(|_| semver::Version::new(0, 0, 0));
            for domain in &loaded.info.domains {
                let slot = (kind, domain.clone());
                let better = chosen.get(&slot).is_none_or(|(best, _)| version > *best);
                if better {
                    chosen.insert(slot, (version.clone(), loaded.clone()));
                }
            }
        }
        for (slot, (_, mut loaded)) in chosen {
            loaded.info.status = "active".into();
            // Keep the health counter of a version that stays live.
            if let Some(before) = state.live.get(&slot)
                && before.info.sha256 == loaded.info.sha256
                && before.info.source == loaded.info.source
            {
                loaded.health = before.health.clone();
            }
            live.insert(slot, loaded);
        }
        state.live = live;
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
) -> Result<LoadedAny, PluginInfo> {
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
    let unknown: Vec<&str> = manifest
        .domains
        .iter()
        .map(String::as_str)
        .filter(|d| !DOMAINS.contains(d))
        .collect();
    if !unknown.is_empty() || manifest.domains.is_empty() {
        return Err(refuse(format!(
            "the manifest's domains must be some of {}; found {:?}",
            DOMAINS.join(", "),
            manifest.domains
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
    let plugin = AnyPlugin::load(
        runtime,
        manifest.kind,
        &manifest.name,
        &package.component,
        limits,
        manifest.config.clone(),
    )
    .map_err(|e| refuse(e.to_string()))?;
    Ok(Loaded {
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

    fn resolve_conflict(registry: &PluginRegistry, domain: &str) -> crate::plugin::Resolution {
        let policy = registry.conflict_policy(domain).expect("a policy serves every domain");
        let mut instance = policy.plugin.instantiate().expect("instantiates");
        let mut siebel = Fields::new();
        siebel.insert("JobTitle".into(), Value::from("CEO"));
        let mut exchange = Fields::new();
        exchange.insert("JobTitle".into(), Value::from("CTO"));
        let ctx = CallContext { domain: domain.into(), user: "U".into() };
        let conflict = crate::plugin::Conflict { base: None, siebel, exchange };
        instance.resolve(&ctx, &conflict).expect("resolves")
    }

    #[test]
    fn every_domain_is_served_by_a_builtin_mapper_filter_and_conflict_policy() {
        let (_dir, registry) = registry(None);
        for domain in DOMAINS {
            assert!(registry.mapper(domain).is_some(), "{domain} mapper");
            assert!(registry.filter(domain).is_some(), "{domain} filter");
            assert_eq!(resolve_conflict(&registry, domain), crate::plugin::Resolution::TakeSiebel);
        }
        assert!(registry.mapper("notes").is_none());
        let list = registry.list();
        let names: Vec<&str> = list.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, BUILTINS.map(|b| b.name), "{list:?}");
        assert!(list.iter().all(|i| i.status == "active" && i.source == "builtin" && i.sha256.len() == 64));
    }

    #[test]
    fn a_conflict_policy_package_replaces_the_builtin_for_its_domains_only() {
        let (dir, registry) = registry(None);
        let manifest = "name = \"exchange-wins\"\nversion = \"1.0.0\"\nkind = \"conflict-policy\"\n\
                        domains = [\"contacts\"]\napi = \"0.1.0\"\n[config]\npolicy = \"exchange-wins\"\n";
        let package = Package::new(manifest.into(), builtin::CONFLICT_POLICIES.to_vec()).expect("package");
        package.write(&dir.path().join("ew.tpkg")).expect("written");
        let list = registry.reload();
        assert!(list.iter().any(|i| i.source == "ew.tpkg" && i.status == "active"), "{list:?}");
        assert_eq!(resolve_conflict(&registry, "contacts"), crate::plugin::Resolution::TakeExchange);
        assert_eq!(resolve_conflict(&registry, "tasks"), crate::plugin::Resolution::TakeSiebel);
        // The built-in still serves the other domains, so it stays listed.
        assert!(list.iter().any(|i| i.name == "conflict-policies" && i.source == "builtin"), "{list:?}");
    }

    #[test]
    fn a_filter_package_is_served_with_its_configuration() {
        let (dir, registry) = registry(None);
        let manifest = "name = \"no-private\"\nversion = \"1.0.0\"\nkind = \"filter\"\n\
                        domains = [\"calendar\"]\napi = \"0.1.0\"\n[config]\nsync_private = \"false\"\n";
        let package = Package::new(manifest.into(), builtin::DEFAULT_FILTERS.to_vec()).expect("package");
        package.write(&dir.path().join("np.tpkg")).expect("written");
        registry.reload();
        let mut item = Fields::new();
        item.insert("Subject".into(), Value::from("1:1"));
        item.insert("Sensitivity".into(), Value::from("Private"));
        let ctx = CallContext { domain: "calendar".into(), user: "U".into() };
        let include = |filter: LoadedFilter| {
            let mut instance = filter.plugin.instantiate().expect("instantiates");
            instance.include(&ctx, crate::plugin::Side::Exchange, &item).expect("filters")
        };
        assert!(!include(registry.filter("calendar").expect("package")), "private items stay out");
        let builtin_filter = registry.filter("tasks").expect("built-in");
        assert_eq!(builtin_filter.info.source, "builtin");
    }

    #[test]
    fn a_package_for_an_unknown_domain_is_refused() {
        let (dir, registry) = registry(None);
        let manifest = MANIFEST.replace("[\"contacts\"]", "[\"notes\"]");
        let package = Package::new(manifest, builtin::TEST_CONTACT_MAPPING_V2.to_vec()).expect("package");
        package.write(&dir.path().join("notes.tpkg")).expect("written");
        let list = registry.reload();
        let row = list.iter().find(|i| i.source == "notes.tpkg").expect("listed");
        assert_eq!(row.status, "refused", "{row:?}");
        assert!(row.reason.as_deref().unwrap_or("").contains("notes"), "{row:?}");
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

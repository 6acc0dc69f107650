//! The plugin runtime: loads WebAssembly component plugins (mapping, filter, conflict
//! policy; WIT `tandem:plugin@0.2.0`, and plugins built against the frozen 0.1.0) and runs
//! them sandboxed, so a buggy or hostile plugin can fail a record but never the host.
//!
//! - One [`PluginRuntime`] per process: two wasmtime engines, each with its linker —
//!   Cranelift (optimized code) for ordinary plugins and Winch (a baseline compiler, about
//!   5× faster to compile) for components of [`BASELINE_COMPILER_FROM_BYTES`] and more, such
//!   as a Python interpreter, so they go live in about a second — a ticker thread for
//!   deadlines, an optional on-disk cache of compiled plugins.
//! - `load_*` compiles (or loads from cache), checks the component's world and links it:
//!   a [`MapperPlugin`] / [`FilterPlugin`] / [`ConflictPolicyPlugin`] is cheap to clone.
//! - `instantiate()` per sync gives an instance with its own store: each call has a deadline
//!   and the store a memory cap ([`Limits`]). A trap, timeout or out-of-memory is a typed
//!   [`PluginCallError`]; the instance then drops its store and the next call starts afresh.
//!
//! Plugins get WASI p2 linked with an empty context: no files, no environment, no
//! arguments, no network, no stdio. They can log (to `tracing`, tagged with the plugin name)
//! and read their own configuration map.
//!
//! A 0.2.0 mapper takes records in packed batches ([`MapperInstance::to_exchange_batch`]; a
//! single record is a batch of one); a 0.1.0 mapper is adapted by sending records one at a
//! time. Filters and conflict policies are the same in both versions.
//!
//! Calls are synchronous and CPU-bound (bounded by the deadline): from async code, run them
//! in `tokio::task::spawn_blocking`.

pub mod builtin;
mod cache;
pub(crate) use cache::sha256_hex;
mod call_stats;
pub(crate) mod convert;
mod since_v0_1_0;
mod since_v0_2_0;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, InstancePre, Linker, Resource, ResourceTable};
use wasmtime::{Config, Engine, ResourceLimiter, Store, Trap};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::record::Fields;
pub use cache::CacheOutcome;
pub use call_stats::{OVERFLOW_PLUGIN, PLUGIN_CALL_BUCKETS, PluginCallSeries, plugin_call_series, record_plugin_call};
use since_v0_1_0 as v0_1;
use since_v0_2_0 as v0_2;

/// How often the ticker thread advances the engine's epoch: the granularity of deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// The largest memory cap a plugin may be given.
pub const MAX_MEMORY_BYTES: usize = 1 << 30;

/// Components this big or bigger are compiled by Winch, wasmtime's baseline compiler: an
/// 18 MB Python component compiles in 1.2 s instead of 5–14 s, its code runs slower. Every
/// plugin written in Rust is far below (the default ones are about 100 KB).
pub const BASELINE_COMPILER_FROM_BYTES: usize = 4 << 20;

/// Longest log line a plugin may write; longer ones are cut.
const MAX_LOG_LINE: usize = 8 * 1024;

/// Log lines a plugin may write per call; the rest are dropped (a plugin can't flood logs).
const MAX_LOG_LINES_PER_CALL: u32 = 100;

/// Longest trap message kept (a deep recursion's wasm backtrace runs to thousands of frames).
const MAX_TRAP_MESSAGE: usize = 4 * 1024;

/// Table elements (function references) one store may hold.
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Core instances, tables and memories one store may hold. A Rust component has a handful.
const MAX_INSTANCES: usize = 64;
const MAX_TABLES: usize = 64;
const MAX_MEMORIES: usize = 8;

/// Per-plugin resource limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock budget of one call (and of instantiation). Default 100 ms.
    pub call_deadline: Duration,
    /// Cap on each linear memory of an instance, in bytes. Default 64 MiB, at most
    /// [`MAX_MEMORY_BYTES`].
    pub memory_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            call_deadline: Duration::from_millis(100),
            memory_bytes: 64 << 20,
        }
    }
}

/// What the host tells a plugin about the record at hand.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CallContext {
    /// The sync domain: "contacts", "employees", "personal-contacts", "calendar" or "tasks".
    pub domain: String,
    /// The Siebel login of the user whose data is being synced.
    pub user: String,
}

/// Why a plugin declined a record (the WIT `plugin-error`). Quarantine the record with the
/// message and retry it later; never delete anything because of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginError {
    /// This record can't be mapped, filtered or resolved (bad or missing data).
    InvalidRecord(String),
    /// Anything else.
    Other(String),
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginError::InvalidRecord(m) => write!(f, "invalid record: {m}"),
            PluginError::Other(m) => f.write_str(m),
        }
    }
}

/// The side a record comes from (for filters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// Oracle Siebel CRM.
    Siebel,
    /// Microsoft Exchange.
    Exchange,
}

/// The three versions of a conflicting pair, all in Exchange shape.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Conflict {
    /// The content both sides agreed on at the last sync, when known.
    pub base: Option<Fields>,
    /// The Siebel record now (mapped to Exchange shape).
    pub siebel: Fields,
    /// The Exchange item now.
    pub exchange: Fields,
}

/// A conflict policy's decision.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    /// Siebel's version overwrites Exchange.
    TakeSiebel,
    /// Exchange's version overwrites Siebel.
    TakeExchange,
    /// This record (Exchange shape) is written to both sides.
    Merged(Fields),
    /// Keep both: the Exchange item is split off as a new record.
    KeepBoth,
    /// Leave both sides alone and flag the pair for a person, with the reason.
    Defer(String),
}

/// A plugin could not be loaded. Fix the plugin or the configuration; the runtime is fine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginLoadError {
    /// Not a valid WebAssembly component, or it failed to compile.
    #[error(
        "plugin `{plugin}` is not a valid WebAssembly component: {message}; rebuild it with \
         `cargo build --release --target wasm32-wasip2`"
    )]
    Compile {
        /// Plugin name.
        plugin: String,
        /// What wasmtime said.
        message: String,
    },
    /// The component is not of the expected kind or WIT version.
    #[error(
        "plugin `{plugin}` is not a {expected_kind} plugin: it does not export \
         `{expected_export}` or its 0.1.0 version (its exports: {found}); build it with \
         tandem-plugin-api's export macro for that kind, or configure it as the kind it is"
    )]
    WrongWorld {
        /// Plugin name.
        plugin: String,
        /// "mapper", "filter" or "conflict-policy".
        expected_kind: &'static str,
        /// The WIT interface it should export (newest version; 0.1.0 is accepted too).
        expected_export: &'static str,
        /// What it does export.
        found: String,
    },
    /// The component imports something the host does not provide (e.g. another WIT version).
    #[error(
        "plugin `{plugin}` needs imports the host does not provide: {message}; plugins may \
         import only tandem:plugin/host (0.2.0 or 0.1.0) and WASI 0.2"
    )]
    Link {
        /// Plugin name.
        plugin: String,
        /// What wasmtime said.
        message: String,
    },
    /// The requested limits are out of range.
    #[error("plugin `{plugin}` has invalid limits: {message}")]
    Limits {
        /// Plugin name.
        plugin: String,
        /// What is wrong.
        message: String,
    },
}

/// A plugin call (or instantiation) failed. Quarantine the record and retry later; the
/// instance has already been discarded where needed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PluginCallError {
    /// The plugin crashed (panic, `unreachable`, stack overflow, ...). The instance was
    /// discarded; the next call instantiates afresh.
    #[error("plugin `{plugin}` trapped: {message}")]
    Trap {
        /// Plugin name.
        plugin: String,
        /// The trap and the wasm backtrace.
        message: String,
    },
    /// The call ran past its deadline and was stopped. The instance was discarded.
    #[error(
        "plugin `{plugin}` ran longer than its {deadline:?} deadline and was stopped; raise \
         the plugin's call deadline if the record is legitimately expensive"
    )]
    Timeout {
        /// Plugin name.
        plugin: String,
        /// The deadline in force.
        deadline: Duration,
    },
    /// The plugin tried to grow its memory past the cap. The instance was discarded.
    #[error(
        "plugin `{plugin}` ran out of memory (cap {limit} bytes); raise the plugin's memory \
         limit if the record is legitimately large"
    )]
    OutOfMemory {
        /// Plugin name.
        plugin: String,
        /// The memory cap in force.
        limit: usize,
    },
    /// The plugin declined the record with a `plugin-error`. The instance is kept.
    #[error("plugin `{plugin}` rejected the record: {error}")]
    Plugin {
        /// Plugin name.
        plugin: String,
        /// What the plugin said.
        error: PluginError,
    },
    /// The plugin returned data the host can't accept (duplicate field, time out of range).
    #[error("plugin `{plugin}` returned invalid data: {message}")]
    BadOutput {
        /// Plugin name.
        plugin: String,
        /// What is wrong.
        message: String,
    },
    /// The host record can't be expressed in WIT (a list inside a list); no call was made.
    #[error("record can't be passed to plugin `{plugin}`: {message}")]
    BadInput {
        /// Plugin name.
        plugin: String,
        /// What is wrong.
        message: String,
    },
}

/// The process-wide plugin runtime. Cheap to clone (an `Arc`).
#[derive(Clone)]
pub struct PluginRuntime {
    shared: Arc<Shared>,
}

impl fmt::Debug for PluginRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginRuntime")
            .field("cache_dir", &self.shared.cache_dir)
            .finish()
    }
}

/// One compiler setup: an engine, the linker over it, and its key in the compile cache.
struct Compiler {
    engine: Engine,
    linker: Linker<PluginState>,
    engine_key: String,
}

impl Compiler {
    fn new(config: &Config) -> anyhow::Result<Self> {
        let engine = Engine::new(config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        forbid_waiting(&mut linker)?;
        // Both WIT versions' host imports: 0.1.0 plugins keep loading.
        v0_2::mapper::Mapper::add_to_linker::<PluginState, HasSelf<PluginState>>(
            &mut linker,
            |state| state,
        )?;
        v0_1::mapper::Mapper::add_to_linker::<PluginState, HasSelf<PluginState>>(
            &mut linker,
            |state| state,
        )?;
        let engine_key = cache::engine_key(&engine);
        Ok(Compiler {
            engine,
            linker,
            engine_key,
        })
    }
}

/// What every plugin handle keeps alive: the compilers and the ticker.
struct Shared {
    /// Cranelift: optimized code.
    optimizing: Compiler,
    /// Winch: compiled fast, for components of `baseline_from_bytes` and more.
    baseline: Compiler,
    baseline_from_bytes: usize,
    cache_dir: Option<PathBuf>,
    stop_ticker: Arc<AtomicBool>,
}

impl Shared {
    fn compiler(&self, baseline: bool) -> &Compiler {
        if baseline {
            &self.baseline
        } else {
            &self.optimizing
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

impl PluginRuntime {
    /// Creates the engines, the linkers and the deadline ticker. `cache_dir`, when given, holds
    /// compiled plugins between runs (created if missing).
    pub fn new(cache_dir: Option<PathBuf>) -> anyhow::Result<Self> {
        Self::with_baseline_compiler_from(cache_dir, BASELINE_COMPILER_FROM_BYTES)
    }

    /// The engine settings that shape the code compiled for plugins (the compiler is
    /// Cranelift unless changed); the plugin bench compiles with them too.
    pub fn code_config() -> Config {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            // Virtual address space per memory, not RAM. 4 GiB covers every 32-bit address,
            // so with the guard region Cranelift drops the bounds check of each load and
            // store (a smaller reservation needs an explicit check on every access). 64-bit
            // Linux has room for ~30 000 such instances; memories never move.
            .memory_reservation(4 << 30)
            .memory_guard_size(32 << 20)
            .max_wasm_stack(1 << 20);
        config
    }

    /// Like [`PluginRuntime::new`], with components of `bytes` and more compiled by Winch
    /// (0: every component; `usize::MAX`: none).
    pub fn with_baseline_compiler_from(
        cache_dir: Option<PathBuf>,
        bytes: usize,
    ) -> anyhow::Result<Self> {
        let mut config = Self::code_config();
        // `TANDEM_WASM_PROFILE=perfmap` lets `perf` name the functions of plugin code, for
        // plugin authors profiling their mapping.
        if std::env::var_os("TANDEM_WASM_PROFILE").is_some_and(|v| v == "perfmap") {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let optimizing = Compiler::new(&config)?;
        config.strategy(wasmtime::Strategy::Winch);
        let baseline = Compiler::new(&config)?;

        if let Some(dir) = &cache_dir {
            std::fs::create_dir_all(dir).map_err(|e| {
                anyhow::anyhow!(
                    "could not create plugin cache directory {}: {e}",
                    dir.display()
                )
            })?;
        }

        let stop_ticker = Arc::new(AtomicBool::new(false));
        let ticker_engines = [optimizing.engine.clone(), baseline.engine.clone()];
        let stop = stop_ticker.clone();
        std::thread::Builder::new()
            .name("tandem-plugin-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    for engine in &ticker_engines {
                        engine.increment_epoch();
                    }
                }
            })?;

        Ok(PluginRuntime {
            shared: Arc::new(Shared {
                optimizing,
                baseline,
                baseline_from_bytes: bytes,
                cache_dir,
                stop_ticker,
            }),
        })
    }

    /// Loads a mapping plugin (world `mapper`, WIT 0.2.0 or 0.1.0).
    pub fn load_mapper(
        &self,
        name: &str,
        wasm: &[u8],
        limits: Limits,
        config: BTreeMap<String, String>,
    ) -> Result<MapperPlugin, PluginLoadError> {
        let exports = [v0_2::MAPPING_EXPORT, v0_1::MAPPING_EXPORT];
        let (loaded, export) = self.load(name, wasm, limits, config, "mapper", exports)?;
        let pre = if export == v0_2::MAPPING_EXPORT {
            v0_2::mapper::MapperPre::new(loaded.instance_pre.clone()).map(MapperPre::V0_2)
        } else {
            v0_1::mapper::MapperPre::new(loaded.instance_pre.clone()).map(MapperPre::V0_1)
        }
        .map_err(|e| wrong_shape(&loaded, "mapper", export, e))?;
        Ok(MapperPlugin { loaded, pre })
    }

    /// Loads a filter plugin (world `filter`, WIT 0.2.0 or 0.1.0).
    pub fn load_filter(
        &self,
        name: &str,
        wasm: &[u8],
        limits: Limits,
        config: BTreeMap<String, String>,
    ) -> Result<FilterPlugin, PluginLoadError> {
        let exports = [v0_2::FILTER_EXPORT, v0_1::FILTER_EXPORT];
        let (loaded, export) = self.load(name, wasm, limits, config, "filter", exports)?;
        let pre = if export == v0_2::FILTER_EXPORT {
            v0_2::filter::FilterPre::new(loaded.instance_pre.clone()).map(FilterPre::V0_2)
        } else {
            v0_1::filter::FilterPre::new(loaded.instance_pre.clone()).map(FilterPre::V0_1)
        }
        .map_err(|e| wrong_shape(&loaded, "filter", export, e))?;
        Ok(FilterPlugin { loaded, pre })
    }

    /// Loads a conflict-policy plugin (world `conflict-policy`, WIT 0.2.0 or 0.1.0).
    pub fn load_conflict_policy(
        &self,
        name: &str,
        wasm: &[u8],
        limits: Limits,
        config: BTreeMap<String, String>,
    ) -> Result<ConflictPolicyPlugin, PluginLoadError> {
        let exports = [v0_2::CONFLICT_EXPORT, v0_1::CONFLICT_EXPORT];
        let kind = "conflict-policy";
        let (loaded, export) = self.load(name, wasm, limits, config, kind, exports)?;
        let pre = if export == v0_2::CONFLICT_EXPORT {
            v0_2::conflict_policy::ConflictPolicyPre::new(loaded.instance_pre.clone())
                .map(ConflictPolicyPre::V0_2)
        } else {
            v0_1::conflict_policy::ConflictPolicyPre::new(loaded.instance_pre.clone())
                .map(ConflictPolicyPre::V0_1)
        }
        .map_err(|e| wrong_shape(&loaded, kind, export, e))?;
        Ok(ConflictPolicyPlugin { loaded, pre })
    }

    /// Compiles or loads from cache, checks the world, links. `exports` are the WIT names a
    /// plugin of this kind may export, newest version first; returns the one it does.
    fn load(
        &self,
        name: &str,
        wasm: &[u8],
        limits: Limits,
        config: BTreeMap<String, String>,
        kind: &'static str,
        exports: [&'static str; 2],
    ) -> Result<(Loaded, &'static str), PluginLoadError> {
        if limits.memory_bytes == 0 || limits.memory_bytes > MAX_MEMORY_BYTES {
            return Err(PluginLoadError::Limits {
                plugin: name.into(),
                message: format!(
                    "memory_bytes is {}, it must be between 1 and {MAX_MEMORY_BYTES}",
                    limits.memory_bytes
                ),
            });
        }
        if limits.call_deadline.is_zero() {
            return Err(PluginLoadError::Limits {
                plugin: name.into(),
                message: "call_deadline must be above zero".into(),
            });
        }

        let shared = &self.shared;
        let baseline = wasm.len() >= shared.baseline_from_bytes;
        let compiler = shared.compiler(baseline);
        let sha256 = cache::sha256_hex(wasm);
        let started = std::time::Instant::now();
        let (component, outcome) = cache::load(
            &compiler.engine,
            &compiler.engine_key,
            shared.cache_dir.as_deref(),
            name,
            wasm,
            &sha256,
        )
        .map_err(|e| PluginLoadError::Compile {
            plugin: name.into(),
            message: format!("{e:#}"),
        })?;

        let found: Vec<String> = component
            .component_type()
            .exports(&compiler.engine)
            .map(|(export_name, _)| export_name.to_owned())
            .collect();
        let Some(export) = exports
            .into_iter()
            .find(|wanted| found.iter().any(|e| e == wanted))
        else {
            return Err(PluginLoadError::WrongWorld {
                plugin: name.into(),
                expected_kind: kind,
                expected_export: exports[0],
                found: if found.is_empty() {
                    "none".into()
                } else {
                    found.join(", ")
                },
            });
        };

        let instance_pre =
            compiler
                .linker
                .instantiate_pre(&component)
                .map_err(|e| PluginLoadError::Link {
                    plugin: name.into(),
                    message: format!("{e:#}"),
                })?;

        tracing::debug!(
            plugin = name,
            kind,
            export,
            sha256 = %sha256,
            cache = ?outcome,
            compiler = if baseline { "winch" } else { "cranelift" },
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "Loaded plugin."
        );
        let loaded = Loaded {
            meta: Arc::new(Meta {
                name: name.into(),
                sha256,
                limits,
                config,
                cache_outcome: outcome,
                baseline,
                shared: shared.clone(),
            }),
            instance_pre,
        };
        Ok((loaded, export))
    }
}

/// The WASI clock interface whose waits are disabled (wasmtime-wasi 48 provides 0.2.12;
/// components importing older 0.2.x versions link against it too).
const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// Makes WASI's ways to wait for time to pass trap instead of blocking.
///
/// A guest blocked inside a host call (`std::thread::sleep` ends up in
/// `monotonic-clock.subscribe-duration` + `poll`) is out of reach of epoch interruption, so a
/// sleeping plugin would hold its thread past any deadline. A plugin has no reason to wait:
/// the pollables it could otherwise get (closed stdin, discarding stdout/stderr) are always
/// ready, so with these two gone `poll` never blocks.
fn forbid_waiting(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut clock = linker.instance(MONOTONIC_CLOCK)?;
    clock.func_wrap(
        "subscribe-duration",
        |_store, (_nanos,): (u64,)| -> wasmtime::Result<(Resource<DynPollable>,)> {
            Err(wasmtime::format_err!(
                "plugins may not sleep or wait (wasi:clocks/monotonic-clock.subscribe-duration)"
            ))
        },
    )?;
    clock.func_wrap(
        "subscribe-instant",
        |_store, (_when,): (u64,)| -> wasmtime::Result<(Resource<DynPollable>,)> {
            Err(wasmtime::format_err!(
                "plugins may not sleep or wait (wasi:clocks/monotonic-clock.subscribe-instant)"
            ))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Everything about a loaded plugin that doesn't depend on its kind.
#[derive(Clone)]
struct Loaded {
    meta: Arc<Meta>,
    instance_pre: InstancePre<PluginState>,
}

struct Meta {
    name: String,
    sha256: String,
    limits: Limits,
    config: BTreeMap<String, String>,
    cache_outcome: CacheOutcome,
    /// Compiled by the baseline compiler (Winch).
    baseline: bool,
    /// Keeps the engines ticking while any plugin handle or instance lives.
    shared: Arc<Shared>,
}

fn wrong_shape(
    loaded: &Loaded,
    kind: &'static str,
    export: &'static str,
    error: wasmtime::Error,
) -> PluginLoadError {
    PluginLoadError::WrongWorld {
        plugin: loaded.meta.name.clone(),
        expected_kind: kind,
        expected_export: export,
        found: format!("an export of that name with other types ({error:#})"),
    }
}

impl Loaded {
    fn new_store(&self) -> Store<PluginState> {
        let meta = self.meta.clone();
        let limiter = Limiter {
            memory_bytes: meta.limits.memory_bytes,
            memory_denied: false,
        };
        let state = PluginState {
            // An empty context: no preopens, env, args, stdio or network.
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limiter,
            log_lines: 0,
            meta,
            config_overrides: BTreeMap::new(),
        };
        let mut store = Store::new(&self.meta.shared.compiler(self.meta.baseline).engine, state);
        store.limiter(|state| &mut state.limiter);
        store.epoch_deadline_trap();
        store
    }

    /// Ticks until the deadline, plus one because the current tick is already partly gone.
    fn deadline_ticks(&self) -> u64 {
        let ticks = self
            .meta
            .limits
            .call_deadline
            .as_nanos()
            .div_ceil(EPOCH_TICK.as_nanos());
        u64::try_from(ticks).unwrap_or(u64::MAX - 1) + 1
    }

    /// Turns a wasmtime error from a call or instantiation into a typed error.
    fn classify(&self, error: wasmtime::Error, memory_denied: bool) -> PluginCallError {
        let plugin = self.meta.name.clone();
        if memory_denied {
            return PluginCallError::OutOfMemory {
                plugin,
                limit: self.meta.limits.memory_bytes,
            };
        }
        if let Some(Trap::Interrupt) = error.downcast_ref::<Trap>() {
            return PluginCallError::Timeout {
                plugin,
                deadline: self.meta.limits.call_deadline,
            };
        }
        PluginCallError::Trap {
            plugin,
            message: truncated(format!("{error:?}"), MAX_TRAP_MESSAGE),
        }
    }

    /// Runs `call` against a live instance, instantiating one first when there is none.
    /// Any trap discards the instance. The call is a `plugin_call` span and its time goes
    /// to the `tandem_plugin_call_seconds` histogram under `function`.
    fn call<B: Send + Sync, R: Send>(
        &self,
        function: &'static str,
        live: &mut Option<Live<B>>,
        instantiate: impl FnOnce(&mut Store<PluginState>) -> wasmtime::Result<B> + Send,
        call: impl FnOnce(&B, &mut Store<PluginState>) -> wasmtime::Result<R> + Send,
    ) -> Result<R, PluginCallError> {
        let _span = tracing::debug_span!("plugin_call", plugin = %self.meta.name, function).entered();
        let _timer = call_stats::PluginCallTimer::start(&self.meta.name, function);
        let mut current = match live.take() {
            Some(current) => current,
            None => self.instantiate(instantiate)?,
        };
        let store = &mut current.store;
        store.set_epoch_deadline(self.deadline_ticks());
        store.data_mut().limiter.memory_denied = false;
        store.data_mut().log_lines = 0;
        let Live { bindings, store } = &mut current;
        match blocking_allowed(|| call(bindings, store)) {
            Ok(result) => {
                *live = Some(current);
                Ok(result)
            }
            Err(error) => {
                // `current` is dropped here: the next call instantiates afresh.
                let denied = current.store.data().limiter.memory_denied;
                let error = self.classify(error, denied);
                tracing::warn!(
                    plugin = %self.meta.name,
                    error = %error,
                    "Plugin call failed; discarding the instance."
                );
                Err(error)
            }
        }
    }

    fn instantiate<B: Send>(
        &self,
        instantiate: impl FnOnce(&mut Store<PluginState>) -> wasmtime::Result<B> + Send,
    ) -> Result<Live<B>, PluginCallError> {
        let mut store = self.new_store();
        store.set_epoch_deadline(self.deadline_ticks());
        match blocking_allowed(|| instantiate(&mut store)) {
            Ok(bindings) => Ok(Live { bindings, store }),
            Err(error) => {
                let denied = store.data().limiter.memory_denied;
                Err(self.classify(error, denied))
            }
        }
    }

    fn plugin_error(&self, error: impl Into<PluginError>) -> PluginCallError {
        PluginCallError::Plugin {
            plugin: self.meta.name.clone(),
            error: error.into(),
        }
    }

    fn bad_input(&self, message: String) -> PluginCallError {
        PluginCallError::BadInput {
            plugin: self.meta.name.clone(),
            message,
        }
    }

    fn bad_output(&self, message: String) -> PluginCallError {
        PluginCallError::BadOutput {
            plugin: self.meta.name.clone(),
            message,
        }
    }

    /// A conversion of a host record for the plugin, its failure a `BadInput`.
    fn input<T>(&self, converted: Result<T, String>) -> Result<T, PluginCallError> {
        converted.map_err(|m| self.bad_input(m))
    }

    /// A conversion of a plugin's answer, its failure a `BadOutput`.
    fn output<T>(&self, converted: Result<T, String>) -> Result<T, PluginCallError> {
        converted.map_err(|m| self.bad_output(m))
    }

    /// The error for bindings of another WIT version than the plugin's (can't happen: an
    /// instance is made from its plugin's own `InstancePre`).
    fn version_mismatch() -> wasmtime::Error {
        wasmtime::format_err!("internal error: plugin bindings of the wrong WIT version")
    }
}

/// Runs wasm so that the WASI host functions it may reach are allowed to block.
///
/// wasmtime-wasi's synchronous bindings run their async parts with `Handle::block_on`, which
/// panics on a thread that drives async tasks; a plugin reaches them by writing to stderr (a
/// Rust panic message does). The engine calls plugins from async sync runs, so on a worker of
/// a multi-threaded runtime the call runs under `block_in_place`, and on a current-thread
/// runtime (where that is not possible) on a scoped helper thread.
fn blocking_allowed<R: Send>(run: impl FnOnce() -> R + Send) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|handle| handle.runtime_flavor()) {
        Err(_) => run(),
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(run),
        Ok(_) => std::thread::scope(|scope| {
            scope
                .spawn(run)
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        }),
    }
}

/// An instantiated component and its store.
struct Live<B> {
    bindings: B,
    store: Store<PluginState>,
}

/// The call context as WIT 0.2.0's `context`.
fn context_v0_2(ctx: &CallContext) -> v0_2::types::Context {
    v0_2::types::Context {
        domain: ctx.domain.clone(),
        user: ctx.user.clone(),
    }
}

/// The call context as WIT 0.1.0's `context`.
fn context_v0_1(ctx: &CallContext) -> v0_1::types::Context {
    v0_1::types::Context {
        domain: ctx.domain.clone(),
        user: ctx.user.clone(),
    }
}

impl From<v0_2::types::PluginError> for PluginError {
    fn from(error: v0_2::types::PluginError) -> Self {
        match error {
            v0_2::types::PluginError::InvalidRecord(m) => PluginError::InvalidRecord(m),
            v0_2::types::PluginError::Other(m) => PluginError::Other(m),
        }
    }
}

impl From<v0_1::types::PluginError> for PluginError {
    fn from(error: v0_1::types::PluginError) -> Self {
        match error {
            v0_1::types::PluginError::InvalidRecord(m) => PluginError::InvalidRecord(m),
            v0_1::types::PluginError::Other(m) => PluginError::Other(m),
        }
    }
}

impl From<v0_1::host::Level> for v0_2::host::Level {
    fn from(level: v0_1::host::Level) -> Self {
        match level {
            v0_1::host::Level::Trace => v0_2::host::Level::Trace,
            v0_1::host::Level::Debug => v0_2::host::Level::Debug,
            v0_1::host::Level::Info => v0_2::host::Level::Info,
            v0_1::host::Level::Warn => v0_2::host::Level::Warn,
            v0_1::host::Level::Error => v0_2::host::Level::Error,
        }
    }
}

/// Defines a kind's "prepared for instantiation" type and its instance bindings, one case
/// per WIT version.
macro_rules! versioned_bindings {
    ($pre:ident, $bindings:ident, $world:ident :: $world_pre:ident, $world_ty:ident) => {
        #[derive(Clone)]
        enum $pre {
            V0_1(v0_1::$world::$world_pre<PluginState>),
            V0_2(v0_2::$world::$world_pre<PluginState>),
        }

        enum $bindings {
            V0_1(v0_1::$world::$world_ty),
            V0_2(v0_2::$world::$world_ty),
        }

        impl $pre {
            fn instantiate(&self, store: &mut Store<PluginState>) -> wasmtime::Result<$bindings> {
                Ok(match self {
                    $pre::V0_1(pre) => $bindings::V0_1(pre.instantiate(store)?),
                    $pre::V0_2(pre) => $bindings::V0_2(pre.instantiate(store)?),
                })
            }
        }
    };
}

versioned_bindings!(MapperPre, MapperBindings, mapper::MapperPre, Mapper);
versioned_bindings!(FilterPre, FilterBindings, filter::FilterPre, Filter);
versioned_bindings!(
    ConflictPolicyPre,
    ConflictPolicyBindings,
    conflict_policy::ConflictPolicyPre,
    ConflictPolicy
);

/// Which way a mapping goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    ToExchange,
    ToSiebel,
}

impl Direction {
    /// The WIT function's name, for spans and metrics.
    fn function(self) -> &'static str {
        match self {
            Direction::ToExchange => "to_exchange",
            Direction::ToSiebel => "to_siebel",
        }
    }
}

/// Accessors every plugin handle has.
macro_rules! plugin_handle_accessors {
    () => {
        /// The name the plugin was loaded under.
        pub fn name(&self) -> &str {
            &self.loaded.meta.name
        }

        /// Lowercase hex sha256 of the component's bytes.
        pub fn sha256(&self) -> &str {
            &self.loaded.meta.sha256
        }

        /// The limits every instance runs under.
        pub fn limits(&self) -> Limits {
            self.loaded.meta.limits
        }

        /// Whether loading hit the compile cache.
        pub fn cache_outcome(&self) -> CacheOutcome {
            self.loaded.meta.cache_outcome
        }
    };
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
    live: Option<Live<MapperBindings>>,
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
            _ => Err(self.plugin.loaded.bad_output("not one answer for one record".into())),
        }
    }

    fn map_batch<'a>(
        &mut self,
        ctx: &CallContext,
        records: impl IntoIterator<Item = &'a Fields>,
        direction: Direction,
    ) -> Result<Vec<Result<Fields, PluginCallError>>, PluginCallError> {
        match &self.plugin.pre {
            MapperPre::V0_2(_) => self.map_packed(ctx, records, direction),
            MapperPre::V0_1(_) => records
                .into_iter()
                .map(|record| self.map_v0_1(ctx, record, direction))
                .collect::<Result<Vec<_>, _>>(),
        }
    }

    /// A 0.2.0 plugin: the batch packed into one call. Answers whose record can't be sent
    /// are `BadInput` in place; the others come from the plugin in order.
    fn map_packed<'a>(
        &mut self,
        ctx: &CallContext,
        records: impl IntoIterator<Item = &'a Fields>,
        direction: Direction,
    ) -> Result<Vec<Result<Fields, PluginCallError>>, PluginCallError> {
        let loaded = &self.plugin.loaded;
        let records = records.into_iter();
        let mut answers = Vec::with_capacity(records.size_hint().0);
        let mut sent_to = Vec::with_capacity(records.size_hint().0);
        let mut batch = convert::PackedBatch::new(records.size_hint().0);
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
        let ctx = context_v0_2(ctx);
        let pre = &self.plugin.pre;
        let packed_results = loaded.call(
            direction.function(),
            &mut self.live,
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
        let results = loaded.output(convert::unpack_answers(packed_results, sent_to.len()))?;
        for (slot, result) in sent_to.into_iter().zip(results) {
            answers[slot] = match result {
                convert::PackedAnswer::Record(fields) => loaded.output(fields),
                convert::PackedAnswer::Error(error) => Err(loaded.plugin_error(error)),
            };
        }
        Ok(answers)
    }

    /// A 0.1.0 plugin: one record per call. `Ok` holds the record's own answer; `Err` is a
    /// failure of the call (trap, timeout, out-of-memory).
    fn map_v0_1(
        &mut self,
        ctx: &CallContext,
        record: &Fields,
        direction: Direction,
    ) -> Result<Result<Fields, PluginCallError>, PluginCallError> {
        let loaded = &self.plugin.loaded;
        let input = match loaded.input(convert::v0_1::fields_to_wit(record)) {
            Ok(input) => input,
            Err(bad_input) => return Ok(Err(bad_input)),
        };
        let ctx = context_v0_1(ctx);
        let pre = &self.plugin.pre;
        let result = loaded.call(
            direction.function(),
            &mut self.live,
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
            Ok(fields) => loaded.output(convert::v0_1::fields_from_wit(fields)),
            Err(error) => Err(loaded.plugin_error(error)),
        })
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
        let loaded = &self.plugin.loaded;
        let pre = &self.plugin.pre;
        // The same call in either WIT version, on that version's types.
        macro_rules! include_with {
            ($v:ident, $variant:ident, $context:ident) => {{
                use $v::filter::exports::tandem::plugin::record_filter::Side as WitSide;
                let input = loaded.input(convert::$v::fields_to_wit(record))?;
                let ctx = $context(ctx);
                let side = match side {
                    Side::Siebel => WitSide::Siebel,
                    Side::Exchange => WitSide::Exchange,
                };
                let result = loaded.call(
                    "include",
                    &mut self.live,
                    |store| pre.instantiate(store),
                    |bindings, store| {
                        let FilterBindings::$variant(bindings) = bindings else {
                            return Err(Loaded::version_mismatch());
                        };
                        bindings
                            .tandem_plugin_record_filter()
                            .call_include(store, &ctx, side, &input)
                    },
                )?;
                result.map_err(|error| loaded.plugin_error(error))
            }};
        }
        match pre {
            FilterPre::V0_2(_) => include_with!(v0_2, V0_2, context_v0_2),
            FilterPre::V0_1(_) => include_with!(v0_1, V0_1, context_v0_1),
        }
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
        let loaded = &self.plugin.loaded;
        let pre = &self.plugin.pre;
        // The same call in either WIT version, on that version's types.
        macro_rules! resolve_with {
            ($v:ident, $variant:ident, $context:ident) => {{
                use $v::conflict_policy::exports::tandem::plugin::conflict_resolution as wit_res;
                let input = wit_res::Conflict {
                    base: conflict
                        .base
                        .as_ref()
                        .map(|b| loaded.input(convert::$v::fields_to_wit(b)))
                        .transpose()?,
                    siebel: loaded.input(convert::$v::fields_to_wit(&conflict.siebel))?,
                    exchange: loaded.input(convert::$v::fields_to_wit(&conflict.exchange))?,
                };
                let ctx = $context(ctx);
                let result = loaded.call(
                    "resolve",
                    &mut self.live,
                    |store| pre.instantiate(store),
                    |bindings, store| {
                        let ConflictPolicyBindings::$variant(bindings) = bindings else {
                            return Err(Loaded::version_mismatch());
                        };
                        bindings
                            .tandem_plugin_conflict_resolution()
                            .call_resolve(store, &ctx, &input)
                    },
                )?;
                Ok(match result.map_err(|error| loaded.plugin_error(error))? {
                    wit_res::Resolution::TakeSiebel => Resolution::TakeSiebel,
                    wit_res::Resolution::TakeExchange => Resolution::TakeExchange,
                    wit_res::Resolution::Merged(fields) => {
                        Resolution::Merged(loaded.output(convert::$v::fields_from_wit(fields))?)
                    }
                    wit_res::Resolution::KeepBoth => Resolution::KeepBoth,
                    wit_res::Resolution::Defer(reason) => Resolution::Defer(reason),
                })
            }};
        }
        match pre {
            ConflictPolicyPre::V0_2(_) => resolve_with!(v0_2, V0_2, context_v0_2),
            ConflictPolicyPre::V0_1(_) => resolve_with!(v0_1, V0_1, context_v0_1),
        }
    }
}

/// The data of one plugin store.
struct PluginState {
    meta: Arc<Meta>,
    /// Configuration values of this instance over the package's (per-user settings).
    config_overrides: BTreeMap<String, String>,
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
    /// Log lines written in the current call.
    log_lines: u32,
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl v0_2::types::Host for PluginState {}
impl v0_1::types::Host for PluginState {}

impl v0_1::host::Host for PluginState {
    fn log(&mut self, level: v0_1::host::Level, message: String) {
        v0_2::host::Host::log(self, level.into(), message);
    }

    fn config(&mut self, key: String) -> Option<String> {
        v0_2::host::Host::config(self, key)
    }
}

impl v0_2::host::Host for PluginState {
    fn log(&mut self, level: v0_2::host::Level, message: String) {
        let plugin = self.meta.name.as_str();
        self.log_lines = self.log_lines.saturating_add(1);
        if self.log_lines > MAX_LOG_LINES_PER_CALL {
            if self.log_lines == MAX_LOG_LINES_PER_CALL + 1 {
                tracing::warn!(
                    plugin,
                    "Plugin wrote more than {MAX_LOG_LINES_PER_CALL} log lines in one call; \
                     dropping the rest of this call's lines."
                );
            }
            return;
        }
        let message = truncated(message, MAX_LOG_LINE);
        match level {
            v0_2::host::Level::Trace => tracing::trace!(plugin, "{message}"),
            v0_2::host::Level::Debug => tracing::debug!(plugin, "{message}"),
            v0_2::host::Level::Info => tracing::info!(plugin, "{message}"),
            v0_2::host::Level::Warn => tracing::warn!(plugin, "{message}"),
            v0_2::host::Level::Error => tracing::error!(plugin, "{message}"),
        }
    }

    fn config(&mut self, key: String) -> Option<String> {
        self.config_overrides.get(&key).or_else(|| self.meta.config.get(&key)).cloned()
    }
}

/// `text` cut to at most `max` bytes (on a character boundary), marked with "…" when cut.
fn truncated(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// Caps memories, tables and instance counts of one store, remembering whether it refused a
/// memory growth so a resulting trap is reported as out-of-memory.
struct Limiter {
    memory_bytes: usize,
    memory_denied: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.memory_bytes && maximum.is_none_or(|max| desired <= max);
        if !allowed {
            self.memory_denied = true;
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS && maximum.is_none_or(|max| desired <= max))
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

/// Loads the built-in contact mapping with default limits and no configuration.
pub fn load_default_contact_mapping(
    runtime: &PluginRuntime,
) -> Result<MapperPlugin, PluginLoadError> {
    runtime.load_mapper(
        "contact-mapping",
        builtin::CONTACT_MAPPING,
        Limits::default(),
        BTreeMap::new(),
    )
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn check<T: Send + Sync>() {}
    fn check_send<T: Send>() {}
    check::<PluginRuntime>();
    check::<MapperPlugin>();
    check_send::<MapperInstance>();
    check_send::<Component>();
}

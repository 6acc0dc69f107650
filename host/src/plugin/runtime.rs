//! The wasmtime side of plugins, whatever their kind: the two engines (Cranelift, and Winch
//! for big components), the compile cache, loading a component into an `InstancePre`, and
//! running calls under epoch deadlines with their failures typed ([`PluginCallError`]).
//! What a plugin may touch is `sandbox`; what each WIT version looks like is `wit`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::{InstancePre, Linker};
use wasmtime::{Config, Engine, Store, Trap};

use super::sandbox::{self, PluginState};
use super::{
    CacheOutcome, Limits, PluginCallError, PluginError, PluginLoadError, cache, call_stats, wit,
};

/// How often the ticker thread advances the engine's epoch: the granularity of deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// The largest memory cap a plugin may be given.
pub const MAX_MEMORY_BYTES: usize = 1 << 30;

/// Components this big or bigger are compiled by Winch, wasmtime's baseline compiler: an
/// 18 MB Python component compiles in 1.2 s instead of 5–14 s, its code runs slower. Every
/// plugin written in Rust is far below (the default ones are about 100 KB).
pub const BASELINE_COMPILER_FROM_BYTES: usize = 4 << 20;

/// Longest trap message kept (a deep recursion's wasm backtrace runs to thousands of frames).
pub(super) const MAX_TRAP_MESSAGE: usize = 4 * 1024;

/// The process-wide plugin runtime. Cheap to clone (an `Arc`).
#[derive(Clone)]
pub struct PluginRuntime {
    pub(super) shared: Arc<Shared>,
}

impl fmt::Debug for PluginRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginRuntime")
            .field("cache_dir", &self.shared.cache_dir)
            .finish()
    }
}

/// One compiler setup: an engine, the linker over it, and its key in the compile cache.
pub(super) struct Compiler {
    pub(super) engine: Engine,
    linker: Linker<PluginState>,
    engine_key: String,
}

impl Compiler {
    fn new(config: &Config) -> anyhow::Result<Self> {
        let engine = Engine::new(config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        sandbox::forbid_waiting(&mut linker)?;
        // Every WIT version's host imports: plugins built for an older one keep loading.
        wit::add_to_linker(&mut linker)?;
        let engine_key = cache::engine_key(&engine);
        Ok(Compiler {
            engine,
            linker,
            engine_key,
        })
    }
}

/// What every plugin handle keeps alive: the compilers and the ticker.
pub(super) struct Shared {
    /// Cranelift: optimized code.
    pub(super) optimizing: Compiler,
    /// Winch: compiled fast, for components of `baseline_from_bytes` and more.
    baseline: Compiler,
    baseline_from_bytes: usize,
    cache_dir: Option<PathBuf>,
    stop_ticker: Arc<AtomicBool>,
}

impl Shared {
    pub(super) fn compiler(&self, baseline: bool) -> &Compiler {
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

    /// Compiles or loads from cache, checks the world, links. `exports` are the WIT names a
    /// plugin of this kind may export, newest version first; returns the one it does.
    pub(super) fn load(
        &self,
        name: &str,
        wasm: &[u8],
        limits: Limits,
        config: BTreeMap<String, String>,
        kind: &'static str,
        exports: &'static [&'static str],
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
            .iter()
            .copied()
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

/// Everything about a loaded plugin that doesn't depend on its kind.
#[derive(Clone)]
pub(crate) struct Loaded {
    pub(super) meta: Arc<Meta>,
    pub(super) instance_pre: InstancePre<PluginState>,
}

/// What a plugin was loaded as, shared by its handle and its instances' stores.
pub(crate) struct Meta {
    pub(super) name: String,
    pub(super) sha256: String,
    pub(super) limits: Limits,
    pub(super) config: BTreeMap<String, String>,
    pub(super) cache_outcome: CacheOutcome,
    /// Compiled by the baseline compiler (Winch).
    pub(super) baseline: bool,
    /// Keeps the engines ticking while any plugin handle or instance lives.
    pub(super) shared: Arc<Shared>,
}

/// The error for a component whose export has the right name but other types.
pub(super) fn wrong_shape(
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
    /// Ticks until the deadline, plus one because the current tick is already partly gone.
    pub(super) fn deadline_ticks(&self) -> u64 {
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
    pub(super) fn call<B: Send + Sync, R: Send>(
        &self,
        function: &'static str,
        live: &mut Option<Live<B>>,
        instantiate: impl FnOnce(&mut Store<PluginState>) -> wasmtime::Result<B> + Send,
        call: impl FnOnce(&B, &mut Store<PluginState>) -> wasmtime::Result<R> + Send,
    ) -> Result<R, PluginCallError> {
        let _span =
            tracing::debug_span!("plugin_call", plugin = %self.meta.name, function).entered();
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

    pub(super) fn instantiate<B: Send>(
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

    pub(super) fn plugin_error(&self, error: impl Into<PluginError>) -> PluginCallError {
        PluginCallError::Plugin {
            plugin: self.meta.name.clone(),
            error: error.into(),
        }
    }

    pub(super) fn bad_input(&self, message: String) -> PluginCallError {
        PluginCallError::BadInput {
            plugin: self.meta.name.clone(),
            message,
        }
    }

    pub(super) fn bad_output(&self, message: String) -> PluginCallError {
        PluginCallError::BadOutput {
            plugin: self.meta.name.clone(),
            message,
        }
    }

    /// A conversion of a host record for the plugin, its failure a `BadInput`.
    pub(super) fn input<T>(&self, converted: Result<T, String>) -> Result<T, PluginCallError> {
        converted.map_err(|m| self.bad_input(m))
    }

    /// A conversion of a plugin's answer, its failure a `BadOutput`.
    pub(super) fn output<T>(&self, converted: Result<T, String>) -> Result<T, PluginCallError> {
        converted.map_err(|m| self.bad_output(m))
    }

    /// The error for bindings of another WIT version than the plugin's (can't happen: an
    /// instance is made from its plugin's own `InstancePre`).
    pub(super) fn version_mismatch() -> wasmtime::Error {
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
pub(super) fn blocking_allowed<R: Send>(run: impl FnOnce() -> R + Send) -> R {
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
pub(crate) struct Live<B> {
    pub(super) bindings: B,
    pub(super) store: Store<PluginState>,
}

/// `text` cut to at most `max` bytes (on a character boundary), marked with "…" when cut.
pub(super) fn truncated(mut text: String, max: usize) -> String {
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

//! What a plugin may touch, and how much: each store's WASI context (empty: no files,
//! environment, arguments, network or stdio), WASI's waits made to trap, caps on memories,
//! tables and instances, and the host imports (`log`, capped per call; `config`).

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::component::{Linker, Resource, ResourceTable};
use wasmtime::{ResourceLimiter, Store};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::runtime::{Loaded, Meta, truncated};
use super::wit::latest::host::Level;

/// Longest log line a plugin may write; longer ones are cut.
const MAX_LOG_LINE: usize = 8 * 1024;

/// Log lines a plugin may write per call; the rest are dropped (a plugin can't flood logs).
pub(super) const MAX_LOG_LINES_PER_CALL: u32 = 100;

/// Table elements (function references) one store may hold.
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Core instances, tables and memories one store may hold. A Rust component has a handful.
const MAX_INSTANCES: usize = 64;
const MAX_TABLES: usize = 64;
const MAX_MEMORIES: usize = 8;

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
pub(super) fn forbid_waiting(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
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

impl Loaded {
    /// A store for one instance: the sandbox's WASI context and limits, a deadline trap.
    pub(super) fn new_store(&self) -> Store<PluginState> {
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
}

/// The data of one plugin store.
pub(crate) struct PluginState {
    meta: Arc<Meta>,
    /// Configuration values of this instance over the package's (per-user settings).
    pub(super) config_overrides: BTreeMap<String, String>,
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) limiter: Limiter,
    /// Log lines written in the current call.
    pub(super) log_lines: u32,
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The host imports (`tandem:plugin/host`), on the newest WIT version's types; each version's
/// bindings forward to these.
impl PluginState {
    /// `log`: to `tracing`, tagged with the plugin's name; at most
    /// [`MAX_LOG_LINES_PER_CALL`] lines per call, each at most [`MAX_LOG_LINE`] bytes.
    pub(crate) fn write_log(&mut self, level: Level, message: String) {
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
            Level::Trace => tracing::trace!(plugin, "{message}"),
            Level::Debug => tracing::debug!(plugin, "{message}"),
            Level::Info => tracing::info!(plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin, "{message}"),
            Level::Error => tracing::error!(plugin, "{message}"),
        }
    }

    /// `config`: this instance's override of `key`, else the package's value.
    pub(crate) fn config_value(&self, key: String) -> Option<String> {
        self.config_overrides
            .get(&key)
            .or_else(|| self.meta.config.get(&key))
            .cloned()
    }
}

/// Caps memories, tables and instance counts of one store, remembering whether it refused a
/// memory growth so a resulting trap is reported as out-of-memory.
pub(super) struct Limiter {
    memory_bytes: usize,
    /// A memory growth was refused since the flag was last cleared.
    pub(super) memory_denied: bool,
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

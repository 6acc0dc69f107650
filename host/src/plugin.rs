//! The plugin runtime: loads WebAssembly component plugins (mapping, filter, conflict
//! policy; WIT `tandem:plugin@0.2.0`, and plugins built against the frozen 0.1.0) and runs
//! them sandboxed, so a buggy or hostile plugin can fail a record but never the host.
//!
//! - One [`PluginRuntime`] per process (`runtime`): two wasmtime engines, each with its
//!   linker — Cranelift (optimized code) for ordinary plugins and Winch (a baseline compiler,
//!   about 5× faster to compile) for components of [`BASELINE_COMPILER_FROM_BYTES`] and more,
//!   such as a Python interpreter, so they go live in about a second — a ticker thread for
//!   deadlines, an optional on-disk cache of compiled plugins (`cache`).
//! - `load_*` compiles (or loads from cache), checks the component's world and links it:
//!   a [`MapperPlugin`] / [`FilterPlugin`] / [`ConflictPolicyPlugin`] (`mapper`, `filter`,
//!   `conflict_policy`) is cheap to clone.
//! - `instantiate()` per sync gives an instance with its own store: each call has a deadline
//!   and the store a memory cap ([`Limits`]). A trap, timeout or out-of-memory is a typed
//!   [`PluginCallError`]; the instance then drops its store and the next call starts afresh.
//!
//! Plugins get WASI p2 linked with an empty context (`sandbox`): no files, no environment,
//! no arguments, no network, no stdio. They can log (to `tracing`, tagged with the plugin
//! name) and read their own configuration map.
//!
//! Each WIT version is a module of `wit` (its bindings, conversions and calls) and a row of
//! its table. A 0.2.0 mapper takes records in packed batches (`packed`;
//! [`MapperInstance::to_exchange_batch`]; a single record is a batch of one); a 0.1.0 mapper
//! is adapted by sending records one at a time. Filters and conflict policies are the same in
//! both versions.
//!
//! Calls are synchronous and CPU-bound (bounded by the deadline): from async code, run them
//! in `tokio::task::spawn_blocking`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use wasmtime::component::Component;

use crate::record::Fields;

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

pub mod builtin;
mod cache;
pub(crate) use cache::sha256_hex;
mod call_stats;
mod conflict_policy;
mod filter;
mod mapper;
mod packed;
mod runtime;
mod sandbox;
mod wit;

#[cfg(test)]
mod tests;

pub use cache::CacheOutcome;
pub use call_stats::{
    OVERFLOW_PLUGIN, PLUGIN_CALL_BUCKETS, PluginCallSeries, plugin_call_series, record_plugin_call,
};
pub use conflict_policy::{ConflictPolicyInstance, ConflictPolicyPlugin};
pub use filter::{FilterInstance, FilterPlugin};
pub use mapper::{MapperInstance, MapperPlugin};
pub use runtime::{BASELINE_COMPILER_FROM_BYTES, EPOCH_TICK, MAX_MEMORY_BYTES, PluginRuntime};
pub use wit::loads_api_version;

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

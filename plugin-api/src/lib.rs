//! Write Tandem mapping, filter and conflict-policy plugins in a few lines.
//!
//! A Tandem plugin is a WebAssembly component built for `wasm32-wasip2`. This crate hides
//! the WIT bindings (`wit/tandem-plugin.wit`, package `tandem:plugin@0.2.0`) behind plain
//! Rust types and three traits, one per plugin kind:
//!
//! | plugin kind      | trait              | export macro                  |
//! |------------------|--------------------|-------------------------------|
//! | field mapping    | [`Mapper`]         | [`export_mapper!`]            |
//! | record filter    | [`Filter`]         | [`export_filter!`]            |
//! | conflict policy  | [`ConflictPolicy`] | [`export_conflict_policy!`]   |
//!
//! A plugin crate is a `cdylib` (add `rlib` too if you want to call it natively, e.g. from
//! tests) that depends on `tandem-plugin-api` only:
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib", "rlib"]
//!
//! [dependencies]
//! tandem-plugin-api = { path = "../../plugin-api" }
//! ```
//!
//! # Example: a complete mapping plugin
//!
//! ```
//! use tandem_plugin_api::{export_mapper, Context, Fields, Mapper, PluginError};
//!
//! struct Titles;
//!
//! impl Mapper for Titles {
//!     fn to_exchange(ctx: &Context, siebel: Fields) -> Result<Fields, PluginError> {
//!         tandem_plugin_api::debug!("mapping a record of {}", ctx.user);
//!         let mut out = Fields::new();
//!         // "Job Title" → "JobTitle", Null when blank or missing.
//!         out.set_from("JobTitle", &siebel, "Job Title");
//!         Ok(out)
//!     }
//!
//!     fn to_siebel(_ctx: &Context, exchange: Fields) -> Result<Fields, PluginError> {
//!         let title = exchange
//!             .get_text("JobTitle")
//!             .ok_or_else(|| PluginError::InvalidRecord("JobTitle is missing".into()))?;
//!         let mut out = Fields::new();
//!         out.set("Job Title", title);
//!         Ok(out)
//!     }
//! }
//!
//! export_mapper!(Titles);
//! # fn main() {
//! #     let ctx = Context { domain: "contacts".into(), user: "SADMIN".into() };
//! #     let mut rec = Fields::new();
//! #     rec.set("Job Title", "CEO");
//! #     let out = Titles::to_exchange(&ctx, rec).unwrap();
//! #     assert_eq!(out.get_text("JobTitle"), Some("CEO"));
//! # }
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2`; the `.wasm` file in
//! `target/wasm32-wasip2/release/` is the component the host loads.
//!
//! # What a plugin can do
//!
//! Plugins run sandboxed: no files, no network, no environment, no clock beyond what WASI
//! gives every component, a deadline per call and a memory cap. They can write to the
//! host's log ([`info!`], [`warn!`], ... or [`log`]) and read their configuration
//! ([`config`]). Return [`PluginError`] for records you can't handle: the host quarantines
//! the record and retries it later. A panic is a trap: the host discards the instance and
//! reports the record as failed.
//!
//! Exporting more than one kind from one crate is allowed (each macro exports its own
//! interface); a crate that exports only a mapper is a valid `mapper` component and
//! nothing else.

#![deny(missing_docs)]

use std::fmt;

#[doc(hidden)]
pub mod __private;
pub mod fields;
pub mod small_alloc;

pub use fields::Fields;

/// Plugins allocate from [`small_alloc::SmallAlloc`] unless the `small-alloc` feature is off.
#[cfg(all(target_arch = "wasm32", feature = "small-alloc"))]
#[global_allocator]
static ALLOCATOR: small_alloc::SmallAlloc = small_alloc::SmallAlloc::new();

/// The WIT package version this crate implements.
pub const WIT_VERSION: &str = "0.2.0";

/// A point in time in UTC: seconds since the Unix epoch plus nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct DateTime {
    /// Whole seconds since 1970-01-01T00:00:00Z (negative before).
    pub seconds: i64,
    /// Nanoseconds within the second, below 1,000,000,000.
    pub nanoseconds: u32,
}

/// One element of a list value (WIT has no recursive types, so lists hold scalars).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Scalar {
    /// No value.
    #[default]
    Null,
    /// Text.
    Text(String),
    /// A whole number.
    Integer(i64),
    /// A floating-point number.
    Number(f64),
    /// True or false.
    Boolean(bool),
    /// A point in time.
    DateTime(DateTime),
}

/// The value of one field of a Siebel record or an Exchange item.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    /// No value. A mapped field set to `Null` tells the host to clear it on the other side.
    #[default]
    Null,
    /// Text.
    Text(String),
    /// A whole number.
    Integer(i64),
    /// A floating-point number.
    Number(f64),
    /// True or false.
    Boolean(bool),
    /// A point in time.
    DateTime(DateTime),
    /// A list of scalars, e.g. Exchange `Categories`.
    List(Vec<Scalar>),
}

impl Value {
    /// A text value.
    pub fn text(text: impl Into<String>) -> Self {
        Value::Text(text.into())
    }

    /// A list of texts, e.g. `Value::text_list(["Siebel Contact"])`.
    pub fn text_list<I, S>(items: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Value::List(items.into_iter().map(|s| Scalar::Text(s.into())).collect())
    }

    /// The text, when this is a text value.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(text) => Some(text),
            _ => None,
        }
    }

    /// The number, when this is an integer value.
    pub fn as_integer(&self) -> Option<i64> {
        match self {
            Value::Integer(n) => Some(*n),
            _ => None,
        }
    }

    /// The number, when this is a number or an integer value.
    pub fn as_number(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            Value::Integer(n) => Some(*n as f64),
            _ => None,
        }
    }

    /// The flag, when this is a boolean value.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    /// The time, when this is a date-time value.
    pub fn as_date_time(&self) -> Option<DateTime> {
        match self {
            Value::DateTime(t) => Some(*t),
            _ => None,
        }
    }

    /// The items, when this is a list value.
    pub fn as_list(&self) -> Option<&[Scalar]> {
        match self {
            Value::List(items) => Some(items),
            _ => None,
        }
    }

    /// True for `Null` and for empty text: both mean "no value" on either side.
    pub fn is_blank(&self) -> bool {
        match self {
            Value::Null => true,
            Value::Text(text) => text.is_empty(),
            _ => false,
        }
    }

    /// This value, or `Null` when it is blank: use it to make "empty" mean "clear the field".
    pub fn or_null(self) -> Self {
        if self.is_blank() { Value::Null } else { self }
    }
}

impl From<&str> for Value {
    fn from(text: &str) -> Self {
        Value::Text(text.to_owned())
    }
}

impl From<String> for Value {
    fn from(text: String) -> Self {
        Value::Text(text)
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::Integer(n)
    }
}

impl From<f64> for Value {
    fn from(n: f64) -> Self {
        Value::Number(n)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Boolean(b)
    }
}

impl From<DateTime> for Value {
    fn from(t: DateTime) -> Self {
        Value::DateTime(t)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(value: Option<T>) -> Self {
        value.map_or(Value::Null, Into::into)
    }
}

/// What the host tells a plugin about the record at hand.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Context {
    /// The sync domain: "contacts", "employees", "personal-contacts", "calendar" or "tasks".
    pub domain: String,
    /// The Siebel login of the user whose data is being synced.
    pub user: String,
}

/// Why a plugin could not handle a record. The host quarantines that record with the message
/// and retries it later; it never deletes anything because of a plugin error.
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

impl std::error::Error for PluginError {}

/// The side a record comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// Oracle Siebel CRM.
    Siebel,
    /// Microsoft Exchange.
    Exchange,
}

/// The three versions of a conflicting pair, all in Exchange shape (the Siebel record mapped
/// through the domain's mapping).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Conflict {
    /// The content both sides agreed on at the last sync, when known.
    pub base: Option<Fields>,
    /// The Siebel record now.
    pub siebel: Fields,
    /// The Exchange item now.
    pub exchange: Fields,
}

/// The outcome of a conflict.
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
    /// Leave both sides as they are and flag the pair for a person, with a reason.
    Defer(String),
}

/// A field-mapping plugin: maps records between Siebel and Exchange shape.
pub trait Mapper {
    /// Maps a Siebel record to the fields of the Exchange item.
    ///
    /// A field set to [`Value::Null`] in the output is cleared on the Exchange side; a field
    /// left out is not touched.
    fn to_exchange(ctx: &Context, siebel: Fields) -> Result<Fields, PluginError>;

    /// Maps an Exchange item to the fields of the Siebel record.
    fn to_siebel(ctx: &Context, exchange: Fields) -> Result<Fields, PluginError>;
}

/// A record filter: decides which records take part in the sync.
pub trait Filter {
    /// True when the record should be synced. By default every record is.
    fn include(ctx: &Context, side: Side, record: &Fields) -> Result<bool, PluginError> {
        let _ = (ctx, side, record);
        Ok(true)
    }
}

/// A conflict policy: decides what happens when a linked pair changed on both sides.
pub trait ConflictPolicy {
    /// The outcome for `conflict`. By default the pair is deferred to a person.
    fn resolve(ctx: &Context, conflict: Conflict) -> Result<Resolution, PluginError> {
        let _ = (ctx, conflict);
        Ok(Resolution::Defer(
            "no conflict policy decided this conflict".into(),
        ))
    }
}

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something looks wrong but the record was handled.
    Warn,
    /// Something failed.
    Error,
}

/// Writes `message` to the host's log, tagged with the plugin's name.
///
/// Outside WebAssembly (native unit tests of a plugin) this does nothing.
pub fn log(level: Level, message: &str) {
    __private::log(level, message);
}

/// The plugin's configuration value for `key` (deployment configuration, or the default
/// from the plugin's manifest), or `None`.
///
/// Outside WebAssembly (native unit tests of a plugin) this is always `None`.
pub fn config(key: &str) -> Option<String> {
    __private::config(key)
}

/// Logs a formatted line at [`Level::Trace`]: `trace!("mapped {} fields", n)`.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => { $crate::log($crate::Level::Trace, &::std::format!($($arg)+)) };
}

/// Logs a formatted line at [`Level::Debug`].
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => { $crate::log($crate::Level::Debug, &::std::format!($($arg)+)) };
}

/// Logs a formatted line at [`Level::Info`].
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => { $crate::log($crate::Level::Info, &::std::format!($($arg)+)) };
}

/// Logs a formatted line at [`Level::Warn`].
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => { $crate::log($crate::Level::Warn, &::std::format!($($arg)+)) };
}

/// Logs a formatted line at [`Level::Error`].
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => { $crate::log($crate::Level::Error, &::std::format!($($arg)+)) };
}

/// Exports a [`Mapper`] implementation as this component's `tandem:plugin/mapping`.
///
/// Use it once per crate, at item level: `export_mapper!(MyMapper);`. The host sends records
/// in packed batches (WIT 0.2); the glue unpacks each record into [`Fields`], calls your
/// `to_exchange`/`to_siebel` once per record and packs the answers, so a mapper is written
/// one record at a time.
#[macro_export]
macro_rules! export_mapper {
    ($ty:ty) => {
        const _: () = {
            struct __TandemMapperExport;
            impl $crate::__private::MappingGuest for __TandemMapperExport {
                fn to_exchange(
                    ctx: $crate::__private::WitContext,
                    siebel: $crate::__private::WitPackedRecords,
                ) -> $crate::__private::WitPackedResults {
                    $crate::__private::to_exchange::<$ty>(ctx, siebel)
                }
                fn to_siebel(
                    ctx: $crate::__private::WitContext,
                    exchange: $crate::__private::WitPackedRecords,
                ) -> $crate::__private::WitPackedResults {
                    $crate::__private::to_siebel::<$ty>(ctx, exchange)
                }
            }
            // Native builds (tests, benchmarks) get no wasm exports: their symbol names
            // aren't valid in a native shared library.
            #[cfg(target_arch = "wasm32")]
            $crate::__private::wit::mapper::__tandem_export_mapper_world!(
                __TandemMapperExport with_types_in $crate::__private::wit::mapper
            );
        };
    };
}

/// Exports a [`Filter`] implementation as this component's `tandem:plugin/record-filter`.
///
/// Use it once per crate, at item level: `export_filter!(MyFilter);`.
#[macro_export]
macro_rules! export_filter {
    ($ty:ty) => {
        const _: () = {
            struct __TandemFilterExport;
            impl $crate::__private::FilterGuest for __TandemFilterExport {
                fn include(
                    ctx: $crate::__private::WitContext,
                    side: $crate::__private::WitSide,
                    record: ::std::vec::Vec<$crate::__private::WitField>,
                ) -> ::std::result::Result<bool, $crate::__private::WitPluginError> {
                    $crate::__private::include::<$ty>(ctx, side, record)
                }
            }
            // Native builds (tests, benchmarks) get no wasm exports: their symbol names
            // aren't valid in a native shared library.
            #[cfg(target_arch = "wasm32")]
            $crate::__private::wit::filter::__tandem_export_filter_world!(
                __TandemFilterExport with_types_in $crate::__private::wit::filter
            );
        };
    };
}

/// Exports a [`ConflictPolicy`] implementation as this component's
/// `tandem:plugin/conflict-resolution`.
///
/// Use it once per crate, at item level: `export_conflict_policy!(MyPolicy);`.
#[macro_export]
macro_rules! export_conflict_policy {
    ($ty:ty) => {
        const _: () = {
            struct __TandemConflictPolicyExport;
            impl $crate::__private::ConflictGuest for __TandemConflictPolicyExport {
                fn resolve(
                    ctx: $crate::__private::WitContext,
                    conflict: $crate::__private::WitConflict,
                ) -> ::std::result::Result<
                    $crate::__private::WitResolution,
                    $crate::__private::WitPluginError,
                > {
                    $crate::__private::resolve::<$ty>(ctx, conflict)
                }
            }
            // Native builds (tests, benchmarks) get no wasm exports: their symbol names
            // aren't valid in a native shared library.
            #[cfg(target_arch = "wasm32")]
            $crate::__private::wit::conflict_policy::__tandem_export_conflict_policy_world!(
                __TandemConflictPolicyExport with_types_in $crate::__private::wit::conflict_policy
            );
        };
    };
}

#[cfg(test)]
mod tests;

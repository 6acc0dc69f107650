//! Glue between the plain API of the crate root and the wit-bindgen output; used by the
//! export macros only, not part of the public API.

#![allow(missing_docs)]

pub use wit_bindgen;

pub mod wit;

use crate::{
    Conflict, Context, DateTime, Fields, Level, PluginError, Resolution, Scalar, Side, Value,
};

use wit::conflict_policy::exports::tandem::plugin::conflict_resolution as wit_conflict;
use wit::filter::exports::tandem::plugin::record_filter as wit_filter;
#[cfg(target_arch = "wasm32")]
use wit::mapper::tandem::plugin::host as wit_host;
use wit::mapper::tandem::plugin::types as wit_types;

pub use wit::conflict_policy::exports::tandem::plugin::conflict_resolution::Guest as ConflictGuest;
pub use wit::filter::exports::tandem::plugin::record_filter::Guest as FilterGuest;
pub use wit::mapper::exports::tandem::plugin::mapping::Guest as MappingGuest;
pub use wit_conflict::{Conflict as WitConflict, Resolution as WitResolution};
pub use wit_filter::Side as WitSide;
pub use wit_types::{
    Context as WitContext, Field as WitField, PackedRecords as WitPackedRecords,
    PackedResults as WitPackedResults, PluginError as WitPluginError,
};

pub(crate) mod packed;
pub use packed::{map_packed, pack_records, unpack_answers};

pub fn to_exchange<M: crate::Mapper>(ctx: WitContext, siebel: WitPackedRecords) -> WitPackedResults {
    let ctx = context(ctx);
    map_packed(siebel, |record| M::to_exchange(&ctx, record))
}

pub fn to_siebel<M: crate::Mapper>(
    ctx: WitContext,
    exchange: WitPackedRecords,
) -> WitPackedResults {
    let ctx = context(ctx);
    map_packed(exchange, |record| M::to_siebel(&ctx, record))
}

pub fn include<F: crate::Filter>(
    ctx: WitContext,
    side: WitSide,
    record: Vec<WitField>,
) -> Result<bool, WitPluginError> {
    let side = match side {
        WitSide::Siebel => Side::Siebel,
        WitSide::Exchange => Side::Exchange,
    };
    F::include(&context(ctx), side, &fields_from_wit(record)).map_err(error_to_wit)
}

pub fn resolve<P: crate::ConflictPolicy>(
    ctx: WitContext,
    conflict: WitConflict,
) -> Result<WitResolution, WitPluginError> {
    let conflict = Conflict {
        base: conflict.base.map(fields_from_wit),
        siebel: fields_from_wit(conflict.siebel),
        exchange: fields_from_wit(conflict.exchange),
    };
    let resolution = P::resolve(&context(ctx), conflict).map_err(error_to_wit)?;
    Ok(match resolution {
        Resolution::TakeSiebel => WitResolution::TakeSiebel,
        Resolution::TakeExchange => WitResolution::TakeExchange,
        Resolution::Merged(fields) => WitResolution::Merged(fields_to_wit(fields)),
        Resolution::KeepBoth => WitResolution::KeepBoth,
        Resolution::Defer(reason) => WitResolution::Defer(reason),
    })
}

#[cfg(target_arch = "wasm32")]
pub fn log(level: Level, message: &str) {
    let level = match level {
        Level::Trace => wit_host::Level::Trace,
        Level::Debug => wit_host::Level::Debug,
        Level::Info => wit_host::Level::Info,
        Level::Warn => wit_host::Level::Warn,
        Level::Error => wit_host::Level::Error,
    };
    wit_host::log(level, message);
}

#[cfg(not(target_arch = "wasm32"))]
pub fn log(level: Level, message: &str) {
    let _ = (level, message);
}

#[cfg(target_arch = "wasm32")]
pub fn config(key: &str) -> Option<String> {
    wit_host::config(key)
}

#[cfg(not(target_arch = "wasm32"))]
pub fn config(key: &str) -> Option<String> {
    let _ = key;
    None
}

fn context(ctx: WitContext) -> Context {
    Context {
        domain: ctx.domain,
        user: ctx.user,
    }
}

fn error_to_wit(error: PluginError) -> WitPluginError {
    match error {
        PluginError::InvalidRecord(m) => WitPluginError::InvalidRecord(m),
        PluginError::Other(m) => WitPluginError::Other(m),
    }
}

pub fn fields_from_wit(fields: Vec<WitField>) -> Fields {
    fields
        .into_iter()
        .map(|f| (f.name, value_from_wit(f.value)))
        .collect()
}

pub fn fields_to_wit(fields: Fields) -> Vec<WitField> {
    fields
        .into_iter()
        .map(|(name, value)| WitField {
            name,
            value: value_to_wit(value),
        })
        .collect()
}

fn date_from_wit(t: wit_types::Datetime) -> DateTime {
    DateTime {
        seconds: t.seconds,
        nanoseconds: t.nanoseconds,
    }
}

fn date_to_wit(t: DateTime) -> wit_types::Datetime {
    wit_types::Datetime {
        seconds: t.seconds,
        nanoseconds: t.nanoseconds,
    }
}

fn value_from_wit(value: wit_types::Value) -> Value {
    use wit_types::Value as W;
    match value {
        W::Null => Value::Null,
        W::Text(t) => Value::Text(t),
        W::Integer(n) => Value::Integer(n),
        W::Number(n) => Value::Number(n),
        W::Boolean(b) => Value::Boolean(b),
        W::DateTime(t) => Value::DateTime(date_from_wit(t)),
        W::List(items) => Value::List(items.into_iter().map(scalar_from_wit).collect()),
    }
}

fn value_to_wit(value: Value) -> wit_types::Value {
    use wit_types::Value as W;
    match value {
        Value::Null => W::Null,
        Value::Text(t) => W::Text(t),
        Value::Integer(n) => W::Integer(n),
        Value::Number(n) => W::Number(n),
        Value::Boolean(b) => W::Boolean(b),
        Value::DateTime(t) => W::DateTime(date_to_wit(t)),
        Value::List(items) => W::List(items.into_iter().map(scalar_to_wit).collect()),
    }
}

fn scalar_from_wit(scalar: wit_types::Scalar) -> Scalar {
    use wit_types::Scalar as W;
    match scalar {
        W::Null => Scalar::Null,
        W::Text(t) => Scalar::Text(t),
        W::Integer(n) => Scalar::Integer(n),
        W::Number(n) => Scalar::Number(n),
        W::Boolean(b) => Scalar::Boolean(b),
        W::DateTime(t) => Scalar::DateTime(date_from_wit(t)),
    }
}

fn scalar_to_wit(scalar: Scalar) -> wit_types::Scalar {
    use wit_types::Scalar as W;
    match scalar {
        Scalar::Null => W::Null,
        Scalar::Text(t) => W::Text(t),
        Scalar::Integer(n) => W::Integer(n),
        Scalar::Number(n) => W::Number(n),
        Scalar::Boolean(b) => W::Boolean(b),
        Scalar::DateTime(t) => W::DateTime(date_to_wit(t)),
    }
}

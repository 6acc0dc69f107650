//! A plugin built straight against the frozen `tandem:plugin@0.1.0` (wit/since_v0.1.0) with
//! wit-bindgen, not through the SDK (which follows the newest WIT): the host's tests load it
//! as a mapper, a filter and a conflict policy to prove that 0.1.0 plugins keep working in a
//! 0.2 host. Never shipped as a default plugin.
//!
//! - mapping: the record comes back with `Surname` (to-exchange) or `Last Name` (to-siebel)
//!   upper-cased and `Api` = "0.1.0"; a record with `Fail` is refused with a plugin error.
//! - filter: a record is included unless its `Skip` field is the boolean true.
//! - conflict policy: Exchange wins when there is a base version, else the pair is deferred.

// Natively (`cargo test --workspace`) the crate is empty: the bindings import host functions
// that only a wasm host provides, and export names a native library can't carry.
#![cfg(target_arch = "wasm32")]
#![allow(unsafe_code)]

mod mapper {
    wit_bindgen::generate!({
        path: "../../wit/since_v0.1.0",
        world: "tandem:plugin/mapper@0.1.0",
    });
}

mod filter {
    wit_bindgen::generate!({
        path: "../../wit/since_v0.1.0",
        world: "tandem:plugin/filter@0.1.0",
        with: {
            "tandem:plugin/types@0.1.0": super::mapper::tandem::plugin::types,
            "tandem:plugin/host@0.1.0": super::mapper::tandem::plugin::host,
        },
    });
}

mod conflict_policy {
    wit_bindgen::generate!({
        path: "../../wit/since_v0.1.0",
        world: "tandem:plugin/conflict-policy@0.1.0",
        with: {
            "tandem:plugin/types@0.1.0": super::mapper::tandem::plugin::types,
            "tandem:plugin/host@0.1.0": super::mapper::tandem::plugin::host,
        },
    });
}

use conflict_policy::exports::tandem::plugin::conflict_resolution::{
    self as resolution, Conflict, Resolution,
};
use filter::exports::tandem::plugin::record_filter::{self, Side};
use mapper::exports::tandem::plugin::mapping;
use mapper::tandem::plugin::host::{self, Level};
use mapper::tandem::plugin::types::{Context, Field, PluginError, Value};

struct V01;

/// The record with `name` upper-cased and `Api` = "0.1.0".
fn mark(ctx: &Context, mut record: Vec<Field>, name: &str) -> Result<Vec<Field>, PluginError> {
    if record.iter().any(|f| f.name == "Fail") {
        return Err(PluginError::InvalidRecord("asked to fail".into()));
    }
    host::log(Level::Debug, &format!("0.1.0 mapping for {}", ctx.user));
    for field in &mut record {
        if field.name == name
            && let Value::Text(text) = &mut field.value
        {
            *text = text.to_uppercase();
        }
    }
    record.push(Field {
        name: "Api".into(),
        value: Value::Text(host::config("api").unwrap_or_else(|| "0.1.0".into())),
    });
    Ok(record)
}

impl mapping::Guest for V01 {
    fn to_exchange(ctx: Context, siebel: Vec<Field>) -> Result<Vec<Field>, PluginError> {
        mark(&ctx, siebel, "Surname")
    }

    fn to_siebel(ctx: Context, exchange: Vec<Field>) -> Result<Vec<Field>, PluginError> {
        mark(&ctx, exchange, "Last Name")
    }
}

impl record_filter::Guest for V01 {
    fn include(_ctx: Context, _side: Side, record: Vec<Field>) -> Result<bool, PluginError> {
        let skip = record
            .iter()
            .any(|f| f.name == "Skip" && matches!(f.value, Value::Boolean(true)));
        Ok(!skip)
    }
}

impl resolution::Guest for V01 {
    fn resolve(_ctx: Context, conflict: Conflict) -> Result<Resolution, PluginError> {
        Ok(match conflict.base {
            Some(_) => Resolution::TakeExchange,
            None => Resolution::Defer("0.1.0 policy: no base version".into()),
        })
    }
}

mapper::export!(V01 with_types_in mapper);
filter::export!(V01 with_types_in filter);
conflict_policy::export!(V01 with_types_in conflict_policy);

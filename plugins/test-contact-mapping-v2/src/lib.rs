//! A second version of the default contact mapping whose only change is an upper-cased
//! `Surname`, so the hot-reload tests can see which version mapped a record.

use tandem_plugin_api::{Context, Fields, Mapper, PluginError, Value};

/// The default mapping, then `Surname` in capitals.
pub struct UpperSurnameMapping;

impl Mapper for UpperSurnameMapping {
    fn to_exchange(_ctx: &Context, siebel: Fields) -> Result<Fields, PluginError> {
        let mut out = contact_mapping::siebel_to_exchange(&siebel);
        if let Some(surname) = out.get_text("Surname").map(str::to_uppercase) {
            out.set("Surname", Value::text(surname));
        }
        Ok(out)
    }

    fn to_siebel(_ctx: &Context, exchange: Fields) -> Result<Fields, PluginError> {
        Ok(contact_mapping::exchange_to_siebel(&exchange))
    }
}

// Only in the wasm build: natively, the workspace may link `contact-mapping` with its own
// export of the same interface into this crate.
#[cfg(target_arch = "wasm32")]
tandem_plugin_api::export_mapper!(UpperSurnameMapping);

//! Tandem's default personal-contact mapping: a Siebel `Contact` with `Personal Contact` = `Y`
//! ⇄ a private Exchange contact (`Sensitivity` = `Private`), as a plugin (cdylib, built for
//! wasm32-wasip2) and as plain Rust (rlib).
//!
//! The fields are the business-contact table of `contact-mapping` (reused, not copied), with
//! two differences: the Exchange copy is marked `Private` instead of carrying the
//! "Siebel Contact" category (the user's own categories are left alone), and the Siebel record
//! is marked `Personal Contact` = `Y`. A record that says it is a business contact
//! (`Personal Contact` = `N`, or `Sensitivity` = `Normal`) belongs to the `contacts` domain and
//! is refused with an `invalid-record` error rather than being turned private or personal.

use contact_mapping::FIELD_PAIRS;
#[cfg(feature = "export")]
use tandem_plugin_api::export_mapper;
use tandem_plugin_api::{Context, Fields, Mapper, PluginError};

/// The Siebel Contact flag that makes a contact personal (`Y`/`N`).
pub const PERSONAL_CONTACT: &str = "Personal Contact";
/// The Exchange sensitivity of a personal contact.
pub const PRIVATE_SENSITIVITY: &str = "Private";

/// Maps a Siebel personal contact to Exchange contact fields: every pair of
/// [`contact_mapping::FIELD_PAIRS`] (blank → `Null`), `FileAs`, and `Sensitivity` = `Private`.
/// `Categories` is not set. A record with `Personal Contact` = `N` is an `invalid-record`.
pub fn siebel_to_exchange(siebel: &Fields) -> Result<Fields, PluginError> {
    if let Some(flag) = siebel.get_text(PERSONAL_CONTACT)
        && !is_yes(flag)
    {
        return Err(PluginError::InvalidRecord(format!(
            "this contact has Personal Contact = `{flag}`, so it is a business contact; the \
             contacts domain syncs it, not personal-contacts"
        )));
    }
    let mut out = contact_mapping::siebel_to_exchange(siebel);
    out.remove("Categories");
    out.set("Sensitivity", PRIVATE_SENSITIVITY);
    Ok(out)
}

/// Maps a private Exchange contact to a Siebel Contact record with `Personal Contact` = `Y`,
/// the inverse of [`siebel_to_exchange`] over [`contact_mapping::FIELD_PAIRS`]. An item with
/// `Sensitivity` = `Normal` is an `invalid-record` (it is a business contact).
pub fn exchange_to_siebel(exchange: &Fields) -> Result<Fields, PluginError> {
    if exchange
        .get_text("Sensitivity")
        .is_some_and(|s| s.trim().eq_ignore_ascii_case("Normal"))
    {
        return Err(PluginError::InvalidRecord(
            "this Exchange contact has Sensitivity Normal, so it is a business contact; the \
             contacts domain syncs it, not personal-contacts (mark it Private in Outlook to keep \
             it personal)"
                .into(),
        ));
    }
    let mut out = contact_mapping::exchange_to_siebel(exchange);
    out.set(PERSONAL_CONTACT, "Y");
    Ok(out)
}

/// True when a Siebel Contact record is marked personal (`Personal Contact` = `Y`).
pub fn is_personal(siebel: &Fields) -> bool {
    siebel.get_text(PERSONAL_CONTACT).is_some_and(is_yes)
}

/// True for Siebel's `Y` (and `Yes`/`true`), case and spaces ignored.
fn is_yes(flag: &str) -> bool {
    matches!(
        flag.trim().to_ascii_lowercase().as_str(),
        "y" | "yes" | "true"
    )
}

/// The Exchange field names this mapping writes (for documentation and tests).
pub fn exchange_fields() -> impl Iterator<Item = &'static str> {
    FIELD_PAIRS
        .iter()
        .map(|(_, exchange)| *exchange)
        .chain(["FileAs", "Sensitivity"])
}

/// The plugin: the functions above behind the `mapper` world.
pub struct PersonalContactMapping;

impl Mapper for PersonalContactMapping {
    fn to_exchange(_ctx: &Context, siebel: Fields) -> Result<Fields, PluginError> {
        siebel_to_exchange(&siebel)
    }

    fn to_siebel(_ctx: &Context, exchange: Fields) -> Result<Fields, PluginError> {
        exchange_to_siebel(&exchange)
    }
}

#[cfg(feature = "export")]
export_mapper!(PersonalContactMapping);

#[cfg(test)]
mod tests;

//! A filter and a conflict policy exported from one crate, so the host's tests cover those
//! plugin kinds and show two export macros coexisting. Never shipped as a default plugin.

use tandem_plugin_api::{
    Conflict, ConflictPolicy, Context, Filter, PluginError, Resolution, Side, Value,
    export_conflict_policy, export_filter,
};

/// Syncs Siebel records unless `Private` is true; Exchange items only with a category.
pub struct PrivateFilter;

impl Filter for PrivateFilter {
    fn include(
        _ctx: &Context,
        side: Side,
        record: &tandem_plugin_api::Fields,
    ) -> Result<bool, PluginError> {
        match side {
            Side::Siebel => Ok(record.get("Private").and_then(Value::as_bool) != Some(true)),
            Side::Exchange => match record.get("Categories") {
                Some(Value::List(items)) => Ok(!items.is_empty()),
                Some(Value::Null) | None => Ok(false),
                Some(_) => Err(PluginError::InvalidRecord(
                    "Categories is not a list".into(),
                )),
            },
        }
    }
}

/// Siebel wins, except that a conflict without a base is merged field by field
/// (Exchange fills what Siebel lacks), and a `Defer` field defers.
pub struct SiebelWins;

impl ConflictPolicy for SiebelWins {
    fn resolve(_ctx: &Context, conflict: Conflict) -> Result<Resolution, PluginError> {
        if let Some(reason) = conflict.siebel.get_text("Defer") {
            return Ok(Resolution::Defer(reason.to_owned()));
        }
        if conflict.base.is_some() {
            return Ok(Resolution::TakeSiebel);
        }
        let mut merged = conflict.exchange;
        merged.extend(conflict.siebel.into_iter().filter(|(_, v)| !v.is_blank()));
        Ok(Resolution::Merged(merged))
    }
}

export_filter!(PrivateFilter);
export_conflict_policy!(SiebelWins);

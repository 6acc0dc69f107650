//! Tandem's default conflict policies, one plugin configured by name: what happens when a
//! linked pair changed on both sides since the last sync.
//!
//! Configuration (`[config]` of the manifest or the deployment):
//! - `policy`: `siebel-wins` (default, as in SSSE), `exchange-wins`, `newest-wins` or
//!   `field-merge`;
//! - `winner`: the side that wins when `newest-wins` can't tell or `field-merge` finds the
//!   same field edited on both sides: `siebel` (default) or `exchange`;
//! - `timestamp-field`: the field `newest-wins` compares (default `LastModifiedTime`).

use tandem_plugin_api::{Conflict, ConflictPolicy, Context, Fields, PluginError, Resolution, Value};

/// The four policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Siebel's version overwrites Exchange.
    SiebelWins,
    /// Exchange's version overwrites Siebel.
    ExchangeWins,
    /// The side with the later timestamp wins; `winner` on a tie or a missing timestamp.
    NewestWins,
    /// Edits to different fields both survive; the same field edited on both sides goes to
    /// `winner`. Without a base version the whole pair goes to `winner`.
    FieldMerge,
}

/// Which side wins a tie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Siebel.
    Siebel,
    /// Exchange.
    Exchange,
}

/// A policy with its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Which policy.
    pub policy: Policy,
    /// Who wins ties.
    pub winner: Side,
    /// The field `newest-wins` compares.
    pub timestamp_field: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            policy: Policy::SiebelWins,
            winner: Side::Siebel,
            timestamp_field: "LastModifiedTime".into(),
        }
    }
}

impl Settings {
    /// Settings from configuration values (`None` = default); unknown values are errors.
    pub fn from_config(
        policy: Option<&str>,
        winner: Option<&str>,
        timestamp_field: Option<&str>,
    ) -> Result<Settings, PluginError> {
        let mut settings = Settings::default();
        settings.policy = match policy.unwrap_or("siebel-wins") {
            "siebel-wins" => Policy::SiebelWins,
            "exchange-wins" => Policy::ExchangeWins,
            "newest-wins" => Policy::NewestWins,
            "field-merge" => Policy::FieldMerge,
            other => {
                return Err(PluginError::Other(format!(
                    "unknown policy `{other}`; use siebel-wins, exchange-wins, newest-wins or field-merge"
                )));
            }
        };
        settings.winner = match winner.unwrap_or("siebel") {
            "siebel" => Side::Siebel,
            "exchange" => Side::Exchange,
            other => {
                return Err(PluginError::Other(format!(
                    "unknown winner `{other}`; use siebel or exchange"
                )));
            }
        };
        if let Some(field) = timestamp_field {
            settings.timestamp_field = field.into();
        }
        Ok(settings)
    }
}

fn take(side: Side) -> Resolution {
    match side {
        Side::Siebel => Resolution::TakeSiebel,
        Side::Exchange => Resolution::TakeExchange,
    }
}

/// The decision for `conflict` under `settings`.
pub fn resolve(settings: &Settings, conflict: &Conflict) -> Resolution {
    match settings.policy {
        Policy::SiebelWins => Resolution::TakeSiebel,
        Policy::ExchangeWins => Resolution::TakeExchange,
        Policy::NewestWins => {
            let stamp = |fields: &Fields| match fields.get(&settings.timestamp_field) {
                Some(Value::DateTime(t)) => Some(*t),
                _ => None,
            };
            match (stamp(&conflict.siebel), stamp(&conflict.exchange)) {
                (Some(s), Some(e)) if s > e => Resolution::TakeSiebel,
                (Some(s), Some(e)) if e > s => Resolution::TakeExchange,
                _ => take(settings.winner),
            }
        }
        Policy::FieldMerge => match &conflict.base {
            None => take(settings.winner),
            Some(base) => Resolution::Merged(merge(base, &conflict.siebel, &conflict.exchange, settings.winner)),
        },
    }
}

/// Three-way merge field by field: a field changed on one side only takes that side's value;
/// changed on both to different values, `winner`'s.
pub fn merge(base: &Fields, siebel: &Fields, exchange: &Fields, winner: Side) -> Fields {
    let mut names: Vec<&str> = siebel.iter().map(|(n, _)| n).collect();
    names.extend(exchange.iter().map(|(n, _)| n));
    names.sort_unstable();
    names.dedup();
    let mut out = Fields::new();
    for name in names {
        let before = base.get(name).cloned().unwrap_or_default();
        let s = siebel.get(name).cloned().unwrap_or_default();
        let e = exchange.get(name).cloned().unwrap_or_default();
        let value = if s == e || e == before {
            s
        } else if s == before {
            e
        } else {
            match winner {
                Side::Siebel => s,
                Side::Exchange => e,
            }
        };
        out.set(name, value);
    }
    out
}

/// The plugin: reads its settings from configuration on each call.
pub struct DefaultPolicies;

impl ConflictPolicy for DefaultPolicies {
    fn resolve(_ctx: &Context, conflict: Conflict) -> Result<Resolution, PluginError> {
        let config = tandem_plugin_api::config;
        let settings = Settings::from_config(
            config("policy").as_deref(),
            config("winner").as_deref(),
            config("timestamp-field").as_deref(),
        )?;
        Ok(resolve(&settings, &conflict))
    }
}

tandem_plugin_api::export_conflict_policy!(DefaultPolicies);

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_plugin_api::DateTime;

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        pairs.iter().map(|(k, v)| (*k, Value::text(*v))).collect()
    }

    fn settings(policy: &str, winner: &str) -> Settings {
        Settings::from_config(Some(policy), Some(winner), None).expect("valid")
    }

    fn conflict() -> Conflict {
        Conflict {
            base: Some(fields(&[("JobTitle", "CFO"), ("Surname", "Lee"), ("MobilePhone", "1")])),
            siebel: fields(&[("JobTitle", "CEO"), ("Surname", "Lee"), ("MobilePhone", "2")]),
            exchange: fields(&[("JobTitle", "CFO"), ("Surname", "Li"), ("MobilePhone", "3")]),
        }
    }

    #[test]
    fn siebel_wins_is_the_default() {
        let s = Settings::from_config(None, None, None).expect("defaults");
        assert_eq!(s.policy, Policy::SiebelWins);
        assert_eq!(resolve(&s, &conflict()), Resolution::TakeSiebel);
    }

    #[test]
    fn exchange_wins() {
        assert_eq!(resolve(&settings("exchange-wins", "siebel"), &conflict()), Resolution::TakeExchange);
    }

    #[test]
    fn newest_wins_compares_timestamps_and_falls_back_to_the_winner() {
        let at = |s| Value::DateTime(DateTime { seconds: s, nanoseconds: 0 });
        let mut c = conflict();
        c.siebel.set("LastModifiedTime", at(100));
        c.exchange.set("LastModifiedTime", at(200));
        assert_eq!(resolve(&settings("newest-wins", "siebel"), &c), Resolution::TakeExchange);
        c.siebel.set("LastModifiedTime", at(300));
        assert_eq!(resolve(&settings("newest-wins", "exchange"), &c), Resolution::TakeSiebel);
        c.siebel.set("LastModifiedTime", at(200));
        assert_eq!(resolve(&settings("newest-wins", "exchange"), &c), Resolution::TakeExchange);
        c.exchange.remove("LastModifiedTime");
        assert_eq!(resolve(&settings("newest-wins", "siebel"), &c), Resolution::TakeSiebel);
    }

    #[test]
    fn field_merge_keeps_both_sides_edits_and_gives_clashes_to_the_winner() {
        let Resolution::Merged(out) = resolve(&settings("field-merge", "exchange"), &conflict()) else {
            panic!("merged expected")
        };
        assert_eq!(out.get_text("JobTitle"), Some("CEO"), "Siebel-only edit survives");
        assert_eq!(out.get_text("Surname"), Some("Li"), "Exchange-only edit survives");
        assert_eq!(out.get_text("MobilePhone"), Some("3"), "both edited: the winner's");
        let Resolution::Merged(out) = resolve(&settings("field-merge", "siebel"), &conflict()) else {
            panic!("merged expected")
        };
        assert_eq!(out.get_text("MobilePhone"), Some("2"));
        let mut no_base = conflict();
        no_base.base = None;
        assert_eq!(resolve(&settings("field-merge", "exchange"), &no_base), Resolution::TakeExchange);
    }

    #[test]
    fn unknown_settings_are_errors() {
        assert!(Settings::from_config(Some("coin-flip"), None, None).is_err());
        assert!(Settings::from_config(None, Some("both"), None).is_err());
    }
}

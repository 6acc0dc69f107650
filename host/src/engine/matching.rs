//! Initial-extract matching: a Siebel record and an Exchange item that are the same contact
//! (or appointment, or task) are linked instead of being copied both ways. SSSE's rule
//! (`reference/siebel-ssse-and-rest.md` §2 "Matching"): contacts by email when exactly one
//! record has it, then by email + first + last name; appointments and tasks by key fields.
//!
//! Keys are Exchange field names, compared on the Siebel record mapped to Exchange shape
//! against the Exchange item, so one rule serves every domain, export-only ones included.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use crate::domain;
use crate::record::{Fields, Value};

/// Which keys link records on first sight, per domain; `enabled = false` turns matching off
/// (faster, but records on both sides are then copied both ways).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Matching {
    pub enabled: bool,
    /// Domain → key sets tried in order; a key set is a list of Exchange field names.
    pub keys: BTreeMap<String, Vec<Vec<String>>>,
}

impl Default for Matching {
    fn default() -> Self {
        let contact_keys = || {
            vec![
                vec!["EmailAddress1".to_owned()],
                vec!["EmailAddress1".to_owned(), "GivenName".to_owned(), "Surname".to_owned()],
            ]
        };
        let keys = BTreeMap::from([
            (domain::CONTACTS.to_owned(), contact_keys()),
            (domain::EMPLOYEES.to_owned(), contact_keys()),
            (domain::PERSONAL_CONTACTS.to_owned(), contact_keys()),
            (domain::CALENDAR.to_owned(), vec![vec!["Subject".to_owned(), "Start".to_owned()]]),
            (domain::TASKS.to_owned(), vec![vec!["Subject".to_owned(), "DueDate".to_owned()]]),
        ]);
        Self { enabled: true, keys }
    }
}

impl Matching {
    /// The key sets of a domain (none when matching is off).
    pub fn keys_of(&self, domain: &str) -> &[Vec<String>] {
        match self.keys.get(domain) {
            Some(keys) if self.enabled => keys,
            _ => &[],
        }
    }
}

/// The comparable form of a record's key, or None when any key field is blank (a blank key
/// never matches). Texts compare trimmed and case-insensitively.
pub fn key_of(fields: &Fields, key: &[String]) -> Option<String> {
    let mut parts = Vec::with_capacity(key.len());
    for name in key {
        let value = fields.get(name)?;
        if value.is_blank() {
            return None;
        }
        parts.push(match value {
            Value::Text(text) => text.trim().to_lowercase(),
            other => format!("{other:?}"),
        });
    }
    Some(parts.join("\u{1f}"))
}

/// Pairs Siebel records with Exchange items (both in Exchange shape) by the key sets in
/// order. A pair counts only when its key is unique on both sides among what is still
/// unpaired ("exactly one match"); ambiguous keys fall through to the next key set.
pub fn pair<'a>(
    siebel: &'a [(String, Fields)],
    exchange: &'a [(String, Fields)],
    key_sets: &[Vec<String>],
) -> Vec<(&'a str, &'a str)> {
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    let mut paired_siebel: Vec<bool> = vec![false; siebel.len()];
    let mut paired_exchange: Vec<bool> = vec![false; exchange.len()];
    for key in key_sets {
        let mut by_key: HashMap<String, (Vec<usize>, Vec<usize>)> = HashMap::new();
        for (index, (_, fields)) in siebel.iter().enumerate().filter(|(i, _)| !paired_siebel[*i]) {
            if let Some(k) = key_of(fields, key) {
                by_key.entry(k).or_default().0.push(index);
            }
        }
        for (index, (_, fields)) in exchange.iter().enumerate().filter(|(i, _)| !paired_exchange[*i]) {
            if let Some(k) = key_of(fields, key) {
                by_key.entry(k).or_default().1.push(index);
            }
        }
        let mut found: Vec<(usize, usize)> = by_key
            .into_values()
            .filter_map(|(s, e)| (s.len() == 1 && e.len() == 1).then(|| (s[0], e[0])))
            .collect();
        found.sort_unstable();
        for (s, e) in found {
            paired_siebel[s] = true;
            paired_exchange[e] = true;
            pairs.push((siebel[s].0.as_str(), exchange[e].0.as_str()));
        }
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact(email: &str, first: &str, last: &str) -> Fields {
        let mut fields = Fields::new();
        fields.insert("EmailAddress1".into(), Value::Text(email.into()));
        fields.insert("GivenName".into(), Value::Text(first.into()));
        fields.insert("Surname".into(), Value::Text(last.into()));
        fields
    }

    #[test]
    fn email_matches_when_exactly_one_then_names_break_ties() {
        let keys = Matching::default().keys["contacts"].clone();
        let siebel = vec![
            ("S1".to_owned(), contact("ada@example.com", "Ada", "Lovelace")),
            ("S2".to_owned(), contact("desk@example.com", "Bob", "Desk")),
            ("S3".to_owned(), contact("desk@example.com", "Carol", "Desk")),
            ("S4".to_owned(), contact("", "No", "Mail")),
        ];
        let exchange = vec![
            ("E1".to_owned(), contact(" ADA@example.com ", "Ada", "L.")),
            ("E2".to_owned(), contact("desk@example.com", "Carol", "Desk")),
            ("E3".to_owned(), contact("", "No", "Mail")),
        ];
        let mut pairs = pair(&siebel, &exchange, &keys);
        pairs.sort();
        // E1 by email alone (case and spaces aside); E2 only by email + names, since two
        // Siebel contacts share the address; a blank email never matches.
        assert_eq!(pairs, vec![("S1", "E1"), ("S3", "E2")]);
    }

    #[test]
    fn an_ambiguous_key_links_nothing() {
        let keys = vec![vec!["EmailAddress1".to_owned()]];
        let siebel = vec![("S1".to_owned(), contact("a@x", "A", "B"))];
        let exchange = vec![("E1".to_owned(), contact("a@x", "A", "B")), ("E2".to_owned(), contact("a@x", "C", "D"))];
        assert!(pair(&siebel, &exchange, &keys).is_empty());
    }

    #[test]
    fn switched_off_there_are_no_keys() {
        let matching = Matching { enabled: false, ..Matching::default() };
        assert!(matching.keys_of("contacts").is_empty());
        assert_eq!(Matching::default().keys_of("tasks").len(), 1);
    }
}

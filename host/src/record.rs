//! The host's view of a record: named, typed field values, the same shape as the WIT `value`.
//!
//! Connectors produce and consume `Fields`; the plugin runtime converts them to and from the
//! WIT types; the engine hashes them to tell whether a side changed.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One field's value. Lists hold values of the non-list kinds only (WIT has no recursion).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "kebab-case")]
pub enum Value {
    Null,
    Text(String),
    Integer(i64),
    Number(f64),
    Boolean(bool),
    DateTime(DateTime<Utc>),
    List(Vec<Value>),
}

impl Value {
    /// The text, when this is a text value.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(text) => Some(text),
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

/// A record: field name to value, ordered by name so hashing and comparison are stable.
pub type Fields = BTreeMap<String, Value>;

/// A stable hash of a record's content. Blank fields are left out, so a side that drops an
/// empty field does not look changed.
pub fn content_hash(fields: &Fields) -> String {
    let mut hasher = Sha256::new();
    for (name, value) in fields.iter().filter(|(_, value)| !value.is_blank()) {
        hasher.update(name.as_bytes());
        hasher.update([0]);
        // serde_json of our own enum cannot fail.
        let encoded = serde_json::to_vec(value).unwrap_or_default();
        hasher.update(&encoded);
        hasher.update([0xff]);
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_ignores_blank_fields_and_order() {
        let mut a = Fields::new();
        a.insert("GivenName".into(), "Ann".into());
        a.insert("Surname".into(), "Lee".into());
        let mut b = a.clone();
        b.insert("JobTitle".into(), Value::Null);
        b.insert("Nickname".into(), "".into());
        assert_eq!(content_hash(&a), content_hash(&b));
        b.insert("JobTitle".into(), "CEO".into());
        assert_ne!(content_hash(&a), content_hash(&b));
    }
}

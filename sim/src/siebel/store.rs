//! The Siebel emulator's records, with equality indexes so that queries such as
//! `[Integration Id] = '…'`, `[Primary Owner Id] = '…' AND …` or `[Id] = 'a' OR [Id] = 'b'`
//! read a handful of records instead of scanning the whole component, as a real Siebel's
//! indexed columns would. Without them a scale test measures the emulator's scans, not the
//! client.
//!
//! An index only narrows which records a query looks at: the query still evaluates its whole
//! searchspec, visibility and sort on those, so its answer is the one a full scan gives. An
//! index is built for a field the first time a query can use it, then kept up to date by
//! every write, which goes through this module's methods (the fields are private for that).
//!
//! `TANDEM_SIM_SIEBEL_SCAN=1` in the environment turns the indexes off (every query scans its
//! component, as the emulator did before), so a benchmark can measure both in one build.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::Record;
use super::searchspec::{CmpOp, Expr, Operand, equals_only_itself};

/// The environment variable that makes every query scan (see the module's documentation).
const SCAN_ONLY_VARIABLE: &str = "TANDEM_SIM_SIEBEL_SCAN";

/// Whether `TANDEM_SIM_SIEBEL_SCAN` asks for scans instead of indexes (read once).
fn scan_only() -> bool {
    static SCAN_ONLY: OnceLock<bool> = OnceLock::new();
    *SCAN_ONLY.get_or_init(|| std::env::var(SCAN_ONLY_VARIABLE).is_ok_and(|value| !matches!(value.trim(), "" | "0")))
}

/// One field's index: value → Ids of the records holding exactly that value.
type FieldIndex = HashMap<String, BTreeSet<String>>;

/// Everything the emulator stores; also the shape of the data file (indexes are not saved).
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct Store {
    /// Next generated row-id number.
    pub(super) next_row: u64,
    /// `"BO/BC"` → Id → record.
    components: BTreeMap<String, BTreeMap<String, Record>>,
    /// `"BO/BC"` → field → its index.
    #[serde(skip)]
    indexes: HashMap<String, HashMap<String, FieldIndex>>,
}

impl Store {
    /// Every component's records, for reads that are not queries (visibility's lookups).
    pub(super) fn components(&self) -> &BTreeMap<String, BTreeMap<String, Record>> {
        &self.components
    }

    /// The records of component `key` (`"BO/BC"`), by Id.
    pub(super) fn records(&self, key: &str) -> Option<&BTreeMap<String, Record>> {
        self.components.get(key)
    }

    pub(super) fn record(&self, key: &str, id: &str) -> Option<&Record> {
        self.components.get(key)?.get(id)
    }

    pub(super) fn contains(&self, key: &str, id: &str) -> bool {
        self.record(key, id).is_some()
    }

    /// Stores `record` as `id` of component `key`, replacing the record there.
    pub(super) fn insert(&mut self, key: &str, id: &str, record: Record) {
        let old = self.components.entry(key.to_owned()).or_default().insert(id.to_owned(), record);
        self.reindex(key, id, old.as_ref());
    }

    /// Takes record `id` out of component `key`.
    pub(super) fn remove(&mut self, key: &str, id: &str) -> Option<Record> {
        let old = self.components.get_mut(key)?.remove(id)?;
        self.reindex(key, id, Some(&old));
        Some(old)
    }

    /// Changes record `id` of component `key` in place; `None` when there is no such record.
    pub(super) fn update<T>(&mut self, key: &str, id: &str, change: impl FnOnce(&mut Record) -> T) -> Option<T> {
        let record = self.components.get_mut(key)?.get_mut(id)?;
        let before = self.indexes.contains_key(key).then(|| record.clone());
        let result = change(record);
        if let Some(before) = before {
            self.reindex(key, id, Some(&before));
        }
        Some(result)
    }

    /// Moves `id` in every index of component `key` from what `old` held to what the record
    /// holds now (absent: the record is gone).
    fn reindex(&mut self, key: &str, id: &str, old: Option<&Record>) {
        let Some(fields) = self.indexes.get_mut(key) else { return };
        let new = self.components.get(key).and_then(|records| records.get(id));
        for (field, index) in fields.iter_mut() {
            let was = old.and_then(|record| record.get(field));
            let is = new.and_then(|record| record.get(field));
            if was == is {
                continue;
            }
            for key in was.into_iter().flat_map(|value| index_keys(value)) {
                if let Some(ids) = index.get_mut(key) {
                    ids.remove(id);
                    if ids.is_empty() {
                        index.remove(key);
                    }
                }
            }
            for key in is.into_iter().flat_map(|value| index_keys(value)) {
                index.entry(key.to_owned()).or_default().insert(id.to_owned());
            }
        }
    }

    /// Builds the indexes of component `key` that a query with `spec` can use and that do not
    /// exist yet.
    pub(super) fn prepare(&mut self, key: &str, spec: &Expr) {
        let mut wanted = Vec::new();
        indexable_fields(spec, &mut wanted);
        if wanted.is_empty() || scan_only() {
            return;
        }
        let Some(records) = self.components.get(key) else { return };
        let fields = self.indexes.entry(key.to_owned()).or_default();
        for field in wanted {
            if fields.contains_key(field) {
                continue;
            }
            let mut index = FieldIndex::new();
            for (id, record) in records {
                for key in record.get(field).into_iter().flat_map(|value| index_keys(value)) {
                    index.entry(key.to_owned()).or_default().insert(id.clone());
                }
            }
            fields.insert(field.to_owned(), index);
        }
    }

    /// The records of component `key` a query with `spec` has to look at, in Id order: the
    /// ones the indexes narrow `spec` to, else all. Always a superset of the records matching
    /// `spec`; the caller still evaluates it.
    pub(super) fn candidates(&self, key: &str, spec: Option<&Expr>) -> Vec<&Record> {
        let Some(records) = self.components.get(key) else { return Vec::new() };
        let narrowed = spec.zip(self.indexes.get(key)).and_then(|(spec, fields)| narrow(spec, fields));
        match narrowed {
            None => records.values().collect(),
            Some(sets) => {
                let ids: BTreeSet<&str> = sets.into_iter().flatten().map(String::as_str).collect();
                ids.into_iter().filter_map(|id| records.get(id)).collect()
            }
        }
    }
}

/// The keys a value is indexed under: itself and each of its comma-separated values, trimmed
/// (a multi-value field), so `EXISTS ([Field] = 'v')` is looked up like an equality. A
/// plain equality may then get a few extra candidates (lists holding `v`); they are evaluated
/// and dropped.
fn index_keys(value: &str) -> impl Iterator<Item = &str> {
    let elements = value.split(',').map(str::trim).filter(move |e| !e.is_empty() && *e != value);
    std::iter::once(value).chain(elements)
}

/// `[Field] = 'text'` (either way round) where `=` holds only for that very text: the field.
fn indexable_equality(expr: &Expr) -> Option<(&str, &str)> {
    let (field, value) = match expr {
        Expr::Compare(Operand::Field(field), CmpOp::Eq, Operand::Literal(value))
        | Expr::Compare(Operand::Literal(value), CmpOp::Eq, Operand::Field(field)) => (field, value),
        _ => return None,
    };
    equals_only_itself(value).then_some((field.as_str(), value.as_str()))
}

/// The fields of the indexable equalities `narrow` may use (under AND and OR only).
fn indexable_fields<'a>(expr: &'a Expr, out: &mut Vec<&'a str>) {
    match expr {
        Expr::And(left, right) | Expr::Or(left, right) => {
            indexable_fields(left, out);
            indexable_fields(right, out);
        }
        Expr::Exists(inner) => indexable_fields(inner, out),
        other => out.extend(indexable_equality(other).map(|(field, _)| field)),
    }
}

/// The Id sets whose union holds every record matching `expr`, when the indexes tell;
/// `None` when only a scan can. An equality gives its value's set (none: no record); an OR
/// needs both sides narrowed and unites them; an AND takes the smaller narrowed side.
fn narrow<'a>(expr: &Expr, fields: &'a HashMap<String, FieldIndex>) -> Option<Vec<&'a BTreeSet<String>>> {
    match expr {
        Expr::Or(left, right) => {
            let mut sets = narrow(left, fields)?;
            sets.extend(narrow(right, fields)?);
            Some(sets)
        }
        Expr::And(left, right) => match (narrow(left, fields), narrow(right, fields)) {
            (Some(a), Some(b)) => {
                let size = |sets: &[&BTreeSet<String>]| sets.iter().map(|set| set.len()).sum::<usize>();
                Some(if size(&b) < size(&a) { b } else { a })
            }
            (Some(one), None) | (None, Some(one)) => Some(one),
            (None, None) => None,
        },
        Expr::Exists(inner) => narrow(inner, fields),
        other => {
            let (field, value) = indexable_equality(other)?;
            Some(fields.get(field)?.get(value).into_iter().collect())
        }
    }
}

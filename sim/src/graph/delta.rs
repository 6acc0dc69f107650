//! Delta queries: the opaque `$skiptoken` / `$deltatoken` state and the pages they read.
//! A round reports the changes with sequence numbers in `(from, to]`, in sequence order; a
//! page ends with `@odata.nextLink` while the round has more, else with `@odata.deltaLink`
//! whose state starts the next round at `to`. The first round lists the live items only;
//! later rounds add `{"id", "@removed": {"reason": "deleted"}}` for deletes.

use base64::Engine as _;
use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::resource::{self, RenderOptions};
use super::store::{Collection, CollectionRef, Item, Kind};

/// What a delta token carries (base64url JSON: opaque to clients).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeltaState {
    pub mailbox: String,
    pub collection: CollectionRef,
    /// Changes after this sequence number…
    pub from: u64,
    /// …up to this one (`None` in a deltaLink: the store's sequence when it is used).
    pub to: Option<u64>,
    /// Within a round: the last sequence number already reported.
    pub after: u64,
    /// Whether this is the first round (no `@removed` entries).
    pub initial: bool,
    /// The store's delta generation when the state was made.
    pub generation: u64,
    pub select: Option<Vec<String>>,
    /// calendarView/delta's window, as given.
    pub window: Option<(String, String)>,
}

impl DeltaState {
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    pub fn decode(token: &str) -> Option<Self> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.trim())
            .ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn window_bounds(&self) -> Option<(NaiveDateTime, NaiveDateTime)> {
        let (start, end) = self.window.as_ref()?;
        Some((
            resource::parse_date_time(start)?,
            resource::parse_date_time(end)?,
        ))
    }
}

/// One page of a delta round.
#[derive(Debug)]
pub struct DeltaPage {
    pub value: Vec<Value>,
    /// The state for `@odata.nextLink` (`$skiptoken`) or, when the round is over,
    /// `@odata.deltaLink` (`$deltatoken`).
    pub next: DeltaState,
    pub done: bool,
}

enum Entry<'a> {
    Live(&'a Item),
    Removed(&'a str),
}

/// Reads one page of `state`'s round from `collection` (`current_seq` fixes the round's end
/// when it starts).
pub fn page(
    collection: &Collection,
    state: &DeltaState,
    current_seq: u64,
    page_size: usize,
    text_bodies: bool,
) -> DeltaPage {
    let to = state.to.unwrap_or(current_seq);
    let after = state.after.max(state.from);
    let window = state.window_bounds();
    let in_window = |item: &Item| match (&window, item.kind) {
        (Some((start, end)), Kind::Event) => resource::event_in_window(item, start, end),
        _ => true,
    };
    let mut entries: Vec<(u64, Entry<'_>)> = collection
        .items
        .values()
        .filter(|item| item.seq > after && item.seq <= to)
        .filter_map(|item| match (in_window(item), state.initial) {
            (true, _) => Some((item.seq, Entry::Live(item))),
            // An event changed outside the window is reported as removed (Graph does so).
            (false, false) => Some((item.seq, Entry::Removed(item.id.as_str()))),
            (false, true) => None,
        })
        .collect();
    if !state.initial {
        entries.extend(
            collection
                .removed
                .iter()
                .filter(|(_, seq)| **seq > after && **seq <= to)
                .map(|(id, seq)| (*seq, Entry::Removed(id.as_str()))),
        );
    }
    entries.sort_by_key(|(seq, _)| *seq);
    let done = entries.len() <= page_size;
    entries.truncate(page_size);
    let last = entries.last().map_or(after, |(seq, _)| *seq);
    let options = RenderOptions {
        select: state.select.clone(),
        text_bodies: Some(text_bodies),
        ..Default::default()
    };
    let value = entries
        .iter()
        .map(|(_, entry)| match entry {
            Entry::Live(item) => resource::render(item, &collection.id, &options),
            Entry::Removed(id) => json!({"id": id, "@removed": {"reason": "deleted"}}),
        })
        .collect();
    let next = if done {
        DeltaState {
            from: to,
            to: None,
            after: to,
            initial: false,
            ..state.clone()
        }
    } else {
        DeltaState {
            to: Some(to),
            after: last,
            ..state.clone()
        }
    };
    DeltaPage { value, next, done }
}

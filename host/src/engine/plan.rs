//! Deciding, apart from writing: what a domain run will do, as a pure function of what it
//! read. `run.rs` reads both sides and maps them (reads only), hands a [`Snapshot`] to
//! [`plan_domain`], and carries the [`DomainPlan`] out under the journal. No store, no
//! server, no plugin here: a dry run is a plan that is never applied, and a test can check
//! plans directly.

use std::collections::{BTreeSet, HashMap};

use super::{matching, sync_id_for};
use crate::domain::{DomainSpec, Link, OutlookDelete, SyncLevel};
use crate::plugin::Side;
use crate::record::{Fields, content_hash};

/// The Exchange side of a linked pair as read in this run, mapped back to Siebel shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ExchangeSide<'a> {
    /// `content_hash` of the item mapped back to Siebel shape.
    pub hash: &'a str,
    pub change_key: &'a str,
}

/// What a linked pair, in the user's scope on both sides, needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PairAction {
    /// Neither side changed.
    InStep,
    /// Same content, new ChangeKey (our own write, or an edit of an unmapped field): the link
    /// remembers the new ChangeKey.
    NoteChangeKey,
    /// Edited in Outlook only: the edit goes to Siebel (under Export only the copy is
    /// restored instead).
    PushToSiebel,
    /// Edited in Siebel only: the Exchange copy is written, with the ChangeKey as precondition.
    PushToExchange,
    /// Edited on both sides since they last agreed: the conflict policy decides.
    Conflict,
}

/// Decides a linked pair from the hash of the Siebel record mapped to Exchange shape, the
/// Exchange item if it was read in this run (it changed, or is new to the run), and the level
/// the record syncs at. Under Full sync an Exchange edit counts when it changes what maps
/// back to Siebel; under Export only any Outlook edit does (the copy is restored), so a
/// mapping that maps nothing back (employees) still sees it.
pub(super) fn pair_action(link: &Link, siebel_hash: &str, exchange: Option<ExchangeSide<'_>>, level: SyncLevel) -> PairAction {
    let siebel_changed = siebel_hash != link.siebel_hash;
    let exchange_changed = exchange.is_some_and(|now| match level {
        SyncLevel::Full => now.hash != link.exchange_hash,
        _ => now.change_key != link.change_key,
    });
    match (siebel_changed, exchange) {
        (false, Some(_)) if exchange_changed => PairAction::PushToSiebel,
        (false, Some(now)) if now.change_key != link.change_key => PairAction::NoteChangeKey,
        (false, _) => PairAction::InStep,
        (true, Some(_)) if exchange_changed => PairAction::Conflict,
        (true, _) => PairAction::PushToExchange,
    }
}

/// What deleting the Exchange copy of a linked pair in Outlook does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GoneAction {
    /// An invitee deleted a meeting they were invited to: they leave its participants; the
    /// meeting stays.
    LeaveMeeting,
    /// The record leaves the user's sync list; the Siebel record stays (business contacts).
    LeaveSyncList,
    /// The copy is written again from Siebel (employees; Export only).
    Restore,
    /// The Siebel record is deleted too (Full sync of personal contacts, activities).
    DeleteInSiebel,
    /// Nothing is left to do but forget the link: the Siebel record is gone as well.
    Forget,
}

/// SSSE's rule for an Outlook delete, by domain and level. `participant_copy`: the record is a
/// meeting in the calendar of a participant, not its owner; `record_in_scope`: the Siebel
/// record is still among the user's records.
pub(super) fn gone_action(spec: &DomainSpec, level: SyncLevel, participant_copy: bool, record_in_scope: bool) -> GoneAction {
    if record_in_scope && level == SyncLevel::Full && participant_copy {
        return GoneAction::LeaveMeeting;
    }
    let rule = match (spec.outlook_delete, level) {
        (OutlookDelete::DeleteInSiebel, SyncLevel::Full) => OutlookDelete::DeleteInSiebel,
        (OutlookDelete::DeleteInSiebel, _) => OutlookDelete::Restore,
        (rule, _) => rule,
    };
    match rule {
        OutlookDelete::LeaveSyncList => GoneAction::LeaveSyncList,
        OutlookDelete::Restore if record_in_scope => GoneAction::Restore,
        OutlookDelete::DeleteInSiebel if record_in_scope => GoneAction::DeleteInSiebel,
        OutlookDelete::Restore | OutlookDelete::DeleteInSiebel => GoneAction::Forget,
    }
}

/// What a run does with an Exchange item it has no link for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum NewItemAction {
    /// Our own copy of this Siebel record, made by a create whose link was lost (a crash, a
    /// reset): link it instead of creating another.
    Adopt { siebel_id: String },
    /// A copy carrying a sync id this domain does not expect (another domain's or record's):
    /// never imported.
    LeaveAlone,
    /// A meeting this mailbox did not organize: it comes into Siebel through its organizer.
    ThroughItsOrganizer,
    /// The domain does not import at this level.
    Skip,
    /// The domain's filter keeps it out: left for the folder's other domains.
    FilteredOut,
    /// The domain's filter could not judge it: set aside, retried later.
    SetAside,
    /// Made by the user in Outlook: a new Siebel record.
    Import,
}

/// Decides an unlinked Exchange item from its sync id, the sync ids of this run's open
/// creates (sync id → Siebel id, for records of the user not linked yet), whether items of
/// this domain come into Siebel through this mailbox, and the filter's verdict on it (`None`:
/// the filter could not judge).
pub(super) fn new_item_action(
    spec: &DomainSpec,
    level: SyncLevel,
    sync_id: Option<&str>,
    open_creates: &HashMap<String, String>,
    imports_through_this_mailbox: bool,
    included: Option<bool>,
) -> NewItemAction {
    match sync_id {
        Some(sync_id) => match open_creates.get(sync_id) {
            Some(siebel_id) => NewItemAction::Adopt { siebel_id: siebel_id.clone() },
            None => NewItemAction::LeaveAlone,
        },
        None if !imports_through_this_mailbox => NewItemAction::ThroughItsOrganizer,
        None if !spec.imports || level != SyncLevel::Full => NewItemAction::Skip,
        None => match included {
            Some(true) => NewItemAction::Import,
            Some(false) => NewItemAction::FilteredOut,
            None => NewItemAction::SetAside,
        },
    }
}

/// How much a domain run would delete, counted before anything is written, for the
/// mass-delete guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PlannedDeletes {
    /// Exchange copies of records that left the user's scope (or Siebel).
    pub exchange_copies: usize,
    /// Outlook deletes that take something out of Siebel (a record, or a sync-list entry).
    pub from_siebel: usize,
}

/// Counts the deletes a run of `spec` at `level` would make over `links`, given the items
/// deleted in Exchange, the user's Siebel records (by id) and the records held back this run
/// (neither linked nor unlinked: their fate is decided another time).
pub(super) fn planned_deletes<R>(
    spec: &DomainSpec,
    level: SyncLevel,
    links: &[Link],
    deleted_in_exchange: &BTreeSet<String>,
    records: &HashMap<String, R>,
    held: &BTreeSet<String>,
) -> PlannedDeletes {
    let exchange_copies = links
        .iter()
        .filter(|l| !deleted_in_exchange.contains(&l.exchange_id))
        .filter(|l| !records.contains_key(&l.siebel_id) && !held.contains(&l.siebel_id))
        .count();
    let from_siebel = if spec.outlook_delete == OutlookDelete::Restore || level != SyncLevel::Full {
        0
    } else {
        links.iter().filter(|l| deleted_in_exchange.contains(&l.exchange_id)).count()
    };
    PlannedDeletes { exchange_copies, from_siebel }
}

/// A Siebel record of the user's, as the planner sees it.
#[derive(Debug, Clone, Copy)]
pub(super) struct RecordFacts<'a> {
    /// Its Exchange form; `None` when the mapping failed.
    pub form: Option<&'a Fields>,
    /// The user's copy of a meeting they take part in but do not own.
    pub participant_copy: bool,
}

/// An Exchange item no domain of the folder has linked, as the planner sees it.
#[derive(Debug, Clone, Copy)]
pub(super) struct NewItem<'a> {
    pub id: &'a str,
    pub sync_id: Option<&'a str>,
    pub fields: &'a Fields,
    pub imports_through_this_mailbox: bool,
    /// The domain filter's verdict on it (items without a sync id); `None`: it could not judge.
    pub included: Option<bool>,
}

/// Everything a domain run read, mapped: the planner's whole input.
pub(super) struct Snapshot<'a> {
    pub spec: &'static DomainSpec,
    pub level: SyncLevel,
    pub login: &'a str,
    /// The user's records of the domain now, by Siebel id.
    pub records: &'a HashMap<String, RecordFacts<'a>>,
    /// Records the filter could not judge: left alone on both sides this run.
    pub held: &'a BTreeSet<String>,
    /// Item ids deleted in Exchange since the last run.
    pub deleted: &'a BTreeSet<String>,
    /// Linked items read in this run (they changed), mapped back to Siebel shape; `None` when
    /// the mapping failed.
    pub linked_items: &'a HashMap<String, Option<ExchangeSide<'a>>>,
    /// Items new to the folder, in the order they are handled.
    pub new_items: &'a [NewItem<'a>],
    /// Invitations left unclaimed in earlier runs, read again: matching candidates only.
    pub unclaimed: &'a [NewItem<'a>],
    /// The domain's matching key sets (none: matching is off).
    pub key_sets: &'a [Vec<String>],
}

/// What a run does with one link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LinkStep {
    /// The filter could not judge the record: both sides stay as they are.
    Hold,
    /// The Exchange copy was deleted in Outlook: the domain's rule applies. The delete wins
    /// over a Siebel edit made meanwhile (`lost_siebel_edit`, logged as a conflict).
    OutlookDeleted { action: GoneAction, lost_siebel_edit: bool },
    /// The record left the user's scope (or Siebel): its Exchange copy is deleted, even over
    /// an Outlook edit made meanwhile (`lost_exchange_edit`, logged as a conflict).
    DeleteExchangeCopy { lost_exchange_edit: bool },
    /// One side could not be mapped: that record is set aside, nothing is written.
    SetAside(Side),
    /// Both sides mapped: the pair's action.
    Pair(PairAction),
}

/// Decides one link from its Siebel record (`None`: out of scope) and Exchange item as read
/// in this run.
fn link_step(snapshot: &Snapshot<'_>, link: &Link) -> LinkStep {
    if snapshot.held.contains(&link.siebel_id) {
        return LinkStep::Hold;
    }
    let record = snapshot.records.get(&link.siebel_id);
    let siebel_hash = record.and_then(|r| r.form).map(content_hash);
    let participant_copy = record.is_some_and(|r| r.participant_copy);
    if snapshot.deleted.contains(&link.exchange_id) {
        let action = gone_action(snapshot.spec, snapshot.level, participant_copy, record.is_some());
        let lost_siebel_edit = siebel_hash.is_some_and(|hash| hash != link.siebel_hash);
        return LinkStep::OutlookDeleted { action, lost_siebel_edit };
    }
    let item = snapshot.linked_items.get(&link.exchange_id);
    let Some(record) = record else {
        let lost_exchange_edit = item.copied().flatten().is_some_and(|now| now.hash != link.exchange_hash);
        return LinkStep::DeleteExchangeCopy { lost_exchange_edit };
    };
    let Some(siebel_hash) = siebel_hash else { return LinkStep::SetAside(Side::Siebel) };
    let exchange = match item {
        Some(None) => return LinkStep::SetAside(Side::Exchange),
        Some(Some(now)) => Some(*now),
        None => None,
    };
    // A participant's copy syncs export-only: Siebel is its master.
    let level = if snapshot.level == SyncLevel::Full && record.participant_copy { SyncLevel::Export } else { snapshot.level };
    LinkStep::Pair(pair_action(link, &siebel_hash, exchange, level))
}

/// The whole of what a domain run will do, in the order it is done.
#[derive(Debug)]
pub(super) struct DomainPlan {
    /// Counted before anything is written, for the mass-delete guard.
    pub deletes: PlannedDeletes,
    /// Every link of the domain with its step.
    pub links: Vec<(Link, LinkStep)>,
    /// Unlinked Siebel records and new Exchange items found to be the same record (Siebel id,
    /// item id): linked, Siebel's version written over the item.
    pub matches: Vec<(String, String)>,
    /// Every new item this domain looked at (item id) with what is done with it.
    pub new_items: Vec<(String, NewItemAction)>,
    /// Records that entered the user's scope (or whose copy is restored): their Exchange
    /// copies are created, in this order.
    pub creates: Vec<String>,
    /// Records that entered the scope but could not be mapped: set aside.
    pub unmappable: Vec<String>,
}

/// Plans a domain run. Owns the links so the plan can carry them to the apply step.
pub(super) fn plan_domain(snapshot: &Snapshot<'_>, links: Vec<Link>) -> DomainPlan {
    let Snapshot { spec, level, login, records, .. } = *snapshot;
    let deletes = planned_deletes(spec, level, &links, snapshot.deleted, records, snapshot.held);
    let mut linked: BTreeSet<String> = links.iter().map(|l| l.siebel_id.clone()).collect();
    let links: Vec<(Link, LinkStep)> = links
        .into_iter()
        .map(|link| {
            let step = link_step(snapshot, &link);
            if let LinkStep::OutlookDeleted { action: GoneAction::Restore, .. } = step {
                linked.remove(&link.siebel_id);
            }
            (link, step)
        })
        .collect();

    // Matching: an unlinked Siebel record and a new Exchange item with the same key are one
    // record seen twice.
    let mut unlinked: Vec<(String, Fields)> = records
        .iter()
        .filter(|(id, _)| !linked.contains(*id))
        .filter_map(|(id, r)| r.form.map(|form| (id.clone(), form.clone())))
        .collect();
    unlinked.sort_by(|a, b| a.0.cmp(&b.0));
    let mut matches: Vec<(String, String)> = Vec::new();
    if !snapshot.key_sets.is_empty() && !unlinked.is_empty() {
        // Only items this domain would take (a private contact is not a business one).
        let candidates: Vec<(String, Fields)> = snapshot
            .new_items
            .iter()
            .chain(snapshot.unclaimed)
            .filter(|item| item.sync_id.is_none() && item.included == Some(true))
            .map(|item| (item.id.to_owned(), item.fields.clone()))
            .collect();
        matches = matching::pair(&unlinked, &candidates, snapshot.key_sets)
            .into_iter()
            .map(|(siebel_id, item_id)| (siebel_id.to_owned(), item_id.to_owned()))
            .collect();
    }
    linked.extend(matches.iter().map(|(siebel_id, _)| siebel_id.clone()));
    let matched_items: BTreeSet<&str> = matches.iter().map(|(_, item_id)| item_id.as_str()).collect();

    // Items new to us: our own copies are adopted (their sync id is derived from the
    // record, so it is known without a link), what users made is imported.
    let open_creates: HashMap<String, String> = records
        .keys()
        .filter(|id| !linked.contains(*id))
        .map(|id| (sync_id_for(login, spec.name, &format!("siebel:{id}")), id.clone()))
        .collect();
    let new_items: Vec<(String, NewItemAction)> = snapshot
        .new_items
        .iter()
        .filter(|item| !matched_items.contains(item.id))
        .map(|item| {
            let action = new_item_action(
                spec,
                level,
                item.sync_id,
                &open_creates,
                item.imports_through_this_mailbox,
                item.included,
            );
            if let NewItemAction::Adopt { siebel_id } = &action {
                linked.insert(siebel_id.clone());
            }
            (item.id.to_owned(), action)
        })
        .collect();

    let mut entering: Vec<&String> = records.keys().filter(|id| !linked.contains(*id)).collect();
    entering.sort();
    let (creates, unmappable): (Vec<&String>, Vec<&String>) =
        entering.into_iter().partition(|id| records[*id].form.is_some());
    DomainPlan {
        deletes,
        links,
        matches,
        new_items,
        creates: creates.into_iter().cloned().collect(),
        unmappable: unmappable.into_iter().cloned().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ALL, CALENDAR, CONTACTS, EMPLOYEES, TASKS};
    use crate::record::Fields;

    fn link(siebel_id: &str, exchange_id: &str) -> Link {
        Link {
            login: "U".into(),
            domain: crate::domain::Domain::Contacts,
            siebel_id: siebel_id.into(),
            exchange_id: exchange_id.into(),
            change_key: "ck-1".into(),
            sync_id: format!("sync-{siebel_id}"),
            siebel_updated: None,
            siebel_hash: "s-1".into(),
            exchange_hash: "e-1".into(),
            base: Fields::new(),
        }
    }

    fn spec(name: &str) -> &'static DomainSpec {
        DomainSpec::named(name).expect("a domain")
    }

    fn side<'a>(hash: &'a str, change_key: &'a str) -> Option<ExchangeSide<'a>> {
        Some(ExchangeSide { hash, change_key })
    }

    #[test]
    fn a_pair_follows_the_side_that_changed() {
        let l = link("1", "A");
        let full = SyncLevel::Full;
        assert_eq!(pair_action(&l, "s-1", None, full), PairAction::InStep);
        assert_eq!(pair_action(&l, "s-1", side("e-1", "ck-1"), full), PairAction::InStep);
        assert_eq!(pair_action(&l, "s-1", side("e-1", "ck-2"), full), PairAction::NoteChangeKey);
        assert_eq!(pair_action(&l, "s-1", side("e-2", "ck-2"), full), PairAction::PushToSiebel);
        assert_eq!(pair_action(&l, "s-2", None, full), PairAction::PushToExchange);
        assert_eq!(pair_action(&l, "s-2", side("e-1", "ck-2"), full), PairAction::PushToExchange);
        assert_eq!(pair_action(&l, "s-2", side("e-2", "ck-2"), full), PairAction::Conflict);
    }

    #[test]
    fn under_export_only_any_outlook_edit_counts() {
        let l = link("1", "A");
        let export = SyncLevel::Export;
        // Nothing maps back (same hash), yet the ChangeKey moved: the copy is restored.
        assert_eq!(pair_action(&l, "s-1", side("e-1", "ck-2"), export), PairAction::PushToSiebel);
        assert_eq!(pair_action(&l, "s-2", side("e-1", "ck-2"), export), PairAction::Conflict);
        assert_eq!(pair_action(&l, "s-1", side("e-9", "ck-1"), export), PairAction::InStep);
    }

    #[test]
    fn outlook_deletes_follow_ssse_by_domain_and_level() {
        let full = SyncLevel::Full;
        let export = SyncLevel::Export;
        assert_eq!(gone_action(spec(CONTACTS), full, false, true), GoneAction::LeaveSyncList);
        assert_eq!(gone_action(spec(CONTACTS), full, false, false), GoneAction::LeaveSyncList);
        assert_eq!(gone_action(spec(EMPLOYEES), export, false, true), GoneAction::Restore);
        assert_eq!(gone_action(spec(EMPLOYEES), export, false, false), GoneAction::Forget);
        assert_eq!(gone_action(spec(TASKS), full, false, true), GoneAction::DeleteInSiebel);
        assert_eq!(gone_action(spec(TASKS), export, false, true), GoneAction::Restore);
        assert_eq!(gone_action(spec(TASKS), full, false, false), GoneAction::Forget);
        assert_eq!(gone_action(spec(CALENDAR), full, true, true), GoneAction::LeaveMeeting);
        // A participant's copy under Export only is restored like any other.
        assert_eq!(gone_action(spec(CALENDAR), export, true, true), GoneAction::Restore);
    }

    #[test]
    fn unlinked_items_are_adopted_left_alone_or_imported() {
        let open = HashMap::from([("sync-7".to_owned(), "7".to_owned())]);
        let full = SyncLevel::Full;
        let adopt = new_item_action(spec(CONTACTS), full, Some("sync-7"), &open, true, Some(true));
        assert_eq!(adopt, NewItemAction::Adopt { siebel_id: "7".into() });
        // A sync id is never imported, whatever the level.
        assert_eq!(new_item_action(spec(CONTACTS), full, Some("sync-8"), &open, true, Some(true)), NewItemAction::LeaveAlone);
        assert_eq!(new_item_action(spec(CONTACTS), full, None, &open, true, Some(true)), NewItemAction::Import);
        assert_eq!(new_item_action(spec(CONTACTS), SyncLevel::Export, None, &open, true, Some(true)), NewItemAction::Skip);
        assert_eq!(new_item_action(spec(EMPLOYEES), full, None, &open, true, Some(true)), NewItemAction::Skip, "employees never import");
        assert_eq!(new_item_action(spec(CALENDAR), full, None, &open, false, Some(true)), NewItemAction::ThroughItsOrganizer);
        assert_eq!(new_item_action(spec(CONTACTS), full, None, &open, true, Some(false)), NewItemAction::FilteredOut);
        assert_eq!(new_item_action(spec(CONTACTS), full, None, &open, true, None), NewItemAction::SetAside);
    }

    #[test]
    fn planned_deletes_count_scope_exits_and_outlook_deletes() {
        let links = vec![link("1", "A"), link("2", "B"), link("3", "C"), link("4", "D")];
        let deleted = BTreeSet::from(["A".to_owned()]);
        let records: HashMap<String, ()> = HashMap::from([("1".to_owned(), ()), ("2".to_owned(), ())]);
        let held = BTreeSet::from(["3".to_owned()]);
        // "4" left the scope; "3" is held back; "1" was deleted in Outlook.
        let tasks = planned_deletes(spec(TASKS), SyncLevel::Full, &links, &deleted, &records, &held);
        assert_eq!(tasks, PlannedDeletes { exchange_copies: 1, from_siebel: 1 });
        let export = planned_deletes(spec(TASKS), SyncLevel::Export, &links, &deleted, &records, &held);
        assert_eq!(export.from_siebel, 0, "export only restores");
        let employees = planned_deletes(spec(EMPLOYEES), SyncLevel::Full, &links, &deleted, &records, &held);
        assert_eq!(employees.from_siebel, 0, "employees are restored");
        assert!(ALL.iter().all(|s| planned_deletes(s, SyncLevel::Full, &[], &deleted, &records, &held).exchange_copies == 0));
    }

    fn form(email: &str) -> Fields {
        Fields::from([("Email".to_owned(), crate::record::Value::Text(email.into()))])
    }

    fn linked(siebel_id: &str, exchange_id: &str, siebel: &Fields, exchange: &Fields) -> Link {
        Link { siebel_hash: content_hash(siebel), exchange_hash: content_hash(exchange), ..link(siebel_id, exchange_id) }
    }

    fn item<'a>(id: &'a str, sync_id: Option<&'a str>, fields: &'a Fields, included: Option<bool>) -> NewItem<'a> {
        NewItem { id, sync_id, fields, imports_through_this_mailbox: true, included }
    }

    #[test]
    fn a_domain_plan_covers_every_link_match_arrival_and_create() {
        let same = form("one@example.com");
        let edited = form("edited@example.com");
        let new = form("new@example.com");
        let links = vec![
            linked("1", "A", &same, &same),
            linked("2", "B", &same, &same),
            linked("3", "C", &same, &same),
            linked("4", "D", &same, &same),
            linked("5", "E", &same, &same),
            linked("9", "H", &same, &same),
        ];
        let fact = |form| RecordFacts { form, participant_copy: false };
        let records = HashMap::from([
            ("1".to_owned(), fact(Some(&same))),
            ("2".to_owned(), fact(Some(&edited))),
            ("4".to_owned(), fact(Some(&same))),
            ("5".to_owned(), fact(None)),
            ("6".to_owned(), fact(Some(&new))),
            ("7".to_owned(), fact(None)),
            ("8".to_owned(), fact(Some(&same))),
            ("9".to_owned(), fact(Some(&same))),
        ]);
        let held = BTreeSet::from(["9".to_owned()]);
        let deleted = BTreeSet::from(["B".to_owned()]);
        let edited_side = content_hash(&edited);
        let linked_items = HashMap::from([("D".to_owned(), Some(ExchangeSide { hash: &edited_side, change_key: "ck-2" }))]);
        let adopted_sync_id = sync_id_for("U", CONTACTS, "siebel:8");
        let new_items = [
            item("M", None, &new, Some(true)),
            item("N", None, &edited, Some(true)),
            item("F", None, &edited, Some(false)),
            item("X", Some(&adopted_sync_id), &same, None),
            item("Q", None, &edited, None),
        ];
        let key_sets = vec![vec!["Email".to_owned()]];
        let snapshot = Snapshot {
            spec: spec(CONTACTS),
            level: SyncLevel::Full,
            login: "U",
            records: &records,
            held: &held,
            deleted: &deleted,
            linked_items: &linked_items,
            new_items: &new_items,
            unclaimed: &[],
            key_sets: &key_sets,
        };
        let plan = plan_domain(&snapshot, links);
        let steps: Vec<(&str, LinkStep)> = plan.links.iter().map(|(l, step)| (l.siebel_id.as_str(), *step)).collect();
        assert_eq!(
            steps,
            vec![
                ("1", LinkStep::Pair(PairAction::InStep)),
                ("2", LinkStep::OutlookDeleted { action: GoneAction::LeaveSyncList, lost_siebel_edit: true }),
                ("3", LinkStep::DeleteExchangeCopy { lost_exchange_edit: false }),
                ("4", LinkStep::Pair(PairAction::PushToSiebel)),
                ("5", LinkStep::SetAside(Side::Siebel)),
                ("9", LinkStep::Hold),
            ]
        );
        assert_eq!(plan.deletes, PlannedDeletes { exchange_copies: 1, from_siebel: 1 });
        assert_eq!(plan.matches, vec![("6".to_owned(), "M".to_owned())]);
        assert_eq!(
            plan.new_items,
            vec![
                ("N".to_owned(), NewItemAction::Import),
                ("F".to_owned(), NewItemAction::FilteredOut),
                ("X".to_owned(), NewItemAction::Adopt { siebel_id: "8".into() }),
                ("Q".to_owned(), NewItemAction::SetAside),
            ]
        );
        assert!(plan.creates.is_empty(), "6 was matched, 8 adopted: {:?}", plan.creates);
        assert_eq!(plan.unmappable, vec!["7".to_owned()]);
    }

    #[test]
    fn a_restored_copy_is_created_again_and_a_participant_copy_is_export_only() {
        let same = form("one@example.com");
        let same_hash = content_hash(&same);
        let moved = Some(ExchangeSide { hash: &same_hash, change_key: "ck-2" });
        let plan_of = |spec_name: &str, participant_copy: bool, deleted: &[&str], linked_items: HashMap<String, Option<ExchangeSide<'_>>>| {
            let links = vec![linked("1", "A", &same, &same)];
            let records = HashMap::from([("1".to_owned(), RecordFacts { form: Some(&same), participant_copy })]);
            let deleted: BTreeSet<String> = deleted.iter().map(|d| (*d).to_owned()).collect();
            let snapshot = Snapshot {
                spec: spec(spec_name),
                level: SyncLevel::Full,
                login: "U",
                records: &records,
                held: &BTreeSet::new(),
                deleted: &deleted,
                linked_items: &linked_items,
                new_items: &[],
                unclaimed: &[],
                key_sets: &[],
            };
            plan_domain(&snapshot, links)
        };
        let restored = plan_of(EMPLOYEES, false, &["A"], HashMap::new());
        assert_eq!(restored.links[0].1, LinkStep::OutlookDeleted { action: GoneAction::Restore, lost_siebel_edit: false });
        assert_eq!(restored.creates, vec!["1".to_owned()], "the deleted copy is made again");
        // Only the ChangeKey moved and nothing maps back: for the owner our own write, but a
        // participant's copy is export-only, so any Outlook edit is overwritten.
        let own = plan_of(CALENDAR, false, &[], HashMap::from([("A".to_owned(), moved)]));
        assert_eq!(own.links[0].1, LinkStep::Pair(PairAction::NoteChangeKey));
        let participant = plan_of(CALENDAR, true, &[], HashMap::from([("A".to_owned(), moved)]));
        assert_eq!(participant.links[0].1, LinkStep::Pair(PairAction::PushToSiebel));
        let left = plan_of(CALENDAR, true, &["A"], HashMap::new());
        assert_eq!(left.links[0].1, LinkStep::OutlookDeleted { action: GoneAction::LeaveMeeting, lost_siebel_edit: false });
        assert!(left.creates.is_empty());
    }
}

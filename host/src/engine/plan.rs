//! Deciding, apart from writing: what a domain run does with each linked pair, with an
//! Outlook delete, and how much it would delete, as pure functions of what both sides look
//! like now and what the link remembers. No store, no server, no plugin: `run.rs` maps the
//! records, asks here, and carries the answer out.

use std::collections::{BTreeSet, HashMap};

use crate::domain::{DomainSpec, Link, OutlookDelete, SyncLevel};

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
    /// Made by the user in Outlook: a new Siebel record (if the filter lets it in).
    Import,
}

/// Decides an unlinked Exchange item from its sync id, the sync ids of this run's open
/// creates (sync id → Siebel id, for records of the user not linked yet), and whether items
/// of this domain come into Siebel through this mailbox.
pub(super) fn new_item_action(
    spec: &DomainSpec,
    level: SyncLevel,
    sync_id: Option<&str>,
    open_creates: &HashMap<String, String>,
    imports_through_this_mailbox: bool,
) -> NewItemAction {
    match sync_id {
        Some(sync_id) => match open_creates.get(sync_id) {
            Some(siebel_id) => NewItemAction::Adopt { siebel_id: siebel_id.clone() },
            None => NewItemAction::LeaveAlone,
        },
        None if !imports_through_this_mailbox => NewItemAction::ThroughItsOrganizer,
        None if !spec.imports || level != SyncLevel::Full => NewItemAction::Skip,
        None => NewItemAction::Import,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ALL, CALENDAR, CONTACTS, EMPLOYEES, TASKS};
    use crate::record::Fields;

    fn link(siebel_id: &str, exchange_id: &str) -> Link {
        Link {
            login: "U".into(),
            domain: CONTACTS.into(),
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
        let adopt = new_item_action(spec(CONTACTS), full, Some("sync-7"), &open, true);
        assert_eq!(adopt, NewItemAction::Adopt { siebel_id: "7".into() });
        // A sync id is never imported, whatever the level.
        assert_eq!(new_item_action(spec(CONTACTS), full, Some("sync-8"), &open, true), NewItemAction::LeaveAlone);
        assert_eq!(new_item_action(spec(CONTACTS), full, None, &open, true), NewItemAction::Import);
        assert_eq!(new_item_action(spec(CONTACTS), SyncLevel::Export, None, &open, true), NewItemAction::Skip);
        assert_eq!(new_item_action(spec(EMPLOYEES), full, None, &open, true), NewItemAction::Skip, "employees never import");
        assert_eq!(new_item_action(spec(CALENDAR), full, None, &open, false), NewItemAction::ThroughItsOrganizer);
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
}

//! The five sync domains as data: where each one's records live on both sides, which of them
//! belong to a user, and what SSSE's rules say when a copy is deleted on one side
//! (`reference/siebel-ssse-and-rest.md` §2–4). The run itself (`engine/run.rs`) is the same
//! for every domain; only this table tells them apart.

use crate::connectors::ews::Folder;
use crate::store::{Domains, SyncLevel};

/// The business-contact domain.
pub const CONTACTS: &str = "contacts";
/// Employees on the user's sync list, export only.
pub const EMPLOYEES: &str = "employees";
/// Siebel contacts flagged Personal Contact, owned by the user ⇄ private Outlook contacts.
pub const PERSONAL_CONTACTS: &str = "personal-contacts";
/// Activities shown in the calendar ⇄ calendar items.
pub const CALENDAR: &str = "calendar";
/// Activities shown in the To Do list ⇄ tasks.
pub const TASKS: &str = "tasks";

/// Which Siebel records of a domain belong to a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The records the user put on their sync list ("Add To Sync List") that live in this
    /// domain's business component.
    SyncList,
    /// The records the user owns (`Primary Owner Id` = the user's Employee Id), narrowed by
    /// `extra` (a searchspec clause, or empty) and then by the domain's filter plugin.
    Owned { extra: &'static str },
}

/// What a deletion in Outlook of a linked copy does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutlookDelete {
    /// The record leaves the user's sync list; the Siebel record survives (business
    /// contacts).
    LeaveSyncList,
    /// The copy is written again: Siebel is the master (employees).
    Restore,
    /// The Siebel record is deleted too under Full sync; restored under Export only
    /// (personal contacts, appointments, tasks).
    DeleteInSiebel,
}

/// One domain: everything the engine needs to know about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DomainSpec {
    /// The domain name (plugins, links, quarantine and the conflict log use it).
    pub name: &'static str,
    /// The Exchange folder of its items.
    pub folder: Folder,
    /// The Siebel business object and component of its records.
    pub bus_object: &'static str,
    pub bus_comp: &'static str,
    pub scope: Scope,
    pub outlook_delete: OutlookDelete,
    /// Whether Outlook items new to us may become Siebel records (under Full sync).
    pub imports: bool,
    /// The highest level the domain allows: employees are never written into Siebel.
    pub max_level: SyncLevel,
    /// Calendar items are imported only through their organizer's mailbox.
    pub organizer_only: bool,
    /// Records have participants (`engine/participants.rs`): attendees in Exchange, and a
    /// copy in the calendar of every enabled employee participant, not only the owner's.
    pub participants: bool,
}

/// Every domain, in the order a run handles them. Domains that share a folder share one
/// SyncFolderItems read per run.
pub const ALL: [DomainSpec; 5] = [
    DomainSpec {
        name: CONTACTS,
        folder: Folder::Contacts,
        bus_object: "Contact",
        bus_comp: "Contact",
        scope: Scope::SyncList,
        outlook_delete: OutlookDelete::LeaveSyncList,
        imports: true,
        max_level: SyncLevel::Full,
        organizer_only: false,
        participants: false,
    },
    DomainSpec {
        name: EMPLOYEES,
        folder: Folder::Contacts,
        bus_object: "Employee",
        bus_comp: "Employee",
        scope: Scope::SyncList,
        outlook_delete: OutlookDelete::Restore,
        imports: false,
        max_level: SyncLevel::Export,
        organizer_only: false,
        participants: false,
    },
    DomainSpec {
        name: PERSONAL_CONTACTS,
        folder: Folder::Contacts,
        bus_object: "Contact",
        bus_comp: "Contact",
        scope: Scope::Owned { extra: "[Personal Contact] = 'Y'" },
        outlook_delete: OutlookDelete::DeleteInSiebel,
        imports: true,
        max_level: SyncLevel::Full,
        organizer_only: false,
        participants: false,
    },
    DomainSpec {
        name: CALENDAR,
        folder: Folder::Calendar,
        bus_object: "Action",
        bus_comp: "Action",
        scope: Scope::Owned { extra: "[Display] = 'Calendar and Activities'" },
        outlook_delete: OutlookDelete::DeleteInSiebel,
        imports: true,
        max_level: SyncLevel::Full,
        organizer_only: true,
        participants: true,
    },
    DomainSpec {
        name: TASKS,
        folder: Folder::Tasks,
        bus_object: "Action",
        bus_comp: "Action",
        scope: Scope::Owned { extra: "[Display] = 'To Do and Activities'" },
        outlook_delete: OutlookDelete::DeleteInSiebel,
        imports: true,
        max_level: SyncLevel::Full,
        organizer_only: false,
        participants: false,
    },
];

/// The Exchange folders in run order, each with the name its SyncState is saved under.
pub const FOLDERS: [(Folder, &str); 3] =
    [(Folder::Contacts, "contacts"), (Folder::Calendar, "calendar"), (Folder::Tasks, "tasks")];

impl DomainSpec {
    /// The domain of this name.
    pub fn named(name: &str) -> Option<&'static DomainSpec> {
        ALL.iter().find(|spec| spec.name == name)
    }

    /// The domains whose items live in `folder`.
    pub fn in_folder(folder: Folder) -> impl Iterator<Item = &'static DomainSpec> {
        ALL.iter().filter(move |spec| spec.folder == folder)
    }

    /// The level this domain runs at for a user: the user's setting, capped by the domain.
    pub fn level(&self, domains: &Domains) -> SyncLevel {
        let wanted = match self.name {
            CONTACTS => domains.contacts,
            EMPLOYEES => domains.employees,
            PERSONAL_CONTACTS => domains.personal_contacts,
            CALENDAR => domains.calendar,
            _ => domains.tasks,
        };
        match (wanted, self.max_level) {
            (SyncLevel::None, _) | (_, SyncLevel::None) => SyncLevel::None,
            (SyncLevel::Export, _) | (_, SyncLevel::Export) => SyncLevel::Export,
            _ => SyncLevel::Full,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn employees_never_run_above_export_only() {
        let mut domains = Domains::default();
        domains.employees = SyncLevel::Full;
        let employees = DomainSpec::named(EMPLOYEES).expect("listed");
        assert_eq!(employees.level(&domains), SyncLevel::Export);
        domains.employees = SyncLevel::None;
        assert_eq!(employees.level(&domains), SyncLevel::None);
        let calendar = DomainSpec::named(CALENDAR).expect("listed");
        domains.calendar = SyncLevel::Export;
        assert_eq!(calendar.level(&domains), SyncLevel::Export);
    }

    #[test]
    fn every_folder_has_its_domains() {
        for (folder, _) in FOLDERS {
            assert!(DomainSpec::in_folder(folder).count() >= 1);
        }
        assert_eq!(DomainSpec::in_folder(Folder::Contacts).count(), 3);
    }
}

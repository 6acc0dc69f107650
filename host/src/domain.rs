//! The sync vocabulary every layer shares: the five domains (an enum and the `DomainSpec`
//! table that tells them apart), the Exchange folders, sync levels, the user map's rows,
//! links and intents. It sits at the bottom: it imports nothing of the host but records.

use serde::{Deserialize, Serialize};

use crate::record::Fields;

/// The five sync domains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Domain {
    Contacts,
    Employees,
    PersonalContacts,
    Calendar,
    Tasks,
}

impl Domain {
    /// The domain's name: plugins, links, quarantine and the conflict log use it.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Contacts => "contacts",
            Self::Employees => "employees",
            Self::PersonalContacts => "personal-contacts",
            Self::Calendar => "calendar",
            Self::Tasks => "tasks",
        }
    }

    /// The domain of this name.
    pub fn from_name(name: &str) -> Option<Self> {
        ALL.iter().map(|spec| spec.domain).find(|domain| domain.name() == name)
    }

    /// The key of the domain in `domains` tables of the configuration and the admin API
    /// (`personal_contacts`: a TOML and JSON key, so no dash).
    pub const fn key(self) -> &'static str {
        match self {
            Self::PersonalContacts => "personal_contacts",
            other => other.name(),
        }
    }

    /// The domain of this `domains` key.
    pub fn from_key(key: &str) -> Option<Self> {
        ALL.iter().map(|spec| spec.domain).find(|domain| domain.key() == key)
    }
}

/// Every domain's name, in the order of the `DomainSpec` table.
pub const NAMES: [&str; 5] = [ALL[0].name, ALL[1].name, ALL[2].name, ALL[3].name, ALL[4].name];

/// Every domain's `domains` key, in the order of the `DomainSpec` table.
pub const KEYS: [&str; 5] =
    [ALL[0].domain.key(), ALL[1].domain.key(), ALL[2].domain.key(), ALL[3].domain.key(), ALL[4].domain.key()];

impl std::fmt::Display for Domain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The distinguished folders Tandem syncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Folder {
    Contacts,
    Calendar,
    Tasks,
}

/// How a domain syncs for a user: both ways, Siebel to Exchange only, or not at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncLevel {
    Full,
    Export,
    None,
}

/// The sync level of each domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Domains {
    #[serde(default = "full")]
    pub contacts: SyncLevel,
    #[serde(default = "export")]
    pub employees: SyncLevel,
    #[serde(default = "full")]
    pub personal_contacts: SyncLevel,
    #[serde(default = "full")]
    pub calendar: SyncLevel,
    #[serde(default = "full")]
    pub tasks: SyncLevel,
}

fn full() -> SyncLevel {
    SyncLevel::Full
}

fn export() -> SyncLevel {
    SyncLevel::Export
}

impl Domains {
    /// Sets the level of a domain named as the admin API names it (`personal_contacts`);
    /// false for an unknown name.
    pub fn set(&mut self, name: &str, level: SyncLevel) -> bool {
        let Some(domain) = Domain::from_key(name) else { return false };
        *self.level_mut(domain) = level;
        true
    }

    /// The level the user set for `domain` (before the domain's own cap).
    pub fn get(&self, domain: Domain) -> SyncLevel {
        match domain {
            Domain::Contacts => self.contacts,
            Domain::Employees => self.employees,
            Domain::PersonalContacts => self.personal_contacts,
            Domain::Calendar => self.calendar,
            Domain::Tasks => self.tasks,
        }
    }

    fn level_mut(&mut self, domain: Domain) -> &mut SyncLevel {
        match domain {
            Domain::Contacts => &mut self.contacts,
            Domain::Employees => &mut self.employees,
            Domain::PersonalContacts => &mut self.personal_contacts,
            Domain::Calendar => &mut self.calendar,
            Domain::Tasks => &mut self.tasks,
        }
    }
}

impl Default for Domains {
    fn default() -> Self {
        Self {
            contacts: SyncLevel::Full,
            employees: SyncLevel::Export,
            personal_contacts: SyncLevel::Full,
            calendar: SyncLevel::Full,
            tasks: SyncLevel::Full,
        }
    }
}

/// Where a user's mailbox lives: Exchange on-premises (EWS) or Exchange Online (Graph).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExchangeBackend {
    #[default]
    Ews,
    Graph,
}

impl ExchangeBackend {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ews => "ews",
            Self::Graph => "graph",
        }
    }
}

/// One row of the user map: a Siebel login and the mailbox it syncs with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub login: String,
    pub mailbox: String,
    pub enabled: bool,
    pub domains: Domains,
    /// EWS or Graph; a hybrid organisation has both.
    #[serde(default)]
    pub backend: ExchangeBackend,
    /// This user's ExtractStartDate (an ISO date or RFC 3339 date-time), over the filter
    /// plugin's global `extract_start_date`; None: the global one.
    #[serde(default)]
    pub extract_start_date: Option<String>,
}

/// Checks an ExtractStartDate as the default filter reads it: an ISO date (`2026-01-01`,
/// midnight UTC) or an RFC 3339 date-time. The error says what to write.
pub fn check_extract_start_date(text: &str) -> Result<(), String> {
    let text = text.trim();
    if chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok() || chrono::DateTime::parse_from_rfc3339(text).is_ok() {
        Ok(())
    } else {
        Err(format!("`{text}` is not a date; write an ISO date such as 2026-01-01 (midnight UTC) or an RFC 3339 date-time"))
    }
}

/// A linked pair: what both sides looked like when they last agreed.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub login: String,
    pub domain: Domain,
    pub siebel_id: String,
    pub exchange_id: String,
    pub change_key: String,
    pub sync_id: String,
    pub siebel_updated: Option<String>,
    pub siebel_hash: String,
    pub exchange_hash: String,
    pub base: Fields,
}

/// What an intent is about to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntentKind {
    /// An Exchange copy of a Siebel record.
    CreateExchange,
    /// A Siebel record from an Outlook item.
    CreateSiebel,
}

impl IntentKind {
    /// How the `intents` table writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CreateExchange => "create-exchange",
            Self::CreateSiebel => "create-siebel",
        }
    }

    /// The kind a stored text names; `None` for a text no Tandem writes.
    pub fn parse(text: &str) -> Option<Self> {
        [Self::CreateExchange, Self::CreateSiebel].into_iter().find(|kind| kind.as_str() == text)
    }
}

/// A write the engine is about to make; see the `intents` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    pub sync_id: String,
    pub login: String,
    pub domain: Domain,
    pub operation: IntentKind,
    pub siebel_id: Option<String>,
    pub exchange_id: Option<String>,
}

/// The business-contact domain.
pub const CONTACTS: &str = Domain::Contacts.name();
/// Employees on the user's sync list, export only.
pub const EMPLOYEES: &str = Domain::Employees.name();
/// Siebel contacts flagged Personal Contact, owned by the user ⇄ private Outlook contacts.
pub const PERSONAL_CONTACTS: &str = Domain::PersonalContacts.name();
/// Activities shown in the calendar ⇄ calendar items.
pub const CALENDAR: &str = Domain::Calendar.name();
/// Activities shown in the To Do list ⇄ tasks.
pub const TASKS: &str = Domain::Tasks.name();

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
    pub domain: Domain,
    /// The domain name (`domain.name()`: plugins, links, quarantine and the conflict log use it).
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
        domain: Domain::Contacts,
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
        domain: Domain::Employees,
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
        domain: Domain::PersonalContacts,
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
        domain: Domain::Calendar,
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
        domain: Domain::Tasks,
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
        let wanted = domains.get(self.domain);
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
    fn every_domain_has_one_row_under_its_own_name() {
        for spec in ALL {
            assert_eq!(spec.name, spec.domain.name());
            assert_eq!(Domain::from_name(spec.name), Some(spec.domain));
        }
        let mut domains: Vec<Domain> = ALL.iter().map(|spec| spec.domain).collect();
        domains.sort();
        domains.dedup();
        assert_eq!(domains.len(), ALL.len());
        assert_eq!(Domain::from_name("notes"), None);
    }

    #[test]
    fn domains_tables_are_keyed_without_dashes_and_set_by_key() {
        assert_eq!(KEYS, ["contacts", "employees", "personal_contacts", "calendar", "tasks"]);
        assert_eq!(NAMES, ["contacts", "employees", "personal-contacts", "calendar", "tasks"]);
        let mut domains = Domains::default();
        assert!(domains.set("personal_contacts", SyncLevel::None));
        assert_eq!(domains.get(Domain::PersonalContacts), SyncLevel::None);
        assert!(!domains.set("personal-contacts", SyncLevel::Full), "names are not keys");
        assert!(!domains.set("notes", SyncLevel::Full));
    }

    #[test]
    fn intent_kinds_read_back_what_they_write() {
        for kind in [IntentKind::CreateExchange, IntentKind::CreateSiebel] {
            assert_eq!(IntentKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(IntentKind::parse("delete-everything"), None);
    }

    #[test]
    fn every_folder_has_its_domains() {
        for (folder, _) in FOLDERS {
            assert!(DomainSpec::in_folder(folder).count() >= 1);
        }
        assert_eq!(DomainSpec::in_folder(Folder::Contacts).count(), 3);
    }
}

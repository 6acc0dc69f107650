//! The sync engine: one run for one user, from change detection to the last write.
//!
//! A run has three steps, kept apart so each can be reasoned about alone:
//! 1. **Detect**: per Exchange folder, the changes since the saved SyncState; per domain, the
//!    Siebel records that belong to the user (sync list, or owned) and those already linked.
//! 2. **Reconcile**: for each linked pair, compare both sides to what they looked like when
//!    they last agreed (content hashes after mapping) and decide one action.
//! 3. **Apply**: the only step with side effects. Every create is preceded by an intent in
//!    the state store, and a folder's cursor is saved only after its batch is applied.
//!
//! The engine knows no field names but the sync id and the owner; mapping and filtering are
//! the plugins' business, and the `DomainSpec` table in `domain.rs` holds what tells the
//! domains apart.

mod matching;
mod participants;
mod plan;
mod run;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use chrono::Utc;
use serde::{Deserialize, Serialize};
use tracing::{info, instrument, warn};

pub use crate::domain::{ALL as DOMAINS, CALENDAR, CONTACTS, DomainSpec, EMPLOYEES, PERSONAL_CONTACTS, TASKS};
use crate::domain::{FOLDERS, Scope};
pub use matching::Matching;
pub use participants::ATTENDEE_EMAILS;
use run::{DomainRun, FolderView};

use crate::exchange::ews::EwsClient;
use crate::exchange::{ExchangeClient, ExchangeError, ExchangeItem, Folder, SyncChange};
use crate::exchange::graph::GraphClient;
use crate::siebel::{SiebelClient, SiebelError, searchspec_literal};
use crate::plugin::PluginCallError;
use crate::record::Fields;
use crate::registry::PluginRegistry;
use crate::domain::{ExchangeBackend, SyncLevel, User};
use crate::store::{Store, StoreError};

/// SyncFolderItems page size (the EWS maximum).
const SYNC_PAGE: u16 = 512;
/// Where the user's own Employee record is, to find what they own.
const EMPLOYEE_BO: &str = "Employee";
const LOGIN_FIELD: &str = "Login Name";

/// Why a run could not complete. A failed run changes nothing it has not finished, and the
/// next run starts again from the last saved cursor.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("Siebel: {0}")]
    Siebel(#[from] SiebelError),
    #[error("Exchange: {0}")]
    Exchange(#[from] ExchangeError),
    #[error("no mapping plugin is loaded for the {0} domain; check the plugins directory")]
    NoMapper(String),
    #[error("{0} is on Exchange Online (backend graph) but no [graph] connection is configured; add one or set the user's backend to ews")]
    NoGraph(String),
    #[error("plugin {plugin}: {source}")]
    Plugin { plugin: String, source: PluginCallError },
    #[error(
        "stopped before {what}: {count} of the user's {linked} synced {domain} records, more \
         than the mass-delete guard's {percent}% — nothing was changed. If this is intended, \
         allow it once with `POST /api/v1/users/{login}/allow-mass-delete` and sync again"
    )]
    MassDelete { login: String, domain: &'static str, what: &'static str, count: usize, linked: usize, percent: u32 },
}

/// The mass-delete guard: a run that would delete more than `share` of a user's synced items
/// on one side (Exchange copies, or sync-list entries after Outlook deletes) stops before
/// changing anything, unless the user has at most `min_items` synced items.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MassDeleteGuard {
    pub share: f64,
    pub min_items: usize,
}

/// The rules a deployment tunes in `[sync]`: the mass-delete guard and matching.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SyncRules {
    pub mass_delete: MassDeleteGuard,
    pub matching: Matching,
}

impl Default for MassDeleteGuard {
    fn default() -> Self {
        Self { share: 0.5, min_items: 10 }
    }
}

impl EngineError {
    /// True when retrying cannot help until an administrator acts (credentials, an unknown
    /// mailbox or object, a missing plugin); false for what may pass (timeouts, 5xx, busy).
    pub fn is_permanent(&self) -> bool {
        match self {
            EngineError::Siebel(error) => error.is_permanent(),
            EngineError::Exchange(error) => error.is_permanent(),
            EngineError::NoMapper(_) | EngineError::NoGraph(_) | EngineError::MassDelete { .. } => true,
            EngineError::Store(_) | EngineError::Plugin { .. } => false,
        }
    }
}

impl EngineError {
    /// True when a server refused one record (a value, a property, a length), not the run:
    /// the record is set aside with the server's message and the rest of the run goes on.
    pub fn is_record_refusal(&self) -> bool {
        match self {
            EngineError::Siebel(error) => error.is_record_refusal(),
            EngineError::Exchange(error) => error.is_record_refusal(),
            _ => false,
        }
    }
}

/// Writes made on one side during a run.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct WriteCounts {
    pub created: u64,
    pub updated: u64,
    pub deleted: u64,
}

/// What a run did, as `POST /api/v1/users/{login}/sync?wait=true` answers it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RunReport {
    pub status: String,
    pub siebel: WriteCounts,
    pub exchange: WriteCounts,
    pub conflicts: u64,
    /// Records taken off the sync list because their Exchange copy was deleted.
    pub removed_from_sync_list: u64,
    /// Records found on both sides at first sight (initial-extract matching) and linked.
    #[serde(default)]
    pub matched: u64,
    pub errors: Vec<String>,
    /// A dry run's plan: the writes the run would make, in order. Empty for a real run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<PlannedWrite>,
    /// The run failed for a reason only an administrator can fix.
    #[serde(skip)]
    pub permanent: bool,
}

/// One write a dry run found the real run would make.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PlannedWrite {
    /// `siebel` or `exchange`: where the write goes.
    pub side: String,
    /// `create`, `update`, `delete` or `link` (an existing item taken as a record's copy,
    /// Siebel's version written over it).
    pub action: String,
    pub domain: String,
    /// The record written on that side; `null` for a create.
    pub id: Option<String>,
    /// The record on the other side it comes from, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The fields written, as plain JSON values (for a delete, none).
    pub fields: serde_json::Map<String, serde_json::Value>,
}

impl PlannedWrite {
    /// The fields in plain JSON, as a plan shows them.
    fn plain(fields: &Fields) -> serde_json::Map<String, serde_json::Value> {
        fields.iter().map(|(name, value)| (name.to_owned(), value.to_plain_json())).collect()
    }
}

/// Whether a run runs, or only plans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunMode {
    /// Writes, saves links and cursors.
    Apply,
    /// Reads and decides; writes nothing anywhere and reports the plan.
    DryRun,
}

/// The engine: connectors, plugins and the state store, plus one lock per user so a user is
/// never synced twice at once.
#[derive(Clone)]
pub struct Engine {
    store: Store,
    siebel: SiebelClient,
    ews: EwsClient,
    /// Exchange Online's connector, for users on Graph (when configured).
    graph: Option<GraphClient>,
    plugins: PluginRegistry,
    user_locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    rules: SyncRules,
    /// Users an administrator allowed one run past the mass-delete guard (kept in memory: a
    /// restart asks again, the safe direction).
    mass_delete_allowed: Arc<Mutex<BTreeSet<String>>>,
    /// Each user's Siebel Employee Id (owner of their personal contacts and activities).
    employee_ids: Arc<Mutex<HashMap<String, String>>>,
}

impl Engine {
    pub fn new(store: Store, siebel: SiebelClient, ews: EwsClient, plugins: PluginRegistry) -> Self {
        Self {
            store,
            siebel,
            ews,
            graph: None,
            plugins,
            user_locks: Arc::default(),
            rules: SyncRules::default(),
            mass_delete_allowed: Arc::default(),
            employee_ids: Arc::default(),
        }
    }

    /// The same engine with a Graph connector for users whose mailbox is in Exchange Online.
    pub fn with_graph(mut self, graph: GraphClient) -> Self {
        self.graph = Some(graph);
        self
    }

    /// The connector of a user's mailbox.
    fn exchange_for(&self, user: &User) -> Result<ExchangeClient, EngineError> {
        match user.backend {
            ExchangeBackend::Ews => Ok(ExchangeClient::Ews(self.ews.clone())),
            ExchangeBackend::Graph => {
                self.graph.clone().map(ExchangeClient::Graph).ok_or_else(|| EngineError::NoGraph(user.login.clone()))
            }
        }
    }

    /// The same engine with other rules.
    pub fn with_rules(mut self, rules: SyncRules) -> Self {
        self.rules = rules;
        self
    }

    /// Lets the next run of `login` past the mass-delete guard, once.
    pub fn allow_mass_delete(&self, login: &str) {
        self.mass_delete_allowed.lock().unwrap_or_else(|p| p.into_inner()).insert(login.to_owned());
    }

    /// Checks a run's planned deletions against the guard; an allowance is used up by the
    /// run it lets through.
    fn check_mass_delete(
        &self,
        login: &str,
        domain: &'static str,
        what: &'static str,
        count: usize,
        linked: usize,
    ) -> Result<(), EngineError> {
        if !self.mass_delete_over(count, linked) {
            return Ok(());
        }
        let allowed = self.mass_delete_allowed.lock().unwrap_or_else(|p| p.into_inner()).remove(login);
        if allowed {
            warn!(user = %login, domain, count, linked, "{what}: allowed once past the mass-delete guard");
            return Ok(());
        }
        let percent = (self.rules.mass_delete.share * 100.0).round() as u32;
        Err(EngineError::MassDelete { login: login.to_owned(), domain, what, count, linked, percent })
    }

    /// Whether deleting `count` of `linked` synced items is more than the guard lets a run do.
    fn mass_delete_over(&self, count: usize, linked: usize) -> bool {
        linked > self.rules.mass_delete.min_items && count as f64 > self.rules.mass_delete.share * linked as f64
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn plugins(&self) -> &PluginRegistry {
        &self.plugins
    }

    /// True when the user has never completed a run (the next one is an initial extract).
    pub async fn is_initial_extract(&self, login: &str) -> Result<bool, StoreError> {
        Ok(self.store.folder_cursor(login, FOLDERS[0].1).await?.is_none())
    }

    fn user_lock(&self, login: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.user_locks.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        locks.entry(login.to_owned()).or_default().clone()
    }

    /// Runs one sync of `login` and records it in the run history.
    #[instrument(skip(self), fields(user = %login))]
    pub async fn sync_user(&self, login: &str) -> Result<RunReport, EngineError> {
        let lock = self.user_lock(login);
        let _running = lock.lock().await;
        let user = self.store.user(login).await?;
        let started_at = Utc::now().to_rfc3339();
        let mut report = RunReport::default();
        let outcome = if user.enabled { self.sync_folders(&user, &mut report).await } else { Ok(()) };
        if let Err(error) = outcome {
            warn!(%error, "sync failed");
            report.errors.push(error.to_string());
            report.status = "failed".into();
            report.permanent = error.is_permanent();
        } else {
            report.status = "ok".into();
        }
        let json = serde_json::to_value(&report).unwrap_or_default();
        self.store.record_run(login, &started_at, &report.status, &json).await?;
        info!(
            status = %report.status,
            exchange_created = report.exchange.created,
            exchange_updated = report.exchange.updated,
            exchange_deleted = report.exchange.deleted,
            siebel_created = report.siebel.created,
            siebel_updated = report.siebel.updated,
            conflicts = report.conflicts,
            "sync finished"
        );
        Ok(report)
    }

    /// Plans a run of `login` without making it: reads both sides and decides as a run
    /// would, and answers the writes it would make. Nothing is written to Siebel, Exchange,
    /// the links, the cursors or the run history; the mass-delete guard is reported, not
    /// applied.
    #[instrument(skip(self), fields(user = %login))]
    pub async fn dry_run(&self, login: &str) -> Result<RunReport, EngineError> {
        let lock = self.user_lock(login);
        let _running = lock.lock().await;
        let user = self.store.user(login).await?;
        let mut report = RunReport::default();
        let outcome = if user.enabled { self.sync_folders_in(&user, &mut report, RunMode::DryRun).await } else { Ok(()) };
        match outcome {
            Ok(()) => report.status = "ok".into(),
            Err(error) => {
                report.errors.push(error.to_string());
                report.status = "failed".into();
                report.permanent = error.is_permanent();
            }
        }
        info!(status = %report.status, writes = report.plan.len(), "dry run finished");
        Ok(report)
    }

    /// Every folder in turn; domains that share a folder share its SyncFolderItems read.
    async fn sync_folders(&self, user: &User, report: &mut RunReport) -> Result<(), EngineError> {
        self.sync_folders_in(user, report, RunMode::Apply).await
    }

    async fn sync_folders_in(&self, user: &User, report: &mut RunReport, mode: RunMode) -> Result<(), EngineError> {
        let exchange = self.exchange_for(user)?;
        // The user's Employee Id, once per run, when a domain of owned records is on.
        let owns_records = DOMAINS
            .iter()
            .any(|spec| matches!(spec.scope, Scope::Owned { .. }) && spec.level(&user.domains) != SyncLevel::None);
        let owner = if owns_records { self.employee_id(&user.login).await? } else { None };
        if owns_records && owner.is_none() {
            warn!(
                user = %user.login,
                "Siebel has no Employee with this Login Name, so the user owns no records to sync (personal \
                 contacts, calendar, tasks); check the user's login"
            );
        }
        for (folder, cursor_name) in FOLDERS {
            let specs: Vec<&'static DomainSpec> =
                DomainSpec::in_folder(folder).filter(|spec| spec.level(&user.domains) != SyncLevel::None).collect();
            if specs.is_empty() {
                continue;
            }
            let created_before = report.exchange.created;
            self.folder_pass(user, &exchange, folder, cursor_name, &specs, owner.as_deref(), report, mode).await?;
            if report.exchange.created > created_before {
                // Exchange reports a deletion only for items the SyncState has seen, and the
                // cursor saved by this pass predates the items it just created: a second pass
                // folds them into the SyncState (they come back as our own echoes and write
                // nothing), so an Outlook delete of a new copy before the next run is not missed.
                self.folder_pass(user, &exchange, folder, cursor_name, &specs, owner.as_deref(), report, mode).await?;
            }
        }
        Ok(())
    }

    /// One pass over one Exchange folder: read its changes once, let each domain reconcile
    /// its pairs and claim the new items that are its own, then save the cursor.
    #[allow(clippy::too_many_arguments)]
    async fn folder_pass(
        &self,
        user: &User,
        exchange: &ExchangeClient,
        folder: Folder,
        cursor_name: &str,
        specs: &[&'static DomainSpec],
        owner: Option<&str>,
        report: &mut RunReport,
        mode: RunMode,
    ) -> Result<(), EngineError> {
        let login = user.login.as_str();
        let mut changes = self.exchange_changes(user, exchange, folder, cursor_name).await?;
        // Every domain's links in this folder, also those of domains switched off, so their
        // items are never taken for new ones.
        let mut links_by_domain = HashMap::new();
        for spec in DomainSpec::in_folder(folder) {
            links_by_domain.insert(spec.name, self.store.links(login, spec.name).await?);
        }
        let known_keys: HashMap<String, String> = links_by_domain
            .values()
            .flatten()
            .map(|link| (link.exchange_id.clone(), link.change_key.clone()))
            .collect();
        let linked_exchange_ids: BTreeSet<String> = known_keys.keys().cloned().collect();
        // Exchange items set aside earlier are read again once their retry is due: the
        // cursor moved past their change, so nothing else would bring them back.
        let quarantine = self.store.quarantined(login).await?;
        let now = crate::store::now_ms();
        for q in &quarantine {
            let in_folder = DomainSpec::named(&q.domain).is_some_and(|spec| spec.folder == folder);
            if let Some(item_id) = q.record_key.strip_prefix("exchange:")
                && in_folder
                && q.next_retry_ms <= now
                && !changes.deleted.contains(item_id)
            {
                changes.changed.entry(item_id.to_owned()).or_default();
            }
        }
        // Fetch only what we need: Exchange items whose ChangeKey moved since we last saw them.
        let to_fetch: Vec<String> = changes
            .changed
            .iter()
            .filter(|(id, key)| known_keys.get(id.as_str()) != Some(*key))
            .map(|(id, _)| id.clone())
            .collect();
        let mut items: HashMap<String, ExchangeItem> = HashMap::new();
        if !to_fetch.is_empty() {
            for item in exchange.get_items(&user.mailbox, folder, &to_fetch).await? {
                items.insert(item.id.id.clone(), item);
            }
        }
        let sync_list: BTreeSet<String> = self.store.sync_list(login).await?.into_iter().map(|(id, _)| id).collect();
        let mut found_on_sync_list = BTreeSet::new();
        let mut sync_list_domains_ran = 0;
        for spec in specs {
            let owner_id = match spec.scope {
                Scope::SyncList => {
                    sync_list_domains_ran += 1;
                    None
                }
                Scope::Owned { .. } => match owner {
                    Some(id) => Some(id.to_owned()),
                    None => continue,
                },
            };
            let links = links_by_domain.remove(spec.name).unwrap_or_default();
            let mut view = FolderView {
                changes: &changes,
                items: &mut items,
                linked_exchange_ids: &linked_exchange_ids,
                sync_list: &sync_list,
                found_on_sync_list: &mut found_on_sync_list,
            };
            let mut run = DomainRun::new(self, user, exchange, spec, report, &quarantine, owner_id)?;
            match mode {
                RunMode::Apply => run.run(links, &mut view).await?,
                RunMode::DryRun => run.dry_run(links, &mut view).await?,
            }
        }
        let every_sync_list_domain = DomainSpec::in_folder(folder).filter(|s| s.scope == Scope::SyncList).count();
        if every_sync_list_domain > 0 && sync_list_domains_ran == every_sync_list_domain {
            for siebel_id in sync_list.difference(&found_on_sync_list) {
                report.errors.push(format!(
                    "{siebel_id} is on the sync list of {login} but Siebel has no such contact or employee (or it is \
                     not visible); remove it from the sync list or check the record"
                ));
            }
        }
        if let Some(cursor) = changes.next_cursor.as_ref().filter(|_| mode == RunMode::Apply) {
            self.store.save_folder_cursor(login, cursor_name, cursor).await?;
        }
        Ok(())
    }

    /// The user's Siebel Employee Id, looked up once by login.
    async fn employee_id(&self, login: &str) -> Result<Option<String>, EngineError> {
        if let Some(id) = self.employee_ids.lock().unwrap_or_else(|p| p.into_inner()).get(login) {
            return Ok(Some(id.clone()));
        }
        // Logins are often upper case in Siebel: `~=` compares whatever the case.
        let spec = format!("[{LOGIN_FIELD}] ~= {}", searchspec_literal(login));
        let found = self.siebel.query(EMPLOYEE_BO, EMPLOYEE_BO, Some(&spec)).await?.into_iter().next().map(|r| r.id);
        if let Some(id) = &found {
            self.employee_ids.lock().unwrap_or_else(|p| p.into_inner()).insert(login.to_owned(), id.clone());
        }
        Ok(found)
    }

    /// Reads every change of one folder since the saved cursor; an invalid cursor means a
    /// full resync of the folder (links keep it free of duplicates).
    async fn exchange_changes(
        &self,
        user: &User,
        exchange: &ExchangeClient,
        folder: Folder,
        cursor_name: &str,
    ) -> Result<ExchangeChanges, EngineError> {
        let mut cursor = self.store.folder_cursor(&user.login, cursor_name).await?;
        let mut changes = ExchangeChanges::default();
        let mut restarted = false;
        loop {
            let page = match exchange.sync_folder_items(&user.mailbox, folder, cursor.as_deref(), SYNC_PAGE).await {
                Ok(page) => page,
                Err(error) if error.is_invalid_sync_state() && !restarted => {
                    warn!(user = %user.login, folder = cursor_name, "Exchange refused the saved SyncState; resyncing the folder");
                    restarted = true;
                    cursor = None;
                    changes = ExchangeChanges::default();
                    continue;
                }
                Err(error) => return Err(error.into()),
            };
            for change in page.changes {
                match change {
                    SyncChange::Created(id) | SyncChange::Updated(id) => {
                        changes.deleted.remove(&id.id);
                        changes.changed.insert(id.id, id.change_key);
                    }
                    SyncChange::Deleted(id) => {
                        changes.changed.remove(&id);
                        changes.deleted.insert(id);
                    }
                }
            }
            cursor = Some(page.sync_state);
            if page.includes_last_item {
                break;
            }
        }
        changes.next_cursor = cursor;
        Ok(changes)
    }
}

/// The Exchange side of a folder pass: what changed since the saved cursor.
#[derive(Default)]
struct ExchangeChanges {
    /// Created or updated items, by item id, with their current ChangeKey.
    changed: BTreeMap<String, String>,
    deleted: BTreeSet<String>,
    /// The cursor to save once everything is applied.
    next_cursor: Option<String>,
}

/// The length of a sync id: Siebel's `Integration Id`, where it is stored, is text of 30
/// characters (Oracle's integration-object field tables).
const SYNC_ID_LEN: usize = 30;

/// Tandem's sync id of a record: derived from the user, the domain and the record it was
/// created from (`siebel:ID` or `exchange:ITEMID`), so it can be recomputed after a crash or
/// a reset. 30 hexadecimal digits (120 bits) of a name-based UUID, so it fits `Integration
/// Id` whole.
fn sync_id_for(login: &str, domain: &str, origin: &str) -> String {
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x7a1d_3c5e_0b8f_4e21_9c6d_2f4a_8e1b_5d3c);
    let uuid = uuid::Uuid::new_v5(&NAMESPACE, format!("{login}/{domain}/{origin}").as_bytes());
    let mut digits = uuid.simple().to_string();
    digits.truncate(SYNC_ID_LEN);
    digits
}

/// The fields of `wanted` whose value differs from `current` (blank and absent are equal).
fn changed_fields(current: &Fields, wanted: &Fields) -> Fields {
    wanted
        .iter()
        .filter(|(name, value)| match current.get(*name) {
            Some(now) => now != *value && !(now.is_blank() && value.is_blank()),
            None => !value.is_blank(),
        })
        .map(|(name, value)| (name, value.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Value;

    #[test]
    fn a_sync_id_fits_integration_id_and_is_stable() {
        let id = sync_id_for("JDOE", "contacts", "siebel:1-ABC");
        assert_eq!(id.len(), SYNC_ID_LEN);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(id, sync_id_for("JDOE", "contacts", "siebel:1-ABC"));
        assert_ne!(id, sync_id_for("JDOE", "contacts", "siebel:1-ABD"));
    }

    #[test]
    fn changed_fields_treats_blank_and_absent_alike() {
        let mut current = Fields::new();
        current.insert("Job Title".into(), "CTO".into());
        current.insert("First Name".into(), "Ann".into());
        let mut wanted = current.clone();
        wanted.insert("Middle Name".into(), Value::Null);
        assert!(changed_fields(&current, &wanted).is_empty());
        wanted.insert("Job Title".into(), "CEO".into());
        wanted.insert("First Name".into(), Value::Null);
        let changed = changed_fields(&current, &wanted);
        assert_eq!(changed.len(), 2);
        assert_eq!(changed.get("Job Title"), Some(&Value::Text("CEO".into())));
        assert_eq!(changed.get("First Name"), Some(&Value::Null));
    }
}

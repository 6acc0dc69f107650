//! The sync engine: one run for one user, from change detection to the last write.
//!
//! A run has three steps, kept apart so each can be reasoned about alone:
//! 1. **Detect**: the Exchange changes since the saved SyncState, and the current Siebel
//!    records of the user's sync list and links.
//! 2. **Reconcile**: for each linked pair, compare both sides to what they looked like when
//!    they last agreed (content hashes after mapping) and decide one action.
//! 3. **Apply**: the only step with side effects. Every create is preceded by an intent in
//!    the state store, and the Exchange cursor is saved only after its batch is applied.
//!
//! The engine knows no field names but the sync id; mapping is the plugins' business.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use chrono::Utc;
use serde::{Deserialize, Serialize};
use tracing::{info, instrument, warn};

use crate::connectors::ews::{EwsClient, EwsError, ExchangeItem, Folder, ItemId, SyncChange, UpdateOutcome};
use crate::connectors::siebel::{SiebelClient, SiebelError, SiebelRecord, searchspec_literal};
use crate::plugin::{CallContext, Conflict, ConflictPolicyInstance, MapperInstance, PluginCallError, Resolution};
use crate::record::{Fields, Value, content_hash};
use crate::registry::{LoadedConflictPolicy, PluginHealth, PluginRegistry};
use crate::store::{Intent, Link, QuarantinedRecord, Store, StoreError, SyncLevel, User, now_ms};

/// The business-contact domain.
pub const CONTACTS: &str = "contacts";
const CONTACT_BO: &str = "Contact";
const CONTACT_BC: &str = "Contact";
/// The Siebel field that carries Tandem's sync id on records Tandem created.
const SIEBEL_SYNC_ID_FIELD: &str = "Integration Id";
/// SyncFolderItems page size (the EWS maximum).
const SYNC_PAGE: u16 = 512;
/// The name under which the Contacts folder's SyncState is saved.
const CONTACTS_CURSOR: &str = "contacts";

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
    Exchange(#[from] EwsError),
    #[error("no mapping plugin is loaded for the {0} domain; check the plugins directory")]
    NoMapper(String),
    #[error("plugin {plugin}: {source}")]
    Plugin { plugin: String, source: PluginCallError },
    #[error(
        "stopped before {what}: {count} of the user's {linked} synced contacts, more than the \
         mass-delete guard's {percent}% — nothing was changed. If this is intended, allow it \
         once with `POST /api/v1/users/{login}/allow-mass-delete` and sync again"
    )]
    MassDelete { login: String, what: &'static str, count: usize, linked: usize, percent: u32 },
}

/// The mass-delete guard: a run that would delete more than `share` of a user's synced items
/// on one side (Exchange copies, or sync-list entries after Outlook deletes) stops before
/// changing anything, unless the user has at most `min_items` synced items.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MassDeleteGuard {
    pub share: f64,
    pub min_items: usize,
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
            EngineError::Siebel(error) => matches!(error, SiebelError::Unauthorized { .. } | SiebelError::InvalidConfig { .. }),
            EngineError::Exchange(error) => match error {
                EwsError::Unauthorized => true,
                EwsError::Response { code, .. } => matches!(
                    code.as_str(),
                    "ErrorNonExistentMailbox" | "ErrorImpersonateUserDenied" | "ErrorAccessDenied"
                        | "ErrorInvalidExchangeImpersonationHeaderData"
                ),
                _ => false,
            },
            EngineError::NoMapper(_) | EngineError::MassDelete { .. } => true,
            EngineError::Store(_) | EngineError::Plugin { .. } => false,
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
    pub errors: Vec<String>,
    /// The run failed for a reason only an administrator can fix.
    #[serde(skip)]
    pub permanent: bool,
}

/// The engine: connectors, plugins and the state store, plus one lock per user so a user is
/// never synced twice at once.
#[derive(Clone)]
pub struct Engine {
    store: Store,
    siebel: SiebelClient,
    ews: EwsClient,
    plugins: PluginRegistry,
    user_locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    guard: MassDeleteGuard,
    /// Users an administrator allowed one run past the mass-delete guard (kept in memory: a
    /// restart asks again, the safe direction).
    mass_delete_allowed: Arc<Mutex<BTreeSet<String>>>,
}

impl Engine {
    pub fn new(store: Store, siebel: SiebelClient, ews: EwsClient, plugins: PluginRegistry) -> Self {
        Self {
            store,
            siebel,
            ews,
            plugins,
            user_locks: Arc::default(),
            guard: MassDeleteGuard::default(),
            mass_delete_allowed: Arc::default(),
        }
    }

    /// The same engine with another mass-delete guard.
    pub fn with_mass_delete_guard(mut self, guard: MassDeleteGuard) -> Self {
        self.guard = guard;
        self
    }

    /// Lets the next run of `login` past the mass-delete guard, once.
    pub fn allow_mass_delete(&self, login: &str) {
        self.mass_delete_allowed.lock().unwrap_or_else(|p| p.into_inner()).insert(login.to_owned());
    }

    /// Checks a run's planned deletions against the guard; an allowance is used up by the
    /// run it lets through.
    fn check_mass_delete(&self, login: &str, what: &'static str, count: usize, linked: usize) -> Result<(), EngineError> {
        let over = linked > self.guard.min_items && count as f64 > self.guard.share * linked as f64;
        if !over {
            return Ok(());
        }
        let allowed = self.mass_delete_allowed.lock().unwrap_or_else(|p| p.into_inner()).remove(login);
        if allowed {
            warn!(user = %login, count, linked, "{what}: allowed once past the mass-delete guard");
            return Ok(());
        }
        let percent = (self.guard.share * 100.0).round() as u32;
        Err(EngineError::MassDelete { login: login.to_owned(), what, count, linked, percent })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn plugins(&self) -> &PluginRegistry {
        &self.plugins
    }

    /// True when the user has never completed a run (the next one is an initial extract).
    pub async fn is_initial_extract(&self, login: &str) -> Result<bool, StoreError> {
        Ok(self.store.folder_cursor(login, CONTACTS_CURSOR).await?.is_none())
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
        let outcome = if user.enabled && user.domains.contacts != SyncLevel::None {
            self.sync_contacts(&user, &mut report).await
        } else {
            Ok(())
        };
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

    async fn sync_contacts(&self, user: &User, report: &mut RunReport) -> Result<(), EngineError> {
        let loaded = self.plugins.mapper(CONTACTS).ok_or_else(|| EngineError::NoMapper(CONTACTS.into()))?;
        let plugin_name = loaded.info.name.clone();
        let mapper = loaded
            .plugin
            .instantiate()
            .map_err(|source| EngineError::Plugin { plugin: plugin_name.clone(), source })?;
        let mut run = ContactRun {
            engine: self,
            user,
            mapper,
            plugin_name,
            plugin_health: loaded.health.clone(),
            ctx: CallContext { domain: CONTACTS.into(), user: user.login.clone() },
            policy: self.plugins.conflict_policy(CONTACTS),
            policy_instance: None,
            report,
            quarantine: HashMap::new(),
        };
        let created_before = run.report.exchange.created;
        run.run().await?;
        if run.report.exchange.created > created_before {
            // Exchange reports a deletion only for items the SyncState has seen, and the
            // cursor saved by this pass predates the items it just created: a second pass
            // folds them into the SyncState (they come back as our own echoes and write
            // nothing), so an Outlook delete of a new copy before the next run is not missed.
            run.run().await?;
        }
        Ok(())
    }
}

/// The Exchange side of a run: what changed since the saved cursor.
#[derive(Default)]
struct ExchangeChanges {
    /// Created or updated items, by item id, with their current ChangeKey.
    changed: BTreeMap<String, String>,
    deleted: BTreeSet<String>,
    /// The cursor to save once everything is applied.
    next_cursor: Option<String>,
}

/// The Exchange side of a pair as it is now, mapped back to Siebel shape.
struct ExchangeNow {
    item: ExchangeItem,
    as_siebel: Fields,
    hash: String,
}

/// One user's contacts run.
struct ContactRun<'a> {
    engine: &'a Engine,
    user: &'a User,
    mapper: MapperInstance,
    plugin_name: String,
    /// Failures of this plugin version across runs; repeated ones mark it unhealthy.
    plugin_health: Arc<PluginHealth>,
    ctx: CallContext,
    /// The domain's conflict policy as the run started (instantiated at the first conflict).
    policy: Option<LoadedConflictPolicy>,
    policy_instance: Option<ConflictPolicyInstance>,
    report: &'a mut RunReport,
    /// This user's quarantined records of this domain, by key.
    quarantine: HashMap<String, QuarantinedRecord>,
}

impl ContactRun<'_> {
    fn login(&self) -> &str {
        &self.user.login
    }

    fn mailbox(&self) -> &str {
        &self.user.mailbox
    }

    fn to_exchange(&mut self, siebel: &Fields) -> Result<Fields, EngineError> {
        let outcome = self.mapper.to_exchange(&self.ctx, siebel);
        self.plugin_health.record(&outcome);
        outcome.map_err(|source| EngineError::Plugin { plugin: self.plugin_name.clone(), source })
    }

    fn to_siebel(&mut self, exchange: &Fields) -> Result<Fields, EngineError> {
        let outcome = self.mapper.to_siebel(&self.ctx, exchange);
        self.plugin_health.record(&outcome);
        outcome.map_err(|source| EngineError::Plugin { plugin: self.plugin_name.clone(), source })
    }

    /// A per-record failure: reported, the record left as it is on both sides and put in
    /// quarantine (`key` is `siebel:ID` or `exchange:ITEMID`), to be retried with backoff.
    async fn set_aside(&mut self, key: String, what: String) -> Result<(), EngineError> {
        warn!(user = %self.user.login, record = %key, "{what}");
        self.engine.store.quarantine(&self.user.login, CONTACTS, &key, &what).await?;
        self.report.errors.push(what);
        Ok(())
    }

    /// True when `key` is in quarantine and not due for a retry yet.
    fn waiting_in_quarantine(&self, key: &str) -> bool {
        self.quarantine.get(key).is_some_and(|q| q.next_retry_ms > now_ms())
    }

    /// A record that went through leaves quarantine.
    async fn went_through(&mut self, key: &str) -> Result<(), EngineError> {
        if self.quarantine.remove(key).is_some() {
            self.engine.store.release_quarantine(&self.user.login, CONTACTS, key).await?;
        }
        Ok(())
    }

    async fn run(&mut self) -> Result<(), EngineError> {
        let store = &self.engine.store;
        self.quarantine = store
            .quarantined(self.login())
            .await?
            .into_iter()
            .filter(|q| q.domain == CONTACTS)
            .map(|q| (q.record_key.clone(), q))
            .collect();
        let mut changes = self.exchange_changes().await?;
        // Exchange items set aside earlier are read again once their retry is due: the
        // cursor moved past their change, so nothing else would bring them back.
        for key in self.quarantine.keys() {
            if let Some(item_id) = key.strip_prefix("exchange:") {
                if !self.waiting_in_quarantine(key) && !changes.deleted.contains(item_id) {
                    changes.changed.entry(item_id.to_owned()).or_default();
                }
            }
        }
        let store = &self.engine.store;
        let links = store.links(self.login(), CONTACTS).await?;
        let sync_list: BTreeSet<String> =
            store.sync_list(self.login()).await?.into_iter().map(|(id, _)| id).collect();
        let intents = store.intents(self.login()).await?;

        // Fetch only what we need: Exchange items whose ChangeKey moved since we last saw them.
        let known_keys: HashMap<&str, &str> =
            links.iter().map(|l| (l.exchange_id.as_str(), l.change_key.as_str())).collect();
        let to_fetch: Vec<String> = changes
            .changed
            .iter()
            .filter(|(id, key)| known_keys.get(id.as_str()) != Some(&key.as_str()))
            .map(|(id, _)| id.clone())
            .collect();
        let mut items: HashMap<String, ExchangeItem> = HashMap::new();
        if !to_fetch.is_empty() {
            for item in self.engine.ews.get_items(self.mailbox(), Folder::Contacts, &to_fetch).await? {
                items.insert(item.id.id.clone(), item);
            }
        }

        let wanted: Vec<String> = sync_list
            .iter()
            .cloned()
            .chain(links.iter().map(|l| l.siebel_id.clone()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut records: HashMap<String, SiebelRecord> = HashMap::new();
        if !wanted.is_empty() {
            for record in self.engine.siebel.get_by_ids(CONTACT_BO, CONTACT_BC, &wanted).await? {
                records.insert(record.id.clone(), record);
            }
        }

        let linked_exchange_ids: BTreeSet<String> = links.iter().map(|l| l.exchange_id.clone()).collect();
        let mut linked_siebel_ids: BTreeSet<String> = links.iter().map(|l| l.siebel_id.clone()).collect();
        let linked_sync_ids: BTreeSet<String> = links.iter().map(|l| l.sync_id.clone()).collect();

        // The mass-delete guard looks at the whole plan before anything is written.
        let exchange_deletes = links
            .iter()
            .filter(|l| !changes.deleted.contains(&l.exchange_id))
            .filter(|l| !sync_list.contains(&l.siebel_id) || !records.contains_key(&l.siebel_id))
            .count();
        let unlisted = links.iter().filter(|l| changes.deleted.contains(&l.exchange_id)).count();
        self.engine.check_mass_delete(self.login(), "deleting Exchange copies", exchange_deletes, links.len())?;
        self.engine.check_mass_delete(self.login(), "taking Outlook-deleted contacts off the sync list", unlisted, links.len())?;

        for link in links {
            self.reconcile(link, &changes, &sync_list, &records, &mut items).await?;
        }

        // Exchange items that are new to us: adopt our own copies (a create whose link was
        // lost in a crash, or a user reset), import the rest. Our copies carry the sync id of
        // their sync-list entry, which is derived from it, so it is known without a link.
        let open_exchange_creates: HashMap<String, String> = sync_list
            .iter()
            .filter(|id| !linked_siebel_ids.contains(*id))
            .map(|id| (sync_id_for(self.login(), &format!("siebel:{id}")), id.clone()))
            .collect();
        let new_item_ids: Vec<String> =
            changes.changed.keys().filter(|id| !linked_exchange_ids.contains(*id)).cloned().collect();
        for item_id in new_item_ids {
            let Some(item) = items.remove(&item_id) else { continue };
            let adopted = item.sync_id.as_ref().and_then(|sync_id| open_exchange_creates.get(sync_id)).cloned();
            if let Some(siebel_id) = adopted {
                if let Some(record) = records.get(&siebel_id) {
                    self.adopt_exchange_copy(&siebel_id, record, item).await?;
                    linked_siebel_ids.insert(siebel_id);
                }
                continue;
            }
            if item.sync_id.as_ref().is_some_and(|sync_id| linked_sync_ids.contains(sync_id)) {
                // One of our own copies under a new item id (moved back into the folder).
                continue;
            }
            if let Some(siebel_id) = self.import_exchange_contact(item).await? {
                linked_siebel_ids.insert(siebel_id);
            }
        }
        // Intents to create in Exchange that never reached it: the create did not happen,
        // so it is safe to make it again below.
        for intent in intents.iter().filter(|i| i.operation == "create-exchange") {
            store.clear_intent(&intent.sync_id).await?;
        }

        // Records put on the sync list since the last run.
        let mut to_create: Vec<(String, Fields, String)> = Vec::new();
        for siebel_id in sync_list.iter().filter(|id| !linked_siebel_ids.contains(*id)) {
            let Some(record) = records.get(siebel_id) else {
                let what = format!(
                    "{siebel_id} is on the sync list of {} but Siebel has no such contact (or it is not visible); \
                     remove it from the sync list or check the record",
                    self.user.login
                );
                self.report.errors.push(what);
                continue;
            };
            let key = format!("siebel:{siebel_id}");
            let exchange_form = match self.to_exchange(&record.fields) {
                Ok(form) => form,
                Err(error) => {
                    self.set_aside(key, format!("contact {siebel_id} could not be mapped: {error}")).await?;
                    continue;
                }
            };
            self.went_through(&key).await?;
            let sync_id = sync_id_for(self.login(), &key);
            store
                .record_intent(&Intent {
                    sync_id: sync_id.clone(),
                    login: self.login().to_owned(),
                    domain: CONTACTS.into(),
                    operation: "create-exchange".into(),
                    siebel_id: Some(siebel_id.clone()),
                    exchange_id: None,
                })
                .await?;
            to_create.push((siebel_id.clone(), exchange_form, sync_id));
        }
        if !to_create.is_empty() {
            let batch: Vec<(Fields, String)> =
                to_create.iter().map(|(_, form, sync_id)| (form.clone(), sync_id.clone())).collect();
            let ids = self.engine.ews.create_items(self.mailbox(), Folder::Contacts, &batch).await?;
            for ((siebel_id, form, sync_id), item_id) in to_create.into_iter().zip(ids) {
                let record = records.get(&siebel_id);
                let as_siebel = self.to_siebel(&form)?;
                let link = Link {
                    login: self.login().to_owned(),
                    domain: CONTACTS.into(),
                    siebel_id,
                    exchange_id: item_id.id,
                    change_key: item_id.change_key,
                    sync_id,
                    siebel_updated: record.and_then(|r| r.updated.clone()),
                    siebel_hash: content_hash(&form),
                    exchange_hash: content_hash(&as_siebel),
                    base: form,
                };
                store.save_link(&link).await?;
                self.report.exchange.created += 1;
            }
        }

        if let Some(cursor) = &changes.next_cursor {
            store.save_folder_cursor(self.login(), CONTACTS_CURSOR, cursor).await?;
        }
        Ok(())
    }

    /// Reads every Exchange change since the saved cursor; an invalid cursor means a full
    /// resync of the folder (links keep it free of duplicates).
    async fn exchange_changes(&mut self) -> Result<ExchangeChanges, EngineError> {
        let mut cursor = self.engine.store.folder_cursor(self.login(), CONTACTS_CURSOR).await?;
        let mut changes = ExchangeChanges::default();
        let mut restarted = false;
        loop {
            let page = match self
                .engine
                .ews
                .sync_folder_items(self.mailbox(), Folder::Contacts, cursor.as_deref(), SYNC_PAGE)
                .await
            {
                Ok(page) => page,
                Err(EwsError::InvalidSyncState) if !restarted => {
                    warn!(user = %self.user.login, "Exchange refused the saved SyncState; resyncing the contacts folder");
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

    async fn reconcile(
        &mut self,
        mut link: Link,
        changes: &ExchangeChanges,
        sync_list: &BTreeSet<String>,
        records: &HashMap<String, SiebelRecord>,
        items: &mut HashMap<String, ExchangeItem>,
    ) -> Result<(), EngineError> {
        let store = &self.engine.store;
        if changes.deleted.contains(&link.exchange_id) {
            // SSSE's rule: a business contact deleted in Outlook leaves the sync list; the
            // Siebel contact survives.
            store.remove_from_sync_list(self.login(), &link.siebel_id).await?;
            store.delete_link(self.login(), CONTACTS, &link.siebel_id).await?;
            self.report.removed_from_sync_list += 1;
            info!(siebel_id = %link.siebel_id, "Exchange copy deleted; taken off the sync list");
            return Ok(());
        }
        let record = records.get(&link.siebel_id);
        let Some(record) = record.filter(|_| sync_list.contains(&link.siebel_id)) else {
            // Off the sync list, or gone from Siebel: the Exchange copy goes.
            self.engine.ews.delete_items(self.mailbox(), Folder::Contacts, &[link.exchange_id.clone()]).await?;
            store.delete_link(self.login(), CONTACTS, &link.siebel_id).await?;
            self.report.exchange.deleted += 1;
            return Ok(());
        };

        // Records in quarantine are tried again on every run (mapping costs microseconds);
        // only re-reading a quarantined Exchange item waits for its backoff.
        let siebel_key = format!("siebel:{}", link.siebel_id);
        let exchange_key = format!("exchange:{}", link.exchange_id);
        let siebel_form = match self.to_exchange(&record.fields) {
            Ok(form) => form,
            Err(error) => {
                self.set_aside(siebel_key, format!("contact {} could not be mapped: {error}", link.siebel_id)).await?;
                return Ok(());
            }
        };
        self.went_through(&siebel_key).await?;
        let siebel_changed = content_hash(&siebel_form) != link.siebel_hash;
        let exchange_now = match items.remove(&link.exchange_id) {
            Some(item) => match self.to_siebel(&item.fields) {
                Ok(as_siebel) => {
                    let hash = content_hash(&as_siebel);
                    Some(ExchangeNow { item, as_siebel, hash })
                }
                Err(error) => {
                    let what = format!("Exchange item of {} could not be mapped: {error}", link.siebel_id);
                    self.set_aside(exchange_key, what).await?;
                    return Ok(());
                }
            },
            None => None,
        };
        self.went_through(&exchange_key).await?;
        let exchange_changed = exchange_now.as_ref().is_some_and(|now| now.hash != link.exchange_hash);

        match (siebel_changed, exchange_now) {
            (false, Some(now)) if exchange_changed => self.push_to_siebel(link, record, now).await,
            (false, Some(now)) => {
                // Same content, new ChangeKey (our own write, or an edit of an unmapped field).
                if now.item.id.change_key != link.change_key {
                    link.change_key = now.item.id.change_key;
                    store.save_link(&link).await?;
                }
                Ok(())
            }
            (false, None) => Ok(()),
            (true, Some(now)) if exchange_changed => self.resolve_conflict(link, record, siebel_form, now).await,
            (true, now) => {
                let change_key = now.map_or_else(|| link.change_key.clone(), |now| now.item.id.change_key);
                self.push_to_exchange(link, record, siebel_form, change_key).await
            }
        }
    }

    /// Changed on both sides since the last sync: the domain's conflict-policy plugin decides
    /// (the built-in one: Siebel wins, as in SSSE) from the base and both current versions,
    /// all in Exchange shape; the conflict and its outcome go to the conflict log. With
    /// export-only sync Siebel wins without asking. A policy that fails puts the record in
    /// quarantine and writes nothing.
    async fn resolve_conflict(
        &mut self,
        link: Link,
        record: &SiebelRecord,
        siebel_form: Fields,
        now: ExchangeNow,
    ) -> Result<(), EngineError> {
        self.report.conflicts += 1;
        let resolution = match self.decide_conflict(&link, &siebel_form, &now) {
            Ok(resolution) => resolution,
            Err(error) => {
                let what = format!("the conflict on contact {} could not be resolved: {error}", link.siebel_id);
                return self.set_aside(format!("siebel:{}", link.siebel_id), what).await;
            }
        };
        self.apply_resolution(link, record, siebel_form, now, resolution, "changed on both sides since the last sync").await
    }

    /// What the domain's conflict policy says of a pair changed on both sides (Siebel wins
    /// without asking under export-only sync).
    fn decide_conflict(&mut self, link: &Link, siebel_form: &Fields, now: &ExchangeNow) -> Result<Resolution, EngineError> {
        if self.user.domains.contacts == SyncLevel::Full {
            // The Exchange item reduced to the mapped fields, so unmapped Exchange fields
            // never look like edits to the policy.
            let exchange = now
                .item
                .fields
                .iter()
                .filter(|(name, _)| siebel_form.contains_key(*name))
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect();
            let base = Some(link.base.clone()).filter(|base| !base.is_empty());
            let conflict = Conflict { base, siebel: siebel_form.clone(), exchange };
            self.ask_policy(&conflict)
        } else {
            Ok(Resolution::TakeSiebel)
        }
    }

    /// Carries out a conflict policy's decision and logs it with `detail`.
    async fn apply_resolution(
        &mut self,
        mut link: Link,
        record: &SiebelRecord,
        siebel_form: Fields,
        now: ExchangeNow,
        resolution: Resolution,
        detail: &str,
    ) -> Result<(), EngineError> {
        let store = &self.engine.store;
        match resolution {
            Resolution::TakeSiebel => {
                store.record_conflict(&link, "siebel-wins", detail).await?;
                self.push_to_exchange(link, record, siebel_form, now.item.id.change_key).await
            }
            Resolution::TakeExchange => {
                store.record_conflict(&link, "exchange-wins", detail).await?;
                self.push_to_siebel(link, record, now).await
            }
            Resolution::Merged(merged) => {
                store.record_conflict(&link, "merged", detail).await?;
                let as_siebel = self.to_siebel(&merged)?;
                let changed = changed_fields(&record.fields, &as_siebel);
                if !changed.is_empty() {
                    self.engine.siebel.update(CONTACT_BO, CONTACT_BC, &link.siebel_id, &changed).await?;
                    self.report.siebel.updated += 1;
                }
                self.push_to_exchange(link, record, merged, now.item.id.change_key).await
            }
            Resolution::KeepBoth | Resolution::Defer(_) => {
                let reason = match resolution {
                    Resolution::Defer(reason) => format!("deferred by the conflict policy: {reason}"),
                    _ => "the policy asked to keep both; contacts can't be split, so both sides stay as they are".into(),
                };
                store.record_conflict(&link, "deferred", &reason).await?;
                // Both versions stay; the pair counts as in step until either side changes again.
                link.siebel_hash = content_hash(&siebel_form);
                link.exchange_hash = now.hash;
                link.change_key = now.item.id.change_key;
                link.siebel_updated = record.updated.clone();
                store.save_link(&link).await?;
                Ok(())
            }
        }
    }

    /// The run's conflict policy decides one conflict.
    fn ask_policy(&mut self, conflict: &Conflict) -> Result<Resolution, EngineError> {
        let Some(policy) = &self.policy else {
            return Ok(Resolution::TakeSiebel);
        };
        let plugin = policy.info.name.clone();
        let instance = match &mut self.policy_instance {
            Some(instance) => instance,
            empty => empty.insert(
                policy.plugin.instantiate().map_err(|source| EngineError::Plugin { plugin: plugin.clone(), source })?,
            ),
        };
        let outcome = instance.resolve(&self.ctx, conflict);
        policy.health.record(&outcome);
        outcome.map_err(|source| EngineError::Plugin { plugin, source })
    }

    /// Writes the Siebel side over the Exchange copy, with the ChangeKey as precondition.
    async fn push_to_exchange(
        &mut self,
        mut link: Link,
        record: &SiebelRecord,
        form: Fields,
        change_key: String,
    ) -> Result<(), EngineError> {
        let store = &self.engine.store;
        let mut id = ItemId { id: link.exchange_id.clone(), change_key };
        // One retry: a conflict means Exchange changed under us; Siebel wins, so write again
        // with the fresh ChangeKey.
        for attempt in 0..2 {
            match self.engine.ews.update_item(self.mailbox(), Folder::Contacts, &id, &form).await? {
                UpdateOutcome::Updated(new_id) => {
                    let as_siebel = self.to_siebel(&form)?;
                    link.change_key = new_id.change_key;
                    link.exchange_id = new_id.id;
                    link.siebel_hash = content_hash(&form);
                    link.exchange_hash = content_hash(&as_siebel);
                    link.siebel_updated = record.updated.clone();
                    link.base = form;
                    store.save_link(&link).await?;
                    self.report.exchange.updated += 1;
                    return Ok(());
                }
                UpdateOutcome::NotFound => {
                    store.remove_from_sync_list(self.login(), &link.siebel_id).await?;
                    store.delete_link(self.login(), CONTACTS, &link.siebel_id).await?;
                    self.report.removed_from_sync_list += 1;
                    return Ok(());
                }
                UpdateOutcome::Conflict if attempt == 0 => {
                    // Exchange changed between our read and our write (ErrorIrresolvableConflict):
                    // read it again and let the conflict policy decide.
                    let fresh = self.engine.ews.get_items(self.mailbox(), Folder::Contacts, &[id.id.clone()]).await?;
                    let Some(item) = fresh.into_iter().next() else { continue };
                    let as_siebel = self.to_siebel(&item.fields)?;
                    let hash = content_hash(&as_siebel);
                    let now = ExchangeNow { item, as_siebel, hash };
                    self.report.conflicts += 1;
                    let detail = "Exchange changed while we wrote";
                    match self.decide_conflict(&link, &form, &now) {
                        Ok(Resolution::TakeSiebel) => {
                            store.record_conflict(&link, "siebel-wins", detail).await?;
                            id = now.item.id;
                        }
                        Ok(resolution) => {
                            return Box::pin(self.apply_resolution(link, record, form, now, resolution, detail)).await;
                        }
                        Err(error) => {
                            let what = format!("the conflict on contact {} could not be resolved: {error}", link.siebel_id);
                            return self.set_aside(format!("siebel:{}", link.siebel_id), what).await;
                        }
                    }
                }
                UpdateOutcome::Conflict => {}
            }
        }
        let what = format!(
            "contact {} kept changing in Exchange while we wrote it; it will be retried next sync",
            link.siebel_id
        );
        self.report.errors.push(what);
        Ok(())
    }

    /// Writes an Exchange edit into Siebel, then reads the record back so the link holds
    /// exactly what Siebel stored.
    async fn push_to_siebel(&mut self, mut link: Link, record: &SiebelRecord, now: ExchangeNow) -> Result<(), EngineError> {
        if self.user.domains.contacts != SyncLevel::Full {
            // Export only: Siebel is the master; restore the Exchange copy from it.
            let form = self.to_exchange(&record.fields)?;
            return self.push_to_exchange(link, record, form, now.item.id.change_key).await;
        }
        let changed = changed_fields(&record.fields, &now.as_siebel);
        if !changed.is_empty() {
            self.engine.siebel.update(CONTACT_BO, CONTACT_BC, &link.siebel_id, &changed).await?;
            self.report.siebel.updated += 1;
        }
        let stored = self
            .engine
            .siebel
            .get_by_ids(CONTACT_BO, CONTACT_BC, std::slice::from_ref(&link.siebel_id))
            .await?
            .into_iter()
            .next();
        let fields = stored.as_ref().map(|r| &r.fields).unwrap_or(&record.fields);
        let form = self.to_exchange(fields)?;
        link.siebel_hash = content_hash(&form);
        link.exchange_hash = now.hash;
        link.change_key = now.item.id.change_key;
        link.siebel_updated = stored.and_then(|r| r.updated);
        link.base = form;
        self.engine.store.save_link(&link).await?;
        Ok(())
    }

    /// Links a Siebel record to the Exchange copy we created in a run that crashed before it
    /// could save the link.
    async fn adopt_exchange_copy(&mut self, siebel_id: &str, record: &SiebelRecord, item: ExchangeItem) -> Result<(), EngineError> {
        let form = self.to_exchange(&record.fields)?;
        let as_siebel = self.to_siebel(&item.fields)?;
        let sync_id = item.sync_id.clone().unwrap_or_default();
        let link = Link {
            login: self.login().to_owned(),
            domain: CONTACTS.into(),
            siebel_id: siebel_id.to_owned(),
            exchange_id: item.id.id,
            change_key: item.id.change_key,
            sync_id,
            siebel_updated: record.updated.clone(),
            siebel_hash: content_hash(&form),
            exchange_hash: content_hash(&as_siebel),
            base: form,
        };
        info!(%siebel_id, "found the Exchange copy of an interrupted create; linked it");
        self.engine.store.save_link(&link).await?;
        Ok(())
    }

    /// A contact created in Outlook: a business contact unless marked private. With Full sync
    /// it is created in Siebel (or found again after a crash by its sync id) and put on the
    /// user's sync list. Returns the Siebel id it linked the item to.
    async fn import_exchange_contact(&mut self, item: ExchangeItem) -> Result<Option<String>, EngineError> {
        if self.user.domains.contacts != SyncLevel::Full {
            return Ok(None);
        }
        let private = item.fields.get("Sensitivity").and_then(Value::as_text).is_some_and(|s| s != "Normal");
        if private {
            return Ok(None);
        }
        let mut as_siebel = match self.to_siebel(&item.fields) {
            Ok(fields) => fields,
            Err(error) => {
                let key = format!("exchange:{}", item.id.id);
                self.set_aside(key, format!("new Exchange contact {} could not be mapped: {error}", item.id.id)).await?;
                return Ok(None);
            }
        };
        let store = &self.engine.store;
        // The sync id is derived from the Exchange item, so a create that happened before a
        // crash (or a reset) is found again by it instead of being made twice.
        let sync_id = sync_id_for(self.login(), &format!("exchange:{}", item.id.id));
        let spec = format!("[{SIEBEL_SYNC_ID_FIELD}] = {}", searchspec_literal(&sync_id));
        let siebel_id =
            self.engine.siebel.query(CONTACT_BO, CONTACT_BC, Some(&spec)).await?.into_iter().next().map(|r| r.id);
        if siebel_id.is_none() {
            store
                .record_intent(&Intent {
                    sync_id: sync_id.clone(),
                    login: self.login().to_owned(),
                    domain: CONTACTS.into(),
                    operation: "create-siebel".into(),
                    siebel_id: None,
                    exchange_id: Some(item.id.id.clone()),
                })
                .await?;
        }
        let siebel_id = match siebel_id {
            Some(id) => id,
            None => {
                as_siebel.insert(SIEBEL_SYNC_ID_FIELD.into(), Value::Text(sync_id.clone()));
                let id = self.engine.siebel.insert(CONTACT_BO, CONTACT_BC, &as_siebel).await?;
                self.report.siebel.created += 1;
                id
            }
        };
        store.add_to_sync_list(self.login(), &siebel_id).await?;
        let stored = self
            .engine
            .siebel
            .get_by_ids(CONTACT_BO, CONTACT_BC, std::slice::from_ref(&siebel_id))
            .await?
            .into_iter()
            .next();
        let fields = stored.as_ref().map(|r| r.fields.clone()).unwrap_or_else(|| as_siebel.clone());
        let form = self.to_exchange(&fields)?;
        as_siebel.remove(SIEBEL_SYNC_ID_FIELD);
        let link = Link {
            login: self.login().to_owned(),
            domain: CONTACTS.into(),
            siebel_id,
            exchange_id: item.id.id,
            change_key: item.id.change_key,
            sync_id,
            siebel_updated: stored.and_then(|r| r.updated),
            siebel_hash: content_hash(&form),
            exchange_hash: content_hash(&as_siebel),
            base: form,
        };
        store.save_link(&link).await?;
        Ok(Some(link.siebel_id))
    }
}

/// Tandem's sync id of a record: derived from the user and the record it was created from
/// (`siebel:ID` or `exchange:ITEMID`), so it can be recomputed after a crash or a reset.
fn sync_id_for(login: &str, origin: &str) -> String {
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x7a1d_3c5e_0b8f_4e21_9c6d_2f4a_8e1b_5d3c);
    uuid::Uuid::new_v5(&NAMESPACE, format!("{login}/{CONTACTS}/{origin}").as_bytes()).to_string()
}

/// The fields of `wanted` whose value differs from `current` (blank and absent are equal).
fn changed_fields(current: &Fields, wanted: &Fields) -> Fields {
    wanted
        .iter()
        .filter(|(name, value)| match current.get(*name) {
            Some(now) => now != *value && !(now.is_blank() && value.is_blank()),
            None => !value.is_blank(),
        })
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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

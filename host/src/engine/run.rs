//! One domain's part of a user's run, in two steps: `plan` reads both sides and maps them
//! (nothing is written) and lets `plan.rs` decide; `apply` carries the plan out: reconcile
//! every linked pair, link matches, adopt or import the Exchange items that are new to us,
//! and create the Exchange copies of Siebel records that entered the user's scope. The same
//! code serves every domain; `domain.rs` says how they differ (where records live, who owns
//! them, what an Outlook delete means).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use tracing::{debug, info, warn};

use super::plan::{self, DomainPlan, ExchangeSide, GoneAction, LinkStep, NewItem, NewItemAction, PairAction, RecordFacts, Snapshot};
use crate::domain::{DomainSpec, OutlookDelete, Scope};
use super::participants::{self, Directory};
use super::{Engine, EngineError, ExchangeChanges, PlannedWrite, RunReport, changed_fields, sync_id_for};
use crate::exchange::{ExchangeClient, ExchangeItem, ItemId, UpdateOutcome};
use crate::siebel::{SiebelRecord, searchspec_literal};
use crate::exchange::fields::ORGANIZER;
use crate::plugin::{
    CallContext, Conflict, ConflictPolicyInstance, FilterInstance, MapperInstance, Resolution, Side,
};
use crate::record::{Fields, Value, content_hash};
use crate::registry::{LoadedConflictPolicy, LoadedFilter, PluginHealth};
use crate::domain::{Intent, IntentKind, Link, SyncLevel, User};
use crate::store::QuarantinedRecord;

/// The Siebel field that carries Tandem's sync id on records Tandem created.
const SIEBEL_SYNC_ID_FIELD: &str = "Integration Id";
/// The filter configuration key of the ExtractStartDate window (the default filter's).
const EXTRACT_START_DATE_KEY: &str = "extract_start_date";
/// The Siebel field naming a record's owner (an Employee Id).
const OWNER_FIELD: &str = "Primary Owner Id";

/// What every domain run of one folder pass shares.
pub(super) struct FolderView<'f> {
    pub changes: &'f ExchangeChanges,
    /// Exchange items read in this pass, by item id; a domain takes the ones it claims.
    pub items: &'f mut HashMap<String, ExchangeItem>,
    /// Item ids linked in any domain of the folder (before this pass).
    pub linked_exchange_ids: &'f BTreeSet<String>,
    /// The user's sync list.
    pub sync_list: &'f BTreeSet<String>,
    /// Sync-list entries found in some domain's business component (to report the rest).
    pub found_on_sync_list: &'f mut BTreeSet<String>,
}

/// The Exchange side of a pair as it is now, mapped back to Siebel shape.
struct ExchangeNow {
    item: ExchangeItem,
    as_siebel: Fields,
    hash: String,
}

/// What a domain run read and mapped: the plan is decided from it, the apply step writes
/// from it.
struct Reading {
    /// The user's Siebel records of the domain, by id.
    records: HashMap<String, SiebelRecord>,
    /// Records the filter could not judge, with its error.
    held: BTreeMap<String, String>,
    /// Their Exchange forms (the mapping's error message when it failed).
    forms: HashMap<String, Result<Fields, String>>,
    /// Linked items read in this run, mapped back to Siebel shape, by item id.
    linked_items: HashMap<String, Result<ExchangeNow, String>>,
    /// The filter's verdict on new items without a sync id, by item id.
    verdicts: HashMap<String, Result<bool, String>>,
}

/// What reconciling one link left behind.
enum Reconciled {
    /// The pair is (still) linked, or the link was dropped for good.
    Done,
    /// The link was dropped and the Siebel record must be written to Exchange again.
    Recreate,
}

/// One domain's run for one user.
pub(super) struct DomainRun<'a> {
    engine: &'a Engine,
    user: &'a User,
    /// The user's mailbox connector (EWS or Graph).
    exchange: &'a ExchangeClient,
    spec: &'static DomainSpec,
    level: SyncLevel,
    mapper: MapperInstance,
    plugin_name: String,
    /// Failures of this plugin version across runs; repeated ones mark it unhealthy.
    plugin_health: Arc<PluginHealth>,
    filter: Option<(LoadedFilter, FilterInstance)>,
    ctx: CallContext,
    /// The domain's conflict policy as the run started (instantiated at the first conflict).
    policy: Option<LoadedConflictPolicy>,
    policy_instance: Option<ConflictPolicyInstance>,
    report: &'a mut RunReport,
    /// This user's quarantined records of this domain, by key.
    quarantine: HashMap<String, QuarantinedRecord>,
    /// The user's Employee Id, for domains of records the user owns.
    owner_id: Option<String>,
    /// Participants' addresses read in this run (domains with participants).
    directory: Directory,
    /// The mailboxes of enabled Tandem users, read when first needed.
    tandem_mailboxes: Option<BTreeSet<String>>,
}

/// Records per batch when a run maps its Siebel records ahead: one plugin call each, well
/// within the call deadline even for a slow plugin (Python: ~0.1 ms a record).
const MAP_BATCH: usize = 100;

impl<'a> DomainRun<'a> {
    pub(super) fn new(
        engine: &'a Engine,
        user: &'a User,
        exchange: &'a ExchangeClient,
        spec: &'static DomainSpec,
        report: &'a mut RunReport,
        quarantine: &[QuarantinedRecord],
        owner_id: Option<String>,
    ) -> Result<Self, EngineError> {
        let loaded = engine.plugins.mapper(spec.name).ok_or_else(|| EngineError::NoMapper(spec.name.into()))?;
        let plugin_name = loaded.info.name.clone();
        let mapper = loaded
            .plugin
            .instantiate()
            .map_err(|source| EngineError::Plugin { plugin: plugin_name.clone(), source })?;
        let filter = match engine.plugins.filter(spec.name) {
            Some(loaded) => {
                // The user's own ExtractStartDate over the filter's global one.
                let overrides = user
                    .extract_start_date
                    .iter()
                    .map(|date| (EXTRACT_START_DATE_KEY.to_owned(), date.clone()))
                    .collect();
                let instance = loaded
                    .plugin
                    .instantiate_with_config(overrides)
                    .map_err(|source| EngineError::Plugin { plugin: loaded.info.name.clone(), source })?;
                Some((loaded, instance))
            }
            None => None,
        };
        Ok(Self {
            engine,
            user,
            exchange,
            spec,
            level: spec.level(&user.domains),
            mapper,
            plugin_name,
            plugin_health: loaded.health.clone(),
            filter,
            ctx: CallContext { domain: spec.name.into(), user: user.login.clone() },
            policy: engine.plugins.conflict_policy(spec.name),
            policy_instance: None,
            report,
            quarantine: quarantine
                .iter()
                .filter(|q| q.domain == spec.name)
                .map(|q| (q.record_key.clone(), q.clone()))
                .collect(),
            owner_id,
            directory: Directory::default(),
            tandem_mailboxes: None,
        })
    }

    fn login(&self) -> &str {
        &self.user.login
    }

    fn mailbox(&self) -> &str {
        &self.user.mailbox
    }

    /// How the domain names one of its records in messages ("calendar record 1-ABC").
    fn what(&self, siebel_id: &str) -> String {
        format!("{} record {siebel_id}", self.spec.name)
    }

    fn to_exchange(&mut self, siebel: &Fields) -> Result<Fields, EngineError> {
        let outcome = self.mapper.to_exchange(&self.ctx, siebel);
        self.plugin_health.record(&outcome);
        outcome.map_err(|source| EngineError::Plugin { plugin: self.plugin_name.clone(), source })
    }

    /// Maps this run's Siebel records to Exchange in batches, one plugin call per
    /// [`MAP_BATCH`] records instead of one per record. A batch that fails as a whole
    /// (a trap, a timeout) is mapped again one by one, so only the record that causes the
    /// failure fails. A failed mapping is kept as its message.
    fn map_records(&mut self, records: &HashMap<String, SiebelRecord>) -> HashMap<String, Result<Fields, String>> {
        let mut ids: Vec<&String> = records.keys().collect();
        ids.sort();
        let mut forms = HashMap::with_capacity(records.len());
        for chunk in ids.chunks(MAP_BATCH) {
            let fields = chunk.iter().map(|id| &records[*id].fields);
            match self.mapper.to_exchange_batch(&self.ctx, fields) {
                Ok(answers) => {
                    for (id, outcome) in chunk.iter().zip(answers) {
                        self.plugin_health.record(&outcome);
                        let plugin = &self.plugin_name;
                        let form = outcome.map_err(|source| EngineError::Plugin { plugin: plugin.clone(), source }.to_string());
                        forms.insert((*id).clone(), form);
                    }
                }
                Err(error) => {
                    debug!(domain = self.spec.name, %error, "a batch failed; its records are mapped one by one");
                    for id in chunk {
                        let form = self.to_exchange(&records[*id].fields).map_err(|error| error.to_string());
                        forms.insert((*id).clone(), form);
                    }
                }
            }
        }
        forms
    }

    fn to_siebel(&mut self, exchange: &Fields) -> Result<Fields, EngineError> {
        let outcome = self.mapper.to_siebel(&self.ctx, exchange);
        self.plugin_health.record(&outcome);
        outcome.map_err(|source| EngineError::Plugin { plugin: self.plugin_name.clone(), source })
    }

    /// Asks the domain's filter whether a record takes part (no filter: everything does).
    fn include(&mut self, side: Side, fields: &Fields) -> Result<bool, EngineError> {
        let Some((loaded, instance)) = &mut self.filter else { return Ok(true) };
        let outcome = instance.include(&self.ctx, side, fields);
        loaded.health.record(&outcome);
        outcome.map_err(|source| EngineError::Plugin { plugin: loaded.info.name.clone(), source })
    }

    /// A per-record failure: reported, the record left as it is on both sides and put in
    /// quarantine (`key` is `siebel:ID` or `exchange:ITEMID`), to be retried with backoff.
    async fn set_aside(&mut self, key: String, what: String) -> Result<(), EngineError> {
        warn!(user = %self.user.login, domain = self.spec.name, record = %key, "{what}");
        // Set aside again in this run: it did not go through.
        self.quarantine.remove(&key);
        self.engine.store.quarantine(&self.user.login, self.spec.name, &key, &what).await?;
        self.report.errors.push(what);
        Ok(())
    }

    /// A record that went through leaves quarantine.
    async fn went_through(&mut self, key: &str) -> Result<(), EngineError> {
        if self.quarantine.remove(key).is_some() {
            self.engine.store.release_quarantine(&self.user.login, self.spec.name, key).await?;
        }
        Ok(())
    }

    /// Whether the user's copy of this record is a participant's, not the owner's: Siebel is
    /// its master (an Outlook edit is overwritten), and deleting it leaves the meeting.
    fn is_participant_copy(&self, fields: &Fields) -> bool {
        self.spec.participants && self.owner_id.as_deref().is_some_and(|me| !participants::is_owner(fields, me))
    }

    /// The level a record syncs at: the domain's, at most export-only for a participant's copy.
    fn level_for(&self, fields: &Fields) -> SyncLevel {
        if self.level == SyncLevel::Full && self.is_participant_copy(fields) { SyncLevel::Export } else { self.level }
    }

    /// One record read again from Siebel (after a write), as the domain sees its records.
    async fn read_back(&mut self, siebel_id: &str) -> Result<Option<SiebelRecord>, EngineError> {
        let (bo, bc) = (self.spec.bus_object, self.spec.bus_comp);
        let mut found = self.engine.siebel.get_by_ids(bo, bc, &[siebel_id.to_owned()]).await?;
        if self.spec.participants {
            self.directory.annotate(&self.engine.siebel, &mut found).await?;
        }
        Ok(found.pop())
    }

    /// Turns fields about to be written over `current` into Siebel's own (participants from
    /// the attendees' addresses).
    async fn to_siebel_fields(&mut self, current: &Fields, wanted: &mut Fields) -> Result<(), EngineError> {
        if self.spec.participants {
            self.directory.resolve(&self.engine.siebel, current, wanted).await?;
        } else {
            wanted.remove(participants::ATTENDEE_EMAILS);
        }
        Ok(())
    }

    /// The Siebel records of this domain that belong to the user now, by id. Records the
    /// filter could not judge are `held` (with why): left alone on both sides, set aside by
    /// the apply step.
    async fn siebel_records(
        &mut self,
        links: &[Link],
        view: &mut FolderView<'_>,
    ) -> Result<(HashMap<String, SiebelRecord>, BTreeMap<String, String>), EngineError> {
        let siebel = &self.engine.siebel;
        let (bo, bc) = (self.spec.bus_object, self.spec.bus_comp);
        let mut found: Vec<SiebelRecord> = Vec::new();
        match self.spec.scope {
            Scope::SyncList => {
                // Sync-list entries another domain of the folder found are not looked for
                // again (a contact is no employee), so a list of contacts costs one request.
                let wanted: Vec<String> = view
                    .sync_list
                    .iter()
                    .filter(|id| !view.found_on_sync_list.contains(*id))
                    .cloned()
                    .chain(links.iter().map(|l| l.siebel_id.clone()))
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                if !wanted.is_empty() {
                    found = siebel.get_by_ids(bo, bc, &wanted).await?;
                }
                for record in &found {
                    view.found_on_sync_list.insert(record.id.clone());
                }
                found.retain(|record| view.sync_list.contains(&record.id));
            }
            Scope::Owned { extra } => {
                let Some(owner) = &self.owner_id else { return Ok(Default::default()) };
                let mut spec = format!("[{OWNER_FIELD}] = {}", searchspec_literal(owner));
                if self.spec.participants {
                    // The user's meetings and the ones they take part in (a multi-value field).
                    let me = searchspec_literal(owner);
                    spec = format!("({spec} OR EXISTS ([{}] = {me}))", participants::EMPLOYEE_PARTICIPANTS);
                }
                if !extra.is_empty() {
                    spec = format!("{spec} AND {extra}");
                }
                found = siebel.query(bo, bc, Some(&spec)).await?;
                if self.spec.participants {
                    found.retain(|r| participants::is_owner(&r.fields, owner) || participants::is_participant(&r.fields, owner));
                }
            }
        }
        if self.spec.participants {
            self.directory.annotate(siebel, &mut found).await?;
        }
        let mut records = HashMap::new();
        let mut held = BTreeMap::new();
        for record in found {
            match self.include(Side::Siebel, &record.fields) {
                Ok(true) => {
                    records.insert(record.id.clone(), record);
                }
                Ok(false) => {}
                Err(error) => {
                    held.insert(record.id, error.to_string());
                }
            }
        }
        Ok((records, held))
    }

    /// The domain's run: read and decide, then write.
    pub(super) async fn run(&mut self, links: Vec<Link>, view: &mut FolderView<'_>) -> Result<(), EngineError> {
        let (plan, mut reading) = self.plan(links, view).await?;
        self.apply(plan, &mut reading, view).await
    }

    /// Reads both sides and maps them (nothing is written), then decides the whole run with
    /// [`plan::plan_domain`]. Linked items are taken out of the folder's items; new ones stay
    /// there until the apply step claims them.
    async fn plan(&mut self, links: Vec<Link>, view: &mut FolderView<'_>) -> Result<(DomainPlan, Reading), EngineError> {
        let (records, held_why) = self.siebel_records(&links, view).await?;
        let held: BTreeSet<String> = held_why.keys().cloned().collect();
        let forms = self.map_records(&records);
        let mut linked_items = HashMap::new();
        for link in links.iter().filter(|link| !held.contains(&link.siebel_id)) {
            if let Some(item) = view.items.remove(&link.exchange_id) {
                let now = self.to_siebel(&item.fields).map_err(|error| error.to_string()).map(|as_siebel| {
                    let hash = content_hash(&as_siebel);
                    ExchangeNow { item, as_siebel, hash }
                });
                linked_items.insert(link.exchange_id.clone(), now);
            }
        }

        // Matching can only pair records that end up unlinked: new to the scope, or whose
        // copy was deleted in Outlook and is restored.
        let linked_ids: BTreeSet<&str> = links.iter().map(|l| l.siebel_id.as_str()).collect();
        let key_sets = self.engine.rules.matching.keys_of(self.spec.name).to_vec();
        let might_match = !key_sets.is_empty()
            && (records.keys().any(|id| !linked_ids.contains(id.as_str()))
                || links.iter().any(|l| view.changes.deleted.contains(&l.exchange_id)));
        let mut new_ids: Vec<String> = view
            .changes
            .changed
            .keys()
            .filter(|id| !view.linked_exchange_ids.contains(*id) && view.items.contains_key(*id))
            .cloned()
            .collect();
        // Invitations left alone earlier (their organizer's run had not made the meeting yet)
        // are matching candidates too.
        let mut unclaimed_ids = Vec::new();
        if self.spec.organizer_only && might_match {
            unclaimed_ids = self.engine.store.unclaimed(self.login(), self.spec.name).await?;
            unclaimed_ids.retain(|id| {
                !view.linked_exchange_ids.contains(id) && !view.changes.changed.contains_key(id) && !view.changes.deleted.contains(id)
            });
            let to_read: Vec<String> = unclaimed_ids.iter().filter(|id| !view.items.contains_key(*id)).cloned().collect();
            if !to_read.is_empty() {
                for item in self.exchange.get_items(self.mailbox(), self.spec.folder, &to_read).await? {
                    view.items.insert(item.id.id.clone(), item);
                }
            }
            unclaimed_ids.retain(|id| view.items.contains_key(id));
        }
        // The filter's verdict on the items the domain could import or match.
        let mut verdicts: HashMap<String, Result<bool, String>> = HashMap::new();
        if (self.spec.imports && self.level == SyncLevel::Full) || might_match {
            for id in new_ids.iter().chain(&unclaimed_ids) {
                let Some(item) = view.items.get(id).filter(|item| item.sync_id.is_none()) else { continue };
                let verdict = self.include(Side::Exchange, &item.fields.clone()).map_err(|error| error.to_string());
                verdicts.insert(id.clone(), verdict);
            }
        }
        new_ids.retain(|id| view.items.contains_key(id));

        let facts: HashMap<String, RecordFacts<'_>> = records
            .iter()
            .map(|(id, record)| {
                let form = forms.get(id).and_then(|form| form.as_ref().ok());
                (id.clone(), RecordFacts { form, participant_copy: self.is_participant_copy(&record.fields) })
            })
            .collect();
        let sides: HashMap<String, Option<ExchangeSide<'_>>> = linked_items
            .iter()
            .map(|(id, now)| {
                let side = now.as_ref().ok().map(|now| ExchangeSide { hash: &now.hash, change_key: &now.item.id.change_key });
                (id.clone(), side)
            })
            .collect();
        let items: &HashMap<String, ExchangeItem> = view.items;
        let new_items: Vec<NewItem<'_>> = new_ids.iter().map(|id| self.new_item(items, &verdicts, id)).collect();
        let unclaimed: Vec<NewItem<'_>> = unclaimed_ids.iter().map(|id| self.new_item(items, &verdicts, id)).collect();
        let snapshot = Snapshot {
            spec: self.spec,
            level: self.level,
            login: self.login(),
            records: &facts,
            held: &held,
            deleted: &view.changes.deleted,
            linked_items: &sides,
            new_items: &new_items,
            unclaimed: &unclaimed,
            key_sets: &key_sets,
        };
        let plan = plan::plan_domain(&snapshot, links);
        drop((new_items, unclaimed, sides, facts));
        Ok((plan, Reading { records, held: held_why, forms, linked_items, verdicts }))
    }

    /// The domain's dry run: plans as [`Self::run`] does, then reports the writes the plan
    /// makes instead of making them. Nothing is written anywhere.
    pub(super) async fn dry_run(&mut self, links: Vec<Link>, view: &mut FolderView<'_>) -> Result<(), EngineError> {
        let (plan, reading) = self.plan(links, view).await?;
        let linked = plan.links.len();
        for (what, count) in [("delete Exchange copies", plan.deletes.exchange_copies), ("remove from Siebel", plan.deletes.from_siebel)] {
            if self.engine.mass_delete_over(count, linked) {
                self.report.errors.push(format!(
                    "the mass-delete guard would stop this run: it would {what} of {count} of the user's {linked} synced {} \
                     records; allow it once with `POST /api/v1/users/{}/allow-mass-delete` if that is intended",
                    self.spec.name,
                    self.login()
                ));
            }
        }
        let writes = self.planned_writes(&plan, &reading, view.items).await?;
        self.report.plan.extend(writes);
        Ok(())
    }

    /// The writes a plan makes, in the order the apply step makes them. What the plan leaves
    /// to the moment of writing (a conflict policy's answer, the fields Siebel would change)
    /// is asked now, as the apply step would ask it; nothing is written.
    async fn planned_writes(
        &mut self,
        plan: &DomainPlan,
        reading: &Reading,
        items: &HashMap<String, ExchangeItem>,
    ) -> Result<Vec<PlannedWrite>, EngineError> {
        let domain = self.spec.name;
        let write = |side: &str, action: &str, id: Option<&str>, from: Option<&str>, fields: Fields| PlannedWrite {
            side: side.to_owned(),
            action: action.to_owned(),
            domain: domain.to_owned(),
            id: id.map(str::to_owned),
            from: from.map(str::to_owned),
            fields: PlannedWrite::plain(&fields),
        };
        let mut writes = Vec::new();
        for (link, step) in &plan.links {
            let (siebel_id, exchange_id) = (link.siebel_id.as_str(), link.exchange_id.as_str());
            let record = reading.records.get(siebel_id);
            let form = reading.forms.get(siebel_id).and_then(|form| form.as_ref().ok());
            match *step {
                LinkStep::Hold | LinkStep::SetAside(_) => {}
                LinkStep::OutlookDeleted { action, .. } => match (action, record) {
                    (GoneAction::DeleteInSiebel, _) => writes.push(write("siebel", "delete", Some(siebel_id), Some(exchange_id), Fields::new())),
                    (GoneAction::LeaveMeeting, Some(record)) => {
                        let me = self.owner_id.clone().unwrap_or_default();
                        if let Some(fields) = participants::without_participant(&record.fields, &me) {
                            writes.push(write("siebel", "update", Some(siebel_id), Some(exchange_id), fields));
                        }
                    }
                    // Leaving the sync list writes Tandem's own list; a restore is among the creates.
                    _ => {}
                },
                LinkStep::DeleteExchangeCopy { .. } => {
                    writes.push(write("exchange", "delete", Some(exchange_id), Some(siebel_id), Fields::new()));
                }
                LinkStep::Pair(action) => {
                    let (Some(record), Some(form)) = (record, form) else { continue };
                    let now = reading.linked_items.get(exchange_id).and_then(|now| now.as_ref().ok());
                    let level = self.level_for(&record.fields);
                    let resolution = match (action, now) {
                        (PairAction::PushToExchange, _) => Resolution::TakeSiebel,
                        (PairAction::PushToSiebel, Some(_)) if level != SyncLevel::Full => Resolution::TakeSiebel,
                        (PairAction::PushToSiebel, Some(_)) => Resolution::TakeExchange,
                        (PairAction::Conflict, Some(now)) => match self.decide_conflict(level, link, form, now) {
                            Ok(resolution) => resolution,
                            Err(_) => continue,
                        },
                        _ => continue,
                    };
                    match resolution {
                        Resolution::TakeSiebel => {
                            writes.push(write("exchange", "update", Some(exchange_id), Some(siebel_id), form.clone()));
                        }
                        Resolution::TakeExchange => {
                            let Some(now) = now else { continue };
                            let mut changed = changed_fields(&record.fields, &now.as_siebel);
                            self.to_siebel_fields(&record.fields, &mut changed).await?;
                            if !changed.is_empty() {
                                writes.push(write("siebel", "update", Some(siebel_id), Some(exchange_id), changed));
                            }
                        }
                        Resolution::Merged(merged) => {
                            let mut changed = changed_fields(&record.fields, &self.to_siebel(&merged)?);
                            self.to_siebel_fields(&record.fields, &mut changed).await?;
                            if !changed.is_empty() {
                                writes.push(write("siebel", "update", Some(siebel_id), Some(exchange_id), changed));
                            }
                            writes.push(write("exchange", "update", Some(exchange_id), Some(siebel_id), merged));
                        }
                        Resolution::KeepBoth | Resolution::Defer(_) => {}
                    }
                }
            }
        }
        for (siebel_id, item_id) in &plan.matches {
            if let Some(Ok(form)) = reading.forms.get(siebel_id) {
                writes.push(write("exchange", "link", Some(item_id), Some(siebel_id), form.clone()));
            }
        }
        for (item_id, action) in &plan.new_items {
            let NewItemAction::Import = action else { continue };
            let Some(item) = items.get(item_id) else { continue };
            let Ok(mut fields) = self.to_siebel(&item.fields) else { continue };
            if let (Scope::Owned { .. }, Some(owner)) = (self.spec.scope, &self.owner_id) {
                fields.insert(OWNER_FIELD.into(), Value::Text(owner.clone()));
            }
            self.to_siebel_fields(&Fields::new(), &mut fields).await?;
            writes.push(write("siebel", "create", None, Some(item_id), fields));
        }
        for siebel_id in &plan.creates {
            if let Some(Ok(form)) = reading.forms.get(siebel_id) {
                writes.push(write("exchange", "create", None, Some(siebel_id), form.clone()));
            }
        }
        Ok(writes)
    }

    /// An item new to the folder as the planner sees it.
    fn new_item<'i>(
        &self,
        items: &'i HashMap<String, ExchangeItem>,
        verdicts: &HashMap<String, Result<bool, String>>,
        id: &'i str,
    ) -> NewItem<'i> {
        let item = &items[id];
        NewItem {
            id,
            sync_id: item.sync_id.as_deref(),
            fields: &item.fields,
            imports_through_this_mailbox: self.imports_through_this_mailbox(item),
            included: verdicts.get(id).and_then(|verdict| verdict.as_ref().ok().copied()),
        }
    }

    /// Carries a plan out: the mass-delete guard first, then each link, the matches, the new
    /// items and the creates, each write journalled or made safe to repeat. The apply step
    /// also meets what the plan could not foresee: a copy gone while we wrote it (restored
    /// like a planned one), a record found in Siebel by an import (linked, not created).
    async fn apply(&mut self, plan: DomainPlan, reading: &mut Reading, view: &mut FolderView<'_>) -> Result<(), EngineError> {
        let store = &self.engine.store;
        let DomainPlan { deletes, links, matches, new_items, creates, unmappable } = plan;
        let removing_what = match self.spec.outlook_delete {
            OutlookDelete::LeaveSyncList => "taking Outlook-deleted records off the sync list",
            _ => "deleting in Siebel what was deleted in Outlook",
        };
        let (login, domain) = (self.login(), self.spec.name);
        self.engine.check_mass_delete(login, domain, "deleting Exchange copies", deletes.exchange_copies, links.len())?;
        self.engine.check_mass_delete(login, domain, removing_what, deletes.from_siebel, links.len())?;
        let intents = store.intents(self.login()).await?;
        for (siebel_id, error) in &reading.held {
            let what = format!("{} could not be filtered: {error}", self.what(siebel_id));
            self.set_aside(format!("siebel:{siebel_id}"), what).await?;
        }

        if self.spec.organizer_only {
            for id in &view.changes.deleted {
                store.forget_unclaimed(self.login(), self.spec.name, id).await?;
            }
        }
        let linked_sync_ids: BTreeSet<String> = links.iter().map(|(l, _)| l.sync_id.clone()).collect();
        let mut linked: BTreeSet<String> = links.iter().map(|(l, _)| l.siebel_id.clone()).collect();
        let mut restored: Vec<String> = Vec::new();
        for (link, step) in links {
            let (siebel_id, exchange_id) = (link.siebel_id.clone(), link.exchange_id.clone());
            let outcome = self.apply_link(link, step, reading).await;
            if let Some(Reconciled::Recreate) = self.unless_refused(outcome, &siebel_id, &exchange_id).await? {
                linked.remove(&siebel_id);
                restored.push(siebel_id);
            }
        }

        for (siebel_id, item_id) in matches {
            let Some(item) = view.items.remove(&item_id) else { continue };
            let (Some(record), Some(Ok(form))) = (reading.records.get(&siebel_id), reading.forms.get(&siebel_id)) else { continue };
            if self.spec.organizer_only {
                self.engine.store.forget_unclaimed(self.login(), self.spec.name, &item_id).await?;
            }
            let outcome = self.link_matched(&siebel_id, record, form.clone(), item).await;
            if self.unless_refused(outcome, &siebel_id, &item_id).await?.is_some() {
                linked.insert(siebel_id);
            }
        }

        for (item_id, action) in new_items {
            match action {
                NewItemAction::Adopt { siebel_id } => {
                    let Some(item) = view.items.remove(&item_id) else { continue };
                    if let Some(record) = reading.records.get(&siebel_id) {
                        self.adopt_exchange_copy(&siebel_id, record, item).await?;
                        linked.insert(siebel_id);
                    }
                }
                NewItemAction::LeaveAlone => {
                    let sync_id = view.items.get(&item_id).and_then(|item| item.sync_id.as_ref());
                    if sync_id.is_some_and(|sync_id| !linked_sync_ids.contains(sync_id)) {
                        debug!(%item_id, "an item carrying a sync id of another domain or record; left alone");
                    }
                }
                NewItemAction::ThroughItsOrganizer => {
                    // Another Tandem user's meeting comes into Siebel through them; kept so
                    // it can be matched once it has.
                    let Some(item) = view.items.get(&item_id) else { continue };
                    if self.organized_by_a_tandem_user(item).await? {
                        store.remember_unclaimed(self.login(), self.spec.name, &item_id).await?;
                    }
                }
                NewItemAction::Skip | NewItemAction::FilteredOut => {}
                NewItemAction::SetAside => {
                    let error = match reading.verdicts.get(&item_id) {
                        Some(Err(error)) => error.clone(),
                        _ => "the filter gave no verdict".to_owned(),
                    };
                    let what = format!("new Exchange {} item {item_id} could not be filtered: {error}", self.spec.name);
                    self.set_aside(format!("exchange:{item_id}"), what).await?;
                    view.items.remove(&item_id);
                }
                NewItemAction::Import => {
                    let Some(item) = view.items.remove(&item_id) else { continue };
                    let outcome = self.import_exchange_item(item).await;
                    if let Some(Some(siebel_id)) = self.unless_refused(outcome, "", &item_id).await? {
                        self.went_through(&format!("exchange:{item_id}")).await?;
                        linked.insert(siebel_id);
                    }
                }
            }
        }
        // Intents to create in Exchange that never reached it: the create did not happen,
        // so it is safe to make it again below.
        for intent in intents.iter().filter(|i| i.operation == IntentKind::CreateExchange && i.domain == self.spec.domain) {
            store.clear_intent(&intent.sync_id).await?;
        }

        for siebel_id in unmappable {
            let error = match reading.forms.get(&siebel_id) {
                Some(Err(error)) => error.clone(),
                _ => "no Exchange form".to_owned(),
            };
            let what = format!("{} could not be mapped: {error}", self.what(&siebel_id));
            self.set_aside(format!("siebel:{siebel_id}"), what).await?;
        }
        let mut creates: Vec<String> = creates.into_iter().chain(restored).collect();
        creates.sort();
        creates.dedup();
        creates.retain(|id| !linked.contains(id));
        self.create_exchange_copies(creates, reading).await
    }

    /// Creates the Exchange copies of records that entered the user's scope (or whose copy is
    /// restored), in one batch, each under an intent so a crash between the create and the
    /// link is adopted by the next run instead of duplicated.
    async fn create_exchange_copies(&mut self, siebel_ids: Vec<String>, reading: &Reading) -> Result<(), EngineError> {
        let store = &self.engine.store;
        let mut to_create: Vec<(String, Fields, String)> = Vec::new();
        for siebel_id in siebel_ids {
            let Some(Ok(exchange_form)) = reading.forms.get(&siebel_id) else { continue };
            let key = format!("siebel:{siebel_id}");
            self.went_through(&key).await?;
            let sync_id = sync_id_for(self.login(), self.spec.name, &key);
            store
                .record_intent(&Intent {
                    sync_id: sync_id.clone(),
                    login: self.login().to_owned(),
                    domain: self.spec.domain,
                    operation: IntentKind::CreateExchange,
                    siebel_id: Some(siebel_id.clone()),
                    exchange_id: None,
                })
                .await?;
            to_create.push((siebel_id, exchange_form.clone(), sync_id));
        }
        if to_create.is_empty() {
            return Ok(());
        }
        let batch: Vec<(Fields, String)> = to_create.iter().map(|(_, form, sync_id)| (form.clone(), sync_id.clone())).collect();
        let ids: Vec<Option<ItemId>> = match self.exchange.create_items(self.mailbox(), self.spec.folder, &batch).await {
            Ok(ids) => ids.into_iter().map(Some).collect(),
            // Exchange refused something in the batch: one by one, so only the refused
            // records are set aside (creates are made once by sync id, so repeating is safe).
            Err(error) if error.is_record_refusal() => {
                let mut ids = Vec::with_capacity(batch.len());
                for ((siebel_id, _, _), one) in to_create.iter().zip(&batch) {
                    let outcome = self.exchange.create_items(self.mailbox(), self.spec.folder, std::slice::from_ref(one)).await;
                    let outcome = outcome.map_err(EngineError::from);
                    ids.push(self.unless_refused(outcome, siebel_id, "").await?.and_then(|mut made| made.pop()));
                }
                ids
            }
            Err(error) => return Err(error.into()),
        };
        for ((siebel_id, form, sync_id), item_id) in to_create.into_iter().zip(ids) {
            let Some(item_id) = item_id else { continue };
            let as_siebel = self.to_siebel(&form)?;
            let link = Link {
                login: self.login().to_owned(),
                domain: self.spec.domain,
                siebel_updated: reading.records.get(&siebel_id).and_then(|r| r.updated.clone()),
                siebel_id,
                exchange_id: item_id.id,
                change_key: item_id.change_key,
                sync_id,
                siebel_hash: content_hash(&form),
                exchange_hash: content_hash(&as_siebel),
                base: form,
            };
            store.save_link(&link).await?;
            self.report.exchange.created += 1;
        }
        Ok(())
    }

    /// Links a Siebel record to an Exchange item found to be the same record, writing
    /// Siebel's version over the item (SSSE: "the Exchange record is overwritten with Siebel
    /// data").
    async fn link_matched(&mut self, siebel_id: &str, record: &SiebelRecord, form: Fields, item: ExchangeItem) -> Result<(), EngineError> {
        info!(%siebel_id, item_id = %item.id.id, domain = self.spec.name, "matched an existing Exchange item; linked it");
        let link = Link {
            login: self.login().to_owned(),
            domain: self.spec.domain,
            siebel_id: siebel_id.to_owned(),
            exchange_id: item.id.id.clone(),
            change_key: item.id.change_key.clone(),
            sync_id: sync_id_for(self.login(), self.spec.name, &format!("siebel:{siebel_id}")),
            siebel_updated: record.updated.clone(),
            siebel_hash: String::new(),
            exchange_hash: String::new(),
            base: Fields::new(),
        };
        self.report.matched += 1;
        self.push_to_exchange(link, record, form, item.id.change_key).await.map(drop)
    }

    /// The one Siebel record (beyond the user's sync list) that a new Exchange item is, by
    /// the key sets in order: each key is mapped to Siebel shape and searched for; exactly
    /// one hit counts.
    async fn find_in_siebel(&mut self, item: &ExchangeItem) -> Result<Option<SiebelRecord>, EngineError> {
        let key_sets = self.engine.rules.matching.keys_of(self.spec.name).to_vec();
        for key in &key_sets {
            let probe: Fields = key
                .iter()
                .filter_map(|name| item.fields.get(name).filter(|v| !v.is_blank()).map(|v| (name.clone(), v.clone())))
                .collect();
            if probe.len() != key.len() {
                continue;
            }
            let Ok(as_siebel) = self.to_siebel(&probe) else { continue };
            let clauses: Vec<String> = as_siebel
                .iter()
                .filter_map(|(name, value)| value.as_text().filter(|t| !t.trim().is_empty()).map(|t| (name, t)))
                .map(|(name, text)| format!("[{name}] = {}", searchspec_literal(text.trim())))
                .collect();
            if clauses.is_empty() {
                continue;
            }
            let spec = clauses.join(" AND ");
            let mut found = self.engine.siebel.query(self.spec.bus_object, self.spec.bus_comp, Some(&spec)).await?;
            if found.len() == 1 {
                return Ok(found.pop());
            }
        }
        Ok(None)
    }

    /// Whether an item's organizer is the mailbox of an enabled Tandem user.
    async fn organized_by_a_tandem_user(&mut self, item: &ExchangeItem) -> Result<bool, EngineError> {
        let Some(organizer) = item.fields.get(ORGANIZER).and_then(Value::as_text).map(|o| o.trim().to_ascii_lowercase()) else {
            return Ok(false);
        };
        if self.tandem_mailboxes.is_none() {
            let users = self.engine.store.users().await?;
            let mailboxes = users.into_iter().filter(|u| u.enabled).map(|u| u.mailbox.to_ascii_lowercase()).collect();
            self.tandem_mailboxes = Some(mailboxes);
        }
        Ok(self.tandem_mailboxes.as_ref().is_some_and(|mailboxes| mailboxes.contains(&organizer)))
    }

    /// Calendar items are imported only through their organizer's mailbox (SSSE's rule), so a
    /// meeting is never imported once per invitee.
    fn imports_through_this_mailbox(&self, item: &ExchangeItem) -> bool {
        if !self.spec.organizer_only {
            return true;
        }
        match item.fields.get(ORGANIZER).and_then(Value::as_text) {
            Some(organizer) if !organizer.trim().is_empty() => organizer.trim().eq_ignore_ascii_case(self.mailbox()),
            _ => true,
        }
    }

    /// Carries out one link's planned step.
    async fn apply_link(&mut self, mut link: Link, step: LinkStep, reading: &mut Reading) -> Result<Reconciled, EngineError> {
        let store = &self.engine.store;
        let siebel_key = format!("siebel:{}", link.siebel_id);
        let exchange_key = format!("exchange:{}", link.exchange_id);
        let now = reading.linked_items.remove(&link.exchange_id);
        let record = reading.records.get(&link.siebel_id);
        match step {
            LinkStep::Hold => Ok(Reconciled::Done),
            LinkStep::OutlookDeleted { action, lost_siebel_edit } => {
                // Modify versus delete: the delete wins (SSSE's rule); the lost edit goes to
                // the conflict log.
                if lost_siebel_edit {
                    self.report.conflicts += 1;
                    store.record_conflict(&link, "delete-wins", "deleted in Exchange while edited in Siebel").await?;
                }
                self.carry_out_gone(&link, record, action).await
            }
            LinkStep::DeleteExchangeCopy { lost_exchange_edit } => {
                // Out of the user's scope (off the sync list, no longer theirs, filtered out)
                // or gone from Siebel: the Exchange copy goes.
                if lost_exchange_edit {
                    self.report.conflicts += 1;
                    let detail = "gone from the user's Siebel records while edited in Exchange";
                    store.record_conflict(&link, "delete-wins", detail).await?;
                }
                self.exchange.delete_items(self.mailbox(), self.spec.folder, &[link.exchange_id.clone()]).await?;
                store.delete_link(self.login(), self.spec.name, &link.siebel_id).await?;
                self.report.exchange.deleted += 1;
                Ok(Reconciled::Done)
            }
            // Records in quarantine are tried again on every run (mapping costs microseconds);
            // only re-reading a quarantined Exchange item waits for its backoff.
            LinkStep::SetAside(Side::Siebel) => {
                let error = match reading.forms.get(&link.siebel_id) {
                    Some(Err(error)) => error.clone(),
                    _ => "no Exchange form".to_owned(),
                };
                self.set_aside(siebel_key, format!("{} could not be mapped: {error}", self.what(&link.siebel_id))).await?;
                Ok(Reconciled::Done)
            }
            LinkStep::SetAside(Side::Exchange) => {
                self.went_through(&siebel_key).await?;
                let error = match now {
                    Some(Err(error)) => error,
                    _ => "no Siebel form".to_owned(),
                };
                let what = format!("the Exchange item of {} could not be mapped: {error}", self.what(&link.siebel_id));
                self.set_aside(exchange_key, what).await?;
                Ok(Reconciled::Done)
            }
            LinkStep::Pair(action) => {
                let (Some(record), Some(Ok(siebel_form))) = (record, reading.forms.get(&link.siebel_id)) else {
                    return Ok(Reconciled::Done);
                };
                let siebel_form = siebel_form.clone();
                let reconciled = match (action, now.and_then(Result::ok)) {
                    (PairAction::PushToSiebel, Some(now)) => self.push_to_siebel(link, record, now).await,
                    (PairAction::NoteChangeKey, Some(now)) => {
                        link.change_key = now.item.id.change_key;
                        store.save_link(&link).await?;
                        Ok(Reconciled::Done)
                    }
                    (PairAction::Conflict, Some(now)) => self.resolve_conflict(link, record, siebel_form, now).await,
                    (PairAction::PushToExchange, now) => {
                        let change_key = now.map_or_else(|| link.change_key.clone(), |now| now.item.id.change_key);
                        self.push_to_exchange(link, record, siebel_form, change_key).await
                    }
                    // In step, or an action that needs an Exchange item without one (never planned).
                    _ => Ok(Reconciled::Done),
                }?;
                // Out of quarantine once written (a refused write keeps its attempts).
                self.went_through(&siebel_key).await?;
                self.went_through(&exchange_key).await?;
                Ok(reconciled)
            }
        }
    }

    /// A write a server refused for this one record: the record is set aside with the
    /// server's message under the key of the side whose change could not be written, and
    /// the run goes on. Any other error ends the run.
    async fn unless_refused<T>(
        &mut self,
        outcome: Result<T, EngineError>,
        siebel_id: &str,
        exchange_id: &str,
    ) -> Result<Option<T>, EngineError> {
        match outcome {
            Ok(value) => Ok(Some(value)),
            Err(error) if error.is_record_refusal() => {
                // Siebel refused an Outlook change: the item is read again when its retry
                // is due. Exchange refused a Siebel change: the record is tried every run.
                let key = match &error {
                    EngineError::Siebel(_) if !exchange_id.is_empty() => format!("exchange:{exchange_id}"),
                    _ if siebel_id.is_empty() => format!("exchange:{exchange_id}"),
                    _ => format!("siebel:{siebel_id}"),
                };
                let record = if siebel_id.is_empty() {
                    format!("new Exchange {} item {exchange_id}", self.spec.name)
                } else {
                    self.what(siebel_id)
                };
                self.set_aside(key, format!("{record} was refused, nothing else was changed: {error}")).await?;
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    /// The Exchange copy of a linked pair was found deleted while we wrote it: decided by
    /// the same rule as a delete the run read.
    async fn exchange_copy_gone(&mut self, link: &Link, record: Option<&SiebelRecord>) -> Result<Reconciled, EngineError> {
        let participant_copy = record.is_some_and(|record| self.is_participant_copy(&record.fields));
        let action = plan::gone_action(self.spec, self.level, participant_copy, record.is_some());
        self.carry_out_gone(link, record, action).await
    }

    /// Carries out what an Outlook delete means for the domain: leave the meeting or the sync
    /// list, restore the copy, or delete the Siebel record too.
    async fn carry_out_gone(&mut self, link: &Link, record: Option<&SiebelRecord>, action: GoneAction) -> Result<Reconciled, EngineError> {
        let store = &self.engine.store;
        // The link goes only once the write it calls for is made: a refused write leaves the
        // pair as it was, to be tried again.
        let reconciled = match (action, record) {
            (GoneAction::LeaveMeeting, Some(record)) => {
                // An invitee who deletes the meeting leaves its participants (SSSE's rule).
                let me = self.owner_id.clone().unwrap_or_default();
                if let Some(fields) = participants::without_participant(&record.fields, &me) {
                    self.engine.siebel.update(self.spec.bus_object, self.spec.bus_comp, &link.siebel_id, &fields).await?;
                    self.report.siebel.updated += 1;
                }
                info!(siebel_id = %link.siebel_id, "a participant deleted the meeting; taken off its participants");
                Reconciled::Done
            }
            (GoneAction::LeaveSyncList, _) => {
                store.remove_from_sync_list(self.login(), &link.siebel_id).await?;
                self.report.removed_from_sync_list += 1;
                info!(siebel_id = %link.siebel_id, "Exchange copy deleted; taken off the sync list");
                Reconciled::Done
            }
            (GoneAction::Restore, _) => {
                info!(siebel_id = %link.siebel_id, domain = self.spec.name, "Exchange copy deleted; restoring it from Siebel");
                Reconciled::Recreate
            }
            (GoneAction::DeleteInSiebel, _) => {
                self.engine.siebel.delete(self.spec.bus_object, self.spec.bus_comp, &link.siebel_id).await?;
                self.report.siebel.deleted += 1;
                info!(siebel_id = %link.siebel_id, domain = self.spec.name, "Exchange copy deleted; deleted in Siebel");
                Reconciled::Done
            }
            (GoneAction::Forget | GoneAction::LeaveMeeting, _) => Reconciled::Done,
        };
        store.delete_link(self.login(), self.spec.name, &link.siebel_id).await?;
        Ok(reconciled)
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
    ) -> Result<Reconciled, EngineError> {
        self.report.conflicts += 1;
        let level = self.level_for(&record.fields);
        let resolution = match self.decide_conflict(level, &link, &siebel_form, &now) {
            Ok(resolution) => resolution,
            Err(error) => {
                let what = format!("the conflict on {} could not be resolved: {error}", self.what(&link.siebel_id));
                self.set_aside(format!("siebel:{}", link.siebel_id), what).await?;
                return Ok(Reconciled::Done);
            }
        };
        self.apply_resolution(link, record, siebel_form, now, resolution, "changed on both sides since the last sync").await
    }

    /// What the domain's conflict policy says of a pair changed on both sides (Siebel wins
    /// without asking under export-only sync).
    fn decide_conflict(&mut self, level: SyncLevel, link: &Link, siebel_form: &Fields, now: &ExchangeNow) -> Result<Resolution, EngineError> {
        if level != SyncLevel::Full {
            return Ok(Resolution::TakeSiebel);
        }
        // The Exchange item reduced to the mapped fields, so unmapped Exchange fields never
        // look like edits to the policy.
        let exchange = now
            .item
            .fields
            .iter()
            .filter(|(name, _)| siebel_form.contains_key(*name))
            .map(|(name, value)| (name, value.clone()))
            .collect();
        let base = Some(link.base.clone()).filter(|base| !base.is_empty());
        let conflict = Conflict { base, siebel: siebel_form.clone(), exchange };
        self.ask_policy(&conflict)
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
    ) -> Result<Reconciled, EngineError> {
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
                let mut changed = changed_fields(&record.fields, &as_siebel);
                self.to_siebel_fields(&record.fields, &mut changed).await?;
                if !changed.is_empty() {
                    self.engine.siebel.update(self.spec.bus_object, self.spec.bus_comp, &link.siebel_id, &changed).await?;
                    self.report.siebel.updated += 1;
                }
                self.push_to_exchange(link, record, merged, now.item.id.change_key).await
            }
            Resolution::KeepBoth | Resolution::Defer(_) => {
                let reason = match resolution {
                    Resolution::Defer(reason) => format!("deferred by the conflict policy: {reason}"),
                    _ => "the policy asked to keep both; a linked pair can't be split, so both sides stay as they are".into(),
                };
                store.record_conflict(&link, "deferred", &reason).await?;
                // Both versions stay; the pair counts as in step until either side changes again.
                link.siebel_hash = content_hash(&siebel_form);
                link.exchange_hash = now.hash;
                link.change_key = now.item.id.change_key;
                link.siebel_updated = record.updated.clone();
                store.save_link(&link).await?;
                Ok(Reconciled::Done)
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
    ) -> Result<Reconciled, EngineError> {
        let store = &self.engine.store;
        let mut id = ItemId { id: link.exchange_id.clone(), change_key };
        // One retry: a conflict means Exchange changed under us; the policy decides, and if
        // Siebel wins we write again with the fresh ChangeKey.
        for attempt in 0..2 {
            match self.exchange.update_item(self.mailbox(), self.spec.folder, &id, &form).await? {
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
                    return Ok(Reconciled::Done);
                }
                UpdateOutcome::NotFound => return self.exchange_copy_gone(&link, Some(record)).await,
                UpdateOutcome::Conflict if attempt == 0 => {
                    // Exchange changed between our read and our write (ErrorIrresolvableConflict):
                    // read it again and let the conflict policy decide.
                    let fresh = self.exchange.get_items(self.mailbox(), self.spec.folder, &[id.id.clone()]).await?;
                    let Some(item) = fresh.into_iter().next() else { continue };
                    let as_siebel = self.to_siebel(&item.fields)?;
                    let hash = content_hash(&as_siebel);
                    let now = ExchangeNow { item, as_siebel, hash };
                    self.report.conflicts += 1;
                    let detail = "Exchange changed while we wrote";
                    match self.decide_conflict(self.level_for(&record.fields), &link, &form, &now) {
                        Ok(Resolution::TakeSiebel) => {
                            store.record_conflict(&link, "siebel-wins", detail).await?;
                            id = now.item.id;
                        }
                        Ok(resolution) => {
                            return Box::pin(self.apply_resolution(link, record, form, now, resolution, detail)).await;
                        }
                        Err(error) => {
                            let what = format!("the conflict on {} could not be resolved: {error}", self.what(&link.siebel_id));
                            self.set_aside(format!("siebel:{}", link.siebel_id), what).await?;
                            return Ok(Reconciled::Done);
                        }
                    }
                }
                UpdateOutcome::Conflict => {}
            }
        }
        let what = format!(
            "{} kept changing in Exchange while we wrote it; it will be retried next sync",
            self.what(&link.siebel_id)
        );
        self.report.errors.push(what);
        Ok(Reconciled::Done)
    }

    /// Writes an Exchange edit into Siebel, then reads the record back so the link holds
    /// exactly what Siebel stored. Under Export only the Exchange copy is restored instead.
    async fn push_to_siebel(&mut self, mut link: Link, record: &SiebelRecord, now: ExchangeNow) -> Result<Reconciled, EngineError> {
        let (bo, bc) = (self.spec.bus_object, self.spec.bus_comp);
        if self.level_for(&record.fields) != SyncLevel::Full {
            let form = self.to_exchange(&record.fields)?;
            return self.push_to_exchange(link, record, form, now.item.id.change_key).await;
        }
        let mut changed = changed_fields(&record.fields, &now.as_siebel);
        self.to_siebel_fields(&record.fields, &mut changed).await?;
        if !changed.is_empty() {
            self.engine.siebel.update(bo, bc, &link.siebel_id, &changed).await?;
            self.report.siebel.updated += 1;
        }
        let stored = self.read_back(&link.siebel_id).await?;
        let fields = stored.as_ref().map(|r| &r.fields).unwrap_or(&record.fields);
        let form = match self.to_exchange(fields) {
            Ok(form) => form,
            Err(error) => {
                let what = format!("{} took an Outlook edit that does not map back: {error}", self.what(&link.siebel_id));
                self.set_aside(format!("siebel:{}", link.siebel_id), what).await?;
                return Ok(Reconciled::Done);
            }
        };
        link.siebel_hash = content_hash(&form);
        link.exchange_hash = now.hash;
        link.change_key = now.item.id.change_key;
        link.siebel_updated = stored.and_then(|r| r.updated);
        link.base = form;
        self.engine.store.save_link(&link).await?;
        Ok(Reconciled::Done)
    }

    /// Links a Siebel record to the Exchange copy we created in a run that crashed before it
    /// could save the link.
    async fn adopt_exchange_copy(&mut self, siebel_id: &str, record: &SiebelRecord, item: ExchangeItem) -> Result<(), EngineError> {
        let form = self.to_exchange(&record.fields)?;
        let as_siebel = self.to_siebel(&item.fields)?;
        let sync_id = item.sync_id.clone().unwrap_or_default();
        let link = Link {
            login: self.login().to_owned(),
            domain: self.spec.domain,
            siebel_id: siebel_id.to_owned(),
            exchange_id: item.id.id,
            change_key: item.id.change_key,
            sync_id,
            siebel_updated: record.updated.clone(),
            siebel_hash: content_hash(&form),
            exchange_hash: content_hash(&as_siebel),
            base: form,
        };
        info!(%siebel_id, domain = self.spec.name, "found the Exchange copy of an interrupted create; linked it");
        // The copy was made from the record as it was before the crash: Siebel edits made
        // since then are written now, or they would be taken as already synced.
        let stale = self.to_siebel(&link.base).map_or(true, |wanted| content_hash(&wanted) != link.exchange_hash);
        if stale {
            let (form, change_key) = (link.base.clone(), link.change_key.clone());
            self.push_to_exchange(link, record, form, change_key).await?;
        } else {
            self.engine.store.save_link(&link).await?;
        }
        Ok(())
    }

    /// An item created in Outlook: created in Siebel (or found again after a crash by its
    /// sync id), owned by the user or put on their sync list. Returns the Siebel id it linked
    /// the item to.
    async fn import_exchange_item(&mut self, item: ExchangeItem) -> Result<Option<String>, EngineError> {
        let (bo, bc) = (self.spec.bus_object, self.spec.bus_comp);
        let mut as_siebel = match self.to_siebel(&item.fields) {
            Ok(fields) => fields,
            Err(error) => {
                let key = format!("exchange:{}", item.id.id);
                let what = format!("new Exchange {} item {} could not be mapped: {error}", self.spec.name, item.id.id);
                self.set_aside(key, what).await?;
                return Ok(None);
            }
        };
        if let Scope::Owned { .. } = self.spec.scope {
            let Some(owner) = &self.owner_id else { return Ok(None) };
            as_siebel.insert(OWNER_FIELD.into(), Value::Text(owner.clone()));
        }
        self.to_siebel_fields(&Fields::new(), &mut as_siebel).await?;
        let store = &self.engine.store;
        // The sync id is derived from the Exchange item, so a create that happened before a
        // crash (or a reset) is found again by it instead of being made twice.
        let sync_id = sync_id_for(self.login(), self.spec.name, &format!("exchange:{}", item.id.id));
        let spec = format!("[{SIEBEL_SYNC_ID_FIELD}] = {}", searchspec_literal(&sync_id));
        let siebel_id = self.engine.siebel.query(bo, bc, Some(&spec)).await?.into_iter().next().map(|r| r.id);
        if siebel_id.is_none() && self.spec.scope == Scope::SyncList {
            // A contact made in Outlook that Siebel already has: link it, don't copy it.
            if let Some(record) = self.find_in_siebel(&item).await? {
                store.add_to_sync_list(self.login(), &record.id).await?;
                let form = self.to_exchange(&record.fields)?;
                let id = record.id.clone();
                self.link_matched(&id, &record, form, item).await?;
                return Ok(Some(id));
            }
        }
        if siebel_id.is_none() {
            store
                .record_intent(&Intent {
                    sync_id: sync_id.clone(),
                    login: self.login().to_owned(),
                    domain: self.spec.domain,
                    operation: IntentKind::CreateSiebel,
                    siebel_id: None,
                    exchange_id: Some(item.id.id.clone()),
                })
                .await?;
        }
        let made_before_a_crash = siebel_id.is_some();
        let siebel_id = match siebel_id {
            Some(id) => id,
            None => {
                as_siebel.insert(SIEBEL_SYNC_ID_FIELD.into(), Value::Text(sync_id.clone()));
                let id = self.engine.siebel.insert(bo, bc, &as_siebel).await?;
                self.report.siebel.created += 1;
                id
            }
        };
        if self.spec.scope == Scope::SyncList {
            store.add_to_sync_list(self.login(), &siebel_id).await?;
        }
        let stored = self.read_back(&siebel_id).await?;
        let fields = stored.as_ref().map(|r| r.fields.clone()).unwrap_or_else(|| as_siebel.clone());
        let form = match self.to_exchange(&fields) {
            Ok(form) => form,
            Err(error) => {
                // Siebel took the record but it does not map back (the item breaks a Siebel
                // rule the mapping checks): left unlinked and set aside; the sync id finds the
                // record again on the retry, so it is never created twice.
                let what = format!(
                    "Exchange {} item {} was written to Siebel as {siebel_id} but does not map back: {error}",
                    self.spec.name, item.id.id
                );
                self.set_aside(format!("exchange:{}", item.id.id), what).await?;
                return Ok(None);
            }
        };
        let as_siebel = self.to_siebel(&item.fields)?;
        let hash = content_hash(&as_siebel);
        let link = Link {
            login: self.login().to_owned(),
            domain: self.spec.domain,
            siebel_id: siebel_id.clone(),
            exchange_id: item.id.id.clone(),
            change_key: item.id.change_key.clone(),
            sync_id,
            siebel_updated: stored.as_ref().and_then(|r| r.updated.clone()),
            siebel_hash: content_hash(&form),
            exchange_hash: hash.clone(),
            base: form,
        };
        match stored {
            // Made before a crash from an earlier version of the item: the Outlook edits
            // made since then are written now, or they would be taken as already synced.
            Some(record) if made_before_a_crash => {
                info!(%siebel_id, domain = self.spec.name, "found the Siebel copy of an interrupted import; brought it up to date");
                self.push_to_siebel(link, &record, ExchangeNow { item, as_siebel, hash }).await?;
            }
            _ => store.save_link(&link).await?,
        }
        Ok(Some(siebel_id))
    }
}

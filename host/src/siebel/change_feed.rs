//! Siebel change detection in the manner of SSSE's PIMSI Dispatcher: one query per business
//! component per cycle finds every record changed since the last cycle, and only the users a
//! change concerns are woken — instead of polling Siebel once per user.
//!
//! How a cycle works, per watched component (see `reference/siebel-ssse-and-rest.md` §6
//! "Change-detection fields"):
//! - **Change feed.** `[Updated] >= cursor − overlap`, asking only for `Updated`, `Mod Id` and
//!   the fields that say who a record concerns. The cursor is a lower bound of Siebel's clock
//!   when the previous query ran (see [`SiebelClock`]): the latest `Updated` seen, carried
//!   forward by the time elapsed since, so a quiet component's window slides past its last
//!   change and a quiet cycle costs one request per component. `Updated` has one-second
//!   resolution and several application servers commit late, so the window re-reads the last
//!   `overlap` before that moment; the versions `(Id, Mod Id)` (or `(Id, Updated)` without a
//!   `Mod Id`) already reported inside the window are remembered and skipped, so a record
//!   stamped in the cursor's own second is neither missed nor reported twice. The overlap must
//!   exceed the longest commit delay plus clock skew between application servers plus one
//!   query's duration.
//! - **Audience.** Contacts and Employees wake the users whose sync list holds the Id; Actions
//!   wake the Employees named in owner/participant fields (by `Login Name`) plus every user
//!   already linked to the Action (so a user who lost it hears about it too).
//! - **Reconciliation.** REST has no delete feed, and a change of team (the `Position Id`
//!   multi-value group, `Primary Position Id`) leaves the record's `Updated` alone, so the
//!   change feed sees neither. Every `reconcile_every` cycles each watched component is read
//!   in full, paged, asking only for `Id` and the team fields (plus what names the audience):
//!   about one request per 100 records. An Id we depend on (sync lists, linked Actions) that
//!   is no longer there is reported as gone (deleted). A record whose team differs from the
//!   previous reconciliation's is reported as changed, to its usual audience plus the users
//!   whose position (their Employee's `Primary Position Id`, found by one Employee query per
//!   50 positions) joined or left the team — they gained or lost visibility of it. The
//!   previous teams are kept in memory: the first reconciliation of a process only takes the
//!   baseline. All queries run with `ViewMode=All`, so a record on any position's team
//!   counts; which user sees what is the engine's.
//! - **Two phases.** [`Dispatcher::poll`] finds changes and changes no saved state;
//!   [`Dispatcher::commit`] saves the cursors once the caller has handed the changes on, so a
//!   crash in between re-reads the window instead of skipping it.
//!
//! The first cycle of a component (no saved cursor) reads all its records once ("bootstrap")
//! and reports each as changed. The first cycle after a bootstrap or a restart re-reads the
//! `overlap` behind the latest `Updated` once (nothing in it is reported again); from then on
//! the window follows Siebel's clock.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{NaiveDateTime, Timelike as _};
use serde::{Deserialize, Serialize};

use crate::siebel::{SiebelClient, SiebelError, SiebelRecord, searchspec_literal};
use crate::record::Value;
use crate::store::{Store, StoreError};

/// Siebel's date-time format, as `Updated` carries it.
const DATETIME_FORMAT: &str = "%m/%d/%Y %H:%M:%S";
/// The field that names an Employee's login.
const LOGIN_FIELD: &str = "Login Name";
/// A record's primary position; on an Employee, the employee's own position.
const PRIMARY_POSITION_FIELD: &str = "Primary Position Id";
/// The fields that make a record's team (comma-separated Position Ids), as the emulator's
/// visibility model has them (`sim/src/siebel/visibility.rs`).
const TEAM_FIELDS: &[&str] = &["Position Id", PRIMARY_POSITION_FIELD];
/// Positions looked up per Employee query (as many `OR` terms as `get_by_ids` uses).
const POSITIONS_PER_QUERY: usize = 50;
/// The ViewMode of every change-detection query: all records, not only the integration
/// user's "My" ones (§6 "Query parameters": the default is Sales Rep).
const CHANGE_FEED_VIEW_MODE: &str = "All";
/// An `Updated` further ahead of our UTC clock than any time zone (UTC+14, plus margin) is bad
/// data: it is reported but never moves a cursor.
const MAX_TIME_ZONE_LEAD_HOURS: i64 = 15;

/// What went wrong in change detection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DispatchError {
    #[error("Siebel change detection could not read Siebel: {0}")]
    Siebel(#[from] SiebelError),
    #[error("Siebel change detection could not use the state store: {0}")]
    Store(#[from] StoreError),
    #[error(
        "the saved change-feed state of {component} cannot be read ({detail}); delete its row from the siebel_feed table to re-read the component from the start"
    )]
    CorruptState { component: String, detail: String },
    #[error("the dispatcher configuration is invalid: {0}")]
    InvalidConfig(String),
}

/// Who a changed record concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// Users whose sync list holds the record's Id (Contacts, Employees).
    SyncListHolders,
    /// The Employees whose Ids these fields hold (comma-separated lists allowed), by their
    /// `Login Name`, plus every user with a link to the record in `link_domains`.
    Employees { id_fields: Vec<String>, link_domains: Vec<String> },
}

/// A business component the dispatcher watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedComponent {
    pub bus_object: String,
    pub bus_comp: String,
    pub audience: Audience,
}

impl WatchedComponent {
    /// `Contact/Contact`, for users whose sync list holds the contact.
    pub fn contacts() -> Self {
        Self { bus_object: "Contact".into(), bus_comp: "Contact".into(), audience: Audience::SyncListHolders }
    }

    /// `Employee/Employee`, for users whose sync list holds the employee. Its feed also keeps
    /// the dispatcher's Employee Id → login map current.
    pub fn employees() -> Self {
        Self { bus_object: "Employee".into(), bus_comp: "Employee".into(), audience: Audience::SyncListHolders }
    }

    /// `Action/Action`, for the owner (`Primary Owner Id`) and users linked in calendar/tasks.
    pub fn actions() -> Self {
        Self {
            bus_object: "Action".into(),
            bus_comp: "Action".into(),
            audience: Audience::Employees {
                id_fields: vec!["Primary Owner Id".into()],
                link_domains: vec!["calendar".into(), "tasks".into()],
            },
        }
    }

    /// `"BO/BC"`, the key of its saved state.
    pub fn key(&self) -> String {
        format!("{}/{}", self.bus_object, self.bus_comp)
    }

    fn is_employee_component(&self) -> bool {
        self.bus_object == "Employee" && self.bus_comp == "Employee"
    }
}

/// How the dispatcher runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatcherConfig {
    /// Watched components, in the order they are polled (Employees before Actions keeps the
    /// owner map warm).
    pub components: Vec<WatchedComponent>,
    /// How far before the cursor each change query starts again.
    pub overlap: Duration,
    /// Reconcile Id sets and teams (deletes, team changes) every this many cycles (the first
    /// reconciliation is in cycle `reconcile_every`); 0 never reconciles.
    pub reconcile_every: u32,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            components: vec![WatchedComponent::contacts(), WatchedComponent::employees(), WatchedComponent::actions()],
            overlap: Duration::from_secs(120),
            reconcile_every: 12,
        }
    }
}

/// A record version the dispatcher has not reported before, and whom it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedRecord {
    pub bus_object: String,
    pub bus_comp: String,
    pub id: String,
    /// `Updated` as Siebel sent it.
    pub updated: Option<String>,
    pub mod_id: Option<String>,
    /// Users to wake (may be empty: a change nobody syncs).
    pub logins: BTreeSet<String>,
    /// Whether reconciliation found its team changed (which leaves `Updated` alone); `updated`
    /// and `mod_id` are `None` when that is all that was found.
    pub team_changed: bool,
}

/// An Id we depend on that no longer answers: deleted, or no longer visible to us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoneRecord {
    /// The components it was looked up in (`"BO/BC"`), none of which has it.
    pub searched: Vec<String>,
    pub id: String,
    pub logins: BTreeSet<String>,
}

/// What one [`Dispatcher::poll`] found. Hand it on, then [`Dispatcher::commit`] it.
#[derive(Debug, Clone, Default)]
pub struct CycleReport {
    pub changed: Vec<ChangedRecord>,
    pub gone: Vec<GoneRecord>,
    /// Union of the logins of `changed` and `gone`: the users to run.
    pub affected_logins: BTreeSet<String>,
    /// Components read in full because they had no saved cursor yet.
    pub bootstrapped: Vec<String>,
    /// Whether this cycle reconciled Id sets.
    pub reconciled: bool,
    /// The feed states to save on commit, by component key.
    next_states: BTreeMap<String, FeedState>,
    /// What this cycle learnt of Siebel's clock, kept in memory on commit.
    next_clocks: BTreeMap<String, SiebelClock>,
    /// The teams this reconciliation read, by component key, kept in memory on commit.
    next_teams: BTreeMap<String, Teams>,
}

/// Record Id → its team (sorted, de-duplicated Position Ids, comma-joined; empty for none).
type Teams = HashMap<String, String>;

/// A record's team as [`Teams`] keeps it.
fn team_of(record: &SiebelRecord) -> String {
    let positions: BTreeSet<&str> = TEAM_FIELDS
        .iter()
        .filter_map(|field| text_field(record, field))
        .flat_map(|list| list.split(','))
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .collect();
    positions.into_iter().collect::<Vec<_>>().join(",")
}

/// The positions in one team and not the other.
fn team_difference(before: &str, after: &str) -> BTreeSet<String> {
    let split = |team: &str| -> BTreeSet<String> {
        team.split(',').filter(|id| !id.is_empty()).map(str::to_owned).collect()
    };
    split(before).symmetric_difference(&split(after)).cloned().collect()
}

/// A lower bound of Siebel's clock (the one that stamps `Updated`) at a local instant.
///
/// Siebel's clock is never read directly: REST replies carry no server time in `Updated`'s
/// time zone (the HTTP `Date` header is GMT, while `Updated` may be server-local), so a cursor
/// taken from `Date` could run hours ahead of `Updated` and miss changes. Instead the bound
/// comes from `Updated` stamps themselves (a record is never stamped after the query that
/// returns it) and is carried forward by our monotonic clock: if Siebel's clock was at least
/// `at_least` at `measured`, it is at least `at_least + elapsed` now. Both run at the same
/// rate, so no time zone or clock offset enters.
#[derive(Debug, Clone, Copy, PartialEq)]
struct SiebelClock {
    at_least: NaiveDateTime,
    measured: Instant,
}

impl SiebelClock {
    /// The bound carried forward to `now`.
    fn advanced_to(&self, now: Instant) -> NaiveDateTime {
        let elapsed = chrono::Duration::from_std(now.saturating_duration_since(self.measured))
            .unwrap_or(chrono::Duration::zero());
        self.at_least + elapsed
    }

    /// Whether this is the bound behind the saved cursor `saved` (the state was not replaced
    /// by another process or reset meanwhile).
    fn is_for(&self, saved: Option<&str>) -> bool {
        saved == Some(self.at_least.format(DATETIME_FORMAT).to_string().as_str())
    }
}

/// Where a change query starts: `overlap` before the cursor, on a whole second (the
/// resolution of `Updated`), rounded down so the window is never narrower than `overlap`.
fn window_start(cursor: NaiveDateTime, overlap: chrono::Duration) -> NaiveDateTime {
    let start = cursor - overlap;
    start.with_nanosecond(0).unwrap_or(start)
}

/// One version already reported inside the overlap window.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct SeenVersion {
    id: String,
    version: String,
    updated: String,
}

/// The saved state of one component's feed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct FeedState {
    /// Highest `Updated` seen, `MM/DD/YYYY HH:MM:SS`.
    cursor: Option<String>,
    seen: Vec<SeenVersion>,
    /// Set once the first full read was handed on; an empty component keeps no cursor but is
    /// not bootstrapped again (its "since the start" query is a full read of few records).
    #[serde(default)]
    started: bool,
}

/// The change detector. Keep one per Siebel endpoint and call [`poll`](Self::poll) /
/// [`commit`](Self::commit) once per scheduler cycle.
#[derive(Debug)]
pub struct Dispatcher {
    client: SiebelClient,
    store: Store,
    config: DispatcherConfig,
    cycles: u64,
    force_reconcile: bool,
    /// Employee Id → `Login Name`, from the Employee feed and lookups.
    employee_logins: HashMap<String, String>,
    /// Per component key: Siebel's clock as of the last committed cycle of this process.
    clocks: HashMap<String, SiebelClock>,
    /// Per component key: the teams read by the last committed reconciliation.
    teams: HashMap<String, Teams>,
}

impl Dispatcher {
    pub fn new(client: SiebelClient, store: Store, config: DispatcherConfig) -> Result<Self, DispatchError> {
        if config.components.is_empty() {
            return Err(DispatchError::InvalidConfig("no business components to watch".into()));
        }
        if config.overlap.as_secs() == 0 {
            return Err(DispatchError::InvalidConfig(
                "overlap must be at least 1 second, or changes in the cursor's second are missed".into(),
            ));
        }
        Ok(Self {
            // Every change counts, whichever positions' teams the record is on.
            client: client.with_view_mode(CHANGE_FEED_VIEW_MODE),
            store,
            config,
            cycles: 0,
            force_reconcile: false,
            employee_logins: HashMap::new(),
            clocks: HashMap::new(),
            teams: HashMap::new(),
        })
    }

    pub fn config(&self) -> &DispatcherConfig {
        &self.config
    }

    /// Makes the next [`poll`](Self::poll) reconcile Id sets whatever the cadence.
    pub fn reconcile_next(&mut self) {
        self.force_reconcile = true;
    }

    /// Finds the changes since the last committed cycle. Saves nothing.
    pub async fn poll(&mut self) -> Result<CycleReport, DispatchError> {
        self.cycles = self.cycles.wrapping_add(1);
        let reconcile = std::mem::take(&mut self.force_reconcile)
            || (self.config.reconcile_every > 0 && self.cycles.is_multiple_of(u64::from(self.config.reconcile_every)));
        let mut report = CycleReport { reconciled: reconcile, ..CycleReport::default() };
        let components = self.config.components.clone();
        for component in &components {
            self.poll_component(component, &mut report).await?;
        }
        if reconcile {
            self.reconcile(&components, &mut report).await?;
        }
        for record in &report.changed {
            report.affected_logins.extend(record.logins.iter().cloned());
        }
        for record in &report.gone {
            report.affected_logins.extend(record.logins.iter().cloned());
        }
        tracing::debug!(
            changed = report.changed.len(),
            gone = report.gone.len(),
            users = report.affected_logins.len(),
            reconciled = report.reconciled,
            "Siebel change detection cycle"
        );
        Ok(report)
    }

    /// Saves the cursors of a polled cycle; call after its users were handed on.
    pub async fn commit(&mut self, report: &CycleReport) -> Result<(), DispatchError> {
        for (component, state) in &report.next_states {
            let text = serde_json::to_string(state).map_err(|e| DispatchError::CorruptState {
                component: component.clone(),
                detail: format!("could not encode it ({e})"),
            })?;
            self.store.save_siebel_feed_state(component, &text).await?;
            match report.next_clocks.get(component) {
                Some(clock) => self.clocks.insert(component.clone(), *clock),
                None => self.clocks.remove(component),
            };
        }
        for (component, teams) in &report.next_teams {
            self.teams.insert(component.clone(), teams.clone());
        }
        Ok(())
    }

    /// [`poll`](Self::poll) then [`commit`](Self::commit), for callers that act on the report
    /// before anything else can fail.
    pub async fn run_cycle(&mut self) -> Result<CycleReport, DispatchError> {
        let report = self.poll().await?;
        self.commit(&report).await?;
        Ok(report)
    }

    async fn load_state(&self, key: &str) -> Result<FeedState, DispatchError> {
        match self.store.siebel_feed_state(key).await? {
            None => Ok(FeedState::default()),
            Some(text) => serde_json::from_str(&text)
                .map_err(|e| DispatchError::CorruptState { component: key.to_owned(), detail: e.to_string() }),
        }
    }

    fn wanted_fields(component: &WatchedComponent) -> Vec<&str> {
        let mut fields = vec!["Updated", "Mod Id"];
        if let Audience::Employees { id_fields, .. } = &component.audience {
            fields.extend(id_fields.iter().map(String::as_str));
        }
        if component.is_employee_component() {
            fields.push(LOGIN_FIELD);
        }
        fields
    }

    async fn poll_component(
        &mut self,
        component: &WatchedComponent,
        report: &mut CycleReport,
    ) -> Result<(), DispatchError> {
        let key = component.key();
        let state = self.load_state(&key).await?;
        let overlap = chrono::Duration::from_std(self.config.overlap)
            .map_err(|e| DispatchError::InvalidConfig(format!("overlap is too large ({e})")))?;
        let cursor = match &state.cursor {
            Some(text) => Some(parse_updated(text).ok_or_else(|| DispatchError::CorruptState {
                component: key.clone(),
                detail: format!("cursor '{text}' is not MM/DD/YYYY HH:MM:SS"),
            })?),
            None => None,
        };
        // Taken before the query is sent: Siebel's clock is at least this far on when the query
        // runs, whatever its time zone (see `SiebelClock`).
        let started = Instant::now();
        let clock_now = match (cursor, self.clocks.get(&key)) {
            (Some(saved), Some(clock)) if clock.is_for(state.cursor.as_deref()) => {
                Some(saved.max(clock.advanced_to(started)))
            }
            (saved, _) => saved,
        };
        let fields = Self::wanted_fields(component);
        let records = match cursor {
            Some(cursor) => {
                let since = window_start(cursor, overlap).format(DATETIME_FORMAT).to_string();
                let spec = format!("[Updated] >= {}", searchspec_literal(&since));
                self.client.query_fields(&component.bus_object, &component.bus_comp, Some(&spec), &fields).await?
            }
            None => {
                if !state.started {
                    report.bootstrapped.push(key.clone());
                }
                self.client.query_fields(&component.bus_object, &component.bus_comp, None, &fields).await?
            }
        };
        if component.is_employee_component() {
            for record in &records {
                if let Some(login) = text_field(record, LOGIN_FIELD) {
                    self.employee_logins.insert(record.id.clone(), login.to_owned());
                }
            }
        }

        let already: HashSet<(&str, &str)> =
            state.seen.iter().map(|seen| (seen.id.as_str(), seen.version.as_str())).collect();
        // Latest plausible `Updated` seen: no record is stamped after the query ran, so this is
        // also a lower bound of Siebel's clock (a far-future stamp is bad data, not a clock).
        let plausible_until = chrono::Utc::now().naive_utc() + chrono::Duration::hours(MAX_TIME_ZONE_LEAD_HOURS);
        let mut latest_updated: Option<NaiveDateTime> = None;
        let mut fresh = Vec::new();
        let mut seen = state.seen.clone();
        for record in records {
            let Some(updated_text) = record.updated.clone() else {
                tracing::warn!(component = key, id = record.id, "a Siebel record has no Updated; it cannot be tracked");
                continue;
            };
            let Some(updated) = parse_updated(&updated_text) else {
                tracing::warn!(component = key, id = record.id, updated = updated_text, "a Siebel record has an unreadable Updated");
                continue;
            };
            if updated <= plausible_until {
                latest_updated = Some(latest_updated.map_or(updated, |latest| latest.max(updated)));
            } else {
                tracing::warn!(component = key, id = record.id, updated = updated_text, "a Siebel record's Updated lies in the future; it does not move the change-feed cursor");
            }
            let version = text_field(&record, "Mod Id").map(str::to_owned).unwrap_or_else(|| updated_text.clone());
            if already.contains(&(record.id.as_str(), version.as_str())) {
                continue;
            }
            seen.push(SeenVersion { id: record.id.clone(), version, updated: updated_text });
            fresh.push(record);
        }
        let new_cursor = match (clock_now, latest_updated) {
            (Some(clock), Some(latest)) => Some(clock.max(latest)),
            (clock, latest) => clock.or(latest),
        };
        if let Some(cursor) = new_cursor {
            // The next query starts at this floor; versions below it cannot come back.
            let floor = window_start(cursor, overlap);
            seen.retain(|version| parse_updated(&version.updated).is_some_and(|at| at >= floor));
        }
        let mut unique = HashSet::new();
        seen.retain(|version| unique.insert((version.id.clone(), version.version.clone())));

        let audiences = self.audiences(component, &fresh).await?;
        for record in fresh {
            let logins = audiences.get(&record.id).cloned().unwrap_or_default();
            report.changed.push(ChangedRecord {
                bus_object: component.bus_object.clone(),
                bus_comp: component.bus_comp.clone(),
                mod_id: text_field(&record, "Mod Id").map(str::to_owned),
                updated: record.updated,
                id: record.id,
                logins,
                team_changed: false,
            });
        }
        let next = FeedState {
            cursor: new_cursor.map(|c| c.format(DATETIME_FORMAT).to_string()),
            seen,
            started: true,
        };
        if let Some(cursor) = new_cursor {
            report.next_clocks.insert(key.clone(), SiebelClock { at_least: cursor, measured: started });
        }
        report.next_states.insert(key, next);
        Ok(())
    }

    /// Record Id → logins it concerns.
    async fn audiences(
        &mut self,
        component: &WatchedComponent,
        records: &[SiebelRecord],
    ) -> Result<HashMap<String, BTreeSet<String>>, DispatchError> {
        let mut audiences: HashMap<String, BTreeSet<String>> = HashMap::new();
        if records.is_empty() {
            return Ok(audiences);
        }
        let ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
        match &component.audience {
            Audience::SyncListHolders => {
                for (id, login) in self.store.logins_by_sync_list_ids(&ids).await? {
                    audiences.entry(id).or_default().insert(login);
                }
            }
            Audience::Employees { id_fields, link_domains } => {
                let mut named: HashMap<&str, Vec<&str>> = HashMap::new();
                for record in records {
                    let employee_ids = id_fields
                        .iter()
                        .filter_map(|field| text_field(record, field))
                        .flat_map(|list| list.split(','))
                        .map(str::trim)
                        .filter(|id| !id.is_empty());
                    named.entry(record.id.as_str()).or_default().extend(employee_ids);
                }
                let unknown: Vec<String> = named
                    .values()
                    .flatten()
                    .filter(|id| !self.employee_logins.contains_key(**id))
                    .map(|id| (*id).to_owned())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                if !unknown.is_empty() {
                    for employee in
                        self.client.get_by_ids_fields("Employee", "Employee", &unknown, &[LOGIN_FIELD]).await?
                    {
                        if let Some(login) = text_field(&employee, LOGIN_FIELD) {
                            self.employee_logins.insert(employee.id.clone(), login.to_owned());
                        }
                    }
                }
                let users = self.enabled_users().await?;
                for (record_id, employee_ids) in named {
                    let logins = audiences.entry(record_id.to_owned()).or_default();
                    for employee_id in employee_ids {
                        let login = self.employee_logins.get(employee_id).map(|l| l.to_lowercase());
                        if let Some(user) = login.and_then(|l| users.get(&l)) {
                            logins.insert(user.clone());
                        }
                    }
                }
                let domains: Vec<&str> = link_domains.iter().map(String::as_str).collect();
                let wanted: HashSet<&str> = ids.iter().map(String::as_str).collect();
                if !domains.is_empty() {
                    for (login, siebel_id) in self.store.linked_siebel_ids_among(&domains, &ids).await? {
                        if wanted.contains(siebel_id.as_str()) {
                            audiences.entry(siebel_id).or_default().insert(login);
                        }
                    }
                }
            }
        }
        Ok(audiences)
    }

    /// The fields a reconciliation reads: the Id, the team, and what names the audience.
    fn reconcile_fields(component: &WatchedComponent) -> Vec<&str> {
        let mut fields = vec!["Id"];
        fields.extend_from_slice(TEAM_FIELDS);
        if let Audience::Employees { id_fields, .. } = &component.audience {
            fields.extend(id_fields.iter().map(String::as_str));
        }
        if component.is_employee_component() {
            fields.push(LOGIN_FIELD);
        }
        fields
    }

    /// Reads every watched component's Ids and teams (one paged query each); reports the Ids
    /// we depend on that are gone and the records whose team changed since the previous
    /// reconciliation.
    async fn reconcile(
        &mut self,
        components: &[WatchedComponent],
        report: &mut CycleReport,
    ) -> Result<(), DispatchError> {
        let mut present: HashMap<String, HashSet<String>> = HashMap::new();
        for component in components {
            let key = component.key();
            let fields = Self::reconcile_fields(component);
            let records = self.client.query_fields(&component.bus_object, &component.bus_comp, None, &fields).await?;
            if component.is_employee_component() {
                for record in &records {
                    if let Some(login) = text_field(record, LOGIN_FIELD) {
                        self.employee_logins.insert(record.id.clone(), login.to_owned());
                    }
                }
            }
            let teams: Teams = records.iter().map(|record| (record.id.clone(), team_of(record))).collect();
            // A record new since the previous reconciliation came through the change feed.
            let moved: Vec<(SiebelRecord, BTreeSet<String>)> = match self.teams.get(&key) {
                None => Vec::new(),
                Some(previous) => records
                    .into_iter()
                    .filter_map(|record| {
                        let before = previous.get(&record.id)?;
                        let after = teams.get(&record.id)?;
                        (before != after).then(|| {
                            let positions = team_difference(before, after);
                            (record, positions)
                        })
                    })
                    .collect(),
            };
            if !moved.is_empty() {
                self.report_team_changes(component, moved, report).await?;
            }
            present.insert(key.clone(), teams.keys().cloned().collect());
            report.next_teams.insert(key, teams);
        }
        let empty = HashSet::new();
        let present_in = |component: &WatchedComponent| present.get(&component.key()).unwrap_or(&empty);

        // Sync lists hold Contact and Employee Ids alike: an Id is gone when no
        // sync-list component has it.
        let sync_list_components: Vec<&WatchedComponent> =
            components.iter().filter(|c| c.audience == Audience::SyncListHolders).collect();
        if !sync_list_components.is_empty() {
            let mut missing: Vec<String> = self.store.all_sync_list_ids().await?;
            missing.retain(|id| !sync_list_components.iter().any(|component| present_in(component).contains(id)));
            if !missing.is_empty() {
                let mut logins: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
                for (id, login) in self.store.logins_by_sync_list_ids(&missing).await? {
                    logins.entry(id).or_default().insert(login);
                }
                let searched: Vec<String> = sync_list_components.iter().map(|c| c.key()).collect();
                for id in missing {
                    let logins = logins.remove(&id).unwrap_or_default();
                    report.gone.push(GoneRecord { searched: searched.clone(), id, logins });
                }
            }
        }
        for component in components {
            let Audience::Employees { link_domains, .. } = &component.audience else { continue };
            let domains: Vec<&str> = link_domains.iter().map(String::as_str).collect();
            if domains.is_empty() {
                continue;
            }
            let found = present_in(component);
            let mut gone: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for (login, id) in self.store.linked_siebel_ids(&domains).await? {
                if !found.contains(&id) {
                    gone.entry(id).or_default().insert(login);
                }
            }
            for (id, logins) in gone {
                report.gone.push(GoneRecord { searched: vec![component.key()], id, logins });
            }
        }
        Ok(())
    }

    /// Reports records whose team changed (each with the positions that joined or left it) to
    /// their usual audience plus the users holding those positions.
    async fn report_team_changes(
        &mut self,
        component: &WatchedComponent,
        moved: Vec<(SiebelRecord, BTreeSet<String>)>,
        report: &mut CycleReport,
    ) -> Result<(), DispatchError> {
        let records: Vec<SiebelRecord> = moved.iter().map(|(record, _)| record.clone()).collect();
        let mut audiences = self.audiences(component, &records).await?;
        let positions: BTreeSet<String> = moved.iter().flat_map(|(_, positions)| positions.iter().cloned()).collect();
        let holders = self.logins_by_position(&positions).await?;
        for (record, positions) in moved {
            let mut logins = audiences.remove(&record.id).unwrap_or_default();
            for position in &positions {
                logins.extend(holders.get(position).into_iter().flatten().cloned());
            }
            tracing::debug!(component = component.key(), id = record.id, ?positions, "a Siebel record's team changed");
            let already = report.changed.iter_mut().find(|changed| {
                changed.id == record.id
                    && changed.bus_object == component.bus_object
                    && changed.bus_comp == component.bus_comp
            });
            match already {
                Some(changed) => {
                    changed.logins.extend(logins);
                    changed.team_changed = true;
                }
                None => report.changed.push(ChangedRecord {
                    bus_object: component.bus_object.clone(),
                    bus_comp: component.bus_comp.clone(),
                    id: record.id,
                    updated: None,
                    mod_id: None,
                    logins,
                    team_changed: true,
                }),
            }
        }
        Ok(())
    }

    /// Position Id → the enabled users whose Employee holds it (`Primary Position Id`).
    async fn logins_by_position(
        &mut self,
        positions: &BTreeSet<String>,
    ) -> Result<HashMap<String, BTreeSet<String>>, DispatchError> {
        let mut holders: HashMap<String, BTreeSet<String>> = HashMap::new();
        if positions.is_empty() {
            return Ok(holders);
        }
        let users = self.enabled_users().await?;
        let positions: Vec<&String> = positions.iter().collect();
        for chunk in positions.chunks(POSITIONS_PER_QUERY) {
            let spec = chunk
                .iter()
                .map(|id| format!("[{PRIMARY_POSITION_FIELD}] = {}", searchspec_literal(id)))
                .collect::<Vec<_>>()
                .join(" OR ");
            let employees = self
                .client
                .query_fields("Employee", "Employee", Some(&spec), &[LOGIN_FIELD, PRIMARY_POSITION_FIELD])
                .await?;
            for employee in employees {
                let Some(login) = text_field(&employee, LOGIN_FIELD) else { continue };
                self.employee_logins.insert(employee.id.clone(), login.to_owned());
                let (Some(position), Some(user)) =
                    (text_field(&employee, PRIMARY_POSITION_FIELD), users.get(&login.to_lowercase()))
                else {
                    continue;
                };
                holders.entry(position.to_owned()).or_default().insert(user.clone());
            }
        }
        Ok(holders)
    }

    /// Lower-cased login → login of every enabled user (Siebel logins match case-insensitively).
    async fn enabled_users(&self) -> Result<HashMap<String, String>, DispatchError> {
        Ok(self
            .store
            .users()
            .await?
            .into_iter()
            .filter(|user| user.enabled)
            .map(|user| (user.login.to_lowercase(), user.login))
            .collect())
    }
}

fn parse_updated(text: &str) -> Option<NaiveDateTime> {
    super::dates::parse_datetime(text)
}

fn text_field<'a>(record: &'a SiebelRecord, name: &str) -> Option<&'a str> {
    record.fields.get(name).and_then(Value::as_text).map(str::trim).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    //! The dispatcher against the Siebel emulator over loopback, with a real state store.

    use serde_json::{Map, json};
    use tandem_sim::FaultSettings;
    use tandem_sim::siebel::{SiebelSim, SiebelSimConfig};

    use super::*;
    use crate::siebel::SiebelConfig;
    use crate::record::Fields;
    use crate::domain::{Domains, Link, User};

    struct Harness {
        sim: SiebelSim,
        client: SiebelClient,
        store: Store,
        /// `…/siebel/v1.0/data`, for requests the connector does not make.
        data_url: String,
        _server: tandem_sim::RunningServer,
        _dir: tempfile::TempDir,
    }

    async fn start() -> Harness {
        let sim = SiebelSim::new(SiebelSimConfig::default()).expect("emulator");
        let server = sim.serve("127.0.0.1:0".parse().expect("addr")).await.expect("bind");
        let credentials = sim.credentials().clone();
        let data_url = format!("{}{}", server.base_url(), tandem_sim::siebel::DATA_PREFIX);
        let client = SiebelClient::new(SiebelConfig {
            base_url: format!("{}/siebel/v1.0", server.base_url()),
            user: credentials.user,
            password: credentials.password,
            transport: Default::default(),
        })
        .expect("client")
        // The emulator's administrator is on no team: its own edits need ViewMode=All.
        .with_view_mode("All");
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open_dir(dir.path()).await.expect("store");
        Harness { sim, client, store, data_url, _server: server, _dir: dir }
    }

    impl Harness {
        fn seed(&self, bo: &str, fields: &[(&str, &str)]) -> String {
            let mut map = Map::new();
            for (name, value) in fields {
                map.insert((*name).into(), json!(value));
            }
            self.sim.insert(bo, bo, map).expect("seed")
        }

        async fn user(&self, login: &str, sync_list: &[&String]) {
            let user = User {
                login: login.into(),
                mailbox: format!("{login}@example.test"),
                enabled: true,
                domains: Domains::default(),
                backend: Default::default(),
                extract_start_date: None,
            };
            self.store.add_user(&user).await.expect("add user");
            for id in sync_list {
                self.store.add_to_sync_list(login, id).await.expect("sync list");
            }
        }

        async fn touch(&self, bo: &str, id: &str, field: &str, value: &str) {
            let mut fields = Fields::new();
            fields.insert(field.into(), value.into());
            self.client.update(bo, bo, id, &fields).await.expect("update");
        }

        /// Adds a position to a contact's team through the child component (`PUT
        /// …/Contact/{id}/Position/{position}`), which leaves the contact's `Updated` alone.
        async fn add_to_team(&self, contact: &str, position: &str) {
            let credentials = self.sim.credentials();
            let reply = reqwest::Client::new()
                .put(format!("{}/Contact/Contact/{contact}/Position/{position}?ViewMode=All", self.data_url))
                .basic_auth(&credentials.user, Some(&credentials.password))
                .json(&json!({}))
                .send()
                .await
                .expect("team PUT");
            assert!(reply.status().is_success(), "team PUT answered {}", reply.status());
        }

        fn gets(&self) -> u64 {
            self.sim.stats().requests.get("GET").copied().unwrap_or(0)
        }
    }

    fn quiet() -> DispatcherConfig {
        DispatcherConfig { reconcile_every: 0, ..DispatcherConfig::default() }
    }

    fn changed_ids(report: &CycleReport) -> BTreeSet<String> {
        report.changed.iter().map(|c| c.id.clone()).collect()
    }

    fn with_overlap(seconds: u64) -> DispatcherConfig {
        DispatcherConfig { overlap: Duration::from_secs(seconds), ..quiet() }
    }

    #[tokio::test]
    async fn quiet_components_cost_one_request_per_cycle_once_their_window_has_passed() {
        let h = start().await;
        // More than a page (100) in each of Contact and Employee, all stamped about now.
        let contacts: Vec<String> =
            (0..230).map(|i| h.seed("Contact", &[("Last Name", format!("Q{i}").as_str())])).collect();
        for i in 0..120 {
            h.seed("Employee", &[("Login Name", format!("emp{i}").as_str())]);
        }
        h.user("alice", &[&contacts[7]]).await;
        let mut dispatcher = Dispatcher::new(h.client.clone(), h.store.clone(), with_overlap(1)).expect("dispatcher");
        dispatcher.run_cycle().await.expect("bootstrap");
        tokio::time::sleep(Duration::from_millis(2300)).await;
        // The first cycle after the bootstrap may re-read the bootstrap's last second.
        let settle = dispatcher.run_cycle().await.expect("cycle");
        assert!(settle.changed.is_empty(), "nothing changed: {:?}", settle.changed);
        for round in 0..3 {
            let before = h.gets();
            let cycle = dispatcher.run_cycle().await.expect("quiet cycle");
            assert!(cycle.changed.is_empty(), "round {round}: {:?}", cycle.changed);
            assert_eq!(h.gets() - before, 3, "round {round}: one request per component, no paging");
        }
        // A change is still found, with the same cost.
        h.touch("Contact", &contacts[7], "Job Title", "Moved").await;
        let before = h.gets();
        let cycle = dispatcher.run_cycle().await.expect("cycle");
        assert_eq!(h.gets() - before, 3);
        assert_eq!(changed_ids(&cycle), BTreeSet::from([contacts[7].clone()]));
        assert_eq!(cycle.affected_logins, BTreeSet::from(["alice".to_owned()]));
        // Re-read inside the overlap right after: not reported again.
        assert!(dispatcher.run_cycle().await.expect("cycle").changed.is_empty());
    }

    #[tokio::test]
    async fn a_late_commit_stamped_before_the_advanced_cursor_is_found_once() {
        let h = start().await;
        let ann = h.seed("Contact", &[("Last Name", "Ann")]);
        h.user("alice", &[&ann]).await;
        let mut dispatcher = Dispatcher::new(h.client.clone(), h.store.clone(), with_overlap(3)).expect("dispatcher");
        dispatcher.run_cycle().await.expect("bootstrap");
        tokio::time::sleep(Duration::from_millis(2500)).await;
        // The cursor now follows Siebel's clock, ~2.5 s past Ann's Updated.
        assert!(dispatcher.run_cycle().await.expect("cycle").changed.is_empty());
        // Another application server commits a record it stamped 2 s ago: older than the
        // cursor, inside the overlap.
        let late = h.seed("Contact", &[("Last Name", "Late")]);
        let stamped = (chrono::Utc::now().naive_utc() - chrono::Duration::seconds(2)).format(DATETIME_FORMAT).to_string();
        h.sim.set_updated("Contact", "Contact", &late, &stamped).expect("backdate");
        h.store.add_to_sync_list("alice", &late).await.expect("sync list");
        let cycle = dispatcher.run_cycle().await.expect("cycle");
        assert_eq!(changed_ids(&cycle), BTreeSet::from([late.clone()]), "the late commit is not missed");
        assert_eq!(cycle.affected_logins, BTreeSet::from(["alice".to_owned()]));
        // Still inside the window on the next cycles, but never reported twice — also after a
        // restart, which forgets the in-memory clock.
        assert!(dispatcher.run_cycle().await.expect("cycle").changed.is_empty());
        let mut restarted = Dispatcher::new(h.client.clone(), h.store.clone(), with_overlap(3)).expect("dispatcher");
        assert!(restarted.run_cycle().await.expect("cycle").changed.is_empty());
        h.touch("Contact", &late, "Job Title", "Now").await;
        assert_eq!(changed_ids(&restarted.run_cycle().await.expect("cycle")), BTreeSet::from([late]));
    }

    #[test]
    fn the_siebel_clock_moves_with_elapsed_time_and_windows_start_on_whole_seconds() {
        let base = parse_updated("11/25/2026 10:00:00").expect("date");
        let measured = Instant::now();
        let clock = SiebelClock { at_least: base, measured };
        let later = clock.advanced_to(measured + Duration::from_millis(61_500));
        assert_eq!(later, base + chrono::Duration::milliseconds(61_500));
        assert_eq!(clock.advanced_to(measured), base);
        assert!(clock.is_for(Some("11/25/2026 10:00:00")) && !clock.is_for(Some("11/25/2026 10:00:01")));
        assert!(!clock.is_for(None));
        let start = window_start(later, chrono::Duration::seconds(120));
        assert_eq!(start.format(DATETIME_FORMAT).to_string(), "11/25/2026 09:59:01");
    }

    #[tokio::test]
    async fn changes_on_any_positions_team_are_seen_not_only_the_integration_users() {
        let h = start().await;
        let position = h.seed("Position", &[("Name", "Sales Rep West")]);
        let teamed = h.seed("Contact", &[("Last Name", "Teamed"), ("Position Id", position.as_str())]);
        h.user("alice", &[&teamed]).await;
        // The integration user's own view (Sales Rep, no position) does not hold it …
        let sales_rep = h.client.clone().with_view_mode("Sales Rep");
        assert!(sales_rep.get_by_ids("Contact", "Contact", std::slice::from_ref(&teamed)).await.expect("get").is_empty());
        // … but the change feed reads with ViewMode=All, whatever the client it is given.
        let mut dispatcher = Dispatcher::new(sales_rep, h.store.clone(), quiet()).expect("dispatcher");
        assert_eq!(changed_ids(&dispatcher.run_cycle().await.expect("bootstrap")), BTreeSet::from([teamed.clone()]));
        h.touch("Contact", &teamed, "Job Title", "Moved").await;
        let cycle = dispatcher.run_cycle().await.expect("cycle");
        assert_eq!(cycle.affected_logins, BTreeSet::from(["alice".to_owned()]));
    }

    #[tokio::test]
    async fn one_query_per_component_finds_each_change_once_and_wakes_only_its_users() {
        let h = start().await;
        let ann = h.seed("Contact", &[("Last Name", "Ann")]);
        let bob = h.seed("Contact", &[("Last Name", "Bob")]);
        let cy = h.seed("Contact", &[("Last Name", "Cy")]);
        h.user("alice", &[&ann, &bob]).await;
        h.user("carol", &[&bob]).await;
        h.user("dave", &[&cy]).await;
        let mut dispatcher = Dispatcher::new(h.client.clone(), h.store.clone(), quiet()).expect("dispatcher");

        let first = dispatcher.run_cycle().await.expect("bootstrap");
        assert_eq!(first.bootstrapped, vec!["Contact/Contact", "Employee/Employee", "Action/Action"]);
        assert_eq!(changed_ids(&first), BTreeSet::from([ann.clone(), bob.clone(), cy.clone()]));

        h.touch("Contact", &bob, "Job Title", "Boss").await;
        let before = h.gets();
        let second = dispatcher.run_cycle().await.expect("cycle");
        assert_eq!(h.gets() - before, 3, "one GET per watched component");
        assert_eq!(changed_ids(&second), BTreeSet::from([bob.clone()]));
        assert_eq!(second.affected_logins, BTreeSet::from(["alice".to_owned(), "carol".to_owned()]));

        // The overlap window re-reads Bob, but his version was already reported.
        let third = dispatcher.run_cycle().await.expect("cycle");
        assert!(third.changed.is_empty(), "re-read inside the overlap must not repeat: {:?}", third.changed);
        assert!(third.affected_logins.is_empty());
    }

    #[tokio::test]
    async fn a_change_in_the_cursors_own_second_is_not_missed_and_a_new_dispatcher_resumes() {
        let h = start().await;
        let ann = h.seed("Contact", &[("Last Name", "Ann")]);
        let bob = h.seed("Contact", &[("Last Name", "Bob")]);
        h.user("alice", &[&ann, &bob]).await;
        let mut dispatcher = Dispatcher::new(h.client.clone(), h.store.clone(), quiet()).expect("dispatcher");
        dispatcher.run_cycle().await.expect("bootstrap");
        // Ann changes, a cycle runs, then Bob changes — very likely within the same second,
        // so `Updated > cursor` alone would miss him.
        h.touch("Contact", &ann, "Job Title", "One").await;
        let cycle = dispatcher.run_cycle().await.expect("cycle");
        assert_eq!(changed_ids(&cycle), BTreeSet::from([ann.clone()]));
        h.touch("Contact", &bob, "Job Title", "Two").await;
        // A fresh dispatcher (as after a restart) starts from the saved cursor.
        let mut restarted = Dispatcher::new(h.client.clone(), h.store.clone(), quiet()).expect("dispatcher");
        let cycle = restarted.run_cycle().await.expect("cycle");
        assert!(cycle.bootstrapped.is_empty());
        assert_eq!(changed_ids(&cycle), BTreeSet::from([bob.clone()]));
        // Ann changes again: a new Mod Id is a new version.
        h.touch("Contact", &ann, "Job Title", "Three").await;
        let cycle = restarted.run_cycle().await.expect("cycle");
        assert_eq!(changed_ids(&cycle), BTreeSet::from([ann]));
    }

    #[tokio::test]
    async fn poll_without_commit_reports_the_same_changes_again() {
        let h = start().await;
        let ann = h.seed("Contact", &[("Last Name", "Ann")]);
        h.user("alice", &[&ann]).await;
        let mut dispatcher = Dispatcher::new(h.client.clone(), h.store.clone(), quiet()).expect("dispatcher");
        dispatcher.run_cycle().await.expect("bootstrap");
        h.touch("Contact", &ann, "Job Title", "X").await;
        let lost = dispatcher.poll().await.expect("poll");
        assert_eq!(changed_ids(&lost), BTreeSet::from([ann.clone()]));
        let again = dispatcher.poll().await.expect("poll");
        assert_eq!(changed_ids(&again), BTreeSet::from([ann]), "uncommitted changes come back");
        dispatcher.commit(&again).await.expect("commit");
        assert!(dispatcher.poll().await.expect("poll").changed.is_empty());
    }

    #[tokio::test]
    async fn actions_wake_their_owner_by_login_and_users_who_had_them_linked() {
        let h = start().await;
        let alice_emp = h.seed("Employee", &[("Login Name", "ALICE"), ("Last Name", "A")]);
        let bob_emp = h.seed("Employee", &[("Login Name", "bob"), ("Last Name", "B")]);
        h.user("alice", &[]).await;
        h.user("bob", &[]).await;
        let action = h.seed("Action", &[("Description", "Call"), ("Primary Owner Id", alice_emp.as_str())]);
        let mut dispatcher = Dispatcher::new(h.client.clone(), h.store.clone(), quiet()).expect("dispatcher");
        let first = dispatcher.run_cycle().await.expect("bootstrap");
        let found = first.changed.iter().find(|c| c.id == action).expect("action reported");
        assert_eq!(found.logins, BTreeSet::from(["alice".to_owned()]), "Login Name matches case-insensitively");

        h.store
            .save_link(&Link {
                login: "alice".into(),
                domain: crate::domain::Domain::Calendar,
                siebel_id: action.clone(),
                exchange_id: "AAMk-1".into(),
                change_key: "ck".into(),
                sync_id: "sync-1".into(),
                siebel_updated: None,
                siebel_hash: "h".into(),
                exchange_hash: "h".into(),
                base: Fields::new(),
            })
            .await
            .expect("link");
        // Ownership moves to Bob: both Bob (new owner) and Alice (had it linked) are woken.
        h.touch("Action", &action, "Primary Owner Id", &bob_emp).await;
        let cycle = dispatcher.run_cycle().await.expect("cycle");
        assert_eq!(changed_ids(&cycle), BTreeSet::from([action]));
        assert_eq!(cycle.affected_logins, BTreeSet::from(["alice".to_owned(), "bob".to_owned()]));
    }

    #[tokio::test]
    async fn reconciliation_reports_deleted_records_to_the_users_who_depend_on_them() {
        let h = start().await;
        let ann = h.seed("Contact", &[("Last Name", "Ann")]);
        let bob = h.seed("Contact", &[("Last Name", "Bob")]);
        let emp = h.seed("Employee", &[("Login Name", "zed")]);
        h.user("alice", &[&ann, &bob, &emp]).await;
        h.user("carol", &[&bob]).await;
        let config = DispatcherConfig { reconcile_every: 3, ..DispatcherConfig::default() };
        let mut dispatcher = Dispatcher::new(h.client.clone(), h.store.clone(), config).expect("dispatcher");
        dispatcher.run_cycle().await.expect("cycle 1");
        h.client.delete("Contact", "Contact", &bob).await.expect("delete");
        let cycle2 = dispatcher.run_cycle().await.expect("cycle 2");
        assert!(!cycle2.reconciled && cycle2.gone.is_empty(), "deletes are found only when reconciling");
        let cycle3 = dispatcher.run_cycle().await.expect("cycle 3");
        assert!(cycle3.reconciled);
        let gone: Vec<(&str, &BTreeSet<String>)> = cycle3.gone.iter().map(|g| (g.id.as_str(), &g.logins)).collect();
        let both = BTreeSet::from(["alice".to_owned(), "carol".to_owned()]);
        assert_eq!(gone, vec![(bob.as_str(), &both)], "the employee on a sync list is not gone");
        assert_eq!(cycle3.affected_logins, both);
    }

    #[tokio::test]
    async fn under_20_percent_faults_every_change_is_reported_exactly_once() {
        let h = start().await;
        let ids: Vec<String> = (0..30).map(|i| h.seed("Contact", &[("Last Name", format!("L{i}").as_str())])).collect();
        h.user("alice", &ids.iter().collect::<Vec<_>>()).await;
        let mut dispatcher = Dispatcher::new(h.client.clone(), h.store.clone(), quiet()).expect("dispatcher");
        dispatcher.run_cycle().await.expect("bootstrap");
        h.sim.control().faults.set(FaultSettings { rate: 0.2, kinds: vec![] });
        let mut reported: Vec<String> = Vec::new();
        let mut expected: Vec<String> = Vec::new();
        for (round, id) in ids.iter().enumerate().filter(|(i, _)| i % 3 == 0) {
            loop {
                let mut fields = Fields::new();
                fields.insert("Job Title".into(), format!("T{round}").as_str().into());
                if h.client.update("Contact", "Contact", id, &fields).await.is_ok() {
                    break;
                }
            }
            expected.push(id.clone());
            // A failed cycle commits nothing; the next one covers the same window.
            if let Ok(report) = dispatcher.run_cycle().await {
                reported.extend(report.changed.into_iter().map(|c| c.id));
            }
        }
        for _ in 0..20 {
            if let Ok(report) = dispatcher.run_cycle().await {
                reported.extend(report.changed.into_iter().map(|c| c.id));
            }
        }
        reported.sort();
        expected.sort();
        assert_eq!(reported, expected, "nothing lost, nothing duplicated");
    }

    #[tokio::test]
    async fn a_team_change_is_found_at_the_next_reconciliation_reported_once_with_the_positions_users() {
        let h = start().await;
        let west = h.seed("Position", &[("Name", "Sales Rep West")]);
        let east = h.seed("Position", &[("Name", "Sales Rep East")]);
        h.seed("Employee", &[("Login Name", "BOB"), ("Primary Position Id", west.as_str())]);
        h.seed("Employee", &[("Login Name", "eve"), ("Primary Position Id", east.as_str())]);
        let ann = h.seed("Contact", &[("Last Name", "Ann"), ("Position Id", east.as_str())]);
        let cy = h.seed("Contact", &[("Last Name", "Cy")]);
        h.user("alice", &[&ann]).await;
        h.user("bob", &[]).await;
        h.user("eve", &[]).await;
        h.user("carol", &[&cy]).await;
        let config = DispatcherConfig { reconcile_every: 2, ..DispatcherConfig::default() };
        let mut dispatcher = Dispatcher::new(h.client.clone(), h.store.clone(), config).expect("dispatcher");
        dispatcher.run_cycle().await.expect("bootstrap");
        // The first reconciliation takes the baseline: one page per component on top of the
        // change feed's one request per component.
        let before = h.gets();
        let baseline = dispatcher.run_cycle().await.expect("cycle 2");
        assert!(baseline.reconciled && baseline.changed.is_empty() && baseline.gone.is_empty(), "{baseline:?}");
        assert_eq!(h.gets() - before, 6, "3 feed queries + 3 one-page Id/team reads");

        // Bob's position joins Ann's team; her `Updated` does not move. Cy is deleted.
        let stamped = h.sim.get("Contact", "Contact", &ann).expect("ann")["Updated"].clone();
        h.add_to_team(&ann, &west).await;
        assert_eq!(h.sim.get("Contact", "Contact", &ann).expect("ann")["Updated"], stamped);
        h.client.delete("Contact", "Contact", &cy).await.expect("delete");
        // A cycle between reconciliations still costs one request per component and sees neither.
        let before = h.gets();
        let quiet = dispatcher.run_cycle().await.expect("cycle 3");
        assert!(!quiet.reconciled && quiet.changed.is_empty() && quiet.gone.is_empty(), "{quiet:?}");
        assert_eq!(h.gets() - before, 3);

        let before = h.gets();
        let found = dispatcher.run_cycle().await.expect("cycle 4");
        assert!(found.reconciled);
        assert_eq!(h.gets() - before, 7, "3 feed + 3 Id/team pages + 1 Employee lookup by position");
        assert_eq!(changed_ids(&found), BTreeSet::from([ann.clone()]));
        let change = &found.changed[0];
        assert!(change.team_changed && change.updated.is_none());
        assert_eq!(
            change.logins,
            BTreeSet::from(["alice".to_owned(), "bob".to_owned()]),
            "the sync-list holder and the user whose position joined (Login Name matches case-insensitively); not eve, whose position stayed"
        );
        let gone: Vec<&str> = found.gone.iter().map(|g| g.id.as_str()).collect();
        assert_eq!(gone, vec![cy.as_str()], "deletes are still found");
        assert_eq!(found.affected_logins, BTreeSet::from(["alice".into(), "bob".into(), "carol".into()]));

        // Reported once: the next reconciliation has nothing new.
        dispatcher.run_cycle().await.expect("cycle 5");
        let again = dispatcher.run_cycle().await.expect("cycle 6");
        assert!(again.reconciled);
        assert!(again.changed.is_empty(), "a team change is reported once: {:?}", again.changed);

        // Eve's position leaves the team (an edit of the field, which also moves `Updated`): the
        // feed reports it to Alice; the reconciliation then wakes Eve, who lost it.
        h.touch("Contact", &ann, "Position Id", &west).await;
        let feed = dispatcher.run_cycle().await.expect("cycle 7");
        assert_eq!(changed_ids(&feed), BTreeSet::from([ann.clone()]));
        assert_eq!(feed.affected_logins, BTreeSet::from(["alice".to_owned()]));
        let lost = dispatcher.run_cycle().await.expect("cycle 8");
        assert_eq!(changed_ids(&lost), BTreeSet::from([ann]));
        assert!(lost.changed[0].team_changed);
        // (Carol is woken again too: Cy stays gone while her sync list still holds it.)
        assert_eq!(lost.changed[0].logins, BTreeSet::from(["alice".to_owned(), "eve".to_owned()]));
    }

    #[tokio::test]
    async fn a_team_change_polled_but_not_committed_is_reported_again() {
        let h = start().await;
        let west = h.seed("Position", &[("Name", "West")]);
        let ann = h.seed("Contact", &[("Last Name", "Ann")]);
        h.user("alice", &[&ann]).await;
        let mut dispatcher = Dispatcher::new(h.client.clone(), h.store.clone(), quiet()).expect("dispatcher");
        dispatcher.run_cycle().await.expect("bootstrap");
        dispatcher.reconcile_next();
        dispatcher.run_cycle().await.expect("baseline");
        h.add_to_team(&ann, &west).await;
        dispatcher.reconcile_next();
        let lost = dispatcher.poll().await.expect("poll");
        assert_eq!(changed_ids(&lost), BTreeSet::from([ann.clone()]));
        dispatcher.reconcile_next();
        let again = dispatcher.poll().await.expect("poll");
        assert_eq!(changed_ids(&again), BTreeSet::from([ann]), "uncommitted team changes come back");
        dispatcher.commit(&again).await.expect("commit");
        dispatcher.reconcile_next();
        assert!(dispatcher.poll().await.expect("poll").changed.is_empty());
    }

    #[tokio::test]
    async fn reconciliation_reports_a_deleted_linked_action_to_its_linked_users() {
        let h = start().await;
        let kept = h.seed("Action", &[("Description", "Kept")]);
        let dropped = h.seed("Action", &[("Description", "Dropped")]);
        h.user("alice", &[]).await;
        for (n, action) in [&kept, &dropped].into_iter().enumerate() {
            h.store
                .save_link(&Link {
                    login: "alice".into(),
                    domain: crate::domain::Domain::Tasks,
                    siebel_id: action.clone(),
                    exchange_id: format!("AAMk-{n}"),
                    change_key: "ck".into(),
                    sync_id: format!("sync-{n}"),
                    siebel_updated: None,
                    siebel_hash: "h".into(),
                    exchange_hash: "h".into(),
                    base: Fields::new(),
                })
                .await
                .expect("link");
        }
        let mut dispatcher = Dispatcher::new(h.client.clone(), h.store.clone(), quiet()).expect("dispatcher");
        dispatcher.run_cycle().await.expect("bootstrap");
        h.client.delete("Action", "Action", &dropped).await.expect("delete");
        dispatcher.reconcile_next();
        let cycle = dispatcher.run_cycle().await.expect("cycle");
        let gone: Vec<(&str, &Vec<String>)> = cycle.gone.iter().map(|g| (g.id.as_str(), &g.searched)).collect();
        assert_eq!(gone, vec![(dropped.as_str(), &vec!["Action/Action".to_owned()])]);
        assert_eq!(cycle.affected_logins, BTreeSet::from(["alice".to_owned()]));
    }
}

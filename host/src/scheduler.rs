//! When users sync, and on which node: SSSE's Dispatcher and MaxTasks, with leases.
//!
//! Every node runs the same loop: claim the users that are due (their group's interval has
//! passed, or a change was detected for them) and not leased to another node, sync them
//! under a global cap of concurrent runs, renew the leases while running, then set each
//! user's next run. A failing user backs off exponentially; a user failing for a reason an
//! administrator must fix (bad credentials, unknown mailbox) is disabled after a number of
//! attempts, with the reason visible in the admin API. First runs (initial extracts) have a
//! lane of their own so one huge user never holds up the others.
//!
//! A user whose changes are signalled (Exchange notifications for its mailbox, Siebel change
//! detection working) is woken by those signals and otherwise polled only at the longer
//! safety-net interval, so idle users cost next to nothing. On shutdown, runs that miss the
//! deadline are aborted, recorded as `interrupted` and handed back (lease released, due now).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use tracing::{Instrument as _, info, info_span, warn};

use crate::metrics::Metrics;
use crate::engine::{Engine, EngineError, RunReport};
use crate::store::{Store, StoreError, now_ms};

/// How the scheduler behaves; `tandem serve` reads it from `[schedule]`.
#[derive(Debug, Clone)]
pub struct SchedulerSettings {
    /// This node's name in leases and run history.
    pub node: String,
    /// Interval of users whose group has none of its own.
    pub default_interval: Duration,
    /// Interval per dispatcher group.
    pub groups: BTreeMap<String, Duration>,
    /// Runs at once on this node (SSSE's MaxTasks).
    pub max_concurrent: usize,
    /// Of those, how many may be initial extracts.
    pub initial_extract_slots: usize,
    /// How long a claim holds a user; renewed every third of it while running.
    pub lease: Duration,
    /// How often the loop looks for due users when nothing wakes it.
    pub tick: Duration,
    /// The longest wait after repeated failures.
    pub max_backoff: Duration,
    /// Consecutive permanent failures after which a user is disabled.
    pub disable_after: i64,
    /// How long running syncs may take to finish on shutdown.
    pub shutdown_deadline: Duration,
    /// The safety-net interval of users whose changes are signalled: their mailbox has a
    /// streaming subscription and Siebel change detection runs. Such a user is synced at
    /// once when a change is signalled, and otherwise only after the longer of this and its
    /// group's interval. Zero: signals never lengthen the interval.
    pub notified_interval: Duration,
    /// How long each Exchange streaming connection is kept before it is renewed.
    pub watch_connection: Duration,
    /// How often the Exchange watcher re-reads the user map.
    pub watch_refresh: Duration,
    /// How often Siebel change detection runs (None: a quarter of the default interval,
    /// between 2 and 30 s).
    pub change_detection_every: Option<Duration>,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        Self {
            node: default_node_name(),
            default_interval: Duration::from_secs(60),
            groups: BTreeMap::new(),
            max_concurrent: 8,
            initial_extract_slots: 2,
            lease: Duration::from_secs(120),
            tick: Duration::from_secs(1),
            max_backoff: Duration::from_secs(3600),
            disable_after: 5,
            shutdown_deadline: Duration::from_secs(30),
            notified_interval: Duration::from_secs(4 * 3600),
            watch_connection: crate::exchange::ews::DEFAULT_WATCH_CONNECTION,
            watch_refresh: Duration::from_secs(30),
            change_detection_every: None,
        }
    }
}

/// `HOSTNAME-xxxxxx`: stable enough to read in the admin API, unique per process.
pub fn default_node_name() -> String {
    let host = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "tandem".into());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}", &suffix[..6])
}

/// Why a requested run did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    #[error("{login} is being synced by node {node}; try again when that run ends")]
    Busy { login: String, node: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Runs syncs under leases and records their outcome; shared by the loop and the admin API.
pub struct Runner {
    pub engine: Engine,
    pub metrics: Arc<Metrics>,
    pub settings: SchedulerSettings,
    /// Wakes the loop early (a change was detected, a user was added).
    pub wake: Notify,
    /// The user map changed (a user added, enabled, disabled): watchers re-read it.
    pub users_changed: Notify,
    /// Users whose mailbox the Exchange watcher is watching.
    exchange_watched: std::sync::RwLock<HashSet<String>>,
    /// Whether the last Siebel change detection cycle succeeded.
    siebel_detection_ok: AtomicBool,
}

impl Runner {
    pub fn new(engine: Engine, metrics: Arc<Metrics>, settings: SchedulerSettings) -> Arc<Self> {
        Arc::new(Self {
            engine,
            metrics,
            settings,
            wake: Notify::new(),
            users_changed: Notify::new(),
            exchange_watched: std::sync::RwLock::default(),
            siebel_detection_ok: AtomicBool::new(false),
        })
    }

    /// True when changes of `login` on both sides are signalled (the Exchange watcher
    /// watches its mailbox and Siebel change detection works), so polling is a safety net.
    pub fn changes_are_signalled(&self, login: &str) -> bool {
        self.siebel_detection_ok.load(Ordering::Relaxed)
            && self.exchange_watched.read().unwrap_or_else(|poisoned| poisoned.into_inner()).contains(login)
    }

    fn set_exchange_watched(&self, logins: HashSet<String>) {
        *self.exchange_watched.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = logins;
    }

    fn store(&self) -> &Store {
        self.engine.store()
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.settings.lease.as_millis()).unwrap_or(i64::MAX / 4)
    }

    /// Syncs `login` now (the admin API's "sync now"), unless another node holds it.
    pub async fn run_now(&self, login: &str) -> Result<RunReport, RunError> {
        self.store().user(login).await?;
        if !self.store().claim_user(&self.settings.node, login, now_ms(), self.lease_ms()).await? {
            let holder = self
                .store()
                .schedule_entries()
                .await?
                .into_iter()
                .find(|e| e.login == login)
                .and_then(|e| e.lease_node)
                .unwrap_or_else(|| "another node".into());
            return Err(RunError::Busy { login: login.to_owned(), node: holder });
        }
        self.run_claimed(login).await
    }

    /// Runs a user this node has claimed, renewing the lease meanwhile, then sets the next
    /// run and handles failures.
    async fn run_claimed(&self, login: &str) -> Result<RunReport, RunError> {
        let store = self.store().clone();
        let (node, lease, lease_ms) = (self.settings.node.clone(), self.settings.lease, self.lease_ms());
        let renewing_login = login.to_owned();
        // Stops renewing when the run ends, however it ends (also when it is aborted).
        let _renewal = AbortOnDrop(tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease / 3).await;
                match store.renew_lease(&node, &renewing_login, now_ms() + lease_ms).await {
                    Ok(true) => {}
                    Ok(false) => {
                        warn!(user = %renewing_login, "lost the lease while syncing; another node may take over");
                        return;
                    }
                    Err(error) => warn!(%error, "cannot renew a lease"),
                }
            }
        }));
        let outcome = self.engine.sync_user(login).await;
        drop(_renewal);
        // Backoff after a failure starts from the group's interval, never the safety net.
        let interval = self.group_interval(login).await;
        let now = now_ms();
        match outcome {
            Ok(report) if report.status == "ok" => {
                self.metrics.observe(&report);
                let next = if self.changes_are_signalled(login) { interval.max(self.settings.notified_interval) } else { interval };
                self.store().finish_run(&self.settings.node, login, now + millis(next), None).await?;
                Ok(report)
            }
            Ok(report) => {
                self.metrics.observe(&report);
                let reason = report.errors.first().cloned().unwrap_or_else(|| "failed".into());
                self.after_failure(login, interval, &reason, report.permanent).await?;
                Ok(report)
            }
            Err(error) => {
                self.after_failure(login, interval, &error.to_string(), error.is_permanent()).await?;
                Err(error.into())
            }
        }
    }

    async fn after_failure(&self, login: &str, interval: Duration, reason: &str, permanent: bool) -> Result<(), RunError> {
        let store = self.store();
        let failures = store.finish_run(&self.settings.node, login, now_ms(), Some(reason)).await?;
        let shift = u32::try_from(failures.clamp(0, 16)).unwrap_or(16);
        let backoff = interval.saturating_mul(1 << shift.min(16)).min(self.settings.max_backoff);
        store.set_next_run(login, now_ms() + millis(backoff)).await?;
        warn!(user = %login, failures, backoff_s = backoff.as_secs(), %reason, "sync failed; backing off");
        if permanent && failures >= self.settings.disable_after {
            let why = format!("disabled after {failures} failed runs that need an administrator: {reason}");
            store.disable_user(login, Some(&why)).await?;
            warn!(user = %login, "{why}");
        }
        Ok(())
    }

    /// The polling interval of `login`'s dispatcher group. After a good run whose user's
    /// changes are signalled, the next run waits the longer safety-net interval instead.
    async fn group_interval(&self, login: &str) -> Duration {
        let group = self.store().user_extras(login).await.map(|(group, _)| group).unwrap_or_default();
        self.settings.groups.get(&group).copied().unwrap_or(self.settings.default_interval)
    }

    /// Tells the loop and the watchers that the user map changed.
    pub fn user_map_changed(&self) {
        self.wake.notify_one();
        self.users_changed.notify_one();
    }

    /// Makes these users due now and wakes the loop (change detection found work).
    pub async fn wake_users(&self, logins: &[String]) -> Result<(), StoreError> {
        self.store().wake_users(logins, now_ms()).await?;
        self.wake.notify_one();
        Ok(())
    }
}

/// Aborts a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Records runs cut by the shutdown deadline and hands their users back: the run saved no
/// cursor, so the next run (on any node, at once) redoes its work; intents keep creates
/// from being repeated.
async fn checkpoint_interrupted(runner: &Runner, interrupted: &[(String, String)]) {
    let store = runner.store();
    for (login, started_at) in interrupted {
        let report = serde_json::json!({
            "status": "interrupted",
            "errors": ["stopped by the shutdown deadline before it finished; the next run redoes its work"],
        });
        if let Err(error) = store.record_run(login, started_at, "interrupted", &report).await {
            warn!(%error, user = %login, "cannot record an interrupted run");
        }
        let now = now_ms();
        if let Err(error) = store.set_next_run(login, now).await {
            warn!(%error, user = %login, "cannot make an interrupted user due");
        }
        if let Err(error) = store.release_lease(&runner.settings.node, login).await {
            warn!(%error, user = %login, "cannot release the lease of an interrupted run; it expires on its own");
        }
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX / 4)
}

/// The scheduling loop of one node; returns once `shutdown` turns true and running syncs
/// have finished (or the shutdown deadline passed: aborted runs saved no cursor, so the next
/// run redoes their work, and their leases simply expire).
pub async fn run(runner: Arc<Runner>, mut shutdown: watch::Receiver<bool>) {
    let settings = runner.settings.clone();
    let slots = Arc::new(Semaphore::new(settings.max_concurrent.max(1)));
    let initial_slots = Arc::new(Semaphore::new(settings.initial_extract_slots.max(1)));
    let mut running: JoinSet<()> = JoinSet::new();
    // Which user each running task syncs, and since when: for checkpointing on shutdown.
    let mut in_flight: HashMap<tokio::task::Id, (String, String)> = HashMap::new();
    if let Err(error) = runner.store().ensure_schedule().await {
        warn!(%error, "cannot prepare the schedule");
    }
    info!(node = %settings.node, max_concurrent = settings.max_concurrent, "scheduler started");
    while !*shutdown.borrow() {
        while let Some(joined) = running.try_join_next_with_id() {
            in_flight.remove(&joined.map_or_else(|error| error.id(), |(id, ())| id));
        }
        let free = slots.available_permits();
        if free > 0 {
            let (store, limit) = (runner.store(), i64::try_from(free).unwrap_or(1));
            // While the initial-extract lane is full, only users synced before are claimed:
            // first syncs waiting for the lane must not keep the other slots empty.
            let claimed = if initial_slots.available_permits() == 0 {
                store.claim_due_users_synced_before(&settings.node, now_ms(), runner.lease_ms(), limit).await
            } else {
                store.claim_due_users(&settings.node, now_ms(), runner.lease_ms(), limit).await
            };
            match claimed {
                Ok(logins) => {
                    for login in logins {
                        // Our own lease is claimable (a restart under the same node name);
                        // a user this loop is already syncing is not started twice.
                        if in_flight.values().any(|(running, _)| *running == login) {
                            continue;
                        }
                        let Ok(slot) = slots.clone().try_acquire_owned() else { break };
                        let initial = runner.engine.is_initial_extract(&login).await.unwrap_or(false);
                        let lane = if initial {
                            match initial_slots.clone().try_acquire_owned() {
                                Ok(lane) => Some(lane),
                                Err(_) => {
                                    // The initial-extract lane is full: hand the user back.
                                    let _ = runner.store().release_lease(&settings.node, &login).await;
                                    continue;
                                }
                            }
                        } else {
                            None
                        };
                        let runner = runner.clone();
                        let span = info_span!("user_sync", user = %login, initial);
                        let started_at = chrono::Utc::now().to_rfc3339();
                        let task_login = login.clone();
                        let task = running.spawn(
                            async move {
                                let _slot = slot;
                                let _lane = lane;
                                if let Err(error) = runner.run_claimed(&task_login).await {
                                    warn!(%error, "scheduled sync failed");
                                }
                            }
                            .instrument(span),
                        );
                        in_flight.insert(task.id(), (login, started_at));
                    }
                }
                Err(error) => warn!(%error, "cannot claim due users; retrying"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(settings.tick) => {}
            _ = runner.wake.notified() => {}
            _ = shutdown.changed() => {}
        }
    }
    info!(running = running.len(), "scheduler stopping; letting running syncs finish");
    let drained = tokio::time::timeout(settings.shutdown_deadline, async {
        while let Some(joined) = running.join_next_with_id().await {
            in_flight.remove(&joined.map_or_else(|error| error.id(), |(id, ())| id));
        }
    })
    .await;
    if drained.is_err() {
        warn!(aborted = running.len(), "shutdown deadline passed; aborting the remaining syncs");
        running.abort_all();
        let mut interrupted = Vec::new();
        while let Some(joined) = running.join_next_with_id().await {
            match joined {
                Ok((id, ())) => {
                    in_flight.remove(&id);
                }
                Err(error) => interrupted.extend(in_flight.remove(&error.id())),
            }
        }
        checkpoint_interrupted(&runner, &interrupted).await;
    }
}

/// Exchange streaming notifications as a trigger: a change in a user's mailbox makes the user
/// due now, so an Outlook edit reaches Siebel within seconds instead of at the next interval.
/// The set of watched mailboxes follows the user map (checked every `refresh` and whenever
/// it changes). Polling on the interval stays the fallback when notifications are lost.
///
/// Changes are applied as differences: added mailboxes are watched as a new group, and only a
/// group holding a removed mailbox is watched again without it, so adding one user to
/// thousands subscribes one mailbox, not all of them again.
pub async fn watch_exchange(
    runner: Arc<Runner>,
    ews: crate::exchange::ews::EwsClient,
    graph: Option<(crate::exchange::graph::GraphClient, crate::exchange::graph::GraphWebhook)>,
    refresh: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    use crate::domain::ExchangeBackend;
    let watchers = Watchers { ews, graph };
    let (merged, mut changes) = tokio::sync::mpsc::channel::<String>(1024);
    // Watched mailbox (lower case) → its backend and the users syncing with it.
    let mut logins_of: BTreeMap<String, (ExchangeBackend, Vec<String>)> = BTreeMap::new();
    let mut groups: Vec<WatchGroup> = Vec::new();
    let mut check = tokio::time::interval(refresh);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            Some(mailbox) = changes.recv() => {
                if let Some((_, logins)) = logins_of.get(&mailbox.to_lowercase()) {
                    if let Err(error) = runner.wake_users(logins).await {
                        warn!(%error, "cannot wake users after an Exchange notification");
                    }
                }
                continue;
            }
            _ = check.tick() => {}
            _ = runner.users_changed.notified() => {}
            _ = shutdown.changed() => return,
        }
        let users = match runner.store().users().await {
            Ok(users) => users,
            Err(error) => {
                warn!(%error, "cannot read the user map for Exchange notifications; retrying");
                continue;
            }
        };
        let mut wanted: BTreeMap<String, (ExchangeBackend, Vec<String>)> = BTreeMap::new();
        // Mailboxes on Graph are watched only when Graph can reach our webhook; otherwise
        // they are polled (delta) on the interval.
        for user in users.iter().filter(|u| u.enabled && watchers.can_watch(u.backend)) {
            wanted.entry(user.mailbox.to_lowercase()).or_insert_with(|| (user.backend, Vec::new())).1.push(user.login.clone());
        }
        // Gone, or moved to the other backend: watched again (or no more).
        let removed: HashSet<&String> = logins_of
            .iter()
            .filter(|(m, (backend, _))| wanted.get(*m).is_none_or(|(now, _)| now != backend))
            .map(|(m, _)| m)
            .collect();
        if !removed.is_empty() {
            let mut rewatch: BTreeMap<ExchangeBackend, Vec<String>> = BTreeMap::new();
            groups.retain(|group| {
                if group.mailboxes.iter().any(|m| removed.contains(m)) {
                    let kept = group.mailboxes.iter().filter(|m| !removed.contains(m)).cloned();
                    rewatch.entry(group.backend).or_default().extend(kept);
                    false // dropping the group ends its watchers
                } else {
                    true
                }
            });
            for (backend, mailboxes) in rewatch.into_iter().filter(|(_, m)| !m.is_empty()) {
                groups.extend(WatchGroup::start(&watchers, backend, mailboxes, &merged));
            }
        }
        let mut added: BTreeMap<ExchangeBackend, Vec<String>> = BTreeMap::new();
        for (mailbox, (backend, _)) in &wanted {
            let fresh = logins_of.get(mailbox).is_none_or(|(before, _)| before != backend);
            if fresh {
                added.entry(*backend).or_default().push(mailbox.clone());
            }
        }
        for (backend, mailboxes) in added {
            info!(mailboxes = mailboxes.len(), ?backend, "watching Exchange mailboxes for changes");
            groups.extend(WatchGroup::start(&watchers, backend, mailboxes, &merged));
        }
        logins_of = wanted;
        runner.set_exchange_watched(logins_of.values().flat_map(|(_, logins)| logins.iter().cloned()).collect());
    }
}

/// What can watch mailboxes: EWS streaming notifications always, Graph change notifications
/// when a webhook Graph can reach is configured.
struct Watchers {
    ews: crate::exchange::ews::EwsClient,
    graph: Option<(crate::exchange::graph::GraphClient, crate::exchange::graph::GraphWebhook)>,
}

impl Watchers {
    fn can_watch(&self, backend: crate::domain::ExchangeBackend) -> bool {
        backend == crate::domain::ExchangeBackend::Ews || self.graph.is_some()
    }
}

/// Mailboxes watched together: one `EwsClient::watch` (or `GraphClient::watch`) whose
/// signals are forwarded to the watcher's channel. Dropping the group ends its watchers.
struct WatchGroup {
    backend: crate::domain::ExchangeBackend,
    mailboxes: Vec<String>,
    _forward: AbortOnDrop,
}

impl WatchGroup {
    fn start(
        watchers: &Watchers,
        backend: crate::domain::ExchangeBackend,
        mailboxes: Vec<String>,
        merged: &tokio::sync::mpsc::Sender<String>,
    ) -> Option<Self> {
        let mut signals = match (backend, &watchers.graph) {
            (crate::domain::ExchangeBackend::Ews, _) => watchers.ews.watch(mailboxes.clone()),
            (crate::domain::ExchangeBackend::Graph, Some((graph, webhook))) => graph.watch(webhook, mailboxes.clone()),
            (crate::domain::ExchangeBackend::Graph, None) => return None,
        };
        let merged = merged.clone();
        let forward = tokio::spawn(async move {
            while let Some(mailbox) = signals.recv().await {
                if merged.send(mailbox).await.is_err() {
                    return;
                }
            }
        });
        Some(Self { backend, mailboxes, _forward: AbortOnDrop(forward) })
    }
}

/// Siebel change detection as a trigger (SSSE's Dispatcher): every `every`, one query per
/// business component finds what changed since the last cycle and makes only the users it
/// concerns due now. The cursors are saved after the users are woken, so a crash re-reads.
pub async fn watch_siebel(
    runner: Arc<Runner>,
    mut dispatcher: crate::siebel::change_feed::Dispatcher,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let polled = dispatcher.poll().await;
        runner.siebel_detection_ok.store(polled.is_ok(), Ordering::Relaxed);
        match polled {
            Ok(report) => {
                let logins: Vec<String> = report.affected_logins.iter().cloned().collect();
                let woken = if logins.is_empty() { Ok(()) } else { runner.wake_users(&logins).await };
                match woken {
                    Ok(()) => {
                        if let Err(error) = dispatcher.commit(&report).await {
                            warn!(%error, "cannot save the Siebel change cursors; the next cycle re-reads");
                        }
                    }
                    Err(error) => warn!(%error, "cannot wake users after Siebel changes"),
                }
            }
            Err(error) => warn!(%error, "Siebel change detection failed; retrying next cycle"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
    }
}

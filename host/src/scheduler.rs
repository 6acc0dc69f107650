//! When users sync, and on which node: SSSE's Dispatcher and MaxTasks, with leases.
//!
//! Every node runs the same loop: claim the users that are due (their group's interval has
//! passed, or a change was detected for them) and not leased to another node, sync them
//! under a global cap of concurrent runs, renew the leases while running, then set each
//! user's next run. A failing user backs off exponentially; a user failing for a reason an
//! administrator must fix (bad credentials, unknown mailbox) is disabled after a number of
//! attempts, with the reason visible in the admin API. First runs (initial extracts) have a
//! lane of their own so one huge user never holds up the others.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use tracing::{Instrument as _, info, info_span, warn};

use crate::admin::Metrics;
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
}

impl Runner {
    pub fn new(engine: Engine, metrics: Arc<Metrics>, settings: SchedulerSettings) -> Arc<Self> {
        Arc::new(Self { engine, metrics, settings, wake: Notify::new(), users_changed: Notify::new() })
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
        let renewal = tokio::spawn(async move {
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
        });
        let outcome = self.engine.sync_user(login).await;
        renewal.abort();
        let interval = self.interval_of(login).await;
        let now = now_ms();
        match outcome {
            Ok(report) if report.status == "ok" => {
                self.metrics.observe(&report);
                self.store().finish_run(&self.settings.node, login, now + millis(interval), None).await?;
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

    async fn interval_of(&self, login: &str) -> Duration {
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
    if let Err(error) = runner.store().ensure_schedule().await {
        warn!(%error, "cannot prepare the schedule");
    }
    info!(node = %settings.node, max_concurrent = settings.max_concurrent, "scheduler started");
    while !*shutdown.borrow() {
        while running.try_join_next().is_some() {}
        let free = slots.available_permits();
        if free > 0 {
            let claimed = runner
                .store()
                .claim_due_users(&settings.node, now_ms(), runner.lease_ms(), i64::try_from(free).unwrap_or(1))
                .await;
            match claimed {
                Ok(logins) => {
                    for login in logins {
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
                        running.spawn(
                            async move {
                                let _slot = slot;
                                let _lane = lane;
                                if let Err(error) = runner.run_claimed(&login).await {
                                    warn!(%error, "scheduled sync failed");
                                }
                            }
                            .instrument(span),
                        );
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
        while running.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(aborted = running.len(), "shutdown deadline passed; aborting the remaining syncs");
        running.abort_all();
    }
}

/// Exchange streaming notifications as a trigger: a change in a user's mailbox makes the user
/// due now, so an Outlook edit reaches Siebel within seconds instead of at the next interval.
/// The set of watched mailboxes follows the user map (checked every `refresh`). Polling on
/// the interval stays the fallback when notifications are lost.
pub async fn watch_exchange(
    runner: Arc<Runner>,
    ews: crate::connectors::ews::EwsClient,
    refresh: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let users = match runner.store().users().await {
            Ok(users) => users,
            Err(error) => {
                warn!(%error, "cannot read the user map for Exchange notifications; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(refresh) => continue,
                    _ = shutdown.changed() => return,
                }
            }
        };
        let mut by_mailbox: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for user in users.iter().filter(|u| u.enabled) {
            by_mailbox.entry(user.mailbox.to_lowercase()).or_default().push(user.login.clone());
        }
        let mut changes = ews.watch(by_mailbox.keys().cloned().collect());
        let mut watching = !by_mailbox.is_empty();
        let mut check = tokio::time::interval(refresh);
        check.tick().await;
        loop {
            tokio::select! {
                changed = changes.recv(), if watching => {
                    let Some(mailbox) = changed else {
                        watching = false;
                        continue;
                    };
                    if let Some(logins) = by_mailbox.get(&mailbox.to_lowercase()) {
                        if let Err(error) = runner.wake_users(logins).await {
                            warn!(%error, "cannot wake users after an Exchange notification");
                        }
                    }
                }
                _ = check.tick() => {
                    let now: Vec<String> = match runner.store().users().await {
                        Ok(users) => users.iter().filter(|u| u.enabled).map(|u| u.mailbox.to_lowercase()).collect(),
                        Err(_) => continue,
                    };
                    let mut now = now;
                    now.sort();
                    now.dedup();
                    if now != by_mailbox.keys().cloned().collect::<Vec<_>>() {
                        break; // the user map changed: watch the new set of mailboxes
                    }
                }
                _ = runner.users_changed.notified() => break,
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Siebel change detection as a trigger (SSSE's Dispatcher): every `every`, one query per
/// business component finds what changed since the last cycle and makes only the users it
/// concerns due now. The cursors are saved after the users are woken, so a crash re-reads.
pub async fn watch_siebel(
    runner: Arc<Runner>,
    mut dispatcher: crate::dispatcher::Dispatcher,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        match dispatcher.poll().await {
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

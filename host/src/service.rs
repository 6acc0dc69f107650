//! Puts the parts together: state store, connectors, plugins, engine, admin API, scheduler.
//!
//! `tandem serve` and `tandem demo` both start a [`Service`]; they differ only in where the
//! settings come from.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::admin::{self, AdminState, Metrics};
use crate::connectors::ews::{EwsClient, EwsConfig};
use crate::connectors::siebel::{SiebelClient, SiebelConfig};
use crate::engine::Engine;
use crate::plugin::PluginRuntime;
use crate::registry::PluginRegistry;
use crate::store::{Domains, Store, StoreError, User};

/// Everything a service needs to start.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    pub state_dir: PathBuf,
    pub siebel: SiebelConfig,
    pub ews: EwsConfig,
    pub admin_listen: SocketAddr,
    pub admin_token: String,
    /// None: no automatic syncs.
    pub schedule_interval: Option<Duration>,
    /// Users to create at start when missing.
    pub users: Vec<(String, String)>,
}

/// A running service. Dropping it stops the scheduler and the admin API.
pub struct Service {
    pub admin_url: String,
    pub state: AdminState,
    admin_server: Option<tandem_sim::RunningServer>,
    scheduler: Option<JoinHandle<()>>,
}

impl Service {
    pub async fn start(settings: ServiceSettings) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&settings.state_dir)
            .with_context(|| format!("cannot create the state folder {}", settings.state_dir.display()))?;
        let store = Store::open_dir(&settings.state_dir).await?;
        for (login, mailbox) in &settings.users {
            let user = User { login: login.clone(), mailbox: mailbox.clone(), enabled: true, domains: Domains::default() };
            match store.add_user(&user).await {
                Ok(()) | Err(StoreError::DuplicateUser(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let runtime = PluginRuntime::new(Some(settings.state_dir.join("plugin-cache")))
            .context("cannot start the plugin runtime")?;
        let plugins = PluginRegistry::with_defaults(&runtime)?;
        let siebel = SiebelClient::new(settings.siebel.clone()).context("bad Siebel settings")?;
        let ews = EwsClient::new(settings.ews.clone()).context("bad Exchange settings")?;
        let engine = Engine::new(store, siebel, ews, plugins);
        let state = AdminState::new(engine, Arc::new(Metrics::default()), &settings.admin_token);
        let admin_server = admin::serve(state.clone(), settings.admin_listen).await?;
        let admin_url = admin_server.base_url();
        let scheduler = settings.schedule_interval.map(|interval| tokio::spawn(schedule(state.clone(), interval)));
        info!(%admin_url, "Tandem is running");
        Ok(Self { admin_url, state, admin_server: Some(admin_server), scheduler })
    }

    pub async fn stop(mut self) {
        if let Some(scheduler) = self.scheduler.take() {
            scheduler.abort();
        }
        if let Some(server) = self.admin_server.take() {
            server.stop().await;
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(scheduler) = self.scheduler.take() {
            scheduler.abort();
        }
    }
}

/// Syncs every enabled user, then waits `interval`, forever. Users sync one after another,
/// each under its own lock, so a run never overlaps the next run of the same user.
async fn schedule(state: AdminState, interval: Duration) {
    loop {
        match state.engine.store().users().await {
            Ok(users) => {
                for user in users.into_iter().filter(|u| u.enabled) {
                    if let Err(error) = state.sync(&user.login).await {
                        warn!(%error, user = %user.login, "scheduled sync failed");
                    }
                }
            }
            Err(error) => warn!(%error, "cannot read the user map; retrying at the next interval"),
        }
        tokio::time::sleep(interval).await;
    }
}

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
use tokio::sync::watch;
use tracing::info;

use crate::admin::{self, AdminState};
use crate::metrics::Metrics;
use crate::exchange::ews::{EwsClient, EwsConfig};
use crate::siebel::{SiebelClient, SiebelConfig};
use crate::siebel::change_feed::{Dispatcher, DispatcherConfig};
use crate::engine::Engine;
use crate::plugin::PluginRuntime;
use crate::registry::PluginRegistry;
use crate::scheduler::{self, Runner, SchedulerSettings};
use crate::domain::{Domains, User};
use crate::store::{Store, StoreError};

/// Marks [`ServiceSettings::admin_token`] as the token's SHA-256 digest (hex) rather than
/// the token.
pub const ADMIN_TOKEN_DIGEST_PREFIX: &str = "sha256:";

/// The digest the admin API checks tokens against, from [`ServiceSettings::admin_token`].
pub fn admin_token_digest(setting: &str) -> anyhow::Result<[u8; 32]> {
    match setting.strip_prefix(ADMIN_TOKEN_DIGEST_PREFIX) {
        Some(hex) => crate::secrets::parse_token_digest(hex).map_err(|why| anyhow::anyhow!("bad admin token digest: {why}")),
        None => Ok(crate::secrets::token_digest(setting)),
    }
}

/// Everything a service needs to start.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    pub state_dir: PathBuf,
    pub siebel: SiebelConfig,
    pub ews: EwsConfig,
    pub admin_listen: SocketAddr,
    /// The admin listener's certificate and key (`[admin] tls_cert_file`, `tls_key_file`):
    /// it serves HTTPS when given, plain HTTP when None.
    pub admin_tls: Option<admin::AdminTlsFiles>,
    /// `[siebel] view_mode`: the `ViewMode` of every Siebel request.
    pub siebel_view_mode: String,
    /// `[siebel] time_zone`: the time zone Siebel reads and writes date-times in.
    pub siebel_time_zone: chrono_tz::Tz,
    /// OAuth 2.0 for Siebel (`[siebel] auth = "oauth"`); None: Basic with the password.
    pub siebel_oauth: Option<crate::siebel::OAuth2Config>,
    /// OAuth 2.0 for EWS (`[exchange] auth = "oauth"`).
    pub ews_oauth: Option<crate::oauth::TokenEndpoint>,
    /// The admin bearer token, or `sha256:` and its digest in hex
    /// ([`ADMIN_TOKEN_DIGEST_PREFIX`]) so that the plain token need not be known.
    pub admin_token: String,
    /// None: no automatic syncs.
    pub schedule_interval: Option<Duration>,
    /// Node name, caps, groups, leases; `default_interval` is taken from `schedule_interval`.
    pub scheduler: SchedulerSettings,
    /// PostgreSQL URL when several nodes share the state; SQLite in `state_dir` when None.
    pub database_url: Option<String>,
    /// Users to create at start when missing.
    pub users: Vec<UserSeed>,
    /// The `[sync]` rules: the mass-delete guard and initial-extract matching.
    pub sync: crate::engine::SyncRules,
    /// Exchange Online, for users on Graph.
    pub graph: Option<crate::exchange::graph::GraphConfig>,
    /// The public base URL at which Graph reaches this service's webhook (`[graph]
    /// notification_url`); None: users on Graph are polled through delta only.
    pub graph_notification_url: Option<String>,
}

impl ServiceSettings {
    /// The settings of `tandem serve` from a checked configuration; secrets are read here
    /// (an error names the key, never the value).
    pub fn from_config(config: &crate::config::Config) -> anyhow::Result<Self> {
        let secret = |s: &crate::config::Secret, what: &str| s.resolve().map_err(|why| anyhow::anyhow!("{what}: {why}"));
        let ews_auth = config.exchange.auth().map_err(|problem| anyhow::anyhow!("{problem}"))?;
        Ok(Self {
            state_dir: config.state.dir.clone(),
            siebel: SiebelConfig {
                base_url: config.siebel.url.clone(),
                user: config.siebel.user.clone(),
                // With OAuth the password is not used and need not be given.
                password: match config.siebel.auth {
                    crate::config::SiebelAuth::Basic => secret(&config.siebel.password, "siebel.password")?,
                    crate::config::SiebelAuth::OAuth => String::new(),
                },
                transport: config.siebel.transport(),
            },
            ews: EwsConfig {
                endpoint: config.exchange.url.clone(),
                user: config.exchange.user.clone(),
                // With OAuth the app's secret signs in, not a password.
                password: match ews_auth {
                    crate::exchange::ews::EwsAuth::OAuth => String::new(),
                    _ => secret(&config.exchange.password, "exchange.password")?,
                },
                auth: ews_auth,
                transport: config.exchange.transport(),
            },
            admin_listen: config.admin.listen,
            admin_tls: config.admin.tls_files(),
            siebel_view_mode: config.siebel.view_mode.clone(),
            siebel_time_zone: config.siebel.zone().map_err(|problem| anyhow::anyhow!("{problem}"))?,
            siebel_oauth: config.siebel.oauth2().map_err(|problem| anyhow::anyhow!("{problem}"))?,
            ews_oauth: config.exchange.oauth2().map_err(|problem| anyhow::anyhow!("{problem}"))?,
            admin_token: config.admin.credential().map_err(|problem| anyhow::anyhow!("{problem}"))?.service_setting(),
            schedule_interval: (!config.schedule.manual).then(|| Duration::from_secs(config.schedule.interval_seconds)),
            scheduler: config.schedule.scheduler_settings(config.node.name.as_deref()),
            database_url: config.state.database_url().map_err(|why| anyhow::anyhow!("state.database_url: {why}"))?,
            sync: config.sync.rules(),
            graph: config.graph.as_ref().map(|graph| graph.connector()).transpose().map_err(|problem| anyhow::anyhow!("{problem}"))?,
            graph_notification_url: config.graph.as_ref().and_then(|g| g.notification_url.clone()),
            users: config
                .users
                .iter()
                .map(|u| UserSeed {
                    login: u.login.clone(),
                    mailbox: u.mailbox.clone(),
                    enabled: u.enabled,
                    group: u.group.clone(),
                    domains: config.user_domains(u),
                    backend: u.backend,
                    extract_start_date: u.extract_start_date.clone(),
                })
                .collect(),
        })
    }
}

/// A user of the configuration file: created at start when missing.
#[derive(Debug, Clone)]
pub struct UserSeed {
    pub login: String,
    pub mailbox: String,
    pub enabled: bool,
    pub group: Option<String>,
    /// Sync levels from the file (group, then user); they replace the stored ones at start.
    pub domains: Option<Domains>,
    /// EWS or Graph.
    pub backend: crate::domain::ExchangeBackend,
    /// The user's own ExtractStartDate; the file's value replaces the stored one at start.
    pub extract_start_date: Option<String>,
}

/// A running service. Dropping it stops the scheduler and the admin API.
pub struct Service {
    pub admin_url: String,
    pub state: AdminState,
    admin_server: Option<admin::AdminServer>,
    scheduler: Option<JoinHandle<()>>,
    plugin_watcher: JoinHandle<()>,
    shutdown: watch::Sender<bool>,
}

impl Service {
    pub async fn start(settings: ServiceSettings) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&settings.state_dir)
            .with_context(|| format!("cannot create the state folder {}", settings.state_dir.display()))?;
        let store = match &settings.database_url {
            Some(url) => Store::open_url(url).await?,
            None => Store::open_dir(&settings.state_dir).await?,
        };
        if store.backend() == crate::store::Backend::Sqlite {
            // One process owns an embedded store: leases left by one that was killed are void.
            let released = store.release_all_leases().await?;
            if released > 0 {
                tracing::warn!(released, "released leases left by a process that did not stop cleanly");
            }
        }
        for seed in &settings.users {
            let user = User {
                login: seed.login.clone(),
                mailbox: seed.mailbox.clone(),
                enabled: seed.enabled,
                domains: seed.domains.clone().unwrap_or_default(),
                backend: seed.backend,
                extract_start_date: seed.extract_start_date.clone(),
            };
            match store.add_user(&user).await {
                Ok(()) => {
                    if let Some(group) = &seed.group {
                        store.update_user(&user, group).await?;
                    }
                }
                Err(StoreError::DuplicateUser(_)) => {
                    // Levels the file sets (by group or for the user) win at every start.
                    let stored = store.user(&seed.login).await?;
                    let domains = seed.domains.clone().unwrap_or_else(|| stored.domains.clone());
                    let extract_start_date = seed.extract_start_date.clone().or_else(|| stored.extract_start_date.clone());
                    if domains != stored.domains || extract_start_date != stored.extract_start_date {
                        let (group, _) = store.user_extras(&seed.login).await?;
                        store.update_user(&User { domains, extract_start_date, ..stored }, &group).await?;
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        let runtime = PluginRuntime::new(Some(settings.state_dir.join("plugin-cache")))
            .context("cannot start the plugin runtime")?;
        let plugins = PluginRegistry::with_plugins_dir(&runtime, crate::registry::PluginDirSettings::for_state_dir(&settings.state_dir)?)?;
        let plugin_watcher = plugins.watch();
        let mut siebel =
            SiebelClient::new(settings.siebel.clone())
            .context("bad Siebel settings")?
            .with_view_mode(&settings.siebel_view_mode)
            .with_time_zone(settings.siebel_time_zone);
        if let Some(oauth) = &settings.siebel_oauth {
            siebel = siebel.with_oauth2(oauth.clone()).context("bad [siebel.oauth] settings")?;
        }
        let mut ews = EwsClient::new(settings.ews.clone()).context("bad Exchange settings")?;
        if let Some(endpoint) = &settings.ews_oauth {
            ews = ews.with_oauth2(endpoint.clone()).context("bad [exchange.oauth] settings")?;
        }
        let dispatcher = Dispatcher::new(siebel.clone(), store.clone(), DispatcherConfig::default())
            .context("cannot set up Siebel change detection")?;
        let (siebel_requests, ews_requests) = (siebel.remote_requests(), ews.remote_requests());
        // Credentials whose expiry is known are watched in /metrics and the status.
        let mut credential_expiries: Vec<_> = siebel.credential_expiry().into_iter().collect();
        let mut engine = Engine::new(store, siebel, ews.clone(), plugins).with_rules(settings.sync.clone());
        // Graph change notifications need the connector and a URL Graph can reach.
        let mut graph_watch = None;
        let mut graph_requests = None;
        if let Some(graph) = &settings.graph {
            let client = crate::exchange::graph::GraphClient::new(graph.clone())
                .context("cannot set up the Graph connector; check [graph]")?;
            if let Some(url) = &settings.graph_notification_url {
                let webhook = crate::exchange::graph::GraphWebhook::new(url)
                    .context("bad [graph] notification_url")?;
                graph_watch = Some((client.clone(), webhook));
            }
            graph_requests = Some(client.remote_requests());
            credential_expiries.extend(client.credential_expiry());
            engine = engine.with_graph(client);
        }
        let mut scheduler_settings = settings.scheduler.clone();
        if let Some(interval) = settings.schedule_interval {
            scheduler_settings.default_interval = interval;
        }
        let mut metrics = Metrics::new(siebel_requests, ews_requests).with_credential_expiries(credential_expiries);
        if let Some(graph_requests) = graph_requests {
            metrics = metrics.with_graph_requests(graph_requests);
        }
        let runner = Runner::new(engine, Arc::new(metrics), scheduler_settings);
        let state = AdminState::with_token_digest(runner.clone(), admin_token_digest(&settings.admin_token)?);
        let webhook_routes = graph_watch.as_ref().map(|(_, webhook)| webhook.router());
        let admin_tls = match &settings.admin_tls {
            Some(files) => Some(
                admin::server_tls(&files.cert_file, &files.key_file)
                    .map_err(|e| anyhow::anyhow!("cannot serve the admin API over TLS: {e}; {}", e.hint()))?,
            ),
            None => None,
        };
        let admin_server = admin::serve(state.clone(), settings.admin_listen, webhook_routes, admin_tls).await?;
        let admin_url = admin_server.base_url();
        let (shutdown, shutdown_seen) = watch::channel(false);
        let scheduler = settings.schedule_interval.map(|interval| {
            // Siebel changes are looked for more often than users are polled, never more
            // than every 2 s.
            let every = runner
                .settings
                .change_detection_every
                .unwrap_or_else(|| (interval / 4).clamp(Duration::from_secs(2), Duration::from_secs(30)));
            tokio::spawn(scheduler::watch_siebel(runner.clone(), dispatcher, every, shutdown_seen.clone()));
            tokio::spawn(scheduler::watch_exchange(
                runner.clone(),
                ews.with_watch_connection(runner.settings.watch_connection),
                graph_watch,
                runner.settings.watch_refresh,
                shutdown_seen.clone(),
            ));
            tokio::spawn(scheduler::run(runner.clone(), shutdown_seen))
        });
        info!(%admin_url, node = %runner.settings.node, "Tandem is running");
        Ok(Self { admin_url, state, admin_server: Some(admin_server), scheduler, plugin_watcher, shutdown })
    }

    /// Stops taking new work, lets running syncs finish (up to the shutdown deadline), then
    /// stops the admin API.
    pub async fn stop(mut self) {
        self.plugin_watcher.abort();
        let _ = self.shutdown.send(true);
        if let Some(scheduler) = self.scheduler.take() {
            let _ = scheduler.await;
        }
        if let Some(server) = self.admin_server.take() {
            server.stop().await;
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.plugin_watcher.abort();
        if let Some(scheduler) = self.scheduler.take() {
            scheduler.abort();
        }
    }
}

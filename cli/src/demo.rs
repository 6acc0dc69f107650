//! `tandem demo`: both emulators, seeded data and a service, all on loopback (over HTTPS
//! with `--tls`).
//!
//! The end-to-end tests start the same thing (without the seed) so that what they prove is
//! what a newcomer runs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Map, Value as Json, json};
use tandem_sim::ews::{AuthScheme, EwsSim, EwsSimConfig};
use tandem_sim::graph::{GraphSim, GraphSimConfig};
use tandem_sim::siebel::{SiebelSim, SiebelSimConfig};
use tandem_sim::{Credentials, RunningServer, SimTls};

use tandem_host::exchange::ews::{EwsAuth, EwsConfig};
use tandem_host::exchange::graph::GraphConfig;
use tandem_host::oauth::{SecretPlacement, TokenEndpoint};
use tandem_host::siebel::SiebelConfig;
use tandem_host::transport::Transport;
use tandem_host::scheduler::SchedulerSettings;
use tandem_host::service::{Service, ServiceSettings, UserSeed};

/// How to start a demo.
#[derive(Debug, Clone, Default)]
pub struct DemoOptions {
    /// State folder; a fresh temporary one when None.
    pub state_dir: Option<PathBuf>,
    /// No automatic syncs.
    pub manual: bool,
    /// Interval of automatic syncs (10 s when None).
    pub interval: Option<Duration>,
    /// Seed users and data (the demo does, tests start empty).
    pub seed: bool,
    /// Where the EWS emulator writes every request and reply, when set.
    pub ews_capture_dir: Option<PathBuf>,
    /// Serve the emulators over HTTPS (a CA made at start, its PEM in the state folder, the
    /// service trusting it through ca_file).
    pub tls: bool,
    /// How the service signs in to EWS; the EWS emulator offers this scheme only (with NTLM
    /// or Negotiate the account is `EXAMPLE\svc-tandem`).
    pub ews_auth: EwsAuth,
}

/// The time zone of the demo's Siebel integration user (Eastern Time, with daylight saving).
pub const DEMO_SIEBEL_TIME_ZONE: chrono_tz::Tz = chrono_tz::America::New_York;

/// A running demo: emulators, service, and the lines the contract prints.
pub struct Demo {
    pub siebel_sim: SiebelSim,
    pub ews_sim: EwsSim,
    pub graph_sim: GraphSim,
    /// `http://127.0.0.1:PORT/v1.0` and its token endpoint.
    pub graph_url: String,
    pub graph_token_url: String,
    graph_server: RunningServer,
    pub siebel_url: String,
    pub siebel_auth: Credentials,
    pub ews_url: String,
    pub ews_auth: Credentials,
    pub admin_url: String,
    pub admin_token: String,
    /// With `tls`: the CA's PEM, which the service trusts (`ca: PATH`).
    pub ca_file: Option<PathBuf>,
    pub service: Service,
    siebel_server: RunningServer,
    ews_server: RunningServer,
    _temp_state: Option<tempfile::TempDir>,
}

/// The users the demo seeds: Siebel login, mailbox, name.
pub const DEMO_USERS: &[(&str, &str, &str, &str)] = &[
    ("JSMITH", "jsmith@example.com", "John", "Smith"),
    ("AWONG", "awong@example.com", "Alice", "Wong"),
    ("MGARCIA", "mgarcia@example.com", "Maria", "Garcia"),
];

const LOOPBACK: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

impl Demo {
    pub async fn start(options: DemoOptions) -> anyhow::Result<Self> {
        let (state_dir, temp_state) = match options.state_dir {
            Some(dir) => (dir, None),
            None => {
                let temp = tempfile::Builder::new().prefix("tandem-demo-").tempdir()?;
                (temp.path().to_path_buf(), Some(temp))
            }
        };
        let siebel_auth = Credentials::new("SADMIN", random_secret());
        let ews_user = if options.ews_auth.is_connection_bound() { r"EXAMPLE\svc-tandem" } else { "svc-tandem@example.com" };
        let ews_auth = Credentials::new(ews_user, random_secret());
        let ews_scheme = match options.ews_auth {
            EwsAuth::Ntlm => AuthScheme::Ntlm,
            EwsAuth::Negotiate => AuthScheme::Negotiate,
            EwsAuth::OAuth => AuthScheme::Bearer,
            _ => AuthScheme::Basic,
        };
        // The integration user is not on UTC, as at most sites: every date-time crosses a
        // time zone on its way between Siebel and Exchange.
        let siebel_sim = SiebelSim::new(SiebelSimConfig {
            credentials: siebel_auth.clone(),
            time_zone: DEMO_SIEBEL_TIME_ZONE,
            ..Default::default()
        })?;
        let ews_sim = EwsSim::new(EwsSimConfig {
            credentials: ews_auth.clone(),
            auth: vec![ews_scheme],
            capture_dir: options.ews_capture_dir.clone(),
            ..Default::default()
        })?;
        // Exchange Online beside on-premises: a user with `"backend": "graph"` syncs here.
        let graph_sim = GraphSim::new(GraphSimConfig::default())?;
        let tls = match options.tls {
            true => {
                let tls = SimTls::generate().context("cannot make the emulators' certificates")?;
                let ca_file = tls.write_ca(&state_dir, "demo-ca.pem").context("cannot write the emulators' CA")?;
                Some((tls, ca_file))
            }
            false => None,
        };
        let (siebel_server, ews_server, graph_server) = match &tls {
            Some((tls, _)) => (
                siebel_sim.serve_tls(LOOPBACK, tls).await.context("cannot start the Siebel emulator")?,
                ews_sim.serve_tls(LOOPBACK, tls).await.context("cannot start the EWS emulator")?,
                graph_sim.serve_tls(LOOPBACK, tls).await.context("cannot start the Graph emulator")?,
            ),
            None => (
                siebel_sim.serve(LOOPBACK).await.context("cannot start the Siebel emulator")?,
                ews_sim.serve(LOOPBACK).await.context("cannot start the EWS emulator")?,
                graph_sim.serve(LOOPBACK).await.context("cannot start the Graph emulator")?,
            ),
        };
        let ca_file = tls.map(|(_, ca_file)| ca_file);
        let transport = Transport { ca_file: ca_file.clone(), proxy: None };
        let graph_url = format!("{}/v1.0", graph_server.base_url());
        let graph_token_url = graph_sim.token_url(&graph_server.base_url());
        let siebel_url = format!("{}/siebel/v1.0", siebel_server.base_url());
        let ews_url = format!("{}/EWS/Exchange.asmx", ews_server.base_url());

        let sync_lists = if options.seed { seed(&siebel_sim, &ews_sim)? } else { Vec::new() };
        let users = sync_lists
            .iter()
            .filter_map(|(login, _)| DEMO_USERS.iter().find(|u| u.0 == login))
            .map(|(login, mailbox, _, _)| UserSeed {
                login: login.to_string(),
                mailbox: mailbox.to_string(),
                enabled: true,
                group: None,
                domains: None,
                backend: Default::default(),
                extract_start_date: None,
            })
            .collect();
        let admin_token = random_secret();
        let service = Service::start(ServiceSettings {
            state_dir,
            siebel: SiebelConfig {
                base_url: siebel_url.clone(),
                user: siebel_auth.user.clone(),
                password: siebel_auth.password.clone(),
                transport: transport.clone(),
            },
            ews: EwsConfig {
                endpoint: ews_url.clone(),
                user: ews_auth.user.clone(),
                password: ews_auth.password.clone(),
                auth: options.ews_auth,
                transport: transport.clone(),
            },
            admin_listen: LOOPBACK,
            admin_tls: None,
            siebel_view_mode: "All".to_owned(),
            siebel_time_zone: DEMO_SIEBEL_TIME_ZONE,
            siebel_oauth: None,
            // `--ews-auth oauth`: the app gets tokens from the EWS emulator's token endpoint.
            ews_oauth: (options.ews_auth == EwsAuth::OAuth).then(|| TokenEndpoint {
                section: "exchange",
                token_url: format!("{}{}", ews_server.base_url(), tandem_sim::ews::oauth::TOKEN_PATH),
                client_id: ews_sim.oauth_app().user.clone(),
                credential: ews_sim.oauth_app().password.clone().into(),
                scope: Some(tandem_sim::ews::oauth::EWS_SCOPE.to_owned()),
                secret_placement: SecretPlacement::Body,
            }),
            admin_token: admin_token.clone(),
            schedule_interval: (!options.manual).then_some(options.interval.unwrap_or(Duration::from_secs(10))),
            scheduler: SchedulerSettings::default(),
            database_url: None,
            users,
            sync: tandem_host::engine::SyncRules::default(),
            graph: Some(GraphConfig {
                base_url: graph_url.clone(),
                token_url: graph_token_url.clone(),
                client_id: graph_sim.credentials().user.clone(),
                credential: graph_sim.credentials().password.clone().into(),
                limits: Default::default(),
                transport,
            }),
            graph_notification_url: None,
        })
        .await?;
        // "Add To Sync List" for the seeded contacts, through the store the admin API uses.
        for (login, ids) in &sync_lists {
            for id in ids {
                service.state.engine.store().add_to_sync_list(login, id).await?;
            }
        }
        Ok(Self {
            siebel_sim,
            ews_sim,
            graph_sim,
            graph_url,
            graph_token_url,
            graph_server,
            siebel_url,
            siebel_auth,
            ews_url,
            ews_auth,
            admin_url: service.admin_url.clone(),
            admin_token,
            ca_file,
            service,
            siebel_server,
            ews_server,
            _temp_state: temp_state,
        })
    }

    /// The contract's endpoint block, then the Graph emulator's lines (as `tandem sim graph`
    /// prints them), then `ca: PATH` when the emulators serve HTTPS.
    pub fn endpoint_lines(&self) -> String {
        let ca = match &self.ca_file {
            Some(path) => format!("ca: {}\n", path.display()),
            None => String::new(),
        };
        format!(
            "siebel: {}\nsiebel-auth: {}\news: {}\news-auth: {}\nadmin: {}\nadmin-token: {}\ngraph: {}\ngraph-auth: {}\ngraph-token: {}\n{ca}",
            self.siebel_url,
            self.siebel_auth.display(),
            self.ews_url,
            self.ews_auth.display(),
            self.admin_url,
            self.admin_token,
            self.graph_url,
            self.graph_sim.credentials().display(),
            self.graph_token_url,
        )
    }

    pub async fn stop(self) {
        self.service.stop().await;
        self.siebel_server.stop().await;
        self.ews_server.stop().await;
        self.graph_server.stop().await;
    }
}

fn random_secret() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn fields(pairs: &[(&str, &str)]) -> Map<String, Json> {
    pairs.iter().map(|(k, v)| (k.to_string(), json!(v))).collect()
}

/// Seeds the demo data: per user an employee record, contacts in Siebel, a contact made in
/// Outlook, and activities (appointments and tasks) on both sides. Returns each user's
/// contacts to put on their sync list.
fn seed(siebel: &SiebelSim, ews: &EwsSim) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    let mut sync_lists = Vec::new();
    const CONTACTS: &[(&str, &str, &str, &str, &str)] = &[
        ("Ada", "Lovelace", "ada.lovelace@analytical.example", "Chief Engineer", "+44 20 7946 0001"),
        ("Grace", "Hopper", "grace.hopper@navy.example", "Rear Admiral", "+1 202 555 0102"),
        ("Alan", "Turing", "alan.turing@bletchley.example", "Cryptanalyst", "+44 1908 640404"),
        ("Katherine", "Johnson", "k.johnson@nasa.example", "Mathematician", "+1 757 555 0188"),
    ];
    for (index, (login, mailbox, first, last)) in DEMO_USERS.iter().enumerate() {
        let employee_id = siebel.insert(
            "Employee",
            "Employee",
            fields(&[
                ("First Name", first),
                ("Last Name", last),
                ("Login Name", login),
                ("EMail Addr", mailbox),
                ("Job Title", "Account Manager"),
            ]),
        )?;
        let mut sync_list = Vec::new();
        for offset in 0..2 {
            let (first, last, email, title, phone) = CONTACTS[(index + offset) % CONTACTS.len()];
            let id = siebel.insert(
                "Contact",
                "Contact",
                fields(&[
                    ("First Name", first),
                    ("Last Name", last),
                    ("Email Address", email),
                    ("Job Title", title),
                    ("Work Phone #", phone),
                    ("Primary Account Name", "Demo Accounts Inc."),
                ]),
            )?;
            sync_list.push(id);
        }
        sync_lists.push((login.to_string(), sync_list));
        siebel.insert(
            "Action",
            "Action",
            fields(&[
                ("Type", "Meeting"),
                ("Display", "Calendar and Activities"),
                ("Description", "Quarterly account review"),
                ("Planned", "12/01/2026 15:00:00"),
                ("Planned Completion", "12/01/2026 16:00:00"),
                ("Primary Owner Id", &employee_id),
            ]),
        )?;
        siebel.insert(
            "Action",
            "Action",
            fields(&[
                ("Type", "To Do"),
                ("Display", "To Do and Activities"),
                ("Description", "Send the renewal quote"),
                ("Due", "12/03/2026 17:00:00"),
                ("Priority", "2-High"),
                ("Status", "Not Started"),
                ("Primary Owner Id", &employee_id),
            ]),
        )?;
        ews.create_contact(
            mailbox,
            &[
                ("GivenName", "Linus"),
                ("Surname", "Pauling"),
                ("EmailAddress1", "linus.pauling@caltech.example"),
                ("JobTitle", "Professor"),
            ],
        )?;
        ews.create_item(
            mailbox,
            "calendar",
            &[("Subject", "Lunch with a prospect"), ("Start", "2026-12-02T12:00:00Z"), ("End", "2026-12-02T13:00:00Z")],
        )?;
        ews.create_item(mailbox, "tasks", &[("Subject", "Prepare the pipeline report"), ("DueDate", "2026-12-04T17:00:00Z")])?;
    }
    Ok(sync_lists)
}

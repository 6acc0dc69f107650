//! `tandem doctor`: checks a deployment against its real servers before it syncs, and says
//! what to fix. It reads only: no record, item, folder or database row is written.
//!
//! Checks, one line each: the database; per endpoint (Siebel, its token endpoint, EWS, Graph
//! and its token endpoint) DNS, TCP and the TLS handshake with the endpoint's own trust,
//! the certificate's days to expiry; the sign-in schemes EWS offers against the configured
//! one; a sign-in to each server (EWS with impersonation of a mailbox, Graph with the app's
//! permissions on a mailbox); the Siebel business components and every Siebel field the
//! mapping plugins write, through the REST `describe` call.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use chrono::{TimeDelta, Utc};

use crate::config::{Config, SiebelAuth};
use crate::domain::{DomainSpec, Folder};
use crate::exchange::ews::{EwsClient, EwsError};
use crate::exchange::graph::{GraphClient, GraphError};
use crate::plugin::{CallContext, PluginRuntime};
use crate::record::{Fields, Value};
use crate::registry::{PluginDirSettings, PluginRegistry};
use crate::service::ServiceSettings;
use crate::siebel::{SiebelClient, SiebelError};
use crate::store::Store;
use crate::transport::{HandshakeError, Transport};

/// How long one network step (DNS, connect, handshake) may take.
const STEP_LIMIT: Duration = Duration::from_secs(10);
/// A server certificate expiring sooner than this is a warning.
const EXPIRY_WARNING: TimeDelta = TimeDelta::days(30);

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pass,
    /// Works, but an administrator should look (plain HTTP, a certificate expiring soon, a
    /// check that could not be made).
    Warn,
    Fail,
}

/// One check: what was checked, what was found, what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub status: Status,
    pub detail: String,
    /// What to change; empty when nothing is to be done.
    pub fix: String,
}

impl Check {
    fn pass(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { name: name.into(), status: Status::Pass, detail: detail.into(), fix: String::new() }
    }

    fn warn(name: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self { name: name.into(), status: Status::Warn, detail: detail.into(), fix: fix.into() }
    }

    fn fail(name: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self { name: name.into(), status: Status::Fail, detail: detail.into(), fix: fix.into() }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = match self.status {
            Status::Pass => "ok  ",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        };
        write!(f, "{mark} {}: {}", self.name, self.detail)?;
        if !self.fix.is_empty() {
            write!(f, " — fix: {}", self.fix)?;
        }
        Ok(())
    }
}

/// Every check made, in order.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    /// True when no check failed (warnings pass).
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|check| check.status != Status::Fail)
    }

    /// The check named `name`, if it was made.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|check| check.name == name)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for check in &self.checks {
            writeln!(f, "{check}")?;
        }
        Ok(())
    }
}

/// What to check beyond the configuration file.
#[derive(Debug, Clone, Default)]
pub struct DoctorOptions {
    /// A mailbox to sign in to (EWS impersonation, Graph permissions) when the file has no
    /// `[[users]]` on that backend.
    pub mailbox: Option<String>,
}

/// Runs every check of a checked configuration.
pub async fn run(config: &Config, options: &DoctorOptions) -> Report {
    let mut report = Report::default();
    report.checks.push(database(config).await);
    let settings = match ServiceSettings::from_config(config) {
        Ok(settings) => settings,
        Err(error) => {
            report.checks.push(Check::fail("configuration", format!("{error:#}"), "run `tandem check-config` and correct the file"));
            return report;
        }
    };

    report.checks.push(endpoint("siebel tls", "siebel", &config.siebel.url, &config.siebel.transport()).await);
    if let Some(oauth) = &settings.siebel_oauth {
        report.checks.push(endpoint("siebel token tls", "siebel.oauth", &oauth.token_url, &config.siebel.transport()).await);
    }
    let siebel = SiebelClient::new(settings.siebel.clone())
        .and_then(|client| match &settings.siebel_oauth {
            Some(oauth) => client.with_oauth2(oauth.clone()),
            None => Ok(client),
        })
        .map(|client| client.with_view_mode(&settings.siebel_view_mode).with_time_zone(settings.siebel_time_zone));
    match siebel {
        Ok(siebel) => {
            let signed_in = siebel_sign_in(&siebel, config).await;
            let ok = signed_in.status != Status::Fail;
            report.checks.push(signed_in);
            if ok {
                report.checks.extend(siebel_fields(&siebel, config).await);
            }
        }
        Err(error) => report.checks.push(Check::fail("siebel sign-in", error.to_string(), "correct [siebel]")),
    }

    let ews_mailbox = mailbox_for(config, crate::domain::ExchangeBackend::Ews, options);
    report.checks.push(endpoint("exchange tls", "exchange", &config.exchange.url, &config.exchange.transport()).await);
    report.checks.push(ews_schemes(config).await);
    report.checks.push(ews_sign_in(&settings, ews_mailbox.as_deref()).await);

    if let (Some(graph), Some(graph_config)) = (&config.graph, &settings.graph) {
        report.checks.push(endpoint("graph tls", "graph", &graph.url, &graph.transport()).await);
        report.checks.push(endpoint("graph token tls", "graph", &graph.token_url, &graph.transport()).await);
        let mailbox = mailbox_for(config, crate::domain::ExchangeBackend::Graph, options);
        report.checks.push(graph_sign_in(graph_config, mailbox.as_deref()).await);
    }
    report
}

/// The first enabled user of the file on `backend`, or the one given on the command line.
fn mailbox_for(config: &Config, backend: crate::domain::ExchangeBackend, options: &DoctorOptions) -> Option<String> {
    config
        .users
        .iter()
        .find(|user| user.backend == backend && user.enabled)
        .map(|user| user.mailbox.clone())
        .or_else(|| options.mailbox.clone())
}

async fn database(config: &Config) -> Check {
    const NAME: &str = "database";
    let url = match config.state.database_url() {
        Ok(url) => url,
        Err(why) => return Check::fail(NAME, format!("state.database_url: {why}"), "set the variable or state.database_url"),
    };
    match Store::inspect(url.as_deref(), &config.state.dir).await {
        Ok(state) if !state.exists => Check::pass(
            NAME,
            format!("SQLite in {} (not created yet; `tandem serve` creates it)", config.state.dir.display()),
        ),
        Ok(state) if state.unknown > 0 => Check::fail(
            NAME,
            format!("{:?}: {} migration(s) applied that this Tandem does not know", state.backend, state.unknown),
            "a newer Tandem has used this database; run that version, or restore a backup made before the upgrade",
        ),
        Ok(state) if state.pending > 0 => Check::pass(
            NAME,
            format!("{:?}: reachable; {} migration(s) to apply (`tandem serve` applies them at start)", state.backend, state.pending),
        ),
        Ok(state) => Check::pass(NAME, format!("{:?}: reachable, schema up to date ({} migrations)", state.backend, state.applied)),
        Err(error) => Check::fail(
            NAME,
            error.to_string(),
            "check state.database_url (user, password, host, database; sslmode and sslrootcert for TLS) or that state.dir is readable",
        ),
    }
}

/// DNS, TCP and the TLS handshake of one endpoint URL, with its certificate's expiry.
async fn endpoint(name: &str, section: &str, url: &str, transport: &Transport) -> Check {
    let parsed = match reqwest::Url::parse(url) {
        Ok(parsed) => parsed,
        Err(error) => return Check::fail(name, format!("'{url}' is not a URL ({error})"), format!("correct the URL in [{section}]")),
    };
    let (Some(host), Some(port)) = (parsed.host_str(), parsed.port_or_known_default()) else {
        return Check::fail(name, format!("'{url}' names no host"), format!("correct the URL in [{section}]"));
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let proxied = transport.proxy.as_deref().is_some_and(|p| !p.trim().is_empty())
        || (std::env::var_os("HTTPS_PROXY").or_else(|| std::env::var_os("https_proxy")).is_some() && !no_proxy(host));
    if proxied {
        return Check::warn(
            name,
            format!("{host}:{port} is reached through a proxy; its certificate is checked by the sign-in below"),
            String::new(),
        );
    }
    if parsed.scheme() == "http" {
        return match tokio::time::timeout(STEP_LIMIT, tokio::net::TcpStream::connect((host, port))).await {
            Ok(Ok(_)) => Check::warn(
                name,
                format!("{host}:{port} answers, over plain HTTP: credentials and data cross the network in clear"),
                format!("use https:// in [{section}]'s URL"),
            ),
            Ok(Err(error)) => Check::fail(name, format!("cannot connect to {host}:{port}: {error}"), format!("check the host and port in [{section}] and the network")),
            Err(_) => Check::fail(name, format!("cannot connect to {host}:{port}: timed out"), "check the network and firewalls"),
        };
    }
    match crate::transport::handshake(transport, host, port, STEP_LIMIT).await {
        Ok(handshake) => {
            let expiry = handshake.chain.first().and_then(|leaf| crate::transport::not_after(leaf));
            match expiry {
                Some(not_after) => {
                    let left = not_after - Utc::now();
                    let detail = format!(
                        "{host}:{port}: {}, certificate verified, valid until {} ({} days)",
                        handshake.protocol,
                        not_after.format("%Y-%m-%d"),
                        left.num_days()
                    );
                    if left < EXPIRY_WARNING {
                        Check::warn(name, detail, "have the server's certificate renewed before it expires")
                    } else {
                        Check::pass(name, detail)
                    }
                }
                None => Check::pass(name, format!("{host}:{port}: {}, certificate verified", handshake.protocol)),
            }
        }
        Err(HandshakeError::Tls(failure)) => {
            let hint = failure.hint(section);
            Check::fail(name, format!("{host}:{port}: {failure}"), hint)
        }
        Err(HandshakeError::Settings(error)) => Check::fail(name, error.to_string(), error.hint()),
        Err(error) => Check::fail(name, error.to_string(), format!("check the host name and port in [{section}], DNS and firewalls")),
    }
}

/// Whether `NO_PROXY` exempts `host`.
fn no_proxy(host: &str) -> bool {
    let list = std::env::var("NO_PROXY").or_else(|_| std::env::var("no_proxy")).unwrap_or_default();
    list.split(',').map(str::trim).filter(|entry| !entry.is_empty()).any(|entry| {
        entry == "*" || host == entry.trim_start_matches('.') || host.ends_with(&format!(".{}", entry.trim_start_matches('.')))
    })
}

async fn siebel_sign_in(siebel: &SiebelClient, config: &Config) -> Check {
    const NAME: &str = "siebel sign-in";
    let user = &config.siebel.user;
    let how = match config.siebel.auth {
        SiebelAuth::Basic => "Basic",
        SiebelAuth::OAuth => "an OAuth bearer token",
    };
    let spec = format!("[Login Name] ~= {}", crate::siebel::searchspec_literal(user));
    match siebel.query_fields("Employee", "Employee", Some(&spec), &["Login Name"]).await {
        Ok(found) if found.is_empty() => Check::warn(
            NAME,
            format!("signed in with {how}, but no Employee has the login '{user}'"),
            "the integration user should be an Employee with a position (Siebel shows some data only to those)",
        ),
        Ok(_) => Check::pass(NAME, format!("signed in as {user} with {how}")),
        Err(error @ SiebelError::Unauthorized { .. }) => Check::fail(
            NAME,
            error.to_string(),
            match config.siebel.auth {
                SiebelAuth::Basic => "check [siebel] user and password, and that the Application Interface's REST profile takes Basic",
                SiebelAuth::OAuth => "check [siebel.oauth] client_id, client_secret and token_url, and that the REST profile takes OAuth",
            },
        ),
        Err(error) => Check::fail(NAME, error.to_string(), "check [siebel] url (it ends in /siebel/v1.0) and that the REST API is deployed"),
    }
}

/// Each domain's business component, and the Siebel fields its mapping writes.
async fn siebel_fields(siebel: &SiebelClient, config: &Config) -> Vec<Check> {
    let registry = match mapping_plugins(config) {
        Ok(registry) => Some(registry),
        Err(error) => {
            return vec![Check::fail("plugins", format!("{error:#}"), "check the packages in the plugins folder (`tandem plugin list`)")];
        }
    };
    let mut checks = Vec::new();
    let mut described: std::collections::BTreeMap<(&str, &str), Result<BTreeSet<String>, SiebelError>> = Default::default();
    for spec in crate::domain::ALL {
        let key = (spec.bus_object, spec.bus_comp);
        if !described.contains_key(&key) {
            described.insert(key, siebel.describe(spec.bus_object, spec.bus_comp).await);
        }
        let name = format!("siebel fields {}", spec.name);
        let fields = match &described[&key] {
            Ok(fields) => fields,
            Err(SiebelError::NotFound { .. }) => {
                // No describe, or no such component: a query tells which.
                let probe = siebel.query_fields(spec.bus_object, spec.bus_comp, Some("[Id] = 'none'"), &["Id"]).await;
                checks.push(match probe {
                    Ok(_) => Check::warn(
                        name,
                        format!("{}/{} answers queries but has no describe (a Siebel before IP 2017?)", spec.bus_object, spec.bus_comp),
                        "field names were not checked; compare the mapping with the business component in Siebel Tools",
                    ),
                    Err(_) => Check::fail(
                        name,
                        format!("Siebel has no business component {}/{}", spec.bus_object, spec.bus_comp),
                        "expose the business object over the REST API (Application Interface)",
                    ),
                });
                continue;
            }
            Err(error) => {
                checks.push(Check::warn(name, format!("the describe call failed: {error}"), "field names were not checked"));
                continue;
            }
        };
        if spec.max_level != crate::domain::SyncLevel::Full {
            checks.push(Check::pass(
                name,
                format!("{}/{} is described; Tandem never writes {} into Siebel", spec.bus_object, spec.bus_comp, spec.name),
            ));
            continue;
        }
        checks.push(match written_fields(registry.as_ref(), &spec) {
            Err(why) => Check::warn(name, why, "the mapping's field names were not checked"),
            Ok(written) => {
                let missing: Vec<&String> = written.iter().filter(|field| !fields.contains(*field)).collect();
                if missing.is_empty() {
                    Check::pass(
                        name,
                        format!("{}/{} has all {} fields the mapping writes", spec.bus_object, spec.bus_comp, written.len()),
                    )
                } else {
                    let names: Vec<String> = missing.iter().map(|f| format!("'{f}'")).collect();
                    Check::fail(
                        name,
                        format!("{}/{} has no field {} that the mapping writes", spec.bus_object, spec.bus_comp, names.join(", ")),
                        "correct the field names in the mapping plugin, or add the fields to the business component in Siebel Tools",
                    )
                }
            }
        });
    }
    checks
}

/// The mapping plugins `tandem serve` would use: the plugins folder's packages over the
/// built-in ones. Compiled in memory; nothing is written.
fn mapping_plugins(config: &Config) -> anyhow::Result<PluginRegistry> {
    let runtime = PluginRuntime::new(None)?;
    let mut settings = PluginDirSettings::for_state_dir(&config.state.dir)?;
    if let Some(dir) = &config.plugins.dir {
        settings.dir = dir.clone();
    }
    if settings.dir.is_dir() {
        PluginRegistry::with_plugins_dir(&runtime, settings)
    } else {
        PluginRegistry::with_defaults(&runtime)
    }
}

/// The Siebel field names a domain's mapping writes: an Exchange item with every field Tandem
/// knows for the folder, mapped to Siebel. The engine's own pseudo-fields are left out.
fn written_fields(registry: Option<&PluginRegistry>, spec: &DomainSpec) -> Result<BTreeSet<String>, String> {
    let registry = registry.ok_or("no plugins")?;
    let mapper = registry.mapper(spec.name).ok_or_else(|| format!("no mapping plugin serves {}", spec.name))?;
    let mut instance = mapper.plugin.instantiate().map_err(|e| format!("the mapping plugin cannot start: {e}"))?;
    let context = CallContext { domain: spec.name.to_owned(), user: "TANDEM-DOCTOR".into() };
    let mapped = instance
        .to_siebel(&context, &probe_item(spec))
        .map_err(|e| format!("the mapping refused a sample item: {e}"))?;
    Ok(mapped
        .keys()
        .filter(|name| *name != crate::engine::ATTENDEE_EMAILS)
        .map(str::to_owned)
        .collect())
}

/// An Exchange item of the domain's folder with a plausible value in every field Tandem reads
/// there (private for personal contacts, which Outlook tells apart by their sensitivity).
fn probe_item(spec: &DomainSpec) -> Fields {
    use tandem_ews_wire::{ADDRESS_KEYS, ADDRESS_PARTS, ItemKind, ValueKind};
    let sensitivity = if spec.domain == crate::domain::Domain::PersonalContacts { "Private" } else { "Normal" };
    let kind = match spec.folder {
        Folder::Contacts => ItemKind::Contact,
        Folder::Calendar => ItemKind::CalendarItem,
        Folder::Tasks => ItemKind::Task,
    };
    let start = Utc::now() + TimeDelta::days(1);
    let mut item = Fields::default();
    let mut hour = 0;
    for spec in kind.all_elements() {
        let name = spec.element.to_owned();
        let value = match (spec.element, spec.kind) {
            ("Status", _) => Value::Text("InProgress".into()),
            ("Sensitivity", _) => Value::Text(sensitivity.into()),
            ("Importance", _) => Value::Text("Normal".into()),
            ("LegacyFreeBusyStatus", _) => Value::Text("Busy".into()),
            (_, ValueKind::Text | ValueKind::Body) => Value::Text("Tandem doctor".into()),
            (_, ValueKind::DateTime) => {
                hour += 1;
                Value::DateTime(start + TimeDelta::hours(hour))
            }
            (_, ValueKind::Boolean) => Value::Boolean(false),
            (_, ValueKind::Double) => Value::Number(50.0),
            (_, ValueKind::Integer) => Value::Integer(15),
            (_, ValueKind::Strings) => Value::List(vec![Value::Text("Tandem".into())]),
            (_, ValueKind::Dictionary(keys)) => {
                for key in keys {
                    let text = if key.starts_with("EmailAddress") { "doctor@example.com" } else { "+1 555 0100" };
                    item.insert((*key).to_owned(), Value::Text(text.into()));
                }
                continue;
            }
            (_, ValueKind::Addresses) => {
                for key in ADDRESS_KEYS {
                    for part in ADDRESS_PARTS {
                        item.insert(format!("{key}{part}"), Value::Text("Tandem".into()));
                    }
                }
                continue;
            }
            _ => continue,
        };
        item.insert(name, value);
    }
    item
}

/// What the EWS endpoint offers in `WWW-Authenticate` to a request without credentials,
/// against the configured scheme.
async fn ews_schemes(config: &Config) -> Check {
    const NAME: &str = "exchange sign-in schemes";
    let (configured, asked_as) = match config.exchange.auth() {
        // The name the configuration uses, and the one `WWW-Authenticate` uses.
        Ok(auth) => (auth.name(), auth.http_name().to_ascii_lowercase()),
        Err(problem) => return Check::fail(NAME, problem.message, problem.hint),
    };
    let client = match crate::transport::client_builder(&config.exchange.transport()).and_then(|b| {
        b.timeout(STEP_LIMIT * 2).build().map_err(|e| crate::transport::TransportError::Build(e.to_string()))
    }) {
        Ok(client) => client,
        Err(error) => return Check::fail(NAME, error.to_string(), error.hint()),
    };
    let answer = client
        .post(&config.exchange.url)
        .header(reqwest::header::CONTENT_TYPE, "text/xml; charset=utf-8")
        .body("")
        .send()
        .await;
    let answer = match answer {
        Ok(answer) => answer,
        Err(error) => return Check::fail(NAME, crate::transport::describe(&error), "see the exchange tls check"),
    };
    let offered: Vec<String> = answer
        .headers()
        .get_all(reqwest::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(|value| value.split_whitespace().next())
        .map(|scheme| scheme.trim_end_matches(',').to_ascii_lowercase())
        .collect();
    if answer.status() != reqwest::StatusCode::UNAUTHORIZED || offered.is_empty() {
        return Check::warn(
            NAME,
            format!("the endpoint answered HTTP {} without asking for credentials", answer.status().as_u16()),
            "check that [exchange] url is the EWS endpoint (https://HOST/EWS/Exchange.asmx)",
        );
    }
    let list = offered.join(", ");
    if offered.iter().any(|scheme| *scheme == asked_as) {
        Check::pass(NAME, format!("the server offers {list}; configured: {configured}"))
    } else {
        let suggestion = ["ntlm", "negotiate", "bearer"]
            .into_iter()
            .find(|scheme| offered.iter().any(|o| o == scheme))
            .map(|scheme| if scheme == "bearer" { "oauth" } else { scheme })
            .unwrap_or("basic");
        Check::fail(
            NAME,
            format!("the server offers {list}, not {configured}"),
            format!("set [exchange] auth = \"{suggestion}\" (or allow {configured} sign-in on the EWS virtual directory)"),
        )
    }
}

async fn ews_sign_in(settings: &ServiceSettings, mailbox: Option<&str>) -> Check {
    const NAME: &str = "exchange sign-in";
    let Some(mailbox) = mailbox else {
        return Check::warn(
            NAME,
            "no mailbox to try: the file has no enabled [[users]] on EWS",
            "run `tandem doctor --mailbox ADDRESS` to sign in and check impersonation on that mailbox",
        );
    };
    let client = EwsClient::new(settings.ews.clone()).and_then(|client| match &settings.ews_oauth {
        Some(endpoint) => client.with_oauth2(endpoint.clone()),
        None => Ok(client),
    });
    let client = match client {
        Ok(client) => client.with_retry(1, Duration::from_secs(1)),
        Err(error) => return Check::fail(NAME, error.to_string(), "correct [exchange]"),
    };
    match client.probe(mailbox).await {
        Ok(()) => Check::pass(NAME, format!("signed in as {} and opened the folders of {mailbox} by impersonation", settings.ews.user)),
        Err(error @ EwsError::Unauthorized) => Check::fail(NAME, error.to_string(), "check [exchange] user and password"),
        Err(EwsError::Response { code, message }) if code.contains("Impersonat") => Check::fail(
            NAME,
            format!("{code}: {message}"),
            format!(
                "give {} the ApplicationImpersonation role (New-ManagementRoleAssignment -Role ApplicationImpersonation -User …)",
                settings.ews.user
            ),
        ),
        Err(EwsError::Response { code, message }) if code == "ErrorNonExistentMailbox" => {
            Check::fail(NAME, format!("{code}: {message}"), format!("check the address {mailbox}"))
        }
        Err(error) => Check::fail(NAME, error.to_string(), "see the exchange checks above"),
    }
}

async fn graph_sign_in(config: &crate::exchange::graph::GraphConfig, mailbox: Option<&str>) -> Check {
    const NAME: &str = "graph sign-in";
    let Some(mailbox) = mailbox else {
        return Check::warn(
            NAME,
            "no mailbox to try: the file has no enabled [[users]] on Graph",
            "run `tandem doctor --mailbox ADDRESS` to check the app's permissions on that mailbox",
        );
    };
    let client = match GraphClient::new(config.clone()) {
        Ok(client) => client.with_retry(1, Duration::from_secs(1)),
        Err(error) => return Check::fail(NAME, error.to_string(), "correct [graph]"),
    };
    match client.probe(mailbox).await {
        Ok(()) => Check::pass(NAME, format!("token fetched; the app reads the contacts, events and To Do lists of {mailbox}")),
        Err(error @ (GraphError::Token(_) | GraphError::Unauthorized)) => {
            Check::fail(NAME, error.to_string(), "check [graph] client_id, the secret or certificate and token_url")
        }
        Err(error) if error.status() == Some(403) => Check::fail(
            NAME,
            error.to_string(),
            "grant the app the application permissions Contacts.ReadWrite, Calendars.ReadWrite and Tasks.ReadWrite.All, with admin consent",
        ),
        Err(error) if error.status() == Some(404) => Check::fail(NAME, error.to_string(), format!("check the address {mailbox}")),
        Err(error) => Check::fail(NAME, error.to_string(), "see the graph checks above"),
    }
}

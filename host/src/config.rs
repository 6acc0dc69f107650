//! The service configuration: one TOML file plus `TANDEM_` environment overrides (figment),
//! every key documented in `examples/tandem.toml`.
//!
//! An override names its key path with double underscores: `TANDEM_SIEBEL__URL`,
//! `TANDEM_SCHEDULE__MAX_CONCURRENT`. Checking walks the merged values first so that every
//! unknown key is named by its path (with the nearest known key as a hint), then reads the
//! typed values. Secrets come from the file, an environment variable or a file of their own,
//! and are never printed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub state: StateConfig,
    #[serde(default)]
    pub node: NodeConfig,
    #[serde(default)]
    pub plugins: PluginsConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    pub siebel: SiebelEndpointConfig,
    pub exchange: ExchangeConfig,
    /// Exchange Online (Microsoft Graph), for users with `backend = "graph"`.
    #[serde(default)]
    pub graph: Option<GraphEndpointConfig>,
    #[serde(default)]
    pub schedule: ScheduleConfig,
    #[serde(default)]
    pub sync: SyncConfig,
    #[serde(default)]
    pub users: Vec<UserConfig>,
}

/// `[sync]`: safety rules of every run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    /// Share (above 0, at most 1) of a user's synced items one run may delete on one side
    /// before the mass-delete guard stops it.
    pub mass_delete_share: f64,
    /// Users with at most this many synced items are not guarded.
    pub mass_delete_min_items: usize,
    /// Initial-extract matching: records already on both sides are linked, not copied.
    pub matching: bool,
    /// Per domain, the key sets (Exchange field names) matching tries in order; a domain
    /// named here replaces its defaults.
    pub match_keys: std::collections::BTreeMap<String, Vec<Vec<String>>>,
}

impl Default for SyncConfig {
    fn default() -> Self {
        let guard = crate::engine::MassDeleteGuard::default();
        Self {
            mass_delete_share: guard.share,
            mass_delete_min_items: guard.min_items,
            matching: true,
            match_keys: Default::default(),
        }
    }
}

impl SyncConfig {
    /// The engine's mass-delete guard.
    pub fn mass_delete_guard(&self) -> crate::engine::MassDeleteGuard {
        crate::engine::MassDeleteGuard { share: self.mass_delete_share, min_items: self.mass_delete_min_items }
    }

    /// The engine's rules from this section.
    pub fn rules(&self) -> crate::engine::SyncRules {
        let mut matching = crate::engine::Matching { enabled: self.matching, ..Default::default() };
        matching.keys.extend(self.match_keys.clone());
        crate::engine::SyncRules { mass_delete: self.mass_delete_guard(), matching }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// Folder of the SQLite state database and the plugin compile cache.
    pub dir: PathBuf,
    /// PostgreSQL URL, when several nodes share the state (SQLite in `dir` otherwise).
    pub database_url: Option<String>,
    /// Environment variable holding the PostgreSQL URL (it carries a password).
    pub database_url_env: Option<String>,
}

impl StateConfig {
    /// The PostgreSQL URL, if one is configured; an error names the missing variable.
    pub fn database_url(&self) -> Result<Option<String>, String> {
        if let Some(url) = &self.database_url {
            return Ok(Some(url.clone()));
        }
        match &self.database_url_env {
            Some(var) => std::env::var(var).map(Some).map_err(|_| format!("environment variable {var} is not set")),
            None => Ok(None),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's name in leases and run history (default: host name plus a random suffix).
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginsConfig {
    /// Folder watched for plugin packages (default: `plugins` in the state folder).
    pub dir: Option<PathBuf>,
}

// No `deny_unknown_fields` where a secret is flattened in (serde does not support both);
// `check_keys` names unknown keys instead.
#[derive(Debug, Clone, Deserialize)]
pub struct AdminConfig {
    #[serde(default = "default_admin_listen")]
    pub listen: SocketAddr,
    /// The bearer token in plain text (`token`, `token_env`, `token_file`).
    #[serde(flatten)]
    pub token: Secret,
    /// Instead of the token: its SHA-256 digest in hex (`tandem hash-token` prints it).
    #[serde(default)]
    token_sha256: Option<String>,
    #[serde(default)]
    token_sha256_env: Option<String>,
    #[serde(default)]
    token_sha256_file: Option<PathBuf>,
    /// The admin listener serves HTTPS with this certificate chain (PEM, the server's
    /// certificate first) and `tls_key_file`'s key; both or neither.
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: default_admin_listen(),
            token: Secret::default(),
            token_sha256: None,
            token_sha256_env: None,
            token_sha256_file: None,
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

/// How the admin API recognises its bearer token.
#[derive(Clone, PartialEq, Eq)]
pub enum AdminCredential {
    /// The token itself (hashed in memory at start).
    Token(String),
    /// Only the token's SHA-256 digest: the plain text need not be on disk.
    Sha256([u8; 32]),
}

impl std::fmt::Debug for AdminCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AdminCredential::Token(_) => "AdminCredential::Token(..)",
            AdminCredential::Sha256(_) => "AdminCredential::Sha256(..)",
        })
    }
}

impl AdminCredential {
    /// As [`crate::service::ServiceSettings::admin_token`] takes it.
    pub fn service_setting(&self) -> String {
        match self {
            AdminCredential::Token(token) => token.clone(),
            AdminCredential::Sha256(digest) => {
                format!("{}{}", crate::service::ADMIN_TOKEN_DIGEST_PREFIX, hex::encode(digest))
            }
        }
    }
}

impl AdminConfig {
    /// The listener's certificate and key when both are given.
    pub fn tls_files(&self) -> Option<crate::admin::AdminTlsFiles> {
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(cert_file), Some(key_file)) => {
                Some(crate::admin::AdminTlsFiles { cert_file: cert_file.clone(), key_file: key_file.clone() })
            }
            _ => None,
        }
    }

    /// What is wrong with `tls_cert_file` / `tls_key_file`: one without the other, or files
    /// that cannot be served.
    fn tls_problem(&self) -> Option<Problem> {
        let (path, message) = match (&self.tls_cert_file, &self.tls_key_file) {
            (None, None) => return None,
            (Some(_), None) => ("admin.tls_key_file", "a certificate is given without its key"),
            (None, Some(_)) => ("admin.tls_cert_file", "a key is given without its certificate"),
            (Some(cert), Some(key)) => {
                let error = crate::admin::server_tls(cert, key).err()?;
                let path = match &error {
                    crate::admin::AdminTlsError::BadKey { .. } => "admin.tls_key_file",
                    crate::admin::AdminTlsError::Unreadable { path, .. } if path == key => "admin.tls_key_file",
                    _ => "admin.tls_cert_file",
                };
                return Some(Problem { path: path.into(), message: error.to_string(), hint: error.hint().into() });
            }
        };
        Some(Problem {
            path: path.into(),
            message: message.into(),
            hint: "give both `admin.tls_cert_file` and `admin.tls_key_file` (PEM) to serve HTTPS, or neither for plain HTTP".into(),
        })
    }

    fn digest_secret(&self) -> Secret {
        Secret {
            value: self.token_sha256.clone(),
            env: self.token_sha256_env.clone(),
            file: self.token_sha256_file.clone(),
        }
    }

    fn has_digest(&self) -> bool {
        self.token_sha256.is_some() || self.token_sha256_env.is_some() || self.token_sha256_file.is_some()
    }

    fn has_token(&self) -> bool {
        self.token.value.is_some() || self.token.env.is_some() || self.token.file.is_some()
    }

    /// The admin credential: the token or its digest (exactly one must be configured).
    /// The error is a [`Problem`] naming the key, never the value.
    pub fn credential(&self) -> Result<AdminCredential, Problem> {
        if self.has_digest() && self.has_token() {
            return Err(Problem {
                path: "admin.token_sha256".into(),
                message: "both the token and its digest are given".into(),
                hint: "keep only `admin.token_sha256` (or `_env`/`_file`) and remove `admin.token*`".into(),
            });
        }
        if self.has_digest() {
            let text = self.digest_secret().resolve().map_err(|why| Problem {
                path: "admin.token_sha256".into(),
                message: format!("the digest cannot be read: {why}"),
                hint: "set `admin.token_sha256`, `admin.token_sha256_env` or `admin.token_sha256_file`".into(),
            })?;
            return crate::secrets::parse_token_digest(&text).map(AdminCredential::Sha256).map_err(|why| Problem {
                path: "admin.token_sha256".into(),
                message: why,
                hint: "write the 64 hex digits `echo -n TOKEN | tandem hash-token` prints".into(),
            });
        }
        self.token.resolve().map(AdminCredential::Token).map_err(|why| Problem {
            path: "admin.token".into(),
            message: format!("the secret cannot be read: {why}"),
            hint: "set `admin.token_sha256` (see `tandem hash-token`), or `admin.token`, `admin.token_env` or `admin.token_file`".into(),
        })
    }
}

fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8480))
}

/// A server Tandem logs in to: its URL, user and password, and how to reach it.
#[derive(Debug, Clone, Deserialize)]
pub struct EndpointConfig {
    pub url: String,
    pub user: String,
    #[serde(flatten)]
    pub password: Secret,
    /// A PEM bundle of CA certificates trusted in addition to the system's roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// A proxy for this endpoint (`HTTPS_PROXY` / `NO_PROXY` apply when absent).
    #[serde(default)]
    pub proxy: Option<String>,
}

impl EndpointConfig {
    /// The connector's transport settings.
    pub fn transport(&self) -> crate::transport::Transport {
        crate::transport::Transport { ca_file: self.ca_file.clone(), proxy: self.proxy.clone() }
    }
}

/// `[siebel]`: the endpoint, and how Tandem signs in to the Siebel Application Interface
/// (the REST profile's authentication: Basic over TLS, or OAuth 2.0).
#[derive(Debug, Clone, Deserialize)]
pub struct SiebelEndpointConfig {
    #[serde(flatten)]
    pub endpoint: EndpointConfig,
    #[serde(default)]
    pub auth: SiebelAuth,
    /// `[siebel.oauth]`: the client the token endpoint knows, for `auth = "oauth"`.
    #[serde(default)]
    pub oauth: Option<OAuthClientConfig>,
    /// The `ViewMode` of every request. `All` by default: the integration user reads and
    /// writes other users' records, which Siebel's own default (Sales Rep) hides.
    #[serde(default = "default_view_mode")]
    pub view_mode: String,
    /// The time zone of the integration user's Siebel profile (an IANA name such as
    /// `Europe/Paris`): Siebel reads and writes date-times in it. `UTC` by default.
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
}

fn default_view_mode() -> String {
    "All".to_owned()
}

fn default_time_zone() -> String {
    "UTC".to_owned()
}

impl std::ops::Deref for SiebelEndpointConfig {
    type Target = EndpointConfig;

    fn deref(&self) -> &EndpointConfig {
        &self.endpoint
    }
}

/// `[exchange]`: the EWS endpoint and service account (as for every endpoint), and how the
/// account signs in.
#[derive(Debug, Clone, Deserialize)]
pub struct ExchangeConfig {
    #[serde(flatten)]
    pub endpoint: EndpointConfig,
    /// `basic` (the default), `ntlm`, `negotiate` or `oauth`; read by [`ExchangeConfig::auth`].
    #[serde(default, rename = "auth")]
    pub auth_name: Option<String>,
    /// `[exchange.oauth]`: the app and its token endpoint, for `auth = "oauth"`.
    #[serde(default)]
    pub oauth: Option<ExchangeOAuthConfig>,
}

/// `[exchange.oauth]`: an app allowed to use EWS (Exchange Online's `full_access_as_app`, or
/// an on-premises Exchange with hybrid modern authentication) and where it gets tokens.
#[derive(Debug, Clone, Deserialize)]
pub struct ExchangeOAuthConfig {
    #[serde(flatten)]
    pub client: OAuthClientConfig,
    /// The resource's scope; Exchange Online's by default.
    #[serde(default = "default_ews_scope")]
    pub scope: String,
}

fn default_ews_scope() -> String {
    "https://outlook.office365.com/.default".to_owned()
}

impl std::ops::Deref for ExchangeConfig {
    type Target = EndpointConfig;

    fn deref(&self) -> &EndpointConfig {
        &self.endpoint
    }
}

/// `[siebel] auth`: what the Application Interface's REST profile asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SiebelAuth {
    /// The integration user's name and password on every request (over TLS).
    #[default]
    Basic,
    /// A bearer token from `[siebel.oauth] token_url` (OAuth 2.0 client credentials).
    OAuth,
}

/// An OAuth 2.0 client of a token endpoint (client credentials).
#[derive(Debug, Clone, Deserialize)]
pub struct OAuthClientConfig {
    pub token_url: String,
    pub client_id: String,
    /// `client_secret`, `client_secret_env` or `client_secret_file`.
    #[serde(flatten)]
    pub client_secret: Secret,
}

impl OAuthClientConfig {
    /// The client secret, once it can be read and `token_url` is a URL; a problem names the
    /// key under `section` and what to give (`what_url`: the token endpoint to name).
    fn checked_secret(&self, section: &str, what_url: &str) -> Result<String, Problem> {
        let client_secret = self.client_secret.resolve().map_err(|why| Problem {
            path: format!("{section}.client_secret"),
            message: format!("the secret cannot be read: {why}"),
            hint: format!("set `{section}.client_secret`, `client_secret_env` or `client_secret_file`"),
        })?;
        if let Err(error) = reqwest::Url::parse(&self.token_url) {
            return Err(Problem {
                path: format!("{section}.token_url"),
                message: format!("'{}' is not a URL ({error})", self.token_url),
                hint: format!("give {what_url}"),
            });
        }
        Ok(client_secret)
    }
}

impl SiebelEndpointConfig {
    /// `time_zone` as a zone of the IANA database; the error names the key.
    pub fn zone(&self) -> Result<chrono_tz::Tz, Problem> {
        self.time_zone.trim().parse::<chrono_tz::Tz>().map_err(|_| Problem {
            path: "siebel.time_zone".into(),
            message: format!("'{}' is not a time zone of the IANA database", self.time_zone),
            hint: "give the zone of the integration user's Siebel profile as Continent/City, like \"Europe/Paris\" or \"America/New_York\", or \"UTC\"".into(),
        })
    }

    /// `view_mode`, which must not be blank.
    fn view_mode_problem(&self) -> Option<Problem> {
        self.view_mode.trim().is_empty().then(|| Problem {
            path: "siebel.view_mode".into(),
            message: "the ViewMode is blank".into(),
            hint: "leave the key out (All) or give one Siebel takes, like \"All\" or \"Sales Rep\"".into(),
        })
    }

    /// The connector's OAuth 2.0 settings when `auth = "oauth"`; the error names the key.
    pub fn oauth2(&self) -> Result<Option<crate::siebel::OAuth2Config>, Problem> {
        if self.auth != SiebelAuth::OAuth {
            return Ok(None);
        }
        let Some(oauth) = &self.oauth else {
            return Err(Problem {
                path: "siebel.oauth".into(),
                message: "`auth = \"oauth\"` needs the token endpoint and client".into(),
                hint: "add [siebel.oauth] with token_url, client_id and client_secret (or client_secret_env / client_secret_file)".into(),
            });
        };
        let client_secret = oauth.checked_secret(
            "siebel.oauth",
            "the token endpoint of the identity provider the Application Interface trusts, like https://idp.example.com/oauth2/v1/token",
        )?;
        Ok(Some(crate::siebel::OAuth2Config {
            token_url: oauth.token_url.clone(),
            client_id: oauth.client_id.clone(),
            client_secret,
        }))
    }
}

impl ExchangeConfig {
    /// How the service account signs in; the problem names the key and the choices.
    pub fn auth(&self) -> Result<crate::exchange::ews::EwsAuth, Problem> {
        use crate::exchange::ews::EwsAuth;
        let Some(name) = self.auth_name.as_deref() else {
            return Ok(EwsAuth::default());
        };
        EwsAuth::parse(name).ok_or_else(|| Problem {
            path: "exchange.auth".into(),
            message: format!("`{name}` is not a sign-in scheme Tandem has"),
            hint: "write \"basic\", \"ntlm\", \"negotiate\" or \"oauth\" (a fresh Exchange 2016/2019 offers ntlm and negotiate on /EWS)".into(),
        })
    }

    /// The token endpoint of `auth = "oauth"`; the problem names the key to fix.
    pub fn oauth2(&self) -> Result<Option<crate::oauth::TokenEndpoint>, Problem> {
        if !matches!(self.auth(), Ok(crate::exchange::ews::EwsAuth::OAuth)) {
            return Ok(None);
        }
        let Some(oauth) = &self.oauth else {
            return Err(Problem {
                path: "exchange.oauth".into(),
                message: "`auth = \"oauth\"` needs the app and its token endpoint".into(),
                hint: "add [exchange.oauth] with token_url (https://login.microsoftonline.com/TENANT/oauth2/v2.0/token), client_id and client_secret (or client_secret_env / client_secret_file)".into(),
            });
        };
        let client_secret = oauth
            .client
            .checked_secret("exchange.oauth", "the identity platform's token endpoint, like https://login.microsoftonline.com/TENANT/oauth2/v2.0/token")?;
        Ok(Some(crate::oauth::TokenEndpoint {
            section: "exchange",
            token_url: oauth.client.token_url.clone(),
            client_id: oauth.client.client_id.clone(),
            credential: client_secret.into(),
            scope: Some(oauth.scope.clone()),
            secret_placement: crate::oauth::SecretPlacement::Body,
        }))
    }

    /// The problems of `auth` and, for Windows sign-in, of `user`.
    fn problems(&self) -> Vec<Problem> {
        let auth = match self.auth() {
            Ok(auth) => auth,
            Err(problem) => return vec![problem],
        };
        if !auth.is_connection_bound() {
            return Vec::new();
        }
        match crate::exchange::ews::auth::check_windows_user(&self.user) {
            Ok(()) => Vec::new(),
            Err(error) => vec![Problem {
                path: "exchange.user".into(),
                message: format!("{auth} sign-in needs the account's domain: {error}"),
                hint: "write the user as 'DOMAIN\\user' (single quotes keep the backslash in TOML) or as user@domain".into(),
            }],
        }
    }
}

/// `[graph]`: the app registration Tandem uses for Exchange Online mailboxes (OAuth2 client
/// credentials with the Contacts, Calendars and Tasks application permissions), signing in
/// with a client secret or with a certificate: exactly one of the two.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphEndpointConfig {
    /// `https://graph.microsoft.com/v1.0`.
    pub url: String,
    /// `https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token`.
    pub token_url: String,
    pub client_id: String,
    #[serde(flatten)]
    pub client_secret: Secret,
    /// When the client secret expires (the app registration shows it), like `2027-06-30`:
    /// `/metrics` and the status then show the time left.
    #[serde(default)]
    pub client_secret_expires: Option<String>,
    /// Instead of a secret: the certificate uploaded to the app registration (PEM), whose key
    /// signs a client assertion per token request ("certificate credentials").
    #[serde(default)]
    pub certificate_file: Option<PathBuf>,
    /// The certificate's private key (PEM, unencrypted PKCS#8 or PKCS#1); when absent it is
    /// read from `certificate_file` (one PEM holding both).
    #[serde(default)]
    pub private_key_file: Option<PathBuf>,
    /// The public https base URL at which Graph reaches Tandem's admin listener (a reverse
    /// proxy in front of it); change notifications are posted to `{url}/graph/notifications`.
    /// Without it users on Graph are polled through delta only.
    #[serde(default)]
    pub notification_url: Option<String>,
    /// A PEM bundle of CA certificates trusted in addition to the system's roots (for Graph
    /// and the token endpoint).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// A proxy for Graph and the token endpoint (`HTTPS_PROXY` / `NO_PROXY` apply when absent).
    #[serde(default)]
    pub proxy: Option<String>,
}

impl GraphEndpointConfig {
    /// The connector's transport settings.
    pub fn transport(&self) -> crate::transport::Transport {
        crate::transport::Transport { ca_file: self.ca_file.clone(), proxy: self.proxy.clone() }
    }

    /// The app's credential, its certificate read and checked: exactly one of a client secret
    /// and a certificate must be given. A [`Problem`] names the key, never a secret.
    pub fn credential(&self) -> Result<crate::oauth::ClientCredential, Problem> {
        use crate::oauth::{CertificateCredential, ClientCredential, ClientSecret, CredentialError};
        let problem = |key: &str, message: String, hint: &str| Problem { path: format!("graph.{key}"), message, hint: hint.into() };
        let has_certificate = self.certificate_file.is_some() || self.private_key_file.is_some();
        match (self.client_secret.is_given(), has_certificate) {
            (true, true) => Err(problem(
                "certificate_file",
                "both a client secret and a certificate are given".into(),
                "keep one: `certificate_file` (and `private_key_file`), or `client_secret` (`_env`, `_file`)",
            )),
            (false, false) => Err(problem(
                "client_secret",
                "the app registration's credential is missing".into(),
                "set `graph.client_secret` (or `_env`, `_file`), or `graph.certificate_file` and `graph.private_key_file` for certificate credentials",
            )),
            (true, false) => {
                let secret = self.client_secret.resolve().map_err(|why| {
                    problem(
                        "client_secret",
                        format!("the secret cannot be read: {why}"),
                        "set `graph.client_secret`, `graph.client_secret_env` or `graph.client_secret_file`",
                    )
                })?;
                let expires = match self.client_secret_expires.as_deref() {
                    Some(text) => Some(parse_expiry(text).map_err(|why| {
                        problem(
                            "client_secret_expires",
                            why,
                            "write the date the app registration shows under Certificates & secrets, like 2027-06-30",
                        )
                    })?),
                    None => None,
                };
                Ok(ClientCredential::Secret(ClientSecret::new(secret).expiring_at(expires)))
            }
            (false, true) => {
                let Some(certificate_file) = &self.certificate_file else {
                    return Err(problem(
                        "certificate_file",
                        "`private_key_file` is given without the certificate".into(),
                        "set `graph.certificate_file` to the PEM of the certificate uploaded to the app registration",
                    ));
                };
                if self.client_secret_expires.is_some() {
                    return Err(problem(
                        "client_secret_expires",
                        "there is no client secret: a certificate's expiry is read from the certificate".into(),
                        "remove `graph.client_secret_expires`",
                    ));
                }
                let key_file = self.private_key_file.as_deref();
                CertificateCredential::from_files(certificate_file, key_file)
                    .map(|certificate| ClientCredential::Certificate(std::sync::Arc::new(certificate)))
                    .map_err(|error| {
                        let key = match &error {
                            CredentialError::Unreadable { path, .. } if path != certificate_file => "private_key_file",
                            CredentialError::NoKey { .. } | CredentialError::BadKey { .. } | CredentialError::KeyMismatch { .. }
                                if key_file.is_some() =>
                            {
                                "private_key_file"
                            }
                            _ => "certificate_file",
                        };
                        problem(key, error.to_string(), error.hint())
                    })
            }
        }
    }

    /// The Graph connector's settings; a [`Problem`] names the key to fix.
    pub fn connector(&self) -> Result<crate::exchange::graph::GraphConfig, Problem> {
        Ok(crate::exchange::graph::GraphConfig {
            base_url: self.url.clone(),
            token_url: self.token_url.clone(),
            client_id: self.client_id.clone(),
            credential: self.credential()?,
            limits: Default::default(),
            transport: self.transport(),
        })
    }
}

/// An expiry date: `2027-06-30` (its start, UTC) or an RFC 3339 date-time.
fn parse_expiry(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    let text = text.trim();
    if let Ok(date) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&chrono::Utc))
        .map_err(|_| format!("`{text}` is not a date"))
}

/// The problems of one section's `ca_file` and `proxy`.
fn check_transport(section: &str, transport: &crate::transport::Transport, problems: &mut Vec<Problem>) {
    if let Some(path) = &transport.ca_file
        && let Err(error) = crate::transport::load_ca_file(path)
    {
        problems.push(Problem { path: format!("{section}.ca_file"), message: error.to_string(), hint: error.hint().into() });
    }
    if let Some(url) = &transport.proxy
        && let Err(error) = crate::transport::proxy(url)
    {
        problems.push(Problem { path: format!("{section}.proxy"), message: error.to_string(), hint: error.hint().into() });
    }
}

/// A secret given inline, by environment variable or by file. Its `Debug` hides the value.
#[derive(Clone, Default, Deserialize)]
pub struct Secret {
    #[serde(alias = "password", alias = "token", alias = "client_secret")]
    value: Option<String>,
    #[serde(alias = "password_env", alias = "token_env", alias = "client_secret_env")]
    env: Option<String>,
    #[serde(alias = "password_file", alias = "token_file", alias = "client_secret_file")]
    file: Option<PathBuf>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// Whether any of the value, its variable or its file is given.
    pub fn is_given(&self) -> bool {
        self.value.is_some() || self.env.is_some() || self.file.is_some()
    }

    /// Reads the secret; the error names where it looked, never the value.
    pub fn resolve(&self) -> Result<String, String> {
        if let Some(value) = &self.value {
            return Ok(value.clone());
        }
        if let Some(var) = &self.env {
            return std::env::var(var).map_err(|_| format!("environment variable {var} is not set"));
        }
        if let Some(path) = &self.file {
            return std::fs::read_to_string(path)
                .map(|text| text.trim_end().to_owned())
                .map_err(|e| format!("cannot read {}: {e}", path.display()));
        }
        Err("no value given".into())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Seconds between two syncs of the same user.
    #[serde(default = "default_interval")]
    pub interval_seconds: u64,
    /// When true, users sync only when asked through the admin API.
    #[serde(default)]
    pub manual: bool,
    /// Syncs at once on this node (SSSE's MaxTasks).
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent: usize,
    /// Of those, how many may be initial extracts.
    #[serde(default = "default_initial_slots")]
    pub initial_extract_slots: usize,
    /// How long a node holds a user it syncs; another node takes over after it expires.
    #[serde(default = "default_lease")]
    pub lease_seconds: u64,
    /// The longest wait after repeated failures.
    #[serde(default = "default_max_backoff")]
    pub max_backoff_seconds: u64,
    /// Consecutive failures needing an administrator after which a user is disabled.
    #[serde(default = "default_disable_after")]
    pub disable_after_failures: i64,
    /// How long running syncs may take to finish on SIGTERM.
    #[serde(default = "default_shutdown_deadline")]
    pub shutdown_deadline_seconds: u64,
    /// Safety-net interval of users whose changes are signalled (Exchange streaming
    /// notifications and Siebel change detection both work); 0 keeps the group interval.
    #[serde(default = "default_notified_interval")]
    pub notified_interval_seconds: u64,
    /// Dispatcher groups: their own interval (SSSE's PIMSI Dispatcher groups).
    #[serde(default)]
    pub groups: BTreeMap<String, GroupConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    pub interval_seconds: u64,
    /// Sync levels of the group's users, per domain (`contacts = "full"`, ...); domains not
    /// named keep the defaults.
    #[serde(default)]
    pub domains: BTreeMap<String, crate::domain::SyncLevel>,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            interval_seconds: default_interval(),
            manual: false,
            max_concurrent: default_max_concurrent(),
            initial_extract_slots: default_initial_slots(),
            lease_seconds: default_lease(),
            max_backoff_seconds: default_max_backoff(),
            disable_after_failures: default_disable_after(),
            shutdown_deadline_seconds: default_shutdown_deadline(),
            notified_interval_seconds: default_notified_interval(),
            groups: BTreeMap::new(),
        }
    }
}

fn default_max_concurrent() -> usize {
    8
}

fn default_initial_slots() -> usize {
    2
}

fn default_lease() -> u64 {
    120
}

fn default_max_backoff() -> u64 {
    3600
}

fn default_disable_after() -> i64 {
    5
}

fn default_shutdown_deadline() -> u64 {
    30
}

fn default_notified_interval() -> u64 {
    4 * 3600
}

impl ScheduleConfig {
    /// The scheduler's settings for a node named `node` (generated when None).
    pub fn scheduler_settings(&self, node: Option<&str>) -> crate::scheduler::SchedulerSettings {
        use std::time::Duration;
        crate::scheduler::SchedulerSettings {
            node: node.map(str::to_owned).unwrap_or_else(crate::scheduler::default_node_name),
            default_interval: Duration::from_secs(self.interval_seconds),
            groups: self
                .groups
                .iter()
                .map(|(name, group)| (name.clone(), Duration::from_secs(group.interval_seconds)))
                .collect(),
            max_concurrent: self.max_concurrent,
            initial_extract_slots: self.initial_extract_slots,
            lease: Duration::from_secs(self.lease_seconds),
            tick: Duration::from_secs(1),
            max_backoff: Duration::from_secs(self.max_backoff_seconds),
            disable_after: self.disable_after_failures,
            shutdown_deadline: Duration::from_secs(self.shutdown_deadline_seconds),
            notified_interval: Duration::from_secs(self.notified_interval_seconds),
            ..crate::scheduler::SchedulerSettings::default()
        }
    }
}

fn default_interval() -> u64 {
    60
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub login: String,
    pub mailbox: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Dispatcher group (see `[schedule.groups]`).
    pub group: Option<String>,
    /// This user's own sync levels per domain, over the group's ("Administrator Override").
    #[serde(default)]
    pub domains: BTreeMap<String, crate::domain::SyncLevel>,
    /// `ews` (Exchange on-premises, the default) or `graph` (Exchange Online).
    #[serde(default)]
    pub backend: crate::domain::ExchangeBackend,
    /// This user's ExtractStartDate (SSSE's per-user Extract Start Date): an ISO date or RFC
    /// 3339 date-time, over the filter plugin's global `extract_start_date`.
    pub extract_start_date: Option<String>,
}

impl Config {
    /// A file user's sync levels: the defaults, then the group's, then the user's own; None
    /// when neither the group nor the user names any (levels are then left to the admin API).
    pub fn user_domains(&self, user: &UserConfig) -> Option<crate::domain::Domains> {
        let group = user.group.as_ref().and_then(|name| self.schedule.groups.get(name));
        let layers: Vec<&BTreeMap<String, crate::domain::SyncLevel>> =
            group.map(|g| &g.domains).into_iter().chain([&user.domains]).filter(|m| !m.is_empty()).collect();
        if layers.is_empty() {
            return None;
        }
        let mut domains = crate::domain::Domains::default();
        for (name, level) in layers.into_iter().flatten() {
            domains.set(name, *level);
        }
        Some(domains)
    }
}

fn yes() -> bool {
    true
}

/// One thing wrong with a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key's path, like `siebel.passwrd`.
    pub path: String,
    pub message: String,
    pub hint: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} (hint: {})", self.path, self.message, self.hint)
    }
}

/// The domain names of `domains` tables, as the admin API writes them.
const DOMAIN_KEYS: &[&str] = &crate::domain::KEYS;

/// The known keys of each table, for naming unknown ones. `[]` marks an array of tables.
fn known_keys() -> BTreeMap<&'static str, &'static [&'static str]> {
    const SIEBEL: &[&str] =
        &["url", "user", "password", "password_env", "password_file", "ca_file", "proxy", "auth", "oauth", "view_mode", "time_zone"];
    const EXCHANGE: &[&str] = &["url", "user", "password", "password_env", "password_file", "ca_file", "proxy", "auth", "oauth"];
    BTreeMap::from([
        ("", &["state", "node", "plugins", "admin", "siebel", "exchange", "graph", "schedule", "sync", "users"][..]),
        (
            "graph",
            &[
                "url",
                "token_url",
                "client_id",
                "client_secret",
                "client_secret_env",
                "client_secret_file",
                "client_secret_expires",
                "certificate_file",
                "private_key_file",
                "notification_url",
                "ca_file",
                "proxy",
            ][..],
        ),
        ("state", &["dir", "database_url", "database_url_env"][..]),
        ("node", &["name"][..]),
        ("plugins", &["dir"][..]),
        (
            "admin",
            &[
                "listen",
                "token",
                "token_env",
                "token_file",
                "token_sha256",
                "token_sha256_env",
                "token_sha256_file",
                "tls_cert_file",
                "tls_key_file",
            ][..],
        ),
        ("siebel", SIEBEL),
        ("siebel.oauth", &["token_url", "client_id", "client_secret", "client_secret_env", "client_secret_file"][..]),
        ("exchange", EXCHANGE),
        ("exchange.oauth", &["token_url", "client_id", "client_secret", "client_secret_env", "client_secret_file", "scope"][..]),
        (
            "schedule",
            &[
                "interval_seconds",
                "manual",
                "max_concurrent",
                "initial_extract_slots",
                "lease_seconds",
                "max_backoff_seconds",
                "disable_after_failures",
                "shutdown_deadline_seconds",
                "notified_interval_seconds",
                "groups",
            ][..],
        ),
        ("schedule.groups.*", &["interval_seconds", "domains"][..]),
        ("schedule.groups.*.domains", DOMAIN_KEYS),
        ("users[].domains", DOMAIN_KEYS),
        ("sync", &["mass_delete_share", "mass_delete_min_items", "matching", "match_keys"][..]),
        ("sync.match_keys", &crate::domain::NAMES[..]),
        ("users[]", &["login", "mailbox", "enabled", "group", "domains", "backend", "extract_start_date"][..]),
    ])
}

fn closest<'a>(key: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates.iter().copied().min_by_key(|candidate| edit_distance(key, candidate)).filter(|c| edit_distance(key, c) <= 3)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

fn check_keys(table: &toml::Table, schema_path: &str, shown_path: &str, problems: &mut Vec<Problem>) {
    if schema_path == "schedule.groups" {
        // Group names are the administrator's own; each group table has the same keys.
        for (name, value) in table {
            if let toml::Value::Table(group) = value {
                check_keys(group, "schedule.groups.*", &format!("{shown_path}.{name}"), problems);
            }
        }
        return;
    }
    let schema = known_keys();
    let Some(known) = schema.get(schema_path) else { return };
    for (key, value) in table {
        let shown = if shown_path.is_empty() { key.clone() } else { format!("{shown_path}.{key}") };
        if !known.contains(&key.as_str()) {
            let hint = match closest(key, known) {
                Some(near) => format!("did you mean `{near}`?"),
                None => format!("known keys here: {}", known.join(", ")),
            };
            problems.push(Problem { path: shown, message: "unknown key".into(), hint });
            continue;
        }
        let child_schema = if schema_path.is_empty() {
            key.clone()
        } else {
            format!("{schema_path}.{key}")
        };
        match value {
            toml::Value::Table(child) => check_keys(child, &child_schema, &shown, problems),
            toml::Value::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    if let toml::Value::Table(child) = item {
                        check_keys(child, &format!("{child_schema}[]"), &format!("{shown}[{index}]"), problems);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Reads and checks a configuration file merged with `TANDEM_…__…` environment overrides;
/// on failure every problem found is returned.
pub fn load(path: &Path) -> Result<Config, Vec<Problem>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![Problem {
            path: path.display().to_string(),
            message: format!("cannot read the file: {e}"),
            hint: "check the path and its permissions".into(),
        }]
    })?;
    parse(&text)
}

/// The environment overrides: `TANDEM_SECTION__KEY=value`. Variables without a double
/// underscore (like a `token_env` target `TANDEM_ADMIN_TOKEN`) are not configuration.
fn environment() -> figment::providers::Env {
    figment::providers::Env::prefixed("TANDEM_").filter(|key| key.as_str().contains("__")).split("__")
}

fn figment_problems(error: figment::Error) -> Vec<Problem> {
    error
        .into_iter()
        .map(|e| Problem {
            path: if e.path.is_empty() { "(file)".into() } else { e.path.join(".") },
            message: e.kind.to_string(),
            hint: "see examples/tandem.toml for every key and its type".into(),
        })
        .collect()
}

/// Checks configuration text (plus the environment overrides); see [`load`].
pub fn parse(text: &str) -> Result<Config, Vec<Problem>> {
    use figment::Figment;
    use figment::providers::{Format as _, Toml};
    if let Err(e) = text.parse::<toml::Table>() {
        return Err(vec![Problem { path: "(file)".into(), message: e.message().to_owned(), hint: "the file is not valid TOML".into() }]);
    }
    let figment = Figment::from(Toml::string(text)).merge(environment());
    let raw: toml::Table = figment.extract().map_err(figment_problems)?;
    let mut problems = Vec::new();
    check_keys(&raw, "", "", &mut problems);
    if !problems.is_empty() {
        return Err(problems);
    }
    let config: Config = figment.extract().map_err(figment_problems)?;
    // With OAuth the app's secret signs in, not a password.
    let mut passwords = Vec::new();
    if !matches!(config.exchange.auth(), Ok(crate::exchange::ews::EwsAuth::OAuth)) {
        passwords.push(("exchange.password", &config.exchange.password));
    }
    if let Err(problem) = config.exchange.oauth2() {
        problems.push(problem);
    }
    if config.siebel.auth == SiebelAuth::Basic {
        passwords.insert(0, ("siebel.password", &config.siebel.password));
    }
    if let Err(problem) = config.siebel.oauth2() {
        problems.push(problem);
    }
    if let Err(problem) = config.siebel.zone() {
        problems.push(problem);
    }
    problems.extend(config.siebel.view_mode_problem());
    if let Some(problem) = config.admin.tls_problem() {
        problems.push(problem);
    }
    for (path, secret) in passwords {
        if let Err(why) = secret.resolve() {
            problems.push(Problem {
                path: path.into(),
                message: format!("the secret cannot be read: {why}"),
                hint: format!("set `{path}`, `{path}_env` or `{path}_file`"),
            });
        }
    }
    if let Err(problem) = config.admin.credential() {
        problems.push(problem);
    }
    check_transport("siebel", &config.siebel.transport(), &mut problems);
    check_transport("exchange", &config.exchange.transport(), &mut problems);
    problems.extend(config.exchange.problems());
    if let Some(graph) = &config.graph {
        check_transport("graph", &graph.transport(), &mut problems);
    }
    match &config.graph {
        Some(graph) => {
            if let Err(problem) = graph.credential() {
                problems.push(problem);
            }
        }
        None => {
            for (index, user) in config.users.iter().enumerate() {
                if user.backend == crate::domain::ExchangeBackend::Graph {
                    problems.push(Problem {
                        path: format!("users[{index}].backend"),
                        message: format!("{} is on Exchange Online but there is no [graph] section", user.login),
                        hint: "add [graph] with url, token_url, client_id and client_secret (or certificate_file)".into(),
                    });
                }
            }
        }
    }
    for (index, user) in config.users.iter().enumerate() {
        if let Some(Err(why)) = user.extract_start_date.as_deref().map(crate::domain::check_extract_start_date) {
            problems.push(Problem {
                path: format!("users[{index}].extract_start_date"),
                message: why,
                hint: "write it as 2026-01-01, or leave it out to use the filter plugin's extract_start_date".into(),
            });
        }
    }
    let share = config.sync.mass_delete_share;
    if !(share > 0.0 && share <= 1.0) {
        problems.push(Problem {
            path: "sync.mass_delete_share".into(),
            message: format!("{share} is not a share"),
            hint: "write a number above 0 and at most 1, like 0.5 (1 turns the guard off)".into(),
        });
    }
    for (domain, key_sets) in &config.sync.match_keys {
        if key_sets.iter().any(|key| key.is_empty() || key.iter().any(|name| name.trim().is_empty())) {
            problems.push(Problem {
                path: format!("sync.match_keys.{domain}"),
                message: "a key set is empty or names a blank field".into(),
                hint: "write lists of Exchange field names, like [[\"EmailAddress1\"], [\"EmailAddress1\", \"Surname\"]]".into(),
            });
        }
    }
    for (path, url) in [("siebel.url", &config.siebel.url), ("exchange.url", &config.exchange.url)] {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            problems.push(Problem {
                path: path.into(),
                message: format!("`{url}` is not an http(s) URL"),
                hint: "write the full URL, like https://host/siebel/v1.0".into(),
            });
        }
    }
    if let Err(why) = config.state.database_url() {
        problems.push(Problem {
            path: "state.database_url".into(),
            message: format!("cannot be read: {why}"),
            hint: "set `state.database_url_env` to a variable that holds postgres://USER:PASS@HOST/DB".into(),
        });
    }
    if let Ok(Some(url)) = config.state.database_url() {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            problems.push(Problem {
                path: "state.database_url".into(),
                message: "is not a PostgreSQL URL".into(),
                hint: "write postgres://USER:PASSWORD@HOST:PORT/DATABASE, or leave it out for SQLite".into(),
            });
        }
    }
    if config.schedule.max_concurrent == 0 {
        problems.push(Problem {
            path: "schedule.max_concurrent".into(),
            message: "must be at least 1".into(),
            hint: "SSSE's MaxTasks: how many users sync at once on this node".into(),
        });
    }
    for (name, group) in &config.schedule.groups {
        if group.interval_seconds == 0 {
            problems.push(Problem {
                path: format!("schedule.groups.{name}.interval_seconds"),
                message: "must be at least 1".into(),
                hint: "seconds between two syncs of a user of this group".into(),
            });
        }
    }
    for (index, user) in config.users.iter().enumerate() {
        if let Some(group) = &user.group {
            if group != "default" && !config.schedule.groups.contains_key(group) {
                problems.push(Problem {
                    path: format!("users[{index}].group"),
                    message: format!("no group `{group}` in [schedule.groups]"),
                    hint: "define the group, or leave `group` out for the default interval".into(),
                });
            }
        }
    }
    if config.schedule.interval_seconds == 0 {
        problems.push(Problem {
            path: "schedule.interval_seconds".into(),
            message: "must be at least 1".into(),
            hint: "use `manual = true` to turn scheduling off".into(),
        });
    }
    for (index, user) in config.users.iter().enumerate() {
        if !user.mailbox.contains('@') {
            problems.push(Problem {
                path: format!("users[{index}].mailbox"),
                message: format!("`{}` is not an SMTP address", user.mailbox),
                hint: "the mailbox must equal the Siebel employee's email address".into(),
            });
        }
    }
    if problems.is_empty() { Ok(config) } else { Err(problems) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The required sections, for tests that add their own.
    fn minimal() -> String {
        format!("{WITHOUT_ADMIN}\n[admin]\ntoken = \"t\"\n")
    }

    #[test]
    fn example_configuration_is_valid() {
        let text = include_str!("../../examples/tandem.toml");
        // The example reads its secrets from the environment; give them inline here.
        let config = parse(&text.replace("password_env = \"TANDEM_SIEBEL_PASSWORD\"", "password = \"x\"")
            .replace("password_env = \"TANDEM_EWS_PASSWORD\"", "password = \"y\"")
            .replace("token_env = \"TANDEM_ADMIN_TOKEN\"", "token = \"z\""));
        let config = match config {
            Ok(config) => config,
            Err(problems) => panic!("examples/tandem.toml is invalid: {problems:?}"),
        };
        assert_eq!(config.users.len(), 1);
        assert_eq!(config.siebel.password.resolve().as_deref(), Ok("x"));
    }

    #[test]
    fn unknown_keys_are_named_by_path_with_a_hint() {
        let text = r#"
            [state]
            dir = "/tmp/x"
            [siebel]
            url = "http://a/siebel/v1.0"
            user = "u"
            passwrd = "p"
            [exchange]
            url = "http://b/EWS/Exchange.asmx"
            user = "u"
            password = "p"
            [[users]]
            login = "A"
            mailbox = "a@example.com"
            mail = "x"
        "#;
        let problems = parse(text).err().unwrap_or_default();
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, vec!["siebel.passwrd", "users[0].mail"]);
        assert!(problems[0].hint.contains("`password`"), "{}", problems[0].hint);
    }

    #[test]
    fn bad_values_and_missing_secrets_are_reported_together() {
        let text = r#"
            [state]
            dir = "/tmp/x"
            [siebel]
            url = "siebel.example.com"
            user = "u"
            password_env = "TANDEM_TEST_SURELY_UNSET_VARIABLE"
            [exchange]
            url = "http://b/EWS/Exchange.asmx"
            user = "u"
            password = "p"
            [admin]
            token = "t"
        "#;
        let problems = parse(text).err().unwrap_or_default();
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, vec!["siebel.password", "siebel.url"]);
        assert!(!format!("{problems:?}").contains("\"p\""), "secrets never appear in messages");
    }

    #[test]
    fn sync_levels_come_from_the_group_then_the_user() {
        let text = minimal()
            + r#"
            [schedule.groups.sales]
            interval_seconds = 120
            domains = { calendar = "export", tasks = "none" }
            [[users]]
            login = "A"
            mailbox = "a@example.com"
            group = "sales"
            [users.domains]
            tasks = "full"
            [[users]]
            login = "B"
            mailbox = "b@example.com"
            group = "sales"
            [[users]]
            login = "C"
            mailbox = "c@example.com"
        "#;
        let config = match parse(&text) {
            Ok(config) => config,
            Err(problems) => panic!("{problems:?}"),
        };
        use crate::domain::{Domains, SyncLevel};
        let a = config.user_domains(&config.users[0]).expect("levels set");
        assert_eq!((a.calendar, a.tasks, a.contacts), (SyncLevel::Export, SyncLevel::Full, SyncLevel::Full));
        let b = config.user_domains(&config.users[1]).expect("levels set");
        assert_eq!((b.calendar, b.tasks), (SyncLevel::Export, SyncLevel::None));
        assert_eq!(config.user_domains(&config.users[2]), None::<Domains>, "nothing configured: the API decides");
        let problems = parse(&text.replace("tasks = \"none\"", "task = \"none\"")).err().unwrap_or_default();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].path, "schedule.groups.sales.domains.task");
    }

    #[test]
    fn a_users_extract_start_date_must_be_a_date() {
        let user = |date: &str| {
            minimal() + &format!("\n[[users]]\nlogin = \"A\"\nmailbox = \"a@example.com\"\nextract_start_date = \"{date}\"\n")
        };
        let config = parse(&user("2026-01-01")).unwrap_or_else(|problems| panic!("{problems:?}"));
        assert_eq!(config.users[0].extract_start_date.as_deref(), Some("2026-01-01"));
        let problems = parse(&user("01/01/2026")).err().unwrap_or_default();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].path, "users[0].extract_start_date");
        assert!(problems[0].message.contains("2026-01-01"), "says what to write: {problems:?}");
    }

    #[test]
    fn a_user_on_graph_needs_a_graph_section() {
        let text = minimal()
            + r#"
            [[users]]
            login = "A"
            mailbox = "a@example.com"
            backend = "graph"
        "#;
        let problems = parse(&text).err().unwrap_or_default();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].path, "users[0].backend");
        let with_graph = text.replace(
            "[admin]",
            "[graph]\nurl = \"http://g/v1.0\"\ntoken_url = \"http://g/t/oauth2/v2.0/token\"\nclient_id = \"c\"\nclient_secret = \"s\"\n[admin]",
        );
        let config = match parse(&with_graph) {
            Ok(config) => config,
            Err(problems) => panic!("{problems:?}"),
        };
        assert_eq!(config.users[0].backend, crate::domain::ExchangeBackend::Graph);
        assert_eq!(config.graph.map(|g| g.client_secret.resolve()), Some(Ok("s".to_owned())));
        let problems = parse(&with_graph.replace("client_secret = ", "client_secrett = ")).err().unwrap_or_default();
        assert_eq!(problems.first().map(|p| p.path.as_str()), Some("graph.client_secrett"), "{problems:?}");
    }

    #[test]
    fn environment_overrides_and_groups() {
        let text = &(minimal()
            + r#"
            [schedule]
            max_concurrent = 3
            [schedule.groups.emea]
            interval_seconds = 120
            [schedule.groups.apac]
            interval_secs = 120
            [[users]]
            login = "A"
            mailbox = "a@example.com"
            group = "amer"
        "#);
        let problems = parse(text).err().unwrap_or_default();
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, vec!["schedule.groups.apac.interval_secs"], "{problems:?}");
        let fixed = text.replace("interval_secs = 120", "interval_seconds = 60");
        let problems = parse(&fixed).err().unwrap_or_default();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].path, "users[0].group");
        let config = match parse(&fixed.replace("\"amer\"", "\"emea\"")) {
            Ok(config) => config,
            Err(problems) => panic!("{problems:?}"),
        };
        let settings = config.schedule.scheduler_settings(Some("node-1"));
        assert_eq!(settings.max_concurrent, 3);
        assert_eq!(settings.groups["emea"], std::time::Duration::from_secs(120));
        assert_eq!(settings.node, "node-1");

        // TANDEM_SECTION__KEY overrides the file; a variable without `__` is not config.
        figment::Jail::expect_with(|jail| {
            jail.set_env("TANDEM_SCHEDULE__MAX_CONCURRENT", "7");
            jail.set_env("TANDEM_ADMIN_TOKEN", "not-a-config-key");
            let config = parse(&fixed.replace("\"amer\"", "\"emea\"")).map_err(|p| format!("{p:?}"))?;
            assert_eq!(config.schedule.max_concurrent, 7);
            Ok(())
        });
    }

    #[test]
    fn a_mass_delete_share_outside_0_to_1_is_named_by_its_path() {
        let base = format!("{WITHOUT_ADMIN}\n[admin]\ntoken = \"t\"\n");
        let config = parse(&base).unwrap_or_else(|p| panic!("{p:?}"));
        assert_eq!(config.sync.mass_delete_guard(), crate::engine::MassDeleteGuard::default());
        for bad in ["0", "1.5", "-0.2"] {
            let problems = parse(&format!("{base}[sync]\nmass_delete_share = {bad}\n")).err().unwrap_or_default();
            assert_eq!(problems.len(), 1, "{bad}: {problems:?}");
            assert_eq!(problems[0].path, "sync.mass_delete_share");
        }
        let config = parse(&format!("{base}[sync]\nmass_delete_share = 0.2\nmass_delete_min_items = 3\n"))
            .unwrap_or_else(|p| panic!("{p:?}"));
        assert_eq!(config.sync.mass_delete_guard(), crate::engine::MassDeleteGuard { share: 0.2, min_items: 3 });
    }

    const WITHOUT_ADMIN: &str = r#"
        [state]
        dir = "/tmp/x"
        [siebel]
        url = "http://a/siebel/v1.0"
        user = "u"
        password = "p"
        [exchange]
        url = "http://b/EWS/Exchange.asmx"
        user = "u"
        password = "p"
    "#;

    #[test]
    fn the_admin_listener_takes_a_certificate_and_its_key_or_neither() {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = rcgen::KeyPair::generate().expect("a key");
        let certificate =
            rcgen::CertificateParams::new(vec!["tandem.example.com".to_owned()]).expect("params").self_signed(&key).expect("a certificate");
        let (cert_file, key_file) = (dir.path().join("admin.pem"), dir.path().join("admin.key"));
        std::fs::write(&cert_file, certificate.pem()).expect("written");
        std::fs::write(&key_file, key.serialize_pem()).expect("written");
        let other_key = dir.path().join("other.key");
        std::fs::write(&other_key, rcgen::KeyPair::generate().expect("a key").serialize_pem()).expect("written");
        let with = |lines: &str| parse(&format!("{WITHOUT_ADMIN}\n[admin]\ntoken = \"t\"\n{lines}\n"));
        let paths = |problems: Vec<Problem>| problems.into_iter().map(|p| p.path).collect::<Vec<_>>();

        let config = with(&format!("tls_cert_file = {cert_file:?}\ntls_key_file = {key_file:?}")).expect("valid");
        assert_eq!(config.admin.tls_files().map(|f| f.cert_file), Some(cert_file.clone()));
        assert_eq!(with("").expect("valid").admin.tls_files(), None, "plain HTTP by default");
        assert_eq!(paths(with(&format!("tls_cert_file = {cert_file:?}")).err().unwrap_or_default()), vec!["admin.tls_key_file"]);
        assert_eq!(paths(with(&format!("tls_key_file = {key_file:?}")).err().unwrap_or_default()), vec!["admin.tls_cert_file"]);
        let mismatch = with(&format!("tls_cert_file = {cert_file:?}\ntls_key_file = {other_key:?}")).err().unwrap_or_default();
        assert_eq!(paths(mismatch.clone()), vec!["admin.tls_cert_file"], "{mismatch:?}");
        let not_a_key = with(&format!("tls_cert_file = {cert_file:?}\ntls_key_file = {cert_file:?}")).err().unwrap_or_default();
        assert_eq!(paths(not_a_key), vec!["admin.tls_key_file"]);
    }

    #[test]
    fn siebel_signs_in_with_basic_or_oauth() {
        let basic = parse(&format!("{WITHOUT_ADMIN}\n[admin]\ntoken = \"t\"\n")).expect("valid");
        assert_eq!((basic.siebel.auth, basic.siebel.oauth2().ok().flatten().is_none()), (SiebelAuth::Basic, true));
        let oauth = WITHOUT_ADMIN.replace("password = \"p\"\n        [exchange]", "auth = \"oauth\"\n        [exchange]");
        let problems = parse(&format!("{oauth}\n[admin]\ntoken = \"t\"\n")).err().unwrap_or_default();
        assert_eq!(problems.iter().map(|p| p.path.as_str()).collect::<Vec<_>>(), vec!["siebel.oauth"], "{problems:?}");
        let text = format!(
            "{oauth}\n[siebel.oauth]\ntoken_url = \"https://idp.example.com/oauth2/v1/token\"\nclient_id = \"tandem\"\nclient_secret = \"s\"\n[admin]\ntoken = \"t\"\n"
        );
        let config = parse(&text).expect("no Siebel password is needed with OAuth");
        let settings = config.siebel.oauth2().ok().flatten().expect("OAuth settings");
        assert_eq!((settings.client_id.as_str(), settings.client_secret.as_str()), ("tandem", "s"));
        let typo = text.replace("client_id", "client_ld");
        let problems = parse(&typo).err().unwrap_or_default();
        assert!(problems.iter().any(|p| p.path == "siebel.oauth.client_ld"), "{problems:?}");
        let bad_scheme = WITHOUT_ADMIN.replace("password = \"p\"\n        [exchange]", "auth = \"kerberos\"\n        [exchange]");
        assert!(parse(&format!("{bad_scheme}\n[admin]\ntoken = \"t\"\n")).is_err());
    }

    #[test]
    fn admin_token_digest_replaces_the_token() {
        let digest = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08";
        let config = match parse(&format!("{WITHOUT_ADMIN}\n[admin]\ntoken_sha256 = \"{digest}\"\n")) {
            Ok(config) => config,
            Err(problems) => panic!("{problems:?}"),
        };
        let credential = config.admin.credential().map_err(|p| p.to_string());
        let expected = crate::secrets::token_digest("test");
        assert_eq!(credential, Ok(AdminCredential::Sha256(expected)));
        // The service takes it as `sha256:HEX` and checks tokens against the same digest.
        let setting = AdminCredential::Sha256(expected).service_setting();
        assert_eq!(crate::service::admin_token_digest(&setting).ok(), Some(expected));
        assert_eq!(crate::service::admin_token_digest("test").ok(), Some(expected));

        // From a file or the environment, like the other secrets.
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("digest");
        std::fs::write(&file, format!("{}\n", digest.to_lowercase())).expect("write");
        let text = format!("{WITHOUT_ADMIN}\n[admin]\ntoken_sha256_file = {:?}\n", file.display().to_string());
        let config = parse(&text).map_err(|p| format!("{p:?}"));
        assert_eq!(config.map(|c| c.admin.credential().ok()), Ok(Some(AdminCredential::Sha256(expected))));
        figment::Jail::expect_with(|jail| {
            jail.set_env("TANDEM_TEST_DIGEST_VAR", digest);
            let config = parse(&format!("{WITHOUT_ADMIN}\n[admin]\ntoken_sha256_env = \"TANDEM_TEST_DIGEST_VAR\"\n"))
                .map_err(|p| format!("{p:?}"))?;
            assert_eq!(config.admin.credential().ok(), Some(AdminCredential::Sha256(expected)));
            Ok(())
        });
    }

    #[test]
    fn malformed_or_doubled_digests_are_named_with_a_hint() {
        // In a jail, like every test that sets variables, so none sees another's.
        figment::Jail::expect_with(|_jail| {
            malformed_or_doubled_digests();
            Ok(())
        });
    }

    fn malformed_or_doubled_digests() {
        for bad in ["abc", "zz86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"] {
            let problems = parse(&format!("{WITHOUT_ADMIN}\n[admin]\ntoken_sha256 = \"{bad}\"\n")).err().unwrap_or_default();
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert_eq!(problems[0].path, "admin.token_sha256");
            assert!(problems[0].hint.contains("tandem hash-token"), "{}", problems[0].hint);
            assert!(!problems[0].to_string().contains(bad), "the value is not echoed: {}", problems[0]);
        }
        let both = format!(
            "{WITHOUT_ADMIN}\n[admin]\ntoken = \"t\"\ntoken_sha256 = \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"\n"
        );
        let problems = parse(&both).err().unwrap_or_default();
        assert_eq!(problems.iter().map(|p| p.path.as_str()).collect::<Vec<_>>(), vec!["admin.token_sha256"]);
        // Neither given: the token is asked for, and the hint names the digest too.
        let problems = parse(WITHOUT_ADMIN).err().unwrap_or_default();
        assert_eq!(problems.iter().map(|p| p.path.as_str()).collect::<Vec<_>>(), vec!["admin.token"]);
        assert!(problems[0].hint.contains("token_sha256"), "{}", problems[0].hint);
        // A misspelt key next to the digest is named too.
        let typo = format!("{WITHOUT_ADMIN}\n[admin]\ntoken_sha265 = \"x\"\n");
        let problems = parse(&typo).err().unwrap_or_default();
        assert_eq!(problems[0].path, "admin.token_sha265");
        assert!(problems[0].hint.contains("token_sha256"), "{}", problems[0].hint);
    }

    /// `[exchange] auth`: basic by default; ntlm and negotiate (any case) need a user with a
    /// domain, named by its key when it has none; an unknown scheme is named with the choices.
    #[test]
    fn exchange_auth_and_the_user_it_needs_are_checked() {
        use crate::exchange::ews::EwsAuth;
        let text = |auth: &str, user: &str| {
            format!(
                "[state]\ndir = \"/tmp/x\"\n[siebel]\nurl = \"http://a/siebel/v1.0\"\nuser = \"u\"\npassword = \"p\"\n\
                 [exchange]\nurl = \"https://b/EWS/Exchange.asmx\"\nuser = '{user}'\npassword = \"p\"\n{auth}\n[admin]\ntoken = \"t\"\n"
            )
        };
        let read = |auth: &str, user: &str| parse(&text(auth, user)).map(|config| config.exchange.auth().ok());
        assert_eq!(read("", "svc").ok(), Some(Some(EwsAuth::Basic)));
        assert_eq!(read("auth = \"basic\"", "svc").ok(), Some(Some(EwsAuth::Basic)));
        assert_eq!(read("auth = \"ntlm\"", r"CONTOSO\svc-tandem").ok(), Some(Some(EwsAuth::Ntlm)));
        assert_eq!(read("auth = \"Negotiate\"", "svc-tandem@contoso.com").ok(), Some(Some(EwsAuth::Negotiate)));

        let problems = parse(&text("auth = \"ntlm\"", "svc-tandem")).err().unwrap_or_default();
        assert_eq!(problems.iter().map(|p| p.path.as_str()).collect::<Vec<_>>(), ["exchange.user"], "{problems:?}");
        assert!(problems[0].hint.contains(r"DOMAIN\user") && problems[0].message.contains("ntlm"), "{}", problems[0]);

        let problems = parse(&text("auth = \"kerberos\"", r"CONTOSO\svc")).err().unwrap_or_default();
        assert_eq!(problems.iter().map(|p| p.path.as_str()).collect::<Vec<_>>(), ["exchange.auth"], "{problems:?}");
        assert!(problems[0].message.contains("kerberos") && problems[0].hint.contains("\"ntlm\""), "{}", problems[0]);

        let problems = parse(&text("authentication = \"ntlm\"", "svc")).err().unwrap_or_default();
        assert_eq!(problems.first().map(|p| (p.path.as_str(), p.hint.as_str())), Some(("exchange.authentication", "known keys here: url, user, password, password_env, password_file, ca_file, proxy, auth, oauth")));

        // OAuth needs its app and token endpoint, and then no password.
        let problems = parse(&text("auth = \"oauth\"", "svc")).err().unwrap_or_default();
        assert_eq!(problems.iter().map(|p| p.path.as_str()).collect::<Vec<_>>(), ["exchange.oauth"], "{problems:?}");
        let oauth = "[state]\ndir = \"/tmp/x\"\n[siebel]\nurl = \"http://a/siebel/v1.0\"\nuser = \"u\"\npassword = \"p\"\n\
                     [exchange]\nurl = \"https://outlook.office365.com/EWS/Exchange.asmx\"\nuser = \"svc@contoso.com\"\nauth = \"oauth\"\n\
                     [exchange.oauth]\ntoken_url = \"https://login.microsoftonline.com/contoso/oauth2/v2.0/token\"\n\
                     client_id = \"app\"\nclient_secret = \"s3cret\"\n[admin]\ntoken = \"t\"\n";
        let config = parse(oauth).unwrap_or_else(|problems| panic!("{problems:?}"));
        assert_eq!(config.exchange.auth().ok(), Some(EwsAuth::OAuth));
        let endpoint = config.exchange.oauth2().ok().flatten().expect("the token endpoint");
        assert_eq!((endpoint.client_id.as_str(), endpoint.scope.as_deref()), ("app", Some("https://outlook.office365.com/.default")));
    }

    #[test]
    fn ca_files_and_proxies_are_checked_with_their_key_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, tandem_sim::SimTls::generate().expect("a CA").ca_pem()).expect("written");
        let not_pem = dir.path().join("not.pem");
        std::fs::write(&not_pem, "hello").expect("written");
        let missing = dir.path().join("missing.pem");
        let graph = "[graph]\nurl = \"https://g/v1.0\"\ntoken_url = \"https://g/t/oauth2/v2.0/token\"\nclient_id = \"c\"\nclient_secret = \"s\"\n";
        let with = |siebel: &str, exchange: &str, graph_extra: &str| {
            minimal()
                .replacen("[siebel]\n", &format!("[siebel]\n{siebel}\n"), 1)
                .replacen("[exchange]\n", &format!("[exchange]\n{exchange}\n"), 1)
                + graph
                + graph_extra
        };
        let quoted = |path: &Path| format!("{:?}", path.display().to_string());
        let good = with(
            &format!("ca_file = {}", quoted(&ca)),
            &format!("ca_file = {}\nproxy = \"http://proxy.example:3128\"", quoted(&ca)),
            &format!("ca_file = {}\n", quoted(&ca)),
        );
        let config = parse(&good).unwrap_or_else(|problems| panic!("{problems:?}"));
        assert_eq!(config.siebel.transport().ca_file.as_deref(), Some(ca.as_path()));
        assert_eq!(config.exchange.transport().proxy.as_deref(), Some("http://proxy.example:3128"));
        assert_eq!(config.graph.map(|g| g.transport().ca_file), Some(Some(ca.clone())));

        let bad = with(
            &format!("ca_file = {}", quoted(&missing)),
            &format!("ca_file = {}", quoted(&not_pem)),
            "proxy = \"ftp://proxy.example\"\n",
        );
        let problems = parse(&bad).err().unwrap_or_default();
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, vec!["siebel.ca_file", "exchange.ca_file", "graph.proxy"], "{problems:?}");
        assert!(problems[0].message.contains("missing.pem") && problems[0].hint.contains("path"), "{}", problems[0]);
        assert!(problems[1].message.contains("not a PEM bundle") && problems[1].hint.contains("PEM"), "{}", problems[1]);

        let typo = with("cafile = \"x\"", "", "");
        let problems = parse(&typo).err().unwrap_or_default();
        assert_eq!(problems.first().map(|p| (p.path.as_str(), p.hint.as_str())), Some(("siebel.cafile", "did you mean `ca_file`?")));
    }

    /// `[graph]` signs in with a secret or a certificate, exactly one; each mistake is named
    /// by the key to fix.
    #[test]
    fn graph_takes_a_secret_or_a_certificate_and_names_the_key_at_fault() {
        let dir = tempfile::tempdir().expect("temp dir");
        let app = tandem_sim::graph::AppCertificate::generate(30).expect("openssl makes a certificate");
        let (certificate, key) = app.write(dir.path(), "app").expect("written");
        let other = tandem_sim::graph::AppCertificate::generate(30).expect("another");
        let (_, other_key) = other.write(dir.path(), "other").expect("written");
        let quoted = |path: &Path| format!("{:?}", path.display().to_string());
        let graph = |credential: &str| {
            minimal() + "[graph]\nurl = \"https://g/v1.0\"\ntoken_url = \"https://g/t/oauth2/v2.0/token\"\nclient_id = \"c\"\n" + credential
        };
        let paths = |text: &str| -> Vec<String> { parse(text).err().unwrap_or_default().into_iter().map(|p| p.path).collect() };

        let with_certificate = graph(&format!("certificate_file = {}\nprivate_key_file = {}\n", quoted(&certificate), quoted(&key)));
        let config = parse(&with_certificate).unwrap_or_else(|problems| panic!("{problems:?}"));
        let connector = config.graph.expect("graph").connector().expect("a connector configuration");
        assert_eq!(connector.credential.kind(), "certificate");
        assert!(connector.credential.expires_at().is_some());
        // One PEM holding both.
        let combined = dir.path().join("combined.pem");
        std::fs::write(&combined, app.certificate_pem.clone() + &app.private_key_pem).expect("written");
        assert_eq!(paths(&graph(&format!("certificate_file = {}\n", quoted(&combined)))), Vec::<String>::new());

        let secret = graph("client_secret = \"s\"\nclient_secret_expires = \"2027-06-30\"\n");
        let config = parse(&secret).unwrap_or_else(|problems| panic!("{problems:?}"));
        let credential = config.graph.expect("graph").credential().expect("a secret");
        assert_eq!(credential.kind(), "secret");
        assert_eq!(credential.expires_at().map(|at| at.to_rfc3339()), Some("2027-06-30T00:00:00+00:00".into()));
        assert!(!format!("{credential:?}").contains("\"s\""), "{credential:?}");

        assert_eq!(paths(&graph("")), ["graph.client_secret"]);
        assert_eq!(paths(&graph(&format!("client_secret = \"s\"\ncertificate_file = {}\n", quoted(&certificate)))), ["graph.certificate_file"]);
        assert_eq!(paths(&graph(&format!("private_key_file = {}\n", quoted(&key)))), ["graph.certificate_file"]);
        assert_eq!(paths(&graph(&format!("certificate_file = {}\n", quoted(&certificate)))), ["graph.certificate_file"], "no key in it");
        assert_eq!(
            paths(&graph(&format!("certificate_file = {}\nprivate_key_file = {}\n", quoted(&certificate), quoted(&other_key)))),
            ["graph.private_key_file"],
        );
        assert_eq!(
            paths(&graph(&format!("certificate_file = {}\nprivate_key_file = {}\n", quoted(&certificate), quoted(&dir.path().join("nope.key"))))),
            ["graph.private_key_file"],
        );
        assert_eq!(paths(&graph(&format!("certificate_file = {}\nprivate_key_file = {}\n", quoted(&key), quoted(&key)))), ["graph.certificate_file"]);
        assert_eq!(paths(&graph("client_secret = \"s\"\nclient_secret_expires = \"30/06/2027\"\n")), ["graph.client_secret_expires"]);
        assert_eq!(
            paths(&graph(&format!("certificate_file = {}\nprivate_key_file = {}\nclient_secret_expires = \"2027-06-30\"\n", quoted(&certificate), quoted(&key)))),
            ["graph.client_secret_expires"],
        );
        let problems = parse(&graph(&format!("certificate_file = {}\nprivate_key_file = {}\n", quoted(&certificate), quoted(&other_key)))).err().unwrap_or_default();
        assert!(problems[0].message.contains("is not the key of the certificate") && !problems[0].hint.is_empty(), "{problems:?}");
    }

    /// Every key `check-config` knows is shown in `examples/tandem.toml` (set or commented).
    #[test]
    fn every_known_key_is_documented_in_the_example() {
        let example = include_str!("../../examples/tandem.toml");
        let assigned: Vec<&str> = example
            .lines()
            .map(|l| l.trim_start().trim_start_matches('#').trim_start())
            .filter_map(|l| l.split_once(" = ").map(|(key, _)| key))
            .collect();
        for (table, keys) in known_keys() {
            for key in keys {
                let documented = if table.is_empty() {
                    example.contains(&format!("[{key}")) || example.contains(&format!("[[{key}"))
                } else if *key == "groups" {
                    example.contains("[schedule.groups.")
                } else if *key == "match_keys" {
                    example.contains("[sync.match_keys]")
                } else if *key == "oauth" {
                    example.contains("[siebel.oauth]")
                } else {
                    assigned.contains(key)
                };
                assert!(documented, "`{table}.{key}` is not documented in examples/tandem.toml");
            }
        }
        // The admin API listens on loopback unless told otherwise.
        assert!(AdminConfig::default().listen.ip().is_loopback());
    }
}

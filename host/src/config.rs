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
    pub siebel: EndpointConfig,
    pub exchange: EndpointConfig,
    #[serde(default)]
    pub schedule: ScheduleConfig,
    #[serde(default)]
    pub users: Vec<UserConfig>,
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
    #[serde(flatten)]
    pub token: Secret,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self { listen: default_admin_listen(), token: Secret::default() }
    }
}

fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8480))
}

/// A server Tandem logs in to: its URL, user and password.
#[derive(Debug, Clone, Deserialize)]
pub struct EndpointConfig {
    pub url: String,
    pub user: String,
    #[serde(flatten)]
    pub password: Secret,
}

/// A secret given inline, by environment variable or by file. Its `Debug` hides the value.
#[derive(Clone, Default, Deserialize)]
pub struct Secret {
    #[serde(alias = "password", alias = "token")]
    value: Option<String>,
    #[serde(alias = "password_env", alias = "token_env")]
    env: Option<String>,
    #[serde(alias = "password_file", alias = "token_file")]
    file: Option<PathBuf>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
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
    /// Dispatcher groups: their own interval (SSSE's PIMSI Dispatcher groups).
    #[serde(default)]
    pub groups: BTreeMap<String, GroupConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    pub interval_seconds: u64,
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

/// The known keys of each table, for naming unknown ones. `[]` marks an array of tables.
fn known_keys() -> BTreeMap<&'static str, &'static [&'static str]> {
    const ENDPOINT: &[&str] = &["url", "user", "password", "password_env", "password_file"];
    BTreeMap::from([
        ("", &["state", "node", "plugins", "admin", "siebel", "exchange", "schedule", "users"][..]),
        ("state", &["dir", "database_url", "database_url_env"][..]),
        ("node", &["name"][..]),
        ("plugins", &["dir"][..]),
        ("admin", &["listen", "token", "token_env", "token_file"][..]),
        ("siebel", ENDPOINT),
        ("exchange", ENDPOINT),
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
                "groups",
            ][..],
        ),
        ("schedule.groups.*", &["interval_seconds"][..]),
        ("users[]", &["login", "mailbox", "enabled", "group"][..]),
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
    for (path, secret) in [
        ("siebel.password", &config.siebel.password),
        ("exchange.password", &config.exchange.password),
        ("admin.token", &config.admin.token),
    ] {
        if let Err(why) = secret.resolve() {
            problems.push(Problem {
                path: path.into(),
                message: format!("the secret cannot be read: {why}"),
                hint: format!("set `{path}`, `{path}_env` or `{path}_file`"),
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
    fn environment_overrides_and_groups() {
        let text = r#"
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
            [admin]
            token = "t"
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
        "#;
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
}

//! The service configuration: one TOML file, every key documented in `examples/tandem.toml`.
//!
//! Checking walks the raw TOML first so that every unknown key is named by its path (with
//! the nearest known key as a hint), then reads the typed values. Secrets come from the
//! file, an environment variable or a file of their own, and are never printed.

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
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self { interval_seconds: default_interval(), manual: false }
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
        ("", &["state", "admin", "siebel", "exchange", "schedule", "users"][..]),
        ("state", &["dir"][..]),
        ("admin", &["listen", "token", "token_env", "token_file"][..]),
        ("siebel", ENDPOINT),
        ("exchange", ENDPOINT),
        ("schedule", &["interval_seconds", "manual"][..]),
        ("users[]", &["login", "mailbox", "enabled"][..]),
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
        let child_schema = if schema_path.is_empty() { key.clone() } else { format!("{schema_path}.{key}") };
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

/// Reads and checks a configuration; on failure every problem found is returned.
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

/// Checks configuration text; see [`load`].
pub fn parse(text: &str) -> Result<Config, Vec<Problem>> {
    let raw: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        vec![Problem { path: "(file)".into(), message: e.message().to_owned(), hint: "the file is not valid TOML".into() }]
    })?;
    let mut problems = Vec::new();
    check_keys(&raw, "", "", &mut problems);
    if !problems.is_empty() {
        return Err(problems);
    }
    let config: Config = toml::from_str(text).map_err(|e| {
        vec![Problem {
            path: "(file)".into(),
            message: e.message().to_owned(),
            hint: "see examples/tandem.toml for every key and its type".into(),
        }]
    })?;
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
}

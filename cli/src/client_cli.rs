//! The administrator's commands that talk to a running service through its admin API:
//! `tandem status`, `tandem users`, `tandem sync-list`, `tandem sync`.
//!
//! They find the service by `--admin URL` and `--token TOKEN`, or by the environment
//! variables `TANDEM_ADMIN_URL` and `TANDEM_ADMIN_TOKEN` (the token is never printed); an
//! https:// admin URL is verified like every connection, with `--admin-ca-file` for a
//! private CA.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

/// Where the admin API is.
#[derive(Debug, Clone, Args)]
pub struct AdminTarget {
    /// Admin API base URL, like http://127.0.0.1:8480.
    #[arg(long, env = "TANDEM_ADMIN_URL")]
    pub admin: String,
    /// Admin bearer token.
    #[arg(long, env = "TANDEM_ADMIN_TOKEN", hide_env_values = true)]
    pub token: String,
    /// A PEM file of CA certificates to trust for an https:// admin URL, beside the system's
    /// (when the admin listener's certificate comes from a private CA).
    #[arg(long, env = "TANDEM_ADMIN_CA_FILE")]
    pub admin_ca_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// List the user map.
    List,
    /// Add a user: Siebel login and mailbox.
    Add { login: String, mailbox: String },
    /// Let a user sync again (links and sync list were kept).
    Enable { login: String },
    /// Stop syncing a user; links and sync list are kept.
    Disable { login: String },
    /// Re-extract a user: forget links and cursors, keep the sync list.
    Reset { login: String },
}

#[derive(Debug, Subcommand)]
pub enum SyncListCommand {
    /// Show a user's sync list.
    Show { login: String },
    /// "Add To Sync List".
    Add { login: String, siebel_id: String },
    /// "Remove From Sync List".
    Remove { login: String, siebel_id: String },
}

/// A small client of the admin API.
struct Client {
    http: reqwest::Client,
    target: AdminTarget,
}

impl Client {
    fn new(target: AdminTarget) -> anyhow::Result<Self> {
        let transport = tandem_host::transport::Transport { ca_file: target.admin_ca_file.clone(), proxy: None };
        let http = tandem_host::transport::client_builder(&transport)
            .map_err(|error| anyhow::anyhow!("--admin-ca-file: {error}; {}", error.hint()))?
            .timeout(Duration::from_secs(600))
            .build()?;
        Ok(Self { http, target })
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.target.admin.trim_end_matches('/'));
        let mut request = self.http.request(method.clone(), &url).bearer_auth(&self.target.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = request.send().await.with_context(|| format!("cannot reach the admin API at {url}"))?;
        let status = answer.status();
        let text = answer.text().await?;
        if !status.is_success() {
            let detail = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["detail"].as_str().map(str::to_owned))
                .unwrap_or(text);
            bail!("{method} {path} answered {status}: {detail}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// `tandem status`: one line per user with last sync, result and lag.
pub async fn status(target: AdminTarget) -> anyhow::Result<ExitCode> {
    let client = Client::new(target)?;
    let status = client.call(reqwest::Method::GET, "/api/v1/status", None).await?;
    println!("node: {}", status["node"].as_str().unwrap_or("?"));
    println!("{:<16} {:<28} {:<8} {:<27} {:<7} {:>8}", "LOGIN", "MAILBOX", "ENABLED", "LAST SYNC", "RESULT", "LAG (s)");
    for user in status["users"].as_array().into_iter().flatten() {
        println!(
            "{:<16} {:<28} {:<8} {:<27} {:<7} {:>8}",
            user["login"].as_str().unwrap_or(""),
            user["mailbox"].as_str().unwrap_or(""),
            user["enabled"].as_bool().map_or("?", |e| if e { "yes" } else { "no" }),
            user["last_sync"].as_str().unwrap_or("never"),
            user["result"].as_str().unwrap_or("-"),
            user["lag_seconds"].as_i64().map_or("-".into(), |lag| lag.to_string()),
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn users(target: AdminTarget, command: UsersCommand) -> anyhow::Result<ExitCode> {
    let client = Client::new(target)?;
    let answer = match command {
        UsersCommand::List => client.call(reqwest::Method::GET, "/api/v1/users", None).await?,
        UsersCommand::Add { login, mailbox } => {
            client
                .call(reqwest::Method::POST, "/api/v1/users", Some(json!({"login": login, "mailbox": mailbox})))
                .await?
        }
        UsersCommand::Enable { login } => {
            client.call(reqwest::Method::PATCH, &format!("/api/v1/users/{login}"), Some(json!({"enabled": true}))).await?
        }
        UsersCommand::Disable { login } => {
            client.call(reqwest::Method::PATCH, &format!("/api/v1/users/{login}"), Some(json!({"enabled": false}))).await?
        }
        UsersCommand::Reset { login } => client.call(reqwest::Method::POST, &format!("/api/v1/users/{login}/reset"), None).await?,
    };
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(ExitCode::SUCCESS)
}

pub async fn sync_list(target: AdminTarget, command: SyncListCommand) -> anyhow::Result<ExitCode> {
    let client = Client::new(target)?;
    let answer = match command {
        SyncListCommand::Show { login } => {
            client.call(reqwest::Method::GET, &format!("/api/v1/users/{login}/sync-list"), None).await?
        }
        SyncListCommand::Add { login, siebel_id } => {
            client
                .call(
                    reqwest::Method::POST,
                    &format!("/api/v1/users/{login}/sync-list"),
                    Some(json!({"siebel_id": siebel_id})),
                )
                .await?
        }
        SyncListCommand::Remove { login, siebel_id } => {
            client.call(reqwest::Method::DELETE, &format!("/api/v1/users/{login}/sync-list/{siebel_id}"), None).await?
        }
    };
    if !answer.is_null() {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// `tandem sync --user X` or `--all`: runs the syncs one after another with a progress bar
/// on standard error and one line of counts per user on standard output. Exit 1 when any
/// run failed. With `--dry-run`, each user's planned writes are printed instead, one a line
/// (`side action domain id <- from`), and nothing is written.
pub async fn sync(target: AdminTarget, users: Vec<String>, all: bool, dry_run: bool) -> anyhow::Result<ExitCode> {
    let client = Client::new(target)?;
    let logins: Vec<String> = if all {
        let listed = client.call(reqwest::Method::GET, "/api/v1/users", None).await?;
        listed
            .as_array()
            .into_iter()
            .flatten()
            .filter(|u| u["enabled"].as_bool().unwrap_or(false))
            .filter_map(|u| u["login"].as_str().map(str::to_owned))
            .collect()
    } else {
        users
    };
    if logins.is_empty() {
        bail!("name users with --user LOGIN, or pass --all");
    }
    let mut failed = 0;
    for (done, login) in logins.iter().enumerate() {
        progress(done, logins.len(), login);
        let path = format!("/api/v1/users/{login}/sync?wait=true{}", if dry_run { "&dry_run=true" } else { "" });
        match client.call(reqwest::Method::POST, &path, Some(json!({}))).await {
            Ok(report) => {
                let counts = |side: &str| {
                    format!(
                        "+{} ~{} -{}",
                        report[side]["created"].as_u64().unwrap_or(0),
                        report[side]["updated"].as_u64().unwrap_or(0),
                        report[side]["deleted"].as_u64().unwrap_or(0)
                    )
                };
                let status = report["status"].as_str().unwrap_or("?");
                if status != "ok" {
                    failed += 1;
                }
                println!(
                    "{login}: {status}  siebel {}  exchange {}  conflicts {}",
                    counts("siebel"),
                    counts("exchange"),
                    report["conflicts"].as_u64().unwrap_or(0)
                );
                for error in report["errors"].as_array().into_iter().flatten() {
                    println!("  {}", error.as_str().unwrap_or(""));
                }
                if dry_run {
                    let plan = report["plan"].as_array().cloned().unwrap_or_default();
                    println!("  plan: {} write(s), none made", plan.len());
                    for write in &plan {
                        let text = |key: &str| write[key].as_str().unwrap_or("-").to_owned();
                        println!(
                            "  {:<8} {:<6} {:<17} {} <- {}",
                            text("side"),
                            text("action"),
                            text("domain"),
                            text("id"),
                            text("from")
                        );
                    }
                }
            }
            Err(error) => {
                failed += 1;
                println!("{login}: failed  {error:#}");
            }
        }
    }
    progress(logins.len(), logins.len(), "done");
    eprintln!();
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn progress(done: usize, total: usize, label: &str) {
    const WIDTH: usize = 30;
    let filled = WIDTH * done / total.max(1);
    eprint!("\r[{}{}] {done}/{total} {label:<20}", "#".repeat(filled), "-".repeat(WIDTH - filled));
    let _ = std::io::stderr().flush();
}

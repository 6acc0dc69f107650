//! The service as an administrator runs it: the scheduler, the admin API's user management
//! and history, re-extraction, and the `tandem` client commands.

use std::time::{Duration, Instant};

use anyhow::Context as _;

use serde_json::json;

use crate::harness::{Harness, metric, xml_attr, xml_text};

/// With the scheduler on, a contact put on the sync list reaches Exchange without anyone
/// asking for a sync, and an Exchange edit comes back on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_syncs_users_on_its_own() -> anyhow::Result<()> {
    let h = Harness::start_scheduled(Duration::from_millis(300)).await?;
    let mailbox = "auto@example.com";
    h.admin_post("/api/v1/users", json!({"login": "AUTO", "mailbox": mailbox}), 201).await?;
    let id = h.siebel_insert(json!({"First Name": "Mary", "Last Name": "Jackson", "Job Title": "Engineer"})).await?;
    h.admin_post("/api/v1/users/AUTO/sync-list", json!({"siebel_id": id}), 201).await?;
    h.wait_for_contact(mailbox, Duration::from_secs(20)).await?;
    // The contact is written mid-run; the run is in the history once it has finished.
    let started = std::time::Instant::now();
    let runs = loop {
        let runs = h.admin_get("/api/v1/users/AUTO/runs").await?;
        if runs.as_array().is_some_and(|r| !r.is_empty()) || started.elapsed() > Duration::from_secs(20) {
            break runs;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(runs.as_array().is_some_and(|r| !r.is_empty()), "scheduled runs are in the history: {runs}");
    let user = h.admin_get("/api/v1/users/AUTO").await?;
    assert!(user["schedule"]["next_run_ms"].as_i64().is_some(), "{user}");
    h.stop().await;
    Ok(())
}

/// PATCH changes the user map; a disabled user is not synced; reset re-extracts without
/// duplicating anything on either side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_management_and_reset_without_duplicates() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let mailbox = "reset@example.com";
    h.admin_post("/api/v1/users", json!({"login": "RESET", "mailbox": mailbox}), 201).await?;
    let id = h.siebel_insert(json!({"First Name": "Dorothy", "Last Name": "Vaughan", "Email Address": "dv@nasa.example"})).await?;
    h.admin_post("/api/v1/users/RESET/sync-list", json!({"siebel_id": id}), 201).await?;
    // A contact made in Outlook is imported into Siebel.
    h.demo.ews_sim.create_contact(mailbox, &[("GivenName", "Christine"), ("Surname", "Darden")])?;
    let report = h.sync("RESET").await?;
    assert_eq!(report["exchange"]["created"], 1, "{report}");
    assert_eq!(report["siebel"]["created"], 1, "{report}");
    let siebel_before = h.siebel_count().await?;

    let reset = h.admin_post("/api/v1/users/RESET/reset", json!({}), 200).await?;
    assert_eq!(reset["reset"], true);
    // An Outlook edit made while the links are gone (as after a crash between the Siebel
    // create and the link) is written, not taken as already synced.
    let mut darden = None;
    for item in h.ews_find_contacts(mailbox).await? {
        let xml = h.ews_get_contact(mailbox, &item).await?;
        if xml_text(&xml, "Surname").as_deref() == Some("Darden") {
            darden = Some((item, xml_attr(&xml, "ItemId", "ChangeKey").unwrap_or_default()));
        }
    }
    let (darden, change_key) = darden.expect("the Outlook contact is in Exchange");
    h.ews_set_job_title(mailbox, &darden, &change_key, "Aeronautical Engineer").await?;
    let report = h.sync("RESET").await?;
    assert_eq!(report["status"], "ok", "{report}");
    let imported = h.siebel_query("Contact", "[Last Name] = 'Darden'").await?;
    assert_eq!(imported.len(), 1, "{imported:?}");
    assert_eq!(imported[0]["Job Title"], "Aeronautical Engineer", "the Outlook edit reached Siebel: {report}");
    assert_eq!(report["exchange"]["created"], 0, "re-extract adopts the existing copy: {report}");
    assert_eq!(report["siebel"]["created"], 0, "re-extract finds the imported contact: {report}");
    assert_eq!(h.ews_find_contacts(mailbox).await?.len(), 2, "no duplicate in Exchange");
    assert_eq!(h.siebel_count().await?, siebel_before, "no duplicate in Siebel");
    let report = h.sync("RESET").await?;
    assert_eq!(report["exchange"], json!({"created": 0, "updated": 0, "deleted": 0}), "{report}");

    // Disable: the user keeps links and sync list but is not synced.
    let user = h.admin_patch("/api/v1/users/RESET", json!({"enabled": false, "group": "emea"})).await?;
    assert_eq!(user["enabled"], false);
    assert_eq!(user["group"], "emea");
    h.siebel_update(&id, json!({"Job Title": "Supervisor"})).await?;
    let report = h.sync("RESET").await?;
    assert_eq!(report["exchange"]["updated"], 0, "a disabled user is not synced: {report}");
    h.admin_patch("/api/v1/users/RESET", json!({"enabled": true})).await?;
    let report = h.sync("RESET").await?;
    assert_eq!(report["exchange"]["updated"], 1, "re-enabled, the edit goes through: {report}");
    let list = h.admin_get("/api/v1/users/RESET/sync-list").await?;
    assert_eq!(list.as_array().map(Vec::len), Some(2), "sync list kept across disable: {list}");

    for path in ["/api/v1/users/RESET/conflicts", "/api/v1/users/RESET/quarantine", "/api/v1/status"] {
        h.admin_get(path).await?;
    }
    let openapi = h.admin_get("/api/v1/openapi.json").await?;
    for path in ["/api/v1/users", "/api/v1/users/{login}/sync", "/api/v1/plugins", "/api/v1/users/{login}/reset"] {
        assert!(openapi["paths"][path].is_object(), "OpenAPI document lacks {path}");
    }
    h.stop().await;
    Ok(())
}

/// `tandem users|sync-list|sync|status` drive a running service through the admin API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_commands_drive_a_running_service() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let id = h.siebel_insert(json!({"First Name": "Annie", "Last Name": "Easley"})).await?;
    let tandem = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
            .args(args)
            .env("TANDEM_ADMIN_URL", &h.demo.admin_url)
            .env("TANDEM_ADMIN_TOKEN", &h.demo.admin_token)
            .output()
    };
    let out = tandem(&["users", "add", "CLI", "cli@example.com"])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = tandem(&["sync-list", "add", "CLI", &id])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = tandem(&["sync", "--user", "CLI"])?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("CLI: ok") && stdout.contains("exchange +1 ~0 -0"), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("1/1"), "a progress bar on stderr");
    let out = tandem(&["status"])?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.lines().any(|l| l.starts_with("CLI ") && l.contains(" ok ")), "{stdout}");
    // A wrong token is refused with the API's message and a failure exit code.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["status", "--admin", &h.demo.admin_url, "--token", "wrong"])
        .output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    h.stop().await;
    Ok(())
}

/// An Outlook edit reaches Siebel within seconds: the Exchange streaming notification wakes
/// the user long before the next scheduled run (the interval here is a minute).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_notifications_trigger_a_sync_within_seconds() -> anyhow::Result<()> {
    let h = Harness::start_scheduled(Duration::from_secs(60)).await?;
    let mailbox = "notified@example.com";
    h.admin_post("/api/v1/users", json!({"login": "NOTIFIED", "mailbox": mailbox}), 201).await?;
    let id = h.siebel_insert(json!({"First Name": "Evelyn", "Last Name": "Boyd", "Job Title": "Analyst"})).await?;
    h.admin_post("/api/v1/users/NOTIFIED/sync-list", json!({"siebel_id": id}), 201).await?;
    let item_id = h.wait_for_contact(mailbox, Duration::from_secs(20)).await?;
    // Adding the user made the watcher subscribe to its mailbox; give that a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let edited = Instant::now();
    h.demo.ews_sim.update_item_fields(mailbox, &item_id, &[("JobTitle", "Mathematician")])?;
    loop {
        let record = h.siebel_get(&id).await?.unwrap_or_default();
        if record["Job Title"] == "Mathematician" {
            break;
        }
        anyhow::ensure!(
            edited.elapsed() < Duration::from_secs(15),
            "the Exchange edit did not reach Siebel before the next scheduled run"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("Exchange edit reached Siebel in {:?}", edited.elapsed());
    h.stop().await;
    Ok(())
}

/// A Siebel edit reaches Exchange within seconds: Siebel change detection wakes the users
/// whose sync list holds the record, long before the next scheduled run (a minute here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn siebel_change_detection_triggers_a_sync_within_seconds() -> anyhow::Result<()> {
    let h = Harness::start_scheduled(Duration::from_secs(60)).await?;
    let mailbox = "dispatched@example.com";
    h.admin_post("/api/v1/users", json!({"login": "DISPATCHED", "mailbox": mailbox}), 201).await?;
    let id = h.siebel_insert(json!({"First Name": "Frances", "Last Name": "Allen", "Job Title": "Researcher"})).await?;
    h.admin_post("/api/v1/users/DISPATCHED/sync-list", json!({"siebel_id": id}), 201).await?;
    let item_id = h.wait_for_contact(mailbox, Duration::from_secs(20)).await?;
    let edited = Instant::now();
    h.siebel_update(&id, json!({"Job Title": "Fellow"})).await?;
    loop {
        let fields = h.demo.ews_sim.contact_fields(mailbox, &item_id).unwrap_or_default();
        if fields.get("JobTitle").map(String::as_str) == Some("Fellow") {
            break;
        }
        anyhow::ensure!(
            edited.elapsed() < Duration::from_secs(15),
            "the Siebel edit did not reach Exchange before the next scheduled run"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("Siebel edit reached Exchange in {:?}", edited.elapsed());
    h.stop().await;
    Ok(())
}

/// `/metrics` has every family of the metrics contract, and each moves with a real sync: records per
/// direction, remote requests by system and kind, plugin call time, queue depth and lag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_cover_records_requests_plugins_queue_and_lag() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let mailbox = "metrics@example.com";
    h.admin_post("/api/v1/users", json!({"login": "METRICS", "mailbox": mailbox}), 201).await?;
    h.admin_post("/api/v1/users", json!({"login": "IDLE", "mailbox": "idle@example.com"}), 201).await?;
    let id = h.siebel_insert(json!({"First Name": "Hedy", "Last Name": "Lamarr", "Job Title": "Inventor"})).await?;
    h.admin_post("/api/v1/users/METRICS/sync-list", json!({"siebel_id": id}), 201).await?;
    h.demo.ews_sim.create_contact(mailbox, &[("GivenName", "Mary"), ("Surname", "Somerville")])?;
    let before = h.scrape_metrics().await?;
    for family in [
        "tandem_syncs_total",
        "tandem_records_total",
        "tandem_conflicts_total",
        "tandem_errors_total",
        "tandem_remote_requests_total",
        "tandem_plugin_call_seconds",
        "tandem_queue_users",
        "tandem_sync_lag_max_seconds",
        "tandem_users_by_sync_lag",
        "tandem_users_never_synced",
    ] {
        assert!(before.contains(&format!("# TYPE {family} ")), "/metrics lacks {family}:\n{before}");
    }
    assert_eq!(metric(&before, "tandem_users_never_synced"), 2.0, "{before}");
    let ready = reqwest::get(format!("{}/readyz", h.demo.admin_url)).await?;
    assert_eq!(ready.status(), 200, "/readyz answers when the store does");
    assert_eq!(metric(&before, "tandem_queue_users{state=\"due\"}"), 2.0, "new users are due at once: {before}");

    let report = h.sync("METRICS").await?;
    assert_eq!(report["exchange"]["created"], 1, "{report}");
    assert_eq!(report["siebel"]["created"], 1, "{report}");
    let after = h.scrape_metrics().await?;
    let moved = |series: &str| metric(&after, series) - metric(&before, series);
    assert_eq!(moved("tandem_syncs_total{result=\"ok\"}"), 1.0);
    assert_eq!(moved("tandem_records_total{direction=\"siebel_to_exchange\",op=\"created\"}"), 1.0, "{after}");
    assert_eq!(moved("tandem_records_total{direction=\"exchange_to_siebel\",op=\"created\"}"), 1.0, "{after}");
    // The connectors counted what the emulators saw.
    let stats = h.stats().await?;
    let siebel_gets = metric(&after, "tandem_remote_requests_total{system=\"siebel\",kind=\"query\"}");
    assert!(siebel_gets >= 1.0 && siebel_gets <= stats.siebel("GET") as f64, "{siebel_gets} vs {}", stats.siebel("GET"));
    assert_eq!(metric(&after, "tandem_remote_requests_total{system=\"siebel\",kind=\"insert\"}"), stats.siebel("POST") as f64 - 1.0,
        "every Siebel insert but the test's own");
    for op in ["SyncFolderItems", "CreateItem"] {
        let counted = metric(&after, &format!("tandem_remote_requests_total{{system=\"exchange\",kind=\"{op}\"}}"));
        assert_eq!(counted, stats.ews(op) as f64, "{op}: the connector and the emulator agree");
        assert!(counted >= 1.0, "{op}");
    }
    // Plugin calls of the default contact mapping, both ways, were timed.
    for function in ["to_exchange", "to_siebel"] {
        let series = format!("tandem_plugin_call_seconds_count{{plugin=\"contact-mapping\",function=\"{function}\"}}");
        assert!(moved(&series) >= 1.0, "{series} did not move:\n{after}");
        let inf = format!("tandem_plugin_call_seconds_bucket{{plugin=\"contact-mapping\",function=\"{function}\",le=\"+Inf\"}}");
        assert_eq!(metric(&after, &inf), metric(&after, &series), "+Inf bucket = count");
    }
    // Queue and lag: one user synced just now, the other still never synced and due.
    assert_eq!(metric(&after, "tandem_users_never_synced"), 1.0, "{after}");
    assert_eq!(metric(&after, "tandem_queue_users{state=\"due\"}"), 1.0, "{after}");
    assert_eq!(metric(&after, "tandem_users_by_sync_lag{le=\"30\"}"), 1.0, "{after}");
    assert!(metric(&after, "tandem_sync_lag_max_seconds") < 30.0, "{after}");
    h.stop().await;
    Ok(())
}

/// `tandem check-config` names a malformed `admin.token_sha256` by its path with a hint and
/// exits 2; `tandem hash-token` prints the digest of the token on standard input.
#[test]
fn token_digest_helper_and_check_config() -> anyhow::Result<()> {
    let digest = hash_token("s3cret-admin-token\n")?;
    use sha2::Digest as _;
    assert_eq!(digest, hex::encode(sha2::Sha256::digest(b"s3cret-admin-token")), "the SHA-256 of the token, in hex");
    assert_eq!(hash_token("s3cret-admin-token")?, digest, "a trailing newline is not part of the token");
    assert_ne!(hash_token("another-token\n")?, digest);
    let empty = std::process::Command::new(env!("CARGO_BIN_EXE_tandem")).arg("hash-token").output()?;
    assert_eq!(empty.status.code(), Some(2), "no token on stdin is an error");

    let dir = tempfile::tempdir()?;
    let config = |admin: &str| {
        format!(
            "[state]\ndir = \"{}\"\n[siebel]\nurl = \"http://127.0.0.1:1/siebel/v1.0\"\nuser = \"u\"\npassword = \"p\"\n\
             [exchange]\nurl = \"http://127.0.0.1:1/EWS/Exchange.asmx\"\nuser = \"u\"\npassword = \"p\"\n[admin]\n{admin}\n",
            dir.path().display()
        )
    };
    let check = |text: String| -> anyhow::Result<std::process::Output> {
        let path = dir.path().join("tandem.toml");
        std::fs::write(&path, text)?;
        Ok(std::process::Command::new(env!("CARGO_BIN_EXE_tandem")).arg("check-config").arg(&path).output()?)
    };
    let good = check(config(&format!("token_sha256 = \"{digest}\"")))?;
    assert_eq!(good.status.code(), Some(0), "{}", String::from_utf8_lossy(&good.stdout));
    let bad = check(config("token_sha256 = \"not-a-digest\""))?;
    let out = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(2), "{out}");
    assert!(out.starts_with("admin.token_sha256: ") && out.contains("hint:") && out.contains("hash-token"), "{out}");
    Ok(())
}

/// `printf TOKEN | tandem hash-token`.
fn hash_token(token: &str) -> anyhow::Result<String> {
    use std::io::Write as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
        .arg("hash-token")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    child.stdin.take().context("stdin")?.write_all(token.as_bytes())?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(out.status.success(), "tandem hash-token failed");
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// `tandem serve --config FILE` as a child process, its log on standard error in a file.
pub(crate) struct ServeProcess {
    child: tokio::process::Child,
    admin: String,
    http: reqwest::Client,
    token: String,
}

impl ServeProcess {
    pub(crate) async fn spawn(config: &std::path::Path, log: &std::path::Path, token: &str, json_logs: bool) -> anyhow::Result<Self> {
        Self::start(config, log, token, json_logs, None).await
    }

    /// Like `spawn`, for an admin listener serving HTTPS with a certificate `ca_file` signed.
    pub(crate) async fn spawn_trusting(
        config: &std::path::Path,
        log: &std::path::Path,
        token: &str,
        ca_file: Option<&std::path::Path>,
    ) -> anyhow::Result<Self> {
        Self::start(config, log, token, false, ca_file).await
    }

    /// The admin API's base URL the service printed.
    pub(crate) fn admin_url(&self) -> &str {
        &self.admin
    }

    async fn start(
        config: &std::path::Path,
        log: &std::path::Path,
        token: &str,
        json_logs: bool,
        ca_file: Option<&std::path::Path>,
    ) -> anyhow::Result<Self> {
        use tokio::io::AsyncBufReadExt as _;
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_tandem"));
        if json_logs {
            command.args(["--log-format", "json"]);
        }
        let mut child = command
            .arg("serve")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(log)?)
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let admin = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(url) = line.strip_prefix("admin: ") {
                    return anyhow::Ok(url.to_owned());
                }
            }
            anyhow::bail!("tandem serve exited before printing `admin: URL`: {}", std::fs::read_to_string(log)?)
        })
        .await
        .context("tandem serve did not start within 60 s")??;
        let transport = tandem_host::transport::Transport { ca_file: ca_file.map(Into::into), proxy: None };
        let http = tandem_host::transport::client_builder(&transport)?.timeout(Duration::from_secs(30)).build()?;
        Ok(Self { child, admin, http, token: token.to_owned() })
    }

    pub(crate) async fn call(&self, method: reqwest::Method, path: &str, body: Option<serde_json::Value>) -> anyhow::Result<(u16, serde_json::Value)> {
        let mut request = self.http.request(method, format!("{}{path}", self.admin)).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = request.send().await?;
        let status = answer.status().as_u16();
        Ok((status, answer.json().await.unwrap_or(serde_json::Value::Null)))
    }

    /// `GET /metrics` (no token needed), as text.
    pub(crate) async fn metrics(&self) -> anyhow::Result<String> {
        Ok(self.http.get(format!("{}/metrics", self.admin)).send().await?.error_for_status()?.text().await?)
    }

    pub(crate) async fn get(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let (status, body) = self.call(reqwest::Method::GET, path, None).await?;
        anyhow::ensure!(status == 200, "GET {path} answered {status}: {body}");
        Ok(body)
    }

    /// Waits for the scheduler's first good run of `login`, then asks for runs ("sync now")
    /// until one writes nothing: the state has settled. A user watched through change
    /// notifications is not polled every interval, so a second run is asked for, not awaited.
    pub(crate) async fn settle(&self, login: &str, within: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            let runs = self.get(&format!("/api/v1/users/{login}/runs")).await?;
            if runs.as_array().and_then(|r| r.first()).is_some_and(|newest| newest["status"] == "ok") {
                break;
            }
            anyhow::ensure!(started.elapsed() < within, "no good run of {login}: {runs}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let nothing = json!({"created": 0, "updated": 0, "deleted": 0});
        loop {
            let (status, report) = self.call(reqwest::Method::POST, &format!("/api/v1/users/{login}/sync?wait=true"), None).await?;
            if status == 200 && report["status"] == "ok" && report["siebel"] == nothing && report["exchange"] == nothing {
                return Ok(());
            }
            // 409: a scheduled run holds the user; any other answer is retried until the end.
            anyhow::ensure!(started.elapsed() < within, "{login} did not settle: {status} {report}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Sends SIGKILL (`kill -9`): no shutdown, no flush, whatever the process was doing.
    pub(crate) async fn kill(mut self) -> anyhow::Result<()> {
        self.child.start_kill()?;
        tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await??;
        Ok(())
    }

    /// Sends SIGTERM; returns the exit code and how long the process took to exit.
    pub(crate) async fn terminate(mut self) -> anyhow::Result<(Option<i32>, Duration)> {
        let pid = self.child.id().context("tandem serve already exited")?;
        let sent = Instant::now();
        let status = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status()?;
        anyhow::ensure!(status.success(), "kill -TERM failed");
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await??;
        Ok((status.code(), sent.elapsed()))
    }
}

/// A configuration for `tandem serve` against the harness's emulators.
pub(crate) fn serve_config(h: &Harness, state: &std::path::Path, admin: &str, schedule: &str, users: &str) -> String {
    let (siebel, ews) = (&h.demo.siebel_auth, &h.demo.ews_auth);
    format!(
        "[state]\ndir = {state:?}\n\n[admin]\nlisten = \"127.0.0.1:0\"\n{admin}\n\n\
         [siebel]\nurl = \"{}\"\nuser = \"{}\"\npassword = \"{}\"\n\n\
         [exchange]\nurl = \"{}\"\nuser = \"{}\"\npassword = \"{}\"\n\n[schedule]\n{schedule}\n\n{users}\n",
        h.demo.siebel_url, siebel.user, siebel.password, h.demo.ews_url, ews.user, ews.password,
        state = state.display().to_string(),
    )
}

/// SIGTERM while a sync is in flight (every Siebel reply is slowed to 1.5 s): `tandem serve`
/// exits 0 within its shutdown deadline, the cut run is recorded as interrupted (or it
/// finished), and after a restart the next runs converge with no duplicate and nothing lost
/// on either side. The service knows only the SHA-256 of its admin token here
/// (`admin.token_sha256`) and logs JSON (`--log-format json`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_slow_sync_exits_in_time_and_a_restart_resyncs_without_duplicates() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let mailbox = "shutdown@example.com";
    let mut siebel_ids = Vec::new();
    for (first, last) in [("Rosalind", "Franklin"), ("Lise", "Meitner"), ("Chien-Shiung", "Wu"), ("Emmy", "Noether"), ("Marie", "Curie")] {
        siebel_ids.push(h.siebel_insert(json!({"First Name": first, "Last Name": last})).await?);
    }
    h.demo.ews_sim.create_contact(mailbox, &[("GivenName", "Barbara"), ("Surname", "McClintock")])?;
    let siebel_before = h.siebel_count().await?;

    let token = "shutdown-test-admin-token";
    let digest = hash_token(token)?;
    let dir = tempfile::tempdir()?;
    let state = dir.path().join("state");
    let config = dir.path().join("tandem.toml");
    let deadline = Duration::from_secs(1);
    std::fs::write(
        &config,
        serve_config(
            &h,
            &state,
            &format!("token_sha256 = \"{digest}\""),
            &format!("interval_seconds = 1\nshutdown_deadline_seconds = {}", deadline.as_secs()),
            &format!("[[users]]\nlogin = \"SHUT\"\nmailbox = \"{mailbox}\"\nenabled = false"),
        ),
    )?;
    let first_log = dir.path().join("first.log");
    let serve = ServeProcess::spawn(&config, &first_log, token, true).await?;
    // Only the token whose digest is configured gets in.
    let wrong = serve.http.get(format!("{}/api/v1/users", serve.admin)).bearer_auth("wrong").send().await?;
    assert_eq!(wrong.status(), 401);
    for id in &siebel_ids {
        let (status, body) = serve
            .call(reqwest::Method::POST, "/api/v1/users/SHUT/sync-list", Some(json!({"siebel_id": id})))
            .await?;
        assert_eq!(status, 201, "{body}");
    }
    // Every Siebel request now takes 1.5 s; enabling the user starts its first sync.
    h.demo.siebel_sim.control().faults.set(tandem_sim::FaultSettings { rate: 1.0, kinds: vec!["slow".into()] });
    let (status, body) = serve.call(reqwest::Method::PATCH, "/api/v1/users/SHUT", Some(json!({"enabled": true}))).await?;
    assert_eq!(status, 200, "{body}");
    let waiting = Instant::now();
    loop {
        let user = serve.get("/api/v1/users/SHUT").await?;
        if user["schedule"]["lease_node"].is_string() {
            break;
        }
        anyhow::ensure!(waiting.elapsed() < Duration::from_secs(20), "the scheduler did not start the sync: {user}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Into the run: past the first slow Siebel query, in the middle of the writes.
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let (code, took) = serve.terminate().await?;
    assert_eq!(code, Some(0), "tandem serve exits 0 on SIGTERM: {}", std::fs::read_to_string(&first_log)?);
    assert!(took < deadline + Duration::from_secs(5), "exited {took:?} after SIGTERM; the deadline is {deadline:?}");
    eprintln!("tandem serve exited {took:?} after SIGTERM");
    // --log-format json: every line on standard error is a JSON object with a level.
    let log = std::fs::read_to_string(&first_log)?;
    assert!(log.lines().count() >= 2, "{log}");
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let entry: serde_json::Value = serde_json::from_str(line).with_context(|| format!("not JSON: {line}"))?;
        assert!(entry["level"].is_string() && entry["fields"].is_object(), "{line}");
    }
    assert!(log.contains("scheduler stopping"), "{log}");

    // Restart with Siebel back to normal: the next runs pick up where the cut one stopped.
    h.demo.siebel_sim.control().faults.set(tandem_sim::FaultSettings::default());
    let serve = ServeProcess::spawn(&config, &dir.path().join("second.log"), token, false).await?;
    // A good run after the restart, then one that writes nothing: the state is settled.
    serve.settle("SHUT", Duration::from_secs(60)).await?;
    let runs = serve.get("/api/v1/users/SHUT/runs").await?;
    let statuses: Vec<&str> = runs.as_array().into_iter().flatten().filter_map(|r| r["status"].as_str()).collect();
    eprintln!("run history after the restart (newest first): {statuses:?}");
    assert!(
        statuses.contains(&"interrupted") || statuses.iter().filter(|s| **s == "ok").count() >= 3,
        "the cut run is recorded as interrupted, or it finished: {statuses:?}"
    );
    // Nothing lost, nothing doubled: five Siebel contacts and the Outlook one in Exchange,
    // the Outlook one imported into Siebel exactly once.
    let mut names = Vec::new();
    for id in h.ews_find_contacts(mailbox).await? {
        let item = h.ews_get_contact(mailbox, &id).await?;
        names.push(crate::harness::xml_text(&item, "Surname").unwrap_or_default());
    }
    names.sort();
    assert_eq!(names, vec!["Curie", "Franklin", "McClintock", "Meitner", "Noether", "Wu"], "Exchange after the restart");
    assert_eq!(h.siebel_count().await?, siebel_before + 1, "the Outlook contact is in Siebel once");
    let (code, _) = serve.terminate().await?;
    assert_eq!(code, Some(0));
    h.stop().await;
    Ok(())
}

/// Every command and subcommand answers `--help` with its usage, exit 0.
#[test]
fn every_subcommand_has_help() -> anyhow::Result<()> {
    let commands: &[&[&str]] = &[
        &[],
        &["serve"],
        &["demo"],
        &["sim"],
        &["check-config"],
        &["hash-token"],
        &["status"],
        &["sync"],
        &["users"],
        &["users", "list"],
        &["users", "add"],
        &["users", "enable"],
        &["users", "disable"],
        &["users", "reset"],
        &["sync-list"],
        &["sync-list", "show"],
        &["sync-list", "add"],
        &["sync-list", "remove"],
        &["plugin"],
        &["plugin", "new"],
        &["plugin", "pack"],
        &["plugin", "keygen"],
        &["plugin", "sign"],
        &["plugin", "verify"],
        &["plugin", "install"],
        &["plugin", "list"],
    ];
    for command in commands {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
            .args(*command)
            .arg("--help")
            .env_remove("TANDEM_ADMIN_URL")
            .env_remove("TANDEM_ADMIN_TOKEN")
            .output()?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "`tandem {} --help` failed: {}", command.join(" "), String::from_utf8_lossy(&out.stderr));
        // `Usage: tandem users --admin <ADMIN> --token <TOKEN> list`: the words in order.
        let usage = stdout.lines().find_map(|l| l.strip_prefix("Usage: tandem")).unwrap_or("(none)");
        let words: Vec<&str> = usage.split_whitespace().filter(|w| !w.starts_with(['-', '<', '['])).collect();
        assert!(words.starts_with(command), "`tandem {} --help` prints the usage `{usage}`", command.join(" "));
        assert!(stdout.contains("Options:"), "{stdout}");
    }
    Ok(())
}

/// The systemd unit and the Dockerfile start commands the binary accepts, and systemd waits
/// longer than the example's shutdown deadline before it kills the service.
#[test]
fn packaging_files_run_real_commands() -> anyhow::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let unit = std::fs::read_to_string(root.join("examples/tandem.service"))?;
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile"))?;
    let example = std::fs::read_to_string(root.join("examples/tandem.toml"))?;
    let mut command_lines: Vec<Vec<String>> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("ExecStart=").or_else(|| l.strip_prefix("ExecStartPre=")))
        .map(|l| l.split_whitespace().skip(1).map(str::to_owned).collect())
        .collect();
    let cmd = dockerfile.lines().find_map(|l| l.strip_prefix("CMD ")).context("Dockerfile has no CMD")?;
    command_lines.push(serde_json::from_str::<Vec<String>>(cmd)?);
    assert!(command_lines.len() >= 3, "{command_lines:?}");
    for args in &command_lines {
        // The subcommand and its options parse (`--help` stops before anything runs).
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tandem")).args(args).arg("--help").output()?;
        assert!(out.status.success(), "`tandem {}` is not a valid command line", args.join(" "));
    }
    assert!(command_lines.iter().any(|a| a.first().map(String::as_str) == Some("serve")), "{command_lines:?}");
    let stop: u64 = unit.lines().find_map(|l| l.strip_prefix("TimeoutStopSec=")).context("no TimeoutStopSec")?.trim().parse()?;
    let deadline: u64 = example
        .lines()
        .find_map(|l| l.strip_prefix("shutdown_deadline_seconds = "))
        .context("no shutdown_deadline_seconds in the example")?
        .trim()
        .parse()?;
    assert!(stop > deadline, "systemd kills after {stop} s, before the {deadline} s shutdown deadline");
    Ok(())
}

/// A user failing for a reason an administrator must fix (Exchange refuses the service
/// account) backs off between runs and is disabled after `disable_after_failures`, with the
/// reason in the admin API; the other user keeps syncing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failures_back_off_then_disable_the_user_with_a_reason() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("tandem.toml");
    let token = "backoff-test-token";
    let text = serve_config(
        &h,
        &dir.path().join("state"),
        &format!("token = \"{token}\""),
        "interval_seconds = 1\nmax_backoff_seconds = 2\ndisable_after_failures = 2",
        "[[users]]\nlogin = \"REFUSED\"\nmailbox = \"refused@example.com\"",
    )
    .replace(&format!("password = \"{}\"", h.demo.ews_auth.password), "password = \"not-the-password\"");
    std::fs::write(&config, text)?;
    let serve = ServeProcess::spawn(&config, &dir.path().join("serve.log"), token, false).await?;
    let started = Instant::now();
    let user = loop {
        let user = serve.get("/api/v1/users/REFUSED").await?;
        if user["enabled"] == false {
            break user;
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(30), "the user was not disabled: {user}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let reason = user["disabled_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("disabled after 2 failed runs") && reason.contains("credentials"), "{user}");
    let runs = serve.get("/api/v1/users/REFUSED/runs").await?;
    let failed: Vec<&serde_json::Value> = runs.as_array().into_iter().flatten().filter(|r| r["status"] == "failed").collect();
    assert_eq!(failed.len(), 2, "no run after the user was disabled: {runs}");
    let time = |run: &serde_json::Value, key: &str| chrono::DateTime::parse_from_rfc3339(run[key].as_str().unwrap_or_default());
    // Newest first: the second try waited out the backoff (interval × 2 after one failure).
    let gap = time(failed[0], "started_at")? - time(failed[1], "finished_at")?;
    assert!(gap >= chrono::TimeDelta::milliseconds(1500), "the retry came {gap} after the failure");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let runs_later = serve.get("/api/v1/users/REFUSED/runs").await?;
    assert_eq!(runs_later.as_array().map(Vec::len), runs.as_array().map(Vec::len), "a disabled user is left alone");
    let (code, _) = serve.terminate().await?;
    assert_eq!(code, Some(0));
    h.stop().await;
    Ok(())
}

/// How many of `spans` (start, end) overlap at most at one instant.
fn max_overlap(spans: &[(chrono::DateTime<chrono::FixedOffset>, chrono::DateTime<chrono::FixedOffset>)]) -> usize {
    let mut events: Vec<(chrono::DateTime<chrono::FixedOffset>, i32)> =
        spans.iter().flat_map(|(start, end)| [(*start, 1), (*end, -1)]).collect();
    // Ends before starts at the same instant: touching runs do not overlap.
    events.sort_by_key(|(t, delta)| (*t, *delta));
    let (mut now, mut most) = (0i32, 0i32);
    for (_, delta) in events {
        now += delta;
        most = most.max(now);
    }
    usize::try_from(most).unwrap_or(0)
}

/// The global cap (SSSE's MaxTasks) and the initial-extract lane: with every Siebel reply
/// slowed to 1.5 s, four users' first syncs run one at a time (`initial_extract_slots = 1`),
/// and their later syncs at most two at a time (`max_concurrent = 2`), and two do overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_syncs_respect_the_cap_and_the_initial_extract_lane() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("tandem.toml");
    let token = "cap-test-token";
    let logins = ["CAP1", "CAP2", "CAP3", "CAP4"];
    let users: Vec<String> = logins
        .iter()
        .map(|l| format!("[[users]]\nlogin = \"{l}\"\nmailbox = \"{}@example.com\"\nenabled = false", l.to_lowercase()))
        .collect();
    std::fs::write(
        &config,
        serve_config(
            &h,
            &dir.path().join("state"),
            &format!("token = \"{token}\""),
            "interval_seconds = 1\nmax_concurrent = 2\ninitial_extract_slots = 1\nnotified_interval_seconds = 0",
            &users.join("\n\n"),
        ),
    )?;
    let serve = ServeProcess::spawn(&config, &dir.path().join("serve.log"), token, false).await?;
    for login in logins {
        let id = h.siebel_insert(json!({"First Name": "Cap", "Last Name": login})).await?;
        let (status, body) = serve
            .call(reqwest::Method::POST, &format!("/api/v1/users/{login}/sync-list"), Some(json!({"siebel_id": id})))
            .await?;
        assert_eq!(status, 201, "{body}");
    }
    h.demo.siebel_sim.control().faults.set(tandem_sim::FaultSettings { rate: 1.0, kinds: vec!["slow".into()] });
    for login in logins {
        serve.call(reqwest::Method::PATCH, &format!("/api/v1/users/{login}"), Some(json!({"enabled": true}))).await?;
    }
    let started = Instant::now();
    let (initial, later) = loop {
        let mut initial = Vec::new();
        let mut later = Vec::new();
        for login in logins {
            let runs = serve.get(&format!("/api/v1/users/{login}/runs")).await?;
            let mut spans: Vec<_> = runs
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| r["status"] == "ok")
                .filter_map(|r| {
                    let start = chrono::DateTime::parse_from_rfc3339(r["started_at"].as_str()?).ok()?;
                    let end = chrono::DateTime::parse_from_rfc3339(r["finished_at"].as_str()?).ok()?;
                    Some((start, end))
                })
                .collect();
            spans.sort();
            if let Some(first) = spans.first() {
                initial.push(*first);
            }
            later.extend(spans.into_iter().skip(1));
        }
        if initial.len() == logins.len() && later.len() >= 8 {
            break (initial, later);
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(60), "too few runs: {} initial, {} later", initial.len(), later.len());
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    h.demo.siebel_sim.control().faults.set(tandem_sim::FaultSettings::default());
    let report = format!("initial {initial:?}\nlater {later:?}");
    assert_eq!(max_overlap(&initial), 1, "initial extracts run one at a time:\n{report}");
    assert_eq!(max_overlap(&later), 2, "later runs use both slots and never more:\n{report}");
    let (code, _) = serve.terminate().await?;
    assert_eq!(code, Some(0));
    h.stop().await;
    Ok(())
}

/// A user whose changes are signalled (its mailbox watched, Siebel change detection up) is
/// polled only at the safety-net interval, not every scheduler interval; adding another user
/// subscribes only the new mailbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signalled_users_are_polled_only_as_a_safety_net() -> anyhow::Result<()> {
    let h = Harness::start_scheduled(Duration::from_millis(300)).await?;
    h.admin_post("/api/v1/users", json!({"login": "QUIET", "mailbox": "quiet@example.com"}), 201).await?;
    let started = Instant::now();
    loop {
        let user = h.admin_get("/api/v1/users/QUIET").await?;
        let next = user["schedule"]["next_run_ms"].as_i64().unwrap_or(0);
        if next > chrono::Utc::now().timestamp_millis() + 3_600_000 {
            break;
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(20), "QUIET is still polled every interval: {user}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let runs = h.admin_get("/api/v1/users/QUIET/runs").await?.as_array().map_or(0, Vec::len);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let later = h.admin_get("/api/v1/users/QUIET/runs").await?.as_array().map_or(0, Vec::len);
    assert_eq!(later, runs, "no run in 1.5 s although the interval is 300 ms");

    let subscribed = h.stats().await?.ews("Subscribe");
    h.admin_post("/api/v1/users", json!({"login": "NEWCOMER", "mailbox": "newcomer@example.com"}), 201).await?;
    let started = Instant::now();
    while h.stats().await?.ews("Subscribe") == subscribed {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(10), "the new mailbox was not subscribed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(h.stats().await?.ews("Subscribe"), subscribed + 1, "only the new mailbox is subscribed");
    h.stop().await;
    Ok(())
}

/// Each user is synced on the interval of their group (SSSE's dispatcher groups): a user of
/// a 1-second group is synced again and again while a user of the 60-second default group
/// is synced once (its first sync), both by the same `tandem serve`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_synced_on_the_interval_of_their_group() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("tandem.toml");
    let token = "group-test-token";
    let users = "[[users]]\nlogin = \"FASTLANE\"\nmailbox = \"fastlane@example.com\"\ngroup = \"fast\"\n\n\
                 [[users]]\nlogin = \"SLOWLANE\"\nmailbox = \"slowlane@example.com\"";
    let schedule = "interval_seconds = 60\nnotified_interval_seconds = 0\n\n[schedule.groups.fast]\ninterval_seconds = 1";
    std::fs::write(&config, serve_config(&h, &dir.path().join("state"), &format!("token = \"{token}\""), schedule, users))?;
    let serve = ServeProcess::spawn(&config, &dir.path().join("serve.log"), token, false).await?;
    let runs = |login: &'static str| {
        let serve = &serve;
        async move { Ok::<usize, anyhow::Error>(serve.get(&format!("/api/v1/users/{login}/runs")).await?.as_array().map_or(0, Vec::len)) }
    };
    let started = Instant::now();
    while runs("FASTLANE").await? < 4 || runs("SLOWLANE").await? < 1 {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(30), "no 4 runs of the 1-second group and a first run of the other in 30 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (fast, slow) = (runs("FASTLANE").await?, runs("SLOWLANE").await?);
    eprintln!("after {:?}: fast group {fast} runs, default group {slow}", started.elapsed());
    assert_eq!(slow, 1, "the 60-second group's user is synced once (its first sync) in that time");
    Ok(())
}

/// With `[graph] notification_url`, a change in an Exchange Online mailbox wakes its user at
/// once: the schedule's interval is an hour here, so only Graph's change notification (posted
/// to the webhook `tandem serve` mounts beside its admin API) can bring a contact made in
/// Outlook on the web to Siebel within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_in_exchange_online_wakes_its_user_through_a_graph_notification() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let graph = &h.demo.graph_sim;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let dir = tempfile::tempdir()?;
    let token = "graph-notify-token";
    let (siebel, ews, app) = (&h.demo.siebel_auth, &h.demo.ews_auth, graph.credentials());
    let mailbox = "online@example.com";
    let config = dir.path().join("tandem.toml");
    std::fs::write(
        &config,
        format!(
            "[state]\ndir = {state:?}\n\n[admin]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"{token}\"\n\n\
             [siebel]\nurl = \"{}\"\nuser = \"{}\"\npassword = \"{}\"\n\n\
             [exchange]\nurl = \"{}\"\nuser = \"{}\"\npassword = \"{}\"\n\n\
             [graph]\nurl = \"{}\"\ntoken_url = \"{}\"\nclient_id = \"{}\"\nclient_secret = \"{}\"\n\
             notification_url = \"http://127.0.0.1:{port}\"\n\n\
             [schedule]\ninterval_seconds = 3600\n\n\
             [[users]]\nlogin = \"ONLINE\"\nmailbox = \"{mailbox}\"\nbackend = \"graph\"\n",
            h.demo.siebel_url, siebel.user, siebel.password, h.demo.ews_url, ews.user, ews.password,
            h.demo.graph_url, h.demo.graph_token_url, app.user, app.password,
            state = dir.path().join("state").display().to_string(),
        ),
    )?;
    let serve = ServeProcess::spawn(&config, &dir.path().join("serve.log"), token, false).await?;
    // The first run (initial extract) is done and the mailbox's three subscriptions exist.
    let started = Instant::now();
    loop {
        let runs = serve.get("/api/v1/users/ONLINE/runs").await?;
        let ran = runs.as_array().is_some_and(|r| r.iter().any(|run| run["status"] == "ok"));
        if ran && graph.subscription_ids().len() >= 3 {
            break;
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(30), "no first run or no subscriptions: {runs}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    graph.create_item(mailbox, "contacts", json!({"givenName": "Nia", "surname": "Notified"}))?;
    let started = Instant::now();
    loop {
        let found = h
            .siebel_query("Contact", "[Last Name] = 'Notified'")
            .await?;
        if !found.is_empty() {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(15),
            "the Graph notification did not wake the user: {}",
            std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

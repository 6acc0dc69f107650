//! Benchmark of the scale goal: 10,000 enabled, idle users on one node (SQLite state).
//! Measures memory per idle user (RSS growth / users), CPU per user-hour and remote requests
//! per idle user per hour with Exchange streaming notifications and Siebel change detection
//! on, as `tandem serve` runs them.
//!
//! Method (a scaled clock): every period of the service is divided by `--scale` (default 60,
//! so one simulated hour lasts one real minute): the polling interval, the safety-net interval
//! of signalled users, the scheduler tick, Siebel change detection and the lifetime of each
//! EWS streaming connection. Figures per hour are counts over the measured window divided by
//! the simulated hours it covers. The initial-extract lane is as wide as the global cap, only
//! so that the warm-up (every user's first sync) is quick. The emulators run as `tandem sim` child processes on
//! loopback, so this process's RSS and CPU are Tandem's alone; requests are counted by the
//! emulators (`/_sim/stats`). The baseline is the same service with no users, measured in
//! the same run the same way.
//!
//! Run: `cargo bench -p tandem-host --bench idle_users` (options after `--`: `--users N`,
//! `--scale K`, `--window-hours H` simulated hours measured, `--contacts-per-user C`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use serde_json::{Value, json};
use tandem_host::exchange::ews::{DEFAULT_WATCH_CONNECTION, EwsConfig};
use tandem_host::siebel::SiebelConfig;
use tandem_host::scheduler::SchedulerSettings;
use tandem_host::service::{Service, ServiceSettings};
use tandem_host::domain::{Domains, User};
use tokio::io::AsyncBufReadExt as _;

struct Options {
    users: usize,
    scale: u32,
    window_hours: f64,
    contacts_per_user: usize,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options { users: 10_000, scale: 60, window_hours: 4.0, contacts_per_user: 1 };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = || args.get(i + 1).context("option without a value");
        match args[i].as_str() {
            "--users" => options.users = value()?.parse()?,
            "--scale" => options.scale = value()?.parse()?,
            "--window-hours" => options.window_hours = value()?.parse()?,
            "--contacts-per-user" => options.contacts_per_user = value()?.parse()?,
            _ => {
                i += 1; // `--bench` and other harness arguments
                continue;
            }
        }
        i += 2;
    }
    ensure!(options.scale >= 1 && options.users >= 1, "--scale and --users must be at least 1");
    Ok(options)
}

/// An emulator started as `tandem sim KIND`: its endpoint lines and the process.
struct Emulator {
    child: tokio::process::Child,
    lines: BTreeMap<String, String>,
    base: String,
}

impl Emulator {
    async fn start(kind: &str) -> anyhow::Result<Self> {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
            .args(["sim", kind, "--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "error")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let mut reader = tokio::io::BufReader::new(child.stdout.take().context("no stdout")?).lines();
        let mut lines = BTreeMap::new();
        while lines.len() < 2 {
            let line = reader.next_line().await?.context("the emulator exited before printing its endpoint")?;
            if let Some((key, value)) = line.split_once(": ") {
                lines.insert(key.to_owned(), value.to_owned());
            }
        }
        let url = lines.get(kind).context("no endpoint line")?.clone();
        let base = url.split("/siebel/").next().unwrap_or(&url).split("/EWS/").next().unwrap_or(&url).to_owned();
        Ok(Self { child, lines, base })
    }

    fn credentials(&self, kind: &str) -> anyhow::Result<(String, String)> {
        let auth = self.lines.get(&format!("{kind}-auth")).context("no auth line")?;
        let (user, password) = auth.split_once(':').context("auth line is user:password")?;
        Ok((user.to_owned(), password.to_owned()))
    }

    async fn requests(&self, http: &reqwest::Client) -> anyhow::Result<BTreeMap<String, u64>> {
        let stats: Value = http.get(format!("{}/_sim/stats", self.base)).send().await?.json().await?;
        Ok(stats["requests"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0))).collect())
            .unwrap_or_default())
    }
}

/// Resident memory of this process, in bytes.
fn rss_bytes() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS")?;
    let kb: u64 = line.split_whitespace().nth(1).context("VmRSS value")?.parse()?;
    Ok(kb * 1024)
}

/// CPU time (user + system) this process used so far.
fn cpu_time() -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let after = stat.rsplit_once(')').context("stat format")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    let per_second: u64 = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100);
    Ok(Duration::from_secs_f64(ticks as f64 / per_second as f64))
}

fn delta(after: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after.iter().map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0))).filter(|(_, v)| *v > 0).collect()
}

/// What one measured window saw.
struct Window {
    real: Duration,
    cpu: Duration,
    rss_end: u64,
    siebel: BTreeMap<String, u64>,
    ews: BTreeMap<String, u64>,
}

impl Window {
    fn requests(&self) -> u64 {
        self.siebel.values().sum::<u64>() + self.ews.values().sum::<u64>()
    }
}

async fn measure(real: Duration, siebel: &Emulator, ews: &Emulator, http: &reqwest::Client) -> anyhow::Result<Window> {
    let (s0, e0, c0) = (siebel.requests(http).await?, ews.requests(http).await?, cpu_time()?);
    let started = Instant::now();
    tokio::time::sleep(real).await;
    let (s1, e1, c1) = (siebel.requests(http).await?, ews.requests(http).await?, cpu_time()?);
    Ok(Window { real: started.elapsed(), cpu: c1 - c0, rss_end: rss_bytes()?, siebel: delta(&s1, &s0), ews: delta(&e1, &e0) })
}

fn scaled(period: Duration, scale: u32) -> Duration {
    (period / scale).max(Duration::from_millis(10))
}

async fn run(options: Options) -> anyhow::Result<()> {
    let k = options.scale;
    tandem_host::transport::install_crypto_provider();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(120)).build()?;
    let siebel_sim = Emulator::start("siebel").await?;
    let ews_sim = Emulator::start("ews").await?;
    let (siebel_user, siebel_password) = siebel_sim.credentials("siebel")?;
    let (ews_user, ews_password) = ews_sim.credentials("ews")?;
    let state = tempfile::tempdir()?;

    let defaults = SchedulerSettings::default();
    let scheduler = SchedulerSettings {
        node: "bench-node".into(),
        default_interval: scaled(defaults.default_interval, k),
        tick: scaled(defaults.tick, k),
        notified_interval: scaled(defaults.notified_interval, k),
        watch_connection: scaled(DEFAULT_WATCH_CONNECTION, k),
        watch_refresh: scaled(defaults.watch_refresh, k),
        change_detection_every: Some(scaled(Duration::from_secs(15), k)),
        // Only speeds up the warm-up (10,000 first syncs); idle users make no first syncs.
        initial_extract_slots: defaults.max_concurrent,
        ..defaults
    };
    eprintln!(
        "scale {k}: interval {:?}, safety net {:?}, tick {:?}, stream renewal {:?}, Siebel detection {:?}",
        scheduler.default_interval, scheduler.notified_interval, scheduler.tick, scheduler.watch_connection,
        scheduler.change_detection_every
    );
    let service = Service::start(ServiceSettings {
        state_dir: state.path().to_path_buf(),
        siebel: SiebelConfig {
            base_url: siebel_sim.lines["siebel"].clone(),
            user: siebel_user.clone(),
            password: siebel_password.clone(),
            transport: Default::default(),
        },
        ews: EwsConfig { endpoint: ews_sim.lines["ews"].clone(), user: ews_user, password: ews_password, auth: Default::default(), transport: Default::default() },
        admin_listen: "127.0.0.1:0".parse()?,
        admin_tls: None,
        siebel_oauth: None,
        admin_token: "bench".into(),
        schedule_interval: Some(scheduler.default_interval),
        scheduler: scheduler.clone(),
        database_url: None,
        users: Vec::new(),
        sync: tandem_host::engine::SyncRules::default(),
        graph: None,
        graph_notification_url: None,
    })
    .await?;

    // Baseline: the same service with no users, after it settled.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let baseline_real = Duration::from_secs(20);
    let baseline = measure(baseline_real, &siebel_sim, &ews_sim, &http).await?;
    let rss_empty = baseline.rss_end;
    eprintln!("baseline: RSS {:.1} MB, CPU {:?} in {:?}", rss_empty as f64 / 1e6, baseline.cpu, baseline.real);

    // Seed: per user a Siebel contact on its sync list; add the users as the admin API does.
    let seeding = Instant::now();
    let store = service.state.engine.store().clone();
    let siebel_contacts = format!("{}/data/Contact/Contact", siebel_sim.lines["siebel"]);
    let logins: Vec<String> = (0..options.users).map(|u| format!("IDLE{u:05}")).collect();
    // The Siebel contacts first, 32 inserts in flight.
    let mut contacts: Vec<(String, String)> = Vec::new();
    let wanted: Vec<(String, usize)> =
        logins.iter().flat_map(|l| (0..options.contacts_per_user).map(move |c| (l.clone(), c))).collect();
    for chunk in wanted.chunks(32) {
        let mut inserts = tokio::task::JoinSet::new();
        for (login, c) in chunk.iter().cloned() {
            let request = http
                .post(&siebel_contacts)
                .basic_auth(&siebel_user, Some(&siebel_password))
                .json(&json!({"First Name": format!("Contact{c}"), "Last Name": login.clone()}));
            inserts.spawn(async move {
                let answer: Value = request.send().await?.json().await?;
                let items = &answer["items"];
                let id = if items.is_array() { &items[0]["Id"] } else { &items["Id"] };
                anyhow::Ok((login, id.as_str().context("insert reply without Id")?.to_owned()))
            });
        }
        while let Some(done) = inserts.join_next().await {
            contacts.push(done??);
        }
    }
    for login in &logins {
        store
            .add_user(&User {
                login: login.clone(),
                mailbox: format!("{}@example.test", login.to_lowercase()),
                enabled: true,
                domains: Domains::default(),
                backend: Default::default(),
                extract_start_date: None,
            })
            .await?;
    }
    for (login, id) in &contacts {
        store.add_to_sync_list(login, id).await?;
    }
    service.state.runner.user_map_changed();
    eprintln!("seeded {} users in {:?}", options.users, seeding.elapsed());

    // Warm-up: every user's first sync done, every mailbox subscribed and streaming.
    let warming = Instant::now();
    loop {
        let overview = store.sync_overview(tandem_host::store::now_ms()).await?;
        let ews_requests = ews_sim.requests(&http).await?;
        let subscribed = ews_requests.get("Subscribe").copied().unwrap_or(0);
        let never = overview.last_ok_ms.iter().filter(|t| t.is_none()).count();
        if never == 0 && subscribed >= options.users as u64 {
            break;
        }
        if warming.elapsed() > Duration::from_secs(1800) {
            bail!("warm-up did not finish in 30 min: {never} users never synced, {subscribed} subscriptions");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    eprintln!("warm-up (first syncs, subscriptions) took {:?}", warming.elapsed());
    // Settle: two stream renewals, so every connection is in its steady state, and past
    // Siebel change detection's overlap (120 s, not scaled), so the seeded contacts are no
    // longer re-read by every cycle.
    tokio::time::sleep((scheduler.watch_connection * 2).max(Duration::from_secs(130))).await;

    let window_real = Duration::from_secs_f64(options.window_hours * 3600.0 / f64::from(k));
    let idle = measure(window_real, &siebel_sim, &ews_sim, &http).await?;
    let metrics = http.get(format!("{}/metrics", service.admin_url)).send().await?.text().await?;
    let syncs: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tandem_syncs_total{result=\"ok\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);

    let users = options.users as f64;
    let sim_hours = idle.real.as_secs_f64() * f64::from(k) / 3600.0;
    let base_sim_hours = baseline.real.as_secs_f64() * f64::from(k) / 3600.0;
    let rss_per_user = (idle.rss_end.saturating_sub(rss_empty)) as f64 / users;
    let baseline_cpu_per_hour = baseline.cpu.as_secs_f64() / base_sim_hours;
    let cpu_per_hour = idle.cpu.as_secs_f64() / sim_hours;
    let cpu_per_user_hour = (cpu_per_hour - baseline_cpu_per_hour).max(0.0) / users;
    let per_user_hour = |n: u64| n as f64 / users / sim_hours;
    println!("## idle users: {} users, scale {k}, window {:.2} simulated h ({:?} real)", options.users, sim_hours, idle.real);
    println!("| figure | value |");
    println!("|---|---|");
    println!("| RSS, no users (baseline) | {:.1} MB |", rss_empty as f64 / 1e6);
    println!("| RSS, {} idle users | {:.1} MB ({:.2}× baseline) |", options.users, idle.rss_end as f64 / 1e6, idle.rss_end as f64 / rss_empty as f64);
    println!("| memory per idle user | {:.1} KB |", rss_per_user / 1024.0);
    println!("| CPU per simulated hour, no users | {:.3} s |", baseline_cpu_per_hour);
    println!("| CPU per simulated hour, {} users | {:.3} s ({:.1}× baseline) |", options.users, cpu_per_hour, cpu_per_hour / baseline_cpu_per_hour.max(1e-9));
    println!("| CPU per user-hour (above baseline) | {:.3} ms |", cpu_per_user_hour * 1000.0);
    println!("| remote requests per idle user per hour | {:.3} |", per_user_hour(idle.requests()));
    for (system, counts) in [("Siebel", &idle.siebel), ("EWS", &idle.ews)] {
        for (kind, n) in counts {
            println!("| … {system} {kind} per user-hour | {:.3} |", per_user_hour(*n));
        }
    }
    println!("| remote requests per hour, no users (baseline) | {:.1} |", baseline.requests() as f64 / base_sim_hours);
    println!("| syncs run in all (warm-up included) | {syncs} |");
    for line in metrics.lines().filter(|l| l.starts_with("tandem_remote_requests_total") && !l.ends_with(" 0")) {
        println!("| Tandem's count: {line} |");
    }
    service.stop().await;
    drop(siebel_sim.child);
    drop(ews_sim.child);
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let options = options()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(run(options))
}

//! Benchmark of Siebel change detection: requests and time per cycle of the
//! dispatcher for 1,000 and 10,000 users of whom 1% changed something, against the Siebel
//! emulator on loopback, next to the per-user polling it replaces (one `get_by_ids` per user).
//!
//! Run: `cargo bench -p tandem-host --bench dispatcher` (a bench binary; prints a table).

use std::time::{Duration, Instant};

use serde_json::{Map, json};
use tandem_host::siebel::{SiebelClient, SiebelConfig};
use tandem_host::siebel::change_feed::{Dispatcher, DispatcherConfig};
use tandem_host::record::{Fields, Value};
use tandem_host::domain::{Domains, User};
use tandem_host::store::Store;
use tandem_sim::siebel::{SiebelSim, SiebelSimConfig};

/// Contacts on each user's sync list.
const CONTACTS_PER_USER: usize = 5;
/// Measured change cycles per size.
const CYCLES: usize = 5;
/// Overlap window used here; cycles are spaced wider so each re-reads only its own changes.
const OVERLAP: Duration = Duration::from_secs(2);
const CYCLE_SPACING: Duration = Duration::from_millis(3100);
/// Users whose per-user polling is timed for the baseline (the emulator scans every record per
/// searchspec, so this is kept small and scaled).
const BASELINE_SAMPLE: usize = 100;
/// Reconciliation is timed only up to this many users (it is O(users × records) in the emulator).
const RECONCILE_MAX_USERS: usize = 1_000;

fn gets(sim: &SiebelSim) -> u64 {
    sim.stats().requests.get("GET").copied().unwrap_or(0)
}

async fn run(users: usize) -> anyhow::Result<()> {
    let sim = SiebelSim::new(SiebelSimConfig::default())?;
    let server = sim.serve("127.0.0.1:0".parse()?).await?;
    let credentials = sim.credentials().clone();
    let client = SiebelClient::new(SiebelConfig {
        base_url: format!("{}/siebel/v1.0", server.base_url()),
        user: credentials.user,
        password: credentials.password,
        transport: Default::default(),
    })?;
    let dir = tempfile::tempdir()?;
    let store = Store::open_dir(dir.path()).await?;

    let seeding = Instant::now();
    let mut contacts_of: Vec<Vec<String>> = Vec::with_capacity(users);
    for u in 0..users {
        let login = format!("user{u:05}");
        let mut employee = Map::new();
        employee.insert("Login Name".into(), json!(login.to_uppercase()));
        employee.insert("Last Name".into(), json!(format!("Emp{u}")));
        let employee_id = sim.insert("Employee", "Employee", employee)?;
        let mut action = Map::new();
        action.insert("Description".into(), json!(format!("Call {u}")));
        action.insert("Primary Owner Id".into(), json!(employee_id));
        sim.insert("Action", "Action", action)?;
        store
            .add_user(&User {
                login: login.clone(),
                mailbox: format!("{login}@example.test"),
                enabled: true,
                domains: Domains::default(),
                backend: Default::default(),
                extract_start_date: None,
            })
            .await?;
        let mut ids = Vec::with_capacity(CONTACTS_PER_USER);
        for c in 0..CONTACTS_PER_USER {
            let mut contact = Map::new();
            contact.insert("Last Name".into(), json!(format!("C{u}-{c}")));
            let id = sim.insert("Contact", "Contact", contact)?;
            store.add_to_sync_list(&login, &id).await?;
            ids.push(id);
        }
        contacts_of.push(ids);
    }
    let seeding = seeding.elapsed();
    // Steady state: the seeded data lies before the overlap window, as it would after a
    // first day of running (a window full of bulk-loaded records is re-read, deduplicated).
    tokio::time::sleep(OVERLAP + Duration::from_secs(1)).await;

    let config = DispatcherConfig { overlap: OVERLAP, reconcile_every: 0, ..DispatcherConfig::default() };
    let mut dispatcher = Dispatcher::new(client.clone(), store.clone(), config)?;
    let before = gets(&sim);
    let started = Instant::now();
    let bootstrap = dispatcher.run_cycle().await?;
    let bootstrap_time = started.elapsed();
    let bootstrap_requests = gets(&sim) - before;

    // The first cycle after a bootstrap re-reads the overlap behind the latest `Updated` once
    // (here: the tail of the bulk load); measured apart from the steady state.
    tokio::time::sleep(CYCLE_SPACING).await;
    let before = gets(&sim);
    let started = Instant::now();
    let settle = dispatcher.run_cycle().await?;
    let settle_time = started.elapsed();
    let settle_requests = gets(&sim) - before;
    assert!(settle.changed.is_empty(), "nothing changed since the bootstrap");

    let changed_per_cycle = (users / 100).max(1);
    let mut requests = Vec::new();
    let mut times = Vec::new();
    for cycle in 0..CYCLES {
        tokio::time::sleep(CYCLE_SPACING).await;
        // 1% of users: one contact on their sync list changes.
        for k in 0..changed_per_cycle {
            let user = (cycle * changed_per_cycle + k) * 97 % users;
            let change = Fields::from([("Job Title".to_owned(), Value::Text(format!("T{cycle}")))]);
            client.update("Contact", "Contact", &contacts_of[user][0], &change).await?;
        }
        let before = gets(&sim);
        let started = Instant::now();
        let report = dispatcher.run_cycle().await?;
        times.push(started.elapsed());
        requests.push(gets(&sim) - before);
        assert_eq!(report.changed.len(), changed_per_cycle, "every change found once");
        assert_eq!(report.affected_logins.len(), changed_per_cycle, "only the changed users woken");
    }

    let (reconcile_requests, reconcile_time) = if users <= RECONCILE_MAX_USERS {
        dispatcher.reconcile_next();
        let before = gets(&sim);
        let started = Instant::now();
        let reconcile = dispatcher.run_cycle().await?;
        assert!(reconcile.gone.is_empty());
        (gets(&sim) - before, format!("{:.2?}", started.elapsed()))
    } else {
        (0, "not run".to_owned())
    };

    // Baseline: what per-user polling costs — one get_by_ids of each user's sync list. Timed
    // on the first BASELINE_SAMPLE users and scaled linearly.
    let sample = users.min(BASELINE_SAMPLE);
    let before = gets(&sim);
    let started = Instant::now();
    for ids in &contacts_of[..sample] {
        client.get_by_ids("Contact", "Contact", ids).await?;
    }
    let scale = users as f64 / sample as f64;
    let polling_time = started.elapsed().mul_f64(scale);
    let polling_requests = ((gets(&sim) - before) as f64 * scale).round() as u64;

    let mean_time = times.iter().sum::<Duration>() / times.len() as u32;
    let mean_requests = requests.iter().sum::<u64>() as f64 / requests.len() as f64;
    let max_requests = requests.iter().max().copied().unwrap_or(0);
    println!("## {users} users ({} contacts, {users} employees, {users} actions), {changed_per_cycle} changed per cycle", users * CONTACTS_PER_USER);
    println!("seeding: {seeding:.2?}");
    println!("| what | requests | time |");
    println!("|---|---|---|");
    println!("| bootstrap cycle (reads all, once) | {bootstrap_requests} | {bootstrap_time:.2?} ({} changed) |", bootstrap.changed.len());
    println!("| first cycle after bootstrap (once, no changes) | {settle_requests} | {settle_time:.2?} |");
    println!("| change cycle, mean of {CYCLES} (max requests) | {mean_requests:.1} ({max_requests}) | {mean_time:.2?} |");
    println!("| reconciliation cycle (Id sets) | {reconcile_requests} | {reconcile_time} |");
    let scaled = if sample < users { format!(" (timed on {sample} users, scaled)") } else { String::new() };
    println!("| baseline: per-user polling, one cycle{scaled} | {polling_requests} | {polling_time:.2?} |");
    println!(
        "| ratio change cycle / per-user polling | {:.4} | {:.4} |",
        mean_requests / polling_requests.max(1) as f64,
        mean_time.as_secs_f64() / polling_time.as_secs_f64()
    );
    println!("per-cycle requests: {requests:?}; times: {times:.2?}");
    drop(server);
    Ok(())
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; a filter argument picks one size.
    let filter: Option<String> = std::env::args().skip(1).find(|arg| !arg.starts_with("--"));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    for users in [1_000usize, 10_000] {
        if filter.as_ref().is_some_and(|f| !users.to_string().contains(f.as_str())) {
            continue;
        }
        runtime.block_on(run(users))?;
    }
    Ok(())
}

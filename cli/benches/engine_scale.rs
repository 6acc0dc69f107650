//! The end-to-end scale run: 100 users, each with 200 contacts, 100 appointments and
//! 50 tasks split between Siebel and Exchange, go through the initial extract and three rounds
//! of random edits on both sides, and must end converged. Prints the time of each phase and
//! the remote requests per propagated change; fails when anything did not converge.
//!
//! `cargo bench -p tandem --bench engine_scale` (sizes: `TANDEM_SCALE_USERS`, default
//! 100; `TANDEM_SCALE_ROUNDS`, default 3). Emulators and the service run in this process on
//! loopback, state in SQLite, the default plugins compiled from `plugins/`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value as Json, json};
use tandem_host::exchange::ews::{EwsClient, Folder};
use tandem_cli::demo::{Demo, DemoOptions};
use tandem_host::engine::{CALENDAR, CONTACTS, Engine, RunReport, TASKS};
use tandem_host::record::Value;
use tandem_host::domain::{Domains, User};

/// Per user: (Siebel-side, Exchange-side) records at the start.
const CONTACTS_SPLIT: (usize, usize) = (160, 40);
const APPOINTMENTS_SPLIT: (usize, usize) = (80, 20);
const TASKS_SPLIT: (usize, usize) = (40, 10);
/// Runs at once (the scheduler's default cap is of this order on 2 cores).
const PARALLEL_RUNS: usize = 4;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn fields(pairs: &[(&str, String)]) -> Map<String, Json> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), Json::String(v.clone()))).collect()
}

fn login_of(n: usize) -> String {
    format!("SCALE{n:03}")
}

fn mailbox_of(n: usize) -> String {
    format!("scale{n:03}@example.com")
}

/// A Siebel date-time (`MM/DD/YYYY HH:MM:SS`) and its EWS form, `day` days into December.
fn slot(day: usize, hour: usize) -> (String, String) {
    let (day, hour) = (1 + day % 28, 8 + hour % 10);
    (format!("12/{day:02}/2026 {hour:02}:00:00"), format!("2026-12-{day:02}T{hour:02}:00:00Z"))
}

/// Seeds one user's data on both sides; returns nothing but the user is ready to sync.
async fn seed_user(demo: &Demo, engine: &Engine, n: usize) -> anyhow::Result<()> {
    let (login, mailbox) = (login_of(n), mailbox_of(n));
    let siebel = &demo.siebel_sim;
    let employee = siebel.insert(
        "Employee",
        "Employee",
        fields(&[("First Name", "Scale".into()), ("Last Name", login.clone()), ("Login Name", login.clone()), ("EMail Addr", mailbox.clone())]),
    )?;
    engine
        .store()
        .add_user(&User { login: login.clone(), mailbox: mailbox.clone(), enabled: true, domains: Domains::default(), backend: Default::default(), extract_start_date: None })
        .await?;
    for c in 0..CONTACTS_SPLIT.0 {
        let id = siebel.insert(
            "Contact",
            "Contact",
            fields(&[
                ("First Name", format!("First{c}")),
                ("Last Name", format!("{login}-Last{c}")),
                ("Email Address", format!("c{c}.{n}@siebel.example")),
                ("Job Title", "Buyer".into()),
                ("Work Phone #", format!("+1 555 {n:03} {c:04}")),
            ]),
        )?;
        engine.store().add_to_sync_list(&login, &id).await?;
    }
    for c in 0..CONTACTS_SPLIT.1 {
        demo.ews_sim.create_contact(
            &mailbox,
            &[
                ("GivenName", &format!("Outlook{c}")),
                ("Surname", &format!("{login}-Made{c}")),
                ("EmailAddress1", &format!("o{c}.{n}@outlook.example")),
                ("JobTitle", "Partner"),
            ],
        )?;
    }
    for a in 0..APPOINTMENTS_SPLIT.0 {
        let (start, _) = slot(a, a % 9);
        let (end, _) = slot(a, a % 9 + 1);
        siebel.insert(
            "Action",
            "Action",
            fields(&[
                ("Type", "Meeting".into()),
                ("Display", "Calendar and Activities".into()),
                ("Description", format!("Siebel meeting {a}")),
                ("Planned", start),
                ("Planned Completion", end),
                ("Primary Owner Id", employee.clone()),
            ]),
        )?;
    }
    for a in 0..APPOINTMENTS_SPLIT.1 {
        let (_, start) = slot(a + 3, 2);
        let (_, end) = slot(a + 3, 3);
        demo.ews_sim.create_item(&mailbox, "calendar", &[("Subject", &format!("Outlook meeting {a}")), ("Start", &start), ("End", &end)])?;
    }
    for t in 0..TASKS_SPLIT.0 {
        let (due, _) = slot(t, 9);
        siebel.insert(
            "Action",
            "Action",
            fields(&[
                ("Type", "To Do".into()),
                ("Display", "To Do and Activities".into()),
                ("Description", format!("Siebel task {t}")),
                ("Due", due),
                ("Priority", "3-Medium".into()),
                ("Primary Owner Id", employee.clone()),
            ]),
        )?;
    }
    for t in 0..TASKS_SPLIT.1 {
        let (_, due) = slot(t + 5, 9);
        demo.ews_sim.create_item(&mailbox, "tasks", &[("Subject", &format!("Outlook task {t}")), ("DueDate", &due)])?;
    }
    Ok(())
}

/// Syncs every user, `PARALLEL_RUNS` at a time; fails on any failed run or record error.
async fn sync_all(engine: &Engine, users: usize) -> anyhow::Result<Vec<RunReport>> {
    let gate = Arc::new(tokio::sync::Semaphore::new(PARALLEL_RUNS));
    let mut runs = tokio::task::JoinSet::new();
    for n in 0..users {
        let (engine, gate) = (engine.clone(), gate.clone());
        runs.spawn(async move {
            let _slot = gate.acquire_owned().await?;
            let login = login_of(n);
            let report = engine.sync_user(&login).await?;
            ensure!(report.status == "ok" && report.errors.is_empty(), "{login}: {report:?}");
            anyhow::Ok(report)
        });
    }
    let mut reports = Vec::new();
    while let Some(joined) = runs.join_next().await {
        reports.push(joined??);
    }
    Ok(reports)
}

fn total_requests(demo: &Demo) -> u64 {
    demo.siebel_sim.stats().requests.values().sum::<u64>() + demo.ews_sim.stats().requests.values().sum::<u64>()
}

/// One edit made in a round, and how to see that it arrived on the other side.
struct Edit {
    login: String,
    domain: &'static str,
    siebel_id: String,
    exchange_id: String,
    /// Siebel field name and Exchange field name of the edited value.
    fields: (&'static str, &'static str),
    value: String,
}

/// Random edits on both sides for every user: per user 3+3 contacts, 2+2 appointments and
/// 1+1 tasks (Siebel + Exchange), each on a different linked pair.
async fn edit_round(demo: &Demo, engine: &Engine, users: usize, round: usize, rng: &mut StdRng) -> anyhow::Result<Vec<Edit>> {
    tandem_host::transport::install_crypto_provider();
    let http = reqwest::Client::new();
    let mut edits = Vec::new();
    for n in 0..users {
        let (login, mailbox) = (login_of(n), mailbox_of(n));
        for (domain, per_side, siebel_field, exchange_field) in
            [(CONTACTS, 3, "Job Title", "JobTitle"), (CALENDAR, 2, "Description", "Subject"), (TASKS, 1, "Description", "Subject")]
        {
            let mut links = engine.store().links(&login, domain).await?;
            links.shuffle(rng);
            for (index, link) in links.iter().take(2 * per_side).enumerate() {
                let value = format!("r{round} {domain} edit {}", rng.random::<u32>());
                if index < per_side {
                    let bc = if domain == CONTACTS { "Contact" } else { "Action" };
                    let url = format!("{}/data/{bc}/{bc}/{}", demo.siebel_url, link.siebel_id);
                    let auth = &demo.siebel_auth;
                    // As the administrator, on no record's team: in ViewMode All.
                    let answer = http
                        .put(url)
                        .query(&[("ViewMode", "All")])
                        .basic_auth(&auth.user, Some(&auth.password))
                        .json(&json!({ siebel_field: value }))
                        .send()
                        .await?;
                    ensure!(answer.status().is_success(), "Siebel update answered {}", answer.status());
                } else {
                    demo.ews_sim.update_item_fields(&mailbox, &link.exchange_id, &[(exchange_field, &value)])?;
                }
                edits.push(Edit {
                    login: login.clone(),
                    domain,
                    siebel_id: link.siebel_id.clone(),
                    exchange_id: link.exchange_id.clone(),
                    fields: (siebel_field, exchange_field),
                    value,
                });
            }
        }
    }
    Ok(edits)
}

/// Every edit is on both sides now, and each user holds exactly the records it started with.
async fn check_converged(demo: &Demo, engine: &Engine, ews: &EwsClient, users: usize, edits: &[Edit]) -> anyhow::Result<()> {
    for edit in edits {
        let bc = if edit.domain == CONTACTS { "Contact" } else { "Action" };
        let record = demo.siebel_sim.get(bc, bc, &edit.siebel_id).with_context(|| format!("{} vanished", edit.siebel_id))?;
        let siebel_value = record.get(edit.fields.0).and_then(Json::as_str).unwrap_or_default();
        let link = engine
            .store()
            .links(&edit.login, edit.domain)
            .await?
            .into_iter()
            .find(|l| l.siebel_id == edit.siebel_id)
            .with_context(|| format!("{} lost its link", edit.siebel_id))?;
        let folder = match edit.domain {
            CONTACTS => Folder::Contacts,
            CALENDAR => Folder::Calendar,
            _ => Folder::Tasks,
        };
        let item = ews.get_items(&mailbox_of_login(&edit.login), folder, &[link.exchange_id.clone()]).await?;
        let exchange_value = item.first().and_then(|i| i.fields.get(edit.fields.1)).and_then(Value::as_text).unwrap_or_default();
        // Two edits of one pair in one round (both sides) resolve to one value, Siebel's
        // by the default policy; every value must agree across the sides.
        ensure!(
            siebel_value == exchange_value,
            "{} {} not converged: Siebel '{siebel_value}', Exchange '{exchange_value}' (edited to '{}', item {})",
            edit.domain,
            edit.siebel_id,
            edit.value,
            edit.exchange_id
        );
    }
    for n in 0..users {
        let (login, mailbox) = (login_of(n), mailbox_of(n));
        let expected: BTreeMap<&str, usize> = BTreeMap::from([
            ("contacts", CONTACTS_SPLIT.0 + CONTACTS_SPLIT.1),
            ("calendar", APPOINTMENTS_SPLIT.0 + APPOINTMENTS_SPLIT.1),
            ("tasks", TASKS_SPLIT.0 + TASKS_SPLIT.1),
        ]);
        for (folder, count) in expected {
            let in_exchange = demo.ews_sim.item_count(&mailbox, folder);
            let linked = engine.store().links(&login, folder).await?.len();
            ensure!(in_exchange == count && linked == count, "{login} {folder}: {in_exchange} in Exchange, {linked} linked, {count} expected");
        }
        let on_list = engine.store().sync_list(&login).await?.len();
        ensure!(on_list == CONTACTS_SPLIT.0 + CONTACTS_SPLIT.1, "{login}: {on_list} on the sync list");
    }
    Ok(())
}

fn mailbox_of_login(login: &str) -> String {
    format!("{}@example.com", login.to_ascii_lowercase())
}

fn writes(reports: &[RunReport]) -> u64 {
    reports
        .iter()
        .map(|r| r.siebel.created + r.siebel.updated + r.siebel.deleted + r.exchange.created + r.exchange.updated + r.exchange.deleted)
        .sum()
}

fn main() -> anyhow::Result<()> {
    let users = env_number("TANDEM_SCALE_USERS", 100);
    let rounds = env_number("TANDEM_SCALE_ROUNDS", 3);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let demo = Demo::start(DemoOptions { manual: true, seed: false, ..DemoOptions::default() }).await?;
        let engine = demo.service.state.engine.clone();
        let ews = EwsClient::new(tandem_host::exchange::ews::EwsConfig {
            endpoint: demo.ews_url.clone(),
            user: demo.ews_auth.user.clone(),
            password: demo.ews_auth.password.clone(),
            auth: Default::default(),
            transport: Default::default(),
        })?;
        let started = Instant::now();
        for n in 0..users {
            seed_user(&demo, &engine, n).await?;
        }
        println!("seeded {users} users in {:.1} s", started.elapsed().as_secs_f64());

        let requests_before = total_requests(&demo);
        let started = Instant::now();
        let reports = sync_all(&engine, users).await?;
        let extract = started.elapsed();
        let extract_requests = total_requests(&demo) - requests_before;
        let extract_writes = writes(&reports);
        println!(
            "initial extract: {:.1} s, {extract_writes} records written, {extract_requests} remote requests ({:.3} per record), {} matched",
            extract.as_secs_f64(),
            extract_requests as f64 / extract_writes.max(1) as f64,
            reports.iter().map(|r| r.matched).sum::<u64>()
        );
        check_converged(&demo, &engine, &ews, users, &[]).await?;

        let mut rng = StdRng::seed_from_u64(6);
        let (mut round_time, mut round_requests, mut propagated) = (Duration::ZERO, 0u64, 0u64);
        for round in 1..=rounds {
            let edits = edit_round(&demo, &engine, users, round, &mut rng).await?;
            let requests_before = total_requests(&demo);
            let started = Instant::now();
            let reports = sync_all(&engine, users).await?;
            let took = started.elapsed();
            let requests = total_requests(&demo) - requests_before;
            check_converged(&demo, &engine, &ews, users, &edits).await?;
            let written = writes(&reports);
            println!(
                "round {round}: {} edits, {written} writes, {:.1} s, {requests} remote requests ({:.2} per propagated change)",
                edits.len(),
                took.as_secs_f64(),
                requests as f64 / written.max(1) as f64
            );
            round_time += took;
            round_requests += requests;
            propagated += written;
        }
        // Idempotence at scale: one more pass writes nothing.
        let quiet = writes(&sync_all(&engine, users).await?);
        if quiet != 0 {
            bail!("a sync with no edits wrote {quiet} records");
        }
        println!(
            "{rounds} rounds: {:.1} s, {propagated} propagated changes, {:.2} remote requests per propagated change; quiet pass wrote nothing",
            round_time.as_secs_f64(),
            round_requests as f64 / propagated.max(1) as f64
        );
        demo.stop().await;
        anyhow::Ok(())
    })
}

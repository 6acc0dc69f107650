//! Crash safety across every domain: `tandem serve` is killed with SIGKILL at random points
//! of its runs (some emulator replies slowed so the kills land inside them), with edits on
//! both sides between kills; after a last restart the user converges with no duplicate on
//! either side and the last edit of each side in place. The kill times come from a seed
//! printed by the test (`TANDEM_CRASH_SEED` repeats a run).

use std::time::Duration;

use serde_json::json;
use tandem_sim::FaultSettings;

use crate::harness::{Harness, xml_attr, xml_text};
use crate::service::{ServeProcess, serve_config};

const LOGIN: &str = "CRASHY";
const MAILBOX: &str = "crashy@example.com";
const TOKEN: &str = "crash-test-admin-token";
const KILLS: usize = 5;

/// A small deterministic generator (xorshift) for the kill times.
struct Seeded(u64);

impl Seeded {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_points_across_every_domain_leaves_no_duplicate_and_loses_no_update() -> anyhow::Result<()> {
    let seed = std::env::var("TANDEM_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64) | 1
    });
    eprintln!("kill -9 test seed: {seed} (TANDEM_CRASH_SEED={seed} repeats it)");
    let mut random = Seeded(seed);
    let h = Harness::start().await?;

    // Siebel: the user, 6 contacts and 2 employees on the sync list, 3 personal contacts,
    // 4 meetings and 4 To Dos of theirs.
    let me = h
        .siebel_insert_into("Employee", json!({"First Name": "Casey", "Last Name": "Crash", "Login Name": LOGIN, "EMail Addr": MAILBOX}))
        .await?;
    let mut sync_list = Vec::new();
    for n in 0..6 {
        sync_list.push(h.siebel_insert(json!({"First Name": "Biz", "Last Name": format!("Contact{n}"), "Job Title": "start"})).await?);
    }
    for n in 0..2 {
        sync_list.push(
            h.siebel_insert_into("Employee", json!({"First Name": "Col", "Last Name": format!("League{n}"), "EMail Addr": format!("league{n}@example.com")}))
                .await?,
        );
    }
    for n in 0..3 {
        h.siebel_insert(json!({"First Name": "Pal", "Last Name": format!("Personal{n}"), "Personal Contact": "Y", "Primary Owner Id": me}))
            .await?;
    }
    for n in 0..4 {
        h.siebel_insert_into(
            "Action",
            json!({"Type": "Meeting", "Display": "Calendar and Activities", "Description": format!("Siebel meeting {n}"),
                   "Planned": format!("12/1{n}/2026 09:00:00"), "Planned Completion": format!("12/1{n}/2026 10:00:00"),
                   "Primary Owner Id": me}),
        )
        .await?;
        h.siebel_insert_into(
            "Action",
            json!({"Type": "To Do", "Display": "To Do and Activities", "Description": format!("Siebel task {n}"), "Primary Owner Id": me}),
        )
        .await?;
    }
    // Outlook: 2 business contacts, 1 private contact, 2 appointments and 2 tasks.
    for n in 0..2 {
        h.ews_create_in(MAILBOX, "contacts", &format!("<t:Contact><t:GivenName>Out</t:GivenName><t:Surname>Look{n}</t:Surname></t:Contact>")).await?;
        h.ews_create_in(
            MAILBOX,
            "calendar",
            &format!(
                "<t:CalendarItem><t:Subject>Outlook meeting {n}</t:Subject><t:Start>2026-12-2{n}T12:00:00Z</t:Start>\
                 <t:End>2026-12-2{n}T13:00:00Z</t:End></t:CalendarItem>"
            ),
        )
        .await?;
        h.ews_create_in(MAILBOX, "tasks", &format!("<t:Task><t:Subject>Outlook task {n}</t:Subject></t:Task>")).await?;
    }
    let edited_appointment = h.ews_find_in(MAILBOX, "calendar").await?.into_iter().next().expect("created");
    h.ews_create_in(MAILBOX, "contacts", "<t:Contact><t:Sensitivity>Private</t:Sensitivity><t:GivenName>Secret</t:GivenName><t:Surname>Friend</t:Surname></t:Contact>")
        .await?;
    let siebel_contacts_before = h.siebel_count().await?;

    let dir = tempfile::tempdir()?;
    let config = dir.path().join("tandem.toml");
    std::fs::write(
        &config,
        serve_config(
            &h,
            &dir.path().join("state"),
            &format!("token = \"{TOKEN}\""),
            "interval_seconds = 1",
            &format!("[[users]]\nlogin = \"{LOGIN}\"\nmailbox = \"{MAILBOX}\"\nenabled = true"),
        ),
    )?;
    // Slow replies on both sides stretch the runs, so the kills land inside them.
    let slow = |rate: f64| FaultSettings { rate, kinds: vec!["slow".into()] };
    h.demo.siebel_sim.control().faults.set(slow(0.1));
    h.demo.ews_sim.set_faults(slow(0.1));

    let mut last_title = "start".to_owned();
    let mut last_subject = "Outlook meeting 0".to_owned();
    for round in 0..KILLS {
        let log = dir.path().join(format!("serve-{round}.log"));
        let serve = ServeProcess::spawn(&config, &log, TOKEN, false).await?;
        if round == 0 {
            for id in &sync_list {
                let (status, body) =
                    serve.call(reqwest::Method::POST, &format!("/api/v1/users/{LOGIN}/sync-list"), Some(json!({"siebel_id": id}))).await?;
                anyhow::ensure!(status == 201, "sync-list add answered {status}: {body}");
            }
        }
        let delay = 200 + random.below(3000);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        serve.kill().await?;
        eprintln!("round {round}: killed after {delay} ms");
        // Edits on both sides while the service is down: a Siebel contact and an Outlook
        // appointment, different records so no conflict decides them.
        last_title = format!("title after kill {round}");
        h.siebel_update(&sync_list[0], json!({"Job Title": last_title})).await?;
        let item = h.ews_get_contact(MAILBOX, &edited_appointment).await?;
        let change_key = xml_attr(&item, "ItemId", "ChangeKey").unwrap_or_default();
        last_subject = format!("Outlook meeting 0 after kill {round}");
        h.ews_set_field(
            MAILBOX,
            &edited_appointment,
            &change_key,
            "item:Subject",
            &format!("<t:CalendarItem><t:Subject>{last_subject}</t:Subject></t:CalendarItem>"),
        )
        .await?;
    }

    // The last start, at full speed: it converges.
    h.demo.siebel_sim.control().faults.set(FaultSettings::default());
    h.demo.ews_sim.set_faults(FaultSettings::default());
    let serve = ServeProcess::spawn(&config, &dir.path().join("serve-last.log"), TOKEN, false).await?;
    serve.settle(LOGIN, Duration::from_secs(90)).await?;

    // No duplicate on either side: every record once in Exchange, each Outlook item once in
    // Siebel.
    assert_eq!(h.ews_find_in(MAILBOX, "contacts").await?.len(), 6 + 2 + 3 + 2 + 1, "contacts in Exchange");
    assert_eq!(h.ews_find_in(MAILBOX, "calendar").await?.len(), 4 + 2, "appointments in Exchange");
    assert_eq!(h.ews_find_in(MAILBOX, "tasks").await?.len(), 4 + 2, "tasks in Exchange");
    assert_eq!(h.siebel_count().await?, siebel_contacts_before + 3, "the Outlook contacts reached Siebel once each");
    let spec = format!("[Primary Owner Id] = '{me}'");
    assert_eq!(h.siebel_query("Action", &spec).await?.len(), 8 + 4, "the Outlook appointments and tasks reached Siebel once each");
    // No lost update: the last edit of each side is on both sides.
    let copies = h.ews_find_in(MAILBOX, "contacts").await?;
    let mut titles = Vec::new();
    for id in copies {
        let item = h.ews_get_contact(MAILBOX, &id).await?;
        if xml_text(&item, "Surname").as_deref() == Some("Contact0") {
            titles.push(xml_text(&item, "JobTitle").unwrap_or_default());
        }
    }
    assert_eq!(titles, [last_title.clone()], "the Siebel edit reached Exchange (seed {seed})");
    let imported = h.siebel_query("Action", &format!("[Description] = '{last_subject}'")).await?;
    assert_eq!(imported.len(), 1, "the Outlook edit reached Siebel (seed {seed})");
    assert!(serve.get(&format!("/api/v1/users/{LOGIN}/conflicts")).await?.as_array().is_some_and(Vec::is_empty), "no conflict was needed");
    serve.terminate().await?;
    h.stop().await;
    Ok(())
}

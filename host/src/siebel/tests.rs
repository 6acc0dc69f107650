//! The Siebel connector against the Siebel emulator over real loopback HTTP.

use chrono::{TimeZone as _, Utc};
use serde_json::{Map, json};
use tandem_sim::FaultSettings;
use tandem_sim::siebel::{SiebelSim, SiebelSimConfig, parse_siebel_datetime};

use super::*;

struct Harness {
    sim: SiebelSim,
    client: SiebelClient,
    base_url: String,
    _server: tandem_sim::RunningServer,
}

async fn start(config: SiebelSimConfig) -> Harness {
    let sim = SiebelSim::new(config).expect("emulator");
    let server = sim.serve("127.0.0.1:0".parse().expect("addr")).await.expect("bind");
    let base_url = format!("{}/siebel/v1.0", server.base_url());
    let credentials = sim.credentials().clone();
    let client = SiebelClient::new(SiebelConfig {
        base_url: base_url.clone(),
        user: credentials.user,
        password: credentials.password,
        transport: Default::default(),
    })
    .expect("client")
    // The emulator's administrator is on no team: Sales Rep would show it nothing.
    .with_view_mode("All");
    Harness { sim, client, base_url, _server: server }
}

fn seed(sim: &SiebelSim, count: usize) -> Vec<String> {
    (0..count)
        .map(|i| {
            let mut fields = Map::new();
            fields.insert("First Name".into(), json!(format!("F{i:04}")));
            fields.insert("Last Name".into(), json!(if i % 2 == 0 { "Even" } else { "Odd" }));
            sim.insert("Contact", "Contact", fields).expect("seed")
        })
        .collect()
}

fn text(record: &SiebelRecord, field: &str) -> Option<String> {
    record.fields.get(field).and_then(Value::as_text).map(str::to_owned)
}

fn count(sim: &SiebelSim, method: &str) -> u64 {
    sim.stats().requests.get(method).copied().unwrap_or(0)
}

#[tokio::test]
async fn insert_get_update_delete_round_trip() {
    let h = start(SiebelSimConfig::default()).await;
    let mut fields = Fields::new();
    fields.insert("First Name".into(), "Ann".into());
    fields.insert("Last Name".into(), "O'Brien".into());
    fields.insert("Job Title".into(), Value::Null);
    fields.insert("Middle Name".into(), "".into());
    fields.insert("Personal Contact".into(), Value::Boolean(true));
    let id = h.client.insert("Contact", "Contact", &fields).await.expect("insert");

    let got = h.client.get_by_ids("Contact", "Contact", std::slice::from_ref(&id)).await.expect("get");
    assert_eq!(got.len(), 1);
    let record = &got[0];
    assert_eq!(record.id, id);
    assert!(!record.fields.contains_key("Id") && !record.fields.contains_key("Link"));
    assert_eq!(text(record, "Last Name").as_deref(), Some("O'Brien"));
    assert_eq!(text(record, "Personal Contact").as_deref(), Some("Y"));
    assert_eq!(text(record, "Job Title").as_deref(), Some(""), "empty fields come back as empty text");
    assert!(record.updated.as_deref().is_some_and(|u| u.len() == 19), "{:?}", record.updated);
    assert_eq!(record.updated, text(record, "Updated"));

    // Numbers and date-times as Siebel takes them, on an Action (a component with such fields).
    let mut action = Fields::new();
    action.insert("Percent Complete".into(), Value::Integer(40));
    action.insert("Meeting Location".into(), Value::Number(2.5));
    action
        .insert("Planned".into(), Value::DateTime(Utc.with_ymd_and_hms(2026, 11, 25, 9, 5, 0).single().expect("date")));
    let action_id = h.client.insert("Action", "Action", &action).await.expect("insert an action");
    let got = h.client.get_by_ids("Action", "Action", std::slice::from_ref(&action_id)).await.expect("get");
    assert_eq!(text(&got[0], "Percent Complete").as_deref(), Some("40"));
    assert_eq!(text(&got[0], "Meeting Location").as_deref(), Some("2.5"));
    assert_eq!(text(&got[0], "Planned").as_deref(), Some("11/25/2026 09:05:00"));

    // The literal is quoted safely: a name with a quote can be searched for.
    let spec = format!("[Last Name] = {}", searchspec_literal("O'Brien"));
    let found = h.client.query("Contact", "Contact", Some(&spec)).await.expect("query");
    assert_eq!(found.iter().map(|r| r.id.clone()).collect::<Vec<_>>(), vec![id.clone()]);

    let mut change = Fields::new();
    change.insert("Job Title".into(), "CEO".into());
    change.insert("First Name".into(), Value::Null);
    change.insert("Personal Contact".into(), Value::Boolean(false));
    h.client.update("Contact", "Contact", &id, &change).await.expect("update");
    let stored = h.sim.get("Contact", "Contact", &id).expect("stored");
    assert_eq!(stored["Job Title"], json!("CEO"));
    assert_eq!(stored["First Name"], json!(""), "Null clears the field");
    assert_eq!(stored["Personal Contact"], json!("N"));
    assert_eq!(stored["Last Name"], json!("O'Brien"), "fields not sent are kept");

    let puts = count(&h.sim, "PUT");
    h.client.update("Contact", "Contact", &id, &Fields::new()).await.expect("empty update");
    assert_eq!(count(&h.sim, "PUT"), puts, "an empty update sends nothing");

    h.client.delete("Contact", "Contact", &id).await.expect("delete");
    assert!(h.sim.get("Contact", "Contact", &id).is_none());
    assert!(h.client.get_by_ids("Contact", "Contact", std::slice::from_ref(&id)).await.expect("get").is_empty());
    match h.client.delete("Contact", "Contact", &id).await {
        Err(SiebelError::NotFound { .. }) => {}
        other => panic!("deleting twice should be NotFound, got {other:?}"),
    }
}

#[tokio::test]
async fn query_and_get_by_ids_page_and_batch_over_hundreds_of_records() {
    let h = start(SiebelSimConfig::default()).await;
    let ids = seed(&h.sim, 230);

    let gets = count(&h.sim, "GET");
    let all = h.client.query("Contact", "Contact", None).await.expect("query");
    assert_eq!(all.iter().map(|r| r.id.clone()).collect::<Vec<_>>(), ids, "every record once, in order");
    assert_eq!(count(&h.sim, "GET") - gets, 3, "230 records in pages of 100: 100 + 100 + 30");

    let odd = h.client.query("Contact", "Contact", Some("[Last Name] = 'Odd'")).await.expect("query");
    assert_eq!(odd.len(), 115);
    assert!(odd.iter().all(|r| text(r, "Last Name").as_deref() == Some("Odd")));

    // Exactly 200 matches: a full last page, then an empty (204) one ends the paging.
    let first_200 = "[First Name] < 'F0200'";
    assert_eq!(h.client.query("Contact", "Contact", Some(first_200)).await.expect("query").len(), 200);

    let mut wanted: Vec<String> = ids[..120].to_vec();
    wanted.push("1-MISSING".into());
    wanted.push(ids[0].clone()); // duplicates are asked once
    wanted.push("1-QU'OTE".into());
    let gets = count(&h.sim, "GET");
    let got = h.client.get_by_ids("Contact", "Contact", &wanted).await.expect("get_by_ids");
    assert_eq!(
        got.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        ids[..120].to_vec(),
        "missing Ids are simply absent"
    );
    assert_eq!(count(&h.sim, "GET") - gets, 3, "122 distinct Ids in batches of 50");

    assert!(h.client.get_by_ids("Contact", "Contact", &[]).await.expect("empty").is_empty());
    let employees = h.client.query("Employee", "Employee", None).await.expect("empty component");
    assert!(employees.is_empty());
}

#[tokio::test]
async fn the_view_mode_goes_with_every_read_and_write() {
    let h = start(SiebelSimConfig::default()).await;
    let id = seed(&h.sim, 1).remove(0);
    let credentials = h.sim.credentials().clone();
    let config = SiebelConfig {
        base_url: h.base_url.clone(),
        user: credentials.user,
        password: credentials.password,
        transport: Default::default(),
    };
    // Without a ViewMode Siebel applies Sales Rep: a record on none of the user's teams is
    // neither read nor written.
    let sales_rep = SiebelClient::new(config.clone()).expect("client");
    assert!(sales_rep.query("Contact", "Contact", None).await.expect("query").is_empty());
    let change = Fields::from([("Job Title".to_owned(), Value::from("Buyer"))]);
    assert!(matches!(sales_rep.update("Contact", "Contact", &id, &change).await, Err(SiebelError::NotFound { .. })));
    // With ViewMode=All the query, the update and the delete reach it.
    let all = SiebelClient::new(config).expect("client").with_view_mode("All");
    assert_eq!(all.query("Contact", "Contact", None).await.expect("query").len(), 1);
    all.update("Contact", "Contact", &id, &change).await.expect("update");
    assert_eq!(h.sim.get("Contact", "Contact", &id).expect("stored")["Job Title"], json!("Buyer"));
    all.delete("Contact", "Contact", &id).await.expect("delete");
    assert!(h.sim.get("Contact", "Contact", &id).is_none());
}

#[tokio::test]
async fn date_times_cross_the_siebel_users_time_zone_both_ways() {
    let new_york: chrono_tz::Tz = "America/New_York".parse().expect("zone");
    let h = start(SiebelSimConfig { time_zone: new_york, ..SiebelSimConfig::default() }).await;
    let client = h.client.clone().with_time_zone(new_york);
    let at = Utc.with_ymd_and_hms(2026, 12, 1, 20, 0, 0).single().expect("date");
    let fields = Fields::from([("Planned".to_owned(), Value::DateTime(at)), ("Description".to_owned(), Value::from("Review"))]);
    let id = client.insert("Action", "Action", &fields).await.expect("insert");
    // Siebel holds the instant (shown to its New York user as 15:00) …
    assert_eq!(h.sim.get("Action", "Action", &id).expect("stored")["Planned"], json!("12/01/2026 15:00:00"));
    // … and Tandem reads it back as UTC text, finds it by a UTC literal, and writes UTC text
    // back unchanged.
    let spec = format!("[Planned] = {}", searchspec_literal("12/01/2026 20:00:00"));
    let found = client.query("Action", "Action", Some(&spec)).await.expect("query");
    assert_eq!(found.len(), 1);
    assert_eq!(text(&found[0], "Planned").as_deref(), Some("12/01/2026 20:00:00"));
    let stamped = parse_siebel_datetime(found[0].updated.as_deref().expect("Updated")).expect("a date-time");
    assert!((Utc::now().naive_utc() - stamped).num_minutes().abs() < 5, "Updated is read as UTC: {stamped}");
    client.update("Action", "Action", &id, &Fields::from([("Planned".to_owned(), Value::from("12/01/2026 21:00:00"))])).await.expect("update");
    assert_eq!(h.sim.get("Action", "Action", &id).expect("stored")["Planned"], json!("12/01/2026 16:00:00"));
    // A client that takes New York's text for UTC is five hours off: the shift the setting
    // exists to prevent.
    let naive = h.client.get_by_ids("Action", "Action", std::slice::from_ref(&id)).await.expect("get");
    assert_eq!(text(&naive[0], "Planned").as_deref(), Some("12/01/2026 16:00:00"));
}

#[tokio::test]
async fn a_query_over_9900_records_reads_them_all_forward_only() {
    let h = start(SiebelSimConfig::default()).await;
    let ids = seed(&h.sim, 9_901);
    let all = h.client.query("Contact", "Contact", None).await.expect("query");
    assert_eq!(all.len(), ids.len(), "every record, past the 9,900 a scrollable query may select");
    assert_eq!(all.last().map(|r| r.id.clone()), ids.last().cloned());
}

#[tokio::test]
async fn errors_are_typed_and_not_retried_when_retrying_cannot_help() {
    let h = start(SiebelSimConfig::default()).await;
    seed(&h.sim, 1);

    let wrong = SiebelClient::new(SiebelConfig {
        base_url: h.base_url.clone(),
        user: "sadmin".into(),
        password: "nope".into(),
        transport: Default::default(),
    })
    .expect("client");
    let gets = count(&h.sim, "GET");
    let error = wrong.query("Contact", "Contact", None).await.expect_err("401");
    assert!(matches!(error, SiebelError::Unauthorized { status: 401, .. }), "{error:?}");
    assert!(!error.to_string().contains("nope"), "the password never shows: {error}");
    assert!(error.to_string().contains("check the Siebel user and password"), "{error}");
    assert_eq!(count(&h.sim, "GET") - gets, 1, "a 401 is not retried");

    let error = h.client.query("Contact", "NoSuchBC", None).await.expect_err("404");
    assert!(matches!(error, SiebelError::NotFound { .. }), "{error:?}");
    let error = h.client.update("Contact", "Contact", "1-X", &Fields::from([("L".into(), Value::List(vec![]))])).await;
    assert!(matches!(error, Err(SiebelError::InvalidValue { .. })), "{error:?}");
    let error = h.client.query("Contact", "Contact", Some("[Last Name] = ")).await.expect_err("400");
    assert!(matches!(error, SiebelError::Server { status: 400, .. }), "{error:?}");
    assert!(error.to_string().contains("searchspec"), "the server's message is kept: {error}");

    for bad in ["not a url", "ftp://x/siebel/v1.0", "mailto:a@b"] {
        let result = SiebelClient::new(SiebelConfig { base_url: bad.into(), user: "u".into(), password: "p".into(), transport: Default::default() });
        assert!(matches!(result, Err(SiebelError::InvalidConfig { .. })), "{bad}");
    }

    // Nothing listens: a transport error after the retries.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let gone = SiebelClient::new(SiebelConfig {
        base_url: format!("http://127.0.0.1:{port}/siebel/v1.0"),
        user: "u".into(),
        password: "p".into(),
        transport: Default::default(),
    })
    .expect("client");
    let error = gone.query("Contact", "Contact", None).await.expect_err("transport");
    assert!(matches!(error, SiebelError::Transport { .. }) && error.is_transient(), "{error:?}");
}

#[tokio::test]
async fn server_failures_are_retried_for_idempotent_calls_only() {
    let h = start(SiebelSimConfig::default()).await;
    let ids = seed(&h.sim, 1);
    let control = h.sim.control();

    // Every request fails: GET gives up after 4 tries, POST after exactly one.
    control.faults.set(FaultSettings { rate: 1.0, kinds: vec!["http503".into()] });
    let gets = count(&h.sim, "GET");
    let error = h.client.get_by_ids("Contact", "Contact", &ids).await.expect_err("always 503");
    assert!(matches!(error, SiebelError::Server { status: 503, .. }), "{error:?}");
    assert!(error.to_string().contains("SBL-EAI-05001"), "{error}");
    assert_eq!(count(&h.sim, "GET") - gets, 4);
    let posts = count(&h.sim, "POST");
    let error = h
        .client
        .insert("Contact", "Contact", &Fields::from([("Last Name".into(), "X".into())]))
        .await
        .expect_err("503");
    assert!(matches!(error, SiebelError::Server { status: 503, .. }) && error.is_transient(), "{error:?}");
    assert_eq!(count(&h.sim, "POST") - posts, 1, "POST is never retried");
    control.faults.set(FaultSettings { rate: 0.0, kinds: vec![] });
    assert_eq!(
        h.client.query("Contact", "Contact", None).await.expect("query").len(),
        1,
        "no duplicate, no ghost insert"
    );
}

#[tokio::test]
async fn reads_updates_and_deletes_succeed_under_20_percent_faults() {
    // The default kinds: 500, 503 and dropped connections (a dropped write was carried out).
    let h = start(SiebelSimConfig { fault_rate: 0.2, seed: 20261125, ..SiebelSimConfig::default() }).await;
    let ids = seed(&h.sim, 150);

    let all = h.client.query("Contact", "Contact", None).await.expect("query under faults");
    assert_eq!(all.len(), 150);
    let got = h.client.get_by_ids("Contact", "Contact", &ids).await.expect("get_by_ids under faults");
    assert_eq!(got.len(), 150);
    for id in &ids[..30] {
        let change = Fields::from([("Job Title".to_owned(), Value::Text(format!("T-{id}")))]);
        h.client.update("Contact", "Contact", id, &change).await.expect("update under faults");
    }
    for id in &ids[140..] {
        h.client.delete("Contact", "Contact", id).await.expect("delete under faults");
    }
    for id in &ids[..30] {
        assert_eq!(h.sim.get("Contact", "Contact", id).expect("kept")["Job Title"], json!(format!("T-{id}")));
    }
    for id in &ids[140..] {
        assert!(h.sim.get("Contact", "Contact", id).is_none());
    }
    let logical = 2 + 4 + 30 + 10; // query pages, get_by_ids batches, updates, deletes
    let sent = count(&h.sim, "GET") + count(&h.sim, "PUT") + count(&h.sim, "DELETE");
    assert!(sent > logical, "faults were injected and retried ({sent} requests for {logical} calls)");

    // Inserts are not retried: each either succeeds once or fails, never duplicates. A 500 or
    // 503 wrote nothing; a dropped connection may have written the record.
    let mut created = std::collections::BTreeSet::new();
    let mut unanswered = std::collections::BTreeSet::new();
    let mut rejected = std::collections::BTreeSet::new();
    // Until both kinds of failure were met (the draws are seeded, so this is repeatable).
    for i in 0..300 {
        if i >= 40 && !unanswered.is_empty() && !rejected.is_empty() {
            break;
        }
        let name = format!("New{i}");
        match h.client.insert("Contact", "Contact", &Fields::from([("Last Name".to_owned(), Value::Text(name.clone()))])).await {
            Ok(_) => created.insert(name),
            Err(SiebelError::Transport { .. }) => unanswered.insert(name),
            Err(error) if error.is_transient() => rejected.insert(name),
            Err(error) => panic!("unexpected {error:?}"),
        };
    }
    assert!(!unanswered.is_empty() && !rejected.is_empty(), "both kinds of failure were drawn: dropped {unanswered:?}, refused {rejected:?}");
    h.sim.control().faults.set(FaultSettings { rate: 0.0, kinds: vec![] });
    let news = h.client.query("Contact", "Contact", Some("[Last Name] LIKE 'New*'")).await.expect("query");
    let mut stored: Vec<String> = news.iter().filter_map(|r| text(r, "Last Name")).collect();
    stored.sort();
    let distinct: std::collections::BTreeSet<String> = stored.iter().cloned().collect();
    assert_eq!(stored.len(), distinct.len(), "no insert was sent twice: {stored:?}");
    assert!(created.is_subset(&distinct), "every acknowledged insert exists");
    assert!(distinct.is_disjoint(&rejected), "a 500/503 wrote nothing");
    assert_eq!(distinct, &created | &unanswered, "a dropped insert was carried out");
}

#[test]
fn literals_and_values_convert_as_siebel_expects() {
    assert_eq!(searchspec_literal("plain"), "'plain'");
    assert_eq!(searchspec_literal("O'Brien"), "'O''Brien'");
    assert_eq!(searchspec_literal("''"), "''''''");
    let utc = chrono_tz::Tz::UTC;
    assert_eq!(to_siebel_text("f", &Value::Integer(-3), utc).expect("int"), Some("-3".into()));
    assert_eq!(to_siebel_text("f", &Value::Number(3.0), utc).expect("num"), Some("3".into()));
    assert!(to_siebel_text("f", &Value::Number(f64::NAN), utc).is_err());
    assert_eq!(to_siebel_text("f", &Value::Null, utc).expect("null"), None);
    // Date-times go out in the Siebel user's zone, as values or as Tandem's UTC text.
    let paris: chrono_tz::Tz = "Europe/Paris".parse().expect("zone");
    let at = Value::DateTime(Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).single().expect("date"));
    assert_eq!(to_siebel_text("Planned", &at, paris).expect("date"), Some("12/01/2026 10:00:00".into()));
    assert_eq!(to_siebel_text("Planned", &Value::from("12/01/2026 09:00:00"), paris).expect("text"), Some("12/01/2026 10:00:00".into()));
    assert_eq!(to_siebel_text("Description", &Value::from("call at 9"), paris).expect("text"), Some("call at 9".into()));
    let debug =
        format!("{:?}", SiebelConfig { base_url: "http://x".into(), user: "u".into(), password: "secret".into(), transport: Default::default() });
    assert!(!debug.contains("secret"), "{debug}");
}

#[tokio::test]
async fn idempotent_inserts_under_20_percent_faults_with_lost_replies_and_drops_create_each_record_once() {
    let h = start(SiebelSimConfig { seed: 4, ..SiebelSimConfig::default() }).await;
    // Drawn among four kinds, so about 10% of requests apply a write and then answer 503 or
    // close the connection without a reply.
    h.sim.control().faults.set(FaultSettings {
        rate: 0.2,
        kinds: vec!["http500".into(), "http503".into(), "lost_reply".into(), "drop".into()],
    });
    let mut ids = std::collections::BTreeMap::new();
    for i in 0..40 {
        let sync_id = format!("tandem-sync-{i:03}");
        let fields = Fields::from([("Last Name".to_owned(), Value::Text(format!("Idem{i}")))]);
        // A caller (the engine) retries the whole operation when it fails transiently; the
        // operation itself must still create at most one record.
        let mut outcome = h.client.insert_idempotent("Contact", "Contact", &fields, &sync_id).await;
        let mut tries = 1;
        while let Err(error) = &outcome {
            assert!(error.is_transient(), "{error:?}");
            assert!(tries < 10, "kept failing: {error}");
            outcome = h.client.insert_idempotent("Contact", "Contact", &fields, &sync_id).await;
            tries += 1;
        }
        ids.insert(sync_id, outcome.expect("created"));
    }
    let posts = count(&h.sim, "POST");
    h.sim.control().faults.set(FaultSettings { rate: 0.0, kinds: vec![] });
    let all = h.client.query("Contact", "Contact", Some("[Last Name] LIKE 'Idem*'")).await.expect("query");
    assert_eq!(all.len(), 40, "nothing lost, nothing duplicated ({posts} POSTs sent)");
    for record in &all {
        let sync_id = text(record, "Integration Id").expect("carries the sync id");
        assert_eq!(ids.get(&sync_id), Some(&record.id), "the returned Id is the one record of {sync_id}");
    }
    // Once it exists, another call finds it and sends no POST.
    let posts = count(&h.sim, "POST");
    let again = h
        .client
        .insert_idempotent("Contact", "Contact", &Fields::new(), "tandem-sync-007")
        .await
        .expect("lookup");
    assert_eq!(Some(&again), ids.get("tandem-sync-007"));
    assert_eq!(count(&h.sim, "POST"), posts);
}

#[tokio::test]
async fn oauth_client_credentials_fetch_and_refresh_the_bearer_token() {
    let oauth = tandem_sim::Credentials::new("tandem-client", "client-secret");
    let h = start(SiebelSimConfig { oauth_client: Some(oauth.clone()), ..SiebelSimConfig::default() }).await;
    seed(&h.sim, 3);
    let origin = h.base_url.trim_end_matches("/siebel/v1.0").to_owned();
    let client = SiebelClient::new(SiebelConfig {
        base_url: h.base_url.clone(),
        user: "not-used".into(),
        password: "wrong".into(),
        transport: Default::default(),
    })
    .expect("client")
    .with_view_mode("All")
    .with_oauth2(OAuth2Config {
        token_url: format!("{origin}/oauth2/token"),
        client_id: oauth.user.clone(),
        client_secret: oauth.password.clone(),
    })
    .expect("oauth");
    assert_eq!(client.query("Contact", "Contact", None).await.expect("bearer works").len(), 3);
    assert_eq!(client.query("Contact", "Contact", None).await.expect("cached").len(), 3);
    assert_eq!(count(&h.sim, "TOKEN"), 1, "the token is reused while valid");
    // Revoked tokens get a 401; the client fetches a new token once and goes on.
    let http = reqwest::Client::new();
    http.post(format!("{origin}/_sim/oauth/revoke")).send().await.expect("revoke");
    assert_eq!(client.query("Contact", "Contact", None).await.expect("refreshed").len(), 3);
    assert_eq!(count(&h.sim, "TOKEN"), 2);
    // A wrong secret is a configuration error, not retried.
    let bad = SiebelClient::new(SiebelConfig { base_url: h.base_url.clone(), user: "u".into(), password: "p".into(), transport: Default::default() })
        .expect("client")
        .with_oauth2(OAuth2Config {
            token_url: format!("{origin}/oauth2/token"),
            client_id: oauth.user.clone(),
            client_secret: "nope".into(),
        })
        .expect("oauth");
    let error = bad.query("Contact", "Contact", None).await.expect_err("refused");
    assert!(matches!(&error, SiebelError::Token { source } if source.status() == Some(401)), "{error:?}");
    assert!(!error.is_transient() && error.is_permanent(), "{error:?}");
    assert!(!format!("{error} {error:?} {bad:?}").contains("nope"), "the secret is never shown: {error}");
    assert_eq!(count(&h.sim, "TOKEN"), 3, "one token request, not retried");
}

#[tokio::test]
async fn the_concurrency_cap_bounds_requests_in_flight() {
    let h = start(SiebelSimConfig::default()).await;
    let ids = seed(&h.sim, 5);
    h.sim.control().faults.set(FaultSettings { rate: 1.0, kinds: vec!["slow".into()] });
    let client = h.client.clone().with_max_concurrent(1);
    let started = std::time::Instant::now();
    let (a, b) = tokio::join!(
        client.get_by_ids("Contact", "Contact", &ids[..1]),
        client.get_by_ids("Contact", "Contact", &ids[1..2])
    );
    assert_eq!(a.expect("a").len() + b.expect("b").len(), 2);
    // Each slow reply takes 1.5 s; with one request at a time the two run back to back.
    assert!(started.elapsed() >= std::time::Duration::from_millis(2900), "{:?}", started.elapsed());
}

#[test]
fn random_replies_never_panic_the_parser() {
    use rand::{Rng as _, SeedableRng as _};
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eb1e1);
    let fragments: &[&str] = &[
        "{", "}", "[", "]", "\"items\"", ":", ",", "\"Id\"", "\"1-ABC\"", "null", "true", "12.5e400", "\"Link\"",
        "{\"rel\":\"self\"}", "\"\\u0000\"", "\"Updated\"", "\"01/02/2026 10:00:00\"", "-0", "\"\\ud800\"",
    ];
    for _ in 0..20_000 {
        let mut body = String::new();
        for _ in 0..rng.random_range(0..24) {
            body.push_str(fragments[rng.random_range(0..fragments.len())]);
        }
        let _ = parse_query_reply(body.as_bytes());
        let bytes: Vec<u8> = (0..rng.random_range(0..64)).map(|_| rng.random()).collect();
        let _ = parse_query_reply(&bytes);
        let _ = error_message(&bytes);
    }
    // Well-formed replies still parse.
    let records = parse_query_reply(br#"{"items":[{"Id":"1-A","Updated":"01/02/2026 10:00:00","N":3}]}"#).expect("ok");
    assert_eq!(records[0].updated.as_deref(), Some("01/02/2026 10:00:00"));
}

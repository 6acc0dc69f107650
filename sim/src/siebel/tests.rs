//! HTTP conformance tests of the Siebel emulator over loopback, each tied to the behaviour
//! Oracle documents (reference/siebel-ssse-and-rest.md §6, cited as "§6 …").

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::{Map, Value as Json, json};

use super::*;

const USER: &str = "sadmin";
const PASSWORD: &str = "siebel-sim";

struct Harness {
    sim: SiebelSim,
    server: RunningServer,
    http: reqwest::Client,
}

impl Harness {
    async fn start() -> Self {
        Self::with_config(SiebelSimConfig::default()).await
    }

    async fn with_config(config: SiebelSimConfig) -> Self {
        let sim = SiebelSim::new(config).expect("emulator starts");
        let server = sim.serve("127.0.0.1:0".parse().expect("addr")).await.expect("bind loopback");
        Self { sim, server, http: reqwest::Client::new() }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.base_url())
    }

    fn data(&self, rest: &str) -> String {
        self.url(&format!("{DATA_PREFIX}/{rest}"))
    }

    async fn get(&self, rest: &str, query: &[(&str, &str)]) -> reqwest::Response {
        self.http.get(self.data(rest)).query(query).basic_auth(USER, Some(PASSWORD)).send().await.expect("GET")
    }

    async fn get_json(&self, rest: &str, query: &[(&str, &str)]) -> Json {
        let response = self.get(rest, query).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {rest} {query:?}");
        response.json().await.expect("JSON body")
    }

    async fn send(&self, method: reqwest::Method, rest: &str, body: Json) -> reqwest::Response {
        self.http
            .request(method, self.data(rest))
            .basic_auth(USER, Some(PASSWORD))
            .json(&body)
            .send()
            .await
            .expect("request")
    }

    async fn set_faults(&self, rate: f64, kinds: &[&str]) {
        let response = self
            .http
            .post(self.url("/_sim/faults"))
            .json(&json!({ "rate": rate, "kinds": kinds }))
            .send()
            .await
            .expect("set faults");
        assert_eq!(response.status(), StatusCode::OK);
    }

    fn seed_contacts(&self, count: usize) -> Vec<String> {
        (0..count)
            .map(|i| {
                let mut fields = Map::new();
                fields.insert("First Name".into(), json!(format!("First{i:03}")));
                fields.insert("Last Name".into(), json!(if i % 2 == 0 { "Even" } else { "Odd" }));
                self.sim.insert("Contact", "Contact", fields).expect("seed")
            })
            .collect()
    }
}

fn items(body: &Json) -> Vec<Json> {
    match &body["items"] {
        Json::Array(items) => items.clone(),
        other => panic!("items should be an array, got {other}"),
    }
}

fn ids(body: &Json) -> Vec<String> {
    items(body).iter().map(|item| item["Id"].as_str().expect("Id").to_owned()).collect()
}

/// One request and the status the reference documents for it.
struct Case {
    doc: &'static str,
    method: &'static str,
    path: String,
    auth: Option<(&'static str, &'static str)>,
    content_type: Option<&'static str>,
    body: &'static str,
    status: u16,
}

#[tokio::test]
async fn siebel_status_codes_follow_the_documented_table() {
    let h = Harness::start().await;
    let ids = h.seed_contacts(3);
    let good = Some((USER, PASSWORD));
    let json_type = Some("application/json");
    let id = &ids[0];
    #[rustfmt::skip]
    let cases = vec![
        // §6 URLs: GET /data/{BO}/{BC} is a query; 200.
        Case { doc: "GET query", method: "GET", path: "Contact/Contact".into(), auth: good, content_type: None, body: "", status: 200 },
        // §6 URLs: GET /data/{BO}/{BC}/{Id}, e.g. GET …/Account/Account/1LS-9XKU; 200.
        Case { doc: "GET by Id", method: "GET", path: format!("Contact/Contact/{id}"), auth: good, content_type: None, body: "", status: 200 },
        // §6 Errors: 404 for an invalid object name.
        Case { doc: "unknown BC", method: "GET", path: "Contact/Nope".into(), auth: good, content_type: None, body: "", status: 404 },
        Case { doc: "unknown BO", method: "GET", path: "Nope/Contact".into(), auth: good, content_type: None, body: "", status: 404 },
        Case { doc: "absent Id", method: "GET", path: "Contact/Contact/1-NOPE".into(), auth: good, content_type: None, body: "", status: 404 },
        Case { doc: "unknown path", method: "GET", path: "Contact/Contact/1-X/Child/2".into(), auth: good, content_type: None, body: "", status: 404 },
        // §6 Auth: Basic; 401 in the status table.
        Case { doc: "no auth", method: "GET", path: "Contact/Contact".into(), auth: None, content_type: None, body: "", status: 401 },
        Case { doc: "bad password", method: "GET", path: "Contact/Contact".into(), auth: Some((USER, "wrong")), content_type: None, body: "", status: 401 },
        Case { doc: "no auth on write", method: "POST", path: "Contact/Contact".into(), auth: None, content_type: json_type, body: "{}", status: 401 },
        // §6 Insert: POST with field/value pairs; the response carries items (200).
        Case { doc: "POST insert", method: "POST", path: "Contact/Contact".into(), auth: good, content_type: json_type, body: r#"{"Last Name":"Case"}"#, status: 200 },
        // §6 Upsert: PUT …/{Id}; status 200.
        Case { doc: "PUT upsert", method: "PUT", path: format!("Contact/Contact/{id}"), auth: good, content_type: json_type, body: r#"{"Job Title":"CEO"}"#, status: 200 },
        // §6 Delete: 204 means No Content.
        Case { doc: "DELETE", method: "DELETE", path: format!("Contact/Contact/{}", ids[1]), auth: good, content_type: None, body: "", status: 204 },
        Case { doc: "DELETE absent", method: "DELETE", path: format!("Contact/Contact/{}", ids[1]), auth: good, content_type: None, body: "", status: 404 },
        // §6 Errors: 415 (unsupported media type) is in the status table.
        Case { doc: "POST text/plain", method: "POST", path: "Contact/Contact".into(), auth: good, content_type: Some("text/plain"), body: "{}", status: 415 },
        Case { doc: "PUT no type", method: "PUT", path: format!("Contact/Contact/{id}"), auth: good, content_type: None, body: "{}", status: 415 },
        // §6 Errors: 405 (method not allowed) is in the status table.
        Case { doc: "PATCH", method: "PATCH", path: format!("Contact/Contact/{id}"), auth: good, content_type: json_type, body: "{}", status: 405 },
        Case { doc: "POST on a record", method: "POST", path: format!("Contact/Contact/{id}"), auth: good, content_type: json_type, body: "{}", status: 405 },
        Case { doc: "DELETE a whole BC", method: "DELETE", path: "Contact/Contact".into(), auth: good, content_type: None, body: "", status: 405 },
        // Malformed input: 400 with a message (the body "usually contains a message").
        Case { doc: "bad JSON", method: "POST", path: "Contact/Contact".into(), auth: good, content_type: json_type, body: "{nope", status: 400 },
        Case { doc: "JSON array", method: "POST", path: "Contact/Contact".into(), auth: good, content_type: json_type, body: "[1]", status: 400 },
        Case { doc: "object value", method: "POST", path: "Contact/Contact".into(), auth: good, content_type: json_type, body: r#"{"A":{"b":1}}"#, status: 400 },
        Case { doc: "bad searchspec", method: "GET", path: "Contact/Contact?searchspec=%5BA%5D%20%3D".into(), auth: good, content_type: None, body: "", status: 400 },
        Case { doc: "PageSize=0", method: "GET", path: "Contact/Contact?PageSize=0".into(), auth: good, content_type: None, body: "", status: 400 },
        Case { doc: "PageSize text", method: "GET", path: "Contact/Contact?PageSize=ten".into(), auth: good, content_type: None, body: "", status: 400 },
        // §6 Query parameters: sortspec is supported (syntax "not retrieved": we take
        // `Field (ASCENDING|DESCENDING), …`); an unknown direction is malformed input.
        Case { doc: "sortspec", method: "GET", path: "Contact/Contact?sortspec=Last%20Name%20(DESCENDING)".into(), auth: good, content_type: None, body: "", status: 200 },
        Case { doc: "bad sortspec", method: "GET", path: "Contact/Contact?sortspec=Last%20Name%20(SIDEWAYS)".into(), auth: good, content_type: None, body: "", status: 400 },
        // §6 Auth: OAuth 2.0 bearer tokens are validated by introspection; an unknown one is 401.
        Case { doc: "unknown bearer", method: "GET", path: "Contact/Contact".into(), auth: None, content_type: Some("bearer"), body: "", status: 401 },
        // §6 Paging: an empty page may return 204.
        Case { doc: "empty query", method: "GET", path: "Contact/Contact?searchspec=%5BLast%20Name%5D%3D'zzz'".into(), auth: good, content_type: None, body: "", status: 204 },
        Case { doc: "past the end", method: "GET", path: "Contact/Contact?StartRowNum=100".into(), auth: good, content_type: None, body: "", status: 204 },
    ];
    for case in cases {
        let method = reqwest::Method::from_bytes(case.method.as_bytes()).expect("method");
        let mut request = h.http.request(method, h.data(&case.path));
        if let Some((user, password)) = case.auth {
            request = request.basic_auth(user, Some(password));
        }
        match case.content_type {
            Some("bearer") => request = request.bearer_auth("not-a-token"),
            Some(content_type) => request = request.header("content-type", content_type),
            None => {}
        }
        if !case.body.is_empty() {
            request = request.body(case.body);
        }
        let response = request.send().await.expect("send");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        assert_eq!(status, case.status, "{}: {} {} -> {text}", case.doc, case.method, case.path);
        if status == 401 {
            let challenge = headers.get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or("");
            assert!(challenge.starts_with("Basic"), "{}: 401 must challenge for Basic auth", case.doc);
        }
        if status >= 400 {
            let body: Json =
                serde_json::from_str(&text).unwrap_or_else(|_| panic!("{}: error body must be JSON: {text}", case.doc));
            assert!(body["ERROR"].as_str().is_some_and(|m| !m.is_empty()), "{}: error message in {text}", case.doc);
        }
        if status == 204 {
            assert!(text.is_empty(), "{}: 204 has no body", case.doc);
        }
    }
}

#[tokio::test]
async fn siebel_page_size_defaults_to_10_and_is_capped_at_100() {
    let h = Harness::start().await;
    h.seed_contacts(150);
    // §6 Query parameters: PageSize default 10.
    assert_eq!(items(&h.get_json("Contact/Contact", &[("uniformresponse", "y")]).await).len(), 10);
    assert_eq!(items(&h.get_json("Contact/Contact", &[("PageSize", "37"), ("uniformresponse", "y")]).await).len(), 37);
    // §6: maximum 100; a larger request is clamped to it.
    assert_eq!(
        items(&h.get_json("Contact/Contact", &[("PageSize", "500"), ("uniformresponse", "y")]).await).len(),
        100
    );
    // Parameter names are matched case-insensitively.
    assert_eq!(items(&h.get_json("Contact/Contact", &[("pagesize", "3"), ("uniformresponse", "y")]).await).len(), 3);
}

#[tokio::test]
async fn siebel_start_row_num_pages_through_every_record_once_in_order() {
    let h = Harness::start().await;
    let seeded = h.seed_contacts(250);
    // §6: StartRowNum is a 0-based offset; advance it until a page comes back short.
    let mut seen = Vec::new();
    let mut start = 0;
    loop {
        let response = h
            .get(
                "Contact/Contact",
                &[("PageSize", "100"), ("StartRowNum", &start.to_string()), ("uniformresponse", "y")],
            )
            .await;
        if response.status() == StatusCode::NO_CONTENT {
            break;
        }
        assert_eq!(response.status(), StatusCode::OK);
        let body: Json = response.json().await.expect("json");
        let page = ids(&body);
        let short = page.len() < 100;
        seen.extend(page);
        start += 100;
        if short {
            break;
        }
    }
    assert_eq!(seen, seeded, "every record once, in Id (= insertion) order");
    let second = h.get_json("Contact/Contact", &[("StartRowNum", "10"), ("uniformresponse", "y")]).await;
    assert_eq!(ids(&second), seeded[10..20].to_vec());
}

#[tokio::test]
async fn siebel_uniformresponse_fields_links_and_record_count() {
    let h = Harness::start().await;
    let seeded = h.seed_contacts(5);
    let id = &seeded[2];
    // Without uniformresponse one record comes as an object …
    let single = h.get_json(&format!("Contact/Contact/{id}"), &[]).await;
    assert!(single["items"].is_object(), "{single}");
    assert_eq!(single["items"]["Id"], json!(id));
    assert_eq!(single["items"]["First Name"], json!("First002"));
    assert_eq!(single["items"]["Job Title"], json!(""), "empty component fields come as \"\"");
    // … §6: with uniformresponse=y items is always an array, even for one record.
    let uniform = h.get_json(&format!("Contact/Contact/{id}"), &[("uniformresponse", "y")]).await;
    assert_eq!(ids(&uniform), vec![id.clone()]);
    // Several records come as an array either way.
    assert!(h.get_json("Contact/Contact", &[]).await["items"].is_array());
    // §6 Response shape: each item has self and canonical links; the reply has a self link.
    let item = &items(&uniform)[0];
    let rels: Vec<&str> = item["Link"].as_array().expect("links").iter().filter_map(|l| l["rel"].as_str()).collect();
    assert_eq!(rels, vec!["self", "canonical"]);
    assert!(
        item["Link"][0]["href"].as_str().expect("href").ends_with(&format!("/siebel/v1.0/data/Contact/Contact/{id}"))
    );
    assert_eq!(uniform["Link"][0]["rel"], json!("self"));
    // §6: fields is a comma list of fields to return; Id always comes.
    let some = h.get_json("Contact/Contact", &[("fields", "First Name, Updated"), ("uniformresponse", "y")]).await;
    for item in items(&some) {
        let keys: BTreeSet<&str> = item.as_object().expect("object").keys().map(String::as_str).collect();
        assert_eq!(keys, BTreeSet::from(["Id", "First Name", "Updated", "Link"]));
    }
    // §6: recordcountneeded=true adds the Total-Record-Count header.
    let counted = h
        .get(
            "Contact/Contact",
            &[("searchspec", "[Last Name] = 'Even'"), ("PageSize", "1"), ("recordcountneeded", "true")],
        )
        .await;
    assert_eq!(counted.headers().get("Total-Record-Count").and_then(|v| v.to_str().ok()), Some("3"));
    let uncounted = h.get("Contact/Contact", &[]).await;
    assert!(uncounted.headers().get("Total-Record-Count").is_none());
}

#[tokio::test]
async fn siebel_searchspec_filters_over_http() {
    let h = Harness::start().await;
    h.seed_contacts(20);
    // §6: searchspec such as ([First Name] LIKE 'J*' AND [Last Name] LIKE 'A*').
    let body = h
        .get_json(
            "Contact/Contact",
            &[("searchspec", "([First Name] LIKE 'First01?' AND [Last Name] = 'Odd')"), ("uniformresponse", "y")],
        )
        .await;
    let names: Vec<String> = items(&body).iter().map(|i| i["First Name"].as_str().unwrap_or("").to_owned()).collect();
    assert_eq!(names, vec!["First011", "First013", "First015", "First017", "First019"]);
    // Change detection: [Updated] > '…' compares as dates.
    let future = h.get("Contact/Contact", &[("searchspec", "[Updated] > '01/01/2099 00:00:00'")]).await;
    assert_eq!(future.status(), StatusCode::NO_CONTENT);
    let past = h
        .get_json("Contact/Contact", &[("searchspec", "[Updated] > '12/31/1999 23:59:59'"), ("PageSize", "100")])
        .await;
    assert_eq!(items(&past).len(), 20);
    // A malformed spec is a 400 that says what is wrong.
    let bad = h.get("Contact/Contact", &[("searchspec", "[Last Name] = 'Odd' AND")]).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let message = bad.json::<Json>().await.expect("json")["ERROR"].as_str().unwrap_or("").to_owned();
    assert!(message.contains("searchspec"), "{message}");
}

#[tokio::test]
async fn siebel_writes_keep_system_fields_and_advance_updated() {
    let h = Harness::start().await;
    // §6 Insert: {"items":{…fields…,"Id":…,"Link":{"rel":"self",…}}}; client Ids are ignored.
    let response = h
        .send(
            reqwest::Method::POST,
            "Contact/Contact",
            json!({"First Name": "Ann", "Last Name": "Lee", "Id": "MINE", "Mod Id": "99", "Custom Extra": 5}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Json = response.json().await.expect("json");
    let id = body["items"]["Id"].as_str().expect("Id").to_owned();
    assert_ne!(id, "MINE");
    assert!(id.starts_with("1-"), "{id}");
    assert_eq!(body["items"]["Link"]["rel"], json!("self"), "POST replies carry only a self link");
    let stored = h.sim.get("Contact", "Contact", &id).expect("stored");
    assert_eq!(stored["Mod Id"], json!("0"));
    assert_eq!(stored["Custom Extra"], json!("5"), "unknown fields are stored leniently");
    let created = stored["Updated"].as_str().expect("Updated").to_owned();
    assert!(parse_siebel_datetime(&created).is_some(), "Updated is MM/DD/YYYY HH:MM:SS: {created}");

    // §6 Upsert: PUT …/{Id} changes the given fields, 200; Updated and Mod Id advance.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let response = h
        .send(
            reqwest::Method::PUT,
            &format!("Contact/Contact/{id}"),
            json!({"Job Title": "CEO", "Last Name": "", "Updated": "01/01/2000 00:00:00"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let stored = h.sim.get("Contact", "Contact", &id).expect("stored");
    assert_eq!(stored["Job Title"], json!("CEO"));
    assert_eq!(stored["First Name"], json!("Ann"), "fields not sent are kept");
    assert_eq!(stored["Last Name"], json!(""), "an empty value clears the field");
    assert_eq!(stored["Mod Id"], json!("1"));
    let updated = stored["Updated"].as_str().expect("Updated");
    assert!(parse_siebel_datetime(updated) > parse_siebel_datetime(&created), "{updated} after {created}");
    assert_eq!(stored["Created"], json!(created), "Created never changes");
    let changed = h.get_json("Contact/Contact", &[("searchspec", &format!("[Updated] > '{created}'"))]).await;
    assert_eq!(changed["items"]["Id"], json!(id));

    // PUT is an upsert: an absent Id is created with that Id.
    let response = h.send(reqwest::Method::PUT, "Contact/Contact/1-NEW1", json!({"Last Name": "Upserted"})).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(h.sim.get("Contact", "Contact", "1-NEW1").expect("created")["Last Name"], json!("Upserted"));

    // §6 Delete: 204; the record is gone.
    let response = h
        .http
        .delete(h.data(&format!("Contact/Contact/{id}")))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .expect("delete");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(h.sim.get("Contact", "Contact", &id).is_none());
    assert_eq!(h.get(&format!("Contact/Contact/{id}"), &[]).await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn siebel_each_component_is_served_separately() {
    let h = Harness::start().await;
    for (bo, bc, field) in [
        ("Contact", "Contact", "Email Address"),
        ("Employee", "Employee", "Login Name"),
        ("Action", "Action", "Planned"),
    ] {
        let response = h.send(reqwest::Method::POST, &format!("{bo}/{bc}"), json!({ field: "x" })).await;
        assert_eq!(response.status(), StatusCode::OK, "{bo}/{bc}");
        let listed = h.get_json(&format!("{bo}/{bc}"), &[("uniformresponse", "y")]).await;
        assert_eq!(items(&listed).len(), 1, "{bo}/{bc} holds only its own record");
        assert_eq!(items(&listed)[0][field], json!("x"));
    }
}

#[tokio::test]
async fn siebel_stats_count_every_data_request_by_method() {
    let h = Harness::start().await;
    let ids = h.seed_contacts(2);
    h.get("Contact/Contact", &[]).await;
    h.get("Contact/Nope", &[]).await;
    h.send(reqwest::Method::POST, "Contact/Contact", json!({"Last Name": "A"})).await;
    h.send(reqwest::Method::PUT, &format!("Contact/Contact/{}", ids[0]), json!({"Last Name": "B"})).await;
    h.http
        .delete(h.data(&format!("Contact/Contact/{}", ids[1])))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .expect("delete");
    h.http.get(h.data("Contact/Contact")).send().await.expect("unauthenticated");
    // Contract: GET /_sim/stats answers {"requests": {"<method>": N}} and needs no auth.
    let stats: Json = h.http.get(h.url("/_sim/stats")).send().await.expect("stats").json().await.expect("json");
    assert_eq!(stats, json!({"requests": {"GET": 3, "POST": 1, "PUT": 1, "DELETE": 1}}));
    assert_eq!(h.sim.stats().requests.get("GET"), Some(&3));
}

#[tokio::test]
async fn siebel_injected_faults_answer_500_or_503_and_change_nothing() {
    let h = Harness::start().await;
    let seeded = h.seed_contacts(1);
    let id = &seeded[0];

    h.set_faults(1.0, &["http500"]).await;
    let response = h.send(reqwest::Method::POST, "Contact/Contact", json!({"Last Name": "Ghost"})).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body: Json = response.json().await.expect("json");
    assert!(body["ERROR"].as_str().is_some_and(|m| m.starts_with("SBL-")), "{body}");
    let response =
        h.send(reqwest::Method::PUT, &format!("Contact/Contact/{id}"), json!({"Last Name": "Changed"})).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let response = h
        .http
        .delete(h.data(&format!("Contact/Contact/{id}")))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .expect("delete");
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);

    // §6 Errors: the Problem-style 503 body with an SBL error code.
    h.set_faults(1.0, &["http503"]).await;
    let response = h.get("Contact/Contact", &[]).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Json = response.json().await.expect("json");
    assert_eq!(body["status"], json!(503));
    assert_eq!(body["errorCode"], json!("SBL-EAI-05001"));

    // Faults are drawn after auth: a bad password is still a 401.
    let response = h.http.get(h.data("Contact/Contact")).basic_auth(USER, Some("wrong")).send().await.expect("get");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    h.set_faults(0.0, &[]).await;
    let listed = h.get_json("Contact/Contact", &[("uniformresponse", "y")]).await;
    assert_eq!(ids(&listed), vec![id.clone()], "the faulted insert and delete did not happen");
    assert_eq!(
        h.sim.get("Contact", "Contact", id).expect("kept")["Last Name"],
        json!("Even"),
        "the faulted PUT did not happen"
    );

    // With a rate of 0.3 both kinds show up and the rest succeed.
    h.set_faults(0.3, &[]).await;
    let mut statuses = BTreeSet::new();
    for _ in 0..60 {
        statuses.insert(h.get("Contact/Contact", &[]).await.status().as_u16());
    }
    assert_eq!(statuses, BTreeSet::from([200, 500, 503]));
}

#[tokio::test]
async fn siebel_slow_fault_delays_but_answers_normally() {
    let h = Harness::start().await;
    h.seed_contacts(1);
    // "slow" is drawn only when named in kinds; it delays the answer, then serves it.
    h.set_faults(1.0, &["slow"]).await;
    let started = std::time::Instant::now();
    let response = h.get("Contact/Contact", &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(1500), "{:?}", started.elapsed());
}

#[tokio::test]
async fn siebel_data_file_survives_a_restart_and_is_replaced_atomically() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("siebel.json");
    let config = SiebelSimConfig { data_file: Some(path.clone()), ..SiebelSimConfig::default() };
    let id = {
        let h = Harness::with_config(config.clone()).await;
        h.seed_contacts(2);
        let response = h.send(reqwest::Method::POST, "Contact/Contact", json!({"Last Name": "Kept"})).await;
        let body: Json = response.json().await.expect("json");
        body["items"]["Id"].as_str().expect("Id").to_owned()
    };
    assert!(path.exists());
    let leftovers: Vec<_> =
        std::fs::read_dir(dir.path()).expect("dir").filter_map(Result::ok).map(|e| e.file_name()).collect();
    assert_eq!(leftovers.len(), 1, "no temporary file left behind: {leftovers:?}");
    let again = SiebelSim::new(config).expect("reload");
    assert_eq!(again.get("Contact", "Contact", &id).expect("reloaded")["Last Name"], json!("Kept"));
    // New Ids continue after the loaded ones instead of reusing them.
    let next = again.insert("Contact", "Contact", Map::new()).expect("insert");
    assert!(next > id, "{next} after {id}");

    std::fs::write(&path, "not json").expect("corrupt");
    let error = SiebelSim::new(SiebelSimConfig { data_file: Some(path), ..SiebelSimConfig::default() })
        .expect_err("a corrupt data file is refused");
    assert!(format!("{error:#}").contains("not valid"), "{error:#}");
}

#[test]
fn siebel_generated_ids_are_fixed_width_and_ordered() {
    assert_eq!(row_id(FIRST_ROW_NUMBER), "1-10000");
    assert_eq!(row_id(FIRST_ROW_NUMBER + 35), "1-1000Z");
    assert!(row_id(FIRST_ROW_NUMBER + 36) > row_id(FIRST_ROW_NUMBER + 35));
}

#[tokio::test]
async fn siebel_sortspec_orders_before_paging_and_keeps_id_order_on_ties() {
    let h = Harness::start().await;
    let seeded = h.seed_contacts(6); // First000..First005, Last Name Even/Odd alternating
    // §6 Query parameters: sortspec (our syntax: `Field (DESCENDING), Field`).
    let body = h
        .get_json("Contact/Contact", &[("sortspec", "Last Name (DESCENDING), First Name (DESCENDING)"), ("uniformresponse", "y")])
        .await;
    assert_eq!(ids(&body), vec![seeded[5].clone(), seeded[3].clone(), seeded[1].clone(), seeded[4].clone(), seeded[2].clone(), seeded[0].clone()]);
    // Paging applies after sorting; ties keep Id order.
    let page = h
        .get_json("Contact/Contact", &[("sortspec", "[Last Name]"), ("PageSize", "2"), ("StartRowNum", "1"), ("uniformresponse", "y")])
        .await;
    assert_eq!(ids(&page), vec![seeded[2].clone(), seeded[4].clone()]);
}

#[tokio::test]
async fn siebel_oauth_tokens_are_issued_checked_expired_and_revoked() {
    let client = Credentials::new("tandem", "s3cret");
    let config = SiebelSimConfig {
        oauth_client: Some(client.clone()),
        token_lifetime: Duration::from_secs(1),
        ..SiebelSimConfig::default()
    };
    let h = Harness::with_config(config).await;
    h.seed_contacts(1);
    let token_url = h.url("/oauth2/token");
    let form = |request: reqwest::RequestBuilder| {
        request.header("content-type", "application/x-www-form-urlencoded").body("grant_type=client_credentials")
    };
    // §6 Auth: OAuth 2.0 — a client-credentials grant with a wrong secret is refused.
    let refused = form(h.http.post(&token_url).basic_auth("tandem", Some("wrong"))).send().await.expect("token");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let wrong_grant = h.http.post(&token_url).basic_auth("tandem", Some("s3cret")).body("grant_type=password").send().await.expect("token");
    assert_eq!(wrong_grant.status(), StatusCode::BAD_REQUEST);
    let reply: Json = form(h.http.post(&token_url).basic_auth("tandem", Some("s3cret")))
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    assert_eq!(reply["token_type"], "Bearer");
    assert_eq!(reply["expires_in"], 1);
    let token = reply["access_token"].as_str().expect("token").to_owned();
    let with_token = || h.http.get(h.data("Contact/Contact")).bearer_auth(&token).send();
    assert_eq!(with_token().await.expect("GET").status(), StatusCode::OK, "a live token is accepted");
    // Revoked (introspection says no) → 401.
    assert_eq!(h.http.post(h.url("/_sim/oauth/revoke")).send().await.expect("revoke").status(), StatusCode::NO_CONTENT);
    assert_eq!(with_token().await.expect("GET").status(), StatusCode::UNAUTHORIZED);
    // Expired → 401.
    let reply: Json = form(h.http.post(&token_url).basic_auth("tandem", Some("s3cret")))
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    let fresh = reply["access_token"].as_str().expect("token").to_owned();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let expired = h.http.get(h.data("Contact/Contact")).bearer_auth(&fresh).send().await.expect("GET");
    assert_eq!(expired.status(), StatusCode::UNAUTHORIZED);
    // Basic keeps working alongside OAuth.
    assert_eq!(h.get("Contact/Contact", &[]).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn siebel_lost_reply_fault_applies_the_write_but_answers_503() {
    let h = Harness::start().await;
    h.set_faults(1.0, &["lost_reply"]).await;
    // §6 Insert: retrying a POST creates a duplicate — this fault is how that case is met.
    let response = h.send(reqwest::Method::POST, "Contact/Contact", json!({ "Last Name": "Ghost" })).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Json = response.json().await.expect("problem body");
    assert_eq!(body["errorCode"], "SBL-EAI-05001");
    // Reads under lost_reply are plain 503s.
    assert_eq!(h.get("Contact/Contact", &[]).await.status(), StatusCode::SERVICE_UNAVAILABLE);
    h.set_faults(0.0, &[]).await;
    let found = h.get_json("Contact/Contact", &[("searchspec", "[Last Name] = 'Ghost'"), ("uniformresponse", "y")]).await;
    assert_eq!(items(&found).len(), 1, "the write was applied although the reply was lost");
}

#[test]
fn siebel_searchspec_parser_never_panics_on_random_input() {
    use rand::{Rng as _, SeedableRng as _};
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eac);
    let pieces: &[&str] = &[
        "[", "]", "(", ")", "'", "\"", "''", "AND", "OR", "NOT", "LIKE", "IS", "NULL", "=", "<>", "!=", "<", ">", "<=",
        ">=", "*", "?", " ", "[Last Name]", "'J*'", "12", "-3.5", "01/02/2026 10:00:00", "é", "\u{0}", "\\",
    ];
    let record = BTreeMap::from([("Last Name".to_owned(), "Jones".to_owned())]);
    for _ in 0..20_000 {
        let mut spec = String::new();
        for _ in 0..rng.random_range(0..20) {
            spec.push_str(pieces[rng.random_range(0..pieces.len())]);
        }
        if let Ok(expr) = parse_searchspec(&spec) {
            let _ = expr.matches(&|name| record.get(name).map(String::as_str));
        }
        let noise: String = (0..rng.random_range(0..40)).map(|_| rng.random::<char>()).collect();
        let _ = parse_searchspec(&noise);
        let _ = parse_sortspec(&noise);
    }
    // Pathological nesting is refused, not a stack overflow.
    assert!(parse_searchspec(&"(".repeat(100_000)).is_err());
}

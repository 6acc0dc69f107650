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

    /// The data URL of `rest` as the tests' administrator uses it: with `ViewMode=All` unless
    /// `rest` names a mode, since the administrator is on no team and Siebel's default (Sales
    /// Rep) would show it nothing.
    fn data(&self, rest: &str) -> String {
        let url = self.data_in_default_view(rest);
        match (rest.contains("ViewMode="), rest.contains('?')) {
            (true, _) => url,
            (false, true) => format!("{url}&ViewMode=All"),
            (false, false) => format!("{url}?ViewMode=All"),
        }
    }

    /// The data URL of `rest` without a `ViewMode`: Siebel's default (Sales Rep) applies.
    fn data_in_default_view(&self, rest: &str) -> String {
        self.url(&format!("{DATA_PREFIX}/{rest}"))
    }

    async fn get(&self, rest: &str, query: &[(&str, &str)]) -> reqwest::Response {
        let names_a_mode = query.iter().any(|(name, _)| name.eq_ignore_ascii_case("ViewMode"));
        let url = if names_a_mode { self.data_in_default_view(rest) } else { self.data(rest) };
        self.http.get(url).query(query).basic_auth(USER, Some(PASSWORD)).send().await.expect("GET")
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
        Case { doc: "too deep a path", method: "GET", path: format!("Contact/Contact/{id}/Action/1-X/Contact"), auth: good, content_type: None, body: "", status: 404 },
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
        // A field the component lacks: SBL-DAT-00398 in a write, SBL-EAI-50258 in `fields`,
        // SBL-DAT-00416 in a searchspec or sortspec (real-server-facts, errors seen by real
        // clients), all HTTP 500.
        Case { doc: "unknown field written", method: "POST", path: "Contact/Contact".into(), auth: good, content_type: json_type, body: r#"{"Last Name":"Lee","Custom Extra":"5"}"#, status: 500 },
        Case { doc: "unknown field upserted", method: "PUT", path: format!("Contact/Contact/{id}"), auth: good, content_type: json_type, body: r#"{"Comments":"x"}"#, status: 500 },
        Case { doc: "unknown child field", method: "PUT", path: format!("Contact/Contact/{id}/Action/1-CHILD"), auth: good, content_type: json_type, body: r#"{"Comments":"x"}"#, status: 500 },
        Case { doc: "unknown field asked for", method: "GET", path: "Contact/Contact?fields=Last%20Name,Nickname".into(), auth: good, content_type: None, body: "", status: 500 },
        Case { doc: "unknown field searched", method: "GET", path: "Contact/Contact?searchspec=%5BNickname%5D%20%3D%20%27x%27".into(), auth: good, content_type: None, body: "", status: 500 },
        Case { doc: "unknown field sorted", method: "GET", path: "Contact/Contact?sortspec=Nickname".into(), auth: good, content_type: None, body: "", status: 500 },
        Case { doc: "bad searchspec", method: "GET", path: "Contact/Contact?searchspec=%5BA%5D%20%3D".into(), auth: good, content_type: None, body: "", status: 400 },
        Case { doc: "PageSize=0", method: "GET", path: "Contact/Contact?PageSize=0".into(), auth: good, content_type: None, body: "", status: 400 },
        Case { doc: "PageSize text", method: "GET", path: "Contact/Contact?PageSize=ten".into(), auth: good, content_type: None, body: "", status: 400 },
        // §6 Query parameters: sortspec is supported (syntax "not retrieved": we take
        // `Field (ASCENDING|DESCENDING), …`); an unknown direction is malformed input.
        Case { doc: "sortspec", method: "GET", path: "Contact/Contact?sortspec=Last%20Name%20(DESCENDING)".into(), auth: good, content_type: None, body: "", status: 200 },
        Case { doc: "bad sortspec", method: "GET", path: "Contact/Contact?sortspec=Last%20Name%20(SIDEWAYS)".into(), auth: good, content_type: None, body: "", status: 400 },
        // §6 Auth: OAuth 2.0 bearer tokens are validated by introspection; an unknown one is 401.
        Case { doc: "unknown bearer", method: "GET", path: "Contact/Contact".into(), auth: None, content_type: Some("bearer"), body: "", status: 401 },
        // §6 Query parameters: ViewMode (default Sales Rep; also Organization, All, …).
        Case { doc: "ViewMode=All", method: "GET", path: "Contact/Contact?ViewMode=All".into(), auth: good, content_type: None, body: "", status: 200 },
        // The administrator is on no team: Sales Rep shows it nothing.
        Case { doc: "ViewMode=Sales Rep", method: "GET", path: "Contact/Contact?ViewMode=Sales%20Rep".into(), auth: good, content_type: None, body: "", status: 204 },
        Case { doc: "PUT outside the view", method: "PUT", path: format!("Contact/Contact/{id}?ViewMode=Sales%20Rep"), auth: good, content_type: json_type, body: r#"{"Job Title":"x"}"#, status: 404 },
        Case { doc: "DELETE outside the view", method: "DELETE", path: format!("Contact/Contact/{id}?ViewMode=Sales%20Rep"), auth: good, content_type: None, body: "", status: 404 },
        Case { doc: "unknown ViewMode", method: "GET", path: "Contact/Contact?ViewMode=Everything".into(), auth: good, content_type: None, body: "", status: 400 },
        // §6 URLs: /data/{BO}/{BC}/{Id}/{ChildBC}[/{ChildId}]; an unknown child is an invalid
        // object name (404); writes other than the documented child upsert are 405.
        Case { doc: "child query", method: "GET", path: format!("Contact/Contact/{id}/Action"), auth: good, content_type: None, body: "", status: 204 },
        Case { doc: "unknown child BC", method: "GET", path: format!("Contact/Contact/{id}/Nope"), auth: good, content_type: None, body: "", status: 404 },
        Case { doc: "child of absent parent", method: "GET", path: "Contact/Contact/1-NOPE/Action".into(), auth: good, content_type: None, body: "", status: 404 },
        Case { doc: "untied child", method: "GET", path: format!("Contact/Contact/{id}/Action/1-NOPE"), auth: good, content_type: None, body: "", status: 404 },
        // §6 Upsert: a child upsert (…/Account/{id}/Contact/{cid}) returned 201.
        Case { doc: "child upsert", method: "PUT", path: format!("Contact/Contact/{id}/Action/1-CHILD"), auth: good, content_type: json_type, body: r#"{"Description":"Call"}"#, status: 201 },
        Case { doc: "child upsert again", method: "PUT", path: format!("Contact/Contact/{id}/Action/1-CHILD"), auth: good, content_type: json_type, body: r#"{"Description":"Call back"}"#, status: 200 },
        Case { doc: "child read", method: "GET", path: format!("Contact/Contact/{id}/Action/1-CHILD"), auth: good, content_type: None, body: "", status: 200 },
        Case { doc: "POST on children", method: "POST", path: format!("Contact/Contact/{id}/Action"), auth: good, content_type: json_type, body: "{}", status: 405 },
        Case { doc: "DELETE a child", method: "DELETE", path: format!("Contact/Contact/{id}/Action/1-CHILD"), auth: good, content_type: None, body: "", status: 405 },
        Case { doc: "child upsert, absent parent", method: "PUT", path: "Contact/Contact/1-NOPE/Action/1-X".into(), auth: good, content_type: json_type, body: "{}", status: 404 },
        Case { doc: "child without auth", method: "GET", path: format!("Contact/Contact/{id}/Action"), auth: None, content_type: None, body: "", status: 401 },
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
async fn siebel_page_size_defaults_to_10_and_more_than_100_is_refused() {
    let h = Harness::start().await;
    h.seed_contacts(150);
    // §6 Query parameters: PageSize default 10.
    assert_eq!(items(&h.get_json("Contact/Contact", &[("uniformresponse", "y")]).await).len(), 10);
    assert_eq!(items(&h.get_json("Contact/Contact", &[("PageSize", "37"), ("uniformresponse", "y")]).await).len(), 37);
    // §6: maximum 100 (100 is served whole); a larger request is refused, not clamped.
    assert_eq!(
        items(&h.get_json("Contact/Contact", &[("PageSize", "100"), ("uniformresponse", "y")]).await).len(),
        100
    );
    assert_eq!(h.get("Contact/Contact", &[("PageSize", "500")]).await.status(), StatusCode::BAD_REQUEST);
    // Parameter names are matched case-insensitively.
    assert_eq!(items(&h.get_json("Contact/Contact", &[("pagesize", "3"), ("uniformresponse", "y")]).await).len(), 3);
}

#[tokio::test]
async fn siebel_a_query_over_9900_records_needs_forward_only() {
    let h = Harness::start().await;
    h.seed_contacts(9_901);
    // "If you use a regular GET REST API where a query selects more than 9900 records, then it
    // will fail": whatever page is asked for.
    let refused = h.get("Contact/Contact", &[("PageSize", "5")]).await;
    assert_eq!(refused.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let message = refused.json::<Json>().await.expect("json")["ERROR"].as_str().unwrap_or("").to_owned();
    assert!(message.contains("ExecutionMode=ForwardOnly"), "{message}");
    let last = [("PageSize", "100"), ("StartRowNum", "9900"), ("ExecutionMode", "ForwardOnly"), ("uniformresponse", "y")];
    assert_eq!(items(&h.get_json("Contact/Contact", &last).await).len(), 1, "ForwardOnly reads past row 9,900");
    // A searchspec that selects fewer records needs nothing.
    let even = [("PageSize", "5"), ("searchspec", "[Last Name] = 'Even'"), ("uniformresponse", "y")];
    assert_eq!(items(&h.get_json("Contact/Contact", &even).await).len(), 5);
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
    // §6 Response shape: each item has self and canonical links, and a child link per child
    // business component; the reply has a self link.
    let item = &items(&uniform)[0];
    let rels: Vec<&str> = item["Link"].as_array().expect("links").iter().filter_map(|l| l["rel"].as_str()).collect();
    assert_eq!(rels, vec!["self", "canonical", "child", "child"]);
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
            json!({"First Name": "Ann", "Last Name": "Lee", "Id": "MINE", "Mod Id": "99"}),
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
    for (bo, bc, field, value) in [
        ("Contact", "Contact", "Email Address", "x"),
        ("Employee", "Employee", "Login Name", "x"),
        ("Action", "Action", "Planned", "12/01/2026 09:00:00"),
    ] {
        let response = h.send(reqwest::Method::POST, &format!("{bo}/{bc}"), json!({ field: value })).await;
        assert_eq!(response.status(), StatusCode::OK, "{bo}/{bc}");
        let listed = h.get_json(&format!("{bo}/{bc}"), &[("uniformresponse", "y")]).await;
        assert_eq!(items(&listed).len(), 1, "{bo}/{bc} holds only its own record");
        assert_eq!(items(&listed)[0][field], json!(value));
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

    // With a rate of 0.3 and no kinds named, 500, 503 and dropped connections all show up and
    // the rest succeed.
    h.set_faults(0.3, &[]).await;
    let mut outcomes = BTreeSet::new();
    for _ in 0..80 {
        let sent = h.http.get(h.data("Contact/Contact")).basic_auth(USER, Some(PASSWORD)).send().await;
        outcomes.insert(match sent {
            Ok(response) => response.status().as_u16().to_string(),
            Err(_) => "dropped".to_owned(),
        });
    }
    let expected: BTreeSet<String> = ["200", "500", "503", "dropped"].iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(outcomes, expected);
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
    // A profile authenticates one way: with OAuth on, Basic is refused and the 401 asks for
    // a bearer token (the stricter reading; Oracle: the Application Interface profile picks
    // Basic, OAuth or SSO).
    let basic = h.get("Contact/Contact", &[]).await;
    assert_eq!(basic.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(basic.headers()[reqwest::header::WWW_AUTHENTICATE], "Bearer realm=\"Siebel\"");
}

#[tokio::test]
async fn siebel_hands_out_a_session_cookie_and_counts_its_return() {
    let h = Harness::start().await;
    h.seed_contacts(1);
    let first = h.get("Contact/Contact", &[]).await;
    assert_eq!(first.status(), StatusCode::OK);
    let cookie = first.headers()[reqwest::header::SET_COOKIE].to_str().expect("text").to_owned();
    assert!(cookie.starts_with("_sn=") && cookie.contains("Path=/siebel") && cookie.contains("HttpOnly"), "{cookie}");
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    let session = cookie.split(';').next().expect("pair").to_owned();
    let again = h.http.get(h.data("Contact/Contact")).basic_auth(USER, Some(PASSWORD)).header("cookie", &session).send().await.expect("GET");
    assert_eq!(again.status(), StatusCode::OK);
    assert!(again.headers().get(reqwest::header::SET_COOKIE).is_none(), "a live session is not replaced");
    // A stale cookie gets a new session; a refused request gets none.
    let stale = h.http.get(h.data("Contact/Contact")).basic_auth(USER, Some(PASSWORD)).header("cookie", "_sn=gone").send().await.expect("GET");
    assert!(stale.headers().get(reqwest::header::SET_COOKIE).is_some());
    let refused = h.http.get(h.data("Contact/Contact")).basic_auth(USER, Some("wrong")).send().await.expect("GET");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(refused.headers().get(reqwest::header::SET_COOKIE).is_none());
    assert_eq!(h.sim.sessions(), (2, 1));
}

#[tokio::test]
async fn siebel_describe_lists_a_components_fields_as_openapi_properties() {
    let h = Harness::start().await;
    let description = h.get_json("Contact/Contact/describe", &[]).await;
    assert_eq!(description["swagger"], "2.0");
    let properties = description["definitions"]["data_Contact_Contact_"]["properties"].as_object().expect("properties");
    for field in ["Id", "Updated", "First Name", "Last Name", "Integration Id"] {
        assert!(properties.contains_key(field), "{field} in {properties:?}");
    }
    assert!(!properties.contains_key("Comment"), "an Action field is not a Contact field");
    h.sim.hide_field("Contact", "Job Title");
    let description = h.get_json("Contact/Contact/describe", &[]).await;
    assert!(description["definitions"]["data_Contact_Contact_"]["properties"].get("Job Title").is_none());
    // … and a field the repository lacks cannot be written either.
    let refused = h.send(reqwest::Method::POST, "Contact/Contact", json!({"Last Name": "Lee", "Job Title": "CEO"})).await;
    assert_eq!(refused.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let message = refused.json::<Json>().await.expect("json")["ERROR"].as_str().unwrap_or("").to_owned();
    assert!(message.starts_with("SBL-DAT-00398: Field 'Job Title' does not exist"), "{message}");
    assert_eq!(h.get("Nope/Nope/describe", &[]).await.status(), StatusCode::NOT_FOUND);
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

/// A second harness user and the positions of "visible in My Contacts" scenarios.
struct Org {
    alice_position: String,
    bob_position: String,
    alice_employee: String,
}

impl Harness {
    fn seed(&self, bo: &str, fields: &[(&str, &str)]) -> String {
        let mut map = Map::new();
        for (name, value) in fields {
            map.insert((*name).into(), json!(value));
        }
        self.sim.insert(bo, bo, map).expect("seed")
    }

    async fn get_json_as(&self, user: &str, rest: &str, query: &[(&str, &str)]) -> Json {
        let response = self.get_as(user, rest, query).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {rest} {query:?} as {user}");
        response.json().await.expect("JSON body")
    }

    async fn get_as(&self, user: &str, rest: &str, query: &[(&str, &str)]) -> reqwest::Response {
        self.http.get(self.data_in_default_view(rest)).query(query).basic_auth(user, Some("pw")).send().await.expect("GET")
    }

    /// Last names of the Contacts `user` sees under `view_mode` (None: the default).
    async fn contacts_seen_by(&self, user: &str, view_mode: Option<&str>) -> BTreeSet<String> {
        let mut query = vec![("PageSize", "100"), ("uniformresponse", "y")];
        if let Some(mode) = view_mode {
            query.push(("ViewMode", mode));
        }
        let response = if user == USER { self.get("Contact/Contact", &query).await } else { self.get_as(user, "Contact/Contact", &query).await };
        if response.status() == StatusCode::NO_CONTENT {
            return BTreeSet::new();
        }
        assert_eq!(response.status(), StatusCode::OK, "{user} {view_mode:?}");
        let body: Json = response.json().await.expect("json");
        items(&body).iter().map(|item| item["Last Name"].as_str().unwrap_or("").to_owned()).collect()
    }

    /// Positions: Sales Manager (ORG-1) ← Alice's position (ORG-1); Bob's position (ORG-2).
    /// Employees alice, bob and carol (the manager); contacts with various teams.
    fn seed_org(&self) -> Org {
        let manager = self.seed("Position", &[("Name", "Sales Manager"), ("Organization Id", "ORG-1")]);
        let alice_position = self.seed(
            "Position",
            &[("Name", "Sales Rep West"), ("Parent Position Id", manager.as_str()), ("Organization Id", "ORG-1")],
        );
        let bob_position = self.seed("Position", &[("Name", "Sales Rep East"), ("Organization Id", "ORG-2")]);
        let alice_employee =
            self.seed("Employee", &[("Login Name", "ALICE"), ("Primary Position Id", alice_position.as_str())]);
        self.seed("Employee", &[("Login Name", "BOB"), ("Primary Position Id", bob_position.as_str())]);
        self.seed("Employee", &[("Login Name", "CAROL"), ("Primary Position Id", manager.as_str())]);
        let (a, b) = (alice_position.as_str(), bob_position.as_str());
        let shared = format!("{a},{b}");
        self.seed("Contact", &[("Last Name", "AliceOnly"), ("Position Id", a), ("Primary Position Id", a)]);
        self.seed("Contact", &[("Last Name", "Shared"), ("Position Id", shared.as_str()), ("Primary Position Id", b)]);
        self.seed("Contact", &[("Last Name", "BobOnly"), ("Position Id", b), ("Primary Position Id", b)]);
        self.seed("Contact", &[("Last Name", "NoTeam")]);
        self.seed(
            "Contact",
            &[
                ("Last Name", "OwnedByAlice"),
                ("Position Id", b),
                ("Primary Position Id", b),
                ("Primary Owner Id", alice_employee.as_str()),
            ],
        );
        Org { alice_position, bob_position, alice_employee }
    }
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|name| (*name).to_owned()).collect()
}

fn org_config() -> SiebelSimConfig {
    SiebelSimConfig {
        users: ["alice", "bob", "carol"].iter().map(|user| Credentials::new(*user, "pw")).collect(),
        ..SiebelSimConfig::default()
    }
}

#[tokio::test]
async fn siebel_view_mode_shows_each_user_the_records_of_their_position() {
    let h = Harness::with_config(org_config()).await;
    let org = h.seed_org();
    // §6 Query parameters: ViewMode defaults to Sales Rep — "My Contacts": the records whose
    // team holds the user's position. A record on no team is on none of them.
    assert_eq!(h.contacts_seen_by("alice", None).await, names(&["AliceOnly", "Shared"]));
    assert_eq!(h.contacts_seen_by("alice", Some("Sales Rep")).await, names(&["AliceOnly", "Shared"]));
    assert_eq!(h.contacts_seen_by("bob", None).await, names(&["Shared", "BobOnly", "OwnedByAlice"]));
    // Manager: the team holds the manager's position or one below it.
    assert_eq!(h.contacts_seen_by("carol", None).await, names(&[]));
    assert_eq!(h.contacts_seen_by("carol", Some("Manager")).await, names(&["AliceOnly", "Shared"]));
    // Personal: the user's position is the primary one, or the user owns the record.
    assert_eq!(h.contacts_seen_by("alice", Some("Personal")).await, names(&["AliceOnly", "OwnedByAlice"]));
    // Organization: the organization of the record's primary position is the user's.
    assert_eq!(h.contacts_seen_by("alice", Some("Organization")).await, names(&["AliceOnly"]));
    assert_eq!(h.contacts_seen_by("bob", Some("Organization")).await, names(&["Shared", "BobOnly", "OwnedByAlice"]));
    // All: every record — what the administrator (no position of its own here) uses.
    let everything = names(&["AliceOnly", "Shared", "BobOnly", "NoTeam", "OwnedByAlice"]);
    assert_eq!(h.contacts_seen_by(USER, Some("All")).await, everything);
    assert_eq!(h.contacts_seen_by("alice", Some("all")).await, everything);
    assert_eq!(h.contacts_seen_by(USER, Some("Sales Rep")).await, names(&[]));

    // §6 recordcountneeded: the count is of the accessible records only.
    let counted = h.get_as("bob", "Contact/Contact", &[("recordcountneeded", "true"), ("PageSize", "1")]).await;
    assert_eq!(counted.headers().get("Total-Record-Count").and_then(|v| v.to_str().ok()), Some("3"));
    // A record outside the user's view answers like an absent one, by Id too…
    let bob_only = h.get_json("Contact/Contact", &[("searchspec", "[Last Name] = 'BobOnly'"), ("ViewMode", "All")]).await;
    let bob_only = bob_only["items"]["Id"].as_str().expect("Id").to_owned();
    assert_eq!(h.get_as("alice", &format!("Contact/Contact/{bob_only}"), &[]).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(h.get_as("bob", &format!("Contact/Contact/{bob_only}"), &[]).await.status(), StatusCode::OK);
    // … and to a write, which changes nothing.
    let put_as_alice = |body: Json| {
        h.http.put(h.data_in_default_view(&format!("Contact/Contact/{bob_only}"))).basic_auth("alice", Some("pw")).json(&body).send()
    };
    assert_eq!(put_as_alice(json!({ "Job Title": "Spy" })).await.expect("PUT").status(), StatusCode::NOT_FOUND);
    assert_eq!(h.sim.get("Contact", "Contact", &bob_only).expect("stored")["Job Title"], json!(""));

    // Adding Alice's position to the team puts the contact in her My Contacts.
    let team = format!("{},{}", org.bob_position, org.alice_position);
    let response = h.send(reqwest::Method::PUT, &format!("Contact/Contact/{bob_only}"), json!({ "Position Id": team })).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(h.contacts_seen_by("alice", None).await.contains("BobOnly"));
    // Writes record who made them.
    let response = put_as_alice(json!({ "Job Title": "Buyer" })).await.expect("PUT");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(h.sim.get("Contact", "Contact", &bob_only).expect("stored")["Updated By"], json!("ALICE"));
    // The same rules hold for other components, e.g. Actions owned through a team.
    h.seed("Action", &[("Description", "Team call"), ("Position Id", org.bob_position.as_str())]);
    let actions = h.get_as("alice", "Action/Action", &[("uniformresponse", "y")]).await;
    assert_eq!(actions.status(), StatusCode::NO_CONTENT, "Alice is not on that Action's team");
    let _ = org.alice_employee;
    // Unknown users and wrong passwords are refused.
    assert_eq!(h.get_as("mallory", "Contact/Contact", &[]).await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn siebel_child_components_are_queried_upserted_and_linked() {
    let h = Harness::with_config(org_config()).await;
    let org = h.seed_org();
    let contact = h.seed("Contact", &[("Last Name", "Parent"), ("Position Id", org.alice_position.as_str())]);
    let other = h.seed("Contact", &[("Last Name", "Other")]);
    let first = h.seed("Action", &[("Description", "First"), ("Contact Id", contact.as_str())]);
    let second = h.seed("Action", &[("Description", "Second"), ("Contact Id", contact.as_str())]);
    let elsewhere = h.seed("Action", &[("Description", "Elsewhere"), ("Contact Id", other.as_str())]);

    // The parent is on Alice's team, so she reads it (the administrator would need ViewMode=All).
    let sales_rep = [("ViewMode", "Sales Rep")];
    assert_eq!(h.get(&format!("Contact/Contact/{contact}/Action"), &sales_rep).await.status(), StatusCode::NOT_FOUND);
    let all_mode = h.get(&format!("Contact/Contact/{contact}/Action"), &[("ViewMode", "All")]).await;
    assert_eq!(all_mode.status(), StatusCode::OK);
    // §6 URLs: GET /data/{BO}/{BC}/{Id}/{ChildBC} lists the parent's children, with the usual
    // query parameters.
    let listed = h.get_json_as("alice", &format!("Contact/Contact/{contact}/Action"), &[("uniformresponse", "y")]).await;
    assert_eq!(ids(&listed), vec![first.clone(), second.clone()]);
    let filtered = h
        .get_as("alice", &format!("Contact/Contact/{contact}/Action"), &[("searchspec", "[Description] = 'Second'"), ("recordcountneeded", "true")])
        .await;
    assert_eq!(filtered.headers().get("Total-Record-Count").and_then(|v| v.to_str().ok()), Some("1"));
    let filtered: Json = filtered.json().await.expect("json");
    assert_eq!(filtered["items"]["Id"], json!(second), "one record without uniformresponse is an object");
    // §6 Response shape: a child item links to itself under the parent, to its canonical URL
    // and to its parent; the reply's self link is the child URL.
    let item = &items(&listed)[0];
    let links: Vec<(String, String)> = item["Link"]
        .as_array()
        .expect("links")
        .iter()
        .map(|l| (l["rel"].as_str().unwrap_or("").to_owned(), l["href"].as_str().unwrap_or("").to_owned()))
        .collect();
    let base = h.data_in_default_view("");
    assert_eq!(
        links,
        vec![
            ("self".to_owned(), format!("{base}Contact/Contact/{contact}/Action/{first}")),
            ("canonical".to_owned(), format!("{base}Action/Action/{first}")),
            ("parent".to_owned(), format!("{base}Contact/Contact/{contact}")),
        ]
    );
    assert!(listed["Link"][0]["href"].as_str().expect("href").contains(&format!("/Contact/Contact/{contact}/Action")));
    // One child by Id; a record that is not this parent's child is a 404.
    let one = h.get_json_as("alice", &format!("Contact/Contact/{contact}/Action/{first}"), &[("uniformresponse", "y")]).await;
    assert_eq!(ids(&one), vec![first.clone()]);
    assert_eq!(h.get_as("alice", &format!("Contact/Contact/{contact}/Action/{elsewhere}"), &[]).await.status(), StatusCode::NOT_FOUND);

    // §6 Query parameters: childlinks=None drops the child links, a list keeps those named.
    let child_rels = |body: &Json| -> Vec<String> {
        items(body)[0]["Link"]
            .as_array()
            .expect("links")
            .iter()
            .filter(|l| l["rel"] == json!("child"))
            .map(|l| l["href"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    let all = h.get_json_as("alice", &format!("Contact/Contact/{contact}"), &[("uniformresponse", "y")]).await;
    assert_eq!(
        child_rels(&all),
        vec![format!("{base}Contact/Contact/{contact}/Action"), format!("{base}Contact/Contact/{contact}/Position")]
    );
    let none = h.get_json_as("alice", &format!("Contact/Contact/{contact}"), &[("uniformresponse", "y"), ("childlinks", "None")]).await;
    assert!(child_rels(&none).is_empty());
    let some = h.get_json_as("alice", &format!("Contact/Contact/{contact}"), &[("uniformresponse", "y"), ("childlinks", "Position")]).await;
    assert_eq!(child_rels(&some), vec![format!("{base}Contact/Contact/{contact}/Position")]);
    // Following a child link works; Position children are the team.
    let team = h.get_json_as("alice", &format!("Contact/Contact/{contact}/Position"), &[("uniformresponse", "y")]).await;
    assert_eq!(ids(&team), vec![org.alice_position.clone()]);
    assert_eq!(items(&team)[0]["Name"], json!("Sales Rep West"));

    // §6 Upsert: a child upsert answers 201 when it makes the child (or the tie); PUT again
    // on a tied child is a plain 200 upsert.
    let response = h.send(reqwest::Method::PUT, &format!("Contact/Contact/{contact}/Action/1-NEWACT"), json!({"Description": "Third"})).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Json = response.json().await.expect("json");
    assert_eq!(body["items"]["Id"], json!("1-NEWACT"));
    assert_eq!(body["items"]["Link"]["href"], json!(format!("{base}Contact/Contact/{contact}/Action/1-NEWACT")));
    assert_eq!(h.sim.get("Action", "Action", "1-NEWACT").expect("created")["Contact Id"], json!(contact));
    let response = h.send(reqwest::Method::PUT, &format!("Contact/Contact/{contact}/Action/{elsewhere}"), json!({})).await;
    assert_eq!(response.status(), StatusCode::CREATED, "an existing record newly tied");
    let response = h.send(reqwest::Method::PUT, &format!("Contact/Contact/{contact}/Action/{first}"), json!({"Status": "Done"})).await;
    assert_eq!(response.status(), StatusCode::OK);
    let listed = h.get_json_as("alice", &format!("Contact/Contact/{contact}/Action"), &[("uniformresponse", "y")]).await;
    assert_eq!(ids(&listed).len(), 4);

    // §6 Change-detection caveat: tying a record through a parent's multi-value field (the
    // team) leaves the parent's Updated and Mod Id alone.
    let before = h.sim.get("Contact", "Contact", &contact).expect("parent");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let response = h.send(reqwest::Method::PUT, &format!("Contact/Contact/{contact}/Position/{}", org.bob_position), json!({})).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let after = h.sim.get("Contact", "Contact", &contact).expect("parent");
    assert_eq!(after["Position Id"], json!(format!("{},{}", org.alice_position, org.bob_position)));
    assert_eq!((&after["Updated"], &after["Mod Id"]), (&before["Updated"], &before["Mod Id"]));
    // The parent must be visible to the user: Bob now sees it (he joined the team), Carol not.
    assert_eq!(h.get_as("bob", &format!("Contact/Contact/{contact}/Position"), &[]).await.status(), StatusCode::OK);
    assert_eq!(h.get_as("carol", &format!("Contact/Contact/{contact}/Action"), &[]).await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn siebel_drop_fault_closes_the_connection_without_a_reply_after_writing() {
    let h = Harness::start().await;
    let seeded = h.seed_contacts(1);
    h.set_faults(1.0, &["drop"]).await;
    // A read: the connection ends where the answer should be.
    let read = h.http.get(h.data("Contact/Contact")).basic_auth(USER, Some(PASSWORD)).send().await;
    let error = read.expect_err("no reply");
    assert!(!error.is_timeout(), "closed at once, not timed out: {error}");
    // A write is carried out before the connection is dropped, so the client cannot tell.
    let write = h
        .http
        .post(h.data("Contact/Contact"))
        .basic_auth(USER, Some(PASSWORD))
        .json(&json!({"Last Name": "Dropped"}))
        .send()
        .await;
    assert!(write.is_err(), "no reply to the POST");
    let put = h
        .http
        .put(h.data(&format!("Contact/Contact/{}", seeded[0])))
        .basic_auth(USER, Some(PASSWORD))
        .json(&json!({"Job Title": "Kept"}))
        .send()
        .await;
    assert!(put.is_err(), "no reply to the PUT");
    h.set_faults(0.0, &[]).await;
    let found = h.get_json("Contact/Contact", &[("searchspec", "[Last Name] = 'Dropped'"), ("uniformresponse", "y")]).await;
    assert_eq!(items(&found).len(), 1, "the dropped POST was applied");
    assert_eq!(h.sim.get("Contact", "Contact", &seeded[0]).expect("kept")["Job Title"], json!("Kept"));
    // The server goes on answering on new connections; every request was counted.
    assert_eq!(h.get("Contact/Contact", &[]).await.status(), StatusCode::OK);
    assert_eq!(h.sim.stats().requests.get("GET"), Some(&3));
}

/// A searchspec clause, its literal quoted as Siebel quotes it.
fn quoted(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// A random searchspec over `fields`, `values` and `ids`, up to `depth` levels of AND/OR/NOT.
fn random_spec(rng: &mut rand::rngs::StdRng, depth: usize, fields: &[&str], values: &[&str], ids: &[String]) -> String {
    use rand::Rng as _;
    if depth > 0 && rng.random_bool(0.5) {
        let left = random_spec(rng, depth - 1, fields, values, ids);
        let right = random_spec(rng, depth - 1, fields, values, ids);
        return match rng.random_range(0..5) {
            0 | 1 => format!("({left}) AND ({right})"),
            2 | 3 => format!("({left}) OR ({right})"),
            _ => format!("NOT ({left})"),
        };
    }
    let field = fields[rng.random_range(0..fields.len())];
    let value = values[rng.random_range(0..values.len())];
    match rng.random_range(0..9) {
        0 if !ids.is_empty() => format!("[Id] = {}", quoted(&ids[rng.random_range(0..ids.len())])),
        8 => format!("EXISTS ([{field}] = {})", quoted(value)),
        1 => format!("{} = [{field}]", quoted(value)),
        2 => format!("[{field}] LIKE {}", quoted(&format!("{value}*"))),
        3 => format!("[{field}] IS NULL"),
        4 => format!("[{field}] <> {}", quoted(value)),
        _ => format!("[{field}] = {}", quoted(value)),
    }
}

/// The store's indexes never change an answer: for random searchspecs, between random
/// inserts, replacements, in-place updates and deletes, the candidates the indexes leave hold
/// exactly the matches a full scan finds, in the same (Id) order. Values include ones `=`
/// compares by meaning (`1` / `1.0` / ` 1`, a date with and without its time, `""`), which must
/// not be looked up by exact text.
#[test]
fn siebel_indexed_candidates_match_a_full_scan_through_writes() {
    use rand::{Rng as _, SeedableRng as _};
    const KEY: &str = "Contact/Contact";
    let fields = ["Integration Id", "Primary Owner Id", "Email Address", "Last Name"];
    let values = ["A", "B", "O'Brien", "1", "1.0", " 1", "12/01/2026", "12/01/2026 00:00:00", "", " A", "a", "A,B", "B, A", ",A,", "1,1.0"];
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x1dec5);
    let mut store = store::Store::default();
    let mut ids: Vec<String> = Vec::new();
    let (mut queries, mut narrowed) = (0, 0);
    for step in 0..4000 {
        let known = !ids.is_empty();
        match rng.random_range(0..12) {
            0..=2 => {
                // A new record, or (sometimes) a replacement of an existing one.
                let id = if known && rng.random_bool(0.2) {
                    ids[rng.random_range(0..ids.len())].clone()
                } else {
                    format!("1-{step:05}")
                };
                let mut record = Record::from([("Id".to_owned(), id.clone())]);
                for field in fields {
                    if rng.random_bool(0.7) {
                        record.insert(field.to_owned(), values[rng.random_range(0..values.len())].to_owned());
                    }
                }
                store.insert(KEY, &id, record);
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            3..=4 if known => {
                let id = &ids[rng.random_range(0..ids.len())];
                let field = fields[rng.random_range(0..fields.len())];
                let value = values[rng.random_range(0..values.len())];
                let remove = rng.random_bool(0.3);
                store.update(KEY, id, |record| {
                    if remove {
                        record.remove(field);
                    } else {
                        record.insert(field.to_owned(), value.to_owned());
                    }
                });
            }
            5 if known => {
                let id = ids.swap_remove(rng.random_range(0..ids.len()));
                assert!(store.remove(KEY, &id).is_some(), "{id} was stored");
                // Deleted Ids stay queryable (they must match nothing).
                if rng.random_bool(0.5) {
                    store.insert(KEY, &id, Record::from([("Id".to_owned(), id.clone())]));
                    ids.push(id);
                }
            }
            _ => {
                let text = random_spec(&mut rng, 2, &fields, &values, &ids);
                let spec = parse_searchspec(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
                store.prepare(KEY, &spec);
                let matches = |record: &&Record| spec.matches(&|name| record.get(name).map(String::as_str));
                let id_of = |record: &Record| record.get("Id").cloned().unwrap_or_default();
                let scanned: Vec<String> =
                    store.records(KEY).into_iter().flat_map(|records| records.values()).filter(matches).map(id_of).collect();
                let candidates = store.candidates(KEY, Some(&spec));
                let all = store.records(KEY).map_or(0, BTreeMap::len);
                queries += 1;
                if candidates.len() < all {
                    narrowed += 1;
                }
                let indexed: Vec<String> = candidates.into_iter().filter(matches).map(id_of).collect();
                assert_eq!(indexed, scanned, "step {step}: {text}");
            }
        }
    }
    assert!(narrowed * 4 > queries, "the indexes narrowed only {narrowed} of {queries} queries");
    // An equality on an exact text reads only the records holding it (as the whole value or
    // one of a list's values); one compared by meaning scans.
    let spec = parse_searchspec("[Integration Id] = 'A'").expect("spec");
    let holding = store
        .records(KEY)
        .expect("records")
        .values()
        .filter(|r| r.get("Integration Id").is_some_and(|v| v == "A" || v.split(',').any(|one| one.trim() == "A")))
        .count();
    assert_eq!(store.candidates(KEY, Some(&spec)).len(), holding);
    let by_meaning = parse_searchspec("[Integration Id] = '1'").expect("spec");
    assert_eq!(store.candidates(KEY, Some(&by_meaning)).len(), store.records(KEY).expect("records").len());
}

impl Harness {
    /// Status, `Total-Record-Count` and items of a GET as `user` (the administrator: `USER`).
    async fn answer(&self, user: &str, rest: &str, query: &[(&str, &str)]) -> (StatusCode, Option<String>, Vec<Json>) {
        let response = if user == USER { self.get(rest, query).await } else { self.get_as(user, rest, query).await };
        let status = response.status();
        let count = response.headers().get("Total-Record-Count").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let items = match status {
            StatusCode::OK => items(&response.json::<Json>().await.expect("JSON body")),
            _ => Vec::new(),
        };
        (status, count, items)
    }

    /// Asserts that `spec` answers exactly as the same spec forced to a full scan (`OR` a
    /// clause no index can narrow and no record matches) for several users, view modes, pages
    /// and sorts; returns the Ids of its first answer (all records, administrator, All).
    async fn assert_indexed_like_scanned(&self, rest: &str, spec: &str) -> Vec<String> {
        let scanned = format!("({spec}) OR [Id] IS NULL");
        let views: &[(&str, Option<&str>)] =
            &[(USER, Some("All")), (USER, None), ("alice", None), ("alice", Some("Personal")), ("carol", Some("Manager"))];
        let pages: &[&[(&str, &str)]] = &[
            &[("PageSize", "100")],
            &[("PageSize", "3"), ("StartRowNum", "2")],
            &[("PageSize", "5"), ("sortspec", "Last Name (DESCENDING), Email Address")],
        ];
        let mut first = None;
        for (user, view) in views {
            for page in pages {
                let mut query = vec![("uniformresponse", "y"), ("recordcountneeded", "true")];
                query.extend_from_slice(page);
                if let Some(view) = view {
                    query.push(("ViewMode", view));
                }
                let mut with_spec = query.clone();
                with_spec.push(("searchspec", spec));
                let indexed = self.answer(user, rest, &with_spec).await;
                query.push(("searchspec", scanned.as_str()));
                let full = self.answer(user, rest, &query).await;
                assert_eq!(indexed, full, "{rest} {spec} as {user} {view:?} {page:?}");
                first.get_or_insert_with(|| indexed.2.iter().map(|item| item["Id"].as_str().unwrap_or("").to_owned()).collect());
            }
        }
        first.unwrap_or_default()
    }
}

/// Over HTTP, indexed queries (equalities on Integration Id, Primary Owner Id, Id lists, email,
/// through children too) answer exactly as full scans do — items, order, paging, sort,
/// `Total-Record-Count`, view modes — before and after updates, deletes, inserts and child
/// upserts move records in and out of the indexes.
#[tokio::test]
async fn siebel_indexed_queries_answer_like_full_scans_over_http() {
    let h = Harness::with_config(org_config()).await;
    let org = h.seed_org();
    let alice = org.alice_employee.as_str();
    let mut contacts = Vec::new();
    for i in 0..30 {
        let (sync, email) = (format!("sync:{i}"), format!("c{i}@example.com"));
        let mut fields = vec![
            ("Last Name", if i % 2 == 0 { "Even" } else { "Odd" }),
            ("Integration Id", sync.as_str()),
            ("Email Address", email.as_str()),
        ];
        if i % 3 == 0 {
            fields.push(("Job Title", "Buyer"));
        }
        if i % 2 == 0 {
            fields.push(("Primary Owner Id", alice));
        }
        match i % 4 {
            0 => fields.extend([("Position Id", org.alice_position.as_str()), ("Primary Position Id", org.alice_position.as_str())]),
            1 => fields.extend([("Position Id", org.bob_position.as_str()), ("Primary Position Id", org.bob_position.as_str())]),
            _ => {}
        }
        contacts.push(h.seed("Contact", &fields));
    }
    let by_ids = format!("[Id] = '{}' OR [Id] = '{}' OR [Id] = '{}' OR [Id] = '1-NONE'", contacts[3], contacts[10], contacts[28]);
    let owned = format!("[Primary Owner Id] = '{alice}' AND [Job Title] = 'Buyer'");
    let owned_by_alice = format!("[Primary Owner Id] = '{alice}'");
    let specs = [
        "[Integration Id] = 'sync:7'".to_owned(),
        "'sync:8' = [Integration Id]".to_owned(),
        owned.clone(),
        by_ids.clone(),
        "[Email Address] = 'c5@example.com' OR [Email Address] = 'c12@example.com'".to_owned(),
        "[Last Name] = 'Even' AND NOT [Job Title] = 'Buyer'".to_owned(),
        "[Integration Id] = 'sync:1' AND [Last Name] = 'Even'".to_owned(),
    ];
    for spec in &specs {
        h.assert_indexed_like_scanned("Contact/Contact", spec).await;
    }
    assert_eq!(h.assert_indexed_like_scanned("Contact/Contact", &specs[0]).await, vec![contacts[7].clone()]);
    assert_eq!(h.assert_indexed_like_scanned("Contact/Contact", &by_ids).await, vec![
        contacts[3].clone(),
        contacts[10].clone(),
        contacts[28].clone()
    ]);

    // Writes move records between index entries: a changed and a cleared value, a delete, a
    // new record taking the old value, a child upsert tying an Action to its owner.
    let changes = [
        (&contacts[7], json!({ "Integration Id": "sync:7b" })),
        (&contacts[6], json!({ "Primary Owner Id": "" })),
        (&contacts[9], json!({ "Primary Owner Id": alice, "Job Title": "Buyer" })),
    ];
    for (id, body) in changes {
        let put = h.send(reqwest::Method::PUT, &format!("Contact/Contact/{id}"), body).await;
        assert_eq!(put.status(), StatusCode::OK, "PUT {id}");
    }
    let deleted = h.send(reqwest::Method::DELETE, &format!("Contact/Contact/{}", contacts[10]), json!({})).await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let newcomer = h.seed("Contact", &[("Last Name", "New"), ("Integration Id", "sync:7")]);
    let tied = h
        .send(reqwest::Method::PUT, &format!("Employee/Employee/{alice}/Action/1-TIED"), json!({ "Description": "Tied" }))
        .await;
    assert_eq!(tied.status(), StatusCode::CREATED);
    let renamed = "[Integration Id] = 'sync:7b'".to_owned();
    for spec in specs.iter().chain([&renamed]) {
        h.assert_indexed_like_scanned("Contact/Contact", spec).await;
    }
    assert_eq!(h.assert_indexed_like_scanned("Contact/Contact", &specs[0]).await, vec![newcomer]);
    assert_eq!(h.assert_indexed_like_scanned("Contact/Contact", &renamed).await, vec![contacts[7].clone()]);
    assert_eq!(h.assert_indexed_like_scanned("Contact/Contact", &by_ids).await, vec![contacts[3].clone(), contacts[28].clone()]);
    let owners: Vec<String> = h.assert_indexed_like_scanned("Contact/Contact", &owned).await;
    assert!(owners.contains(&contacts[9]) && !owners.contains(&contacts[6]), "{owners:?}");
    // Queries through a parent narrow by the same indexes.
    let actions = h.assert_indexed_like_scanned("Action/Action", &owned_by_alice).await;
    assert_eq!(actions, vec!["1-TIED".to_owned()]);
    let children = h.assert_indexed_like_scanned(&format!("Employee/Employee/{alice}/Action"), &owned_by_alice).await;
    assert_eq!(children, vec!["1-TIED".to_owned()]);
}

#[tokio::test]
async fn siebel_date_times_go_in_and_out_in_the_session_users_time_zone() {
    let new_york: chrono_tz::Tz = "America/New_York".parse().expect("zone");
    let config = SiebelSimConfig {
        users: vec![Credentials::new("alice", "pw")],
        user_time_zones: vec![("ALICE".to_owned(), new_york)],
        ..SiebelSimConfig::default()
    };
    let h = Harness::with_config(config).await;
    // Alice (New York) books 15:00 her time; the administrator (UTC) sees 20:00.
    let written = h
        .http
        .post(h.data("Action/Action"))
        .basic_auth("alice", Some("pw"))
        .json(&json!({"Description": "Call", "Planned": "12/01/2026 15:00:00"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(written.status(), StatusCode::OK);
    let reply: Json = written.json().await.expect("json");
    assert_eq!(reply["items"]["Planned"], json!("12/01/2026 15:00:00"), "the reply is in the writer's zone");
    let id = reply["items"]["Id"].as_str().expect("Id").to_owned();
    assert_eq!(h.sim.get("Action", "Action", &id).expect("stored")["Planned"], json!("12/01/2026 20:00:00"));
    let as_admin = h.get_json(&format!("Action/Action/{id}"), &[]).await;
    assert_eq!(as_admin["items"]["Planned"], json!("12/01/2026 20:00:00"));
    // A searchspec date-time is the user's too: 14:30 New York is before 15:00 New York, and
    // 19:30 UTC before 20:00 UTC.
    let found_by = |user: &str, at: &str| {
        let spec = format!("[Planned] > '{at}'");
        let request = h.http.get(h.data("Action/Action")).query(&[("searchspec", spec.as_str())]);
        let request = if user == "alice" { request.basic_auth("alice", Some("pw")) } else { request.basic_auth(USER, Some(PASSWORD)) };
        async move { request.send().await.expect("GET").status() }
    };
    assert_eq!(found_by("alice", "12/01/2026 14:30:00").await, StatusCode::OK);
    assert_eq!(found_by("alice", "12/01/2026 15:30:00").await, StatusCode::NO_CONTENT);
    assert_eq!(found_by(USER, "12/01/2026 19:30:00").await, StatusCode::OK);
    assert_eq!(found_by(USER, "12/01/2026 20:30:00").await, StatusCode::NO_CONTENT);
    // Updated is a date-time too: shown in each user's zone.
    let updated_utc = as_admin["items"]["Updated"].as_str().expect("Updated").to_owned();
    let as_alice: Json =
        h.http.get(h.data(&format!("Action/Action/{id}"))).basic_auth("alice", Some("pw")).send().await.expect("GET").json().await.expect("json");
    let shown = parse_siebel_datetime(as_alice["items"]["Updated"].as_str().expect("Updated")).expect("a date-time");
    let utc = parse_siebel_datetime(&updated_utc).expect("a date-time");
    assert_eq!(utc - shown, chrono::TimeDelta::hours(5), "December in New York is UTC-5");
    // Only Siebel's format, and no time the zone skips.
    for (planned, why) in [("2026-12-01T15:00:00Z", "ISO"), ("03/08/2026 02:30:00", "skipped by daylight saving")] {
        let refused = h
            .http
            .put(h.data(&format!("Action/Action/{id}")))
            .basic_auth("alice", Some("pw"))
            .json(&json!({"Planned": planned}))
            .send()
            .await
            .expect("PUT");
        assert_eq!(refused.status(), StatusCode::INTERNAL_SERVER_ERROR, "{why}");
        let message = refused.json::<Json>().await.expect("json")["ERROR"].as_str().unwrap_or("").to_owned();
        assert!(message.starts_with("SBL-DAT-00359"), "{why}: {message}");
    }
    assert_eq!(h.sim.get("Action", "Action", &id).expect("kept")["Planned"], json!("12/01/2026 20:00:00"), "nothing written");
}

//! Graph emulator tests: real HTTP over loopback (reqwest), one test per feature.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use axum::extract::{Query, State};
use reqwest::header::HeaderMap as ReplyHeaders;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::*;

const MAILBOX: &str = "alice@example.com";

struct Harness {
    sim: GraphSim,
    server: RunningServer,
    http: reqwest::Client,
    token: String,
}

struct Reply {
    status: u16,
    headers: ReplyHeaders,
    body: Value,
}

async fn start(config: GraphSimConfig) -> Harness {
    let sim = GraphSim::new(config).unwrap();
    let server = sim.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut harness = Harness {
        sim,
        server,
        http,
        token: String::new(),
    };
    harness.token = harness.fetch_token().await;
    harness
}

async fn start_default() -> Harness {
    start(GraphSimConfig::default()).await
}

fn form(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap()
}

impl Harness {
    fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}/v1.0/{path}", self.server.base_url())
        }
    }

    fn user(&self, rest: &str) -> String {
        self.url(&format!("users/{MAILBOX}/{rest}"))
    }

    async fn token_request(&self, tenant: &str, body: String) -> Reply {
        let reply = self
            .http
            .post(format!(
                "{}/{tenant}/oauth2/v2.0/token",
                self.server.base_url()
            ))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        Reply::read(reply).await
    }

    async fn fetch_token(&self) -> String {
        let creds = self.sim.credentials().clone();
        let reply = self
            .token_request(
                self.sim.tenant_id(),
                form(&[
                    ("client_id", &creds.user),
                    ("client_secret", &creds.password),
                    ("scope", "https://graph.microsoft.com/.default"),
                    ("grant_type", "client_credentials"),
                ]),
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.body["token_type"], "Bearer");
        assert!(reply.body["expires_in"].as_u64().unwrap() > 0);
        reply.body["access_token"].as_str().unwrap().to_owned()
    }

    async fn send(
        &self,
        method: &str,
        url: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = self
            .http
            .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url)
            .bearer_auth(&self.token);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        Reply::read(request.send().await.unwrap()).await
    }

    async fn get(&self, url: &str) -> Reply {
        self.send("GET", url, None, &[]).await
    }

    async fn post(&self, url: &str, body: Value) -> Reply {
        self.send("POST", url, Some(body), &[]).await
    }

    async fn new_contact(&self, given: &str, surname: &str) -> Value {
        let reply = self
            .post(&self.user("contacts"), json!({"givenName": given, "surname": surname, "emailAddresses": [{"address": format!("{given}@x.test"), "name": given}]}))
            .await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        reply.body
    }

    /// Follows a delta round from `url` to its deltaLink: (entries, deltaLink, pages).
    async fn delta_round(&self, url: &str, page_size: usize) -> (Vec<Value>, String, usize) {
        let mut entries = Vec::new();
        let mut next = url.to_owned();
        let prefer = format!("odata.maxpagesize={page_size}");
        for pages in 1..=50 {
            let reply = self.send("GET", &next, None, &[("prefer", &prefer)]).await;
            assert_eq!(reply.status, 200, "{}", reply.body);
            let value = reply.body["value"].as_array().unwrap();
            assert!(
                value.len() <= page_size,
                "page larger than asked: {}",
                value.len()
            );
            entries.extend(value.iter().cloned());
            if let Some(delta) = reply.body["@odata.deltaLink"].as_str() {
                assert!(reply.body.get("@odata.nextLink").is_none());
                return (entries, delta.to_owned(), pages);
            }
            next = reply.body["@odata.nextLink"]
                .as_str()
                .expect("a page without nextLink or deltaLink")
                .to_owned();
            assert!(next.contains("$skiptoken="), "{next}");
        }
        panic!("the delta round did not end within 50 pages");
    }
}

impl Reply {
    async fn read(reply: reqwest::Response) -> Self {
        let status = reply.status().as_u16();
        let headers = reply.headers().clone();
        let text = reply.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Self {
            status,
            headers,
            body,
        }
    }

    fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }
}

/// Certificate credentials over HTTP: the assertion's parameters are checked before the
/// assertion (its checks are `graph/certificates/tests.rs`), against the endpoint's own URL.
#[tokio::test]
async fn token_endpoint_takes_a_client_assertion_in_place_of_the_secret() {
    let app = AppCertificate::generate(5).unwrap();
    let h = start(GraphSimConfig { certificates: vec![app.certificate_pem.clone()], ..Default::default() }).await;
    let client = h.sim.credentials().user.clone();
    let scope = "https://graph.microsoft.com/.default";
    let ask = |extra: Vec<(&'static str, String)>| {
        let mut pairs = vec![
            ("client_id", client.clone()),
            ("scope", scope.to_owned()),
            ("grant_type", "client_credentials".to_owned()),
        ];
        pairs.extend(extra);
        serde_urlencoded::to_string(pairs).unwrap()
    };
    let aadsts = |reply: &Reply| reply.body["error_codes"][0].as_u64();
    let neither = h.token_request(h.sim.tenant_id(), ask(vec![])).await;
    assert_eq!((neither.status, neither.body["error"].as_str(), aadsts(&neither)), (401, Some("invalid_client"), Some(7000218)));
    let no_assertion = h
        .token_request(h.sim.tenant_id(), ask(vec![("client_assertion_type", certificates::CLIENT_ASSERTION_TYPE.into())]))
        .await;
    assert_eq!((no_assertion.status, aadsts(&no_assertion)), (400, Some(900144)));
    let wrong_type = h
        .token_request(
            h.sim.tenant_id(),
            ask(vec![("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:saml2-bearer".into()), ("client_assertion", "x.y.z".into())]),
        )
        .await;
    assert_eq!((wrong_type.status, aadsts(&wrong_type)), (400, Some(90023)));
    let malformed = h
        .token_request(
            h.sim.tenant_id(),
            ask(vec![("client_assertion_type", certificates::CLIENT_ASSERTION_TYPE.into()), ("client_assertion", "x.y.z".into())]),
        )
        .await;
    assert_eq!((malformed.status, malformed.body["error"].as_str(), aadsts(&malformed)), (400, Some("invalid_request"), Some(50027)));
    assert!(malformed.body["error_description"].as_str().unwrap().starts_with("AADSTS50027: "), "{}", malformed.body);
    // The discovery document names the method.
    let discovery = Reply::read(
        h.http
            .get(format!("{}/{}/v2.0/.well-known/openid-configuration", h.server.base_url(), h.sim.tenant_id()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let methods = discovery.body["token_endpoint_auth_methods_supported"].as_array().unwrap();
    assert!(methods.iter().any(|m| m == "private_key_jwt"), "{}", discovery.body);
    // A certificate registered at run time is taken as well; a non-certificate is refused.
    assert!(h.sim.register_certificate("not a certificate").is_err());
    let thumbprint = h.sim.register_certificate(&AppCertificate::generate(5).unwrap().certificate_pem).unwrap();
    assert_eq!(thumbprint.len(), 40, "{thumbprint}");
}

#[tokio::test]
async fn token_endpoint_checks_the_client_and_v1_needs_a_live_bearer_token() {
    let h = start_default().await;
    let creds = h.sim.credentials().clone();
    let scope = "https://graph.microsoft.com/.default";
    let wrong_secret = h
        .token_request(
            h.sim.tenant_id(),
            form(&[
                ("client_id", &creds.user),
                ("client_secret", "nope"),
                ("scope", scope),
                ("grant_type", "client_credentials"),
            ]),
        )
        .await;
    assert_eq!(wrong_secret.status, 401);
    assert_eq!(wrong_secret.body["error"], "invalid_client");
    let bad_scope = h
        .token_request(
            h.sim.tenant_id(),
            form(&[
                ("client_id", &creds.user),
                ("client_secret", &creds.password),
                ("scope", "Contacts.Read"),
                ("grant_type", "client_credentials"),
            ]),
        )
        .await;
    assert_eq!(bad_scope.body["error"], "invalid_scope");
    let bad_grant = h
        .token_request(
            h.sim.tenant_id(),
            form(&[
                ("client_id", &creds.user),
                ("client_secret", &creds.password),
                ("scope", scope),
                ("grant_type", "password"),
            ]),
        )
        .await;
    assert_eq!(bad_grant.body["error"], "unsupported_grant_type");
    let other_tenant = h
        .token_request(
            "contoso",
            form(&[
                ("client_id", &creds.user),
                ("client_secret", &creds.password),
                ("scope", scope),
                ("grant_type", "client_credentials"),
            ]),
        )
        .await;
    assert_eq!(
        (other_tenant.status, other_tenant.body["error"].as_str()),
        (400, Some("invalid_tenant"))
    );

    let anonymous = Reply::read(h.http.get(h.user("contacts")).send().await.unwrap()).await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.error_code(), "InvalidAuthenticationToken");
    assert!(anonymous.headers.contains_key("www-authenticate"));
    let forged = Reply::read(
        h.http
            .get(h.user("contacts"))
            .bearer_auth("forged")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(forged.status, 401);
    assert_eq!(h.get(&h.user("contacts")).await.status, 200);

    let expired = h
        .http
        .post(format!(
            "{}/_sim/graph/expire-access-tokens",
            h.server.base_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(expired.status().as_u16(), 204);
    let reply = h.get(&h.user("contacts")).await;
    assert_eq!(reply.status, 401);
    assert!(
        reply.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{}",
        reply.body
    );
    let fresh = Harness {
        token: h.fetch_token().await,
        ..h
    };
    assert_eq!(fresh.get(&fresh.user("contacts")).await.status, 200);
}

#[tokio::test]
async fn contacts_crud_with_change_keys_if_match_select_and_validation() {
    let h = start_default().await;
    let created = h.new_contact("Ada", "Lovelace").await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["displayName"], "Ada Lovelace");
    assert_eq!(created["emailAddresses"][0]["address"], "Ada@x.test");
    assert_eq!(created["businessPhones"], json!([]));
    let change_key = created["changeKey"].as_str().unwrap().to_owned();
    assert_eq!(created["@odata.etag"], format!("W/\"{change_key}\""));

    let read = h.get(&h.user(&format!("contacts/{id}"))).await;
    assert_eq!(
        (read.status, read.body["surname"].as_str()),
        (200, Some("Lovelace"))
    );
    let folder = read.body["parentFolderId"].as_str().unwrap().to_owned();
    let via_folder = h
        .get(&h.user(&format!("contactFolders/{folder}/contacts/{id}")))
        .await;
    assert_eq!(via_folder.body["id"], id.as_str());

    let patch = json!({"jobTitle": "Analyst", "businessPhones": ["+44 1"]});
    let stale = h
        .send(
            "PATCH",
            &h.user(&format!("contacts/{id}")),
            Some(patch.clone()),
            &[("if-match", "W/\"stale\"")],
        )
        .await;
    assert_eq!(
        (stale.status, stale.error_code()),
        (412, "ErrorIrresolvableConflict")
    );
    let etag = format!("W/\"{change_key}\"");
    let patched = h
        .send(
            "PATCH",
            &h.user(&format!("contacts/{id}")),
            Some(patch),
            &[("if-match", &etag)],
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.body["jobTitle"], "Analyst");
    assert_ne!(patched.body["changeKey"].as_str().unwrap(), change_key);

    let unknown = h
        .send(
            "PATCH",
            &h.user(&format!("contacts/{id}")),
            Some(json!({"nickname": "x"})),
            &[],
        )
        .await;
    assert_eq!(
        (unknown.status, unknown.error_code()),
        (400, "RequestBodyRead")
    );

    let selected = h
        .get(&h.user(&format!("contacts/{id}?$select=givenName,jobTitle")))
        .await;
    let keys: Vec<&String> = selected.body.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["@odata.etag", "givenName", "id", "jobTitle"]);

    assert_eq!(
        h.send("DELETE", &h.user(&format!("contacts/{id}")), None, &[])
            .await
            .status,
        204
    );
    let gone = h.get(&h.user(&format!("contacts/{id}"))).await;
    assert_eq!((gone.status, gone.error_code()), (404, "ErrorItemNotFound"));
    let me = h.get(&h.url("me/contacts")).await;
    assert_eq!(me.status, 400);
}

#[tokio::test]
async fn lists_page_with_top_and_next_link() {
    let h = start_default().await;
    for n in 0..25 {
        h.sim
            .create_item(MAILBOX, "contacts", json!({"givenName": format!("P{n}")}))
            .unwrap();
    }
    let mut ids = std::collections::BTreeSet::new();
    let mut next = h.user("contacts?$top=10&$select=givenName");
    for _ in 0..10 {
        let reply = h.get(&next).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        for item in reply.body["value"].as_array().unwrap() {
            assert!(
                item.get("surname").is_none(),
                "$select not kept across pages"
            );
            ids.insert(item["id"].as_str().unwrap().to_owned());
        }
        match reply.body["@odata.nextLink"].as_str() {
            Some(link) => next = link.to_owned(),
            None => break,
        }
    }
    assert_eq!(ids.len(), 25);
}

#[tokio::test]
async fn contact_delta_pages_then_reports_updates_and_removals_and_410_after_expiry() {
    let h = start_default().await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(
            h.new_contact(&format!("C{n}"), "Delta").await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let (entries, delta_link, pages) = h
        .delta_round(
            &h.user("contactFolders/contacts/contacts/delta?$select=givenName"),
            2,
        )
        .await;
    assert_eq!(pages, 3);
    assert_eq!(entries.len(), 5);
    assert!(
        entries
            .iter()
            .all(|e| e.get("@removed").is_none() && e.get("surname").is_none())
    );
    assert!(delta_link.contains("$deltatoken="));

    h.send(
        "PATCH",
        &h.user(&format!("contacts/{}", ids[0])),
        Some(json!({"givenName": "Changed"})),
        &[],
    )
    .await;
    h.send(
        "DELETE",
        &h.user(&format!("contacts/{}", ids[1])),
        None,
        &[],
    )
    .await;
    let added = h.new_contact("New", "Delta").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (entries, second_link, _) = h.delta_round(&delta_link, 10).await;
    assert_eq!(entries.len(), 3, "{entries:?}");
    let find = |id: &str| entries.iter().find(|e| e["id"] == id).cloned().unwrap();
    assert_eq!(find(&ids[0])["givenName"], "Changed");
    assert_eq!(find(&ids[1])["@removed"]["reason"], "deleted");
    assert_eq!(find(&added)["givenName"], "New");

    let (entries, third_link, _) = h.delta_round(&second_link, 10).await;
    assert!(entries.is_empty(), "{entries:?}");
    // The default folder's own delta URL reads the same folder.
    let (all, _, _) = h.delta_round(&h.user("contacts/delta"), 100).await;
    assert_eq!(all.len(), 5);

    let expire = h
        .http
        .post(format!(
            "{}/_sim/graph/expire-delta-tokens",
            h.server.base_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(expire.status().as_u16(), 204);
    let stale = h.get(&third_link).await;
    assert_eq!(
        (stale.status, stale.error_code()),
        (410, "syncStateNotFound")
    );
    let location = stale.headers.get("location").unwrap().to_str().unwrap();
    assert!(location.ends_with("/contacts/delta"), "{location}");
    let garbage = h
        .get(&h.user("contacts/delta?$deltatoken=not-a-token"))
        .await;
    assert_eq!(garbage.status, 410);
    let (restarted, _, _) = h.delta_round(location, 100).await;
    assert_eq!(restarted.len(), 5);
}

fn event(subject: &str, start: &str, end: &str) -> Value {
    json!({"subject": subject, "start": {"dateTime": start, "timeZone": "UTC"}, "end": {"dateTime": end, "timeZone": "UTC"},
           "attendees": [{"emailAddress": {"address": "bob@example.com", "name": "Bob"}, "type": "required"}], "sensitivity": "private"})
}

#[tokio::test]
async fn events_crud_and_calendar_view_delta_within_a_window() {
    let h = start_default().await;
    let inside = h
        .post(
            &h.user("events"),
            event("Inside", "2026-12-01T09:00:00", "2026-12-01T10:00:00"),
        )
        .await;
    assert_eq!(inside.status, 201, "{}", inside.body);
    assert_eq!(
        inside.body["start"]["dateTime"],
        "2026-12-01T09:00:00.0000000"
    );
    assert_eq!(inside.body["organizer"]["emailAddress"]["address"], MAILBOX);
    assert_eq!(inside.body["attendees"][0]["emailAddress"]["name"], "Bob");
    assert!(inside.body["iCalUId"].as_str().unwrap().len() > 20);
    let outside = h
        .post(
            &h.user("events"),
            event("Outside", "2027-03-01T09:00:00", "2027-03-01T10:00:00"),
        )
        .await;
    let all_day = h
        .post(&h.user("events"), json!({"subject": "Day", "isAllDay": true, "start": {"dateTime": "2026-12-02T00:00:00", "timeZone": "UTC"}, "end": {"dateTime": "2026-12-03T00:00:00", "timeZone": "UTC"}}))
        .await;
    assert_eq!(all_day.status, 201, "{}", all_day.body);
    let bad_all_day = h
        .post(&h.user("events"), json!({"subject": "Bad", "isAllDay": true, "start": {"dateTime": "2026-12-02T08:00:00", "timeZone": "UTC"}, "end": {"dateTime": "2026-12-03T00:00:00", "timeZone": "UTC"}}))
        .await;
    assert_eq!(bad_all_day.status, 400);
    let bad_enum = h.post(&h.user("events"), json!({"subject": "x", "sensitivity": "secret", "start": {"dateTime": "2026-12-02T08:00:00"}, "end": {"dateTime": "2026-12-02T09:00:00"}})).await;
    assert_eq!(bad_enum.status, 400);

    let no_window = h.get(&h.user("calendarView/delta")).await;
    assert_eq!(
        (no_window.status, no_window.error_code()),
        (400, "ErrorInvalidParameter")
    );
    let window =
        "calendarView/delta?startDateTime=2026-11-01T00:00:00Z&endDateTime=2027-01-01T00:00:00Z";
    let (entries, delta_link, _) = h.delta_round(&h.user(window), 10).await;
    let subjects: std::collections::BTreeSet<&str> = entries
        .iter()
        .map(|e| e["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, ["Day", "Inside"].into_iter().collect());
    let view = h
        .get(&h.user(
            "calendarView?startDateTime=2027-02-01T00:00:00Z&endDateTime=2027-04-01T00:00:00Z",
        ))
        .await;
    assert_eq!(view.body["value"].as_array().unwrap().len(), 1);
    assert_eq!(view.body["value"][0]["id"], outside.body["id"]);

    let inside_id = inside.body["id"].as_str().unwrap();
    let moved = h
        .send("PATCH", &h.user(&format!("events/{inside_id}")), Some(json!({"start": {"dateTime": "2027-02-01T09:00:00", "timeZone": "UTC"}, "end": {"dateTime": "2027-02-01T10:00:00", "timeZone": "UTC"}})), &[])
        .await;
    assert_eq!(moved.status, 200, "{}", moved.body);
    let day_id = all_day.body["id"].as_str().unwrap();
    h.send(
        "PATCH",
        &h.user(&format!("events/{day_id}")),
        Some(json!({"subject": "Day renamed"})),
        &[],
    )
    .await;
    let (entries, _, _) = h.delta_round(&delta_link, 10).await;
    assert_eq!(entries.len(), 2, "{entries:?}");
    let moved_entry = entries.iter().find(|e| e["id"] == inside_id).unwrap();
    assert_eq!(
        moved_entry["@removed"]["reason"], "deleted",
        "an event moved out of the window reads as removed"
    );
    assert_eq!(
        entries.iter().find(|e| e["id"] == day_id).unwrap()["subject"],
        "Day renamed"
    );
}

#[tokio::test]
async fn todo_lists_tasks_crud_and_delta() {
    let h = start_default().await;
    let lists = h.get(&h.user("todo/lists")).await;
    assert_eq!(lists.status, 200);
    let default = lists.body["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["wellknownListName"] == "defaultList")
        .unwrap()
        .clone();
    let list_id = default["id"].as_str().unwrap().to_owned();
    let created_list = h
        .post(&h.user("todo/lists"), json!({"displayName": "CRM"}))
        .await;
    assert_eq!(created_list.status, 201);

    let tasks = h.user(&format!("todo/lists/{list_id}/tasks"));
    let task = h
        .post(&tasks, json!({"title": "Call Ada", "importance": "high", "dueDateTime": {"dateTime": "2026-12-05T00:00:00", "timeZone": "UTC"}, "body": {"content": "about CRM", "contentType": "text"}}))
        .await;
    assert_eq!(task.status, 201, "{}", task.body);
    assert_eq!(task.body["status"], "notStarted");
    assert!(task.body.get("changeKey").is_none());
    let task_id = task.body["id"].as_str().unwrap().to_owned();
    let (entries, delta_link, _) = h.delta_round(&format!("{tasks}/delta"), 10).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["title"], "Call Ada");

    let done = h
        .send(
            "PATCH",
            &format!("{tasks}/{task_id}"),
            Some(json!({"status": "completed"})),
            &[],
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body["completedDateTime"]["dateTime"].is_string());
    let bad = h
        .send(
            "PATCH",
            &format!("{tasks}/{task_id}"),
            Some(json!({"status": "finished"})),
            &[],
        )
        .await;
    assert_eq!(bad.status, 400);
    let second = h.post(&tasks, json!({"title": "Second"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        h.send("DELETE", &format!("{tasks}/{second}"), None, &[])
            .await
            .status,
        204
    );
    let (entries, _, _) = h.delta_round(&delta_link, 10).await;
    // The completed task, and the task created and deleted within the round as removed.
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_eq!(
        entries
            .iter()
            .find(|e| e["id"] == task_id.as_str())
            .unwrap()["status"],
        "completed"
    );
    assert_eq!(
        entries.iter().find(|e| e["id"] == second.as_str()).unwrap()["@removed"]["reason"],
        "deleted"
    );
    assert_eq!(h.sim.item_count(MAILBOX, "tasks"), 1);

    // linkedResources (how a To Do task points back at its CRM record) come with $expand.
    let linked = h
        .post(&tasks, json!({"title": "Linked", "linkedResources": [{"applicationName": "Tandem", "displayName": "Siebel activity", "externalId": "siebel:1-XYZ", "webUrl": "https://crm.example.com/1-XYZ"}]}))
        .await;
    assert_eq!(linked.status, 201, "{}", linked.body);
    assert!(linked.body.get("linkedResources").is_none());
    let linked_id = linked.body["id"].as_str().unwrap();
    let expanded = h
        .get(&format!("{tasks}/{linked_id}?$expand=linkedResources"))
        .await;
    assert_eq!(
        expanded.body["linkedResources"][0]["externalId"],
        "siebel:1-XYZ"
    );
    assert!(expanded.body["linkedResources"][0]["id"].is_string());
    let bad_link = h
        .post(
            &tasks,
            json!({"title": "Bad", "linkedResources": [{"externalID": "x"}]}),
        )
        .await;
    assert_eq!(bad_link.status, 400);
}

impl std::ops::Index<&str> for Reply {
    type Output = Value;
    fn index(&self, key: &str) -> &Value {
        &self.body[key]
    }
}

#[tokio::test]
async fn batch_runs_up_to_twenty_steps_with_depends_on_and_rejects_more() {
    let h = start_default().await;
    let step = |id: usize| {
        json!({"id": id.to_string(), "method": "POST", "url": format!("/users/{MAILBOX}/contacts"),
                                   "headers": {"Content-Type": "application/json"}, "body": {"givenName": format!("B{id}")}})
    };
    let too_many: Vec<Value> = (1..=21).map(step).collect();
    let rejected = h
        .post(&h.url("$batch"), json!({"requests": too_many}))
        .await;
    assert_eq!(rejected.status, 400, "{}", rejected.body);
    assert_eq!(
        h.sim.item_count(MAILBOX, "contacts"),
        0,
        "a rejected batch runs nothing"
    );

    let twenty: Vec<Value> = (1..=20).map(step).collect();
    let reply = h.post(&h.url("$batch"), json!({"requests": twenty})).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let responses = reply.body["responses"].as_array().unwrap();
    assert_eq!(responses.len(), 20);
    assert!(
        responses
            .iter()
            .all(|r| r["status"] == 201 && r["body"]["givenName"].is_string())
    );
    assert_eq!(h.sim.item_count(MAILBOX, "contacts"), 20);

    let chained = json!({"requests": [
        {"id": "a", "method": "GET", "url": format!("/users/{MAILBOX}/contacts/missing")},
        {"id": "b", "method": "GET", "url": format!("/users/{MAILBOX}/contacts?$top=1"), "dependsOn": ["a"]},
        {"id": "c", "method": "GET", "url": format!("users/{MAILBOX}/contacts?$top=2")},
    ]});
    let reply = h.post(&h.url("$batch"), chained).await;
    let status_of = |id: &str| {
        reply.body["responses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .unwrap()["status"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(
        (status_of("a"), status_of("b"), status_of("c")),
        (404, 424, 200)
    );
    let bad_dependency = h.post(&h.url("$batch"), json!({"requests": [{"id": "x", "method": "GET", "url": "/users/a/contacts", "dependsOn": ["zz"]}]})).await;
    assert_eq!(bad_dependency.status, 400);

    let stats = h.sim.stats().requests;
    assert_eq!(stats.get("POST $batch"), Some(&4));
    assert_eq!(stats.get("POST contacts"), Some(&20), "{stats:?}");
    assert_eq!(stats.get("GET contacts/{id}"), Some(&1), "{stats:?}");
}

#[tokio::test]
async fn throttling_answers_429_with_retry_after_per_app_and_mailbox() {
    let h = start(GraphSimConfig {
        throttle: ThrottleLimits {
            requests_per_window: 5,
            window_ms: 30_000,
            concurrent_requests: 2,
        },
        ..Default::default()
    })
    .await;
    for _ in 0..5 {
        assert_eq!(h.get(&h.user("contacts")).await.status, 200);
    }
    let throttled = h.get(&h.user("contacts")).await;
    assert_eq!(
        (throttled.status, throttled.error_code()),
        (429, "ApplicationThrottled")
    );
    let retry_after: u64 = throttled
        .headers
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (25..=30).contains(&retry_after),
        "Retry-After {retry_after}"
    );
    assert_eq!(
        h.get(&h.url("users/bob@example.com/contacts")).await.status,
        200,
        "another mailbox has its own budget"
    );

    // Batch sub-requests count one by one: 3 for carol, then only 2 of the next 3 fit.
    let batch = |n: usize| json!({"requests": (0..n).map(|i| json!({"id": i.to_string(), "method": "GET", "url": "/users/carol@example.com/contacts"})).collect::<Vec<_>>()});
    let first = h.post(&h.url("$batch"), batch(3)).await;
    assert!(
        first.body["responses"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == 200)
    );
    let second = h.post(&h.url("$batch"), batch(3)).await;
    let statuses: Vec<u64> = second.body["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [200, 200, 429]);
    assert!(second.body["responses"][2]["headers"]["Retry-After"].is_string());

    // Concurrency: slow replies hold their slots; a third request at once is refused.
    h.sim.set_throttle_limits(ThrottleLimits {
        requests_per_window: 100,
        window_ms: 30_000,
        concurrent_requests: 2,
    });
    h.sim.set_faults(common::FaultSettings {
        rate: 1.0,
        kinds: vec!["slow".into()],
    });
    let url = h.url("users/dave@example.com/contacts");
    let replies = futures_join(&h, &url, 4).await;
    let refused = replies.iter().filter(|r| r.status == 429).count();
    assert!(
        refused >= 1,
        "4 requests at once under a limit of 2: {:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert!(replies.iter().filter(|r| r.status == 200).count() >= 2);
    let concurrency_message =
        replies.iter().find(|r| r.status == 429).unwrap().body["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
    assert!(
        concurrency_message.contains("Concurrency"),
        "{concurrency_message}"
    );
    let report: Value = h
        .http
        .get(format!("{}/_sim/graph/throttle", h.server.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(report["peak_concurrency"], 2, "{report}");
    assert!(
        report["throttled_requests"].as_u64().unwrap() >= 3,
        "{report}"
    );
    assert_eq!(report["limits"]["concurrent_requests"], 2);
}

async fn futures_join(h: &Harness, url: &str, n: usize) -> Vec<Reply> {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let http = h.http.clone();
        let token = h.token.clone();
        let url = url.to_owned();
        tasks.push(tokio::spawn(async move {
            Reply::read(http.get(url).bearer_auth(token).send().await.unwrap()).await
        }));
    }
    let mut replies = Vec::new();
    for task in tasks {
        replies.push(task.await.unwrap());
    }
    replies
}

/// A webhook for the tests: answers validation requests (unless `echo` is false) and passes
/// every notification body on.
#[derive(Clone)]
struct Webhook {
    echo: bool,
    sender: mpsc::UnboundedSender<Value>,
}

async fn webhook_handler(
    State(hook): State<Webhook>,
    Query(params): Query<std::collections::HashMap<String, String>>,
    body: Bytes,
) -> Response {
    if let Some(token) = params.get("validationToken") {
        if !hook.echo {
            return (StatusCode::OK, "not the token").into_response();
        }
        return ([(header::CONTENT_TYPE, "text/plain")], token.clone()).into_response();
    }
    if let Ok(value) = serde_json::from_slice::<Value>(&body) {
        let _ = hook.sender.send(value);
    }
    StatusCode::ACCEPTED.into_response()
}

async fn start_webhook(echo: bool) -> (RunningServer, mpsc::UnboundedReceiver<Value>) {
    let (sender, receiver) = mpsc::unbounded_channel();
    let router = Router::new()
        .route("/hook", post(webhook_handler))
        .with_state(Webhook { echo, sender });
    (
        RunningServer::start(router, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap(),
        receiver,
    )
}

async fn next_notification(receiver: &mut mpsc::UnboundedReceiver<Value>) -> Value {
    tokio::time::timeout(Duration::from_secs(5), receiver.recv())
        .await
        .expect("no notification within 5 s")
        .unwrap()
}

#[tokio::test]
async fn subscriptions_validate_notify_renew_and_end() {
    let h = start_default().await;
    let (hook, mut notifications) = start_webhook(true).await;
    let (lifecycle_hook, mut lifecycle) = start_webhook(true).await;
    let in_two_days = (Utc::now() + chrono::Duration::days(2)).to_rfc3339();
    let request = json!({
        "changeType": "created,updated,deleted",
        "notificationUrl": format!("{}/hook", hook.base_url()),
        "lifecycleNotificationUrl": format!("{}/hook", lifecycle_hook.base_url()),
        "resource": format!("/users/{MAILBOX}/contacts"),
        "expirationDateTime": in_two_days,
        "clientState": "tandem-secret",
    });
    let created = h.post(&h.url("subscriptions"), request.clone()).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();

    let contact = h.new_contact("Notify", "Me").await;
    let notification = next_notification(&mut notifications).await;
    let entry = &notification["value"][0];
    assert_eq!(entry["subscriptionId"], id.as_str());
    assert_eq!(entry["clientState"], "tandem-secret");
    assert_eq!(entry["changeType"], "created");
    assert_eq!(entry["resourceData"]["id"], contact["id"]);
    h.sim.delete_item(MAILBOX, contact["id"].as_str().unwrap());
    assert_eq!(
        next_notification(&mut notifications).await["value"][0]["changeType"],
        "deleted"
    );

    let later = (Utc::now() + chrono::Duration::days(5)).to_rfc3339();
    let renewed = h
        .send(
            "PATCH",
            &h.url(&format!("subscriptions/{id}")),
            Some(json!({"expirationDateTime": later})),
            &[],
        )
        .await;
    assert_eq!(renewed.status, 200, "{}", renewed.body);
    assert_ne!(
        renewed.body["expirationDateTime"],
        created.body["expirationDateTime"]
    );
    let too_late = (Utc::now() + chrono::Duration::days(8)).to_rfc3339();
    let refused = h
        .send(
            "PATCH",
            &h.url(&format!("subscriptions/{id}")),
            Some(json!({"expirationDateTime": too_late})),
            &[],
        )
        .await;
    assert_eq!(refused.status, 400);

    let knob = h
        .http
        .post(format!("{}/_sim/graph/lifecycle", h.server.base_url()))
        .json(&json!({"subscriptionId": id, "lifecycleEvent": "reauthorizationRequired"}))
        .send()
        .await
        .unwrap();
    assert_eq!(knob.status().as_u16(), 202);
    let event = next_notification(&mut lifecycle).await;
    assert_eq!(
        event["value"][0]["lifecycleEvent"],
        "reauthorizationRequired"
    );
    assert_eq!(event["value"][0]["clientState"], "tandem-secret");

    assert_eq!(
        h.send("DELETE", &h.url(&format!("subscriptions/{id}")), None, &[])
            .await
            .status,
        204
    );
    h.new_contact("After", "Delete").await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), notifications.recv())
            .await
            .is_err(),
        "a deleted subscription still notifies"
    );

    let (silent, _rx) = start_webhook(false).await;
    let mut unvalidated = request.clone();
    unvalidated["notificationUrl"] = json!(format!("{}/hook", silent.base_url()));
    let reply = h.post(&h.url("subscriptions"), unvalidated).await;
    assert_eq!((reply.status, reply.error_code()), (400, "ValidationError"));
    let mut remote = request;
    remote["notificationUrl"] = json!("https://example.com/hook");
    assert_eq!(h.post(&h.url("subscriptions"), remote).await.status, 400);
}

#[tokio::test]
async fn sync_id_extended_property_is_stored_expanded_and_filtered() {
    let h = start_default().await;
    let with_id = |given: &str, sync_id: &str| json!({"givenName": given, "singleValueExtendedProperties": [{"id": SYNC_ID_PROPERTY_ID, "value": sync_id}]});
    let a = h
        .post(&h.user("contacts"), with_id("A", "siebel:1-ABC"))
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert!(
        a.body.get("singleValueExtendedProperties").is_none(),
        "not expanded unless asked"
    );
    h.post(&h.user("contacts"), with_id("B", "siebel:1-XYZ"))
        .await;
    h.new_contact("C", "NoId").await;

    let filter = format!(
        "singleValueExtendedProperties/Any(ep: ep/id eq '{SYNC_ID_PROPERTY_ID}' and ep/value eq 'siebel:1-ABC')"
    );
    let expand = format!("singleValueExtendedProperties($filter=id eq '{SYNC_ID_PROPERTY_ID}')");
    let url = format!(
        "{}?{}",
        h.user("contacts"),
        form(&[("$filter", &filter), ("$expand", &expand)])
    );
    let found = h.get(&url).await;
    assert_eq!(found.status, 200, "{}", found.body);
    let value = found.body["value"].as_array().unwrap();
    assert_eq!(value.len(), 1);
    assert_eq!(value[0]["givenName"], "A");
    assert_eq!(
        value[0]["singleValueExtendedProperties"][0]["value"],
        "siebel:1-ABC"
    );

    let event = json!({"subject": "E", "start": {"dateTime": "2026-12-01T09:00:00", "timeZone": "UTC"}, "end": {"dateTime": "2026-12-01T10:00:00", "timeZone": "UTC"},
                       "singleValueExtendedProperties": [{"id": SYNC_ID_PROPERTY_ID, "value": "siebel:ev-1"}]});
    assert_eq!(h.post(&h.user("events"), event).await.status, 201);
    let filter = format!(
        "singleValueExtendedProperties/any(ep: ep/id eq '{SYNC_ID_PROPERTY_ID}' and ep/value eq 'siebel:ev-1')"
    );
    let found = h
        .get(&format!(
            "{}?{}",
            h.user("events"),
            form(&[("$filter", &filter)])
        ))
        .await;
    assert_eq!(found.body["value"].as_array().unwrap().len(), 1);

    let bad_id = h.post(&h.user("contacts"), json!({"givenName": "X", "singleValueExtendedProperties": [{"id": "TandemSyncId", "value": "v"}]})).await;
    assert_eq!(bad_id.status, 400);
    let bad_filter = h
        .get(&format!(
            "{}?{}",
            h.user("contacts"),
            form(&[("$filter", "givenName eq 'A'")])
        ))
        .await;
    assert_eq!(bad_filter.status, 400);
    // The direct API sees it too.
    let id = a.body["id"].as_str().unwrap();
    assert_eq!(
        h.sim.item(MAILBOX, id).unwrap()["singleValueExtendedProperties"][0]["id"],
        SYNC_ID_PROPERTY_ID
    );
}

#[tokio::test]
async fn faults_are_injected_on_request_and_stats_count_operations() {
    let h = start_default().await;
    let set = h
        .http
        .post(format!("{}/_sim/faults", h.server.base_url()))
        .json(&json!({"rate": 1.0, "kinds": ["service-unavailable"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status().as_u16(), 200);
    let faulted = h
        .post(&h.user("contacts"), json!({"givenName": "Never"}))
        .await;
    assert_eq!(
        (faulted.status, faulted.error_code()),
        (503, "ServiceUnavailable")
    );
    assert!(faulted.headers.contains_key("retry-after"));
    assert_eq!(
        h.sim.item_count(MAILBOX, "contacts"),
        0,
        "a faulted request changes nothing"
    );

    h.sim.set_faults(common::FaultSettings {
        rate: 1.0,
        kinds: vec!["drop".into()],
    });
    let dropped = h
        .http
        .post(h.user("contacts"))
        .bearer_auth(&h.token)
        .json(&json!({"givenName": "Lost"}))
        .send()
        .await;
    assert!(
        dropped.is_err(),
        "the connection should close without a reply"
    );
    assert_eq!(
        h.sim.item_count(MAILBOX, "contacts"),
        1,
        "a dropped reply's request is carried out"
    );
    h.sim.set_faults(common::FaultSettings::default());

    h.get(&h.user("contacts/delta")).await;
    h.get(&h.user("contacts")).await;
    let stats: Value = h
        .http
        .get(format!("{}/_sim/stats", h.server.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let requests = &stats["requests"];
    assert_eq!(requests["POST token"], 1, "{stats}");
    assert_eq!(requests["POST contacts"], 2, "{stats}");
    assert_eq!(requests["GET contacts/delta"], 1, "{stats}");
    assert_eq!(requests["GET contacts"], 1, "{stats}");
}

#[tokio::test]
async fn unknown_mailboxes_are_refused_when_mailboxes_are_listed_and_data_persists() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("graph.json");
    let config = GraphSimConfig {
        mailboxes: Some(vec![MAILBOX.into()]),
        data_file: Some(data.clone()),
        ..Default::default()
    };
    let h = start(config.clone()).await;
    let refused = h.get(&h.url("users/mallory@example.com/contacts")).await;
    assert_eq!(
        (refused.status, refused.error_code()),
        (404, "ErrorInvalidUser")
    );
    let id = h.new_contact("Kept", "OnDisk").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    h.server.stop().await;
    let reloaded = GraphSim::new(config).unwrap();
    assert_eq!(reloaded.item(MAILBOX, &id).unwrap()["givenName"], "Kept");
}

#[test]
fn operation_names_put_ids_in_braces() {
    let name = |method: Method, path: &str| operation_name(&method, &segments_of(path));
    assert_eq!(
        name(
            Method::GET,
            "/v1.0/users/a@b.c/contactFolders/contacts/contacts/delta()"
        ),
        "GET contactFolders/{id}/contacts/delta"
    );
    assert_eq!(
        name(Method::PATCH, "/v1.0/users/a@b.c/contacts/AAMkAG1"),
        "PATCH contacts/{id}"
    );
    assert_eq!(
        name(
            Method::GET,
            "/v1.0/users/a/todo/lists/defaultList/tasks/delta"
        ),
        "GET todo/lists/{id}/tasks/delta"
    );
    assert_eq!(
        name(Method::GET, "/v1.0/users/a/calendarView/delta"),
        "GET calendarView/delta"
    );
    assert_eq!(name(Method::POST, "/v1.0/$batch"), "POST $batch");
    assert_eq!(
        name(Method::DELETE, "/v1.0/subscriptions/123"),
        "DELETE subscriptions/{id}"
    );
}

#[tokio::test]
async fn event_bodies_come_as_html_unless_text_is_preferred() {
    let h = start_default().await;
    let event = json!({"subject": "Review", "body": {"contentType": "text", "content": "Bring <numbers> & charts\nand coffee"},
                       "start": {"dateTime": "2026-12-02T08:00:00", "timeZone": "UTC"}, "end": {"dateTime": "2026-12-02T09:00:00", "timeZone": "UTC"}});
    let created = h.post(&h.user("events"), event).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    // Graph's default: HTML, the text escaped and its line breaks as <br>.
    let html = h.get(&h.user(&format!("events/{id}"))).await;
    assert_eq!(html.body["body"]["contentType"], "html", "{}", html.body);
    let content = html.body["body"]["content"].as_str().unwrap();
    assert!(content.contains("<html>") && content.contains("Bring &lt;numbers&gt; &amp; charts<br>"), "{content}");
    // Asked for text: the text as written, also on a delta page.
    let prefer = [("Prefer", "outlook.body-content-type=\"text\"")];
    let text = h.send("GET", &h.user(&format!("events/{id}")), None, &prefer).await;
    assert_eq!(text.body["body"], json!({"contentType": "text", "content": "Bring <numbers> & charts\nand coffee"}));
    let delta_url = h.user("calendarView/delta?startDateTime=2026-12-01T00:00:00Z&endDateTime=2026-12-31T00:00:00Z");
    let delta = h.send("GET", &delta_url, None, &[("Prefer", "outlook.timezone=\"UTC\", outlook.body-content-type=\"text\"")]).await;
    assert_eq!(delta.body["value"][0]["body"]["contentType"], "text", "{}", delta.body);
    let plain_delta = h.get(&delta_url).await;
    assert_eq!(plain_delta.body["value"][0]["body"]["contentType"], "html", "{}", plain_delta.body);
    // HTML written by a client comes back as its text when text is asked for.
    let patched = h
        .send("PATCH", &h.user(&format!("events/{id}")), Some(json!({"body": {"contentType": "html", "content": "<p>One &amp; two</p><p>three</p>"}})), &[])
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    let text = h.send("GET", &h.user(&format!("events/{id}")), None, &prefer).await;
    assert_eq!(text.body["body"]["content"], "One & two\nthree");
}

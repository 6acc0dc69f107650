//! Graph change notifications: `GraphClient::watch` and the `GraphWebhook` receiver
//! over real loopback HTTP against the emulator — the validation handshake, changes reaching the
//! receiver as mailbox signals, forged notifications dropped, renewal before expiry, lifecycle
//! notifications (`subscriptionRemoved`, `missed`, `reauthorizationRequired`), and deletion of
//! the subscriptions when the watch ends.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};
use tokio::sync::mpsc;

use crate::{Harness, MAILBOX, start};
use tandem_host::exchange::graph::{GraphWebhook, NOTIFICATION_PATH};

const OTHER_MAILBOX: &str = "bob@example.com";
/// How fast a change must reach the receiver.
const SIGNAL_WITHIN: Duration = Duration::from_secs(2);

/// The webhook receiver served on a loopback port; the server stops when this is dropped.
struct Webhook {
    webhook: GraphWebhook,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn serve_webhook(lifetime: Option<Duration>) -> Webhook {
    // The tests' own reqwest clients need the process's rustls provider.
    tandem_host::transport::install_crypto_provider();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut webhook = GraphWebhook::new(&format!("http://{addr}")).unwrap();
    if let Some(lifetime) = lifetime {
        webhook = webhook.with_subscription_lifetime(lifetime);
    }
    let router = webhook.router();
    let server = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    Webhook { webhook, server }
}

/// Waits (bounded) until `check` holds.
async fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn live_ids(h: &Harness) -> BTreeSet<String> {
    h.sim.subscription_ids().into_iter().collect()
}

/// Starts watching `mailboxes` and waits until their 3 subscriptions each are made.
async fn watching(
    h: &Harness,
    webhook: &GraphWebhook,
    mailboxes: &[&str],
) -> mpsc::Receiver<String> {
    let signals = h
        .client
        .watch(webhook, mailboxes.iter().map(|m| (*m).to_owned()).collect());
    let wanted = mailboxes.len() * 3;
    eventually("the subscriptions", Duration::from_secs(10), || {
        h.sim.subscription_ids().len() == wanted && webhook.live_subscriptions() == wanted
    })
    .await;
    signals
}

/// The next signal, which must name `mailbox` and come within `within`; then any duplicates
/// already queued are drained (and must name the same mailbox).
async fn expect_signal(signals: &mut mpsc::Receiver<String>, mailbox: &str, within: Duration) {
    let got = tokio::time::timeout(within, signals.recv())
        .await
        .unwrap_or_else(|_| panic!("no signal for {mailbox} within {within:?}"))
        .expect("the watch ended");
    assert_eq!(got, mailbox, "the signal names the wrong mailbox");
    tokio::time::sleep(Duration::from_millis(150)).await;
    while let Ok(extra) = signals.try_recv() {
        assert_eq!(extra, mailbox, "a signal for a mailbox that did not change");
    }
}

async fn expect_no_signal(signals: &mut mpsc::Receiver<String>, during: Duration) {
    if let Ok(got) = tokio::time::timeout(during, signals.recv()).await {
        panic!("unexpected signal {got:?}");
    }
}

/// An access token of the app, fetched like any Graph client does.
async fn graph_token(h: &Harness) -> String {
    let token: Json = reqwest::Client::new()
        .post(&h.config.token_url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            serde_urlencoded::to_string([
                ("grant_type", "client_credentials"),
                ("client_id", h.config.client_id.as_str()),
                ("client_secret", h.sim.credentials().password.as_str()),
                ("scope", "https://graph.microsoft.com/.default"),
            ])
            .unwrap(),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    token["access_token"].as_str().unwrap().to_owned()
}

/// `GET /v1.0/subscriptions` as Graph shows them.
async fn graph_subscriptions(h: &Harness) -> Vec<Json> {
    let list: Json = reqwest::Client::new()
        .get(format!("{}/subscriptions", h.config.base_url))
        .bearer_auth(graph_token(h).await)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list["value"].as_array().unwrap().clone()
}

fn stat(h: &Harness, operation: &str) -> u64 {
    h.sim.stats().requests.get(operation).copied().unwrap_or(0)
}

#[tokio::test]
async fn the_receiver_answers_the_validation_handshake_with_the_token() {
    let hook = serve_webhook(None).await;
    let http = reqwest::Client::new();
    let token =
        "Validation: Testing client application reachability for subscription Request-Id: 5f1e&x=1";
    for url in [
        hook.webhook.notification_url(),
        hook.webhook.lifecycle_url(),
    ] {
        let reply = http
            .post(url)
            .query(&[("validationToken", token)])
            .header("content-type", "text/plain; charset=utf-8")
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 200, "{url}");
        let content_type = reply.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(content_type.starts_with("text/plain"), "{content_type}");
        assert_eq!(
            reply.text().await.unwrap(),
            token,
            "the token comes back decoded"
        );
    }
    assert!(hook.webhook.notification_url().ends_with(NOTIFICATION_PATH));
    // Neither a handshake nor a notification batch: refused.
    let reply = http
        .post(hook.webhook.notification_url())
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 400);
}

#[tokio::test]
async fn a_change_in_each_folder_reaches_the_receiver_as_its_mailbox_signal() {
    let h = start().await;
    let hook = serve_webhook(None).await;
    let mut signals = watching(&h, &hook.webhook, &[MAILBOX, OTHER_MAILBOX]).await;

    // What Graph holds: 3 subscriptions per mailbox, all change types, our webhook, each with
    // its own random clientState.
    let subscriptions = graph_subscriptions(&h).await;
    assert_eq!(subscriptions.len(), 6);
    let resources: BTreeSet<String> = subscriptions
        .iter()
        .map(|s| s["resource"].as_str().unwrap().to_owned())
        .collect();
    for mailbox in [MAILBOX, OTHER_MAILBOX] {
        for suffix in ["/contacts", "/events"] {
            assert!(
                resources.contains(&format!("users/{mailbox}{suffix}")),
                "{resources:?}"
            );
        }
        assert!(
            resources
                .iter()
                .any(|r| r.starts_with(&format!("users/{mailbox}/todo/lists/"))
                    && r.ends_with("/tasks")),
            "{resources:?}"
        );
    }
    let states: BTreeSet<&str> = subscriptions
        .iter()
        .map(|s| s["clientState"].as_str().unwrap())
        .collect();
    assert_eq!(states.len(), 6, "one clientState per subscription");
    assert!(states.iter().all(|s| s.len() >= 32));
    for subscription in &subscriptions {
        assert_eq!(subscription["changeType"], "created,updated,deleted");
        assert_eq!(
            subscription["notificationUrl"],
            hook.webhook.notification_url()
        );
        assert_eq!(
            subscription["lifecycleNotificationUrl"],
            hook.webhook.lifecycle_url()
        );
    }
    // Making the first subscriptions is no signal.
    expect_no_signal(&mut signals, Duration::from_millis(300)).await;

    let contact = h
        .sim
        .create_item(MAILBOX, "contacts", json!({"givenName": "Ada"}))
        .unwrap();
    expect_signal(&mut signals, MAILBOX, SIGNAL_WITHIN).await;
    h.sim
        .create_item(
            OTHER_MAILBOX,
            "calendar",
            json!({
                "subject": "Review",
                "start": {"dateTime": "2026-12-01T09:00:00", "timeZone": "UTC"},
                "end": {"dateTime": "2026-12-01T10:00:00", "timeZone": "UTC"},
            }),
        )
        .unwrap();
    expect_signal(&mut signals, OTHER_MAILBOX, SIGNAL_WITHIN).await;
    h.sim
        .create_item(OTHER_MAILBOX, "tasks", json!({"title": "Call back"}))
        .unwrap();
    expect_signal(&mut signals, OTHER_MAILBOX, SIGNAL_WITHIN).await;
    h.sim
        .update_item(MAILBOX, &contact, json!({"surname": "Lovelace"}))
        .unwrap();
    expect_signal(&mut signals, MAILBOX, SIGNAL_WITHIN).await;
    assert!(h.sim.delete_item(MAILBOX, &contact));
    expect_signal(&mut signals, MAILBOX, SIGNAL_WITHIN).await;

    let stats = hook.webhook.stats();
    assert!(stats.accepted >= 5, "{stats:?}");
    assert_eq!(stats.rejected, 0, "{stats:?}");
}

#[tokio::test]
async fn a_notification_with_the_wrong_client_state_is_dropped() {
    let h = start().await;
    let hook = serve_webhook(None).await;
    let mut signals = watching(&h, &hook.webhook, &[MAILBOX]).await;
    let subscription = graph_subscriptions(&h)
        .await
        .into_iter()
        .find(|s| s["resource"].as_str().unwrap().ends_with("/contacts"))
        .unwrap();
    let id = subscription["id"].as_str().unwrap();
    let http = reqwest::Client::new();
    let forged = |client_state: Json, lifecycle: Option<&str>| {
        let mut notification = json!({
            "subscriptionId": id,
            "subscriptionExpirationDateTime": subscription["expirationDateTime"],
            "changeType": "created",
            "resource": format!("Users/{MAILBOX}/Contacts/AAMkForged"),
            "resourceData": {"@odata.type": "#Microsoft.Graph.Contact", "id": "AAMkForged"},
            "clientState": client_state,
            "tenantId": h.sim.tenant_id(),
        });
        if let Some(event) = lifecycle {
            notification["lifecycleEvent"] = json!(event);
        }
        json!({"value": [notification]})
    };
    let ids_before = live_ids(&h);
    let creates_before = stat(&h, "POST subscriptions");

    // The right subscription id, the wrong (or no) clientState; and an unknown subscription.
    for body in [
        forged(json!("guessed-state"), None),
        forged(Json::Null, None),
        forged(json!("guessed-state"), Some("subscriptionRemoved")),
        forged(json!("guessed-state"), Some("missed")),
    ] {
        let reply = http
            .post(hook.webhook.notification_url())
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 202);
    }
    let mut unknown = forged(subscription["clientState"].clone(), None);
    unknown["value"][0]["subscriptionId"] = json!("00000000-0000-0000-0000-000000000000");
    let reply = http
        .post(hook.webhook.lifecycle_url())
        .json(&unknown)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 202);

    expect_no_signal(&mut signals, Duration::from_secs(1)).await;
    let stats = hook.webhook.stats();
    assert_eq!(stats.rejected, 5, "{stats:?}");
    assert_eq!((stats.accepted, stats.lifecycle), (0, 0), "{stats:?}");
    assert_eq!(live_ids(&h), ids_before, "a forged removal changed nothing");
    assert_eq!(stat(&h, "POST subscriptions"), creates_before);

    // The genuine article still gets through.
    h.sim
        .create_item(MAILBOX, "contacts", json!({"givenName": "Grace"}))
        .unwrap();
    expect_signal(&mut signals, MAILBOX, SIGNAL_WITHIN).await;
}

#[tokio::test]
async fn subscriptions_are_renewed_before_they_expire() {
    let h = start().await;
    // The emulator drops a subscription the moment it expires: only renewals keep these alive.
    let lifetime = Duration::from_secs(3);
    let hook = serve_webhook(Some(lifetime)).await;
    let mut signals = watching(&h, &hook.webhook, &[MAILBOX]).await;
    let ids = live_ids(&h);
    let patches = || stat(&h, "PATCH subscriptions/{id}");
    assert_eq!(patches(), 0);

    tokio::time::sleep(lifetime * 2 + Duration::from_millis(500)).await;
    assert_eq!(
        live_ids(&h),
        ids,
        "the same subscriptions live past twice their lifetime"
    );
    assert!(
        patches() >= 6,
        "each renewed at least twice: {} PATCHes",
        patches()
    );
    assert_eq!(
        stat(&h, "POST subscriptions"),
        3,
        "none had to be made again"
    );
    for subscription in graph_subscriptions(&h).await {
        let expires = chrono::DateTime::parse_from_rfc3339(
            subscription["expirationDateTime"].as_str().unwrap(),
        )
        .unwrap();
        assert!(expires > chrono::Utc::now());
    }
    h.sim
        .create_item(MAILBOX, "tasks", json!({"title": "Still listening"}))
        .unwrap();
    expect_signal(&mut signals, MAILBOX, SIGNAL_WITHIN).await;
}

#[tokio::test]
async fn a_removed_subscription_is_made_again_and_the_mailbox_signalled() {
    let h = start().await;
    let hook = serve_webhook(None).await;
    let mut signals = watching(&h, &hook.webhook, &[MAILBOX, OTHER_MAILBOX]).await;
    let removed = graph_subscriptions(&h)
        .await
        .into_iter()
        .find(|s| s["resource"] == format!("users/{MAILBOX}/events"))
        .unwrap();
    let removed_id = removed["id"].as_str().unwrap().to_owned();

    h.sim
        .send_lifecycle_notification(&removed_id, "subscriptionRemoved")
        .unwrap();
    // Changes may have been missed while it was gone: the mailbox is synced.
    expect_signal(&mut signals, MAILBOX, SIGNAL_WITHIN).await;
    eventually("a new events subscription", SIGNAL_WITHIN, || {
        let ids = live_ids(&h);
        ids.len() == 6 && !ids.contains(&removed_id)
    })
    .await;
    assert_eq!(stat(&h, "POST subscriptions"), 7);
    let renewed = graph_subscriptions(&h)
        .await
        .into_iter()
        .find(|s| s["resource"] == format!("users/{MAILBOX}/events"))
        .unwrap();
    assert_ne!(
        renewed["clientState"], removed["clientState"],
        "a new subscription has a new clientState"
    );

    // Events of the mailbox are watched again.
    h.sim
        .create_item(
            MAILBOX,
            "calendar",
            json!({
                "subject": "Back",
                "start": {"dateTime": "2026-12-02T09:00:00", "timeZone": "UTC"},
                "end": {"dateTime": "2026-12-02T10:00:00", "timeZone": "UTC"},
            }),
        )
        .unwrap();
    expect_signal(&mut signals, MAILBOX, SIGNAL_WITHIN).await;
    assert_eq!(hook.webhook.stats().rejected, 0);
}

#[tokio::test]
async fn a_subscription_graph_forgot_is_made_again_at_renewal() {
    let h = start().await;
    let lifetime = Duration::from_secs(2);
    let hook = serve_webhook(Some(lifetime)).await;
    let mut signals = watching(&h, &hook.webhook, &[MAILBOX]).await;
    let gone = graph_subscriptions(&h)
        .await
        .into_iter()
        .find(|s| s["resource"] == format!("users/{MAILBOX}/contacts"))
        .unwrap();
    let gone_id = gone["id"].as_str().unwrap().to_owned();
    // Graph loses it without a lifecycle notification: the renewal's 404 tells.
    let deleted = reqwest::Client::new()
        .delete(format!("{}/subscriptions/{gone_id}", h.config.base_url))
        .bearer_auth(graph_token(&h).await)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);

    expect_signal(&mut signals, MAILBOX, lifetime + SIGNAL_WITHIN).await;
    eventually("a new contacts subscription", SIGNAL_WITHIN, || {
        let ids = live_ids(&h);
        ids.len() == 3 && !ids.contains(&gone_id)
    })
    .await;
    h.sim
        .create_item(MAILBOX, "contacts", json!({"givenName": "Edsger"}))
        .unwrap();
    expect_signal(&mut signals, MAILBOX, SIGNAL_WITHIN).await;
}

#[tokio::test]
async fn a_missed_lifecycle_notification_signals_the_mailbox() {
    let h = start().await;
    let hook = serve_webhook(None).await;
    let mut signals = watching(&h, &hook.webhook, &[MAILBOX, OTHER_MAILBOX]).await;
    let ids = live_ids(&h);
    let tasks = graph_subscriptions(&h)
        .await
        .into_iter()
        .find(|s| {
            let resource = s["resource"].as_str().unwrap();
            resource.starts_with(&format!("users/{OTHER_MAILBOX}/todo/"))
        })
        .unwrap();

    h.sim
        .send_lifecycle_notification(tasks["id"].as_str().unwrap(), "missed")
        .unwrap();
    expect_signal(&mut signals, OTHER_MAILBOX, SIGNAL_WITHIN).await;
    assert_eq!(live_ids(&h), ids, "the subscription stays");
    assert_eq!(hook.webhook.stats().lifecycle, 1);
}

#[tokio::test]
async fn reauthorization_required_reauthorizes_the_subscription() {
    let h = start().await;
    let hook = serve_webhook(None).await;
    let mut signals = watching(&h, &hook.webhook, &[MAILBOX]).await;
    let ids = live_ids(&h);
    let id = ids.iter().next().unwrap().clone();

    h.sim
        .send_lifecycle_notification(&id, "reauthorizationRequired")
        .unwrap();
    eventually("the reauthorize call", SIGNAL_WITHIN, || {
        stat(&h, "POST subscriptions/{id}/reauthorize") == 1
    })
    .await;
    assert_eq!(live_ids(&h), ids);
    expect_no_signal(&mut signals, Duration::from_millis(300)).await;
}

#[tokio::test]
async fn dropping_the_receiver_deletes_the_subscriptions() {
    let h = start().await;
    let hook = serve_webhook(None).await;
    let signals = watching(&h, &hook.webhook, &[MAILBOX, OTHER_MAILBOX]).await;
    // Another watch on the same receiver is left alone.
    let _kept = h
        .client
        .watch(&hook.webhook, vec!["carol@example.com".into()]);
    eventually("carol's subscriptions", Duration::from_secs(10), || {
        live_ids(&h).len() == 9
    })
    .await;

    drop(signals);
    eventually("the deletes", Duration::from_secs(5), || {
        live_ids(&h).len() == 3
    })
    .await;
    assert_eq!(stat(&h, "DELETE subscriptions/{id}"), 6);
    eventually("the receiver to forget them", SIGNAL_WITHIN, || {
        hook.webhook.live_subscriptions() == 3
    })
    .await;
    let left: Vec<Json> = graph_subscriptions(&h).await;
    assert!(
        left.iter().all(|s| s["resource"]
            .as_str()
            .unwrap()
            .contains("carol@example.com")),
        "{left:?}"
    );
}

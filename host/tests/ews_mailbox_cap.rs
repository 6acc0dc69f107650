//! The EWS connector's concurrency caps: at most 4 requests in flight per mailbox by
//! default, mailboxes independent of each other, and the service-account cap over all of them.
//! The EWS emulator runs on loopback behind a gate that counts requests in flight per
//! `X-AnchorMailbox` and holds each one until the expected number is in flight (or a
//! deadline passes), so the peak counts do not depend on timing luck.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use tandem_host::exchange::ews::{DEFAULT_MAILBOX_CONCURRENCY, EwsClient, EwsConfig, Folder};
use tandem_sim::ews::{EwsSim, EwsSimConfig};

/// How long the gate holds a request when the expected number never arrives.
const GATE_DEADLINE: Duration = Duration::from_secs(2);

/// Requests in flight, now and at their peak, per mailbox and overall.
#[derive(Default)]
struct InFlight {
    now: HashMap<String, usize>,
    peak: HashMap<String, usize>,
    total_now: usize,
    total_peak: usize,
}

#[derive(Clone)]
struct Gate {
    counts: Arc<Mutex<InFlight>>,
    /// How many times `release_at` requests were in flight together; a held request goes
    /// on once this passes the value it saw on arrival.
    rounds: Arc<tokio::sync::watch::Sender<usize>>,
    /// Requests are held until this many are in flight overall (or the deadline passes).
    release_at: usize,
}

impl Gate {
    fn new(release_at: usize) -> Self {
        Self {
            counts: Arc::default(),
            rounds: Arc::new(tokio::sync::watch::Sender::new(0)),
            release_at,
        }
    }

    /// Counts a request in; returns the round it waits for the end of.
    fn enter(&self, mailbox: &str) -> usize {
        let mut counts = self.counts.lock().unwrap();
        let now = counts.now.entry(mailbox.to_owned()).or_default();
        *now += 1;
        let now = *now;
        let peak = counts.peak.entry(mailbox.to_owned()).or_default();
        *peak = (*peak).max(now);
        counts.total_now += 1;
        counts.total_peak = counts.total_peak.max(counts.total_now);
        let round = *self.rounds.borrow();
        if counts.total_now >= self.release_at {
            self.rounds.send_replace(round + 1);
        }
        round
    }

    fn leave(&self, mailbox: &str) {
        let mut counts = self.counts.lock().unwrap();
        if let Some(now) = counts.now.get_mut(mailbox) {
            *now -= 1;
        }
        counts.total_now -= 1;
    }

    /// Waits until `release_at` requests were in flight together after `round` began, or
    /// the deadline.
    async fn hold(&self, round: usize) {
        let mut rounds = self.rounds.subscribe();
        let wait = rounds.wait_for(|now| *now > round);
        let _ = tokio::time::timeout(GATE_DEADLINE, wait).await;
    }

    fn peaks(&self) -> (HashMap<String, usize>, usize) {
        let counts = self.counts.lock().unwrap();
        (counts.peak.clone(), counts.total_peak)
    }
}

async fn gated(State(gate): State<Gate>, request: Request, next: Next) -> Response {
    let mailbox = request
        .headers()
        .get("X-AnchorMailbox")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("(none)")
        .to_ascii_lowercase();
    let round = gate.enter(&mailbox);
    gate.hold(round).await;
    let response = next.run(request).await;
    gate.leave(&mailbox);
    response
}

/// The emulator behind `gate` on 127.0.0.1; returns the client config and the server task.
async fn serve(gate: &Gate) -> (EwsConfig, tokio::task::JoinHandle<()>) {
    let sim = EwsSim::new(EwsSimConfig::default()).unwrap();
    let credentials = sim.credentials().clone();
    let app = sim
        .router()
        .layer(middleware::from_fn_with_state(gate.clone(), gated));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    let config = EwsConfig {
        endpoint: format!("http://{address}/EWS/Exchange.asmx"),
        user: credentials.user,
        password: credentials.password,
        auth: Default::default(),
        transport: Default::default(),
    };
    (config, server)
}

/// Sends `per_mailbox` SyncFolderItems calls for each mailbox, all at once.
async fn burst(client: &EwsClient, mailboxes: &[&str], per_mailbox: usize) {
    let mut calls = tokio::task::JoinSet::new();
    for mailbox in mailboxes {
        for _ in 0..per_mailbox {
            let client = client.clone();
            let mailbox = (*mailbox).to_owned();
            calls.spawn(async move {
                client
                    .sync_folder_items(&mailbox, Folder::Contacts, None, 10)
                    .await
                    .map(|_| ())
            });
        }
    }
    while let Some(result) = calls.join_next().await {
        result.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ews_client_caps_requests_per_mailbox_by_default() {
    assert_eq!(DEFAULT_MAILBOX_CONCURRENCY, 4);
    let mailboxes = ["alice@example.com", "bob@example.com"];
    // Held until both mailboxes have their 4 in flight: only reachable when the cap is 4
    // per mailbox and mailboxes do not wait for each other.
    let gate = Gate::new(2 * DEFAULT_MAILBOX_CONCURRENCY);
    let (config, server) = serve(&gate).await;
    let client = EwsClient::new(config).unwrap();
    // Two full rounds per mailbox.
    burst(&client, &mailboxes, 2 * DEFAULT_MAILBOX_CONCURRENCY).await;
    let (peaks, total_peak) = gate.peaks();
    for mailbox in mailboxes {
        assert_eq!(
            peaks.get(mailbox).copied(),
            Some(DEFAULT_MAILBOX_CONCURRENCY),
            "peak requests in flight for {mailbox}: {peaks:?}"
        );
    }
    assert_eq!(total_peak, 2 * DEFAULT_MAILBOX_CONCURRENCY, "{peaks:?}");
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ews_client_account_cap_bounds_all_mailboxes_together() {
    let mailboxes = ["alice@example.com", "bob@example.com", "cy@example.com"];
    let gate = Gate::new(3);
    let (config, server) = serve(&gate).await;
    let client = EwsClient::new(config).unwrap().with_concurrency(3, 2);
    // Six requests, at most two per mailbox: any three of them may be in flight together.
    burst(&client, &mailboxes, 2).await;
    let (peaks, total_peak) = gate.peaks();
    assert_eq!(total_peak, 3, "the account cap: {peaks:?}");
    assert!(
        peaks.values().all(|peak| *peak <= 2),
        "the per-mailbox cap of 2: {peaks:?}"
    );
    server.abort();
}

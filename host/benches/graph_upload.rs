//! Benchmark of a Graph initial upload: 10,000 contacts to one mailbox through the
//! Graph connector against the emulator on loopback, under scaled-down Outlook limits (600
//! requests per 10 s, 4 concurrent). Prints the achieved request rate as a share of what the
//! limits allow, items/s and the emulator's 429 count, paced and — as the baseline from the
//! same run — with client pacing off (only `Retry-After` obeyed).
//! Run: `cargo bench -p tandem-host --bench graph_upload` (`GRAPH_BENCH_CONTACTS=N` for fewer).

mod support;

use std::time::{Duration, Instant};

use anyhow::Context as _;
use support::contact;
use tandem_host::record::Fields;
use tandem_host::exchange::graph::{Folder, GraphClient, GraphConfig, GraphLimits};
use tandem_sim::graph::{GraphSim, GraphSimConfig, ThrottleLimits};

const MAILBOX: &str = "upload@example.com";
const REQUESTS_PER_WINDOW: u32 = 600;
const WINDOW: Duration = Duration::from_secs(10);
const CONCURRENCY: usize = 4;

struct Measured {
    seconds: f64,
    requests: u64,
    refused: u64,
    peak_concurrency: u32,
    items: usize,
}

impl Measured {
    fn print(&self, label: &str) {
        let max_rate = f64::from(REQUESTS_PER_WINDOW) / WINDOW.as_secs_f64();
        let rate = self.requests as f64 / self.seconds;
        // The most requests the sliding window admits in this time (the first window is free).
        let admissible =
            f64::from(REQUESTS_PER_WINDOW) * ((self.seconds / WINDOW.as_secs_f64()).floor() + 1.0);
        println!(
            "{label:>9}: {} items in {:.1} s = {:.1} items/s; {} requests = {:.1} req/s = {:.1}% of {max_rate:.0} req/s \
             ({:.1}% of the {admissible:.0} the window admits in that time); 429s: {}; peak concurrency {}",
            self.items,
            self.seconds,
            self.items as f64 / self.seconds,
            self.requests,
            rate,
            100.0 * rate / max_rate,
            100.0 * self.requests as f64 / admissible,
            self.refused,
            self.peak_concurrency,
        );
    }
}

async fn upload(count: usize, pacing: bool) -> anyhow::Result<Measured> {
    let sim = GraphSim::new(GraphSimConfig {
        throttle: ThrottleLimits {
            requests_per_window: REQUESTS_PER_WINDOW,
            window_ms: WINDOW.as_millis() as u64,
            concurrent_requests: CONCURRENCY as u32,
        },
        ..Default::default()
    })?;
    let server = sim.serve("127.0.0.1:0".parse()?).await?;
    let base = server.base_url();
    let client = GraphClient::new(GraphConfig {
        base_url: format!("{base}/v1.0"),
        token_url: sim.token_url(&base),
        client_id: sim.credentials().user.clone(),
        credential: sim.credentials().password.clone().into(),
        limits: GraphLimits {
            requests_per_window: REQUESTS_PER_WINDOW,
            window: WINDOW,
            concurrent_per_mailbox: CONCURRENCY,
            pacing,
        },
        transport: Default::default(),
    })?
    .with_retry(50, Duration::from_secs(30));
    let items: Vec<(Fields, String)> = (0..count).map(contact).collect();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for part in items.chunks(count.div_ceil(CONCURRENCY).max(1)) {
        let client = client.clone();
        let part = part.to_vec();
        tasks.push(tokio::spawn(async move {
            client
                .create_items_once(MAILBOX, Folder::Contacts, &part)
                .await
        }));
    }
    for task in tasks {
        task.await?.context("upload failed")?;
    }
    let seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        sim.item_count(MAILBOX, "contacts") == count,
        "the mailbox does not hold every contact once"
    );
    let report = sim.throttle_report();
    let stats = sim.stats().requests;
    let requests = stats
        .iter()
        .filter(|(name, _)| name.starts_with("POST contactFolders"))
        .map(|(_, n)| *n)
        .sum::<u64>()
        - report.throttled_requests;
    Ok(Measured {
        seconds,
        requests,
        refused: report.throttled_requests,
        peak_concurrency: report.peak_concurrency,
        items: count,
    })
}

fn main() -> anyhow::Result<()> {
    let count: usize = std::env::var("GRAPH_BENCH_CONTACTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!(
        "Graph initial upload of {count} contacts, limits {REQUESTS_PER_WINDOW} requests / {WINDOW:?}, {CONCURRENCY} concurrent"
    );
    let paced = runtime.block_on(upload(count, true))?;
    paced.print("paced");
    let baseline = runtime.block_on(upload(count, false))?;
    baseline.print("unpaced");
    println!(
        "ratio paced/unpaced: items/s {:.2}x, 429s {} vs {}",
        (paced.items as f64 / paced.seconds) / (baseline.items as f64 / baseline.seconds),
        paced.refused,
        baseline.refused
    );
    Ok(())
}

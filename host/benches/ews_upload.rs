//! Benchmark of an initial upload: 10,000 contacts to one mailbox through the EWS
//! connector against the emulator on loopback. Prints items/s and requests per item, with
//! an unbatched upload (one contact per CreateItem) from the same run as the baseline.
//! Run: `cargo bench -p tandem-host --bench ews_upload`.

mod support;

use std::time::{Duration, Instant};

use anyhow::Context as _;
use support::contact;
use tandem_host::record::Fields;
use tandem_host::exchange::ews::{EwsClient, EwsConfig, Folder};
use tandem_sim::ews::{EwsSim, EwsSimConfig};

const MAILBOX: &str = "upload@example.com";
const CONTACTS: usize = 10_000;
const BASELINE_CONTACTS: usize = 500;
const ROUNDS: usize = 3;

struct Measured {
    items_per_second: f64,
    requests_per_item: f64,
}

/// Uploads `count` contacts in calls of `per_call` items to a fresh emulator.
async fn upload(count: usize, per_call: usize) -> anyhow::Result<Measured> {
    let sim = EwsSim::new(EwsSimConfig::default())?;
    let server = sim.serve("127.0.0.1:0".parse()?).await?;
    let credentials = sim.credentials().clone();
    let client = EwsClient::new(EwsConfig {
        endpoint: format!("{}/EWS/Exchange.asmx", server.base_url()),
        user: credentials.user,
        password: credentials.password,
        auth: Default::default(),
        transport: Default::default(),
    })?;
    let items: Vec<(Fields, String)> = (0..count).map(contact).collect();
    let started = Instant::now();
    for chunk in items.chunks(per_call) {
        client
            .create_items(MAILBOX, Folder::Contacts, chunk)
            .await
            .context("upload failed")?;
    }
    let elapsed = started.elapsed();
    anyhow::ensure!(
        sim.item_count(MAILBOX, "contacts") == count,
        "the emulator holds {} contacts, not {count}",
        sim.item_count(MAILBOX, "contacts")
    );
    let requests: u64 = sim.stats().requests.values().sum();
    server.stop().await;
    Ok(Measured {
        items_per_second: count as f64 / elapsed.max(Duration::from_micros(1)).as_secs_f64(),
        requests_per_item: requests as f64 / count as f64,
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut batched = Vec::new();
        let mut requests = 0.0;
        for _ in 0..ROUNDS {
            let m = upload(CONTACTS, CONTACTS).await?;
            requests = m.requests_per_item;
            batched.push(m.items_per_second);
        }
        let mut single = Vec::new();
        for _ in 0..ROUNDS {
            single.push(upload(BASELINE_CONTACTS, 1).await?.items_per_second);
        }
        let (batched, single) = (median(batched), median(single));
        println!(
            "ews_upload: {CONTACTS} contacts, median of {ROUNDS}: {batched:.0} items/s, {requests:.3} requests/item"
        );
        println!(
            "ews_upload baseline (1 contact per CreateItem, {BASELINE_CONTACTS} contacts): {single:.0} items/s; batched/baseline = {:.1}x",
            batched / single
        );
        anyhow::ensure!(requests <= 0.05, "{requests} requests per item is over 0.05");
        Ok(())
    })
}

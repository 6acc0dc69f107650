//! msgraph-sdk interoperability (item 4): starts the Graph emulator on 127.0.0.1:0,
//! seeds contacts and runs `tests/interop/msgraph_roundtrip.py`, which uses Microsoft's Python
//! Graph SDK with a client-credentials token from the emulator's token endpoint to create,
//! list, delta-read (paged), update and delete contacts. Fails when the script fails.
//! Without python3/msgraph-sdk: fails when `CI` is set, otherwise prints a notice and returns
//! (scripts/setup installs it).
#![allow(clippy::unwrap_used)]

mod peer;

use serde_json::json;
use tandem_sim::graph::{GraphSim, GraphSimConfig};

const MAILBOX: &str = "alice@example.com";
const SEEDED: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msgraph_sdk_reads_contacts_and_delta_pages() {
    if !peer::available("msgraph-sdk", "msgraph, kiota_authentication_azure, azure.core") {
        return;
    }
    let sim = GraphSim::new(GraphSimConfig::default()).unwrap();
    for (given, surname) in [
        ("Grace", "Hopper"),
        ("Alan", "Turing"),
        ("Edsger", "Dijkstra"),
    ] {
        sim.create_item(
            MAILBOX,
            "contacts",
            json!({"givenName": given, "surname": surname}),
        )
        .unwrap();
    }
    let server = sim.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let base = server.base_url();
    let credentials = sim.credentials().clone();
    let mut command = peer::script("msgraph_roundtrip.py");
    command
        .arg(format!("{base}/v1.0"))
        .arg(sim.token_url(&base))
        .arg(&credentials.user)
        .arg(&credentials.password)
        .arg(MAILBOX)
        .arg(SEEDED.to_string())
        .env("NO_PROXY", "127.0.0.1,localhost");
    let stdout = peer::output(command, "msgraph_roundtrip.py").await;
    assert!(stdout.contains("msgraph ok"), "{stdout}");

    // What the SDK sent, as the emulator counted it.
    let stats = sim.stats().requests;
    for (operation, at_least) in [
        ("POST token", 1),
        ("POST contacts", 1),
        ("GET contacts", 1),
        ("GET contactFolders/{id}/contacts/delta", 3),
        ("PATCH contacts/{id}", 1),
        ("DELETE contacts/{id}", 1),
    ] {
        assert!(
            stats.get(operation).is_some_and(|n| *n >= at_least),
            "expected {operation} ≥ {at_least}: {stats:?}"
        );
    }
    assert_eq!(
        stats.get("POST token"),
        Some(&1),
        "the SDK should reuse its token: {stats:?}"
    );
    assert_eq!(
        sim.item_count(MAILBOX, "contacts"),
        SEEDED,
        "one created, one deleted"
    );
    server.stop().await;
}

//! exchangelib interoperability: starts the EWS emulator on 127.0.0.1:0 and runs
//! `tests/interop/exchangelib_roundtrip.py`, which creates, lists, syncs, updates and
//! deletes contacts, calendar items and tasks with Basic credentials and impersonation, and
//! reads a recurring series through `calendar.view()` (occurrences, exceptions, deletions).
//! Fails when the script fails. Without python3/exchangelib: fails when `CI` is set,
//! otherwise prints a notice and returns (scripts/setup installs it).
#![allow(clippy::unwrap_used)]

mod peer;

use std::path::{Path, PathBuf};

use tandem_sim::ews::{EwsSim, EwsSimConfig};

/// Validates the emulator's captured replies with the shared validator, when it is there.
fn validate_replies(capture: &Path) {
    tandem_sim::ews::schema_check::assert_captured_valid(capture, "-response", 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchangelib_round_trips_contacts_calendar_and_tasks() {
    if !peer::available("exchangelib", "exchangelib") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // EWS_INTEROP_CAPTURE=DIR keeps the captured traffic for a look after the run.
    let capture = std::env::var_os("EWS_INTEROP_CAPTURE")
        .map_or_else(|| dir.path().join("capture"), PathBuf::from);
    let sim = EwsSim::new(EwsSimConfig {
        capture_dir: Some(capture.clone()),
        ..Default::default()
    })
    .unwrap();
    let server = sim.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let credentials = sim.credentials().clone();
    let mut command = peer::script("exchangelib_roundtrip.py");
    command
        .arg(format!("{}/EWS/Exchange.asmx", server.base_url()))
        .arg(&credentials.user)
        .arg(&credentials.password)
        .arg("alice@example.com");
    let stdout = peer::output(command, "exchangelib_roundtrip.py").await;
    assert!(stdout.contains("all folders ok"), "{stdout}");
    assert!(stdout.contains("recurring: ok"), "{stdout}");
    let stats = sim.stats().requests;
    for operation in [
        "CreateItem",
        "FindItem",
        "SyncFolderItems",
        "UpdateItem",
        "GetItem",
        "DeleteItem",
    ] {
        assert!(
            stats.get(operation).is_some_and(|n| *n > 0),
            "exchangelib sent no {operation}: {stats:?}"
        );
    }
    assert_eq!(sim.item_count("alice@example.com", "contacts"), 0);
    assert_eq!(sim.item_count("alice@example.com", "calendar"), 0);
    validate_replies(&capture);
    server.stop().await;
}

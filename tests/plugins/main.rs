//! Plugin platform tests through the outside interfaces: the `tandem plugin` commands (the
//! built binary) and hot reload of a running demo stack over HTTP.

#[allow(dead_code)]
#[path = "../e2e/harness.rs"]
mod harness;
mod python;
mod defaults;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use harness::{Harness, metric, xml_text};
use serde_json::{Value, json};
use tandem_host::package::Package;
use tandem_host::plugin::builtin;

const MANIFEST: &str = r#"name = "contact-mapping"
version = "2.0.0"
kind = "mapper"
domains = ["contacts"]
api = "0.2.0"
description = "Surname in capitals"
"#;

fn tandem(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(args)
        .output()
        .expect("the tandem binary runs")
}

fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "expected success, got {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn refused(output: &Output) -> String {
    assert!(!output.status.success(), "expected a refusal: {}", String::from_utf8_lossy(&output.stdout));
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn s(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

/// Writes the manifest and the upper-case-surname component, returns their paths.
fn sources(dir: &Path, manifest: &str) -> (PathBuf, PathBuf) {
    let manifest_path = dir.join("tandem-plugin.toml");
    let component = dir.join("component.wasm");
    std::fs::write(&manifest_path, manifest).expect("write manifest");
    std::fs::write(&component, builtin::TEST_CONTACT_MAPPING_V2).expect("write component");
    (manifest_path, component)
}

#[test]
fn pack_sign_verify_install_list_with_a_trust_list() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (manifest, component) = sources(d, MANIFEST);
    let pkg = d.join("cm.tpkg");

    let out = ok(&tandem(&["plugin", "pack", "--manifest", s(&manifest), "--component", s(&component), "-o", s(&pkg)]));
    assert!(out.contains("packed"), "{out}");
    let out = ok(&tandem(&["plugin", "verify", s(&pkg)]));
    assert!(out.contains("contact-mapping 2.0.0 (mapper)") && out.contains("unsigned"), "{out}");

    ok(&tandem(&["plugin", "keygen", "-o", s(&d.join("ops"))]));
    ok(&tandem(&["plugin", "keygen", "-o", s(&d.join("stranger"))]));
    let trust = d.join("trusted");
    std::fs::copy(d.join("ops.pub"), &trust).expect("trust list");

    // Unsigned is refused once a trust list is set.
    let err = refused(&tandem(&["plugin", "verify", s(&pkg), "--trust", s(&trust)]));
    assert!(err.contains("is not signed"), "{err}");
    let plugins = d.join("plugins");
    let err = refused(&tandem(&["plugin", "install", s(&pkg), "--dir", s(&plugins), "--trust", s(&trust)]));
    assert!(err.contains("is not signed"), "{err}");
    assert!(!plugins.join("contact-mapping-2.0.0.tpkg").exists(), "nothing installed");

    // Signed by a stranger: refused, naming the key.
    let other = d.join("other.tpkg");
    std::fs::copy(&pkg, &other).expect("copy");
    ok(&tandem(&["plugin", "sign", s(&other), "--key", s(&d.join("stranger.key"))]));
    let err = refused(&tandem(&["plugin", "verify", s(&other), "--trust", s(&trust)]));
    assert!(err.contains("not on this deployment's trust list"), "{err}");

    // Signed by a trusted key: accepted, installed, listed.
    ok(&tandem(&["plugin", "sign", s(&pkg), "--key", s(&d.join("ops.key"))]));
    let out = ok(&tandem(&["plugin", "verify", s(&pkg), "--trust", s(&trust)]));
    assert!(out.contains("signed by"), "{out}");
    let out = ok(&tandem(&["plugin", "install", s(&pkg), "--dir", s(&plugins), "--trust", s(&trust)]));
    assert!(plugins.join("contact-mapping-2.0.0.tpkg").is_file(), "{out}");

    // Tampered after signing: refused even without a trust list.
    let mut bytes = std::fs::read(&pkg).expect("read");
    let at = bytes.len() - 200;
    bytes[at] ^= 0x01;
    let tampered = plugins.join("tampered.tpkg");
    std::fs::write(&tampered, &bytes).expect("write");
    let err = refused(&tandem(&["plugin", "verify", s(&tampered)]));
    assert!(err.contains("signature does not match"), "{err}");

    let out = ok(&tandem(&["plugin", "list", "--dir", s(&plugins), "--trust", s(&trust)]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with("contact-mapping-2.0.0.tpkg\tcontact-mapping\t2.0.0") && lines[0].contains("ok, signed"), "{out}");
    assert!(lines[1].starts_with("tampered.tpkg") && lines[1].contains("refused"), "{out}");
}

#[test]
fn an_incompatible_api_version_is_refused_naming_both_versions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (manifest, component) = sources(dir.path(), &MANIFEST.replace("api = \"0.2.0\"", "api = \"0.3.0\""));
    let err = refused(&tandem(&["plugin", "pack", "--manifest", s(&manifest), "--component", s(&component)]));
    assert!(err.contains("requires plugin API 0.3.0") && err.contains("implements 0.2.0"), "{err}");
    assert!(err.contains("0.1.x"), "the error lists the older versions still loaded: {err}");

    // A plugin built for the older 0.1.x is still accepted.
    let (manifest, component) = sources(dir.path(), &MANIFEST.replace("api = \"0.2.0\"", "api = \"0.1.0\""));
    let pkg = dir.path().join("ok.tpkg");
    ok(&tandem(&["plugin", "pack", "--manifest", s(&manifest), "--component", s(&component), "-o", s(&pkg)]));
    ok(&tandem(&["plugin", "install", s(&pkg), "--dir", s(&dir.path().join("plugins"))]));
}

#[test]
fn a_component_of_the_wrong_kind_is_not_installed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (manifest, component) = sources(dir.path(), &MANIFEST.replace("kind = \"mapper\"", "kind = \"filter\""));
    let pkg = dir.path().join("f.tpkg");
    ok(&tandem(&["plugin", "pack", "--manifest", s(&manifest), "--component", s(&component), "-o", s(&pkg)]));
    let err = refused(&tandem(&["plugin", "install", s(&pkg), "--dir", s(&dir.path().join("plugins"))]));
    assert!(err.contains("is not a filter plugin"), "{err}");
}

#[test]
fn new_scaffolds_a_crate_with_a_valid_manifest() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, kind, needle) in [("my-map", "mapper", "export_mapper!"), ("my-filter", "filter", "export_filter!"), ("my-policy", "conflict-policy", "export_conflict_policy!")] {
        ok(&tandem(&["plugin", "new", name, "--kind", kind, "--dir", s(dir.path())]));
        let folder = dir.path().join(name);
        let manifest = std::fs::read_to_string(folder.join("tandem-plugin.toml")).expect("manifest");
        let parsed = tandem_host::package::Manifest::parse(&manifest).expect("valid manifest");
        assert_eq!(parsed.name, name);
        assert_eq!(parsed.kind.to_string(), kind);
        let lib = std::fs::read_to_string(folder.join("src/lib.rs")).expect("lib.rs");
        assert!(lib.contains(needle), "{lib}");
        assert!(std::fs::read_to_string(folder.join("Cargo.toml")).expect("Cargo.toml").contains("cdylib"));
    }
    let err = refused(&tandem(&["plugin", "new", "my-map", "--dir", s(dir.path())]));
    assert!(err.contains("already exists"), "{err}");
}

/// Drops `package` into `dir` the way an operator would: write elsewhere, then rename.
fn drop_package(package: &Package, dir: &Path, file: &str) {
    package.write(&dir.join(file)).expect("package written");
}

async fn wait_for_status(h: &Harness, source: &str, status: &str) -> anyhow::Result<Value> {
    let started = Instant::now();
    loop {
        let list = h.admin_get("/api/v1/plugins").await?;
        if let Some(row) = list.as_array().into_iter().flatten().find(|r| r["source"] == source && r["status"] == status) {
            eprintln!("{source} {status} after {:?}", started.elapsed());
            return Ok(row.clone());
        }
        // The product goal is 2 s (a 500 ms poll plus a cold compile). The bound asserted
        // here is wider because a loaded 2-core CI machine compiles slower; the time taken is
        // printed so a regression shows.
        ensure!(started.elapsed() < Duration::from_secs(10), "{source} not {status} within 10 s: {list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn exchange_surname(h: &Harness, mailbox: &str) -> anyhow::Result<Vec<String>> {
    let mut surnames = Vec::new();
    for id in h.ews_find_contacts(mailbox).await? {
        let item = h.ews_get_contact(mailbox, &id).await?;
        surnames.push(xml_text(&item, "Surname").context("contact without Surname")?);
    }
    surnames.sort();
    Ok(surnames)
}

/// A running demo gets a second version of the contact mapping dropped into its plugins
/// directory; the next synced record shows the new mapping, with no restart. A broken and an
/// incompatible package dropped afterwards are refused and the new version stays live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_swaps_the_contact_mapping_of_a_running_demo() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let plugins_dir = h.demo.service.state.engine.plugins().plugins_dir().context("plugins dir")?.to_path_buf();
    let mailbox = "reload@example.com";
    h.admin_post("/api/v1/users", json!({"login": "RELOAD", "mailbox": mailbox}), 201).await?;

    let first = h.siebel_insert(json!({"First Name": "Ada", "Last Name": "Lovelace"})).await?;
    h.admin_post("/api/v1/users/RELOAD/sync-list", json!({"siebel_id": first}), 201).await?;
    let report = h.sync("RELOAD").await?;
    assert_eq!(report["exchange"]["created"], 1, "{report}");
    assert_eq!(exchange_surname(&h, mailbox).await?, ["Lovelace"]);

    // Version 2 dropped in: live within 2 s, no restart.
    let v2 = Package::new(MANIFEST.into(), builtin::TEST_CONTACT_MAPPING_V2.to_vec())?;
    drop_package(&v2, &plugins_dir, "contact-mapping-2.0.0.tpkg");
    let row = wait_for_status(&h, "contact-mapping-2.0.0.tpkg", "active").await?;
    assert_eq!(row["version"], "2.0.0", "{row}");

    let second = h.siebel_insert(json!({"First Name": "Grace", "Last Name": "Hopper"})).await?;
    h.admin_post("/api/v1/users/RELOAD/sync-list", json!({"siebel_id": second}), 201).await?;
    let report = h.sync("RELOAD").await?;
    assert_eq!(report["status"], "ok", "{report}");
    let surnames = exchange_surname(&h, mailbox).await?;
    assert!(surnames.contains(&"HOPPER".to_owned()), "the new mapping maps the next record: {surnames:?}");

    // A broken package and one for an incompatible API: refused with reasons, v2 stays live.
    std::fs::write(plugins_dir.join("broken.tpkg"), b"TANDEMP1 not really")?;
    let v3 = Package::new(
        MANIFEST.replace("2.0.0", "3.0.0").replace("api = \"0.2.0\"", "api = \"0.3.0\""),
        builtin::CONTACT_MAPPING.to_vec(),
    )?;
    drop_package(&v3, &plugins_dir, "contact-mapping-3.0.0.tpkg");
    let broken = wait_for_status(&h, "broken.tpkg", "refused").await?;
    assert!(broken["reason"].as_str().unwrap_or("").contains("not a valid Tandem plugin package"), "{broken}");
    let incompatible = wait_for_status(&h, "contact-mapping-3.0.0.tpkg", "refused").await?;
    let reason = incompatible["reason"].as_str().unwrap_or("");
    assert!(reason.contains("0.3.0") && reason.contains("0.2.0"), "{incompatible}");

    // POST reload answers with the list; v2 is still what serves contacts.
    let list = h.admin_post("/api/v1/plugins/reload", json!({}), 200).await?;
    let active: Vec<&Value> = list
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["status"] == "active" && r["name"] == "contact-mapping")
        .collect();
    assert_eq!(active.len(), 1, "{list}");
    assert_eq!(active[0]["version"], "2.0.0", "{list}");
    assert!(
        list.as_array().into_iter().flatten().any(|r| r["name"] == "activity-mapping" && r["status"] == "active"),
        "the built-ins of other domains stay live: {list}"
    );

    // Removing v2 falls back to the built-in mapping.
    std::fs::remove_file(plugins_dir.join("contact-mapping-2.0.0.tpkg"))?;
    let started = Instant::now();
    loop {
        let list = h.admin_get("/api/v1/plugins").await?;
        let builtin_back = list.as_array().into_iter().flatten().any(|r| {
            r["name"] == "contact-mapping" && r["source"] == "builtin" && r["status"] == "active"
        });
        if builtin_back {
            break;
        }
        ensure!(started.elapsed() < Duration::from_secs(10), "built-in not back within 10 s: {list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    h.stop().await;
    Ok(())
}

/// A run maps its Siebel records ahead in batches: 150 new contacts take two `to_exchange`
/// calls of the mapping plugin (100 + 50), not 150, and all 150 reach Exchange mapped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_maps_its_siebel_records_in_batches_of_a_hundred() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let plugins_dir = h.demo.service.state.engine.plugins().plugins_dir().context("plugins dir")?.to_path_buf();
    // Its own name, so that no other test's calls count in its series.
    let manifest = MANIFEST.replace("contact-mapping", "batch-counted-mapping");
    drop_package(&Package::new(manifest, builtin::TEST_CONTACT_MAPPING_V2.to_vec())?, &plugins_dir, "batch.tpkg");
    let list = h.admin_post("/api/v1/plugins/reload", json!({}), 200).await?;
    ensure!(list.as_array().into_iter().flatten().any(|r| r["source"] == "batch.tpkg" && r["status"] == "active"), "{list}");

    h.admin_post("/api/v1/users", json!({"login": "BATCH", "mailbox": "batch@example.com"}), 201).await?;
    for n in 0..150 {
        let id = h.siebel_insert(json!({"First Name": "Ada", "Last Name": format!("Batch{n:03}")})).await?;
        h.admin_post("/api/v1/users/BATCH/sync-list", json!({"siebel_id": id}), 201).await?;
    }
    let series = "tandem_plugin_call_seconds_count{plugin=\"batch-counted-mapping\",function=\"to_exchange\"}";
    let before = metric(&h.scrape_metrics().await?, series);
    let report = h.sync("BATCH").await?;
    assert_eq!(report["exchange"]["created"], 150, "{report}");
    let calls = metric(&h.scrape_metrics().await?, series) - before;
    // Two for this run; the scheduler may run the new user in the background meanwhile
    // (two calls at most each). One call per record would be 150.
    assert!((2.0..=6.0).contains(&calls), "{calls} to_exchange calls for 150 records");
    assert_eq!(h.demo.ews_sim.item_count("batch@example.com", "contacts"), 150);
    // (FindItem's first page: 100 of them.)
    let surnames = exchange_surname(&h, "batch@example.com").await?;
    assert!(surnames.iter().all(|s| s.starts_with("BATCH")), "the v2 mapping (capitals) mapped them: {surnames:?}");
    h.stop().await;
    Ok(())
}

/// The contact mapping is replaced by a hostile one: one user's records make it loop, eat
/// memory and trap. Those records fail alone (quarantined with the reason, nothing written
/// or deleted on either side) while the same user's clean record and the other users'
/// syncs, running at the same time, complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_mapping_fails_only_its_records_and_other_users_keep_syncing() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let plugins_dir = h.demo.service.state.engine.plugins().plugins_dir().context("plugins dir")?.to_path_buf();
    // A deadline well above the memory bomb's time to reach the cap, so that on a loaded
    // machine the bomb still ends as out of memory, not as a timeout.
    let manifest = MANIFEST.replace("2.0.0", "9.0.0").replace("Surname in capitals", "hostile")
        + "[limits]\ncall_deadline_ms = 1000\n";
    drop_package(&Package::new(manifest, builtin::TEST_HOSTILE.to_vec())?, &plugins_dir, "hostile.tpkg");
    let list = h.admin_post("/api/v1/plugins/reload", json!({}), 200).await?;
    ensure!(list.as_array().into_iter().flatten().any(|r| r["source"] == "hostile.tpkg" && r["status"] == "active"), "{list}");

    let users = [("VICTIM", "victim@example.com"), ("CALM1", "calm1@example.com"), ("CALM2", "calm2@example.com")];
    for (login, mailbox) in users {
        h.admin_post("/api/v1/users", json!({"login": login, "mailbox": mailbox}), 201).await?;
    }
    let mut surnames = vec![("VICTIM", "hostile-loop"), ("VICTIM", "hostile-alloc"), ("VICTIM", "hostile-trap"), ("VICTIM", "Clean")];
    surnames.extend([("CALM1", "Hopper"), ("CALM1", "Lamarr"), ("CALM2", "Noether")]);
    for (login, surname) in &surnames {
        let id = h.siebel_insert(json!({"First Name": "Test", "Last Name": surname})).await?;
        h.admin_post(&format!("/api/v1/users/{login}/sync-list"), json!({"siebel_id": id}), 201).await?;
    }
    let siebel_before = h.siebel_count().await?;

    let started = Instant::now();
    let (victim, calm1, calm2) = tokio::join!(h.sync("VICTIM"), h.sync("CALM1"), h.sync("CALM2"));
    let (victim, calm1, calm2) = (victim?, calm1?, calm2?);
    eprintln!("three concurrent syncs with a hostile plugin took {:?}", started.elapsed());
    for (report, created) in [(&calm1, 2), (&calm2, 1)] {
        assert_eq!(report["status"], "ok", "{report}");
        assert_eq!(report["exchange"]["created"], created, "{report}");
        assert_eq!(report["errors"].as_array().map(Vec::len), Some(0), "{report}");
    }
    assert_eq!(exchange_surname(&h, "calm1@example.com").await?, ["Hopper", "Lamarr"]);
    assert_eq!(exchange_surname(&h, "calm2@example.com").await?, ["Noether"]);

    // The victim's clean record went through; the three poisoned ones are quarantined.
    assert_eq!(victim["exchange"]["created"], 1, "{victim}");
    assert_eq!(exchange_surname(&h, "victim@example.com").await?, ["Clean"]);
    let quarantine = h.admin_get("/api/v1/users/VICTIM/quarantine").await?;
    let reasons: Vec<&str> = quarantine.as_array().into_iter().flatten().filter_map(|r| r["reason"].as_str()).collect();
    assert_eq!(reasons.len(), 3, "{quarantine}");
    for needle in ["deadline", "out of memory", "trapped"] {
        assert!(reasons.iter().any(|r| r.contains(needle)), "no quarantine reason mentions {needle:?}: {reasons:?}");
    }

    // Retried on the next run: still failing, still nothing deleted or written for them.
    let again = h.sync("VICTIM").await?;
    assert_eq!(again["exchange"]["created"], 0, "{again}");
    assert_eq!(again["exchange"]["deleted"], 0, "{again}");
    assert_eq!(h.siebel_count().await?, siebel_before, "Siebel lost or gained records");
    assert_eq!(exchange_surname(&h, "victim@example.com").await?, ["Clean"]);
    h.stop().await;
    Ok(())
}

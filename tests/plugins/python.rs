//! A mapping plugin written in Python (examples/python-mapping, built with componentize-py)
//! is built, packed and run through wasm: plugins need not be written in Rust.
//! The Python mapping is the built-in business-contact mapping, so every record is
//! also checked against the native Rust one. Timings are printed, never asserted.
//!
//! The example is built against the frozen WIT 0.1.0 (`wit/since_v0.1.0`, one typed record
//! per call), so this test also proves that a 0.1.0 component keeps loading and mapping in
//! the 0.2 host, through the host's adapter; so do its batch calls.
//!
//! Needs `componentize-py` (installed by scripts/setup). Without it the test is skipped with a
//! message on a developer machine, and fails under CI (`CI` set).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tandem_host::package::{Manifest, Package};
use tandem_host::plugin::{CallContext, Limits, PluginCallError, PluginError, PluginRuntime};
use tandem_host::record::{Fields, Value};

use super::{ok, s, tandem};

/// The example plugin's folder (app.py, tandem-plugin.toml).
fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/python-mapping")
}

/// The WIT the example is built against: the frozen 0.1.0.
fn wit_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit/since_v0.1.0")
}

/// How to run componentize-py and its version: the `componentize-py` script, else the
/// module through `python3` (a pip install whose scripts folder is not on PATH).
fn componentize_py() -> Option<(Vec<OsString>, String)> {
    let candidates: [&[&str]; 2] = [
        &["componentize-py"],
        &[
            "python3",
            "-c",
            "import sys, componentize_py; sys.argv[0] = 'componentize-py'; componentize_py.script()",
        ],
    ];
    candidates.iter().find_map(|command| {
        let output = Command::new(command[0])
            .args(&command[1..])
            .arg("--version")
            .output()
            .ok()?;
        let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        (output.status.success() && version.starts_with("componentize-py"))
            .then(|| (command.iter().map(OsString::from).collect(), version))
    })
}

/// Builds the example into `out` from a copy of app.py (componentize-py's embedded Python
/// writes `__pycache__` next to the app; the source tree stays clean).
fn build_component(tool: &[OsString], out: &Path) -> Vec<u8> {
    std::fs::copy(example_dir().join("app.py"), out.join("app.py")).expect("copy app.py");
    let wasm = out.join("mapping.wasm");
    let output = Command::new(&tool[0])
        .args(&tool[1..])
        .arg("-d")
        .arg(wit_dir())
        .args(["-w", "mapper", "componentize", "app", "-o"])
        .arg(&wasm)
        .current_dir(out)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("componentize-py runs");
    assert!(
        output.status.success(),
        "componentize-py failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read(&wasm).expect("componentize-py wrote the component")
}

/// The manifest's `[limits]` as the host applies them (defaults where absent).
fn manifest_limits(manifest: &Manifest) -> Limits {
    let defaults = Limits::default();
    Limits {
        call_deadline: manifest
            .limits
            .call_deadline_ms
            .map_or(defaults.call_deadline, Duration::from_millis),
        memory_bytes: manifest
            .limits
            .memory_mib
            .map_or(defaults.memory_bytes, |mib| {
                usize::try_from(mib).expect("memory_mib fits") << 20
            }),
    }
}

fn record(pairs: &[(&str, Value)]) -> Fields {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), value.clone()))
        .collect()
}

fn text(t: &str) -> Value {
    Value::from(t)
}

/// A host record of text and null values as a plugin-API record (for the native mapping).
fn to_native(fields: &Fields) -> tandem_plugin_api::Fields {
    fields
        .iter()
        .map(|(name, value)| {
            let value = match value {
                Value::Text(t) => tandem_plugin_api::Value::text(t.as_str()),
                Value::Null => tandem_plugin_api::Value::Null,
                other => panic!("the test records hold text and null only, not {other:?}"),
            };
            (name, value)
        })
        .collect()
}

/// The native mapping's output (text, null, text lists) as a host record.
fn from_native(fields: tandem_plugin_api::Fields) -> Fields {
    use tandem_plugin_api::{Scalar, Value as V};
    fields
        .into_iter()
        .map(|(name, value)| {
            let value = match value {
                V::Text(t) => Value::Text(t),
                V::Null => Value::Null,
                V::List(items) => Value::List(
                    items
                        .into_iter()
                        .map(|item| match item {
                            Scalar::Text(t) => Value::Text(t),
                            other => panic!("the contact mapping yields text lists, not {other:?}"),
                        })
                        .collect(),
                ),
                other => panic!("the contact mapping yields text, null and lists, not {other:?}"),
            };
            (name, value)
        })
        .collect()
}

/// 12 mapped Siebel fields plus 13 the mapping ignores: the benchmark's 25-field contact.
fn full_contact() -> Fields {
    let mut contact = record(&[
        ("First Name", text("Ada")),
        ("Last Name", text("Lovelace")),
        ("Middle Name", text("King")),
        ("Email Address", text("ada@example.com")),
        ("Work Phone #", text("+44 20 7946 0001")),
        ("Cellular Phone #", text("+44 7700 900001")),
        ("Home Phone #", text("+44 20 7946 0002")),
        ("Fax Phone #", text("+44 20 7946 0003")),
        ("Job Title", text("Analyst")),
        ("Assistant", text("Charles Babbage")),
        ("Assistant Phone #", text("+44 20 7946 0004")),
        ("Primary Account Name", text("Analytical Engines Ltd")),
    ]);
    for i in 0..13 {
        contact.insert(
            format!("Extra {i:02}"),
            Value::from(format!("ignored value {i}")),
        );
    }
    contact
}

#[test]
fn a_python_mapping_plugin_builds_packs_and_maps_contacts_both_ways_through_wasm() {
    let Some((tool, version)) = componentize_py() else {
        if std::env::var_os("CI").is_some() {
            panic!("componentize-py is not installed: scripts/setup installs the pinned version");
        }
        eprintln!(
            "SKIPPED: componentize-py is not installed (run scripts/setup); under CI this test fails"
        );
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    let wasm = build_component(&tool, work.path());
    eprintln!(
        "{version}: component {} bytes, built in {:.1?}",
        wasm.len(),
        started.elapsed()
    );

    let manifest_text = std::fs::read_to_string(example_dir().join("tandem-plugin.toml"))
        .expect("the example's manifest");
    let manifest = Manifest::parse(&manifest_text).expect("the example's manifest is valid");
    let limits = manifest_limits(&manifest);

    // A compile cache, so the second and third loads below measure a warm load and don't
    // compile the large component again.
    let cache = tempfile::tempdir().expect("tempdir");
    let runtime = PluginRuntime::new(Some(cache.path().to_path_buf())).expect("the engine starts");
    let started = Instant::now();
    let plugin = runtime
        .load_mapper(&manifest.name, &wasm, limits, manifest.config.clone())
        .expect("the Python component loads as a mapper");
    let compiled = started.elapsed();
    let started = Instant::now();
    let mut instance = plugin
        .instantiate()
        .expect("instantiates within the manifest's limits");
    let instantiated = started.elapsed();
    let ctx = CallContext {
        domain: "contacts".into(),
        user: "SADMIN".into(),
    };

    // Siebel -> Exchange: every pair, the category and FileAs "Last, First".
    let full = full_contact();
    let started = Instant::now();
    let exchange = instance
        .to_exchange(&ctx, &full)
        .expect("maps a full contact");
    let first_call = started.elapsed();
    let native_pairs = contact_mapping::FIELD_PAIRS;
    for (siebel_name, exchange_name) in native_pairs {
        assert_eq!(
            exchange.get(*exchange_name),
            full.get(*siebel_name),
            "{exchange_name} in {exchange:?}"
        );
    }
    assert_eq!(
        exchange.get("Categories"),
        Some(&Value::List(vec![text("Siebel Contact")])),
        "{exchange:?}"
    );
    assert_eq!(
        exchange.get("FileAs"),
        Some(&text("Lovelace, Ada")),
        "{exchange:?}"
    );
    assert_eq!(
        exchange.len(),
        native_pairs.len() + 2,
        "ignored fields stay out: {exchange:?}"
    );

    // Blank and missing fields become null (so clears propagate); FileAs uses what is there.
    let sparse = record(&[
        ("Last Name", text("Hopper")),
        ("Job Title", text("")),
        ("Middle Name", Value::Null),
    ]);
    let sparse_exchange = instance
        .to_exchange(&ctx, &sparse)
        .expect("maps a sparse contact");
    for name in ["JobTitle", "MiddleName", "GivenName", "EmailAddress1"] {
        assert_eq!(
            sparse_exchange.get(name),
            Some(&Value::Null),
            "{name} in {sparse_exchange:?}"
        );
    }
    assert_eq!(sparse_exchange.get("FileAs"), Some(&text("Hopper")));
    let first_only = record(&[("First Name", text("Grace")), ("Last Name", text(""))]);
    let first_only_exchange = instance.to_exchange(&ctx, &first_only).expect("maps");
    assert_eq!(first_only_exchange.get("FileAs"), Some(&text("Grace")));
    assert_eq!(first_only_exchange.get("Surname"), Some(&Value::Null));
    let empty_exchange = instance
        .to_exchange(&ctx, &Fields::new())
        .expect("maps an empty record");
    assert_eq!(empty_exchange.get("FileAs"), Some(&Value::Null));

    // Exchange -> Siebel: the inverse over the pairs; Categories, FileAs and unknown fields
    // are ignored, a cleared field comes back null.
    let mut edited = exchange.clone();
    edited.insert("JobTitle".into(), text("Countess"));
    edited.insert("MobilePhone".into(), text(""));
    edited.insert("Nickname".into(), text("Ada"));
    let siebel = instance
        .to_siebel(&ctx, &edited)
        .expect("maps an Exchange contact back");
    assert_eq!(
        siebel.len(),
        native_pairs.len(),
        "only the pairs come back: {siebel:?}"
    );
    assert_eq!(siebel.get("Job Title"), Some(&text("Countess")));
    assert_eq!(siebel.get("Cellular Phone #"), Some(&Value::Null));
    assert_eq!(siebel.get("First Name"), Some(&text("Ada")));
    assert_eq!(
        siebel.get("Primary Account Name"),
        Some(&text("Analytical Engines Ltd"))
    );
    let sparse_back = instance
        .to_siebel(&ctx, &sparse_exchange)
        .expect("maps back");
    assert_eq!(sparse_back.get("Last Name"), Some(&text("Hopper")));
    assert_eq!(sparse_back.get("Job Title"), Some(&Value::Null));

    // A Python `raise Err(PluginError_Other(...))` arrives as the WIT plugin-error; the
    // instance is kept and maps the next record.
    let calendar = CallContext {
        domain: "calendar".into(),
        ..ctx.clone()
    };
    match instance.to_exchange(&calendar, &sparse) {
        Err(PluginCallError::Plugin {
            error: PluginError::Other(message),
            ..
        }) => {
            assert!(message.contains("not calendar"), "{message}")
        }
        other => panic!("expected a plugin error for the calendar domain, got {other:?}"),
    }
    assert_eq!(
        instance.to_exchange(&ctx, &sparse).expect("still maps"),
        sparse_exchange
    );

    // Record for record the same mapping as the built-in Rust plugin.
    for (input, python) in [
        (&full, &exchange),
        (&sparse, &sparse_exchange),
        (&first_only, &first_only_exchange),
    ] {
        let native = from_native(contact_mapping::siebel_to_exchange(&to_native(input)));
        assert_eq!(python, &native, "to-exchange of {input:?}");
    }
    for input in [&edited, &sparse_exchange] {
        let mut textual = input.clone();
        textual.remove("Categories");
        let native = from_native(contact_mapping::exchange_to_siebel(&to_native(&textual)));
        assert_eq!(
            instance.to_siebel(&ctx, input).expect("maps back"),
            native,
            "to-siebel of {input:?}"
        );
    }

    // Batch calls on a 0.1.0 component: the host sends the records one by one, answers in
    // order, a refused record fails alone.
    let answers = instance
        .to_exchange_batch(&ctx, [&full, &sparse, &first_only])
        .expect("the batch runs");
    assert_eq!(answers.len(), 3);
    for (answer, expected) in answers.iter().zip([&exchange, &sparse_exchange, &first_only_exchange]) {
        assert_eq!(answer.as_ref().expect("mapped"), expected);
    }
    let refused = instance
        .to_siebel_batch(&calendar, [&edited])
        .expect("the batch runs");
    assert!(
        matches!(&refused[0], Err(PluginCallError::Plugin { error: PluginError::Other(_), .. })),
        "{refused:?}"
    );

    // Per-record cost on a warm instance, both directions, all within the manifest's limits.
    const ROUNDS: u32 = 200;
    let started = Instant::now();
    for _ in 0..ROUNDS {
        let mapped = instance.to_exchange(&ctx, &full).expect("maps");
        instance.to_siebel(&ctx, &mapped).expect("maps back");
    }
    let per_call = started.elapsed() / (2 * ROUNDS);

    // The host's configuration reaches the Python code (warm load from the compile cache).
    let mut config = manifest.config.clone();
    config.insert("category".into(), "Key Account".into());
    let started = Instant::now();
    let configured = runtime
        .load_mapper(&manifest.name, &wasm, limits, config)
        .expect("loads from the cache");
    let warm_load = started.elapsed();
    let mapped = configured
        .instantiate()
        .and_then(|mut i| i.to_exchange(&ctx, &sparse))
        .expect("maps");
    assert_eq!(
        mapped.get("Categories"),
        Some(&Value::List(vec![text("Key Account")]))
    );

    // The memory cap binds: the interpreter's initial heap (about 12 MiB) does not fit in 8.
    let tight = Limits {
        memory_bytes: 8 << 20,
        ..limits
    };
    let starved = runtime
        .load_mapper(&manifest.name, &wasm, tight, BTreeMap::new())
        .expect("loads from the cache");
    match starved
        .instantiate()
        .and_then(|mut i| i.to_exchange(&ctx, &sparse))
    {
        Err(PluginCallError::OutOfMemory { limit, .. }) => assert_eq!(limit, 8 << 20),
        other => panic!("expected out-of-memory under an 8 MiB cap, got {other:?}"),
    }

    eprintln!(
        "python mapping: cold compile {compiled:.1?}, warm load {warm_load:.1?}, instantiate \
         {instantiated:.1?}, first call {first_call:.1?}, then {per_call:.1?} per call \
         ({ROUNDS} round trips of a 25-field contact, to-exchange and back)"
    );

    // `tandem plugin pack` accepts it; the package holds this component and manifest.
    let component = work.path().join("mapping.wasm");
    let manifest_path = example_dir().join("tandem-plugin.toml");
    let package_path = work.path().join("python-contact-mapping.tpkg");
    let out = ok(&tandem(&[
        "plugin",
        "pack",
        "--manifest",
        s(&manifest_path),
        "--component",
        s(&component),
        "-o",
        s(&package_path),
    ]));
    assert!(out.contains("packed"), "{out}");
    let out = ok(&tandem(&["plugin", "verify", s(&package_path)]));
    assert!(
        out.contains("python-contact-mapping 1.0.0 (mapper)") && out.contains("unsigned"),
        "{out}"
    );
    let package = Package::read(&package_path).expect("the package reads back");
    assert_eq!(package.component, wasm);
    assert_eq!(package.manifest, manifest);
}

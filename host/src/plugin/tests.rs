//! Tests of the plugin runtime against the real components built by `host/build.rs`: the
//! default contact mapping, and `plugins/test-hostile`, which misbehaves on request.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::runtime::{MAX_TRAP_MESSAGE, truncated};
use super::sandbox::MAX_LOG_LINES_PER_CALL;
use super::wit::{since_v0_1_0, since_v0_2_0};
use super::*;
use crate::record::Value;

fn runtime() -> PluginRuntime {
    PluginRuntime::new(None).expect("engine starts")
}

fn ctx() -> CallContext {
    CallContext {
        domain: "contacts".into(),
        user: "SADMIN".into(),
    }
}

fn fields(pairs: &[(&str, Value)]) -> Fields {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

/// A 20-field Siebel contact: the 12 mapped fields (one blank) and 8 the mapping ignores.
fn siebel_contact() -> Fields {
    fields(&[
        ("First Name", text("Ann")),
        ("Last Name", text("Lee")),
        ("Middle Name", text("")),
        ("Email Address", text("ann.lee@example.com")),
        ("Work Phone #", text("+1 555 0100")),
        ("Cellular Phone #", text("+1 555 0101")),
        ("Home Phone #", text("+1 555 0102")),
        ("Fax Phone #", text("+1 555 0103")),
        ("Job Title", text("CFO")),
        ("Assistant", text("Bob Ray")),
        ("Assistant Phone #", text("+1 555 0104")),
        ("Primary Account Name", text("Acme Corp")),
        ("Id", text("1-ABC")),
        (
            "Updated",
            Value::DateTime(chrono::DateTime::from_timestamp(1_700_000_000, 0).expect("valid")),
        ),
        ("Mod Id", Value::Integer(7)),
        ("Score", Value::Number(0.5)),
        ("Active", Value::Boolean(true)),
        ("Tags", Value::List(vec![text("vip"), Value::Integer(1)])),
        ("Comment", Value::Null),
        ("Personal Title", text("Ms.")),
    ])
}

fn load(runtime: &PluginRuntime, name: &str, wasm: &[u8], limits: Limits) -> MapperPlugin {
    runtime
        .load_mapper(name, wasm, limits, BTreeMap::new())
        .expect("plugin loads")
}

fn hostile(limits: Limits) -> MapperPlugin {
    load(&runtime(), "test-hostile", builtin::TEST_HOSTILE, limits)
}

fn mode(m: &str) -> Fields {
    fields(&[("Mode", text(m))])
}

#[test]
fn contact_mapping_maps_a_20_field_record_both_ways() {
    let plugin = load_default_contact_mapping(&runtime()).expect("default plugin loads");
    let mut instance = plugin.instantiate().expect("instantiates");
    let siebel = siebel_contact();
    assert_eq!(siebel.len(), 20);

    let exchange = instance
        .to_exchange(&ctx(), &siebel)
        .expect("maps to exchange");
    let expected = fields(&[
        ("GivenName", text("Ann")),
        ("Surname", text("Lee")),
        ("MiddleName", Value::Null),
        ("EmailAddress1", text("ann.lee@example.com")),
        ("BusinessPhone", text("+1 555 0100")),
        ("MobilePhone", text("+1 555 0101")),
        ("HomePhone", text("+1 555 0102")),
        ("BusinessFax", text("+1 555 0103")),
        ("JobTitle", text("CFO")),
        ("AssistantName", text("Bob Ray")),
        ("AssistantPhone", text("+1 555 0104")),
        ("CompanyName", text("Acme Corp")),
        ("Categories", Value::List(vec![text("Siebel Contact")])),
        ("FileAs", text("Lee, Ann")),
    ]);
    assert_eq!(exchange, expected);

    let back = instance
        .to_siebel(&ctx(), &exchange)
        .expect("maps to siebel");
    let mut expected_back: Fields = siebel
        .iter()
        .filter(|(k, _)| contact_mapping::FIELD_PAIRS.iter().any(|(s, _)| s == k))
        .map(|(k, v)| (k, v.clone()))
        .collect();
    expected_back.insert("Middle Name".into(), Value::Null);
    assert_eq!(back, expected_back);
}

#[test]
fn wasm_contact_mapping_agrees_with_the_native_build() {
    let plugin = load_default_contact_mapping(&runtime()).expect("default plugin loads");
    let mut instance = plugin.instantiate().expect("instantiates");
    let siebel = siebel_contact();
    let native_in: tandem_plugin_api::Fields = siebel
        .iter()
        .filter_map(|(k, v)| Some((k, tandem_plugin_api::Value::text(v.as_text()?))))
        .collect();
    let native = contact_mapping::siebel_to_exchange(&native_in);
    let wasm = instance.to_exchange(&ctx(), &siebel).expect("maps");
    assert_eq!(wasm.len(), native.len());
    for (name, value) in native.iter() {
        let got = wasm.get(name).expect("same field names");
        match value {
            tandem_plugin_api::Value::Text(t) => assert_eq!(got, &text(t), "{name}"),
            tandem_plugin_api::Value::Null => assert_eq!(got, &Value::Null, "{name}"),
            tandem_plugin_api::Value::List(_) => assert!(matches!(got, Value::List(_)), "{name}"),
            other => panic!("unexpected native value {other:?}"),
        }
    }
}

#[test]
fn the_sdk_does_not_leak_other_worlds_into_a_mapper() {
    let runtime = runtime();
    let engine = &runtime.shared.optimizing.engine;
    for wasm in [builtin::CONTACT_MAPPING, builtin::TEST_HOSTILE] {
        let component = Component::new(engine, wasm).expect("compiles");
        let exports: Vec<String> = component
            .component_type()
            .exports(engine)
            .map(|(n, _)| n.to_owned())
            .collect();
        assert_eq!(exports, [since_v0_2_0::MAPPING_EXPORT]);
        let imports: Vec<String> = component
            .component_type()
            .imports(engine)
            .map(|(n, _)| n.to_owned())
            .collect();
        assert!(
            !imports
                .iter()
                .any(|i| i.contains("filter") || i.contains("conflict")),
            "{imports:?}"
        );
    }
}

#[test]
fn a_mapper_is_rejected_as_filter_or_policy_with_a_clear_message() {
    let runtime = runtime();
    let err = runtime
        .load_filter(
            "contact-mapping",
            builtin::CONTACT_MAPPING,
            Limits::default(),
            BTreeMap::new(),
        )
        .expect_err("a mapper is not a filter");
    let message = err.to_string();
    assert!(
        matches!(
            err,
            PluginLoadError::WrongWorld {
                expected_kind: "filter",
                ..
            }
        ),
        "{message}"
    );
    assert!(
        message.contains("tandem:plugin/record-filter@0.2.0") && message.contains("0.1.0"),
        "{message}"
    );
    assert!(message.contains("tandem:plugin/mapping@0.2.0"), "{message}");

    let err = runtime
        .load_conflict_policy(
            "cm",
            builtin::CONTACT_MAPPING,
            Limits::default(),
            BTreeMap::new(),
        )
        .expect_err("a mapper is not a conflict policy");
    assert!(matches!(err, PluginLoadError::WrongWorld { .. }), "{err}");

    let err = runtime
        .load_mapper(
            "junk",
            b"\0asm not really",
            Limits::default(),
            BTreeMap::new(),
        )
        .expect_err("junk is not a component");
    assert!(matches!(err, PluginLoadError::Compile { .. }), "{err}");
}

#[test]
fn limits_out_of_range_are_rejected() {
    let runtime = runtime();
    for limits in [
        Limits {
            memory_bytes: 0,
            ..Limits::default()
        },
        Limits {
            memory_bytes: MAX_MEMORY_BYTES + 1,
            ..Limits::default()
        },
        Limits {
            call_deadline: Duration::ZERO,
            ..Limits::default()
        },
    ] {
        let err = runtime
            .load_mapper("cm", builtin::CONTACT_MAPPING, limits, BTreeMap::new())
            .expect_err("invalid limits");
        assert!(matches!(err, PluginLoadError::Limits { .. }), "{err}");
    }
}

#[test]
fn a_deadline_stops_an_infinite_loop() {
    let limits = Limits {
        call_deadline: Duration::from_millis(50),
        ..Limits::default()
    };
    let plugin = hostile(limits);
    let mut instance = plugin.instantiate().expect("instantiates");
    let started = Instant::now();
    let err = instance
        .to_exchange(&ctx(), &mode("loop"))
        .expect_err("must not finish");
    let elapsed = started.elapsed();
    assert!(matches!(err, PluginCallError::Timeout { .. }), "{err}");
    assert!(
        elapsed >= Duration::from_millis(50),
        "stopped too early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(2),
        "stopped too late: {elapsed:?}"
    );
    // The same instance handle works again (a fresh store behind it).
    let echo = instance
        .to_exchange(&ctx(), &mode("echo"))
        .expect("works after a timeout");
    assert_eq!(echo, mode("echo"));
}

#[test]
fn a_memory_cap_stops_a_memory_bomb() {
    let limits = Limits {
        memory_bytes: 16 << 20,
        ..Limits::default()
    };
    let plugin = hostile(limits);
    let mut instance = plugin.instantiate().expect("instantiates");
    let err = instance
        .to_exchange(&ctx(), &mode("alloc"))
        .expect_err("must run out");
    assert!(
        matches!(err, PluginCallError::OutOfMemory { limit, .. } if limit == 16 << 20),
        "{err}"
    );
    assert_eq!(
        instance
            .to_siebel(&ctx(), &mode("echo"))
            .expect("works again"),
        mode("echo")
    );
}

#[test]
fn a_trap_is_a_typed_error_and_the_next_instance_works() {
    let plugin = hostile(Limits::default());
    let mut instance = plugin.instantiate().expect("instantiates");
    let err = instance
        .to_exchange(&ctx(), &mode("trap"))
        .expect_err("traps");
    let PluginCallError::Trap {
        plugin: name,
        message,
    } = &err
    else {
        panic!("expected a trap, got {err}");
    };
    assert_eq!(name, "test-hostile");
    assert!(message.contains("unreachable"), "{message}");
    // Same handle: re-instantiated transparently.
    assert_eq!(
        instance.to_exchange(&ctx(), &mode("echo")).expect("works"),
        mode("echo")
    );
    // A new instance works too.
    let mut fresh = plugin.instantiate().expect("instantiates again");
    assert_eq!(
        fresh.to_siebel(&ctx(), &mode("echo")).expect("works"),
        mode("echo")
    );
}

#[test]
fn deep_recursion_is_a_trap_not_a_host_crash() {
    let plugin = hostile(Limits {
        call_deadline: Duration::from_secs(5),
        ..Limits::default()
    });
    let mut instance = plugin.instantiate().expect("instantiates");
    let err = instance
        .to_exchange(&ctx(), &mode("recurse"))
        .expect_err("overflows");
    match &err {
        // Rust keeps its stack in linear memory below the data: overflowing it is an
        // out-of-bounds access; a wasm-level overflow would say "call stack exhausted".
        PluginCallError::Trap { message, .. } => {
            assert!(
                message.contains("out of bounds") || message.contains("stack"),
                "{message}"
            );
            let max = MAX_TRAP_MESSAGE + '…'.len_utf8();
            assert!(message.len() <= max, "{} bytes", message.len());
        }
        other => panic!("expected a trap, got {other}"),
    }
}

#[test]
fn a_plugin_error_keeps_the_instance() {
    let plugin = hostile(Limits::default());
    let mut instance = plugin.instantiate().expect("instantiates");
    let err = instance
        .to_exchange(&ctx(), &mode("error"))
        .expect_err("declines");
    assert!(
        matches!(&err, PluginCallError::Plugin { error: PluginError::InvalidRecord(m), .. } if m == "asked to fail"),
        "{err}"
    );
    assert!(
        instance.live.is_some(),
        "a plugin-error must not discard the instance"
    );
}

#[test]
fn plugins_see_their_config_and_context_and_can_log() {
    let config = BTreeMap::from([("greeting".to_owned(), "hej".to_owned())]);
    let plugin = runtime()
        .load_mapper(
            "test-hostile",
            builtin::TEST_HOSTILE,
            Limits::default(),
            config,
        )
        .expect("loads");
    let mut instance = plugin.instantiate().expect("instantiates");
    let out = instance.to_exchange(&ctx(), &mode("host")).expect("works");
    assert_eq!(out.get("Greeting"), Some(&text("hej")));
    assert_eq!(out.get("Domain"), Some(&text("contacts")));
    assert_eq!(out.get("User"), Some(&text("SADMIN")));
}

#[test]
fn a_nested_list_is_bad_input_and_no_call_is_made() {
    let plugin = load_default_contact_mapping(&runtime()).expect("loads");
    let mut instance = plugin.instantiate().expect("instantiates");
    let bad = fields(&[("X", Value::List(vec![Value::List(vec![])]))]);
    let err = instance
        .to_exchange(&ctx(), &bad)
        .expect_err("not representable");
    assert!(matches!(err, PluginCallError::BadInput { .. }), "{err}");
}

#[test]
fn the_compile_cache_is_used_and_survives_corruption() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = PluginRuntime::new(Some(dir.path().to_path_buf())).expect("engine");
    let first = load(&runtime, "cm", builtin::CONTACT_MAPPING, Limits::default());
    assert_eq!(first.cache_outcome(), CacheOutcome::Stored);
    let second = load(&runtime, "cm", builtin::CONTACT_MAPPING, Limits::default());
    assert_eq!(second.cache_outcome(), CacheOutcome::Hit);
    assert_eq!(first.sha256(), second.sha256());
    assert_eq!(first.sha256(), cache::sha256_hex(builtin::CONTACT_MAPPING));

    // A fresh runtime (a restart) loads from the cache as well.
    let restarted = PluginRuntime::new(Some(dir.path().to_path_buf())).expect("engine");
    let third = load(
        &restarted,
        "cm",
        builtin::CONTACT_MAPPING,
        Limits::default(),
    );
    assert_eq!(third.cache_outcome(), CacheOutcome::Hit);
    let out = third
        .instantiate()
        .expect("instantiates")
        .to_exchange(&ctx(), &siebel_contact());
    assert_eq!(out.expect("maps").get("GivenName"), Some(&text("Ann")));

    // Corrupt every cached file: loading compiles again and rewrites it.
    for entry in std::fs::read_dir(dir.path()).expect("list") {
        std::fs::write(entry.expect("entry").path(), b"garbage").expect("corrupt");
    }
    let fourth = load(
        &restarted,
        "cm",
        builtin::CONTACT_MAPPING,
        Limits::default(),
    );
    assert_eq!(fourth.cache_outcome(), CacheOutcome::Stored);
    let fifth = load(
        &restarted,
        "cm",
        builtin::CONTACT_MAPPING,
        Limits::default(),
    );
    assert_eq!(fifth.cache_outcome(), CacheOutcome::Hit);
}

#[test]
fn default_plugins_list_excludes_test_plugins() {
    let names: Vec<&str> = builtin::DEFAULT_PLUGINS.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "activity-mapping",
            "conflict-policies",
            "contact-mapping",
            "default-filters",
            "employee-mapping",
            "personal-contact-mapping",
        ]
    );
}

fn policy_plugins() -> (FilterPlugin, ConflictPolicyPlugin) {
    let runtime = runtime();
    let filter = runtime
        .load_filter(
            "test-policy",
            builtin::TEST_POLICY,
            Limits::default(),
            BTreeMap::new(),
        )
        .expect("loads as filter");
    let policy = runtime
        .load_conflict_policy(
            "test-policy",
            builtin::TEST_POLICY,
            Limits::default(),
            BTreeMap::new(),
        )
        .expect("loads as conflict policy");
    (filter, policy)
}

#[test]
fn a_filter_plugin_decides_per_side() {
    let (filter, _) = policy_plugins();
    let mut filter = filter.instantiate().expect("instantiates");
    let private = fields(&[("Private", Value::Boolean(true))]);
    assert!(
        !filter
            .include(&ctx(), Side::Siebel, &private)
            .expect("decides")
    );
    assert!(
        filter
            .include(&ctx(), Side::Siebel, &siebel_contact())
            .expect("decides")
    );
    let tagged = fields(&[("Categories", Value::List(vec![text("Siebel Contact")]))]);
    assert!(
        filter
            .include(&ctx(), Side::Exchange, &tagged)
            .expect("decides")
    );
    assert!(
        !filter
            .include(&ctx(), Side::Exchange, &Fields::new())
            .expect("decides")
    );
    let err = filter
        .include(
            &ctx(),
            Side::Exchange,
            &fields(&[("Categories", text("x"))]),
        )
        .expect_err("declines");
    assert!(
        matches!(
            err,
            PluginCallError::Plugin {
                error: PluginError::InvalidRecord(_),
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_conflict_policy_plugin_resolves() {
    let (_, policy) = policy_plugins();
    let mut policy = policy.instantiate().expect("instantiates");
    let siebel = fields(&[("JobTitle", text("CFO")), ("Surname", Value::Null)]);
    let exchange = fields(&[("JobTitle", text("CEO")), ("Surname", text("Lee"))]);
    let with_base = Conflict {
        base: Some(Fields::new()),
        siebel: siebel.clone(),
        exchange: exchange.clone(),
    };
    assert_eq!(
        policy.resolve(&ctx(), &with_base).expect("resolves"),
        Resolution::TakeSiebel
    );

    let no_base = Conflict {
        base: None,
        siebel,
        exchange,
    };
    let merged = fields(&[("JobTitle", text("CFO")), ("Surname", text("Lee"))]);
    assert_eq!(
        policy.resolve(&ctx(), &no_base).expect("resolves"),
        Resolution::Merged(merged)
    );

    let defer = Conflict {
        siebel: fields(&[("Defer", text("ask Ann"))]),
        ..Conflict::default()
    };
    assert_eq!(
        policy.resolve(&ctx(), &defer).expect("resolves"),
        Resolution::Defer("ask Ann".into())
    );
}

#[test]
fn a_filter_is_not_a_mapper() {
    let err = runtime()
        .load_mapper(
            "test-policy",
            builtin::TEST_POLICY,
            Limits::default(),
            BTreeMap::new(),
        )
        .expect_err("not a mapper");
    assert!(
        matches!(
            err,
            PluginLoadError::WrongWorld {
                expected_kind: "mapper",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_plugin_cannot_sleep_past_its_deadline() {
    let plugin = hostile(Limits::default());
    let mut instance = plugin.instantiate().expect("instantiates");
    let started = Instant::now();
    let err = instance
        .to_exchange(&ctx(), &mode("sleep"))
        .expect_err("may not sleep");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "slept {:?}",
        started.elapsed()
    );
    assert!(
        matches!(&err, PluginCallError::Trap { message, .. } if message.contains("may not sleep")),
        "{err}"
    );
}

#[test]
fn wasi_gives_no_environment_files_or_network() {
    let plugin = hostile(Limits::default());
    let mut instance = plugin.instantiate().expect("instantiates");
    let out = instance.to_exchange(&ctx(), &mode("env")).expect("runs");
    assert_eq!(out.get("Vars"), Some(&Value::Integer(0)));
    assert_eq!(out.get("Args"), Some(&Value::Integer(0)));
    assert_eq!(out.get("Files"), Some(&Value::Boolean(false)));
    assert_eq!(out.get("Net"), Some(&Value::Boolean(false)));
}

#[test]
fn truncation_keeps_char_boundaries() {
    assert_eq!(truncated("short".into(), 10), "short");
    assert_eq!(truncated("ååå".into(), 3), "å…");
    assert_eq!(truncated("abcdef".into(), 3), "abc…");
}

/// Collects what a `tracing` subscriber writes, for log assertions.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The process-wide log capture. A global subscriber (rather than a thread-local one)
/// keeps tracing's callsite interest cache right however other tests run alongside.
fn global_log() -> &'static Captured {
    static LOG: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::TRACE)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("no other test sets a global subscriber");
        tracing::callsite::rebuild_interest_cache();
        captured
    })
}

#[test]
fn plugin_logs_go_to_tracing_tagged_and_rate_limited() {
    let captured = global_log();
    let plugin = hostile(Limits {
        call_deadline: Duration::from_secs(5),
        ..Limits::default()
    });
    let start = captured.0.lock().expect("not poisoned").len();
    let mut instance = plugin.instantiate().expect("instantiates");
    instance
        .to_exchange(&ctx(), &mode("spam"))
        .expect("spamming is allowed");
    instance.to_exchange(&ctx(), &mode("host")).expect("runs");
    let bytes = captured.0.lock().expect("not poisoned")[start..].to_vec();
    let text = String::from_utf8_lossy(&bytes);
    let spam = text.lines().filter(|l| l.contains("spam line")).count();
    assert_eq!(spam, MAX_LOG_LINES_PER_CALL as usize);
    assert!(text.contains("dropping the rest"), "{text}");
    // The next call gets a fresh allowance; lines carry the plugin name.
    let hello = text
        .lines()
        .find(|l| l.contains("hello from contacts for SADMIN"));
    assert!(
        hello.is_some_and(
            |l| l.contains("plugin=\"test-hostile\"") || l.contains("plugin=test-hostile")
        ),
        "{text:.2000}"
    );
}

#[test]
fn the_default_conflict_policies_run_as_wasm_with_their_configuration() {
    let runtime = runtime();
    let load = |config: &[(&str, &str)]| {
        let config = config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        runtime
            .load_conflict_policy("conflict-policies", builtin::CONFLICT_POLICIES, Limits::default(), config)
            .expect("loads")
            .instantiate()
            .expect("instantiates")
    };
    let conflict = Conflict {
        base: Some(fields(&[("JobTitle", text("CFO")), ("Surname", text("Lee"))])),
        siebel: fields(&[("JobTitle", text("CEO")), ("Surname", text("Lee"))]),
        exchange: fields(&[("JobTitle", text("CFO")), ("Surname", text("Li"))]),
    };
    assert_eq!(load(&[]).resolve(&ctx(), &conflict).expect("resolves"), Resolution::TakeSiebel);
    assert_eq!(
        load(&[("policy", "exchange-wins")]).resolve(&ctx(), &conflict).expect("resolves"),
        Resolution::TakeExchange
    );
    let merged = fields(&[("JobTitle", text("CEO")), ("Surname", text("Li"))]);
    assert_eq!(
        load(&[("policy", "field-merge")]).resolve(&ctx(), &conflict).expect("resolves"),
        Resolution::Merged(merged)
    );
    let err = load(&[("policy", "coin-flip")]).resolve(&ctx(), &conflict).expect_err("bad config");
    assert!(err.to_string().contains("unknown policy"), "{err}");
}

fn v0_1_plugin_runtime() -> (PluginRuntime, BTreeMap<String, String>) {
    (runtime(), BTreeMap::from([("api".to_owned(), "0.1.0 via config".to_owned())]))
}

#[test]
fn a_plugin_built_against_wit_0_1_0_still_maps_filters_and_resolves() {
    let (runtime, config) = v0_1_plugin_runtime();
    let engine = &runtime.shared.optimizing.engine;
    let component = Component::new(engine, builtin::TEST_WIT_V0_1).expect("compiles");
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(n, _)| n.to_owned())
        .collect();
    assert!(exports.contains(&since_v0_1_0::MAPPING_EXPORT.to_owned()), "{exports:?}");
    assert!(!exports.iter().any(|e| e.contains("0.2.0")), "{exports:?}");

    let mapper = runtime
        .load_mapper("v01", builtin::TEST_WIT_V0_1, Limits::default(), config.clone())
        .expect("a 0.1.0 mapper loads");
    let mut instance = mapper.instantiate().expect("instantiates");
    let record = fields(&[("Surname", text("Lee")), ("Score", Value::Integer(3))]);
    let out = instance.to_exchange(&ctx(), &record).expect("maps");
    assert_eq!(out.get("Surname"), Some(&text("LEE")));
    assert_eq!(out.get("Score"), Some(&Value::Integer(3)));
    assert_eq!(out.get("Api"), Some(&text("0.1.0 via config")), "host config reaches it");
    let back = instance
        .to_siebel(&ctx(), &fields(&[("Last Name", text("ray"))]))
        .expect("maps back");
    assert_eq!(back.get("Last Name"), Some(&text("RAY")));

    // Batches are adapted: one call per record, answers in order, errors in place.
    let failing = fields(&[("Fail", Value::Null)]);
    let nested = fields(&[("X", Value::List(vec![Value::List(vec![])]))]);
    let answers = instance
        .to_exchange_batch(&ctx(), [&record, &failing, &nested, &record])
        .expect("the batch runs");
    assert_eq!(answers.len(), 4);
    assert_eq!(answers[0].as_ref().expect("mapped"), &out);
    assert!(
        matches!(&answers[1], Err(PluginCallError::Plugin { error: PluginError::InvalidRecord(_), .. })),
        "{:?}",
        answers[1]
    );
    assert!(matches!(&answers[2], Err(PluginCallError::BadInput { .. })), "{:?}", answers[2]);
    assert_eq!(answers[3].as_ref().expect("mapped"), &out);

    let filter = runtime
        .load_filter("v01", builtin::TEST_WIT_V0_1, Limits::default(), config.clone())
        .expect("a 0.1.0 filter loads");
    let mut filter = filter.instantiate().expect("instantiates");
    assert!(filter.include(&ctx(), Side::Siebel, &record).expect("decides"));
    let skipped = fields(&[("Skip", Value::Boolean(true))]);
    assert!(!filter.include(&ctx(), Side::Exchange, &skipped).expect("decides"));

    let policy = runtime
        .load_conflict_policy("v01", builtin::TEST_WIT_V0_1, Limits::default(), config)
        .expect("a 0.1.0 conflict policy loads");
    let mut policy = policy.instantiate().expect("instantiates");
    let mut conflict = Conflict {
        base: None,
        siebel: record.clone(),
        exchange: out.clone(),
    };
    assert!(matches!(
        policy.resolve(&ctx(), &conflict).expect("resolves"),
        Resolution::Defer(reason) if reason.contains("0.1.0")
    ));
    conflict.base = Some(record);
    assert_eq!(policy.resolve(&ctx(), &conflict).expect("resolves"), Resolution::TakeExchange);
}

#[test]
fn a_packed_batch_round_trips_every_value_kind_through_wasm() {
    let plugin = hostile(Limits::default());
    let mut instance = plugin.instantiate().expect("instantiates");
    let mut record = siebel_contact();
    record.insert("Mode".into(), text("echo"));
    record.insert("Unicode".into(), text("Zoë – 東京 🦀"));
    let single = instance.to_exchange(&ctx(), &record).expect("echoes");
    assert_eq!(single, record);
    let answers = instance
        .to_siebel_batch(&ctx(), [&record, &Fields::new(), &record])
        .expect("the batch runs");
    assert_eq!(answers.len(), 3);
    for answer in [&answers[0], &answers[2]] {
        assert_eq!(answer.as_ref().expect("echoes"), &record);
    }
    // No Mode and no hostile surname: the real contact mapping.
    assert_eq!(answers[1].as_ref().expect("maps").get("Last Name"), Some(&Value::Null));
    assert!(instance.to_exchange_batch(&ctx(), []).expect("nothing to do").is_empty());
}

#[test]
fn in_a_batch_errors_fail_their_record_and_a_trap_fails_the_batch() {
    let plugin = hostile(Limits::default());
    let mut instance = plugin.instantiate().expect("instantiates");
    let contact = siebel_contact();
    let nested = fields(&[("X", Value::List(vec![Value::List(vec![])]))]);
    let declined = mode("error");
    let answers = instance
        .to_exchange_batch(&ctx(), [&contact, &declined, &nested, &contact])
        .expect("the batch runs");
    let expected = instance.to_exchange(&ctx(), &contact).expect("maps");
    assert_eq!(answers.len(), 4);
    assert_eq!(answers[0].as_ref().expect("mapped"), &expected);
    assert!(
        matches!(&answers[1], Err(PluginCallError::Plugin { error: PluginError::InvalidRecord(m), .. }) if m == "asked to fail"),
        "{:?}",
        answers[1]
    );
    assert!(matches!(&answers[2], Err(PluginCallError::BadInput { .. })), "{:?}", answers[2]);
    assert_eq!(answers[3].as_ref().expect("mapped"), &expected);
    assert!(instance.live.is_some(), "record errors keep the instance");

    let trap = mode("trap");
    let err = instance
        .to_exchange_batch(&ctx(), [&contact, &trap])
        .expect_err("a trap fails the batch");
    assert!(matches!(err, PluginCallError::Trap { .. }), "{err}");
    assert!(instance.live.is_none(), "a trap discards the instance");
    let again = instance
        .to_exchange_batch(&ctx(), [&contact])
        .expect("a fresh instance");
    assert_eq!(again[0].as_ref().expect("mapped"), &expected);
}

/// A runtime whose every plugin is compiled by the baseline compiler (Winch), as big
/// components are.
fn baseline_runtime() -> PluginRuntime {
    PluginRuntime::with_baseline_compiler_from(None, 0).expect("engine starts")
}

#[test]
fn the_baseline_compiler_maps_the_same_and_keeps_the_sandbox() {
    // The same answers as Cranelift's code.
    let optimized = load_default_contact_mapping(&runtime()).expect("loads");
    let baseline = load_default_contact_mapping(&baseline_runtime()).expect("loads with Winch");
    let siebel = siebel_contact();
    let expected = optimized.instantiate().expect("instantiates").to_exchange(&ctx(), &siebel).expect("maps");
    let mut instance = baseline.instantiate().expect("instantiates");
    assert_eq!(instance.to_exchange(&ctx(), &siebel).expect("maps"), expected);

    // Deadline, memory cap and traps hold for Winch code too.
    let limits = Limits { call_deadline: Duration::from_millis(50), memory_bytes: 16 << 20, ..Limits::default() };
    let hostile = load(&baseline_runtime(), "test-hostile", builtin::TEST_HOSTILE, limits);
    let mut instance = hostile.instantiate().expect("instantiates");
    let started = Instant::now();
    let err = instance.to_exchange(&ctx(), &mode("loop")).expect_err("must not finish");
    assert!(matches!(err, PluginCallError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2), "stopped too late: {:?}", started.elapsed());
    let err = instance.to_exchange(&ctx(), &mode("alloc")).expect_err("must run out");
    assert!(matches!(err, PluginCallError::OutOfMemory { .. }), "{err}");
    let err = instance.to_exchange(&ctx(), &mode("trap")).expect_err("traps");
    assert!(matches!(err, PluginCallError::Trap { .. }), "{err}");
    assert_eq!(instance.to_exchange(&ctx(), &mode("echo")).expect("works again"), mode("echo"));
}

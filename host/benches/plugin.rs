//! What plugins cost: a 25-field contact mapped through the wasm component (one record per
//! call, and in batches) vs the same Rust compiled natively, instantiation, cold compilation
//! and a warm load from the cache.
//!
//! Run with `cargo bench -p tandem-host --bench plugin`.
//!
//! Opt-in: `TANDEM_BENCH_COMPILE=path/to/component.wasm` first times one cold compile of that
//! component (e.g. the 18 MB Python example) and of the contact mapping at each Cranelift
//! optimization level and with Winch (which the runtime uses for big components).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

use criterion::{Bencher, Criterion, criterion_group, criterion_main};
use tandem_host::plugin::{
    CallContext, Limits, MapperInstance, PluginCallError, PluginRuntime, builtin,
};
use tandem_host::record::{Fields, Value};

/// 12 mapped Siebel fields plus 13 the mapping ignores: 25 in all.
fn contact() -> Fields {
    let mut f = Fields::new();
    for (name, value) in [
        ("First Name", "Ann"),
        ("Last Name", "Lee"),
        ("Middle Name", "Q"),
        ("Email Address", "ann.lee@example.com"),
        ("Work Phone #", "+1 555 0100"),
        ("Cellular Phone #", "+1 555 0101"),
        ("Home Phone #", "+1 555 0102"),
        ("Fax Phone #", "+1 555 0103"),
        ("Job Title", "CFO"),
        ("Assistant", "Bob Ray"),
        ("Assistant Phone #", "+1 555 0104"),
        ("Primary Account Name", "Acme Corp"),
    ] {
        f.insert(name.into(), Value::from(value));
    }
    for i in 0..13 {
        f.insert(
            format!("Extra {i:02}"),
            Value::from(format!("value number {i}")),
        );
    }
    f
}

fn native_contact() -> tandem_plugin_api::Fields {
    contact()
        .into_iter()
        .filter_map(|(k, v)| Some((k, tandem_plugin_api::Value::text(v.as_text()?))))
        .collect()
}

/// A plugin-API value as a host value (the contact mapping yields text, null and text lists).
fn host_value(value: tandem_plugin_api::Value) -> Value {
    use tandem_plugin_api::{Scalar, Value as V};
    match value {
        V::Text(t) => Value::Text(t),
        V::List(items) => Value::List(
            items
                .into_iter()
                .map(|s| match s {
                    Scalar::Text(t) => Value::Text(t),
                    _ => Value::Null,
                })
                .collect(),
        ),
        _ => Value::Null,
    }
}

/// Times `instance` mapping `batch` in one call per iteration, reporting the time per
/// record; `answer` sees each answer.
fn time_batches(
    b: &mut Bencher<'_>,
    instance: &mut MapperInstance,
    ctx: &CallContext,
    batch: &[Fields],
    mut answer: impl FnMut(Result<Fields, PluginCallError>),
) {
    b.iter_custom(|iters| {
        let started = Instant::now();
        for _ in 0..iters {
            let answers = instance
                .to_exchange_batch(ctx, black_box(batch))
                .expect("the batch runs");
            answers.into_iter().for_each(&mut answer);
        }
        started.elapsed() / u32::try_from(batch.len()).expect("small batch")
    })
}

/// The bytes of `texts`: reads every text.
fn text_bytes<'a>(texts: impl Iterator<Item = &'a str>) -> usize {
    texts.map(str::len).sum()
}

/// One cold compile of `component` per Cranelift optimization level and register
/// allocator, printed (a compile of the Python example takes seconds: too long for
/// criterion's samples).
fn compile_times_by_opt_level(label: &str, component: &[u8]) {
    use wasmtime::{Engine, OptLevel, RegallocAlgorithm, component::Component};
    for (level_name, level, regalloc) in [
        (
            "speed, backtracking regalloc (default)",
            OptLevel::Speed,
            RegallocAlgorithm::Backtracking,
        ),
        (
            "none, backtracking regalloc",
            OptLevel::None,
            RegallocAlgorithm::Backtracking,
        ),
        (
            "speed, single-pass regalloc",
            OptLevel::Speed,
            RegallocAlgorithm::SinglePass,
        ),
        (
            "none, single-pass regalloc",
            OptLevel::None,
            RegallocAlgorithm::SinglePass,
        ),
    ] {
        let mut config = PluginRuntime::code_config();
        config
            .cranelift_opt_level(level)
            .cranelift_regalloc_algorithm(regalloc);
        let engine = Engine::new(&config).expect("engine starts");
        let started = Instant::now();
        Component::new(&engine, component).expect("compiles");
        eprintln!(
            "cold compile of {label} ({} bytes), opt level {level_name}: {:?}",
            component.len(),
            started.elapsed()
        );
    }
    // What `PluginRuntime` uses for components of `BASELINE_COMPILER_FROM_BYTES` and more.
    let mut config = PluginRuntime::code_config();
    config.strategy(wasmtime::Strategy::Winch);
    let engine = Engine::new(&config).expect("engine starts");
    let started = Instant::now();
    Component::new(&engine, component).expect("compiles");
    eprintln!(
        "cold compile of {label} ({} bytes), Winch (baseline compiler): {:?}",
        component.len(),
        started.elapsed()
    );
}

fn benches(c: &mut Criterion) {
    if let Some(path) = std::env::var_os("TANDEM_BENCH_COMPILE") {
        let component = std::fs::read(&path).expect("reads TANDEM_BENCH_COMPILE");
        compile_times_by_opt_level(&path.to_string_lossy(), &component);
        compile_times_by_opt_level("contact-mapping", builtin::CONTACT_MAPPING);
    }
    let runtime = PluginRuntime::new(None).expect("engine starts");
    // A bench measures cost, not deadlines: on the shared 2-core machine a descheduled thread
    // has run a batch call past the default 100 ms deadline.
    let limits = Limits {
        call_deadline: std::time::Duration::from_secs(10),
        ..Limits::default()
    };
    let plugin = runtime
        .load_mapper(
            "contact-mapping",
            builtin::CONTACT_MAPPING,
            limits,
            BTreeMap::new(),
        )
        .expect("loads");
    let ctx = CallContext {
        domain: "contacts".into(),
        user: "SADMIN".into(),
    };
    let record = contact();
    assert_eq!(record.len(), 25);

    let mut instance = plugin.instantiate().expect("instantiates");
    c.bench_function("contact_to_exchange/wasm", |b| {
        b.iter(|| {
            instance
                .to_exchange(&ctx, black_box(&record))
                .expect("maps")
        })
    });
    // Batches (WIT 0.2's packed `mapping`): the time reported is per record, the batch's
    // time divided by its size.
    for size in [10usize, 100] {
        let batch: Vec<Fields> = (0..size).map(|_| record.clone()).collect();
        c.bench_function(
            &format!("contact_to_exchange/wasm_batch{size}_per_record"),
            |b| {
                time_batches(b, &mut instance, &ctx, &batch, |answer| {
                    assert!(answer.is_ok());
                })
            },
        );
    }
    let native = native_contact();
    c.bench_function("contact_to_exchange/native", |b| {
        b.iter(|| contact_mapping::siebel_to_exchange(black_box(&native)))
    });
    // The engine's view of a native mapping: host record in, host record out (the same
    // conversions a compiled-in mapping would need, without the sandbox).
    c.bench_function("contact_to_exchange/native_host_record", |b| {
        b.iter(|| {
            let input: tandem_plugin_api::Fields = black_box(&record)
                .iter()
                .filter_map(|(k, v)| Some((k, tandem_plugin_api::Value::text(v.as_text()?))))
                .collect();
            let out = contact_mapping::siebel_to_exchange(&input);
            out.into_iter()
                .map(|(k, v)| (k, host_value(v)))
                .collect::<Fields>()
        })
    });
    // The host keeps a plugin's answer packed and decodes a value when it is first read; the
    // engine reads every field of a mapped record (to hash it, to write it). The same
    // mapping with every output value read once, so that decoding is counted too.
    let batch: Vec<Fields> = (0..100).map(|_| record.clone()).collect();
    c.bench_function("contact_to_exchange_read/wasm_batch100_per_record", |b| {
        time_batches(b, &mut instance, &ctx, &batch, |answer| {
            let fields = answer.expect("maps");
            black_box(text_bytes(fields.values().filter_map(Value::as_text)));
        })
    });
    c.bench_function("contact_to_exchange_read/native", |b| {
        b.iter(|| {
            let out = contact_mapping::siebel_to_exchange(black_box(&native));
            black_box(text_bytes(out.iter().filter_map(|(_, v)| v.as_text())))
        })
    });
    c.bench_function("instantiate", |b| {
        b.iter(|| plugin.instantiate().expect("instantiates"))
    });

    let mut slow = c.benchmark_group("load");
    slow.sample_size(10);
    slow.bench_function("cold_compile", |b| {
        b.iter(|| {
            runtime
                .load_mapper(
                    "cm",
                    builtin::CONTACT_MAPPING,
                    Limits::default(),
                    BTreeMap::new(),
                )
                .expect("compiles")
        })
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let cached = PluginRuntime::new(Some(dir.path().to_path_buf())).expect("engine starts");
    cached
        .load_mapper(
            "cm",
            builtin::CONTACT_MAPPING,
            Limits::default(),
            BTreeMap::new(),
        )
        .expect("fills the cache");
    slow.bench_function("warm_cache", |b| {
        b.iter(|| {
            cached
                .load_mapper(
                    "cm",
                    builtin::CONTACT_MAPPING,
                    Limits::default(),
                    BTreeMap::new(),
                )
                .expect("loads from cache")
        })
    });
    slow.finish();
}

criterion_group!(plugin_benches, benches);
criterion_main!(plugin_benches);

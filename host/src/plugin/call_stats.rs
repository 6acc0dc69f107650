//! How long plugin calls take, per plugin and function: a process-global histogram that
//! `GET /metrics` renders as `tandem_plugin_call_seconds`.
//!
//! Recording must cost next to nothing beside a call of a few microseconds: no lock, no
//! allocation once a (plugin, function) pair has been seen. Series live in a fixed table of
//! `OnceLock` slots found by hashing the pair (open addressing); the first call of a pair
//! fills a slot, every later one only reads it and adds to three atomics. When the table is
//! full, further pairs share one overflow series, so the number of series stays bounded.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Upper bounds of the histogram buckets, in seconds (a `+Inf` bucket follows).
pub const PLUGIN_CALL_BUCKETS: [f64; 12] =
    [0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.05, 0.25];

/// Bucket bounds in nanoseconds, for recording without floating point.
const BUCKET_NANOS: [u64; 12] =
    [10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000, 50_000_000, 250_000_000];

/// Distinct (plugin, function) pairs kept apart; more share [`OVERFLOW_PLUGIN`].
const SLOTS: usize = 256;

/// The plugin label of the shared series once [`SLOTS`] pairs are in use.
pub const OVERFLOW_PLUGIN: &str = "(other)";

struct Series {
    plugin: Box<str>,
    function: &'static str,
    /// Per bucket (not cumulative); the last one is `+Inf`.
    buckets: [AtomicU64; BUCKET_NANOS.len() + 1],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Series {
    fn new(plugin: &str, function: &'static str) -> Self {
        Self {
            plugin: plugin.into(),
            function,
            buckets: [const { AtomicU64::new(0) }; BUCKET_NANOS.len() + 1],
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
        }
    }

    fn is(&self, plugin: &str, function: &str) -> bool {
        self.function == function && &*self.plugin == plugin
    }

    fn observe(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let bucket = BUCKET_NANOS.iter().position(|&bound| nanos <= bound).unwrap_or(BUCKET_NANOS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

static TABLE: [OnceLock<Series>; SLOTS] = [const { OnceLock::new() }; SLOTS];
static OVERFLOW: OnceLock<Series> = OnceLock::new();

/// FNV-1a over the plugin name and the function name.
fn slot_of(plugin: &str, function: &str) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in plugin.bytes().chain([0]).chain(function.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % SLOTS as u64) as usize
}

fn series(plugin: &str, function: &'static str) -> &'static Series {
    let start = slot_of(plugin, function);
    for probe in 0..SLOTS {
        let slot = &TABLE[(start + probe) % SLOTS];
        let series = match slot.get() {
            Some(series) => series,
            // First call of some pair landing here: take the slot (another thread may win
            // it for another pair; then probe on).
            None => slot.get_or_init(|| Series::new(plugin, function)),
        };
        if series.is(plugin, function) {
            return series;
        }
    }
    OVERFLOW.get_or_init(|| Series::new(OVERFLOW_PLUGIN, "any"))
}

/// Adds one call of `function` of `plugin` that took `elapsed`.
pub fn record_plugin_call(plugin: &str, function: &'static str, elapsed: Duration) {
    series(plugin, function).observe(elapsed);
}

/// Times one plugin call from its creation to its drop, whichever way the call ends.
#[must_use = "the call is timed until this guard is dropped"]
pub struct PluginCallTimer<'a> {
    plugin: &'a str,
    function: &'static str,
    started: Instant,
}

impl<'a> PluginCallTimer<'a> {
    pub fn start(plugin: &'a str, function: &'static str) -> Self {
        Self { plugin, function, started: Instant::now() }
    }
}

impl Drop for PluginCallTimer<'_> {
    fn drop(&mut self) {
        record_plugin_call(self.plugin, self.function, self.started.elapsed());
    }
}

/// One series as `GET /metrics` renders it.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginCallSeries {
    pub plugin: String,
    pub function: &'static str,
    /// Cumulative counts per bound of [`PLUGIN_CALL_BUCKETS`] (`le`), then `+Inf`.
    pub cumulative: Vec<u64>,
    pub count: u64,
    pub sum_seconds: f64,
}

/// Every series recorded so far in this process, ordered by plugin then function.
pub fn plugin_call_series() -> Vec<PluginCallSeries> {
    let mut all: Vec<PluginCallSeries> = TABLE
        .iter()
        .chain(std::iter::once(&OVERFLOW))
        .filter_map(OnceLock::get)
        .map(|series| {
            let mut running = 0;
            let cumulative = series
                .buckets
                .iter()
                .map(|bucket| {
                    running += bucket.load(Ordering::Relaxed);
                    running
                })
                .collect();
            PluginCallSeries {
                plugin: series.plugin.to_string(),
                function: series.function,
                cumulative,
                count: series.count.load(Ordering::Relaxed),
                sum_seconds: series.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            }
        })
        .collect();
    all.sort_by(|a, b| (&a.plugin, a.function).cmp(&(&b.plugin, b.function)));
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(plugin: &str, function: &str) -> Option<PluginCallSeries> {
        plugin_call_series().into_iter().find(|s| s.plugin == plugin && s.function == function)
    }

    #[test]
    fn calls_land_in_their_bucket_and_series_stay_apart() {
        record_plugin_call("call-stats-test-a", "to_exchange", Duration::from_micros(7));
        record_plugin_call("call-stats-test-a", "to_exchange", Duration::from_millis(3));
        record_plugin_call("call-stats-test-a", "to_siebel", Duration::from_secs(2));
        let a = find("call-stats-test-a", "to_exchange").expect("series recorded");
        assert_eq!(a.count, 2);
        assert_eq!(a.cumulative[0], 1, "7 µs is within the 10 µs bucket");
        assert_eq!(a.cumulative[7], 1, "3 ms is above 2.5 ms");
        assert_eq!(a.cumulative[8], 2, "and within 5 ms");
        assert_eq!(*a.cumulative.last().unwrap_or(&0), 2);
        assert!((a.sum_seconds - 0.003_007).abs() < 1e-9, "{}", a.sum_seconds);
        let b = find("call-stats-test-a", "to_siebel").expect("series recorded");
        assert_eq!(b.count, 1);
        assert_eq!(b.cumulative[PLUGIN_CALL_BUCKETS.len() - 1], 0, "2 s is past the last bound");
        assert_eq!(b.cumulative[PLUGIN_CALL_BUCKETS.len()], 1, "+Inf holds it");
    }

    #[test]
    fn the_timer_records_on_drop() {
        {
            let _timer = PluginCallTimer::start("call-stats-test-timer", "include");
            std::thread::sleep(Duration::from_millis(1));
        }
        let series = find("call-stats-test-timer", "include").expect("the timer recorded the call");
        assert_eq!(series.count, 1);
        assert!(series.sum_seconds >= 0.001, "{}", series.sum_seconds);
    }

    /// A real plugin call is a `plugin_call` span (plugin and function as fields) and lands
    /// in its series.
    #[test]
    fn plugin_calls_are_spans_and_are_timed() -> anyhow::Result<()> {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let runtime = crate::plugin::PluginRuntime::new(None)?;
        let mapper = crate::plugin::load_default_contact_mapping(&runtime)?;
        let mut instance = mapper.instantiate()?;
        let before = find("contact-mapping", "to_siebel").map_or(0, |s| s.count);
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
            .finish();
        let ctx = crate::plugin::CallContext { domain: "contacts".into(), user: "SPANS".into() };
        let mut item = crate::record::Fields::new();
        item.insert("GivenName".into(), crate::record::Value::Text("Ada".into()));
        item.insert("Surname".into(), crate::record::Value::Text("Lovelace".into()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::callsite::rebuild_interest_cache();
            instance.to_siebel(&ctx, &item)
        })?;
        let text = String::from_utf8_lossy(&buffer.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
        let closed = text.lines().find(|l| l.contains("plugin_call") && l.contains("close"));
        assert!(
            closed.is_some_and(|l| l.contains("contact-mapping") && l.contains("to_siebel")),
            "no plugin_call span closed with its fields:\n{text}"
        );
        let after = find("contact-mapping", "to_siebel").map_or(0, |s| s.count);
        assert!(after > before, "the call was timed ({before} -> {after})");
        Ok(())
    }
}

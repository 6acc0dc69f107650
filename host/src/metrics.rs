//! What `GET /metrics` tells Prometheus: run outcomes, records per direction, conflicts,
//! errors, remote requests by kind, plugin call time, queue depth and sync lag, and the
//! seconds left before a sign-in credential (a certificate, a secret) expires.
//!
//! Counters are atomics added to where things happen (a run's report, a connector's send);
//! queue depth and lag are read from the state store at scrape time, so they are right on
//! every node sharing a PostgreSQL store. No family has a per-user label: with thousands of
//! users the lag is a maximum plus a count of users per lag bound.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::engine::{RunReport, WriteCounts};
use crate::oauth::CredentialExpiry;
use crate::plugin::{PLUGIN_CALL_BUCKETS, plugin_call_series};
use crate::store::SyncOverview;
use crate::telemetry::RemoteRequests;

/// Created, updated, deleted: one direction's record counters.
#[derive(Debug, Default)]
struct DirectionCounts {
    created: AtomicU64,
    updated: AtomicU64,
    deleted: AtomicU64,
}

impl DirectionCounts {
    fn add(&self, counts: WriteCounts) {
        self.created.fetch_add(counts.created, Ordering::Relaxed);
        self.updated.fetch_add(counts.updated, Ordering::Relaxed);
        self.deleted.fetch_add(counts.deleted, Ordering::Relaxed);
    }

    fn get(&self) -> [(&'static str, u64); 3] {
        [
            ("created", self.created.load(Ordering::Relaxed)),
            ("updated", self.updated.load(Ordering::Relaxed)),
            ("deleted", self.deleted.load(Ordering::Relaxed)),
        ]
    }

    fn total(&self) -> u64 {
        self.get().iter().map(|(_, n)| n).sum()
    }
}

/// Upper bounds (seconds) of the sync-lag buckets of `tandem_users_by_sync_lag`.
pub const LAG_BUCKETS_SECONDS: [i64; 9] = [30, 60, 120, 300, 600, 1800, 3600, 21_600, 86_400];

/// The counters behind `GET /metrics`.
#[derive(Debug)]
pub struct Metrics {
    syncs_ok: AtomicU64,
    syncs_failed: AtomicU64,
    /// Siebel → Exchange: what runs wrote to Exchange.
    to_exchange: DirectionCounts,
    /// Exchange → Siebel: what runs wrote to Siebel.
    to_siebel: DirectionCounts,
    conflicts: AtomicU64,
    record_errors: AtomicU64,
    siebel_requests: Arc<RemoteRequests>,
    ews_requests: Arc<RemoteRequests>,
    graph_requests: Arc<RemoteRequests>,
    /// The connectors' credentials whose expiry is known.
    credentials: Vec<CredentialExpiry>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(RemoteRequests::siebel(), RemoteRequests::ews())
    }
}

impl Metrics {
    /// Metrics reading the request counters of the service's connectors.
    pub fn new(siebel_requests: Arc<RemoteRequests>, ews_requests: Arc<RemoteRequests>) -> Self {
        Self {
            syncs_ok: AtomicU64::new(0),
            syncs_failed: AtomicU64::new(0),
            to_exchange: DirectionCounts::default(),
            to_siebel: DirectionCounts::default(),
            conflicts: AtomicU64::new(0),
            record_errors: AtomicU64::new(0),
            siebel_requests,
            ews_requests,
            graph_requests: RemoteRequests::graph(),
            credentials: Vec::new(),
        }
    }

    /// Watches when these credentials expire (`tandem_credential_expiry_seconds`).
    pub fn with_credential_expiries(mut self, credentials: impl IntoIterator<Item = CredentialExpiry>) -> Self {
        self.credentials.extend(credentials);
        self
    }

    /// The credentials whose expiry is watched, for the status.
    pub fn credential_expiries(&self) -> &[CredentialExpiry] {
        &self.credentials
    }

    /// Reads the request counters of the service's Graph connector too.
    pub fn with_graph_requests(mut self, graph_requests: Arc<RemoteRequests>) -> Self {
        self.graph_requests = graph_requests;
        self
    }

    /// Adds one run's report to the counters.
    pub fn observe(&self, report: &RunReport) {
        let counter = if report.status == "ok" { &self.syncs_ok } else { &self.syncs_failed };
        counter.fetch_add(1, Ordering::Relaxed);
        self.to_exchange.add(report.exchange);
        self.to_siebel.add(report.siebel);
        self.conflicts.fetch_add(report.conflicts, Ordering::Relaxed);
        self.record_errors.fetch_add(report.errors.len() as u64, Ordering::Relaxed);
    }

    /// The Prometheus text exposition (format 0.0.4). `overview` is the store's view of
    /// the schedule; without it the queue and lag families are left out.
    pub fn render(&self, overview: Option<&SyncOverview>, now_ms: i64) -> String {
        let mut out = String::with_capacity(4096);
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        family(&mut out, "tandem_syncs_total", "counter", "User syncs run, by result.");
        sample(&mut out, "tandem_syncs_total", &[("result", "ok")], get(&self.syncs_ok));
        sample(&mut out, "tandem_syncs_total", &[("result", "failed")], get(&self.syncs_failed));

        family(&mut out, "tandem_records_total", "counter", "Records written by syncs, by direction and operation.");
        for (direction, counts) in [("siebel_to_exchange", &self.to_exchange), ("exchange_to_siebel", &self.to_siebel)] {
            for (op, n) in counts.get() {
                sample(&mut out, "tandem_records_total", &[("direction", direction), ("op", op)], n);
            }
        }
        // Kept from the first version of /metrics: the same writes, by the side written.
        family(&mut out, "tandem_writes_total", "counter", "Records written, by side.");
        sample(&mut out, "tandem_writes_total", &[("side", "exchange")], self.to_exchange.total());
        sample(&mut out, "tandem_writes_total", &[("side", "siebel")], self.to_siebel.total());

        family(&mut out, "tandem_conflicts_total", "counter", "Pairs changed on both sides.");
        sample(&mut out, "tandem_conflicts_total", &[], get(&self.conflicts));
        family(
            &mut out,
            "tandem_errors_total",
            "counter",
            "Errors reported by runs (records set aside, failed runs).",
        );
        sample(&mut out, "tandem_errors_total", &[], get(&self.record_errors));

        family(
            &mut out,
            "tandem_remote_requests_total",
            "counter",
            "Requests sent to Siebel and Exchange (each try), by system (siebel, exchange for EWS, graph) and kind.",
        );
        for requests in [&self.siebel_requests, &self.ews_requests, &self.graph_requests] {
            for (kind, n) in requests.labelled() {
                sample(&mut out, "tandem_remote_requests_total", &[("system", requests.system), ("kind", kind)], n);
            }
        }

        family(
            &mut out,
            "tandem_plugin_call_seconds",
            "histogram",
            "Time of plugin calls (including a fresh instantiation after a trap), by plugin and function.",
        );
        for series in plugin_call_series() {
            let labels = [("plugin", series.plugin.as_str()), ("function", series.function)];
            for (bound, n) in PLUGIN_CALL_BUCKETS.iter().zip(&series.cumulative) {
                let le = bound.to_string();
                sample(&mut out, "tandem_plugin_call_seconds_bucket", &[labels[0], labels[1], ("le", &le)], *n);
            }
            let all = series.cumulative.last().copied().unwrap_or(0);
            sample(&mut out, "tandem_plugin_call_seconds_bucket", &[labels[0], labels[1], ("le", "+Inf")], all);
            sample_f64(&mut out, "tandem_plugin_call_seconds_sum", &labels, series.sum_seconds);
            sample(&mut out, "tandem_plugin_call_seconds_count", &labels, series.count);
        }

        if !self.credentials.is_empty() {
            family(
                &mut out,
                "tandem_credential_expiry_seconds",
                "gauge",
                "Seconds until a sign-in credential expires (negative once expired), by endpoint and kind (certificate, secret); credentials of unknown expiry are left out.",
            );
            let now = chrono::DateTime::from_timestamp_millis(now_ms).unwrap_or_default();
            for credential in &self.credentials {
                let labels = [("endpoint", credential.endpoint), ("kind", credential.kind)];
                sample_f64(&mut out, "tandem_credential_expiry_seconds", &labels, credential.seconds_left(now) as f64);
            }
        }

        if let Some(overview) = overview {
            family(&mut out, "tandem_users", "gauge", "Users in the user map, by state.");
            sample(&mut out, "tandem_users", &[("state", "enabled")], overview.enabled);
            sample(&mut out, "tandem_users", &[("state", "disabled")], overview.disabled);
            family(
                &mut out,
                "tandem_queue_users",
                "gauge",
                "Enabled users by schedule state: due (waiting for a free slot) or running (leased to a node).",
            );
            sample(&mut out, "tandem_queue_users", &[("state", "due")], overview.due);
            sample(&mut out, "tandem_queue_users", &[("state", "running")], overview.running);

            let lags: Vec<i64> =
                overview.last_ok_ms.iter().flatten().map(|finished| ((now_ms - finished) / 1000).max(0)).collect();
            let never = overview.last_ok_ms.iter().filter(|t| t.is_none()).count() as u64;
            family(
                &mut out,
                "tandem_sync_lag_max_seconds",
                "gauge",
                "Longest time since an enabled user's last successful sync.",
            );
            sample(&mut out, "tandem_sync_lag_max_seconds", &[], lags.iter().copied().max().unwrap_or(0) as u64);
            family(
                &mut out,
                "tandem_users_by_sync_lag",
                "gauge",
                "Enabled users whose last successful sync is at most `le` seconds old.",
            );
            for bound in LAG_BUCKETS_SECONDS {
                let le = bound.to_string();
                let n = lags.iter().filter(|lag| **lag <= bound).count() as u64;
                sample(&mut out, "tandem_users_by_sync_lag", &[("le", &le)], n);
            }
            sample(&mut out, "tandem_users_by_sync_lag", &[("le", "+Inf")], lags.len() as u64);
            family(&mut out, "tandem_users_never_synced", "gauge", "Enabled users without a successful sync yet.");
            sample(&mut out, "tandem_users_never_synced", &[], never);
        }
        out
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn labels_text(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape_label(v))).collect();
    format!("{{{}}}", inner.join(","))
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: u64) {
    let _ = writeln!(out, "{name}{} {value}", labels_text(labels));
}

fn sample_f64(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    let _ = writeln!(out, "{name}{} {value}", labels_text(labels));
}

/// Label values escape `\`, `"` and newlines (plugin names come from packages).
fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample whose line starts with `prefix` (name plus labels).
    fn value(text: &str, prefix: &str) -> Option<f64> {
        text.lines().find(|l| l.starts_with(prefix) && l[prefix.len()..].starts_with(' '))?.rsplit(' ').next()?.parse().ok()
    }

    #[test]
    fn every_family_is_rendered_and_moves() {
        let siebel = RemoteRequests::siebel();
        let ews = RemoteRequests::ews();
        let graph = RemoteRequests::graph();
        let metrics = Metrics::new(siebel.clone(), ews.clone()).with_graph_requests(graph.clone());
        let before = metrics.render(Some(&SyncOverview::default()), 0);
        for family in [
            "tandem_syncs_total",
            "tandem_records_total",
            "tandem_conflicts_total",
            "tandem_errors_total",
            "tandem_remote_requests_total",
            "tandem_plugin_call_seconds",
            "tandem_queue_users",
            "tandem_sync_lag_max_seconds",
            "tandem_users_by_sync_lag",
            "tandem_users_never_synced",
        ] {
            assert!(before.contains(&format!("# TYPE {family} ")), "{family} missing:\n{before}");
        }
        let report = RunReport {
            status: "ok".into(),
            exchange: WriteCounts { created: 2, updated: 1, deleted: 0 },
            siebel: WriteCounts { created: 0, updated: 3, deleted: 0 },
            conflicts: 1,
            ..Default::default()
        };
        metrics.observe(&report);
        siebel.count("query");
        siebel.count("query");
        siebel.count("PATCH-something");
        ews.count("SyncFolderItems");
        graph.count("GET");
        graph.count("batch");
        crate::plugin::record_plugin_call("metrics-test-plugin", "to_exchange", std::time::Duration::from_micros(30));
        let overview = SyncOverview {
            enabled: 3,
            disabled: 1,
            due: 2,
            running: 1,
            last_ok_ms: vec![Some(100_000), Some(10_000), None],
        };
        let after = metrics.render(Some(&overview), 130_000);
        let expect = [
            ("tandem_syncs_total{result=\"ok\"}", 1.0),
            ("tandem_records_total{direction=\"siebel_to_exchange\",op=\"created\"}", 2.0),
            ("tandem_records_total{direction=\"exchange_to_siebel\",op=\"updated\"}", 3.0),
            ("tandem_conflicts_total", 1.0),
            ("tandem_remote_requests_total{system=\"siebel\",kind=\"query\"}", 2.0),
            ("tandem_remote_requests_total{system=\"siebel\",kind=\"other\"}", 1.0),
            ("tandem_remote_requests_total{system=\"exchange\",kind=\"SyncFolderItems\"}", 1.0),
            ("tandem_remote_requests_total{system=\"exchange\",kind=\"GetItem\"}", 0.0),
            ("tandem_remote_requests_total{system=\"graph\",kind=\"GET\"}", 1.0),
            ("tandem_remote_requests_total{system=\"graph\",kind=\"batch\"}", 1.0),
            ("tandem_remote_requests_total{system=\"graph\",kind=\"PATCH\"}", 0.0),
            ("tandem_plugin_call_seconds_count{plugin=\"metrics-test-plugin\",function=\"to_exchange\"}", 1.0),
            ("tandem_plugin_call_seconds_bucket{plugin=\"metrics-test-plugin\",function=\"to_exchange\",le=\"+Inf\"}", 1.0),
            ("tandem_queue_users{state=\"due\"}", 2.0),
            ("tandem_queue_users{state=\"running\"}", 1.0),
            ("tandem_sync_lag_max_seconds", 120.0),
            ("tandem_users_by_sync_lag{le=\"30\"}", 1.0),
            ("tandem_users_by_sync_lag{le=\"120\"}", 2.0),
            ("tandem_users_by_sync_lag{le=\"+Inf\"}", 2.0),
            ("tandem_users_never_synced", 1.0),
        ];
        for (prefix, wanted) in expect {
            assert_eq!(value(&after, prefix), Some(wanted), "{prefix} in\n{after}");
        }
        assert_eq!(value(&before, "tandem_syncs_total{result=\"ok\"}"), Some(0.0));
    }

    #[test]
    fn credential_expiry_is_a_gauge_of_seconds_left_only_when_known() {
        let none = Metrics::default().render(None, 0);
        assert!(!none.contains("tandem_credential_expiry_seconds"), "no credential of known expiry: no family");
        let expires_at = chrono::DateTime::from_timestamp(1_000_000, 0).expect("a time");
        let metrics = Metrics::default().with_credential_expiries([
            CredentialExpiry { endpoint: "graph", kind: "certificate", expires_at },
            CredentialExpiry { endpoint: "siebel", kind: "secret", expires_at },
        ]);
        let text = metrics.render(None, 999_000 * 1000);
        assert!(text.contains("# TYPE tandem_credential_expiry_seconds gauge"), "{text}");
        let prefix = "tandem_credential_expiry_seconds{endpoint=\"graph\",kind=\"certificate\"}";
        assert_eq!(value(&text, prefix), Some(1000.0), "{text}");
        let expired = metrics.render(None, 1_000_060 * 1000);
        assert_eq!(value(&expired, "tandem_credential_expiry_seconds{endpoint=\"siebel\",kind=\"secret\"}"), Some(-60.0));
        assert_eq!(metrics.credential_expiries().len(), 2);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}

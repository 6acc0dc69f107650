//! Outlook-resource throttling per app and mailbox, as Microsoft documents it: at most N
//! requests in a sliding window (10,000 per 10 minutes) and C requests at once (4). Over a
//! limit the request gets 429 with `Retry-After`; the limits can be scaled down for tests.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Throttling limits per (app, mailbox).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThrottleLimits {
    /// Requests admitted per window (Outlook: 10,000).
    pub requests_per_window: u32,
    /// The window's length in milliseconds (Outlook: 600,000 — 10 minutes).
    pub window_ms: u64,
    /// Requests in progress at once (Outlook: 4).
    pub concurrent_requests: u32,
}

impl Default for ThrottleLimits {
    fn default() -> Self {
        Self {
            requests_per_window: 10_000,
            window_ms: 600_000,
            concurrent_requests: 4,
        }
    }
}

/// Why a request was refused, and when to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttled {
    TooManyRequests { retry_after_secs: u64 },
    TooManyConcurrent { retry_after_secs: u64 },
}

#[derive(Debug, Default)]
struct Bucket {
    admitted: VecDeque<Instant>,
    in_flight: u32,
}

/// What throttling did since start (for tests and benchmarks of a client's pacing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThrottleReport {
    pub limits: ThrottleLimits,
    /// Requests answered 429 by throttling (injected `throttled` faults not included).
    pub throttled_requests: u64,
    /// The most requests of one app and mailbox seen in progress at once.
    pub peak_concurrency: u32,
}

/// The throttle state of every (app, mailbox).
#[derive(Debug, Default)]
pub struct Throttle {
    limits: Mutex<ThrottleLimits>,
    buckets: Mutex<HashMap<(String, String), Bucket>>,
    throttled: AtomicU64,
    peak_concurrency: AtomicU32,
}

/// A request's place among the concurrent ones; released when dropped.
#[derive(Debug)]
pub struct Slot {
    throttle: Arc<Throttle>,
    key: (String, String),
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut buckets = self
            .throttle
            .buckets
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(bucket) = buckets.get_mut(&self.key) {
            bucket.in_flight = bucket.in_flight.saturating_sub(1);
        }
    }
}

impl Throttle {
    pub fn new(limits: ThrottleLimits) -> Arc<Self> {
        Arc::new(Self {
            limits: Mutex::new(limits),
            ..Default::default()
        })
    }

    pub fn report(&self) -> ThrottleReport {
        ThrottleReport {
            limits: self.limits(),
            throttled_requests: self.throttled.load(Ordering::Relaxed),
            peak_concurrency: self.peak_concurrency.load(Ordering::Relaxed),
        }
    }

    pub fn limits(&self) -> ThrottleLimits {
        *self.limits.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// New limits; the counts so far are forgotten.
    pub fn set_limits(&self, limits: ThrottleLimits) {
        *self.limits.lock().unwrap_or_else(|p| p.into_inner()) = limits;
        self.buckets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, b| b.in_flight > 0);
        for bucket in self
            .buckets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values_mut()
        {
            bucket.admitted.clear();
        }
    }

    /// Admits one request of `app` on `mailbox`, or says why not.
    pub fn admit(self: &Arc<Self>, app: &str, mailbox: &str) -> Result<Slot, Throttled> {
        let limits = self.limits();
        let window = Duration::from_millis(limits.window_ms);
        let now = Instant::now();
        let key = (app.to_owned(), mailbox.to_ascii_lowercase());
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets.entry(key.clone()).or_default();
        while bucket
            .admitted
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            bucket.admitted.pop_front();
        }
        if bucket.in_flight >= limits.concurrent_requests {
            self.throttled.fetch_add(1, Ordering::Relaxed);
            return Err(Throttled::TooManyConcurrent {
                retry_after_secs: 1,
            });
        }
        if bucket.admitted.len() >= limits.requests_per_window as usize {
            let oldest = bucket.admitted.front().copied().unwrap_or(now);
            let wait = window.saturating_sub(now.duration_since(oldest));
            let secs = wait.as_millis().div_ceil(1000).max(1) as u64;
            self.throttled.fetch_add(1, Ordering::Relaxed);
            return Err(Throttled::TooManyRequests {
                retry_after_secs: secs,
            });
        }
        bucket.admitted.push_back(now);
        bucket.in_flight += 1;
        self.peak_concurrency
            .fetch_max(bucket.in_flight, Ordering::Relaxed);
        Ok(Slot {
            throttle: self.clone(),
            key,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn limits_requests_per_window_and_concurrency() {
        let throttle = Throttle::new(ThrottleLimits {
            requests_per_window: 3,
            window_ms: 60_000,
            concurrent_requests: 2,
        });
        let a = throttle.admit("app", "m").unwrap();
        let _b = throttle.admit("app", "m").unwrap();
        assert!(matches!(
            throttle.admit("app", "m"),
            Err(Throttled::TooManyConcurrent { .. })
        ));
        let _other_mailbox = throttle.admit("app", "n").unwrap();
        drop(a);
        let _c = throttle.admit("app", "m").unwrap();
        drop(_c);
        match throttle.admit("app", "m") {
            Err(Throttled::TooManyRequests { retry_after_secs }) => {
                assert!((59..=60).contains(&retry_after_secs))
            }
            other => panic!("expected the window limit, got {other:?}"),
        }
        let _other_app = throttle.admit("app2", "m").unwrap();
        let report = throttle.report();
        assert_eq!((report.throttled_requests, report.peak_concurrency), (2, 2));
    }
}

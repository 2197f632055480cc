//! Per-backend sliding windows: calls, errors, bytes, latency quantiles, bandwidth and
//! availability, plus the cached latency prediction the hedged reader asks for on every GET.

use super::histogram::LatencyHistogram;
use super::window::{epoch_of, SlotData, SlotRing, Window};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

/// Calls moving at least this many bytes measure bandwidth; smaller ones are dominated by
/// per-request latency and would make every backend look slow.
pub const BANDWIDTH_MIN_BYTES: u64 = 64 * 1024;
/// How long a computed prediction is reused before it is recomputed from the slots.
pub const PREDICTION_TTL: Duration = Duration::from_millis(250);
/// Fewer answered calls than this in the last minute give no prediction.
pub const PREDICTION_MIN_SAMPLES: u64 = 3;

/// A kind of call to a storage backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendOp {
    /// Read of an object or a range of it.
    Get,
    /// Write of an object or one part of it.
    Put,
    /// Removal of an object.
    Delete,
    /// Listing of a prefix.
    List,
    /// Metadata read.
    Head,
    /// A read of the gateway's own audit object on a timer (never hedged, never cancelled):
    /// the backend's latency as it is, whatever the readers avoid.
    Audit,
}

impl BackendOp {
    /// Every operation.
    pub const ALL: [BackendOp; 6] = [
        BackendOp::Get,
        BackendOp::Put,
        BackendOp::Delete,
        BackendOp::List,
        BackendOp::Head,
        BackendOp::Audit,
    ];

    /// Lowercase name, as serialized.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            BackendOp::Get => "get",
            BackendOp::Put => "put",
            BackendOp::Delete => "delete",
            BackendOp::List => "list",
            BackendOp::Head => "head",
            BackendOp::Audit => "audit",
        }
    }
}

/// How a backend call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The call succeeded.
    Ok,
    /// The object does not exist: an answer, not a fault of the backend.
    NotFound,
    /// The call failed.
    Error,
    /// The caller stopped waiting (a hedged read that lost the race). Its latency is the time
    /// it had taken: a lower bound, kept because it is exactly what marks a slow backend, where
    /// leaving it out would keep a backend that is always abandoned looking fast.
    Cancelled,
}

impl Outcome {
    /// Snake-case name, as serialized.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::NotFound => "not_found",
            Outcome::Error => "error",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// Predicted latency of the next call, from the last minute of answered calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prediction {
    /// Median latency.
    pub p50: Duration,
    /// 95th-percentile latency: wait this long before hedging.
    pub p95: Duration,
    /// Answered calls the prediction is based on.
    pub samples: u64,
}

/// Statistics of one operation kind that keeps a latency histogram (GET, PUT) over a window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OpStats {
    /// Calls.
    pub count: u64,
    /// Failed calls ("not found" is not a failure).
    pub errors: u64,
    /// Bytes moved.
    pub bytes: u64,
    /// Mean latency of answered calls, ms.
    pub mean_ms: Option<f64>,
    /// Median latency of answered calls, ms.
    pub p50_ms: Option<f64>,
    /// 95th-percentile latency of answered calls, ms.
    pub p95_ms: Option<f64>,
    /// 99th-percentile latency of answered calls, ms.
    pub p99_ms: Option<f64>,
    /// Largest latency of an answered call, ms.
    pub max_ms: Option<f64>,
    /// Bytes per second (MiB/s) over successful calls moving at least 64 KiB.
    pub bandwidth_mib_s: Option<f64>,
}

/// Counts of the operations without a histogram (DELETE, LIST, HEAD together) over a window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OpCounts {
    /// Calls.
    pub count: u64,
    /// Failed calls ("not found" is not a failure).
    pub errors: u64,
    /// Bytes moved.
    pub bytes: u64,
    /// Mean latency of answered calls, ms.
    pub mean_ms: Option<f64>,
}

/// One backend's statistics over one window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackendWindow {
    /// Which window.
    pub window: Window,
    /// Its length.
    pub seconds: u64,
    /// Reads.
    pub get: OpStats,
    /// Writes.
    pub put: OpStats,
    /// The gateway's own audit reads: unhedged, so unlike `get` never shortened by a read
    /// abandoned for a faster shard.
    #[serde(default)]
    pub audit: OpStats,
    /// Deletes, listings and metadata reads.
    pub other: OpCounts,
    /// Calls of every kind.
    pub calls: u64,
    /// Failed calls of every kind.
    pub errors: u64,
    /// `errors / calls` (`None` without calls).
    pub error_rate: Option<f64>,
    /// Share of health samples that found the backend healthy (`None` without samples).
    pub availability: Option<f64>,
    /// Shard blocks read from the backend that failed their CRC32C or keyed MAC, or were
    /// found rewritten by authenticating their block: evidence of bitrot or tampering.
    #[serde(default)]
    pub integrity_failures: u64,
}

/// One backend's counts since the gateway started (monotonic, unlike the windows).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendTotal {
    /// Calls of every kind.
    pub calls: u64,
    /// Failed calls of every kind.
    pub errors: u64,
    /// Shard blocks that failed their integrity checks (see [`BackendWindow::integrity_failures`]).
    pub integrity_failures: u64,
}

/// One backend's statistics over every window, shortest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackendSnapshot {
    /// Backend id.
    pub backend: String,
    /// 1 m, 15 m, 1 h, then the last 15 s.
    pub windows: Vec<BackendWindow>,
    /// Since the gateway started.
    #[serde(default)]
    pub total: BackendTotal,
}

/// Counters of one operation kind in one slot (or merged over a window).
#[derive(Clone, Debug, Default)]
struct Counters {
    count: u64,
    errors: u64,
    bytes: u64,
    /// Calls that got an answer (success or "not found"): the latency sum's denominator.
    answered: u64,
    latency_sum_us: u64,
    /// Bytes and time of successful calls of at least [`BANDWIDTH_MIN_BYTES`].
    bw_bytes: u64,
    bw_us: u64,
}

impl Counters {
    fn record(&mut self, us: u64, bytes: u64, outcome: Outcome) {
        self.count += 1;
        self.bytes = self.bytes.saturating_add(bytes);
        if outcome == Outcome::Error {
            self.errors += 1;
            return;
        }
        self.answered += 1;
        self.latency_sum_us = self.latency_sum_us.saturating_add(us);
        if outcome == Outcome::Ok && bytes >= BANDWIDTH_MIN_BYTES {
            self.bw_bytes = self.bw_bytes.saturating_add(bytes);
            self.bw_us = self.bw_us.saturating_add(us);
        }
    }

    fn merge(&mut self, o: &Self) {
        self.count += o.count;
        self.errors += o.errors;
        self.bytes = self.bytes.saturating_add(o.bytes);
        self.answered += o.answered;
        self.latency_sum_us = self.latency_sum_us.saturating_add(o.latency_sum_us);
        self.bw_bytes = self.bw_bytes.saturating_add(o.bw_bytes);
        self.bw_us = self.bw_us.saturating_add(o.bw_us);
    }

    fn bandwidth_mib_s(&self) -> Option<f64> {
        (self.bw_us > 0).then(|| (self.bw_bytes as f64 / f64::from(1 << 20)) / (self.bw_us as f64 / 1e6))
    }

    fn op_counts(&self) -> OpCounts {
        OpCounts {
            count: self.count,
            errors: self.errors,
            bytes: self.bytes,
            mean_ms: (self.answered > 0).then(|| self.latency_sum_us as f64 / self.answered as f64 / 1e3),
        }
    }
}

impl SlotData for Counters {
    fn reset(&mut self) {
        *self = Self::default();
    }
}

/// GET or PUT in one slot: counters plus the latency histogram of answered calls (errors are
/// left out: a refused connection fails in microseconds and would make a dead backend look
/// fast to the hedged reader).
#[derive(Clone, Debug, Default)]
struct Transfer {
    counters: Counters,
    latency: LatencyHistogram,
}

impl Transfer {
    fn record(&mut self, us: u64, bytes: u64, outcome: Outcome) {
        self.counters.record(us, bytes, outcome);
        match outcome {
            Outcome::Error => {}
            // An abandoned call had not finished after `us`: it counts as twice that. Counted
            // as `us` it would pin a backend that always loses the hedge race at its own hedge
            // delay (the reader cancels it at its predicted p95, which then never grows);
            // doubled, each loss pushes it further back until it is ranked behind the others
            // or its real answers come in.
            Outcome::Cancelled => self.latency.record_micros(us.saturating_mul(2)),
            Outcome::Ok | Outcome::NotFound => self.latency.record_micros(us),
        }
    }

    fn merge(&mut self, o: &Self) {
        self.counters.merge(&o.counters);
        self.latency.merge(&o.latency);
    }

    fn op_stats(&self) -> OpStats {
        let h = &self.latency;
        let q = |q| h.quantile(q).map(ms);
        OpStats {
            count: self.counters.count,
            errors: self.counters.errors,
            bytes: self.counters.bytes,
            mean_ms: h.mean().map(ms),
            p50_ms: q(0.5),
            p95_ms: q(0.95),
            p99_ms: q(0.99),
            max_ms: h.max().map(ms),
            bandwidth_mib_s: self.counters.bandwidth_mib_s(),
        }
    }
}

impl SlotData for Transfer {
    fn reset(&mut self) {
        self.counters.reset();
        self.latency.clear();
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// One backend's 5 seconds. Health is sampled every second even on idle backends, so it lives
/// inline; the call payloads are boxed and allocated on first use, so an idle backend's hour
/// costs 48 bytes a slot instead of ~3 KiB.
#[derive(Debug, Default)]
struct BackendSlot {
    healthy: u32,
    health_samples: u32,
    integrity_failures: u64,
    get: Option<Box<Transfer>>,
    put: Option<Box<Transfer>>,
    audit: Option<Box<Transfer>>,
    other: Option<Box<Counters>>,
}

impl SlotData for BackendSlot {
    fn reset(&mut self) {
        self.healthy = 0;
        self.health_samples = 0;
        self.integrity_failures = 0;
        self.get.reset();
        self.put.reset();
        self.audit.reset();
        self.other.reset();
    }
}

#[derive(Clone, Copy, Debug)]
struct CachedPrediction {
    computed_at: Instant,
    epoch: u64,
    value: Option<Prediction>,
}

#[derive(Debug, Default)]
struct BackendState {
    ring: SlotRing<BackendSlot>,
    /// GET and PUT predictions.
    cache: [Option<CachedPrediction>; 2],
    total: BackendTotal,
}

/// Everything merged over one window.
#[derive(Default)]
struct WindowAcc {
    get: Transfer,
    put: Transfer,
    audit: Transfer,
    other: Counters,
    healthy: u64,
    health_samples: u64,
    integrity_failures: u64,
}

impl WindowAcc {
    fn add(&mut self, s: &BackendSlot) {
        if let Some(g) = &s.get {
            self.get.merge(g);
        }
        if let Some(p) = &s.put {
            self.put.merge(p);
        }
        if let Some(a) = &s.audit {
            self.audit.merge(a);
        }
        if let Some(o) = &s.other {
            self.other.merge(o);
        }
        self.healthy += u64::from(s.healthy);
        self.health_samples += u64::from(s.health_samples);
        self.integrity_failures = self.integrity_failures.saturating_add(s.integrity_failures);
    }

    fn finish(&self, window: Window) -> BackendWindow {
        let calls = self.get.counters.count + self.put.counters.count + self.audit.counters.count + self.other.count;
        let errors =
            self.get.counters.errors + self.put.counters.errors + self.audit.counters.errors + self.other.errors;
        BackendWindow {
            window,
            seconds: window.seconds(),
            get: self.get.op_stats(),
            put: self.put.op_stats(),
            audit: self.audit.op_stats(),
            other: self.other.op_counts(),
            calls,
            errors,
            error_rate: (calls > 0).then(|| errors as f64 / calls as f64),
            availability: (self.health_samples > 0).then(|| self.healthy as f64 / self.health_samples as f64),
            integrity_failures: self.integrity_failures,
        }
    }
}

/// Sliding-window statistics of every backend; shared by reference between all tasks.
#[derive(Debug)]
pub struct BackendStats {
    origin: Instant,
    backends: RwLock<BTreeMap<String, Mutex<BackendState>>>,
}

impl Default for BackendStats {
    fn default() -> Self {
        Self::new()
    }
}

impl BackendStats {
    /// Empty statistics whose slots start now.
    #[must_use]
    pub fn new() -> Self {
        Self::new_at(Instant::now())
    }

    /// Empty statistics whose slots start at `origin`.
    #[must_use]
    pub fn new_at(origin: Instant) -> Self {
        Self {
            origin,
            backends: RwLock::new(BTreeMap::new()),
        }
    }

    /// Runs `f` on `backend`'s state, registering the backend first if needed. The map's read
    /// lock is held across the backend's lock; only registration takes the write lock.
    fn with_backend<R>(&self, backend: &str, f: impl FnOnce(&mut BackendState) -> R) -> R {
        {
            let map = self.backends.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(state) = map.get(backend) {
                return f(&mut state.lock().unwrap_or_else(PoisonError::into_inner));
            }
        }
        let mut map = self.backends.write().unwrap_or_else(PoisonError::into_inner);
        let state = map.entry(backend.to_owned()).or_default();
        f(state.get_mut().unwrap_or_else(PoisonError::into_inner))
    }

    /// Registers `backend` so that snapshots list it before its first call.
    pub fn ensure(&self, backend: &str) {
        self.with_backend(backend, |_| ());
    }

    /// Known backend ids, sorted.
    #[must_use]
    pub fn backends(&self) -> Vec<String> {
        let map = self.backends.read().unwrap_or_else(PoisonError::into_inner);
        map.keys().cloned().collect()
    }

    /// Records one finished call.
    pub fn record(&self, backend: &str, op: BackendOp, latency: Duration, bytes: u64, outcome: Outcome) {
        self.record_at(Instant::now(), backend, op, latency, bytes, outcome);
    }

    /// Records one call that finished at `now`.
    pub fn record_at(
        &self,
        now: Instant,
        backend: &str,
        op: BackendOp,
        latency: Duration,
        bytes: u64,
        outcome: Outcome,
    ) {
        let epoch = epoch_of(self.origin, now);
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.with_backend(backend, |state| {
            // A backend without a prediction yet gets one as soon as it has the samples: a
            // cached "unknown" would keep the reader trying a slow backend for a whole TTL.
            let which = match op {
                BackendOp::Get => Some(0),
                BackendOp::Put => Some(1),
                BackendOp::Delete | BackendOp::List | BackendOp::Head | BackendOp::Audit => None,
            };
            if let Some(w) = which {
                if state.cache[w].is_some_and(|c| c.value.is_none()) {
                    state.cache[w] = None;
                }
            }
            state.total.calls += 1;
            state.total.errors += u64::from(outcome == Outcome::Error);
            let Some(slot) = state.ring.slot_mut(epoch) else {
                return;
            };
            match op {
                BackendOp::Get => slot.get.get_or_insert_with(Box::default).record(us, bytes, outcome),
                BackendOp::Put => slot.put.get_or_insert_with(Box::default).record(us, bytes, outcome),
                BackendOp::Audit => slot.audit.get_or_insert_with(Box::default).record(us, bytes, outcome),
                BackendOp::Delete | BackendOp::List | BackendOp::Head => {
                    slot.other.get_or_insert_with(Box::default).record(us, bytes, outcome);
                }
            }
        });
    }

    /// Records `blocks` shard blocks read from `backend` that failed their integrity checks.
    pub fn record_integrity_failures(&self, backend: &str, blocks: u64) {
        self.record_integrity_failures_at(Instant::now(), backend, blocks);
    }

    /// Records `blocks` failed shard blocks found at `now`.
    pub fn record_integrity_failures_at(&self, now: Instant, backend: &str, blocks: u64) {
        if blocks == 0 {
            return;
        }
        let epoch = epoch_of(self.origin, now);
        self.with_backend(backend, |state| {
            state.total.integrity_failures = state.total.integrity_failures.saturating_add(blocks);
            if let Some(slot) = state.ring.slot_mut(epoch) {
                slot.integrity_failures = slot.integrity_failures.saturating_add(blocks);
            }
        });
    }

    /// Records one health sample (the server takes about one a second).
    pub fn record_health(&self, backend: &str, healthy: bool) {
        self.record_health_at(Instant::now(), backend, healthy);
    }

    /// Records one health sample taken at `now`.
    pub fn record_health_at(&self, now: Instant, backend: &str, healthy: bool) {
        let epoch = epoch_of(self.origin, now);
        self.with_backend(backend, |state| {
            if let Some(slot) = state.ring.slot_mut(epoch) {
                slot.health_samples += 1;
                slot.healthy += u32::from(healthy);
            }
        });
    }

    /// Every backend over every window, sorted by backend id.
    #[must_use]
    pub fn snapshot(&self) -> Vec<BackendSnapshot> {
        self.snapshot_at(Instant::now())
    }

    /// Every backend over every window ending at `now`, sorted by backend id.
    #[must_use]
    pub fn snapshot_at(&self, now: Instant) -> Vec<BackendSnapshot> {
        let epoch = epoch_of(self.origin, now);
        let map = self.backends.read().unwrap_or_else(PoisonError::into_inner);
        map.iter()
            .map(|(id, state)| {
                let mut accs: [WindowAcc; 4] = Default::default();
                let total = {
                    let state = state.lock().unwrap_or_else(PoisonError::into_inner);
                    // One pass over the hour, each slot feeding every window it falls in.
                    for (age, slot) in state.ring.recent(epoch, Window::OneHour.slots()) {
                        for (acc, w) in accs.iter_mut().zip(Window::BACKEND) {
                            if age < w.slots() {
                                acc.add(slot);
                            }
                        }
                    }
                    state.total
                };
                BackendSnapshot {
                    backend: id.clone(),
                    windows: accs.iter().zip(Window::BACKEND).map(|(a, w)| a.finish(w)).collect(),
                    total,
                }
            })
            .collect()
    }

    /// Predicted latency of `op` on `backend` from the last minute (`None` with fewer than 3
    /// answered calls, for an unknown backend, and for operations without a histogram: only
    /// GET and PUT have one).
    #[must_use]
    pub fn predict(&self, backend: &str, op: BackendOp) -> Option<Prediction> {
        self.predict_at(Instant::now(), backend, op)
    }

    /// [`Self::predict`] as of `now`. Reuses the last computation for up to 250 ms within the
    /// same slot: the hedged reader asks for every shard of every GET.
    #[must_use]
    pub fn predict_at(&self, now: Instant, backend: &str, op: BackendOp) -> Option<Prediction> {
        let which = match op {
            BackendOp::Get => 0,
            BackendOp::Put => 1,
            BackendOp::Delete | BackendOp::List | BackendOp::Head | BackendOp::Audit => return None,
        };
        let epoch = epoch_of(self.origin, now);
        let map = self.backends.read().unwrap_or_else(PoisonError::into_inner);
        let mut state = map.get(backend)?.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = state.cache[which] {
            if c.epoch == epoch && now.saturating_duration_since(c.computed_at) < PREDICTION_TTL {
                return c.value;
            }
        }
        let mut h = LatencyHistogram::new();
        for (_, slot) in state.ring.recent(epoch, Window::OneMinute.slots()) {
            let t = if which == 0 { &slot.get } else { &slot.put };
            if let Some(t) = t {
                h.merge(&t.latency);
            }
        }
        let value = (h.count() >= PREDICTION_MIN_SAMPLES).then(|| Prediction {
            p50: h.quantile(0.5).unwrap_or_default(),
            p95: h.quantile(0.95).unwrap_or_default(),
            samples: h.count(),
        });
        state.cache[which] = Some(CachedPrediction {
            computed_at: now,
            epoch,
            value,
        });
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * 1024;

    fn ms_(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn window(s: &BackendSnapshot, w: Window) -> &BackendWindow {
        s.windows.iter().find(|x| x.window == w).unwrap()
    }

    fn assert_close(got: Option<f64>, want: f64, rel: f64) {
        let got = got.expect("a value");
        assert!((got - want).abs() <= want.abs() * rel, "got {got}, want {want} ±{rel}");
    }

    #[test]
    fn stats_are_shareable_between_threads() {
        fn check<T: Send + Sync>() {}
        check::<BackendStats>();
    }

    #[test]
    fn counts_bytes_and_errors_are_exact() {
        let t0 = Instant::now();
        let s = BackendStats::new_at(t0);
        let now = t0 + Duration::from_secs(1);
        for _ in 0..10 {
            s.record_at(now, "b1", BackendOp::Get, ms_(5), 1000, Outcome::Ok);
        }
        s.record_at(now, "b1", BackendOp::Get, ms_(50), 0, Outcome::Error);
        s.record_at(now, "b1", BackendOp::Get, ms_(2), 0, Outcome::NotFound);
        s.record_at(now, "b1", BackendOp::Put, ms_(8), 300, Outcome::Ok);
        s.record_at(now, "b1", BackendOp::Delete, ms_(1), 0, Outcome::Ok);
        s.record_at(now, "b1", BackendOp::List, ms_(3), 0, Outcome::Error);
        s.record_at(now, "b1", BackendOp::Head, ms_(2), 0, Outcome::NotFound);

        let snap = s.snapshot_at(now);
        assert_eq!(snap.len(), 1);
        assert_eq!(snap[0].backend, "b1");
        assert_eq!(
            snap[0].windows.iter().map(|w| w.window).collect::<Vec<_>>(),
            Window::BACKEND
        );
        for w in &snap[0].windows {
            assert_eq!(w.seconds, w.window.seconds());
            assert_eq!((w.get.count, w.get.errors, w.get.bytes), (12, 1, 10_000));
            assert_eq!((w.put.count, w.put.errors, w.put.bytes), (1, 0, 300));
            assert_eq!((w.other.count, w.other.errors), (3, 1));
            assert_eq!((w.calls, w.errors), (16, 2));
            assert_eq!(w.error_rate, Some(2.0 / 16.0));
            // Latency covers the 11 answered GETs (the 50 ms error is left out).
            assert_close(w.get.mean_ms, (10.0 * 5.0 + 2.0) / 11.0, 1e-6);
            assert_close(w.get.max_ms, 5.0, 1e-9);
            assert_close(w.get.p50_ms, 5.0, 0.035);
            assert_close(w.other.mean_ms, 1.5, 1e-9);
            assert_eq!(w.availability, None);
        }
    }

    #[test]
    fn not_found_is_an_answer_not_an_error() {
        let t0 = Instant::now();
        let s = BackendStats::new_at(t0);
        for _ in 0..4 {
            s.record_at(t0, "b", BackendOp::Get, ms_(3), 0, Outcome::NotFound);
        }
        let w = window(&s.snapshot_at(t0)[0], Window::OneMinute).clone();
        assert_eq!((w.get.count, w.get.errors, w.errors), (4, 0, 0));
        assert_eq!(w.error_rate, Some(0.0));
        assert!(s.predict_at(t0, "b", BackendOp::Get).is_some());
    }

    #[test]
    fn bandwidth_comes_from_large_successful_calls_only() {
        let t0 = Instant::now();
        let s = BackendStats::new_at(t0);
        // 4 MiB in 100 ms and 4 MiB in 300 ms: 8 MiB / 0.4 s = 20 MiB/s.
        s.record_at(t0, "b", BackendOp::Get, ms_(100), 4 * MIB, Outcome::Ok);
        s.record_at(t0, "b", BackendOp::Get, ms_(300), 4 * MIB, Outcome::Ok);
        // Small calls and failures would drag it down; they must not count.
        s.record_at(t0, "b", BackendOp::Get, ms_(50), 64 * KIB - 1, Outcome::Ok);
        s.record_at(t0, "b", BackendOp::Get, ms_(900), 8 * MIB, Outcome::Error);
        // Exactly 64 KiB counts: 64 KiB in 10 ms = 6.25 MiB/s for PUT.
        s.record_at(t0, "b", BackendOp::Put, ms_(10), 64 * KIB, Outcome::Ok);
        let w = window(&s.snapshot_at(t0)[0], Window::OneHour).clone();
        assert_close(w.get.bandwidth_mib_s, 20.0, 1e-9);
        assert_close(w.put.bandwidth_mib_s, 6.25, 1e-9);
        assert_eq!(w.get.bytes, 16 * MIB + 64 * KIB - 1);

        s.record_at(t0, "small", BackendOp::Get, ms_(10), KIB, Outcome::Ok);
        let small = s.snapshot_at(t0).into_iter().find(|b| b.backend == "small").unwrap();
        assert_eq!(window(&small, Window::OneMinute).get.bandwidth_mib_s, None);
    }

    #[test]
    fn samples_expire_from_short_windows_first() {
        let t0 = Instant::now();
        let s = BackendStats::new_at(t0);
        s.record_at(t0, "b", BackendOp::Get, ms_(5), 10, Outcome::Ok);
        s.record_health_at(t0, "b", true);
        let counts = |at: Instant| -> Vec<u64> { s.snapshot_at(at)[0].windows.iter().map(|w| w.get.count).collect() };
        // 1m, 15m, 1h, 15s.
        assert_eq!(counts(t0 + Duration::from_secs(14)), vec![1, 1, 1, 1]);
        assert_eq!(counts(t0 + Duration::from_secs(15)), vec![1, 1, 1, 0]);
        assert_eq!(counts(t0 + Duration::from_secs(59)), vec![1, 1, 1, 0]);
        assert_eq!(counts(t0 + Duration::from_secs(60)), vec![0, 1, 1, 0]);
        assert_eq!(counts(t0 + Duration::from_secs(899)), vec![0, 1, 1, 0]);
        assert_eq!(counts(t0 + Duration::from_secs(900)), vec![0, 0, 1, 0]);
        assert_eq!(counts(t0 + Duration::from_secs(3599)), vec![0, 0, 1, 0]);
        assert_eq!(counts(t0 + Duration::from_secs(3600)), vec![0, 0, 0, 0]);
        let w = window(&s.snapshot_at(t0 + Duration::from_secs(3600))[0], Window::OneHour).clone();
        assert_eq!((w.get.p50_ms, w.availability, w.error_rate), (None, None, None));
        // Written again after an idle 2 h, the reused slot starts from zero.
        let later = t0 + Duration::from_secs(7200);
        s.record_at(later, "b", BackendOp::Get, ms_(5), 10, Outcome::Ok);
        assert_eq!(counts(later), vec![1, 1, 1, 1]);
    }

    #[test]
    fn prediction_needs_three_samples_and_tracks_the_tail() {
        let t0 = Instant::now();
        let s = BackendStats::new_at(t0);
        assert_eq!(s.predict_at(t0, "b", BackendOp::Get), None);
        s.record_at(t0, "b", BackendOp::Get, ms_(10), 0, Outcome::Ok);
        s.record_at(t0, "b", BackendOp::Get, ms_(10), 0, Outcome::Ok);
        assert_eq!(s.predict_at(t0, "b", BackendOp::Get), None);

        let t1 = t0 + Duration::from_secs(6);
        // 90 fast calls and 10 slow ones: the median is fast, the p95 is the injected 200 ms.
        for i in 0..100 {
            let l = if i % 10 == 0 { ms_(200) } else { ms_(10) };
            s.record_at(t1, "b", BackendOp::Get, l, 0, Outcome::Ok);
        }
        let p = s.predict_at(t1, "b", BackendOp::Get).unwrap();
        assert_eq!(p.samples, 102);
        assert!((p.p50.as_secs_f64() - 0.010).abs() <= 0.010 * 0.035, "{p:?}");
        assert!((p.p95.as_secs_f64() - 0.200).abs() <= 0.200 * 0.035, "{p:?}");
        // PUT has its own histogram; the rest have none.
        assert_eq!(s.predict_at(t1, "b", BackendOp::Put), None);
        assert_eq!(s.predict_at(t1, "b", BackendOp::Head), None);
        assert_eq!(s.predict_at(t1, "nope", BackendOp::Get), None);
        // A minute later the samples are gone.
        assert_eq!(s.predict_at(t1 + Duration::from_secs(60), "b", BackendOp::Get), None);
    }

    #[test]
    fn prediction_is_cached_for_250_ms() {
        let t0 = Instant::now();
        let s = BackendStats::new_at(t0);
        for _ in 0..5 {
            s.record_at(t0, "b", BackendOp::Put, ms_(10), 0, Outcome::Ok);
        }
        let first = s.predict_at(t0, "b", BackendOp::Put).unwrap();
        assert_eq!(first.samples, 5);
        for _ in 0..100 {
            s.record_at(t0, "b", BackendOp::Put, ms_(100), 0, Outcome::Ok);
        }
        // Within 250 ms (and the same slot) the cached value is served.
        assert_eq!(s.predict_at(t0 + ms_(249), "b", BackendOp::Put), Some(first));
        let fresh = s.predict_at(t0 + ms_(250), "b", BackendOp::Put).unwrap();
        assert_eq!(fresh.samples, 105);
        assert!(fresh.p50 > ms_(90), "{fresh:?}");
        // A cached "not enough samples" is not kept once samples arrive: a backend gets its
        // prediction as soon as it has the samples, not a TTL later.
        let t1 = t0 + Duration::from_secs(1);
        s.ensure("c");
        assert_eq!(s.predict_at(t1, "c", BackendOp::Get), None);
        for _ in 0..2 {
            s.record_at(t1, "c", BackendOp::Get, ms_(1), 0, Outcome::Ok);
        }
        assert_eq!(s.predict_at(t1 + ms_(10), "c", BackendOp::Get), None);
        s.record_at(t1, "c", BackendOp::Get, ms_(1), 0, Outcome::Ok);
        assert!(s.predict_at(t1 + ms_(20), "c", BackendOp::Get).is_some());
    }

    #[test]
    fn prediction_is_recomputed_when_the_slot_rotates() {
        let t0 = Instant::now();
        let s = BackendStats::new_at(t0);
        let edge = t0 + ms_(4_900);
        for _ in 0..3 {
            s.record_at(edge, "b", BackendOp::Get, ms_(10), 0, Outcome::Ok);
        }
        assert_eq!(s.predict_at(edge, "b", BackendOp::Get).unwrap().samples, 3);
        let next = t0 + ms_(5_000);
        s.record_at(next, "b", BackendOp::Get, ms_(10), 0, Outcome::Ok);
        assert_eq!(s.predict_at(next, "b", BackendOp::Get).unwrap().samples, 4);
    }

    #[test]
    fn availability_is_the_share_of_healthy_samples() {
        let t0 = Instant::now();
        let s = BackendStats::new_at(t0);
        // 30 min ago: 100 unhealthy seconds; in the last minute: 45 healthy, 15 unhealthy.
        for i in 0..100 {
            s.record_health_at(t0 + Duration::from_secs(i), "b", false);
        }
        // The last second of slot 360, so the minute's 12 slots span exactly 60 s.
        let now = t0 + Duration::from_secs(1804);
        for i in 0..60 {
            s.record_health_at(now - Duration::from_secs(59 - i), "b", i % 4 != 0);
        }
        let snap = s.snapshot_at(now);
        assert_eq!(window(&snap[0], Window::OneMinute).availability, Some(45.0 / 60.0));
        assert_eq!(window(&snap[0], Window::FifteenMinutes).availability, Some(45.0 / 60.0));
        assert_eq!(window(&snap[0], Window::OneHour).availability, Some(45.0 / 160.0));
        assert_eq!(window(&snap[0], Window::OneHour).calls, 0);
    }

    #[test]
    fn backends_are_listed_sorted_and_registered_by_ensure() {
        let t0 = Instant::now();
        let s = BackendStats::new_at(t0);
        s.ensure("zeta");
        s.record_at(t0, "alpha", BackendOp::Head, ms_(1), 0, Outcome::Ok);
        s.ensure("alpha");
        assert_eq!(s.backends(), vec!["alpha", "zeta"]);
        let snap = s.snapshot_at(t0);
        assert_eq!(
            snap.iter().map(|b| b.backend.as_str()).collect::<Vec<_>>(),
            ["alpha", "zeta"]
        );
        let idle = window(&snap[1], Window::OneHour);
        assert_eq!((idle.calls, idle.error_rate, idle.get.mean_ms), (0, None, None));
    }

    #[test]
    fn snapshot_serializes_with_the_documented_field_names() {
        let t0 = Instant::now();
        let s = BackendStats::new_at(t0);
        s.record_at(t0, "b", BackendOp::Get, ms_(4), MIB, Outcome::Ok);
        let snap = s.snapshot_at(t0);
        let v = serde_json::to_value(&snap).unwrap();
        let w = &v[0]["windows"][0];
        assert_eq!(v[0]["backend"], "b");
        assert_eq!(w["window"], "1m");
        assert_eq!(w["seconds"], 60);
        for k in [
            "count",
            "errors",
            "bytes",
            "mean_ms",
            "p50_ms",
            "p95_ms",
            "p99_ms",
            "max_ms",
            "bandwidth_mib_s",
        ] {
            assert!(w["get"].get(k).is_some(), "missing get.{k}");
        }
        for k in ["other", "calls", "errors", "error_rate", "availability"] {
            assert!(w.get(k).is_some(), "missing {k}");
        }
        let back: Vec<BackendSnapshot> = serde_json::from_value(v).unwrap();
        assert_eq!(back[0].windows[2].get.count, 1);
        assert_eq!(serde_json::to_string(&BackendOp::Delete).unwrap(), "\"delete\"");
        assert_eq!(serde_json::to_string(&Outcome::NotFound).unwrap(), "\"not_found\"");
        for op in BackendOp::ALL {
            assert_eq!(serde_json::to_string(&op).unwrap(), format!("\"{}\"", op.name()));
        }
    }

    #[test]
    fn integrity_failures_and_totals_are_counted_per_backend() {
        let t0 = Instant::now();
        let s = BackendStats::new_at(t0);
        s.record_at(t0, "a", BackendOp::Get, ms_(1), 10, Outcome::Ok);
        s.record_at(t0, "a", BackendOp::Put, ms_(1), 10, Outcome::Error);
        s.record_integrity_failures_at(t0, "a", 3);
        s.record_integrity_failures_at(t0, "b", 0);
        let later = t0 + Duration::from_secs(120);
        s.record_integrity_failures_at(later, "a", 1);
        let snap = s.snapshot_at(later);
        assert_eq!(snap.len(), 1, "recording zero failures registers nothing");
        assert_eq!(window(&snap[0], Window::OneMinute).integrity_failures, 1);
        assert_eq!(window(&snap[0], Window::OneHour).integrity_failures, 4);
        assert_eq!(
            snap[0].total,
            BackendTotal {
                calls: 2,
                errors: 1,
                integrity_failures: 4
            }
        );
        // Past the hour only the total remembers.
        let snap = s.snapshot_at(t0 + Duration::from_secs(3 * 3600));
        assert_eq!(window(&snap[0], Window::OneHour).integrity_failures, 0);
        assert_eq!(snap[0].total.integrity_failures, 4);
        let v = serde_json::to_value(&snap).unwrap();
        assert_eq!(v[0]["total"]["calls"], 2);
        assert_eq!(v[0]["windows"][0]["integrity_failures"], 0);
        // JSON from before these fields still parses.
        let mut old = v.clone();
        old[0].as_object_mut().unwrap().remove("total");
        for w in old[0]["windows"].as_array_mut().unwrap() {
            w.as_object_mut().unwrap().remove("integrity_failures");
        }
        let back: Vec<BackendSnapshot> = serde_json::from_value(old).unwrap();
        assert_eq!(back[0].total, BackendTotal::default());
    }

    #[test]
    fn concurrent_records_are_all_counted() {
        let s = BackendStats::new();
        std::thread::scope(|sc| {
            for t in 0..4 {
                let s = &s;
                sc.spawn(move || {
                    for i in 0..1000 {
                        let b = if (i + t) % 2 == 0 { "even" } else { "odd" };
                        s.record(b, BackendOp::Get, ms_(1), 1, Outcome::Ok);
                    }
                });
            }
        });
        let total: u64 = s.snapshot().iter().map(|b| window(b, Window::OneHour).get.count).sum();
        assert_eq!(total, 4000);
    }
}

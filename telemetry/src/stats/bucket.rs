//! Per-bucket sliding windows of S3 requests: rates, read/write mix, errors by operation,
//! latency, object sizes and the hottest key prefixes.

use super::histogram::{LatencyHistogram, SizeHistogram};
use super::window::{epoch_of, SlotData, SlotRing, Window};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

/// Distinct prefixes counted per bucket per 5-second slot; the rest count as [`OTHER`], so a
/// scan over a huge key space cannot blow up memory.
pub const MAX_PREFIXES_PER_SLOT: usize = 1024;
/// Distinct operation names per bucket per slot (S3 has about 70); the rest count as [`OTHER`].
pub const MAX_OPERATIONS_PER_SLOT: usize = 128;
/// Name of the bin that prefixes and operations past their cap are counted in.
pub const OTHER: &str = "(other)";
/// Prefixes listed in [`BucketWindow::hot_prefixes`].
pub const HOT_PREFIXES: usize = 10;

/// Whether a request reads data, writes it, or neither (listings, ACLs, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Reads object data or metadata.
    Read,
    /// Creates, changes or deletes objects.
    Write,
    /// Anything else.
    Other,
}

/// One finished S3 request, as the server saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// Bucket addressed; service-level requests (empty name) are not recorded.
    pub bucket: &'a str,
    /// S3 operation name, e.g. "GetObject".
    pub operation: &'a str,
    /// Read, write or other.
    pub access: Access,
    /// HTTP status of the response.
    pub status: u16,
    /// Request body bytes received.
    pub bytes_in: u64,
    /// Response body bytes sent.
    pub bytes_out: u64,
    /// Time from request to response.
    pub latency: Duration,
    /// Object key, if the request names one.
    pub key: Option<&'a str>,
    /// Size of the object read or written, if known.
    pub object_size: Option<u64>,
}

/// The first `depth` '/'-separated components of `key`, trailing '/' included ("a/b/c", 1 ->
/// "a/"; 2 -> "a/b/"). The object's own name never belongs to its prefix, so a key with fewer
/// than `depth` directories yields all of them ("a/b/c", 5 -> "a/b/"), a top-level key and
/// `depth` 0 yield "", and a "directory marker" key ending in '/' is its own directory.
#[must_use]
pub fn prefix_of(key: &str, depth: usize) -> &str {
    if depth == 0 {
        return "";
    }
    let end = match key.match_indices('/').nth(depth - 1) {
        Some((i, _)) => i + 1,
        None => key.rfind('/').map_or(0, |i| i + 1),
    };
    &key[..end]
}

/// Requests of one operation and how many failed, by side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpCounts {
    /// Requests.
    pub count: u64,
    /// Answered with a 4xx status.
    pub client_errors: u64,
    /// Answered with a 5xx status.
    pub server_errors: u64,
}

impl OpCounts {
    fn add(&mut self, o: &Self) {
        self.count += o.count;
        self.client_errors += o.client_errors;
        self.server_errors += o.server_errors;
    }
}

/// Latency quantiles of a window's requests, ms.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Median.
    pub p50_ms: Option<f64>,
    /// 95th percentile.
    pub p95_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
    /// Mean.
    pub mean_ms: Option<f64>,
    /// Largest.
    pub max_ms: Option<f64>,
}

/// Objects whose size fell in one bucket (counts are per bucket, not cumulative).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SizeBucket {
    /// Inclusive upper bound in bytes; `None` = unbounded.
    pub le_bytes: Option<u64>,
    /// Objects in the bucket.
    pub count: u64,
}

/// Accesses under one key prefix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrefixCount {
    /// The prefix (see [`prefix_of`]), or "(other)" for prefixes past the per-slot cap.
    pub prefix: String,
    /// Requests naming a key under it.
    pub count: u64,
}

/// One bucket's requests over one window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BucketWindow {
    /// Which window.
    pub window: Window,
    /// Its length.
    pub seconds: u64,
    /// Requests of every kind.
    pub requests: u64,
    /// Requests by S3 operation name.
    pub by_operation: BTreeMap<String, OpCounts>,
    /// Read requests.
    pub reads: u64,
    /// Write requests.
    pub writes: u64,
    /// Reads per second (over the stats' age while younger than the window).
    pub reads_per_s: f64,
    /// Writes per second (likewise).
    pub writes_per_s: f64,
    /// `reads / writes` (`None` without writes).
    pub read_write_ratio: Option<f64>,
    /// Request body bytes received.
    pub bytes_in: u64,
    /// Response body bytes sent.
    pub bytes_out: u64,
    /// Request latency.
    pub latency: LatencySummary,
    /// Object sizes, non-empty buckets only, smallest first.
    pub object_sizes: Vec<SizeBucket>,
    /// The most accessed prefixes, by count descending then prefix.
    pub hot_prefixes: Vec<PrefixCount>,
}

/// One bucket's requests over every window, shortest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BucketSnapshot {
    /// Bucket name.
    pub bucket: String,
    /// Key components forming a prefix (0: prefixes not tracked).
    pub prefix_depth: usize,
    /// 1 m, 15 m and 1 h.
    pub windows: Vec<BucketWindow>,
}

/// One bucket's 5 seconds. Operation names survive a reset (zeroed, skipped when read) so a
/// steady workload stops allocating once each name has been seen; prefixes are dropped, or
/// stale ones would eat into the next slot's cap.
#[derive(Debug, Default)]
struct BucketSlot {
    requests: u64,
    reads: u64,
    writes: u64,
    bytes_in: u64,
    bytes_out: u64,
    ops: Vec<(String, OpCounts)>,
    latency: LatencyHistogram,
    sizes: SizeHistogram,
    prefixes: HashMap<String, u64>,
    prefix_overflow: u64,
}

impl SlotData for BucketSlot {
    fn reset(&mut self) {
        self.requests = 0;
        self.reads = 0;
        self.writes = 0;
        self.bytes_in = 0;
        self.bytes_out = 0;
        for (_, c) in &mut self.ops {
            *c = OpCounts::default();
        }
        self.latency.clear();
        self.sizes.clear();
        self.prefixes.clear();
        self.prefix_overflow = 0;
    }
}

impl BucketSlot {
    /// Where `operation` is counted: its entry, else an entry zeroed by a reset (renamed in
    /// place, so names left from an hour ago neither allocate nor eat into the cap), else a new
    /// one, else "(other)".
    fn op_index(&mut self, operation: &str) -> usize {
        if let Some(i) = self.ops.iter().position(|(n, _)| n == operation) {
            return i;
        }
        if let Some(i) = self.ops.iter().position(|(_, c)| c.count == 0) {
            let name = &mut self.ops[i].0;
            name.clear();
            name.push_str(operation);
            return i;
        }
        let name = if self.ops.len() < MAX_OPERATIONS_PER_SLOT {
            operation
        } else if let Some(i) = self.ops.iter().position(|(n, _)| n == OTHER) {
            return i;
        } else {
            OTHER
        };
        self.ops.push((name.to_owned(), OpCounts::default()));
        self.ops.len() - 1
    }

    fn record(&mut self, r: &Request<'_>, prefix: Option<&str>) {
        self.requests += 1;
        match r.access {
            Access::Read => self.reads += 1,
            Access::Write => self.writes += 1,
            Access::Other => {}
        }
        self.bytes_in = self.bytes_in.saturating_add(r.bytes_in);
        self.bytes_out = self.bytes_out.saturating_add(r.bytes_out);
        let i = self.op_index(r.operation);
        let op = &mut self.ops[i].1;
        op.count += 1;
        match r.status {
            400..=499 => op.client_errors += 1,
            500.. => op.server_errors += 1,
            _ => {}
        }
        self.latency.record(r.latency);
        if let Some(size) = r.object_size {
            self.sizes.record(size);
        }
        if let Some(p) = prefix {
            if let Some(c) = self.prefixes.get_mut(p) {
                *c += 1;
            } else if self.prefixes.len() < MAX_PREFIXES_PER_SLOT {
                self.prefixes.insert(p.to_owned(), 1);
            } else {
                self.prefix_overflow += 1;
            }
        }
    }
}

type Ring = SlotRing<Option<Box<BucketSlot>>>;

/// Everything merged over one window, borrowing names from the slots.
#[derive(Default)]
struct WindowAcc<'a> {
    requests: u64,
    reads: u64,
    writes: u64,
    bytes_in: u64,
    bytes_out: u64,
    ops: BTreeMap<&'a str, OpCounts>,
    latency: LatencyHistogram,
    sizes: SizeHistogram,
    prefixes: HashMap<&'a str, u64>,
    prefix_overflow: u64,
}

impl<'a> WindowAcc<'a> {
    fn add(&mut self, s: &'a BucketSlot) {
        self.requests += s.requests;
        self.reads += s.reads;
        self.writes += s.writes;
        self.bytes_in = self.bytes_in.saturating_add(s.bytes_in);
        self.bytes_out = self.bytes_out.saturating_add(s.bytes_out);
        for (name, c) in s.ops.iter().filter(|(_, c)| c.count > 0) {
            self.ops.entry(name).or_default().add(c);
        }
        self.latency.merge(&s.latency);
        self.sizes.merge(&s.sizes);
        for (p, c) in &s.prefixes {
            *self.prefixes.entry(p).or_default() += c;
        }
        self.prefix_overflow += s.prefix_overflow;
    }

    fn finish(self, window: Window, rate_seconds: f64) -> BucketWindow {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let h = &self.latency;
        let mut hot: Vec<(&str, u64)> = self.prefixes.into_iter().collect();
        if self.prefix_overflow > 0 {
            hot.push((OTHER, self.prefix_overflow));
        }
        hot.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        BucketWindow {
            window,
            seconds: window.seconds(),
            requests: self.requests,
            by_operation: self.ops.into_iter().map(|(n, c)| (n.to_owned(), c)).collect(),
            reads: self.reads,
            writes: self.writes,
            reads_per_s: self.reads as f64 / rate_seconds,
            writes_per_s: self.writes as f64 / rate_seconds,
            read_write_ratio: (self.writes > 0).then(|| self.reads as f64 / self.writes as f64),
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            latency: LatencySummary {
                p50_ms: h.quantile(0.5).map(ms),
                p95_ms: h.quantile(0.95).map(ms),
                p99_ms: h.quantile(0.99).map(ms),
                mean_ms: h.mean().map(ms),
                max_ms: h.max().map(ms),
            },
            object_sizes: self
                .sizes
                .buckets()
                .map(|(le_bytes, count)| SizeBucket { le_bytes, count })
                .collect(),
            hot_prefixes: hot
                .into_iter()
                .take(HOT_PREFIXES)
                .map(|(p, count)| PrefixCount {
                    prefix: p.to_owned(),
                    count,
                })
                .collect(),
        }
    }
}

/// Sliding-window statistics of every bucket; shared by reference between all tasks.
///
/// Every bucket name recorded gets a ring (~11 KiB), so record only requests to buckets that
/// exist: a flood of requests to random names would otherwise grow it without bound.
#[derive(Debug)]
pub struct BucketStats {
    origin: Instant,
    prefix_depth: usize,
    buckets: RwLock<BTreeMap<String, Mutex<Ring>>>,
}

impl BucketStats {
    /// Empty statistics tracking prefixes `prefix_depth` components deep (0: none), starting now.
    #[must_use]
    pub fn new(prefix_depth: usize) -> Self {
        Self::new_at(prefix_depth, Instant::now())
    }

    /// Empty statistics whose slots start at `origin`.
    #[must_use]
    pub fn new_at(prefix_depth: usize, origin: Instant) -> Self {
        Self {
            origin,
            prefix_depth,
            buckets: RwLock::new(BTreeMap::new()),
        }
    }

    /// Key components forming a prefix.
    #[must_use]
    pub fn prefix_depth(&self) -> usize {
        self.prefix_depth
    }

    /// Records one finished request.
    pub fn record(&self, r: &Request<'_>) {
        self.record_at(Instant::now(), r);
    }

    /// Records one request that finished at `now`.
    pub fn record_at(&self, now: Instant, r: &Request<'_>) {
        if r.bucket.is_empty() {
            return;
        }
        let epoch = epoch_of(self.origin, now);
        let prefix = r
            .key
            .filter(|_| self.prefix_depth > 0)
            .map(|k| prefix_of(k, self.prefix_depth));
        let apply = |ring: &mut Ring| {
            if let Some(slot) = ring.slot_mut(epoch) {
                slot.get_or_insert_with(Box::default).record(r, prefix);
            }
        };
        {
            let map = self.buckets.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(ring) = map.get(r.bucket) {
                apply(&mut ring.lock().unwrap_or_else(PoisonError::into_inner));
                return;
            }
        }
        let mut map = self.buckets.write().unwrap_or_else(PoisonError::into_inner);
        let ring = map.entry(r.bucket.to_owned()).or_default();
        apply(ring.get_mut().unwrap_or_else(PoisonError::into_inner));
    }

    /// Buckets with recorded requests, sorted.
    #[must_use]
    pub fn buckets(&self) -> Vec<String> {
        let map = self.buckets.read().unwrap_or_else(PoisonError::into_inner);
        map.keys().cloned().collect()
    }

    /// Drops a deleted bucket's statistics.
    pub fn forget(&self, bucket: &str) {
        let mut map = self.buckets.write().unwrap_or_else(PoisonError::into_inner);
        map.remove(bucket);
    }

    /// `bucket` over every window (`None`: no request recorded for it).
    #[must_use]
    pub fn snapshot(&self, bucket: &str) -> Option<BucketSnapshot> {
        self.snapshot_at(Instant::now(), bucket)
    }

    /// `bucket` over every window ending at `now`.
    #[must_use]
    pub fn snapshot_at(&self, now: Instant, bucket: &str) -> Option<BucketSnapshot> {
        let map = self.buckets.read().unwrap_or_else(PoisonError::into_inner);
        let ring = map.get(bucket)?.lock().unwrap_or_else(PoisonError::into_inner);
        Some(self.summarise(now, bucket, Some(&*ring)))
    }

    /// `bucket` over every window, all zero when no request was recorded for it (a bucket that
    /// exists but is idle).
    #[must_use]
    pub fn snapshot_or_empty(&self, bucket: &str) -> BucketSnapshot {
        let now = Instant::now();
        let map = self.buckets.read().unwrap_or_else(PoisonError::into_inner);
        match map.get(bucket) {
            Some(ring) => self.summarise(now, bucket, Some(&*ring.lock().unwrap_or_else(PoisonError::into_inner))),
            None => self.summarise(now, bucket, None),
        }
    }

    fn summarise(&self, now: Instant, bucket: &str, ring: Option<&Ring>) -> BucketSnapshot {
        let epoch = epoch_of(self.origin, now);
        let mut accs: [WindowAcc<'_>; 3] = Default::default();
        // One pass over the hour, each slot feeding every window it falls in.
        for (age, slot) in ring.into_iter().flat_map(|r| r.recent(epoch, Window::OneHour.slots())) {
            let Some(slot) = slot else { continue };
            for (acc, w) in accs.iter_mut().zip(Window::ALL) {
                if age < w.slots() {
                    acc.add(slot);
                }
            }
        }
        let windows = accs
            .into_iter()
            .zip(Window::ALL)
            .map(|(acc, w)| acc.finish(w, w.rate_seconds(self.origin, now)))
            .collect();
        BucketSnapshot {
            bucket: bucket.to_owned(),
            prefix_depth: self.prefix_depth,
            windows,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(bucket: &'a str, operation: &'a str, access: Access, status: u16, key: Option<&'a str>) -> Request<'a> {
        Request {
            bucket,
            operation,
            access,
            status,
            bytes_in: 0,
            bytes_out: 0,
            latency: Duration::from_millis(10),
            key,
            object_size: None,
        }
    }

    fn get(key: &str) -> Request<'_> {
        req("b", "GetObject", Access::Read, 200, Some(key))
    }

    fn window(s: &BucketSnapshot, w: Window) -> &BucketWindow {
        s.windows.iter().find(|x| x.window == w).unwrap()
    }

    fn prefixes(w: &BucketWindow) -> Vec<(&str, u64)> {
        w.hot_prefixes.iter().map(|p| (p.prefix.as_str(), p.count)).collect()
    }

    #[test]
    fn stats_are_shareable_between_threads() {
        fn check<T: Send + Sync>() {}
        check::<BucketStats>();
    }

    #[test]
    fn prefix_of_edge_cases() {
        assert_eq!(prefix_of("a/b/c", 1), "a/");
        assert_eq!(prefix_of("a/b/c", 2), "a/b/");
        assert_eq!(prefix_of("a/b/c", 3), "a/b/");
        assert_eq!(prefix_of("a/b/c", 9), "a/b/");
        assert_eq!(prefix_of("a/b/c", 0), "");
        assert_eq!(prefix_of("top", 1), "");
        assert_eq!(prefix_of("", 1), "");
        assert_eq!(prefix_of("", 0), "");
        assert_eq!(prefix_of("a/", 1), "a/");
        assert_eq!(prefix_of("a/", 2), "a/");
        assert_eq!(prefix_of("a/b/", 2), "a/b/");
        assert_eq!(prefix_of("a/b/", 1), "a/");
        assert_eq!(prefix_of("/x", 1), "/");
        assert_eq!(prefix_of("a//b", 2), "a//");
        assert_eq!(prefix_of("é/ü/x", 1), "é/");
    }

    #[test]
    fn rates_and_read_write_ratio() {
        let t0 = Instant::now();
        let s = BucketStats::new_at(1, t0);
        let now = t0 + Duration::from_secs(7200);
        // 30 reads and 10 writes in the last minute, 60 more reads half an hour ago.
        for i in 0..30 {
            s.record_at(now - Duration::from_secs(i), &get("k"));
        }
        for i in 0..10 {
            s.record_at(
                now - Duration::from_secs(i),
                &req("b", "PutObject", Access::Write, 200, Some("k")),
            );
        }
        for _ in 0..60 {
            s.record_at(now - Duration::from_secs(1800), &get("k"));
        }
        s.record_at(now, &req("b", "ListObjectsV2", Access::Other, 200, None));
        let snap = s.snapshot_at(now, "b").unwrap();
        let m = window(&snap, Window::OneMinute);
        assert_eq!((m.requests, m.reads, m.writes), (41, 30, 10));
        assert_eq!(m.reads_per_s, 0.5);
        assert_eq!(m.writes_per_s, 10.0 / 60.0);
        assert_eq!(m.read_write_ratio, Some(3.0));
        let h = window(&snap, Window::OneHour);
        assert_eq!((h.reads, h.writes), (90, 10));
        assert_eq!(h.reads_per_s, 90.0 / 3600.0);
        assert_eq!(h.read_write_ratio, Some(9.0));

        s.record_at(now, &req("ro", "GetObject", Access::Read, 200, None));
        let ro = s.snapshot_at(now, "ro").unwrap();
        assert_eq!(window(&ro, Window::OneMinute).read_write_ratio, None);
    }

    #[test]
    fn young_stats_divide_rates_by_their_age() {
        let t0 = Instant::now();
        let s = BucketStats::new_at(0, t0);
        let now = t0 + Duration::from_secs(120);
        for _ in 0..240 {
            s.record_at(now, &get("k"));
        }
        let snap = s.snapshot_at(now, "b").unwrap();
        // Two minutes old: the 15 m and 1 h windows cover only those 120 s.
        assert_eq!(window(&snap, Window::OneMinute).reads_per_s, 4.0);
        assert_eq!(window(&snap, Window::FifteenMinutes).reads_per_s, 2.0);
        assert_eq!(window(&snap, Window::OneHour).reads_per_s, 2.0);
        // At creation the age counts as one second.
        let fresh = BucketStats::new_at(0, t0);
        fresh.record_at(t0, &get("k"));
        assert_eq!(
            window(&fresh.snapshot_at(t0, "b").unwrap(), Window::OneHour).reads_per_s,
            1.0
        );
    }

    #[test]
    fn by_operation_splits_client_and_server_errors() {
        let t0 = Instant::now();
        let s = BucketStats::new_at(1, t0);
        for status in [200, 206, 304, 404, 403, 500, 503, 399] {
            s.record_at(t0, &req("b", "GetObject", Access::Read, status, Some("k")));
        }
        s.record_at(t0, &req("b", "PutObject", Access::Write, 200, Some("k")));
        let snap = s.snapshot_at(t0, "b").unwrap();
        let w = window(&snap, Window::OneMinute);
        let get = OpCounts {
            count: 8,
            client_errors: 2,
            server_errors: 2,
        };
        let put = OpCounts {
            count: 1,
            client_errors: 0,
            server_errors: 0,
        };
        assert_eq!(
            w.by_operation,
            BTreeMap::from([("GetObject".to_owned(), get), ("PutObject".to_owned(), put)])
        );
    }

    #[test]
    fn operations_past_the_cap_count_as_other_and_names_survive_slot_reuse() {
        let t0 = Instant::now();
        let s = BucketStats::new_at(0, t0);
        let names: Vec<String> = (0..MAX_OPERATIONS_PER_SLOT + 5).map(|i| format!("Op{i:03}")).collect();
        for n in &names {
            s.record_at(t0, &req("b", n, Access::Other, 200, None));
        }
        let w = window(&s.snapshot_at(t0, "b").unwrap(), Window::OneMinute).clone();
        assert_eq!(w.by_operation.len(), MAX_OPERATIONS_PER_SLOT + 1);
        assert_eq!(w.by_operation[OTHER].count, 5);
        // The same slot an hour later: zeroed names are not reported.
        let later = t0 + Duration::from_secs(3600);
        s.record_at(later, &req("b", "HeadObject", Access::Read, 200, None));
        let w = window(&s.snapshot_at(later, "b").unwrap(), Window::OneHour).clone();
        assert_eq!(w.by_operation.keys().collect::<Vec<_>>(), ["HeadObject"]);
        assert_eq!(w.requests, 1);
    }

    #[test]
    fn object_sizes_latency_and_bytes() {
        let t0 = Instant::now();
        let s = BucketStats::new_at(1, t0);
        for (size, ms) in [(0, 1), (100, 2), (1024, 3), (1025, 4), (3 << 20, 5), (6 << 30, 100)] {
            s.record_at(
                t0,
                &Request {
                    bytes_in: size,
                    object_size: Some(size),
                    latency: Duration::from_millis(ms),
                    ..req("b", "PutObject", Access::Write, 200, Some("k"))
                },
            );
        }
        s.record_at(
            t0,
            &Request {
                bytes_out: 7,
                ..get("k")
            },
        );
        let snap = s.snapshot_at(t0, "b").unwrap();
        let w = window(&snap, Window::FifteenMinutes);
        let sizes: Vec<(Option<u64>, u64)> = w.object_sizes.iter().map(|b| (b.le_bytes, b.count)).collect();
        assert_eq!(
            sizes,
            vec![
                (Some(0), 1),
                (Some(1024), 2),
                (Some(2048), 1),
                (Some(4 << 20), 1),
                (None, 1)
            ]
        );
        assert_eq!(w.bytes_in, 100 + 1024 + 1025 + (3 << 20) + (6 << 30));
        assert_eq!(w.bytes_out, 7);
        assert_eq!(w.latency.max_ms, Some(100.0));
        let mean = w.latency.mean_ms.unwrap();
        assert!((mean - 125.0 / 7.0).abs() < 1e-3, "{mean}");
        let p50 = w.latency.p50_ms.unwrap();
        assert!((p50 - 4.0).abs() <= 4.0 * 0.035, "{p50}");
    }

    #[test]
    fn hot_prefixes_are_ranked_and_capped() {
        let t0 = Instant::now();
        let s = BucketStats::new_at(1, t0);
        for (p, n) in [("logs/", 5), ("img/", 9), ("a/", 5), ("tmp/", 1)] {
            for _ in 0..n {
                s.record_at(t0, &get(&format!("{p}x")));
            }
        }
        s.record_at(t0, &get("top-level"));
        s.record_at(t0, &req("b", "ListObjectsV2", Access::Other, 200, None));
        let snap = s.snapshot_at(t0, "b").unwrap();
        assert_eq!(snap.prefix_depth, 1);
        assert_eq!(
            prefixes(window(&snap, Window::OneMinute)),
            vec![("img/", 9), ("a/", 5), ("logs/", 5), ("", 1), ("tmp/", 1)]
        );

        // A scan over many prefixes in one slot: the first 1024 are tracked, the rest pooled.
        let t1 = t0 + Duration::from_secs(10);
        let scan = BucketStats::new_at(2, t0);
        for i in 0..MAX_PREFIXES_PER_SLOT + 500 {
            scan.record_at(t1, &get(&format!("d/{i:05}/obj")));
        }
        for _ in 0..3 {
            scan.record_at(t1, &get("d/00007/again"));
        }
        let snap = scan.snapshot_at(t1, "b").unwrap();
        let w = window(&snap, Window::OneMinute);
        assert_eq!(w.hot_prefixes.len(), HOT_PREFIXES);
        assert_eq!(w.hot_prefixes[0].prefix, OTHER);
        assert_eq!(w.hot_prefixes[0].count, 500);
        assert_eq!(
            (w.hot_prefixes[1].prefix.as_str(), w.hot_prefixes[1].count),
            ("d/00007/", 4)
        );
        assert_eq!(
            (w.hot_prefixes[2].prefix.as_str(), w.hot_prefixes[2].count),
            ("d/00000/", 1)
        );
        // The next slot has a fresh cap; counts of a prefix add up across slots.
        let t2 = t1 + Duration::from_secs(5);
        for _ in 0..2 {
            scan.record_at(t2, &get("d/99999/obj"));
        }
        scan.record_at(t2, &get("d/00007/obj"));
        let w = window(&scan.snapshot_at(t2, "b").unwrap(), Window::OneMinute).clone();
        assert_eq!(prefixes(&w)[..3], [(OTHER, 500), ("d/00007/", 5), ("d/99999/", 2)]);
    }

    #[test]
    fn depth_zero_tracks_no_prefixes() {
        let t0 = Instant::now();
        let s = BucketStats::new_at(0, t0);
        s.record_at(t0, &get("a/b"));
        let snap = s.snapshot_at(t0, "b").unwrap();
        assert!(window(&snap, Window::OneMinute).hot_prefixes.is_empty());
        assert_eq!(window(&snap, Window::OneMinute).requests, 1);
    }

    #[test]
    fn windows_expire_and_buckets_can_be_forgotten() {
        let t0 = Instant::now();
        let s = BucketStats::new_at(1, t0);
        assert_eq!(s.snapshot_at(t0, "b"), None);
        s.record_at(t0, &get("k"));
        s.record_at(t0, &req("", "ListBuckets", Access::Other, 200, None));
        s.record_at(t0, &req("a", "HeadBucket", Access::Other, 200, None));
        assert_eq!(s.buckets(), vec!["a", "b"]);
        let reqs = |at: Instant| -> Vec<u64> {
            s.snapshot_at(at, "b")
                .unwrap()
                .windows
                .iter()
                .map(|w| w.requests)
                .collect()
        };
        assert_eq!(reqs(t0 + Duration::from_secs(60)), vec![0, 1, 1]);
        assert_eq!(reqs(t0 + Duration::from_secs(900)), vec![0, 0, 1]);
        assert_eq!(reqs(t0 + Duration::from_secs(3600)), vec![0, 0, 0]);
        let idle = s.snapshot_at(t0 + Duration::from_secs(3600), "b").unwrap();
        let w = window(&idle, Window::OneHour);
        assert!(w.hot_prefixes.is_empty() && w.object_sizes.is_empty() && w.by_operation.is_empty());
        assert_eq!(w.latency, LatencySummary::default());
        s.forget("b");
        assert_eq!(s.snapshot_at(t0, "b"), None);
        assert_eq!(s.buckets(), vec!["a"]);
    }

    #[test]
    fn snapshot_serializes_with_the_documented_field_names() {
        let t0 = Instant::now();
        let s = BucketStats::new_at(1, t0);
        s.record_at(
            t0,
            &Request {
                object_size: Some(10),
                ..get("p/k")
            },
        );
        let v = serde_json::to_value(s.snapshot_at(t0, "b").unwrap()).unwrap();
        assert_eq!(v["bucket"], "b");
        assert_eq!(v["prefix_depth"], 1);
        let w = &v["windows"][2];
        assert_eq!(w["window"], "1h");
        for k in [
            "seconds",
            "requests",
            "by_operation",
            "reads",
            "writes",
            "reads_per_s",
            "writes_per_s",
            "read_write_ratio",
            "bytes_in",
            "bytes_out",
            "latency",
            "object_sizes",
            "hot_prefixes",
        ] {
            assert!(w.get(k).is_some(), "missing {k}");
        }
        assert_eq!(w["by_operation"]["GetObject"]["client_errors"], 0);
        assert_eq!(w["object_sizes"][0]["le_bytes"], 1024);
        assert_eq!(w["hot_prefixes"][0]["prefix"], "p/");
        for k in ["p50_ms", "p95_ms", "p99_ms", "mean_ms", "max_ms"] {
            assert!(w["latency"].get(k).is_some(), "missing latency.{k}");
        }
        let back: BucketSnapshot = serde_json::from_value(v).unwrap();
        assert_eq!(back.windows.len(), 3);
    }
}

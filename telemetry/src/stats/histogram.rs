//! Fixed-size histograms cheap enough to keep one per 5-second slot.
//!
//! [`LatencyHistogram`] is log-linear (16 sub-buckets per power of two of microseconds), so a
//! quantile is known to within ~3% whatever the scale, in 1.5 KiB and without allocating.
//! [`SizeHistogram`] counts object sizes in power-of-two byte buckets.

use std::time::Duration;

/// Sub-buckets per power of two; 16 bounds the relative error of a bucket's midpoint by 1/32.
const SUB_BITS: u32 = 4;
const SUB: u64 = 1 << SUB_BITS;
/// Highest power of two tracked: values from 2^27 µs (~134 s) on share the last bucket.
const MAX_EXP: u32 = 27;
/// Largest value (µs) with a bucket of its own; larger ones are clamped into the last bucket.
const MAX_BUCKETED_US: u64 = (1 << MAX_EXP) - 1;
/// Values below 16 µs get one bucket each, then 16 per power of two from 2^4 to 2^26.
const LATENCY_BUCKETS: usize = (SUB + (MAX_EXP as u64 - SUB_BITS as u64) * SUB) as usize;

fn latency_index(us: u64) -> usize {
    let v = us.min(MAX_BUCKETED_US);
    if v < SUB {
        return v as usize;
    }
    let exp = v.ilog2();
    let sub = (v >> (exp - SUB_BITS)) & (SUB - 1);
    (SUB + u64::from(exp - SUB_BITS) * SUB + sub) as usize
}

/// Lower bound and width (µs) of latency bucket `idx`.
fn latency_bounds(idx: usize) -> (u64, u64) {
    let idx = idx as u64;
    if idx < SUB {
        return (idx, 1);
    }
    let shift = (idx - SUB) / SUB;
    let sub = (idx - SUB) % SUB;
    ((SUB + sub) << shift, 1 << shift)
}

fn duration_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Latencies in log-linear microsecond buckets (1 µs .. ~134 s), plus exact count, sum, min and max.
///
/// Bucket counts are `u32`: a slot covers 5 s, and halving the size matters more than windows
/// over 4 billion calls of one backend operation (merges saturate rather than wrap).
#[derive(Clone, PartialEq, Eq)]
pub struct LatencyHistogram {
    counts: [u32; LATENCY_BUCKETS],
    count: u64,
    sum_us: u64,
    min_us: u64,
    max_us: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // 384 mostly-zero counts would drown the summary.
        f.debug_struct("LatencyHistogram")
            .field("count", &self.count)
            .field("mean", &self.mean())
            .field("p50", &self.quantile(0.5))
            .field("p99", &self.quantile(0.99))
            .field("max", &self.max())
            .finish()
    }
}

impl LatencyHistogram {
    /// An empty histogram.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            counts: [0; LATENCY_BUCKETS],
            count: 0,
            sum_us: 0,
            min_us: u64::MAX,
            max_us: 0,
        }
    }

    /// Adds one observation; values past ~134 s land in the last bucket but keep exact sum/max.
    pub fn record(&mut self, latency: Duration) {
        self.record_micros(duration_us(latency));
    }

    /// Adds one observation given in microseconds.
    pub fn record_micros(&mut self, us: u64) {
        let c = &mut self.counts[latency_index(us)];
        *c = c.saturating_add(1);
        self.count += 1;
        self.sum_us = self.sum_us.saturating_add(us);
        self.min_us = self.min_us.min(us);
        self.max_us = self.max_us.max(us);
    }

    /// Adds every observation of `other`, as if they had been recorded here.
    pub fn merge(&mut self, other: &Self) {
        if other.count == 0 {
            return;
        }
        for (c, o) in self.counts.iter_mut().zip(other.counts.iter()) {
            *c = c.saturating_add(*o);
        }
        self.count += other.count;
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
        self.min_us = self.min_us.min(other.min_us);
        self.max_us = self.max_us.max(other.max_us);
    }

    /// Empties the histogram in place (slots are reused, not reallocated).
    pub fn clear(&mut self) {
        *self = Self::new();
    }

    /// Number of observations.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Whether nothing was recorded.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Sum of all observations.
    #[must_use]
    pub fn sum(&self) -> Duration {
        Duration::from_micros(self.sum_us)
    }

    /// Exact mean, to the nanosecond (`None` when empty).
    #[must_use]
    pub fn mean(&self) -> Option<Duration> {
        let nanos = u128::from(self.sum_us) * 1000 / u128::from(self.count.max(1));
        (self.count > 0).then(|| Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)))
    }

    /// Exact largest observation (`None` when empty).
    #[must_use]
    pub fn max(&self) -> Option<Duration> {
        (self.count > 0).then(|| Duration::from_micros(self.max_us))
    }

    /// Exact smallest observation (`None` when empty).
    #[must_use]
    pub fn min(&self) -> Option<Duration> {
        (self.count > 0).then(|| Duration::from_micros(self.min_us))
    }

    /// The `q`-quantile (`q` in 0..=1, clamped): the midpoint of the bucket holding the
    /// observation of rank ⌈q·n⌉, within ~3.1% of it (exact below 32 µs), clamped to the
    /// observed min..max so a lone value comes back exactly.
    #[must_use]
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.count == 0 {
            return None;
        }
        let q = if q.is_nan() { 0.5 } else { q.clamp(0.0, 1.0) };
        // Rank of the wanted observation, 1-based (the "nearest rank" definition).
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0u64;
        for (idx, &c) in self.counts.iter().enumerate() {
            seen += u64::from(c);
            if seen >= rank {
                let (lo, width) = latency_bounds(idx);
                let rep = lo + width / 2;
                return Some(Duration::from_micros(rep.clamp(self.min_us, self.max_us)));
            }
        }
        // Only reachable when saturated counts fall short of `count`.
        self.max()
    }
}

/// Upper bounds (inclusive, bytes) of the object-size buckets; the last bucket is unbounded.
/// 0 (empty objects), then 1 KiB, 2 KiB, ... 4 GiB, then 5 GiB (the largest single PUT).
pub const SIZE_BOUNDS: [u64; SIZE_BUCKETS - 1] = size_bounds();
const SIZE_BUCKETS: usize = 26;

const fn size_bounds() -> [u64; SIZE_BUCKETS - 1] {
    let mut b = [0u64; SIZE_BUCKETS - 1];
    let mut i = 1;
    while i < SIZE_BUCKETS - 2 {
        b[i] = 1 << (9 + i);
        i += 1;
    }
    b[SIZE_BUCKETS - 2] = 5 << 30;
    b
}

fn size_index(bytes: u64) -> usize {
    match bytes {
        0 => 0,
        1..=1024 => 1,
        b if b <= 1 << 32 => {
            // ⌈log2 b⌉ picks the smallest power of two >= b.
            let ceil_log2 = 64 - (b - 1).leading_zeros() as usize;
            ceil_log2 - 9
        }
        b if b <= 5 << 30 => SIZE_BUCKETS - 2,
        _ => SIZE_BUCKETS - 1,
    }
}

/// Object sizes in power-of-two byte buckets (see [`SIZE_BOUNDS`]); counts are per bucket, not
/// cumulative.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SizeHistogram {
    counts: [u64; SIZE_BUCKETS],
}

impl SizeHistogram {
    /// An empty histogram.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            counts: [0; SIZE_BUCKETS],
        }
    }

    /// Adds one object of `bytes` bytes.
    pub fn record(&mut self, bytes: u64) {
        self.counts[size_index(bytes)] += 1;
    }

    /// Adds every observation of `other`.
    pub fn merge(&mut self, other: &Self) {
        for (c, o) in self.counts.iter_mut().zip(other.counts.iter()) {
            *c += o;
        }
    }

    /// Empties the histogram in place.
    pub fn clear(&mut self) {
        self.counts = [0; SIZE_BUCKETS];
    }

    /// Number of observations.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Non-empty buckets as (inclusive upper bound, `None` = unbounded; count), smallest first.
    pub fn buckets(&self) -> impl Iterator<Item = (Option<u64>, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(i, &c)| (SIZE_BOUNDS.get(i).copied(), c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(v: u64) -> Duration {
        Duration::from_micros(v)
    }

    /// Nearest-rank quantile of sorted samples, the definition the histogram approximates.
    fn exact(sorted: &[u64], q: f64) -> u64 {
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }

    fn assert_close(got: Duration, want_us: u64, bound: f64) {
        let got = got.as_micros() as f64;
        let want = want_us as f64;
        let err = (got - want).abs() / want.max(1.0);
        assert!(
            err <= bound,
            "got {got} µs, want {want} µs (rel err {err:.4} > {bound})"
        );
    }

    #[test]
    fn buckets_are_contiguous_and_cover_the_range() {
        let mut next = 0;
        for idx in 0..LATENCY_BUCKETS {
            let (lo, w) = latency_bounds(idx);
            assert_eq!(lo, next, "gap before bucket {idx}");
            assert_eq!(latency_index(lo), idx);
            assert_eq!(latency_index(lo + w - 1), idx);
            // Midpoint error bound: half a width relative to the bucket's lower bound.
            if lo > 0 {
                assert!((w / 2) as f64 / lo as f64 <= 1.0 / 32.0 + 1e-12);
            }
            next = lo + w;
        }
        assert_eq!(next, MAX_BUCKETED_US + 1);
    }

    #[test]
    fn empty_histogram_has_no_statistics() {
        let h = LatencyHistogram::new();
        assert_eq!(h.count(), 0);
        assert!(h.is_empty());
        assert_eq!(h.quantile(0.5), None);
        assert_eq!(h.mean(), None);
        assert_eq!(h.max(), None);
        assert_eq!(h.min(), None);
    }

    #[test]
    fn single_value_comes_back_exactly() {
        for v in [0, 1, 15, 17, 1_000, 12_345, 987_654, 100_000_000] {
            let mut h = LatencyHistogram::new();
            h.record(us(v));
            for q in [0.0, 0.5, 0.99, 1.0] {
                assert_eq!(h.quantile(q), Some(us(v)), "value {v} q {q}");
            }
            assert_eq!(h.mean(), Some(us(v)));
            assert_eq!(h.count(), 1);
        }
    }

    #[test]
    fn quantiles_match_exact_ones_within_bound() {
        // A deterministic spread over five decades, plus a bimodal tail.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut samples = Vec::new();
        for i in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = if i % 10 == 0 {
                200_000 + x % 300_000
            } else {
                50 + x % 20_000
            };
            samples.push(v);
        }
        let mut h = LatencyHistogram::new();
        for &v in &samples {
            h.record(us(v));
        }
        samples.sort_unstable();
        for q in [0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0] {
            assert_close(h.quantile(q).unwrap(), exact(&samples, q), 0.045);
        }
        let mean = samples.iter().sum::<u64>() as f64 / samples.len() as f64;
        assert!((h.mean().unwrap().as_secs_f64() * 1e6 - mean).abs() < 1e-3);
        assert_eq!(h.max(), Some(us(*samples.last().unwrap())));
    }

    #[test]
    fn small_values_are_exact() {
        let mut h = LatencyHistogram::new();
        for v in 0..32 {
            h.record(us(v));
        }
        // Nearest rank of q = k/32 is sample k-1.
        for k in 1..=32u64 {
            assert_eq!(h.quantile(k as f64 / 32.0), Some(us(k - 1)));
        }
    }

    #[test]
    fn huge_values_are_clamped_into_the_last_bucket() {
        let mut h = LatencyHistogram::new();
        h.record(Duration::from_secs(3600));
        h.record(Duration::from_secs(7200));
        h.record(Duration::MAX);
        assert_eq!(h.count(), 3);
        assert_eq!(h.counts[LATENCY_BUCKETS - 1], 3);
        assert_eq!(h.max(), Some(Duration::from_micros(u64::MAX)));
        // The median is the last bucket's midpoint, raised to the observed minimum.
        assert_eq!(h.quantile(0.5), Some(Duration::from_secs(3600)));

        let mut h = LatencyHistogram::new();
        h.record(us(1_000));
        h.record(Duration::from_secs(1_000));
        let top = h.quantile(1.0).unwrap();
        let (lo, _) = latency_bounds(LATENCY_BUCKETS - 1);
        assert!(top >= us(lo) && top <= Duration::from_secs(1_000), "{top:?}");
        assert_close(h.quantile(0.5).unwrap(), 1_000, 1.0 / 32.0);
    }

    #[test]
    fn merge_equals_recording_both() {
        let mut a = LatencyHistogram::new();
        let mut b = LatencyHistogram::new();
        let mut both = LatencyHistogram::new();
        for v in (1..5_000u64).map(|i| i * 37 % 90_001) {
            let target = if v % 3 == 0 { &mut a } else { &mut b };
            target.record(us(v));
            both.record(us(v));
        }
        let mut merged = a.clone();
        merged.merge(&b);
        assert_eq!(merged, both);
        merged.merge(&LatencyHistogram::new());
        assert_eq!(merged, both);
        let mut from_empty = LatencyHistogram::new();
        from_empty.merge(&both);
        assert_eq!(from_empty, both);
    }

    #[test]
    fn nan_and_out_of_range_q_are_tolerated() {
        let mut h = LatencyHistogram::new();
        h.record(us(10));
        h.record(us(20));
        assert_eq!(h.quantile(-1.0), Some(us(10)));
        assert_eq!(h.quantile(2.0), Some(us(20)));
        assert!(h.quantile(f64::NAN).is_some());
    }

    #[test]
    fn size_buckets_use_inclusive_upper_bounds() {
        assert_eq!(SIZE_BOUNDS[0], 0);
        assert_eq!(SIZE_BOUNDS[1], 1024);
        assert_eq!(SIZE_BOUNDS[2], 2048);
        assert_eq!(SIZE_BOUNDS[23], 1 << 32);
        assert_eq!(SIZE_BOUNDS[24], 5 << 30);
        let cases: [(u64, Option<u64>); 12] = [
            (0, Some(0)),
            (1, Some(1024)),
            (1024, Some(1024)),
            (1025, Some(2048)),
            (2048, Some(2048)),
            (2049, Some(4096)),
            (1 << 20, Some(1 << 20)),
            ((1 << 20) + 1, Some(2 << 20)),
            (1 << 32, Some(1 << 32)),
            ((1 << 32) + 1, Some(5 << 30)),
            (5 << 30, Some(5 << 30)),
            ((5 << 30) + 1, None),
        ];
        for (size, le) in cases {
            let mut h = SizeHistogram::new();
            h.record(size);
            assert_eq!(h.buckets().collect::<Vec<_>>(), vec![(le, 1)], "size {size}");
        }
        let mut h = SizeHistogram::new();
        h.record(u64::MAX);
        assert_eq!(h.buckets().collect::<Vec<_>>(), vec![(None, 1)]);
    }

    #[test]
    fn size_histogram_merges_and_skips_empty_buckets() {
        let mut a = SizeHistogram::new();
        a.record(10);
        a.record(100);
        a.record(5_000);
        let mut b = SizeHistogram::new();
        b.record(0);
        b.record(1 << 30);
        a.merge(&b);
        assert_eq!(a.count(), 5);
        assert_eq!(
            a.buckets().collect::<Vec<_>>(),
            vec![(Some(0), 1), (Some(1024), 2), (Some(8192), 1), (Some(1 << 30), 1)]
        );
        a.clear();
        assert_eq!(a.buckets().count(), 0);
    }
}

//! What a run measured.

use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::time::Duration;

/// Latencies are recorded in microseconds, up to an hour, 3 significant digits.
pub(crate) fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!("3 digits is valid")))
}

/// Counters and latencies of one operation kind, as a worker collects them.
pub(crate) struct OpStats {
    pub(crate) ok: u64,
    pub(crate) errors: u64,
    pub(crate) bytes: u64,
    pub(crate) latency_us: Histogram<u64>,
    pub(crate) first_error: Option<String>,
}

impl OpStats {
    pub(crate) fn new() -> Self {
        Self {
            ok: 0,
            errors: 0,
            bytes: 0,
            latency_us: new_histogram(),
            first_error: None,
        }
    }

    pub(crate) fn record(&mut self, took: Duration, bytes: u64) {
        self.ok += 1;
        self.bytes += bytes;
        let _ = self
            .latency_us
            .record(took.as_micros().clamp(1, u128::from(u64::MAX)) as u64);
    }

    pub(crate) fn error(&mut self, e: String) {
        self.errors += 1;
        self.first_error.get_or_insert(e);
    }

    pub(crate) fn merge(&mut self, other: OpStats) {
        self.ok += other.ok;
        self.errors += other.errors;
        self.bytes += other.bytes;
        let _ = self.latency_us.add(&other.latency_us);
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// One operation kind's results.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct OpReport {
    /// Successful operations.
    pub ok: u64,
    /// Failed operations.
    pub errors: u64,
    /// Payload bytes moved by successful operations.
    pub bytes: u64,
    /// Successful operations per second of the run.
    pub ops_per_sec: f64,
    /// Payload MiB per second of the run.
    pub mib_per_sec: f64,
    /// Latency percentiles, milliseconds.
    pub p50_ms: f64,
    /// 90th percentile, ms.
    pub p90_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Slowest, ms.
    pub max_ms: f64,
    /// The first error seen, if any.
    pub first_error: Option<String>,
}

/// A whole run's results.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Report {
    /// Seconds the measured phase lasted.
    pub elapsed_secs: f64,
    /// Per operation kind (`put`, `get`, `list`, `multipart`).
    pub ops: BTreeMap<String, OpReport>,
    /// The configuration, for the record.
    pub config: serde_json::Value,
}

impl Report {
    pub(crate) fn build(elapsed: Duration, stats: BTreeMap<&'static str, OpStats>, config: serde_json::Value) -> Self {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let ms = |h: &Histogram<u64>, q: f64| {
            if h.is_empty() {
                0.0
            } else {
                h.value_at_quantile(q) as f64 / 1000.0
            }
        };
        let ops = stats
            .into_iter()
            .map(|(name, s)| {
                let r = OpReport {
                    ok: s.ok,
                    errors: s.errors,
                    bytes: s.bytes,
                    ops_per_sec: s.ok as f64 / secs,
                    mib_per_sec: s.bytes as f64 / 1048576.0 / secs,
                    p50_ms: ms(&s.latency_us, 0.50),
                    p90_ms: ms(&s.latency_us, 0.90),
                    p99_ms: ms(&s.latency_us, 0.99),
                    max_ms: if s.latency_us.is_empty() {
                        0.0
                    } else {
                        s.latency_us.max() as f64 / 1000.0
                    },
                    first_error: s.first_error,
                };
                (name.to_owned(), r)
            })
            .collect();
        Self {
            elapsed_secs: secs,
            ops,
            config,
        }
    }

    /// A table for people.
    #[must_use]
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<10} {:>9} {:>7} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
            "op", "ok", "errors", "ops/s", "MiB/s", "p50 ms", "p90 ms", "p99 ms", "max ms"
        );
        for (name, r) in &self.ops {
            out.push_str(&format!(
                "{:<10} {:>9} {:>7} {:>10.1} {:>9.1} {:>9.2} {:>9.2} {:>9.2} {:>9.2}\n",
                name, r.ok, r.errors, r.ops_per_sec, r.mib_per_sec, r.p50_ms, r.p90_ms, r.p99_ms, r.max_ms
            ));
        }
        out.push_str(&format!("elapsed: {:.2} s\n", self.elapsed_secs));
        for (name, r) in &self.ops {
            if let Some(e) = &r.first_error {
                out.push_str(&format!("first {name} error: {e}\n"));
            }
        }
        out
    }
}

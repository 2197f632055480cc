//! [`Telemetry`]: the one handle the data path records into, feeding both the sliding windows
//! (for the agents and the hedged reader) and the OpenTelemetry instruments (for people).

use crate::otel::Otel;
use crate::stats::{
    BackendOp, BackendSnapshot, BackendStats, BucketSnapshot, BucketStats, Outcome, Prediction, PrincipalCounters,
    PrincipalRequest, PrincipalSnapshot, PrincipalStats, Request,
};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

/// Distinct prefixes per bucket exported as OTel attributes; beyond it they count as "(other)",
/// so a scan over a huge key space cannot explode the metric's cardinality.
const MAX_EXPORTED_PREFIXES: usize = 256;

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("enabled", &self.enabled)
            .field("prefix_depth", &self.prefix_depth)
            .finish_non_exhaustive()
    }
}

/// Records every backend call and S3 request; cheap to share (`Arc`).
pub struct Telemetry {
    enabled: bool,
    backends: BackendStats,
    buckets: BucketStats,
    principals: PrincipalStats,
    otel: Otel,
    prefix_depth: usize,
    exported_prefixes: Mutex<HashMap<String, HashSet<String>>>,
}

impl Telemetry {
    /// Telemetry exporting through `otel`, tracking key prefixes `prefix_depth` components deep;
    /// with a disabled `otel` nothing at all is recorded (for measuring what telemetry costs).
    #[must_use]
    pub fn new(otel: Otel, prefix_depth: usize) -> Self {
        Self {
            enabled: otel.is_enabled(),
            backends: BackendStats::new(),
            buckets: BucketStats::new(prefix_depth),
            principals: PrincipalStats::new(),
            otel,
            prefix_depth,
            exported_prefixes: Mutex::new(HashMap::new()),
        }
    }

    /// Telemetry that records nothing (engines built without a server, tests of other parts).
    #[must_use]
    pub fn off() -> Self {
        Self::new(Otel::disabled(), 0)
    }

    /// Whether anything is recorded.
    #[must_use]
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The exporter (Prometheus text, OTLP, tracing layer).
    #[must_use]
    pub fn otel(&self) -> &Otel {
        &self.otel
    }

    /// Records one finished backend call.
    pub fn backend_call(&self, backend: &str, op: BackendOp, latency: Duration, bytes: u64, outcome: Outcome) {
        if !self.enabled {
            return;
        }
        self.backends.record(backend, op, latency, bytes, outcome);
        self.otel
            .instruments()
            .backend_call(backend, op.name(), latency, bytes, outcome.name());
    }

    /// Records a backend's health as sampled now (about once a second).
    pub fn backend_health(&self, backend: &str, healthy: bool) {
        if self.enabled {
            self.backends.record_health(backend, healthy);
        }
    }

    /// Records `blocks` shard blocks read from `backend` that failed their CRC32C or keyed MAC
    /// (or were found rewritten by authenticating their block).
    pub fn integrity_failures(&self, backend: &str, blocks: u64) {
        if self.enabled {
            self.backends.record_integrity_failures(backend, blocks);
        }
    }

    /// Counts one finished S3 request for `principal` (a name from
    /// [`crate::stats::principal::principal_of`]).
    pub fn principal_request(&self, principal: &str, r: &PrincipalRequest<'_>) {
        if self.enabled {
            self.principals.record(principal, &PrincipalCounters::of_request(r));
        }
    }

    /// Counts one storage-policy change refused for a missing or wrong `policy_update_token`.
    pub fn token_failure(&self, principal: &str) {
        if self.enabled {
            let counts = PrincipalCounters {
                token_failures: 1,
                ..PrincipalCounters::default()
            };
            self.principals.record(principal, &counts);
        }
    }

    /// Sliding-window and total counts of every principal seen recently, sorted by name.
    #[must_use]
    pub fn principals(&self) -> Vec<PrincipalSnapshot> {
        self.principals.snapshot()
    }

    /// Registers a backend so that it is listed before its first call.
    pub fn register_backend(&self, backend: &str) {
        self.backends.ensure(backend);
    }

    /// Records one finished S3 request.
    pub fn s3_request(&self, r: &Request<'_>) {
        if !self.enabled {
            return;
        }
        self.buckets.record(r);
        let instruments = self.otel.instruments();
        instruments.s3_request(r.bucket, r.operation, r.status, r.bytes_in, r.bytes_out, r.latency);
        if let (Some(key), true) = (r.key, self.prefix_depth > 0 && !r.bucket.is_empty()) {
            let prefix = crate::stats::prefix_of(key, self.prefix_depth);
            let exported = {
                let mut seen = self
                    .exported_prefixes
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                match seen.get_mut(r.bucket) {
                    Some(set) if set.contains(prefix) => prefix,
                    Some(set) if set.len() < MAX_EXPORTED_PREFIXES => {
                        set.insert(prefix.to_owned());
                        prefix
                    }
                    Some(_) => "(other)",
                    None => {
                        seen.insert(r.bucket.to_owned(), HashSet::from([prefix.to_owned()]));
                        prefix
                    }
                }
            };
            instruments.prefix_access(r.bucket, exported);
        }
    }

    /// The latency the next call of `op` on `backend` is predicted to take (1-minute window).
    #[must_use]
    pub fn predict(&self, backend: &str, op: BackendOp) -> Option<Prediction> {
        if !self.enabled {
            return None;
        }
        self.backends.predict(backend, op)
    }

    /// Sliding-window statistics of every backend.
    #[must_use]
    pub fn backends(&self) -> Vec<BackendSnapshot> {
        self.backends.snapshot()
    }

    /// Sliding-window statistics of one bucket (all zero when no request was seen for it).
    #[must_use]
    pub fn bucket(&self, bucket: &str) -> BucketSnapshot {
        self.buckets.snapshot_or_empty(bucket)
    }

    /// Forgets a deleted bucket's statistics.
    pub fn forget_bucket(&self, bucket: &str) {
        self.buckets.forget(bucket);
        self.exported_prefixes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(bucket);
    }
}

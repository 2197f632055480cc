//! The synchronous instruments the data plane records on its hot path.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::metrics::{Counter, Histogram, Meter};
use opentelemetry::KeyValue;

use super::names::*;

/// Histogram bucket boundaries, in seconds, for request durations: 100 µs (a cached local read)
/// up to 60 s (a multi-GiB object over a slow link); roughly 1-2.5-5 per decade so the quantiles
/// Prometheus interpolates stay within a factor ~2.5.
pub const DURATION_BOUNDARIES_SECONDS: [f64; 18] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The instruments of the gateway; cheap to clone, every method a no-op when telemetry is off.
///
/// Attributes are built on the stack for every record: `&'static str` values and the status
/// code cost no allocation, each `&str` value (backend id, bucket, operation) one small `String`.
/// The SDK finds the attribute set's series by hashing the slice, without copying it.
#[derive(Clone, Debug, Default)]
pub struct Instruments {
    // `None` when telemetry is disabled: the off path is one branch, no attribute is built.
    set: Option<Arc<Set>>,
}

#[derive(Debug)]
struct Set {
    backend_duration: Histogram<f64>,
    backend_io: Counter<u64>,
    backend_errors: Counter<u64>,
    s3_duration: Histogram<f64>,
    s3_request_body: Counter<u64>,
    s3_response_body: Counter<u64>,
    prefix_accesses: Counter<u64>,
}

impl Instruments {
    /// Instruments that record nothing.
    pub fn disabled() -> Self {
        Self { set: None }
    }

    pub(super) fn new(meter: &Meter) -> Self {
        let boundaries = DURATION_BOUNDARIES_SECONDS.to_vec();
        let set = Set {
            backend_duration: meter
                .f64_histogram(BACKEND_REQUEST_DURATION)
                .with_description("Duration of the gateway's requests to a storage backend")
                .with_unit("s")
                .with_boundaries(boundaries.clone())
                .build(),
            backend_io: meter
                .u64_counter(BACKEND_IO)
                .with_description("Bytes read from (get) or written to (put) a storage backend")
                .with_unit("By")
                .build(),
            backend_errors: meter
                .u64_counter(BACKEND_ERRORS)
                .with_description("Requests to a storage backend that failed (not counting not-found)")
                .with_unit("{error}")
                .build(),
            s3_duration: meter
                .f64_histogram(S3_REQUEST_DURATION)
                .with_description("Duration of S3 requests served by the gateway")
                .with_unit("s")
                .with_boundaries(boundaries)
                .build(),
            s3_request_body: meter
                .u64_counter(S3_REQUEST_BODY)
                .with_description("Bytes of S3 request bodies received (uploads)")
                .with_unit("By")
                .build(),
            s3_response_body: meter
                .u64_counter(S3_RESPONSE_BODY)
                .with_description("Bytes of S3 response bodies sent (downloads)")
                .with_unit("By")
                .build(),
            prefix_accesses: meter
                .u64_counter(S3_PREFIX_ACCESSES)
                .with_description("S3 requests per bucket and key prefix")
                .with_unit("{request}")
                .build(),
        };
        Self {
            set: Some(Arc::new(set)),
        }
    }

    /// Whether records go anywhere (false when telemetry is disabled).
    #[inline]
    pub fn is_enabled(&self) -> bool {
        self.set.is_some()
    }

    /// Records one finished backend request: `op` is get|put|delete|list|head, `outcome`
    /// ok|not_found|error; `bytes` are the object bytes moved (0 for none).
    #[inline]
    pub fn backend_call(&self, backend: &str, op: &'static str, latency: Duration, bytes: u64, outcome: &'static str) {
        let Some(set) = &self.set else { return };
        let attrs = [
            KeyValue::new(ATTR_BACKEND, backend.to_owned()),
            KeyValue::new(ATTR_BACKEND_OPERATION, op),
            KeyValue::new(ATTR_BACKEND_OUTCOME, outcome),
        ];
        set.backend_duration.record(latency.as_secs_f64(), &attrs);
        // The byte and error counters leave the outcome out: bytes are bytes whatever the
        // outcome, and errors have one outcome; fewer series for Prometheus.
        if bytes > 0 {
            set.backend_io.add(bytes, &attrs[..2]);
        }
        if outcome == OUTCOME_ERROR {
            set.backend_errors.add(1, &attrs[..2]);
        }
    }

    /// Records one finished S3 request; `bucket` is "" for service-level operations
    /// (ListBuckets), which then carry no bucket attribute.
    #[inline]
    pub fn s3_request(
        &self,
        bucket: &str,
        operation: &str,
        status: u16,
        bytes_in: u64,
        bytes_out: u64,
        latency: Duration,
    ) {
        let Some(set) = &self.set else { return };
        // Bucket first, so that a service-level request just drops it with a subslice.
        let attrs = [
            KeyValue::new(ATTR_S3_BUCKET, bucket.to_owned()),
            KeyValue::new(ATTR_S3_OPERATION, operation.to_owned()),
            KeyValue::new(ATTR_HTTP_STATUS_CODE, i64::from(status)),
        ];
        let attrs = if bucket.is_empty() { &attrs[1..] } else { &attrs[..] };
        set.s3_duration.record(latency.as_secs_f64(), attrs);
        if bytes_in > 0 {
            set.s3_request_body.add(bytes_in, attrs);
        }
        if bytes_out > 0 {
            set.s3_response_body.add(bytes_out, attrs);
        }
    }

    /// Counts one access to `prefix` in `bucket`; the caller bounds the number of prefixes.
    #[inline]
    pub fn prefix_access(&self, bucket: &str, prefix: &str) {
        let Some(set) = &self.set else { return };
        let attrs = [
            KeyValue::new(ATTR_S3_BUCKET, bucket.to_owned()),
            KeyValue::new(ATTR_S3_PREFIX, prefix.to_owned()),
        ];
        set.prefix_accesses.add(1, &attrs);
    }
}

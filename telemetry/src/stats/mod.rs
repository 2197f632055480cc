//! Sliding-window statistics (1 min, 15 min, 1 h) per backend, per bucket and per S3 principal.
//!
//! The control-plane agents and the hedged reader decide from recent behaviour ("is this
//! backend slow right now?"), which cumulative counters cannot answer without a time-series
//! store; so every record lands in a 5-second slot of a one-hour ring and snapshots merge the
//! slots each window covers. The OpenTelemetry side ([`crate::otel`]) stays cumulative, for
//! people and their dashboards.
//!
//! Every recording and reading function has an `_at(now, ...)` twin taking the clock
//! explicitly, for tests and for callers that already read it.

pub mod backend;
pub mod bucket;
pub mod histogram;
pub mod principal;
pub mod window;

pub use backend::{
    BackendOp, BackendSnapshot, BackendStats, BackendTotal, BackendWindow, OpStats, Outcome, Prediction,
};
pub use bucket::{
    prefix_of, Access, BucketSnapshot, BucketStats, BucketWindow, LatencySummary, PrefixCount, Request, SizeBucket,
};
pub use histogram::{LatencyHistogram, SizeHistogram};
pub use principal::{PrincipalCounters, PrincipalRequest, PrincipalSnapshot, PrincipalStats, PrincipalWindow};
pub use window::Window;

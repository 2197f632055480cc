//! A load generator for any S3 endpoint (ours, MinIO, Garage, AWS): the same workloads and the
//! same measurements for all, so results compare.
//!
//! - [`config`]: what to run (workload, sizes, counts, concurrency, duration).
//! - [`report`]: what was measured (ops/s, MiB/s, latency percentiles per operation), as a
//!   table for people and JSON for scripts.
//! - [`run`]: the workers; each keeps its own histograms, merged at the end, so measuring
//!   costs no locks on the hot path.

pub mod config;
pub mod report;
mod run;

pub use config::{BenchConfig, Workload};
pub use report::{OpReport, Report};
pub use run::run;

/// What can stop a benchmark before it measures anything.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The configuration makes no sense.
    #[error("bench configuration: {0}")]
    Config(String),
    /// Preparing the bucket or the objects to read failed.
    #[error("preparing the benchmark: {0}")]
    Setup(String),
}

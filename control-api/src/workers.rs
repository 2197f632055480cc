//! The background workers' endpoints: `GET /api/v1/workers` and `PUT /api/v1/workers/{name}`.
//!
//! A worker's status and a change to it are the `workers` crate's own types (the runner reports
//! in them), re-exported here so the wire is spelled once.

use serde::{Deserialize, Serialize};

pub use workers::{State as WorkerState, ThrottleSettings, WorkerChange, WorkerStatus};

/// `GET /api/v1/workers`: every worker's status, in start order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkersView {
    /// The workers.
    pub workers: Vec<WorkerStatus>,
}

//! Anomaly detection over the gateway's telemetry, for the agents and for trust.
//!
//! ```text
//! telemetry JSON ──features::Extractor──▶ Sample (kind:id, features per window)
//!        Sample ──detect::Detector──────▶ Verdict (once per episode)
//!                    ├ baseline: median/MAD ring per subject → robust z (floored MAD)
//!                    ├ KMeans on the normalised baseline → distance / training p99
//!                    ├ DBSCAN among same-kind peers (cold start) + absolute limits
//!                    └ classify: malfunction | attack | tampering, top-3 deviations
//!       Verdict ──store::Anomalies──────▶ routes::router (GET /api/v1/anomalies), followers
//! ```
//!
//! `trace` generates a labelled synthetic trace in the same JSON, so that the whole pipeline
//! is measured for precision and recall (tests/quality.rs). Nothing here depends on the
//! gateway, the agents or trust: the agents call [`Detector::observe`] once per period.

pub mod baseline;
pub mod classify;
pub mod detect;
pub mod features;
pub mod routes;
pub mod store;
pub mod trace;

pub use detect::{Detector, DetectorConfig, Verdict};
pub use features::{Extractor, Feature, Kind, Sample};
pub use routes::router;
pub use store::{Anomalies, Query};

//! The ML connector: the [`Model`] trait and the models a policy may consult in `ml` mode.
//!
//! ```text
//!  World (each period) ──observe──▶ Models
//!                                    ├─ LatencyForecaster  per-backend p95 series, Holt's     forecast.rs
//!                                    │                     level + trend, 95 % interval
//!                                    ├─ BackendClusters    KMeans over latency, bandwidth,     clusters.rs
//!                                    │                     errors, availability -> fast/medium/slow
//!                                    └─ ExternalModel      POST {base}/deployment/{id}/predict external.rs
//!  every model: Model { name, train(Dataset), predict(input, explain) -> Prediction }  model.rs
//! ```
//!
//! The built-in models are refitted at every observation (they are small); the external one
//! is only called when a policy asks, since it costs a round trip.

mod clusters;
mod external;
mod forecast;
mod model;

pub use clusters::{Assignment, BackendClusters, Cluster, FEATURES};
pub use external::{ExternalModel, CALL_TIMEOUT, CONNECT_TIMEOUT, MAX_ANSWER_BYTES};
pub use forecast::{Forecast, HoltFit, LatencyForecaster, DEFAULT_CAPACITY, MAX_GAP_STEPS, MIN_SAMPLES};
pub use model::{Dataset, Model, Prediction, Row};

use crate::world::World;

/// The models an agent holds.
#[derive(Debug, Default)]
pub struct Models {
    forecaster: LatencyForecaster,
    clusters: BackendClusters,
    external: Option<ExternalModel>,
    /// The last world's time and period, Unix ms and ms: forecasts count periods from then.
    now_ms: i64,
    period_ms: i64,
}

impl Models {
    /// The built-in models, and `external` if the agent was given an ML connector deployment.
    #[must_use]
    pub fn new(external: Option<ExternalModel>) -> Self {
        Self {
            external,
            ..Self::default()
        }
    }

    /// Learns from a period's snapshot: appends each backend's p95, forgets backends gone from
    /// the world, and regroups the backends.
    pub fn observe(&mut self, world: &World) {
        self.now_ms = world.now_ms;
        self.period_ms = i64::try_from(world.period_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        for b in &world.backends {
            self.forecaster.record(&b.id, world.now_ms, b.get_p95_ms);
        }
        self.forecaster.retain(|id| world.backend(id).is_some());
        let rows: Vec<Row> = world.backends.iter().map(backend_row).collect();
        if let Err(e) = self.clusters.fit(&rows) {
            // The fit was cleared; policies see no clusters rather than stale ones.
            tracing::warn!(error = %e, backends = rows.len(), "clustering backends failed");
        }
    }

    /// `backend`'s p95 GET `steps` periods after the last observed world (a backend unmeasured
    /// lately is projected from its last sample across the gap).
    #[must_use]
    pub fn forecast_p95(&self, backend: &str, steps: u32) -> Option<Forecast> {
        if self.period_ms <= 0 {
            return self.forecaster.forecast(backend, steps);
        }
        let at = self
            .now_ms
            .saturating_add(self.period_ms.saturating_mul(i64::from(steps)));
        self.forecaster.forecast_at(backend, at)
    }

    /// `backend`'s cluster name and its distance to the cluster's centroid.
    #[must_use]
    pub fn cluster_of(&self, backend: &str) -> Option<(String, f64)> {
        self.clusters
            .assignment(backend)
            .map(|a| (a.cluster.clone(), a.distance))
    }

    /// The ML connector deployment, if any.
    #[must_use]
    pub fn external(&self) -> Option<&ExternalModel> {
        self.external.as_ref()
    }

    /// The latency forecaster.
    #[must_use]
    pub fn forecaster(&self) -> &LatencyForecaster {
        &self.forecaster
    }

    /// The clustering of backends.
    #[must_use]
    pub fn clusters(&self) -> &BackendClusters {
        &self.clusters
    }
}

/// A backend's clustering features (the missing ones left out).
fn backend_row(b: &crate::world::BackendView) -> Row {
    let features = [
        (FEATURES[0], b.get_p95_ms),
        (FEATURES[1], b.bandwidth_mib_s),
        (FEATURES[2], b.error_rate),
        (FEATURES[3], b.availability),
    ];
    Row::new(&b.id, features.into_iter().filter_map(|(k, v)| Some((k, v?))))
}

//! The backends and the faults injected into them at run time: `GET /api/v1/backends` and
//! `GET/PUT/DELETE /api/v1/backends/{id}/faults`.

use placement::BackendLabels;
use serde::{Deserialize, Serialize};

/// `GET /api/v1/backends`: every configured backend, in configuration order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BackendsView {
    /// Whether the gateway was started with fault injection allowed (`--allow-fault-injection`
    /// or the `multicloud-sim` profile): only then can faults be changed at run time.
    pub fault_injection: bool,
    /// The backends.
    pub backends: Vec<BackendInfo>,
}

/// One backend: what it is, where placement thinks it is, how healthy it is, what is injected.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BackendInfo {
    /// Backend id.
    pub id: String,
    /// Kind of store: `local`, `memory`, `s3`, `gcs`, `azure`.
    pub kind: String,
    /// Shards live in a local directory.
    pub local: bool,
    /// Provider, region, jurisdiction and prices, as configured.
    pub labels: BackendLabels,
    /// Failed recently: calls are skipped until the backoff has passed.
    pub suspect: bool,
    /// Failures in a row.
    pub consecutive_failures: u32,
    /// The latest failure.
    pub last_error: Option<String>,
    /// The faults injected now; `None` when the backend has no fault injector.
    pub faults: Option<Faults>,
}

/// Faults injected into a backend: the keys of a `[[backend]]` `faults` table, each defaulting
/// to "nothing". `PUT /api/v1/backends/{id}/faults` takes it (replacing the whole spec; unknown
/// keys are refused) and every faults endpoint answers it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Fixed delay added to every call, milliseconds.
    #[serde(default)]
    pub latency_ms: f64,
    /// Mean of an exponentially distributed extra delay per call, milliseconds.
    #[serde(default)]
    pub jitter_ms: f64,
    /// Cap on bytes moved per second (one link shared by all calls), MiB/s; `None`: no cap.
    #[serde(default)]
    pub bandwidth_mib_s: Option<f64>,
    /// Probability that a call fails with an injected error.
    #[serde(default)]
    pub error_rate: f64,
    /// Windows `[from, to)` in seconds since the spec was set during which every call fails.
    #[serde(default)]
    pub outages: Vec<[f64; 2]>,
    /// Probability that a read returns its bytes with one bit flipped.
    #[serde(default)]
    pub bitflip_rate: f64,
    /// Seed of the random choices, for repeatable runs.
    #[serde(default)]
    pub seed: Option<u64>,
}

impl Faults {
    /// Whether nothing is injected (a seed alone injects nothing).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        Self {
            seed: None,
            ..self.clone()
        } == Self::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn faults_take_the_keys_of_a_faults_table_and_nothing_else() {
        let f: Faults = serde_json::from_value(json!({"latency_ms": 300})).unwrap();
        assert_eq!(
            f,
            Faults {
                latency_ms: 300.0,
                ..Faults::default()
            }
        );
        assert!(!f.is_empty());
        assert!(serde_json::from_value::<Faults>(json!({})).unwrap().is_empty());
        assert!(serde_json::from_value::<Faults>(json!({"seed": 3})).unwrap().is_empty());
        let err = serde_json::from_value::<Faults>(json!({"latency": 300})).unwrap_err();
        assert!(err.to_string().contains("unknown field `latency`"), "{err}");
        // What the answers carry reads back as the same spec.
        let full = Faults {
            latency_ms: 10.0,
            jitter_ms: 2.0,
            bandwidth_mib_s: Some(5.0),
            error_rate: 0.1,
            outages: vec![[1.0, 2.0]],
            bitflip_rate: 0.01,
            seed: Some(7),
        };
        let text = serde_json::to_string(&full).unwrap();
        assert_eq!(serde_json::from_str::<Faults>(&text).unwrap(), full);
    }

    #[test]
    fn the_backends_view_reads_as_documented() {
        // The example of docs/admin-api.md.
        let doc = json!({
          "fault_injection": true,
          "backends": [
            { "id": "aws-eu", "kind": "local", "local": true,
              "labels": { "provider": "aws", "region": "eu", "gdpr": true,
                          "cost_per_gib_month": 0.023, "egress_per_gib": 0.09 },
              "suspect": false, "consecutive_failures": 0, "last_error": null,
              "faults": { "latency_ms": 12.0, "jitter_ms": 4.0, "bandwidth_mib_s": 80.0,
                          "error_rate": 0.0, "outages": [], "bitflip_rate": 0.0, "seed": null } }
          ]
        });
        let view: BackendsView = serde_json::from_value(doc.clone()).unwrap();
        assert_eq!(view.backends[0].labels.region, "eu");
        assert_eq!(view.backends[0].faults.as_ref().map(|f| f.latency_ms), Some(12.0));
        assert_eq!(serde_json::to_value(&view).unwrap(), doc);
    }
}

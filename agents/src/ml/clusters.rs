//! Backends grouped by how they behave: KMeans (linfa-clustering) over
//! [ln p95 GET, ln bandwidth, error rate, availability], each feature standardised, with
//! k = min(3, backends) and a fixed seed so the same world gives the same groups.
//!
//! Clusters are named by the rank of their members' mean p95: `fast`, `medium`, `slow` (two
//! clusters: `fast` and `slow`; one: `medium`). A backend without a p95 is left out; a missing
//! bandwidth, error rate or availability takes the mean of the others (so it does not pull
//! the backend towards any cluster on that feature).

use std::collections::BTreeMap;

use async_trait::async_trait;
use linfa::prelude::*;
use linfa::DatasetBase;
use linfa_clustering::KMeans;
use ndarray::{Array1, Array2, Axis};
use rand_xoshiro::rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256Plus;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::model::{model_error, Dataset, Model, Prediction, Row};
use crate::error::Result;

/// The features, in the order of the matrix, by their names in a [`Row`].
pub const FEATURES: [&str; 4] = ["get_p95_ms", "bandwidth_mib_s", "error_rate", "availability"];
/// Most clusters made.
pub const MAX_CLUSTERS: usize = 3;
const SEED: u64 = 0x6d6c_7379_736f_7073;
/// Floors before the logarithms, so 0 ms or 0 MiB/s stay finite.
const MIN_MS: f64 = 0.01;
const MIN_MIB_S: f64 = 0.001;

/// One cluster as the explanation shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    /// `fast`, `medium` or `slow`.
    pub name: String,
    /// Its centroid in standardised feature space, in the order of [`FEATURES`].
    pub centroid: Vec<f64>,
    /// Its members' mean p95 GET, ms.
    pub mean_p95_ms: f64,
    /// Its members, by id.
    pub members: Vec<String>,
}

/// Where one backend landed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    /// Its cluster's name.
    pub cluster: String,
    /// Its distance to that cluster's centroid, in standard deviations.
    pub distance: f64,
}

/// The clustering of backends.
#[derive(Debug, Clone, Default)]
pub struct BackendClusters {
    /// Per feature: the mean and standard deviation of the raw (log) features fitted.
    scale: Vec<(f64, f64)>,
    clusters: Vec<Cluster>,
    assignments: BTreeMap<String, Assignment>,
}

impl BackendClusters {
    /// The name it answers to.
    pub const NAME: &'static str = "backend-clusters";

    /// Groups `rows` (one per backend, features named as in [`FEATURES`]), replacing the last
    /// grouping. Rows without a usable p95 are left out; no usable rows, no clusters.
    ///
    /// # Errors
    /// [`crate::Error::Model`] when KMeans fails.
    #[allow(
        clippy::result_large_err,
        reason = "crate::Error holds a ClientError by value (error.rs)"
    )]
    pub fn fit(&mut self, rows: &[Row]) -> Result<()> {
        *self = Self::default();
        let mut rows: Vec<&Row> = rows.iter().filter(|r| usable_p95(r).is_some()).collect();
        if rows.is_empty() {
            return Ok(());
        }
        // The same backends in another order must give the same clusters.
        rows.sort_by(|a, b| a.id.cmp(&b.id));
        rows.dedup_by(|a, b| a.id == b.id);
        let raw: Vec<[Option<f64>; 4]> = rows.iter().map(|r| raw_features(r)).collect();
        self.scale = (0..FEATURES.len())
            .map(|j| mean_sd(raw.iter().filter_map(|r| r[j])))
            .collect();
        let mut x = Array2::<f64>::zeros((rows.len(), FEATURES.len()));
        for (i, r) in raw.iter().enumerate() {
            for j in 0..FEATURES.len() {
                x[[i, j]] = self.standardise(j, r[j]);
            }
        }
        let k = MAX_CLUSTERS.min(distinct_rows(&x));
        let labels: Vec<usize>;
        let centroids: Array2<f64>;
        if k <= 1 {
            labels = vec![0; rows.len()];
            centroids = x
                .mean_axis(Axis(0))
                .map_or_else(|| Array2::zeros((1, FEATURES.len())), |m| m.insert_axis(Axis(0)));
        } else {
            let data = DatasetBase::from(x.clone());
            let model = KMeans::params_with_rng(k, Xoshiro256Plus::seed_from_u64(SEED))
                .max_n_iterations(300)
                .tolerance(1e-6)
                .fit(&data)
                .map_err(|e| model_error(Self::NAME, format!("KMeans over {} backends: {e}", rows.len())))?;
            let predicted: Array1<usize> = model.predict(&x);
            labels = predicted.to_vec();
            centroids = model.centroids().clone();
        }
        let k = centroids.nrows();
        // Rank clusters by their members' mean p95 to name them.
        let mut sums = vec![(0.0, 0usize); k];
        for (row, &label) in rows.iter().zip(&labels) {
            sums[label].0 += usable_p95(row).unwrap_or(0.0);
            sums[label].1 += 1;
        }
        #[allow(clippy::cast_precision_loss)]
        let means: Vec<f64> = sums
            .iter()
            .map(|&(s, n)| if n == 0 { f64::INFINITY } else { s / n as f64 })
            .collect();
        let mut order: Vec<usize> = (0..k).collect();
        order.sort_by(|&a, &b| means[a].total_cmp(&means[b]));
        let names = names_for(k);
        let mut name_of = vec![String::new(); k];
        for (rank, &c) in order.iter().enumerate() {
            name_of[c] = names[rank].to_owned();
        }
        for &c in &order {
            self.clusters.push(Cluster {
                name: name_of[c].clone(),
                centroid: centroids.row(c).to_vec(),
                mean_p95_ms: means[c],
                members: rows
                    .iter()
                    .zip(&labels)
                    .filter(|(_, l)| **l == c)
                    .map(|(r, _)| r.id.clone())
                    .collect(),
            });
        }
        for (i, (row, &label)) in rows.iter().zip(&labels).enumerate() {
            let distance = distance(
                x.row(i).as_slice().unwrap_or(&[]),
                centroids.row(label).as_slice().unwrap_or(&[]),
            );
            self.assignments.insert(
                row.id.clone(),
                Assignment {
                    cluster: name_of[label].clone(),
                    distance,
                },
            );
        }
        Ok(())
    }

    /// Where `backend` landed at the last fit.
    #[must_use]
    pub fn assignment(&self, backend: &str) -> Option<&Assignment> {
        self.assignments.get(backend)
    }

    /// The clusters of the last fit, fastest first.
    #[must_use]
    pub fn clusters(&self) -> &[Cluster] {
        &self.clusters
    }

    /// The nearest cluster to a backend with these features (one not fitted, say) and its
    /// distance; `None` before any fit or without a usable p95.
    #[must_use]
    pub fn nearest(&self, row: &Row) -> Option<Assignment> {
        usable_p95(row)?;
        let raw = raw_features(row);
        let point: Vec<f64> = (0..FEATURES.len()).map(|j| self.standardise(j, raw[j])).collect();
        self.clusters
            .iter()
            .map(|c| (c, distance(&point, &c.centroid)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(c, d)| Assignment {
                cluster: c.name.clone(),
                distance: d,
            })
    }

    /// The explanation: the features, every cluster and every backend's place.
    #[must_use]
    pub fn explain(&self) -> Value {
        json!({
            "features": ["ln get_p95_ms", "ln bandwidth_mib_s", "error_rate", "availability"],
            "standardisation": self.scale.iter().map(|(m, s)| json!({"mean": m, "sd": s})).collect::<Vec<_>>(),
            "clusters": self.clusters,
            "backends": self.assignments,
        })
    }

    /// Feature `j` standardised; a missing one sits at the mean, a constant one at 0.
    fn standardise(&self, j: usize, v: Option<f64>) -> f64 {
        match (v, self.scale.get(j)) {
            (Some(v), Some(&(mean, sd))) if sd > 0.0 => (v - mean) / sd,
            _ => 0.0,
        }
    }
}

fn usable_p95(row: &Row) -> Option<f64> {
    row.get(FEATURES[0]).filter(|v| *v >= 0.0)
}

/// [ln p95, ln bandwidth, error rate, availability], each `None` when missing or unusable.
fn raw_features(row: &Row) -> [Option<f64>; 4] {
    [
        usable_p95(row).map(|v| v.max(MIN_MS).ln()),
        row.get(FEATURES[1])
            .filter(|v| *v >= 0.0)
            .map(|v| v.max(MIN_MIB_S).ln()),
        row.get(FEATURES[2]),
        row.get(FEATURES[3]),
    ]
}

/// Mean and population standard deviation (0, 0 for no values).
fn mean_sd(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let v: Vec<f64> = values.collect();
    if v.is_empty() {
        return (0.0, 0.0);
    }
    #[allow(clippy::cast_precision_loss)]
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

fn distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>().sqrt()
}

/// Rows that differ (to 1e-9), capping k: KMeans cannot make more clusters than points.
fn distinct_rows(x: &Array2<f64>) -> usize {
    let mut seen: Vec<Vec<i64>> = Vec::new();
    for row in x.rows() {
        #[allow(clippy::cast_possible_truncation)]
        let key: Vec<i64> = row.iter().map(|v| (v * 1e9).round() as i64).collect();
        if !seen.contains(&key) {
            seen.push(key);
        }
    }
    seen.len()
}

fn names_for(k: usize) -> &'static [&'static str] {
    match k {
        1 => &["medium"],
        2 => &["fast", "slow"],
        _ => &["fast", "medium", "slow"],
    }
}

#[async_trait]
impl Model for BackendClusters {
    fn name(&self) -> &str {
        Self::NAME
    }

    async fn train(&mut self, data: &Dataset) -> Result<()> {
        self.fit(&data.rows)
    }

    /// Input `{"backend": "b1"}` (a fitted backend) or `{"features": {...}}` (any backend);
    /// answers `{cluster, distance}`.
    async fn predict(&self, input: &Value, explain: bool) -> Result<Prediction> {
        let assignment = if let Some(id) = input.get("backend").and_then(Value::as_str) {
            self.assignment(id)
                .cloned()
                .ok_or_else(|| model_error(Self::NAME, format!("backend {id} was not clustered")))?
        } else if let Some(features) = input.get("features") {
            let features: BTreeMap<String, f64> = serde_json::from_value(features.clone())
                .map_err(|e| model_error(Self::NAME, format!("`features` must map names to numbers: {e}")))?;
            let row = Row {
                id: String::new(),
                features,
            };
            self.nearest(&row)
                .ok_or_else(|| model_error(Self::NAME, "no clusters yet, or `features` has no usable `get_p95_ms`"))?
        } else {
            return Err(model_error(Self::NAME, "input needs `backend` or `features`"));
        };
        Ok(Prediction {
            prediction: json!(assignment),
            explanation: explain.then(|| self.explain()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, p95: f64, bw: f64, err: f64, avail: f64) -> Row {
        Row::new(
            id,
            [
                ("get_p95_ms", p95),
                ("bandwidth_mib_s", bw),
                ("error_rate", err),
                ("availability", avail),
            ],
        )
    }

    fn fast_and_slow() -> Vec<Row> {
        vec![
            row("f1", 10.0, 200.0, 0.0, 1.0),
            row("s1", 400.0, 20.0, 0.05, 0.9),
            row("f2", 12.0, 180.0, 0.001, 1.0),
            row("s2", 450.0, 15.0, 0.04, 0.92),
            row("f3", 11.0, 210.0, 0.0, 0.99),
            row("s3", 380.0, 25.0, 0.06, 0.88),
        ]
    }

    #[test]
    fn fast_and_slow_backends_are_apart_and_named() {
        let mut c = BackendClusters::default();
        c.fit(&fast_and_slow()).unwrap();
        let name = |id: &str| c.assignment(id).unwrap().cluster.clone();
        let fast: Vec<String> = ["f1", "f2", "f3"].iter().map(|id| name(id)).collect();
        let slow: Vec<String> = ["s1", "s2", "s3"].iter().map(|id| name(id)).collect();
        assert!(fast.iter().all(|n| n == "fast"), "fast backends in {fast:?}");
        assert!(slow.iter().all(|n| n != "fast"), "slow backends in {slow:?}");
        assert_eq!(name("s2"), "slow", "the slowest is in `slow`");
        assert_eq!(c.clusters().len(), 3);
        assert_eq!(c.clusters()[0].name, "fast");
        assert!(c.clusters()[0].mean_p95_ms < 12.1);
        // A fast backend sits nearer its centroid than the gap between the groups.
        assert!(c.assignment("f1").unwrap().distance < 1.0);
        // An unseen slow-looking backend lands outside `fast`.
        let near = c.nearest(&row("x", 420.0, 18.0, 0.05, 0.9)).unwrap();
        assert_ne!(near.cluster, "fast");
    }

    #[test]
    fn same_world_same_clusters_whatever_the_order() {
        let mut a = BackendClusters::default();
        a.fit(&fast_and_slow()).unwrap();
        let mut rows = fast_and_slow();
        rows.reverse();
        let mut b = BackendClusters::default();
        b.fit(&rows).unwrap();
        assert_eq!(a.explain(), b.explain());
    }

    #[test]
    fn few_or_alike_backends_and_missing_features() {
        let mut c = BackendClusters::default();
        c.fit(&[]).unwrap();
        assert!(c.clusters().is_empty());
        c.fit(&[row("a", 10.0, 100.0, 0.0, 1.0), row("b", 10.0, 100.0, 0.0, 1.0)])
            .unwrap();
        assert_eq!(c.clusters().len(), 1);
        assert_eq!(c.assignment("a").unwrap().cluster, "medium");
        assert!(c.assignment("a").unwrap().distance.abs() < 1e-9);
        // No p95: left out. Only a p95: the rest at the mean.
        c.fit(&[
            Row::new("nop95", [("bandwidth_mib_s", 5.0)]),
            Row::new("fast", [("get_p95_ms", 5.0)]),
            row("slow", 500.0, f64::NAN, 0.1, 0.5),
        ])
        .unwrap();
        assert!(c.assignment("nop95").is_none());
        assert_eq!(c.assignment("fast").unwrap().cluster, "fast");
        assert_eq!(c.assignment("slow").unwrap().cluster, "slow");
    }

    #[tokio::test]
    async fn model_trait_predicts_and_explains() {
        let mut c = BackendClusters::default();
        c.train(&Dataset {
            rows: fast_and_slow(),
            ..Dataset::default()
        })
        .await
        .unwrap();
        let p = c.predict(&json!({"backend": "f2"}), true).await.unwrap();
        assert_eq!(p.prediction["cluster"], "fast");
        let e = p.explanation.unwrap();
        assert_eq!(e["clusters"].as_array().unwrap().len(), 3);
        assert!(e["backends"]["s1"]["distance"].as_f64().is_some());
        let p = c
            .predict(
                &json!({"features": {"get_p95_ms": 11.0, "bandwidth_mib_s": 190.0}}),
                false,
            )
            .await
            .unwrap();
        assert_eq!(p.prediction["cluster"], "fast");
        assert!(p.explanation.is_none());
        let e = c
            .predict(&json!({"features": {"get_p95_ms": "x"}}), false)
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("backend-clusters") && e.to_string().contains("features"),
            "{e}"
        );
        let e = c.predict(&json!({"backend": "zz"}), false).await.unwrap_err();
        assert!(e.to_string().contains("zz"), "{e}");
    }
}

//! The model seam, shaped like the MLSysOps ML connector: a model trains on a [`Dataset`] and
//! answers a JSON input with a [`Prediction`] and, when asked, an explanation.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

/// What a model learns from: one row of named features per subject (a backend, a bucket) and
/// named time series of `(time, value)` points.
///
/// Features are `f64` under free names (`get_p95_ms`, `bandwidth_mib_s`, ...); a feature a
/// subject lacks is left out of its row, and each model says how it treats the gap. Series are
/// keyed by subject id; a point's time is Unix ms and its value is `None` when nothing was
/// measured (models skip such points, and NaN or infinite values alike).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    /// One row per subject.
    #[serde(default)]
    pub rows: Vec<Row>,
    /// Time series by subject id, oldest point first.
    #[serde(default)]
    pub series: BTreeMap<String, Vec<(i64, Option<f64>)>>,
}

/// One subject's features.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// The subject's id.
    pub id: String,
    /// Its features by name.
    #[serde(default)]
    pub features: BTreeMap<String, f64>,
}

impl Row {
    /// A row for `id` with these features.
    #[must_use]
    pub fn new<'a>(id: impl Into<String>, features: impl IntoIterator<Item = (&'a str, f64)>) -> Self {
        Self {
            id: id.into(),
            features: features.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        }
    }

    /// The feature `name`, if present and finite.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<f64> {
        self.features.get(name).copied().filter(|v| v.is_finite())
    }
}

/// A model's answer, the ML connector's `{prediction, explanation}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// The answer.
    pub prediction: Value,
    /// Why, when asked for and the model can say.
    #[serde(default)]
    pub explanation: Option<Value>,
}

/// A model a policy may consult in `ml` mode.
#[async_trait]
pub trait Model: Send + Sync {
    /// Its name, as errors and decisions cite it.
    fn name(&self) -> &str;

    /// Learns from `data`, replacing what it learnt before.
    async fn train(&mut self, data: &Dataset) -> Result<()>;

    /// Answers `input`, with an explanation when `explain`.
    async fn predict(&self, input: &Value, explain: bool) -> Result<Prediction>;
}

/// The error of model `model`.
pub(crate) fn model_error(model: &str, message: impl Into<String>) -> Error {
    Error::Model {
        model: model.to_owned(),
        message: message.into(),
    }
}

//! A per-backend forecaster of p95 GET latency: Holt's linear exponential smoothing (a level
//! and a trend) over a bounded series per backend, with an interval from its own residuals.
//!
//! One step is the series' usual sampling interval (the median gap between samples, i.e. the
//! agent's period). A missing sample leaves a gap that counts as that many steps, up to
//! [`MAX_GAP_STEPS`], so a backend silent for an hour does not extrapolate an old trend an
//! hour ahead. Smoothing weights are chosen per backend by a small grid search on one-step
//! errors at every new sample: at most [`DEFAULT_CAPACITY`] points × 54 pairs, microseconds.

use std::collections::{BTreeMap, VecDeque};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::model::{model_error, Dataset, Model, Prediction};
use crate::error::Result;

/// Samples kept per backend by default (two hours at a one-minute period).
pub const DEFAULT_CAPACITY: usize = 120;
/// Fewest samples a forecast is made from.
pub const MIN_SAMPLES: usize = 3;
/// Longest gap, in steps, that a trend is projected across.
pub const MAX_GAP_STEPS: f64 = 10.0;
/// z of the two-sided 95 % interval.
const Z95: f64 = 1.96;
const ALPHAS: [f64; 9] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];
const BETAS: [f64; 6] = [0.0, 0.05, 0.1, 0.2, 0.3, 0.5];

/// How a backend's series was fitted: the explanation of its forecasts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HoltFit {
    /// Smoothed p95 at the last sample, ms.
    pub level: f64,
    /// Smoothed change per step, ms.
    pub trend: f64,
    /// Standard deviation of the one-step errors, ms.
    pub residual_sd: f64,
    /// Samples fitted.
    pub samples: usize,
    /// Level weight chosen.
    pub alpha: f64,
    /// Trend weight chosen.
    pub beta: f64,
    /// One step, ms (0 when the samples carry no spacing).
    pub step_ms: i64,
    /// Time of the last sample, Unix ms.
    pub last_ms: i64,
}

/// A p95 forecast some steps ahead with its 95 % interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forecast {
    /// Expected p95, ms.
    pub value: f64,
    /// Low end of the interval, ms (never below 0).
    pub low: f64,
    /// High end of the interval, ms.
    pub high: f64,
    /// Steps after the last sample it looks.
    pub steps: f64,
    /// The fit it comes from.
    pub explanation: HoltFit,
}

/// One backend's bounded series and its current fit.
#[derive(Debug, Clone, Default)]
struct Series {
    points: VecDeque<(i64, f64)>,
    fit: Option<HoltFit>,
}

/// The latency forecaster of every backend.
#[derive(Debug, Clone)]
pub struct LatencyForecaster {
    capacity: usize,
    series: BTreeMap<String, Series>,
}

impl Default for LatencyForecaster {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl LatencyForecaster {
    /// The name it answers to.
    pub const NAME: &'static str = "latency-forecast";

    /// A forecaster keeping at most `capacity` samples per backend (at least [`MIN_SAMPLES`]).
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(MIN_SAMPLES),
            series: BTreeMap::new(),
        }
    }

    /// Adds `backend`'s p95 at `t_ms` and refits it. `None`, NaN, infinite or negative values
    /// are ignored; a sample at the time of the last one replaces it, an older one is ignored.
    pub fn record(&mut self, backend: &str, t_ms: i64, p95_ms: Option<f64>) {
        let Some(v) = p95_ms.filter(|v| v.is_finite() && *v >= 0.0) else {
            return;
        };
        let series = self.series.entry(backend.to_owned()).or_default();
        match series.points.back() {
            Some(&(last, _)) if t_ms < last => return,
            Some(&(last, _)) if t_ms == last => {
                series.points.pop_back();
            }
            _ => {}
        }
        series.points.push_back((t_ms, v));
        while series.points.len() > self.capacity {
            series.points.pop_front();
        }
        series.fit = fit(&series.points);
    }

    /// Forgets every backend `keep` rejects.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.series.retain(|id, _| keep(id));
    }

    /// The fit of `backend`, once it has [`MIN_SAMPLES`] samples.
    #[must_use]
    pub fn fit_of(&self, backend: &str) -> Option<&HoltFit> {
        self.series.get(backend)?.fit.as_ref()
    }

    /// `backend`'s samples kept, oldest first.
    #[must_use]
    pub fn samples(&self, backend: &str) -> Vec<(i64, f64)> {
        self.series
            .get(backend)
            .map(|s| s.points.iter().copied().collect())
            .unwrap_or_default()
    }

    /// `backend`'s p95 `steps` steps after its last sample (0: the smoothed level then).
    #[must_use]
    pub fn forecast(&self, backend: &str, steps: u32) -> Option<Forecast> {
        Some(project(self.fit_of(backend)?, f64::from(steps)))
    }

    /// `backend`'s p95 at `t_ms` (Unix ms), counted in steps from its last sample; a time before
    /// that sample gives the smoothed level at it.
    #[must_use]
    pub fn forecast_at(&self, backend: &str, t_ms: i64) -> Option<Forecast> {
        let fit = self.fit_of(backend)?;
        #[allow(clippy::cast_precision_loss)]
        let steps = if fit.step_ms > 0 {
            ((t_ms - fit.last_ms) as f64 / fit.step_ms as f64).max(0.0)
        } else {
            0.0
        };
        Some(project(fit, steps))
    }
}

/// The fit carried `steps` steps ahead, with its 95 % interval.
fn project(fit: &HoltFit, steps: f64) -> Forecast {
    let value = (fit.level + steps * fit.trend).max(0.0);
    // Holt's h-step error variance: σ²(1 + Σ_{0<j<h} α²(1 + jβ)²).
    let mut widening = 0.0;
    let mut j = 1.0;
    while j < steps {
        widening += (fit.alpha * (1.0 + j * fit.beta)).powi(2);
        j += 1.0;
    }
    let half = Z95 * fit.residual_sd * (1.0 + widening).sqrt();
    Forecast {
        value,
        low: (value - half).max(0.0),
        high: value + half,
        steps,
        explanation: fit.clone(),
    }
}

/// Fits Holt's method to `points`, choosing α and β by the least one-step squared error.
fn fit(points: &VecDeque<(i64, f64)>) -> Option<HoltFit> {
    if points.len() < MIN_SAMPLES {
        return None;
    }
    let step_ms = median_gap(points);
    // Steps between consecutive samples; an unknown spacing counts one step each.
    let gaps: Vec<f64> = points
        .iter()
        .zip(points.iter().skip(1))
        .map(|(a, b)| {
            if step_ms > 0 {
                #[allow(clippy::cast_precision_loss)]
                let g = (b.0 - a.0) as f64 / step_ms as f64;
                g.round().clamp(1.0, MAX_GAP_STEPS)
            } else {
                1.0
            }
        })
        .collect();
    let values: Vec<f64> = points.iter().map(|p| p.1).collect();
    let mut best: Option<(f64, f64, f64, f64, f64)> = None;
    for &alpha in &ALPHAS {
        for &beta in &BETAS {
            let (level, trend, sse) = smooth(&values, &gaps, alpha, beta);
            if best.is_none_or(|b| sse < b.0) {
                best = Some((sse, alpha, beta, level, trend));
            }
        }
    }
    let (sse, alpha, beta, level, trend) = best?;
    // The first two samples only initialise level and trend; the errors come after.
    #[allow(clippy::cast_precision_loss)]
    let errors = (values.len() - 2) as f64;
    Some(HoltFit {
        level,
        trend,
        residual_sd: (sse / errors).sqrt(),
        samples: values.len(),
        alpha,
        beta,
        step_ms,
        last_ms: points.back().map_or(0, |p| p.0),
    })
}

/// Runs the smoother once; returns the final level, trend and the one-step squared errors.
fn smooth(values: &[f64], gaps: &[f64], alpha: f64, beta: f64) -> (f64, f64, f64) {
    let mut level = values[1];
    let mut trend = (values[1] - values[0]) / gaps[0];
    let mut sse = 0.0;
    for (i, &y) in values.iter().enumerate().skip(2) {
        let g = gaps[i - 1];
        let expected = level + g * trend;
        sse += (y - expected).powi(2);
        let new_level = alpha * y + (1.0 - alpha) * expected;
        trend = beta * (new_level - level) / g + (1.0 - beta) * trend;
        level = new_level;
    }
    (level, trend, sse)
}

/// The median spacing of the samples, ms (0 when no two differ in time).
fn median_gap(points: &VecDeque<(i64, f64)>) -> i64 {
    let mut gaps: Vec<i64> = points
        .iter()
        .zip(points.iter().skip(1))
        .map(|(a, b)| b.0 - a.0)
        .filter(|g| *g > 0)
        .collect();
    if gaps.is_empty() {
        return 0;
    }
    gaps.sort_unstable();
    gaps[gaps.len() / 2]
}

#[async_trait]
impl Model for LatencyForecaster {
    fn name(&self) -> &str {
        Self::NAME
    }

    /// Replaces every series with `data.series` (backend id -> `(Unix ms, p95 ms)` points).
    async fn train(&mut self, data: &Dataset) -> Result<()> {
        self.series.clear();
        for (backend, points) in &data.series {
            for &(t, v) in points {
                self.record(backend, t, v);
            }
        }
        Ok(())
    }

    /// Input `{"backend": "b1", "steps": 3}` (steps default 1); answers `{value, low, high}`.
    async fn predict(&self, input: &Value, explain: bool) -> Result<Prediction> {
        let backend = input
            .get("backend")
            .and_then(Value::as_str)
            .ok_or_else(|| model_error(Self::NAME, "input needs `backend` (a string)"))?;
        let steps = match input.get("steps") {
            None | Some(Value::Null) => 1,
            Some(s) => s
                .as_u64()
                .and_then(|s| u32::try_from(s).ok())
                .ok_or_else(|| model_error(Self::NAME, "`steps` must be a non-negative integer"))?,
        };
        let f = self.forecast(backend, steps).ok_or_else(|| {
            model_error(
                Self::NAME,
                format!("backend {backend}: fewer than {MIN_SAMPLES} samples to forecast from"),
            )
        })?;
        let explanation = if explain {
            Some(serde_json::to_value(&f.explanation).map_err(|e| model_error(Self::NAME, e.to_string()))?)
        } else {
            None
        };
        Ok(Prediction {
            prediction: json!({"value": f.value, "low": f.low, "high": f.high, "steps": steps}),
            explanation,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    /// Deterministic noise in [-1, 1] (a fixed LCG), so the tests cannot flake.
    fn noise(i: u64) -> f64 {
        let x = i
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        #[allow(clippy::cast_precision_loss)]
        let u = (x >> 11) as f64 / (1u64 << 53) as f64;
        2.0 * u - 1.0
    }

    #[test]
    fn rising_series_is_forecast_within_tolerance_and_interval_holds_truth() {
        let mut f = LatencyForecaster::default();
        for t in 0..30u32 {
            let y = 20.0 + 5.0 * f64::from(t) + 3.0 * noise(u64::from(t));
            f.record("b1", i64::from(t) * MIN, Some(y));
        }
        let fc = f.forecast("b1", 5).unwrap();
        let truth = 20.0 + 5.0 * 34.0;
        assert!((fc.value - truth).abs() < 10.0, "forecast {fc:?} vs truth {truth}");
        assert!(fc.low <= truth && truth <= fc.high, "interval {fc:?} misses {truth}");
        assert!((fc.explanation.trend - 5.0).abs() < 1.5, "trend {:?}", fc.explanation);
        assert_eq!(fc.explanation.samples, 30);
        assert_eq!(fc.explanation.step_ms, MIN);
        // Farther ahead, wider.
        let far = f.forecast("b1", 20).unwrap();
        assert!(far.high - far.low > fc.high - fc.low);
    }

    #[test]
    fn flat_series_forecasts_flat() {
        let mut f = LatencyForecaster::default();
        for t in 0..40u32 {
            f.record("b1", i64::from(t) * MIN, Some(50.0 + 0.5 * noise(u64::from(t) + 7)));
        }
        let fc = f.forecast("b1", 10).unwrap();
        assert!((fc.value - 50.0).abs() < 2.0, "{fc:?}");
        assert!(fc.explanation.trend.abs() < 0.2, "{fc:?}");
        assert!(fc.low <= 50.0 && 50.0 <= fc.high, "{fc:?}");

        let mut exact = LatencyForecaster::default();
        for t in 0..5 {
            exact.record("b", t * MIN, Some(10.0));
        }
        let fc = exact.forecast("b", 3).unwrap();
        assert!((fc.value - 10.0).abs() < 1e-9 && fc.explanation.residual_sd.abs() < 1e-9);
    }

    #[test]
    fn bad_values_and_old_times_are_ignored_and_memory_is_bounded() {
        let mut f = LatencyForecaster::new(10);
        f.record("b", 0, None);
        f.record("b", MIN, Some(f64::NAN));
        f.record("b", 2 * MIN, Some(f64::INFINITY));
        f.record("b", 3 * MIN, Some(-1.0));
        assert!(f.samples("b").is_empty());
        assert!(f.forecast("b", 1).is_none(), "no samples, no forecast");
        for t in 0..100 {
            f.record("b", t * MIN, Some(30.0));
        }
        f.record("b", 5 * MIN, Some(999.0));
        assert_eq!(f.samples("b").len(), 10);
        assert!(f.samples("b").iter().all(|p| (p.1 - 30.0).abs() < 1e-9));
        // A repeat at the last time replaces it.
        f.record("b", 99 * MIN, Some(31.0));
        assert_eq!(f.samples("b").len(), 10);
        assert_eq!(f.samples("b").last(), Some(&(99 * MIN, 31.0)));
    }

    #[test]
    fn gaps_count_as_missed_steps() {
        // 10 ms per minute, with minutes 5..=8 unmeasured: the trend stays 10 per step.
        let mut f = LatencyForecaster::default();
        for t in (0..20).filter(|t| !(5..=8).contains(t)) {
            #[allow(clippy::cast_precision_loss)]
            f.record("b", t * MIN, Some(100.0 + 10.0 * t as f64));
        }
        let fc = f.forecast("b", 1).unwrap();
        assert!((fc.explanation.trend - 10.0).abs() < 1e-6, "{fc:?}");
        assert!((fc.value - 300.0).abs() < 1e-6, "{fc:?}");
        let later = f.forecast_at("b", 21 * MIN).unwrap();
        assert!(
            (later.value - 310.0).abs() < 1e-6 && (later.steps - 2.0).abs() < 1e-9,
            "{later:?}"
        );
        let before = f.forecast_at("b", 0).unwrap();
        assert!(
            (before.value - 290.0).abs() < 1e-6,
            "the level at the last sample: {before:?}"
        );
    }

    #[tokio::test]
    async fn model_trait_trains_and_explains() {
        let mut f = LatencyForecaster::default();
        let mut data = Dataset::default();
        data.series.insert(
            "b1".into(),
            (0..10)
                .map(|t| (t * MIN, Some(40.0)))
                .chain([(10 * MIN, None)])
                .collect(),
        );
        f.train(&data).await.unwrap();
        let p = f.predict(&json!({"backend": "b1", "steps": 2}), true).await.unwrap();
        assert!((p.prediction["value"].as_f64().unwrap() - 40.0).abs() < 1e-9);
        assert_eq!(p.explanation.unwrap()["samples"], 10);
        let e = f.predict(&json!({"backend": "nope"}), false).await.unwrap_err();
        assert!(e.to_string().contains("latency-forecast") && e.to_string().contains("nope"));
        let e = f.predict(&json!({"steps": 1}), false).await.unwrap_err();
        assert!(e.to_string().contains("`backend`"), "{e}");
    }
}

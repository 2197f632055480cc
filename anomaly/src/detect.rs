//! The detector: per subject a robust baseline and a KMeans model of it, DBSCAN among peers
//! for subjects without a baseline yet, absolute limits, and episodes that turn flagged windows
//! into one verdict each.

use std::collections::HashMap;

use control_api::{AnomalyClass, AnomalyView};
use linfa::prelude::*;
use linfa::DatasetBase;
use linfa_clustering::{Dbscan, KMeans};
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::baseline::{Baseline, Robust};
use crate::classify::{classify, summary, Deviation};
use crate::features::{Direction, Feature, Kind, Sample};

/// A verdict is what the API shows: one spelling of it.
pub type Verdict = AnomalyView;

/// Normalised coordinates are clamped to this: one absurd feature must not make every other
/// one irrelevant to the distance, nor overflow it.
const CLAMP: f64 = 20.0;

/// The detector's knobs, with the values tuned on the synthetic trace as defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectorConfig {
    /// Unflagged windows kept per subject.
    pub baseline_capacity: usize,
    /// Windows before a subject is judged against its own baseline (before: limits and peers).
    pub min_baseline: usize,
    /// Robust z (harmful direction) that flags a window.
    pub z_threshold: f64,
    /// Robust z a feature needs to be part of the explanation.
    pub explain_z: f64,
    /// Clusters of the per-subject KMeans.
    pub kmeans_k: usize,
    /// Baseline windows before KMeans is fitted.
    pub kmeans_min: usize,
    /// Windows added to the baseline between refits.
    pub kmeans_refit_every: usize,
    /// Distance to the nearest centroid over the training p99 distance that flags a window.
    pub kmeans_threshold: f64,
    /// Same-kind subjects needed for the peer check.
    pub peers_min: usize,
    /// DBSCAN's minimum points per cluster.
    pub dbscan_min_points: usize,
    /// DBSCAN's neighbourhood radius, in robust z units across peers.
    pub dbscan_tolerance: f64,
    /// Consecutive flagged windows that confirm an anomaly (integrity and authentication
    /// features confirm in one).
    pub confirm_windows: u32,
    /// Consecutive normal windows that end an episode.
    pub clear_windows: u32,
    /// Subjects tracked; the least recently seen are forgotten beyond it.
    pub max_subjects: usize,
    /// Seed of KMeans' initialisation.
    pub seed: u64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            baseline_capacity: 256,
            min_baseline: 8,
            z_threshold: 6.0,
            explain_z: 3.0,
            kmeans_k: 3,
            kmeans_min: 64,
            kmeans_refit_every: 64,
            kmeans_threshold: 3.0,
            peers_min: 4,
            dbscan_min_points: 3,
            dbscan_tolerance: 3.0,
            confirm_windows: 2,
            clear_windows: 3,
            max_subjects: 10_000,
            seed: 13,
        }
    }
}

/// KMeans centroids of a subject's normalised baseline and its training p99 distance.
#[derive(Clone, Debug)]
struct Model {
    centroids: Vec<Vec<f64>>,
    p99: f64,
}

impl Model {
    fn score(&self, v: &[f64]) -> f64 {
        let d = self
            .centroids
            .iter()
            .map(|c| distance(c, v))
            .fold(f64::INFINITY, f64::min);
        d / self.p99
    }
}

#[derive(Clone, Debug)]
struct Episode {
    class: AnomalyClass,
    normal_streak: u32,
}

#[derive(Clone, Debug)]
struct Subject {
    kind: Kind,
    baseline: Baseline,
    model: Option<Model>,
    pushed_since_fit: usize,
    pending: u32,
    episode: Option<Episode>,
    last_seen: u64,
}

/// What one window of one subject looked like to the detectors.
struct Judgement {
    detectors: Vec<&'static str>,
    top: Vec<Deviation>,
    score: f64,
    at_once: bool,
}

/// Watches samples window after window and emits a verdict per anomaly episode.
#[derive(Debug)]
pub struct Detector {
    config: DetectorConfig,
    subjects: HashMap<String, Subject>,
    verdicts: u64,
}

impl Detector {
    /// A detector that knows no subject yet.
    #[must_use]
    pub fn new(config: DetectorConfig) -> Self {
        Self {
            config,
            subjects: HashMap::new(),
            verdicts: 0,
        }
    }

    /// Subjects tracked.
    #[must_use]
    pub fn subjects(&self) -> usize {
        self.subjects.len()
    }

    /// Whether `subject` is in an anomaly episode now, and of which class.
    #[must_use]
    pub fn in_anomaly(&self, subject: &str) -> Option<AnomalyClass> {
        self.subjects.get(subject)?.episode.as_ref().map(|e| e.class)
    }

    /// Judges one window of samples (all subjects at once: peers are compared among them) and
    /// returns the verdicts of episodes that began, or changed class, in it.
    pub fn observe(&mut self, samples: &[Sample]) -> Vec<Verdict> {
        let peers = self.peer_checks(samples);
        let mut out = Vec::new();
        for (i, s) in samples.iter().enumerate() {
            let kind = Kind::of(&s.subject);
            let row = row_of(kind, s);
            self.admit(&s.subject, kind, s.at_ms);
            let Some(st) = self.subjects.get_mut(&s.subject) else {
                continue;
            };
            st.last_seen = s.at_ms;
            let j = judge(&self.config, st, kind, &row, peers.get(&i));
            if let Some(v) = step(&self.config, st, &s.subject, s.at_ms, kind, j, row, &mut self.verdicts) {
                out.push(v);
            }
        }
        out
    }

    fn admit(&mut self, subject: &str, kind: Kind, at_ms: u64) {
        if self.subjects.contains_key(subject) {
            return;
        }
        if self.subjects.len() >= self.config.max_subjects.max(1) {
            if let Some(oldest) = self
                .subjects
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(k, _)| k.clone())
            {
                self.subjects.remove(&oldest);
            }
        }
        self.subjects.insert(
            subject.to_owned(),
            Subject {
                kind,
                baseline: Baseline::new(kind.features().len(), self.config.baseline_capacity),
                model: None,
                pushed_since_fit: 0,
                pending: 0,
                episode: None,
                last_seen: at_ms,
            },
        );
    }

    /// For each sample of a subject still on cold start: its peers' statistics and whether
    /// DBSCAN leaves it as noise while most of its peers cluster. Only kinds with a cold
    /// subject are clustered, so a warm system pays nothing for it.
    fn peer_checks(&self, samples: &[Sample]) -> HashMap<usize, PeerCheck> {
        let mut by_kind: HashMap<Kind, Vec<usize>> = HashMap::new();
        for (i, s) in samples.iter().enumerate() {
            by_kind.entry(Kind::of(&s.subject)).or_default().push(i);
        }
        let mut out = HashMap::new();
        for (kind, idx) in by_kind {
            let cold = |i: &usize| {
                self.subjects
                    .get(&samples[*i].subject)
                    .is_none_or(|st| st.baseline.len() < self.config.min_baseline)
            };
            if idx.len() < self.config.peers_min || !idx.iter().any(cold) {
                continue;
            }
            let feats = kind.features();
            let rows: Vec<Vec<f64>> = idx.iter().map(|&i| row_of(kind, &samples[i])).collect();
            let stats: Vec<Option<Robust>> = (0..feats.len())
                .map(|j| Robust::of(rows.iter().map(|r| r[j])))
                .collect();
            let mut x = Array2::<f64>::zeros((rows.len(), feats.len()));
            for (r, row) in rows.iter().enumerate() {
                for (j, f) in feats.iter().enumerate() {
                    if f.peer_comparable() {
                        x[[r, j]] = stats[j].map_or(0.0, |st| clamp(st.z(*f, row[j])));
                    }
                }
            }
            let labels = match Dbscan::params(self.config.dbscan_min_points.max(2))
                .tolerance(self.config.dbscan_tolerance)
                .check()
            {
                Ok(p) => p.transform(&x),
                Err(_) => continue,
            };
            let clustered = labels.iter().filter(|l| l.is_some()).count();
            for (r, &i) in idx.iter().enumerate() {
                if !cold(&i) {
                    continue;
                }
                let others_clustered = clustered - usize::from(labels[r].is_some());
                out.insert(
                    i,
                    PeerCheck {
                        stats: stats.clone(),
                        outlier: labels[r].is_none() && 2 * others_clustered >= idx.len() - 1,
                    },
                );
            }
        }
        out
    }
}

struct PeerCheck {
    stats: Vec<Option<Robust>>,
    outlier: bool,
}

/// The sample as a row in its kind's feature order, transformed, NaN where not measured.
fn row_of(kind: Kind, s: &Sample) -> Vec<f64> {
    kind.features()
        .iter()
        .map(|f| s.get(*f).filter(|v| v.is_finite()).map_or(f64::NAN, |v| f.transform(v)))
        .collect()
}

fn clamp(z: f64) -> f64 {
    if z.is_finite() {
        z.clamp(-CLAMP, CLAMP)
    } else {
        0.0
    }
}

fn harmful(f: Feature, z: f64) -> f64 {
    match f.direction() {
        Direction::Up => z,
        Direction::Down => -z,
    }
}

fn untransform(f: Feature, t: f64) -> f64 {
    if f.is_logged() {
        t.exp_m1()
    } else {
        t
    }
}

fn over_limit(f: Feature, v: f64) -> bool {
    match (f.limit(), f.direction()) {
        (Some(l), Direction::Up) => v > l,
        (Some(l), Direction::Down) => v < l,
        (None, _) => false,
    }
}

fn distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>().sqrt()
}

/// Runs every detector that applies on one sample.
fn judge(c: &DetectorConfig, st: &Subject, kind: Kind, row: &[f64], peer: Option<&PeerCheck>) -> Judgement {
    let warm = st.baseline.len() >= c.min_baseline;
    let feats = kind.features();
    let mut devs = Vec::new();
    let mut normalised = vec![0.0; feats.len()];
    for (j, f) in feats.iter().enumerate() {
        let t = row[j];
        if t.is_nan() {
            continue;
        }
        let stats = if warm {
            st.baseline.stats(j)
        } else {
            peer.and_then(|p| p.stats[j]).filter(|_| f.peer_comparable())
        };
        let z = stats.map_or(0.0, |r| r.z(*f, t));
        normalised[j] = clamp(z);
        let value = untransform(*f, t);
        // Checksum failures break their limit whenever they happen; the other limits stand in
        // for the baseline only until there is one.
        let limit = over_limit(*f, value) && (!warm || *f == Feature::ChecksumFailuresPerS);
        devs.push(Deviation {
            feature: *f,
            value,
            baseline: stats.map_or(f64::NAN, |r| untransform(*f, r.median)),
            z: harmful(*f, z),
            over_limit: limit,
        });
    }
    let mut detectors = Vec::new();
    let max_z = devs.iter().map(|d| d.z).fold(0.0, f64::max);
    let mut score = 0.0_f64;
    let mut at_once = false;
    if warm {
        score = score.max(max_z / c.z_threshold);
        if max_z >= c.z_threshold {
            detectors.push("robust_z");
            at_once |= devs
                .iter()
                .any(|d| d.z >= c.z_threshold && d.feature.confirms_at_once());
        }
        if let Some(m) = &st.model {
            let k = m.score(&normalised);
            score = score.max(k / c.kmeans_threshold);
            // A joint deviation counts only if some feature moved the harmful way: otherwise
            // there is nothing to explain nor act on (a client gone quiet, a backend faster).
            if k >= c.kmeans_threshold && max_z >= c.explain_z {
                detectors.push("kmeans");
            }
        }
    } else if let Some(p) = peer {
        score = score.max(max_z / c.z_threshold);
        if p.outlier && max_z >= c.z_threshold {
            detectors.push("peers");
        }
    }
    let limited: Vec<&Deviation> = devs.iter().filter(|d| d.over_limit).collect();
    if !limited.is_empty() {
        detectors.push("limit");
        at_once |= limited.iter().any(|d| d.feature.confirms_at_once());
        for d in &limited {
            let ratio = match d.feature.limit() {
                Some(l) if l > 0.0 => (d.value / l).abs(),
                _ => 1.0 + d.value,
            };
            score = score.max(if d.feature.direction() == Direction::Down {
                1.0
            } else {
                ratio
            });
        }
    }
    // Explanation: broken limits first, then by z; only what moved the harmful way.
    devs.retain(|d| d.over_limit || d.z >= c.explain_z);
    devs.sort_by(|a, b| b.over_limit.cmp(&a.over_limit).then(b.z.total_cmp(&a.z)));
    devs.truncate(3);
    Judgement {
        detectors,
        top: devs,
        score,
        at_once,
    }
}

/// Advances a subject's episode with one judged window; a verdict when one begins or changes
/// class. Windows that are flagged, or inside an episode, stay out of the baseline.
#[allow(clippy::too_many_arguments)]
fn step(
    c: &DetectorConfig,
    st: &mut Subject,
    subject: &str,
    at_ms: u64,
    kind: Kind,
    j: Judgement,
    row: Vec<f64>,
    seq: &mut u64,
) -> Option<Verdict> {
    let flagged = !j.detectors.is_empty();
    if !flagged {
        st.pending = 0;
        match &mut st.episode {
            Some(e) => {
                e.normal_streak += 1;
                if e.normal_streak >= c.clear_windows {
                    st.episode = None;
                }
            }
            None => {
                st.baseline.push(row);
                st.pushed_since_fit += 1;
                refit(c, st);
            }
        }
        return None;
    }
    st.pending += 1;
    let needed = if j.at_once { 1 } else { c.confirm_windows.max(1) };
    if st.pending < needed && st.episode.is_none() {
        return None;
    }
    let class = classify(kind, &j.top);
    let emit = match &mut st.episode {
        Some(e) => {
            e.normal_streak = 0;
            let changed = e.class != class;
            e.class = class;
            changed
        }
        None => {
            st.episode = Some(Episode {
                class,
                normal_streak: 0,
            });
            true
        }
    };
    if !emit {
        return None;
    }
    *seq += 1;
    Some(Verdict {
        id: format!("anomaly-{at_ms}-{seq}"),
        subject: subject.to_owned(),
        class,
        score: (j.score * 1000.0).round() / 1000.0,
        at_ms,
        detectors: j.detectors.iter().map(|d| (*d).to_owned()).collect(),
        deviations: j.top.iter().map(Deviation::view).collect(),
        summary: summary(subject, class, &j.top),
    })
}

/// Refits the subject's KMeans when its baseline is large enough and has moved on.
fn refit(c: &DetectorConfig, st: &mut Subject) {
    let n = st.baseline.len();
    if n < c.kmeans_min.max(c.kmeans_k.max(1) + 1) || (st.model.is_some() && st.pushed_since_fit < c.kmeans_refit_every)
    {
        return;
    }
    st.pushed_since_fit = 0;
    let feats = st.kind.features();
    let mut x = Array2::<f64>::zeros((n, feats.len()));
    for (r, row) in st.baseline.rows().enumerate() {
        for (j, f) in feats.iter().enumerate() {
            let t = row[j];
            if !t.is_nan() {
                x[[r, j]] = st.baseline.stats(j).map_or(0.0, |s| clamp(s.z(*f, t)));
            }
        }
    }
    let data = DatasetBase::from(x.clone());
    let Ok(model) = KMeans::params_with_rng(c.kmeans_k.max(1), StdRng::seed_from_u64(c.seed))
        .n_runs(1)
        .max_n_iterations(50)
        .tolerance(1e-4)
        .fit(&data)
    else {
        return;
    };
    let centroids: Vec<Vec<f64>> = model.centroids().rows().into_iter().map(|r| r.to_vec()).collect();
    let mut d: Vec<f64> = x
        .rows()
        .into_iter()
        .map(|r| {
            let r = r.to_vec();
            centroids
                .iter()
                .map(|ce| distance(ce, &r))
                .fold(f64::INFINITY, f64::min)
        })
        .collect();
    d.sort_unstable_by(f64::total_cmp);
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let p99 = d[((d.len() as f64 * 0.99) as usize).min(d.len() - 1)];
    // A baseline where nothing varies has p99 0; the floors already make one MAD the least
    // spread, so one unit of normalised distance is the least "usual" distance too.
    st.model = Some(Model {
        centroids,
        p99: p99.max(1.0),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(subject: &str, at: u64, p95: f64, errors: f64) -> Sample {
        Sample {
            subject: subject.into(),
            at_ms: at,
            features: vec![
                (Feature::GetP50Ms, p95 / 3.0),
                (Feature::GetP95Ms, p95),
                (Feature::PutP95Ms, 30.0),
                (Feature::ErrorRate, errors),
                (Feature::Availability, 1.0),
                (Feature::ChecksumFailuresPerS, 0.0),
                (Feature::CallsPerS, 50.0),
                (Feature::GetJitter, 3.0),
            ],
        }
    }

    fn wobble(i: u64) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let x = ((i * 7919) % 13) as f64;
        30.0 + x
    }

    #[test]
    fn a_latency_step_is_one_malfunction_verdict_per_episode() {
        let mut d = Detector::new(DetectorConfig::default());
        let mut verdicts = Vec::new();
        for i in 0..200 {
            let p95 = if (100..120).contains(&i) { 400.0 } else { wobble(i) };
            let at = i * 60_000;
            verdicts.extend(d.observe(&[backend("backend:b1", at, p95, 0.0)]));
        }
        assert_eq!(verdicts.len(), 1, "{verdicts:#?}");
        let v = &verdicts[0];
        assert_eq!(v.class, AnomalyClass::Malfunction);
        assert_eq!(v.at_ms, 101 * 60_000, "confirmed in the second window");
        assert_eq!(v.deviations[0].feature, "get_p95_ms");
        assert!(v.detectors.contains(&"robust_z".to_owned()), "{v:?}");
        assert!(
            v.summary.starts_with("backend:b1 malfunctions: get_p95_ms 400"),
            "{}",
            v.summary
        );
        assert_eq!(d.in_anomaly("backend:b1"), None, "over after the step");
    }

    #[test]
    fn one_odd_window_is_not_an_anomaly() {
        let mut d = Detector::new(DetectorConfig::default());
        for i in 0..100 {
            let p95 = if i == 60 { 900.0 } else { wobble(i) };
            assert!(
                d.observe(&[backend("backend:b1", i * 60_000, p95, 0.0)]).is_empty(),
                "window {i}"
            );
        }
    }

    #[test]
    fn checksum_failures_flag_at_once_even_on_cold_start() {
        let mut d = Detector::new(DetectorConfig::default());
        let mut s = backend("backend:b1", 0, 30.0, 0.0);
        s.features.retain(|(f, _)| *f != Feature::ChecksumFailuresPerS);
        s.features.push((Feature::ChecksumFailuresPerS, 0.2));
        let v = d.observe(&[s]);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].class, AnomalyClass::Tampering);
        assert_eq!(v[0].detectors, ["limit"]);
    }

    #[test]
    fn a_cold_outlier_among_peers_is_flagged_by_dbscan() {
        let mut d = Detector::new(DetectorConfig::default());
        let mut verdicts = Vec::new();
        for w in 0..3 {
            let mut window: Vec<Sample> = (0..8)
                .map(|i| backend(&format!("backend:b{i}"), w * 60_000, wobble(i + w), 0.0))
                .collect();
            window.push(backend("backend:slow", w * 60_000, 2_500.0, 0.0));
            verdicts.extend(d.observe(&window));
        }
        assert_eq!(verdicts.len(), 1, "{verdicts:#?}");
        assert_eq!(verdicts[0].subject, "backend:slow");
        assert_eq!(verdicts[0].detectors, ["peers"]);
    }

    #[test]
    fn subjects_are_capped() {
        let mut d = Detector::new(DetectorConfig {
            max_subjects: 3,
            ..DetectorConfig::default()
        });
        for i in 0..10 {
            d.observe(&[backend(&format!("backend:b{i}"), i, 30.0, 0.0)]);
        }
        assert_eq!(d.subjects(), 3);
    }

    #[test]
    fn the_config_has_defaults_and_refuses_unknown_fields() {
        let c: DetectorConfig = serde_json::from_str(r#"{"z_threshold": 8}"#).unwrap();
        assert_eq!(c.z_threshold, 8.0);
        assert_eq!(c.min_baseline, DetectorConfig::default().min_baseline);
        assert!(serde_json::from_str::<DetectorConfig>(r#"{"z": 8}"#).is_err());
    }
}

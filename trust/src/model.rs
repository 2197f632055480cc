//! The reputation model: per subject a Beta reputation with exponential decay (behaviour), a
//! capability index from availability and bandwidth, and an identity index, combined with
//! configurable weights into a score T in 0..=1. See `docs/trust.md`.

use crate::evidence::{self, Evidence};
use crate::identity::Identities;
use crate::subject::{Subject, SubjectKind};
use control_api::trust::{EnrolledBy, EvidenceView, SubjectView, TrustConfig};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Most subjects kept; beyond it the least recently updated principal is forgotten first.
pub const MAX_SUBJECTS: usize = 10_000;
/// Recent evidence kept per subject.
pub const EVIDENCE_KEPT: usize = 32;
/// Most node ids in a configuration.
pub const MAX_NODE_IDS: usize = 10_000;
/// Longest reason kept with a piece of evidence (characters).
const MAX_REASON: usize = 256;
/// The index names a configuration may combine.
pub const INDEXES: [&str; 3] = ["identity", "behaviour", "capability"];

/// Refused evidence or configuration.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    /// A configuration field is wrong.
    #[error("trust config: {field}: {why}")]
    Config {
        /// Which field.
        field: &'static str,
        /// What is wrong with it.
        why: String,
    },
    /// An amount that is negative, NaN or infinite.
    #[error("evidence about {subject}: amount {amount} is not a finite number >= 0")]
    Amount {
        /// The subject.
        subject: String,
        /// The amount.
        amount: f64,
    },
}

/// How sure we are of who a node or agent is: the identity index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityLevel {
    /// Enrolled by an operator: 1.
    Operator,
    /// Enrolled on first use, or known by the admin token only: 0.5.
    FirstUse,
    /// Unknown or revoked: 0, and so is the score.
    None,
}

impl IdentityLevel {
    /// The index value.
    #[must_use]
    pub const fn value(self) -> f64 {
        match self {
            IdentityLevel::Operator => 1.0,
            IdentityLevel::FirstUse => 0.5,
            IdentityLevel::None => 0.0,
        }
    }
}

/// Checks a configuration, naming the field at fault.
pub fn validate(c: &TrustConfig) -> Result<(), ModelError> {
    let bad = |field, why: String| Err(ModelError::Config { field, why });
    if c.indexes.is_empty() {
        return bad(
            "indexes",
            "empty: name at least one of identity, behaviour, capability".into(),
        );
    }
    if c.indexes.len() != c.weights.len() {
        return bad(
            "weights",
            format!(
                "{} weights for {} indexes: give one per index",
                c.weights.len(),
                c.indexes.len()
            ),
        );
    }
    for (i, name) in c.indexes.iter().enumerate() {
        if !INDEXES.contains(&name.as_str()) {
            return bad(
                "indexes",
                format!("unknown index {name:?} (known: identity, behaviour, capability)"),
            );
        }
        if c.indexes[..i].contains(name) {
            return bad("indexes", format!("{name:?} named twice"));
        }
    }
    if let Some(w) = c.weights.iter().find(|w| !w.is_finite() || **w < 0.0) {
        return bad("weights", format!("{w} is not a finite number >= 0"));
    }
    if c.weights.iter().sum::<f64>() <= 0.0 {
        return bad("weights", "they sum to 0: at least one must be positive".into());
    }
    if !(c.half_life_s.is_finite() && c.half_life_s > 0.0) {
        return bad(
            "half_life_s",
            format!("{} is not a positive number of seconds", c.half_life_s),
        );
    }
    if !(c.max_evidence.is_finite() && c.max_evidence >= 1.0) {
        return bad(
            "max_evidence",
            format!("{} is not a finite number >= 1", c.max_evidence),
        );
    }
    if c.node_ids.len() > MAX_NODE_IDS {
        return bad("node_ids", format!("{} ids, at most {MAX_NODE_IDS}", c.node_ids.len()));
    }
    for id in &c.node_ids {
        let checked = match id.parse::<Subject>() {
            Ok(s) if s.kind().has_key() => Ok(()),
            Ok(s) => Err(format!("{s} is not a node or agent")),
            Err(_) => crate::subject::validate_id(id).map_err(|e| e.to_string()),
        };
        if let Err(why) = checked {
            return bad("node_ids", why);
        }
    }
    Ok(())
}

#[derive(Debug, Clone)]
struct State {
    /// Decayed positive evidence (α − 1) and weighted negative evidence (β − 1) as of `decayed_ms`.
    pos: f64,
    neg: f64,
    decayed_ms: u64,
    successes: f64,
    failures: f64,
    checksum_failures: f64,
    availability: Option<f64>,
    bandwidth_ratio: Option<f64>,
    identity: Option<IdentityLevel>,
    evidence: VecDeque<EvidenceView>,
    updated_ms: u64,
}

impl State {
    fn new(now_ms: u64) -> Self {
        Self {
            pos: 0.0,
            neg: 0.0,
            decayed_ms: now_ms,
            successes: 0.0,
            failures: 0.0,
            checksum_failures: 0.0,
            availability: None,
            bandwidth_ratio: None,
            identity: None,
            evidence: VecDeque::new(),
            updated_ms: now_ms,
        }
    }

    /// The decay factor from `decayed_ms` to `now_ms` (1 for evidence older than the last).
    fn factor(&self, now_ms: u64, half_life_s: f64) -> f64 {
        let dt_s = now_ms.saturating_sub(self.decayed_ms) as f64 / 1000.0;
        0.5f64.powf(dt_s / half_life_s)
    }

    fn decay_to(&mut self, now_ms: u64, half_life_s: f64) {
        let k = self.factor(now_ms, half_life_s);
        self.pos *= k;
        self.neg *= k;
        self.decayed_ms = self.decayed_ms.max(now_ms);
    }
}

/// The indexes and score of a state as of `now_ms`.
struct Scored {
    alpha: f64,
    beta: f64,
    indexes: BTreeMap<String, f64>,
    capability_known: bool,
    score: f64,
}

fn score_of(kind: SubjectKind, st: &State, cfg: &TrustConfig, now_ms: u64) -> Scored {
    let k = st.factor(now_ms, cfg.half_life_s);
    let (alpha, beta) = (1.0 + st.pos * k, 1.0 + st.neg * k);
    let n = alpha + beta;
    let mean = alpha / n;
    let sd = (alpha * beta / (n * n * (n + 1.0))).sqrt();
    // The lower confidence bound: two standard deviations below the mean, so that a subject
    // with little evidence (the prior alone gives 0.5 ± 0.29) starts near 0.
    let behaviour = (mean - 2.0 * sd).clamp(0.0, 1.0);
    let parts: Vec<f64> = [st.availability, st.bandwidth_ratio.map(|r| r.min(1.0))]
        .into_iter()
        .flatten()
        .collect();
    let capability_known = !parts.is_empty();
    let capability = if capability_known {
        (parts.iter().sum::<f64>() / parts.len() as f64).clamp(0.0, 1.0)
    } else {
        1.0
    };
    let identity = if kind.has_key() {
        st.identity.unwrap_or(IdentityLevel::None).value()
    } else {
        1.0
    };
    let indexes: BTreeMap<String, f64> = [
        ("identity", identity),
        ("behaviour", behaviour),
        ("capability", capability),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    // An unmeasured capability is left out of the mean rather than counted as perfect: S3
    // principals have none, and counting it as 1 would hold an attacker's score at 0.4 (the
    // default weight) however bad its behaviour.
    let (mut sum, mut wsum) = (0.0, 0.0);
    for (name, w) in cfg.indexes.iter().zip(&cfg.weights) {
        if name == "capability" && !capability_known {
            continue;
        }
        sum += w * indexes.get(name).copied().unwrap_or(0.0);
        wsum += w;
    }
    let score = if wsum > 0.0 {
        (identity * sum / wsum).clamp(0.0, 1.0)
    } else {
        // Only capability configured, and it is unknown: behaviour is all there is.
        (identity * behaviour).clamp(0.0, 1.0)
    };
    Scored {
        alpha,
        beta,
        indexes,
        capability_known,
        score,
    }
}

#[derive(Debug)]
struct Book {
    config: TrustConfig,
    subjects: HashMap<Subject, State>,
}

impl Book {
    fn scored(&self, s: &Subject) -> bool {
        if !s.kind().has_key() || self.config.node_ids.is_empty() {
            return true;
        }
        let full = s.to_string();
        self.config.node_ids.iter().any(|n| *n == full || n == s.id())
    }

    /// The state of `subject`, created (evicting another when full) if new.
    fn state(&mut self, subject: &Subject, now_ms: u64) -> &mut State {
        if !self.subjects.contains_key(subject) && self.subjects.len() >= MAX_SUBJECTS {
            // Principals first: anyone with an access key can mint them, backends and agents
            // are configured.
            let victim = self
                .subjects
                .iter()
                .min_by_key(|(s, st)| (s.kind() != SubjectKind::Principal, st.updated_ms))
                .map(|(s, _)| s.clone());
            if let Some(v) = victim {
                self.subjects.remove(&v);
            }
        }
        self.subjects
            .entry(subject.clone())
            .or_insert_with(|| State::new(now_ms))
    }

    fn view(&self, subject: &Subject, st: &State, now_ms: u64) -> SubjectView {
        let s = score_of(subject.kind(), st, &self.config, now_ms);
        SubjectView {
            subject: subject.to_string(),
            score: s.score,
            indexes: s.indexes,
            alpha: s.alpha,
            beta: s.beta,
            successes: st.successes,
            failures: st.failures,
            checksum_failures: st.checksum_failures,
            capability_known: s.capability_known,
            evidence: st.evidence.iter().cloned().collect(),
            updated_ms: st.updated_ms,
        }
    }
}

/// Every subject's reputation. Cheap to clone: clones share it.
#[derive(Debug, Clone)]
pub struct Reputation {
    inner: Arc<Mutex<Book>>,
}

impl Default for Reputation {
    fn default() -> Self {
        Self::new(TrustConfig::default())
    }
}

impl Reputation {
    /// An empty book with `config` (not validated: use [`Reputation::set_config`] for input).
    #[must_use]
    pub fn new(config: TrustConfig) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Book {
                config,
                subjects: HashMap::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Book> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> TrustConfig {
        self.lock().config.clone()
    }

    /// Replaces the configuration after [`validate`]; scores follow at once, evidence is kept.
    pub fn set_config(&self, config: TrustConfig) -> Result<(), ModelError> {
        validate(&config)?;
        self.lock().config = config;
        Ok(())
    }

    /// Records one piece of evidence (at its `at_ms`).
    pub fn record(&self, evidence: Evidence) -> Result<(), ModelError> {
        self.record_all(std::slice::from_ref(&evidence))
    }

    /// Records evidence observed together (one agent period): per subject it is decayed, added,
    /// and bounded to `max_evidence` once, so that the order within the batch does not matter.
    /// Nothing is recorded if any amount is invalid.
    pub fn record_all(&self, batch: &[Evidence]) -> Result<(), ModelError> {
        if let Some(e) = batch.iter().find(|e| !(e.amount.is_finite() && e.amount >= 0.0)) {
            return Err(ModelError::Amount {
                subject: e.subject.to_string(),
                amount: e.amount,
            });
        }
        let mut by_subject: BTreeMap<&Subject, Vec<&Evidence>> = BTreeMap::new();
        for e in batch {
            by_subject.entry(&e.subject).or_default().push(e);
        }
        let mut book = self.lock();
        let cfg = book.config.clone();
        for (subject, items) in by_subject {
            let at = items.iter().map(|e| e.at_ms).max().unwrap_or(0);
            let st = book.state(subject, at);
            let before = score_of(subject.kind(), st, &cfg, at).score;
            st.decay_to(at, cfg.half_life_s);
            for e in &items {
                let w = evidence::weight(e.kind);
                if e.kind.is_positive() {
                    st.pos += w * e.amount;
                    st.successes += e.amount;
                } else {
                    st.neg += w * e.amount;
                    st.failures += e.amount;
                    if evidence::is_integrity(e.kind) {
                        st.checksum_failures += e.amount;
                    }
                }
            }
            let mass = st.pos + st.neg;
            if mass > cfg.max_evidence {
                let k = cfg.max_evidence / mass;
                st.pos *= k;
                st.neg *= k;
            }
            st.updated_ms = st.updated_ms.max(at);
            let after = score_of(subject.kind(), st, &cfg, at).score;
            for e in items.into_iter().filter(|e| e.amount > 0.0) {
                if st.evidence.len() == EVIDENCE_KEPT {
                    st.evidence.pop_front();
                }
                st.evidence.push_back(EvidenceView {
                    kind: e.kind,
                    amount: e.amount,
                    reason: e.reason.chars().take(MAX_REASON).collect(),
                    at_ms: e.at_ms,
                    score_before: before,
                    score_after: after,
                });
            }
        }
        Ok(())
    }

    /// Sets what was measured of `subject`'s capability now: availability in 0..=1 and measured
    /// ÷ declared bandwidth (`None`: not measured).
    pub fn set_capability(&self, subject: &Subject, availability: Option<f64>, bandwidth_ratio: Option<f64>) {
        self.set_capability_at(subject, availability, bandwidth_ratio, crate::now_ms());
    }

    /// [`Reputation::set_capability`] at `now_ms`. NaN is taken as not measured.
    pub fn set_capability_at(
        &self,
        subject: &Subject,
        availability: Option<f64>,
        bandwidth_ratio: Option<f64>,
        now_ms: u64,
    ) {
        let mut book = self.lock();
        let st = book.state(subject, now_ms);
        st.availability = availability.filter(|a| !a.is_nan()).map(|a| a.clamp(0.0, 1.0));
        st.bandwidth_ratio = bandwidth_ratio.filter(|r| !r.is_nan()).map(|r| r.max(0.0));
        st.updated_ms = st.updated_ms.max(now_ms);
    }

    /// Sets how sure we are of who `subject` (a node or agent) is.
    pub fn set_identity(&self, subject: &Subject, level: IdentityLevel) {
        let now = crate::now_ms();
        let mut book = self.lock();
        book.state(subject, now).identity = Some(level);
    }

    /// Sets the identity index of every enrolled agent and node from the registry: operator 1,
    /// first use 0.5, revoked 0.
    pub fn sync_identities(&self, identities: &Identities) {
        for v in identities.list() {
            let Ok(subject) = Subject::new(crate::subject::kind_of(v.kind), &v.id) else {
                continue;
            };
            let level = match (&v.revoked, v.enrolled_by) {
                (Some(_), _) => IdentityLevel::None,
                (None, EnrolledBy::Operator) => IdentityLevel::Operator,
                (None, EnrolledBy::FirstUse) => IdentityLevel::FirstUse,
            };
            self.set_identity(&subject, level);
        }
    }

    /// One subject's view now; `None` if unknown or not scored (`node_ids`).
    #[must_use]
    pub fn score(&self, subject: &Subject) -> Option<SubjectView> {
        self.score_at(subject, crate::now_ms())
    }

    /// [`Reputation::score`] as of `now_ms`.
    #[must_use]
    pub fn score_at(&self, subject: &Subject, now_ms: u64) -> Option<SubjectView> {
        let book = self.lock();
        let st = book.subjects.get(subject)?;
        book.scored(subject).then(|| book.view(subject, st, now_ms))
    }

    /// Every scored subject's view now, by name.
    #[must_use]
    pub fn subjects(&self) -> Vec<SubjectView> {
        self.subjects_at(crate::now_ms())
    }

    /// [`Reputation::subjects`] as of `now_ms`.
    #[must_use]
    pub fn subjects_at(&self, now_ms: u64) -> Vec<SubjectView> {
        let book = self.lock();
        let mut out: Vec<SubjectView> = book
            .subjects
            .iter()
            .filter(|(s, _)| book.scored(s))
            .map(|(s, st)| book.view(s, st, now_ms))
            .collect();
        out.sort_by(|a, b| a.subject.cmp(&b.subject));
        out
    }

    /// Every scored subject's score now, by name: cheaper than [`Reputation::subjects`] (no
    /// evidence copied), for metrics and placement.
    #[must_use]
    pub fn scores_at(&self, now_ms: u64) -> Vec<(Subject, f64, BTreeMap<String, f64>)> {
        let book = self.lock();
        let mut out: Vec<_> = book
            .subjects
            .iter()
            .filter(|(s, _)| book.scored(s))
            .map(|(s, st)| {
                let sc = score_of(s.kind(), st, &book.config, now_ms);
                (s.clone(), sc.score, sc.indexes)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// How many subjects it holds (scored or not).
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().subjects.len()
    }

    /// Whether it holds none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use control_api::trust::EvidenceKind as K;

    const H: u64 = 3_600_000;

    fn s(name: &str) -> Subject {
        name.parse().unwrap()
    }

    fn ev(subject: &str, kind: K, amount: f64, at_ms: u64) -> Evidence {
        Evidence::new(s(subject), kind, amount, at_ms, "test")
    }

    #[test]
    fn decay_halves_evidence_after_one_half_life() {
        let r = Reputation::default();
        r.record(ev("backend:b1", K::Success, 40.0, 0)).unwrap();
        r.record(ev("backend:b1", K::Error, 10.0, 0)).unwrap();
        let now = r.score_at(&s("backend:b1"), 0).unwrap();
        assert_eq!((now.alpha, now.beta), (41.0, 11.0));
        let later = r.score_at(&s("backend:b1"), H).unwrap();
        assert!(
            (later.alpha - 21.0).abs() < 1e-9 && (later.beta - 6.0).abs() < 1e-9,
            "{later:?}"
        );
        let two = r.score_at(&s("backend:b1"), 2 * H).unwrap();
        assert!((two.alpha - 11.0).abs() < 1e-9, "{}", two.alpha);
        // Totals do not decay.
        assert_eq!((two.successes, two.failures), (40.0, 10.0));
        // Less evidence, less confidence: the same ratio scores lower later.
        assert!(later.indexes["behaviour"] < now.indexes["behaviour"]);
    }

    #[test]
    fn a_new_subject_scores_below_an_established_good_one() {
        let r = Reputation::default();
        for t in 0..20 {
            r.record(ev("backend:old", K::Success, 10.0, t * 5_000)).unwrap();
        }
        r.record(ev("backend:new", K::Success, 1.0, 100_000)).unwrap();
        let old = r.score_at(&s("backend:old"), 100_000).unwrap();
        let new = r.score_at(&s("backend:new"), 100_000).unwrap();
        println!("established {:.3}, new {:.3}", old.score, new.score);
        // One success leaves the new backend barely above the capability's share (0.4).
        assert!(new.score < 0.55 && old.score > 0.95, "{new:?} {old:?}");
        assert!(!new.capability_known && new.indexes["capability"] == 1.0);
        assert!(new.indexes["behaviour"] < 0.25);
    }

    #[test]
    fn forty_checksum_failures_sink_a_good_backend_while_a_healthy_one_stays_high() {
        let r = Reputation::default();
        // An hour of both backends answering 20 calls per 5 s agent period.
        let mut t = 0;
        while t < H {
            r.record_all(&[
                ev("backend:good", K::Success, 20.0, t),
                ev("backend:bad", K::Success, 20.0, t),
            ])
            .unwrap();
            t += 5_000;
        }
        for b in ["backend:good", "backend:bad"] {
            r.set_capability_at(&s(b), Some(1.0), None, t);
        }
        let start = r.score_at(&s("backend:bad"), t).unwrap().score;
        // Then `bad` starts flipping bits: 40 reads fail their checksum, one per second, while
        // both keep answering the rest.
        for i in 0..40 {
            let at = t + i * 1_000;
            r.record_all(&[
                ev("backend:bad", K::ChecksumFailure, 1.0, at),
                ev("backend:good", K::Success, 4.0, at),
            ])
            .unwrap();
        }
        let end = t + 40_000;
        let bad = r.score_at(&s("backend:bad"), end).unwrap();
        let good = r.score_at(&s("backend:good"), end).unwrap();
        println!(
            "bad: {start:.3} -> {:.3} (behaviour {:.3}, α {:.1}, β {:.1}); good: {:.3}",
            bad.score, bad.indexes["behaviour"], bad.alpha, bad.beta, good.score
        );
        assert!(start > 0.8, "{start}");
        assert!(bad.score < 0.5, "{bad:?}");
        assert!(good.score > 0.8, "{good:?}");
        assert_eq!(bad.checksum_failures, 40.0);
        assert_eq!(bad.evidence.len(), EVIDENCE_KEPT);
        let last = bad.evidence.last().unwrap();
        assert_eq!(last.kind, K::ChecksumFailure);
        assert!(last.score_after < last.score_before);
    }

    #[test]
    fn the_order_within_a_batch_does_not_matter() {
        let (a, b) = (Reputation::default(), Reputation::default());
        let x = [
            ev("backend:b", K::Success, 500.0, 0),
            ev("backend:b", K::Error, 50.0, 0),
        ];
        a.record_all(&x).unwrap();
        b.record_all(&[x[1].clone(), x[0].clone()]).unwrap();
        let (v, w) = (
            a.score_at(&s("backend:b"), 0).unwrap(),
            b.score_at(&s("backend:b"), 0).unwrap(),
        );
        assert_eq!((v.score, v.alpha, v.beta), (w.score, w.alpha, w.beta));
        assert!(
            (v.alpha + v.beta - 102.0).abs() < 1e-9,
            "bounded to max_evidence: {v:?}"
        );
    }

    #[test]
    fn identity_gates_nodes_and_agents_but_not_backends_or_principals() {
        let r = Reputation::default();
        for name in ["agent:c1", "principal:AKIA1", "backend:b1"] {
            r.record(ev(name, K::Success, 100.0, 0)).unwrap();
        }
        assert_eq!(r.score_at(&s("agent:c1"), 0).unwrap().score, 0.0, "unknown agent");
        assert!(r.score_at(&s("principal:AKIA1"), 0).unwrap().score > 0.9);
        let ids = Identities::in_memory();
        let key = crate::KeyPair::generate().public_key();
        ids.first_use("c1", control_api::trust::IdentityKind::Agent, &key)
            .unwrap();
        r.sync_identities(&ids);
        let half = r.score_at(&s("agent:c1"), 0).unwrap();
        assert_eq!(half.indexes["identity"], 0.5);
        assert!((0.45..0.5).contains(&half.score), "{}", half.score);
        ids.revoke("c1", "x").unwrap();
        r.sync_identities(&ids);
        assert_eq!(r.score_at(&s("agent:c1"), 0).unwrap().score, 0.0);
    }

    #[test]
    fn capability_is_the_mean_of_what_was_measured() {
        let r = Reputation::default();
        r.set_capability_at(&s("backend:b1"), Some(0.5), Some(2.0), 0);
        let v = r.score_at(&s("backend:b1"), 0).unwrap();
        assert!(v.capability_known);
        assert_eq!(v.indexes["capability"], 0.75);
        r.set_capability_at(&s("backend:b1"), Some(0.5), Some(0.25), 0);
        assert_eq!(r.score_at(&s("backend:b1"), 0).unwrap().indexes["capability"], 0.375);
    }

    #[test]
    fn config_validation_names_the_field() {
        let r = Reputation::default();
        let err = |c: TrustConfig| r.set_config(c).unwrap_err().to_string();
        let base = TrustConfig::default();
        let e = err(TrustConfig {
            weights: vec![1.0],
            ..base.clone()
        });
        assert!(e.contains("weights: 1 weights for 2 indexes"), "{e}");
        let e = err(TrustConfig {
            indexes: vec!["behaviour".into(), "speed".into()],
            ..base.clone()
        });
        assert!(e.contains("indexes: unknown index \"speed\""), "{e}");
        let e = err(TrustConfig {
            weights: vec![0.5, f64::NAN],
            ..base.clone()
        });
        assert!(e.contains("weights: NaN"), "{e}");
        let e = err(TrustConfig {
            weights: vec![-1.0, 1.0],
            ..base.clone()
        });
        assert!(e.contains("weights: -1"), "{e}");
        let e = err(TrustConfig {
            weights: vec![0.0, 0.0],
            ..base.clone()
        });
        assert!(e.contains("weights: they sum to 0"), "{e}");
        let e = err(TrustConfig {
            half_life_s: 0.0,
            ..base.clone()
        });
        assert!(e.contains("half_life_s"), "{e}");
        let e = err(TrustConfig {
            node_ids: vec!["backend:b1".into()],
            ..base.clone()
        });
        assert!(e.contains("node_ids: backend:b1 is not a node or agent"), "{e}");
        assert_eq!(r.config(), base, "a refused config changes nothing");
        let e = r.record(ev("backend:b", K::Error, -1.0, 0)).unwrap_err().to_string();
        assert!(e.contains("amount -1"), "{e}");
    }

    #[test]
    fn node_ids_limit_which_nodes_and_agents_are_scored() {
        let r = Reputation::default();
        for name in ["node:n1", "node:n2", "agent:c1", "backend:b1"] {
            r.record(ev(name, K::Success, 1.0, 0)).unwrap();
        }
        r.set_config(TrustConfig {
            node_ids: vec!["n1".into(), "agent:c1".into()],
            indexes: vec!["identity".into(), "behaviour".into()],
            weights: vec![1.0, 1.0],
            ..TrustConfig::default()
        })
        .unwrap();
        let names: Vec<String> = r.subjects_at(0).into_iter().map(|v| v.subject).collect();
        assert_eq!(names, ["agent:c1", "backend:b1", "node:n1"]);
        assert!(r.score_at(&s("node:n2"), 0).is_none());
    }

    #[test]
    fn the_book_is_bounded_and_forgets_principals_first() {
        let r = Reputation::default();
        r.record(ev("backend:b1", K::Success, 1.0, 0)).unwrap();
        for i in 0..MAX_SUBJECTS as u64 {
            r.record(ev(&format!("principal:p{i}"), K::Success, 1.0, 1 + i))
                .unwrap();
        }
        assert_eq!(r.len(), MAX_SUBJECTS);
        assert!(r.score_at(&s("principal:p0"), 0).is_none(), "the oldest principal went");
        assert!(r.score_at(&s("backend:b1"), 0).is_some(), "the older backend stayed");
    }
}

//! Trust reputation and identities: the wire types of `/api/v1/trust/*` and `/api/v1/identities`.
//!
//! A subject is spelled `kind:id` with kind `backend`, `node`, `agent` or `principal`
//! (`backend:b1`, `principal:AKIA1`). The model behind the numbers is in `docs/trust.md`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a piece of evidence says about its subject; each kind has a failure weight (the `trust`
/// crate's `model`), successes count positively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceKind {
    /// A call or operation that worked.
    Success,
    /// A call that failed.
    Error,
    /// A call that got no answer in time.
    Timeout,
    /// The subject could not be reached at all.
    Unavailable,
    /// Data that came back different from what was written (proves corruption).
    ChecksumFailure,
    /// A request with a bad signature.
    AuthFailure,
    /// A bad `policy_update_token` or similar bearer token.
    BadToken,
    /// A message between agents whose signature did not verify (or came from an unknown or
    /// revoked key).
    BadLinkSignature,
    /// The anomaly detector classified the subject as malfunctioning.
    AnomalyMalfunction,
    /// The anomaly detector classified the subject as attacking.
    AnomalyAttack,
    /// The anomaly detector classified the subject as tampering with data.
    AnomalyTampering,
    /// An operator vouched for the subject (amount: the operator's weight).
    OperatorSuccess,
    /// An operator reported the subject (amount: the operator's weight).
    OperatorFailure,
}

impl EvidenceKind {
    /// Every kind.
    pub const ALL: [EvidenceKind; 13] = [
        EvidenceKind::Success,
        EvidenceKind::Error,
        EvidenceKind::Timeout,
        EvidenceKind::Unavailable,
        EvidenceKind::ChecksumFailure,
        EvidenceKind::AuthFailure,
        EvidenceKind::BadToken,
        EvidenceKind::BadLinkSignature,
        EvidenceKind::AnomalyMalfunction,
        EvidenceKind::AnomalyAttack,
        EvidenceKind::AnomalyTampering,
        EvidenceKind::OperatorSuccess,
        EvidenceKind::OperatorFailure,
    ];

    /// Snake-case name, as serialized.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            EvidenceKind::Success => "success",
            EvidenceKind::Error => "error",
            EvidenceKind::Timeout => "timeout",
            EvidenceKind::Unavailable => "unavailable",
            EvidenceKind::ChecksumFailure => "checksum_failure",
            EvidenceKind::AuthFailure => "auth_failure",
            EvidenceKind::BadToken => "bad_token",
            EvidenceKind::BadLinkSignature => "bad_link_signature",
            EvidenceKind::AnomalyMalfunction => "anomaly_malfunction",
            EvidenceKind::AnomalyAttack => "anomaly_attack",
            EvidenceKind::AnomalyTampering => "anomaly_tampering",
            EvidenceKind::OperatorSuccess => "operator_success",
            EvidenceKind::OperatorFailure => "operator_failure",
        }
    }

    /// Whether this kind counts for the subject rather than against it.
    #[must_use]
    pub const fn is_positive(self) -> bool {
        matches!(self, EvidenceKind::Success | EvidenceKind::OperatorSuccess)
    }
}

/// One piece of evidence that moved a subject's score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvidenceView {
    /// What it says.
    pub kind: EvidenceKind,
    /// How many (or the operator's weight).
    pub amount: f64,
    /// Why, for people.
    pub reason: String,
    /// When, ms since the Unix epoch.
    pub at_ms: u64,
    /// The subject's score just before it.
    pub score_before: f64,
    /// The subject's score just after it.
    pub score_after: f64,
}

/// `GET /api/v1/trust/subjects/{id}`: one subject's score, its indexes and what moved it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubjectView {
    /// `kind:id`.
    pub subject: String,
    /// The trust score T in 0..=1.
    pub score: f64,
    /// Every index (`identity`, `behaviour`, `capability`) in 0..=1, configured or not.
    pub indexes: BTreeMap<String, f64>,
    /// Beta parameter α (prior 1 plus decayed positive evidence).
    pub alpha: f64,
    /// Beta parameter β (prior 1 plus decayed weighted negative evidence).
    pub beta: f64,
    /// Positive evidence ever recorded (undecayed).
    pub successes: f64,
    /// Negative evidence ever recorded, unweighted (undecayed).
    pub failures: f64,
    /// Checksum failures and tampering verdicts ever recorded (also in `failures`): proof of
    /// corrupted data, shown apart because it is worse than any error.
    pub checksum_failures: f64,
    /// False when no availability or bandwidth was ever measured: capability is then taken as 1.
    pub capability_known: bool,
    /// The most recent evidence, oldest first (at most 32).
    pub evidence: Vec<EvidenceView>,
    /// Last evidence or capability update, ms since the Unix epoch.
    pub updated_ms: u64,
}

/// `GET /api/v1/trust/subjects`: every scored subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrustSubjectsView {
    /// The subjects, by name.
    pub subjects: Vec<SubjectView>,
}

/// Default half-life of evidence, seconds.
pub const DEFAULT_HALF_LIFE_S: f64 = 3600.0;
/// Default bound on the evidence mass α + β − 2.
pub const DEFAULT_MAX_EVIDENCE: f64 = 100.0;

/// `GET`/`PUT /api/v1/trust/config`: MLSysOps' "Config Trust" (node ids, index names, weights)
/// plus the decay of evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustConfig {
    /// When non-empty, only these node and agent subjects are scored (`node:n1` or `n1`).
    #[serde(default)]
    pub node_ids: Vec<String>,
    /// Index names combined into the score: `identity`, `behaviour`, `capability`.
    pub indexes: Vec<String>,
    /// One weight per index (>= 0, finite, summing to more than 0).
    pub weights: Vec<f64>,
    /// Evidence loses half its weight in this many seconds.
    #[serde(default = "default_half_life_s")]
    pub half_life_s: f64,
    /// α + β − 2 is scaled down to at most this, so that a busy subject's millions of successes
    /// cannot bury new failures (Storj's forgetting factor per audit does the same).
    #[serde(default = "default_max_evidence")]
    pub max_evidence: f64,
}

fn default_half_life_s() -> f64 {
    DEFAULT_HALF_LIFE_S
}

fn default_max_evidence() -> f64 {
    DEFAULT_MAX_EVIDENCE
}

impl Default for TrustConfig {
    fn default() -> Self {
        Self {
            node_ids: Vec::new(),
            indexes: vec!["behaviour".into(), "capability".into()],
            weights: vec![0.6, 0.4],
            half_life_s: DEFAULT_HALF_LIFE_S,
            max_evidence: DEFAULT_MAX_EVIDENCE,
        }
    }
}

/// Which way an operator's feedback goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedbackOutcome {
    /// For the subject.
    Success,
    /// Against the subject.
    Failure,
}

/// `POST /api/v1/trust/subjects/{id}/feedback`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackRequest {
    /// For or against.
    pub outcome: FeedbackOutcome,
    /// How much, 0 < weight <= 100 (one failed call weighs 1).
    pub weight: f64,
    /// Why, kept with the evidence.
    #[serde(default)]
    pub reason: String,
}

/// What holds an enrolled key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityKind {
    /// A MAPE agent.
    Agent,
    /// A gateway node.
    Node,
}

impl IdentityKind {
    /// Lowercase name, as serialized (and as the kind of its trust subject).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            IdentityKind::Agent => "agent",
            IdentityKind::Node => "node",
        }
    }
}

/// How a key got enrolled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnrolledBy {
    /// An operator enrolled it through the admin API.
    Operator,
    /// Trust on first use: the first key presented under an unknown id.
    FirstUse,
}

/// When and why an identity was revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// When, ms since the Unix epoch.
    pub at_ms: u64,
    /// Why.
    pub reason: String,
}

/// `GET /api/v1/identities/{id}`: one enrolled identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityView {
    /// The agent's or node's id.
    pub id: String,
    /// Agent or node.
    pub kind: IdentityKind,
    /// Its Ed25519 public key, base64 (standard alphabet, padded).
    pub public_key: String,
    /// Operator or first use.
    pub enrolled_by: EnrolledBy,
    /// When, ms since the Unix epoch.
    pub enrolled_ms: u64,
    /// Set once revoked: messages signed by it are refused from then on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<Revocation>,
}

/// `GET /api/v1/identities`: every enrolled identity, by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentitiesView {
    /// The identities.
    pub identities: Vec<IdentityView>,
}

/// `POST /api/v1/identities`: enrol a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrolRequest {
    /// The agent's or node's id.
    pub id: String,
    /// Agent or node.
    pub kind: IdentityKind,
    /// Its Ed25519 public key, base64.
    pub public_key: String,
    /// Replace a different key already enrolled under this id (and clear its revocation).
    #[serde(default)]
    pub replace: bool,
}

/// `POST /api/v1/identities/{id}/revoke`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// Why, kept with the identity.
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_fill_the_mlsysops_triple() {
        let c: TrustConfig =
            serde_json::from_str(r#"{"node_ids":["n1"],"indexes":["behaviour"],"weights":[1]}"#).unwrap();
        assert_eq!(c.half_life_s, DEFAULT_HALF_LIFE_S);
        assert_eq!(c.max_evidence, DEFAULT_MAX_EVIDENCE);
        let e = serde_json::from_str::<TrustConfig>(r#"{"indexes":[],"weights":[],"bogus":1}"#).unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
    }

    #[test]
    fn kinds_spell_as_their_names() {
        for k in EvidenceKind::ALL {
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{}\"", k.name()));
        }
        let r: EnrolRequest = serde_json::from_str(r#"{"id":"c1","kind":"agent","public_key":"AAAA"}"#).unwrap();
        assert!(!r.replace);
        assert!(serde_json::from_str::<FeedbackRequest>(r#"{"outcome":"maybe","weight":1}"#).is_err());
    }
}

//! The cluster agent's watch over its gateway for trust and anomalies: each period it reads
//! the backend and principal telemetry, turns the change since the last period into trust
//! evidence and anomaly features, runs the detector, feeds each verdict back to trust as
//! evidence, and writes the scores into the period's [`World`] (backends' `trust`, principals
//! under attack) for the policies to act on.
//!
//! The trust and anomaly services are libraries (`trust`, `anomaly`); this module only wires
//! them to the gateway. Their stores are shared with the REST routes that serve them.

use crate::error::Result;
use crate::gateway::Gateway;
use crate::world::{PrincipalView, World};
use anomaly::{Anomalies, Detector, DetectorConfig, Extractor, Verdict};
use control_api::anomaly::AnomalyClass;
use control_api::trust::EvidenceKind;
use serde_json::Value;
use std::collections::BTreeMap;
use trust::identity::Identities;
use trust::telemetry_evidence::TelemetryEvidence;
use trust::{Evidence, Reputation, Subject, SubjectKind};

/// GETs a backend's window needs before its measured bandwidth is held against its declared one.
const MIN_BANDWIDTH_SAMPLES: u64 = 20;

/// Most principals the world carries to the policies per period: those under an open attack
/// verdict or throttled, worst trust first (the rest need no decision).
const MAX_PRINCIPALS: usize = 256;

/// The services and their state; clones of the stores serve the REST routes.
pub struct Guard {
    /// Trust scores, shared with `/api/v1/trust/*`.
    pub reputation: Reputation,
    /// Enrolled identities, shared with `/api/v1/identities`.
    pub identities: Identities,
    /// Verdicts, shared with `/api/v1/anomalies`.
    pub anomalies: Anomalies,
    detector: Detector,
    features: Extractor,
    evidence: TelemetryEvidence,
    /// Per principal: periods since an attack episode on it was last open.
    calm: BTreeMap<String, u32>,
}

impl Guard {
    /// Over the given stores, with a fresh detector.
    #[must_use]
    pub fn new(reputation: Reputation, identities: Identities, anomalies: Anomalies, detector: DetectorConfig) -> Self {
        Self {
            reputation,
            identities,
            anomalies,
            detector: Detector::new(detector),
            features: Extractor::new(),
            evidence: TelemetryEvidence::new(),
            calm: BTreeMap::new(),
        }
    }

    /// One period over `backends` (the backend telemetry the world was observed from) and the
    /// principal telemetry it reads: updates trust and the detector, and writes what the
    /// policies need into `world`; returns the period's new verdicts.
    pub async fn observe(&mut self, gateway: &Gateway, backends: &Value, world: &mut World) -> Result<Vec<Verdict>> {
        let principals = gateway.principal_telemetry().await?;
        let throttles = gateway.principal_throttles().await?;
        let now = u64::try_from(world.now_ms).unwrap_or(0);
        // Enrolments on first use by the link reach the identity index here.
        self.reputation.sync_identities(&self.identities);
        let verdicts = self.judge(backends, &principals, now);
        for b in &mut world.backends {
            let Ok(subject) = Subject::new(SubjectKind::Backend, &b.id) else {
                continue;
            };
            // Capability against the declared bandwidth, once enough GETs measured it (the
            // telemetry evidence set availability alone).
            if let (Some(declared), Some(measured)) = (b.labels.bandwidth_mib_s, b.bandwidth_mib_s) {
                if declared > 0.0 && b.get_samples >= MIN_BANDWIDTH_SAMPLES {
                    self.reputation
                        .set_capability(&subject, b.availability, Some(measured / declared));
                }
            }
            let view = self.reputation.score(&subject);
            b.trust = view.as_ref().map(|s| s.score);
            b.trust_failures = view.map_or(0.0, |s| s.failures);
        }
        world.principals = self.principals(&principals, &throttles);
        Ok(verdicts)
    }

    /// Evidence and detection over one period's telemetry; returns the new verdicts (also
    /// stored).
    pub fn judge(&mut self, backends: &Value, principals: &Value, now_ms: u64) -> Vec<Verdict> {
        let mut out = Vec::new();
        if let Err(e) = self
            .evidence
            .record_into(&self.reputation, backends, principals, now_ms)
        {
            tracing::warn!(error = %e, "trust: telemetry evidence refused");
        }
        let samples = self.features.extract(backends, principals, now_ms);
        for verdict in self.detector.observe(&samples) {
            let kind = match verdict.class {
                AnomalyClass::Malfunction => EvidenceKind::AnomalyMalfunction,
                AnomalyClass::Attack => EvidenceKind::AnomalyAttack,
                AnomalyClass::Tampering => EvidenceKind::AnomalyTampering,
            };
            tracing::warn!(subject = %verdict.subject, class = ?verdict.class, summary = %verdict.summary, "anomaly detected");
            match verdict.subject.parse::<Subject>() {
                Ok(subject) => {
                    let reason = format!("anomaly {}: {}", verdict.id, verdict.summary);
                    if let Err(e) = self
                        .reputation
                        .record(Evidence::new(subject, kind, 1.0, now_ms, reason))
                    {
                        tracing::warn!(error = %e, "trust: anomaly evidence refused");
                    }
                }
                Err(e) => {
                    tracing::warn!(subject = %verdict.subject, error = %e, "anomaly on a subject trust cannot name")
                }
            }
            self.anomalies.push(verdict.clone());
            out.push(verdict);
        }
        out
    }

    /// The principals a policy may act on: under an open attack verdict, or throttled now.
    fn principals(&mut self, telemetry: &Value, throttles: &Value) -> Vec<PrincipalView> {
        let mut throttled: BTreeMap<String, String> = BTreeMap::new();
        for t in throttles["throttles"].as_array().into_iter().flatten() {
            if let Some(p) = t["principal"].as_str() {
                throttled.insert(p.to_owned(), t["reason"].as_str().unwrap_or_default().to_owned());
            }
        }
        let mut out = Vec::new();
        let seen = telemetry["principals"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["principal"].as_str());
        let mut names: Vec<String> = seen.map(str::to_owned).collect();
        names.extend(throttled.keys().cloned());
        names.sort();
        names.dedup();
        let names_now: std::collections::BTreeSet<String> = names.iter().cloned().collect();
        for id in names {
            let subject = format!("principal:{id}");
            let attack = (self.detector.in_anomaly(&subject) == Some(AnomalyClass::Attack)).then(|| {
                self.anomalies
                    .query(&anomaly::Query {
                        subject: Some(subject.clone()),
                        limit: 1,
                        ..anomaly::Query::default()
                    })
                    .first()
                    .map_or_else(|| "attack".to_owned(), |v| v.summary.clone())
            });
            let calm = self.calm.entry(id.clone()).or_insert(0);
            if attack.is_some() {
                *calm = 0;
            } else {
                *calm = calm.saturating_add(1);
            }
            let calm_periods = *calm;
            let throttled = throttled.get(&id).cloned();
            if attack.is_none() && throttled.is_none() {
                continue;
            }
            out.push(PrincipalView {
                trust: subject
                    .parse::<Subject>()
                    .ok()
                    .and_then(|s| self.reputation.score(&s))
                    .map(|s| s.score),
                id,
                attack,
                calm_periods,
                throttled,
            });
        }
        // Only principals the gateway still counts (at most 4096) or throttles are remembered.
        self.calm.retain(|id, _| names_now.contains(id));
        out.sort_by(|a, b| a.trust.unwrap_or(1.0).total_cmp(&b.trust.unwrap_or(1.0)));
        out.truncate(MAX_PRINCIPALS);
        out
    }
}

/// Records what the agent link saw of `agent` (a verified message, a refused envelope) as
/// evidence about `agent:<agent>` in `reputation`.
pub fn link_evidence(reputation: &Reputation, agent: &str, kind: EvidenceKind, reason: &str) {
    let Ok(subject) = trust::Subject::new(trust::SubjectKind::Agent, agent) else {
        return;
    };
    let at = u64::try_from(crate::world::now_ms()).unwrap_or(0);
    if let Err(e) = reputation.record(trust::Evidence::new(subject, kind, 1.0, at, reason)) {
        tracing::warn!(%agent, error = %e, "trust: link evidence refused");
    }
}

//! Evidence from the gateway's telemetry: the deltas of each backend's and principal's totals
//! between two reads of `GET /api/v1/telemetry/backends` and `GET /api/v1/telemetry/principals`,
//! and each backend's availability over the last minute as its capability.

use crate::evidence::Evidence;
use crate::model::{ModelError, Reputation};
use crate::subject::{Subject, SubjectKind};
use control_api::trust::EvidenceKind;
use serde_json::Value;
use std::collections::HashMap;

/// Most subjects whose previous totals are kept; beyond it the least recently seen is forgotten.
pub const MAX_TRACKED: usize = 10_000;

/// What one read of the telemetry says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extracted {
    /// Evidence from the counters that moved.
    pub evidence: Vec<Evidence>,
    /// Availability (0..=1) of each backend over the last minute, where measured.
    pub availability: Vec<(Subject, f64)>,
}

/// Turns successive telemetry reads into evidence; keeps the previous totals of each subject.
#[derive(Debug, Default)]
pub struct TelemetryEvidence {
    /// Previous totals by subject, and when they were seen.
    previous: HashMap<Subject, (Vec<u64>, u64)>,
}

/// The array under `key`, or the value itself when it is an array.
fn items<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .or_else(|| v.as_array())
        .map_or(&[], Vec::as_slice)
}

fn count(total: &Value, field: &str) -> u64 {
    total.get(field).and_then(Value::as_u64).unwrap_or(0)
}

impl TelemetryEvidence {
    /// An extractor that has seen nothing yet (the first read's totals all count).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Counter increases since the last read of `subject`; a counter that went down means the
    /// gateway restarted, and its new value is the increase.
    fn deltas(&mut self, subject: &Subject, now: Vec<u64>, now_ms: u64) -> Vec<u64> {
        if !self.previous.contains_key(subject) && self.previous.len() >= MAX_TRACKED {
            let oldest = self
                .previous
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(s, _)| s.clone());
            if let Some(o) = oldest {
                self.previous.remove(&o);
            }
        }
        let prev = self.previous.insert(subject.clone(), (now.clone(), now_ms));
        match prev {
            Some((old, _)) if old.len() == now.len() => now
                .iter()
                .zip(&old)
                .map(|(n, o)| if n >= o { n - o } else { *n })
                .collect(),
            _ => now,
        }
    }

    /// Evidence and availability from one read of the backend and principal telemetry
    /// (missing fields count as 0; malformed entries are skipped).
    pub fn extract(&mut self, backends: &Value, principals: &Value, now_ms: u64) -> Extracted {
        let mut out = Extracted::default();
        let push = |out: &mut Extracted, s: &Subject, kind, n: u64, why: &str| {
            if n > 0 {
                out.evidence.push(Evidence::new(
                    s.clone(),
                    kind,
                    n as f64,
                    now_ms,
                    format!("telemetry: {n} {why}"),
                ));
            }
        };
        for b in items(backends, "backends") {
            let Some(id) = b.get("backend").and_then(Value::as_str) else {
                continue;
            };
            let Ok(subject) = Subject::new(SubjectKind::Backend, id) else {
                continue;
            };
            let total = b.get("total").unwrap_or(&Value::Null);
            let (calls, errors) = (count(total, "calls"), count(total, "errors"));
            let d = self.deltas(
                &subject,
                vec![calls.saturating_sub(errors), errors, count(total, "integrity_failures")],
                now_ms,
            );
            push(&mut out, &subject, EvidenceKind::Success, d[0], "calls that worked");
            push(&mut out, &subject, EvidenceKind::Error, d[1], "failed calls");
            push(
                &mut out,
                &subject,
                EvidenceKind::ChecksumFailure,
                d[2],
                "shards that failed their checksum",
            );
            let minute = items(b, "windows")
                .iter()
                .find(|w| w.get("window").and_then(Value::as_str) == Some("1m"));
            if let Some(a) = minute.and_then(|w| w.get("availability")).and_then(Value::as_f64) {
                out.availability.push((subject, a.clamp(0.0, 1.0)));
            }
        }
        for p in items(principals, "principals") {
            let Some(id) = p.get("principal").and_then(Value::as_str) else {
                continue;
            };
            let Ok(subject) = Subject::new(SubjectKind::Principal, id) else {
                continue;
            };
            let total = p.get("total").unwrap_or(&Value::Null);
            // Client errors other than bad credentials (a 404, a denied request) and server
            // errors (the gateway's fault) prove nothing about the principal either way.
            let ok = count(total, "requests")
                .saturating_sub(count(total, "client_errors"))
                .saturating_sub(count(total, "server_errors"));
            let d = self.deltas(
                &subject,
                vec![ok, count(total, "auth_failures"), count(total, "token_failures")],
                now_ms,
            );
            push(&mut out, &subject, EvidenceKind::Success, d[0], "requests that worked");
            push(
                &mut out,
                &subject,
                EvidenceKind::AuthFailure,
                d[1],
                "requests with bad credentials",
            );
            push(
                &mut out,
                &subject,
                EvidenceKind::BadToken,
                d[2],
                "bad policy update tokens",
            );
        }
        out
    }

    /// [`TelemetryEvidence::extract`], recorded into `reputation` as one batch, with each
    /// backend's availability as its capability; returns how much evidence was recorded.
    pub fn record_into(
        &mut self,
        reputation: &Reputation,
        backends: &Value,
        principals: &Value,
        now_ms: u64,
    ) -> Result<usize, ModelError> {
        let x = self.extract(backends, principals, now_ms);
        reputation.record_all(&x.evidence)?;
        for (s, a) in &x.availability {
            reputation.set_capability_at(s, Some(*a), None, now_ms);
        }
        Ok(x.evidence.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn backends(calls: u64, errors: u64, integrity: u64, availability: f64) -> Value {
        json!({"backends": [{
            "backend": "b1",
            "windows": [{"window": "1m", "seconds": 60, "availability": availability},
                        {"window": "1h", "seconds": 3600, "availability": 0.1}],
            "total": {"calls": calls, "errors": errors, "integrity_failures": integrity}
        }]})
    }

    fn principals(requests: u64, client: u64, auth: u64, token: u64) -> Value {
        json!({"principals": [{"principal": "AKIA1", "windows": [], "total": {
            "requests": requests, "auth_failures": auth, "denied": 0, "client_errors": client,
            "server_errors": 1, "not_found": 0, "token_failures": token
        }}]})
    }

    fn amounts(x: &Extracted) -> Vec<(String, EvidenceKind, f64)> {
        x.evidence
            .iter()
            .map(|e| (e.subject.to_string(), e.kind, e.amount))
            .collect()
    }

    #[test]
    fn evidence_is_the_increase_of_the_totals_and_a_restart_counts_anew() {
        let mut t = TelemetryEvidence::new();
        let x = t.extract(&backends(100, 10, 2, 0.95), &principals(50, 8, 5, 1), 1_000);
        assert_eq!(
            amounts(&x),
            [
                ("backend:b1".into(), EvidenceKind::Success, 90.0),
                ("backend:b1".into(), EvidenceKind::Error, 10.0),
                ("backend:b1".into(), EvidenceKind::ChecksumFailure, 2.0),
                ("principal:AKIA1".into(), EvidenceKind::Success, 41.0),
                ("principal:AKIA1".into(), EvidenceKind::AuthFailure, 5.0),
                ("principal:AKIA1".into(), EvidenceKind::BadToken, 1.0),
            ]
        );
        assert_eq!(x.availability, [("backend:b1".parse().unwrap(), 0.95)]);
        let x = t.extract(&backends(130, 10, 7, 1.0), &principals(50, 8, 5, 1), 2_000);
        assert_eq!(
            amounts(&x),
            [
                ("backend:b1".into(), EvidenceKind::Success, 30.0),
                ("backend:b1".into(), EvidenceKind::ChecksumFailure, 5.0),
            ]
        );
        // The gateway restarted: its counters start again from 0.
        let x = t.extract(&backends(4, 1, 0, 1.0), &json!({}), 3_000);
        assert_eq!(
            amounts(&x),
            [
                ("backend:b1".into(), EvidenceKind::Success, 3.0),
                ("backend:b1".into(), EvidenceKind::Error, 1.0),
            ]
        );
    }

    #[test]
    fn missing_fields_count_as_zero_and_junk_is_skipped() {
        let mut t = TelemetryEvidence::new();
        let b = json!([{"backend": "b2", "windows": []}, {"nobackend": 1}, {"backend": "bad\u{1}"}, 7]);
        let x = t.extract(&b, &json!("nonsense"), 0);
        assert!(x.evidence.is_empty() && x.availability.is_empty(), "{x:?}");
    }

    #[test]
    fn recorded_telemetry_moves_the_scores() {
        let r = Reputation::default();
        let mut t = TelemetryEvidence::new();
        let n = t
            .record_into(&r, &backends(1000, 0, 0, 0.5), &principals(100, 40, 40, 0), 0)
            .unwrap();
        assert_eq!(n, 3);
        let b = r.score_at(&"backend:b1".parse().unwrap(), 0).unwrap();
        assert!(b.capability_known && b.indexes["capability"] == 0.5, "{b:?}");
        let p = r.score_at(&"principal:AKIA1".parse().unwrap(), 0).unwrap();
        assert!(p.score < 0.6 && p.failures == 40.0, "{p:?}");
    }
}

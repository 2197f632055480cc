//! Anomaly verdicts: the wire types of `GET /api/v1/anomalies`.

use serde::{Deserialize, Serialize};

/// What kind of trouble an anomaly is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyClass {
    /// The subject is failing on its own: latency, errors, unavailability.
    Malfunction,
    /// Someone is using the system against it: bad signatures or tokens, scans, surges.
    Attack,
    /// Stored data changed under us: checksum failures.
    Tampering,
}

impl AnomalyClass {
    /// Every class.
    pub const ALL: [AnomalyClass; 3] = [AnomalyClass::Malfunction, AnomalyClass::Attack, AnomalyClass::Tampering];

    /// Snake-case name, as serialized.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            AnomalyClass::Malfunction => "malfunction",
            AnomalyClass::Attack => "attack",
            AnomalyClass::Tampering => "tampering",
        }
    }

    /// The class named `s` (as serialized), if any.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == s)
    }
}

impl std::fmt::Display for AnomalyClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One feature that deviated from the subject's baseline: part of a verdict's explanation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviationView {
    /// The feature's snake-case name (`get_p95_ms`, `auth_failures_per_s`, ...).
    pub feature: String,
    /// Its value in the window that was judged.
    pub value: f64,
    /// The baseline's median of it (the peers' median at cold start).
    pub baseline: f64,
    /// Robust z-score: how many (floored) MADs the value is away from the baseline, in the
    /// direction that hurts.
    pub z: f64,
}

/// One anomaly verdict: a subject, what is wrong with it, and why the detector thinks so.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnomalyView {
    /// Unique id of the verdict.
    pub id: String,
    /// `kind:id`: `backend:b1`, `principal:AKIA1`, `node:n1`.
    pub subject: String,
    /// The class.
    pub class: AnomalyClass,
    /// How anomalous: the strongest detector's value over its threshold (1 = just flagged).
    pub score: f64,
    /// When (ms since the Unix epoch) the window that confirmed it ended.
    pub at_ms: u64,
    /// Which detectors fired: `robust_z`, `kmeans`, `peers`, `limit`.
    pub detectors: Vec<String>,
    /// The features that deviated most, most first (at most three).
    pub deviations: Vec<DeviationView>,
    /// One sentence for people.
    pub summary: String,
}

/// Answer of `GET /api/v1/anomalies`: verdicts, newest first.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AnomaliesPage {
    /// The verdicts.
    pub anomalies: Vec<AnomalyView>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verdict_serializes_with_snake_case_class() {
        let v = AnomalyView {
            id: "a1".into(),
            subject: "backend:b1".into(),
            class: AnomalyClass::Malfunction,
            score: 2.5,
            at_ms: 60_000,
            detectors: vec!["robust_z".into()],
            deviations: vec![DeviationView {
                feature: "get_p95_ms".into(),
                value: 900.0,
                baseline: 40.0,
                z: 31.0,
            }],
            summary: "backend:b1 is slow".into(),
        };
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["class"], "malfunction");
        assert_eq!(json["deviations"][0]["feature"], "get_p95_ms");
        assert_eq!(serde_json::from_value::<AnomalyView>(json).unwrap(), v);
        for c in AnomalyClass::ALL {
            assert_eq!(AnomalyClass::parse(c.name()), Some(c));
            assert_eq!(serde_json::to_value(c).unwrap(), c.name());
        }
        assert_eq!(AnomalyClass::parse("Attack"), None);
    }
}

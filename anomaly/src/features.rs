//! Features per subject and window, extracted from the gateway's telemetry JSON.
//!
//! Rates come from the deltas of monotonic totals between two calls (the agent's period), so a
//! burst is seen in the period it happens rather than smeared over a minute; the first call for
//! a subject, and the call after a counter went down (the gateway restarted), fall back to the
//! 1-minute window's counters.

use std::collections::HashMap;

use control_api::AnomalyClass;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// At most this many subjects' previous totals are kept; the least recently seen go first.
pub const MAX_SUBJECTS: usize = 10_000;

/// What a subject is, from the prefix of its `kind:id` name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A storage backend (`backend:b1`).
    Backend,
    /// An S3 access key (`principal:AKIA1`).
    Principal,
    /// A gateway node (`node:n1`).
    Node,
}

impl Kind {
    /// The kind of `subject` (`backend:`, `principal:` or `node:`); other names are nodes.
    #[must_use]
    pub fn of(subject: &str) -> Self {
        match subject.split_once(':').map(|(k, _)| k) {
            Some("backend") => Kind::Backend,
            Some("principal") => Kind::Principal,
            _ => Kind::Node,
        }
    }

    /// The features a subject of this kind has, in the order of its vectors.
    #[must_use]
    pub const fn features(self) -> &'static [Feature] {
        match self {
            Kind::Backend | Kind::Node => &BACKEND_FEATURES,
            Kind::Principal => &PRINCIPAL_FEATURES,
        }
    }
}

/// The features of a backend (and of a node).
pub const BACKEND_FEATURES: [Feature; 9] = [
    Feature::GetP50Ms,
    Feature::GetP95Ms,
    Feature::PutP95Ms,
    Feature::ErrorRate,
    Feature::TimeoutRate,
    Feature::Availability,
    Feature::ChecksumFailuresPerS,
    Feature::CallsPerS,
    Feature::GetJitter,
];

/// The features of an S3 principal.
pub const PRINCIPAL_FEATURES: [Feature; 9] = [
    Feature::RequestsPerS,
    Feature::AuthFailuresPerS,
    Feature::DeniedShare,
    Feature::NotFoundPerS,
    Feature::HeadShare,
    Feature::BytesOutPerS,
    Feature::DeletesPerS,
    Feature::PutsPerS,
    Feature::TokenFailuresPerS,
];

/// One measured quantity of a subject in a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Feature {
    /// Median GET latency over the last minute, ms.
    GetP50Ms,
    /// 95th-percentile GET latency over the last minute, ms.
    GetP95Ms,
    /// 95th-percentile PUT latency over the last minute, ms.
    PutP95Ms,
    /// Failed calls over calls.
    ErrorRate,
    /// Timed-out calls over calls (when the gateway reports timeouts).
    TimeoutRate,
    /// Share of health probes that found the backend up.
    Availability,
    /// Shards that failed their checksum or MAC, per second.
    ChecksumFailuresPerS,
    /// Calls per second.
    CallsPerS,
    /// GET p95 over p50: how erratic the latency is, apart from how slow.
    GetJitter,
    /// Requests per second.
    RequestsPerS,
    /// Requests refused for a bad signature or unknown key, per second.
    AuthFailuresPerS,
    /// Share of requests denied (403).
    DeniedShare,
    /// 404 answers per second.
    NotFoundPerS,
    /// Share of requests that were HEADs.
    HeadShare,
    /// Bytes sent to the principal per second.
    BytesOutPerS,
    /// DELETEs per second.
    DeletesPerS,
    /// PUTs per second.
    PutsPerS,
    /// Refused `policy_update_token`s per second.
    TokenFailuresPerS,
}

/// Which way a feature moves when things go wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Larger is worse (latency, errors, rates).
    Up,
    /// Smaller is worse (availability).
    Down,
}

impl Feature {
    /// Snake-case name, as serialized.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Feature::GetP50Ms => "get_p50_ms",
            Feature::GetP95Ms => "get_p95_ms",
            Feature::PutP95Ms => "put_p95_ms",
            Feature::ErrorRate => "error_rate",
            Feature::TimeoutRate => "timeout_rate",
            Feature::Availability => "availability",
            Feature::ChecksumFailuresPerS => "checksum_failures_per_s",
            Feature::CallsPerS => "calls_per_s",
            Feature::GetJitter => "get_jitter",
            Feature::RequestsPerS => "requests_per_s",
            Feature::AuthFailuresPerS => "auth_failures_per_s",
            Feature::DeniedShare => "denied_share",
            Feature::NotFoundPerS => "not_found_per_s",
            Feature::HeadShare => "head_share",
            Feature::BytesOutPerS => "bytes_out_per_s",
            Feature::DeletesPerS => "deletes_per_s",
            Feature::PutsPerS => "puts_per_s",
            Feature::TokenFailuresPerS => "token_failures_per_s",
        }
    }

    /// Which way is bad. Only deviations that way count: a backend getting faster or a client
    /// going quiet is not an anomaly anyone should act on.
    #[must_use]
    pub const fn direction(self) -> Direction {
        match self {
            Feature::Availability => Direction::Down,
            _ => Direction::Up,
        }
    }

    /// Shares and rates in [0, 1] are compared as they are; latencies, ratios and per-second
    /// counts are heavy-tailed and multiplicative (load doubles, latency triples), so they are
    /// compared as `ln(1 + x)`.
    #[must_use]
    pub const fn is_logged(self) -> bool {
        !matches!(
            self,
            Feature::ErrorRate
                | Feature::TimeoutRate
                | Feature::Availability
                | Feature::DeniedShare
                | Feature::HeadShare
        )
    }

    /// The value as the detectors compare it.
    #[must_use]
    pub fn transform(self, x: f64) -> f64 {
        if self.is_logged() {
            x.max(0.0).ln_1p()
        } else {
            x
        }
    }

    /// The smallest spread (MAD, in transformed units) the baseline is credited with. A flat
    /// baseline (error counts are mostly zero) has MAD 0, and one event would be z = inf; the
    /// floor is the change that is still "normal wobble" (see docs/anomaly.md for each value).
    #[must_use]
    pub const fn mad_floor(self) -> f64 {
        match self {
            // ln units: 0.1 is ~10 %; z = 6 takes a ~2.4x step in latency.
            Feature::GetP50Ms | Feature::GetP95Ms | Feature::PutP95Ms => 0.1,
            // Shares: z = 6 takes +4.4 points of errors or timeouts.
            Feature::ErrorRate | Feature::TimeoutRate => 0.005,
            // z = 6 takes 18 points of probes lost.
            Feature::Availability => 0.02,
            // z = 6 at ~0.56 failures/s (3 in a 5 s period, 34 a minute): a handful is wobble.
            Feature::ChecksumFailuresPerS | Feature::AuthFailuresPerS | Feature::TokenFailuresPerS => 0.05,
            // Load follows the clock: z = 6 takes ~3.8x the usual rate.
            Feature::CallsPerS | Feature::RequestsPerS | Feature::BytesOutPerS | Feature::PutsPerS => 0.15,
            Feature::NotFoundPerS | Feature::DeletesPerS => 0.1,
            Feature::GetJitter => 0.1,
            // z = 6 takes +27 points of 403s or of HEADs in the mix.
            Feature::DeniedShare | Feature::HeadShare => 0.03,
        }
    }

    /// An absolute limit in raw units, used before a subject has a baseline (and, for checksum
    /// failures, always). `None`: no absolute limit makes sense (it depends on the client).
    #[must_use]
    pub const fn limit(self) -> Option<f64> {
        match self {
            Feature::GetP50Ms => Some(1_000.0),
            Feature::GetP95Ms => Some(3_000.0),
            Feature::PutP95Ms => Some(5_000.0),
            Feature::ErrorRate => Some(0.2),
            Feature::TimeoutRate => Some(0.1),
            Feature::Availability => Some(0.5),
            // Any shard failing its checksum is evidence: stored data changed.
            Feature::ChecksumFailuresPerS => Some(0.0),
            Feature::AuthFailuresPerS | Feature::TokenFailuresPerS => Some(1.0),
            Feature::DeniedShare => Some(0.5),
            Feature::NotFoundPerS => Some(20.0),
            Feature::DeletesPerS => Some(50.0),
            Feature::CallsPerS
            | Feature::GetJitter
            | Feature::RequestsPerS
            | Feature::HeadShare
            | Feature::BytesOutPerS
            | Feature::PutsPerS => None,
        }
    }

    /// The class a deviation of this feature points to.
    #[must_use]
    pub const fn class(self) -> AnomalyClass {
        match self {
            Feature::ChecksumFailuresPerS => AnomalyClass::Tampering,
            Feature::GetP50Ms
            | Feature::GetP95Ms
            | Feature::PutP95Ms
            | Feature::ErrorRate
            | Feature::TimeoutRate
            | Feature::Availability
            | Feature::CallsPerS
            | Feature::GetJitter => AnomalyClass::Malfunction,
            _ => AnomalyClass::Attack,
        }
    }

    /// Whether peers of the same kind are comparable on this feature. Principals differ in
    /// volume by orders of magnitude (a backup job against a dashboard), so at cold start a new
    /// key is compared with the others on what it fails and how its mix looks, not on how much.
    #[must_use]
    pub const fn peer_comparable(self) -> bool {
        !matches!(self, Feature::RequestsPerS | Feature::BytesOutPerS | Feature::PutsPerS)
    }

    /// Integrity and authentication features are never noise: one window confirms them.
    #[must_use]
    pub const fn confirms_at_once(self) -> bool {
        matches!(
            self,
            Feature::ChecksumFailuresPerS | Feature::AuthFailuresPerS | Feature::TokenFailuresPerS
        )
    }
}

/// One subject's features in one window.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// `kind:id`.
    pub subject: String,
    /// End of the window, ms since the Unix epoch.
    pub at_ms: u64,
    /// The features measured (a missing one was not measurable: no calls, no samples).
    pub features: Vec<(Feature, f64)>,
}

impl Sample {
    /// The value of `f`, if measured.
    #[must_use]
    pub fn get(&self, f: Feature) -> Option<f64> {
        self.features.iter().find(|(g, _)| *g == f).map(|(_, v)| *v)
    }
}

/// The totals of one subject at its last call.
#[derive(Clone, Debug)]
struct Previous {
    at_ms: u64,
    totals: HashMap<&'static str, f64>,
}

/// Turns telemetry answers into [`Sample`]s, remembering each subject's last totals.
#[derive(Debug, Default)]
pub struct Extractor {
    previous: HashMap<String, Previous>,
}

const BACKEND_TOTALS: [&str; 4] = ["calls", "errors", "integrity_failures", "timeouts"];
const PRINCIPAL_TOTALS: [&str; 9] = [
    "requests",
    "auth_failures",
    "denied",
    "not_found",
    "heads",
    "bytes_out",
    "deletes",
    "puts",
    "token_failures",
];

/// Per-window counts of one subject: deltas of totals, or a window's counters, over `seconds`.
struct Counts<'a> {
    get: Box<dyn Fn(&str) -> f64 + 'a>,
    seconds: f64,
}

impl Counts<'_> {
    fn per_s(&self, name: &str) -> f64 {
        (self.get)(name) / self.seconds
    }

    fn share(&self, name: &str, of: &str) -> Option<f64> {
        let d = (self.get)(of);
        (d > 0.0).then(|| ((self.get)(name) / d).clamp(0.0, 1.0))
    }
}

fn number(v: &Value, name: &str) -> f64 {
    v.get(name).and_then(Value::as_f64).unwrap_or(0.0)
}

fn one_minute(subject: &Value) -> Option<&Value> {
    subject.get("windows")?.as_array()?.iter().find(|w| w["window"] == "1m")
}

/// The array under `key`, or the value itself when it is an array.
fn list<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key).unwrap_or(v).as_array().map_or(&[], Vec::as_slice)
}

impl Extractor {
    /// An extractor that has seen nothing.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Samples of every backend in `backends` (`GET /api/v1/telemetry/backends`) and every
    /// principal in `principals` (`GET /api/v1/telemetry/principals`) at `now_ms`. Missing
    /// fields count as 0; entries without an id are skipped.
    pub fn extract(&mut self, backends: &Value, principals: &Value, now_ms: u64) -> Vec<Sample> {
        let mut out = Vec::new();
        for b in list(backends, "backends") {
            let Some(id) = b.get("backend").and_then(Value::as_str) else {
                continue;
            };
            let subject = format!("backend:{id}");
            let w = one_minute(b);
            let Some(counts) = self.counts(&subject, b, w, &BACKEND_TOTALS, now_ms) else {
                continue;
            };
            let mut f = Vec::with_capacity(BACKEND_FEATURES.len());
            if let Some(w) = w {
                let p50 = w["get"]["p50_ms"].as_f64();
                let p95 = w["get"]["p95_ms"].as_f64();
                if let Some(v) = p50 {
                    f.push((Feature::GetP50Ms, v));
                }
                if let Some(v) = p95 {
                    f.push((Feature::GetP95Ms, v));
                }
                if let (Some(p50), Some(p95)) = (p50, p95) {
                    f.push((Feature::GetJitter, p95 / p50.max(1.0)));
                }
                if let Some(v) = w["put"]["p95_ms"].as_f64() {
                    f.push((Feature::PutP95Ms, v));
                }
                if let Some(v) = w["availability"].as_f64() {
                    f.push((Feature::Availability, v));
                }
            }
            if let Some(v) = counts.share("errors", "calls") {
                f.push((Feature::ErrorRate, v));
            }
            let has_timeouts = b.pointer("/total/timeouts").is_some() || w.is_some_and(|w| w.get("timeouts").is_some());
            if has_timeouts {
                if let Some(v) = counts.share("timeouts", "calls") {
                    f.push((Feature::TimeoutRate, v));
                }
            }
            f.push((Feature::ChecksumFailuresPerS, counts.per_s("integrity_failures")));
            f.push((Feature::CallsPerS, counts.per_s("calls")));
            out.push(Sample {
                subject,
                at_ms: now_ms,
                features: f,
            });
        }
        for p in list(principals, "principals") {
            let Some(id) = p.get("principal").and_then(Value::as_str) else {
                continue;
            };
            let subject = format!("principal:{id}");
            let w = one_minute(p);
            let Some(c) = self.counts(&subject, p, w, &PRINCIPAL_TOTALS, now_ms) else {
                continue;
            };
            let mut f = vec![
                (Feature::RequestsPerS, c.per_s("requests")),
                (Feature::AuthFailuresPerS, c.per_s("auth_failures")),
                (Feature::DeniedShare, c.share("denied", "requests").unwrap_or(0.0)),
                (Feature::NotFoundPerS, c.per_s("not_found")),
                (Feature::HeadShare, c.share("heads", "requests").unwrap_or(0.0)),
                (Feature::BytesOutPerS, c.per_s("bytes_out")),
                (Feature::DeletesPerS, c.per_s("deletes")),
                (Feature::PutsPerS, c.per_s("puts")),
                (Feature::TokenFailuresPerS, c.per_s("token_failures")),
            ];
            f.retain(|(_, v)| v.is_finite());
            out.push(Sample {
                subject,
                at_ms: now_ms,
                features: f,
            });
        }
        self.bound();
        out
    }

    /// This period's counts of `subject`: deltas since its last call when they are usable,
    /// else its 1-minute window; `None` when neither exists.
    fn counts<'a>(
        &mut self,
        subject: &str,
        entry: &'a Value,
        window: Option<&'a Value>,
        names: &[&'static str],
        now_ms: u64,
    ) -> Option<Counts<'a>> {
        let total = entry.get("total").filter(|t| t.is_object());
        let now: Option<HashMap<&'static str, f64>> = total.map(|t| names.iter().map(|&n| (n, number(t, n))).collect());
        let prev = self.previous.get(subject);
        let deltas = match (&now, prev) {
            (Some(now), Some(prev)) if now_ms > prev.at_ms => {
                let went_down = names
                    .iter()
                    .any(|n| now[n] < prev.totals.get(n).copied().unwrap_or(0.0));
                (!went_down).then(|| {
                    let d: HashMap<&'static str, f64> = names
                        .iter()
                        .map(|&n| (n, now[n] - prev.totals.get(n).copied().unwrap_or(0.0)))
                        .collect();
                    #[allow(clippy::cast_precision_loss)]
                    let seconds = (now_ms - prev.at_ms) as f64 / 1000.0;
                    (d, seconds)
                })
            }
            _ => None,
        };
        if let Some(now) = now {
            self.previous.insert(
                subject.to_owned(),
                Previous {
                    at_ms: now_ms,
                    totals: now,
                },
            );
        }
        if let Some((d, seconds)) = deltas {
            return Some(Counts {
                get: Box::new(move |n| d.get(n).copied().unwrap_or(0.0)),
                seconds,
            });
        }
        let w = window?;
        #[allow(clippy::cast_precision_loss)]
        let seconds = w
            .get("seconds")
            .and_then(Value::as_u64)
            .filter(|s| *s > 0)
            .unwrap_or(60) as f64;
        Some(Counts {
            get: Box::new(move |n| number(w, n)),
            seconds,
        })
    }

    fn bound(&mut self) {
        if self.previous.len() <= MAX_SUBJECTS {
            return;
        }
        let mut ages: Vec<(u64, String)> = self.previous.iter().map(|(k, p)| (p.at_ms, k.clone())).collect();
        ages.sort_unstable();
        for (_, k) in ages.into_iter().take(self.previous.len() - MAX_SUBJECTS) {
            self.previous.remove(&k);
        }
    }

    /// How many subjects' totals are remembered.
    #[must_use]
    pub fn len(&self) -> usize {
        self.previous.len()
    }

    /// Whether no subject is remembered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.previous.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn backends(calls: u64, errors: u64, integrity: u64, p95: f64) -> Value {
        json!({"backends": [{
            "backend": "b1",
            "windows": [{"window": "1m", "seconds": 60,
                "get": {"count": 10, "errors": 0, "bytes": 0, "p50_ms": 10.0, "p95_ms": p95},
                "put": {"count": 10, "errors": 0, "bytes": 0, "p95_ms": 20.0},
                "other": {"count": 0, "errors": 0, "bytes": 0},
                "calls": 120, "errors": 6, "error_rate": 0.05, "availability": 1.0}],
            "total": {"calls": calls, "errors": errors, "integrity_failures": integrity}
        }]})
    }

    fn principals(requests: u64, auth: u64, heads: u64) -> Value {
        json!({"principals": [{"principal": "AKIA1",
            "windows": [{"window": "1m", "seconds": 60, "requests": 600, "auth_failures": 60}],
            "total": {"requests": requests, "auth_failures": auth, "heads": heads, "denied": auth}}]})
    }

    #[test]
    fn rates_are_deltas_of_totals_and_fall_back_to_the_window() {
        let mut x = Extractor::new();
        let first = x.extract(&backends(1000, 10, 0, 50.0), &principals(100, 0, 0), 0);
        assert_eq!(first.len(), 2);
        let b = &first[0];
        assert_eq!(b.subject, "backend:b1");
        // First call: the 1-minute window's counters.
        assert_eq!(b.get(Feature::CallsPerS), Some(2.0));
        assert_eq!(b.get(Feature::ErrorRate), Some(0.05));
        assert_eq!(b.get(Feature::GetP95Ms), Some(50.0));
        assert_eq!(b.get(Feature::GetJitter), Some(5.0));
        assert_eq!(b.get(Feature::TimeoutRate), None, "no timeouts reported");
        assert_eq!(first[1].get(Feature::AuthFailuresPerS), Some(1.0));

        let second = x.extract(&backends(1100, 30, 5, 50.0), &principals(200, 50, 50), 10_000);
        let b = &second[0];
        assert_eq!(b.get(Feature::CallsPerS), Some(10.0));
        assert_eq!(b.get(Feature::ErrorRate), Some(0.2));
        assert_eq!(b.get(Feature::ChecksumFailuresPerS), Some(0.5));
        let p = &second[1];
        assert_eq!(p.subject, "principal:AKIA1");
        assert_eq!(p.get(Feature::RequestsPerS), Some(10.0));
        assert_eq!(p.get(Feature::AuthFailuresPerS), Some(5.0));
        assert_eq!(p.get(Feature::DeniedShare), Some(0.5));
        assert_eq!(p.get(Feature::HeadShare), Some(0.5));
    }

    #[test]
    fn a_counter_that_went_down_is_a_restart_not_a_negative_rate() {
        let mut x = Extractor::new();
        x.extract(&backends(1000, 10, 0, 50.0), &json!({}), 0);
        let after = x.extract(&backends(5, 0, 0, 50.0), &json!({}), 10_000);
        assert_eq!(after[0].get(Feature::CallsPerS), Some(2.0), "window fallback");
        let next = x.extract(&backends(105, 0, 0, 50.0), &json!({}), 20_000);
        assert_eq!(next[0].get(Feature::CallsPerS), Some(10.0), "re-anchored");
    }

    #[test]
    fn garbage_and_missing_fields_are_skipped_not_fatal() {
        let mut x = Extractor::new();
        let input = json!({"backends": [{"nope": 1}, {"backend": "b2"}, {"backend": "b3", "total": {"calls": 1}}]});
        let s = x.extract(&input, &json!("not an object"), 5);
        assert!(s.is_empty(), "nothing to measure yet: {s:?}");
        let s = x.extract(&input, &json!("not an object"), 1005);
        assert_eq!(s.len(), 1, "b3 has totals, b2 has nothing: {s:?}");
        assert_eq!(s[0].get(Feature::CallsPerS), Some(0.0));
        assert_eq!(s[0].get(Feature::ErrorRate), None, "no calls, no error rate");
        assert_eq!(Kind::of("principal:AKIA"), Kind::Principal);
        assert_eq!(Kind::of("backend:b"), Kind::Backend);
        assert_eq!(Kind::of("n1"), Kind::Node);
    }

    #[test]
    fn remembered_subjects_are_capped() {
        let mut x = Extractor::new();
        let many: Vec<Value> = (0..MAX_SUBJECTS + 5)
            .map(|i| json!({"backend": format!("b{i}"), "total": {"calls": 1}}))
            .collect();
        x.extract(&json!({ "backends": many }), &json!({}), 1);
        assert_eq!(x.len(), MAX_SUBJECTS);
    }

    #[test]
    fn names_are_snake_case_and_serialize_so() {
        for f in BACKEND_FEATURES.iter().chain(&PRINCIPAL_FEATURES) {
            assert_eq!(serde_json::to_value(f).unwrap(), f.name());
            assert!(f.mad_floor() > 0.0);
        }
    }
}

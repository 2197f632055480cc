//! A labelled synthetic trace: days of 1-minute windows of backends and principals with a
//! diurnal load, noise and benign spikes, plus injected malfunctions, attacks and tampering,
//! written as the same telemetry JSON the [`crate::Extractor`] reads, so that a measurement of
//! detection quality runs the whole pipeline. Deterministic for a given seed.

use std::f64::consts::PI;

use control_api::AnomalyClass;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// Milliseconds per window.
pub const WINDOW_MS: u64 = 60_000;
const DAY: usize = 1440;

/// What to generate.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceConfig {
    /// Seed of everything random.
    pub seed: u64,
    /// Days of 1-minute windows.
    pub days: usize,
    /// Backends `b0..`.
    pub backends: usize,
    /// Principals `AKIA0..`.
    pub principals: usize,
    /// Windows at the start without injections (the detectors learn what normal is).
    pub warmup: usize,
    /// Injections of each kind.
    pub per_kind: usize,
}

impl Default for TraceConfig {
    fn default() -> Self {
        Self {
            seed: 13,
            days: 3,
            backends: 6,
            principals: 12,
            warmup: 360,
            per_kind: 4,
        }
    }
}

/// An injected fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// A backend's latency steps up five-fold.
    LatencyStep,
    /// A backend's latency becomes slow and erratic (p95 jumps around), with a few errors.
    Jitter,
    /// A quarter of a backend's calls fail.
    ErrorBurst,
    /// A backend is down: probes fail, calls fail, few are attempted.
    Outage,
    /// A backend's shards fail their checksums.
    BitFlips,
    /// A principal sends requests with bad signatures.
    BadSignatures,
    /// A principal sends bad `policy_update_token`s.
    BadTokens,
    /// A principal probes keys: HEADs answered 404.
    Scan,
    /// A principal downloads far more than it does.
    Exfiltration,
    /// A principal deletes in bulk.
    DeleteSurge,
    /// A principal never seen before starts with a bad-signature burst (cold start).
    NewcomerBadSignatures,
}

impl Fault {
    const BACKEND: [Fault; 5] = [
        Fault::LatencyStep,
        Fault::Jitter,
        Fault::ErrorBurst,
        Fault::Outage,
        Fault::BitFlips,
    ];
    const PRINCIPAL: [Fault; 5] = [
        Fault::BadSignatures,
        Fault::BadTokens,
        Fault::Scan,
        Fault::Exfiltration,
        Fault::DeleteSurge,
    ];

    /// The class the detector should give it.
    #[must_use]
    pub const fn class(self) -> AnomalyClass {
        match self {
            Fault::LatencyStep | Fault::Jitter | Fault::ErrorBurst | Fault::Outage => AnomalyClass::Malfunction,
            Fault::BitFlips => AnomalyClass::Tampering,
            _ => AnomalyClass::Attack,
        }
    }

    const fn windows(self) -> usize {
        match self {
            Fault::LatencyStep | Fault::Jitter => 30,
            Fault::Exfiltration => 15,
            Fault::ErrorBurst | Fault::Outage | Fault::Scan => 10,
            Fault::BitFlips => 8,
            Fault::BadSignatures | Fault::BadTokens | Fault::DeleteSurge | Fault::NewcomerBadSignatures => 5,
        }
    }
}

/// One labelled anomaly: windows `start..end` of `subject`.
#[derive(Clone, Debug, PartialEq)]
pub struct Episode {
    /// `kind:id`.
    pub subject: String,
    /// What was injected.
    pub fault: Fault,
    /// The class it should get.
    pub class: AnomalyClass,
    /// First window.
    pub start: usize,
    /// One past the last window.
    pub end: usize,
}

/// One window's telemetry answers.
#[derive(Clone, Debug)]
pub struct Window {
    /// When it ends.
    pub at_ms: u64,
    /// As `GET /api/v1/telemetry/backends` answers.
    pub backends: Value,
    /// As `GET /api/v1/telemetry/principals` answers.
    pub principals: Value,
}

/// The generated windows and the ground truth.
#[derive(Clone, Debug)]
pub struct Trace {
    /// Windows, in order.
    pub windows: Vec<Window>,
    /// Injected anomalies.
    pub episodes: Vec<Episode>,
}

impl Trace {
    /// The label of `subject` in window `w`, if it is inside an episode.
    #[must_use]
    pub fn label(&self, subject: &str, w: usize) -> Option<AnomalyClass> {
        self.episodes
            .iter()
            .find(|e| e.subject == subject && (e.start..e.end).contains(&w))
            .map(|e| e.class)
    }
}

fn normal(rng: &mut StdRng) -> f64 {
    // Box-Muller: one standard normal from two uniforms.
    let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
    let u2: f64 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (2.0 * PI * u2).cos()
}

#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss
)]
fn poisson(rng: &mut StdRng, mean: f64) -> u64 {
    if mean <= 0.0 {
        return 0;
    }
    if mean > 30.0 {
        return (mean + mean.sqrt() * normal(rng)).round().max(0.0) as u64;
    }
    let l = (-mean).exp();
    let (mut k, mut p) = (0u64, 1.0);
    loop {
        p *= rng.gen::<f64>();
        if p <= l {
            return k;
        }
        k += 1;
    }
}

struct BackendState {
    p50: f64,
    calls_per_min: f64,
    totals: [u64; 3],
}

struct PrincipalState {
    req_per_s: f64,
    object_bytes: f64,
    totals: [u64; 15],
    joins_at: usize,
}

const P_TOTALS: [&str; 15] = [
    "requests",
    "auth_failures",
    "denied",
    "client_errors",
    "server_errors",
    "not_found",
    "heads",
    "gets",
    "puts",
    "deletes",
    "lists",
    "bytes_in",
    "bytes_out",
    "token_failures",
    "throttled",
];

/// Schedules `per_kind` injections of every fault on random subjects and times after the
/// warm-up, at least two hours apart on one subject (so episodes do not merge).
fn schedule(c: &TraceConfig, rng: &mut StdRng, windows: usize) -> Vec<Episode> {
    let mut out: Vec<Episode> = Vec::new();
    let place = |fault: Fault, subject: String, rng: &mut StdRng, out: &mut Vec<Episode>| {
        for _ in 0..1000 {
            let start = rng.gen_range(c.warmup..windows - 60);
            let end = start + fault.windows();
            let clash = out
                .iter()
                .any(|e| e.subject == subject && start < e.end + 120 && e.start < end + 120);
            if !clash {
                out.push(Episode {
                    class: fault.class(),
                    subject,
                    fault,
                    start,
                    end,
                });
                return;
            }
        }
    };
    for fault in Fault::BACKEND {
        for _ in 0..c.per_kind {
            let s = format!("backend:b{}", rng.gen_range(0..c.backends));
            place(fault, s, rng, &mut out);
        }
    }
    for fault in Fault::PRINCIPAL {
        for _ in 0..c.per_kind {
            let s = format!("principal:AKIA{}", rng.gen_range(0..c.principals));
            place(fault, s, rng, &mut out);
        }
    }
    out.sort_by_key(|e| e.start);
    out
}

/// Generates the trace of `c`.
#[must_use]
#[allow(
    clippy::too_many_lines,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]
pub fn generate(c: &TraceConfig) -> Trace {
    let mut rng = StdRng::seed_from_u64(c.seed);
    let n = c.days * DAY;
    let mut episodes = schedule(c, &mut rng, n);
    // One key nobody has seen joins late and attacks from its first window.
    let newcomer_at = n - DAY / 2;
    let newcomer = format!("principal:AKIA{}", c.principals);
    episodes.push(Episode {
        subject: newcomer.clone(),
        fault: Fault::NewcomerBadSignatures,
        class: AnomalyClass::Attack,
        start: newcomer_at,
        end: newcomer_at + Fault::NewcomerBadSignatures.windows(),
    });
    let mut backends: Vec<BackendState> = (0..c.backends)
        .map(|i| BackendState {
            p50: 6.0 + 4.0 * i as f64,
            calls_per_min: rng.gen_range(2000.0..4000.0),
            totals: [0; 3],
        })
        .collect();
    let mut principals: Vec<PrincipalState> = (0..=c.principals)
        .map(|i| PrincipalState {
            req_per_s: 10f64.powf(rng.gen_range(-0.5..1.5)),
            object_bytes: rng.gen_range(10e3..1e6),
            totals: [0; 15],
            joins_at: if i == c.principals { newcomer_at } else { 0 },
        })
        .collect();
    // The gateway restarts once (totals drop to zero): no anomaly, only re-anchored deltas.
    let restart_at = DAY + DAY / 2;
    let fault_of = |episodes: &[Episode], subject: &str, w: usize| -> Option<Fault> {
        episodes
            .iter()
            .find(|e| e.subject == subject && (e.start..e.end).contains(&w))
            .map(|e| e.fault)
    };
    let mut windows = Vec::with_capacity(n);
    for w in 0..n {
        let load = 1.0 + 0.6 * (2.0 * PI * (w % DAY) as f64 / DAY as f64 - PI / 2.0).sin();
        if w == restart_at {
            backends.iter_mut().for_each(|b| b.totals = [0; 3]);
            principals.iter_mut().for_each(|p| p.totals = [0; 15]);
        }
        let mut bs = Vec::new();
        for (i, b) in backends.iter_mut().enumerate() {
            let subject = format!("backend:b{i}");
            let fault = fault_of(&episodes, &subject, w);
            let spike = if rng.gen::<f64>() < 0.003 { 1.8 } else { 1.0 };
            let lat = |rng: &mut StdRng, base: f64| base * (1.0 + 0.2 * load) * spike * (0.1 * normal(rng)).exp();
            let mut p50 = lat(&mut rng, b.p50);
            let mut p95 = lat(&mut rng, b.p50 * 3.0);
            let mut put95 = lat(&mut rng, b.p50 * 5.0);
            let mut calls = poisson(&mut rng, b.calls_per_min * load);
            let mut err_share = 0.001;
            let mut availability = if rng.gen::<f64>() < 0.02 { 0.95 } else { 1.0 };
            let mut integrity = 0;
            let mut answered = true;
            match fault {
                Some(Fault::LatencyStep) => {
                    p50 *= 5.0;
                    p95 *= 5.0;
                    put95 *= 5.0;
                }
                Some(Fault::Jitter) => {
                    p50 *= rng.gen_range(1.2..2.0);
                    p95 *= rng.gen_range(4.0..15.0);
                    put95 *= rng.gen_range(2.0..10.0);
                    err_share = 0.02;
                }
                Some(Fault::ErrorBurst) => err_share = 0.25,
                Some(Fault::Outage) => {
                    availability = rng.gen_range(0.0..0.2);
                    calls /= 10;
                    err_share = 0.95;
                    answered = false;
                }
                Some(Fault::BitFlips) => {
                    let mean = rng.gen_range(5.0..30.0);
                    integrity = poisson(&mut rng, mean);
                }
                _ => {}
            }
            let errors = poisson(&mut rng, calls as f64 * err_share).min(calls);
            b.totals[0] += calls;
            b.totals[1] += errors;
            b.totals[2] += integrity;
            let gets = calls * 7 / 10;
            let op = |count: u64, p50: Option<f64>, p95: Option<f64>| {
                json!({"count": count, "errors": 0, "bytes": count * 100_000,
                       "mean_ms": p50, "p50_ms": p50, "p95_ms": p95, "p99_ms": p95, "max_ms": p95,
                       "bandwidth_mib_s": null})
            };
            let (gp50, gp95, pp95) = if answered {
                (Some(p50), Some(p95), Some(put95))
            } else {
                (None, None, None)
            };
            bs.push(json!({
                "backend": format!("b{i}"),
                "windows": [{
                    "window": "1m", "seconds": 60,
                    "get": op(gets, gp50, gp95),
                    "put": op(calls - gets, pp95.map(|p| p / 2.0), pp95),
                    "audit": op(0, None, None),
                    "other": {"count": 0, "errors": 0, "bytes": 0, "mean_ms": null},
                    "calls": calls, "errors": errors,
                    "error_rate": (calls > 0).then(|| errors as f64 / calls as f64),
                    "availability": availability,
                    "integrity_failures": integrity,
                }],
                "total": {"calls": b.totals[0], "errors": b.totals[1], "integrity_failures": b.totals[2]},
            }));
        }
        let mut ps = Vec::new();
        for (i, p) in principals.iter_mut().enumerate() {
            if w < p.joins_at {
                continue;
            }
            let subject = format!("principal:AKIA{i}");
            let fault = fault_of(&episodes, &subject, w);
            let spike = if rng.gen::<f64>() < 0.005 {
                rng.gen_range(1.5..2.5)
            } else {
                1.0
            };
            let mean = p.req_per_s * 60.0 * load * spike * (0.15 * normal(&mut rng)).exp();
            let requests = poisson(&mut rng, mean);
            let share = |rng: &mut StdRng, s: f64| poisson(rng, requests as f64 * s);
            let mut v = [0u64; 15];
            v[0] = requests;
            v[1] = poisson(&mut rng, 0.01);
            v[2] = v[1] + poisson(&mut rng, 0.02);
            v[5] = share(&mut rng, 0.02);
            v[6] = share(&mut rng, 0.10);
            v[7] = share(&mut rng, 0.60);
            v[8] = share(&mut rng, 0.20);
            v[9] = share(&mut rng, 0.02);
            v[10] = share(&mut rng, 0.08);
            v[11] = (v[8] as f64 * p.object_bytes) as u64;
            v[12] = (v[7] as f64 * p.object_bytes) as u64;
            match fault {
                Some(Fault::BadSignatures | Fault::NewcomerBadSignatures) => {
                    let bad = rng.gen_range(300..1500);
                    v[0] += bad;
                    v[1] += bad;
                    v[2] += bad;
                }
                Some(Fault::BadTokens) => {
                    let bad = rng.gen_range(60..300);
                    v[0] += bad;
                    v[13] += bad;
                    v[2] += bad;
                }
                Some(Fault::Scan) => {
                    let heads = rng.gen_range(1000..3000);
                    v[0] += heads;
                    v[6] += heads;
                    v[5] += heads * 9 / 10;
                }
                Some(Fault::Exfiltration) => {
                    let more = v[7] * 8 + 200;
                    v[0] += more;
                    v[7] += more;
                    v[12] += (more as f64 * p.object_bytes * rng.gen_range(2.0..4.0)) as u64;
                }
                Some(Fault::DeleteSurge) => {
                    let deletes = rng.gen_range(300..1200);
                    v[0] += deletes;
                    v[9] += deletes;
                }
                _ => {}
            }
            v[3] = v[2] + v[5];
            for (t, x) in p.totals.iter_mut().zip(v) {
                *t += x;
            }
            let mut window = serde_json::Map::new();
            window.insert("window".into(), json!("1m"));
            window.insert("seconds".into(), json!(60));
            let mut total = serde_json::Map::new();
            for (k, name) in P_TOTALS.iter().enumerate() {
                window.insert((*name).into(), json!(v[k]));
                total.insert((*name).into(), json!(p.totals[k]));
            }
            ps.push(json!({"principal": format!("AKIA{i}"), "windows": [window], "total": total}));
        }
        windows.push(Window {
            at_ms: (w as u64 + 1) * WINDOW_MS,
            backends: json!({ "backends": bs }),
            principals: json!({ "principals": ps }),
        });
    }
    Trace { windows, episodes }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trace_is_deterministic_and_labelled() {
        let c = TraceConfig {
            days: 1,
            per_kind: 1,
            ..TraceConfig::default()
        };
        let a = generate(&c);
        let b = generate(&c);
        assert_eq!(a.windows.len(), DAY);
        assert_eq!(a.episodes, b.episodes);
        assert_eq!(a.windows[700].backends, b.windows[700].backends);
        assert_eq!(a.episodes.len(), Fault::BACKEND.len() + Fault::PRINCIPAL.len() + 1);
        let e = &a.episodes[0];
        assert_eq!(a.label(&e.subject, e.start), Some(e.class));
        assert_eq!(a.label(&e.subject, e.end), None);
        assert_eq!(
            a.windows[0].principals["principals"].as_array().unwrap().len(),
            c.principals
        );
    }
}

//! What the built-in policies share: which buckets they may touch, the rules a storage policy
//! must meet (the gateway's and the bucket intent's), the backends a bucket may use, code
//! fitting when backends leave, costs, the `storage_policy` command and plan, and the state the
//! policies publish to one another (drained backends, bucket temperature).

use crate::plan::{Explanation, Plan, Priority};
use crate::world::{BackendView, BucketView, World};
use control_api::{BackendsField, BucketIntent, MetricInput, OptionScore, StoragePolicyRequest};
use placement::{BackendSelector, BucketPolicy};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

/// The mechanism every built-in policy drives.
pub const MECHANISM: &str = "storage_policy";

/// The gateway's ceiling on k + m.
const MAX_SHARDS: usize = placement::policy::MAX_SHARDS;

/// A backend the SLO keeper (or re-protection) took out of a bucket, and how it has done since.
#[derive(Debug, Clone, PartialEq)]
pub struct Drained {
    /// The policy that removed it.
    pub by: String,
    /// Why, in words.
    pub why: String,
    /// When it was removed, Unix ms.
    pub since_ms: i64,
    /// Consecutive periods its 1-minute GET figures met the bucket's targets.
    pub ok_periods: u32,
    /// Consecutive periods with no GET samples in which every health probe found it up.
    pub probe_ok_periods: u32,
}

/// How often a bucket is read, as hot/cold decided it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Temperature {
    /// Neither hot nor cold.
    #[default]
    Normal,
    /// Read often: placed on the fastest backends; the cost optimiser leaves it alone.
    Hot,
    /// Rarely read: placed on a wide code over cheap backends.
    Cold,
}

/// State the built-in policies publish to one another, so they do not undo each other's plans.
#[derive(Debug, Default)]
pub struct Shared {
    /// Per bucket: backends removed for missing a target or being down, awaiting readmission.
    pub drained: BTreeMap<String, BTreeMap<String, Drained>>,
    /// Per (bucket, backend): how often it was drained, which lengthens its probe-only wait.
    pub strikes: BTreeMap<(String, String), u32>,
    /// Per bucket: its temperature.
    pub temperature: BTreeMap<String, Temperature>,
}

/// The shared state as the policies hold it.
pub type SharedState = Arc<Mutex<Shared>>;

/// Locks the shared state; a panic elsewhere leaves plain data, so poisoning is ignored.
pub fn lock(s: &SharedState) -> MutexGuard<'_, Shared> {
    s.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    /// The backends drained from `bucket`.
    #[must_use]
    pub fn drained_ids(&self, bucket: &str) -> BTreeSet<String> {
        self.drained
            .get(bucket)
            .map(|d| d.keys().cloned().collect())
            .unwrap_or_default()
    }
}

/// The buckets the agents may change: with an intent and a policy-update token.
pub fn managed(world: &World) -> impl Iterator<Item = (&BucketView, &BucketIntent)> {
    world
        .buckets
        .iter()
        .filter(|b| b.token.is_some())
        .filter_map(|b| b.intent.as_ref().map(|i| (b, i)))
}

/// The backends the bucket's policy admits now: the gateway's list, else its selector applied
/// to the world's backends.
#[must_use]
pub fn eligible(world: &World, bucket: &BucketView) -> Vec<String> {
    if let Some(e) = &bucket.policy.eligible {
        return e.clone();
    }
    let text = bucket.policy.backends.trim();
    let selector = if text.is_empty() {
        BackendSelector::default()
    } else {
        match text.parse::<BackendSelector>() {
            Ok(s) => s,
            Err(_) => return Vec::new(),
        }
    };
    world
        .backends
        .iter()
        .filter(|b| selector.matches(&b.id, &b.labels))
        .map(|b| b.id.clone())
        .collect()
}

/// A backend's measured miss of a bucket's latency or bandwidth target.
#[derive(Debug, Clone, PartialEq)]
pub struct SloMiss {
    /// `get_p95_ms`, `bandwidth_mib_s`, or `forecast_get_p95_ms` (a miss the latency
    /// forecaster predicts, in `ml` mode).
    pub metric: &'static str,
    /// The measured value.
    pub value: f64,
    /// The target.
    pub target: f64,
    /// How badly: measured/target - 1 for latency, target/measured - 1 for bandwidth.
    pub severity: f64,
    /// The window the value is over (`15s`, `1m`; for a forecast, how far ahead).
    pub window: &'static str,
}

impl SloMiss {
    /// The miss in words: `p95 GET latency 412.0 ms exceeds max_latency 100 ms`.
    #[must_use]
    pub fn text(&self) -> String {
        if self.metric == "get_p95_ms" {
            format!(
                "p95 GET latency {:.1} ms over the last {} exceeds max_latency {} ms",
                self.value, self.window, self.target
            )
        } else if self.metric == "forecast_get_p95_ms" {
            format!(
                "p95 GET latency forecast at {:.1} ms {} ahead, on a significantly rising trend, exceeds max_latency {} ms",
                self.value, self.window, self.target
            )
        } else {
            format!(
                "GET bandwidth {:.1} MiB/s over the last {} is below min_download_speed {} MiB/s",
                self.value, self.window, self.target
            )
        }
    }
}

/// Highest severity recorded: a backend at zero bandwidth must not make it infinite.
pub const MAX_SEVERITY: f64 = 100.0;

/// Everything a bucket's storage policy must meet, from the gateway's record and the intent.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// Parity the stated redundancy needs (the larger of the gateway's and the intent's).
    pub min_parity: u8,
    /// Whether a redundancy was stated at all.
    pub redundancy_stated: bool,
    /// Only GDPR-labelled backends.
    pub gdpr: bool,
    /// Lowest backend trust (absent trust counts as trusted).
    pub min_trust: Option<f64>,
    /// Highest backend p95 GET latency, ms.
    pub max_latency: Option<f64>,
    /// Lowest backend GET bandwidth, MiB/s.
    pub min_bandwidth: Option<f64>,
    /// Highest (k+m)/k.
    pub max_overhead: Option<f64>,
    /// Highest cost per logical GiB-month.
    pub max_cost: Option<f64>,
    /// GET samples a backend needs before its figures are judged.
    pub min_samples: u64,
}

impl Rules {
    /// The rules of `bucket` under `intent`; figures with fewer than `min_samples` GETs are not
    /// judged.
    #[must_use]
    #[allow(clippy::cast_precision_loss)]
    pub fn of(bucket: &BucketView, intent: &BucketIntent, min_samples: u64) -> Self {
        let parity = |r: Option<placement::Redundancy>| r.map_or(0, placement::Redundancy::min_parity);
        Self {
            min_parity: parity(intent.redundancy).max(parity(bucket.policy.redundancy)),
            redundancy_stated: intent.redundancy.is_some() || bucket.policy.redundancy.is_some(),
            gdpr: intent.gdpr || bucket.policy.location_restrictions.gdpr,
            min_trust: intent.min_trust,
            max_latency: intent.max_latency.or(bucket.policy.max_latency).map(|l| l as f64),
            min_bandwidth: intent.min_download_speed.or(bucket.policy.min_download_speed),
            max_overhead: intent.max_overhead,
            max_cost: intent.max_cost_per_gib_month,
            min_samples,
        }
    }

    /// Parity a plan keeps: never below the stated redundancy, never below today's parity
    /// (only the cost optimiser lowers parity, and only to a stated redundancy).
    #[must_use]
    pub fn keep_parity(&self, current_m: u8) -> u8 {
        current_m.max(self.min_parity)
    }

    /// Why `b` may not hold the bucket's data at all (GDPR, trust), if so.
    #[must_use]
    pub fn placement_refusal(&self, b: &BackendView) -> Option<String> {
        if self.gdpr && !b.labels.gdpr {
            return Some(format!("backend {} is not labelled gdpr = true", b.id));
        }
        if let (Some(min), Some(t)) = (self.min_trust, b.trust) {
            if t < min {
                return Some(format!("backend {} has trust {t:.2}, below min_trust {min:.2}", b.id));
            }
        }
        None
    }

    /// How `b`'s recent figures miss the latency or bandwidth target (worst miss first), if it
    /// does and has enough samples to be judged.
    #[must_use]
    pub fn slo_miss(&self, b: &BackendView) -> Option<SloMiss> {
        if b.get_samples < self.min_samples {
            return None;
        }
        let mut misses = Vec::new();
        if let (Some(max), Some(p95)) = (self.max_latency, b.get_p95_ms) {
            if p95 > max {
                misses.push(SloMiss {
                    metric: "get_p95_ms",
                    value: p95,
                    target: max,
                    severity: (p95 / max - 1.0).min(MAX_SEVERITY),
                    window: b.window(),
                });
            }
        }
        if let (Some(min), Some(bw)) = (self.min_bandwidth, b.bandwidth_mib_s) {
            if bw < min {
                let severity = if bw > 0.0 {
                    (min / bw - 1.0).min(MAX_SEVERITY)
                } else {
                    MAX_SEVERITY
                };
                misses.push(SloMiss {
                    metric: "bandwidth_mib_s",
                    value: bw,
                    target: min,
                    severity,
                    window: b.window(),
                });
            }
        }
        misses.into_iter().max_by(|a, b| a.severity.total_cmp(&b.severity))
    }

    /// Whether `b` has enough samples and they meet every target.
    #[must_use]
    pub fn slo_met(&self, b: &BackendView) -> bool {
        b.get_samples >= self.min_samples && self.slo_miss(b).is_none()
    }

    /// Why `b` may not receive new data of the bucket: placement, down, or a measured miss.
    #[must_use]
    pub fn admission_refusal(&self, b: &BackendView) -> Option<String> {
        if let Some(why) = self.placement_refusal(b) {
            return Some(why);
        }
        if b.suspect {
            return Some(format!("backend {} is down (suspect)", b.id));
        }
        self.slo_miss(b)
            .map(|miss| format!("backend {}: {}", b.id, miss.text()))
    }

    /// Why code k+m on `backends` backends would be refused by the gateway, or breaks the
    /// intent's overhead ceiling when `overhead` is checked.
    #[must_use]
    pub fn code_refusal(&self, k: u8, m: u8, backends: usize, overhead: bool) -> Option<String> {
        let code = preset(k, m);
        let shards = usize::from(k) + usize::from(m);
        if k == 0 {
            return Some(format!("{code}: k must be at least 1"));
        }
        if shards > MAX_SHARDS {
            return Some(format!("{code}: k + m = {shards} exceeds {MAX_SHARDS}"));
        }
        if m < self.min_parity {
            return Some(format!("{code}: the redundancy needs m >= {}", self.min_parity));
        }
        if shards > backends {
            return Some(format!("{code} needs {shards} backends, {backends} available"));
        }
        if overhead {
            if let Some(max) = self.max_overhead {
                let o = overhead_of(k, m);
                if o > max + 1e-9 {
                    return Some(format!("{code}: overhead {o:.2} exceeds max_overhead {max:.2}"));
                }
            }
        }
        None
    }
}

/// The preset name of k+m (`ec-4-2`, `replicate-3`).
#[must_use]
pub fn preset(k: u8, m: u8) -> String {
    BucketPolicy {
        k,
        m,
        block_size: placement::policy::DEFAULT_BLOCK_SIZE,
    }
    .to_string()
}

/// Stored bytes per logical byte: (k+m)/k.
#[must_use]
pub fn overhead_of(k: u8, m: u8) -> f64 {
    f64::from(k + m) / f64::from(k.max(1))
}

/// Storage cost per logical GiB-month of k+m over `ids`: the overhead times their mean price.
#[must_use]
#[allow(clippy::cast_precision_loss)]
pub fn cost_of(world: &World, k: u8, m: u8, ids: &[String]) -> f64 {
    if ids.is_empty() {
        return 0.0;
    }
    let sum: f64 = ids
        .iter()
        .filter_map(|id| world.backend(id))
        .map(|b| b.labels.cost_per_gib_month)
        .sum();
    overhead_of(k, m) * sum / ids.len() as f64
}

/// Seconds in the 30-day month prices are quoted for.
pub const MONTH_SECS: f64 = 30.0 * 24.0 * 3600.0;

/// GiB read per month per stored GiB, from the last hour's reads; `None` when the bucket's
/// size is unknown or zero (egress per stored GiB is then undefined).
#[must_use]
pub fn read_ratio(bucket: &crate::world::BucketView) -> Option<f64> {
    let size = bucket.bytes.filter(|b| *b > 0)? as f64;
    Some(bucket.read_bytes_per_s_1h.max(0.0) * MONTH_SECS / size)
}

/// The mean egress price of `ids`, per GiB.
#[must_use]
pub fn egress_of(world: &World, ids: &[String]) -> f64 {
    let prices: Vec<f64> = ids
        .iter()
        .filter_map(|id| world.backend(id))
        .map(|b| b.labels.egress_per_gib)
        .collect();
    if prices.is_empty() {
        0.0
    } else {
        prices.iter().sum::<f64>() / prices.len() as f64
    }
}

/// `ec-4-2 on a,b,c,d,e,f`.
#[must_use]
pub fn describe(k: u8, m: u8, ids: &[String]) -> String {
    format!("{} on {}", preset(k, m), ids.join(","))
}

/// The worst (highest) measured p95 GET latency among `ids`, judged backends only.
#[must_use]
pub fn worst_p95(world: &World, ids: &[String], min_samples: u64) -> Option<f64> {
    ids.iter()
        .filter_map(|id| world.backend(id))
        .filter(|b| b.get_samples >= min_samples)
        .filter_map(|b| b.get_p95_ms)
        .max_by(f64::total_cmp)
}

/// The lowest measured GET bandwidth among `ids`, judged backends only.
#[must_use]
pub fn lowest_bandwidth(world: &World, ids: &[String], min_samples: u64) -> Option<f64> {
    ids.iter()
        .filter_map(|id| world.backend(id))
        .filter(|b| b.get_samples >= min_samples)
        .filter_map(|b| b.bandwidth_mib_s)
        .min_by(f64::total_cmp)
}

/// The recent latency and bandwidth of each of `ids` against the bucket's targets.
#[must_use]
#[allow(clippy::cast_precision_loss)]
pub fn backend_inputs(world: &World, ids: &[String], rules: &Rules) -> Vec<MetricInput> {
    let mut out = Vec::new();
    for id in ids {
        let Some(b) = world.backend(id) else { continue };
        let subject = format!("backend/{id}");
        let input = |metric: &str, value: Option<f64>, target: Option<f64>| MetricInput {
            metric: metric.to_owned(),
            subject: subject.clone(),
            value,
            window: b.window().to_owned(),
            target,
        };
        out.push(input("get_p95_ms", b.get_p95_ms, rules.max_latency));
        if rules.min_bandwidth.is_some() || b.bandwidth_mib_s.is_some() {
            out.push(input("bandwidth_mib_s", b.bandwidth_mib_s, rules.min_bandwidth));
        }
        out.push(input(
            "get_samples",
            Some(b.get_samples as f64),
            Some(rules.min_samples as f64),
        ));
    }
    out
}

/// A bucket-level input (`reads_per_s` over `window`).
#[must_use]
pub fn bucket_input(bucket: &str, metric: &str, value: f64, window: &str, target: Option<f64>) -> MetricInput {
    MetricInput {
        metric: metric.to_owned(),
        subject: format!("bucket/{bucket}"),
        value: Some(value),
        window: window.to_owned(),
        target,
    }
}

/// The `storage_policy` command moving `bucket` to k+m on `ids`, with only the fields that
/// change (and the encryption the intent asks for), or `None` when nothing would change.
#[must_use]
pub fn command(
    bucket: &BucketView,
    intent: &BucketIntent,
    k: u8,
    m: u8,
    ids: &[String],
    reason: &str,
) -> Option<Value> {
    let current: BTreeSet<&str> = bucket.policy.eligible.iter().flatten().map(String::as_str).collect();
    let wanted: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
    let same_backends = bucket.policy.eligible.is_some() && current == wanted;
    let req = StoragePolicyRequest {
        k: (k != bucket.policy.k).then_some(k),
        m: (m != bucket.policy.m).then_some(m),
        backends: (!same_backends).then(|| BackendsField::Ids(ids.to_vec())),
        encryption: intent.encryption.filter(|e| *e != bucket.policy.encryption),
        ..StoragePolicyRequest::default()
    };
    if req.is_empty() {
        return None;
    }
    let req = StoragePolicyRequest {
        reason: Some(reason.to_owned()),
        ..req
    };
    serde_json::to_value(req).ok()
}

/// A `storage_policy` plan of `policy` for `bucket`.
#[must_use]
pub fn plan(policy: &str, bucket: &str, command: Value, explanation: Explanation, priority: Priority) -> Plan {
    let mut p = Plan::new(policy, MECHANISM, Plan::bucket_target(bucket), command);
    p.bucket = Some(bucket.to_owned());
    p.explanation = explanation;
    p.priority = priority;
    p
}

/// A code chosen to hold a bucket once some backends leave it.
#[derive(Debug, Clone, PartialEq)]
pub struct Fit {
    /// Data shards.
    pub k: u8,
    /// Parity shards.
    pub m: u8,
    /// The backends.
    pub ids: Vec<String>,
    /// Backends added to replace the leavers.
    pub added: Vec<String>,
    /// Whether it breaks the intent's max_overhead (allowed only for re-protection).
    pub over_overhead: bool,
}

/// The code for a bucket whose backends are now `keep`, preferring in turn: the same code on
/// `keep`; the same code with replacements from `spares` (in their order); a smaller k with the
/// same m; a smaller k with the least parity the redundancy allows. With `allow_overhead` a code
/// over max_overhead is taken when nothing else fits. Returns the choice and every option with
/// its preference score (higher is preferred) or why it was ruled out.
#[must_use]
pub fn fit(
    rules: &Rules,
    k: u8,
    m: u8,
    keep: &[String],
    spares: &[String],
    allow_overhead: bool,
) -> (Option<Fit>, Vec<OptionScore>) {
    let m = rules.keep_parity(m);
    let shards = usize::from(k) + usize::from(m);
    let mut options = Vec::new();
    let mut chosen: Option<Fit> = None;
    let mut consider = |fit: Fit, score: f64, why: &str, refusal: Option<String>| {
        let name = describe(fit.k, fit.m, &fit.ids);
        match refusal {
            Some(r) => options.push(OptionScore {
                option: name,
                score: None,
                note: r,
            }),
            None => {
                options.push(OptionScore {
                    option: name,
                    score: Some(score),
                    note: why.to_owned(),
                });
                if chosen.is_none() {
                    chosen = Some(fit);
                }
            }
        }
    };
    // Same code on what is left.
    consider(
        Fit {
            k,
            m,
            ids: keep.to_vec(),
            added: Vec::new(),
            over_overhead: false,
        },
        1.0,
        "keeps the code on the remaining backends",
        rules.code_refusal(k, m, keep.len(), false),
    );
    // Same code with replacements.
    if keep.len() < shards {
        let need = shards - keep.len();
        let added: Vec<String> = spares.iter().take(need).cloned().collect();
        let mut ids = keep.to_vec();
        ids.extend(added.iter().cloned());
        let refusal = if added.len() < need {
            Some(format!(
                "{} needs {need} more backends, {} admissible outside the set",
                preset(k, m),
                spares.len()
            ))
        } else {
            rules.code_refusal(k, m, ids.len(), false)
        };
        consider(
            Fit {
                k,
                m,
                ids,
                added,
                over_overhead: false,
            },
            0.8,
            "keeps the code, replacing the leavers with admissible backends",
            refusal,
        );
    }
    // Narrower codes on what is left.
    let mut narrower: Vec<(u8, u8)> = Vec::new();
    // Parity goes down to the stated redundancy only: without one, today's m is the floor.
    let floors = if rules.redundancy_stated {
        vec![m, rules.min_parity]
    } else {
        vec![m]
    };
    for mm in floors {
        if let Some(kk) = keep
            .len()
            .checked_sub(usize::from(mm))
            .and_then(|x| u8::try_from(x).ok())
        {
            if kk >= 1 && kk < k && !narrower.contains(&(kk, mm)) {
                narrower.push((kk, mm));
            }
        }
    }
    for (kk, mm) in narrower {
        let over = rules.code_refusal(kk, mm, keep.len(), true);
        let refusal = rules.code_refusal(kk, mm, keep.len(), false).or_else(|| over.clone());
        consider(
            Fit {
                k: kk,
                m: mm,
                ids: keep.to_vec(),
                added: Vec::new(),
                over_overhead: false,
            },
            if mm == m { 0.5 } else { 0.3 },
            "a narrower code on the remaining backends",
            refusal,
        );
        if allow_overhead && over.is_some() && rules.code_refusal(kk, mm, keep.len(), false).is_none() {
            consider(
                Fit {
                    k: kk,
                    m: mm,
                    ids: keep.to_vec(),
                    added: Vec::new(),
                    over_overhead: true,
                },
                0.1,
                "a narrower code over max_overhead: protecting the data outranks the ceiling",
                None,
            );
        }
    }
    (chosen, options)
}

/// Backends outside `exclude` that may receive the bucket's data: most trusted first (in bands of 0.1),
/// then cheapest, then fastest.
#[must_use]
pub fn spares(world: &World, rules: &Rules, exclude: &BTreeSet<String>) -> Vec<String> {
    let mut out: Vec<&BackendView> = world
        .backends
        .iter()
        .filter(|b| !exclude.contains(&b.id))
        .filter(|b| rules.admission_refusal(b).is_none())
        .collect();
    // Trust first, in bands of 0.1 (finer differences are noise of the reputation model),
    // then price, then speed.
    let band = |b: &BackendView| (b.trust.unwrap_or(1.0).clamp(0.0, 1.0) * 10.0).floor();
    out.sort_by(|a, b| {
        band(b)
            .total_cmp(&band(a))
            .then(a.labels.cost_per_gib_month.total_cmp(&b.labels.cost_per_gib_month))
            .then(p95_key(a).total_cmp(&p95_key(b)))
            .then(a.id.cmp(&b.id))
    });
    out.into_iter().map(|b| b.id.clone()).collect()
}

/// A backend's p95 for sorting: unmeasured ones after every measured one.
#[must_use]
pub fn p95_key(b: &BackendView) -> f64 {
    b.get_p95_ms.filter(|_| b.get_samples > 0).unwrap_or(f64::MAX)
}

/// Runs a policy's evaluation once per world snapshot, whether `analyze`, `plan` or both are
/// called, so state that counts periods counts each period once.
#[derive(Debug, Default)]
pub struct Period {
    at_ms: Option<i64>,
    plans: Vec<Plan>,
}

impl Period {
    /// For `analyze`: evaluates the snapshot (once) and says whether it produced plans.
    pub fn analyze(&mut self, world: &World, eval: impl FnOnce(&World) -> Vec<Plan>) -> bool {
        if self.at_ms != Some(world.now_ms) {
            self.plans = eval(world);
            self.at_ms = Some(world.now_ms);
        }
        !self.plans.is_empty()
    }

    /// For `plan`: the snapshot's plans (evaluating it if `analyze` did not), handed out once.
    pub fn plans(&mut self, world: &World, eval: impl FnOnce(&World) -> Vec<Plan>) -> Vec<Plan> {
        self.analyze(world, eval);
        std::mem::take(&mut self.plans)
    }
}

#[cfg(test)]
pub(crate) mod testkit {
    //! Hand-built worlds for the policies' tests.

    use super::*;
    use crate::framework::Ctx;
    use control_api::{AgentMode, LocationRestrictions, StoragePolicyView};
    use placement::BackendLabels;

    /// A backend priced `cost`, measured at `p95` ms over `samples` GETs.
    pub fn backend(id: &str, cost: f64, p95: Option<f64>, samples: u64) -> BackendView {
        BackendView {
            id: id.to_owned(),
            labels: BackendLabels {
                cost_per_gib_month: cost,
                ..BackendLabels::default()
            },
            get_p95_ms: p95,
            bandwidth_mib_s: p95.map(|_| 100.0),
            get_samples: samples,
            availability: Some(1.0),
            ..BackendView::default()
        }
    }

    /// A bucket on k+m over `eligible`, with `intent` and a token.
    pub fn bucket(name: &str, k: u8, m: u8, eligible: &[&str], intent: BucketIntent) -> BucketView {
        BucketView {
            name: name.to_owned(),
            policy: StoragePolicyView {
                bucket: name.to_owned(),
                epoch: 1,
                preset: preset(k, m),
                k,
                m,
                block_size: 1 << 20,
                backends: eligible.join(","),
                eligible: Some(eligible.iter().map(|s| (*s).to_owned()).collect()),
                encryption: false,
                server_side_encryption: "off".into(),
                redundancy: None,
                max_latency: None,
                min_download_speed: None,
                location_restrictions: LocationRestrictions::default(),
                automatic_updates: true,
                changed_ms: 0,
                changed_by: "admin".into(),
                automatic: false,
                reason: String::new(),
                warnings: None,
                prefixes: Vec::new(),
            },
            intent: Some(intent),
            token: Some("token-123456".into()),
            reads_per_s: 1.0,
            writes_per_s: 0.0,
            reads_per_s_1h: 1.0,
            read_bytes_per_s_1h: 0.0,
            bytes: None,
            prefixes: Vec::new(),
            migration: None,
        }
    }

    /// A world at `now_ms` of these backends and buckets.
    pub fn world(now_ms: i64, backends: Vec<BackendView>, buckets: Vec<BucketView>) -> World {
        World {
            now_ms,
            period_secs: 10,
            backends,
            buckets,
            principals: Vec::new(),
            nodes: Vec::new(),
            components: Vec::new(),
        }
    }

    /// Runs `analyze` then `plan` of `policy` on `world`, as an agent period does.
    pub fn run(policy: &mut dyn crate::framework::Policy, world: &World) -> Vec<Plan> {
        run_in(policy, world, None)
    }

    /// [`run`] in `ml` mode: `models` observe `world` first, as the cluster agent's do.
    pub fn run_ml(
        policy: &mut dyn crate::framework::Policy,
        world: &World,
        models: &mut crate::ml::Models,
    ) -> Vec<Plan> {
        models.observe(world);
        run_in(policy, world, Some(models))
    }

    /// [`run`] with `models` as they are (`Some`: `ml` mode).
    pub fn run_in(
        policy: &mut dyn crate::framework::Policy,
        world: &World,
        models: Option<&crate::ml::Models>,
    ) -> Vec<Plan> {
        let mechanisms = std::collections::BTreeMap::new();
        let cx = Ctx {
            world,
            mode: if models.is_some() {
                AgentMode::Ml
            } else {
                AgentMode::Heuristic
            },
            models,
            mechanisms: &mechanisms,
        };
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        rt.block_on(async {
            let act = policy.analyze(&cx).await.expect("analyze");
            let plans = policy.plan(&cx).await.expect("plan");
            assert_eq!(act, !plans.is_empty(), "analyze agrees with plan");
            plans
        })
    }

    /// The plan's command as a request.
    pub fn request(plan: &Plan) -> StoragePolicyRequest {
        serde_json::from_value(plan.command.clone()).expect("a StoragePolicyRequest")
    }

    /// The plan's backends, if it changes them.
    pub fn plan_backends(plan: &Plan) -> Option<Vec<String>> {
        match request(plan).backends {
            Some(BackendsField::Ids(ids)) => Some(ids),
            other => panic!("backends as ids expected, got {other:?}"),
        }
        .filter(|v| !v.is_empty())
    }

    /// Ids `b0..bN`.
    pub fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("b{i}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::testkit::*;
    use super::*;
    use placement::Redundancy;

    #[test]
    fn rules_merge_the_gateway_record_and_the_intent() {
        let mut b = bucket("x", 4, 2, &["b0"], BucketIntent::default());
        b.policy.redundancy = Some(Redundancy::High);
        b.policy.location_restrictions.gdpr = true;
        let intent = BucketIntent {
            redundancy: Some(Redundancy::One),
            max_latency: Some(100),
            ..BucketIntent::default()
        };
        let r = Rules::of(&b, &intent, 5);
        assert_eq!(r.min_parity, 2);
        assert!(r.gdpr);
        assert_eq!(r.max_latency, Some(100.0));
        assert!(r.code_refusal(4, 1, 6, true).unwrap().contains("m >= 2"));
        assert!(r.code_refusal(4, 2, 5, true).unwrap().contains("needs 6 backends, 5"));
        assert!(r.code_refusal(0, 2, 5, true).unwrap().contains("k must be"));
        assert!(r.code_refusal(4, 2, 6, true).is_none());
    }

    #[test]
    fn slo_misses_need_samples_and_are_strict() {
        let intent = BucketIntent {
            max_latency: Some(100),
            min_download_speed: Some(10.0),
            ..BucketIntent::default()
        };
        let r = Rules::of(&bucket("x", 1, 1, &[], intent.clone()), &intent, 5);
        assert!(
            r.slo_miss(&backend("a", 1.0, Some(100.0), 50)).is_none(),
            "at the threshold"
        );
        assert!(
            r.slo_miss(&backend("a", 1.0, Some(400.0), 4)).is_none(),
            "too few samples"
        );
        let miss = r.slo_miss(&backend("a", 1.0, Some(400.0), 5)).unwrap();
        assert_eq!(miss.metric, "get_p95_ms");
        assert!((miss.severity - 3.0).abs() < 1e-9);
        let mut slow = backend("a", 1.0, Some(50.0), 9);
        slow.bandwidth_mib_s = Some(2.0);
        let miss = r.slo_miss(&slow).unwrap();
        assert_eq!(miss.metric, "bandwidth_mib_s");
        assert!((miss.severity - 4.0).abs() < 1e-9);
        assert!(miss.text().contains("below min_download_speed 10"));
    }

    #[test]
    fn commands_carry_only_what_changes() {
        let intent = BucketIntent {
            encryption: Some(true),
            ..BucketIntent::default()
        };
        let b = bucket("x", 2, 1, &["b0", "b1", "b2"], intent.clone());
        let same: Vec<String> = vec!["b2".into(), "b1".into(), "b0".into()];
        let v = command(&b, &intent, 2, 1, &same, "why").unwrap();
        assert_eq!(v, serde_json::json!({"encryption": true, "reason": "why"}));
        let v = command(&b, &BucketIntent::default(), 3, 1, &ids(4), "why").unwrap();
        assert_eq!(
            v,
            serde_json::json!({"k": 3, "backends": ["b0", "b1", "b2", "b3"], "reason": "why"})
        );
        assert!(command(&b, &BucketIntent::default(), 2, 1, &same, "why").is_none());
    }

    #[test]
    fn fitting_prefers_the_same_code_then_replacements_then_narrower() {
        let r = Rules::of(
            &bucket("x", 1, 1, &[], BucketIntent::default()),
            &BucketIntent::default(),
            5,
        );
        let keep = ids(5);
        let (f, opts) = fit(&r, 4, 2, &keep, &["s0".into()], false);
        let f = f.unwrap();
        assert_eq!((f.k, f.m, f.added.clone()), (4, 2, vec!["s0".to_owned()]));
        assert!(opts[0].score.is_none(), "the same code on 5 is ruled out: {opts:?}");
        let (f, _) = fit(&r, 4, 2, &keep, &[], false);
        assert_eq!(f.map(|f| (f.k, f.m)), Some((3, 2)));
        let strict = Rules {
            max_overhead: Some(1.5),
            ..r.clone()
        };
        assert!(fit(&strict, 4, 2, &keep, &[], false).0.is_none());
        let (f, _) = fit(&strict, 4, 2, &keep, &[], true);
        assert!(f.unwrap().over_overhead);
    }
}

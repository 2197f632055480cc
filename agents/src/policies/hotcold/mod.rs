//! Hot/cold: a bucket read rarely for long moves to a wider code (larger k, same m) on the
//! cheapest backends; a bucket read often moves to the fastest backends.
//!
//! Each bucket carries a temperature with hysteresis: it turns cold after `cold_after_periods`
//! periods with the 1-hour read rate below `cold_reads_per_s` and warms again only above
//! `cold_exit_reads_per_s`; it turns hot after `hot_after_periods` periods with the 1-minute
//! rate above `hot_reads_per_s` and cools only after `hot_exit_after_periods` periods below
//! `hot_exit_reads_per_s`. A rate at a threshold does not cross it. The World has no per-prefix
//! rates, so the unit is the bucket.
//!
//! In `ml` mode a hot bucket's backends are ranked, and the move judged, by the latency
//! forecaster's p95 for the next period instead of the last window's: a backend fast now but
//! degrading is not picked, and one recovering fast is not passed over.

mod prefixes;

use super::candidates::{
    self, backend_inputs, bucket_input, cost_of, describe, lock, managed, overhead_of, p95_key, worst_p95, Rules,
    SharedState, Temperature,
};
use crate::error::Result;
use crate::framework::{Ctx, Policy, PolicyManifest};
use crate::ml::Models;
use crate::plan::{Explanation, Plan, Priority};
use crate::world::{BucketView, World};
use async_trait::async_trait;
use control_api::{BucketIntent, Effect, OptionScore};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The policy's name.
pub const NAME: &str = "hot_cold";

/// Settings of hot/cold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HotColdConfig {
    /// Below this 1-hour read rate (reads/s) a bucket is cooling.
    pub cold_reads_per_s: f64,
    /// Above this 1-hour read rate a cold bucket is no longer cold.
    pub cold_exit_reads_per_s: f64,
    /// Consecutive cooling periods before a bucket is cold.
    pub cold_after_periods: u32,
    /// Widest code for cold data.
    pub cold_max_k: u8,
    /// Above this 1-minute read rate a bucket is heating.
    pub hot_reads_per_s: f64,
    /// Below this 1-minute rate a hot bucket is cooling off.
    pub hot_exit_reads_per_s: f64,
    /// Consecutive heating periods before a bucket is hot.
    pub hot_after_periods: u32,
    /// Consecutive cooling-off periods before a hot bucket is normal again.
    pub hot_exit_after_periods: u32,
    /// Smallest gain (share of cost saved, or of worst p95 cut) worth a migration.
    pub min_gain: f64,
    /// Smallest cut of the worst p95 GET, ms, worth moving a hot bucket: between backends a
    /// millisecond apart, 10 % is noise, and a migration is not.
    pub min_gain_ms: f64,
    /// GETs a backend needs in the minute before its figures are judged.
    pub min_samples: u64,
    /// Smallest prefix (logical bytes) worth a prefix rule of its own.
    pub min_prefix_bytes: u64,
}

impl Default for HotColdConfig {
    fn default() -> Self {
        Self {
            cold_reads_per_s: 0.01,
            cold_exit_reads_per_s: 0.02,
            cold_after_periods: 6,
            cold_max_k: 16,
            hot_reads_per_s: 5.0,
            hot_exit_reads_per_s: 2.5,
            hot_after_periods: 2,
            hot_exit_after_periods: 6,
            min_gain: 0.10,
            min_gain_ms: 10.0,
            min_samples: 5,
            min_prefix_bytes: 64 << 20,
        }
    }
}

/// A bucket's temperature and the streaks that move it.
#[derive(Debug, Clone, Default)]
struct Heat {
    temp: Temperature,
    cold_streak: u32,
    hot_streak: u32,
    exit_streak: u32,
}

/// The hot/cold policy.
pub struct HotCold {
    config: HotColdConfig,
    shared: SharedState,
    heat: BTreeMap<String, Heat>,
    prefixes: prefixes::PrefixState,
    period: candidates::Period,
}

impl HotCold {
    /// A hot/cold policy with its own state.
    #[must_use]
    pub fn new(config: HotColdConfig) -> Self {
        Self::with_shared(config, SharedState::default())
    }

    /// A hot/cold policy that publishes temperatures to, and avoids drained backends of, `shared`.
    #[must_use]
    pub fn with_shared(config: HotColdConfig, shared: SharedState) -> Self {
        Self {
            config,
            shared,
            heat: BTreeMap::new(),
            prefixes: prefixes::PrefixState::default(),
            period: candidates::Period::default(),
        }
    }

    /// The temperature it holds for `bucket`.
    #[must_use]
    pub fn temperature(&self, bucket: &str) -> Temperature {
        self.heat.get(bucket).map(|h| h.temp).unwrap_or_default()
    }

    /// The temperature it holds for `prefix` of `bucket`.
    #[must_use]
    pub fn prefix_temperature(&self, bucket: &str, prefix: &str) -> Temperature {
        self.prefixes.temperature(bucket, prefix)
    }
}

/// Moves a bucket's (or a prefix's) temperature by one period of its read rates, over the
/// last minute and the last hour.
fn step(c: &HotColdConfig, h: &mut Heat, reads_per_s: f64, reads_per_s_1h: f64) {
    let heating = reads_per_s > c.hot_reads_per_s;
    match h.temp {
        Temperature::Hot => {
            h.exit_streak = if reads_per_s < c.hot_exit_reads_per_s {
                h.exit_streak + 1
            } else {
                0
            };
            if h.exit_streak >= c.hot_exit_after_periods {
                *h = Heat::default();
            }
        }
        Temperature::Cold => {
            if reads_per_s_1h > c.cold_exit_reads_per_s || heating {
                *h = Heat::default();
            }
        }
        Temperature::Normal => {}
    }
    if h.temp == Temperature::Normal {
        h.hot_streak = if heating { h.hot_streak + 1 } else { 0 };
        h.cold_streak = if reads_per_s_1h < c.cold_reads_per_s {
            h.cold_streak + 1
        } else {
            0
        };
        if h.hot_streak >= c.hot_after_periods {
            *h = Heat {
                temp: Temperature::Hot,
                ..Heat::default()
            };
        } else if h.cold_streak >= c.cold_after_periods {
            *h = Heat {
                temp: Temperature::Cold,
                ..Heat::default()
            };
        }
    }
}

/// What a hot or cold plan moves to and why.
struct Move {
    k: u8,
    m: u8,
    ids: Vec<String>,
    options: Vec<OptionScore>,
    trigger: String,
    reason: String,
    expected: Vec<Effect>,
}

/// For data coded `cur_k`+`cur_m` on `eligible`: today's cost per GiB-month, the options
/// weighed, and the cheapest wider code (larger k, parity kept) on the cheapest `admissible`
/// backends if it saves at least `min_gain` within the intent's cost ceiling.
#[allow(clippy::type_complexity)]
pub(crate) fn cheaper_wider(
    c: &HotColdConfig,
    world: &World,
    rules: &Rules,
    admissible: &[String],
    (cur_k, cur_m): (u8, u8),
    eligible: &[String],
) -> (f64, Vec<OptionScore>, Option<(u8, u8, Vec<String>, f64)>) {
    let current = cost_of(world, cur_k, cur_m, eligible);
    let m = rules.keep_parity(cur_m);
    let mut options = vec![OptionScore {
        option: format!("keep {}", describe(cur_k, cur_m, eligible)),
        score: Some(-current),
        note: format!("cost {current:.4} per GiB-month"),
    }];
    let mut best: Option<(u8, Vec<String>, f64)> = None;
    for k in cur_k.saturating_add(1)..=c.cold_max_k {
        let n = usize::from(k) + usize::from(m);
        let ids: Vec<String> = admissible.iter().take(n).cloned().collect();
        let name = describe(k, m, &ids);
        if let Some(why) = rules.code_refusal(k, m, admissible.len(), true) {
            options.push(OptionScore {
                option: name,
                score: None,
                note: why,
            });
            continue;
        }
        let cost = cost_of(world, k, m, &ids);
        let over_ceiling = rules.max_cost.filter(|max| cost > max + 1e-12);
        let no_gain = cost > current * (1.0 - c.min_gain) + 1e-12;
        let note = match (over_ceiling, no_gain) {
            (Some(max), _) => Some(format!("cost {cost:.4} exceeds max_cost_per_gib_month {max}")),
            (None, true) => Some(format!(
                "cost {cost:.4} saves less than {:.0} % of {current:.4}",
                c.min_gain * 100.0
            )),
            (None, false) => None,
        };
        if let Some(note) = note {
            options.push(OptionScore {
                option: name,
                score: None,
                note,
            });
            continue;
        }
        options.push(OptionScore {
            option: name,
            score: Some(-cost),
            note: format!("cost {cost:.4} per GiB-month, overhead {:.2}", overhead_of(k, m)),
        });
        if best.as_ref().is_none_or(|(_, _, bc)| cost < bc - 1e-12) {
            best = Some((k, ids, cost));
        }
    }
    (current, options, best.map(|(k, ids, cost)| (k, m, ids, cost)))
}

fn cold_move(c: &HotColdConfig, world: &World, b: &BucketView, rules: &Rules, admissible: &[String]) -> Option<Move> {
    let eligible = candidates::eligible(world, b);
    let (current, options, best) = cheaper_wider(c, world, rules, admissible, (b.policy.k, b.policy.m), &eligible);
    let (k, m, ids, cost) = best?;
    let trigger = format!(
        "reads {:.4}/s over the last hour, below the cold threshold {}/s for {} periods",
        b.reads_per_s_1h, c.cold_reads_per_s, c.cold_after_periods
    );
    let reason = format!(
        "Bucket {} is cold ({:.4} reads/s over the last hour, threshold {}/s): {} on the cheapest backends {} costs {cost:.4} per GiB-month against {current:.4}.",
        b.name,
        b.reads_per_s_1h,
        c.cold_reads_per_s,
        describe(k, m, &ids),
        ids.join(", ")
    );
    let expected = vec![Effect {
        metric: "cost_per_gib_month".into(),
        subject: Plan::bucket_target(&b.name),
        before: Some(current),
        after: Some(cost),
    }];
    Some(Move {
        k,
        m,
        ids,
        options,
        trigger,
        reason,
        expected,
    })
}

/// A backend's rank for a hot bucket: the forecast p95 of the next period when `models` has
/// one (a backend with too few GETs to judge keeps its measured key), else the last window's.
fn speed_key(world: &World, models: Option<&Models>, id: &str, min_samples: u64) -> f64 {
    let Some(b) = world.backend(id) else { return f64::MAX };
    let measured = p95_key(b);
    if b.get_samples < min_samples {
        return measured;
    }
    models.and_then(|m| m.forecast_p95(id, 1)).map_or(measured, |f| f.value)
}

/// A faster placement for data coded `cur_k`+`cur_m` on `eligible`: the same code on the
/// fastest `admissible` backends, if it cuts the worst p95 GET by `min_gain` and `min_gain_ms`.
/// Returns the code, the backends, the worst p95 before and after, and the options weighed.
pub(crate) struct Faster {
    /// Data shards.
    pub k: u8,
    /// Parity shards.
    pub m: u8,
    /// The fastest backends.
    pub ids: Vec<String>,
    /// Worst p95 GET now, ms.
    pub before: f64,
    /// Worst p95 GET on `ids`, ms.
    pub after: f64,
    /// The options weighed.
    pub options: Vec<OptionScore>,
}

pub(crate) fn faster(
    c: &HotColdConfig,
    world: &World,
    rules: &Rules,
    admissible: &[String],
    (cur_k, cur_m): (u8, u8),
    eligible: &[String],
    models: Option<&Models>,
) -> Option<Faster> {
    let eligible = eligible.to_vec();
    // The worst p95 of a set: measured, or in `ml` mode forecast for the next period.
    let worst = |ids: &[String]| match models {
        None => worst_p95(world, ids, c.min_samples),
        Some(_) => ids
            .iter()
            .filter(|id| world.backend(id).is_some_and(|b| b.get_samples >= c.min_samples))
            .map(|id| speed_key(world, models, id, c.min_samples))
            .filter(|v| *v < f64::MAX)
            .max_by(f64::total_cmp),
    };
    let before = worst(&eligible)?;
    let (k, m) = (cur_k, rules.keep_parity(cur_m));
    let mut fastest: Vec<&String> = admissible.iter().collect();
    fastest.sort_by(|x, y| {
        speed_key(world, models, x, c.min_samples).total_cmp(&speed_key(world, models, y, c.min_samples))
    });
    let n = usize::from(k) + usize::from(m);
    let ids: Vec<String> = fastest.into_iter().take(n).cloned().collect();
    let name = describe(k, m, &ids);
    let mut options = vec![OptionScore {
        option: format!("keep {}", describe(cur_k, cur_m, &eligible)),
        score: Some(-before),
        note: format!("worst p95 GET {before:.1} ms"),
    }];
    let refusal = rules.code_refusal(k, m, admissible.len(), true).or_else(|| {
        let cost = cost_of(world, k, m, &ids);
        rules
            .max_cost
            .filter(|max| cost > max + 1e-12)
            .map(|max| format!("cost {cost:.4} exceeds max_cost_per_gib_month {max}"))
    });
    if let Some(why) = refusal {
        options.push(OptionScore {
            option: name,
            score: None,
            note: why,
        });
        tracing::debug!(?options, "hot_cold: hot data, no faster placement meets the intent");
        return None;
    }
    let after = worst(&ids)?;
    let same: bool = ids.iter().collect::<BTreeSet<_>>() == eligible.iter().collect::<BTreeSet<_>>();
    if same || after > before * (1.0 - c.min_gain) || before - after < c.min_gain_ms {
        return None;
    }
    let ranked_by = if models.is_some() {
        let forecasts: Vec<String> = ids
            .iter()
            .map(|id| format!("{id} {:.1} ms", speed_key(world, models, id, c.min_samples)))
            .collect();
        format!(
            " (model latency_forecaster, p95 for the next period: {})",
            forecasts.join(", ")
        )
    } else {
        String::new()
    };
    options.push(OptionScore {
        option: name,
        score: Some(-after),
        note: format!("worst p95 GET {after:.1} ms{ranked_by}"),
    });
    Some(Faster {
        k,
        m,
        ids,
        before,
        after,
        options,
    })
}

fn hot_move(
    c: &HotColdConfig,
    world: &World,
    b: &BucketView,
    rules: &Rules,
    admissible: &[String],
    models: Option<&Models>,
) -> Option<Move> {
    let eligible = candidates::eligible(world, b);
    let Faster {
        k,
        m,
        ids,
        before,
        after,
        options,
    } = faster(c, world, rules, admissible, (b.policy.k, b.policy.m), &eligible, models)?;
    let trigger = format!(
        "reads {:.2}/s over the last minute, above the hot threshold {}/s for {} periods",
        b.reads_per_s, c.hot_reads_per_s, c.hot_after_periods
    );
    let reason = if models.is_some() {
        format!(
            "Bucket {} is hot ({:.2} reads/s, threshold {}/s): by the latency forecaster the fastest backends for the next period are {}, with a worst p95 GET of {after:.1} ms against {before:.1} ms for the current ones.",
            b.name,
            b.reads_per_s,
            c.hot_reads_per_s,
            ids.join(", ")
        )
    } else {
        format!(
            "Bucket {} is hot ({:.2} reads/s, threshold {}/s): the fastest backends {} have a worst p95 GET of {after:.1} ms against {before:.1} ms now.",
            b.name,
            b.reads_per_s,
            c.hot_reads_per_s,
            ids.join(", ")
        )
    };
    let expected = vec![Effect {
        metric: "worst_get_p95_ms".into(),
        subject: Plan::bucket_target(&b.name),
        before: Some(before),
        after: Some(after),
    }];
    Some(Move {
        k,
        m,
        ids,
        options,
        trigger,
        reason,
        expected,
    })
}

/// The period's plans; `models` only in `ml` mode.
fn evaluate(
    c: &HotColdConfig,
    shared: &SharedState,
    (heat, prefix_state): (&mut BTreeMap<String, Heat>, &mut prefixes::PrefixState),
    world: &World,
    models: Option<&Models>,
) -> Vec<Plan> {
    let mut guard = lock(shared);
    let mut plans = Vec::new();
    let managed: Vec<(&BucketView, &BucketIntent)> = managed(world).collect();
    heat.retain(|name, _| managed.iter().any(|(b, _)| &b.name == name));
    prefix_state.retain_buckets(&managed.iter().map(|(b, _)| b.name.as_str()).collect());
    guard
        .temperature
        .retain(|name, _| managed.iter().any(|(b, _)| &b.name == name));
    for (b, intent) in managed {
        let h = heat.entry(b.name.clone()).or_default();
        step(c, h, b.reads_per_s, b.reads_per_s_1h);
        guard.temperature.insert(b.name.clone(), h.temp);
        let rules = Rules::of(b, intent, c.min_samples);
        let admissible = candidates::spares(world, &rules, &guard.drained_ids(&b.name));
        let mv = match h.temp {
            Temperature::Normal => {
                // Neither as a whole: maybe some of its prefixes are.
                plans.extend(prefixes::plan(c, world, b, &rules, &admissible, prefix_state, models));
                None
            }
            Temperature::Cold => cold_move(c, world, b, &rules, &admissible),
            Temperature::Hot => hot_move(c, world, b, &rules, &admissible, models),
        };
        let Some(mv) = mv else { continue };
        let Some(command) = candidates::command(b, intent, mv.k, mv.m, &mv.ids, &mv.reason) else {
            continue;
        };
        let eligible = candidates::eligible(world, b);
        let mut seen = eligible.clone();
        seen.extend(mv.ids.iter().filter(|id| !eligible.contains(id)).cloned());
        let mut inputs = vec![
            bucket_input(&b.name, "reads_per_s", b.reads_per_s, "1m", Some(c.hot_reads_per_s)),
            bucket_input(&b.name, "reads_per_s", b.reads_per_s_1h, "1h", Some(c.cold_reads_per_s)),
        ];
        inputs.extend(backend_inputs(world, &seen, &rules));
        plans.push(candidates::plan(
            NAME,
            &b.name,
            command,
            Explanation {
                trigger: mv.trigger,
                inputs,
                options: mv.options,
                choice: describe(mv.k, mv.m, &mv.ids),
                reason: mv.reason,
                expected: mv.expected,
            },
            Priority::default(),
        ));
    }
    plans
}

#[async_trait]
impl Policy for HotCold {
    fn manifest(&self) -> PolicyManifest {
        PolicyManifest {
            name: NAME.to_owned(),
            core: false,
            metrics: vec![
                "reads_per_s".into(),
                "reads_per_s_1h".into(),
                "get_p95_ms".into(),
                "cost_per_gib_month".into(),
            ],
            every_periods: 1,
            mechanisms: vec![candidates::MECHANISM.into()],
            uses_ml: true,
        }
    }

    async fn analyze(&mut self, cx: &Ctx<'_>) -> Result<bool> {
        let (c, shared) = (&self.config, Arc::clone(&self.shared));
        let state = (&mut self.heat, &mut self.prefixes);
        Ok(self
            .period
            .analyze(cx.world, |w| evaluate(c, &shared, state, w, cx.models)))
    }

    async fn plan(&mut self, cx: &Ctx<'_>) -> Result<Vec<Plan>> {
        let (c, shared) = (&self.config, Arc::clone(&self.shared));
        let state = (&mut self.heat, &mut self.prefixes);
        Ok(self
            .period
            .plans(cx.world, |w| evaluate(c, &shared, state, w, cx.models)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policies::candidates::testkit::*;
    use crate::world::BackendView;
    use control_api::BackendsField;
    use placement::Redundancy;

    fn intent() -> BucketIntent {
        BucketIntent {
            redundancy: Some(Redundancy::High),
            ..BucketIntent::default()
        }
    }

    /// Twelve backends: b0..b3 at 0.05 and 80 ms, b4, b5 at 0.05 and 150 ms, b6..b9 cheap (0.01)
    /// and slow (200 ms), b10, b11 dear (0.08) and fast (10 ms).
    fn backends12() -> Vec<BackendView> {
        ids(12)
            .iter()
            .enumerate()
            .map(|(i, id)| match i {
                0..=3 => backend(id, 0.05, Some(80.0), 50),
                4 | 5 => backend(id, 0.05, Some(150.0), 50),
                6..=9 => backend(id, 0.01, Some(200.0), 50),
                _ => backend(id, 0.08, Some(10.0), 50),
            })
            .collect()
    }

    const SIX: [&str; 6] = ["b0", "b1", "b2", "b3", "b4", "b5"];

    fn at(t: i64, reads_1m: f64, reads_1h: f64, i: BucketIntent) -> World {
        let mut b = bucket("logs", 4, 2, &SIX, i);
        b.reads_per_s = reads_1m;
        b.reads_per_s_1h = reads_1h;
        world(t, backends12(), vec![b])
    }

    #[test]
    fn a_bucket_cold_for_n_periods_gets_a_wider_code_on_cheap_backends() {
        let mut hc = HotCold::new(HotColdConfig::default());
        for t in 1..6 {
            assert!(run(&mut hc, &at(t, 0.0, 0.005, intent())).is_empty(), "period {t}");
        }
        let plans = run(&mut hc, &at(6, 0.0, 0.005, intent()));
        assert_eq!(plans.len(), 1);
        let p = &plans[0];
        let req = request(p);
        let k = req.k.unwrap();
        assert!(k > 4, "wider: {k}");
        assert_eq!(req.m, None, "same m");
        let ids = plan_backends(p).unwrap();
        assert_eq!(ids.len(), usize::from(k) + 2);
        for cheap in ["b6", "b7", "b8", "b9"] {
            assert!(ids.contains(&cheap.to_owned()));
        }
        assert!(p.explanation.reason.contains("0.0050") && p.explanation.reason.contains("0.01/s"));
        assert!(p.explanation.options.len() > 2);
        assert_eq!(hc.temperature("logs"), Temperature::Cold);
        // Once applied (the same world reflects it), nothing more to do.
        let mut applied = at(7, 0.0, 0.005, intent());
        applied.buckets[0].policy.k = k;
        applied.buckets[0].policy.eligible = Some(ids.clone());
        assert!(run(&mut hc, &applied).is_empty());
    }

    #[test]
    fn at_the_cold_threshold_or_flapping_across_it_nothing_happens() {
        let mut hc = HotCold::new(HotColdConfig::default());
        for t in 1..20 {
            assert!(run(&mut hc, &at(t, 0.0, 0.01, intent())).is_empty(), "at the threshold");
        }
        let mut hc = HotCold::new(HotColdConfig::default());
        for t in 1..20 {
            let rate = if t % 5 == 0 { 0.015 } else { 0.005 };
            assert!(run(&mut hc, &at(t, 0.0, rate, intent())).is_empty(), "period {t}");
        }
    }

    #[test]
    fn a_hot_bucket_moves_to_the_fastest_backends_after_two_periods() {
        let mut hc = HotCold::new(HotColdConfig::default());
        assert!(run(&mut hc, &at(1, 9.0, 9.0, intent())).is_empty());
        let plans = run(&mut hc, &at(2, 9.0, 9.0, intent()));
        assert_eq!(plans.len(), 1);
        let ids = plan_backends(&plans[0]).unwrap();
        assert!(
            ids.contains(&"b10".to_owned()) && ids.contains(&"b11".to_owned()),
            "{ids:?}"
        );
        assert!(!ids.iter().any(|i| ["b6", "b7", "b8", "b9"].contains(&i.as_str())));
        let reason = &plans[0].explanation.reason;
        assert!(
            reason.contains("9.00 reads/s")
                && reason.contains("80.0 ms")
                && reason.contains("150.0 ms")
                && reason.contains("b10"),
            "{reason}"
        );
        // Cooling a little (above the exit threshold) keeps it hot; no flip back.
        for t in 3..10 {
            run(&mut hc, &at(t, 3.0, 3.0, intent()));
            assert_eq!(hc.temperature("logs"), Temperature::Hot);
        }
    }

    #[test]
    fn at_the_hot_threshold_or_flapping_across_it_nothing_happens() {
        let mut hc = HotCold::new(HotColdConfig::default());
        for t in 1..10 {
            assert!(run(&mut hc, &at(t, 5.0, 5.0, intent())).is_empty());
        }
        for t in 10..20 {
            let rate = if t % 2 == 0 { 6.0 } else { 4.0 };
            assert!(run(&mut hc, &at(t, rate, 5.0, intent())).is_empty(), "period {t}");
        }
    }

    #[test]
    fn never_breaks_gdpr_or_the_cost_ceiling() {
        let mut gdpr = intent();
        gdpr.gdpr = true;
        let w = |t| {
            let mut w = at(t, 0.0, 0.001, gdpr.clone());
            for b in &mut w.backends {
                b.labels.gdpr = !["b6", "b7", "b8", "b9"].contains(&b.id.as_str());
                if ["b10", "b11"].contains(&b.id.as_str()) {
                    b.labels.cost_per_gib_month = 0.03;
                }
            }
            w
        };
        let mut hc = HotCold::new(HotColdConfig::default());
        let mut plans = Vec::new();
        for t in 1..=6 {
            plans = run(&mut hc, &w(t));
        }
        // Eight GDPR backends: ec-6-2 over all of them is the cheapest wider code.
        let ids = plan_backends(&plans[0]).unwrap();
        assert_eq!(request(&plans[0]).k, Some(6));
        assert!(
            !ids.iter().any(|i| ["b6", "b7", "b8", "b9"].contains(&i.as_str())),
            "{ids:?}"
        );
        // Hot on fast, dear backends over a cost ceiling: no plan.
        let mut capped = intent();
        capped.max_cost_per_gib_month = Some(0.08);
        let mut hc = HotCold::new(HotColdConfig::default());
        for t in 1..=3 {
            assert!(run(&mut hc, &at(t, 9.0, 9.0, capped.clone())).is_empty());
        }
    }

    #[test]
    fn in_ml_mode_a_hot_bucket_picks_backends_by_their_forecast() {
        // b0 climbs 16 ms a period to 80 (next: 96); b4 falls 60 ms a period to 150 (next: 90).
        let at_ml = |t: i64, reads: f64| {
            let mut w = at(t * 10_000, reads, reads, intent());
            let i = t as f64;
            w.backends[0].get_p95_ms = Some(16.0 * i);
            w.backends[4].get_p95_ms = Some(450.0 - 60.0 * i);
            w
        };
        let (mut heuristic, mut ml) = (
            HotCold::new(HotColdConfig::default()),
            HotCold::new(HotColdConfig::default()),
        );
        let mut models = Models::default();
        let (mut h_plans, mut ml_plans) = (Vec::new(), Vec::new());
        for t in 1..=5 {
            // Hot from period 4, so the forecaster has five samples when the move is planned.
            let reads = if t >= 4 { 9.0 } else { 0.5 };
            h_plans = run(&mut heuristic, &at_ml(t, reads));
            ml_plans = run_ml(&mut ml, &at_ml(t, reads), &mut models);
        }
        assert_eq!((h_plans.len(), ml_plans.len()), (1, 1));
        let h_ids = plan_backends(&h_plans[0]).unwrap();
        let ml_ids = plan_backends(&ml_plans[0]).unwrap();
        assert!(
            h_ids.contains(&"b0".to_owned()) && !h_ids.contains(&"b4".to_owned()),
            "{h_ids:?}"
        );
        assert!(
            ml_ids.contains(&"b4".to_owned()) && !ml_ids.contains(&"b0".to_owned()),
            "{ml_ids:?}"
        );
        let e = &ml_plans[0].explanation;
        assert!(e.reason.contains("latency forecaster"), "{}", e.reason);
        assert!(
            e.options
                .iter()
                .any(|o| o.note.contains("latency_forecaster") && o.note.contains("b4 90.0 ms")),
            "{:?}",
            e.options
        );
        assert!(!h_plans[0].explanation.reason.contains("forecast"));
    }

    /// `logs` (normal as a whole) with prefixes `archive/` (1 GiB, never read), `live/`
    /// (1 GiB, `live` reads/s), `tiny/` (1 KiB, never read), `ops/` (an operator's rule), and
    /// the prefix rules `rules`.
    fn with_prefixes(t: i64, live: f64, rules: Vec<control_api::PrefixPolicyView>) -> World {
        let mut w = at(t, 1.0, 1.0, intent());
        let p = |prefix: &str, bytes: u64, reads: f64| crate::world::PrefixView {
            prefix: prefix.into(),
            objects: 10,
            bytes,
            reads_per_s: reads,
            reads_per_s_1h: reads,
        };
        w.buckets[0].prefixes = vec![
            p("archive/", 1 << 30, 0.0),
            p("live/", 1 << 30, live),
            p("ops/", 1 << 30, 1.0),
            p("tiny/", 1 << 10, 0.0),
        ];
        w.buckets[0].policy.prefixes = rules;
        w
    }

    fn rule(prefix: &str, k: u8, m: u8, ids: &[String]) -> control_api::PrefixPolicyView {
        control_api::PrefixPolicyView {
            prefix: prefix.into(),
            preset: crate::policies::candidates::preset(k, m),
            k,
            m,
            backends: ids.join(","),
            eligible: Some(ids.to_vec()),
        }
    }

    fn prefix_rules(plan: &Plan) -> Vec<control_api::PrefixPolicyRequest> {
        request(plan).prefixes.expect("a prefix-rules command")
    }

    #[test]
    fn hot_and_cold_prefixes_get_rules_of_their_own_and_lose_them_when_they_cool() {
        let mut hc = HotCold::new(HotColdConfig::default());
        let ops = rule("ops/", 4, 2, &ids(6));
        // live/ is hot after two periods: a rule on the fastest backends.
        assert!(run(&mut hc, &with_prefixes(1, 9.0, vec![ops.clone()])).is_empty());
        let plans = run(&mut hc, &with_prefixes(2, 9.0, vec![ops.clone()]));
        assert_eq!(plans.len(), 1);
        assert_eq!(plans[0].target, "bucket/logs");
        let rules = prefix_rules(&plans[0]);
        assert_eq!(
            rules.iter().map(|r| r.prefix.as_str()).collect::<Vec<_>>(),
            ["live/", "ops/"]
        );
        let live = &rules[0];
        assert_eq!((live.k, live.m), (Some(4), Some(2)));
        let Some(BackendsField::Ids(live_ids)) = &live.backends else {
            panic!("{live:?}")
        };
        assert!(
            live_ids.contains(&"b10".to_owned()) && live_ids.contains(&"b11".to_owned()),
            "{live_ids:?}"
        );
        assert_eq!(
            rules[1].preset.as_deref(),
            Some("ec-4-2"),
            "the operator's rule is kept as it is"
        );
        let e = &plans[0].explanation;
        assert!(e.reason.contains("prefix live/ (1024.0 MiB) is hot"), "{}", e.reason);
        assert!(e
            .inputs
            .iter()
            .any(|i| i.subject == "bucket/logs/prefix/live/" && i.metric == "reads_per_s"));
        assert_eq!(hc.prefix_temperature("logs", "live/"), Temperature::Hot);
        let mut applied = vec![ops.clone(), rule("live/", 4, 2, live_ids)];
        // archive/ turns cold at period 6: a wider code on the cheapest backends; tiny/ is too
        // small for a rule of its own, and the applied live/ rule is not proposed again.
        for t in 3..6 {
            assert!(
                run(&mut hc, &with_prefixes(t, 9.0, applied.clone())).is_empty(),
                "period {t}"
            );
        }
        let plans = run(&mut hc, &with_prefixes(6, 9.0, applied.clone()));
        assert_eq!(plans.len(), 1, "{plans:#?}");
        let rules = prefix_rules(&plans[0]);
        assert_eq!(
            rules.iter().map(|r| r.prefix.as_str()).collect::<Vec<_>>(),
            ["archive/", "live/", "ops/"]
        );
        let archive = &rules[0];
        assert!(archive.k.unwrap() > 4 && archive.m == Some(2), "{archive:?}");
        let Some(BackendsField::Ids(archive_ids)) = &archive.backends else {
            panic!("{archive:?}")
        };
        for cheap in ["b6", "b7", "b8", "b9"] {
            assert!(archive_ids.contains(&cheap.to_owned()), "{archive_ids:?}");
        }
        assert!(plans[0]
            .explanation
            .reason
            .contains("prefix archive/ (1024.0 MiB) is cold"));
        assert_eq!(hc.prefix_temperature("logs", "tiny/"), Temperature::Cold);
        applied.push(rule("archive/", archive.k.unwrap(), 2, archive_ids));
        // live/ cools off: after six quiet periods its rule goes; archive/ and ops/ stay.
        let mut removal = None;
        for t in 7..20 {
            let plans = run(&mut hc, &with_prefixes(t, 0.5, applied.clone()));
            if let Some(p) = plans.into_iter().next() {
                removal = Some((t, p));
                break;
            }
        }
        let (t, p) = removal.expect("the live/ rule removed");
        assert_eq!(t, 12, "six periods under the exit threshold");
        let rules = prefix_rules(&p);
        assert_eq!(
            rules.iter().map(|r| r.prefix.as_str()).collect::<Vec<_>>(),
            ["archive/", "ops/"]
        );
        assert!(
            p.explanation.reason.contains("prefix live/ is neither hot nor cold"),
            "{}",
            p.explanation.reason
        );
    }
}

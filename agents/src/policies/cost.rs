//! The cost optimiser: the cheapest code and backends that meet a bucket's intent, from the
//! backends' price labels, in the spirit of SkyStore's placement.
//!
//! A candidate is k data shards (1..=`max_k`) and the parity the stated redundancy needs (today's
//! parity when none is stated) on the k+m cheapest backends that meet GDPR, trust and the
//! latency and bandwidth targets; its storage cost per logical GiB-month is (k+m)/k times their
//! mean `cost_per_gib_month`. Egress counts too, when the bucket's size is known: a GET fetches
//! about the object's logical bytes from the backends holding it, so the bucket's bytes read in
//! the last hour, scaled to a month and divided by its size, times the backends' mean
//! `egress_per_gib`, is its egress per stored GiB-month. A read-heavy bucket on a cheap store
//! with dear egress thus costs what it really costs; backends are ranked for each k by that
//! total. `max_cost_per_gib_month` still bounds storage alone, as the intent defines it.
//! A candidate is proposed only if it saves at least `min_saving` (or today's policy is over the
//! intent's cost ceiling), so prices that differ by a little never move data.

use super::candidates::{
    self, backend_inputs, bucket_input, cost_of, describe, egress_of, lock, managed, overhead_of, read_ratio, Rules,
    SharedState, Temperature,
};
use crate::error::Result;
use crate::framework::{Ctx, Policy, PolicyManifest};
use crate::plan::{Explanation, Plan, Priority};
use crate::world::World;
use async_trait::async_trait;
use control_api::{Effect, MetricInput, OptionScore};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The policy's name.
pub const NAME: &str = "cost_optimiser";

/// Settings of the cost optimiser.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CostConfig {
    /// Run every this many agent periods.
    pub every_periods: u32,
    /// Smallest saving (share of today's cost) worth a migration.
    pub min_saving: f64,
    /// Widest code considered.
    pub max_k: u8,
    /// GETs a backend needs in the minute before its figures are judged.
    pub min_samples: u64,
}

impl Default for CostConfig {
    fn default() -> Self {
        Self {
            every_periods: 6,
            min_saving: 0.10,
            max_k: 8,
            min_samples: 5,
        }
    }
}

/// The cost optimiser policy.
pub struct CostOptimiser {
    config: CostConfig,
    shared: SharedState,
    period: candidates::Period,
}

impl CostOptimiser {
    /// An optimiser with its own state.
    #[must_use]
    pub fn new(config: CostConfig) -> Self {
        Self::with_shared(config, SharedState::default())
    }

    /// An optimiser that avoids the backends drained in `shared` and its hot buckets.
    #[must_use]
    pub fn with_shared(config: CostConfig, shared: SharedState) -> Self {
        Self {
            config,
            shared,
            period: candidates::Period::default(),
        }
    }
}

/// One candidate: k+m on ids, at cost (storage and egress per logical GiB-month).
struct Candidate {
    k: u8,
    m: u8,
    ids: Vec<String>,
    cost: f64,
}

/// Storage and egress per logical GiB-month of k+m on `ids`, for a bucket read `ratio` times
/// its size a month.
fn monthly(world: &World, k: u8, m: u8, ids: &[String], ratio: Option<f64>) -> (f64, f64) {
    let storage = cost_of(world, k, m, ids);
    let egress = ratio.map_or(0.0, |r| r * egress_of(world, ids));
    (storage, egress)
}

/// `cost 0.0230 per GiB-month` or, with egress, `cost 0.0530 per GiB-month (storage 0.0230,
/// egress 0.0300)`.
fn cost_note(storage: f64, egress: f64, ratio: Option<f64>) -> String {
    match ratio {
        Some(_) => format!(
            "cost {:.4} per GiB-month (storage {storage:.4}, egress {egress:.4})",
            storage + egress
        ),
        None => format!("cost {storage:.4} per GiB-month"),
    }
}

fn evaluate(config: &CostConfig, shared: &SharedState, world: &World) -> Vec<Plan> {
    let guard = lock(shared);
    let mut plans = Vec::new();
    for (bucket, intent) in managed(world) {
        if guard.temperature.get(&bucket.name) == Some(&Temperature::Hot) {
            continue;
        }
        let rules = Rules::of(bucket, intent, config.min_samples);
        let eligible = candidates::eligible(world, bucket);
        if eligible.is_empty() {
            continue;
        }
        let ratio = read_ratio(bucket);
        let (current_storage, current_egress) = monthly(world, bucket.policy.k, bucket.policy.m, &eligible, ratio);
        let current = current_storage + current_egress;
        if current <= 0.0 {
            continue;
        }
        let m = if rules.redundancy_stated {
            rules.min_parity
        } else {
            bucket.policy.m
        };
        let admissible = candidates::spares(world, &rules, &guard.drained_ids(&bucket.name));
        let mut options = vec![OptionScore {
            option: format!("keep {}", describe(bucket.policy.k, bucket.policy.m, &eligible)),
            score: Some(-current),
            note: format!("today's {}", cost_note(current_storage, current_egress, ratio)),
        }];
        let mut best: Option<Candidate> = None;
        for k in 1..=config.max_k.max(1) {
            let n = usize::from(k) + usize::from(m);
            // The cheapest for this code: storage at its overhead plus egress at the bucket's
            // read ratio (stable: equal ones keep the spares' order).
            let mut ranked: Vec<&String> = admissible.iter().collect();
            if let Some(r) = ratio {
                let score = |id: &String| {
                    world.backend(id).map_or(f64::MAX, |b| {
                        overhead_of(k, m) * b.labels.cost_per_gib_month + r * b.labels.egress_per_gib
                    })
                };
                ranked.sort_by(|a, b| score(a).total_cmp(&score(b)));
            }
            let ids: Vec<String> = ranked.into_iter().take(n).cloned().collect();
            let name = describe(k, m, &ids);
            if let Some(why) = rules.code_refusal(k, m, admissible.len(), true) {
                options.push(OptionScore {
                    option: name,
                    score: None,
                    note: format!("{why} (admissible backends: {})", admissible.len()),
                });
                continue;
            }
            let (storage, egress) = monthly(world, k, m, &ids, ratio);
            let cost = storage + egress;
            if let Some(max) = rules.max_cost.filter(|max| storage > max + 1e-12) {
                options.push(OptionScore {
                    option: name,
                    score: None,
                    note: format!("storage cost {storage:.4} per GiB-month exceeds max_cost_per_gib_month {max}"),
                });
                continue;
            }
            options.push(OptionScore {
                option: name,
                score: Some(-cost),
                note: format!(
                    "{}, overhead {:.2}",
                    cost_note(storage, egress, ratio),
                    overhead_of(k, m)
                ),
            });
            if best.as_ref().is_none_or(|b| cost < b.cost - 1e-12) {
                best = Some(Candidate { k, m, ids, cost });
            }
        }
        let Some(best) = best else { continue };
        let saving = 1.0 - best.cost / current;
        let over_ceiling = rules.max_cost.filter(|max| current_storage > max + 1e-12);
        if saving < config.min_saving - 1e-9 && over_ceiling.is_none() {
            continue;
        }
        if saving <= 0.0 {
            continue;
        }
        let choice = describe(best.k, best.m, &best.ids);
        let ceiling = rules
            .max_cost
            .map_or_else(String::new, |max| format!(", max_cost_per_gib_month {max}"));
        let egress_words = match ratio {
            Some(r) => format!(
                " storage and egress (read {r:.2}x its size a month over the last hour; egress {:.4} against {current_egress:.4})",
                monthly(world, best.k, best.m, &best.ids, ratio).1
            ),
            None => String::new(),
        };
        let reason = format!(
            "Bucket {}: {choice} costs {:.4} per GiB-month{egress_words} against {current:.4} now ({:.0} % less{ceiling}), \
             on backends {} that meet GDPR, trust, latency and bandwidth, with m = {} for the redundancy.",
            bucket.name,
            best.cost,
            saving * 100.0,
            best.ids.join(", "),
            best.m
        );
        let Some(command) = candidates::command(bucket, intent, best.k, best.m, &best.ids, &reason) else {
            continue;
        };
        let trigger = match over_ceiling {
            Some(max) => {
                format!("storage cost {current_storage:.4} per GiB-month exceeds max_cost_per_gib_month {max}")
            }
            None => format!(
                "a policy {:.0} % cheaper exists (threshold {:.0} %)",
                saving * 100.0,
                config.min_saving * 100.0
            ),
        };
        let mut seen = eligible.clone();
        seen.extend(best.ids.iter().filter(|id| !eligible.contains(id)).cloned());
        let mut inputs: Vec<MetricInput> = seen
            .iter()
            .filter_map(|id| world.backend(id))
            .map(|b| MetricInput {
                metric: "cost_per_gib_month".into(),
                subject: format!("backend/{}", b.id),
                value: Some(b.labels.cost_per_gib_month),
                window: "label".into(),
                target: None,
            })
            .collect();
        inputs.extend(backend_inputs(world, &seen, &rules));
        inputs.push(bucket_input(
            &bucket.name,
            "cost_per_gib_month",
            current_storage,
            "label",
            rules.max_cost,
        ));
        if let Some(r) = ratio {
            inputs.extend(seen.iter().filter_map(|id| world.backend(id)).map(|b| MetricInput {
                metric: "egress_per_gib".into(),
                subject: format!("backend/{}", b.id),
                value: Some(b.labels.egress_per_gib),
                window: "label".into(),
                target: None,
            }));
            inputs.push(bucket_input(
                &bucket.name,
                "read_bytes_per_s",
                bucket.read_bytes_per_s_1h,
                "1h",
                None,
            ));
            inputs.push(bucket_input(
                &bucket.name,
                "reads_per_month_per_stored_gib",
                r,
                "1h",
                None,
            ));
            inputs.push(bucket_input(
                &bucket.name,
                "egress_per_gib_month",
                current_egress,
                "1h",
                None,
            ));
        }
        inputs.push(bucket_input(
            &bucket.name,
            "reads_per_s",
            bucket.reads_per_s,
            "1m",
            None,
        ));
        let subject = Plan::bucket_target(&bucket.name);
        let best_storage = cost_of(world, best.k, best.m, &best.ids);
        let mut expected = vec![
            Effect {
                metric: "cost_per_gib_month".into(),
                subject: subject.clone(),
                before: Some(current_storage),
                after: Some(best_storage),
            },
            Effect {
                metric: "storage_overhead".into(),
                subject,
                before: Some(overhead_of(bucket.policy.k, bucket.policy.m)),
                after: Some(overhead_of(best.k, best.m)),
            },
        ];
        if ratio.is_some() {
            expected.push(Effect {
                metric: "total_cost_per_gib_month".into(),
                subject: Plan::bucket_target(&bucket.name),
                before: Some(current),
                after: Some(best.cost),
            });
        }
        let severity = over_ceiling.map_or(0.0, |max| if max > 0.0 { current / max - 1.0 } else { 0.0 });
        plans.push(candidates::plan(
            NAME,
            &bucket.name,
            command,
            Explanation {
                trigger,
                inputs,
                options,
                choice,
                reason,
                expected,
            },
            Priority { core: false, severity },
        ));
    }
    plans
}

#[async_trait]
impl Policy for CostOptimiser {
    fn manifest(&self) -> PolicyManifest {
        PolicyManifest {
            name: NAME.to_owned(),
            core: false,
            metrics: vec![
                "cost_per_gib_month".into(),
                "egress_per_gib".into(),
                "read_bytes_per_s_1h".into(),
                "bytes".into(),
                "get_p95_ms".into(),
                "bandwidth_mib_s".into(),
                "trust".into(),
            ],
            every_periods: self.config.every_periods.max(1),
            mechanisms: vec![candidates::MECHANISM.into()],
            uses_ml: false,
        }
    }

    async fn analyze(&mut self, cx: &Ctx<'_>) -> Result<bool> {
        let (config, shared) = (&self.config, Arc::clone(&self.shared));
        Ok(self.period.analyze(cx.world, |w| evaluate(config, &shared, w)))
    }

    async fn plan(&mut self, cx: &Ctx<'_>) -> Result<Vec<Plan>> {
        let (config, shared) = (&self.config, Arc::clone(&self.shared));
        Ok(self.period.plans(cx.world, |w| evaluate(config, &shared, w)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policies::candidates::testkit::*;
    use crate::world::BackendView;
    use control_api::BucketIntent;
    use placement::Redundancy;

    fn intent() -> BucketIntent {
        BucketIntent {
            redundancy: Some(Redundancy::High),
            max_latency: Some(100),
            ..BucketIntent::default()
        }
    }

    /// Ten backends: b0..b5 expensive (0.05), b6..b9 cheap (0.01); `photos` on ec-4-2 over b0..b5.
    fn backends10() -> Vec<BackendView> {
        ids(10)
            .iter()
            .enumerate()
            .map(|(i, id)| backend(id, if i < 6 { 0.05 } else { 0.01 }, Some(20.0), 50))
            .collect()
    }

    const SIX: [&str; 6] = ["b0", "b1", "b2", "b3", "b4", "b5"];

    #[test]
    fn the_cheapest_policy_meeting_the_intent_is_proposed_and_explained() {
        let mut opt = CostOptimiser::new(CostConfig::default());
        let w = world(1, backends10(), vec![bucket("photos", 4, 2, &SIX, intent())]);
        let plans = run(&mut opt, &w);
        assert_eq!(plans.len(), 1);
        let p = &plans[0];
        assert_eq!(
            (p.target.as_str(), p.mechanism.as_str()),
            ("bucket/photos", "storage_policy")
        );
        let req = request(p);
        // ec-8-2 on the four cheap + six dear: 1.25 * (4*0.01 + 6*0.05)/10 = 0.0425 vs
        // ec-2-2 on b6..b9: 2 * 0.01 = 0.02; ec-4-2 now: 1.5 * 0.05 = 0.075.
        assert_eq!((req.k, req.m), (Some(2), None));
        assert_eq!(plan_backends(p).unwrap(), ["b6", "b7", "b8", "b9"]);
        let e = &p.explanation;
        for needle in ["b6", "0.0200", "0.0750", "photos", "ec-2-2"] {
            assert!(e.reason.contains(needle), "reason lacks {needle}: {}", e.reason);
        }
        assert!(e.options.len() >= 9, "keep + eight k values: {:?}", e.options);
        assert!(e
            .options
            .iter()
            .any(|o| o.option.starts_with("ec-8-2") && o.score.is_some()));
        assert!(e
            .inputs
            .iter()
            .any(|i| i.subject == "backend/b6" && i.metric == "cost_per_gib_month" && i.value == Some(0.01)));
        assert_eq!(e.expected[0].before, Some(0.075));
        assert!((e.expected[0].after.unwrap() - 0.02).abs() < 1e-12);
        assert_eq!(opt.manifest().every_periods, 6);
    }

    /// ec-8-2 on b0..b9 at 0.05 (0.0625 per GiB-month); b10, b11 at `p` make ec-8-2 on them and
    /// eight of the others cost 1.25 * (2p + 0.40) / 10: p = 0.0275 saves 9 %, p = 0.025 10 %.
    fn twelve(p: f64, i: BucketIntent) -> World {
        let ten: Vec<String> = ids(10);
        let ten: Vec<&str> = ten.iter().map(String::as_str).collect();
        let backends = ids(12)
            .iter()
            .enumerate()
            .map(|(n, id)| backend(id, if n < 10 { 0.05 } else { p }, Some(20.0), 50))
            .collect();
        world(1, backends, vec![bucket("photos", 8, 2, &ten, i)])
    }

    #[test]
    fn savings_under_ten_percent_are_not_worth_a_migration() {
        assert!(run(
            &mut CostOptimiser::new(CostConfig::default()),
            &twelve(0.0275, intent())
        )
        .is_empty());
        let plans = run(&mut CostOptimiser::new(CostConfig::default()), &twelve(0.025, intent()));
        assert_eq!(plans.len(), 1, "a saving of exactly min_saving is taken");
        assert!(
            plans[0].explanation.reason.contains("(10 % less"),
            "{}",
            plans[0].explanation.reason
        );
    }

    #[test]
    fn over_the_cost_ceiling_it_moves_even_for_a_small_saving_and_never_above_it() {
        let mut i = intent();
        i.max_cost_per_gib_month = Some(0.062);
        let plans = run(
            &mut CostOptimiser::new(CostConfig::default()),
            &twelve(0.0275, i.clone()),
        );
        assert_eq!(plans.len(), 1, "9 % saving, but 0.0625 is over the 0.062 ceiling");
        assert!(plans[0].priority.severity > 0.0);
        assert!(plans[0]
            .explanation
            .trigger
            .contains("exceeds max_cost_per_gib_month 0.062"));
        i.max_cost_per_gib_month = Some(0.05);
        let plans = run(&mut CostOptimiser::new(CostConfig::default()), &twelve(0.0275, i));
        assert!(plans.is_empty(), "nothing meets 0.05");
    }

    #[test]
    fn overhead_ceiling_cost_ceiling_trust_gdpr_and_latency_are_respected() {
        let mut opt = CostOptimiser::new(CostConfig::default());
        let mut backends = backends10();
        backends[6].get_p95_ms = Some(300.0); // slow
        backends[7].trust = Some(0.1); // untrusted
        for b in &mut backends {
            b.labels.gdpr = b.id != "b8"; // b8 outside the EU
        }
        let mut i = intent();
        i.gdpr = true;
        i.min_trust = Some(0.5);
        i.max_overhead = Some(1.5);
        let w = world(1, backends, vec![bucket("photos", 4, 2, &SIX, i)]);
        let plans = run(&mut opt, &w);
        assert_eq!(plans.len(), 1);
        let ids = plan_backends(&plans[0]).unwrap();
        for bad in ["b6", "b7", "b8"] {
            assert!(!ids.contains(&bad.to_owned()), "{bad} in {ids:?}");
        }
        let req = request(&plans[0]);
        let (k, m) = (req.k.unwrap_or(4), req.m.unwrap_or(2));
        assert!(m >= 2 && f64::from(k + m) / f64::from(k) <= 1.5, "ec-{k}-{m}");
        assert_eq!(ids.len(), usize::from(k + m));
        // Only b9 is cheap and admissible: ec-4-2 over b9 + five dear = 1.5 * 0.0433 = 0.065.
        assert!(plans[0]
            .explanation
            .options
            .iter()
            .any(|o| o.score.is_none() && o.note.contains("max_overhead")));
    }

    #[test]
    fn hot_buckets_and_drained_backends_are_left_alone() {
        let shared = SharedState::default();
        let mut opt = CostOptimiser::with_shared(CostConfig::default(), shared.clone());
        lock(&shared).temperature.insert("photos".into(), Temperature::Hot);
        let w = world(1, backends10(), vec![bucket("photos", 4, 2, &SIX, intent())]);
        assert!(run(&mut opt, &w).is_empty());
        let mut g = lock(&shared);
        g.temperature.clear();
        g.drained.entry("photos".into()).or_default().insert(
            "b6".into(),
            candidates::Drained {
                by: "slo_keeper".into(),
                why: "slow".into(),
                since_ms: 0,
                ok_periods: 0,
                probe_ok_periods: 0,
            },
        );
        drop(g);
        let plans = run(
            &mut opt,
            &world(2, backends10(), vec![bucket("photos", 4, 2, &SIX, intent())]),
        );
        assert!(!plan_backends(&plans[0]).unwrap().contains(&"b6".to_owned()));
    }

    #[test]
    fn without_a_stated_redundancy_parity_is_never_lowered() {
        let w = world(
            1,
            backends10(),
            vec![bucket("photos", 4, 2, &SIX, BucketIntent::default())],
        );
        let plans = run(&mut CostOptimiser::new(CostConfig::default()), &w);
        assert_eq!(request(&plans[0]).m, None, "m stays 2");
    }

    /// backends10 with egress: b6..b9 (cheap to store) charge 0.09 per GiB read, b0..b5 none;
    /// `photos` holds 10 GiB and is read `ratio` times its size a month.
    fn with_egress(ratio: Option<f64>) -> World {
        let mut backends = backends10();
        for b in &mut backends[6..] {
            b.labels.egress_per_gib = 0.09;
        }
        let mut photos = bucket("photos", 4, 2, &SIX, intent());
        if let Some(r) = ratio {
            let size = 10u64 << 30;
            photos.bytes = Some(size);
            photos.read_bytes_per_s_1h = r * size as f64 / candidates::MONTH_SECS;
        }
        world(1, backends, vec![photos])
    }

    #[test]
    fn egress_counts_when_the_bucket_size_is_known() {
        // Unknown size: storage only, as before (ec-2-2 on the cheap four).
        let plans = run(&mut CostOptimiser::new(CostConfig::default()), &with_egress(None));
        assert_eq!(plan_backends(&plans[0]).unwrap(), ["b6", "b7", "b8", "b9"]);
        assert!(!plans[0].explanation.reason.contains("egress"));
        // Read its size once a month: 0.02 storage + 0.09 egress on the cheap four is dearer
        // than 0.075 where it is.
        let heavy = run(&mut CostOptimiser::new(CostConfig::default()), &with_egress(Some(1.0)));
        assert!(
            heavy.is_empty(),
            "{:?}",
            heavy.iter().map(|p| &p.explanation.reason).collect::<Vec<_>>()
        );
        // Read a tenth of it: 0.02 + 0.009 still beats 0.075.
        let light = run(&mut CostOptimiser::new(CostConfig::default()), &with_egress(Some(0.1)));
        assert_eq!(light.len(), 1);
        let p = &light[0];
        assert_eq!(plan_backends(p).unwrap(), ["b6", "b7", "b8", "b9"]);
        let e = &p.explanation;
        for needle in ["egress 0.0090", "0.0290", "0.0750", "read 0.10x its size"] {
            assert!(e.reason.contains(needle), "reason lacks {needle}: {}", e.reason);
        }
        assert!(e
            .inputs
            .iter()
            .any(|i| i.subject == "backend/b6" && i.metric == "egress_per_gib" && i.value == Some(0.09)));
        let total = e
            .expected
            .iter()
            .find(|x| x.metric == "total_cost_per_gib_month")
            .expect("a total-cost effect");
        assert!((total.after.unwrap() - 0.029).abs() < 1e-9, "{total:?}");
        assert!(
            (crate::scheduler::measure(&with_egress(Some(0.1)), "total_cost_per_gib_month", "bucket/photos").unwrap()
                - 0.075)
                .abs()
                < 1e-9
        );
    }
}

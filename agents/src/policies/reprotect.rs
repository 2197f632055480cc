//! Re-protection: a backend down (suspect) for longer than a threshold is taken out of the
//! buckets that use it, so the migrator rebuilds its shards elsewhere instead of waiting for it.
//!
//! Its plans are core: data with a lost shard outranks every latency or cost concern. It keeps
//! the code when the remaining backends (plus admissible replacements) hold it, narrows k
//! otherwise, and as a last resort exceeds the intent's overhead ceiling, saying so. The removed
//! backend is recorded as drained, so the SLO keeper readmits it once it is back and healthy.

use super::candidates::{self, backend_inputs, describe, fit, lock, managed, Drained, Rules, SharedState};
use crate::error::Result;
use crate::framework::{Ctx, Policy, PolicyManifest};
use crate::plan::{Explanation, Plan, Priority};
use crate::world::World;
use async_trait::async_trait;
use control_api::{Effect, MetricInput, OptionScore};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::Arc;

/// The policy's name.
pub const NAME: &str = "reprotect";

/// Settings of re-protection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReprotectConfig {
    /// How long a backend must have been down before its shards are rebuilt elsewhere, s.
    pub down_after_secs: u64,
    /// GETs a backend needs in the minute before its figures are judged (for replacements).
    pub min_samples: u64,
}

impl Default for ReprotectConfig {
    fn default() -> Self {
        Self {
            down_after_secs: 300,
            min_samples: 5,
        }
    }
}

/// The re-protection policy.
pub struct Reprotect {
    config: ReprotectConfig,
    shared: SharedState,
    period: candidates::Period,
}

impl Reprotect {
    /// A re-protection policy with its own state.
    #[must_use]
    pub fn new(config: ReprotectConfig) -> Self {
        Self::with_shared(config, SharedState::default())
    }

    /// A re-protection policy that records the backends it removes in `shared`.
    #[must_use]
    pub fn with_shared(config: ReprotectConfig, shared: SharedState) -> Self {
        Self {
            config,
            shared,
            period: candidates::Period::default(),
        }
    }
}

#[allow(clippy::cast_precision_loss)]
fn evaluate(config: &ReprotectConfig, shared: &SharedState, world: &World) -> Vec<Plan> {
    let threshold_ms = i64::try_from(config.down_after_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let mut guard = lock(shared);
    let mut plans = Vec::new();
    for (bucket, intent) in managed(world) {
        let eligible = candidates::eligible(world, bucket);
        let down: Vec<(String, i64)> = eligible
            .iter()
            .filter_map(|id| world.backend(id))
            .filter(|b| b.suspect)
            .filter_map(|b| b.down_since_ms.map(|since| (b.id.clone(), world.now_ms - since)))
            .filter(|(_, for_ms)| *for_ms >= threshold_ms)
            .collect();
        if down.is_empty() {
            continue;
        }
        let rules = Rules::of(bucket, intent, config.min_samples);
        let is_down = |id: &str| down.iter().any(|(d, _)| d == id);
        let mut options = vec![OptionScore {
            option: format!("keep {}", describe(bucket.policy.k, bucket.policy.m, &eligible)),
            score: None,
            note: format!(
                "waits for backend(s) {} with shards unprotected",
                down.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>().join(", ")
            ),
        }];
        let mut keep = Vec::new();
        for id in eligible.iter().filter(|id| !is_down(id)) {
            match world.backend(id).and_then(|b| rules.placement_refusal(b)) {
                Some(why) => options.push(OptionScore {
                    option: format!("keep backend {id}"),
                    score: None,
                    note: why,
                }),
                None => keep.push(id.clone()),
            }
        }
        let mut exclude: BTreeSet<String> = eligible.iter().cloned().collect();
        exclude.extend(guard.drained_ids(&bucket.name));
        let spares = candidates::spares(world, &rules, &exclude);
        let (chosen, fits) = fit(&rules, bucket.policy.k, bucket.policy.m, &keep, &spares, true);
        options.extend(fits);
        let Some(chosen) = chosen else {
            tracing::warn!(
                bucket = %bucket.name,
                down = ?down,
                options = ?options,
                "reprotect: no plan: too few backends remain for any code the redundancy allows"
            );
            continue;
        };
        let names: Vec<String> = down
            .iter()
            .map(|(id, ms)| format!("{id} (down {} s)", ms / 1000))
            .collect();
        let choice = describe(chosen.k, chosen.m, &chosen.ids);
        let mut reason = format!(
            "Bucket {}: backend(s) {} down longer than {} s, so their shards are rebuilt on {choice}",
            bucket.name,
            names.join(", "),
            config.down_after_secs
        );
        if !chosen.added.is_empty() {
            reason.push_str(&format!(", adding {}", chosen.added.join(", ")));
        }
        if chosen.over_overhead {
            reason.push_str(&format!(
                ", over max_overhead {} because protecting the data comes first",
                rules.max_overhead.unwrap_or_default()
            ));
        }
        reason.push('.');
        let Some(command) = candidates::command(bucket, intent, chosen.k, chosen.m, &chosen.ids, &reason) else {
            continue;
        };
        let held = guard.drained.entry(bucket.name.clone()).or_default();
        for (id, for_ms) in &down {
            held.entry(id.clone()).or_insert_with(|| Drained {
                by: NAME.to_owned(),
                why: format!("down {} s", for_ms / 1000),
                since_ms: world.now_ms,
                ok_periods: 0,
                probe_ok_periods: 0,
            });
        }
        let threshold = config.down_after_secs as f64;
        let mut inputs: Vec<MetricInput> = down
            .iter()
            .map(|(id, ms)| MetricInput {
                metric: "down_for_s".into(),
                subject: format!("backend/{id}"),
                value: Some(*ms as f64 / 1000.0),
                window: "now".into(),
                target: Some(threshold),
            })
            .collect();
        let mut seen = eligible.clone();
        seen.extend(chosen.added.iter().cloned());
        inputs.extend(backend_inputs(world, &seen, &rules));
        let worst_down = down.iter().map(|(_, ms)| *ms as f64 / 1000.0).fold(0.0, f64::max);
        let severity = if threshold > 0.0 {
            worst_down / threshold - 1.0
        } else {
            0.0
        };
        plans.push(candidates::plan(
            NAME,
            &bucket.name,
            command,
            Explanation {
                trigger: format!("backend(s) {} suspect longer than {threshold} s", names.join(", ")),
                inputs,
                options,
                choice,
                reason,
                expected: vec![Effect {
                    metric: "down_backends_in_set".into(),
                    subject: Plan::bucket_target(&bucket.name),
                    before: Some(down.len() as f64),
                    after: Some(0.0),
                }],
            },
            Priority {
                core: true,
                severity: severity.max(0.0),
            },
        ));
    }
    plans
}

#[async_trait]
impl Policy for Reprotect {
    fn manifest(&self) -> PolicyManifest {
        PolicyManifest {
            name: NAME.to_owned(),
            core: true,
            metrics: vec!["suspect".into(), "down_since_ms".into()],
            every_periods: 1,
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
    use crate::policies::slo::{SloConfig, SloKeeper};
    use control_api::BucketIntent;
    use placement::Redundancy;

    const NOW: i64 = 10_000_000;
    const SIX: [&str; 6] = ["b0", "b1", "b2", "b3", "b4", "b5"];

    fn intent() -> BucketIntent {
        BucketIntent {
            redundancy: Some(Redundancy::High),
            ..BucketIntent::default()
        }
    }

    /// `n` backends, b2 suspect since `down_s` seconds; `photos` on ec-4-2 over b0..b5.
    fn down_world(n: usize, down_s: Option<i64>, i: BucketIntent) -> World {
        let mut backends: Vec<_> = ids(n).iter().map(|id| backend(id, 0.02, Some(20.0), 50)).collect();
        backends[2].suspect = true;
        backends[2].down_since_ms = down_s.map(|s| NOW - s * 1000);
        world(NOW, backends, vec![bucket("photos", 4, 2, &SIX, i)])
    }

    #[test]
    fn a_backend_down_past_the_threshold_is_replaced_with_core_priority() {
        let mut r = Reprotect::new(ReprotectConfig::default());
        let plans = run(&mut r, &down_world(7, Some(600), intent()));
        assert_eq!(plans.len(), 1);
        let p = &plans[0];
        assert!(p.priority.core);
        assert!((p.priority.severity - 1.0).abs() < 1e-9);
        assert_eq!(p.target, "bucket/photos");
        assert_eq!(plan_backends(p).unwrap(), ["b0", "b1", "b3", "b4", "b5", "b6"]);
        assert_eq!((request(p).k, request(p).m), (None, None));
        let e = &p.explanation;
        assert!(
            e.reason.contains("b2 (down 600 s)") && e.reason.contains("300 s"),
            "{}",
            e.reason
        );
        let input = e.inputs.iter().find(|i| i.metric == "down_for_s").unwrap();
        assert_eq!((input.value, input.target), (Some(600.0), Some(300.0)));
        assert!(e
            .options
            .iter()
            .any(|o| o.score.is_none() && o.note.contains("unprotected")));
    }

    #[test]
    fn not_before_the_threshold_nor_without_a_down_time_nor_outside_the_set() {
        let mut r = Reprotect::new(ReprotectConfig::default());
        assert!(run(&mut r, &down_world(7, Some(299), intent())).is_empty());
        assert!(run(&mut r, &down_world(7, None, intent())).is_empty());
        let mut w = down_world(7, Some(600), intent());
        w.buckets[0].policy.eligible = Some(vec![
            "b0".into(),
            "b1".into(),
            "b3".into(),
            "b4".into(),
            "b5".into(),
            "b6".into(),
        ]);
        w.now_ms += 1;
        assert!(run(&mut r, &w).is_empty());
        let mut w = down_world(7, Some(600), intent());
        w.buckets[0].token = None;
        w.now_ms += 2;
        assert!(run(&mut r, &w).is_empty());
    }

    #[test]
    fn without_spares_k_narrows_keeping_the_parity_and_gdpr_holds() {
        let mut i = intent();
        i.gdpr = true;
        let mut w = down_world(7, Some(400), i);
        for b in &mut w.backends {
            b.labels.gdpr = b.id != "b6";
        }
        let plans = run(&mut Reprotect::new(ReprotectConfig::default()), &w);
        let req = request(&plans[0]);
        assert_eq!((req.k, req.m), (Some(3), None), "ec-3-2, not the non-GDPR spare");
        assert!(!plan_backends(&plans[0]).unwrap().contains(&"b6".to_owned()));
    }

    #[test]
    fn over_the_overhead_ceiling_only_as_a_last_resort_and_said_so() {
        let mut i = intent();
        i.max_overhead = Some(1.5);
        let plans = run(
            &mut Reprotect::new(ReprotectConfig::default()),
            &down_world(6, Some(400), i),
        );
        assert_eq!(request(&plans[0]).k, Some(3));
        assert!(plans[0].explanation.reason.contains("over max_overhead 1.5"));
    }

    #[test]
    fn the_slo_keeper_readmits_a_backend_reprotect_removed_once_it_is_back() {
        let shared = SharedState::default();
        let mut r = Reprotect::with_shared(ReprotectConfig::default(), shared.clone());
        let mut keeper = SloKeeper::with_shared(SloConfig::default(), shared);
        let mut i = intent();
        i.max_latency = Some(100);
        let w = down_world(7, Some(400), i.clone());
        assert_eq!(run(&mut r, &w).len(), 1);
        assert!(
            run(&mut keeper, &w).is_empty(),
            "the keeper does not drain a suspect backend twice"
        );
        assert!(keeper.drained("photos").contains("b2"));
        let moved = ["b0", "b1", "b3", "b4", "b5", "b6"];
        let mut plans = Vec::new();
        for t in 1..=3 {
            let backends: Vec<_> = ids(7).iter().map(|id| backend(id, 0.02, Some(20.0), 50)).collect();
            plans = run(
                &mut keeper,
                &world(NOW + t, backends, vec![bucket("photos", 4, 2, &moved, i.clone())]),
            );
        }
        assert_eq!(plans.len(), 1);
        assert!(plan_backends(&plans[0]).unwrap().contains(&"b2".to_owned()));
    }
}

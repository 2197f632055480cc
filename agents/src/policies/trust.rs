//! The trust keeper: drains from a bucket the backends whose trust fell below the bucket's
//! `min_trust`, and readmits them once their trust has stood clear of it for a while.
//!
//! Trust moves slowly on purpose (a Beta reputation with decay, `trust` crate), so one bad
//! period does not drain a backend; but a backend that corrupts shards sinks in a few periods.
//! Readmission asks for trust at least [`TrustConfig::margin`] above the minimum for
//! [`TrustConfig::readmit_after`] periods in a row: without the margin a backend hovering at
//! the minimum would flap in and out, each time costing a migration.
//!
//! Only backends with failure evidence against them are drained: a new backend starts with a
//! cautious score for want of evidence, which keeps it from receiving a bucket's data (the
//! spares' admission) but is no reason to move data off it.
//!
//! Its drains are its own: the SLO keeper does not readmit a backend drained for trust because
//! its latency is fine, and this keeper leaves the SLO keeper's drains alone.

use super::candidates::{self, backend_inputs, describe, fit, lock, managed, Drained, Rules, Shared, SharedState};
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
pub const NAME: &str = "trust_keeper";

/// Failure evidence a backend must carry before low trust drains it: a new backend's score
/// starts low for want of evidence, which must not empty every bucket at start.
const MIN_FAILURES: f64 = 1.0;

/// Settings of the trust keeper.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrustConfig {
    /// Consecutive periods a drained backend's trust must stand `margin` above the bucket's
    /// `min_trust` to return.
    pub readmit_after: u32,
    /// How far above `min_trust` a drained backend's trust must be to count as recovered.
    pub margin: f64,
}

impl Default for TrustConfig {
    fn default() -> Self {
        Self {
            readmit_after: 5,
            margin: 0.05,
        }
    }
}

/// The trust keeper policy.
pub struct TrustKeeper {
    config: TrustConfig,
    shared: SharedState,
    period: candidates::Period,
}

impl TrustKeeper {
    /// A keeper with its own state.
    #[must_use]
    pub fn new(config: TrustConfig) -> Self {
        Self::with_shared(config, SharedState::default())
    }

    /// A keeper that records drained backends in `shared`, where the other policies see them.
    #[must_use]
    pub fn with_shared(config: TrustConfig, shared: SharedState) -> Self {
        Self {
            config,
            shared,
            period: candidates::Period::default(),
        }
    }

    /// The backends it holds drained from `bucket`.
    #[must_use]
    pub fn drained(&self, bucket: &str) -> BTreeSet<String> {
        lock(&self.shared)
            .drained
            .get(bucket)
            .map(|d| {
                d.iter()
                    .filter(|(_, d)| d.by == NAME)
                    .map(|(id, _)| id.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn trust_text(t: Option<f64>) -> String {
    t.map_or_else(|| "unknown".to_owned(), |t| format!("{t:.2}"))
}

/// The period's plans.
fn evaluate(config: &TrustConfig, shared: &SharedState, world: &World) -> Vec<Plan> {
    let mut guard = lock(shared);
    let Shared { drained, strikes, .. } = &mut *guard;
    let mut plans = Vec::new();
    for (bucket, intent) in managed(world) {
        let Some(min) = intent.min_trust else { continue };
        let rules = Rules::of(bucket, intent, u64::MAX);
        let eligible = candidates::eligible(world, bucket);
        let violators: Vec<(String, f64)> = eligible
            .iter()
            .filter_map(|id| {
                let b = world.backend(id)?;
                let t = b.trust?;
                (t < min && b.trust_failures >= MIN_FAILURES).then(|| (id.clone(), t))
            })
            .collect();
        let held = drained.entry(bucket.name.clone()).or_default();
        // Its own drains that are back in the set (readmitted, or the plan never applied) and
        // backends no longer configured are forgotten.
        held.retain(|id, d| {
            d.by != NAME
                || (world.backend(id).is_some() && (!eligible.contains(id) || violators.iter().any(|(v, _)| v == id)))
        });
        let mut recovered: Vec<(String, f64)> = Vec::new();
        for (id, d) in held.iter_mut().filter(|(_, d)| d.by == NAME) {
            if eligible.contains(id) {
                continue;
            }
            let Some(b) = world.backend(id) else { continue };
            match b.trust {
                Some(t) if t >= min + config.margin && !b.suspect && rules.admission_refusal(b).is_none() => {
                    d.ok_periods += 1;
                    if d.ok_periods >= config.readmit_after {
                        recovered.push((id.clone(), t));
                    }
                }
                _ => d.ok_periods = 0,
            }
        }
        if violators.is_empty() && recovered.is_empty() {
            continue;
        }
        let m = rules.keep_parity(bucket.policy.m);
        let mut options = Vec::new();
        if !violators.is_empty() {
            options.push(OptionScore {
                option: format!("keep {}", describe(bucket.policy.k, bucket.policy.m, &eligible)),
                score: None,
                note: violators
                    .iter()
                    .map(|(id, t)| format!("backend {id} has trust {t:.2}, below min_trust {min:.2}"))
                    .collect::<Vec<_>>()
                    .join("; "),
            });
        }
        let mut keep: Vec<String> = eligible
            .iter()
            .filter(|id| !violators.iter().any(|(v, _)| v == *id))
            .cloned()
            .collect();
        keep.extend(recovered.iter().map(|(id, _)| id.clone()));
        let mut exclude: BTreeSet<String> = eligible.iter().cloned().collect();
        exclude.extend(held.keys().cloned());
        let spares = candidates::spares(world, &rules, &exclude);
        let (chosen, fits) = fit(&rules, bucket.policy.k, m, &keep, &spares, false);
        options.extend(fits);
        let Some(chosen) = chosen else {
            tracing::warn!(bucket = %bucket.name, violators = ?violators, "trust_keeper: no plan: no code meets the redundancy and overhead rules without the untrusted backends; keeping {}", describe(bucket.policy.k, bucket.policy.m, &eligible));
            continue;
        };
        let mut parts: Vec<String> = violators
            .iter()
            .map(|(id, t)| format!("drains backend {id} (trust {t:.2}, below min_trust {min:.2})"))
            .collect();
        parts.extend(recovered.iter().map(|(id, t)| {
            format!(
                "readmits backend {id} (trust {t:.2}, at least {:.2} for {} consecutive periods)",
                min + config.margin,
                config.readmit_after
            )
        }));
        if !chosen.added.is_empty() {
            parts.push(format!("adds backend(s) {}", chosen.added.join(", ")));
        }
        let choice = describe(chosen.k, chosen.m, &chosen.ids);
        let reason = format!("Bucket {}: {}; new policy {choice}.", bucket.name, parts.join("; "));
        let Some(command) = candidates::command(bucket, intent, chosen.k, chosen.m, &chosen.ids, &reason) else {
            continue;
        };
        for (id, t) in &violators {
            let d = held.entry(id.clone()).or_insert_with(|| {
                *strikes.entry((bucket.name.clone(), id.clone())).or_insert(0) += 1;
                Drained {
                    by: NAME.to_owned(),
                    why: format!("trust {t:.2} below min_trust {min:.2}"),
                    since_ms: world.now_ms,
                    ok_periods: 0,
                    probe_ok_periods: 0,
                }
            });
            d.ok_periods = 0;
        }
        let trigger = if violators.is_empty() {
            format!(
                "untrusted backend(s) {} recovered",
                recovered
                    .iter()
                    .map(|(id, _)| id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            violators
                .iter()
                .map(|(id, t)| format!("backend {id}: trust {t:.2} < min_trust {min:.2}"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let mut seen: Vec<String> = eligible.clone();
        seen.extend(recovered.iter().map(|(id, _)| id.clone()));
        seen.extend(chosen.added.iter().cloned());
        let mut inputs = backend_inputs(world, &seen, &rules);
        inputs.extend(seen.iter().filter_map(|id| {
            world.backend(id).and_then(|b| b.trust).map(|t| MetricInput {
                subject: format!("backend/{id}"),
                metric: "trust".into(),
                value: Some(t),
                window: "reputation".into(),
                target: Some(min),
            })
        }));
        let lowest = |ids: &[String]| {
            ids.iter()
                .filter_map(|id| world.backend(id).and_then(|b| b.trust))
                .reduce(f64::min)
        };
        let expected = vec![Effect {
            metric: "lowest_trust".into(),
            subject: Plan::bucket_target(&bucket.name),
            before: lowest(&eligible),
            after: lowest(&chosen.ids),
        }];
        // A backend below the bar may be corrupting data: it outranks latency and cost plans
        // on the same bucket, and the further below, the sooner.
        let severity = violators
            .iter()
            .map(|(_, t)| 1.0 + (min - t) / min.max(0.01) * 10.0)
            .fold(0.0, f64::max);
        tracing::info!(bucket = %bucket.name, drained = ?violators, readmitted = ?recovered, choice = %choice, lowest = %trust_text(lowest(&chosen.ids)), "trust_keeper plans");
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
impl Policy for TrustKeeper {
    fn manifest(&self) -> PolicyManifest {
        PolicyManifest {
            name: NAME.to_owned(),
            core: false,
            metrics: vec!["trust".into()],
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
    use control_api::BucketIntent;
    use placement::Redundancy;

    const ALL: [&str; 6] = ["b0", "b1", "b2", "b3", "b4", "b5"];

    fn intent() -> BucketIntent {
        BucketIntent {
            redundancy: Some(Redundancy::One),
            min_trust: Some(0.6),
            ..BucketIntent::default()
        }
    }

    /// Seven backends b0..b6 at trust 0.9; `photos` on ec-4-2 over `eligible`; b3's trust given.
    fn world_at(now: i64, eligible: &[&str], b3: f64) -> World {
        let mut backends: Vec<_> = ids(7).iter().map(|id| backend(id, 0.02, Some(20.0), 50)).collect();
        for b in &mut backends {
            b.trust = Some(0.9);
        }
        backends[3].trust = Some(b3);
        backends[3].trust_failures = 12.0;
        world(now, backends, vec![bucket("photos", 4, 2, eligible, intent())])
    }

    #[test]
    fn an_untrusted_backend_is_drained_for_a_spare_and_readmitted_after_recovering() {
        let mut keeper = TrustKeeper::new(TrustConfig::default());
        let plans = run(&mut keeper, &world_at(1, &ALL, 0.3));
        assert_eq!(plans.len(), 1, "{plans:?}");
        let p = &plans[0];
        assert_eq!(p.policy, NAME);
        let ids = plan_backends(p).unwrap();
        assert!(
            !ids.contains(&"b3".to_owned()) && ids.contains(&"b6".to_owned()),
            "{ids:?}"
        );
        assert!(
            p.explanation
                .reason
                .contains("drains backend b3 (trust 0.30, below min_trust 0.60)"),
            "{}",
            p.explanation.reason
        );
        assert!(p.priority.severity > 5.0, "{}", p.priority.severity);
        assert_eq!(keeper.drained("photos"), BTreeSet::from(["b3".to_owned()]));

        // Applied: b3 out, b6 in. Trust just at the minimum is not enough (margin), and a dip
        // restarts the count.
        let after: Vec<&str> = vec!["b0", "b1", "b2", "b4", "b5", "b6"];
        let mut t = 2;
        for trust in [0.62, 0.7, 0.7, 0.5, 0.7, 0.7, 0.7, 0.7] {
            assert!(
                run(&mut keeper, &world_at(t, &after, trust)).is_empty(),
                "trust {trust} at {t}"
            );
            t += 1;
        }
        let plans = run(&mut keeper, &world_at(t, &after, 0.7));
        assert_eq!(plans.len(), 1);
        assert!(plan_backends(&plans[0]).unwrap().contains(&"b3".to_owned()));
        assert!(
            plans[0].explanation.reason.contains("readmits backend b3"),
            "{}",
            plans[0].explanation.reason
        );
    }

    #[test]
    fn buckets_without_min_trust_or_with_trusted_backends_get_no_plan() {
        let mut keeper = TrustKeeper::new(TrustConfig::default());
        assert!(run(&mut keeper, &world_at(1, &ALL, 0.65)).is_empty());
        let mut w = world_at(2, &ALL, 0.1);
        w.buckets[0].intent.as_mut().unwrap().min_trust = None;
        assert!(run(&mut keeper, &w).is_empty());
        // Unknown trust (no trust service) is not a reason to drain, nor is low trust without
        // evidence against the backend (a new one).
        let mut w = world_at(3, &ALL, 0.1);
        w.backends[3].trust = None;
        assert!(run(&mut keeper, &w).is_empty());
        let mut w = world_at(4, &ALL, 0.1);
        w.backends[3].trust_failures = 0.0;
        assert!(run(&mut keeper, &w).is_empty());
    }
}

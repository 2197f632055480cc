//! The principal guard: throttles an S3 principal (access key) the anomaly detector classified
//! as attacking, and lifts the throttle once it has been calm for a while.
//!
//! Throttling, not blocking: the key may be a real client's whose secret leaked, or one whose
//! name an attacker borrows for forged requests; a throttle stops a flood or a scan from doing
//! harm while leaving the owner a trickle and the operator time to look (the decision says
//! why). The gateway answers the excess `503 SlowDown`.

use super::candidates;
use crate::error::Result;
use crate::framework::{Ctx, Policy, PolicyManifest};
use crate::mechanisms::principal::NAME as MECHANISM;
use crate::plan::{Explanation, Plan, Priority};
use crate::world::World;
use async_trait::async_trait;
use control_api::{Effect, MetricInput, OptionScore};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The policy's name.
pub const NAME: &str = "principal_guard";

/// How the reasons of the throttles this guard sets begin: it lifts only those.
pub const MARK: &str = "principal_guard: ";

/// Settings of the principal guard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrincipalGuardConfig {
    /// Requests per second a throttled principal keeps.
    pub requests_per_s: f64,
    /// Requests it may burst to.
    pub burst: u32,
    /// Seconds a throttle lasts at the gateway unless renewed (a safety net should the agents
    /// stop: a throttle never outlives its reason by much).
    pub ttl_s: u64,
    /// Calm periods (no open attack verdict) before the throttle is lifted.
    pub lift_after: u32,
}

impl Default for PrincipalGuardConfig {
    fn default() -> Self {
        Self {
            requests_per_s: 1.0,
            burst: 5,
            ttl_s: 3600,
            lift_after: 30,
        }
    }
}

/// The principal guard policy.
pub struct PrincipalGuard {
    config: PrincipalGuardConfig,
    period: candidates::Period,
}

impl PrincipalGuard {
    /// A guard with `config`.
    #[must_use]
    pub fn new(config: PrincipalGuardConfig) -> Self {
        Self {
            config,
            period: candidates::Period::default(),
        }
    }
}

/// The target key of principal `id`.
#[must_use]
pub fn principal_target(id: &str) -> String {
    format!("principal/{id}")
}

fn evaluate(config: &PrincipalGuardConfig, world: &World) -> Vec<Plan> {
    let mut plans = Vec::new();
    for p in &world.principals {
        let inputs = vec![MetricInput {
            metric: "trust".into(),
            subject: principal_target(&p.id),
            value: p.trust,
            window: "reputation".into(),
            target: None,
        }];
        let (command, trigger, reason, options, severity) = match (&p.attack, &p.throttled) {
            (Some(attack), None) => {
                let reason = format!(
                    "{MARK}Principal {}: classified as attacking ({attack}); throttled to {} request(s)/s (burst {}), the rest answered 503 SlowDown, for at most {} s unless renewed.",
                    p.id, config.requests_per_s, config.burst, config.ttl_s
                );
                let command = json!({"principal": p.id, "throttle": {
                    "requests_per_s": config.requests_per_s,
                    "burst": config.burst,
                    "reason": reason,
                    "ttl_s": config.ttl_s,
                }});
                let options = vec![
                    OptionScore {
                        option: "leave it".into(),
                        score: None,
                        note: "an attack goes on unchecked".into(),
                    },
                    OptionScore {
                        option: format!("throttle to {} request(s)/s", config.requests_per_s),
                        score: Some(1.0),
                        note: "stops a flood or a scan; the key's owner keeps a trickle".into(),
                    },
                ];
                (command, format!("anomaly: {attack}"), reason, options, 20.0)
            }
            // Only a throttle this guard set: an operator's stays until the operator lifts it.
            (None, Some(why)) if p.calm_periods >= config.lift_after && why.starts_with(MARK) => {
                let reason = format!(
                    "Principal {}: no attack seen for {} periods (trust {}); throttle lifted.",
                    p.id,
                    p.calm_periods,
                    p.trust.map_or_else(|| "unknown".to_owned(), |t| format!("{t:.2}"))
                );
                let options = vec![OptionScore {
                    option: "lift the throttle".into(),
                    score: Some(1.0),
                    note: format!("calm for {} periods", p.calm_periods),
                }];
                (
                    json!({"principal": p.id, "throttle": null}),
                    format!("principal {} calm for {} periods", p.id, p.calm_periods),
                    reason,
                    options,
                    1.0,
                )
            }
            _ => continue,
        };
        let throttling = !command["throttle"].is_null();
        let mut plan = Plan::new(NAME, MECHANISM, principal_target(&p.id), command);
        plan.priority = Priority { core: false, severity };
        plan.explanation = Explanation {
            trigger,
            inputs,
            options,
            choice: if throttling { "throttle" } else { "lift" }.into(),
            reason,
            expected: vec![Effect {
                metric: "throttled".into(),
                subject: principal_target(&p.id),
                before: Some(if throttling { 0.0 } else { 1.0 }),
                after: Some(if throttling { 1.0 } else { 0.0 }),
            }],
        };
        tracing::info!(principal = %p.id, throttling, "principal_guard plans");
        plans.push(plan);
    }
    plans
}

#[async_trait]
impl Policy for PrincipalGuard {
    fn manifest(&self) -> PolicyManifest {
        PolicyManifest {
            name: NAME.to_owned(),
            core: false,
            metrics: vec!["anomaly".into(), "trust".into()],
            every_periods: 1,
            mechanisms: vec![MECHANISM.into()],
            uses_ml: false,
        }
    }

    async fn analyze(&mut self, cx: &Ctx<'_>) -> Result<bool> {
        let config = &self.config;
        Ok(self.period.analyze(cx.world, |w| evaluate(config, w)))
    }

    async fn plan(&mut self, cx: &Ctx<'_>) -> Result<Vec<Plan>> {
        let config = &self.config;
        Ok(self.period.plans(cx.world, |w| evaluate(config, w)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policies::candidates::testkit::*;
    use crate::world::PrincipalView;

    /// A world of `p` alone, each one later than the last (a period evaluates once per world).
    fn with(p: PrincipalView) -> World {
        static NOW: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(1);
        let now = NOW.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut w = world(now, Vec::new(), Vec::new());
        w.principals.push(p);
        w
    }

    #[test]
    fn an_attacker_is_throttled_with_the_verdict_as_reason_and_released_when_calm() {
        let mut guard = PrincipalGuard::new(PrincipalGuardConfig::default());
        let attacker = PrincipalView {
            id: "AKIAFORGED".into(),
            trust: Some(0.1),
            attack: Some("auth_failures_per_s 40 against a baseline of 0".into()),
            calm_periods: 0,
            throttled: None,
        };
        let plans = run(&mut guard, &with(attacker.clone()));
        assert_eq!(plans.len(), 1);
        let p = &plans[0];
        assert_eq!(
            (p.mechanism.as_str(), p.target.as_str()),
            ("principal_throttle", "principal/AKIAFORGED")
        );
        assert_eq!(p.command["throttle"]["requests_per_s"], 1.0);
        assert!(
            p.explanation.reason.contains("auth_failures_per_s 40"),
            "{}",
            p.explanation.reason
        );
        // Throttled already: nothing more while the attack goes on, nor before it has been calm.
        let throttled = PrincipalView {
            throttled: Some(p.command["throttle"]["reason"].as_str().unwrap().to_owned()),
            ..attacker.clone()
        };
        assert!(run(&mut guard, &with(throttled.clone())).is_empty());
        let calm = PrincipalView {
            attack: None,
            calm_periods: 29,
            ..throttled
        };
        assert!(run(&mut guard, &with(calm.clone())).is_empty());
        let plans = run(
            &mut guard,
            &with(PrincipalView {
                calm_periods: 30,
                ..calm.clone()
            }),
        );
        assert_eq!(plans.len(), 1);
        assert!(plans[0].command["throttle"].is_null());
        // An operator's throttle is never lifted by the guard, however calm the principal.
        let operators = PrincipalView {
            calm_periods: 1000,
            throttled: Some("noisy batch job, ask ops".into()),
            ..calm
        };
        assert!(run(&mut guard, &with(operators)).is_empty());
        // A principal nobody accuses is left alone.
        assert!(run(
            &mut guard,
            &with(PrincipalView {
                id: "AKIAOK".into(),
                ..PrincipalView::default()
            })
        )
        .is_empty());
    }
}

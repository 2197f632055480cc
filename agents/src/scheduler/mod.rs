//! The plan scheduler: from the plans of one period to decisions. Unlike upstream's FIFO
//! scheduler, which locks per mechanism and lets a pending plan be overtaken, it
//! - locks per target (one bucket), so plans for different buckets never collide;
//! - ranks colliding plans by priority: core first, then SLO-violation severity, then newest;
//! - holds a target while its plan is pending (a migration running), until the mechanism
//!   reports it finished or a lease runs out; core plans pass the hold;
//! - damps flapping: a target changed less than `cooldown` ago is left alone, and a plan acts
//!   only once the same plan has come up `confirm_periods` runs in a row; a plan whose severity
//!   is at least `immediate_severity` (or a core one) passes both;
//! - in dry-run mode, explains and records without applying;
//! - a few periods after a change finished, measures the effects it expected and undoes a
//!   change that made things worse.
//!
//! Every plan becomes a [`Decision`] in the log, whatever became of it.

use crate::decisions::{from_plan, DecisionLog};
use crate::error::Result;
use crate::framework::{Applied, Mechanism};
use crate::plan::{Explanation, Plan, Priority};
use crate::world::{now_ms, World};
use control_api::{Decision, DecisionStatus, Effect};
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The scheduler's rules.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// A target changed less than this long ago is not changed again (core plans excepted).
    pub cooldown_secs: u64,
    /// How long a pending plan holds its target at most.
    pub lease_secs: u64,
    /// Periods in a row a plan must come up before it acts.
    pub confirm_periods: u32,
    /// Severity from which a plan acts at its first sighting.
    pub immediate_severity: f64,
    /// Periods after a change finished before its effect is measured.
    pub observe_after_periods: u32,
    /// An effect this many times worse than before (or, for a higher-is-better metric, this
    /// many times lower) rolls the change back.
    pub worse_factor: f64,
    /// Plan and explain, never apply.
    pub dry_run: bool,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            cooldown_secs: 120,
            lease_secs: 3600,
            confirm_periods: 2,
            immediate_severity: 1.0,
            observe_after_periods: 3,
            worse_factor: 1.25,
            dry_run: false,
        }
    }
}

/// The scheduler of one agent.
pub struct Scheduler {
    cfg: SchedulerConfig,
    log: DecisionLog,
    agent: String,
    period: u64,
    /// (target, policy, command) -> (periods in a row, the last period seen).
    sightings: HashMap<(String, String, String), (u32, u64)>,
}

/// Orders plans best first: core, then severity, then newest.
fn rank(a: &Plan, b: &Plan) -> Ordering {
    b.priority
        .core
        .cmp(&a.priority.core)
        .then(b.priority.severity.total_cmp(&a.priority.severity))
        .then(b.created_ms.cmp(&a.created_ms))
}

fn describe(p: &Priority) -> String {
    if p.core {
        "core".to_owned()
    } else {
        format!("severity {:.2}", p.severity)
    }
}

/// What makes two plans the same plan: the command without its `reason`, whose measured
/// figures change every period.
fn fingerprint(command: &serde_json::Value) -> String {
    let mut c = command.clone();
    if let Some(o) = c.as_object_mut() {
        o.remove("reason");
    }
    c.to_string()
}

/// Whether lower values of `metric` are better.
fn lower_is_better(metric: &str) -> bool {
    !(metric.contains("bandwidth") || metric.contains("mib_s"))
}

/// Measures `metric` of `subject` in `world`; the vocabulary policies use for effects.
#[must_use]
pub fn measure(world: &World, metric: &str, subject: &str) -> Option<f64> {
    if let Some(id) = subject.strip_prefix("backend/") {
        let b = world.backend(id)?;
        return match metric {
            "get_p95_ms" => b.get_p95_ms,
            "bandwidth_mib_s" => b.bandwidth_mib_s,
            "error_rate" => b.error_rate,
            _ => None,
        };
    }
    let bucket = world.bucket(subject.strip_prefix("bucket/")?)?;
    let eligible = bucket.policy.eligible.clone().unwrap_or_default();
    let over = |f: &dyn Fn(&crate::world::BackendView) -> Option<f64>| -> Vec<f64> {
        eligible
            .iter()
            .filter_map(|id| world.backend(id))
            .filter_map(f)
            .collect()
    };
    match metric {
        "worst_get_p95_ms" => over(&|b| b.get_p95_ms).into_iter().reduce(f64::max),
        "min_bandwidth_mib_s" => over(&|b| b.bandwidth_mib_s).into_iter().reduce(f64::min),
        "cost_per_gib_month" => {
            let costs = over(&|b| Some(b.labels.cost_per_gib_month));
            if costs.is_empty() {
                return None;
            }
            let p = &bucket.policy;
            let mean = costs.iter().sum::<f64>() / costs.len() as f64;
            Some(mean * f64::from(p.k + p.m) / f64::from(p.k))
        }
        "total_cost_per_gib_month" => {
            let storage = measure(world, "cost_per_gib_month", subject)?;
            let ratio = crate::policies::candidates::read_ratio(bucket)?;
            Some(storage + ratio * crate::policies::candidates::egress_of(world, &eligible))
        }
        "reads_per_s" => Some(bucket.reads_per_s),
        _ => None,
    }
}

impl Scheduler {
    /// A scheduler for `agent` writing to `log`.
    #[must_use]
    pub fn new(agent: &str, cfg: SchedulerConfig, log: DecisionLog) -> Self {
        Self {
            cfg,
            log,
            agent: agent.to_owned(),
            period: 0,
            sightings: HashMap::new(),
        }
    }

    /// Its rules.
    #[must_use]
    pub fn config(&self) -> &SchedulerConfig {
        &self.cfg
    }

    /// Turns dry-run on or off.
    pub fn set_dry_run(&mut self, on: bool) {
        self.cfg.dry_run = on;
    }

    /// The targets held by pending plans now, with the decision holding each.
    pub fn held(&self) -> Result<BTreeMap<String, Decision>> {
        let pending = self.log.with_status(DecisionStatus::Pending)?;
        Ok(pending.into_iter().map(|d| (d.target.clone(), d)).collect())
    }

    /// One period: settles pending plans, measures finished ones (rolling back what made things
    /// worse), then schedules `plans`. Returns the decisions written this period.
    pub async fn run_period(
        &mut self,
        mut plans: Vec<Plan>,
        world: &World,
        mechanisms: &BTreeMap<String, Arc<dyn Mechanism>>,
    ) -> Result<Vec<Decision>> {
        self.period += 1;
        let now = now_ms();
        let mut written = Vec::new();
        self.settle_pending(world, mechanisms, now, &mut written)?;
        plans.extend(self.check_effects(world, now, &mut written)?);
        let held = self.held()?;
        let mut by_target: BTreeMap<String, Vec<Plan>> = BTreeMap::new();
        for p in plans {
            by_target.entry(p.target.clone()).or_default().push(p);
        }
        let mut seen_now = Vec::new();
        for (target, mut group) in by_target {
            group.sort_by(rank);
            let mut group = group.into_iter();
            let Some(winner) = group.next() else { continue };
            for loser in group {
                let rank = if describe(&winner.priority) == describe(&loser.priority) {
                    format!("both {}; the newer wins", describe(&winner.priority))
                } else {
                    format!("{} outranks {}", describe(&winner.priority), describe(&loser.priority))
                };
                let why = format!(
                    "superseded by plan {} of {} for the same target ({rank})",
                    winner.uid, winner.policy
                );
                written.push(self.record(&loser, DecisionStatus::Superseded, why)?);
            }
            let key = (target.clone(), winner.policy.clone(), fingerprint(&winner.command));
            let count = match self.sightings.get(&key) {
                Some(&(n, last)) if last + u64::from(winner.cadence.max(1)) >= self.period => n + 1,
                _ => 1,
            };
            seen_now.push((key, count));
            let d = self.decide(winner, &held, mechanisms, count, now).await?;
            written.push(d);
        }
        // Forget what was not seen this period; a policy that runs every n periods keeps its
        // sightings for n periods (`cadence`), checked when it next comes up.
        let period = self.period;
        self.sightings.retain(|_, (_, last)| *last + 64 > period);
        self.sightings
            .extend(seen_now.into_iter().map(|(k, n)| (k, (n, period))));
        Ok(written)
    }

    async fn decide(
        &self,
        plan: Plan,
        held: &BTreeMap<String, Decision>,
        mechanisms: &BTreeMap<String, Arc<dyn Mechanism>>,
        sightings: u32,
        now: i64,
    ) -> Result<Decision> {
        let core = plan.priority.core;
        if let Some(h) = held.get(&plan.target).filter(|_| !core) {
            let why = format!(
                "target held by pending plan {} of {} (started {} s ago) until it finishes or its {} s lease ends",
                h.id,
                h.policy,
                (now - h.updated_ms).max(0) / 1000,
                self.cfg.lease_secs
            );
            return self.record(&plan, DecisionStatus::Superseded, why);
        }
        let severe = plan.priority.severity >= self.cfg.immediate_severity;
        if !core && plan.rollback_of.is_none() {
            // A severe violation is not made to wait out a cool-down started by an optimisation
            // (a hot bucket moved to fast backends must not keep a 3x-slow one for two minutes);
            // flapping stays bounded: what undoes a drain is a readmission, which is not severe.
            let last = if severe {
                None
            } else {
                self.log.last_change(&plan.target)?
            };
            if let Some(last) = last {
                let age_s = (now - last.updated_ms).max(0) / 1000;
                if u64::try_from(age_s).unwrap_or(0) < self.cfg.cooldown_secs {
                    let why = format!(
                        "cool-down: {} was last changed {age_s} s ago by decision {} ({}); no change for {} s after one",
                        plan.target, last.id, last.policy, self.cfg.cooldown_secs
                    );
                    return self.record(&plan, DecisionStatus::Dampened, why);
                }
            }
            if sightings < self.cfg.confirm_periods && plan.priority.severity < self.cfg.immediate_severity {
                let why = format!(
                    "hysteresis: seen {sightings} period(s) in a row, acts after {} (or at once from severity {:.2}; this one is {:.2})",
                    self.cfg.confirm_periods, self.cfg.immediate_severity, plan.priority.severity
                );
                return self.record(&plan, DecisionStatus::Dampened, why);
            }
        }
        if self.cfg.dry_run {
            return self.record(
                &plan,
                DecisionStatus::DryRun,
                "dry run: planned and explained, not applied",
            );
        }
        let Some(mech) = mechanisms.get(&plan.mechanism) else {
            let why = format!("no mechanism {:?} in agent {}", plan.mechanism, self.agent);
            return self.record(&plan, DecisionStatus::Failed, why);
        };
        let (status, why, epoch, undo) = match mech.apply(&plan).await {
            Ok(Applied::Done { epoch, undo }) => (DecisionStatus::Applied, "applied".to_owned(), epoch, undo),
            Ok(Applied::Pending { epoch, undo }) => (
                DecisionStatus::Pending,
                "applied; waiting for the migration".to_owned(),
                epoch,
                undo,
            ),
            Ok(Applied::Unchanged) => (
                DecisionStatus::Applied,
                "nothing to change: the system already is as planned".to_owned(),
                None,
                None,
            ),
            Err(e) => (DecisionStatus::Failed, e.to_string(), None, None),
        };
        let mut d = from_plan(&plan, &self.agent, status, why);
        d.epoch = epoch;
        d.undo = undo;
        if let Some(of) = &plan.rollback_of {
            if status == DecisionStatus::Applied || status == DecisionStatus::Pending {
                if let Ok(mut orig) = self.log.get(&of.to_string()) {
                    orig.status = DecisionStatus::RolledBack;
                    orig.status_reason = format!("rolled back by decision {}: {}", d.id, d.reason);
                    orig.updated_ms = now;
                    self.log.put(&orig)?;
                }
            }
        }
        self.log.put(&d)?;
        Ok(d)
    }

    fn record(&self, plan: &Plan, status: DecisionStatus, why: impl Into<String>) -> Result<Decision> {
        let d = from_plan(plan, &self.agent, status, why);
        self.log.put(&d)?;
        Ok(d)
    }

    fn settle_pending(
        &self,
        world: &World,
        mechanisms: &BTreeMap<String, Arc<dyn Mechanism>>,
        now: i64,
        written: &mut Vec<Decision>,
    ) -> Result<()> {
        for mut d in self.log.with_status(DecisionStatus::Pending)? {
            // Another agent's decision in a shared store (the node's beside the cluster's) is
            // that agent's to settle: this one has not its mechanism to judge it by.
            let Some(mechanism) = mechanisms.get(&d.mechanism) else {
                continue;
            };
            let done = mechanism.finished(&d, world);
            let age_s = u64::try_from((now - d.updated_ms).max(0) / 1000).unwrap_or(0);
            if done {
                d.status = DecisionStatus::Applied;
                d.status_reason = format!("finished after {age_s} s");
            } else if age_s > self.cfg.lease_secs {
                d.status = DecisionStatus::Failed;
                d.status_reason = format!(
                    "not finished after its {} s lease; target released (the change may still complete)",
                    self.cfg.lease_secs
                );
            } else {
                continue;
            }
            d.updated_ms = now;
            self.log.put(&d)?;
            written.push(d);
        }
        Ok(())
    }

    /// Measures the expected effects of changes that finished long enough ago; plans the undo
    /// of those that made things worse.
    fn check_effects(&self, world: &World, now: i64, written: &mut Vec<Decision>) -> Result<Vec<Plan>> {
        let wait_ms =
            i64::try_from(world.period_secs * u64::from(self.cfg.observe_after_periods) * 1000).unwrap_or(i64::MAX);
        let mut undo = Vec::new();
        let recent = self
            .log
            .list(None, Some(now - 24 * 3600 * 1000), 200)?
            .into_iter()
            .filter(|d| {
                d.status == DecisionStatus::Applied
                    && d.agent == self.agent
                    && d.observed.is_empty()
                    && !d.expected.is_empty()
                    && now - d.updated_ms >= wait_ms
            });
        for mut d in recent {
            let mut worse = Vec::new();
            d.observed = d
                .expected
                .iter()
                .map(|e| {
                    let after = measure(world, &e.metric, &e.subject);
                    if let (Some(before), Some(a)) = (e.before, after) {
                        let bad = if lower_is_better(&e.metric) {
                            a > before * self.cfg.worse_factor && a - before > 1.0
                        } else {
                            a * self.cfg.worse_factor < before
                        };
                        if bad {
                            worse.push(format!("{} of {} went from {before:.1} to {a:.1}", e.metric, e.subject));
                        }
                    }
                    Effect {
                        metric: e.metric.clone(),
                        subject: e.subject.clone(),
                        before: e.before,
                        after,
                    }
                })
                .collect();
            if worse.is_empty() || d.rollback_of.is_some() {
                self.log.put(&d)?;
                written.push(d);
                continue;
            }
            let why = worse.join("; ");
            d.status_reason = format!("made things worse: {why}");
            self.log.put(&d)?;
            if let Some(cmd) = d.undo.clone() {
                let mut p = Plan::new("rollback", &d.mechanism, d.target.clone(), cmd);
                p.bucket = d.bucket.clone();
                p.rollback_of = uuid::Uuid::parse_str(&d.id).ok();
                p.priority = Priority {
                    core: false,
                    severity: f64::MAX,
                };
                p.explanation = Explanation {
                    trigger: format!("decision {} made things worse", d.id),
                    inputs: Vec::new(),
                    options: Vec::new(),
                    choice: "restore the policy from before the decision".into(),
                    reason: format!("Rolling back decision {} ({}): {why}.", d.id, d.policy),
                    expected: d
                        .observed
                        .iter()
                        .map(|o| Effect {
                            metric: o.metric.clone(),
                            subject: o.subject.clone(),
                            before: o.after,
                            after: o.before,
                        })
                        .collect(),
                };
                undo.push(p);
            }
            written.push(d);
        }
        Ok(undo)
    }
}

#[cfg(test)]
mod tests;

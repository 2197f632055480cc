//! The read tuner: the node agent's own MAPE policy over its gateway's read settings.
//!
//! - **Hedging on.** When reads are not already ranked by latency with hedging, and one
//!   backend's p95 GET is at least `slow_factor` times the median p95 of the gateway's
//!   backends (and at least `min_excess_ms` above it), reads switch to the `latency` strategy
//!   with hedging: the slow backend is asked last and, when asked, hedged after its predicted
//!   p95, so clients stop waiting on it while the cluster agent drains it.
//! - **Hedging off.** When hedging is on, every measured backend has stayed within
//!   `calm_factor` of the median for `calm_periods` periods in a row, and the backends charge
//!   egress (an `egress_per_gib` label above 0), hedging is turned off: a hedged read fetches
//!   one shard more, paid as egress, for no latency gain. Without egress prices hedging costs
//!   nothing but a little load, and it is never turned off.
//!
//! Only backends with at least `min_samples` GETs in their window are measured; the median is
//! the lower middle value for an even count, so that with two backends one 3x slower than the
//! other is seen.

use crate::error::{Error, Result};
use crate::framework::{Ctx, Policy, PolicyManifest};
use crate::mechanisms::reads::NAME as MECHANISM;
use crate::plan::{Explanation, Plan, Priority};
use crate::world::{BackendView, World};
use async_trait::async_trait;
use control_api::{Effect, MetricInput, OptionScore, ReadSettings, ReadSettingsRequest};
use serde::{Deserialize, Serialize};

/// The policy's name.
pub const NAME: &str = "read_tuner";

/// Settings of the read tuner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReadTunerConfig {
    /// A backend whose p95 GET is at least this many times the median turns hedging on.
    pub slow_factor: f64,
    /// ... and only when it is at least this many ms above the median (sub-millisecond
    /// differences between local disks are noise, not a lagging backend).
    pub min_excess_ms: f64,
    /// Every backend within this many times the median counts as a calm period.
    pub calm_factor: f64,
    /// Calm periods in a row before hedging is turned off (only where egress is charged).
    pub calm_periods: u32,
    /// GETs a backend needs in its window to be measured.
    pub min_samples: u64,
}

impl Default for ReadTunerConfig {
    fn default() -> Self {
        Self {
            slow_factor: 3.0,
            min_excess_ms: 10.0,
            calm_factor: 1.5,
            calm_periods: 30,
            min_samples: 5,
        }
    }
}

/// The read tuner of one node agent.
pub struct ReadTuner {
    config: ReadTunerConfig,
    /// `node/<agent id>`: the subject of its node-level inputs and effects.
    node: String,
    /// Calm periods in a row, counted while hedging is on.
    calm: u32,
    /// The plan `analyze` found, handed out by `plan`.
    found: Option<Plan>,
}

/// The measured backends of a period, slowest first, and their median p95.
struct Measured<'a> {
    backends: Vec<(&'a BackendView, f64)>,
    median: f64,
}

impl<'a> Measured<'a> {
    fn of(world: &'a World, min_samples: u64) -> Option<Self> {
        let mut backends: Vec<(&BackendView, f64)> = world
            .backends
            .iter()
            .filter(|b| b.get_samples >= min_samples)
            .filter_map(|b| Some((b, b.get_p95_ms?)))
            .collect();
        if backends.len() < 2 {
            return None;
        }
        backends.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.id.cmp(&b.0.id)));
        // Slowest first: the lower middle value sits at index len / 2.
        let median = backends[backends.len() / 2].1;
        Some(Self { backends, median })
    }

    fn slowest(&self) -> (&'a BackendView, f64) {
        self.backends[0]
    }
}

fn ms(v: f64) -> String {
    if v >= 10.0 {
        format!("{v:.0} ms")
    } else {
        format!("{v:.1} ms")
    }
}

fn describe(s: ReadSettings) -> String {
    format!("{} {} hedging", s.strategy, if s.hedging { "with" } else { "without" })
}

impl ReadTuner {
    /// The tuner of node agent `agent`.
    #[must_use]
    pub fn new(agent: &str, config: ReadTunerConfig) -> Self {
        Self {
            config,
            node: format!("node/{agent}"),
            calm: 0,
            found: None,
        }
    }

    /// The lock key of its plans: `node/<agent id>/reads`.
    #[must_use]
    pub fn target(&self) -> String {
        format!("{}/reads", self.node)
    }

    /// Calm periods in a row so far.
    #[must_use]
    pub fn calm_periods(&self) -> u32 {
        self.calm
    }

    /// What the period calls for, given the settings in force; counts calm periods.
    fn judge(&mut self, world: &World, now: ReadSettings) -> Option<Plan> {
        let Some(m) = Measured::of(world, self.config.min_samples) else {
            // Too little to judge from is no evidence of calm.
            self.calm = 0;
            return None;
        };
        let (slow, p95) = m.slowest();
        let lagging = p95 >= self.config.slow_factor * m.median && p95 - m.median >= self.config.min_excess_ms;
        if lagging && now != ReadSettings::HEDGED {
            self.calm = 0;
            return Some(self.hedging_on(&m, slow, p95, now));
        }
        if !now.hedging {
            // Calm is counted only while hedging is on: it is what would turn it off.
            self.calm = 0;
            return None;
        }
        let calm = m.backends.iter().all(|(_, p)| *p <= self.config.calm_factor * m.median);
        self.calm = if calm { self.calm.saturating_add(1) } else { 0 };
        if self.calm < self.config.calm_periods {
            return None;
        }
        let priced: Vec<&BackendView> = world
            .backends
            .iter()
            .filter(|b| b.labels.egress_per_gib > 0.0)
            .collect();
        if priced.is_empty() {
            return None;
        }
        Some(self.hedging_off(world, &m, &priced, now))
    }

    fn inputs(&self, m: &Measured<'_>, factor: f64) -> Vec<MetricInput> {
        let mut inputs: Vec<MetricInput> = m
            .backends
            .iter()
            .flat_map(|(b, p95)| {
                let subject = format!("backend/{}", b.id);
                [
                    MetricInput {
                        metric: "get_p95_ms".into(),
                        subject: subject.clone(),
                        value: Some(*p95),
                        window: b.window().to_owned(),
                        target: Some(factor * m.median),
                    },
                    MetricInput {
                        metric: "get_samples".into(),
                        subject,
                        value: Some(b.get_samples as f64),
                        window: b.window().to_owned(),
                        target: Some(self.config.min_samples as f64),
                    },
                ]
            })
            .collect();
        inputs.push(MetricInput {
            metric: "median_get_p95_ms".into(),
            subject: self.node.clone(),
            value: Some(m.median),
            window: "per backend, as above".into(),
            target: None,
        });
        inputs
    }

    fn make_plan(&self, command: ReadSettingsRequest, severity: f64, explanation: Explanation) -> Plan {
        let mut plan = Plan::new(
            NAME,
            MECHANISM,
            self.target(),
            serde_json::to_value(command).unwrap_or_default(),
        );
        plan.priority = Priority { core: false, severity };
        plan.explanation = explanation;
        plan
    }

    fn hedging_on(&self, m: &Measured<'_>, slow: &BackendView, p95: f64, now: ReadSettings) -> Plan {
        let c = &self.config;
        let ratio = p95 / m.median.max(f64::MIN_POSITIVE);
        let (id, median) = (&slow.id, m.median);
        let mut inputs = self.inputs(m, c.slow_factor);
        inputs.push(MetricInput {
            metric: "hedging".into(),
            subject: self.node.clone(),
            value: Some(f64::from(u8::from(now.hedging))),
            window: "now".into(),
            target: None,
        });
        let options = vec![
            OptionScore {
                option: format!("keep {}", describe(now)),
                score: Some(-p95),
                note: format!("reads that need a shard on {id} wait its {}", ms(p95)),
            },
            OptionScore {
                option: "data-first with hedging".into(),
                score: Some(-p95),
                note: format!(
                    "data shards on {id} are still asked first and hedged only after its predicted p95 ({})",
                    ms(p95)
                ),
            },
            OptionScore {
                option: "latency without hedging".into(),
                score: Some(-median * c.slow_factor),
                note: format!("{id} is asked last, but a read that still needs it waits it out"),
            },
            OptionScore {
                option: "latency with hedging".into(),
                score: Some(-median),
                note: format!("{id} is asked last and hedged when it lags; reads take the median backend's time"),
            },
        ];
        let explanation = Explanation {
            trigger: format!(
                "backend {id}'s p95 GET {} is {ratio:.1}x the median {} of {} backends (threshold {:.1}x) while reads are {}",
                ms(p95),
                ms(median),
                m.backends.len(),
                c.slow_factor,
                describe(now)
            ),
            inputs,
            options,
            choice: "latency with hedging".into(),
            reason: format!(
                "Backend {id}'s p95 {} is {ratio:.1}x the median {}; hedging masks it while the cluster agent drains it, so reads switch to latency with hedging.",
                ms(p95),
                ms(median)
            ),
            expected: vec![Effect {
                metric: "read_wait_ms".into(),
                subject: self.node.clone(),
                before: Some(p95),
                after: Some(median),
            }],
        };
        let severity = (ratio / c.slow_factor - 1.0).max(0.0);
        self.make_plan(ReadSettings::HEDGED.into(), severity, explanation)
    }

    fn hedging_off(&self, world: &World, m: &Measured<'_>, priced: &[&BackendView], now: ReadSettings) -> Plan {
        let c = &self.config;
        let dearest = priced
            .iter()
            .max_by(|a, b| a.labels.egress_per_gib.total_cmp(&b.labels.egress_per_gib))
            .map_or_else(String::new, |b| {
                format!("${:.3}/GiB on {}", b.labels.egress_per_gib, b.id)
            });
        let (slowest, p95) = m.slowest();
        let mut inputs = self.inputs(m, c.calm_factor);
        inputs.push(MetricInput {
            metric: "calm_periods".into(),
            subject: self.node.clone(),
            value: Some(f64::from(self.calm)),
            window: format!("{} s periods", world.period_secs),
            target: Some(f64::from(c.calm_periods)),
        });
        inputs.extend(priced.iter().map(|b| MetricInput {
            metric: "egress_per_gib".into(),
            subject: format!("backend/{}", b.id),
            value: Some(b.labels.egress_per_gib),
            window: "label".into(),
            target: None,
        }));
        let options = vec![
            OptionScore {
                option: format!("keep {}", describe(now)),
                score: Some(0.0),
                note: format!("each hedged read fetches one more shard, paid as egress (up to {dearest}), for no latency gain now"),
            },
            OptionScore {
                option: format!("{} without hedging", now.strategy),
                score: Some(1.0),
                note: "no extra shard reads; a backend turning slow switches hedging back on within a period".into(),
            },
        ];
        let explanation = Explanation {
            trigger: format!(
                "for {} periods in a row every backend's p95 GET stayed within {:.1}x of the median (now {}; slowest {} at {}), and backends charge egress",
                self.calm,
                c.calm_factor,
                ms(m.median),
                slowest.id,
                ms(p95)
            ),
            inputs,
            options,
            choice: format!("{} without hedging", now.strategy),
            reason: format!(
                "For {} periods every backend stayed within {:.1}x of the median p95 {} (slowest {} at {}); hedged reads cost extra egress (up to {dearest}) for no latency gain, so hedging is turned off.",
                self.calm,
                c.calm_factor,
                ms(m.median),
                slowest.id,
                ms(p95)
            ),
            expected: vec![Effect {
                metric: "hedging".into(),
                subject: self.node.clone(),
                before: Some(1.0),
                after: Some(0.0),
            }],
        };
        let off = ReadSettingsRequest {
            strategy: None,
            hedging: Some(false),
        };
        self.make_plan(off, 0.0, explanation)
    }
}

/// The read settings in force, as the `read_settings` mechanism reports them.
async fn settings_now(cx: &Ctx<'_>) -> Result<ReadSettings> {
    let fail = |message: String| Error::Policy {
        policy: NAME.into(),
        message,
    };
    let mech = cx
        .mechanisms
        .get(MECHANISM)
        .ok_or_else(|| fail(format!("the agent has no {MECHANISM} mechanism")))?;
    let state = mech.get_state().await;
    serde_json::from_value(state.clone()).map_err(|e| fail(format!("the read settings {state} are unreadable: {e}")))
}

#[async_trait]
impl Policy for ReadTuner {
    fn manifest(&self) -> PolicyManifest {
        PolicyManifest {
            name: NAME.into(),
            core: false,
            metrics: vec!["get_p95_ms".into(), "get_samples".into(), "egress_per_gib".into()],
            every_periods: 1,
            mechanisms: vec![MECHANISM.into()],
            uses_ml: false,
        }
    }

    async fn analyze(&mut self, cx: &Ctx<'_>) -> Result<bool> {
        let now = settings_now(cx).await?;
        self.found = self.judge(cx.world, now);
        Ok(self.found.is_some())
    }

    async fn plan(&mut self, _: &Ctx<'_>) -> Result<Vec<Plan>> {
        Ok(self.found.take().into_iter().collect())
    }
}

#[cfg(test)]
mod tests;

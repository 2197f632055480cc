//! The `[agents]` table and its flags: whether `serve` runs the three agent tiers in-process,
//! how often they decide, and the scheduler's damping.

use anyhow::bail;
use clap::Args;
use serde::Deserialize;
use std::time::Duration;

/// Flags of the in-process agents.
#[derive(Args, Debug, Default)]
pub struct AgentsArgs {
    /// Run the node, cluster and continuum agents inside the gateway: on or off [default: on].
    #[arg(long, env = "MLSYSOPS_AGENTS")]
    agents: Option<String>,
    /// Seconds between the agents' MAPE periods [default: 10].
    #[arg(long, env = "MLSYSOPS_AGENT_PERIOD_SECS")]
    agent_period_secs: Option<f64>,
    /// Plan and explain, never apply [default: off].
    #[arg(long, env = "MLSYSOPS_AGENTS_DRY_RUN")]
    agents_dry_run: bool,
    /// Seconds after a change to a bucket during which no other change is made (core plans
    /// excepted) [default: 120].
    #[arg(long, env = "MLSYSOPS_AGENT_COOLDOWN_SECS")]
    agent_cooldown_secs: Option<f64>,
}

/// `[agents]` in the TOML file.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct AgentsFile {
    enabled: Option<bool>,
    period_secs: Option<f64>,
    dry_run: Option<bool>,
    mode: Option<String>,
    cooldown_secs: Option<f64>,
    confirm_periods: Option<u32>,
    immediate_severity: Option<f64>,
    lease_secs: Option<f64>,
    observe_after_periods: Option<u32>,
    /// `[agents.policies.<slo|cost|hotcold|reprotect>]`: the cluster's built-in policies.
    #[serde(default)]
    policies: agents::policies::BuiltinConfig,
    /// `[agents.node.reads]`: the node's read tuner.
    #[serde(default)]
    node: agents::node_policies::NodeConfig,
    /// `[agents.trust]`: the trust model's indexes, weights and decay.
    trust: Option<control_api::trust::TrustConfig>,
    /// `[agents.anomaly]`: the anomaly detector's thresholds.
    #[serde(default)]
    anomaly: anomaly::DetectorConfig,
}

/// The agents' settings.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// Whether `serve` runs them.
    pub enabled: bool,
    /// Their configuration.
    pub config: agents::run::AgentsConfig,
}

/// Flags over the file over the defaults; the store lives in `data_dir/agents`.
pub fn resolve(args: AgentsArgs, file: AgentsFile, data_dir: &std::path::Path) -> anyhow::Result<AgentSettings> {
    let enabled = match args.agents.as_deref() {
        None => file.enabled.unwrap_or(true),
        Some("on") => true,
        Some("off") => false,
        Some(other) => bail!("agents: {other:?} is neither on nor off"),
    };
    let secs = |v: Option<f64>, name: &str, default: f64| -> anyhow::Result<Duration> {
        super::interval(v.unwrap_or(default), &format!("agents.{name}"))
    };
    let period = secs(args.agent_period_secs.or(file.period_secs), "period_secs", 10.0)?;
    let d = agents::scheduler::SchedulerConfig::default();
    let cooldown = secs(
        args.agent_cooldown_secs.or(file.cooldown_secs),
        "cooldown_secs",
        d.cooldown_secs as f64,
    )?;
    let lease = secs(file.lease_secs, "lease_secs", d.lease_secs as f64)?;
    let mode = match file.mode.as_deref() {
        None | Some("heuristic") => control_api::AgentMode::Heuristic,
        Some("ml") => control_api::AgentMode::Ml,
        Some(other) => bail!("agents.mode: {other:?} is neither heuristic nor ml"),
    };
    let immediate = file.immediate_severity.unwrap_or(d.immediate_severity);
    if !immediate.is_finite() || immediate < 0.0 {
        bail!("agents.immediate_severity must be a number >= 0");
    }
    let dry_run = args.agents_dry_run || file.dry_run.unwrap_or(false);
    let trust = file.trust.unwrap_or_default();
    if let Err(e) = trust::model::validate(&trust) {
        bail!("agents.trust: {e}");
    }
    Ok(AgentSettings {
        enabled,
        config: agents::run::AgentsConfig {
            dir: data_dir.join("agents"),
            period,
            mode,
            dry_run,
            scheduler: agents::scheduler::SchedulerConfig {
                cooldown_secs: cooldown.as_secs(),
                lease_secs: lease.as_secs(),
                confirm_periods: file.confirm_periods.unwrap_or(d.confirm_periods).max(1),
                immediate_severity: immediate,
                observe_after_periods: file.observe_after_periods.unwrap_or(d.observe_after_periods),
                worse_factor: d.worse_factor,
                dry_run,
            },
            name: "local".into(),
            policies: file.policies,
            node_policies: file.node,
            trust,
            anomaly: file.anomaly,
        },
    })
}

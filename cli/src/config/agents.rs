//! The `[agents]` table and its flags: whether `serve` runs the three agent tiers in-process,
//! how often they decide, and the scheduler's damping.

use anyhow::bail;
use clap::Args;
use serde::Deserialize;
use std::net::SocketAddr;
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
    /// Where node agents of other machines join the in-process cluster agent (gRPC link).
    link_listen: Option<SocketAddr>,
    /// `[agents.kubernetes]`: the scheduler extender and the nodeAffinity controller.
    #[serde(default)]
    kubernetes: KubernetesFile,
}

/// `[agents.kubernetes]` in the TOML file.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct KubernetesFile {
    /// Where the kube-scheduler extender listens (unauthenticated; off when unset).
    extender_listen: Option<SocketAddr>,
    /// Run the nodeAffinity controller for `MLSysOpsApp` resources.
    #[serde(default)]
    controller: bool,
    /// The namespace the controller watches [default: `default`].
    namespace: Option<String>,
    /// Seconds between reconciles of an unchanged app [default: 60].
    requeue_secs: Option<f64>,
}

/// The agents' settings.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// Whether `serve` runs them.
    pub enabled: bool,
    /// Their configuration.
    pub config: agents::run::AgentsConfig,
    /// Where node agents of other machines join the in-process cluster agent.
    pub link_listen: Option<SocketAddr>,
    /// Where the kube-scheduler extender listens.
    pub extender_listen: Option<SocketAddr>,
    /// The nodeAffinity controller's settings, when it runs.
    pub controller: Option<agents::k8s::controller::ControllerConfig>,
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
    let k8s = file.kubernetes;
    let controller = if k8s.controller {
        let namespace = k8s.namespace.unwrap_or_else(|| "default".into());
        if namespace.is_empty() || namespace.len() > 63 {
            bail!("agents.kubernetes.namespace: {namespace:?} is not a namespace name");
        }
        Some(agents::k8s::controller::ControllerConfig {
            namespace,
            requeue: secs(k8s.requeue_secs, "kubernetes.requeue_secs", 60.0)?,
            ..agents::k8s::controller::ControllerConfig::default()
        })
    } else {
        None
    };
    let mut node = file.node;
    // The Kubernetes downward API gives a pod its node's name as an environment variable.
    if let Ok(machine) = std::env::var("MLSYSOPS_NODE_NAME") {
        if !machine.is_empty() {
            node.machine = Some(machine);
        }
    }
    Ok(AgentSettings {
        enabled,
        link_listen: file.link_listen,
        extender_listen: k8s.extender_listen,
        controller,
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
            node_policies: node,
            trust,
            anomaly: file.anomaly,
        },
    })
}

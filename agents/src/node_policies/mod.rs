//! The node agent's own policies: local knobs of its gateway, decided every period from the
//! gateway's backend telemetry (the cluster agent decides bucket policies; see
//! [`crate::policies`]).
//!
//! - [`reads::ReadTuner`]: hedging and read strategy, through the `read_settings` mechanism.

pub mod reads;

use crate::framework::Policy;
use serde::{Deserialize, Serialize};

/// Settings of every node policy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// The read tuner.
    pub reads: reads::ReadTunerConfig,
    /// The name of the machine the node agent reports for (a Kubernetes node's name, as
    /// kube-scheduler names it; default: the agents' name).
    pub machine: Option<String>,
    /// That machine's labels (`gdpr = "true"`), which containers are placed by.
    pub labels: std::collections::BTreeMap<String, String>,
}

/// The node policies of agent `agent`.
#[must_use]
pub fn builtin(agent: &str, config: NodeConfig) -> Vec<Box<dyn Policy>> {
    vec![Box::new(reads::ReadTuner::new(agent, config.reads))]
}

//! The agents' northbound API as types: bucket intents, deployed apps, the agents' status and
//! mode, and the decision log (every plan the agents made, applied or not, with its reasons).

use placement::Redundancy;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a bucket must achieve; the agents choose the code and backends that do it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketIntent {
    /// Backend losses the bucket must survive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redundancy: Option<Redundancy>,
    /// Highest acceptable p95 GET latency of a backend holding the bucket, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_latency: Option<u64>,
    /// Lowest acceptable download bandwidth of a backend holding the bucket, MiB/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_download_speed: Option<f64>,
    /// Data only on backends labelled `gdpr=true`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub gdpr: bool,
    /// Encrypt at rest (`None`: keep what the bucket has).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<bool>,
    /// Highest acceptable storage overhead, (k+m)/k (e.g. 1.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_overhead: Option<f64>,
    /// Highest acceptable storage cost per stored (logical) GiB and month, from the backends'
    /// `cost_per_gib_month` labels times the overhead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost_per_gib_month: Option<f64>,
    /// Lowest trust score (0..=1) a backend needs to hold the bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_trust: Option<f64>,
    /// The bucket's `policy_update_token`, which the agents present to change its policy;
    /// write-only: the API never shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_update_token: Option<String>,
    /// The cluster agents that may hold the bucket (an app's `cluster_placement.cluster_id`);
    /// empty: any. The continuum picks one and keeps it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<String>,
}

/// A bucket's intent as the API shows it (never the token).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntentView {
    /// Bucket.
    pub bucket: String,
    /// The intent, token removed.
    pub intent: BucketIntent,
    /// Where it came from: `operator` or `app:<name>`.
    pub source: String,
    /// Whether the agents hold a token for the bucket (may change its policy).
    pub has_token: bool,
    /// When it was last set, Unix ms.
    pub updated_ms: i64,
    /// Whether the cluster agent has configured the bucket for it: `pending`, `applied` or
    /// `failed`.
    pub state: String,
    /// Why configuring it failed, or why it waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The cluster agent that holds the bucket, once the continuum has chosen one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
}

/// A deployed application and the buckets its descriptor configures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppView {
    /// `MLSysOpsApp.name`.
    pub name: String,
    /// When it was deployed, Unix ms.
    pub deployed_ms: i64,
    /// Its components' names.
    pub components: Vec<String>,
    /// The buckets it declares, each with its intent.
    pub buckets: Vec<IntentView>,
}

/// `GET /api/v1/apps`: every deployed application.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppsView {
    /// The applications.
    pub apps: Vec<AppView>,
}

/// Whether policies decide from heuristics alone or may use models.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentMode {
    /// Thresholds and rules only.
    #[default]
    Heuristic,
    /// Policies may consult models (forecasts, clusters of backends, an external model).
    Ml,
}

/// `PUT /api/v1/agents/mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentModeRequest {
    /// The new mode.
    pub mode: AgentMode,
}

/// One agent as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentStatus {
    /// Agent id.
    pub id: String,
    /// `node`, `cluster` or `continuum`.
    pub tier: String,
    /// In this process, or a child connected over the link.
    pub remote: bool,
    /// Whether its loop ran (or it sent a heartbeat) within three periods.
    pub healthy: bool,
    /// Its period, seconds.
    pub period_secs: u64,
    /// When its last period ended (or its last heartbeat came), Unix ms.
    pub last_period_ms: Option<i64>,
    /// How long its last period took, ms.
    pub last_period_took_ms: Option<u64>,
    /// Plans applied but not finished (a migration running).
    pub plans_pending: Vec<String>,
    /// The error of its last period, if it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// `GET /api/v1/agents`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentsView {
    /// Heuristic or ML.
    pub mode: AgentMode,
    /// Plans are made and explained but never applied.
    pub dry_run: bool,
    /// Every agent this process knows of.
    pub agents: Vec<AgentStatus>,
}

/// What became of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionStatus {
    /// Applied; its mechanism is still working (a migration running).
    Pending,
    /// Applied and finished.
    Applied,
    /// Not applied: another plan for the same target won, or the target was held.
    Superseded,
    /// Not applied: the target changed too recently (cool-down) or the signal did not persist
    /// (hysteresis).
    Dampened,
    /// Made in dry-run mode: explained, never applied.
    DryRun,
    /// Its mechanism refused or failed it.
    Failed,
    /// Applied, then undone because it made things worse.
    RolledBack,
}

impl DecisionStatus {
    /// The snake_case name, as on the wire.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Applied => "applied",
            Self::Superseded => "superseded",
            Self::Dampened => "dampened",
            Self::DryRun => "dry_run",
            Self::Failed => "failed",
            Self::RolledBack => "rolled_back",
        }
    }
}

/// A measured value a policy decided from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricInput {
    /// What was measured (`get_p95_ms`, `bandwidth_mib_s`, `reads_per_s`, ...).
    pub metric: String,
    /// Of what (`backend/aws-us`, `bucket/photos`).
    pub subject: String,
    /// The value (`None`: no samples).
    pub value: Option<f64>,
    /// The window it was measured over (`1m`, `15m`).
    pub window: String,
    /// The target it was held against, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<f64>,
}

/// An alternative a policy weighed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptionScore {
    /// The option (`ec-4-2 on aws-eu,gcp-eu,...`).
    pub option: String,
    /// Its score (higher is better), or `None` when it was ruled out.
    pub score: Option<f64>,
    /// Why it scored so, or why it was ruled out.
    pub note: String,
}

/// What a decision is expected to change, and (later) what it did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Effect {
    /// The metric (`worst_get_p95_ms`, `cost_per_gib_month`).
    pub metric: String,
    /// Of what.
    pub subject: String,
    /// Its value when the decision was made.
    pub before: Option<f64>,
    /// The value expected, or observed.
    pub after: Option<f64>,
}

/// One plan of one policy, applied or not, with everything that explains it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Its id (the plan's uid).
    pub id: String,
    /// When it was made, Unix ms.
    pub at_ms: i64,
    /// The agent that made it.
    pub agent: String,
    /// The policy.
    pub policy: String,
    /// The mechanism that applies it.
    pub mechanism: String,
    /// The target it locks (`bucket/photos`).
    pub target: String,
    /// The bucket it concerns, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// What made the policy act.
    pub trigger: String,
    /// The measurements it read.
    pub inputs: Vec<MetricInput>,
    /// The alternatives weighed.
    pub options: Vec<OptionScore>,
    /// What was chosen.
    pub choice: String,
    /// The mechanism's command.
    pub command: Value,
    /// Why, in a sentence.
    pub reason: String,
    /// What it should change.
    pub expected: Vec<Effect>,
    /// What it changed, measured some periods after it finished.
    #[serde(default)]
    pub observed: Vec<Effect>,
    /// What became of it.
    pub status: DecisionStatus,
    /// Why it has that status (the winner for a superseded plan, the error of a failed one).
    #[serde(default)]
    pub status_reason: String,
    /// The decision this one undoes, for a rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_of: Option<String>,
    /// The command that undoes it (the policy before), for a rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo: Option<Value>,
    /// The storage-policy epoch it created, if it changed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    /// When its status last changed, Unix ms.
    pub updated_ms: i64,
}

/// `GET /api/v1/decisions`: newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionsPage {
    /// The decisions.
    pub decisions: Vec<Decision>,
}

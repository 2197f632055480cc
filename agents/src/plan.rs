//! A plan: what one policy wants one mechanism to do to one target, why, and how urgent it is.

use control_api::{Effect, MetricInput, OptionScore};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// How a plan ranks against others for the same target: core plans first, then by the
/// severity of the SLO violation they repair, then the newest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Priority {
    /// A core plan (re-protection of data at risk) beats every other.
    pub core: bool,
    /// How badly the target misses its objective: measured / target - 1 (0: no violation).
    pub severity: f64,
}

/// Why a plan was made, as the decision log shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    /// What made the policy act.
    pub trigger: String,
    /// The measurements it read.
    pub inputs: Vec<MetricInput>,
    /// The alternatives weighed.
    pub options: Vec<OptionScore>,
    /// What was chosen.
    pub choice: String,
    /// Why, in a sentence.
    pub reason: String,
    /// What it should change.
    pub expected: Vec<Effect>,
}

/// One plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Its id; also the decision's id.
    pub uid: Uuid,
    /// The policy that made it.
    pub policy: String,
    /// The mechanism that applies it.
    pub mechanism: String,
    /// The lock key (`bucket/photos`): one plan per target at a time.
    pub target: String,
    /// The bucket it concerns, if any.
    pub bucket: Option<String>,
    /// The mechanism's command.
    pub command: Value,
    /// Its rank among colliding plans.
    pub priority: Priority,
    /// When it was made, Unix ms.
    pub created_ms: i64,
    /// Why.
    pub explanation: Explanation,
    /// The decision this plan undoes, if it is a rollback.
    pub rollback_of: Option<Uuid>,
    /// Every how many periods its policy runs (set by the agent from the manifest): a plan
    /// seen at two runs in a row counts as persisting, whatever the runs' spacing.
    #[serde(default = "one")]
    pub cadence: u32,
}

fn one() -> u32 {
    1
}

impl Plan {
    /// A plan of `policy` for `mechanism` on `target`, made now.
    #[must_use]
    pub fn new(policy: &str, mechanism: &str, target: impl Into<String>, command: Value) -> Self {
        Self {
            uid: Uuid::now_v7(),
            policy: policy.to_owned(),
            mechanism: mechanism.to_owned(),
            target: target.into(),
            bucket: None,
            command,
            priority: Priority::default(),
            created_ms: crate::world::now_ms(),
            explanation: Explanation::default(),
            rollback_of: None,
            cadence: 1,
        }
    }

    /// The target key of bucket `name`.
    #[must_use]
    pub fn bucket_target(name: &str) -> String {
        format!("bucket/{name}")
    }
}

//! The two plugin seams of MLSysOps: a [`Policy`] (analyze, plan) and a [`Mechanism`] (apply,
//! get_state, get_options). A policy reads the period's [`World`]; a mechanism changes the
//! system and says whether the change finished or is still running.

use crate::error::Result;
use crate::ml::Models;
use crate::plan::Plan;
use crate::world::World;
use async_trait::async_trait;
use control_api::AgentMode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;

/// What a policy declares about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyManifest {
    /// Its name (unique within an agent).
    pub name: String,
    /// Its plans outrank every non-core plan (re-protection).
    pub core: bool,
    /// The metrics it reads (documentation and the API).
    pub metrics: Vec<String>,
    /// Run every this many agent periods (1: every period).
    pub every_periods: u32,
    /// The mechanisms its plans drive.
    pub mechanisms: Vec<String>,
    /// Whether it consults models in `ml` mode.
    pub uses_ml: bool,
}

/// What a policy gets each period.
pub struct Ctx<'a> {
    /// The snapshot of the storage.
    pub world: &'a World,
    /// Heuristic or ML.
    pub mode: AgentMode,
    /// The models, in `ml` mode.
    pub models: Option<&'a Models>,
    /// What each mechanism holds now, by name.
    pub mechanisms: &'a std::collections::BTreeMap<String, Arc<dyn Mechanism>>,
}

/// A MAPE policy: looks at the world, decides whether to act and what to do.
#[async_trait]
pub trait Policy: Send + Sync {
    /// Its name, mechanisms and metrics.
    fn manifest(&self) -> PolicyManifest;

    /// Whether anything needs doing this period (cheap; may keep state across periods).
    async fn analyze(&mut self, cx: &Ctx<'_>) -> Result<bool>;

    /// The plans that do it, each explained.
    async fn plan(&mut self, cx: &Ctx<'_>) -> Result<Vec<Plan>>;
}

/// The outcome of applying a command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Applied {
    /// Done; `epoch` when a storage policy changed.
    Done {
        /// The storage-policy epoch the change created.
        epoch: Option<u64>,
        /// The command that would undo it.
        undo: Option<Value>,
    },
    /// Accepted and still running (a migration); see [`Mechanism::progress`].
    Pending {
        /// The storage-policy epoch the change created.
        epoch: Option<u64>,
        /// The command that would undo it.
        undo: Option<Value>,
    },
    /// Nothing to do: the system already is as the command asks.
    Unchanged,
}

/// A MAPE mechanism: the one way the agents change something.
#[async_trait]
pub trait Mechanism: Send + Sync {
    /// Its name, as plans name it.
    fn name(&self) -> &str;

    /// Applies `plan.command`.
    async fn apply(&self, plan: &Plan) -> Result<Applied>;

    /// Whether a pending decision has finished, judged from the period's world (`true`: done).
    fn finished(&self, decision: &control_api::Decision, world: &World) -> bool;

    /// What it holds now (for the API and policies).
    async fn get_state(&self) -> Value;

    /// The values its commands may take.
    async fn get_options(&self) -> Value;
}

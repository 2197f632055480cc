//! The three tiers: a node agent per gateway, a cluster agent over the buckets of its
//! gateways, and the continuum agent behind the northbound API. Each runs its MAPE loop every
//! period; they talk over [`crate::link`] sessions (gRPC between processes, channels inside
//! one), the child always dialling the parent.

pub mod cluster;
pub mod continuum;
pub mod node;

use crate::framework::{Ctx, Policy};
use crate::link::{Envelope, Session};
use crate::plan::Plan;
use control_api::{AgentMode, AgentStatus};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What every agent of a process shares: the status of each agent it knows, the mode, dry-run.
#[derive(Clone, Default)]
pub struct Shared {
    agents: Arc<Mutex<BTreeMap<String, AgentStatus>>>,
    mode: Arc<AtomicU8>,
    dry_run: Arc<AtomicBool>,
}

impl Shared {
    /// Shared state in `mode`, dry-run or not.
    #[must_use]
    pub fn new(mode: AgentMode, dry_run: bool) -> Self {
        let s = Self::default();
        s.set_mode(mode);
        s.dry_run.store(dry_run, Ordering::Relaxed);
        s
    }

    /// Heuristic or ML.
    #[must_use]
    pub fn mode(&self) -> AgentMode {
        if self.mode.load(Ordering::Relaxed) == 1 {
            AgentMode::Ml
        } else {
            AgentMode::Heuristic
        }
    }

    /// Switches the mode; the next period uses it.
    pub fn set_mode(&self, mode: AgentMode) {
        self.mode.store(u8::from(mode == AgentMode::Ml), Ordering::Relaxed);
    }

    /// Whether plans are only explained.
    #[must_use]
    pub fn dry_run(&self) -> bool {
        self.dry_run.load(Ordering::Relaxed)
    }

    /// Records an agent's status.
    pub fn report(&self, status: AgentStatus) {
        if let Ok(mut a) = self.agents.lock() {
            a.insert(status.id.clone(), status);
        }
    }

    /// Every agent known, health judged now (a loop or heartbeat within three periods).
    #[must_use]
    pub fn agents(&self) -> Vec<AgentStatus> {
        let now = crate::world::now_ms();
        let agents: Vec<AgentStatus> = self
            .agents
            .lock()
            .map(|a| a.values().cloned().collect())
            .unwrap_or_default();
        agents
            .into_iter()
            .map(|mut a: AgentStatus| {
                let limit = i64::try_from(a.period_secs.max(1) * 3000).unwrap_or(i64::MAX);
                a.healthy = a.last_period_ms.is_some_and(|t| now - t <= limit) && a.last_error.is_none();
                a
            })
            .collect()
    }
}

/// Settings every tier shares.
#[derive(Debug, Clone)]
pub struct TierConfig {
    /// This agent's id.
    pub id: String,
    /// The MAPE period.
    pub period: Duration,
}

/// The status of a local agent after a period.
pub(crate) fn status(
    cfg: &TierConfig,
    tier: &str,
    took: Duration,
    pending: Vec<String>,
    error: Option<String>,
) -> AgentStatus {
    AgentStatus {
        id: cfg.id.clone(),
        tier: tier.to_owned(),
        remote: false,
        healthy: error.is_none(),
        period_secs: cfg.period.as_secs().max(1),
        last_period_ms: Some(crate::world::now_ms()),
        last_period_took_ms: Some(u64::try_from(took.as_millis()).unwrap_or(u64::MAX)),
        plans_pending: pending,
        last_error: error,
    }
}

/// The next envelope of `s`, or never without a session (a `select!` arm that waits for one).
pub(crate) async fn next_envelope(s: &mut Option<Session>) -> Option<Envelope> {
    match s {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// The plans of the `policies` due in `period` (each runs every `every_periods`), stamped with
/// their policy's name and cadence; a policy that fails is logged under `agent` and skipped,
/// so one broken policy never stops the others.
pub(crate) async fn plans_of(policies: &mut [Box<dyn Policy>], cx: &Ctx<'_>, period: u64, agent: &str) -> Vec<Plan> {
    let mut plans = Vec::new();
    for p in policies {
        let m = p.manifest();
        if !period.is_multiple_of(u64::from(m.every_periods.max(1))) {
            continue;
        }
        let acted = match p.analyze(cx).await {
            Ok(true) => p.plan(cx).await,
            Ok(false) => Ok(Vec::new()),
            Err(e) => Err(e),
        };
        match acted {
            Ok(mut ps) => {
                for plan in &mut ps {
                    plan.policy.clone_from(&m.name);
                    plan.cadence = m.every_periods.max(1);
                }
                plans.extend(ps);
            }
            Err(e) => tracing::warn!(%agent, policy = %m.name, error = %e, "policy failed this period"),
        }
    }
    plans
}

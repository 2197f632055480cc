//! The decision log: every plan any policy made, applied or not, with its trigger, inputs,
//! alternatives, choice, reason, expected and observed effect, and what became of it. Stored in
//! the agent's RocksDB under `decision/<uuid v7>`, so keys sort by time.

use crate::error::{Error, Result};
use crate::plan::Plan;
use crate::store::Store;
use crate::world::now_ms;
use control_api::{Decision, DecisionStatus};
use tokio::sync::broadcast;

const PREFIX: &str = "decision/";

/// Decisions recorded by this process, by (policy, status as recorded): what the
/// `mlsysops.agent.decisions` counter reports. Process-wide, as a metrics registry is: the
/// tiers of one process each keep a log over the same store.
static RECORDED: std::sync::Mutex<std::collections::BTreeMap<(String, &'static str), u64>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// Decisions recorded by this process since start, by policy and status.
#[must_use]
pub fn recorded() -> Vec<(String, &'static str, u64)> {
    RECORDED
        .lock()
        .map(|r| r.iter().map(|((p, s), n)| (p.clone(), *s, *n)).collect())
        .unwrap_or_default()
}

/// The log; clones share it.
#[derive(Clone)]
pub struct DecisionLog {
    store: Store,
    /// Every decision written (new or updated), for the link upward and `--follow`.
    changes: broadcast::Sender<Decision>,
}

/// The decision a plan becomes, with `status` (counted in [`recorded`]).
#[must_use]
pub fn from_plan(plan: &Plan, agent: &str, status: DecisionStatus, status_reason: impl Into<String>) -> Decision {
    if let Ok(mut r) = RECORDED.lock() {
        // Policies are named by the agents' own code and plugins: a handful of keys.
        *r.entry((plan.policy.clone(), status.as_str())).or_default() += 1;
    }
    let e = &plan.explanation;
    let now = now_ms();
    Decision {
        id: plan.uid.to_string(),
        at_ms: plan.created_ms,
        agent: agent.to_owned(),
        policy: plan.policy.clone(),
        mechanism: plan.mechanism.clone(),
        target: plan.target.clone(),
        bucket: plan.bucket.clone(),
        trigger: e.trigger.clone(),
        inputs: e.inputs.clone(),
        options: e.options.clone(),
        choice: e.choice.clone(),
        command: plan.command.clone(),
        reason: e.reason.clone(),
        expected: e.expected.clone(),
        observed: Vec::new(),
        status,
        status_reason: status_reason.into(),
        rollback_of: plan.rollback_of.map(|u| u.to_string()),
        undo: None,
        epoch: None,
        updated_ms: now,
    }
}

impl DecisionLog {
    /// The log in `store`.
    #[must_use]
    pub fn new(store: Store) -> Self {
        Self {
            store,
            changes: broadcast::channel(1024).0,
        }
    }

    /// Writes `d` (new, or replacing the record of the same id).
    pub fn put(&self, d: &Decision) -> Result<()> {
        self.store.put(&format!("{PREFIX}{}", d.id), d)?;
        tracing::info!(
            decision = %d.id, agent = %d.agent, policy = %d.policy, target = %d.target,
            status = d.status.as_str(), reason = %d.reason, status_reason = %d.status_reason,
            "agent decision"
        );
        let _ = self.changes.send(d.clone());
        Ok(())
    }

    /// Stores a copy of a decision another agent made (no log line, no broadcast).
    pub fn mirror(&self, d: &Decision) -> Result<()> {
        self.store.put(&format!("{PREFIX}{}", d.id), d)
    }

    /// The decision `id`.
    pub fn get(&self, id: &str) -> Result<Decision> {
        if uuid::Uuid::parse_str(id).is_err() {
            return Err(Error::Invalid(format!("decision id {id:?} is not a UUID")));
        }
        self.store
            .get(&format!("{PREFIX}{id}"))?
            .ok_or_else(|| Error::NotFound(format!("no decision {id}")))
    }

    /// Decisions newest first, of `bucket` if given, made at or after `since_ms`, at most `limit`.
    pub fn list(&self, bucket: Option<&str>, since_ms: Option<i64>, limit: usize) -> Result<Vec<Decision>> {
        let since = since_ms.unwrap_or(i64::MIN);
        // Newest first, so the scan may stop at the first one older than `since`; a filter
        // cannot stop a scan, hence the flag.
        let mut older = false;
        let out = self.store.scan(PREFIX, true, limit, |d: &Decision| {
            older |= d.at_ms < since;
            !older && bucket.is_none_or(|b| d.bucket.as_deref() == Some(b))
        })?;
        Ok(out)
    }

    /// Decisions with `status`, oldest first.
    pub fn with_status(&self, status: DecisionStatus) -> Result<Vec<Decision>> {
        self.store
            .scan(PREFIX, false, usize::MAX, |d: &Decision| d.status == status)
    }

    /// The newest decision on `target` that changed something (applied, pending or rolled back).
    pub fn last_change(&self, target: &str) -> Result<Option<Decision>> {
        let found = self.store.scan(PREFIX, true, 1, |d: &Decision| {
            d.target == target
                && matches!(
                    d.status,
                    DecisionStatus::Applied | DecisionStatus::Pending | DecisionStatus::RolledBack
                )
        })?;
        Ok(found.into_iter().next())
    }

    /// Decisions as they are written.
    #[must_use]
    pub fn subscribe(&self) -> broadcast::Receiver<Decision> {
        self.changes.subscribe()
    }
}

//! `storage_policy`: changes a bucket's code, backends or encryption through the gateway's
//! `PUT /api/v1/buckets/{b}/storage-policy`, as an automatic change carrying the bucket's
//! policy-update token (the gateway refuses agents on buckets without one). Pending while the
//! migration to the new epoch runs.

use crate::error::{Error, Result};
use crate::framework::{Applied, Mechanism};
use crate::gateway::Gateway;
use crate::intents::Intents;
use crate::plan::Plan;
use crate::world::World;
use async_trait::async_trait;
use control_api::{BackendsField, Decision, MigrationState, StoragePolicyRequest};
use serde_json::{json, Value};

/// The mechanism's name, as plans give it.
pub const NAME: &str = "storage_policy";

/// Changes storage policies of one gateway.
pub struct StoragePolicyMechanism {
    gateway: Gateway,
    intents: Intents,
    agent: String,
}

impl StoragePolicyMechanism {
    /// Over `gateway`, with the tokens of `intents`, signing changes as `agent`.
    #[must_use]
    pub fn new(gateway: Gateway, intents: Intents, agent: &str) -> Self {
        Self {
            gateway,
            intents,
            agent: agent.to_owned(),
        }
    }
}

fn fail(message: impl Into<String>) -> Error {
    Error::Mechanism {
        mechanism: NAME.into(),
        message: message.into(),
    }
}

#[async_trait]
impl Mechanism for StoragePolicyMechanism {
    fn name(&self) -> &str {
        NAME
    }

    async fn apply(&self, plan: &Plan) -> Result<Applied> {
        let bucket = plan.bucket.as_deref().ok_or_else(|| fail("the plan names no bucket"))?;
        let mut req: StoragePolicyRequest = serde_json::from_value(plan.command.clone())
            .map_err(|e| fail(format!("command for {bucket} is not a storage-policy request: {e}")))?;
        let token = self
            .intents
            .get(bucket)?
            .and_then(|i| i.intent.policy_update_token)
            .ok_or_else(|| fail(format!("no policy_update_token known for bucket {bucket}")))?;
        let before = self.gateway.storage_policy(bucket).await?;
        req.automatic = true;
        req.policy_update_token = Some(token);
        req.changed_by = Some(format!("{}:{}", self.agent, plan.policy));
        // The decision id in the reason links the bucket's policy history to the decision log.
        let why = req.reason.take().unwrap_or_else(|| plan.explanation.reason.clone());
        req.reason = Some(format!("{why} (decision {})", plan.uid));
        let changed = self.gateway.set_storage_policy(bucket, &req).await?;
        if !changed.changed {
            return Ok(Applied::Unchanged);
        }
        let prefixes: Vec<control_api::PrefixPolicyRequest> = before.prefixes.iter().map(Into::into).collect();
        let undo = json!({
            "k": before.k,
            "m": before.m,
            "backends": if before.backends.is_empty() {
                BackendsField::Selector(String::new())
            } else {
                BackendsField::from_text(&before.backends)
            },
            "encryption": before.encryption,
            "prefixes": prefixes,
            "reason": format!("rollback of decision {}", plan.uid),
        });
        let epoch = Some(changed.policy.epoch);
        Ok(match changed.migration.state {
            MigrationState::Done | MigrationState::Idle => Applied::Done {
                epoch,
                undo: Some(undo),
            },
            MigrationState::Running | MigrationState::Paused => Applied::Pending {
                epoch,
                undo: Some(undo),
            },
        })
    }

    fn finished(&self, decision: &Decision, world: &World) -> bool {
        let Some(bucket) = decision.bucket.as_deref().and_then(|b| world.bucket(b)) else {
            return false;
        };
        let (Some(epoch), Some(m)) = (decision.epoch, bucket.migration.as_ref()) else {
            return false;
        };
        // A newer epoch supersedes this one: its migration carries the objects on.
        m.target_epoch > epoch
            || (m.target_epoch == epoch && matches!(m.state, MigrationState::Done | MigrationState::Idle))
    }

    async fn get_state(&self) -> Value {
        let mut out = serde_json::Map::new();
        if let Ok(intents) = self.intents.all() {
            for i in intents {
                if let Ok(p) = self.gateway.storage_policy(&i.bucket).await {
                    out.insert(i.bucket.clone(), serde_json::to_value(p).unwrap_or(Value::Null));
                }
            }
        }
        Value::Object(out)
    }

    async fn get_options(&self) -> Value {
        json!({"k": "1..=32", "m": "0..=16", "backends": "ids or a selector", "encryption": "bool",
               "prefixes": "[{prefix, k, m, backends}]: rules for the keys under a prefix"})
    }
}

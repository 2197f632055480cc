//! `migration_throttle`: the node's knob on how fast its gateway migrates (MiB/s, objects at
//! once, paused), through `PUT /api/v1/migration`.

use crate::error::{Error, Result};
use crate::framework::{Applied, Mechanism};
use crate::gateway::Gateway;
use crate::plan::Plan;
use crate::world::World;
use async_trait::async_trait;
use control_api::{Decision, MigrationThrottleRequest};
use serde_json::{json, Value};

/// The mechanism's name, as plans give it.
pub const NAME: &str = "migration_throttle";

/// The migrator's throttle of one gateway.
pub struct MigrationThrottleMechanism {
    gateway: Gateway,
}

impl MigrationThrottleMechanism {
    /// Over `gateway`.
    #[must_use]
    pub fn new(gateway: Gateway) -> Self {
        Self { gateway }
    }
}

#[async_trait]
impl Mechanism for MigrationThrottleMechanism {
    fn name(&self) -> &str {
        NAME
    }

    async fn apply(&self, plan: &Plan) -> Result<Applied> {
        let fail = |message: String| Error::Mechanism {
            mechanism: NAME.into(),
            message,
        };
        let req: MigrationThrottleRequest = serde_json::from_value(plan.command.clone())
            .map_err(|e| fail(format!("command is not a throttle change: {e}")))?;
        let client = self.gateway.client();
        let before = client
            .migration_throttle()
            .await
            .map_err(|e| fail(format!("reading the throttle: {e}")))?;
        let after = client
            .set_migration_throttle(&req)
            .await
            .map_err(|e| fail(format!("setting the throttle: {e}")))?;
        if after == before {
            return Ok(Applied::Unchanged);
        }
        Ok(Applied::Done {
            epoch: None,
            undo: Some(json!({
                "max_mib_per_sec": before.max_mib_per_sec,
                "concurrency": before.concurrency,
                "paused": before.paused,
            })),
        })
    }

    fn finished(&self, _: &Decision, _: &World) -> bool {
        true
    }

    async fn get_state(&self) -> Value {
        match self.gateway.client().migration_throttle().await {
            Ok(t) => serde_json::to_value(t).unwrap_or(Value::Null),
            Err(e) => json!({"error": e.to_string()}),
        }
    }

    async fn get_options(&self) -> Value {
        json!({"max_mib_per_sec": "0 (unlimited) or more", "concurrency": "1..=64", "paused": "bool"})
    }
}

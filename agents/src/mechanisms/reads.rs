//! `read_settings`: the node's knob on how its gateway reads (shard strategy, hedging), through
//! `PUT /api/v1/reads`.

use crate::error::{Error, Result};
use crate::framework::{Applied, Mechanism};
use crate::gateway::Gateway;
use crate::plan::Plan;
use crate::world::World;
use async_trait::async_trait;
use control_api::{Decision, ReadSettingsRequest};
use serde_json::{json, Value};

/// The mechanism's name, as plans give it.
pub const NAME: &str = "read_settings";

/// The read settings of one gateway.
pub struct ReadSettingsMechanism {
    gateway: Gateway,
}

impl ReadSettingsMechanism {
    /// Over `gateway`.
    #[must_use]
    pub fn new(gateway: Gateway) -> Self {
        Self { gateway }
    }
}

#[async_trait]
impl Mechanism for ReadSettingsMechanism {
    fn name(&self) -> &str {
        NAME
    }

    async fn apply(&self, plan: &Plan) -> Result<Applied> {
        let fail = |message: String| Error::Mechanism {
            mechanism: NAME.into(),
            message,
        };
        let req: ReadSettingsRequest = serde_json::from_value(plan.command.clone())
            .map_err(|e| fail(format!("command is not a read-settings change: {e}")))?;
        let client = self.gateway.client();
        let before = client
            .read_settings()
            .await
            .map_err(|e| fail(format!("reading the read settings: {e}")))?;
        // Already so: nothing to send, nothing to undo.
        if req.applied_to(before) == before {
            return Ok(Applied::Unchanged);
        }
        client
            .set_read_settings(&req)
            .await
            .map_err(|e| fail(format!("setting the read settings: {e}")))?;
        Ok(Applied::Done {
            epoch: None,
            undo: Some(serde_json::to_value(ReadSettingsRequest::from(before)).unwrap_or(Value::Null)),
        })
    }

    fn finished(&self, _: &Decision, _: &World) -> bool {
        true
    }

    async fn get_state(&self) -> Value {
        match self.gateway.client().read_settings().await {
            Ok(s) => serde_json::to_value(s).unwrap_or(Value::Null),
            Err(e) => json!({"error": e.to_string()}),
        }
    }

    async fn get_options(&self) -> Value {
        json!({"strategy": ["latency", "data-first"], "hedging": "bool"})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use axum::{Json, Router};
    use control_api::ReadSettings;
    use std::sync::{Arc, Mutex};

    /// A stand-in gateway keeping read settings, starting data-first.
    async fn gateway() -> (Gateway, Arc<Mutex<ReadSettings>>) {
        let state = Arc::new(Mutex::new(ReadSettings::DATA_FIRST));
        let (get_state, put_state) = (state.clone(), state.clone());
        let app = Router::new().route(
            control_api::routes::READS,
            get(move || {
                let now = *get_state.lock().unwrap();
                async move { Json(now) }
            })
            .put(move |Json(req): Json<ReadSettingsRequest>| {
                let mut s = put_state.lock().unwrap();
                *s = req.applied_to(*s);
                let now = *s;
                async move { Json(now) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (Gateway::new(control_api::Client::at(addr, None).unwrap()), state)
    }

    #[tokio::test]
    async fn applies_with_undo_and_is_unchanged_when_already_so() {
        let (gw, state) = gateway().await;
        let m = ReadSettingsMechanism::new(gw);
        let on = Plan::new(
            "t",
            NAME,
            "node/n/reads",
            json!({"strategy": "latency", "hedging": true}),
        );
        let Applied::Done { epoch, undo } = m.apply(&on).await.unwrap() else {
            panic!("not done")
        };
        assert_eq!(epoch, None);
        assert_eq!(undo, Some(json!({"strategy": "data-first", "hedging": false})));
        assert_eq!(*state.lock().unwrap(), ReadSettings::HEDGED);
        assert_eq!(m.apply(&on).await.unwrap(), Applied::Unchanged);
        assert_eq!(m.get_state().await, json!({"strategy": "latency", "hedging": true}));

        // The undo command restores what was.
        let back = Plan::new("rollback", NAME, "node/n/reads", undo.unwrap());
        assert!(matches!(m.apply(&back).await.unwrap(), Applied::Done { .. }));
        assert_eq!(*state.lock().unwrap(), ReadSettings::DATA_FIRST);

        let bad = Plan::new("t", NAME, "node/n/reads", json!({"hedging": "yes"}));
        let err = m.apply(&bad).await.unwrap_err().to_string();
        assert!(
            err.starts_with("mechanism read_settings: command is not a read-settings change"),
            "{err}"
        );
        assert_eq!(*state.lock().unwrap(), ReadSettings::DATA_FIRST);
        assert!(m.finished(
            &crate::decisions::from_plan(&on, "n", control_api::DecisionStatus::Applied, ""),
            &World::default()
        ));
    }
}

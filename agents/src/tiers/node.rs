//! The node agent of one gateway: every period it reads its gateway's backend telemetry and
//! migration throttle, reports its status and a summary upward, and applies the knob plans its
//! cluster sends (`plan_submitted` for `migration_throttle`), answering `plan_status_update`.

use super::{next_envelope, status, Shared, TierConfig};
use crate::framework::Mechanism;
use crate::gateway::Gateway;
use crate::link::{Event, Session};
use crate::mechanisms::MigrationThrottleMechanism;
use crate::plan::Plan;
use serde_json::{json, Value};
use std::time::Instant;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A node agent.
pub struct Node {
    cfg: TierConfig,
    gateway: Gateway,
    shared: Shared,
    throttle: MigrationThrottleMechanism,
}

impl Node {
    /// The node agent of `gateway`.
    #[must_use]
    pub fn new(cfg: TierConfig, gateway: Gateway, shared: Shared) -> Self {
        Self {
            throttle: MigrationThrottleMechanism::new(gateway.clone()),
            cfg,
            gateway,
            shared,
        }
    }

    /// Runs until `shutdown`, with sessions to its cluster agent from `parents`.
    pub async fn run(self, mut parents: mpsc::Receiver<Session>, shutdown: CancellationToken) {
        let mut parent: Option<Session> = None;
        let mut tick = tokio::time::interval(self.cfg.period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(s) = parents.recv() => parent = Some(s),
                env = next_envelope(&mut parent) => match env {
                    Some(env) if env.event == Event::PlanSubmitted => {
                        let answer = match serde_json::from_value::<Plan>(env.payload) {
                            Ok(plan) if plan.mechanism == self.throttle.name() => match self.throttle.apply(&plan).await {
                                Ok(a) => json!({"status": "done", "applied": a}),
                                Err(e) => json!({"status": "failed", "error": e.to_string()}),
                            },
                            Ok(plan) => json!({"status": "failed", "error": format!("node agents have no mechanism {:?}", plan.mechanism)}),
                            Err(e) => json!({"status": "failed", "error": format!("not a plan: {e}")}),
                        };
                        if let Some(p) = parent.as_mut() {
                            let _ = p.send(Event::PlanStatusUpdate, env.plan_uid, answer).await;
                        }
                    }
                    Some(_) => {}
                    None => parent = None,
                },
                _ = tick.tick() => {
                    let started = Instant::now();
                    let summary = self.summary().await;
                    let error = summary.as_ref().err().map(ToString::to_string);
                    let me = status(&self.cfg, "node", started.elapsed(), Vec::new(), error);
                    self.shared.report(me.clone());
                    if let Some(p) = parent.as_mut() {
                        let mut payload = summary.unwrap_or_else(|_| json!({}));
                        payload["agents"] = json!([me]);
                        let _ = p.send(Event::TelemetrySummary, None, payload).await;
                    }
                }
            }
        }
    }

    /// What the node tells its cluster: per backend p95 GET, bandwidth, error rate; the throttle.
    async fn summary(&self) -> crate::error::Result<serde_json::Value> {
        let t = self.gateway.backend_telemetry().await?;
        let backends: Vec<serde_json::Value> = t["backends"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|b| {
                        let w = crate::gateway::window(b, "1m").unwrap_or(&Value::Null);
                        json!({
                            "backend": b["backend"],
                            "get_p95_ms": w["get"]["p95_ms"],
                            "bandwidth_mib_s": w["get"]["bandwidth_mib_s"],
                            "error_rate": w["error_rate"],
                            "availability": w["availability"],
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(json!({"backends": backends, "throttle": self.throttle.get_state().await}))
    }
}

//! The node agent of one gateway: a MAPE loop over its gateway's local knobs. Every period it
//! observes its gateway's backends (the same [`Observer`] as the cluster), runs its own
//! policies ([`crate::node_policies`]: the read tuner) and hands their plans to its
//! [`Scheduler`], which records every decision in its log and applies the winners through the
//! `read_settings` and `migration_throttle` mechanisms. Its decisions go up to its cluster as
//! `decision_recorded` (the cluster relays them to the continuum), followed by a summary of its
//! backends and knobs. It also applies the knob plans its cluster sends (`plan_submitted`),
//! answering `plan_status_update`.

use super::{next_envelope, status, Shared, TierConfig};
use crate::decisions::DecisionLog;
use crate::error::Result;
use crate::framework::{Ctx, Mechanism, Policy};
use crate::gateway::{Gateway, Observer};
use crate::link::{Event, Session};
use crate::mechanisms::{MigrationThrottleMechanism, ReadSettingsMechanism};
use crate::plan::Plan;
use crate::scheduler::{Scheduler, SchedulerConfig};
use crate::store::Store;
use crate::world::World;
use control_api::Decision;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A node agent.
pub struct Node {
    cfg: TierConfig,
    gateway: Gateway,
    shared: Shared,
    policies: Vec<Box<dyn Policy>>,
    mechanisms: BTreeMap<String, Arc<dyn Mechanism>>,
    scheduler: Scheduler,
    observer: Observer,
    period: u64,
    /// The name of the machine it runs on (a Kubernetes node's name) and that machine's labels,
    /// which the cluster places containers by.
    machine: String,
    labels: BTreeMap<String, String>,
}

impl Node {
    /// The node agent of `gateway`, running `policies`, its decisions logged in `store`.
    #[must_use]
    pub fn new(
        cfg: TierConfig,
        gateway: Gateway,
        store: Store,
        shared: Shared,
        policies: Vec<Box<dyn Policy>>,
        scheduler: SchedulerConfig,
    ) -> Self {
        let mut mechanisms: BTreeMap<String, Arc<dyn Mechanism>> = BTreeMap::new();
        let reads = ReadSettingsMechanism::new(gateway.clone());
        mechanisms.insert(reads.name().to_owned(), Arc::new(reads));
        let throttle = MigrationThrottleMechanism::new(gateway.clone());
        mechanisms.insert(throttle.name().to_owned(), Arc::new(throttle));
        Self {
            scheduler: Scheduler::new(&cfg.id, scheduler, DecisionLog::new(store)),
            machine: cfg.id.clone(),
            cfg,
            gateway,
            shared,
            policies,
            mechanisms,
            observer: Observer::new(),
            period: 0,
            labels: BTreeMap::new(),
        }
    }

    /// Reports itself as machine `name` (a Kubernetes node's name) with `labels` (such as
    /// `gdpr = "true"`); without it, its agent id names the machine.
    #[must_use]
    pub fn on_machine(mut self, name: &str, labels: BTreeMap<String, String>) -> Self {
        name.clone_into(&mut self.machine);
        self.labels = labels;
        self
    }

    /// Runs until `shutdown`, with sessions to its cluster agent from `parents`.
    pub async fn run(mut self, mut parents: mpsc::Receiver<Session>, shutdown: CancellationToken) {
        let mut parent: Option<Session> = None;
        let mut tick = tokio::time::interval(self.cfg.period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(s) = parents.recv() => parent = Some(s),
                env = next_envelope(&mut parent) => match env {
                    Some(env) if env.event == Event::PlanSubmitted => {
                        let answer = self.apply_submitted(env.payload).await;
                        if let Some(p) = parent.as_mut() {
                            let _ = p.send(Event::PlanStatusUpdate, env.plan_uid, answer).await;
                        }
                    }
                    Some(_) => {}
                    None => parent = None,
                },
                _ = tick.tick() => {
                    let started = Instant::now();
                    let result = self.period().await;
                    let error = result.as_ref().err().map(ToString::to_string);
                    if let Some(e) = &error {
                        tracing::warn!(agent = %self.cfg.id, error = %e, "node agent: period failed");
                    }
                    let me = status(&self.cfg, "node", started.elapsed(), Vec::new(), error);
                    self.shared.report(me.clone());
                    let (written, summary) = result.unwrap_or_default();
                    if let Some(p) = parent.as_mut() {
                        for d in written {
                            let payload = serde_json::to_value(&d).unwrap_or_default();
                            let _ = p.send(Event::DecisionRecorded, uuid::Uuid::parse_str(&d.id).ok(), payload).await;
                        }
                        let mut payload = summary;
                        payload["agents"] = json!([me]);
                        let _ = p.send(Event::TelemetrySummary, None, payload).await;
                    }
                }
            }
        }
    }

    /// Applies a plan its cluster sent, outside the scheduler (the cluster's scheduler decided).
    async fn apply_submitted(&self, payload: Value) -> Value {
        match serde_json::from_value::<Plan>(payload) {
            Ok(plan) => match self.mechanisms.get(&plan.mechanism) {
                Some(m) => match m.apply(&plan).await {
                    Ok(a) => json!({"status": "done", "applied": a}),
                    Err(e) => json!({"status": "failed", "error": e.to_string()}),
                },
                None => {
                    json!({"status": "failed", "error": format!("node agents have no mechanism {:?}", plan.mechanism)})
                }
            },
            Err(e) => json!({"status": "failed", "error": format!("not a plan: {e}")}),
        }
    }

    /// One MAPE period: observe, run the policies whose turn it is, schedule their plans.
    /// Returns the decisions written and the summary for the cluster.
    async fn period(&mut self) -> Result<(Vec<Decision>, Value)> {
        self.period += 1;
        self.scheduler.set_dry_run(self.shared.dry_run());
        let world = self
            .observer
            .observe(&self.gateway, self.cfg.period.as_secs().max(1), &[])
            .await?;
        let mode = self.shared.mode();
        let cx = Ctx {
            world: &world,
            mode,
            models: None,
            mechanisms: &self.mechanisms,
        };
        let plans = super::plans_of(&mut self.policies, &cx, self.period, &self.cfg.id).await;
        let written = self.scheduler.run_period(plans, &world, &self.mechanisms).await?;
        Ok((written, self.summary(&world).await))
    }

    /// What the node tells its cluster: per backend p95 GET, bandwidth, error rate (over the
    /// window the world's figures are over); the throttle and read settings; and, for
    /// placing containers, its machine, labels, round trip to its gateway and whether that
    /// gateway hedges reads.
    async fn summary(&self, world: &World) -> Value {
        let backends: Vec<Value> = world
            .backends
            .iter()
            .map(|b| {
                json!({
                    "backend": b.id,
                    "window": b.window(),
                    "get_p95_ms": b.get_p95_ms,
                    "bandwidth_mib_s": b.bandwidth_mib_s,
                    "error_rate": b.error_rate,
                    "availability": b.availability,
                })
            })
            .collect();
        let mut knobs = serde_json::Map::new();
        // The read-settings knob is one cheap admin call: its round trip is what a container
        // on this machine adds to every backend's latency by reading through this gateway.
        let (mut gateway_rtt_ms, mut hedged) = (None, None);
        for (name, m) in &self.mechanisms {
            let started = Instant::now();
            let state = m.get_state().await;
            if name == crate::mechanisms::reads::NAME && state.get("error").is_none() {
                gateway_rtt_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
                hedged = state["hedging"].as_bool();
            }
            knobs.insert(name.clone(), state);
        }
        json!({
            "backends": backends,
            "knobs": knobs,
            "machine": {
                "name": self.machine,
                "labels": self.labels,
                "gateway_rtt_ms": gateway_rtt_ms,
                "hedged": hedged,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::{local_pair, AgentId};
    use crate::tiers::cluster::Cluster;
    use axum::routing::get;
    use axum::{Json, Router};
    use control_api::{AgentMode, BackendInfo, BackendsView, DecisionStatus, ReadSettings, ReadSettingsRequest};
    use std::sync::Mutex;
    use std::time::Duration;

    /// A stand-in gateway: backends `a` and `b` at 40 ms p95 and `slow` at 400 ms (20 GETs
    /// each over the last 15 s), reading data-first without hedging.
    async fn gateway() -> (Gateway, Arc<Mutex<ReadSettings>>) {
        let reads = Arc::new(Mutex::new(ReadSettings::DATA_FIRST));
        let (get_reads, put_reads) = (reads.clone(), reads.clone());
        let ids = ["a", "b", "slow"];
        let backends = BackendsView {
            fault_injection: false,
            backends: ids
                .iter()
                .map(|id| BackendInfo {
                    id: (*id).into(),
                    ..BackendInfo::default()
                })
                .collect(),
        };
        let telemetry = json!({"backends": ids.iter().map(|id| {
            let p95 = if *id == "slow" { 400.0 } else { 40.0 };
            let w = |name: &str| json!({"window": name, "get": {"count": 20, "p95_ms": p95}, "audit": {"count": 0}, "error_rate": 0.0, "availability": 1.0});
            json!({"backend": id, "windows": [w("15s"), w("1m")]})
        }).collect::<Vec<_>>()});
        let app = Router::new()
            .route(
                control_api::routes::BACKENDS,
                get(move || async move { Json(backends) }),
            )
            .route(
                control_api::routes::BACKEND_TELEMETRY,
                get(move || async move { Json(telemetry) }),
            )
            .route(
                control_api::routes::READS,
                get(move || {
                    let now = *get_reads.lock().unwrap();
                    async move { Json(now) }
                })
                .put(move |Json(req): Json<ReadSettingsRequest>| {
                    let mut s = put_reads.lock().unwrap();
                    *s = req.applied_to(*s);
                    let now = *s;
                    async move { Json(now) }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (Gateway::new(control_api::Client::at(addr, None).unwrap()), reads)
    }

    fn cfg(id: &str) -> TierConfig {
        TierConfig {
            id: id.into(),
            period: Duration::from_millis(100),
        }
    }

    fn agent(id: &str, tier: &str) -> AgentId {
        AgentId {
            id: id.into(),
            tier: tier.into(),
        }
    }

    fn once(s: Session) -> mpsc::Receiver<Session> {
        let (tx, rx) = mpsc::channel(1);
        tx.try_send(s).ok().unwrap();
        rx
    }

    fn node(gw: Gateway, store: Store, shared: Shared) -> Node {
        let policies = crate::node_policies::builtin("t-node", crate::node_policies::NodeConfig::default());
        Node::new(cfg("t-node"), gw, store, shared, policies, SchedulerConfig::default())
    }

    /// The next decision `s` receives (summaries skipped), within 10 s.
    async fn next_decision(s: &mut Session) -> Decision {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let env = s.recv().await.expect("session open");
                if env.event == Event::DecisionRecorded {
                    return serde_json::from_value::<Decision>(env.payload).unwrap();
                }
            }
        })
        .await
        .expect("a decision within 10 s")
    }

    #[tokio::test]
    async fn a_node_decision_is_applied_and_reaches_the_continuum_through_its_cluster() {
        let (gw, reads) = gateway().await;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let shared = Shared::new(AgentMode::Heuristic, false);
        let cluster = Cluster::new(
            cfg("t-cluster"),
            gw.clone(),
            store.clone(),
            shared.clone(),
            Vec::new(),
            SchedulerConfig::default(),
            crate::ml::Models::default(),
        );
        let (mut continuum, cluster_up) = local_pair(agent("t-continuum", "continuum"), agent("t-cluster", "cluster"));
        let (cluster_down, node_up) = local_pair(agent("t-cluster", "cluster"), agent("t-node", "node"));
        let shutdown = CancellationToken::new();
        let tasks = [
            tokio::spawn(cluster.run(once(cluster_up), once(cluster_down), shutdown.clone())),
            tokio::spawn(node(gw, store.clone(), shared).run(once(node_up), shutdown.clone())),
        ];
        let d = next_decision(&mut continuum).await;
        assert_eq!((d.policy.as_str(), d.agent.as_str()), ("read_tuner", "t-node"));
        assert_eq!(
            (d.status, d.target.as_str()),
            (DecisionStatus::Applied, "node/t-node/reads")
        );
        assert!(
            d.reason
                .starts_with("Backend slow's p95 400 ms is 10.0x the median 40 ms"),
            "{}",
            d.reason
        );
        assert_eq!(*reads.lock().unwrap(), ReadSettings::HEDGED);
        // Recorded in the node's log, once: hedged now, the still-slow backend calls for nothing.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let logged = DecisionLog::new(store).list(None, None, 100).unwrap();
        assert_eq!(logged.len(), 1, "{logged:?}");
        assert_eq!(logged[0].id, d.id);
        shutdown.cancel();
        for t in tasks {
            t.await.unwrap();
        }
    }

    #[tokio::test]
    async fn in_dry_run_the_node_explains_and_changes_nothing() {
        let (gw, reads) = gateway().await;
        let dir = tempfile::tempdir().unwrap();
        let shared = Shared::new(AgentMode::Heuristic, true);
        let (mut cluster, node_up) = local_pair(agent("t-cluster", "cluster"), agent("t-node", "node"));
        let shutdown = CancellationToken::new();
        let task =
            tokio::spawn(node(gw, Store::open(dir.path()).unwrap(), shared).run(once(node_up), shutdown.clone()));
        let d = next_decision(&mut cluster).await;
        assert_eq!(d.status, DecisionStatus::DryRun);
        assert!(d.reason.contains("slow"), "{}", d.reason);
        assert_eq!(*reads.lock().unwrap(), ReadSettings::DATA_FIRST);
        shutdown.cancel();
        task.await.unwrap();
    }
}

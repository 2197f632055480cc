//! The cluster agent: configures buckets for the intents the continuum sends down, and every
//! period observes its gateway, runs its policies and hands their plans to the scheduler.
//! Decisions (its own, and those its node agents send up) go up to the continuum; intents are
//! acknowledged by plan uid, and a uid already taken (kept in the store) is acknowledged again
//! without acting twice.

use super::{next_envelope, status, Shared, TierConfig};
use crate::decisions::DecisionLog;
use crate::error::{Error, Result};
use crate::framework::{Ctx, Mechanism, Policy};
use crate::gateway::{Gateway, Observer};
use crate::guard::Guard;
use crate::intents::{Intents, StoredIntent};
use crate::k8s::knowledge::Containers;
use crate::link::{Envelope, Event, Session};
use crate::ml::Models;
use crate::policies::containers;
use crate::scheduler::{Scheduler, SchedulerConfig};
use crate::store::Store;
use crate::world::{ComponentView, World};
use control_api::{AgentMode, LocationRestrictions, StoragePolicyRequest};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The acknowledgement of an intent, sent up as `plan_status_update` and kept under `seen/<uid>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntentAck {
    /// The bucket.
    pub bucket: String,
    /// Why configuring it failed (`None`: configured).
    pub error: Option<String>,
}

/// A cluster agent.
pub struct Cluster {
    cfg: TierConfig,
    gateway: Gateway,
    store: Store,
    intents: Intents,
    log: DecisionLog,
    shared: Shared,
    policies: Vec<Box<dyn Policy>>,
    mechanisms: BTreeMap<String, Arc<dyn Mechanism>>,
    scheduler: Scheduler,
    observer: Observer,
    models: Models,
    period: u64,
    /// The latest status of each node agent below, from their summaries.
    nodes: BTreeMap<String, control_api::AgentStatus>,
    /// Its gateway's backends and how many are labelled GDPR, as of the last period (`None`:
    /// not observed yet); the continuum places buckets by them.
    backends: Option<(usize, usize)>,
    /// Trust and anomaly detection over its gateway (`None`: off).
    guard: Option<Guard>,
    /// Verdicts of the last period, to send up.
    verdicts: Vec<anomaly::Verdict>,
    /// Components, nodes and placements, shared with the extender and the controller.
    containers: Containers,
    /// Each machine its node agents report for: when it last reported (Unix ms), the node
    /// agent reporting it, and how it reaches the backends.
    machines: BTreeMap<String, (i64, String, placement::containers::Node)>,
}

/// Machines reported by node agents, at most (a bound on what a misbehaving child can grow).
const MAX_MACHINES: usize = 4096;

/// A machine as a node agent's summary describes it (`None`: the summary has no machine).
fn machine_of(summary: &serde_json::Value) -> Option<placement::containers::Node> {
    let m = &summary["machine"];
    let name = m["name"].as_str().filter(|n| !n.is_empty() && n.len() <= 253)?;
    let rtt = m["gateway_rtt_ms"].as_f64()?;
    let mut node = placement::containers::Node {
        name: name.to_owned(),
        labels: serde_json::from_value(m["labels"].clone()).unwrap_or_default(),
        hedged: m["hedged"].as_bool().unwrap_or(false),
        ..placement::containers::Node::default()
    };
    for b in summary["backends"].as_array().into_iter().flatten() {
        let (Some(id), Some(p95)) = (b["backend"].as_str(), b["get_p95_ms"].as_f64()) else {
            continue;
        };
        if b["availability"].as_f64().is_some_and(|a| a < 0.5) {
            continue;
        }
        node.rtt_ms.insert(id.to_owned(), rtt + p95);
        if let Some(bw) = b["bandwidth_mib_s"].as_f64() {
            node.bandwidth_mib_s.insert(id.to_owned(), bw);
        }
    }
    Some(node)
}

impl Cluster {
    /// A cluster agent over `gateway`, keeping its state in `store`.
    #[must_use]
    pub fn new(
        cfg: TierConfig,
        gateway: Gateway,
        store: Store,
        shared: Shared,
        policies: Vec<Box<dyn Policy>>,
        scheduler: SchedulerConfig,
        models: Models,
    ) -> Self {
        let intents = Intents::new(store.clone());
        let log = DecisionLog::new(store.clone());
        let mut mechanisms: BTreeMap<String, Arc<dyn Mechanism>> = BTreeMap::new();
        let sp = crate::mechanisms::StoragePolicyMechanism::new(gateway.clone(), intents.clone(), &cfg.id);
        mechanisms.insert(sp.name().to_owned(), Arc::new(sp));
        let th = crate::mechanisms::MigrationThrottleMechanism::new(gateway.clone());
        mechanisms.insert(th.name().to_owned(), Arc::new(th));
        let pt = crate::mechanisms::PrincipalThrottleMechanism::new(gateway.clone());
        mechanisms.insert(pt.name().to_owned(), Arc::new(pt));
        let containers = Containers::default();
        let cp = crate::mechanisms::ContainerPlacementMechanism::new(containers.clone());
        mechanisms.insert(cp.name().to_owned(), Arc::new(cp));
        Self {
            scheduler: Scheduler::new(&cfg.id, scheduler, log.clone()),
            cfg,
            gateway,
            store,
            intents,
            log,
            shared,
            policies,
            mechanisms,
            observer: Observer::new(),
            models,
            period: 0,
            nodes: BTreeMap::new(),
            backends: None,
            guard: None,
            verdicts: Vec::new(),
            containers,
            machines: BTreeMap::new(),
        }
    }

    /// Components, nodes and placements, for the extender and the controller.
    #[must_use]
    pub fn containers(&self) -> Containers {
        self.containers.clone()
    }

    /// Watches trust and anomalies with `guard`: backends get trust scores, principals under
    /// attack appear in the world, and the trust keeper and principal guard act on them.
    #[must_use]
    pub fn with_guard(mut self, guard: Guard) -> Self {
        self.guard = Some(guard);
        self
    }

    /// Runs until `shutdown`: sessions to the parent come from `parents` (a new one after each
    /// reconnect), sessions of node agents from `children`.
    pub async fn run(
        mut self,
        mut parents: mpsc::Receiver<Session>,
        mut children: mpsc::Receiver<Session>,
        shutdown: CancellationToken,
    ) {
        let mut parent: Option<Session> = None;
        let (child_tx, mut child_rx) = mpsc::channel::<(bool, Envelope)>(256);
        let mut tick = tokio::time::interval(self.cfg.period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(s) = parents.recv() => {
                    tracing::info!(agent = %self.cfg.id, parent = %s.peer.id, "cluster agent: connected to its parent");
                    parent = Some(s);
                }
                Some(mut s) = children.recv() => {
                    tracing::info!(agent = %self.cfg.id, child = %s.peer.id, "cluster agent: node agent connected");
                    let tx = child_tx.clone();
                    tokio::spawn(async move {
                        while let Some(env) = s.recv().await {
                            if tx.send((s.remote, env)).await.is_err() {
                                break;
                            }
                        }
                    });
                }
                Some((remote, env)) = child_rx.recv() => {
                    if env.event == Event::DecisionRecorded {
                        // A node agent's decision goes on up: the continuum's log shows it.
                        if let Some(p) = parent.as_mut() {
                            let _ = p.send(Event::DecisionRecorded, env.plan_uid, env.payload).await;
                        }
                    } else {
                        self.on_node_message(remote, env);
                    }
                }
                env = next_envelope(&mut parent) => match env {
                    Some(env) => {
                        if let Err(e) = self.on_parent_message(env, parent.as_mut()).await {
                            tracing::warn!(agent = %self.cfg.id, error = %e, "cluster agent: handling a message from the continuum");
                        }
                    }
                    None => {
                        tracing::warn!(agent = %self.cfg.id, "cluster agent: the session to the continuum ended; waiting for the next");
                        parent = None;
                    }
                },
                _ = tick.tick() => {
                    let started = Instant::now();
                    let result = self.period().await;
                    let error = result.as_ref().err().map(ToString::to_string);
                    if let Some(e) = &error {
                        tracing::warn!(agent = %self.cfg.id, error = %e, "cluster agent: period failed");
                    }
                    let pending = self.scheduler.held().map(|h| h.into_values().map(|d| d.id).collect()).unwrap_or_default();
                    let me = status(&self.cfg, "cluster", started.elapsed(), pending, error);
                    self.shared.report(me.clone());
                    let written = result.unwrap_or_default();
                    if let Some(p) = parent.as_mut() {
                        for d in written {
                            let payload = serde_json::to_value(&d).unwrap_or_default();
                            let _ = p.send(Event::DecisionRecorded, uuid::Uuid::parse_str(&d.id).ok(), payload).await;
                        }
                        let mut agents = vec![me];
                        agents.extend(self.nodes.values().cloned());
                        let mut summary = json!({"agents": agents});
                        if let Some((all, gdpr)) = self.backends {
                            summary["backends"] = json!(all);
                            summary["gdpr_backends"] = json!(gdpr);
                        }
                        let _ = p.send(Event::TelemetrySummary, None, summary).await;
                        for v in std::mem::take(&mut self.verdicts) {
                            let _ = p.send(Event::AnomalyDetected, None, serde_json::to_value(&v).unwrap_or_default()).await;
                        }
                    }
                }
            }
        }
    }

    /// Takes one message of a node agent whose session is `remote` (another process).
    fn on_node_message(&mut self, remote: bool, env: Envelope) {
        if env.event == Event::TelemetrySummary {
            let agent = env.payload["agents"][0]["id"].as_str().unwrap_or_default().to_owned();
            if remote {
                self.verified(&agent);
            }
            if let Some(node) = machine_of(&env.payload) {
                if self.machines.len() < MAX_MACHINES || self.machines.contains_key(&node.name) {
                    self.machines
                        .insert(node.name.clone(), (crate::world::now_ms(), agent, node));
                }
            }
            if let Ok(agents) = serde_json::from_value::<Vec<control_api::AgentStatus>>(env.payload["agents"].clone()) {
                for mut a in agents {
                    a.remote = remote;
                    self.shared.report(a.clone());
                    self.nodes.insert(a.id.clone(), a);
                }
            }
        }
    }

    /// A signed summary from `agent` passed the link's checks: evidence for it, as bad
    /// signatures are evidence against it (its machine is as trusted as it is).
    fn verified(&self, agent: &str) {
        if let Some(guard) = &self.guard {
            crate::guard::link_evidence(
                &guard.reputation,
                agent,
                control_api::trust::EvidenceKind::Success,
                "a signed summary over the agent link",
            );
        }
    }

    async fn on_parent_message(&mut self, env: Envelope, parent: Option<&mut Session>) -> Result<()> {
        if env.event == Event::ApplicationRemoved {
            if let Some(bucket) = env.payload["bucket"].as_str() {
                self.intents.remove(bucket)?;
                tracing::info!(agent = %self.cfg.id, %bucket, "cluster agent: no longer managing the bucket (its app was removed)");
            }
            return Ok(());
        }
        if env.event != Event::ApplicationSubmitted {
            return Ok(());
        }
        let uid = env
            .plan_uid
            .ok_or_else(|| Error::Invalid("application_submitted without a plan uid".into()))?;
        let intent: StoredIntent = serde_json::from_value(env.payload)
            .map_err(|e| Error::Invalid(format!("application_submitted payload: {e}")))?;
        let seen_key = format!("seen/{uid}");
        let ack = match self.store.get::<IntentAck>(&seen_key)? {
            Some(ack) => {
                tracing::info!(agent = %self.cfg.id, bucket = %intent.bucket, plan = %uid, "cluster agent: intent already taken; acknowledged again, not applied twice");
                ack
            }
            None => {
                let error = self.configure(&intent).await.err().map(|e| e.to_string());
                let ack = IntentAck {
                    bucket: intent.bucket.clone(),
                    error,
                };
                let mut mine = intent.clone();
                mine.state = if ack.error.is_some() { "failed" } else { "applied" }.into();
                mine.error.clone_from(&ack.error);
                self.intents.put(&mine)?;
                self.store.put(&seen_key, &ack)?;
                tracing::info!(agent = %self.cfg.id, bucket = %intent.bucket, plan = %uid, error = ?ack.error, "cluster agent: bucket configured for its intent");
                ack
            }
        };
        if let Some(p) = parent {
            p.send(
                Event::PlanStatusUpdate,
                Some(uid),
                serde_json::to_value(&ack).unwrap_or_default(),
            )
            .await?;
        }
        Ok(())
    }

    /// Creates the bucket if needed and states its intent (targets, location, token) on it.
    async fn configure(&self, i: &StoredIntent) -> Result<()> {
        self.gateway.ensure_bucket(&i.bucket).await?;
        let it = &i.intent;
        let req = StoragePolicyRequest {
            redundancy: Some(it.redundancy),
            max_latency: Some(it.max_latency),
            min_download_speed: Some(it.min_download_speed),
            location_restrictions: Some(LocationRestrictions { gdpr: it.gdpr }),
            encryption: it.encryption,
            policy_update_token: it.policy_update_token.clone(),
            changed_by: Some(format!("{} for {}", self.cfg.id, i.source)),
            reason: Some(format!("intent of {} (plan {})", i.source, i.plan_uid)),
            ..StoragePolicyRequest::default()
        };
        self.gateway.set_storage_policy(&i.bucket, &req).await?;
        Ok(())
    }

    async fn period(&mut self) -> Result<Vec<control_api::Decision>> {
        self.period += 1;
        self.scheduler.set_dry_run(self.shared.dry_run());
        let intents = self.intents.all()?;
        let watched: Vec<(String, control_api::BucketIntent)> = intents
            .iter()
            .filter(|i| i.state == "applied" && i.intent.policy_update_token.is_some())
            .map(|i| (i.bucket.clone(), i.intent.clone()))
            .collect();
        let mut world = self
            .observer
            .observe(&self.gateway, self.cfg.period.as_secs().max(1), &watched)
            .await?;
        if let Some(guard) = self.guard.as_mut() {
            // Without trust figures the trust keeper does nothing this period (unknown trust
            // drains nothing); the storage policies still run.
            let none = serde_json::Value::Null;
            let backends = self.observer.backend_telemetry().unwrap_or(&none);
            match guard.observe(&self.gateway, backends, &mut world).await {
                Ok(verdicts) => self.verdicts = verdicts,
                Err(e) => {
                    tracing::warn!(agent = %self.cfg.id, error = %e, "cluster agent: trust and anomaly watch failed this period");
                }
            }
        }
        self.place_containers(&mut world, &intents);
        self.backends = Some((
            world.backends.len(),
            world.backends.iter().filter(|b| b.labels.gdpr).count(),
        ));
        let mode = self.shared.mode();
        if mode == AgentMode::Ml {
            self.models.observe(&world);
        }
        let cx = Ctx {
            world: &world,
            mode,
            models: (mode == AgentMode::Ml).then_some(&self.models),
            mechanisms: &self.mechanisms,
        };
        let plans = super::plans_of(&mut self.policies, &cx, self.period, &self.cfg.id).await;
        self.scheduler.run_period(plans, &world, &self.mechanisms).await
    }

    /// Fills the world's nodes (machines reported within three periods) and app components
    /// (from the period's `intents` of app buckets), and shares the picture with the extender.
    fn place_containers(&mut self, world: &mut World, intents: &[StoredIntent]) {
        let fresh = i64::try_from(self.cfg.period.as_millis().saturating_mul(3)).unwrap_or(i64::MAX);
        let now = world.now_ms;
        self.machines.retain(|_, (at, _, _)| now - *at <= fresh.max(30_000));
        // A machine is as trusted as the node agent that speaks for it.
        let trust_of = |agent: &str| {
            let guard = self.guard.as_ref()?;
            let subject = trust::Subject::new(trust::SubjectKind::Agent, agent).ok()?;
            guard.reputation.score(&subject).map(|v| v.score)
        };
        world.nodes = self
            .machines
            .values()
            .map(|(_, agent, n)| placement::containers::Node {
                trust: trust_of(agent),
                ..n.clone()
            })
            .collect();
        let mut components: BTreeMap<(String, String), ComponentView> = BTreeMap::new();
        for i in intents {
            let (Some(app), Some(component)) = (i.source.strip_prefix("app:"), i.component.as_ref()) else {
                continue;
            };
            components
                .entry((app.to_owned(), component.clone()))
                .or_insert_with(|| ComponentView {
                    app: app.to_owned(),
                    component: component.clone(),
                    buckets: Vec::new(),
                    preferred: self.containers.preferred(app, component).map(|p| p.node),
                })
                .buckets
                .push(i.bucket.clone());
        }
        world.components = components.into_values().collect();
        let needs = world
            .components
            .iter()
            .map(|c| ((c.app.clone(), c.component.clone()), containers::needs(world, c)))
            .collect();
        let nodes = world.nodes.iter().map(|n| (n.name.clone(), n.clone())).collect();
        self.containers.refresh(needs, nodes, containers::backends(world));
    }

    /// The decision log (shared with the in-process continuum).
    #[must_use]
    pub fn log(&self) -> &DecisionLog {
        &self.log
    }
}

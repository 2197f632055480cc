//! The continuum agent: holds the northbound state (apps, intents), gives each bucket to one
//! cluster agent and sends its intent there as `application_submitted` until the cluster
//! acknowledges it, and mirrors the clusters' decisions and status so the northbound API can
//! show them. On every new session it sends that cluster its intents again: the cluster
//! acknowledges the uids it has taken without acting twice.
//!
//! Splitting buckets across clusters (`cluster_placement`): a bucket goes to a connected
//! cluster its intent permits (`clusters`, from the app's `cluster_placement.cluster_id`;
//! empty: any), with GDPR-labelled backends if the intent asks for GDPR, holding the fewest
//! buckets (ties by id). The choice is a recorded decision, and it sticks: the bucket's data
//! lives in that cluster's gateway, so a later intent goes to the same cluster, and one that
//! no longer permits it fails with a message instead of silently moving nothing.

use super::Shared;
use crate::decisions::{from_plan, DecisionLog};
use crate::intents::{Intents, StoredIntent};
use crate::link::{Envelope, Event, Session};
use crate::plan::{Explanation, Plan};
use crate::tiers::cluster::IntentAck;
use control_api::{DecisionStatus, MetricInput, OptionScore};
use serde_json::json;
use std::collections::BTreeMap;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What the northbound API hands the continuum loop.
#[derive(Debug, Clone)]
pub enum Submission {
    /// A new or changed intent (already stored).
    Intent(Box<StoredIntent>),
    /// The agents stop managing this bucket (its intent is already removed).
    Removed(String),
}

/// The policy name of the continuum's placement decisions.
pub const PLACEMENT_POLICY: &str = "cluster_placement";

/// What a cluster agent reports of its gateway in its summaries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterProfile {
    /// Backends of its gateway.
    pub backends: usize,
    /// Of those, labelled `gdpr = true`.
    pub gdpr_backends: usize,
}

/// Where a message to a cluster goes.
type Outbox = mpsc::Sender<(Event, Option<uuid::Uuid>, serde_json::Value)>;

/// The connected clusters: their sessions and what they reported.
#[derive(Default)]
struct Clusters {
    sessions: BTreeMap<String, Outbox>,
    remote: BTreeMap<String, bool>,
    profiles: BTreeMap<String, ClusterProfile>,
}

/// The continuum agent's loop; the northbound API submits intents through [`Continuum::submitter`].
pub struct Continuum {
    id: String,
    intents: Intents,
    log: DecisionLog,
    shared: Shared,
    submit_tx: mpsc::Sender<Submission>,
    submit_rx: mpsc::Receiver<Submission>,
    /// Where the clusters' anomaly reports go (`None`: logged only).
    anomalies: Option<anomaly::Anomalies>,
}

impl Continuum {
    /// A continuum agent with `intents` and `log` (its store's), reporting into `shared`.
    #[must_use]
    pub fn new(id: &str, intents: Intents, log: DecisionLog, shared: Shared) -> Self {
        let (submit_tx, submit_rx) = mpsc::channel(1024);
        Self {
            id: id.to_owned(),
            intents,
            log,
            shared,
            submit_tx,
            submit_rx,
            anomalies: None,
        }
    }

    /// Keeps the anomalies the clusters report in `store`.
    #[must_use]
    pub fn with_anomalies(mut self, store: anomaly::Anomalies) -> Self {
        self.anomalies = Some(store);
        self
    }

    /// Where the northbound API sends new intents (already stored).
    #[must_use]
    pub fn submitter(&self) -> mpsc::Sender<Submission> {
        self.submit_tx.clone()
    }

    /// Runs until `shutdown`, taking cluster sessions from `clusters`.
    pub async fn run(mut self, mut clusters: mpsc::Receiver<Session>, shutdown: CancellationToken) {
        let mut c = Clusters::default();
        let (in_tx, mut in_rx) = mpsc::channel::<(String, Option<Envelope>)>(1024);
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(s) = clusters.recv() => {
                    let peer = s.peer.id.clone();
                    tracing::info!(agent = %self.id, cluster = %peer, "continuum agent: cluster agent connected");
                    c.remote.insert(peer.clone(), s.remote);
                    let out = spawn_session(s, peer.clone(), in_tx.clone());
                    // Its intents again: the cluster acknowledges what it has taken already.
                    // One refused for no longer permitting this cluster stays with it unsent.
                    for i in self.intents.all().unwrap_or_default() {
                        let permitted = i.intent.clusters.is_empty() || i.intent.clusters.contains(&peer);
                        if i.cluster.as_deref() == Some(peer.as_str()) && permitted {
                            let _ = out.send(intent_message(&i)).await;
                        }
                    }
                    c.sessions.insert(peer, out);
                    self.dispatch_waiting(&c).await;
                }
                Some(sub) = self.submit_rx.recv() => match sub {
                    Submission::Intent(i) => self.dispatch(*i, &c).await,
                    Submission::Removed(bucket) => {
                        for out in c.sessions.values() {
                            let _ = out.send((Event::ApplicationRemoved, None, json!({"bucket": bucket}))).await;
                        }
                    }
                },
                Some((peer, env)) = in_rx.recv() => match env {
                    None => {
                        tracing::warn!(agent = %self.id, cluster = %peer, "continuum agent: cluster session ended");
                        c.sessions.remove(&peer);
                        c.profiles.remove(&peer);
                    }
                    Some(env) => {
                        let remote = c.remote.get(&peer).copied().unwrap_or(true);
                        if let Some(profile) = self.handle(remote, env) {
                            let changed = c.profiles.insert(peer, profile) != Some(profile);
                            if changed {
                                self.dispatch_waiting(&c).await;
                            }
                        }
                    }
                },
                _ = tick.tick() => {
                    self.shared.report(super::status(
                        &super::TierConfig { id: self.id.clone(), period: std::time::Duration::from_secs(5) },
                        "continuum",
                        std::time::Duration::ZERO,
                        self.intents.all().unwrap_or_default().into_iter().filter(|i| i.state == "pending").map(|i| i.plan_uid.to_string()).collect(),
                        None,
                    ));
                }
            }
        }
    }

    /// Sends the intents that wait for a cluster (none chosen yet) to one, if one will do now.
    async fn dispatch_waiting(&self, c: &Clusters) {
        for i in self.intents.all().unwrap_or_default() {
            if i.cluster.is_none() && i.state == "pending" {
                self.dispatch(i, c).await;
            }
        }
    }

    /// Sends intent `i` to its bucket's cluster, choosing one (and recording why) if it has none.
    async fn dispatch(&self, mut i: StoredIntent, c: &Clusters) {
        if i.cluster.is_none() {
            // Chosen meanwhile for an earlier intent of the same bucket.
            i.cluster = self.intents.get(&i.bucket).ok().flatten().and_then(|s| s.cluster);
        }
        let permitted = |id: &str| i.intent.clusters.is_empty() || i.intent.clusters.iter().any(|x| x == id);
        let cluster = match i.cluster.clone() {
            Some(held) if permitted(&held) => held,
            Some(held) => {
                let why = format!(
                    "bucket {} is held by cluster agent {held}, which the intent no longer permits (clusters {:?}); moving a bucket between clusters is not supported",
                    i.bucket, i.intent.clusters
                );
                tracing::warn!(agent = %self.id, bucket = %i.bucket, "continuum agent: {why}");
                if let Err(e) = self.intents.settle(&i.bucket, i.plan_uid, Some(why)) {
                    tracing::warn!(agent = %self.id, error = %e, "continuum agent: recording a refused intent");
                }
                return;
            }
            None => match self.choose(&i, c) {
                Ok((chosen, plan)) => {
                    i.cluster = Some(chosen.clone());
                    i.error = None;
                    let decision = from_plan(&plan, &self.id, DecisionStatus::Applied, "sent to the cluster agent");
                    if let Err(e) = self
                        .intents
                        .assign(&i.bucket, &chosen)
                        .and_then(|()| self.log.put(&decision))
                    {
                        tracing::warn!(agent = %self.id, error = %e, bucket = %i.bucket, "continuum agent: recording the bucket's cluster");
                        return;
                    }
                    tracing::info!(agent = %self.id, bucket = %i.bucket, cluster = %chosen, reason = %plan.explanation.reason, "continuum agent: bucket given to a cluster");
                    chosen
                }
                Err(why) => {
                    // Shown by the intent's API until a cluster will do; written once per reason.
                    if i.error.as_deref() != Some(why.as_str()) {
                        tracing::warn!(agent = %self.id, bucket = %i.bucket, "continuum agent: the intent waits: {why}");
                        if let Err(e) = self.intents.note_waiting(&i.bucket, i.plan_uid, &why) {
                            tracing::warn!(agent = %self.id, error = %e, "continuum agent: recording why an intent waits");
                        }
                    }
                    return;
                }
            },
        };
        match c.sessions.get(&cluster) {
            Some(out) => {
                let _ = out.send(intent_message(&i)).await;
            }
            None => {
                tracing::info!(agent = %self.id, bucket = %i.bucket, %cluster, "continuum agent: the bucket's cluster agent is not connected; its intent waits for it")
            }
        }
    }

    /// The cluster for `i` among the connected ones, with the plan explaining the choice; or
    /// why none will do.
    fn choose(&self, i: &StoredIntent, c: &Clusters) -> Result<(String, Plan), String> {
        if c.sessions.is_empty() {
            return Err("waiting for a cluster agent: none is connected".into());
        }
        let mut held: BTreeMap<String, usize> = BTreeMap::new();
        for other in self.intents.all().unwrap_or_default() {
            if let Some(cl) = other.cluster {
                *held.entry(cl).or_default() += 1;
            }
        }
        let mut options = Vec::new();
        let mut inputs = Vec::new();
        let mut best: Option<(usize, &String)> = None;
        for id in c.sessions.keys() {
            let load = held.get(id).copied().unwrap_or(0);
            let profile = c.profiles.get(id);
            inputs.push(MetricInput {
                metric: "buckets_held".into(),
                subject: format!("cluster/{id}"),
                value: Some(load as f64),
                window: "now".into(),
                target: None,
            });
            let refusal = if !i.intent.clusters.is_empty() && !i.intent.clusters.contains(id) {
                Some(format!("not in the permitted clusters {:?}", i.intent.clusters))
            } else if i.intent.gdpr && profile.is_none() {
                Some("has not reported its backends yet (the intent asks for GDPR)".to_owned())
            } else if i.intent.gdpr && profile.is_some_and(|p| p.gdpr_backends == 0) {
                Some("has no backend labelled gdpr = true".to_owned())
            } else {
                None
            };
            let note = refusal.clone().unwrap_or_else(|| match profile {
                Some(p) => format!("{load} bucket(s); {} backends, {} gdpr", p.backends, p.gdpr_backends),
                None => format!("{load} bucket(s); backends not reported yet"),
            });
            options.push(OptionScore {
                option: format!("cluster {id}"),
                score: refusal.is_none().then(|| -(load as f64)),
                note,
            });
            if refusal.is_none() && best.is_none_or(|(l, _)| load < l) {
                best = Some((load, id));
            }
        }
        let Some((load, chosen)) = best else {
            let why: Vec<String> = options.iter().map(|o| format!("{}: {}", o.option, o.note)).collect();
            return Err(format!(
                "waiting for a cluster agent that may hold it: {}",
                why.join("; ")
            ));
        };
        let limits = if i.intent.clusters.is_empty() {
            "any cluster may hold it".to_owned()
        } else {
            format!("its intent permits {}", i.intent.clusters.join(", "))
        };
        let gdpr = if i.intent.gdpr {
            " and has GDPR-labelled backends"
        } else {
            ""
        };
        let reason = format!(
            "Bucket {} goes to cluster agent {chosen}: {limits}, and {chosen} holds the fewest buckets ({load}) of the connected ones that may{gdpr}.",
            i.bucket
        );
        let mut plan = Plan::new(
            PLACEMENT_POLICY,
            "intent_dispatch",
            // Its own target: which cluster holds a bucket is not a change of the bucket's
            // storage, so it must not start the storage policies' cool-down.
            format!("placement/{}", i.bucket),
            json!({"bucket": i.bucket, "cluster": chosen}),
        );
        plan.bucket = Some(i.bucket.clone());
        plan.explanation = Explanation {
            trigger: format!(
                "intent of {} for bucket {}, which no cluster holds yet",
                i.source, i.bucket
            ),
            inputs,
            options,
            choice: format!("cluster {chosen}"),
            reason,
            expected: Vec::new(),
        };
        Ok((chosen.clone(), plan))
    }

    /// Takes one message of a cluster whose session is `remote` (another process); returns
    /// the cluster's profile when the message is a summary carrying one.
    fn handle(&self, remote: bool, env: Envelope) -> Option<ClusterProfile> {
        match env.event {
            Event::PlanStatusUpdate => {
                let (Some(uid), Ok(ack)) = (env.plan_uid, serde_json::from_value::<IntentAck>(env.payload)) else {
                    return None;
                };
                if let Err(e) = self.intents.settle(&ack.bucket, uid, ack.error) {
                    tracing::warn!(agent = %self.id, error = %e, "continuum agent: recording an acknowledgement");
                }
                None
            }
            Event::AnomalyDetected => {
                match serde_json::from_value::<anomaly::Verdict>(env.payload) {
                    Ok(v) => {
                        tracing::warn!(agent = %self.id, from = %env.sender, subject = %v.subject, class = ?v.class, summary = %v.summary, "continuum agent: a cluster reports an anomaly");
                        // Kept when this continuum has its own store (standalone); in-process
                        // the cluster's store is already the one served.
                        if let Some(store) = &self.anomalies {
                            store.push(v);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(agent = %self.id, from = %env.sender, error = %e, "continuum agent: an unreadable anomaly report")
                    }
                }
                None
            }
            Event::DecisionRecorded => {
                if let Ok(d) = serde_json::from_value::<control_api::Decision>(env.payload) {
                    if let Err(e) = self.log.mirror(&d) {
                        tracing::warn!(agent = %self.id, error = %e, "continuum agent: mirroring a decision");
                    }
                }
                None
            }
            Event::TelemetrySummary => {
                if let Ok(agents) =
                    serde_json::from_value::<Vec<control_api::AgentStatus>>(env.payload["agents"].clone())
                {
                    // Everything behind a remote cluster is remote; behind a local one, an
                    // agent is as remote as the cluster found it.
                    for mut a in agents {
                        a.remote |= remote;
                        self.shared.report(a);
                    }
                }
                let count = |k: &str| env.payload[k].as_u64().and_then(|n| usize::try_from(n).ok());
                Some(ClusterProfile {
                    backends: count("backends")?,
                    gdpr_backends: count("gdpr_backends")?,
                })
            }
            _ => None,
        }
    }
}

fn intent_message(i: &StoredIntent) -> (Event, Option<uuid::Uuid>, serde_json::Value) {
    (
        Event::ApplicationSubmitted,
        Some(i.plan_uid),
        serde_json::to_value(i).unwrap_or_default(),
    )
}

/// Moves a session onto two tasks' worth of channels: what to send, and what came in.
fn spawn_session(
    mut s: Session,
    peer: String,
    into: mpsc::Sender<(String, Option<Envelope>)>,
) -> mpsc::Sender<(Event, Option<uuid::Uuid>, serde_json::Value)> {
    let (out_tx, mut out_rx) = mpsc::channel::<(Event, Option<uuid::Uuid>, serde_json::Value)>(1024);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                msg = out_rx.recv() => match msg {
                    Some((event, uid, payload)) => {
                        if s.send(event, uid, payload).await.is_err() {
                            break;
                        }
                    }
                    None => break,
                },
                env = s.recv() => match env {
                    Some(env) => {
                        if into.send((peer.clone(), Some(env))).await.is_err() {
                            break;
                        }
                    }
                    None => break,
                },
            }
        }
        let _ = into.send((peer, None)).await;
    });
    out_tx
}

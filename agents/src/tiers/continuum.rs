//! The continuum agent: holds the northbound state (apps, intents), sends each intent down to
//! a cluster agent as `application_submitted` until the cluster acknowledges it, and mirrors the
//! clusters' decisions and status so the northbound API can show them. On every new session it
//! sends every intent again: the cluster acknowledges the uids it has taken without acting twice.

use super::Shared;
use crate::decisions::DecisionLog;
use crate::intents::{Intents, StoredIntent};
use crate::link::{Envelope, Event, Session};
use crate::tiers::cluster::IntentAck;
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

/// The continuum agent's loop; the northbound API submits intents through [`Continuum::submitter`].
pub struct Continuum {
    id: String,
    intents: Intents,
    log: DecisionLog,
    shared: Shared,
    submit_tx: mpsc::Sender<Submission>,
    submit_rx: mpsc::Receiver<Submission>,
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
        }
    }

    /// Where the northbound API sends new intents (already stored).
    #[must_use]
    pub fn submitter(&self) -> mpsc::Sender<Submission> {
        self.submit_tx.clone()
    }

    /// Runs until `shutdown`, taking cluster sessions from `clusters`.
    pub async fn run(mut self, mut clusters: mpsc::Receiver<Session>, shutdown: CancellationToken) {
        // Sessions by cluster id; each session's messages come in through one channel.
        let mut sessions: BTreeMap<String, mpsc::Sender<(Event, Option<uuid::Uuid>, serde_json::Value)>> =
            BTreeMap::new();
        let (in_tx, mut in_rx) = mpsc::channel::<(String, Option<Envelope>)>(1024);
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(s) = clusters.recv() => {
                    let peer = s.peer.id.clone();
                    tracing::info!(agent = %self.id, cluster = %peer, "continuum agent: cluster agent connected");
                    let out = spawn_session(s, peer.clone(), in_tx.clone());
                    // Everything again: the cluster acknowledges what it has taken already.
                    for i in self.intents.all().unwrap_or_default() {
                        let _ = out.send(intent_message(&i)).await;
                    }
                    sessions.insert(peer, out);
                }
                Some(sub) = self.submit_rx.recv() => match sub {
                    // One cluster holds each bucket: the first connected, in id order.
                    Submission::Intent(i) => match sessions.values().next() {
                        Some(out) => { let _ = out.send(intent_message(&i)).await; }
                        None => tracing::warn!(agent = %self.id, bucket = %i.bucket, "continuum agent: no cluster agent connected; the intent waits for one"),
                    },
                    Submission::Removed(bucket) => {
                        for out in sessions.values() {
                            let _ = out.send((Event::ApplicationRemoved, None, serde_json::json!({"bucket": bucket}))).await;
                        }
                    }
                },
                Some((peer, env)) = in_rx.recv() => match env {
                    None => {
                        tracing::warn!(agent = %self.id, cluster = %peer, "continuum agent: cluster session ended");
                        sessions.remove(&peer);
                    }
                    Some(env) => self.handle(&peer, env),
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

    fn handle(&self, peer: &str, env: Envelope) {
        match env.event {
            Event::PlanStatusUpdate => {
                let (Some(uid), Ok(ack)) = (env.plan_uid, serde_json::from_value::<IntentAck>(env.payload)) else {
                    return;
                };
                if let Err(e) = self.intents.settle(&ack.bucket, uid, ack.error) {
                    tracing::warn!(agent = %self.id, error = %e, "continuum agent: recording an acknowledgement");
                }
            }
            Event::DecisionRecorded => {
                if let Ok(d) = serde_json::from_value::<control_api::Decision>(env.payload) {
                    if let Err(e) = self.log.mirror(&d) {
                        tracing::warn!(agent = %self.id, error = %e, "continuum agent: mirroring a decision");
                    }
                }
            }
            Event::TelemetrySummary => {
                if let Ok(agents) =
                    serde_json::from_value::<Vec<control_api::AgentStatus>>(env.payload["agents"].clone())
                {
                    for mut a in agents {
                        a.remote |= a.id == peer || a.remote;
                        self.shared.report(a);
                    }
                }
            }
            _ => {}
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

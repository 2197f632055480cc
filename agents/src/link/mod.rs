//! The link between agent tiers: a child dials its parent (gRPC `AgentLink`, [`grpc`]) or
//! shares its process ([`local`]); either way each side holds a [`Session`] that sends and
//! receives numbered [`Envelope`]s. Heartbeats travel in-stream and never reach `recv()`.

pub mod grpc;
pub mod local;

pub use grpc::{dial, serve};
pub use local::local_pair;

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::DropGuard;
use trust::identity::{Identities, KeyPair, ReplayGuard};
use uuid::Uuid;

/// The largest message either side sends or accepts.
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;
/// Room left in a message for everything but the payload.
const ENVELOPE_OVERHEAD: usize = 16 << 10;
/// Envelopes buffered each way per session.
pub const CHANNEL_CAPACITY: usize = 256;

/// What an envelope is about; the wire names are the upstream MLSysOps `MessageEvents`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// An application descriptor arrived (continuum -> cluster).
    ApplicationSubmitted,
    /// An application was removed.
    ApplicationRemoved,
    /// A plan for the receiver to apply.
    PlanSubmitted,
    /// A plan's status changed (the receiver's `RemoteMechanism` waits for this).
    PlanStatusUpdate,
    /// A periodic summary of a tier's telemetry, sent upward.
    TelemetrySummary,
    /// Liveness only; handled by the link, never returned by [`Session::recv`].
    Heartbeat,
    /// A decision was recorded in the sender's decision log.
    DecisionRecorded,
    /// The sender's anomaly detector returned a verdict (sent up, cluster -> continuum).
    AnomalyDetected,
}

impl Event {
    /// Every event.
    pub const ALL: [Event; 8] = [
        Event::ApplicationSubmitted,
        Event::ApplicationRemoved,
        Event::PlanSubmitted,
        Event::PlanStatusUpdate,
        Event::TelemetrySummary,
        Event::Heartbeat,
        Event::DecisionRecorded,
        Event::AnomalyDetected,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::ApplicationSubmitted => "application_submitted",
            Event::ApplicationRemoved => "application_removed",
            Event::PlanSubmitted => "plan_submitted",
            Event::PlanStatusUpdate => "plan_status_update",
            Event::TelemetrySummary => "telemetry_summary",
            Event::Heartbeat => "heartbeat",
            Event::DecisionRecorded => "decision_recorded",
            Event::AnomalyDetected => "anomaly_detected",
        }
    }

    /// The event of a wire name, if known.
    pub fn from_wire(name: &str) -> Option<Event> {
        Event::ALL.into_iter().find(|e| e.as_str() == name)
    }
}

/// How far a signed envelope's timestamp may be from the receiver's clock. Generous for clock
/// skew between hosts; the nonces of this window are remembered, so a replay within it is
/// refused too.
pub const SIGNATURE_WINDOW: Duration = Duration::from_secs(120);

/// Called with the peer's id and why one of its messages (or its subscription) was refused:
/// the trust service takes it as evidence against that agent.
pub type OnRefusal = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// What a gRPC link signs with and checks against: this agent's key, the peers it knows (an
/// unknown child is enrolled on first use, since it presented the admin token; a known one
/// must keep its key; a revoked one is refused), and the nonces seen lately.
///
/// In-process links are not signed: their messages never leave the process's memory.
#[derive(Clone)]
pub struct LinkKeys {
    /// This agent's key pair.
    pub key: Arc<KeyPair>,
    /// The peers' public keys.
    pub peers: Identities,
    /// Nonces of the last [`SIGNATURE_WINDOW`].
    pub replay: Arc<ReplayGuard>,
    /// Told of every refusal.
    pub on_refusal: Option<OnRefusal>,
}

impl LinkKeys {
    /// Over `key` and `peers`, with a fresh replay guard and no refusal hook.
    #[must_use]
    pub fn new(key: KeyPair, peers: Identities) -> Self {
        Self {
            key: Arc::new(key),
            peers,
            replay: Arc::new(ReplayGuard::new(SIGNATURE_WINDOW)),
            on_refusal: None,
        }
    }

    /// Reports a refusal to the hook (and the log).
    pub(crate) fn refused(&self, peer: &str, why: &str) {
        tracing::warn!(peer = %peer, reason = %why, "agent link: refused");
        if let Some(hook) = &self.on_refusal {
            hook(peer, why);
        }
    }
}

/// One message between two agents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The sending agent's id.
    pub sender: String,
    /// Numbered by the sender from 1 per session; heartbeats carry 0.
    pub seq: u64,
    /// What it is about.
    pub event: Event,
    /// The plan it concerns, if any.
    pub plan_uid: Option<Uuid>,
    /// The event's body.
    pub payload: Value,
}

/// An agent's identity on the link.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AgentId {
    /// Unique among the agents (ASCII: it travels in gRPC metadata).
    pub id: String,
    /// `node`, `cluster` or `continuum`.
    pub tier: String,
}

/// One side of a live link to a peer agent; dropping it closes the link.
pub struct Session {
    /// The agent at the other end.
    pub peer: AgentId,
    /// Whether the peer runs in another process (a gRPC link), as `GET /api/v1/agents` says.
    pub remote: bool,
    me: String,
    seq: u64,
    out: mpsc::Sender<Envelope>,
    inbox: mpsc::Receiver<Envelope>,
    _end: Option<DropGuard>,
}

impl Session {
    /// Sends an event, numbering it; returns its seq. Fails when the session has ended or the
    /// payload would not fit in a message.
    pub async fn send(&mut self, event: Event, plan_uid: Option<Uuid>, payload: Value) -> Result<u64> {
        let size = json_len(&payload);
        if size > MAX_MESSAGE_BYTES - ENVELOPE_OVERHEAD {
            return Err(link_err(
                format!("send {} to {}", event.as_str(), self.peer.id),
                format!("payload of {size} bytes exceeds the {MAX_MESSAGE_BYTES}-byte message limit"),
            ));
        }
        self.seq += 1;
        let env = Envelope {
            sender: self.me.clone(),
            seq: self.seq,
            event,
            plan_uid,
            payload,
        };
        self.out.send(env).await.map_err(|_| {
            link_err(
                format!("send {} to {}", event.as_str(), self.peer.id),
                "the session has ended",
            )
        })?;
        Ok(self.seq)
    }

    /// The next envelope from the peer; `None` once the session has ended.
    pub async fn recv(&mut self) -> Option<Envelope> {
        loop {
            let env = self.inbox.recv().await?;
            if env.event != Event::Heartbeat {
                return Some(env);
            }
        }
    }
}

/// The byte length of a value's JSON text, without building the text.
fn json_len(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Writing a `Value` into an infallible writer cannot fail.
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

fn link_err(what: impl Into<String>, message: impl Into<String>) -> Error {
    Error::Link {
        what: what.into(),
        message: message.into(),
    }
}

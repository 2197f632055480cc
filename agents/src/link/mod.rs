//! TEMPORARY compile stub of the link API (replaced by the real link module).
#![allow(missing_docs, clippy::all)]
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    ApplicationSubmitted,
    ApplicationRemoved,
    PlanSubmitted,
    PlanStatusUpdate,
    TelemetrySummary,
    Heartbeat,
    DecisionRecorded,
}
#[derive(Debug, Clone)]
pub struct Envelope {
    pub sender: String,
    pub seq: u64,
    pub event: Event,
    pub plan_uid: Option<uuid::Uuid>,
    pub payload: serde_json::Value,
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentId {
    pub id: String,
    pub tier: String,
}
pub struct Session {
    pub peer: AgentId,
    tx: mpsc::Sender<Envelope>,
    rx: mpsc::Receiver<Envelope>,
    me: String,
    seq: u64,
}
impl Session {
    pub async fn send(
        &mut self,
        event: Event,
        plan_uid: Option<uuid::Uuid>,
        payload: serde_json::Value,
    ) -> crate::error::Result<()> {
        self.seq += 1;
        self.tx
            .send(Envelope {
                sender: self.me.clone(),
                seq: self.seq,
                event,
                plan_uid,
                payload,
            })
            .await
            .map_err(|_| crate::Error::Link {
                what: "send".into(),
                message: "closed".into(),
            })
    }
    pub async fn recv(&mut self) -> Option<Envelope> {
        self.rx.recv().await
    }
}
pub fn local_pair(parent: AgentId, child: AgentId) -> (Session, Session) {
    let (a, b) = mpsc::channel(256);
    let (c, d) = mpsc::channel(256);
    (
        Session {
            peer: child.clone(),
            tx: a,
            rx: d,
            me: parent.id.clone(),
            seq: 0,
        },
        Session {
            peer: parent,
            tx: c,
            rx: b,
            me: child.id,
            seq: 0,
        },
    )
}
pub fn dial(
    _parent_url: String,
    _token: std::sync::Arc<str>,
    _me: AgentId,
    _heartbeat: std::time::Duration,
    _shutdown: tokio_util::sync::CancellationToken,
) -> mpsc::Receiver<Session> {
    mpsc::channel(1).1
}
pub async fn serve(
    _l: tokio::net::TcpListener,
    _token: std::sync::Arc<str>,
    _me: AgentId,
    _heartbeat: std::time::Duration,
    _shutdown: tokio_util::sync::CancellationToken,
) -> crate::error::Result<mpsc::Receiver<Session>> {
    Ok(mpsc::channel(1).1)
}

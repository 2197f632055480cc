//! The gRPC `AgentLink` (proto/agentlink.proto): the parent [`serve`]s, each child [`dial`]s it,
//! subscribes, then holds one bidirectional `Session` stream; the child's id and tier travel as
//! `agent-id`/`agent-tier` metadata, the admin token as `authorization: Bearer`.
//!
//! Each session runs two tasks: a reader (wire -> inbox; closes the session after
//! [`SILENT_PERIODS`] heartbeat periods without a message) and a writer (outbox and
//! heartbeats -> wire). Either ending ends the other, and the peer sees its stream end.
//!
//! Every envelope, heartbeats included, is signed by its sender's Ed25519 key ([`LinkKeys`])
//! over all its fields plus a timestamp and a nonce. The reader drops an envelope whose
//! signature fails, whose timestamp is outside [`super::SIGNATURE_WINDOW`] or whose nonce it
//! has seen (a replay), and closes the session when the peer's identity is revoked or
//! unknown; each refusal is reported as evidence. The keys are exchanged at subscription
//! (trust on first use, under the admin token) and pinned from then on.

use super::{link_err, AgentId, Envelope, Event, LinkKeys, Session, CHANNEL_CAPACITY, MAX_MESSAGE_BYTES};
use crate::error::Result;
use control_api::trust::IdentityKind;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Endpoint, Server};
use tonic::{Request, Response, Status, Streaming};
use trust::identity::{nonce, signed_bytes, PublicKey, Signature, VerifyError};
use uuid::Uuid;

/// The protobuf messages and the `AgentLink` client and server, generated from
/// proto/agentlink.proto (tests/proto.rs checks the file is current and rewrites it).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    include!("agentlink.v1.rs");
}

use pb::agent_link_client::AgentLinkClient;
use pb::agent_link_server::{AgentLink, AgentLinkServer};

/// Heartbeat periods without any message after which a session is closed.
pub const SILENT_PERIODS: u32 = 3;
/// The child's first wait before reconnecting; doubled after each failure.
pub const BACKOFF_MIN: Duration = Duration::from_millis(500);
/// The longest wait between reconnection attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// How long the child waits for the parent to answer a call that opens a session.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The metadata keys naming the child on its `Session` call.
const AGENT_ID_KEY: &str = "agent-id";
const AGENT_TIER_KEY: &str = "agent-tier";
/// The longest id or tier accepted.
const MAX_ID_LEN: usize = 256;

/// Serves `AgentLink` on `listener` as the parent `me`, yielding one [`Session`] per connected
/// child until `shutdown` is cancelled (which also ends every session).
pub async fn serve(
    listener: TcpListener,
    token: Arc<str>,
    me: AgentId,
    heartbeat: Duration,
    keys: LinkKeys,
    shutdown: CancellationToken,
) -> Result<mpsc::Receiver<Session>> {
    if token.is_empty() {
        return Err(link_err("serve", "an empty admin token would admit anyone"));
    }
    if heartbeat.is_zero() {
        return Err(link_err("serve", "the heartbeat period must be positive"));
    }
    let addr = listener
        .local_addr()
        .map_err(|e| link_err("serve", format!("the listener's address: {e}")))?;
    let (sessions, rx) = mpsc::channel(16);
    let service = Parent {
        token,
        me: me.clone(),
        heartbeat,
        sessions,
        keys,
        subscribed: Mutex::default(),
        shutdown: shutdown.clone(),
    };
    let service = AgentLinkServer::new(service)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tracing::info!(%addr, agent = %me.id, tier = %me.tier, "agent link: serving");
    tokio::spawn(async move {
        let served = Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
            .await;
        match served {
            Ok(()) => tracing::info!(%addr, "agent link: server stopped"),
            Err(e) => tracing::error!(%addr, error = %e, "agent link: server failed"),
        }
    });
    Ok(rx)
}

/// Dials the parent at `parent_url` (`http://host:port`) as the child `me`, yielding a
/// [`Session`] each time one opens: after a session ends or an attempt fails it reconnects,
/// waiting [`BACKOFF_MIN`] doubling to [`BACKOFF_MAX`]. The session keeps the parent's
/// heartbeat period (`heartbeat` only if the parent names none). Stops when `shutdown` is
/// cancelled or the receiver is dropped.
pub fn dial(
    parent_url: String,
    token: Arc<str>,
    me: AgentId,
    heartbeat: Duration,
    keys: LinkKeys,
    shutdown: CancellationToken,
) -> mpsc::Receiver<Session> {
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(dial_loop(parent_url, token, me, heartbeat, keys, shutdown, tx));
    rx
}

async fn dial_loop(
    parent_url: String,
    token: Arc<str>,
    me: AgentId,
    heartbeat: Duration,
    keys: LinkKeys,
    shutdown: CancellationToken,
    tx: mpsc::Sender<Session>,
) {
    // Checked once: none of these change between attempts, so retrying could not help.
    let child = match Child::new(&parent_url, &token, &me, heartbeat, keys) {
        Ok(c) => c,
        Err(why) => {
            tracing::error!(parent = %parent_url, agent = %me.id, error = %why, "agent link: cannot dial");
            return;
        }
    };
    let mut backoff = BACKOFF_MIN;
    loop {
        let attempt = tokio::select! {
            () = shutdown.cancelled() => return,
            r = child.connect(&shutdown) => r,
        };
        match attempt {
            Ok((session, end)) => {
                tracing::info!(parent = %parent_url, peer = %session.peer.id, "agent link: session open");
                if tx.send(session).await.is_err() {
                    return;
                }
                backoff = BACKOFF_MIN;
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tx.closed() => return,
                    () = end.cancelled() => {}
                }
                tracing::info!(parent = %parent_url, "agent link: session ended, reconnecting");
            }
            Err(why) => tracing::warn!(
                parent = %parent_url, error = %why, retry_in_ms = backoff.as_millis() as u64,
                "agent link: cannot open a session with the parent"
            ),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tx.closed() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// What a child needs for every attempt, checked once.
struct Child {
    endpoint: Endpoint,
    auth: MetadataValue<Ascii>,
    id: MetadataValue<Ascii>,
    tier: MetadataValue<Ascii>,
    me: AgentId,
    heartbeat: Duration,
    keys: LinkKeys,
}

impl Child {
    fn new(parent_url: &str, token: &str, me: &AgentId, heartbeat: Duration, keys: LinkKeys) -> Result<Self, String> {
        if token.is_empty() {
            return Err("the admin token is empty".into());
        }
        if heartbeat.is_zero() {
            return Err("the heartbeat period must be positive".into());
        }
        let endpoint = Endpoint::from_shared(parent_url.to_owned())
            .map_err(|e| format!("parent url: {e}"))?
            .connect_timeout(CALL_TIMEOUT)
            .tcp_nodelay(true);
        let mut auth = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|_| "the admin token is not printable ASCII".to_owned())?;
        auth.set_sensitive(true);
        check_id("agent id", &me.id).map_err(|s| s.message().to_owned())?;
        check_id("agent tier", &me.tier).map_err(|s| s.message().to_owned())?;
        let ascii = |v: &str| MetadataValue::try_from(v).map_err(|e| format!("{v:?}: {e}"));
        Ok(Child {
            endpoint,
            auth,
            id: ascii(&me.id)?,
            tier: ascii(&me.tier)?,
            me: me.clone(),
            heartbeat,
            keys,
        })
    }

    /// Subscribes and opens a session; returns it and the token that ends it.
    async fn connect(&self, shutdown: &CancellationToken) -> Result<(Session, CancellationToken), String> {
        let channel = self.endpoint.connect().await.map_err(|e| format!("connect: {e}"))?;
        let mut client = AgentLinkClient::new(channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);

        let mut req = Request::new(pb::SubscribeReq {
            agent_id: self.me.id.clone(),
            tier: self.me.tier.clone(),
            public_key: self.keys.key.public_key().0.to_vec(),
        });
        req.metadata_mut().insert("authorization", self.auth.clone());
        let ack = tokio::time::timeout(CALL_TIMEOUT, client.subscribe(req))
            .await
            .map_err(|_| "subscribe: no answer".to_owned())?
            .map_err(|s| describe("subscribe", &s))?
            .into_inner();
        // The parent's key, pinned on first use: a parent that shows another key later (or
        // was revoked here) is not talked to.
        check_id("parent_id", &ack.parent_id).map_err(|s| s.message().to_owned())?;
        let parent_key = public_key(&ack.public_key).map_err(|why| format!("subscribe: the parent's {why}"))?;
        if let Err(e) = self
            .keys
            .peers
            .first_use(&ack.parent_id, IdentityKind::Agent, &parent_key)
        {
            let why = format!("parent {}: {e}", ack.parent_id);
            self.keys.refused(&ack.parent_id, &why);
            return Err(why);
        }
        let period = if ack.heartbeat_ms > 0 {
            Duration::from_millis(ack.heartbeat_ms)
        } else if ack.heartbeat_secs > 0 {
            Duration::from_secs(ack.heartbeat_secs.into())
        } else {
            self.heartbeat
        };

        let (wire_tx, wire_rx) = mpsc::channel(CHANNEL_CAPACITY);
        let mut req = Request::new(ReceiverStream::new(wire_rx).map_while(Result::ok));
        let md = req.metadata_mut();
        md.insert("authorization", self.auth.clone());
        md.insert(AGENT_ID_KEY, self.id.clone());
        md.insert(AGENT_TIER_KEY, self.tier.clone());
        let incoming = tokio::time::timeout(CALL_TIMEOUT, client.session(req))
            .await
            .map_err(|_| "session: no answer".to_owned())?
            .map_err(|s| describe("session", &s))?
            .into_inner();

        let end = shutdown.child_token();
        let peer = AgentId {
            id: ack.parent_id,
            tier: ack.parent_tier,
        };
        let session = spawn_session(
            &self.me.id,
            peer,
            incoming,
            wire_tx,
            period,
            self.keys.clone(),
            end.clone(),
        );
        // The connection lives as long as the session, not only as long as this call.
        let until = end.clone();
        tokio::spawn(async move {
            until.cancelled().await;
            drop(channel);
        });
        Ok((session, end))
    }
}

/// The parent's side of the service.
struct Parent {
    token: Arc<str>,
    me: AgentId,
    heartbeat: Duration,
    sessions: mpsc::Sender<Session>,
    keys: LinkKeys,
    subscribed: Mutex<HashSet<String>>,
    shutdown: CancellationToken,
}

#[tonic::async_trait]
impl AgentLink for Parent {
    async fn subscribe(&self, req: Request<pb::SubscribeReq>) -> Result<Response<pb::SubscribeAck>, Status> {
        check_token(&req, &self.token)?;
        let req = req.into_inner();
        check_id("agent_id", &req.agent_id)?;
        check_id("tier", &req.tier)?;
        let key = public_key(&req.public_key).map_err(|why| Status::invalid_argument(format!("public_key: {why}")))?;
        // Trust on first use, under the admin token; afterwards the key is pinned.
        if let Err(e) = self.keys.peers.first_use(&req.agent_id, IdentityKind::Agent, &key) {
            let why = e.to_string();
            self.keys.refused(&req.agent_id, &why);
            return Err(Status::permission_denied(why));
        }
        tracing::info!(child = %req.agent_id, tier = %req.tier, "agent link: child subscribed");
        self.subscribed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(req.agent_id);
        Ok(Response::new(pb::SubscribeAck {
            parent_id: self.me.id.clone(),
            heartbeat_secs: u32::try_from(self.heartbeat.as_secs_f64().ceil() as u64).unwrap_or(u32::MAX),
            parent_tier: self.me.tier.clone(),
            heartbeat_ms: u64::try_from(self.heartbeat.as_millis()).unwrap_or(u64::MAX).max(1),
            public_key: self.keys.key.public_key().0.to_vec(),
        }))
    }

    type SessionStream = ReceiverStream<Result<pb::Envelope, Status>>;

    async fn session(&self, req: Request<Streaming<pb::Envelope>>) -> Result<Response<Self::SessionStream>, Status> {
        check_token(&req, &self.token)?;
        let id = metadata(&req, AGENT_ID_KEY)?;
        let tier = metadata(&req, AGENT_TIER_KEY)?;
        let known = self
            .subscribed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&id);
        if !known {
            return Err(Status::failed_precondition(format!(
                "agent {id} opened a session without subscribing first"
            )));
        }
        let (wire_tx, wire_rx) = mpsc::channel(CHANNEL_CAPACITY);
        let peer = AgentId { id, tier };
        let end = self.shutdown.child_token();
        let session = spawn_session(
            &self.me.id,
            peer,
            req.into_inner(),
            wire_tx,
            self.heartbeat,
            self.keys.clone(),
            end,
        );
        tokio::select! {
            sent = self.sessions.send(session) => {
                if sent.is_err() {
                    return Err(Status::unavailable("the parent agent takes no sessions"));
                }
            }
            () = self.shutdown.cancelled() => {
                return Err(Status::unavailable("the parent agent is shutting down"));
            }
        }
        Ok(Response::new(ReceiverStream::new(wire_rx)))
    }
}

/// Checks the bearer token in constant time; the answer never repeats what was presented.
fn check_token<T>(req: &Request<T>, token: &str) -> Result<(), Status> {
    let presented = req
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        None => Err(Status::unauthenticated("missing `authorization: Bearer` admin token")),
        Some(p) if bool::from(p.as_bytes().ct_eq(token.as_bytes())) => Ok(()),
        Some(_) => Err(Status::unauthenticated("wrong admin token")),
    }
}

fn check_id(field: &str, v: &str) -> Result<(), Status> {
    if v.is_empty() || v.len() > MAX_ID_LEN || !v.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Status::invalid_argument(format!(
            "{field} must be 1 to {MAX_ID_LEN} printable ASCII characters without spaces"
        )));
    }
    Ok(())
}

fn metadata<T>(req: &Request<T>, key: &str) -> Result<String, Status> {
    let v = req
        .metadata()
        .get(key)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Status::invalid_argument(format!("missing `{key}` metadata")))?;
    check_id(key, v)?;
    Ok(v.to_owned())
}

/// A status for a log line: the code and message only (never the metadata).
fn describe(call: &str, s: &Status) -> String {
    format!("{call}: {:?}: {}", s.code(), s.message())
}

/// Starts the reader and writer of one session and returns its [`Session`]; cancelling `end`
/// (or dropping the `Session`) stops both.
fn spawn_session(
    me: &str,
    peer: AgentId,
    mut incoming: Streaming<pb::Envelope>,
    wire: mpsc::Sender<Result<pb::Envelope, Status>>,
    heartbeat: Duration,
    keys: LinkKeys,
    end: CancellationToken,
) -> Session {
    let (out_tx, mut out_rx) = mpsc::channel::<Envelope>(CHANNEL_CAPACITY);
    let (in_tx, in_rx) = mpsc::channel(CHANNEL_CAPACITY);

    let (stop, who, checker) = (end.clone(), peer.clone(), keys.clone());
    tokio::spawn(async move {
        let silence = heartbeat * SILENT_PERIODS;
        loop {
            // Only the wait for the wire counts as silence: a full inbox is our slowness.
            let next = tokio::select! {
                () = stop.cancelled() => break,
                r = tokio::time::timeout(silence, incoming.message()) => r,
            };
            let msg = match next {
                Err(_) => {
                    tracing::warn!(peer = %who.id, silent_ms = silence.as_millis() as u64,
                        "agent link: peer silent, closing the session");
                    break;
                }
                Ok(Ok(None)) => break,
                Ok(Err(s)) => {
                    tracing::info!(peer = %who.id, error = %describe("session", &s),
                        "agent link: session stream failed");
                    break;
                }
                Ok(Ok(Some(m))) => m,
            };
            if let Err(e) = verify(&msg, &who, &checker) {
                checker.refused(&who.id, &e.to_string());
                match e {
                    // Not (or no longer) someone to talk to.
                    VerifyError::Revoked(_) | VerifyError::Unknown(_) => break,
                    _ => continue,
                }
            }
            let env = match decode(msg, &who) {
                Ok(env) if env.event == Event::Heartbeat => continue,
                Ok(env) => env,
                Err(why) => {
                    tracing::warn!(peer = %who.id, error = %why, "agent link: dropped a bad envelope");
                    continue;
                }
            };
            tokio::select! {
                () = stop.cancelled() => break,
                sent = in_tx.send(env) => if sent.is_err() { break },
            }
        }
        stop.cancel();
    });

    let (stop, sender) = (end.clone(), me.to_owned());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(heartbeat);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let msg = tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => pb::Envelope {
                    sender: sender.clone(),
                    seq: 0,
                    event: Event::Heartbeat.as_str().to_owned(),
                    ..pb::Envelope::default()
                },
                env = out_rx.recv() => match env {
                    Some(env) => encode(env),
                    None => break,
                },
            };
            let msg = sign(msg, &keys);
            tokio::select! {
                () = stop.cancelled() => break,
                sent = wire.send(Ok(msg)) => if sent.is_err() { break },
            }
        }
        stop.cancel();
    });

    Session {
        peer,
        remote: true,
        me: me.to_owned(),
        seq: 0,
        out: out_tx,
        inbox: in_rx,
        _end: Some(end.drop_guard()),
    }
}

fn encode(env: Envelope) -> pb::Envelope {
    pb::Envelope {
        sender: env.sender,
        seq: env.seq,
        event: env.event.as_str().to_owned(),
        plan_uid: env.plan_uid.map(|u| u.to_string()).unwrap_or_default(),
        json_payload: env.payload.to_string(),
        ..pb::Envelope::default()
    }
}

/// The bytes an envelope's signature covers: every field but the signature, length-prefixed.
#[must_use]
pub fn signed_part(m: &pb::Envelope) -> Vec<u8> {
    signed_bytes(&[
        m.sender.as_bytes(),
        &m.seq.to_be_bytes(),
        m.event.as_bytes(),
        m.plan_uid.as_bytes(),
        m.json_payload.as_bytes(),
        &m.timestamp_ms.to_be_bytes(),
        &m.nonce,
    ])
}

/// Stamps, numbers once (nonce) and signs `m` with this agent's key.
#[must_use]
pub fn sign(mut m: pb::Envelope, keys: &LinkKeys) -> pb::Envelope {
    m.timestamp_ms = u64::try_from(crate::world::now_ms()).unwrap_or(0);
    m.nonce = nonce().to_vec();
    m.signature = keys.key.sign(&signed_part(&m)).0.to_vec();
    m
}

/// Checks `m` came from `peer` unaltered, lately, and only once.
fn verify(m: &pb::Envelope, peer: &AgentId, keys: &LinkKeys) -> Result<(), VerifyError> {
    let signature = <[u8; 64]>::try_from(m.signature.as_slice())
        .map(Signature)
        .map_err(|_| VerifyError::BadSignature(peer.id.clone()))?;
    // The peer is the session's, whatever the envelope claims (decode refuses a mismatch).
    keys.peers.verify(&peer.id, &signed_part(m), &signature)?;
    let nonce = <[u8; 16]>::try_from(m.nonce.as_slice()).map_err(|_| VerifyError::BadSignature(peer.id.clone()))?;
    let now = u64::try_from(crate::world::now_ms()).unwrap_or(0);
    keys.replay.check(&peer.id, m.timestamp_ms, nonce, now)
}

/// A public key from the wire.
fn public_key(bytes: &[u8]) -> Result<PublicKey, String> {
    <[u8; 32]>::try_from(bytes)
        .map(PublicKey)
        .map_err(|_| format!("public key must be 32 bytes, got {}", bytes.len()))
}

/// The envelope a peer sent, or why it is unusable (peer-controlled text is clipped).
fn decode(m: pb::Envelope, peer: &AgentId) -> Result<Envelope, String> {
    let event = Event::from_wire(&m.event).ok_or_else(|| format!("unknown event {:?}", clip(&m.event)))?;
    if m.sender != peer.id {
        return Err(format!("sender {:?} is not the session's peer", clip(&m.sender)));
    }
    let plan_uid = match m.plan_uid.as_str() {
        "" => None,
        s => Some(Uuid::parse_str(s).map_err(|e| format!("plan_uid {:?}: {e}", clip(s)))?),
    };
    let payload = match m.json_payload.as_str() {
        "" => Value::Null,
        s => serde_json::from_str(s).map_err(|e| format!("json_payload of {}: {e}", event.as_str()))?,
    };
    Ok(Envelope {
        sender: m.sender,
        seq: m.seq,
        event,
        plan_uid,
        payload,
    })
}

fn clip(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

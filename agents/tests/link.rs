//! The agent link over real TCP on 127.0.0.1 (and in-process): subscription, envelopes both
//! ways, the admin token, reconnection after the parent restarts, and silent peers.

use agents::link::grpc::pb;
use agents::link::{self, AgentId, Event, LinkKeys, Session};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use trust::identity::{Identities, KeyPair, PublicKey, ReplayGuard};
use uuid::Uuid;

const TOKEN: &str = "s3cret-admin-token";
/// Generous: these bound how long a test waits for something that should happen, not speed.
const WAIT: Duration = Duration::from_secs(10);

fn parent() -> AgentId {
    AgentId {
        id: "cluster-1".into(),
        tier: "cluster".into(),
    }
}

fn child() -> AgentId {
    AgentId {
        id: "node-a".into(),
        tier: "node".into(),
    }
}

/// The parent's keys: the same across a restart (the child pins them), fresh per test process.
fn parent_keys() -> LinkKeys {
    static KEYS: std::sync::OnceLock<(Arc<KeyPair>, PublicKey)> = std::sync::OnceLock::new();
    let (key, _) = KEYS.get_or_init(|| {
        let k = KeyPair::generate();
        let p = k.public_key();
        (Arc::new(k), p)
    });
    LinkKeys {
        key: key.clone(),
        peers: Identities::in_memory(),
        replay: Arc::new(ReplayGuard::new(link::SIGNATURE_WINDOW)),
        on_refusal: None,
    }
}

fn child_keys() -> LinkKeys {
    LinkKeys::new(KeyPair::generate(), Identities::in_memory())
}

async fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

async fn next(rx: &mut mpsc::Receiver<Session>) -> Session {
    timeout(WAIT, rx.recv())
        .await
        .expect("no session in time")
        .expect("session source ended")
}

/// A gRPC parent and a dialling child; returns (parent's session, child's session, parent's
/// session source, child's session source).
struct Grpc {
    addr: SocketAddr,
    served: mpsc::Receiver<Session>,
    dialled: mpsc::Receiver<Session>,
    parent_stop: CancellationToken,
    child_stop: CancellationToken,
}

async fn grpc(heartbeat: Duration) -> Grpc {
    let (l, addr) = listener().await;
    let parent_stop = CancellationToken::new();
    let child_stop = CancellationToken::new();
    let served = link::serve(l, TOKEN.into(), parent(), heartbeat, parent_keys(), parent_stop.clone())
        .await
        .unwrap();
    let dialled = link::dial(
        format!("http://{addr}"),
        TOKEN.into(),
        child(),
        heartbeat,
        child_keys(),
        child_stop.clone(),
    );
    Grpc {
        addr,
        served,
        dialled,
        parent_stop,
        child_stop,
    }
}

/// The body both transports must pass: ids, envelopes both ways with increasing seq and the
/// plan and payload intact, and the end of the session seen by the other side.
async fn exchange(mut up: Session, mut down: Session) {
    assert_eq!(up.peer, child());
    assert_eq!(down.peer, parent());

    let plan = Uuid::now_v7();
    let mut last = 0;
    for i in 0..5 {
        let seq = down
            .send(
                Event::TelemetrySummary,
                None,
                json!({"bucket": "photos", "p95_ms": 40 + i}),
            )
            .await
            .unwrap();
        assert!(seq > last, "seq {seq} after {last}");
        last = seq;
    }
    let seq = down
        .send(Event::PlanStatusUpdate, Some(plan), json!({"status": "Success"}))
        .await
        .unwrap();
    let mut seen = 0;
    for i in 0..5 {
        let env = timeout(WAIT, up.recv()).await.unwrap().unwrap();
        assert_eq!(env.sender, "node-a");
        assert_eq!(env.event, Event::TelemetrySummary);
        assert_eq!(env.plan_uid, None);
        assert_eq!(env.payload, json!({"bucket": "photos", "p95_ms": 40 + i}));
        assert!(env.seq > seen);
        seen = env.seq;
    }
    let env = timeout(WAIT, up.recv()).await.unwrap().unwrap();
    assert_eq!(
        (env.event, env.plan_uid, env.seq),
        (Event::PlanStatusUpdate, Some(plan), seq)
    );
    assert_eq!(env.payload, json!({"status": "Success"}));

    let big = json!({"cmd": {"policy": "x".repeat(100_000), "list": [1, 2.5, null, true]}});
    let s1 = up.send(Event::PlanSubmitted, Some(plan), big.clone()).await.unwrap();
    let s2 = up.send(Event::ApplicationRemoved, None, json!(null)).await.unwrap();
    assert!(s2 > s1);
    let env = timeout(WAIT, down.recv()).await.unwrap().unwrap();
    assert_eq!(
        (env.sender.as_str(), env.event, env.seq),
        ("cluster-1", Event::PlanSubmitted, s1)
    );
    assert_eq!((env.plan_uid, env.payload), (Some(plan), big));
    let env = timeout(WAIT, down.recv()).await.unwrap().unwrap();
    assert_eq!(
        (env.event, env.seq, env.payload),
        (Event::ApplicationRemoved, s2, json!(null))
    );

    // Too large for one message: refused at the sender, and the session goes on.
    let huge = json!("y".repeat(link::MAX_MESSAGE_BYTES));
    let err = down.send(Event::TelemetrySummary, None, huge).await.unwrap_err();
    assert!(err.to_string().contains("message limit"), "{err}");
    down.send(Event::DecisionRecorded, None, json!({"id": 7}))
        .await
        .unwrap();
    let env = timeout(WAIT, up.recv()).await.unwrap().unwrap();
    assert_eq!((env.event, env.payload), (Event::DecisionRecorded, json!({"id": 7})));

    drop(down);
    assert!(
        timeout(WAIT, up.recv()).await.unwrap().is_none(),
        "parent still sees a session"
    );
    assert!(up.send(Event::Heartbeat, None, json!(null)).await.is_err());
}

#[tokio::test]
async fn local_pair_exchanges_envelopes() {
    let (up, down) = link::local_pair(parent(), child());
    exchange(up, down).await;
}

#[tokio::test]
async fn grpc_pair_exchanges_envelopes() {
    let mut g = grpc(Duration::from_secs(1)).await;
    let down = next(&mut g.dialled).await;
    let up = next(&mut g.served).await;
    exchange(up, down).await;
    g.child_stop.cancel();
    g.parent_stop.cancel();
}

#[tokio::test]
async fn heartbeats_keep_an_idle_session_open_and_never_reach_recv() {
    // Not shorter: on a loaded machine a stall of 3 periods would close the session.
    let heartbeat = Duration::from_millis(400);
    let mut g = grpc(heartbeat).await;
    let mut down = next(&mut g.dialled).await;
    let mut up = next(&mut g.served).await;
    // Six periods with nothing but heartbeats: neither side hears anything, neither closes.
    assert!(timeout(heartbeat * 6, up.recv()).await.is_err());
    assert!(timeout(heartbeat, down.recv()).await.is_err());
    down.send(Event::TelemetrySummary, None, json!(1)).await.unwrap();
    let env = timeout(WAIT, up.recv()).await.unwrap().unwrap();
    assert_eq!((env.event, env.seq), (Event::TelemetrySummary, 1));
    g.child_stop.cancel();
    g.parent_stop.cancel();
}

#[tokio::test]
async fn wrong_or_missing_token_is_refused_and_yields_no_session() {
    let (l, addr) = listener().await;
    let stop = CancellationToken::new();
    let mut served = link::serve(
        l,
        TOKEN.into(),
        parent(),
        Duration::from_secs(1),
        parent_keys(),
        stop.clone(),
    )
    .await
    .unwrap();
    let mut dialled = link::dial(
        format!("http://{addr}"),
        "not-the-token".into(),
        child(),
        Duration::from_secs(1),
        child_keys(),
        stop.clone(),
    );
    assert!(
        timeout(Duration::from_secs(3), dialled.recv()).await.is_err(),
        "a session opened"
    );
    assert!(served.try_recv().is_err(), "the parent yielded a session");

    // The raw calls: Unauthenticated, and the message repeats no token.
    let mut raw = pb::agent_link_client::AgentLinkClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    for auth in [Some("Bearer not-the-token"), Some("Basic s3cret-admin-token"), None] {
        let mut req = tonic::Request::new(pb::SubscribeReq {
            agent_id: "node-a".into(),
            tier: "node".into(),
            ..pb::SubscribeReq::default()
        });
        if let Some(a) = auth {
            req.metadata_mut().insert("authorization", a.parse().unwrap());
        }
        let status = raw.subscribe(req).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{auth:?}");
        assert!(!status.message().contains("not-the-token"), "{}", status.message());
        assert!(!status.message().contains(TOKEN), "{}", status.message());
    }
    let mut req = tonic::Request::new(futures::stream::pending::<pb::Envelope>());
    req.metadata_mut()
        .insert("authorization", "Bearer nope".parse().unwrap());
    req.metadata_mut().insert("agent-id", "node-a".parse().unwrap());
    req.metadata_mut().insert("agent-tier", "node".parse().unwrap());
    let status = raw.session(req).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert!(served.try_recv().is_err(), "the parent yielded a session");
    stop.cancel();
}

/// A parent that refuses every subscription, counting them.
struct Refuser(Arc<AtomicUsize>);

#[tonic::async_trait]
impl pb::agent_link_server::AgentLink for Refuser {
    async fn subscribe(
        &self,
        _: tonic::Request<pb::SubscribeReq>,
    ) -> Result<tonic::Response<pb::SubscribeAck>, tonic::Status> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Err(tonic::Status::unauthenticated("wrong admin token"))
    }

    type SessionStream = futures::stream::Pending<Result<pb::Envelope, tonic::Status>>;

    async fn session(
        &self,
        _: tonic::Request<tonic::Streaming<pb::Envelope>>,
    ) -> Result<tonic::Response<Self::SessionStream>, tonic::Status> {
        Err(tonic::Status::unauthenticated("wrong admin token"))
    }
}

static MUTE_KEY: std::sync::OnceLock<PublicKey> = std::sync::OnceLock::new();

/// A parent that accepts the child, then never sends a thing (not even heartbeats).
struct Mute;

#[tonic::async_trait]
impl pb::agent_link_server::AgentLink for Mute {
    async fn subscribe(
        &self,
        _: tonic::Request<pb::SubscribeReq>,
    ) -> Result<tonic::Response<pb::SubscribeAck>, tonic::Status> {
        Ok(tonic::Response::new(pb::SubscribeAck {
            parent_id: "mute".into(),
            heartbeat_secs: 1,
            parent_tier: "cluster".into(),
            heartbeat_ms: 200,
            // The same key on every subscription: the child pins it.
            public_key: MUTE_KEY.get_or_init(|| KeyPair::generate().public_key()).0.to_vec(),
        }))
    }

    type SessionStream = futures::stream::Pending<Result<pb::Envelope, tonic::Status>>;

    async fn session(
        &self,
        _: tonic::Request<tonic::Streaming<pb::Envelope>>,
    ) -> Result<tonic::Response<Self::SessionStream>, tonic::Status> {
        Ok(tonic::Response::new(futures::stream::pending()))
    }
}

fn serve_raw<S: pb::agent_link_server::AgentLink>(l: TcpListener, svc: S, stop: CancellationToken) {
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(pb::agent_link_server::AgentLinkServer::new(svc))
            .serve_with_incoming_shutdown(tonic::transport::server::TcpIncoming::from(l), stop.cancelled_owned()),
    );
}

#[tokio::test]
async fn a_refused_child_keeps_retrying_with_backoff() {
    let (l, addr) = listener().await;
    let stop = CancellationToken::new();
    let calls = Arc::new(AtomicUsize::new(0));
    serve_raw(l, Refuser(calls.clone()), stop.clone());
    let mut dialled = link::dial(
        format!("http://{addr}"),
        TOKEN.into(),
        child(),
        Duration::from_secs(1),
        child_keys(),
        stop.clone(),
    );
    // Attempts at about 0, 0.5, 1.5 and 3.5 s: at least three within 3 s, never a session.
    assert!(timeout(Duration::from_secs(3), dialled.recv()).await.is_err());
    let n = calls.load(Ordering::SeqCst);
    assert!((3..=5).contains(&n), "{n} subscription attempts in 3 s");
    stop.cancel();
}

#[tokio::test]
async fn parent_restart_ends_the_session_and_the_child_reconnects() {
    let mut g = grpc(Duration::from_secs(1)).await;
    let mut down = next(&mut g.dialled).await;
    let mut up = next(&mut g.served).await;
    down.send(Event::TelemetrySummary, None, json!("before")).await.unwrap();
    assert_eq!(
        timeout(WAIT, up.recv()).await.unwrap().unwrap().payload,
        json!("before")
    );

    g.parent_stop.cancel();
    assert!(
        timeout(WAIT, down.recv()).await.unwrap().is_none(),
        "child still in a session"
    );
    assert!(
        timeout(WAIT, up.recv()).await.unwrap().is_none(),
        "parent still in a session"
    );
    // The server has stopped (and dropped its listener) once its session source ends.
    assert!(timeout(WAIT, g.served.recv()).await.unwrap().is_none());

    let l = TcpListener::bind(g.addr).await.expect("rebind the parent's address");
    let stop = CancellationToken::new();
    let mut served = link::serve(
        l,
        TOKEN.into(),
        parent(),
        Duration::from_secs(1),
        parent_keys(),
        stop.clone(),
    )
    .await
    .unwrap();
    let mut down = next(&mut g.dialled).await;
    let mut up = next(&mut served).await;
    let seq = down.send(Event::TelemetrySummary, None, json!("after")).await.unwrap();
    assert_eq!(seq, 1, "a new session numbers from 1");
    let env = timeout(WAIT, up.recv()).await.unwrap().unwrap();
    assert_eq!((env.seq, env.payload), (1, json!("after")));
    up.send(Event::PlanSubmitted, None, json!({"k": 1})).await.unwrap();
    assert_eq!(
        timeout(WAIT, down.recv()).await.unwrap().unwrap().payload,
        json!({"k": 1})
    );
    g.child_stop.cancel();
    stop.cancel();
}

#[tokio::test]
async fn parent_drops_a_silent_child_after_three_heartbeats() {
    let heartbeat = Duration::from_millis(200);
    let (l, addr) = listener().await;
    let stop = CancellationToken::new();
    let mut served = link::serve(l, TOKEN.into(), parent(), heartbeat, parent_keys(), stop.clone())
        .await
        .unwrap();

    // A child that subscribes and opens its stream, then says nothing at all.
    let mut raw = pb::agent_link_client::AgentLinkClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let auth: tonic::metadata::MetadataValue<_> = format!("Bearer {TOKEN}").parse().unwrap();
    let mut req = tonic::Request::new(pb::SubscribeReq {
        agent_id: "mute".into(),
        tier: "node".into(),
        public_key: KeyPair::generate().public_key().0.to_vec(),
    });
    req.metadata_mut().insert("authorization", auth.clone());
    let ack = raw.subscribe(req).await.unwrap().into_inner();
    assert_eq!((ack.parent_id.as_str(), ack.heartbeat_ms), ("cluster-1", 200));
    let mut req = tonic::Request::new(futures::stream::pending::<pb::Envelope>());
    req.metadata_mut().insert("authorization", auth);
    req.metadata_mut().insert("agent-id", "mute".parse().unwrap());
    req.metadata_mut().insert("agent-tier", "node".parse().unwrap());
    let mut wire = raw.session(req).await.unwrap().into_inner();

    let mut up = next(&mut served).await;
    assert_eq!(up.peer.id, "mute");
    let opened = Instant::now();
    assert!(
        timeout(WAIT, up.recv()).await.unwrap().is_none(),
        "a silent child stays connected"
    );
    assert!(opened.elapsed() >= heartbeat * 2, "closed after {:?}", opened.elapsed());

    // The parent's side of the wire: heartbeats meanwhile, then the end of the stream.
    let mut beats = 0;
    while let Some(m) = timeout(WAIT, wire.message()).await.unwrap().unwrap() {
        assert_eq!(
            (m.event.as_str(), m.sender.as_str(), m.seq),
            ("heartbeat", "cluster-1", 0)
        );
        beats += 1;
    }
    assert!(beats >= 2, "{beats} heartbeats");
    stop.cancel();
}

#[tokio::test]
async fn child_drops_a_silent_parent_after_three_heartbeats_and_redials() {
    let (l, addr) = listener().await;
    let stop = CancellationToken::new();
    serve_raw(l, Mute, stop.clone());
    let mut dialled = link::dial(
        format!("http://{addr}"),
        TOKEN.into(),
        child(),
        Duration::from_secs(5),
        child_keys(),
        stop.clone(),
    );
    let mut down = next(&mut dialled).await;
    assert_eq!(
        down.peer,
        AgentId {
            id: "mute".into(),
            tier: "cluster".into()
        }
    );
    let opened = Instant::now();
    // The parent's 200 ms period applies, not the child's own 5 s.
    assert!(
        timeout(WAIT, down.recv()).await.unwrap().is_none(),
        "a silent parent stays connected"
    );
    assert!(
        opened.elapsed() >= Duration::from_millis(400),
        "closed after {:?}",
        opened.elapsed()
    );
    assert!(down.send(Event::TelemetrySummary, None, json!(1)).await.is_err());
    // ... and the child dials again.
    let again = next(&mut dialled).await;
    assert_eq!(again.peer.id, "mute");
    stop.cancel();
}

#[tokio::test]
async fn bad_envelopes_are_dropped_and_the_session_goes_on() {
    let (l, addr) = listener().await;
    let stop = CancellationToken::new();
    let mut served = link::serve(
        l,
        TOKEN.into(),
        parent(),
        Duration::from_secs(1),
        parent_keys(),
        stop.clone(),
    )
    .await
    .unwrap();
    let mut raw = pb::agent_link_client::AgentLinkClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let auth: tonic::metadata::MetadataValue<_> = format!("Bearer {TOKEN}").parse().unwrap();
    let me = child_keys();
    let mut req = tonic::Request::new(pb::SubscribeReq {
        agent_id: "node-a".into(),
        tier: "node".into(),
        public_key: me.key.public_key().0.to_vec(),
    });
    req.metadata_mut().insert("authorization", auth.clone());
    raw.subscribe(req).await.unwrap();

    // Signed by node-a's key: each passes the signature check and fails on what it holds.
    let env = |event: &str, sender: &str, plan: &str, json: &str, seq| {
        link::grpc::sign(
            pb::Envelope {
                sender: sender.into(),
                seq,
                event: event.into(),
                plan_uid: plan.into(),
                json_payload: json.into(),
                ..pb::Envelope::default()
            },
            &me,
        )
    };
    let msgs = vec![
        env("no_such_event", "node-a", "", "{}", 1),
        env("telemetry_summary", "node-a", "", "{not json", 2),
        env("telemetry_summary", "node-a", "not-a-uuid", "{}", 3),
        env("telemetry_summary", "someone-else", "", "{}", 4),
        env("telemetry_summary", "node-a", "", "{\"ok\":true}", 5),
    ];
    let stream = futures::StreamExt::chain(futures::stream::iter(msgs), futures::stream::pending());
    let mut req = tonic::Request::new(stream);
    req.metadata_mut().insert("authorization", auth);
    req.metadata_mut().insert("agent-id", "node-a".parse().unwrap());
    req.metadata_mut().insert("agent-tier", "node".parse().unwrap());
    let _wire = raw.session(req).await.unwrap().into_inner();
    let mut up = next(&mut served).await;
    let got = timeout(WAIT, up.recv()).await.unwrap().unwrap();
    assert_eq!((got.seq, got.payload), (5, json!({"ok": true})));
    stop.cancel();
}

#[tokio::test]
async fn a_session_without_subscribing_or_with_an_empty_token_is_refused() {
    let stop = CancellationToken::new();
    let (l, _) = listener().await;
    let err = link::serve(
        l,
        "".into(),
        parent(),
        Duration::from_secs(1),
        parent_keys(),
        stop.clone(),
    )
    .await;
    assert!(err.unwrap_err().to_string().contains("empty admin token"));
    let (l, addr) = listener().await;
    let mut served = link::serve(
        l,
        TOKEN.into(),
        parent(),
        Duration::from_secs(1),
        parent_keys(),
        stop.clone(),
    )
    .await
    .unwrap();
    let mut raw = pb::agent_link_client::AgentLinkClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let mut req = tonic::Request::new(futures::stream::pending::<pb::Envelope>());
    req.metadata_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    req.metadata_mut().insert("agent-id", "stranger".parse().unwrap());
    req.metadata_mut().insert("agent-tier", "node".parse().unwrap());
    let status = raw.session(req).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(served.try_recv().is_err());
    stop.cancel();
}

/// A raw child: subscribes under `key` and opens a session whose envelopes the test writes.
async fn raw_child(
    addr: SocketAddr,
    key: &LinkKeys,
) -> Result<(mpsc::Sender<pb::Envelope>, tonic::Streaming<pb::Envelope>), tonic::Status> {
    let mut raw = pb::agent_link_client::AgentLinkClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let auth: tonic::metadata::MetadataValue<_> = format!("Bearer {TOKEN}").parse().unwrap();
    let mut req = tonic::Request::new(pb::SubscribeReq {
        agent_id: "node-a".into(),
        tier: "node".into(),
        public_key: key.key.public_key().0.to_vec(),
    });
    req.metadata_mut().insert("authorization", auth.clone());
    raw.subscribe(req).await?;
    let (tx, rx) = mpsc::channel(16);
    let mut req = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    req.metadata_mut().insert("authorization", auth);
    req.metadata_mut().insert("agent-id", "node-a".parse().unwrap());
    req.metadata_mut().insert("agent-tier", "node".parse().unwrap());
    let incoming = raw.session(req).await?.into_inner();
    Ok((tx, incoming))
}

/// An envelope from node-a with `payload`, signed by `key` (unsigned fields left for the test).
fn signed(keys: &LinkKeys, seq: u64, payload: &str) -> pb::Envelope {
    link::grpc::sign(
        pb::Envelope {
            sender: "node-a".into(),
            seq,
            event: Event::TelemetrySummary.as_str().into(),
            json_payload: payload.into(),
            ..pb::Envelope::default()
        },
        keys,
    )
}

#[tokio::test]
async fn forged_replayed_and_foreign_signed_envelopes_are_refused_and_reported() {
    let (l, addr) = listener().await;
    let stop = CancellationToken::new();
    let refusals: Arc<std::sync::Mutex<Vec<(String, String)>>> = Arc::default();
    let mut keys = parent_keys();
    let seen = refusals.clone();
    keys.on_refusal = Some(Arc::new(move |peer: &str, why: &str| {
        seen.lock().unwrap().push((peer.to_owned(), why.to_owned()));
    }));
    let mut served = link::serve(l, TOKEN.into(), parent(), Duration::from_secs(5), keys, stop.clone())
        .await
        .unwrap();
    let key = child_keys();
    let (tx, _incoming) = raw_child(addr, &key).await.unwrap();
    let mut up = next(&mut served).await;

    let good = signed(&key, 1, "1");
    tx.send(good.clone()).await.unwrap();
    // The same envelope again: a replay.
    tx.send(good).await.unwrap();
    // Altered after signing: the signature no longer matches.
    let mut forged = signed(&key, 2, "2");
    forged.json_payload = "\"transfer everything\"".into();
    tx.send(forged).await.unwrap();
    // Signed by another key than the one node-a enrolled with.
    tx.send(signed(&child_keys(), 3, "3")).await.unwrap();
    // Unsigned.
    tx.send(pb::Envelope {
        sender: "node-a".into(),
        seq: 4,
        event: Event::TelemetrySummary.as_str().into(),
        json_payload: "4".into(),
        ..pb::Envelope::default()
    })
    .await
    .unwrap();
    // Stamped outside the window, with a valid signature over the stale stamp.
    let mut stale = pb::Envelope {
        sender: "node-a".into(),
        seq: 5,
        event: Event::TelemetrySummary.as_str().into(),
        json_payload: "5".into(),
        timestamp_ms: 1_000,
        nonce: vec![7; 16],
        ..pb::Envelope::default()
    };
    stale.signature = key.key.sign(&link::grpc::signed_part(&stale)).0.to_vec();
    tx.send(stale).await.unwrap();
    tx.send(signed(&key, 6, "6")).await.unwrap();

    // Only the two genuine ones arrive, in order.
    let a = timeout(WAIT, up.recv()).await.unwrap().unwrap();
    let b = timeout(WAIT, up.recv()).await.unwrap().unwrap();
    assert_eq!((a.payload, b.payload), (json!(1), json!(6)));
    let refusals = refusals.lock().unwrap().clone();
    let reasons: Vec<&str> = refusals.iter().map(|(_, why)| why.as_str()).collect();
    assert_eq!(refusals.len(), 5, "{reasons:?}");
    assert!(refusals.iter().all(|(peer, _)| peer == "node-a"), "{refusals:?}");
    assert!(reasons[0].contains("replayed"), "{reasons:?}");
    for r in &reasons[1..4] {
        assert!(r.contains("bad signature"), "{reasons:?}");
    }
    assert!(reasons[4].contains("stale"), "{reasons:?}");
    stop.cancel();
}

#[tokio::test]
async fn a_changed_key_and_a_revoked_agent_are_refused_and_a_revoked_session_closes() {
    let (l, addr) = listener().await;
    let stop = CancellationToken::new();
    let keys = parent_keys();
    let registry = keys.peers.clone();
    let mut served = link::serve(l, TOKEN.into(), parent(), Duration::from_secs(5), keys, stop.clone())
        .await
        .unwrap();
    let key = child_keys();
    let (tx, _incoming) = raw_child(addr, &key).await.unwrap();
    let mut up = next(&mut served).await;
    tx.send(signed(&key, 1, "1")).await.unwrap();
    assert_eq!(timeout(WAIT, up.recv()).await.unwrap().unwrap().payload, json!(1));
    assert!(registry.get("node-a").is_some(), "enrolled on first use");

    // Another key under the same id: an impersonator.
    let status = raw_child(addr, &child_keys()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");

    // Revoked: its open session ends at its next message, and it cannot subscribe again.
    registry.revoke("node-a", "node decommissioned").unwrap();
    tx.send(signed(&key, 2, "2")).await.unwrap();
    assert!(
        timeout(WAIT, up.recv()).await.unwrap().is_none(),
        "the session stayed open"
    );
    let status = raw_child(addr, &key).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("revoked"), "{}", status.message());
    stop.cancel();
}

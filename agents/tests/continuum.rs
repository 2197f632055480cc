//! The continuum splitting buckets across cluster agents: over the in-process link, with a
//! real RocksDB store; the clusters are played by the test through their session ends.

use agents::decisions::DecisionLog;
use agents::intents::{Intents, StoredIntent};
use agents::link::{self, AgentId, Event, Session};
use agents::store::Store;
use agents::tiers::continuum::{Continuum, Submission, PLACEMENT_POLICY};
use agents::tiers::Shared;
use control_api::BucketIntent;
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

/// How long a test waits for what must come (generous: a bound, not a speed).
const WAIT: Duration = Duration::from_secs(10);
/// How long it listens for what must not come.
const QUIET: Duration = Duration::from_millis(500);

struct Rig {
    _dir: tempfile::TempDir,
    intents: Intents,
    log: DecisionLog,
    submit: mpsc::Sender<Submission>,
    sessions: mpsc::Sender<Session>,
    stop: CancellationToken,
}

impl Rig {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (intents, log) = (Intents::new(store.clone()), DecisionLog::new(store));
        let continuum = Continuum::new("continuum", intents.clone(), log.clone(), Shared::default());
        let submit = continuum.submitter();
        let (sessions, rx) = mpsc::channel(8);
        let stop = CancellationToken::new();
        tokio::spawn(continuum.run(rx, stop.clone()));
        Self {
            _dir: dir,
            intents,
            log,
            submit,
            sessions,
            stop,
        }
    }

    /// A cluster agent `id` connects; reports its backends when `backends` is given.
    async fn connect(&self, id: &str, backends: Option<(u64, u64)>) -> Session {
        let (up, mut down) = link::local_pair(
            AgentId {
                id: "continuum".into(),
                tier: "continuum".into(),
            },
            AgentId {
                id: id.into(),
                tier: "cluster".into(),
            },
        );
        self.sessions.send(up).await.unwrap();
        if let Some((all, gdpr)) = backends {
            down.send(
                Event::TelemetrySummary,
                None,
                json!({"agents": [], "backends": all, "gdpr_backends": gdpr}),
            )
            .await
            .unwrap();
        }
        down
    }

    /// Stores and submits an intent for `bucket`, keeping its cluster as the northbound API does.
    async fn submit(&self, bucket: &str, intent: BucketIntent) -> StoredIntent {
        let cluster = self.intents.get(bucket).unwrap().and_then(|i| i.cluster);
        let i = StoredIntent {
            bucket: bucket.into(),
            intent,
            source: "operator".into(),
            updated_ms: 1,
            state: "pending".into(),
            error: None,
            plan_uid: uuid::Uuid::now_v7(),
            cluster,
            component: None,
        };
        self.intents.put(&i).unwrap();
        self.submit.send(Submission::Intent(Box::new(i.clone()))).await.unwrap();
        i
    }

    /// Waits until the stored intent of `bucket` satisfies `done`.
    async fn until(&self, bucket: &str, what: &str, done: impl Fn(&StoredIntent) -> bool) -> StoredIntent {
        let start = Instant::now();
        loop {
            if let Some(i) = self.intents.get(bucket).unwrap() {
                if done(&i) {
                    return i;
                }
            }
            assert!(start.elapsed() < WAIT, "{bucket}: {what} did not happen");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The buckets of the intents a cluster receives within `wait` (then nothing more for QUIET).
async fn received(s: &mut Session, want: usize) -> Vec<String> {
    let mut got = Vec::new();
    while got.len() < want {
        let env = timeout(WAIT, s.recv())
            .await
            .expect("an intent in time")
            .expect("session open");
        if env.event == Event::ApplicationSubmitted {
            got.push(env.payload["bucket"].as_str().unwrap().to_owned());
        }
    }
    while let Ok(Some(env)) = timeout(QUIET, s.recv()).await {
        if env.event == Event::ApplicationSubmitted {
            got.push(env.payload["bucket"].as_str().unwrap().to_owned());
        }
    }
    got
}

fn only(clusters: &[&str]) -> BucketIntent {
    BucketIntent {
        clusters: clusters.iter().map(|c| (*c).to_owned()).collect(),
        ..BucketIntent::default()
    }
}

#[tokio::test]
async fn buckets_are_split_across_clusters_by_permission_gdpr_and_load_and_stay_where_they_are() {
    let rig = Rig::start();
    let mut c1 = rig.connect("c1", Some((6, 0))).await;
    let mut c2 = rig.connect("c2", Some((6, 6))).await;

    // GDPR: only c2 has GDPR backends (c1 would win the tie by id).
    rig.submit(
        "g",
        BucketIntent {
            gdpr: true,
            ..BucketIntent::default()
        },
    )
    .await;
    assert_eq!(received(&mut c2, 1).await, ["g"]);
    // Unrestricted: the cluster holding fewer buckets.
    rig.submit("a", BucketIntent::default()).await;
    assert_eq!(received(&mut c1, 1).await, ["a"]);
    // Restricted to c2 although c2 holds more.
    rig.submit("p", only(&["c2"])).await;
    assert_eq!(received(&mut c2, 1).await, ["p"]);
    assert_eq!(
        rig.until("p", "assigned", |i| i.cluster.is_some())
            .await
            .cluster
            .as_deref(),
        Some("c2")
    );

    // Every choice is a recorded decision with the options weighed.
    let d = rig.log.list(Some("g"), None, 10).unwrap();
    let d = d
        .iter()
        .find(|d| d.policy == PLACEMENT_POLICY)
        .expect("a placement decision for g");
    assert_eq!((d.choice.as_str(), d.target.as_str()), ("cluster c2", "placement/g"));
    assert!(d.reason.contains("c2") && d.reason.contains("GDPR"), "{}", d.reason);
    assert!(
        d.options
            .iter()
            .any(|o| o.option == "cluster c1" && o.score.is_none() && o.note.contains("gdpr = true")),
        "{:?}",
        d.options
    );

    // A new intent for a bucket goes where the bucket is, whatever the load says.
    rig.submit("p", BucketIntent::default()).await;
    assert_eq!(received(&mut c2, 1).await, ["p"]);
    assert!(received(&mut c1, 0).await.is_empty());

    // A cluster that reconnects gets its own intents again, and only those.
    drop(c1);
    let mut c1 = rig.connect("c1", Some((6, 0))).await;
    assert_eq!(received(&mut c1, 1).await, ["a"]);

    // An intent that no longer permits the bucket's cluster is refused, not moved.
    let refused = rig.submit("a", only(&["c2"])).await;
    let i = rig
        .until("a", "refused", |i| {
            i.plan_uid == refused.plan_uid && i.state == "failed"
        })
        .await;
    assert!(
        i.error.as_deref().unwrap().contains("held by cluster agent c1"),
        "{i:?}"
    );
    assert!(received(&mut c2, 0).await.is_empty());

    // No permitted cluster connected: the intent waits, saying why, and goes when one comes.
    rig.submit("z", only(&["c9"])).await;
    let waiting = rig.until("z", "waiting", |i| i.error.is_some()).await;
    assert_eq!(waiting.state, "pending");
    assert!(
        waiting
            .error
            .as_deref()
            .unwrap()
            .contains("not in the permitted clusters"),
        "{waiting:?}"
    );
    let mut c9 = rig.connect("c9", None).await;
    assert_eq!(received(&mut c9, 1).await, ["z"]);
    let z = rig.until("z", "assigned", |i| i.cluster.is_some()).await;
    assert_eq!((z.cluster.as_deref(), z.error), (Some("c9"), None));
    rig.stop.cancel();
}

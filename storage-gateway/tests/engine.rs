//! Engine-level tests: the engine on in-memory backends (some held at a gate, slowed or failing)
//! with a real RocksDB catalog in a temporary directory, driven through its public verbs and
//! lookups only.
//!
//! Each test is a table of named cases run by one loop. Effects are checked where they land:
//! object bytes read back through the engine's reader, shard objects present or absent in the
//! in-memory stores, records through the engine's lookups. Background work (the reaper,
//! stragglers, the migrator) is waited for by polling with a generous deadline, never timed.
//!
//! The central check, [`Rig::settled`]: the shard objects on the backends are exactly those the
//! catalog names (objects' segments and uploads' parts), so nothing leaked and nothing live was
//! deleted.

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::TryStreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions,
    PutPayload, PutResult,
};
use placement::{BackendSelector, BucketPolicy};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use storage_gateway::backend::{Backend, FaultSpec};
use storage_gateway::crypto::Encryption;
use storage_gateway::engine::migrate::Migrator;
use storage_gateway::engine::{
    BodyHasher, Commit, Completion, CopyTo, Engine, EtagCondition, NewObject, NewPart, ObjectReader, PolicyChanged,
    PreconditionFailed, Swap, Target, WriteCondition, WrittenSet,
};
use storage_gateway::meta::{Catalog, RocksStore};
use storage_gateway::records::{
    BucketRecord, ChangeInfo, Checksums, ContentHeaders, ObjectManifest, Segment, UploadEncryption, UploadRecord,
};
use storage_gateway::Error;
use uuid::Uuid;

/// How long background work may take before a test gives up on it: far beyond what any of it
/// needs, so a slow machine never fails a test; only work that never happens does.
const PATIENCE: Duration = Duration::from_secs(30);

/// Block size of every test bucket: small, so objects of a few KiB span several blocks.
const BLOCK: u32 = 4096;

/// The bucket most cases use.
const B: &str = "b";

/// The key most cases use.
const K: &str = "k";

/// The bucket [`Rig::fence`] writes to, on a backend of its own.
const FENCE: &str = "fence";

// ---------------------------------------------------------------------------------------------
// A gate: a backend that is slow (or failing) for exactly as long as a test says.

/// What a gated call does now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    /// Calls go through.
    Open,
    /// Calls wait until the gate opens or fails.
    Hold,
    /// Calls fail.
    Fail,
}

/// Which calls a [`GatedStore`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gated {
    /// Writes of shard objects.
    Puts,
    /// Reads of shard objects.
    Gets,
}

/// An in-memory store whose puts or gets wait at a gate the test opens (or fails), and which
/// counts the calls waiting: a straggler or a slow read without any clock involved.
#[derive(Debug)]
struct GatedStore {
    inner: Arc<InMemory>,
    gated: Gated,
    gate: tokio::sync::watch::Sender<Gate>,
    waiting: AtomicUsize,
}

/// Counts a call as waiting at the gate while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl GatedStore {
    fn new(inner: Arc<InMemory>, gated: Gated) -> Self {
        Self {
            inner,
            gated,
            gate: tokio::sync::watch::Sender::new(Gate::Open),
            waiting: AtomicUsize::new(0),
        }
    }

    fn set(&self, gate: Gate) {
        self.gate.send_replace(gate);
    }

    fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// Waits at the gate if `kind` is what it holds.
    async fn pass(&self, kind: Gated, op: &str) -> object_store::Result<()> {
        if kind != self.gated {
            return Ok(());
        }
        let mut rx = self.gate.subscribe();
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.waiting);
        let gate = *rx
            .wait_for(|g| *g != Gate::Hold)
            .await
            .map_err(|e| injected(format!("gate closed during {op}: {e}")))?;
        match gate {
            Gate::Fail => Err(injected(format!("gate failed {op}"))),
            Gate::Open | Gate::Hold => Ok(()),
        }
    }
}

fn injected(what: String) -> object_store::Error {
    object_store::Error::Generic {
        store: "gate",
        source: what.into(),
    }
}

impl std::fmt::Display for GatedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GatedStore({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for GatedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.pass(Gated::Puts, "put").await?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.pass(Gated::Puts, "put_multipart").await?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        self.pass(Gated::Gets, "get").await?;
        self.inner.get_opts(location, options).await
    }

    async fn delete(&self, location: &Path) -> object_store::Result<()> {
        self.inner.delete(location).await
    }

    fn list(&self, prefix: Option<&Path>) -> futures::stream::BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy(&self, from: &Path, to: &Path) -> object_store::Result<()> {
        self.inner.copy(from, to).await
    }

    async fn copy_if_not_exists(&self, from: &Path, to: &Path) -> object_store::Result<()> {
        self.inner.copy_if_not_exists(from, to).await
    }
}

// ---------------------------------------------------------------------------------------------
// The rig: an engine on in-memory backends.

/// Id of data backend `i`.
fn id(i: usize) -> String {
    format!("b{i}")
}

/// How one data backend of a rig is wrapped.
enum Wrap {
    Plain,
    Faults(FaultSpec),
    Gated(Gated),
}

/// One shard object: (backend, set, shard index).
type Shard = (String, Uuid, usize);

/// An engine on `n` in-memory data backends `b0..`, plus a plain backend `fence` holding only
/// the [`FENCE`] bucket, with its catalog in a temporary RocksDB.
struct Rig {
    engine: Engine,
    /// Every backend's in-memory store (below any wrapper), by backend id.
    stores: BTreeMap<String, Arc<InMemory>>,
    /// Gated backends' gates, by backend index.
    gates: BTreeMap<usize, Arc<GatedStore>>,
    _meta: tempfile::TempDir,
}

/// A bucket record: `k` + `m` on the data backends `on`, epoch 1.
fn record(k: u8, m: u8, on: &[usize]) -> BucketRecord {
    BucketRecord {
        created_ms: 1,
        policy: BucketPolicy {
            k,
            m,
            block_size: BLOCK,
        },
        policy_epoch: 1,
        encrypted: false,
        backends: selector(on),
        intent: placement::BucketIntent::default(),
        update_token_sha256: None,
        changed: None,
        prefixes: Vec::new(),
    }
}

fn selector(on: &[usize]) -> BackendSelector {
    BackendSelector {
        labels: Vec::new(),
        ids: on.iter().map(|&i| id(i)).collect(),
    }
}

/// `len` bytes no other seed gives (xorshift).
fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

/// Polls `check` until it holds; panics with its last complaint after [`PATIENCE`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let give_up = tokio::time::Instant::now() + PATIENCE;
    loop {
        match check().await {
            Ok(()) => return,
            Err(e) if tokio::time::Instant::now() >= give_up => panic!("{what}: still not so after {PATIENCE:?}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

/// Reads what is left of `reader`.
async fn drain(case: &str, reader: &mut ObjectReader) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = reader
        .next_chunk()
        .await
        .unwrap_or_else(|e| panic!("{case}: reading: {e}"))
    {
        out.extend_from_slice(&chunk);
    }
    out
}

/// The shards a segment names.
fn shards_of(seg: &Segment) -> BTreeSet<Shard> {
    seg.backends
        .iter()
        .enumerate()
        .map(|(i, b)| (b.clone(), seg.set, i))
        .collect()
}

/// A condition on the version a write replaces, spelled against the current object.
#[derive(Debug, Clone, Copy)]
enum Cond {
    None,
    IfNoneMatchAny,
    IfNoneMatchCurrent,
    IfMatchAny,
    IfMatchCurrent,
    IfMatchOther,
}

impl Cond {
    fn against(self, current: Option<&ObjectManifest>) -> WriteCondition {
        let etag = || EtagCondition::Etag(current.map_or_else(|| "none".into(), |m| m.etag.clone()));
        let (if_match, if_none_match) = match self {
            Cond::None => (None, None),
            Cond::IfNoneMatchAny => (None, Some(EtagCondition::Any)),
            Cond::IfNoneMatchCurrent => (None, Some(etag())),
            Cond::IfMatchAny => (Some(EtagCondition::Any), None),
            Cond::IfMatchCurrent => (Some(etag()), None),
            Cond::IfMatchOther => (Some(EtagCondition::Etag("0123456789abcdef".into())), None),
        };
        WriteCondition {
            if_match,
            if_none_match,
        }
    }
}

impl Rig {
    /// `n` plain data backends.
    fn new(n: usize) -> Self {
        Self::with(n, |_| Wrap::Plain)
    }

    /// `n` data backends, wrapped as `wrap` says. Needs a Tokio runtime (the engine spawns its
    /// reaper).
    fn with(n: usize, wrap: impl Fn(usize) -> Wrap) -> Self {
        let meta = tempfile::tempdir().expect("a temporary directory for RocksDB");
        let store = RocksStore::open(meta.path()).expect("RocksDB opens in a fresh directory");
        let mut stores = BTreeMap::new();
        let mut gates = BTreeMap::new();
        let mut backends = Vec::new();
        for i in 0..n {
            let mem = Arc::new(InMemory::new());
            stores.insert(id(i), Arc::clone(&mem));
            backends.push(match wrap(i) {
                Wrap::Plain => Backend::remote(id(i), mem),
                Wrap::Faults(spec) => Backend::remote(id(i), mem).with_faults(spec),
                Wrap::Gated(what) => {
                    let gate = Arc::new(GatedStore::new(mem, what));
                    gates.insert(i, Arc::clone(&gate));
                    Backend::remote(id(i), gate)
                }
            });
        }
        let fence = Arc::new(InMemory::new());
        stores.insert(FENCE.into(), Arc::clone(&fence));
        backends.push(Backend::remote(FENCE, fence));
        let engine = Engine::new(Catalog::new(Arc::new(store)), backends);
        let mut fence_bucket = record(1, 0, &[]);
        fence_bucket.backends.ids = vec![FENCE.into()];
        engine.create_bucket(FENCE, &fence_bucket).expect("fence bucket");
        Self {
            engine,
            stores,
            gates,
            _meta: meta,
        }
    }

    fn gate(&self, i: usize) -> &GatedStore {
        self.gates.get(&i).unwrap_or_else(|| panic!("backend {i} has no gate"))
    }

    /// Creates bucket `name`.
    fn bucket(&self, name: &str, rec: &BucketRecord) {
        self.engine
            .create_bucket(name, rec)
            .unwrap_or_else(|e| panic!("creating bucket {name}: {e}"));
    }

    /// Changes `bucket`'s code to `k` + `m` on `on` (a new epoch even when nothing else changes)
    /// and rings the migrator; returns the new record.
    fn change(&self, case: &str, bucket: &str, k: u8, m: u8, on: &[usize]) -> BucketRecord {
        let change = ChangeInfo {
            at_ms: 1,
            by: "engine test".into(),
            automatic: false,
            reason: case.into(),
        };
        let decided = self.engine.change_bucket_policy(bucket, change, |cur| {
            Ok::<_, std::convert::Infallible>(Some(BucketRecord {
                policy: BucketPolicy {
                    k,
                    m,
                    block_size: BLOCK,
                },
                backends: selector(on),
                ..cur.clone()
            }))
        });
        match decided {
            Ok(PolicyChanged::Changed { new, .. }) => {
                self.engine.migrations().wake();
                *new
            }
            other => panic!("{case}: changing the policy of {bucket}: {other:?}"),
        }
    }

    /// Writes `bytes` as a new set under `bucket`'s current policy (not committed).
    async fn write(&self, case: &str, bucket: &str, key: &str, bytes: &[u8]) -> (WrittenSet, NewObject) {
        let rec = self
            .engine
            .require_bucket(bucket)
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        let chunks: Vec<Result<Bytes, std::io::Error>> =
            bytes.chunks(3000).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        let (written, hasher) = self
            .engine
            .write_set_with(
                key,
                Target::for_key(&rec, key),
                futures::stream::iter(chunks),
                BodyHasher::carrying(&Checksums::default()),
                &Encryption::None,
            )
            .await
            .unwrap_or_else(|e| panic!("{case}: writing {bucket}/{key}: {e}"));
        let (md5, checksums) = hasher.finish();
        let object = NewObject {
            etag: hex::encode(md5),
            headers: ContentHeaders::default(),
            checksums,
            policy_epoch: rec.policy_epoch,
        };
        (written, object)
    }

    /// Puts `bytes` at `bucket/key` unconditionally; returns the committed manifest.
    async fn put(&self, case: &str, bucket: &str, key: &str, bytes: &[u8]) -> ObjectManifest {
        let (written, object) = self.write(case, bucket, key, bytes).await;
        match self
            .engine
            .put_object(bucket, key, written, object, &WriteCondition::default())
        {
            Ok(Commit::Committed(m)) => *m,
            other => panic!("{case}: putting {bucket}/{key}: {other:?}"),
        }
    }

    /// The object's bytes read back through a pinned reader, or `None` when there is no object.
    async fn read(&self, case: &str, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let (m, pins) = self
            .engine
            .pinned_object(bucket, key)
            .unwrap_or_else(|e| panic!("{case}: opening {bucket}/{key}: {e}"))?;
        let mut reader = self.engine.reader(bucket, key, &m, pins, 0..m.size);
        Some(drain(case, &mut reader).await)
    }

    /// A reader of the whole object, holding its sets.
    fn open(&self, case: &str, bucket: &str, key: &str) -> ObjectReader {
        let (m, pins) = self
            .engine
            .pinned_object(bucket, key)
            .unwrap_or_else(|e| panic!("{case}: opening {bucket}/{key}: {e}"))
            .unwrap_or_else(|| panic!("{case}: {bucket}/{key} does not exist"));
        self.engine.reader(bucket, key, &m, pins, 0..m.size)
    }

    /// The object's manifest.
    fn object(&self, case: &str, bucket: &str, key: &str) -> Option<ObjectManifest> {
        self.engine
            .object(bucket, key)
            .unwrap_or_else(|e| panic!("{case}: looking up {bucket}/{key}: {e}"))
    }

    /// Every shard object on every backend.
    async fn stored(&self) -> BTreeSet<Shard> {
        let mut out = BTreeSet::new();
        for (backend, mem) in &self.stores {
            let listed: Vec<ObjectMeta> = mem
                .list(Some(&Path::from("shards")))
                .try_collect()
                .await
                .expect("listing an in-memory store");
            for meta in listed {
                let parts: Vec<String> = meta.location.parts().map(|p| p.as_ref().to_owned()).collect();
                let (Some(set), Some(idx)) = (
                    parts.get(1).and_then(|s| Uuid::parse_str(s).ok()),
                    parts.get(2).and_then(|s| s.parse().ok()),
                ) else {
                    panic!("{backend}: unexpected object {}", meta.location)
                };
                out.insert((backend.clone(), set, idx));
            }
        }
        out
    }

    /// Shard objects per data backend (backends holding none included).
    async fn counts(&self) -> BTreeMap<String, usize> {
        let mut out: BTreeMap<String, usize> = self.stores.keys().map(|b| (b.clone(), 0)).collect();
        for (b, _, _) in self.stored().await {
            *out.entry(b).or_default() += 1;
        }
        out.remove(FENCE);
        out
    }

    /// Every shard the catalog names: objects' segments and in-progress uploads' parts.
    fn named(&self) -> BTreeSet<Shard> {
        let mut out = BTreeSet::new();
        for (bucket, _) in self.engine.buckets().expect("listing buckets") {
            for listed in self
                .engine
                .list_objects(&bucket, b"", "", usize::MAX)
                .expect("listing objects")
            {
                for seg in &listed.manifest.segments {
                    out.extend(shards_of(seg));
                }
            }
            for (_, upload) in self.engine.uploads(&bucket, "").expect("listing uploads") {
                for part in self.engine.parts(&upload.upload_id).expect("listing parts") {
                    out.extend(shards_of(&part.segment));
                }
            }
        }
        out
    }

    /// Waits until the shard objects on the backends are exactly those the catalog names.
    async fn settled(&self, case: &str) {
        eventually(
            &format!("{case}: backends hold exactly the shards the catalog names"),
            || async move {
                let stored = self.stored().await;
                let named = self.named();
                if stored == named {
                    return Ok(());
                }
                let leaked: Vec<_> = stored.difference(&named).collect();
                let lost: Vec<_> = named.difference(&stored).collect();
                Err(format!("leaked {leaked:?}, lost {lost:?}"))
            },
        )
        .await;
    }

    /// Waits until the reaper has handled every set handed to it so far. It takes them in
    /// order, so once a set doomed now is deleted, each earlier one was deleted or deferred for
    /// its pins: what is still stored after the fence stays until something changes.
    async fn fence(&self, case: &str) {
        let (written, object) = self.write(case, FENCE, "fence", b"fence").await;
        let set = written.segment().set;
        match self
            .engine
            .put_object(FENCE, "fence", written, object, &WriteCondition::default())
        {
            Ok(Commit::Committed(_)) => {}
            other => panic!("{case}: fence put: {other:?}"),
        }
        assert!(
            self.engine.delete_object(FENCE, "fence").expect("fence delete"),
            "{case}: fence object deleted"
        );
        self.gone(case, set).await;
    }

    /// Waits until no shard of `set` is stored anywhere.
    async fn gone(&self, case: &str, set: Uuid) {
        eventually(&format!("{case}: set {set} is reaped"), || async move {
            let left: Vec<Shard> = self.stored().await.into_iter().filter(|s| s.1 == set).collect();
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("still stored: {left:?}"))
            }
        })
        .await;
    }

    /// Waits until no shard is being written after its write was acknowledged (on a busy
    /// machine even an in-memory shard may miss the grace after the quorum) and no repair is
    /// queued: stragglers clear their repair records when they land.
    async fn landed(&self, case: &str) {
        eventually(
            &format!("{case}: every shard landed, no repair queued"),
            || async move {
                let now = (self.engine.straggling_shards(), self.engine.repair_queue_len().unwrap());
                if now == (0, 0) {
                    Ok(())
                } else {
                    Err(format!("(straggling, queued) = {now:?}"))
                }
            },
        )
        .await;
    }

    /// Asserts every shard of `seg` is stored, once every straggler has landed: nothing live
    /// was deleted.
    async fn whole(&self, case: &str, seg: &Segment) {
        self.landed(case).await;
        let stored = self.stored().await;
        let missing: Vec<_> = shards_of(seg).into_iter().filter(|s| !stored.contains(s)).collect();
        assert!(
            missing.is_empty(),
            "{case}: live set {} lost shards {missing:?}",
            seg.set
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Commit rules.

/// What the object is after a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    /// The version before the verb.
    Old,
    /// The version the verb wrote.
    New,
    /// No object.
    Absent,
}

/// What a verb returned.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Committed,
    Refused(PreconditionFailed),
    Deleted(bool),
    NoSuchBucket,
}

#[derive(Debug, Clone, Copy)]
enum Verb {
    Put(Cond),
    Delete,
    PutIntoDeletedBucket,
}

#[tokio::test]
async fn commit_rules() {
    use PreconditionFailed as P;
    struct Case {
        name: &'static str,
        existing: bool,
        verb: Verb,
        outcome: Outcome,
        after: After,
    }
    let case = |name, existing, verb, outcome, after| Case {
        name,
        existing,
        verb,
        outcome,
        after,
    };
    let cases = [
        case(
            "put over nothing",
            false,
            Verb::Put(Cond::None),
            Outcome::Committed,
            After::New,
        ),
        case(
            "put over an object",
            true,
            Verb::Put(Cond::None),
            Outcome::Committed,
            After::New,
        ),
        case(
            "If-None-Match: * over nothing",
            false,
            Verb::Put(Cond::IfNoneMatchAny),
            Outcome::Committed,
            After::New,
        ),
        case(
            "If-None-Match: * over an object",
            true,
            Verb::Put(Cond::IfNoneMatchAny),
            Outcome::Refused(P::Exists),
            After::Old,
        ),
        case(
            "If-None-Match with the current ETag",
            true,
            Verb::Put(Cond::IfNoneMatchCurrent),
            Outcome::Refused(P::EtagMatches),
            After::Old,
        ),
        case(
            "If-Match with the current ETag",
            true,
            Verb::Put(Cond::IfMatchCurrent),
            Outcome::Committed,
            After::New,
        ),
        case(
            "If-Match with another ETag",
            true,
            Verb::Put(Cond::IfMatchOther),
            Outcome::Refused(P::EtagDiffers),
            After::Old,
        ),
        case(
            "If-Match: * over nothing",
            false,
            Verb::Put(Cond::IfMatchAny),
            Outcome::Refused(P::Missing),
            After::Absent,
        ),
        case("delete", true, Verb::Delete, Outcome::Deleted(true), After::Absent),
        case(
            "delete of an absent key",
            false,
            Verb::Delete,
            Outcome::Deleted(false),
            After::Absent,
        ),
        case(
            "commit into a deleted bucket",
            true,
            Verb::PutIntoDeletedBucket,
            Outcome::NoSuchBucket,
            After::Old,
        ),
    ];
    let (old_bytes, new_bytes) = (data(1, 10_000), data(2, 9_000));
    for c in cases {
        let name = c.name;
        let rig = Rig::new(4);
        rig.bucket(B, &record(2, 2, &[0, 1, 2, 3]));
        let old = match c.existing {
            true => Some(rig.put(name, B, K, &old_bytes).await),
            false => None,
        };
        let (outcome, written) = match c.verb {
            Verb::Put(cond) => {
                let (w, object) = rig.write(name, B, K, &new_bytes).await;
                let seg = w.segment().clone();
                let outcome = match rig.engine.put_object(B, K, w, object, &cond.against(old.as_ref())) {
                    Ok(Commit::Committed(m)) => {
                        assert_eq!(
                            m.segments,
                            vec![seg.clone()],
                            "{name}: the manifest names the written set"
                        );
                        Outcome::Committed
                    }
                    Ok(Commit::PreconditionFailed(why)) => Outcome::Refused(why),
                    Err(e) => panic!("{name}: put failed: {e}"),
                };
                (outcome, Some(seg))
            }
            Verb::Delete => {
                let existed = rig.engine.delete_object(B, K).unwrap_or_else(|e| panic!("{name}: {e}"));
                (Outcome::Deleted(existed), None)
            }
            Verb::PutIntoDeletedBucket => {
                rig.bucket("gone", &record(2, 2, &[0, 1, 2, 3]));
                let (w, object) = rig.write(name, "gone", K, &new_bytes).await;
                let seg = w.segment().clone();
                rig.engine
                    .delete_bucket("gone")
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                let outcome = match rig.engine.put_object("gone", K, w, object, &WriteCondition::default()) {
                    Err(Error::NoSuchBucket(b)) if b == "gone" => Outcome::NoSuchBucket,
                    other => panic!("{name}: commit into a deleted bucket gave {other:?}"),
                };
                (outcome, Some(seg))
            }
        };
        assert_eq!(outcome, c.outcome, "{name}: outcome");

        // What the engine serves now, by its lookups and its reader.
        let (want_bytes, want_set) = match c.after {
            After::Old => (Some(&old_bytes), old.as_ref().map(|m| m.segments[0].set)),
            After::New => (Some(&new_bytes), written.as_ref().map(|s| s.set)),
            After::Absent => (None, None),
        };
        let now = rig.object(name, B, K);
        assert_eq!(
            now.as_ref().map(|m| m.segments[0].set),
            want_set,
            "{name}: the object's set"
        );
        assert_eq!(
            rig.read(name, B, K).await.as_ref(),
            want_bytes,
            "{name}: bytes read back"
        );

        // The sets the verb doomed are reaped; the one it kept is whole after the reaper ran.
        rig.fence(name).await;
        for (what, seg, kept) in [
            ("old", old.as_ref().map(|m| &m.segments[0]), c.after == After::Old),
            ("written", written.as_ref(), c.after == After::New),
        ] {
            match (seg, kept) {
                (Some(seg), true) => rig.whole(name, seg).await,
                (Some(seg), false) => rig.gone(&format!("{name}: {what} set"), seg.set).await,
                (None, _) => {}
            }
        }
        rig.settled(name).await;
        rig.landed(name).await;
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Multipart uploads.

const UP: &str = "upload-1";

fn upload_record() -> UploadRecord {
    UploadRecord {
        upload_id: UP.into(),
        created_ms: 1,
        headers: ContentHeaders::default(),
        checksum_algorithm: None,
        encryption: UploadEncryption::Bucket,
    }
}

/// Writes `bytes` and commits them as part `n` of [`UP`] on `B/key`.
async fn upload_part(rig: &Rig, case: &str, key: &str, n: u32, bytes: &[u8]) -> storage_gateway::Result<Segment> {
    let (w, object) = rig.write(case, B, key, bytes).await;
    let seg = w.segment().clone();
    let part = NewPart {
        part_number: n,
        etag: object.etag,
        checksums: object.checksums,
    };
    let rec = rig.engine.commit_part(B, key, UP, w, part)?;
    assert_eq!(rec.segment, seg, "{case}: the part names the written set");
    Ok(seg)
}

/// Completes [`UP`] on `B/key` with the parts numbered `chosen`, under `cond`.
fn complete(rig: &Rig, case: &str, key: &str, chosen: &[u32], cond: Cond) -> Commit {
    let parts: Vec<_> = rig
        .engine
        .parts(UP)
        .unwrap_or_else(|e| panic!("{case}: {e}"))
        .into_iter()
        .filter(|p| chosen.contains(&p.part_number))
        .collect();
    assert_eq!(parts.len(), chosen.len(), "{case}: every chosen part is uploaded");
    let completion = Completion {
        parts,
        etag: format!("multipart-{}", chosen.len()),
        headers: ContentHeaders::default(),
    };
    let rec = rig.engine.require_bucket(B).unwrap_or_else(|e| panic!("{case}: {e}"));
    let current = rig.object(case, B, key);
    rig.engine
        .complete_upload(B, &rec, key, UP, completion, &cond.against(current.as_ref()))
        .unwrap_or_else(|e| panic!("{case}: completing: {e}"))
}

#[tokio::test]
async fn multipart() {
    /// How a case ends its upload.
    #[derive(Debug, Clone, Copy)]
    enum End {
        Complete(&'static [u32], Cond),
        Abort,
        PartAfterAbort,
        DeleteBucket,
    }
    /// What the end did.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Ended {
        Committed,
        Refused(PreconditionFailed),
        Aborted,
        NoSuchUpload,
        BucketDeleted,
    }
    struct Case {
        name: &'static str,
        existing: bool,
        /// Part numbers uploaded, in order (a repeated number replaces the earlier part).
        parts: &'static [u32],
        end: End,
        want: Ended,
    }
    let case = |name, existing, parts, end, want| Case {
        name,
        existing,
        parts,
        end,
        want,
    };
    let cases = [
        case(
            "a part replaced by one of the same number",
            false,
            &[1, 1, 2][..],
            End::Complete(&[1, 2], Cond::None),
            Ended::Committed,
        ),
        case(
            "complete with a subset of the parts",
            false,
            &[1, 2, 3],
            End::Complete(&[1, 3], Cond::None),
            Ended::Committed,
        ),
        case(
            "complete over an existing object",
            true,
            &[1, 2],
            End::Complete(&[1, 2], Cond::None),
            Ended::Committed,
        ),
        case(
            "complete with If-Match: the current ETag",
            true,
            &[1],
            End::Complete(&[1], Cond::IfMatchCurrent),
            Ended::Committed,
        ),
        case(
            "complete refused by If-None-Match: * over an object",
            true,
            &[1, 2],
            End::Complete(&[1, 2], Cond::IfNoneMatchAny),
            Ended::Refused(PreconditionFailed::Exists),
        ),
        case("abort", true, &[1, 1, 2], End::Abort, Ended::Aborted),
        case(
            "a part committed after the abort",
            false,
            &[1],
            End::PartAfterAbort,
            Ended::NoSuchUpload,
        ),
        case(
            "delete the bucket with an upload in progress",
            false,
            &[1, 2],
            End::DeleteBucket,
            Ended::BucketDeleted,
        ),
    ];
    let old_bytes = data(100, 7_000);
    for c in cases {
        let name = c.name;
        let rig = Rig::new(4);
        rig.bucket(B, &record(2, 2, &[0, 1, 2, 3]));
        let old = match c.existing {
            true => Some(rig.put(name, B, K, &old_bytes).await),
            false => None,
        };
        rig.engine
            .create_upload(B, K, &upload_record())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        // The latest part of each number, and the sets of parts replaced since.
        let mut latest: BTreeMap<u32, (Segment, Vec<u8>)> = BTreeMap::new();
        let mut replaced = Vec::new();
        for (i, &n) in c.parts.iter().enumerate() {
            let bytes = data(200 + i as u64, 4_000 + 1_500 * i);
            let seg = upload_part(&rig, name, K, n, &bytes)
                .await
                .unwrap_or_else(|e| panic!("{name}: part {n}: {e}"));
            if let Some((old, _)) = latest.insert(n, (seg, bytes)) {
                replaced.push(old);
            }
        }
        let listed: Vec<(u32, Uuid)> = rig
            .engine
            .parts(UP)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .iter()
            .map(|p| (p.part_number, p.segment.set))
            .collect();
        let want: Vec<(u32, Uuid)> = latest.iter().map(|(n, (s, _))| (*n, s.set)).collect();
        assert_eq!(listed, want, "{name}: the upload lists the latest part of each number");
        for seg in &replaced {
            rig.gone(&format!("{name}: replaced part"), seg.set).await;
        }

        let (ended, doomed, kept, object): (Ended, Vec<Uuid>, Vec<&Segment>, Option<Vec<u8>>) = match c.end {
            End::Complete(chosen, cond) => match complete(&rig, name, K, chosen, cond) {
                Commit::Committed(m) => {
                    let chosen_segs: Vec<&Segment> = chosen.iter().map(|n| &latest[n].0).collect();
                    assert_eq!(
                        m.segments.iter().collect::<Vec<_>>(),
                        chosen_segs,
                        "{name}: the object is the chosen parts, in order"
                    );
                    assert_eq!(m.parts_count, u32::try_from(chosen.len()).ok(), "{name}: parts count");
                    let bytes: Vec<u8> = chosen.iter().flat_map(|n| latest[n].1.clone()).collect();
                    let unused = latest
                        .iter()
                        .filter(|(n, _)| !chosen.contains(n))
                        .map(|(_, (s, _))| s.set);
                    let old_sets = old.iter().map(|m| m.segments[0].set);
                    (
                        Ended::Committed,
                        unused.chain(old_sets).collect(),
                        chosen_segs,
                        Some(bytes),
                    )
                }
                Commit::PreconditionFailed(why) => {
                    let parts: Vec<&Segment> = latest.values().map(|(s, _)| s).collect();
                    let kept = parts.into_iter().chain(old.iter().map(|m| &m.segments[0])).collect();
                    (Ended::Refused(why), Vec::new(), kept, Some(old_bytes.clone()))
                }
            },
            End::Abort | End::PartAfterAbort | End::DeleteBucket => {
                let parts = latest.values().map(|(s, _)| s.set);
                let mut doomed: Vec<Uuid> = parts.collect();
                let ended = match c.end {
                    End::DeleteBucket => {
                        rig.engine
                            .delete_bucket(B)
                            .unwrap_or_else(|e| panic!("{name}: deleting the bucket: {e}"));
                        assert!(rig.engine.bucket(B).unwrap().is_none(), "{name}: bucket gone");
                        Ended::BucketDeleted
                    }
                    _ => {
                        rig.engine
                            .abort_upload(B, K, UP)
                            .unwrap_or_else(|e| panic!("{name}: aborting: {e}"));
                        if matches!(c.end, End::PartAfterAbort) {
                            let (w, object) = rig.write(name, B, K, &data(300, 5_000)).await;
                            doomed.push(w.segment().set);
                            let part = NewPart {
                                part_number: 9,
                                etag: object.etag,
                                checksums: object.checksums,
                            };
                            match rig.engine.commit_part(B, K, UP, w, part) {
                                Err(Error::NoSuchUpload(u)) if u == UP => Ended::NoSuchUpload,
                                other => panic!("{name}: a part for an aborted upload gave {other:?}"),
                            }
                        } else {
                            Ended::Aborted
                        }
                    }
                };
                let kept = old.iter().map(|m| &m.segments[0]).collect();
                (ended, doomed, kept, old.as_ref().map(|_| old_bytes.clone()))
            }
        };
        assert_eq!(ended, c.want, "{name}: outcome");
        let upload_left = matches!(ended, Ended::Refused(_));
        if ended != Ended::BucketDeleted {
            match rig.engine.upload(B, K, UP) {
                Ok(_) => assert!(upload_left, "{name}: the upload is still there"),
                Err(Error::NoSuchUpload(_)) => assert!(!upload_left, "{name}: the upload is gone"),
                Err(e) => panic!("{name}: looking up the upload: {e}"),
            }
            assert_eq!(rig.read(name, B, K).await, object, "{name}: bytes read back");
        }
        let parts_left = rig.engine.parts(UP).unwrap_or_else(|e| panic!("{name}: {e}")).len();
        assert_eq!(
            parts_left,
            if upload_left { latest.len() } else { 0 },
            "{name}: parts left"
        );

        rig.fence(name).await;
        for seg in kept {
            rig.whole(name, seg).await;
        }
        for set in doomed {
            rig.gone(name, set).await;
        }
        rig.settled(name).await;
    }
}

/// CompleteMultipartUpload reads the parts outside the commit lock; a part re-uploaded between
/// that read and the commit doomed the set the read saw. The engine looks the parts up again
/// under the lock: the object names only sets live at the commit, or the completion is
/// refused as InvalidPart with nothing changed.
#[tokio::test]
async fn complete_rechecks_the_parts_under_the_commit_lock() {
    /// What happens between reading the parts and completing with them.
    #[derive(Debug, Clone, Copy)]
    enum Meanwhile {
        /// Part 1 is uploaded again with other bytes.
        ReuploadOther,
        /// Part 1 is uploaded again with the same bytes (same ETag, a new set).
        ReuploadSame,
        /// Nothing, but the upload asked for SSE-S3 and its parts are plaintext.
        Nothing,
    }
    struct Case {
        name: &'static str,
        encryption: UploadEncryption,
        meanwhile: Meanwhile,
        /// The completion with the stale read commits (else: InvalidPart).
        commits: bool,
    }
    let cases = [
        Case {
            name: "part re-uploaded with other bytes: InvalidPart, then completes with the new part",
            encryption: UploadEncryption::Bucket,
            meanwhile: Meanwhile::ReuploadOther,
            commits: false,
        },
        Case {
            name: "part re-uploaded with the same bytes: the object names the new set",
            encryption: UploadEncryption::Bucket,
            meanwhile: Meanwhile::ReuploadSame,
            commits: true,
        },
        Case {
            name: "an SSE-S3 upload whose parts are plaintext: InvalidPart",
            encryption: UploadEncryption::Master,
            meanwhile: Meanwhile::Nothing,
            commits: false,
        },
    ];
    for c in cases {
        let name = c.name;
        let rig = Rig::new(4);
        rig.bucket(B, &record(2, 2, &[0, 1, 2, 3]));
        let upload = UploadRecord {
            encryption: c.encryption.clone(),
            ..upload_record()
        };
        rig.engine
            .create_upload(B, K, &upload)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let (p1, p2) = (data(1, 6_000), data(2, 5_000));
        let first = upload_part(&rig, name, K, 1, &p1)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        upload_part(&rig, name, K, 2, &p2)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        // What CompleteMultipartUpload read before taking the lock.
        let stale = rig.engine.parts(UP).unwrap_or_else(|e| panic!("{name}: {e}"));
        let again = match c.meanwhile {
            Meanwhile::ReuploadOther => Some(data(3, 6_000)),
            Meanwhile::ReuploadSame => Some(p1.clone()),
            Meanwhile::Nothing => None,
        };
        let mut part1 = (first.clone(), p1.clone());
        if let Some(bytes) = &again {
            let seg = upload_part(&rig, name, K, 1, bytes)
                .await
                .unwrap_or_else(|e| panic!("{name}: re-upload: {e}"));
            rig.gone(&format!("{name}: the replaced part"), first.set).await;
            part1 = (seg, bytes.clone());
        }
        let completion = |parts: Vec<storage_gateway::records::PartRecord>| Completion {
            parts,
            etag: "multipart-2".into(),
            headers: ContentHeaders::default(),
        };
        let rec = rig.engine.require_bucket(B).unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = rig
            .engine
            .complete_upload(B, &rec, K, UP, completion(stale), &WriteCondition::default());
        let committed = match got {
            Ok(Commit::Committed(m)) => Some(m),
            Err(Error::InvalidPart(why)) => {
                assert!(why.contains("part 1 "), "{name}: the refusal names the part: {why}");
                None
            }
            other => panic!("{name}: completing with the stale parts gave {other:?}"),
        };
        assert_eq!(committed.is_some(), c.commits, "{name}: outcome");
        match committed {
            Some(m) => {
                assert_eq!(m.segments[0], part1.0, "{name}: the object names part 1's live set");
                assert_ne!(m.segments[0].set, first.set, "{name}: not the doomed set");
                let want: Vec<u8> = [part1.1.clone(), p2.clone()].concat();
                assert_eq!(rig.read(name, B, K).await, Some(want), "{name}: bytes read back");
            }
            None => {
                assert!(rig.object(name, B, K).is_none(), "{name}: no object");
                let left = rig.engine.parts(UP).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(left.len(), 2, "{name}: the upload keeps its parts");
                assert_eq!(left[0].segment, part1.0, "{name}: part 1 as uploaded last");
                rig.whole(name, &part1.0).await;
                if matches!(c.meanwhile, Meanwhile::ReuploadOther) {
                    // A retry with what ListParts says now completes.
                    let got = rig
                        .engine
                        .complete_upload(B, &rec, K, UP, completion(left), &WriteCondition::default());
                    assert!(matches!(got, Ok(Commit::Committed(_))), "{name}: retry: {got:?}");
                    let want: Vec<u8> = [part1.1.clone(), p2.clone()].concat();
                    assert_eq!(rig.read(name, B, K).await, Some(want), "{name}: bytes read back");
                }
            }
        }
        rig.fence(name).await;
        rig.settled(name).await;
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Pins.

#[tokio::test]
async fn pins_delay_reaping_until_the_last_reader_lets_go() {
    /// The verb that dooms the set a reader holds.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Doom {
        Overwrite,
        Delete,
        CopyOver,
        CompleteOver,
    }
    let cases = [
        ("overwrite while a reader holds the object", Doom::Overwrite, 1),
        ("overwrite while two readers hold the object", Doom::Overwrite, 2),
        ("delete while a reader holds the object", Doom::Delete, 1),
        ("copy over the object while a reader holds it", Doom::CopyOver, 1),
        (
            "complete an upload over the object while a reader holds it",
            Doom::CompleteOver,
            1,
        ),
    ];
    let (old_bytes, new_bytes) = (data(1, 12_000), data(2, 5_000));
    for (name, doom, readers) in cases {
        let rig = Rig::new(4);
        let rec = record(2, 2, &[0, 1, 2, 3]);
        rig.bucket(B, &rec);
        let old = rig.put(name, B, K, &old_bytes).await;
        let mut held: Vec<ObjectReader> = (0..readers).map(|_| rig.open(name, B, K)).collect();

        match doom {
            Doom::Overwrite => {
                rig.put(name, B, K, &new_bytes).await;
            }
            Doom::Delete => assert!(rig.engine.delete_object(B, K).unwrap(), "{name}: deleted"),
            Doom::CopyOver => {
                rig.put(name, B, "source", &new_bytes).await;
                let source = rig.open(name, B, "source");
                let to = CopyTo {
                    bucket: B,
                    key: K,
                    record: &rec,
                    encryption: &Encryption::None,
                };
                let hasher = BodyHasher::carrying(&Checksums::default());
                rig.engine
                    .copy_object(source, hasher, to, ContentHeaders::default())
                    .await
                    .unwrap_or_else(|e| panic!("{name}: copying: {e}"));
            }
            Doom::CompleteOver => {
                rig.engine.create_upload(B, K, &upload_record()).unwrap();
                upload_part(&rig, name, K, 1, &new_bytes).await.unwrap();
                assert!(
                    matches!(complete(&rig, name, K, &[1], Cond::None), Commit::Committed(_)),
                    "{name}: completed"
                );
            }
        }
        let now = if doom == Doom::Delete {
            None
        } else {
            Some(new_bytes.clone())
        };
        assert_eq!(
            rig.read(name, B, K).await,
            now,
            "{name}: a new reader sees the verb's result"
        );

        // The doomed set went to the reaper before the fence's; it is deferred, not deleted.
        rig.fence(name).await;
        rig.whole(name, &old.segments[0]).await;
        while let Some(mut reader) = held.pop() {
            assert_eq!(
                drain(name, &mut reader).await,
                old_bytes,
                "{name}: the held reader reads the old bytes"
            );
            rig.fence(name).await;
            rig.whole(name, &old.segments[0]).await;
            drop(reader);
            if !held.is_empty() {
                // Another reader still holds the set.
                rig.fence(name).await;
                rig.whole(name, &old.segments[0]).await;
            }
        }
        rig.gone(name, old.segments[0].set).await;
        rig.settled(name).await;
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Stragglers.

#[tokio::test]
async fn stragglers() {
    /// How backend b0 misbehaves, and what the case does about it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Flow {
        /// b0's write is held past the quorum, then lands.
        HeldThenLands,
        /// b0's write is held past the quorum, then fails; the healer rebuilds the shard.
        HeldThenFails,
        /// b0's write lands after the write returned but before the commit.
        LandsBeforeCommit,
        /// The object is overwritten while its b0 shard is held.
        OverwrittenWhileHeld,
        /// The fault wrapper slows b0 down.
        Slow,
        /// The fault wrapper slows b0 down and fails its calls.
        SlowAndFailing,
    }
    let cases = [
        ("a held shard lands", Flow::HeldThenLands),
        ("a held shard fails and is healed", Flow::HeldThenFails),
        ("a held shard lands before the commit", Flow::LandsBeforeCommit),
        ("overwrite while a shard is held", Flow::OverwrittenWhileHeld),
        ("a slow backend (fault wrapper)", Flow::Slow),
        ("a slow and failing backend (fault wrapper)", Flow::SlowAndFailing),
    ];
    let (old_bytes, new_bytes) = (data(1, 10_000), data(2, 11_000));
    for (name, flow) in cases {
        let rig = Rig::with(4, |i| match (i, flow) {
            (0, Flow::Slow) => Wrap::Faults(FaultSpec {
                latency_ms: 200.0,
                ..FaultSpec::default()
            }),
            (0, Flow::SlowAndFailing) => Wrap::Faults(FaultSpec {
                latency_ms: 200.0,
                error_rate: 1.0,
                ..FaultSpec::default()
            }),
            (0, _) => Wrap::Gated(Gated::Puts),
            _ => Wrap::Plain,
        });
        rig.bucket(B, &record(2, 2, &[0, 1, 2, 3]));
        let on_b0 = |seg: &Segment| -> Shard {
            let idx = seg.backends.iter().position(|b| b == "b0").expect("b0 holds a shard");
            ("b0".into(), seg.set, idx)
        };
        let repairs = || rig.engine.repair_queue_len().unwrap();
        let stragglers_and_repairs = |stragglers: usize, queued: usize| {
            let rig = &rig;
            move || async move {
                let now = (rig.engine.straggling_shards(), rig.engine.repair_queue_len().unwrap());
                if now == (stragglers, queued) {
                    Ok(())
                } else {
                    Err(format!("(straggling, queued) = {now:?}"))
                }
            }
        };

        match flow {
            Flow::HeldThenLands | Flow::HeldThenFails => {
                rig.gate(0).set(Gate::Hold);
                let m = rig.put(name, B, K, &new_bytes).await;
                let seg = &m.segments[0];
                assert_eq!(
                    rig.engine.straggling_shards(),
                    1,
                    "{name}: the held shard is listed as straggling"
                );
                assert_eq!(
                    repairs(),
                    1,
                    "{name}: the held shard is queued for repair with the commit"
                );
                assert!(
                    !rig.stored().await.contains(&on_b0(seg)),
                    "{name}: b0's shard has not landed"
                );
                for _ in 0..2 {
                    assert_eq!(
                        rig.read(name, B, K).await,
                        Some(new_bytes.clone()),
                        "{name}: bytes read back"
                    );
                }
                assert_eq!(repairs(), 1, "{name}: readers do not take a straggler for damage");
                if flow == Flow::HeldThenLands {
                    rig.gate(0).set(Gate::Open);
                    eventually(&format!("{name}: the straggler lands"), stragglers_and_repairs(0, 0)).await;
                    assert!(rig.stored().await.contains(&on_b0(seg)), "{name}: b0's shard landed");
                } else {
                    rig.gate(0).set(Gate::Fail);
                    eventually(&format!("{name}: the straggler fails"), stragglers_and_repairs(0, 1)).await;
                    assert!(
                        !rig.stored().await.contains(&on_b0(seg)),
                        "{name}: b0's shard is missing"
                    );
                    assert_eq!(
                        rig.read(name, B, K).await,
                        Some(new_bytes.clone()),
                        "{name}: bytes read back"
                    );
                    // b0 is back: the queued repair is actionable.
                    rig.gate(0).set(Gate::Open);
                    rig.engine.backend("b0").unwrap().health().success();
                    let pass = rig.engine.heal_pass(None).await.unwrap();
                    assert_eq!(
                        (pass.repaired, pass.failed),
                        (1, 0),
                        "{name}: the healer rebuilds the shard"
                    );
                    assert_eq!(repairs(), 0, "{name}: repair done");
                    assert!(rig.stored().await.contains(&on_b0(seg)), "{name}: b0's shard rebuilt");
                }
            }
            Flow::LandsBeforeCommit => {
                rig.gate(0).set(Gate::Hold);
                let (w, object) = rig.write(name, B, K, &new_bytes).await;
                let seg = w.segment().clone();
                assert_eq!(
                    rig.engine.straggling_shards(),
                    1,
                    "{name}: the held shard is listed as straggling"
                );
                rig.gate(0).set(Gate::Open);
                eventually(&format!("{name}: the straggler lands"), stragglers_and_repairs(0, 0)).await;
                match rig.engine.put_object(B, K, w, object, &WriteCondition::default()) {
                    Ok(Commit::Committed(_)) => {}
                    other => panic!("{name}: {other:?}"),
                }
                assert_eq!(repairs(), 1, "{name}: the commit still queues the straggler");
                let pass = rig.engine.heal_pass(None).await.unwrap();
                assert_eq!((pass.repaired, pass.failed), (0, 0), "{name}: nothing to rebuild");
                assert_eq!(repairs(), 0, "{name}: the healer drops the landed straggler's record");
                assert!(rig.stored().await.contains(&on_b0(&seg)), "{name}: b0's shard landed");
            }
            Flow::OverwrittenWhileHeld => {
                rig.gate(0).set(Gate::Hold);
                let old = rig.put(name, B, K, &old_bytes).await;
                let new = rig.put(name, B, K, &new_bytes).await;
                assert_eq!(rig.engine.straggling_shards(), 2, "{name}: both writes straggle on b0");
                assert_eq!(
                    rig.read(name, B, K).await,
                    Some(new_bytes.clone()),
                    "{name}: bytes read back"
                );
                // The straggler holds the old set: the overwrite cannot have it deleted yet.
                rig.fence(name).await;
                let old_seg = &old.segments[0];
                let others: Vec<Shard> = shards_of(old_seg).into_iter().filter(|s| s.0 != "b0").collect();
                let stored = rig.stored().await;
                assert!(
                    others.iter().all(|s| stored.contains(s)),
                    "{name}: the old set stays while its straggler writes"
                );
                rig.gate(0).set(Gate::Open);
                eventually(&format!("{name}: the stragglers land"), stragglers_and_repairs(0, 0)).await;
                rig.gone(name, old_seg.set).await;
                rig.whole(name, &new.segments[0]).await;
            }
            Flow::Slow => {
                rig.put(name, B, K, &new_bytes).await;
                assert_eq!(
                    rig.read(name, B, K).await,
                    Some(new_bytes.clone()),
                    "{name}: bytes read back"
                );
                eventually(&format!("{name}: every shard lands"), stragglers_and_repairs(0, 0)).await;
            }
            Flow::SlowAndFailing => {
                let m = rig.put(name, B, K, &new_bytes).await;
                assert_eq!(
                    rig.read(name, B, K).await,
                    Some(new_bytes.clone()),
                    "{name}: bytes read back"
                );
                eventually(
                    &format!("{name}: the failed shard is queued"),
                    stragglers_and_repairs(0, 1),
                )
                .await;
                assert!(
                    !rig.stored().await.contains(&on_b0(&m.segments[0])),
                    "{name}: b0's shard is missing"
                );
                // The healer cannot write to b0 either: the repair stays queued.
                let pass = rig.engine.heal_pass(None).await.unwrap();
                assert_eq!(pass.repaired, 0, "{name}: nothing rebuilt onto a failing backend");
                assert_eq!(repairs(), 1, "{name}: the shard stays queued for repair");
                assert_eq!(
                    rig.read(name, B, K).await,
                    Some(new_bytes.clone()),
                    "{name}: bytes read back"
                );
                continue;
            }
        }
        assert_eq!(
            rig.read(name, B, K).await,
            Some(new_bytes.clone()),
            "{name}: bytes read back at the end"
        );
        rig.settled(name).await;
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Shard moves and the migrator's swap.

#[tokio::test]
async fn migrator_swap_outcomes() {
    /// What happens between the migrator's read of the object and its swap.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Meanwhile {
        Nothing,
        Overwrite,
        Delete,
        PolicyChangesAgain,
        BucketGoes,
    }
    let cases = [
        ("nothing changed: the swap is done", Meanwhile::Nothing, Swap::Done),
        ("overwritten between read and swap", Meanwhile::Overwrite, Swap::Raced),
        ("deleted between read and swap", Meanwhile::Delete, Swap::Raced),
        (
            "the policy changed again",
            Meanwhile::PolicyChangesAgain,
            Swap::Superseded,
        ),
        ("the bucket went", Meanwhile::BucketGoes, Swap::Raced),
    ];
    let (old_bytes, new_bytes) = (data(1, 9_000), data(2, 6_000));
    for (name, meanwhile, want) in cases {
        let rig = Rig::new(4);
        rig.bucket(B, &record(2, 2, &[0, 1, 2, 3]));
        let old = rig.put(name, B, K, &old_bytes).await;
        // A relabel: same code and backends, a new epoch.
        let rec = rig.change(name, B, 2, 2, &[0, 1, 2, 3]);
        let expect = rig.object(name, B, K).expect("the object exists");
        let mut new = expect.clone();
        new.policy_epoch = rec.policy_epoch;
        let mut kept = vec![&old.segments[0]];
        match meanwhile {
            Meanwhile::Nothing => {}
            Meanwhile::Overwrite => {
                rig.put(name, B, K, &new_bytes).await;
                kept.clear();
            }
            Meanwhile::Delete => {
                assert!(rig.engine.delete_object(B, K).unwrap(), "{name}: deleted");
                kept.clear();
            }
            Meanwhile::PolicyChangesAgain => {
                rig.change(name, B, 2, 2, &[0, 1, 2, 3]);
            }
            Meanwhile::BucketGoes => {
                assert!(rig.engine.delete_object(B, K).unwrap(), "{name}: deleted");
                rig.engine.delete_bucket(B).unwrap();
                kept.clear();
            }
        }
        let got = rig
            .engine
            .swap_migrated(B, K, &expect, &new, &[])
            .unwrap_or_else(|e| panic!("{name}: swap failed: {e}"));
        assert_eq!(got, want, "{name}: swap outcome");
        let now = rig.object(name, B, K);
        let (epoch, bytes) = match meanwhile {
            Meanwhile::Nothing => (Some(rec.policy_epoch), Some(old_bytes.clone())),
            Meanwhile::Overwrite => (Some(rec.policy_epoch), Some(new_bytes.clone())),
            Meanwhile::PolicyChangesAgain => (Some(1), Some(old_bytes.clone())),
            Meanwhile::Delete | Meanwhile::BucketGoes => (None, None),
        };
        assert_eq!(
            now.as_ref().map(|m| m.policy_epoch),
            epoch,
            "{name}: the object's epoch"
        );
        if meanwhile != Meanwhile::Overwrite {
            let version = now.as_ref().map(|m| m.version_id);
            let want_version = bytes.as_ref().map(|_| old.version_id);
            assert_eq!(version, want_version, "{name}: the same version");
        }
        if meanwhile != Meanwhile::BucketGoes {
            assert_eq!(rig.read(name, B, K).await, bytes, "{name}: bytes read back");
        }
        rig.fence(name).await;
        for seg in kept {
            rig.whole(name, seg).await;
        }
        rig.settled(name).await;
    }
}

/// Waits until every object of `B` is at `epoch` with each shard on one of `on`, the
/// migration of `B` is reported done, and the backends hold exactly what the catalog names.
async fn migrated(rig: &Rig, case: &str, epoch: u64, on: &[usize]) {
    let allowed: BTreeSet<String> = on.iter().map(|&i| id(i)).collect();
    let allowed = &allowed;
    eventually(
        &format!("{case}: migrated to epoch {epoch} on {allowed:?}"),
        move || async move {
            let view = rig.engine.migrations().view(B, epoch);
            if view.state != "done" || view.target_epoch != epoch {
                return Err(format!("migration {} at epoch {}", view.state, view.target_epoch));
            }
            for l in rig.engine.list_objects(B, b"", "", usize::MAX).unwrap() {
                let stray = l
                    .manifest
                    .segments
                    .iter()
                    .flat_map(|s| &s.backends)
                    .find(|b| !allowed.contains(*b));
                if l.manifest.policy_epoch != epoch || stray.is_some() {
                    return Err(format!("{} at epoch {}, on {stray:?}", l.key, l.manifest.policy_epoch));
                }
            }
            let (stored, named) = (rig.stored().await, rig.named());
            if stored != named {
                let leaked: Vec<_> = stored.difference(&named).collect();
                let lost: Vec<_> = named.difference(&stored).collect();
                return Err(format!("leaked {leaked:?}, lost {lost:?}"));
            }
            Ok(())
        },
    )
    .await;
}

/// The migrator at work, on [`Rig`]s with it running. Its throttle is lifted: the objects are
/// small.
fn start_migrator(rig: &Rig) -> workers::WorkerHandle {
    let mut throttle = rig.engine.migrations().throttle();
    throttle.max_mib_per_sec = 0.0;
    rig.engine.migrations().set_throttle(throttle).unwrap();
    rig.engine
        .workers()
        .spawn(Migrator::new(rig.engine.clone()))
        .expect("the migrator starts on the engine's runner")
}

#[tokio::test]
async fn migrator_moves_and_reencodes() {
    /// How the objects are expected to be migrated.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum How {
        Moved,
        Reencoded,
        Relabelled,
    }
    struct Case {
        name: &'static str,
        /// The new code and backends.
        to: (u8, u8, &'static [usize]),
        how: How,
        /// A reader holds the first object through the migration.
        reader: bool,
    }
    let cases = [
        Case {
            name: "move: same code, other backends",
            to: (2, 2, &[4, 5, 6, 7]),
            how: How::Moved,
            reader: false,
        },
        Case {
            name: "move: two of four backends replaced",
            to: (2, 2, &[2, 3, 4, 5]),
            how: How::Moved,
            reader: false,
        },
        Case {
            name: "move while a reader holds an object",
            to: (2, 2, &[4, 5, 6, 7]),
            how: How::Moved,
            reader: true,
        },
        Case {
            name: "re-encode: another code",
            to: (4, 2, &[0, 1, 2, 3, 4, 5]),
            how: How::Reencoded,
            reader: false,
        },
        Case {
            name: "relabel: same code and backends",
            to: (2, 2, &[0, 1, 2, 3]),
            how: How::Relabelled,
            reader: false,
        },
    ];
    const OBJECTS: usize = 3;
    for c in cases {
        let name = c.name;
        let rig = Rig::new(8);
        rig.bucket(B, &record(2, 2, &[0, 1, 2, 3]));
        let mut before = Vec::new();
        for i in 0..OBJECTS {
            let bytes = data(10 + i as u64, 3_000 + 4_000 * i);
            let m = rig.put(name, B, &format!("o{i}"), &bytes).await;
            before.push((format!("o{i}"), m, bytes));
        }
        let mut reader = c.reader.then(|| rig.open(name, B, "o0"));
        let migrator = start_migrator(&rig);
        let (k, m, on) = c.to;
        let rec = rig.change(name, B, k, m, on);
        let allowed: BTreeSet<String> = on.iter().map(|&i| id(i)).collect();

        if let Some(r) = reader.as_mut() {
            // Wait for o0's swap; its old copies then stay as long as the reader holds them.
            let o0 = &before[0].1.segments[0];
            let (rig, epoch) = (&rig, rec.policy_epoch);
            eventually(&format!("{name}: o0 migrated"), || async move {
                match rig.object(name, B, "o0") {
                    Some(m) if m.policy_epoch == epoch => Ok(()),
                    other => Err(format!("o0 at {:?}", other.map(|m| m.policy_epoch))),
                }
            })
            .await;
            let stored = rig.stored().await;
            let old_copies: Vec<Shard> = shards_of(o0).into_iter().filter(|s| !allowed.contains(&s.0)).collect();
            assert!(!old_copies.is_empty(), "{name}: o0 had shards to move");
            assert!(
                old_copies.iter().all(|s| stored.contains(s)),
                "{name}: moved shards' old copies stay while a reader holds the set"
            );
            assert_eq!(drain(name, r).await, before[0].2, "{name}: the held reader reads o0");
        }
        drop(reader);
        migrated(&rig, name, rec.policy_epoch, on).await;

        let view = rig.engine.migrations().view(B, rec.policy_epoch);
        let counts = (view.objects_moved, view.objects_reencoded, view.objects_relabelled);
        let n = OBJECTS as u64;
        let want = match c.how {
            How::Moved => (n, 0, 0),
            How::Reencoded => (0, n, 0),
            How::Relabelled => (0, 0, n),
        };
        assert_eq!(counts, want, "{name}: (moved, re-encoded, relabelled)");
        assert_eq!(
            (view.errors, view.skipped),
            (0, 0),
            "{name}: no errors, nothing skipped"
        );
        for (key, old, bytes) in &before {
            let now = rig.object(name, B, key).expect("still there");
            assert_eq!(now.version_id, old.version_id, "{name}: {key} is the same version");
            let same_set = now.segments[0].set == old.segments[0].set;
            assert_eq!(
                same_set,
                c.how != How::Reencoded,
                "{name}: {key} keeps its set unless re-encoded"
            );
            let code = (now.segments[0].k, now.segments[0].m);
            assert_eq!(code, (k, m), "{name}: {key} has the new code");
            assert_eq!(
                rig.read(name, B, key).await.as_ref(),
                Some(bytes),
                "{name}: {key} read back"
            );
        }
        let counts = rig.counts().await;
        for (backend, n) in counts {
            let i: usize = backend[1..].parse().unwrap();
            let want = if on.contains(&i) { OBJECTS } else { 0 };
            assert_eq!(n, want, "{name}: shards on {backend}");
        }
        migrator.pause();
    }
}

#[tokio::test]
async fn migrator_loses_races_to_clients_and_newer_policies() {
    /// What happens while the migrator waits for its reads of the old shards.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Meanwhile {
        /// A client overwrites the object (the swap is Raced).
        Overwrite,
        /// The policy changes again (the swap is Superseded).
        PolicyChangesAgain,
    }
    let cases = [
        (
            "overwritten while its shards move",
            (2, 2, &[4, 5, 6, 7][..]),
            Meanwhile::Overwrite,
        ),
        (
            "overwritten while it is re-encoded",
            (4, 2, &[2, 3, 4, 5, 6, 7]),
            Meanwhile::Overwrite,
        ),
        (
            "the policy changes again while its shards move",
            (2, 2, &[4, 5, 6, 7]),
            Meanwhile::PolicyChangesAgain,
        ),
        (
            "the policy changes again while it is re-encoded",
            (4, 2, &[2, 3, 4, 5, 6, 7]),
            Meanwhile::PolicyChangesAgain,
        ),
    ];
    let (old_bytes, new_bytes) = (data(1, 10_000), data(2, 7_000));
    // The policy of the second change.
    let again: &[usize] = &[2, 3, 4, 5];
    for (name, (k, m, on), meanwhile) in cases {
        let rig = Rig::with(8, |i| if i < 4 { Wrap::Gated(Gated::Gets) } else { Wrap::Plain });
        rig.bucket(B, &record(2, 2, &[0, 1, 2, 3]));
        let old = rig.put(name, B, K, &old_bytes).await;
        for i in 0..4 {
            rig.gate(i).set(Gate::Hold);
        }
        let migrator = start_migrator(&rig);
        let rec = rig.change(name, B, k, m, on);
        let gated = &rig;
        eventually(&format!("{name}: the migrator reads the old shards"), || async move {
            let rig = gated;
            let waiting: usize = (0..4).map(|i| rig.gate(i).waiting()).sum();
            if waiting > 0 {
                Ok(())
            } else {
                Err("no read waiting".into())
            }
        })
        .await;
        let (epoch, on, bytes) = match meanwhile {
            Meanwhile::Overwrite => {
                rig.put(name, B, K, &new_bytes).await;
                (rec.policy_epoch, on, &new_bytes)
            }
            Meanwhile::PolicyChangesAgain => {
                let rec = rig.change(name, B, 2, 2, again);
                (rec.policy_epoch, again, &old_bytes)
            }
        };
        for i in 0..4 {
            rig.gate(i).set(Gate::Open);
        }
        migrated(&rig, name, epoch, on).await;
        let now = rig.object(name, B, K).expect("the object exists");
        assert_eq!(
            now.version_id == old.version_id,
            meanwhile == Meanwhile::PolicyChangesAgain,
            "{name}: the client's version wins; the migrator's own carries on"
        );
        assert_eq!(
            rig.read(name, B, K).await.as_ref(),
            Some(bytes),
            "{name}: bytes read back"
        );
        migrator.pause();
    }
}

// ---------------------------------------------------------------------------------------------
// 6. Every verb that stops naming a set hands it to the reaper.

/// A verb run on the rig [`verbs_hand_doomed_sets_to_the_reaper`] sets up, named by its case.
type VerbFn = for<'a> fn(&'a Rig, &'a str) -> BoxFuture<'a, ()>;

/// The value of `res`, or a panic naming the case.
fn ok<T>(case: &str, res: storage_gateway::Result<T>) -> T {
    res.unwrap_or_else(|e| panic!("{case}: {e}"))
}

/// A relabelling swap of `a` (same code and backends, a new epoch), run after `meanwhile`.
async fn swap_a(r: &Rig, case: &str, meanwhile: bool) -> Swap {
    let rec = r.change(case, B, 2, 2, &[0, 1, 2, 3]);
    let expect = r.object(case, B, "a").expect("a exists");
    if meanwhile {
        r.put(case, B, "a", b"client").await;
    }
    let new = ObjectManifest {
        policy_epoch: rec.policy_epoch,
        ..expect.clone()
    };
    ok(case, r.engine.swap_migrated(B, "a", &expect, &new, &[]))
}

#[tokio::test]
async fn verbs_hand_doomed_sets_to_the_reaper() {
    // Every set of bucket B has one shard on each of b0..b3, so each backend holds one shard
    // per live set. The rig starts with four: objects `a` and `c`, and parts 1 and 2 of an
    // upload to `a`. Each case gives the live sets it leaves.
    let cases: [(&str, VerbFn, usize); 19] = [
        (
            "put a new key",
            |r, case| Box::pin(async move { drop(r.put(case, B, "n", b"new").await) }),
            5,
        ),
        (
            "put over an object",
            |r, case| Box::pin(async move { drop(r.put(case, B, "a", b"new").await) }),
            4,
        ),
        (
            "put refused by If-None-Match: *",
            |r, case| {
                Box::pin(async move {
                    let (w, o) = r.write(case, B, "a", b"new").await;
                    let got = r.engine.put_object(B, "a", w, o, &Cond::IfNoneMatchAny.against(None));
                    assert!(matches!(got, Ok(Commit::PreconditionFailed(_))), "{case}: {got:?}");
                })
            },
            4,
        ),
        ("copy to a new key", |r, case| Box::pin(copy(r, case, "n")), 5),
        ("copy over an object", |r, case| Box::pin(copy(r, case, "a")), 4),
        (
            "delete",
            |r, case| Box::pin(async move { assert!(ok(case, r.engine.delete_object(B, "a")), "{case}") }),
            3,
        ),
        (
            "delete of an absent key",
            |r, case| Box::pin(async move { assert!(!ok(case, r.engine.delete_object(B, "x")), "{case}") }),
            4,
        ),
        (
            "delete several",
            |r, case| {
                Box::pin(async move {
                    let keys = ["a".to_owned(), "c".to_owned(), "x".to_owned()];
                    let got: Vec<bool> = ok(case, r.engine.delete_objects(B, &keys))
                        .into_iter()
                        .map(|res| ok(case, res))
                        .collect();
                    assert_eq!(got, [true, true, false], "{case}");
                })
            },
            2,
        ),
        (
            "upload another part",
            |r, case| Box::pin(async move { drop(ok(case, upload_part(r, case, "a", 3, b"part 3").await)) }),
            5,
        ),
        (
            "replace a part",
            |r, case| Box::pin(async move { drop(ok(case, upload_part(r, case, "a", 1, b"again").await)) }),
            4,
        ),
        (
            "complete with every part, over an object",
            |r, case| {
                Box::pin(async move {
                    let got = complete(r, case, "a", &[1, 2], Cond::None);
                    assert!(matches!(got, Commit::Committed(_)), "{case}: {got:?}");
                })
            },
            3,
        ),
        (
            "complete with one part, over an object",
            |r, case| {
                Box::pin(async move {
                    let got = complete(r, case, "a", &[2], Cond::None);
                    assert!(matches!(got, Commit::Committed(_)), "{case}: {got:?}");
                })
            },
            2,
        ),
        (
            "complete refused",
            |r, case| {
                Box::pin(async move {
                    let got = complete(r, case, "a", &[1, 2], Cond::IfNoneMatchAny);
                    assert!(matches!(got, Commit::PreconditionFailed(_)), "{case}: {got:?}");
                })
            },
            4,
        ),
        (
            "abort",
            |r, case| Box::pin(async move { ok(case, r.engine.abort_upload(B, "a", UP)) }),
            2,
        ),
        (
            "a part for an aborted upload",
            |r, case| {
                Box::pin(async move {
                    ok(case, r.engine.abort_upload(B, "a", UP));
                    let got = upload_part(r, case, "a", 3, b"late").await;
                    assert!(matches!(got, Err(Error::NoSuchUpload(_))), "{case}: {got:?}");
                })
            },
            2,
        ),
        (
            "a written set dropped uncommitted",
            |r, case| Box::pin(async move { drop(r.write(case, B, "a", b"cancelled").await) }),
            4,
        ),
        (
            "commit into a deleted bucket",
            |r, case| {
                Box::pin(async move {
                    r.bucket("gone", &record(2, 2, &[0, 1, 2, 3]));
                    let (w, o) = r.write(case, "gone", "a", b"late").await;
                    ok(case, r.engine.delete_bucket("gone"));
                    let got = r.engine.put_object("gone", "a", w, o, &WriteCondition::default());
                    assert!(matches!(got, Err(Error::NoSuchBucket(_))), "{case}: {got:?}");
                })
            },
            4,
        ),
        (
            "the migrator's swap",
            |r, case| Box::pin(async move { assert_eq!(swap_a(r, case, false).await, Swap::Done, "{case}") }),
            4,
        ),
        (
            "the migrator's swap, raced by a client",
            |r, case| Box::pin(async move { assert_eq!(swap_a(r, case, true).await, Swap::Raced, "{case}") }),
            4,
        ),
    ];
    for (name, verb, live_after) in cases {
        let rig = Rig::new(4);
        rig.bucket(B, &record(2, 2, &[0, 1, 2, 3]));
        rig.put(name, B, "a", &data(1, 6_000)).await;
        rig.put(name, B, "c", &data(2, 6_000)).await;
        ok(name, rig.engine.create_upload(B, "a", &upload_record()));
        for n in [1, 2] {
            ok(
                name,
                upload_part(&rig, name, "a", n, &data(10 + u64::from(n), 5_000)).await,
            );
        }
        rig.settled(name).await;
        let live: BTreeMap<String, usize> = (0..4).map(|i| (id(i), 4)).collect();
        assert_eq!(rig.counts().await, live, "{name}: shards per backend before");

        verb(&rig, name).await;
        rig.fence(name).await;
        rig.settled(name).await;
        let live: BTreeMap<String, usize> = (0..4).map(|i| (id(i), live_after)).collect();
        assert_eq!(rig.counts().await, live, "{name}: shards per backend after");
        for key in ["a", "c", "n"] {
            if let Some(m) = rig.object(name, B, key) {
                let bytes = rig.read(name, B, key).await.expect("exists");
                assert_eq!(bytes.len() as u64, m.size, "{name}: {key} reads back whole");
            }
        }
    }
}

/// Copies `c` to `to`.
async fn copy(rig: &Rig, case: &str, to: &str) {
    let rec = ok(case, rig.engine.require_bucket(B));
    let source = rig.open(case, B, "c");
    let dest = CopyTo {
        bucket: B,
        key: to,
        record: &rec,
        encryption: &Encryption::None,
    };
    let hasher = BodyHasher::carrying(&Checksums::default());
    ok(
        case,
        rig.engine
            .copy_object(source, hasher, dest, ContentHeaders::default())
            .await,
    );
}

//! In-crate engine tests, for what the public API cannot see: the catalog's set records. A
//! shard set is Pending while it is written, Live while a manifest or part names it (with that
//! record as its owner), Deleting once doomed (kept while a reader pins it), then forgotten.
//!
//! Here the doomed-set drop bomb is armed (`cfg(test)`): a verb that dropped a [`Doomed`]
//! without reaping it would panic in these tests. The behaviour seen from outside (bytes, shard
//! objects, outcomes) is tested in `tests/engine.rs`.

use super::*;
use crate::backend::Backend;
use crate::crypto::Encryption;
use crate::meta::RocksStore;
use crate::records::{
    BucketRecord, Checksums, ContentHeaders, ObjectManifest, SetOwner, SetState, UploadEncryption, UploadRecord,
};
use bytes::Bytes;
use futures::future::BoxFuture;
use placement::{BackendSelector, BucketPolicy};
use std::collections::BTreeMap;
use std::time::Duration;
use uuid::Uuid;

/// How long the reaper may take before a test gives up on it (it needs milliseconds).
const PATIENCE: Duration = Duration::from_secs(30);

const B: &str = "b";
const UP: &str = "upload-1";

/// An engine on four in-memory backends with bucket [`B`] coded 2 + 2 across them.
struct Rig {
    engine: Engine,
    _meta: tempfile::TempDir,
}

impl Rig {
    fn new() -> Self {
        Self::with_store(|store| Arc::new(store))
    }

    /// A rig whose catalog is on what `wrap` makes of a fresh RocksDB store.
    fn with_store(wrap: impl FnOnce(RocksStore) -> Arc<dyn crate::meta::MetaStore>) -> Self {
        let meta = tempfile::tempdir().expect("a temporary directory for RocksDB");
        let store = RocksStore::open(meta.path()).expect("RocksDB opens in a fresh directory");
        let backends = (0..4)
            .map(|i| Backend::remote(format!("b{i}"), Arc::new(object_store::memory::InMemory::new())))
            .collect();
        let engine = Engine::new(Catalog::new(wrap(store)), backends);
        let rec = BucketRecord {
            created_ms: 1,
            policy: BucketPolicy {
                k: 2,
                m: 2,
                block_size: 4096,
            },
            policy_epoch: 1,
            encrypted: false,
            backends: BackendSelector::default(),
            intent: placement::BucketIntent::default(),
            update_token_sha256: None,
            changed: None,
            prefixes: Vec::new(),
        };
        engine.create_bucket(B, &rec).expect("creating the bucket");
        Self { engine, _meta: meta }
    }

    /// Writes `bytes` as a new set of `B/key` (not committed).
    async fn write(&self, case: &str, key: &str, bytes: &[u8]) -> (WrittenSet, NewObject) {
        let rec = self.engine.require_bucket(B).expect("the bucket exists");
        let body = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::copy_from_slice(bytes))]);
        let hasher = BodyHasher::carrying(&Checksums::default());
        let (written, hasher) = self
            .engine
            .write_set_with(key, Target::for_key(&rec, key), body, hasher, &Encryption::None)
            .await
            .unwrap_or_else(|e| panic!("{case}: writing {key}: {e}"));
        let (md5, checksums) = hasher.finish();
        let object = NewObject {
            etag: hex::encode(md5),
            headers: ContentHeaders::default(),
            checksums,
            policy_epoch: rec.policy_epoch,
        };
        (written, object)
    }

    async fn put(&self, case: &str, key: &str, bytes: &[u8]) -> ObjectManifest {
        let (written, object) = self.write(case, key, bytes).await;
        match self
            .engine
            .put_object(B, key, written, object, &WriteCondition::default())
        {
            Ok(Commit::Committed(m)) => *m,
            other => panic!("{case}: putting {key}: {other:?}"),
        }
    }

    async fn part(&self, case: &str, key: &str, n: u32, bytes: &[u8]) -> Uuid {
        let (written, object) = self.write(case, key, bytes).await;
        let part = NewPart {
            part_number: n,
            etag: object.etag,
            checksums: object.checksums,
        };
        let rec = self
            .engine
            .commit_part(B, key, UP, written, part)
            .unwrap_or_else(|e| panic!("{case}: part {n} of {key}: {e}"));
        rec.segment.set
    }

    fn upload(&self, case: &str, key: &str) {
        let rec = UploadRecord {
            upload_id: UP.into(),
            created_ms: 1,
            headers: ContentHeaders::default(),
            checksum_algorithm: None,
            encryption: UploadEncryption::Bucket,
        };
        self.engine
            .create_upload(B, key, &rec)
            .unwrap_or_else(|e| panic!("{case}: creating an upload: {e}"));
    }

    fn complete(&self, case: &str, key: &str, chosen: &[u32], condition: &WriteCondition) -> Commit {
        let parts = self.engine.parts(UP).unwrap_or_else(|e| panic!("{case}: {e}"));
        let completion = Completion {
            parts: parts.into_iter().filter(|p| chosen.contains(&p.part_number)).collect(),
            etag: format!("multipart-{}", chosen.len()),
            headers: ContentHeaders::default(),
        };
        let rec = self.engine.require_bucket(B).expect("the bucket exists");
        self.engine
            .complete_upload(B, &rec, key, UP, completion, condition)
            .unwrap_or_else(|e| panic!("{case}: completing: {e}"))
    }

    fn state(&self, set: Uuid) -> Option<SetState> {
        self.engine
            .catalog()
            .set(set)
            .expect("reading a set record")
            .map(|r| r.state)
    }

    /// Who names each set, by the objects' manifests and the uploads' parts.
    fn owners(&self) -> BTreeMap<Uuid, SetOwner> {
        let mut out = BTreeMap::new();
        for (bucket, _) in self.engine.buckets().expect("listing buckets") {
            for l in self.engine.list_objects(&bucket, b"", "", usize::MAX).expect("listing") {
                for seg in &l.manifest.segments {
                    let owner = SetOwner::Object {
                        bucket: bucket.clone(),
                        key: l.key.clone(),
                    };
                    out.insert(seg.set, owner);
                }
            }
            for (_, up) in self.engine.uploads(&bucket, "").expect("listing uploads") {
                for p in self.engine.parts(&up.upload_id).expect("listing parts") {
                    let owner = SetOwner::Part {
                        upload_id: up.upload_id.clone(),
                        part_number: p.part_number,
                    };
                    out.insert(p.segment.set, owner);
                }
            }
        }
        out
    }

    /// Waits until the catalog records exactly the named sets, each Live and owned by the
    /// record naming it (no Pending or Deleting set left over), and no repair is queued.
    async fn records_settled(&self, case: &str) {
        let give_up = tokio::time::Instant::now() + PATIENCE;
        loop {
            let owners = self.owners();
            let records: BTreeMap<Uuid, (SetState, Option<SetOwner>)> = self
                .engine
                .catalog()
                .sets()
                .expect("listing set records")
                .into_iter()
                .map(|(id, r)| (id, (r.state, r.owner)))
                .collect();
            let want: BTreeMap<Uuid, (SetState, Option<SetOwner>)> = owners
                .into_iter()
                .map(|(id, o)| (id, (SetState::Live, Some(o))))
                .collect();
            let repairs = self.engine.repair_queue_len().expect("reading the repair queue");
            if records == want && repairs == 0 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < give_up,
                "{case}: set records {records:?}, named {want:?}, {repairs} repairs queued"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until the catalog has forgotten `set`.
    async fn forgotten(&self, case: &str, set: Uuid) {
        let give_up = tokio::time::Instant::now() + PATIENCE;
        while let Some(state) = self.state(set) {
            assert!(
                tokio::time::Instant::now() < give_up,
                "{case}: set {set} still recorded as {state:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// One step of [`set_records_follow_the_verbs`], named by its case.
type Step = for<'a> fn(&'a Rig, &'a str) -> BoxFuture<'a, ()>;

/// Steps run in order on one engine; after each, the catalog records exactly the sets named.
#[tokio::test]
async fn set_records_follow_the_verbs() {
    let steps: [(&str, Step); 13] = [
        ("put a", |r, case| {
            Box::pin(async move { drop(r.put(case, "a", b"a1").await) })
        }),
        ("put c", |r, case| {
            Box::pin(async move { drop(r.put(case, "c", b"c1").await) })
        }),
        ("overwrite a", |r, case| {
            Box::pin(async move { drop(r.put(case, "a", b"a2").await) })
        }),
        ("put refused", |r, case| {
            Box::pin(async move {
                let (w, o) = r.write(case, "a", b"refused").await;
                let cond = WriteCondition {
                    if_match: None,
                    if_none_match: Some(EtagCondition::Any),
                };
                let got = r.engine.put_object(B, "a", w, o, &cond);
                assert!(matches!(got, Ok(Commit::PreconditionFailed(_))), "{case}: {got:?}");
            })
        }),
        ("copy c to d", |r, case| {
            Box::pin(async move {
                let (m, pins) = r.engine.pinned_object(B, "c").unwrap().expect("c exists");
                let source = r.engine.reader(B, "c", &m, pins, 0..m.size);
                let rec = r.engine.require_bucket(B).unwrap();
                let to = CopyTo {
                    bucket: B,
                    key: "d",
                    record: &rec,
                    encryption: &Encryption::None,
                };
                let hasher = BodyHasher::carrying(&Checksums::default());
                let got = r
                    .engine
                    .copy_object(source, hasher, to, ContentHeaders::default())
                    .await;
                assert!(got.is_ok(), "{case}: {got:?}");
            })
        }),
        ("delete d", |r, case| {
            Box::pin(async move { assert!(r.engine.delete_object(B, "d").unwrap(), "{case}") })
        }),
        ("upload parts to a, replacing one", |r, case| {
            Box::pin(async move {
                r.upload(case, "a");
                for (n, bytes) in [(1, &b"p1"[..]), (1, b"p1 again"), (2, b"p2")] {
                    r.part(case, "a", n, bytes).await;
                }
            })
        }),
        ("complete with part 2 over a", |r, case| {
            Box::pin(async move {
                let got = r.complete(case, "a", &[2], &WriteCondition::default());
                assert!(matches!(got, Commit::Committed(_)), "{case}: {got:?}");
            })
        }),
        ("upload a part to e and abort", |r, case| {
            Box::pin(async move {
                r.upload(case, "e");
                r.part(case, "e", 1, b"e1").await;
                r.engine.abort_upload(B, "e", UP).unwrap();
            })
        }),
        ("a written set dropped uncommitted", |r, case| {
            Box::pin(async move { drop(r.write(case, "a", b"cancelled").await) })
        }),
        ("the migrator's swap (relabel)", |r, case| {
            Box::pin(async move {
                let change = crate::records::ChangeInfo {
                    at_ms: 1,
                    by: "engine test".into(),
                    automatic: false,
                    reason: case.into(),
                };
                let decided = r
                    .engine
                    .change_bucket_policy(B, change, |cur| Ok::<_, ()>(Some(cur.clone())))
                    .unwrap();
                let PolicyChanged::Changed { new: rec, .. } = decided else {
                    panic!("{case}: {decided:?}")
                };
                let expect = r.engine.object(B, "a").unwrap().expect("a exists");
                let new = ObjectManifest {
                    policy_epoch: rec.policy_epoch,
                    ..expect.clone()
                };
                let got = r.engine.swap_migrated(B, "a", &expect, &new, &[]).unwrap();
                assert_eq!(got, Swap::Done, "{case}");
            })
        }),
        ("complete refused", |r, case| {
            Box::pin(async move {
                r.upload(case, "a");
                r.part(case, "a", 1, b"p1").await;
                let cond = WriteCondition {
                    if_match: None,
                    if_none_match: Some(EtagCondition::Any),
                };
                let got = r.complete(case, "a", &[1], &cond);
                assert!(matches!(got, Commit::PreconditionFailed(_)), "{case}: {got:?}");
            })
        }),
        ("delete every object, then the bucket with its upload", |r, case| {
            Box::pin(async move {
                let keys = ["a".to_owned(), "c".to_owned()];
                let got: Vec<bool> = r
                    .engine
                    .delete_objects(B, &keys)
                    .unwrap()
                    .into_iter()
                    .flatten()
                    .collect();
                assert_eq!(got, [true, true], "{case}");
                r.engine.delete_bucket(B).unwrap();
                assert!(r.engine.bucket(B).unwrap().is_none(), "{case}: the bucket is gone");
            })
        }),
    ];
    let rig = Rig::new();
    for (name, step) in steps {
        step(&rig, name).await;
        rig.records_settled(name).await;
    }
    assert!(rig.owners().is_empty(), "nothing is named at the end");
}

/// The states a set passes through, observed while something holds it in each.
#[tokio::test]
async fn set_records_while_sets_are_in_use() {
    let rig = Rig::new();

    let case = "written, not committed: Pending";
    let (written, object) = rig.write(case, "k", b"one").await;
    let first = written.segment().set;
    assert_eq!(rig.state(first), Some(SetState::Pending), "{case}");

    let case = "committed: Live, owned by the object";
    match rig
        .engine
        .put_object(B, "k", written, object, &WriteCondition::default())
    {
        Ok(Commit::Committed(_)) => {}
        other => panic!("{case}: {other:?}"),
    }
    assert_eq!(rig.state(first), Some(SetState::Live), "{case}");
    rig.records_settled(case).await;

    let case = "overwritten while a reader holds it: Deleting, pinned, kept";
    let (m, pins) = rig.engine.pinned_object(B, "k").unwrap().expect("k exists");
    let mut reader = rig.engine.reader(B, "k", &m, pins, 0..m.size);
    rig.put(case, "k", b"two").await;
    assert_eq!(rig.state(first), Some(SetState::Deleting), "{case}");
    // Let the reaper see the doomed set and defer it.
    let fence = rig.put(case, "fence", b"fence").await.segments[0].set;
    assert!(rig.engine.delete_object(B, "fence").unwrap(), "{case}");
    rig.forgotten(case, fence).await;
    assert!(rig.engine.pins().is_pinned(first), "{case}: pinned");
    assert_eq!(rig.state(first), Some(SetState::Deleting), "{case}: still recorded");
    let chunk = reader
        .next_chunk()
        .await
        .unwrap_or_else(|e| panic!("{case}: reading: {e}"));
    assert_eq!(
        chunk.as_deref(),
        Some(&b"one"[..]),
        "{case}: the reader reads the old bytes"
    );

    let case = "the reader lets go: forgotten";
    drop(reader);
    assert!(!rig.engine.pins().is_pinned(first), "{case}: unpinned");
    rig.forgotten(case, first).await;

    let case = "a part: Live, owned by its upload";
    rig.upload(case, "k");
    let part = rig.part(case, "k", 1, b"part").await;
    let owner = rig.engine.catalog().set(part).unwrap().and_then(|r| r.owner);
    let by_part = SetOwner::Part {
        upload_id: UP.into(),
        part_number: 1,
    };
    assert_eq!(owner, Some(by_part), "{case}");

    let case = "completed: the part's set is owned by the object";
    let got = rig.complete(case, "k", &[1], &WriteCondition::default());
    assert!(matches!(got, Commit::Committed(_)), "{case}: {got:?}");
    let owner = rig.engine.catalog().set(part).unwrap().and_then(|r| r.owner);
    let by_object = SetOwner::Object {
        bucket: B.into(),
        key: "k".into(),
    };
    assert_eq!(owner, Some(by_object), "{case}");
    rig.records_settled(case).await;

    let case = "dropped uncommitted: Deleting, then forgotten";
    let (written, _) = rig.write(case, "k", b"cancelled").await;
    let dropped = written.segment().set;
    drop(written);
    assert_ne!(rig.state(dropped), Some(SetState::Pending), "{case}: abandoned at once");
    rig.forgotten(case, dropped).await;
    rig.records_settled(case).await;
}

#[tokio::test]
async fn sets_written_before_keyed_integrity_read_beside_keyed_ones() {
    // One catalog and one set of backends, first served by an engine without master keys (its
    // plaintext sets have CRC32C-only shard blocks, as every build before keyed integrity
    // wrote them), then by one with keys, which writes keyed sets and must read both.
    let meta = tempfile::tempdir().expect("a temporary directory for RocksDB");
    let store: Arc<dyn crate::meta::MetaStore> =
        Arc::new(RocksStore::open(meta.path()).expect("RocksDB opens in a fresh directory"));
    let backends: Vec<Backend> = (0..4)
        .map(|i| Backend::remote(format!("b{i}"), Arc::new(object_store::memory::InMemory::new())))
        .collect();
    let before = Rig {
        engine: Engine::new(Catalog::new(store.clone()), backends.clone()),
        _meta: tempfile::tempdir().expect("a spare directory"),
    };
    let rec = BucketRecord {
        created_ms: 1,
        policy: BucketPolicy {
            k: 2,
            m: 2,
            block_size: 4096,
        },
        policy_epoch: 1,
        encrypted: false,
        backends: BackendSelector::default(),
        intent: placement::BucketIntent::default(),
        update_token_sha256: None,
        changed: None,
        prefixes: Vec::new(),
    };
    before.engine.create_bucket(B, &rec).expect("creating the bucket");
    let old_bytes: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
    let old = before.put("before", "old", &old_bytes).await;
    assert!(old.segments[0].integrity.is_none(), "no key ring, no MAC");

    let after = Rig {
        engine: Engine::with_keys(
            Catalog::new(store),
            backends,
            Arc::new(KeyRing::ephemeral_for_tests()),
            Arc::new(Telemetry::off()),
        ),
        _meta: meta,
    };
    let new_bytes: Vec<u8> = (0..10_000u32).map(|i| (i % 241) as u8).collect();
    let new = after.put("after", "new", &new_bytes).await;
    let seg = &new.segments[0];
    assert!(
        seg.integrity.is_some() && seg.layout().keyed,
        "new plaintext sets are keyed"
    );
    let set_rec = after
        .engine
        .catalog()
        .set(seg.set)
        .expect("set record")
        .expect("live set");
    assert_eq!(
        set_rec.segment.and_then(|s| s.integrity),
        seg.integrity,
        "the set record keeps the MAC key for the healer and scrubber"
    );
    for (key, want) in [("old", &old_bytes), ("new", &new_bytes)] {
        let (m, pins) = after.engine.pinned_object(B, key).expect("lookup").expect("object");
        let mut reader = after.engine.reader(B, key, &m, pins, 100..m.size);
        let mut got = Vec::new();
        while let Some(chunk) = reader
            .next_chunk()
            .await
            .unwrap_or_else(|e| panic!("reading {key}: {e}"))
        {
            got.extend_from_slice(&chunk);
        }
        assert!(got == want[100..], "{key} read back wrong");
    }
    after.records_settled("both formats").await;
}

/// WAL syncs held until the test lets them through, and counted: what a slow disk looks like
/// to the engine, without a power loss.
#[derive(Default)]
struct Gate {
    closed: std::sync::Mutex<bool>,
    opened: std::sync::Condvar,
    waiting: std::sync::atomic::AtomicUsize,
    syncs: std::sync::atomic::AtomicUsize,
}

impl Gate {
    fn set(&self, closed: bool) {
        *self.closed.lock().unwrap() = closed;
        self.opened.notify_all();
    }

    fn syncs(&self) -> usize {
        self.syncs.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn waiting(&self) -> usize {
        self.waiting.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// RocksDB with its syncs behind a [`Gate`].
struct GatedStore {
    inner: RocksStore,
    gate: Arc<Gate>,
}

impl crate::meta::MetaStore for GatedStore {
    fn get(&self, t: crate::meta::Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.get(t, key)
    }

    fn scan(&self, t: crate::meta::Table, from: &[u8], prefix: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.inner.scan(t, from, prefix, limit)
    }

    fn walk(
        &self,
        t: crate::meta::Table,
        from: &[u8],
        prefix: &[u8],
        visit: &mut crate::meta::Visit<'_>,
    ) -> Result<()> {
        self.inner.walk(t, from, prefix, visit)
    }

    fn write(&self, batch: crate::meta::Batch) -> Result<()> {
        self.inner.write(batch)
    }

    fn sync(&self) -> Result<()> {
        use std::sync::atomic::Ordering::SeqCst;
        self.gate.waiting.fetch_add(1, SeqCst);
        let mut closed = self.gate.closed.lock().unwrap();
        while *closed {
            closed = self.gate.opened.wait(closed).unwrap();
        }
        drop(closed);
        self.gate.waiting.fetch_sub(1, SeqCst);
        self.gate.syncs.fetch_add(1, SeqCst);
        self.inner.sync()
    }

    fn sequence(&self) -> u64 {
        self.inner.sequence()
    }
}

/// Whether backend b0 holds a shard of `set`.
async fn shard_exists(rig: &Rig, set: Uuid) -> bool {
    let backend = rig.engine.backend("b0").unwrap();
    // A 2 + 2 set is on all four backends; b0 holds one of its shards, whichever index.
    for idx in 0..4 {
        if backend.read_range(&Backend::shard_path(set, idx), 0..1).await.is_ok() {
            return true;
        }
    }
    false
}

/// With `fsync` (the default) the set an overwrite replaced is deleted only once the commit
/// that replaced it is durable; `settle` syncs only when something was committed since the last
/// sync. With `relaxed` nothing waits for a sync.
#[tokio::test]
async fn replaced_sets_wait_for_a_durable_commit() {
    let gate = Arc::new(Gate::default());
    let rig = Rig::with_store(|inner| {
        Arc::new(GatedStore {
            inner,
            gate: gate.clone(),
        })
    });
    assert_eq!(rig.engine.durability(), crate::Durability::Fsync);

    let case = "settle syncs what was committed, once";
    let old = rig.put(case, "k", b"one").await.segments[0].set;
    rig.records_settled(case).await;
    let before = gate.syncs();
    rig.engine.settle().await.unwrap();
    assert_eq!(gate.syncs(), before + 1, "{case}: a commit to sync");
    rig.engine.settle().await.unwrap();
    assert_eq!(gate.syncs(), before + 1, "{case}: nothing new to sync");

    let case = "fsync: the replaced set waits for the sync";
    gate.set(true);
    rig.put(case, "k", b"two").await;
    let give_up = tokio::time::Instant::now() + PATIENCE;
    while gate.waiting() == 0 {
        assert!(tokio::time::Instant::now() < give_up, "{case}: the reaper never synced");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        rig.state(old),
        Some(SetState::Deleting),
        "{case}: doomed, not forgotten"
    );
    assert!(shard_exists(&rig, old).await, "{case}: the shards are still there");
    gate.set(false);
    rig.forgotten(case, old).await;
    assert!(!shard_exists(&rig, old).await, "{case}: deleted after the sync");
    rig.records_settled(case).await;

    let case = "relaxed: reaped without a sync";
    rig.engine.set_durability(crate::Durability::Relaxed);
    gate.set(true);
    let syncs = gate.syncs();
    let old = rig.engine.object(B, "k").unwrap().expect("k exists").segments[0].set;
    rig.put(case, "k", b"three").await;
    rig.engine.settle().await.unwrap();
    rig.forgotten(case, old).await;
    assert_eq!((gate.syncs(), gate.waiting()), (syncs, 0), "{case}: no sync asked for");
    gate.set(false);
}

#[test]
fn read_settings_pack_into_one_word_and_back() {
    for strategy in [ReadStrategy::Latency, ReadStrategy::DataFirst] {
        for hedging in [false, true] {
            let s = ReadSettings { strategy, hedging };
            assert_eq!(unpack_reads(pack_reads(s)), s);
        }
    }
    assert_eq!(unpack_reads(pack_reads(ReadSettings::default())), ReadSettings::HEDGED);
    assert_ne!(pack_reads(ReadSettings::HEDGED), pack_reads(ReadSettings::DATA_FIRST));
}

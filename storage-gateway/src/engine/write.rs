//! Writing a body stream as one shard set.
//!
//! Blocks are coded off the async threads and fanned out to one writer task per shard through
//! bounded channels, so memory stays at (channel depth + one part) per shard whatever the size.
//! The set is recorded Pending before the first byte goes out; a guard abandons it if the
//! request fails or is cancelled, so no shard outlives its request unreferenced.
//!
//! The write is acknowledged once the write quorum of shards is stored: shards still being
//! written then (stragglers, on slow backends) finish in the background, with their set pinned
//! against deletion and a repair queued if they fail or take too long. A shard whose backend
//! stops accepting blocks while a quorum of others still does is dropped from the write and
//! queued for repair rather than holding the whole PUT to the slowest backend's pace.

use super::Engine;
use crate::backend::Backend;
use crate::codec::{Codec, Layout};
use crate::crypto::{Encryption, SetCipher};
use crate::error::{Error, Result};
use crate::integrity::ShardMac;
use crate::meta::FailedShard;
use crate::records::{BucketRecord, Checksums, Segment, SegmentKey, SegmentMac};
use bytes::{Bytes, BytesMut};
use futures::stream::FuturesUnordered;
use futures::{Stream, StreamExt};
use md5::Digest;
use placement::{BackendSelector, BucketPolicy};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tracing::Instrument;
use uuid::Uuid;

/// Shard blocks buffered per shard writer.
pub(crate) const CHANNEL_DEPTH: usize = 4;

/// How long a shard writer may refuse blocks, while a quorum of others accepts them, before its
/// shard is dropped from the write and queued for repair.
const STALL_LIMIT: Duration = Duration::from_secs(5);

/// How long a straggler may take after the write was acknowledged before it is cancelled and
/// its shard queued for repair.
const STRAGGLER_LIMIT: Duration = Duration::from_secs(60);

/// After the quorum, the rest of the shards get this share of the time the quorum took (plus
/// [`STRAGGLER_GRACE_MIN`]) before they count as stragglers: on evenly fast backends the last
/// shards land microseconds after the quorum, and waiting for them is cheaper than the repair
/// bookkeeping and parity reads a straggler costs.
const STRAGGLER_GRACE_SHARE: f64 = 0.25;

/// See [`STRAGGLER_GRACE_SHARE`].
const STRAGGLER_GRACE_MIN: Duration = Duration::from_millis(2);

/// Writes with stragglers in the background at once; beyond it writes wait for all their
/// shards, so a backend that hangs cannot pile up unbounded background work.
const MAX_STRAGGLING_WRITES: usize = 256;

/// Why a straggler's shard is in the repair queue: it is committed there with the manifest so
/// that a crash before it lands leaves it for the healer, and taken out again when it lands.
const STRAGGLING: &str = "still being written when the write was acknowledged";

/// How long a landed straggler is remembered for a repair record that has not been committed
/// yet (its request may have failed, and then no record ever comes).
const LANDED_MEMORY: Duration = Duration::from_secs(600);

/// Shards still being written after their write was acknowledged. Readers ask for them last
/// and do not take their absence for damage; the healer leaves them alone.
pub(crate) struct Stragglers {
    shards: Mutex<HashSet<(Uuid, usize)>>,
    /// Stragglers that landed before their repair record was committed: the healer drops the
    /// record instead of rebuilding a shard that is fine.
    landed: Mutex<HashMap<(Uuid, usize), std::time::Instant>>,
    permits: Arc<Semaphore>,
}

impl Default for Stragglers {
    fn default() -> Self {
        Self {
            shards: Mutex::default(),
            landed: Mutex::default(),
            permits: Arc::new(Semaphore::new(MAX_STRAGGLING_WRITES)),
        }
    }
}

impl Stragglers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<(Uuid, usize)>> {
        self.shards.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How many shards are still being written after their write was acknowledged.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether shard `idx` of `set` is still being written.
    pub(crate) fn contains(&self, set: Uuid, idx: usize) -> bool {
        self.lock().contains(&(set, idx))
    }

    fn landed_lock(&self) -> std::sync::MutexGuard<'_, HashMap<(Uuid, usize), std::time::Instant>> {
        self.landed.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn remember_landed(&self, set: Uuid, idx: usize) {
        let now = std::time::Instant::now();
        let mut landed = self.landed_lock();
        landed.retain(|_, at| now.duration_since(*at) < LANDED_MEMORY);
        landed.insert((set, idx), now);
    }

    /// Whether shard `idx` of `set` was a straggler that has landed since (forgets it).
    pub(crate) fn take_landed(&self, set: Uuid, idx: usize) -> bool {
        self.landed_lock().remove(&(set, idx)).is_some()
    }
}

/// Where and how a new shard set is written: the bucket's policy and the backends it may use.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// k, m and block size.
    pub policy: BucketPolicy,
    /// Backends eligible for the shards.
    pub eligible: &'a BackendSelector,
}

impl<'a> Target<'a> {
    /// Where and how `bucket`'s new shard sets for `key` are written: the code and backends
    /// of its prefix rule, if one matches, else the bucket's.
    #[must_use]
    pub fn for_key(bucket: &'a BucketRecord, key: &str) -> Self {
        let (policy, eligible) = bucket.layout_for(key);
        Self { policy, eligible }
    }
}

/// Hashes of the plaintext, computed while it streams through.
pub struct BodyHasher {
    /// MD5 (the ETag).
    pub md5: md5::Md5,
    /// Checksums the client asked for.
    pub checksums: s3s::checksum::ChecksumHasher,
    /// Bytes seen.
    pub size: u64,
}

impl BodyHasher {
    /// A hasher computing MD5 plus the given checksums.
    #[must_use]
    pub fn new(checksums: s3s::checksum::ChecksumHasher) -> Self {
        Self {
            md5: md5::Md5::new(),
            checksums,
            size: 0,
        }
    }

    /// A hasher computing MD5 plus the checksums `like` has: a copy carries its source's.
    #[must_use]
    pub fn carrying(like: &Checksums) -> Self {
        let mut h = s3s::checksum::ChecksumHasher::default();
        if like.crc32.is_some() {
            h.crc32 = Some(Default::default());
        }
        if like.crc32c.is_some() {
            h.crc32c = Some(Default::default());
        }
        if like.sha1.is_some() {
            h.sha1 = Some(Default::default());
        }
        if like.sha256.is_some() {
            h.sha256 = Some(Default::default());
        }
        if like.crc64nvme.is_some() {
            h.crc64nvme = Some(Default::default());
        }
        Self::new(h)
    }

    fn update(&mut self, data: &[u8]) {
        self.md5.update(data);
        self.checksums.update(data);
        self.size += data.len() as u64;
    }

    /// The MD5 and the checksums computed (those not asked for are `None`).
    #[must_use]
    pub fn finish(self) -> ([u8; 16], Checksums) {
        let md5: [u8; 16] = self.md5.finalize().into();
        let c = self.checksums.finalize();
        let checksums = Checksums {
            crc32: c.checksum_crc32,
            crc32c: c.checksum_crc32c,
            sha1: c.checksum_sha1,
            sha256: c.checksum_sha256,
            crc64nvme: c.checksum_crc64nvme,
        };
        (md5, checksums)
    }
}

/// A shard set durably written (to at least the write quorum) that no record names yet.
///
/// A verb commits it (put, copy, upload part); dropped uncommitted (the body failed its
/// checksum, a precondition refused, the request was cancelled) it is abandoned: marked
/// Deleting and handed to the reaper.
#[must_use = "a written set that is not committed is abandoned when dropped"]
pub struct WrittenSet {
    segment: Segment,
    failed: Vec<FailedShard>,
    /// Armed until the set is committed.
    guard: PendingGuard,
}

impl WrittenSet {
    /// The set as a manifest segment.
    #[must_use]
    pub fn segment(&self) -> &Segment {
        &self.segment
    }

    /// Shards that failed, to queue for repair with the commit.
    #[must_use]
    pub fn failed(&self) -> &[FailedShard] {
        &self.failed
    }

    /// The set is named by a committed record now: the guard stands down.
    pub(in crate::engine) fn committed(self) {
        let _ = self.into_parts();
    }

    /// The set and its failed shards, for a caller that commits (or abandons) it on its own
    /// (the migrator): the guard stands down.
    pub(in crate::engine) fn into_parts(self) -> (Segment, Vec<FailedShard>) {
        let WrittenSet {
            segment,
            failed,
            mut guard,
        } = self;
        guard.armed = false;
        (segment, failed)
    }
}

enum Msg {
    Data(Bytes),
    Finish,
}

/// How the blocks of a new set are protected, with the key its segment records.
enum Protection {
    /// Sealed with the set's data key (encrypted sets): GCM authenticates every block.
    Sealed(SetCipher, SegmentKey),
    /// A keyed MAC in every shard block (plaintext sets).
    Keyed(ShardMac, SegmentMac),
    /// A CRC32C only (plaintext sets of an engine without master keys, as in tests).
    Crc,
}

impl Protection {
    /// A fresh key for `set` as `encryption` asks: a data key, else a MAC key.
    fn new(engine: &Engine, encryption: &Encryption, set: Uuid) -> Result<Self> {
        if let Some((cipher, key)) = crate::crypto::new_set_key(encryption, set)? {
            return Ok(Self::Sealed(cipher, key));
        }
        Ok(match crate::crypto::new_set_mac(engine.keys(), set)? {
            Some((mac, key)) => Self::Keyed(mac, key),
            None => Self::Crc,
        })
    }
}

/// Abandons the pending set on drop unless disarmed: covers errors and cancelled requests.
struct PendingGuard {
    engine: Engine,
    set: Uuid,
    backends: Vec<String>,
    armed: bool,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        if self.armed {
            match self.engine.catalog().abandon_set(self.set, &self.backends) {
                Ok(d) => self.engine.reap(d),
                Err(e) => {
                    tracing::warn!(set = %self.set, error = %e, "could not abandon shard set; the startup sweep will")
                }
            }
        }
    }
}

impl Engine {
    /// Chooses the backends for an object's shards under `policy`, in shard order.
    pub fn place(&self, key: &str, target: Target<'_>) -> Result<Vec<String>> {
        let ids = self.eligible(target.eligible);
        target.policy.check_backends(ids.len()).map_err(|e| {
            Error::Unavailable(format!("placing {key}: backends {{{}}} eligible: {e}", target.eligible))
        })?;
        // Rendezvous ranks every eligible backend for the key; shards take the best-ranked
        // healthy ones, falling back to failing ones only when too few are healthy. With all
        // backends healthy this is plain rendezvous placement.
        let ranked = placement::place_shards(&ids, key.as_bytes(), ids.len());
        let healthy = |i: &usize| self.backend(&ids[*i]).is_ok_and(|b| b.health().is_healthy());
        let (mut chosen, failing): (Vec<usize>, Vec<usize>) = ranked.into_iter().partition(healthy);
        chosen.extend(failing);
        chosen.truncate(target.policy.shards());
        Ok(chosen.into_iter().map(|i| ids[i].clone()).collect())
    }

    /// Ids of the configured backends `selector` admits, in configuration order.
    #[must_use]
    pub fn eligible(&self, selector: &BackendSelector) -> Vec<String> {
        self.backends()
            .iter()
            .filter(|b| selector.matches(b.id(), b.labels()))
            .map(|b| b.id().to_owned())
            .collect()
    }

    /// Streams `body` into a new plaintext shard set coded with `policy` on any backends.
    pub async fn write_set<S, E>(
        &self,
        key: &str,
        policy: BucketPolicy,
        body: S,
        hasher: BodyHasher,
    ) -> Result<(WrittenSet, BodyHasher)>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        const ALL: BackendSelector = BackendSelector {
            labels: Vec::new(),
            ids: Vec::new(),
        };
        let target = Target { policy, eligible: &ALL };
        self.write_set_with(key, target, body, hasher, &Encryption::None).await
    }

    /// Streams `body` into a new shard set placed and coded as `target` says, its blocks
    /// sealed with a fresh data key when `encryption` asks for it; returns the set, to be
    /// committed by a verb, and the hashes of the plaintext.
    pub async fn write_set_with<S, E>(
        &self,
        key: &str,
        target: Target<'_>,
        body: S,
        hasher: BodyHasher,
        encryption: &Encryption,
    ) -> Result<(WrittenSet, BodyHasher)>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let policy = target.policy;
        let backends = self.place(key, target)?;
        let set = Uuid::now_v7();
        // Before anything is recorded: a missing master key fails the request cleanly.
        let protection = Protection::new(self, encryption, set)?;
        self.catalog().begin_set(set, &backends)?;
        let guard = PendingGuard {
            engine: self.clone(),
            set,
            backends: backends.clone(),
            armed: true,
        };
        let (segment, failed, hasher) = self
            .write_shards(set, &backends, policy, body, hasher, protection)
            .await?;
        crate::crash::point(crate::crash::CrashPoint::AfterShards);
        Ok((WrittenSet { segment, failed, guard }, hasher))
    }

    async fn write_shards<S, E>(
        &self,
        set: Uuid,
        backend_ids: &[String],
        policy: BucketPolicy,
        mut body: S,
        hasher: BodyHasher,
        protection: Protection,
    ) -> Result<(Segment, Vec<FailedShard>, BodyHasher)>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let n = policy.shards();
        let quorum = policy.write_quorum();
        let mut senders: Vec<Option<mpsc::Sender<Msg>>> = Vec::with_capacity(n);
        let mut tasks: Vec<JoinHandle<Result<u64>>> = Vec::with_capacity(n);
        for (idx, id) in backend_ids.iter().enumerate() {
            let backend = self.backend(id)?.clone();
            let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
            senders.push(Some(tx));
            tasks.push(tokio::spawn(
                shard_writer(backend, Backend::shard_path(set, idx), rx).in_current_span(),
            ));
        }
        let aborter = AbortOnDrop(tasks.iter().map(JoinHandle::abort_handle).collect());

        let block_size = policy.block_size as usize;
        let layout = Layout {
            k: usize::from(policy.k),
            m: usize::from(policy.m),
            block_size: block_size as u64,
            size: 0,
            keyed: matches!(protection, Protection::Keyed(..)),
        };
        let mut state = Some((Codec::new(layout.k, layout.m)?, hasher));
        let (cipher, segment_key, mac, segment_mac) = match protection {
            Protection::Sealed(c, k) => (Some(c), Some(k), None, None),
            Protection::Keyed(m, k) => (None, None, Some(m), Some(k)),
            Protection::Crc => (None, None, None, None),
        };
        let mut next_block = 0u64;
        let mut block = BytesMut::with_capacity(block_size);
        let mut failures: Vec<Option<String>> = vec![None; n];

        let mut emit = async |block: Bytes,
                              senders: &mut Vec<Option<mpsc::Sender<Msg>>>,
                              failures: &mut Vec<Option<String>>|
               -> Result<()> {
            let (mut codec, mut hasher) = state.take().ok_or_else(|| Error::Internal("codec state lost".into()))?;
            let j = next_block;
            next_block += 1;
            let cipher = cipher.clone();
            let mac = mac.clone();
            let (codec, hasher, shards) = tokio::task::spawn_blocking(move || {
                hasher.update(&block);
                // Sealed before coding: the shards, parity included, derive from ciphertext.
                let shards = match &cipher {
                    None => codec.encode(&layout, j, &block, mac.as_ref()),
                    Some(c) => {
                        let mut sealed = Vec::with_capacity(block.len() + crate::crypto::TAG_LEN);
                        sealed.extend_from_slice(&block);
                        c.seal(j, &mut sealed)
                            .and_then(|()| codec.encode(&layout, j, &sealed, None))
                    }
                };
                (codec, hasher, shards)
            })
            .await
            .map_err(|e| Error::Internal(format!("encoding task: {e}")))?;
            state = Some((codec, hasher));
            for (i, shard) in shards?.into_iter().enumerate() {
                let Some(tx) = &senders[i] else { continue };
                let others = senders.iter().flatten().count() - 1;
                let sent = match tx.try_send(Msg::Data(shard)) {
                    Ok(()) => Ok(()),
                    Err(mpsc::error::TrySendError::Closed(_)) => Err("writer stopped".to_owned()),
                    // Only a shard the quorum can do without may be dropped for being slow.
                    Err(mpsc::error::TrySendError::Full(msg)) if others >= quorum => {
                        match tokio::time::timeout(STALL_LIMIT, tx.send(msg)).await {
                            Ok(Ok(())) => Ok(()),
                            Ok(Err(_)) => Err("writer stopped".to_owned()),
                            Err(_) => Err(format!("backend accepted no block for {STALL_LIMIT:?}")),
                        }
                    }
                    Err(mpsc::error::TrySendError::Full(msg)) => {
                        tx.send(msg).await.map_err(|_| "writer stopped".to_owned())
                    }
                };
                if let Err(why) = sent {
                    senders[i] = None;
                    failures[i] = Some(why);
                }
            }
            let alive = senders.iter().filter(|s| s.is_some()).count();
            if alive < quorum {
                return Err(Error::Unavailable(format!(
                    "shard set {set}: only {alive} of {n} backends accepting writes, {quorum} needed"
                )));
            }
            Ok(())
        };

        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| Error::Body(e.into()))?;
            let mut rest = &chunk[..];
            while !rest.is_empty() {
                let take = (block_size - block.len()).min(rest.len());
                block.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                if block.len() == block_size {
                    emit(block.split().freeze(), &mut senders, &mut failures).await?;
                }
            }
        }
        if !block.is_empty() {
            emit(block.split().freeze(), &mut senders, &mut failures).await?;
        }
        for tx in senders.iter().flatten() {
            let _ = tx.send(Msg::Finish).await;
        }
        drop(senders);

        let (stored, straggling) = self
            .await_quorum(set, backend_ids, tasks, &mut failures, quorum, aborter)
            .await;
        if stored < quorum {
            let why: Vec<String> = failures.iter().flatten().cloned().collect();
            return Err(Error::Unavailable(format!(
                "shard set {set}: only {stored} of {n} shards stored, {quorum} needed ({})",
                why.join("; ")
            )));
        }
        let (_, hasher) = state.ok_or_else(|| Error::Internal("codec state lost".into()))?;
        let failed = failures
            .into_iter()
            .enumerate()
            .filter_map(|(i, f)| f.map(|why| (set, i, backend_ids[i].clone(), why)))
            .collect::<Vec<_>>();
        for (_, i, b, why) in &failed {
            tracing::warn!(%set, shard = i, backend = %b, reason = %why, "shard not stored; queued for repair");
        }
        let failed = failed
            .into_iter()
            .chain(
                straggling
                    .into_iter()
                    .map(|i| (set, i, backend_ids[i].clone(), STRAGGLING.to_owned())),
            )
            .collect();
        let segment = Segment {
            set,
            size: hasher.size,
            k: policy.k,
            m: policy.m,
            block_size: policy.block_size,
            backends: backend_ids.to_vec(),
            encryption: segment_key,
            integrity: segment_mac,
        };
        Ok((segment, failed, hasher))
    }
}

impl Engine {
    /// Waits for the shard writers until the write quorum is stored and the rest are only
    /// stragglers, which then finish in the background; returns the number of shards stored
    /// so far and the stragglers. Shards that failed get their reason in `failures`.
    async fn await_quorum(
        &self,
        set: Uuid,
        backend_ids: &[String],
        tasks: Vec<JoinHandle<Result<u64>>>,
        failures: &mut [Option<String>],
        quorum: usize,
        mut aborter: AbortOnDrop,
    ) -> (usize, Vec<usize>) {
        let aborts: Vec<tokio::task::AbortHandle> = tasks.iter().map(JoinHandle::abort_handle).collect();
        let mut running: FuturesUnordered<_> = tasks
            .into_iter()
            .enumerate()
            .filter(|(i, _)| failures[*i].is_none())
            .map(|(i, t)| async move { (i, t.await) })
            .collect();
        let mut tally = Tally {
            done: vec![false; failures.len()],
            stored: 0,
        };
        let started = tokio::time::Instant::now();
        while tally.stored < quorum {
            let Some((i, res)) = running.next().await else { break };
            tally.settle(i, res, failures);
        }
        // Shards that land within the grace count now, not as stragglers.
        let grace = started.elapsed().mul_f64(STRAGGLER_GRACE_SHARE) + STRAGGLER_GRACE_MIN;
        let deadline = tokio::time::Instant::now() + grace;
        while !running.is_empty() {
            match tokio::time::timeout_at(deadline, running.next()).await {
                Ok(Some((i, res))) => tally.settle(i, res, failures),
                Ok(None) | Err(_) => break,
            }
        }
        let permit = match self.stragglers().permits.clone().try_acquire_owned() {
            Ok(p) if tally.stored >= quorum && !running.is_empty() => p,
            _ => {
                // Failed, complete, or too much background work already: wait for the rest.
                while let Some((i, res)) = running.next().await {
                    tally.settle(i, res, failures);
                }
                return (tally.stored, Vec::new());
            }
        };
        let straggling: Vec<usize> = (0..failures.len())
            .filter(|&i| !tally.done[i] && failures[i].is_none())
            .collect();
        // Every other writer has finished: only the stragglers are left to abort, and the
        // background task takes that over.
        aborter.0.clear();
        self.stragglers().lock().extend(straggling.iter().map(|&i| (set, i)));
        let pins = self.pins().pin(vec![set]);
        let engine = self.clone();
        let backends = backend_ids.to_vec();
        let mut left: HashSet<usize> = straggling.iter().copied().collect();
        let finish = async move {
            let _permit = permit;
            let _pins = pins;
            let deadline = tokio::time::sleep(STRAGGLER_LIMIT);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    next = running.next() => {
                        let Some((i, res)) = next else { break };
                        left.remove(&i);
                        let why = match res {
                            Ok(Ok(_)) => None,
                            Ok(Err(e)) => Some(e.to_string()),
                            Err(e) => Some(format!("writer task: {e}")),
                        };
                        engine.straggler_done(set, i, &backends[i], why);
                    }
                    () = &mut deadline => {
                        for &i in &left {
                            aborts[i].abort();
                            let why = format!("still writing {STRAGGLER_LIMIT:?} after the write was acknowledged");
                            engine.straggler_done(set, i, &backends[i], Some(why));
                        }
                        break;
                    }
                }
            }
        };
        tokio::spawn(finish.in_current_span());
        (tally.stored, straggling)
    }

    /// A straggler ended: it no longer shields its shard; a landed one takes its repair record
    /// out again (or, if the record is not committed yet, is remembered for the healer), a
    /// failed one stays queued with the reason.
    fn straggler_done(&self, set: Uuid, idx: usize, backend: &str, failure: Option<String>) {
        self.stragglers().lock().remove(&(set, idx));
        if failure.is_none() {
            match self.catalog().finish_repair(set, idx, i64::MAX) {
                Ok(true) => {}
                Ok(false) => self.stragglers().remember_landed(set, idx),
                Err(e) => {
                    tracing::warn!(%set, shard = idx, error = %e, "could not clear a landed straggler's repair; the healer will")
                }
            }
        }
        if let Some(why) = failure {
            tracing::warn!(%set, shard = idx, %backend, reason = %why, "straggling shard not stored; queued for repair");
            if let Err(e) = self.catalog().queue_repair(set, idx, backend, &why) {
                tracing::error!(%set, shard = idx, error = %e, "could not queue repair");
            }
        }
    }
}

/// What a shard writer task ends with.
type WriterResult = std::result::Result<Result<u64>, tokio::task::JoinError>;

/// Shard writers that ended, and how many stored their shard.
struct Tally {
    done: Vec<bool>,
    stored: usize,
}

impl Tally {
    fn settle(&mut self, i: usize, res: WriterResult, failures: &mut [Option<String>]) {
        self.done[i] = true;
        match res {
            Ok(Ok(_)) => self.stored += 1,
            Ok(Err(e)) => failures[i] = Some(e.to_string()),
            Err(e) => failures[i] = Some(format!("writer task: {e}")),
        }
    }
}

/// Aborts the writer tasks if the write is abandoned midway.
struct AbortOnDrop(Vec<tokio::task::AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

/// Writes one shard object from the channel; completes it only on an explicit Finish, so a
/// cancelled request never leaves a complete-looking shard behind.
async fn shard_writer(backend: Backend, path: object_store::path::Path, mut rx: mpsc::Receiver<Msg>) -> Result<u64> {
    let mut w = backend.writer(path.clone());
    loop {
        match rx.recv().await {
            Some(Msg::Data(b)) => {
                if let Err(e) = w.write(&b).await {
                    w.abort().await;
                    return Err(e);
                }
            }
            Some(Msg::Finish) => return w.finish().await,
            None => {
                w.abort().await;
                return Err(Error::Internal(format!(
                    "write of {path} on {} cancelled",
                    backend.id()
                )));
            }
        }
    }
}

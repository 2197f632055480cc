//! Writing a body stream as one shard set.
//!
//! Blocks are coded off the async threads and fanned out to one writer task per shard through
//! bounded channels, so memory stays at (channel depth + one part) per shard whatever the size.
//! The set is recorded Pending before the first byte goes out; a guard abandons it if the
//! request fails or is cancelled, so no shard outlives its request unreferenced.

use super::Engine;
use crate::backend::Backend;
use crate::codec::{Codec, Layout};
use crate::crypto::{Encryption, SetCipher};
use crate::error::{Error, Result};
use crate::manifest::{Segment, SegmentKey};
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use md5::Digest;
use placement::{BackendSelector, BucketPolicy};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// Shard blocks buffered per shard writer.
const CHANNEL_DEPTH: usize = 4;

/// Where and how a new shard set is written: the bucket's policy and the backends it may use.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// k, m and block size.
    pub policy: BucketPolicy,
    /// Backends eligible for the shards.
    pub eligible: &'a BackendSelector,
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

    fn update(&mut self, data: &[u8]) {
        self.md5.update(data);
        self.checksums.update(data);
        self.size += data.len() as u64;
    }
}

/// A shard set durably written (to at least the write quorum).
pub struct WrittenSet {
    /// The set as a manifest segment.
    pub segment: Segment,
    /// Shards that failed: (set, index, backend, reason), to queue for repair.
    pub failed: Vec<(Uuid, usize, String, String)>,
    /// Hashes of the plaintext.
    pub hasher: BodyHasher,
}

enum Msg {
    Data(Bytes),
    Finish,
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
                Ok(d) => self.engine.reap(vec![d]),
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
    ) -> Result<WrittenSet>
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
    /// sealed with a fresh data key when `encryption` asks for it.
    pub async fn write_set_with<S, E>(
        &self,
        key: &str,
        target: Target<'_>,
        body: S,
        hasher: BodyHasher,
        encryption: &Encryption,
    ) -> Result<WrittenSet>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let policy = target.policy;
        let backends = self.place(key, target)?;
        let set = Uuid::now_v7();
        // Before anything is recorded: a missing master key fails the request cleanly.
        let sealing = crate::crypto::new_set_key(encryption, set)?;
        self.catalog().begin_set(set, &backends)?;
        let mut guard = PendingGuard {
            engine: self.clone(),
            set,
            backends: backends.clone(),
            armed: true,
        };
        let written = self.write_shards(set, &backends, policy, body, hasher, sealing).await?;
        guard.armed = false;
        Ok(written)
    }

    async fn write_shards<S, E>(
        &self,
        set: Uuid,
        backend_ids: &[String],
        policy: BucketPolicy,
        mut body: S,
        hasher: BodyHasher,
        sealing: Option<(SetCipher, SegmentKey)>,
    ) -> Result<WrittenSet>
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
            tasks.push(tokio::spawn(shard_writer(backend, Backend::shard_path(set, idx), rx)));
        }
        let aborter = AbortOnDrop(tasks.iter().map(JoinHandle::abort_handle).collect());

        let block_size = policy.block_size as usize;
        let layout = Layout {
            k: usize::from(policy.k),
            m: usize::from(policy.m),
            block_size: block_size as u64,
            size: 0,
        };
        let mut state = Some((Codec::new(layout.k, layout.m)?, hasher));
        let (cipher, segment_key) = sealing.unzip();
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
            let (codec, hasher, shards) = tokio::task::spawn_blocking(move || {
                hasher.update(&block);
                // Sealed before coding: the shards, parity included, derive from ciphertext.
                let shards = match &cipher {
                    None => codec.encode(&layout, &block),
                    Some(c) => {
                        let mut sealed = Vec::with_capacity(block.len() + crate::crypto::TAG_LEN);
                        sealed.extend_from_slice(&block);
                        c.seal(j, &mut sealed).and_then(|()| codec.encode(&layout, &sealed))
                    }
                };
                (codec, hasher, shards)
            })
            .await
            .map_err(|e| Error::Internal(format!("encoding task: {e}")))?;
            state = Some((codec, hasher));
            for (i, shard) in shards?.into_iter().enumerate() {
                if let Some(tx) = &senders[i] {
                    if tx.send(Msg::Data(shard)).await.is_err() {
                        senders[i] = None;
                        failures[i] = Some("writer stopped".into());
                    }
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

        let mut stored = 0usize;
        for (i, t) in tasks.into_iter().enumerate() {
            match t.await {
                Ok(Ok(_)) if failures[i].is_none() => stored += 1,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => failures[i] = Some(e.to_string()),
                Err(e) => failures[i] = Some(format!("writer task: {e}")),
            }
        }
        drop(aborter);
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
        let segment = Segment {
            set,
            size: hasher.size,
            k: policy.k,
            m: policy.m,
            block_size: policy.block_size,
            backends: backend_ids.to_vec(),
            encryption: segment_key,
        };
        Ok(WrittenSet {
            segment,
            failed,
            hasher,
        })
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

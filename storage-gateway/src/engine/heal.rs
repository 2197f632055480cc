//! The healer: drains the repair queue by rebuilding missing or corrupt shards.
//!
//! A queued shard is rebuilt from any k verified shards of the same set, block by block (decode,
//! re-encode, keep the lost shard's block), and written whole to its backend, replacing what is
//! there. Verified means a valid checksum and, in sets with keyed integrity, a valid MAC (the
//! healer keys the MACs of what it writes too). The shards being rebuilt are sources only when
//! too few others verify, and the rebuilt block must agree with every other shard read: in a
//! set without a MAC a rewritten shard shows only that way, and nothing is written from it.
//! Work is resumable because the queue lives in RocksDB and an entry is removed only after
//! the shard is durable again. The set is pinned while it is rebuilt, so a concurrent overwrite
//! cannot have it deleted underneath (which would leave the rebuilt shard an orphan).

use super::Engine;
use crate::backend::Backend;
use crate::codec::{Codec, Faults, Layout};
use crate::error::{Error, Result};
use crate::integrity::ShardMac;
use crate::records::{now_ms, Segment, SetOwner, SetState};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use uuid::Uuid;
use workers::{Context, Next, Status, StepError, Throttle, Worker};

/// Block bytes rebuilt per window (whole blocks; each shard read is about this / k): remote
/// backends are latency-bound, so fewer, larger requests. Memory per set in flight is about
/// twice this.
const WINDOW_BYTES: u64 = 8 << 20;

/// Sets rebuilt at once by default: overlaps the round trips of several sets.
const PARALLEL_SETS: usize = 4;

/// Counters of the healer since start.
#[derive(Debug, Default)]
pub struct HealCounters {
    /// Shards rebuilt and written back.
    pub shards_repaired: AtomicU64,
    /// Bytes of shard data written back.
    pub bytes_written: AtomicU64,
    /// Rebuild attempts that failed (too few shards, target backend down); retried later.
    pub failures: AtomicU64,
    /// Queue entries dropped because their set no longer exists.
    pub dropped: AtomicU64,
    /// Completed passes over the queue.
    pub passes: AtomicU64,
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HealPass {
    /// Shards rebuilt.
    pub repaired: usize,
    /// Shards that could not be rebuilt this time.
    pub failed: usize,
    /// Entries dropped (set deleted meanwhile).
    pub dropped: usize,
}

/// Healer settings.
#[derive(Debug, Clone, Copy)]
pub struct HealConfig {
    /// Pause between passes when the queue is empty or only holds failures.
    pub interval: Duration,
    /// Upper bound on shard bytes written per second (None: unlimited).
    pub max_bytes_per_sec: Option<u64>,
}

impl Default for HealConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(10),
            max_bytes_per_sec: Some(64 << 20),
        }
    }
}

/// Largest number of sets the healer's throttle lets it rebuild at once (memory: about
/// twice [`WINDOW_BYTES`] each).
const MAX_PARALLEL_SETS: usize = 16;

/// The healer as a worker: a pass over the repair queue, then a pause of `interval`.
pub struct Healer {
    engine: Engine,
    interval: Duration,
    throttle: Throttle,
}

impl Healer {
    /// The healer of `engine` with the start-up settings `config`.
    #[must_use]
    pub fn new(engine: Engine, config: HealConfig) -> Self {
        Self {
            engine,
            interval: config.interval,
            throttle: Throttle::new(config.max_bytes_per_sec, PARALLEL_SETS, MAX_PARALLEL_SETS),
        }
    }
}

#[async_trait::async_trait]
impl Worker for Healer {
    fn name(&self) -> &str {
        "healer"
    }

    async fn step(&mut self, ctx: &Context) -> Result<Next, StepError> {
        let p = self
            .engine
            .heal_pass_with(&self.throttle, ctx)
            .await
            .map_err(|e| format!("heal pass failed: {e}"))?;
        if p.repaired + p.failed + p.dropped > 0 {
            tracing::info!(
                repaired = p.repaired,
                failed = p.failed,
                dropped = p.dropped,
                "heal pass done"
            );
        }
        Ok(Next::Idle(self.interval))
    }

    fn status(&self) -> Status {
        let c = self.engine.heal_counters();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Status::default()
            .counter("shards_repaired", load(&c.shards_repaired))
            .counter("bytes_written", load(&c.bytes_written))
            .counter("failures", load(&c.failures))
            .counter("dropped", load(&c.dropped))
            .counter("passes", load(&c.passes))
    }

    fn throttle(&self) -> Option<Throttle> {
        Some(self.throttle.clone())
    }

    fn after_error(&self) -> Next {
        Next::Idle(self.interval)
    }
}

impl Engine {
    /// One pass over the repair queue, [`PARALLEL_SETS`] sets at a time, writing at most
    /// `max_bytes_per_sec` (`None`: unlimited); what `POST /api/v1/heal` runs.
    pub async fn heal_pass(&self, max_bytes_per_sec: Option<u64>) -> Result<HealPass> {
        let throttle = Throttle::new(max_bytes_per_sec, PARALLEL_SETS, PARALLEL_SETS);
        self.heal_pass_with(&throttle, &Context::default()).await
    }

    /// One pass over the repair queue under `throttle` (its rate, its concurrency in sets, its
    /// pause before each set); sets not started when `ctx` is cancelled are left for later.
    async fn heal_pass_with(&self, throttle: &Throttle, ctx: &Context) -> Result<HealPass> {
        use futures::StreamExt;
        let mut by_set: BTreeMap<Uuid, Vec<usize>> = BTreeMap::new();
        for (set, idx, _) in self.catalog().repairs()? {
            if self.stragglers().contains(set, idx) {
                // Still being written: its writer takes the record out when it lands.
                continue;
            }
            if self.stragglers().take_landed(set, idx) {
                // Landed before its record was committed: nothing to rebuild.
                self.catalog().finish_repair(set, idx, i64::MAX)?;
                continue;
            }
            by_set.entry(set).or_default().push(idx);
        }
        let outcomes: Vec<Result<HealPass>> = futures::stream::iter(by_set)
            .map(|(set, targets)| async move {
                match ctx.unless_cancelled(throttle.while_paused()).await {
                    Some(()) => self.heal_set(set, targets, throttle).await,
                    None => Ok(HealPass::default()),
                }
            })
            .buffer_unordered(throttle.concurrency())
            .collect()
            .await;
        let mut pass = HealPass::default();
        for o in outcomes {
            let o = o?;
            pass.repaired += o.repaired;
            pass.failed += o.failed;
            pass.dropped += o.dropped;
        }
        if !ctx.is_cancelled() {
            self.heal_counters().passes.fetch_add(1, Ordering::Relaxed);
        }
        Ok(pass)
    }

    /// Heals the queued shards `targets` of one set.
    async fn heal_set(&self, set: Uuid, targets: Vec<usize>, throttle: &Throttle) -> Result<HealPass> {
        let mut pass = HealPass::default();
        let started = now_ms();
        let _pins = self.pins().pin(vec![set]);
        // Re-read after pinning: a set still Live now stays until the pin drops.
        let segment = match self.catalog().set(set)? {
            Some(rec) if rec.state == SetState::Live => rec.segment,
            Some(rec) if rec.state == SetState::Pending => return Ok(pass),
            _ => {
                self.catalog().drop_repairs(set, targets.iter().copied())?;
                pass.dropped += targets.len();
                self.heal_counters()
                    .dropped
                    .fetch_add(targets.len() as u64, Ordering::Relaxed);
                return Ok(pass);
            }
        };
        let Some(segment) = segment else {
            // Written before set records carried their segment: nothing to rebuild from.
            tracing::warn!(%set, "queued repair of a set without a segment record; skipped");
            return Ok(pass);
        };
        match self.rebuild(&segment, &targets, throttle).await {
            Ok(written) => {
                for &idx in &written {
                    // (Moved shards had their repair cleared with the move.)
                    self.catalog().finish_repair(set, idx, started)?;
                }
                pass.repaired += written.len();
                pass.failed += targets.len() - written.len();
                let c = self.heal_counters();
                c.shards_repaired.fetch_add(written.len() as u64, Ordering::Relaxed);
                c.failures
                    .fetch_add((targets.len() - written.len()) as u64, Ordering::Relaxed);
            }
            Err(e) => {
                if matches!(e, Error::Unavailable(_)) {
                    self.catalog().mark_unrecoverable(set, &targets)?;
                }
                tracing::warn!(%set, shards = ?targets, error = %e, "shard rebuild failed; will retry");
                pass.failed += targets.len();
                self.heal_counters()
                    .failures
                    .fetch_add(targets.len() as u64, Ordering::Relaxed);
            }
        }
        Ok(pass)
    }

    /// Rebuilds shards `targets` of `segment`; returns those written back.
    async fn rebuild(&self, segment: &Segment, targets: &[usize], throttle: &Throttle) -> Result<Vec<usize>> {
        let layout = segment.layout();
        let n = layout.k + layout.m;
        let mut codec = Codec::new(layout.k, layout.m)?;
        let mac = match &segment.integrity {
            Some(rec) => Some(crate::crypto::open_set_mac(segment.set, rec, self.keys())?),
            None => None,
        };
        // Shards go back to their backend; one whose backend is no longer configured goes to
        // a replacement (recorded only once written); one whose backend is suspect waits.
        let mut writers = Vec::new();
        let mut taken: Vec<String> = segment.backends.clone();
        for &idx in targets {
            if idx >= n {
                continue;
            }
            let path = Backend::shard_path(segment.set, idx);
            match self.backend(&segment.backends[idx]) {
                Ok(b) if b.health().admit().is_ok() => writers.push((idx, b.writer(path), None)),
                Ok(_) => {}
                Err(_) => match self.replacement(segment, idx, &taken)? {
                    Some(b) => {
                        taken.push(b.id().to_owned());
                        tracing::info!(set = %segment.set, shard = idx, gone = %segment.backends[idx], to = %b.id(), "backend no longer configured; rebuilding the shard elsewhere");
                        writers.push((idx, b.writer(path), Some(b.clone())));
                    }
                    None => {
                        tracing::warn!(set = %segment.set, shard = idx, gone = %segment.backends[idx], "backend no longer configured and no replacement available")
                    }
                },
            }
        }
        if writers.is_empty() {
            return Ok(Vec::new());
        }
        // Every shard is a source, the damaged ones too: bitrot usually hits a few blocks of a
        // shard, and its good blocks may be what a block needs to reach k.
        let sources: Vec<usize> = (0..n).collect();
        let blocks = layout.blocks();
        let mut first = 0;
        let res: Result<()> = async {
            while first < blocks {
                let window_blocks = (WINDOW_BYTES / layout.block_size.max(1)).max(1);
                let last = (first + window_blocks - 1).min(blocks - 1);
                let window = self
                    .fetch_window(segment, &layout, &sources, targets, mac.as_ref(), first, last)
                    .await?;
                for (b, shards) in window.iter().enumerate() {
                    let j = first + b as u64;
                    let shards = trusted(&layout, shards, targets);
                    let block = codec.decode(&layout, layout.block_len(j) as usize, &shards)?;
                    let coded = codec.encode(&layout, j, &block, mac.as_ref())?;
                    if let Some(i) = disagreeing(&layout, &coded, &shards) {
                        return Err(Error::Crypto(format!(
                            "healing shard set {}: block {j} of shard {i} disagrees with the block decoded from the other shards: one of them was rewritten with a valid checksum, and only authenticating the block (as a GET of the object does) tells which; nothing written",
                            segment.set
                        )));
                    }
                    for (idx, w, _) in &mut writers {
                        w.write(&coded[*idx]).await?;
                        throttle.spend(coded[*idx].len() as u64).await;
                    }
                }
                first = last + 1;
            }
            Ok(())
        }
        .await;
        if let Err(e) = res {
            for (_, w, _) in writers {
                w.abort().await;
            }
            return Err(e);
        }
        let mut done = Vec::new();
        for (idx, w, moved_to) in writers {
            let len = match w.finish().await {
                Ok(len) => len,
                Err(e) => {
                    tracing::warn!(set = %segment.set, shard = idx, error = %e, "writing rebuilt shard failed");
                    continue;
                }
            };
            if let Some(to) = moved_to {
                if !self
                    .catalog()
                    .move_shard(segment.set, idx, &segment.backends[idx], to.id())?
                {
                    // The set was deleted or rewritten meanwhile: the new shard is nobody's.
                    to.delete_set(segment.set, [idx]).await?;
                    continue;
                }
            }
            self.heal_counters().bytes_written.fetch_add(len, Ordering::Relaxed);
            tracing::info!(set = %segment.set, shard = idx, backend = %segment.backends[idx], bytes = len, "shard rebuilt");
            done.push(idx);
        }
        Ok(done)
    }

    /// A healthy configured backend to hold shard `idx` of `segment` instead of a backend that
    /// is gone: eligible for the owning object (its bucket's backends, or its prefix rule's),
    /// not holding another shard of the set (`taken`), chosen by rendezvous hashing on the set
    /// so repeated passes agree.
    fn replacement(&self, segment: &Segment, idx: usize, taken: &[String]) -> Result<Option<Backend>> {
        let selector = match self.catalog().set(segment.set)?.and_then(|r| r.owner) {
            Some(SetOwner::Object { bucket, key }) => self
                .catalog()
                .bucket(&bucket)?
                .map(|b| b.layout_for(&key).1.clone())
                .unwrap_or_default(),
            _ => placement::BackendSelector::default(),
        };
        let candidates: Vec<&Backend> = self
            .backends()
            .iter()
            .filter(|b| !taken.iter().any(|t| t == b.id()))
            .filter(|b| selector.matches(b.id(), b.labels()))
            .filter(|b| b.health().admit().is_ok())
            .collect();
        let ids: Vec<&str> = candidates.iter().map(|b| b.id()).collect();
        let key = format!("{}/{idx}", segment.set);
        Ok(placement::place_shards(&ids, key.as_bytes(), 1)
            .first()
            .map(|&i| candidates[i].clone()))
    }

    /// Verified shard payloads of blocks `first..=last` from `sources`: `out[b][i]`.
    /// Corrupt, forged or missing sources not already being rebuilt (`targets`) are queued for
    /// repair.
    #[allow(clippy::too_many_arguments)]
    async fn fetch_window(
        &self,
        segment: &Segment,
        layout: &Layout,
        sources: &[usize],
        targets: &[usize],
        mac: Option<&ShardMac>,
        first: u64,
        last: u64,
    ) -> Result<Vec<Vec<Option<Bytes>>>> {
        let n = layout.k + layout.m;
        let nblocks = (last - first + 1) as usize;
        let window = layout.shard_window(first, last);
        let fetches = sources.iter().map(|&i| {
            let window = window.clone();
            async move {
                let backend = self.backend(&segment.backends[i])?;
                backend.read_range(&Backend::shard_path(segment.set, i), window).await
            }
        });
        let results = futures::future::join_all(fetches).await;
        let mut out = vec![vec![None; n]; nblocks];
        for (&i, res) in sources.iter().zip(results) {
            let reason = match res {
                Ok(bytes) => match layout.verify_window(first, last, &bytes, i, mac) {
                    Some(blocks) => {
                        let faults = Faults::of(&blocks);
                        self.integrity_counters()
                            .forged_shard_blocks
                            .fetch_add(faults.mac, Ordering::Relaxed);
                        self.telemetry()
                            .integrity_failures(&segment.backends[i], faults.checksum + faults.mac);
                        for (row, block) in out.iter_mut().zip(blocks) {
                            row[i] = block.ok();
                        }
                        faults.reason().map(|r| format!("{r} (found while healing)"))
                    }
                    None => Some("short shard (found while healing)".to_owned()),
                },
                Err(e) if e.is_not_found() => Some("shard missing (found while healing)".to_owned()),
                Err(_) => None,
            };
            if let Some(reason) = reason.filter(|_| !targets.contains(&i)) {
                self.catalog()
                    .queue_repair(segment.set, i, &segment.backends[i], &reason)?;
            }
        }
        for (b, row) in out.iter().enumerate() {
            let have = row.iter().filter(|s| s.is_some()).count();
            if have < layout.k {
                return Err(Error::Unavailable(format!(
                    "healing shard set {}: block {} has {have} verified shards, {} needed",
                    segment.set,
                    first + b as u64,
                    layout.k
                )));
            }
        }
        Ok(out)
    }
}

/// The shard blocks of one block to rebuild from: every verified one, except that the shards
/// being rebuilt (`targets`) are left out when k others verified. A shard may be queued for a
/// rewrite that kept its checksum valid (found by authenticating a block, which the healer
/// cannot do without the data key): rebuilt from itself, it would stay as it is.
fn trusted(layout: &Layout, row: &[Option<Bytes>], targets: &[usize]) -> Vec<Option<Bytes>> {
    let others = (0..row.len())
        .filter(|i| row[*i].is_some() && !targets.contains(i))
        .count();
    if others < layout.k {
        return row.to_vec();
    }
    (0..row.len())
        .map(|i| if targets.contains(&i) { None } else { row[i].clone() })
        .collect()
}

/// The first shard among `sources` whose block differs from its rebuilt block `coded` (with
/// trailers), if any: k sources agree with any decoding of themselves, so this can only be
/// a further one, showing that some source is not what was written.
fn disagreeing(layout: &Layout, coded: &[Bytes], sources: &[Option<Bytes>]) -> Option<usize> {
    let trailer = layout.trailer_len() as usize;
    // Keyed payloads are compared without their MAC, which `sources` no longer carry.
    (0..sources.len()).find(|&i| {
        sources[i]
            .as_deref()
            .is_some_and(|s| s != &coded[i][..coded[i].len() - trailer])
    })
}

/// Objects of one bucket by how much redundancy they have left.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Redundancy {
    /// Every shard of every segment present and verified as far as known.
    pub full: u64,
    /// Some shards queued for repair, still rebuildable.
    pub degraded: u64,
    /// Some segment that the healer found too few shards to rebuild (until a backend returns).
    pub unreadable: u64,
}

impl Engine {
    /// Per bucket, how many objects are at full redundancy, degraded or unreadable, judged by
    /// the repair queue (what reads, writes and scrubs have found, and what the healer could
    /// not rebuild). Shard-level: a shard with one bad block counts as needing repair.
    pub fn redundancy(&self) -> Result<BTreeMap<String, Redundancy>> {
        // Per set: (shards queued, any found unrecoverable).
        let mut lost: std::collections::HashMap<Uuid, (usize, bool)> = std::collections::HashMap::new();
        for (set, _, rec) in self.catalog().repairs()? {
            let e = lost.entry(set).or_default();
            e.0 += 1;
            e.1 |= rec.unrecoverable;
        }
        let mut out = BTreeMap::new();
        for (bucket, _) in self.catalog().list_buckets()? {
            let mut r = Redundancy::default();
            let mut from: Vec<u8> = Vec::new();
            loop {
                let page = self.catalog().list_objects(&bucket, &from, "", 1000)?;
                let Some(last) = page.last() else { break };
                from = last.key.as_bytes().to_vec();
                from.push(0);
                for obj in &page {
                    let states = obj.manifest.segments.iter().filter_map(|s| lost.get(&s.set));
                    let (mut any, mut dead) = (false, false);
                    for &(n, unrecoverable) in states {
                        any |= n > 0;
                        dead |= unrecoverable;
                    }
                    match (any, dead) {
                        (_, true) => r.unreadable += 1,
                        (true, false) => r.degraded += 1,
                        _ => r.full += 1,
                    }
                }
            }
            out.insert(bucket, r);
        }
        Ok(out)
    }
}

//! Reading a byte range of an object back from its shard sets.
//!
//! Per window of blocks, the reader asks the k shards whose backends are predicted fastest
//! (telemetry's 1-minute GET latencies; data shards win ties, as they need no decoding),
//! verifies every shard block's CRC32C (and keyed MAC, in plaintext sets that have one), and
//! asks further shards for whatever is still missing. A shard that lags past its backend's
//! predicted p95 is hedged: one more shard is asked, and the first k good answers win (the rest
//! are cancelled). Shards found missing, corrupt or forged are queued for repair; backends that
//! failed are tried last for the rest of the read. Both are run-time settings
//! ([`Engine::set_read_settings`]): the `data-first` strategy asks data shards first whatever
//! their backends' speed, and hedging off waits on a lagging shard until it answers or fails.
//!
//! An encrypted block that fails authentication as decoded had a shard rewritten with a valid
//! checksum: every shard of the window is read, the block is decoded from other combinations
//! of them until one authenticates, and the shards that disagree with it are queued for repair.

use super::{Engine, Pins, ReadStrategy};
use crate::backend::Backend;
use crate::codec::{Codec, Faults, Layout};
use crate::crypto::{open_set_key, open_set_mac, CustomerKey, SetCipher};
use crate::error::{Error, Result};
use crate::integrity::ShardMac;
use crate::records::{ObjectManifest, Segment};
use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::time::Duration;
use telemetry::stats::BackendOp;
use tokio::time::Instant;

/// Plaintext bytes fetched per window (rounded to whole blocks); bounds memory per GET.
pub(crate) const WINDOW_BYTES: u64 = 4 << 20;

/// What reading a parity shard is taken to cost over a data shard (the decode), when ranking
/// shards by predicted latency: backends within this of each other count as equally fast.
const PARITY_PENALTY: Duration = Duration::from_millis(2);

/// No shard is hedged sooner than this, however fast its backend: below it, hedging would
/// mostly add load for scheduling noise.
const MIN_HEDGE_DELAY: Duration = Duration::from_millis(5);

/// When to hedge a shard whose backend has no recent latency record, if no backend has one.
const DEFAULT_HEDGE_DELAY: Duration = Duration::from_millis(100);

/// The hedge delay of reads that do not hedge (a day: no read waits that long).
const NEVER: Duration = Duration::from_secs(86_400);

/// Streams a byte range of one object, window by window.
pub struct ObjectReader {
    engine: Engine,
    what: String,
    /// (segment, plaintext range within it) still to read, in order.
    pending: std::collections::VecDeque<(Segment, Range<u64>)>,
    current: Option<SegmentCursor>,
    /// The SSE-C key the request carried, for sets wrapped by one.
    customer: Option<CustomerKey>,
    /// Keeps the sets being read from deletion by a concurrent overwrite or delete.
    _pins: Pins,
}

struct SegmentCursor {
    segment: Segment,
    /// Geometry of the stored (possibly sealed) blocks: shard offsets and decoding.
    layout: Layout,
    /// Block size of the plaintext: which object bytes a block holds.
    plain_block: u64,
    /// Opens sealed blocks; `None` for plaintext sets.
    cipher: Option<SetCipher>,
    /// Verifies the keyed MAC of shard blocks; `None` for sets whose blocks carry none.
    mac: Option<ShardMac>,
    codec: Codec,
    range: Range<u64>,
    /// Shards that failed earlier in this read.
    bad: Vec<bool>,
}

impl Engine {
    /// A reader for `range` of the object described by `manifest`, whose sets `pins` holds
    /// (see [`Engine::pinned_object`]).
    #[must_use]
    pub fn reader(
        &self,
        bucket: &str,
        key: &str,
        manifest: &ObjectManifest,
        pins: Pins,
        range: Range<u64>,
    ) -> ObjectReader {
        let mut pending = std::collections::VecDeque::new();
        let mut seg_start = 0u64;
        for seg in &manifest.segments {
            let seg_end = seg_start + seg.size;
            let s = range.start.max(seg_start);
            let e = range.end.min(seg_end);
            if s < e {
                pending.push_back((seg.clone(), (s - seg_start)..(e - seg_start)));
            }
            seg_start = seg_end;
        }
        ObjectReader {
            engine: self.clone(),
            what: format!("{bucket}/{key}"),
            pending,
            current: None,
            customer: None,
            _pins: pins,
        }
    }
}

impl ObjectReader {
    /// Gives the reader the SSE-C key for sets encrypted with a customer key.
    #[must_use]
    pub fn with_customer_key(mut self, key: Option<CustomerKey>) -> Self {
        self.customer = key;
        self
    }

    /// The next chunk of plaintext, or `None` at the end of the range.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        loop {
            if self.current.as_ref().is_none_or(|c| c.range.is_empty()) {
                let Some((segment, range)) = self.pending.pop_front() else {
                    return Ok(None);
                };
                let layout = segment.layout();
                let n = layout.k + layout.m;
                let cipher = match &segment.encryption {
                    None => None,
                    Some(rec) => Some(
                        open_set_key(segment.set, rec, self.engine.keys(), self.customer.as_ref())
                            .map_err(|e| in_object(&self.what, e))?,
                    ),
                };
                let mac = match &segment.integrity {
                    None => None,
                    Some(rec) => {
                        Some(open_set_mac(segment.set, rec, self.engine.keys()).map_err(|e| in_object(&self.what, e))?)
                    }
                };
                self.current = Some(SegmentCursor {
                    codec: Codec::new(layout.k, layout.m)?,
                    plain_block: segment.block_size.into(),
                    cipher,
                    mac,
                    segment,
                    layout,
                    range,
                    bad: vec![false; n],
                });
            }
            let Some(cur) = self.current.as_mut() else { continue };
            if cur.range.is_empty() {
                continue;
            }
            let bs = cur.plain_block;
            let first = cur.range.start / bs;
            let window_blocks = (WINDOW_BYTES / bs).max(1);
            let last = ((cur.range.end - 1) / bs).min(first + window_blocks - 1);
            let blocks = read_blocks(&self.engine, &self.what, cur, first, last).await?;
            let window_start = first * bs;
            let window_end = window_start + blocks.iter().map(|b| b.len() as u64).sum::<u64>();
            let take_end = cur.range.end.min(window_end);
            let mut out = bytes::BytesMut::with_capacity((take_end - cur.range.start) as usize);
            let mut pos = window_start;
            for b in &blocks {
                let b_end = pos + b.len() as u64;
                let s = cur.range.start.max(pos);
                let e = take_end.min(b_end);
                if s < e {
                    out.extend_from_slice(&b[(s - pos) as usize..(e - pos) as usize]);
                }
                pos = b_end;
            }
            cur.range.start = take_end;
            return Ok(Some(out.freeze()));
        }
    }
}

/// Reads and decodes blocks `first..=last` of the cursor's segment.
async fn read_blocks(
    engine: &Engine,
    what: &str,
    cur: &mut SegmentCursor,
    first: u64,
    last: u64,
) -> Result<Vec<Bytes>> {
    let layout = cur.layout;
    let n = layout.k + layout.m;
    let nblocks = (last - first + 1) as usize;
    let mut got = Gathered {
        shards: vec![vec![None; nblocks]; n],
        tried: vec![false; n],
        errors: Vec::new(),
    };
    gather(engine, what, cur, first, last, &mut got, layout.k).await?;
    let mut out: Vec<Option<Bytes>> = Vec::with_capacity(nblocks);
    let mut unauthentic = Vec::new();
    for b in 0..nblocks {
        let j = first + b as u64;
        let stored = cur.codec.decode(&layout, layout.block_len(j) as usize, &got.block(b))?;
        out.push(match &cur.cipher {
            None => Some(stored),
            Some(c) => c.open(j, &stored).ok(),
        });
        if out[b].is_none() {
            unauthentic.push(b);
        }
    }
    if let (false, Some(cipher)) = (unauthentic.is_empty(), cur.cipher.clone()) {
        // Some shard among those decoded was rewritten with a valid checksum: bring in every
        // other shard, and find which combination of them authenticates.
        gather(engine, what, cur, first, last, &mut got, n).await?;
        let counters = engine.integrity_counters();
        // Shard -> blocks of this window found rewritten.
        let mut forged: std::collections::BTreeMap<usize, u64> = std::collections::BTreeMap::new();
        let mut failed = None;
        for b in unauthentic {
            let j = first + b as u64;
            match cur
                .codec
                .decode_authentic(&layout, j, &got.block(b), |s| cipher.open(j, s).ok())
            {
                Ok(authentic) => {
                    counters.reauthenticated_blocks.fetch_add(1, Ordering::Relaxed);
                    for i in authentic.disagreeing {
                        *forged.entry(i).or_default() += 1;
                    }
                    out[b] = Some(authentic.value);
                }
                Err(e) => {
                    counters.unauthenticated_blocks.fetch_add(1, Ordering::Relaxed);
                    failed = Some(match e {
                        Error::Crypto(m) => Error::Crypto(format!("shard set {}: {m}", cur.segment.set)),
                        other => other,
                    });
                    break;
                }
            }
        }
        // Queued even when the read fails: what was found stays found.
        for (i, blocks) in forged {
            counters.forged_shard_blocks.fetch_add(blocks, Ordering::Relaxed);
            engine.telemetry().integrity_failures(&cur.segment.backends[i], blocks);
            let reason =
                format!("{blocks} blocks disagree with their authenticated decoding (rewritten with a valid checksum)");
            note_bad(engine, cur, i, &reason);
        }
        if let Some(e) = failed {
            return Err(in_object(what, e));
        }
    }
    Ok(out.into_iter().flatten().collect())
}

/// The verified shard blocks of one window read so far.
struct Gathered {
    /// `shards[i][b]`: verified payload of shard i for block first + b.
    shards: Vec<Vec<Option<Bytes>>>,
    /// Shards asked in this window (those cancelled unanswered are not).
    tried: Vec<bool>,
    /// What went wrong with shards, for the error when too few are left.
    errors: Vec<String>,
}

impl Gathered {
    /// Every shard's verified payload of block `b` of the window, by shard index.
    fn block(&self, b: usize) -> Vec<Option<Bytes>> {
        self.shards.iter().map(|s| s[b].clone()).collect()
    }
}

/// Reads shards of blocks `first..=last` into `got` until each block has `want` verified shard
/// blocks: k to decode it, or n for every shard there is (not an error when fewer are left).
async fn gather(
    engine: &Engine,
    what: &str,
    cur: &mut SegmentCursor,
    first: u64,
    last: u64,
    got: &mut Gathered,
    want: usize,
) -> Result<()> {
    let layout = cur.layout;
    let n = layout.k + layout.m;
    let nblocks = (last - first + 1) as usize;
    let window = layout.shard_window(first, last);
    let plan = FetchPlan::new(engine, cur);
    let mut inflight = FuturesUnordered::new();
    // Shards asked and not answered yet.
    let mut asked: Vec<usize> = Vec::new();
    // (shard, when to hedge it); a shard is hedged at most once.
    let mut hedge_at: Vec<(usize, Instant)> = Vec::new();
    loop {
        let need = (0..nblocks)
            .map(|b| want.saturating_sub(got.shards.iter().filter(|s| s[b].is_some()).count()))
            .max()
            .unwrap_or(0);
        if need == 0 {
            break;
        }
        let mut launch = need.saturating_sub(inflight.len());
        // A lagging shard gets one more shard asked beside it.
        let now = Instant::now();
        if let Some(pos) = hedge_at.iter().position(|&(_, at)| at <= now) {
            hedge_at.swap_remove(pos);
            launch += 1;
        }
        for _ in 0..launch {
            let Some(i) = plan.next(&got.tried, &cur.bad) else {
                break;
            };
            got.tried[i] = true;
            asked.push(i);
            hedge_at.push((i, now + plan.hedge_delay(i)));
            let backend = engine.backend(&cur.segment.backends[i]).cloned();
            let path = Backend::shard_path(cur.segment.set, i);
            let window = window.clone();
            inflight.push(async move {
                let res = match backend {
                    Ok(b) => b.read_range(&path, window).await,
                    Err(e) => Err(e),
                };
                (i, res)
            });
        }
        if inflight.is_empty() {
            if want > layout.k {
                // Every shard there is has been asked.
                break;
            }
            let readable = (0..nblocks)
                .map(|b| got.shards.iter().filter(|s| s[b].is_some()).count())
                .min()
                .unwrap_or(0);
            return Err(Error::Unavailable(format!(
                "object {what}: only {readable} of {n} shards readable for blocks {first}..={last} of shard set {}, {} needed ({})",
                cur.segment.set,
                layout.k,
                got.errors.join("; ")
            )));
        }
        let next_hedge = hedge_at.iter().map(|&(_, at)| at).min();
        let (i, res) = tokio::select! {
            Some(done) = inflight.next() => done,
            () = sleep_until(next_hedge) => continue,
        };
        hedge_at.retain(|&(j, _)| j != i);
        asked.retain(|&j| j != i);
        match res {
            Ok(bytes) => match layout.verify_window(first, last, &bytes, i, cur.mac.as_ref()) {
                Some(blocks) => {
                    let faults = Faults::of(&blocks);
                    for (slot, block) in got.shards[i].iter_mut().zip(blocks) {
                        *slot = block.ok();
                    }
                    engine
                        .integrity_counters()
                        .forged_shard_blocks
                        .fetch_add(faults.mac, Ordering::Relaxed);
                    engine
                        .telemetry()
                        .integrity_failures(&cur.segment.backends[i], faults.checksum + faults.mac);
                    match faults.reason() {
                        Some(reason) => {
                            got.errors.push(format!("shard {i}: {reason}"));
                            note_bad(engine, cur, i, &reason);
                        }
                        None => cur.bad[i] = false,
                    }
                }
                None => {
                    got.errors.push(format!(
                        "shard {i}: short read ({} of {} bytes)",
                        bytes.len(),
                        window.end - window.start
                    ));
                    note_bad(engine, cur, i, "short shard");
                }
            },
            Err(e) => {
                let missing = e.is_not_found();
                got.errors.push(format!("shard {i}: {e}"));
                cur.bad[i] = true;
                if missing && !engine.stragglers().contains(cur.segment.set, i) {
                    note_bad(engine, cur, i, "shard missing");
                } else if !missing {
                    tracing::warn!(set = %cur.segment.set, shard = i, error = %e, "shard read failed");
                }
            }
        }
    }
    // Shards still in flight lost the race; dropping them cancels their reads, and they may be
    // asked again if the window needs more shards after all.
    drop(inflight);
    for i in asked {
        got.tried[i] = false;
    }
    Ok(())
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Which shard to ask next, and when to give up waiting on one: from the latency telemetry
/// predicts for each shard's backend.
struct FetchPlan {
    /// Shards from predicted fastest to slowest.
    ranked: Vec<usize>,
    /// Per shard: wait this long for it before asking another.
    hedge_delay: Vec<Duration>,
    /// Shards still being written by a straggler: asked only when nothing else is left.
    straggling: Vec<bool>,
}

impl FetchPlan {
    fn new(engine: &Engine, cur: &SegmentCursor) -> Self {
        let k = cur.layout.k;
        let telemetry = engine.telemetry();
        let settings = engine.read_settings();
        let by_latency = settings.strategy == ReadStrategy::Latency;
        let hedged = settings.hedging;
        // Data-first without hedging needs no prediction at all: every shard ranks as typical,
        // so data shards come first in order.
        let predictions: Vec<_> = cur
            .segment
            .backends
            .iter()
            .map(|b| telemetry.predict(b, BackendOp::Get).filter(|_| by_latency || hedged))
            .collect();
        // A backend without a recent record ranks as a typical one (the median of the known):
        // it is asked when it holds a data shard, which is how a backend that was avoided for
        // being slow gets measured again once its record has aged out (its hedge delay bounds
        // what that costs).
        let mut known: Vec<Duration> = predictions.iter().flatten().map(|p| p.p50).collect();
        known.sort_unstable();
        let typical = known.get(known.len() / 2).copied().unwrap_or_default();
        let score = |i: usize| {
            let p50 = predictions[i]
                .as_ref()
                .filter(|_| by_latency)
                .map_or(typical, |p| p.p50);
            p50 + if i < k { Duration::ZERO } else { PARITY_PENALTY }
        };
        let mut ranked: Vec<usize> = (0..predictions.len()).collect();
        ranked.sort_by_key(|&i| (score(i), i));
        let slowest_known = predictions.iter().flatten().map(|p| p.p95).max();
        let hedge_delay = predictions
            .iter()
            .map(|p| {
                if !hedged {
                    return NEVER;
                }
                p.as_ref()
                    .map(|p| p.p95)
                    .or(slowest_known)
                    .unwrap_or(DEFAULT_HEDGE_DELAY)
                    .max(MIN_HEDGE_DELAY)
            })
            .collect();
        let straggling = (0..predictions.len())
            .map(|i| engine.stragglers().contains(cur.segment.set, i))
            .collect();
        Self {
            ranked,
            hedge_delay,
            straggling,
        }
    }

    /// The next shard to ask: untried ones by rank, those that failed earlier in this read or
    /// are still being written after the rest (their backend may be back, or done).
    fn next(&self, tried: &[bool], bad: &[bool]) -> Option<usize> {
        let untried = || self.ranked.iter().copied().filter(|&i| !tried[i]);
        untried()
            .find(|&i| !bad[i] && !self.straggling[i])
            .or_else(|| untried().find(|&i| !bad[i]))
            .or_else(|| untried().next())
    }

    fn hedge_delay(&self, i: usize) -> Duration {
        self.hedge_delay[i]
    }
}

/// Names the object in an encryption error, which otherwise only names the shard set.
fn in_object(what: &str, e: Error) -> Error {
    match e {
        Error::Crypto(m) => Error::Crypto(format!("object {what}: {m}")),
        other => other,
    }
}

/// Marks a shard bad for this read and queues it for repair.
fn note_bad(engine: &Engine, cur: &mut SegmentCursor, i: usize, reason: &str) {
    cur.bad[i] = true;
    let backend = &cur.segment.backends[i];
    tracing::warn!(set = %cur.segment.set, shard = i, %backend, reason, "shard needs repair");
    if let Err(e) = engine.catalog().queue_repair(cur.segment.set, i, backend, reason) {
        tracing::error!(set = %cur.segment.set, shard = i, error = %e, "could not queue repair");
    }
}

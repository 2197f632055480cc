//! Reading a byte range of an object back from its shard sets.
//!
//! Per window of blocks, the reader asks k shards (data shards first: no decoding needed),
//! verifies every shard block's CRC32C, and asks further shards only for what is still
//! missing. Shards found missing or corrupt are queued for repair; backends that failed are
//! skipped for the rest of the read.

use super::{Engine, Pins};
use crate::backend::Backend;
use crate::codec::{Codec, Layout};
use crate::crypto::{open_set_key, CustomerKey, SetCipher};
use crate::error::{Error, Result};
use crate::manifest::{ObjectManifest, Segment};
use bytes::Bytes;
use std::ops::Range;

/// Plaintext bytes fetched per window (rounded to whole blocks); bounds memory per GET.
const WINDOW_BYTES: u64 = 4 << 20;

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
                self.current = Some(SegmentCursor {
                    codec: Codec::new(layout.k, layout.m)?,
                    plain_block: segment.block_size.into(),
                    cipher,
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
    // shards[i][b]: verified payload of shard i for block first + b.
    let mut shards: Vec<Vec<Option<Bytes>>> = vec![vec![None; nblocks]; n];
    let mut tried = vec![false; n];
    let window = layout.shard_window(first, last);
    let mut errors: Vec<String> = Vec::new();
    loop {
        let need = (0..nblocks)
            .map(|b| {
                layout
                    .k
                    .saturating_sub(shards.iter().filter(|s| s[b].is_some()).count())
            })
            .max()
            .unwrap_or(0);
        if need == 0 {
            break;
        }
        // Data shards first (no decoding), then parity; shards that failed earlier in this
        // read are tried last rather than never: the backend may be back.
        let mut order: Vec<usize> = (0..n).filter(|&i| !tried[i] && !cur.bad[i]).collect();
        order.extend((0..n).filter(|&i| !tried[i] && cur.bad[i]));
        let pick: Vec<usize> = order.into_iter().take(need).collect();
        if pick.is_empty() {
            let readable = (0..nblocks)
                .map(|b| shards.iter().filter(|s| s[b].is_some()).count())
                .min()
                .unwrap_or(0);
            return Err(Error::Unavailable(format!(
                "object {what}: only {readable} of {n} shards readable for blocks {first}..={last} of shard set {}, {} needed ({})",
                cur.segment.set,
                layout.k,
                errors.join("; ")
            )));
        }
        let fetches = pick.iter().map(|&i| {
            let backend = engine.backend(&cur.segment.backends[i]).cloned();
            let path = Backend::shard_path(cur.segment.set, i);
            let window = window.clone();
            async move {
                let backend = backend?;
                backend.read_range(&path, window).await
            }
        });
        let results = futures::future::join_all(fetches).await;
        for (&i, res) in pick.iter().zip(results) {
            tried[i] = true;
            match res {
                Ok(bytes) => match layout.verify_window(first, last, &bytes) {
                    Some(blocks) => {
                        let corrupt = blocks.iter().filter(|b| b.is_none()).count();
                        for (slot, block) in shards[i].iter_mut().zip(blocks) {
                            *slot = block;
                        }
                        if corrupt > 0 {
                            errors.push(format!("shard {i}: {corrupt} corrupt blocks"));
                            note_bad(engine, cur, i, &format!("checksum mismatch in {corrupt} blocks"));
                        } else {
                            cur.bad[i] = false;
                        }
                    }
                    None => {
                        errors.push(format!(
                            "shard {i}: short read ({} of {} bytes)",
                            bytes.len(),
                            window.end - window.start
                        ));
                        note_bad(engine, cur, i, "short shard");
                    }
                },
                Err(e) => {
                    let missing = e.is_not_found();
                    errors.push(format!("shard {i}: {e}"));
                    cur.bad[i] = true;
                    if missing {
                        note_bad(engine, cur, i, "shard missing");
                    } else {
                        tracing::warn!(set = %cur.segment.set, shard = i, error = %e, "shard read failed");
                    }
                }
            }
        }
    }
    let mut out = Vec::with_capacity(nblocks);
    for b in 0..nblocks {
        let j = first + b as u64;
        let block_shards: Vec<Option<Bytes>> = shards.iter_mut().map(|s| s[b].take()).collect();
        let stored = cur.codec.decode(&layout, layout.block_len(j) as usize, &block_shards)?;
        out.push(match &cur.cipher {
            None => stored,
            Some(c) => c.open(j, &stored).map_err(|e| in_object(what, e))?,
        });
    }
    Ok(out)
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

//! Reed-Solomon coding of blocks into shard blocks, and their on-backend layout.
//!
//! A block of up to `block_size` plaintext bytes is split into k data shards of equal length
//! (zero-padded) and m parity shards. Each shard block is stored followed by its trailer: in a
//! keyed layout the block's MAC ([`crate::integrity`]), then the CRC32C of everything before it,
//! so bitrot is caught per block on read, and a rewrite with a valid CRC32C by the MAC. All
//! full blocks of a segment have the same shard length, which makes the offset of block j in
//! every shard object `j * (shard_len + trailer)`, the trailer being 4 bytes (CRC32C only) or
//! 20 (MAC and CRC32C). docs/codec.md draws the format.
//!
//! `reed-solomon-erasure` with its `simd-accel` kernels was chosen over `reed-solomon-simd` by
//! measurement (docs/codec.md): about 2x faster encode at 4+2 and 4.5-20x faster reconstruct.

use crate::error::{Error, Result};
use crate::integrity::{ShardMac, MAC_LEN};
use bytes::{BufMut, Bytes, BytesMut};
use reed_solomon_erasure::galois_8::ReedSolomon;
use std::collections::HashSet;

/// Bytes of checksum after every shard block.
pub const CHECKSUM_LEN: u64 = 4;

/// Shard lengths are rounded up to this: aligned rows suit the SIMD kernels, and the padding
/// (at most 63 bytes per shard block) is noise next to a block.
const SHARD_ALIGN: usize = 64;

/// Geometry of one segment: how its bytes map to blocks and shard blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Data shards.
    pub k: usize,
    /// Parity shards.
    pub m: usize,
    /// Plaintext bytes per block.
    pub block_size: u64,
    /// Plaintext bytes in the segment.
    pub size: u64,
    /// Every shard block carries a keyed MAC before its CRC32C (plaintext sets written since
    /// keyed integrity); false: the CRC32C alone.
    pub keyed: bool,
}

impl Layout {
    /// Number of blocks (0 for an empty segment).
    #[must_use]
    pub fn blocks(&self) -> u64 {
        self.size.div_ceil(self.block_size)
    }

    /// Plaintext length of block `j`.
    #[must_use]
    pub fn block_len(&self, j: u64) -> u64 {
        (self.size - j * self.block_size).min(self.block_size)
    }

    /// Shard length (without checksum) for a block of `len` bytes.
    #[must_use]
    pub fn shard_len_for(&self, len: u64) -> u64 {
        let per = len.div_ceil(self.k as u64).max(1);
        per.div_ceil(SHARD_ALIGN as u64) * SHARD_ALIGN as u64
    }

    /// Bytes stored after every shard block: the MAC if keyed, then the CRC32C.
    #[must_use]
    pub fn trailer_len(&self) -> u64 {
        CHECKSUM_LEN + if self.keyed { MAC_LEN as u64 } else { 0 }
    }

    /// Byte offset of block `j` in every shard object.
    #[must_use]
    pub fn shard_offset(&self, j: u64) -> u64 {
        j * (self.shard_len_for(self.block_size) + self.trailer_len())
    }

    /// Stored length (with its trailer) of block `j` in a shard object.
    #[must_use]
    pub fn stored_len(&self, j: u64) -> u64 {
        self.shard_len_for(self.block_len(j)) + self.trailer_len()
    }

    /// Byte range of blocks `first..=last` in every shard object.
    #[must_use]
    pub fn shard_window(&self, first: u64, last: u64) -> std::ops::Range<u64> {
        self.shard_offset(first)..self.shard_offset(last) + self.stored_len(last)
    }

    /// Splits the bytes of [`Self::shard_window`]`(first, last)` of shard `shard` into the
    /// verified payload of each block, or why a block failed; `None` when `bytes` is short.
    /// A keyed layout needs the set's `mac`: without it every block fails as unverifiable.
    #[must_use]
    pub fn verify_window(
        &self,
        first: u64,
        last: u64,
        bytes: &Bytes,
        shard: usize,
        mac: Option<&ShardMac>,
    ) -> Option<Vec<Result<Bytes, BlockFault>>> {
        let start = self.shard_offset(first);
        if bytes.len() as u64 != self.shard_window(first, last).end - start {
            return None;
        }
        Some(
            (first..=last)
                .map(|j| {
                    let off = (self.shard_offset(j) - start) as usize;
                    verify_block(
                        self,
                        &bytes.slice(off..off + self.stored_len(j) as usize),
                        shard,
                        j,
                        mac,
                    )
                })
                .collect(),
        )
    }

    /// Total length of each shard object.
    #[must_use]
    pub fn shard_object_len(&self) -> u64 {
        match self.blocks() {
            0 => 0,
            n => self.shard_offset(n - 1) + self.stored_len(n - 1),
        }
    }
}

/// Encodes and decodes blocks of one (k, m); keep one per stream (it caches decode matrices).
pub struct Codec {
    k: usize,
    m: usize,
    /// None when m = 0: nothing to code.
    rs: Option<ReedSolomon>,
}

impl Codec {
    /// A codec for k data + m parity shards.
    pub fn new(k: usize, m: usize) -> Result<Self> {
        let rs = if m == 0 {
            None
        } else {
            Some(ReedSolomon::new(k, m).map_err(codec_err)?)
        };
        Ok(Self { k, m, rs })
    }

    /// Codes block `j` into k + m stored shard blocks, each with its trailer appended: the MAC
    /// under `mac` when the layout is keyed (which needs one), then the CRC32C.
    pub fn encode(&mut self, layout: &Layout, j: u64, block: &[u8], mac: Option<&ShardMac>) -> Result<Vec<Bytes>> {
        if layout.keyed != mac.is_some() {
            return Err(Error::Internal(format!(
                "encoding block {j}: the layout {} a keyed MAC but {} given",
                if layout.keyed { "wants" } else { "has no room for" },
                if mac.is_some() { "one was" } else { "none was" }
            )));
        }
        let shard_len = layout.shard_len_for(block.len() as u64) as usize;
        let row = |fill: &[u8]| {
            let mut s = BytesMut::with_capacity(shard_len + layout.trailer_len() as usize);
            s.extend_from_slice(fill);
            s.resize(shard_len, 0);
            s
        };
        let mut rows: Vec<BytesMut> = (0..self.k)
            .map(|i| row(&block[(i * shard_len).min(block.len())..((i + 1) * shard_len).min(block.len())]))
            .chain((0..self.m).map(|_| row(&[])))
            .collect();
        if let Some(rs) = &self.rs {
            let mut refs: Vec<&mut [u8]> = rows.iter_mut().map(|s| &mut s[..]).collect();
            rs.encode(&mut refs).map_err(codec_err)?;
        }
        Ok(rows
            .iter_mut()
            .enumerate()
            .map(|(i, s)| {
                if let Some(mac) = mac {
                    let tag = mac.tag(i, j, &s[..]);
                    s.extend_from_slice(&tag);
                }
                let crc = crc32c::crc32c(&s[..]);
                s.put_u32_le(crc);
                std::mem::take(s).freeze()
            })
            .collect())
    }

    /// Rebuilds the plaintext of one block of `block_len` bytes from at least k verified
    /// shard blocks (checksums already stripped), indexed by shard number.
    pub fn decode(&mut self, layout: &Layout, block_len: usize, shards: &[Option<Bytes>]) -> Result<Bytes> {
        let shard_len = layout.shard_len_for(block_len as u64) as usize;
        let mut out = BytesMut::with_capacity(self.k * shard_len);
        if shards[..self.k].iter().all(Option::is_some) {
            for s in shards[..self.k].iter().flatten() {
                out.extend_from_slice(s);
            }
        } else {
            let available = shards.iter().filter(|s| s.is_some()).count();
            let rs = match &self.rs {
                Some(rs) if available >= self.k => rs,
                _ => {
                    return Err(Error::Unavailable(format!(
                        "only {available} of {} shards readable, {} needed",
                        self.k + self.m,
                        self.k
                    )))
                }
            };
            let mut rows: Vec<Option<Vec<u8>>> = shards.iter().map(|s| s.as_ref().map(|b| b.to_vec())).collect();
            rs.reconstruct_data(&mut rows).map_err(codec_err)?;
            for (i, row) in rows[..self.k].iter().enumerate() {
                let row = row
                    .as_ref()
                    .ok_or_else(|| Error::Internal(format!("decoder did not restore shard {i}")))?;
                out.extend_from_slice(row);
            }
        }
        out.truncate(block_len);
        Ok(out.freeze())
    }

    /// Decodes block `j` of a set without a per-shard MAC (the checksums of `shards` verified,
    /// indexed by shard number) from combinations of its shards until `open` accepts the
    /// decoded stored block: an encrypted set's GCM tag authenticates the block, not any one
    /// shard, so a shard rewritten with a valid checksum shows only this way. Combinations that
    /// leave out fewer shards come first: one rewritten shard is found within n + 1 decodings.
    ///
    /// A block that fails to authenticate however it is decoded is an error: no bytes that
    /// failed authentication are returned.
    pub fn decode_authentic<T>(
        &mut self,
        layout: &Layout,
        j: u64,
        shards: &[Option<Bytes>],
        mut open: impl FnMut(&Bytes) -> Option<T>,
    ) -> Result<Authentic<T>> {
        let k = layout.k;
        let block_len = layout.block_len(j) as usize;
        let have: Vec<usize> = (0..shards.len()).filter(|&i| shards[i].is_some()).collect();
        if have.len() < k {
            return Err(Error::Unavailable(format!(
                "only {} of {} shards readable, {k} needed",
                have.len(),
                shards.len()
            )));
        }
        let mut tried: HashSet<Vec<usize>> = HashSet::new();
        let mut found = None;
        for leave_out in 0..=have.len() - k {
            for_each_combination(have.len(), leave_out, |out| {
                if tried.len() >= MAX_TRIALS {
                    return false;
                }
                let chosen: Vec<usize> = have
                    .iter()
                    .enumerate()
                    .filter(|(pos, _)| !out.contains(pos))
                    .map(|(_, &i)| i)
                    .take(k)
                    .collect();
                if !tried.insert(chosen.clone()) {
                    return true;
                }
                let rows: Vec<Option<Bytes>> = (0..shards.len())
                    .map(|i| if chosen.contains(&i) { shards[i].clone() } else { None })
                    .collect();
                match self.decode(layout, block_len, &rows) {
                    Ok(stored) => {
                        if let Some(value) = open(&stored) {
                            found = Some((value, stored));
                            return false;
                        }
                    }
                    Err(e) => {
                        tracing::debug!(block = j, shards = ?chosen, error = %e, "decoding a combination of shards failed");
                    }
                }
                true
            });
            if found.is_some() || tried.len() >= MAX_TRIALS {
                break;
            }
        }
        let Some((value, stored)) = found else {
            return Err(Error::Crypto(format!(
                "block {j} failed authentication however it was decoded ({} combinations of the {} shards read tried)",
                tried.len(),
                have.len()
            )));
        };
        let coded = self.encode(layout, j, &stored, None)?;
        let trailer = layout.trailer_len() as usize;
        let disagreeing = have
            .iter()
            .copied()
            .filter(|&i| shards[i].as_deref() != Some(&coded[i][..coded[i].len() - trailer]))
            .collect();
        Ok(Authentic { value, disagreeing })
    }
}

/// Most decodings [`Codec::decode_authentic`] tries for one block before it gives up. Each
/// costs a decode and an authentication of one block (about a millisecond per MiB). 512 covers
/// every way to leave out up to two shards of a 12+4 set, and any number of a 4+2 or 8+4 set.
const MAX_TRIALS: usize = 512;

/// What [`Codec::decode_authentic`] found: the authenticated value and the shards that
/// disagree with it.
#[derive(Debug)]
pub struct Authentic<T> {
    /// What the authenticating decoding opened to.
    pub value: T,
    /// Shards read whose block differs from the authentic block's re-encoding: rewritten.
    pub disagreeing: Vec<usize>,
}

/// Calls `f` with every set of `t` positions out of `0..n` (ascending, in lexicographic order)
/// until it returns false.
fn for_each_combination(n: usize, t: usize, mut f: impl FnMut(&[usize]) -> bool) {
    if t > n {
        return;
    }
    let mut idx: Vec<usize> = (0..t).collect();
    loop {
        if !f(&idx) {
            return;
        }
        // The rightmost position that can still move right; the ones after it follow it.
        let Some(p) = (0..t).rev().find(|&p| idx[p] < n - t + p) else {
            return;
        };
        idx[p] += 1;
        for q in p + 1..t {
            idx[q] = idx[q - 1] + 1;
        }
    }
}

/// Why a stored shard block was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockFault {
    /// Its CRC32C does not match: bitrot, a torn write, or a short block.
    Checksum,
    /// Its CRC32C matches but its keyed MAC does not: rewritten by someone without the key
    /// (or, when no key was at hand, unverifiable).
    Mac,
}

impl std::fmt::Display for BlockFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Checksum => "checksum mismatch",
            Self::Mac => "keyed MAC mismatch under a valid checksum",
        })
    }
}

/// How many blocks of a shard's window failed, by fault.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Faults {
    /// Blocks whose checksum failed.
    pub checksum: u64,
    /// Blocks whose checksum held but whose keyed MAC failed.
    pub mac: u64,
}

impl Faults {
    /// The faults among `blocks`, as [`Layout::verify_window`] returns them.
    #[must_use]
    pub fn of(blocks: &[std::result::Result<Bytes, BlockFault>]) -> Self {
        let count = |f| blocks.iter().filter(|b| b.as_ref().err() == Some(&f)).count() as u64;
        Self {
            checksum: count(BlockFault::Checksum),
            mac: count(BlockFault::Mac),
        }
    }

    /// Why the shard needs repair, for the repair queue and the logs; `None` when all is well.
    #[must_use]
    pub fn reason(&self) -> Option<String> {
        let mut why = Vec::new();
        if self.checksum > 0 {
            why.push(format!("checksum mismatch in {} blocks", self.checksum));
        }
        if self.mac > 0 {
            why.push(format!(
                "keyed MAC mismatch in {} blocks (rewritten with a valid checksum)",
                self.mac
            ));
        }
        (!why.is_empty()).then(|| why.join(", "))
    }
}

/// Splits a stored shard block into its payload, or `None` if its checksum does not match
/// (the CRC32C layer only: a keyed block's payload still ends in its MAC).
#[must_use]
pub fn verify_shard_block(stored: &Bytes) -> Option<Bytes> {
    let n = stored.len().checked_sub(CHECKSUM_LEN as usize)?;
    let (data, crc) = stored.split_at(n);
    let want = u32::from_le_bytes(crc.try_into().ok()?);
    (crc32c::crc32c(data) == want).then(|| stored.slice(..n))
}

/// The payload of stored block `j` of shard `shard` once its checksum and, in a keyed layout,
/// its MAC under `mac` verify. A keyed block without a `mac` to check it against fails.
pub fn verify_block(
    layout: &Layout,
    stored: &Bytes,
    shard: usize,
    j: u64,
    mac: Option<&ShardMac>,
) -> std::result::Result<Bytes, BlockFault> {
    let body = verify_shard_block(stored).ok_or(BlockFault::Checksum)?;
    if !layout.keyed {
        return Ok(body);
    }
    let n = body.len().checked_sub(MAC_LEN).ok_or(BlockFault::Checksum)?;
    let (payload, tag) = body.split_at(n);
    match mac {
        Some(mac) if mac.verify(shard, j, payload, tag) => Ok(body.slice(..n)),
        _ => Err(BlockFault::Mac),
    }
}

fn codec_err(e: reed_solomon_erasure::Error) -> Error {
    Error::Internal(format!("reed-solomon codec: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(k: usize, m: usize, size: u64) -> Layout {
        Layout {
            k,
            m,
            block_size: 4096,
            size,
            keyed: false,
        }
    }

    #[test]
    fn geometry() {
        let l = layout(4, 2, 4096 * 2 + 1);
        assert_eq!(l.blocks(), 3);
        assert_eq!(l.block_len(2), 1);
        assert_eq!(l.shard_len_for(4096), 1024);
        assert_eq!(l.shard_len_for(1), 64);
        assert_eq!(l.shard_offset(2), 2 * 1028);
        assert_eq!(l.shard_object_len(), 2 * 1028 + 68);
        assert_eq!(layout(4, 2, 0).shard_object_len(), 0);
        let keyed = Layout { keyed: true, ..l };
        assert_eq!(keyed.trailer_len(), 20);
        assert_eq!(keyed.shard_offset(2), 2 * 1044);
        assert_eq!(keyed.shard_object_len(), 2 * 1044 + 84);
    }

    #[test]
    fn round_trip_with_any_m_lost() {
        for (k, m) in [(4, 2), (1, 2), (3, 0), (8, 4)] {
            let mut codec = Codec::new(k, m).unwrap();
            let block: Vec<u8> = (0..3001u32).map(|i| (i * 7 % 251) as u8).collect();
            let l = layout(k, m, block.len() as u64);
            let stored = codec.encode(&l, 0, &block, None).unwrap();
            assert_eq!(stored.len(), k + m);
            let verified: Vec<Option<Bytes>> = stored.iter().map(verify_shard_block).collect();
            assert!(verified.iter().all(Option::is_some));
            for lost_start in 0..=k {
                let mut shards = verified.clone();
                for s in shards.iter_mut().skip(lost_start).take(m) {
                    *s = None;
                }
                let got = codec.decode(&l, block.len(), &shards).unwrap();
                assert_eq!(&got[..], &block[..], "k={k} m={m} lost from {lost_start}");
            }
            if m > 0 || k > 1 {
                let mut shards = verified.clone();
                for s in shards.iter_mut().take(m + 1) {
                    *s = None;
                }
                assert!(codec.decode(&l, block.len(), &shards).is_err());
            }
        }
    }

    #[test]
    fn bitrot_detected() {
        let mut codec = Codec::new(2, 1).unwrap();
        let l = layout(2, 1, 100);
        let stored = codec.encode(&l, 0, &[9u8; 100], None).unwrap();
        let mut bad = stored[0].to_vec();
        bad[3] ^= 1;
        assert!(verify_shard_block(&Bytes::from(bad)).is_none());
        assert!(verify_shard_block(&stored[0]).is_some());
    }

    #[test]
    fn combinations_come_in_order() {
        let mut seen = Vec::new();
        for_each_combination(4, 2, |c| {
            seen.push(c.to_vec());
            true
        });
        assert_eq!(seen, [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]]);
        let mut none = 0;
        for_each_combination(3, 0, |c| {
            assert!(c.is_empty());
            none += 1;
            true
        });
        assert_eq!(none, 1);
    }

    #[test]
    fn the_authentic_decoding_names_the_rewritten_shards() {
        // "Authentication" here: the block equals the original, as a GCM open would accept it.
        let l = layout(4, 2, 4096);
        let mut codec = Codec::new(4, 2).unwrap();
        let block: Vec<u8> = (0..4096u32).map(|i| (i * 31 % 251) as u8).collect();
        let stored = codec.encode(&l, 0, &block, None).unwrap();
        let payloads: Vec<Option<Bytes>> = stored.iter().map(verify_shard_block).collect();
        let open = |b: &Bytes| (b[..] == block[..]).then(|| b.clone());
        for bad in [vec![0], vec![3], vec![5], vec![0, 4], vec![1, 2]] {
            let mut shards = payloads.clone();
            for &i in &bad {
                let mut v = shards[i].as_ref().unwrap().to_vec();
                v[100] ^= 0xff;
                shards[i] = Some(Bytes::from(v));
            }
            let got = codec.decode_authentic(&l, 0, &shards, open).unwrap();
            assert_eq!(&got.value[..], &block[..]);
            assert_eq!(got.disagreeing, bad, "rewritten shards named");
        }
        // Three rewritten shards of 4+2: nothing authenticates, and no bytes come back.
        let mut shards = payloads.clone();
        for i in [0, 2, 4] {
            let mut v = shards[i].as_ref().unwrap().to_vec();
            v[7] ^= 1;
            shards[i] = Some(Bytes::from(v));
        }
        let e = codec.decode_authentic(&l, 0, &shards, open).unwrap_err();
        assert!(e.to_string().contains("block 0 failed authentication"), "{e}");
        // Too few shards to decode at all.
        let few: Vec<Option<Bytes>> = payloads.iter().take(3).cloned().chain([None, None, None]).collect();
        assert!(matches!(
            codec.decode_authentic(&l, 0, &few, open),
            Err(Error::Unavailable(_))
        ));
    }
}

//! Reed-Solomon coding of blocks into shard blocks, and their on-backend layout.
//!
//! A block of up to `block_size` plaintext bytes is split into k data shards of equal length
//! (zero-padded) and m parity shards. Each shard block is stored followed by its CRC32C, so
//! bitrot is caught per block on read. All full blocks of a segment have the same shard length,
//! which makes the offset of block j in every shard object `j * (shard_len + 4)`.
//!
//! `reed-solomon-simd` was chosen over `reed-solomon-erasure` by measurement (docs/codec.md).

use crate::error::{Error, Result};
use bytes::{BufMut, Bytes, BytesMut};
use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};

/// Bytes of checksum after every shard block.
pub const CHECKSUM_LEN: u64 = 4;

/// Shard lengths are rounded up to this, which the codec requires (even) and SIMD prefers.
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

    /// Byte offset of block `j` in every shard object.
    #[must_use]
    pub fn shard_offset(&self, j: u64) -> u64 {
        j * (self.shard_len_for(self.block_size) + CHECKSUM_LEN)
    }

    /// Stored length (with checksum) of block `j` in a shard object.
    #[must_use]
    pub fn stored_len(&self, j: u64) -> u64 {
        self.shard_len_for(self.block_len(j)) + CHECKSUM_LEN
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

/// Encodes and decodes blocks; holds reusable work buffers, so keep one per stream.
pub struct Codec {
    k: usize,
    m: usize,
    encoder: Option<ReedSolomonEncoder>,
    decoder: Option<ReedSolomonDecoder>,
}

impl Codec {
    /// A codec for k data + m parity shards.
    #[must_use]
    pub fn new(k: usize, m: usize) -> Self {
        Self {
            k,
            m,
            encoder: None,
            decoder: None,
        }
    }

    /// Codes one block into k + m stored shard blocks (each with its CRC32C appended).
    pub fn encode(&mut self, layout: &Layout, block: &[u8]) -> Result<Vec<Bytes>> {
        let shard_len = layout.shard_len_for(block.len() as u64) as usize;
        let mut data: Vec<BytesMut> = (0..self.k)
            .map(|i| {
                let mut s = BytesMut::with_capacity(shard_len + CHECKSUM_LEN as usize);
                let start = (i * shard_len).min(block.len());
                let end = ((i + 1) * shard_len).min(block.len());
                s.extend_from_slice(&block[start..end]);
                s.resize(shard_len, 0);
                s
            })
            .collect();
        let mut parity: Vec<BytesMut> = Vec::with_capacity(self.m);
        if self.m > 0 {
            let enc = match self.encoder.as_mut() {
                Some(e) => {
                    e.reset(self.k, self.m, shard_len).map_err(codec_err)?;
                    e
                }
                None => self
                    .encoder
                    .insert(ReedSolomonEncoder::new(self.k, self.m, shard_len).map_err(codec_err)?),
            };
            for s in &data {
                enc.add_original_shard(&s[..]).map_err(codec_err)?;
            }
            let result = enc.encode().map_err(codec_err)?;
            for r in result.recovery_iter() {
                let mut s = BytesMut::with_capacity(shard_len + CHECKSUM_LEN as usize);
                s.extend_from_slice(r);
                parity.push(s);
            }
        }
        Ok(data
            .iter_mut()
            .chain(parity.iter_mut())
            .map(|s| {
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
        let have_all_data = shards[..self.k].iter().all(Option::is_some);
        let mut out = BytesMut::with_capacity(self.k * shard_len);
        if have_all_data {
            for s in shards[..self.k].iter().flatten() {
                out.extend_from_slice(s);
            }
        } else {
            let available = shards.iter().filter(|s| s.is_some()).count();
            if available < self.k || self.m == 0 {
                return Err(Error::Unavailable(format!(
                    "only {available} of {} shards readable, {} needed",
                    self.k + self.m,
                    self.k
                )));
            }
            let dec = match self.decoder.as_mut() {
                Some(d) => {
                    d.reset(self.k, self.m, shard_len).map_err(codec_err)?;
                    d
                }
                None => self
                    .decoder
                    .insert(ReedSolomonDecoder::new(self.k, self.m, shard_len).map_err(codec_err)?),
            };
            for (i, s) in shards.iter().enumerate() {
                if let Some(s) = s {
                    if i < self.k {
                        dec.add_original_shard(i, &s[..]).map_err(codec_err)?;
                    } else {
                        dec.add_recovery_shard(i - self.k, &s[..]).map_err(codec_err)?;
                    }
                }
            }
            let result = dec.decode().map_err(codec_err)?;
            let restored: std::collections::HashMap<usize, &[u8]> = result.restored_original_iter().collect();
            for (i, s) in shards[..self.k].iter().enumerate() {
                match s {
                    Some(s) => out.extend_from_slice(s),
                    None => out.extend_from_slice(
                        restored
                            .get(&i)
                            .ok_or_else(|| Error::Internal(format!("decoder did not restore shard {i}")))?,
                    ),
                }
            }
        }
        out.truncate(block_len);
        Ok(out.freeze())
    }
}

/// Splits a stored shard block into its payload, or `None` if its checksum does not match.
#[must_use]
pub fn verify_shard_block(stored: &Bytes) -> Option<Bytes> {
    let n = stored.len().checked_sub(CHECKSUM_LEN as usize)?;
    let (data, crc) = stored.split_at(n);
    let want = u32::from_le_bytes(crc.try_into().ok()?);
    (crc32c::crc32c(data) == want).then(|| stored.slice(..n))
}

fn codec_err(e: reed_solomon_simd::Error) -> Error {
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
    }

    #[test]
    fn round_trip_with_any_m_lost() {
        for (k, m) in [(4, 2), (1, 2), (3, 0), (8, 4)] {
            let mut codec = Codec::new(k, m);
            let block: Vec<u8> = (0..3001u32).map(|i| (i * 7 % 251) as u8).collect();
            let l = layout(k, m, block.len() as u64);
            let stored = codec.encode(&l, &block).unwrap();
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
        let mut codec = Codec::new(2, 1);
        let l = layout(2, 1, 100);
        let stored = codec.encode(&l, &[9u8; 100]).unwrap();
        let mut bad = stored[0].to_vec();
        bad[3] ^= 1;
        assert!(verify_shard_block(&Bytes::from(bad)).is_none());
        assert!(verify_shard_block(&stored[0]).is_some());
    }
}

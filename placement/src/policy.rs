//! Erasure-coding policies of a bucket and their named presets.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Default block size: the unit of plaintext coded at once (1 MiB).
pub const DEFAULT_BLOCK_SIZE: u32 = 1 << 20;

/// Upper bound on k + m: Reed-Solomon over GF(2^8) codecs stay fast and simple far below this.
pub const MAX_SHARDS: usize = 64;

/// Smallest block size accepted: below this, per-block checksums and request overheads dominate.
pub const MIN_BLOCK_SIZE: u32 = 4 * 1024;

/// Largest block size accepted: bounds memory per block in flight.
pub const MAX_BLOCK_SIZE: u32 = 64 << 20;

/// How a bucket's objects are coded: k data shards plus m parity shards per block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketPolicy {
    /// Data shards per block; any k of the k + m shards rebuild the block.
    pub k: u8,
    /// Parity shards per block; up to m shards may be lost.
    pub m: u8,
    /// Plaintext bytes coded at once.
    pub block_size: u32,
}

/// Why a policy or preset name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The preset name is not one of `ec-K-M` or `replicate-N`.
    #[error("unknown policy preset {0:?}: expected ec-K-M (e.g. ec-4-2) or replicate-N (e.g. replicate-3)")]
    UnknownPreset(String),
    /// k must be at least 1.
    #[error("policy {0}: k must be at least 1")]
    ZeroK(String),
    /// k + m exceeds [`MAX_SHARDS`].
    #[error("policy {policy}: k + m = {total} exceeds the maximum of {MAX_SHARDS} shards")]
    TooManyShards {
        /// The policy as written.
        policy: String,
        /// Its k + m.
        total: usize,
    },
    /// More shards than backends to hold them.
    #[error("policy {policy} needs {needed} backends, only {available} are configured")]
    NotEnoughBackends {
        /// The policy as written.
        policy: String,
        /// k + m.
        needed: usize,
        /// Backends available.
        available: usize,
    },
    /// Block size outside the accepted range.
    #[error("block size {0} is outside {MIN_BLOCK_SIZE}..={MAX_BLOCK_SIZE} bytes")]
    BlockSize(u32),
}

impl BucketPolicy {
    /// A k + m policy with the default block size, validated.
    pub fn new(k: u8, m: u8) -> Result<Self, PolicyError> {
        let p = Self {
            k,
            m,
            block_size: DEFAULT_BLOCK_SIZE,
        };
        p.validate()?;
        Ok(p)
    }

    /// Total shards per block (k + m).
    #[must_use]
    pub fn shards(&self) -> usize {
        usize::from(self.k) + usize::from(self.m)
    }

    /// Shards that must be durable before a write is acknowledged: k + 1, or k when m = 0.
    ///
    /// k + 1 rather than k leaves one lost shard of slack before an acknowledged object
    /// becomes unreadable while the healer catches up.
    #[must_use]
    pub fn write_quorum(&self) -> usize {
        if self.m == 0 {
            usize::from(self.k)
        } else {
            usize::from(self.k) + 1
        }
    }

    /// Returns the same policy with another block size, validated.
    pub fn with_block_size(mut self, block_size: u32) -> Result<Self, PolicyError> {
        self.block_size = block_size;
        self.validate()?;
        Ok(self)
    }

    /// Checks the policy's own invariants (not the backends available).
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.k == 0 {
            return Err(PolicyError::ZeroK(self.to_string()));
        }
        if self.shards() > MAX_SHARDS {
            return Err(PolicyError::TooManyShards {
                policy: self.to_string(),
                total: self.shards(),
            });
        }
        if !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&self.block_size) {
            return Err(PolicyError::BlockSize(self.block_size));
        }
        Ok(())
    }

    /// Checks that `available` backends can hold one shard each.
    pub fn check_backends(&self, available: usize) -> Result<(), PolicyError> {
        if self.shards() > available {
            return Err(PolicyError::NotEnoughBackends {
                policy: self.to_string(),
                needed: self.shards(),
                available,
            });
        }
        Ok(())
    }
}

impl fmt::Display for BucketPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.k == 1 {
            write!(f, "replicate-{}", u16::from(self.m) + 1)
        } else {
            write!(f, "ec-{}-{}", self.k, self.m)
        }
    }
}

impl FromStr for BucketPolicy {
    type Err = PolicyError;

    /// Parses a preset: `ec-K-M` (K data + M parity) or `replicate-N` (N copies: k = 1, m = N - 1).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let unknown = || PolicyError::UnknownPreset(s.to_owned());
        let lower = s.trim().to_ascii_lowercase();
        let (k, m) = if let Some(rest) = lower.strip_prefix("ec-") {
            let (k, m) = rest.split_once('-').ok_or_else(unknown)?;
            (
                k.parse::<u8>().map_err(|_| unknown())?,
                m.parse::<u8>().map_err(|_| unknown())?,
            )
        } else if let Some(n) = lower.strip_prefix("replicate-") {
            let n = n.parse::<u8>().map_err(|_| unknown())?;
            if n == 0 {
                return Err(unknown());
            }
            (1, n - 1)
        } else {
            return Err(unknown());
        };
        Self::new(k, m)
    }
}

impl Default for BucketPolicy {
    /// 4 data + 2 parity: survives any two backend losses at 1.5x storage.
    fn default() -> Self {
        Self {
            k: 4,
            m: 2,
            block_size: DEFAULT_BLOCK_SIZE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_parse() {
        let cases = [
            ("ec-4-2", Some((4, 2))),
            ("EC-8-4", Some((8, 4))),
            ("ec-12-4", Some((12, 4))),
            ("ec-3-0", Some((3, 0))),
            ("replicate-3", Some((1, 2))),
            ("replicate-1", Some((1, 0))),
            ("replicate-0", None),
            ("ec-0-2", None),
            ("ec-4", None),
            ("ec-a-b", None),
            ("raid5", None),
            ("", None),
            ("ec-60-10", None),
        ];
        for (name, want) in cases {
            let got = name.parse::<BucketPolicy>().ok().map(|p| (p.k, p.m));
            assert_eq!(got, want, "preset {name:?}");
        }
    }

    #[test]
    fn display_round_trips() {
        for name in ["ec-4-2", "ec-8-4", "replicate-3", "ec-2-1"] {
            let p: BucketPolicy = name.parse().unwrap();
            assert_eq!(p.to_string(), name);
        }
    }

    #[test]
    fn quorum() {
        assert_eq!(BucketPolicy::new(4, 2).unwrap().write_quorum(), 5);
        assert_eq!(BucketPolicy::new(4, 0).unwrap().write_quorum(), 4);
        assert_eq!(BucketPolicy::new(1, 2).unwrap().write_quorum(), 2);
    }

    #[test]
    fn backends_and_block_size_checked() {
        let p = BucketPolicy::new(8, 4).unwrap();
        assert!(matches!(
            p.check_backends(6),
            Err(PolicyError::NotEnoughBackends {
                needed: 12,
                available: 6,
                ..
            })
        ));
        assert!(p.check_backends(12).is_ok());
        assert!(p.with_block_size(100).is_err());
        assert_eq!(p.with_block_size(1 << 16).unwrap().block_size, 1 << 16);
    }
}

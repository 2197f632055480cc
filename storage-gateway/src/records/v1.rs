//! Version 1 of the stored records: the structs as they are on disk today.
//!
//! Never change the serialized shape of anything here: records written by every earlier build
//! must keep decoding byte for byte (see the tests at the bottom). A new shape goes into a new
//! module (`v2`), as the parent module's documentation describes.

use super::Record;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

/// The format version of every record type of this module.
const V1: u8 = 1;

macro_rules! v1_records {
    ($($t:ty),* $(,)?) => {
        $(impl Record for $t {
            const VERSION: u8 = V1;
        })*
    };
}

// The types stored as records of their own (one catalog value each); the rest are parts of them.
v1_records!(
    BucketRecord,
    PolicyChange,
    ObjectManifest,
    UploadRecord,
    PartRecord,
    SetRecord,
    RepairRecord,
    DeploymentRecord
);

/// A bucket and its coding policy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BucketRecord {
    /// Creation time, Unix milliseconds.
    pub created_ms: i64,
    /// Policy new objects are written with.
    pub policy: placement::BucketPolicy,
    /// Bumped on every policy change; manifests record the epoch they were written under.
    pub policy_epoch: u64,
    /// New objects are encrypted at rest (absent in records written before encryption).
    #[serde(default)]
    pub encrypted: bool,
    /// Backends new objects may be placed on (absent: all of them).
    #[serde(default, skip_serializing_if = "placement::BackendSelector::is_all")]
    pub backends: placement::BackendSelector,
    /// Redundancy, latency, bandwidth and location the bucket states (absent: none).
    #[serde(default, skip_serializing_if = "is_default")]
    pub intent: placement::BucketIntent,
    /// SHA-256 (hex) of the token agents must present to change the policy automatically;
    /// absent: the bucket refuses automatic changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_token_sha256: Option<String>,
    /// Who made the current epoch's change, when and why (absent for epoch 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed: Option<ChangeInfo>,
    /// Codes and backends of the keys under some prefixes, overriding `policy` and `backends`
    /// for them (the longest matching prefix wins; absent: none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefixes: Vec<PrefixRule>,
}

/// The code and backends of the keys under one prefix of a bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrefixRule {
    /// Keys starting with it (never empty).
    pub prefix: String,
    /// Their code (the block size is the bucket's).
    pub policy: placement::BucketPolicy,
    /// Backends their shards may go to (absent: all of them).
    #[serde(default, skip_serializing_if = "placement::BackendSelector::is_all")]
    pub backends: placement::BackendSelector,
}

impl BucketRecord {
    /// The code and backends of `key`: its longest matching prefix rule's, else the bucket's.
    #[must_use]
    pub fn layout_for(&self, key: &str) -> (placement::BucketPolicy, &placement::BackendSelector) {
        self.rule_for(key)
            .map_or((self.policy, &self.backends), |r| (r.policy, &r.backends))
    }

    /// The prefix rule `key` falls under, if any (the longest matching one).
    #[must_use]
    pub fn rule_for(&self, key: &str) -> Option<&PrefixRule> {
        self.prefixes
            .iter()
            .filter(|r| key.starts_with(r.prefix.as_str()))
            .max_by_key(|r| r.prefix.len())
    }
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// Who changed a bucket policy, when, and the reason they gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeInfo {
    /// When, Unix milliseconds.
    pub at_ms: i64,
    /// Who: an admin's name, an agent's name, or the S3 operation.
    pub by: String,
    /// Made by an agent (with the bucket's update token) rather than a human.
    #[serde(default)]
    pub automatic: bool,
    /// The reason given (agents put their explanation here).
    #[serde(default)]
    pub reason: String,
}

/// One entry of a bucket's policy history: the record before and after a change.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyChange {
    /// The epoch the change started.
    pub epoch: u64,
    /// Who, when, why.
    pub change: ChangeInfo,
    /// The bucket before.
    pub old: BucketRecord,
    /// The bucket after.
    pub new: BucketRecord,
}

/// HTTP headers stored with an object and returned on GET/HEAD.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentHeaders {
    /// Content-Type.
    pub content_type: Option<String>,
    /// Content-Encoding.
    pub content_encoding: Option<String>,
    /// Content-Disposition.
    pub content_disposition: Option<String>,
    /// Content-Language.
    pub content_language: Option<String>,
    /// Cache-Control.
    pub cache_control: Option<String>,
    /// Expires, Unix milliseconds.
    pub expires_ms: Option<i64>,
    /// x-amz-meta-* pairs, keys lower-cased by the HTTP layer.
    pub user_metadata: BTreeMap<String, String>,
}

/// Whole-object checksums (base64, as S3 transmits them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checksums {
    /// CRC32.
    pub crc32: Option<String>,
    /// CRC32C.
    pub crc32c: Option<String>,
    /// SHA-1.
    pub sha1: Option<String>,
    /// SHA-256.
    pub sha256: Option<String>,
    /// CRC64/NVME.
    pub crc64nvme: Option<String>,
}

/// A contiguous run of object bytes coded as one shard set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// Shard set id; shard i lives at `shards/<set>/<i>` on `backends[i]`.
    pub set: Uuid,
    /// Plaintext bytes in this segment.
    pub size: u64,
    /// Data shards.
    pub k: u8,
    /// Parity shards.
    pub m: u8,
    /// Plaintext bytes per block.
    pub block_size: u32,
    /// Backend id holding each shard, in shard order.
    pub backends: Vec<String>,
    /// The wrapped data key when the set is encrypted (absent: plaintext shards).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<SegmentKey>,
    /// The keyed MAC that every shard block carries, with the set's wrapped MAC key. Absent:
    /// shard blocks carry a CRC32C only. That is so for encrypted sets, which GCM tags
    /// authenticate, and for plaintext sets written before keyed integrity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrity: Option<SegmentMac>,
}

/// How the shard blocks of a set are authenticated one by one, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentMac {
    /// The MAC.
    pub alg: MacAlg,
    /// The set's random MAC key, wrapped by a master key and bound to the set id.
    pub key: SegmentKey,
}

/// A MAC of shard blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MacAlg {
    /// Keyed BLAKE3 truncated to 128 bits, over the set id, shard index, block index and the
    /// shard block's payload (`crate::integrity`).
    #[serde(rename = "blake3-128")]
    Blake3Trunc128,
}

/// Which key wraps a set's data key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyWrap {
    /// A master key of the gateway's key ring.
    Master {
        /// Id of the master key.
        key_id: String,
    },
    /// An SSE-C key the client sends with every request; only its MD5 is kept.
    Customer {
        /// Base64 MD5 of the customer key.
        key_md5: String,
    },
}

/// The data key of an encrypted shard set, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentKey {
    /// The wrapping key.
    pub wrapped_by: KeyWrap,
    /// Base64 of nonce ‖ AES-256-GCM(data key) ‖ tag, bound to the set id.
    pub wrapped_key: String,
}

impl Segment {
    /// Geometry of the segment's *stored* stream: what the shards hold and the codec sees.
    ///
    /// For an encrypted set every stored block is its plaintext block plus the GCM tag, so
    /// `decode(&layout, layout.block_len(j), ..)` yields stored block j and `encode` of it
    /// reproduces every shard block of j, with no key involved (the healer relies on this).
    /// A set with keyed integrity has a keyed layout: its shard blocks carry a MAC.
    #[must_use]
    pub fn layout(&self) -> crate::codec::Layout {
        let plain = self.plain_layout();
        match self.encryption {
            None => plain,
            Some(_) => {
                let tag = super::TAG_LEN as u64;
                crate::codec::Layout {
                    block_size: plain.block_size + tag,
                    size: plain.size + tag * plain.blocks(),
                    ..plain
                }
            }
        }
    }

    /// The segment without its wrapped data key: what set records keep for the healer and
    /// scrubber. The key stays only in the manifest, so key rotation rewraps every copy there
    /// is and a retired master key unwraps nothing. The wrapped MAC key stays: the healer and
    /// scrubber verify and write MACs (key rotation rewraps set records too).
    #[must_use]
    pub fn without_key(&self) -> Self {
        let mut s = self.clone();
        if let Some(k) = &mut s.encryption {
            k.wrapped_key.clear();
        }
        s
    }

    /// Geometry of the plaintext: which object bytes each block holds.
    #[must_use]
    pub fn plain_layout(&self) -> crate::codec::Layout {
        crate::codec::Layout {
            k: usize::from(self.k),
            m: usize::from(self.m),
            block_size: u64::from(self.block_size),
            size: self.size,
            keyed: self.integrity.is_some(),
        }
    }

    /// The SSE-C key MD5 when the set is encrypted with a customer key.
    #[must_use]
    pub fn customer_key_md5(&self) -> Option<&str> {
        match &self.encryption {
            Some(SegmentKey {
                wrapped_by: KeyWrap::Customer { key_md5 },
                ..
            }) => Some(key_md5),
            _ => None,
        }
    }
}

/// Everything known about one object version: what to return and where its shards are.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectManifest {
    /// Unique per write; compare-and-swap token for background rewrites.
    pub version_id: Uuid,
    /// Size in bytes.
    pub size: u64,
    /// ETag without quotes: MD5 hex, or MD5-of-part-MD5s `-N` for multipart.
    pub etag: String,
    /// Last-Modified, Unix milliseconds.
    pub last_modified_ms: i64,
    /// Content headers and user metadata.
    pub headers: ContentHeaders,
    /// Whole-object checksums supplied or computed at upload.
    pub checksums: Checksums,
    /// Number of parts for multipart objects.
    pub parts_count: Option<u32>,
    /// Bucket policy epoch the object was written under.
    pub policy_epoch: u64,
    /// The object's bytes, in order.
    pub segments: Vec<Segment>,
}

/// Lifecycle state of a shard set: every set on a backend has one, or it is an orphan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetState {
    /// Being written; if the process dies, the startup sweep deletes it.
    Pending,
    /// Referenced by an object manifest or a multipart part.
    Live,
    /// Unreferenced; its shards are being deleted.
    Deleting,
}

/// Record of a shard set.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetRecord {
    /// State.
    pub state: SetState,
    /// Backend id of each shard, in shard order.
    pub backends: Vec<String>,
    /// The segment, once Live: what the healer and scrubber need to rebuild or verify shards
    /// without finding the manifest that names the set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<Segment>,
    /// The record naming the set once Live, so a shard moved to another backend can be
    /// recorded there too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<SetOwner>,
    /// Shards being moved between backends without re-encoding (by the migrator): until the
    /// move is finished, the copy on whichever side the set no longer names is garbage for
    /// the reaper and the startup sweep to delete.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub moves: Vec<ShardMove>,
}

/// Shard `idx` of a set being moved from backend `from` to backend `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMove {
    /// Shard index.
    pub idx: usize,
    /// Backend it was on.
    pub from: String,
    /// Backend it is copied to.
    pub to: String,
}

impl SetRecord {
    /// Every (backend, shard index) that may hold a file of this set: the named backends and
    /// both sides of unfinished moves.
    #[must_use]
    pub fn all_locations(&self) -> Vec<(String, usize)> {
        let mut out: Vec<(String, usize)> = self.backends.iter().cloned().enumerate().map(|(i, b)| (b, i)).collect();
        for mv in &self.moves {
            for b in [&mv.from, &mv.to] {
                if !out.iter().any(|(ob, oi)| ob == b && *oi == mv.idx) {
                    out.push((b.clone(), mv.idx));
                }
            }
        }
        out
    }
}

/// The record whose segment list names a shard set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SetOwner {
    /// An object's manifest.
    Object {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
    },
    /// A part of a multipart upload in progress.
    Part {
        /// Upload id.
        upload_id: String,
        /// Part number.
        part_number: u32,
    },
}

/// An in-progress multipart upload, as version 1 stored it (current: [`super::v2::UploadRecord`],
/// which also keeps an SSE-S3 request).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadRecord {
    /// Upload id handed to the client.
    pub upload_id: String,
    /// Initiation time, Unix milliseconds.
    pub created_ms: i64,
    /// Headers the completed object will carry.
    pub headers: ContentHeaders,
    /// Checksum algorithm the client announced, if any.
    pub checksum_algorithm: Option<String>,
    /// SSE-C key MD5 every part must be uploaded with, when the upload uses SSE-C.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sse_customer_key_md5: Option<String>,
}

/// One uploaded part of a multipart upload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartRecord {
    /// Part number, 1..=10000.
    pub part_number: u32,
    /// MD5 hex of the part.
    pub etag: String,
    /// Upload time, Unix milliseconds.
    pub last_modified_ms: i64,
    /// The part's bytes as a segment.
    pub segment: Segment,
    /// Checksums of the part.
    pub checksums: Checksums,
}

/// A shard known to need repair.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepairRecord {
    /// Backend id that should hold the shard.
    pub backend: String,
    /// Why it needs repair.
    pub reason: String,
    /// When it was noticed, Unix milliseconds.
    pub noticed_ms: i64,
    /// Set by the healer when too few shards were left to rebuild it: the data is unreadable
    /// until a backend comes back.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unrecoverable: bool,
}

/// Who this metadata belongs to: written once when a deployment first starts, so that a
/// restored backup keeps its id; its start count goes up on every start (the owner markers on
/// the backends carry the count of the start that wrote them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentRecord {
    /// The deployment id, written into every backend's owner marker.
    pub id: Uuid,
    /// When the deployment first started, Unix milliseconds.
    pub created_ms: i64,
    /// How many times it started (the last start's number).
    pub starts: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_record_bytes_are_pinned() {
        let rec = DeploymentRecord {
            id: Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
            created_ms: 1_700_000_000_000,
            starts: 3,
        };
        let bytes = crate::records::encode(&rec);
        let want = b"\x01{\"id\":\"01234567-89ab-cdef-0123-456789abcdef\",\"created_ms\":1700000000000,\"starts\":3}";
        assert_eq!(bytes, want);
        let back: DeploymentRecord = crate::records::decode(|| "deployment".into(), want).unwrap();
        assert_eq!(back, rec);
    }

    fn segment(size: u64, encryption: Option<SegmentKey>) -> Segment {
        Segment {
            set: Uuid::now_v7(),
            size,
            k: 4,
            m: 2,
            block_size: 4096,
            backends: vec!["a".into(); 6],
            encryption,
            integrity: None,
        }
    }

    #[test]
    fn stored_layout_adds_a_tag_per_block() {
        let key = SegmentKey {
            wrapped_by: KeyWrap::Master { key_id: "mk".into() },
            wrapped_key: String::new(),
        };
        let plain = segment(4096 * 2 + 10, None);
        assert_eq!(plain.layout(), plain.plain_layout());
        let enc = segment(4096 * 2 + 10, Some(key));
        let l = enc.layout();
        assert_eq!(l.block_size, 4096 + 16);
        assert_eq!(l.blocks(), 3);
        assert_eq!(l.block_len(0), 4096 + 16);
        assert_eq!(l.block_len(2), 10 + 16);
        assert_eq!(segment(0, enc.encryption.clone()).layout().size, 0);
    }
}

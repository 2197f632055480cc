//! Encryption at rest: per-shard-set data keys, AES-256-GCM block sealing, key wrapping.
//!
//! Every encrypted shard set (one PUT, one multipart part) gets its own random 256-bit data
//! key. Block j of the set is sealed under that key with the nonce `0u32 ‖ j (u64 BE)`: the
//! key is never reused across sets, so a counter nonce is unique without any state. The set
//! id and block index are bound as associated data, so a block moved to another position or
//! another set fails authentication instead of decrypting into the wrong place.
//!
//! The sealed block (ciphertext ‖ 16-byte tag) is what the erasure codec sees, so shards hold
//! no plaintext and the healer can rebuild shards without any key.
//!
//! The data key is stored in the manifest segment, wrapped (AES-256-GCM, random nonce) either
//! by a master key ([`keys::KeyRing`], rotatable without touching data) or by an SSE-C
//! customer key, of which only the MD5 is kept.
//!
//! Plaintext sets get a random MAC key instead ([`new_set_mac`]), which keys the MAC in every
//! shard block ([`crate::integrity`]). A master key wraps it the same way, under its own
//! associated data, so a wrapped MAC key can never pass for a data key, nor the reverse.

pub mod keys;
pub mod rotate;

use crate::error::{Error, Result};
use crate::integrity::ShardMac;
use crate::records::{KeyWrap, MacAlg, SegmentKey, SegmentMac};
use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use std::sync::Arc;
use uuid::Uuid;

pub use keys::{KeyRing, MasterKey};

/// Bytes a sealed block is longer than its plaintext (the GCM tag); the stored format fixes it.
pub use crate::records::TAG_LEN;

/// Length of every key used here (AES-256).
pub const KEY_LEN: usize = 32;

/// Domain separation of the associated data: a block and a wrapped key can never be
/// confused, and a later format can change either without ambiguity.
const BLOCK_AAD_TAG: &[u8; 8] = b"mls-blk1";
const WRAP_AAD_TAG: &[u8; 8] = b"mls-wrp1";
const MAC_WRAP_AAD_TAG: &[u8; 8] = b"mls-mwr1";

/// 32 secret bytes; Debug never shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub(crate) [u8; KEY_LEN]);

impl Secret {
    /// A fresh random key from the OS generator.
    pub fn random() -> Result<Self> {
        let mut k = [0u8; KEY_LEN];
        SystemRandom::new()
            .fill(&mut k)
            .map_err(|_| Error::Crypto("the system random generator failed".into()))?;
        Ok(Self(k))
    }

    /// The key from its base64 text; `what` names it in the error.
    pub fn from_base64(what: &str, text: &str) -> Result<Self> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| Error::Config(format!("{what}: not valid base64: {e}")))?;
        let k: [u8; KEY_LEN] = raw
            .try_into()
            .map_err(|v: Vec<u8>| Error::Config(format!("{what}: must be {KEY_LEN} bytes, got {}", v.len())))?;
        Ok(Self(k))
    }

    /// Base64 text of the key (for the key file only).
    #[must_use]
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    fn aead(&self) -> LessSafeKey {
        // AES-256-GCM accepts any 32-byte key; the length is fixed by the type.
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &self.0).expect("32-byte AES-256 key"))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// An SSE-C key as sent by a client: the key itself and its MD5 (base64).
#[derive(Clone, Debug)]
pub struct CustomerKey {
    /// The 256-bit key; used for wrapping only, never stored.
    pub key: Secret,
    /// Base64 MD5 of the key: stored to recognise the key, echoed in responses.
    pub key_md5: String,
}

impl CustomerKey {
    /// Builds a key from the three SSE-C headers' values (algorithm, base64 key, base64 MD5),
    /// checking each; the error is the S3 message to send (400 InvalidArgument).
    pub fn from_headers(algorithm: &str, key_b64: &str, md5_b64: &str) -> std::result::Result<Self, String> {
        use md5::Digest;
        if algorithm != "AES256" {
            return Err(format!(
                "x-amz-server-side-encryption-customer-algorithm must be AES256, got {algorithm:?}"
            ));
        }
        let b64 = base64::engine::general_purpose::STANDARD;
        let raw = b64
            .decode(key_b64.trim())
            .map_err(|_| "x-amz-server-side-encryption-customer-key is not valid base64".to_owned())?;
        let key: [u8; KEY_LEN] = raw.try_into().map_err(|v: Vec<u8>| {
            format!(
                "x-amz-server-side-encryption-customer-key must be 256 bits, got {} bits",
                v.len() * 8
            )
        })?;
        let md5 = b64.encode(md5::Md5::digest(key));
        if md5_b64.trim() != md5 {
            return Err(
                "x-amz-server-side-encryption-customer-key-MD5 does not match the MD5 of the customer key".into(),
            );
        }
        Ok(Self {
            key: Secret(key),
            key_md5: md5,
        })
    }
}

/// Whether new buckets encrypt at rest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EncryptionMode {
    /// On when any backend is not a local directory (data leaves the machine).
    #[default]
    Auto,
    /// Always on.
    On,
    /// Always off.
    Off,
}

impl std::str::FromStr for EncryptionMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "on" | "true" => Ok(Self::On),
            "off" | "false" => Ok(Self::Off),
            other => Err(Error::Config(format!(
                "encryption must be auto, on or off, got {other:?}"
            ))),
        }
    }
}

impl EncryptionMode {
    /// Whether new buckets encrypt, given whether any configured backend is remote (shard
    /// bytes leave the machine).
    #[must_use]
    pub fn resolve(self, any_backend_remote: bool) -> bool {
        match self {
            Self::On => true,
            Self::Off => false,
            Self::Auto => any_backend_remote,
        }
    }
}

/// How a new shard set is to be stored.
#[derive(Clone, Debug, Default)]
pub enum Encryption {
    /// Plaintext shards (buckets with encryption off).
    #[default]
    None,
    /// A data key wrapped by the active master key.
    Master(Arc<KeyRing>),
    /// A data key wrapped by the client's SSE-C key.
    Customer(CustomerKey),
}

/// The key that seals and opens the blocks of one shard set.
#[derive(Clone)]
pub struct SetCipher {
    set: Uuid,
    key: Arc<LessSafeKey>,
}

impl std::fmt::Debug for SetCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetCipher")
            .field("set", &self.set)
            .finish_non_exhaustive()
    }
}

fn block_nonce(j: u64) -> Nonce {
    let mut n = [0u8; NONCE_LEN];
    n[4..].copy_from_slice(&j.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

fn block_aad(set: Uuid, j: u64) -> [u8; 32] {
    let mut a = [0u8; 32];
    a[..8].copy_from_slice(BLOCK_AAD_TAG);
    a[8..24].copy_from_slice(set.as_bytes());
    a[24..].copy_from_slice(&j.to_be_bytes());
    a
}

impl SetCipher {
    /// A cipher for the blocks of `set` under data key `key`.
    #[must_use]
    pub fn new(set: Uuid, key: &Secret) -> Self {
        Self {
            set,
            key: Arc::new(key.aead()),
        }
    }

    /// Seals plaintext block `j` in place: `buf` grows by [`TAG_LEN`].
    pub fn seal(&self, j: u64, buf: &mut Vec<u8>) -> Result<()> {
        let tag = self
            .key
            .seal_in_place_separate_tag(block_nonce(j), Aad::from(block_aad(self.set, j)), buf)
            .map_err(|_| Error::Crypto(format!("sealing block {j} of shard set {}", self.set)))?;
        buf.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Opens stored block `j` (ciphertext ‖ tag) into its plaintext, or fails if it was
    /// altered, moved, or sealed under another key.
    pub fn open(&self, j: u64, stored: &[u8]) -> Result<bytes::Bytes> {
        let mut buf = stored.to_vec();
        let len = self
            .key
            .open_in_place(block_nonce(j), Aad::from(block_aad(self.set, j)), &mut buf)
            .map_err(|_| {
                Error::Crypto(format!(
                    "block {j} of shard set {} failed authentication (altered shards or wrong data key)",
                    self.set
                ))
            })?
            .len();
        buf.truncate(len);
        Ok(bytes::Bytes::from(buf))
    }
}

/// What a wrapped key is: the associated data of its wrapping says so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyKind {
    /// A set's data key (AES-256-GCM of its blocks).
    Data,
    /// A set's MAC key (the keyed MAC of its shard blocks).
    Mac,
}

fn wrap_aad(kind: KeyKind, set: Uuid) -> [u8; 24] {
    let mut a = [0u8; 24];
    a[..8].copy_from_slice(match kind {
        KeyKind::Data => WRAP_AAD_TAG,
        KeyKind::Mac => MAC_WRAP_AAD_TAG,
    });
    a[8..].copy_from_slice(set.as_bytes());
    a
}

/// Wraps `data_key` of `set` under `kek`: base64 of nonce ‖ ciphertext ‖ tag.
fn wrap(kek: &Secret, set: Uuid, data_key: &Secret) -> Result<String> {
    wrap_as(KeyKind::Data, kek, set, data_key)
}

/// Wraps `key` of `set`, of kind `kind`, under `kek`: base64 of nonce ‖ ciphertext ‖ tag.
fn wrap_as(kind: KeyKind, kek: &Secret, set: Uuid, key: &Secret) -> Result<String> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| Error::Crypto("the system random generator failed".into()))?;
    let mut buf = key.0.to_vec();
    let tag = kek
        .aead()
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(wrap_aad(kind, set)),
            &mut buf,
        )
        .map_err(|_| Error::Crypto(format!("wrapping the {} key of shard set {set}", kind.name())))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&buf);
    out.extend_from_slice(tag.as_ref());
    Ok(base64::engine::general_purpose::STANDARD.encode(out))
}

impl KeyKind {
    fn name(self) -> &'static str {
        match self {
            Self::Data => "data",
            Self::Mac => "MAC",
        }
    }
}

/// Unwraps a data key of `set`; `None` when `kek` is not the key that wrapped it.
fn unwrap(kek: &Secret, set: Uuid, wrapped: &str) -> Result<Option<Secret>> {
    unwrap_as(KeyKind::Data, kek, set, wrapped)
}

/// Unwraps a key of kind `kind` of `set`; `None` when `kek` is not the key that wrapped it
/// (or it was wrapped as another kind).
fn unwrap_as(kind: KeyKind, kek: &Secret, set: Uuid, wrapped: &str) -> Result<Option<Secret>> {
    let what = kind.name();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(wrapped)
        .map_err(|e| Error::Crypto(format!("wrapped {what} key of shard set {set} is not base64: {e}")))?;
    if raw.len() != NONCE_LEN + KEY_LEN + TAG_LEN {
        return Err(Error::Crypto(format!(
            "wrapped {what} key of shard set {set} has {} bytes, expected {}",
            raw.len(),
            NONCE_LEN + KEY_LEN + TAG_LEN
        )));
    }
    let nonce: [u8; NONCE_LEN] = raw[..NONCE_LEN].try_into().expect("length checked");
    let mut buf = raw[NONCE_LEN..].to_vec();
    let Ok(plain) = kek.aead().open_in_place(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(wrap_aad(kind, set)),
        &mut buf,
    ) else {
        return Ok(None);
    };
    let k: [u8; KEY_LEN] = plain[..].try_into().expect("length checked");
    Ok(Some(Secret(k)))
}

/// A fresh data key for `set`, wrapped as `enc` asks; `None` for plaintext sets.
pub fn new_set_key(enc: &Encryption, set: Uuid) -> Result<Option<(SetCipher, SegmentKey)>> {
    let (kek, wrapped_by) = match enc {
        Encryption::None => return Ok(None),
        Encryption::Master(ring) => {
            let active = ring.active()?;
            (
                &active.key,
                KeyWrap::Master {
                    key_id: active.id.clone(),
                },
            )
        }
        Encryption::Customer(c) => (
            &c.key,
            KeyWrap::Customer {
                key_md5: c.key_md5.clone(),
            },
        ),
    };
    let data_key = Secret::random()?;
    let record = SegmentKey {
        wrapped_by,
        wrapped_key: wrap(kek, set, &data_key)?,
    };
    Ok(Some((SetCipher::new(set, &data_key), record)))
}

/// The cipher of an encrypted set, unwrapping its data key with the master key ring or the
/// customer key the request carried.
pub fn open_set_key(
    set: Uuid,
    record: &SegmentKey,
    ring: &KeyRing,
    customer: Option<&CustomerKey>,
) -> Result<SetCipher> {
    let (kek, whose) = match &record.wrapped_by {
        KeyWrap::Master { key_id } => {
            let mk = ring.get(key_id).ok_or_else(|| {
                Error::Crypto(format!(
                    "shard set {set}: its data key is wrapped by master key {key_id:?}, which is not in the key ring ({})",
                    ring.describe()
                ))
            })?;
            (&mk.key, format!("master key {key_id:?}"))
        }
        KeyWrap::Customer { key_md5 } => {
            let c = customer.ok_or_else(|| {
                Error::CustomerKey(format!(
                    "shard set {set} is encrypted with a customer-provided key; the request carries none"
                ))
            })?;
            if &c.key_md5 != key_md5 {
                return Err(Error::AccessDenied(
                    "the customer-provided key does not match the key the object was stored with".into(),
                ));
            }
            (&c.key, "the customer-provided key".to_owned())
        }
    };
    match unwrap(kek, set, &record.wrapped_key)? {
        Some(dk) => Ok(SetCipher::new(set, &dk)),
        None => Err(match record.wrapped_by {
            KeyWrap::Master { .. } => Error::Crypto(format!(
                "shard set {set}: its data key does not unwrap under {whose}: the master key file holds a different key under that id"
            )),
            KeyWrap::Customer { .. } => {
                Error::AccessDenied("the customer-provided key does not unwrap the object's data key".into())
            }
        }),
    }
}

/// Rewraps a master-wrapped data key of `set` from key `old` to key `new`.
pub fn rewrap(set: Uuid, record: &SegmentKey, old: &MasterKey, new: &MasterKey) -> Result<SegmentKey> {
    rewrap_as(KeyKind::Data, set, record, old, new)
}

/// Rewraps the MAC key of `set` from master key `old` to master key `new`.
pub fn rewrap_mac(set: Uuid, record: &SegmentMac, old: &MasterKey, new: &MasterKey) -> Result<SegmentMac> {
    Ok(SegmentMac {
        alg: record.alg,
        key: rewrap_as(KeyKind::Mac, set, &record.key, old, new)?,
    })
}

fn rewrap_as(kind: KeyKind, set: Uuid, record: &SegmentKey, old: &MasterKey, new: &MasterKey) -> Result<SegmentKey> {
    let key = unwrap_as(kind, &old.key, set, &record.wrapped_key)?.ok_or_else(|| {
        Error::Crypto(format!(
            "shard set {set}: its {} key does not unwrap under master key {:?}",
            kind.name(),
            old.id
        ))
    })?;
    Ok(SegmentKey {
        wrapped_by: KeyWrap::Master { key_id: new.id.clone() },
        wrapped_key: wrap_as(kind, &new.key, set, &key)?,
    })
}

/// A fresh MAC key for the shard blocks of plaintext set `set`, wrapped by the ring's active
/// master key; `None` when the ring has no key (an engine that never encrypts, as in tests):
/// such a set is written with CRC32C-only shard blocks.
pub fn new_set_mac(ring: &KeyRing, set: Uuid) -> Result<Option<(ShardMac, SegmentMac)>> {
    let Ok(active) = ring.active() else {
        return Ok(None);
    };
    let key = Secret::random()?;
    let record = SegmentMac {
        alg: MacAlg::Blake3Trunc128,
        key: SegmentKey {
            wrapped_by: KeyWrap::Master {
                key_id: active.id.clone(),
            },
            wrapped_key: wrap_as(KeyKind::Mac, &active.key, set, &key)?,
        },
    };
    Ok(Some((ShardMac::new(set, &key.0), record)))
}

/// The MAC key of the shard blocks of `set`, unwrapped with the master key ring.
pub fn open_set_mac(set: Uuid, record: &SegmentMac, ring: &KeyRing) -> Result<ShardMac> {
    let MacAlg::Blake3Trunc128 = record.alg;
    let KeyWrap::Master { key_id } = &record.key.wrapped_by else {
        return Err(Error::Crypto(format!(
            "shard set {set}: its MAC key is wrapped by a customer key; only master keys wrap MAC keys"
        )));
    };
    let mk = ring.get(key_id).ok_or_else(|| {
        Error::Crypto(format!(
            "shard set {set}: its MAC key is wrapped by master key {key_id:?}, which is not in the key ring ({})",
            ring.describe()
        ))
    })?;
    match unwrap_as(KeyKind::Mac, &mk.key, set, &record.key.wrapped_key)? {
        Some(key) => Ok(ShardMac::new(set, &key.0)),
        None => Err(Error::Crypto(format!(
            "shard set {set}: its MAC key does not unwrap under master key {key_id:?}: the master key file holds a different key under that id"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cipher() -> (Uuid, Secret, SetCipher) {
        let set = Uuid::now_v7();
        let key = Secret::random().unwrap();
        let c = SetCipher::new(set, &key);
        (set, key, c)
    }

    #[test]
    fn blocks_round_trip_and_grow_by_the_tag() {
        let (_, _, c) = cipher();
        for len in [0usize, 1, 15, 16, 17, 4096] {
            let plain: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut buf = plain.clone();
            c.seal(7, &mut buf).unwrap();
            assert_eq!(buf.len(), len + TAG_LEN);
            if len >= 16 {
                assert_ne!(&buf[..len], &plain[..], "ciphertext equals plaintext");
            }
            assert_eq!(&c.open(7, &buf).unwrap()[..], &plain[..]);
        }
    }

    #[test]
    fn nonces_are_unique_per_block_and_keys_per_set() {
        // Same plaintext at two block indices, and in two sets: every ciphertext differs,
        // which it would not if a (key, nonce) pair repeated.
        let plain = vec![0x5au8; 256];
        let (_, _, a) = cipher();
        let (_, _, b) = cipher();
        let mut seen = std::collections::HashSet::new();
        for c in [&a, &b] {
            for j in 0..64u64 {
                let mut buf = plain.clone();
                c.seal(j, &mut buf).unwrap();
                assert!(seen.insert(buf), "ciphertext repeated at block {j}");
            }
        }
        let nonces: std::collections::HashSet<[u8; NONCE_LEN]> = (0..1000u64)
            .map(|j| {
                let mut n = [0u8; NONCE_LEN];
                n[4..].copy_from_slice(&j.to_be_bytes());
                n
            })
            .collect();
        assert_eq!(nonces.len(), 1000);
    }

    #[test]
    fn tampering_is_detected() {
        let (_, _, c) = cipher();
        let mut buf = b"attack at dawn, bring the shards".to_vec();
        c.seal(0, &mut buf).unwrap();
        for i in [0, 5, buf.len() - 1] {
            let mut bad = buf.clone();
            bad[i] ^= 0x01;
            assert!(c.open(0, &bad).is_err(), "flip at {i} not detected");
        }
        assert!(c.open(0, &buf[..buf.len() - 1]).is_err(), "truncation not detected");
    }

    #[test]
    fn blocks_are_bound_to_their_index_and_set() {
        let (set, key, c) = cipher();
        let mut buf = vec![1u8; 100];
        c.seal(3, &mut buf).unwrap();
        assert!(c.open(4, &buf).is_err(), "block moved to another index decrypted");
        // Same key, another set id: only the associated data differs.
        let other = SetCipher::new(Uuid::now_v7(), &key);
        assert!(other.open(3, &buf).is_err(), "block moved to another set decrypted");
        assert!(SetCipher::new(set, &key).open(3, &buf).is_ok());
        let (_, _, stranger) = cipher();
        assert!(stranger.open(3, &buf).is_err(), "opened under another key");
    }

    #[test]
    fn wrapped_keys_unwrap_only_with_their_key_and_set() {
        let kek = Secret::random().unwrap();
        let set = Uuid::now_v7();
        let dk = Secret::random().unwrap();
        let w = wrap(&kek, set, &dk).unwrap();
        assert!(!w.contains(&dk.to_base64()));
        assert_eq!(unwrap(&kek, set, &w).unwrap(), Some(dk));
        assert_eq!(unwrap(&Secret::random().unwrap(), set, &w).unwrap(), None);
        assert_eq!(unwrap(&kek, Uuid::now_v7(), &w).unwrap(), None);
        assert!(unwrap(&kek, set, "not base64!").is_err());
        assert!(unwrap(&kek, set, "AAAA").is_err());
    }

    #[test]
    fn sealed_blocks_heal_without_the_key() {
        // The healer's invariant: with the segment's (stored) layout, decoding yields the
        // stored block and re-encoding it reproduces every shard block, no key involved.
        use crate::codec::{verify_shard_block, Codec};
        use crate::records::{KeyWrap, Segment, SegmentKey};
        let (set, _, c) = cipher();
        let seg = Segment {
            set,
            size: 4096 + 1000,
            k: 4,
            m: 2,
            block_size: 4096,
            backends: vec!["b".into(); 6],
            encryption: Some(SegmentKey {
                wrapped_by: KeyWrap::Master { key_id: "mk".into() },
                wrapped_key: String::new(),
            }),
            integrity: None,
        };
        let layout = seg.layout();
        let mut codec = Codec::new(4, 2).unwrap();
        for j in 0..layout.blocks() {
            let plain_len = seg.plain_layout().block_len(j) as usize;
            let mut sealed = vec![j as u8; plain_len];
            c.seal(j, &mut sealed).unwrap();
            assert_eq!(sealed.len() as u64, layout.block_len(j));
            let shards = codec.encode(&layout, j, &sealed, None).unwrap();
            for s in &shards {
                assert_eq!(s.len() as u64, layout.stored_len(j));
            }
            let mut got: Vec<Option<bytes::Bytes>> = shards.iter().map(verify_shard_block).collect();
            got[0] = None;
            got[3] = None;
            let stored = codec.decode(&layout, layout.block_len(j) as usize, &got).unwrap();
            assert_eq!(&stored[..], &sealed[..]);
            assert_eq!(codec.encode(&layout, j, &stored, None).unwrap(), shards);
            assert_eq!(&c.open(j, &stored).unwrap()[..], &vec![j as u8; plain_len][..]);
        }
    }

    #[test]
    fn auto_encrypts_when_any_backend_is_remote() {
        assert!(!EncryptionMode::Auto.resolve(false));
        assert!(EncryptionMode::Auto.resolve(true));
        assert!(EncryptionMode::On.resolve(false));
        assert!(!EncryptionMode::Off.resolve(true));
        assert_eq!(
            TAG_LEN,
            AES_256_GCM.tag_len(),
            "the stored format's tag length is GCM's"
        );
        assert_eq!("ON".parse::<EncryptionMode>().unwrap(), EncryptionMode::On);
        assert!("maybe".parse::<EncryptionMode>().is_err());
    }

    #[test]
    fn customer_keys_are_checked() {
        use md5::Digest;
        let b64 = base64::engine::general_purpose::STANDARD;
        let key = [7u8; 32];
        let md5 = b64.encode(md5::Md5::digest(key));
        let c = CustomerKey::from_headers("AES256", &b64.encode(key), &md5).unwrap();
        assert_eq!(c.key_md5, md5);
        assert!(CustomerKey::from_headers("aws:kms", &b64.encode(key), &md5).is_err());
        assert!(CustomerKey::from_headers("AES256", &b64.encode([7u8; 16]), &md5).is_err());
        assert!(CustomerKey::from_headers("AES256", &b64.encode([8u8; 32]), &md5).is_err());
        assert!(!format!("{c:?}").contains(&b64.encode(key)));
    }

    #[test]
    fn set_keys_wrap_under_the_master_or_customer_key() {
        let ring = Arc::new(KeyRing::ephemeral_for_tests());
        let set = Uuid::now_v7();
        let (c, rec) = new_set_key(&Encryption::Master(ring.clone()), set).unwrap().unwrap();
        let mut buf = vec![3u8; 50];
        c.seal(0, &mut buf).unwrap();
        let back = open_set_key(set, &rec, &ring, None).unwrap();
        assert_eq!(&back.open(0, &buf).unwrap()[..], &[3u8; 50]);
        assert!(new_set_key(&Encryption::None, set).unwrap().is_none());

        let b64 = base64::engine::general_purpose::STANDARD;
        let ck = |k: [u8; 32]| {
            use md5::Digest;
            CustomerKey::from_headers("AES256", &b64.encode(k), &b64.encode(md5::Md5::digest(k))).unwrap()
        };
        let (_, rec) = new_set_key(&Encryption::Customer(ck([1; 32])), set).unwrap().unwrap();
        assert!(open_set_key(set, &rec, &ring, Some(&ck([1; 32]))).is_ok());
        assert!(matches!(
            open_set_key(set, &rec, &ring, Some(&ck([2; 32]))),
            Err(Error::AccessDenied(_))
        ));
        assert!(matches!(
            open_set_key(set, &rec, &ring, None),
            Err(Error::CustomerKey(_))
        ));
    }

    #[test]
    fn mac_keys_wrap_under_the_master_key_and_never_pass_for_data_keys() {
        let ring = KeyRing::ephemeral_for_tests();
        let set = Uuid::now_v7();
        let (mac, rec) = new_set_mac(&ring, set).unwrap().unwrap();
        let tag = mac.tag(1, 2, b"payload");
        let back = open_set_mac(set, &rec, &ring).unwrap();
        assert!(back.verify(1, 2, b"payload", &tag));
        // Bound to its set, and to being a MAC key.
        assert!(open_set_mac(Uuid::now_v7(), &rec, &ring).is_err());
        let mk = ring.active().unwrap();
        assert_eq!(
            unwrap(&mk.key, set, &rec.key.wrapped_key).unwrap(),
            None,
            "a MAC key unwrapped as a data key"
        );
        let (_, data) = new_set_key(&Encryption::Master(Arc::new(ring.clone())), set)
            .unwrap()
            .unwrap();
        let posing = SegmentMac {
            alg: MacAlg::Blake3Trunc128,
            key: data,
        };
        assert!(
            open_set_mac(set, &posing, &ring).is_err(),
            "a data key unwrapped as a MAC key"
        );
        // Another ring (a lost key file replaced) opens nothing.
        assert!(open_set_mac(set, &rec, &KeyRing::ephemeral_for_tests()).is_err());
        assert!(new_set_mac(&KeyRing::empty(), set).unwrap().is_none());
        // Rotation rewraps it; the MAC key itself is unchanged.
        let new = MasterKey::generate().unwrap();
        let moved = rewrap_mac(set, &rec, mk, &new).unwrap();
        assert_eq!(moved.key.wrapped_by, KeyWrap::Master { key_id: new.id.clone() });
        let key = unwrap_as(KeyKind::Mac, &new.key, set, &moved.key.wrapped_key)
            .unwrap()
            .unwrap();
        assert!(ShardMac::new(set, &key.0).verify(1, 2, b"payload", &tag));
    }
}

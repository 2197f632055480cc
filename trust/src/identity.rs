//! Ed25519 identities of agents and gateway nodes: each holds a key pair created on first start
//! (PKCS#8, mode 0600); the registry [`Identities`] knows every enrolled public key, enrolled by
//! an operator or on first use, and refuses unknown, revoked or mismatched keys.
//! [`ReplayGuard`] refuses old and repeated messages; [`signed_bytes`] frames what is signed.

use crate::files::{self, FileError};
use crate::subject::{validate_id, SubjectError};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use control_api::trust::{EnrolledBy, IdentityKind, IdentityView, Revocation};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair as _, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Most identities the registry holds: trust on first use must not let anyone grow it forever.
pub const MAX_IDENTITIES: usize = 10_000;
/// Most (signer, nonce) pairs the replay guard remembers.
pub const MAX_NONCES: usize = 100_000;
/// Version of the registry's file.
const REGISTRY_VERSION: u32 = 1;

/// An identity that could not be loaded, enrolled or changed.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The key or registry file could not be read or written (or is open to group/others).
    #[error(transparent)]
    File(#[from] FileError),
    /// The key file is not an Ed25519 PKCS#8 document.
    #[error("{path} is not an Ed25519 PKCS#8 key: {reason}")]
    BadKeyFile {
        /// The file.
        path: PathBuf,
        /// What ring said.
        reason: String,
    },
    /// The registry file does not parse.
    #[error("identity registry {path}: {reason}")]
    BadRegistry {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A public key that is not 32 bytes of base64.
    #[error("bad public key: {0}")]
    BadPublicKey(String),
    /// A bad id.
    #[error(transparent)]
    Id(#[from] SubjectError),
    /// The id is enrolled with another key (or kind); revoke it or enrol with `replace`.
    #[error("identity {id} is enrolled with a different {what}: enrol it with \"replace\": true to change it")]
    KeyMismatch {
        /// The id.
        id: String,
        /// `key` or `kind`.
        what: &'static str,
    },
    /// The id was revoked.
    #[error("identity {0} is revoked")]
    Revoked(String),
    /// No such id.
    #[error("no identity {0}")]
    NotFound(String),
    /// The registry holds [`MAX_IDENTITIES`] already.
    #[error("the identity registry is full ({MAX_IDENTITIES} identities): cannot enrol {0}")]
    Full(String),
}

/// Why a signed message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The signer is not enrolled.
    #[error("unknown signer {0}")]
    Unknown(String),
    /// The signer's identity was revoked.
    #[error("signer {0} is revoked")]
    Revoked(String),
    /// The signature does not match the signer's key.
    #[error("bad signature from {0}")]
    BadSignature(String),
    /// The timestamp is too far in the past or the future.
    #[error(
        "stale message from {signer}: timestamp {timestamp_ms} ms is more than {max_age_ms} ms from now ({now_ms})"
    )]
    Stale {
        /// The signer.
        signer: String,
        /// The message's timestamp.
        timestamp_ms: u64,
        /// The clock when checked.
        now_ms: u64,
        /// The tolerance.
        max_age_ms: u64,
    },
    /// This (signer, nonce) was seen already.
    #[error("replayed message from {0}")]
    Replayed(String),
    /// The guard remembers [`MAX_NONCES`] recent nonces and cannot take another until they age.
    #[error("too many recent messages to check for replay; refused message from {0}")]
    Full(String),
}

/// An Ed25519 public key (serialized as base64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// Whether `signature` is this key's signature of `message`.
    #[must_use]
    pub fn verifies(&self, message: &[u8], signature: &Signature) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(message, &signature.0)
            .is_ok()
    }

    /// Base64 (standard alphabet, padded).
    #[must_use]
    pub fn to_base64(&self) -> String {
        B64.encode(self.0)
    }

    /// Parses base64 of 32 bytes.
    pub fn from_base64(s: &str) -> Result<Self, IdentityError> {
        let bytes = B64
            .decode(s.trim())
            .map_err(|e| IdentityError::BadPublicKey(format!("not base64: {e}")))?;
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| IdentityError::BadPublicKey(format!("{} bytes, expected 32", b.len())))?;
        Ok(Self(arr))
    }
}

/// An Ed25519 signature (serialized as base64).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

impl Signature {
    /// Base64 (standard alphabet, padded).
    #[must_use]
    pub fn to_base64(&self) -> String {
        B64.encode(self.0)
    }

    /// Parses base64 of 64 bytes.
    pub fn from_base64(s: &str) -> Result<Self, String> {
        let bytes = B64
            .decode(s.trim())
            .map_err(|e| format!("signature is not base64: {e}"))?;
        let arr: [u8; 64] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| format!("signature of {} bytes, expected 64", b.len()))?;
        Ok(Self(arr))
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        PublicKey::from_base64(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Signature::from_base64(&s).map_err(serde::de::Error::custom)
    }
}

/// This process's Ed25519 key pair.
pub struct KeyPair {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("public_key", &self.public_key())
            .finish_non_exhaustive()
    }
}

impl KeyPair {
    /// A fresh key pair, kept in memory only.
    #[must_use]
    pub fn generate() -> Self {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("the system RNG works");
        let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).expect("ring parses its own PKCS#8");
        Self { pair }
    }

    /// The key pair in `path` (PKCS#8 DER), created there with mode 0600 if there is none.
    /// A key file readable by group or others is refused: the key may have leaked.
    pub fn load_or_create(path: &Path) -> Result<Self, IdentityError> {
        if let Some(der) = files::read_private(path)? {
            let pair = Ed25519KeyPair::from_pkcs8(&der).map_err(|e| IdentityError::BadKeyFile {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
            return Ok(Self { pair });
        }
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("the system RNG works");
        files::write_private(path, doc.as_ref())?;
        let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).expect("ring parses its own PKCS#8");
        tracing::info!(path = %path.display(), "created an Ed25519 identity key");
        Ok(Self { pair })
    }

    /// The public half.
    #[must_use]
    pub fn public_key(&self) -> PublicKey {
        let mut k = [0u8; 32];
        k.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey(k)
    }

    /// Signs `message`.
    #[must_use]
    pub fn sign(&self, message: &[u8]) -> Signature {
        let mut s = [0u8; 64];
        s.copy_from_slice(self.pair.sign(message).as_ref());
        Signature(s)
    }
}

/// A fresh random nonce for a signed message.
#[must_use]
pub fn nonce() -> [u8; 16] {
    let mut n = [0u8; 16];
    SystemRandom::new().fill(&mut n).expect("the system RNG works");
    n
}

/// The bytes to sign for a message of `fields`: each prefixed by its length (u64, big endian),
/// so that no two different field lists give the same bytes (`"ab","c"` vs `"a","bc"`).
#[must_use]
pub fn signed_bytes(fields: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(fields.iter().map(|f| f.len() + 8).sum());
    for f in fields {
        out.extend_from_slice(&(f.len() as u64).to_be_bytes());
        out.extend_from_slice(f);
    }
    out
}

/// The registry's file: versioned, since it outlives the code that writes it.
#[derive(Serialize, Deserialize)]
struct RegistryFile {
    version: u32,
    identities: Vec<IdentityView>,
}

#[derive(Debug)]
struct Registry {
    path: Option<PathBuf>,
    by_id: BTreeMap<String, (IdentityView, PublicKey)>,
}

impl Registry {
    fn persist(&self) -> Result<(), IdentityError> {
        let Some(path) = &self.path else { return Ok(()) };
        let file = RegistryFile {
            version: REGISTRY_VERSION,
            identities: self.by_id.values().map(|(v, _)| v.clone()).collect(),
        };
        let json = serde_json::to_vec_pretty(&file).expect("identities serialize");
        files::write_private(path, &json)?;
        Ok(())
    }

    /// Puts `entry` under `id` and persists; on a failed write the registry is left as it was.
    fn put(&mut self, id: &str, entry: (IdentityView, PublicKey)) -> Result<IdentityView, IdentityError> {
        let view = entry.0.clone();
        let old = self.by_id.insert(id.to_owned(), entry);
        if let Err(e) = self.persist() {
            match old {
                Some(o) => self.by_id.insert(id.to_owned(), o),
                None => self.by_id.remove(id),
            };
            return Err(e);
        }
        Ok(view)
    }
}

/// The registry of enrolled identities (agents and nodes), optionally persisted to a JSON file.
/// Cheap to clone: clones share it.
#[derive(Debug, Clone)]
pub struct Identities {
    inner: Arc<Mutex<Registry>>,
}

impl Default for Identities {
    fn default() -> Self {
        Self::in_memory()
    }
}

impl Identities {
    /// An empty registry that is not persisted.
    #[must_use]
    pub fn in_memory() -> Self {
        Self {
            inner: Arc::new(Mutex::new(Registry {
                path: None,
                by_id: BTreeMap::new(),
            })),
        }
    }

    /// The registry persisted in `path` (created on the first change), refusing a file open to
    /// group or others.
    pub fn open(path: &Path) -> Result<Self, IdentityError> {
        let bad = |reason: String| IdentityError::BadRegistry {
            path: path.to_owned(),
            reason,
        };
        let mut by_id = BTreeMap::new();
        if let Some(bytes) = files::read_private(path)? {
            let file: RegistryFile = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
            if file.version != REGISTRY_VERSION {
                return Err(bad(format!(
                    "version {} (this build reads {REGISTRY_VERSION})",
                    file.version
                )));
            }
            for v in file.identities {
                let key = PublicKey::from_base64(&v.public_key).map_err(|e| bad(format!("{}: {e}", v.id)))?;
                by_id.insert(v.id.clone(), (v, key));
            }
        }
        Ok(Self {
            inner: Arc::new(Mutex::new(Registry {
                path: Some(path.to_owned()),
                by_id,
            })),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Enrols `key` under `id` now; see [`Identities::enrol_at`].
    pub fn enrol(
        &self,
        id: &str,
        kind: IdentityKind,
        key: &PublicKey,
        by: EnrolledBy,
        replace: bool,
    ) -> Result<IdentityView, IdentityError> {
        self.enrol_at(id, kind, key, by, replace, crate::now_ms())
    }

    /// Enrols `key` under `id`. The same key and kind again is accepted as is (a revoked one
    /// stays revoked); a different key or kind is refused unless `replace`, which also clears a
    /// revocation.
    pub fn enrol_at(
        &self,
        id: &str,
        kind: IdentityKind,
        key: &PublicKey,
        by: EnrolledBy,
        replace: bool,
        now_ms: u64,
    ) -> Result<IdentityView, IdentityError> {
        validate_id(id)?;
        let mut reg = self.lock();
        match reg.by_id.get(id) {
            Some((v, k)) if !replace => {
                if k != key {
                    return Err(IdentityError::KeyMismatch {
                        id: id.into(),
                        what: "key",
                    });
                }
                if v.kind != kind {
                    return Err(IdentityError::KeyMismatch {
                        id: id.into(),
                        what: "kind",
                    });
                }
                if v.revoked.is_some() {
                    return Err(IdentityError::Revoked(id.into()));
                }
                // An operator confirming a key first seen on first use makes it operator-enrolled.
                if by == EnrolledBy::Operator && v.enrolled_by == EnrolledBy::FirstUse {
                    let mut v = v.clone();
                    v.enrolled_by = EnrolledBy::Operator;
                    return reg.put(id, (v, *key));
                }
                return Ok(v.clone());
            }
            Some(_) => {}
            None if reg.by_id.len() >= MAX_IDENTITIES => return Err(IdentityError::Full(id.into())),
            None => {}
        }
        let view = IdentityView {
            id: id.into(),
            kind,
            public_key: key.to_base64(),
            enrolled_by: by,
            enrolled_ms: now_ms,
            revoked: None,
        };
        reg.put(id, (view, *key))
    }

    /// Trust on first use: enrols an unknown `id` with `key`, accepts the same key again, and
    /// refuses a different key or a revoked id.
    pub fn first_use(&self, id: &str, kind: IdentityKind, key: &PublicKey) -> Result<IdentityView, IdentityError> {
        self.first_use_at(id, kind, key, crate::now_ms())
    }

    /// [`Identities::first_use`] at `now_ms`.
    pub fn first_use_at(
        &self,
        id: &str,
        kind: IdentityKind,
        key: &PublicKey,
        now_ms: u64,
    ) -> Result<IdentityView, IdentityError> {
        self.enrol_at(id, kind, key, EnrolledBy::FirstUse, false, now_ms)
    }

    /// Revokes `id` now: its signatures are refused from then on. Revoking twice keeps the first
    /// revocation.
    pub fn revoke(&self, id: &str, reason: &str) -> Result<IdentityView, IdentityError> {
        self.revoke_at(id, reason, crate::now_ms())
    }

    /// [`Identities::revoke`] at `now_ms`.
    pub fn revoke_at(&self, id: &str, reason: &str, now_ms: u64) -> Result<IdentityView, IdentityError> {
        let mut reg = self.lock();
        let Some((v, k)) = reg.by_id.get(id) else {
            return Err(IdentityError::NotFound(id.chars().take(64).collect()));
        };
        if v.revoked.is_some() {
            return Ok(v.clone());
        }
        let (mut v, k) = (v.clone(), *k);
        v.revoked = Some(Revocation {
            at_ms: now_ms,
            reason: reason.chars().take(1024).collect(),
        });
        reg.put(id, (v, k))
    }

    /// One identity.
    #[must_use]
    pub fn get(&self, id: &str) -> Option<IdentityView> {
        self.lock().by_id.get(id).map(|(v, _)| v.clone())
    }

    /// Every identity, by id.
    #[must_use]
    pub fn list(&self) -> Vec<IdentityView> {
        self.lock().by_id.values().map(|(v, _)| v.clone()).collect()
    }

    /// Checks that `signature` is `id`'s signature of `message`, by an enrolled, unrevoked key.
    pub fn verify(&self, id: &str, message: &[u8], signature: &Signature) -> Result<(), VerifyError> {
        let key = {
            let reg = self.lock();
            let Some((v, k)) = reg.by_id.get(id) else {
                return Err(VerifyError::Unknown(id.chars().take(64).collect()));
            };
            if v.revoked.is_some() {
                return Err(VerifyError::Revoked(id.into()));
            }
            *k
        };
        if key.verifies(message, signature) {
            Ok(())
        } else {
            Err(VerifyError::BadSignature(id.into()))
        }
    }
}

#[derive(Debug)]
struct Seen {
    /// By timestamp, to forget the oldest first.
    by_age: BTreeSet<(u64, String, [u8; 16])>,
    pairs: HashSet<(String, [u8; 16])>,
}

/// Refuses messages older or newer than `max_age` and any (signer, nonce) already seen within
/// it. Memory is bounded: entries older than `max_age` are forgotten (their messages would be
/// stale anyway) and beyond [`MAX_NONCES`] new messages are refused rather than old nonces
/// forgotten early. Cheap to clone: clones share it.
#[derive(Debug, Clone)]
pub struct ReplayGuard {
    max_age_ms: u64,
    seen: Arc<Mutex<Seen>>,
}

impl ReplayGuard {
    /// A guard accepting timestamps within `max_age` of the checking clock.
    #[must_use]
    pub fn new(max_age: Duration) -> Self {
        Self {
            max_age_ms: u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX),
            seen: Arc::new(Mutex::new(Seen {
                by_age: BTreeSet::new(),
                pairs: HashSet::new(),
            })),
        }
    }

    /// Checks and remembers one message's `(signer, nonce)`; call it after the signature
    /// verified, so that forged messages cannot fill the guard.
    pub fn check(&self, signer: &str, timestamp_ms: u64, nonce: [u8; 16], now_ms: u64) -> Result<(), VerifyError> {
        if timestamp_ms.abs_diff(now_ms) > self.max_age_ms {
            return Err(VerifyError::Stale {
                signer: signer.chars().take(64).collect(),
                timestamp_ms,
                now_ms,
                max_age_ms: self.max_age_ms,
            });
        }
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let horizon = now_ms.saturating_sub(self.max_age_ms);
        while let Some(first) = seen.by_age.first() {
            if first.0 >= horizon {
                break;
            }
            let (_, s, n) = seen.by_age.pop_first().expect("just seen");
            seen.pairs.remove(&(s, n));
        }
        let pair = (signer.to_owned(), nonce);
        if seen.pairs.contains(&pair) {
            return Err(VerifyError::Replayed(signer.chars().take(64).collect()));
        }
        if seen.pairs.len() >= MAX_NONCES {
            return Err(VerifyError::Full(signer.chars().take(64).collect()));
        }
        seen.by_age.insert((timestamp_ms, pair.0.clone(), nonce));
        seen.pairs.insert(pair);
        Ok(())
    }

    /// How many nonces it remembers.
    #[must_use]
    pub fn len(&self) -> usize {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner).pairs.len()
    }

    /// Whether it remembers none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn key_file_round_trips_with_mode_0600_and_a_readable_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/agent.key");
        let a = KeyPair::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = KeyPair::load_or_create(&path).unwrap();
        assert_eq!(a.public_key(), b.public_key(), "the second start loads the same key");
        let sig = b.sign(b"hello");
        assert!(a.public_key().verifies(b"hello", &sig));
        assert!(!a.public_key().verifies(b"hellO", &sig));

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = KeyPair::load_or_create(&path).unwrap_err().to_string();
        assert!(err.contains("mode 640") && err.contains("chmod 600"), "{err}");

        std::fs::write(dir.path().join("junk.key"), b"junk").unwrap();
        std::fs::set_permissions(dir.path().join("junk.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = KeyPair::load_or_create(&dir.path().join("junk.key"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not an Ed25519 PKCS#8 key"), "{err}");
    }

    #[test]
    fn keys_and_signatures_serialize_as_base64() {
        let k = KeyPair::generate();
        let pk = k.public_key();
        let json = serde_json::to_string(&pk).unwrap();
        assert_eq!(json, format!("\"{}\"", pk.to_base64()));
        assert_eq!(serde_json::from_str::<PublicKey>(&json).unwrap(), pk);
        let sig = k.sign(b"m");
        let json = serde_json::to_string(&sig).unwrap();
        assert_eq!(serde_json::from_str::<Signature>(&json).unwrap(), sig);
        let e = serde_json::from_str::<PublicKey>("\"AAAA\"").unwrap_err().to_string();
        assert!(e.contains("3 bytes, expected 32"), "{e}");
    }

    #[test]
    fn forged_unknown_and_revoked_signatures_are_refused() {
        let ids = Identities::in_memory();
        let good = KeyPair::generate();
        let forger = KeyPair::generate();
        ids.enrol(
            "c1",
            IdentityKind::Agent,
            &good.public_key(),
            EnrolledBy::Operator,
            false,
        )
        .unwrap();
        let msg = signed_bytes(&[b"c1", b"7", b"plan"]);
        assert_eq!(ids.verify("c1", &msg, &good.sign(&msg)), Ok(()));
        assert_eq!(
            ids.verify("c1", &msg, &forger.sign(&msg)),
            Err(VerifyError::BadSignature("c1".into()))
        );
        // A signature of other bytes does not carry over.
        let other = signed_bytes(&[b"c1", b"8", b"plan"]);
        assert_eq!(
            ids.verify("c1", &other, &good.sign(&msg)),
            Err(VerifyError::BadSignature("c1".into()))
        );
        assert_eq!(
            ids.verify("c9", &msg, &good.sign(&msg)),
            Err(VerifyError::Unknown("c9".into()))
        );
        ids.revoke_at("c1", "key leaked", 5).unwrap();
        let e = ids.verify("c1", &msg, &good.sign(&msg)).unwrap_err();
        assert_eq!(e, VerifyError::Revoked("c1".into()));
        assert_eq!(e.to_string(), "signer c1 is revoked");
    }

    #[test]
    fn enrolment_and_first_use_refuse_another_key() {
        let ids = Identities::in_memory();
        let (a, b) = (KeyPair::generate().public_key(), KeyPair::generate().public_key());
        let v = ids.first_use_at("n1", IdentityKind::Node, &a, 10).unwrap();
        assert_eq!((v.enrolled_by, v.enrolled_ms), (EnrolledBy::FirstUse, 10));
        assert_eq!(
            ids.first_use_at("n1", IdentityKind::Node, &a, 20).unwrap().enrolled_ms,
            10
        );
        let e = ids.first_use("n1", IdentityKind::Node, &b).unwrap_err();
        assert!(matches!(e, IdentityError::KeyMismatch { what: "key", .. }), "{e}");
        assert!(ids.first_use("n1", IdentityKind::Agent, &a).is_err());
        // The operator confirms the key seen first.
        let v = ids
            .enrol("n1", IdentityKind::Node, &a, EnrolledBy::Operator, false)
            .unwrap();
        assert_eq!(v.enrolled_by, EnrolledBy::Operator);
        let e = ids
            .enrol("n1", IdentityKind::Node, &b, EnrolledBy::Operator, false)
            .unwrap_err();
        assert!(e.to_string().contains("replace"), "{e}");
        ids.revoke("n1", "decommissioned").unwrap();
        assert!(matches!(
            ids.first_use("n1", IdentityKind::Node, &a),
            Err(IdentityError::Revoked(_))
        ));
        // Replacing installs the new key and clears the revocation.
        let v = ids
            .enrol("n1", IdentityKind::Node, &b, EnrolledBy::Operator, true)
            .unwrap();
        assert!(v.revoked.is_none());
        assert_eq!(v.public_key, b.to_base64());
        assert!(matches!(ids.revoke("zz", "x"), Err(IdentityError::NotFound(_))));
        assert!(ids
            .enrol("bad\u{7}", IdentityKind::Node, &a, EnrolledBy::Operator, false)
            .is_err());
    }

    #[test]
    fn the_registry_persists_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identities.json");
        let key = KeyPair::generate().public_key();
        {
            let ids = Identities::open(&path).unwrap();
            ids.enrol_at("c1", IdentityKind::Agent, &key, EnrolledBy::Operator, false, 1)
                .unwrap();
            ids.first_use_at("n1", IdentityKind::Node, &key, 2).unwrap();
            ids.revoke_at("n1", "lost", 3).unwrap();
        }
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let ids = Identities::open(&path).unwrap();
        assert_eq!(ids.list().len(), 2);
        assert_eq!(ids.get("n1").unwrap().revoked.unwrap().reason, "lost");
        assert_eq!(ids.get("c1").unwrap().public_key, key.to_base64());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(Identities::open(&path).unwrap_err().to_string().contains("mode 644"));
    }

    #[test]
    fn replays_and_stale_messages_are_refused_and_memory_is_pruned() {
        let guard = ReplayGuard::new(Duration::from_secs(60));
        let now = 1_000_000;
        assert_eq!(guard.check("c1", now, [1; 16], now), Ok(()));
        assert_eq!(
            guard.check("c1", now, [1; 16], now + 1),
            Err(VerifyError::Replayed("c1".into()))
        );
        // Another signer may use the same nonce.
        assert_eq!(guard.check("c2", now, [1; 16], now), Ok(()));
        assert!(matches!(
            guard.check("c1", now - 60_001, [2; 16], now),
            Err(VerifyError::Stale { .. })
        ));
        assert!(matches!(
            guard.check("c1", now + 60_001, [2; 16], now),
            Err(VerifyError::Stale { .. })
        ));
        assert_eq!(guard.len(), 2);
        // Past the window both are forgotten; the replay would be stale anyway.
        assert_eq!(guard.check("c3", now + 70_000, [3; 16], now + 70_000), Ok(()));
        assert_eq!(guard.len(), 1);
        assert!(matches!(
            guard.check("c1", now, [1; 16], now + 70_000),
            Err(VerifyError::Stale { .. })
        ));
    }

    #[test]
    fn a_full_replay_guard_refuses_rather_than_forgets() {
        let guard = ReplayGuard::new(Duration::from_secs(60));
        for i in 0..MAX_NONCES as u64 {
            let mut n = [0u8; 16];
            n[..8].copy_from_slice(&i.to_be_bytes());
            guard.check("c1", 1_000, n, 1_000).unwrap();
        }
        assert_eq!(
            guard.check("c1", 1_000, [0xff; 16], 1_000),
            Err(VerifyError::Full("c1".into()))
        );
    }

    #[test]
    fn signed_bytes_cannot_collide_by_moving_a_boundary() {
        assert_ne!(signed_bytes(&[b"ab", b"c"]), signed_bytes(&[b"a", b"bc"]));
        assert_ne!(signed_bytes(&[b"", b"x"]), signed_bytes(&[b"x", b""]));
        assert_eq!(signed_bytes(&[b"ab"]), [&[0, 0, 0, 0, 0, 0, 0, 2][..], b"ab"].concat());
        assert_ne!(nonce(), nonce());
    }
}

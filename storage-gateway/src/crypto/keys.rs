//! Master keys: the key-encryption keys that wrap every data key, with ids so they can rotate.
//!
//! Two sources, never mixed:
//! - the file `DATA/master-keys.json` (mode 0600), generated with one key on first start; its
//!   last key is the active one, earlier keys stay until `mlsysops admin rotate-key` has
//!   rewrapped everything they wrapped;
//! - the env var `MLSYSOPS_MASTER_KEY`: `base64` or `id=base64`, several separated by commas,
//!   the first active. An operator who injects secrets this way rotates by listing the new key
//!   first and the old one after it, running `rotate-key`, then dropping the old one.

use super::Secret;
use crate::error::{Error, Result};
use crate::meta::{MetaStore, Table, Walk};
use crate::records::{decode, BucketRecord, KeyWrap, ObjectManifest, PartRecord, Segment, SegmentKey};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::path::{Path, PathBuf};

/// Name of the master key file inside the data dir.
pub const KEY_FILE: &str = "master-keys.json";

/// Env var holding master keys instead of the file.
pub const KEY_ENV: &str = "MLSYSOPS_MASTER_KEY";

/// One master key.
#[derive(Clone, Debug)]
pub struct MasterKey {
    /// Stable id, recorded next to every data key it wraps.
    pub id: String,
    /// The key; Debug shows nothing of it.
    pub key: Secret,
    /// When it was made, Unix milliseconds (0 when it came from the env).
    pub created_ms: i64,
}

impl MasterKey {
    /// A new random key with an id derived from it.
    pub fn generate() -> Result<Self> {
        let key = Secret::random()?;
        Ok(Self {
            id: derive_id(&key),
            key,
            created_ms: crate::records::now_ms(),
        })
    }
}

/// Id of a key given without one: a hash of the key, so two different keys never share an id
/// by accident and the id reveals nothing usable.
fn derive_id(key: &Secret) -> String {
    let mut h = sha2::Sha256::new();
    h.update(b"mlsysops master key id\0");
    h.update(key.0);
    format!("mk-{}", hex::encode(&h.finalize()[..6]))
}

#[derive(Serialize, Deserialize)]
struct FileKey {
    id: String,
    key: String,
    created_ms: i64,
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    keys: Vec<FileKey>,
}

/// Where the keys came from, for error messages and for saving.
#[derive(Clone, Debug)]
enum Source {
    File(PathBuf),
    Env,
    None,
    #[cfg(test)]
    Test,
}

/// The master keys known to this process; one is active (wraps new data keys).
#[derive(Clone, Debug)]
pub struct KeyRing {
    keys: Vec<MasterKey>,
    active: usize,
    source: Source,
}

impl KeyRing {
    /// Keys from `env` (the value of [`KEY_ENV`]) when given, else from the data dir's key
    /// file. A missing file is created with one fresh key only when `store` (the data dir's
    /// metadata) names nothing encrypted with a master key: otherwise the file was lost, and a
    /// new key would silently make every such object unreadable, so this refuses, saying what
    /// needs the key. The bool says the file was created.
    pub fn open(data_dir: &Path, env: Option<&str>, store: &dyn MetaStore) -> Result<(Self, bool)> {
        if let Some(text) = env.filter(|t| !t.trim().is_empty()) {
            return Ok((Self::from_env(text)?, false));
        }
        let path = data_dir.join(KEY_FILE);
        if path.exists() {
            return Ok((Self::load_file(&path)?, false));
        }
        if let Some(needs) = needs_master_key(store)? {
            return Err(Error::Config(format!(
                "master key file {} is missing, but the metadata names {needs}: a new key would leave \
                 every object encrypted at rest unreadable. Restore the file from your backup (it is \
                 backed up with the metadata), or give the keys in {KEY_ENV}",
                path.display()
            )));
        }
        let ring = Self {
            keys: vec![MasterKey::generate()?],
            active: 0,
            source: Source::File(path),
        };
        ring.save()?;
        Ok((ring, true))
    }

    /// Parses the env form: `base64` or `id=base64`, comma-separated, first active.
    pub fn from_env(text: &str) -> Result<Self> {
        let mut keys: Vec<MasterKey> = Vec::new();
        for (i, item) in text.split(',').map(str::trim).filter(|s| !s.is_empty()).enumerate() {
            let what = format!("{KEY_ENV} entry {}", i + 1);
            let (id, b64) = match item.split_once('=') {
                // base64 may end in '=': an id never does and never is empty.
                Some((id, b64)) if !id.is_empty() && !b64.is_empty() && !id.contains(['+', '/']) => {
                    (Some(id.to_owned()), b64)
                }
                _ => (None, item),
            };
            let key = Secret::from_base64(&what, b64)?;
            let id = id.unwrap_or_else(|| derive_id(&key));
            if keys.iter().any(|k| k.id == id) {
                return Err(Error::Config(format!("{KEY_ENV}: master key id {id:?} appears twice")));
            }
            keys.push(MasterKey { id, key, created_ms: 0 });
        }
        if keys.is_empty() {
            return Err(Error::Config(format!("{KEY_ENV} holds no key")));
        }
        Ok(Self {
            keys,
            active: 0,
            source: Source::Env,
        })
    }

    fn load_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let file: KeyFile = serde_json::from_str(&text)
            .map_err(|e| Error::Config(format!("master key file {}: {e}", path.display())))?;
        let mut keys = Vec::with_capacity(file.keys.len());
        for k in file.keys {
            let key = Secret::from_base64(&format!("master key {:?} in {}", k.id, path.display()), &k.key)?;
            keys.push(MasterKey {
                id: k.id,
                key,
                created_ms: k.created_ms,
            });
        }
        if keys.is_empty() {
            return Err(Error::Config(format!(
                "master key file {} holds no key",
                path.display()
            )));
        }
        Ok(Self {
            active: keys.len() - 1,
            keys,
            source: Source::File(path.to_owned()),
        })
    }

    /// Writes the ring back to its file (temp file, fsync, rename: never half a key file).
    fn save(&self) -> Result<()> {
        let Source::File(path) = &self.source else {
            return Err(Error::Config(format!(
                "master keys come from {KEY_ENV}; change that variable instead of the key file"
            )));
        };
        // The file's order is its activity order: the active key is last.
        let mut order: Vec<&MasterKey> = self
            .keys
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != self.active)
            .map(|(_, k)| k)
            .collect();
        order.push(&self.keys[self.active]);
        let file = KeyFile {
            keys: order
                .into_iter()
                .map(|k| FileKey {
                    id: k.id.clone(),
                    key: k.key.to_base64(),
                    created_ms: k.created_ms,
                })
                .collect(),
        };
        let json =
            serde_json::to_vec_pretty(&file).map_err(|e| Error::Internal(format!("serializing key file: {e}")))?;
        let tmp = path.with_extension("json.tmp");
        write_private(&tmp, &json)?;
        std::fs::rename(&tmp, path)
            .map_err(|e| Error::io(format!("replacing {} with {}", path.display(), tmp.display()), e))
    }

    /// A ring without keys, for engines that never encrypt.
    #[must_use]
    pub fn empty() -> Self {
        Self {
            keys: Vec::new(),
            active: 0,
            source: Source::None,
        }
    }

    /// The key that wraps new data keys.
    pub fn active(&self) -> Result<&MasterKey> {
        self.keys
            .get(self.active)
            .ok_or_else(|| Error::Crypto(format!("no active master key ({})", self.describe())))
    }

    /// The key with id `id`, if this ring has it.
    #[must_use]
    pub fn get(&self, id: &str) -> Option<&MasterKey> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// All keys, active one included.
    #[must_use]
    pub fn keys(&self) -> &[MasterKey] {
        &self.keys
    }

    /// Ids and source, for messages (never the keys).
    #[must_use]
    pub fn describe(&self) -> String {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        let from = match &self.source {
            Source::File(p) => p.display().to_string(),
            Source::Env => KEY_ENV.to_owned(),
            Source::None => "nowhere: no master keys are configured".to_owned(),
            #[cfg(test)]
            Source::Test => "test".to_owned(),
        };
        format!("ids {ids:?} from {from}")
    }

    /// Whether the keys came from a file (and so can be rotated by writing it).
    #[must_use]
    pub fn is_file(&self) -> bool {
        matches!(self.source, Source::File(_))
    }

    /// Adds a fresh key, makes it active and saves the file; old keys stay for reading.
    pub fn add_active_key(&mut self) -> Result<&MasterKey> {
        let k = MasterKey::generate()?;
        self.keys.push(k);
        self.active = self.keys.len() - 1;
        self.save()?;
        self.active()
    }

    /// Drops every key but the active one from the file; returns the ids dropped.
    pub fn retire_inactive(&mut self) -> Result<Vec<String>> {
        let active = self.keys.remove(self.active);
        let retired = self.keys.drain(..).map(|k| k.id).collect();
        self.keys.push(active);
        self.active = 0;
        self.save()?;
        Ok(retired)
    }

    /// A ring with one random key, not backed by anything.
    #[cfg(test)]
    pub fn ephemeral_for_tests() -> Self {
        Self {
            keys: vec![MasterKey::generate().expect("random key")],
            active: 0,
            source: Source::Test,
        }
    }
}

/// The first thing in the metadata that a master key is needed for, described: a bucket that
/// encrypts at rest, or an object or multipart part whose data key or MAC key a master key wraps. `None`
/// for metadata without any (a fresh data dir, or one that never encrypted). Reads every record
/// in the worst case, which only a start without a key file pays.
fn needs_master_key(store: &dyn MetaStore) -> Result<Option<String>> {
    let mut found: Option<String> = None;
    store.walk(Table::Buckets, b"", b"", &mut |k, v| {
        let name = String::from_utf8_lossy(k);
        let rec: BucketRecord = decode(|| format!("bucket {name}"), v)?;
        if rec.encrypted {
            found = Some(format!("bucket {name:?}, which encrypts its objects at rest"));
            return Ok(Walk::Stop);
        }
        Ok(Walk::Next)
    })?;
    // A plaintext set's MAC key is wrapped by a master key too: without it, its keyed shard
    // blocks cannot be verified and the object cannot be read.
    let wrapping_key = |segments: &[Segment]| {
        segments.iter().find_map(|s| {
            let keys = s.encryption.iter().chain(s.integrity.iter().map(|mac| &mac.key));
            keys.into_iter().find_map(|k| match k {
                SegmentKey {
                    wrapped_by: KeyWrap::Master { key_id },
                    ..
                } => Some(key_id.clone()),
                _ => None,
            })
        })
    };
    if found.is_none() {
        store.walk(Table::Objects, b"", b"", &mut |k, v| {
            let name = String::from_utf8_lossy(k).replacen('\0', "/", 1);
            let m: ObjectManifest = decode(|| format!("object {name}"), v)?;
            if let Some(id) = wrapping_key(&m.segments) {
                found = Some(format!("object {name}, whose data or MAC key master key {id:?} wraps"));
                return Ok(Walk::Stop);
            }
            Ok(Walk::Next)
        })?;
    }
    if found.is_none() {
        store.walk(Table::Parts, b"", b"", &mut |_, v| {
            let p: PartRecord = decode(|| "multipart part".into(), v)?;
            if let Some(id) = wrapping_key(std::slice::from_ref(&p.segment)) {
                found = Some(format!(
                    "part {} of a multipart upload, whose data or MAC key master key {id:?} wraps",
                    p.part_number
                ));
                return Ok(Walk::Stop);
            }
            Ok(Walk::Next)
        })?;
    }
    Ok(found)
}

/// Writes a file readable only by its owner, replacing any previous temp file.
fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    let _ = std::fs::remove_file(path);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::meta::{Batch, RocksStore};
    use crate::records::encode;

    /// A data dir with an empty metadata store in `meta/`.
    fn data_dir() -> (tempfile::TempDir, RocksStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = RocksStore::open(&dir.path().join("meta")).unwrap();
        (dir, store)
    }

    fn bucket(encrypted: bool) -> BucketRecord {
        BucketRecord {
            created_ms: 1,
            policy: placement::BucketPolicy::default(),
            policy_epoch: 1,
            encrypted,
            backends: placement::BackendSelector::default(),
            intent: placement::BucketIntent::default(),
            update_token_sha256: None,
            changed: None,
            prefixes: Vec::new(),
        }
    }

    fn segment(wrapped_by: Option<KeyWrap>) -> Segment {
        Segment {
            set: uuid::Uuid::nil(),
            size: 1,
            k: 1,
            m: 0,
            block_size: 4096,
            backends: vec!["a".into()],
            integrity: None,
            encryption: wrapped_by.map(|w| SegmentKey {
                wrapped_by: w,
                wrapped_key: "a2V5".into(),
            }),
        }
    }

    fn object(wrapped_by: Option<KeyWrap>) -> ObjectManifest {
        ObjectManifest {
            version_id: uuid::Uuid::nil(),
            size: 1,
            etag: "e".into(),
            last_modified_ms: 1,
            headers: crate::records::ContentHeaders::default(),
            checksums: crate::records::Checksums::default(),
            parts_count: None,
            policy_epoch: 1,
            segments: vec![segment(wrapped_by)],
        }
    }

    #[test]
    fn a_lost_key_file_is_not_replaced_while_anything_needs_it() {
        let master = || Some(KeyWrap::Master { key_id: "mk-1".into() });
        let customer = || Some(KeyWrap::Customer { key_md5: "bWQ1".into() });
        let cases: Vec<(&str, Batch, Option<&str>)> = vec![
            ("fresh metadata", Batch::default(), None),
            {
                let mut b = Batch::default();
                b.put(Table::Buckets, "plain", encode(&bucket(false)));
                b.put(Table::Objects, "plain\0k", encode(&object(None)));
                b.put(Table::Objects, "plain\0c", encode(&object(customer())));
                ("plaintext and SSE-C objects only", b, None)
            },
            {
                let mut b = Batch::default();
                b.put(Table::Buckets, "enc", encode(&bucket(true)));
                ("an encrypting bucket", b, Some("bucket \"enc\""))
            },
            {
                let mut b = Batch::default();
                b.put(Table::Buckets, "plain", encode(&bucket(false)));
                b.put(Table::Objects, "plain\0dir/k", encode(&object(master())));
                ("a master-wrapped object", b, Some("object plain/dir/k"))
            },
            {
                let mut b = Batch::default();
                let part = PartRecord {
                    part_number: 7,
                    etag: "e".into(),
                    last_modified_ms: 1,
                    checksums: crate::records::Checksums::default(),
                    segment: segment(master()),
                };
                b.put(Table::Parts, "upload\0\0\0\0\x07", encode(&part));
                ("a master-wrapped part", b, Some("part 7"))
            },
        ];
        for (what, batch, refused) in cases {
            let (dir, store) = data_dir();
            store.write(batch).unwrap();
            let opened = KeyRing::open(dir.path(), None, &store);
            match refused {
                None => {
                    let (_, created) = opened.unwrap_or_else(|e| panic!("{what}: {e}"));
                    assert!(created, "{what}: a key should be made");
                }
                Some(names) => {
                    let e = opened.err().unwrap_or_else(|| panic!("{what}: a new key was made"));
                    let msg = e.to_string();
                    assert!(msg.contains(KEY_FILE) && msg.contains("missing"), "{what}: {msg}");
                    assert!(msg.contains(names), "{what}: should name {names:?}: {msg}");
                    assert!(!dir.path().join(KEY_FILE).exists(), "{what}: a key file was written");
                }
            }
        }
    }

    #[test]
    fn file_is_created_private_and_reloaded() {
        let (dir, store) = data_dir();
        let (ring, created) = KeyRing::open(dir.path(), None, &store).unwrap();
        assert!(created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (again, created) = KeyRing::open(dir.path(), None, &store).unwrap();
        assert!(!created);
        assert_eq!(again.active().unwrap().id, ring.active().unwrap().id);
        assert_eq!(again.active().unwrap().key, ring.active().unwrap().key);
        assert!(!format!("{again:?}").contains(&ring.active().unwrap().key.to_base64()));
    }

    #[test]
    fn rotation_keeps_old_keys_until_retired() {
        let (dir, store) = data_dir();
        let (mut ring, _) = KeyRing::open(dir.path(), None, &store).unwrap();
        let old = ring.active().unwrap().id.clone();
        let new = ring.add_active_key().unwrap().id.clone();
        assert_ne!(old, new);
        let (reloaded, _) = KeyRing::open(dir.path(), None, &store).unwrap();
        assert_eq!(reloaded.active().unwrap().id, new);
        assert!(reloaded.get(&old).is_some());
        let mut reloaded = reloaded;
        assert_eq!(reloaded.retire_inactive().unwrap(), vec![old.clone()]);
        let (last, _) = KeyRing::open(dir.path(), None, &store).unwrap();
        assert!(last.get(&old).is_none());
        assert_eq!(last.active().unwrap().id, new);
    }

    #[test]
    fn env_keys_parse_with_and_without_ids() {
        let a = Secret([1; 32]).to_base64();
        let b = Secret([2; 32]).to_base64();
        let ring = KeyRing::from_env(&a).unwrap();
        assert!(ring.active().unwrap().id.starts_with("mk-"));
        let ring = KeyRing::from_env(&format!("new={a}, old={b}")).unwrap();
        assert_eq!(ring.active().unwrap().id, "new");
        assert_eq!(ring.get("old").unwrap().key, Secret([2; 32]));
        assert!(KeyRing::from_env("x=notbase64!").is_err());
        assert!(KeyRing::from_env(&Secret([1; 32]).to_base64()[..20]).is_err());
        assert!(KeyRing::from_env(&format!("a={a},a={b}")).is_err());
        assert!(KeyRing::from_env(" , ").is_err());
    }
}

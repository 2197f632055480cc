//! The records kept in the metadata store, and their versioned encoding.
//!
//! This is the bottom of the crate: it imports [`crate::error`] and [`crate::codec`] (layout
//! arithmetic) and nothing else of the crate, so every layer above (meta, crypto, engine, s3,
//! admin) can name the records without reaching up.
//!
//! # Encoding
//!
//! Every record is stored as one format-version byte followed by JSON. JSON keeps records
//! readable with `ldb` when debugging; the version byte says which struct the JSON belongs to.
//! [`encode`] writes a record with its type's [`Record::VERSION`]; [`decode`] reads the current
//! version directly and hands older ones to [`Record::upgrade`].
//!
//! # Versions and the migration path
//!
//! [`v1`] holds the structs as they are on disk today; `pub use v1::*` makes them the current
//! ones. A format change never edits a struct in place. It adds a module, as Garage does with its
//! `v08`/`v09`/`v010` modules:
//!
//! 1. `v2.rs` with the new struct (say `v2::ObjectManifest`), which implements [`Record`] with
//!    `VERSION = 2` and `fn upgrade(version, json) { upgrade_from::<v1::ObjectManifest, _>(version, json) }`;
//! 2. `impl From<v1::ObjectManifest> for v2::ObjectManifest`, the migration of one record;
//! 3. here, `pub use v2::ObjectManifest` instead of v1's (types that did not change keep coming
//!    from `v1`), and a test decoding stored v1 bytes into the v2 type.
//!
//! Old records are then upgraded when read and rewritten in the new version by the next write
//! of the record; nothing has to be migrated offline. [`v1`] stays as long as any store may
//! hold version-1 records, its tests pinning their bytes.
//!
//! [`v2`] holds the types changed since: [`UploadRecord`] (with the upload's
//! [`UploadEncryption`]).

pub mod v1;
pub mod v2;

use crate::error::{Error, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use v1::*;
// Named imports shadow v1's glob: these types are current in version 2.
pub use v2::{UploadEncryption, UploadRecord};

/// Bytes a sealed block is longer than its plaintext: the AES-256-GCM tag. Part of the stored
/// format (it sizes the stored blocks of an encrypted segment), so it lives here.
pub const TAG_LEN: usize = 16;

/// A type stored as a catalog value of its own: its format version, and how a value stored in
/// an older version becomes one of this type.
pub trait Record: Serialize + DeserializeOwned {
    /// The format-version byte values of this type are written with.
    const VERSION: u8;

    /// A value stored in an older `version` (its JSON after the version byte), upgraded to this
    /// type; or why it cannot be. The first version of a type has nothing older to upgrade.
    fn upgrade(version: u8, json: &[u8]) -> std::result::Result<Self, String> {
        let _ = json;
        Err(format!("unknown format version {version}"))
    }
}

/// Encodes a record with its format version.
pub fn encode<T: Record>(record: &T) -> Vec<u8> {
    let mut out = vec![T::VERSION];
    // Serializing plain structs of strings and numbers to a Vec cannot fail.
    serde_json::to_writer(&mut out, record).expect("records serialize to JSON");
    out
}

/// Decodes a record written by [`encode`] in the current or an older version of `T`; `what`
/// names it in the error.
pub fn decode<T: Record>(what: impl Fn() -> String, bytes: &[u8]) -> Result<T> {
    let corrupt = |message: String| Error::Corrupt { what: what(), message };
    let Some((&version, json)) = bytes.split_first() else {
        return Err(corrupt("empty record".into()));
    };
    match version.cmp(&T::VERSION) {
        std::cmp::Ordering::Equal => serde_json::from_slice(json).map_err(|e| corrupt(e.to_string())),
        std::cmp::Ordering::Less => T::upgrade(version, json).map_err(corrupt),
        std::cmp::Ordering::Greater => Err(corrupt(format!("unknown format version {version}"))),
    }
}

/// What a listing shows of an object, read from its stored manifest without building the rest:
/// the JSON parser skips the segments, headers and checksums instead of allocating them, so a
/// listing page costs little more than its keys whatever the objects' part counts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct ObjectSummary {
    /// Size in bytes.
    pub size: u64,
    /// ETag without quotes.
    pub etag: String,
    /// Last-Modified, Unix milliseconds.
    pub last_modified_ms: i64,
}

impl From<&ObjectManifest> for ObjectSummary {
    fn from(m: &ObjectManifest) -> Self {
        Self {
            size: m.size,
            etag: m.etag.clone(),
            last_modified_ms: m.last_modified_ms,
        }
    }
}

/// The [`ObjectSummary`] of a stored [`ObjectManifest`]; `what` names it in the error. The
/// current version is read field by field; an older one is decoded (and upgraded) whole.
pub fn decode_summary(what: impl Fn() -> String, bytes: &[u8]) -> Result<ObjectSummary> {
    match bytes.split_first() {
        Some((&version, json)) if version == ObjectManifest::VERSION => {
            serde_json::from_slice(json).map_err(|e| Error::Corrupt {
                what: what(),
                message: e.to_string(),
            })
        }
        _ => decode::<ObjectManifest>(what, bytes).map(|m| ObjectSummary::from(&m)),
    }
}

/// For [`Record::upgrade`] of a new version: reads the value as the previous version's type
/// `Old` (itself upgrading anything older) and converts it.
pub fn upgrade_from<Old, New>(version: u8, json: &[u8]) -> std::result::Result<New, String>
where
    Old: Record,
    New: From<Old>,
{
    let old = if version == Old::VERSION {
        serde_json::from_slice::<Old>(json).map_err(|e| e.to_string())?
    } else {
        Old::upgrade(version, json)?
    };
    Ok(New::from(old))
}

/// Current time in Unix milliseconds.
#[must_use]
pub fn now_ms() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;

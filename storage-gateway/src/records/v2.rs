//! Version 2 of the records whose shape changed after version 1. Types not named here are
//! still [`super::v1`]'s.
//!
//! - [`UploadRecord`]: a multipart upload keeps the server-side encryption asked for when it was
//!   created (version 1 kept only an SSE-C key's MD5, so `--sse AES256` was lost between
//!   CreateMultipartUpload and the parts, which were then stored in plaintext).

use super::{upgrade_from, v1, ContentHeaders, Record};
use serde::{Deserialize, Serialize};

/// How the parts of a multipart upload are encrypted: fixed when the upload is created, so
/// every part (and the object they become) is sealed the same way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UploadEncryption {
    /// Nothing was asked for and the bucket did not encrypt: a part is encrypted with the master
    /// keys only if its bucket encrypts new objects by the time the part is written.
    Bucket,
    /// SSE-S3: every part is sealed with a data key wrapped by the gateway's master keys,
    /// whatever the bucket's default says.
    Master,
    /// SSE-C: every part is sealed with the customer key whose MD5 this is, and every part
    /// request must carry that key.
    Customer {
        /// Base64 MD5 of the customer key.
        key_md5: String,
    },
}

/// An in-progress multipart upload.
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
    /// How every part is encrypted.
    pub encryption: UploadEncryption,
}

impl Record for UploadRecord {
    const VERSION: u8 = 2;

    fn upgrade(version: u8, json: &[u8]) -> std::result::Result<Self, String> {
        upgrade_from::<v1::UploadRecord, _>(version, json)
    }
}

impl From<v1::UploadRecord> for UploadRecord {
    /// A version-1 upload asked for SSE-C (its key's MD5 was kept) or for nothing the record
    /// could say: its parts follow the bucket, as they did when it was created.
    fn from(old: v1::UploadRecord) -> Self {
        Self {
            upload_id: old.upload_id,
            created_ms: old.created_ms,
            headers: old.headers,
            checksum_algorithm: old.checksum_algorithm,
            encryption: match old.sse_customer_key_md5 {
                Some(key_md5) => UploadEncryption::Customer { key_md5 },
                None => UploadEncryption::Bucket,
            },
        }
    }
}

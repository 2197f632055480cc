//! Multipart upload verbs (create, upload a part, complete, abort) and their lookups.
//!
//! Each part is its own shard set, committed when uploaded; completing an upload writes one
//! manifest naming the chosen parts' sets in order, whatever the object size.

use super::objects::{Commit, PreconditionFailed, WriteCondition};
use super::write::WrittenSet;
use super::Engine;
use crate::error::Result;
use crate::meta::Checked;
use crate::records::{
    now_ms, BucketRecord, Checksums, ContentHeaders, KeyWrap, ObjectManifest, PartRecord, Segment, UploadEncryption,
    UploadRecord,
};
use uuid::Uuid;

/// What an uploaded part carries besides its bytes.
#[derive(Debug, Clone)]
pub struct NewPart {
    /// Part number, 1..=10000.
    pub part_number: u32,
    /// MD5 hex of the part.
    pub etag: String,
    /// Checksums of the part.
    pub checksums: Checksums,
}

/// The parts an upload becomes an object of, as chosen and checked against the request.
#[derive(Debug, Clone)]
pub struct Completion {
    /// The chosen parts, in order.
    pub parts: Vec<PartRecord>,
    /// The object's ETag without quotes (MD5 of the parts' MD5s, `-N`).
    pub etag: String,
    /// Headers the object carries (given when the upload was created).
    pub headers: ContentHeaders,
}

impl Engine {
    // ---- lookups ----

    /// The upload's record, or [`crate::Error::NoSuchUpload`].
    pub fn upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<UploadRecord> {
        self.catalog().upload(bucket, key, upload_id)
    }

    /// In-progress uploads of a bucket whose keys start with `prefix`, as (key, record), in
    /// key then initiation order.
    pub fn uploads(&self, bucket: &str, prefix: &str) -> Result<Vec<(String, UploadRecord)>> {
        self.catalog().list_uploads(bucket, prefix)
    }

    /// Parts of an upload, by part number.
    pub fn parts(&self, upload_id: &str) -> Result<Vec<PartRecord>> {
        self.catalog().parts(upload_id)
    }

    // ---- verbs ----

    /// Records a new multipart upload of `bucket/key`.
    pub fn create_upload(&self, bucket: &str, key: &str, record: &UploadRecord) -> Result<()> {
        self.catalog().create_upload(bucket, key, record)
    }

    /// Commits `written` as part `part.part_number` of the upload, replacing (and reaping) an
    /// earlier part of that number; its failed shards are queued for repair with it. When the
    /// commit fails (the upload is gone) the written set is abandoned.
    pub fn commit_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        written: WrittenSet,
        part: NewPart,
    ) -> Result<PartRecord> {
        let record = PartRecord {
            part_number: part.part_number,
            etag: part.etag,
            last_modified_ms: now_ms(),
            segment: written.segment().clone(),
            checksums: part.checksums,
        };
        let doomed = self
            .catalog()
            .commit_part(bucket, key, upload_id, &record, written.failed())?;
        written.committed();
        self.reap(doomed);
        Ok(record)
    }

    /// Turns the upload into the object `bucket/key` made of `completion`'s parts, if
    /// `condition` holds for the version it replaces. Unused parts' sets and the replaced
    /// version's are reaped. `record` is the bucket's record the request began with: the
    /// object keeps its epoch only if every part already conforms to that policy (else the
    /// epoch before, which hands it to the migrator).
    ///
    /// `completion` names parts as the caller read them, outside the commit lock. Under the
    /// lock each is looked up again: a part re-uploaded since with the same ETag (the same
    /// bytes) is taken as it is now; one re-uploaded with other bytes, gone, or not encrypted
    /// as the upload requires is [`crate::Error::InvalidPart`], and nothing changes. So the
    /// object names exactly the parts' sets that are live at the commit, never one a
    /// concurrent re-upload has doomed.
    pub fn complete_upload(
        &self,
        bucket: &str,
        record: &BucketRecord,
        key: &str,
        upload_id: &str,
        completion: Completion,
        condition: &WriteCondition,
    ) -> Result<Commit> {
        let checked = self
            .catalog()
            .complete_upload(bucket, key, upload_id, |upload, current, old| {
                condition.check(old).map_err(Refusal::Condition)?;
                let mut segments = Vec::with_capacity(completion.parts.len());
                for chosen in &completion.parts {
                    let n = chosen.part_number;
                    // The catalog lists parts by part number.
                    let now = current
                        .binary_search_by_key(&n, |p| p.part_number)
                        .map(|i| &current[i])
                        .map_err(|_| Refusal::Part(n, "is no longer uploaded"))?;
                    if now.etag != chosen.etag {
                        return Err(Refusal::Part(
                            n,
                            "was uploaded again with other bytes while the upload was being completed",
                        ));
                    }
                    if !sealed_as(&upload.encryption, &now.segment) {
                        return Err(Refusal::Part(n, "is not encrypted as the upload requires"));
                    }
                    segments.push(now.segment.clone());
                }
                let conforming = segments.iter().all(|s| self.conforms(key, s, record));
                Ok(ObjectManifest {
                    version_id: Uuid::now_v7(),
                    size: segments.iter().map(|s| s.size).sum(),
                    etag: completion.etag,
                    last_modified_ms: now_ms(),
                    headers: completion.headers,
                    checksums: Checksums::default(),
                    parts_count: u32::try_from(segments.len()).ok(),
                    policy_epoch: if conforming {
                        record.policy_epoch
                    } else {
                        record.policy_epoch.saturating_sub(1)
                    },
                    segments,
                })
            })?;
        match checked {
            Checked::Done((manifest, doomed)) => {
                self.reap(doomed);
                Ok(Commit::Committed(Box::new(manifest)))
            }
            Checked::Refused(Refusal::Condition(why)) => Ok(Commit::PreconditionFailed(why)),
            Checked::Refused(Refusal::Part(n, why)) => Err(crate::Error::InvalidPart(format!(
                "part {n} of upload {upload_id} of {bucket}/{key} {why}"
            ))),
        }
    }

    /// Aborts an upload of an existing bucket; its parts' sets are reaped.
    pub fn abort_upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
        self.catalog().require_bucket(bucket)?;
        let doomed = self.catalog().abort_upload(bucket, key, upload_id)?;
        self.reap(doomed);
        Ok(())
    }
}

/// Why a completion was refused under the commit lock.
enum Refusal {
    /// The object's current version fails the write condition.
    Condition(PreconditionFailed),
    /// A named part is not what the client completes with: (part number, why).
    Part(u32, &'static str),
}

/// Whether a part's set is sealed as its upload requires: with the master keys for SSE-S3,
/// with the upload's customer key for SSE-C (an upload left to the bucket may hold either).
fn sealed_as(encryption: &UploadEncryption, seg: &Segment) -> bool {
    let wrap = seg.encryption.as_ref().map(|k| &k.wrapped_by);
    match encryption {
        UploadEncryption::Bucket => true,
        UploadEncryption::Master => matches!(wrap, Some(KeyWrap::Master { .. })),
        UploadEncryption::Customer { key_md5 } => seg.customer_key_md5() == Some(key_md5.as_str()),
    }
}

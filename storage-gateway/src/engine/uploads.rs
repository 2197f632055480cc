//! Multipart upload verbs (create, upload a part, complete, abort) and their lookups.
//!
//! Each part is its own shard set, committed when uploaded; completing an upload writes one
//! manifest naming the chosen parts' sets in order, whatever the object size.

use super::objects::{Commit, WriteCondition};
use super::write::WrittenSet;
use super::Engine;
use crate::error::Result;
use crate::meta::Checked;
use crate::records::{now_ms, BucketRecord, Checksums, ContentHeaders, ObjectManifest, PartRecord, UploadRecord};
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
    pub fn complete_upload(
        &self,
        bucket: &str,
        record: &BucketRecord,
        key: &str,
        upload_id: &str,
        completion: Completion,
        condition: &WriteCondition,
    ) -> Result<Commit> {
        let parts = completion.parts;
        let conforming = parts.iter().all(|p| self.conforms(key, &p.segment, record));
        let manifest = ObjectManifest {
            version_id: Uuid::now_v7(),
            size: parts.iter().map(|p| p.segment.size).sum(),
            etag: completion.etag,
            last_modified_ms: now_ms(),
            headers: completion.headers,
            checksums: Checksums::default(),
            parts_count: u32::try_from(parts.len()).ok(),
            policy_epoch: if conforming {
                record.policy_epoch
            } else {
                record.policy_epoch.saturating_sub(1)
            },
            segments: parts.into_iter().map(|p| p.segment).collect(),
        };
        let checked = self
            .catalog()
            .complete_upload(bucket, key, upload_id, &manifest, |cur| condition.check(cur))?;
        Ok(match checked {
            Checked::Done(doomed) => {
                self.reap(doomed);
                Commit::Committed(Box::new(manifest))
            }
            Checked::Refused(why) => Commit::PreconditionFailed(why),
        })
    }

    /// Aborts an upload of an existing bucket; its parts' sets are reaped.
    pub fn abort_upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
        self.catalog().require_bucket(bucket)?;
        let doomed = self.catalog().abort_upload(bucket, key, upload_id)?;
        self.reap(doomed);
        Ok(())
    }
}

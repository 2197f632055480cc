//! Object verbs: put, copy, delete, and the migrator's swap, each writing, committing and
//! reaping as one unit; plus the read-only object lookups.
//!
//! A verb returns what happened as a value ([`Commit`], [`Swap`]): a refused precondition is an
//! outcome, not an error. Errors are failures (store, backends, a missing bucket). A verb that
//! does not commit its written set abandons it, and the sets a commit dooms go to the reaper
//! before the verb returns, so callers hold no cleanup duty.

use super::write::{BodyHasher, Target, WrittenSet};
use super::{Engine, ObjectReader};
use crate::crypto::Encryption;
use crate::error::{Error, Result};
use crate::meta::{Checked, FailedShard, ListPage, ListQuery, Listed, Stale};
use crate::records::{now_ms, BucketRecord, Checksums, ContentHeaders, ObjectManifest};
use bytes::Bytes;
use futures::Stream;
use uuid::Uuid;

/// An ETag condition: any existing object, or one whose ETag (unquoted) is this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EtagCondition {
    /// `*`: any object.
    Any,
    /// This ETag, without quotes.
    Etag(String),
}

impl EtagCondition {
    fn matches(&self, m: &ObjectManifest) -> bool {
        match self {
            Self::Any => true,
            Self::Etag(e) => *e == m.etag,
        }
    }
}

/// Conditions on the version a write replaces (S3's If-Match and If-None-Match on PutObject
/// and CompleteMultipartUpload). Verbs check them inside the commit, under the catalog's
/// commit lock, so they are exact under concurrent writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteCondition {
    /// The write happens only if the current version matches.
    pub if_match: Option<EtagCondition>,
    /// The write happens only if the current version does not match (`Any`: no object).
    pub if_none_match: Option<EtagCondition>,
}

impl WriteCondition {
    /// Whether there is any condition at all.
    #[must_use]
    pub fn is_none(&self) -> bool {
        self.if_match.is_none() && self.if_none_match.is_none()
    }

    /// Checks the condition against the current version (`None`: no object), If-None-Match
    /// first as S3 does.
    pub fn check(&self, current: Option<&ObjectManifest>) -> std::result::Result<(), PreconditionFailed> {
        if let (Some(c), Some(m)) = (&self.if_none_match, current) {
            match c {
                EtagCondition::Any => return Err(PreconditionFailed::Exists),
                EtagCondition::Etag(_) if c.matches(m) => return Err(PreconditionFailed::EtagMatches),
                EtagCondition::Etag(_) => {}
            }
        }
        if let Some(c) = &self.if_match {
            match current {
                None => return Err(PreconditionFailed::Missing),
                Some(m) if !c.matches(m) => return Err(PreconditionFailed::EtagDiffers),
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// Why a write's precondition failed (the message is S3's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PreconditionFailed {
    /// If-None-Match: * and the object exists.
    #[error("If-None-Match: object exists")]
    Exists,
    /// If-None-Match with the current ETag.
    #[error("If-None-Match: ETag matches")]
    EtagMatches,
    /// If-Match and there is no object.
    #[error("If-Match: object does not exist")]
    Missing,
    /// If-Match with another ETag than the current one.
    #[error("If-Match: ETag does not match")]
    EtagDiffers,
}

/// What a conditional object write did.
#[must_use]
#[derive(Debug)]
pub enum Commit {
    /// The new version is committed; the replaced version's sets are on their way to the reaper.
    Committed(Box<ObjectManifest>),
    /// The condition refused the version found; nothing changed, the new set is abandoned.
    PreconditionFailed(PreconditionFailed),
}

/// What a new object version carries besides its bytes.
#[derive(Debug, Clone)]
pub struct NewObject {
    /// ETag without quotes.
    pub etag: String,
    /// Content headers and user metadata.
    pub headers: ContentHeaders,
    /// Whole-object checksums.
    pub checksums: Checksums,
    /// Epoch of the bucket record the set was written under.
    pub policy_epoch: u64,
}

/// What the migrator's manifest swap did.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Swap {
    /// The object is on the new manifest; the sets it no longer names are being reaped.
    Done,
    /// The bucket's policy moved on to a newer epoch: the migration is out of date.
    Superseded,
    /// The object changed meanwhile (overwritten, deleted, a shard moved) or its bucket went:
    /// the client's version wins.
    Raced,
}

/// Where a copy goes and how it is stored.
#[derive(Debug, Clone, Copy)]
pub struct CopyTo<'a> {
    /// Destination bucket.
    pub bucket: &'a str,
    /// Destination key.
    pub key: &'a str,
    /// The destination bucket's record: policy, eligible backends and epoch of the new set.
    pub record: &'a BucketRecord,
    /// How the new set is stored.
    pub encryption: &'a Encryption,
}

/// A copy's source read failing is the copy's failure as such, not a broken request body.
fn source_error(e: Error) -> Error {
    match e {
        Error::Body(b) => match b.downcast::<Error>() {
            Ok(inner) => *inner,
            Err(other) => Error::Body(other),
        },
        other => other,
    }
}

/// An object reader as a body stream for the write path.
fn reader_stream(reader: ObjectReader) -> impl Stream<Item = Result<Bytes>> + Unpin {
    Box::pin(futures::stream::try_unfold(reader, |mut r| async move {
        Ok(r.next_chunk().await?.map(|b| (b, r)))
    }))
}

impl Engine {
    // ---- lookups ----

    /// The object's manifest, if it exists (no check that the bucket exists).
    pub fn object(&self, bucket: &str, key: &str) -> Result<Option<ObjectManifest>> {
        self.catalog().object(bucket, key)
    }

    /// Up to `limit` objects of `bucket` whose keys start with `prefix`, from key bytes `from`
    /// (inclusive; any byte string, e.g. a common prefix followed by 0xFF to skip it).
    pub fn list_objects(&self, bucket: &str, from: &[u8], prefix: &str, limit: usize) -> Result<Vec<Listed>> {
        self.catalog().list_objects(bucket, from, prefix, limit)
    }

    /// One page of `bucket`'s listing (see [`Catalog::list_page`](crate::meta::Catalog::list_page)),
    /// or [`Error::NoSuchBucket`]. The catalog is read on a blocking thread: a page is up to
    /// a thousand steps of RocksDB iteration, which must not hold up an async worker.
    pub async fn list_page(&self, bucket: &str, query: ListQuery<'_>) -> Result<ListPage> {
        let engine = self.clone();
        let what = format!("listing bucket {bucket:?}");
        let bucket = bucket.to_owned();
        let prefix = query.prefix.to_owned();
        let delimiter = query.delimiter.map(str::to_owned);
        let after = query.after.map(<[u8]>::to_vec);
        let max = query.max;
        tokio::task::spawn_blocking(move || {
            engine.catalog().require_bucket(&bucket)?;
            let q = ListQuery {
                prefix: &prefix,
                delimiter: delimiter.as_deref(),
                after: after.as_deref(),
                max,
            };
            engine.catalog().list_page(&bucket, &q)
        })
        .await
        .map_err(|e| Error::Internal(format!("{what}: {e}")))?
    }

    // ---- verbs ----

    /// Commits `written` as the new version of `bucket/key` if `condition` holds for the
    /// version it replaces; the replaced version's sets are reaped. When nothing is committed
    /// (refused, or failed) the written set is abandoned.
    pub fn put_object(
        &self,
        bucket: &str,
        key: &str,
        written: WrittenSet,
        object: NewObject,
        condition: &WriteCondition,
    ) -> Result<Commit> {
        Ok(
            match self.commit_version(bucket, key, written, object, |cur| condition.check(cur))? {
                Checked::Done(m) => Commit::Committed(Box::new(m)),
                Checked::Refused(why) => Commit::PreconditionFailed(why),
            },
        )
    }

    /// Commits `written` as the new version of `bucket/key` if `check` accepts the current one.
    fn commit_version<R>(
        &self,
        bucket: &str,
        key: &str,
        written: WrittenSet,
        object: NewObject,
        check: impl FnOnce(Option<&ObjectManifest>) -> std::result::Result<(), R>,
    ) -> Result<Checked<ObjectManifest, R>> {
        let segment = written.segment().clone();
        let manifest = ObjectManifest {
            version_id: Uuid::now_v7(),
            size: segment.size,
            etag: object.etag,
            last_modified_ms: now_ms(),
            headers: object.headers,
            checksums: object.checksums,
            parts_count: None,
            policy_epoch: object.policy_epoch,
            segments: vec![segment],
        };
        let checked = self
            .catalog()
            .commit_object(bucket, key, &manifest, written.failed(), check)?;
        Ok(match checked {
            Checked::Done(doomed) => {
                written.committed();
                self.reap(doomed);
                Checked::Done(manifest)
            }
            // Dropping `written` abandons it.
            Checked::Refused(why) => Checked::Refused(why),
        })
    }

    /// Writes the bytes `source` reads as a new set under `to`'s bucket policy, computing the
    /// checksums `hasher` asks for; returns the set to commit and the hashes. A failed source
    /// read fails the write with the read's own error.
    pub async fn write_copy(
        &self,
        source: ObjectReader,
        key: &str,
        target: Target<'_>,
        hasher: BodyHasher,
        encryption: &Encryption,
    ) -> Result<(WrittenSet, BodyHasher)> {
        self.write_set_with(key, target, reader_stream(source), hasher, encryption)
            .await
            .map_err(source_error)
    }

    /// Copies what `source` reads to a new object version `to.bucket/to.key` with `headers`,
    /// carrying the checksums `hasher` computes (those the source has); returns the committed
    /// manifest. The copy is a new set under the destination's policy (one owner per set).
    pub async fn copy_object(
        &self,
        source: ObjectReader,
        hasher: BodyHasher,
        to: CopyTo<'_>,
        headers: ContentHeaders,
    ) -> Result<ObjectManifest> {
        let target = Target::for_key(to.record, to.key);
        let (written, hasher) = self.write_copy(source, to.key, target, hasher, to.encryption).await?;
        let (md5, checksums) = hasher.finish();
        let object = NewObject {
            etag: hex::encode(md5),
            headers,
            checksums,
            policy_epoch: to.record.policy_epoch,
        };
        // A copy replaces whatever is there: no condition, so nothing can refuse.
        let unconditional = |_: Option<&ObjectManifest>| Ok::<(), std::convert::Infallible>(());
        match self.commit_version(to.bucket, to.key, written, object, unconditional)? {
            Checked::Done(m) => Ok(m),
            Checked::Refused(never) => match never {},
        }
    }

    /// Deletes `bucket/key` and reaps its sets; `Ok(false)` when there was no such object.
    pub fn delete_object(&self, bucket: &str, key: &str) -> Result<bool> {
        let doomed = self.catalog().delete_object(bucket, key)?;
        let existed = !doomed.is_empty();
        self.reap(doomed);
        Ok(existed)
    }

    /// Deletes each of `keys` of `bucket` (after checking the bucket exists); one result per
    /// key, in order, as [`Engine::delete_object`] gives it.
    pub fn delete_objects(&self, bucket: &str, keys: &[String]) -> Result<Vec<Result<bool>>> {
        self.catalog().require_bucket(bucket)?;
        Ok(keys.iter().map(|k| self.delete_object(bucket, k)).collect())
    }

    /// The migrator's swap: replaces `expect` (the version it started from) by `new` (the same
    /// object under the bucket's current policy, at that policy's epoch) if neither the object
    /// nor the policy changed meanwhile; the sets `new` no longer names are reaped. Shards
    /// that failed while writing `new` are queued for repair with it. On refusal nothing
    /// changes: the caller abandons what it wrote.
    pub fn swap_migrated(
        &self,
        bucket: &str,
        key: &str,
        expect: &ObjectManifest,
        new: &ObjectManifest,
        failed: &[FailedShard],
    ) -> Result<Swap> {
        Ok(match self.catalog().migrate_object(bucket, key, expect, new, failed)? {
            Checked::Done(doomed) => {
                self.reap(doomed);
                Swap::Done
            }
            Checked::Refused(Stale::Policy) => Swap::Superseded,
            Checked::Refused(Stale::Object) => Swap::Raced,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(etag: &str) -> ObjectManifest {
        ObjectManifest {
            version_id: Uuid::now_v7(),
            size: 0,
            etag: etag.into(),
            last_modified_ms: 0,
            headers: ContentHeaders::default(),
            checksums: Checksums::default(),
            parts_count: None,
            policy_epoch: 1,
            segments: Vec::new(),
        }
    }

    #[test]
    fn write_conditions_follow_s3() {
        let m = manifest("abc");
        let etag = |e: &str| Some(EtagCondition::Etag(e.into()));
        let cond = |if_match, if_none_match| WriteCondition {
            if_match,
            if_none_match,
        };
        use PreconditionFailed as P;
        let cases = [
            (cond(None, None), None, Ok(())),
            (cond(None, None), Some(&m), Ok(())),
            (cond(None, Some(EtagCondition::Any)), None, Ok(())),
            (cond(None, Some(EtagCondition::Any)), Some(&m), Err(P::Exists)),
            (cond(None, etag("abc")), Some(&m), Err(P::EtagMatches)),
            (cond(None, etag("xyz")), Some(&m), Ok(())),
            (cond(None, etag("abc")), None, Ok(())),
            (cond(Some(EtagCondition::Any), None), None, Err(P::Missing)),
            (cond(Some(EtagCondition::Any), None), Some(&m), Ok(())),
            (cond(etag("abc"), None), Some(&m), Ok(())),
            (cond(etag("xyz"), None), Some(&m), Err(P::EtagDiffers)),
            (cond(etag("xyz"), None), None, Err(P::Missing)),
            // If-None-Match is judged first.
            (cond(etag("xyz"), Some(EtagCondition::Any)), Some(&m), Err(P::Exists)),
        ];
        for (c, cur, want) in cases {
            assert_eq!(c.check(cur), want, "{c:?} on {:?}", cur.map(|m| &m.etag));
        }
        assert_eq!(
            P::Exists.to_string(),
            "If-None-Match: object exists",
            "messages are S3's"
        );
    }
}

//! Bucket verbs (create, delete, change the storage policy) and the bucket lookups.

use super::Engine;
use crate::error::Result;
use crate::meta::Checked;
use crate::records::{BucketRecord, ChangeInfo, PolicyChange};

/// What a policy change did.
#[must_use]
#[derive(Debug)]
pub enum PolicyChanged<R> {
    /// A new epoch began: the record before and after.
    Changed {
        /// The bucket before.
        old: Box<BucketRecord>,
        /// The bucket now.
        new: Box<BucketRecord>,
    },
    /// The decision found nothing to change: no new epoch.
    Unchanged,
    /// The decision refused the change; nothing was written.
    Refused(R),
}

impl Engine {
    // ---- lookups ----

    /// The bucket's record, if it exists.
    pub fn bucket(&self, name: &str) -> Result<Option<BucketRecord>> {
        self.catalog().bucket(name)
    }

    /// The bucket's record, or [`crate::Error::NoSuchBucket`].
    pub fn require_bucket(&self, name: &str) -> Result<BucketRecord> {
        self.catalog().require_bucket(name)
    }

    /// All buckets, by name.
    pub fn buckets(&self) -> Result<Vec<(String, BucketRecord)>> {
        self.catalog().list_buckets()
    }

    /// Every policy change of a bucket, oldest first.
    pub fn policy_history(&self, name: &str) -> Result<Vec<PolicyChange>> {
        self.catalog().policy_history(name)
    }

    /// How many shards are queued for repair (a scan of the queue: cheap while it is short).
    pub fn repair_queue_len(&self) -> Result<usize> {
        Ok(self.catalog().repairs()?.len())
    }

    // ---- verbs ----

    /// Creates a bucket with `record`; [`crate::Error::BucketExists`] if it exists.
    pub fn create_bucket(&self, name: &str, record: &BucketRecord) -> Result<()> {
        self.catalog().create_bucket(name, record)
    }

    /// Deletes an empty bucket ([`crate::Error::BucketNotEmpty`] otherwise), aborting its
    /// multipart uploads; their parts' sets are reaped.
    pub fn delete_bucket(&self, name: &str) -> Result<()> {
        let doomed = self.catalog().delete_bucket(name)?;
        self.reap(doomed);
        Ok(())
    }

    /// Turns the bucket's encryption of new objects on or off: a policy change like any other
    /// (new epoch, history entry) made by `by` (the S3 operation).
    pub fn set_bucket_encrypted(&self, name: &str, on: bool, by: &str) -> Result<()> {
        self.catalog().set_bucket_encrypted(name, on, by)
    }

    /// Changes a bucket's storage policy: `decide` sees the current record under the commit
    /// lock and returns the new one (`None`: nothing to change) or refuses with its own reason.
    /// A change gets the next epoch and `change`, and is appended to the bucket's history, in
    /// one batch. Errors are failures ([`crate::Error::NoSuchBucket`], the store).
    pub fn change_bucket_policy<R>(
        &self,
        name: &str,
        change: ChangeInfo,
        decide: impl FnOnce(&BucketRecord) -> std::result::Result<Option<BucketRecord>, R>,
    ) -> Result<PolicyChanged<R>> {
        Ok(match self.catalog().change_bucket(name, change, decide)? {
            Checked::Done(Some((old, new))) => PolicyChanged::Changed {
                old: Box::new(old),
                new: Box::new(new),
            },
            Checked::Done(None) => PolicyChanged::Unchanged,
            Checked::Refused(r) => PolicyChanged::Refused(r),
        })
    }
}

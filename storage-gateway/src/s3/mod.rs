//! The S3 front: s3s parses, authenticates and serialises; these modules map each operation
//! onto the engine and the catalog, one module per family of operations.

mod auth;
mod bucket;
mod copy;
mod errors;
mod headers;
mod host;
mod list;
mod multipart;
mod object;
mod observe;
pub mod principal;
#[cfg(test)]
mod props;
mod sse;
pub mod throttle;

pub use auth::{screen, StaticAuth, MAX_PRESIGNED_EXPIRY_SECS};
pub use host::GatewayHost;
pub use observe::{BucketExists, KnownBuckets, Observation, ObservedBody, TaggingAccess, ANONYMOUS};
pub use throttle::{ThrottleError, Throttles};

use crate::engine::Engine;
use crate::limits::memory::MemoryBudget;
use crate::limits::LimitsConfig;
use placement::BucketPolicy;
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, S3};

/// How long a GET response waits on a client that reads nothing, unless configured.
pub const DEFAULT_RESPONSE_STALL: std::time::Duration = std::time::Duration::from_secs(60);

/// The S3 service: every supported operation, the rest answer NotImplemented. Operations that
/// change state answer through [`Gateway::acked`].
#[derive(Clone)]
pub struct Gateway {
    engine: Engine,
    default_policy: BucketPolicy,
    /// Whether new buckets encrypt at rest.
    encrypt_new_buckets: bool,
    /// Memory for PUT and GET bodies in flight, shared by all requests.
    memory: MemoryBudget,
    /// How long a GET response may wait on a client that takes none of its bytes before it is
    /// abandoned (and the object's shard sets unpinned).
    response_stall: std::time::Duration,
}

impl Gateway {
    /// A gateway over `engine`; buckets created without a preset get `default_policy`.
    #[must_use]
    pub fn new(engine: Engine, default_policy: BucketPolicy) -> Self {
        Self {
            engine,
            default_policy,
            encrypt_new_buckets: false,
            memory: MemoryBudget::new(LimitsConfig::BODY_MEMORY_BYTES, LimitsConfig::BODY_MEMORY_WAIT),
            response_stall: DEFAULT_RESPONSE_STALL,
        }
    }

    /// Sets how long a GET response may wait on a client that reads nothing.
    #[must_use]
    pub fn response_stall_timeout(mut self, stall: std::time::Duration) -> Self {
        self.response_stall = stall;
        self
    }

    /// Answers a write only once what it committed is durable (`--durability fsync`: the
    /// catalog's WAL synced, shared with concurrent writes). Every operation that changes
    /// state goes through it; a failure answers as it is.
    async fn acked<T>(&self, res: S3Result<T>) -> S3Result<T> {
        let out = res?;
        self.engine.settle().await?;
        crate::crash::point(crate::crash::CrashPoint::BeforeAck);
        Ok(out)
    }

    /// Sets whether buckets created from now on encrypt their objects at rest.
    #[must_use]
    pub fn encrypt_new_buckets(mut self, on: bool) -> Self {
        self.encrypt_new_buckets = on;
        self
    }

    /// Shares `memory` among the bodies of PUT, GET and copy requests.
    #[must_use]
    pub fn memory_budget(mut self, memory: MemoryBudget) -> Self {
        self.memory = memory;
        self
    }
}

#[async_trait::async_trait]
impl S3 for Gateway {
    async fn create_bucket(&self, req: S3Request<CreateBucketInput>) -> S3Result<S3Response<CreateBucketOutput>> {
        self.acked(self.create_bucket_op(req).await).await
    }
    async fn head_bucket(&self, req: S3Request<HeadBucketInput>) -> S3Result<S3Response<HeadBucketOutput>> {
        self.head_bucket_op(req).await
    }
    async fn delete_bucket(&self, req: S3Request<DeleteBucketInput>) -> S3Result<S3Response<DeleteBucketOutput>> {
        self.acked(self.delete_bucket_op(req).await).await
    }
    async fn list_buckets(&self, req: S3Request<ListBucketsInput>) -> S3Result<S3Response<ListBucketsOutput>> {
        self.list_buckets_op(req).await
    }
    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.get_bucket_location_op(req).await
    }
    async fn put_bucket_encryption(
        &self,
        req: S3Request<PutBucketEncryptionInput>,
    ) -> S3Result<S3Response<PutBucketEncryptionOutput>> {
        self.acked(self.put_bucket_encryption_op(req).await).await
    }
    async fn get_bucket_encryption(
        &self,
        req: S3Request<GetBucketEncryptionInput>,
    ) -> S3Result<S3Response<GetBucketEncryptionOutput>> {
        self.get_bucket_encryption_op(req).await
    }
    async fn delete_bucket_encryption(
        &self,
        req: S3Request<DeleteBucketEncryptionInput>,
    ) -> S3Result<S3Response<DeleteBucketEncryptionOutput>> {
        self.acked(self.delete_bucket_encryption_op(req).await).await
    }
    async fn put_object(&self, req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
        self.acked(self.put_object_op(req).await).await
    }
    async fn get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        self.get_object_op(req).await
    }
    async fn head_object(&self, req: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
        self.head_object_op(req).await
    }
    async fn delete_object(&self, req: S3Request<DeleteObjectInput>) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.acked(self.delete_object_op(req).await).await
    }
    async fn delete_objects(&self, req: S3Request<DeleteObjectsInput>) -> S3Result<S3Response<DeleteObjectsOutput>> {
        self.acked(self.delete_objects_op(req).await).await
    }
    async fn list_objects(&self, req: S3Request<ListObjectsInput>) -> S3Result<S3Response<ListObjectsOutput>> {
        self.list_objects_op(req).await
    }
    async fn list_objects_v2(&self, req: S3Request<ListObjectsV2Input>) -> S3Result<S3Response<ListObjectsV2Output>> {
        self.list_objects_v2_op(req).await
    }
    async fn copy_object(&self, req: S3Request<CopyObjectInput>) -> S3Result<S3Response<CopyObjectOutput>> {
        self.acked(self.copy_object_op(req).await).await
    }
    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        self.acked(self.create_multipart_upload_op(req).await).await
    }
    async fn upload_part(&self, req: S3Request<UploadPartInput>) -> S3Result<S3Response<UploadPartOutput>> {
        self.acked(self.upload_part_op(req).await).await
    }
    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        self.acked(self.upload_part_copy_op(req).await).await
    }
    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        self.acked(self.complete_multipart_upload_op(req).await).await
    }
    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        self.acked(self.abort_multipart_upload_op(req).await).await
    }
    async fn list_parts(&self, req: S3Request<ListPartsInput>) -> S3Result<S3Response<ListPartsOutput>> {
        self.list_parts_op(req).await
    }
    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        self.list_multipart_uploads_op(req).await
    }
}

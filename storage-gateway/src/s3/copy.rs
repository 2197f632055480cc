//! CopyObject: the source is read through the normal read path and written as a new set.
//!
//! Re-encoding rather than sharing shard sets keeps one owner per set (simple, crash-safe
//! deletion) and lets the destination bucket's policy apply.

use super::headers::{check_copy_source_conditions, content_headers, ts};
use super::{sse, Gateway};
use crate::engine::{BodyHasher, CopyTo};
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

/// The source bucket and key of a copy.
pub(super) fn copy_source(src: &CopySource) -> S3Result<(String, String)> {
    match src {
        CopySource::Bucket {
            bucket,
            key,
            version_id,
        } => {
            if version_id.as_deref().is_some_and(|v| v != "null") {
                return Err(s3_error!(
                    InvalidArgument,
                    "versioning is not enabled: versionId is not supported"
                ));
            }
            if key.is_empty() {
                return Err(s3_error!(
                    InvalidArgument,
                    "x-amz-copy-source must name the source bucket and key: bucket/key"
                ));
            }
            Ok((bucket.to_string(), key.to_string()))
        }
        _ => Err(s3_error!(
            NotImplemented,
            "copy sources other than bucket/key are not supported"
        )),
    }
}

impl Gateway {
    pub(super) async fn copy_object_op(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let input = req.input;
        let (src_bucket, src_key) = copy_source(&input.copy_source)?;
        let dst = self.engine.require_bucket(&input.bucket)?;
        let src_customer = sse::customer_key(
            input.copy_source_sse_customer_algorithm.as_ref(),
            input.copy_source_sse_customer_key.as_ref(),
            input.copy_source_sse_customer_key_md5.as_ref(),
        )?;
        let dst_customer = sse::customer_key(
            input.sse_customer_algorithm.as_ref(),
            input.sse_customer_key.as_ref(),
            input.sse_customer_key_md5.as_ref(),
        )?;
        sse::refuse_kms(input.ssekms_key_id.as_ref(), input.ssekms_encryption_context.as_ref())?;
        let encryption = self.encryption_for(&dst, dst_customer, input.server_side_encryption.as_ref())?;
        let (src, pins) = self.pinned_manifest(&src_bucket, &src_key)?;
        sse::check_read_key(&src, src_customer.as_ref())?;
        check_copy_source_conditions(
            &src,
            input.copy_source_if_match.as_ref(),
            input.copy_source_if_none_match.as_ref(),
            input.copy_source_if_modified_since.as_ref(),
            input.copy_source_if_unmodified_since.as_ref(),
        )?;
        let replace = input
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        // Copying onto itself is how S3 clients change an object's encryption, so that is
        // allowed; anything else unchanged is refused as S3 does.
        let reencrypts =
            src_customer.is_some() || input.sse_customer_key.is_some() || input.server_side_encryption.is_some();
        if src_bucket == input.bucket && src_key == input.key && !replace && !reencrypts {
            return Err(s3_error!(
                InvalidRequest,
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."
            ));
        }
        if src.size > 5 << 30 {
            return Err(s3_error!(
                InvalidRequest,
                "source larger than 5 GiB: use UploadPartCopy"
            ));
        }
        let headers = if replace {
            content_headers(
                input.content_type,
                input.content_encoding,
                input.content_disposition,
                input.content_language,
                input.cache_control,
                input.expires.as_ref(),
                input.metadata,
            )
        } else {
            src.headers.clone()
        };
        let _memory = self
            .reserve_memory(&dst.layout_for(&input.key).0, Some(src.size), src.size, &input.key)
            .await?;
        let reader = self
            .engine
            .reader(&src_bucket, &src_key, &src, pins, 0..src.size)
            .with_customer_key(src_customer);
        let to = CopyTo {
            bucket: &input.bucket,
            key: &input.key,
            record: &dst,
            encryption: &encryption,
        };
        // The copy carries the checksums the source has.
        let hasher = BodyHasher::carrying(&src.checksums);
        let m = self.engine.copy_object(reader, hasher, to, headers).await?;
        let checksums = m.checksums.clone();
        let (server_side_encryption, sse_customer_algorithm, sse_customer_key_md5) = sse::echo(&m);
        Ok(S3Response::new(CopyObjectOutput {
            server_side_encryption,
            sse_customer_algorithm,
            sse_customer_key_md5,
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(ETag::Strong(m.etag.clone())),
                last_modified: Some(ts(m.last_modified_ms)),
                checksum_crc32: checksums.crc32,
                checksum_crc32c: checksums.crc32c,
                checksum_sha1: checksums.sha1,
                checksum_sha256: checksums.sha256,
                checksum_crc64nvme: checksums.crc64nvme,
                ..Default::default()
            }),
            ..Default::default()
        }))
    }
}

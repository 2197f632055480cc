//! Multipart uploads. Each part is coded as its own shard set when uploaded; completing the
//! upload only writes a manifest listing the chosen parts' sets in order, so completion costs
//! one metadata batch whatever the object size.

use super::copy::copy_source;
use super::headers::{
    check_copy_source_conditions, content_headers, copy_source_range, precondition_failed, provided_checksums, ts,
    write_condition,
};
use super::object::IncomingBody;
use super::{sse, Gateway};
use crate::crypto::Encryption;
use crate::engine::{BodyHasher, Commit, Completion, NewPart, Target};
use crate::records::{now_ms, PartRecord, UploadEncryption, UploadRecord};
use md5::Digest;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};
use uuid::Uuid;

/// Smallest part S3 accepts, except for the last.
const MIN_PART_SIZE: u64 = 5 << 20;
/// Largest part S3 accepts.
const MAX_PART_SIZE: i64 = 5 << 30;
const MAX_PART_NUMBER: i32 = 10_000;

fn part_number(n: i32) -> S3Result<u32> {
    if !(1..=MAX_PART_NUMBER).contains(&n) {
        return Err(s3_error!(
            InvalidArgument,
            "Part number must be an integer between 1 and 10000, inclusive"
        ));
    }
    Ok(u32::try_from(n).unwrap_or(1))
}

fn unquote(etag: &str) -> &str {
    etag.trim().trim_matches('"')
}

impl Gateway {
    pub(super) async fn create_multipart_upload_op(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let input = req.input;
        let bucket = self.engine.require_bucket(&input.bucket)?;
        let customer = sse::customer_key(
            input.sse_customer_algorithm.as_ref(),
            input.sse_customer_key.as_ref(),
            input.sse_customer_key_md5.as_ref(),
        )?;
        sse::refuse_kms(input.ssekms_key_id.as_ref(), input.ssekms_encryption_context.as_ref())?;
        // Decided now, for every part: a bad combination fails before any part is uploaded,
        // and `--sse AES256` holds for the parts whatever the bucket's default.
        let encryption = self.encryption_for(&bucket, customer.clone(), input.server_side_encryption.as_ref())?;
        let upload_id = Uuid::new_v4().simple().to_string();
        let rec = UploadRecord {
            encryption: match &encryption {
                Encryption::Customer(c) => UploadEncryption::Customer {
                    key_md5: c.key_md5.clone(),
                },
                Encryption::Master(_) => UploadEncryption::Master,
                Encryption::None => UploadEncryption::Bucket,
            },
            upload_id: upload_id.clone(),
            created_ms: now_ms(),
            headers: content_headers(
                input.content_type,
                input.content_encoding,
                input.content_disposition,
                input.content_language,
                input.cache_control,
                input.expires.as_ref(),
                input.metadata,
            ),
            checksum_algorithm: input.checksum_algorithm.as_ref().map(|a| a.as_str().to_owned()),
        };
        self.engine.create_upload(&input.bucket, &input.key, &rec)?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            server_side_encryption: matches!(encryption, Encryption::Master(_))
                .then(|| ServerSideEncryption::from_static(ServerSideEncryption::AES256)),
            sse_customer_algorithm: customer.as_ref().map(|_| "AES256".to_owned()),
            sse_customer_key_md5: customer.map(|c| c.key_md5),
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(upload_id),
            checksum_algorithm: input.checksum_algorithm,
            ..Default::default()
        }))
    }

    pub(super) async fn upload_part_op(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let input = req.input;
        let n = part_number(input.part_number)?;
        if input.content_length.is_some_and(|l| l > MAX_PART_SIZE) {
            return Err(s3_error!(EntityTooLarge, "parts are limited to 5 GiB"));
        }
        let bucket = self.engine.require_bucket(&input.bucket)?;
        let upload = self.engine.upload(&input.bucket, &input.key, &input.upload_id)?;
        let customer = sse::customer_key(
            input.sse_customer_algorithm.as_ref(),
            input.sse_customer_key.as_ref(),
            input.sse_customer_key_md5.as_ref(),
        )?;
        let encryption = self.part_encryption(&bucket, &upload, customer)?;
        let (written, md5, checksums) = self
            .store_body(
                &input.key,
                Target::for_key(&bucket, &input.key),
                IncomingBody {
                    provided: provided_checksums!(input),
                    body: input.body,
                    content_length: input.content_length,
                    content_md5: input.content_md5.as_deref(),
                    algorithm: input.checksum_algorithm.as_ref(),
                },
                &req.headers,
                req.trailing_headers.as_ref(),
                &encryption,
            )
            .await?;
        let part = NewPart {
            part_number: n,
            etag: hex::encode(md5),
            checksums: checksums.clone(),
        };
        let part = self
            .engine
            .commit_part(&input.bucket, &input.key, &input.upload_id, written, part)?;
        let (server_side_encryption, sse_customer_algorithm, sse_customer_key_md5) = part_echo(&part);
        Ok(S3Response::new(UploadPartOutput {
            server_side_encryption,
            sse_customer_algorithm,
            sse_customer_key_md5,
            e_tag: Some(ETag::Strong(part.etag)),
            checksum_crc32: checksums.crc32,
            checksum_crc32c: checksums.crc32c,
            checksum_sha1: checksums.sha1,
            checksum_sha256: checksums.sha256,
            checksum_crc64nvme: checksums.crc64nvme,
            ..Default::default()
        }))
    }

    pub(super) async fn upload_part_copy_op(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let input = req.input;
        let n = part_number(input.part_number)?;
        let (src_bucket, src_key) = copy_source(&input.copy_source)?;
        let bucket = self.engine.require_bucket(&input.bucket)?;
        let upload = self.engine.upload(&input.bucket, &input.key, &input.upload_id)?;
        let customer = sse::customer_key(
            input.sse_customer_algorithm.as_ref(),
            input.sse_customer_key.as_ref(),
            input.sse_customer_key_md5.as_ref(),
        )?;
        let encryption = self.part_encryption(&bucket, &upload, customer)?;
        let src_customer = sse::customer_key(
            input.copy_source_sse_customer_algorithm.as_ref(),
            input.copy_source_sse_customer_key.as_ref(),
            input.copy_source_sse_customer_key_md5.as_ref(),
        )?;
        let (src, pins) = self.pinned_manifest(&src_bucket, &src_key)?;
        sse::check_read_key(&src, src_customer.as_ref())?;
        check_copy_source_conditions(
            &src,
            input.copy_source_if_match.as_ref(),
            input.copy_source_if_none_match.as_ref(),
            input.copy_source_if_modified_since.as_ref(),
            input.copy_source_if_unmodified_since.as_ref(),
        )?;
        let range = match input.copy_source_range.as_deref() {
            None => 0..src.size,
            Some(r) => copy_source_range(r, src.size)?,
        };
        if range.end - range.start > MAX_PART_SIZE as u64 {
            return Err(s3_error!(InvalidRequest, "a part may hold at most 5 GiB"));
        }
        let len = range.end - range.start;
        let _memory = self
            .reserve_memory(&bucket.layout_for(&input.key).0, Some(len), len, &input.key)
            .await?;
        let reader = self
            .engine
            .reader(&src_bucket, &src_key, &src, pins, range)
            .with_customer_key(src_customer);
        let hasher = BodyHasher::new(Default::default());
        let (written, hasher) = self
            .engine
            .write_copy(
                reader,
                &input.key,
                Target::for_key(&bucket, &input.key),
                hasher,
                &encryption,
            )
            .await?;
        let md5: [u8; 16] = hasher.md5.finalize().into();
        let part = NewPart {
            part_number: n,
            etag: hex::encode(md5),
            checksums: Default::default(),
        };
        let part = self
            .engine
            .commit_part(&input.bucket, &input.key, &input.upload_id, written, part)?;
        let (server_side_encryption, sse_customer_algorithm, sse_customer_key_md5) = part_echo(&part);
        Ok(S3Response::new(UploadPartCopyOutput {
            server_side_encryption,
            sse_customer_algorithm,
            sse_customer_key_md5,
            copy_part_result: Some(CopyPartResult {
                e_tag: Some(ETag::Strong(part.etag)),
                last_modified: Some(ts(part.last_modified_ms)),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    pub(super) async fn complete_multipart_upload_op(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let input = req.input;
        let bucket = self.engine.require_bucket(&input.bucket)?;
        let upload = self.engine.upload(&input.bucket, &input.key, &input.upload_id)?;
        let requested = input.multipart_upload.and_then(|m| m.parts).unwrap_or_default();
        if requested.is_empty() {
            return Err(s3_error!(MalformedXML, "You must specify at least one part"));
        }
        let stored: std::collections::HashMap<u32, PartRecord> = self
            .engine
            .parts(&input.upload_id)?
            .into_iter()
            .map(|p| (p.part_number, p))
            .collect();
        let mut chosen: Vec<&PartRecord> = Vec::with_capacity(requested.len());
        let mut prev = 0u32;
        for p in &requested {
            let n = part_number(
                p.part_number
                    .ok_or_else(|| s3_error!(InvalidPart, "a part has no PartNumber"))?,
            )?;
            if n <= prev {
                return Err(s3_error!(
                    InvalidPartOrder,
                    "The list of parts was not in ascending order. Parts must be ordered by part number."
                ));
            }
            prev = n;
            let rec = stored
                .get(&n)
                .ok_or_else(|| s3_error!(InvalidPart, "part {n} was not uploaded"))?;
            let want = p
                .e_tag
                .as_ref()
                .map(|e| unquote(e.value()).to_owned())
                .unwrap_or_default();
            if want != rec.etag {
                return Err(s3_error!(
                    InvalidPart,
                    "part {n}: ETag {want:?} does not match the uploaded part"
                ));
            }
            chosen.push(rec);
        }
        let last = chosen.len() - 1;
        for (i, rec) in chosen.iter().enumerate() {
            if i != last && rec.segment.size < MIN_PART_SIZE {
                return Err(s3_error!(
                    EntityTooSmall,
                    "part {} is {} bytes; all parts but the last must be at least 5 MiB",
                    rec.part_number,
                    rec.segment.size
                ));
            }
        }
        let mut etag_md5 = md5::Md5::new();
        for rec in &chosen {
            let raw = hex::decode(&rec.etag).map_err(|_| s3_error!(InternalError, "stored part ETag is not hex"))?;
            etag_md5.update(&raw);
        }
        let etag = format!("{}-{}", hex::encode(etag_md5.finalize()), chosen.len());
        let completion = Completion {
            parts: chosen.into_iter().cloned().collect(),
            etag: etag.clone(),
            headers: upload.headers,
        };
        let condition = write_condition(input.if_match.as_ref(), input.if_none_match.as_ref());
        let manifest = match self.engine.complete_upload(
            &input.bucket,
            &bucket,
            &input.key,
            &input.upload_id,
            completion,
            &condition,
        )? {
            Commit::Committed(m) => *m,
            Commit::PreconditionFailed(why) => return Err(precondition_failed(why)),
        };
        let (server_side_encryption, _, _) = sse::echo(&manifest);
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            server_side_encryption,
            bucket: Some(input.bucket.clone()),
            key: Some(input.key.clone()),
            e_tag: Some(ETag::Strong(etag)),
            location: Some(format!("/{}/{}", input.bucket, input.key)),
            ..Default::default()
        }))
    }

    pub(super) async fn abort_multipart_upload_op(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let input = req.input;
        self.engine.abort_upload(&input.bucket, &input.key, &input.upload_id)?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    pub(super) async fn list_parts_op(&self, req: S3Request<ListPartsInput>) -> S3Result<S3Response<ListPartsOutput>> {
        let input = req.input;
        self.engine.require_bucket(&input.bucket)?;
        let upload = self.engine.upload(&input.bucket, &input.key, &input.upload_id)?;
        let max = usize::try_from(input.max_parts.unwrap_or(1000).clamp(0, 1000)).unwrap_or(1000);
        let marker = u32::try_from(input.part_number_marker.unwrap_or(0).max(0)).unwrap_or(0);
        let all: Vec<PartRecord> = self
            .engine
            .parts(&input.upload_id)?
            .into_iter()
            .filter(|p| p.part_number > marker)
            .collect();
        let truncated = all.len() > max;
        let page: Vec<&PartRecord> = all.iter().take(max).collect();
        let next = if truncated {
            page.last().map(|p| p.part_number)
        } else {
            None
        };
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            max_parts: Some(i32::try_from(max).unwrap_or(1000)),
            part_number_marker: input.part_number_marker,
            next_part_number_marker: next.and_then(|n| i32::try_from(n).ok()),
            is_truncated: Some(truncated),
            checksum_algorithm: upload.checksum_algorithm.map(ChecksumAlgorithm::from),
            parts: Some(
                page.iter()
                    .map(|p| Part {
                        part_number: i32::try_from(p.part_number).ok(),
                        e_tag: Some(ETag::Strong(p.etag.clone())),
                        size: i64::try_from(p.segment.size).ok(),
                        last_modified: Some(ts(p.last_modified_ms)),
                        checksum_crc32: p.checksums.crc32.clone(),
                        checksum_crc32c: p.checksums.crc32c.clone(),
                        checksum_sha1: p.checksums.sha1.clone(),
                        checksum_sha256: p.checksums.sha256.clone(),
                        checksum_crc64nvme: p.checksums.crc64nvme.clone(),
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }

    pub(super) async fn list_multipart_uploads_op(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let input = req.input;
        self.engine.require_bucket(&input.bucket)?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let max = usize::try_from(input.max_uploads.unwrap_or(1000).clamp(0, 1000)).unwrap_or(1000);
        let key_marker = input.key_marker.clone().unwrap_or_default();
        let id_marker = input.upload_id_marker.clone().unwrap_or_default();
        let all: Vec<(String, UploadRecord)> = self
            .engine
            .uploads(&input.bucket, &prefix)?
            .into_iter()
            .filter(|(k, u)| {
                key_marker.is_empty()
                    || k.as_str() > key_marker.as_str()
                    || (k == &key_marker && !id_marker.is_empty() && u.upload_id.as_str() > id_marker.as_str())
            })
            .collect();
        let mut uploads = Vec::new();
        let mut common: Vec<String> = Vec::new();
        let mut truncated = false;
        let mut last: Option<(String, String)> = None;
        for (key, u) in all {
            if let Some(d) = input.delimiter.as_deref().filter(|d| !d.is_empty()) {
                if let Some(i) = key[prefix.len()..].find(d) {
                    let cp = key[..prefix.len() + i + d.len()].to_owned();
                    if common.last() != Some(&cp) {
                        if uploads.len() + common.len() == max {
                            truncated = true;
                            break;
                        }
                        common.push(cp);
                    }
                    continue;
                }
            }
            if uploads.len() + common.len() == max {
                truncated = true;
                break;
            }
            last = Some((key.clone(), u.upload_id.clone()));
            uploads.push(MultipartUpload {
                key: Some(key),
                upload_id: Some(u.upload_id),
                initiated: Some(ts(u.created_ms)),
                storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
                ..Default::default()
            });
        }
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: input.prefix,
            delimiter: input.delimiter,
            key_marker: input.key_marker,
            upload_id_marker: input.upload_id_marker,
            max_uploads: Some(i32::try_from(max).unwrap_or(1000)),
            is_truncated: Some(truncated),
            next_key_marker: if truncated {
                last.as_ref().map(|l| l.0.clone())
            } else {
                None
            },
            next_upload_id_marker: if truncated { last.map(|l| l.1) } else { None },
            uploads: Some(uploads),
            common_prefixes: Some(common.into_iter().map(|p| CommonPrefix { prefix: Some(p) }).collect()),
            ..Default::default()
        }))
    }
}

impl Gateway {
    /// How a part of `upload` is stored: as the upload was created (SSE-C with its key, which
    /// the part request must repeat; SSE-S3), else as the bucket says now.
    fn part_encryption(
        &self,
        bucket: &crate::records::BucketRecord,
        upload: &UploadRecord,
        customer: Option<crate::crypto::CustomerKey>,
    ) -> S3Result<Encryption> {
        match (&upload.encryption, customer) {
            (UploadEncryption::Customer { .. }, None) => Err(s3_error!(
                InvalidRequest,
                "The multipart upload was initiated with SSE-C; every part needs the same customer key"
            )),
            (UploadEncryption::Customer { key_md5 }, Some(c)) if *key_md5 != c.key_md5 => Err(s3_error!(
                InvalidArgument,
                "The customer-provided key differs from the one the multipart upload was initiated with"
            )),
            (UploadEncryption::Customer { .. }, Some(c)) => Ok(Encryption::Customer(c)),
            (_, Some(_)) => Err(s3_error!(
                InvalidRequest,
                "The multipart upload was initiated without SSE-C; parts cannot use a customer key"
            )),
            (UploadEncryption::Master, None) => Ok(Encryption::Master(self.engine.keys().clone())),
            (UploadEncryption::Bucket, None) => self.encryption_for(bucket, None, None),
        }
    }
}

/// Encryption headers for a part response.
fn part_echo(part: &PartRecord) -> (Option<ServerSideEncryption>, Option<String>, Option<String>) {
    match (&part.segment.encryption, part.segment.customer_key_md5()) {
        (_, Some(md5)) => (None, Some("AES256".to_owned()), Some(md5.to_owned())),
        (Some(_), None) => (
            Some(ServerSideEncryption::from_static(ServerSideEncryption::AES256)),
            None,
            None,
        ),
        (None, None) => (None, None, None),
    }
}

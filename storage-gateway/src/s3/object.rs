//! Single-object operations: PUT, GET, HEAD, DELETE and multi-object DELETE.

use super::headers::{
    check_read_conditions, checksum_hasher, content_headers, etag, get_range, metadata, precondition_failed,
    provided_checksums, ts, verify_body, write_condition,
};
use super::{sse, Gateway};
use crate::crypto::Encryption;
use crate::engine::{BodyHasher, Commit, NewObject, ObjectReader, Pins, Target, WrittenSet};
use crate::limits::memory::{read_footprint, write_footprint, Reservation};
use crate::records::{Checksums, ObjectManifest};
use bytes::Bytes;
use futures::Stream;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;

/// A request body and what the client declared about it.
pub(super) struct IncomingBody<'a> {
    pub body: Option<StreamingBlob>,
    pub content_length: Option<i64>,
    pub content_md5: Option<&'a str>,
    pub algorithm: Option<&'a ChecksumAlgorithm>,
    pub provided: Checksums,
}

/// Largest single PUT S3 accepts.
const MAX_PUT_SIZE: i64 = 5 << 30;

/// Chunks buffered between the shard reader task and the HTTP response.
const BODY_CHUNKS_IN_FLIGHT: usize = 2;

impl Gateway {
    /// Reserves the memory a write of `len` bytes (`None`: undeclared) under `policy` holds
    /// at once, plus a read of `read_len` bytes when the data comes from another object.
    pub(super) async fn reserve_memory(
        &self,
        policy: &placement::BucketPolicy,
        len: Option<u64>,
        read_len: u64,
        what: &str,
    ) -> S3Result<Reservation> {
        // The write's shards may land on any backend: assume the largest part buffer.
        let part_size = self.engine.backends().iter().map(|b| b.part_size() as u64).max();
        let write = write_footprint(policy, len, part_size.unwrap_or(0));
        let read = if read_len > 0 {
            read_footprint(read_len, BODY_CHUNKS_IN_FLIGHT)
        } else {
            0
        };
        self.memory.reserve(write.saturating_add(read), what).await
    }

    /// Streams a client body into a new shard set and verifies it (length, Content-MD5,
    /// x-amz-checksum-*); on any failure the set is dropped, which abandons it.
    pub(super) async fn store_body(
        &self,
        key: &str,
        target: Target<'_>,
        incoming: IncomingBody<'_>,
        headers: &http::HeaderMap,
        trailers: Option<&s3s::TrailingHeaders>,
        encryption: &Encryption,
    ) -> S3Result<(WrittenSet, [u8; 16], Checksums)> {
        let hasher = BodyHasher::new(checksum_hasher(incoming.algorithm, &incoming.provided, headers)?);
        let declared = incoming.content_length.and_then(|l| u64::try_from(l).ok());
        let _memory = self.reserve_memory(&target.policy, declared, 0, key).await?;
        let body = incoming.body.unwrap_or_else(|| StreamingBlob::from(s3s::Body::empty()));
        let (written, hasher) = self
            .engine
            .write_set_with(key, target, body, hasher, encryption)
            .await?;
        let size = written.segment().size;
        if incoming
            .content_length
            .is_some_and(|l| u64::try_from(l).ok() != Some(size))
        {
            return Err(s3_error!(
                IncompleteBody,
                "body has {size} bytes, Content-Length said otherwise"
            ));
        }
        let (md5, checksums) = verify_body(hasher, incoming.content_md5, incoming.provided, trailers)?;
        Ok((written, md5, checksums))
    }

    pub(super) async fn put_object_op(&self, req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
        let input = req.input;
        let bucket = self.engine.require_bucket(&input.bucket)?;
        if input.content_length.is_some_and(|l| l > MAX_PUT_SIZE) {
            return Err(s3_error!(
                EntityTooLarge,
                "single PUT is limited to 5 GiB; use multipart upload"
            ));
        }
        let condition = write_condition(input.if_match.as_ref(), input.if_none_match.as_ref());
        // Fail fast on a precondition that already fails; the commit checks it again.
        if !condition.is_none() {
            let cur = self.engine.object(&input.bucket, &input.key)?;
            condition.check(cur.as_ref()).map_err(precondition_failed)?;
        }
        let customer = sse::customer_key(
            input.sse_customer_algorithm.as_ref(),
            input.sse_customer_key.as_ref(),
            input.sse_customer_key_md5.as_ref(),
        )?;
        sse::refuse_kms(input.ssekms_key_id.as_ref(), input.ssekms_encryption_context.as_ref())?;
        let encryption = self.encryption_for(&bucket, customer, input.server_side_encryption.as_ref())?;
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
        let size = written.segment().size;
        let headers = content_headers(
            input.content_type,
            input.content_encoding,
            input.content_disposition,
            input.content_language,
            input.cache_control,
            input.expires.as_ref(),
            input.metadata,
        );
        let object = NewObject {
            etag: hex::encode(md5),
            headers,
            checksums: checksums.clone(),
            policy_epoch: bucket.policy_epoch,
        };
        let m = match self
            .engine
            .put_object(&input.bucket, &input.key, written, object, &condition)?
        {
            Commit::Committed(m) => *m,
            Commit::PreconditionFailed(why) => return Err(precondition_failed(why)),
        };
        tracing::debug!(bucket = %input.bucket, key = %input.key, size, "object stored");
        let (server_side_encryption, sse_customer_algorithm, sse_customer_key_md5) = sse::echo(&m);
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(etag(&m)),
            server_side_encryption,
            sse_customer_algorithm,
            sse_customer_key_md5,
            checksum_crc32: checksums.crc32,
            checksum_crc32c: checksums.crc32c,
            checksum_sha1: checksums.sha1,
            checksum_sha256: checksums.sha256,
            checksum_crc64nvme: checksums.crc64nvme,
            size: i64::try_from(size).ok(),
            ..Default::default()
        }))
    }

    /// The manifest of an existing object, distinguishing a missing bucket from a missing key.
    pub(super) fn manifest(&self, bucket: &str, key: &str) -> S3Result<ObjectManifest> {
        match self.engine.object(bucket, key)? {
            Some(m) => Ok(m),
            None => {
                self.engine.require_bucket(bucket)?;
                Err(crate::error::Error::NoSuchKey {
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                }
                .into())
            }
        }
    }

    /// Like [`Self::manifest`], with the object's shard sets pinned for reading.
    pub(super) fn pinned_manifest(&self, bucket: &str, key: &str) -> S3Result<(ObjectManifest, Pins)> {
        match self.engine.pinned_object(bucket, key)? {
            Some(found) => Ok(found),
            None => {
                self.engine.require_bucket(bucket)?;
                Err(crate::error::Error::NoSuchKey {
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                }
                .into())
            }
        }
    }

    pub(super) async fn get_object_op(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        let (m, pins) = self.pinned_manifest(&input.bucket, &input.key)?;
        check_read_conditions(
            &m,
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
            input.if_modified_since.as_ref(),
            input.if_unmodified_since.as_ref(),
        )?;
        let customer = sse::customer_key(
            input.sse_customer_algorithm.as_ref(),
            input.sse_customer_key.as_ref(),
            input.sse_customer_key_md5.as_ref(),
        )?;
        sse::check_read_key(&m, customer.as_ref())?;
        let whole = part_range(&m, input.part_number)?;
        let (range, content_range) = match &input.range {
            None if input.part_number.is_some() && m.parts_count.is_some() => (
                whole.clone(),
                Some(format!(
                    "bytes {}-{}/{}",
                    whole.start,
                    whole.end.saturating_sub(1),
                    m.size
                )),
            ),
            None => (whole, None),
            Some(r) => match get_range(r, m.size)? {
                Some((r, cr)) => (r, Some(cr)),
                None => (0..m.size, None),
            },
        };
        let full = range.start == 0 && range.end == m.size;
        let memory = self
            .memory
            .reserve(
                read_footprint(range.end - range.start, BODY_CHUNKS_IN_FLIGHT),
                &input.key,
            )
            .await?;
        let mut reader = self
            .engine
            .reader(&input.bucket, &input.key, &m, pins, range.clone())
            .with_customer_key(customer);
        // Read the first window before answering, so an unreadable object gets a proper S3
        // error instead of a 200 with a truncated body.
        let first = reader.next_chunk().await?;
        let body = StreamingBlob::wrap(spawn_body(
            reader,
            first,
            memory,
            self.response_stall,
            format!("{}/{}", input.bucket, input.key),
        ));
        let h = &m.headers;
        let want_checksums = full
            && input
                .checksum_mode
                .as_ref()
                .is_some_and(|c| c.as_str() == ChecksumMode::ENABLED);
        let c = if want_checksums {
            m.checksums.clone()
        } else {
            Checksums::default()
        };
        let (server_side_encryption, sse_customer_algorithm, sse_customer_key_md5) = sse::echo(&m);
        let output = GetObjectOutput {
            body: Some(body),
            server_side_encryption,
            sse_customer_algorithm,
            sse_customer_key_md5,
            accept_ranges: Some("bytes".into()),
            content_length: i64::try_from(range.end - range.start).ok(),
            content_range,
            e_tag: Some(etag(&m)),
            last_modified: Some(ts(m.last_modified_ms)),
            content_type: input.response_content_type.or_else(|| h.content_type.clone()),
            content_encoding: input.response_content_encoding.or_else(|| h.content_encoding.clone()),
            content_disposition: input
                .response_content_disposition
                .or_else(|| h.content_disposition.clone()),
            content_language: input.response_content_language.or_else(|| h.content_language.clone()),
            cache_control: input.response_cache_control.or_else(|| h.cache_control.clone()),
            expires: input.response_expires.or_else(|| h.expires_ms.map(ts)),
            metadata: metadata(h),
            parts_count: m.parts_count.and_then(|p| i32::try_from(p).ok()),
            checksum_crc32: c.crc32,
            checksum_crc32c: c.crc32c,
            checksum_sha1: c.sha1,
            checksum_sha256: c.sha256,
            checksum_crc64nvme: c.crc64nvme,
            ..Default::default()
        };
        Ok(S3Response::new(output))
    }

    pub(super) async fn head_object_op(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let input = req.input;
        let m = self.manifest(&input.bucket, &input.key)?;
        check_read_conditions(
            &m,
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
            input.if_modified_since.as_ref(),
            input.if_unmodified_since.as_ref(),
        )?;
        let customer = sse::customer_key(
            input.sse_customer_algorithm.as_ref(),
            input.sse_customer_key.as_ref(),
            input.sse_customer_key_md5.as_ref(),
        )?;
        sse::check_read_key(&m, customer.as_ref())?;
        let range = part_range(&m, input.part_number)?;
        let h = &m.headers;
        let want_checksums = input
            .checksum_mode
            .as_ref()
            .is_some_and(|c| c.as_str() == ChecksumMode::ENABLED);
        let c = if want_checksums {
            m.checksums.clone()
        } else {
            Checksums::default()
        };
        let (server_side_encryption, sse_customer_algorithm, sse_customer_key_md5) = sse::echo(&m);
        Ok(S3Response::new(HeadObjectOutput {
            server_side_encryption,
            sse_customer_algorithm,
            sse_customer_key_md5,
            accept_ranges: Some("bytes".into()),
            content_length: i64::try_from(range.end - range.start).ok(),
            e_tag: Some(etag(&m)),
            last_modified: Some(ts(m.last_modified_ms)),
            content_type: h.content_type.clone(),
            content_encoding: h.content_encoding.clone(),
            content_disposition: h.content_disposition.clone(),
            content_language: h.content_language.clone(),
            cache_control: h.cache_control.clone(),
            expires: h.expires_ms.map(ts),
            metadata: metadata(h),
            parts_count: m.parts_count.and_then(|p| i32::try_from(p).ok()),
            checksum_crc32: c.crc32,
            checksum_crc32c: c.crc32c,
            checksum_sha1: c.sha1,
            checksum_sha256: c.sha256,
            checksum_crc64nvme: c.crc64nvme,
            ..Default::default()
        }))
    }

    pub(super) async fn delete_object_op(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.engine.delete_object(&req.input.bucket, &req.input.key)?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    pub(super) async fn delete_objects_op(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let input = req.input;
        self.engine.require_bucket(&input.bucket)?;
        if input.delete.objects.len() > 1000 {
            return Err(s3_error!(MalformedXML, "at most 1000 keys per DeleteObjects request"));
        }
        let quiet = input.delete.quiet.unwrap_or(false);
        let keys: Vec<String> = input.delete.objects.into_iter().map(|o| o.key).collect();
        let outcomes = self.engine.delete_objects(&input.bucket, &keys)?;
        let mut deleted = Vec::new();
        let mut errors = Vec::new();
        for (key, outcome) in keys.into_iter().zip(outcomes) {
            match outcome {
                Ok(_) => {
                    if !quiet {
                        deleted.push(DeletedObject {
                            key: Some(key),
                            ..Default::default()
                        });
                    }
                }
                Err(e) => {
                    let s3: s3s::S3Error = e.into();
                    errors.push(Error {
                        code: Some(s3.code().as_str().to_owned()),
                        key: Some(key),
                        message: s3.message().map(str::to_owned),
                        version_id: None,
                    });
                }
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: (!deleted.is_empty()).then_some(deleted),
            errors: (!errors.is_empty()).then_some(errors),
            ..Default::default()
        }))
    }
}

/// The byte range of part `n` of a multipart object (the whole object for n = 1 otherwise).
fn part_range(m: &ObjectManifest, part_number: Option<i32>) -> S3Result<std::ops::Range<u64>> {
    let Some(n) = part_number else { return Ok(0..m.size) };
    let idx = usize::try_from(n)
        .ok()
        .and_then(|n| n.checked_sub(1))
        .ok_or_else(|| s3_error!(InvalidArgument, "partNumber must be >= 1"))?;
    if m.parts_count.is_none() {
        return if idx == 0 {
            Ok(0..m.size)
        } else {
            Err(s3_error!(InvalidRange, "object has one part"))
        };
    }
    let seg = m
        .segments
        .get(idx)
        .ok_or_else(|| s3_error!(InvalidRange, "object has {} parts", m.segments.len()))?;
    let start: u64 = m.segments[..idx].iter().map(|s| s.size).sum();
    Ok(start..start + seg.size)
}

/// Streams the rest of an object from a background task through a small bounded channel;
/// `memory` is held until the body is dropped (sent, or the client gone).
///
/// The task holds the reader, and so the pins on the object's shard sets. A client that stops
/// reading would keep them forever (and the reaper from deleting sets the object has since
/// replaced), so when a chunk waits longer than `stall` to be taken, the task gives up: the
/// pins go, and the response ends with an error once what is buffered has been sent.
pub(super) fn spawn_body(
    mut reader: ObjectReader,
    first: Option<Bytes>,
    memory: Reservation,
    stall: Duration,
    what: String,
) -> ChannelBody {
    let (tx, rx) = mpsc::channel(BODY_CHUNKS_IN_FLIGHT);
    let stalled = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stalled);
    tokio::spawn(async move {
        let feed = Feed {
            tx,
            stall,
            stalled: flag,
            what,
        };
        let Some(first) = first else { return };
        if !feed.send(Ok(first)).await {
            return;
        }
        loop {
            let item = reader.next_chunk().await;
            let done = !matches!(item, Ok(Some(_)));
            let msg = match item {
                Ok(Some(b)) => Ok(b),
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "object read failed mid-stream; aborting response");
                    Err(std::io::Error::other(e.to_string()))
                }
            };
            if !feed.send(msg).await || done {
                return;
            }
        }
    });
    ChannelBody {
        rx,
        stalled,
        _memory: memory,
    }
}

/// The sending side of a [`ChannelBody`].
struct Feed {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    stall: Duration,
    stalled: Arc<AtomicBool>,
    /// The object, for the log.
    what: String,
}

impl Feed {
    /// Hands one chunk to the response; false when the response is over (the client went
    /// away, or took nothing for the stall timeout).
    async fn send(&self, msg: Result<Bytes, std::io::Error>) -> bool {
        match tokio::time::timeout(self.stall, self.tx.send(msg)).await {
            Ok(sent) => sent.is_ok(),
            Err(_) => {
                self.stalled.store(true, Ordering::Release);
                tracing::warn!(
                    object = %self.what,
                    stall_secs = self.stall.as_secs_f64(),
                    "client read nothing for the stall timeout; response abandoned, shard sets unpinned"
                );
                false
            }
        }
    }
}

/// A response body fed by a channel, holding the memory its chunks take.
pub(super) struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
    /// Set when the feeding task gave up on a client that stopped reading.
    stalled: Arc<AtomicBool>,
    _memory: Reservation,
}

impl Stream for ChannelBody {
    type Item = Result<Bytes, std::io::Error>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.rx.poll_recv(cx) {
            // Ending cleanly would let a short body pass for a whole one: fail it instead.
            Poll::Ready(None) if self.stalled.swap(false, Ordering::AcqRel) => {
                Poll::Ready(Some(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "response abandoned: the client stopped reading",
                ))))
            }
            other => other,
        }
    }
}

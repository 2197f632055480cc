//! Telemetry of S3 requests: which operation on which bucket and key, status, bytes in and out,
//! latency to the last byte of the response, inside one `s3.request` span.
//!
//! The HTTP layer sees every request but not what it is; s3s knows the operation once it has
//! routed and authenticated it. So the HTTP layer hands each request a [`RequestTag`] in its
//! extensions, s3s's access hook ([`TaggingAccess`]) fills it in, and the response body records
//! the request when its last byte is sent (or the client goes away): a GET's latency and bytes
//! are those of the whole transfer, not of the headers.
//!
//! Every request is also counted for the principal it claims ([`super::principal`]), read
//! from its head: requests whose signature fails are counted too, against the key they name.

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use s3s::access::{S3Access, S3AccessContext};
use s3s::path::S3Path;
use s3s::{s3_error, S3Result};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Instant;
use telemetry::stats::principal::THROTTLED_OPERATION;
use telemetry::stats::{Access, PrincipalRequest, Request};
use telemetry::Telemetry;

/// What s3s found a request to be.
#[derive(Debug, Clone, Default)]
struct Tag {
    operation: String,
    bucket: String,
    key: Option<String>,
}

/// Filled in by [`TaggingAccess`] once s3s has routed the request.
#[derive(Clone, Default)]
pub struct RequestTag(Arc<Mutex<Option<Tag>>>);

impl RequestTag {
    fn get(&self) -> Option<Tag> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// The operation label of requests without credentials: they are counted, but under no
/// bucket, key or operation of their choosing (see [`TaggingAccess`]).
pub const ANONYMOUS: &str = "anonymous";

/// s3s's access hook: applies the default rule (signed requests only) and tags the request
/// for telemetry.
///
/// Only authenticated requests are tagged with their bucket, key and operation: per-bucket
/// statistics, hot prefixes and error rates drive the agents, and anonymous clients must not
/// be able to steer them. A request without credentials is recorded as [`ANONYMOUS`] at the
/// service level; one whose signature fails never reaches this hook and is recorded as
/// `unknown`.
pub struct TaggingAccess;

#[async_trait::async_trait]
impl S3Access for TaggingAccess {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let authenticated = cx.credentials().is_some();
        let tag = if authenticated {
            let (bucket, key) = match cx.s3_path() {
                S3Path::Root => (String::new(), None),
                S3Path::Bucket { bucket } => (bucket.to_string(), None),
                S3Path::Object { bucket, key } => (bucket.to_string(), Some(key.to_string())),
            };
            Tag {
                operation: cx.s3_op().name().to_owned(),
                bucket,
                key,
            }
        } else {
            Tag {
                operation: ANONYMOUS.to_owned(),
                bucket: String::new(),
                key: None,
            }
        };
        let span = tracing::Span::current();
        span.record("s3.operation", tag.operation.as_str());
        if !tag.bucket.is_empty() {
            span.record("aws.s3.bucket", tag.bucket.as_str());
        }
        if let Some(slot) = cx.extensions_mut().get::<RequestTag>() {
            *slot.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(tag);
        }
        if authenticated {
            Ok(())
        } else {
            Err(s3_error!(AccessDenied, "Signature is required"))
        }
    }
}

/// Tells whether a bucket exists. Requests naming a bucket that does not are recorded without
/// it: bucket names come from clients, and each recorded one costs memory and a metric series.
pub type BucketExists = Arc<KnownBuckets>;

/// Buckets known to exist, remembered so that the common case costs a set lookup rather than
/// a metadata read per request.
pub struct KnownBuckets {
    lookup: Box<dyn Fn(&str) -> bool + Send + Sync>,
    known: Mutex<std::collections::HashSet<String>>,
}

impl KnownBuckets {
    /// Known buckets, checked with `lookup` the first time each is seen.
    pub fn new(lookup: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        Self {
            lookup: Box::new(lookup),
            known: Mutex::default(),
        }
    }

    fn exists(&self, bucket: &str) -> bool {
        if self
            .known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(bucket)
        {
            return true;
        }
        let exists = (self.lookup)(bucket);
        if exists {
            self.known
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(bucket.to_owned());
        }
        exists
    }

    fn forget(&self, bucket: &str) {
        self.known.lock().unwrap_or_else(PoisonError::into_inner).remove(bucket);
    }
}

/// A request being served: what is known of it before the response body ends.
pub struct Observation {
    telemetry: Arc<Telemetry>,
    exists: BucketExists,
    tag: RequestTag,
    start: Instant,
    bytes_in: Arc<AtomicU64>,
    /// The body length the client declared for an aws-chunked upload (the wire carries chunk
    /// framing and trailers on top of it).
    decoded_len: Option<u64>,
    span: tracing::Span,
    /// The principal the request claims to be (see [`super::principal`]).
    principal: String,
}

impl Observation {
    /// Starts observing a request: returns the observation, its tag (to put in the request's
    /// extensions) and the request body wrapped to count its bytes.
    pub fn start<B>(
        telemetry: Arc<Telemetry>,
        exists: BucketExists,
        req: &http::Request<B>,
        span: tracing::Span,
    ) -> (Self, RequestTag) {
        let decoded_len = req
            .headers()
            .get("x-amz-decoded-content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let tag = RequestTag::default();
        let principal = super::principal::principal(req.uri(), req.headers());
        let obs = Self {
            telemetry,
            exists,
            tag: tag.clone(),
            start: Instant::now(),
            bytes_in: Arc::default(),
            decoded_len,
            span,
            principal,
        };
        (obs, tag)
    }

    /// The principal the request claims to be: its access key id, `anonymous` or `invalid`.
    #[must_use]
    pub fn principal(&self) -> &str {
        &self.principal
    }

    /// Marks the request as refused by its principal's throttle before s3s saw it: recorded
    /// as operation `throttled`, under no bucket.
    pub fn mark_throttled(&self) {
        self.span.record("s3.operation", THROTTLED_OPERATION);
        *self.tag.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(Tag {
            operation: THROTTLED_OPERATION.to_owned(),
            bucket: String::new(),
            key: None,
        });
    }

    /// The request body, counting the bytes it delivers.
    pub fn count_in<B>(&self, body: B) -> CountingBody<B> {
        CountingBody {
            inner: body,
            count: self.bytes_in.clone(),
        }
    }

    /// The response body, recording the request when it ends.
    pub fn finish_with<B>(self, resp: http::Response<B>) -> http::Response<ObservedBody<B>> {
        let status = resp.status().as_u16();
        self.span.record("http.response.status_code", status);
        let object_size = resp
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        resp.map(|inner| ObservedBody {
            inner,
            bytes_out: 0,
            pending: Some(Pending {
                obs: self,
                status,
                response_len: object_size,
            }),
        })
    }

    /// Records a request that got no response (the service failed before answering).
    pub fn finish_failed(self) {
        Pending {
            obs: self,
            status: 500,
            response_len: None,
        }
        .record(0);
    }
}

/// Counts the bytes of a body as they are read.
pub struct CountingBody<B> {
    inner: B,
    count: Arc<AtomicU64>,
}

impl<B: HttpBody<Data = Bytes> + Unpin> HttpBody for CountingBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let res = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &res {
            if let Some(data) = frame.data_ref() {
                self.count.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
        }
        res
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

struct Pending {
    obs: Observation,
    status: u16,
    response_len: Option<u64>,
}

impl Pending {
    fn record(self, bytes_out: u64) {
        let Self {
            obs,
            status,
            response_len,
        } = self;
        let mut tag = obs.tag.get().unwrap_or_default();
        let deleted = tag.operation == "DeleteBucket" && (200..300).contains(&status);
        if deleted {
            obs.exists.forget(&tag.bucket);
        }
        if !tag.bucket.is_empty() && (deleted || !obs.exists.exists(&tag.bucket)) {
            // Recorded as a service-level call; a deleted bucket's statistics go.
            let gone = std::mem::take(&mut tag.bucket);
            tag.key = None;
            if deleted {
                obs.telemetry.forget_bucket(&gone);
            }
        }
        let operation = if tag.operation.is_empty() {
            "unknown"
        } else {
            &tag.operation
        };
        // The declared length is the client's word: taken only once its signature held (s3s
        // then holds the body to it), else an anonymous header could inflate the counters.
        let authenticated =
            !tag.operation.is_empty() && tag.operation != ANONYMOUS && tag.operation != THROTTLED_OPERATION;
        let counted = obs.bytes_in.load(Ordering::Relaxed);
        let bytes_in = obs.decoded_len.filter(|_| authenticated).unwrap_or(counted);
        let (access, object_size) = match operation {
            "GetObject" if status == 200 => (Access::Read, response_len),
            "GetObject" | "HeadObject" | "ListObjects" | "ListObjectsV2" | "ListParts" | "ListMultipartUploads" => {
                (Access::Read, None)
            }
            "PutObject" if status == 200 => (Access::Write, Some(bytes_in)),
            "PutObject"
            | "UploadPart"
            | "UploadPartCopy"
            | "CopyObject"
            | "CompleteMultipartUpload"
            | "DeleteObject"
            | "DeleteObjects" => (Access::Write, None),
            _ => (Access::Other, None),
        };
        obs.telemetry.principal_request(
            &obs.principal,
            &PrincipalRequest {
                operation,
                status,
                bytes_in,
                bytes_out,
            },
        );
        obs.telemetry.s3_request(&Request {
            bucket: &tag.bucket,
            operation,
            access,
            status,
            bytes_in,
            bytes_out,
            latency: obs.start.elapsed(),
            key: tag.key.as_deref(),
            object_size,
        });
    }
}

/// A response body that records its request when the last byte is sent or the body is dropped
/// (client gone), inside the request's span so backend reads made while streaming belong to it.
pub struct ObservedBody<B> {
    inner: B,
    bytes_out: u64,
    pending: Option<Pending>,
}

impl<B> ObservedBody<B> {
    fn done(&mut self) {
        if let Some(p) = self.pending.take() {
            p.record(self.bytes_out);
        }
    }
}

impl<B: HttpBody<Data = Bytes> + Unpin> HttpBody for ObservedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let span = self.pending.as_ref().map(|p| p.obs.span.clone());
        let _entered = span.as_ref().map(tracing::Span::enter);
        let res = Pin::new(&mut self.inner).poll_frame(cx);
        match &res {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes_out += data.len() as u64;
                }
            }
            Poll::Ready(None) => self.done(),
            Poll::Ready(Some(Err(_))) | Poll::Pending => {}
        }
        res
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for ObservedBody<B> {
    fn drop(&mut self) {
        self.done();
    }
}

//! Multipart uploads through aws-sdk-s3: one upload in progress, the ETags of its parts, and
//! completing it with them.

use std::collections::BTreeMap;

use aws_sdk_s3::operation::abort_multipart_upload::AbortMultipartUploadOutput;
use aws_sdk_s3::operation::complete_multipart_upload::builders::CompleteMultipartUploadFluentBuilder;
use aws_sdk_s3::operation::complete_multipart_upload::CompleteMultipartUploadOutput;
use aws_sdk_s3::operation::create_multipart_upload::builders::CreateMultipartUploadFluentBuilder;
use aws_sdk_s3::operation::create_multipart_upload::CreateMultipartUploadOutput;
use aws_sdk_s3::operation::list_parts::builders::ListPartsFluentBuilder;
use aws_sdk_s3::operation::upload_part::builders::UploadPartFluentBuilder;
use aws_sdk_s3::operation::upload_part::UploadPartOutput;
use aws_sdk_s3::operation::upload_part_copy::UploadPartCopyOutput;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;

use crate::s3::ok;
use crate::sse_c::{SseC, WithSseC};

/// One multipart upload: where it goes, its id, and the ETag of each part uploaded so far.
pub struct Multipart {
    client: Client,
    bucket: String,
    key: String,
    sse_c: Option<SseC>,
    created: CreateMultipartUploadOutput,
    id: String,
    etags: BTreeMap<i32, String>,
}

impl Multipart {
    /// Starts an upload of `bucket/key`.
    pub async fn start(client: &Client, bucket: &str, key: &str) -> Self {
        Self::begin(client, bucket, key, None, |create| create).await
    }

    /// Starts an upload of `bucket/key` sealed with the customer key `sse_c`, whose headers go
    /// on the create and on every part [`Self::part`] and [`Self::copy_part`] send.
    pub async fn start_sse_c(client: &Client, bucket: &str, key: &str, sse_c: &SseC) -> Self {
        Self::begin(client, bucket, key, Some(sse_c.clone()), |create| create).await
    }

    /// Starts an upload of `bucket/key` whose create request `extra` completes (content type,
    /// metadata...).
    pub async fn start_with(
        client: &Client,
        bucket: &str,
        key: &str,
        extra: impl FnOnce(CreateMultipartUploadFluentBuilder) -> CreateMultipartUploadFluentBuilder,
    ) -> Self {
        Self::begin(client, bucket, key, None, extra).await
    }

    async fn begin(
        client: &Client,
        bucket: &str,
        key: &str,
        sse_c: Option<SseC>,
        extra: impl FnOnce(CreateMultipartUploadFluentBuilder) -> CreateMultipartUploadFluentBuilder,
    ) -> Self {
        let mut create = client.create_multipart_upload().bucket(bucket).key(key);
        if let Some(sse_c) = &sse_c {
            create = create.sse_c(sse_c);
        }
        let what = format!("CreateMultipartUpload {bucket}/{key}");
        let created = ok(extra(create).send().await, &what);
        let id = created
            .upload_id()
            .unwrap_or_else(|| panic!("{what}: no upload id in {created:?}"))
            .to_owned();
        Self {
            client: client.clone(),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            sse_c,
            created,
            id,
            etags: BTreeMap::new(),
        }
    }

    /// The upload id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// What CreateMultipartUpload answered.
    pub fn created(&self) -> &CreateMultipartUploadOutput {
        &self.created
    }

    /// Sends the further requests through `client` (a restarted server listens on a new port).
    pub fn reconnect(&mut self, client: &Client) {
        self.client = client.clone();
    }

    /// The UploadPart request of part `n` with `body`, without the upload's SSE-C headers: for
    /// requests that must fail, or that carry other headers.
    pub fn part_request(&self, n: i32, body: Vec<u8>) -> UploadPartFluentBuilder {
        self.client
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.id)
            .part_number(n)
            .body(ByteStream::from(body))
    }

    /// Uploads `data` as part `n` (replacing an earlier upload of part `n`), keeps its ETag for
    /// [`Self::complete`] and returns the answer.
    pub async fn part(&mut self, n: i32, data: &[u8]) -> UploadPartOutput {
        let mut request = self.part_request(n, data.to_vec());
        if let Some(sse_c) = &self.sse_c {
            request = request.sse_c(sse_c);
        }
        let what = format!("UploadPart {}/{} #{n} ({} bytes)", self.bucket, self.key, data.len());
        let out = ok(request.send().await, &what);
        let etag = out.e_tag().unwrap_or_else(|| panic!("{what}: no ETag in {out:?}"));
        self.etags.insert(n, etag.to_owned());
        out
    }

    /// Uploads `parts` as parts 1, 2, ... and returns the answers.
    pub async fn parts<P: AsRef<[u8]>>(&mut self, parts: &[P]) -> Vec<UploadPartOutput> {
        let mut answers = Vec::with_capacity(parts.len());
        for (n, data) in (1..).zip(parts) {
            answers.push(self.part(n, data.as_ref()).await);
        }
        answers
    }

    /// Copies `range` (`bytes=first-last`) of the object `source` (see
    /// [`crate::copy_source`]) as part `n`, keeps its ETag and returns the answer.
    pub async fn copy_part(&mut self, n: i32, source: &str, range: &str) -> UploadPartCopyOutput {
        let mut request = self
            .client
            .upload_part_copy()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.id)
            .part_number(n)
            .copy_source(source)
            .copy_source_range(range);
        if let Some(sse_c) = &self.sse_c {
            request = request.sse_c(sse_c);
        }
        let what = format!("UploadPartCopy {}/{} #{n} from {source} {range}", self.bucket, self.key);
        let out = ok(request.send().await, &what);
        let etag = out
            .copy_part_result()
            .and_then(|r| r.e_tag())
            .unwrap_or_else(|| panic!("{what}: no ETag in {out:?}"));
        self.etags.insert(n, etag.to_owned());
        out
    }

    /// The ETag of the last upload of part `n`.
    #[track_caller]
    pub fn etag(&self, n: i32) -> &str {
        self.etags
            .get(&n)
            .unwrap_or_else(|| panic!("part {n} of {}/{} was not uploaded", self.bucket, self.key))
    }

    /// The ListParts request of the upload, to send or to extend (max parts, marker).
    pub fn list_parts_request(&self) -> ListPartsFluentBuilder {
        self.client
            .list_parts()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.id)
    }

    /// The CompleteMultipartUpload request naming `parts` (number, ETag) in this order, right
    /// or wrong.
    pub fn complete_request(&self, parts: &[(i32, &str)]) -> CompleteMultipartUploadFluentBuilder {
        let parts = parts
            .iter()
            .map(|&(n, etag)| CompletedPart::builder().part_number(n).e_tag(etag).build())
            .collect();
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
    }

    /// Completes the upload with the last upload of every part, in part order, and returns
    /// the answer.
    pub async fn complete(&self) -> CompleteMultipartUploadOutput {
        let parts: Vec<(i32, &str)> = self.etags.iter().map(|(&n, etag)| (n, etag.as_str())).collect();
        ok(
            self.complete_request(&parts).send().await,
            &format!(
                "CompleteMultipartUpload {}/{} ({} parts)",
                self.bucket,
                self.key,
                parts.len()
            ),
        )
    }

    /// Aborts the upload.
    pub async fn abort(&self) -> AbortMultipartUploadOutput {
        ok(
            self.client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&self.key)
                .upload_id(&self.id)
                .send()
                .await,
            &format!("AbortMultipartUpload {}/{}", self.bucket, self.key),
        )
    }
}

/// Uploads `parts` as one multipart upload of `bucket/key` and completes it.
pub async fn put_multipart(client: &Client, bucket: &str, key: &str, parts: &[Vec<u8>]) {
    let mut upload = Multipart::start(client, bucket, key).await;
    upload.parts(parts).await;
    upload.complete().await;
}

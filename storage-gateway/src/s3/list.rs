//! Listing objects (V1 and V2) with prefixes, delimiters and pagination: the protocol side
//! (markers, continuation tokens, encoding-type). The page itself comes from the engine
//! ([`Engine::list_page`](crate::engine::Engine::list_page)), which walks the catalog in S3's
//! key order off the async workers and skips each common prefix with one seek.

use super::headers::ts;
use super::Gateway;
use crate::engine::{ListEntry, ListPage, ListQuery};
use base64::Engine as _;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

/// Characters left as-is by encoding-type=url (RFC 3986 unreserved, plus '/').
const URL_KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

const MAX_KEYS: usize = 1000;

impl Gateway {
    /// Lists up to `max` keys and common prefixes strictly after `after`.
    async fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        after: Option<&[u8]>,
        max: usize,
    ) -> S3Result<ListPage> {
        let query = ListQuery {
            prefix,
            delimiter,
            after,
            max,
        };
        Ok(self.engine.list_page(bucket, query).await?)
    }

    pub(super) async fn list_objects_v2_op(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        let url = url_encoding(input.encoding_type.as_ref())?;
        let max = max_keys(input.max_keys)?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let after: Option<Vec<u8>> = match (&input.continuation_token, &input.start_after) {
            (Some(t), _) => Some(
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(t)
                    .map_err(|_| s3_error!(InvalidArgument, "invalid continuation token"))?,
            ),
            (None, Some(s)) if !s.is_empty() => Some(s.as_bytes().to_vec()),
            _ => None,
        };
        let page = self
            .list_page(
                &input.bucket,
                &prefix,
                input.delimiter.as_deref(),
                after.as_deref(),
                max,
            )
            .await?;
        let enc = |s: String| if url { encode(&s) } else { s };
        let key_count = page.objects.len() + page.prefixes.len();
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(enc(prefix)),
            delimiter: input.delimiter.map(enc),
            start_after: input.start_after.map(enc),
            max_keys: input.max_keys.or(Some(MAX_KEYS as i32)),
            key_count: i32::try_from(key_count).ok(),
            continuation_token: input.continuation_token,
            is_truncated: Some(page.next.is_some()),
            next_continuation_token: page
                .next
                .map(|n| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(n)),
            contents: Some(page.objects.into_iter().map(|l| object(l, url)).collect()),
            common_prefixes: Some(
                page.prefixes
                    .into_iter()
                    .map(|p| CommonPrefix { prefix: Some(enc(p)) })
                    .collect(),
            ),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }

    pub(super) async fn list_objects_op(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let input = req.input;
        let url = url_encoding(input.encoding_type.as_ref())?;
        let max = max_keys(input.max_keys)?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let after = input.marker.as_deref().filter(|m| !m.is_empty()).map(str::as_bytes);
        let page = self
            .list_page(&input.bucket, &prefix, input.delimiter.as_deref(), after, max)
            .await?;
        let enc = |s: String| if url { encode(&s) } else { s };
        let truncated = page.next.is_some();
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket),
            prefix: Some(enc(prefix)),
            delimiter: input.delimiter.map(enc),
            marker: input.marker.map(enc),
            max_keys: input.max_keys.or(Some(MAX_KEYS as i32)),
            is_truncated: Some(truncated),
            next_marker: page.next.map(enc),
            contents: Some(page.objects.into_iter().map(|l| object(l, url)).collect()),
            common_prefixes: Some(
                page.prefixes
                    .into_iter()
                    .map(|p| CommonPrefix { prefix: Some(enc(p)) })
                    .collect(),
            ),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }
}

fn object(l: ListEntry, url: bool) -> Object {
    Object {
        key: Some(if url { encode(&l.key) } else { l.key }),
        size: i64::try_from(l.summary.size).ok(),
        e_tag: Some(ETag::Strong(l.summary.etag)),
        last_modified: Some(ts(l.summary.last_modified_ms)),
        storage_class: Some(ObjectStorageClass::from_static(ObjectStorageClass::STANDARD)),
        ..Default::default()
    }
}

fn encode(s: &str) -> String {
    utf8_percent_encode(s, URL_KEEP).to_string()
}

fn url_encoding(e: Option<&EncodingType>) -> S3Result<bool> {
    match e.map(EncodingType::as_str) {
        None => Ok(false),
        Some(s) if s.eq_ignore_ascii_case("url") => Ok(true),
        Some(other) => Err(s3_error!(
            InvalidArgument,
            "invalid encoding-type {other:?}: only \"url\" is supported"
        )),
    }
}

fn max_keys(m: Option<i32>) -> S3Result<usize> {
    match m {
        None => Ok(MAX_KEYS),
        Some(n) if n < 0 => Err(s3_error!(InvalidArgument, "max-keys must be >= 0")),
        Some(n) => Ok(usize::try_from(n).unwrap_or(MAX_KEYS).min(MAX_KEYS)),
    }
}

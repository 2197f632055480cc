//! Calls through aws-sdk-s3 and what they answer: buckets, whole objects, errors of failed
//! calls, and the encodings of keys in copy sources and listings.

use std::fmt::Debug;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;

/// `x-amz-copy-source` value: the SDK sends it verbatim, so the key must be
/// percent-encoded here (slashes stay as separators).
pub fn copy_source(bucket: &str, key: &str) -> String {
    format!("{bucket}/{}", percent_encode(key, true))
}

/// RFC 3986 percent-encoding of everything but unreserved characters (and
/// `/` when `keep_slash`).
pub fn percent_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        let unreserved = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~');
        if unreserved || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `encoding-type=url` output: `%XX` escapes, and `+` as a space
/// (S3 form-encodes spaces).
pub fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a failed SDK call carried back from the server.
#[derive(Debug, Clone)]
pub struct ErrInfo {
    /// HTTP status, if a response came.
    pub status: Option<u16>,
    /// S3 error code.
    pub code: Option<String>,
    /// S3 error message.
    pub message: Option<String>,
    /// The whole error chain, for messages.
    pub detail: String,
}

/// What `err` carried back from the server.
pub fn err_info<E>(err: &SdkError<E, HttpResponse>) -> ErrInfo
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    ErrInfo {
        status: err.raw_response().map(|r| r.status().as_u16()),
        code: err.code().map(str::to_owned),
        message: err.message().map(str::to_owned),
        detail: format!("{}", DisplayErrorContext(err)),
    }
}

/// Asserts `result` failed with HTTP `status` and, when given, S3 error `code`.
#[track_caller]
pub fn expect_err<T, E>(result: Result<T, SdkError<E, HttpResponse>>, status: u16, code: Option<&str>) -> ErrInfo
where
    T: Debug,
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match result {
        Ok(out) => panic!("expected HTTP {status} {code:?}, but the request succeeded: {out:?}"),
        Err(err) => {
            let info = err_info(&err);
            assert_eq!(
                info.status,
                Some(status),
                "expected HTTP {status} {code:?}, got {info:?}"
            );
            if let Some(code) = code {
                assert_eq!(
                    info.code.as_deref(),
                    Some(code),
                    "expected error code {code} (HTTP {status}), got {info:?}"
                );
            }
            info
        }
    }
}

/// Unwraps an SDK result, printing the server's error in full on failure.
#[track_caller]
pub fn ok<T, E>(result: Result<T, SdkError<E, HttpResponse>>, what: &str) -> T
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match result {
        Ok(v) => v,
        Err(err) => panic!("{what} failed: {:?}", err_info(&err)),
    }
}

/// Creates `bucket` (no location constraint).
pub async fn create_bucket(client: &Client, bucket: &str) {
    ok(
        client.create_bucket().bucket(bucket).send().await,
        &format!("CreateBucket {bucket}"),
    );
}

/// PUTs `data` as `bucket/key` and returns the answer.
pub async fn put_bytes(
    client: &Client,
    bucket: &str,
    key: &str,
    data: &[u8],
) -> aws_sdk_s3::operation::put_object::PutObjectOutput {
    ok(
        client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(data.to_vec()))
            .send()
            .await,
        &format!("PutObject {bucket}/{key} ({} bytes)", data.len()),
    )
}

/// GETs `bucket/key` whole.
pub async fn get_bytes(client: &Client, bucket: &str, key: &str) -> Vec<u8> {
    let out = ok(
        client.get_object().bucket(bucket).key(key).send().await,
        &format!("GetObject {bucket}/{key}"),
    );
    collect_body(out.body).await
}

/// Reads a response body to its end.
pub async fn collect_body(body: ByteStream) -> Vec<u8> {
    body.collect().await.expect("read response body").into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_decoding_handles_plus_and_escapes() {
        assert_eq!(url_decode("with+space"), "with space");
        assert_eq!(url_decode("a%2Bb"), "a+b");
        assert_eq!(url_decode("100%25"), "100%");
        assert_eq!(url_decode("%C3%BC"), "ü");
        assert_eq!(url_decode("trail%"), "trail%");
    }

    #[test]
    fn percent_encoding_keeps_unreserved_and_slash() {
        assert_eq!(percent_encode("a b/ü+%", true), "a%20b/%C3%BC%2B%25");
        assert_eq!(percent_encode("a/b", false), "a%2Fb");
    }
}

//! Authentication: SigV4 secret lookup with the error S3 gives for an unknown key, and the
//! ways of signing that are refused before s3s sees the request.
//!
//! Refused up front, from the request head alone (no body byte is read):
//! - **SigV2** (`Authorization: AWS key:sig`, or a `Signature` query parameter): it signs no
//!   body hash, and s3s checks no date on it, so a captured request replays forever. AWS
//!   regions opened since 2014 refuse it the same way.
//! - **POST with a `multipart/form-data` body** (browser PostObject): its signature is inside
//!   the form, so s3s reads the form, and buffers the file, before any access check. We do not
//!   implement PostObject; the request is answered `501 NotImplemented` and the connection
//!   closed without reading the body.
//! - **Presigned SigV4 URLs valid for more than 7 days** (`X-Amz-Expires` > 604800), as AWS
//!   refuses them. (s3s refuses expired ones and those dated more than 15 minutes ahead.)

use s3s::auth::{S3Auth, SecretKey};
use s3s::{s3_error, S3Error, S3Result};

/// Longest validity of a presigned URL S3 accepts: 7 days.
pub const MAX_PRESIGNED_EXPIRY_SECS: u64 = 7 * 24 * 3600;

/// One access key / secret pair; an unknown key is `InvalidAccessKeyId` (403), as on S3
/// (s3s's `SimpleAuth` answers `NotSignedUp`, which clients do not recognise).
pub struct StaticAuth {
    access_key: String,
    secret_key: SecretKey,
}

impl StaticAuth {
    /// Accepts exactly this key pair.
    #[must_use]
    pub fn new(access_key: String, secret_key: String) -> Self {
        Self {
            access_key,
            secret_key: SecretKey::from(secret_key),
        }
    }
}

#[async_trait::async_trait]
impl S3Auth for StaticAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        if access_key == self.access_key {
            Ok(self.secret_key.clone())
        } else {
            Err(s3_error!(
                InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records."
            ))
        }
    }
}

/// Refuses, from its head alone, a request signed (or to be authenticated) in a way this
/// gateway does not accept; see the module documentation.
///
/// # Errors
/// The S3 error to answer with.
pub fn screen(method: &http::Method, uri: &http::Uri, headers: &http::HeaderMap) -> Result<(), S3Error> {
    if method == http::Method::POST && headers.get_all(http::header::CONTENT_TYPE).iter().any(is_form_data) {
        return Err(s3_error!(
            NotImplemented,
            "POST uploads with multipart/form-data (browser PostObject) are not implemented; use PUT."
        ));
    }
    let sigv2 = || {
        s3_error!(
            InvalidRequest,
            "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256."
        )
    };
    if headers
        .get_all(http::header::AUTHORIZATION)
        .iter()
        .any(|v| v.as_bytes().starts_with(b"AWS "))
    {
        return Err(sigv2());
    }
    let Some(query) = uri.query() else { return Ok(()) };
    let mut presigned_v4 = false;
    let mut expires: Vec<String> = Vec::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        match name.as_ref() {
            "Signature" => return Err(sigv2()),
            "X-Amz-Signature" => presigned_v4 = true,
            "X-Amz-Expires" => expires.push(value.into_owned()),
            _ => {}
        }
    }
    if presigned_v4 {
        for e in &expires {
            // Unparsable or negative values are s3s's to refuse (AuthorizationQueryParametersError).
            if e.parse::<u64>().is_ok_and(|secs| secs > MAX_PRESIGNED_EXPIRY_SECS) {
                return Err(s3_error!(
                    AuthorizationQueryParametersError,
                    "X-Amz-Expires must be less than a week (in seconds) that is {MAX_PRESIGNED_EXPIRY_SECS}"
                ));
            }
        }
    }
    Ok(())
}

/// Whether a Content-Type names `multipart/form-data` (parameters, case and spacing aside).
fn is_form_data(value: &http::HeaderValue) -> bool {
    let media_type = value.as_bytes().split(|&b| b == b';').next().unwrap_or_default();
    media_type.trim_ascii().eq_ignore_ascii_case(b"multipart/form-data")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(method: &str, uri: &str, headers: &[(&str, &str)]) -> Result<(), String> {
        let mut map = http::HeaderMap::new();
        for (k, v) in headers {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                http::HeaderValue::from_str(v).expect("value"),
            );
        }
        let method = http::Method::from_bytes(method.as_bytes()).expect("method");
        let uri: http::Uri = uri.parse().expect("uri");
        screen(&method, &uri, &map).map_err(|e| e.code().as_str().to_owned())
    }

    #[test]
    fn form_posts_are_refused_and_other_posts_pass() {
        let form = [("content-type", "Multipart/Form-Data ; boundary=x")];
        assert_eq!(check("POST", "/b", &form), Err("NotImplemented".into()));
        assert_eq!(check("POST", "/b/k?uploads", &form), Err("NotImplemented".into()));
        // An object may well have that content type: only POST is refused.
        assert_eq!(check("PUT", "/b/k", &form), Ok(()));
        assert_eq!(
            check("POST", "/b?delete", &[("content-type", "application/xml")]),
            Ok(())
        );
    }

    #[test]
    fn sigv2_is_refused_in_the_header_and_the_query() {
        let v2 = [("authorization", "AWS AKIA:c2lnbmF0dXJl")];
        assert_eq!(check("GET", "/b/k", &v2), Err("InvalidRequest".into()));
        let presigned = "/b/k?AWSAccessKeyId=AKIA&Expires=99999999999&Signature=abc%3D";
        assert_eq!(check("GET", presigned, &[]), Err("InvalidRequest".into()));
        let v4 = [(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIA/20250101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00",
        )];
        assert_eq!(check("GET", "/b/k", &v4), Ok(()));
    }

    #[test]
    fn presigned_v4_urls_may_last_a_week_and_no_longer() {
        let url = |secs: u64| format!("/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires={secs}&X-Amz-Signature=00");
        assert_eq!(check("GET", &url(604_800), &[]), Ok(()));
        assert_eq!(
            check("GET", &url(604_801), &[]),
            Err("AuthorizationQueryParametersError".into())
        );
        // Without a signature it is no presigned URL, and the parameter means nothing.
        assert_eq!(check("GET", "/b/k?X-Amz-Expires=9999999", &[]), Ok(()));
    }
}

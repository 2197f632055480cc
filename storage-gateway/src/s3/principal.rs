//! The principal an S3 request claims to be (its access key id), read from the head before
//! any signature is checked: what its statistics and throttle are kept under.
//!
//! The claim is counted as made. A request forging a signature under someone's key is counted
//! against that key: which key is under attack is the evidence wanted.

use telemetry::stats::principal::principal_of;

/// The access key id a request claims: from `Authorization: AWS4-HMAC-SHA256
/// Credential=<key>/...` or the `X-Amz-Credential` query parameter of a presigned URL; `None`
/// without either, an empty claim when one is there but unreadable.
#[must_use]
pub fn claimed_access_key(uri: &http::Uri, headers: &http::HeaderMap) -> Option<String> {
    if let Some(auth) = headers.get(http::header::AUTHORIZATION) {
        let Ok(auth) = auth.to_str() else {
            return Some(String::new());
        };
        let claim = auth
            .split_once("Credential=")
            .map(|(_, rest)| key_of(rest.split([',', ' ']).next().unwrap_or_default()));
        return Some(claim.unwrap_or_default().to_owned());
    }
    let query = uri.query()?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "X-Amz-Credential")
        .map(|(_, value)| key_of(&value).to_owned())
}

/// The access key of a credential scope (`<key>/<date>/<region>/s3/aws4_request`).
fn key_of(credential: &str) -> &str {
    credential.split('/').next().unwrap_or_default()
}

/// The principal a request is counted and throttled under: its claimed access key when that
/// is a valid name, else `invalid`; `anonymous` without credentials.
#[must_use]
pub fn principal(uri: &http::Uri, headers: &http::HeaderMap) -> String {
    principal_of(claimed_access_key(uri, headers).as_deref()).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(uri: &str, auth: Option<&[u8]>) -> String {
        let mut headers = http::HeaderMap::new();
        if let Some(a) = auth {
            headers.insert(http::header::AUTHORIZATION, http::HeaderValue::from_bytes(a).unwrap());
        }
        principal(&uri.parse().unwrap(), &headers)
    }

    #[test]
    fn the_claimed_key_is_read_from_the_header_or_the_query() {
        let signed: &[u8] = b"AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE1/20250101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00";
        assert_eq!(of("/b/k", Some(signed)), "AKIAEXAMPLE1");
        assert_eq!(
            of("/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAQ%2F20250101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=00", None),
            "AKIAQ"
        );
        assert_eq!(of("/b/k", None), "anonymous");
        assert_eq!(of("/b/k?list-type=2", None), "anonymous");
    }

    #[test]
    fn unreadable_or_invalid_claims_are_invalid() {
        assert_eq!(of("/b", Some(b"AWS4-HMAC-SHA256 SignedHeaders=host")), "invalid");
        assert_eq!(of("/b", Some(b"AWS4-HMAC-SHA256 Credential=/x/y")), "invalid");
        assert_eq!(of("/b", Some(b"AWS4-HMAC-SHA256 Credential=a%b/x")), "invalid");
        assert_eq!(of("/b", Some(b"AWS4-HMAC-SHA256 Credential=\xff/x")), "invalid");
        let long = format!("AWS4-HMAC-SHA256 Credential={}/x", "A".repeat(129));
        assert_eq!(of("/b", Some(long.as_bytes())), "invalid");
        // A client claiming a reserved name is not taken for it.
        assert_eq!(of("/b", Some(b"AWS4-HMAC-SHA256 Credential=admin-api/x")), "invalid");
        assert_eq!(of("/b?X-Amz-Credential=anonymous%2Fx", None), "invalid");
    }
}

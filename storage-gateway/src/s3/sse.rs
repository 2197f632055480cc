//! Server-side encryption on the S3 API: SSE-C headers, the choice of encryption for a new
//! set, and the encryption headers echoed in responses.

use super::Gateway;
use crate::crypto::{CustomerKey, Encryption};
use crate::records::{BucketRecord, KeyWrap, ObjectManifest};
use s3s::dto::ServerSideEncryption;
use s3s::{s3_error, S3Result};

/// The only SSE-C algorithm S3 has.
const AES256: &str = "AES256";

/// The SSE-C key of a request from its three headers; `None` when none is sent.
pub(super) fn customer_key(
    algorithm: Option<&String>,
    key: Option<&String>,
    key_md5: Option<&String>,
) -> S3Result<Option<CustomerKey>> {
    match (algorithm, key, key_md5) {
        (None, None, None) => Ok(None),
        (Some(a), Some(k), Some(m)) => CustomerKey::from_headers(a, k, m)
            .map(Some)
            .map_err(|msg| s3_error!(InvalidArgument, "{msg}")),
        _ => Err(s3_error!(
            InvalidArgument,
            "SSE-C needs all three of x-amz-server-side-encryption-customer-algorithm, -key and -key-MD5"
        )),
    }
}

/// Refuses a request that names a KMS key or encryption context: there is no KMS here, and
/// storing the object without the KMS protection it asks for would be silent plaintext.
pub(super) fn refuse_kms(key_id: Option<&String>, context: Option<&String>) -> S3Result<()> {
    if key_id.is_some() || context.is_some() {
        return Err(s3_error!(
            NotImplemented,
            "SSE-KMS (x-amz-server-side-encryption-aws-kms-key-id, -context) is not supported: this gateway has no KMS; use AES256 (SSE-S3) or SSE-C"
        ));
    }
    Ok(())
}

/// What protects an object: an SSE-C key (its MD5), the master keys, or nothing.
pub(super) enum ObjectSse<'a> {
    Customer(&'a str),
    Master,
    None,
}

/// The protection of a stored object, judged from its segments.
pub(super) fn object_sse(m: &ObjectManifest) -> ObjectSse<'_> {
    if let Some(md5) = m.segments.iter().find_map(|s| s.customer_key_md5()) {
        return ObjectSse::Customer(md5);
    }
    let all_master = !m.segments.is_empty()
        && m.segments.iter().all(|s| {
            matches!(
                s.encryption.as_ref().map(|e| &e.wrapped_by),
                Some(KeyWrap::Master { .. })
            )
        });
    if all_master {
        ObjectSse::Master
    } else {
        ObjectSse::None
    }
}

/// Checks the SSE-C key a read of `m` carries: required and matching for an SSE-C object,
/// refused for any other.
pub(super) fn check_read_key(m: &ObjectManifest, key: Option<&CustomerKey>) -> S3Result<()> {
    match (object_sse(m), key) {
        (ObjectSse::Customer(_), None) => Err(s3_error!(
            InvalidRequest,
            "The object was stored using a form of Server Side Encryption. The correct parameters must be provided to retrieve the object."
        )),
        (ObjectSse::Customer(want), Some(k)) if k.key_md5 != want => Err(s3_error!(
            AccessDenied,
            "The customer-provided key does not match the key the object was stored with"
        )),
        (ObjectSse::Customer(_), Some(_)) | (_, None) => Ok(()),
        (_, Some(_)) => Err(s3_error!(
            InvalidRequest,
            "The encryption parameters are not applicable to this object"
        )),
    }
}

/// Encryption headers for a response about `m`: (x-amz-server-side-encryption,
/// SSE-C algorithm, SSE-C key MD5).
pub(super) fn echo(m: &ObjectManifest) -> (Option<ServerSideEncryption>, Option<String>, Option<String>) {
    match object_sse(m) {
        ObjectSse::Customer(md5) => (None, Some(AES256.to_owned()), Some(md5.to_owned())),
        ObjectSse::Master => (
            Some(ServerSideEncryption::from_static(ServerSideEncryption::AES256)),
            None,
            None,
        ),
        ObjectSse::None => (None, None, None),
    }
}

impl Gateway {
    /// How a new set in `bucket` is stored: SSE-C when the request has a key, else SSE-S3
    /// (master keys) when the request or the bucket asks for it, else plaintext.
    pub(super) fn encryption_for(
        &self,
        bucket: &BucketRecord,
        customer: Option<CustomerKey>,
        requested: Option<&ServerSideEncryption>,
    ) -> S3Result<Encryption> {
        let wants_sse_s3 = match requested.map(ServerSideEncryption::as_str) {
            None => false,
            Some(ServerSideEncryption::AES256) => true,
            Some(kms @ (ServerSideEncryption::AWS_KMS | ServerSideEncryption::AWS_KMS_DSSE)) => {
                return Err(s3_error!(
                    NotImplemented,
                    "x-amz-server-side-encryption {kms:?} (KMS) is not supported: this gateway has no KMS; use AES256 (SSE-S3) or SSE-C"
                ))
            }
            Some(other) => {
                return Err(s3_error!(
                    InvalidArgument,
                    "x-amz-server-side-encryption {other:?} is not a valid value; use AES256"
                ))
            }
        };
        Ok(match customer {
            Some(_) if wants_sse_s3 => {
                return Err(s3_error!(
                    InvalidArgument,
                    "x-amz-server-side-encryption and SSE-C headers exclude each other"
                ))
            }
            Some(c) => Encryption::Customer(c),
            None if wants_sse_s3 || bucket.encrypted => Encryption::Master(self.engine.keys().clone()),
            None => Encryption::None,
        })
    }
}

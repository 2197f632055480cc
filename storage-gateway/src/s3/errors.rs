//! Mapping engine errors to S3 errors: the right code and status, and a message that names the
//! cause when the cause is the client's (no such key, bucket not empty, bad policy name, ...).
//!
//! Failures inside the gateway (a backend, the metadata store, a key, a bug) carry backend
//! URLs, object paths on backends, file paths and key ids in their messages. None of that goes
//! to the client: it gets S3's generic message and an error id in `<RequestId>`, and the log
//! keeps the detail under the same id, so an operator can find what a client saw.

use crate::error::Error;
use placement::PolicyError;
use s3s::{s3_error, S3Error, S3ErrorCode};

/// What S3 says for an InternalError.
pub(super) const INTERNAL_MESSAGE: &str = "We encountered an internal error. Please try again.";

/// What the gateway says when too few backends answer (the detail names them).
pub(super) const UNAVAILABLE_MESSAGE: &str =
    "Too few storage backends are reachable to serve this request. Please try again later.";

/// A fresh id for one error answer, in the form of an S3 request id (16 upper-case hex digits).
fn error_id() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    id[..16].to_ascii_uppercase()
}

/// An S3 error with a generic `message` and an id that the log line of the detail also has.
fn redacted(code: S3ErrorCode, message: &'static str) -> (S3Error, String) {
    let id = error_id();
    let mut err = S3Error::with_message(code, message);
    err.set_request_id(id.clone());
    (err, id)
}

impl From<Error> for S3Error {
    fn from(e: Error) -> Self {
        match e {
            Error::NoSuchBucket(_) => s3_error!(NoSuchBucket, "{e}"),
            Error::BucketExists(_) => s3_error!(BucketAlreadyOwnedByYou, "{e}"),
            Error::BucketNotEmpty(_) => s3_error!(BucketNotEmpty, "{e}"),
            Error::NoSuchKey { .. } => s3_error!(NoSuchKey, "{e}"),
            Error::NoSuchUpload(_) => s3_error!(NoSuchUpload, "{e}"),
            Error::InvalidPart(_) => s3_error!(InvalidPart, "{e}"),
            Error::Policy(PolicyError::UnknownPreset(_) | PolicyError::NotEnoughBackends { .. }) => {
                s3_error!(InvalidLocationConstraint, "{e}")
            }
            Error::Policy(_) => s3_error!(InvalidArgument, "{e}"),
            Error::Unavailable(_) => {
                let (err, id) = redacted(S3ErrorCode::ServiceUnavailable, UNAVAILABLE_MESSAGE);
                tracing::warn!(error = %e, error_id = %id, "request failed: not enough shards");
                err
            }
            Error::AccessDenied(_) => s3_error!(AccessDenied, "{e}"),
            Error::CustomerKey(_) => s3_error!(InvalidRequest, "{e}"),
            Error::Body(source) => match source.downcast::<S3Error>() {
                Ok(s3) => *s3,
                Err(other) => {
                    S3Error::with_message(S3ErrorCode::IncompleteBody, format!("reading request body: {other}"))
                }
            },
            Error::Backend { .. }
            | Error::BackendDown { .. }
            | Error::Meta { .. }
            | Error::Corrupt { .. }
            | Error::Io { .. }
            | Error::Config(_)
            | Error::StartRefused(_)
            | Error::Crypto(_)
            | Error::Internal(_) => {
                let (err, id) = redacted(S3ErrorCode::InternalError, INTERNAL_MESSAGE);
                tracing::error!(error = %e, error_id = %id, "internal error");
                err
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every internal error a backend or the store can produce, with details a client must
    /// not see.
    fn internal_errors() -> Vec<Error> {
        let path = "shards/0190a0b0-0000-7000-8000-000000000000/3";
        let url = "https://secret-bucket.s3.eu-west-1.amazonaws.com";
        vec![
            Error::Backend {
                backend: "aws-eu".into(),
                op: "get",
                path: path.into(),
                source: Box::new(object_store::Error::Generic {
                    store: "S3",
                    source: format!("error sending request for url ({url}/{path})").into(),
                }),
            },
            Error::BackendDown {
                backend: "aws-eu".into(),
                op: "put",
                path: path.into(),
                retry_in: std::time::Duration::from_secs(3),
                last_error: format!("connection refused: {url}"),
            },
            Error::meta("write", "IO error: /var/lib/mlsysops/meta/000123.log: No space left"),
            Error::Corrupt {
                what: "object b/k".into(),
                message: "EOF at /var/lib/mlsysops".into(),
            },
            Error::io(
                "reading /var/lib/mlsysops/master-keys.json",
                std::io::Error::other("denied"),
            ),
            Error::Crypto("no active master key (ids [] from /var/lib/mlsysops/master-keys.json)".into()),
            Error::Config(format!(
                "backend \"aws-eu\" at {url} is named in metadata but not configured"
            )),
            Error::Internal(format!("task panicked at {path}")),
        ]
    }

    #[test]
    fn internal_errors_name_nothing_internal() {
        for e in internal_errors() {
            let detail = e.to_string();
            let s3 = S3Error::from(e);
            assert_eq!(s3.code(), &S3ErrorCode::InternalError, "{detail}");
            assert_eq!(s3.message(), Some(INTERNAL_MESSAGE), "{detail}");
            let id = s3.request_id().expect("an error id the log also has");
            assert_eq!(id.len(), 16);
            assert!(id.bytes().all(|c| c.is_ascii_hexdigit()), "{id}");
        }
    }

    #[test]
    fn unavailable_names_no_backend() {
        let e = Error::Unavailable(
            "object b/k: only 3 of 6 shards readable (backend aws-eu: get shards/x/1: https://h/x)".into(),
        );
        let s3 = S3Error::from(e);
        assert_eq!(s3.code(), &S3ErrorCode::ServiceUnavailable);
        assert_eq!(s3.message(), Some(UNAVAILABLE_MESSAGE));
        assert!(s3.request_id().is_some());
    }

    #[test]
    fn client_errors_keep_their_cause() {
        let s3 = S3Error::from(Error::NoSuchKey {
            bucket: "b".into(),
            key: "k".into(),
        });
        assert_eq!(s3.code(), &S3ErrorCode::NoSuchKey);
        assert!(s3.message().is_some_and(|m| m.contains("b/k")));
        let s3 = S3Error::from(Error::BucketNotEmpty("b".into()));
        assert!(s3.message().is_some_and(|m| m.contains("\"b\"")));
    }
}

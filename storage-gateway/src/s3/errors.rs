//! Mapping engine errors to S3 errors: the right code, status and a message naming the cause.

use crate::error::Error;
use placement::PolicyError;
use s3s::{s3_error, S3Error, S3ErrorCode};

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
                tracing::warn!(error = %e, "request failed: not enough shards");
                s3_error!(ServiceUnavailable, "{e}")
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
                tracing::error!(error = %e, "internal error");
                s3_error!(InternalError, "{e}")
            }
        }
    }
}

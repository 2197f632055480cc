//! The gateway's error type: what failed and on what.

use std::fmt;

/// Result alias for the gateway library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong below the S3 front; mapped to S3 errors in [`crate::s3`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bucket does not exist.
    #[error("bucket {0:?} does not exist")]
    NoSuchBucket(String),
    /// The bucket exists already (and we own it: there is one tenant).
    #[error("bucket {0:?} already exists")]
    BucketExists(String),
    /// The bucket still holds objects.
    #[error("bucket {0:?} is not empty")]
    BucketNotEmpty(String),
    /// The object does not exist.
    #[error("object {bucket}/{key} does not exist")]
    NoSuchKey {
        /// Bucket name.
        bucket: String,
        /// Object key.
        key: String,
    },
    /// The multipart upload does not exist (never created, completed or aborted).
    #[error("multipart upload {0:?} does not exist")]
    NoSuchUpload(String),
    /// A part named to complete an upload is not (or no longer) the one uploaded with that
    /// ETag, or is not encrypted as the upload requires; the message names the part.
    #[error("{0}")]
    InvalidPart(String),
    /// A bucket policy or preset was refused.
    #[error(transparent)]
    Policy(#[from] placement::PolicyError),
    /// Too few shards could be written or read; the message names the object and counts.
    #[error("{0}")]
    Unavailable(String),
    /// A backend call failed.
    #[error("backend {backend}: {op} {path}: {source}")]
    Backend {
        /// Backend id.
        backend: String,
        /// Operation attempted.
        op: &'static str,
        /// Object path on the backend.
        path: String,
        /// Underlying error (boxed: object_store's error is large, and this one travels in
        /// every `Result` of the crate).
        #[source]
        source: Box<object_store::Error>,
    },
    /// A backend is being routed around after failures; the call was not attempted.
    #[error("backend {backend}: {op} {path}: skipped, backend suspect for {retry_in:.1?} more after: {last_error}")]
    BackendDown {
        /// Backend id.
        backend: String,
        /// Operation not attempted.
        op: &'static str,
        /// Object path on the backend.
        path: String,
        /// Until the next trial call.
        retry_in: std::time::Duration,
        /// The failure that made it suspect.
        last_error: String,
    },
    /// The metadata store failed.
    #[error("metadata store: {op}: {message}")]
    Meta {
        /// Operation attempted.
        op: &'static str,
        /// What the store said.
        message: String,
    },
    /// A stored record could not be decoded (corruption or a format from the future).
    #[error("metadata record {what} is unreadable: {message}")]
    Corrupt {
        /// Which record.
        what: String,
        /// Why.
        message: String,
    },
    /// Reading the client's request body failed (disconnect, bad chunk signature, ...).
    #[error("reading request body: {0}")]
    Body(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Filesystem I/O outside object_store (data dir, local sweep).
    #[error("{what}: {source}")]
    Io {
        /// What was being done, on which path.
        what: String,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Encryption failed: a missing or wrong master key, or a block that fails authentication.
    #[error("encryption: {0}")]
    Crypto(String),
    /// The SSE-C key given does not match the object's.
    #[error("access denied: {0}")]
    AccessDenied(String),
    /// An SSE-C object was addressed without its key, or a key was given where none applies.
    #[error("{0}")]
    CustomerKey(String),
    /// Invalid configuration.
    #[error("configuration: {0}")]
    Config(String),
    /// The start-up checks found backends this metadata cannot vouch for; the message says
    /// what was found and which flag overrides it.
    #[error("{0}")]
    StartRefused(String),
    /// A background task died unexpectedly.
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    /// Wraps an I/O error with what was being done.
    pub fn io(what: impl fmt::Display, source: std::io::Error) -> Self {
        Self::Io {
            what: what.to_string(),
            source,
        }
    }

    /// Whether a backend answered that the object does not exist (as opposed to failing).
    #[must_use]
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Backend { source, .. } if matches!(**source, object_store::Error::NotFound { .. }))
    }

    /// Wraps a metadata store error.
    pub fn meta(op: &'static str, e: impl fmt::Display) -> Self {
        Self::Meta {
            op,
            message: e.to_string(),
        }
    }
}

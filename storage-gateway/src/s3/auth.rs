//! SigV4 secret lookup with the error S3 gives for an unknown key.

use s3s::auth::{S3Auth, SecretKey};
use s3s::{s3_error, S3Result};

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

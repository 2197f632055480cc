//! Bucket operations: create (with a policy preset), head, delete, list, location.

use super::headers::ts;
use super::Gateway;
use crate::records::{now_ms, BucketRecord};
use placement::{BackendSelector, BucketPolicy};
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

impl Gateway {
    pub(super) async fn create_bucket_op(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let input = req.input;
        let constraint = input
            .create_bucket_configuration
            .as_ref()
            .and_then(|c| c.location_constraint.as_ref())
            .map(|c| c.as_str().to_owned())
            .unwrap_or_default();
        let (policy, backends) = location_constraint(&constraint, self.default_policy)?;
        let eligible = self.engine.eligible(&backends);
        policy.check_backends(eligible.len()).map_err(|e| {
            if backends.is_all() {
                crate::error::Error::from(e).into()
            } else {
                s3_error!(
                    InvalidLocationConstraint,
                    "{e} (backends matching {backends}: {})",
                    if eligible.is_empty() {
                        "none".to_owned()
                    } else {
                        eligible.join(", ")
                    }
                )
            }
        })?;
        let rec = BucketRecord {
            created_ms: now_ms(),
            policy,
            policy_epoch: 1,
            encrypted: self.encrypt_new_buckets,
            backends,
            intent: placement::BucketIntent::default(),
            update_token_sha256: None,
            changed: None,
            prefixes: Vec::new(),
        };
        self.engine.create_bucket(&input.bucket, &rec)?;
        tracing::info!(bucket = %input.bucket, %policy, backends = %rec.backends, encrypted = rec.encrypted, "bucket created");
        Ok(S3Response::new(CreateBucketOutput {
            location: Some(format!("/{}", input.bucket)),
        }))
    }

    pub(super) async fn head_bucket_op(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.engine.require_bucket(&req.input.bucket)?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    pub(super) async fn delete_bucket_op(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        self.engine.delete_bucket(&req.input.bucket)?;
        Ok(S3Response::new(DeleteBucketOutput {}))
    }

    pub(super) async fn list_buckets_op(
        &self,
        _req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let buckets = self
            .engine
            .buckets()?
            .into_iter()
            .map(|(name, rec)| Bucket {
                name: Some(name),
                creation_date: Some(ts(rec.created_ms)),
                bucket_region: None,
            })
            .collect();
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(Owner {
                display_name: Some("mlsysops".into()),
                id: Some("mlsysops".into()),
            }),
            ..Default::default()
        }))
    }

    pub(super) async fn get_bucket_location_op(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.engine.require_bucket(&req.input.bucket)?;
        // Clients use the answer as the signing region, so it must stay a region name
        // (empty = us-east-1); the bucket's policy is not a region.
        Ok(S3Response::new(GetBucketLocationOutput::default()))
    }
}

impl Gateway {
    pub(super) async fn put_bucket_encryption_op(
        &self,
        req: S3Request<PutBucketEncryptionInput>,
    ) -> S3Result<S3Response<PutBucketEncryptionOutput>> {
        let input = req.input;
        let rules = &input.server_side_encryption_configuration.rules;
        let [rule] = rules.as_slice() else {
            return Err(s3_error!(
                MalformedXML,
                "ServerSideEncryptionConfiguration needs exactly one Rule, got {}",
                rules.len()
            ));
        };
        let algorithm = rule
            .apply_server_side_encryption_by_default
            .as_ref()
            .map(|d| d.sse_algorithm.as_str().to_owned());
        match algorithm.as_deref() {
            Some(ServerSideEncryption::AES256) => {}
            Some(other) => {
                return Err(s3_error!(
                    NotImplemented,
                    "SSEAlgorithm {other:?} is not supported; only AES256 (keys managed by the gateway)"
                ))
            }
            None => {
                return Err(s3_error!(
                    MalformedXML,
                    "the Rule needs ApplyServerSideEncryptionByDefault with an SSEAlgorithm"
                ))
            }
        }
        self.engine
            .set_bucket_encrypted(&input.bucket, true, "s3:PutBucketEncryption")?;
        tracing::info!(bucket = %input.bucket, "bucket encryption on: new objects now, existing ones as the migrator reaches them");
        Ok(S3Response::new(PutBucketEncryptionOutput {}))
    }

    pub(super) async fn get_bucket_encryption_op(
        &self,
        req: S3Request<GetBucketEncryptionInput>,
    ) -> S3Result<S3Response<GetBucketEncryptionOutput>> {
        let rec = self.engine.require_bucket(&req.input.bucket)?;
        if !rec.encrypted {
            let mut e = s3_error!(
                ServerSideEncryptionConfigurationNotFoundError,
                "bucket {} does not encrypt new objects at rest",
                req.input.bucket
            );
            e.set_status_code(http::StatusCode::NOT_FOUND);
            return Err(e);
        }
        Ok(S3Response::new(GetBucketEncryptionOutput {
            server_side_encryption_configuration: Some(ServerSideEncryptionConfiguration {
                rules: vec![ServerSideEncryptionRule {
                    apply_server_side_encryption_by_default: Some(ServerSideEncryptionByDefault {
                        kms_master_key_id: None,
                        sse_algorithm: ServerSideEncryption::from_static(ServerSideEncryption::AES256),
                    }),
                    bucket_key_enabled: Some(false),
                }],
            }),
        }))
    }

    pub(super) async fn delete_bucket_encryption_op(
        &self,
        req: S3Request<DeleteBucketEncryptionInput>,
    ) -> S3Result<S3Response<DeleteBucketEncryptionOutput>> {
        // Objects already stored stay encrypted: only new writes change.
        self.engine
            .set_bucket_encrypted(&req.input.bucket, false, "s3:DeleteBucketEncryption")?;
        tracing::info!(bucket = %req.input.bucket, "bucket encryption off for new objects");
        Ok(S3Response::new(DeleteBucketEncryptionOutput {}))
    }
}

/// The policy and eligible backends a CreateBucket LocationConstraint asks for. Region names
/// (what stock clients send) mean the default policy on every backend; anything else must be
/// `PRESET`, `PRESET@SELECTOR` or `@SELECTOR` (the default policy on the selected backends),
/// the preset taking the default policy's block size.
pub(super) fn location_constraint(
    constraint: &str,
    default_policy: BucketPolicy,
) -> S3Result<(BucketPolicy, BackendSelector)> {
    let (preset, selector) = match constraint.split_once('@') {
        Some((p, s)) => (p, Some(s)),
        None => (constraint, None),
    };
    let policy = if preset.is_empty() || (selector.is_none() && looks_like_region(preset)) {
        default_policy
    } else {
        let p: BucketPolicy = preset.parse().map_err(crate::error::Error::from)?;
        p.with_block_size(default_policy.block_size)
            .map_err(crate::error::Error::from)?
    };
    let backends: BackendSelector = match selector {
        None => BackendSelector::default(),
        Some(s) => s.parse().map_err(|e| s3_error!(InvalidLocationConstraint, "{e}"))?,
    };
    Ok((policy, backends))
}

/// AWS-style region names (`us-east-1`, `eu-west-2`, `EU`): not presets.
fn looks_like_region(s: &str) -> bool {
    if s.eq_ignore_ascii_case("eu") {
        return true;
    }
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts.last().is_some_and(|p| p.chars().all(|c| c.is_ascii_digit()))
        && parts[0].chars().all(|c| c.is_ascii_lowercase())
        && !s.starts_with("ec-")
        && !s.starts_with("replicate-")
}

#[cfg(test)]
mod tests {
    #[test]
    fn regions_are_not_presets() {
        for r in ["us-east-1", "eu-west-2", "ap-southeast-1", "EU"] {
            assert!(super::looks_like_region(r), "{r}");
        }
        for p in ["ec-4-2", "replicate-3", "ec-8-4", "bogus"] {
            assert!(!super::looks_like_region(p), "{p}");
        }
    }
}

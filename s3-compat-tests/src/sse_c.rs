//! SSE-C: objects sealed with a key the client sends on every request, as three headers
//! (algorithm, the key in base64, the base64 of its MD5).

use aws_sdk_s3::operation::copy_object::builders::CopyObjectFluentBuilder;
use aws_sdk_s3::operation::create_multipart_upload::builders::CreateMultipartUploadFluentBuilder;
use aws_sdk_s3::operation::get_object::builders::GetObjectFluentBuilder;
use aws_sdk_s3::operation::head_object::builders::HeadObjectFluentBuilder;
use aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder;
use aws_sdk_s3::operation::upload_part::builders::UploadPartFluentBuilder;
use aws_sdk_s3::operation::upload_part_copy::builders::UploadPartCopyFluentBuilder;
use base64::Engine as _;
use md5::{Digest, Md5};

/// A customer-provided key as its headers carry it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseC {
    key: String,
    key_md5: String,
}

impl SseC {
    /// The one algorithm of SSE-C (`x-amz-server-side-encryption-customer-algorithm`).
    pub const ALGORITHM: &'static str = "AES256";

    /// The 256-bit key `key`.
    pub fn new(key: &[u8; 32]) -> Self {
        let b64 = |data: &[u8]| base64::engine::general_purpose::STANDARD.encode(data);
        Self {
            key: b64(key),
            key_md5: b64(&Md5::digest(key)),
        }
    }

    /// The key whose 32 bytes all equal `seed`: distinct seeds, distinct keys.
    pub fn from_seed(seed: u8) -> Self {
        Self::new(&[seed; 32])
    }

    /// This key announced with the MD5 of `other`, a mismatch the server must refuse.
    pub fn with_md5_of(&self, other: &SseC) -> Self {
        Self {
            key: self.key.clone(),
            key_md5: other.key_md5.clone(),
        }
    }

    /// Base64 of the key (`x-amz-server-side-encryption-customer-key`).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Base64 of the key's MD5 (`x-amz-server-side-encryption-customer-key-MD5`), which
    /// answers about the object echo.
    pub fn key_md5(&self) -> &str {
        &self.key_md5
    }
}

/// Requests that carry the SSE-C key of the object they write or read.
pub trait WithSseC: Sized {
    /// Adds the three SSE-C headers of `key`.
    fn sse_c(self, key: &SseC) -> Self;
}

/// Copies that carry the SSE-C key of their source object.
pub trait WithCopySourceSseC: Sized {
    /// Adds the three `x-amz-copy-source-server-side-encryption-customer-*` headers of `key`.
    fn copy_source_sse_c(self, key: &SseC) -> Self;
}

/// Implements `$trait` for each builder by setting its three `$alg`/`$key`/`$md5` fields.
macro_rules! impl_sse_c {
    ($trait:ident :: $method:ident => $alg:ident, $key:ident, $md5:ident for $($builder:ty),+ $(,)?) => {
        $(
            impl $trait for $builder {
                fn $method(self, key: &SseC) -> Self {
                    self.$alg(SseC::ALGORITHM).$key(key.key()).$md5(key.key_md5())
                }
            }
        )+
    };
}

impl_sse_c!(WithSseC::sse_c => sse_customer_algorithm, sse_customer_key, sse_customer_key_md5 for
    PutObjectFluentBuilder,
    GetObjectFluentBuilder,
    HeadObjectFluentBuilder,
    CopyObjectFluentBuilder,
    CreateMultipartUploadFluentBuilder,
    UploadPartFluentBuilder,
    UploadPartCopyFluentBuilder,
);

impl_sse_c!(WithCopySourceSseC::copy_source_sse_c =>
    copy_source_sse_customer_algorithm, copy_source_sse_customer_key, copy_source_sse_customer_key_md5 for
    CopyObjectFluentBuilder,
    UploadPartCopyFluentBuilder,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_and_md5_are_base64_of_the_key_and_its_digest() {
        let key = SseC::from_seed(7);
        let decode = |s: &str| base64::engine::general_purpose::STANDARD.decode(s).unwrap();
        assert_eq!(decode(key.key()), [7u8; 32]);
        assert_eq!(decode(key.key_md5()), Md5::digest([7u8; 32]).to_vec());
        assert_ne!(SseC::from_seed(8), key);
        let mismatched = key.with_md5_of(&SseC::from_seed(8));
        assert_eq!(mismatched.key(), key.key());
        assert_eq!(mismatched.key_md5(), SseC::from_seed(8).key_md5());
    }
}

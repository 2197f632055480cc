//! Test data and what S3 makes of it: random bytes, MD5s, ETags, and comparing large bodies.

use md5::{Digest, Md5};
use rand::RngCore;

/// One mebibyte.
pub const MIB: usize = 1024 * 1024;

/// `len` random bytes.
pub fn random_bytes(len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut data);
    data
}

/// Lowercase hex of the MD5 of `data`.
pub fn md5_hex(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

/// The quoted ETag S3 gives a single-PUT object.
pub fn etag_of(data: &[u8]) -> String {
    format!("\"{}\"", md5_hex(data))
}

/// The quoted ETag S3 gives a multipart object: MD5 of the concatenated
/// binary part MD5s, then `-<part count>`.
pub fn multipart_etag<P: AsRef<[u8]>>(parts: &[P]) -> String {
    let mut all = Vec::with_capacity(16 * parts.len());
    for p in parts {
        all.extend_from_slice(&Md5::digest(p.as_ref()));
    }
    format!("\"{}-{}\"", md5_hex(&all), parts.len())
}

/// Asserts two byte strings are equal without dumping megabytes on failure.
#[track_caller]
pub fn assert_same_bytes(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let first_diff = got.iter().zip(want).position(|(a, b)| a != b);
        panic!(
            "{what}: content differs: got {} bytes (md5 {}), want {} bytes (md5 {}); first differing offset {:?}",
            got.len(),
            md5_hex(got),
            want.len(),
            md5_hex(want),
            first_diff
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_etag_matches_s3_definition() {
        let a = b"hello".to_vec();
        let b = b"world".to_vec();
        let mut cat = Md5::digest(&a).to_vec();
        cat.extend_from_slice(&Md5::digest(&b));
        assert_eq!(
            multipart_etag(&[a, b]),
            format!("\"{}-2\"", hex::encode(Md5::digest(&cat)))
        );
    }
}

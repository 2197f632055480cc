//! Conversions between S3 wire types and stored records, and the checks shared by operations:
//! conditional requests, Content-MD5 and x-amz-checksum-* verification.

use crate::engine::{BodyHasher, EtagCondition, PreconditionFailed, WriteCondition};
use crate::records::{Checksums, ContentHeaders, ObjectManifest};
use base64::Engine as _;
use s3s::checksum::ChecksumHasher;
use s3s::dto::{ChecksumAlgorithm, ETag, ETagCondition, Metadata, Range, Timestamp};
use s3s::{s3_error, S3Error, S3Result};
use time::OffsetDateTime;

/// The x-amz-checksum-* headers of an input that carries them (PutObject, UploadPart).
macro_rules! provided_checksums {
    ($input:expr) => {
        $crate::records::Checksums {
            crc32: $input.checksum_crc32.clone(),
            crc32c: $input.checksum_crc32c.clone(),
            sha1: $input.checksum_sha1.clone(),
            sha256: $input.checksum_sha256.clone(),
            crc64nvme: $input.checksum_crc64nvme.clone(),
        }
    };
}
pub(super) use provided_checksums;

/// Milliseconds since the epoch as an S3 timestamp.
pub fn ts(ms: i64) -> Timestamp {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    Timestamp::from(t)
}

/// An S3 timestamp as milliseconds since the epoch.
pub fn ms(t: &Timestamp) -> i64 {
    let t: OffsetDateTime = t.clone().into();
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// The object's ETag for the wire.
pub fn etag(m: &ObjectManifest) -> ETag {
    ETag::Strong(m.etag.clone())
}

/// Content headers and user metadata from a request's fields.
#[allow(clippy::too_many_arguments)]
pub fn content_headers(
    content_type: Option<String>,
    content_encoding: Option<String>,
    content_disposition: Option<String>,
    content_language: Option<String>,
    cache_control: Option<String>,
    expires: Option<&Timestamp>,
    metadata: Option<Metadata>,
) -> ContentHeaders {
    ContentHeaders {
        content_type,
        content_encoding,
        content_disposition,
        content_language,
        cache_control,
        expires_ms: expires.map(ms),
        user_metadata: metadata.unwrap_or_default().into_iter().collect(),
    }
}

/// User metadata for the wire (`None` when empty, so no empty header set is sent).
pub fn metadata(h: &ContentHeaders) -> Option<Metadata> {
    (!h.user_metadata.is_empty()).then(|| h.user_metadata.clone().into_iter().collect())
}

/// Applies If-Match / If-None-Match / If-Modified-Since / If-Unmodified-Since to a read, in
/// the precedence RFC 9110 and S3 use (an ETag condition overrides its date twin).
pub fn check_read_conditions(
    m: &ObjectManifest,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
) -> S3Result<()> {
    check_conditions(
        m,
        if_match,
        if_none_match,
        if_modified_since,
        if_unmodified_since,
        false,
    )
}

/// The same conditions for a copy source, where every failure is 412 (S3 never answers a copy
/// with 304).
pub fn check_copy_source_conditions(
    m: &ObjectManifest,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
) -> S3Result<()> {
    check_conditions(m, if_match, if_none_match, if_modified_since, if_unmodified_since, true)
}

fn etag_matches(m: &ObjectManifest, c: &ETagCondition) -> bool {
    match c {
        ETagCondition::Any => true,
        ETagCondition::ETag(e) => e.value() == m.etag,
    }
}

fn check_conditions(
    m: &ObjectManifest,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
    copy: bool,
) -> S3Result<()> {
    // HTTP dates have whole seconds; compare at that precision.
    let modified_s = m.last_modified_ms.div_euclid(1000);
    let secs = |t: &Timestamp| ms(t).div_euclid(1000);
    match if_match {
        Some(c) if !etag_matches(m, c) => return Err(s3_error!(PreconditionFailed, "If-Match: ETag does not match")),
        Some(_) => {}
        None => {
            if let Some(t) = if_unmodified_since {
                if modified_s > secs(t) {
                    return Err(s3_error!(
                        PreconditionFailed,
                        "object modified since If-Unmodified-Since"
                    ));
                }
            }
        }
    }
    let not_modified = |msg: &'static str| {
        if copy {
            s3_error!(PreconditionFailed, "{msg}")
        } else {
            s3_error!(NotModified, "{msg}")
        }
    };
    match if_none_match {
        Some(c) if etag_matches(m, c) => return Err(not_modified("If-None-Match: ETag matches")),
        Some(_) => {}
        None => {
            if let Some(t) = if_modified_since {
                if modified_s <= secs(t) {
                    return Err(not_modified("object not modified since If-Modified-Since"));
                }
            }
        }
    }
    Ok(())
}

/// PUT-time conditions (If-Match, If-None-Match) as the engine checks them in the commit.
pub fn write_condition(if_match: Option<&ETagCondition>, if_none_match: Option<&ETagCondition>) -> WriteCondition {
    let engine_side = |c: &ETagCondition| match c {
        ETagCondition::Any => EtagCondition::Any,
        ETagCondition::ETag(e) => EtagCondition::Etag(e.value().to_owned()),
    };
    WriteCondition {
        if_match: if_match.map(engine_side),
        if_none_match: if_none_match.map(engine_side),
    }
}

/// The S3 answer to a write whose precondition failed: 412 PreconditionFailed.
pub fn precondition_failed(why: PreconditionFailed) -> S3Error {
    s3_error!(PreconditionFailed, "{why}")
}

/// The checksums a client announced (explicit header, algorithm, or trailer), as hashers to
/// run over the body.
pub fn checksum_hasher(
    algorithm: Option<&ChecksumAlgorithm>,
    provided: &Checksums,
    headers: &http::HeaderMap,
) -> S3Result<ChecksumHasher> {
    let mut h = ChecksumHasher::default();
    let mut enable = |name: &str| -> S3Result<()> {
        match name.to_ascii_uppercase().as_str() {
            "CRC32" => h.crc32 = Some(Default::default()),
            "CRC32C" => h.crc32c = Some(Default::default()),
            "SHA1" => h.sha1 = Some(Default::default()),
            "SHA256" => h.sha256 = Some(Default::default()),
            "CRC64NVME" => h.crc64nvme = Some(Default::default()),
            other => return Err(s3_error!(InvalidArgument, "unsupported checksum algorithm {other:?}")),
        }
        Ok(())
    };
    if let Some(a) = algorithm {
        enable(a.as_str())?;
    }
    for (name, present) in [
        ("CRC32", provided.crc32.is_some()),
        ("CRC32C", provided.crc32c.is_some()),
        ("SHA1", provided.sha1.is_some()),
        ("SHA256", provided.sha256.is_some()),
        ("CRC64NVME", provided.crc64nvme.is_some()),
    ] {
        if present {
            enable(name)?;
        }
    }
    if let Some(trailer) = headers.get("x-amz-trailer").and_then(|v| v.to_str().ok()) {
        for t in trailer.split(',') {
            if let Some(alg) = t.trim().to_ascii_lowercase().strip_prefix("x-amz-checksum-") {
                enable(alg)?;
            }
        }
    }
    Ok(h)
}

/// Checks Content-MD5 and the announced checksums against what was computed; returns the
/// checksums to store.
pub fn verify_body(
    hasher: BodyHasher,
    content_md5: Option<&str>,
    mut provided: Checksums,
    trailers: Option<&s3s::TrailingHeaders>,
) -> S3Result<([u8; 16], Checksums)> {
    let (md5, computed) = hasher.finish();
    if let Some(want) = content_md5 {
        let want = base64::engine::general_purpose::STANDARD
            .decode(want.trim())
            .map_err(|_| s3_error!(InvalidDigest, "Content-MD5 is not valid base64"))?;
        if want.len() != 16 {
            return Err(s3_error!(InvalidDigest, "Content-MD5 must be 16 bytes"));
        }
        if want[..] != md5[..] {
            return Err(s3_error!(BadDigest, "Content-MD5 does not match the body"));
        }
    }
    if let Some(trailers) = trailers.and_then(s3s::TrailingHeaders::take) {
        let get = |name: &str| trailers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        provided.crc32 = provided.crc32.or_else(|| get("x-amz-checksum-crc32"));
        provided.crc32c = provided.crc32c.or_else(|| get("x-amz-checksum-crc32c"));
        provided.sha1 = provided.sha1.or_else(|| get("x-amz-checksum-sha1"));
        provided.sha256 = provided.sha256.or_else(|| get("x-amz-checksum-sha256"));
        provided.crc64nvme = provided.crc64nvme.or_else(|| get("x-amz-checksum-crc64nvme"));
    }
    for (name, want, got) in [
        ("CRC32", &provided.crc32, &computed.crc32),
        ("CRC32C", &provided.crc32c, &computed.crc32c),
        ("SHA1", &provided.sha1, &computed.sha1),
        ("SHA256", &provided.sha256, &computed.sha256),
        ("CRC64NVME", &provided.crc64nvme, &computed.crc64nvme),
    ] {
        if let Some(want) = want {
            if Some(want) != got.as_ref() {
                return Err(s3_error!(
                    BadDigest,
                    "x-amz-checksum-{} does not match the body",
                    name.to_ascii_lowercase()
                ));
            }
        }
    }
    Ok((md5, computed))
}

/// What a GET's `Range` selects of a `size`-byte object: the byte range and its Content-Range,
/// or `None` for the whole object, which is what a suffix range (`bytes=-N`, N > 0) of an
/// empty object gets: AWS answers it 200 with the empty body, as no byte range can name
/// nothing. Anything else that selects no byte is 416 InvalidRange.
pub fn get_range(range: &Range, size: u64) -> S3Result<Option<(std::ops::Range<u64>, String)>> {
    if size == 0 && matches!(range, Range::Suffix { length } if *length > 0) {
        return Ok(None);
    }
    let unsatisfiable = || {
        s3_error!(
            InvalidRange,
            "range {} is not satisfiable for a {size}-byte object",
            range.to_header_string()
        )
    };
    let r = range.check(size).map_err(|_| unsatisfiable())?;
    let Some(last) = r.end.checked_sub(1).filter(|&l| l >= r.start) else {
        return Err(unsatisfiable());
    };
    let content_range = format!("bytes {}-{last}/{size}", r.start);
    Ok(Some((r, content_range)))
}

/// Parses `x-amz-copy-source-range` (`bytes=first-last`, both inclusive) against a source of
/// `size` bytes: 400 InvalidArgument when it is not of that form, 416 InvalidRange when it is
/// not inside the source.
pub fn copy_source_range(r: &str, size: u64) -> S3Result<std::ops::Range<u64>> {
    let bad = || {
        s3_error!(
            InvalidArgument,
            "x-amz-copy-source-range must be bytes=first-last, got {r:?}"
        )
    };
    let spec = r.trim().strip_prefix("bytes=").ok_or_else(bad)?;
    let (a, b) = spec.split_once('-').ok_or_else(bad)?;
    // Digits only: `parse` would also take a leading '+'.
    let number = |t: &str| {
        let t = t.trim();
        if t.is_empty() || !t.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        t.parse::<u64>().map_err(|_| bad())
    };
    let (first, last) = (number(a)?, number(b)?);
    if first > last || last >= size {
        return Err(s3_error!(
            InvalidRange,
            "copy source range {r:?} is outside the {size}-byte object"
        ));
    }
    // last < size, so last + 1 cannot overflow.
    Ok(first..last + 1)
}

//! Property tests of the request parsers the S3 front owns: `Range`, `x-amz-copy-source`,
//! `x-amz-copy-source-range` and the CreateBucket LocationConstraint. Whatever a client sends,
//! they answer a value or an S3 error and never panic; what they accept means what it says.
//! Case counts are kept small so the suite runs in well under a second in `cargo test`.

use super::bucket::location_constraint;
use super::copy::copy_source;
use super::headers::{copy_source_range, get_range};
use placement::BucketPolicy;
use proptest::prelude::*;
use s3s::dto::{CopySource, Range};
use s3s::S3ErrorCode;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Object sizes with the edges over-represented: empty, one byte, and huge.
fn sizes() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), Just(1u64), 0u64..4096, any::<u64>()]
}

/// Strings that look like what clients send in a range header, and some that do not.
fn range_texts() -> impl Strategy<Value = String> {
    prop_oneof![
        (any::<u64>(), any::<u64>()).prop_map(|(a, b)| format!("bytes={a}-{b}")),
        (0u64..5000, 0u64..5000).prop_map(|(a, b)| format!("bytes={a}-{b}")),
        any::<u64>().prop_map(|a| format!("bytes={a}-")),
        any::<u64>().prop_map(|n| format!("bytes=-{n}")),
        (0u64..100).prop_map(|n| format!("bytes=-{n}")),
        "bytes=[-0-9, +]{0,12}",
        "[ -~]{0,24}",
        any::<String>(),
    ]
}

/// An RFC 3986 percent-encoding that keeps '/', as SDKs encode copy-source keys.
fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn code(e: &s3s::S3Error) -> &S3ErrorCode {
    e.code()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn ranges_select_bytes_of_the_object_or_are_refused(text in range_texts(), size in sizes()) {
        // The header is parsed by s3s (a parse error is its 400); what it parses, we resolve.
        let Ok(range) = Range::parse(&text) else { return Ok(()) };
        match get_range(&range, size) {
            Ok(None) => {
                let suffix_of_empty = size == 0 && matches!(range, Range::Suffix { length } if length > 0);
                prop_assert!(suffix_of_empty, "{text} on {size}: whole object");
            }
            Ok(Some((r, content_range))) => {
                prop_assert!(r.start < r.end && r.end <= size, "{text} on {size}: {r:?}");
                prop_assert_eq!(content_range, format!("bytes {}-{}/{size}", r.start, r.end - 1));
                match range {
                    Range::Int { first, last } => {
                        prop_assert_eq!(r.start, first);
                        prop_assert_eq!(r.end, last.map_or(size, |l| l.saturating_add(1).min(size)));
                    }
                    Range::Suffix { length } => {
                        prop_assert_eq!(r.end, size);
                        prop_assert_eq!(r.end - r.start, length.min(size));
                    }
                }
            }
            Err(e) => prop_assert_eq!(code(&e), &S3ErrorCode::InvalidRange, "{} on {}", text, size),
        }
    }

    #[test]
    fn range_headers_round_trip(first in 0u64..=i64::MAX as u64, len in proptest::option::of(0u64..1 << 40), suffix in any::<u64>()) {
        let int = Range::Int { first, last: len.map(|l| first.saturating_add(l).min(i64::MAX as u64)) };
        prop_assert_eq!(Range::parse(&int.to_header_string()).ok(), Some(int));
        let suffix = Range::Suffix { length: suffix };
        prop_assert_eq!(Range::parse(&suffix.to_header_string()).ok(), Some(suffix));
    }

    #[test]
    fn copy_source_ranges_are_inside_the_source_or_refused(text in range_texts(), size in sizes()) {
        match copy_source_range(&text, size) {
            Ok(r) => {
                prop_assert!(r.start < r.end && r.end <= size, "{text} on {size}: {r:?}");
                prop_assert_eq!(copy_source_range(&format!("bytes={}-{}", r.start, r.end - 1), size).ok(), Some(r));
            }
            Err(e) => prop_assert!(
                matches!(code(&e), S3ErrorCode::InvalidArgument | S3ErrorCode::InvalidRange),
                "{text} on {size}: {e:?}"
            ),
        }
    }

    #[test]
    fn copy_source_ranges_within_the_object_are_taken(size in 1u64..1 << 40, a in any::<u64>(), b in any::<u64>()) {
        let (first, last) = (a % size, b % size);
        let (first, last) = (first.min(last), first.max(last));
        prop_assert_eq!(copy_source_range(&format!("bytes={first}-{last}"), size).ok(), Some(first..last + 1));
    }

    #[test]
    fn copy_sources_name_their_bucket_and_key(
        bucket in "[a-z0-9][a-z0-9.-]{1,40}[a-z0-9]",
        key in "\\PC{1,60}",
        version in proptest::option::of(prop_oneof![Just("null".to_owned()), "[A-Za-z0-9]{1,12}"]),
    ) {
        let mut header = format!("{bucket}/{}", percent_encode(&key));
        if let Some(v) = &version {
            header.push_str(&format!("?versionId={v}"));
        }
        let Ok(parsed) = CopySource::parse(&header) else {
            // s3s refuses some bucket names the pattern allows (`a..b`, IP-like): a 400, fine.
            return Ok(());
        };
        match (copy_source(&parsed), version.as_deref()) {
            (Ok((b, k)), None | Some("null")) => {
                prop_assert_eq!(b, bucket);
                prop_assert_eq!(k, key);
            }
            (Err(e), Some(v)) if v != "null" => prop_assert_eq!(code(&e), &S3ErrorCode::InvalidArgument),
            (other, v) => prop_assert!(false, "{header} (version {v:?}): {other:?}"),
        }
    }

    #[test]
    fn any_copy_source_header_is_answered(header in prop_oneof!["[ -~]{0,40}", any::<String>(), "arn:aws:s3:[a-z0-9-]{0,12}:[0-9]{12}:[ -~]{0,30}"]) {
        if let Ok(parsed) = CopySource::parse(&header) {
            if let Ok((bucket, key)) = copy_source(&parsed) {
                prop_assert!(!bucket.is_empty() && !key.is_empty(), "{header}");
            }
        }
    }

    #[test]
    fn location_constraints_give_a_valid_policy_or_a_400(
        constraint in prop_oneof![
            "(ec-[0-9]{1,3}-[0-9]{1,3}|replicate-[0-9]{1,3}|[a-z]{2}-[a-z]{2,9}-[0-9]|EU|)(@[a-z0-9=,]{0,20})?",
            "[ -~]{0,30}",
            any::<String>(),
        ],
    ) {
        let default = BucketPolicy::default();
        match location_constraint(&constraint, default) {
            Ok((policy, backends)) => {
                prop_assert!(policy.validate().is_ok(), "{constraint:?}: {policy}");
                prop_assert_eq!(policy.block_size, default.block_size);
                match constraint.split_once('@') {
                    // The selector given is the one kept.
                    Some((_, sel)) => prop_assert_eq!(backends.to_string().parse().ok(), Some(backends.clone()), "{}", sel),
                    None => prop_assert!(backends.is_all()),
                }
                // A preset that was given is the policy taken.
                let preset = constraint.split('@').next().unwrap_or_default();
                if let Ok(p) = preset.parse::<BucketPolicy>() {
                    prop_assert_eq!((policy.k, policy.m), (p.k, p.m));
                }
            }
            Err(e) => prop_assert!(
                matches!(code(&e), S3ErrorCode::InvalidLocationConstraint | S3ErrorCode::InvalidArgument),
                "{constraint:?}: {e:?}"
            ),
        }
    }
}

#[test]
fn suffix_ranges_of_empty_objects_are_the_whole_object() {
    // AWS answers 200 with the empty body for bytes=-N on a 0-byte object; bytes=-0 and any
    // int range select nothing there and are 416.
    assert_eq!(get_range(&Range::Suffix { length: 5 }, 0).unwrap(), None);
    for r in [
        Range::Suffix { length: 0 },
        Range::Int { first: 0, last: None },
        Range::Int {
            first: 0,
            last: Some(0),
        },
    ] {
        let e = get_range(&r, 0).unwrap_err();
        assert_eq!(e.code(), &S3ErrorCode::InvalidRange, "{r:?}");
    }
    assert_eq!(
        get_range(&Range::Suffix { length: 5 }, 3).unwrap(),
        Some((0..3, "bytes 0-2/3".to_owned()))
    );
}

#[test]
fn copy_sources_without_a_key_are_refused() {
    for header in ["bucket/", "/bucket/"] {
        let parsed = CopySource::parse(header).unwrap();
        let e = copy_source(&parsed).unwrap_err();
        assert_eq!(e.code(), &S3ErrorCode::InvalidArgument, "{header}");
    }
}

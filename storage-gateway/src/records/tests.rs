//! The stored bytes of every record type, pinned: each case is a value as the encoder writes it
//! (version byte + JSON, fields in declaration order, optional ones left out), so it must
//! decode, and encode back to the very same bytes. A change to a v1 struct that alters what is
//! on disk fails here; it belongs in a new version module instead.

use super::*;
use uuid::Uuid;

/// Decodes `json` stored as version 1 and checks that encoding gives back the same bytes.
fn pinned<T: Record>(json: &str) -> T {
    pinned_as(1, json)
}

/// Decodes `json` stored as `version` and checks that encoding gives back the same bytes.
fn pinned_as<T: Record>(version: u8, json: &str) -> T {
    let mut stored = vec![version];
    stored.extend_from_slice(json.as_bytes());
    let value: T = decode(|| "pinned record".into(), &stored).unwrap_or_else(|e| panic!("{json}: {e}"));
    let again = encode(&value);
    assert_eq!(
        String::from_utf8_lossy(&again[1..]),
        json,
        "re-encoding changed the stored JSON"
    );
    assert_eq!(again, stored, "re-encoding changed the stored bytes");
    value
}

const SET: &str = "0190a0b0-0000-7000-8000-000000000000";

const SEGMENT_SEALED: &str = r#"{"set":"0190a0b0-0000-7000-8000-000000000000","size":5,"k":4,"m":2,"block_size":1048576,"backends":["a","b","c","d","e","f"],"encryption":{"wrapped_by":{"master":{"key_id":"mk1"}},"wrapped_key":"c2VjcmV0"}}"#;

const HEADERS: &str = r#"{"content_type":"text/plain","content_encoding":null,"content_disposition":null,"content_language":"en","cache_control":null,"expires_ms":1700000009000,"user_metadata":{"colour":"blue"}}"#;

const CHECKSUMS: &str = r#"{"crc32":null,"crc32c":"AAAAAA==","sha1":null,"sha256":null,"crc64nvme":null}"#;

#[test]
fn bucket_records_keep_their_bytes() {
    let full = r#"{"created_ms":1700000000000,"policy":{"k":4,"m":2,"block_size":1048576},"policy_epoch":3,"encrypted":true,"backends":{"labels":[["gdpr","true"]],"ids":["local0","local3"]},"intent":{"redundancy":"high","max_latency_ms":50,"min_download_mib_s":12.5,"gdpr":true},"update_token_sha256":"ab12","changed":{"at_ms":1700000000500,"by":"cluster-agent","automatic":true,"reason":"p95 over target"}}"#;
    let b: BucketRecord = pinned(full);
    assert_eq!((b.policy.k, b.policy.m, b.policy_epoch), (4, 2, 3));
    assert!(b.encrypted && b.intent.gdpr && !b.backends.is_all());
    assert_eq!(b.changed.as_ref().map(|c| c.by.as_str()), Some("cluster-agent"));

    let plain = r#"{"created_ms":1,"policy":{"k":1,"m":0,"block_size":4096},"policy_epoch":1,"encrypted":false}"#;
    let b: BucketRecord = pinned(plain);
    assert!(b.backends.is_all() && b.changed.is_none() && b.update_token_sha256.is_none());

    // Written before encryption existed: no `encrypted` field at all.
    let old = br#"{"created_ms":1,"policy":{"k":4,"m":2,"block_size":1048576},"policy_epoch":1}"#;
    let mut bytes = vec![1u8];
    bytes.extend_from_slice(old);
    let b: BucketRecord = decode(|| "bucket".into(), &bytes).unwrap();
    assert!(!b.encrypted);
}

#[test]
fn policy_history_entries_keep_their_bytes() {
    let json = r#"{"epoch":2,"change":{"at_ms":5,"by":"admin","automatic":false,"reason":"cheaper"},"old":{"created_ms":1,"policy":{"k":4,"m":2,"block_size":1048576},"policy_epoch":1,"encrypted":false},"new":{"created_ms":1,"policy":{"k":4,"m":1,"block_size":1048576},"policy_epoch":2,"encrypted":false,"intent":{"redundancy":"one"},"changed":{"at_ms":5,"by":"admin","automatic":false,"reason":"cheaper"}}}"#;
    let c: PolicyChange = pinned(json);
    assert_eq!((c.epoch, c.old.policy.m, c.new.policy.m), (2, 2, 1));
    assert_eq!(c.change.reason, "cheaper");
}

#[test]
fn object_manifests_keep_their_bytes() {
    let json = format!(
        r#"{{"version_id":"0190a0b0-0000-7000-8000-000000000001","size":5,"etag":"5d41402abc4b2a76b9719d911017c592","last_modified_ms":1700000000000,"headers":{HEADERS},"checksums":{CHECKSUMS},"parts_count":null,"policy_epoch":1,"segments":[{SEGMENT_SEALED}]}}"#
    );
    let m: ObjectManifest = pinned(&json);
    assert_eq!(m.segments[0].set, Uuid::parse_str(SET).unwrap());
    assert_eq!(m.headers.user_metadata.get("colour").map(String::as_str), Some("blue"));
    assert!(matches!(
        m.segments[0].encryption.as_ref().map(|e| &e.wrapped_by),
        Some(KeyWrap::Master { key_id }) if key_id == "mk1"
    ));

    let multipart = format!(
        r#"{{"version_id":"0190a0b0-0000-7000-8000-000000000002","size":10,"etag":"0123456789abcdef0123456789abcdef-2","last_modified_ms":2,"headers":{HEADERS},"checksums":{CHECKSUMS},"parts_count":2,"policy_epoch":4,"segments":[{{"set":"{SET}","size":5,"k":1,"m":0,"block_size":4096,"backends":["a"]}},{{"set":"{SET}","size":5,"k":1,"m":0,"block_size":4096,"backends":["a"],"encryption":{{"wrapped_by":{{"customer":{{"key_md5":"bWQ1"}}}},"wrapped_key":"a2V5"}}}}]}}"#
    );
    let m: ObjectManifest = pinned(&multipart);
    // A listing reads only the summary fields of the stored bytes; they must agree with the
    // whole manifest's.
    let mut stored = vec![1u8];
    stored.extend_from_slice(multipart.as_bytes());
    let summary = decode_summary(|| "pinned manifest".into(), &stored).unwrap();
    assert_eq!(summary, ObjectSummary::from(&m));
    assert_eq!((summary.size, summary.last_modified_ms), (10, 2));
    assert!(decode_summary(|| "truncated".into(), &stored[..20]).is_err());
    assert!(decode_summary(|| "empty".into(), &[]).is_err());
    assert_eq!(m.parts_count, Some(2));
    assert!(
        m.segments[0].encryption.is_none(),
        "plaintext segments have no encryption field"
    );
    assert_eq!(m.segments[1].customer_key_md5(), Some("bWQ1"));
}

#[test]
fn set_records_keep_their_bytes() {
    let live = format!(
        r#"{{"state":"Live","backends":["a","b","c","d","e","f"],"segment":{SEGMENT_SEALED},"owner":{{"object":{{"bucket":"b","key":"k"}}}},"moves":[{{"idx":1,"from":"b","to":"g"}}]}}"#
    );
    let r: SetRecord = pinned(&live);
    assert_eq!(r.state, SetState::Live);
    assert_eq!(
        r.owner,
        Some(SetOwner::Object {
            bucket: "b".into(),
            key: "k".into()
        })
    );
    assert_eq!(r.all_locations().len(), 7, "both sides of the move");

    let part = format!(
        r#"{{"state":"Live","backends":["a"],"segment":{{"set":"{SET}","size":5,"k":1,"m":0,"block_size":4096,"backends":["a"]}},"owner":{{"part":{{"upload_id":"u1","part_number":3}}}}}}"#
    );
    let r: SetRecord = pinned(&part);
    assert!(matches!(r.owner, Some(SetOwner::Part { part_number: 3, .. })));

    for (json, state) in [
        (r#"{"state":"Pending","backends":["a","b"]}"#, SetState::Pending),
        (r#"{"state":"Deleting","backends":["a","b"]}"#, SetState::Deleting),
    ] {
        let r: SetRecord = pinned(json);
        assert_eq!(r.state, state);
        assert!(r.segment.is_none() && r.owner.is_none() && r.moves.is_empty());
    }
}

#[test]
fn upload_and_part_records_keep_their_bytes() {
    // Version 1: what builds before the upload's encryption wrote.
    let upload = format!(
        r#"{{"upload_id":"u1","created_ms":7,"headers":{HEADERS},"checksum_algorithm":"CRC32C","sse_customer_key_md5":"bWQ1"}}"#
    );
    let u: v1::UploadRecord = pinned(&upload);
    assert_eq!(u.sse_customer_key_md5.as_deref(), Some("bWQ1"));
    let plain = format!(r#"{{"upload_id":"u2","created_ms":7,"headers":{HEADERS},"checksum_algorithm":null}}"#);
    let u: v1::UploadRecord = pinned(&plain);
    assert!(u.checksum_algorithm.is_none() && u.sse_customer_key_md5.is_none());

    let part = format!(
        r#"{{"part_number":3,"etag":"5d41402abc4b2a76b9719d911017c592","last_modified_ms":8,"segment":{SEGMENT_SEALED},"checksums":{CHECKSUMS}}}"#
    );
    let p: PartRecord = pinned(&part);
    assert_eq!((p.part_number, p.segment.size), (3, 5));
}

#[test]
fn upload_records_v2_keep_their_bytes_and_upgrade_v1() {
    for (encryption, want) in [
        (r#""bucket""#, UploadEncryption::Bucket),
        (r#""master""#, UploadEncryption::Master),
        (
            r#"{"customer":{"key_md5":"bWQ1"}}"#,
            UploadEncryption::Customer { key_md5: "bWQ1".into() },
        ),
    ] {
        let json = format!(
            r#"{{"upload_id":"u1","created_ms":7,"headers":{HEADERS},"checksum_algorithm":"CRC32C","encryption":{encryption}}}"#
        );
        let u: UploadRecord = pinned_as(2, &json);
        assert_eq!(u.encryption, want, "{json}");
        assert_eq!((u.upload_id.as_str(), u.created_ms), ("u1", 7));
    }

    // Version-1 bytes decode as the current type: an SSE-C key's MD5 becomes Customer, its
    // absence Bucket (all version 1 could say), and the rest is kept.
    let v1_bytes = |json: String| {
        let mut b = vec![1u8];
        b.extend_from_slice(json.as_bytes());
        b
    };
    let sse_c = v1_bytes(format!(
        r#"{{"upload_id":"u1","created_ms":7,"headers":{HEADERS},"checksum_algorithm":"CRC32C","sse_customer_key_md5":"bWQ1"}}"#
    ));
    let u: UploadRecord = decode(|| "upload".into(), &sse_c).unwrap();
    assert_eq!(u.encryption, UploadEncryption::Customer { key_md5: "bWQ1".into() });
    assert_eq!(u.checksum_algorithm.as_deref(), Some("CRC32C"));
    assert_eq!(u.headers.user_metadata.get("colour").map(String::as_str), Some("blue"));
    assert_eq!(encode(&u)[0], 2, "the next write stores version 2");
    let plain = v1_bytes(format!(
        r#"{{"upload_id":"u2","created_ms":7,"headers":{HEADERS},"checksum_algorithm":null}}"#
    ));
    let u: UploadRecord = decode(|| "upload".into(), &plain).unwrap();
    assert_eq!((u.upload_id.as_str(), &u.encryption), ("u2", &UploadEncryption::Bucket));

    // A build that knows only version 1 refuses version 2 rather than dropping the encryption.
    let v2 = encode(&u);
    let err = decode::<v1::UploadRecord>(|| "upload u2".into(), &v2)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown format version 2"), "{err}");
}

#[test]
fn repair_records_keep_their_bytes() {
    let r: RepairRecord = pinned(r#"{"backend":"b","reason":"missing","noticed_ms":5}"#);
    assert!(!r.unrecoverable);
    let r: RepairRecord = pinned(r#"{"backend":"b","reason":"too few shards","noticed_ms":5,"unrecoverable":true}"#);
    assert!(r.unrecoverable);
}

#[test]
fn unknown_versions_and_garbage_are_refused_with_the_cause() {
    let bytes = encode(&RepairRecord {
        backend: "b".into(),
        reason: "r".into(),
        noticed_ms: 1,
        unrecoverable: false,
    });
    let msg = |b: &[u8]| decode::<RepairRecord>(|| "repair x".into(), b).unwrap_err().to_string();
    let mut future = bytes.clone();
    future[0] = 9;
    assert!(msg(&future).contains("unknown format version 9"), "{}", msg(&future));
    let mut past = bytes.clone();
    past[0] = 0;
    assert!(msg(&past).contains("unknown format version 0"), "{}", msg(&past));
    assert!(msg(&[]).contains("empty record"));
    assert!(msg(&[1, b'{']).contains("repair x"));
}

/// A stand-in for a future format, to show that the migration path works end to end: a v2
/// record reads v1 bytes through `upgrade_from` and `From`.
mod upgrade {
    use super::super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Serialize, Deserialize)]
    struct RepairV2 {
        backend: String,
        reasons: Vec<String>,
    }

    impl From<RepairRecord> for RepairV2 {
        fn from(old: RepairRecord) -> Self {
            Self {
                backend: old.backend,
                reasons: vec![old.reason],
            }
        }
    }

    impl Record for RepairV2 {
        const VERSION: u8 = 2;
        fn upgrade(version: u8, json: &[u8]) -> std::result::Result<Self, String> {
            upgrade_from::<RepairRecord, _>(version, json)
        }
    }

    #[test]
    fn older_versions_are_upgraded_on_read() {
        let v1 = encode(&RepairRecord {
            backend: "b".into(),
            reason: "missing".into(),
            noticed_ms: 1,
            unrecoverable: false,
        });
        let r: RepairV2 = decode(|| "repair".into(), &v1).unwrap();
        assert_eq!(
            (r.backend.as_str(), r.reasons.as_slice()),
            ("b", &["missing".to_owned()][..])
        );
        let v2 = encode(&r);
        assert_eq!(v2[0], 2);
        assert_eq!(decode::<RepairV2>(|| "repair".into(), &v2).unwrap().reasons.len(), 1);
        let mut v0 = v1.clone();
        v0[0] = 0;
        assert!(decode::<RepairV2>(|| "repair".into(), &v0).is_err());
    }
}

#[test]
fn keyed_segments_keep_their_bytes() {
    // A plaintext set whose shard blocks carry a keyed MAC: in a manifest and in its set record
    // (which keeps the wrapped MAC key, unlike a data key).
    let keyed = format!(
        r#"{{"set":"{SET}","size":5,"k":4,"m":2,"block_size":1048576,"backends":["a","b","c","d","e","f"],"integrity":{{"alg":"blake3-128","key":{{"wrapped_by":{{"master":{{"key_id":"mk1"}}}},"wrapped_key":"bWFj"}}}}}}"#
    );
    let json = format!(
        r#"{{"version_id":"0190a0b0-0000-7000-8000-000000000003","size":5,"etag":"5d41402abc4b2a76b9719d911017c592","last_modified_ms":3,"headers":{HEADERS},"checksums":{CHECKSUMS},"parts_count":null,"policy_epoch":1,"segments":[{keyed}]}}"#
    );
    let m: ObjectManifest = pinned(&json);
    let seg = &m.segments[0];
    assert_eq!(seg.integrity.as_ref().map(|i| i.alg), Some(MacAlg::Blake3Trunc128));
    assert!(seg.encryption.is_none());
    assert!(seg.layout().keyed && seg.layout().trailer_len() == 20);
    assert_eq!(seg.without_key(), *seg, "the set record keeps the MAC key");
    let live = format!(r#"{{"state":"Live","backends":["a","b","c","d","e","f"],"segment":{keyed}}}"#);
    let r: SetRecord = pinned(&live);
    assert!(r.segment.is_some_and(|s| s.layout().keyed));
    // Segments written before keyed integrity have no such field and a CRC32C-only layout.
    let sealed: ObjectManifest = pinned(&json.replace(&keyed, SEGMENT_SEALED));
    assert!(!sealed.segments[0].layout().keyed);
}

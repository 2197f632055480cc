//! Every S3 operation the gateway serves, driven through aws-sdk-s3 (or raw
//! HTTP where the SDK cannot express the request), with its error cases.
//! Each test starts its own server so tests can run in parallel.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::{ByteStream, DateTime, DateTimeFormat};
use aws_sdk_s3::types::{
    BucketLocationConstraint, ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart,
    CreateBucketConfiguration, Delete, EncodingType, MetadataDirective, ObjectIdentifier,
};
use aws_sdk_s3::Client;
use base64::Engine as _;
use s3_compat_tests::*;

const GC_TIMEOUT: Duration = Duration::from_secs(10);

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

async fn server_with_bucket(bucket: &str) -> (TestServer, Client) {
    let srv = TestServer::start(ServerOptions::new());
    let client = srv.client();
    create_bucket(&client, bucket).await;
    (srv, client)
}

async fn head_bucket_status(client: &Client, bucket: &str) -> u16 {
    match client.head_bucket().bucket(bucket).send().await {
        Ok(_) => 200,
        Err(e) => err_info(&e)
            .status
            .unwrap_or_else(|| panic!("HeadBucket {bucket}: no HTTP response: {e:?}")),
    }
}

async fn bucket_names(client: &Client) -> BTreeSet<String> {
    ok(client.list_buckets().send().await, "ListBuckets")
        .buckets()
        .iter()
        .map(|b| b.name().unwrap_or_default().to_owned())
        .collect()
}

fn location(preset: &str) -> CreateBucketConfiguration {
    CreateBucketConfiguration::builder()
        .location_constraint(BucketLocationConstraint::from(preset))
        .build()
}

/// Asserts the server's shard sets on disk eventually equal `expected`
/// distinct sets (deletion of replaced sets is asynchronous).
async fn assert_shard_sets_converge(srv: &TestServer, expected: usize, what: &str) {
    let converged = eventually(GC_TIMEOUT, || srv.distinct_shard_sets().len() == expected).await;
    assert!(
        converged,
        "{what}: expected {expected} shard sets on disk within {GC_TIMEOUT:?}, found {:?}",
        srv.all_shard_sets()
    );
}

// ---------------------------------------------------------------- buckets

#[tokio::test]
async fn create_bucket_presets_choose_shard_placement() {
    let srv = TestServer::start(ServerOptions::new());
    let c = srv.client();
    // Four blocks of the default 1 MiB block size: every preset stripes it
    // without padding, so the stored bytes are predictable.
    let data = random_bytes(4 * MIB);
    // (bucket, LocationConstraint, k, m); no constraint means ec-4-2.
    let cases = [
        ("plain-default", None, 4usize, 2usize),
        ("erasure-42", Some("ec-4-2"), 4, 2),
        ("erasure-21", Some("ec-2-1"), 2, 1),
        ("triple", Some("replicate-3"), 1, 2),
    ];
    for (bucket, preset, k, m) in cases {
        let mut req = c.create_bucket().bucket(bucket);
        if let Some(p) = preset {
            req = req.create_bucket_configuration(location(p));
        }
        ok(req.send().await, &format!("CreateBucket {bucket} {preset:?}"));
        assert_eq!(head_bucket_status(&c, bucket).await, 200, "HeadBucket {bucket}");

        let before = srv.all_shard_sets();
        put_bytes(&c, bucket, "obj", &data).await;
        srv.settled().await;
        let after = srv.all_shard_sets();
        let mut new_sets = BTreeSet::new();
        let mut stored = 0u64;
        let mut holders = Vec::new();
        for (i, (b, a)) in before.iter().zip(&after).enumerate() {
            let added: Vec<&String> = a.difference(b).collect();
            assert!(
                added.len() <= 1,
                "{bucket}: backend {i} got {} shard sets for one PUT",
                added.len()
            );
            if let Some(set) = added.first() {
                holders.push(i);
                new_sets.insert((*set).clone());
                let dir = srv.backend_dir(i).join("shards").join(set);
                let files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
                assert_eq!(
                    files.len(),
                    1,
                    "{}: expected one shard file, found {files:?}",
                    dir.display()
                );
                stored += std::fs::metadata(&files[0]).unwrap().len();
            }
        }
        assert_eq!(
            new_sets.len(),
            1,
            "{bucket}: one PUT must create one shard set, got {new_sets:?}"
        );
        assert_eq!(
            holders.len(),
            k + m,
            "{bucket} ({preset:?}): shard set spread over backends {holders:?}, want k+m = {}",
            k + m
        );
        // Reed-Solomon cannot store less than size*(k+m)/k; allow headers and
        // per-block checksums on top, but not e.g. whole-block padding.
        let minimum = (data.len() * (k + m) / k) as u64;
        let maximum = minimum + minimum / 8 + 64 * 1024 * (k + m) as u64;
        assert!(
            (minimum..=maximum).contains(&stored),
            "{bucket} ({preset:?}): shards hold {stored} bytes in total, want between {minimum} and {maximum}"
        );
        assert_same_bytes(&get_bytes(&c, bucket, "obj").await, &data, bucket);
    }
    assert_eq!(
        bucket_names(&c).await,
        cases.iter().map(|c| c.0.to_owned()).collect::<BTreeSet<_>>()
    );
}

#[tokio::test]
async fn create_bucket_rejects_unknown_and_unsatisfiable_presets() {
    let srv = TestServer::start(ServerOptions::new());
    let c = srv.client();

    expect_err(
        c.create_bucket()
            .bucket("bad-preset")
            .create_bucket_configuration(location("ec-banana"))
            .send()
            .await,
        400,
        Some("InvalidLocationConstraint"),
    );
    assert_eq!(head_bucket_status(&c, "bad-preset").await, 404);

    // 8+4 and 7 replicas need more than the six backends the server has.
    for (bucket, preset) in [("too-wide", "ec-8-4"), ("too-many-copies", "replicate-7")] {
        let info = expect_err(
            c.create_bucket()
                .bucket(bucket)
                .create_bucket_configuration(location(preset))
                .send()
                .await,
            400,
            None,
        );
        assert!(info.code.is_some(), "{preset}: 400 without an S3 error code: {info:?}");
        assert_eq!(
            head_bucket_status(&c, bucket).await,
            404,
            "{preset}: bucket must not exist"
        );
    }
    assert!(bucket_names(&c).await.is_empty());
}

#[tokio::test]
async fn create_bucket_conflicts_and_invalid_names() {
    let (srv, c) = server_with_bucket("taken").await;
    expect_err(
        c.create_bucket().bucket("taken").send().await,
        409,
        Some("BucketAlreadyOwnedByYou"),
    );

    let too_long = "x".repeat(64);
    for name in [
        "ab",
        too_long.as_str(),
        "UpperCase",
        "under_score",
        "-leading-dash",
        "trailing-dash-",
        "double..dot",
        "192.168.10.20",
    ] {
        expect_err(
            c.create_bucket().bucket(name).send().await,
            400,
            Some("InvalidBucketName"),
        );
    }
    assert_eq!(bucket_names(&c).await, BTreeSet::from(["taken".to_owned()]));
    drop(srv);
}

#[tokio::test]
async fn delete_bucket_requires_empty_and_existing_bucket() {
    let (_srv, c) = server_with_bucket("doomed").await;
    put_bytes(&c, "doomed", "k", b"content").await;

    expect_err(
        c.delete_bucket().bucket("doomed").send().await,
        409,
        Some("BucketNotEmpty"),
    );
    assert_eq!(head_bucket_status(&c, "doomed").await, 200);

    ok(c.delete_object().bucket("doomed").key("k").send().await, "DeleteObject");
    ok(c.delete_bucket().bucket("doomed").send().await, "DeleteBucket");
    assert_eq!(head_bucket_status(&c, "doomed").await, 404);
    assert!(bucket_names(&c).await.is_empty());

    expect_err(
        c.delete_bucket().bucket("doomed").send().await,
        404,
        Some("NoSuchBucket"),
    );
    expect_err(
        c.delete_bucket().bucket("never-existed").send().await,
        404,
        Some("NoSuchBucket"),
    );
}

#[tokio::test]
async fn head_bucket_list_buckets_and_location() {
    let srv = TestServer::start(ServerOptions::new());
    let c = srv.client();
    assert_eq!(head_bucket_status(&c, "missing").await, 404);
    assert!(bucket_names(&c).await.is_empty());

    for b in ["zeta", "alpha", "mid"] {
        create_bucket(&c, b).await;
    }
    let listed: Vec<String> = ok(c.list_buckets().send().await, "ListBuckets")
        .buckets()
        .iter()
        .map(|b| b.name().unwrap().to_owned())
        .collect();
    assert_eq!(listed, ["alpha", "mid", "zeta"], "ListBuckets is sorted by name");
    for b in ["zeta", "alpha", "mid"] {
        assert_eq!(head_bucket_status(&c, b).await, 200);
    }

    ok(
        c.get_bucket_location().bucket("alpha").send().await,
        "GetBucketLocation",
    );
    expect_err(
        c.get_bucket_location().bucket("missing").send().await,
        404,
        Some("NoSuchBucket"),
    );
}

// ------------------------------------------------------- objects: basics

#[tokio::test]
async fn put_get_head_at_block_boundaries() {
    let (_srv, c) = server_with_bucket("sizes").await;
    for size in [0, 1, MIB - 1, MIB, MIB + 1, 5 * MIB + 123] {
        let key = format!("obj-{size}");
        let data = random_bytes(size);
        let put = put_bytes(&c, "sizes", &key, &data).await;
        assert_eq!(put.e_tag(), Some(etag_of(&data).as_str()), "PUT ETag of {size} bytes");

        let got = ok(c.get_object().bucket("sizes").key(&key).send().await, "GetObject");
        assert_eq!(got.content_length(), Some(size as i64), "GET Content-Length");
        assert_eq!(got.e_tag(), Some(etag_of(&data).as_str()), "GET ETag");
        assert!(got.last_modified().is_some(), "GET Last-Modified");
        assert_same_bytes(&collect_body(got.body).await, &data, &key);

        let head = ok(c.head_object().bucket("sizes").key(&key).send().await, "HeadObject");
        assert_eq!(head.content_length(), Some(size as i64), "HEAD Content-Length");
        assert_eq!(head.e_tag(), Some(etag_of(&data).as_str()), "HEAD ETag");
    }
}

#[tokio::test]
async fn overwrite_replaces_content_and_frees_old_shards() {
    let (srv, c) = server_with_bucket("over").await;
    let v1 = random_bytes(MIB + 5);
    put_bytes(&c, "over", "k", &v1).await;
    let first_sets = srv.distinct_shard_sets();
    assert_eq!(first_sets.len(), 1, "one PUT, one shard set: {first_sets:?}");

    let v2 = random_bytes(2 * MIB + 7);
    put_bytes(&c, "over", "k", &v2).await;
    assert_same_bytes(&get_bytes(&c, "over", "k").await, &v2, "after overwrite");
    assert_shard_sets_converge(&srv, 1, "after overwrite").await;
    assert!(
        srv.distinct_shard_sets().is_disjoint(&first_sets),
        "the first version's shard set is still on disk"
    );

    ok(c.delete_object().bucket("over").key("k").send().await, "DeleteObject");
    assert_shard_sets_converge(&srv, 0, "after delete").await;
}

#[tokio::test]
async fn range_reads() {
    let (_srv, c) = server_with_bucket("ranges").await;
    let len = 2 * MIB + 777;
    let data = random_bytes(len);
    put_bytes(&c, "ranges", "obj", &data).await;

    // (Range header, first byte, last byte)
    let cases = [
        ("bytes=0-0".to_owned(), 0, 0),
        ("bytes=0-99".to_owned(), 0, 99),
        ("bytes=100-".to_owned(), 100, len - 1),
        ("bytes=-100".to_owned(), len - 100, len - 1),
        (format!("bytes={}-{}", MIB - 10, MIB + 10), MIB - 10, MIB + 10),
        (format!("bytes={}-{}", MIB, 2 * MIB - 1), MIB, 2 * MIB - 1),
        (format!("bytes={}-{}", len - 1, len + 1000), len - 1, len - 1),
        (format!("bytes=0-{}", len + 5), 0, len - 1),
        (format!("bytes=-{}", len + 10), 0, len - 1),
    ];
    for (range, first, last) in cases {
        let out = ok(
            c.get_object().bucket("ranges").key("obj").range(&range).send().await,
            &format!("GET {range}"),
        );
        assert_eq!(
            out.content_range(),
            Some(format!("bytes {first}-{last}/{len}").as_str()),
            "Content-Range for {range}"
        );
        assert_eq!(
            out.content_length(),
            Some((last - first + 1) as i64),
            "Content-Length for {range}"
        );
        assert_same_bytes(&collect_body(out.body).await, &data[first..=last], &range);
    }

    for range in [format!("bytes={len}-"), format!("bytes={}-{}", len + 10, len + 20)] {
        expect_err(
            c.get_object().bucket("ranges").key("obj").range(&range).send().await,
            416,
            Some("InvalidRange"),
        );
    }
    put_bytes(&c, "ranges", "empty", b"").await;
    expect_err(
        c.get_object()
            .bucket("ranges")
            .key("empty")
            .range("bytes=0-0")
            .send()
            .await,
        416,
        Some("InvalidRange"),
    );
}

#[tokio::test]
async fn conditional_get_and_head() {
    let (_srv, c) = server_with_bucket("cond").await;
    let data = random_bytes(1000);
    put_bytes(&c, "cond", "k", &data).await;
    let head = ok(c.head_object().bucket("cond").key("k").send().await, "HEAD");
    let etag = head.e_tag().unwrap().to_owned();
    // Last-Modified as sent on the wire (whole seconds), which is what a
    // client echoes back in If-(Un)Modified-Since.
    let lm = *head.last_modified().unwrap();
    let hour_before = DateTime::from_secs(lm.secs() - 3600);
    let get = || c.get_object().bucket("cond").key("k");

    expect_err(
        get().if_match("\"0123456789abcdef0123456789abcdef\"").send().await,
        412,
        Some("PreconditionFailed"),
    );
    let out = ok(get().if_match(&etag).send().await, "If-Match current");
    assert_same_bytes(&collect_body(out.body).await, &data, "If-Match current");

    expect_err(get().if_none_match(&etag).send().await, 304, None);
    ok(
        get().if_none_match("\"0123456789abcdef0123456789abcdef\"").send().await,
        "If-None-Match other",
    );

    expect_err(get().if_modified_since(lm).send().await, 304, None);
    ok(
        get().if_modified_since(hour_before).send().await,
        "If-Modified-Since earlier",
    );

    expect_err(
        get().if_unmodified_since(hour_before).send().await,
        412,
        Some("PreconditionFailed"),
    );
    ok(get().if_unmodified_since(lm).send().await, "If-Unmodified-Since now");

    // RFC 7232 precedence as S3 documents it: a true If-Match overrides a
    // false If-Unmodified-Since; a false If-None-Match (match) wins over a
    // true If-Modified-Since.
    ok(
        get().if_match(&etag).if_unmodified_since(hour_before).send().await,
        "If-Match true + If-Unmodified-Since false",
    );
    expect_err(
        get().if_none_match(&etag).if_modified_since(hour_before).send().await,
        304,
        None,
    );

    let head = || c.head_object().bucket("cond").key("k");
    expect_err(head().if_none_match(&etag).send().await, 304, None);
    expect_err(head().if_match("\"nope\"").send().await, 412, None);
    ok(head().if_match(&etag).send().await, "HEAD If-Match current");
}

#[tokio::test]
async fn missing_objects_and_buckets_are_404() {
    let (_srv, c) = server_with_bucket("present").await;
    expect_err(c.head_object().bucket("present").key("nope").send().await, 404, None);
    expect_err(
        c.get_object().bucket("present").key("nope").send().await,
        404,
        Some("NoSuchKey"),
    );
    expect_err(
        c.get_object().bucket("absent").key("nope").send().await,
        404,
        Some("NoSuchBucket"),
    );
    expect_err(c.head_object().bucket("absent").key("nope").send().await, 404, None);
    expect_err(
        c.put_object()
            .bucket("absent")
            .key("k")
            .body(ByteStream::from_static(b"x"))
            .send()
            .await,
        404,
        Some("NoSuchBucket"),
    );
    expect_err(
        c.list_objects_v2().bucket("absent").send().await,
        404,
        Some("NoSuchBucket"),
    );
}

#[tokio::test]
async fn delete_object_and_delete_objects() {
    let (srv, c) = server_with_bucket("del").await;
    for k in ["a", "b", "c", "d", "e", "f"] {
        put_bytes(&c, "del", k, k.as_bytes()).await;
    }

    ok(c.delete_object().bucket("del").key("a").send().await, "DeleteObject a");
    expect_err(c.head_object().bucket("del").key("a").send().await, 404, None);
    // Deleting a missing key is not an error in S3.
    ok(
        c.delete_object().bucket("del").key("a").send().await,
        "DeleteObject a again",
    );
    ok(
        c.delete_object().bucket("del").key("never").send().await,
        "DeleteObject never",
    );

    let ids = |keys: &[&str]| {
        Delete::builder().set_objects(Some(
            keys.iter()
                .map(|k| ObjectIdentifier::builder().key(*k).build().unwrap())
                .collect(),
        ))
    };
    let out = ok(
        c.delete_objects()
            .bucket("del")
            .delete(ids(&["b", "c", "missing"]).build().unwrap())
            .send()
            .await,
        "DeleteObjects",
    );
    let deleted: BTreeSet<&str> = out.deleted().iter().filter_map(|d| d.key()).collect();
    assert_eq!(deleted, BTreeSet::from(["b", "c", "missing"]));
    assert!(out.errors().is_empty(), "errors: {:?}", out.errors());

    let quiet = ok(
        c.delete_objects()
            .bucket("del")
            .delete(ids(&["d", "e"]).quiet(true).build().unwrap())
            .send()
            .await,
        "DeleteObjects quiet",
    );
    assert!(
        quiet.deleted().is_empty(),
        "quiet mode lists deletions: {:?}",
        quiet.deleted()
    );
    assert!(quiet.errors().is_empty(), "errors: {:?}", quiet.errors());

    let left: Vec<String> = ok(c.list_objects_v2().bucket("del").send().await, "List")
        .contents()
        .iter()
        .map(|o| o.key().unwrap().to_owned())
        .collect();
    assert_eq!(left, ["f"]);
    assert_shard_sets_converge(&srv, 1, "after deletes").await;
}

// ----------------------------------------------------------------- listing

/// What a correct listing returns, computed from the full key set.
fn expected_listing(
    keys: &BTreeSet<String>,
    prefix: &str,
    delimiter: Option<&str>,
    after: Option<&str>,
) -> (Vec<String>, Vec<String>) {
    let mut contents = Vec::new();
    let mut prefixes = BTreeSet::new();
    for k in keys {
        if !k.starts_with(prefix) || after.is_some_and(|a| k.as_str() <= a) {
            continue;
        }
        if let Some(d) = delimiter {
            if let Some(pos) = k[prefix.len()..].find(d) {
                prefixes.insert(k[..prefix.len() + pos + d.len()].to_owned());
                continue;
            }
        }
        contents.push(k.clone());
    }
    (contents, prefixes.into_iter().collect())
}

struct Listed {
    contents: Vec<String>,
    prefixes: Vec<String>,
    pages: usize,
}

async fn list_v2_all(
    c: &Client,
    bucket: &str,
    prefix: &str,
    delimiter: Option<&str>,
    max_keys: i32,
    start_after: Option<&str>,
) -> Listed {
    let mut listed = Listed {
        contents: vec![],
        prefixes: vec![],
        pages: 0,
    };
    let mut token: Option<String> = None;
    loop {
        listed.pages += 1;
        assert!(listed.pages <= 200, "ListObjectsV2 pagination does not terminate");
        let out = ok(
            c.list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .set_delimiter(delimiter.map(str::to_owned))
                .max_keys(max_keys)
                .set_start_after(start_after.map(str::to_owned))
                .set_continuation_token(token.clone())
                .send()
                .await,
            "ListObjectsV2",
        );
        let n = out.contents().len() + out.common_prefixes().len();
        assert!(
            n <= max_keys as usize,
            "page of {n} entries exceeds max-keys {max_keys}"
        );
        assert_eq!(
            out.key_count(),
            Some(n as i32),
            "KeyCount counts keys and common prefixes"
        );
        listed
            .contents
            .extend(out.contents().iter().map(|o| o.key().unwrap().to_owned()));
        listed
            .prefixes
            .extend(out.common_prefixes().iter().map(|p| p.prefix().unwrap().to_owned()));
        if out.is_truncated() == Some(true) {
            let next = out
                .next_continuation_token()
                .expect("truncated page without NextContinuationToken");
            token = Some(next.to_owned());
        } else {
            assert!(
                out.next_continuation_token().is_none(),
                "last page has a continuation token"
            );
            return listed;
        }
    }
}

async fn list_v1_all(
    c: &Client,
    bucket: &str,
    prefix: &str,
    delimiter: Option<&str>,
    max_keys: i32,
    marker: Option<&str>,
) -> Listed {
    let mut listed = Listed {
        contents: vec![],
        prefixes: vec![],
        pages: 0,
    };
    let mut marker = marker.map(str::to_owned);
    loop {
        listed.pages += 1;
        assert!(listed.pages <= 200, "ListObjects pagination does not terminate");
        let out = ok(
            c.list_objects()
                .bucket(bucket)
                .prefix(prefix)
                .set_delimiter(delimiter.map(str::to_owned))
                .max_keys(max_keys)
                .set_marker(marker.clone())
                .send()
                .await,
            "ListObjects",
        );
        let n = out.contents().len() + out.common_prefixes().len();
        assert!(
            n <= max_keys as usize,
            "page of {n} entries exceeds max-keys {max_keys}"
        );
        let last_key = out.contents().last().and_then(|o| o.key()).map(str::to_owned);
        listed
            .contents
            .extend(out.contents().iter().map(|o| o.key().unwrap().to_owned()));
        listed
            .prefixes
            .extend(out.common_prefixes().iter().map(|p| p.prefix().unwrap().to_owned()));
        if out.is_truncated() != Some(true) {
            return listed;
        }
        // Without a delimiter S3 may omit NextMarker and clients continue
        // from the last key; with one, the last entry may be a prefix, so
        // NextMarker is mandatory.
        marker = match (out.next_marker(), delimiter) {
            (Some(m), _) => Some(m.to_owned()),
            (None, None) => Some(last_key.expect("truncated page without keys")),
            (None, Some(_)) => panic!("truncated ListObjects page with a delimiter lacks NextMarker"),
        };
    }
}

fn listing_keys() -> BTreeSet<String> {
    let mut keys: BTreeSet<String> = [
        "a/1", "a/2", "a/b/3", "a/b/4", "a/c/5", "b/1", "c", "d/e/f", "e", "f/", "f/g", "g-1", "g-2", "g-3", "h/i/j/k",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    keys.extend((0..12).map(|i| format!("n/{i:02}")));
    keys
}

async fn put_listing_keys(c: &Client, bucket: &str) -> BTreeSet<String> {
    let keys = listing_keys();
    for k in &keys {
        put_bytes(c, bucket, k, k.as_bytes()).await;
    }
    keys
}

#[tokio::test]
async fn list_objects_v2_prefix_delimiter_pagination() {
    let (_srv, c) = server_with_bucket("list2").await;
    let keys = put_listing_keys(&c, "list2").await;

    let one = ok(c.list_objects_v2().bucket("list2").send().await, "ListObjectsV2");
    for o in one.contents() {
        let k = o.key().unwrap();
        assert_eq!(o.size(), Some(k.len() as i64), "Size of {k}");
        assert_eq!(o.e_tag(), Some(etag_of(k.as_bytes()).as_str()), "ETag of {k}");
        assert!(o.last_modified().is_some(), "LastModified of {k}");
    }

    // (prefix, delimiter, max-keys, start-after)
    let cases: [(&str, Option<&str>, i32, Option<&str>); 9] = [
        ("", None, 1000, None),
        ("", None, 5, None),
        ("a/", None, 2, None),
        ("", Some("/"), 1000, None),
        ("", Some("/"), 2, None),
        ("a/", Some("/"), 1, None),
        ("", None, 4, Some("b/1")),
        ("n/", None, 5, Some("n/03")),
        ("zzz", Some("/"), 10, None),
    ];
    for (prefix, delimiter, max_keys, after) in cases {
        let what = format!("prefix={prefix:?} delimiter={delimiter:?} max-keys={max_keys} start-after={after:?}");
        let (want_contents, want_prefixes) = expected_listing(&keys, prefix, delimiter, after);
        let got = list_v2_all(&c, "list2", prefix, delimiter, max_keys, after).await;
        assert_eq!(got.contents, want_contents, "contents for {what}");
        let mut got_prefixes = got.prefixes.clone();
        got_prefixes.sort();
        got_prefixes.dedup();
        assert_eq!(
            got_prefixes.len(),
            got.prefixes.len(),
            "common prefix repeated across pages for {what}"
        );
        assert_eq!(got_prefixes, want_prefixes, "common prefixes for {what}");
        let entries = want_contents.len() + want_prefixes.len();
        let min_pages = entries.div_ceil(max_keys as usize).max(1);
        assert!(
            got.pages >= min_pages,
            "{what}: {entries} entries in {} pages",
            got.pages
        );
    }
}

#[tokio::test]
async fn list_objects_v1_marker_pagination() {
    let (_srv, c) = server_with_bucket("list1").await;
    let keys = put_listing_keys(&c, "list1").await;

    let cases: [(&str, Option<&str>, i32, Option<&str>); 6] = [
        ("", None, 1000, None),
        ("", None, 4, None),
        ("", Some("/"), 2, None),
        ("a/", Some("/"), 1, None),
        ("", None, 3, Some("c")),
        ("n/", None, 100, Some("n/10")),
    ];
    for (prefix, delimiter, max_keys, marker) in cases {
        let what = format!("prefix={prefix:?} delimiter={delimiter:?} max-keys={max_keys} marker={marker:?}");
        let (want_contents, want_prefixes) = expected_listing(&keys, prefix, delimiter, marker);
        let got = list_v1_all(&c, "list1", prefix, delimiter, max_keys, marker).await;
        assert_eq!(got.contents, want_contents, "contents for {what}");
        let mut got_prefixes = got.prefixes.clone();
        got_prefixes.sort();
        assert_eq!(got_prefixes, want_prefixes, "common prefixes for {what}");
    }
}

#[tokio::test]
async fn list_with_url_encoding() {
    let (_srv, c) = server_with_bucket("enc").await;
    let keys = ["with space", "a+b", "100%", "ü/x", "ü/y", "amp&lt<tag>"];
    for k in keys {
        put_bytes(&c, "enc", k, b"v").await;
    }

    let v2 = ok(
        c.list_objects_v2()
            .bucket("enc")
            .encoding_type(EncodingType::Url)
            .send()
            .await,
        "ListObjectsV2 encoding-type=url",
    );
    assert_eq!(v2.encoding_type(), Some(&EncodingType::Url));
    let raw: Vec<&str> = v2.contents().iter().map(|o| o.key().unwrap()).collect();
    assert!(
        raw.iter()
            .all(|k| !k.contains(' ') && !k.contains('ü') && !k.contains('<')),
        "keys are not URL-encoded: {raw:?}"
    );
    let decoded: BTreeSet<String> = raw.iter().map(|k| url_decode(k)).collect();
    assert_eq!(decoded, keys.iter().map(|k| k.to_string()).collect::<BTreeSet<_>>());

    let with_delim = ok(
        c.list_objects_v2()
            .bucket("enc")
            .delimiter("/")
            .encoding_type(EncodingType::Url)
            .send()
            .await,
        "ListObjectsV2 delimiter + encoding",
    );
    let prefixes: Vec<String> = with_delim
        .common_prefixes()
        .iter()
        .map(|p| p.prefix().unwrap().to_owned())
        .collect();
    assert_eq!(prefixes.len(), 1, "{prefixes:?}");
    assert_ne!(prefixes[0], "ü/", "common prefix not URL-encoded");
    assert_eq!(url_decode(&prefixes[0]), "ü/");

    let v1 = ok(
        c.list_objects()
            .bucket("enc")
            .encoding_type(EncodingType::Url)
            .send()
            .await,
        "ListObjects encoding-type=url",
    );
    let decoded: BTreeSet<String> = v1.contents().iter().map(|o| url_decode(o.key().unwrap())).collect();
    assert_eq!(decoded, keys.iter().map(|k| k.to_string()).collect::<BTreeSet<_>>());
}

// -------------------------------------------------------------- copying

#[tokio::test]
async fn copy_object_metadata_directives_and_conditions() {
    let (_srv, c) = server_with_bucket("copy").await;
    create_bucket(&c, "copy-dst").await;
    let data = random_bytes(3 * MIB + 5);
    let src_key = "ünï/source file.bin";
    let put = ok(
        c.put_object()
            .bucket("copy")
            .key(src_key)
            .content_type("application/x-source")
            .metadata("origin", "first")
            .metadata("color", "blue")
            .body(ByteStream::from(data.clone()))
            .send()
            .await,
        "PUT source",
    );
    let src_etag = put.e_tag().unwrap().to_owned();

    let copied = ok(
        c.copy_object()
            .bucket("copy-dst")
            .key("plain-copy")
            .copy_source(copy_source("copy", src_key))
            .send()
            .await,
        "CopyObject (COPY)",
    );
    assert_eq!(
        copied.copy_object_result().and_then(|r| r.e_tag()),
        Some(src_etag.as_str())
    );
    let got = ok(
        c.get_object().bucket("copy-dst").key("plain-copy").send().await,
        "GET copy",
    );
    assert_eq!(got.content_type(), Some("application/x-source"));
    assert_eq!(
        got.metadata().cloned().unwrap_or_default(),
        HashMap::from([
            ("origin".to_owned(), "first".to_owned()),
            ("color".to_owned(), "blue".to_owned())
        ])
    );
    assert_same_bytes(&collect_body(got.body).await, &data, "copy");

    ok(
        c.copy_object()
            .bucket("copy")
            .key("replaced")
            .copy_source(copy_source("copy", src_key))
            .metadata_directive(MetadataDirective::Replace)
            .content_type("text/x-replaced")
            .metadata("fresh", "yes")
            .send()
            .await,
        "CopyObject (REPLACE)",
    );
    let head = ok(
        c.head_object().bucket("copy").key("replaced").send().await,
        "HEAD replaced",
    );
    assert_eq!(head.content_type(), Some("text/x-replaced"));
    assert_eq!(
        head.metadata().cloned().unwrap_or_default(),
        HashMap::from([("fresh".to_owned(), "yes".to_owned())])
    );
    assert_eq!(head.content_length(), Some(data.len() as i64));

    // Copying an object onto itself is how S3 clients edit metadata.
    ok(
        c.copy_object()
            .bucket("copy")
            .key(src_key)
            .copy_source(copy_source("copy", src_key))
            .metadata_directive(MetadataDirective::Replace)
            .metadata("origin", "edited")
            .send()
            .await,
        "CopyObject onto itself",
    );
    let got = ok(c.get_object().bucket("copy").key(src_key).send().await, "GET edited");
    assert_eq!(
        got.metadata().cloned().unwrap_or_default(),
        HashMap::from([("origin".to_owned(), "edited".to_owned())])
    );
    assert_same_bytes(&collect_body(got.body).await, &data, "self-copy content");

    let copy = || {
        c.copy_object()
            .bucket("copy")
            .key("conditional")
            .copy_source(copy_source("copy", src_key))
    };
    expect_err(
        copy().copy_source_if_match("\"0000\"").send().await,
        412,
        Some("PreconditionFailed"),
    );
    expect_err(
        copy().copy_source_if_none_match(&src_etag).send().await,
        412,
        Some("PreconditionFailed"),
    );
    expect_err(
        c.head_object().bucket("copy").key("conditional").send().await,
        404,
        None,
    );
    ok(
        copy().copy_source_if_match(&src_etag).send().await,
        "copy-source-if-match current",
    );
    ok(
        copy().copy_source_if_none_match("\"0000\"").send().await,
        "copy-source-if-none-match other",
    );

    expect_err(
        c.copy_object()
            .bucket("copy")
            .key("x")
            .copy_source(copy_source("copy", "does-not-exist"))
            .send()
            .await,
        404,
        Some("NoSuchKey"),
    );
}

// ------------------------------------------------------------ multipart

#[tokio::test]
async fn multipart_upload_with_part_copy_lists_and_completes() {
    let (srv, c) = server_with_bucket("mpu").await;
    let source = random_bytes(5 * MIB + 1000);
    put_bytes(&c, "mpu", "source", &source).await;

    let upload_id = ok(
        c.create_multipart_upload()
            .bucket("mpu")
            .key("big/object")
            .content_type("application/x-multipart")
            .metadata("kind", "assembled")
            .send()
            .await,
        "CreateMultipartUpload",
    )
    .upload_id()
    .unwrap()
    .to_owned();

    let part1 = random_bytes(5 * MIB);
    let p1 = ok(
        c.upload_part()
            .bucket("mpu")
            .key("big/object")
            .upload_id(&upload_id)
            .part_number(1)
            .body(ByteStream::from(part1.clone()))
            .send()
            .await,
        "UploadPart 1",
    );
    assert_eq!(p1.e_tag(), Some(etag_of(&part1).as_str()));

    let part2 = source[500..500 + 5 * MIB].to_vec();
    let p2 = ok(
        c.upload_part_copy()
            .bucket("mpu")
            .key("big/object")
            .upload_id(&upload_id)
            .part_number(2)
            .copy_source(copy_source("mpu", "source"))
            .copy_source_range(format!("bytes=500-{}", 500 + 5 * MIB - 1))
            .send()
            .await,
        "UploadPartCopy 2",
    );
    let p2_etag = p2.copy_part_result().and_then(|r| r.e_tag()).unwrap().to_owned();
    assert_eq!(p2_etag, etag_of(&part2));

    let part3 = random_bytes(1234);
    let p3 = ok(
        c.upload_part()
            .bucket("mpu")
            .key("big/object")
            .upload_id(&upload_id)
            .part_number(3)
            .body(ByteStream::from(part3.clone()))
            .send()
            .await,
        "UploadPart 3",
    );

    let uploads = ok(
        c.list_multipart_uploads().bucket("mpu").send().await,
        "ListMultipartUploads",
    );
    let listed: Vec<(&str, &str)> = uploads
        .uploads()
        .iter()
        .map(|u| (u.key().unwrap(), u.upload_id().unwrap()))
        .collect();
    assert_eq!(listed, [("big/object", upload_id.as_str())]);
    let filtered = ok(
        c.list_multipart_uploads().bucket("mpu").prefix("other/").send().await,
        "ListMultipartUploads prefix",
    );
    assert!(
        filtered.uploads().is_empty(),
        "prefix filter ignored: {:?}",
        filtered.uploads()
    );

    let parts = ok(
        c.list_parts()
            .bucket("mpu")
            .key("big/object")
            .upload_id(&upload_id)
            .send()
            .await,
        "ListParts",
    );
    let seen: Vec<(i32, i64, String)> = parts
        .parts()
        .iter()
        .map(|p| {
            (
                p.part_number().unwrap(),
                p.size().unwrap(),
                p.e_tag().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (1, part1.len() as i64, etag_of(&part1)),
            (2, part2.len() as i64, etag_of(&part2)),
            (3, part3.len() as i64, etag_of(&part3)),
        ]
    );
    let page1 = ok(
        c.list_parts()
            .bucket("mpu")
            .key("big/object")
            .upload_id(&upload_id)
            .max_parts(2)
            .send()
            .await,
        "ListParts max-parts=2",
    );
    assert_eq!(page1.parts().len(), 2);
    assert_eq!(page1.is_truncated(), Some(true));
    let marker = page1
        .next_part_number_marker()
        .expect("NextPartNumberMarker")
        .to_owned();
    let page2 = ok(
        c.list_parts()
            .bucket("mpu")
            .key("big/object")
            .upload_id(&upload_id)
            .max_parts(2)
            .part_number_marker(marker)
            .send()
            .await,
        "ListParts second page",
    );
    let rest: Vec<i32> = page2.parts().iter().map(|p| p.part_number().unwrap()).collect();
    assert_eq!(rest, [3]);
    assert_ne!(page2.is_truncated(), Some(true));

    let completed = ok(
        c.complete_multipart_upload()
            .bucket("mpu")
            .key("big/object")
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .parts(
                        CompletedPart::builder()
                            .part_number(1)
                            .e_tag(p1.e_tag().unwrap())
                            .build(),
                    )
                    .parts(CompletedPart::builder().part_number(2).e_tag(&p2_etag).build())
                    .parts(
                        CompletedPart::builder()
                            .part_number(3)
                            .e_tag(p3.e_tag().unwrap())
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await,
        "CompleteMultipartUpload",
    );
    let whole: Vec<u8> = [part1.as_slice(), &part2, &part3].concat();
    let want_etag = multipart_etag(&[&part1, &part2, &part3]);
    assert_eq!(completed.e_tag(), Some(want_etag.as_str()));

    let got = ok(
        c.get_object().bucket("mpu").key("big/object").send().await,
        "GET assembled",
    );
    assert_eq!(got.e_tag(), Some(want_etag.as_str()));
    assert_eq!(got.content_length(), Some(whole.len() as i64));
    assert_eq!(got.content_type(), Some("application/x-multipart"));
    assert_eq!(
        got.metadata().and_then(|m| m.get("kind")).map(String::as_str),
        Some("assembled")
    );
    assert_same_bytes(&collect_body(got.body).await, &whole, "assembled object");

    // Reads that straddle the part boundaries (separate shard sets).
    for (first, last) in [
        (5 * MIB - 10, 5 * MIB + 10),
        (10 * MIB - 1, whole.len() - 1),
        (MIB, 9 * MIB),
    ] {
        let out = ok(
            c.get_object()
                .bucket("mpu")
                .key("big/object")
                .range(format!("bytes={first}-{last}"))
                .send()
                .await,
            "ranged GET of multipart object",
        );
        assert_same_bytes(
            &collect_body(out.body).await,
            &whole[first..=last],
            &format!("{first}-{last}"),
        );
    }

    let uploads = ok(
        c.list_multipart_uploads().bucket("mpu").send().await,
        "ListMultipartUploads",
    );
    assert!(uploads.uploads().is_empty(), "completed upload still listed");
    expect_err(
        c.list_parts()
            .bucket("mpu")
            .key("big/object")
            .upload_id(&upload_id)
            .send()
            .await,
        404,
        Some("NoSuchUpload"),
    );

    // One shard set for the source object plus one per part.
    assert_shard_sets_converge(&srv, 4, "after complete").await;
    let del = Delete::builder()
        .objects(ObjectIdentifier::builder().key("big/object").build().unwrap())
        .objects(ObjectIdentifier::builder().key("source").build().unwrap())
        .build()
        .unwrap();
    ok(
        c.delete_objects().bucket("mpu").delete(del).send().await,
        "DeleteObjects",
    );
    assert_shard_sets_converge(&srv, 0, "after deleting everything").await;
}

#[tokio::test]
async fn multipart_complete_errors_and_abort() {
    let (srv, c) = server_with_bucket("mperr").await;
    let key = "assembled";
    let upload_id = ok(
        c.create_multipart_upload().bucket("mperr").key(key).send().await,
        "CreateMultipartUpload",
    )
    .upload_id()
    .unwrap()
    .to_owned();
    let sizes = [MIB, 5 * MIB, MIB + 3];
    let mut parts = Vec::new();
    let mut etags = Vec::new();
    for (i, size) in sizes.iter().enumerate() {
        let data = random_bytes(*size);
        let out = ok(
            c.upload_part()
                .bucket("mperr")
                .key(key)
                .upload_id(&upload_id)
                .part_number(i as i32 + 1)
                .body(ByteStream::from(data.clone()))
                .send()
                .await,
            "UploadPart",
        );
        etags.push(out.e_tag().unwrap().to_owned());
        parts.push(data);
    }
    let part = |n: i32, etag: &str| CompletedPart::builder().part_number(n).e_tag(etag).build();
    let complete = |list: Vec<CompletedPart>| {
        c.complete_multipart_upload()
            .bucket("mperr")
            .key(key)
            .upload_id(&upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(list)).build())
            .send()
    };

    expect_err(
        complete(vec![part(2, &etags[1]), part(1, &etags[0])]).await,
        400,
        Some("InvalidPartOrder"),
    );
    // Part 1 (1 MiB) is not the last part here.
    expect_err(
        complete(vec![part(1, &etags[0]), part(2, &etags[1])]).await,
        400,
        Some("EntityTooSmall"),
    );
    expect_err(
        complete(vec![
            part(2, &etags[1]),
            part(3, "\"00000000000000000000000000000000\""),
        ])
        .await,
        400,
        Some("InvalidPart"),
    );
    expect_err(
        complete(vec![part(2, &etags[1]), part(7, &etags[2])]).await,
        400,
        Some("InvalidPart"),
    );
    expect_err(c.head_object().bucket("mperr").key(key).send().await, 404, None);

    // Failed completions leave the upload usable; skipping part 1 is legal.
    let done = ok(
        complete(vec![part(2, &etags[1]), part(3, &etags[2])]).await,
        "CompleteMultipartUpload without part 1",
    );
    let want_etag = multipart_etag(&[&parts[1], &parts[2]]);
    assert_eq!(done.e_tag(), Some(want_etag.as_str()));
    let whole = [parts[1].as_slice(), &parts[2]].concat();
    assert_same_bytes(&get_bytes(&c, "mperr", key).await, &whole, "parts 2+3");
    // The unused part 1 must not stay on disk.
    assert_shard_sets_converge(&srv, 2, "after completing with parts 2 and 3").await;

    let abort_id = ok(
        c.create_multipart_upload().bucket("mperr").key("to-abort").send().await,
        "CreateMultipartUpload",
    )
    .upload_id()
    .unwrap()
    .to_owned();
    ok(
        c.upload_part()
            .bucket("mperr")
            .key("to-abort")
            .upload_id(&abort_id)
            .part_number(1)
            .body(ByteStream::from(random_bytes(MIB)))
            .send()
            .await,
        "UploadPart to-abort",
    );
    assert_shard_sets_converge(&srv, 3, "with a pending part").await;
    ok(
        c.abort_multipart_upload()
            .bucket("mperr")
            .key("to-abort")
            .upload_id(&abort_id)
            .send()
            .await,
        "AbortMultipartUpload",
    );
    expect_err(
        c.list_parts()
            .bucket("mperr")
            .key("to-abort")
            .upload_id(&abort_id)
            .send()
            .await,
        404,
        Some("NoSuchUpload"),
    );
    expect_err(
        c.upload_part()
            .bucket("mperr")
            .key("to-abort")
            .upload_id(&abort_id)
            .part_number(2)
            .body(ByteStream::from_static(b"late"))
            .send()
            .await,
        404,
        Some("NoSuchUpload"),
    );
    expect_err(
        c.complete_multipart_upload()
            .bucket("mperr")
            .key("to-abort")
            .upload_id(&abort_id)
            .multipart_upload(CompletedMultipartUpload::builder().parts(part(1, "\"x\"")).build())
            .send()
            .await,
        404,
        Some("NoSuchUpload"),
    );
    expect_err(c.head_object().bucket("mperr").key("to-abort").send().await, 404, None);
    let uploads = ok(
        c.list_multipart_uploads().bucket("mperr").send().await,
        "ListMultipartUploads",
    );
    assert!(
        uploads.uploads().is_empty(),
        "aborted upload still listed: {:?}",
        uploads.uploads()
    );
    assert_shard_sets_converge(&srv, 2, "after abort").await;
}

// ------------------------------------------------------- headers, metadata

/// S3 hands back non-ASCII metadata RFC 2047-encoded; a gateway may also
/// return the UTF-8 bytes unchanged. Either must decode to what was sent.
fn decode_meta(value: &str) -> String {
    match value
        .strip_prefix("=?UTF-8?B?")
        .or_else(|| value.strip_prefix("=?utf-8?b?"))
        .and_then(|v| v.strip_suffix("?="))
    {
        Some(encoded) => String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .expect("RFC 2047 base64"),
        )
        .expect("UTF-8 metadata"),
        None => value.to_owned(),
    }
}

#[tokio::test]
async fn standard_headers_and_user_metadata_round_trip() {
    let (_srv, c) = server_with_bucket("meta").await;
    let data = random_bytes(4096);
    let expires = DateTime::from_secs(4_102_444_800); // 2100-01-01T00:00:00Z
    let metadata = BTreeMap::from([
        ("plain", "value"),
        ("dashed-name", "with spaces inside"),
        ("utf8", "naïve café — 日本語"),
        ("rfc2047", "=?UTF-8?B?w7xiZXI=?="),
    ]);
    let mut put = c
        .put_object()
        .bucket("meta")
        .key("k")
        .content_type("application/x-test; charset=utf-8")
        .content_encoding("gzip")
        .content_disposition("attachment; filename=\"report.txt\"")
        .content_language("de-CH")
        .cache_control("max-age=3600, must-revalidate")
        .expires(expires)
        .body(ByteStream::from(data.clone()));
    for (k, v) in &metadata {
        put = put.metadata(*k, *v);
    }
    ok(put.send().await, "PUT with headers");

    let got = ok(c.get_object().bucket("meta").key("k").send().await, "GET");
    let head = ok(c.head_object().bucket("meta").key("k").send().await, "HEAD");
    for (what, ct, ce, cd, cl, cc, ex, meta) in [
        (
            "GET",
            got.content_type(),
            got.content_encoding(),
            got.content_disposition(),
            got.content_language(),
            got.cache_control(),
            got.expires_string(),
            got.metadata(),
        ),
        (
            "HEAD",
            head.content_type(),
            head.content_encoding(),
            head.content_disposition(),
            head.content_language(),
            head.cache_control(),
            head.expires_string(),
            head.metadata(),
        ),
    ] {
        assert_eq!(ct, Some("application/x-test; charset=utf-8"), "{what} Content-Type");
        assert_eq!(ce, Some("gzip"), "{what} Content-Encoding");
        assert_eq!(
            cd,
            Some("attachment; filename=\"report.txt\""),
            "{what} Content-Disposition"
        );
        assert_eq!(cl, Some("de-CH"), "{what} Content-Language");
        assert_eq!(cc, Some("max-age=3600, must-revalidate"), "{what} Cache-Control");
        let ex = ex.unwrap_or_else(|| panic!("{what}: no Expires header"));
        assert_eq!(
            DateTime::from_str(ex, DateTimeFormat::HttpDate).ok(),
            Some(expires),
            "{what} Expires = {ex:?}"
        );
        let meta = meta.cloned().unwrap_or_default();
        let names: BTreeSet<&str> = meta.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            metadata.keys().copied().collect(),
            "{what} x-amz-meta-* names (raw: {meta:?})"
        );
        for (name, want) in &metadata {
            let got = &meta[*name];
            assert!(
                got == want || decode_meta(got) == *want,
                "{what} x-amz-meta-{name}: sent {want:?}, got {got:?}"
            );
        }
    }
    assert_same_bytes(&collect_body(got.body).await, &data, "body with Content-Encoding set");
}

// ------------------------------------------------------------ checksums

fn checksum_of(algo: &ChecksumAlgorithm, data: &[u8]) -> String {
    use sha1::Digest as _;
    match algo {
        ChecksumAlgorithm::Crc32 => b64(&crc32fast::hash(data).to_be_bytes()),
        ChecksumAlgorithm::Crc32C => b64(&crc32c::crc32c(data).to_be_bytes()),
        ChecksumAlgorithm::Sha1 => b64(&sha1::Sha1::digest(data)),
        ChecksumAlgorithm::Sha256 => b64(&sha2::Sha256::digest(data)),
        other => panic!("no reference implementation for {other:?}"),
    }
}

fn pick_checksum<'a>(
    algo: &ChecksumAlgorithm,
    crc32: Option<&'a str>,
    crc32c: Option<&'a str>,
    sha1: Option<&'a str>,
    sha256: Option<&'a str>,
) -> Option<&'a str> {
    match algo {
        ChecksumAlgorithm::Crc32 => crc32,
        ChecksumAlgorithm::Crc32C => crc32c,
        ChecksumAlgorithm::Sha1 => sha1,
        ChecksumAlgorithm::Sha256 => sha256,
        _ => None,
    }
}

/// GETs `sums/key` with checksum mode on and asserts the stored `algo` checksum is `want`.
async fn get_checking_stored_checksum(
    c: &aws_sdk_s3::Client,
    key: &str,
    algo: &ChecksumAlgorithm,
    want: &str,
    what: &str,
) -> aws_sdk_s3::operation::get_object::GetObjectOutput {
    let got = ok(
        c.get_object()
            .bucket("sums")
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await,
        what,
    );
    assert_eq!(
        pick_checksum(
            algo,
            got.checksum_crc32(),
            got.checksum_crc32_c(),
            got.checksum_sha1(),
            got.checksum_sha256()
        ),
        Some(want),
        "{what}: stored {algo:?} checksum"
    );
    got
}

#[tokio::test]
async fn flexible_checksums_are_stored_and_returned() {
    let (srv, c) = server_with_bucket("sums").await;
    let data = random_bytes(MIB + 333);
    let algos = [
        ChecksumAlgorithm::Crc32,
        ChecksumAlgorithm::Crc32C,
        ChecksumAlgorithm::Sha1,
        ChecksumAlgorithm::Sha256,
    ];
    for algo in &algos {
        let key = format!("in-memory-{}", algo.as_str());
        let want = checksum_of(algo, &data);
        let put = ok(
            c.put_object()
                .bucket("sums")
                .key(&key)
                .checksum_algorithm(algo.clone())
                .body(ByteStream::from(data.clone()))
                .send()
                .await,
            &format!("PUT with {algo:?}"),
        );
        assert_eq!(
            pick_checksum(
                algo,
                put.checksum_crc32(),
                put.checksum_crc32_c(),
                put.checksum_sha1(),
                put.checksum_sha256()
            ),
            Some(want.as_str()),
            "PUT response checksum for {algo:?}"
        );
        let got = get_checking_stored_checksum(&c, &key, algo, &want, "GET with checksum mode").await;
        assert_same_bytes(&collect_body(got.body).await, &data, &key);
        let head = ok(
            c.head_object()
                .bucket("sums")
                .key(&key)
                .checksum_mode(ChecksumMode::Enabled)
                .send()
                .await,
            "HEAD with checksum mode",
        );
        assert_eq!(
            pick_checksum(
                algo,
                head.checksum_crc32(),
                head.checksum_crc32_c(),
                head.checksum_sha1(),
                head.checksum_sha256()
            ),
            Some(want.as_str()),
            "HEAD checksum for {algo:?}"
        );
    }

    // A file body is streamed, so the SDK sends aws-chunked with the
    // checksum in a trailer instead of a header.
    let streamed = random_bytes(3 * MIB + 17);
    let path = srv.scratch_dir().join("upload.bin");
    std::fs::write(&path, &streamed).unwrap();
    for algo in &algos {
        let key = format!("streamed-{}", algo.as_str());
        ok(
            c.put_object()
                .bucket("sums")
                .key(&key)
                .checksum_algorithm(algo.clone())
                .body(ByteStream::from_path(&path).await.unwrap())
                .send()
                .await,
            &format!("streamed PUT with trailing {algo:?}"),
        );
        let got = get_checking_stored_checksum(&c, &key, algo, &checksum_of(algo, &streamed), "GET streamed").await;
        assert_eq!(
            got.e_tag(),
            Some(etag_of(&streamed).as_str()),
            "ETag of aws-chunked upload"
        );
        assert_same_bytes(&collect_body(got.body).await, &streamed, &key);
    }
}

#[tokio::test]
async fn wrong_digests_are_rejected_without_side_effects() {
    let (srv, c) = server_with_bucket("digest").await;
    let old = random_bytes(2000);
    put_bytes(&c, "digest", "existing", &old).await;
    let data = random_bytes(MIB + 1);
    let other = b"something else entirely";

    let put = |key: &'static str| {
        c.put_object()
            .bucket("digest")
            .key(key)
            .body(ByteStream::from(data.clone()))
    };
    let crc_of_other = b64(&crc32fast::hash(other).to_be_bytes());
    let sha_of_other = {
        use sha2::Digest as _;
        b64(&sha2::Sha256::digest(other))
    };
    let md5_of_other = {
        use md5::Digest as _;
        b64(&md5::Md5::digest(other))
    };

    for key in ["fresh", "existing"] {
        expect_err(
            put(key)
                .checksum_algorithm(ChecksumAlgorithm::Crc32)
                .checksum_crc32(&crc_of_other)
                .send()
                .await,
            400,
            Some("BadDigest"),
        );
        expect_err(
            put(key)
                .checksum_algorithm(ChecksumAlgorithm::Sha256)
                .checksum_sha256(&sha_of_other)
                .send()
                .await,
            400,
            Some("BadDigest"),
        );
        expect_err(put(key).content_md5(&md5_of_other).send().await, 400, Some("BadDigest"));
        expect_err(
            put(key).content_md5("not base64 at all!").send().await,
            400,
            Some("InvalidDigest"),
        );
    }
    expect_err(c.head_object().bucket("digest").key("fresh").send().await, 404, None);
    assert_same_bytes(
        &get_bytes(&c, "digest", "existing").await,
        &old,
        "object after rejected overwrites",
    );
    // Rejected bodies must not leave shards behind.
    assert_shard_sets_converge(&srv, 1, "after rejected PUTs").await;

    let good_md5 = {
        use md5::Digest as _;
        b64(&md5::Md5::digest(&data))
    };
    ok(
        put("fresh").content_md5(&good_md5).send().await,
        "PUT with correct Content-MD5",
    );
    assert_same_bytes(&get_bytes(&c, "digest", "fresh").await, &data, "fresh");
}

// ------------------------------------------------------ conditional PUT

#[tokio::test]
async fn conditional_put() {
    let (_srv, c) = server_with_bucket("cput").await;
    let first = random_bytes(100);
    let put = |data: &[u8]| {
        c.put_object()
            .bucket("cput")
            .key("k")
            .body(ByteStream::from(data.to_vec()))
    };
    ok(
        put(&first).if_none_match("*").send().await,
        "If-None-Match * on a new key",
    );
    expect_err(
        put(b"second").if_none_match("*").send().await,
        412,
        Some("PreconditionFailed"),
    );
    assert_same_bytes(&get_bytes(&c, "cput", "k").await, &first, "after refused create");

    expect_err(
        put(b"third")
            .if_match("\"ffffffffffffffffffffffffffffffff\"")
            .send()
            .await,
        412,
        Some("PreconditionFailed"),
    );
    assert_same_bytes(&get_bytes(&c, "cput", "k").await, &first, "after refused If-Match");

    let fourth = random_bytes(200);
    let out = ok(put(&fourth).if_match(etag_of(&first)).send().await, "If-Match current");
    assert_eq!(out.e_tag(), Some(etag_of(&fourth).as_str()));
    assert_same_bytes(&get_bytes(&c, "cput", "k").await, &fourth, "after If-Match overwrite");

    let info = match c
        .put_object()
        .bucket("cput")
        .key("absent")
        .if_match(etag_of(&first))
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
    {
        Ok(out) => panic!("If-Match on a missing key succeeded: {out:?}"),
        Err(e) => err_info(&e),
    };
    assert!(
        matches!(info.status, Some(404) | Some(412)),
        "If-Match on a missing key: {info:?}"
    );
    expect_err(c.head_object().bucket("cput").key("absent").send().await, 404, None);
}

// ------------------------------------------------------------ odd keys

#[tokio::test]
async fn unusual_keys_round_trip() {
    let (_srv, c) = server_with_bucket("keys").await;
    let keys = [
        "ünïcødé/日本語 файл.txt",
        "../x",
        "./dot",
        "a//b",
        "with space",
        "100%",
        "a+b",
        "trailing/",
        "q?mark",
        "hash#tag",
        "semi;colon=eq&amp",
        "<angle> \"quote\" 'apos'",
        "emoji-🦀",
    ];
    for k in keys {
        let data = format!("content of {k}").into_bytes();
        put_bytes(&c, "keys", k, &data).await;
        assert_same_bytes(&get_bytes(&c, "keys", k).await, &data, k);
        let head = ok(c.head_object().bucket("keys").key(k).send().await, &format!("HEAD {k}"));
        assert_eq!(head.content_length(), Some(data.len() as i64), "HEAD {k}");
    }
    let listed: BTreeSet<String> = list_v2_all(&c, "keys", "", None, 1000, None)
        .await
        .contents
        .into_iter()
        .collect();
    assert_eq!(listed, keys.iter().map(|k| k.to_string()).collect::<BTreeSet<_>>());
    let unicode = list_v2_all(&c, "keys", "ünïcødé/", None, 1000, None).await;
    assert_eq!(unicode.contents, ["ünïcødé/日本語 файл.txt"]);
    // One key per page: continuation tokens and markers must carry these
    // keys through intact.
    let sorted: Vec<String> = keys
        .iter()
        .map(|k| k.to_string())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        list_v2_all(&c, "keys", "", None, 1, None).await.contents,
        sorted,
        "V2, max-keys=1"
    );
    assert_eq!(
        list_v1_all(&c, "keys", "", None, 1, None).await.contents,
        sorted,
        "V1, max-keys=1"
    );

    for k in ["ünïcødé/日本語 файл.txt", "with space", "100%", "a+b", "q?mark"] {
        ok(
            c.copy_object()
                .bucket("keys")
                .key(format!("copies/{k}"))
                .copy_source(copy_source("keys", k))
                .send()
                .await,
            &format!("copy of {k}"),
        );
        assert_eq!(
            get_bytes(&c, "keys", &format!("copies/{k}")).await,
            format!("content of {k}").into_bytes(),
            "copy of {k}"
        );
    }

    for k in keys {
        ok(
            c.delete_object().bucket("keys").key(k).send().await,
            &format!("DELETE {k}"),
        );
        expect_err(c.head_object().bucket("keys").key(k).send().await, 404, None);
    }
    let left = list_v2_all(&c, "keys", "", None, 1000, None).await;
    assert!(
        left.contents.iter().all(|k| k.starts_with("copies/")),
        "{:?}",
        left.contents
    );
}

// ------------------------------------------------------- auth, presigning

#[tokio::test]
async fn presigned_urls() {
    let (srv, c) = server_with_bucket("presign").await;
    let data = random_bytes(300_000);
    let cfg = || PresigningConfig::expires_in(Duration::from_secs(600)).unwrap();

    let put = c
        .put_object()
        .bucket("presign")
        .key("via url")
        .presigned(cfg())
        .await
        .expect("presign PUT");
    let headers: Vec<(&str, &str)> = put.headers().collect();
    let resp = raw_request(put.method(), put.uri(), &headers, data.clone()).await;
    assert_eq!(resp.status, 200, "presigned PUT: {}", resp.body_text());
    assert_same_bytes(&get_bytes(&c, "presign", "via url").await, &data, "after presigned PUT");

    let get = c
        .get_object()
        .bucket("presign")
        .key("via url")
        .presigned(cfg())
        .await
        .expect("presign GET");
    let headers: Vec<(&str, &str)> = get.headers().collect();
    let resp = raw_request(get.method(), get.uri(), &headers, vec![]).await;
    assert_eq!(resp.status, 200, "presigned GET: {}", resp.body_text());
    assert_same_bytes(&resp.body, &data, "presigned GET body");
    assert_eq!(resp.header("etag"), Some(etag_of(&data).as_str()));

    // Flip the last hex digit of the signature.
    let uri = get.uri().to_owned();
    let last = uri.chars().last().unwrap();
    let tampered = format!("{}{}", &uri[..uri.len() - 1], if last == '0' { '1' } else { '0' });
    let resp = raw_request("GET", &tampered, &headers, vec![]).await;
    assert_eq!(resp.status, 403, "tampered signature: {}", resp.body_text());
    assert_eq!(resp.error_code().as_deref(), Some("SignatureDoesNotMatch"));

    let expired = PresigningConfig::builder()
        .start_time(SystemTime::now() - Duration::from_secs(7200))
        .expires_in(Duration::from_secs(60))
        .build()
        .unwrap();
    let old = c
        .get_object()
        .bucket("presign")
        .key("via url")
        .presigned(expired)
        .await
        .expect("presign expired GET");
    let resp = raw_request("GET", old.uri(), &[], vec![]).await;
    assert_eq!(resp.status, 403, "expired presigned URL: {}", resp.body_text());

    // Non-ASCII and reserved characters in the signed path.
    let odd_key = "ünï dir/файл+1 (copy).txt";
    put_bytes(&c, "presign", odd_key, b"odd").await;
    let odd = c
        .get_object()
        .bucket("presign")
        .key(odd_key)
        .presigned(cfg())
        .await
        .expect("presign GET of odd key");
    let resp = raw_request("GET", odd.uri(), &[], vec![]).await;
    assert_eq!(resp.status, 200, "presigned GET of {odd_key:?}: {}", resp.body_text());
    assert_eq!(&resp.body[..], b"odd");

    // A presigned PUT URL must not authorize a different key.
    let other_key = put.uri().replacen("via%20url", "elsewhere", 1);
    assert_ne!(other_key, put.uri(), "URL did not contain the encoded key");
    let resp = raw_request("PUT", &other_key, &[], b"sneaky".to_vec()).await;
    assert_eq!(resp.status, 403, "presigned URL reused for another key");
    expect_err(
        c.head_object().bucket("presign").key("elsewhere").send().await,
        404,
        None,
    );
    drop(srv);
}

#[tokio::test]
async fn unauthenticated_and_badly_signed_requests_are_refused() {
    let (srv, c) = server_with_bucket("auth").await;
    put_bytes(&c, "auth", "secret", b"classified").await;

    let url = format!("{}/auth/secret", srv.endpoint());
    let resp = raw_request("GET", &url, &[], vec![]).await;
    assert_eq!(resp.status, 403, "anonymous GET: {}", resp.body_text());
    assert_ne!(&resp.body[..], b"classified");
    let resp = raw_request("GET", &format!("{}/", srv.endpoint()), &[], vec![]).await;
    assert_eq!(resp.status, 403, "anonymous ListBuckets: {}", resp.body_text());
    let resp = raw_request("PUT", &format!("{}/auth/anon", srv.endpoint()), &[], b"x".to_vec()).await;
    assert_eq!(resp.status, 403, "anonymous PUT: {}", resp.body_text());
    expect_err(c.head_object().bucket("auth").key("anon").send().await, 404, None);

    let wrong_secret = srv.client_with_credentials(ACCESS_KEY, "not-the-secret");
    expect_err(
        wrong_secret.get_object().bucket("auth").key("secret").send().await,
        403,
        Some("SignatureDoesNotMatch"),
    );
    expect_err(
        wrong_secret
            .put_object()
            .bucket("auth")
            .key("forged")
            .body(ByteStream::from_static(b"x"))
            .send()
            .await,
        403,
        Some("SignatureDoesNotMatch"),
    );
    expect_err(c.head_object().bucket("auth").key("forged").send().await, 404, None);
    let unknown = srv.client_with_credentials("nobody", SECRET_KEY);
    expect_err(unknown.list_buckets().send().await, 403, Some("InvalidAccessKeyId"));
}

#[tokio::test]
async fn virtual_host_style_addressing() {
    let srv = TestServer::start(ServerOptions::new());
    let (vh, requests) = srv.virtual_host_client();
    let path_style = srv.client();

    ok(
        vh.create_bucket().bucket("vhost-bucket").send().await,
        "CreateBucket (virtual host)",
    );
    let data = random_bytes(MIB + 10);
    ok(
        vh.put_object()
            .bucket("vhost-bucket")
            .key("dir/obj")
            .body(ByteStream::from(data.clone()))
            .send()
            .await,
        "PutObject (virtual host)",
    );
    let got = ok(
        vh.get_object().bucket("vhost-bucket").key("dir/obj").send().await,
        "GET (virtual host)",
    );
    assert_same_bytes(&collect_body(got.body).await, &data, "virtual-host GET");
    let listed = ok(
        vh.list_objects_v2().bucket("vhost-bucket").send().await,
        "List (virtual host)",
    );
    let keys: Vec<&str> = listed.contents().iter().map(|o| o.key().unwrap()).collect();
    assert_eq!(keys, ["dir/obj"]);

    let uris = requests.uris();
    assert_eq!(uris.len(), 4, "{uris:?}");
    let prefix = format!("http://vhost-bucket.localhost:{}/", srv.port());
    assert!(
        uris.iter().all(|u| u.starts_with(&prefix)),
        "requests did not use virtual-host addressing: {uris:?}"
    );

    // The same object seen through path-style addressing.
    assert_same_bytes(
        &get_bytes(&path_style, "vhost-bucket", "dir/obj").await,
        &data,
        "path-style view",
    );
    assert_eq!(
        bucket_names(&path_style).await,
        BTreeSet::from(["vhost-bucket".to_owned()])
    );
}

// ------------------------------------------------------------ concurrency

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_overwrites_and_reads_of_one_key() {
    let (srv, c) = server_with_bucket("race").await;
    let versions: Vec<Vec<u8>> = (0..6).map(|i| random_bytes(MIB / 2 + i * 1000)).collect();
    put_bytes(&c, "race", "k", &versions[0]).await;
    let known: HashMap<String, usize> = versions.iter().enumerate().map(|(i, v)| (md5_hex(v), i)).collect();

    let mut writers = tokio::task::JoinSet::new();
    for v in &versions[1..] {
        let (c, v) = (c.clone(), v.clone());
        writers.spawn(async move {
            put_bytes(&c, "race", "k", &v).await;
        });
    }
    let mut readers = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let c = c.clone();
        readers.spawn(async move {
            let out = ok(
                c.get_object().bucket("race").key("k").send().await,
                "GET during overwrites",
            );
            let etag = out.e_tag().map(str::to_owned);
            let body = collect_body(out.body).await;
            (etag, body)
        });
    }
    while let Some(res) = writers.join_next().await {
        res.expect("writer task");
    }
    while let Some(res) = readers.join_next().await {
        let (etag, body) = res.expect("reader task");
        let md5 = md5_hex(&body);
        assert!(
            known.contains_key(&md5),
            "GET during overwrites returned {} bytes matching no version (md5 {md5})",
            body.len()
        );
        assert_eq!(
            etag,
            Some(format!("\"{md5}\"")),
            "ETag does not describe the body it came with"
        );
    }

    let last = get_bytes(&c, "race", "k").await;
    let winner = known.get(&md5_hex(&last)).copied();
    assert!(
        matches!(winner, Some(1..)),
        "final content is version {winner:?}, want one of the overwrites"
    );
    assert_shard_sets_converge(&srv, 1, "after concurrent overwrites").await;

    // Delete and recreate back to back: deferred cleanup of the old shard
    // sets must never hit the new ones.
    let mut latest = Vec::new();
    for round in 0..5 {
        ok(c.delete_object().bucket("race").key("k").send().await, "DeleteObject");
        latest = random_bytes(1000 + round);
        put_bytes(&c, "race", "k", &latest).await;
    }
    assert_shard_sets_converge(&srv, 1, "after delete/recreate rounds").await;
    assert_same_bytes(
        &get_bytes(&c, "race", "k").await,
        &latest,
        "after delete/recreate rounds",
    );
}

/// A GET that is still streaming when its object is overwritten and then deleted must finish
/// with the whole old version: its shard sets may only be reaped once the reader is done.
#[tokio::test]
async fn a_slow_get_finishes_its_version_through_overwrite_and_delete() {
    let (srv, c) = server_with_bucket("slow").await;
    // Many 4 MiB read windows: far more than the gateway's read-ahead and the socket buffers
    // hold, so most of the body is read from the shards after the overwrite.
    let old = random_bytes(40 * MIB);
    put_bytes(&c, "slow", "k", &old).await;
    let out = ok(c.get_object().bucket("slow").key("k").send().await, "GetObject");
    let mut body = out.body;
    let mut got = body
        .next()
        .await
        .expect("a first chunk")
        .expect("reading the first chunk")
        .to_vec();

    let new = random_bytes(MIB + 7);
    put_bytes(&c, "slow", "k", &new).await;
    assert_same_bytes(&get_bytes(&c, "slow", "k").await, &new, "after the overwrite");
    // The old sets are Deleting now; give the reaper every chance to act on them.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        srv.distinct_shard_sets().len() >= 2,
        "the old version's shard set was deleted while being read: {:?}",
        srv.all_shard_sets()
    );
    while let Some(chunk) = body.next().await {
        got.extend_from_slice(&chunk.expect("reading the rest of the old version"));
    }
    assert_same_bytes(&got, &old, "GET begun before the overwrite");
    drop(body);
    // Released by the reader, the old set is reaped.
    assert_shard_sets_converge(&srv, 1, "after the slow GET ended").await;

    // The same through a delete.
    let out = ok(c.get_object().bucket("slow").key("k").send().await, "GetObject");
    ok(c.delete_object().bucket("slow").key("k").send().await, "DeleteObject");
    assert_same_bytes(&collect_body(out.body).await, &new, "GET begun before the delete");
    assert_shard_sets_converge(&srv, 0, "after the delete").await;
}

#[tokio::test]
async fn reuploading_a_part_replaces_it() {
    let (srv, c) = server_with_bucket("reup").await;
    let id = ok(
        c.create_multipart_upload().bucket("reup").key("k").send().await,
        "CreateMultipartUpload",
    )
    .upload_id()
    .unwrap()
    .to_owned();
    let upload = |n: i32, data: Vec<u8>| {
        c.upload_part()
            .bucket("reup")
            .key("k")
            .upload_id(&id)
            .part_number(n)
            .body(ByteStream::from(data))
            .send()
    };
    let first = random_bytes(5 * MIB);
    let second = random_bytes(5 * MIB);
    let tail = random_bytes(4321);
    let first_etag = ok(upload(1, first.clone()).await, "UploadPart 1")
        .e_tag()
        .unwrap()
        .to_owned();
    let second_etag = ok(upload(1, second.clone()).await, "UploadPart 1 again")
        .e_tag()
        .unwrap()
        .to_owned();
    let tail_etag = ok(upload(2, tail.clone()).await, "UploadPart 2")
        .e_tag()
        .unwrap()
        .to_owned();

    let parts = ok(
        c.list_parts().bucket("reup").key("k").upload_id(&id).send().await,
        "ListParts",
    );
    let listed: Vec<(i32, String)> = parts
        .parts()
        .iter()
        .map(|p| (p.part_number().unwrap(), p.e_tag().unwrap().to_owned()))
        .collect();
    assert_eq!(listed, [(1, second_etag.clone()), (2, tail_etag.clone())]);
    // The replaced upload of part 1 is garbage.
    assert_shard_sets_converge(&srv, 2, "after re-uploading part 1").await;

    let complete = |etag1: &str| {
        c.complete_multipart_upload()
            .bucket("reup")
            .key("k")
            .upload_id(&id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .parts(CompletedPart::builder().part_number(1).e_tag(etag1).build())
                    .parts(CompletedPart::builder().part_number(2).e_tag(&tail_etag).build())
                    .build(),
            )
            .send()
    };
    expect_err(complete(&first_etag).await, 400, Some("InvalidPart"));
    let done = ok(complete(&second_etag).await, "CompleteMultipartUpload");
    assert_eq!(done.e_tag(), Some(multipart_etag(&[&second, &tail]).as_str()));
    assert_same_bytes(
        &get_bytes(&c, "reup", "k").await,
        &[second, tail].concat(),
        "re-uploaded part",
    );
}

//! Prefix rules: the keys under a prefix get their own code and backends. New writes (PUT,
//! copy, multipart parts) follow the rule at once; adding a rule starts an epoch whose
//! migration moves the existing objects under it, and only those; every object reads back
//! byte for byte; bad rules are refused naming the prefix.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use s3_compat_tests::*;
use serde_json::json;

const BUCKET: &str = "tiered";
/// Generous bound for a migration of a few hundred KiB on a debug build sharing 2 cores.
const MIGRATION_TIMEOUT: Duration = Duration::from_secs(300);

/// Shard sets by how many backends hold them, each with the union of those backends.
fn sets_by_width(srv: &TestServer) -> BTreeMap<usize, (usize, BTreeSet<usize>)> {
    let mut out: BTreeMap<usize, (usize, BTreeSet<usize>)> = BTreeMap::new();
    for on in set_locations(srv).into_values() {
        let e = out.entry(on.len()).or_default();
        e.0 += 1;
        e.1.extend(on);
    }
    out
}

/// Waits until the sets are exactly `want`: width -> (count, backends allowed).
async fn wait_for_widths(srv: &TestServer, want: &[(usize, usize, BTreeSet<usize>)]) {
    srv.settled().await;
    let check = || {
        let got = sets_by_width(srv);
        let ok = got.len() == want.len()
            && want
                .iter()
                .all(|(w, n, allowed)| got.get(w).is_some_and(|(c, on)| c == n && on.is_subset(allowed)));
        ok.then_some(()).ok_or(got)
    };
    let done = eventually(Duration::from_secs(30), || check().is_ok()).await;
    assert!(done, "shard sets by width: {:?}, want {want:?}", check().unwrap_err());
}

#[tokio::test]
async fn a_prefix_rule_places_its_keys_and_migrates_existing_ones() {
    let srv = TestServer::start(
        ServerOptions::new()
            .local_backends(6)
            .flag("--agents", "off")
            .flag("--sweep-grace-secs", 0),
    );
    let c = srv.client();
    create_bucket(&c, BUCKET).await;
    let (status, resp) = srv
        .admin_json(
            "PUT",
            "/api/v1/buckets/tiered/storage-policy",
            json!({"preset": "ec-2-1", "backends": ["local0", "local1", "local2"]}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    let mut objects: Vec<(String, Vec<u8>)> = Vec::new();
    for (i, prefix) in ["hot/", "cold/", "cold/", "hot/"].iter().enumerate() {
        let key = format!("{prefix}obj{i}");
        let data = random_bytes(150_000 + i * 1000);
        put_bytes(&c, BUCKET, &key, &data).await;
        objects.push((key, data));
    }
    let first_three: BTreeSet<usize> = (0..3).collect();
    let last_five: BTreeSet<usize> = (1..6).collect();
    wait_for_widths(&srv, &[(3, 4, first_three.clone())]).await;

    // The rule: cold/ on ec-3-2 over local1..local5.
    let (status, resp) = srv
        .admin_json(
            "PUT",
            "/api/v1/buckets/tiered/storage-policy",
            json!({"prefixes": [{"prefix": "cold/", "preset": "ec-3-2",
                   "backends": ["local1", "local2", "local3", "local4", "local5"]}],
                   "reason": "cold data on the wide code"}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["changed"], true, "{resp}");
    let rule = &resp["policy"]["prefixes"][0];
    assert_eq!(
        (rule["prefix"].as_str(), rule["preset"].as_str()),
        (Some("cold/"), Some("ec-3-2")),
        "{resp}"
    );
    assert_eq!(
        rule["eligible"],
        json!(["local1", "local2", "local3", "local4", "local5"]),
        "{resp}"
    );
    let done = srv.wait_migration_done(BUCKET, MIGRATION_TIMEOUT).await;
    assert_eq!(
        (done["state"].as_str(), done["errors"].as_u64()),
        (Some("done"), Some(0)),
        "{done}"
    );
    // The two cold objects moved to five backends; the hot ones stayed where they were.
    wait_for_widths(&srv, &[(3, 2, first_three.clone()), (5, 2, last_five.clone())]).await;
    for (key, data) in &objects {
        assert_same_bytes(&get_bytes(&c, BUCKET, key).await, data, key);
    }

    // New writes under the prefix follow it: a PUT, a copy from a hot key, a multipart part.
    let fresh = random_bytes(70_000);
    put_bytes(&c, BUCKET, "cold/fresh", &fresh).await;
    ok(
        c.copy_object()
            .bucket(BUCKET)
            .key("cold/copied")
            .copy_source(format!("{BUCKET}/hot/obj0"))
            .send()
            .await,
        "CopyObject into cold/",
    );
    let up = ok(
        c.create_multipart_upload()
            .bucket(BUCKET)
            .key("cold/parts")
            .send()
            .await,
        "CreateMultipartUpload",
    );
    let upload_id = up.upload_id().unwrap().to_owned();
    let part_data = random_bytes(6 * MIB);
    let part = ok(
        c.upload_part()
            .bucket(BUCKET)
            .key("cold/parts")
            .upload_id(&upload_id)
            .part_number(1)
            .body(part_data.clone().into())
            .send()
            .await,
        "UploadPart",
    );
    ok(
        c.complete_multipart_upload()
            .bucket(BUCKET)
            .key("cold/parts")
            .upload_id(&upload_id)
            .multipart_upload(
                aws_sdk_s3::types::CompletedMultipartUpload::builder()
                    .parts(
                        aws_sdk_s3::types::CompletedPart::builder()
                            .part_number(1)
                            .e_tag(part.e_tag().unwrap())
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await,
        "CompleteMultipartUpload",
    );
    put_bytes(&c, BUCKET, "hot/fresh", &fresh).await;
    wait_for_widths(&srv, &[(3, 3, first_three), (5, 5, last_five)]).await;
    assert_same_bytes(&get_bytes(&c, BUCKET, "cold/fresh").await, &fresh, "cold/fresh");
    assert_same_bytes(
        &get_bytes(&c, BUCKET, "cold/copied").await,
        &objects[0].1,
        "cold/copied",
    );
    assert_same_bytes(&get_bytes(&c, BUCKET, "cold/parts").await, &part_data, "cold/parts");

    // Refusals name the prefix and change nothing.
    let epoch = resp["policy"]["epoch"].as_u64().unwrap();
    for (body, want) in [
        (
            json!({"prefixes": [{"prefix": "x/", "preset": "ec-8-4"}]}),
            "prefix \"x/\": policy ec-8-4 needs 12 backends",
        ),
        (json!({"prefixes": [{"prefix": ""}]}), "must not be empty"),
        (
            json!({"prefixes": [{"prefix": "cold/", "preset": "ec-3-2", "backends": ["local0", "local1", "local2"]}]}),
            "prefix \"cold/\": policy ec-3-2 needs 5 backends, 3 eligible",
        ),
    ] {
        let (status, answer) = srv
            .admin_json("PUT", "/api/v1/buckets/tiered/storage-policy", body.clone())
            .await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(
            answer["error"].as_str().is_some_and(|e| e.contains(want)),
            "{body}: {answer}"
        );
    }
    let (_, view) = srv.admin("GET", "/api/v1/buckets/tiered/storage-policy").await;
    assert_eq!(view["epoch"].as_u64(), Some(epoch), "{view}");
}

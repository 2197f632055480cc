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

/// Polls `check` every 200 ms until it holds or `timeout` passes; whether it held.
async fn poll<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// The agents' hot/cold on prefixes, end to end: in a bucket read steadily under `live/`, the
/// never-read `archive/` turns cold and gets a prefix rule with a wider code, which the
/// migrator applies to its objects; the decision says why.
#[tokio::test]
async fn the_agents_give_a_cold_prefix_a_wider_code() {
    // Thresholds for a test: an hour's rate counts from the gateway's start, so the archive's
    // own PUTs must fall below "cold" within seconds (prefix counts include writes).
    let srv = TestServer::start(
        ServerOptions::new()
            .local_backends(6)
            .default_policy("ec-2-1")
            .flag("--agent-period-secs", 1)
            .flag("--sweep-grace-secs", 0)
            .config_toml(
                "[agents.policies.hotcold]\n\
                 cold_reads_per_s = 1.0\n\
                 cold_exit_reads_per_s = 2.0\n\
                 cold_after_periods = 3\n\
                 min_prefix_bytes = 0\n",
            ),
    );
    let (status, view) = srv
        .admin_json(
            "PUT",
            "/api/v1/buckets/tier/intent",
            json!({"redundancy": "one", "policy_update_token": "tier-agents-token"}),
        )
        .await;
    assert_eq!(status, 200, "{view}");
    let c = srv.client();
    let applied = poll(Duration::from_secs(30), || async {
        srv.admin("GET", "/api/v1/buckets/tier/intent").await.1["state"] == "applied"
    })
    .await;
    assert!(applied, "the intent was not applied");
    let mut objects = Vec::new();
    for key in ["archive/a", "archive/b", "live/x"] {
        let data = random_bytes(100_000);
        put_bytes(&c, "tier", key, &data).await;
        objects.push((key, data));
    }
    let (_, before) = srv.admin("GET", "/api/v1/buckets/tier/storage-policy").await;
    let k_before = before["k"].as_u64().unwrap();
    // Steady reads of live/ keep the bucket (and live/) from turning cold.
    let reader = {
        let c = c.clone();
        tokio::spawn(async move {
            loop {
                let _ = c.get_object().bucket("tier").key("live/x").send().await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let ruled = poll(Duration::from_secs(90), || async {
        let (_, p) = srv.admin("GET", "/api/v1/buckets/tier/storage-policy").await;
        p["prefixes"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["prefix"] == "archive/"))
    })
    .await;
    let (_, policy) = srv.admin("GET", "/api/v1/buckets/tier/storage-policy").await;
    assert!(ruled, "no rule for archive/: {policy}");
    let rule = policy["prefixes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["prefix"] == "archive/")
        .unwrap();
    assert!(
        rule["k"].as_u64().unwrap() > k_before,
        "not wider than ec-{k_before}: {policy}"
    );
    assert_eq!(
        policy["k"].as_u64(),
        Some(k_before),
        "the bucket's own code stays: {policy}"
    );
    assert!(
        policy["prefixes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["prefix"] != "live/"),
        "live/ is read: {policy}"
    );
    let (_, decisions) = srv.admin("GET", "/api/v1/decisions?bucket=tier").await;
    let d = decisions["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["policy"] == "hot_cold" && d["reason"].as_str().is_some_and(|r| r.contains("prefix archive/")))
        .unwrap_or_else(|| panic!("no hot_cold decision on archive/: {decisions}"));
    assert!(d["reason"].as_str().unwrap().contains("is cold"), "{d}");
    let done = srv.wait_migration_done("tier", MIGRATION_TIMEOUT).await;
    assert_eq!(done["errors"].as_u64(), Some(0), "{done}");
    reader.abort();
    for (key, data) in &objects {
        assert_same_bytes(&get_bytes(&c, "tier", key).await, data, key);
    }
}

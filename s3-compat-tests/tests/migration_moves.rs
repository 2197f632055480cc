//! Migrations that move shards without re-encoding, interrupted by kill -9, and migrations
//! superseded by a newer policy while in flight.

use std::time::{Duration, Instant};

use s3_compat_tests::*;
use serde_json::{json, Value};

const BLOCK: u64 = 64 * 1024;
const TIMEOUT: Duration = Duration::from_secs(300);

async fn put_policy(srv: &TestServer, bucket: &str, body: Value) -> Value {
    let (status, resp) = srv
        .admin_json("PUT", &format!("/api/v1/buckets/{bucket}/policy"), body.clone())
        .await;
    assert_eq!(status, 200, "PUT policy {body}: {resp}");
    assert_eq!(resp["changed"], true, "{resp}");
    resp
}

async fn migration(srv: &TestServer, bucket: &str) -> Value {
    let (status, view) = srv.admin("GET", &format!("/api/v1/buckets/{bucket}/migration")).await;
    assert_eq!(status, 200, "{view}");
    view
}

/// Polls the migration view until `pred` holds (or panics after `TIMEOUT`).
async fn until(srv: &TestServer, bucket: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let v = migration(srv, bucket).await;
        if pred(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "waiting for {what}: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_moves_finish_after_kill9_without_reencoding() {
    const BUCKET: &str = "moves";
    let mut srv = TestServer::start(
        ServerOptions::new()
            .local_backends(8)
            .block_size(BLOCK)
            .flag("--migration-mib-per-sec", 0.25),
    );
    let c = srv.client();
    create_bucket(&c, BUCKET).await;
    put_policy(
        &srv,
        BUCKET,
        json!({"preset": "ec-2-1", "backends": ["local0", "local1", "local2"]}),
    )
    .await;
    let objects: Vec<(String, Vec<u8>)> = (0..8)
        .map(|i| (format!("m{i}"), random_bytes(150 * 1024 + 70_001 * i)))
        .collect();
    for (key, data) in &objects {
        put_bytes(&c, BUCKET, key, data).await;
    }
    wait_for_layout(&srv, &(0..3).collect(), 3, objects.len()..=objects.len()).await;

    // Same code, other backends: every shard moves, none is re-encoded.
    put_policy(
        &srv,
        BUCKET,
        json!({"backends": ["local3", "local4", "local5"], "reason": "move"}),
    )
    .await;
    until(&srv, BUCKET, "a first object moved", |v| {
        v["objects_moved"].as_u64().is_some_and(|n| n >= 1)
    })
    .await;
    // Shard copies of the next objects are on their way at 0.25 MiB/s: kill in the middle.
    tokio::time::sleep(Duration::from_millis(300)).await;
    srv.kill9();
    srv.start_again();
    let log = srv.log_contents();
    let sweep = log
        .lines()
        .rfind(|l| l.contains("startup sweep done"))
        .expect("a startup sweep after the restart");
    // Copies of moves the kill interrupted were on record, and the sweep deleted one side of each.
    let moves: usize = sweep
        .split("unfinished_moves=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no move count in {sweep:?}"));
    assert!(moves > 0, "the kill hit no move in flight: {sweep}");
    let (status, t) = srv
        .admin_json("PUT", "/api/v1/migration", json!({"max_mib_per_sec": 0}))
        .await;
    assert_eq!(status, 200, "{t}");
    let done = srv.wait_migration_done(BUCKET, TIMEOUT).await;
    assert_eq!(done["objects_reencoded"], 0, "only moves were needed: {done}");
    assert_eq!(done["errors"], 0, "{done}");
    assert!(done["objects_moved"].as_u64().is_some_and(|n| n >= 1), "{done}");

    let c = srv.client();
    for (key, data) in &objects {
        assert!(
            get_bytes(&c, BUCKET, key).await == *data,
            "{key} differs after the moves"
        );
    }
    // The same sets, now on local3..5, and no copy left behind on either side of a move.
    wait_for_layout(&srv, &(3..6).collect(), 3, objects.len()..=objects.len()).await;
    assert_eq!(srv.distinct_shard_sets().len(), objects.len(), "moves keep set ids");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_policy_supersedes_a_migration_in_flight() {
    const BUCKET: &str = "supersede";
    let srv = TestServer::start(
        ServerOptions::new()
            .local_backends(6)
            .block_size(BLOCK)
            .flag("--migration-mib-per-sec", 0.5),
    );
    let c = srv.client();
    create_bucket(&c, BUCKET).await;
    let objects: Vec<(String, Vec<u8>)> = (0..10)
        .map(|i| (format!("s{i}"), random_bytes(100 * 1024 + 33_333 * i)))
        .collect();
    for (key, data) in &objects {
        put_bytes(&c, BUCKET, key, data).await;
    }
    let first = put_policy(&srv, BUCKET, json!({"preset": "ec-2-1", "reason": "first"})).await;
    let first_epoch = first["policy"]["epoch"].as_u64().unwrap();
    until(&srv, BUCKET, "the first migration under way", |v| {
        v["objects_done"].as_u64().is_some_and(|n| n >= 1) && v["state"] == "running"
    })
    .await;
    let second = put_policy(
        &srv,
        BUCKET,
        json!({"preset": "replicate-2", "backends": "local0,local1", "reason": "second"}),
    )
    .await;
    assert_eq!(second["policy"]["epoch"], first_epoch + 1, "{second}");
    let (status, _) = srv
        .admin_json("PUT", "/api/v1/migration", json!({"max_mib_per_sec": 0}))
        .await;
    assert_eq!(status, 200);
    let done = srv.wait_migration_done(BUCKET, TIMEOUT).await;
    assert_eq!(done["target_epoch"], first_epoch + 1, "{done}");
    assert_eq!(done["errors"], 0, "{done}");
    for (key, data) in &objects {
        assert!(get_bytes(&c, BUCKET, key).await == *data, "{key} differs");
    }
    wait_for_layout(&srv, &(0..2).collect(), 2, objects.len()..=objects.len()).await;
    let (status, h) = srv
        .admin("GET", &format!("/api/v1/buckets/{BUCKET}/policy/history"))
        .await;
    assert_eq!(status, 200);
    let reasons: Vec<&str> = h["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["first", "second"], "{h}");
}

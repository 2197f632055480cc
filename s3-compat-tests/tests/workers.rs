//! The background workers over the admin API: each listed with its state, throttle and
//! counters; pause and resume; throttle changes (the migrator's is the one behind
//! `/api/v1/migration`); refusals; the token; and a graceful stop that stops them all.

use std::time::{Duration, Instant};

use s3_compat_tests::*;
use serde_json::{json, Value};

const NAMES: [&str; 4] = ["reaper", "healer", "scrubber", "migrator"];

/// Every worker of a `GET /api/v1/workers` answer.
async fn workers(srv: &TestServer) -> Vec<Value> {
    let (status, body) = srv.admin("GET", "/api/v1/workers").await;
    assert_eq!(status, 200, "GET /api/v1/workers: {body}");
    body["workers"]
        .as_array()
        .unwrap_or_else(|| panic!("no workers array in {body}"))
        .clone()
}

/// The worker named `name`.
async fn worker(srv: &TestServer, name: &str) -> Value {
    let all = workers(srv).await;
    all.iter()
        .find(|w| w["name"] == name)
        .unwrap_or_else(|| panic!("no worker {name} in {all:?}"))
        .clone()
}

/// Polls the worker named `name` until `check` holds; returns it, or panics with the last view.
async fn until(srv: &TestServer, name: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let w = worker(srv, name).await;
        if check(&w) {
            return w;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: not {what} within 20 s; last view: {w}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn throttle(max_mib_per_sec: f64, concurrency: u64, paused: bool) -> Value {
    json!({ "max_mib_per_sec": max_mib_per_sec, "concurrency": concurrency, "paused": paused })
}

#[tokio::test]
async fn every_worker_is_listed_with_its_state_throttle_and_counters() {
    let srv = TestServer::start(
        ServerOptions::new()
            .flag("--heal-rate-mib", 16)
            .flag("--scrub-rate-mib", 8),
    );
    let all = workers(&srv).await;
    let names: Vec<&str> = all.iter().filter_map(|w| w["name"].as_str()).collect();
    assert_eq!(names, NAMES, "{all:?}");
    for w in &all {
        let state = w["state"].as_str().unwrap_or_default();
        assert!(["running", "idle"].contains(&state), "a fresh worker is {state}: {w}");
        assert!(
            w["steps"].is_u64() && w["errors"] == 0 && w["last_error"].is_null(),
            "{w}"
        );
    }
    let by_name = |n: &str| all.iter().find(|w| w["name"] == n).unwrap();
    assert_eq!(by_name("healer")["throttle"], throttle(16.0, 4, false));
    assert_eq!(by_name("scrubber")["throttle"], throttle(8.0, 1, false));
    assert!(by_name("reaper")["throttle"].is_null(), "{}", by_name("reaper"));
    let (status, migration) = srv.admin("GET", "/api/v1/migration").await;
    assert_eq!(status, 200, "{migration}");
    assert_eq!(by_name("migrator")["throttle"], migration);
    for (name, counters) in [
        (
            "healer",
            &["shards_repaired", "bytes_written", "failures", "dropped", "passes"][..],
        ),
        (
            "scrubber",
            &[
                "passes",
                "shards_checked",
                "blocks_checked",
                "corrupt_blocks",
                "missing_shards",
                "bytes_read",
            ][..],
        ),
        ("reaper", &["sets_deleted", "sets_deferred", "deletions_failed"][..]),
        (
            "migrator",
            &["objects_reencoded", "objects_moved", "objects_remaining"][..],
        ),
    ] {
        for c in counters {
            assert!(
                by_name(name)["counters"][c].is_u64(),
                "{name} has no counter {c}: {}",
                by_name(name)
            );
        }
    }
    // The healer's counters are the ones /api/v1/redundancy shows.
    let healer = until(&srv, "healer", "done with a pass", |w| {
        w["counters"]["passes"].as_u64() >= Some(1)
    })
    .await;
    let (_, redundancy) = srv.admin("GET", "/api/v1/redundancy").await;
    assert!(
        redundancy["healer"]["passes"].as_u64() >= healer["counters"]["passes"].as_u64(),
        "{redundancy}"
    );
}

#[tokio::test]
async fn the_scrubber_pauses_and_resumes() {
    let srv = TestServer::start(ServerOptions::new());
    let (status, w) = srv
        .admin_json("PUT", "/api/v1/workers/scrubber", json!({"paused": true}))
        .await;
    assert_eq!(status, 200, "{w}");
    assert_eq!(w["name"], "scrubber", "{w}");
    assert_eq!(w["throttle"]["paused"], true, "{w}");
    until(&srv, "scrubber", "paused", |w| w["state"] == "paused").await;
    // The others go on.
    for name in ["reaper", "healer", "migrator"] {
        assert_ne!(worker(&srv, name).await["state"], "paused", "{name}");
    }
    let (status, w) = srv
        .admin_json("PUT", "/api/v1/workers/scrubber", json!({"paused": false}))
        .await;
    assert_eq!(status, 200, "{w}");
    assert_eq!(w["throttle"]["paused"], false, "{w}");
    // Back to its 24 h sleep: resuming does not start a pass.
    let w = until(&srv, "scrubber", "idle", |w| w["state"] == "idle").await;
    assert_eq!(w["counters"]["passes"], 0, "{w}");
    let (status, w) = srv
        .admin_json("PUT", "/api/v1/workers/scrubber", json!({"max_mib_per_sec": 4}))
        .await;
    assert_eq!(status, 200, "{w}");
    assert_eq!(w["throttle"], throttle(4.0, 1, false));
    // A worker without a throttle pauses too.
    let (status, w) = srv
        .admin_json("PUT", "/api/v1/workers/reaper", json!({"paused": true}))
        .await;
    assert_eq!(status, 200, "{w}");
    until(&srv, "reaper", "paused", |w| w["state"] == "paused").await;
}

#[tokio::test]
async fn the_migrator_worker_and_the_migration_throttle_are_one() {
    let srv = TestServer::start(ServerOptions::new());
    let (status, w) = srv
        .admin_json(
            "PUT",
            "/api/v1/workers/migrator",
            json!({"paused": true, "max_mib_per_sec": 2, "concurrency": 3}),
        )
        .await;
    assert_eq!(status, 200, "{w}");
    let (status, t) = srv.admin("GET", "/api/v1/migration").await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t, throttle(2.0, 3, true));
    until(&srv, "migrator", "paused", |w| w["state"] == "paused").await;
    let (status, t) = srv
        .admin_json(
            "PUT",
            "/api/v1/migration",
            json!({"paused": false, "max_mib_per_sec": 0}),
        )
        .await;
    assert_eq!(status, 200, "{t}");
    let w = until(&srv, "migrator", "resumed", |w| w["state"] != "paused").await;
    assert_eq!(w["throttle"], throttle(0.0, 3, false));
}

#[tokio::test]
async fn bad_changes_are_refused_and_change_nothing() {
    let srv = TestServer::start(ServerOptions::new());
    let before = workers(&srv).await;
    let cases = [
        ("nope", json!({"paused": true}), 404, "no worker named \"nope\""),
        ("scrubber", json!({"paused": "yes"}), 400, "not a valid JSON object"),
        ("scrubber", json!({"pause": true}), 400, "unknown field"),
        ("reaper", json!({"concurrency": 2}), 400, "has no throttle"),
        (
            "scrubber",
            json!({"concurrency": 2, "paused": true}),
            400,
            "concurrency must be within 1..=1, got 2",
        ),
        (
            "healer",
            json!({"max_mib_per_sec": -1}),
            400,
            "max_mib_per_sec must be a number >= 0",
        ),
        (
            "migrator",
            json!({"concurrency": 65}),
            400,
            "concurrency must be within 1..=64, got 65",
        ),
    ];
    for (name, body, want, message) in cases {
        let path = format!("/api/v1/workers/{name}");
        let (status, answer) = srv.admin_json("PUT", &path, body.clone()).await;
        assert_eq!(status, want, "PUT {path} {body}: {answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(message),
            "PUT {path} {body}: {error:?} does not say {message:?}"
        );
    }
    let after = workers(&srv).await;
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b["throttle"], a["throttle"], "{} changed", a["name"]);
        assert_ne!(a["state"], "paused", "{}", a["name"]);
    }
}

#[tokio::test]
async fn the_workers_api_wants_its_token() {
    let srv = TestServer::start(ServerOptions::new());
    let (status, body) = srv.admin_with_token("GET", "/api/v1/workers", None).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = srv
        .admin_json_with_token(
            "PUT",
            "/api/v1/workers/scrubber",
            json!({"paused": true}),
            Some("wrong"),
        )
        .await;
    assert_eq!(status, 401, "{body}");
    assert_ne!(worker(&srv, "scrubber").await["state"], "paused");
}

#[tokio::test]
async fn a_graceful_stop_stops_every_worker() {
    let mut srv = TestServer::start(ServerOptions::new());
    // One of them paused: it must stop all the same.
    let (status, _) = srv
        .admin_json("PUT", "/api/v1/workers/healer", json!({"paused": true}))
        .await;
    assert_eq!(status, 200);
    let exit = srv.stop();
    assert!(exit.success(), "gateway exited with {exit}\n{}", srv.log_contents());
    let log = srv.log_contents();
    assert!(log.contains("stopping the background workers"), "{log}");
    assert!(!log.contains("aborted"), "a worker had to be aborted:\n{log}");
}

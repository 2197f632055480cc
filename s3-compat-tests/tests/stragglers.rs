//! A PUT is acknowledged at its write quorum; shards still being written then (stragglers, on a
//! slow backend) land in the background. They must land, be read correctly meanwhile, leave no
//! repair behind once landed, and survive a crash: a straggler cut off by kill -9 is in the
//! repair queue after the restart and the healer rebuilds it.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use s3_compat_tests::*;

/// Six local backends under `root`; backend 1 answers `slow_ms` late when given.
fn config(root: &Path, slow_ms: Option<u64>) -> String {
    let faults: BTreeMap<usize, String> = slow_ms
        .map(|ms| (1, format!("latency_ms = {ms}")))
        .into_iter()
        .collect();
    six_local_backends(root, &faults)
}

/// Shard files per set on backend `b{i}`.
fn shards_on(root: &Path, i: usize) -> BTreeMap<String, usize> {
    let dir = root.join(format!("b{i}")).join("shards");
    let Ok(sets) = std::fs::read_dir(&dir) else {
        return BTreeMap::new();
    };
    sets.map(|e| {
        let e = e.expect("dir entry");
        let n = std::fs::read_dir(e.path()).map(|d| d.count()).unwrap_or(0);
        (e.file_name().to_string_lossy().into_owned(), n)
    })
    .collect()
}

async fn repair_queue(srv: &TestServer) -> u64 {
    let (status, view) = srv.admin("GET", "/api/v1/redundancy").await;
    assert_eq!(status, 200, "{view}");
    view["repair_queue"].as_u64().expect("repair_queue")
}

#[tokio::test]
async fn shards_on_a_slow_backend_land_after_the_put_and_leave_no_repair() {
    let root = tempfile::tempdir().expect("temp dir");
    let srv = TestServer::start(
        ServerOptions::new()
            .config_toml(config(root.path(), Some(400)))
            .flag("--heal-interval-secs", 3600),
    );
    let c = srv.client();
    create_bucket(&c, "slow").await;
    let mut seen_in_flight = 0;
    let mut objects = Vec::new();
    for i in 0..6 {
        let data = random_bytes(300_000 + i);
        put_bytes(&c, "slow", &format!("k{i}"), &data).await;
        let (_, view) = srv.admin("GET", "/api/v1/redundancy").await;
        if view["straggling_shards"].as_u64().is_some_and(|n| n > 0) {
            seen_in_flight += 1;
        }
        // Read back at once, while b1's shard may still be on its way.
        assert_same_bytes(&get_bytes(&c, "slow", &format!("k{i}")).await, &data, "right after PUT");
        objects.push(data);
    }
    assert!(
        seen_in_flight > 0,
        "no PUT returned before the slow backend's shard landed"
    );
    srv.settled().await;
    // Every set has its shard on b1 now, and the repair records the stragglers were committed
    // with are gone.
    let on_b1 = shards_on(root.path(), 1);
    assert_eq!(on_b1.len(), 6, "shard sets on b1: {on_b1:?}");
    assert!(on_b1.values().all(|&n| n == 1), "{on_b1:?}");
    let mut queue = repair_queue(&srv).await;
    for _ in 0..50 {
        if queue == 0 {
            break;
        }
        // A straggler that landed before its record was committed is dropped by a heal pass.
        let (status, body) = srv.admin("POST", "/api/v1/heal").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["repaired"], 0, "a landed straggler was rebuilt: {body}");
        queue = repair_queue(&srv).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(queue, 0, "repairs left after every straggler landed");
    for (i, data) in objects.iter().enumerate() {
        assert_same_bytes(&get_bytes(&c, "slow", &format!("k{i}")).await, data, "after landing");
    }
}

#[tokio::test]
async fn a_straggler_cut_off_by_a_crash_is_rebuilt_by_the_healer() {
    let root = tempfile::tempdir().expect("temp dir");
    let mut srv = TestServer::start(
        ServerOptions::new()
            .config_toml(config(root.path(), Some(5_000)))
            .flag("--heal-interval-secs", 0.2),
    );
    let c = srv.client();
    create_bucket(&c, "crash").await;
    let data = random_bytes(2 * MIB + 7);
    put_bytes(&c, "crash", "k", &data).await;
    // Acknowledged with five shards; the sixth (on b1) is 5 s away. Kill the gateway now.
    assert!(
        shards_on(root.path(), 1).is_empty(),
        "b1's shard landed before the kill"
    );
    srv.kill9();
    // Restart with b1 healthy: the shard's repair record was committed with the manifest, so
    // the healer rebuilds it.
    let toml = config(root.path(), None);
    *srv.options_mut() = srv.options().clone().config_toml(toml);
    srv.start_again();
    let mut landed = BTreeMap::new();
    for _ in 0..150 {
        landed = shards_on(root.path(), 1);
        if landed.len() == 1 && repair_queue(&srv).await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        landed.values().collect::<Vec<_>>(),
        [&1],
        "b1 after the heal: {landed:?}"
    );
    assert_eq!(repair_queue(&srv).await, 0);
    let (_, view) = srv.admin("GET", "/api/v1/redundancy").await;
    assert!(
        view["healer"]["shards_repaired"].as_u64().is_some_and(|n| n >= 1),
        "{view}"
    );
    assert_same_bytes(&get_bytes(&srv.client(), "crash", "k").await, &data, "after the heal");
}

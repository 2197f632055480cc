//! The three agent tiers as three processes linked over gRPC (`mlsysops agent --tier ...`),
//! beside a gateway running none of its own: intents travel down and are acknowledged up, a
//! decision made by the cluster reaches the continuum's log, killing the cluster agent leaves
//! S3 serving, and a restarted cluster agent resumes without applying anything twice.

use std::path::Path;
use std::time::{Duration, Instant};

use control_api::{BucketIntent, Client, Redundancy};
use s3_compat_tests::agent::AgentProcess as Agent;
use s3_compat_tests::process::ADMIN_TOKEN;
use s3_compat_tests::*;
use serde_json::json;

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

async fn until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t = Instant::now();
    while !check().await {
        assert!(t.elapsed() < timeout, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_tiers_over_grpc_survive_a_killed_cluster_agent() {
    let srv = TestServer::start(
        ServerOptions::new()
            .local_backends(6)
            .default_policy("ec-2-1")
            .flag("--agents", "off")
            .switch("--allow-fault-injection")
            .flag("--audit-interval-secs", 1)
            // Unhedged reads, so that the node agent has a decision of its own to send up.
            .flag("--read-strategy", "data-first"),
    );
    let dir = srv.scratch_dir();
    let gateway = format!("http://{}", srv.admin_addr());
    let (_continuum, addrs) = Agent::start(
        &strings(&[
            "--tier",
            "continuum",
            "--name",
            "t",
            "--listen",
            "127.0.0.1:0",
            "--link-addr",
            "127.0.0.1:0",
            "--period-secs",
            "1",
        ])
        .into_iter()
        .chain(["--data-dir".into(), dir.join("continuum").display().to_string()])
        .collect::<Vec<_>>(),
        &dir.join("continuum.log"),
        &["agent link: ", "northbound API: "],
    );
    let (continuum_link, api) = (addrs[0].clone(), addrs[1].clone());
    let cluster_link = format!("127.0.0.1:{}", free_port());
    let cluster_args: Vec<String> = strings(&["--tier", "cluster", "--name", "t", "--period-secs", "1"])
        .into_iter()
        .chain([
            "--parent".into(),
            continuum_link.clone(),
            "--link-addr".into(),
            cluster_link.clone(),
            "--gateway".into(),
            gateway.clone(),
            "--data-dir".into(),
            dir.join("cluster").display().to_string(),
            "--cooldown-secs".into(),
            "1".into(),
        ])
        .collect();
    let cluster_log = dir.join("cluster.log");
    let (mut cluster, _) = Agent::start(&cluster_args, &cluster_log, &["agent link: "]);
    let (_node, _) = Agent::start(
        &strings(&["--tier", "node", "--name", "t", "--period-secs", "1"])
            .into_iter()
            .chain([
                "--parent".into(),
                format!("http://{cluster_link}"),
                "--gateway".into(),
                gateway.clone(),
                "--data-dir".into(),
                dir.join("node").display().to_string(),
            ])
            .collect::<Vec<_>>(),
        &dir.join("node.log"),
        &[],
    );
    let nb = Client::new(api.parse().unwrap(), Some(ADMIN_TOKEN.into())).unwrap();

    // An intent goes down to the cluster, which configures the bucket on the gateway.
    let intent = BucketIntent {
        redundancy: Some(Redundancy::One),
        max_latency: Some(60),
        ..BucketIntent::default()
    };
    nb.set_bucket_intent("tiers", &intent).await.unwrap();
    until("the intent acknowledged over gRPC", Duration::from_secs(30), || async {
        nb.bucket_intent("tiers").await.is_ok_and(|i| i.state == "applied")
    })
    .await;
    let (_, policy) = srv.admin("GET", "/api/v1/buckets/tiers/storage-policy").await;
    assert_eq!(policy["max_latency"], 60, "{policy}");
    // All three report to the continuum.
    until(
        "cluster and node healthy at the continuum",
        Duration::from_secs(30),
        || async {
            nb.agents().await.is_ok_and(|v| {
                ["cluster", "node"]
                    .iter()
                    .all(|t| v.agents.iter().any(|a| a.tier == *t && a.remote && a.healthy))
            })
        },
    )
    .await;
    let c = srv.client();
    let mut keys = Vec::new();
    for i in 0..12 {
        let k = format!("k{i}");
        put_bytes(&c, "tiers", &k, &random_bytes(128 * 1024)).await;
        keys.push(k);
    }

    // The cluster decides (local1 made slow is drained), and the continuum's log has it.
    let (status, _) = srv
        .admin_json("PUT", "/api/v1/backends/local1/faults", json!({"latency_ms": 300}))
        .await;
    assert_eq!(status, 200);
    let reader = {
        let (c, keys) = (srv.client(), keys.clone());
        tokio::spawn(async move {
            for i in 0..400 {
                let _ = c.get_object().bucket("tiers").key(&keys[i % keys.len()]).send().await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    until(
        "a drain decision mirrored to the continuum",
        Duration::from_secs(90),
        || async {
            nb.decisions(Some("tiers"), None, None).await.is_ok_and(|p| {
                p.decisions
                    .iter()
                    .any(|d| d.reason.contains("local1") && matches!(d.status.as_str(), "applied" | "pending"))
            })
        },
    )
    .await;
    // The node agent's own decision (hedging on) went up through the cluster over gRPC.
    until(
        "the node's read decision relayed to the continuum",
        Duration::from_secs(30),
        || async {
            nb.decisions(None, None, None).await.is_ok_and(|p| {
                p.decisions
                    .iter()
                    .any(|d| d.policy == "read_tuner" && d.agent == "t-node" && d.reason.contains("local1"))
            })
        },
    )
    .await;
    let (_, reads) = srv.admin("GET", "/api/v1/reads").await;
    assert_eq!(reads, json!({"strategy": "latency", "hedging": true}));
    reader.abort();
    srv.wait_migration_done("tiers", Duration::from_secs(120)).await;
    let (status, _) = srv.admin("DELETE", "/api/v1/backends/local1/faults").await;
    assert_eq!(status, 200);

    // The cluster agent dies: S3 goes on.
    cluster.kill9();
    let body = random_bytes(200_000);
    put_bytes(&c, "tiers", "while-down", &body).await;
    assert_same_bytes(&get_bytes(&c, "tiers", "while-down").await, &body, "while-down");
    for k in &keys {
        get_bytes(&c, "tiers", k).await;
    }
    until(
        "the dead cluster agent shown unhealthy",
        Duration::from_secs(30),
        || async {
            nb.agents()
                .await
                .is_ok_and(|v| v.agents.iter().any(|a| a.tier == "cluster" && !a.healthy))
        },
    )
    .await;
    let changes_before = srv.admin("GET", "/api/v1/buckets/tiers/storage-policy/history").await.1["changes"]
        .as_array()
        .map(Vec::len);

    // Restarted on the same state: it resumes, and takes nothing twice.
    let (_cluster, _) = Agent::start(&cluster_args, &cluster_log, &["agent link: "]);
    until(
        "the restarted cluster agent healthy",
        Duration::from_secs(30),
        || async {
            nb.agents()
                .await
                .is_ok_and(|v| v.agents.iter().any(|a| a.tier == "cluster" && a.healthy))
        },
    )
    .await;
    nb.set_bucket_intent("tiers2", &intent).await.unwrap();
    until(
        "a new intent applied after the restart",
        Duration::from_secs(30),
        || async { nb.bucket_intent("tiers2").await.is_ok_and(|i| i.state == "applied") },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let log = read(&cluster_log);
    assert!(
        log.contains("intent already taken; acknowledged again"),
        "the re-sent intent was not recognised: {log}"
    );
    assert_eq!(
        log.matches("bucket configured for its intent").count(),
        2,
        "tiers once, tiers2 once: {log}"
    );
    let changes_after = srv.admin("GET", "/api/v1/buckets/tiers/storage-policy/history").await.1["changes"]
        .as_array()
        .map(Vec::len);
    assert_eq!(changes_before, changes_after, "the restart changed bucket tiers again");
    let (placed, applied): (Vec<_>, Vec<_>) = nb
        .decisions(Some("tiers"), None, Some(1000))
        .await
        .unwrap()
        .decisions
        .into_iter()
        .filter(|d| matches!(d.status.as_str(), "applied" | "pending"))
        .partition(|d| d.policy == "cluster_placement");
    assert_eq!(applied.len(), 1, "{applied:#?}");
    // The continuum gave the bucket to the cluster once; the restart did not place it again.
    assert_eq!(placed.len(), 1, "{placed:#?}");
    assert!(placed[0].reason.contains("t-cluster"), "{}", placed[0].reason);
    drop(cluster);
}

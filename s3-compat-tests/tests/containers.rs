//! Containers placed next to their data (issue 14), on the real binary: two machines, each
//! with its own gateway over the same three backends (ids), reading data shards first.
//! Gateway A runs the agents in-process; machine B's node agent is its own process joining A's
//! cluster agent over the gRPC link. An app's component is placed on one machine; when one
//! backend turns slow as seen from that machine, the component moves to the other one, the
//! decision explains it, and the kube-scheduler extender (on its own, unauthenticated
//! listener) ranks the new machine first.

use std::time::Duration;

use s3_compat_tests::agent::AgentProcess;
use s3_compat_tests::*;
use serde_json::{json, Value};

/// A gateway over three local backends, data-first reads, audits every second so
/// that every backend is measured without client load.
fn gateway(extra: ServerOptions) -> ServerOptions {
    extra
        .local_backends(3)
        .default_policy("ec-2-1")
        .switch("--allow-fault-injection")
        .flag("--read-strategy", "data-first")
        .flag("--audit-interval-secs", 1)
}

/// The applied `container_placement` decisions of A's log, oldest first.
async fn placements(srv: &TestServer) -> Vec<Value> {
    let (status, page) = srv.admin("GET", "/api/v1/decisions?limit=500").await;
    assert_eq!(status, 200, "{page}");
    let mut out: Vec<Value> = page["decisions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|d| d["policy"] == "container_placement" && d["status"] == "applied")
        .collect();
    out.sort_by_key(|d| d["at_ms"].as_i64().unwrap_or(0));
    out
}

const DESCRIPTOR: &str = r#"
MLSysOpsApp:
  name: photo
  components:
    - metadata: {name: infer, uid: c1}
      storage:
        buckets:
          - {bucket_id: photos}
      containers: [{image: "reg/infer:1"}]
"#;

fn pod() -> Value {
    json!({"metadata": {"name": "infer-1", "labels": {"mlsysops.eu/app": "photo", "mlsysops.eu/component": "infer"}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backend_slow_from_the_placed_machine_moves_the_component_with_a_decision() {
    let (link, extender) = (free_port(), free_port());
    let a = TestServer::start(
        gateway(ServerOptions::new())
            .flag("--agent-period-secs", 1)
            .flag("--agent-cooldown-secs", 2)
            .config_toml(format!(
                "[agents]\nlink_listen = \"127.0.0.1:{link}\"\n\
                 [agents.node]\nmachine = \"node-a\"\n\
                 [agents.node.reads]\nslow_factor = 1000000.0\n\
                 [agents.kubernetes]\nextender_listen = \"127.0.0.1:{extender}\"\n\
                 [agents.policies.hotcold]\nhot_reads_per_s = 1000000.0\nhot_exit_reads_per_s = 500000.0\n"
            )),
    );
    let b = TestServer::start(gateway(ServerOptions::new()).flag("--agents", "off"));
    let dir = a.scratch_dir();
    let args: Vec<String> = [
        "--tier",
        "node",
        "--name",
        "node-b",
        "--period-secs",
        "1",
        // The read tuner would hedge B's reads; this test is about placement.
        "--gateway",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain([
        format!("http://{}", b.admin_addr()),
        "--parent".into(),
        format!("http://127.0.0.1:{link}"),
        "--data-dir".into(),
        dir.join("node-b").display().to_string(),
    ])
    .collect();
    let _node_b = AgentProcess::start(&args, &dir.join("node-b.log"), &[]);

    let nb = a.admin_client(Some(s3_compat_tests::process::ADMIN_TOKEN));
    nb.deploy_app(DESCRIPTOR.as_bytes().to_vec(), "application/yaml")
        .await
        .unwrap();

    let ext = control_api::Client::at(format!("127.0.0.1:{extender}").parse().unwrap(), None).unwrap();
    let args = json!({"Pod": pod(), "NodeNames": ["node-a", "node-b"]});
    let scores = || async {
        let (status, scores) = ext
            .send(
                control_api::Method::POST,
                "/api/v1/scheduler/prioritize",
                Some(serde_json::to_vec(&args).unwrap()),
            )
            .await
            .unwrap();
        assert_eq!(status, 200, "{scores}");
        let of = |host: &str| {
            scores
                .as_array()
                .unwrap()
                .iter()
                .find(|h| h["Host"] == host)
                .and_then(|h| h["Score"].as_i64())
                .unwrap()
        };
        (of("node-a"), of("node-b"))
    };

    // Both machines report fast reach (the extender scores both high) and the component is
    // placed on one of them.
    let placed = until(
        Duration::from_secs(60),
        "both machines measured and a placement",
        || async {
            let (sa, sb) = scores().await;
            let p = placements(&a).await;
            match p.last() {
                // Unreported machines score 3 at most (trust and headroom only); reporting ones
                // that reach the data fast score 7 or more.
                Some(d) if sa >= 7 && sb >= 7 => Ok(d["choice"].as_str().unwrap_or_default().to_owned()),
                last => Err(format!("scores node-a {sa}, node-b {sb}; last placement {last:?}")),
            }
        },
    )
    .await;
    assert!(placed == "node-a" || placed == "node-b", "{placed}");
    let other = if placed == "node-a" { "node-b" } else { "node-a" };

    // One backend turns slow as seen from the placed machine only (its gateway's path to it).
    let slow_gateway = if placed == "node-a" { &a } else { &b };
    let (_, backends) = slow_gateway.admin("GET", "/api/v1/backends").await;
    let slow = backends["backends"][1]["id"].as_str().unwrap().to_owned();
    let (status, body) = slow_gateway
        .admin_json(
            "PUT",
            &format!("/api/v1/backends/{slow}/faults"),
            json!({"latency_ms": 300.0}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let injected = std::time::Instant::now();

    let moved = until(Duration::from_secs(90), "the component moved", || async {
        let p = placements(&a).await;
        p.iter()
            .find(|d| {
                d["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains(&format!("moved from {placed} to {other}")))
            })
            .cloned()
            .ok_or_else(|| format!("{:#}", p.last().cloned().unwrap_or_default()))
    })
    .await;
    assert_eq!(moved["target"], "app/photo/infer", "{moved:#}");
    assert_eq!(moved["choice"], other, "{moved:#}");
    let reason = moved["reason"].as_str().unwrap();
    eprintln!("moved {:?} after the backend turned slow: {reason}", injected.elapsed());

    assert!(
        reason
            .split(&format!("while {placed} (score"))
            .nth(1)
            .is_some_and(|r| r.contains(&format!("ms (through {slow})"))),
        "the reason names the backend that slows {placed}: {reason}"
    );

    // The extender, without a token, ranks the new machine first and filters nobody out.
    let (sa, sb) = scores().await;
    let (new, old) = if other == "node-a" { (sa, sb) } else { (sb, sa) };
    assert!(new > old, "{other} scores {new}, {placed} {old}");
    let (status, filtered) = ext
        .send(
            control_api::Method::POST,
            "/api/v1/scheduler/filter",
            Some(serde_json::to_vec(&args).unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{filtered}");
    assert_eq!(filtered["NodeNames"], json!(["node-a", "node-b"]), "{filtered}");
    // The admin API needs its token; the extender's listener serves nothing else.
    let (status, _) = ext
        .send_text(control_api::Method::GET, "/api/v1/decisions", None)
        .await
        .unwrap();
    assert_eq!(status, 404);
}

//! The agents' northbound API on the real binary: intents configure buckets, app descriptors
//! create them, bad input is refused naming the field, and removing an app keeps the data.

use s3_compat_tests::data::random_bytes;
use s3_compat_tests::process::{ServerOptions, TestServer};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn server() -> TestServer {
    TestServer::start(
        ServerOptions::new()
            .local_backends(6)
            .default_policy("ec-2-1")
            .flag("--agent-period-secs", 1),
    )
}

/// Polls `GET path` until `done` holds for its JSON body; panics with the last body.
async fn wait_for(srv: &TestServer, path: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = srv.admin("GET", path).await;
        if status == 200 && done(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within 30 s; last {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_intent_creates_and_configures_its_bucket_and_never_shows_its_token() {
    let srv = server();
    let intent = json!({
        "redundancy": "one", "max_latency": 250, "min_download_speed": 5.5,
        "gdpr": false, "encryption": true, "policy_update_token": "agents-only-token-1"
    });
    let (status, view) = srv.admin_json("PUT", "/api/v1/buckets/photos/intent", intent).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["source"], "operator");
    assert_eq!(view["has_token"], true);
    assert!(!view.to_string().contains("agents-only-token-1"), "token shown: {view}");
    let view = wait_for(&srv, "/api/v1/buckets/photos/intent", "intent applied", |v| {
        v["state"] != "pending"
    })
    .await;
    assert_eq!(view["state"], "applied", "{view}");
    // The continuum gave the bucket to the one (in-process) cluster agent, and says so.
    assert!(
        view["cluster"].as_str().is_some_and(|c| c.ends_with("-cluster")),
        "{view}"
    );
    // The bucket exists, with the intent on its storage policy and agents allowed to change it.
    let (status, policy) = srv.admin("GET", "/api/v1/buckets/photos/storage-policy").await;
    assert_eq!(status, 200, "{policy}");
    assert_eq!(policy["max_latency"], 250);
    assert_eq!(policy["min_download_speed"], 5.5);
    assert_eq!(policy["redundancy"], "one");
    assert_eq!(policy["encryption"], true);
    assert_eq!(policy["automatic_updates"], true);
    let s3 = srv.client();
    let body = random_bytes(300_000);
    s3.put_object()
        .bucket("photos")
        .key("a")
        .body(body.clone().into())
        .send()
        .await
        .unwrap();
    let got = s3.get_object().bucket("photos").key("a").send().await.unwrap();
    assert_eq!(got.body.collect().await.unwrap().into_bytes().as_ref(), &body[..]);
    // Its usage, which the cost optimiser weighs egress against.
    s3.put_object()
        .bucket("photos")
        .key("b/c")
        .body(vec![7u8; 1234].into())
        .send()
        .await
        .unwrap();
    let (status, usage) = srv.admin("GET", "/api/v1/buckets/photos/usage").await;
    assert_eq!(status, 200, "{usage}");
    assert_eq!(
        usage,
        json!({"bucket": "photos", "objects": 2, "bytes": 300_000 + 1234, "prefix_depth": 1,
               "prefixes": [{"prefix": "b/", "objects": 1, "bytes": 1234}]})
    );
    let (status, usage) = srv.admin("GET", "/api/v1/buckets/no-such-bucket/usage").await;
    assert_eq!(status, 404, "{usage}");
    assert!(
        usage["error"].as_str().is_some_and(|e| e.contains("no-such-bucket")),
        "{usage}"
    );
    let (status, _) = srv.admin_with_token("GET", "/api/v1/buckets/photos/usage", None).await;
    assert_eq!(status, 401);
    // The three in-process agents report, healthy.
    let agents = wait_for(&srv, "/api/v1/agents", "three healthy agents", |v| {
        v["agents"]
            .as_array()
            .is_some_and(|a| a.len() == 3 && a.iter().all(|x| x["healthy"] == true))
    })
    .await;
    let tiers: Vec<&str> = agents["agents"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["tier"].as_str())
        .collect();
    for t in ["node", "cluster", "continuum"] {
        assert!(tiers.contains(&t), "{agents}");
    }
    // In one process, no agent is remote (each had been labelled so by the tier above it).
    let remote: Vec<&Value> = agents["agents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["remote"] != false)
        .collect();
    assert!(remote.is_empty(), "in-process agents labelled remote: {remote:?}");
    assert_eq!(agents["mode"], "heuristic");
    let (status, agents) = srv
        .admin_json("PUT", "/api/v1/agents/mode", json!({"mode": "ml"}))
        .await;
    assert_eq!((status, agents["mode"].as_str()), (200, Some("ml")), "{agents}");
    let log = srv.log_contents();
    assert!(!log.contains("agents-only-token-1"), "the token reached the log");
}

#[tokio::test]
async fn bad_intents_and_requests_get_a_clear_error() {
    let srv = server();
    let cases = [
        (json!({"max_latency": 0}), "max_latency"),
        (json!({"min_download_speed": -1.0}), "min_download_speed"),
        (json!({"min_trust": 1.5}), "min_trust"),
        (json!({"max_overhead": 0.5}), "max_overhead"),
        (json!({"policy_update_token": "short"}), "policy_update_token"),
        (json!({"redundancy": "two"}), "redundancy"),
        (json!({"colour": "red"}), "colour"),
    ];
    for (body, field) in cases {
        let (status, answer) = srv.admin_json("PUT", "/api/v1/buckets/b1/intent", body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains(field), "{body}: {answer}");
    }
    let (status, _) = srv.admin("GET", "/api/v1/buckets/b1/intent").await;
    assert_eq!(status, 404);
    let (status, answer) = srv.admin("GET", "/api/v1/decisions/not-a-uuid").await;
    assert_eq!(status, 400, "{answer}");
    let (status, answer) = srv.admin("GET", "/api/v1/decisions?limit=many").await;
    assert_eq!(status, 400, "{answer}");
    let (status, _) = srv
        .admin_json("PUT", "/api/v1/agents/mode", json!({"mode": "magic"}))
        .await;
    assert_eq!(status, 400);
    for (method, path) in [
        ("GET", "/api/v1/agents"),
        ("GET", "/api/v1/apps"),
        ("GET", "/api/v1/decisions"),
    ] {
        let (status, answer) = srv.admin_with_token(method, path, None).await;
        assert_eq!(status, 401, "{method} {path}: {answer}");
        let (status, _) = srv
            .admin_with_token(method, path, Some("wrong-token-wrong-token"))
            .await;
        assert_eq!(status, 401, "{method} {path}");
    }
    let (status, _) = srv
        .admin_json_with_token("PUT", "/api/v1/buckets/b1/intent", json!({"max_latency": 5}), None)
        .await;
    assert_eq!(status, 401);
    let (status, _) = srv.admin("GET", "/api/v1/buckets/b1/intent").await;
    assert_eq!(status, 404, "an unauthenticated PUT changed nothing");
}

const DESCRIPTOR: &str = r#"
MLSysOpsApp:
  name: photo-ai
  components:
    - metadata: {name: infer, uid: c1}
      qos_metrics: [{application_metric_id: get_p95_ms, target: 50, relation: lower_or_equal}]
      storage:
        buckets:
          - {bucket_id: photos-eu, policy_update_token: "t0ken-123456", location_restrictions: {gdpr: false},
             reduncancy: high, max_latency: 400, min_download_speed: 2, server_side_encryption: "on"}
      containers: [{image: "reg/infer:1"}]
    - metadata: {name: train, uid: c2}
      storage:
        buckets:
          - {bucket_id: datasets, reduncancy: one}
      containers: [{image: "reg/train:1"}]
"#;

#[tokio::test]
async fn an_app_descriptor_creates_its_buckets_and_removing_it_keeps_the_data() {
    let srv = server();
    let client = srv.admin_client(Some(s3_compat_tests::process::ADMIN_TOKEN));
    let app = client
        .deploy_app(DESCRIPTOR.as_bytes().to_vec(), "application/yaml")
        .await
        .unwrap();
    assert_eq!(app.name, "photo-ai");
    assert_eq!(app.components, ["infer", "train"]);
    let buckets: Vec<&str> = app.buckets.iter().map(|b| b.bucket.as_str()).collect();
    assert_eq!(buckets, ["photos-eu", "datasets"]);
    let view = wait_for(&srv, "/api/v1/apps/photo-ai", "buckets configured", |v| {
        v["buckets"]
            .as_array()
            .is_some_and(|b| b.iter().all(|b| b["state"] == "applied"))
    })
    .await;
    assert!(!view.to_string().contains("t0ken-123456"), "{view}");
    let (_, p) = srv.admin("GET", "/api/v1/buckets/photos-eu/storage-policy").await;
    assert_eq!(
        (p["redundancy"].as_str(), p["m"].as_u64(), p["encryption"].as_bool()),
        (Some("high"), Some(2), Some(true)),
        "{p}"
    );
    assert_eq!(p["max_latency"], 400);
    let (_, p) = srv.admin("GET", "/api/v1/buckets/datasets/storage-policy").await;
    assert_eq!(p["redundancy"], "one", "{p}");
    // Data goes in; the app goes; the data and the policy stay.
    let s3 = srv.client();
    let body = random_bytes(100_000);
    s3.put_object()
        .bucket("photos-eu")
        .key("k")
        .body(body.clone().into())
        .send()
        .await
        .unwrap();
    let removed = client.remove_app("photo-ai").await.unwrap();
    assert_eq!(removed.name, "photo-ai");
    let (status, _) = srv.admin("GET", "/api/v1/apps/photo-ai").await;
    assert_eq!(status, 404);
    let got = s3.get_object().bucket("photos-eu").key("k").send().await.unwrap();
    assert_eq!(got.body.collect().await.unwrap().into_bytes().as_ref(), &body[..]);
    let (_, p) = srv.admin("GET", "/api/v1/buckets/photos-eu/storage-policy").await;
    assert_eq!(p["redundancy"], "high");
    // Invalid descriptors: 400 naming the field, nothing created.
    let bad = DESCRIPTOR.replace("max_latency: 400", "max_latency: fast");
    match client.deploy_app(bad.into_bytes(), "application/yaml").await {
        Err(control_api::ClientError::Api { status, message }) => {
            assert_eq!(status.as_u16(), 400, "{message}");
            assert!(message.contains("buckets[0].max_latency"), "{message}");
        }
        other => panic!("an invalid descriptor was taken: {other:?}"),
    }
    let (status, answer) = srv
        .admin_send(
            "POST",
            "/api/v1/apps",
            Some(s3_compat_tests::process::ADMIN_TOKEN),
            b"{\"MLSysOpsApp\": {\"name\": \"x\"}}".to_vec(),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("components"), "{answer}");
    let (_, apps) = srv.admin("GET", "/api/v1/apps").await;
    assert_eq!(apps["apps"].as_array().map(Vec::len), Some(0), "{apps}");
}

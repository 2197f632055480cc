//! The node agent's own MAPE loop on the real binary: a gateway reading data-first without
//! hedging gets one backend made slow at run time; the node agent's read tuner turns hedging
//! on by itself, through `PUT /api/v1/reads`, and its decision, naming the slow backend, is in
//! the continuum's decision log. And `/api/v1/reads` itself: read, changed field by field, bad
//! values refused naming the field, the token required.

use s3_compat_tests::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Polls `GET path` until `done` holds for its JSON body; panics with the last body.
async fn wait_for(srv: &TestServer, path: &str, what: &str, within: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (status, body) = srv.admin("GET", path).await;
        if status == 200 && done(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {within:?}; last {status} {body}\n{}",
            srv.log_contents()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_backend_makes_the_node_agent_turn_hedging_on() {
    let srv = TestServer::start(
        ServerOptions::new()
            .local_backends(6)
            .default_policy("ec-2-1")
            .flag("--read-strategy", "data-first")
            .flag("--agent-period-secs", 1)
            .switch("--allow-fault-injection"),
    );
    let (status, reads) = srv.admin("GET", "/api/v1/reads").await;
    assert_eq!(status, 200, "{reads}");
    assert_eq!(reads, json!({"strategy": "data-first", "hedging": false}));

    let c = srv.client();
    create_bucket(&c, "hot").await;
    let mut keys = Vec::new();
    for i in 0..12 {
        let k = format!("k{i}");
        put_bytes(&c, "hot", &k, &random_bytes(64 * 1024 + i)).await;
        keys.push(k);
    }
    let (status, _) = srv
        .admin_json("PUT", "/api/v1/backends/local1/faults", json!({"latency_ms": 300}))
        .await;
    assert_eq!(status, 200);
    let reader = {
        let (c, keys) = (srv.client(), keys.clone());
        tokio::spawn(async move {
            for i in 0.. {
                let _ = c.get_object().bucket("hot").key(&keys[i % keys.len()]).send().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let reads = wait_for(
        &srv,
        "/api/v1/reads",
        "hedging turned on by the node agent",
        Duration::from_secs(60),
        |r| r["hedging"] == true,
    )
    .await;
    assert_eq!(reads, json!({"strategy": "latency", "hedging": true}));
    let page = wait_for(
        &srv,
        "/api/v1/decisions",
        "the read tuner's decision in the continuum's log",
        Duration::from_secs(30),
        |p| {
            p["decisions"].as_array().is_some_and(|ds| {
                ds.iter()
                    .any(|d| d["policy"] == "read_tuner" && d["status"] == "applied")
            })
        },
    )
    .await;
    reader.abort();
    let decisions = page["decisions"].as_array().unwrap();
    let d = decisions
        .iter()
        .find(|d| d["policy"] == "read_tuner" && d["status"] == "applied")
        .unwrap();
    let reason = d["reason"].as_str().unwrap();
    assert!(reason.contains("Backend local1's p95"), "{d}");
    assert!(reason.contains("hedging masks it"), "{d}");
    assert_eq!(d["mechanism"], "read_settings");
    assert!(d["agent"].as_str().unwrap().ends_with("-node"), "{d}");
    assert!(d["target"].as_str().unwrap().starts_with("node/"), "{d}");
    assert_eq!(d["command"], json!({"strategy": "latency", "hedging": true}));
    assert_eq!(d["undo"], json!({"strategy": "data-first", "hedging": false}));
    let slow = d["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["metric"] == "get_p95_ms" && i["subject"] == "backend/local1")
        .unwrap_or_else(|| panic!("no input of local1: {d}"));
    assert!(slow["value"].as_f64().unwrap() >= 300.0, "{slow}");
    assert_eq!(d["options"].as_array().unwrap().len(), 4, "{d}");
    // Only one change: once hedged, a still-slow backend calls for nothing more.
    let changes = decisions
        .iter()
        .filter(|d| d["policy"] == "read_tuner" && d["status"] == "applied")
        .count();
    assert_eq!(changes, 1, "{page}");
    // The one decision is also reachable by id.
    let (status, one) = srv
        .admin("GET", &format!("/api/v1/decisions/{}", d["id"].as_str().unwrap()))
        .await;
    assert_eq!((status, &one["reason"]), (200, &d["reason"]));
}

#[tokio::test]
async fn read_settings_change_field_by_field_and_bad_values_name_the_field() {
    let srv = TestServer::start(
        ServerOptions::new()
            .local_backends(3)
            .default_policy("ec-2-1")
            .flag("--agents", "off"),
    );
    let (status, reads) = srv.admin("GET", "/api/v1/reads").await;
    assert_eq!((status, reads), (200, json!({"strategy": "latency", "hedging": true})));

    let (status, reads) = srv.admin_json("PUT", "/api/v1/reads", json!({"hedging": false})).await;
    assert_eq!((status, reads), (200, json!({"strategy": "latency", "hedging": false})));
    let (status, reads) = srv
        .admin_json("PUT", "/api/v1/reads", json!({"strategy": "data-first"}))
        .await;
    assert_eq!(
        (status, reads),
        (200, json!({"strategy": "data-first", "hedging": false}))
    );
    let (status, reads) = srv.admin_json("PUT", "/api/v1/reads", json!({})).await;
    assert_eq!(
        (status, reads),
        (200, json!({"strategy": "data-first", "hedging": false}))
    );

    for (body, field) in [
        (json!({"strategy": "hedged"}), "strategy: "),
        (json!({"strategy": "fast", "hedging": true}), "strategy: "),
        (json!({"hedging": "yes"}), "hedging: "),
        (json!({"hedge": true}), "`hedge`"),
    ] {
        let (status, err) = srv.admin_json("PUT", "/api/v1/reads", body.clone()).await;
        assert_eq!(status, 400, "{body}: {err}");
        let message = err["error"].as_str().unwrap_or_else(|| panic!("{err}"));
        assert!(message.contains(field), "{body}: {message}");
    }
    let (status, text) = srv
        .admin_send("PUT", "/api/v1/reads", Some(ADMIN_TOKEN), b"{\"strategy\": ".to_vec())
        .await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("\"error\""), "{text}");
    // Refused changes changed nothing.
    let (_, reads) = srv.admin("GET", "/api/v1/reads").await;
    assert_eq!(reads, json!({"strategy": "data-first", "hedging": false}));

    // The token is required, to read as to change.
    let (status, _) = srv
        .admin_json_with_token("PUT", "/api/v1/reads", json!({"hedging": true}), None)
        .await;
    assert_eq!(status, 401);
    let (status, _) = srv
        .admin_json_with_token("PUT", "/api/v1/reads", json!({"hedging": true}), Some("wrong"))
        .await;
    assert_eq!(status, 401);
    let (status, _) = srv.admin_with_token("GET", "/api/v1/reads", None).await;
    assert_eq!(status, 401);
    let (_, reads) = srv.admin("GET", "/api/v1/reads").await;
    assert_eq!(reads, json!({"strategy": "data-first", "hedging": false}));
}

//! Telemetry through the real interfaces: a scripted S3 workload, then `/metrics`, the JSON
//! statistics of the admin API and an in-process OTLP receiver must all tell the same story
//! (counts and bytes exact, latencies within the injected delay plus a tolerance); and reads
//! steer around a slow backend.

use std::collections::BTreeMap;
use std::time::Duration;

use s3_compat_tests::*;
use serde_json::Value;

/// Prometheus names of the OpenTelemetry instruments (docs/metrics.md).
const S3_DURATION_COUNT: &str = "http_server_request_duration_seconds_count";
const S3_BYTES_IN: &str = "mlsysops_s3_request_body_bytes_total";
const S3_BYTES_OUT: &str = "mlsysops_s3_response_body_bytes_total";
const BACKEND_DURATION_COUNT: &str = "mlsysops_backend_request_duration_seconds_count";
const PREFIX_ACCESSES: &str = "mlsysops_s3_prefix_accesses_total";

/// The window labelled `label` ("1m", "15m", "1h") of a snapshot.
fn window<'a>(snapshot: &'a Value, label: &str) -> &'a Value {
    snapshot["windows"]
        .as_array()
        .and_then(|ws| ws.iter().find(|w| w["window"] == label))
        .unwrap_or_else(|| panic!("no {label} window in {snapshot}"))
}

fn backend<'a>(all: &'a Value, id: &str) -> &'a Value {
    all["backends"]
        .as_array()
        .and_then(|bs| bs.iter().find(|b| b["backend"] == id))
        .unwrap_or_else(|| panic!("backend {id} missing from {all}"))
}

#[tokio::test]
async fn metrics_and_statistics_agree_with_a_scripted_workload() {
    const DELAY_MS: f64 = 40.0;
    // Generous: the machine is shared; what matters is that the injected delay shows.
    const TOLERANCE_MS: f64 = 250.0;
    let root = tempfile::tempdir().expect("temp dir");
    let faults = (0..6).map(|i| (i, format!("latency_ms = {DELAY_MS}"))).collect();
    let srv = TestServer::start(
        ServerOptions::new()
            .flag("--audit-interval-secs", 0)
            .config_toml(six_local_backends(root.path(), &faults))
            .flag("--scrub-interval-secs", 86400),
    );
    let c = srv.client();
    create_bucket(&c, "tel").await;

    // 5 objects under a/ and 3 under b/, each read twice; one HEAD hit, one HEAD miss, one
    // DELETE.
    let mut objects: Vec<(String, Vec<u8>)> = Vec::new();
    for i in 0..5 {
        objects.push((format!("a/k{i}"), random_bytes(100_000 + i)));
    }
    for i in 0..3 {
        objects.push((format!("b/k{i}"), random_bytes(300_000 + i)));
    }
    for (k, data) in &objects {
        put_bytes(&c, "tel", k, data).await;
    }
    for _ in 0..2 {
        for (k, data) in &objects {
            assert_same_bytes(&get_bytes(&c, "tel", k).await, data, k);
        }
    }
    c.head_object()
        .bucket("tel")
        .key("a/k0")
        .send()
        .await
        .expect("HEAD hit");
    let miss = c.head_object().bucket("tel").key("a/none").send().await;
    assert!(miss.is_err(), "HEAD of a missing key succeeded");
    c.delete_object()
        .bucket("tel")
        .key("b/k0")
        .send()
        .await
        .expect("DELETE");

    let total: u64 = objects.iter().map(|(_, d)| d.len() as u64).sum();

    // The JSON statistics of the bucket.
    let (status, stats) = srv.admin("GET", "/api/v1/telemetry/buckets/tel").await;
    assert_eq!(status, 200, "{stats}");
    let w = window(&stats, "1m");
    let ops = &w["by_operation"];
    assert_eq!(ops["PutObject"]["count"], 8, "{w}");
    assert_eq!(ops["GetObject"]["count"], 16, "{w}");
    assert_eq!(ops["HeadObject"]["count"], 2, "{w}");
    assert_eq!(ops["HeadObject"]["client_errors"], 1, "{w}");
    assert_eq!(ops["DeleteObject"]["count"], 1, "{w}");
    assert_eq!(w["reads"], 18, "{w}");
    assert_eq!(w["writes"], 9, "{w}");
    assert_eq!(w["read_write_ratio"].as_f64(), Some(2.0), "{w}");
    assert_eq!(w["bytes_in"].as_u64(), Some(total), "{w}");
    assert_eq!(w["bytes_out"].as_u64(), Some(2 * total), "{w}");
    // Sizes seen by PUT and full GETs: 15 of ~100 kB (<= 128 KiB), 9 of ~300 kB (<= 512 KiB).
    let sizes: BTreeMap<u64, u64> = w["object_sizes"]
        .as_array()
        .expect("object_sizes")
        .iter()
        .map(|b| {
            (
                b["le_bytes"].as_u64().expect("bounded"),
                b["count"].as_u64().expect("count"),
            )
        })
        .collect();
    assert_eq!(sizes, BTreeMap::from([(128 << 10, 15), (512 << 10, 9)]), "{w}");
    let hot: Vec<(String, u64)> = w["hot_prefixes"]
        .as_array()
        .expect("hot_prefixes")
        .iter()
        .map(|p| {
            (
                p["prefix"].as_str().expect("prefix").to_owned(),
                p["count"].as_u64().expect("count"),
            )
        })
        .collect();
    assert_eq!(hot, vec![("a/".to_owned(), 17), ("b/".to_owned(), 10)], "{w}");
    let gets_per_s = w["reads_per_s"].as_f64().expect("reads_per_s");
    assert!(gets_per_s > 0.0, "{w}");

    // The backends: every object put one shard on each of the six (6 shards, 6 backends),
    // each in one call; reads asked at least k = 4 shards per GET. Stragglers may still be
    // finishing right after the last response, hence the polling.
    let mut backends = Value::Null;
    for _ in 0..100 {
        backends = srv.admin("GET", "/api/v1/telemetry/backends").await.1;
        if (0..6).all(|i| window(backend(&backends, &format!("b{i}")), "1m")["put"]["count"] == 8) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for i in 0..6 {
        let w = window(backend(&backends, &format!("b{i}")), "1m");
        assert_eq!(w["put"]["count"], 8, "b{i}: {backends}");
    }
    let mut gets = 0;
    for i in 0..6 {
        let w = window(backend(&backends, &format!("b{i}")), "1m");
        gets += w["get"]["count"].as_u64().expect("get count");
        for op in ["put", "get"] {
            let Some(p50) = w[op]["p50_ms"].as_f64() else { continue };
            assert!(
                (DELAY_MS..DELAY_MS + TOLERANCE_MS).contains(&p50),
                "b{i} {op} p50 {p50} ms, injected {DELAY_MS} ms: {w}"
            );
        }
        assert_eq!(w["errors"], 0, "{w}");
    }
    assert!(gets >= 16 * 4, "{gets} shard reads for 16 GETs of k = 4: {backends}");

    // /metrics says the same.
    let text = srv.metrics().await;
    let bucket = [("aws_s3_bucket", "tel")];
    let count = |op: &str| {
        prom_value(&text, S3_DURATION_COUNT, &[bucket[0], ("rpc_method", op)])
            .unwrap_or_else(|| panic!("no {S3_DURATION_COUNT} for {op} in:\n{text}"))
    };
    assert_eq!(count("PutObject"), 8.0);
    assert_eq!(count("GetObject"), 16.0);
    assert_eq!(count("HeadObject"), 2.0);
    assert_eq!(prom_value(&text, S3_BYTES_IN, &bucket), Some(total as f64), "{text}");
    assert_eq!(
        prom_value(&text, S3_BYTES_OUT, &bucket),
        Some(2.0 * total as f64),
        "{text}"
    );
    assert_eq!(
        prom_value(&text, PREFIX_ACCESSES, &[bucket[0], ("mlsysops_s3_prefix", "a/")]),
        Some(17.0),
        "{text}"
    );
    let puts = prom_value(&text, BACKEND_DURATION_COUNT, &[("mlsysops_backend_operation", "put")]);
    assert_eq!(puts, Some(48.0), "{text}");
    // The observed gauges: nothing in flight or queued once the workload is over, all healthy.
    assert_eq!(
        prom_value(&text, "mlsysops_backend_active_requests", &[]),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        prom_value(&text, "mlsysops_repair_queue_length", &[]),
        Some(0.0),
        "{text}"
    );
    assert_eq!(prom_value(&text, "mlsysops_backend_healthy", &[]), Some(6.0), "{text}");
}

#[tokio::test]
async fn telemetry_endpoints_need_the_token_and_a_real_bucket() {
    let srv = TestServer::start(ServerOptions::new());
    for path in ["/metrics", "/api/v1/telemetry/backends", "/api/v1/telemetry/buckets/x"] {
        let (status, body) = srv.admin_raw("GET", path, None).await;
        assert_eq!(status, 401, "{path} without a token: {body}");
        assert!(body.contains("\"error\""), "{path}: {body}");
        let (status, _) = srv.admin_raw("GET", path, Some("wrong")).await;
        assert_eq!(status, 401, "{path} with a wrong token");
    }
    let (status, body) = srv.admin("GET", "/api/v1/telemetry/buckets/nosuch").await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].as_str().is_some_and(|m| m.contains("nosuch")), "{body}");
    // A bucket that exists but has seen no request yet: a well-formed, empty snapshot.
    create_bucket(&srv.client(), "quiet").await;
    let (status, body) = srv.admin("GET", "/api/v1/telemetry/buckets/quiet").await;
    assert_eq!(status, 200, "{body}");
    assert!(body["windows"].as_array().is_some_and(|w| w.len() == 3), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_steer_around_a_slow_backend() {
    let root = tempfile::tempdir().expect("temp dir");
    // b1 holds one shard of every object (6 shards on 6 backends) and answers 300 ms late.
    let faults = BTreeMap::from([(1, "latency_ms = 300".to_owned())]);
    let srv = TestServer::start(
        ServerOptions::new()
            .flag("--audit-interval-secs", 0)
            .config_toml(six_local_backends(root.path(), &faults))
            .flag("--scrub-interval-secs", 86400),
    );
    let c = srv.client();
    create_bucket(&c, "steer").await;
    let mut objects = Vec::new();
    for i in 0..8 {
        let data = random_bytes(256 * 1024 + i);
        put_bytes(&c, "steer", &format!("k{i}"), &data).await;
        objects.push((format!("k{i}"), data));
    }
    for _ in 0..5 {
        for (k, data) in &objects {
            assert_same_bytes(&get_bytes(&c, "steer", k).await, data, k);
        }
    }
    // 40 GETs of k = 4 shards: read data shards first, b1 would be asked in about 27 of them
    // (it holds a data shard of 4 objects in 6). It is asked until telemetry has a few samples
    // of it (its reads that lose the hedge race are recorded as cancelled), then avoided.
    let (_, all) = srv.admin("GET", "/api/v1/telemetry/backends").await;
    let slow = window(backend(&all, "b1"), "1m")["get"]["count"]
        .as_u64()
        .expect("count");
    let fast: u64 = [0, 2, 3, 4, 5]
        .iter()
        .map(|i| {
            window(backend(&all, &format!("b{i}")), "1m")["get"]["count"]
                .as_u64()
                .expect("count")
        })
        .sum();
    assert!(slow <= 12, "the slow backend was asked {slow} times in 40 GETs: {all}");
    assert!(fast >= 40 * 4 - slow, "{fast} reads from the fast backends: {all}");
    let text = srv.metrics().await;
    let cancelled = prom_value(
        &text,
        BACKEND_DURATION_COUNT,
        &[("mlsysops_backend", "b1"), ("mlsysops_backend_outcome", "cancelled")],
    );
    assert!(
        cancelled.is_some_and(|n| n >= 1.0),
        "no cancelled read of b1 recorded:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_otlp_collector_receives_metrics_and_request_spans_with_backend_children() {
    let receiver = telemetry::otlp_receiver::OtlpReceiver::start().await;
    let srv = TestServer::start(
        ServerOptions::new()
            .flag("--audit-interval-secs", 0)
            .flag("--otlp-endpoint", receiver.endpoint())
            .flag("--otlp-interval-secs", 0.5),
    );
    let c = srv.client();
    create_bucket(&c, "otlp").await;
    let data = random_bytes(200_000);
    put_bytes(&c, "otlp", "k", &data).await;
    assert_same_bytes(&get_bytes(&c, "otlp", "k").await, &data, "k");

    let got = receiver
        .wait_for(
            |r| {
                r.sum_of(
                    "http.server.request.duration",
                    &[("aws.s3.bucket", "otlp"), ("rpc.method", "GetObject")],
                )
                .is_some_and(|n| n >= 1.0)
                    && r.spans().iter().any(|s| s.name == "backend.call")
            },
            Duration::from_secs(30),
        )
        .await;
    let names = receiver.metric_names();
    assert!(got, "metrics or spans never arrived; metrics seen: {names:?}");
    for name in ["http.server.request.duration", "mlsysops.backend.request.duration"] {
        assert!(names.contains(name), "{name} missing from {names:?}");
    }
    assert_eq!(
        receiver.sum_of(
            "http.server.request.duration",
            &[("aws.s3.bucket", "otlp"), ("rpc.method", "PutObject")]
        ),
        Some(1.0)
    );

    // The PUT's request span, and backend calls that are its children (writes run in spawned
    // tasks, so this checks that the span context follows them).
    let spans = receiver.spans();
    let put = spans
        .iter()
        .find(|s| s.name == "s3.request" && s.attributes.get("s3.operation").map(String::as_str) == Some("PutObject"))
        .unwrap_or_else(|| panic!("no s3.request span for PutObject in {spans:#?}"));
    assert_eq!(
        put.attributes.get("aws.s3.bucket").map(String::as_str),
        Some("otlp"),
        "{put:?}"
    );
    assert_eq!(
        put.attributes.get("http.response.status_code").map(String::as_str),
        Some("200"),
        "{put:?}"
    );
    let children: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "backend.call" && s.parent_span_id.as_deref() == Some(put.span_id.as_str()))
        .collect();
    assert_eq!(
        children.len(),
        6,
        "one put per shard on six backends under the PUT span: {spans:#?}"
    );
    assert!(children.iter().all(|s| s.trace_id == put.trace_id));
    assert!(children
        .iter()
        .all(|s| s.attributes.get("mlsysops.backend.operation").map(String::as_str) == Some("put")));
}

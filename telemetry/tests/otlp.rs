//! What `Otel` exports over OTLP/HTTP, checked with the in-process receiver.

use std::time::Duration;

use telemetry::otel::names::*;
use telemetry::otel::{ObservableKind, Otel, OtelConfig};
use telemetry::otlp_receiver::OtlpReceiver;
use tracing_subscriber::layer::SubscriberExt;

const WAIT: Duration = Duration::from_secs(10);

fn init(receiver: &OtlpReceiver) -> Otel {
    Otel::init(OtelConfig {
        service_name: "otlp-test".into(),
        otlp_endpoint: Some(receiver.endpoint()),
        export_interval: Duration::from_millis(200),
        enabled: true,
    })
    .expect("init with the receiver's endpoint")
}

fn record(otel: &Otel) {
    let instruments = otel.instruments();
    instruments.backend_call("b1", "get", Duration::from_millis(2), 1000, "ok");
    instruments.backend_call("b1", "get", Duration::from_millis(3), 500, "ok");
    instruments.backend_call("b2", "put", Duration::from_millis(5), 4096, "error");
    instruments.backend_call("b2", "head", Duration::from_millis(1), 0, "not_found");
    instruments.s3_request("photos", "PutObject", 200, 4096, 0, Duration::from_millis(10));
    instruments.s3_request("photos", "GetObject", 200, 0, 1500, Duration::from_millis(4));
    instruments.s3_request("photos", "GetObject", 404, 0, 0, Duration::from_millis(1));
    instruments.s3_request("", "ListBuckets", 200, 0, 321, Duration::from_millis(1));
    instruments.prefix_access("photos", "2024/");
    otel.observe_u64(
        "mlsysops.repair.queue.length",
        "Objects waiting for repair",
        "{object}",
        ObservableKind::Gauge,
        |observe| observe(7, &[("mlsysops.queue", "repair")]),
    );
}

// Multi-thread: `shutdown` blocks (in place) until the final export reached the receiver, which
// runs on this same runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_reach_the_collector_periodically_and_at_shutdown() {
    let receiver = OtlpReceiver::start().await;
    let otel = init(&receiver);
    record(&otel);

    // The periodic reader exports without any flush.
    let all_names = [
        S3_REQUEST_DURATION,
        S3_REQUEST_BODY,
        S3_RESPONSE_BODY,
        S3_PREFIX_ACCESSES,
        BACKEND_REQUEST_DURATION,
        BACKEND_IO,
        BACKEND_ERRORS,
        "mlsysops.repair.queue.length",
    ];
    let exported = receiver
        .wait_for(|r| all_names.iter().all(|n| r.metric_names().contains(*n)), WAIT)
        .await;
    assert!(
        exported,
        "metrics exported periodically: got {:?}",
        receiver.metric_names()
    );

    // Recorded after the first export: must arrive with the final export at shutdown.
    otel.instruments()
        .backend_call("b1", "get", Duration::from_millis(2), 24, "ok");
    otel.shutdown();

    let sum = |name: &str, filter: &[(&str, &str)]| receiver.sum_of(name, filter);
    assert_eq!(
        receiver.metric_service_names().into_iter().collect::<Vec<_>>(),
        ["otlp-test"]
    );

    // Backend calls: histogram count per backend/operation/outcome, bytes, errors, in flight.
    assert_eq!(sum(BACKEND_REQUEST_DURATION, &[]), Some(5.0));
    assert_eq!(
        sum(
            BACKEND_REQUEST_DURATION,
            &[(ATTR_BACKEND, "b1"), (ATTR_BACKEND_OPERATION, "get")]
        ),
        Some(3.0)
    );
    assert_eq!(
        sum(BACKEND_REQUEST_DURATION, &[(ATTR_BACKEND_OUTCOME, "not_found")]),
        Some(1.0)
    );
    let put_seconds = receiver.histogram_sum_of(
        BACKEND_REQUEST_DURATION,
        &[(ATTR_BACKEND, "b2"), (ATTR_BACKEND_OPERATION, "put")],
    );
    assert!((put_seconds.unwrap() - 0.005).abs() < 1e-9, "{put_seconds:?}");
    assert_eq!(sum(BACKEND_IO, &[(ATTR_BACKEND, "b1")]), Some(1524.0));
    assert_eq!(sum(BACKEND_IO, &[(ATTR_BACKEND, "b2")]), Some(4096.0));
    assert_eq!(
        sum(BACKEND_IO, &[(ATTR_BACKEND_OPERATION, "head")]),
        None,
        "0 bytes are not counted"
    );
    assert_eq!(
        sum(BACKEND_ERRORS, &[(ATTR_BACKEND, "b2"), (ATTR_BACKEND_OPERATION, "put")]),
        Some(1.0)
    );
    assert_eq!(sum(BACKEND_ERRORS, &[(ATTR_BACKEND, "b1")]), None);

    // S3 requests.
    assert_eq!(sum(S3_REQUEST_DURATION, &[]), Some(4.0));
    assert_eq!(sum(S3_REQUEST_DURATION, &[(ATTR_S3_BUCKET, "photos")]), Some(3.0));
    assert_eq!(
        sum(
            S3_REQUEST_DURATION,
            &[(ATTR_S3_OPERATION, "GetObject"), (ATTR_HTTP_STATUS_CODE, "404")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sum(
            S3_REQUEST_DURATION,
            &[(ATTR_S3_OPERATION, "ListBuckets"), (ATTR_S3_BUCKET, "")]
        ),
        None
    );
    assert_eq!(
        sum(S3_REQUEST_DURATION, &[(ATTR_S3_OPERATION, "ListBuckets")]),
        Some(1.0)
    );
    assert_eq!(sum(S3_REQUEST_BODY, &[]), Some(4096.0));
    assert_eq!(sum(S3_RESPONSE_BODY, &[]), Some(1821.0));
    assert_eq!(sum(S3_RESPONSE_BODY, &[(ATTR_S3_BUCKET, "photos")]), Some(1500.0));
    assert_eq!(
        sum(
            S3_PREFIX_ACCESSES,
            &[(ATTR_S3_BUCKET, "photos"), (ATTR_S3_PREFIX, "2024/")]
        ),
        Some(1.0)
    );

    // Observable gauge.
    assert_eq!(
        sum("mlsysops.repair.queue.length", &[("mlsysops.queue", "repair")]),
        Some(7.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_the_collector_with_their_parent() {
    let receiver = OtlpReceiver::start().await;
    let otel = init(&receiver);
    let layer = otel.tracing_layer().expect("a layer when an endpoint is set");
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        let request = tracing::info_span!(
            "s3.request",
            s3.operation = "GetObject",
            aws.s3.bucket = "photos",
            http.response.status_code = tracing::field::Empty,
        );
        let _entered = request.enter();
        tracing::info_span!(
            "backend.call",
            mlsysops.backend = "b1",
            mlsysops.backend.operation = "get"
        )
        .in_scope(|| {});
        // Known once the response is built, as in the gateway.
        request.record("http.response.status_code", 200);
    });
    otel.shutdown();

    let spans = receiver.spans();
    let parent = spans
        .iter()
        .find(|s| s.name == "s3.request")
        .expect("s3.request exported");
    let child = spans
        .iter()
        .find(|s| s.name == "backend.call")
        .expect("backend.call exported");
    assert_eq!(parent.parent_span_id, None);
    assert_eq!(child.parent_span_id.as_deref(), Some(parent.span_id.as_str()));
    assert_eq!(child.trace_id, parent.trace_id);
    assert_eq!(parent.trace_id.len(), 32);
    assert_eq!(parent.span_id.len(), 16);
    for (key, value) in [
        ("s3.operation", "GetObject"),
        ("aws.s3.bucket", "photos"),
        ("http.response.status_code", "200"),
    ] {
        assert_eq!(
            parent.attributes.get(key).map(String::as_str),
            Some(value),
            "{key} in {:?}",
            parent.attributes
        );
    }
    // Turned off in `tracing_layer`: per-span costs that say little.
    for key in ["busy_ns", "idle_ns", "thread.name", "thread.id"] {
        assert!(!parent.attributes.contains_key(key), "{key} in {:?}", parent.attributes);
    }
    for (key, value) in [("mlsysops.backend", "b1"), ("mlsysops.backend.operation", "get")] {
        assert_eq!(
            child.attributes.get(key).map(String::as_str),
            Some(value),
            "{key} in {:?}",
            child.attributes
        );
    }
}

// A current-thread runtime serving the collector too: `shutdown` must then leave the runtime's
// thread free, from `spawn_blocking`.
#[tokio::test]
async fn shutdown_from_spawn_blocking_on_a_current_thread_runtime() {
    let receiver = OtlpReceiver::start().await;
    let otel = init(&receiver);
    otel.instruments()
        .s3_request("b", "HeadObject", 200, 0, 0, Duration::from_millis(1));
    let otel2 = otel.clone();
    tokio::task::spawn_blocking(move || otel2.shutdown()).await.unwrap();
    assert_eq!(
        receiver.sum_of(S3_REQUEST_DURATION, &[(ATTR_S3_BUCKET, "b")]),
        Some(1.0)
    );
    assert_eq!(otel.prometheus_text(), "", "no scrape after shutdown");
}

// A collector that is down must not hold the gateway's shutdown for long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_bounded_when_the_collector_is_down() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let otel = Otel::init(OtelConfig {
        service_name: "down".into(),
        otlp_endpoint: Some(format!("http://127.0.0.1:{port}")),
        export_interval: Duration::from_millis(200),
        enabled: true,
    })
    .unwrap();
    otel.instruments()
        .s3_request("b", "HeadObject", 200, 0, 0, Duration::from_millis(1));
    let subscriber = tracing_subscriber::registry().with(otel.tracing_layer().unwrap());
    tracing::subscriber::with_default(subscriber, || tracing::info_span!("s3.request").in_scope(|| {}));
    let started = std::time::Instant::now();
    otel.shutdown();
    // Connection refused is retried with backoff (under a second); the SDK waits 5 s at most.
    assert!(started.elapsed() < Duration::from_secs(8), "{:?}", started.elapsed());
}

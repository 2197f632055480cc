//! The ML connector through its public interface: the external model against a real HTTP
//! server on 127.0.0.1, and `Models` learning from hand-built worlds.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agents::ml::{ExternalModel, Model, Models};
use agents::world::{BackendView, World};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

/// What the fake connector received: the deployment id and the JSON body.
type Seen = Arc<Mutex<Vec<(String, Value)>>>;

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

/// A connector whose deployments answer `how` (`ok`, `500`, `garbage`, `big`, `big-chunked`,
/// `no-prediction`, `silent`, `stall-body`).
async fn connector(seen: Seen) -> SocketAddr {
    async fn predict(State(seen): State<Seen>, Path(id): Path<String>, Json(body): Json<Value>) -> Response {
        seen.lock().unwrap().push((id.clone(), body.clone()));
        match id.as_str() {
            "ok" => {
                let sum: f64 = body["data"]["x"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(Value::as_f64)
                    .sum();
                let explanation = body["explain"].as_bool().unwrap().then(|| json!({"why": "sum of x"}));
                Json(json!({"prediction": sum, "explanation": explanation})).into_response()
            }
            "500" => (StatusCode::INTERNAL_SERVER_ERROR, "model crashed").into_response(),
            "garbage" => (StatusCode::OK, "{not json").into_response(),
            "no-prediction" => Json(json!({"result": 1})).into_response(),
            "big" => {
                let big = "a".repeat(2 << 20);
                Json(json!({"prediction": big})).into_response()
            }
            "big-chunked" => {
                // No content length: the client must stop reading on its own.
                let chunks = (0..64).map(|_| Ok::<_, std::io::Error>(vec![b' '; 64 << 10]));
                Body::from_stream(futures::stream::iter(chunks)).into_response()
            }
            "silent" => std::future::pending().await,
            "stall-body" => {
                let first = futures::stream::iter([Ok::<_, std::io::Error>(b"{\"prediction\":".to_vec())]);
                Body::from_stream(futures::StreamExt::chain(first, futures::stream::pending())).into_response()
            }
            _ => StatusCode::NOT_FOUND.into_response(),
        }
    }
    serve(
        Router::new()
            .route("/ml/deployment/{id}/predict", post(predict))
            .with_state(seen),
    )
    .await
}

fn model(addr: SocketAddr, deployment: &str) -> ExternalModel {
    ExternalModel::with_timeouts(
        &format!("http://agent:s3cret@{addr}/ml/?token=t0ken"),
        deployment,
        Duration::from_secs(2),
        Duration::from_millis(800),
    )
    .unwrap()
}

fn assert_clean_error(e: &agents::Error, deployment: &str, needle: &str) {
    let text = e.to_string();
    assert!(
        matches!(e, agents::Error::Model { model, .. } if model == deployment),
        "{text}"
    );
    assert!(
        text.contains(&format!("/ml/deployment/{deployment}/predict")),
        "names the path: {text}"
    );
    assert!(text.contains(needle), "says {needle:?}: {text}");
    assert!(
        !text.contains("s3cret") && !text.contains("t0ken"),
        "leaks a secret: {text}"
    );
}

#[tokio::test]
async fn external_model_posts_data_and_explain_and_reads_the_answer() {
    let seen = Seen::default();
    let addr = connector(seen.clone()).await;
    let m = model(addr, "ok");
    assert_eq!(m.name(), "ok");

    let p = m.predict(&json!({"x": [1.5, 2.5]}), true).await.unwrap();
    assert_eq!(p.prediction, json!(4.0));
    assert_eq!(p.explanation, Some(json!({"why": "sum of x"})));
    let p = m.predict(&json!({"x": [1]}), false).await.unwrap();
    assert_eq!(p.prediction, json!(1.0));
    assert_eq!(p.explanation, None);

    let seen = seen.lock().unwrap();
    assert_eq!(
        *seen,
        vec![
            ("ok".to_owned(), json!({"data": {"x": [1.5, 2.5]}, "explain": true})),
            ("ok".to_owned(), json!({"data": {"x": [1]}, "explain": false})),
        ]
    );
}

#[tokio::test]
async fn external_model_errors_are_clear_and_bounded() {
    let addr = connector(Seen::default()).await;

    let e = model(addr, "500").predict(&json!(1), false).await.unwrap_err();
    assert_clean_error(&e, "500", "500 Internal Server Error: model crashed");
    let e = model(addr, "garbage").predict(&json!(1), false).await.unwrap_err();
    assert_clean_error(&e, "garbage", "not JSON");
    let e = model(addr, "no-prediction")
        .predict(&json!(1), false)
        .await
        .unwrap_err();
    assert_clean_error(&e, "no-prediction", "no `prediction`");
    let e = model(addr, "big").predict(&json!(1), false).await.unwrap_err();
    assert_clean_error(&e, "big", "larger than 1048576 bytes");
    let e = model(addr, "big-chunked").predict(&json!(1), false).await.unwrap_err();
    assert_clean_error(&e, "big-chunked", "larger than 1048576 bytes");
    let e = model(addr, "nope").predict(&json!(1), false).await.unwrap_err();
    assert_clean_error(&e, "nope", "404");

    // A smaller bound applies as set.
    let e = model(addr, "ok")
        .max_answer(8)
        .predict(&json!({"x": [1]}), true)
        .await
        .unwrap_err();
    assert_clean_error(&e, "ok", "larger than 8 bytes");

    // Training is the connector's business.
    let mut m = model(addr, "ok");
    let e = m.train(&agents::ml::Dataset::default()).await.unwrap_err();
    assert!(e.to_string().contains("trained by its ML connector"), "{e}");
}

#[tokio::test]
async fn external_model_times_out_on_a_silent_server_or_body() {
    let addr = connector(Seen::default()).await;
    for deployment in ["silent", "stall-body"] {
        let start = Instant::now();
        let e = model(addr, deployment).predict(&json!(1), false).await.unwrap_err();
        assert_clean_error(&e, deployment, "no answer within 800 ms");
        // Generous slack: this checks that the bound holds, not how fast.
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{deployment}: {:?}",
            start.elapsed()
        );
    }
}

#[tokio::test]
async fn external_model_reports_a_refused_connection() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let e = model(addr, "d").predict(&json!(1), false).await.unwrap_err();
    assert_clean_error(&e, "d", "cannot connect");
}

fn backend(id: &str, p95: Option<f64>, bw: f64, err: f64, avail: f64) -> BackendView {
    BackendView {
        id: id.into(),
        get_p95_ms: p95,
        bandwidth_mib_s: Some(bw),
        error_rate: Some(err),
        availability: Some(avail),
        ..BackendView::default()
    }
}

/// Period `t` of a world with three fast backends, two slow ones, and `rising` getting 5 ms
/// slower every minute from 20 ms.
fn world(t: u32) -> World {
    let t_f = f64::from(t);
    World {
        now_ms: 1_700_000_000_000 + i64::from(t) * 60_000,
        period_secs: 60,
        backends: vec![
            backend("fast-1", Some(10.0 + t_f % 2.0), 200.0, 0.0, 1.0),
            backend("fast-2", Some(12.0), 190.0, 0.0, 1.0),
            backend("fast-3", Some(11.0 - t_f % 2.0), 210.0, 0.001, 1.0),
            backend("slow-1", Some(400.0), 20.0, 0.05, 0.9),
            backend("slow-2", Some(420.0 + t_f % 3.0), 18.0, 0.04, 0.92),
            // Measured only every other period: the gaps must not bend its trend.
            backend(
                "rising",
                t.is_multiple_of(2).then_some(20.0 + 5.0 * t_f),
                200.0,
                0.0,
                1.0,
            ),
        ],
        buckets: vec![],
        ..World::default()
    }
}

#[test]
fn models_observe_worlds_and_answer_policies() {
    let mut models = Models::new(None);
    assert!(models.external().is_none());
    assert!(models.forecast_p95("fast-1", 1).is_none());
    assert!(models.cluster_of("fast-1").is_none());

    for t in 0..12 {
        models.observe(&world(t));
    }
    // Three periods after the last world (t = 11) is t = 14: 20 + 5 * 14 = 90 ms, although
    // `rising` was last measured at t = 10.
    let f = models.forecast_p95("rising", 3).unwrap();
    assert!((f.value - 90.0).abs() < 1e-6, "{f:?}");
    assert!(f.low <= 90.0 && 90.0 <= f.high, "{f:?}");
    assert!((f.steps - 2.0).abs() < 1e-9, "four periods are two of its steps: {f:?}");
    assert_eq!(f.explanation.samples, 6);
    assert_eq!(
        f.explanation.step_ms, 120_000,
        "one step is the usual spacing, two periods here"
    );
    let flat = models.forecast_p95("fast-2", 5).unwrap();
    assert!((flat.value - 12.0).abs() < 1e-6, "{flat:?}");

    for id in ["fast-1", "fast-2", "fast-3"] {
        let (name, distance) = models.cluster_of(id).unwrap();
        assert_eq!(name, "fast", "{id}");
        assert!(distance.is_finite() && distance >= 0.0);
    }
    for id in ["slow-1", "slow-2"] {
        assert_ne!(models.cluster_of(id).unwrap().0, "fast", "{id}");
    }
    // `rising` was unmeasured in the last period, so it is not clustered now.
    assert!(models.cluster_of("rising").is_none());

    // A backend gone from the world is forgotten.
    let mut w = world(12);
    w.backends.retain(|b| b.id != "slow-2");
    models.observe(&w);
    assert!(models.forecast_p95("slow-2", 1).is_none());
    assert!(models.cluster_of("slow-2").is_none());
    assert_eq!(models.forecaster().samples("rising").len(), 7);
}

#[tokio::test]
async fn models_hold_the_external_deployment() {
    let addr = connector(Seen::default()).await;
    let models = Models::new(Some(model(addr, "ok")));
    let p = models
        .external()
        .unwrap()
        .call(&json!({"x": [2, 3]}), false)
        .await
        .unwrap();
    assert_eq!(p.prediction, json!(5.0));
}

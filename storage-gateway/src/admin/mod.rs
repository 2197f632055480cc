//! The admin REST API (its own port, bearer-token authenticated): repair and health views for
//! operators and tests, triggers for a heal or scrub pass now, the Prometheus `/metrics` page,
//! the sliding-window telemetry the agents read, and bucket policies with their migrations
//! ([`policy`]).

mod policy;
mod workers;

use crate::engine::heal::Redundancy;
use crate::engine::Engine;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use subtle::ConstantTimeEq;

#[derive(Clone)]
pub(crate) struct AdminState {
    engine: Engine,
    token: Arc<str>,
}

/// The admin API's routes, all behind the bearer token.
pub fn router(engine: Engine, token: &str) -> Router {
    let state = AdminState {
        engine,
        token: token.into(),
    };
    Router::new()
        .route("/api/v1/redundancy", get(redundancy))
        .route("/api/v1/heal", post(heal_now))
        .route("/api/v1/scrub", post(scrub_now))
        .route("/api/v1/telemetry/backends", get(backend_telemetry))
        .route("/api/v1/telemetry/buckets/{bucket}", get(bucket_telemetry))
        .route("/metrics", get(metrics))
        .route(
            "/api/v1/buckets/{bucket}/policy",
            get(policy::get_policy).put(policy::put_policy),
        )
        .route("/api/v1/buckets/{bucket}/policy/history", get(policy::history))
        .route("/api/v1/buckets/{bucket}/migration", get(policy::migration))
        .route("/api/v1/migration", get(policy::get_throttle).put(policy::put_throttle))
        .route("/api/v1/workers", get(workers::list))
        .route("/api/v1/workers/{name}", axum::routing::put(workers::change))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such admin endpoint") })
        .layer(axum::middleware::from_fn_with_state(state.clone(), authenticate))
        .with_state(state)
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": message.to_string() }))).into_response()
}

/// An error answer of a handler (JSON with a message), boxed so handlers' results stay small.
pub(crate) struct ApiError(Box<Response>);

impl ApiError {
    /// An answer with `status` and `{"error": message}`.
    pub(crate) fn new(status: StatusCode, message: impl std::fmt::Display) -> Self {
        Self(Box::new(error(status, message)))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        *self.0
    }
}

/// The record of `bucket`, or the 404 (unknown bucket) or 500 answer.
fn bucket_record(engine: &Engine, bucket: &str) -> Result<crate::manifest::BucketRecord, ApiError> {
    match engine.catalog().bucket(bucket) {
        Ok(Some(rec)) => Ok(rec),
        Ok(None) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no such bucket: {bucket}"),
        )),
        Err(e) => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e)),
    }
}

async fn authenticate(State(st): State<AdminState>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(t) if bool::from(t.as_bytes().ct_eq(st.token.as_bytes())) => next.run(req).await,
        Some(_) => error(StatusCode::UNAUTHORIZED, "wrong admin token"),
        None => error(
            StatusCode::UNAUTHORIZED,
            "missing `Authorization: Bearer <token>` (the admin token: MLSYSOPS_ADMIN_TOKEN)",
        ),
    }
}

#[derive(Serialize)]
struct BackendView {
    id: String,
    local: bool,
    suspect: bool,
    consecutive_failures: u32,
    retry_in_ms: Option<u128>,
    last_error: Option<String>,
}

#[derive(Serialize)]
struct RedundancyView {
    buckets: BTreeMap<String, Redundancy>,
    repair_queue: usize,
    /// Shards still being written after their PUT was acknowledged.
    straggling_shards: usize,
    healer: BTreeMap<&'static str, u64>,
    scrubber: BTreeMap<&'static str, u64>,
    backends: Vec<BackendView>,
}

async fn redundancy(State(st): State<AdminState>) -> Response {
    let e = &st.engine;
    let (buckets, queue) = match (e.redundancy(), e.catalog().repairs()) {
        (Ok(b), Ok(q)) => (b, q.len()),
        (Err(err), _) | (_, Err(err)) => return error(StatusCode::INTERNAL_SERVER_ERROR, err),
    };
    let h = e.heal_counters();
    let s = e.scrub_counters();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let view = RedundancyView {
        buckets,
        repair_queue: queue,
        straggling_shards: e.straggling_shards(),
        healer: BTreeMap::from([
            ("shards_repaired", load(&h.shards_repaired)),
            ("bytes_written", load(&h.bytes_written)),
            ("failures", load(&h.failures)),
            ("dropped", load(&h.dropped)),
            ("passes", load(&h.passes)),
        ]),
        scrubber: BTreeMap::from([
            ("passes", load(&s.passes)),
            ("shards_checked", load(&s.shards_checked)),
            ("blocks_checked", load(&s.blocks_checked)),
            ("corrupt_blocks", load(&s.corrupt_blocks)),
            ("missing_shards", load(&s.missing_shards)),
            ("bytes_read", load(&s.bytes_read)),
        ]),
        backends: e
            .backends()
            .iter()
            .map(|b| {
                let h = b.health().status();
                BackendView {
                    id: b.id().to_owned(),
                    local: b.is_local(),
                    suspect: h.suspect,
                    consecutive_failures: h.consecutive_failures,
                    retry_in_ms: h.retry_in.map(|d| d.as_millis()),
                    last_error: h.last_error,
                }
            })
            .collect(),
    };
    Json(view).into_response()
}

async fn heal_now(State(st): State<AdminState>) -> Response {
    match st.engine.heal_pass(None).await {
        Ok(p) => Json(json!({ "repaired": p.repaired, "failed": p.failed, "dropped": p.dropped })).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn scrub_now(State(st): State<AdminState>) -> Response {
    match st.engine.scrub_pass(None).await {
        Ok(p) => Json(json!({ "shards": p.shards, "queued": p.queued })).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// The Prometheus text exposition of every OpenTelemetry instrument.
async fn metrics(State(st): State<AdminState>) -> Response {
    let text = st.engine.telemetry().otel().prometheus_text();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response()
}

async fn backend_telemetry(State(st): State<AdminState>) -> Response {
    Json(json!({ "backends": st.engine.telemetry().backends() })).into_response()
}

async fn bucket_telemetry(State(st): State<AdminState>, Path(bucket): Path<String>) -> Result<Response, ApiError> {
    bucket_record(&st.engine, &bucket)?;
    Ok(Json(st.engine.telemetry().bucket(&bucket)).into_response())
}

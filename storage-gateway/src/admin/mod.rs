//! The admin REST API (its own port, bearer-token authenticated): repair and health views for
//! operators and tests, triggers for a heal or scrub pass now, the Prometheus `/metrics` page,
//! the sliding-window telemetry the agents read, and buckets' storage policies with their
//! migrations ([`policy`]), how GETs read ([`reads`]), the backends with the faults injected into them at run time
//! ([`backends`]), and S3 principals' statistics and throttles ([`principals`]). What each endpoint takes and answers is spelled once, in the
//! `control_api` crate.

mod backends;
mod policy;
mod principals;
mod reads;
mod workers;

use crate::engine::Engine;
use crate::s3::Throttles;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use control_api::{
    routes, BackendHealth, BucketRedundancy, ErrorBody, HealPass, HealerCounters, RedundancyView, ScrubPass,
    ScrubberCounters,
};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;

#[derive(Clone)]
pub(crate) struct AdminState {
    engine: Engine,
    token: Arc<str>,
    defaults: BucketDefaults,
    /// Whether backends' faults may be changed at run time.
    allow_fault_injection: bool,
    /// The S3 principals' throttles, enforced by the S3 front.
    throttles: Arc<Throttles>,
}

/// What a bucket created through the admin API starts with (as one created over S3 without a
/// location constraint).
#[derive(Debug, Clone, Copy)]
pub struct BucketDefaults {
    /// The gateway's default policy.
    pub policy: placement::BucketPolicy,
    /// Whether new buckets encrypt at rest.
    pub encrypted: bool,
}

/// The admin API's routes, all behind the bearer token; the faults endpoints answer 403
/// unless `allow_fault_injection`; the principals' throttles set here are `throttles`, which
/// the S3 front enforces.
pub fn router(
    engine: Engine,
    token: &str,
    defaults: BucketDefaults,
    allow_fault_injection: bool,
    throttles: Arc<Throttles>,
) -> Router {
    let state = AdminState {
        engine,
        token: token.into(),
        defaults,
        allow_fault_injection,
        throttles,
    };
    Router::new()
        .route(routes::REDUNDANCY, get(redundancy))
        .route(routes::HEAL, post(heal_now))
        .route(routes::SCRUB, post(scrub_now))
        .route(routes::BACKEND_TELEMETRY, get(backend_telemetry))
        .route(routes::BUCKET_TELEMETRY, get(bucket_telemetry))
        .route(routes::PRINCIPAL_TELEMETRY, get(principals::telemetry))
        .route(routes::PRINCIPAL_THROTTLES, get(principals::list))
        .route(
            routes::PRINCIPAL_THROTTLE,
            axum::routing::put(principals::put).delete(principals::delete),
        )
        .route(routes::METRICS, get(metrics))
        .route(routes::STORAGE_POLICY, get(policy::get_policy).put(policy::put_policy))
        .route(routes::STORAGE_POLICY_HISTORY, get(policy::history))
        // The paths from before the rename, kept (deprecated) so existing clients keep working.
        .route(
            routes::STORAGE_POLICY_ALIAS,
            get(policy::get_policy).put(policy::put_policy),
        )
        .route(routes::STORAGE_POLICY_HISTORY_ALIAS, get(policy::history))
        .route(routes::MIGRATION, get(policy::migration))
        .route(routes::BUCKET_USAGE, get(policy::usage))
        .route(
            routes::MIGRATION_THROTTLE,
            get(policy::get_throttle).put(policy::put_throttle),
        )
        .route(routes::READS, get(reads::get_reads).put(reads::put_reads))
        .route(routes::BUCKET_ADMIN, axum::routing::put(create_bucket))
        .route(routes::WORKERS, get(workers::list))
        .route(routes::WORKER, axum::routing::put(workers::change))
        .route(routes::BACKENDS, get(backends::list))
        .route(
            routes::BACKEND_FAULTS,
            get(backends::get_faults)
                .put(backends::put_faults)
                .delete(backends::clear_faults),
        )
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such admin endpoint") })
        .layer(axum::middleware::from_fn_with_state(
            state.token.clone(),
            control_api::auth::require_token,
        ))
        .with_state(state)
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(ErrorBody::new(message))).into_response()
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
fn bucket_record(engine: &Engine, bucket: &str) -> Result<crate::records::BucketRecord, ApiError> {
    match engine.bucket(bucket) {
        Ok(Some(rec)) => Ok(rec),
        Ok(None) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no such bucket: {bucket}"),
        )),
        Err(e) => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e)),
    }
}

async fn redundancy(State(st): State<AdminState>) -> Response {
    let e = &st.engine;
    let (buckets, queue) = match (e.redundancy(), e.repair_queue_len()) {
        (Ok(b), Ok(q)) => (b, q),
        (Err(err), _) | (_, Err(err)) => return error(StatusCode::INTERNAL_SERVER_ERROR, err),
    };
    let h = e.heal_counters();
    let s = e.scrub_counters();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let view = RedundancyView {
        buckets: buckets
            .into_iter()
            .map(|(name, r)| {
                let r = BucketRedundancy {
                    full: r.full,
                    degraded: r.degraded,
                    unreadable: r.unreadable,
                };
                (name, r)
            })
            .collect(),
        repair_queue: queue,
        straggling_shards: e.straggling_shards(),
        healer: HealerCounters {
            bytes_written: load(&h.bytes_written),
            dropped: load(&h.dropped),
            failures: load(&h.failures),
            passes: load(&h.passes),
            shards_repaired: load(&h.shards_repaired),
        },
        scrubber: ScrubberCounters {
            blocks_checked: load(&s.blocks_checked),
            bytes_read: load(&s.bytes_read),
            corrupt_blocks: load(&s.corrupt_blocks),
            missing_shards: load(&s.missing_shards),
            passes: load(&s.passes),
            shards_checked: load(&s.shards_checked),
        },
        backends: e
            .backends()
            .iter()
            .map(|b| {
                let h = b.health().status();
                BackendHealth {
                    id: b.id().to_owned(),
                    local: b.is_local(),
                    suspect: h.suspect,
                    consecutive_failures: h.consecutive_failures,
                    retry_in_ms: h.retry_in.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                    last_error: h.last_error,
                }
            })
            .collect(),
    };
    Json(view).into_response()
}

/// Creates a bucket with the defaults (201), or answers 200 when it exists: the agents create
/// the buckets an app declares, and a retried request must not fail.
async fn create_bucket(State(st): State<AdminState>, Path(bucket): Path<String>) -> Result<Response, ApiError> {
    if st
        .engine
        .bucket(&bucket)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?
        .is_some()
    {
        return Ok((StatusCode::OK, Json(json!({"bucket": bucket, "created": false}))).into_response());
    }
    if !s3s::path::check_bucket_name(&bucket) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("invalid bucket name {bucket:?}: 3-63 characters of a-z, 0-9, '.' and '-'"),
        ));
    }
    let eligible = st.engine.eligible(&placement::BackendSelector::default());
    st.defaults
        .policy
        .check_backends(eligible.len())
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, e))?;
    let rec = crate::records::BucketRecord {
        created_ms: crate::records::now_ms(),
        policy: st.defaults.policy,
        policy_epoch: 1,
        encrypted: st.defaults.encrypted,
        backends: placement::BackendSelector::default(),
        intent: placement::BucketIntent::default(),
        update_token_sha256: None,
        changed: None,
        prefixes: Vec::new(),
    };
    match st.engine.create_bucket(&bucket, &rec) {
        Ok(()) => {
            tracing::info!(%bucket, policy = %rec.policy, encrypted = rec.encrypted, "bucket created through the admin API");
            Ok((StatusCode::CREATED, Json(json!({"bucket": bucket, "created": true}))).into_response())
        }
        // Created by someone else between the check and the commit: it exists, as asked.
        Err(crate::Error::BucketExists(_)) => {
            Ok((StatusCode::OK, Json(json!({"bucket": bucket, "created": false}))).into_response())
        }
        Err(e) => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e)),
    }
}

async fn heal_now(State(st): State<AdminState>) -> Response {
    match st.engine.heal_pass(None).await {
        Ok(p) => Json(HealPass {
            dropped: p.dropped,
            failed: p.failed,
            repaired: p.repaired,
        })
        .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn scrub_now(State(st): State<AdminState>) -> Response {
    match st.engine.scrub_pass(None).await {
        Ok(p) => Json(ScrubPass {
            queued: p.queued,
            shards: p.shards,
        })
        .into_response(),
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

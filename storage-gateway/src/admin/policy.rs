//! Storage policy, history and migration endpoints, and the migrator's throttle.

use super::{bucket_record, AdminState, ApiError};
use crate::engine::migrate::{MigrationView, Throttle};
use crate::storage_policy::{self, Refusal};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use control_api::{
    MigrationProgress, MigrationState, MigrationThrottle, MigrationThrottleRequest, StoragePolicyChanged,
    StoragePolicyHistory, StoragePolicyRequest,
};
use serde::de::DeserializeOwned;

/// A JSON body, or a 400 JSON error naming what is wrong with it.
fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("request body is not a valid JSON object of this endpoint: {e}"),
        )
    })
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        let status = match &r {
            Refusal::Invalid(_) => StatusCode::BAD_REQUEST,
            Refusal::Forbidden(_) => StatusCode::FORBIDDEN,
            Refusal::NoSuchBucket(_) => StatusCode::NOT_FOUND,
            Refusal::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, r)
    }
}

pub(super) async fn get_policy(State(st): State<AdminState>, Path(bucket): Path<String>) -> Result<Response, ApiError> {
    let rec = bucket_record(&st.engine, &bucket)?;
    Ok(Json(storage_policy::view(&bucket, &rec, Some(&st.engine))).into_response())
}

pub(super) async fn put_policy(
    State(st): State<AdminState>,
    Path(bucket): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    // Unknown bucket before a bad body: the more basic error first.
    bucket_record(&st.engine, &bucket)?;
    let req: StoragePolicyRequest = parse(&body)?;
    let applied = storage_policy::apply(&st.engine, &bucket, &req)?;
    st.engine
        .settle()
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    Ok(Json(StoragePolicyChanged {
        changed: applied.changed,
        policy: storage_policy::view(&bucket, &applied.record, Some(&st.engine)),
        migration: progress(st.engine.migrations().view(&bucket, applied.record.policy_epoch)),
    })
    .into_response())
}

pub(super) async fn history(State(st): State<AdminState>, Path(bucket): Path<String>) -> Result<Response, ApiError> {
    bucket_record(&st.engine, &bucket)?;
    let changes = st
        .engine
        .policy_history(&bucket)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    Ok(Json(StoragePolicyHistory {
        changes: storage_policy::history_view(&bucket, changes),
        bucket,
    })
    .into_response())
}

pub(super) async fn migration(State(st): State<AdminState>, Path(bucket): Path<String>) -> Result<Response, ApiError> {
    let rec = bucket_record(&st.engine, &bucket)?;
    Ok(Json(progress(st.engine.migrations().view(&bucket, rec.policy_epoch))).into_response())
}

/// `GET /api/v1/buckets/{bucket}/usage`: its objects and logical bytes, counted now.
pub(super) async fn usage(State(st): State<AdminState>, Path(bucket): Path<String>) -> Result<Response, ApiError> {
    bucket_record(&st.engine, &bucket)?;
    let engine = st.engine.clone();
    let name = bucket.clone();
    // The depth the access statistics count prefixes at, so sizes and reads line up.
    let depth = st.engine.telemetry().bucket(&bucket).prefix_depth;
    let failed = |e: &dyn std::fmt::Display| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("counting bucket {bucket}: {e}"),
        )
    };
    let usage = tokio::task::spawn_blocking(move || engine.bucket_usage(&name, depth))
        .await
        .map_err(|e| failed(&e))?
        .map_err(|e| failed(&e))?;
    Ok(Json(control_api::BucketUsage {
        bucket,
        objects: usage.objects,
        bytes: usage.bytes,
        prefix_depth: depth,
        prefixes: usage
            .prefixes
            .into_iter()
            .map(|(prefix, (objects, bytes))| control_api::PrefixUsage { prefix, objects, bytes })
            .collect(),
    })
    .into_response())
}

/// The engine's account of a migration as the API shows it.
fn progress(v: MigrationView) -> MigrationProgress {
    MigrationProgress {
        // The engine's states are the API's four names.
        state: v.state.parse().unwrap_or(MigrationState::Running),
        bucket: v.bucket,
        target_epoch: v.target_epoch,
        objects_total: v.objects_total,
        objects_done: v.objects_done,
        bytes_total: v.bytes_total,
        bytes_done: v.bytes_done,
        objects_reencoded: v.objects_reencoded,
        objects_moved: v.objects_moved,
        objects_relabelled: v.objects_relabelled,
        objects_remaining: v.objects_remaining,
        rate_bytes_per_sec: v.rate_bytes_per_sec,
        eta_secs: v.eta_secs,
        errors: v.errors,
        last_error: v.last_error,
        skipped: v.skipped,
        started_ms: v.started_ms,
        finished_ms: v.finished_ms,
    }
}

fn throttle_view(t: Throttle) -> MigrationThrottle {
    MigrationThrottle {
        max_mib_per_sec: t.max_mib_per_sec,
        concurrency: t.concurrency,
        paused: t.paused,
    }
}

pub(super) async fn get_throttle(State(st): State<AdminState>) -> Response {
    Json(throttle_view(st.engine.migrations().throttle())).into_response()
}

pub(super) async fn put_throttle(State(st): State<AdminState>, body: Bytes) -> Result<Response, ApiError> {
    let req: MigrationThrottleRequest = parse(&body)?;
    let m = st.engine.migrations();
    let new = req.applied_to(throttle_view(m.throttle()));
    m.set_throttle(Throttle {
        max_mib_per_sec: new.max_mib_per_sec,
        concurrency: new.concurrency,
        paused: new.paused,
    })
    .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    tracing::info!(
        max_mib_per_sec = new.max_mib_per_sec,
        concurrency = new.concurrency,
        paused = new.paused,
        "migration throttle changed"
    );
    Ok(Json(throttle_view(m.throttle())).into_response())
}

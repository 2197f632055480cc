//! Bucket policy, history and migration endpoints, and the migrator's throttle.

use super::{bucket_record, AdminState, ApiError};
use crate::bucket_policy::{self, PolicyRequest, Refusal};
use crate::engine::migrate::Throttle;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde_json::json;

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
    Ok(Json(bucket_policy::view(&bucket, &rec, Some(&st.engine))).into_response())
}

pub(super) async fn put_policy(
    State(st): State<AdminState>,
    Path(bucket): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    // Unknown bucket before a bad body: the more basic error first.
    bucket_record(&st.engine, &bucket)?;
    let req: PolicyRequest = parse(&body)?;
    let applied = bucket_policy::apply(&st.engine, &bucket, &req)?;
    Ok(Json(json!({
        "changed": applied.changed,
        "policy": bucket_policy::view(&bucket, &applied.record, Some(&st.engine)),
        "migration": st.engine.migrations().view(&bucket, applied.record.policy_epoch),
    }))
    .into_response())
}

pub(super) async fn history(State(st): State<AdminState>, Path(bucket): Path<String>) -> Result<Response, ApiError> {
    bucket_record(&st.engine, &bucket)?;
    let changes = st
        .engine
        .policy_history(&bucket)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    Ok(Json(json!({
        "bucket": bucket,
        "changes": bucket_policy::history_view(&bucket, changes),
    }))
    .into_response())
}

pub(super) async fn migration(State(st): State<AdminState>, Path(bucket): Path<String>) -> Result<Response, ApiError> {
    let rec = bucket_record(&st.engine, &bucket)?;
    Ok(Json(st.engine.migrations().view(&bucket, rec.policy_epoch)).into_response())
}

pub(super) async fn get_throttle(State(st): State<AdminState>) -> Response {
    Json(st.engine.migrations().throttle()).into_response()
}

/// A throttle change: any subset of the fields.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ThrottleRequest {
    max_mib_per_sec: Option<f64>,
    concurrency: Option<usize>,
    paused: Option<bool>,
}

pub(super) async fn put_throttle(State(st): State<AdminState>, body: Bytes) -> Result<Response, ApiError> {
    let req: ThrottleRequest = parse(&body)?;
    let m = st.engine.migrations();
    let cur = m.throttle();
    let new = Throttle {
        max_mib_per_sec: req.max_mib_per_sec.unwrap_or(cur.max_mib_per_sec),
        concurrency: req.concurrency.unwrap_or(cur.concurrency),
        paused: req.paused.unwrap_or(cur.paused),
    };
    m.set_throttle(new)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    tracing::info!(
        max_mib_per_sec = new.max_mib_per_sec,
        concurrency = new.concurrency,
        paused = new.paused,
        "migration throttle changed"
    );
    Ok(Json(m.throttle()).into_response())
}

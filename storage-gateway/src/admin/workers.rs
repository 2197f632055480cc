//! The background workers (healer, scrubber, reaper, migrator): their status, pause and
//! throttle (`/api/v1/workers`).

use super::{AdminState, ApiError};
use ::workers::{Error, WorkerChange};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use control_api::WorkersView;

/// `GET /api/v1/workers`: every worker's status, in start order.
pub(super) async fn list(State(st): State<AdminState>) -> Response {
    Json(WorkersView {
        workers: st.engine.workers().statuses(),
    })
    .into_response()
}

/// `PUT /api/v1/workers/{name}`: pause or resume a worker, or change its throttle.
pub(super) async fn change(
    State(st): State<AdminState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    // Unknown worker before a bad body: the more basic error first.
    let worker = st
        .engine
        .workers()
        .worker(&name)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, Error::NoSuchWorker(name.clone())))?;
    let change: WorkerChange = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("request body is not a valid JSON object of this endpoint: {e}"),
        )
    })?;
    let status = worker.change(change).map_err(|e| {
        let code = match e {
            Error::NoSuchWorker(_) => StatusCode::NOT_FOUND,
            Error::Duplicate(_) | Error::ShutDown(_) => StatusCode::CONFLICT,
            Error::NoThrottle(_) | Error::Throttle { .. } => StatusCode::BAD_REQUEST,
        };
        ApiError::new(code, e)
    })?;
    tracing::info!(
        worker = %name,
        paused = ?change.paused,
        max_mib_per_sec = ?change.max_mib_per_sec,
        concurrency = ?change.concurrency,
        "worker changed"
    );
    Ok(Json(status).into_response())
}

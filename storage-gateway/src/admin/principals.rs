//! S3 principals: their request statistics (`/api/v1/telemetry/principals`) and throttles
//! (`/api/v1/principals/throttles`, `/api/v1/principals/{principal}/throttle`).

use super::{AdminState, ApiError};
use crate::s3::ThrottleError;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use control_api::{ThrottleRequest, ThrottlesView};
use serde_json::json;
use telemetry::stats::principal::{is_valid_name, MAX_NAME_LEN};

/// `GET /api/v1/telemetry/principals`: every principal's counts per window and since start.
pub(super) async fn telemetry(State(st): State<AdminState>) -> Response {
    Json(json!({ "principals": st.engine.telemetry().principals() })).into_response()
}

/// `GET /api/v1/principals/throttles`.
pub(super) async fn list(State(st): State<AdminState>) -> Response {
    Json(ThrottlesView {
        throttles: st.throttles.list(),
    })
    .into_response()
}

/// The principal named in the path, or a 400 saying what a name may be.
fn checked(principal: &str) -> Result<(), ApiError> {
    if is_valid_name(principal) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("invalid principal {principal:?}: 1 to {MAX_NAME_LEN} characters of A-Z, a-z, 0-9 and . _ + = @ -"),
        ))
    }
}

/// `PUT /api/v1/principals/{principal}/throttle`: sets (or replaces) the throttle.
pub(super) async fn put(
    State(st): State<AdminState>,
    Path(principal): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    checked(&principal)?;
    let keys = "keys: requests_per_s, burst, reason, ttl_s";
    let value: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("request body is not a JSON throttle object ({keys}): {e}"),
        )
    })?;
    // Through the path so that a value of the wrong type names its field.
    let req: ThrottleRequest = serde_path_to_error::deserialize(value).map_err(|e| {
        let at = match e.path().to_string().as_str() {
            "." => String::new(),
            field => format!("throttle.{field}: "),
        };
        ApiError::new(StatusCode::BAD_REQUEST, format!("{at}{} ({keys})", e.inner()))
    })?;
    let view = st.throttles.set(&principal, &req).map_err(|e| match e {
        ThrottleError::Invalid(m) => ApiError::new(StatusCode::BAD_REQUEST, m),
        ThrottleError::Full => ApiError::new(StatusCode::CONFLICT, e),
    })?;
    tracing::warn!(
        %principal,
        requests_per_s = view.requests_per_s,
        burst = view.burst,
        until_ms = ?view.until_ms,
        reason = %view.reason,
        "principal throttled"
    );
    Ok(Json(view).into_response())
}

/// `DELETE /api/v1/principals/{principal}/throttle`: 204, or 404 when none is in force.
pub(super) async fn delete(State(st): State<AdminState>, Path(principal): Path<String>) -> Result<Response, ApiError> {
    checked(&principal)?;
    if st.throttles.remove(&principal) {
        tracing::warn!(%principal, "principal throttle lifted");
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("principal {principal} is not throttled"),
        ))
    }
}

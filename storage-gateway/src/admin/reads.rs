//! How GETs read (`/api/v1/reads`): the shard strategy and hedging, changed at run time by
//! operators and the node agent.

use super::{AdminState, ApiError};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use control_api::ReadSettingsRequest;

/// `GET /api/v1/reads`: `{"strategy": "latency" | "data-first", "hedging": bool}`.
pub(super) async fn get_reads(State(st): State<AdminState>) -> Response {
    Json(st.engine.read_settings()).into_response()
}

/// `PUT /api/v1/reads`: any subset of the fields; answers the settings now in force.
pub(super) async fn put_reads(State(st): State<AdminState>, body: Bytes) -> Result<Response, ApiError> {
    let fields = "fields: strategy (latency | data-first), hedging (bool)";
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("request body is not a JSON object of read settings ({fields}): {e}"),
        )
    })?;
    // Through the path so that a bad value names its field.
    let req: ReadSettingsRequest =
        serde_path_to_error::deserialize(serde_json::Value::Object(object)).map_err(|e| {
            let at = match e.path().to_string().as_str() {
                "." => String::new(),
                field => format!("{field}: "),
            };
            ApiError::new(StatusCode::BAD_REQUEST, format!("{at}{} ({fields})", e.inner()))
        })?;
    let before = st.engine.read_settings();
    let now = req.applied_to(before);
    st.engine.set_read_settings(now);
    if now != before {
        tracing::info!(
            strategy = %now.strategy,
            hedging = now.hedging,
            was_strategy = %before.strategy,
            was_hedging = before.hedging,
            "read settings changed"
        );
    }
    Ok(Json(st.engine.read_settings()).into_response())
}

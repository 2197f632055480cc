//! The extender's HTTP face: `POST {prefix}/filter` and `POST {prefix}/prioritize`, as
//! kube-scheduler calls them (`urlPrefix` + verb).
//!
//! kube-scheduler cannot send a bearer token to an extender (its TLS settings carry client
//! certificates only), so these routes are unauthenticated: they change nothing and reveal only
//! scores of the nodes the caller names. Serve them on a listener only the cluster reaches.
//! Bodies are bounded (a `NodeList` of 5000 nodes is about 15 MiB); a body that is not an
//! `ExtenderArgs` answers 400 with a message.

use super::extender::{filter, prioritize, ExtenderArgs, Knowledge};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use control_api::ErrorBody;
use std::sync::Arc;

/// Where the verbs live (`urlPrefix` in the scheduler's extender configuration).
pub const PREFIX: &str = "/api/v1/scheduler";
/// Largest request body accepted.
pub const MAX_BODY: usize = 32 << 20;

type Known = Arc<dyn Knowledge + Send + Sync>;

/// The two verbs over `known`.
pub fn router(known: Known) -> Router {
    Router::new()
        .route(&format!("{PREFIX}/filter"), post(filter_verb))
        .route(&format!("{PREFIX}/prioritize"), post(prioritize_verb))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(known)
}

/// The request, or the 400 that refuses it.
fn args(body: &[u8]) -> Result<ExtenderArgs, String> {
    serde_json::from_slice(body).map_err(|e| format!("body is not an ExtenderArgs: {e}"))
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(ErrorBody::new(message))).into_response()
}

async fn filter_verb(State(known): State<Known>, body: Bytes) -> Response {
    match args(&body) {
        Ok(a) => Json(filter(&a, known.as_ref())).into_response(),
        Err(m) => bad_request(m),
    }
}

async fn prioritize_verb(State(known): State<Known>, body: Bytes) -> Response {
    match args(&body) {
        Ok(a) => Json(prioritize(&a, known.as_ref())).into_response(),
        Err(m) => bad_request(m),
    }
}

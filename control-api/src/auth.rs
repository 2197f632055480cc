//! The admin bearer token, checked the same way on every admin route (gateway, northbound,
//! trust, anomalies): an axum middleware, behind the `server` feature so that clients of the
//! API build without axum.

use crate::ErrorBody;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Answers 401 with a JSON message unless the request carries `Authorization: Bearer
/// <token>`; the comparison takes the same time whatever the given token holds. Layer it with
/// `axum::middleware::from_fn_with_state(token, require_token)`.
pub async fn require_token(State(token): State<Arc<str>>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let refuse = |message: &str| (StatusCode::UNAUTHORIZED, Json(ErrorBody::new(message))).into_response();
    match given {
        Some(t) if bool::from(t.as_bytes().ct_eq(token.as_bytes())) => next.run(req).await,
        Some(_) => refuse("wrong admin token"),
        None => refuse("missing `Authorization: Bearer <token>` (the admin token: MLSYSOPS_ADMIN_TOKEN)"),
    }
}

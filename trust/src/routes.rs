//! The REST routes of trust and identities on the admin port, behind the admin token.

use crate::evidence::Evidence;
use crate::identity::{Identities, IdentityError, PublicKey};
use crate::model::Reputation;
use crate::subject::{Subject, SubjectKind};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use control_api::routes;
use control_api::trust::{
    EnrolRequest, EnrolledBy, EvidenceKind, FeedbackOutcome, FeedbackRequest, IdentitiesView, RevokeRequest,
    TrustConfig, TrustSubjectsView,
};
use control_api::ErrorBody;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// Largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;
/// Largest operator feedback weight (one failed call weighs 1).
pub const MAX_FEEDBACK_WEIGHT: f64 = 100.0;

#[derive(Clone)]
struct Api {
    reputation: Reputation,
    identities: Identities,
    token: Arc<str>,
}

/// The routes of `/api/v1/trust/*` and `/api/v1/identities*`, each answering 401 without the
/// admin token (`Authorization: Bearer <token>`).
pub fn router(reputation: Reputation, identities: Identities, token: Arc<str>) -> Router {
    let api = Api {
        reputation,
        identities,
        token,
    };
    Router::new()
        .route(routes::TRUST_SUBJECTS, get(subjects))
        .route(routes::TRUST_SUBJECT, get(subject))
        .route(routes::TRUST_FEEDBACK, post(feedback))
        .route(routes::TRUST_CONFIG, get(config).put(set_config))
        .route(routes::IDENTITIES, get(list_identities).post(enrol))
        .route(routes::IDENTITY, get(identity))
        .route(routes::IDENTITY_REVOKE, post(revoke))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(
            api.token.clone(),
            control_api::auth::require_token,
        ))
        .with_state(api)
}

fn fail(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(ErrorBody::new(message))).into_response()
}

/// Refused input: its status and message, answered as [`ErrorBody`].
struct Refused(StatusCode, String);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        fail(self.0, self.1)
    }
}

/// A JSON body, or a JSON error naming what is wrong with it.
fn parse<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>, what: &str) -> Result<T, Refused> {
    let body = body.map_err(|e| Refused(e.status(), format!("{what}: {}", e.body_text())))?;
    serde_json::from_slice(&body).map_err(|e| Refused(StatusCode::BAD_REQUEST, format!("{what}: {e}")))
}

fn parse_subject(id: &str) -> Result<Subject, Refused> {
    id.parse::<Subject>()
        .map_err(|e| Refused(StatusCode::BAD_REQUEST, e.to_string()))
}

fn identity_error(e: IdentityError) -> Response {
    let status = match &e {
        IdentityError::BadPublicKey(_) | IdentityError::Id(_) => StatusCode::BAD_REQUEST,
        IdentityError::KeyMismatch { .. } | IdentityError::Revoked(_) => StatusCode::CONFLICT,
        IdentityError::NotFound(_) => StatusCode::NOT_FOUND,
        IdentityError::Full(_) => StatusCode::INSUFFICIENT_STORAGE,
        _ => {
            tracing::error!(error = %e, "identity registry");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    fail(status, e)
}

async fn subjects(State(api): State<Api>, RawQuery(query): RawQuery) -> Response {
    let mut kind = None;
    for pair in query.as_deref().unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("kind", k)) => match k.parse::<SubjectKind>() {
                Ok(k) => kind = Some(k),
                Err(e) => return fail(StatusCode::BAD_REQUEST, format!("kind: {e}")),
            },
            _ => {
                let name: String = pair.chars().take(32).collect();
                return fail(
                    StatusCode::BAD_REQUEST,
                    format!("unknown query parameter {name:?} (known: kind)"),
                );
            }
        }
    }
    let subjects = api
        .reputation
        .subjects()
        .into_iter()
        .filter(|v| kind.is_none_or(|k| v.subject.starts_with(&format!("{}:", k.name()))))
        .collect();
    Json(TrustSubjectsView { subjects }).into_response()
}

async fn subject(State(api): State<Api>, Path(id): Path<String>) -> Response {
    let s = match parse_subject(&id) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    match api.reputation.score(&s) {
        Some(v) => Json(v).into_response(),
        None => fail(StatusCode::NOT_FOUND, format!("no trust subject {s}")),
    }
}

async fn feedback(State(api): State<Api>, Path(id): Path<String>, body: Result<Bytes, BytesRejection>) -> Response {
    let s = match parse_subject(&id) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let req: FeedbackRequest = match parse(body, "feedback") {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    if !(req.weight.is_finite() && req.weight > 0.0 && req.weight <= MAX_FEEDBACK_WEIGHT) {
        return fail(
            StatusCode::BAD_REQUEST,
            format!("weight: {} is not in 0 < weight <= {MAX_FEEDBACK_WEIGHT}", req.weight),
        );
    }
    let kind = match req.outcome {
        FeedbackOutcome::Success => EvidenceKind::OperatorSuccess,
        FeedbackOutcome::Failure => EvidenceKind::OperatorFailure,
    };
    let reason = format!("operator: {}", req.reason);
    if let Err(e) = api
        .reputation
        .record(Evidence::new(s.clone(), kind, req.weight, crate::now_ms(), reason))
    {
        return fail(StatusCode::BAD_REQUEST, e);
    }
    match api.reputation.score(&s) {
        Some(v) => Json(v).into_response(),
        None => fail(
            StatusCode::NOT_FOUND,
            format!("{s} is not scored (not in the trust config's node_ids); the feedback was kept"),
        ),
    }
}

async fn config(State(api): State<Api>) -> Response {
    Json(api.reputation.config()).into_response()
}

async fn set_config(State(api): State<Api>, body: Result<Bytes, BytesRejection>) -> Response {
    let c: TrustConfig = match parse(body, "trust config") {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    match api.reputation.set_config(c) {
        Ok(()) => Json(api.reputation.config()).into_response(),
        Err(e) => fail(StatusCode::BAD_REQUEST, e),
    }
}

async fn list_identities(State(api): State<Api>) -> Response {
    Json(IdentitiesView {
        identities: api.identities.list(),
    })
    .into_response()
}

async fn enrol(State(api): State<Api>, body: Result<Bytes, BytesRejection>) -> Response {
    let req: EnrolRequest = match parse(body, "enrolment") {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    let key = match PublicKey::from_base64(&req.public_key) {
        Ok(k) => k,
        Err(e) => return fail(StatusCode::BAD_REQUEST, format!("public_key: {e}")),
    };
    match api
        .identities
        .enrol(&req.id, req.kind, &key, EnrolledBy::Operator, req.replace)
    {
        Ok(v) => {
            api.reputation.sync_identities(&api.identities);
            Json(v).into_response()
        }
        Err(e) => identity_error(e),
    }
}

async fn identity(State(api): State<Api>, Path(id): Path<String>) -> Response {
    match api.identities.get(&id) {
        Some(v) => Json(v).into_response(),
        None => identity_error(IdentityError::NotFound(id.chars().take(64).collect())),
    }
}

async fn revoke(State(api): State<Api>, Path(id): Path<String>, body: Result<Bytes, BytesRejection>) -> Response {
    let req: RevokeRequest = match parse(body, "revocation") {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    match api.identities.revoke(&id, &req.reason) {
        Ok(v) => {
            api.reputation.sync_identities(&api.identities);
            Json(v).into_response()
        }
        Err(e) => identity_error(e),
    }
}

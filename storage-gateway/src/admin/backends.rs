//! The backends (`/api/v1/backends`) and the faults injected into them at run time
//! (`/api/v1/backends/{id}/faults`, only when the gateway was started allowing it).

use super::{AdminState, ApiError};
use crate::backend::{Backend, FaultSpec, FaultyStore};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use control_api::{BackendInfo, BackendsView, Faults};

/// Said when faults are asked for but the gateway was not started allowing it.
const NOT_ALLOWED: &str = "fault injection is off: start the gateway with --allow-fault-injection \
     (MLSYSOPS_ALLOW_FAULT_INJECTION=true, allow_fault_injection = true in the config file) or \
     --profile multicloud-sim";

impl From<FaultSpec> for Faults {
    fn from(s: FaultSpec) -> Self {
        Self {
            latency_ms: s.latency_ms,
            jitter_ms: s.jitter_ms,
            bandwidth_mib_s: s.bandwidth_mib_s,
            error_rate: s.error_rate,
            outages: s.outages,
            bitflip_rate: s.bitflip_rate,
            seed: s.seed,
        }
    }
}

impl From<Faults> for FaultSpec {
    fn from(f: Faults) -> Self {
        Self {
            latency_ms: f.latency_ms,
            jitter_ms: f.jitter_ms,
            bandwidth_mib_s: f.bandwidth_mib_s,
            error_rate: f.error_rate,
            outages: f.outages,
            bitflip_rate: f.bitflip_rate,
            seed: f.seed,
        }
    }
}

fn info(b: &Backend) -> BackendInfo {
    let h = b.health().status();
    BackendInfo {
        id: b.id().to_owned(),
        kind: b.kind().to_owned(),
        local: b.is_local(),
        labels: b.labels().clone(),
        suspect: h.suspect,
        consecutive_failures: h.consecutive_failures,
        last_error: h.last_error,
        faults: b.faults().map(|f| f.spec().into()),
    }
}

/// `GET /api/v1/backends`: every backend with its labels, health and injected faults.
pub(super) async fn list(State(st): State<AdminState>) -> Response {
    Json(BackendsView {
        fault_injection: st.allow_fault_injection,
        backends: st.engine.backends().iter().map(info).collect(),
    })
    .into_response()
}

/// The fault injector of backend `id`: 403 when run-time injection is off, 404 for an unknown
/// backend.
fn injector<'a>(st: &'a AdminState, id: &str) -> Result<&'a FaultyStore, ApiError> {
    if !st.allow_fault_injection {
        return Err(ApiError::new(StatusCode::FORBIDDEN, NOT_ALLOWED));
    }
    let backend = st
        .engine
        .backends()
        .iter()
        .find(|b| b.id() == id)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no such backend: {id}")))?;
    // Every backend is wrapped when injection is allowed; a missing injector is a wiring bug.
    backend.faults().ok_or_else(|| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("backend {id} has no fault injector"),
        )
    })
}

/// `GET /api/v1/backends/{id}/faults`: the spec in force.
pub(super) async fn get_faults(State(st): State<AdminState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let spec = injector(&st, &id)?.spec();
    Ok(Json(Faults::from(spec)).into_response())
}

/// `PUT /api/v1/backends/{id}/faults`: replaces the spec; answers the one now in force.
pub(super) async fn put_faults(
    State(st): State<AdminState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let store = injector(&st, &id)?;
    let keys = "keys: latency_ms, jitter_ms, bandwidth_mib_s, error_rate, bitflip_rate, outages, seed";
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("request body is not a JSON faults object ({keys}): {e}"),
        )
    })?;
    // Through the path so that a value of the wrong type names its field.
    let faults: Faults = serde_path_to_error::deserialize(serde_json::Value::Object(object)).map_err(|e| {
        let at = match e.path().to_string().as_str() {
            "." => String::new(),
            field => format!("faults.{field}: "),
        };
        ApiError::new(StatusCode::BAD_REQUEST, format!("{at}{}", e.inner()))
    })?;
    set(store, &id, faults.into())
}

/// `DELETE /api/v1/backends/{id}/faults`: injects nothing from now on.
pub(super) async fn clear_faults(State(st): State<AdminState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    set(injector(&st, &id)?, &id, FaultSpec::default())
}

fn set(store: &FaultyStore, id: &str, spec: FaultSpec) -> Result<Response, ApiError> {
    store
        .set_spec(spec.clone())
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("backend {id}: {e}")))?;
    tracing::warn!(backend = %id, faults = ?spec, "injected faults changed");
    Ok(Json(Faults::from(store.spec())).into_response())
}

//! The northbound API (JSON over HTTP, bearer-token authenticated): MLSysOps apps, bucket
//! intents, the agents and their mode, the decision log. Served on the gateway's admin port by
//! `mlsysops serve`, or on its own port by a standalone continuum agent.

use crate::decisions::DecisionLog;
use crate::descriptor;
use crate::error::Error;
use crate::intents::{Intents, StoredApp, StoredIntent};
use crate::tiers::continuum::Submission;
use crate::tiers::Shared;
use crate::world::now_ms;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use control_api::{routes, AgentModeRequest, AgentsView, BucketIntent, DecisionsPage, ErrorBody};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Largest descriptor or intent body accepted.
const MAX_BODY: usize = 1 << 20;
/// Shortest token the gateway accepts (storage_policy.rs).
const MIN_TOKEN_LEN: usize = 8;

/// What the handlers share.
#[derive(Clone)]
pub struct Northbound {
    /// Apps and intents.
    pub intents: Intents,
    /// The decision log.
    pub log: DecisionLog,
    /// Agents' status and mode.
    pub shared: Shared,
    /// The continuum loop.
    pub submit: mpsc::Sender<Submission>,
    /// The bearer token.
    pub token: Arc<str>,
}

/// The routes, each behind the token.
pub fn router(state: Northbound) -> Router {
    Router::new()
        .route(routes::APPS, get(list_apps).post(deploy_app))
        .route(routes::APP, get(get_app).delete(remove_app))
        .route(routes::BUCKET_INTENT, get(get_intent).put(put_intent))
        .route(routes::AGENTS, get(agents))
        .route(routes::AGENTS_MODE, axum::routing::put(set_mode))
        .route(routes::DECISIONS, get(decisions))
        .route(routes::DECISION, get(decision))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(
            state.token.clone(),
            control_api::auth::require_token,
        ))
        .with_state(state)
}

fn fail(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(ErrorBody::new(message))).into_response()
}

/// An error as an answer.
struct ApiError(Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        Self(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            Error::Invalid(_) => StatusCode::BAD_REQUEST,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %self.0, "northbound API");
        }
        fail(status, &self.0)
    }
}

type Answer<T> = Result<T, ApiError>;

/// A token for buckets whose intent gives none: the agents hold it, nobody else needs it.
fn generated_token() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

fn check_intent(field: &str, i: &BucketIntent) -> Result<(), Error> {
    let bad = |k: &str, why: &str| Err(Error::Invalid(format!("{field}{k}: {why}")));
    if i.max_latency == Some(0) {
        return bad("max_latency", "must be at least 1 (ms)");
    }
    if i.min_download_speed.is_some_and(|s| !s.is_finite() || s <= 0.0) {
        return bad("min_download_speed", "must be a positive number of MiB/s");
    }
    if i.max_overhead.is_some_and(|o| !o.is_finite() || o < 1.0) {
        return bad("max_overhead", "must be at least 1.0 ((k+m)/k)");
    }
    if i.max_cost_per_gib_month.is_some_and(|c| !c.is_finite() || c < 0.0) {
        return bad("max_cost_per_gib_month", "must be a number >= 0");
    }
    if i.min_trust.is_some_and(|t| !(0.0..=1.0).contains(&t)) {
        return bad("min_trust", "must be within 0..=1");
    }
    if let Some(c) = i
        .clusters
        .iter()
        .find(|c| c.trim().is_empty() || !c.is_ascii() || c.chars().any(char::is_control))
    {
        return bad(
            "clusters",
            &format!("{c:?} is not a cluster agent id (printable ASCII)"),
        );
    }
    if i.policy_update_token.as_ref().is_some_and(|t| t.len() < MIN_TOKEN_LEN) {
        return bad(
            "policy_update_token",
            &format!("must be at least {MIN_TOKEN_LEN} characters"),
        );
    }
    Ok(())
}

impl Northbound {
    async fn submit(
        &self,
        bucket: &str,
        mut intent: BucketIntent,
        source: String,
        component: Option<String>,
    ) -> Result<StoredIntent, Error> {
        if intent.policy_update_token.is_none() {
            // Keep the token the agents already hold, so a restated intent does not rotate it.
            intent.policy_update_token = self
                .intents
                .get(bucket)?
                .and_then(|i| i.intent.policy_update_token)
                .or_else(|| Some(generated_token()));
        }
        // A bucket stays with the cluster that has it: its data lives there.
        let cluster = self.intents.get(bucket)?.and_then(|i| i.cluster);
        let stored = StoredIntent {
            bucket: bucket.to_owned(),
            intent,
            source,
            updated_ms: now_ms(),
            state: "pending".into(),
            error: None,
            plan_uid: uuid::Uuid::now_v7(),
            cluster,
            component,
        };
        self.intents.put(&stored)?;
        self.submit
            .send(Submission::Intent(Box::new(stored.clone())))
            .await
            .map_err(|_| Error::Link {
                what: "handing an intent to the continuum agent".into(),
                message: "the continuum agent is not running".into(),
            })?;
        Ok(stored)
    }
}

async fn deploy_app(State(st): State<Northbound>, headers: HeaderMap, body: Bytes) -> Answer<Response> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let app = descriptor::parse(&body, ct)?;
    let descriptor_json: serde_json::Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&body).into_owned()));
    let (existed, view) = st.deploy(app, descriptor_json).await?;
    let status = if existed { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(view)).into_response())
}

impl Northbound {
    /// Deploys `app` (read from `descriptor`, kept as given): its buckets' intents go to the
    /// agents. Answers whether it existed before, and its view.
    pub async fn deploy(
        &self,
        app: descriptor::App,
        descriptor: serde_json::Value,
    ) -> Result<(bool, control_api::AppView), Error> {
        let st = self;
        for (i, b) in app.buckets.iter().enumerate() {
            check_intent(&format!("bucket {} ({i}): ", b.bucket), &b.intent)?;
            if let Some(other) = st.intents.get(&b.bucket)? {
                let ours = format!("app:{}", app.name);
                if other.source.starts_with("app:") && other.source != ours {
                    return Err(Error::Invalid(format!(
                        "bucket {} is already managed by {}; remove that app first",
                        b.bucket, other.source
                    )));
                }
            }
        }
        let existed = st.intents.has_app(&app.name)?;
        let stored = StoredApp {
            name: app.name.clone(),
            deployed_ms: now_ms(),
            components: app.components.clone(),
            buckets: app.buckets.iter().map(|b| b.bucket.clone()).collect(),
            descriptor,
        };
        st.intents.put_app(&stored)?;
        for b in app.buckets {
            st.submit(&b.bucket, b.intent, format!("app:{}", app.name), Some(b.component))
                .await?;
        }
        tracing::info!(app = %app.name, buckets = ?stored.buckets, "northbound: app deployed");
        Ok((existed, st.intents.app_view(&stored)?))
    }

    /// Removes app `name`: the agents stop managing its buckets; the buckets and their data
    /// stay.
    pub async fn remove(&self, name: &str) -> Result<control_api::AppView, Error> {
        let st = self;
        let app = st.intents.app(name)?;
        let view = st.intents.app_view(&app)?;
        for b in &app.buckets {
            if st.intents.get(b)?.is_some_and(|i| i.source == format!("app:{name}")) {
                st.intents.remove(b)?;
                let _ = st.submit.send(Submission::Removed(b.clone())).await;
            }
        }
        st.intents.remove_app(name)?;
        tracing::info!(app = %name, "northbound: app removed; its buckets and their data stay");
        Ok(view)
    }
}

async fn list_apps(State(st): State<Northbound>) -> Answer<Response> {
    let apps = st
        .intents
        .apps()?
        .iter()
        .map(|a| st.intents.app_view(a))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(serde_json::json!({ "apps": apps })).into_response())
}

async fn get_app(State(st): State<Northbound>, Path(name): Path<String>) -> Answer<Response> {
    let app = st.intents.app(&name)?;
    Ok(Json(st.intents.app_view(&app)?).into_response())
}

async fn remove_app(State(st): State<Northbound>, Path(name): Path<String>) -> Answer<Response> {
    Ok(Json(st.remove(&name).await?).into_response())
}

async fn get_intent(State(st): State<Northbound>, Path(bucket): Path<String>) -> Answer<Response> {
    let i = st
        .intents
        .get(&bucket)?
        .ok_or_else(|| Error::NotFound(format!("bucket {bucket} has no intent")))?;
    Ok(Json(i.view()).into_response())
}

async fn put_intent(State(st): State<Northbound>, Path(bucket): Path<String>, body: Bytes) -> Answer<Response> {
    let mut de = serde_json::Deserializer::from_slice(&body);
    let intent: BucketIntent = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." {
            String::new()
        } else {
            format!("{path}: ")
        };
        Error::Invalid(format!("intent of bucket {bucket}: {at}{}", e.into_inner()))
    })?;
    check_intent("", &intent)?;
    let stored = st.submit(&bucket, intent, "operator".into(), None).await?;
    Ok(Json(stored.view()).into_response())
}

async fn agents(State(st): State<Northbound>) -> Json<AgentsView> {
    Json(AgentsView {
        mode: st.shared.mode(),
        dry_run: st.shared.dry_run(),
        agents: st.shared.agents(),
    })
}

async fn set_mode(State(st): State<Northbound>, body: Bytes) -> Answer<Json<AgentsView>> {
    let req: AgentModeRequest = serde_json::from_slice(&body).map_err(|e| {
        Error::Invalid(format!(
            "agents mode: {e} (expected {{\"mode\": \"heuristic\" | \"ml\"}})"
        ))
    })?;
    st.shared.set_mode(req.mode);
    tracing::info!(mode = ?req.mode, "northbound: agents' mode changed");
    Ok(agents(State(st)).await)
}

async fn decisions(State(st): State<Northbound>, RawQuery(q): RawQuery) -> Answer<Json<DecisionsPage>> {
    let (mut bucket, mut since, mut limit) = (None, None, 100usize);
    for (k, v) in url::form_urlencoded::parse(q.unwrap_or_default().as_bytes()) {
        let number = |what: &str| Error::Invalid(format!("decisions: {what}={v:?} is not a number"));
        match k.as_ref() {
            "bucket" => bucket = Some(v.into_owned()),
            "since" => since = Some(v.parse::<i64>().map_err(|_| number("since"))?),
            "limit" => limit = v.parse::<usize>().map_err(|_| number("limit"))?,
            other => {
                return Err(
                    Error::Invalid(format!("decisions: unknown parameter {other:?} (bucket, since, limit)")).into(),
                )
            }
        }
    }
    let decisions = st.log.list(bucket.as_deref(), since, limit.clamp(1, 1000))?;
    Ok(Json(DecisionsPage { decisions }))
}

async fn decision(State(st): State<Northbound>, Path(id): Path<String>) -> Answer<Response> {
    Ok(Json(st.log.get(&id)?).into_response())
}

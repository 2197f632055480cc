//! A typed async client of the admin API: one method per endpoint, and [`Client::send`] for
//! requests the types cannot express (tests posting malformed bodies).

use crate::agents::{
    AgentMode, AgentModeRequest, AgentsView, AppView, AppsView, BucketIntent, Decision, DecisionsPage, IntentView,
};
use crate::backends::{BackendsView, Faults};
use crate::error::ErrorBody;
use crate::health::{HealPass, RedundancyView, ScrubPass};
use crate::migration::{MigrationProgress, MigrationThrottle, MigrationThrottleRequest};
use crate::principals::{ThrottleRequest, ThrottleView, ThrottlesView};
use crate::reads::{ReadSettings, ReadSettingsRequest};
use crate::routes;
use crate::storage_policy::{StoragePolicyChanged, StoragePolicyHistory, StoragePolicyRequest, StoragePolicyView};
use crate::token::TokenFileError;
use crate::usage::BucketUsage;
use crate::workers::{WorkerChange, WorkerStatus, WorkersView};
use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a whole request may take (a heal or scrub pass on demand runs inside it).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with a non-2xx status; `message` is its `{"error"}` (or body text).
    #[error("{status}: {message}")]
    Api {
        /// The HTTP status.
        status: StatusCode,
        /// What the server said.
        message: String,
    },
    /// The request did not reach the server, or its answer did not arrive whole.
    #[error("{what}")]
    Transport {
        /// What was being done, with the URL.
        what: String,
        /// The HTTP client's error (without the URL, which `what` has).
        #[source]
        source: reqwest::Error,
    },
    /// A 2xx answer that is not the JSON the endpoint promises.
    #[error("the answer of {url} is not the JSON of this endpoint")]
    Decode {
        /// The URL asked.
        url: Url,
        /// What does not match.
        #[source]
        source: serde_json::Error,
    },
    /// The request body could not be encoded as JSON.
    #[error("encoding the request to {url}")]
    Encode {
        /// The URL to be asked.
        url: Url,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The base URL cannot take API paths.
    #[error("admin URL {0:?}: must be an http:// or https:// URL")]
    BaseUrl(String),
    /// A raw request's path cannot be put under the base URL.
    #[error("{0:?} is not a path under the admin URL")]
    Path(String),
    /// The HTTP client could not be set up.
    #[error("setting up the HTTP client")]
    Setup(#[source] reqwest::Error),
    /// The admin token file could not be read.
    #[error(transparent)]
    TokenFile(#[from] TokenFileError),
}

impl ClientError {
    /// The error of a non-2xx answer with this body.
    #[must_use]
    pub fn from_answer(status: StatusCode, body: &[u8]) -> Self {
        ClientError::Api {
            status,
            message: ErrorBody::message_of(body),
        }
    }

    /// The HTTP status, when the server answered.
    #[must_use]
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The admin API of one gateway, with its bearer token.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    // Never printed: this type's Debug leaves it out and reqwest marks the header sensitive.
    token: Option<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .field("token", &self.token.as_ref().map(|_| "<hidden>"))
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client of the admin API at `base` (`http://127.0.0.1:9001`, or under a prefix:
    /// `https://proxy/admin/`), sending `token` as the bearer token when given.
    pub fn new(base: Url, token: Option<String>) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(ClientError::Setup)?;
        Self::with_http(http, base, token)
    }

    /// A client of the admin API listening on `addr` over plain HTTP (a gateway on this host, a
    /// test server).
    pub fn at(addr: std::net::SocketAddr, token: Option<String>) -> Result<Self, ClientError> {
        let text = format!("http://{addr}");
        let base = Url::parse(&text).map_err(|_| ClientError::BaseUrl(text))?;
        Self::new(base, token)
    }

    /// Like [`Client::new`] with a configured HTTP client (timeouts, proxies, TLS roots).
    pub fn with_http(http: reqwest::Client, mut base: Url, token: Option<String>) -> Result<Self, ClientError> {
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") || base.host().is_none() {
            return Err(ClientError::BaseUrl(base.into()));
        }
        // A directory, so that raw paths join under its prefix rather than replace its last part.
        if !base.path().ends_with('/') {
            let dir = format!("{}/", base.path());
            base.set_path(&dir);
        }
        Ok(Self { http, base, token })
    }

    /// The base URL.
    #[must_use]
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// Whether a bearer token is sent.
    #[must_use]
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// The same gateway with another token (or none): for checking refusals.
    #[must_use]
    pub fn with_token(&self, token: Option<String>) -> Self {
        Self { token, ..self.clone() }
    }

    /// Redundancy per bucket, the repair queue, healer and scrubber counters, backend health.
    pub async fn redundancy(&self) -> Result<RedundancyView, ClientError> {
        self.call(Method::GET, routes::REDUNDANCY, None, None::<&()>).await
    }

    /// Runs one heal pass now.
    pub async fn heal(&self) -> Result<HealPass, ClientError> {
        self.call(Method::POST, routes::HEAL, None, None::<&()>).await
    }

    /// Runs one scrub pass now.
    pub async fn scrub(&self) -> Result<ScrubPass, ClientError> {
        self.call(Method::POST, routes::SCRUB, None, None::<&()>).await
    }

    /// Sliding-window statistics of every backend (`{"backends": [...]}`; the shape is the
    /// `telemetry` crate's, see docs/admin-api.md).
    pub async fn backend_telemetry(&self) -> Result<serde_json::Value, ClientError> {
        self.call(Method::GET, routes::BACKEND_TELEMETRY, None, None::<&()>)
            .await
    }

    /// Request counts of every S3 principal (claimed access key id), per window and since start
    /// (`{"principals": [...]}`; the shape is the `telemetry` crate's, see docs/admin-api.md).
    pub async fn principal_telemetry(&self) -> Result<serde_json::Value, ClientError> {
        self.call(Method::GET, routes::PRINCIPAL_TELEMETRY, None, None::<&()>)
            .await
    }

    /// Every principal throttle in force.
    pub async fn principal_throttles(&self) -> Result<ThrottlesView, ClientError> {
        self.call(Method::GET, routes::PRINCIPAL_THROTTLES, None, None::<&()>)
            .await
    }

    /// Throttles `principal`'s S3 requests (replacing any throttle it had); returns the one now
    /// in force.
    pub async fn throttle_principal(
        &self,
        principal: &str,
        throttle: &ThrottleRequest,
    ) -> Result<ThrottleView, ClientError> {
        self.call(Method::PUT, routes::PRINCIPAL_THROTTLE, Some(principal), Some(throttle))
            .await
    }

    /// Lifts `principal`'s throttle (an error with status 404 when it had none).
    pub async fn unthrottle_principal(&self, principal: &str) -> Result<(), ClientError> {
        let url = self.url(routes::PRINCIPAL_THROTTLE, Some(principal));
        let (status, bytes) = self.exchange(Method::DELETE, url, None).await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(ClientError::from_answer(status, &bytes))
        }
    }

    /// Sliding-window statistics of one bucket.
    pub async fn bucket_telemetry(&self, bucket: &str) -> Result<serde_json::Value, ClientError> {
        self.call(Method::GET, routes::BUCKET_TELEMETRY, Some(bucket), None::<&()>)
            .await
    }

    /// The Prometheus text of every instrument.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let url = self.url(routes::METRICS, None);
        let (status, body) = self.exchange(Method::GET, url, None).await?;
        if !status.is_success() {
            return Err(ClientError::from_answer(status, &body));
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// A bucket's storage policy.
    pub async fn storage_policy(&self, bucket: &str) -> Result<StoragePolicyView, ClientError> {
        self.call(Method::GET, routes::STORAGE_POLICY, Some(bucket), None::<&()>)
            .await
    }

    /// Changes a bucket's storage policy (fields left out keep their value).
    pub async fn set_storage_policy(
        &self,
        bucket: &str,
        change: &StoragePolicyRequest,
    ) -> Result<StoragePolicyChanged, ClientError> {
        self.call(Method::PUT, routes::STORAGE_POLICY, Some(bucket), Some(change))
            .await
    }

    /// A bucket's storage policy changes, oldest first.
    pub async fn storage_policy_history(&self, bucket: &str) -> Result<StoragePolicyHistory, ClientError> {
        self.call(Method::GET, routes::STORAGE_POLICY_HISTORY, Some(bucket), None::<&()>)
            .await
    }

    /// The progress of a bucket's migration to its current storage policy.
    pub async fn migration(&self, bucket: &str) -> Result<MigrationProgress, ClientError> {
        self.call(Method::GET, routes::MIGRATION, Some(bucket), None::<&()>)
            .await
    }

    /// The objects and logical bytes of `bucket`, counted now.
    pub async fn bucket_usage(&self, bucket: &str) -> Result<BucketUsage, ClientError> {
        self.call(Method::GET, routes::BUCKET_USAGE, Some(bucket), None::<&()>)
            .await
    }

    /// The migrator's throttle.
    pub async fn migration_throttle(&self) -> Result<MigrationThrottle, ClientError> {
        self.call(Method::GET, routes::MIGRATION_THROTTLE, None, None::<&()>)
            .await
    }

    /// Every background worker's status, in start order.
    pub async fn workers(&self) -> Result<WorkersView, ClientError> {
        self.call(Method::GET, routes::WORKERS, None, None::<&()>).await
    }

    /// Pauses or resumes the worker `name`, or changes its throttle; returns its status now.
    pub async fn change_worker(&self, name: &str, change: &WorkerChange) -> Result<WorkerStatus, ClientError> {
        self.call(Method::PUT, routes::WORKER, Some(name), Some(change)).await
    }

    /// Changes the migrator's throttle (fields left out keep their value); returns it as it is now.
    pub async fn set_migration_throttle(
        &self,
        change: &MigrationThrottleRequest,
    ) -> Result<MigrationThrottle, ClientError> {
        self.call(Method::PUT, routes::MIGRATION_THROTTLE, None, Some(change))
            .await
    }

    /// How GETs read now (shard strategy, hedging).
    pub async fn read_settings(&self) -> Result<ReadSettings, ClientError> {
        self.call(Method::GET, routes::READS, None, None::<&()>).await
    }

    /// Changes how GETs read (fields left out keep their value); returns the settings now.
    pub async fn set_read_settings(&self, change: &ReadSettingsRequest) -> Result<ReadSettings, ClientError> {
        self.call(Method::PUT, routes::READS, None, Some(change)).await
    }

    /// Deploys an MLSysOps application descriptor (`content_type`: `application/json` or
    /// `application/yaml`, the body sent as it is); answers the app as deployed.
    pub async fn deploy_app(&self, body: Vec<u8>, content_type: &str) -> Result<AppView, ClientError> {
        let url = self.url(routes::APPS, None);
        let (status, bytes) = self
            .exchange_as(Method::POST, url.clone(), Some(body), content_type)
            .await?;
        decode(url, status, &bytes)
    }

    /// Every deployed application.
    pub async fn apps(&self) -> Result<Vec<AppView>, ClientError> {
        let view: AppsView = self.call(Method::GET, routes::APPS, None, None::<&()>).await?;
        Ok(view.apps)
    }

    /// One deployed application.
    pub async fn app(&self, name: &str) -> Result<AppView, ClientError> {
        self.call(Method::GET, routes::APP, Some(name), None::<&()>).await
    }

    /// Removes an application (its buckets and their data stay); answers it as it was.
    pub async fn remove_app(&self, name: &str) -> Result<AppView, ClientError> {
        self.call(Method::DELETE, routes::APP, Some(name), None::<&()>).await
    }

    /// A bucket's intent.
    pub async fn bucket_intent(&self, bucket: &str) -> Result<IntentView, ClientError> {
        self.call(Method::GET, routes::BUCKET_INTENT, Some(bucket), None::<&()>)
            .await
    }

    /// Sets a bucket's intent; answers it as it is now (never with the token).
    pub async fn set_bucket_intent(&self, bucket: &str, intent: &BucketIntent) -> Result<IntentView, ClientError> {
        self.call(Method::PUT, routes::BUCKET_INTENT, Some(bucket), Some(intent))
            .await
    }

    /// The agents, their health and mode.
    pub async fn agents(&self) -> Result<AgentsView, ClientError> {
        self.call(Method::GET, routes::AGENTS, None, None::<&()>).await
    }

    /// Switches the agents to heuristic or ML mode; answers their view now.
    pub async fn set_agents_mode(&self, mode: AgentMode) -> Result<AgentsView, ClientError> {
        self.call(Method::PUT, routes::AGENTS_MODE, None, Some(&AgentModeRequest { mode }))
            .await
    }

    /// The decision log, newest first: of one bucket, made at or after `since_ms` (Unix ms), at
    /// most `limit` (each left out when `None`).
    pub async fn decisions(
        &self,
        bucket: Option<&str>,
        since_ms: Option<i64>,
        limit: Option<usize>,
    ) -> Result<DecisionsPage, ClientError> {
        let url = decisions_url(self.url(routes::DECISIONS, None), bucket, since_ms, limit);
        let (status, bytes) = self.exchange(Method::GET, url.clone(), None).await?;
        decode(url, status, &bytes)
    }

    /// One decision.
    pub async fn decision(&self, id: &str) -> Result<Decision, ClientError> {
        self.call(Method::GET, routes::DECISION, Some(id), None::<&()>).await
    }

    /// Every backend with its labels, health and injected faults.
    pub async fn backends(&self) -> Result<BackendsView, ClientError> {
        self.call(Method::GET, routes::BACKENDS, None, None::<&()>).await
    }

    /// The faults injected into backend `id` now (403 unless the gateway allows fault
    /// injection).
    pub async fn backend_faults(&self, id: &str) -> Result<Faults, ClientError> {
        self.call(Method::GET, routes::BACKEND_FAULTS, Some(id), None::<&()>)
            .await
    }

    /// Replaces the faults injected into backend `id`; returns the spec now in force.
    pub async fn set_backend_faults(&self, id: &str, faults: &Faults) -> Result<Faults, ClientError> {
        self.call(Method::PUT, routes::BACKEND_FAULTS, Some(id), Some(faults))
            .await
    }

    /// Stops injecting faults into backend `id`; returns the (empty) spec now in force.
    pub async fn clear_backend_faults(&self, id: &str) -> Result<Faults, ClientError> {
        self.call(Method::DELETE, routes::BACKEND_FAULTS, Some(id), None::<&()>)
            .await
    }

    /// Any request: `path` (e.g. `/api/v1/buckets/b/storage-policy`, taken as it is) under the
    /// base URL, with `body` sent as `application/json` whatever it holds. Answers the status and
    /// the JSON body of any status; only a failed transport or a body that is not JSON is an error.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, serde_json::Value), ClientError> {
        let (url, status, bytes) = self.send_raw(method, path, body).await?;
        let json = serde_json::from_slice(&bytes).map_err(|source| ClientError::Decode { url, source })?;
        Ok((status, json))
    }

    /// Like [`Client::send`], with the body as text (non-JSON answers, e.g. `/metrics`).
    pub async fn send_text(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, String), ClientError> {
        let (_, status, bytes) = self.send_raw(method, path, body).await?;
        Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
    }

    async fn send_raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(Url, StatusCode, Vec<u8>), ClientError> {
        let url = self
            .base
            .join(path.trim_start_matches('/'))
            .map_err(|_| ClientError::Path(path.to_owned()))?;
        let (status, bytes) = self.exchange(method, url.clone(), body).await?;
        Ok((url, status, bytes))
    }

    /// A typed call: `route` filled with `bucket`, `body` as JSON; a non-2xx answer is an error.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        route: &str,
        bucket: Option<&str>,
        body: Option<&impl Serialize>,
    ) -> Result<T, ClientError> {
        let url = self.url(route, bucket);
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|source| ClientError::Encode {
                url: url.clone(),
                source,
            })?;
        let (status, bytes) = self.exchange(method, url.clone(), body).await?;
        decode(url, status, &bytes)
    }

    /// One request with a JSON body (if any) and its whole answer.
    async fn exchange(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Vec<u8>), ClientError> {
        self.exchange_as(method, url, body, "application/json").await
    }

    /// One request, its body (if any) sent as `content_type`, and its whole answer.
    async fn exchange_as(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
        content_type: &str,
    ) -> Result<(StatusCode, Vec<u8>), ClientError> {
        let mut request = self.http.request(method, url.clone());
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.header(CONTENT_TYPE, content_type).body(body);
        }
        let response = request.send().await.map_err(|e| ClientError::Transport {
            what: format!("cannot reach the admin API at {url}"),
            source: e.without_url(),
        })?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| ClientError::Transport {
            what: format!("reading the answer of {url}"),
            source: e.without_url(),
        })?;
        Ok((status, bytes.to_vec()))
    }

    /// `route` under the base URL, its `{bucket}` segment replaced by `bucket`, every segment
    /// percent-encoded (bucket names come from users).
    /// `route` under the base URL, its placeholder segment (`{bucket}`, `{name}`) filled with
    /// `value`, percent-encoded as one segment.
    fn url(&self, route: &str, value: Option<&str>) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty();
            for segment in route.trim_start_matches('/').split('/') {
                path.push(match value {
                    Some(v) if segment.starts_with('{') && segment.ends_with('}') => v,
                    _ => segment,
                });
            }
        }
        url
    }
}

/// A 2xx answer as `T`; any other status as the server's error.
fn decode<T: DeserializeOwned>(url: Url, status: StatusCode, bytes: &[u8]) -> Result<T, ClientError> {
    if !status.is_success() {
        return Err(ClientError::from_answer(status, bytes));
    }
    serde_json::from_slice(bytes).map_err(|source| ClientError::Decode { url, source })
}

/// The decision log's URL with only the filters given (`?bucket=&since=&limit=`).
fn decisions_url(mut url: Url, bucket: Option<&str>, since_ms: Option<i64>, limit: Option<usize>) -> Url {
    if bucket.is_some() || since_ms.is_some() || limit.is_some() {
        let mut query = url.query_pairs_mut();
        if let Some(b) = bucket {
            query.append_pair("bucket", b);
        }
        if let Some(s) = since_ms {
            query.append_pair("since", &s.to_string());
        }
        if let Some(l) = limit {
            query.append_pair("limit", &l.to_string());
        }
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode as AxumStatus;
    use axum::routing::get;
    use axum::{Json, Router};
    use serde_json::json;

    fn client(base: &str, token: Option<&str>) -> Client {
        Client::new(Url::parse(base).unwrap(), token.map(str::to_owned)).unwrap()
    }

    #[test]
    fn urls_are_built_with_encoded_segments() {
        let c = client("http://127.0.0.1:9001", None);
        assert_eq!(
            c.url(routes::STORAGE_POLICY, Some("b")).as_str(),
            "http://127.0.0.1:9001/api/v1/buckets/b/storage-policy"
        );
        assert_eq!(
            c.url(routes::MIGRATION, Some("a/b?c")).as_str(),
            "http://127.0.0.1:9001/api/v1/buckets/a%2Fb%3Fc/migration"
        );
        assert_eq!(
            c.url(routes::WORKER, Some("healer")).as_str(),
            "http://127.0.0.1:9001/api/v1/workers/healer"
        );
        assert_eq!(
            c.url(routes::BACKEND_FAULTS, Some("aws-eu")).as_str(),
            "http://127.0.0.1:9001/api/v1/backends/aws-eu/faults"
        );
        assert_eq!(
            c.url(routes::MIGRATION_THROTTLE, None).as_str(),
            "http://127.0.0.1:9001/api/v1/migration"
        );
        let prefixed = client("https://proxy/admin", None);
        assert_eq!(prefixed.base().as_str(), "https://proxy/admin/");
        assert_eq!(
            prefixed.url(routes::STORAGE_POLICY_HISTORY, Some("b")).as_str(),
            "https://proxy/admin/api/v1/buckets/b/storage-policy/history"
        );
        assert!(Client::new(Url::parse("ftp://x").unwrap(), None).is_err());
        assert!(Client::new(Url::parse("mailto:a@b").unwrap(), None).is_err());
    }

    #[test]
    fn the_token_is_never_printed() {
        let c = client("http://h:1", Some("s3cret-token"));
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cret") && shown.contains("<hidden>"), "{shown}");
        assert!(c.has_token() && !c.with_token(None).has_token());
    }

    /// A stand-in admin server on a loopback port: a policy for bucket `b`, a 404 for any
    /// other, an endpoint answering HTML, and a check of the bearer token.
    async fn server() -> Url {
        let policy = json!({
            "bucket": "b", "epoch": 2, "preset": "ec-2-1", "k": 2, "m": 1, "block_size": 65536,
            "backends": "", "encryption": false, "server_side_encryption": "off",
            "redundancy": null, "max_latency": null, "min_download_speed": null,
            "location_restrictions": {"gdpr": false}, "automatic_updates": false,
            "changed_ms": 1, "changed_by": "admin", "automatic": false, "reason": ""
        });
        let app = Router::new()
            .route(
                routes::STORAGE_POLICY,
                get(move |axum::extract::Path(b): axum::extract::Path<String>| async move {
                    if b == "b" {
                        Ok(Json(policy))
                    } else {
                        Err((
                            AxumStatus::NOT_FOUND,
                            Json(ErrorBody::new(format!("no such bucket: {b}"))),
                        ))
                    }
                }),
            )
            .route(routes::MIGRATION_THROTTLE, get(|| async { "<html>proxy</html>" }))
            .route(
                routes::REDUNDANCY,
                get(|headers: axum::http::HeaderMap| async move {
                    match headers.get("authorization").and_then(|v| v.to_str().ok()) {
                        Some("Bearer t0ken") => Ok(Json(json!({"not": "a view"}))),
                        _ => Err((AxumStatus::UNAUTHORIZED, Json(ErrorBody::new("wrong admin token")))),
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Url::parse(&format!("http://{addr}")).unwrap()
    }

    #[tokio::test]
    async fn answers_decode_and_failures_carry_status_and_message() {
        let base = server().await;
        let addr = std::net::SocketAddr::new(base.host_str().unwrap().parse().unwrap(), base.port().unwrap());
        let c = Client::at(addr, Some("t0ken".into())).unwrap();
        assert_eq!(c.base(), &base);
        let view = c.storage_policy("b").await.unwrap();
        assert_eq!((view.k, view.m, view.eligible), (2, 1, None));

        let err = c.storage_policy("nosuch").await.unwrap_err();
        assert_eq!(err.status(), Some(StatusCode::NOT_FOUND));
        assert_eq!(err.to_string(), "404 Not Found: no such bucket: nosuch");

        let err = c.with_token(None).redundancy().await.unwrap_err();
        assert_eq!(err.to_string(), "401 Unauthorized: wrong admin token");
        // Authorized, but not the promised shape: a decode error naming the URL.
        let err = c.redundancy().await.unwrap_err();
        assert!(matches!(err, ClientError::Decode { .. }), "{err:?}");
        assert!(err.to_string().contains("/api/v1/redundancy"), "{err}");
        // Not JSON at all.
        assert!(matches!(c.migration_throttle().await, Err(ClientError::Decode { .. })));
        // A route the stand-in does not serve: axum's empty 404.
        let err = c.heal().await.unwrap_err();
        assert_eq!(err.to_string(), "404 Not Found: ");

        // The escape hatch answers any status and sends any bytes.
        let (status, body) = c
            .send(Method::GET, "/api/v1/buckets/nosuch/storage-policy", None)
            .await
            .unwrap();
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::NOT_FOUND, Some("no such bucket: nosuch"))
        );
        let (status, text) = c
            .send_text(Method::GET, "api/v1/migration", Some(b"{\"preset\": ".to_vec()))
            .await
            .unwrap();
        assert_eq!((status, text.as_str()), (StatusCode::OK, "<html>proxy</html>"));

        // Nothing listening: a transport error naming the URL.
        let mut closed = base.clone();
        closed.set_port(Some(1)).unwrap();
        let err = Client::new(closed, None).unwrap().migration("b").await.unwrap_err();
        assert!(matches!(err, ClientError::Transport { .. }), "{err:?}");
        assert!(
            err.to_string()
                .starts_with("cannot reach the admin API at http://127.0.0.1:1/"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn read_settings_are_read_and_changed_field_by_field() {
        use crate::reads::{ReadSettings, ReadSettingsRequest, ReadStrategy};
        use std::sync::{Arc, Mutex};
        // A stand-in that keeps the settings and answers a bad body as the gateway does.
        let state = Arc::new(Mutex::new(ReadSettings::DATA_FIRST));
        let (get_state, put_state) = (state.clone(), state);
        let put = move |body: axum::body::Bytes| {
            let answer = match serde_json::from_slice::<ReadSettingsRequest>(&body) {
                Ok(req) => {
                    let mut s = put_state.lock().unwrap();
                    *s = req.applied_to(*s);
                    Ok(Json(*s))
                }
                Err(e) => Err((AxumStatus::BAD_REQUEST, Json(ErrorBody::new(format!("strategy: {e}"))))),
            };
            async move { answer }
        };
        let app = Router::new().route(
            routes::READS,
            get(move || {
                let now = *get_state.lock().unwrap();
                async move { Json(now) }
            })
            .put(put),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let c = Client::at(addr, None).unwrap();

        assert_eq!(c.read_settings().await.unwrap(), ReadSettings::DATA_FIRST);
        let on = ReadSettingsRequest {
            hedging: Some(true),
            ..Default::default()
        };
        let now = c.set_read_settings(&on).await.unwrap();
        assert_eq!((now.strategy, now.hedging), (ReadStrategy::DataFirst, true));
        let latency = ReadSettingsRequest {
            strategy: Some(ReadStrategy::Latency),
            ..Default::default()
        };
        assert_eq!(c.set_read_settings(&latency).await.unwrap(), ReadSettings::HEDGED);
        assert_eq!(c.read_settings().await.unwrap(), ReadSettings::HEDGED);

        let (status, body) = c
            .send(Method::PUT, routes::READS, Some(br#"{"strategy": "fast"}"#.to_vec()))
            .await
            .unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["error"].as_str().unwrap().starts_with("strategy: "), "{body}");
        assert_eq!(c.read_settings().await.unwrap(), ReadSettings::HEDGED);
    }
}

#[cfg(test)]
mod northbound_tests {
    use super::*;
    use crate::agents::{AgentStatus, DecisionStatus};
    use axum::extract::Path;
    use axum::http::{HeaderMap, Uri};
    use axum::routing::get;
    use axum::{Json, Router};
    use placement::Redundancy;

    fn app_view(name: &str, deployed_ms: i64, components: Vec<String>) -> AppView {
        AppView {
            name: name.into(),
            deployed_ms,
            components,
            buckets: vec![],
        }
    }

    fn decision(id: &str, reason: &str) -> Decision {
        Decision {
            undo: None,
            id: id.into(),
            at_ms: 5,
            agent: "cluster".into(),
            policy: "slo-keeper".into(),
            mechanism: "ccstorage".into(),
            target: "bucket/photos".into(),
            bucket: Some("photos".into()),
            trigger: "t".into(),
            inputs: vec![],
            options: vec![],
            choice: "c".into(),
            command: serde_json::Value::Null,
            reason: reason.into(),
            expected: vec![],
            observed: vec![],
            status: DecisionStatus::Applied,
            status_reason: String::new(),
            rollback_of: None,
            epoch: None,
            updated_ms: 6,
        }
    }

    fn agents_view(mode: AgentMode) -> AgentsView {
        AgentsView {
            mode,
            dry_run: false,
            agents: vec![AgentStatus {
                id: "cluster-0".into(),
                tier: "cluster".into(),
                remote: false,
                healthy: true,
                period_secs: 10,
                last_period_ms: Some(1),
                last_period_took_ms: Some(2),
                plans_pending: vec![],
                last_error: None,
            }],
        }
    }

    /// A stand-in of the northbound API that echoes what it was sent: the content type and
    /// body of a deploy, the path's name or id, a PUT's body, the decision log's query.
    async fn server() -> Client {
        let content_type = |h: &HeaderMap| {
            h.get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        let app = Router::new()
            .route(
                routes::APPS,
                get(|| async {
                    Json(AppsView {
                        apps: vec![app_view("a", 1, vec![]), app_view("b", 2, vec![])],
                    })
                })
                .post(move |h: HeaderMap, body: String| async move {
                    Json(app_view(&content_type(&h), 1, vec![body]))
                }),
            )
            .route(
                routes::APP,
                get(|Path(n): Path<String>| async move { Json(app_view(&n, 1, vec![])) })
                    .delete(|Path(n): Path<String>| async move { Json(app_view(&n, 2, vec![])) }),
            )
            .route(
                routes::BUCKET_INTENT,
                get(|Path(b): Path<String>| async move {
                    Json(IntentView {
                        state: "applied".into(),
                        error: None,
                        bucket: b,
                        intent: BucketIntent::default(),
                        source: "operator".into(),
                        has_token: false,
                        updated_ms: 1,
                        cluster: None,
                    })
                })
                .put(
                    |Path(b): Path<String>, Json(mut intent): Json<BucketIntent>| async move {
                        let has_token = intent.policy_update_token.take().is_some();
                        Json(IntentView {
                            state: "applied".into(),
                            error: None,
                            bucket: b,
                            intent,
                            source: "operator".into(),
                            has_token,
                            updated_ms: 2,
                            cluster: None,
                        })
                    },
                ),
            )
            .route(
                routes::AGENTS,
                get(|| async { Json(agents_view(AgentMode::Heuristic)) }),
            )
            .route(
                routes::AGENTS_MODE,
                axum::routing::put(|Json(req): Json<AgentModeRequest>| async move { Json(agents_view(req.mode)) }),
            )
            .route(
                routes::DECISIONS,
                get(|uri: Uri| async move {
                    Json(DecisionsPage {
                        decisions: vec![decision("d1", uri.query().unwrap_or(""))],
                    })
                }),
            )
            .route(
                routes::DECISION,
                get(|Path(id): Path<String>| async move { Json(decision(&id, "one")) }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Client::at(addr, None).unwrap()
    }

    #[tokio::test]
    async fn apps_are_deployed_with_their_content_type_listed_shown_and_removed() {
        let c = server().await;
        let deployed = c.deploy_app(b"name: a\n".to_vec(), "application/yaml").await.unwrap();
        assert_eq!(
            (deployed.name.as_str(), deployed.components),
            ("application/yaml", vec!["name: a\n".to_owned()])
        );
        let names: Vec<_> = c.apps().await.unwrap().into_iter().map(|a| a.name).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(c.app("photo-ai").await.unwrap(), app_view("photo-ai", 1, vec![]));
        assert_eq!(c.remove_app("photo-ai").await.unwrap(), app_view("photo-ai", 2, vec![]));
    }

    #[tokio::test]
    async fn intents_agents_and_decisions_travel_as_typed() {
        let c = server().await;
        assert_eq!(c.bucket_intent("photos").await.unwrap().bucket, "photos");
        let intent = BucketIntent {
            redundancy: Some(Redundancy::High),
            max_latency: Some(100),
            policy_update_token: Some("t0ken".into()),
            ..BucketIntent::default()
        };
        let view = c.set_bucket_intent("photos", &intent).await.unwrap();
        assert!(view.has_token && view.intent.policy_update_token.is_none());
        assert_eq!(
            (view.intent.redundancy, view.intent.max_latency),
            (Some(Redundancy::High), Some(100))
        );

        assert_eq!(c.agents().await.unwrap().mode, AgentMode::Heuristic);
        assert_eq!(c.set_agents_mode(AgentMode::Ml).await.unwrap().mode, AgentMode::Ml);

        let query = |page: DecisionsPage| page.decisions[0].reason.clone();
        assert_eq!(query(c.decisions(None, None, None).await.unwrap()), "");
        assert_eq!(
            query(
                c.decisions(Some("a b&c"), Some(1_700_000_000_000), Some(20))
                    .await
                    .unwrap()
            ),
            "bucket=a+b%26c&since=1700000000000&limit=20"
        );
        assert_eq!(query(c.decisions(None, None, Some(3)).await.unwrap()), "limit=3");
        assert_eq!(c.decision("d-42").await.unwrap().id, "d-42");
    }
}

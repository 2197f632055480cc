//! The transport of OTLP exports: an async reqwest client driven by a private one-thread runtime.
//!
//! The SDK's `PeriodicReader` and `BatchSpanProcessor` export from their own OS threads and
//! drive the exporter's future with a plain `block_on`, which has no tokio reactor: reqwest's
//! async client cannot run there directly. Instead of the blocking reqwest client (a second
//! hidden runtime per client, and reqwest's `blocking` feature), each request is spawned onto a
//! small runtime owned by [`super::Otel`]. So exports never run on, or wait for, the gateway's
//! runtime: a busy or shutting-down gateway runtime cannot delay the last export, and
//! `Otel::shutdown` may block on it from any thread without deadlocking.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use opentelemetry_http::{HttpClient, HttpError};
use tokio::runtime::Handle;

/// Responses larger than this are refused: an OTLP collector answers with a few bytes, so a big
/// body means the endpoint is not a collector (same limit as opentelemetry-http's clients).
const MAX_RESPONSE_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Failed exports are logged at most this often, so a collector that is down does not flood the
/// gateway's log every export interval.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The runtime the OTLP requests run on; its thread stops when this is dropped.
pub(super) struct ExportRuntime {
    handle: Handle,
    // Dropping the sender wakes the thread, which then drops the runtime on its own thread
    // (dropping a runtime inside an async context would panic).
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl ExportRuntime {
    /// Starts the thread `otel-export` with a current-thread runtime.
    pub(super) fn start() -> std::io::Result<Self> {
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new().name("otel-export".into()).spawn(move || {
            // No telemetry about telemetry: the HTTP stack's own spans and events (at trace
            // level) would otherwise be exported by the next export, and so on.
            let _quiet = tracing::subscriber::set_default(tracing::subscriber::NoSubscriber::default());
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(error) => {
                    let _ = handle_tx.send(Err(error));
                    return;
                }
            };
            let _ = handle_tx.send(Ok(runtime.handle().clone()));
            runtime.block_on(async {
                let _ = stop_rx.await;
            });
        })?;
        let handle = handle_rx
            .recv()
            .map_err(|_| std::io::Error::other("the otel-export thread exited before starting its runtime"))??;
        Ok(Self { handle, _stop: stop_tx })
    }

    /// A handle to spawn requests with.
    pub(super) fn handle(&self) -> Handle {
        self.handle.clone()
    }
}

/// The `HttpClient` given to the OTLP exporters.
#[derive(Debug, Clone)]
pub(super) struct OtlpHttpClient {
    client: reqwest::Client,
    runtime: Handle,
    last_warning: Arc<Mutex<Option<Instant>>>,
}

impl OtlpHttpClient {
    /// A client whose every request times out after `timeout`: the exporter only bounds the
    /// retries as a whole, the single request's timeout is the client's job.
    pub(super) fn new(runtime: Handle, timeout: Duration) -> reqwest::Result<Self> {
        let client = reqwest::Client::builder().timeout(timeout).build()?;
        Ok(Self {
            client,
            runtime,
            last_warning: Arc::new(Mutex::new(None)),
        })
    }

    /// Logs a failed export, at most once per [`WARN_EVERY`]: the SDK's own error logging is
    /// compiled out (no `internal-logs` feature), so this is the operator's only sign.
    fn warn(&self, uri: &str, what: &str) {
        let now = Instant::now();
        let mut last = self
            .last_warning
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if last.is_some_and(|at| now.duration_since(at) < WARN_EVERY) {
            return;
        }
        *last = Some(now);
        tracing::warn!(target: "telemetry::otel", "OTLP export to {uri} failed: {what} (repeats are not logged for {}s)", WARN_EVERY.as_secs());
    }
}

#[async_trait::async_trait]
impl HttpClient for OtlpHttpClient {
    async fn send_bytes(&self, request: http::Request<Bytes>) -> Result<http::Response<Bytes>, HttpError> {
        let uri = request.uri().to_string();
        let client = self.client.clone();
        let result = match self.runtime.spawn(send(client, request)).await {
            Ok(result) => result,
            Err(join_error) => Err(format!("the OTLP request task did not finish: {join_error}").into()),
        };
        match &result {
            Ok(response) if !response.status().is_success() => {
                self.warn(&uri, &format!("HTTP status {}", response.status()))
            }
            Ok(_) => {}
            Err(error) => self.warn(&uri, &error.to_string()),
        }
        result
    }
}

async fn send(client: reqwest::Client, request: http::Request<Bytes>) -> Result<http::Response<Bytes>, HttpError> {
    let request = reqwest::Request::try_from(request)?;
    let mut response = client.execute(request).await?;
    let status = response.status();
    let headers = std::mem::take(response.headers_mut());
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_RESPONSE_BODY_BYTES {
            return Err(format!("the OTLP response body exceeds {MAX_RESPONSE_BODY_BYTES} bytes").into());
        }
        body.extend_from_slice(&chunk);
    }
    let mut out = http::Response::builder().status(status).body(body.freeze())?;
    *out.headers_mut() = headers;
    Ok(out)
}

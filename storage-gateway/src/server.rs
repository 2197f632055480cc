//! Wiring: backends, metadata, engine and the S3 service, served over HTTP/1.1 and HTTP/2
//! within the limits of [`crate::limits`].

use crate::backend::Backend;
use crate::config::GatewayConfig;
use crate::crypto::KeyRing;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::limits::body::PacedBody;
use crate::limits::connections::Activity;
use crate::limits::listener;
use crate::limits::memory::MemoryBudget;
use crate::limits::LimitsConfig;
use crate::meta::{Catalog, RocksStore};
use crate::s3::{
    BucketExists, Gateway, GatewayHost, KnownBuckets, Observation, ObservedBody, StaticAuth, TaggingAccess, Throttles,
};
use s3s::service::{S3Service, S3ServiceBuilder};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use telemetry::Telemetry;
use tokio::net::TcpListener;
use tracing::Instrument;

/// How long in-flight requests get to finish after shutdown is asked for.
const GRACE: Duration = Duration::from_secs(10);

/// How long background workers get to finish their step after the listeners stopped; those
/// still stepping are then aborted (as safe as a crash: their work is resumable).
const WORKER_GRACE: Duration = Duration::from_secs(5);

/// How long the start-up probe waits for a backend before marking it down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Probes every backend at once; one that does not answer is marked down (suspect), reported,
/// and routed around: the gateway still starts.
async fn probe_all(backends: &[Backend]) {
    let probes = backends.iter().map(|b| async move {
        match tokio::time::timeout(PROBE_TIMEOUT, b.probe()).await {
            Ok(Ok(())) => tracing::info!(backend = %b.id(), local = b.is_local(), "backend reachable"),
            Ok(Err(e)) => tracing::error!(backend = %b.id(), error = %e, "backend unreachable at start; marked down"),
            Err(_) => {
                b.health().failure(&format!("no answer to the start-up probe within {PROBE_TIMEOUT:?}"));
                tracing::error!(backend = %b.id(), "backend did not answer within {PROBE_TIMEOUT:?} at start; marked down");
            }
        }
    });
    futures::future::join_all(probes).await;
}

/// How often failing backends are probed, once their backoff allows a trial call.
const REPROBE_EVERY: Duration = Duration::from_secs(1);

/// Probes backends that failed, so one that comes back is used again for new shards even when
/// no read happens to try it (placement avoids backends that have not succeeded since failing);
/// and samples every backend's health for telemetry's availability figures.
async fn reprobe(backends: Vec<Backend>, telemetry: Arc<Telemetry>) {
    loop {
        tokio::time::sleep(REPROBE_EVERY).await;
        for b in &backends {
            telemetry.backend_health(b.id(), b.health().is_healthy());
            if !b.health().is_healthy() && b.health().admit().is_ok() {
                match tokio::time::timeout(PROBE_TIMEOUT, b.probe()).await {
                    Ok(Ok(())) => tracing::info!(backend = %b.id(), "backend answers again"),
                    Ok(Err(_)) => {}
                    Err(_) => b
                        .health()
                        .failure(&format!("no answer to a probe within {PROBE_TIMEOUT:?}")),
                }
            }
        }
    }
}

/// Reads every healthy backend every `every`, all at once so a slow one delays none of the
/// others; a backend that does not answer within the probe timeout counts a failure.
async fn audit(backends: Vec<Backend>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let audits = backends.iter().filter(|b| b.health().is_healthy()).map(|b| async move {
            match tokio::time::timeout(PROBE_TIMEOUT, b.audit()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(backend = %b.id(), error = %e, "audit read failed"),
                Err(_) => b
                    .health()
                    .failure(&format!("no answer to an audit read within {PROBE_TIMEOUT:?}")),
            }
        });
        futures::future::join_all(audits).await;
    }
}

/// A gateway bound to its port, swept, ready to serve.
pub struct Server {
    listener: TcpListener,
    admin_listener: TcpListener,
    admin: axum::Router,
    service: S3Service,
    engine: Engine,
    limits: LimitsConfig,
    /// The principals' throttles, set through the admin API.
    throttles: Arc<Throttles>,
}

impl Server {
    /// Opens metadata and backends, checks that the backends are this deployment's (refusing
    /// to start otherwise, unless told), sweeps orphans of a previous crash, binds the S3 port.
    pub async fn start(config: &GatewayConfig) -> Result<Self> {
        config.limits.check().map_err(Error::Config)?;
        let telemetry = match &config.telemetry {
            Some(t) => t.clone(),
            None => Arc::new(Telemetry::new(
                telemetry::otel::Otel::init(telemetry::otel::OtelConfig::default())
                    .map_err(|e| Error::Config(format!("telemetry: {e}")))?,
                1,
            )),
        };
        let backends = config
            .backends
            .iter()
            .map(|spec| {
                spec.build().map(|b| {
                    let b = if config.allow_fault_injection && b.faults().is_none() {
                        b.with_faults(crate::backend::FaultSpec::default())
                    } else {
                        b
                    };
                    b.with_telemetry(telemetry.clone())
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if config.allow_fault_injection {
            tracing::warn!("fault injection allowed: the admin API can make any backend slow or failing at run time");
        }
        let mut ids = std::collections::HashSet::new();
        if let Some(dup) = backends.iter().find(|b| !ids.insert(b.id())) {
            return Err(Error::Config(format!("backend id {:?} is configured twice", dup.id())));
        }
        config.default_policy.check_backends(backends.len())?;
        probe_all(&backends).await;
        let meta_dir = config.data_dir.join("meta");
        std::fs::create_dir_all(&meta_dir).map_err(|e| Error::io(format!("creating {}", meta_dir.display()), e))?;
        let store = RocksStore::open(&meta_dir)?;
        if config.durability.syncs() {
            // RocksDB syncs what it creates inside meta/, not meta/'s own entry.
            std::fs::File::open(&config.data_dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| Error::io(format!("fsync of {}", config.data_dir.display()), e))?;
        }
        let keys = match &config.master_keys {
            Some(ring) => ring.clone(),
            None => {
                let (ring, created) = KeyRing::open(&config.data_dir, None, &store)?;
                if created {
                    tracing::info!(keys = %ring.describe(), "generated a master key; back this file up with the metadata");
                }
                ring
            }
        };
        let encrypt = config.encryption.resolve(backends.iter().any(|b| !b.is_local()));
        tracing::info!(encrypt_new_buckets = encrypt, active_master_key = %keys.active()?.id, "encryption at rest");
        let engine = Engine::with_keys(Catalog::new(Arc::new(store)), backends, Arc::new(keys), telemetry);
        engine.set_read_settings(config.reads);
        engine.set_durability(config.durability);
        tracing::info!(
            durability = %config.durability,
            "{}",
            if config.durability.syncs() {
                "writes are acknowledged once durable: local shard files, their directories and the metadata WAL fsynced; remote backends are durable when they answer"
            } else {
                "writes are acknowledged before they are synced: a power loss (not a crash of the process) may lose acknowledged writes"
            }
        );
        if let Some(point) = crate::crash::arm()? {
            tracing::warn!(
                point = point.name(),
                "crash point armed (test hook): the process aborts there"
            );
        }
        engine
            .migrations()
            .set_throttle(crate::engine::migrate::Throttle {
                max_mib_per_sec: config.migration.max_bytes_per_sec.unwrap_or(0) as f64 / f64::from(1u32 << 20),
                concurrency: config.migration.concurrency,
                paused: false,
            })
            .map_err(|e| Error::Config(format!("migration: {e}")))?;
        crate::gauges::register(&engine);
        let report = engine.startup_sweep(&config.sweep).await.map_err(|e| match e {
            Error::StartRefused(msg) => Error::StartRefused(format!("{msg}\n(metadata: {})", meta_dir.display())),
            other => other,
        })?;
        tracing::info!(
            pending = report.pending,
            deleting = report.deleting,
            orphans = report.orphans,
            unfinished_moves = report.moves,
            young = report.young,
            restored = report.restored,
            quarantine_runs_purged = report.purged,
            unreachable = report.unreachable,
            "startup sweep done"
        );
        let memory = MemoryBudget::new(config.limits.body_memory_bytes, config.limits.body_memory_wait);
        let gateway = Gateway::new(engine.clone(), config.default_policy)
            .encrypt_new_buckets(encrypt)
            .memory_budget(memory)
            .response_stall_timeout(config.response_stall);
        let mut builder = S3ServiceBuilder::new(gateway);
        builder.set_auth(StaticAuth::new(
            config.credentials.access_key.clone(),
            config.credentials.secret_key.clone(),
        ));
        builder.set_host(GatewayHost::new(&config.domains));
        builder.set_access(TaggingAccess);
        let service = builder.build();
        let listener = TcpListener::bind(config.s3_addr)
            .await
            .map_err(|e| Error::io(format!("binding S3 port {}", config.s3_addr), e))?;
        let admin_listener = TcpListener::bind(config.admin.addr)
            .await
            .map_err(|e| Error::io(format!("binding admin port {}", config.admin.addr), e))?;
        tokio::spawn(reprobe(engine.backends().to_vec(), engine.telemetry().clone()));
        if let Some(every) = config.audit_interval {
            tokio::spawn(audit(engine.backends().to_vec(), every));
        }
        let workers = engine.workers();
        let spawned = workers
            .spawn(crate::engine::heal::Healer::new(engine.clone(), config.heal))
            .and_then(|_| workers.spawn(crate::engine::scrub::Scrubber::new(engine.clone(), config.scrub)))
            .and_then(|_| workers.spawn(crate::engine::migrate::Migrator::new(engine.clone())));
        spawned.map_err(|e| Error::Internal(format!("starting the background workers: {e}")))?;
        let throttles = Arc::new(Throttles::new());
        Ok(Self {
            listener,
            admin_listener,
            admin: crate::admin::router(
                engine.clone(),
                &config.admin.token,
                crate::admin::BucketDefaults {
                    policy: config.default_policy,
                    encrypted: encrypt,
                },
                config.allow_fault_injection,
                throttles.clone(),
            ),
            service,
            engine,
            limits: config.limits.clone(),
            throttles,
        })
    }

    /// The address the S3 API listens on (the real port when 0 was asked for).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener
            .local_addr()
            .map_err(|e| Error::io("reading listener address", e))
    }

    /// The address the admin API listens on.
    pub fn admin_addr(&self) -> Result<SocketAddr> {
        self.admin_listener
            .local_addr()
            .map_err(|e| Error::io("reading admin listener address", e))
    }

    /// Serves `routes` on the admin port beside the gateway's own (the agents' northbound API);
    /// `routes` must authenticate requests themselves.
    #[must_use]
    pub fn with_admin_routes(mut self, routes: axum::Router) -> Self {
        self.admin = routes.merge(self.admin);
        self
    }

    /// The engine, for in-process callers.
    #[must_use]
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish (up to a grace
    /// period), then stops the background workers (each at its next step boundary, or aborted
    /// after a grace period of its own).
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let stop_admin = tokio_util::sync::CancellationToken::new();
        let admin = {
            let (listener, router, limits) = (self.admin_listener, self.admin, self.limits.clone());
            let body_timeout = limits.body_timeout;
            let stopped = stop_admin.clone().cancelled_owned();
            tokio::spawn(async move {
                let make = |activity| AdminService {
                    router: router.clone(),
                    activity,
                    body_timeout,
                };
                listener::serve(listener, "admin", &limits, make, stopped, GRACE).await;
            })
        };
        let engine = self.engine.clone();
        let exists: BucketExists = Arc::new(KnownBuckets::new(move |b| engine.bucket(b).is_ok_and(|r| r.is_some())));
        let make = |activity| HttpService {
            s3: self.service.clone(),
            telemetry: self.engine.telemetry().clone(),
            exists: exists.clone(),
            throttles: self.throttles.clone(),
            activity,
            body_timeout: self.limits.body_timeout,
        };
        let shutdown = async {
            shutdown.await;
            tracing::info!("shutting down: waiting for in-flight requests");
            stop_admin.cancel();
        };
        listener::serve(self.listener, "S3", &self.limits, make, shutdown, GRACE).await;
        let _ = admin.await;
        tracing::info!("stopping the background workers");
        let aborted = self.engine.workers().shutdown(WORKER_GRACE).await;
        if !aborted.is_empty() {
            tracing::warn!(workers = ?aborted, "workers still busy after {WORKER_GRACE:?}; aborted (their work resumes at the next start)");
        }
        Ok(())
    }
}

/// The S3 service plus HTTP-level fixes for clients, the limits applied per request, and
/// per-request telemetry.
#[derive(Clone)]
struct HttpService {
    s3: S3Service,
    telemetry: Arc<Telemetry>,
    exists: BucketExists,
    throttles: Arc<Throttles>,
    /// The connection's, for its watchdog.
    activity: Arc<Activity>,
    body_timeout: Duration,
}

impl hyper::service::Service<http::Request<hyper::body::Incoming>> for HttpService {
    type Response = http::Response<ObservedBody<s3s::Body>>;
    type Error = s3s::HttpError;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn call(&self, req: http::Request<hyper::body::Incoming>) -> Self::Future {
        let working = self.activity.request();
        let http1 = req.version() <= http::Version::HTTP_11;
        // botocore sends `Expect: 100-continue` even for empty bodies; hyper then answers
        // without a 100 (as HTTP allows) and botocore misreads the next response on the same
        // pooled connection (boto/botocore#3755), stalling 60 s. Closing that connection
        // after the response sidesteps it at the cost of one reconnect.
        let h = req.headers();
        let close = h
            .get(http::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
            && h.get(http::header::CONTENT_LENGTH)
                .is_some_and(|v| v.as_bytes() == b"0");
        let span = tracing::info_span!(
            "s3.request",
            http.request.method = %req.method(),
            s3.operation = tracing::field::Empty,
            aws.s3.bucket = tracing::field::Empty,
            http.response.status_code = tracing::field::Empty,
        );
        let (obs, tag) = Observation::start(self.telemetry.clone(), self.exists.clone(), &req, span.clone());
        // Refused from the head alone, before s3s could read (and buffer) any of the body.
        if let Err(refusal) = crate::s3::screen(req.method(), req.uri(), req.headers()) {
            span.in_scope(|| tracing::info!(code = refusal.code().as_str(), "request refused before authentication"));
            return refuse(refusal, obs, http1, working);
        }
        // A throttled principal's request over its rate, refused as cheaply: the claim is not
        // checked first, so forging requests under a key cannot get around its throttle.
        if !self.throttles.admit(obs.principal()) {
            obs.mark_throttled();
            span.in_scope(|| tracing::debug!(principal = obs.principal(), "request throttled"));
            let has_body = req
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .is_some_and(|v| v.as_bytes() != b"0")
                || req.headers().contains_key(http::header::TRANSFER_ENCODING);
            let refusal = s3s::s3_error!(SlowDown, "Please reduce your request rate.");
            return refuse(refusal, obs, http1 && has_body, working);
        }
        let (mut parts, body) = req.into_parts();
        parts.extensions.insert(tag);
        let body = PacedBody::new(body, self.body_timeout);
        let req = http::Request::from_parts(parts, s3s::Body::http_body(obs.count_in(body)));
        let s3 = self.s3.clone();
        Box::pin(async move {
            let _working = working;
            match s3.call(req).instrument(span).await {
                Ok(mut resp) => {
                    if close {
                        resp.headers_mut()
                            .insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
                    }
                    Ok(obs.finish_with(resp))
                }
                Err(e) => {
                    obs.finish_failed();
                    Err(e)
                }
            }
        })
    }
}

/// Answers `refusal` without reading the request body; on HTTP/1 with `close`, closes the
/// connection after it (an unread body leaves the connection unable to carry another request).
fn refuse(
    refusal: s3s::S3Error,
    obs: Observation,
    close: bool,
    working: crate::limits::connections::Working,
) -> futures::future::BoxFuture<'static, Result<http::Response<ObservedBody<s3s::Body>>, s3s::HttpError>> {
    Box::pin(async move {
        let _working = working;
        match refusal.to_http_response() {
            Ok(mut resp) => {
                if close {
                    resp.headers_mut()
                        .insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
                }
                Ok(obs.finish_with(resp))
            }
            Err(e) => {
                obs.finish_failed();
                Err(s3s::HttpError::new(Box::new(e)))
            }
        }
    })
}

/// Serves `router` on `listener` with the admin port's limits (connection cap, header, idle and
/// body timeouts) until `shutdown`: for APIs served outside the gateway, such as a standalone
/// continuum agent's northbound API.
pub async fn serve_router(
    listener: TcpListener,
    router: axum::Router,
    limits: &LimitsConfig,
    shutdown: impl Future<Output = ()>,
) {
    let body_timeout = limits.body_timeout;
    let make = |activity| AdminService {
        router: router.clone(),
        activity,
        body_timeout,
    };
    listener::serve(listener, "api", limits, make, shutdown, GRACE).await;
}

/// The admin API's router behind the per-request limits (and the connection watchdog's
/// request marks).
#[derive(Clone)]
struct AdminService {
    router: axum::Router,
    activity: Arc<Activity>,
    body_timeout: Duration,
}

impl hyper::service::Service<http::Request<hyper::body::Incoming>> for AdminService {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn call(&self, req: http::Request<hyper::body::Incoming>) -> Self::Future {
        let working = self.activity.request();
        let timeout = self.body_timeout;
        let req = req.map(|body| axum::body::Body::new(PacedBody::new(body, timeout)));
        // A router is always ready: calling it without `poll_ready` is what axum::serve does.
        let answer = tower_service::Service::call(&mut self.router.clone(), req);
        Box::pin(async move {
            let _working = working;
            answer.await
        })
    }
}

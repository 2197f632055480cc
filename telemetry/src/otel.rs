//! OpenTelemetry metrics and traces of the gateway.
//!
//! One [`Otel`] per process owns an `SdkMeterProvider` read two ways, by the Prometheus text
//! exporter behind `GET /metrics` and, with an OTLP endpoint, by a periodic OTLP/HTTP exporter;
//! and an `SdkTracerProvider` whose spans (from `tracing`, through [`Otel::tracing_layer`]) go
//! to the same endpoint. `docs/metrics.md` lists every metric and span.

mod export;
mod instruments;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::metrics::{AsyncInstrument, Meter, MeterProvider as _};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_prometheus_text_exporter::PrometheusExporter;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing::Subscriber;
use tracing_subscriber::registry::LookupSpan;

pub use instruments::{Instruments, DURATION_BOUNDARIES_SECONDS};

/// The OpenTelemetry names of the metrics and attributes (see `docs/metrics.md`).
pub mod names {
    /// Histogram of S3 request durations, seconds (semconv HTTP server metric).
    pub const S3_REQUEST_DURATION: &str = "http.server.request.duration";
    /// Counter of S3 request body bytes received.
    pub const S3_REQUEST_BODY: &str = "mlsysops.s3.request.body";
    /// Counter of S3 response body bytes sent.
    pub const S3_RESPONSE_BODY: &str = "mlsysops.s3.response.body";
    /// Counter of S3 requests per bucket and key prefix.
    pub const S3_PREFIX_ACCESSES: &str = "mlsysops.s3.prefix.accesses";
    /// Histogram of backend request durations, seconds.
    pub const BACKEND_REQUEST_DURATION: &str = "mlsysops.backend.request.duration";
    /// Counter of bytes moved to or from a backend.
    pub const BACKEND_IO: &str = "mlsysops.backend.io";
    /// Counter of failed backend requests.
    pub const BACKEND_ERRORS: &str = "mlsysops.backend.errors";
    /// Gauge of backend requests in flight (observed: the gateway keeps the counts in atomics,
    /// which is much cheaper per call than recording +1/-1 into an up-down counter).
    pub const BACKEND_ACTIVE_REQUESTS: &str = "mlsysops.backend.active_requests";

    /// Attribute: the bucket (semconv).
    pub const ATTR_S3_BUCKET: &str = "aws.s3.bucket";
    /// Attribute: the S3 operation, e.g. `GetObject` (semconv `rpc.method`, as AWS SDKs set it).
    pub const ATTR_S3_OPERATION: &str = "rpc.method";
    /// Attribute: the HTTP status code of the response (semconv).
    pub const ATTR_HTTP_STATUS_CODE: &str = "http.response.status_code";
    /// Attribute: the key prefix.
    pub const ATTR_S3_PREFIX: &str = "mlsysops.s3.prefix";
    /// Attribute: the backend id.
    pub const ATTR_BACKEND: &str = "mlsysops.backend";
    /// Attribute: the backend operation (get|put|delete|list|head).
    pub const ATTR_BACKEND_OPERATION: &str = "mlsysops.backend.operation";
    /// Attribute: the backend request's outcome (ok|not_found|error).
    pub const ATTR_BACKEND_OUTCOME: &str = "mlsysops.backend.outcome";
    /// The outcome value that also counts in [`BACKEND_ERRORS`].
    pub const OUTCOME_ERROR: &str = "error";
}

/// Name of the instrumentation scope of the meter and tracer.
const SCOPE: &str = "mlsysops";

/// Timeout of one OTLP export (the OTLP specification's default), retries included.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Configuration of [`Otel::init`].
#[derive(Debug, Clone)]
pub struct OtelConfig {
    /// `service.name` of the exported resource.
    pub service_name: String,
    /// Base URL of an OTLP/HTTP collector, e.g. `http://127.0.0.1:4318`; `None` exports nothing
    /// over OTLP (Prometheus text only, no traces).
    pub otlp_endpoint: Option<String>,
    /// How often metrics are pushed over OTLP, and the longest a finished span waits.
    pub export_interval: Duration,
    /// `false` makes every instrument a no-op and exports nothing.
    pub enabled: bool,
}

impl Default for OtelConfig {
    fn default() -> Self {
        Self {
            service_name: "mlsysops-gateway".into(),
            otlp_endpoint: None,
            export_interval: Duration::from_secs(10),
            enabled: true,
        }
    }
}

/// Errors of [`Otel::init`].
#[derive(Debug, thiserror::Error)]
pub enum OtelError {
    /// The OTLP endpoint is not an http(s) base URL.
    #[error("invalid OTLP endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The configured endpoint.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A zero export interval.
    #[error("the OTLP export interval must be positive")]
    ZeroExportInterval,
    /// The thread running the OTLP requests could not start.
    #[error("cannot start the OTLP export thread: {0}")]
    ExportThread(#[source] std::io::Error),
    /// The HTTP client for OTLP could not be built.
    #[error("cannot build the HTTP client for OTLP export: {0}")]
    HttpClient(#[source] reqwest::Error),
    /// An OTLP exporter could not be built.
    #[error("cannot build the OTLP {signal} exporter for {url}: {source}")]
    Exporter {
        /// `metrics` or `traces`.
        signal: &'static str,
        /// The URL it would post to.
        url: String,
        /// The exporter's error.
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
}

/// Whether an observable instrument reports a current level or a running total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObservableKind {
    /// A level that goes up and down (queue length, health 0/1).
    Gauge,
    /// A monotonic running total since start (objects repaired); the callback reports the total,
    /// not an increment.
    Counter,
}

/// The gateway's OpenTelemetry pipeline; clones share it.
#[derive(Clone)]
pub struct Otel {
    inner: Arc<Inner>,
}

struct Inner {
    instruments: Instruments,
    endpoint: Option<String>,
    // `None` when disabled.
    pipeline: Option<Pipeline>,
}

// Fields drop in order: the providers' final exports run before the export runtime stops.
struct Pipeline {
    meter: Meter,
    prometheus: PrometheusExporter,
    meter_provider: SdkMeterProvider,
    tracer_provider: Option<SdkTracerProvider>,
    _export_runtime: Option<export::ExportRuntime>,
}

impl fmt::Debug for Otel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Otel")
            .field("enabled", &self.inner.pipeline.is_some())
            .field("otlp_endpoint", &self.inner.endpoint)
            .finish_non_exhaustive()
    }
}

/// The SDK callback around an observable's `callback`: its `observe(value, pairs)` turns the
/// pairs into attributes (one buffer reused per collection) and records the value.
fn observer<T, F>(callback: F) -> impl Fn(&dyn AsyncInstrument<T>) + Send + Sync + 'static
where
    T: 'static,
    F: Fn(&mut dyn FnMut(T, &[(&'static str, &str)])) + Send + Sync + 'static,
{
    move |instrument: &dyn AsyncInstrument<T>| {
        let mut attrs: Vec<KeyValue> = Vec::new();
        callback(&mut |value, pairs| {
            attrs.clear();
            attrs.extend(
                pairs
                    .iter()
                    .map(|(key, value)| KeyValue::new(*key, (*value).to_owned())),
            );
            instrument.observe(value, &attrs);
        });
    }
}

impl Otel {
    /// An exporter that records and exports nothing.
    #[must_use]
    pub fn disabled() -> Otel {
        let inner = Inner {
            instruments: Instruments::disabled(),
            endpoint: None,
            pipeline: None,
        };
        Otel { inner: Arc::new(inner) }
    }

    /// Builds the providers and exporters; works inside or outside a tokio runtime.
    pub fn init(cfg: OtelConfig) -> Result<Otel, OtelError> {
        let endpoint = cfg.otlp_endpoint.as_deref().map(str::trim).filter(|e| !e.is_empty());
        let endpoint = endpoint.map(normalize_endpoint).transpose()?;
        if !cfg.enabled {
            let inner = Inner {
                instruments: Instruments::disabled(),
                endpoint,
                pipeline: None,
            };
            return Ok(Otel { inner: Arc::new(inner) });
        }
        if endpoint.is_some() && cfg.export_interval.is_zero() {
            return Err(OtelError::ZeroExportInterval);
        }

        let resource = Resource::builder().with_service_name(cfg.service_name.clone()).build();
        // No `otel_scope_*` labels on every series: there is one scope, and they double the
        // size of the text.
        let prometheus = PrometheusExporter::builder().without_scope_info().build();
        let mut meter_builder = SdkMeterProvider::builder()
            .with_resource(resource.clone())
            .with_reader(prometheus.clone());
        let mut tracer_provider = None;
        let mut export_runtime = None;

        if let Some(base) = &endpoint {
            let runtime = export::ExportRuntime::start().map_err(OtelError::ExportThread)?;
            let client =
                export::OtlpHttpClient::new(runtime.handle(), EXPORT_TIMEOUT).map_err(OtelError::HttpClient)?;

            let url = format!("{base}/v1/metrics");
            let metric_exporter = opentelemetry_otlp::MetricExporter::builder()
                .with_http()
                .with_http_client(client.clone())
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(url.clone())
                .with_timeout(EXPORT_TIMEOUT)
                .build()
                .map_err(|source| OtelError::Exporter {
                    signal: "metrics",
                    url,
                    source,
                })?;
            let reader = PeriodicReader::builder(metric_exporter)
                .with_interval(cfg.export_interval)
                .build();
            meter_builder = meter_builder.with_reader(reader);

            let url = format!("{base}/v1/traces");
            let span_exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_http_client(client)
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(url.clone())
                .with_timeout(EXPORT_TIMEOUT)
                .build()
                .map_err(|source| OtelError::Exporter {
                    signal: "traces",
                    url,
                    source,
                })?;
            let batch = BatchConfigBuilder::default()
                .with_scheduled_delay(cfg.export_interval)
                .build();
            let processor = BatchSpanProcessor::builder(span_exporter)
                .with_batch_config(batch)
                .build();
            tracer_provider = Some(
                SdkTracerProvider::builder()
                    .with_resource(resource)
                    .with_span_processor(processor)
                    .build(),
            );
            export_runtime = Some(runtime);
        }

        let meter_provider = meter_builder.build();
        let meter = meter_provider.meter_with_scope(scope());
        let instruments = Instruments::new(&meter);
        let pipeline = Pipeline {
            meter,
            prometheus,
            meter_provider,
            tracer_provider,
            _export_runtime: export_runtime,
        };
        Ok(Otel {
            inner: Arc::new(Inner {
                instruments,
                endpoint,
                pipeline: Some(pipeline),
            }),
        })
    }

    /// Whether telemetry is on (`enabled` in the config).
    pub fn is_enabled(&self) -> bool {
        self.inner.pipeline.is_some()
    }

    /// The instruments to record with.
    pub fn instruments(&self) -> &Instruments {
        &self.inner.instruments
    }

    /// All metrics in the Prometheus text exposition format, for `GET /metrics` ("" when disabled
    /// or after [`Otel::shutdown`]).
    pub fn prometheus_text(&self) -> String {
        let Some(pipeline) = &self.inner.pipeline else {
            return String::new();
        };
        let mut out = Vec::with_capacity(16 * 1024);
        if let Err(error) = pipeline.prometheus.export(&mut out) {
            tracing::debug!(target: "telemetry::otel", "no Prometheus text: {error}");
            return String::new();
        }
        // The serializer writes UTF-8 only (names sanitized, values from `&str`).
        String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }

    /// A `tracing` layer exporting spans over OTLP; `None` without an OTLP endpoint or when
    /// disabled.
    pub fn tracing_layer<S>(&self) -> Option<impl tracing_subscriber::Layer<S>>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let provider = self.inner.pipeline.as_ref()?.tracer_provider.as_ref()?;
        let tracer = provider.tracer_with_scope(scope());
        // Busy/idle time per span would cost two clock reads per poll of every instrumented
        // future, and the thread of a span that moves between tokio workers says little while
        // its name costs an allocation per span: the span's own duration is what traces are for.
        Some(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_threads(false)
                .with_tracked_inactivity(false),
        )
    }

    /// Registers an observable instrument whose `callback` is called at each collection (scrape
    /// or OTLP export) and reports values through the `observe(value, attributes)` it is given.
    ///
    /// The callback runs on the collecting thread while the SDK holds its lock: it should only
    /// read atomics or a cheap snapshot. A no-op when disabled.
    pub fn observe_u64<F>(
        &self,
        name: &'static str,
        description: &'static str,
        unit: &'static str,
        kind: ObservableKind,
        callback: F,
    ) where
        F: Fn(&mut dyn FnMut(u64, &[(&'static str, &str)])) + Send + Sync + 'static,
    {
        let Some(pipeline) = &self.inner.pipeline else { return };
        let observe = observer(callback);
        // The SDK keeps the callback registered for the provider's lifetime: the returned
        // handles need not be kept.
        match kind {
            ObservableKind::Gauge => {
                pipeline
                    .meter
                    .u64_observable_gauge(name)
                    .with_description(description)
                    .with_unit(unit)
                    .with_callback(observe)
                    .build();
            }
            ObservableKind::Counter => {
                pipeline
                    .meter
                    .u64_observable_counter(name)
                    .with_description(description)
                    .with_unit(unit)
                    .with_callback(observe)
                    .build();
            }
        }
    }

    /// Like [`Otel::observe_u64`], for fractional values (scores, ratios).
    pub fn observe_f64<F>(
        &self,
        name: &'static str,
        description: &'static str,
        unit: &'static str,
        kind: ObservableKind,
        callback: F,
    ) where
        F: Fn(&mut dyn FnMut(f64, &[(&'static str, &str)])) + Send + Sync + 'static,
    {
        let Some(pipeline) = &self.inner.pipeline else { return };
        let observe = observer(callback);
        match kind {
            ObservableKind::Gauge => {
                pipeline
                    .meter
                    .f64_observable_gauge(name)
                    .with_description(description)
                    .with_unit(unit)
                    .with_callback(observe)
                    .build();
            }
            ObservableKind::Counter => {
                pipeline
                    .meter
                    .f64_observable_counter(name)
                    .with_description(description)
                    .with_unit(unit)
                    .with_callback(observe)
                    .build();
            }
        }
    }

    /// Shuts down both providers, each after a final collection and OTLP export (the SDK's
    /// shutdown is the flush); blocks until they are done, at most about 5 s (the SDK's
    /// limit). Later records and scrapes are dropped.
    ///
    /// On a multi-thread tokio runtime the wait uses `block_in_place`. On a current-thread
    /// runtime that also serves the collector (a test), call it from `spawn_blocking`.
    pub fn shutdown(&self) {
        let Some(pipeline) = &self.inner.pipeline else { return };
        // Errors are "already shut down" or a failed final export: nothing to do about either
        // while stopping, but worth a line in the debug log. (No `force_flush` first: it would
        // export everything twice and, with the collector down, double the wait.)
        let log = |what: &str, result: opentelemetry_sdk::error::OTelSdkResult| {
            if let Err(error) = result {
                tracing::debug!(target: "telemetry::otel", "{what} shutdown: {error}");
            }
        };
        let run = || {
            // The two signals in parallel: with the collector down each waits for its timeout.
            std::thread::scope(|scope| {
                if let Some(tracer_provider) = &pipeline.tracer_provider {
                    scope.spawn(|| log("traces", tracer_provider.shutdown()));
                }
                log("metrics", pipeline.meter_provider.shutdown());
            });
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(run)
            }
            _ => run(),
        }
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope::builder(SCOPE)
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}

/// Checks that `endpoint` is an http(s) URL without query, and drops a trailing `/` so that
/// `/v1/metrics` can be appended.
fn normalize_endpoint(endpoint: &str) -> Result<String, OtelError> {
    let invalid = |reason: String| OtelError::InvalidEndpoint {
        endpoint: endpoint.to_owned(),
        reason,
    };
    let uri: http::Uri = endpoint
        .parse()
        .map_err(|e: http::uri::InvalidUri| invalid(e.to_string()))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(invalid("expected an http:// or https:// URL".into())),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("no host".into()));
    }
    if uri.query().is_some() {
        return Err(invalid(
            "a base URL takes no query; /v1/metrics and /v1/traces are appended".into(),
        ));
    }
    Ok(endpoint.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_checked_and_normalized() {
        assert_eq!(
            normalize_endpoint("http://127.0.0.1:4318/").unwrap(),
            "http://127.0.0.1:4318"
        );
        assert_eq!(
            normalize_endpoint("https://otel.example/prefix").unwrap(),
            "https://otel.example/prefix"
        );
        for bad in ["127.0.0.1:4318", "ftp://host", "http://host/?a=b", "not a url"] {
            assert!(normalize_endpoint(bad).is_err(), "{bad}");
        }
    }

    fn prometheus_only() -> Otel {
        Otel::init(OtelConfig {
            service_name: "prom-test".into(),
            ..OtelConfig::default()
        })
        .unwrap()
    }

    /// The sum of the values of the samples of `name` whose labels include all of `filter`.
    fn sample(text: &str, name: &str, filter: &[(&str, &str)]) -> Option<f64> {
        let mut total = None;
        for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let (series_name, labels) = series.split_once('{').unwrap_or((series, "}"));
            if series_name != name {
                continue;
            }
            let labels = labels.trim_end_matches('}');
            let has = |(k, v): &(&str, &str)| labels.split(',').any(|l| l == format!("{k}=\"{v}\""));
            if filter.iter().all(has) {
                *total.get_or_insert(0.0) += value.parse::<f64>().unwrap();
            }
        }
        total
    }

    #[test]
    fn prometheus_text_has_the_metrics_with_exact_counts_and_bytes() {
        let otel = prometheus_only();
        let instruments = otel.instruments();
        instruments.backend_call("b1", "get", Duration::from_millis(2), 1000, "ok");
        instruments.backend_call("b1", "get", Duration::from_millis(30), 500, "ok");
        instruments.backend_call("b2", "put", Duration::from_millis(5), 4096, "error");
        instruments.backend_call("b2", "head", Duration::from_micros(50), 0, "not_found");
        instruments.s3_request("photos", "PutObject", 200, 4096, 0, Duration::from_millis(10));
        instruments.s3_request("photos", "GetObject", 200, 0, 1500, Duration::from_millis(4));
        instruments.s3_request("photos", "GetObject", 404, 0, 0, Duration::from_millis(1));
        instruments.s3_request("", "ListBuckets", 200, 0, 321, Duration::from_millis(1));
        instruments.prefix_access("photos", "2024/");
        instruments.prefix_access("photos", "2024/");
        otel.observe_u64(
            "mlsysops.backend.healthy",
            "1 if the backend answers",
            "",
            ObservableKind::Gauge,
            |observe| {
                observe(1, &[("mlsysops.backend", "b1")]);
                observe(0, &[("mlsysops.backend", "b2")]);
            },
        );
        otel.observe_u64(
            "mlsysops.healer.repaired",
            "Objects repaired",
            "{object}",
            ObservableKind::Counter,
            |observe| observe(12, &[]),
        );

        let text = otel.prometheus_text();
        let v = |name: &str, filter: &[(&str, &str)]| sample(&text, name, filter);
        // Backend.
        let backend = "mlsysops_backend_request_duration_seconds";
        assert_eq!(v(&format!("{backend}_count"), &[]), Some(4.0), "{text}");
        assert_eq!(
            v(
                &format!("{backend}_count"),
                &[("mlsysops_backend", "b1"), ("mlsysops_backend_outcome", "ok")]
            ),
            Some(2.0)
        );
        let b1_sum = v(&format!("{backend}_sum"), &[("mlsysops_backend", "b1")]).unwrap();
        assert!((b1_sum - 0.032).abs() < 1e-9, "{b1_sum}");
        // 50 µs lands below the first boundary, 100 µs.
        assert_eq!(
            v(
                &format!("{backend}_bucket"),
                &[("mlsysops_backend", "b2"), ("le", "0.0001")]
            ),
            Some(1.0)
        );
        assert_eq!(
            v(
                &format!("{backend}_bucket"),
                &[("mlsysops_backend", "b1"), ("le", "0.025")]
            ),
            Some(1.0)
        );
        assert_eq!(
            v(
                &format!("{backend}_bucket"),
                &[("mlsysops_backend", "b1"), ("le", "+Inf")]
            ),
            Some(2.0)
        );
        assert_eq!(
            v("mlsysops_backend_io_bytes_total", &[("mlsysops_backend", "b1")]),
            Some(1500.0)
        );
        assert_eq!(
            v("mlsysops_backend_io_bytes_total", &[("mlsysops_backend", "b2")]),
            Some(4096.0)
        );
        assert_eq!(v("mlsysops_backend_errors_total", &[]), Some(1.0));
        assert_eq!(
            v(
                "mlsysops_backend_errors_total",
                &[("mlsysops_backend", "b2"), ("mlsysops_backend_operation", "put")]
            ),
            Some(1.0)
        );
        // S3.
        let s3 = "http_server_request_duration_seconds";
        assert_eq!(v(&format!("{s3}_count"), &[]), Some(4.0));
        assert_eq!(
            v(
                &format!("{s3}_count"),
                &[
                    ("aws_s3_bucket", "photos"),
                    ("rpc_method", "GetObject"),
                    ("http_response_status_code", "404")
                ]
            ),
            Some(1.0)
        );
        assert_eq!(v(&format!("{s3}_count"), &[("rpc_method", "ListBuckets")]), Some(1.0));
        assert!(
            !text
                .lines()
                .any(|l| l.contains("ListBuckets") && l.contains("aws_s3_bucket")),
            "{text}"
        );
        assert_eq!(v("mlsysops_s3_request_body_bytes_total", &[]), Some(4096.0));
        assert_eq!(v("mlsysops_s3_response_body_bytes_total", &[]), Some(1821.0));
        assert_eq!(
            v("mlsysops_s3_response_body_bytes_total", &[("aws_s3_bucket", "photos")]),
            Some(1500.0)
        );
        assert_eq!(
            v("mlsysops_s3_prefix_accesses_total", &[("mlsysops_s3_prefix", "2024/")]),
            Some(2.0)
        );
        // Observables, although their builders' handles were dropped.
        assert_eq!(v("mlsysops_backend_healthy", &[("mlsysops_backend", "b1")]), Some(1.0));
        assert_eq!(v("mlsysops_backend_healthy", &[("mlsysops_backend", "b2")]), Some(0.0));
        assert_eq!(v("mlsysops_healer_repaired_total", &[]), Some(12.0));
        // The resource, once.
        assert!(text.contains("service_name=\"prom-test\""), "{text}");
        // A second scrape sees the same cumulative totals.
        assert_eq!(
            sample(&otel.prometheus_text(), "mlsysops_s3_request_body_bytes_total", &[]),
            Some(4096.0)
        );
    }

    #[test]
    fn fractional_observables_are_exported_as_is() {
        let otel = prometheus_only();
        otel.observe_f64(
            "mlsysops.trust.score",
            "Trust score",
            "",
            ObservableKind::Gauge,
            |observe| {
                observe(0.25, &[("mlsysops.subject", "backend:b1")]);
                observe(0.875, &[("mlsysops.subject", "backend:b2")]);
            },
        );
        otel.observe_f64("mlsysops.seconds.spent", "", "s", ObservableKind::Counter, |observe| {
            observe(1.5, &[])
        });
        let text = otel.prometheus_text();
        let v = |name: &str, filter: &[(&str, &str)]| sample(&text, name, filter);
        assert_eq!(
            v("mlsysops_trust_score", &[("mlsysops_subject", "backend:b1")]),
            Some(0.25),
            "{text}"
        );
        assert_eq!(
            v("mlsysops_trust_score", &[("mlsysops_subject", "backend:b2")]),
            Some(0.875)
        );
        assert_eq!(v("mlsysops_seconds_spent_seconds_total", &[]), Some(1.5), "{text}");
    }

    #[test]
    fn disabled_records_and_exports_nothing() {
        let otel = Otel::init(OtelConfig {
            otlp_endpoint: Some("http://127.0.0.1:4318".into()),
            enabled: false,
            ..OtelConfig::default()
        })
        .unwrap();
        assert!(!otel.is_enabled() && !otel.instruments().is_enabled());
        otel.instruments()
            .backend_call("b1", "get", Duration::from_millis(2), 1000, "error");
        otel.instruments()
            .s3_request("b", "GetObject", 200, 0, 10, Duration::from_millis(1));
        otel.observe_u64("x", "", "", ObservableKind::Gauge, |observe| observe(1, &[]));
        assert_eq!(otel.prometheus_text(), "");
        assert!(otel.tracing_layer::<tracing_subscriber::Registry>().is_none());
        otel.shutdown();
    }

    #[test]
    fn no_tracing_layer_without_endpoint() {
        assert!(prometheus_only()
            .tracing_layer::<tracing_subscriber::Registry>()
            .is_none());
    }

    #[test]
    fn zero_interval_with_endpoint_is_refused() {
        let cfg = OtelConfig {
            otlp_endpoint: Some("http://127.0.0.1:1".into()),
            export_interval: Duration::ZERO,
            ..OtelConfig::default()
        };
        assert!(matches!(Otel::init(cfg), Err(OtelError::ZeroExportInterval)));
    }
}

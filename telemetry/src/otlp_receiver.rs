//! An in-process OTLP/HTTP receiver, for tests that check what the gateway exports.
//!
//! It accepts `POST /v1/metrics` and `POST /v1/traces` with protobuf bodies
//! (`application/x-protobuf`, uncompressed: [`crate::otel::Otel`] does not compress), keeps
//! every request, and answers with an empty (valid) export response. Anything else gets 415.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point, AggregationTemporality};
use prost::Message;

/// A span as received, ids in lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedSpan {
    /// The span's name.
    pub name: String,
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// 16 hex digits; `None` for a root span.
    pub parent_span_id: Option<String>,
    /// The span's attributes, values rendered as text.
    pub attributes: BTreeMap<String, String>,
}

#[derive(Default)]
struct Received {
    metrics: Vec<ExportMetricsServiceRequest>,
    spans: Vec<ReceivedSpan>,
}

/// The receiver; its server stops when this is dropped.
pub struct OtlpReceiver {
    addr: SocketAddr,
    received: Arc<Mutex<Received>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl OtlpReceiver {
    /// Binds 127.0.0.1 on a free port and serves on the current tokio runtime.
    ///
    /// # Panics
    /// If no port can be bound (a broken test machine).
    pub async fn start() -> OtlpReceiver {
        let received = Arc::new(Mutex::new(Received::default()));
        let app = Router::new()
            .route("/v1/metrics", post(receive_metrics))
            .route("/v1/traces", post(receive_traces))
            .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0 for the OTLP receiver");
        let addr = listener.local_addr().expect("local address of the OTLP receiver");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        OtlpReceiver { addr, received, server }
    }

    /// The base URL to give the exporter, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Names of all metrics received so far.
    pub fn metric_names(&self) -> BTreeSet<String> {
        let received = self.lock();
        let metrics = received
            .metrics
            .iter()
            .flat_map(|r| &r.resource_metrics)
            .flat_map(|r| &r.scope_metrics);
        metrics.flat_map(|s| &s.metrics).map(|m| m.name.clone()).collect()
    }

    /// The total of metric `name` over the data points whose attributes include every
    /// `(key, value)` of `filter`: the value of a sum or gauge, the count of a histogram.
    /// `None` if no such data point was received.
    ///
    /// Per attribute set, a cumulative point replaces the earlier ones (each export repeats the
    /// total since start), a delta point adds to them.
    pub fn sum_of(&self, name: &str, filter: &[(&str, &str)]) -> Option<f64> {
        self.total(name, filter, |point| point.value)
    }

    /// Like [`OtlpReceiver::sum_of`], but the sum of a histogram's recorded values.
    pub fn histogram_sum_of(&self, name: &str, filter: &[(&str, &str)]) -> Option<f64> {
        self.total(name, filter, |point| point.histogram_sum)
    }

    /// The `service.name` of the resources that sent metrics.
    pub fn metric_service_names(&self) -> BTreeSet<String> {
        let received = self.lock();
        let resources = received
            .metrics
            .iter()
            .flat_map(|r| &r.resource_metrics)
            .filter_map(|r| r.resource.as_ref());
        let attributes = resources.flat_map(|r| &r.attributes);
        attributes
            .filter(|kv| kv.key == "service.name")
            .map(|kv| render(kv.value.as_ref()))
            .collect()
    }

    /// All spans received so far, in arrival order.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.lock().spans.clone()
    }

    /// Polls `condition` every 20 ms until it holds (`true`) or `timeout` passes (`false`).
    pub async fn wait_for(&self, condition: impl Fn(&OtlpReceiver) -> bool, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if condition(self) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn lock(&self) -> MutexGuard<'_, Received> {
        self.received.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn total(&self, name: &str, filter: &[(&str, &str)], pick: impl Fn(&Point) -> Option<f64>) -> Option<f64> {
        let received = self.lock();
        // Latest (cumulative) or accumulated (delta) value per attribute set, in arrival order.
        let mut per_series: BTreeMap<Vec<(String, String)>, f64> = BTreeMap::new();
        let requests = received
            .metrics
            .iter()
            .flat_map(|r| &r.resource_metrics)
            .flat_map(|r| &r.scope_metrics);
        for metric in requests.flat_map(|s| &s.metrics).filter(|m| m.name == name) {
            for point in points(metric) {
                let Some(value) = pick(&point) else { continue };
                if !filter
                    .iter()
                    .all(|(k, v)| point.attributes.iter().any(|(pk, pv)| pk == k && pv == v))
                {
                    continue;
                }
                let slot = per_series.entry(point.attributes).or_insert(0.0);
                if point.delta {
                    *slot += value;
                } else {
                    *slot = value;
                }
            }
        }
        (!per_series.is_empty()).then(|| per_series.values().sum())
    }
}

/// One data point, flattened for [`OtlpReceiver::total`].
struct Point {
    attributes: Vec<(String, String)>,
    delta: bool,
    value: Option<f64>,
    histogram_sum: Option<f64>,
}

fn points(metric: &opentelemetry_proto::tonic::metrics::v1::Metric) -> Vec<Point> {
    let number = |p: &opentelemetry_proto::tonic::metrics::v1::NumberDataPoint| match p.value {
        Some(number_data_point::Value::AsInt(v)) => Some(v as f64),
        Some(number_data_point::Value::AsDouble(v)) => Some(v),
        None => None,
    };
    let is_delta = |temporality: i32| temporality == AggregationTemporality::Delta as i32;
    match &metric.data {
        Some(metric::Data::Sum(sum)) => sum
            .data_points
            .iter()
            .map(|p| Point {
                attributes: attributes(&p.attributes),
                delta: is_delta(sum.aggregation_temporality),
                value: number(p),
                histogram_sum: None,
            })
            .collect(),
        Some(metric::Data::Gauge(gauge)) => gauge
            .data_points
            .iter()
            .map(|p| Point {
                attributes: attributes(&p.attributes),
                delta: false,
                value: number(p),
                histogram_sum: None,
            })
            .collect(),
        Some(metric::Data::Histogram(histogram)) => histogram
            .data_points
            .iter()
            .map(|p| Point {
                attributes: attributes(&p.attributes),
                delta: is_delta(histogram.aggregation_temporality),
                value: Some(p.count as f64),
                histogram_sum: p.sum,
            })
            .collect(),
        // The gateway exports no exponential histograms or summaries.
        _ => Vec::new(),
    }
}

fn attributes(kvs: &[KeyValue]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = kvs
        .iter()
        .map(|kv| (kv.key.clone(), render(kv.value.as_ref())))
        .collect();
    out.sort();
    out
}

fn render(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Refuses what this receiver cannot decode, with the reason in the body.
fn check_protobuf(headers: &HeaderMap) -> Result<(), (StatusCode, String)> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type != "application/x-protobuf" {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("content-type {content_type:?} is not protobuf"),
        ));
    }
    if let Some(encoding) = headers.get(header::CONTENT_ENCODING) {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("content-encoding {encoding:?} is not supported"),
        ));
    }
    Ok(())
}

fn ok() -> axum::response::Response {
    // An empty Export*ServiceResponse encodes to zero bytes.
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        Vec::new(),
    )
        .into_response()
}

async fn receive_metrics(
    State(received): State<Arc<Mutex<Received>>>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    if let Err(refusal) = check_protobuf(&headers) {
        return refusal.into_response();
    }
    match ExportMetricsServiceRequest::decode(body) {
        Ok(request) => {
            received.lock().unwrap_or_else(|p| p.into_inner()).metrics.push(request);
            ok()
        }
        Err(error) => (
            StatusCode::BAD_REQUEST,
            format!("not an ExportMetricsServiceRequest: {error}"),
        )
            .into_response(),
    }
}

async fn receive_traces(
    State(received): State<Arc<Mutex<Received>>>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    if let Err(refusal) = check_protobuf(&headers) {
        return refusal.into_response();
    }
    let request = match ExportTraceServiceRequest::decode(body) {
        Ok(request) => request,
        Err(error) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("not an ExportTraceServiceRequest: {error}"),
            )
                .into_response()
        }
    };
    let spans = request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans);
    let spans = spans.map(|span| ReceivedSpan {
        name: span.name.clone(),
        trace_id: hex(&span.trace_id),
        span_id: hex(&span.span_id),
        parent_span_id: (!span.parent_span_id.is_empty()).then(|| hex(&span.parent_span_id)),
        attributes: span
            .attributes
            .iter()
            .map(|kv| (kv.key.clone(), render(kv.value.as_ref())))
            .collect(),
    });
    received.lock().unwrap_or_else(|p| p.into_inner()).spans.extend(spans);
    ok()
}

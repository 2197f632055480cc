//! The accept loop both ports run: connections admitted under the cap, served by hyper with
//! the header, stream and timeout limits, watched for idleness, drained on shutdown.

use super::connections::{self, Activity, ConnectionCap, Watched};
use super::LimitsConfig;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::{Builder as ConnBuilder, HttpServerConnExec};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// hyper's HTTP/1.1 and HTTP/2 server with the header, stream and timeout limits applied.
#[must_use]
pub fn http_builder(limits: &LimitsConfig) -> ConnBuilder<TokioExecutor> {
    let mut http = ConnBuilder::new(TokioExecutor::new());
    let mut h1 = http.http1();
    h1.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        // The read buffer bounds the request head (hyper answers 431 beyond it); bodies are
        // read through it in chunks of at most this size.
        .max_buf_size(limits.max_header_bytes);
    if limits.max_headers != LimitsConfig::MAX_HEADERS {
        // Any other count makes hyper allocate the header array per request.
        h1.max_headers(limits.max_headers);
    }
    http.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_streams)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    http
}

/// Serves `listener` (the `port` named in logs) until `shutdown` resolves: each connection
/// admitted under the cap gets the service `make` builds for it (from its [`Activity`], which
/// the service must mark requests in) and a watchdog. Then waits up to `grace` for the
/// connections in flight.
pub async fn serve<F, S, B>(
    listener: TcpListener,
    port: &'static str,
    limits: &LimitsConfig,
    make: F,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) where
    F: Fn(Arc<Activity>) -> S,
    S: hyper::service::Service<http::Request<Incoming>, Response = http::Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    TokioExecutor: HttpServerConnExec<S::Future, B>,
{
    let http = http_builder(limits);
    let cap = ConnectionCap::new(limits.max_connections);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (socket, _) = tokio::select! {
            res = listener.accept() => match res {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors, mostly: back off rather than spin.
                    tracing::error!(port, error = %e, "accepting connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = cap.admit() else {
            connections::refuse(socket);
            continue;
        };
        let _ = socket.set_nodelay(true);
        let activity = Activity::new();
        let service = make(activity.clone());
        let conn = http.serve_connection(TokioIo::new(Watched::new(socket, activity.clone())), service);
        let conn = graceful.watch(conn.into_owned());
        let (header_timeout, idle_timeout) = (limits.header_timeout, limits.idle_timeout);
        tokio::spawn(async move {
            let _slot = slot;
            let _ = connections::watch(conn, activity, header_timeout, idle_timeout).await;
        });
    }
    tokio::select! {
        () = graceful.shutdown() => {},
        () = tokio::time::sleep(grace) => tracing::warn!(port, "grace period over; closing remaining connections"),
    }
}

//! Connections: a cap on how many are served at once, and a watchdog per connection that
//! closes it when its client sends no request in time or leaves it idle.
//!
//! hyper times out a slow request head on HTTP/1.1 (and the wait for the next one), but not
//! the wait before the protocol is even known (a connection that sends nothing, or half an
//! HTTP/2 preface), nor an idle HTTP/2 connection, nor a client that stopped reading its
//! response. The watchdog covers those from what it can see: when bytes last moved on the
//! socket ([`Watched`]), and whether a request is being worked on ([`Activity`]).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// At most `max` connections at once.
pub struct ConnectionCap {
    slots: Arc<Semaphore>,
    max: usize,
    /// Set while connections are being refused, so the log says so once per episode.
    refusing: AtomicBool,
}

impl ConnectionCap {
    /// A cap of `max` connections.
    #[must_use]
    pub fn new(max: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS))),
            max,
            refusing: AtomicBool::new(false),
        }
    }

    /// A slot for a new connection (held as long as it is served), or `None` when all are
    /// taken.
    pub fn admit(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(slot) = self.slots.clone().try_acquire_owned() {
            if self.refusing.swap(false, Ordering::Relaxed) {
                tracing::info!(max = self.max, "accepting connections again");
            }
            return Some(slot);
        }
        if !self.refusing.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                max = self.max,
                "connection limit reached; new connections are answered 503 SlowDown and closed until some end"
            );
        }
        None
    }
}

/// What a connection over the cap is sent before it is closed: an HTTP/1.1 `503 SlowDown`
/// (S3 clients retry it with backoff).
#[must_use]
pub fn refusal() -> Vec<u8> {
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code>\
                <Message>Please reduce your request rate: the gateway serves as many connections as it is configured for.</Message></Error>";
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Answers a connection over the cap without waiting on it: what fits in the socket buffer
/// now (all of it, on a fresh connection) is sent, then the socket is closed.
pub fn refuse(socket: tokio::net::TcpStream) {
    let _ = socket.try_write(&refusal());
}

/// What the watchdog knows of one connection.
pub struct Activity {
    origin: Instant,
    /// Milliseconds after `origin` at which bytes last moved.
    last_ms: AtomicU64,
    /// Requests whose response head is not yet produced (the gateway is working on them).
    working: AtomicUsize,
    /// Requests received so far.
    requests: AtomicU64,
}

impl Activity {
    /// A connection accepted now.
    #[must_use]
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            origin: Instant::now(),
            last_ms: AtomicU64::new(0),
            working: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
        })
    }

    fn touch(&self) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// A request arrived; it counts as being worked on until the guard is dropped (when its
    /// response head is ready, or it is cancelled).
    #[must_use]
    pub fn request(self: &Arc<Self>) -> Working {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.working.fetch_add(1, Ordering::Relaxed);
        self.touch();
        Working(self.clone())
    }

    /// Whether the connection should be closed at `now`, and if not, when to look again.
    fn verdict(&self, now: Instant, header_timeout: Duration, idle_timeout: Duration) -> Verdict {
        if self.requests.load(Ordering::Relaxed) == 0 {
            let deadline = self.origin + header_timeout;
            return if now >= deadline {
                Verdict::Close("no request within the header timeout")
            } else {
                Verdict::CheckAt(deadline)
            };
        }
        if self.working.load(Ordering::Relaxed) > 0 {
            // The gateway is busy (a body being read has its own clock): look again later.
            return Verdict::CheckAt(now + idle_timeout);
        }
        let last = self.origin + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        let deadline = last + idle_timeout;
        if now >= deadline {
            Verdict::Close("idle for the idle timeout")
        } else {
            Verdict::CheckAt(deadline)
        }
    }
}

enum Verdict {
    Close(&'static str),
    CheckAt(Instant),
}

/// A request being worked on; see [`Activity::request`].
pub struct Working(Arc<Activity>);

impl Drop for Working {
    fn drop(&mut self) {
        self.0.working.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// Runs a connection until it ends (`Some` of its output) or the watchdog closes it (`None`:
/// the connection is dropped, which closes the socket and cancels what it was doing).
pub async fn watch<F: Future>(
    conn: F,
    activity: Arc<Activity>,
    header_timeout: Duration,
    idle_timeout: Duration,
) -> Option<F::Output> {
    let mut conn = std::pin::pin!(conn);
    loop {
        let at = match activity.verdict(Instant::now(), header_timeout, idle_timeout) {
            Verdict::Close(why) => {
                tracing::debug!(why, "closing connection");
                return None;
            }
            Verdict::CheckAt(at) => at,
        };
        tokio::select! {
            out = &mut conn => return Some(out),
            () = tokio::time::sleep_until(at) => {}
        }
    }
}

/// A socket that notes in its [`Activity`] when bytes move.
pub struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> Watched<T> {
    /// `inner`, reporting to `activity`.
    pub fn new(inner: T, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(res, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        res
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        res
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const HEAD: Duration = Duration::from_secs(2);
    const IDLE: Duration = Duration::from_secs(10);

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_a_request_is_closed_at_the_header_timeout() {
        let activity = Activity::new();
        let start = Instant::now();
        let out = watch(std::future::pending::<()>(), activity, HEAD, IDLE).await;
        assert!(out.is_none());
        assert_eq!(start.elapsed(), HEAD);
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_moving_or_work_in_progress_keep_a_connection_open_and_idleness_closes_it() {
        let activity = Activity::new();
        let (client, server) = tokio::io::duplex(64);
        let mut server = Watched::new(server, activity.clone());
        let start = Instant::now();
        let conn = {
            let activity = activity.clone();
            async move {
                let mut buf = [0u8; 8];
                // A request: its head arrives, the gateway works on it for 30 s (longer than
                // the idle timeout), then the client trickles a byte every 8 s, then stops.
                server.read_exact(&mut buf[..1]).await.expect("read");
                let working = activity.request();
                tokio::time::sleep(Duration::from_secs(30)).await;
                drop(working);
                loop {
                    server.read_exact(&mut buf[..1]).await.expect("read");
                }
            }
        };
        let client = tokio::spawn(async move {
            let mut client = client;
            client.write_all(b"x").await.expect("write");
            tokio::time::sleep(Duration::from_secs(30)).await;
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_secs(8)).await;
                client.write_all(b"x").await.expect("write");
            }
            std::future::pending::<()>().await;
        });
        assert!(watch(conn, activity, HEAD, IDLE).await.is_none());
        // Work until 30 s, bytes at 38, 46 and 54 s, closed 10 s after the last.
        assert_eq!(start.elapsed(), Duration::from_secs(64));
        client.abort();
    }

    #[test]
    fn the_cap_admits_up_to_its_size_and_frees_slots_on_drop() {
        let cap = ConnectionCap::new(2);
        let a = cap.admit().expect("first");
        let _b = cap.admit().expect("second");
        assert!(cap.admit().is_none());
        drop(a);
        assert!(cap.admit().is_some());
        let refusal = String::from_utf8(refusal()).expect("text");
        assert!(refusal.starts_with("HTTP/1.1 503 "), "{refusal}");
        assert!(refusal.contains("<Code>SlowDown</Code>"), "{refusal}");
    }
}

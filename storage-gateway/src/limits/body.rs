//! A request body that fails when the client stops sending (slowloris on bodies).
//!
//! The clock runs only while the gateway waits for the next frame: a PUT held back by slow
//! backends (it stops polling its body) is not the client's fault and is not cut off.

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;

/// The error a stalled body ends with: S3's `RequestTimeout` (400).
#[must_use]
pub fn stalled(timeout: Duration) -> s3s::S3Error {
    s3s::s3_error!(
        RequestTimeout,
        "Your socket connection to the server was not read from or written to within the timeout period ({}s without request body data).",
        timeout.as_secs()
    )
}

/// Wraps a request body: no frame for `timeout` while one is awaited ends it with
/// [`stalled`]; so does every poll after that.
pub struct PacedBody<B> {
    inner: B,
    timeout: Duration,
    /// Made at the first wait and reset at the next ones (not reallocated per chunk).
    deadline: Option<Pin<Box<Sleep>>>,
    /// Whether `deadline` is running: from a poll that found no frame until the next frame.
    armed: bool,
    failed: bool,
}

impl<B> PacedBody<B> {
    /// `inner`, cut off after `timeout` without data.
    pub fn new(inner: B, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            deadline: None,
            armed: false,
            failed: false,
        }
    }
}

impl<B> HttpBody for PacedBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.failed {
            return Poll::Ready(Some(Err(stalled(self.timeout).into())));
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                self.armed = false;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let timeout = self.timeout;
                let arm = !self.armed;
                self.armed = true;
                let deadline = match &mut self.deadline {
                    Some(d) => {
                        if arm {
                            d.as_mut().reset(tokio::time::Instant::now() + timeout);
                        }
                        d
                    }
                    None => self.deadline.insert(Box::pin(tokio::time::sleep(timeout))),
                };
                if deadline.as_mut().poll(cx).is_ready() {
                    self.failed = true;
                    self.deadline = None;
                    tracing::info!(timeout_secs = timeout.as_secs(), "request body stalled; cutting it off");
                    return Poll::Ready(Some(Err(stalled(timeout).into())));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        !self.failed && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shim::{next_frame, ChannelBody};

    /// A minimal channel-fed body, so the test needs no extra crate.
    mod shim {
        use super::*;
        use tokio::sync::mpsc;

        pub struct ChannelBody(pub mpsc::Receiver<Bytes>);

        impl HttpBody for ChannelBody {
            type Data = Bytes;
            type Error = std::convert::Infallible;
            fn poll_frame(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
                self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
            }
        }

        pub async fn next_frame<B: HttpBody + Unpin>(b: &mut B) -> Option<Result<Frame<B::Data>, B::Error>> {
            std::future::poll_fn(|cx| Pin::new(&mut *b).poll_frame(cx)).await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_keeps_coming_passes_and_one_that_stalls_fails() {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let mut body = PacedBody::new(ChannelBody(rx), Duration::from_secs(5));
        // Data every 4 s: never 5 s without a frame.
        let feeder = tokio::spawn(async move {
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_secs(4)).await;
                tx.send(Bytes::from_static(b"x")).await.unwrap();
            }
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(tx);
        });
        for _ in 0..3 {
            let frame = next_frame(&mut body).await.expect("a frame").expect("data");
            assert_eq!(frame.into_data().ok(), Some(Bytes::from_static(b"x")));
        }
        let started = tokio::time::Instant::now();
        let err = next_frame(&mut body).await.expect("an error").expect_err("stalled");
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        let s3 = err.downcast::<s3s::S3Error>().expect("an S3 error");
        assert_eq!(s3.code(), &s3s::S3ErrorCode::RequestTimeout);
        assert!(next_frame(&mut body).await.expect("still failing").is_err());
        feeder.abort();
    }
}

//! Time limits on clients, as approuter's variables set them:
//!
//! - `INCOMING_CONNECTION_TIMEOUT` ([`IdleConnection`]): a client connection on which no byte
//!   moves either way for this long is closed (Node's `server.timeout`). Upgraded connections
//!   (WebSockets) are exempt once the router answered 101 ([`IdleExemption`]).
//! - `INCOMING_REQUEST_TIMEOUT` ([`RequestDeadline`]): a request whose body has not fully arrived
//!   this long after the request started is answered with 408 and the connection closed (Node's
//!   `server.requestTimeout`).
//!
//! `SERVER_KEEP_ALIVE` is applied through the header read timeout ([`crate::limits`]): an idle
//! keep-alive connection is closed when the next request head does not arrive in time.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Request extension: lets the pipeline exempt its connection from the idle timeout once the
/// connection is upgraded (a WebSocket may be quiet for long).
#[derive(Debug, Clone, Default)]
pub struct IdleExemption(Arc<AtomicBool>);

impl IdleExemption {
    pub fn exempt(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn is_exempt(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// A client stream that fails with `TimedOut` once no byte moved either way for `timeout`.
/// Activity only records a time stamp; the timer is re-armed when it fires early.
pub struct IdleConnection<T> {
    inner: T,
    timeout: Duration,
    last_activity: Instant,
    timer: Pin<Box<Sleep>>,
    exemption: IdleExemption,
}

impl<T> IdleConnection<T> {
    /// Wraps `inner`; the returned handle belongs into the connection's request extensions.
    pub fn new(inner: T, timeout: Duration) -> (Self, IdleExemption) {
        let exemption = IdleExemption::default();
        let now = Instant::now();
        let connection = Self {
            inner,
            timeout,
            last_activity: now,
            timer: Box::pin(tokio::time::sleep_until(now + timeout)),
            exemption: exemption.clone(),
        };
        (connection, exemption)
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// After the inner stream had nothing to do: has the connection been idle too long?
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        if self.exemption.is_exempt() {
            return Poll::Pending;
        }
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let deadline = self.last_activity + self.timeout;
            if Instant::now() >= deadline {
                return Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "client connection idle for INCOMING_CONNECTION_TIMEOUT",
                ));
            }
            self.timer.as_mut().reset(deadline);
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleConnection<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    this.last_activity = Instant::now();
                }
                Poll::Ready(result)
            }
            Poll::Pending => this.poll_idle(cx).map(Err),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleConnection<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, data) {
            Poll::Ready(result) => {
                if matches!(result, Ok(n) if n > 0) {
                    this.last_activity = Instant::now();
                }
                Poll::Ready(result)
            }
            Poll::Pending => this.poll_idle(cx).map(Err),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(result) => {
                if matches!(result, Ok(n) if n > 0) {
                    this.last_activity = Instant::now();
                }
                Poll::Ready(result)
            }
            Poll::Pending => this.poll_idle(cx).map(Err),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Set when a request body missed its deadline; the pipeline then answers 408.
#[derive(Debug, Clone, Default)]
pub struct RequestTimedOut(Arc<AtomicBool>);

impl RequestTimedOut {
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// A request body that fails once `INCOMING_REQUEST_TIMEOUT` has passed since the request
/// started and the body is still not complete.
pub struct RequestDeadline {
    inner: Body,
    timer: Option<Pin<Box<Sleep>>>,
    timed_out: RequestTimedOut,
}

impl RequestDeadline {
    /// Wraps a body that still has to arrive; `None` when there is nothing to wait for.
    pub fn wrap(
        body: Body,
        timeout: Duration,
        started: Instant,
    ) -> (Body, Option<RequestTimedOut>) {
        if body.is_end_stream() {
            return (body, None);
        }
        let timed_out = RequestTimedOut::default();
        let wrapped = Self {
            inner: body,
            timer: Some(Box::pin(tokio::time::sleep_until(started + timeout))),
            timed_out: timed_out.clone(),
        };
        (Body::new(wrapped), Some(timed_out))
    }
}

impl HttpBody for RequestDeadline {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(None) => {
                this.timer = None;
                Poll::Ready(None)
            }
            Poll::Ready(frame) => Poll::Ready(frame),
            Poll::Pending => match this.timer.as_mut().map(|t| t.as_mut().poll(cx)) {
                Some(Poll::Ready(())) => {
                    this.timer = None;
                    this.timed_out.0.store(true, Ordering::Relaxed);
                    Poll::Ready(Some(Err(axum::Error::new(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "request body not complete within INCOMING_REQUEST_TIMEOUT",
                    )))))
                }
                _ => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The 408 answer; the connection is closed after it, as Node does.
pub fn request_timeout_response() -> Response {
    let mut response = Response::new(Body::from("Request Timeout\n"));
    *response.status_mut() = StatusCode::REQUEST_TIMEOUT;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn idle_connections_time_out_and_activity_postpones_it() {
        let (client, server) = tokio::io::duplex(64);
        let (mut idle, _exemption) = IdleConnection::new(server, Duration::from_secs(10));
        let mut client = client;
        tokio::time::sleep(Duration::from_secs(8)).await;
        client.write_all(b"x").await.expect("write");
        let mut byte = [0u8; 1];
        idle.read_exact(&mut byte).await.expect("read");
        // 8 s after the activity: still alive; 10 s: timed out.
        let started = Instant::now();
        let err = idle.read(&mut byte).await.expect_err("idle");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn exempt_connections_never_time_out() {
        let (_client, server) = tokio::io::duplex(64);
        let (mut idle, exemption) = IdleConnection::new(server, Duration::from_secs(1));
        exemption.exempt();
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(60), idle.read(&mut byte)).await;
        assert!(read.is_err(), "still waiting after 60 s");
    }
}

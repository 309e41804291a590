//! The destination `timeout` as an idle timeout, like approuter's socket timeout: the exchange
//! fails only when neither request bytes go up nor response bytes come down for that long, so a
//! long upload or download that keeps moving is never cut.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Last time (ms after `start`) data moved for one exchange.
#[derive(Debug, Clone)]
pub struct Activity {
    start: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Activity {
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

/// The upstream stayed silent for the whole timeout.
#[derive(Debug, thiserror::Error)]
#[error("upstream idle for longer than the destination timeout")]
pub struct IdleTimeout;

/// Waits for `response` while the exchange is active; fails after `timeout` without activity.
pub async fn until_idle<F: Future>(
    response: F,
    activity: &Activity,
    timeout: Duration,
) -> Result<F::Output, IdleTimeout> {
    tokio::pin!(response);
    loop {
        let deadline = activity.last() + timeout;
        tokio::select! {
            out = &mut response => return Ok(out),
            _ = tokio::time::sleep_until(deadline) => {
                if activity.last() + timeout <= Instant::now() {
                    return Err(IdleTimeout);
                }
            }
        }
    }
}

pin_project! {
    /// A request body that marks the exchange active whenever a frame goes up.
    pub struct TouchBody<B> {
        #[pin]
        inner: B,
        activity: Activity,
    }
}

impl<B> TouchBody<B> {
    pub fn new(inner: B, activity: Activity) -> Self {
        Self { inner, activity }
    }
}

impl<B: Body> Body for TouchBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Poll::Ready(Some(Ok(_))) = &polled {
            this.activity.touch();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project! {
    /// A response body that fails when no frame arrives within the timeout.
    pub struct IdleTimeoutBody<B> {
        #[pin]
        inner: B,
        #[pin]
        sleep: Sleep,
        timeout: Duration,
    }
}

impl<B> IdleTimeoutBody<B> {
    pub fn new(inner: B, timeout: Duration) -> Self {
        Self {
            inner,
            sleep: tokio::time::sleep(timeout),
            timeout,
        }
    }
}

impl<B> Body for IdleTimeoutBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => {
                let deadline = Instant::now() + *this.timeout;
                this.sleep.as_mut().reset(deadline);
                Poll::Ready(frame.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending => match this.sleep.poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(IdleTimeout)))),
                Poll::Pending => Poll::Pending,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn activity_extends_the_deadline() {
        let activity = Activity::new();
        let toucher = activity.clone();
        let slow = async move {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(80)).await;
                toucher.touch();
            }
            "done"
        };
        assert_eq!(
            until_idle(slow, &activity, Duration::from_millis(100))
                .await
                .ok(),
            Some("done")
        );
        let silent = tokio::time::sleep(Duration::from_millis(500));
        assert!(
            until_idle(silent, &Activity::new(), Duration::from_millis(100))
                .await
                .is_err()
        );
    }
}

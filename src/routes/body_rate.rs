//! A minimum rate for request bodies: a body must begin within a grace period (the header
//! timeout) and then keep up an average of at least `FACELOCK_MIN_BODY_BYTES_PER_SEC`, or it is
//! cut and the request answered 408 `BODY_TOO_SLOW`. Without it, a client trickling a byte a
//! second holds its connection slot for the whole request timeout; with it, for a few seconds,
//! unless it keeps sending.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    body::Body,
    extract::Request,
    middleware::Next,
    response::{IntoResponse, Response},
};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::error::ApiError;

/// The body arrived more slowly than the minimum rate.
#[derive(Debug, thiserror::Error)]
#[error("the request body arrived more slowly than {0} bytes a second")]
pub struct BodyTooSlow(pub u64);

/// The rule every body is held to.
#[derive(Clone, Copy, Debug)]
pub struct MinRate {
    /// Bytes a second, on average since the grace period ended; 0 turns the rule off.
    pub bytes_per_sec: u64,
    pub grace: Duration,
}

impl MinRate {
    /// Middleware: wraps the request's body in the rule. Whatever the handler made of a cut
    /// body (each body parser words a broken stream its own way), the answer is 408.
    pub async fn enforce(self, request: Request, next: Next) -> Response {
        if self.bytes_per_sec == 0 {
            return next.run(request).await;
        }
        let cut = Arc::new(AtomicBool::new(false));
        let request = request.map(|body| Body::new(RateBody::new(body, self, cut.clone())));
        let response = next.run(request).await;
        if cut.load(Ordering::Relaxed) {
            return ApiError::BodyTooSlow.into_response();
        }
        response
    }
}

/// A body that fails once it falls behind the rule.
struct RateBody {
    inner: Body,
    rule: MinRate,
    started: Instant,
    received: u64,
    /// When the next bytes must have arrived for the average to hold.
    deadline: Pin<Box<Sleep>>,
    /// Set when the body is cut.
    cut: Arc<AtomicBool>,
}

impl RateBody {
    fn new(inner: Body, rule: MinRate, cut: Arc<AtomicBool>) -> Self {
        let started = Instant::now();
        Self {
            inner,
            rule,
            started,
            received: 0,
            deadline: Box::pin(tokio::time::sleep_until(started + rule.grace)),
            cut,
        }
    }

    /// The grace period, then one second for every `bytes_per_sec` received.
    fn next_deadline(&self) -> Instant {
        let earned = Duration::from_secs_f64(self.received as f64 / self.rule.bytes_per_sec as f64);
        self.started + self.rule.grace + earned
    }
}

impl HttpBody for RateBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.received += data.len() as u64;
                    let next = self.next_deadline();
                    self.deadline.as_mut().reset(next);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    self.cut.store(true, Ordering::Relaxed);
                    let error = BodyTooSlow(self.rule.bytes_per_sec);
                    Poll::Ready(Some(Err(axum::Error::new(error))))
                }
                Poll::Pending => Poll::Pending,
            },
            done => done,
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
    use http_body_util::BodyExt;

    /// A body sending `chunk` bytes every `every`, forever.
    struct Trickle {
        chunk: usize,
        every: Duration,
        next: Pin<Box<Sleep>>,
    }

    impl HttpBody for Trickle {
        type Data = axum::body::Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
            match self.next.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    let at = Instant::now() + self.every;
                    self.next.as_mut().reset(at);
                    let data = axum::body::Bytes::from(vec![b'x'; self.chunk]);
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
                Poll::Pending => Poll::Pending,
            }
        }
    }

    fn trickle(chunk: usize, every: Duration) -> Body {
        Body::new(Trickle {
            chunk,
            every,
            next: Box::pin(tokio::time::sleep(every)),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_is_cut_after_the_grace_period_and_a_steady_body_is_not() {
        let rule = MinRate {
            bytes_per_sec: 1000,
            grace: Duration::from_secs(5),
        };
        // 10 bytes a second: the grace, then the 50 bytes received buy 50 ms more.
        let started = Instant::now();
        let cut = Arc::new(AtomicBool::new(false));
        let mut slow = RateBody::new(trickle(10, Duration::from_secs(1)), rule, cut.clone());
        let error = loop {
            match slow.frame().await {
                Some(Ok(_)) => continue,
                Some(Err(e)) => break e,
                None => panic!("the trickle ended"),
            }
        };
        assert!(cut.load(Ordering::Relaxed), "{error}");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(5) && took < Duration::from_secs(6),
            "{took:?}"
        );

        // 2,000 bytes a second keeps going past a minute.
        let kept = Arc::new(AtomicBool::new(false));
        let mut steady =
            RateBody::new(trickle(200, Duration::from_millis(100)), rule, kept.clone());
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            steady.frame().await.unwrap().unwrap();
        }
        assert!(!kept.load(Ordering::Relaxed));
    }
}

//! A client's request body that must keep moving (issue 20): a body frame at least every `limit`, or the body
//! fails with [`Stalled`]. Without it a local process could declare a body, send none of it and hold one of the
//! proxy's in-flight slots for as long as it keeps the connection open; 128 of them and every client of the
//! proxy gets 503s. A person's client never pauses that long between two chunks on loopback.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Bytes, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

pub type BoxError = Box<dyn StdError + Send + Sync>;

/// The client sent no part of its request body for this long.
#[derive(Debug)]
pub struct Stalled(pub Duration);

impl fmt::Display for Stalled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the client sent no part of the request body for {} s", self.0.as_secs())
    }
}

impl StdError for Stalled {}

impl Stalled {
    /// The `Stalled` in an error's chain (hyper's client wraps the body's error in its own).
    pub fn find<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a Stalled> {
        let mut next = Some(e);
        while let Some(e) = next {
            if let Some(s) = e.downcast_ref::<Stalled>() {
                return Some(s);
            }
            next = e.source();
        }
        None
    }
}

pub struct Idle<B> {
    inner: B,
    limit: Duration,
    timer: Pin<Box<Sleep>>,
}

impl<B> Idle<B> {
    /// Must be called on the proxy's runtime (the timer is tokio's).
    pub fn new(inner: B, limit: Duration) -> Self {
        Idle { inner, limit, timer: Box::pin(tokio::time::sleep(limit)) }
    }
}

impl<B> Body for Idle<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let limit = this.limit;
                this.timer.as_mut().reset(Instant::now() + limit);
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(Stalled(this.limit))))),
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

//! An answer's body passed through frame by frame to a [`Watcher`]: it sees each data chunk as it goes (nothing
//! is held back, so watching never delays the answer) and is told once how the body ended — to its end,
//! failed, or dropped before its end (the client went away). Used for the outcome record
//! ([`crate::audit_stage::outcome`]) and for spans that last as long as the body ([`crate::otel::body`]).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body_util::BodyExt as _;
use hyper::body::{Body as _, Frame, SizeHint};

use crate::body::Body;

/// How a watched body ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The client was given all of it (or the server stopped polling a body that said it had ended).
    Complete,
    /// Reading it from its source failed.
    Failed(String),
    /// Dropped before its end: the client went away.
    Abandoned,
}

/// Someone watching a body.
pub trait Watcher: Send + Sync + Unpin + 'static {
    /// A data chunk, as it is passed on.
    fn saw(&mut self, chunk: &Bytes);
    /// Called once, when the body has ended one way or another.
    fn ended(self, how: Ending);
}

/// Wraps `resp`'s body so that `watcher` sees it pass.
pub fn watch<W: Watcher>(resp: Response<Body>, watcher: W) -> Response<Body> {
    resp.map(|inner| {
        Watched {
            inner,
            watcher: Some(watcher),
        }
        .boxed()
    })
}

struct Watched<W: Watcher> {
    inner: Body,
    /// `None` once told how the body ended.
    watcher: Option<W>,
}

impl<W: Watcher> Watched<W> {
    fn end(&mut self, how: Ending) {
        if let Some(w) = self.watcher.take() {
            w.ended(how);
        }
    }
}

impl<W: Watcher> hyper::body::Body for Watched<W> {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(w), Some(data)) = (&mut this.watcher, frame.data_ref()) {
                    w.saw(data);
                }
                // A server may not poll again once the body says it has ended.
                if this.inner.is_end_stream() {
                    this.end(Ending::Complete);
                }
            }
            Poll::Ready(Some(Err(e))) => this.end(Ending::Failed(e.to_string())),
            Poll::Ready(None) => this.end(Ending::Complete),
            Poll::Pending => {}
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

impl<W: Watcher> Drop for Watched<W> {
    fn drop(&mut self) {
        let how = if self.inner.is_end_stream() {
            Ending::Complete
        } else {
            Ending::Abandoned
        };
        self.end(how);
    }
}

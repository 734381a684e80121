//! The response body: the inner service's, holding the request's concurrency leases until it
//! ends or is dropped, or one the gate wrote itself.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::gate::Leases;

pin_project! {
    /// The body of a response that passed through [`super::GateService`].
    #[derive(Debug)]
    pub struct GateBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<B> {
        // The inner service's body; the leases go back once its last frame is out.
        Inner { #[pin] body: B, leases: Option<Leases> },
        // A body the gate wrote (429, 403, an empty preflight answer).
        Own { bytes: Option<Bytes> },
    }
}

impl<B> GateBody<B> {
    pub(super) fn inner(body: B, leases: Leases) -> Self {
        let leases = (!leases.is_empty()).then_some(leases);
        Self {
            kind: Kind::Inner { body, leases },
        }
    }

    pub(super) fn own(bytes: Bytes) -> Self {
        Self {
            kind: Kind::Own {
                bytes: (!bytes.is_empty()).then_some(bytes),
            },
        }
    }
}

impl<B> Body for GateBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Own { bytes } => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            KindProj::Inner { body, leases } => {
                let polled = body.poll_frame(cx);
                if let Poll::Ready(None | Some(Err(_))) = polled {
                    // The response is over: the request no longer counts as in flight.
                    drop(leases.take());
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Own { bytes } => bytes.is_none(),
            Kind::Inner { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Own { bytes } => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            Kind::Inner { body, .. } => body.size_hint(),
        }
    }
}

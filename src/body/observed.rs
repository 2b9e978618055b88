use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pub(crate) use sealed::Observer;

mod sealed {
    /// What an [`Observed`](super::Observed) body tells as frames pass (see the
    /// [module docs](crate::body)). Implemented by the crate's own watchers only.
    pub trait Observer {
        /// Whether frames are still of interest. Once false, nothing more is called:
        /// [`end`](Self::end) and [`error`](Self::error) must make it false.
        fn watching(&self) -> bool;

        /// A data frame's bytes passed; returns whether that was the body's last.
        fn data<D: bytes::Buf>(&mut self, data: &D) -> bool;

        /// The body ended.
        fn end(&mut self);

        /// The body failed; by default the same as its end.
        fn error(&mut self) {
            self.end();
        }

        /// The body was dropped before its end; by default the same as its end.
        fn dropped(&mut self) {
            self.end();
        }
    }
}

pin_project! {
    /// A body that passes its inner body's frames through unchanged and tells its
    /// observer about each (see the [module docs](crate::body)).
    pub struct Observed<B, O: Observer> {
        #[pin]
        inner: B,
        observer: O,
    }

    impl<B, O: Observer> PinnedDrop for Observed<B, O> {
        fn drop(this: Pin<&mut Self>) {
            let observer = this.project().observer;
            if observer.watching() {
                observer.dropped();
            }
        }
    }
}

impl<B, O: Observer> Observed<B, O> {
    pub(crate) fn new(inner: B, observer: O) -> Self {
        Observed { inner, observer }
    }

    /// The wrapped body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }
}

impl<B: std::fmt::Debug, O: Observer + std::fmt::Debug> std::fmt::Debug for Observed<B, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observed")
            .field("inner", &self.inner)
            .field("observer", &self.observer)
            .finish()
    }
}

impl<B: Body, O: Observer> Body for Observed<B, O> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        let observer = &mut *this.observer;
        if !observer.watching() {
            return Poll::Ready(frame);
        }
        match &frame {
            None => observer.end(),
            Some(Err(_)) => observer.error(),
            Some(Ok(frame)) => {
                let last = match frame.data_ref() {
                    Some(data) => observer.data(data),
                    None => frame.is_trailers(),
                };
                if (last || this.inner.is_end_stream()) && observer.watching() {
                    observer.end();
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

//! An export streamed as the response body while the store writes it: constant memory
//! whatever the number of records, and a client that leaves stops the export.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::Frame;
use tokio::io::{AsyncRead, DuplexStream, ReadBuf};
use tokio::task::JoinHandle;

use crate::store::StoreError;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How much the store may write ahead of the client.
pub(crate) const PIPE_BYTES: usize = 64 * 1024;
const CHUNK_BYTES: usize = 16 * 1024;

/// The read end of the pipe the export task writes into.
pub(crate) struct Download {
    reader: DuplexStream,
    export: Option<JoinHandle<Result<u64, StoreError>>>,
    buf: Box<[u8]>,
}

impl Download {
    pub(crate) fn new(reader: DuplexStream, export: JoinHandle<Result<u64, StoreError>>) -> Self {
        Download {
            reader,
            export: Some(export),
            buf: vec![0; CHUNK_BYTES].into_boxed_slice(),
        }
    }
}

impl http_body::Body for Download {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let mut read = ReadBuf::new(&mut this.buf);
        ready!(Pin::new(&mut this.reader).poll_read(cx, &mut read))?;
        if !read.filled().is_empty() {
            return Poll::Ready(Some(Ok(Frame::data(Bytes::copy_from_slice(read.filled())))));
        }
        // The pipe ended: the export is over. A failed one ends the body with an error,
        // so the client sees a broken transfer rather than a file that looks complete.
        let Some(export) = this.export.as_mut() else {
            return Poll::Ready(None);
        };
        let outcome = ready!(Pin::new(export).poll(cx));
        this.export = None;
        match outcome {
            Ok(Ok(_)) => Poll::Ready(None),
            Ok(Err(error)) => {
                tracing::error!(%error, "analytics export failed");
                Poll::Ready(Some(Err("the export failed; see the server's log".into())))
            }
            Err(error) => Poll::Ready(Some(Err(Box::new(error)))),
        }
    }
}

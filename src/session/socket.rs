//! The read side of an upgraded connection as a stream of byte chunks, for
//! [`super::transport::FrameReader`].
//!
//! Reads go through a buffer on the stack and only what arrived is copied out, so an
//! idle connection holds no read buffer.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use futures_util::Stream;
use tokio::io::{AsyncRead, ReadBuf};

/// Most bytes taken from the socket in one read.
const READ: usize = 8 * 1024;

/// Byte chunks from the socket; the stream ends at EOF or on a socket error (the
/// connection is gone either way).
pub struct SocketReader<R> {
    io: R,
    /// Bytes the HTTP parser had read past the upgrade request.
    first: Bytes,
    done: bool,
}

impl<R> SocketReader<R> {
    pub fn new(io: R, first: Bytes) -> Self {
        SocketReader { io, first, done: false }
    }
}

impl<R: AsyncRead + Unpin> Stream for SocketReader<R> {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if !this.first.is_empty() {
            return Poll::Ready(Some(Ok(std::mem::take(&mut this.first))));
        }
        if this.done {
            return Poll::Ready(None);
        }
        let mut stack = [0u8; READ];
        let mut buf = ReadBuf::new(&mut stack);
        match Pin::new(&mut this.io).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                Poll::Ready(Some(Ok(Bytes::copy_from_slice(buf.filled()))))
            }
            Poll::Ready(r) => {
                if let Err(e) = r {
                    log::debug!("socket read: {e}");
                }
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

//! Bytes → WebSocket frames for the client→server direction: the request payload fed
//! into a [`FrameDecoder`], which holds every framing rule and the size limit.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use actix_web::web::Payload;
use bytes::{Bytes, BytesMut};
use futures_util::Stream;

pub use crate::protocol::frames::{FrameDecoder, Incoming, ReadError};

/// Decodes frames from a stream of byte chunks (the socket's read half; an actix
/// request payload by default). The buffer is released whenever it is empty, so an
/// idle connection holds none.
pub struct FrameReader<S = Payload> {
    payload: S,
    buf: BytesMut,
    decoder: FrameDecoder,
    done: bool,
}

impl<S> FrameReader<S> {
    pub fn new(payload: S, max: usize) -> Self {
        FrameReader {
            payload,
            buf: BytesMut::new(),
            decoder: FrameDecoder::new(max),
            done: false,
        }
    }
}

impl<S, E> Stream for FrameReader<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    type Item = Result<Incoming, ReadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            match this.decoder.decode(&mut this.buf) {
                Ok(Some(f)) => {
                    // Nothing may follow a close frame (RFC 6455 §5.5.1), nor an error.
                    this.done = matches!(f, Incoming::Close(_));
                    return Poll::Ready(Some(Ok(f)));
                }
                Ok(None) => {}
                Err(e) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
            }
            if this.buf.is_empty() {
                // No allocation kept while waiting for the next bytes.
                this.buf = BytesMut::new();
            }
            match Pin::new(&mut this.payload).poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => this.buf.extend_from_slice(&chunk),
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(ReadError::Protocol(e.to_string()))));
                }
                Poll::Ready(None) => {
                    this.done = true;
                    return Poll::Ready(None);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

//! Bytes → WebSocket frames for the client→server direction.
//!
//! actix-http's parser waits for a whole frame before it checks the size limit, so a
//! client could make the server buffer a frame of any announced length. This reader
//! checks the announced length in the frame header first and fails fast; it also
//! reassembles fragmented messages under the same limit.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use actix_http::ws::{CloseReason, OpCode, Parser, ProtocolError};
use actix_web::web::Payload;
use bytes::{Bytes, BytesMut};
use futures_util::Stream;

/// A complete client frame or message.
#[derive(Debug)]
pub enum Incoming {
    Text(Bytes),
    Binary(Bytes),
    Ping(Bytes),
    Pong(Bytes),
    Close(Option<CloseReason>),
}

/// Why the client side of a connection cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("frame or message larger than {0} bytes")]
    TooBig(usize),
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// Decodes frames from a stream of byte chunks (the socket's read half; an actix
/// request payload by default). The buffer is released whenever it is empty, so an
/// idle connection holds none.
pub struct FrameReader<S = Payload> {
    payload: S,
    buf: BytesMut,
    max: usize,
    /// A fragmented message being reassembled.
    partial: Option<(OpCode, BytesMut)>,
    done: bool,
}

impl<S> FrameReader<S> {
    pub fn new(payload: S, max: usize) -> Self {
        FrameReader {
            payload,
            buf: BytesMut::new(),
            max,
            partial: None,
            done: false,
        }
    }

    /// The payload length announced by the frame header at the start of `buf`.
    fn announced_len(buf: &[u8]) -> Option<u64> {
        if buf.len() < 2 {
            return None;
        }
        match buf[1] & 0x7f {
            126 if buf.len() >= 4 => Some(u16::from_be_bytes([buf[2], buf[3]]) as u64),
            127 if buf.len() >= 10 => Some(u64::from_be_bytes(buf[2..10].try_into().ok()?)),
            126 | 127 => None,
            n => Some(n as u64),
        }
    }

    fn next_frame(&mut self) -> Result<Option<Incoming>, ReadError> {
        loop {
            if let Some(n) = Self::announced_len(&self.buf) {
                if n > self.max as u64 {
                    return Err(ReadError::TooBig(self.max));
                }
            }
            let (fin, op, payload) = match Parser::parse(&mut self.buf, true, self.max) {
                Ok(Some(f)) => f,
                Ok(None) => return Ok(None),
                Err(ProtocolError::Overflow) => return Err(ReadError::TooBig(self.max)),
                Err(e) => return Err(ReadError::Protocol(e.to_string())),
            };
            let payload = payload.unwrap_or_default();
            match op {
                OpCode::Ping => return Ok(Some(Incoming::Ping(payload.freeze()))),
                OpCode::Pong => return Ok(Some(Incoming::Pong(payload.freeze()))),
                OpCode::Close => {
                    let reason = Parser::try_parse_close_payload(&payload).unwrap_or(None);
                    return Ok(Some(Incoming::Close(reason)));
                }
                OpCode::Text | OpCode::Binary => {
                    if self.partial.is_some() {
                        return Err(ReadError::Protocol("new message inside a fragmented one".into()));
                    }
                    if fin {
                        let b = payload.freeze();
                        return Ok(Some(if op == OpCode::Text {
                            Incoming::Text(b)
                        } else {
                            Incoming::Binary(b)
                        }));
                    }
                    self.partial = Some((op, payload));
                }
                OpCode::Continue => {
                    let Some((_, acc)) = self.partial.as_mut() else {
                        return Err(ReadError::Protocol("continuation without a start".into()));
                    };
                    if acc.len() + payload.len() > self.max {
                        return Err(ReadError::TooBig(self.max));
                    }
                    acc.extend_from_slice(&payload);
                    if fin {
                        let (op, acc) = self.partial.take().expect("partial present");
                        let b = acc.freeze();
                        return Ok(Some(if op == OpCode::Text {
                            Incoming::Text(b)
                        } else {
                            Incoming::Binary(b)
                        }));
                    }
                }
                OpCode::Bad => return Err(ReadError::Protocol("bad opcode".into())),
            }
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
            match this.next_frame() {
                Ok(Some(f)) => return Poll::Ready(Some(Ok(f))),
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

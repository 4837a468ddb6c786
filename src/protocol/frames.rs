//! WebSocket frames of the client→server direction (RFC 6455 §5): a pure decoder from
//! bytes to frames and messages, independent of how the socket is read.
//!
//! It enforces the framing rules a server must (§5.2-§5.5, §7.4, §8.1): client frames
//! are masked, reserved bits and opcodes are unused, control frames are short and never
//! fragmented (but may arrive between the fragments of a message), fragments follow
//! their start, text is valid UTF-8 (checked fragment by fragment, so an invalid
//! sequence fails before the message ends), a close payload carries a valid code and a
//! UTF-8 reason. Every header is checked before its payload is buffered: a frame or
//! message announced larger than the limit fails at once.

use actix_http::ws::{CloseCode, CloseReason, OpCode, Parser, ProtocolError};
use bytes::{Bytes, BytesMut};

use super::close;

/// A complete client frame or message.
#[derive(Debug)]
pub enum Incoming {
    /// A text message, valid UTF-8.
    Text(Bytes),
    Binary(Bytes),
    Ping(Bytes),
    Pong(Bytes),
    /// A close frame with a valid code (or none) and a UTF-8 reason.
    Close(Option<CloseReason>),
}

/// Why the client side of a connection cannot go on.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// Close with 1009.
    #[error("frame or message larger than {0} bytes")]
    TooBig(usize),
    /// Close with 1002.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// Close with 1007.
    #[error("invalid UTF-8 in a text message or close reason")]
    InvalidUtf8,
}

fn protocol(msg: impl Into<String>) -> ReadError {
    ReadError::Protocol(msg.into())
}

/// Largest payload of a control frame (RFC 6455 §5.5).
const MAX_CONTROL_PAYLOAD: u64 = 125;

/// A fragmented message being reassembled.
struct Partial {
    text: bool,
    data: BytesMut,
    /// Leading bytes of a text message known to be valid UTF-8; an incomplete sequence
    /// may follow, to be completed by the next fragment.
    valid: usize,
}

impl Partial {
    /// Checks the UTF-8 added since the last call; at the end of the message an
    /// incomplete trailing sequence is an error too.
    fn check_utf8(&mut self, last: bool) -> Result<(), ReadError> {
        if !self.text {
            return Ok(());
        }
        match std::str::from_utf8(&self.data[self.valid..]) {
            Ok(_) => self.valid = self.data.len(),
            Err(e) if e.error_len().is_none() && !last => self.valid += e.valid_up_to(),
            Err(_) => return Err(ReadError::InvalidUtf8),
        }
        Ok(())
    }
}

/// Decodes client frames from a buffer, message after message.
pub struct FrameDecoder {
    max: usize,
    partial: Option<Partial>,
}

impl FrameDecoder {
    /// `max`: the largest frame payload and the largest reassembled message.
    pub fn new(max: usize) -> Self {
        FrameDecoder { max, partial: None }
    }

    /// Takes the next complete frame (control frames) or message (text, binary) from
    /// the front of `buf`; `Ok(None)` until `buf` holds enough bytes. After an error the
    /// connection must be failed: the decoder's state is not meant to go on.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Incoming>, ReadError> {
        loop {
            if !self.check_header(buf)? {
                return Ok(None);
            }
            let (fin, op, payload) = match Parser::parse(buf, true, self.max) {
                Ok(Some(f)) => f,
                Ok(None) => return Ok(None),
                Err(ProtocolError::Overflow) => return Err(ReadError::TooBig(self.max)),
                Err(e) => return Err(protocol(e.to_string())),
            };
            let payload = payload.unwrap_or_default();
            match op {
                OpCode::Ping => return Ok(Some(Incoming::Ping(payload.freeze()))),
                OpCode::Pong => return Ok(Some(Incoming::Pong(payload.freeze()))),
                OpCode::Close => return close_payload(&payload).map(|r| Some(Incoming::Close(r))),
                OpCode::Text | OpCode::Binary | OpCode::Continue => {
                    let mut partial = match self.partial.take() {
                        Some(mut p) => {
                            p.data.extend_from_slice(&payload);
                            p
                        }
                        None => Partial {
                            text: op == OpCode::Text,
                            data: payload,
                            valid: 0,
                        },
                    };
                    partial.check_utf8(fin)?;
                    if !fin {
                        self.partial = Some(partial);
                        continue;
                    }
                    let data = partial.data.freeze();
                    return Ok(Some(if partial.text {
                        Incoming::Text(data)
                    } else {
                        Incoming::Binary(data)
                    }));
                }
                OpCode::Bad => return Err(protocol("reserved opcode")),
            }
        }
    }

    /// Checks the header of the frame at the front of `buf` against the rules and the
    /// size limit. `Ok(false)`: the header is not complete yet.
    fn check_header(&self, buf: &[u8]) -> Result<bool, ReadError> {
        if buf.len() < 2 {
            return Ok(false);
        }
        let (first, second) = (buf[0], buf[1]);
        let fin = first & 0x80 != 0;
        if first & 0x70 != 0 {
            return Err(protocol("reserved bits set without an extension"));
        }
        let opcode = first & 0x0f;
        if second & 0x80 == 0 {
            return Err(protocol("unmasked client frame"));
        }
        let len7 = u64::from(second & 0x7f);
        match opcode {
            0x8..=0xa => {
                if !fin {
                    return Err(protocol("fragmented control frame"));
                }
                if len7 > MAX_CONTROL_PAYLOAD {
                    return Err(protocol("control frame payload over 125 bytes"));
                }
                return Ok(true);
            }
            0x0 if self.partial.is_none() => return Err(protocol("continuation without a start")),
            0x1 | 0x2 if self.partial.is_some() => return Err(protocol("new message inside a fragmented one")),
            0x0..=0x2 => {}
            op => return Err(protocol(format!("reserved opcode {op:#x}"))),
        }
        let len = match len7 {
            126 if buf.len() >= 4 => u64::from(u16::from_be_bytes([buf[2], buf[3]])),
            127 if buf.len() >= 10 => u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes")),
            126 | 127 => return Ok(false),
            n => n,
        };
        let before = self.partial.as_ref().map_or(0, |p| p.data.len() as u64);
        if len.saturating_add(before) > self.max as u64 {
            return Err(ReadError::TooBig(self.max));
        }
        Ok(true)
    }
}

/// The close code and reason of a close frame's payload (RFC 6455 §5.5.1, §7.4).
fn close_payload(payload: &[u8]) -> Result<Option<CloseReason>, ReadError> {
    match payload {
        [] => Ok(None),
        [_] => Err(protocol("close payload of one byte")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !close::valid_from_peer(code) {
                return Err(protocol(format!("invalid close code {code}")));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| ReadError::InvalidUtf8)?;
            Ok(Some(CloseReason {
                code: CloseCode::from(code),
                description: Some(reason.to_string()).filter(|r| !r.is_empty()),
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame.
    fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![first];
        let mut buf = BytesMut::new();
        Parser::write_message(&mut buf, payload, OpCode::Text, true, true);
        // Reuse actix's encoder for the length and mask, then set our own first byte.
        out.extend_from_slice(&buf[1..]);
        out
    }

    fn decode_all(max: usize, frames: &[Vec<u8>]) -> Vec<Result<Incoming, ReadError>> {
        let mut d = FrameDecoder::new(max);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for f in frames {
            // Byte by byte: every header check must cope with partial input.
            for b in f {
                buf.extend_from_slice(&[*b]);
                loop {
                    match d.decode(&mut buf) {
                        Ok(Some(i)) => out.push(Ok(i)),
                        Ok(None) => break,
                        Err(e) => {
                            out.push(Err(e));
                            return out;
                        }
                    }
                }
            }
        }
        out
    }

    fn last_err(max: usize, frames: &[Vec<u8>]) -> Option<ReadError> {
        decode_all(max, frames).pop().and_then(Result::err)
    }

    #[test]
    fn fragments_split_a_multibyte_sequence() {
        let euro = "€".as_bytes();
        let got = decode_all(
            100,
            &[frame(0x01, &euro[..1]), frame(0x89, b"p"), frame(0x80, &euro[1..])],
        );
        assert!(matches!(&got[0], Ok(Incoming::Ping(p)) if &p[..] == b"p"), "{got:?}");
        assert!(matches!(&got[1], Ok(Incoming::Text(t)) if &t[..] == euro), "{got:?}");
        // Invalid in the first fragment: fails before the message ends.
        let got = decode_all(100, &[frame(0x01, b"ok\xc0\xaf")]);
        assert_eq!(got.last().and_then(|r| r.as_ref().err()), Some(&ReadError::InvalidUtf8));
        // Incomplete at the end of the message.
        assert_eq!(
            last_err(100, &[frame(0x01, b"a\xe2"), frame(0x80, b"\x82")]),
            Some(ReadError::InvalidUtf8)
        );
    }

    #[test]
    fn framing_rules() {
        let p = |e: Option<ReadError>| matches!(e, Some(ReadError::Protocol(_)));
        assert!(p(last_err(1000, &[frame(0x09, b"x")])), "fragmented ping");
        assert!(p(last_err(1000, &[frame(0x89, &[0; 126])])), "long ping");
        assert!(p(last_err(1000, &[frame(0xc1, b"x")])), "rsv1");
        assert!(p(last_err(1000, &[frame(0x83, b"x")])), "opcode 3");
        assert!(p(last_err(1000, &[frame(0x8b, b"x")])), "opcode 0xb");
        assert!(p(last_err(1000, &[frame(0x80, b"x")])), "continuation alone");
        assert!(
            p(last_err(1000, &[frame(0x01, b"x"), frame(0x81, b"y")])),
            "text in fragments"
        );
        assert!(p(last_err(1000, &[vec![0x81, 0x01, b'x']])), "unmasked");
        assert!(p(last_err(1000, &[frame(0x88, &[0x03])])), "close of one byte");
        assert!(p(last_err(1000, &[frame(0x88, &1005u16.to_be_bytes())])), "close 1005");
        let bad_reason = [&1000u16.to_be_bytes()[..], b"\xff"].concat();
        assert_eq!(
            last_err(1000, &[frame(0x88, &bad_reason)]),
            Some(ReadError::InvalidUtf8)
        );
        assert_eq!(last_err(10, &[frame(0x82, &[0; 11])]), Some(ReadError::TooBig(10)));
        assert_eq!(
            last_err(10, &[frame(0x02, &[0; 6]), frame(0x80, &[0; 6])]),
            Some(ReadError::TooBig(10))
        );
        let got = decode_all(1000, &[frame(0x88, &[&4000u16.to_be_bytes()[..], b"bye"].concat())]);
        assert!(
            matches!(&got[..], [Ok(Incoming::Close(Some(r)))] if u16::from(r.code) == 4000 && r.description.as_deref() == Some("bye")),
            "{got:?}"
        );
    }
}

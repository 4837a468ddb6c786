//! Wire types of protocol v1 (docs/PROTOCOL.md): bytes → [`Request`] on the way in,
//! event and reply frames → shared [`Bytes`] on the way out; below them, the WebSocket
//! framing rules of the client's frames ([`frames::FrameDecoder`]).
//!
//! Decoding is strict and never panics: anything a client can send maps either to a
//! `Request` or to an [`AppError`] carrying the request `id` when one could be read.

pub mod events;
pub mod frames;
pub mod replies;
pub mod request;
pub mod text;

pub use events::*;
pub use replies::*;
pub use request::{Op, Request};

/// The WebSocket subprotocol of this protocol (`Sec-WebSocket-Protocol`), selected
/// when a client offers it.
pub const SUBPROTOCOL: &str = "chat.v1";

/// WebSocket close codes used by the server (PROTOCOL.md §5).
pub mod close {
    /// Normal closure (heartbeat timeout, client asked).
    pub const NORMAL: u16 = 1000;
    /// The server is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// The client broke the WebSocket framing rules (RFC 6455 §7.4.1).
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A text frame was not valid UTF-8.
    pub const INVALID_DATA: u16 = 1007;
    /// A frame or message was bigger than allowed.
    pub const TOO_BIG: u16 = 1009;
    /// Internal error.
    pub const INTERNAL: u16 = 1011;
    /// Missing or invalid credentials.
    pub const UNAUTHORIZED: u16 = 4001;
    /// A moderator removed the user: kicked (may come back) or banned (may not).
    pub const KICKED: u16 = 4003;
    /// The connection's outbound queue overflowed.
    pub const SLOW_CONSUMER: u16 = 4008;
    /// The connection kept exceeding its rate limit.
    pub const RATE_LIMITED: u16 = 4029;

    /// May a peer send `code` in a close frame? RFC 6455 §7.4 and the IANA registry:
    /// the defined codes that are not reserved for local use (1004-1006, 1015), the
    /// registered range 3000-3999 and the private range 4000-4999.
    pub fn valid_from_peer(code: u16) -> bool {
        matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

//! A connection as the rest of the server sees it, independent of the WebSocket
//! session that owns it:
//!
//! * [`outbox`] – the bounded outbound queue every reply and event goes through, and
//!   the response body that drains it at the client's pace.
//! * [`registry`] – [`ConnHandle`] (id, user, outbox) and the user → connections
//!   registry used for per-user delivery (`signal`) and shutdown.
//! * [`writer`] – drains the outbox into the socket of an upgraded connection.
//! * [`ack`] – where the outcome of a request goes: a WebSocket reply frame queued on
//!   the connection, a waiting HTTP handler, or nobody.
//!
//! Hub shards, the writer and the use cases push into connections through these
//! types only; none of them knows the session actor.

pub mod ack;
pub mod outbox;
pub mod registry;
pub mod writer;

pub use ack::{Ack, Pending};
pub use outbox::Outbox;
pub use registry::{ConnHandle, Registry};

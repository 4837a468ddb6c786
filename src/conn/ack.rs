//! [`Ack`]: where the outcome of one request goes.
//!
//! Writes complete far from the code that received them (the writer thread commits,
//! a hub shard fans out), so the request carries its reply target along. A WebSocket
//! request's reply is pushed into the connection's outbox by whoever completes it,
//! which keeps a publish's acknowledgement ahead of its own `message` event; an HTTP
//! request waits on a oneshot channel ([`Pending`]).

use std::sync::Arc;

use serde::Serialize;

use super::Outbox;
use crate::{
    error::{AppError, AppResult},
    protocol::{reply_err, reply_ok},
};

/// Where the typed result `T` of one request goes.
pub enum Ack<T> {
    /// A WebSocket request: the reply frame is queued on the connection (a success
    /// only when the request had an `id`; an error always).
    Ws { outbox: Arc<Outbox>, id: Option<i64> },
    /// A caller waiting on [`Pending`] (HTTP handlers, the join admission).
    Wait(tokio::sync::oneshot::Sender<AppResult<T>>),
    /// Nobody waits (fire and forget, e.g. the demo publishers).
    None,
}

/// The receiving end of [`Ack::Wait`].
pub struct Pending<T>(tokio::sync::oneshot::Receiver<AppResult<T>>);

impl<T> Pending<T> {
    /// The result; `unavailable` when the request was dropped unanswered (the server
    /// is shutting down).
    pub async fn wait(self) -> AppResult<T> {
        self.0
            .await
            .map_err(|_| AppError::unavailable("the request was dropped, try again"))?
    }
}

impl<T: Serialize> Ack<T> {
    /// A reply target on a WebSocket connection.
    pub fn ws(outbox: Arc<Outbox>, id: Option<i64>) -> Ack<T> {
        Ack::Ws { outbox, id }
    }

    /// A reply target to wait on.
    pub fn wait() -> (Ack<T>, Pending<T>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (Ack::Wait(tx), Pending(rx))
    }

    pub fn ok(self, v: T) {
        match self {
            Ack::Ws { outbox, id } => {
                if id.is_some() {
                    outbox.push(reply_ok(id, &v));
                }
            }
            Ack::Wait(tx) => {
                let _ = tx.send(Ok(v));
            }
            Ack::None => {}
        }
    }

    pub fn err(self, e: AppError) {
        match self {
            Ack::Ws { outbox, id } => {
                outbox.push(reply_err(id, &e));
            }
            Ack::Wait(tx) => {
                let _ = tx.send(Err(e));
            }
            Ack::None => {}
        }
    }

    pub fn result(self, r: AppResult<T>) {
        match r {
            Ok(v) => self.ok(v),
            Err(e) => self.err(e),
        }
    }
}

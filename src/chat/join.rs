//! `join` and `leave`.
//!
//! A join runs in three steps, so that the session can keep its own bookkeeping (a
//! `leave` or a newer `join` in between wins):
//! 1. [`prepare`]: the checks that need no I/O;
//! 2. [`admit`]: rooms and DMs check access and record the membership through the
//!    writer, batched with other writes;
//! 3. [`subscribe`]: the connection is added to the channel's shard (live events are
//!    held), the snapshot is read (in a batch with the channel's other joins), and the
//!    shard replies with the snapshot followed by the held events newer than it:
//!    nothing missed, nothing twice.

use std::sync::Arc;

use super::Chat;
use crate::{
    auth::Identity,
    channels::{Access, Channel, Namespace},
    conn::{Ack, ConnHandle},
    error::{AppResult, ErrorCode},
    hub::Subscribe,
    protocol::{request, Empty},
    storage::writer::WriteOp,
};

/// Most `limit` of a join.
const MAX_LIMIT: i64 = 200;

/// A join that passed the checks that need no I/O.
#[derive(Debug, Clone)]
pub struct Joining {
    pub channel: Channel,
    access: Access,
    since: Option<i64>,
    epoch: Option<String>,
    limit: i64,
}

/// Step 1: parse and check read access.
pub fn prepare(chat: &Chat, who: &Identity, req: request::Join) -> AppResult<Joining> {
    let (channel, access) = chat.readable(who, &req.channel)?;
    let limit = req.limit.unwrap_or(channel.policy().history_on_join).min(MAX_LIMIT);
    Ok(Joining {
        channel,
        access,
        since: req.since,
        epoch: req.epoch,
        limit,
    })
}

/// Step 2: admission. Rooms and DMs check access and remember their members (for
/// `channels` and `signal`) through the writer before the reply. A room that does not
/// exist yet is created (public) by its first join: that spends one of the user's room
/// creations and one write (joining what exists costs nothing: a rejoin of many
/// channels after a reconnect must not run into the budget).
pub async fn admit(chat: Chat, who: Identity, j: &Joining) -> AppResult<()> {
    let record = matches!(j.channel.ns, Namespace::Room | Namespace::Dm) && !who.anonymous;
    let mut check_room = j.access == Access::RoomCheck;
    if !record && !check_room {
        return Ok(());
    }
    if check_room {
        match chat.room_readable(&who, &j.channel).await {
            // It exists and the user may read it: only the membership is left to do.
            Ok(()) => check_room = false,
            // The writer creates it (or finds it created meanwhile, and checks again).
            Err(e) if e.code == ErrorCode::NotFound => {
                chat.spend_room(&who)?;
                chat.spend(&who, 1)?;
            }
            Err(e) => return Err(e),
        }
    }
    let (ack, pending) = Ack::wait();
    chat.writer.submit(WriteOp::Admit {
        channel: j.channel.clone(),
        who,
        check_room,
        ack,
    });
    pending.wait().await.map(|Empty {}| ())
}

/// Step 3: subscribe `conn`; the channel's shard answers request `req_id` on its
/// outbox (see [`crate::hub::Subscribe`]).
pub fn subscribe(chat: &Chat, conn: Arc<ConnHandle>, j: Joining, req_id: Option<i64>) {
    chat.hub.subscribe(Subscribe {
        conn,
        channel: j.channel,
        req_id,
        since: j.since,
        epoch: j.epoch,
        limit: j.limit,
    });
}

/// `leave`: the canonical name of the channel to leave.
pub fn leave_target(req: &request::Leave) -> AppResult<Arc<str>> {
    Ok(Channel::parse(&req.channel)?.full)
}

/// Removes `conn_id` from `channels` (leave, disconnect).
pub fn leave(chat: &Chat, conn_id: u64, channels: impl IntoIterator<Item = Arc<str>>) {
    chat.hub.unsubscribe(conn_id, channels);
}

//! `join` and `leave`.
//!
//! A join runs in three steps, so that the session can keep its own bookkeeping (a
//! `leave` or a newer `join` in between wins):
//! 1. [`prepare`]: the checks that need no I/O;
//! 2. [`admit`]: rooms and DMs check access and record the membership through the
//!    writer, batched with other writes;
//! 3. [`subscribe`]: the connection is added to the channel's shard (live events are
//!    held), the snapshot is read, and the shard replies with the snapshot followed by
//!    the held events newer than it: nothing missed, nothing twice.

use std::sync::Arc;

use super::Chat;
use crate::{
    auth::Identity,
    channels::{Access, Channel, Namespace},
    conn::{Ack, ConnHandle},
    error::{AppError, AppResult, ErrorCode},
    hub::{Completed, JoinComplete, Subscribe, Subscribed},
    protocol::{reply_err, request, Empty},
    storage::{
        queries::{self, JoinRead},
        writer::WriteOp,
    },
};

/// Most `limit` of a join.
const MAX_LIMIT: i64 = 200;

/// Snapshots read for one join whose held events keep overflowing, before it gives up.
const MAX_SNAPSHOTS: usize = 3;

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
        let (ch, who2) = (j.channel.clone(), who.clone());
        match chat.db.run(move |c| queries::room_readable(c, &ch, &who2)).await {
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

/// Step 3: subscribe `conn` and reply to request `req_id` on its outbox.
pub async fn subscribe(chat: Chat, conn: Arc<ConnHandle>, j: Joining, req_id: Option<i64>) {
    let shard = chat.hub.shard(&j.channel.full).clone();
    let sub = Subscribe {
        conn: conn.clone(),
        channel: j.channel.clone(),
        req_id,
        since: j.since,
        epoch: j.epoch.clone(),
    };
    match shard.send(sub).await {
        Ok(Subscribed::Replied) => return,
        Ok(Subscribed::NeedsSnapshot) => {}
        Err(_) => {
            conn.outbox
                .push(reply_err(req_id, &AppError::unavailable("hub unavailable")));
            return;
        }
    }
    let (recovery_limit, budget) = (chat.settings.recovery_limit, chat.settings.reply_budget());
    for _ in 0..MAX_SNAPSHOTS {
        let (name, since, epoch, limit) = (j.channel.full.clone(), j.since, j.epoch.clone(), j.limit);
        let snapshot = chat
            .db
            .run(move |c| {
                let read = JoinRead {
                    since,
                    epoch: epoch.as_deref(),
                    limit,
                    recovery_limit,
                    budget,
                };
                queries::join_snapshot(c, &name, &read)
            })
            .await;
        let snapshot = match snapshot {
            Ok(s) => s,
            Err(e) => {
                chat.hub.unsubscribe(conn.id, [j.channel.full.clone()]);
                conn.outbox.push(reply_err(req_id, &e));
                return;
            }
        };
        let done = shard
            .send(JoinComplete {
                conn_id: conn.id,
                channel: j.channel.full.clone(),
                req_id,
                snapshot,
            })
            .await;
        match done {
            Ok(Completed::Done) => return,
            Ok(Completed::Gone) => {
                // Left (or the connection closed) while the snapshot was read.
                let e = AppError::bad_request("join superseded by a later leave or join");
                conn.outbox.push(reply_err(req_id, &e));
                return;
            }
            Ok(Completed::Restart) => continue,
            Err(_) => {
                conn.outbox
                    .push(reply_err(req_id, &AppError::unavailable("hub unavailable")));
                return;
            }
        }
    }
    chat.hub.unsubscribe(conn.id, [j.channel.full.clone()]);
    conn.outbox.push(reply_err(
        req_id,
        &AppError::unavailable("the channel is too busy to join, try again"),
    ));
}

/// `leave`: the canonical name of the channel to leave.
pub fn leave_target(req: &request::Leave) -> AppResult<Arc<str>> {
    Ok(Channel::parse(&req.channel)?.full)
}

/// Removes `conn_id` from `channels` (leave, disconnect).
pub fn leave(chat: &Chat, conn_id: u64, channels: impl IntoIterator<Item = Arc<str>>) {
    chat.hub.unsubscribe(conn_id, channels);
}

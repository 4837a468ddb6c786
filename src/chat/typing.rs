//! `typing`: a transient indicator, fanned out by the channel's shard (which refuses
//! it from a connection that has not joined).

use actix::dev::SendError;

use super::Chat;
use crate::{
    auth::Identity,
    channels::Channel,
    conn::{Ack, ConnHandle},
    error::{AppError, AppResult},
    hub::Typing,
    protocol::{request, Empty},
};

/// Tells the channel's members that the user of `conn` is typing.
pub fn typing(chat: &Chat, who: &Identity, conn: &ConnHandle, req: request::Typing, ack: Ack<Empty>) {
    // Only a connection that joined may type: the shard checks that (joining checked
    // the rest of the access); what the caller may not read at all is `not_found`.
    let ch = match (|| -> AppResult<Channel> {
        let (ch, _) = chat.visible(who, &req.channel)?;
        if !ch.policy().chat {
            return Err(AppError::bad_request(format!("no typing indicators in {}", ch.full)));
        }
        Ok(ch)
    })() {
        Ok(ch) => ch,
        Err(e) => return ack.err(e),
    };
    let msg = Typing {
        conn_id: conn.id,
        channel: ch.full.clone(),
        user: conn.user.clone(),
        ack,
    };
    // Overflow policy: a full shard mailbox drops the indicator and says so.
    if let Err(SendError::Full(m) | SendError::Closed(m)) = chat.hub.shard(&ch.full).try_send(msg) {
        m.ack.err(AppError::unavailable("hub overloaded"));
    }
}

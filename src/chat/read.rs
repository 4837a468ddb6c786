//! `read` (read markers) and `channels` (the caller's rooms and DMs with unread
//! counts).

use super::Chat;
use crate::{
    auth::Identity,
    channels::{read_access, Channel},
    conn::Ack,
    error::{AppError, AppResult},
    protocol::{request, ChannelsOk, Empty},
    storage::{queries, writer::WriteOp},
};

/// Moves the caller's read marker forward.
pub fn read(chat: &Chat, who: &Identity, req: request::Read, ack: Ack<Empty>) {
    let op = || -> AppResult<Channel> {
        let ch = Channel::parse(&req.channel)?;
        if !ch.policy().chat {
            return Err(AppError::bad_request(format!("no read markers in {}", ch.full)));
        }
        read_access(who, &ch, false)?;
        Ok(ch)
    };
    match op() {
        Ok(channel) => chat.writer.submit(WriteOp::Read {
            channel,
            user_id: who.user.id.clone(),
            seq: req.seq,
            ack,
        }),
        Err(e) => ack.err(e),
    }
}

/// The caller's rooms and DMs with their top seq, unread count and last message.
pub async fn channels(chat: Chat, who: Identity) -> AppResult<ChannelsOk> {
    if who.anonymous {
        return Err(AppError::forbidden("anonymous connections have no channels"));
    }
    let user = who.user.id.clone();
    let channels = chat.db.run(move |c| queries::channels_for_user(c, &user)).await?;
    Ok(ChannelsOk { channels })
}

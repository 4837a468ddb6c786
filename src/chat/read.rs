//! `read` (read markers) and `channels` (the caller's rooms and DMs with unread
//! counts).

use super::Chat;
use crate::{
    auth::Identity,
    conn::Ack,
    error::{AppError, AppResult},
    protocol::{request, ChannelsOk, Empty},
    storage::{queries, writer::WriteOp},
};

/// Moves the caller's read marker forward, in a channel the caller can see.
pub fn read(chat: &Chat, who: &Identity, req: request::Read, ack: Ack<Empty>) {
    let checked = chat.visible(who, &req.channel).and_then(|(ch, check)| {
        if !ch.policy().chat {
            return Err(AppError::bad_request(format!("no read markers in {}", ch.full)));
        }
        if who.anonymous {
            return Err(AppError::forbidden("anonymous connections keep no read markers"));
        }
        chat.spend(who, 1)?;
        Ok((ch, check))
    });
    match checked {
        Ok((channel, check)) => {
            let op = WriteOp::Read {
                channel: channel.clone(),
                user_id: who.user.id.clone(),
                seq: req.seq,
                ack,
            };
            chat.submit_visible(who, &channel, check, op);
        }
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

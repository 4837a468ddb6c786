//! `edit` and `delete`: changes to stored messages, through the writer; everyone in
//! the channel gets the change after it committed. What the caller cannot see is
//! `not_found` (no probing for messages of private rooms and others' DMs).

use super::Chat;
use crate::{
    auth::Identity,
    channels::publish_access,
    conn::Ack,
    error::AppError,
    protocol::{request, request::check_data, Empty},
    storage::writer::WriteOp,
};

/// Replaces the data of an own message.
pub fn edit(chat: &Chat, who: &Identity, req: request::Edit, ack: Ack<Empty>) {
    let checked = chat.visible(who, &req.channel).and_then(|(ch, check)| {
        publish_access(who, &ch)?;
        chat.mutes.check(&ch.full, who.id())?;
        chat.archived.check(&ch.full)?;
        check_data(&req.data, chat.settings.max_message_bytes)?;
        if ch.policy().chat {
            super::uploads::check_media(&req.data, super::uploads::MediaLimits::of(&chat.settings))?;
        }
        chat.spend(who, 1)?;
        Ok((ch, check))
    });
    match checked {
        Ok((channel, check)) => {
            let op = WriteOp::Edit {
                channel: channel.clone(),
                seq: req.seq,
                who: who.clone(),
                data: req.data.into(),
                ack,
            };
            chat.submit_visible(who, &channel, check, op);
        }
        Err(e) => ack.err(e),
    }
}

/// Deletes an own message (any message for admins).
pub fn delete(chat: &Chat, who: &Identity, req: request::Delete, ack: Ack<Empty>) {
    if who.anonymous {
        return ack.err(AppError::forbidden("anonymous connections cannot delete"));
    }
    match chat
        .visible(who, &req.channel)
        .and_then(|v| chat.spend(who, 1).map(|()| v))
    {
        Ok((channel, check)) => {
            let op = WriteOp::Delete {
                channel: channel.clone(),
                seq: req.seq,
                who: who.clone(),
                ack,
            };
            chat.submit_visible(who, &channel, check, op);
        }
        Err(e) => ack.err(e),
    }
}

//! `edit` and `delete`: changes to stored messages, through the writer; everyone in
//! the channel gets the change after it committed.

use super::Chat;
use crate::{
    auth::Identity,
    channels::{publish_access, Channel},
    conn::Ack,
    error::{AppError, AppResult},
    protocol::{request, request::check_data, Empty},
    storage::writer::WriteOp,
};

/// Replaces the data of an own message.
pub fn edit(chat: &Chat, who: &Identity, req: request::Edit, ack: Ack<Empty>) {
    let op = || -> AppResult<Channel> {
        let ch = Channel::parse(&req.channel)?;
        publish_access(who, &ch)?;
        check_data(&req.data, chat.settings.max_message_bytes)?;
        Ok(ch)
    };
    match op() {
        Ok(channel) => chat.writer.submit(WriteOp::Edit {
            channel,
            seq: req.seq,
            who: who.clone(),
            data: req.data.into(),
            ack,
        }),
        Err(e) => ack.err(e),
    }
}

/// Deletes an own message (any message for admins).
pub fn delete(chat: &Chat, who: &Identity, req: request::Delete, ack: Ack<Empty>) {
    let op = || -> AppResult<Channel> {
        let ch = Channel::parse(&req.channel)?;
        if who.anonymous {
            return Err(AppError::forbidden("anonymous connections cannot delete"));
        }
        Ok(ch)
    };
    match op() {
        Ok(channel) => chat.writer.submit(WriteOp::Delete {
            channel,
            seq: req.seq,
            who: who.clone(),
            ack,
        }),
        Err(e) => ack.err(e),
    }
}

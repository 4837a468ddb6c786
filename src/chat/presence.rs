//! `presence`: who is present in a channel, cluster-wide.

use super::Chat;
use crate::{
    auth::Identity,
    channels::Access,
    error::{AppError, AppResult},
    hub::PresenceQuery,
    protocol::{request, PresenceOk},
    storage::queries,
};

/// The present members, after the read check.
pub async fn presence(chat: Chat, who: Identity, req: request::Presence) -> AppResult<PresenceOk> {
    let (ch, access) = chat.readable(&who, &req.channel)?;
    if !ch.policy().presence {
        return Err(AppError::bad_request(format!("{} has no presence", ch.full)));
    }
    if access == Access::RoomCheck {
        let ch2 = ch.clone();
        chat.db.run(move |c| queries::room_access(c, &ch2, &who)).await?;
    }
    let members = chat
        .hub
        .shard(&ch.full)
        .send(PresenceQuery { channel: ch.full })
        .await
        .map_err(|_| AppError::unavailable("hub unavailable"))?;
    Ok(PresenceOk { members })
}

//! `publish`: stored channels go through the writer (acknowledged after the commit),
//! last-value feeds through their hub shard.

use std::sync::Arc;

use actix::dev::SendError;
use serde_json::value::RawValue;

use super::Chat;
use crate::{
    auth::Identity,
    channels::{publish_access, Access, Channel, Storage},
    conn::Ack,
    error::{AppError, AppResult},
    hub::FeedPublish,
    protocol::{request, request::check_data, text::has_control, PublishOk},
    storage::writer::{AppendReq, WriteOp},
};

/// A validated publish.
struct Checked {
    channel: Channel,
    access: Access,
    data: Arc<RawValue>,
    client_id: Option<Arc<str>>,
}

fn check(chat: &Chat, who: &Identity, req: request::Publish) -> AppResult<Checked> {
    let channel = Channel::parse(&req.channel)?;
    let access = publish_access(who, &channel)?;
    chat.mutes.check(&channel.full, who.id())?;
    chat.archived.check(&channel.full)?;
    check_data(&req.data, chat.settings.max_message_bytes)?;
    chat.spend(who, 1)?;
    if let Some(c) = &req.client_id {
        if c.is_empty() || c.len() > 64 {
            return Err(AppError::bad_request("`client_id` must be 1 to 64 bytes"));
        }
        if has_control(c) {
            return Err(AppError::bad_request("`client_id` must not contain control characters"));
        }
    }
    let data: Arc<RawValue> = req.data.into();
    if channel.policy().storage != Storage::Every {
        chat.feeds.validate(&channel, &data)?;
    }
    if channel.policy().chat {
        super::uploads::check_media(&data, super::uploads::MediaLimits::of(&chat.settings))?;
    }
    Ok(Checked {
        channel,
        access,
        data,
        client_id: req.client_id.map(Into::into),
    })
}

/// Publishes `req` as `who`; the outcome (`{seq, ts}` or an error) goes to `ack`.
pub fn publish(chat: &Chat, who: &Identity, req: request::Publish, ack: Ack<PublishOk>) {
    let p = match check(chat, who, req) {
        Ok(p) => p,
        Err(e) => return ack.err(e),
    };
    crate::metrics::get().message_in(p.channel.ns);
    match p.channel.policy().storage {
        Storage::Every => chat.writer.submit(WriteOp::Append(AppendReq {
            channel: p.channel,
            who: who.clone(),
            check_room: p.access == Access::RoomCheck,
            data: p.data,
            client_id: p.client_id,
            ack,
        })),
        Storage::LastValue | Storage::LastValueAndTrack => {
            let shard = chat.hub.shard(&p.channel.full);
            let msg = FeedPublish {
                channel: p.channel,
                from: who.user.clone(),
                data: p.data,
                client_id: p.client_id,
                ack,
            };
            // Overflow policy: a full shard mailbox refuses the value at once.
            if let Err(SendError::Full(m) | SendError::Closed(m)) = shard.try_send(msg) {
                m.ack.err(AppError::unavailable("hub overloaded, try again"));
            }
        }
    }
}

//! `signal`: a frame for every connection of another user (call setup), on this node
//! and the others; the signal itself is not stored. Only between users who share a
//! room or a DM, and not to a user who blocked the caller; size- and rate-limited
//! (rings per pair per minute), since a ring makes someone else's device ring. The
//! call's state is kept by [`super::calls`], which writes the call record when the
//! call ends.

use serde_json::value::RawValue;

use std::time::Instant;

use super::{
    calls::{Kind, Media, Record, Signal as CallSignal},
    Chat,
};
use crate::{
    auth::Identity,
    broker::BusEvent,
    channels::{valid_user_id, Channel},
    conn::Ack,
    error::{AppError, AppResult},
    protocol::{request, request::check_data, signal_event, Empty},
    storage::{
        queries,
        writer::{AppendReq, WriteOp},
    },
};

/// What the server reads of a signal's data: `kind`, and for a ring `media` and the
/// room of a room call (`channel`).
#[derive(serde::Deserialize, Default)]
struct Fields {
    kind: Option<String>,
    media: Option<String>,
    channel: Option<String>,
}

fn fields(data: &RawValue) -> Fields {
    serde_json::from_str(data.get()).unwrap_or_default()
}

/// Writes a call record into its conversation, from the caller (once per call: the
/// call id is the record's `client_id`).
pub fn write_record(chat: &Chat, r: Record) {
    let Ok(data) = RawValue::from_string(r.data()) else {
        return;
    };
    crate::metrics::get().message_in(r.channel.ns);
    chat.writer.submit(WriteOp::Append(AppendReq {
        client_id: Some(format!("call:{}", r.call).into()),
        channel: r.channel,
        who: r.caller,
        check_room: false,
        data: data.into(),
        ack: Ack::None,
    }));
}

/// Delivers `req.data` to every connection of user `req.to`.
pub async fn signal(chat: Chat, who: Identity, req: request::Signal) -> AppResult<Empty> {
    if who.anonymous {
        return Err(AppError::forbidden("anonymous connections cannot signal"));
    }
    if !valid_user_id(&req.to) {
        return Err(AppError::bad_request("bad `to`"));
    }
    if *req.to == *who.user.id {
        return Err(AppError::bad_request("cannot signal yourself"));
    }
    check_data(&req.data, chat.settings.signal_max_bytes)?;
    let f = fields(&req.data);
    let kind = f.kind.as_deref().map(Kind::parse).transpose()?;
    let media = Media::parse(f.media.as_deref())?;
    let room = match (kind, f.channel.as_deref()) {
        (Some(Kind::Ring), Some(c)) => Some(Channel::parse(c)?),
        _ => None,
    };
    chat.spend(&who, 1)?;
    if kind == Some(Kind::Ring) && !chat.limits.rings.take(&format!("{}>{}", who.id(), req.to)) {
        crate::metrics::get().rate_limited(crate::metrics::Limit::Rings);
        return Err(AppError::rate_limited("too many rings to that user, try again later"));
    }
    let (me, peer) = (who.user.id.clone(), req.to.clone());
    let allowed = chat
        .db
        .run(move |c| Ok(queries::share_a_channel(c, &me, &peer)? && !queries::is_blocked(c, &peer, &me)?))
        .await?;
    if !allowed {
        // The same answer as for a user who does not exist: no probing.
        return Err(AppError::not_found("no such user to signal"));
    }
    if let Some(room) = &room {
        let (r, me, peer) = (room.clone(), who.clone(), req.to.clone());
        let both = chat
            .db
            .run(move |c| {
                let mine = queries::room_readable(c, &r, &me).is_ok();
                Ok(mine && queries::is_member(c, &r.full, &peer)?)
            })
            .await?;
        if !both {
            return Err(AppError::not_found("no such room to call in"));
        }
    }
    // On a single node a user without connections is not there to signal.
    if !chat.hub.clustered() && chat.hub.registry.connections(&req.to).is_empty() {
        return Err(AppError::not_found("that user is not connected"));
    }
    if let Some(kind) = kind {
        let s = CallSignal {
            from: &who,
            to: &req.to,
            call: &req.call,
            kind,
            media,
            room,
        };
        if let Some(record) = chat.calls.signal(s, Instant::now())? {
            write_record(&chat, record);
        }
    }
    let frame = signal_event(&who.user, &req.call, &req.data);
    for c in chat.hub.registry.connections(&req.to) {
        c.outbox.push(frame.clone());
    }
    // The user's connections on other nodes.
    if let Ok(frame) = RawValue::from_string(String::from_utf8_lossy(&frame).into_owned()) {
        chat.hub.publish(BusEvent::Signal {
            to: req.to.as_str().into(),
            frame,
        });
    }
    Ok(Empty {})
}

//! `signal`: a frame for every connection of another user (call setup), on this node
//! and the others; nothing is stored. Only between users who share a room or a DM, and
//! not to a user who blocked the caller; size- and rate-limited (rings per pair per
//! minute), since a ring makes someone else's device ring.

use serde_json::value::RawValue;

use super::Chat;
use crate::{
    auth::Identity,
    broker::BusEvent,
    channels::valid_user_id,
    error::{AppError, AppResult},
    protocol::{request, request::check_data, signal_event, Empty},
    storage::queries,
};

/// The `kind` of a signal's data (`ring`, `offer`, `ice`, ...), if any.
fn kind(data: &RawValue) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Kind {
        kind: Option<String>,
    }
    serde_json::from_str::<Kind>(data.get()).ok()?.kind
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
    chat.spend(&who, 1)?;
    if kind(&req.data).as_deref() == Some("ring") && !chat.limits.rings.take(&format!("{}>{}", who.id(), req.to)) {
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

//! `presence`: who is present in a channel, cluster-wide, a page at a time (ordered
//! by name), with the number of users present.

use super::Chat;
use crate::{
    auth::Identity,
    channels::Access,
    error::{AppError, AppResult},
    hub::{presence::Cursor, PresencePage},
    protocol::{request, PresenceOk},
};

/// Members a page holds by default, and at most.
const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 500;

/// One page of the present members, after the read check.
pub async fn presence(chat: Chat, who: Identity, req: request::Presence) -> AppResult<PresenceOk> {
    let (ch, access) = chat.readable(&who, &req.channel)?;
    if !ch.policy().presence {
        return Err(AppError::bad_request(format!("{} has no presence", ch.full)));
    }
    let after = req.after.as_deref().map(decode_cursor).transpose()?;
    let limit = req.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT) as usize;
    if access == Access::RoomCheck {
        chat.room_readable(&who, &ch).await?;
    }
    let page = chat
        .hub
        .shard(&ch.full)
        .send(PresencePage {
            channel: ch.full,
            after,
            limit,
        })
        .await
        .map_err(|_| AppError::unavailable("hub unavailable"))?;
    Ok(PresenceOk {
        members: page.members,
        count: page.count,
        next: page.next.as_ref().map(encode_cursor),
    })
}

/// The wire form of a position in the member list: opaque to clients (hex of the JSON
/// pair `[name, id]`).
fn encode_cursor((name, id): &Cursor) -> String {
    hex::encode(serde_json::to_vec(&(name, id)).unwrap_or_default())
}

fn decode_cursor(s: &str) -> AppResult<Cursor> {
    let bad = || AppError::bad_request("bad `after` cursor");
    let bytes = hex::decode(s).map_err(|_| bad())?;
    let (name, id): (String, String) = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    Ok((name.into(), id.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let c: Cursor = ("a \"quoted\"\u{0} name".into(), "42".into());
        assert_eq!(decode_cursor(&encode_cursor(&c)).unwrap(), c);
        assert!(decode_cursor("zz").is_err());
        assert!(decode_cursor(&hex::encode(b"[1,2]")).is_err());
    }
}

//! Server → client frames. Each builder serializes once into [`Bytes`] that can be
//! shared by every recipient.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

use crate::error::AppError;

/// A user as shown on the wire: `{"id","name"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
pub struct UserRef {
    pub id: Arc<str>,
    pub name: Arc<str>,
}

impl UserRef {
    pub fn new(id: impl Into<Arc<str>>, name: impl Into<Arc<str>>) -> Self {
        UserRef {
            id: id.into(),
            name: name.into(),
        }
    }
}

/// One message of a channel, as stored and as sent (history items and `message` events).
#[derive(Debug, Clone)]
pub struct Message {
    pub channel: Arc<str>,
    pub seq: i64,
    /// Milliseconds since the Unix epoch, set by the server when it accepted the message.
    pub ts: i64,
    pub from: UserRef,
    /// The client's JSON object, kept verbatim.
    pub data: Arc<RawValue>,
    pub client_id: Option<Arc<str>>,
    /// Set when the author edited the message.
    pub edited_ts: Option<i64>,
    /// Deleted messages keep their `seq` (history stays gap-free) but lose their data.
    pub deleted: bool,
}

impl Serialize for Message {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        MessageWire { ev: None, m: self }.serialize(s)
    }
}

struct MessageWire<'a> {
    ev: Option<&'static str>,
    m: &'a Message,
}

impl Serialize for MessageWire<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let m = self.m;
        let mut map = s.serialize_map(None)?;
        if let Some(ev) = self.ev {
            map.serialize_entry("ev", ev)?;
        }
        map.serialize_entry("channel", &*m.channel)?;
        map.serialize_entry("seq", &m.seq)?;
        map.serialize_entry("ts", &m.ts)?;
        map.serialize_entry("from", &m.from)?;
        if m.deleted {
            map.serialize_entry("data", &serde_json::Map::new())?;
            map.serialize_entry("deleted", &true)?;
        } else {
            map.serialize_entry("data", &*m.data)?;
        }
        if let Some(c) = &m.client_id {
            map.serialize_entry("client_id", &**c)?;
        }
        if let Some(e) = m.edited_ts {
            map.serialize_entry("edited_ts", &e)?;
        }
        map.end()
    }
}

fn to_bytes<T: Serialize + ?Sized>(v: &T) -> Bytes {
    // Serializing our own types into a Vec cannot fail.
    Bytes::from(serde_json::to_vec(v).expect("serializable frame"))
}

/// `{"ev":"message",...}`
pub fn message_event(m: &Message) -> Bytes {
    to_bytes(&MessageWire { ev: Some("message"), m })
}

/// `{"id":N,"ok":{...}}`
pub fn reply_ok<T: Serialize + ?Sized>(id: Option<i64>, ok: &T) -> Bytes {
    #[derive(Serialize)]
    struct Ok<'a, T: ?Sized> {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<i64>,
        ok: &'a T,
    }
    to_bytes(&Ok { id, ok })
}

/// `{"id":N,"ok":{}}`
pub fn reply_empty(id: Option<i64>) -> Bytes {
    reply_ok(id, &serde_json::Map::new())
}

/// `{"id":N,"error":{"code","message"}}` (no `id` when it could not be read).
pub fn reply_err(id: Option<i64>, e: &AppError) -> Bytes {
    #[derive(Serialize)]
    struct Err<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<i64>,
        error: &'a AppError,
    }
    to_bytes(&Err { id, error: e })
}

#[derive(Serialize)]
struct Limits {
    max_message_bytes: usize,
}

/// The first frame of every authenticated connection.
pub fn welcome(session: &str, user: &UserRef, heartbeat_s: f64, max_message_bytes: usize) -> Bytes {
    #[derive(Serialize)]
    struct Welcome<'a> {
        ev: &'static str,
        session: &'a str,
        user: &'a UserRef,
        heartbeat_s: serde_json::Number,
        limits: Limits,
    }
    let hb = if heartbeat_s.fract() == 0.0 {
        serde_json::Number::from(heartbeat_s as u64)
    } else {
        serde_json::Number::from_f64(heartbeat_s).unwrap_or_else(|| 25.into())
    };
    to_bytes(&Welcome {
        ev: "welcome",
        session,
        user,
        heartbeat_s: hb,
        limits: Limits { max_message_bytes },
    })
}

/// Coalesced presence diff of one channel, with the number of users present.
pub fn presence_event(channel: &str, joined: &[UserRef], left: &[UserRef], count: usize) -> Bytes {
    #[derive(Serialize)]
    struct P<'a> {
        ev: &'static str,
        channel: &'a str,
        joined: &'a [UserRef],
        left: &'a [UserRef],
        count: usize,
    }
    to_bytes(&P {
        ev: "presence",
        channel,
        joined,
        left,
        count,
    })
}

/// The presence event of a large channel: only the number of users present.
pub fn presence_count_event(channel: &str, count: usize) -> Bytes {
    #[derive(Serialize)]
    struct P<'a> {
        ev: &'static str,
        channel: &'a str,
        count: usize,
    }
    to_bytes(&P {
        ev: "presence",
        channel,
        count,
    })
}

pub fn typing_event(channel: &str, user: &UserRef) -> Bytes {
    #[derive(Serialize)]
    struct T<'a> {
        ev: &'static str,
        channel: &'a str,
        user: &'a UserRef,
    }
    to_bytes(&T {
        ev: "typing",
        channel,
        user,
    })
}

/// An edit of a stored message: what the channel's members get, what travels between
/// nodes.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Edited {
    pub channel: Arc<str>,
    pub seq: i64,
    pub from: UserRef,
    pub data: Arc<RawValue>,
    pub edited_ts: i64,
}

impl Edited {
    /// `{"ev":"edit",...}`
    pub fn frame(&self) -> Bytes {
        edit_event(&self.channel, self.seq, &self.from, &self.data, self.edited_ts)
    }
}

/// A deletion of a stored message.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Deleted {
    pub channel: Arc<str>,
    pub seq: i64,
}

impl Deleted {
    /// `{"ev":"delete",...}`
    pub fn frame(&self) -> Bytes {
        delete_event(&self.channel, self.seq)
    }
}

fn edit_event(channel: &str, seq: i64, from: &UserRef, data: &RawValue, edited_ts: i64) -> Bytes {
    #[derive(Serialize)]
    struct E<'a> {
        ev: &'static str,
        channel: &'a str,
        seq: i64,
        from: &'a UserRef,
        data: &'a RawValue,
        edited_ts: i64,
    }
    to_bytes(&E {
        ev: "edit",
        channel,
        seq,
        from,
        data,
        edited_ts,
    })
}

fn delete_event(channel: &str, seq: i64) -> Bytes {
    #[derive(Serialize)]
    struct D<'a> {
        ev: &'static str,
        channel: &'a str,
        seq: i64,
    }
    to_bytes(&D {
        ev: "delete",
        channel,
        seq,
    })
}

pub fn signal_event(from: &UserRef, call: &str, data: &RawValue) -> Bytes {
    #[derive(Serialize)]
    struct S<'a> {
        ev: &'static str,
        from: &'a UserRef,
        call: &'a str,
        data: &'a RawValue,
    }
    to_bytes(&S {
        ev: "signal",
        from,
        call,
        data,
    })
}

pub fn disconnect_event(code: u16, reason: &str) -> Bytes {
    #[derive(Serialize)]
    struct D<'a> {
        ev: &'static str,
        code: u16,
        reason: &'a str,
    }
    to_bytes(&D {
        ev: "disconnect",
        code,
        reason,
    })
}

/// Presence list entry: `{"id","name","conns"}`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct PresenceMember {
    pub id: Arc<str>,
    pub name: Arc<str>,
    pub conns: u32,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `{"ev":"removed","channel":...}`: a moderator removed the user from a room's
/// members; the connection no longer gets its events.
pub fn removed_event(channel: &str) -> Bytes {
    #[derive(Serialize)]
    struct R<'a> {
        ev: &'static str,
        channel: &'a str,
    }
    to_bytes(&R { ev: "removed", channel })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_event_shape() {
        let m = Message {
            channel: "room:lobby".into(),
            seq: 3,
            ts: 10,
            from: UserRef::new("42", "alice"),
            data: RawValue::from_string(r#"{"type":"text","text":"hi"}"#.into())
                .unwrap()
                .into(),
            client_id: Some("c-1".into()),
            edited_ts: None,
            deleted: false,
        };
        let v: serde_json::Value = serde_json::from_slice(&message_event(&m)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"ev":"message","channel":"room:lobby","seq":3,"ts":10,
                "from":{"id":"42","name":"alice"},"data":{"type":"text","text":"hi"},"client_id":"c-1"})
        );
        let e: serde_json::Value = serde_json::from_slice(&reply_err(Some(7), &AppError::forbidden("no"))).unwrap();
        assert_eq!(
            e,
            serde_json::json!({"id":7,"error":{"code":"forbidden","message":"no"}})
        );
    }
}

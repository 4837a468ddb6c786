//! What travels between nodes.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::protocol::{Deleted, Edited, Message, PresenceMember, UserRef};

/// A stored message on the wire between nodes.
#[derive(Debug, Serialize, Deserialize)]
pub struct WireMessage {
    pub channel: Arc<str>,
    pub seq: i64,
    pub ts: i64,
    pub from: UserRef,
    pub data: Arc<RawValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<Arc<str>>,
}

impl From<&Message> for WireMessage {
    fn from(m: &Message) -> Self {
        WireMessage {
            channel: m.channel.clone(),
            seq: m.seq,
            ts: m.ts,
            from: m.from.clone(),
            data: m.data.clone(),
            client_id: m.client_id.clone(),
        }
    }
}

impl From<WireMessage> for Message {
    fn from(w: WireMessage) -> Message {
        Message {
            channel: w.channel,
            seq: w.seq,
            ts: w.ts,
            from: w.from,
            data: w.data,
            client_id: w.client_id,
            edited_ts: None,
            deleted: false,
        }
    }
}

/// One event between nodes.
/// (Externally tagged: raw JSON values cannot pass through serde's buffering of
/// internally tagged or flattened representations.)
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BusEvent {
    /// A committed message of a stored channel.
    Message(WireMessage),
    Edit(Edited),
    Delete(Deleted),
    /// A value of an in-memory feed channel (each node keeps its own seq).
    Feed {
        channel: Arc<str>,
        from: UserRef,
        data: Arc<RawValue>,
    },
    Typing {
        channel: Arc<str>,
        user: UserRef,
    },
    /// A signal frame for every connection of user `to`.
    Signal {
        to: Arc<str>,
        frame: Box<RawValue>,
    },
    /// Tokens of user `user` older than `version` were revoked (logout, password
    /// change): every node refuses them and closes their connections.
    Revoke {
        user: Arc<str>,
        version: u32,
    },
    /// A moderator kicked user `user`: every node closes its connections (4003).
    Kick {
        user: Arc<str>,
        reason: Arc<str>,
    },
    /// Users who became present or absent on the sending node.
    Presence {
        channel: Arc<str>,
        joined: Vec<UserRef>,
        left: Vec<UserRef>,
    },
    /// Everyone present on the sending node (periodic, and the answer to an ask).
    PresenceState {
        channel: Arc<str>,
        users: Vec<PresenceMember>,
    },
    /// A node started watching the channel: others answer with their state.
    PresenceAsk {
        channel: Arc<str>,
    },
}

impl BusEvent {
    /// The channel the event is about (`None` for per-user events).
    pub fn channel(&self) -> Option<&Arc<str>> {
        match self {
            BusEvent::Signal { .. } | BusEvent::Revoke { .. } | BusEvent::Kick { .. } => None,
            BusEvent::Message(m) => Some(&m.channel),
            BusEvent::Edit(e) => Some(&e.channel),
            BusEvent::Delete(d) => Some(&d.channel),
            BusEvent::Feed { channel, .. }
            | BusEvent::Typing { channel, .. }
            | BusEvent::Presence { channel, .. }
            | BusEvent::PresenceState { channel, .. }
            | BusEvent::PresenceAsk { channel } => Some(channel),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_keeps_its_wire_shape() {
        let ev = BusEvent::Edit(Edited {
            channel: "room:a".into(),
            seq: 3,
            from: UserRef::new("1", "a"),
            data: RawValue::from_string("{}".into()).unwrap().into(),
            edited_ts: 9,
        });
        assert_eq!(
            serde_json::to_string(&ev).unwrap(),
            r#"{"edit":{"channel":"room:a","seq":3,"from":{"id":"1","name":"a"},"data":{},"edited_ts":9}}"#
        );
        let d = serde_json::to_string(&BusEvent::Delete(Deleted {
            channel: "room:a".into(),
            seq: 3,
        }))
        .unwrap();
        assert_eq!(d, r#"{"delete":{"channel":"room:a","seq":3}}"#);
    }

    #[test]
    fn round_trip_keeps_raw_json() {
        let data: Arc<RawValue> = RawValue::from_string(r#"{"text":"hi","n":1.50}"#.into())
            .unwrap()
            .into();
        let ev = BusEvent::Feed {
            channel: "ticker:A".into(),
            from: UserRef::new("1", "a"),
            data,
        };
        let json = serde_json::to_string(&ev).unwrap();
        let back: BusEvent = serde_json::from_str(&json).unwrap();
        match back {
            BusEvent::Feed { data, .. } => assert_eq!(data.get(), r#"{"text":"hi","n":1.50}"#),
            other => panic!("{other:?}"),
        }
    }
}

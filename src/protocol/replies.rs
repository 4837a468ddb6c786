//! The `ok` values of replies, as typed values. The WebSocket adapter wraps them in
//! `{"id","ok"}`; the HTTP API returns the same shapes as its JSON bodies.

use std::sync::Arc;

use serde::Serialize;

use super::{Message, PresenceMember};

/// `{}`: the reply of operations that return nothing.
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Empty {}

/// `publish`: where the message landed. `duplicate` marks a resend recognized by its
/// `client_id` (the original's seq and ts).
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct PublishOk {
    pub seq: i64,
    pub ts: i64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

/// `ping`: the server's clock.
#[derive(Debug, Serialize)]
pub struct PingOk {
    pub ts: i64,
}

/// `join`: the channel's position, the messages to show or recover, and (channels
/// with presence) who is present.
#[derive(Debug, Serialize)]
pub struct JoinOk<'a> {
    pub channel: Arc<str>,
    pub seq: i64,
    pub epoch: Arc<str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovered: Option<bool>,
    pub messages: &'a [Message],
    /// Missed messages did not fit the reply: continue with `history after=`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub more: bool,
    /// The first members (by name) of a channel with presence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence: Option<Vec<PresenceMember>>,
    /// Users present, where the channel has presence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_count: Option<usize>,
}

/// `history`: messages in ascending seq order.
#[derive(Debug, Serialize)]
pub struct HistoryOk {
    pub messages: Vec<Message>,
    /// The byte budget cut the page short: ask again from its edge.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub more: bool,
}

/// `presence`: one page of who is present, ordered by name.
#[derive(Debug, Serialize)]
pub struct PresenceOk {
    pub members: Vec<PresenceMember>,
    /// Users present in all.
    pub count: usize,
    /// Cursor of the next page (`after`); absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// One entry of the `channels` reply.
#[derive(Debug, Serialize)]
pub struct ChannelSummary {
    pub channel: String,
    pub seq: i64,
    pub unread: i64,
    pub last: Option<Message>,
}

/// `channels`: the rooms and DMs of the caller.
#[derive(Debug, Serialize)]
pub struct ChannelsOk {
    pub channels: Vec<ChannelSummary>,
}

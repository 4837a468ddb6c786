//! Rows as diesel reads them, and their conversion to wire types.

use std::sync::Arc;

use diesel::prelude::*;
use serde_json::value::RawValue;

use crate::{
    auth::Role,
    error::{AppError, AppResult},
    protocol::{Message, UserRef},
};

use super::schema::*;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users)]
pub struct UserRow {
    pub uid: i64,
    pub name: String,
    pub name_lower: String,
    pub password_hash: String,
    pub role: String,
    pub created_at: i64,
    pub token_version: i32,
}

impl UserRow {
    pub fn user_ref(&self) -> UserRef {
        UserRef::new(self.uid.to_string(), self.name.as_str())
    }

    /// The stored role (a checked column: anything else is a corrupt row).
    pub fn role(&self) -> AppResult<Role> {
        self.role.parse().map_err(|e| {
            log::error!("user {}: {e}", self.uid);
            AppError::internal("corrupt user record")
        })
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = rooms)]
pub struct RoomRow {
    pub name: String,
    pub private: bool,
    pub created_by: String,
    pub created_at: i64,
    /// Read-only: publishes are refused.
    pub archived: bool,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = messages)]
pub struct MessageRow {
    pub channel: String,
    pub seq: i64,
    pub ts: i64,
    pub sender_id: String,
    pub sender_name: String,
    pub client_id: Option<String>,
    pub data: String,
    pub edited_ts: Option<i64>,
    pub deleted: bool,
}

/// The newest value of a durable last-value channel, written as an update or, the
/// first time, an insert.
#[derive(Debug, Insertable, AsChangeset)]
#[diesel(table_name = last_values, primary_key(channel))]
pub struct LastValueRow<'a> {
    pub channel: &'a str,
    pub seq: i64,
    pub ts: i64,
    pub sender_id: &'a str,
    pub sender_name: &'a str,
    pub data: &'a str,
}

/// Parses stored JSON back into a raw value; a corrupt row degrades to `{}`.
pub fn raw_json(s: String) -> Arc<RawValue> {
    RawValue::from_string(s)
        .unwrap_or_else(|_| RawValue::from_string("{}".into()).expect("valid"))
        .into()
}

impl From<MessageRow> for Message {
    fn from(r: MessageRow) -> Message {
        Message {
            channel: r.channel.into(),
            seq: r.seq,
            ts: r.ts,
            from: UserRef::new(r.sender_id, r.sender_name),
            data: raw_json(r.data),
            client_id: r.client_id.map(Into::into),
            edited_ts: r.edited_ts,
            deleted: r.deleted,
        }
    }
}

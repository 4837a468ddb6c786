//! The writer's statements, run on the backend's own connection.
//!
//! Through `MultiConnection` every execution renders its SQL again (the statement
//! cache is keyed by that text) and upserts are not available. The writer runs the
//! same few statements thousands of times per second, so [`native!`] compiles each of
//! them once per backend: the statement cache then finds the prepared statement by
//! type, and `ON CONFLICT DO NOTHING` (both backends) replaces the catch of a unique
//! violation, which on PostgreSQL would abort the whole transaction.
//!
//! No statement here binds a `LIMIT` (as `.first()` does): SQLite re-prepares a
//! statement whose `LIMIT` parameter was bound again. Lookups are by unique key.

use diesel::prelude::*;

use crate::storage::{schema::*, Conn};

/// Runs `$body` with `$c` bound to the backend's own connection.
macro_rules! native {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            Conn::Sqlite($c) => $body,
            Conn::Postgres($c) => $body,
        }
    };
}

/// One message row to insert.
pub(super) struct NewMessage<'a> {
    pub channel: &'a str,
    pub seq: i64,
    pub ts: i64,
    pub sender_id: &'a str,
    pub sender_name: &'a str,
    pub client_id: Option<&'a str>,
    pub data: &'a str,
}

pub(super) fn insert_message(c: &mut Conn, m: &NewMessage) -> QueryResult<()> {
    native!(c, |c| diesel::insert_into(messages::table)
        .values((
            messages::channel.eq(m.channel),
            messages::seq.eq(m.seq),
            messages::ts.eq(m.ts),
            messages::sender_id.eq(m.sender_id),
            messages::sender_name.eq(m.sender_name),
            messages::client_id.eq(m.client_id),
            messages::data.eq(m.data),
            messages::deleted.eq(false),
        ))
        .execute(c))?;
    Ok(())
}

/// (seq, ts) of the message `sender` stored in `channel` with `client_id`.
pub(super) fn find_client_id(
    c: &mut Conn,
    channel: &str,
    sender: &str,
    client_id: &str,
) -> QueryResult<Option<(i64, i64)>> {
    native!(c, |c| messages::table
        .filter(messages::channel.eq(channel))
        .filter(messages::sender_id.eq(sender))
        .filter(messages::client_id.eq(client_id))
        .select((messages::seq, messages::ts))
        .get_result(c)
        .optional())
}

/// Creates `channel`'s counter row; false when it exists already.
pub(super) fn create_channel(c: &mut Conn, channel: &str, epoch: &str) -> QueryResult<bool> {
    native!(c, |c| diesel::insert_into(channels::table)
        .values((
            channels::name.eq(channel),
            channels::seq.eq(0i64),
            channels::epoch.eq(epoch),
        ))
        .on_conflict_do_nothing()
        .execute(c))
    .map(|n| n > 0)
}

/// Whether room `name` is private; `None` when it does not exist.
pub(super) fn room_private(c: &mut Conn, name: &str) -> QueryResult<Option<bool>> {
    native!(c, |c| rooms::table
        .find(name)
        .select(rooms::private)
        .get_result(c)
        .optional())
}

/// Creates public room `name`; false when it exists already (created meanwhile).
pub(super) fn create_public_room(c: &mut Conn, name: &str, by: &str, at: i64) -> QueryResult<bool> {
    native!(c, |c| diesel::insert_into(rooms::table)
        .values((
            rooms::name.eq(name),
            rooms::private.eq(false),
            rooms::created_by.eq(by),
            rooms::created_at.eq(at),
        ))
        .on_conflict_do_nothing()
        .execute(c))
    .map(|n| n > 0)
}

pub(super) fn member_exists(c: &mut Conn, channel: &str, user_id: &str) -> QueryResult<bool> {
    native!(c, |c| memberships::table
        .find((channel, user_id))
        .select(memberships::user_id)
        .get_result::<String>(c)
        .optional())
    .map(|r| r.is_some())
}

/// Records a membership (kept as it is when it exists).
pub(super) fn add_member(c: &mut Conn, channel: &str, user_id: &str, user_name: &str, at: i64) -> QueryResult<()> {
    native!(c, |c| diesel::insert_into(memberships::table)
        .values((
            memberships::channel.eq(channel),
            memberships::user_id.eq(user_id),
            memberships::user_name.eq(user_name),
            memberships::joined_at.eq(at),
        ))
        .on_conflict_do_nothing()
        .execute(c))?;
    Ok(())
}

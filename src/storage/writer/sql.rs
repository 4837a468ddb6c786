//! The writer's statements, run on the backend's own connection.
//!
//! Through `MultiConnection` every execution renders its SQL again (the statement
//! cache is keyed by that text) and upserts are not available. The writer runs the
//! same few statements thousands of times per second, so `native!` compiles each of
//! them once per backend: the statement cache then finds the prepared statement by
//! type, and `ON CONFLICT DO NOTHING` (both backends) replaces the catch of a unique
//! violation, which on PostgreSQL would abort the whole transaction.
//!
//! No statement here binds a `LIMIT` (as `.first()` does): SQLite re-prepares a
//! statement whose `LIMIT` parameter was bound again. Lookups are by unique key.
//!
//! Where the backends differ in what is cheap, so do the statements: on SQLite a
//! statement costs little and a cached one less, on PostgreSQL each is a round trip,
//! so messages and client_id lookups go one per statement on SQLite and many per
//! statement on PostgreSQL.

use std::{collections::HashMap, sync::Arc};

use diesel::{
    backend::Backend,
    connection::SimpleConnection,
    expression::AsExpression,
    prelude::*,
    serialize::{self, Output, ToSql},
    sql_types::{Array, BigInt, Text},
};
use serde_json::value::RawValue;

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

/// Page cache of the writer's SQLite connection, KiB (SQLite's default: 2 MiB). A
/// batch of thousands of messages dirties more pages than that: SQLite then spills
/// them into the WAL mid-transaction and writes many of them again at the commit
/// (benches/writer, 4096-op batches: 1.6 -> 1.36 KB written per message, writer CPU
/// per message -5%).
const SQLITE_WRITER_CACHE_KIB: u32 = 32 * 1024;

/// Settings of the writer's own connection.
pub(super) fn tune_writer_connection(c: &mut Conn) {
    if let Conn::Sqlite(c) = c {
        if let Err(e) = c.batch_execute(&format!("PRAGMA cache_size = -{SQLITE_WRITER_CACHE_KIB}")) {
            log::warn!("writer page cache left at its default: {e}");
        }
    }
}

/// Text shared with the op it comes from: bound without a copy.
#[derive(Debug, AsExpression)]
#[diesel(sql_type = Text)]
pub(super) struct SharedText(pub Arc<str>);

impl<DB: Backend> ToSql<Text, DB> for SharedText
where
    str: ToSql<Text, DB>,
{
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, DB>) -> serialize::Result {
        (*self.0).to_sql(out)
    }
}

/// A JSON value stored as its text, bound without a copy.
#[derive(Debug, AsExpression)]
#[diesel(sql_type = Text)]
pub(super) struct JsonText(pub Arc<RawValue>);

impl<DB: Backend> ToSql<Text, DB> for JsonText
where
    str: ToSql<Text, DB>,
{
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, DB>) -> serialize::Result {
        self.0.get().to_sql(out)
    }
}

/// One message row to insert. It owns its values (shared, not copied): a multi-row
/// insert is identified by the type of its rows, which must not borrow.
#[derive(Insertable)]
#[diesel(table_name = messages, treat_none_as_default_value = false)]
pub(super) struct NewMessage {
    pub channel: SharedText,
    pub seq: i64,
    pub ts: i64,
    pub sender_id: SharedText,
    pub sender_name: SharedText,
    pub client_id: Option<SharedText>,
    pub data: JsonText,
}

/// Inserts `rows`. SQLite: one cached statement per row. A multi-row `INSERT` cost
/// SQLite more than it saved (measured: writer CPU per message 11.7 -> 15.7 us): rows
/// of a batch go to many places in the indexes, and a statement changing several
/// rows keeps a statement journal of every page it touches. PostgreSQL: several rows
/// per statement, each statement being a round trip; in chunks of fixed sizes, so
/// that each size is one statement prepared once.
pub(super) fn insert_messages(c: &mut Conn, mut rows: &[NewMessage]) -> QueryResult<()> {
    match c {
        Conn::Sqlite(c) => {
            for row in rows {
                diesel::insert_into(messages::table).values(row).execute(c)?;
            }
        }
        Conn::Postgres(c) => {
            macro_rules! chunks_of {
                ($n:literal) => {
                    while let Some((head, rest)) = rows.split_first_chunk::<$n>() {
                        diesel::insert_into(messages::table)
                            .values(head)
                            .execute(c)?;
                        rows = rest;
                    }
                };
            }
            chunks_of!(64);
            chunks_of!(16);
            chunks_of!(4);
            chunks_of!(1);
        }
    }
    Ok(())
}

/// (channel, sender id, client_id) of a message.
pub(super) type ClientIdKey = (Arc<str>, Arc<str>, Arc<str>);

#[derive(QueryableByName)]
struct Found {
    #[diesel(sql_type = Text)]
    channel: String,
    #[diesel(sql_type = Text)]
    sender_id: String,
    #[diesel(sql_type = Text)]
    client_id: String,
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = BigInt)]
    ts: i64,
}

/// (seq, ts) of the stored messages among `keys`. SQLite: one cached lookup per key;
/// PostgreSQL: one statement for all of them.
pub(super) fn find_client_ids(c: &mut Conn, keys: &[ClientIdKey]) -> QueryResult<HashMap<ClientIdKey, (i64, i64)>> {
    let mut found = HashMap::new();
    match c {
        Conn::Sqlite(c) => {
            for key in keys {
                let (ch, sender, cid) = key;
                let row = messages::table
                    .filter(messages::channel.eq(&**ch))
                    .filter(messages::sender_id.eq(&**sender))
                    .filter(messages::client_id.eq(&**cid))
                    .select((messages::seq, messages::ts))
                    .get_result::<(i64, i64)>(c)
                    .optional()?;
                if let Some(v) = row {
                    found.insert(key.clone(), v);
                }
            }
        }
        Conn::Postgres(c) => {
            for chunk in keys.chunks(1000) {
                let rows: Vec<Found> = diesel::sql_query(
                    "SELECT m.channel, m.sender_id, m.client_id, m.seq, m.ts FROM messages m \
                     JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(channel, sender_id, client_id) \
                     ON m.channel = k.channel AND m.sender_id = k.sender_id AND m.client_id = k.client_id \
                     WHERE m.client_id IS NOT NULL",
                )
                .bind::<Array<Text>, _>(chunk.iter().map(|k| &*k.0).collect::<Vec<&str>>())
                .bind::<Array<Text>, _>(chunk.iter().map(|k| &*k.1).collect::<Vec<&str>>())
                .bind::<Array<Text>, _>(chunk.iter().map(|k| &*k.2).collect::<Vec<&str>>())
                .load(c)?;
                for r in rows {
                    let key = (r.channel.into(), r.sender_id.into(), r.client_id.into());
                    found.insert(key, (r.seq, r.ts));
                }
            }
        }
    }
    Ok(found)
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

/// Removes a membership (nothing when there is none).
pub(super) fn remove_member(c: &mut Conn, channel: &str, user_id: &str) -> QueryResult<()> {
    native!(c, |c| diesel::delete(memberships::table.find((channel, user_id)))
        .execute(c))?;
    Ok(())
}

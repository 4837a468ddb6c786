//! The seq counters (`channels.seq`) of one batch: locked at its start, written back at
//! its end. Diesel prepares every `UPDATE` anew (it caches none), which cost more than
//! the rest of a small batch: on SQLite each counter is read and written by a cached
//! statement ([`SetSeq`] is an `UPDATE` diesel caches); on PostgreSQL, where every
//! statement is a round trip, all counters of the batch are locked by one statement
//! and written by another.
//!
//! The counter rows stay locked until the commit, so seqs are gap-free and unique
//! across nodes: on PostgreSQL the rows are locked `FOR UPDATE` in name order (no
//! deadlock between nodes); on SQLite the transaction holds the database's write lock
//! from its `BEGIN IMMEDIATE` on ([`transaction`]).

use std::{collections::HashMap, sync::Arc};

use diesel::{
    backend::Backend,
    prelude::*,
    query_builder::{AstPass, QueryFragment, QueryId},
    serialize::ToSql,
    sql_types::{Array, BigInt, HasSqlType, Text},
};

use super::sql;
use crate::storage::{schema::*, Conn};

/// Most channels per statement (SQLite binds at most 32,766 values).
const CHUNK: usize = 1000;

/// A locked counter: its value at the start of the batch and now.
pub(super) struct Top {
    pub start: i64,
    pub now: i64,
}

/// Locks the counters of `chans` (sorted, distinct), creating missing ones; returns
/// their values.
pub(super) fn lock(c: &mut Conn, chans: &[&Arc<str>]) -> QueryResult<HashMap<Arc<str>, Top>> {
    let mut tops = HashMap::with_capacity(chans.len());
    for chunk in chans.chunks(CHUNK) {
        let found: HashMap<String, i64> = match &mut *c {
            // Under the write lock since BEGIN IMMEDIATE.
            Conn::Sqlite(c) => {
                let mut found = HashMap::with_capacity(chunk.len());
                for ch in chunk {
                    let seq: Option<i64> = channels::table
                        .find(&***ch)
                        .select(channels::seq)
                        .get_result(c)
                        .optional()?;
                    if let Some(seq) = seq {
                        found.insert(ch.to_string(), seq);
                    }
                }
                found
            }
            Conn::Postgres(c) => {
                let names: Vec<&str> = chunk.iter().map(|c| &***c).collect();
                channels::table
                    .filter(channels::name.eq_any(&names))
                    .order(channels::name)
                    .select((channels::name, channels::seq))
                    .for_update()
                    .load::<(String, i64)>(c)?
                    .into_iter()
                    .collect()
            }
        };
        for ch in chunk {
            let seq = match found.get(&***ch) {
                Some(seq) => *seq,
                None => create(c, ch)?,
            };
            tops.insert((*ch).clone(), Top { start: seq, now: seq });
        }
    }
    Ok(tops)
}

/// Creates the counter of `channel` (or, when another node created it meanwhile,
/// locks that one) and returns its value.
fn create(c: &mut Conn, channel: &str) -> QueryResult<i64> {
    let epoch = hex::encode(rand::random::<[u8; 4]>());
    if sql::create_channel(c, channel, &epoch)? {
        return Ok(0);
    }
    match c {
        Conn::Sqlite(c) => channels::table.find(channel).select(channels::seq).get_result(c),
        Conn::Postgres(c) => channels::table
            .find(channel)
            .select(channels::seq)
            .for_update()
            .get_result(c),
    }
}

/// Writes back the counters that moved.
pub(super) fn store(c: &mut Conn, tops: &HashMap<Arc<str>, Top>) -> QueryResult<()> {
    let moved: Vec<(&str, i64)> = tops
        .iter()
        .filter(|(_, t)| t.now != t.start)
        .map(|(ch, t)| (&**ch, t.now))
        .collect();
    match c {
        Conn::Sqlite(c) => {
            for (name, seq) in moved {
                SetSeq { name, seq }.execute(c)?;
            }
        }
        Conn::Postgres(c) => {
            for chunk in moved.chunks(CHUNK) {
                let (names, seqs): (Vec<&str>, Vec<i64>) = chunk.iter().copied().unzip();
                diesel::sql_query(
                    "UPDATE channels SET seq = v.seq FROM unnest($1::text[], $2::int8[]) AS v(name, seq) \
                     WHERE channels.name = v.name",
                )
                .bind::<Array<Text>, _>(names)
                .bind::<Array<BigInt>, _>(seqs)
                .execute(c)?;
            }
        }
    }
    Ok(())
}

/// `UPDATE channels SET seq = ? WHERE name = ?`, as a statement diesel caches.
struct SetSeq<'a> {
    name: &'a str,
    seq: i64,
}

impl QueryId for SetSeq<'_> {
    type QueryId = SetSeq<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<DB> QueryFragment<DB> for SetSeq<'_>
where
    DB: Backend + HasSqlType<Text> + HasSqlType<BigInt>,
    str: ToSql<Text, DB>,
    i64: ToSql<BigInt, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.push_sql("UPDATE channels SET seq = ");
        out.push_bind_param::<BigInt, _>(&self.seq)?;
        out.push_sql(" WHERE name = ");
        out.push_bind_param::<Text, _>(self.name)?;
        Ok(())
    }
}

impl<C> RunQueryDsl<C> for SetSeq<'_> {}

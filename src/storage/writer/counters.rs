//! The seq counters (`channels.seq`) of one batch: locked together at its start and
//! written back together at its end, a few statements per batch whatever the number
//! of channels (one `UPDATE` per channel was prepared anew each time: diesel caches
//! no `UPDATE`).
//!
//! The counter rows stay locked until the commit, so seqs are gap-free and unique
//! across nodes: on PostgreSQL the rows are locked `FOR UPDATE` in name order (no
//! deadlock between nodes); on SQLite the transaction holds the database's write lock
//! from its `BEGIN IMMEDIATE` on ([`transaction`]).

use std::{collections::HashMap, sync::Arc};

use diesel::{
    connection::{AnsiTransactionManager, TransactionManager},
    prelude::*,
    sql_types::{Array, BigInt, Text},
};

use super::sql;
use crate::storage::{schema::*, Conn};

/// Most channels per statement (SQLite binds at most 32,766 values).
const CHUNK: usize = 1000;

/// Runs `f` in a transaction; on SQLite one that takes the write lock at once
/// (`BEGIN IMMEDIATE`, waiting up to the busy timeout): a deferred transaction that
/// read first could not write once another connection had written meanwhile.
pub(super) fn transaction<T>(c: &mut Conn, f: impl FnOnce(&mut Conn) -> QueryResult<T>) -> QueryResult<T> {
    match c {
        Conn::Sqlite(c) => AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?,
        Conn::Postgres(c) => AnsiTransactionManager::begin_transaction(c)?,
    }
    match f(c) {
        Ok(v) => {
            <Conn as Connection>::TransactionManager::commit_transaction(c)?;
            Ok(v)
        }
        Err(e) => {
            // The batch's own error is what matters (a failed rollback breaks the
            // connection, which the next batch then reports).
            let _ = <Conn as Connection>::TransactionManager::rollback_transaction(c);
            Err(e)
        }
    }
}

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
        let names: Vec<&str> = chunk.iter().map(|c| &***c).collect();
        let found: Vec<(String, i64)> = match &mut *c {
            Conn::Sqlite(c) => channels::table
                .filter(channels::name.eq_any(&names))
                .select((channels::name, channels::seq))
                .load(c)?,
            Conn::Postgres(c) => channels::table
                .filter(channels::name.eq_any(&names))
                .order(channels::name)
                .select((channels::name, channels::seq))
                .for_update()
                .load(c)?,
        };
        let found: HashMap<&str, i64> = found.iter().map(|(n, s)| (n.as_str(), *s)).collect();
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
    for chunk in moved.chunks(CHUNK) {
        match &mut *c {
            Conn::Sqlite(c) => {
                let mut sql = String::from("UPDATE channels SET seq = CASE name");
                sql.push_str(&" WHEN ? THEN ?".repeat(chunk.len()));
                sql.push_str(" END WHERE name IN (?");
                sql.push_str(&", ?".repeat(chunk.len() - 1));
                sql.push(')');
                let mut q = diesel::sql_query(sql).into_boxed();
                for (name, seq) in chunk {
                    q = q.bind::<Text, _>(*name).bind::<BigInt, _>(*seq);
                }
                for (name, _) in chunk {
                    q = q.bind::<Text, _>(*name);
                }
                q.execute(c)?;
            }
            Conn::Postgres(c) => {
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

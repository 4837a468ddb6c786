//! Moderation records: bans (a banned user can neither log in nor connect, until
//! unbanned) and the audit log of every moderation action.

use diesel::prelude::*;
use serde::Serialize;

use super::super::{schema::*, Conn};
use super::users::{record, Change};
use crate::{error::AppResult, protocol::now_ms};

/// One ban, as the admin console and the command line list it.
#[derive(Debug, Clone, Serialize, Queryable)]
pub struct Ban {
    pub user_id: String,
    pub reason: String,
    pub banned_by: String,
    pub created_at: i64,
}

/// Bans `user_id` (again: the reason is replaced). Every node closes the user's
/// connections and refuses its tokens.
pub fn ban(c: &mut Conn, user_id: &str, reason: &str, by: &str) -> AppResult<()> {
    c.transaction(|c| {
        diesel::delete(bans::table.find(user_id)).execute(c)?;
        diesel::insert_into(bans::table)
            .values((
                bans::user_id.eq(user_id),
                bans::reason.eq(reason),
                bans::banned_by.eq(by),
                bans::created_at.eq(now_ms()),
            ))
            .execute(c)?;
        record(c, user_id, Change::Ban)
    })?;
    Ok(())
}

/// Lifts a ban; false when the user was not banned.
pub fn unban(c: &mut Conn, user_id: &str) -> AppResult<bool> {
    Ok(c.transaction(|c| {
        let n = diesel::delete(bans::table.find(user_id)).execute(c)?;
        if n > 0 {
            record(c, user_id, Change::Unban)?;
        }
        diesel::QueryResult::Ok(n > 0)
    })?)
}

/// Every ban, newest first (at most `limit`).
pub fn list_bans(c: &mut Conn, limit: i64) -> AppResult<Vec<Ban>> {
    Ok(bans::table
        .order(bans::created_at.desc())
        .limit(limit)
        .select((bans::user_id, bans::reason, bans::banned_by, bans::created_at))
        .load(c)?)
}

/// Is `user_id` banned?
pub fn is_banned(c: &mut Conn, user_id: &str) -> AppResult<bool> {
    let n: i64 = bans::table.filter(bans::user_id.eq(user_id)).count().get_result(c)?;
    Ok(n > 0)
}

/// One moderation action.
#[derive(Debug, Clone, Serialize, Queryable)]
pub struct AuditEntry {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub reason: String,
}

/// Writes a moderation action into the audit log.
pub fn audit(c: &mut Conn, actor: &str, action: &str, target: &str, reason: &str) -> AppResult<()> {
    diesel::insert_into(audit_log::table)
        .values((
            audit_log::at.eq(now_ms()),
            audit_log::actor.eq(actor),
            audit_log::action.eq(action),
            audit_log::target.eq(target),
            audit_log::reason.eq(reason),
        ))
        .execute(c)?;
    Ok(())
}

/// The newest audit entries before id `before` (all when `None`), newest first.
pub fn audit_entries(c: &mut Conn, before: Option<i64>, limit: i64) -> AppResult<Vec<AuditEntry>> {
    let mut q = audit_log::table.into_boxed();
    if let Some(b) = before {
        q = q.filter(audit_log::id.lt(b));
    }
    Ok(q.order(audit_log::id.desc())
        .limit(limit)
        .select((
            audit_log::id,
            audit_log::at,
            audit_log::actor,
            audit_log::action,
            audit_log::target,
            audit_log::reason,
        ))
        .load(c)?)
}

/// Mutes `user_id` in `channel` until `until_ms` (replacing an earlier mute). Expired
/// mutes are removed on the way, so the table holds about the mutes in force.
pub fn mute(c: &mut Conn, channel: &str, user_id: &str, until_ms: i64, reason: &str, by: &str) -> AppResult<()> {
    c.transaction(|c| {
        diesel::delete(mutes::table.filter(mutes::until_ms.le(now_ms()))).execute(c)?;
        diesel::delete(mutes::table.find((channel, user_id))).execute(c)?;
        diesel::insert_into(mutes::table)
            .values((
                mutes::channel.eq(channel),
                mutes::user_id.eq(user_id),
                mutes::until_ms.eq(until_ms),
                mutes::reason.eq(reason),
                mutes::muted_by.eq(by),
            ))
            .execute(c)
    })?;
    Ok(())
}

/// Lifts a mute; false when there was none.
pub fn unmute(c: &mut Conn, channel: &str, user_id: &str) -> AppResult<bool> {
    Ok(diesel::delete(mutes::table.find((channel, user_id))).execute(c)? > 0)
}

/// Mutes in force: (channel, user id, until). Only reads (every node polls it).
pub fn active_mutes(c: &mut Conn) -> AppResult<Vec<(String, String, i64)>> {
    let now = now_ms();
    Ok(mutes::table
        .filter(mutes::until_ms.gt(now))
        .select((mutes::channel, mutes::user_id, mutes::until_ms))
        .load(c)?)
}

/// Marks room `name` (without its prefix) archived or not; false when there is no
/// such room.
pub fn set_archived(c: &mut Conn, name: &str, archived: bool) -> AppResult<bool> {
    Ok(diesel::update(rooms::table.find(name))
        .set(rooms::archived.eq(archived))
        .execute(c)?
        > 0)
}

/// Channel names (`room:...`) of the archived rooms.
pub fn archived_rooms(c: &mut Conn) -> AppResult<Vec<String>> {
    let names: Vec<String> = rooms::table
        .filter(rooms::archived.eq(true))
        .select(rooms::name)
        .load(c)?;
    Ok(names.into_iter().map(|n| format!("room:{n}")).collect())
}

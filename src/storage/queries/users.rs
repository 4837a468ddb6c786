//! Accounts: creation, lookups, token versions (revocation).

use diesel::prelude::*;

use super::super::{is_unique_violation, models::UserRow, schema::*, Conn};
use crate::{
    auth::Role,
    error::{AppError, AppResult},
    protocol::{now_ms, UserRef},
};

/// Creates an account. A taken name (case-insensitive) is `bad_request`.
pub fn create_user(c: &mut Conn, name: &str, password_hash: &str) -> AppResult<UserRow> {
    let lower = name.to_lowercase();
    let res = diesel::insert_into(users::table)
        .values((
            users::name.eq(name),
            users::name_lower.eq(&lower),
            users::password_hash.eq(password_hash),
            users::role.eq(crate::auth::Role::User.as_str()),
            users::created_at.eq(now_ms()),
        ))
        .execute(c);
    match res {
        Ok(_) => {}
        Err(e) if is_unique_violation(&e) => return Err(AppError::bad_request("that name is already taken")),
        Err(e) => return Err(e.into()),
    }
    find_user_by_name(c, name)?.ok_or_else(|| AppError::internal("user vanished after insert"))
}

/// A registered user by id (`uid` as a string); `None` for ids that are not
/// registered here (users of an outside identity provider).
pub fn find_user_by_id(c: &mut Conn, id: &str) -> AppResult<Option<UserRow>> {
    let Ok(uid) = id.parse::<i64>() else { return Ok(None) };
    Ok(users::table
        .find(uid)
        .select(UserRow::as_select())
        .first(c)
        .optional()?)
}

pub fn find_user_by_name(c: &mut Conn, name: &str) -> AppResult<Option<UserRow>> {
    Ok(users::table
        .filter(users::name_lower.eq(name.to_lowercase()))
        .select(UserRow::as_select())
        .first(c)
        .optional()?)
}

/// Raises the account's token version (logout: every token issued so far stops
/// working) and, with `new_hash`, sets its password, in one transaction that also
/// records the revocation for every node ([`revocations_after`]). The new version;
/// `None` for ids that are not registered here.
pub fn revoke_tokens(c: &mut Conn, id: &str, new_hash: Option<&str>) -> AppResult<Option<u32>> {
    let Ok(uid) = id.parse::<i64>() else { return Ok(None) };
    c.transaction(|c| {
        let n = diesel::update(users::table.find(uid))
            .set(users::token_version.eq(users::token_version + 1))
            .execute(c)?;
        if n == 0 {
            return Ok(None);
        }
        if let Some(hash) = new_hash {
            diesel::update(users::table.find(uid))
                .set(users::password_hash.eq(hash))
                .execute(c)?;
        }
        let v: i32 = users::table.find(uid).select(users::token_version).first(c)?;
        record(c, id, Change::Revoke(v.max(0) as u32))?;
        Ok(Some(v.max(0) as u32))
    })
}

/// Sets an account's role; its older tokens (which carry the old role) are revoked.
pub fn set_role(c: &mut Conn, id: &str, role: Role) -> AppResult<Option<u32>> {
    let Ok(uid) = id.parse::<i64>() else { return Ok(None) };
    let n = diesel::update(users::table.find(uid))
        .set(users::role.eq(role.as_str()))
        .execute(c)?;
    if n == 0 {
        return Ok(None);
    }
    revoke_tokens(c, id, None)
}

/// Every account, by name (at most `limit`).
pub fn list_users(c: &mut Conn, limit: i64) -> AppResult<Vec<UserRow>> {
    Ok(users::table
        .order(users::name_lower.asc())
        .limit(limit)
        .select(UserRow::as_select())
        .load(c)?)
}

/// What changed about a user's right to connect, in the order every node applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Tokens older than this version are refused.
    Revoke(u32),
    Ban,
    Unban,
    /// Removed from the members of this room.
    Unmember(String),
}

/// Appends a change to the log every node polls.
pub fn record(c: &mut Conn, user_id: &str, change: Change) -> diesel::QueryResult<()> {
    let (kind, version, channel) = match change {
        Change::Revoke(v) => ("revoke", v as i32, ""),
        Change::Ban => ("ban", 0, ""),
        Change::Unban => ("unban", 0, ""),
        Change::Unmember(ref ch) => ("unmember", 0, ch.as_str()),
    };
    diesel::insert_into(revocations::table)
        .values((
            revocations::user_id.eq(user_id),
            revocations::kind.eq(kind),
            revocations::version.eq(version),
            revocations::channel.eq(channel),
            revocations::created_at.eq(now_ms()),
        ))
        .execute(c)?;
    Ok(())
}

/// Changes after `after` (the id of the last one applied), oldest first, at most
/// `limit`: (id, user id, change).
pub fn revocations_after(c: &mut Conn, after: i64, limit: i64) -> AppResult<Vec<(i64, String, Change)>> {
    let rows: Vec<(i64, String, String, i32, String)> = revocations::table
        .filter(revocations::id.gt(after))
        .order(revocations::id.asc())
        .limit(limit)
        .select((
            revocations::id,
            revocations::user_id,
            revocations::kind,
            revocations::version,
            revocations::channel,
        ))
        .load(c)?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, user, kind, v, channel)| {
            let change = match kind.as_str() {
                "revoke" => Change::Revoke(v.max(0) as u32),
                "ban" => Change::Ban,
                "unban" => Change::Unban,
                "unmember" => Change::Unmember(channel),
                _ => return None,
            };
            Some((id, user, change))
        })
        .collect())
}

/// The id of the newest change (0 when there is none).
pub fn last_revocation(c: &mut Conn) -> AppResult<i64> {
    let id: Option<i64> = revocations::table.select(diesel::dsl::max(revocations::id)).first(c)?;
    Ok(id.unwrap_or(0))
}

/// Accounts whose token version is above 0: (user id, version).
pub fn token_versions(c: &mut Conn) -> AppResult<Vec<(String, u32)>> {
    let rows: Vec<(i64, i32)> = users::table
        .filter(users::token_version.gt(0))
        .select((users::uid, users::token_version))
        .load(c)?;
    Ok(rows
        .into_iter()
        .map(|(u, v)| (u.to_string(), v.max(0) as u32))
        .collect())
}

/// Users whose name contains `q` (case-insensitive), for starting a DM.
pub fn search_users(c: &mut Conn, q: &str, limit: i64) -> AppResult<Vec<UserRef>> {
    let pattern = format!(
        "%{}%",
        q.to_lowercase()
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    );
    let rows: Vec<UserRow> = users::table
        .filter(users::name_lower.like(pattern).escape('\\'))
        .order(users::name_lower.asc())
        .limit(limit)
        .select(UserRow::as_select())
        .load(c)?;
    Ok(rows.iter().map(UserRow::user_ref).collect())
}

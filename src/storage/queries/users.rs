//! Accounts: creation, lookups, token versions (revocation).

use diesel::prelude::*;

use super::super::{is_unique_violation, models::UserRow, schema::*, Conn};
use crate::{
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
/// working) and, with `new_hash`, sets its password in the same transaction. The new
/// version; `None` for ids that are not registered here.
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
        Ok(Some(v.max(0) as u32))
    })
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

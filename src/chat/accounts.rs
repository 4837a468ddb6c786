//! Accounts of this server: registration and login (argon2 password hashes). Tokens
//! for the account are issued by the caller's adapter (HTTP sets a cookie too).

use super::Chat;
use crate::{
    auth::{hash_password, verify_password, Identity, Role},
    error::{AppError, AppResult},
    protocol::UserRef,
    storage::queries,
};

/// A registered user.
pub struct Account {
    pub user: UserRef,
    pub role: Role,
}

fn valid_name(name: &str) -> AppResult<()> {
    let ok =
        !name.is_empty() && name.len() <= 32 && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(AppError::bad_request(
            "names are 1 to 32 characters of A-Z, a-z, 0-9, _ . -",
        ))
    }
}

fn valid_password(pw: &str) -> AppResult<()> {
    if (8..=256).contains(&pw.len()) {
        Ok(())
    } else {
        Err(AppError::bad_request("passwords are 8 to 256 bytes"))
    }
}

/// Registers a new account; `client` is the caller's address (rate limit key). The
/// password is hashed outside the storage pool ([`crate::auth::PasswordWork`]).
pub async fn register(chat: Chat, client: &str, name: String, password: String) -> AppResult<Account> {
    if !chat.limits.registrations.take(client) {
        crate::metrics::get().rate_limited(crate::metrics::Limit::Registrations);
        return Err(AppError::rate_limited(
            "too many registrations from this address, try later",
        ));
    }
    let name = name.trim().to_string();
    valid_name(&name)?;
    valid_password(&password)?;
    let n2 = name.clone();
    if chat
        .db
        .run(move |c| queries::find_user_by_name(c, &n2))
        .await?
        .is_some()
    {
        return Err(AppError::bad_request("that name is already taken"));
    }
    let hash = chat.passwords.run(move || hash_password(&password)).await??;
    let row = chat.db.run(move |c| queries::create_user(c, &name, &hash)).await?;
    Ok(Account {
        user: row.user_ref(),
        role: row.role()?,
    })
}

/// Checks a name and password; `client` is the caller's address. Every attempt counts
/// against the limits of the address and of the (name, address) pair before the
/// password is hashed, so guessing costs the guesser, not the server, and nobody can
/// lock another's account from elsewhere. The hash is checked outside the storage pool
/// ([`crate::auth::PasswordWork`]).
pub async fn login(chat: Chat, client: &str, name: String, password: String) -> AppResult<Account> {
    let wrong = || AppError::unauthorized("wrong name or password");
    if name.len() > 64 || password.len() > 256 {
        return Err(wrong());
    }
    let name = name.trim().to_string();
    let by_name = format!("{}@{client}", name.to_lowercase());
    if !chat.limits.logins.take(client) || !chat.limits.logins.take(&by_name) {
        crate::metrics::get().rate_limited(crate::metrics::Limit::Logins);
        return Err(AppError::rate_limited("too many failed logins, try again in a minute"));
    }
    let row = chat.db.run(move |c| queries::find_user_by_name(c, &name)).await?;
    // Unknown names cost the same work as a real check, so timing does not reveal them.
    let hash = row
        .as_ref()
        .map_or_else(|| dummy_hash().to_string(), |r| r.password_hash.clone());
    let ok = chat.passwords.run(move || verify_password(&password, &hash)).await?;
    if let Some(r) = row.as_ref().filter(|_| ok) {
        let id = r.uid.to_string();
        if chat.db.run(move |c| queries::is_banned(c, &id)).await? {
            return Err(AppError::forbidden("this account is banned"));
        }
    }
    match row {
        Some(r) if ok => {
            // Tokens issued here carry the stored version even if this node has not
            // heard of a revocation made on another one.
            chat.auth
                .versions()
                .raise(&r.uid.to_string(), r.token_version.max(0) as u32);
            Ok(Account {
                user: r.user_ref(),
                role: r.role()?,
            })
        }
        _ => Err(wrong()),
    }
}

/// A real hash of a random password, verified against for unknown names.
fn dummy_hash() -> &'static str {
    static H: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    H.get_or_init(|| hash_password(&hex::encode(rand::random::<[u8; 16]>())).unwrap_or_default())
}

/// Logs the account out everywhere: every token issued to it so far stops working on
/// every node, and its open connections are closed with 4001. Users of an outside
/// identity provider have no account here; for them this does nothing (their tokens
/// are the provider's to limit).
pub async fn revoke_tokens(chat: Chat, who: &Identity) -> AppResult<()> {
    let id = who.user.id.to_string();
    if let Some(version) = chat.db.run(move |c| queries::revoke_tokens(c, &id, None)).await? {
        chat.hub.revoke(&who.user.id, version);
    }
    Ok(())
}

/// Changes the caller's password after checking the current one (limited like a
/// login). Every older token stops working; the caller gets a fresh one from its
/// adapter.
pub async fn change_password(chat: Chat, client: &str, who: &Identity, old: String, new: String) -> AppResult<Account> {
    let wrong = || AppError::unauthorized("wrong password");
    if old.len() > 256 {
        return Err(wrong());
    }
    valid_password(&new)?;
    let key = format!("#{}@{client}", who.user.id);
    if !chat.limits.logins.take(client) || !chat.limits.logins.take(&key) {
        crate::metrics::get().rate_limited(crate::metrics::Limit::Logins);
        return Err(AppError::rate_limited("too many attempts, try again in a minute"));
    }
    let id = who.user.id.to_string();
    let row = chat
        .db
        .run(move |c| queries::find_user_by_id(c, &id))
        .await?
        .ok_or_else(|| AppError::bad_request("this account's password is not kept here"))?;
    let hash = row.password_hash.clone();
    if !chat.passwords.run(move || verify_password(&old, &hash)).await? {
        return Err(wrong());
    }
    let new_hash = chat.passwords.run(move || hash_password(&new)).await??;
    let id = who.user.id.to_string();
    let version = chat
        .db
        .run(move |c| queries::revoke_tokens(c, &id, Some(&new_hash)))
        .await?
        .ok_or_else(|| AppError::not_found("account"))?;
    chat.hub.revoke(&who.user.id, version);
    Ok(Account {
        user: row.user_ref(),
        role: row.role()?,
    })
}

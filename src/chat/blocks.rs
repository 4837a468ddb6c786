//! Blocking: a user blocks another, who can then no longer signal (ring) them. Nothing
//! tells the blocked user (their signals answer as for a stranger).

use super::Chat;
use crate::{
    auth::Identity,
    channels::valid_user_id,
    error::{AppError, AppResult},
    protocol::Empty,
    storage::queries,
};

/// The users the caller blocked.
#[derive(Debug, serde::Serialize)]
pub struct Blocked {
    pub users: Vec<String>,
}

fn target(who: &Identity, user: &str) -> AppResult<String> {
    if who.anonymous {
        return Err(AppError::forbidden("log in to block users"));
    }
    if !valid_user_id(user) {
        return Err(AppError::bad_request("bad user id"));
    }
    if user == who.id() {
        return Err(AppError::bad_request("cannot block yourself"));
    }
    Ok(user.to_string())
}

pub async fn block(chat: Chat, who: Identity, user: &str) -> AppResult<Empty> {
    let other = target(&who, user)?;
    chat.spend(&who, 1)?;
    chat.db.run(move |c| queries::block(c, who.id(), &other)).await?;
    Ok(Empty {})
}

pub async fn unblock(chat: Chat, who: Identity, user: &str) -> AppResult<Empty> {
    let other = target(&who, user)?;
    chat.spend(&who, 1)?;
    chat.db.run(move |c| queries::unblock(c, who.id(), &other)).await?;
    Ok(Empty {})
}

pub async fn list(chat: Chat, who: Identity) -> AppResult<Blocked> {
    if who.anonymous {
        return Ok(Blocked { users: Vec::new() });
    }
    let users = chat.db.run(move |c| queries::blocked_by(c, who.id())).await?;
    Ok(Blocked { users })
}

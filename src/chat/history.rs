//! `history`: scroll-back in a stored channel.

use super::Chat;
use crate::{
    auth::Identity,
    error::{AppError, AppResult},
    protocol::{request, HistoryOk},
    storage::queries::{self, From},
};

/// Messages a page holds by default, and at most.
const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 200;

/// The messages before `before`, after `after`, or the newest, ascending; as many as
/// fit the reply budget (`more` when it cut the page short: ask again from its edge).
pub async fn history(chat: Chat, who: Identity, req: request::History) -> AppResult<HistoryOk> {
    let (ch, access) = chat.readable(&who, &req.channel)?;
    let request::History {
        before, after, limit, ..
    } = req;
    if before.is_some() && after.is_some() {
        return Err(AppError::bad_request("give `before` or `after`, not both"));
    }
    if before.is_some_and(|b| b < 0) || after.is_some_and(|a| a < 0) || limit.is_some_and(|l| l < 0) {
        return Err(AppError::bad_request("negative seq or limit"));
    }
    let limit = limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    let from = match (before, after) {
        (Some(b), _) => From::Before(b),
        (_, Some(a)) => From::After(a),
        _ => From::Newest,
    };
    let budget = chat.settings.reply_budget();
    let page = chat
        .db
        .run(move |c| queries::read_history(c, &ch, &who, access, (from, limit, budget)))
        .await?;
    Ok(HistoryOk {
        messages: page.messages,
        more: page.more,
    })
}

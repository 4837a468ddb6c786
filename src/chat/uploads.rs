//! Uploads: how much a user may still upload (a rate per hour and a quota of bytes
//! kept), recording what was stored, and the rule that file messages point only into
//! the server's own upload space.

use serde_json::value::RawValue;

use super::Chat;
use crate::{
    auth::Identity,
    error::{AppError, AppResult},
    storage::queries,
};

/// Bytes the caller may upload now (the smaller of the size limit and what is left of
/// the quota); spends one of the caller's uploads per hour.
pub async fn allowance(chat: &Chat, who: &Identity) -> AppResult<usize> {
    if who.anonymous {
        return Err(AppError::forbidden("log in to upload"));
    }
    if !chat.limits.uploads.take(who.id()) {
        crate::metrics::get().rate_limited(crate::metrics::Limit::Uploads);
        return Err(AppError::rate_limited("too many uploads, try again later"));
    }
    let user = who.user.id.clone();
    let used = chat.db.run(move |c| queries::upload_usage(c, &user)).await?;
    let left = chat.settings.upload_quota_bytes.saturating_sub(used.max(0) as u64);
    if left == 0 {
        return Err(AppError::too_large("upload quota used up"));
    }
    Ok(chat.settings.max_upload_bytes.min(left.min(usize::MAX as u64) as usize))
}

/// Records a stored upload against the caller's quota.
pub async fn record(chat: &Chat, who: &Identity, name: String, size: usize) -> AppResult<()> {
    let user = who.user.id.clone();
    chat.db
        .run(move |c| queries::record_upload(c, &name, &user, size as i64))
        .await
}

/// Is `name` the name of an upload (`<32 lowercase hex>.<png|jpg|gif|webp|bin>`)?
pub fn is_upload_name(name: &str) -> bool {
    let Some((id, ext)) = name.split_once('.') else {
        return false;
    };
    id.len() == 32
        && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && matches!(ext, "png" | "jpg" | "gif" | "webp" | "bin")
}

/// Chat messages of type `image`, `file`, `audio` or `video` point at an upload of
/// this server (`/uploads/<name>`), never elsewhere: a message cannot make its readers
/// fetch (or be tracked by) another site.
pub fn check_media(data: &RawValue) -> AppResult<()> {
    #[derive(serde::Deserialize)]
    struct Media<'a> {
        #[serde(rename = "type", borrow)]
        kind: Option<&'a str>,
        #[serde(borrow)]
        url: Option<&'a str>,
    }
    let Ok(m) = serde_json::from_str::<Media>(data.get()) else {
        return Ok(());
    };
    if !matches!(m.kind, Some("image" | "file" | "audio" | "video")) {
        return Ok(());
    }
    match m.url.and_then(|u| u.strip_prefix("/uploads/")) {
        Some(name) if is_upload_name(name) => Ok(()),
        _ => Err(AppError::bad_request(
            "a file message's `url` must be an upload of this server (/uploads/...)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.into()).unwrap()
    }

    #[test]
    fn media_point_into_the_upload_space() {
        let ok = r#"{"type":"image","url":"/uploads/0123456789abcdef0123456789abcdef.png","name":"a.png"}"#;
        assert!(check_media(&raw(ok)).is_ok());
        for bad in [
            r#"{"type":"image","url":"https://evil.example/x.png"}"#,
            r#"{"type":"file","url":"/uploads/../etc/passwd"}"#,
            r#"{"type":"audio","url":"/uploads/0123456789abcdef0123456789abcdef.exe"}"#,
            r#"{"type":"video"}"#,
        ] {
            assert!(check_media(&raw(bad)).is_err(), "{bad}");
        }
        assert!(check_media(&raw(r#"{"type":"text","text":"https://x"}"#)).is_ok());
        assert!(check_media(&raw(r#"{"price":1}"#)).is_ok());
    }
}

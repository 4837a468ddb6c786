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
        && matches!(
            ext,
            "png" | "jpg" | "gif" | "webp" | "webm" | "ogg" | "mp4" | "mp3" | "wav" | "bin"
        )
}

/// Checks the media fields of a chat message: a file message (`image`, `file`,
/// `audio`, `video`) only points into the server's own upload space; a voice or video
/// message's `duration_ms` is within `max_ms` (the server's voice and video message
/// limits) and its `peaks` (a waveform summary) are at most 64 integers 0-255; a video
/// message's `poster` is an upload too. Call records (`type: call`) are written by the
/// server only.
pub fn check_media(data: &RawValue, limits: MediaLimits) -> AppResult<()> {
    #[derive(serde::Deserialize)]
    struct Media<'a> {
        #[serde(rename = "type", borrow)]
        kind: Option<&'a str>,
        #[serde(borrow)]
        url: Option<&'a str>,
        duration_ms: Option<serde_json::Value>,
        peaks: Option<serde_json::Value>,
        #[serde(borrow)]
        poster: Option<&'a str>,
    }
    let Ok(m) = serde_json::from_str::<Media>(data.get()) else {
        return Ok(());
    };
    if m.kind == Some("call") {
        return Err(AppError::bad_request("call records are written by the server"));
    }
    if !matches!(m.kind, Some("image" | "file" | "audio" | "video")) {
        return Ok(());
    }
    let upload = |u: Option<&str>| u.and_then(|u| u.strip_prefix("/uploads/")).is_some_and(is_upload_name);
    if !upload(m.url) {
        return Err(AppError::bad_request(
            "a file message's `url` must be an upload of this server (/uploads/...)",
        ));
    }
    let max_ms = match m.kind {
        Some("audio") => limits.voice_max_ms,
        Some("video") => limits.video_max_ms,
        _ => return Ok(()),
    };
    if let Some(d) = m.duration_ms {
        match d.as_u64() {
            Some(ms) if ms <= max_ms => {}
            _ => {
                return Err(AppError::bad_request(format!(
                    "`duration_ms` is a whole number of milliseconds up to {max_ms}"
                )))
            }
        }
    }
    if let Some(p) = m.peaks {
        let ok = p
            .as_array()
            .is_some_and(|a| a.len() <= 64 && a.iter().all(|v| v.as_u64().is_some_and(|n| n <= 255)));
        if !ok {
            return Err(AppError::bad_request("`peaks` is at most 64 integers 0-255"));
        }
    }
    if m.poster.is_some() && !upload(m.poster) {
        return Err(AppError::bad_request(
            "a video's `poster` must be an upload of this server",
        ));
    }
    Ok(())
}

/// The longest voice and video messages accepted (settings `voice_max_s`,
/// `video_message_max_s`).
#[derive(Debug, Clone, Copy)]
pub struct MediaLimits {
    pub voice_max_ms: u64,
    pub video_max_ms: u64,
}

impl MediaLimits {
    pub fn of(s: &crate::config::Settings) -> MediaLimits {
        MediaLimits {
            voice_max_ms: (s.voice_max_s * 1000.0) as u64,
            video_max_ms: (s.video_message_max_s * 1000.0) as u64,
        }
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
        let l = MediaLimits {
            voice_max_ms: 300_000,
            video_max_ms: 60_000,
        };
        let ok = r#"{"type":"image","url":"/uploads/0123456789abcdef0123456789abcdef.png","name":"a.png"}"#;
        assert!(check_media(&raw(ok), l).is_ok());
        let voice = r#"{"type":"audio","url":"/uploads/0123456789abcdef0123456789abcdef.webm","duration_ms":2100,"peaks":[0,12,255]}"#;
        assert!(check_media(&raw(voice), l).is_ok());
        for bad in [
            r#"{"type":"image","url":"https://evil.example/x.png"}"#,
            r#"{"type":"file","url":"/uploads/../etc/passwd"}"#,
            r#"{"type":"audio","url":"/uploads/0123456789abcdef0123456789abcdef.exe"}"#,
            r#"{"type":"video"}"#,
            r#"{"type":"audio","url":"/uploads/0123456789abcdef0123456789abcdef.webm","duration_ms":300001}"#,
            r#"{"type":"audio","url":"/uploads/0123456789abcdef0123456789abcdef.webm","duration_ms":-1}"#,
            r#"{"type":"video","url":"/uploads/0123456789abcdef0123456789abcdef.webm","duration_ms":60001}"#,
            r#"{"type":"audio","url":"/uploads/0123456789abcdef0123456789abcdef.webm","peaks":[256]}"#,
            r#"{"type":"video","url":"/uploads/0123456789abcdef0123456789abcdef.webm","poster":"https://x/p.png"}"#,
            r#"{"type":"call","call":"c","status":"answered"}"#,
        ] {
            assert!(check_media(&raw(bad), l).is_err(), "{bad}");
        }
        let many = format!(
            r#"{{"type":"audio","url":"/uploads/0123456789abcdef0123456789abcdef.webm","peaks":{:?}}}"#,
            [1u8; 65]
        );
        assert!(check_media(&raw(&many), l).is_err());
        assert!(check_media(&raw(r#"{"type":"text","text":"https://x"}"#), l).is_ok());
        assert!(check_media(&raw(r#"{"price":1}"#), l).is_ok());
    }
}

//! `POST /api/uploads` and `GET /uploads/{name}`: files for image and file messages.
//!
//! Uploads are size-limited while streaming, stored under `<data_dir>/uploads` with
//! random names, and served with `nosniff`. Only PNG, JPEG, GIF and WebP (recognized
//! by their magic bytes, never by the client's word) are served inline as images;
//! everything else is served as an `application/octet-stream` attachment, so an
//! uploaded HTML or SVG file can never run in the server's origin.

use std::io::Write;

use actix_multipart::Multipart;
use actix_web::{http::header, web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde_json::json;

use actix_files::NamedFile;
use actix_web::http::header::{ContentDisposition, DispositionType};

use super::Caller;
use crate::{
    chat::uploads,
    error::{AppError, AppResult},
    state::AppState,
};

pub fn api_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/uploads", web::post().to(upload));
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/uploads/{name}", web::get().to(serve));
}

/// Image types served inline, by magic bytes.
fn sniff_image(head: &[u8]) -> Option<(&'static str, &'static str)> {
    if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(("image/png", "png"))
    } else if head.starts_with(&[0xff, 0xd8, 0xff]) {
        Some(("image/jpeg", "jpg"))
    } else if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
        Some(("image/gif", "gif"))
    } else if head.len() >= 12 && &head[0..4] == b"RIFF" && &head[8..12] == b"WEBP" {
        Some(("image/webp", "webp"))
    } else {
        None
    }
}

/// Audio and video containers played inline (voice and video messages), by magic
/// bytes; WebM and Ogg carry either, so the declared type picks audio or video.
fn sniff_media(head: &[u8], declared: Option<&str>) -> Option<(&'static str, &'static str)> {
    let audio = declared.is_some_and(|m| m.starts_with("audio/"));
    if head.starts_with(&[0x1a, 0x45, 0xdf, 0xa3]) {
        Some((if audio { "audio/webm" } else { "video/webm" }, "webm"))
    } else if head.starts_with(b"OggS") {
        Some(("audio/ogg", "ogg"))
    } else if head.len() >= 12 && &head[4..8] == b"ftyp" {
        Some(("video/mp4", "mp4"))
    } else if head.starts_with(b"ID3") || (head.len() >= 2 && head[0] == 0xff && head[1] & 0xe0 == 0xe0) {
        Some(("audio/mpeg", "mp3"))
    } else if head.len() >= 12 && &head[0..4] == b"RIFF" && &head[8..12] == b"WAVE" {
        Some(("audio/wav", "wav"))
    } else {
        None
    }
}

/// The file's name as shown: its last path segment, without control or bidi
/// characters (an `evil\u{202E}gpj.exe` must not show as `evilexe.jpg`).
fn clean_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned = crate::protocol::text::clean_name(base, 200);
    if cleaned.is_empty() {
        "file".into()
    } else {
        cleaned
    }
}

async fn upload(state: web::Data<AppState>, Caller(who): Caller, mut form: Multipart) -> AppResult<HttpResponse> {
    // At most the size limit, and what is left of the user's quota.
    let max = uploads::allowance(&state.chat, &who).await?;
    let dir = state.chat.settings.upload_dir();
    while let Some(field) = form.next().await {
        let mut field = field.map_err(|e| AppError::bad_request(format!("bad multipart body: {e}")))?;
        if field.name() != Some("file") {
            // Drain and ignore other fields.
            while let Some(chunk) = field.next().await {
                chunk.map_err(|e| AppError::bad_request(format!("bad multipart body: {e}")))?;
            }
            continue;
        }
        let name = clean_name(
            field
                .content_disposition()
                .and_then(|d| d.get_filename())
                .unwrap_or("file"),
        );
        let declared = field.content_type().map(|m| m.essence_str().to_string());
        let id = hex::encode(rand::random::<[u8; 16]>());
        let (dir2, id2) = (dir.clone(), id.clone());
        let tmp = web::block(move || -> std::io::Result<_> {
            std::fs::create_dir_all(&dir2)?;
            let path = dir2.join(format!("{id2}.part"));
            Ok((std::fs::File::create(&path)?, path))
        })
        .await?
        .map_err(|e| AppError::unavailable(format!("cannot store upload: {e}")))?;
        let (mut file, tmp_path) = tmp;
        let mut size = 0usize;
        let mut head: Vec<u8> = Vec::with_capacity(16);
        while let Some(chunk) = field.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp_path);
                    return Err(AppError::bad_request(format!("upload interrupted: {e}")));
                }
            };
            size += chunk.len();
            if size > max {
                let _ = std::fs::remove_file(&tmp_path);
                return Err(AppError::too_large(format!(
                    "uploads are limited to {max} bytes (size limit, or what is left of the quota)"
                )));
            }
            if head.len() < 16 {
                head.extend_from_slice(&chunk[..chunk.len().min(16 - head.len())]);
            }
            // Chunks are small (a few KiB); a blocking write of one is cheap.
            if let Err(e) = file.write_all(&chunk) {
                let _ = std::fs::remove_file(&tmp_path);
                return Err(AppError::unavailable(format!("cannot store upload: {e}")));
            }
        }
        let (mime, ext) = match sniff_image(&head).or_else(|| sniff_media(&head, declared.as_deref())) {
            Some((m, e)) => (m.to_string(), e),
            None => (
                declared
                    .filter(|m| m.len() <= 100 && !m.starts_with("image/"))
                    .unwrap_or_else(|| "application/octet-stream".into()),
                "bin",
            ),
        };
        let final_name = format!("{id}.{ext}");
        let final_path = dir.join(&final_name);
        web::block(move || {
            file.sync_all()?;
            std::fs::rename(&tmp_path, &final_path)
        })
        .await?
        .map_err(|e| AppError::unavailable(format!("cannot store upload: {e}")))?;
        uploads::record(&state.chat, &who, final_name.clone(), size).await?;
        return Ok(HttpResponse::Created().json(json!({
            "url": format!("/uploads/{final_name}"), "name": name, "size": size, "mime": mime
        })));
    }
    Err(AppError::bad_request("multipart field `file` is missing"))
}

/// Serves an upload, streamed from disk (with ranges), under headers that keep it from
/// running in the server's origin.
async fn serve(state: web::Data<AppState>, req: HttpRequest) -> AppResult<HttpResponse> {
    let name = req.match_info().query("name").to_string();
    if !uploads::is_upload_name(&name) {
        return Err(AppError::not_found("no such upload"));
    }
    let path = state.chat.settings.upload_dir().join(&name);
    let file = NamedFile::open_async(path)
        .await
        .map_err(|_| AppError::not_found("no such upload"))?;
    let inline = !name.ends_with(".bin");
    let disposition = if inline {
        DispositionType::Inline
    } else {
        DispositionType::Attachment
    };
    let mut res = file
        .use_etag(true)
        .use_last_modified(false)
        .set_content_disposition(ContentDisposition {
            disposition,
            parameters: Vec::new(),
        })
        .into_response(&req);
    let h = res.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("private, max-age=31536000, immutable"),
    );
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffing_and_names() {
        assert_eq!(sniff_image(b"\x89PNG\r\n\x1a\n....").unwrap().1, "png");
        assert_eq!(sniff_image(b"<svg onload=alert(1)>"), None);
        assert_eq!(sniff_image(b"<html>"), None);
        let webm = [0x1a, 0x45, 0xdf, 0xa3, 0, 0, 0, 0];
        assert_eq!(
            sniff_media(&webm, Some("audio/webm;codecs=opus")),
            Some(("audio/webm", "webm"))
        );
        assert_eq!(sniff_media(&webm, Some("video/webm")), Some(("video/webm", "webm")));
        assert_eq!(sniff_media(b"OggS\0\x02", None).unwrap().1, "ogg");
        assert_eq!(sniff_media(b"\0\0\0\x20ftypisom", None).unwrap().1, "mp4");
        assert_eq!(sniff_media(b"<html><body>", Some("audio/webm")), None);
        assert_eq!(clean_name("../../etc/passwd"), "passwd");
        assert_eq!(clean_name("C:\\x\\a.png"), "a.png");
        assert_eq!(clean_name(""), "file");
    }
}

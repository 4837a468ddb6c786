//! Moderation and the admin console's data (`/api/admin/...`, role `admin`; mutes
//! also for a room's owner). Each route decodes its request and calls
//! [`crate::chat::moderation`]; refusals are `403 forbidden`.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::Caller;
use crate::{chat::moderation, error::AppResult, state::AppState};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/users/{user}/kick", web::post().to(kick))
        .route("/admin/users/{user}/ban", web::put().to(ban))
        .route("/admin/users/{user}/ban", web::delete().to(unban))
        .route("/admin/bans", web::get().to(bans))
        .route("/admin/audit", web::get().to(audit))
        .route("/admin/connections", web::get().to(connections))
        .route("/admin/config", web::get().to(config))
        .route("/rooms/{name}/members/{user}", web::delete().to(remove_member))
        .route("/rooms/{name}/archived", web::put().to(archive))
        .route("/rooms/{name}/archived", web::delete().to(reopen))
        .route("/rooms/{name}/mutes/{user}", web::put().to(mute))
        .route("/rooms/{name}/mutes/{user}", web::delete().to(unmute));
}

#[derive(Deserialize, Default)]
struct Reason {
    reason: Option<String>,
}

async fn kick(
    state: web::Data<AppState>,
    Caller(who): Caller,
    user: web::Path<String>,
    body: Option<web::Json<Reason>>,
) -> AppResult<HttpResponse> {
    let reason = body.map(|b| b.into_inner()).unwrap_or_default().reason;
    let closed = moderation::kick(&state.chat, &who, &user, reason).await?;
    Ok(HttpResponse::Ok().json(json!({ "closed": closed })))
}

async fn ban(
    state: web::Data<AppState>,
    Caller(who): Caller,
    user: web::Path<String>,
    body: Option<web::Json<Reason>>,
) -> AppResult<HttpResponse> {
    let reason = body.map(|b| b.into_inner()).unwrap_or_default().reason;
    moderation::ban(&state.chat, &who, &user, reason).await?;
    Ok(HttpResponse::Ok().json(json!({})))
}

async fn unban(state: web::Data<AppState>, Caller(who): Caller, user: web::Path<String>) -> AppResult<HttpResponse> {
    moderation::unban(&state.chat, &who, &user).await?;
    Ok(HttpResponse::Ok().json(json!({})))
}

async fn bans(state: web::Data<AppState>, Caller(who): Caller) -> AppResult<HttpResponse> {
    let bans = moderation::bans(&state.chat, &who).await?;
    Ok(HttpResponse::Ok().json(json!({ "bans": bans })))
}

#[derive(Deserialize)]
struct Page {
    before: Option<i64>,
    limit: Option<i64>,
}

async fn audit(state: web::Data<AppState>, Caller(who): Caller, q: web::Query<Page>) -> AppResult<HttpResponse> {
    let entries = moderation::audit_log(&state.chat, &who, q.before, q.limit.unwrap_or(100)).await?;
    let next = entries.last().map(|e| e.id).filter(|_| !entries.is_empty());
    Ok(HttpResponse::Ok().json(json!({ "entries": entries, "next": next })))
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<usize>,
}

async fn connections(state: web::Data<AppState>, Caller(who): Caller, q: web::Query<Limit>) -> AppResult<HttpResponse> {
    let (users, total) = moderation::connected(&state.chat, &who, q.limit.unwrap_or(200))?;
    Ok(HttpResponse::Ok().json(json!({ "users": users, "connections": total })))
}

#[derive(Deserialize)]
struct MuteReq {
    duration_s: u64,
    reason: Option<String>,
}

async fn mute(
    state: web::Data<AppState>,
    Caller(who): Caller,
    path: web::Path<(String, String)>,
    body: web::Json<MuteReq>,
) -> AppResult<HttpResponse> {
    let (room, user) = path.into_inner();
    let MuteReq { duration_s, reason } = body.into_inner();
    let channel = format!("room:{room}");
    let until = moderation::mute(&state.chat, &who, &channel, &user, duration_s, reason).await?;
    Ok(HttpResponse::Ok().json(json!({ "until": until })))
}

async fn unmute(
    state: web::Data<AppState>,
    Caller(who): Caller,
    path: web::Path<(String, String)>,
) -> AppResult<HttpResponse> {
    let (room, user) = path.into_inner();
    moderation::unmute(&state.chat, &who, &format!("room:{room}"), &user).await?;
    Ok(HttpResponse::Ok().json(json!({})))
}

/// The effective configuration, secrets hidden.
async fn config(state: web::Data<AppState>, Caller(who): Caller) -> AppResult<HttpResponse> {
    moderation::require_admin(&who)?;
    Ok(HttpResponse::Ok().json(json!({ "settings": state.chat.settings.redacted() })))
}

async fn remove_member(
    state: web::Data<AppState>,
    Caller(who): Caller,
    path: web::Path<(String, String)>,
) -> AppResult<HttpResponse> {
    let (room, user) = path.into_inner();
    moderation::remove_member(&state.chat, &who, &format!("room:{room}"), &user).await?;
    Ok(HttpResponse::Ok().json(json!({})))
}

async fn archive(state: web::Data<AppState>, Caller(who): Caller, room: web::Path<String>) -> AppResult<HttpResponse> {
    moderation::archive(&state.chat, &who, &format!("room:{room}"), true).await?;
    Ok(HttpResponse::Ok().json(json!({})))
}

async fn reopen(state: web::Data<AppState>, Caller(who): Caller, room: web::Path<String>) -> AppResult<HttpResponse> {
    moderation::archive(&state.chat, &who, &format!("room:{room}"), false).await?;
    Ok(HttpResponse::Ok().json(json!({})))
}

//! The JSON API of PROTOCOL.md §6.

use std::sync::Arc;

use actix_web::{
    cookie::{time::Duration as CookieDuration, Cookie, SameSite},
    web, HttpRequest, HttpResponse,
};
use serde::Deserialize;
use serde_json::{json, value::RawValue};

use super::Caller;
use crate::{
    auth::{hash_password, verify_password, Identity, Role, COOKIE},
    channels::{normalize_room_name, publish_access, read_access, Channel},
    error::{AppError, AppResult},
    session,
    state::AppState,
    storage::{queries, writer::Ack},
};

/// Most items in one `/api/publish/batch` request.
const MAX_BATCH: usize = 1000;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/register", web::post().to(register))
        .route("/login", web::post().to(login))
        .route("/logout", web::post().to(logout))
        .route("/me", web::get().to(me))
        .route("/rooms", web::get().to(list_rooms))
        .route("/rooms", web::post().to(create_room))
        .route("/rooms/{name}/members", web::post().to(add_member))
        .route("/users", web::get().to(search_users))
        .route("/channels/{channel}/history", web::get().to(history))
        .route("/channels/{channel}/presence", web::get().to(presence))
        .route("/publish", web::post().to(publish))
        .route("/publish/batch", web::post().to(publish_batch));
}

#[derive(Deserialize)]
struct Credentials {
    name: String,
    password: String,
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

fn role_of(s: &str) -> Role {
    match s {
        "admin" => Role::Admin,
        "publisher" => Role::Publisher,
        _ => Role::User,
    }
}

fn session_response(state: &AppState, user: crate::protocol::UserRef, role: Role) -> HttpResponse {
    let token = state.auth.issue(&user, role);
    let cookie = Cookie::build(COOKIE, token.clone())
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.settings.cookie_secure)
        .max_age(CookieDuration::seconds(state.settings.token_ttl_s as i64))
        .finish();
    HttpResponse::Ok()
        .cookie(cookie)
        .json(json!({ "token": token, "user": { "id": user.id, "name": user.name, "role": role.as_str() } }))
}

/// The client address used as a rate-limit key.
fn client_key(req: &HttpRequest) -> String {
    req.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default()
}

async fn register(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<Credentials>,
) -> AppResult<HttpResponse> {
    if !state.registrations.hit(client_key(&req)) {
        return Err(AppError::rate_limited(
            "too many registrations from this address, try later",
        ));
    }
    let Credentials { name, password } = body.into_inner();
    let name = name.trim().to_string();
    valid_name(&name)?;
    valid_password(&password)?;
    let row = state
        .db
        .run(move |c| {
            if queries::find_user_by_name(c, &name)?.is_some() {
                return Err(AppError::bad_request("that name is already taken"));
            }
            let hash = hash_password(&password)?;
            queries::create_user(c, &name, &hash)
        })
        .await?;
    Ok(session_response(&state, row.user_ref(), role_of(&row.role)))
}

async fn login(state: web::Data<AppState>, req: HttpRequest, body: web::Json<Credentials>) -> AppResult<HttpResponse> {
    let Credentials { name, password } = body.into_inner();
    if name.len() > 64 || password.len() > 256 {
        return Err(AppError::unauthorized("wrong name or password"));
    }
    let (by_addr, by_name) = (client_key(&req), format!("name:{}", name.trim().to_lowercase()));
    if !state.login_failures.check(&by_addr) || !state.login_failures.check(&by_name) {
        return Err(AppError::rate_limited("too many failed logins, try again in a minute"));
    }
    let result = state
        .db
        .run(move |c| {
            let row = queries::find_user_by_name(c, name.trim())?;
            match row {
                Some(r) if verify_password(&password, &r.password_hash) => Ok(r),
                Some(_) => Err(AppError::unauthorized("wrong name or password")),
                None => {
                    // Same work as a real check, so timing does not reveal names.
                    let _ = verify_password(&password, dummy_hash());
                    Err(AppError::unauthorized("wrong name or password"))
                }
            }
        })
        .await;
    if result
        .as_ref()
        .is_err_and(|e| e.code == crate::error::ErrorCode::Unauthorized)
    {
        state.login_failures.hit(by_addr);
        state.login_failures.hit(by_name);
    }
    let row = result?;
    Ok(session_response(&state, row.user_ref(), role_of(&row.role)))
}

/// A real hash of a random password, verified against for unknown names.
fn dummy_hash() -> &'static str {
    static H: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    H.get_or_init(|| hash_password(&hex::encode(rand::random::<[u8; 16]>())).unwrap_or_default())
}

async fn logout() -> HttpResponse {
    let mut c = Cookie::build(COOKIE, "")
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .finish();
    c.make_removal();
    HttpResponse::Ok().cookie(c).json(json!({}))
}

async fn me(Caller(who): Caller) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "user": { "id": who.user.id, "name": who.user.name, "role": who.role.as_str() } }))
}

async fn list_rooms(state: web::Data<AppState>, Caller(who): Caller) -> AppResult<HttpResponse> {
    let id = who.user.id.clone();
    let rooms = state.db.run(move |c| queries::list_rooms(c, &id)).await?;
    Ok(HttpResponse::Ok().json(json!({ "rooms": rooms })))
}

#[derive(Deserialize)]
struct NewRoom {
    name: String,
    #[serde(default)]
    private: bool,
    #[serde(default)]
    members: Vec<String>,
}

/// Finds users by id (registered users) for membership lists.
fn resolve_member(c: &mut crate::storage::Conn, user: &str) -> AppResult<crate::protocol::UserRef> {
    if !crate::channels::valid_user_id(user) {
        return Err(AppError::bad_request(format!(
            "bad user id `{}`",
            user.chars().take(64).collect::<String>()
        )));
    }
    let found = user
        .parse::<i64>()
        .ok()
        .map(|uid| {
            use crate::storage::{models::UserRow, schema::users};
            use diesel::prelude::*;
            users::table.find(uid).select(UserRow::as_select()).first(c).optional()
        })
        .transpose()?
        .flatten();
    Ok(match found {
        Some(row) => row.user_ref(),
        // Users of an outside identity provider exist only in their tokens.
        None => crate::protocol::UserRef::new(user, user),
    })
}

async fn create_room(
    state: web::Data<AppState>,
    Caller(who): Caller,
    body: web::Json<NewRoom>,
) -> AppResult<HttpResponse> {
    if who.anonymous {
        return Err(AppError::forbidden("log in to create rooms"));
    }
    let NewRoom { name, private, members } = body.into_inner();
    let name = normalize_room_name(&name)?;
    if members.len() > 1000 {
        return Err(AppError::bad_request("at most 1000 members at creation"));
    }
    let creator = who.user.clone();
    let room = state
        .db
        .run(move |c| {
            let members = members
                .iter()
                .map(|m| resolve_member(c, m))
                .collect::<AppResult<Vec<_>>>()?;
            queries::create_room(c, &name, private, &creator, &members)
        })
        .await?;
    Ok(HttpResponse::Created().json(json!({
        "room": { "name": room.name, "channel": format!("room:{}", room.name), "private": room.private,
                  "created_by": room.created_by, "created_at": room.created_at, "member": true }
    })))
}

#[derive(Deserialize)]
struct NewMember {
    user: String,
}

async fn add_member(
    state: web::Data<AppState>,
    Caller(who): Caller,
    path: web::Path<String>,
    body: web::Json<NewMember>,
) -> AppResult<HttpResponse> {
    let name = normalize_room_name(&path.into_inner())?;
    let user = body.into_inner().user;
    let added = state
        .db
        .run(move |c| {
            let channel = format!("room:{name}");
            if queries::get_room(c, &name)?.is_none() {
                return Err(AppError::not_found(format!("no room {channel}")));
            }
            if who.role != Role::Admin && !queries::is_member(c, &channel, who.id())? {
                return Err(AppError::forbidden(format!("not a member of {channel}")));
            }
            let member = resolve_member(c, &user)?;
            match queries::add_member(c, &channel, &member) {
                Err(e) if !crate::storage::is_unique_violation(&e) => return Err(e.into()),
                _ => {}
            }
            Ok(member)
        })
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "user": added })))
}

#[derive(Deserialize)]
struct UserQuery {
    #[serde(default)]
    q: String,
}

async fn search_users(
    state: web::Data<AppState>,
    Caller(_): Caller,
    q: web::Query<UserQuery>,
) -> AppResult<HttpResponse> {
    let q = q.into_inner().q;
    if q.len() > 64 {
        return Err(AppError::bad_request("query too long"));
    }
    let users = state.db.run(move |c| queries::search_users(c, q.trim(), 20)).await?;
    Ok(HttpResponse::Ok().json(json!({ "users": users })))
}

#[derive(Deserialize)]
struct HistoryQuery {
    before: Option<i64>,
    after: Option<i64>,
    limit: Option<i64>,
}

async fn history(
    state: web::Data<AppState>,
    Caller(who): Caller,
    path: web::Path<String>,
    q: web::Query<HistoryQuery>,
) -> AppResult<HttpResponse> {
    let ch = Channel::parse(&path.into_inner())?;
    let access = read_access(&who, &ch, state.settings.anonymous())?;
    let HistoryQuery { before, after, limit } = q.into_inner();
    if before.is_some() && after.is_some() {
        return Err(AppError::bad_request("give `before` or `after`, not both"));
    }
    if before.is_some_and(|b| b < 0) || after.is_some_and(|a| a < 0) || limit.is_some_and(|l| l < 0) {
        return Err(AppError::bad_request("negative seq or limit"));
    }
    let limit = limit.unwrap_or(50).min(200);
    let messages = state
        .db
        .run(move |c| queries::read_history(c, &ch, &who, access, (before, after, limit)))
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "messages": messages })))
}

async fn presence(state: web::Data<AppState>, Caller(who): Caller, path: web::Path<String>) -> AppResult<HttpResponse> {
    let ch = Channel::parse(&path.into_inner())?;
    let access = read_access(&who, &ch, state.settings.anonymous())?;
    let shard = state.hub.shard(&ch.full).clone();
    let members = session::presence(&state.db, &shard, ch, who, access).await?;
    Ok(HttpResponse::Ok().json(json!({ "members": members })))
}

#[derive(Deserialize)]
struct PublishItem {
    channel: String,
    data: Box<RawValue>,
    #[serde(default)]
    client_id: Option<String>,
}

/// Validates one publish and starts it; the receiver yields `{seq,ts}` or an error.
fn start_publish(
    state: &AppState,
    who: &Identity,
    item: PublishItem,
) -> AppResult<tokio::sync::oneshot::Receiver<AppResult<serde_json::Value>>> {
    let ch = Channel::parse(&item.channel)?;
    let access = publish_access(who, &ch)?;
    crate::protocol::request::check_data(&item.data, state.settings.max_message_bytes)?;
    if let Some(c) = &item.client_id {
        if c.is_empty() || c.len() > 64 {
            return Err(AppError::bad_request("`client_id` must be 1 to 64 bytes"));
        }
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let data: Arc<RawValue> = item.data.into();
    session::publish(
        state,
        ch,
        who.clone(),
        access,
        data,
        item.client_id.map(Into::into),
        Ack::Http(tx),
    );
    Ok(rx)
}

async fn wait(rx: tokio::sync::oneshot::Receiver<AppResult<serde_json::Value>>) -> AppResult<serde_json::Value> {
    rx.await.map_err(|_| AppError::unavailable("publish was dropped"))?
}

async fn publish(
    state: web::Data<AppState>,
    Caller(who): Caller,
    body: web::Json<PublishItem>,
) -> AppResult<HttpResponse> {
    let rx = start_publish(&state, &who, body.into_inner())?;
    Ok(HttpResponse::Ok().json(wait(rx).await?))
}

async fn publish_batch(
    state: web::Data<AppState>,
    Caller(who): Caller,
    body: web::Json<Vec<serde_json::Value>>,
) -> AppResult<HttpResponse> {
    let items = body.into_inner();
    if items.len() > MAX_BATCH {
        return Err(AppError::too_large(format!("at most {MAX_BATCH} items per batch")));
    }
    // Start every publish first (they share writer batches), then collect in order.
    let pending: Vec<AppResult<_>> = items
        .into_iter()
        .map(|v| {
            let item: PublishItem =
                serde_json::from_value(v).map_err(|e| AppError::bad_request(format!("bad item: {e}")))?;
            start_publish(&state, &who, item)
        })
        .collect();
    let mut out = Vec::with_capacity(pending.len());
    for p in pending {
        out.push(match p {
            Ok(rx) => match wait(rx).await {
                Ok(v) => v,
                Err(e) => json!({ "error": e }),
            },
            Err(e) => json!({ "error": e }),
        });
    }
    Ok(HttpResponse::Ok().json(out))
}

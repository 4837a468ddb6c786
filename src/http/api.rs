//! The JSON API of PROTOCOL.md §6: each route decodes its request, calls the use
//! case and encodes the result.

use actix_web::{
    cookie::{time::Duration as CookieDuration, Cookie, SameSite},
    web, HttpRequest, HttpResponse,
};
use serde::Deserialize;
use serde_json::json;

use super::Caller;
use crate::{
    auth::COOKIE,
    chat::{self, accounts::Account, rooms::NewRoom},
    conn::Ack,
    error::{AppError, AppResult},
    protocol::{request, PublishOk},
    state::AppState,
};

/// Most items in one `/api/publish/batch` request.
const MAX_BATCH: usize = 1000;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/register", web::post().to(register))
        .route("/login", web::post().to(login))
        .route("/logout", web::post().to(logout))
        .route("/password", web::post().to(change_password))
        .route("/me", web::get().to(me))
        .route("/ice", web::get().to(ice))
        .route("/rooms", web::get().to(list_rooms))
        .route("/rooms", web::post().to(create_room))
        .route("/rooms/{name}/members", web::post().to(add_member))
        .route("/users", web::get().to(search_users))
        .route("/channels/{channel}/history", web::get().to(history))
        .route("/channels/{channel}/presence", web::get().to(presence))
        .route("/blocks", web::get().to(list_blocks))
        .route("/blocks/{user}", web::put().to(block))
        .route("/blocks/{user}", web::delete().to(unblock))
        .route("/publish", web::post().to(publish))
        .route("/publish/batch", web::post().to(publish_batch));
}

#[derive(Deserialize)]
struct Credentials {
    name: String,
    password: String,
}

/// A token for the account, as the body and as the session cookie.
fn session_response(state: &AppState, a: Account) -> HttpResponse {
    let settings = &state.chat.settings;
    let token = state.chat.auth.issue(&a.user, a.role);
    let cookie = Cookie::build(COOKIE, token.clone())
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(settings.cookie_secure)
        .max_age(CookieDuration::seconds(settings.token_ttl_s as i64))
        .finish();
    HttpResponse::Ok()
        .cookie(cookie)
        .json(json!({ "token": token, "user": { "id": a.user.id, "name": a.user.name, "role": a.role.as_str() } }))
}

async fn register(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<Credentials>,
) -> AppResult<HttpResponse> {
    let Credentials { name, password } = body.into_inner();
    let account = chat::accounts::register(state.chat.clone(), &state.client_addr(&req), name, password).await?;
    Ok(session_response(&state, account))
}

async fn login(state: web::Data<AppState>, req: HttpRequest, body: web::Json<Credentials>) -> AppResult<HttpResponse> {
    let Credentials { name, password } = body.into_inner();
    let account = chat::accounts::login(state.chat.clone(), &state.client_addr(&req), name, password).await?;
    Ok(session_response(&state, account))
}

/// Logs out everywhere: the caller's tokens (all of them) stop working; the cookie is
/// cleared whether or not the request carried a valid credential.
async fn logout(state: web::Data<AppState>, req: HttpRequest) -> AppResult<HttpResponse> {
    if let Ok(who) = super::caller(&req) {
        chat::accounts::revoke_tokens(state.chat.clone(), &who).await?;
    }
    let mut c = Cookie::build(COOKIE, "")
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .finish();
    c.make_removal();
    Ok(HttpResponse::Ok().cookie(c).json(json!({})))
}

#[derive(Deserialize)]
struct PasswordChange {
    old: String,
    new: String,
}

/// Changes the caller's password; every older token stops working and the response
/// carries a fresh one (body and cookie).
async fn change_password(
    state: web::Data<AppState>,
    req: HttpRequest,
    Caller(who): Caller,
    body: web::Json<PasswordChange>,
) -> AppResult<HttpResponse> {
    let PasswordChange { old, new } = body.into_inner();
    let client = state.client_addr(&req);
    let account = chat::accounts::change_password(state.chat.clone(), &client, &who, old, new).await?;
    Ok(session_response(&state, account))
}

async fn me(Caller(who): Caller) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "user": { "id": who.user.id, "name": who.user.name, "role": who.role.as_str() } }))
}

/// ICE servers for calls (setting `ice_servers`), for `RTCPeerConnection`.
async fn ice(state: web::Data<AppState>, Caller(_who): Caller) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "ice_servers": state.chat.settings.ice_servers }))
}

async fn list_rooms(state: web::Data<AppState>, Caller(who): Caller) -> AppResult<HttpResponse> {
    let rooms = chat::rooms::list(state.chat.clone(), who).await?;
    Ok(HttpResponse::Ok().json(json!({ "rooms": rooms })))
}

#[derive(Deserialize)]
struct NewRoomBody {
    name: String,
    #[serde(default)]
    private: bool,
    #[serde(default)]
    members: Vec<String>,
}

async fn create_room(
    state: web::Data<AppState>,
    Caller(who): Caller,
    body: web::Json<NewRoomBody>,
) -> AppResult<HttpResponse> {
    let NewRoomBody { name, private, members } = body.into_inner();
    let created = chat::rooms::create(state.chat.clone(), who, NewRoom { name, private, members }).await?;
    Ok(HttpResponse::Created().json(created))
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
    let added = chat::rooms::add_member(state.chat.clone(), who, &path.into_inner(), body.into_inner().user).await?;
    Ok(HttpResponse::Ok().json(added))
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
    let users = chat::rooms::search_users(state.chat.clone(), q.into_inner().q).await?;
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
    let HistoryQuery { before, after, limit } = q.into_inner();
    let req = request::History {
        channel: path.into_inner(),
        before,
        after,
        limit,
    };
    Ok(HttpResponse::Ok().json(chat::history::history(state.chat.clone(), who, req).await?))
}

#[derive(Deserialize)]
struct PresenceQuery {
    after: Option<String>,
    limit: Option<i64>,
}

async fn presence(
    state: web::Data<AppState>,
    Caller(who): Caller,
    path: web::Path<String>,
    q: web::Query<PresenceQuery>,
) -> AppResult<HttpResponse> {
    let PresenceQuery { after, limit } = q.into_inner();
    let req = request::Presence {
        channel: path.into_inner(),
        after,
        limit,
    };
    Ok(HttpResponse::Ok().json(chat::presence::presence(state.chat.clone(), who, req).await?))
}

async fn publish(
    state: web::Data<AppState>,
    Caller(who): Caller,
    body: web::Json<request::Publish>,
) -> AppResult<HttpResponse> {
    let (ack, pending) = Ack::<PublishOk>::wait();
    chat::publish::publish(&state.chat, &who, body.into_inner(), ack);
    Ok(HttpResponse::Ok().json(pending.wait().await?))
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
    let pending: Vec<_> = items
        .into_iter()
        .map(|v| {
            let (ack, pending) = Ack::<PublishOk>::wait();
            match serde_json::from_value::<request::Publish>(v) {
                Ok(item) => chat::publish::publish(&state.chat, &who, item, ack),
                Err(e) => ack.err(AppError::bad_request(format!("bad item: {e}"))),
            }
            pending
        })
        .collect();
    let mut out = Vec::with_capacity(pending.len());
    for p in pending {
        out.push(match p.wait().await {
            Ok(v) => json!(v),
            Err(e) => json!({ "error": e }),
        });
    }
    Ok(HttpResponse::Ok().json(out))
}

async fn list_blocks(state: web::Data<AppState>, Caller(who): Caller) -> AppResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(chat::blocks::list(state.chat.clone(), who).await?))
}

async fn block(state: web::Data<AppState>, Caller(who): Caller, path: web::Path<String>) -> AppResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(chat::blocks::block(state.chat.clone(), who, &path.into_inner()).await?))
}

async fn unblock(state: web::Data<AppState>, Caller(who): Caller, path: web::Path<String>) -> AppResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(chat::blocks::unblock(state.chat.clone(), who, &path.into_inner()).await?))
}

//! `GET /ws`: origin and credential checks and the 101 answer. The socket itself is
//! handed to the session by the upgrade service ([`super::upgrade`]), which runs this
//! handler and finds a [`Handover`] in the 101 response.

use std::sync::Arc;

use actix_http::ws::{hash_key, verify_handshake};
use actix_web::{
    http::{header, StatusCode},
    web, HttpMessage, HttpRequest, HttpResponse,
};

use crate::{
    auth::{credential, Identity},
    conn::outbox::Outbox,
    error::AppError,
    session::Session,
    state::AppState,
};

/// Raw socket of a connection, captured at accept time (see `startup`).
#[derive(Clone, Copy)]
pub struct ConnFd(pub i32);

/// Set by the upgrade service on the requests it runs: only those can take the socket
/// over (a handshake that reached the ordinary HTTP path is refused).
#[derive(Clone, Copy)]
pub struct ViaUpgrade;

/// What the upgrade service needs to run the connection once the 101 is written.
pub struct Handover {
    pub session: Session,
    pub outbox: Arc<Outbox>,
    /// Largest frame or message accepted from the client.
    pub max_frame: usize,
}

/// Is the request's `Origin` (when present) allowed?
fn origin_allowed(req: &HttpRequest, allowed: &[String]) -> bool {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else { return false };
    let origin = origin.trim_end_matches('/');
    if allowed.iter().any(|a| a == "*" || a.eq_ignore_ascii_case(origin)) {
        return true;
    }
    // The server's own origin: same host (and port) as the request.
    let host = req.connection_info().host().to_string();
    origin
        .split_once("://")
        .is_some_and(|(scheme, rest)| matches!(scheme, "http" | "https") && rest.eq_ignore_ascii_case(&host))
}

pub async fn upgrade(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let s = &state.chat.settings;
    if !origin_allowed(&req, &s.allowed_origins) {
        return Err(AppError::forbidden("origin not allowed"));
    }
    let identity = match credential(&req, true) {
        Some((token, _)) => Some(state.chat.auth.verify(&token)?),
        None if s.anonymous() => Some(Identity::anonymous()),
        // No credential yet: the first frame must be `auth` (within the auth timeout).
        None => None,
    };
    verify_handshake(req.head()).map_err(|e| AppError::bad_request(format!("not a WebSocket handshake: {e}")))?;
    let key = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or_else(|| AppError::bad_request("missing Sec-WebSocket-Key"))?;
    let accept = hash_key(key.as_bytes());
    let accept = std::str::from_utf8(&accept).unwrap_or_default().to_string();
    if req.extensions().get::<ViaUpgrade>().is_none() {
        return Err(AppError::bad_request(
            "not a WebSocket handshake: no Upgrade: websocket",
        ));
    }

    let fd = req.conn_data::<ConnFd>().map(|f| f.0);
    let outbox = Outbox::new(s.outbox_max_frames, s.outbox_max_bytes, fd);
    let session = Session::new(state.clone(), outbox.clone(), identity);
    let mut res = HttpResponse::build(StatusCode::SWITCHING_PROTOCOLS)
        .upgrade("websocket")
        .insert_header((header::SEC_WEBSOCKET_ACCEPT, accept))
        .finish();
    res.extensions_mut().insert(Handover {
        session,
        outbox,
        max_frame: s.max_frame_bytes(),
    });
    Ok(res)
}

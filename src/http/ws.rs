//! `GET /ws`: origin and credential checks and the 101 answer. The socket itself is
//! handed to the session by the upgrade service ([`super::upgrade`]), which runs this
//! handler and finds a [`Handover`] in the 101 response.

use std::sync::Arc;

use actix_http::ws::{hash_key, verify_handshake, HandshakeError};
use actix_web::{
    http::{
        header::{self, HeaderValue},
        StatusCode,
    },
    web, HttpMessage, HttpRequest, HttpResponse, ResponseError,
};

use crate::{
    auth::{credential, Identity},
    conn::outbox::Outbox,
    error::AppError,
    metrics::{self, Limit},
    protocol::SUBPROTOCOL,
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

/// A request that is not a WebSocket handshake the server can accept: 400, or 426 with
/// the version it speaks (RFC 6455 §4.2.2).
fn refuse_handshake(e: HandshakeError) -> HttpResponse {
    let err = AppError::bad_request(format!("not a WebSocket handshake: {e}"));
    let mut res = err.error_response();
    if matches!(e, HandshakeError::UnsupportedVersion) {
        *res.status_mut() = StatusCode::UPGRADE_REQUIRED;
        res.headers_mut()
            .insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
    }
    res
}

/// Did the client offer [`SUBPROTOCOL`]? Offers may be comma-separated and spread over
/// several `Sec-WebSocket-Protocol` headers.
fn offers_subprotocol(req: &HttpRequest) -> bool {
    req.headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == SUBPROTOCOL)
}

pub async fn upgrade(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    if let Err(e) = verify_handshake(req.head()) {
        return Ok(refuse_handshake(e));
    }
    if req.extensions().get::<ViaUpgrade>().is_none() {
        return Err(AppError::bad_request(
            "not a WebSocket handshake: no Upgrade: websocket",
        ));
    }
    let s = &state.chat.settings;
    if !origin_allowed(&req, &s.allowed_origins) {
        return Err(AppError::forbidden("origin not allowed"));
    }
    let client = state.client_addr(&req);
    if !state.handshakes.take(&client) {
        metrics::get().rate_limited(Limit::Handshakes);
        return Err(AppError::rate_limited(
            "too many connection attempts from this address, try later",
        ));
    }
    let identity = match credential(&req, true) {
        Some((token, _)) => {
            let (identity, info) = state.chat.auth.verify_full(&token)?;
            Some((identity, Some(info)))
        }
        None if s.anonymous() => Some((Identity::anonymous(), None)),
        // No credential yet: the first frame must be `auth` (within the auth timeout).
        None => None,
    };
    let key = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or_else(|| AppError::bad_request("missing Sec-WebSocket-Key"))?;
    let accept = hash_key(key.as_bytes());
    let accept = std::str::from_utf8(&accept).unwrap_or_default().to_string();

    if let Some((who, _)) = &identity {
        let max = s.max_conns_per_user as usize;
        if !who.anonymous && max > 0 && state.chat.hub.registry.connections(&who.user.id).len() >= max {
            metrics::get().rate_limited(Limit::Connections);
            return Err(AppError::rate_limited("too many connections for this user"));
        }
    }
    let Some(slot) = state.addr_conns.acquire(&client) else {
        metrics::get().rate_limited(Limit::Connections);
        return Err(AppError::rate_limited("too many connections from this address"));
    };
    let fd = req.conn_data::<ConnFd>().map(|f| f.0);
    let outbox = Outbox::new(s.outbox_max_frames, s.outbox_max_bytes, fd);
    let session = Session::new(state.clone(), outbox.clone(), identity, Some(slot));
    let mut res = HttpResponse::build(StatusCode::SWITCHING_PROTOCOLS);
    res.upgrade("websocket")
        .insert_header((header::SEC_WEBSOCKET_ACCEPT, accept));
    if offers_subprotocol(&req) {
        res.insert_header((header::SEC_WEBSOCKET_PROTOCOL, SUBPROTOCOL));
    }
    let mut res = res.finish();
    res.extensions_mut().insert(Handover {
        session,
        outbox,
        max_frame: s.max_frame_bytes(),
    });
    Ok(res)
}

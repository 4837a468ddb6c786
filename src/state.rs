//! Shared application state handed to every route and session.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use crate::{
    chat::Chat,
    limit::{ConnCounts, KeyedLimiter},
    net::{client_addr, Cidr},
};

/// Everything a request or a session needs; cheap to clone (all `Arc`s inside).
#[derive(Clone)]
pub struct AppState {
    /// The use cases (and through them settings, storage, the hub, feeds, auth).
    pub chat: Chat,
    /// The last connection id given out ([`AppState::conn_id`]).
    pub next_conn_id: Arc<AtomicU64>,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub proxies: Arc<[Cidr]>,
    /// WebSocket handshakes per client address.
    pub handshakes: Arc<KeyedLimiter>,
    /// Open WebSocket connections per client address.
    pub addr_conns: Arc<ConnCounts>,
}

impl AppState {
    /// The client's address (rate-limit key): the peer's, or behind a trusted proxy
    /// the one it forwarded.
    pub fn client_addr(&self, req: &actix_web::HttpRequest) -> String {
        let Some(peer) = req.peer_addr().map(|a| a.ip()) else {
            return String::new();
        };
        let xff = req.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok());
        client_addr(peer, xff, &self.proxies).to_string()
    }

    /// A new connection id, unique in this process.
    pub fn conn_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed) + 1
    }
}

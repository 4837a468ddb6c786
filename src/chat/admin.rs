//! The admin console's live figures (`admin_stats` over the WebSocket): connections,
//! users, channels, messages fanned out (the console turns them into a rate), queue
//! overflows, and the busiest channels.

use std::sync::Arc;

use serde::Serialize;

use super::Chat;
use crate::{
    auth::Identity,
    error::{AppError, AppResult},
    hub::{Busiest, Stats},
    protocol::now_ms,
};

/// Channels listed as the busiest.
const BUSIEST: usize = 10;

#[derive(Debug, Serialize)]
pub struct Busy {
    pub channel: Arc<str>,
    pub members: usize,
    pub seq: i64,
}

#[derive(Debug, Serialize)]
pub struct AdminStats {
    pub ts: i64,
    pub connections: usize,
    pub users: usize,
    pub channels: usize,
    pub subscriptions: usize,
    /// Messages fanned out since the start (a counter: the rate is its slope).
    pub messages_out: u64,
    /// Frames queued to connections since the start.
    pub deliveries: u64,
    /// Connections closed because their queue overflowed (4008), since the start.
    pub overflows: u64,
    /// Channels with the most members on this node.
    pub busiest: Vec<Busy>,
}

/// This node's figures, for admins.
pub async fn stats(chat: Chat, who: Identity) -> AppResult<AdminStats> {
    super::moderation::require_admin(&who)?;
    let registry = &chat.hub.registry;
    let mut s = AdminStats {
        ts: now_ms(),
        connections: registry.count(),
        users: registry.users(),
        channels: 0,
        subscriptions: 0,
        messages_out: 0,
        deliveries: 0,
        overflows: crate::metrics::get().outbox_overflows.get(),
        busiest: Vec::new(),
    };
    let mut busiest = Vec::new();
    for shard in chat.hub.shards() {
        let (st, top) = futures_util::future::join(shard.send(Stats), shard.send(Busiest(BUSIEST))).await;
        let st = st.map_err(|_| AppError::unavailable("hub unavailable"))?;
        s.channels += st.channels;
        s.subscriptions += st.subscriptions;
        s.messages_out += st.messages_out;
        s.deliveries += st.frames_out;
        busiest.extend(top.map_err(|_| AppError::unavailable("hub unavailable"))?);
    }
    busiest.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    busiest.truncate(BUSIEST);
    s.busiest = busiest
        .into_iter()
        .map(|(channel, members, seq)| Busy { channel, members, seq })
        .collect();
    Ok(s)
}

//! Liveness, readiness and Prometheus metrics.

use std::sync::atomic::Ordering;

use actix_web::{web, HttpResponse};

use crate::{conn::outbox::SLOW_CONSUMERS, hub::Stats, state::AppState};

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    match state.chat.db.ping().await {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({ "status": "ready" })),
        Err(e) => HttpResponse::ServiceUnavailable().json(serde_json::json!({ "error": e })),
    }
}

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let m = &state.metrics;
    let mut out = String::with_capacity(2048);
    let mut line = |name: &str, kind: &str, help: &str, v: u64| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"));
    };
    line(
        "chat_connections",
        "gauge",
        "Open WebSocket connections (authenticated).",
        state.chat.hub.registry.count() as u64,
    );
    line(
        "chat_connections_total",
        "counter",
        "WebSocket connections accepted.",
        m.connections_total.load(Ordering::Relaxed),
    );
    line(
        "chat_frames_in_total",
        "counter",
        "Frames received from clients.",
        m.frames_in.load(Ordering::Relaxed),
    );
    line(
        "chat_publishes_total",
        "counter",
        "Publish requests over WebSocket.",
        m.publishes.load(Ordering::Relaxed),
    );
    line(
        "chat_rate_limited_total",
        "counter",
        "Requests refused by rate limits.",
        m.rate_limited.load(Ordering::Relaxed),
    );
    line(
        "chat_bad_requests_total",
        "counter",
        "Malformed client frames.",
        m.bad_requests.load(Ordering::Relaxed),
    );
    line(
        "chat_slow_consumers_total",
        "counter",
        "Connections closed with 4008.",
        SLOW_CONSUMERS.load(Ordering::Relaxed),
    );
    let mut channels = 0;
    let mut subs = 0;
    let mut msgs = 0;
    let mut frames = 0;
    for shard in state.chat.hub.shards() {
        if let Ok(s) = shard.send(Stats).await {
            channels += s.channels;
            subs += s.subscriptions;
            msgs += s.messages_out;
            frames += s.frames_out;
        }
    }
    line(
        "chat_channels",
        "gauge",
        "Channels with state in the hub.",
        channels as u64,
    );
    line(
        "chat_subscriptions",
        "gauge",
        "Channel memberships of connections.",
        subs as u64,
    );
    line("chat_messages_total", "counter", "Messages fanned out.", msgs);
    line(
        "chat_deliveries_total",
        "counter",
        "Frames pushed to connection queues.",
        frames,
    );
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(out)
}

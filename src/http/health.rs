//! Liveness, readiness and Prometheus metrics.

use actix_web::{web, HttpResponse};

use crate::{hub::Stats, metrics, state::AppState};

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    match state.chat.db.ping().await {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({ "status": "ready" })),
        Err(e) => HttpResponse::ServiceUnavailable().json(serde_json::json!({ "error": e })),
    }
}

/// `/metrics` on the main listener: served there unless `metrics_bind` names an
/// address of its own (then 404 here).
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    if state.chat.settings.metrics_bind.is_some() {
        return HttpResponse::NotFound().finish();
    }
    exposition(&state).await
}

/// `/metrics` on the `metrics_bind` listener.
pub async fn metrics_private(state: web::Data<AppState>) -> HttpResponse {
    exposition(&state).await
}

/// Sets the gauges of what the hub owns, then encodes every family.
async fn exposition(state: &AppState) -> HttpResponse {
    let m = metrics::get();
    let (mut channels, mut subscriptions) = (0, 0);
    for shard in state.chat.hub.shards() {
        if let Ok(s) = shard.send(Stats).await {
            channels += s.channels;
            subscriptions += s.subscriptions;
        }
    }
    m.connections.set(state.chat.hub.registry.count() as i64);
    m.channels.set(channels as i64);
    m.subscriptions.set(subscriptions as i64);
    HttpResponse::Ok().content_type(metrics::CONTENT_TYPE).body(m.encode())
}

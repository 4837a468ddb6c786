//! Feed routes: the list of feed channels, "who is near", and stored tracks.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::Caller;
use crate::{chat::locations, error::AppResult, state::AppState};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/feeds", web::get().to(list))
        .route("/locations/nearby", web::get().to(nearby))
        .route("/locations/{entity}/track", web::get().to(track));
}

/// `GET /api/feeds`: feed channels that carried a value (public, like the feeds).
async fn list(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "channels": locations::feed_channels(&state.chat) }))
}

#[derive(Deserialize)]
struct NearbyQuery {
    lat: f64,
    lon: f64,
    radius_m: f64,
    limit: Option<usize>,
}

async fn nearby(state: web::Data<AppState>, Caller(_): Caller, q: web::Query<NearbyQuery>) -> AppResult<HttpResponse> {
    let NearbyQuery {
        lat,
        lon,
        radius_m,
        limit,
    } = q.into_inner();
    let entities = locations::nearby(&state.chat, lat, lon, radius_m, limit)?;
    Ok(HttpResponse::Ok().json(json!({ "entities": entities })))
}

#[derive(Deserialize)]
struct TrackQuery {
    since: Option<i64>,
    until: Option<i64>,
    limit: Option<i64>,
}

async fn track(
    state: web::Data<AppState>,
    Caller(_): Caller,
    path: web::Path<String>,
    q: web::Query<TrackQuery>,
) -> AppResult<HttpResponse> {
    let TrackQuery { since, until, limit } = q.into_inner();
    let points = locations::track(state.chat.clone(), path.into_inner(), since, until, limit).await?;
    Ok(HttpResponse::Ok().json(json!({ "points": points })))
}

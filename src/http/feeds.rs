//! Feed routes: the list of feed channels, "who is near", and stored tracks.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::Caller;
use crate::{
    channels::valid_user_id,
    error::{AppError, AppResult},
    feeds::geo::valid_lat_lon,
    protocol::now_ms,
    state::AppState,
    storage::queries,
};

/// Half the earth's circumference: a radius that covers the whole globe.
const MAX_RADIUS_M: f64 = 20_037_509.0;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/feeds", web::get().to(list))
        .route("/locations/nearby", web::get().to(nearby))
        .route("/locations/{entity}/track", web::get().to(track));
}

/// `GET /api/feeds`: feed channels that carried a value (public, like the feeds).
async fn list(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "channels": state.feeds.channels() }))
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
    if !valid_lat_lon(lat, lon) {
        return Err(AppError::bad_request(
            "`lat` must be within [-90, 90] and `lon` within [-180, 180]",
        ));
    }
    if !radius_m.is_finite() || radius_m < 0.0 {
        return Err(AppError::bad_request("`radius_m` must be a non-negative number"));
    }
    let limit = limit.unwrap_or(500).clamp(1, 10_000);
    let found = state.feeds.nearby(lat, lon, radius_m.min(MAX_RADIUS_M), limit);
    let entities: Vec<_> = found
        .into_iter()
        .map(|(entity, p, d)| {
            json!({ "channel": format!("loc:{entity}"), "lat": p.lat, "lon": p.lon, "ts": p.ts,
                    "distance_m": (d * 10.0).round() / 10.0 })
        })
        .collect();
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
    let entity = path.into_inner();
    if !valid_user_id(&entity) {
        return Err(AppError::bad_request("bad entity id"));
    }
    let TrackQuery { since, until, limit } = q.into_inner();
    let since = since.unwrap_or(0);
    let until = until.unwrap_or_else(|| now_ms() + 60_000);
    if since > until {
        return Err(AppError::bad_request("`since` is after `until`"));
    }
    let limit = limit.unwrap_or(1000).clamp(1, 10_000);
    let points = state
        .db
        .run(move |c| queries::track(c, &entity, since, until, limit))
        .await?;
    let points: Vec<_> = points
        .into_iter()
        .map(|(lat, lon, ts)| json!({ "lat": lat, "lon": lon, "ts": ts }))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "points": points })))
}

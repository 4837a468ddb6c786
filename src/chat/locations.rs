//! Location queries: which entities are near a point (the in-memory geo index), an
//! entity's stored track, and the list of feed channels.

use std::sync::Arc;

use serde::Serialize;

use super::Chat;
use crate::{
    channels::{valid_user_id, Namespace},
    error::{AppError, AppResult},
    feeds::geo::valid_lat_lon,
    protocol::now_ms,
    storage::queries,
};

/// Half the earth's circumference: a radius that covers the whole globe.
const MAX_RADIUS_M: f64 = 20_037_509.0;

/// Most results of one query.
const MAX_LIMIT: usize = 10_000;

/// An entity near the asked point.
#[derive(Debug, Serialize)]
pub struct Near {
    pub channel: String,
    pub lat: f64,
    pub lon: f64,
    pub ts: i64,
    /// Metres from the asked point, to 0.1 m.
    pub distance_m: f64,
}

/// Entities within `radius_m` of (`lat`, `lon`), nearest first (default 500 of them).
pub fn nearby(chat: &Chat, lat: f64, lon: f64, radius_m: f64, limit: Option<usize>) -> AppResult<Vec<Near>> {
    if !valid_lat_lon(lat, lon) {
        return Err(AppError::bad_request(
            "`lat` must be within [-90, 90] and `lon` within [-180, 180]",
        ));
    }
    if !radius_m.is_finite() || radius_m < 0.0 {
        return Err(AppError::bad_request("`radius_m` must be a non-negative number"));
    }
    let limit = limit.unwrap_or(500).clamp(1, MAX_LIMIT);
    Ok(chat
        .feeds
        .nearby(lat, lon, radius_m.min(MAX_RADIUS_M), limit)
        .into_iter()
        .map(|(entity, p, d)| Near {
            channel: Namespace::Loc.channel(&entity),
            lat: p.lat,
            lon: p.lon,
            ts: p.ts,
            distance_m: (d * 10.0).round() / 10.0,
        })
        .collect())
}

/// A stored point of a track.
#[derive(Debug, Serialize)]
pub struct Point {
    pub lat: f64,
    pub lon: f64,
    pub ts: i64,
}

/// The sampled track of `entity` between `since` and `until` (ms), ascending.
pub async fn track(
    chat: Chat,
    entity: String,
    since: Option<i64>,
    until: Option<i64>,
    limit: Option<i64>,
) -> AppResult<Vec<Point>> {
    if !valid_user_id(&entity) {
        return Err(AppError::bad_request("bad entity id"));
    }
    let since = since.unwrap_or(0);
    let until = until.unwrap_or_else(|| now_ms() + 60_000);
    if since > until {
        return Err(AppError::bad_request("`since` is after `until`"));
    }
    let limit = limit.unwrap_or(1000).clamp(1, MAX_LIMIT as i64);
    let points = chat
        .db
        .run(move |c| queries::track(c, &entity, since, until, limit))
        .await?;
    Ok(points
        .into_iter()
        .map(|(lat, lon, ts)| Point { lat, lon, ts })
        .collect())
}

/// Feed channels that carried a value recently, sorted.
pub fn feed_channels(chat: &Chat) -> Vec<Arc<str>> {
    chat.feeds.channels()
}

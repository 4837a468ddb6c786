//! Live feeds: location validation, the geo index of last-known positions, track
//! sampling, the list of known feed channels, and the demo publishers.
//!
//! * [`geo`] – in-memory spatial index answering "who is near this point".
//! * [`track`] – decides which location updates are stored in the track.
//! * [`demo`] – deterministic simulators (quotes, a football match, a fleet).
//! * [`driver`] – ticks the simulators and publishes through the normal path.

pub mod demo;
pub mod driver;
pub mod geo;
pub mod track;

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex, OnceLock, RwLock},
};

use serde_json::value::RawValue;

use self::{geo::GeoIndex, track::TrackSampler};
use crate::{
    channels::{Channel, Namespace},
    error::AppError,
    protocol::Message,
    storage::writer::{WriteOp, WriterHandle},
};

/// Feed state shared by the hub shards and the HTTP routes.
pub struct Feeds {
    /// Set once the writer runs (the writer itself needs the hub, so it comes later).
    writer: OnceLock<WriterHandle>,
    /// Last-known position of every `loc:` entity.
    geo: RwLock<GeoIndex>,
    /// Which location updates go into the stored track.
    sampler: Mutex<TrackSampler>,
    /// Feed channels that have carried a value (for `GET /api/feeds`).
    known: RwLock<BTreeSet<Arc<str>>>,
}

/// Lat/lon of a validated location value.
fn lat_lon(data: &RawValue) -> Option<(f64, f64)> {
    #[derive(serde::Deserialize)]
    struct LatLon {
        lat: f64,
        lon: f64,
    }
    serde_json::from_str::<LatLon>(data.get()).ok().map(|p| (p.lat, p.lon))
}

impl Feeds {
    pub fn new(track_min_interval_s: f64, track_min_distance_m: f64) -> Arc<Feeds> {
        Arc::new(Feeds {
            writer: OnceLock::new(),
            geo: RwLock::new(GeoIndex::new()),
            sampler: Mutex::new(TrackSampler::new(
                (track_min_interval_s * 1000.0).round() as i64,
                track_min_distance_m,
            )),
            known: RwLock::new(BTreeSet::new()),
        })
    }

    pub fn set_writer(&self, w: WriterHandle) {
        let _ = self.writer.set(w);
    }

    /// Remembers a feed channel that carried a value.
    pub fn seen(&self, channel: &Arc<str>) {
        if self.known.read().is_ok_and(|k| k.contains(channel)) {
            return;
        }
        if let Ok(mut k) = self.known.write() {
            k.insert(channel.clone());
        }
    }

    /// Feed channels known to the server, sorted.
    pub fn channels(&self) -> Vec<Arc<str>> {
        self.known
            .read()
            .map(|k| k.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Remembers the channel and indexes a location value; returns the entity and its
    /// position for the caller's sampling.
    fn index<'m>(&self, m: &'m Message) -> Option<(&'m str, f64, f64)> {
        self.seen(&m.channel);
        let entity = m.channel.strip_prefix("loc:")?;
        let (lat, lon) = lat_lon(&m.data)?;
        if let Ok(mut g) = self.geo.write() {
            g.upsert(entity, lat, lon, m.ts);
        }
        Some((entity, lat, lon))
    }

    /// Offers a point to the track sampler: true when it is to be stored.
    fn sample(&self, entity: &str, lat: f64, lon: f64, ts: i64) -> bool {
        self.sampler.lock().is_ok_and(|mut s| s.offer(entity, lat, lon, ts))
    }

    /// Loads a stored last value at start (no write back).
    pub fn restore(&self, m: &Message) {
        if let Some((entity, lat, lon)) = self.index(m) {
            self.sample(entity, lat, lon, m.ts);
        }
    }

    /// A value that another node published (and persisted): index it only.
    pub fn observe(&self, m: &Message) {
        self.index(m);
    }

    /// A new value of a durable last-value channel (`loc:`): index it, sample the
    /// track, persist it.
    pub fn stored_last_value(&self, m: &Message) {
        let track = self
            .index(m)
            .and_then(|(entity, lat, lon)| self.sample(entity, lat, lon, m.ts).then_some((lat, lon)));
        if let Some(w) = self.writer.get() {
            w.submit_or_fail(WriteOp::LastValue { msg: m.clone(), track });
        }
    }

    /// Entities within `radius_m` of a point, nearest first.
    pub fn nearby(&self, lat: f64, lon: f64, radius_m: f64, limit: usize) -> Vec<(String, geo::Position, f64)> {
        self.geo
            .read()
            .map(|g| g.nearby(lat, lon, radius_m, limit))
            .unwrap_or_default()
    }

    /// Checks a feed value before it is accepted: location data must carry numeric,
    /// in-range `lat`/`lon` and numeric optional fields; quotes a numeric `price`.
    pub fn validate(&self, ch: &Channel, data: &RawValue) -> Result<(), AppError> {
        let v: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(data.get()).map_err(|_| AppError::bad_request("`data` must be a JSON object"))?;
        match ch.ns {
            Namespace::Loc => {
                let num = |k: &str| v.get(k).and_then(|x| x.as_f64());
                let (Some(lat), Some(lon)) = (num("lat"), num("lon")) else {
                    return Err(AppError::bad_request("location data needs numeric `lat` and `lon`"));
                };
                if !geo::valid_lat_lon(lat, lon) {
                    return Err(AppError::bad_request(
                        "`lat` must be within [-90, 90] and `lon` within [-180, 180]",
                    ));
                }
                for k in ["heading", "speed", "accuracy"] {
                    if let Some(x) = v.get(k) {
                        if !x.is_null() && !x.as_f64().is_some_and(f64::is_finite) {
                            return Err(AppError::bad_request(format!("`{k}` must be a number")));
                        }
                    }
                }
                if v.get("heading")
                    .and_then(|h| h.as_f64())
                    .is_some_and(|h| !(0.0..=360.0).contains(&h))
                {
                    return Err(AppError::bad_request("`heading` must be within [0, 360]"));
                }
                if ["speed", "accuracy"]
                    .iter()
                    .any(|k| v.get(*k).and_then(|x| x.as_f64()).is_some_and(|x| x < 0.0))
                {
                    return Err(AppError::bad_request("`speed` and `accuracy` must not be negative"));
                }
                Ok(())
            }
            Namespace::Ticker => match v.get("price") {
                Some(p) if p.as_f64().is_some_and(f64::is_finite) => Ok(()),
                _ => Err(AppError::bad_request("quote data needs a numeric `price`")),
            },
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.into()).unwrap()
    }

    #[test]
    fn location_validation() {
        let f = Feeds::new(5.0, 25.0);
        let ch = Channel::parse("loc:veh-1").unwrap();
        assert!(f.validate(&ch, &raw(r#"{"lat":52.5,"lon":13.4,"speed":3}"#)).is_ok());
        for bad in [
            r#"{"lat":91,"lon":0}"#,
            r#"{"lat":0,"lon":-180.5}"#,
            r#"{"lat":"1","lon":0}"#,
            r#"{"lon":0}"#,
            r#"{"lat":0,"lon":0,"speed":"fast"}"#,
            r#"{"lat":0,"lon":0,"heading":400}"#,
            r#"{"lat":0,"lon":0,"speed":-1}"#,
        ] {
            assert!(f.validate(&ch, &raw(bad)).is_err(), "{bad}");
        }
        let t = Channel::parse("ticker:A").unwrap();
        assert!(f.validate(&t, &raw(r#"{"price":1.5}"#)).is_ok());
        assert!(f.validate(&t, &raw(r#"{"price":"x"}"#)).is_err());
    }
}

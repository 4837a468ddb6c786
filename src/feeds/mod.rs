//! Live feeds: location validation, the geo index of last-known positions, track
//! sampling, and the list of known feed channels.
//!
//! * [`geo`] – in-memory spatial index answering "who is near this point".
//! * [`track`] – decides which location updates are stored in the track.
//!
//! Everything here is bounded in time: entities and feed channels idle for longer
//! than the configured idle time are forgotten by [`Feeds::sweep`] (their stored last
//! value and track stay in storage).

pub mod geo;
pub mod track;

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc, Mutex, RwLock,
    },
    time::Duration,
};

use serde_json::value::RawValue;

use self::{geo::GeoIndex, track::TrackSampler};
use crate::{
    channels::{Channel, Namespace},
    error::AppError,
    protocol::{now_ms, Message},
    storage::writer::{WriteOp, WriterHandle},
};

/// Most entities in the geo index and the track sampler, and most known feed
/// channels. Overflow policy: idle entries are swept at once; if the bound still
/// holds, a new entity is not indexed (its values are still published and stored)
/// and a new channel is not listed.
pub const MAX_ENTRIES: usize = 1_000_000;

/// Feed state shared by the hub shards and the HTTP routes.
pub struct Feeds {
    /// Where durable last values and track points are stored.
    writer: WriterHandle,
    /// Entries idle for longer than this are forgotten.
    idle: Duration,
    /// Last-known position of every `loc:` entity.
    geo: RwLock<GeoIndex>,
    /// Which location updates go into the stored track.
    sampler: Mutex<TrackSampler>,
    /// Feed channels that carried a value (for `GET /api/feeds`) → when last (ms).
    known: RwLock<HashMap<Arc<str>, AtomicI64>>,
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
    pub fn new(
        writer: WriterHandle,
        track_min_interval_s: f64,
        track_min_distance_m: f64,
        idle: Duration,
    ) -> Arc<Feeds> {
        Arc::new(Feeds {
            writer,
            idle,
            geo: RwLock::new(GeoIndex::new()),
            sampler: Mutex::new(TrackSampler::new(
                (track_min_interval_s * 1000.0).round() as i64,
                track_min_distance_m,
            )),
            known: RwLock::new(HashMap::new()),
        })
    }

    /// Remembers a feed channel that carried a value (now).
    pub fn seen(&self, channel: &Arc<str>) {
        self.seen_at(channel, now_ms());
    }

    fn seen_at(&self, channel: &Arc<str>, ts: i64) {
        if let Ok(k) = self.known.read() {
            if let Some(at) = k.get(channel) {
                at.fetch_max(ts, Ordering::Relaxed);
                return;
            }
        }
        if let Ok(mut k) = self.known.write() {
            if k.len() >= MAX_ENTRIES {
                let cutoff = now_ms() - self.idle_ms();
                k.retain(|_, at| at.load(Ordering::Relaxed) >= cutoff);
                if k.len() >= MAX_ENTRIES {
                    return;
                }
            }
            k.entry(channel.clone()).or_insert_with(|| AtomicI64::new(ts));
        }
    }

    fn idle_ms(&self) -> i64 {
        self.idle.as_millis().min(i64::MAX as u128) as i64
    }

    /// Feed channels known to the server, sorted.
    pub fn channels(&self) -> Vec<Arc<str>> {
        let mut v: Vec<Arc<str>> = self
            .known
            .read()
            .map(|k| k.keys().cloned().collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Remembers the channel and indexes a location value; returns the entity's
    /// position for the caller's sampling.
    fn index(&self, ch: &Channel, m: &Message) -> Option<(f64, f64)> {
        self.seen_at(&ch.full, m.ts);
        if ch.ns != Namespace::Loc {
            return None;
        }
        let (lat, lon) = lat_lon(&m.data)?;
        if let Ok(mut g) = self.geo.write() {
            if g.len() >= MAX_ENTRIES && g.get(ch.name()).is_none() {
                g.expire(now_ms() - self.idle_ms());
                if g.len() >= MAX_ENTRIES {
                    log::warn!("geo index full ({MAX_ENTRIES} entities): {} not indexed", ch.full);
                    return None;
                }
            }
            g.upsert(ch.name(), lat, lon, m.ts);
        }
        Some((lat, lon))
    }

    /// Offers a point to the track sampler: true when it is to be stored.
    fn sample(&self, entity: &str, lat: f64, lon: f64, ts: i64) -> bool {
        self.sampler.lock().is_ok_and(|mut s| {
            if s.len() >= MAX_ENTRIES {
                s.expire(now_ms() - self.idle_ms());
            }
            s.offer(entity, lat, lon, ts)
        })
    }

    /// Loads a stored last value at start (no write back).
    pub fn restore(&self, m: &Message) {
        let Ok(ch) = Channel::parse(&m.channel) else { return };
        if let Some((lat, lon)) = self.index(&ch, m) {
            self.sample(ch.name(), lat, lon, m.ts);
        }
    }

    /// A value that another node published (and persisted): index it only.
    pub fn observe(&self, ch: &Channel, m: &Message) {
        self.index(ch, m);
    }

    /// A new value of a durable last-value channel (`loc:`): index it, sample the
    /// track, persist it.
    pub fn stored_last_value(&self, ch: &Channel, m: &Message) {
        let track = self
            .index(ch, m)
            .and_then(|(lat, lon)| self.sample(ch.name(), lat, lon, m.ts).then_some((lat, lon)));
        self.writer.submit(WriteOp::LastValue {
            channel: ch.clone(),
            msg: m.clone(),
            track,
        });
    }

    /// Forgets what has been idle for longer than the idle time: entities in the geo
    /// index and the track sampler, and known feed channels. Returns how many entries
    /// went. Run periodically.
    pub fn sweep(&self) -> usize {
        let cutoff = now_ms() - self.idle_ms();
        let mut n = 0;
        if let Ok(mut g) = self.geo.write() {
            n += g.expire(cutoff);
        }
        if let Ok(mut s) = self.sampler.lock() {
            n += s.expire(cutoff);
        }
        if let Ok(mut k) = self.known.write() {
            let before = k.len();
            k.retain(|_, at| at.load(Ordering::Relaxed) >= cutoff);
            n += before - k.len();
        }
        n
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

    fn feeds(idle: Duration) -> Arc<Feeds> {
        let (writer, _queue) = crate::storage::writer::queue(16);
        Feeds::new(writer, 5.0, 25.0, idle)
    }

    #[test]
    fn location_validation() {
        let f = feeds(Duration::from_secs(60));
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

    fn loc(entity: &str, ts: i64) -> (Channel, Message) {
        let ch = Channel::parse(&format!("loc:{entity}")).unwrap();
        let m = Message {
            channel: ch.full.clone(),
            seq: 1,
            ts,
            from: crate::protocol::UserRef::new(entity, entity),
            data: raw(r#"{"lat":52.5,"lon":13.4}"#).into(),
            client_id: None,
            edited_ts: None,
            deleted: false,
        };
        (ch, m)
    }

    #[test]
    fn idle_entries_are_swept() {
        let f = feeds(Duration::from_secs(60));
        let now = now_ms();
        let (a, ma) = loc("a", now - 120_000);
        let (b, mb) = loc("b", now);
        f.stored_last_value(&a, &ma);
        f.stored_last_value(&b, &mb);
        f.seen(&"ticker:X".into());
        assert_eq!(f.nearby(52.5, 13.4, 1000.0, 10).len(), 2);
        assert_eq!(f.channels().len(), 3);
        // Entity `a`: geo entry, sampler entry, known channel.
        assert_eq!(f.sweep(), 3);
        let near: Vec<String> = f.nearby(52.5, 13.4, 1000.0, 10).into_iter().map(|e| e.0).collect();
        assert_eq!(near, ["b"]);
        assert_eq!(f.channels().len(), 2);
        assert_eq!(f.sweep(), 0);
    }
}

//! Track sampling for `loc:<entity>` channels: every location update becomes the
//! channel's last value, but only a thinned-out subset is stored in the entity's
//! track, so that a client reporting 10 times a second does not flood storage.
//!
//! A point is stored when it is the entity's first, or when it is at least
//! `min_interval_ms` after the last *stored* point, or at least
//! `min_distance_m` away from it. Consequently, between two stored points the
//! entity never spent more than `min_interval_ms` (plus one report period) nor
//! moved more than `min_distance_m` (plus one report step) unrecorded.

use std::collections::HashMap;

use super::geo::distance_m;

/// The last stored point of one entity.
#[derive(Debug, Clone, Copy)]
struct Stored {
    /// Latitude of the last stored point (degrees).
    lat: f64,
    /// Longitude of the last stored point (degrees).
    lon: f64,
    /// Timestamp of the last stored point (ms).
    ts: i64,
    /// Timestamp of the last point offered, stored or not (ms): idle entities expire.
    seen: i64,
}

/// Decides which location updates are stored in an entity's track.
#[derive(Debug, Clone)]
pub struct TrackSampler {
    /// Store a point once this many ms passed since the last stored one;
    /// 0 disables the time criterion.
    min_interval_ms: i64,
    /// Store a point once it is this many metres from the last stored one;
    /// 0 disables the distance criterion.
    min_distance_m: f64,
    /// Last stored point per entity.
    last: HashMap<String, Stored>,
}

impl TrackSampler {
    /// Creates a sampler. A value of 0 (or less) for one criterion disables it;
    /// with both disabled every point is stored.
    pub fn new(min_interval_ms: i64, min_distance_m: f64) -> Self {
        TrackSampler {
            min_interval_ms: min_interval_ms.max(0),
            min_distance_m: if min_distance_m.is_finite() && min_distance_m > 0.0 {
                min_distance_m
            } else {
                0.0
            },
            last: HashMap::new(),
        }
    }

    /// Returns true when this point must be stored: the first point of the
    /// entity, or at least `min_interval_ms` since the last STORED point, or at
    /// least `min_distance_m` away from it. A stored point becomes the new
    /// reference. Timestamps going backwards never satisfy the time criterion.
    pub fn offer(&mut self, entity: &str, lat: f64, lon: f64, ts: i64) -> bool {
        let point = Stored { lat, lon, ts, seen: ts };
        let Some(prev) = self.last.get_mut(entity) else {
            self.last.insert(entity.to_string(), point);
            return true;
        };
        let both_off = self.min_interval_ms == 0 && self.min_distance_m == 0.0;
        let by_time = self.min_interval_ms > 0 && ts.saturating_sub(prev.ts) >= self.min_interval_ms;
        let by_distance = self.min_distance_m > 0.0 && distance_m(prev.lat, prev.lon, lat, lon) >= self.min_distance_m;
        prev.seen = prev.seen.max(ts);
        if both_off || by_time || by_distance {
            *prev = Stored {
                seen: prev.seen,
                ..point
            };
            true
        } else {
            false
        }
    }

    /// Drops the state of `entity` (e.g. when it goes offline), so its next
    /// point is stored as a first point and memory does not grow forever.
    pub fn forget(&mut self, entity: &str) {
        self.last.remove(entity);
    }

    /// Forgets the entities not offered a point since `before_ts` (ms); returns how
    /// many. Their next point is stored as a first point.
    pub fn expire(&mut self, before_ts: i64) -> usize {
        let before = self.last.len();
        self.last.retain(|_, s| s.seen >= before_ts);
        before - self.last.len()
    }

    /// Number of entities with sampling state, to monitor memory use.
    pub fn len(&self) -> usize {
        self.last.len()
    }

    /// Whether no entity has sampling state.
    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Metres per degree of latitude on the shared sphere.
    const M_PER_DEG: f64 = super::super::geo::EARTH_RADIUS_M * std::f64::consts::PI / 180.0;

    /// Simulates an entity moving north at `speed` m/s reporting every
    /// `period_ms` for `duration_ms`; returns all and stored points.
    fn simulate(s: &mut TrackSampler, speed: f64, period_ms: i64, duration_ms: i64) -> (usize, Vec<(f64, f64, i64)>) {
        let mut stored = Vec::new();
        let mut n = 0;
        let mut ts = 1_000_000;
        let end = ts + duration_ms;
        while ts <= end {
            let lat = 52.0 + speed * ((ts - 1_000_000) as f64 / 1000.0) / M_PER_DEG;
            let lon = 13.0;
            n += 1;
            if s.offer("e", lat, lon, ts) {
                stored.push((lat, lon, ts));
            }
            ts += period_ms;
        }
        (n, stored)
    }

    /// Checks the density bounds between consecutive stored points.
    fn check_gaps(stored: &[(f64, f64, i64)], interval: i64, dist: f64, period: i64, step: f64) {
        for w in stored.windows(2) {
            let dt = w[1].2 - w[0].2;
            let dd = distance_m(w[0].0, w[0].1, w[1].0, w[1].1);
            // Stored because of one criterion...
            assert!(
                (interval > 0 && dt >= interval) || (dist > 0.0 && dd >= dist - 1e-6),
                "dt={dt} dd={dd}"
            );
            // ...and never later than one report after a criterion was met.
            if interval > 0 {
                assert!(dt <= interval + period, "dt={dt}");
            }
            if dist > 0.0 {
                assert!(dd <= dist + step + 1e-6, "dd={dd}");
            }
        }
    }

    #[test]
    fn fast_mover_is_sampled_by_distance() {
        // 30 m/s reporting 10x per second for 10 minutes: 18 km.
        let mut s = TrackSampler::new(10_000, 50.0);
        let (n, stored) = simulate(&mut s, 30.0, 100, 600_000);
        assert_eq!(n, 6001);
        check_gaps(&stored, 10_000, 50.0, 100, 3.0);
        // About one point per 51 m (50 m rounded up to the next 3 m step).
        assert!((340..=370).contains(&stored.len()), "{}", stored.len());
    }

    #[test]
    fn slow_mover_is_sampled_by_time() {
        // 0.5 m/s reporting once a second for an hour: 1.8 km.
        let mut s = TrackSampler::new(10_000, 50.0);
        let (n, stored) = simulate(&mut s, 0.5, 1000, 3_600_000);
        assert_eq!(n, 3601);
        check_gaps(&stored, 10_000, 50.0, 1000, 0.5);
        // Time dominates: one point per 10 s.
        assert_eq!(stored.len(), 361);
        // Standing still: time only.
        let mut s = TrackSampler::new(5_000, 10.0);
        let (_, stored) = simulate(&mut s, 0.0, 1000, 60_000);
        assert_eq!(stored.len(), 13);
    }

    #[test]
    fn zero_disables_a_criterion() {
        // Distance only: a parked entity is stored once.
        let mut s = TrackSampler::new(0, 20.0);
        let (_, stored) = simulate(&mut s, 0.0, 1000, 600_000);
        assert_eq!(stored.len(), 1);
        let mut s = TrackSampler::new(0, 19.0);
        let (_, stored) = simulate(&mut s, 5.0, 1000, 100_000);
        check_gaps(&stored, 0, 19.0, 1000, 5.0);
        assert_eq!(stored.len(), 26);
        // Time only: distance is ignored.
        let mut s = TrackSampler::new(3_000, 0.0);
        let (_, stored) = simulate(&mut s, 100.0, 1000, 30_000);
        check_gaps(&stored, 3_000, 0.0, 1000, 100.0);
        assert_eq!(stored.len(), 11);
        // Both off: everything.
        let mut s = TrackSampler::new(0, 0.0);
        let (n, stored) = simulate(&mut s, 1.0, 500, 10_000);
        assert_eq!(n, stored.len());
    }

    #[test]
    fn entities_are_independent_and_forgettable() {
        let mut s = TrackSampler::new(1000, 100.0);
        assert!(s.offer("a", 0.0, 0.0, 0));
        assert!(s.offer("b", 0.0, 0.0, 0));
        assert!(!s.offer("a", 0.0, 0.0, 500));
        assert!(!s.offer("a", 0.0, 0.0, -5000)); // clock going backwards
        assert!(s.offer("a", 0.0, 0.0, 1000));
        assert!(!s.offer("a", 0.0, 0.0, 1999)); // measured from the last stored
        assert_eq!(s.len(), 2);
        s.forget("a");
        assert_eq!(s.len(), 1);
        assert!(s.offer("a", 0.0, 0.0, 1999));
        s.forget("b");
        s.forget("a");
        assert!(s.is_empty());
    }

    #[test]
    fn idle_entities_expire() {
        let mut s = TrackSampler::new(1000, 100.0);
        assert!(s.offer("a", 0.0, 0.0, 0));
        assert!(s.offer("b", 0.0, 0.0, 0));
        // `a` keeps reporting without moving: not stored, but seen.
        assert!(!s.offer("a", 0.0, 0.0, 900));
        assert_eq!(s.expire(500), 1, "b was last seen at 0");
        assert_eq!(s.len(), 1);
        assert!(!s.offer("a", 0.0, 0.0, 950), "a kept its reference point");
        assert!(s.offer("b", 0.0, 0.0, 950), "b starts anew");
    }
}

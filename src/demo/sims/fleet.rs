//! Vehicle fleet simulator for the `loc:*` channels: cars, buses and bikes driving
//! a street grid in Berlin Mitte, publishing position, heading and speed.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::{round_to, Publication};
use crate::feeds::geo::EARTH_RADIUS_M;

/// Centre of the simulated city (Berlin Mitte).
const CITY_LAT: f64 = 52.52;
/// Centre of the simulated city (Berlin Mitte).
const CITY_LON: f64 = 13.405;
/// Distance between parallel streets, metres.
const BLOCK_M: f64 = 200.0;
/// Blocks per side of the square grid (16 x 200 m = 3.2 km).
const BLOCKS: i32 = 16;
/// Longest time step one tick may simulate, so a stall does not teleport.
const FLEET_MAX_DT_MS: i64 = 10_000;
/// Metres per degree of latitude on the shared sphere.
const M_PER_DEG_LAT: f64 = EARTH_RADIUS_M * std::f64::consts::PI / 180.0;
/// Unit steps for headings north, east, south, west (index = heading / 90°).
const DIRS: [(i32, i32); 4] = [(0, 1), (1, 0), (0, -1), (-1, 0)];

/// Vehicle type, which sets speed and driving habits.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// ~12 m/s, stops at some traffic lights.
    Car,
    /// ~8 m/s, mostly goes straight, stops at bus stops.
    Bus,
    /// ~5 m/s, occasional short stops.
    Bike,
}

impl Kind {
    /// Name used in the published data.
    fn as_str(self) -> &'static str {
        match self {
            Kind::Car => "car",
            Kind::Bus => "bus",
            Kind::Bike => "bike",
        }
    }

    /// Typical cruising speed, m/s.
    fn base_speed(self) -> f64 {
        match self {
            Kind::Car => 12.0,
            Kind::Bus => 8.0,
            Kind::Bike => 5.0,
        }
    }
}

/// One simulated vehicle on the street grid.
#[derive(Debug, Clone)]
struct Vehicle {
    /// Entity id (`veh-01`).
    id: String,
    /// Display name.
    name: String,
    /// Vehicle type.
    kind: Kind,
    /// Intersection (column, row) the vehicle last passed.
    node: (i32, i32),
    /// Direction of travel, index into [`DIRS`].
    dir: usize,
    /// Metres travelled from `node` along `dir` (0..BLOCK_M).
    progress: f64,
    /// Current cruising speed, m/s.
    speed: f64,
    /// Remaining standing time at the current intersection, ms.
    stop_ms: f64,
}

/// Vehicle fleet simulator: `vehicles` cars, buses and bikes driving on a
/// square street grid (streets every 200 m, 3.2 km across) centred on
/// 52.52 N 13.405 E, turning at intersections and sometimes stopping there.
/// Publishes every vehicle's position on `loc:<entity>` each tick; positions
/// advance by the elapsed time between ticks (designed for ~1 tick/s).
#[derive(Debug)]
pub struct FleetSim {
    /// Deterministic randomness.
    rng: StdRng,
    /// All vehicles.
    vehicles: Vec<Vehicle>,
    /// Latest `now_ms` seen; `None` before the first tick.
    last_ms: Option<i64>,
}

/// Latitude/longitude of the grid's south-west corner.
fn grid_origin() -> (f64, f64) {
    let half = f64::from(BLOCKS) * BLOCK_M / 2.0;
    (CITY_LAT - half / M_PER_DEG_LAT, CITY_LON - half / m_per_deg_lon())
}

/// Metres per degree of longitude at the city's latitude.
fn m_per_deg_lon() -> f64 {
    M_PER_DEG_LAT * CITY_LAT.to_radians().cos()
}

/// Whether an intersection lies on the grid.
fn on_grid(node: (i32, i32)) -> bool {
    (0..=BLOCKS).contains(&node.0) && (0..=BLOCKS).contains(&node.1)
}

impl Vehicle {
    /// Position in metres east and north of the grid origin.
    fn xy(&self) -> (f64, f64) {
        let (dx, dy) = DIRS[self.dir];
        (
            f64::from(self.node.0) * BLOCK_M + f64::from(dx) * self.progress,
            f64::from(self.node.1) * BLOCK_M + f64::from(dy) * self.progress,
        )
    }

    /// Whether going `dir` from `node` stays on the grid.
    fn can_go(node: (i32, i32), dir: usize) -> bool {
        let (dx, dy) = DIRS[dir];
        on_grid((node.0 + dx, node.1 + dy))
    }

    /// Arrives at the next intersection: picks a new direction, speed and
    /// maybe a stop.
    fn arrive(&mut self, rng: &mut StdRng) {
        let (dx, dy) = DIRS[self.dir];
        self.node = (self.node.0 + dx, self.node.1 + dy);
        self.progress = 0.0;
        let straight_w = match self.kind {
            Kind::Bus => 8.0,
            Kind::Car => 5.0,
            Kind::Bike => 3.0,
        };
        let options: Vec<(usize, f64)> = [
            (self.dir, straight_w),
            ((self.dir + 1) % 4, 1.0),
            ((self.dir + 3) % 4, 1.0),
        ]
        .into_iter()
        .filter(|(d, _)| Self::can_go(self.node, *d))
        .collect();
        self.dir = if options.is_empty() {
            (self.dir + 2) % 4
        } else {
            let total: f64 = options.iter().map(|o| o.1).sum();
            let mut r = rng.gen_range(0.0..total);
            let mut pick = options[options.len() - 1].0;
            for (d, w) in &options {
                if r < *w {
                    pick = *d;
                    break;
                }
                r -= w;
            }
            pick
        };
        self.speed = self.kind.base_speed() * rng.gen_range(0.8..1.2);
        let (p, lo, hi) = match self.kind {
            Kind::Car => (0.25, 3_000.0, 25_000.0),
            Kind::Bus => (0.35, 10_000.0, 25_000.0),
            Kind::Bike => (0.15, 3_000.0, 15_000.0),
        };
        if rng.gen_bool(p) {
            self.stop_ms = rng.gen_range(lo..hi);
        }
    }

    /// Moves for `dt_ms` of simulated time.
    fn advance(&mut self, mut dt_ms: f64, rng: &mut StdRng) {
        while dt_ms > 0.0 {
            if self.stop_ms > 0.0 {
                let wait = self.stop_ms.min(dt_ms);
                self.stop_ms -= wait;
                dt_ms -= wait;
                continue;
            }
            let to_node_ms = (BLOCK_M - self.progress) / self.speed * 1000.0;
            if dt_ms < to_node_ms {
                self.progress += self.speed * dt_ms / 1000.0;
                dt_ms = 0.0;
            } else {
                dt_ms -= to_node_ms;
                self.arrive(rng);
            }
        }
    }

    /// The published location object.
    fn data(&self) -> Value {
        let (lat0, lon0) = grid_origin();
        let (x, y) = self.xy();
        let speed = if self.stop_ms > 0.0 { 0.0 } else { self.speed };
        json!({
            "lat": round_to(lat0 + y / M_PER_DEG_LAT, 6),
            "lon": round_to(lon0 + x / m_per_deg_lon(), 6),
            "heading": (self.dir * 90) as f64,
            "speed": round_to(speed, 1),
            "kind": self.kind.as_str(),
            "name": self.name,
        })
    }
}

impl FleetSim {
    /// Creates `vehicles` vehicles at random places on the grid; `seed` fixes
    /// the whole simulation. Entity ids are `veh-01`, `veh-02`, ... (at least
    /// two digits). Every 5th vehicle is a bus and every 5th (offset) a bike.
    pub fn new(seed: u64, vehicles: usize) -> Self {
        let mut rng = StdRng::seed_from_u64(seed ^ 0xf1ee_7000);
        let width = vehicles.to_string().len().max(2);
        let mut counts = [0usize; 3];
        let vehicles = (0..vehicles)
            .map(|i| {
                let kind = match i % 5 {
                    0 => Kind::Bus,
                    3 => Kind::Bike,
                    _ => Kind::Car,
                };
                let k = kind as usize;
                counts[k] += 1;
                let name = match kind {
                    Kind::Car => format!("Taxi {}", 100 + counts[k]),
                    Kind::Bus => format!("Bus M{}", 10 + counts[k]),
                    Kind::Bike => format!("Courier {}", counts[k]),
                };
                let node = (rng.gen_range(0..=BLOCKS), rng.gen_range(0..=BLOCKS));
                let dirs: Vec<usize> = (0..4).filter(|&d| Vehicle::can_go(node, d)).collect();
                let dir = dirs[rng.gen_range(0..dirs.len())];
                Vehicle {
                    id: format!("veh-{:0width$}", i + 1),
                    name,
                    kind,
                    node,
                    dir,
                    progress: rng.gen_range(0.0..BLOCK_M),
                    speed: kind.base_speed() * rng.gen_range(0.8..1.2),
                    stop_ms: 0.0,
                }
            })
            .collect();
        FleetSim {
            rng,
            vehicles,
            last_ms: None,
        }
    }

    /// Channels this simulator publishes on (`loc:<entity>`).
    pub fn channels(&self) -> Vec<String> {
        self.vehicles.iter().map(|v| format!("loc:{}", v.id)).collect()
    }

    /// Bounding box of the street grid as (min_lat, min_lon, max_lat,
    /// max_lon), e.g. to centre a map on the fleet.
    pub fn bounds(&self) -> (f64, f64, f64, f64) {
        let (lat0, lon0) = grid_origin();
        let side = f64::from(BLOCKS) * BLOCK_M;
        (lat0, lon0, lat0 + side / M_PER_DEG_LAT, lon0 + side / m_per_deg_lon())
    }

    /// Advances every vehicle by the time since the previous tick (at most
    /// 10 s) and returns every vehicle's position.
    pub fn tick(&mut self, now_ms: i64) -> Vec<Publication> {
        let dt = match self.last_ms {
            None => 0,
            Some(l) => (now_ms - l).clamp(0, FLEET_MAX_DT_MS),
        };
        self.last_ms = Some(self.last_ms.map_or(now_ms, |l| l.max(now_ms)));
        let rng = &mut self.rng;
        self.vehicles
            .iter_mut()
            .map(|v| {
                v.advance(dt as f64, rng);
                Publication {
                    channel: format!("loc:{}", v.id),
                    data: v.data(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{is_id, num};
    use super::*;
    use crate::feeds::geo::{distance_m, valid_lat_lon};

    #[test]
    fn fleet_stays_on_streets_inside_the_grid() {
        let n = 40;
        let mut sim = FleetSim::new(5, n);
        let chans = sim.channels();
        assert_eq!(chans.len(), n);
        assert_eq!(chans[0], "loc:veh-01");
        for c in &chans {
            assert!(is_id(c.strip_prefix("loc:").unwrap()));
        }
        let (min_lat, min_lon, max_lat, max_lon) = sim.bounds();
        assert!(min_lat < CITY_LAT && CITY_LAT < max_lat);
        assert!(min_lon < CITY_LON && CITY_LON < max_lon);
        let (lat0, lon0) = grid_origin();
        let eps = 1e-6;
        let mut prev: std::collections::HashMap<String, (f64, f64)> = Default::default();
        let mut kinds = std::collections::HashSet::new();
        let mut moved = 0.0;
        // One hour at 1 tick/s, with some jitter and one long gap.
        let mut now = 5_000i64;
        for s in 0..3600 {
            now += if s == 1800 { 30_000 } else { 900 + (s % 3) * 100 };
            let pubs = sim.tick(now);
            assert_eq!(pubs.len(), n);
            for p in pubs {
                let d = &p.data;
                assert_eq!(d.as_object().unwrap().len(), 6);
                let (lat, lon) = (num(d, "lat"), num(d, "lon"));
                assert!(valid_lat_lon(lat, lon));
                assert!(lat >= min_lat - eps && lat <= max_lat + eps, "{d}");
                assert!(lon >= min_lon - eps && lon <= max_lon + eps, "{d}");
                // On a street: x or y is (within rounding) a multiple of 200 m.
                let x = (lon - lon0) * m_per_deg_lon();
                let y = (lat - lat0) * M_PER_DEG_LAT;
                let off = |v: f64| (v - (v / BLOCK_M).round() * BLOCK_M).abs();
                assert!(off(x) < 0.2 || off(y) < 0.2, "off street: {d}");
                let heading = num(d, "heading");
                assert!((0.0..360.0).contains(&heading));
                let speed = num(d, "speed");
                let kind = d["kind"].as_str().unwrap();
                let max = match kind {
                    "car" => 14.5,
                    "bus" => 9.7,
                    "bike" => 6.1,
                    other => panic!("kind {other}"),
                };
                assert!((0.0..=max).contains(&speed), "{d}");
                kinds.insert(kind.to_string());
                assert!(d["name"].as_str().is_some_and(|s| !s.is_empty()));
                if let Some((plat, plon)) = prev.insert(p.channel.clone(), (lat, lon)) {
                    let step = distance_m(plat, plon, lat, lon);
                    assert!(step <= 14.5 * 10.0 + 1.0, "teleport {step}");
                    moved += step;
                }
            }
        }
        assert_eq!(kinds.len(), 3);
        // Vehicles actually drive: on average well over 10 km in the hour.
        assert!(moved / n as f64 > 10_000.0, "{}", moved / n as f64);
    }

    #[test]
    fn fleet_is_deterministic() {
        let run = |seed| {
            let mut s = FleetSim::new(seed, 12);
            (0..30).flat_map(|i| s.tick(i * 1000)).collect::<Vec<_>>()
        };
        assert_eq!(run(4), run(4));
        assert_ne!(run(4), run(5));
        assert!(FleetSim::new(1, 0).tick(0).is_empty());
        assert_eq!(FleetSim::new(1, 120).channels()[0], "loc:veh-001");
    }
}

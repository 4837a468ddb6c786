//! Tests of the geo index against a brute-force scan and at the edges of the globe.
use super::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Half the earth's circumference on our sphere.
const HALF_CIRC: f64 = std::f64::consts::PI * EARTH_RADIUS_M;

fn brute(pts: &HashMap<String, Position>, lat: f64, lon: f64, r: f64, limit: usize) -> Vec<(String, Position, f64)> {
    let mut v: Vec<(String, Position, f64)> = pts
        .iter()
        .map(|(k, p)| (k.clone(), *p, distance_m(lat, lon, p.lat, p.lon)))
        .filter(|x| x.2 <= r)
        .collect();
    v.sort_by(|a, b| a.2.total_cmp(&b.2).then_with(|| a.0.cmp(&b.0)));
    v.truncate(limit);
    v
}

/// A random point biased towards the hard places: poles, the 180° meridian,
/// exact boundary values, plus a uniform spread over the sphere.
fn tricky_point(rng: &mut StdRng) -> (f64, f64) {
    let uniform_lon = |rng: &mut StdRng| rng.gen_range(-180.0..=180.0);
    match rng.gen_range(0..10) {
        0 => (90.0 - rng.gen_range(0.0..0.5f64), uniform_lon(rng)),
        1 => (-90.0 + rng.gen_range(0.0..0.5f64), uniform_lon(rng)),
        2 => (if rng.gen_bool(0.5) { 90.0 } else { -90.0 }, uniform_lon(rng)),
        3 => (
            rng.gen_range(-90.0..=90.0),
            if rng.gen_bool(0.5) { 180.0 } else { -180.0 },
        ),
        4 => {
            let lon: f64 = 180.0 - rng.gen_range(0.0..0.2);
            let lon = if rng.gen_bool(0.5) { lon } else { -lon };
            (rng.gen_range(-89.0..=89.0), lon)
        }
        5 => (52.52 + rng.gen_range(-0.05..0.05), 13.405 + rng.gen_range(-0.05..0.05)),
        _ => {
            let z: f64 = rng.gen_range(-1.0..=1.0);
            (z.asin().to_degrees(), uniform_lon(rng))
        }
    }
}

fn random_radius(rng: &mut StdRng) -> f64 {
    match rng.gen_range(0..8) {
        0 => HALF_CIRC,
        1 => HALF_CIRC * rng.gen_range(0.9..1.1),
        2 => rng.gen_range(0.0..2.0),
        _ => 10f64.powf(rng.gen_range(0.0..7.31)), // 1 m .. ~20,000 km
    }
}

fn check_against_brute(cell_deg: f64, seed: u64, n_points: usize, n_queries: usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut idx = GeoIndex::with_cell_deg(cell_deg);
    let mut pts: HashMap<String, Position> = HashMap::new();
    for i in 0..n_points {
        let (lat, lon) = tricky_point(&mut rng);
        let name = format!("e{i}");
        idx.upsert(&name, lat, lon, i as i64);
        pts.insert(name, Position { lat, lon, ts: i as i64 });
    }
    // Duplicated positions exercise tie ordering.
    for i in 0..20 {
        let name = format!("dup{i}");
        idx.upsert(&name, 10.0, 20.0, 0);
        pts.insert(
            name,
            Position {
                lat: 10.0,
                lon: 20.0,
                ts: 0,
            },
        );
    }
    let names: Vec<String> = pts.keys().cloned().collect();
    for q in 0..n_queries {
        // Mutate between queries: moves across cells, removals, re-adds.
        for _ in 0..5 {
            let name = &names[rng.gen_range(0..names.len())];
            if rng.gen_bool(0.2) {
                assert_eq!(idx.remove(name), pts.remove(name).is_some());
            } else {
                let (lat, lon) = tricky_point(&mut rng);
                idx.upsert(name, lat, lon, q as i64);
                pts.insert(name.clone(), Position { lat, lon, ts: q as i64 });
            }
        }
        assert_eq!(idx.len(), pts.len());
        let (lat, lon) = if rng.gen_bool(0.4) && !pts.is_empty() {
            // Centre on or right next to an existing point, so small radii hit.
            let p = *pts.values().nth(rng.gen_range(0..pts.len())).unwrap();
            if rng.gen_bool(0.5) {
                (p.lat, p.lon)
            } else {
                (
                    (p.lat + rng.gen_range(-0.001..0.001)).clamp(-90.0, 90.0),
                    (p.lon + rng.gen_range(-0.001..0.001)).clamp(-180.0, 180.0),
                )
            }
        } else {
            tricky_point(&mut rng)
        };
        let r = if rng.gen_bool(0.2) && !pts.is_empty() {
            // Radius exactly equal to the distance of some point: the
            // inclusive boundary must be honoured.
            let p = pts.values().nth(rng.gen_range(0..pts.len())).unwrap();
            distance_m(lat, lon, p.lat, p.lon)
        } else {
            random_radius(&mut rng)
        };
        let limit = if rng.gen_bool(0.5) {
            usize::MAX
        } else {
            rng.gen_range(1..50)
        };
        let got = idx.nearby(lat, lon, r, limit);
        let want = brute(&pts, lat, lon, r, limit);
        assert_eq!(got, want, "cell {cell_deg} query ({lat},{lon}) r={r} limit={limit}");
    }
}

#[test]
fn nearby_matches_brute_force_default_cells() {
    check_against_brute(DEFAULT_CELL_DEG, 1, 3000, 400);
}

#[test]
fn nearby_matches_brute_force_other_cell_sizes() {
    check_against_brute(1.0, 2, 2000, 300);
    check_against_brute(0.37, 3, 2000, 300);
    check_against_brute(7.0, 4, 1000, 200);
    check_against_brute(0.01, 5, 1000, 200);
}

#[test]
fn index_uses_cells_for_small_queries() {
    let mut idx = GeoIndex::new();
    idx.upsert("a", 52.52, 13.405, 1);
    idx.upsert("far", -33.9, 151.2, 1);
    let (rl, rh, cols) = idx.search_box(52.52, 13.405, 1000.0);
    assert!(rh - rl <= 3);
    match cols {
        Cols::Range(lo, hi) => assert!(hi - lo <= 3),
        Cols::All => panic!("small query must not scan all longitudes"),
    }
}

#[test]
fn across_the_meridian() {
    let mut idx = GeoIndex::new();
    // ~1 km apart at the equator: 0.009° of longitude on each side.
    idx.upsert("west", 0.0, 179.9955, 1);
    idx.upsert("east", 0.0, -179.9955, 2);
    let d = distance_m(0.0, 179.9955, 0.0, -179.9955);
    assert!((d - 1000.8).abs() < 1.0, "{d}");
    let r = idx.nearby(0.0, 179.9955, 1100.0, 10);
    let names: Vec<&str> = r.iter().map(|x| x.0.as_str()).collect();
    assert_eq!(names, ["west", "east"]);
    let r = idx.nearby(0.0, -179.9955, 1100.0, 10);
    let names: Vec<&str> = r.iter().map(|x| x.0.as_str()).collect();
    assert_eq!(names, ["east", "west"]);
    // Centre exactly on the meridian, both spellings.
    assert_eq!(idx.nearby(0.0, 180.0, 600.0, 10).len(), 2);
    assert_eq!(idx.nearby(0.0, -180.0, 600.0, 10).len(), 2);
    assert_eq!(idx.nearby(0.0, 180.0, 400.0, 10).len(), 0);
}

#[test]
fn around_the_north_pole() {
    let mut idx = GeoIndex::new();
    for (i, lon) in [-180.0, -135.0, -90.0, -45.0, 0.0, 45.0, 90.0, 135.0, 180.0]
        .iter()
        .enumerate()
    {
        idx.upsert(&format!("p{i}"), 89.99, *lon, 0);
    }
    idx.upsert("pole", 90.0, 0.0, 0);
    // 0.01° of latitude is ~1112 m: every point is within 1.2 km of the pole.
    let r = idx.nearby(90.0, 77.0, 1200.0, 100);
    assert_eq!(r.len(), 10);
    assert_eq!(r[0].0, "pole");
    // From one ring point the opposite one is ~2224 m away via the pole.
    let r = idx.nearby(89.99, 0.0, 2300.0, 100);
    assert_eq!(r.len(), 10);
    assert_eq!(r[0].0, "p4");
    assert!(r.iter().any(|x| x.0 == "p0"));
    // Small radius: only the near neighbours.
    let r = idx.nearby(89.99, 0.0, 900.0, 100);
    let mut names: Vec<&str> = r.iter().map(|x| x.0.as_str()).collect();
    names.sort();
    assert_eq!(names, ["p3", "p4", "p5"]);
}

#[test]
fn whole_globe_and_limits() {
    let mut idx = GeoIndex::new();
    idx.upsert("a", 0.0, 0.0, 0);
    idx.upsert("b", 0.0, 180.0, 0); // antipode
    idx.upsert("c", -90.0, 0.0, 0);
    let r = idx.nearby(0.0, 0.0, HALF_CIRC, 10);
    assert_eq!(r.len(), 3);
    assert_eq!(r[2].0, "b");
    assert_eq!(idx.nearby(0.0, 0.0, 1e9, 2).len(), 2);
    assert!(idx.nearby(0.0, 0.0, 1e9, 0).is_empty());
    assert!(idx.nearby(0.0, 0.0, -1.0, 10).is_empty());
    assert!(idx.nearby(0.0, 0.0, f64::NAN, 10).is_empty());
    assert!(idx.nearby(91.0, 0.0, 1e9, 10).is_empty());
    assert_eq!(idx.nearby(0.0, 0.0, f64::INFINITY, 10).len(), 3);
}

#[test]
fn upsert_remove_get() {
    let mut idx = GeoIndex::default();
    assert!(idx.is_empty());
    idx.upsert("a", 1.0, 2.0, 5);
    assert_eq!(
        idx.get("a"),
        Some(Position {
            lat: 1.0,
            lon: 2.0,
            ts: 5
        })
    );
    idx.upsert("a", -40.0, 100.0, 6);
    assert_eq!(idx.len(), 1);
    assert!(idx.nearby(1.0, 2.0, 1000.0, 10).is_empty());
    assert_eq!(idx.nearby(-40.0, 100.0, 1.0, 10).len(), 1);
    idx.upsert("a", f64::NAN, 0.0, 7); // ignored
    assert_eq!(idx.get("a").unwrap().ts, 6);
    assert!(idx.remove("a"));
    assert!(!idx.remove("a"));
    assert!(idx.get("a").is_none());
    assert!(idx.is_empty());
    assert!(idx.cells.is_empty());
}

#[test]
fn distance_and_validation() {
    // One degree of latitude.
    let d = distance_m(0.0, 0.0, 1.0, 0.0);
    assert!((d - 111_195.08).abs() < 0.1, "{d}");
    assert!((distance_m(0.0, 0.0, 0.0, 180.0) - HALF_CIRC).abs() < 1e-6);
    assert!(distance_m(90.0, 0.0, 90.0, 123.0) < 1e-6);
    assert!(valid_lat_lon(90.0, -180.0));
    assert!(!valid_lat_lon(90.1, 0.0));
    assert!(!valid_lat_lon(0.0, 180.1));
    assert!(!valid_lat_lon(f64::NAN, 0.0));
    assert!(!valid_lat_lon(0.0, f64::INFINITY));
}

//! In-memory geo index of the last-known position of each entity (`loc:<entity>`
//! channels).
//!
//! Entities are bucketed into a fixed grid of latitude/longitude cells (0.05° by
//! default, about 5.5 km north-south). A radius query only visits the cells that
//! can hold a match and then filters candidates by exact great-circle distance, so
//! results are identical to a brute-force scan:
//!
//! * the latitude band is the query latitude ± the angular radius;
//! * the longitude band is ± `asin(sin δ / cos φ)` (the exact longitude extent of
//!   a spherical cap), wrapped across the 180° meridian;
//! * when the cap touches or contains a pole, or the longitude extent reaches
//!   180°, every longitude is searched;
//! * a radius of half the earth's circumference or more covers the whole globe.
//!
//! When the candidate cell range is larger than the number of occupied cells
//! (huge radii), the occupied cells are walked instead of the empty range.

use std::collections::HashMap;

/// Mean earth radius in metres used for every distance in the feeds code, so
/// that the index, the track sampler and clients agree on distances.
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Default grid cell size in degrees: small enough that city-scale queries
/// touch few entities, large enough that continent-scale queries stay cheap.
const DEFAULT_CELL_DEG: f64 = 0.05;

/// Extra degrees added to every search band so that floating-point rounding
/// near cell borders can never drop a match (about 1 cm).
const PAD_DEG: f64 = 1e-7;

/// A last-known position of an entity.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Position {
    /// Latitude in degrees, -90..=90; where the entity was last seen.
    pub lat: f64,
    /// Longitude in degrees, -180..=180; where the entity was last seen.
    pub lon: f64,
    /// Timestamp of the report (ms since the Unix epoch, as given by the
    /// caller) so that consumers can judge how stale the position is.
    pub ts: i64,
}

/// Grid cell key: (row, column).
type Cell = (u32, u32);

/// Storage for one indexed entity.
#[derive(Debug)]
struct Entry {
    /// Entity id, kept to build query results.
    name: String,
    /// Current position.
    pos: Position,
    /// Cell the entity is currently bucketed in.
    cell: Cell,
    /// Index of this entry's slot number inside `cells[cell]`, for O(1) removal.
    idx_in_cell: usize,
}

/// Longitude part of a search: every column, or an inclusive column range that
/// may extend past either end of the grid (wrapped across the 180° meridian).
#[derive(Debug, Clone, Copy)]
enum Cols {
    All,
    Range(i64, i64),
}

/// In-memory spatial index of last-known positions, keyed by entity id.
#[derive(Debug)]
pub struct GeoIndex {
    /// Number of latitude rows in the grid.
    rows: u32,
    /// Number of longitude columns in the grid.
    cols: u32,
    /// Rows per degree of latitude.
    lat_scale: f64,
    /// Columns per degree of longitude.
    lon_scale: f64,
    /// Entry storage; `None` marks a free slot.
    slots: Vec<Option<Entry>>,
    /// Free slot numbers, reused before growing `slots`.
    free: Vec<usize>,
    /// Entity id -> slot number.
    by_name: HashMap<String, usize>,
    /// Occupied cells -> slot numbers of the entities in them.
    cells: HashMap<Cell, Vec<usize>>,
}

impl Default for GeoIndex {
    fn default() -> Self {
        Self::new()
    }
}

impl GeoIndex {
    /// Creates an empty index with the default cell size.
    pub fn new() -> Self {
        Self::with_cell_deg(DEFAULT_CELL_DEG)
    }

    /// Creates an empty index with cells of about `cell_deg` degrees (rounded so
    /// that a whole number of cells spans the globe; clamped to 0.001°..=90°).
    /// Exists to tune memory/speed for unusual entity densities; results never
    /// depend on it.
    pub fn with_cell_deg(cell_deg: f64) -> Self {
        let cell_deg = if cell_deg.is_finite() {
            cell_deg.clamp(0.001, 90.0)
        } else {
            DEFAULT_CELL_DEG
        };
        let rows = ((180.0 / cell_deg).round() as u32).max(1);
        let cols = ((360.0 / cell_deg).round() as u32).max(1);
        GeoIndex {
            rows,
            cols,
            lat_scale: f64::from(rows) / 180.0,
            lon_scale: f64::from(cols) / 360.0,
            slots: Vec::new(),
            free: Vec::new(),
            by_name: HashMap::new(),
            cells: HashMap::new(),
        }
    }

    /// Unclamped row number of a latitude (monotone in `lat`).
    fn raw_row(&self, lat: f64) -> i64 {
        ((lat + 90.0) * self.lat_scale).floor() as i64
    }

    /// Unclamped column number of a longitude (monotone in `lon`).
    fn raw_col(&self, lon: f64) -> i64 {
        ((lon + 180.0) * self.lon_scale).floor() as i64
    }

    /// Cell holding a valid position.
    fn cell_of(&self, lat: f64, lon: f64) -> Cell {
        let row = self.raw_row(lat).clamp(0, i64::from(self.rows) - 1);
        let col = self.raw_col(lon).clamp(0, i64::from(self.cols) - 1);
        (row as u32, col as u32)
    }

    /// Inserts or moves `entity` to (`lat`, `lon`) reported at `ts`.
    ///
    /// Positions that fail [`valid_lat_lon`] are ignored (the entity keeps its
    /// previous position); callers are expected to validate input first.
    pub fn upsert(&mut self, entity: &str, lat: f64, lon: f64, ts: i64) {
        if !valid_lat_lon(lat, lon) {
            return;
        }
        let cell = self.cell_of(lat, lon);
        let pos = Position { lat, lon, ts };
        if let Some(&slot) = self.by_name.get(entity) {
            let (old_cell, old_idx) = {
                let e = self.slots[slot].as_mut().expect("indexed slot is occupied");
                e.pos = pos;
                (e.cell, e.idx_in_cell)
            };
            if old_cell != cell {
                self.unlink(old_cell, old_idx);
                self.link(slot, cell);
            }
            return;
        }
        let entry = Entry {
            name: entity.to_string(),
            pos,
            cell,
            idx_in_cell: 0,
        };
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s] = Some(entry);
                s
            }
            None => {
                self.slots.push(Some(entry));
                self.slots.len() - 1
            }
        };
        self.by_name.insert(entity.to_string(), slot);
        self.link(slot, cell);
    }

    /// Adds `slot` to `cell` and records where it sits.
    fn link(&mut self, slot: usize, cell: Cell) {
        let list = self.cells.entry(cell).or_default();
        list.push(slot);
        let idx = list.len() - 1;
        let e = self.slots[slot].as_mut().expect("linked slot is occupied");
        e.cell = cell;
        e.idx_in_cell = idx;
    }

    /// Removes the slot at position `idx` of `cell`'s list in O(1).
    fn unlink(&mut self, cell: Cell, idx: usize) {
        let Some(list) = self.cells.get_mut(&cell) else {
            return;
        };
        list.swap_remove(idx);
        if let Some(&moved) = list.get(idx) {
            if let Some(e) = self.slots[moved].as_mut() {
                e.idx_in_cell = idx;
            }
        }
        if list.is_empty() {
            self.cells.remove(&cell);
        }
    }

    /// Removes every entity last reported before `before_ts` (ms); returns how many.
    /// A linear sweep, meant to run now and then (see `Feeds::sweep`).
    pub fn expire(&mut self, before_ts: i64) -> usize {
        let stale: Vec<String> = self
            .slots
            .iter()
            .flatten()
            .filter(|e| e.pos.ts < before_ts)
            .map(|e| e.name.clone())
            .collect();
        for name in &stale {
            self.remove(name);
        }
        stale.len()
    }

    /// Removes `entity`; returns whether it was present.
    pub fn remove(&mut self, entity: &str) -> bool {
        let Some(slot) = self.by_name.remove(entity) else {
            return false;
        };
        if let Some(e) = self.slots[slot].take() {
            self.unlink(e.cell, e.idx_in_cell);
        }
        self.free.push(slot);
        true
    }

    /// Last-known position of `entity`, if indexed.
    pub fn get(&self, entity: &str) -> Option<Position> {
        let slot = *self.by_name.get(entity)?;
        self.slots[slot].as_ref().map(|e| e.pos)
    }

    /// Number of indexed entities.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether no entity is indexed.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Rows and columns that can hold points within `radius_m` of the centre.
    fn search_box(&self, lat: f64, lon: f64, radius_m: f64) -> (i64, i64, Cols) {
        let last_row = i64::from(self.rows) - 1;
        let delta = radius_m / EARTH_RADIUS_M;
        if delta >= std::f64::consts::PI {
            return (0, last_row, Cols::All);
        }
        // Small relative and absolute margins against rounding in distance_m.
        let d = delta * (1.0 + 1e-9) + 1e-9;
        let d_deg = d.to_degrees();
        let lat_lo = lat - d_deg - PAD_DEG;
        let lat_hi = lat + d_deg + PAD_DEG;
        let row_lo = self.raw_row(lat_lo).clamp(0, last_row);
        let row_hi = self.raw_row(lat_hi).clamp(0, last_row);
        if lat_hi >= 90.0 || lat_lo <= -90.0 {
            // The cap touches a pole: every meridian passes through it.
            return (row_lo, row_hi, Cols::All);
        }
        let s = d.sin() / lat.to_radians().cos();
        if s.is_nan() || s >= 1.0 {
            return (row_lo, row_hi, Cols::All);
        }
        let dlon = s.asin().to_degrees() + PAD_DEG;
        let col_lo = self.raw_col(lon - dlon);
        let col_hi = self.raw_col(lon + dlon);
        if col_hi - col_lo + 1 >= i64::from(self.cols) {
            return (row_lo, row_hi, Cols::All);
        }
        (row_lo, row_hi, Cols::Range(col_lo, col_hi))
    }

    /// Entities within `radius_m` metres (great-circle, inclusive) of
    /// (`lat`, `lon`), nearest first (ties by entity id), at most `limit`.
    /// Each item is (entity, position, distance in metres). An invalid centre
    /// or a negative/NaN radius yields nothing.
    pub fn nearby(&self, lat: f64, lon: f64, radius_m: f64, limit: usize) -> Vec<(String, Position, f64)> {
        if limit == 0 || !valid_lat_lon(lat, lon) || radius_m.is_nan() || radius_m < 0.0 {
            return Vec::new();
        }
        let (row_lo, row_hi, cols) = self.search_box(lat, lon, radius_m);
        let ncols = i64::from(self.cols);
        let mut hits: Vec<(usize, f64)> = Vec::new();
        let consider = |slots: &[usize], hits: &mut Vec<(usize, f64)>| {
            for &slot in slots {
                if let Some(e) = self.slots[slot].as_ref() {
                    let d = distance_m(lat, lon, e.pos.lat, e.pos.lon);
                    if d <= radius_m {
                        hits.push((slot, d));
                    }
                }
            }
        };
        let (col_lo, width) = match cols {
            Cols::All => (0, ncols),
            Cols::Range(lo, hi) => (lo, hi - lo + 1),
        };
        let range_cells = (row_hi - row_lo + 1).saturating_mul(width);
        if range_cells as u128 > self.cells.len() as u128 {
            // Sparse index, big range: walk the occupied cells instead.
            for (&(row, col), slots) in &self.cells {
                let row = i64::from(row);
                let col_ok = (i64::from(col) - col_lo).rem_euclid(ncols) < width;
                if row >= row_lo && row <= row_hi && col_ok {
                    consider(slots, &mut hits);
                }
            }
        } else {
            for row in row_lo..=row_hi {
                for c in col_lo..col_lo + width {
                    let key = (row as u32, c.rem_euclid(ncols) as u32);
                    if let Some(slots) = self.cells.get(&key) {
                        consider(slots, &mut hits);
                    }
                }
            }
        }
        let name = |slot: usize| -> &str { self.slots[slot].as_ref().map(|e| e.name.as_str()).unwrap_or("") };
        let cmp = |a: &(usize, f64), b: &(usize, f64)| a.1.total_cmp(&b.1).then_with(|| name(a.0).cmp(name(b.0)));
        if hits.len() > limit {
            hits.select_nth_unstable_by(limit - 1, cmp);
            hits.truncate(limit);
        }
        hits.sort_unstable_by(cmp);
        hits.into_iter()
            .filter_map(|(slot, d)| self.slots[slot].as_ref().map(|e| (e.name.clone(), e.pos, d)))
            .collect()
    }
}

/// Great-circle distance in metres between two points (haversine formula on a
/// sphere of radius [`EARTH_RADIUS_M`]).
pub fn distance_m(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let p1 = lat1.to_radians();
    let p2 = lat2.to_radians();
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    let a = a.clamp(0.0, 1.0);
    2.0 * EARTH_RADIUS_M * a.sqrt().atan2((1.0 - a).sqrt())
}

/// Whether (`lat`, `lon`) is a usable position: both finite, latitude within
/// -90..=90 and longitude within -180..=180 degrees.
pub fn valid_lat_lon(lat: f64, lon: f64) -> bool {
    lat.is_finite() && lon.is_finite() && (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon)
}

#[cfg(test)]
mod tests;

//! Demo data simulators for the live-feed channels: stock quotes (`ticker:*`),
//! football matches (`sports:*`) and a vehicle fleet (`loc:*`).
//!
//! The simulators do no I/O and read no clock: a driver calls `tick(now_ms)` on a
//! timer and publishes the returned [`Publication`]s through the normal publish
//! path. Given the same seed and the same sequence of `now_ms` values, the output
//! is identical. Recommended tick intervals: [`QuoteSim`] ~200 ms, [`MatchSim`]
//! ~1 s, [`FleetSim`] ~1 s.

mod fleet;
mod quotes;
mod sports;

pub use fleet::FleetSim;
pub use quotes::QuoteSim;
pub use sports::MatchSim;

use rand::rngs::StdRng;
use rand::Rng;
use serde_json::Value;

/// One message a simulator wants published.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Publication {
    /// Target channel, e.g. `ticker:ACME`, `sports:cup-final`, `loc:veh-01`.
    pub channel: String,
    /// Message payload (a JSON object), published as-is.
    pub data: Value,
}

/// Rounds `x` to `decimals` decimal places, to keep published numbers short.
fn round_to(x: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    // `+ 0.0` turns -0.0 into 0.0 so that JSON never shows "-0.0".
    (x * f).round() / f + 0.0
}

/// A standard normal sample (Box-Muller), since only `rand` is available.
fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = 1.0 - rng.gen::<f64>(); // (0, 1]
    let u2: f64 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    pub(super) fn is_id(s: &str) -> bool {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    }

    pub(super) fn num(v: &Value, k: &str) -> f64 {
        v[k].as_f64().unwrap_or_else(|| panic!("{k} missing in {v}"))
    }

    #[test]
    fn rounding_has_no_negative_zero() {
        assert_eq!(json!(round_to(-0.001, 2)).to_string(), "0.0");
        assert_eq!(round_to(1.234_567, 2), 1.23);
    }
}

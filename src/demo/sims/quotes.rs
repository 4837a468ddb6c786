//! Stock quote simulator for the `ticker:*` channels: a mean-reverting random
//! walk per fictional symbol, with bid/ask, change since the open and volume.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::{normal, round_to, Publication};

/// Fictional ticker symbols (uppercase A-Z only).
const SYMBOLS: [&str; 20] = [
    "ACME", "GLOBX", "INITECH", "UMBRL", "STARK", "WAYNE", "CYBDN", "HOOLI", "SOYLNT", "TYRELL", "WONKA", "OSCORP",
    "VANDLY", "MASSIVE", "NAKATOMI", "PIEDPI", "DUNMIF", "GRINGOT", "ZORG", "BLUTH",
];

/// Chance that a symbol is updated on a given tick (~6 of 20 per tick).
const QUOTE_UPDATE_P: f64 = 0.3;
/// Longest time step a single tick may simulate, so a stalled driver does not
/// cause a jump.
const QUOTE_MAX_DT_MS: i64 = 60_000;
/// Mean reversion of log price toward its anchor, per second (~6 h half-life
/// scale), so long-running demos stay in a plausible range.
const QUOTE_REVERSION_PER_S: f64 = 1.0 / 21_600.0;
/// A trading "day" (UTC): the opening price and volume reset at its start.
const DAY_MS: i64 = 86_400_000;

/// State of one simulated symbol.
#[derive(Debug, Clone)]
struct Quote {
    /// Ticker symbol.
    symbol: &'static str,
    /// Exact (unrounded) current price.
    price: f64,
    /// Log of the price the walk reverts to.
    anchor_ln: f64,
    /// Volatility of the log price per square-root second.
    vol: f64,
    /// Opening price of the current day, in cents.
    open_cents: i64,
    /// Shares traded since the open.
    volume: u64,
    /// When this symbol last moved (ms), to scale the random step.
    last_ms: i64,
}

impl Quote {
    /// Current price in whole cents (at least 1).
    fn cents(&self) -> i64 {
        ((self.price * 100.0).round() as i64).max(1)
    }

    /// The published quote object.
    fn data(&self) -> Value {
        let cents = self.cents();
        let spread = ((cents as f64 * 0.0004).round() as i64).max(1);
        let change = cents - self.open_cents;
        let open = self.open_cents.max(1) as f64;
        json!({
            "price": cents as f64 / 100.0,
            "change": change as f64 / 100.0,
            "change_pct": round_to(change as f64 / open * 100.0, 2),
            "bid": (cents - spread).max(0) as f64 / 100.0,
            "ask": (cents + spread) as f64 / 100.0,
            "volume": self.volume,
        })
    }
}

/// Stock quote simulator: a mean-reverting geometric random walk per symbol,
/// published on `ticker:<SYMBOL>`. Designed to be ticked every ~200 ms; each
/// tick moves a random subset of the symbols. The first tick (and the first
/// tick of each UTC day, when opening prices reset) publishes every symbol.
#[derive(Debug)]
pub struct QuoteSim {
    /// Deterministic randomness.
    rng: StdRng,
    /// All symbols.
    quotes: Vec<Quote>,
    /// Latest `now_ms` seen; `None` before the first tick.
    last_ms: Option<i64>,
    /// UTC day number of `last_ms`, to detect a new trading day.
    day: i64,
}

impl QuoteSim {
    /// Creates the simulator; `seed` fixes the opening prices and the walk.
    pub fn new(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5107_c0de);
        let quotes = SYMBOLS
            .iter()
            .map(|&symbol| {
                let price = (rng.gen_range(5f64.ln()..600f64.ln())).exp();
                let price = round_to(price, 2);
                Quote {
                    symbol,
                    price,
                    anchor_ln: price.ln(),
                    vol: rng.gen_range(0.0002..0.0008),
                    open_cents: (price * 100.0).round() as i64,
                    volume: 0,
                    last_ms: 0,
                }
            })
            .collect();
        QuoteSim {
            rng,
            quotes,
            last_ms: None,
            day: 0,
        }
    }

    /// Channels this simulator publishes on (`ticker:<SYMBOL>`).
    pub fn channels(&self) -> Vec<String> {
        self.quotes.iter().map(|q| format!("ticker:{}", q.symbol)).collect()
    }

    /// Advances to `now_ms` and returns the quotes that changed.
    pub fn tick(&mut self, now_ms: i64) -> Vec<Publication> {
        let first = self.last_ms.is_none();
        let now = self.last_ms.map_or(now_ms, |l| now_ms.max(l));
        self.last_ms = Some(now);
        let day = now.div_euclid(DAY_MS);
        let new_day = !first && day != self.day;
        self.day = day;
        let mut out = Vec::new();
        for q in &mut self.quotes {
            if first {
                q.last_ms = now;
            }
            if new_day {
                q.open_cents = q.cents();
                q.volume = 0;
            }
            let moved = !first && !new_day && self.rng.gen_bool(QUOTE_UPDATE_P);
            if moved {
                let dt_s = (now - q.last_ms).clamp(0, QUOTE_MAX_DT_MS) as f64 / 1000.0;
                q.last_ms = now;
                let ln = q.price.ln();
                let step =
                    -QUOTE_REVERSION_PER_S * (ln - q.anchor_ln) * dt_s + q.vol * dt_s.sqrt() * normal(&mut self.rng);
                q.price = (ln + step).exp().max(0.01);
                let lots: u64 = self.rng.gen_range(1..=40);
                q.volume += lots * 100;
            }
            if first || new_day || moved {
                out.push(Publication {
                    channel: format!("ticker:{}", q.symbol),
                    data: q.data(),
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::num;
    use super::*;

    fn two_decimals(x: f64) -> bool {
        ((x * 100.0).round() / 100.0 - x).abs() < 1e-9
    }

    #[test]
    fn quotes_are_valid_and_positive() {
        let mut sim = QuoteSim::new(7);
        let chans = sim.channels();
        assert!((18..=24).contains(&chans.len()));
        for c in &chans {
            let sym = c.strip_prefix("ticker:").unwrap();
            assert!(!sym.is_empty() && sym.bytes().all(|b| b.is_ascii_uppercase()), "{c}");
        }
        // Half an hour before a UTC midnight.
        let t0 = 19_676 * DAY_MS - 1_800_000;
        let first = sim.tick(t0);
        assert_eq!(first.len(), chans.len(), "first tick publishes everything");
        let mut min_price = f64::MAX;
        let mut total = 0;
        let mut last_volume = std::collections::HashMap::new();
        // Two simulated hours at 200 ms, crossing the midnight.
        let ticks = 36_000i64;
        let mut saw_reset = false;
        for i in 1..=ticks {
            let pubs = sim.tick(t0 + i * 200);
            total += pubs.len();
            for p in pubs {
                assert!(chans.contains(&p.channel));
                let d = &p.data;
                let obj = d.as_object().unwrap();
                assert_eq!(obj.len(), 6, "{d}");
                let price = num(d, "price");
                let (bid, ask) = (num(d, "bid"), num(d, "ask"));
                let (change, pct) = (num(d, "change"), num(d, "change_pct"));
                assert!(price >= 0.01 && price.is_finite());
                assert!(two_decimals(price) && two_decimals(bid) && two_decimals(ask));
                assert!(two_decimals(change) && two_decimals(pct));
                assert!(bid < price && price < ask, "{d}");
                let open = price - change;
                assert!(open > 0.0);
                assert!((pct - change / open * 100.0).abs() < 0.01, "{d}");
                let vol = d["volume"].as_u64().unwrap();
                let prev = last_volume.insert(p.channel.clone(), vol).unwrap_or(0);
                saw_reset |= vol < prev;
                assert!(vol >= prev || (change == 0.0 && vol == 0), "volume reset only at open");
                min_price = min_price.min(price);
            }
        }
        assert!(min_price > 0.0);
        // ~30% of 20 symbols per tick.
        assert!(saw_reset);
        let per_tick = total as f64 / ticks as f64;
        assert!((4.0..8.0).contains(&per_tick), "{per_tick}");
    }

    #[test]
    fn quotes_are_deterministic() {
        let run = |seed| {
            let mut s = QuoteSim::new(seed);
            (0..50).flat_map(|i| s.tick(i * 200)).collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }
}

//! Rate limits (GCRA): [`Gcra`], eight bytes of state for one connection's requests
//! or writes at a shared [`Rate`]; [`KeyedLimiter`] (the `governor` crate) per client
//! address or account name for the account endpoints.

use std::{
    num::NonZeroU32,
    sync::OnceLock,
    time::{Duration, Instant},
};

use governor::{clock::DefaultClock, DefaultKeyedRateLimiter, Quota, RateLimiter};

/// One clock for every limiter. Creating a clock probes the CPU (CPUID, which a
/// virtual machine traps): per connection that showed in join-storm profiles.
fn clock() -> DefaultClock {
    static CLOCK: OnceLock<DefaultClock> = OnceLock::new();
    CLOCK.get_or_init(DefaultClock::default).clone()
}

/// A quota of `per_second` events a second with bursts of `burst`.
fn quota(per_second: f64, burst: f64) -> Quota {
    let per_second = if per_second.is_finite() && per_second > 0.0 {
        per_second
    } else {
        1.0
    };
    let period = Duration::from_secs_f64(1.0 / per_second).max(Duration::from_nanos(1));
    let burst = NonZeroU32::new(burst.clamp(1.0, u32::MAX as f64) as u32).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(period)
        .expect("a non-zero period")
        .allow_burst(burst)
}

/// `per_second` events a second in bursts of up to `burst`, as GCRA parameters in
/// nanoseconds: the interval between events and the tolerance ahead of it.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    interval: u64,
    tolerance: u64,
}

impl Rate {
    pub fn new(per_second: f64, burst: f64) -> Rate {
        let per_second = if per_second.is_finite() && per_second > 0.0 {
            per_second
        } else {
            1.0
        };
        let interval = (1e9 / per_second).clamp(1.0, u64::MAX as f64 / 4.0) as u64;
        let burst = burst.clamp(1.0, u32::MAX as f64) as u64;
        Rate {
            interval,
            tolerance: interval.saturating_mul(burst - 1),
        }
    }
}

/// One limiter's state (a connection's requests, or its writes): the theoretical
/// arrival time of the next event, in nanoseconds since the process's first use.
#[derive(Debug, Default, Clone, Copy)]
pub struct Gcra(u64);

impl Gcra {
    /// Takes one event at `rate`; false (taking nothing) when over the limit.
    pub fn take(&mut self, rate: Rate) -> bool {
        static EPOCH: OnceLock<Instant> = OnceLock::new();
        let now = EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64;
        let tat = self.0.max(now);
        if tat - now > rate.tolerance {
            return false;
        }
        self.0 = tat + rate.interval;
        true
    }
}

/// Keys tracked before idle ones are swept.
const MAX_KEYS: usize = 100_000;

/// A limiter per key (client address, account name). Memory: at most [`MAX_KEYS`]
/// keys; overflow policy: keys whose budget is full again (idle) are swept first, and
/// a key beyond the bound still gets its own state (the sweep runs again on the next
/// new key), so the map stays near the number of recently active keys.
pub struct KeyedLimiter(DefaultKeyedRateLimiter<String>);

impl KeyedLimiter {
    /// `per_minute` events a minute per key, in bursts of up to `per_minute`.
    pub fn per_minute(per_minute: u32) -> KeyedLimiter {
        let n = per_minute.max(1) as f64;
        KeyedLimiter::per_second(n / 60.0, n)
    }

    /// `per_second` events a second per key, in bursts of up to `burst`.
    pub fn per_second(per_second: f64, burst: f64) -> KeyedLimiter {
        KeyedLimiter(RateLimiter::dashmap_with_clock(quota(per_second, burst), clock()))
    }

    /// `per_hour` events an hour per key, in bursts of up to `per_hour`.
    pub fn per_hour(per_hour: u32) -> KeyedLimiter {
        let n = per_hour.max(1) as f64;
        KeyedLimiter::per_second(n / 3600.0, n)
    }

    /// Takes one event for `key`; false when over the limit.
    pub fn take(&self, key: &str) -> bool {
        self.take_n(key, 1)
    }

    /// Takes `n` events for `key` at once; false (taking nothing) when over the limit.
    pub fn take_n(&self, key: &str, n: u32) -> bool {
        if self.0.len() >= MAX_KEYS {
            self.0.retain_recent();
        }
        let Some(n) = NonZeroU32::new(n) else { return true };
        matches!(self.0.check_key_n(&key.to_string(), n), Ok(Ok(())))
    }
}

/// Open connections per key (client address). Bound: one entry per key with at least
/// one open connection, so the map never outgrows the open connections; overflow
/// policy: a key at `max` gets no new slot (the connection is refused).
pub struct ConnCounts {
    /// 0 = no limit (connections are still counted).
    max: u32,
    counts: std::sync::Mutex<std::collections::HashMap<Box<str>, u32>>,
}

/// One counted connection; dropping it frees its place.
pub struct ConnSlot {
    counts: std::sync::Arc<ConnCounts>,
    key: Box<str>,
}

impl ConnCounts {
    pub fn new(max: u32) -> std::sync::Arc<ConnCounts> {
        std::sync::Arc::new(ConnCounts {
            max,
            counts: Default::default(),
        })
    }

    /// A place for one more connection of `key`, unless it has `max` already.
    pub fn acquire(self: &std::sync::Arc<Self>, key: &str) -> Option<ConnSlot> {
        let mut m = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(key.into()).or_insert(0);
        if self.max > 0 && *n >= self.max {
            return None;
        }
        *n += 1;
        Some(ConnSlot {
            counts: self.clone(),
            key: key.into(),
        })
    }

    /// Open connections counted for `key`.
    pub fn count(&self, key: &str) -> u32 {
        let m = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        m.get(key).copied().unwrap_or(0)
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut m = self.counts.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conn_counts_bound_per_key_and_free_on_drop() {
        let c = ConnCounts::new(2);
        let a1 = c.acquire("a").unwrap();
        let _a2 = c.acquire("a").unwrap();
        assert!(c.acquire("a").is_none());
        assert!(c.acquire("b").is_some(), "other keys unaffected");
        drop(a1);
        assert_eq!(c.count("a"), 1);
        assert!(c.acquire("a").is_some());
        assert_eq!(c.count("b"), 0, "a dropped slot's key is forgotten");
        assert!(c.counts.lock().unwrap().get("b").is_none());
    }

    #[test]
    fn gcra_allows_the_burst() {
        let (mut l, rate) = (Gcra::default(), Rate::new(5.0, 10.0));
        let ok = (0..50).filter(|_| l.take(rate)).count();
        assert!((10..=11).contains(&ok), "{ok}");
        assert_eq!(std::mem::size_of::<Gcra>(), 8);
    }

    #[test]
    fn keyed_takes_several_at_once_or_none() {
        let l = KeyedLimiter::per_second(1.0, 10.0);
        assert!(l.take_n("a", 7));
        assert!(!l.take_n("a", 4), "only 3 left");
        assert!(l.take_n("a", 3));
        assert!(!l.take("a"));
        assert!(!l.take_n("b", 11), "more than the burst");
        assert!(l.take_n("b", 10));
    }

    #[test]
    fn keyed_limits_per_key() {
        let l = KeyedLimiter::per_minute(3);
        assert!(l.take("a") && l.take("a") && l.take("a"));
        assert!(!l.take("a"));
        assert!(l.take("b"));
    }
}

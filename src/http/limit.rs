//! A small keyed rate limiter (token bucket per key) for the account endpoints:
//! failed logins per client address and per account, registrations per address.

use std::{
    collections::HashMap,
    hash::Hash,
    sync::Mutex,
    time::{Duration, Instant},
};

struct Slot {
    tokens: f64,
    at: Instant,
}

/// Token buckets keyed by `K`, each refilling `per_minute` tokens a minute up to
/// `per_minute`. Idle keys are forgotten, so memory stays bounded by the active set.
pub struct KeyedLimiter<K> {
    slots: Mutex<HashMap<K, Slot>>,
    per_minute: f64,
    /// Upper bound on tracked keys; beyond it idle keys are swept first.
    max_keys: usize,
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    pub fn new(per_minute: u32) -> Self {
        KeyedLimiter {
            slots: Mutex::new(HashMap::new()),
            per_minute: per_minute.max(1) as f64,
            max_keys: 100_000,
        }
    }

    fn refill(&self, s: &mut Slot, now: Instant) {
        let elapsed = now.duration_since(s.at).as_secs_f64();
        s.tokens = (s.tokens + elapsed * self.per_minute / 60.0).min(self.per_minute);
        s.at = now;
    }

    /// Would one more event for `key` be within the limit? (Does not consume.)
    pub fn check(&self, key: &K) -> bool {
        let now = Instant::now();
        let mut m = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        match m.get_mut(key) {
            Some(s) => {
                self.refill(s, now);
                s.tokens >= 1.0
            }
            None => true,
        }
    }

    /// Records one event for `key`; false when it exceeded the limit.
    pub fn hit(&self, key: K) -> bool {
        let now = Instant::now();
        let mut m = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= self.max_keys {
            let idle = Duration::from_secs(60);
            m.retain(|_, s| now.duration_since(s.at) < idle);
        }
        let per_minute = self.per_minute;
        let s = m.entry(key).or_insert(Slot {
            tokens: per_minute,
            at: now,
        });
        self.refill(s, now);
        if s.tokens >= 1.0 {
            s.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_key() {
        let l = KeyedLimiter::new(3);
        assert!(l.hit("a") && l.hit("a") && l.hit("a"));
        assert!(!l.hit("a"));
        assert!(!l.check(&"a"));
        assert!(l.check(&"b") && l.hit("b"));
    }
}

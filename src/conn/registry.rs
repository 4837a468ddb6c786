//! [`ConnHandle`] and the [`Registry`] of live connections by user.

use std::{
    collections::HashMap,
    hash::{Hash, Hasher},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, RwLock,
    },
    time::{Duration, Instant},
};

use super::{outbox::Beat, Outbox};
use crate::protocol::{close, UserRef};

/// One WebSocket connection as the hub and the use cases see it.
#[derive(Debug)]
pub struct ConnHandle {
    /// Unique per process.
    pub id: u64,
    pub user: UserRef,
    pub outbox: Arc<Outbox>,
    /// Version of the token the connection authenticated with (revocation).
    pub token_ver: u32,
}

/// One user's connections: almost always one, held without a vector.
enum Conns {
    One(Arc<ConnHandle>),
    Many(Vec<Arc<ConnHandle>>),
}

impl Conns {
    fn as_slice(&self) -> &[Arc<ConnHandle>] {
        match self {
            Conns::One(c) => std::slice::from_ref(c),
            Conns::Many(v) => v,
        }
    }

    fn push(&mut self, conn: Arc<ConnHandle>) {
        match self {
            Conns::One(c) => *self = Conns::Many(vec![c.clone(), conn]),
            Conns::Many(v) => v.push(conn),
        }
    }

    /// Removes connection `id`: (was it there, is the user left with none).
    fn remove(&mut self, id: u64) -> (bool, bool) {
        match self {
            Conns::One(c) => (c.id == id, c.id == id),
            Conns::Many(v) => {
                let before = v.len();
                v.retain(|c| c.id != id);
                let (removed, empty) = (v.len() < before, v.is_empty());
                if v.len() == 1 {
                    let one = v[0].clone();
                    *self = Conns::One(one);
                }
                (removed, empty)
            }
        }
    }
}

type UserConns = HashMap<Arc<str>, Conns>;

/// Registry buckets (locks), so that connects and disconnects of different users
/// rarely contend.
const BUCKETS: usize = 16;

/// user id → live connections, for per-user delivery (`signal`) and shutdown. It holds
/// exactly the authenticated connections: each adds itself once and removes itself
/// when it ends, so it is bounded by the number of open connections.
#[derive(Default)]
pub struct Registry {
    buckets: [RwLock<UserConns>; BUCKETS],
    /// Live connections.
    live: AtomicUsize,
    /// Most live connections since the last [`Registry::take_high_water`].
    high: AtomicUsize,
}

impl Registry {
    fn bucket(&self, user: &str) -> &RwLock<UserConns> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        user.hash(&mut h);
        &self.buckets[(h.finish() % BUCKETS as u64) as usize]
    }

    pub fn add(&self, conn: Arc<ConnHandle>) {
        let mut b = self.bucket(&conn.user.id).write().unwrap_or_else(|p| p.into_inner());
        match b.get_mut(&conn.user.id) {
            Some(conns) => conns.push(conn),
            None => {
                b.insert(conn.user.id.clone(), Conns::One(conn));
            }
        }
        let live = self.live.fetch_add(1, Ordering::Relaxed) + 1;
        self.high.fetch_max(live, Ordering::Relaxed);
    }

    pub fn remove(&self, user: &str, conn_id: u64) {
        let mut b = self.bucket(user).write().unwrap_or_else(|p| p.into_inner());
        if let Some(conns) = b.get_mut(user) {
            let (removed, none_left) = conns.remove(conn_id);
            if removed {
                self.live.fetch_sub(1, Ordering::Relaxed);
            }
            if none_left {
                b.remove(user);
            }
        }
    }

    /// (most live connections since the last call, live connections now); resets the
    /// high-water mark to now.
    pub fn take_high_water(&self) -> (usize, usize) {
        let live = self.live.load(Ordering::Relaxed);
        (self.high.swap(live, Ordering::Relaxed).max(live), live)
    }

    pub fn connections(&self, user: &str) -> Vec<Arc<ConnHandle>> {
        let b = self.bucket(user).read().unwrap_or_else(|p| p.into_inner());
        b.get(user).map(|c| c.as_slice().to_vec()).unwrap_or_default()
    }

    /// Closes the user's connections that authenticated with a token older than
    /// `version` (4001: the token was revoked). How many were closed.
    pub fn revoke(&self, user: &str, version: u32) -> usize {
        let mut n = 0;
        for c in self.connections(user) {
            if c.token_ver < version {
                c.outbox.close(close::UNAUTHORIZED, "token revoked", false);
                n += 1;
            }
        }
        n
    }

    /// Closes every connection of the user (a kick or a ban). How many were closed.
    pub fn close_user(&self, user: &str, code: u16, reason: &str) -> usize {
        let conns = self.connections(user);
        for c in &conns {
            c.outbox.close(code, reason, false);
        }
        conns.len()
    }

    /// Every live connection.
    pub fn all(&self) -> Vec<Arc<ConnHandle>> {
        self.buckets
            .iter()
            .flat_map(|b| {
                b.read()
                    .map(|m| m.values().flat_map(Conns::as_slice).cloned().collect::<Vec<_>>())
                    .unwrap_or_default()
            })
            .collect()
    }

    /// One heartbeat of every live connection (see [`Outbox::heartbeat`]): pings the
    /// live ones and closes those without a sign of life for `timeout`. Returns how
    /// many were closed. Each bucket is copied out first, so no connection's lock is
    /// taken under a registry lock.
    pub fn heartbeat(&self, timeout: Duration) -> usize {
        let now = Instant::now();
        let mut closed = 0;
        let mut batch: Vec<Arc<ConnHandle>> = Vec::new();
        for b in &self.buckets {
            batch.clear();
            batch.extend(
                b.read()
                    .unwrap_or_else(|p| p.into_inner())
                    .values()
                    .flat_map(Conns::as_slice)
                    .cloned(),
            );
            for c in &batch {
                if c.outbox.heartbeat(now, timeout) == Beat::TimedOut {
                    log::debug!(session = c.id; "session {} timed out", c.id);
                    closed += 1;
                }
            }
        }
        closed
    }

    /// Users with at least one live connection.
    pub fn users(&self) -> usize {
        self.buckets
            .iter()
            .map(|b| b.read().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    /// Live connections in total.
    pub fn count(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(id: u64, user: &str) -> Arc<ConnHandle> {
        Arc::new(ConnHandle {
            id,
            user: UserRef::new(user, user),
            outbox: Outbox::new(8, 1024, None),
            token_ver: 0,
        })
    }

    #[test]
    fn add_remove_count() {
        let r = Registry::default();
        r.add(conn(1, "a"));
        r.add(conn(2, "a"));
        r.add(conn(3, "b"));
        assert_eq!(r.count(), 3);
        assert_eq!(r.connections("a").len(), 2);
        r.remove("a", 1);
        r.remove("a", 1);
        assert_eq!(r.count(), 2);
        assert_eq!(r.take_high_water(), (3, 2));
        assert_eq!(r.take_high_water(), (2, 2));
        r.remove("a", 2);
        assert!(r.connections("a").is_empty());
        assert_eq!(r.all().len(), 1);
    }

    #[test]
    fn revoke_closes_older_tokens_only() {
        let r = Registry::default();
        let old = conn(1, "a");
        let new = Arc::new(ConnHandle {
            token_ver: 2,
            ..Arc::try_unwrap(conn(2, "a")).unwrap()
        });
        r.add(old.clone());
        r.add(new.clone());
        assert_eq!(r.revoke("a", 2), 1);
        assert!(old.outbox.is_closing());
        assert!(!new.outbox.is_closing());
    }
}

//! Join snapshots of stored channels, read in batches.
//!
//! A join of a stored channel needs a snapshot read after the connection started
//! holding the channel's live events (so that nothing is missed or sent twice). During
//! a join storm thousands of joins of one channel ask for the same thing; reading it
//! once per join costs a blocking-pool round trip each. So a channel's joins wait in a
//! [`SnapshotQueue`]: when no read is under way one starts at once for every join
//! waiting; joins arriving while it runs wait for the next one (a read that started
//! before a join subscribed could miss what was committed in between). Joins asking
//! the same thing (`since`, `epoch`, `limit`) share one query; one read runs the
//! queries of at most [`MAX_KEYS_PER_READ`] distinct requests.
//!
//! The queue is a pure state machine; [`SnapshotSource`] is where the shard reads
//! (storage in production, a scripted source in tests).

use std::{future::Future, pin::Pin, sync::Arc};

use crate::{
    conn::ConnHandle,
    error::AppResult,
    storage::{
        queries::{self, JoinRead, JoinSnapshot},
        Db,
    },
};

/// Most distinct requests one read serves; joins asking for others wait for the next
/// read.
pub const MAX_KEYS_PER_READ: usize = 16;

/// What a join asks of its snapshot; joins with equal keys share one query.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReadKey {
    pub since: Option<i64>,
    pub epoch: Option<Box<str>>,
    pub limit: i64,
}

/// A join waiting for its snapshot.
pub struct Waiter {
    pub conn: Arc<ConnHandle>,
    pub req_id: Option<i64>,
    pub key: ReadKey,
    /// Snapshots read for this join so far (a join whose held events overflow reads
    /// again).
    pub reads: u8,
}

/// One read: the distinct requests to query, and the joins each result serves
/// (`waiters[i].1` indexes `keys`).
pub struct Batch {
    /// Identifies the read when it ends.
    pub id: u64,
    pub keys: Vec<ReadKey>,
    pub waiters: Vec<(Waiter, usize)>,
}

/// The joins of one channel waiting for a snapshot. Bounded by the channel's joining
/// members (every waiter is one): nothing else queues here.
#[derive(Default)]
pub struct SnapshotQueue {
    waiting: Vec<Waiter>,
    /// The read under way, if any.
    reading: Option<u64>,
    next_id: u64,
}

impl SnapshotQueue {
    /// Queues a join. True when a read should start now ([`SnapshotQueue::start`]).
    pub fn push(&mut self, w: Waiter) -> bool {
        self.waiting.push(w);
        self.reading.is_none()
    }

    /// Starts a read for the waiting joins (as many as ask for at most
    /// [`MAX_KEYS_PER_READ`] distinct things); `None` when a read is under way or
    /// nobody waits.
    pub fn start(&mut self) -> Option<Batch> {
        if self.reading.is_some() || self.waiting.is_empty() {
            return None;
        }
        self.next_id += 1;
        let id = self.next_id;
        let mut keys: Vec<ReadKey> = Vec::new();
        let mut waiters = Vec::new();
        let mut rest = Vec::new();
        for w in self.waiting.drain(..) {
            let k = match keys.iter().position(|k| *k == w.key) {
                Some(k) => k,
                None if keys.len() < MAX_KEYS_PER_READ => {
                    keys.push(w.key.clone());
                    keys.len() - 1
                }
                None => {
                    rest.push(w);
                    continue;
                }
            };
            waiters.push((w, k));
        }
        self.waiting = rest;
        self.reading = Some(id);
        Some(Batch { id, keys, waiters })
    }

    /// Read `id` ended. True when joins wait for another read.
    pub fn finished(&mut self, id: u64) -> bool {
        if self.reading == Some(id) {
            self.reading = None;
        }
        self.reading.is_none() && !self.waiting.is_empty()
    }

    /// Joins waiting (not counting those of the read under way).
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// A read is under way.
    pub fn is_reading(&self) -> bool {
        self.reading.is_some()
    }
}

/// The results of one read, in the order of its keys.
pub type Snapshots = Vec<AppResult<Arc<JoinSnapshot>>>;

/// Where a shard reads join snapshots.
pub trait SnapshotSource: Send + Sync {
    fn read(&self, channel: Arc<str>, keys: Vec<ReadKey>) -> Pin<Box<dyn Future<Output = Snapshots>>>;
}

/// Snapshots read from storage on the blocking pool: one pool connection and one
/// round trip for all the keys of a read.
pub struct DbSnapshots {
    pub db: Db,
    /// Most messages recovered with `since`.
    pub recovery_limit: i64,
    /// Bytes of messages a reply may carry.
    pub budget: usize,
}

impl SnapshotSource for DbSnapshots {
    fn read(&self, channel: Arc<str>, keys: Vec<ReadKey>) -> Pin<Box<dyn Future<Output = Snapshots>>> {
        let (db, recovery_limit, budget) = (self.db.clone(), self.recovery_limit, self.budget);
        let n = keys.len();
        Box::pin(async move {
            let read = db
                .run(move |c| {
                    Ok(keys
                        .iter()
                        .map(|k| {
                            let r = JoinRead {
                                since: k.since,
                                epoch: k.epoch.as_deref(),
                                limit: k.limit,
                                recovery_limit,
                                budget,
                            };
                            queries::join_snapshot(c, &channel, &r).map(Arc::new)
                        })
                        .collect::<Snapshots>())
                })
                .await;
            match read {
                Ok(v) => v,
                Err(e) => (0..n).map(|_| Err(e.clone())).collect(),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{conn::Outbox, protocol::UserRef};

    fn waiter(id: u64, since: Option<i64>) -> Waiter {
        Waiter {
            conn: Arc::new(ConnHandle {
                token_ver: 0,
                id,
                user: UserRef::new(id.to_string(), "u"),
                outbox: Outbox::new(1 << 16, 1 << 20, None),
            }),
            req_id: Some(id as i64),
            key: ReadKey {
                since,
                epoch: None,
                limit: 50,
            },
            reads: 0,
        }
    }

    #[test]
    fn joins_arriving_during_a_read_share_the_next_one() {
        let mut q = SnapshotQueue::default();
        assert!(q.push(waiter(1, None)));
        let b1 = q.start().unwrap();
        assert_eq!((b1.keys.len(), b1.waiters.len()), (1, 1));
        // While it runs, joins only queue.
        for i in 2..=100 {
            assert!(!q.push(waiter(i, None)));
        }
        assert!(q.start().is_none());
        assert!(q.finished(b1.id));
        let b2 = q.start().unwrap();
        assert_eq!((b2.keys.len(), b2.waiters.len()), (1, 99));
        assert!(!q.finished(b2.id));
        assert!(q.start().is_none());
    }

    #[test]
    fn distinct_requests_are_queried_once_each_and_capped_per_read() {
        let mut q = SnapshotQueue::default();
        for i in 0..40u64 {
            q.push(waiter(i, Some((i % 20) as i64)));
        }
        let b = q.start().unwrap();
        assert_eq!(b.keys.len(), MAX_KEYS_PER_READ);
        // Every waiter served points at its own request.
        for (w, k) in &b.waiters {
            assert_eq!(b.keys[*k], w.key);
        }
        assert_eq!(b.waiters.len(), 2 * MAX_KEYS_PER_READ);
        assert_eq!(q.waiting(), 40 - 2 * MAX_KEYS_PER_READ);
        assert!(q.finished(b.id));
        let b2 = q.start().unwrap();
        assert_eq!(b2.keys.len(), 20 - MAX_KEYS_PER_READ);
    }

    #[test]
    fn a_stale_read_ending_does_not_end_the_current_one() {
        let mut q = SnapshotQueue::default();
        q.push(waiter(1, None));
        let b = q.start().unwrap();
        assert!(!q.finished(b.id + 7));
        assert!(q.is_reading());
        assert!(!q.finished(b.id));
        assert!(!q.is_reading());
    }
}

//! The hub: shards (actix actors, each on its own thread) own channels, membership,
//! presence, last values and fan-out. A channel always lives on the shard chosen by
//! the hash of its name, so everything about one channel is ordered by one mailbox.
//!
//! Fan-out serializes each event once and pushes the shared [`bytes::Bytes`] into
//! every member's bounded [`Outbox`]; the shard never waits on a client.

pub mod shard;

use std::{
    collections::HashMap,
    hash::{Hash, Hasher},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, RwLock,
    },
};

use actix::{Addr, Message as ActixMessage};
use serde_json::value::RawValue;

pub use shard::Shard;

use crate::{
    bus::{Bus, BusEvent},
    channels::Channel,
    protocol::{Message, PresenceMember, UserRef},
    session::outbox::Outbox,
    storage::{queries::JoinSnapshot, writer::Ack},
};

/// One WebSocket connection as the hub sees it.
#[derive(Debug)]
pub struct ConnHandle {
    /// Unique per process.
    pub id: u64,
    pub user: UserRef,
    pub outbox: Arc<Outbox>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Outbox")
    }
}

/// Handle to every shard plus the user → connections registry and the bus to other
/// nodes.
#[derive(Clone)]
pub struct Hub {
    shards: Arc<[Addr<Shard>]>,
    pub registry: Arc<Registry>,
    /// Set once when the node joins a cluster (`REDIS_URL`).
    bus: BusCell,
}

/// The bus, shared by the hub, its shards and the writer; empty on a single node.
pub type BusCell = Arc<std::sync::OnceLock<Bus>>;

impl Hub {
    pub fn new(shards: Vec<Addr<Shard>>, bus: BusCell) -> Hub {
        Hub {
            shards: shards.into(),
            registry: Arc::new(Registry::default()),
            bus,
        }
    }

    /// Sends an event to the other nodes (no-op on a single node).
    pub fn publish(&self, ev: BusEvent) {
        if let Some(b) = self.bus.get() {
            b.publish(ev);
        }
    }

    /// Is this node part of a cluster?
    pub fn clustered(&self) -> bool {
        self.bus.get().is_some_and(Bus::enabled)
    }

    /// Asks every shard to re-read what its members may have missed (after the bus
    /// was disconnected).
    pub fn resync(&self) {
        for s in self.shards.iter() {
            s.do_send(Resync);
        }
    }

    /// Index of the shard owning `channel`.
    pub fn shard_index(&self, channel: &str) -> usize {
        self.index(channel)
    }

    fn index(&self, channel: &str) -> usize {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        channel.hash(&mut h);
        (h.finish() % self.shards.len() as u64) as usize
    }

    /// The shard owning `channel`.
    pub fn shard(&self, channel: &str) -> &Addr<Shard> {
        &self.shards[self.index(channel)]
    }

    pub fn shards(&self) -> &[Addr<Shard>] {
        &self.shards
    }

    /// Hands committed writes to their shards (one mailbox message per shard).
    pub fn deliver(&self, commits: Vec<Commit>) {
        if self.shards.len() == 1 {
            self.shards[0].do_send(Committed(commits));
            return;
        }
        let mut per: Vec<Vec<Commit>> = (0..self.shards.len()).map(|_| Vec::new()).collect();
        for c in commits {
            per[self.index(c.channel())].push(c);
        }
        for (i, v) in per.into_iter().enumerate() {
            if !v.is_empty() {
                self.shards[i].do_send(Committed(v));
            }
        }
    }
}

type UserConns = HashMap<Arc<str>, Vec<Arc<ConnHandle>>>;

/// user id → live connections, for `signal` and per-user delivery.
#[derive(Default)]
pub struct Registry {
    buckets: [RwLock<UserConns>; 16],
    /// Live connections.
    live: AtomicUsize,
    /// Most live connections since the last [`Registry::take_high_water`].
    high: AtomicUsize,
}

impl Registry {
    fn bucket(&self, user: &str) -> &RwLock<UserConns> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        user.hash(&mut h);
        &self.buckets[(h.finish() % 16) as usize]
    }

    pub fn add(&self, conn: Arc<ConnHandle>) {
        let mut b = self.bucket(&conn.user.id).write().unwrap_or_else(|p| p.into_inner());
        b.entry(conn.user.id.clone()).or_default().push(conn);
        let live = self.live.fetch_add(1, Ordering::Relaxed) + 1;
        self.high.fetch_max(live, Ordering::Relaxed);
    }

    pub fn remove(&self, user: &str, conn_id: u64) {
        let mut b = self.bucket(user).write().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = b.get_mut(user) {
            let before = v.len();
            v.retain(|c| c.id != conn_id);
            if v.len() < before {
                self.live.fetch_sub(1, Ordering::Relaxed);
            }
            if v.is_empty() {
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
        b.get(user).cloned().unwrap_or_default()
    }

    /// Every live connection.
    pub fn all(&self) -> Vec<Arc<ConnHandle>> {
        self.buckets
            .iter()
            .flat_map(|b| {
                b.read()
                    .map(|m| m.values().flatten().cloned().collect::<Vec<_>>())
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Live connections in total.
    pub fn count(&self) -> usize {
        self.buckets
            .iter()
            .map(|b| b.read().map(|m| m.values().map(Vec::len).sum::<usize>()).unwrap_or(0))
            .sum()
    }
}

/// A write the writer committed, to be fanned out and acknowledged by its shard.
pub enum Commit {
    Message {
        msg: Message,
        ack: Ack,
    },
    Edit {
        channel: Arc<str>,
        seq: i64,
        from: UserRef,
        data: Arc<RawValue>,
        edited_ts: i64,
        ack: Ack,
    },
    Delete {
        channel: Arc<str>,
        seq: i64,
        ack: Ack,
    },
}

impl Commit {
    pub fn channel(&self) -> &str {
        match self {
            Commit::Message { msg, .. } => &msg.channel,
            Commit::Edit { channel, .. } | Commit::Delete { channel, .. } => channel,
        }
    }
}

/// Commits of one writer batch for one shard, in commit order.
#[derive(ActixMessage)]
#[rtype(result = "()")]
pub struct Committed(pub Vec<Commit>);

/// What the shard did with a [`Subscribe`].
#[derive(Debug, PartialEq, Eq)]
pub enum Subscribed {
    /// Stored channel: the member is buffering; read the snapshot, then send [`JoinComplete`].
    NeedsSnapshot,
    /// In-memory channel: the shard already replied.
    Replied,
}

/// Add a connection to a channel (buffering until the join completes).
#[derive(ActixMessage)]
#[rtype(result = "Subscribed")]
pub struct Subscribe {
    pub conn: Arc<ConnHandle>,
    pub channel: Channel,
    /// Request id of the `join`, for in-memory channels the shard answers itself.
    pub req_id: Option<i64>,
    pub since: Option<i64>,
    pub epoch: Option<String>,
}

/// The snapshot of a stored channel for a subscribing connection.
#[derive(ActixMessage)]
#[rtype(result = "()")]
pub struct JoinComplete {
    pub conn_id: u64,
    pub channel: Arc<str>,
    pub req_id: Option<i64>,
    pub snapshot: JoinSnapshot,
}

/// Remove a connection from channels (leave, failed join, disconnect).
#[derive(ActixMessage)]
#[rtype(result = "()")]
pub struct Unsubscribe {
    pub conn_id: u64,
    pub channels: Vec<Arc<str>>,
}

/// A typing indicator; the shard answers the request (forbidden when not joined).
#[derive(ActixMessage)]
#[rtype(result = "()")]
pub struct Typing {
    pub conn_id: u64,
    pub channel: Arc<str>,
    pub req_id: Option<i64>,
    pub outbox: Arc<Outbox>,
    pub user: UserRef,
}

/// The present members of a channel.
#[derive(ActixMessage)]
#[rtype(result = "Vec<PresenceMember>")]
pub struct PresenceQuery {
    pub channel: Arc<str>,
}

/// A publish into an in-memory last-value channel (`ticker:`, `loc:`).
#[derive(ActixMessage)]
#[rtype(result = "()")]
pub struct FeedPublish {
    pub channel: Channel,
    pub from: UserRef,
    pub data: Arc<RawValue>,
    pub client_id: Option<Arc<str>>,
    pub ack: Ack,
}

/// Seed last values (at start, from storage).
#[derive(ActixMessage)]
#[rtype(result = "()")]
pub struct SeedLastValues(pub Vec<Message>);

/// An event from another node.
#[derive(ActixMessage)]
#[rtype(result = "()")]
pub struct Remote {
    /// The sending node's id.
    pub node: Arc<str>,
    pub ev: BusEvent,
}

/// Re-read stored channels from the database (events may have been missed).
#[derive(ActixMessage)]
#[rtype(result = "()")]
pub struct Resync;

/// Counters for `/metrics`.
#[derive(ActixMessage)]
#[rtype(result = "ShardStats")]
pub struct Stats;

#[derive(Debug, Default, Clone, Copy)]
pub struct ShardStats {
    pub channels: usize,
    pub subscriptions: usize,
    pub messages_out: u64,
    pub frames_out: u64,
}

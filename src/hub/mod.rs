//! The hub: shards (actix actors, each on its own thread) own channels, membership,
//! presence, last values and fan-out. A channel always lives on the shard chosen by
//! the hash of its name, so everything about one channel is ordered by one mailbox.
//!
//! * [`shard`] – the actor: its handlers drive the state machines below.
//! * [`channel`] – per-channel state: members (with the join buffer) and fan-out.
//! * [`presence`] – local and cluster-wide presence (pure state machine).
//! * [`ordering`] – in-order, exactly-once delivery with gap fill (pure state machine).
//! * [`snapshots`] – join snapshots, read in batches per channel.
//! * [`router`] – where committed writes (from the writer) and other nodes' events
//!   (from the broker) enter the hub.
//!
//! Fan-out serializes each event once and pushes the shared [`bytes::Bytes`] into
//! every member's bounded outbox; the shard never waits on a client.

mod channel;
pub mod ordering;
pub mod presence;
pub mod router;
pub mod shard;
pub mod snapshots;

use std::{
    collections::HashSet,
    hash::{Hash, Hasher},
    sync::{Arc, Mutex},
    time::Duration,
};

use actix::{Actor, Addr, Arbiter, Message as ActixMessage};
use serde_json::value::RawValue;

pub use shard::Shard;
use snapshots::{DbSnapshots, SnapshotSource};

use crate::{
    auth::TokenVersions,
    broker::{Broker, BusEvent},
    channels::Channel,
    conn::{Ack, ConnHandle, Registry},
    error::AppError,
    feeds::Feeds,
    protocol::close,
    protocol::reply_err,
    protocol::{Message, PublishOk, UserRef},
    storage::{queries::Change, writer::Commit, Db},
};

/// Messages a shard's mailbox holds. Overflow policy: senders use `try_send` (and
/// answer `unavailable`, or resync from storage) or `send().await` (wait for room);
/// nothing is queued past this bound.
pub const SHARD_MAILBOX: usize = 1 << 16;

/// Most channels one resync request names; beyond it every stored channel of the
/// shard is re-read.
const RESYNC_MAX_CHANNELS: usize = 1024;

/// Stored channels a shard is asked to re-read from storage, because events for them
/// could not be queued (a full mailbox) or were missed (the broker reconnected). The
/// shard takes the requests on its next tick.
#[derive(Default)]
pub struct ResyncRequests(Mutex<(bool, HashSet<Arc<str>>)>);

impl ResyncRequests {
    /// Re-read `channel`. Bounded by [`RESYNC_MAX_CHANNELS`]: past it, everything.
    pub fn channel(&self, channel: Arc<str>) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if g.0 {
            return;
        }
        if g.1.len() >= RESYNC_MAX_CHANNELS {
            g.0 = true;
            g.1 = HashSet::new();
        } else {
            g.1.insert(channel);
        }
    }

    /// Re-read every stored channel.
    pub fn all(&self) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        g.0 = true;
        g.1 = HashSet::new();
    }

    /// (everything?, the channels) requested since the last call.
    fn take(&self) -> (bool, HashSet<Arc<str>>) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        (std::mem::take(&mut g.0), std::mem::take(&mut g.1))
    }
}

/// What the shards need, fixed at start.
pub struct HubConfig {
    /// Number of shards (threads).
    pub shards: usize,
    /// Epoch of in-memory channels: changes with every process start.
    pub epoch: Arc<str>,
    /// How often presence is re-announced to other nodes.
    pub presence_refresh: Duration,
    /// The accounts' token versions ([`crate::auth::Auth::versions`]), raised by
    /// revocations from any node.
    pub versions: Arc<TokenVersions>,
    /// Most messages a join recovers with `since`.
    pub recovery_limit: i64,
    /// Bytes of messages a join reply may carry.
    pub reply_budget: usize,
}

/// Handle to every shard plus the user → connections registry and the broker to
/// other nodes. Cheap to clone.
#[derive(Clone)]
pub struct Hub {
    shards: Arc<[Addr<Shard>]>,
    resync: Arc<[Arc<ResyncRequests>]>,
    pub registry: Arc<Registry>,
    broker: Arc<dyn Broker>,
    versions: Arc<TokenVersions>,
}

impl Hub {
    /// Starts the shards, each on an arbiter (thread) of its own; the arbiters must be
    /// kept until shutdown.
    pub fn start(cfg: HubConfig, broker: Arc<dyn Broker>, feeds: Arc<Feeds>, db: Db) -> (Hub, Vec<Arbiter>) {
        let mut arbiters = Vec::new();
        let mut shards = Vec::new();
        let mut resync = Vec::new();
        let snapshots: Arc<dyn SnapshotSource> = Arc::new(DbSnapshots {
            db: db.clone(),
            recovery_limit: cfg.recovery_limit,
            budget: cfg.reply_budget,
        });
        for _ in 0..cfg.shards.max(1) {
            let arb = Arbiter::new();
            let requests = Arc::new(ResyncRequests::default());
            let (e, f, d, b, r) = (
                cfg.epoch.clone(),
                feeds.clone(),
                db.clone(),
                broker.clone(),
                requests.clone(),
            );
            let (refresh, snaps) = (cfg.presence_refresh, snapshots.clone());
            shards.push(Shard::start_in_arbiter(&arb.handle(), move |_| {
                Shard::new(e, f, d, b, r, refresh, snaps)
            }));
            resync.push(requests);
            arbiters.push(arb);
        }
        let hub = Hub {
            shards: shards.into(),
            resync: resync.into(),
            registry: Arc::new(Registry::default()),
            broker,
            versions: cfg.versions,
        };
        (hub, arbiters)
    }

    /// Are there other nodes?
    pub fn clustered(&self) -> bool {
        self.broker.clustered()
    }

    /// Sends an event to the other nodes (nobody hears it on a single node).
    pub fn publish(&self, ev: BusEvent) {
        self.broker.publish(ev);
    }

    /// Revokes the user's tokens older than `version` on every node: they are refused
    /// from now on and their connections are closed with 4001.
    pub fn revoke(&self, user: &Arc<str>, version: u32) {
        self.revoke_local(user, version);
        self.publish(BusEvent::Revoke {
            user: user.clone(),
            version,
        });
    }

    /// [`Hub::revoke`] on this node only (a revocation from another node).
    fn revoke_local(&self, user: &str, version: u32) {
        self.versions.raise(user, version);
        let n = self.registry.revoke(user, version);
        if n > 0 {
            log::info!("closed {n} connection(s) of user {user}: token revoked");
        }
    }

    /// Applies a change to a user's right to connect, read from the change log every
    /// node polls (`storage::queries::revocations_after`); idempotent.
    pub fn apply_change(&self, user: &str, change: Change) {
        match change {
            Change::Revoke(v) => self.revoke_local(user, v),
            Change::Ban => {
                self.versions.set_banned(user, true);
                let n = self.registry.close_user(user, close::KICKED, "banned");
                if n > 0 {
                    log::info!("closed {n} connection(s) of banned user {user}");
                }
            }
            Change::Unban => {
                self.versions.set_banned(user, false);
            }
            Change::Unmember(channel) => self.remove_from_channel(user, &channel),
        }
    }

    /// Takes the user's connections on this node out of `channel` (removed from its
    /// members), telling each with a `removed` event.
    pub fn remove_from_channel(&self, user: &str, channel: &str) {
        let channel: Arc<str> = channel.into();
        let frame = crate::protocol::removed_event(&channel);
        for c in self.registry.connections(user) {
            c.outbox.push(frame.clone());
            self.unsubscribe(c.id, [channel.clone()]);
        }
    }

    /// Index of the shard owning `channel`.
    pub fn shard_index(&self, channel: &str) -> usize {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        channel.hash(&mut h);
        (h.finish() % self.shards.len() as u64) as usize
    }

    /// The shard owning `channel`.
    pub fn shard(&self, channel: &str) -> &Addr<Shard> {
        &self.shards[self.shard_index(channel)]
    }

    pub fn shards(&self) -> &[Addr<Shard>] {
        &self.shards
    }

    /// Asks the shard owning `channel` to re-read it from storage.
    fn resync_channel(&self, channel: Arc<str>) {
        self.resync[self.shard_index(&channel)].channel(channel);
    }

    /// Asks every shard to re-read every stored channel its members watch.
    pub fn resync_all(&self) {
        for r in self.resync.iter() {
            r.all();
        }
    }

    /// Adds a connection to a channel; the shard answers the `join` itself. Overflow
    /// policy: where the shard's mailbox is full the message waits for room in a task
    /// of its own. Must run inside the actix runtime.
    pub fn subscribe(&self, sub: Subscribe) {
        let shard = self.shard(&sub.channel.full).clone();
        match shard.try_send(sub) {
            Ok(()) => {}
            Err(actix::dev::SendError::Full(sub)) => {
                actix::spawn(async move {
                    let (outbox, req_id) = (sub.conn.outbox.clone(), sub.req_id);
                    if shard.send(sub).await.is_err() {
                        outbox.push(reply_err(req_id, &AppError::unavailable("hub unavailable")));
                    }
                });
            }
            Err(actix::dev::SendError::Closed(sub)) => {
                sub.conn
                    .outbox
                    .push(reply_err(sub.req_id, &AppError::unavailable("hub unavailable")));
            }
        }
    }

    /// Removes a connection from channels (leave, failed join, disconnect): one
    /// message per shard, queued at once. Overflow policy: where a mailbox is full
    /// the message waits for room in a task of its own, so a membership is never
    /// leaked. Must run inside the actix runtime.
    pub fn unsubscribe(&self, conn_id: u64, channels: impl IntoIterator<Item = Arc<str>>) {
        let mut per_shard: Vec<Vec<Arc<str>>> = vec![Vec::new(); self.shards.len()];
        for name in channels {
            per_shard[self.shard_index(&name)].push(name);
        }
        for (i, channels) in per_shard.into_iter().enumerate() {
            if channels.is_empty() {
                continue;
            }
            if let Err(actix::dev::SendError::Full(msg)) = self.shards[i].try_send(Unsubscribe { conn_id, channels }) {
                let shard = self.shards[i].clone();
                actix::spawn(async move {
                    let _ = shard.send(msg).await;
                });
            }
        }
    }
}

/// Commits of one writer batch for one shard, in commit order.
#[derive(ActixMessage)]
#[rtype(result = "()")]
pub struct Committed {
    pub commits: Vec<Commit>,
    /// When the batch was committed (for `chat_commit_delivery_seconds`).
    pub at: std::time::Instant,
}

/// Add a connection to a channel and answer its `join` (request `req_id`) on the
/// connection's outbox: at once for an in-memory channel; for a stored one after its
/// snapshot is read, holding live events meanwhile.
#[derive(ActixMessage)]
#[rtype(result = "()")]
pub struct Subscribe {
    pub conn: Arc<ConnHandle>,
    pub channel: Channel,
    pub req_id: Option<i64>,
    pub since: Option<i64>,
    pub epoch: Option<String>,
    /// Newest messages returned without `since`.
    pub limit: i64,
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
    pub user: UserRef,
    pub ack: Ack<crate::protocol::Empty>,
}

/// A page of the present members of a channel, ordered by (name, id).
#[derive(ActixMessage)]
#[rtype(result = "presence::Page")]
pub struct PresencePage {
    pub channel: Arc<str>,
    /// Start after this member (from the start when `None`).
    pub after: Option<presence::Cursor>,
    pub limit: usize,
}

/// A publish into an in-memory last-value channel (`ticker:`, `loc:`).
#[derive(ActixMessage)]
#[rtype(result = "()")]
pub struct FeedPublish {
    pub channel: Channel,
    pub from: UserRef,
    pub data: Arc<RawValue>,
    pub client_id: Option<Arc<str>>,
    pub ack: Ack<PublishOk>,
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

/// The shard's figures, for `/metrics` (its gauges; the counters of `/metrics` are
/// in [`crate::metrics`]) and the admin console.
#[derive(ActixMessage)]
#[rtype(result = "ShardStats")]
pub struct Stats;

/// The `n` channels of a shard with the most members: (channel, members, top seq).
#[derive(ActixMessage)]
#[rtype(result = "Vec<(Arc<str>, usize, i64)>")]
pub struct Busiest(pub usize);

#[derive(Debug, Default, Clone, Copy)]
pub struct ShardStats {
    pub channels: usize,
    pub subscriptions: usize,
    /// Messages fanned out (once per message).
    pub messages_out: u64,
    /// Frames pushed to connection queues.
    pub frames_out: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resync_requests_are_bounded() {
        let r = ResyncRequests::default();
        r.channel("room:a".into());
        r.channel("room:a".into());
        assert_eq!(r.take(), (false, HashSet::from(["room:a".into()])));
        assert_eq!(r.take(), (false, HashSet::new()));
        for i in 0..=RESYNC_MAX_CHANNELS {
            r.channel(format!("room:{i}").into());
        }
        let (all, names) = r.take();
        assert!(all && names.is_empty());
    }
}

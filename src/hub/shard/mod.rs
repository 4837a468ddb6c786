//! One hub shard: the actor owning the channels whose name hashes to it. Its handlers
//! drive the per-channel state machines ([`super::presence`], [`super::ordering`],
//! the join buffer of [`super::channel`]) and do the I/O they ask for: fan-out,
//! storage reads, timers, announcements to other nodes ([`remote`]: what comes from
//! and goes to the other nodes of a cluster).

mod join;
mod remote;
#[cfg(test)]
mod tests;

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use actix::prelude::*;
use bytes::Bytes;
use serde_json::value::RawValue;

use super::{
    channel::{ChannelState, Kind},
    ordering::Next,
    presence::{Flush, Presence},
    snapshots::SnapshotSource,
    *,
};
use crate::{
    broker::{Broker, BusEvent},
    channels::{Namespace, Storage},
    error::AppError,
    feeds::Feeds,
    protocol::{
        message_event, now_ms, presence_count_event, presence_event, typing_event, Empty, Message, PublishOk, UserRef,
    },
    storage::{queries, Db},
};

/// How often coalesced presence diffs are flushed and resync requests taken.
const TICK: Duration = Duration::from_millis(100);

/// Members listed in a join reply (the rest are paged with `presence`).
const JOIN_PRESENCE: usize = 100;

/// The shard actor.
pub struct Shard {
    channels: HashMap<Arc<str>, ChannelState>,
    /// Channels with presence changes waiting for the next flush.
    dirty: HashSet<Arc<str>>,
    /// Epoch of in-memory channels: changes with every process start.
    epoch: Arc<str>,
    feeds: Arc<Feeds>,
    stats: ShardStats,
    /// Reads missed stored messages (gap fills, resyncs).
    db: Db,
    /// Other nodes (committed writes, feed values, typing and presence go there).
    broker: Arc<dyn Broker>,
    /// Channels to re-read from storage, asked for from outside the mailbox.
    resync: Arc<ResyncRequests>,
    /// How often presence lists are re-announced to other nodes; a node silent for
    /// three periods is taken as gone.
    presence_refresh: Duration,
    /// Where join snapshots are read.
    snapshots: Arc<dyn SnapshotSource>,
}

impl Shard {
    pub fn new(
        epoch: Arc<str>,
        feeds: Arc<Feeds>,
        db: Db,
        broker: Arc<dyn Broker>,
        resync: Arc<ResyncRequests>,
        presence_refresh: Duration,
        snapshots: Arc<dyn SnapshotSource>,
    ) -> Shard {
        Shard {
            channels: HashMap::new(),
            dirty: HashSet::new(),
            epoch,
            feeds,
            stats: ShardStats::default(),
            db,
            broker,
            resync,
            presence_refresh,
            snapshots,
        }
    }

    fn channel(&mut self, name: &Arc<str>, ns: Namespace) -> &mut ChannelState {
        self.channels
            .entry(name.clone())
            .or_insert_with(|| ChannelState::new(name.clone(), ns))
    }

    /// Pushes an unsequenced event (edit, delete, typing, presence) to a channel's
    /// members.
    fn broadcast(&mut self, channel: &str, kind: Kind, frame: &Bytes, skip_user: Option<&str>) {
        let Some(ch) = self.channels.get_mut(channel) else {
            return;
        };
        let dead = ch.fan_out(&mut self.stats, kind, frame, skip_user);
        self.remove_dead(channel, dead);
    }

    /// Members whose connection closed are dropped at once (their session also
    /// unsubscribes them; whichever comes first wins).
    fn remove_dead(&mut self, channel: &str, dead: Vec<u64>) {
        if dead.is_empty() {
            return;
        }
        let name: Arc<str> = channel.into();
        for id in dead {
            self.remove_member(id, &name);
        }
    }

    fn remove_member(&mut self, conn_id: u64, name: &Arc<str>) {
        let Some(ch) = self.channels.get_mut(name) else { return };
        if ch.remove_member(conn_id) {
            self.dirty.insert(name.clone());
        } else if ch.is_idle() {
            self.channels.remove(name);
        }
    }

    /// Queues a committed message of a stored channel for in-order delivery; returns
    /// its channel when there is something to drain.
    fn offer_stored(&mut self, ns: Namespace, m: Message) -> Option<Arc<str>> {
        if ns.is_feed() {
            self.feeds.seen(&m.channel);
        }
        let ch = self.channels.get_mut(&m.channel)?;
        let name = ch.name.clone();
        ch.order.offer(m).then_some(name)
    }

    /// Fans out the messages that follow what was delivered, then does what the
    /// channel's ordering asks about a gap (a timer, a storage read, giving up).
    fn drain(&mut self, ctx: &mut Context<Self>, name: &Arc<str>) {
        loop {
            let Some(ch) = self.channels.get_mut(name) else { return };
            let ready = ch.order.ready();
            if !ready.is_empty() {
                let frames: Vec<(i64, Bytes)> = ready.iter().map(|m| (m.seq, message_event(m))).collect();
                self.stats.messages_out += frames.len() as u64;
                let dead = ch.fan_out_seq(&mut self.stats, &frames);
                self.remove_dead(name, dead);
            }
            let Some(ch) = self.channels.get_mut(name) else { return };
            match ch.order.next(Instant::now()) {
                Next::Nothing => return,
                Next::Wait(d) => {
                    let name = name.clone();
                    ctx.run_later(d, move |act, ctx| {
                        if let Some(ch) = act.channels.get_mut(&name) {
                            ch.order.timer_fired();
                            act.drain(ctx, &name);
                        }
                    });
                    return;
                }
                Next::Read { after, limit } => {
                    crate::metrics::get().gap_fills.inc();
                    return self.read(ctx, name.clone(), after, limit);
                }
                Next::Skipped { from, to } => {
                    log::warn!("{name}: messages {from}..={to} are in no storage read; skipped");
                    crate::metrics::get().gaps_skipped.inc();
                }
            }
        }
    }

    /// Reads stored messages after `after` for a gap fill or a resync.
    fn read(&mut self, ctx: &mut Context<Self>, name: Arc<str>, after: i64, limit: i64) {
        let db = self.db.clone();
        let n2 = name.clone();
        let read = async move { db.run(move |c| queries::messages_after(c, &n2, after, limit)).await };
        ctx.spawn(actix::fut::wrap_future::<_, Self>(read).map(move |r, act, ctx| {
            let Some(ch) = act.channels.get_mut(&name) else { return };
            let r = r.map_err(|e| log::warn!("reading {name} after {after} failed: {}", e.message));
            ch.order.filled(r, limit, Instant::now());
            act.drain(ctx, &name);
        }));
    }

    /// A new value of an in-memory channel: next local seq, last value, fan-out.
    fn feed_value(
        &mut self,
        name: &Arc<str>,
        ns: Namespace,
        from: UserRef,
        data: Arc<RawValue>,
        client_id: Option<Arc<str>>,
    ) -> Message {
        let ch = self.channel(name, ns);
        ch.seq += 1;
        let m = Message {
            channel: name.clone(),
            seq: ch.seq,
            ts: now_ms(),
            from,
            data,
            client_id,
            edited_ts: None,
            deleted: false,
        };
        let frame = message_event(&m);
        ch.last = Some(m.clone());
        self.feeds.seen(name);
        self.stats.messages_out += 1;
        self.broadcast(name, Kind::Seq(m.seq), &frame, None);
        m
    }

    /// Every tick: take resync requests, flush coalesced presence.
    fn tick(&mut self, ctx: &mut Context<Self>) {
        let (all, names) = self.resync.take();
        if all || !names.is_empty() {
            let stored: Vec<Arc<str>> = self
                .channels
                .values()
                .filter(|c| c.ns.policy().storage == Storage::Every && (all || names.contains(&c.name)))
                .map(|c| c.name.clone())
                .collect();
            for name in stored {
                if let Some(ch) = self.channels.get_mut(&name) {
                    ch.order.resync();
                }
                self.drain(ctx, &name);
            }
        }
        self.flush_presence();
    }

    fn flush_presence(&mut self) {
        let now = Instant::now();
        let mut later = Vec::new();
        for name in std::mem::take(&mut self.dirty) {
            let Some(ch) = self.channels.get_mut(&name) else {
                continue;
            };
            if let Some((joined, left)) = ch.presence.take_announcement() {
                self.broker.publish(BusEvent::Presence {
                    channel: name.clone(),
                    joined,
                    left,
                });
            }
            let frame = match ch.presence.flush(now) {
                Flush::Nothing => None,
                Flush::Diff { joined, left, count } => Some(presence_event(&name, &joined, &left, count)),
                Flush::Count(count) => Some(presence_count_event(&name, count)),
                Flush::Later => {
                    later.push(name.clone());
                    None
                }
            };
            if let Some(frame) = frame {
                let dead = ch.fan_out(&mut self.stats, Kind::Ephemeral, &frame, None);
                self.remove_dead(&name, dead);
            }
            if self.channels.get(&name).is_some_and(ChannelState::is_idle) {
                self.channels.remove(&name);
            }
        }
        self.dirty.extend(later);
    }
}

impl Actor for Shard {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(SHARD_MAILBOX);
        ctx.run_interval(TICK, |act, ctx| act.tick(ctx));
        if self.broker.clustered() {
            ctx.run_interval(self.presence_refresh, |act, _| act.refresh_presence());
        }
    }
}

impl Handler<Unsubscribe> for Shard {
    type Result = ();

    fn handle(&mut self, msg: Unsubscribe, _: &mut Self::Context) {
        for name in &msg.channels {
            self.remove_member(msg.conn_id, name);
        }
    }
}

impl Handler<Committed> for Shard {
    type Result = ();

    fn handle(&mut self, msg: Committed, ctx: &mut Self::Context) {
        // Messages of one batch are queued first and fanned out per channel in one run
        // (one lock and wake-up per member); an edit or delete first flushes them, so it
        // never overtakes the message it refers to.
        let mut touched: Vec<Arc<str>> = Vec::new();
        let Committed { commits, at } = msg;
        for c in commits {
            if !matches!(c, Commit::Message { .. }) {
                for name in touched.drain(..) {
                    self.drain(ctx, &name);
                }
            }
            match c {
                Commit::Message { ns, msg: m, ack, .. } => {
                    // Durable already: acknowledge before the fan-out, so the ack does
                    // not wait behind a large channel's deliveries.
                    ack.ok(PublishOk {
                        seq: m.seq,
                        ts: m.ts,
                        duplicate: false,
                    });
                    if let Some(name) = self.offer_stored(ns, m) {
                        if !touched.contains(&name) {
                            touched.push(name);
                        }
                    }
                }
                Commit::Edit { edit, ack } => {
                    self.broadcast(&edit.channel, Kind::Change, &edit.frame(), None);
                    ack.ok(Empty {});
                }
                Commit::Delete { delete, ack } => {
                    self.broadcast(&delete.channel, Kind::Change, &delete.frame(), None);
                    ack.ok(Empty {});
                }
            }
        }
        for name in touched {
            self.drain(ctx, &name);
        }
        crate::metrics::get().commit_delivery.observe_duration(at.elapsed());
    }
}

impl Handler<Typing> for Shard {
    type Result = ();

    fn handle(&mut self, msg: Typing, _: &mut Self::Context) {
        let joined = self
            .channels
            .get(&msg.channel)
            .is_some_and(|c| c.members.contains_key(&msg.conn_id));
        if !joined {
            // The same answer whether the channel exists, is readable or not: only what
            // the connection joined is there for typing.
            return msg
                .ack
                .err(AppError::not_found(format!("not joined to {}", msg.channel)));
        }
        self.broker.publish(BusEvent::Typing {
            channel: msg.channel.clone(),
            user: msg.user.clone(),
        });
        let frame = typing_event(&msg.channel, &msg.user);
        self.broadcast(&msg.channel, Kind::Ephemeral, &frame, Some(&msg.user.id));
        msg.ack.ok(Empty {});
    }
}

impl Handler<PresencePage> for Shard {
    type Result = MessageResult<PresencePage>;

    fn handle(&mut self, msg: PresencePage, _: &mut Self::Context) -> Self::Result {
        let empty = Presence::default();
        let presence = self.channels.get(&msg.channel).map_or(&empty, |c| &c.presence);
        MessageResult(presence.page(msg.after.as_ref(), msg.limit))
    }
}

impl Handler<FeedPublish> for Shard {
    type Result = ();

    fn handle(&mut self, msg: FeedPublish, _: &mut Self::Context) {
        self.broker.publish(BusEvent::Feed {
            channel: msg.channel.full.clone(),
            from: msg.from.clone(),
            data: msg.data.clone(),
        });
        let m = self.feed_value(&msg.channel.full, msg.channel.ns, msg.from, msg.data, msg.client_id);
        if msg.channel.policy().storage == Storage::LastValueAndTrack {
            self.feeds.stored_last_value(&msg.channel, &m);
        }
        msg.ack.ok(PublishOk {
            seq: m.seq,
            ts: m.ts,
            duplicate: false,
        });
    }
}

impl Handler<SeedLastValues> for Shard {
    type Result = ();

    fn handle(&mut self, msg: SeedLastValues, _: &mut Self::Context) {
        for m in msg.0 {
            let Ok(c) = crate::channels::Channel::parse(&m.channel) else {
                continue;
            };
            let ch = self.channel(&c.full, c.ns);
            ch.seq = ch.seq.max(m.seq);
            ch.last = Some(m);
        }
    }
}

impl Handler<Busiest> for Shard {
    type Result = MessageResult<Busiest>;

    /// O(channels × log n): a bounded heap, no sort of every channel.
    fn handle(&mut self, Busiest(n): Busiest, _: &mut Self::Context) -> Self::Result {
        use std::{cmp::Reverse, collections::BinaryHeap};
        let mut top: BinaryHeap<Reverse<(usize, i64, Arc<str>)>> = BinaryHeap::with_capacity(n + 1);
        for (name, c) in &self.channels {
            let seq = c.order.delivered().unwrap_or(c.seq).max(c.seq);
            top.push(Reverse((c.members.len(), seq, name.clone())));
            if top.len() > n {
                top.pop();
            }
        }
        let mut v: Vec<_> = top.into_iter().map(|Reverse((m, s, name))| (name, m, s)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        MessageResult(v)
    }
}

impl Handler<Stats> for Shard {
    type Result = MessageResult<Stats>;

    fn handle(&mut self, _: Stats, _: &mut Self::Context) -> Self::Result {
        let mut s = self.stats;
        s.channels = self.channels.len();
        s.subscriptions = self.channels.values().map(|c| c.members.len()).sum();
        MessageResult(s)
    }
}

//! One hub shard: the channels whose name hashes to it.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use actix::prelude::*;
use bytes::Bytes;
use serde::Serialize;

use super::*;
use crate::{
    channels::{Namespace, Storage},
    error::AppError,
    feeds::Feeds,
    protocol::{
        delete_event, edit_event, message_event, now_ms, presence_event, reply_err, reply_ok, typing_event, Message,
        PresenceMember, UserRef,
    },
    storage::{writer::PublishOk, Db},
};

/// How often coalesced presence diffs are flushed.
const PRESENCE_FLUSH: Duration = Duration::from_millis(100);

enum MemberState {
    /// Waiting for the join snapshot; live events are held here (in seq order).
    Joining(Vec<(i64, Bytes)>),
    /// Receiving; events with `seq <= skip_upto` were in the snapshot already.
    Active { skip_upto: i64 },
}

struct Member {
    conn: Arc<ConnHandle>,
    state: MemberState,
}

#[derive(Default)]
struct Present {
    name: Option<Arc<str>>,
    conns: u32,
}

/// Who is present in a channel on another node.
struct RemoteNode {
    /// When the node last spoke about this channel (diff or state).
    at: Instant,
    users: HashMap<Arc<str>, (UserRef, u32)>,
}

struct ChannelState {
    name: Arc<str>,
    ns: Namespace,
    members: HashMap<u64, Member>,
    /// user id → connections of this node counted present.
    presence: HashMap<Arc<str>, Present>,
    /// Presence on other nodes, by node id.
    remote: HashMap<Arc<str>, RemoteNode>,
    /// Changes of the cluster-wide presence, for the next event to local members.
    pending_joined: HashMap<Arc<str>, UserRef>,
    pending_left: HashMap<Arc<str>, UserRef>,
    /// Changes of this node's presence, for the next announcement to other nodes.
    announce_joined: HashMap<Arc<str>, UserRef>,
    announce_left: HashMap<Arc<str>, UserRef>,
    /// Newest value of an in-memory channel, with its seq.
    last: Option<Message>,
    /// Seq counter of in-memory channels.
    seq: i64,
    /// Stored channels: the highest seq fanned out. `None` until the first join
    /// snapshot gives the baseline.
    delivered: Option<i64>,
    /// Stored messages waiting for their predecessors (arrived out of order from
    /// another node, or before the baseline).
    pending: BTreeMap<i64, Message>,
    /// A gap fill from the database is scheduled.
    filling: bool,
}

impl ChannelState {
    fn new(name: Arc<str>, ns: Namespace) -> Self {
        ChannelState {
            name,
            ns,
            members: HashMap::new(),
            presence: HashMap::new(),
            remote: HashMap::new(),
            pending_joined: HashMap::new(),
            pending_left: HashMap::new(),
            announce_joined: HashMap::new(),
            announce_left: HashMap::new(),
            delivered: None,
            pending: BTreeMap::new(),
            filling: false,
            last: None,
            seq: 0,
        }
    }

    fn is_idle(&self) -> bool {
        self.members.is_empty()
            && self.last.is_none()
            && self.pending_joined.is_empty()
            && self.pending_left.is_empty()
            && self.announce_joined.is_empty()
            && self.announce_left.is_empty()
    }

    /// Present anywhere in the cluster (this node or another)?
    fn present_anywhere(&self, user: &str) -> bool {
        self.presence.get(user).is_some_and(|p| p.conns > 0) || self.remote.values().any(|n| n.users.contains_key(user))
    }

    fn union_joined(&mut self, user: &UserRef) {
        if self.pending_left.remove(&user.id).is_none() {
            self.pending_joined.insert(user.id.clone(), user.clone());
        }
    }

    fn union_left(&mut self, user: &UserRef) {
        if self.pending_joined.remove(&user.id).is_none() {
            self.pending_left.insert(user.id.clone(), user.clone());
        }
    }

    /// Everyone present in the cluster, connections summed over nodes.
    fn present_list(&self) -> Vec<PresenceMember> {
        let mut all: HashMap<&Arc<str>, PresenceMember> = HashMap::new();
        for (id, p) in self.presence.iter().filter(|(_, p)| p.conns > 0) {
            all.insert(
                id,
                PresenceMember {
                    id: id.clone(),
                    name: p.name.clone().unwrap_or_else(|| id.clone()),
                    conns: p.conns,
                },
            );
        }
        for n in self.remote.values() {
            for (id, (u, conns)) in &n.users {
                all.entry(id)
                    .and_modify(|m| m.conns += conns)
                    .or_insert_with(|| PresenceMember {
                        id: id.clone(),
                        name: u.name.clone(),
                        conns: *conns,
                    });
            }
        }
        let mut v: Vec<PresenceMember> = all.into_values().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        v
    }

    /// This node's present users (announced to other nodes).
    fn local_list(&self) -> Vec<PresenceMember> {
        self.presence
            .iter()
            .filter(|(_, p)| p.conns > 0)
            .map(|(id, p)| PresenceMember {
                id: id.clone(),
                name: p.name.clone().unwrap_or_else(|| id.clone()),
                conns: p.conns,
            })
            .collect()
    }

    fn mark_present(&mut self, user: &UserRef) -> bool {
        let p = self.presence.entry(user.id.clone()).or_default();
        p.name = Some(user.name.clone());
        p.conns += 1;
        if p.conns == 1 {
            if self.announce_left.remove(&user.id).is_none() {
                self.announce_joined.insert(user.id.clone(), user.clone());
            }
            if !self.remote.values().any(|n| n.users.contains_key(&user.id)) {
                self.union_joined(user);
            }
            return true;
        }
        false
    }

    /// A diff from another node; true when the cluster-wide presence changed.
    fn remote_diff(&mut self, node: &Arc<str>, joined: Vec<UserRef>, left: Vec<UserRef>) -> bool {
        let mut changed = false;
        for u in joined {
            let was = self.present_anywhere(&u.id);
            let n = self.remote.entry(node.clone()).or_insert_with(|| RemoteNode {
                at: Instant::now(),
                users: HashMap::new(),
            });
            n.users.insert(u.id.clone(), (u.clone(), 1));
            if !was {
                self.union_joined(&u);
                changed = true;
            }
        }
        for u in left {
            let removed = self
                .remote
                .get_mut(node)
                .is_some_and(|n| n.users.remove(&u.id).is_some());
            if removed && !self.present_anywhere(&u.id) {
                self.union_left(&u);
                changed = true;
            }
        }
        if let Some(n) = self.remote.get_mut(node) {
            n.at = Instant::now();
        }
        changed
    }

    /// The full list of another node (empty: the node is gone); true when the
    /// cluster-wide presence changed.
    fn remote_state(&mut self, node: &Arc<str>, users: Vec<PresenceMember>) -> bool {
        let old = self.remote.remove(node).map(|n| n.users).unwrap_or_default();
        let new: HashMap<Arc<str>, (UserRef, u32)> = users
            .into_iter()
            .map(|m| (m.id.clone(), (UserRef { id: m.id, name: m.name }, m.conns.max(1))))
            .collect();
        let mut changed = false;
        for (id, (u, _)) in &new {
            if !old.contains_key(id) && !self.present_anywhere(id) {
                self.union_joined(u);
                changed = true;
            }
        }
        if !new.is_empty() {
            self.remote.insert(
                node.clone(),
                RemoteNode {
                    at: Instant::now(),
                    users: new,
                },
            );
        }
        for (id, (u, _)) in old {
            if !self.present_anywhere(&id) {
                self.union_left(&u);
                changed = true;
            }
        }
        changed
    }

    fn mark_absent(&mut self, user: &UserRef) -> bool {
        let Some(p) = self.presence.get_mut(&user.id) else {
            return false;
        };
        p.conns = p.conns.saturating_sub(1);
        if p.conns == 0 {
            self.presence.remove(&user.id);
            if self.announce_joined.remove(&user.id).is_none() {
                self.announce_left.insert(user.id.clone(), user.clone());
            }
            if !self.present_anywhere(&user.id) {
                self.union_left(user);
            }
            return true;
        }
        false
    }
}

/// The shard actor.
pub struct Shard {
    channels: HashMap<Arc<str>, ChannelState>,
    /// Channels with presence diffs waiting for the next flush.
    dirty: HashSet<Arc<str>>,
    /// Epoch of in-memory channels: changes with every process start.
    epoch: Arc<str>,
    feeds: Arc<Feeds>,
    stats: ShardStats,
    /// Reads missed stored messages (gap fills).
    db: Db,
    /// Other nodes (feed values, typing and presence are forwarded from here).
    bus: BusCell,
    /// How often presence lists are re-announced to other nodes.
    presence_refresh: Duration,
}

/// How long a gap in a stored channel may wait for the missing message before it is
/// read from the database.
const GAP_WAIT: Duration = Duration::from_millis(150);

impl Shard {
    pub fn new(epoch: Arc<str>, feeds: Arc<Feeds>, db: Db, bus: BusCell, presence_refresh: Duration) -> Shard {
        Shard {
            channels: HashMap::new(),
            dirty: HashSet::new(),
            epoch,
            feeds,
            stats: ShardStats::default(),
            db,
            bus,
            presence_refresh,
        }
    }

    fn publish(&self, ev: crate::bus::BusEvent) {
        if let Some(b) = self.bus.get() {
            b.publish(ev);
        }
    }

    /// A committed message of a stored channel (local or from another node): fanned
    /// out in seq order, exactly once.
    fn stored(&mut self, ctx: &mut Context<Self>, m: Message) {
        if let Some(name) = self.queue_stored(m) {
            self.drain(ctx, &name);
        }
    }

    /// Queues a stored message for in-order delivery; returns its channel when there
    /// is something to drain.
    fn queue_stored(&mut self, m: Message) -> Option<Arc<str>> {
        let ch = self.channels.get_mut(&m.channel)?;
        if ch.delivered.is_some_and(|d| m.seq <= d) {
            return None;
        }
        ch.pending.insert(m.seq, m);
        Some(ch.name.clone())
    }

    /// Pushes an unsequenced event (edit, delete, typing) to a channel's members.
    fn broadcast(&mut self, channel: &str, frame: &Bytes, skip_user: Option<&str>) {
        if let Some(ch) = self.channels.get_mut(channel) {
            Self::fan_out(&mut self.stats, ch, None, frame, skip_user);
        }
    }

    /// Fans out the pending messages that follow `delivered`; schedules a gap fill when
    /// one is missing.
    fn drain(&mut self, ctx: &mut Context<Self>, name: &Arc<str>) {
        let Some(ch) = self.channels.get_mut(name) else { return };
        let Some(mut d) = ch.delivered else { return };
        let mut frames = Vec::new();
        while let Some(entry) = ch.pending.first_entry() {
            let seq = *entry.key();
            if seq <= d {
                entry.remove();
            } else if seq == d + 1 {
                let m = entry.remove();
                frames.push((seq, message_event(&m)));
                d = seq;
            } else {
                break;
            }
        }
        if !frames.is_empty() {
            self.stats.messages_out += frames.len() as u64;
            Self::fan_out_seq(&mut self.stats, ch, &frames);
        }
        ch.delivered = Some(d);
        if !ch.pending.is_empty() && !ch.filling {
            ch.filling = true;
            let name = name.clone();
            ctx.run_later(GAP_WAIT, move |act, ctx| act.fill_gap(ctx, name, false));
        }
    }

    /// Reads what follows `delivered` from the database (a gap that did not close by
    /// itself, or everything after a bus reconnect when `all`).
    fn fill_gap(&mut self, ctx: &mut Context<Self>, name: Arc<str>, all: bool) {
        let Some(ch) = self.channels.get_mut(&name) else { return };
        let Some(d) = ch.delivered else {
            ch.filling = false;
            return;
        };
        if !all && ch.pending.first_key_value().is_none_or(|(s, _)| *s == d + 1) {
            ch.filling = false;
            return self.drain(ctx, &name);
        }
        let upto = if all {
            i64::MAX
        } else {
            *ch.pending.first_key_value().expect("non-empty").0
        };
        let limit = (upto - d - 1).clamp(1, 1000);
        let db = self.db.clone();
        let n2 = name.clone();
        let read = async move {
            db.run(move |c| crate::storage::queries::history(c, &n2, None, Some(d), limit))
                .await
        };
        ctx.spawn(actix::fut::wrap_future::<_, Self>(read).map(move |r, act, ctx| {
            let Some(ch) = act.channels.get_mut(&name) else { return };
            ch.filling = false;
            match r {
                Ok(msgs) => {
                    for m in msgs {
                        ch.pending.entry(m.seq).or_insert(m);
                    }
                }
                Err(e) => log::warn!("gap fill of {name} failed: {}", e.message),
            }
            act.drain(ctx, &name);
        }));
    }

    fn channel(&mut self, name: &Arc<str>, ns: Namespace) -> &mut ChannelState {
        self.channels
            .entry(name.clone())
            .or_insert_with(|| ChannelState::new(name.clone(), ns))
    }

    /// Pushes one frame to every active member (optionally skipping one user).
    /// Pushes consecutive messages of a stored channel to every member: one lock and
    /// one wake-up per member for the whole run.
    fn fan_out_seq(stats: &mut ShardStats, ch: &mut ChannelState, frames: &[(i64, Bytes)]) {
        for m in ch.members.values_mut() {
            match &mut m.state {
                MemberState::Joining(buf) => buf.extend(frames.iter().cloned()),
                MemberState::Active { skip_upto } => {
                    m.conn.outbox.push_seq(frames, *skip_upto);
                    stats.frames_out += frames.len() as u64;
                }
            }
        }
    }

    fn fan_out(
        stats: &mut ShardStats,
        ch: &mut ChannelState,
        seq: Option<i64>,
        frame: &Bytes,
        skip_user: Option<&str>,
    ) {
        let conflate = ch.ns.policy().conflate;
        // A member whose queue overflowed is closing; its session unsubscribes it.
        for m in ch.members.values_mut() {
            if skip_user.is_some_and(|u| *m.conn.user.id == *u) {
                continue;
            }
            match &mut m.state {
                MemberState::Joining(buf) => {
                    if let Some(s) = seq {
                        buf.push((s, frame.clone()));
                    }
                }
                MemberState::Active { skip_upto } => {
                    if seq.is_some_and(|s| s <= *skip_upto) {
                        continue;
                    }
                    if conflate {
                        m.conn.outbox.push_conflated(&ch.name, frame.clone());
                    } else {
                        m.conn.outbox.push(frame.clone());
                    }
                    stats.frames_out += 1;
                }
            }
        }
    }

    fn flush_presence(&mut self) {
        let clustered = self.bus.get().is_some();
        for name in std::mem::take(&mut self.dirty) {
            let Some(ch) = self.channels.get_mut(&name) else {
                continue;
            };
            if clustered && !(ch.announce_joined.is_empty() && ch.announce_left.is_empty()) {
                let ev = crate::bus::BusEvent::Presence {
                    channel: name.clone(),
                    joined: ch.announce_joined.drain().map(|(_, u)| u).collect(),
                    left: ch.announce_left.drain().map(|(_, u)| u).collect(),
                };
                if let Some(b) = self.bus.get() {
                    b.publish(ev);
                }
            } else {
                ch.announce_joined.clear();
                ch.announce_left.clear();
            }
            if !(ch.pending_joined.is_empty() && ch.pending_left.is_empty()) {
                let joined: Vec<UserRef> = ch.pending_joined.drain().map(|(_, u)| u).collect();
                let left: Vec<UserRef> = ch.pending_left.drain().map(|(_, u)| u).collect();
                let frame = presence_event(&name, &joined, &left);
                Self::fan_out(&mut self.stats, ch, None, &frame, None);
            }
            if ch.is_idle() {
                self.channels.remove(&name);
            }
        }
    }

    /// Periodically: tell other nodes who is present here, and forget nodes that
    /// stopped talking (crashed or cut off).
    fn refresh_presence(&mut self) {
        let Some(bus) = self.bus.get().cloned() else { return };
        let ttl = self.presence_refresh * 3;
        let mut dirty = Vec::new();
        for ch in self.channels.values_mut() {
            if !ch.ns.policy().presence {
                continue;
            }
            if !ch.presence.is_empty() {
                bus.publish(crate::bus::BusEvent::PresenceState {
                    channel: ch.name.clone(),
                    users: ch.local_list(),
                });
            }
            let gone: Vec<Arc<str>> = ch
                .remote
                .iter()
                .filter(|(_, n)| n.at.elapsed() > ttl)
                .map(|(id, _)| id.clone())
                .collect();
            for node in gone {
                if ch.remote_state(&node, Vec::new()) {
                    dirty.push(ch.name.clone());
                }
            }
        }
        self.dirty.extend(dirty);
    }

    fn remove_member(&mut self, conn_id: u64, name: &Arc<str>) {
        let Some(ch) = self.channels.get_mut(name) else { return };
        let Some(m) = ch.members.remove(&conn_id) else { return };
        let changed =
            matches!(m.state, MemberState::Active { .. }) && ch.ns.policy().presence && ch.mark_absent(&m.conn.user);
        if changed {
            self.dirty.insert(name.clone());
        } else if ch.is_idle() {
            self.channels.remove(name);
        }
    }
}

impl Actor for Shard {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1 << 16);
        ctx.run_interval(PRESENCE_FLUSH, |act, _| act.flush_presence());
        ctx.run_interval(self.presence_refresh, |act, _| act.refresh_presence());
    }
}

#[derive(Serialize)]
struct JoinOk<'a> {
    channel: &'a str,
    seq: i64,
    epoch: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    recovered: Option<bool>,
    messages: &'a [Message],
    #[serde(skip_serializing_if = "Option::is_none")]
    presence: Option<Vec<PresenceMember>>,
}

impl Handler<Subscribe> for Shard {
    type Result = MessageResult<Subscribe>;

    fn handle(&mut self, msg: Subscribe, _: &mut Self::Context) -> Self::Result {
        let name = msg.channel.full.clone();
        let policy = msg.channel.policy();
        let epoch = self.epoch.clone();
        if policy.presence && !self.channels.contains_key(&name) {
            // Learn who is present on other nodes before the join reply lists members.
            self.publish(crate::bus::BusEvent::PresenceAsk { channel: name.clone() });
        }
        let ch = self.channel(&name, msg.channel.ns);
        if policy.storage == Storage::Every {
            // Re-joining restarts the buffering; presence is counted on completion.
            let conn_id = msg.conn.id;
            let was_active = ch
                .members
                .get(&conn_id)
                .is_some_and(|m| matches!(m.state, MemberState::Active { .. }));
            if was_active && policy.presence && ch.mark_absent(&msg.conn.user) {
                self.dirty.insert(name.clone());
            }
            let ch = self.channels.get_mut(&name).expect("channel exists");
            ch.members.insert(
                conn_id,
                Member {
                    conn: msg.conn,
                    state: MemberState::Joining(Vec::new()),
                },
            );
            return MessageResult(Subscribed::NeedsSnapshot);
        }
        // In-memory last-value channel: reply with the last value at once.
        let top = ch.seq;
        let (recovered, messages): (Option<bool>, Vec<Message>) = match msg.since {
            None => (None, ch.last.iter().cloned().collect()),
            Some(since) => {
                let same_epoch = msg.epoch.as_deref().is_none_or(|e| e.is_empty() || *e == *epoch);
                if same_epoch && since == top {
                    (Some(true), Vec::new())
                } else if same_epoch && since + 1 == top {
                    (Some(true), ch.last.iter().cloned().collect())
                } else {
                    (Some(false), ch.last.iter().cloned().collect())
                }
            }
        };
        let reply = reply_ok(
            msg.req_id,
            &JoinOk {
                channel: &name,
                seq: top,
                epoch: &epoch,
                recovered,
                messages: &messages,
                presence: None,
            },
        );
        let outbox = msg.conn.outbox.clone();
        ch.members.insert(
            msg.conn.id,
            Member {
                conn: msg.conn,
                state: MemberState::Active { skip_upto: top },
            },
        );
        outbox.push(reply);
        MessageResult(Subscribed::Replied)
    }
}

impl Handler<JoinComplete> for Shard {
    type Result = ();

    fn handle(&mut self, msg: JoinComplete, ctx: &mut Self::Context) {
        let Some(ch) = self.channels.get_mut(&msg.channel) else {
            return;
        };
        let presence_on = ch.ns.policy().presence;
        let Some(m) = ch.members.get_mut(&msg.conn_id) else {
            return;
        };
        let top = msg.snapshot.top;
        let buffered = match std::mem::replace(&mut m.state, MemberState::Active { skip_upto: top }) {
            MemberState::Joining(b) => b,
            MemberState::Active { .. } => Vec::new(),
        };
        let conn = m.conn.clone();
        if presence_on && ch.mark_present(&conn.user) {
            self.dirty.insert(msg.channel.clone());
        }
        let ch = self.channels.get_mut(&msg.channel).expect("channel exists");
        let presence = presence_on.then(|| ch.present_list());
        let s = &msg.snapshot;
        let reply = reply_ok(
            msg.req_id,
            &JoinOk {
                channel: &msg.channel,
                seq: s.top,
                epoch: &s.epoch,
                recovered: s.recovered,
                messages: &s.messages,
                presence,
            },
        );
        let mut alive = conn.outbox.push(reply);
        for (seq, frame) in buffered {
            if alive && seq > top {
                alive = conn.outbox.push(frame);
            }
        }
        if !alive {
            self.remove_member(conn.id, &msg.channel);
        }
        if let Some(ch) = self.channels.get_mut(&msg.channel) {
            if ch.delivered.is_none() {
                // The first snapshot is the baseline of in-order delivery.
                ch.delivered = Some(top);
                let name = ch.name.clone();
                self.drain(ctx, &name);
            }
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
        for c in msg.0 {
            if !matches!(c, Commit::Message { .. }) {
                for name in touched.drain(..) {
                    self.drain(ctx, &name);
                }
            }
            match c {
                Commit::Message { msg: m, ack } => {
                    if m.channel.starts_with("sports:") {
                        self.feeds.seen(&m.channel);
                    }
                    let ok = PublishOk {
                        seq: m.seq,
                        ts: m.ts,
                        duplicate: false,
                    };
                    // Durable already: acknowledge before the fan-out, so the ack does
                    // not wait behind a large channel's deliveries.
                    ack.ok(&ok);
                    if let Some(name) = self.queue_stored(m) {
                        if !touched.contains(&name) {
                            touched.push(name);
                        }
                    }
                }
                Commit::Edit {
                    channel,
                    seq,
                    from,
                    data,
                    edited_ts,
                    ack,
                } => {
                    self.broadcast(&channel, &edit_event(&channel, seq, &from, &data, edited_ts), None);
                    ack.ok(&serde_json::Map::new());
                }
                Commit::Delete { channel, seq, ack } => {
                    self.broadcast(&channel, &delete_event(&channel, seq), None);
                    ack.ok(&serde_json::Map::new());
                }
            }
        }
        for name in touched {
            self.drain(ctx, &name);
        }
    }
}

impl Handler<Typing> for Shard {
    type Result = ();

    fn handle(&mut self, msg: Typing, _: &mut Self::Context) {
        let active = self
            .channels
            .get(&msg.channel)
            .and_then(|c| c.members.get(&msg.conn_id))
            .is_some();
        if !active {
            msg.outbox.push(reply_err(
                msg.req_id,
                &AppError::forbidden(format!("join {} first", msg.channel)),
            ));
            return;
        }
        self.publish(crate::bus::BusEvent::Typing {
            channel: msg.channel.clone(),
            user: msg.user.clone(),
        });
        self.broadcast(&msg.channel, &typing_event(&msg.channel, &msg.user), Some(&msg.user.id));
        if msg.req_id.is_some() {
            msg.outbox.push(reply_ok(msg.req_id, &serde_json::Map::new()));
        }
    }
}

impl Handler<PresenceQuery> for Shard {
    type Result = MessageResult<PresenceQuery>;

    fn handle(&mut self, msg: PresenceQuery, _: &mut Self::Context) -> Self::Result {
        MessageResult(
            self.channels
                .get(&msg.channel)
                .map(|c| c.present_list())
                .unwrap_or_default(),
        )
    }
}

impl Handler<FeedPublish> for Shard {
    type Result = ();

    fn handle(&mut self, msg: FeedPublish, _: &mut Self::Context) {
        let durable = msg.channel.policy().storage == Storage::LastValueAndTrack;
        self.publish(crate::bus::BusEvent::Feed {
            channel: msg.channel.full.clone(),
            from: msg.from.clone(),
            data: msg.data.as_ref().to_owned(),
        });
        let m = self.feed_value(&msg.channel.full, msg.channel.ns, msg.from, msg.data, msg.client_id);
        if durable {
            self.feeds.stored_last_value(&m);
        }
        msg.ack.ok(&PublishOk {
            seq: m.seq,
            ts: m.ts,
            duplicate: false,
        });
    }
}

impl Shard {
    /// A new value of an in-memory channel: next local seq, last value, fan-out.
    fn feed_value(
        &mut self,
        name: &Arc<str>,
        ns: Namespace,
        from: UserRef,
        data: Arc<serde_json::value::RawValue>,
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
        let ch = self.channels.get_mut(name).expect("exists");
        Self::fan_out(&mut self.stats, ch, Some(m.seq), &frame, None);
        m
    }
}

impl Handler<Remote> for Shard {
    type Result = ();

    fn handle(&mut self, msg: Remote, ctx: &mut Self::Context) {
        use crate::bus::BusEvent as E;
        let node = msg.node;
        match msg.ev {
            E::Message(w) => {
                let m: Message = w.into();
                if m.channel.starts_with("sports:") {
                    self.feeds.seen(&m.channel);
                }
                self.stored(ctx, m);
            }
            E::Edit {
                channel,
                seq,
                from,
                data,
                edited_ts,
            } => {
                self.broadcast(&channel, &edit_event(&channel, seq, &from, &data, edited_ts), None);
            }
            E::Delete { channel, seq } => {
                self.broadcast(&channel, &delete_event(&channel, seq), None);
            }
            E::Feed { channel, from, data } => {
                let Ok(c) = crate::channels::Channel::parse(&channel) else {
                    return;
                };
                let m = self.feed_value(&c.full, c.ns, from, data.into(), None);
                self.feeds.observe(&m);
            }
            E::Typing { channel, user } => {
                self.broadcast(&channel, &typing_event(&channel, &user), Some(&user.id));
            }
            E::Presence { channel, joined, left } => {
                if let Some(ch) = self.channels.get_mut(&channel) {
                    if ch.remote_diff(&node, joined, left) {
                        self.dirty.insert(channel);
                    }
                }
            }
            E::PresenceState { channel, users } => {
                if let Some(ch) = self.channels.get_mut(&channel) {
                    if ch.remote_state(&node, users) {
                        self.dirty.insert(channel);
                    }
                }
            }
            E::PresenceAsk { channel } => {
                if let Some(ch) = self.channels.get(&channel) {
                    if !ch.presence.is_empty() {
                        self.publish(E::PresenceState {
                            channel: channel.clone(),
                            users: ch.local_list(),
                        });
                    }
                }
            }
            E::Signal { .. } => {}
        }
    }
}

impl Handler<Resync> for Shard {
    type Result = ();

    fn handle(&mut self, _: Resync, ctx: &mut Self::Context) {
        let names: Vec<Arc<str>> = self
            .channels
            .values()
            .filter(|c| c.delivered.is_some() && !c.filling)
            .map(|c| c.name.clone())
            .collect();
        for name in names {
            if let Some(ch) = self.channels.get_mut(&name) {
                ch.filling = true;
            }
            self.fill_gap(ctx, name, true);
        }
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

impl Handler<Stats> for Shard {
    type Result = MessageResult<Stats>;

    fn handle(&mut self, _: Stats, _: &mut Self::Context) -> Self::Result {
        let mut s = self.stats;
        s.channels = self.channels.len();
        s.subscriptions = self.channels.values().map(|c| c.members.len()).sum();
        MessageResult(s)
    }
}

//! Joins on the shard: a connection subscribes (holding the channel's live events),
//! its snapshot is read in a batch with the other joins of the channel
//! ([`crate::hub::snapshots`]), and the shard replies itself: the snapshot, then the
//! held events newer than it. Nothing missed, nothing twice; one shard message per
//! join and one storage read per batch.

use std::sync::Arc;

use actix::prelude::*;

use super::{Shard, JOIN_PRESENCE};
use crate::{
    channels::Storage,
    error::AppError,
    hub::{
        channel::{Member, MemberState},
        snapshots::{Batch, ReadKey, Snapshots, Waiter},
        Subscribe,
    },
    protocol::{reply_err, reply_ok, JoinOk, Message},
    storage::queries::JoinSnapshot,
};

/// Snapshots read for one join whose held events keep overflowing, before it gives up.
const MAX_SNAPSHOTS: u8 = 3;

impl Handler<Subscribe> for Shard {
    type Result = ();

    fn handle(&mut self, msg: Subscribe, ctx: &mut Self::Context) {
        let name = msg.channel.full.clone();
        let policy = msg.channel.policy();
        let epoch = self.epoch.clone();
        if policy.presence && !self.channels.contains_key(&name) {
            // Learn who is present on other nodes before the join reply lists members.
            self.broker
                .publish(crate::broker::BusEvent::PresenceAsk { channel: name.clone() });
        }
        let ch = self.channel(&name, msg.channel.ns);
        let conn_id = msg.conn.id;
        if policy.storage == Storage::Every {
            match ch.members.get_mut(&conn_id) {
                // A second join while the first waits: the events held so far stay.
                Some(Member {
                    state: MemberState::Joining(_),
                    ..
                }) => {}
                Some(old) => {
                    // Re-joining restarts the holding; presence is counted on completion.
                    old.state = MemberState::Joining(Default::default());
                    if policy.presence && ch.presence.leave(&msg.conn.user) {
                        self.dirty.insert(name.clone());
                    }
                }
                None => {
                    ch.members.insert(
                        conn_id,
                        Member {
                            conn: msg.conn.clone(),
                            state: MemberState::Joining(Default::default()),
                        },
                    );
                }
            }
            let waiter = Waiter {
                conn: msg.conn,
                req_id: msg.req_id,
                key: ReadKey {
                    since: msg.since,
                    epoch: msg.epoch.map(Into::into),
                    limit: msg.limit,
                },
                reads: 0,
            };
            self.queue_snapshot(ctx, &name, waiter);
            return;
        }
        // In-memory last-value channel: reply with the last value at once.
        let top = ch.seq;
        let last: Vec<Message> = ch.last.iter().cloned().collect();
        let recovered = msg.since.map(|since| {
            let same_epoch = msg.epoch.as_deref().is_none_or(|e| e.is_empty() || *e == *epoch);
            same_epoch && (since == top || since + 1 == top)
        });
        let messages: &[Message] = if recovered == Some(true) && msg.since == Some(top) {
            &[]
        } else {
            &last
        };
        let reply = reply_ok(
            msg.req_id,
            &JoinOk {
                channel: name.clone(),
                seq: top,
                epoch,
                recovered,
                messages,
                more: false,
                presence: None,
                presence_count: None,
            },
        );
        let outbox = msg.conn.outbox.clone();
        ch.members.insert(
            conn_id,
            Member {
                conn: msg.conn,
                state: MemberState::Active { skip_upto: top },
            },
        );
        outbox.push(reply);
    }
}

impl Shard {
    /// Queues a join for the channel's next snapshot read, starting it when none runs.
    fn queue_snapshot(&mut self, ctx: &mut Context<Self>, name: &Arc<str>, w: Waiter) {
        let Some(ch) = self.channels.get_mut(name) else {
            return;
        };
        if ch.snapshots.push(w) {
            self.start_read(ctx, name);
        }
    }

    /// Starts a snapshot read for the joins waiting on `name`, if none runs.
    fn start_read(&mut self, ctx: &mut Context<Self>, name: &Arc<str>) {
        let Some(batch) = self.channels.get_mut(name).and_then(|ch| ch.snapshots.start()) else {
            return;
        };
        let read = self.snapshots.read(name.clone(), batch.keys.clone());
        let name = name.clone();
        ctx.spawn(actix::fut::wrap_future::<_, Self>(read).map(move |results, act, ctx| {
            act.snapshots_read(ctx, &name, batch, results);
        }));
    }

    /// A snapshot read ended: every join it served completes (or reads again, or
    /// fails), then the next read starts if joins wait.
    fn snapshots_read(&mut self, ctx: &mut Context<Self>, name: &Arc<str>, batch: Batch, results: Snapshots) {
        let Batch { id, waiters, .. } = batch;
        let mut again = Vec::new();
        for (w, k) in waiters {
            match results.get(k) {
                Some(Ok(snapshot)) => {
                    if let Some(w) = self.complete(ctx, name, w, snapshot) {
                        again.push(w);
                    }
                }
                Some(Err(e)) => self.fail_join(name, &w, e),
                None => self.fail_join(name, &w, &AppError::internal("snapshot read lost a request")),
            }
        }
        let Some(ch) = self.channels.get_mut(name) else {
            return;
        };
        let mut start = ch.snapshots.finished(id);
        for w in again {
            start |= ch.snapshots.push(w);
        }
        if start {
            self.start_read(ctx, name);
        }
    }

    /// The join is answered with `e` and the connection leaves the channel.
    fn fail_join(&mut self, name: &Arc<str>, w: &Waiter, e: &AppError) {
        self.remove_member(w.conn.id, name);
        w.conn.outbox.push(reply_err(w.req_id, e));
    }

    /// Completes one join with its snapshot: the reply, then the events held meanwhile
    /// that are newer. Returns the join when its held events overflowed and it must
    /// read a new snapshot.
    fn complete(
        &mut self,
        ctx: &mut Context<Self>,
        name: &Arc<str>,
        mut w: Waiter,
        s: &JoinSnapshot,
    ) -> Option<Waiter> {
        let gone = || AppError::bad_request("join superseded by a later leave or join");
        let Some(ch) = self.channels.get_mut(name) else {
            w.conn.outbox.push(reply_err(w.req_id, &gone()));
            return None;
        };
        let presence_on = ch.ns.policy().presence;
        // Gone: left (or the connection closed, or another connection took the id)
        // while the snapshot was read.
        let Some(m) = ch.members.get_mut(&w.conn.id).filter(|m| Arc::ptr_eq(&m.conn, &w.conn)) else {
            w.conn.outbox.push(reply_err(w.req_id, &gone()));
            return None;
        };
        let top = s.top;
        if matches!(&m.state, MemberState::Joining(b) if b.overflowed()) {
            // Hold anew from here; the next snapshot covers what was dropped.
            m.state = MemberState::Joining(Default::default());
            w.reads += 1;
            if w.reads >= MAX_SNAPSHOTS {
                let e = AppError::unavailable("the channel is too busy to join, try again");
                self.fail_join(name, &w, &e);
                return None;
            }
            return Some(w);
        }
        let held = match std::mem::replace(&mut m.state, MemberState::Active { skip_upto: top }) {
            MemberState::Joining(b) => Some(b),
            MemberState::Active { .. } => None,
        };
        // Counted once per membership: a second completion (two joins of the same
        // channel racing) finds the member active already.
        if presence_on && held.is_some() && ch.presence.join(&w.conn.user) {
            self.dirty.insert(name.clone());
        }
        let reply = reply_ok(
            w.req_id,
            &JoinOk {
                channel: name.clone(),
                seq: s.top,
                epoch: s.epoch.as_str().into(),
                recovered: s.recovered,
                messages: &s.messages,
                more: s.more,
                presence: presence_on.then(|| ch.presence.page(None, JOIN_PRESENCE).members),
                presence_count: presence_on.then(|| ch.presence.count()),
            },
        );
        let mut alive = w.conn.outbox.push(reply);
        for frame in held.into_iter().flat_map(|b| b.after(top)) {
            if !alive {
                break;
            }
            alive = w.conn.outbox.push(frame);
        }
        if !alive {
            self.remove_member(w.conn.id, name);
        }
        if let Some(ch) = self.channels.get_mut(name) {
            // The first snapshot is the baseline of in-order delivery.
            if ch.order.baseline(top) {
                self.drain(ctx, name);
            }
        }
        None
    }
}

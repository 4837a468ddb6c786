//! The state a shard keeps per channel, and the fan-out to its members.

use std::{collections::HashMap, sync::Arc};

use bytes::Bytes;

use super::{ordering::InOrder, presence::Presence, snapshots::SnapshotQueue, ShardStats};
use crate::{channels::Namespace, conn::ConnHandle, metrics, protocol::Message};

/// Most frames held for one joining member while its snapshot is read.
const JOIN_BUFFER_MAX_FRAMES: usize = 2048;
/// Most bytes held for one joining member while its snapshot is read.
const JOIN_BUFFER_MAX_BYTES: usize = 4 << 20;

/// Live events held for a member whose join snapshot is being read. Bounded by
/// [`JOIN_BUFFER_MAX_FRAMES`] and [`JOIN_BUFFER_MAX_BYTES`]. Overflow policy: the held
/// events are dropped and nothing more is held; when the snapshot arrives the joiner
/// reads a new one (which covers everything dropped) while holding again.
#[derive(Default)]
pub(super) struct JoinBuffer {
    /// (seq of a stored message, or `None` for an edit or delete: always delivered
    /// after the snapshot; frame).
    frames: Vec<(Option<i64>, Bytes)>,
    bytes: usize,
    overflowed: bool,
}

impl JoinBuffer {
    fn push(&mut self, seq: Option<i64>, frame: &Bytes) {
        if self.overflowed {
            return;
        }
        if self.frames.len() >= JOIN_BUFFER_MAX_FRAMES || self.bytes + frame.len() > JOIN_BUFFER_MAX_BYTES {
            self.frames = Vec::new();
            self.bytes = 0;
            self.overflowed = true;
            return;
        }
        self.bytes += frame.len();
        self.frames.push((seq, frame.clone()));
    }

    pub(super) fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// The held frames newer than a snapshot ending at `top`, in arrival order.
    pub(super) fn after(self, top: i64) -> impl Iterator<Item = Bytes> {
        self.frames
            .into_iter()
            .filter(move |(seq, _)| seq.is_none_or(|s| s > top))
            .map(|(_, f)| f)
    }
}

pub(super) enum MemberState {
    /// Waiting for the join snapshot; live events are held here.
    Joining(JoinBuffer),
    /// Receiving; events with `seq <= skip_upto` were in the snapshot already.
    Active { skip_upto: i64 },
}

pub(super) struct Member {
    pub conn: Arc<ConnHandle>,
    pub state: MemberState,
}

/// How a frame relates to joins in progress.
#[derive(Clone, Copy)]
pub(super) enum Kind {
    /// A message with this seq: held for joiners, skipped where the snapshot had it.
    Seq(i64),
    /// An edit or delete: held for joiners, delivered after their snapshot.
    Change,
    /// Typing, presence: not held (the join reply carries the current state).
    Ephemeral,
}

pub(super) struct ChannelState {
    pub name: Arc<str>,
    pub ns: Namespace,
    pub members: HashMap<u64, Member>,
    pub presence: Presence,
    /// In-order delivery of a stored channel.
    pub order: InOrder,
    /// Newest value of an in-memory channel, with its seq.
    pub last: Option<Message>,
    /// Seq counter of in-memory channels.
    pub seq: i64,
    /// Joins waiting for a snapshot (stored channels).
    pub snapshots: SnapshotQueue,
}

impl ChannelState {
    pub fn new(name: Arc<str>, ns: Namespace) -> Self {
        ChannelState {
            name,
            ns,
            members: HashMap::new(),
            presence: Presence::default(),
            order: InOrder::default(),
            last: None,
            seq: 0,
            snapshots: SnapshotQueue::default(),
        }
    }

    /// Nothing to keep: no members, no last value, no presence change to flush.
    pub fn is_idle(&self) -> bool {
        self.members.is_empty() && self.last.is_none() && self.presence.is_idle()
    }

    /// Removes a member; true when the channel's presence changed.
    pub fn remove_member(&mut self, conn_id: u64) -> bool {
        let Some(m) = self.members.remove(&conn_id) else {
            return false;
        };
        matches!(m.state, MemberState::Active { .. }) && self.ns.policy().presence && self.presence.leave(&m.conn.user)
    }

    /// Pushes one frame to every member (optionally skipping one user's connections).
    /// Returns the members whose connection is closed.
    pub fn fan_out(&mut self, stats: &mut ShardStats, kind: Kind, frame: &Bytes, skip_user: Option<&str>) -> Vec<u64> {
        let conflate = self.ns.policy().conflate;
        let mut dead = Vec::new();
        let mut delivered = 0;
        for (id, m) in self.members.iter_mut() {
            if skip_user.is_some_and(|u| *m.conn.user.id == *u) {
                continue;
            }
            match (&mut m.state, kind) {
                (MemberState::Joining(buf), Kind::Seq(s)) => buf.push(Some(s), frame),
                (MemberState::Joining(buf), Kind::Change) => buf.push(None, frame),
                (MemberState::Joining(_), Kind::Ephemeral) => {}
                (MemberState::Active { skip_upto }, kind) => {
                    if matches!(kind, Kind::Seq(s) if s <= *skip_upto) {
                        continue;
                    }
                    let alive = if conflate {
                        m.conn.outbox.push_conflated(&self.name, frame.clone())
                    } else {
                        m.conn.outbox.push(frame.clone())
                    };
                    if !alive {
                        dead.push(*id);
                        continue;
                    }
                    stats.frames_out += 1;
                    if matches!(kind, Kind::Seq(_)) {
                        delivered += 1;
                    }
                }
            }
        }
        metrics::get().messages_out(self.ns, delivered);
        dead
    }

    /// Pushes consecutive messages of a stored channel to every member: one lock and
    /// one wake-up per member for the whole run. Returns the members whose connection
    /// is closed.
    pub fn fan_out_seq(&mut self, stats: &mut ShardStats, frames: &[(i64, Bytes)]) -> Vec<u64> {
        let mut dead = Vec::new();
        let mut delivered = 0;
        for (id, m) in self.members.iter_mut() {
            match &mut m.state {
                MemberState::Joining(buf) => {
                    for (seq, f) in frames {
                        buf.push(Some(*seq), f);
                    }
                }
                MemberState::Active { skip_upto } => {
                    if m.conn.outbox.push_seq(frames, *skip_upto) {
                        stats.frames_out += frames.len() as u64;
                        delivered += match frames.first() {
                            Some((first, _)) if first > skip_upto => frames.len() as u64,
                            _ => frames.iter().filter(|(s, _)| s > skip_upto).count() as u64,
                        };
                    } else {
                        dead.push(*id);
                    }
                }
            }
        }
        metrics::get().messages_out(self.ns, delivered);
        dead
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_buffer_overflow_drops_and_stops_holding() {
        let mut b = JoinBuffer::default();
        let f = Bytes::from_static(b"{}");
        for s in 0..JOIN_BUFFER_MAX_FRAMES as i64 {
            b.push(Some(s), &f);
        }
        assert!(!b.overflowed());
        b.push(Some(99_999), &f);
        assert!(b.overflowed());
        b.push(Some(100_000), &f);
        assert_eq!(b.after(0).count(), 0);
    }

    #[test]
    fn join_buffer_keeps_what_follows_the_snapshot() {
        let mut b = JoinBuffer::default();
        b.push(Some(4), &Bytes::from_static(b"4"));
        b.push(None, &Bytes::from_static(b"edit"));
        b.push(Some(6), &Bytes::from_static(b"6"));
        let out: Vec<Bytes> = b.after(5).collect();
        assert_eq!(out, [Bytes::from_static(b"edit"), Bytes::from_static(b"6")]);
    }
}

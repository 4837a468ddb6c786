//! In-order, exactly-once delivery of one stored channel, as a pure state machine (no
//! I/O, no clock: the caller passes `now` and runs the reads it asks for).
//!
//! Committed messages reach a shard from this node's writer and from other nodes, in
//! any order and possibly more than once or never. [`InOrder`] hands them out strictly
//! by `seq`, starting after a baseline (the first join snapshot's top):
//! * a message that arrives early waits for its predecessors;
//! * a duplicate, or one at or below what was delivered, is dropped;
//! * a gap that does not close by itself within [`GAP_WAIT`] is read from storage
//!   ([`Next::Read`]), and read again every [`GAP_WAIT`] while it stays open;
//! * a gap still open after [`GAP_GIVE_UP`], when storage answered at least twice
//!   without the missing message, is skipped, so one lost message cannot stall the
//!   channel for good (while storage fails to answer, the gap waits);
//! * [`InOrder::resync`] (events between nodes may have been missed) reads
//!   everything after the last delivered message.
//!
//! Bounded: at most [`MAX_PENDING`] messages wait. Overflow policy: the waiting
//! messages are dropped and the channel is re-read from storage (as after a resync).

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use crate::protocol::Message;

/// How long a gap may wait for the missing message before it is read from storage.
pub const GAP_WAIT: Duration = Duration::from_millis(150);

/// How long a gap may stay open, read from storage again and again, before it is
/// skipped.
pub const GAP_GIVE_UP: Duration = Duration::from_secs(5);

/// Most messages waiting for their predecessors.
pub const MAX_PENDING: usize = 4096;

/// Most messages one read from storage returns (a resync reads on while pages come
/// back full).
pub const MAX_READ: i64 = 256;

/// What the driver has to do next about a gap.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Nothing (no gap, or a timer or a read is already under way).
    Nothing,
    /// Call [`InOrder::timer_fired`] and drain again after this long.
    Wait(Duration),
    /// Read up to `limit` stored messages with `seq > after`, then pass them to
    /// [`InOrder::filled`].
    Read { after: i64, limit: i64 },
    /// The gap `from..=to` was given up on; drain again.
    Skipped { from: i64, to: i64 },
}

/// The delivery state of one stored channel.
#[derive(Debug, Default)]
pub struct InOrder {
    /// The highest seq handed out; `None` until the baseline is known.
    delivered: Option<i64>,
    /// Messages waiting for their predecessors (or for the baseline).
    pending: BTreeMap<i64, Message>,
    /// When the current gap was first seen.
    gap_since: Option<Instant>,
    /// No read before this instant.
    wait_until: Option<Instant>,
    /// A timer is armed for `wait_until`.
    timer: bool,
    /// A read from storage is under way.
    reading: bool,
    /// Everything after `delivered` is to be re-read.
    resync: bool,
    /// The read under way is a resync (a full page means there is more).
    reading_all: bool,
    /// Storage answered reads for the current gap without the missing message.
    missing_reads: u32,
}

impl InOrder {
    /// The highest seq handed out.
    pub fn delivered(&self) -> Option<i64> {
        self.delivered
    }

    /// Sets the baseline (the top of the first join snapshot) if there is none yet.
    /// True when it was set now.
    pub fn baseline(&mut self, top: i64) -> bool {
        if self.delivered.is_some() {
            return false;
        }
        self.delivered = Some(top);
        true
    }

    /// Offers a committed message. False when it is old or a duplicate. On overflow
    /// the waiting messages are dropped and a resync is requested.
    pub fn offer(&mut self, m: Message) -> bool {
        if self.delivered.is_some_and(|d| m.seq <= d) || self.pending.contains_key(&m.seq) {
            return false;
        }
        if self.pending.len() >= MAX_PENDING {
            log::warn!(
                "{}: {} messages out of order; re-reading from storage",
                m.channel,
                MAX_PENDING
            );
            self.pending.clear();
            self.resync();
            return false;
        }
        self.pending.insert(m.seq, m);
        true
    }

    /// Takes the messages that follow `delivered` without a gap, in order.
    pub fn ready(&mut self) -> Vec<Message> {
        let Some(mut d) = self.delivered else {
            return Vec::new();
        };
        let mut out = Vec::new();
        while let Some(entry) = self.pending.first_entry() {
            let seq = *entry.key();
            if seq <= d {
                entry.remove();
            } else if seq == d + 1 {
                out.push(entry.remove());
                d = seq;
            } else {
                break;
            }
        }
        if !out.is_empty() {
            self.delivered = Some(d);
            // Progress: a gap (if any) starts anew.
            self.gap_since = None;
            self.wait_until = None;
            self.missing_reads = 0;
        }
        out
    }

    /// After draining: whether a gap needs a timer, a read or giving up.
    pub fn next(&mut self, now: Instant) -> Next {
        let Some(d) = self.delivered else {
            return Next::Nothing;
        };
        if self.reading {
            return Next::Nothing;
        }
        let first = self.pending.first_key_value().map(|(s, _)| *s);
        if !self.resync && first.is_none() {
            self.gap_since = None;
            self.wait_until = None;
            self.missing_reads = 0;
            return Next::Nothing;
        }
        if first.is_some() {
            self.gap_since.get_or_insert(now);
        }
        let until = *self
            .wait_until
            .get_or_insert(if self.resync { now } else { now + GAP_WAIT });
        if now < until {
            if self.timer {
                return Next::Nothing;
            }
            self.timer = true;
            return Next::Wait(until - now);
        }
        if self.resync {
            self.resync = false;
            self.reading = true;
            self.reading_all = true;
            return Next::Read {
                after: d,
                limit: MAX_READ,
            };
        }
        let first = first.expect("a gap");
        let since = self.gap_since.unwrap_or(now);
        if now.saturating_duration_since(since) >= GAP_GIVE_UP && self.missing_reads >= 2 {
            self.delivered = Some(first - 1);
            self.gap_since = None;
            self.wait_until = None;
            self.missing_reads = 0;
            return Next::Skipped {
                from: d + 1,
                to: first - 1,
            };
        }
        self.reading = true;
        self.reading_all = false;
        Next::Read {
            after: d,
            limit: (first - d - 1).clamp(1, MAX_READ),
        }
    }

    /// The armed timer fired.
    pub fn timer_fired(&mut self) {
        self.timer = false;
    }

    /// The result of a [`Next::Read`] (`limit` as asked). A resync read that came
    /// back full may have more behind it: another read follows at once; a failed one
    /// is tried again after [`GAP_WAIT`].
    pub fn filled(&mut self, read: Result<Vec<Message>, ()>, limit: i64, now: Instant) {
        self.reading = false;
        let (msgs, failed) = match read {
            Ok(v) => (v, false),
            Err(()) => (Vec::new(), true),
        };
        let more = self.reading_all && msgs.len() as i64 >= limit;
        let next = self.delivered.map(|d| d + 1);
        if !failed && !self.reading_all && !msgs.iter().any(|m| Some(m.seq) == next) {
            self.missing_reads += 1;
        }
        for m in msgs {
            if self.delivered.is_none_or(|d| m.seq > d) {
                self.pending.entry(m.seq).or_insert(m);
            }
        }
        if more {
            self.resync = true;
            self.wait_until = None;
        } else {
            self.resync |= self.reading_all && failed;
            // Read again only after another wait.
            self.wait_until = Some(now + GAP_WAIT);
        }
    }

    /// Re-read everything after the last delivered message (events may have been
    /// missed). Before the baseline, the read happens once it is known.
    pub fn resync(&mut self) {
        self.resync = true;
    }

    /// Messages waiting.
    pub fn waiting(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::UserRef;

    fn m(seq: i64) -> Message {
        Message {
            channel: "room:a".into(),
            seq,
            ts: seq,
            from: UserRef::new("1", "a"),
            data: serde_json::value::RawValue::from_string("{}".into()).unwrap().into(),
            client_id: None,
            edited_ts: None,
            deleted: false,
        }
    }

    fn seqs(v: Vec<Message>) -> Vec<i64> {
        v.into_iter().map(|m| m.seq).collect()
    }

    #[test]
    fn held_until_the_baseline() {
        let mut o = InOrder::default();
        assert!(o.offer(m(5)));
        assert!(o.offer(m(6)));
        assert!(o.ready().is_empty());
        assert_eq!(o.next(Instant::now()), Next::Nothing);
        assert!(o.baseline(5), "the snapshot ends at 5");
        assert!(!o.baseline(9), "only the first baseline counts");
        assert_eq!(seqs(o.ready()), [6], "5 was in the snapshot");
        assert_eq!(o.delivered(), Some(6));
    }

    #[test]
    fn early_arrival_waits_for_its_predecessor() {
        let t = Instant::now();
        let mut o = InOrder::default();
        o.baseline(0);
        assert!(o.offer(m(2)));
        assert!(o.offer(m(3)));
        assert!(o.ready().is_empty());
        assert_eq!(o.next(t), Next::Wait(GAP_WAIT));
        assert_eq!(o.next(t), Next::Nothing, "one timer at a time");
        assert!(o.offer(m(1)));
        assert_eq!(seqs(o.ready()), [1, 2, 3]);
        o.timer_fired();
        assert_eq!(o.next(t + GAP_WAIT), Next::Nothing, "the gap closed by itself");
    }

    #[test]
    fn duplicates_and_old_messages_are_dropped() {
        let mut o = InOrder::default();
        o.baseline(3);
        assert!(!o.offer(m(3)));
        assert!(!o.offer(m(1)));
        assert!(o.offer(m(5)));
        assert!(!o.offer(m(5)), "already waiting");
        assert!(o.offer(m(4)));
        assert_eq!(seqs(o.ready()), [4, 5]);
        assert!(!o.offer(m(4)), "already delivered");
        assert!(o.ready().is_empty());
    }

    #[test]
    fn gap_filled_from_storage() {
        let t = Instant::now();
        let mut o = InOrder::default();
        o.baseline(10);
        o.offer(m(14));
        o.ready();
        assert_eq!(o.next(t), Next::Wait(GAP_WAIT));
        o.timer_fired();
        let t1 = t + GAP_WAIT;
        assert_eq!(o.next(t1), Next::Read { after: 10, limit: 3 });
        assert_eq!(o.next(t1), Next::Nothing, "a read is under way");
        o.offer(m(12)); // arrives meanwhile
        o.filled(Ok(vec![m(11), m(12), m(13)]), 3, t1);
        assert_eq!(seqs(o.ready()), [11, 12, 13, 14]);
        assert_eq!(o.next(t1), Next::Nothing);
        assert_eq!(o.waiting(), 0);
    }

    #[test]
    fn gap_read_again_then_given_up() {
        let t = Instant::now();
        let mut o = InOrder::default();
        o.baseline(0);
        o.offer(m(3));
        assert_eq!(o.next(t), Next::Wait(GAP_WAIT));
        o.timer_fired();
        let mut now = t + GAP_WAIT;
        let mut reads = 0;
        loop {
            match o.next(now) {
                Next::Read { after: 0, limit: 2 } => {
                    reads += 1;
                    // Storage does not have 1 and 2 either (or fails).
                    o.filled(if reads % 2 == 0 { Err(()) } else { Ok(vec![]) }, 2, now);
                }
                Next::Wait(d) => {
                    assert_eq!(d, GAP_WAIT);
                    o.timer_fired();
                    now += d;
                }
                Next::Skipped { from, to } => {
                    assert_eq!((from, to), (1, 2));
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(reads >= 2, "the gap was read more than once before giving up ({reads})");
        assert!(now.duration_since(t) >= GAP_GIVE_UP);
        assert_eq!(seqs(o.ready()), [3]);
        assert_eq!(o.next(now), Next::Nothing);
    }

    #[test]
    fn a_gap_waits_while_storage_fails() {
        let t = Instant::now();
        let mut o = InOrder::default();
        o.baseline(0);
        o.offer(m(2));
        let mut now = t;
        for _ in 0..200 {
            match o.next(now) {
                Next::Read { .. } => o.filled(Err(()), 1, now),
                Next::Wait(d) => {
                    o.timer_fired();
                    now += d;
                }
                other => panic!("gave up while storage was failing: {other:?}"),
            }
        }
        assert!(now.duration_since(t) > GAP_GIVE_UP * 2);
        o.offer(m(1));
        assert_eq!(seqs(o.ready()), [1, 2]);
    }

    #[test]
    fn resync_reads_everything_after_delivered() {
        let t = Instant::now();
        let mut o = InOrder::default();
        o.resync();
        assert_eq!(o.next(t), Next::Nothing, "no baseline: nothing to read after yet");
        o.baseline(7);
        assert_eq!(
            o.next(t),
            Next::Read {
                after: 7,
                limit: MAX_READ
            }
        );
        // A full page: read on.
        let page: Vec<Message> = (8..8 + MAX_READ).map(m).collect();
        o.filled(Ok(page), MAX_READ, t);
        assert_eq!(o.ready().len() as i64, MAX_READ);
        let top = 7 + MAX_READ;
        assert_eq!(
            o.next(t),
            Next::Read {
                after: top,
                limit: MAX_READ
            }
        );
        o.filled(Ok(vec![m(top + 1)]), MAX_READ, t);
        assert_eq!(seqs(o.ready()), [top + 1]);
        assert_eq!(o.next(t), Next::Nothing);
    }

    #[test]
    fn overflow_before_the_baseline_reads_after_it() {
        let t = Instant::now();
        let mut o = InOrder::default();
        for s in 1..=MAX_PENDING as i64 + 1 {
            o.offer(m(s));
        }
        assert_eq!(o.waiting(), 0, "dropped");
        o.baseline(3);
        assert!(o.ready().is_empty());
        assert_eq!(
            o.next(t),
            Next::Read {
                after: 3,
                limit: MAX_READ
            }
        );
    }

    #[test]
    fn overflow_drops_waiting_and_resyncs() {
        let t = Instant::now();
        let mut o = InOrder::default();
        o.baseline(0);
        for s in 2..2 + MAX_PENDING as i64 {
            assert!(o.offer(m(s)));
        }
        assert!(!o.offer(m(99_999)));
        assert_eq!(o.waiting(), 0);
        assert_eq!(
            o.next(t),
            Next::Read {
                after: 0,
                limit: MAX_READ
            }
        );
    }
}

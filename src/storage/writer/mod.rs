//! The writer: one thread with its own connection that drains a bounded queue of
//! write operations and commits many of them in one transaction (group commit).
//!
//! While one transaction is being committed (fsync), new requests queue up, so the
//! batch size follows the load by itself. A publish is acknowledged only after its
//! transaction committed. The writer knows nothing of who consumes its commits: the
//! committed messages, edits and deletes (each still carrying its acknowledgement) go
//! into a [`CommitSink`], which startup wires to the hub (fan-out, acks, other nodes).
//!
//! One batch ([`apply`]): lock the seq counters of its channels ([`counters`]), look
//! up its client_ids, apply the ops in order (room checks and memberships answered
//! from caches of what is known to be stored), insert its messages together, store
//! the counters, commit. The statements run on the backend's own connection
//! ([`sql`]); on SQLite, WAL checkpoints run mostly on a thread of their own
//! ([`checkpoint`]). `cargo bench --bench writer` measures all of it.

mod apply;
mod checkpoint;
mod counters;
mod sql;
#[cfg(test)]
mod tests;

use std::{
    collections::{HashMap, HashSet},
    sync::{mpsc, Arc},
    thread,
    time::{Duration, Instant},
};

use serde_json::value::RawValue;

use self::{
    apply::{apply, Effect},
    checkpoint::Checkpointer,
};
use super::Conn;
use crate::{
    auth::Identity,
    channels::{Channel, Namespace},
    conn::Ack,
    error::AppError,
    protocol::{Deleted, Edited, Empty, Message, PublishOk},
};

/// A message to store.
pub struct AppendReq {
    pub channel: Channel,
    pub who: Identity,
    /// The room access check still has to be made (publish into `room:`).
    pub check_room: bool,
    pub data: Arc<RawValue>,
    pub client_id: Option<Arc<str>>,
    pub ack: Ack<PublishOk>,
}

/// Everything the writer does.
pub enum WriteOp {
    Append(AppendReq),
    Edit {
        channel: Channel,
        seq: i64,
        who: Identity,
        data: Arc<RawValue>,
        ack: Ack<Empty>,
    },
    Delete {
        channel: Channel,
        seq: i64,
        who: Identity,
        ack: Ack<Empty>,
    },
    /// Read marker (only ever moves forward).
    Read {
        channel: Channel,
        user_id: Arc<str>,
        seq: i64,
        ack: Ack<Empty>,
    },
    /// Admit a user to a room or DM before a join: the room access check (creating a
    /// missing public room) and recording the membership, batched with other writes.
    Admit {
        channel: Channel,
        who: Identity,
        check_room: bool,
        ack: Ack<Empty>,
    },
    /// Removes a user from a room's members (a moderator's decision; every node's
    /// writer forgets the membership it remembered).
    RemoveMember {
        channel: Arc<str>,
        user_id: Arc<str>,
        ack: Ack<Empty>,
    },
    /// Newest value of a durable last-value channel, optionally with a track point.
    LastValue {
        channel: Channel,
        msg: Message,
        track: Option<(f64, f64)>,
    },
    /// Commit what is queued before this, then end the writer thread.
    Stop,
}

impl WriteOp {
    /// Answers the op's requester with an error (nothing was stored).
    pub fn fail(self, e: AppError) {
        match self {
            WriteOp::Append(r) => r.ack.err(e),
            WriteOp::Edit { ack, .. }
            | WriteOp::Delete { ack, .. }
            | WriteOp::Read { ack, .. }
            | WriteOp::RemoveMember { ack, .. }
            | WriteOp::Admit { ack, .. } => ack.err(e),
            WriteOp::LastValue { channel, .. } => {
                log::warn!("dropped the last value of {}: {}", channel.full, e.message)
            }
            WriteOp::Stop => {}
        }
    }
}

/// A write the writer committed, to be fanned out and acknowledged.
pub enum Commit {
    Message {
        ns: Namespace,
        msg: Message,
        ack: Ack<PublishOk>,
        /// When the writer accepted the publish into its queue.
        accepted: Instant,
    },
    Edit {
        edit: Edited,
        ack: Ack<Empty>,
    },
    Delete {
        delete: Deleted,
        ack: Ack<Empty>,
    },
}

impl Commit {
    pub fn channel(&self) -> &Arc<str> {
        match self {
            Commit::Message { msg, .. } => &msg.channel,
            Commit::Edit { edit, .. } => &edit.channel,
            Commit::Delete { delete, .. } => &delete.channel,
        }
    }
}

/// Where the writer reports what it committed, in commit order, once per batch. Runs
/// on the writer thread: it may wait for room downstream (that backpressure fills the
/// writer's own bounded queue, where new writes are then refused), but must not wait
/// on the writer.
pub trait CommitSink: Send + 'static {
    fn committed(&mut self, commits: Vec<Commit>);

    /// How one batch went (called before [`CommitSink::committed`], also for a batch
    /// that failed or produced no commits). For measurements; ignored by default.
    fn batch_done(&mut self, _stats: &BatchStats) {}
}

/// Size and timing of one write batch.
#[derive(Debug, Clone, Copy)]
pub struct BatchStats {
    /// Operations in the batch.
    pub ops: usize,
    /// Transactions it took (more than one after a conflict with another node).
    pub attempts: usize,
    /// Time spent in the statements of the last attempt.
    pub apply: Duration,
    /// Time of the last attempt's `COMMIT` (the fsync), or its rollback.
    pub commit: Duration,
    /// Whether it was committed.
    pub ok: bool,
}

/// The sending side, shared by every component that writes.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::SyncSender<Queued>,
}

/// An operation and when the queue accepted it.
type Queued = (Instant, WriteOp);

/// The receiving side, handed to [`start`].
pub struct WriterQueue(mpsc::Receiver<Queued>);

/// The writer's bounded queue (`len` operations). The handle can be given out before
/// the writer thread starts.
pub fn queue(len: usize) -> (WriterHandle, WriterQueue) {
    let (tx, rx) = mpsc::sync_channel(len.max(16));
    (WriterHandle { tx }, WriterQueue(rx))
}

impl WriterHandle {
    /// Queues an operation. Overflow policy: a full queue refuses at once and the op's
    /// requester gets `unavailable` (nothing stored); background writes are dropped
    /// with a warning.
    pub fn submit(&self, op: WriteOp) {
        if let Err(e) = self.tx.try_send((Instant::now(), op)) {
            let (op, e) = match e {
                mpsc::TrySendError::Full((_, op)) => (op, AppError::unavailable("storage is overloaded, try again")),
                mpsc::TrySendError::Disconnected((_, op)) => (op, AppError::unavailable("storage is shutting down")),
            };
            op.fail(e);
        }
    }

    /// Queues an operation, waiting for queue space when the queue is full. Overflow
    /// policy: backpressure on the caller (for bulk loads and benchmarks, never on an
    /// async thread); `unavailable` once the writer has stopped.
    pub fn submit_wait(&self, op: WriteOp) {
        if let Err(mpsc::SendError((_, op))) = self.tx.send((Instant::now(), op)) {
            op.fail(AppError::unavailable("storage is shutting down"));
        }
    }

    /// Asks the writer to finish what is queued and stop (waits for queue space).
    pub fn shutdown(&self) {
        let _ = self.tx.send((Instant::now(), WriteOp::Stop));
    }
}

/// Starts the writer thread on `queue`. It ends (after draining its queue) on
/// [`WriterHandle::shutdown`] or when every handle is dropped; join the returned
/// handle to wait for that.
pub fn start(
    mut conn: Conn,
    queue: WriterQueue,
    sink: Box<dyn CommitSink>,
    batch_max: usize,
) -> thread::JoinHandle<()> {
    let rx = queue.0;
    sql::tune_writer_connection(&mut conn);
    let mut w = Writer {
        checkpointer: Checkpointer::start(&mut conn),
        conn,
        sink,
        batch_max: batch_max.max(1),
        known: Known::default(),
    };
    thread::Builder::new()
        .name("chat-writer".into())
        .spawn(move || {
            let mut stopping = false;
            while let Ok(first) = rx.recv() {
                let mut batch = Vec::with_capacity(64);
                let mut accepted = Vec::with_capacity(64);
                let mut next = Some(first);
                while let Some((at, op)) = next.take() {
                    if matches!(op, WriteOp::Stop) {
                        stopping = true;
                        break;
                    }
                    batch.push(op);
                    accepted.push(at);
                    if batch.len() < w.batch_max {
                        next = rx.try_recv().ok();
                    }
                }
                if !batch.is_empty() {
                    w.commit(batch, accepted);
                }
                if stopping {
                    break;
                }
            }
            log::info!("writer stopped");
        })
        .expect("spawn writer thread")
}

/// (channel, user id) of a stored membership.
type MemberKey = (Arc<str>, Arc<str>);

/// Most memberships the writer remembers as stored.
const MEMBER_CACHE_MAX: usize = 100_000;

/// Most rooms the writer remembers as stored.
const ROOM_CACHE_MAX: usize = 100_000;

/// (channel, user) pairs known to be stored in `memberships`. A membership is deleted
/// only by [`WriteOp::RemoveMember`], which every node's writer applies (the change log
/// carries it to the others, which then forget it within seconds). Bounded by [`MEMBER_CACHE_MAX`];
/// overflow policy: the cache is emptied (a miss costs one query, and the working set
/// refills it).
#[derive(Default)]
struct MemberCache(HashSet<MemberKey>);

impl MemberCache {
    fn contains(&self, key: &MemberKey) -> bool {
        self.0.contains(key)
    }

    fn forget(&mut self, key: &MemberKey) {
        self.0.remove(key);
    }

    fn extend(&mut self, keys: impl ExactSizeIterator<Item = MemberKey>) {
        if self.0.len() + keys.len() > MEMBER_CACHE_MAX {
            self.0.clear();
        }
        self.0.extend(keys);
    }
}

/// Rooms known to be stored (by channel name), with their `private` flag. Room rows
/// are never updated or deleted, so the cache stays true with several nodes and
/// writers on other connections. Bounded by [`ROOM_CACHE_MAX`]; overflow policy: the
/// cache is emptied (a miss costs one query).
#[derive(Default)]
struct RoomCache(HashMap<Arc<str>, bool>);

impl RoomCache {
    fn get(&self, channel: &Arc<str>) -> Option<bool> {
        self.0.get(channel).copied()
    }

    fn extend(&mut self, rooms: impl ExactSizeIterator<Item = (Arc<str>, bool)>) {
        if self.0.len() + rooms.len() > ROOM_CACHE_MAX {
            self.0.clear();
        }
        self.0.extend(rooms);
    }
}

/// What the writer knows to be stored (from committed batches only).
#[derive(Default)]
struct Known {
    members: MemberCache,
    rooms: RoomCache,
}

/// What one batch stored or found; added to [`Known`] once the batch committed.
#[derive(Default)]
struct Learned {
    members: HashSet<MemberKey>,
    /// Memberships this batch removed.
    forgotten: Vec<MemberKey>,
    rooms: HashMap<Arc<str>, bool>,
}

struct Writer {
    conn: Conn,
    /// Takes WAL checkpoints off this thread (SQLite).
    checkpointer: Option<Checkpointer>,
    sink: Box<dyn CommitSink>,
    batch_max: usize,
    known: Known,
}

/// Attempts of a batch that failed on a conflict with another node (unique
/// violation, serialization failure, deadlock).
const MAX_ATTEMPTS: usize = 4;

fn retryable(e: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind as K, Error as E};
    match e {
        E::DatabaseError(K::UniqueViolation | K::SerializationFailure, _) => true,
        E::DatabaseError(_, info) => info.message().contains("deadlock"),
        _ => false,
    }
}

/// Did the database refuse something in the batch (one operation's fault, so the
/// others may be committed without it), rather than fail as a whole (connection lost)?
fn isolatable(e: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind as K, Error as E};
    match e {
        E::DatabaseError(K::ClosedConnection | K::UnableToSendCommand, _) => false,
        E::DatabaseError(..) | E::SerializationError(_) | E::DeserializationError(_) | E::QueryBuilderError(_) => true,
        _ => false,
    }
}

impl Writer {
    /// Commits `batch`; `accepted` holds when the queue took each of its ops.
    fn commit(&mut self, batch: Vec<WriteOp>, accepted: Vec<Instant>) {
        let n = batch.len();
        let mut attempt = 0;
        let (result, apply_time, total) = loop {
            attempt += 1;
            let known = &self.known;
            let start = Instant::now();
            let mut applied = start;
            let r = super::immediate_transaction(&mut self.conn, |c| {
                let r = apply(c, &batch, known);
                applied = Instant::now();
                r
            });
            match r {
                Err(e) if attempt < MAX_ATTEMPTS && retryable(&e) => {
                    log::debug!("write batch conflicted ({e}); retrying");
                    continue;
                }
                other => break (other, applied - start, start.elapsed()),
            }
        };
        self.sink.batch_done(&BatchStats {
            ops: n,
            attempts: attempt,
            apply: apply_time,
            commit: total.saturating_sub(apply_time),
            ok: result.is_ok(),
        });
        let (effects, learned) = match result {
            Ok(r) => r,
            Err(e) if n > 1 && isolatable(&e) => {
                // Validation at the edge should make this rare. On PostgreSQL the
                // failed statement aborted the whole transaction: the operations are
                // committed one by one, so only the one at fault fails.
                log::warn!("write batch of {n} failed ({e}); committing its operations one by one");
                for (op, at) in batch.into_iter().zip(accepted) {
                    self.commit(vec![op], vec![at]);
                }
                return;
            }
            Err(e) => {
                log::error!("write batch of {n} failed, nothing stored: {e}");
                for op in batch {
                    op.fail(AppError::unavailable("storage unavailable, nothing stored"));
                }
                return;
            }
        };
        if let Some(cp) = &self.checkpointer {
            cp.nudge();
        }
        self.known.members.extend(learned.members.into_iter());
        for key in &learned.forgotten {
            self.known.members.forget(key);
        }
        self.known.rooms.extend(learned.rooms.into_iter());
        let mut commits = Vec::with_capacity(n);
        for ((op, effect), accepted) in batch.into_iter().zip(effects).zip(accepted) {
            match (op, effect) {
                (WriteOp::Append(r), Effect::Stored(msg)) => commits.push(Commit::Message {
                    ns: r.channel.ns,
                    msg,
                    ack: r.ack,
                    accepted,
                }),
                (WriteOp::Append(r), Effect::Duplicate { seq, ts }) => r.ack.ok(PublishOk {
                    seq,
                    ts,
                    duplicate: true,
                }),
                (
                    WriteOp::Edit {
                        channel,
                        seq,
                        data,
                        ack,
                        ..
                    },
                    Effect::Edited { from, edited_ts },
                ) => commits.push(Commit::Edit {
                    edit: Edited {
                        channel: channel.full,
                        seq,
                        from,
                        data,
                        edited_ts,
                    },
                    ack,
                }),
                (WriteOp::Delete { channel, seq, ack, .. }, Effect::Deleted) => commits.push(Commit::Delete {
                    delete: Deleted {
                        channel: channel.full,
                        seq,
                    },
                    ack,
                }),
                (op, Effect::Refused(e)) => op.fail(e),
                (WriteOp::Read { ack, .. } | WriteOp::Admit { ack, .. } | WriteOp::RemoveMember { ack, .. }, _) => {
                    ack.ok(Empty {})
                }
                (op, _) => debug_assert!(
                    matches!(op, WriteOp::LastValue { .. } | WriteOp::Stop),
                    "an effect that does not match its op"
                ),
            }
        }
        if !commits.is_empty() {
            self.sink.committed(commits);
        }
    }
}

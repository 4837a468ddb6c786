//! The writer: one thread with its own connection that drains a bounded queue of
//! write operations and commits many of them in one transaction (group commit).
//!
//! While one transaction is being committed (fsync), new requests queue up, so the
//! batch size follows the load by itself. A publish is acknowledged only after its
//! transaction committed: the results go to the hub shard of each channel, which
//! broadcasts the event (serialized once) and then acknowledges the publisher.

use std::{
    collections::{HashMap, HashSet},
    sync::{mpsc, Arc},
    thread,
};

use diesel::prelude::*;
use serde::Serialize;
use serde_json::value::RawValue;

use super::{queries, schema::*, Conn};
use crate::{
    auth::{Identity, Role},
    bus::BusEvent,
    channels::{Channel, Namespace},
    error::{AppError, AppResult},
    hub::{Commit, Hub},
    protocol::{now_ms, reply_err, reply_ok, Message, UserRef},
    session::outbox::Outbox,
};

/// Where the outcome of a request goes.
pub enum Ack {
    /// A WebSocket request: the reply frame is queued on the connection.
    Ws { outbox: Arc<Outbox>, id: Option<i64> },
    /// An HTTP request waiting on a oneshot.
    Http(tokio::sync::oneshot::Sender<AppResult<serde_json::Value>>),
    /// Nobody waits (fire and forget).
    None,
}

impl Ack {
    pub fn ok<T: Serialize>(self, v: &T) {
        match self {
            Ack::Ws { outbox, id } => {
                if id.is_some() {
                    outbox.push(reply_ok(id, v));
                }
            }
            Ack::Http(tx) => {
                let _ = tx.send(Ok(serde_json::to_value(v).unwrap_or_default()));
            }
            Ack::None => {}
        }
    }

    pub fn err(self, e: AppError) {
        match self {
            Ack::Ws { outbox, id } => {
                outbox.push(reply_err(id, &e));
            }
            Ack::Http(tx) => {
                let _ = tx.send(Err(e));
            }
            Ack::None => {}
        }
    }

    pub fn result<T: Serialize>(self, r: AppResult<T>) {
        match r {
            Ok(v) => self.ok(&v),
            Err(e) => self.err(e),
        }
    }
}

/// The ok reply of `publish`.
#[derive(Debug, Serialize)]
pub struct PublishOk {
    pub seq: i64,
    pub ts: i64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

/// A message to store.
pub struct AppendReq {
    pub channel: Channel,
    pub who: Identity,
    /// The room access check still has to be made (publish into `room:`).
    pub check_room: bool,
    pub data: Arc<RawValue>,
    pub client_id: Option<Arc<str>>,
    pub ack: Ack,
}

/// Everything the writer does.
pub enum WriteOp {
    Append(AppendReq),
    Edit {
        channel: Channel,
        seq: i64,
        who: Identity,
        data: Arc<RawValue>,
        ack: Ack,
    },
    Delete {
        channel: Channel,
        seq: i64,
        who: Identity,
        ack: Ack,
    },
    /// Read marker (only ever moves forward).
    Read {
        channel: Channel,
        user_id: Arc<str>,
        seq: i64,
        ack: Ack,
    },
    /// Admit a user to a room or DM before a join: the room access check (creating a
    /// missing public room) and recording the membership, batched with other writes.
    Admit {
        channel: Channel,
        who: Identity,
        check_room: bool,
        ack: Ack,
    },
    /// Newest value of a durable last-value channel, optionally with a track point.
    LastValue {
        msg: Message,
        track: Option<(f64, f64)>,
    },
    /// Commit what is queued before this, then end the writer thread.
    Stop,
}

/// The sending side, shared by sessions and HTTP handlers.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::SyncSender<WriteOp>,
}

impl WriterHandle {
    /// Queues an operation; a full queue fails fast (nothing stored).
    pub fn submit(&self, op: WriteOp) -> Result<(), Box<(WriteOp, AppError)>> {
        self.tx.try_send(op).map_err(|e| {
            Box::new(match e {
                mpsc::TrySendError::Full(op) => (op, AppError::unavailable("storage is overloaded, try again")),
                mpsc::TrySendError::Disconnected(op) => (op, AppError::unavailable("storage is shutting down")),
            })
        })
    }

    /// Asks the writer to finish what is queued and stop (waits for queue space).
    pub fn shutdown(&self) {
        let _ = self.tx.send(WriteOp::Stop);
    }

    /// Queues an operation and fails its ack when the queue refuses it.
    pub fn submit_or_fail(&self, op: WriteOp) {
        if let Err(b) = self.submit(op) {
            let (op, e) = *b;
            match op {
                WriteOp::Append(r) => r.ack.err(e),
                WriteOp::Edit { ack, .. }
                | WriteOp::Delete { ack, .. }
                | WriteOp::Read { ack, .. }
                | WriteOp::Admit { ack, .. } => ack.err(e),
                WriteOp::LastValue { .. } | WriteOp::Stop => {
                    log::warn!("write queue full: dropped a background write")
                }
            }
        }
    }
}

/// Starts the writer thread. It ends (after draining its queue) when every
/// [`WriterHandle`] is dropped; join the returned handle to wait for that.
pub fn start(conn: Conn, hub: Hub, queue: usize, batch_max: usize) -> (WriterHandle, thread::JoinHandle<()>) {
    let (tx, rx) = mpsc::sync_channel(queue.max(16));
    let mut w = Writer {
        conn,
        hub,
        batch_max: batch_max.max(1),
        members: HashSet::new(),
    };
    let join = thread::Builder::new()
        .name("chat-writer".into())
        .spawn(move || {
            let mut stopping = false;
            while let Ok(first) = rx.recv() {
                let mut batch = Vec::with_capacity(64);
                let mut next = Some(first);
                while let Some(op) = next.take() {
                    if matches!(op, WriteOp::Stop) {
                        stopping = true;
                        break;
                    }
                    batch.push(op);
                    if batch.len() < w.batch_max {
                        next = rx.try_recv().ok();
                    }
                }
                if !batch.is_empty() {
                    w.commit(batch);
                }
                if stopping {
                    break;
                }
            }
            log::info!("writer stopped");
        })
        .expect("spawn writer thread");
    (WriterHandle { tx }, join)
}

struct Writer {
    conn: Conn,
    hub: Hub,
    batch_max: usize,
    /// (channel, user) pairs known to be stored in `memberships` (they are never
    /// deleted, so the cache stays true with several nodes).
    members: HashSet<MemberKey>,
}

/// (channel, user id) of a stored membership.
type MemberKey = (Arc<str>, Arc<str>);

/// (channel, sender, client_id) of a message stored in the current batch.
type DedupeKey = (Arc<str>, Arc<str>, Arc<str>);

/// What one operation did inside the transaction (acks are sent after the commit).
enum Effect {
    Stored(Message),
    Duplicate {
        seq: i64,
        ts: i64,
    },
    Edited {
        from: UserRef,
        edited_ts: i64,
    },
    Deleted,
    Refused(AppError),
    /// Succeeded; the reply (if any) is `{}`.
    Done,
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

impl Writer {
    fn commit(&mut self, batch: Vec<WriteOp>) {
        let n = batch.len();
        let mut attempt = 0;
        let result = loop {
            attempt += 1;
            let members = &self.members;
            let r = self.conn.transaction(|c| apply(c, &batch, members));
            match r {
                Err(e) if attempt < MAX_ATTEMPTS && retryable(&e) => {
                    log::debug!("write batch conflicted ({e}); retrying");
                    continue;
                }
                other => break other,
            }
        };
        match result {
            Ok((effects, new_members)) => {
                self.members.extend(new_members);
                let mut commits = Vec::new();
                for (op, effect) in batch.into_iter().zip(effects) {
                    match (op, effect) {
                        (WriteOp::Append(r), Effect::Stored(msg)) => commits.push(Commit::Message { msg, ack: r.ack }),
                        (WriteOp::Append(r), Effect::Duplicate { seq, ts }) => r.ack.ok(&PublishOk {
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
                            channel: channel.full,
                            seq,
                            from,
                            data,
                            edited_ts,
                            ack,
                        }),
                        (WriteOp::Delete { channel, seq, ack, .. }, Effect::Deleted) => commits.push(Commit::Delete {
                            channel: channel.full,
                            seq,
                            ack,
                        }),
                        (op, Effect::Refused(e)) => fail(op, e),
                        (op, _) => {
                            if let Some(ack) = ack_of(op) {
                                ack.ok(&serde_json::Map::new());
                            }
                        }
                    }
                }
                if !commits.is_empty() {
                    if self.hub.clustered() {
                        for c in &commits {
                            self.hub.publish(match c {
                                Commit::Message { msg, .. } => BusEvent::Message(msg.into()),
                                Commit::Edit {
                                    channel,
                                    seq,
                                    from,
                                    data,
                                    edited_ts,
                                    ..
                                } => BusEvent::Edit {
                                    channel: channel.clone(),
                                    seq: *seq,
                                    from: from.clone(),
                                    data: data.as_ref().to_owned(),
                                    edited_ts: *edited_ts,
                                },
                                Commit::Delete { channel, seq, .. } => BusEvent::Delete {
                                    channel: channel.clone(),
                                    seq: *seq,
                                },
                            });
                        }
                    }
                    self.hub.deliver(commits);
                }
            }
            Err(e) => {
                log::error!("write batch of {n} failed, nothing stored: {e}");
                for op in batch {
                    fail(op, AppError::unavailable("storage unavailable, nothing stored"));
                }
            }
        }
    }
}

/// The ack of an op, if it has one.
fn ack_of(op: WriteOp) -> Option<Ack> {
    match op {
        WriteOp::Append(r) => Some(r.ack),
        WriteOp::Edit { ack, .. } | WriteOp::Delete { ack, .. } | WriteOp::Read { ack, .. } => Some(ack),
        WriteOp::Admit { ack, .. } => Some(ack),
        WriteOp::LastValue { .. } | WriteOp::Stop => None,
    }
}

fn fail(op: WriteOp, e: AppError) {
    if let Some(ack) = ack_of(op) {
        ack.err(e);
    }
}

/// Locks the seq counter of `channel` for this transaction (creating it) and returns
/// its top seq and epoch. Other nodes' writers wait on the lock, so seqs stay
/// gap-free and unique across nodes.
fn lock_top(c: &mut Conn, channel: &str) -> diesel::QueryResult<(i64, String)> {
    let locked = diesel::update(channels::table.find(channel))
        .set(channels::seq.eq(channels::seq))
        .execute(c)?;
    if locked == 0 {
        let epoch = hex::encode(rand::random::<[u8; 4]>());
        diesel::insert_into(channels::table)
            .values((
                channels::name.eq(channel),
                channels::seq.eq(0i64),
                channels::epoch.eq(&epoch),
            ))
            .execute(c)?;
    }
    channels::table
        .find(channel)
        .select((channels::seq, channels::epoch))
        .first(c)
}

/// Applies a batch inside one transaction; returns one effect per op and the
/// memberships it stored.
fn apply(
    c: &mut Conn,
    batch: &[WriteOp],
    members: &HashSet<MemberKey>,
) -> diesel::QueryResult<(Vec<Effect>, Vec<MemberKey>)> {
    // Lock every channel that gets messages, in name order (no deadlocks between nodes).
    let mut chans: Vec<&Arc<str>> = batch
        .iter()
        .filter_map(|op| match op {
            WriteOp::Append(r) => Some(&r.channel.full),
            _ => None,
        })
        .collect();
    chans.sort();
    chans.dedup();
    let mut tops: HashMap<Arc<str>, (i64, String)> = HashMap::with_capacity(chans.len());
    for ch in chans {
        tops.insert(ch.clone(), lock_top(c, ch)?);
    }
    let mut stored_members: Vec<MemberKey> = Vec::new();
    let mut dedupe: HashMap<DedupeKey, (i64, i64)> = HashMap::new();
    let mut effects = Vec::with_capacity(batch.len());
    for op in batch {
        let effect = match op {
            WriteOp::Append(req) => {
                if req.check_room {
                    match queries::room_access(c, &req.channel, &req.who) {
                        Ok(()) => {}
                        Err(e) if e.code == crate::error::ErrorCode::Unavailable => {
                            return Err(diesel::result::Error::RollbackTransaction)
                        }
                        Err(e) => {
                            effects.push(Effect::Refused(e));
                            continue;
                        }
                    }
                }
                let ch = &req.channel.full;
                if let Some(cid) = &req.client_id {
                    let key = (ch.clone(), req.who.user.id.clone(), cid.clone());
                    let found = match dedupe.get(&key) {
                        Some(v) => Some(*v),
                        None => messages::table
                            .filter(messages::channel.eq(&**ch))
                            .filter(messages::sender_id.eq(&*req.who.user.id))
                            .filter(messages::client_id.eq(&**cid))
                            .select((messages::seq, messages::ts))
                            .first::<(i64, i64)>(c)
                            .optional()?,
                    };
                    if let Some((seq, ts)) = found {
                        effects.push(Effect::Duplicate { seq, ts });
                        continue;
                    }
                }
                let top = tops.get_mut(ch).expect("locked above");
                top.0 += 1;
                let seq = top.0;
                let ts = now_ms();
                diesel::insert_into(messages::table)
                    .values((
                        messages::channel.eq(&**ch),
                        messages::seq.eq(seq),
                        messages::ts.eq(ts),
                        messages::sender_id.eq(&*req.who.user.id),
                        messages::sender_name.eq(&*req.who.user.name),
                        messages::client_id.eq(req.client_id.as_deref()),
                        messages::data.eq(req.data.get()),
                        messages::deleted.eq(false),
                    ))
                    .execute(c)?;
                if let Some(cid) = &req.client_id {
                    dedupe.insert((ch.clone(), req.who.user.id.clone(), cid.clone()), (seq, ts));
                }
                // Both ends of a DM belong to it from its first message on.
                if let Some((a, b)) = req.channel.dm_pair() {
                    for id in [a, b] {
                        let key: MemberKey = (ch.clone(), id.into());
                        if !members.contains(&key) && !stored_members.contains(&key) {
                            let name = if id == &*req.who.user.id {
                                req.who.user.name.clone()
                            } else {
                                id.into()
                            };
                            queries::add_member(
                                c,
                                ch,
                                &UserRef {
                                    id: key.1.clone(),
                                    name,
                                },
                            )?;
                            stored_members.push(key);
                        }
                    }
                }
                Effect::Stored(Message {
                    channel: ch.clone(),
                    seq,
                    ts,
                    from: req.who.user.clone(),
                    data: req.data.clone(),
                    client_id: req.client_id.clone(),
                    edited_ts: None,
                    deleted: false,
                })
            }
            WriteOp::Edit {
                channel,
                seq,
                who,
                data,
                ..
            } => match own_message(c, channel, *seq, who, false)? {
                Err(e) => Effect::Refused(e),
                Ok(author) => {
                    let now = now_ms();
                    diesel::update(messages::table.find((&*channel.full, *seq)))
                        .set((messages::data.eq(data.get()), messages::edited_ts.eq(Some(now))))
                        .execute(c)?;
                    Effect::Edited {
                        from: author,
                        edited_ts: now,
                    }
                }
            },
            WriteOp::Delete { channel, seq, who, .. } => match own_message(c, channel, *seq, who, true)? {
                Err(e) => Effect::Refused(e),
                Ok(_) => {
                    diesel::update(messages::table.find((&*channel.full, *seq)))
                        .set((messages::deleted.eq(true), messages::data.eq("{}")))
                        .execute(c)?;
                    Effect::Deleted
                }
            },
            WriteOp::Read {
                channel, user_id, seq, ..
            } => {
                let mine = read_markers::table
                    .filter(read_markers::user_id.eq(&**user_id))
                    .filter(read_markers::channel.eq(&*channel.full));
                let current: Option<i64> = mine.select(read_markers::seq).first(c).optional()?;
                match current {
                    Some(cur) if cur >= *seq => {}
                    Some(_) => {
                        diesel::update(mine).set(read_markers::seq.eq(*seq)).execute(c)?;
                    }
                    None => {
                        diesel::insert_into(read_markers::table)
                            .values((
                                read_markers::user_id.eq(&**user_id),
                                read_markers::channel.eq(&*channel.full),
                                read_markers::seq.eq(*seq),
                            ))
                            .execute(c)?;
                    }
                }
                Effect::Done
            }
            WriteOp::Admit {
                channel,
                who,
                check_room,
                ..
            } => {
                let key = (channel.full.clone(), who.user.id.clone());
                let known = members.contains(&key) || stored_members.contains(&key);
                // A known member of a room passed this check before (members are never
                // removed), so only newcomers cost a query.
                let access = if *check_room && !known {
                    match queries::room_access(c, channel, who) {
                        Err(e) if e.code == crate::error::ErrorCode::Unavailable => {
                            return Err(diesel::result::Error::RollbackTransaction)
                        }
                        r => r,
                    }
                } else {
                    Ok(())
                };
                match access {
                    Err(e) => Effect::Refused(e),
                    Ok(()) => {
                        if !known && !who.anonymous {
                            queries::add_member(c, &channel.full, &who.user)?;
                            stored_members.push(key);
                        }
                        Effect::Done
                    }
                }
            }
            WriteOp::Stop => Effect::Done,
            WriteOp::LastValue { msg, track } => {
                let updated = diesel::update(last_values::table.find(&*msg.channel))
                    .set((
                        last_values::seq.eq(msg.seq),
                        last_values::ts.eq(msg.ts),
                        last_values::sender_id.eq(&*msg.from.id),
                        last_values::sender_name.eq(&*msg.from.name),
                        last_values::data.eq(msg.data.get()),
                    ))
                    .execute(c)?;
                if updated == 0 {
                    diesel::insert_into(last_values::table)
                        .values((
                            last_values::channel.eq(&*msg.channel),
                            last_values::seq.eq(msg.seq),
                            last_values::ts.eq(msg.ts),
                            last_values::sender_id.eq(&*msg.from.id),
                            last_values::sender_name.eq(&*msg.from.name),
                            last_values::data.eq(msg.data.get()),
                        ))
                        .execute(c)?;
                }
                if let Some((lat, lon)) = track {
                    let entity = msg.channel.strip_prefix("loc:").unwrap_or(&msg.channel);
                    diesel::insert_into(track_points::table)
                        .values((
                            track_points::entity.eq(entity),
                            track_points::ts.eq(msg.ts),
                            track_points::lat.eq(*lat),
                            track_points::lon.eq(*lon),
                        ))
                        .execute(c)?;
                }
                Effect::Done
            }
        };
        effects.push(effect);
    }
    for (ch, (seq, _)) in &tops {
        diesel::update(channels::table.find(&**ch))
            .set(channels::seq.eq(*seq))
            .execute(c)?;
    }
    Ok((effects, stored_members))
}

/// Finds message `seq` and checks that `who` may change it (author; admins may delete).
fn own_message(
    c: &mut Conn,
    ch: &Channel,
    seq: i64,
    who: &Identity,
    deleting: bool,
) -> Result<Result<UserRef, AppError>, diesel::result::Error> {
    if !matches!(ch.ns, Namespace::Room | Namespace::Dm | Namespace::Sports) {
        return Ok(Err(AppError::bad_request(format!(
            "{} keeps no editable messages",
            ch.full
        ))));
    }
    let row: Option<(String, String, bool)> = messages::table
        .find((&*ch.full, seq))
        .select((messages::sender_id, messages::sender_name, messages::deleted))
        .first(c)
        .optional()?;
    Ok(match row {
        None | Some((_, _, true)) => Err(AppError::not_found(format!("no message {seq} in {}", ch.full))),
        Some((sid, sname, false)) => {
            if sid == *who.user.id || (deleting && who.role == Role::Admin) {
                Ok(UserRef::new(sid, sname))
            } else {
                Err(AppError::forbidden("only the author may change a message"))
            }
        }
    })
}

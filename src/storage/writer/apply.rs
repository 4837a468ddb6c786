//! The body of one group-commit transaction: each queued operation applied in order,
//! with its outcome recorded as an [`Effect`] (acks are sent only after the commit).

use std::{collections::HashMap, sync::Arc};

use diesel::prelude::*;

use super::{
    counters::{self, Top},
    sql::{self, ClientIdKey},
    AppendReq, Known, Learned, MemberKey, WriteOp,
};
use crate::{
    auth::{Identity, Role},
    channels::{Channel, Storage},
    error::AppError,
    protocol::{now_ms, Message, UserRef},
    storage::{models::LastValueRow, schema::*, Conn},
};

/// What one operation did inside the transaction.
pub(super) enum Effect {
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

/// State of one transaction while its operations are applied.
struct Txn<'a> {
    /// Messages to insert (together) before any other op.
    pending: Vec<sql::NewMessage>,
    /// Locked seq counters by channel.
    tops: HashMap<Arc<str>, Top>,
    /// (seq, ts) of the messages with a `client_id` of this batch that are stored:
    /// before the batch, or earlier in it.
    dedupe: HashMap<ClientIdKey, (i64, i64)>,
    /// What was known to be stored before the batch.
    known: &'a Known,
    /// What this batch stored or found (known once it committed).
    learned: Learned,
}

impl Txn<'_> {
    /// Inserts the pending messages.
    fn flush(&mut self, c: &mut Conn) -> diesel::QueryResult<()> {
        sql::insert_messages(c, &self.pending)?;
        self.pending.clear();
        Ok(())
    }

    fn is_member(&self, key: &MemberKey) -> bool {
        (self.known.members.contains(key) && !self.learned.forgotten.contains(key))
            || self.learned.members.contains(key)
    }

    fn room_private(&self, channel: &Arc<str>) -> Option<bool> {
        self.known
            .rooms
            .get(channel)
            .or_else(|| self.learned.rooms.get(channel).copied())
    }
}

/// Applies a batch inside one transaction; returns one effect per op and what the
/// batch learned about stored rooms and memberships.
pub(super) fn apply(c: &mut Conn, batch: &[WriteOp], known: &Known) -> diesel::QueryResult<(Vec<Effect>, Learned)> {
    // Lock every channel that gets messages.
    let mut chans: Vec<&Arc<str>> = batch
        .iter()
        .filter_map(|op| match op {
            WriteOp::Append(r) => Some(&r.channel.full),
            _ => None,
        })
        .collect();
    chans.sort();
    chans.dedup();
    let tops = counters::lock(c, &chans)?;
    // With the channels locked, no other writer can store one of these meanwhile.
    let mut keys: Vec<ClientIdKey> = batch
        .iter()
        .filter_map(|op| match op {
            WriteOp::Append(AppendReq {
                channel,
                who,
                client_id: Some(cid),
                ..
            }) => Some((channel.full.clone(), who.user.id.clone(), cid.clone())),
            _ => None,
        })
        .collect();
    keys.sort();
    keys.dedup();
    let mut t = Txn {
        pending: Vec::with_capacity(batch.len()),
        tops,
        dedupe: sql::find_client_ids(c, &keys)?,
        known,
        learned: Learned::default(),
    };
    let mut effects = Vec::with_capacity(batch.len());
    for op in batch {
        // Messages are inserted in runs; any other op sees the ones before it.
        if !matches!(op, WriteOp::Append(_)) && !t.pending.is_empty() {
            t.flush(c)?;
        }
        effects.push(match op {
            WriteOp::Append(req) => append(c, &mut t, req)?,
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
                read_marker(c, &channel.full, user_id, *seq)?;
                Effect::Done
            }
            WriteOp::Admit {
                channel,
                who,
                check_room,
                ..
            } => admit(c, &mut t, channel, who, *check_room)?,
            WriteOp::LastValue { channel, msg, track } => {
                last_value(c, channel, msg, *track)?;
                Effect::Done
            }
            WriteOp::RemoveMember { channel, user_id, .. } => {
                sql::remove_member(c, channel, user_id)?;
                let key: MemberKey = (channel.clone(), user_id.clone());
                t.learned.members.remove(&key);
                t.learned.forgotten.push(key);
                Effect::Done
            }
            WriteOp::Stop => Effect::Done,
        });
    }
    t.flush(c)?;
    counters::store(c, &t.tops)?;
    Ok((effects, t.learned))
}

/// The room access check inside the transaction (creating a missing public room). A
/// refusal is the op's effect; storage failing aborts the whole batch (nothing is
/// stored, every op gets `unavailable`). Rooms and memberships seen are remembered.
fn room_check(c: &mut Conn, t: &mut Txn, ch: &Channel, who: &Identity) -> diesel::QueryResult<Result<(), AppError>> {
    let private = match t.room_private(&ch.full) {
        Some(p) => p,
        None => {
            let p = match sql::room_private(c, ch.name())? {
                Some(p) => p,
                None if sql::create_public_room(c, ch.name(), &who.user.id, now_ms())? => false,
                // Created meanwhile by another connection.
                None => match sql::room_private(c, ch.name())? {
                    Some(p) => p,
                    None => return Ok(Err(AppError::internal("room vanished"))),
                },
            };
            t.learned.rooms.insert(ch.full.clone(), p);
            p
        }
    };
    if !private || who.role == Role::Admin {
        return Ok(Ok(()));
    }
    let key = (ch.full.clone(), who.user.id.clone());
    if t.is_member(&key) {
        return Ok(Ok(()));
    }
    if sql::member_exists(c, &ch.full, &who.user.id)? {
        t.learned.members.insert(key);
        return Ok(Ok(()));
    }
    Ok(Err(AppError::forbidden(format!("not a member of {}", ch.full))))
}

fn append(c: &mut Conn, t: &mut Txn, req: &AppendReq) -> diesel::QueryResult<Effect> {
    if req.check_room {
        if let Err(e) = room_check(c, t, &req.channel, &req.who)? {
            return Ok(Effect::Refused(e));
        }
    }
    let ch = &req.channel.full;
    let sender = &req.who.user;
    let key = req
        .client_id
        .as_ref()
        .map(|cid| (ch.clone(), sender.id.clone(), cid.clone()));
    if let Some(&(seq, ts)) = key.as_ref().and_then(|k| t.dedupe.get(k)) {
        return Ok(Effect::Duplicate { seq, ts });
    }
    let top = t.tops.get_mut(ch).expect("locked at the start of the batch");
    top.now += 1;
    let seq = top.now;
    let ts = now_ms();
    t.pending.push(sql::NewMessage {
        channel: sql::SharedText(ch.clone()),
        seq,
        ts,
        sender_id: sql::SharedText(sender.id.clone()),
        sender_name: sql::SharedText(sender.name.clone()),
        client_id: req.client_id.clone().map(sql::SharedText),
        data: sql::JsonText(req.data.clone()),
    });
    if let Some(key) = key {
        t.dedupe.insert(key, (seq, ts));
    }
    // Both ends of a DM belong to it from its first message on.
    if let Some((a, b)) = req.channel.dm_pair() {
        for id in [a, b] {
            let key: MemberKey = (ch.clone(), id.into());
            if !t.is_member(&key) {
                let name = if id == &*sender.id { &*sender.name } else { id };
                sql::add_member(c, ch, id, name, ts)?;
                t.learned.members.insert(key);
            }
        }
    }
    Ok(Effect::Stored(Message {
        channel: ch.clone(),
        seq,
        ts,
        from: sender.clone(),
        data: req.data.clone(),
        client_id: req.client_id.clone(),
        edited_ts: None,
        deleted: false,
    }))
}

/// Admits a user to a room or DM before a join: the room access check (creating a
/// missing public room) and the membership record.
fn admit(c: &mut Conn, t: &mut Txn, ch: &Channel, who: &Identity, check_room: bool) -> diesel::QueryResult<Effect> {
    let key = (ch.full.clone(), who.user.id.clone());
    let known = t.is_member(&key);
    // A known member of a room passed this check before (a removal makes the writer
    // forget the membership), so only newcomers cost a query.
    if check_room && !known {
        if let Err(e) = room_check(c, t, ch, who)? {
            return Ok(Effect::Refused(e));
        }
    }
    if !known && !who.anonymous {
        sql::add_member(c, &ch.full, &who.user.id, &who.user.name, now_ms())?;
        t.learned.members.insert(key);
    }
    Ok(Effect::Done)
}

/// Moves a read marker forward (never back).
fn read_marker(c: &mut Conn, channel: &str, user_id: &str, seq: i64) -> diesel::QueryResult<()> {
    let mine = read_markers::table
        .filter(read_markers::user_id.eq(user_id))
        .filter(read_markers::channel.eq(channel));
    let current: Option<i64> = mine.select(read_markers::seq).get_result(c).optional()?;
    match current {
        Some(cur) if cur >= seq => {}
        Some(_) => {
            diesel::update(mine).set(read_markers::seq.eq(seq)).execute(c)?;
        }
        None => {
            diesel::insert_into(read_markers::table)
                .values((
                    read_markers::user_id.eq(user_id),
                    read_markers::channel.eq(channel),
                    read_markers::seq.eq(seq),
                ))
                .execute(c)?;
        }
    }
    Ok(())
}

/// Stores the newest value of a durable last-value channel, and a track point.
fn last_value(c: &mut Conn, ch: &Channel, msg: &Message, track: Option<(f64, f64)>) -> diesel::QueryResult<()> {
    let row = LastValueRow {
        channel: &ch.full,
        seq: msg.seq,
        ts: msg.ts,
        sender_id: &msg.from.id,
        sender_name: &msg.from.name,
        data: msg.data.get(),
    };
    let updated = diesel::update(last_values::table.find(&*ch.full))
        .set(&row)
        .execute(c)?;
    if updated == 0 {
        diesel::insert_into(last_values::table).values(&row).execute(c)?;
    }
    if let Some((lat, lon)) = track {
        diesel::insert_into(track_points::table)
            .values((
                track_points::entity.eq(ch.name()),
                track_points::ts.eq(msg.ts),
                track_points::lat.eq(lat),
                track_points::lon.eq(lon),
            ))
            .execute(c)?;
    }
    Ok(())
}

/// Finds message `seq` and checks that `who` may change it (author; admins, and in a
/// room its owner, may delete).
fn own_message(
    c: &mut Conn,
    ch: &Channel,
    seq: i64,
    who: &Identity,
    deleting: bool,
) -> diesel::QueryResult<Result<UserRef, AppError>> {
    if ch.policy().storage != Storage::Every {
        return Ok(Err(AppError::bad_request(format!(
            "{} keeps no editable messages",
            ch.full
        ))));
    }
    let row: Option<(String, String, bool)> = messages::table
        .find((&*ch.full, seq))
        .select((messages::sender_id, messages::sender_name, messages::deleted))
        .get_result(c)
        .optional()?;
    Ok(match row {
        None | Some((_, _, true)) => Err(AppError::not_found(format!("no message {seq} in {}", ch.full))),
        Some((sid, sname, false)) => {
            let mut moderator = || -> diesel::QueryResult<bool> {
                if who.role == Role::Admin {
                    return Ok(true);
                }
                if ch.ns != crate::channels::Namespace::Room {
                    return Ok(false);
                }
                let owner: Option<String> = rooms::table
                    .find(ch.name())
                    .select(rooms::created_by)
                    .get_result(c)
                    .optional()?;
                Ok(owner.as_deref() == Some(&*who.user.id))
            };
            if sid == *who.user.id || (deleting && moderator()?) {
                Ok(UserRef::new(sid, sname))
            } else {
                Err(AppError::forbidden("only the author may change a message"))
            }
        }
    })
}

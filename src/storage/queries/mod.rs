//! Blocking queries of the read side and the rare writes (accounts, rooms). Called
//! through [`super::Db::run`].

use diesel::prelude::*;
use serde::Serialize;

use super::{
    is_unique_violation,
    models::{MessageRow, RoomRow},
    schema::*,
    Conn,
};

use crate::{
    auth::{Identity, Role},
    channels::{Channel, Namespace},
    error::{AppError, AppResult},
    protocol::{now_ms, ChannelSummary, Message, UserRef},
};

mod bans;
mod users;
pub use bans::*;
pub use users::*;

pub fn get_room(c: &mut Conn, name: &str) -> AppResult<Option<RoomRow>> {
    Ok(rooms::table
        .find(name)
        .select(RoomRow::as_select())
        .first(c)
        .optional()?)
}

/// Creates a room with its creator (and any given members) as members.
/// An existing name is `bad_request`.
pub fn create_room(
    c: &mut Conn,
    name: &str,
    private: bool,
    creator: &UserRef,
    members: &[UserRef],
) -> AppResult<RoomRow> {
    c.transaction(|c| {
        let row = RoomRow {
            name: name.to_string(),
            private,
            created_by: creator.id.to_string(),
            created_at: now_ms(),
            archived: false,
        };
        match diesel::insert_into(rooms::table).values(&row).execute(c) {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => return Err(AppError::bad_request("a room with that name exists")),
            Err(e) => return Err(e.into()),
        }
        let channel = Namespace::Room.channel(name);
        add_member(c, &channel, creator)?;
        for m in members {
            add_member(c, &channel, m)?;
        }
        Ok(row)
    })
}

/// Adds a member (no-op when already one). A concurrent insert of the same pair fails
/// with a unique violation, which the writer retries and the HTTP route tolerates.
pub fn add_member(c: &mut Conn, channel: &str, user: &UserRef) -> diesel::QueryResult<()> {
    if member_exists(c, channel, &user.id)? {
        return Ok(());
    }
    diesel::insert_into(memberships::table)
        .values((
            memberships::channel.eq(channel),
            memberships::user_id.eq(&*user.id),
            memberships::user_name.eq(&*user.name),
            memberships::joined_at.eq(now_ms()),
        ))
        .execute(c)?;
    Ok(())
}

fn member_exists(c: &mut Conn, channel: &str, user_id: &str) -> diesel::QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        memberships::table
            .filter(memberships::channel.eq(channel))
            .filter(memberships::user_id.eq(user_id)),
    ))
    .get_result(c)
}

pub fn is_member(c: &mut Conn, channel: &str, user_id: &str) -> AppResult<bool> {
    Ok(member_exists(c, channel, user_id)?)
}

/// The access check of rooms: a missing room is created public (and so allowed); a
/// private one needs membership. Admins pass everywhere.
pub fn room_access(c: &mut Conn, ch: &Channel, who: &Identity) -> AppResult<()> {
    debug_assert_eq!(ch.ns, Namespace::Room);
    let room = match get_room(c, ch.name())? {
        Some(r) => r,
        None => {
            let row = RoomRow {
                name: ch.name().to_string(),
                private: false,
                created_by: who.user.id.to_string(),
                created_at: now_ms(),
                archived: false,
            };
            match diesel::insert_into(rooms::table).values(&row).execute(c) {
                Ok(_) => return Ok(()),
                Err(e) if is_unique_violation(&e) => {
                    get_room(c, ch.name())?.ok_or_else(|| AppError::internal("room vanished"))?
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    if !room.private || who.role == Role::Admin || is_member(c, &ch.full, who.id())? {
        Ok(())
    } else {
        Err(AppError::forbidden(format!("not a member of {}", ch.full)))
    }
}

/// The read-side access check of rooms: like [`room_access`], but a missing room is
/// `not_found` (reading never creates a room).
pub fn room_readable(c: &mut Conn, ch: &Channel, who: &Identity) -> AppResult<Readable> {
    debug_assert_eq!(ch.ns, Namespace::Room);
    let Some(room) = get_room(c, ch.name())? else {
        return Err(AppError::not_found(format!("no room {}", ch.full)));
    };
    if !room.private {
        Ok(Readable::Public)
    } else if who.role == Role::Admin || is_member(c, &ch.full, who.id())? {
        Ok(Readable::Private)
    } else {
        Err(AppError::forbidden(format!("not a member of {}", ch.full)))
    }
}

/// Why a room may be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readable {
    /// Anyone may (a room never becomes private: callers may remember this).
    Public,
    /// A private room the user belongs to (or an admin).
    Private,
}

/// A room as listed by `GET /api/rooms`.
#[derive(Debug, Serialize)]
pub struct RoomInfo {
    pub name: String,
    pub channel: String,
    pub private: bool,
    pub created_by: String,
    pub created_at: i64,
    pub member: bool,
}

/// Public rooms and the private rooms `user_id` belongs to.
pub fn list_rooms(c: &mut Conn, user_id: &str) -> AppResult<Vec<RoomInfo>> {
    let mine: Vec<String> = memberships::table
        .filter(memberships::user_id.eq(user_id))
        .filter(memberships::channel.like(Namespace::Room.channel("%")))
        .select(memberships::channel)
        .load(c)?;
    let mine: std::collections::HashSet<String> = mine.into_iter().collect();
    let rows: Vec<RoomRow> = rooms::table
        .order(rooms::name.asc())
        .select(RoomRow::as_select())
        .load(c)?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let channel = Namespace::Room.channel(&r.name);
            let member = mine.contains(&channel);
            (!r.private || member).then_some(RoomInfo {
                channel,
                name: r.name,
                private: r.private,
                created_by: r.created_by,
                created_at: r.created_at,
                member,
            })
        })
        .collect())
}

/// Top seq and epoch of a stored channel (`0` and `""` before its first message).
pub fn channel_top(c: &mut Conn, channel: &str) -> AppResult<(i64, String)> {
    Ok(channels::table
        .find(channel)
        .select((channels::seq, channels::epoch))
        .first(c)
        .optional()?
        .unwrap_or((0, String::new())))
}

/// Where a page of history starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum From {
    /// The newest messages.
    Newest,
    /// The messages just before this seq.
    Before(i64),
    /// The messages just after this seq.
    After(i64),
}

/// A page of messages, ascending.
#[derive(Debug, Default)]
pub struct Page {
    pub messages: Vec<Message>,
    /// The byte budget cut the page short (more messages follow in its direction).
    pub more: bool,
}

/// An upper bound of the bytes `m` takes in a reply (JSON escapes included).
pub fn reply_size(m: &Message) -> usize {
    const FIXED: usize = 128;
    let escaped = |s: &str| s.len() * 6;
    FIXED
        + m.data.get().len()
        + escaped(&m.channel)
        + escaped(&m.from.id)
        + escaped(&m.from.name)
        + m.client_id.as_deref().map_or(0, escaped)
}

/// Rows read per query while filling a page.
const READ_CHUNK: i64 = 64;

/// One chunk of rows: after `after` ascending, or before `before` descending.
fn rows(c: &mut Conn, channel: &str, from: From, n: i64) -> AppResult<Vec<Message>> {
    let q = messages::table.filter(messages::channel.eq(channel)).into_boxed();
    let q = match from {
        From::After(a) => q.filter(messages::seq.gt(a)).order(messages::seq.asc()),
        From::Before(b) => q.filter(messages::seq.lt(b)).order(messages::seq.desc()),
        From::Newest => q.order(messages::seq.desc()),
    };
    let rows: Vec<MessageRow> = q.limit(n).select(MessageRow::as_select()).load(c)?;
    Ok(rows.into_iter().map(Message::from).collect())
}

/// Up to `limit` messages from `from`, ascending, within `budget` bytes of reply (see
/// [`reply_size`]; the first message always fits, so a page is never empty while
/// messages remain). Read in small chunks, so a page of large messages never loads
/// much beyond its budget.
pub fn history(c: &mut Conn, channel: &str, from: From, limit: i64, budget: usize) -> AppResult<Page> {
    let mut out: Vec<Message> = Vec::new();
    let mut used = 0;
    let mut cursor = from;
    while (out.len() as i64) < limit {
        let want = (limit - out.len() as i64).min(READ_CHUNK);
        let chunk = rows(c, channel, cursor, want)?;
        let got = chunk.len() as i64;
        for m in chunk {
            let size = reply_size(&m);
            if !out.is_empty() && used + size > budget {
                if !matches!(from, From::After(_)) {
                    out.reverse();
                }
                return Ok(Page {
                    messages: out,
                    more: true,
                });
            }
            used += size;
            cursor = match from {
                From::After(_) => From::After(m.seq),
                From::Before(_) | From::Newest => From::Before(m.seq),
            };
            out.push(m);
        }
        if got < want {
            break;
        }
    }
    if !matches!(from, From::After(_)) {
        out.reverse();
    }
    Ok(Page {
        messages: out,
        more: false,
    })
}

/// Messages after `after`, ascending, at most `limit` (gap fills and resyncs of the
/// hub, which are not replies).
pub fn messages_after(c: &mut Conn, channel: &str, after: i64, limit: i64) -> AppResult<Vec<Message>> {
    rows(c, channel, From::After(after), limit)
}

/// `history` as a reader may ask for it: the room check first when `access` needs it.
pub fn read_history(
    c: &mut Conn,
    ch: &Channel,
    who: &Identity,
    access: crate::channels::Access,
    (from, limit, budget): (From, i64, usize),
) -> AppResult<Page> {
    if access == crate::channels::Access::RoomCheck {
        room_readable(c, ch, who)?;
    }
    history(c, &ch.full, from, limit, budget)
}

/// What a `join` returns of a stored channel, read in one snapshot.
#[derive(Debug)]
pub struct JoinSnapshot {
    pub top: i64,
    pub epoch: String,
    pub messages: Vec<Message>,
    /// `Some` only when the client gave `since`.
    pub recovered: Option<bool>,
    /// Recovered messages did not fit the reply: the client continues with
    /// `history after=` the last one.
    pub more: bool,
}

/// What a join asks of the snapshot.
#[derive(Debug, Clone)]
pub struct JoinRead<'a> {
    pub since: Option<i64>,
    pub epoch: Option<&'a str>,
    /// Messages returned without `since` (or when recovery is impossible).
    pub limit: i64,
    /// Most messages recovered with `since`.
    pub recovery_limit: i64,
    /// Bytes of messages a reply may carry.
    pub budget: usize,
}

/// The join read: with `since`, every message after it when possible (as many as fit
/// the budget, with `more` when cut; else, also when retention removed some of them,
/// `recovered:false` and the newest `limit`); without, the newest `limit`.
pub fn join_snapshot(c: &mut Conn, channel: &str, r: &JoinRead) -> AppResult<JoinSnapshot> {
    c.transaction(|c| {
        let (top, cur_epoch) = channel_top(c, channel)?;
        let recovered = r.since.map(|since| {
            let epoch_ok = match r.epoch {
                Some(e) if !e.is_empty() => e == cur_epoch || (top == 0 && cur_epoch.is_empty()),
                _ => true,
            };
            epoch_ok && since <= top && top - since <= r.recovery_limit
        });
        let mut recovered = recovered;
        let mut page = None;
        if let (Some(true), Some(since)) = (recovered, r.since) {
            let p = history(c, channel, From::After(since), r.recovery_limit, r.budget)?;
            // Retention may have removed messages after `since`: those cannot be
            // recovered (what is kept starts later than the client's next seq).
            if since == top || p.messages.first().is_some_and(|m| m.seq == since + 1) {
                page = Some(p);
            } else {
                recovered = Some(false);
            }
        }
        let page = match page {
            Some(p) => p,
            None => Page {
                more: false,
                ..history(c, channel, From::Newest, r.limit, r.budget)?
            },
        };
        Ok(JoinSnapshot {
            top,
            epoch: cur_epoch,
            messages: page.messages,
            recovered,
            more: page.more,
        })
    })
}

/// The rooms and DMs of a user with their top seq, unread count and last message.
pub fn channels_for_user(c: &mut Conn, user_id: &str) -> AppResult<Vec<ChannelSummary>> {
    let chans: Vec<String> = memberships::table
        .filter(memberships::user_id.eq(user_id))
        .select(memberships::channel)
        .order(memberships::channel.asc())
        .load(c)?;
    let mut out = Vec::with_capacity(chans.len());
    for ch in chans {
        let (top, _) = channel_top(c, &ch)?;
        let read: i64 = read_markers::table
            .find((user_id, &ch))
            .select(read_markers::seq)
            .first(c)
            .optional()?
            .unwrap_or(0);
        let unread: i64 = if top > read {
            messages::table
                .filter(messages::channel.eq(&ch))
                .filter(messages::seq.gt(read))
                .filter(messages::deleted.eq(false))
                .filter(messages::sender_id.ne(user_id))
                .count()
                .get_result(c)?
        } else {
            0
        };
        let last = rows(c, &ch, From::Newest, 1)?.pop();
        out.push(ChannelSummary {
            channel: ch,
            seq: top,
            unread,
            last,
        });
    }
    Ok(out)
}

/// Do two users share a room or a DM (for `signal`)?
pub fn share_a_channel(c: &mut Conn, a: &str, b: &str) -> AppResult<bool> {
    let theirs: Vec<String> = memberships::table
        .filter(memberships::user_id.eq(b))
        .select(memberships::channel)
        .load(c)?;
    if theirs.is_empty() {
        return Ok(false);
    }
    Ok(diesel::select(diesel::dsl::exists(
        memberships::table
            .filter(memberships::user_id.eq(a))
            .filter(memberships::channel.eq_any(theirs)),
    ))
    .get_result(c)?)
}

/// Sampled track points of an entity in a time window, ascending.
pub fn track(c: &mut Conn, entity: &str, since: i64, until: i64, limit: i64) -> AppResult<Vec<(f64, f64, i64)>> {
    Ok(track_points::table
        .filter(track_points::entity.eq(entity))
        .filter(track_points::ts.ge(since))
        .filter(track_points::ts.le(until))
        .order(track_points::ts.asc())
        .limit(limit)
        .select((track_points::lat, track_points::lon, track_points::ts))
        .load(c)?)
}

/// Every stored last value (loaded at start to serve `join` of `loc:` channels).
pub fn last_values(c: &mut Conn) -> AppResult<Vec<Message>> {
    let rows: Vec<(String, i64, i64, String, String, String)> = last_values::table
        .select((
            last_values::channel,
            last_values::seq,
            last_values::ts,
            last_values::sender_id,
            last_values::sender_name,
            last_values::data,
        ))
        .load(c)?;
    Ok(rows
        .into_iter()
        .map(|(channel, seq, ts, sid, sname, data)| Message {
            channel: channel.into(),
            seq,
            ts,
            from: UserRef::new(sid, sname),
            data: super::models::raw_json(data),
            client_id: None,
            edited_ts: None,
            deleted: false,
        })
        .collect())
}

/// Stored channels of a namespace.
pub fn channel_names(c: &mut Conn, ns: Namespace) -> AppResult<Vec<String>> {
    Ok(channels::table
        .filter(channels::name.like(ns.channel("%")))
        .select(channels::name)
        .order(channels::name.asc())
        .load(c)?)
}

/// Most users one user may block.
pub const MAX_BLOCKS: i64 = 1000;

/// `user` blocks `blocked` (no-op when already so). `bad_request` past [`MAX_BLOCKS`].
pub fn block(c: &mut Conn, user: &str, blocked: &str) -> AppResult<()> {
    c.transaction(|c| {
        if is_blocked(c, user, blocked)? {
            return Ok(());
        }
        let n: i64 = blocks::table.filter(blocks::user_id.eq(user)).count().get_result(c)?;
        if n >= MAX_BLOCKS {
            return Err(AppError::bad_request(format!("at most {MAX_BLOCKS} blocked users")));
        }
        match diesel::insert_into(blocks::table)
            .values((
                blocks::user_id.eq(user),
                blocks::blocked_id.eq(blocked),
                blocks::created_at.eq(now_ms()),
            ))
            .execute(c)
        {
            Err(e) if !is_unique_violation(&e) => Err(e.into()),
            _ => Ok(()),
        }
    })
}

/// `user` unblocks `blocked`.
pub fn unblock(c: &mut Conn, user: &str, blocked: &str) -> AppResult<()> {
    diesel::delete(blocks::table.find((user, blocked))).execute(c)?;
    Ok(())
}

/// The users `user` blocked, oldest first.
pub fn blocked_by(c: &mut Conn, user: &str) -> AppResult<Vec<String>> {
    Ok(blocks::table
        .filter(blocks::user_id.eq(user))
        .order(blocks::created_at.asc())
        .select(blocks::blocked_id)
        .limit(MAX_BLOCKS)
        .load(c)?)
}

/// Did `user` block `other`?
pub fn is_blocked(c: &mut Conn, user: &str, other: &str) -> AppResult<bool> {
    Ok(diesel::select(diesel::dsl::exists(blocks::table.find((user, other)))).get_result(c)?)
}

/// Bytes of uploads stored by `user`.
pub fn upload_usage(c: &mut Conn, user: &str) -> AppResult<i64> {
    use diesel::sql_types::{BigInt, Nullable};
    // (SUM of a BIGINT is NUMERIC on PostgreSQL: cast back, portably.)
    let total: Option<i64> = uploads::table
        .filter(uploads::user_id.eq(user))
        .select(diesel::dsl::sql::<Nullable<BigInt>>("CAST(SUM(size) AS BIGINT)"))
        .first(c)?;
    Ok(total.unwrap_or(0))
}

/// Records a stored upload.
pub fn record_upload(c: &mut Conn, name: &str, user: &str, size: i64) -> AppResult<()> {
    diesel::insert_into(uploads::table)
        .values((
            uploads::name.eq(name),
            uploads::user_id.eq(user),
            uploads::size.eq(size),
            uploads::created_at.eq(now_ms()),
        ))
        .execute(c)?;
    Ok(())
}

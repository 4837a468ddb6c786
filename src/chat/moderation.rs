//! Moderation: kick, ban, mute, and the audit log. Role `admin` may do everything
//! everywhere; a room's owner (its creator) may mute in that room (and delete any
//! message there, see the writer's delete check). Every action is written to the
//! audit log with who, what, whom, when and why.
//!
//! Reach: a kick closes the user's connections on every node (this node at once, the
//! others over the bus); a ban does the same and refuses the user's tokens and logins
//! until lifted (every node reads it from the change log within seconds); a mute
//! refuses the user's publishes in one room until it ends (every node re-reads the
//! mutes in force with the change log).

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use super::Chat;
use crate::{
    auth::{Identity, Role},
    broker::BusEvent,
    channels::{Channel, Namespace},
    conn::Ack,
    error::{AppError, AppResult},
    protocol::{close, now_ms, text::valid_user_id},
    storage::{
        queries::{self, AuditEntry, Ban},
        writer::WriteOp,
    },
};

/// Longest mute (a year); longer is a ban.
const MAX_MUTE_S: u64 = 365 * 86_400;

/// Mutes in force on this node: (channel, user) → until (ms). Bound: the rows of the
/// `mutes` table in force (expired ones are dropped at each refresh); no overflow
/// policy needed beyond the table's.
#[derive(Default)]
pub struct Mutes {
    map: RwLock<HashMap<MuteKey, i64>>,
}

/// (channel, user id).
type MuteKey = (Arc<str>, Arc<str>);

impl Mutes {
    /// `forbidden` while `user` is muted in `channel`.
    pub fn check(&self, channel: &str, user: &str) -> AppResult<()> {
        let m = self.map.read().unwrap_or_else(|p| p.into_inner());
        if m.is_empty() {
            return Ok(());
        }
        match m.get(&(Arc::from(channel), Arc::from(user))) {
            Some(&until) if until > now_ms() => Err(AppError::forbidden(format!(
                "muted in {channel} for {} more seconds",
                (until - now_ms() + 999) / 1000
            ))),
            _ => Ok(()),
        }
    }

    fn set(&self, channel: &str, user: &str, until: Option<i64>) {
        let mut m = self.map.write().unwrap_or_else(|p| p.into_inner());
        let key = (Arc::from(channel), Arc::from(user));
        match until {
            Some(t) => m.insert(key, t),
            None => m.remove(&key),
        };
    }

    /// Replaces the table with the mutes in force (read from storage).
    pub fn replace(&self, rows: Vec<(String, String, i64)>) {
        let fresh: HashMap<_, _> = rows
            .into_iter()
            .map(|(c, u, t)| ((Arc::from(c), Arc::from(u)), t))
            .collect();
        *self.map.write().unwrap_or_else(|p| p.into_inner()) = fresh;
    }
}

/// Archived rooms (read-only) on this node. Bound: the archived rows of the `rooms`
/// table (re-read with the change log).
#[derive(Default)]
pub struct Archived {
    set: RwLock<std::collections::HashSet<Arc<str>>>,
}

impl Archived {
    /// `forbidden` for writes into an archived room.
    pub fn check(&self, channel: &str) -> AppResult<()> {
        let s = self.set.read().unwrap_or_else(|p| p.into_inner());
        if !s.is_empty() && s.contains(channel) {
            return Err(AppError::forbidden(format!("{channel} is archived (read-only)")));
        }
        Ok(())
    }

    fn set(&self, channel: &str, archived: bool) {
        let mut s = self.set.write().unwrap_or_else(|p| p.into_inner());
        if archived {
            s.insert(channel.into());
        } else {
            s.remove(channel);
        }
    }

    /// Replaces the set with the archived rooms read from storage.
    pub fn replace(&self, channels: Vec<String>) {
        *self.set.write().unwrap_or_else(|p| p.into_inner()) = channels.into_iter().map(Arc::from).collect();
    }
}

/// `forbidden` unless `actor` is an admin (the check of every admin-only operation).
pub fn require_admin(actor: &Identity) -> AppResult<()> {
    if actor.role == Role::Admin && !actor.anonymous {
        Ok(())
    } else {
        Err(AppError::forbidden("admins only"))
    }
}

fn target_id(user: &str) -> AppResult<()> {
    if valid_user_id(user) {
        Ok(())
    } else {
        Err(AppError::bad_request("not a valid user id"))
    }
}

/// Admins, or the owner of room `ch`, may moderate it.
async fn require_moderator(chat: &Chat, actor: &Identity, ch: &Channel) -> AppResult<()> {
    if require_admin(actor).is_ok() {
        return Ok(());
    }
    if ch.ns != Namespace::Room {
        return Err(AppError::forbidden("admins only"));
    }
    let name = ch.name().to_string();
    let room = chat.db.run(move |c| queries::get_room(c, &name)).await?;
    match room {
        Some(r) if r.created_by == *actor.user.id => Ok(()),
        Some(_) => Err(AppError::forbidden("the room's owner or an admin only")),
        None => Err(AppError::not_found(format!("no room {}", ch.full))),
    }
}

async fn audit(chat: &Chat, actor: &Identity, action: String, target: String, reason: String) -> AppResult<()> {
    let who = actor.user.id.to_string();
    chat.db
        .run(move |c| queries::audit(c, &who, &action, &target, &reason))
        .await
}

fn reason(r: Option<String>) -> AppResult<String> {
    let r = r.unwrap_or_default();
    if r.len() > 500 {
        return Err(AppError::bad_request("a reason is at most 500 bytes"));
    }
    Ok(crate::protocol::text::clean_name(&r, 500))
}

/// Closes every connection of `user` on every node with 4003; they may come back.
/// How many were closed on this node.
pub async fn kick(chat: &Chat, actor: &Identity, user: &str, why: Option<String>) -> AppResult<usize> {
    require_admin(actor)?;
    target_id(user)?;
    let why = reason(why)?;
    audit(chat, actor, "kick".into(), user.into(), why.clone()).await?;
    let text = if why.is_empty() {
        "kicked".to_string()
    } else {
        format!("kicked: {why}")
    };
    let n = chat.hub.registry.close_user(user, close::KICKED, &text);
    chat.hub.publish(BusEvent::Kick {
        user: user.into(),
        reason: text.into(),
    });
    Ok(n)
}

/// Bans `user`: connections closed (4003), tokens and logins refused until unbanned.
pub async fn ban(chat: &Chat, actor: &Identity, user: &str, why: Option<String>) -> AppResult<()> {
    require_admin(actor)?;
    target_id(user)?;
    if user == &*actor.user.id {
        return Err(AppError::bad_request("admins cannot ban themselves"));
    }
    let why = reason(why)?;
    let (u, w, by) = (user.to_string(), why.clone(), actor.user.id.to_string());
    chat.db.run(move |c| queries::ban(c, &u, &w, &by)).await?;
    audit(chat, actor, "ban".into(), user.into(), why).await?;
    chat.hub.apply_change(user, queries::Change::Ban);
    Ok(())
}

/// Lifts a ban; `not_found` when there was none.
pub async fn unban(chat: &Chat, actor: &Identity, user: &str) -> AppResult<()> {
    require_admin(actor)?;
    target_id(user)?;
    let u = user.to_string();
    if !chat.db.run(move |c| queries::unban(c, &u)).await? {
        return Err(AppError::not_found("that user is not banned"));
    }
    audit(chat, actor, "unban".into(), user.into(), String::new()).await?;
    chat.hub.apply_change(user, queries::Change::Unban);
    Ok(())
}

/// Every ban, newest first.
pub async fn bans(chat: &Chat, actor: &Identity) -> AppResult<Vec<Ban>> {
    require_admin(actor)?;
    chat.db.run(|c| queries::list_bans(c, 1000)).await
}

/// Mutes `user` in room `channel` for `duration_s`: their publishes and edits there
/// are refused until then.
pub async fn mute(
    chat: &Chat,
    actor: &Identity,
    channel: &str,
    user: &str,
    duration_s: u64,
    why: Option<String>,
) -> AppResult<i64> {
    let ch = Channel::parse(channel)?;
    require_moderator(chat, actor, &ch).await?;
    target_id(user)?;
    if duration_s == 0 || duration_s > MAX_MUTE_S {
        return Err(AppError::bad_request("a mute lasts 1 second to 1 year"));
    }
    let why = reason(why)?;
    let until = now_ms() + (duration_s * 1000) as i64;
    let (c2, u, w, by) = (
        ch.full.to_string(),
        user.to_string(),
        why.clone(),
        actor.user.id.to_string(),
    );
    chat.db.run(move |c| queries::mute(c, &c2, &u, until, &w, &by)).await?;
    audit(chat, actor, format!("mute {} {duration_s}s", ch.full), user.into(), why).await?;
    chat.mutes.set(&ch.full, user, Some(until));
    Ok(until)
}

/// Lifts a mute; `not_found` when there was none.
pub async fn unmute(chat: &Chat, actor: &Identity, channel: &str, user: &str) -> AppResult<()> {
    let ch = Channel::parse(channel)?;
    require_moderator(chat, actor, &ch).await?;
    target_id(user)?;
    let (c2, u) = (ch.full.to_string(), user.to_string());
    if !chat.db.run(move |c| queries::unmute(c, &c2, &u)).await? {
        return Err(AppError::not_found("that user is not muted there"));
    }
    audit(chat, actor, format!("unmute {}", ch.full), user.into(), String::new()).await?;
    chat.mutes.set(&ch.full, user, None);
    Ok(())
}

/// The audit log, newest first: `limit` entries before id `before`.
pub async fn audit_log(chat: &Chat, actor: &Identity, before: Option<i64>, limit: i64) -> AppResult<Vec<AuditEntry>> {
    require_admin(actor)?;
    let limit = limit.clamp(1, 500);
    chat.db.run(move |c| queries::audit_entries(c, before, limit)).await
}

/// A connected user, as the admin console lists them.
#[derive(Debug, serde::Serialize)]
pub struct Connected {
    pub id: Arc<str>,
    pub name: Arc<str>,
    pub connections: usize,
}

/// Users connected to this node (at most `limit`, most connections first) and the
/// number of connections in all.
pub fn connected(chat: &Chat, actor: &Identity, limit: usize) -> AppResult<(Vec<Connected>, usize)> {
    require_admin(actor)?;
    let mut per: HashMap<Arc<str>, Connected> = HashMap::new();
    for c in chat.hub.registry.all() {
        per.entry(c.user.id.clone())
            .or_insert_with(|| Connected {
                id: c.user.id.clone(),
                name: c.user.name.clone(),
                connections: 0,
            })
            .connections += 1;
    }
    let mut list: Vec<Connected> = per.into_values().collect();
    list.sort_by(|a, b| b.connections.cmp(&a.connections).then_with(|| a.id.cmp(&b.id)));
    list.truncate(limit.clamp(1, 1000));
    Ok((list, chat.hub.registry.count()))
}

/// Removes `user` from the members of private room `channel` (admins and the room's
/// owner): their connections leave it (a `removed` event), their publishes and joins
/// are refused, on every node.
pub async fn remove_member(chat: &Chat, actor: &Identity, channel: &str, user: &str) -> AppResult<()> {
    let ch = Channel::parse(channel)?;
    require_moderator(chat, actor, &ch).await?;
    target_id(user)?;
    let name = ch.name().to_string();
    let room = chat
        .db
        .run(move |c| queries::get_room(c, &name))
        .await?
        .ok_or_else(|| AppError::not_found(format!("no room {}", ch.full)))?;
    if !room.private {
        return Err(AppError::bad_request(
            "a public room has no member list to remove from: kick or ban instead",
        ));
    }
    if room.created_by == user {
        return Err(AppError::bad_request("the room's owner cannot be removed"));
    }
    let (ack, done) = Ack::wait();
    chat.writer.submit(WriteOp::RemoveMember {
        channel: ch.full.clone(),
        user_id: user.into(),
        ack,
    });
    done.wait().await?;
    let (c2, u) = (ch.full.to_string(), user.to_string());
    chat.db
        .run(move |c| Ok(queries::record(c, &u, queries::Change::Unmember(c2))?))
        .await?;
    audit(
        chat,
        actor,
        format!("remove from {}", ch.full),
        user.into(),
        String::new(),
    )
    .await?;
    chat.hub.remove_from_channel(user, &ch.full);
    Ok(())
}

/// Archives room `channel` (read-only: history stays, publishes and edits are
/// refused on every node) or reopens it; admins and the room's owner.
pub async fn archive(chat: &Chat, actor: &Identity, channel: &str, archived: bool) -> AppResult<()> {
    let ch = Channel::parse(channel)?;
    if ch.ns != Namespace::Room {
        return Err(AppError::bad_request("only rooms are archived"));
    }
    require_moderator(chat, actor, &ch).await?;
    let name = ch.name().to_string();
    if !chat.db.run(move |c| queries::set_archived(c, &name, archived)).await? {
        return Err(AppError::not_found(format!("no room {}", ch.full)));
    }
    let action = format!("{} {}", if archived { "archive" } else { "reopen" }, ch.full);
    audit(chat, actor, action, ch.full.to_string(), String::new()).await?;
    chat.archived.set(&ch.full, archived);
    Ok(())
}

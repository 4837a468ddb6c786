//! The use cases: every operation a client can ask for, whatever the way in. The
//! WebSocket session, the HTTP routes and the demo publishers call these functions;
//! none of them reaches into the hub or storage on its own.
//!
//! One file per family of operations, each taking typed input (the command structs of
//! [`crate::protocol::request`]) and the caller's [`Identity`], and returning a typed
//! result ([`crate::protocol::replies`]):
//!
//! * [`publish`] – publish into any channel (stored, or a last-value feed).
//! * [`join`] – join (admission, subscription, snapshot) and leave.
//! * [`history`] – scroll-back.
//! * [`presence`] – who is present.
//! * [`edit`] – edit and delete messages.
//! * [`read`] – read markers and the caller's channel list with unread counts.
//! * [`typing`] – typing indicators.
//! * [`signal`] – per-user signals (call setup); [`blocks`] – whom a user blocked.
//! * [`rooms`] – creating and listing rooms, adding members, finding users.
//! * [`accounts`] – registration and login.
//! * [`locations`] – "who is near" and stored tracks.
//! * [`uploads`] – what a user may upload (rate, quota), and what file messages point to.
//!
//! Writes that complete elsewhere (the writer commits, a hub shard fans out) take an
//! [`crate::conn::Ack`] for their result, so that a WebSocket reply stays ahead of the
//! events it caused; the rest are `async` functions returning their result.

pub mod accounts;
pub mod admin;
pub mod blocks;
pub mod calls;
pub mod edit;
pub mod history;
pub mod join;
pub mod locations;
pub mod moderation;
pub mod presence;
pub mod public_rooms;
pub mod publish;
pub mod read;
pub mod rooms;
pub mod signal;
pub mod typing;
pub mod uploads;

use std::sync::Arc;

use crate::{
    auth::{Auth, Identity, PasswordWork, Role},
    channels::{read_access, Access, Channel},
    config::Settings,
    error::{AppError, AppResult, ErrorCode},
    feeds::Feeds,
    hub::Hub,
    limit::KeyedLimiter,
    storage::{
        queries,
        writer::{WriteOp, WriterHandle},
        Db,
    },
};

/// Everything the use cases need. Cheap to clone (`Arc`s inside).
#[derive(Clone)]
pub struct Chat {
    pub settings: Arc<Settings>,
    pub db: Db,
    pub writer: WriterHandle,
    pub hub: Hub,
    pub feeds: Arc<Feeds>,
    pub auth: Auth,
    pub limits: Arc<Limits>,
    /// Where passwords are hashed and checked.
    pub passwords: Arc<PasswordWork>,
    /// Mutes in force.
    pub mutes: Arc<moderation::Mutes>,
    /// Archived (read-only) rooms.
    pub archived: Arc<moderation::Archived>,
    /// Calls in progress.
    pub calls: Arc<calls::Calls>,
    /// Rooms known to be public (their read check needs no storage).
    pub public_rooms: Arc<public_rooms::PublicRooms>,
}

/// Budgets per user and per client address, shared by every way in (WebSocket and
/// HTTP, all of a user's connections on this node).
pub struct Limits {
    /// Login attempts per client address and per account name (guessing).
    pub logins: KeyedLimiter,
    /// Registrations per client address.
    pub registrations: KeyedLimiter,
    /// Writes per user.
    writes: KeyedLimiter,
    /// Writes per user of role publisher or admin.
    publisher_writes: KeyedLimiter,
    /// Rooms created per user.
    rooms: KeyedLimiter,
    /// Rings per (caller, callee).
    rings: KeyedLimiter,
    /// Uploads per user.
    uploads: KeyedLimiter,
}

impl Limits {
    pub fn new(settings: &Settings) -> Limits {
        let (user, publisher) = (settings.publish_rate, settings.publisher_rate);
        Limits {
            logins: KeyedLimiter::per_minute(settings.login_failures_per_min),
            registrations: KeyedLimiter::per_minute(settings.registrations_per_min),
            writes: KeyedLimiter::per_second(user, user * 2.0),
            publisher_writes: KeyedLimiter::per_second(publisher, publisher * 2.0),
            rooms: KeyedLimiter::per_hour(settings.rooms_per_hour),
            rings: KeyedLimiter::per_minute(settings.rings_per_min),
            uploads: KeyedLimiter::per_hour(settings.uploads_per_hour),
        }
    }
}

impl Chat {
    /// Parses a channel name and checks that `who` may read it (join, history,
    /// presence), as far as that needs no storage.
    fn readable(&self, who: &Identity, channel: &str) -> AppResult<(Channel, Access)> {
        let ch = Channel::parse(channel)?;
        let access = read_access(who, &ch, self.settings.anonymous())?;
        Ok((ch, access))
    }

    /// The read check of operations on a channel's content (`edit`, `delete`, `read`,
    /// `typing`): what `who` may not see is `not_found`, so these cannot probe which
    /// private rooms, DMs or messages exist. `None` when a room's check needs storage
    /// (see [`Chat::visible_room`]).
    fn visible(&self, who: &Identity, channel: &str) -> AppResult<(Channel, Option<Access>)> {
        let ch = Channel::parse(channel)?;
        match read_access(who, &ch, self.settings.anonymous()) {
            Ok(Access::Allowed) => Ok((ch, None)),
            Ok(Access::RoomCheck) => Ok((ch, Some(Access::RoomCheck))),
            Err(e) if e.code == ErrorCode::Forbidden => Err(hidden(&ch)),
            Err(e) => Err(e),
        }
    }

    /// Submits a write on `ch` once `who` is known to see it: at once, or after the
    /// room's check in storage (`check`, from [`Chat::visible`]). A refusal answers the
    /// op's requester.
    fn submit_visible(&self, who: &Identity, ch: &Channel, check: Option<Access>, op: WriteOp) {
        if check.is_none() {
            return self.writer.submit(op);
        }
        let (chat, who, ch) = (self.clone(), who.clone(), ch.clone());
        actix::spawn(async move {
            match chat.visible_room(&who, &ch).await {
                Ok(()) => chat.writer.submit(op),
                Err(e) => op.fail(e),
            }
        });
    }

    /// Spends `n` of `who`'s write budget; `rate_limited` when it is used up.
    fn spend(&self, who: &Identity, n: u32) -> AppResult<()> {
        let budget = match who.role {
            Role::Publisher | Role::Admin => &self.limits.publisher_writes,
            Role::User => &self.limits.writes,
        };
        if budget.take_n(who.id(), n) {
            Ok(())
        } else {
            crate::metrics::get().rate_limited(crate::metrics::Limit::Writes);
            Err(AppError::rate_limited("write budget used up, slow down"))
        }
    }

    /// Spends one of `who`'s room creations; `rate_limited` when they are used up.
    fn spend_room(&self, who: &Identity) -> AppResult<()> {
        if self.limits.rooms.take(who.id()) {
            Ok(())
        } else {
            crate::metrics::get().rate_limited(crate::metrics::Limit::Rooms);
            Err(AppError::rate_limited("too many new rooms, try again later"))
        }
    }

    /// The storage half of the read check of a room (access [`Access::RoomCheck`]):
    /// `not_found` when it does not exist, `forbidden` when it is private and `who` is
    /// not a member. Rooms known to be public need no storage.
    async fn room_readable(&self, who: &Identity, ch: &Channel) -> AppResult<()> {
        if self.public_rooms.contains(&ch.full) {
            return Ok(());
        }
        let (ch2, who2) = (ch.clone(), who.clone());
        let readable = self.db.run(move |c| queries::room_readable(c, &ch2, &who2)).await?;
        if readable == queries::Readable::Public {
            self.public_rooms.insert(&ch.full);
        }
        Ok(())
    }

    /// The storage half of [`Chat::visible`] for rooms.
    async fn visible_room(&self, who: &Identity, ch: &Channel) -> AppResult<()> {
        match self.room_readable(who, ch).await {
            Err(e) if matches!(e.code, ErrorCode::Forbidden | ErrorCode::NotFound) => Err(hidden(ch)),
            other => other,
        }
    }
}

/// What a caller may not see.
fn hidden(ch: &Channel) -> AppError {
    AppError::not_found(format!("no channel {}", ch.full))
}

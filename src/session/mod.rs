//! The session: one actix actor per WebSocket connection, an adapter between frames
//! and the use cases ([`crate::chat`]).
//!
//! It decodes client frames ([`transport::FrameReader`]), and owns only connection
//! state: the identity, the channels joined, the per-connection rate limits (pings
//! and the heartbeat timeout are one sweep over the registry, `Registry::heartbeat`).
//! Each request becomes one call into the use-case layer; everything it sends
//! goes through the connection's bounded [`Outbox`], which the connection's socket
//! writer drains at the client's pace.

mod joined;
pub mod socket;
pub mod transport;

use std::{future::Future, sync::Arc, time::Duration};

use actix::prelude::*;
use actix_web::web;
use bytes::Bytes;
use serde::Serialize;

use self::{
    joined::Joined,
    transport::{Incoming, ReadError},
};
use crate::{
    auth::{Identity, TokenInfo},
    chat,
    conn::{outbox::OutboxClosed, Ack, ConnHandle, Outbox},
    error::{AppError, AppResult},
    limit::{ConnSlot, Gcra, Rate},
    metrics::{self, Limit},
    protocol::{close, now_ms, reply_err, reply_ok, request, welcome, Empty, Op, PingOk, Request},
    state::AppState,
};

/// How long a closing connection may take to drain its close frame before the socket
/// is cut.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Rejected requests in a row before a connection is closed with 4029.
const MAX_STRIKES: u32 = 200;

/// The session actor.
pub struct Session {
    /// Process-unique connection id.
    id: u64,
    /// `None` until the first-frame `auth` arrives.
    identity: Option<Identity>,
    /// Expiry and version of the token in force (`None`: anonymous).
    token: Option<TokenInfo>,
    /// Closes the connection when the token expires (rescheduled by `auth`).
    expiry: Option<SpawnHandle>,
    /// Holds this connection's place in its address's connection count.
    _slot: Option<ConnSlot>,
    /// This connection as the hub and registry know it (set once authenticated).
    conn: Option<Arc<ConnHandle>>,
    outbox: Arc<Outbox>,
    /// Shared, not copied: one pointer per connection.
    state: web::Data<AppState>,
    /// Joined (or joining) channels → the generation of that join, so a join that
    /// completes after a `leave` is dropped. Bounded by `max_channels_per_conn`.
    joined: Joined,
    generation: u64,
    /// Writes (publish, typing, edit, delete, signal), at [`Session::rates`]' first.
    writes: Gcra,
    /// Every request, at [`Session::rates`]' second.
    requests: Gcra,
    /// Consecutive rate-limited requests.
    strikes: u32,
}

impl Session {
    pub fn new(
        state: web::Data<AppState>,
        outbox: Arc<Outbox>,
        identity: Option<(Identity, Option<TokenInfo>)>,
        slot: Option<ConnSlot>,
    ) -> Session {
        let id = state.conn_id();
        let (identity, token) = identity.map_or((None, None), |(i, t)| (Some(i), t));
        Session {
            id,
            identity,
            token,
            expiry: None,
            _slot: slot,
            conn: None,
            outbox,
            joined: Joined::default(),
            generation: 0,
            writes: Gcra::default(),
            requests: Gcra::default(),
            strikes: 0,
            state,
        }
    }

    /// The rates of (writes, requests) of a connection.
    fn rates(&self) -> (Rate, Rate) {
        let rate = self.state.chat.settings.publish_rate;
        let all = (rate * 4.0).max(100.0);
        (Rate::new(rate, rate * 2.0), Rate::new(all, all * 2.0))
    }

    fn send(&self, frame: Bytes) {
        self.outbox.push(frame);
    }

    /// Replies to request `id`: a success only when it had an id, an error always.
    fn reply<T: Serialize>(&self, id: Option<i64>, r: AppResult<T>) {
        match r {
            Ok(v) => {
                if id.is_some() {
                    self.send(reply_ok(id, &v))
                }
            }
            Err(e) => self.send(reply_err(id, &e)),
        }
    }

    /// Where the result of a request that completes elsewhere goes.
    fn ack<T: Serialize>(&self, id: Option<i64>) -> Ack<T> {
        Ack::ws(self.outbox.clone(), id)
    }

    /// Runs an asynchronous use case and replies with its result.
    fn spawn_reply<T: Serialize + 'static>(&self, id: Option<i64>, op: impl Future<Output = AppResult<T>> + 'static) {
        let ack = self.ack(id);
        actix::spawn(async move { ack.result(op.await) });
    }

    /// Authenticated: register with the hub and greet. Closes the connection (4029)
    /// when the user already has as many connections as allowed.
    fn authenticated(&mut self, identity: Identity, token: Option<TokenInfo>, ctx: &mut Context<Self>) {
        let registry = self.state.chat.hub.registry.clone();
        if let Some(old) = self.conn.take() {
            registry.remove(&old.user.id, old.id);
        }
        let max = self.state.chat.settings.max_conns_per_user as usize;
        if !identity.anonymous && max > 0 && registry.connections(&identity.user.id).len() >= max {
            metrics::get().rate_limited(Limit::Connections);
            return self.close(close::RATE_LIMITED, "too many connections for this user", ctx);
        }
        self.token = token;
        self.schedule_expiry(ctx);
        let conn = Arc::new(ConnHandle {
            id: self.id,
            user: identity.user.clone(),
            outbox: self.outbox.clone(),
            token_ver: token.map_or(0, |t| t.ver),
        });
        registry.add(conn.clone());
        self.conn = Some(conn);
        let s = &self.state.chat.settings;
        self.send(welcome(
            &format!("s-{:x}", self.id),
            &identity.user,
            s.heartbeat_s,
            s.max_message_bytes,
        ));
        self.identity = Some(identity);
    }

    /// Closes the connection with 4001 when the token in force expires; an `auth` with
    /// a fresh token before then moves the deadline.
    fn schedule_expiry(&mut self, ctx: &mut Context<Self>) {
        if let Some(h) = self.expiry.take() {
            ctx.cancel_future(h);
        }
        let Some(t) = self.token else { return };
        // Tokens may live for years; a timer this far ahead is re-armed when it fires.
        const MAX_WAIT_MS: i64 = 7 * 24 * 3600 * 1000;
        let left_ms = (t.exp as i64).saturating_mul(1000) - now_ms();
        let wait = Duration::from_millis(left_ms.clamp(0, MAX_WAIT_MS) as u64);
        self.expiry = Some(ctx.run_later(wait, |act, ctx| {
            act.expiry = None;
            match act.token {
                Some(t) if (t.exp as i64).saturating_mul(1000) <= now_ms() => {
                    act.close(close::UNAUTHORIZED, "token expired", ctx)
                }
                _ => act.schedule_expiry(ctx),
            }
        }));
    }

    fn close(&mut self, code: u16, reason: &str, ctx: &mut Context<Self>) {
        self.outbox.close(code, reason, code != close::SLOW_CONSUMER);
        ctx.stop();
    }

    fn on_text(&mut self, text: &str, ctx: &mut Context<Self>) {
        let req = match Request::parse(text) {
            Ok(r) => r,
            Err((id, e)) => {
                metrics::get().bad_requests.inc();
                if self.identity.is_none() {
                    return self.close(close::UNAUTHORIZED, "authentication required", ctx);
                }
                return self.send(reply_err(id, &e));
            }
        };
        if self.identity.is_none() {
            let Op::Auth { token } = req.op else {
                return self.close(close::UNAUTHORIZED, "authentication required", ctx);
            };
            match self.state.chat.auth.verify_full(&token) {
                Ok((identity, info)) => {
                    self.authenticated(identity, Some(info), ctx);
                    if self.identity.is_some() {
                        self.reply(req.id, Ok(Empty {}));
                    }
                }
                Err(e) => self.close(close::UNAUTHORIZED, &e.message, ctx),
            }
            return;
        }
        let (writes, requests) = self.rates();
        let limited = !self.requests.take(requests) || (req.op.is_costly() && !self.writes.take(writes));
        if limited {
            metrics::get().rate_limited(Limit::Requests);
            self.strikes += 1;
            if self.strikes >= MAX_STRIKES {
                return self.close(close::RATE_LIMITED, "rate limited", ctx);
            }
            return self.send(reply_err(
                req.id,
                &AppError::rate_limited("too many requests, slow down"),
            ));
        }
        self.strikes = 0;
        let id = req.id;
        if let Err(e) = self.dispatch(req, ctx) {
            self.send(reply_err(id, &e));
        }
    }

    fn who(&self) -> &Identity {
        self.identity.as_ref().expect("authenticated")
    }

    fn conn(&self) -> Arc<ConnHandle> {
        self.conn.clone().expect("authenticated")
    }

    /// One request → one use case.
    fn dispatch(&mut self, req: Request, ctx: &mut Context<Self>) -> AppResult<()> {
        let id = req.id;
        let (c, who) = (self.state.chat.clone(), self.who().clone());
        match req.op {
            Op::Auth { token } => self.reauthenticate(id, &token, ctx)?,
            Op::Ping => self.reply(id, Ok(PingOk { ts: now_ms() })),
            Op::Join(r) => self.join(id, r, ctx)?,
            Op::Leave(r) => {
                let name = chat::join::leave_target(&r)?;
                if self.joined.remove(&name).is_some() {
                    chat::join::leave(&c, self.id, [name]);
                }
                self.reply(id, Ok(Empty {}));
            }
            Op::Publish(r) => {
                chat::publish::publish(&c, &who, r, self.ack(id));
            }
            Op::History(r) => self.spawn_reply(id, chat::history::history(c, who, r)),
            Op::Presence(r) => self.spawn_reply(id, chat::presence::presence(c, who, r)),
            Op::Typing(r) => chat::typing::typing(&c, &who, &self.conn(), r, self.ack(id)),
            Op::Read(r) => chat::read::read(&c, &who, r, self.ack(id)),
            Op::Channels => self.spawn_reply(id, chat::read::channels(c, who)),
            Op::Edit(r) => chat::edit::edit(&c, &who, r, self.ack(id)),
            Op::Delete(r) => chat::edit::delete(&c, &who, r, self.ack(id)),
            Op::Signal(r) => self.spawn_reply(id, chat::signal::signal(c, who, r)),
            Op::AdminStats => self.spawn_reply(id, chat::admin::stats(c, who)),
        }
        Ok(())
    }

    /// `auth` after the start: on an anonymous connection, become that user (leaving
    /// every channel); otherwise a fresh token for the same user and role extends the
    /// connection's life to the new token's expiry.
    fn reauthenticate(&mut self, id: Option<i64>, token: &str, ctx: &mut Context<Self>) -> AppResult<()> {
        let (identity, info) = self.state.chat.auth.verify_full(token)?;
        let who = self.who();
        if who.anonymous {
            self.leave_all();
            self.authenticated(identity, Some(info), ctx);
            if self.identity.is_some() {
                self.reply(id, Ok(Empty {}));
            }
            return Ok(());
        }
        if identity.user.id != who.user.id || identity.role != who.role || identity.entity != who.entity {
            return Err(AppError::bad_request(
                "already authenticated: a fresh token must be for the same user and role",
            ));
        }
        let ver = self.token.map_or(0, |t| t.ver);
        self.token = Some(TokenInfo { exp: info.exp, ver });
        self.schedule_expiry(ctx);
        self.reply(id, Ok(Empty {}));
        Ok(())
    }

    /// `join`: checks now, admission in the background, then the subscription unless a
    /// later `leave` or `join` of the same channel superseded it.
    fn join(&mut self, id: Option<i64>, req: request::Join, ctx: &mut Context<Self>) -> AppResult<()> {
        let c = self.state.chat.clone();
        let j = chat::join::prepare(&c, self.who(), req)?;
        let name = j.channel.full.clone();
        if !self.joined.contains_key(&name) && self.joined.len() >= c.settings.max_channels_per_conn {
            return Err(AppError::bad_request("joined to too many channels"));
        }
        self.generation += 1;
        let generation = self.generation;
        self.joined.insert(name.clone(), generation);
        let admit = {
            let (c, who, j) = (c.clone(), self.who().clone(), j.clone());
            async move { chat::join::admit(c, who, &j).await }
        };
        ctx.spawn(actix::fut::wrap_future::<_, Self>(admit).map(move |res, act, _| {
            if act.joined.get(&name) != Some(&generation) {
                // Left (or re-joined) meanwhile: that later request wins.
                let e = AppError::bad_request("join superseded by a later leave or join");
                return act.reply::<Empty>(id, Err(e));
            }
            if let Err(e) = res {
                act.joined.remove(&name);
                return act.reply::<Empty>(id, Err(e));
            }
            chat::join::subscribe(&c, act.conn(), j, id);
        }));
        Ok(())
    }

    fn leave_all(&mut self) {
        let channels = self.joined.drain();
        if !channels.is_empty() {
            chat::join::leave(&self.state.chat, self.id, channels);
        }
    }
}

impl Actor for Session {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Bound of the messages waiting for the session; beyond, senders wait (`send`)
        // or are refused (`try_send`); `do_send` is used only for `OutboxClosed`, once.
        ctx.set_mailbox_capacity(16);
        self.outbox.set_notify(ctx.address().recipient());
        metrics::get().connections_accepted.inc();
        if let Some(identity) = self.identity.take() {
            let token = self.token;
            self.authenticated(identity, token, ctx);
        }
        // Pings and the heartbeat timeout: one sweep over the registry for every
        // connection (`Registry::heartbeat`). Until `auth`, the auth deadline applies.
        if self.identity.is_none() {
            ctx.run_later(self.state.chat.settings.auth_timeout(), |act, ctx| {
                if act.identity.is_none() {
                    act.close(close::UNAUTHORIZED, "authentication timeout", ctx);
                }
            });
        }
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.leave_all();
        if let Some(c) = self.conn.take() {
            self.state.chat.hub.registry.remove(&c.user.id, c.id);
        }
        if !self.outbox.is_closing() {
            self.outbox.close(close::NORMAL, "", true);
        }
        let outbox = self.outbox.clone();
        actix::spawn(async move {
            actix_web::rt::time::sleep(CLOSE_GRACE).await;
            outbox.force_close();
        });
    }
}

impl StreamHandler<Result<Incoming, ReadError>> for Session {
    fn handle(&mut self, item: Result<Incoming, ReadError>, ctx: &mut Self::Context) {
        self.outbox.frame_in();
        metrics::get().frames_in.inc();
        match item {
            // UTF-8 checked by the decoder already; this only makes the `&str`.
            Ok(Incoming::Text(b)) => match std::str::from_utf8(&b) {
                Ok(text) => self.on_text(text, ctx),
                Err(_) => self.close(close::INVALID_DATA, "invalid UTF-8", ctx),
            },
            Ok(Incoming::Binary(_)) => {
                if self.identity.is_none() {
                    return self.close(close::UNAUTHORIZED, "authentication required", ctx);
                }
                self.send(reply_err(
                    None,
                    &AppError::bad_request("binary frames are not supported"),
                ));
            }
            Ok(Incoming::Ping(p)) => self.outbox.pong(p),
            Ok(Incoming::Pong(_)) => {}
            // The decoder has refused invalid codes and reasons (1002, 1007); a valid
            // close, with a code or without, is answered with 1000 and ends the session.
            Ok(Incoming::Close(_)) => self.close(close::NORMAL, "", ctx),
            Err(ReadError::TooBig(n)) => {
                self.close(close::TOO_BIG, &format!("frame larger than {n} bytes"), ctx);
            }
            Err(ReadError::InvalidUtf8) => self.close(close::INVALID_DATA, "invalid UTF-8", ctx),
            Err(ReadError::Protocol(e)) => {
                log::debug!(session = self.id; "session {}: {e}", self.id);
                self.close(close::PROTOCOL_ERROR, "protocol error", ctx);
            }
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl Handler<OutboxClosed> for Session {
    type Result = ();

    fn handle(&mut self, _: OutboxClosed, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

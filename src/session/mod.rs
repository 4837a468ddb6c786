//! The session: one actix actor per WebSocket connection.
//!
//! It decodes client frames ([`transport::FrameReader`]), holds the auth state, runs
//! the heartbeat, enforces rate limits, and turns each request into work for the hub,
//! the writer or the storage pool. Everything it sends goes through its bounded
//! [`outbox::Outbox`], which the HTTP dispatcher drains at the client's pace.

pub mod outbox;
pub mod transport;

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use actix::prelude::*;
use bytes::Bytes;

use self::{
    outbox::{Outbox, OutboxClosed},
    transport::{Incoming, ReadError},
};
use crate::{
    auth::Identity,
    channels::{publish_access, read_access, Access, Channel, Namespace, Storage},
    error::{AppError, AppResult},
    hub::{ConnHandle, FeedPublish, JoinComplete, PresenceQuery, Subscribe, Subscribed, Typing, Unsubscribe},
    protocol::{close, now_ms, reply_empty, reply_err, reply_ok, signal_event, welcome, Op, Request},
    state::{AppState, Metrics},
    storage::{
        queries,
        writer::{Ack, AppendReq, WriteOp},
    },
};

/// How long a closing connection may take to drain its close frame before the socket
/// is cut.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Rejected requests in a row before a connection is closed with 4029.
const MAX_STRIKES: u32 = 200;

/// A token bucket.
struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: f64) -> Bucket {
        Bucket {
            tokens: rate * 2.0,
            rate,
            burst: rate * 2.0,
            at: Instant::now(),
        }
    }
    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The session actor.
pub struct Session {
    /// Process-unique connection id.
    id: u64,
    /// `None` until the first-frame `auth` arrives.
    identity: Option<Identity>,
    /// This connection as the hub and registry know it (set once authenticated).
    conn: Option<Arc<ConnHandle>>,
    outbox: Arc<Outbox>,
    state: AppState,
    /// Joined (or joining) channels → the generation of that join, so a join that
    /// completes after a `leave` is dropped.
    joined: HashMap<Arc<str>, u64>,
    generation: u64,
    /// Last frame of any kind from the client (heartbeat).
    last_seen: Instant,
    /// Writes (publish, typing, edit, delete, signal).
    writes: Bucket,
    /// Every request.
    requests: Bucket,
    /// Consecutive rate-limited requests.
    strikes: u32,
}

impl Session {
    pub fn new(state: AppState, outbox: Arc<Outbox>, identity: Option<Identity>) -> Session {
        let id = state.metrics.conn_id();
        let rate = state.settings.publish_rate;
        Session {
            id,
            identity,
            conn: None,
            outbox,
            joined: HashMap::new(),
            generation: 0,
            last_seen: Instant::now(),
            writes: Bucket::new(rate),
            requests: Bucket::new((rate * 4.0).max(100.0)),
            strikes: 0,
            state,
        }
    }

    fn send(&self, frame: Bytes) {
        self.outbox.push(frame);
    }

    fn reply<T: serde::Serialize>(&self, id: Option<i64>, r: AppResult<T>) {
        match r {
            Ok(v) => {
                if id.is_some() {
                    self.send(reply_ok(id, &v))
                }
            }
            Err(e) => self.send(reply_err(id, &e)),
        }
    }

    /// Authenticated: register with the hub and greet.
    fn authenticated(&mut self, identity: Identity) {
        if let Some(old) = self.conn.take() {
            self.state.hub.registry.remove(&old.user.id, old.id);
        }
        let conn = Arc::new(ConnHandle {
            id: self.id,
            user: identity.user.clone(),
            outbox: self.outbox.clone(),
        });
        self.state.hub.registry.add(conn.clone());
        self.conn = Some(conn);
        let s = &self.state.settings;
        self.send(welcome(
            &format!("s-{:x}", self.id),
            &identity.user,
            s.heartbeat_s,
            s.max_message_bytes,
        ));
        self.identity = Some(identity);
    }

    fn close(&mut self, code: u16, reason: &str, ctx: &mut Context<Self>) {
        self.outbox.close(code, reason, code != close::SLOW_CONSUMER);
        ctx.stop();
    }

    fn on_text(&mut self, text: &str, ctx: &mut Context<Self>) {
        let req = match Request::parse(text) {
            Ok(r) => r,
            Err((id, e)) => {
                Metrics::inc(&self.state.metrics.bad_requests);
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
            match self.state.auth.verify(&token) {
                Ok(identity) => {
                    self.authenticated(identity);
                    if req.id.is_some() {
                        self.send(reply_empty(req.id));
                    }
                }
                Err(e) => self.close(close::UNAUTHORIZED, &e.message, ctx),
            }
            return;
        }
        let limited = !self.requests.take() || (req.op.is_costly() && !self.writes.take());
        if limited {
            Metrics::inc(&self.state.metrics.rate_limited);
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

    fn check_data(&self, data: &serde_json::value::RawValue) -> AppResult<()> {
        crate::protocol::request::check_data(data, self.state.settings.max_message_bytes)
    }

    fn dispatch(&mut self, req: Request, ctx: &mut Context<Self>) -> AppResult<()> {
        let id = req.id;
        match req.op {
            Op::Auth { token } => {
                if !self.who().anonymous {
                    return Err(AppError::bad_request("already authenticated"));
                }
                let identity = self.state.auth.verify(&token)?;
                self.leave_all();
                self.authenticated(identity);
                self.reply(id, Ok(serde_json::Map::new()));
            }
            Op::Ping => self.reply(id, Ok(serde_json::json!({ "ts": now_ms() }))),
            Op::Join {
                channel,
                since,
                epoch,
                limit,
            } => self.join(id, &channel, since, epoch, limit, ctx)?,
            Op::Leave { channel } => {
                let ch = Channel::parse(&channel)?;
                if self.joined.remove(&ch.full).is_some() {
                    self.state.hub.shard(&ch.full).do_send(Unsubscribe {
                        conn_id: self.id,
                        channels: vec![ch.full],
                    });
                }
                self.reply(id, Ok(serde_json::Map::new()));
            }
            Op::Publish {
                channel,
                data,
                client_id,
            } => {
                let ch = Channel::parse(&channel)?;
                let access = publish_access(self.who(), &ch)?;
                self.check_data(&data)?;
                let data: Arc<serde_json::value::RawValue> = data.into();
                let ack = Ack::Ws {
                    outbox: self.outbox.clone(),
                    id,
                };
                Metrics::inc(&self.state.metrics.publishes);
                publish(
                    &self.state,
                    ch,
                    self.who().clone(),
                    access,
                    data,
                    client_id.map(Into::into),
                    ack,
                );
            }
            Op::History {
                channel,
                before,
                after,
                limit,
            } => {
                let ch = Channel::parse(&channel)?;
                let access = read_access(self.who(), &ch, self.state.settings.anonymous())?;
                let limit = limit.unwrap_or(50).min(200);
                let (db, who, outbox) = (self.state.db.clone(), self.who().clone(), self.outbox.clone());
                actix::spawn(async move {
                    let r = db
                        .run(move |c| queries::read_history(c, &ch, &who, access, (before, after, limit)))
                        .await;
                    outbox.push(match r {
                        Ok(messages) => reply_ok(id, &serde_json::json!({ "messages": messages })),
                        Err(e) => reply_err(id, &e),
                    });
                });
            }
            Op::Presence { channel } => {
                let ch = Channel::parse(&channel)?;
                let access = read_access(self.who(), &ch, self.state.settings.anonymous())?;
                let (db, who, outbox) = (self.state.db.clone(), self.who().clone(), self.outbox.clone());
                let shard = self.state.hub.shard(&ch.full).clone();
                actix::spawn(async move {
                    let r = presence(&db, &shard, ch, who, access).await;
                    outbox.push(match r {
                        Ok(members) => reply_ok(id, &serde_json::json!({ "members": members })),
                        Err(e) => reply_err(id, &e),
                    });
                });
            }
            Op::Typing { channel } => {
                let ch = Channel::parse(&channel)?;
                if !ch.policy().chat {
                    return Err(AppError::bad_request(format!("no typing indicators in {}", ch.full)));
                }
                let msg = Typing {
                    conn_id: self.id,
                    channel: ch.full.clone(),
                    req_id: id,
                    outbox: self.outbox.clone(),
                    user: self.who().user.clone(),
                };
                self.state
                    .hub
                    .shard(&ch.full)
                    .try_send(msg)
                    .map_err(|_| AppError::unavailable("hub overloaded"))?;
            }
            Op::Read { channel, seq } => {
                let ch = Channel::parse(&channel)?;
                if !ch.policy().chat {
                    return Err(AppError::bad_request(format!("no read markers in {}", ch.full)));
                }
                read_access(self.who(), &ch, false)?;
                let user_id = self.who().user.id.clone();
                let ack = Ack::Ws {
                    outbox: self.outbox.clone(),
                    id,
                };
                self.state.writer.submit_or_fail(WriteOp::Read {
                    channel: ch,
                    user_id,
                    seq,
                    ack,
                });
            }
            Op::Channels => {
                if self.who().anonymous {
                    return Err(AppError::forbidden("anonymous connections have no channels"));
                }
                let (db, user, outbox) = (self.state.db.clone(), self.who().user.id.clone(), self.outbox.clone());
                actix::spawn(async move {
                    let r = db.run(move |c| queries::channels_for_user(c, &user)).await;
                    outbox.push(match r {
                        Ok(channels) => reply_ok(id, &serde_json::json!({ "channels": channels })),
                        Err(e) => reply_err(id, &e),
                    });
                });
            }
            Op::Edit { channel, seq, data } => {
                let ch = Channel::parse(&channel)?;
                publish_access(self.who(), &ch)?;
                self.check_data(&data)?;
                let ack = Ack::Ws {
                    outbox: self.outbox.clone(),
                    id,
                };
                let op = WriteOp::Edit {
                    channel: ch,
                    seq,
                    who: self.who().clone(),
                    data: data.into(),
                    ack,
                };
                self.state.writer.submit_or_fail(op);
            }
            Op::Delete { channel, seq } => {
                let ch = Channel::parse(&channel)?;
                if self.who().anonymous {
                    return Err(AppError::forbidden("anonymous connections cannot delete"));
                }
                let ack = Ack::Ws {
                    outbox: self.outbox.clone(),
                    id,
                };
                self.state.writer.submit_or_fail(WriteOp::Delete {
                    channel: ch,
                    seq,
                    who: self.who().clone(),
                    ack,
                });
            }
            Op::Signal { to, call, data } => {
                if self.who().anonymous {
                    return Err(AppError::forbidden("anonymous connections cannot signal"));
                }
                if !crate::channels::valid_user_id(&to) {
                    return Err(AppError::bad_request("bad `to`"));
                }
                if *to == *self.who().user.id {
                    return Err(AppError::bad_request("cannot signal yourself"));
                }
                self.check_data(&data)?;
                let (db, hub, outbox) = (self.state.db.clone(), self.state.hub.clone(), self.outbox.clone());
                let me = self.who().user.clone();
                actix::spawn(async move {
                    let peer = to.clone();
                    let my_id = me.id.clone();
                    let r = db.run(move |c| queries::share_a_channel(c, &my_id, &peer)).await;
                    let frame = match r {
                        Ok(true) => {
                            let ev = signal_event(&me, &call, &data);
                            for c in hub.registry.connections(&to) {
                                c.outbox.push(ev.clone());
                            }
                            if hub.clustered() {
                                // Connections of `to` on other nodes.
                                if let Ok(frame) =
                                    serde_json::value::RawValue::from_string(String::from_utf8_lossy(&ev).into_owned())
                                {
                                    hub.publish(crate::bus::BusEvent::Signal {
                                        to: to.as_str().into(),
                                        frame,
                                    });
                                }
                            }
                            reply_empty(id)
                        }
                        Ok(false) => reply_err(id, &AppError::forbidden("you share no room or DM with that user")),
                        Err(e) => reply_err(id, &e),
                    };
                    if id.is_some() || frame.starts_with(b"{\"error\"") {
                        outbox.push(frame);
                    }
                });
            }
        }
        Ok(())
    }

    fn join(
        &mut self,
        id: Option<i64>,
        channel: &str,
        since: Option<i64>,
        epoch: Option<String>,
        limit: Option<i64>,
        ctx: &mut Context<Self>,
    ) -> AppResult<()> {
        let ch = Channel::parse(channel)?;
        let who = self.who().clone();
        let access = read_access(&who, &ch, self.state.settings.anonymous())?;
        if !self.joined.contains_key(&ch.full) && self.joined.len() >= self.state.settings.max_channels_per_conn {
            return Err(AppError::bad_request("joined to too many channels"));
        }
        self.generation += 1;
        let generation = self.generation;
        self.joined.insert(ch.full.clone(), generation);
        let limit = limit.unwrap_or(ch.policy().history_on_join).min(200);
        // Rooms and DMs check access and remember their members (for `channels` and
        // `signal`) through the writer, batched with other writes, before the reply.
        let admit = matches!(ch.ns, Namespace::Room | Namespace::Dm) && !who.anonymous;
        let (writer, ch2, who2) = (self.state.writer.clone(), ch.clone(), who.clone());
        let check = async move {
            if !admit && access != Access::RoomCheck {
                return Ok(());
            }
            let (tx, rx) = tokio::sync::oneshot::channel();
            let check_room = access == Access::RoomCheck;
            writer.submit_or_fail(WriteOp::Admit {
                channel: ch2,
                who: who2,
                check_room,
                ack: Ack::Http(tx),
            });
            rx.await
                .map_err(|_| AppError::unavailable("storage unavailable"))?
                .map(|_| ())
        };
        ctx.spawn(actix::fut::wrap_future::<_, Self>(check).map(move |res, act, _ctx| {
            if act.joined.get(&ch.full) != Some(&generation) {
                // Left (or re-joined) meanwhile: that later request wins.
                act.reply(
                    id,
                    Err::<(), _>(AppError::bad_request("join superseded by a later leave or join")),
                );
                return;
            }
            if let Err(e) = res {
                act.joined.remove(&ch.full);
                act.reply::<()>(id, Err(e));
                return;
            }
            let state = act.state.clone();
            let conn = act.conn();
            let shard = state.hub.shard(&ch.full).clone();
            let sub = Subscribe {
                conn: conn.clone(),
                channel: ch.clone(),
                req_id: id,
                since,
                epoch: epoch.clone(),
            };
            let recovery = state.settings.recovery_limit;
            actix::spawn(async move {
                match shard.send(sub).await {
                    Ok(Subscribed::Replied) => {}
                    Ok(Subscribed::NeedsSnapshot) => {
                        let name = ch.full.clone();
                        let r = state
                            .db
                            .run(move |c| queries::join_snapshot(c, &name, since, epoch.as_deref(), limit, recovery))
                            .await;
                        match r {
                            Ok(snapshot) => shard.do_send(JoinComplete {
                                conn_id: conn.id,
                                channel: ch.full.clone(),
                                req_id: id,
                                snapshot,
                            }),
                            Err(e) => {
                                shard.do_send(Unsubscribe {
                                    conn_id: conn.id,
                                    channels: vec![ch.full.clone()],
                                });
                                conn.outbox.push(reply_err(id, &e));
                            }
                        }
                    }
                    Err(_) => {
                        conn.outbox
                            .push(reply_err(id, &AppError::unavailable("hub unavailable")));
                    }
                }
            });
        }));
        Ok(())
    }

    fn leave_all(&mut self) {
        let hub = &self.state.hub;
        let mut per_shard: Vec<Vec<Arc<str>>> = vec![Vec::new(); hub.shards().len()];
        for (name, _) in self.joined.drain() {
            per_shard[hub.shard_index(&name)].push(name);
        }
        for (i, channels) in per_shard.into_iter().enumerate() {
            if !channels.is_empty() {
                hub.shards()[i].do_send(Unsubscribe {
                    conn_id: self.id,
                    channels,
                });
            }
        }
    }

    fn heartbeat(&mut self, ctx: &mut Context<Self>) {
        if self.identity.is_none() {
            // The auth deadline has its own timer.
            return;
        }
        if self.last_seen.elapsed() >= self.state.settings.client_timeout() {
            log::debug!("session {} timed out", self.id);
            self.close(close::NORMAL, "heartbeat timeout", ctx);
            return;
        }
        self.outbox.ping(Bytes::new());
    }
}

/// Routes a publish: stored channels go to the writer, in-memory feeds to their shard.
pub fn publish(
    state: &AppState,
    ch: Channel,
    who: Identity,
    access: Access,
    data: Arc<serde_json::value::RawValue>,
    client_id: Option<Arc<str>>,
    ack: Ack,
) {
    match ch.policy().storage {
        Storage::Every => {
            let req = AppendReq {
                channel: ch,
                who,
                check_room: access == Access::RoomCheck,
                data,
                client_id,
                ack,
            };
            state.writer.submit_or_fail(WriteOp::Append(req));
        }
        Storage::LastValue | Storage::LastValueAndTrack => {
            if let Err(e) = state.feeds.validate(&ch, &data) {
                return ack.err(e);
            }
            let msg = FeedPublish {
                channel: ch.clone(),
                from: who.user,
                data,
                client_id,
                ack,
            };
            if let Err(e) = state.hub.shard(&ch.full).try_send(msg) {
                let msg = match e {
                    SendError::Full(m) | SendError::Closed(m) => m,
                };
                msg.ack.err(AppError::unavailable("hub overloaded, try again"));
            }
        }
    }
}

/// The present members of a channel, after the read check.
pub async fn presence(
    db: &crate::storage::Db,
    shard: &actix::Addr<crate::hub::Shard>,
    ch: Channel,
    who: Identity,
    access: Access,
) -> AppResult<Vec<crate::protocol::PresenceMember>> {
    if !ch.policy().presence {
        return Err(AppError::bad_request(format!("{} has no presence", ch.full)));
    }
    if access == Access::RoomCheck {
        let ch2 = ch.clone();
        db.run(move |c| queries::room_access(c, &ch2, &who)).await?;
    }
    shard
        .send(PresenceQuery { channel: ch.full })
        .await
        .map_err(|_| AppError::unavailable("hub unavailable"))
}

impl Actor for Session {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(64);
        self.outbox.set_notify(ctx.address().recipient());
        Metrics::inc(&self.state.metrics.connections_total);
        if let Some(identity) = self.identity.take() {
            self.authenticated(identity);
        }
        ctx.run_interval(self.state.settings.heartbeat(), |act, ctx| act.heartbeat(ctx));
        if self.identity.is_none() {
            ctx.run_later(self.state.settings.auth_timeout(), |act, ctx| {
                if act.identity.is_none() {
                    act.close(close::UNAUTHORIZED, "authentication timeout", ctx);
                }
            });
        }
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.leave_all();
        if let Some(c) = self.conn.take() {
            self.state.hub.registry.remove(&c.user.id, c.id);
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
        self.last_seen = Instant::now();
        Metrics::inc(&self.state.metrics.frames_in);
        match item {
            Ok(Incoming::Text(b)) => match std::str::from_utf8(&b) {
                Ok(text) => self.on_text(text, ctx),
                Err(_) => self.close(1007, "invalid UTF-8", ctx),
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
            Ok(Incoming::Close(_)) => {
                self.outbox.close(close::NORMAL, "", true);
                ctx.stop();
            }
            Err(ReadError::TooBig(n)) => {
                self.close(close::TOO_BIG, &format!("frame larger than {n} bytes"), ctx);
            }
            Err(ReadError::Protocol(e)) => {
                log::debug!("session {}: {e}", self.id);
                self.close(1002, "protocol error", ctx);
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

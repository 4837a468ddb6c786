//! The shard's side of a cluster: events from other nodes, and the periodic
//! presence announcements.

use std::time::Instant;

use actix::prelude::*;

use super::Shard;
use crate::{
    broker::BusEvent,
    channels::Channel,
    hub::{channel::Kind, Remote},
    protocol::typing_event,
};

impl Shard {
    /// Periodically (clustered only): tell other nodes who is present here, and forget
    /// nodes that stopped talking (crashed or cut off).
    pub(super) fn refresh_presence(&mut self) {
        let ttl = self.presence_refresh * 3;
        let now = Instant::now();
        for ch in self.channels.values_mut() {
            if !ch.ns.policy().presence {
                continue;
            }
            if ch.presence.has_local() {
                self.broker.publish(BusEvent::PresenceState {
                    channel: ch.name.clone(),
                    users: ch.presence.local_list(),
                });
            }
            if ch.presence.expire(now, ttl) {
                self.dirty.insert(ch.name.clone());
            }
        }
    }
}

impl Handler<Remote> for Shard {
    type Result = ();

    fn handle(&mut self, msg: Remote, ctx: &mut Self::Context) {
        let node = msg.node;
        match msg.ev {
            BusEvent::Message(w) => {
                let Ok(c) = Channel::parse(&w.channel) else { return };
                if let Some(name) = self.offer_stored(c.ns, w.into()) {
                    self.drain(ctx, &name);
                }
            }
            BusEvent::Edit(edit) => self.broadcast(&edit.channel, Kind::Change, &edit.frame(), None),
            BusEvent::Delete(delete) => self.broadcast(&delete.channel, Kind::Change, &delete.frame(), None),
            BusEvent::Feed { channel, from, data } => {
                let Ok(c) = Channel::parse(&channel) else { return };
                let m = self.feed_value(&c.full, c.ns, from, data, None);
                self.feeds.observe(&c, &m);
            }
            BusEvent::Typing { channel, user } => {
                let frame = typing_event(&channel, &user);
                self.broadcast(&channel, Kind::Ephemeral, &frame, Some(&user.id));
            }
            BusEvent::Presence { channel, joined, left } => {
                if let Some(ch) = self.channels.get_mut(&channel) {
                    if ch.presence.remote_diff(&node, joined, left, Instant::now()) {
                        self.dirty.insert(channel);
                    }
                }
            }
            BusEvent::PresenceState { channel, users } => {
                if let Some(ch) = self.channels.get_mut(&channel) {
                    if ch.presence.remote_state(&node, users, Instant::now()) {
                        self.dirty.insert(channel);
                    }
                }
            }
            BusEvent::PresenceAsk { channel } => {
                if let Some(ch) = self.channels.get(&channel) {
                    if ch.presence.has_local() {
                        self.broker.publish(BusEvent::PresenceState {
                            channel: channel.clone(),
                            users: ch.presence.local_list(),
                        });
                    }
                }
            }
            BusEvent::Signal { .. } | BusEvent::Revoke { .. } | BusEvent::Kick { .. } => {}
        }
    }
}

//! Calls: the server's view of each call set up with `signal` (PROTOCOL.md: kinds
//! `ring`, `accept`, `decline`, `busy`, `offer`, `answer`, `ice`, `hangup`). The server
//! relays every signal; beside that it keeps each call's state — ringing, answered,
//! ended — and when a call ends (hang-up, decline, or 30 s of ringing) it writes a call
//! record into the conversation, from the caller:
//! `{"type":"call","call","media","status":"answered"|"missed"|"declined","duration_ms"}`.
//!
//! A call is known by its caller and call id. Signals about calls the server has not
//! seen rung (offers and candidates between the peers of a room call, or clients that
//! skip the ring) are relayed without state. A DM call has two people; a room call up
//! to four (the caller rings each). The state
//! lives on the node that saw the ring (a call whose participants sit on several nodes
//! still works: signals cross nodes; only the record then depends on that node seeing
//! the hang-up). Bounded: at most [`MAX_CALLS`] calls at once; overflow policy: a new
//! ring is refused with `unavailable`. Calls end by themselves: ringing after
//! [`RING_TIMEOUT`], answered after [`MAX_ANSWERED`].

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde::Serialize;

use crate::{
    auth::Identity,
    channels::{Channel, Namespace},
    error::{AppError, AppResult},
};

/// Ringing longer than this is a missed call (the default of `ring_timeout_s`).
pub const RING_TIMEOUT: Duration = Duration::from_secs(30);
/// An answered call nobody hung up ends after this (a crashed client).
pub const MAX_ANSWERED: Duration = Duration::from_secs(12 * 3600);
/// Calls at once on a node.
pub const MAX_CALLS: usize = 10_000;
/// People rung by one caller (a room call has at most four people).
const MAX_PEERS: usize = 3;

/// What a signal means for its call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ring,
    Accept,
    Decline,
    Busy,
    Offer,
    Answer,
    Ice,
    Hangup,
}

impl Kind {
    pub fn parse(s: &str) -> AppResult<Kind> {
        Ok(match s {
            "ring" => Kind::Ring,
            "accept" => Kind::Accept,
            "decline" => Kind::Decline,
            "busy" => Kind::Busy,
            "offer" => Kind::Offer,
            "answer" => Kind::Answer,
            "ice" => Kind::Ice,
            "hangup" => Kind::Hangup,
            _ => {
                return Err(AppError::bad_request(
                    "signal `kind` is one of ring, accept, decline, busy, offer, answer, ice, hangup",
                ))
            }
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Media {
    Audio,
    Video,
}

impl Media {
    pub fn parse(s: Option<&str>) -> AppResult<Media> {
        match s {
            None | Some("audio") => Ok(Media::Audio),
            Some("video") => Ok(Media::Video),
            Some(_) => Err(AppError::bad_request("`media` is audio or video")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Answered,
    Missed,
    Declined,
}

/// A call that ended: what its record says.
#[derive(Debug, Clone)]
pub struct Record {
    pub call: Arc<str>,
    pub caller: Identity,
    pub channel: Channel,
    pub media: Media,
    pub status: Status,
    pub duration_ms: i64,
}

impl Record {
    /// The record's message data.
    pub fn data(&self) -> String {
        serde_json::json!({
            "type": "call",
            "call": self.call,
            "media": self.media,
            "status": self.status,
            "duration_ms": self.duration_ms,
        })
        .to_string()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerState {
    Rung,
    Joined,
    Gone,
}

#[derive(Debug)]
enum State {
    Ringing { since: Instant },
    Answered { since: Instant },
}

#[derive(Debug)]
struct Call {
    caller: Identity,
    channel: Channel,
    media: Media,
    peers: Vec<(Arc<str>, PeerState)>,
    /// Someone declined (the status when nobody answered).
    declined: bool,
    state: State,
}

impl Call {
    fn participant(&self, user: &str) -> bool {
        *self.caller.user.id == *user || self.peers.iter().any(|(p, _)| **p == *user)
    }

    fn peer(&mut self, user: &str) -> Option<&mut PeerState> {
        self.peers.iter_mut().find(|(p, _)| **p == *user).map(|(_, s)| s)
    }

    fn nobody_left(&self) -> bool {
        self.peers.iter().all(|(_, s)| *s == PeerState::Gone)
    }

    fn end(self, id: Arc<str>, now: Instant) -> Record {
        let (status, duration_ms) = match self.state {
            State::Answered { since } => (Status::Answered, now.duration_since(since).as_millis() as i64),
            State::Ringing { .. } if self.declined => (Status::Declined, 0),
            State::Ringing { .. } => (Status::Missed, 0),
        };
        Record {
            call: id,
            caller: self.caller,
            channel: self.channel,
            media: self.media,
            status,
            duration_ms,
        }
    }
}

/// A signal as the call state sees it.
pub struct Signal<'a> {
    pub from: &'a Identity,
    pub to: &'a str,
    pub call: &'a str,
    pub kind: Kind,
    pub media: Media,
    /// The room of a room call (`None`: the DM of the two).
    pub room: Option<Channel>,
}

/// (caller id, call id).
type CallKey = (Arc<str>, Arc<str>);

/// Every call in progress on this node.
pub struct Calls {
    map: Mutex<HashMap<CallKey, Call>>,
    ring_timeout: Duration,
}

impl Default for Calls {
    fn default() -> Calls {
        Calls::new(RING_TIMEOUT)
    }
}

impl Calls {
    /// Ringing ends as missed after `ring_timeout` (setting `ring_timeout_s`).
    pub fn new(ring_timeout: Duration) -> Calls {
        Calls {
            map: Mutex::default(),
            ring_timeout,
        }
    }

    /// Applies a signal to its call; the record when the call ended with it. Refuses
    /// what does not fit a known call (`bad_request`: a third person rung into a DM
    /// call, a fifth into a room call, a caller accepting or declining).
    pub fn signal(&self, s: Signal<'_>, now: Instant) -> AppResult<Option<Record>> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let me = &*s.from.user.id;
        if s.kind == Kind::Ring {
            return Self::ring(&mut map, s, now).map(|()| None);
        }
        // The caller's own signals, or a peer's to the caller.
        let mine: CallKey = (me.into(), s.call.into());
        let theirs: CallKey = (s.to.into(), s.call.into());
        let key = if map.contains_key(&mine) {
            mine
        } else if map.get(&theirs).is_some_and(|c| c.participant(me)) {
            theirs
        } else {
            return Ok(None);
        };
        let call = map.get_mut(&key).expect("present");
        if !call.participant(s.to) {
            return Ok(None);
        }
        let from_caller = *call.caller.user.id == *me;
        let ended = match s.kind {
            Kind::Ring | Kind::Offer | Kind::Answer | Kind::Ice => false,
            Kind::Accept if from_caller => return Err(AppError::bad_request("the caller cannot accept")),
            Kind::Accept => {
                if let Some(p) = call.peer(me) {
                    *p = PeerState::Joined;
                }
                if matches!(call.state, State::Ringing { .. }) {
                    call.state = State::Answered { since: now };
                }
                false
            }
            Kind::Decline | Kind::Busy if from_caller => {
                return Err(AppError::bad_request("the caller hangs up instead"))
            }
            Kind::Decline | Kind::Busy => {
                if let Some(p) = call.peer(me) {
                    *p = PeerState::Gone;
                }
                call.declined = true;
                call.nobody_left()
            }
            Kind::Hangup if from_caller => true,
            Kind::Hangup => {
                if let Some(p) = call.peer(me) {
                    *p = PeerState::Gone;
                }
                call.nobody_left()
            }
        };
        if !ended {
            return Ok(None);
        }
        let ((_, id), call) = map.remove_entry(&key).expect("present");
        Ok(Some(call.end(id, now)))
    }

    fn ring(map: &mut HashMap<CallKey, Call>, s: Signal<'_>, now: Instant) -> AppResult<()> {
        let key: CallKey = (s.from.user.id.clone(), s.call.into());
        if let Some(call) = map.get_mut(&key) {
            if call.peers.iter().any(|(p, _)| **p == *s.to) {
                return Ok(()); // rung again
            }
            if call.channel.ns != Namespace::Room {
                return Err(AppError::bad_request("a DM call has two people"));
            }
            if call.peers.len() >= MAX_PEERS {
                return Err(AppError::bad_request("a room call has at most four people"));
            }
            call.peers.push((s.to.into(), PeerState::Rung));
            return Ok(());
        }
        if map.len() >= MAX_CALLS {
            return Err(AppError::unavailable("too many calls at once, try again later"));
        }
        let channel = match s.room {
            Some(room) if room.ns == Namespace::Room => room,
            Some(_) => return Err(AppError::bad_request("`channel` of a ring is a room")),
            None => Channel::dm_between(&s.from.user.id, s.to)?,
        };
        map.insert(
            key,
            Call {
                caller: s.from.clone(),
                channel,
                media: s.media,
                peers: vec![(s.to.into(), PeerState::Rung)],
                declined: false,
                state: State::Ringing { since: now },
            },
        );
        Ok(())
    }

    /// Ends the calls that rang too long (missed) or ran too long; their records.
    pub fn expire(&self, now: Instant) -> Vec<Record> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let due: Vec<CallKey> = map
            .iter()
            .filter(|(_, c)| match c.state {
                State::Ringing { since } => now.duration_since(since) >= self.ring_timeout,
                State::Answered { since } => now.duration_since(since) >= MAX_ANSWERED,
            })
            .map(|(id, _)| id.clone())
            .collect();
        due.into_iter()
            .filter_map(|key| map.remove_entry(&key))
            .map(|((_, id), call)| call.end(id, now))
            .collect()
    }

    /// Calls in progress.
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{auth::Role, protocol::UserRef};

    fn who(id: &str) -> Identity {
        Identity {
            user: UserRef::new(id, id),
            role: Role::User,
            anonymous: false,
            entity: None,
        }
    }

    fn sig<'a>(from: &'a Identity, to: &'a str, kind: Kind) -> Signal<'a> {
        Signal {
            from,
            to,
            call: "c1",
            kind,
            media: Media::Video,
            room: None,
        }
    }

    #[test]
    fn answered_call_records_its_duration() {
        let (a, b) = (who("1"), who("2"));
        let calls = Calls::default();
        let t0 = Instant::now();
        assert!(calls.signal(sig(&a, "2", Kind::Ring), t0).unwrap().is_none());
        assert!(calls
            .signal(sig(&b, "1", Kind::Accept), t0 + Duration::from_secs(2))
            .unwrap()
            .is_none());
        calls.signal(sig(&a, "2", Kind::Offer), t0).unwrap();
        let r = calls
            .signal(sig(&b, "1", Kind::Hangup), t0 + Duration::from_secs(12))
            .unwrap()
            .expect("ended");
        assert_eq!(
            (r.status, r.duration_ms, &*r.channel.full),
            (Status::Answered, 10_000, "dm:1,2")
        );
        assert_eq!(&*r.caller.user.id, "1");
        assert!(calls.is_empty());
        assert!(r.data().contains(r#""status":"answered""#));
    }

    #[test]
    fn declined_missed_and_cancelled_calls() {
        let (a, b) = (who("1"), who("2"));
        let calls = Calls::default();
        let t0 = Instant::now();
        calls.signal(sig(&a, "2", Kind::Ring), t0).unwrap();
        let r = calls.signal(sig(&b, "1", Kind::Decline), t0).unwrap().unwrap();
        assert_eq!(r.status, Status::Declined);
        calls.signal(sig(&a, "2", Kind::Ring), t0).unwrap();
        assert!(calls.expire(t0 + Duration::from_secs(29)).is_empty());
        let r = calls.expire(t0 + RING_TIMEOUT);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].status, Status::Missed);
        calls.signal(sig(&a, "2", Kind::Ring), t0).unwrap();
        let r = calls.signal(sig(&a, "2", Kind::Hangup), t0).unwrap().unwrap();
        assert_eq!(r.status, Status::Missed, "the caller gave up");
    }

    #[test]
    fn unknown_calls_are_relayed_without_state_and_call_ids_are_per_caller() {
        let (a, b, c) = (who("1"), who("2"), who("3"));
        let calls = Calls::default();
        let t0 = Instant::now();
        assert!(calls.signal(sig(&b, "1", Kind::Accept), t0).unwrap().is_none());
        assert!(calls.is_empty());
        calls.signal(sig(&a, "2", Kind::Ring), t0).unwrap();
        // A stranger's hang-up with the same call id does not end a's call.
        assert!(calls.signal(sig(&c, "1", Kind::Hangup), t0).unwrap().is_none());
        assert_eq!(calls.len(), 1);
        // Another caller may use the same call id for a call of their own.
        calls.signal(sig(&c, "2", Kind::Ring), t0).unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(
            calls.signal(sig(&a, "3", Kind::Ring), t0).unwrap_err().code,
            crate::error::ErrorCode::BadRequest,
            "a third person in a DM call"
        );
        assert_eq!(
            calls.signal(sig(&a, "2", Kind::Accept), t0).unwrap_err().code,
            crate::error::ErrorCode::BadRequest
        );
    }

    #[test]
    fn room_calls_ring_up_to_three_and_end_when_everyone_left() {
        let a = who("1");
        let calls = Calls::default();
        let t0 = Instant::now();
        let room = Channel::parse("room:team").unwrap();
        let ring = |to: &'static str| Signal {
            from: &a,
            to,
            call: "r",
            kind: Kind::Ring,
            media: Media::Audio,
            room: Some(room.clone()),
        };
        for p in ["2", "3", "4"] {
            calls.signal(ring(p), t0).unwrap();
        }
        assert!(calls.signal(ring("5"), t0).is_err(), "a fifth person");
        let (b, c, d) = (who("2"), who("3"), who("4"));
        let s = |from: &'static Identity, kind| Signal {
            from,
            to: "1",
            call: "r",
            kind,
            media: Media::Audio,
            room: None,
        };
        let (b, c, d): (&'static Identity, &'static Identity, &'static Identity) =
            (Box::leak(Box::new(b)), Box::leak(Box::new(c)), Box::leak(Box::new(d)));
        calls.signal(s(b, Kind::Accept), t0).unwrap();
        calls.signal(s(c, Kind::Decline), t0).unwrap();
        assert!(
            calls.signal(s(b, Kind::Hangup), t0).unwrap().is_none(),
            "d is still rung"
        );
        let r = calls
            .signal(s(d, Kind::Hangup), t0 + Duration::from_secs(5))
            .unwrap()
            .unwrap();
        assert_eq!((r.status, &*r.channel.full), (Status::Answered, "room:team"));
    }
}

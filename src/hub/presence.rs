//! Presence of one channel across the cluster, as a pure state machine (no I/O, no
//! clock: the caller passes `now`).
//!
//! It counts this node's present connections per user, keeps the lists the other
//! nodes announced, and accumulates two kinds of changes between flushes:
//! * the cluster-wide diff for this node's members (`joined`/`left` of the next
//!   `presence` event): a user who joins and leaves between two flushes produces
//!   nothing, and a user present on two nodes stays present until both let go;
//! * this node's own diff, announced to the other nodes.
//!
//! A node that stopped talking about the channel for longer than the caller's ttl is
//! taken as gone ([`Presence::expire`]) and its users leave.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::protocol::{PresenceMember, UserRef};

/// A user's connections on this node.
struct Local {
    name: Arc<str>,
    conns: u32,
}

/// Who is present in the channel on another node.
struct RemoteNode {
    /// When the node last spoke about this channel (diff or state).
    at: Instant,
    users: HashMap<Arc<str>, (UserRef, u32)>,
}

/// Changes accumulated between two flushes, by user id. Adding a change cancels its
/// opposite.
#[derive(Default)]
struct Diff {
    joined: HashMap<Arc<str>, UserRef>,
    left: HashMap<Arc<str>, UserRef>,
}

impl Diff {
    fn join(&mut self, user: &UserRef) {
        if self.left.remove(&user.id).is_none() {
            self.joined.insert(user.id.clone(), user.clone());
        }
    }

    fn leave(&mut self, user: &UserRef) {
        if self.joined.remove(&user.id).is_none() {
            self.left.insert(user.id.clone(), user.clone());
        }
    }

    fn is_empty(&self) -> bool {
        self.joined.is_empty() && self.left.is_empty()
    }

    /// The accumulated (joined, left), sorted by id; `None` when nothing changed.
    fn take(&mut self) -> Option<(Vec<UserRef>, Vec<UserRef>)> {
        if self.is_empty() {
            return None;
        }
        let sorted = |m: &mut HashMap<Arc<str>, UserRef>| {
            let mut v: Vec<UserRef> = m.drain().map(|(_, u)| u).collect();
            v.sort_by(|a, b| a.id.cmp(&b.id));
            v
        };
        Some((sorted(&mut self.joined), sorted(&mut self.left)))
    }
}

/// Presence of one channel.
#[derive(Default)]
pub struct Presence {
    local: HashMap<Arc<str>, Local>,
    remote: HashMap<Arc<str>, RemoteNode>,
    /// Cluster-wide changes for the next event to this node's members.
    event: Diff,
    /// This node's changes for the next announcement to other nodes.
    announce: Diff,
}

impl Presence {
    /// Present anywhere in the cluster (this node or another)?
    fn present_anywhere(&self, user: &str) -> bool {
        self.local.contains_key(user) || self.remote.values().any(|n| n.users.contains_key(user))
    }

    /// A connection of `user` on this node became present. True when this node's
    /// presence changed (a flush has something to do).
    pub fn join(&mut self, user: &UserRef) -> bool {
        let was_anywhere = self.present_anywhere(&user.id);
        let l = self.local.entry(user.id.clone()).or_insert_with(|| Local {
            name: user.name.clone(),
            conns: 0,
        });
        l.name = user.name.clone();
        l.conns += 1;
        if l.conns > 1 {
            return false;
        }
        self.announce.join(user);
        if !was_anywhere {
            self.event.join(user);
        }
        true
    }

    /// A present connection of `user` on this node went away. True when this node's
    /// presence changed.
    pub fn leave(&mut self, user: &UserRef) -> bool {
        let Some(l) = self.local.get_mut(&user.id) else {
            return false;
        };
        l.conns = l.conns.saturating_sub(1);
        if l.conns > 0 {
            return false;
        }
        self.local.remove(&user.id);
        self.announce.leave(user);
        if !self.present_anywhere(&user.id) {
            self.event.leave(user);
        }
        true
    }

    /// A diff announced by another node. True when the cluster-wide presence changed.
    pub fn remote_diff(&mut self, node: &Arc<str>, joined: Vec<UserRef>, left: Vec<UserRef>, now: Instant) -> bool {
        let mut changed = false;
        for u in joined {
            let was = self.present_anywhere(&u.id);
            let n = self.remote.entry(node.clone()).or_insert_with(|| RemoteNode {
                at: now,
                users: HashMap::new(),
            });
            n.users.insert(u.id.clone(), (u.clone(), 1));
            if !was {
                self.event.join(&u);
                changed = true;
            }
        }
        for u in left {
            let removed = self
                .remote
                .get_mut(node)
                .is_some_and(|n| n.users.remove(&u.id).is_some());
            if removed && !self.present_anywhere(&u.id) {
                self.event.leave(&u);
                changed = true;
            }
        }
        if let Some(n) = self.remote.get_mut(node) {
            n.at = now;
        }
        changed
    }

    /// The full list of another node (empty: the node has nobody, or is gone). True
    /// when the cluster-wide presence changed.
    pub fn remote_state(&mut self, node: &Arc<str>, users: Vec<PresenceMember>, now: Instant) -> bool {
        let old = self.remote.remove(node).map(|n| n.users).unwrap_or_default();
        let new: HashMap<Arc<str>, (UserRef, u32)> = users
            .into_iter()
            .map(|m| (m.id.clone(), (UserRef { id: m.id, name: m.name }, m.conns.max(1))))
            .collect();
        let mut changed = false;
        for (id, (u, _)) in &new {
            if !old.contains_key(id) && !self.present_anywhere(id) {
                self.event.join(u);
                changed = true;
            }
        }
        if !new.is_empty() {
            self.remote.insert(node.clone(), RemoteNode { at: now, users: new });
        }
        for (id, (u, _)) in old {
            if !self.present_anywhere(&id) {
                self.event.leave(&u);
                changed = true;
            }
        }
        changed
    }

    /// Forgets the nodes silent for longer than `ttl` (crashed or cut off). True when
    /// the cluster-wide presence changed.
    pub fn expire(&mut self, now: Instant, ttl: Duration) -> bool {
        let gone: Vec<Arc<str>> = self
            .remote
            .iter()
            .filter(|(_, n)| now.saturating_duration_since(n.at) > ttl)
            .map(|(id, _)| id.clone())
            .collect();
        let mut changed = false;
        for node in gone {
            changed |= self.remote_state(&node, Vec::new(), now);
        }
        changed
    }

    /// The cluster-wide (joined, left) since the last call, for this node's members.
    pub fn take_event(&mut self) -> Option<(Vec<UserRef>, Vec<UserRef>)> {
        self.event.take()
    }

    /// This node's (joined, left) since the last call, for the other nodes.
    pub fn take_announcement(&mut self) -> Option<(Vec<UserRef>, Vec<UserRef>)> {
        self.announce.take()
    }

    /// Everyone present in the cluster, connections summed over nodes, ordered by
    /// name (then id).
    pub fn list(&self) -> Vec<PresenceMember> {
        let mut all: HashMap<&Arc<str>, PresenceMember> = HashMap::new();
        for (id, l) in &self.local {
            all.insert(
                id,
                PresenceMember {
                    id: id.clone(),
                    name: l.name.clone(),
                    conns: l.conns,
                },
            );
        }
        for n in self.remote.values() {
            for (id, (u, conns)) in &n.users {
                all.entry(id)
                    .and_modify(|m| m.conns += conns)
                    .or_insert_with(|| PresenceMember {
                        id: id.clone(),
                        name: u.name.clone(),
                        conns: *conns,
                    });
            }
        }
        let mut v: Vec<PresenceMember> = all.into_values().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        v
    }

    /// This node's present users (announced to other nodes).
    pub fn local_list(&self) -> Vec<PresenceMember> {
        self.local
            .iter()
            .map(|(id, l)| PresenceMember {
                id: id.clone(),
                name: l.name.clone(),
                conns: l.conns,
            })
            .collect()
    }

    /// Does this node have present users?
    pub fn has_local(&self) -> bool {
        !self.local.is_empty()
    }

    /// Nothing to remember and nothing to flush (the channel may be dropped).
    pub fn is_idle(&self) -> bool {
        self.local.is_empty() && self.event.is_empty() && self.announce.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(id: &str) -> UserRef {
        UserRef::new(id, format!("n-{id}"))
    }

    fn ids(v: &[UserRef]) -> Vec<&str> {
        v.iter().map(|u| &*u.id).collect()
    }

    fn member(id: &str, conns: u32) -> PresenceMember {
        PresenceMember {
            id: id.into(),
            name: format!("n-{id}").into(),
            conns,
        }
    }

    #[test]
    fn joins_and_leaves_count_connections() {
        let mut p = Presence::default();
        assert!(p.join(&u("a")));
        assert!(!p.join(&u("a")), "a second connection changes nothing");
        assert!(p.join(&u("b")));
        let list = p.list();
        assert_eq!(
            list.iter().map(|m| (&*m.id, m.conns)).collect::<Vec<_>>(),
            [("a", 2), ("b", 1)]
        );
        let (joined, left) = p.take_event().unwrap();
        assert_eq!((ids(&joined), ids(&left)), (vec!["a", "b"], vec![]));
        assert_eq!(ids(&p.take_announcement().unwrap().0), ["a", "b"]);
        assert!(!p.leave(&u("a")), "one of two connections left");
        assert!(p.take_event().is_none());
        assert!(p.leave(&u("a")));
        assert!(!p.leave(&u("a")), "leaving twice is harmless");
        let (joined, left) = p.take_event().unwrap();
        assert_eq!((ids(&joined), ids(&left)), (vec![], vec!["a"]));
        assert!(p.leave(&u("b")));
        p.take_event();
        p.take_announcement();
        assert!(p.is_idle());
    }

    #[test]
    fn changes_coalesce_between_flushes() {
        let mut p = Presence::default();
        p.join(&u("a"));
        p.leave(&u("a"));
        assert!(p.take_event().is_none(), "join then leave is no change");
        assert!(p.take_announcement().is_none());
        p.join(&u("b"));
        p.take_event();
        p.leave(&u("b"));
        p.join(&u("b"));
        assert!(p.take_event().is_none(), "leave then join is no change");
    }

    #[test]
    fn node_diffs_merge_with_local_presence() {
        let n1: Arc<str> = "n1".into();
        let t = Instant::now();
        let mut p = Presence::default();
        p.join(&u("a"));
        p.take_event();
        p.take_announcement();
        // `a` also on n1, `c` only there.
        assert!(p.remote_diff(&n1, vec![u("a"), u("c")], vec![], t));
        let (joined, _) = p.take_event().unwrap();
        assert_eq!(ids(&joined), ["c"], "a was present already");
        assert_eq!(
            p.list().iter().map(|m| (&*m.id, m.conns)).collect::<Vec<_>>(),
            [("a", 2), ("c", 1)]
        );
        // `a` leaves here but stays on n1: nobody left cluster-wide.
        assert!(p.leave(&u("a")));
        assert!(p.take_event().is_none());
        assert_eq!(ids(&p.take_announcement().unwrap().1), ["a"]);
        // n1 lets go of both.
        assert!(p.remote_diff(&n1, vec![], vec![u("a"), u("c")], t));
        let (_, left) = p.take_event().unwrap();
        assert_eq!(ids(&left), ["a", "c"]);
        assert!(p.list().is_empty());
        assert!(!p.remote_diff(&n1, vec![], vec![u("zz")], t), "unknown leaver");
    }

    #[test]
    fn node_state_replaces_its_list() {
        let n1: Arc<str> = "n1".into();
        let t = Instant::now();
        let mut p = Presence::default();
        assert!(p.remote_state(&n1, vec![member("a", 3), member("b", 1)], t));
        p.take_event();
        assert_eq!(p.list()[0].conns, 3);
        // The next state drops b and adds c.
        assert!(p.remote_state(&n1, vec![member("a", 1), member("c", 1)], t));
        let (joined, left) = p.take_event().unwrap();
        assert_eq!((ids(&joined), ids(&left)), (vec!["c"], vec!["b"]));
        assert!(
            !p.remote_state(&n1, vec![member("a", 1), member("c", 1)], t),
            "same state"
        );
        assert!(!p.has_local());
        assert!(p.is_idle(), "remote-only presence does not keep a channel");
    }

    #[test]
    fn silent_nodes_expire() {
        let (n1, n2): (Arc<str>, Arc<str>) = ("n1".into(), "n2".into());
        let t0 = Instant::now();
        let ttl = Duration::from_secs(30);
        let mut p = Presence::default();
        p.remote_state(&n1, vec![member("a", 1)], t0);
        p.remote_state(&n2, vec![member("a", 1), member("b", 1)], t0);
        p.take_event();
        // n2 keeps talking, n1 does not.
        p.remote_diff(&n2, vec![], vec![], t0 + Duration::from_secs(20));
        assert!(
            !p.expire(t0 + Duration::from_secs(25), ttl),
            "nobody silent for 30 s yet"
        );
        assert!(
            !p.expire(t0 + Duration::from_secs(31), ttl),
            "n1 expired, but a is still on n2"
        );
        assert_eq!(p.list().len(), 2);
        assert!(p.expire(t0 + Duration::from_secs(51), ttl));
        let (_, left) = p.take_event().unwrap();
        assert_eq!(ids(&left), ["a", "b"]);
        assert!(p.list().is_empty());
    }
}

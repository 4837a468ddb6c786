//! Presence of one channel across the cluster, as a pure state machine (no I/O, no
//! clock: the caller passes `now`).
//!
//! It counts this node's present connections per user, keeps the lists the other
//! nodes announced, and maintains the cluster-wide view incrementally: per user the
//! connections summed over nodes, and an index ordered by (name, id) from which the
//! member list is read a page at a time. A join or leave costs O(log n) in the room's
//! size; nothing is ever sorted or copied whole.
//!
//! Between flushes it accumulates two kinds of changes:
//! * the cluster-wide diff for this node's members (`joined`/`left` of the next
//!   `presence` event): a user who joins and leaves between two flushes produces
//!   nothing, and a user present on two nodes stays present until both let go;
//! * this node's own diff, announced to the other nodes.
//!
//! A node that stopped talking about the channel for longer than the caller's ttl is
//! taken as gone ([`Presence::expire`]) and its users leave.

use std::{
    collections::{BTreeSet, HashMap},
    ops::Bound,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::protocol::{PresenceMember, UserRef};

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

/// Above this many users present, members get only the count, not who joined or left.
pub const LARGE: usize = 1000;

/// How often a large channel's count is told, at most.
pub const COUNT_EVERY: Duration = Duration::from_secs(1);

/// What a flush tells this node's members.
#[derive(Debug, PartialEq, Eq)]
pub enum Flush {
    /// Nothing changed.
    Nothing,
    /// Who joined and who left since the last flush, and how many are present.
    Diff {
        joined: Vec<UserRef>,
        left: Vec<UserRef>,
        count: usize,
    },
    /// A large channel: only how many are present.
    Count(usize),
    /// A large channel's count changed, but it was told less than [`COUNT_EVERY`] ago:
    /// flush again later.
    Later,
}

/// A user present somewhere in the cluster.
struct Present {
    name: Arc<str>,
    /// Connections over all nodes.
    conns: u32,
}

/// A position in the member list: members are ordered by (name, id).
pub type Cursor = (Arc<str>, Arc<str>);

/// One page of the member list.
#[derive(Debug)]
pub struct Page {
    pub members: Vec<PresenceMember>,
    /// Users present in all.
    pub count: usize,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<Cursor>,
}

/// Presence of one channel.
#[derive(Default)]
pub struct Presence {
    /// This node's present connections per user id.
    local: HashMap<Arc<str>, u32>,
    remote: HashMap<Arc<str>, RemoteNode>,
    /// Everyone present in the cluster, by id.
    all: HashMap<Arc<str>, Present>,
    /// The same users ordered by (name, id).
    order: BTreeSet<Cursor>,
    /// Cluster-wide changes for the next event to this node's members.
    event: Diff,
    /// This node's changes for the next announcement to other nodes.
    announce: Diff,
    /// The count last told in a large channel, and when.
    told: Option<(usize, Instant)>,
}

impl Presence {
    /// Adds `n` connections of `user` to the cluster-wide view; true when the user
    /// was not present before.
    fn add(&mut self, user: &UserRef, n: u32) -> bool {
        match self.all.get_mut(&user.id) {
            Some(p) => {
                p.conns += n;
                false
            }
            None => {
                self.all.insert(
                    user.id.clone(),
                    Present {
                        name: user.name.clone(),
                        conns: n,
                    },
                );
                self.order.insert((user.name.clone(), user.id.clone()));
                true
            }
        }
    }

    /// Takes `n` connections of user `id` from the cluster-wide view; true when the
    /// user is no longer present anywhere.
    fn sub(&mut self, id: &Arc<str>, n: u32) -> bool {
        let Some(p) = self.all.get_mut(id) else {
            return false;
        };
        p.conns = p.conns.saturating_sub(n);
        if p.conns > 0 {
            return false;
        }
        if let Some(p) = self.all.remove(id) {
            self.order.remove(&(p.name, id.clone()));
        }
        true
    }

    /// A connection of `user` on this node became present. True when this node's
    /// presence changed (a flush has something to do).
    pub fn join(&mut self, user: &UserRef) -> bool {
        let local = self.local.entry(user.id.clone()).or_insert(0);
        *local += 1;
        let first_here = *local == 1;
        if self.add(user, 1) {
            self.event.join(user);
        }
        if first_here {
            self.announce.join(user);
        }
        first_here
    }

    /// A present connection of `user` on this node went away. True when this node's
    /// presence changed.
    pub fn leave(&mut self, user: &UserRef) -> bool {
        let Some(local) = self.local.get_mut(&user.id) else {
            return false;
        };
        *local -= 1;
        let last_here = *local == 0;
        if last_here {
            self.local.remove(&user.id);
            self.announce.leave(user);
        }
        if self.sub(&user.id, 1) {
            self.event.leave(user);
        }
        last_here
    }

    /// A diff announced by another node. True when the cluster-wide presence changed.
    pub fn remote_diff(&mut self, node: &Arc<str>, joined: Vec<UserRef>, left: Vec<UserRef>, now: Instant) -> bool {
        let mut changed = false;
        let n = self.remote.entry(node.clone()).or_insert_with(|| RemoteNode {
            at: now,
            users: HashMap::new(),
        });
        n.at = now;
        let mut added = Vec::new();
        let mut removed = Vec::new();
        for u in joined {
            if !n.users.contains_key(&u.id) {
                n.users.insert(u.id.clone(), (u.clone(), 1));
                added.push(u);
            }
        }
        for u in left {
            if let Some((_, conns)) = n.users.remove(&u.id) {
                removed.push((u, conns));
            }
        }
        for u in added {
            if self.add(&u, 1) {
                self.event.join(&u);
                changed = true;
            }
        }
        for (u, conns) in removed {
            if self.sub(&u.id, conns) {
                self.event.leave(&u);
                changed = true;
            }
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
        // Add the new counts first, so a user in both lists never flickers out.
        for (u, conns) in new.values() {
            if self.add(u, *conns) {
                self.event.join(u);
                changed = true;
            }
        }
        for (id, (u, conns)) in old {
            if self.sub(&id, conns) {
                self.event.leave(&u);
                changed = true;
            }
        }
        if !new.is_empty() {
            self.remote.insert(node.clone(), RemoteNode { at: now, users: new });
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

    /// What to tell this node's members about the changes since the last flush. Up to
    /// [`LARGE`] users present, the diff (coalesced) and the count; above, only the
    /// count, at most once per [`COUNT_EVERY`].
    pub fn flush(&mut self, now: Instant) -> Flush {
        let count = self.count();
        if count <= LARGE {
            return match self.event.take() {
                Some((joined, left)) => {
                    self.told = None;
                    Flush::Diff { joined, left, count }
                }
                None => Flush::Nothing,
            };
        }
        self.event = Diff::default();
        match self.told {
            Some((told, _)) if told == count => Flush::Nothing,
            Some((_, at)) if now.saturating_duration_since(at) < COUNT_EVERY => Flush::Later,
            _ => {
                self.told = Some((count, now));
                Flush::Count(count)
            }
        }
    }

    /// This node's (joined, left) since the last call, for the other nodes.
    pub fn take_announcement(&mut self) -> Option<(Vec<UserRef>, Vec<UserRef>)> {
        self.announce.take()
    }

    /// Users present in the cluster.
    pub fn count(&self) -> usize {
        self.all.len()
    }

    /// Up to `limit` members after `after` (from the start when `None`), in (name,
    /// id) order, connections summed over nodes.
    pub fn page(&self, after: Option<&Cursor>, limit: usize) -> Page {
        let start = match after {
            Some(c) => Bound::Excluded(c),
            None => Bound::Unbounded,
        };
        let mut it = self.order.range::<Cursor, _>((start, Bound::Unbounded));
        let members: Vec<PresenceMember> = it
            .by_ref()
            .take(limit)
            .map(|(name, id)| PresenceMember {
                id: id.clone(),
                name: name.clone(),
                conns: self.all.get(id).map_or(0, |p| p.conns),
            })
            .collect();
        let next = match (it.next(), members.last()) {
            (Some(_), Some(last)) => Some((last.name.clone(), last.id.clone())),
            _ => None,
        };
        Page {
            members,
            count: self.count(),
            next,
        }
    }

    /// This node's present users (announced to other nodes).
    pub fn local_list(&self) -> Vec<PresenceMember> {
        self.local
            .iter()
            .map(|(id, conns)| PresenceMember {
                id: id.clone(),
                name: self.all.get(id).map_or_else(|| id.clone(), |p| p.name.clone()),
                conns: *conns,
            })
            .collect()
    }

    /// Does this node have present users?
    pub fn has_local(&self) -> bool {
        !self.local.is_empty()
    }

    /// Nothing to remember and nothing to flush (the channel may be dropped).
    pub fn is_idle(&self) -> bool {
        // (`told` only matters while users are present.)
        self.local.is_empty() && self.event.is_empty() && self.announce.is_empty()
    }
}

#[cfg(test)]
#[path = "presence_tests.rs"]
mod tests;

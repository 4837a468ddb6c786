//! Rooms known to exist and be public, so that reading one (join, presence, typing,
//! read markers) needs no storage round trip for its access check. A room never
//! becomes private and is never deleted, so an entry never goes stale (archiving
//! keeps a room readable).
//!
//! Bounded by [`MAX_ROOMS`]. Overflow policy: the set is emptied and fills again from
//! the storage checks that follow.

use std::{
    collections::HashSet,
    sync::{Arc, RwLock},
};

/// Most rooms remembered (about 100 bytes each).
pub const MAX_ROOMS: usize = 100_000;

#[derive(Default)]
pub struct PublicRooms(RwLock<HashSet<Arc<str>>>);

impl PublicRooms {
    /// Is `room` (its channel name, `room:…`) known to be public?
    pub fn contains(&self, room: &str) -> bool {
        self.0.read().unwrap_or_else(|p| p.into_inner()).contains(room)
    }

    /// Remembers that `room` exists and is public.
    pub fn insert(&self, room: &Arc<str>) {
        let mut set = self.0.write().unwrap_or_else(|p| p.into_inner());
        if set.len() >= MAX_ROOMS {
            *set = HashSet::new();
        }
        set.insert(room.clone());
    }

    pub fn len(&self) -> usize {
        self.0.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_until_full_then_starts_over() {
        let rooms = PublicRooms::default();
        assert!(!rooms.contains("room:a"));
        rooms.insert(&"room:a".into());
        assert!(rooms.contains("room:a"));
        for i in 1..MAX_ROOMS {
            rooms.insert(&format!("room:{i}").into());
        }
        assert_eq!(rooms.len(), MAX_ROOMS);
        rooms.insert(&"room:last".into());
        assert_eq!(rooms.len(), 1);
        assert!(rooms.contains("room:last") && !rooms.contains("room:a"));
    }
}

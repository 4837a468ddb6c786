//! Token versions: logout and a password change bump the account's version, and a
//! token that carries an older version (claim `ver`, absent = 0) is refused. Banned
//! users' tokens are refused whatever their version.
//!
//! The table mirrors the `users.token_version` column for accounts whose version is
//! above 0 (loaded at start, raised on this node by the account use cases and on the
//! others by a bus event). Bound: one entry per account that ever revoked its tokens
//! (about 64 bytes each); it is the column itself, so it cannot grow without the
//! database growing; no overflow policy is needed beyond that. The same holds for the
//! banned set (a mirror of the `bans` table).

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, RwLock},
};

/// user id → lowest token version still accepted; banned user ids.
#[derive(Default)]
pub struct TokenVersions {
    min: RwLock<HashMap<Arc<str>, u32>>,
    banned: RwLock<HashSet<Arc<str>>>,
}

impl TokenVersions {
    pub fn is_banned(&self, user: &str) -> bool {
        self.banned.read().unwrap_or_else(|p| p.into_inner()).contains(user)
    }

    /// Marks the user banned (true) or not; true when that changed anything.
    pub fn set_banned(&self, user: &str, banned: bool) -> bool {
        let mut b = self.banned.write().unwrap_or_else(|p| p.into_inner());
        if banned {
            b.insert(user.into())
        } else {
            b.remove(user)
        }
    }

    /// The version tokens issued now carry; older ones are refused.
    pub fn current(&self, user: &str) -> u32 {
        let m = self.min.read().unwrap_or_else(|p| p.into_inner());
        m.get(user).copied().unwrap_or(0)
    }

    /// Raises the user's version to `version` (never lowers it). True when it changed.
    pub fn raise(&self, user: &str, version: u32) -> bool {
        let mut m = self.min.write().unwrap_or_else(|p| p.into_inner());
        match m.get_mut(user) {
            Some(v) if *v >= version => false,
            Some(v) => {
                *v = version;
                true
            }
            None if version == 0 => false,
            None => {
                m.insert(user.into(), version);
                true
            }
        }
    }

    /// Loads the stored versions (at start).
    pub fn load(&self, rows: impl IntoIterator<Item = (String, u32)>) {
        for (user, v) in rows {
            self.raise(&user, v);
        }
    }

    /// Accounts with a version above 0.
    pub fn len(&self) -> usize {
        self.min.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raise_only() {
        let v = TokenVersions::default();
        assert_eq!(v.current("1"), 0);
        assert!(!v.raise("1", 0));
        assert!(v.is_empty());
        assert!(v.raise("1", 2));
        assert!(!v.raise("1", 1));
        assert_eq!(v.current("1"), 2);
        v.load([("1".to_string(), 1), ("2".to_string(), 5)]);
        assert_eq!((v.current("1"), v.current("2"), v.len()), (2, 5, 2));
        assert!(!v.is_banned("1"));
        assert!(v.set_banned("1", true) && v.is_banned("1"));
        assert!(!v.set_banned("1", true));
        assert!(v.set_banned("1", false) && !v.is_banned("1"));
    }
}

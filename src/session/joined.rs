//! The channels one connection joined: few (most connections hold one or two), so a
//! vector searched linearly, grown one slot at a time, instead of a hash map.

use std::sync::Arc;

/// Channel → generation of its join. Bounded by the caller (`max_channels_per_conn`).
#[derive(Default)]
pub struct Joined(Vec<(Arc<str>, u64)>);

impl Joined {
    pub fn get(&self, name: &str) -> Option<&u64> {
        self.0.iter().find(|(n, _)| &**n == name).map(|(_, g)| g)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn insert(&mut self, name: Arc<str>, generation: u64) {
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some((_, g)) => *g = generation,
            None => {
                self.0.reserve_exact(1);
                self.0.push((name, generation));
            }
        }
    }

    pub fn remove(&mut self, name: &str) -> Option<u64> {
        let i = self.0.iter().position(|(n, _)| &**n == name)?;
        let (_, g) = self.0.swap_remove(i);
        if self.0.is_empty() {
            self.0 = Vec::new();
        }
        Some(g)
    }

    /// Every channel, leaving none.
    pub fn drain(&mut self) -> Vec<Arc<str>> {
        std::mem::take(&mut self.0).into_iter().map(|(n, _)| n).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_remove() {
        let mut j = Joined::default();
        j.insert("room:a".into(), 1);
        j.insert("room:b".into(), 2);
        j.insert("room:a".into(), 3);
        assert_eq!((j.len(), j.get("room:a")), (2, Some(&3)));
        assert_eq!(j.remove("room:a"), Some(3));
        assert!(!j.contains_key("room:a") && j.contains_key("room:b"));
        assert_eq!(j.drain().len(), 1);
        assert_eq!(j.len(), 0);
    }
}

//! Counts per key that forget a key once its count is back to zero, so that a map of clients
//! holds only those with something counted: open connections per address, requests in flight
//! per address, cores held per client.

use std::{collections::HashMap, hash::Hash};

#[derive(Debug)]
pub struct Tally<K>(HashMap<K, usize>);

impl<K> Default for Tally<K> {
    fn default() -> Self {
        Self(HashMap::new())
    }
}

impl<K: Hash + Eq> Tally<K> {
    /// The count of `key` (0 when none).
    pub fn get(&self, key: &K) -> usize {
        self.0.get(key).copied().unwrap_or(0)
    }

    /// Counts one more for `key`.
    pub fn add(&mut self, key: K) {
        *self.0.entry(key).or_default() += 1;
    }

    /// Counts one less for `key`, forgetting it at zero; nothing when it has no count.
    pub fn take(&mut self, key: &K) {
        if let Some(count) = self.0.get_mut(key) {
            *count -= 1;
            if *count == 0 {
                self.0.remove(key);
            }
        }
    }

    /// Keys with a count.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::Tally;

    #[test]
    fn a_key_is_forgotten_when_its_count_is_back_to_zero() {
        let mut tally = Tally::default();
        tally.add("a");
        tally.add("a");
        tally.add("b");
        assert_eq!((tally.get(&"a"), tally.get(&"b"), tally.len()), (2, 1, 2));
        tally.take(&"b");
        tally.take(&"c");
        assert_eq!((tally.get(&"b"), tally.len()), (0, 1));
        tally.take(&"a");
        tally.take(&"a");
        assert!(tally.is_empty());
    }
}

//! The Space-Saving heavy-hitters sketch: the keys counted most, in fixed memory. A key
//! counted often is always among the `capacity` kept, its count overestimated by at most the
//! minimum it displaced (`error`); while fewer keys than `capacity` were seen, every count is
//! exact.

use std::borrow::Borrow;

/// One kept key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted<K> {
    /// The key.
    pub key: K,
    /// Its count: at most `error` more than the true one.
    pub count: u64,
    /// The most `count` may overestimate.
    pub error: u64,
}

/// The sketch: at most `capacity` counters.
#[derive(Debug, Clone)]
pub struct TopK<K> {
    capacity: usize,
    kept: Vec<Counted<K>>,
}

impl<K: Ord + Clone> TopK<K> {
    /// An empty sketch of `capacity` counters.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            kept: Vec::new(),
        }
    }

    /// A sketch holding `kept` (as [`TopK::top`] listed them), the lightest left out past
    /// `capacity`.
    pub fn from_counts(capacity: usize, mut kept: Vec<Counted<K>>) -> Self {
        kept.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
        kept.truncate(capacity);
        Self { capacity, kept }
    }

    /// Counts one more of `key`; when it is new and the sketch full, it takes the lightest
    /// key's place and count.
    pub fn add<Q>(&mut self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Eq + ToOwned<Owned = K> + ?Sized,
    {
        if let Some(c) = self.kept.iter_mut().find(|c| c.key.borrow() == key) {
            c.count += 1;
            return;
        }
        if self.kept.len() < self.capacity {
            self.kept.push(Counted {
                key: key.to_owned(),
                count: 1,
                error: 0,
            });
            return;
        }
        if let Some(min) = self.kept.iter_mut().min_by_key(|c| c.count) {
            let floor = min.count;
            *min = Counted {
                key: key.to_owned(),
                count: floor + 1,
                error: floor,
            };
        }
    }

    /// The kept keys, most counted first (ties by key).
    pub fn top(&self) -> Vec<Counted<K>> {
        let mut v = self.kept.clone();
        v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_below_capacity_and_bounded_above() {
        let mut top = TopK::<String>::new(8);
        for _ in 0..1000 {
            top.add("heavy");
        }
        for i in 0..80 {
            top.add(format!("k{i}").as_str());
        }
        let list = top.top();
        assert_eq!(list.len(), 8);
        assert_eq!(
            (list[0].key.as_str(), list[0].count, list[0].error),
            ("heavy", 1000, 0)
        );
        // A count minus its error is a lower bound: the light keys were counted once.
        assert!(list[1..].iter().all(|c| c.count - c.error <= 1));
    }
}

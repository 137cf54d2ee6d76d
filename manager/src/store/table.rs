//! One table of the store: objects by id, ordered, as a persistent map.
//!
//! Cloning a table is O(1) and a write copies only the path to what it changes, so the
//! leader keeps the committed state and its speculative state (committed plus pending
//! writes) side by side without copying either, and a snapshot is a clone taken under the
//! lock and encoded outside it. Objects sit behind an `Arc`, so the copied path shares
//! them instead of cloning them.

use std::fmt;
use std::sync::Arc;

use imbl::OrdMap;

/// Objects of one kind by id, in id order.
pub struct Table<T>(OrdMap<String, Arc<T>>);

impl<T> Table<T> {
    pub fn get(&self, id: &str) -> Option<&T> {
        self.0.get(id).map(|o| &**o)
    }

    pub fn contains_key(&self, id: &str) -> bool {
        self.0.contains_key(id)
    }

    /// The objects in id order.
    pub fn values(&self) -> impl Iterator<Item = &T> + Clone {
        self.0.iter().map(|(_, o)| &**o)
    }

    /// `(id, object)` in id order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &T)> + Clone {
        self.0.iter().map(|(id, o)| (id, &**o))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn insert(&mut self, id: String, object: T) {
        self.0.insert(id, Arc::new(object));
    }

    pub(crate) fn remove(&mut self, id: &str) -> Option<T>
    where
        T: Clone,
    {
        self.0.remove(id).map(Arc::unwrap_or_clone)
    }
}

impl<T> Clone for Table<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Self(OrdMap::new())
    }
}

impl<T: fmt::Debug> fmt::Debug for Table<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<T> FromIterator<(String, T)> for Table<T> {
    fn from_iter<I: IntoIterator<Item = (String, T)>>(iter: I) -> Self {
        Self(iter.into_iter().map(|(id, o)| (id, Arc::new(o))).collect())
    }
}

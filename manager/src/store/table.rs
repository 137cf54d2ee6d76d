//! One table of the store: objects by id, ordered, as a persistent map.
//!
//! Cloning a table is O(1) and a write copies only the path to what it changes, so the
//! leader keeps the committed state and its speculative state (committed plus pending
//! writes) side by side without copying either, and a snapshot is a clone taken under the
//! lock and encoded outside it. Objects sit behind an `Arc`, so the copied path shares
//! them instead of cloning them.

use std::fmt;
use std::sync::Arc;

use imbl::{OrdMap, OrdSet};

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

    /// The objects whose id starts with `prefix`, in id order (a range of the map, not a
    /// walk of it).
    pub fn with_id_prefix(&self, prefix: &str) -> impl Iterator<Item = &T> + '_ {
        let prefix = prefix.to_string();
        self.0
            .range(prefix.clone()..)
            .take_while(move |(id, _)| id.starts_with(&prefix))
            .map(|(_, o)| &**o)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Stores `object` as it is: the same `Arc` that the write's event carries.
    pub(crate) fn insert(&mut self, id: String, object: Arc<T>) {
        self.0.insert(id, object);
    }

    pub(crate) fn remove(&mut self, id: &str) -> Option<Arc<T>> {
        self.0.remove(id)
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

/// The services, with an index by name and the set of those publishing ports, so a
/// service write checks the name and the published ports it might clash with without
/// walking every service in the swarm. Reads go through [`Table`]'s methods.
#[derive(Clone, Default)]
pub struct Services {
    all: Table<shoal_proto::Service>,
    /// Name -> ids (one, but for state written before names were unique).
    by_name: OrdMap<String, OrdSet<String>>,
    /// Ids of the services with published ports.
    publishing: OrdSet<String>,
}

impl std::ops::Deref for Services {
    type Target = Table<shoal_proto::Service>;

    fn deref(&self) -> &Self::Target {
        &self.all
    }
}

impl Services {
    /// The services called `name`.
    pub fn named<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a shoal_proto::Service> + 'a {
        self.by_name
            .get(name)
            .into_iter()
            .flat_map(|ids| ids.iter())
            .filter_map(|id| self.all.get(id))
    }

    /// The services that publish ports.
    pub fn publishing(&self) -> impl Iterator<Item = &shoal_proto::Service> + '_ {
        self.publishing.iter().filter_map(|id| self.all.get(id))
    }

    pub(crate) fn insert(&mut self, id: String, service: Arc<shoal_proto::Service>) {
        self.unindex(&id);
        self.by_name
            .entry(service.name().to_string())
            .or_default()
            .insert(id.clone());
        if !service.ports().is_empty() {
            self.publishing.insert(id.clone());
        }
        self.all.insert(id, service);
    }

    pub(crate) fn remove(&mut self, id: &str) -> Option<Arc<shoal_proto::Service>> {
        self.unindex(id);
        self.all.remove(id)
    }

    fn unindex(&mut self, id: &str) {
        let Some(old) = self.all.get(id) else { return };
        let name = old.name().to_string();
        if let Some(ids) = self.by_name.get_mut(&name) {
            ids.remove(id);
            if ids.is_empty() {
                self.by_name.remove(&name);
            }
        }
        self.publishing.remove(id);
    }
}

impl fmt::Debug for Services {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.all.fmt(f)
    }
}

impl FromIterator<(String, shoal_proto::Service)> for Services {
    fn from_iter<I: IntoIterator<Item = (String, shoal_proto::Service)>>(iter: I) -> Self {
        let mut services = Self::default();
        for (id, service) in iter {
            services.insert(id, Arc::new(service));
        }
        services
    }
}

/// The tasks, with an index of each service's tasks, so a service's tasks are found
/// without walking every task in the swarm. Reads go through [`Table`]'s methods. The
/// index holds the tasks themselves (the same `Arc`s), so reading a service's tasks
/// costs no lookup per task.
#[derive(Clone, Default)]
pub struct Tasks {
    all: Table<shoal_proto::Task>,
    by_service: OrdMap<String, OrdMap<String, Arc<shoal_proto::Task>>>,
}

impl std::ops::Deref for Tasks {
    type Target = Table<shoal_proto::Task>;

    fn deref(&self) -> &Self::Target {
        &self.all
    }
}

impl Tasks {
    /// The tasks of one service, in id order.
    pub fn of_service<'a>(
        &'a self,
        service_id: &str,
    ) -> impl Iterator<Item = &'a shoal_proto::Task> + Clone + 'a {
        self.by_service
            .get(service_id)
            .into_iter()
            .flat_map(|tasks| tasks.iter())
            .map(|(_, task)| &**task)
    }

    pub(crate) fn insert(&mut self, id: String, task: Arc<shoal_proto::Task>) {
        if let Some(old) = self.all.get(&id) {
            if old.service_id != task.service_id {
                let old_service = old.service_id.clone();
                self.unindex(&old_service, &id);
            }
        }
        self.by_service
            .entry(task.service_id.clone())
            .or_default()
            .insert(id.clone(), task.clone());
        self.all.0.insert(id, task);
    }

    pub(crate) fn remove(&mut self, id: &str) -> Option<Arc<shoal_proto::Task>> {
        let task = self.all.remove(id)?;
        self.unindex(&task.service_id, id);
        Some(task)
    }

    fn unindex(&mut self, service_id: &str, id: &str) {
        if let Some(tasks) = self.by_service.get_mut(service_id) {
            tasks.remove(id);
            if tasks.is_empty() {
                self.by_service.remove(service_id);
            }
        }
    }
}

impl fmt::Debug for Tasks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.all.fmt(f)
    }
}

impl FromIterator<(String, shoal_proto::Task)> for Tasks {
    fn from_iter<I: IntoIterator<Item = (String, shoal_proto::Task)>>(iter: I) -> Self {
        let mut tasks = Self::default();
        for (id, task) in iter {
            tasks.insert(id, Arc::new(task));
        }
        tasks
    }
}

//! Read views and write transactions over the tables.

use std::borrow::Cow;
use std::collections::hash_map::Entry;

use rustc_hash::FxHashMap;
use shoal_proto::store_action::{Kind, Object as ActionObject};
use shoal_proto::{
    Cluster, Config, Meta, Network, Node, Secret, Service, Stack, StoreAction, StoreActionBatch,
    Task,
};

use super::{Object, StoreError, Tables};
use crate::clock::now_ms;

/// A consistent read-only view of the tables.
pub struct ReadTx<'a> {
    tables: &'a Tables,
}

impl<'a> ReadTx<'a> {
    pub(crate) fn new(tables: &'a Tables) -> Self {
        Self { tables }
    }

    pub fn tables(&self) -> &'a Tables {
        self.tables
    }

    pub fn node(&self, id: &str) -> Option<&'a Node> {
        self.tables.nodes.get(id)
    }

    pub fn service(&self, id: &str) -> Option<&'a Service> {
        self.tables.services.get(id)
    }

    pub fn task(&self, id: &str) -> Option<&'a Task> {
        self.tables.tasks.get(id)
    }

    pub fn nodes(&self) -> impl Iterator<Item = &'a Node> + Clone {
        self.tables.nodes.values()
    }

    pub fn services(&self) -> impl Iterator<Item = &'a Service> + Clone {
        self.tables.services.values()
    }

    pub fn tasks(&self) -> impl Iterator<Item = &'a Task> + Clone {
        self.tables.tasks.values()
    }

    pub fn tasks_of_service<'s>(&self, service_id: &'s str) -> impl Iterator<Item = &'a Task> + 's
    where
        'a: 's,
    {
        self.tables.tasks.of_service(service_id)
    }

    pub fn cluster(&self) -> Option<&'a Cluster> {
        self.tables.clusters.values().next()
    }

    pub fn network(&self, id: &str) -> Option<&'a Network> {
        self.tables.networks.get(id)
    }

    pub fn networks(&self) -> impl Iterator<Item = &'a Network> + Clone {
        self.tables.networks.values()
    }

    pub fn secrets(&self) -> impl Iterator<Item = &'a Secret> + Clone {
        self.tables.secrets.values()
    }

    pub fn configs(&self) -> impl Iterator<Item = &'a Config> + Clone {
        self.tables.configs.values()
    }

    /// A secret by exact id, then exact name, then unique id prefix.
    pub fn find_secret(&self, key: &str) -> Lookup<&'a Secret> {
        lookup(
            key,
            self.tables.secrets.get(key),
            self.secrets(),
            |s| s.spec.as_ref().map_or("", |s| s.name.as_str()),
            |s| s.id.as_str(),
        )
    }

    /// A config by exact id, then exact name, then unique id prefix.
    pub fn find_config(&self, key: &str) -> Lookup<&'a Config> {
        lookup(
            key,
            self.tables.configs.get(key),
            self.configs(),
            |c| c.spec.as_ref().map_or("", |s| s.name.as_str()),
            |c| c.id.as_str(),
        )
    }

    pub fn stacks(&self) -> impl Iterator<Item = &'a Stack> + Clone {
        self.tables.stacks.values()
    }

    /// A stack by its name (stacks are named by their users, never by id).
    pub fn stack_named(&self, name: &str) -> Option<&'a Stack> {
        self.stacks().find(|s| s.name() == name)
    }

    /// A network by exact id, then exact name, then unique id prefix (docker's lookup).
    pub fn find_network(&self, key: &str) -> Lookup<&'a Network> {
        lookup(
            key,
            self.tables.networks.get(key),
            self.networks(),
            |n| n.name(),
            |n| n.id.as_str(),
        )
    }

    /// A service by exact id, then exact name, then unique id prefix (docker's lookup),
    /// through the table's indexes: a swarm may hold 100k services.
    pub fn find_service(&self, key: &str) -> Lookup<&'a Service> {
        let services = &self.tables.services;
        lookup_in(
            key,
            services.get(key),
            services.named(key),
            services.with_id_prefix(key),
        )
    }

    /// The services called `name`.
    pub fn services_named(&self, name: &str) -> impl Iterator<Item = &'a Service> + 'a {
        self.tables.services.named(name)
    }

    /// The services that publish ports.
    pub fn publishing_services(&self) -> impl Iterator<Item = &'a Service> + 'a {
        self.tables.services.publishing()
    }

    /// A task by exact id, then unique id prefix.
    pub fn find_task(&self, key: &str) -> Lookup<&'a Task> {
        lookup(
            key,
            self.tables.tasks.get(key),
            self.tasks(),
            |_| "",
            |t| t.id.as_str(),
        )
    }

    /// A node by exact id, then hostname, then unique id prefix.
    pub fn find_node(&self, key: &str) -> Lookup<&'a Node> {
        lookup(
            key,
            self.tables.nodes.get(key),
            self.nodes(),
            |n| n.hostname(),
            |n| n.id.as_str(),
        )
    }
}

/// The result of looking an object up by id, name or prefix.
#[derive(Debug, PartialEq)]
pub enum Lookup<T> {
    Found(T),
    Missing,
    /// Several objects match the name or prefix.
    Ambiguous(usize),
}

/// An object by exact id (`exact`), then exact name, then unique id prefix.
pub(crate) fn lookup<'a, T: 'a>(
    key: &str,
    exact: Option<&'a T>,
    all: impl Iterator<Item = &'a T> + Clone,
    name: impl Fn(&T) -> &str,
    id: impl Fn(&T) -> &str,
) -> Lookup<&'a T> {
    lookup_in(
        key,
        exact,
        all.clone().filter(|o| name(o) == key),
        all.filter(|o| id(o).starts_with(key)),
    )
}

/// [`lookup`] over what matches already found: `named` (exact name) and `prefixed` (id
/// prefix), each read only when the steps before found nothing (an index's, or a walk).
fn lookup_in<'a, T: 'a>(
    key: &str,
    exact: Option<&'a T>,
    named: impl Iterator<Item = &'a T>,
    prefixed: impl Iterator<Item = &'a T>,
) -> Lookup<&'a T> {
    if key.is_empty() {
        return Lookup::Missing;
    }
    if let Some(found) = exact {
        return Lookup::Found(found);
    }
    let one = |mut matches: Vec<&'a T>| match matches.len() {
        1 => Some(Lookup::Found(matches.remove(0))),
        0 => None,
        n => Some(Lookup::Ambiguous(n)),
    };
    one(named.collect())
        .or_else(|| one(prefixed.collect()))
        .unwrap_or(Lookup::Missing)
}

impl<T> Lookup<T> {
    /// `Ok` with the object, or `Err` with how many matched (0: none).
    pub fn map_found(self) -> Result<T, usize> {
        match self {
            Lookup::Found(t) => Ok(t),
            Lookup::Missing => Err(0),
            Lookup::Ambiguous(n) => Err(n),
        }
    }
}

/// A write transaction. [`WriteTx::read`] is the state the transaction builds on: the
/// committed state plus every write still pending before it. Single-object lookups and the
/// `*_now` listings also see this transaction's own staged writes; the iterators of
/// [`WriteTx::read`] do not.
pub struct WriteTx<'a> {
    base: ReadTx<'a>,
    actions: Vec<StoreAction>,
    /// kind -> id -> position in `actions`, so a second write to one object replaces the
    /// first (looked up without allocating: listings ask once per committed object).
    staged: FxHashMap<&'static str, FxHashMap<String, usize>>,
    /// The encoded size of `actions`, kept as they are staged.
    bytes: usize,
    now_ms: i64,
}

impl<'a> WriteTx<'a> {
    pub(crate) fn new(tables: &'a Tables) -> Self {
        Self {
            base: ReadTx::new(tables),
            actions: Vec::new(),
            staged: FxHashMap::default(),
            bytes: 0,
            now_ms: now_ms(),
        }
    }

    /// The state the transaction builds on (committed plus pending), as it began.
    pub fn read(&self) -> &ReadTx<'a> {
        &self.base
    }

    /// A task as this transaction sees it (staged write first).
    pub fn task(&self, id: &str) -> Option<Task> {
        match self.staged_object("task", id) {
            Some(Some(ActionObject::Task(t))) => Some((**t).clone()),
            Some(_) => None,
            None => self.base.task(id).cloned(),
        }
    }

    /// A service as this transaction sees it (staged write first).
    pub fn service(&self, id: &str) -> Option<Service> {
        match self.staged_object("service", id) {
            Some(Some(ActionObject::Service(s))) => Some((**s).clone()),
            Some(_) => None,
            None => self.base.service(id).cloned(),
        }
    }

    /// The cluster object as this transaction sees it (staged write first), so two changes
    /// to it in one transaction build on each other.
    pub fn cluster(&self) -> Option<Cluster> {
        let id = self.base.cluster()?.id.clone();
        match self.staged_object("cluster", &id) {
            Some(Some(ActionObject::Cluster(c))) => Some((**c).clone()),
            Some(_) => None,
            None => self.base.cluster().cloned(),
        }
    }

    /// Every node as this transaction sees it (as [`WriteTx::networks_now`]).
    pub fn nodes_now(&self) -> Vec<Node> {
        owned(self.objects_now(
            "node",
            self.base.nodes(),
            |n| n.id.as_str(),
            |o| match o {
                ActionObject::Node(n) => Some(n),
                _ => None,
            },
        ))
    }

    /// A node as this transaction sees it (staged write first).
    pub fn node(&self, id: &str) -> Option<Node> {
        match self.staged_object("node", id) {
            Some(Some(ActionObject::Node(n))) => Some((**n).clone()),
            Some(_) => None,
            None => self.base.node(id).cloned(),
        }
    }

    /// A network as this transaction sees it (staged write first).
    pub fn network(&self, id: &str) -> Option<Network> {
        match self.staged_object("network", id) {
            Some(Some(ActionObject::Network(n))) => Some((**n).clone()),
            Some(_) => None,
            None => self.base.network(id).cloned(),
        }
    }

    /// Every network as this transaction sees it: the committed ones with this
    /// transaction's writes over them, and the ones it creates.
    pub fn networks_now(&self) -> Vec<Network> {
        owned(self.objects_now(
            "network",
            self.base.networks(),
            |n| n.id.as_str(),
            |o| match o {
                ActionObject::Network(n) => Some(n),
                _ => None,
            },
        ))
    }

    /// Every service as this transaction sees it (as [`WriteTx::networks_now`]), the
    /// committed ones borrowed: a swarm holds thousands, and every service write lists them.
    pub fn services_now(&self) -> Vec<Cow<'a, Service>> {
        self.objects_now("service", self.base.services(), service_id, as_service)
    }

    /// The services called `name` as this transaction sees them (from the name index and
    /// this transaction's writes, not a walk of every service).
    pub fn services_named_now(&self, name: &str) -> Vec<Cow<'a, Service>> {
        let named = self.base.services_named(name);
        self.objects_among("service", named, service_id, as_service, |s| {
            s.name() == name
        })
    }

    /// The services that publish ports as this transaction sees them (from the index and
    /// this transaction's writes).
    pub fn publishing_services_now(&self) -> Vec<Cow<'a, Service>> {
        let publishing = self.base.publishing_services();
        self.objects_among("service", publishing, service_id, as_service, |s| {
            !s.ports().is_empty()
        })
    }

    /// The committed objects of `kind` (borrowed) with this transaction's writes over them
    /// and its creations (copied).
    fn objects_now<T: Clone>(
        &self,
        kind: &'static str,
        committed: impl Iterator<Item = &'a T>,
        id: impl Fn(&T) -> &str,
        take: impl Fn(&ActionObject) -> Option<&T>,
    ) -> Vec<Cow<'a, T>> {
        self.objects_among(kind, committed, id, take, |_| true)
    }

    /// Of the committed objects of `kind`, `candidates` (every one, or an index's) with this
    /// transaction's writes over them, and every other object of `kind` it writes; of all
    /// these, those that hold `keep`. Committed ones are borrowed, written ones copied.
    fn objects_among<T: Clone>(
        &self,
        kind: &'static str,
        candidates: impl Iterator<Item = &'a T>,
        id: impl Fn(&T) -> &str,
        take: impl Fn(&ActionObject) -> Option<&T>,
        keep: impl Fn(&T) -> bool,
    ) -> Vec<Cow<'a, T>> {
        let Some(staged) = self.staged.get(kind) else {
            return candidates.filter(|o| keep(o)).map(Cow::Borrowed).collect();
        };
        let mut out: Vec<Cow<'a, T>> = candidates
            .filter_map(|o| match self.staged_object(kind, id(o)) {
                None => Some(Cow::Borrowed(o)),
                Some(staged) => staged.and_then(&take).cloned().map(Cow::Owned),
            })
            .filter(|o| keep(o))
            .collect();
        for (object_id, &pos) in staged {
            let action = &self.actions[pos];
            let Some(o) = action.object.as_ref().and_then(&take) else {
                continue;
            };
            // A write over a candidate is in `out` already.
            let written = action.kind != Kind::Remove as i32;
            if written && keep(o) && !out.iter().any(|e| id(e) == object_id) {
                out.push(Cow::Owned(o.clone()));
            }
        }
        out
    }

    /// Every secret as this transaction sees it (as [`WriteTx::networks_now`]).
    pub fn secrets_now(&self) -> Vec<Secret> {
        owned(self.objects_now(
            "secret",
            self.base.secrets(),
            |s| s.id.as_str(),
            |o| match o {
                ActionObject::Secret(s) => Some(s),
                _ => None,
            },
        ))
    }

    /// Every config as this transaction sees it (as [`WriteTx::networks_now`]).
    pub fn configs_now(&self) -> Vec<Config> {
        owned(self.objects_now(
            "config",
            self.base.configs(),
            |c| c.id.as_str(),
            |o| match o {
                ActionObject::Config(c) => Some(c),
                _ => None,
            },
        ))
    }

    /// A stack as this transaction sees it (staged write first).
    pub fn stack(&self, id: &str) -> Option<Stack> {
        match self.staged_object("stack", id) {
            Some(Some(ActionObject::Stack(s))) => Some((**s).clone()),
            Some(_) => None,
            None => self.base.tables.stacks.get(id).cloned(),
        }
    }

    pub fn create(&mut self, mut object: Object) -> Result<(), StoreError> {
        self.check_absent(&object)?;
        stamp(&mut object, self.now_ms, true);
        self.stage(Kind::Create, object);
        Ok(())
    }

    /// Stage an object as it was in another store, keeping its times: for rebuilding a
    /// store (`swarm init --force-new-cluster`).
    pub fn restore(&mut self, object: Object) -> Result<(), StoreError> {
        self.check_absent(&object)?;
        self.stage(Kind::Create, object);
        Ok(())
    }

    /// Whether `object`'s id is stored, as this transaction sees it (its own staged
    /// writes first), without copying anything.
    fn exists(&self, object: &Object, id: &str) -> bool {
        match self.staged_object(object.kind(), id) {
            Some(staged) => staged.is_some(),
            None => self.in_tables(object, id),
        }
    }

    /// Whether `object`'s id is in the tables the transaction builds on.
    fn in_tables(&self, object: &Object, id: &str) -> bool {
        let tables = self.base.tables;
        match object {
            Object::Node(_) => tables.nodes.contains_key(id),
            Object::Service(_) => tables.services.contains_key(id),
            Object::Task(_) => tables.tasks.contains_key(id),
            Object::Cluster(_) => tables.clusters.contains_key(id),
            Object::Network(_) => tables.networks.contains_key(id),
            Object::Stack(_) => tables.stacks.contains_key(id),
            Object::Secret(_) => tables.secrets.contains_key(id),
            Object::Config(_) => tables.configs.contains_key(id),
        }
    }

    fn check_absent(&self, object: &Object) -> Result<(), StoreError> {
        let (kind, id) = key(object);
        if self.exists(object, &id) {
            return Err(StoreError::Exists { kind, id });
        }
        Ok(())
    }

    /// Stage a new version of an existing object. The object must carry the version it was
    /// read at; the apply refuses it if the stored version moved on.
    pub fn update(&mut self, mut object: Object) -> Result<(), StoreError> {
        let (kind, id) = key(&object);
        let staged = self.staged_pos(kind, &id);
        let exists = match staged {
            Some(pos) => self.written(pos).is_some(),
            None => self.in_tables(&object, &id),
        };
        if !exists {
            return Err(StoreError::NotFound { kind, id });
        }
        stamp(&mut object, self.now_ms, false);
        // Updating an object created in this same transaction keeps it a create.
        let kind_of_write = match staged {
            Some(pos) if self.actions[pos].kind == Kind::Create as i32 => Kind::Create,
            _ => Kind::Update,
        };
        self.stage(kind_of_write, object);
        Ok(())
    }

    pub fn remove(&mut self, object: Object) {
        self.stage(Kind::Remove, object);
    }

    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// Whether this transaction has written enough ([`super::BULK_BATCH_BYTES`]): a writer
    /// of many objects stops here and writes the rest in its next transaction, so no
    /// transaction nears [`super::MAX_BATCH_BYTES`].
    pub fn is_full(&self) -> bool {
        self.bytes >= super::BULK_BATCH_BYTES
    }

    /// The batch, and the encoded size of its actions.
    pub(crate) fn into_batch(self) -> (StoreActionBatch, usize) {
        let batch = StoreActionBatch {
            actions: self.actions,
            format: super::STORE_FORMAT,
            ..Default::default()
        };
        (batch, self.bytes)
    }

    /// What this transaction staged for `kind` `id`: `Some(None)` for a removal.
    fn staged_object(&self, kind: &'static str, id: &str) -> Option<Option<&ActionObject>> {
        self.staged_pos(kind, id).map(|pos| self.written(pos))
    }

    /// Where in `actions` this transaction staged `kind` `id`, if it did.
    fn staged_pos(&self, kind: &'static str, id: &str) -> Option<usize> {
        self.staged.get(kind)?.get(id).copied()
    }

    /// The object the action at `pos` writes; `None` for a removal.
    fn written(&self, pos: usize) -> Option<&ActionObject> {
        let action = &self.actions[pos];
        if action.kind == Kind::Remove as i32 {
            None
        } else {
            action.object.as_ref()
        }
    }

    fn stage(&mut self, kind: Kind, object: Object) {
        let (object_kind, id) = key(&object);
        let action = StoreAction {
            kind: kind as i32,
            object: Some(to_action_object(object)),
        };
        // As a repeated field of the batch: a tag, a length, the action.
        let bytes = prost::encoding::message::encoded_len(1, &action);
        match self.staged.entry(object_kind).or_default().entry(id) {
            Entry::Occupied(staged) => {
                let pos = *staged.get();
                let replaced = prost::encoding::message::encoded_len(1, &self.actions[pos]);
                self.bytes = self.bytes - replaced + bytes;
                self.actions[pos] = action;
            }
            Entry::Vacant(new) => {
                new.insert(self.actions.len());
                self.actions.push(action);
                self.bytes += bytes;
            }
        }
    }
}

fn service_id(s: &Service) -> &str {
    &s.id
}

fn as_service(o: &ActionObject) -> Option<&Service> {
    match o {
        ActionObject::Service(s) => Some(s),
        _ => None,
    }
}

fn owned<T: Clone>(objects: Vec<Cow<'_, T>>) -> Vec<T> {
    objects.into_iter().map(Cow::into_owned).collect()
}

fn key(object: &Object) -> (&'static str, String) {
    let id = match object {
        Object::Node(n) => n.id.clone(),
        Object::Service(s) => s.id.clone(),
        Object::Task(t) => t.id.clone(),
        Object::Cluster(c) => c.id.clone(),
        Object::Network(n) => n.id.clone(),
        Object::Stack(s) => s.id.clone(),
        Object::Secret(s) => s.id.clone(),
        Object::Config(c) => c.id.clone(),
    };
    (object.kind(), id)
}

fn stamp(object: &mut Object, now: i64, created: bool) {
    let meta = match object {
        Object::Node(n) => &mut n.meta,
        Object::Service(s) => &mut s.meta,
        Object::Task(t) => &mut t.meta,
        Object::Cluster(c) => &mut c.meta,
        Object::Network(n) => &mut n.meta,
        Object::Stack(s) => &mut s.meta,
        Object::Secret(s) => &mut s.meta,
        Object::Config(c) => &mut c.meta,
    };
    let meta = meta.get_or_insert_with(Meta::default);
    if created {
        meta.created_at_ms = now;
        meta.version = 0;
    }
    meta.updated_at_ms = now;
}

pub(crate) fn to_action_object(object: Object) -> ActionObject {
    match object {
        Object::Node(n) => ActionObject::Node(Box::new(n)),
        Object::Service(s) => ActionObject::Service(Box::new(s)),
        Object::Task(t) => ActionObject::Task(Box::new(t)),
        Object::Cluster(c) => ActionObject::Cluster(Box::new(c)),
        Object::Network(n) => ActionObject::Network(Box::new(n)),
        Object::Stack(s) => ActionObject::Stack(Box::new(s)),
        Object::Secret(s) => ActionObject::Secret(Box::new(s)),
        Object::Config(c) => ActionObject::Config(Box::new(c)),
    }
}

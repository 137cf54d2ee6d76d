//! Applying committed batches to the tables: the half of the store that Raft drives.

use std::sync::{Arc, RwLock};

use prost::Message;
use shoal_proto::store_action::{Kind, Object as ActionObject};
use shoal_proto::{Meta, StoreActionBatch, StoreSnapshot};
use tokio::sync::broadcast;

use super::tx::from_action_object;
use super::{new_channel, read_lock, Event, Object, StoreError, Tables};

/// The tables and the watch stream. Raft applies committed entries here on every manager;
/// the first byte of an apply's response is 0 on success, 1 followed by the error text when
/// the batch was refused (a stale version), which leaves the tables untouched.
pub struct StoreState {
    tables: RwLock<Tables>,
    events: broadcast::Sender<Event>,
}

impl Default for StoreState {
    fn default() -> Self {
        Self::new()
    }
}

impl StoreState {
    pub fn new() -> Self {
        Self {
            tables: RwLock::new(Tables::default()),
            events: new_channel(),
        }
    }

    pub(crate) fn read(&self) -> std::sync::RwLockReadGuard<'_, Tables> {
        read_lock(&self.tables)
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Apply one batch atomically at Raft index `index`: all of it, or none of it.
    pub fn apply_batch(&self, index: u64, batch: StoreActionBatch) -> Result<(), StoreError> {
        let mut events = Vec::with_capacity(batch.actions.len());
        {
            let mut tables = self
                .tables
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for action in &batch.actions {
                check(&tables, action.kind, action.object.as_ref())?;
            }
            for action in batch.actions {
                let Some(object) = action.object else {
                    continue;
                };
                let mut object = from_action_object(object);
                set_version(&mut object, index);
                let event = match Kind::try_from(action.kind) {
                    Ok(Kind::Create) => {
                        insert(&mut tables, object.clone());
                        Event::Created(Arc::new(object))
                    }
                    Ok(Kind::Update) => {
                        insert(&mut tables, object.clone());
                        Event::Updated(Arc::new(object))
                    }
                    // `check` refused the batch already; never guess what a newer kind means.
                    Err(_) => return Err(StoreError::UnknownAction(action.kind)),
                    Ok(Kind::Remove) => match remove(&mut tables, &object) {
                        Some(old) => Event::Removed(Arc::new(old)),
                        None => continue,
                    },
                };
                events.push(event);
            }
        }
        for event in events {
            // No receiver is fine: nobody is watching yet.
            let _ = self.events.send(event);
        }
        Ok(())
    }

    /// Every object, as a snapshot.
    pub fn export(&self) -> StoreSnapshot {
        let tables = self.read();
        StoreSnapshot {
            nodes: tables.nodes.values().cloned().collect(),
            services: tables.services.values().cloned().collect(),
            tasks: tables.tasks.values().cloned().collect(),
            clusters: tables.clusters.values().cloned().collect(),
            networks: tables.networks.values().cloned().collect(),
            stacks: tables.stacks.values().cloned().collect(),
            secrets: tables.secrets.values().cloned().collect(),
            configs: tables.configs.values().cloned().collect(),
        }
    }

    fn encode_snapshot(&self) -> Vec<u8> {
        self.export().encode_to_vec()
    }

    fn restore_snapshot(&self, bytes: &[u8]) -> Result<(), String> {
        let snapshot =
            StoreSnapshot::decode(bytes).map_err(|e| format!("decoding store snapshot: {e}"))?;
        let fresh = Tables {
            nodes: snapshot
                .nodes
                .into_iter()
                .map(|o| (o.id.clone(), o))
                .collect(),
            services: snapshot
                .services
                .into_iter()
                .map(|o| (o.id.clone(), o))
                .collect(),
            tasks: snapshot
                .tasks
                .into_iter()
                .map(|o| (o.id.clone(), o))
                .collect(),
            clusters: snapshot
                .clusters
                .into_iter()
                .map(|o| (o.id.clone(), o))
                .collect(),
            networks: snapshot
                .networks
                .into_iter()
                .map(|o| (o.id.clone(), o))
                .collect(),
            stacks: snapshot
                .stacks
                .into_iter()
                .map(|o| (o.id.clone(), o))
                .collect(),
            secrets: snapshot
                .secrets
                .into_iter()
                .map(|o| (o.id.clone(), o))
                .collect(),
            configs: snapshot
                .configs
                .into_iter()
                .map(|o| (o.id.clone(), o))
                .collect(),
        };
        *self
            .tables
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = fresh;
        let _ = self.events.send(Event::Resync);
        Ok(())
    }
}

impl shoal_raft::Applier for StoreState {
    /// A batch this manager cannot read (undecodable, a newer format, an action or object
    /// kind it does not know) stops it applying the log, rather than being skipped here
    /// while the members that read it apply it. A batch it reads but refuses (a version
    /// conflict) is refused alike by every member, and answered as refused.
    fn apply(&self, index: u64, command: &[u8]) -> Result<Vec<u8>, String> {
        let batch = StoreActionBatch::decode(command).map_err(|e| {
            format!("the store batch at index {index} does not decode ({e}); {UPGRADE}")
        })?;
        unreadable(&batch).map_or(Ok(()), |why| {
            Err(format!("the store batch at index {index} {why}; {UPGRADE}"))
        })?;
        Ok(match self.apply_batch(index, batch) {
            Ok(()) => vec![0],
            Err(e) => {
                let mut response = vec![1];
                response.extend_from_slice(e.to_string().as_bytes());
                response
            }
        })
    }

    fn snapshot(&self) -> Vec<u8> {
        self.encode_snapshot()
    }

    fn restore(&self, snapshot: &[u8]) -> Result<(), String> {
        self.restore_snapshot(snapshot)
    }
}

/// What a manager that stops at a batch it cannot read should do.
const UPGRADE: &str = "this manager runs an older version than the one that wrote it: upgrade this manager to the leader's version (managers mix only while they share a store format)";

/// Why this manager cannot read `batch`, if it cannot.
fn unreadable(batch: &StoreActionBatch) -> Option<String> {
    if batch.format > super::STORE_FORMAT {
        return Some(format!(
            "has store format {} and this manager reads up to {}",
            batch.format,
            super::STORE_FORMAT
        ));
    }
    batch.actions.iter().find_map(|action| {
        if Kind::try_from(action.kind).is_err() {
            Some(format!("holds an action of unknown kind {}", action.kind))
        } else if action.object.is_none() {
            Some("holds an object of a kind this manager does not know".to_string())
        } else {
            None
        }
    })
}

/// Decode an apply response: `Ok` or the refusal's text.
pub fn decode_response(response: &[u8]) -> Result<(), String> {
    match response.split_first() {
        Some((0, _)) | None => Ok(()),
        Some((_, message)) => Err(String::from_utf8_lossy(message).into_owned()),
    }
}

fn check(tables: &Tables, kind: i32, object: Option<&ActionObject>) -> Result<(), StoreError> {
    if Kind::try_from(kind).is_err() {
        return Err(StoreError::UnknownAction(kind));
    }
    let Some(object) = object else { return Ok(()) };
    let (what, id, version, stored) = match object {
        ActionObject::Node(o) => (
            "node",
            &o.id,
            version_of(&o.meta),
            tables.nodes.get(&o.id).map(|s| version_of(&s.meta)),
        ),
        ActionObject::Service(o) => (
            "service",
            &o.id,
            version_of(&o.meta),
            tables.services.get(&o.id).map(|s| version_of(&s.meta)),
        ),
        ActionObject::Task(o) => (
            "task",
            &o.id,
            version_of(&o.meta),
            tables.tasks.get(&o.id).map(|s| version_of(&s.meta)),
        ),
        ActionObject::Cluster(o) => (
            "cluster",
            &o.id,
            version_of(&o.meta),
            tables.clusters.get(&o.id).map(|s| version_of(&s.meta)),
        ),
        ActionObject::Network(o) => (
            "network",
            &o.id,
            version_of(&o.meta),
            tables.networks.get(&o.id).map(|s| version_of(&s.meta)),
        ),
        ActionObject::Stack(o) => (
            "stack",
            &o.id,
            version_of(&o.meta),
            tables.stacks.get(&o.id).map(|s| version_of(&s.meta)),
        ),
        ActionObject::Secret(o) => (
            "secret",
            &o.id,
            version_of(&o.meta),
            tables.secrets.get(&o.id).map(|s| version_of(&s.meta)),
        ),
        ActionObject::Config(o) => (
            "config",
            &o.id,
            version_of(&o.meta),
            tables.configs.get(&o.id).map(|s| version_of(&s.meta)),
        ),
    };
    match (Kind::try_from(kind), stored) {
        (Ok(Kind::Create), Some(_)) => Err(StoreError::Exists {
            kind: what,
            id: id.clone(),
        }),
        (Ok(Kind::Update), None) => Err(StoreError::NotFound {
            kind: what,
            id: id.clone(),
        }),
        (Ok(Kind::Update), Some(found)) if found != version => Err(StoreError::Conflict {
            kind: what,
            id: id.clone(),
            expected: version,
            found,
        }),
        _ => Ok(()),
    }
}

fn version_of(meta: &Option<Meta>) -> u64 {
    meta.as_ref().map_or(0, |m| m.version)
}

fn set_version(object: &mut Object, index: u64) {
    let meta = match object {
        Object::Node(o) => &mut o.meta,
        Object::Service(o) => &mut o.meta,
        Object::Task(o) => &mut o.meta,
        Object::Cluster(o) => &mut o.meta,
        Object::Network(o) => &mut o.meta,
        Object::Stack(o) => &mut o.meta,
        Object::Secret(o) => &mut o.meta,
        Object::Config(o) => &mut o.meta,
    };
    meta.get_or_insert_with(Meta::default).version = index;
}

fn insert(tables: &mut Tables, object: Object) {
    match object {
        Object::Node(o) => {
            tables.nodes.insert(o.id.clone(), o);
        }
        Object::Service(o) => {
            tables.services.insert(o.id.clone(), o);
        }
        Object::Task(o) => {
            tables.tasks.insert(o.id.clone(), o);
        }
        Object::Cluster(o) => {
            tables.clusters.insert(o.id.clone(), o);
        }
        Object::Network(o) => {
            tables.networks.insert(o.id.clone(), o);
        }
        Object::Stack(o) => {
            tables.stacks.insert(o.id.clone(), o);
        }
        Object::Secret(o) => {
            tables.secrets.insert(o.id.clone(), o);
        }
        Object::Config(o) => {
            tables.configs.insert(o.id.clone(), o);
        }
    }
}

fn remove(tables: &mut Tables, object: &Object) -> Option<Object> {
    match object {
        Object::Node(o) => tables.nodes.remove(&o.id).map(Object::Node),
        Object::Service(o) => tables.services.remove(&o.id).map(Object::Service),
        Object::Task(o) => tables.tasks.remove(&o.id).map(Object::Task),
        Object::Cluster(o) => tables.clusters.remove(&o.id).map(Object::Cluster),
        Object::Network(o) => tables.networks.remove(&o.id).map(Object::Network),
        Object::Stack(o) => tables.stacks.remove(&o.id).map(Object::Stack),
        Object::Secret(o) => tables.secrets.remove(&o.id).map(Object::Secret),
        Object::Config(o) => tables.configs.remove(&o.id).map(Object::Config),
    }
}

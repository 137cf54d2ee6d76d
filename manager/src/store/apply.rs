//! Applying committed batches to the tables: the half of the store that Raft drives.
//!
//! The same check and write serve the committed state (here, from Raft) and the leader's
//! speculative state ([`super::pipeline`]), so a batch that passed on the speculative state
//! passes again when it commits, unless the state it was built on never committed.

use std::sync::{Arc, RwLock};

use prost::Message;
use shoal_proto::store_action::{Kind, Object as ActionObject};
use shoal_proto::store_batch_result::Code;
use shoal_proto::{
    Meta, StoreActionBatch, StoreBatchResult, StoreEntry, StoreEntryResult, StoreSnapshot,
};
use tokio::sync::broadcast;

use super::{new_channel, read_lock, Event, StoreError, Stored, Tables};

/// The tables and the watch stream. Raft applies committed entries here on every manager;
/// an apply answers each batch of the entry with its result ([`decode_response`]); a
/// refused batch (a stale version, or built on a batch that did not commit) leaves the
/// tables untouched.
pub struct StoreState {
    tables: RwLock<Tables>,
    events: broadcast::Sender<Event>,
    journal: super::journal::Journal,
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
            journal: Default::default(),
        }
    }

    pub(crate) fn read(&self) -> std::sync::RwLockReadGuard<'_, Tables> {
        read_lock(&self.tables)
    }

    /// The committed tables as a value: O(1), shares everything with the store.
    pub(crate) fn tables(&self) -> Tables {
        self.read().clone()
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// The recent changes, by position (`shoal events`).
    pub fn journal(&self) -> &super::journal::Journal {
        &self.journal
    }

    /// Apply one batch atomically at Raft index `index`: all of it, or none of it.
    pub fn apply_batch(&self, index: u64, batch: StoreActionBatch) -> Result<(), StoreError> {
        self.apply_batches(index, vec![batch])
            .pop()
            .unwrap_or(Ok(()))
    }

    /// Apply the batches of one entry in order, each atomically; one result per batch.
    pub fn apply_batches(
        &self,
        index: u64,
        batches: Vec<StoreActionBatch>,
    ) -> Vec<Result<(), StoreError>> {
        let mut events = Vec::new();
        // Each applied batch's version and its events' range, for the journal, which is
        // written once the tables' lock is released.
        let mut applied = Vec::new();
        let results = {
            let mut tables = self
                .tables
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            batches
                .into_iter()
                .map(|batch| {
                    let version = check_batch(&tables, index, &batch)?;
                    let from = events.len();
                    write_batch(&mut tables, version, batch, Some(&mut events));
                    applied.push((version, from..events.len()));
                    Ok(())
                })
                .collect()
        };
        let now_ms = crate::clock::now_ms();
        for (version, range) in applied {
            self.journal.record(version, &events[range], now_ms);
        }
        for event in events {
            // No receiver is fine: nobody is watching yet.
            let _ = self.events.send(event);
        }
        results
    }

    /// Every object, as a snapshot. The tables are cloned under the lock (O(1)) and
    /// copied out outside it, so a snapshot does not stall applies.
    pub fn export(&self) -> StoreSnapshot {
        snapshot_of(&self.tables())
    }

    fn restore_snapshot(&self, bytes: &[u8]) -> Result<(), String> {
        let snapshot =
            StoreSnapshot::decode(bytes).map_err(|e| format!("decoding store snapshot: {e}"))?;
        fn table<T, C: FromIterator<(String, T)>>(objects: Vec<T>, id: impl Fn(&T) -> String) -> C {
            objects.into_iter().map(|o| (id(&o), o)).collect()
        }
        let mut fresh = Tables {
            nodes: table(snapshot.nodes, |o| o.id.clone()),
            services: table(snapshot.services, |o| o.id.clone()),
            tasks: table(snapshot.tasks, |o| o.id.clone()),
            clusters: table(snapshot.clusters, |o| o.id.clone()),
            networks: table(snapshot.networks, |o| o.id.clone()),
            stacks: table(snapshot.stacks, |o| o.id.clone()),
            secrets: table(snapshot.secrets, |o| o.id.clone()),
            configs: table(snapshot.configs, |o| o.id.clone()),
            seq: snapshot.seq,
            last_batch: snapshot.last_batch,
        };
        // A snapshot from before sequence numbers: versions were log indexes, and the
        // sequence goes on above every one of them.
        fresh.seq = fresh.seq.max(fresh.max_version());
        let seq = fresh.seq;
        *self
            .tables
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = fresh;
        self.journal.lose_through(seq);
        let _ = self.events.send(Event::Resync);
        Ok(())
    }
}

/// Every object of `tables`, as a snapshot.
fn snapshot_of(tables: &Tables) -> StoreSnapshot {
    StoreSnapshot {
        nodes: tables.nodes.values().cloned().collect(),
        services: tables.services.values().cloned().collect(),
        tasks: tables.tasks.values().cloned().collect(),
        clusters: tables.clusters.values().cloned().collect(),
        networks: tables.networks.values().cloned().collect(),
        stacks: tables.stacks.values().cloned().collect(),
        secrets: tables.secrets.values().cloned().collect(),
        configs: tables.configs.values().cloned().collect(),
        seq: tables.seq,
        last_batch: tables.last_batch,
    }
}

/// `tables` encoded as a [`StoreSnapshot`], straight from the tables: the bytes
/// `snapshot_of(tables).encode_to_vec()` gives, without first copying every object into
/// one (for 100k services, ~230 MB copied and freed on every member at every snapshot).
fn encode_snapshot(tables: &Tables) -> Vec<u8> {
    use prost::encoding::{fixed64, message, uint64};
    fn objects<'a, T: Message + 'a>(tag: u32, all: impl Iterator<Item = &'a T>, buf: &mut Vec<u8>) {
        for object in all {
            message::encode(tag, object, buf);
        }
    }
    let mut buf = Vec::new();
    objects(1, tables.nodes.values(), &mut buf);
    objects(2, tables.services.values(), &mut buf);
    objects(3, tables.tasks.values(), &mut buf);
    objects(4, tables.clusters.values(), &mut buf);
    objects(5, tables.networks.values(), &mut buf);
    objects(6, tables.stacks.values(), &mut buf);
    objects(7, tables.secrets.values(), &mut buf);
    objects(8, tables.configs.values(), &mut buf);
    // As prost writes a message: fields at their default value are left out.
    if tables.seq != 0 {
        uint64::encode(9, &tables.seq, &mut buf);
    }
    if tables.last_batch != 0 {
        fixed64::encode(10, &tables.last_batch, &mut buf);
    }
    buf
}

impl shoal_raft::Applier for StoreState {
    /// An entry this manager cannot read (undecodable, a newer format, an action or object
    /// kind it does not know) stops it applying the log, rather than being skipped here
    /// while the members that read it apply it. A batch it reads but refuses (a version
    /// conflict, a stale sequence) is refused alike by every member, and answered as
    /// refused.
    fn apply(&self, index: u64, command: &[u8]) -> Result<Vec<u8>, String> {
        let batches = decode_entry(command).map_err(|e| {
            format!("the store batch at index {index} does not decode ({e}); {UPGRADE}")
        })?;
        batches.iter().find_map(unreadable).map_or(Ok(()), |why| {
            Err(format!("the store batch at index {index} {why}; {UPGRADE}"))
        })?;
        let results = self.apply_batches(index, batches);
        Ok(encode_response(&results))
    }

    /// The tables as they are (an O(1) copy-on-write clone); encoded on the snapshot's own
    /// thread, while entries keep being applied.
    fn snapshot(&self) -> shoal_raft::SnapshotWriter {
        let tables = self.tables();
        Box::new(move || {
            let started = std::time::Instant::now();
            let encoded = encode_snapshot(&tables);
            crate::metrics::recorded()
                .raft_snapshot
                .observe(crate::metrics::since(started));
            encoded
        })
    }

    fn restore(&self, snapshot: &[u8]) -> Result<(), String> {
        self.restore_snapshot(snapshot)
    }
}

/// The batches of a log entry: a [`StoreEntry`] (format 2 on), or a single batch as
/// managers before group commit wrote it.
fn decode_entry(command: &[u8]) -> Result<Vec<StoreActionBatch>, prost::DecodeError> {
    // A lone batch decodes as an entry too (its actions are the entry's reserved field 1),
    // with its own format in the same place.
    let entry = StoreEntry::decode(command)?;
    if entry.format >= 2 {
        if entry.batches.is_empty() || entry.format > super::STORE_FORMAT {
            // Nothing to apply, or nothing this manager may read: say which format wrote it.
            return Ok(vec![StoreActionBatch {
                format: entry.format,
                ..Default::default()
            }]);
        }
        return Ok(entry.batches);
    }
    Ok(vec![StoreActionBatch::decode(command)?])
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

/// Encode an entry's results as its apply response.
pub(crate) fn encode_response(results: &[Result<(), StoreError>]) -> Vec<u8> {
    StoreEntryResult {
        batches: results.iter().map(batch_result).collect(),
    }
    .encode_to_vec()
}

/// Decode an apply response: one result per batch of the entry.
pub fn decode_response(response: &[u8]) -> Result<Vec<Result<(), StoreError>>, StoreError> {
    let decoded = StoreEntryResult::decode(response)
        .map_err(|e| StoreError::Propose(format!("the store's answer does not decode: {e}")))?;
    Ok(decoded.batches.into_iter().map(batch_error).collect())
}

fn batch_result(result: &Result<(), StoreError>) -> StoreBatchResult {
    let mut out = StoreBatchResult::default();
    let Err(e) = result else { return out };
    out.message = e.to_string();
    match e {
        StoreError::Exists { kind, id } => {
            out.code = Code::Exists as i32;
            (out.kind, out.id) = (kind.to_string(), id.clone());
        }
        StoreError::NotFound { kind, id } => {
            out.code = Code::NotFound as i32;
            (out.kind, out.id) = (kind.to_string(), id.clone());
        }
        StoreError::Conflict {
            kind,
            id,
            expected,
            found,
        } => {
            out.code = Code::Conflict as i32;
            (out.kind, out.id) = (kind.to_string(), id.clone());
            (out.expected, out.found) = (*expected, *found);
        }
        StoreError::Stale { seq, applied } => {
            out.code = Code::Stale as i32;
            (out.expected, out.found) = (*seq, *applied);
        }
        _ => out.code = Code::Other as i32,
    }
    out
}

fn batch_error(r: StoreBatchResult) -> Result<(), StoreError> {
    let kind = static_kind(&r.kind);
    Err(match Code::try_from(r.code) {
        Ok(Code::Ok) => return Ok(()),
        Ok(Code::Exists) => StoreError::Exists { kind, id: r.id },
        Ok(Code::NotFound) => StoreError::NotFound { kind, id: r.id },
        Ok(Code::Conflict) => StoreError::Conflict {
            kind,
            id: r.id,
            expected: r.expected,
            found: r.found,
        },
        Ok(Code::Stale) => StoreError::Stale {
            seq: r.expected,
            applied: r.found,
        },
        Ok(Code::Other) | Err(_) => StoreError::Propose(r.message),
    })
}

/// The kind names errors carry, back from their text.
fn static_kind(kind: &str) -> &'static str {
    const KINDS: [&str; 8] = [
        "node", "service", "task", "cluster", "network", "stack", "secret", "config",
    ];
    KINDS.into_iter().find(|k| *k == kind).unwrap_or("object")
}

/// Whether `batch` applies to `tables` now, and the version its objects take: the batch's
/// sequence number (format 2), or the log index for batches written before there was one.
/// A format-2 batch applies only right after the batch it was built on: else that one
/// did not commit (it was refused, or lost with its leader and another took its place),
/// and this one is refused whole as stale.
pub(crate) fn check_batch(
    tables: &Tables,
    index: u64,
    batch: &StoreActionBatch,
) -> Result<u64, StoreError> {
    let version = if batch.format >= 2 {
        if batch.parent != tables.last_batch || batch.seq != tables.seq + 1 {
            return Err(StoreError::Stale {
                seq: batch.seq,
                applied: tables.seq,
            });
        }
        batch.seq
    } else {
        index
    };
    for action in &batch.actions {
        check(tables, action.kind, action.object.as_ref())?;
    }
    Ok(version)
}

/// Write a batch that [`check_batch`] passed, its objects at `version` (what
/// [`check_batch`] returned: its sequence number, or the log index of an older batch);
/// the events it makes go to `events` when given.
pub(crate) fn write_batch(
    tables: &mut Tables,
    version: u64,
    batch: StoreActionBatch,
    mut events: Option<&mut Vec<Event>>,
) {
    (tables.seq, tables.last_batch) = if batch.format >= 2 {
        (batch.seq, batch.id)
    } else {
        (tables.seq.max(version), 0)
    };
    for action in batch.actions {
        let Some(object) = action.object else {
            continue;
        };
        let event: fn(Stored) -> Event = match Kind::try_from(action.kind) {
            Ok(Kind::Create) => Event::Created,
            Ok(Kind::Update) => Event::Updated,
            // `check` refused unknown kinds already.
            Ok(Kind::Remove) | Err(_) => {
                let removed = remove(tables, &object);
                if let (Some(events), Some(old)) = (events.as_deref_mut(), removed) {
                    events.push(Event::Removed(old));
                }
                continue;
            }
        };
        let spec_index = spec_index(tables, &object, version);
        let stored = stored_at(object, version, spec_index);
        match events.as_deref_mut() {
            Some(events) => {
                insert(tables, stored.clone());
                events.push(event(stored));
            }
            None => insert(tables, stored),
        }
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

/// The version of the last write that changed `object`'s spec: `version` when this one
/// does (or creates it), else the stored object's (`Meta::spec_index`). Tasks, stacks and
/// the cluster keep 0: no client updates them by version.
fn spec_index(tables: &Tables, object: &ActionObject, version: u64) -> u64 {
    fn since<T, S: PartialEq>(
        stored: Option<&T>,
        new: &T,
        spec: impl Fn(&T) -> &Option<S>,
        meta: impl Fn(&T) -> &Option<Meta>,
        version: u64,
    ) -> u64 {
        match stored {
            Some(old) if spec(old) == spec(new) => meta(old).as_ref().map_or(0, |m| m.spec_index),
            _ => version,
        }
    }
    match object {
        ActionObject::Node(o) => {
            let o = &**o;
            since(
                tables.nodes.get(&o.id),
                o,
                |n| &n.spec,
                |n| &n.meta,
                version,
            )
        }
        ActionObject::Service(o) => {
            let o = &**o;
            since(
                tables.services.get(&o.id),
                o,
                |s| &s.spec,
                |s| &s.meta,
                version,
            )
        }
        ActionObject::Network(o) => {
            let o = &**o;
            since(
                tables.networks.get(&o.id),
                o,
                |n| &n.spec,
                |n| &n.meta,
                version,
            )
        }
        ActionObject::Secret(o) => {
            let o = &**o;
            since(
                tables.secrets.get(&o.id),
                o,
                |s| &s.spec,
                |s| &s.meta,
                version,
            )
        }
        ActionObject::Config(o) => {
            let o = &**o;
            since(
                tables.configs.get(&o.id),
                o,
                |c| &c.spec,
                |c| &c.meta,
                version,
            )
        }
        ActionObject::Task(_) | ActionObject::Cluster(_) | ActionObject::Stack(_) => 0,
    }
}

fn stamp<T>(
    mut object: Box<T>,
    meta: impl FnOnce(&mut T) -> &mut Option<Meta>,
    version: u64,
    spec_index: u64,
) -> Arc<T> {
    let meta = meta(&mut object).get_or_insert_with(Meta::default);
    meta.version = version;
    meta.spec_index = spec_index;
    Arc::from(object)
}

/// `object` at `version`, in the `Arc` that the tables and its event share.
fn stored_at(object: ActionObject, version: u64, spec_index: u64) -> Stored {
    match object {
        ActionObject::Node(o) => Stored::Node(stamp(o, |o| &mut o.meta, version, spec_index)),
        ActionObject::Service(o) => Stored::Service(stamp(o, |o| &mut o.meta, version, spec_index)),
        ActionObject::Task(o) => Stored::Task(stamp(o, |o| &mut o.meta, version, spec_index)),
        ActionObject::Cluster(o) => Stored::Cluster(stamp(o, |o| &mut o.meta, version, spec_index)),
        ActionObject::Network(o) => Stored::Network(stamp(o, |o| &mut o.meta, version, spec_index)),
        ActionObject::Stack(o) => Stored::Stack(stamp(o, |o| &mut o.meta, version, spec_index)),
        ActionObject::Secret(o) => Stored::Secret(stamp(o, |o| &mut o.meta, version, spec_index)),
        ActionObject::Config(o) => Stored::Config(stamp(o, |o| &mut o.meta, version, spec_index)),
    }
}

fn insert(tables: &mut Tables, object: Stored) {
    match object {
        Stored::Node(o) => tables.nodes.insert(o.id.clone(), o),
        Stored::Service(o) => tables.services.insert(o.id.clone(), o),
        Stored::Task(o) => tables.tasks.insert(o.id.clone(), o),
        Stored::Cluster(o) => tables.clusters.insert(o.id.clone(), o),
        Stored::Network(o) => tables.networks.insert(o.id.clone(), o),
        Stored::Stack(o) => tables.stacks.insert(o.id.clone(), o),
        Stored::Secret(o) => tables.secrets.insert(o.id.clone(), o),
        Stored::Config(o) => tables.configs.insert(o.id.clone(), o),
    }
}

fn remove(tables: &mut Tables, object: &ActionObject) -> Option<Stored> {
    match object {
        ActionObject::Node(o) => tables.nodes.remove(&o.id).map(Stored::Node),
        ActionObject::Service(o) => tables.services.remove(&o.id).map(Stored::Service),
        ActionObject::Task(o) => tables.tasks.remove(&o.id).map(Stored::Task),
        ActionObject::Cluster(o) => tables.clusters.remove(&o.id).map(Stored::Cluster),
        ActionObject::Network(o) => tables.networks.remove(&o.id).map(Stored::Network),
        ActionObject::Stack(o) => tables.stacks.remove(&o.id).map(Stored::Stack),
        ActionObject::Secret(o) => tables.secrets.remove(&o.id).map(Stored::Secret),
        ActionObject::Config(o) => tables.configs.remove(&o.id).map(Stored::Config),
    }
}

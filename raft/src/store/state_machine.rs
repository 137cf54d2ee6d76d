//! The state machine openraft applies committed entries to, and its snapshots in sled.
//!
//! The applied data itself belongs to the [`Applier`]; this side only tracks the last
//! applied log id and the last membership. Both travel inside every snapshot, and the
//! snapshot is the only durable copy of the applied state: at startup it is restored into
//! the applier, and openraft re-applies the committed log entries after it.

use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{AnyError, EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};

use super::disk::Disk;
use crate::types::{
    Entry, LogId, Response, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use crate::{Applier, SnapshotWriter};

const KEY_CURRENT: &[u8] = b"current";

/// One snapshot as stored: written in a single sled insert, so meta and data never disagree.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

/// The sled tree holding the current snapshot; shared by the state machine and builders.
#[derive(Clone)]
pub(crate) struct SnapshotStore {
    db: sled::Db,
    tree: sled::Tree,
    disk: Disk,
    /// Serialises persisting, so an older snapshot never overwrites a newer one.
    write_lock: Arc<tokio::sync::Mutex<()>>,
    /// Makes snapshot ids unique within this process.
    seq: Arc<AtomicU64>,
}

impl SnapshotStore {
    pub(crate) fn new(db: &sled::Db, disk: Disk) -> Result<Self, sled::Error> {
        Ok(Self {
            db: db.clone(),
            tree: db.open_tree("snapshot")?,
            disk,
            write_lock: Arc::new(tokio::sync::Mutex::new(())),
            seq: Arc::new(AtomicU64::new(0)),
        })
    }

    fn load(&self) -> Result<Option<StoredSnapshot>, StorageIOError<u64>> {
        let Some(bytes) = self
            .tree
            .get(KEY_CURRENT)
            .map_err(|e| StorageIOError::read_snapshot(None, &e))?
        else {
            return Ok(None);
        };
        let snap = self
            .disk
            .read(&bytes)
            .map_err(|e| StorageIOError::read_snapshot(None, &std::io::Error::other(e)))?;
        Ok(Some(snap))
    }

    /// Stores `meta` + `data` as the current snapshot and flushes it, unless a snapshot
    /// that covers more of the log is already stored.
    async fn persist(&self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), StorageIOError<u64>> {
        let _guard = self.write_lock.lock().await;
        let sig = || Some(meta.signature());
        if let Some(current) = self.load()? {
            if current.meta.last_log_id > meta.last_log_id {
                return Ok(());
            }
        }
        let bytes = self
            .disk
            .write(&StoredSnapshot {
                meta: meta.clone(),
                data: data.to_vec(),
            })
            .map_err(|e| StorageIOError::write_snapshot(sig(), &std::io::Error::other(e)))?;
        self.tree
            .insert(KEY_CURRENT, bytes)
            .map_err(|e| StorageIOError::write_snapshot(sig(), &e))?;
        super::flush(&self.db)
            .await
            .map_err(|e| StorageIOError::write_snapshot(sig(), &e))?;
        Ok(())
    }

    fn next_id(&self, last: &Option<LogId>) -> String {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        match last {
            Some(id) => format!("{}-{}-{seq}", id.leader_id, id.index),
            None => format!("none-{seq}"),
        }
    }
}

/// The state machine handed to openraft.
pub(crate) struct StateMachineStore {
    applier: Arc<dyn Applier>,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    snapshots: SnapshotStore,
}

impl StateMachineStore {
    /// Opens the state machine, restoring the stored snapshot (if any) into `applier`.
    pub(crate) fn open(
        snapshots: SnapshotStore,
        applier: Arc<dyn Applier>,
    ) -> Result<Self, crate::RaftError> {
        let mut sm = Self {
            applier,
            last_applied: None,
            membership: StoredMembership::default(),
            snapshots,
        };
        let stored = sm
            .snapshots
            .load()
            .map_err(|e| crate::RaftError::Storage(format!("reading the stored snapshot: {e}")))?;
        if let Some(snap) = stored {
            sm.applier
                .restore(&snap.data)
                .map_err(crate::RaftError::Restore)?;
            sm.last_applied = snap.meta.last_log_id;
            sm.membership = snap.meta.last_membership;
        }
        Ok(sm)
    }
}

/// A consistent view of the state machine taken when openraft asks for a builder; it is
/// serialized (on a blocking thread) and persisted in a separate task while later entries
/// keep being applied.
pub(crate) struct SnapshotBuilder {
    /// Taken by the one build.
    write: Option<SnapshotWriter>,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    snapshots: SnapshotStore,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let failed = |why: String| StorageIOError::read_state_machine(&std::io::Error::other(why));
        let write = self
            .write
            .take()
            .ok_or_else(|| failed("a snapshot builder was asked to build twice".into()))?;
        let data = tokio::task::spawn_blocking(write)
            .await
            .map_err(|e| failed(format!("serializing the snapshot failed: {e}")))?;
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.membership.clone(),
            snapshot_id: self.snapshots.next_id(&self.last_applied),
        };
        self.snapshots.persist(&meta, &data).await?;
        tracing::info!(snapshot = %meta, bytes = data.len(), "raft snapshot built");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut responses = Vec::new();
        for entry in entries {
            let index = entry.log_id.index;
            let response = match entry.payload {
                EntryPayload::Blank => Response::default(),
                EntryPayload::Normal(command) => match self.applier.apply(index, &command.0) {
                    Ok(response) => Response(response),
                    Err(why) => {
                        tracing::error!(
                            index,
                            "this manager cannot apply the log from here on: {why}"
                        );
                        return Err(
                            StorageIOError::apply(entry.log_id, AnyError::error(why)).into()
                        );
                    }
                },
                EntryPayload::Membership(membership) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), membership);
                    Response::default()
                }
            };
            self.last_applied = Some(entry.log_id);
            responses.push(response);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            write: Some(self.applier.snapshot()),
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            snapshots: self.snapshots.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        self.applier.restore(&data).map_err(|e| {
            StorageIOError::write_snapshot(
                Some(meta.signature()),
                &std::io::Error::other(format!("restoring the applier: {e}")),
            )
        })?;
        self.snapshots.persist(meta, &data).await?;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        tracing::info!(snapshot = %meta, "raft snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(self.snapshots.load()?.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

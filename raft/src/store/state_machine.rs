//! The state machine openraft applies committed entries to, and its snapshots, each in a
//! file of its own.
//!
//! The applied data itself belongs to the [`Applier`]; this side only tracks the last
//! applied log id and the last membership. Both travel inside every snapshot, and the
//! snapshot is the only durable copy of the applied state: at startup it is restored into
//! the applier, and openraft re-applies the committed log entries after it.

use std::fs::File;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{AnyError, EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};

use super::disk::Disk;
use super::segments::{read_record_file, replace_record_file};
use crate::types::{
    Entry, LogId, Response, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use crate::{Applier, RaftError, SnapshotWriter};

/// Where snapshots are kept, under the raft directory.
pub(crate) const SNAPSHOT_DIR: &str = "snapshot";
/// The current snapshot's file in [`SNAPSHOT_DIR`].
const CURRENT: &str = "current";
/// Where sled held the current snapshot before it had a file ([`SnapshotStore::open`]
/// moves it).
const KEY_CURRENT: &[u8] = b"current";

/// One snapshot as stored: one record of one file, so meta and data never disagree.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

/// The current snapshot's file; shared by the state machine and builders. It is written
/// whole on a blocking thread (a temporary file, synced, renamed over the old one), so a
/// snapshot of a large store neither stalls the runtime nor goes through sled's log.
#[derive(Clone)]
pub(crate) struct SnapshotStore {
    dir: PathBuf,
    dir_handle: Arc<File>,
    disk: Disk,
    /// The stored snapshot's last log id, once read or written (`Some(None)`: none yet).
    stored: Arc<Mutex<Option<Option<LogId>>>>,
    /// Serialises persisting, so an older snapshot never overwrites a newer one.
    write_lock: Arc<tokio::sync::Mutex<()>>,
    /// Makes snapshot ids unique within this process.
    seq: Arc<AtomicU64>,
}

impl SnapshotStore {
    /// Opens the snapshot directory under `raft_dir`; a snapshot that `db` still holds
    /// (written before snapshots had a file) is moved into it first.
    pub(crate) fn open(db: &sled::Db, raft_dir: &Path, disk: Disk) -> Result<Self, RaftError> {
        let dir = raft_dir.join(SNAPSHOT_DIR);
        let storage = |doing: &str, e: &dyn std::fmt::Display| {
            RaftError::Storage(format!("{doing} {}: {e}", dir.display()))
        };
        std::fs::create_dir_all(&dir).map_err(|e| storage("creating", &e))?;
        let dir_handle = File::open(&dir).map_err(|e| storage("opening", &e))?;
        let tree = db
            .open_tree("snapshot")
            .map_err(|e| storage("opening the old snapshot tree for", &e))?;
        if let Some(old) = tree
            .get(KEY_CURRENT)
            .map_err(|e| storage("reading the old snapshot for", &e))?
        {
            // Sealed and encoded as the file's record is: copied as it is. A crash after the
            // copy and before the removal copies it again.
            if !dir.join(CURRENT).exists() {
                replace_record_file(&dir, &dir_handle, CURRENT, &old)
                    .map_err(|e| storage("moving the snapshot into", &e))?;
            }
            tree.remove(KEY_CURRENT)
                .and_then(|_| db.flush())
                .map_err(|e| storage("removing the old snapshot after moving it into", &e))?;
        }
        Ok(Self {
            dir,
            dir_handle: Arc::new(dir_handle),
            disk,
            stored: Arc::new(Mutex::new(None)),
            write_lock: Arc::new(tokio::sync::Mutex::new(())),
            seq: Arc::new(AtomicU64::new(0)),
        })
    }

    fn load(&self) -> Result<Option<StoredSnapshot>, StorageIOError<u64>> {
        let snap: Option<StoredSnapshot> = read_record_file(&self.dir.join(CURRENT), &self.disk)
            .map_err(|e| StorageIOError::read_snapshot(None, &std::io::Error::other(e)))?;
        *self.stored.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(snap.as_ref().and_then(|s| s.meta.last_log_id));
        Ok(snap)
    }

    /// Stores `meta` + `data` as the current snapshot, durably, unless a snapshot that
    /// covers more of the log is already stored; gives `data` back.
    async fn persist(
        &self,
        meta: &SnapshotMeta,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, StorageIOError<u64>> {
        let _guard = self.write_lock.lock().await;
        let known = *self.stored.lock().unwrap_or_else(PoisonError::into_inner);
        let stored = match known {
            Some(stored) => stored,
            None => self.load()?.and_then(|s| s.meta.last_log_id),
        };
        if stored > meta.last_log_id {
            return Ok(data);
        }
        let failed = |why: String| {
            StorageIOError::write_snapshot(Some(meta.signature()), &std::io::Error::other(why))
        };
        let (dir, dir_handle, disk) =
            (self.dir.clone(), self.dir_handle.clone(), self.disk.clone());
        let snapshot = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        let data = tokio::task::spawn_blocking(move || {
            let payload = disk.write(&snapshot)?;
            replace_record_file(&dir, &dir_handle, CURRENT, &payload).map_err(|e| e.to_string())?;
            Ok::<_, String>(snapshot.data)
        })
        .await
        .map_err(|e| failed(format!("the snapshot's writer failed: {e}")))?
        .map_err(failed)?;
        *self.stored.lock().unwrap_or_else(PoisonError::into_inner) = Some(meta.last_log_id);
        Ok(data)
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
        let data = self.snapshots.persist(&meta, data).await?;
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
        self.snapshots.persist(meta, data).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A snapshot that sled held (before snapshots had a file) is moved into the file at
    /// open, sealed as it was, and read back from there on.
    #[tokio::test]
    async fn a_sled_snapshot_moves_into_its_file_at_open() {
        let key =
            || -> Option<Arc<dyn crate::AtRest>> { Some(Arc::new(crate::tests::XorKey(0x33))) };
        let dir = tempfile::tempdir().expect("tempdir");
        let log_id = openraft::LogId::new(openraft::CommittedLeaderId::new(3, 1), 7000);
        let meta = SnapshotMeta {
            last_log_id: Some(log_id),
            last_membership: StoredMembership::default(),
            snapshot_id: "3-7000-0".into(),
        };
        let data = vec![7u8; 100_000];
        {
            let (db, disk) = crate::store::open_db(dir.path(), key()).expect("open db");
            let sealed = disk
                .write(&StoredSnapshot {
                    meta: meta.clone(),
                    data: data.clone(),
                })
                .expect("encode");
            db.open_tree("snapshot")
                .and_then(|t| t.insert(KEY_CURRENT, sealed))
                .expect("old snapshot");
            db.flush().expect("flush");
        }
        for round in ["moved", "reopened"] {
            let (db, disk) = crate::store::open_db(dir.path(), key()).expect("open db");
            let snapshots = SnapshotStore::open(&db, dir.path(), disk).expect("open snapshots");
            let stored = snapshots.load().expect("load").expect("a snapshot");
            assert_eq!(stored.meta, meta, "{round}");
            assert_eq!(stored.data, data, "{round}");
            let tree = db.open_tree("snapshot").expect("tree");
            assert!(tree.is_empty(), "{round}: sled no longer holds it");
            let file = std::fs::read(dir.path().join(SNAPSHOT_DIR).join(CURRENT)).expect("file");
            assert!(
                !file.windows(64).any(|w| w == [7u8; 64]),
                "{round}: the file holds the snapshot sealed, not in clear"
            );
        }
        // A newer snapshot replaces it; an older one does not.
        let (db, disk) = crate::store::open_db(dir.path(), key()).expect("open db");
        let snapshots = SnapshotStore::open(&db, dir.path(), disk).expect("open snapshots");
        let at = |index| SnapshotMeta {
            last_log_id: Some(openraft::LogId::new(
                openraft::CommittedLeaderId::new(3, 1),
                index,
            )),
            ..meta.clone()
        };
        snapshots.persist(&at(6000), vec![1]).await.expect("older");
        assert_eq!(snapshots.load().expect("load").expect("some").data, data);
        snapshots.persist(&at(8000), vec![2]).await.expect("newer");
        assert_eq!(snapshots.load().expect("load").expect("some").data, vec![2]);
    }
}

//! The Raft log, vote and commit index in sled: what shoald used before the segmented log
//! ([`super::SegmentLog`]); kept to move such a log out ([`super::migrate`]) and to measure
//! against (`examples/log_bench.rs`).
//!
//! Log entries live in their own tree keyed by the big-endian index, so sled's key order is
//! log order. The vote, the committed log id and the last purged log id live in the `meta`
//! tree. Every write openraft relies on for safety (appended entries, the vote, truncation,
//! the purge marker) is flushed to disk before it is reported done.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader, StorageIOError, Vote};

use super::disk::Disk;
use crate::space::Space;
use crate::types::{Entry, LogId, StorageError, TypeConfig};

pub(crate) const KEY_VOTE: &[u8] = b"vote";
pub(crate) const KEY_COMMITTED: &[u8] = b"committed";
pub(crate) const KEY_LAST_PURGED: &[u8] = b"last_purged";

/// The log store handed to openraft; clones share the same sled trees.
#[derive(Clone)]
pub(crate) struct LogStore {
    db: sled::Db,
    logs: sled::Tree,
    meta: sled::Tree,
    disk: Disk,
    /// An append waits for room on the disk rather than write to a full one.
    room: Space,
}

pub(crate) fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl LogStore {
    pub(crate) fn new(db: &sled::Db, disk: Disk, room: Space) -> Result<Self, sled::Error> {
        Ok(Self {
            db: db.clone(),
            logs: db.open_tree("logs")?,
            meta: db.open_tree("meta")?,
            disk,
            room,
        })
    }

    fn read_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
    ) -> Result<Option<T>, StorageIOError<u64>> {
        let Some(bytes) = self.meta.get(key).map_err(|e| StorageIOError::read(&e))? else {
            return Ok(None);
        };
        let value = self
            .disk
            .read(&bytes)
            .map_err(|e| StorageIOError::read(&io_err(e)))?;
        Ok(Some(value))
    }

    fn write_meta<T: serde::Serialize>(
        &self,
        key: &[u8],
        value: &T,
    ) -> Result<(), StorageIOError<u64>> {
        let bytes = self
            .disk
            .write(value)
            .map_err(|e| StorageIOError::write(&io_err(e)))?;
        self.meta
            .insert(key, bytes)
            .map_err(|e| StorageIOError::write(&e))?;
        Ok(())
    }

    async fn flush(&self) -> Result<(), sled::Error> {
        super::flush(&self.db).await
    }

    fn last_entry_log_id(&self) -> Result<Option<LogId>, StorageIOError<u64>> {
        let Some((_, bytes)) = self
            .logs
            .last()
            .map_err(|e| StorageIOError::read_logs(&e))?
        else {
            return Ok(None);
        };
        let entry: Entry = self
            .disk
            .read(&bytes)
            .map_err(|e| StorageIOError::read_logs(&io_err(e)))?;
        Ok(Some(entry.log_id))
    }

    // No `sled::Batch` or transaction here: both take sled's process-wide concurrency lock
    // exclusively, and with a concurrent `flush_async` on another tree of the process (the
    // agent's task database) sled 0.34 deadlocks. Plain inserts in index order are enough:
    // sled recovers a prefix of its operations, and a prefix of appended entries is a valid
    // log (none of them was reported durable before the flush).
    fn append_sync(&self, entries: impl IntoIterator<Item = Entry>) -> Result<(), io::Error> {
        for entry in entries {
            let bytes = self.disk.write(&entry).map_err(io_err)?;
            self.logs
                .insert(index_key(entry.log_id.index), bytes)
                .map_err(io_err)?;
        }
        Ok(())
    }

    /// Removes every entry whose index lies in `range`, highest first, so a crash part way
    /// through a truncation leaves a log without holes.
    fn remove_range(&self, range: (Bound<[u8; 8]>, Bound<[u8; 8]>)) -> Result<(), sled::Error> {
        let keys: Vec<_> = self.logs.range(range).keys().collect::<Result<_, _>>()?;
        for key in keys.into_iter().rev() {
            self.logs.remove(key)?;
        }
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        // Normalise to start..end (end exclusive, None = unbounded): sled panics on an
        // inverted range, and openraft may ask for an empty `i..i`.
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => match i.checked_add(1) {
                Some(i) => i,
                None => return Ok(Vec::new()),
            },
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => i.checked_add(1),
            Bound::Excluded(i) => Some(*i),
            Bound::Unbounded => None,
        };
        if end.is_some_and(|end| start >= end) {
            return Ok(Vec::new());
        }
        let bounds = (
            Bound::Included(index_key(start)),
            end.map_or(Bound::Unbounded, |end| Bound::Excluded(index_key(end))),
        );
        let mut out = Vec::new();
        for kv in self.logs.range(bounds) {
            let (_, bytes) = kv.map_err(|e| StorageIOError::read_logs(&e))?;
            let entry: Entry = self
                .disk
                .read(&bytes)
                .map_err(|e| StorageIOError::read_logs(&io_err(e)))?;
            out.push(entry);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self.read_meta(KEY_LAST_PURGED)?;
        let last_log_id = self.last_entry_log_id()?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError> {
        self.write_meta(KEY_VOTE, vote)?;
        self.flush()
            .await
            .map_err(|e| StorageIOError::write_vote(&e))?;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError> {
        Ok(self.read_meta(KEY_VOTE)?)
    }

    /// Not flushed here: losing the newest committed id only means fewer entries are
    /// re-applied at startup and the rest wait for the next leader's commit. The next
    /// append or sled's periodic flush makes it durable.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.write_meta(KEY_COMMITTED, &committed)?;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let committed: Option<Option<LogId>> = self.read_meta(KEY_COMMITTED)?;
        Ok(committed.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.room.wait_for_room().await;
        let res = match self.append_sync(entries) {
            Ok(()) => self.flush().await.map_err(io_err),
            Err(e) => Err(e),
        };
        match res {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let storage_err = StorageIOError::write_logs(&e);
                callback.log_io_completed(Err(e));
                Err(storage_err.into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.remove_range((Bound::Included(index_key(log_id.index)), Bound::Unbounded))
            .map_err(|e| StorageIOError::write_logs(&e))?;
        self.flush()
            .await
            .map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // The marker goes to disk first, so a crash mid-purge never leaves a gap that
        // get_log_state cannot explain.
        self.write_meta(KEY_LAST_PURGED, &log_id)?;
        self.flush()
            .await
            .map_err(|e| StorageIOError::write_logs(&e))?;
        self.remove_range((Bound::Unbounded, Bound::Included(index_key(log_id.index))))
            .map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }
}

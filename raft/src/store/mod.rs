//! Raft's durable storage: the log, the vote and the commit point in append-only segment
//! files ([`SegmentLog`], under `log/`), the current snapshot in a file of its own (under
//! `snapshot/`), and a sled database beside them that records whether values are sealed.
//!
//! Before the segmented log, sled's trees held the log too ([`LogStore`]); a node opening
//! such a database moves its log into segment files first ([`migrate`]).

// openraft's storage traits fix the (large) error type; helpers return it unboxed too.
mod disk;
#[allow(clippy::result_large_err)]
mod log;
mod migrate;
mod segments;
#[cfg(test)]
mod segments_tests;
#[allow(clippy::result_large_err)]
mod state_machine;

use std::path::Path;
use std::sync::Arc;

pub(crate) use log::LogStore;
pub(crate) use segments::SegmentLog;
pub(crate) use state_machine::{SnapshotStore, StateMachineStore};

use crate::{Applier, AtRest, RaftError};

/// Flush `db` to disk on a blocking thread.
///
/// Not `flush_async`: each of its calls parks one of sled 0.34's few IO threads until the
/// flush is stable, and enough concurrent ones park them all, leaving none to do the write
/// they wait for (seen as a hang at 50 tasks starting at once).
pub(crate) async fn flush(db: &sled::Db) -> Result<(), sled::Error> {
    let db = db.clone();
    match tokio::task::spawn_blocking(move || db.flush()).await {
        Ok(result) => result.map(|_| ()),
        Err(e) => Err(sled::Error::ReportableBug(format!(
            "flush thread failed: {e}"
        ))),
    }
}

/// Opens (or creates) the stores openraft drives in `dir`: the segmented log (64 MiB
/// segments) and the state machine; an older database's sled log is moved over first.
pub(crate) async fn open(
    dir: &Path,
    applier: Arc<dyn Applier>,
    at_rest: Option<Arc<dyn AtRest>>,
) -> Result<(sled::Db, SegmentLog, StateMachineStore), RaftError> {
    open_segmented(dir, applier, at_rest, segments::SEGMENT_SIZE).await
}

/// Opens (or creates) the sled database in `dir` with the log in its `logs` tree, as
/// shoald did before the segmented log (for the storage suite and the migration's tests).
#[cfg(test)]
pub(crate) fn open_sled(
    dir: &Path,
    applier: Arc<dyn Applier>,
    at_rest: Option<Arc<dyn AtRest>>,
) -> Result<(sled::Db, LogStore, StateMachineStore), RaftError> {
    let (db, disk) = open_db(dir, at_rest)?;
    let room = crate::space::Space::new(dir, crate::space::RESERVE);
    let logs = LogStore::new(&db, disk.clone(), room)
        .map_err(|e| RaftError::Storage(format!("opening the raft log tree: {e}")))?;
    let snapshots = SnapshotStore::open(&db, dir, disk)?;
    let sm = StateMachineStore::open(snapshots, applier)?;
    Ok((db, logs, sm))
}

/// Where [`open_segmented`] keeps the log's segment files, under the database directory.
pub(crate) const SEGMENT_DIR: &str = "log";
/// Set in the `meta` tree of a database whose log is in segment files.
const KEY_LOG_IN_SEGMENTS: &[u8] = b"log_in_segments";

/// [`open`] with segments of `segment_size` bytes.
pub(crate) async fn open_segmented(
    dir: &Path,
    applier: Arc<dyn Applier>,
    at_rest: Option<Arc<dyn AtRest>>,
    segment_size: u64,
) -> Result<(sled::Db, SegmentLog, StateMachineStore), RaftError> {
    let (db, disk) = open_db(dir, at_rest)?;
    // Whether the values are sealed is decided once, for an empty database; with the log
    // outside sled, the marker this sets keeps a database with a log from looking empty.
    migrate::into_segments(&db, &disk, dir, segment_size).await?;
    let room = crate::space::Space::new(dir, crate::space::RESERVE);
    let logs = SegmentLog::open_with(&dir.join(SEGMENT_DIR), disk.clone(), room, segment_size)
        .map_err(|e| RaftError::Storage(format!("opening the raft log: {e}")))?;
    let snapshots = SnapshotStore::open(&db, dir, disk)?;
    let sm = StateMachineStore::open(snapshots, applier)?;
    Ok((db, logs, sm))
}

/// Opens (or creates) the sled database in `dir` and decides whether the values Raft
/// writes are sealed.
pub(crate) fn open_db(
    dir: &Path,
    at_rest: Option<Arc<dyn AtRest>>,
) -> Result<(sled::Db, disk::Disk), RaftError> {
    std::fs::create_dir_all(dir).map_err(|e| {
        RaftError::Storage(format!("creating raft directory {}: {e}", dir.display()))
    })?;
    let db = sled::Config::new().path(dir).open().map_err(|e| {
        RaftError::Storage(format!("opening sled database in {}: {e}", dir.display()))
    })?;
    let disk = disk::Disk::open(&db, at_rest)?;
    Ok((db, disk))
}

//! Raft's durable storage: one sled database with separate trees for the log, the
//! metadata (vote, committed, last purged) and the current snapshot.

// openraft's storage traits fix the (large) error type; helpers return it unboxed too.
mod disk;
#[allow(clippy::result_large_err)]
mod log;
#[allow(clippy::result_large_err)]
mod state_machine;

use std::path::Path;
use std::sync::Arc;

pub(crate) use log::LogStore;
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

/// Opens (or creates) the sled database in `dir` and the two stores openraft drives.
pub(crate) fn open(
    dir: &Path,
    applier: Arc<dyn Applier>,
    at_rest: Option<Arc<dyn AtRest>>,
) -> Result<(sled::Db, LogStore, StateMachineStore), RaftError> {
    std::fs::create_dir_all(dir).map_err(|e| {
        RaftError::Storage(format!("creating raft directory {}: {e}", dir.display()))
    })?;
    let db = sled::Config::new().path(dir).open().map_err(|e| {
        RaftError::Storage(format!("opening sled database in {}: {e}", dir.display()))
    })?;
    let disk = disk::Disk::open(&db, at_rest)?;
    let room = crate::space::Space::new(dir, crate::space::RESERVE);
    let logs = LogStore::new(&db, disk.clone(), room)
        .map_err(|e| RaftError::Storage(format!("opening the raft log tree: {e}")))?;
    let snapshots = SnapshotStore::new(&db, disk)
        .map_err(|e| RaftError::Storage(format!("opening the raft snapshot tree: {e}")))?;
    let sm = StateMachineStore::open(snapshots, applier)?;
    Ok((db, logs, sm))
}

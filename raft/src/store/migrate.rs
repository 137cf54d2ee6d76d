//! Moves a Raft log kept in sled's `logs` tree (shoald before the segmented log) into
//! segment files, once, when the node opens its stores.
//!
//! The copy is made in `log.migrating` beside the database and renamed to `log` when it is
//! whole and synced; only then is the database marked and its old log cleared. A crash
//! before the rename leaves the sled log as it was (the copy is made again); one after it
//! leaves a whole `log`, which the next open adopts.

use std::path::Path;

use openraft::storage::{RaftLogStorage as _, RaftLogStorageExt as _};
use openraft::RaftLogReader as _;

use super::disk::Disk;
use super::log::{KEY_COMMITTED, KEY_LAST_PURGED, KEY_VOTE};
use super::{LogStore, SegmentLog, KEY_LOG_IN_SEGMENTS, SEGMENT_DIR};
use crate::space::{Space, RESERVE};
use crate::RaftError;

const STAGING_DIR: &str = "log.migrating";
/// Entries copied per append.
const CHUNK: u64 = 1000;

/// Makes sure the log of the database `db` in `dir` is in segment files under
/// `dir/log`, copying a sled log there first, then marks the database.
pub(crate) async fn into_segments(
    db: &sled::Db,
    disk: &Disk,
    dir: &Path,
    segment_size: u64,
) -> Result<(), RaftError> {
    let storage = |doing: &str| {
        let doing = doing.to_string();
        move |e: sled::Error| RaftError::Storage(format!("{doing}: {e}"))
    };
    let meta = db
        .open_tree("meta")
        .map_err(storage("opening the raft metadata"))?;
    if meta
        .contains_key(KEY_LOG_IN_SEGMENTS)
        .map_err(storage("reading the raft metadata"))?
    {
        return Ok(());
    }
    let logs = db
        .open_tree("logs")
        .map_err(storage("opening the sled raft log"))?;
    let mut had_log = false;
    for key in [KEY_VOTE, KEY_COMMITTED, KEY_LAST_PURGED] {
        had_log |= meta
            .contains_key(key)
            .map_err(storage("reading the raft metadata"))?;
    }
    had_log |= !logs.is_empty();
    let target = dir.join(SEGMENT_DIR);
    if had_log && !target.exists() {
        let staging = dir.join(STAGING_DIR);
        copy(db, disk, dir, &staging, segment_size).await?;
        std::fs::rename(&staging, &target)
            .and_then(|()| std::fs::File::open(dir)?.sync_all())
            .map_err(|e| {
                RaftError::Storage(format!(
                    "moving the copied raft log to {}: {e}",
                    target.display()
                ))
            })?;
        tracing::info!(dir = %dir.display(), "moved the raft log from sled into segment files");
    }
    meta.insert(KEY_LOG_IN_SEGMENTS, b"1".as_slice())
        .map_err(storage("marking the raft database"))?;
    for key in [KEY_VOTE, KEY_COMMITTED, KEY_LAST_PURGED] {
        meta.remove(key)
            .map_err(storage("clearing the sled raft log"))?;
    }
    logs.clear()
        .map_err(storage("clearing the sled raft log"))?;
    db.flush().map_err(storage("flushing the raft database"))?;
    Ok(())
}

/// Copies the sled log (entries, vote, purge point, committed id) into a new segmented
/// log in `staging`, synced.
async fn copy(
    db: &sled::Db,
    disk: &Disk,
    dir: &Path,
    staging: &Path,
    segment_size: u64,
) -> Result<(), RaftError> {
    let failed = |doing: &'static str| {
        move |e: openraft::StorageError<u64>| {
            RaftError::Storage(format!(
                "{doing} while moving the raft log out of sled: {e}"
            ))
        }
    };
    if staging.exists() {
        std::fs::remove_dir_all(staging).map_err(|e| {
            RaftError::Storage(format!(
                "removing an unfinished copy {}: {e}",
                staging.display()
            ))
        })?;
    }
    let room = Space::new(dir, RESERVE);
    let mut from = LogStore::new(db, disk.clone(), room.clone())
        .map_err(|e| RaftError::Storage(format!("opening the sled raft log: {e}")))?;
    let mut to = SegmentLog::open_with(staging, disk.clone(), room, segment_size)
        .map_err(|e| RaftError::Storage(format!("creating {}: {e}", staging.display())))?;

    if let Some(vote) = from.read_vote().await.map_err(failed("reading the vote"))? {
        to.save_vote(&vote)
            .await
            .map_err(failed("writing the vote"))?;
    }
    let state = from
        .get_log_state()
        .await
        .map_err(failed("reading the log's state"))?;
    if let Some(purged) = state.last_purged_log_id {
        to.purge(purged)
            .await
            .map_err(failed("writing the purge point"))?;
    }
    let mut next = state.last_purged_log_id.map_or(0, |p| p.index + 1);
    let last = state.last_log_id.map_or(0, |l| l.index);
    while next <= last {
        let entries = from
            .try_get_log_entries(next..next.saturating_add(CHUNK))
            .await
            .map_err(failed("reading entries"))?;
        let Some(end) = entries.last().map(|e| e.log_id.index) else {
            break;
        };
        to.blocking_append(entries)
            .await
            .map_err(failed("writing entries"))?;
        next = end + 1;
    }
    let committed = from
        .read_committed()
        .await
        .map_err(failed("reading the committed id"))?;
    to.save_committed(committed)
        .await
        .map_err(failed("writing the committed id"))?;
    Ok(())
}

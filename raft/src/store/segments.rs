//! The Raft log as append-only segment files, chosen over sled's `logs` tree
//! ([`super::LogStore`]) by measurement (docs/BENCHMARKS.md, issue 12).
//!
//! The log directory holds:
//! - `<index of the first entry, 20 digits>.seg`: entries in index order, each one record
//!   `[u32 payload length LE][u32 CRC-32 of the payload LE][payload]`, the payload being the
//!   entry as [`Disk`] writes it (sealed when the node has a data key). A segment holds at
//!   least one record; the next one starts when a record would take it past the segment
//!   size (64 MiB). After the records come zeros, written up to 1 MiB ahead of them so that
//!   a sync seldom has to grow the file; a scan reads zeros to the end as the end.
//! - `meta`: the vote, the last purged log id and the committed log id, in one record of the
//!   same framing, replaced whole (temporary file, fsync, rename, fsync of the directory).
//! - `committed`: the newest committed log id, overwritten in place and never synced. It is
//!   not kept in `meta` alone because replacing `meta` without a sync could leave it empty
//!   after a crash, vote and all; losing `committed` only means fewer entries are re-applied
//!   at startup (as with sled, where it waits for the next flush).
//! - `lock`: flocked while a handle has the log open, so a second open fails.
//!
//! An append writes its records (readable at once, through the page cache) and hands its
//! callback to one flusher thread, which takes every callback waiting, syncs the segments
//! they wrote once (and the directory when a segment was created), then completes them in
//! order. When a segment rolls, the appending thread syncs the one before first (once per
//! segment), so only the last segment can end in a torn record: opening cuts such an end
//! off, and any other bad record is an error, never dropped. Opening reads (and unseals)
//! every entry once to rebuild the index of where each lies, 40 bytes an entry in memory.
//!
//! Entries are contiguous: an append continues the last entry, or, in an empty log, starts
//! anywhere after the purge point. Nothing at or below the purge point is ever returned (an
//! append skips such entries), and a segment holding nothing above it is deleted.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::ops::{Bound, Range, RangeBounds};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader, StorageIOError, Vote};
use serde::{Deserialize, Serialize};

use super::disk::Disk;
use crate::space::Space;
use crate::types::{Entry, LogId, StorageError, TypeConfig};

/// A segment rolls over to a new file when a record would take it past this size.
pub(crate) const SEGMENT_SIZE: u64 = 64 << 20;
/// A record's length and checksum, before its payload.
const HEADER: usize = 8;
/// How far past its last record a segment is kept written with zeros (up to the segment
/// size): an fdatasync of records that land on blocks already written and synced has no
/// file size or block allocation to journal, and takes half the time of one that grows
/// the file (166 µs against 349 µs here; docs/BENCHMARKS.md).
const ZERO_AHEAD: u64 = 1 << 20;
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
const META: &str = "meta";
const COMMITTED: &str = "committed";
const LOCK: &str = "lock";

/// What can go wrong with the segmented log; trait methods hand it to openraft inside a
/// `StorageIOError`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SegmentError {
    #[error("{doing} {}: {source}", .path.display())]
    Io {
        doing: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "raft log segment {} is damaged at byte {offset}: {why}; only a torn end of the last \
         segment is cut off at startup, so the log is left as it is",
        .path.display()
    )]
    Corrupt {
        path: PathBuf,
        offset: u64,
        why: String,
    },
    /// A file replaced whole ([`replace_record_file`]) that does not read back.
    #[error("raft file {} is damaged ({why}); it is only ever replaced whole, so this is not a torn write", .path.display())]
    Unreadable { path: PathBuf, why: String },
    #[error("encoding a raft log record: {0}")]
    Encode(String),
    #[error("raft log entry {index} cannot follow {after}: the log takes entries in order")]
    OutOfOrder { index: u64, after: String },
    #[error(
        "the raft log takes no more writes after a failed one ({0}); restart the node to recover"
    )]
    Failed(String),
    #[error(
        "the raft log in {} is already open (another shoald, or a handle not yet let go)",
        .dir.display()
    )]
    Locked { dir: PathBuf },
    #[error("a raft log worker thread failed: {0}")]
    Worker(String),
    #[error("the raft log's index and its segments disagree: {0}")]
    Inconsistent(String),
}

/// Wraps an I/O error with what was being done to which file, for `map_err`.
fn io_at<'a>(doing: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SegmentError + 'a {
    move |source| SegmentError::Io {
        doing,
        path: path.to_path_buf(),
        source,
    }
}

/// Called once the entries of one append are on disk, or with why they may not be.
pub(crate) type Done = Box<dyn FnOnce(io::Result<()>) + Send>;

/// The log store handed to openraft; clones share the same files.
#[derive(Clone)]
pub(crate) struct SegmentLog {
    shared: Arc<Shared>,
}

struct Shared {
    dir: PathBuf,
    /// The directory itself, synced once a file in it is created, renamed or removed.
    dir_handle: Arc<File>,
    disk: Disk,
    /// An append waits for room on the disk rather than write to a full one.
    room: Space,
    segment_size: u64,
    /// Held (flock) while the log is open: a second open fails instead of writing beside
    /// this one. Only this struct holds it, so it is let go with the last handle.
    _lock: File,
    state: RwLock<State>,
    meta: Mutex<MetaFiles>,
    /// Held across a durable rewrite of `meta` ([`Shared::replace_meta`]), so such writes
    /// go one at a time while `meta` itself is locked only to read or set it: a commit
    /// point saved meanwhile (on the runtime, at every commit) never waits for a sync.
    meta_writer: Mutex<()>,
    /// Set once writing or syncing a segment fails: the files may no longer match the
    /// index, so nothing more is appended or truncated until a reopen scans them again.
    failed: Arc<OnceLock<String>>,
}

/// The segments and where each entry lies in them.
struct State {
    segments: BTreeMap<u64, Segment>,
    /// Every entry above the purge point, in index order (contiguous).
    entries: VecDeque<Loc>,
    purged: Option<LogId>,
    /// Sent under the write lock, so callbacks complete in the order of their appends.
    flusher: mpsc::Sender<Job>,
}

struct Segment {
    path: PathBuf,
    file: Arc<File>,
    /// Bytes of whole records: where the next one goes.
    len: u64,
    /// How far zeros were written ahead of the records (the file's length, unless records
    /// have since gone past it, as a record larger than the rest of the segment does).
    zeroed: u64,
}

/// Where one entry's record is.
#[derive(Clone, Copy, Debug)]
struct Loc {
    log_id: LogId,
    /// The segment, by its first index.
    segment: u64,
    /// Of the record's header.
    offset: u64,
    /// Of the payload.
    len: u32,
}

/// What `meta` holds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Meta {
    vote: Option<Vote<u64>>,
    committed: Option<LogId>,
    last_purged: Option<LogId>,
}

struct MetaFiles {
    meta: Meta,
    /// `committed`, open for overwriting.
    committed: File,
}

/// One append's wait for the flusher.
struct Job {
    /// The segments the append wrote to.
    files: Vec<Arc<File>>,
    /// It created a segment.
    sync_dir: bool,
    done: Done,
}

impl SegmentLog {
    /// Opens (or creates) the log in `dir` with 64 MiB segments.
    pub(crate) fn open(dir: &Path, disk: Disk, room: Space) -> Result<Self, SegmentError> {
        Self::open_with(dir, disk, room, SEGMENT_SIZE)
    }

    /// Opens (or creates) the log in `dir`: reads the metadata, scans every segment
    /// (cutting off a torn end of the last one) and starts the flusher thread.
    pub(crate) fn open_with(
        dir: &Path,
        disk: Disk,
        room: Space,
        segment_size: u64,
    ) -> Result<Self, SegmentError> {
        fs::create_dir_all(dir).map_err(io_at("creating the raft log directory", dir))?;
        let lock = lock_dir(dir)?;
        let dir_handle =
            Arc::new(File::open(dir).map_err(io_at("opening the raft log directory", dir))?);
        let mut meta = read_meta(dir, &disk)?;
        let committed_path = dir.join(COMMITTED);
        meta.committed = meta.committed.max(read_committed(&committed_path, &disk));
        let committed = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&committed_path)
            .map_err(io_at("opening", &committed_path))?;

        let Scanned {
            segments,
            entries,
            mut dir_changed,
        } = scan(dir, &disk)?;
        let failed = Arc::new(OnceLock::new());
        let flusher = start_flusher(dir_handle.clone(), failed.clone())
            .map_err(io_at("starting the flush thread of the raft log in", dir))?;
        let mut state = State {
            segments,
            entries,
            purged: meta.last_purged,
            flusher,
        };
        // Redo a purge a crash interrupted.
        if let Some(purged) = meta.last_purged {
            for segment in state.forget_through(purged.index) {
                remove_file(&segment.path)?;
                dir_changed = true;
            }
        }
        if dir_changed {
            dir_handle
                .sync_all()
                .map_err(io_at("syncing the raft log directory", dir))?;
        }
        Ok(Self {
            shared: Arc::new(Shared {
                dir: dir.to_path_buf(),
                dir_handle,
                disk,
                room,
                segment_size,
                _lock: lock,
                state: RwLock::new(state),
                meta: Mutex::new(MetaFiles { meta, committed }),
                meta_writer: Mutex::new(()),
                failed,
            }),
        })
    }

    /// The id of the last entry held, or of the last one purged into a snapshot; `None`
    /// when there is none (the elector's view of this log).
    pub(crate) fn last_log_id(&self) -> Option<LogId> {
        self.shared.read().last_log_id()
    }

    /// Writes `entries` after the last one (readable at once) and has the flusher call
    /// `done` once they are on disk. On an error, `done` is called with it too.
    pub(crate) fn append_then(
        &self,
        entries: impl IntoIterator<Item = Entry>,
        done: Done,
    ) -> Result<(), SegmentError> {
        let fail = |done: Done, e: SegmentError| {
            done(Err(io::Error::other(e.to_string())));
            e
        };
        let records = match self.shared.encode(entries) {
            Ok(records) => records,
            Err(e) => return Err(fail(done, e)),
        };
        let mut state = self.shared.write();
        match self.shared.write_records(&mut state, records) {
            Ok((files, sync_dir)) => {
                let job = Job {
                    files,
                    sync_dir,
                    done,
                };
                if let Err(mpsc::SendError(job)) = state.flusher.send(job) {
                    (job.done)(Err(io::Error::other(
                        "the raft log's flush thread has stopped",
                    )));
                }
                Ok(())
            }
            Err(e) => Err(fail(done, e)),
        }
    }

    /// Runs `work` on a blocking thread: it syncs files.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Shared) -> Result<T, SegmentError> + Send + 'static,
    ) -> Result<T, SegmentError> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || work(&shared))
            .await
            .map_err(|e| SegmentError::Worker(e.to_string()))?
    }
}

impl Shared {
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn meta(&self) -> MutexGuard<'_, MetaFiles> {
        self.meta.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn refuse_if_failed(&self) -> Result<(), SegmentError> {
        match self.failed.get() {
            Some(why) => Err(SegmentError::Failed(why.clone())),
            None => Ok(()),
        }
    }

    /// Keeps `e` as the reason to refuse further writes when it came from the disk.
    fn poison(&self, e: SegmentError) -> SegmentError {
        if matches!(e, SegmentError::Io { .. }) {
            let _ = self.failed.set(e.to_string());
        }
        e
    }

    /// Each entry as its log id and its framed record.
    fn encode(
        &self,
        entries: impl IntoIterator<Item = Entry>,
    ) -> Result<Vec<(LogId, Vec<u8>)>, SegmentError> {
        entries
            .into_iter()
            .map(|entry| {
                let payload = self.disk.write(&entry).map_err(SegmentError::Encode)?;
                Ok((entry.log_id, frame(&payload)?))
            })
            .collect()
    }

    /// Writes `records` after the last entry and indexes them. Returns the segments written
    /// to and whether one was created, for the flusher.
    fn write_records(
        &self,
        state: &mut State,
        records: Vec<(LogId, Vec<u8>)>,
    ) -> Result<(Vec<Arc<File>>, bool), SegmentError> {
        self.refuse_if_failed()?;
        // What the purge point covers is in the snapshot already: there is nothing to keep.
        // (openraft's storage suite appends such entries; openraft itself does not.)
        let purged = state.purged.map(|p| p.index);
        let records: Vec<_> = records
            .into_iter()
            .filter(|(log_id, _)| purged.is_none_or(|p| log_id.index > p))
            .collect();
        let mut after = state.entries.back().map(|l| l.log_id.index);
        for (log_id, _) in &records {
            State::check_follows(after, log_id.index)?;
            after = Some(log_id.index);
        }
        let mut files: Vec<Arc<File>> = Vec::new();
        let mut created = false;
        let mut locs = Vec::with_capacity(records.len());
        // Records for the active segment, written at `at` in one go.
        let mut batch: Vec<u8> = Vec::new();
        let mut active = state
            .segments
            .last_key_value()
            .map(|(first, segment)| (*first, segment.len));
        let mut at = active.map_or(0, |(_, len)| len);
        for (log_id, record) in records {
            let size = record.len() as u64;
            let key = match active {
                Some((key, len)) if len == 0 || len + size <= self.segment_size => key,
                _ => {
                    if let Some((key, _)) = active {
                        self.write_batch(state, key, at, &mut batch, &mut files)?;
                        state.sync_segment(key).map_err(|e| self.poison(e))?;
                    }
                    self.create_segment(state, log_id.index)?;
                    created = true;
                    at = 0;
                    log_id.index
                }
            };
            let offset = at + batch.len() as u64;
            locs.push(Loc {
                log_id,
                segment: key,
                offset,
                len: (record.len() - HEADER) as u32,
            });
            batch.extend_from_slice(&record);
            active = Some((key, offset + size));
        }
        if let Some((key, _)) = active {
            self.write_batch(state, key, at, &mut batch, &mut files)?;
        }
        state.entries.extend(locs);
        Ok((files, created))
    }

    /// Writes `batch` at `at` in segment `key` and empties it.
    fn write_batch(
        &self,
        state: &mut State,
        key: u64,
        at: u64,
        batch: &mut Vec<u8>,
        files: &mut Vec<Arc<File>>,
    ) -> Result<(), SegmentError> {
        if batch.is_empty() {
            return Ok(());
        }
        let segment = state.segment_mut(key)?;
        segment
            .file
            .write_all_at(batch, at)
            .map_err(io_at("writing raft log segment", &segment.path))
            .map_err(|e| self.poison(e))?;
        segment.len = at + batch.len() as u64;
        segment
            .zero_ahead(self.segment_size)
            .map_err(|e| self.poison(e))?;
        if !files.iter().any(|f| Arc::ptr_eq(f, &segment.file)) {
            files.push(segment.file.clone());
        }
        batch.clear();
        Ok(())
    }

    fn create_segment(&self, state: &mut State, first: u64) -> Result<(), SegmentError> {
        let path = segment_path(&self.dir, first);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_at("creating raft log segment", &path))
            .map_err(|e| self.poison(e))?;
        state.segments.insert(
            first,
            Segment {
                path,
                file: Arc::new(file),
                len: 0,
                zeroed: 0,
            },
        );
        Ok(())
    }

    /// Removes every entry from `index` on: later segments first, then the directory is
    /// synced, then the segment holding `index` is cut, so a crash part way leaves a prefix
    /// of the log.
    fn truncate(&self, index: u64) -> Result<(), SegmentError> {
        let mut state = self.write();
        self.refuse_if_failed()?;
        let keep = state.positions(0, Some(index)).end;
        let Some(cut) = state.entries.get(keep).copied() else {
            return Ok(());
        };
        state.entries.truncate(keep);
        let later: Vec<u64> = state
            .segments
            .range((Bound::Excluded(cut.segment), Bound::Unbounded))
            .map(|(first, _)| *first)
            .rev()
            .collect();
        // The cut segment goes too when nothing before the cut is still in the log.
        let whole = state
            .entries
            .back()
            .is_none_or(|l| l.segment != cut.segment);
        let doomed: Vec<u64> = later
            .into_iter()
            .chain(whole.then_some(cut.segment))
            .collect();
        for first in &doomed {
            if let Some(segment) = state.segments.remove(first) {
                remove_file(&segment.path).map_err(|e| self.poison(e))?;
            }
        }
        if !doomed.is_empty() {
            self.dir_handle
                .sync_all()
                .map_err(io_at("syncing the raft log directory", &self.dir))
                .map_err(|e| self.poison(e))?;
        }
        if !whole {
            let segment = state.segment_mut(cut.segment)?;
            segment
                .file
                .set_len(cut.offset)
                .and_then(|()| segment.file.sync_data())
                .map_err(io_at("truncating raft log segment", &segment.path))
                .map_err(|e| self.poison(e))?;
            segment.len = cut.offset;
            segment.zeroed = cut.offset;
        }
        Ok(())
    }

    /// Records the purge point durably, then forgets the entries up to it and deletes the
    /// segments holding nothing after it (a deletion a crash loses is redone at open).
    fn purge(&self, log_id: LogId) -> Result<(), SegmentError> {
        self.replace_meta(|meta| meta.last_purged = Some(log_id))?;
        let forgotten = {
            let mut state = self.write();
            state.purged = Some(log_id);
            state.forget_through(log_id.index)
        };
        // Unreachable now: removed without holding up appends.
        for segment in forgotten {
            remove_file(&segment.path)?;
        }
        Ok(())
    }

    fn save_vote(&self, vote: Vote<u64>) -> Result<(), SegmentError> {
        self.replace_meta(|meta| meta.vote = Some(vote))
    }

    /// Overwrites `committed` in place, without a sync (see the module docs).
    fn save_committed(&self, committed: Option<LogId>) -> Result<(), SegmentError> {
        let mut files = self.meta();
        let path = self.dir.join(COMMITTED);
        let payload = self.disk.write(&committed).map_err(SegmentError::Encode)?;
        files
            .committed
            .write_all_at(&frame(&payload)?, 0)
            .map_err(io_at("writing", &path))?;
        files.meta.committed = committed;
        Ok(())
    }

    /// Rewrites `meta` durably with `change` made ([`replace_record_file`]); the change is
    /// seen once it is durable. The commit point is not taken from it: that is saved
    /// apart, and may move on during the write.
    fn replace_meta(&self, change: impl FnOnce(&mut Meta)) -> Result<(), SegmentError> {
        let _writer = self
            .meta_writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut meta = self.meta().meta.clone();
        change(&mut meta);
        let payload = self.disk.write(&meta).map_err(SegmentError::Encode)?;
        replace_record_file(&self.dir, &self.dir_handle, META, &payload)?;
        let mut files = self.meta();
        files.meta = Meta {
            committed: files.meta.committed,
            ..meta
        };
        Ok(())
    }

    /// The entries from `start` up to `end` (exclusive, `None`: the last) that the log
    /// holds.
    fn read_entries(&self, start: u64, end: Option<u64>) -> Result<Vec<Entry>, SegmentError> {
        let records = {
            let state = self.read();
            let positions = state.positions(start, end);
            let mut records = Vec::with_capacity(positions.len());
            for loc in state.entries.range(positions) {
                let segment = state.segment(loc.segment)?;
                let mut bytes = vec![0; HEADER + loc.len as usize];
                segment
                    .file
                    .read_exact_at(&mut bytes, loc.offset)
                    .map_err(io_at("reading raft log segment", &segment.path))?;
                records.push((*loc, segment.path.clone(), bytes));
            }
            records
        };
        records
            .into_iter()
            .map(|(loc, path, bytes)| {
                let damaged = |why: String| SegmentError::Corrupt {
                    path: path.clone(),
                    offset: loc.offset,
                    why,
                };
                let Record::Whole { payload, .. } = record_at(&bytes, 0) else {
                    return Err(damaged(format!(
                        "entry {} no longer reads back",
                        loc.log_id
                    )));
                };
                let entry: Entry = self.disk.read(payload).map_err(damaged)?;
                if entry.log_id != loc.log_id {
                    return Err(damaged(format!(
                        "entry {} is where {} was written",
                        entry.log_id, loc.log_id
                    )));
                }
                Ok(entry)
            })
            .collect()
    }
}

impl State {
    fn last_log_id(&self) -> Option<LogId> {
        self.entries.back().map(|l| l.log_id).or(self.purged)
    }

    fn segment(&self, first: u64) -> Result<&Segment, SegmentError> {
        self.segments.get(&first).ok_or_else(|| missing(first))
    }

    fn segment_mut(&mut self, first: u64) -> Result<&mut Segment, SegmentError> {
        self.segments.get_mut(&first).ok_or_else(|| missing(first))
    }

    /// Syncs a segment the log moves on from, so no later one is ever on disk before it is.
    fn sync_segment(&self, first: u64) -> Result<(), SegmentError> {
        let segment = self.segment(first)?;
        segment
            .file
            .sync_data()
            .map_err(io_at("syncing raft log segment", &segment.path))
    }

    /// Whether entry `index` may come after entry `after` (`None`: the log is empty, and
    /// any entry above the purge point may start it).
    fn check_follows(after: Option<u64>, index: u64) -> Result<(), SegmentError> {
        match after {
            Some(last) if last.checked_add(1) != Some(index) => Err(SegmentError::OutOfOrder {
                index,
                after: format!("entry {last}"),
            }),
            _ => Ok(()),
        }
    }

    /// The positions in `entries` of the entries held from `start` up to `end`
    /// (exclusive, `None`: the last).
    fn positions(&self, start: u64, end: Option<u64>) -> Range<usize> {
        let Some(first) = self.entries.front().map(|l| l.log_id.index) else {
            return 0..0;
        };
        let len = self.entries.len();
        let position =
            |index: u64| usize::try_from(index.saturating_sub(first)).map_or(len, |p| p.min(len));
        let from = position(start);
        let to = end.map_or(len, position);
        from..to.max(from)
    }

    /// Forgets the entries up to `index` and takes the segments that then hold none.
    fn forget_through(&mut self, index: u64) -> Vec<Segment> {
        while self
            .entries
            .front()
            .is_some_and(|l| l.log_id.index <= index)
        {
            self.entries.pop_front();
        }
        let first_kept = self.entries.front().map(|l| l.segment);
        let hidden: Vec<u64> = self
            .segments
            .keys()
            .copied()
            .take_while(|first| first_kept.is_none_or(|kept| *first < kept))
            .collect();
        hidden
            .iter()
            .filter_map(|first| self.segments.remove(first))
            .collect()
    }
}

impl Segment {
    /// Writes zeros past the last record, up to [`ZERO_AHEAD`] ahead of it (within the
    /// segment size), once fewer than half of that are left; the flusher's next sync makes
    /// them stable with the records. A scan at open reads the zeros as the segment's end.
    fn zero_ahead(&mut self, segment_size: u64) -> Result<(), SegmentError> {
        let target = (self.len + ZERO_AHEAD).min(segment_size);
        if self.zeroed >= self.len + ZERO_AHEAD / 2 || target <= self.len.max(self.zeroed) {
            return Ok(());
        }
        let mut at = self.len.max(self.zeroed);
        while at < target {
            let n = (target - at).min(ZEROS.len() as u64) as usize;
            self.file
                .write_all_at(&ZEROS[..n], at)
                .map_err(io_at("writing zeros ahead in raft log segment", &self.path))?;
            at += n as u64;
        }
        self.zeroed = target;
        Ok(())
    }
}

fn missing(first: u64) -> SegmentError {
    SegmentError::Inconsistent(format!("no segment {first}"))
}

/// The flusher: takes every append waiting, syncs what they wrote once, completes them in
/// order. Ends when the last [`SegmentLog`] handle (and so the sender) is gone.
fn start_flusher(dir: Arc<File>, failed: Arc<OnceLock<String>>) -> io::Result<mpsc::Sender<Job>> {
    let (tx, rx) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("raft-segment-flush".into())
        .spawn(move || {
            while let Ok(first) = rx.recv() {
                let jobs: Vec<Job> = std::iter::once(first).chain(rx.try_iter()).collect();
                let result = sync_for(&jobs, &dir, &failed);
                for job in jobs {
                    (job.done)(result.clone().map_err(io::Error::other));
                }
            }
        })?;
    Ok(tx)
}

/// One fdatasync per segment `jobs` wrote, and the directory's when one created a segment.
/// A failure is final: after a failed sync the page cache no longer says what is on disk.
fn sync_for(jobs: &[Job], dir: &File, failed: &OnceLock<String>) -> Result<(), String> {
    if let Some(why) = failed.get() {
        return Err(why.clone());
    }
    let mut synced: Vec<&Arc<File>> = Vec::new();
    let mut result = Ok(());
    for file in jobs.iter().flat_map(|job| &job.files) {
        if result.is_err() || synced.iter().any(|s| Arc::ptr_eq(s, file)) {
            continue;
        }
        result = file.sync_data();
        synced.push(file);
    }
    if result.is_ok() && jobs.iter().any(|job| job.sync_dir) {
        result = dir.sync_all();
    }
    result.map_err(|e| {
        let why = format!("syncing the raft log: {e}");
        let _ = failed.set(why.clone());
        why
    })
}

/// `payload` as one record.
fn frame(payload: &[u8]) -> Result<Vec<u8>, SegmentError> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|len| *len > 0)
        .ok_or_else(|| SegmentError::Encode(format!("a record of {} bytes", payload.len())))?;
    let mut record = Vec::with_capacity(HEADER + payload.len());
    record.extend_from_slice(&len.to_le_bytes());
    record.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    record.extend_from_slice(payload);
    Ok(record)
}

/// What the bytes at one offset hold.
enum Record<'a> {
    /// A record whose checksum matches; the next one starts at `next`.
    Whole { payload: &'a [u8], next: usize },
    /// Nothing: the end of the bytes.
    End,
    /// A record cut short, an empty one, or one whose checksum does not match.
    Bad(&'static str),
}

fn record_at(bytes: &[u8], at: usize) -> Record<'_> {
    let Some(rest) = bytes.get(at..) else {
        return Record::Bad("an offset past the end");
    };
    if rest.is_empty() {
        return Record::End;
    }
    let Some(([l0, l1, l2, l3, c0, c1, c2, c3], body)) = rest.split_first_chunk::<HEADER>() else {
        return Record::Bad("a record header cut short");
    };
    let len = u32::from_le_bytes([*l0, *l1, *l2, *l3]) as usize;
    if len == 0 {
        return Record::Bad("an empty record");
    }
    let Some(payload) = body.get(..len) else {
        return Record::Bad("a record cut short");
    };
    if crc32fast::hash(payload) != u32::from_le_bytes([*c0, *c1, *c2, *c3]) {
        return Record::Bad("a checksum mismatch");
    }
    Record::Whole {
        payload,
        next: at + HEADER + len,
    }
}

/// Whether no whole record starts anywhere after the bad one at `bad`: then what lies from
/// `bad` on is the torn end of an append, not damage inside the log.
fn torn_from(bytes: &[u8], bad: usize) -> bool {
    (bad + 1..bytes.len()).all(|at| !matches!(record_at(bytes, at), Record::Whole { .. }))
}

/// Takes the log directory's lock for this handle.
fn lock_dir(dir: &Path) -> Result<File, SegmentError> {
    let path = dir.join(LOCK);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_at("opening", &path))?;
    match try_lock(&file) {
        Ok(()) => Ok(file),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(SegmentError::Locked {
            dir: dir.to_path_buf(),
        }),
        Err(e) => Err(io_at("locking", &path)(e)),
    }
}

#[allow(unsafe_code)]
fn try_lock(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    // SAFETY: flock takes a descriptor `file` keeps open and touches no memory.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.seg"))
}

/// The first index of the segment file called `name`.
fn segment_first(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn remove_file(path: &Path) -> Result<(), SegmentError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(io_at("removing raft log segment", path)(e))
        }
        _ => Ok(()),
    }
}

/// `meta`, or the default when there is none yet. A damaged one is an error: it was
/// replaced whole, so it cannot be torn, and the vote must not be forgotten.
fn read_meta(dir: &Path, disk: &Disk) -> Result<Meta, SegmentError> {
    Ok(read_record_file(&dir.join(META), disk)?.unwrap_or_default())
}

/// Replaces the file `name` in `dir` (whose handle is `dir_handle`) with one record of
/// `payload`, durably: a temporary file, synced, renamed over it, and the directory
/// synced. A crash leaves the old file or the new one, whole.
pub(crate) fn replace_record_file(
    dir: &Path,
    dir_handle: &File,
    name: &str,
    payload: &[u8],
) -> Result<(), SegmentError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let record = frame(payload)?;
    let mut file = File::create(&tmp).map_err(io_at("creating", &tmp))?;
    for (step, bytes) in record.chunks(WRITE_STEP).enumerate() {
        file.write_all(bytes).map_err(io_at("writing", &tmp))?;
        write_back(&file, step * WRITE_STEP, bytes.len(), false);
        if let Some(before) = step.checked_sub(1) {
            write_back(&file, before * WRITE_STEP, WRITE_STEP, true);
        }
    }
    file.sync_all().map_err(io_at("writing", &tmp))?;
    fs::rename(&tmp, &path).map_err(io_at("replacing", &path))?;
    dir_handle
        .sync_all()
        .map_err(io_at("syncing the directory", dir))
}

/// [`replace_record_file`] writes a large file (a snapshot) in steps of this many bytes,
/// each handed to the disk as it is written, so at most two steps are waiting to be
/// written when it syncs: a sync of the whole at the end would write it all at once and
/// hold up the log's syncs (every member's, on one disk) behind it.
const WRITE_STEP: usize = 1 << 20;

/// Starts writing `len` bytes of `file` from `offset` to disk, and with `wait` waits for
/// them to be written. Only pacing: durability comes from the sync after, so a failure
/// here is left to it.
#[allow(unsafe_code)]
fn write_back(file: &File, offset: usize, len: usize, wait: bool) {
    use std::os::fd::AsRawFd as _;
    let flags = if wait {
        libc::SYNC_FILE_RANGE_WAIT_BEFORE
            | libc::SYNC_FILE_RANGE_WRITE
            | libc::SYNC_FILE_RANGE_WAIT_AFTER
    } else {
        libc::SYNC_FILE_RANGE_WRITE
    };
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: the descriptor is open for as long as `file` is borrowed; the call reads no
    // memory of ours.
    unsafe { libc::sync_file_range(file.as_raw_fd(), offset, len, flags) };
}

/// The value in the file [`replace_record_file`] wrote at `path`, or `None` when there is
/// none. A damaged one is an error: it was replaced whole, so it cannot be torn.
pub(crate) fn read_record_file<T: serde::de::DeserializeOwned>(
    path: &Path,
    disk: &Disk,
) -> Result<Option<T>, SegmentError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_at("reading", path)(e)),
    };
    let why = match record_at(&bytes, 0) {
        Record::Whole { payload, .. } => match disk.read(payload) {
            Ok(value) => return Ok(Some(value)),
            Err(why) => why,
        },
        Record::End => "empty".to_string(),
        Record::Bad(why) => why.to_string(),
    };
    Err(SegmentError::Unreadable {
        path: path.to_path_buf(),
        why,
    })
}

/// The committed log id `committed` holds; `None` when it is missing or unreadable (it is
/// never synced, so a crash may tear it).
fn read_committed(path: &Path, disk: &Disk) -> Option<LogId> {
    let bytes = fs::read(path).ok()?;
    let read = match record_at(&bytes, 0) {
        Record::Whole { payload, .. } => disk.read::<Option<LogId>>(payload),
        Record::End => return None,
        Record::Bad(why) => Err(why.to_string()),
    };
    read.unwrap_or_else(|why| {
        tracing::warn!(file = %path.display(), "ignoring the raft log's committed id: {why}");
        None
    })
}

/// What [`scan`] found.
struct Scanned {
    segments: BTreeMap<u64, Segment>,
    entries: VecDeque<Loc>,
    /// A segment was removed.
    dir_changed: bool,
}

/// Every segment in `dir` and the entries in them, checked end to end. A torn end of the
/// last segment is cut off (and an empty last segment removed).
fn scan(dir: &Path, disk: &Disk) -> Result<Scanned, SegmentError> {
    let mut firsts = Vec::new();
    for dirent in fs::read_dir(dir).map_err(io_at("listing the raft log directory", dir))? {
        let dirent = dirent.map_err(io_at("listing the raft log directory", dir))?;
        let name = dirent.file_name();
        let name = name.to_string_lossy();
        match segment_first(&name) {
            Some(first) => firsts.push(first),
            None if name.ends_with(".seg") => {
                tracing::warn!(dir = %dir.display(), "ignoring {name}: not a raft log segment name");
            }
            None => {}
        }
    }
    firsts.sort_unstable();
    let last = firsts.last().copied();
    let mut segments = BTreeMap::new();
    let mut entries: VecDeque<Loc> = VecDeque::new();
    let mut dir_changed = false;
    for first in firsts {
        let path = segment_path(dir, first);
        let is_last = Some(first) == last;
        let damaged = |offset: usize, why: String| SegmentError::Corrupt {
            path: path.clone(),
            offset: offset as u64,
            why,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_at("opening raft log segment", &path))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(io_at("reading raft log segment", &path))?;
        if let Some(prev) = entries.back() {
            if prev.log_id.index.checked_add(1) != Some(first) {
                return Err(damaged(
                    0,
                    format!(
                        "it starts at entry {first} but the log before ends at {}",
                        prev.log_id.index
                    ),
                ));
            }
        }
        let mut at = 0;
        let mut zeroed = bytes.len();
        let mut expected = Some(first);
        loop {
            match record_at(&bytes, at) {
                Record::End => break,
                // The zeros written ahead of the records (`Segment::zero_ahead`).
                Record::Bad(_)
                    if bytes
                        .get(at..)
                        .is_some_and(|rest| rest.iter().all(|b| *b == 0)) =>
                {
                    break
                }
                Record::Whole { payload, next } => {
                    let entry: Entry = disk.read(payload).map_err(|why| {
                        damaged(at, format!("an entry that cannot be read: {why}"))
                    })?;
                    if Some(entry.log_id.index) != expected {
                        return Err(damaged(
                            at,
                            format!("entry {} where the next entry belongs", entry.log_id.index),
                        ));
                    }
                    entries.push_back(Loc {
                        log_id: entry.log_id,
                        segment: first,
                        offset: at as u64,
                        len: (next - at - HEADER) as u32,
                    });
                    expected = entry.log_id.index.checked_add(1);
                    at = next;
                }
                Record::Bad(why) if is_last && torn_from(&bytes, at) => {
                    tracing::warn!(
                        segment = %path.display(),
                        offset = at,
                        bytes = bytes.len() - at,
                        "cutting off the torn end of the raft log ({why}): an append that was never reported durable"
                    );
                    file.set_len(at as u64)
                        .and_then(|()| file.sync_data())
                        .map_err(io_at("cutting the torn end of raft log segment", &path))?;
                    zeroed = at;
                    break;
                }
                Record::Bad(why) => return Err(damaged(at, why.to_string())),
            }
        }
        if at == 0 {
            if !is_last {
                return Err(damaged(0, "an empty segment before the last".into()));
            }
            // Created just before a crash: nothing in it was ever reported durable.
            remove_file(&path)?;
            dir_changed = true;
            continue;
        }
        segments.insert(
            first,
            Segment {
                path,
                file: Arc::new(file),
                len: at as u64,
                zeroed: zeroed as u64,
            },
        );
    }
    Ok(Scanned {
        segments,
        entries,
        dir_changed,
    })
}

/// `range` as `start..end` (end exclusive, `None`: unbounded); `None` when it is empty.
fn index_range(range: &impl RangeBounds<u64>) -> Option<(u64, Option<u64>)> {
    let start = match range.start_bound() {
        Bound::Included(i) => *i,
        Bound::Excluded(i) => i.checked_add(1)?,
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(i) => i.checked_add(1),
        Bound::Excluded(i) => Some(*i),
        Bound::Unbounded => None,
    };
    match end {
        Some(end) if start >= end => None,
        _ => Some((start, end)),
    }
}

impl RaftLogReader<TypeConfig> for SegmentLog {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let Some((start, end)) = index_range(&range) else {
            return Ok(Vec::new());
        };
        let entries = self
            .shared
            .read_entries(start, end)
            .map_err(|e| StorageIOError::read_logs(&e))?;
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for SegmentLog {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let state = self.shared.read();
        Ok(LogState {
            last_purged_log_id: state.purged,
            last_log_id: state.last_log_id(),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError> {
        let vote = *vote;
        self.blocking(move |shared| shared.save_vote(vote))
            .await
            .map_err(|e| StorageIOError::write_vote(&e))?;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError> {
        Ok(self.shared.meta().meta.vote)
    }

    /// Not synced: see the module docs.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.shared
            .save_committed(committed)
            .map_err(|e| StorageIOError::write(&e))?;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.shared.meta().meta.committed)
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
        self.shared.room.wait_for_room().await;
        // Readable now (replication may send it); durable when the callback runs.
        self.append_then(
            entries,
            Box::new(move |result| callback.log_io_completed(result)),
        )
        .map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.blocking(move |shared| shared.truncate(log_id.index))
            .await
            .map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.blocking(move |shared| shared.purge(log_id))
            .await
            .map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }
}

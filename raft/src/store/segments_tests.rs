//! The segmented log on its own: what a reopen finds, a torn end cut off at open and
//! damage inside the log refused, segments rolling and purged whole, and callbacks
//! completing in order. openraft's storage suite runs over it in `crate::tests`.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use openraft::storage::{LogState, RaftLogStorage, RaftLogStorageExt};
use openraft::{CommittedLeaderId, EntryPayload, RaftLogReader, Vote};

use super::segments::{SegmentError, SegmentLog, SEGMENT_SIZE};
use crate::space::Space;
use crate::tests::XorKey;
use crate::types::{Command, Entry, LogId, TypeConfig};

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

/// An entry whose command is `size` bytes, naming its index in clear.
fn sized_entry(term: u64, index: u64, size: usize) -> Entry {
    let mut command = format!("command {index} ").into_bytes();
    command.resize(size.max(command.len()), b'.');
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(Command(command)),
    }
}

fn entry(term: u64, index: u64) -> Entry {
    sized_entry(term, index, 0)
}

fn entries(term: u64, indexes: impl IntoIterator<Item = u64>) -> Vec<Entry> {
    indexes.into_iter().map(|i| entry(term, i)).collect()
}

/// The log in `dir/log`, sealed with the test key, with segments of `segment_size` bytes.
fn open(dir: &Path, segment_size: u64) -> Result<SegmentLog, SegmentError> {
    // The database only decides the sealing; the Disk outlives it.
    let (_db, disk) = crate::store::open_db(&dir.join("db"), Some(Arc::new(XorKey(0x5a))))
        .expect("open the database");
    SegmentLog::open_with(&dir.join("log"), disk, Space::new(dir, 0), segment_size)
}

fn reopen(dir: &Path, segment_size: u64) -> SegmentLog {
    open(dir, segment_size).expect("open the log")
}

async fn read_all(log: &mut SegmentLog) -> Vec<Entry> {
    log.try_get_log_entries(..).await.expect("read the log")
}

fn indexes(entries: &[Entry]) -> Vec<u64> {
    entries.iter().map(|e| e.log_id.index).collect()
}

/// The segment files, by first index.
fn segments(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut found: Vec<(u64, PathBuf)> = fs::read_dir(dir.join("log"))
        .expect("list the log")
        .map(|e| e.expect("dir entry").path())
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?;
            let first = name.strip_suffix(".seg")?.parse().ok()?;
            Some((first, path))
        })
        .collect();
    found.sort();
    found
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).expect("segment metadata").len()
}

/// Where a segment's records end (its zeros written ahead follow).
fn records_len(path: &Path) -> u64 {
    let bytes = fs::read(path).expect("read the segment");
    let mut at = 0;
    while let Some(header) = bytes.get(at..at + 4) {
        let len = u32::from_le_bytes(header.try_into().expect("4 bytes")) as usize;
        if len == 0 || at + 8 + len > bytes.len() {
            break;
        }
        at += 8 + len;
    }
    at as u64
}

/// Whether the segment holds only zeros from `from` on.
fn zeros_from(path: &Path, from: u64) -> bool {
    let bytes = fs::read(path).expect("read the segment");
    bytes[from as usize..].iter().all(|b| *b == 0)
}

#[tokio::test]
async fn a_reopened_log_holds_its_entries_vote_and_purge_point() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = reopen(dir.path(), SEGMENT_SIZE);
    log.blocking_append(entries(1, 1..=20))
        .await
        .expect("append");
    for i in 21..=30 {
        log.blocking_append([entry(2, i)]).await.expect("append");
    }
    let vote = Vote::new_committed(2, 1);
    log.save_vote(&vote).await.expect("save vote");
    log.save_committed(Some(log_id(2, 25)))
        .await
        .expect("save committed");
    log.purge(log_id(1, 5)).await.expect("purge");
    let held = read_all(&mut log).await;
    assert_eq!(indexes(&held), (6..=30).collect::<Vec<_>>());
    // One handle at a time: a second open would write beside the first.
    assert!(matches!(
        open(dir.path(), SEGMENT_SIZE),
        Err(SegmentError::Locked { .. })
    ));
    drop(log);

    let mut log = reopen(dir.path(), SEGMENT_SIZE);
    assert_eq!(read_all(&mut log).await, held);
    assert_eq!(log.read_vote().await.expect("vote"), Some(vote));
    assert_eq!(
        log.read_committed().await.expect("committed"),
        Some(log_id(2, 25))
    );
    assert_eq!(
        log.get_log_state().await.expect("log state"),
        LogState::<TypeConfig> {
            last_purged_log_id: Some(log_id(1, 5)),
            last_log_id: Some(log_id(2, 30)),
        }
    );
    assert_eq!(log.last_log_id(), Some(log_id(2, 30)));
    assert!(
        log.try_get_log_entries(0..=5)
            .await
            .expect("read")
            .is_empty(),
        "nothing at or below the purge point"
    );

    // It goes on where it stopped, and a truncation holds over a reopen.
    log.blocking_append([entry(3, 31)]).await.expect("append");
    log.truncate(log_id(2, 28)).await.expect("truncate");
    log.blocking_append([entry(4, 28)]).await.expect("append");
    drop(log);
    let mut log = reopen(dir.path(), SEGMENT_SIZE);
    let held = read_all(&mut log).await;
    assert_eq!(indexes(&held), (6..=28).collect::<Vec<_>>());
    assert_eq!(held.last().map(|e| e.log_id), Some(log_id(4, 28)));

    // Sealed: nothing on disk in clear.
    for path in fs::read_dir(dir.path().join("log"))
        .expect("list the log")
        .map(|e| e.expect("dir entry").path())
    {
        let bytes = fs::read(&path).expect("read a log file");
        assert!(
            !bytes.windows(8).any(|w| w == b"command "),
            "clear text in {}",
            path.display()
        );
    }
}

/// How a crash may leave the end of the last segment.
#[derive(Clone, Copy, Debug)]
enum Tear {
    /// The last record cut in half.
    HalfRecord,
    /// Bytes after the last record that are no record (a length past the end).
    Garbage,
    /// Zeros after the last record, as a file system may show unwritten blocks.
    Zeros,
    /// The last record whole but for one byte.
    Checksum,
}

#[tokio::test]
async fn a_torn_end_is_cut_off_at_open_and_the_entries_before_it_survive() {
    for tear in [Tear::HalfRecord, Tear::Garbage, Tear::Zeros, Tear::Checksum] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = reopen(dir.path(), SEGMENT_SIZE);
        log.blocking_append(entries(1, 1..=9))
            .await
            .expect("append");
        let [(_, path)] = segments(dir.path()).try_into().expect("one segment");
        let nine = records_len(&path);
        log.blocking_append([entry(1, 10)]).await.expect("append");
        let ten = records_len(&path);
        assert!(
            file_len(&path) > ten && zeros_from(&path, ten),
            "zeros written ahead of the records"
        );
        drop(log);

        let (survivors, whole_len) = match tear {
            Tear::HalfRecord => {
                fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_len(nine + (ten - nine) / 2))
                    .expect("cut the last record");
                (9, nine)
            }
            Tear::Garbage => {
                let mut bytes = fs::read(&path).expect("read");
                let garbage = [0x40, 0, 0, 0, 1, 2, 3, 4, b'g', b'a', b'r'];
                bytes[ten as usize..][..garbage.len()].copy_from_slice(&garbage);
                fs::write(&path, bytes).expect("write");
                (10, ten)
            }
            Tear::Zeros => {
                let mut bytes = fs::read(&path).expect("read");
                bytes.truncate(ten as usize);
                bytes.resize(bytes.len() + 4096, 0);
                fs::write(&path, bytes).expect("write");
                (10, ten)
            }
            Tear::Checksum => {
                let mut bytes = fs::read(&path).expect("read");
                bytes[ten as usize - 1] ^= 0xff;
                fs::write(&path, bytes).expect("write");
                (9, nine)
            }
        };

        let mut log = reopen(dir.path(), SEGMENT_SIZE);
        assert_eq!(
            indexes(&read_all(&mut log).await),
            (1..=survivors).collect::<Vec<_>>(),
            "{tear:?}"
        );
        assert_eq!(
            records_len(&path),
            whole_len,
            "{tear:?}: cut at the last whole record"
        );
        assert!(zeros_from(&path, whole_len), "{tear:?}: nothing after it");
        // Appends go on after the survivors, and all of it reads back after another reopen.
        log.blocking_append(entries(2, survivors + 1..=12))
            .await
            .expect("append after the cut");
        drop(log);
        let mut log = reopen(dir.path(), SEGMENT_SIZE);
        assert_eq!(
            indexes(&read_all(&mut log).await),
            (1..=12).collect::<Vec<_>>(),
            "{tear:?}"
        );
    }
}

#[tokio::test]
async fn damage_inside_the_log_is_an_error_and_is_left_alone() {
    // A bad record followed by good ones, in the last segment.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = reopen(dir.path(), SEGMENT_SIZE);
    log.blocking_append(entries(1, 1..=4))
        .await
        .expect("append");
    let [(_, path)] = segments(dir.path()).try_into().expect("one segment");
    let four = records_len(&path);
    log.blocking_append(entries(1, 5..=10))
        .await
        .expect("append");
    drop(log);
    let mut bytes = fs::read(&path).expect("read");
    let len = bytes.len() as u64;
    bytes[four as usize + 12] ^= 0xff;
    fs::write(&path, &bytes).expect("write");
    match open(dir.path(), SEGMENT_SIZE).err() {
        Some(SegmentError::Corrupt { offset, .. }) => assert_eq!(offset, four),
        other => panic!("want a damaged segment, got {other:?}"),
    }
    assert_eq!(file_len(&path), len, "nothing cut");

    // A torn end of a segment that is not the last.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = reopen(dir.path(), 512);
    for i in 1..=12 {
        log.blocking_append([sized_entry(1, i, 100)])
            .await
            .expect("append");
    }
    drop(log);
    let found = segments(dir.path());
    assert!(found.len() >= 3, "{found:?}");
    let (_, first) = &found[0];
    fs::OpenOptions::new()
        .write(true)
        .open(first)
        .and_then(|f| f.set_len(records_len(first) - 20))
        .expect("cut the first segment");
    let err = open(dir.path(), 512).err().expect("refused");
    assert!(
        matches!(&err, SegmentError::Corrupt { path, .. } if path == first),
        "{err}"
    );
}

#[tokio::test]
async fn segments_roll_and_a_purge_deletes_only_whole_old_ones() {
    const SIZE: u64 = 1024;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = reopen(dir.path(), SIZE);
    // Batches of three, so segments also roll inside one append.
    for batch in (1..=40u64).collect::<Vec<_>>().chunks(3) {
        let batch: Vec<Entry> = batch.iter().map(|i| sized_entry(1, *i, 200)).collect();
        log.blocking_append(batch).await.expect("append");
    }
    let before = segments(dir.path());
    assert!(before.len() >= 8, "{before:?}");
    assert_eq!(before[0].0, 1);
    for (_, path) in &before {
        assert!(file_len(path) <= SIZE, "{} is too large", path.display());
    }
    assert_eq!(
        indexes(&read_all(&mut log).await),
        (1..=40).collect::<Vec<_>>()
    );

    // A segment goes only when all of it is at or below the purge point.
    log.purge(log_id(1, 17)).await.expect("purge");
    let firsts: Vec<u64> = before.iter().map(|(first, _)| *first).collect();
    let kept: Vec<u64> = firsts
        .iter()
        .enumerate()
        .filter(|(k, _)| firsts.get(k + 1).is_none_or(|next| *next > 18))
        .map(|(_, first)| *first)
        .collect();
    let after: Vec<u64> = segments(dir.path()).iter().map(|(f, _)| *f).collect();
    assert_eq!(after, kept);
    assert!(
        after[0] <= 17,
        "the segment holding 17 and 18 stays: {after:?}"
    );
    assert!(log
        .try_get_log_entries(..=17)
        .await
        .expect("read")
        .is_empty());
    assert_eq!(
        indexes(&read_all(&mut log).await),
        (18..=40).collect::<Vec<_>>()
    );
    drop(log);
    let mut log = reopen(dir.path(), SIZE);
    assert_eq!(
        indexes(&read_all(&mut log).await),
        (18..=40).collect::<Vec<_>>()
    );

    // A truncation across segments removes the later ones.
    log.truncate(log_id(1, 30)).await.expect("truncate");
    let after: Vec<u64> = segments(dir.path()).iter().map(|(f, _)| *f).collect();
    assert!(after.iter().all(|first| *first < 30), "{after:?}");
    assert_eq!(
        indexes(&read_all(&mut log).await),
        (18..=29).collect::<Vec<_>>()
    );

    // A purge past the last entry leaves no segment; the next append starts one.
    log.purge(log_id(1, 50)).await.expect("purge all");
    assert!(segments(dir.path()).is_empty());
    assert_eq!(
        log.get_log_state().await.expect("log state").last_log_id,
        Some(log_id(1, 50))
    );
    log.blocking_append([entry(2, 51)]).await.expect("append");
    assert_eq!(
        segments(dir.path())
            .iter()
            .map(|(f, _)| *f)
            .collect::<Vec<_>>(),
        vec![51]
    );
    drop(log);
    let mut log = reopen(dir.path(), SIZE);
    assert_eq!(indexes(&read_all(&mut log).await), vec![51]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_complete_in_the_order_of_their_appends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = reopen(dir.path(), 4096);
    let (tx, rx) = std::sync::mpsc::channel();
    for i in 1..=300 {
        let tx = tx.clone();
        log.append_then(
            [entry(1, i)],
            Box::new(move |result| {
                let _ = tx.send((i, result.is_ok()));
            }),
        )
        .expect("append");
    }
    // Out of order: refused, and its callback says so.
    let refused = {
        let tx = tx.clone();
        log.append_then(
            [entry(1, 500)],
            Box::new(move |result| {
                let _ = tx.send((500, result.is_ok()));
            }),
        )
    };
    assert!(
        matches!(refused, Err(SegmentError::OutOfOrder { index: 500, .. })),
        "{refused:?}"
    );
    drop(tx);
    let done: Vec<(u64, bool)> = tokio::task::spawn_blocking(move || {
        std::iter::from_fn(|| rx.recv_timeout(Duration::from_secs(20)).ok()).collect()
    })
    .await
    .expect("collect callbacks");
    let (refused, done): (Vec<_>, Vec<_>) = done.into_iter().partition(|(i, _)| *i == 500);
    assert_eq!(refused, [(500, false)]);
    assert_eq!(done, (1..=300).map(|i| (i, true)).collect::<Vec<_>>());
}

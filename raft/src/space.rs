//! Room on the disk under a database's directory (the Raft store's; the agent's task
//! database uses it too). A change is refused while the filesystem has less than
//! [`RESERVE`] free, and the log store holds an append until there is room again, so
//! nothing is ever half-written to a full disk: sled 0.34 acknowledges writes on a full
//! disk, then cannot open its database again (the reliability suite found it).
//!
//! Knows only a directory and a number of bytes; not what is written.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Free space the Raft directory's filesystem keeps: writes stop below it.
pub const RESERVE: u64 = 16 << 20;
/// How often a held append looks again, and how often it says it is still waiting.
const RECHECK: Duration = Duration::from_millis(500);
const REPORT: Duration = Duration::from_secs(30);

/// The filesystem under the Raft directory is (nearly) full.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "disk full: {dir} has {free_mib} MiB free and Shoal keeps {reserve_mib} MiB free so that \
     its databases are never half-written, so nothing was written; free space on that \
     filesystem and retry",
    free_mib = free / (1 << 20),
    reserve_mib = reserve / (1 << 20)
)]
pub struct NoSpace {
    pub dir: PathBuf,
    pub free: u64,
    pub reserve: u64,
}

/// The free space of one directory's filesystem, against a reserve.
#[derive(Clone, Debug)]
pub struct Space {
    dir: PathBuf,
    reserve: u64,
}

impl Space {
    pub fn new(dir: &Path, reserve: u64) -> Self {
        Self {
            dir: dir.to_path_buf(),
            reserve,
        }
    }

    /// The directory whose filesystem is measured.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes an unprivileged writer may still use there; `None` when it cannot be told.
    pub fn free(&self) -> Option<u64> {
        free_bytes(&self.dir)
    }

    /// Refused when below the reserve. When the free space cannot be told, the write goes
    /// ahead: a failing `statvfs` is no reason to stop a cluster.
    pub fn check(&self) -> Result<(), NoSpace> {
        match self.free() {
            Some(free) if free < self.reserve => Err(NoSpace {
                dir: self.dir.clone(),
                free,
                reserve: self.reserve,
            }),
            _ => Ok(()),
        }
    }

    /// Return once there is room, saying now and then why it waits.
    pub async fn wait_for_room(&self) {
        let mut said: Option<Instant> = None;
        while let Err(full) = self.check() {
            if said.is_none_or(|t| t.elapsed() >= REPORT) {
                tracing::warn!("holding a Raft log append until there is room: {full}");
                said = Some(Instant::now());
            }
            tokio::time::sleep(RECHECK).await;
        }
        if said.is_some() {
            tracing::info!(dir = %self.dir.display(), "room on disk again: Raft log appends go on");
        }
    }
}

#[allow(unsafe_code)]
fn free_bytes(dir: &Path) -> Option<u64> {
    let path = CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: `path` is a valid NUL-terminated string and `stat` a plain-data struct that
    // statvfs fills; it is read only when the call succeeds.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut stat) };
    (rc == 0).then(|| stat.f_bavail.saturating_mul(stat.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reserve_larger_than_the_disk_refuses_and_says_where() {
        let dir = tempfile::tempdir().expect("tempdir");
        let free = Space::new(dir.path(), 0).free().expect("statvfs answers");
        assert!(free > 0);
        assert_eq!(Space::new(dir.path(), 0).check(), Ok(()));
        let err = Space::new(dir.path(), u64::MAX)
            .check()
            .expect_err("refused");
        let said = err.to_string();
        assert!(
            said.starts_with("disk full: ") && said.contains(&dir.path().display().to_string()),
            "{said}"
        );
        // A directory that is not there cannot be measured: no refusal.
        assert_eq!(
            Space::new(Path::new("/nonexistent/shoal"), u64::MAX).check(),
            Ok(())
        );
    }
}

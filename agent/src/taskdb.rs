//! The agent's local task database: which tasks this node runs and how far each got, so a
//! restarted `shoald` picks its tasks (and their containers) up where it left off.
//!
//! It owns one sled database at `<data_dir>/tasks`, keyed by task id. Each value is the
//! prost encoding of the task with its `status` field set to the agent's own latest status.
//! Every write is flushed before it returns; registry credentials are never written. With
//! the node's data key every value is sealed (a task's environment never lies on disk in
//! clear); a database records that it is sealed when it is made, so one made before
//! keeps working in clear. It knows nothing about executors or managers.

use std::path::{Path, PathBuf};

use prost::Message;
use shoal_pki::vault::DataKey;
use shoal_proto::{Task, TaskStatus};
use shoal_raft::space::{NoSpace, Space, RESERVE};

/// What the task database failed to do.
#[derive(Debug, thiserror::Error)]
pub enum TaskDbError {
    #[error("opening task database {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error("task database: {op} task {task_id}: {source}")]
    Sled {
        op: &'static str,
        task_id: String,
        #[source]
        source: sled::Error,
    },
    #[error("task database: decoding task {task_id}: {source}")]
    Decode {
        task_id: String,
        #[source]
        source: prost::DecodeError,
    },
    #[error("task database: task {0} does not open with this node's data key")]
    Sealed(String),
    #[error("task database {0} is sealed and this node has no data key to open it")]
    NoKey(PathBuf),
    #[error("task database: {0}")]
    NoSpace(#[from] NoSpace),
}

/// The local task database. Clones share the same database.
#[derive(Clone, Debug)]
pub struct TaskDb {
    db: sled::Db,
    /// Seals values when the database is sealed.
    key: Option<DataKey>,
    /// Writes are refused rather than half-made on a (nearly) full disk.
    space: Space,
}

const KEY_SEALED: &[u8] = b"sealed";

impl TaskDb {
    /// Opens (creating if needed) the database at `<data_dir>/tasks`, sealed with `key`
    /// when it is new or was made sealed.
    pub fn open(data_dir: impl AsRef<Path>, key: Option<DataKey>) -> Result<Self, TaskDbError> {
        let path = data_dir.as_ref().join("tasks");
        let open_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| TaskDbError::Open { path, source }
        };
        let db = sled::open(&path).map_err(open_err(&path))?;
        let meta = db.open_tree("meta").map_err(open_err(&path))?;
        let sealed = meta.get(KEY_SEALED).map_err(open_err(&path))?.is_some();
        let key = match (sealed, key) {
            (true, None) => return Err(TaskDbError::NoKey(path)),
            (true, Some(key)) => Some(key),
            (false, Some(key)) if db.is_empty() => {
                meta.insert(KEY_SEALED, b"1".as_slice())
                    .map_err(open_err(&path))?;
                Some(key)
            }
            (false, _) => None,
        };
        let space = Space::new(&path, RESERVE);
        Ok(Self { db, key, space })
    }

    /// Keep `reserve` bytes free instead of [`RESERVE`] (tests of a full disk).
    pub fn with_reserve(mut self, reserve: u64) -> Self {
        let dir = self.space.dir().to_path_buf();
        self.space = Space::new(&dir, reserve);
        self
    }

    /// Records `task` with the agent's latest `status` for it, durably.
    pub async fn put(&self, task: &Task, status: &TaskStatus) -> Result<(), TaskDbError> {
        let mut stored = task.clone();
        stored.status = Some(status.clone());
        // Registry credentials stay in memory: a restarted agent pulls with the ones its
        // next assignments bring.
        if let Some(c) = stored.spec.as_mut().and_then(|s| s.container.as_mut()) {
            c.registry_auth = None;
        }
        self.space.check()?;
        let mut value = stored.encode_to_vec();
        if let Some(key) = &self.key {
            value = key
                .seal(&value)
                .map_err(|_| TaskDbError::Sealed(task.id.clone()))?;
        }
        self.db
            .insert(task.id.as_bytes(), value)
            .map_err(sled_err("writing", &task.id))?;
        self.flush(&task.id).await
    }

    /// Flush on a blocking thread. Not sled's `flush_async`: concurrent calls of it park all
    /// of sled 0.34's IO threads and hang (seen with 50 tasks starting at once).
    async fn flush(&self, task_id: &str) -> Result<(), TaskDbError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .map_err(|e| sled::Error::ReportableBug(format!("flush thread failed: {e}")))
            .and_then(|r| r)
            .map_err(sled_err("flushing", task_id))?;
        Ok(())
    }

    /// The task and the agent's latest status for it.
    pub fn get(&self, task_id: &str) -> Result<Option<(Task, TaskStatus)>, TaskDbError> {
        let value = self
            .db
            .get(task_id.as_bytes())
            .map_err(|source| TaskDbError::Sled {
                op: "reading",
                task_id: task_id.to_string(),
                source,
            })?;
        value.map(|v| self.decode(task_id, &v)).transpose()
    }

    /// Every task, in task id order. An entry that cannot be decoded is skipped with a
    /// warning: one bad record must not stop the agent from starting.
    pub fn list(&self) -> Result<Vec<(Task, TaskStatus)>, TaskDbError> {
        let mut out = Vec::new();
        for entry in self.db.iter() {
            let (key, value) = entry.map_err(|source| TaskDbError::Sled {
                op: "listing",
                task_id: String::new(),
                source,
            })?;
            let task_id = String::from_utf8_lossy(&key).into_owned();
            match self.decode(&task_id, &value) {
                Ok(t) => out.push(t),
                Err(e) => tracing::warn!("{e}; skipping it"),
            }
        }
        Ok(out)
    }

    /// Forgets a task, durably. Forgetting an unknown task is not an error.
    pub async fn remove(&self, task_id: &str) -> Result<(), TaskDbError> {
        self.space.check()?;
        self.db
            .remove(task_id.as_bytes())
            .map_err(sled_err("removing", task_id))?;
        self.flush(task_id).await
    }
}

fn sled_err(op: &'static str, task_id: &str) -> impl FnOnce(sled::Error) -> TaskDbError {
    let task_id = task_id.to_string();
    move |source| TaskDbError::Sled {
        op,
        task_id,
        source,
    }
}

impl TaskDb {
    fn decode(&self, task_id: &str, bytes: &[u8]) -> Result<(Task, TaskStatus), TaskDbError> {
        let opened;
        let bytes = match &self.key {
            Some(key) => {
                opened = key
                    .open(bytes)
                    .map_err(|_| TaskDbError::Sealed(task_id.to_string()))?;
                &opened[..]
            }
            None => bytes,
        };
        let task = Task::decode(bytes).map_err(|source| TaskDbError::Decode {
            task_id: task_id.to_string(),
            source,
        })?;
        let status = task.status.clone().unwrap_or_default();
        Ok((task, status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::fake::test_task;
    use shoal_proto::TaskState;

    #[tokio::test]
    async fn a_full_disk_refuses_writes_and_keeps_what_was_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = TaskDb::open(dir.path(), None).expect("open");
        db.put(&test_task("a", 1, "img", &[]), &TaskStatus::default())
            .await
            .expect("put with room");
        // No reserve can be met: as on a full disk.
        let full = db.clone().with_reserve(u64::MAX);
        let err = full
            .put(&test_task("b", 1, "img", &[]), &TaskStatus::default())
            .await
            .expect_err("refused");
        assert!(err.to_string().contains("disk full"), "{err}");
        let err = full.remove("a").await.expect_err("refused");
        assert!(err.to_string().contains("disk full"), "{err}");
        let ids: Vec<String> = db
            .list()
            .expect("list")
            .into_iter()
            .map(|(t, _)| t.id)
            .collect();
        assert_eq!(
            ids,
            vec!["a".to_string()],
            "nothing half-written, nothing lost"
        );
    }

    #[tokio::test]
    async fn put_get_list_remove_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let running = TaskStatus {
            state: TaskState::Running as i32,
            container_id: "c1".to_string(),
            ..Default::default()
        };
        {
            let db = TaskDb::open(dir.path(), None).expect("open");
            db.put(&test_task("a", 1, "img", &[]), &running)
                .await
                .expect("put");
            db.put(&test_task("b", 2, "img", &[]), &TaskStatus::default())
                .await
                .expect("put");
            db.remove("b").await.expect("remove");
            db.remove("never-there").await.expect("remove unknown");
        }
        let db = TaskDb::open(dir.path(), None).expect("reopen");
        let (task, status) = db.get("a").expect("get").expect("present");
        assert_eq!(task.id, "a");
        assert_eq!(status, running);
        assert_eq!(task.status.as_ref(), Some(&running));
        assert!(db.get("b").expect("get").is_none());
        let all = db.list().expect("list");
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].0.slot, 1);
    }

    /// With the node's data key nothing of a task (its environment included) is on disk
    /// in clear; the database reads back with the key and refuses to open without it.
    #[tokio::test]
    async fn a_sealed_database_holds_no_clear_text() {
        let dir = tempfile::tempdir().expect("tempdir");
        let shoal_pki::vault::Keys::Open(key) =
            shoal_pki::vault::load_or_create(dir.path()).expect("keys")
        else {
            panic!("new keys are open");
        };
        let mut task = test_task("a", 1, "img", &[]);
        if let Some(c) = task.spec.as_mut().and_then(|s| s.container.as_mut()) {
            c.env = vec!["TOKEN=plain-env-needle".into()];
        }
        {
            let db = TaskDb::open(dir.path(), Some(key.clone())).expect("open");
            db.put(&task, &TaskStatus::default()).await.expect("put");
        }
        let mut stack = vec![dir.path().join("tasks")];
        let mut scanned = 0;
        while let Some(path) = stack.pop() {
            if path.is_dir() {
                stack.extend(
                    std::fs::read_dir(&path)
                        .expect("dir")
                        .map(|e| e.expect("entry").path()),
                );
            } else {
                let bytes = std::fs::read(&path).expect("file");
                scanned += bytes.len();
                assert!(
                    !bytes.windows(9).any(|w| w == b"env-needl"),
                    "clear text in {}",
                    path.display()
                );
            }
        }
        assert!(scanned > 0);
        let db = TaskDb::open(dir.path(), Some(key)).expect("reopen");
        let (read, _) = db.get("a").expect("get").expect("present");
        assert_eq!(read.spec, task.spec);
        drop(db);
        assert!(matches!(
            TaskDb::open(dir.path(), None),
            Err(TaskDbError::NoKey(_))
        ));
    }
}

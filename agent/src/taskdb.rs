//! The agent's local task database: which tasks this node runs and how far each got, so a
//! restarted `shoald` picks its tasks (and their containers) up where it left off.
//!
//! It owns one sled database at `<data_dir>/tasks`, keyed by task id. Each value is the
//! prost encoding of the task with its `status` field set to the agent's own latest status.
//! Every write is flushed before it returns; registry credentials are never written. It
//! knows nothing about executors or managers.

use std::path::{Path, PathBuf};

use prost::Message;
use shoal_proto::{Task, TaskStatus};

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
}

/// The local task database. Clones share the same database.
#[derive(Clone, Debug)]
pub struct TaskDb {
    db: sled::Db,
}

impl TaskDb {
    /// Opens (creating if needed) the database at `<data_dir>/tasks`.
    pub fn open(data_dir: impl AsRef<Path>) -> Result<Self, TaskDbError> {
        let path = data_dir.as_ref().join("tasks");
        let db = sled::open(&path).map_err(|source| TaskDbError::Open { path, source })?;
        Ok(Self { db })
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
        self.db
            .insert(task.id.as_bytes(), stored.encode_to_vec())
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
        value.map(|v| decode(task_id, &v)).transpose()
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
            match decode(&task_id, &value) {
                Ok(t) => out.push(t),
                Err(e) => tracing::warn!("{e}; skipping it"),
            }
        }
        Ok(out)
    }

    /// Forgets a task, durably. Forgetting an unknown task is not an error.
    pub async fn remove(&self, task_id: &str) -> Result<(), TaskDbError> {
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

fn decode(task_id: &str, bytes: &[u8]) -> Result<(Task, TaskStatus), TaskDbError> {
    let task = Task::decode(bytes).map_err(|source| TaskDbError::Decode {
        task_id: task_id.to_string(),
        source,
    })?;
    let status = task.status.clone().unwrap_or_default();
    Ok((task, status))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::fake::test_task;
    use shoal_proto::TaskState;

    #[tokio::test]
    async fn put_get_list_remove_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let running = TaskStatus {
            state: TaskState::Running as i32,
            container_id: "c1".to_string(),
            ..Default::default()
        };
        {
            let db = TaskDb::open(dir.path()).expect("open");
            db.put(&test_task("a", 1, "img", &[]), &running)
                .await
                .expect("put");
            db.put(&test_task("b", 2, "img", &[]), &TaskStatus::default())
                .await
                .expect("put");
            db.remove("b").await.expect("remove");
            db.remove("never-there").await.expect("remove unknown");
        }
        let db = TaskDb::open(dir.path()).expect("reopen");
        let (task, status) = db.get("a").expect("get").expect("present");
        assert_eq!(task.id, "a");
        assert_eq!(status, running);
        assert_eq!(task.status.as_ref(), Some(&running));
        assert!(db.get("b").expect("get").is_none());
        let all = db.list().expect("list");
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].0.slot, 1);
    }
}

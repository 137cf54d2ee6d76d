//! Batches task status reports from every session into one store transaction.
//!
//! No timer: while one transaction commits, the reports that arrive queue up and go into
//! the next one, so the batch grows with the load and an idle cluster adds no delay.

use std::collections::HashMap;

use shoal_proto::{TaskState, TaskStatusUpdate};
use tokio::sync::{mpsc, oneshot};

use super::DispatcherError;
use crate::store::{Object, Store, StoreError};

/// At most this many reports go into one transaction.
const MAX_BATCH: usize = 1024;

struct Request {
    node_id: String,
    updates: Vec<TaskStatusUpdate>,
    done: oneshot::Sender<Result<(), String>>,
}

/// Where sessions submit status reports.
pub struct Handle {
    tx: mpsc::Sender<Request>,
}

impl Handle {
    /// Submit `node_id`'s reports; returns once they are committed (or refused).
    pub async fn submit(
        &self,
        node_id: String,
        updates: Vec<TaskStatusUpdate>,
    ) -> Result<(), DispatcherError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Request {
                node_id,
                updates,
                done,
            })
            .await
            .map_err(|_| DispatcherError::Closed)?;
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(DispatcherError::Store(StoreError::Propose(message))),
            Err(_) => Err(DispatcherError::Closed),
        }
    }
}

pub fn spawn(store: Store) -> Handle {
    let (tx, mut rx) = mpsc::channel::<Request>(4096);
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            let mut count = batch[0].updates.len();
            while count < MAX_BATCH {
                match rx.try_recv() {
                    Ok(more) => {
                        count += more.updates.len();
                        batch.push(more);
                    }
                    Err(_) => break,
                }
            }
            let result = write(&store, &batch).await.map_err(|e| e.to_string());
            for request in batch {
                let _ = request.done.send(result.clone());
            }
        }
    });
    Handle { tx }
}

/// A task reported running for the first time: how long since it was made.
fn record_scheduling_delay(task: &shoal_proto::Task) {
    let Some(created_ms) = task.meta.as_ref().map(|m| m.created_at_ms) else {
        return;
    };
    let now_ms = crate::clock::now_ms();
    if created_ms > 0 && now_ms >= created_ms {
        crate::metrics::recorded()
            .scheduling_delay
            .observe((now_ms - created_ms) as f64 / 1000.0);
    }
}

async fn write(store: &Store, batch: &[Request]) -> Result<(), StoreError> {
    store
        .update(|tx| {
            // The newest report per task wins.
            let mut latest: HashMap<&str, (&str, &TaskStatusUpdate)> = HashMap::new();
            for request in batch {
                for update in &request.updates {
                    latest.insert(update.task_id.as_str(), (request.node_id.as_str(), update));
                }
            }
            for (task_id, (node_id, update)) in latest {
                let (Some(mut task), Some(status)) = (tx.task(task_id), update.status.clone())
                else {
                    continue; // deleted meanwhile, or an empty report
                };
                // A node reports only on its own tasks, and a task never moves backwards.
                if task.node_id != node_id {
                    continue;
                }
                let new_state = TaskState::try_from(status.state).unwrap_or(TaskState::New);
                if new_state < task.state() || task.status.as_ref() == Some(&status) {
                    continue;
                }
                if new_state == TaskState::Running && task.state() < TaskState::Running {
                    record_scheduling_delay(&task);
                }
                task.status = Some(status);
                tx.update(Object::Task(task))?;
            }
            Ok(())
        })
        .await
}

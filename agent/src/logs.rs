//! The agent's side of `service logs`: within a session, listen for the managers' log
//! subscriptions and publish the output of this node's matching containers.
//!
//! Each subscription gets its own publish stream, so a slow reader holds back only its own
//! lines. The first message on it is empty (it tells the broker the node answered); without
//! `follow` the last one has `close` set once every matching container's output has been
//! read. A following subscription also picks up tasks that start on this node later, and
//! lasts until the manager closes it or the session ends.
//!
//! It reads containers through the [`Executor`] and tasks through the worker's
//! [`TaskFeed`]; it does not know about Docker.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use shoal_proto::{
    ListenSubscriptionsRequest, LogBrokerClient, LogContext, LogMessage, LogStream,
    LogSubscription, PublishLogsMessage, Task, TaskState, TaskStatus,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::executor::{Executor, LogLine, LogRead};
use crate::worker::TaskFeed;

/// Lines sent in one publish message at most.
const BATCH: usize = 256;
/// Bytes of lines in one publish message at most (past the first line): gRPC refuses
/// messages over 4 MiB, and docker splits long lines at 16 KiB.
const BATCH_BYTES: usize = 512 * 1024;
/// First wait before listening again after the listener broke; doubles up to 2 s.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// What publishers share.
#[derive(Clone)]
pub struct Publisher {
    client: LogBrokerClient<Channel>,
    node_id: String,
    executor: Arc<dyn Executor>,
}

impl Publisher {
    pub fn new(channel: Channel, node_id: String, executor: Arc<dyn Executor>) -> Self {
        Self {
            client: LogBrokerClient::new(channel),
            node_id,
            executor,
        }
    }

    /// Listen for subscriptions until `cancel` (the session's end), listening again with
    /// backoff whenever the listener breaks.
    pub async fn serve(self, feed: TaskFeed, cancel: CancellationToken) {
        let mut backoff = MIN_BACKOFF;
        while !cancel.is_cancelled() {
            match self.listen(&feed, &cancel).await {
                Ok(()) => backoff = MIN_BACKOFF,
                Err(status) => tracing::debug!(error = %status, "log listener broke"),
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn listen(
        &self,
        feed: &TaskFeed,
        cancel: &CancellationToken,
    ) -> Result<(), tonic::Status> {
        let mut subscriptions = self
            .client
            .clone()
            .listen_subscriptions(ListenSubscriptionsRequest {
                node_id: self.node_id.clone(),
            })
            .await?
            .into_inner();
        // Publishers end with the listener: the broker asks again on the next one.
        let listening = cancel.child_token();
        let _stop = listening.clone().drop_guard();
        let mut running: HashMap<String, CancellationToken> = HashMap::new();
        loop {
            let subscription = tokio::select! {
                _ = listening.cancelled() => return Ok(()),
                s = subscriptions.message() => match s? {
                    Some(s) => s,
                    None => return Ok(()),
                },
            };
            running.retain(|_, token| !token.is_cancelled());
            if subscription.close {
                if let Some(token) = running.remove(&subscription.id) {
                    token.cancel();
                }
                continue;
            }
            let token = listening.child_token();
            if let Some(old) = running.insert(subscription.id.clone(), token.clone()) {
                old.cancel();
            }
            tokio::spawn(self.clone().publish(subscription, feed.clone(), token));
        }
    }

    /// One subscription's publish stream.
    async fn publish(
        self,
        subscription: LogSubscription,
        mut feed: TaskFeed,
        token: CancellationToken,
    ) {
        let id = subscription.id.clone();
        let (tx, rx) = mpsc::channel::<PublishLogsMessage>(4);
        let mut client = self.client.clone();
        let call = tokio::spawn(async move { client.publish_logs(ReceiverStream::new(rx)).await });
        let message = |messages: Vec<LogMessage>, close: bool, error: String| PublishLogsMessage {
            node_id: self.node_id.clone(),
            subscription_id: id.clone(),
            messages,
            close,
            error,
        };
        let options = subscription.options.unwrap_or_default();
        let selector = subscription.selector.clone().unwrap_or_default();
        let wanted = |task: &Task| {
            selector.task_ids.contains(&task.id) || selector.service_ids.contains(&task.service_id)
        };
        let first_read = LogRead {
            follow: options.follow,
            tail: u64::try_from(options.tail).ok(),
            since_ns: options.since_ns,
        };
        // Containers that start after the subscription: everything they write is new.
        let later_read = LogRead {
            tail: None,
            ..first_read.clone()
        };

        let (lines_tx, mut lines_rx) = mpsc::channel::<Result<LogMessage, String>>(BATCH);
        let mut reading: HashSet<String> = HashSet::new();
        let mut first_scan = true;
        let mut lines_tx = Some(lines_tx);
        if tx
            .send(message(Vec::new(), false, String::new()))
            .await
            .is_err()
        {
            return;
        }
        let mut errors: Vec<String> = Vec::new();
        loop {
            // Start readers for matching containers not read yet.
            if let Some(sender) = &lines_tx {
                for (task, status) in feed.tasks() {
                    if !wanted(&task) || !started(&status) || reading.contains(&task.id) {
                        continue;
                    }
                    reading.insert(task.id.clone());
                    let read = if first_scan { &first_read } else { &later_read };
                    tokio::spawn(read_container(
                        self.executor.clone(),
                        context(&task, &self.node_id),
                        status,
                        read.clone(),
                        sender.clone(),
                        token.clone(),
                    ));
                }
                first_scan = false;
                if !options.follow {
                    // Readers hold the remaining senders: the channel ends with the last.
                    lines_tx = None;
                }
            }
            tokio::select! {
                _ = token.cancelled() => break,
                changed = feed.changed(), if lines_tx.is_some() => if !changed { break },
                line = lines_rx.recv() => match line {
                    Some(Ok(first)) => {
                        let mut bytes = first.data.len();
                        let mut batch = vec![first];
                        while batch.len() < BATCH && bytes < BATCH_BYTES {
                            match lines_rx.try_recv() {
                                Ok(Ok(m)) => {
                                    bytes += m.data.len();
                                    batch.push(m);
                                }
                                Ok(Err(e)) => errors.push(e),
                                Err(_) => break,
                            }
                        }
                        if tx.send(message(batch, false, String::new())).await.is_err() {
                            break;
                        }
                    }
                    Some(Err(e)) => errors.push(e),
                    None => {
                        let _ = tx.send(message(Vec::new(), true, errors.join("; "))).await;
                        break;
                    }
                },
            }
        }
        drop(tx);
        token.cancel();
        if let Ok(Err(status)) = call.await {
            tracing::debug!(subscription = %subscription.id, error = %status, "publishing logs");
        }
    }
}

/// Whether the task's container has been started: before that, reading its logs would end
/// at once, even when following.
fn started(status: &TaskStatus) -> bool {
    let state = TaskState::try_from(status.state).unwrap_or(TaskState::New);
    let health_wait = state == TaskState::Starting && !status.health.is_empty();
    !status.container_id.is_empty() && (state >= TaskState::Running || health_wait)
}

fn context(task: &Task, node_id: &str) -> LogContext {
    LogContext {
        service_id: task.service_id.clone(),
        node_id: node_id.to_string(),
        task_id: task.id.clone(),
        service_name: task.service_name.clone(),
        node_name: String::new(),
        slot: task.slot,
    }
}

/// Reads one container's output into `lines` until it ends, `token` is cancelled or the
/// publisher is gone.
async fn read_container(
    executor: Arc<dyn Executor>,
    context: LogContext,
    status: TaskStatus,
    read: LogRead,
    lines: mpsc::Sender<Result<LogMessage, String>>,
    token: CancellationToken,
) {
    let task_id = context.task_id.clone();
    let mut stream = match executor.logs(&status.container_id, &read).await {
        Ok(s) => s,
        Err(e) => {
            let _ = lines.send(Err(format!("task {task_id}: {e}"))).await;
            return;
        }
    };
    loop {
        let line = tokio::select! {
            _ = token.cancelled() => return,
            line = stream.next() => line,
        };
        let message = match line {
            None => return,
            Some(Ok(line)) => Ok(log_message(&context, line)),
            Some(Err(e)) => Err(format!("task {task_id}: {e}")),
        };
        let failed = message.is_err();
        if lines.send(message).await.is_err() || failed {
            return;
        }
    }
}

fn log_message(context: &LogContext, line: LogLine) -> LogMessage {
    LogMessage {
        context: Some(context.clone()),
        timestamp_ns: line.timestamp_ns,
        stream: if line.stderr {
            LogStream::Stderr as i32
        } else {
            LogStream::Stdout as i32
        },
        data: line.data,
    }
}

#[cfg(test)]
mod tests;

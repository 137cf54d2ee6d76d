//! A service's or a node's recent log lines, for the page: the last lines of each of its
//! tasks, oldest first, through the Logs API (not following).

use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;
use shoal_dockerapi::backend::call;
use shoal_dockerapi::Backend;
use shoal_proto::{ListTasksRequest, LogOptions, SubscribeLogsRequest, TaskState};

/// A node's lines come from at most this many of its tasks.
const MAX_TASKS: usize = 8;

/// How long one excerpt may take: a node that does not answer gives a warning instead.
const WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Default, Serialize)]
pub struct Excerpt {
    pub lines: Vec<Line>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Line {
    pub time_ns: i64,
    /// `service.slot` (or `service` on a global service's task) and the node.
    pub task: String,
    pub node: String,
    pub stderr: bool,
    pub text: String,
}

/// What the page asks for.
pub enum Of {
    Service(String),
    Node(String),
}

/// The last `tail` lines of each task of `of`.
pub async fn recent(backend: &Backend, of: &Of, tail: i64) -> Result<Excerpt, tonic::Status> {
    let targets = match of {
        Of::Service(service) => vec![service.clone()],
        Of::Node(node) => {
            let mut control = backend.control.clone();
            let tasks = control
                .list_tasks(call(ListTasksRequest {
                    node: node.clone(),
                    ..Default::default()
                }))
                .await?
                .into_inner()
                .tasks;
            tasks
                .into_iter()
                .filter(|t| t.desired() <= TaskState::Running)
                .take(MAX_TASKS)
                .map(|t| t.id)
                .collect()
        }
    };
    let mut excerpt = Excerpt::default();
    for target in targets {
        read(backend, &target, tail, &mut excerpt).await;
    }
    excerpt.lines.sort_by_key(|l| l.time_ns);
    Ok(excerpt)
}

async fn read(backend: &Backend, target: &str, tail: i64, into: &mut Excerpt) {
    let mut logs = backend.logs.clone();
    let request = SubscribeLogsRequest {
        target: target.to_string(),
        options: Some(LogOptions {
            follow: false,
            tail,
            since_ns: 0,
        }),
    };
    let mut stream = match logs.subscribe_logs(call(request)).await {
        Ok(s) => s.into_inner(),
        Err(status) => {
            into.warnings.push(status.message().to_string());
            return;
        }
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let next = match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(next) => next,
            Err(_) => {
                into.warnings
                    .push(format!("{target}: some lines did not come within {WAIT:?}"));
                return;
            }
        };
        match next {
            None => return,
            Some(Err(status)) => {
                into.warnings.push(status.message().to_string());
                return;
            }
            Some(Ok(message)) => {
                if !message.warning.is_empty() {
                    into.warnings.push(message.warning);
                }
                for m in message.messages {
                    let context = m.context.clone().unwrap_or_default();
                    let task = if context.slot > 0 {
                        format!("{}.{}", context.service_name, context.slot)
                    } else {
                        context.service_name.clone()
                    };
                    into.lines.push(Line {
                        time_ns: m.timestamp_ns,
                        task,
                        node: context.node_name,
                        stderr: m.stream == shoal_proto::LogStream::Stderr as i32,
                        text: String::from_utf8_lossy(&m.data).into_owned(),
                    });
                }
            }
        }
    }
}

//! The log broker: carries `service logs` from the agents that hold the containers' output
//! to the CLI, through the leader.
//!
//! A subscription from the CLI ([`Logs`](shoal_proto::Logs)`.SubscribeLogs`) names a
//! service or a task. The broker resolves it against the store and sends it to every node
//! concerned over the listener that node's agent keeps open within its session
//! (`LogBroker.ListenSubscriptions`); each node answers on a stream of its own
//! (`LogBroker.PublishLogs`) and the broker relays the lines, naming their service and node.
//!
//! It never waits on a node that cannot answer: a node that is down or not connected, that
//! does not answer within [`FIRST_ANSWER`], whose listener drops, or that the heartbeat
//! loop marks down, is reported once in the stream as a warning, and a subscription that
//! does not follow ends without it. A following subscription sends itself again to a node
//! whose listener comes back, from the last line it relayed; it ends with an error when
//! this manager stops leading (agents then talk to the new leader).
//!
//! Subscriptions live as long as the CLI's stream: nothing is written to the store.

mod driver;
mod service;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal_proto::{LogMessage, LogSelector, LogSubscription, NodeState, SubscribeLogsRequest};
use shoal_raft::Leadership;
use tokio::sync::{mpsc, watch};

use crate::store::{Lookup, ReadTx, Store};

pub use service::{LogBrokerApi, LogsApi};

/// How long a subscribed node has to send its first message before it is reported as not
/// answering (its session may be alive while its engine hangs).
pub const FIRST_ANSWER: Duration = Duration::from_secs(5);
/// Lines waiting for a slow reader before publishers are held back.
const BACKLOG: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    #[error("no such service or task: {0}")]
    NotFound(String),
    #[error(
        "{key:?} matches {count} services or tasks: give more of the id, or the service's name"
    )]
    Ambiguous { key: String, count: usize },
    #[error("this manager is not the leader")]
    NotLeader { leader_addr: Option<String> },
    #[error("a log stream must name its subscription in its first message")]
    NoSubscription,
}

/// What a subscription's driver hears from the nodes' publish streams, in order per node.
#[derive(Debug)]
enum Published {
    Lines {
        node_id: String,
        messages: Vec<LogMessage>,
    },
    /// The node sent all it had (`error`: what it could not read), or its stream broke.
    Closed {
        node_id: String,
        error: String,
        clean: bool,
    },
}

/// What a subscription's driver hears about nodes' listeners.
#[derive(Debug, Clone)]
enum Presence {
    Connected(String),
    Disconnected(String),
}

struct Listener {
    id: u64,
    tx: mpsc::UnboundedSender<LogSubscription>,
}

struct Subscription {
    published: mpsc::Sender<Published>,
    presence: mpsc::UnboundedSender<Presence>,
}

/// The broker; cheap to clone.
#[derive(Clone)]
pub struct LogBroker {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    leadership: watch::Receiver<Leadership>,
    next_id: AtomicU64,
    /// Node id -> the listener its agent holds open.
    listeners: Mutex<HashMap<String, Listener>>,
    /// Subscription id -> its driver.
    subscriptions: Mutex<HashMap<String, Subscription>>,
}

/// Which nodes a subscription goes to at first, and whether nodes that connect later join.
#[derive(Debug, PartialEq)]
struct Scope {
    selector: LogSelector,
    /// Nodes holding tasks of the selector.
    nodes: Vec<String>,
    /// Following a service: nodes without its tasks may get some later.
    every_node: bool,
}

impl LogBroker {
    pub fn new(store: Store, leadership: watch::Receiver<Leadership>) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                leadership,
                next_id: AtomicU64::new(1),
                listeners: Mutex::new(HashMap::new()),
                subscriptions: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Whether the store holds `node_id` (a removed node's agent is not listened to).
    fn has_node(&self, node_id: &str) -> bool {
        self.store().view(|r| r.node(node_id).is_some())
    }

    fn next_id(&self) -> u64 {
        self.inner.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn check_leader(&self) -> Result<(), LogsError> {
        let leadership = self.inner.leadership.borrow();
        if leadership.is_leader {
            Ok(())
        } else {
            Err(LogsError::NotLeader {
                leader_addr: leadership.leader_addr.clone(),
            })
        }
    }

    /// Start a subscription: the stream of what the nodes send, warnings included.
    pub fn subscribe(
        &self,
        request: SubscribeLogsRequest,
    ) -> Result<mpsc::Receiver<Result<shoal_proto::SubscribeLogsMessage, tonic::Status>>, LogsError>
    {
        self.check_leader()?;
        let scope = self.store().view(|r| resolve(r, &request.target))?;
        let id = format!("logs-{}", self.next_id());
        let subscription = LogSubscription {
            id: id.clone(),
            selector: Some(scope.selector.clone()),
            options: request.options,
            close: false,
        };
        let (out_tx, out_rx) = mpsc::channel(BACKLOG);
        let (published_tx, published_rx) = mpsc::channel(BACKLOG);
        let (presence_tx, presence_rx) = mpsc::unbounded_channel();
        lock(&self.inner.subscriptions).insert(
            id,
            Subscription {
                published: published_tx,
                presence: presence_tx,
            },
        );
        let driver = driver::Driver::new(self.clone(), subscription, scope, out_tx);
        tokio::spawn(driver.run(published_rx, presence_rx));
        Ok(out_rx)
    }

    /// An agent's listener opens: subscriptions reach `node_id` through the returned
    /// receiver until [`LogBroker::unlisten`] with the returned id (or a newer listener).
    fn listen(&self, node_id: &str) -> (u64, mpsc::UnboundedReceiver<LogSubscription>) {
        let id = self.next_id();
        let (tx, rx) = mpsc::unbounded_channel();
        let replaced = lock(&self.inner.listeners)
            .insert(node_id.to_string(), Listener { id, tx })
            .is_some();
        if replaced {
            self.tell(Presence::Disconnected(node_id.to_string()));
        }
        self.tell(Presence::Connected(node_id.to_string()));
        (id, rx)
    }

    fn unlisten(&self, node_id: &str, id: u64) {
        let removed = {
            let mut listeners = lock(&self.inner.listeners);
            if listeners.get(node_id).is_some_and(|l| l.id == id) {
                listeners.remove(node_id);
                true
            } else {
                false
            }
        };
        if removed {
            self.tell(Presence::Disconnected(node_id.to_string()));
        }
    }

    fn tell(&self, presence: Presence) {
        for s in lock(&self.inner.subscriptions).values() {
            let _ = s.presence.send(presence.clone());
        }
    }

    /// Hands `subscription` to the node's listener; false when it has none.
    fn send_to(&self, node_id: &str, subscription: LogSubscription) -> bool {
        lock(&self.inner.listeners)
            .get(node_id)
            .is_some_and(|l| l.tx.send(subscription).is_ok())
    }

    fn connected(&self) -> Vec<String> {
        lock(&self.inner.listeners).keys().cloned().collect()
    }

    fn publisher(&self, subscription_id: &str) -> Option<mpsc::Sender<Published>> {
        lock(&self.inner.subscriptions)
            .get(subscription_id)
            .map(|s| s.published.clone())
    }

    fn forget(&self, subscription_id: &str) {
        lock(&self.inner.subscriptions).remove(subscription_id);
    }
}

/// The selector and nodes of `target`: a service (name, id, id prefix) or else a task.
fn resolve(r: &ReadTx<'_>, target: &str) -> Result<Scope, LogsError> {
    let ambiguous = |count| LogsError::Ambiguous {
        key: target.to_string(),
        count,
    };
    let (selector, tasks, every_node): (LogSelector, Vec<&shoal_proto::Task>, bool) =
        match r.find_service(target) {
            Lookup::Found(s) => (
                LogSelector {
                    service_ids: vec![s.id.clone()],
                    task_ids: Vec::new(),
                },
                r.tasks_of_service(&s.id).collect(),
                true,
            ),
            Lookup::Ambiguous(n) => return Err(ambiguous(n)),
            Lookup::Missing => match r.find_task(target) {
                Lookup::Found(t) => (
                    LogSelector {
                        service_ids: Vec::new(),
                        task_ids: vec![t.id.clone()],
                    },
                    vec![t],
                    false,
                ),
                Lookup::Ambiguous(n) => return Err(ambiguous(n)),
                Lookup::Missing => return Err(LogsError::NotFound(target.to_string())),
            },
        };
    let mut nodes: Vec<String> = tasks
        .iter()
        .filter(|t| !t.node_id.is_empty())
        .map(|t| t.node_id.clone())
        .collect();
    nodes.sort();
    nodes.dedup();
    Ok(Scope {
        selector,
        nodes,
        every_node,
    })
}

/// A node the store says is down (or does not know).
fn is_down(r: &ReadTx<'_>, node_id: &str) -> bool {
    r.node(node_id).is_none_or(|n| n.state() == NodeState::Down)
}

fn node_name(r: &ReadTx<'_>, node_id: &str) -> String {
    r.node(node_id)
        .map(|n| n.hostname().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| node_id.to_string())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests;

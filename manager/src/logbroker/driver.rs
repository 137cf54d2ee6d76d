//! One subscription's life: hand it to the nodes, relay what they publish, report the nodes
//! that cannot answer, and end when every node has answered (or, when following, when the
//! reader goes away or this manager stops leading).

use std::collections::HashMap;

use shoal_proto::{LogContext, LogMessage, LogSubscription, SubscribeLogsMessage};
use tokio::sync::{broadcast::error::RecvError, mpsc};
use tokio::time::Instant;

use super::{is_down, node_name, LogBroker, Presence, Published, Scope, FIRST_ANSWER};
use crate::store::{Event, Stored};

type Out = mpsc::Sender<Result<SubscribeLogsMessage, tonic::Status>>;

/// Where one node stands in the subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    /// Subscription sent; nothing heard yet.
    Asked(Instant),
    /// Lines are coming.
    Streaming,
    /// It sent everything it had.
    Done,
    /// Down, gone or silent; reported. A following subscription asks it again when its
    /// listener comes back.
    Lost,
}

impl Peer {
    fn pending(self) -> bool {
        matches!(self, Peer::Asked(_) | Peer::Streaming)
    }
}

pub(super) struct Driver {
    broker: LogBroker,
    subscription: LogSubscription,
    scope: Scope,
    out: Out,
    peers: HashMap<String, Peer>,
    /// The newest line relayed per node: where a following subscription resumes.
    last_ns: HashMap<String, i64>,
    /// Task id -> its service, slot and node (`None`: not in the store), filled as lines
    /// arrive.
    names: HashMap<String, Option<TaskName>>,
    node_names: HashMap<String, String>,
}

impl Driver {
    pub(super) fn new(
        broker: LogBroker,
        subscription: LogSubscription,
        scope: Scope,
        out: Out,
    ) -> Self {
        Self {
            broker,
            subscription,
            scope,
            out,
            peers: HashMap::new(),
            last_ns: HashMap::new(),
            names: HashMap::new(),
            node_names: HashMap::new(),
        }
    }

    fn follow(&self) -> bool {
        self.subscription.options.as_ref().is_some_and(|o| o.follow)
    }

    pub(super) async fn run(
        mut self,
        mut published: mpsc::Receiver<Published>,
        mut presence: mpsc::UnboundedReceiver<Presence>,
    ) {
        let mut events = self.broker.store().watch();
        let mut leadership = self.broker.inner.leadership.clone();
        self.start().await;
        loop {
            if !self.follow() && !self.peers.values().any(|p| p.pending()) {
                break;
            }
            let deadline = self
                .peers
                .values()
                .filter_map(|p| match p {
                    Peer::Asked(at) => Some(*at + FIRST_ANSWER),
                    _ => None,
                })
                .min();
            let timer = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.out.closed() => break,
                p = published.recv() => match p {
                    Some(p) => self.published(p).await,
                    None => break,
                },
                Some(p) = presence.recv() => self.presence(p).await,
                event = events.recv() => match event {
                    Ok(e) if !matches!(e.object(), Some(Stored::Node(_))) && e != Event::Resync => {}
                    Ok(_) | Err(RecvError::Lagged(_)) => self.check_down().await,
                    Err(RecvError::Closed) => break,
                },
                _ = timer => self.silent().await,
                changed = leadership.changed() => {
                    if changed.is_err() || !leadership.borrow_and_update().is_leader {
                        let _ = self
                            .out
                            .send(Err(tonic::Status::unavailable(
                                "this manager stopped leading: its log streams end here; run the command again",
                            )))
                            .await;
                        break;
                    }
                }
            }
        }
        self.finish();
    }

    /// Ask every node concerned; report those that cannot be asked.
    async fn start(&mut self) {
        let connected = self.broker.connected();
        let mut nodes = self.scope.nodes.clone();
        if self.scope.every_node && self.follow() {
            nodes.extend(connected.iter().cloned());
            nodes.sort();
            nodes.dedup();
        }
        for node in nodes {
            let down = self.broker.store().view(|r| is_down(r, &node));
            if down || !connected.contains(&node) {
                let why = if down { "is down" } else { "is not connected" };
                self.lose(&node, why).await;
            } else {
                self.ask(&node).await;
            }
        }
    }

    async fn ask(&mut self, node: &str) {
        let mut subscription = self.subscription.clone();
        if let (Some(options), Some(last)) = (subscription.options.as_mut(), self.last_ns.get(node))
        {
            // Resuming: everything after the last line relayed.
            options.since_ns = last + 1;
            options.tail = -1;
        }
        if self.broker.send_to(node, subscription) {
            self.peers
                .insert(node.to_string(), Peer::Asked(Instant::now()));
        } else {
            self.lose(node, "is not connected").await;
        }
    }

    /// Report `node` once, and stop waiting for it.
    async fn lose(&mut self, node: &str, why: &str) {
        let before = self.peers.insert(node.to_string(), Peer::Lost);
        if before == Some(Peer::Lost) {
            return;
        }
        let incomplete = matches!(before, Some(Peer::Streaming));
        let name = self.node_name(node);
        let tail = match (incomplete, self.follow()) {
            (true, true) => "its logs stop here until it is back",
            (true, false) => "its logs may be incomplete",
            (false, true) => "its logs are not shown until it is back",
            (false, false) => "its logs are not shown",
        };
        self.warn(format!("node {name} {why}: {tail}")).await;
        self.close(node);
    }

    async fn published(&mut self, p: Published) {
        match p {
            Published::Lines { node_id, messages } => {
                // Only a node this subscription asked may answer it.
                let Some(peer) = self.peers.get_mut(&node_id) else {
                    tracing::warn!(node = %node_id, "refused log lines from a node that was not asked");
                    return;
                };
                if matches!(peer, Peer::Asked(_)) {
                    *peer = Peer::Streaming;
                }
                let messages = self.name(&node_id, messages);
                if messages.is_empty() {
                    return;
                }
                if let Some(last) = messages.iter().map(|m| m.timestamp_ns).max() {
                    let newest = self.last_ns.entry(node_id.clone()).or_insert(last);
                    *newest = (*newest).max(last);
                }
                let _ = self
                    .out
                    .send(Ok(SubscribeLogsMessage {
                        messages,
                        warning: String::new(),
                    }))
                    .await;
            }
            Published::Closed {
                node_id,
                error,
                clean,
            } => {
                if !self.peers.get(&node_id).is_some_and(|p| p.pending()) {
                    return;
                }
                if !clean {
                    self.lose(&node_id, "went away").await;
                    return;
                }
                self.peers.insert(node_id.clone(), Peer::Done);
                if !error.is_empty() {
                    let name = self.node_name(&node_id);
                    self.warn(format!("node {name}: {error}")).await;
                }
            }
        }
    }

    async fn presence(&mut self, p: Presence) {
        match p {
            Presence::Disconnected(node) => {
                if self.peers.get(&node).is_some_and(|p| p.pending()) {
                    self.lose(&node, "went away").await;
                }
            }
            Presence::Connected(node) => {
                if !self.follow() {
                    return;
                }
                match self.peers.get(&node) {
                    Some(Peer::Lost) => {
                        let name = self.node_name(&node);
                        self.warn(format!("node {name} is back: following its logs again"))
                            .await;
                        self.ask(&node).await;
                    }
                    None if self.scope.every_node => self.ask(&node).await,
                    _ => {}
                }
            }
        }
    }

    /// The store marked nodes down (missed heartbeats): stop waiting for them.
    async fn check_down(&mut self) {
        let pending: Vec<String> = self
            .peers
            .iter()
            .filter(|(_, p)| p.pending())
            .map(|(n, _)| n.clone())
            .collect();
        let down: Vec<String> = self
            .broker
            .store()
            .view(|r| pending.into_iter().filter(|n| is_down(r, n)).collect());
        for node in down {
            self.lose(&node, "is down").await;
        }
    }

    /// Nodes asked more than [`FIRST_ANSWER`] ago that never answered.
    async fn silent(&mut self) {
        let now = Instant::now();
        let silent: Vec<String> = self
            .peers
            .iter()
            .filter(|(_, p)| matches!(p, Peer::Asked(at) if *at + FIRST_ANSWER <= now))
            .map(|(n, _)| n.clone())
            .collect();
        for node in silent {
            let why = format!("did not answer within {}s", FIRST_ANSWER.as_secs());
            self.lose(&node, &why).await;
        }
    }

    async fn warn(&mut self, warning: String) {
        tracing::info!(subscription = %self.subscription.id, "{warning}");
        let _ = self
            .out
            .send(Ok(SubscribeLogsMessage {
                messages: Vec::new(),
                warning,
            }))
            .await;
    }

    /// Tell a node to stop publishing for this subscription.
    fn close(&self, node: &str) {
        self.broker.send_to(
            node,
            LogSubscription {
                id: self.subscription.id.clone(),
                close: true,
                ..Default::default()
            },
        );
    }

    fn finish(self) {
        self.broker.forget(&self.subscription.id);
        for (node, peer) in &self.peers {
            if peer.pending() || self.follow() {
                self.close(node);
            }
        }
    }

    fn node_name(&mut self, node: &str) -> String {
        if let Some(name) = self.node_names.get(node) {
            return name.clone();
        }
        let name = self.broker.store().view(|r| node_name(r, node));
        self.node_names.insert(node.to_string(), name.clone());
        name
    }

    /// Fills in what the agent does not know: service and node names, slots. The node id is
    /// the publishing certificate's, whatever the agent wrote, and a line of a task the
    /// store does not hold on that node is dropped: a node speaks only for its own tasks.
    fn name(&mut self, node_id: &str, mut messages: Vec<LogMessage>) -> Vec<LogMessage> {
        let node_name = self.node_name(node_id);
        let unknown: Vec<String> = messages
            .iter()
            .filter_map(|m| m.context.as_ref())
            .filter(|c| !self.names.contains_key(&c.task_id))
            .map(|c| c.task_id.clone())
            .collect();
        if !unknown.is_empty() {
            self.broker.store().view(|r| {
                for task_id in unknown {
                    let named = r.task(&task_id).map(|t| {
                        let service = r
                            .service(&t.service_id)
                            .map(|s| s.name().to_string())
                            .unwrap_or_else(|| t.service_name.clone());
                        TaskName {
                            service,
                            slot: t.slot,
                            node_id: t.node_id.clone(),
                        }
                    });
                    self.names.insert(task_id, named);
                }
            });
        }
        messages.retain(|m| {
            let task_id = m.context.as_ref().map(|c| c.task_id.as_str()).unwrap_or("");
            let own = matches!(self.names.get(task_id), Some(Some(t)) if t.node_id == node_id);
            if !own {
                tracing::warn!(node = %node_id, task = %task_id, "refused a log line for a task not on the publishing node");
            }
            own
        });
        for m in &mut messages {
            let context = m.context.get_or_insert_with(LogContext::default);
            context.node_id = node_id.to_string();
            context.node_name = node_name.clone();
            if let Some(Some(task)) = self.names.get(&context.task_id) {
                if !task.service.is_empty() {
                    context.service_name = task.service.clone();
                }
                context.slot = task.slot;
            }
        }
        messages
    }
}

/// What the store says of a task whose lines are relayed.
struct TaskName {
    service: String,
    slot: u64,
    node_id: String,
}

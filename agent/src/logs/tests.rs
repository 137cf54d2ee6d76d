//! The publisher over the FAKE executor and a real worker, answering a FAKE broker: a
//! plain gRPC server on loopback that hands out the test's subscriptions and records what
//! is published (the real broker is tested in the manager crate and end to end).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal_proto::{
    ListenSubscriptionsRequest, LogBrokerServer, LogOptions, LogSelector, LogSubscription,
    PublishLogsMessage, PublishLogsResponse, Task, TaskState, TaskStatus,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{TcpListenerStream, UnboundedReceiverStream};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use super::Publisher;
use crate::executor::fake::{test_task, FakeEngine};
use crate::taskdb::TaskDb;
use crate::worker::Worker;

const LIMIT: Duration = Duration::from_secs(20);

/// One publish stream as the FAKE broker received it.
type Published = mpsc::UnboundedReceiver<PublishLogsMessage>;

struct FakeBroker {
    subscriptions: Mutex<Option<mpsc::UnboundedReceiver<LogSubscription>>>,
    streams: mpsc::UnboundedSender<Published>,
}

#[tonic::async_trait]
impl shoal_proto::LogBroker for FakeBroker {
    type ListenSubscriptionsStream = UnboundedReceiverStream<Result<LogSubscription, Status>>;

    async fn listen_subscriptions(
        &self,
        request: Request<ListenSubscriptionsRequest>,
    ) -> Result<Response<Self::ListenSubscriptionsStream>, Status> {
        assert_eq!(request.into_inner().node_id, "n1");
        let mut rx = self
            .subscriptions
            .lock()
            .expect("as the test set up")
            .take()
            .ok_or_else(|| Status::unavailable("listened twice"))?;
        let (tx, out) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(s) = rx.recv().await {
                if tx.send(Ok(s)).is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(UnboundedReceiverStream::new(out)))
    }

    async fn publish_logs(
        &self,
        request: Request<Streaming<PublishLogsMessage>>,
    ) -> Result<Response<PublishLogsResponse>, Status> {
        let mut stream = request.into_inner();
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = self.streams.send(rx);
        while let Some(m) = stream.message().await? {
            let _ = tx.send(m);
        }
        Ok(Response::new(PublishLogsResponse {}))
    }
}

struct Harness {
    engine: FakeEngine,
    worker: Arc<Worker>,
    subscribe: mpsc::UnboundedSender<LogSubscription>,
    streams: mpsc::UnboundedReceiver<Published>,
    _cancel: tokio_util::sync::DropGuard,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = TaskDb::open(dir.path(), None).expect("open db");
        let engine = FakeEngine::new();
        let (status_tx, mut status_rx) = mpsc::channel(64);
        tokio::spawn(async move { while status_rx.recv().await.is_some() {} });
        let worker = Arc::new(
            Worker::new(Arc::new(engine.executor("n1")), db, status_tx)
                .await
                .expect("worker"),
        );

        let (subscribe, subscriptions) = mpsc::unbounded_channel();
        let (streams_tx, streams) = mpsc::unbounded_channel();
        let broker = FakeBroker {
            subscriptions: Mutex::new(Some(subscriptions)),
            streams: streams_tx,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(LogBrokerServer::new(broker))
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("endpoint")
            .connect_lazy();
        let cancel = CancellationToken::new();
        let publisher = Publisher::new(channel, "n1".into(), worker.executor());
        tokio::spawn(publisher.serve(worker.feed(), cancel.clone()));
        Self {
            engine,
            worker,
            subscribe,
            streams,
            _cancel: cancel.drop_guard(),
            _dir: dir,
        }
    }

    /// Assigns `tasks` and waits until their containers run.
    async fn run(&self, tasks: Vec<Task>) {
        let ids: Vec<String> = tasks.iter().map(|t| t.id.clone()).collect();
        self.worker.assign(tasks).await;
        let mut feed = self.worker.feed();
        tokio::time::timeout(LIMIT, async {
            loop {
                let running = feed
                    .tasks()
                    .iter()
                    .filter(|(t, s)| ids.contains(&t.id) && is_running(s))
                    .count();
                if running == ids.len() {
                    return;
                }
                feed.changed().await;
            }
        })
        .await
        .expect("tasks run");
    }

    async fn subscribe(&mut self, id: &str, selector: LogSelector, follow: bool) -> Published {
        self.subscribe
            .send(LogSubscription {
                id: id.into(),
                selector: Some(selector),
                options: Some(LogOptions {
                    follow,
                    tail: -1,
                    since_ns: 0,
                }),
                close: false,
            })
            .expect("the broker listens");
        tokio::time::timeout(LIMIT, self.streams.recv())
            .await
            .expect("a publish stream in time")
            .expect("the broker is up")
    }
}

fn is_running(s: &TaskStatus) -> bool {
    s.state == TaskState::Running as i32
}

fn of_service(id: &str, service: &str) -> Task {
    let mut t = test_task(id, 1, "img:1", &[]);
    t.service_id = service.into();
    t
}

/// Reads messages until `n` lines arrived (or the stream closed): the lines as
/// "task:text", and whether the last message closed the stream.
async fn lines(stream: &mut Published, n: usize) -> (Vec<String>, bool) {
    let mut lines = Vec::new();
    let mut closed = false;
    tokio::time::timeout(LIMIT, async {
        while lines.len() < n && !closed {
            let Some(m) = stream.recv().await else { break };
            assert_eq!(m.node_id, "n1");
            for l in m.messages {
                let task = l.context.map(|c| c.task_id).unwrap_or_default();
                lines.push(format!("{task}:{}", String::from_utf8_lossy(&l.data)));
            }
            closed = m.close;
        }
    })
    .await
    .expect("lines in time");
    lines.sort();
    (lines, closed)
}

#[tokio::test]
async fn a_subscription_gets_the_lines_of_matching_tasks_then_a_close() {
    let mut h = Harness::new().await;
    h.run(vec![
        of_service("t1", "web"),
        of_service("t2", "web"),
        of_service("t3", "db"),
    ])
    .await;
    h.engine.print("t1", false, "one");
    h.engine.print("t2", true, "two");
    h.engine.print("t3", false, "not mine");

    let mut stream = h
        .subscribe(
            "s1",
            LogSelector {
                service_ids: vec!["web".into()],
                task_ids: vec![],
            },
            false,
        )
        .await;
    let first = stream.recv().await.expect("a first message");
    assert_eq!(
        (
            first.subscription_id.as_str(),
            first.messages.len(),
            first.close
        ),
        ("s1", 0, false),
        "the first message only says the node answered"
    );
    assert_eq!(
        lines(&mut stream, usize::MAX).await,
        (vec!["t1:one".into(), "t2:two".into()], true)
    );

    // One task by id.
    let mut stream = h
        .subscribe(
            "s2",
            LogSelector {
                service_ids: vec![],
                task_ids: vec!["t3".into()],
            },
            false,
        )
        .await;
    assert_eq!(
        lines(&mut stream, usize::MAX).await,
        (vec!["t3:not mine".into()], true)
    );
}

#[tokio::test]
async fn following_takes_in_new_lines_and_new_tasks_until_closed() {
    let mut h = Harness::new().await;
    h.run(vec![of_service("t1", "web")]).await;
    h.engine.print("t1", false, "before");
    let mut stream = h
        .subscribe(
            "f1",
            LogSelector {
                service_ids: vec!["web".into()],
                task_ids: vec![],
            },
            true,
        )
        .await;
    assert_eq!(lines(&mut stream, 1).await.0, ["t1:before"]);

    h.engine.print("t1", false, "after");
    assert_eq!(lines(&mut stream, 1).await.0, ["t1:after"]);

    h.run(vec![of_service("t1", "web"), of_service("t2", "web")])
        .await;
    h.engine.print("t2", false, "newcomer");
    assert_eq!(lines(&mut stream, 1).await.0, ["t2:newcomer"]);

    // The manager closes the subscription: the publish stream ends.
    h.subscribe
        .send(LogSubscription {
            id: "f1".into(),
            close: true,
            ..Default::default()
        })
        .expect("the broker listens");
    let end = tokio::time::timeout(LIMIT, async { while stream.recv().await.is_some() {} }).await;
    assert!(end.is_ok(), "the publish stream ended");
}

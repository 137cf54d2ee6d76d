//! The broker driven by in-process listeners and publishers standing in for agents (the
//! agents' side is tested end to end with real containers in `tests/tests/logs.rs`).

use std::time::Duration;

use shoal_proto::{
    LogContext, LogMessage, LogOptions, LogSubscription, NodeState, SubscribeLogsMessage,
    SubscribeLogsRequest, Task, TaskState,
};
use shoal_raft::Leadership;
use tokio::sync::{mpsc, watch};

use super::*;
use crate::store::Object;
use crate::testutil::{change_node, node, put, service};

type Out = mpsc::Receiver<Result<SubscribeLogsMessage, tonic::Status>>;

struct Fixture {
    broker: LogBroker,
    leader: watch::Sender<Leadership>,
}

fn task(id: &str, service_id: &str, slot: u64, node_id: &str) -> Task {
    Task {
        id: id.into(),
        service_id: service_id.into(),
        service_name: format!("{service_id}-name"),
        slot,
        node_id: node_id.into(),
        desired_state: TaskState::Running as i32,
        ..Default::default()
    }
}

/// Service `web` with tasks on n1 and n2; n3 has none; nobody is listening yet.
async fn fixture() -> Fixture {
    let store = Store::in_memory();
    put(
        &store,
        vec![
            Object::Node(node("n1")),
            Object::Node(node("n2")),
            Object::Node(node("n3")),
            Object::Service(service("web", 2)),
            Object::Task(task("t1", "web", 1, "n1")),
            Object::Task(task("t2", "web", 2, "n2")),
        ],
    )
    .await;
    let (leader, leadership) = watch::channel(Leadership {
        is_leader: true,
        ..Default::default()
    });
    Fixture {
        broker: LogBroker::new(store, leadership),
        leader,
    }
}

fn request(target: &str, follow: bool) -> SubscribeLogsRequest {
    SubscribeLogsRequest {
        target: target.into(),
        options: Some(LogOptions {
            follow,
            tail: -1,
            since_ns: 0,
        }),
    }
}

fn subscribe(f: &Fixture, target: &str, follow: bool) -> Out {
    f.broker
        .subscribe(request(target, follow))
        .expect("subscribed")
}

fn line(task_id: &str, ns: i64, text: &str) -> LogMessage {
    LogMessage {
        context: Some(LogContext {
            task_id: task_id.into(),
            // What an agent claims is overwritten by the session's node.
            node_id: "claimed".into(),
            ..Default::default()
        }),
        timestamp_ns: ns,
        data: text.as_bytes().to_vec(),
        ..Default::default()
    }
}

async fn next_subscription(rx: &mut mpsc::UnboundedReceiver<LogSubscription>) -> LogSubscription {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a subscription in time")
        .expect("the listener is open")
}

async fn publish(broker: &LogBroker, sub: &str, node: &str, lines: Vec<LogMessage>, close: bool) {
    let tx = broker.publisher(sub).expect("the subscription is live");
    tx.send(Published::Lines {
        node_id: node.into(),
        messages: lines,
    })
    .await
    .expect("the driver listens");
    if close {
        tx.send(Published::Closed {
            node_id: node.into(),
            error: String::new(),
            clean: true,
        })
        .await
        .expect("the driver listens");
    }
}

/// A subscription to "web" (following or not) that both nodes have, and n2's first line
/// (stamped `ns`) already relayed.
struct Streaming {
    id: String,
    out: Out,
    n1: mpsc::UnboundedReceiver<LogSubscription>,
    n2_id: u64,
}

async fn streaming(f: &Fixture, follow: bool, ns: i64) -> Streaming {
    let (_, mut n1) = f.broker.listen("n1");
    let (n2_id, mut n2) = f.broker.listen("n2");
    let mut out = subscribe(f, "web", follow);
    let id = next_subscription(&mut n1).await.id;
    next_subscription(&mut n2).await;
    publish(&f.broker, &id, "n2", vec![line("t2", ns, "first")], false).await;
    let first = out.recv().await.expect("a message").expect("no error");
    assert_eq!(first.messages.len(), 1);
    // n2's listener is dropped by the caller, or kept by the broker alone.
    drop(n2);
    Streaming { id, out, n1, n2_id }
}

/// Everything the stream carries until it ends: (lines as "node task text", warnings).
async fn drain(mut out: Out) -> (Vec<String>, Vec<String>) {
    let mut lines = Vec::new();
    let mut warnings = Vec::new();
    while let Some(m) = tokio::time::timeout(Duration::from_secs(30), out.recv())
        .await
        .expect("the stream ends in time")
    {
        let m = m.expect("no error");
        if !m.warning.is_empty() {
            warnings.push(m.warning);
        }
        for l in m.messages {
            let c = l.context.unwrap_or_default();
            lines.push(format!(
                "{}.{}@{} {}",
                c.service_name,
                c.slot,
                c.node_name,
                String::from_utf8_lossy(&l.data)
            ));
        }
    }
    (lines, warnings)
}

#[tokio::test]
async fn lines_of_every_node_arrive_named_and_the_stream_ends_when_all_closed() {
    let f = fixture().await;
    let (_, mut n1) = f.broker.listen("n1");
    let (_, mut n2) = f.broker.listen("n2");
    let (_, mut n3) = f.broker.listen("n3");
    let out = subscribe(&f, "web-name", false);
    let s1 = next_subscription(&mut n1).await;
    let s2 = next_subscription(&mut n2).await;
    assert_eq!(s1.id, s2.id);
    assert_eq!(
        s1.selector.as_ref().map(|s| s.service_ids.clone()),
        Some(vec!["web".to_string()])
    );
    // n3 holds no task of the service: not asked.
    assert!(n3.try_recv().is_err());
    publish(
        &f.broker,
        &s1.id,
        "n1",
        vec![line("t1", 1, "one"), line("t1", 2, "two")],
        true,
    )
    .await;
    publish(&f.broker, &s2.id, "n2", vec![line("t2", 3, "three")], true).await;
    let (lines, warnings) = drain(out).await;
    assert_eq!(
        lines,
        [
            "web-name.1@n1 one",
            "web-name.1@n1 two",
            "web-name.2@n2 three"
        ]
    );
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(
        f.broker.publisher(&s1.id).is_none(),
        "the subscription is forgotten"
    );
}

#[tokio::test]
async fn a_node_speaks_only_for_its_own_tasks_and_only_when_asked() {
    let f = fixture().await;
    let (_, mut n1) = f.broker.listen("n1");
    let (_, mut n2) = f.broker.listen("n2");
    let (_, _n3) = f.broker.listen("n3");
    let out = subscribe(&f, "web-name", false);
    let id = next_subscription(&mut n1).await.id;
    next_subscription(&mut n2).await;
    // n3 was not asked: whatever it publishes into the subscription is dropped.
    publish(
        &f.broker,
        &id,
        "n3",
        vec![line("t1", 1, "forged by n3")],
        true,
    )
    .await;
    // n1 publishing a line of n2's task, or of a task the store does not hold: dropped.
    publish(
        &f.broker,
        &id,
        "n1",
        vec![
            line("t2", 2, "forged by n1"),
            line("t9", 3, "no such task"),
            line("t1", 4, "own"),
        ],
        true,
    )
    .await;
    publish(&f.broker, &id, "n2", vec![line("t2", 5, "two")], true).await;
    let (lines, _) = drain(out).await;
    assert_eq!(lines, ["web-name.1@n1 own", "web-name.2@n2 two"]);
}

#[tokio::test]
async fn a_down_node_is_reported_once_and_not_waited_for() {
    let f = fixture().await;
    change_node(f.broker.store(), "n2", |n| {
        if let Some(s) = n.status.as_mut() {
            s.state = NodeState::Down as i32;
        }
    })
    .await;
    let (_, mut n1) = f.broker.listen("n1");
    let out = subscribe(&f, "web", false);
    let s1 = next_subscription(&mut n1).await;
    publish(&f.broker, &s1.id, "n1", vec![line("t1", 1, "one")], true).await;
    let (lines, warnings) = drain(out).await;
    assert_eq!(lines, ["web-name.1@n1 one"]);
    assert_eq!(warnings, ["node n2 is down: its logs are not shown"]);
}

#[tokio::test]
async fn a_node_without_a_listener_is_reported() {
    let f = fixture().await;
    let (_, mut n1) = f.broker.listen("n1");
    let out = subscribe(&f, "t1", false);
    let s1 = next_subscription(&mut n1).await;
    assert_eq!(
        s1.selector.map(|s| s.task_ids),
        Some(vec!["t1".to_string()])
    );
    publish(&f.broker, &s1.id, "n1", vec![], true).await;
    assert_eq!(drain(out).await, (vec![], vec![]));

    let out = subscribe(&f, "t2", false);
    assert_eq!(
        drain(out).await.1,
        ["node n2 is not connected: its logs are not shown"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_silent_node_is_given_up_after_the_first_answer_deadline() {
    let f = fixture().await;
    let (_, mut n1) = f.broker.listen("n1");
    let (_, mut n2) = f.broker.listen("n2");
    let out = subscribe(&f, "web", false);
    let s1 = next_subscription(&mut n1).await;
    next_subscription(&mut n2).await;
    publish(&f.broker, &s1.id, "n1", vec![line("t1", 1, "one")], true).await;
    let (lines, warnings) = drain(out).await;
    assert_eq!(lines, ["web-name.1@n1 one"]);
    assert_eq!(
        warnings,
        ["node n2 did not answer within 5s: its logs are not shown"]
    );
    // n2 is told to stop.
    let close = next_subscription(&mut n2).await;
    assert!(close.close);
}

#[tokio::test]
async fn a_listener_that_drops_mid_stream_ends_the_wait_for_it() {
    let f = fixture().await;
    let s = streaming(&f, false, 1).await;
    f.broker.unlisten("n2", s.n2_id);
    publish(&f.broker, &s.id, "n1", vec![], true).await;
    let out = s.out;
    let (lines, warnings) = drain(out).await;
    assert!(lines.is_empty(), "{lines:?}");
    assert_eq!(warnings, ["node n2 went away: its logs may be incomplete"]);
}

#[tokio::test]
async fn a_broken_publish_stream_is_reported() {
    let f = fixture().await;
    let (_, mut n1) = f.broker.listen("n1");
    let out = subscribe(&f, "t1", false);
    let s1 = next_subscription(&mut n1).await;
    let tx = f.broker.publisher(&s1.id).expect("as the test set up");
    tx.send(Published::Closed {
        node_id: "n1".into(),
        error: String::new(),
        clean: false,
    })
    .await
    .expect("as the test set up");
    assert_eq!(
        drain(out).await.1,
        ["node n1 went away: its logs are not shown"]
    );
}

#[tokio::test]
async fn following_resumes_a_node_that_comes_back_and_takes_in_new_nodes() {
    let f = fixture().await;
    let Streaming {
        id: s1,
        mut out,
        mut n1,
        n2_id,
        ..
    } = streaming(&f, true, 1_000).await;
    f.broker.unlisten("n2", n2_id);
    let lost = out.recv().await.expect("a message").expect("no error");
    assert_eq!(
        lost.warning,
        "node n2 went away: its logs stop here until it is back"
    );

    let (_, mut n2) = f.broker.listen("n2");
    let back = out.recv().await.expect("a message").expect("no error");
    assert_eq!(back.warning, "node n2 is back: following its logs again");
    let again = next_subscription(&mut n2).await;
    let options = again.options.expect("as the test set up");
    assert_eq!(
        (options.since_ns, options.tail),
        (1_001, -1),
        "resumes after the last line"
    );

    // A node that connects later (a task may land on it) is asked too.
    let (_, mut n3) = f.broker.listen("n3");
    assert_eq!(next_subscription(&mut n3).await.id, s1);

    // The reader goes away: every node is told to stop.
    drop(out);
    assert!(next_subscription(&mut n1).await.close);
    assert!(next_subscription(&mut n2).await.close);
    assert!(next_subscription(&mut n3).await.close);
}

#[tokio::test]
async fn a_following_stream_ends_with_an_error_when_leadership_is_lost() {
    let f = fixture().await;
    let (_, _n1) = f.broker.listen("n1");
    let (_, _n2) = f.broker.listen("n2");
    let mut out = subscribe(&f, "web", true);
    f.leader.send_replace(Leadership::default());
    let end = loop {
        match out.recv().await.expect("an error before the end") {
            Ok(_) => continue,
            Err(status) => break status,
        }
    };
    assert_eq!(end.code(), tonic::Code::Unavailable);
    assert!(out.recv().await.is_none());
    // And a follower refuses new subscriptions, naming no leader it does not know.
    assert!(matches!(
        f.broker.subscribe(request("web", false)),
        Err(LogsError::NotLeader { leader_addr: None })
    ));
}

#[tokio::test]
async fn unknown_and_ambiguous_targets_are_refused() {
    let f = fixture().await;
    assert_eq!(
        f.broker
            .subscribe(request("nope", false))
            .err()
            .map(|e| e.to_string()),
        Some("no such service or task: nope".to_string())
    );
    // "t" prefixes both tasks.
    assert_eq!(
        f.broker
            .subscribe(request("t", false))
            .err()
            .map(|e| e.to_string()),
        Some(
            "\"t\" matches 2 services or tasks: give more of the id, or the service's name"
                .to_string()
        )
    );
}

use prost::Message;
use shoal_proto::{Service, ServiceSpec, Task, TaskState, TaskStatus};
use shoal_raft::Applier;

use super::*;

fn service(id: &str, name: &str) -> Service {
    Service {
        id: id.into(),
        spec: Some(ServiceSpec {
            name: name.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn update_commits_and_view_sees_it() {
    let store = Store::in_memory();
    store
        .update(|tx| tx.create(Object::Service(service("s1", "web"))))
        .await
        .expect("create");
    let (name, version) = store.view(|r| {
        let s = r.service("s1").expect("stored");
        (s.name().to_string(), s.version())
    });
    assert_eq!(name, "web");
    assert_eq!(version, 1, "version is the index of the write");
}

#[tokio::test]
async fn failed_transaction_changes_nothing() {
    let store = Store::in_memory();
    let result: Result<(), StoreError> = store
        .update(|tx| {
            tx.create(Object::Service(service("s1", "web")))?;
            Err(StoreError::Propose("caller gave up".into()))
        })
        .await;
    assert!(result.is_err());
    assert!(store.view(|r| r.service("s1").is_none()));
}

#[tokio::test]
async fn duplicate_create_is_refused() {
    let store = Store::in_memory();
    store
        .update(|tx| tx.create(Object::Service(service("s1", "web"))))
        .await
        .expect("create");
    let err = store
        .update(|tx| tx.create(Object::Service(service("s1", "web"))))
        .await
        .expect_err("second create");
    assert!(matches!(err, StoreError::Exists { .. }), "{err}");
}

#[tokio::test]
async fn stale_version_is_refused_at_apply() {
    let store = Store::in_memory();
    store
        .update(|tx| tx.create(Object::Service(service("s1", "web"))))
        .await
        .expect("create");
    let stale = store.view(|r| r.service("s1").cloned()).expect("stored");
    let mut fresh = stale.clone();
    fresh.spec.get_or_insert_with(Default::default).replicas = 3;
    store
        .update(|tx| tx.update(Object::Service(fresh)))
        .await
        .expect("first update");
    // A writer that read before the first update loses.
    let batch = StoreActionBatch {
        actions: vec![shoal_proto::StoreAction {
            kind: shoal_proto::store_action::Kind::Update as i32,
            object: Some(shoal_proto::store_action::Object::Service(stale)),
        }],
        format: STORE_FORMAT,
    };
    let err = store.state().apply_batch(99, batch).expect_err("stale");
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    assert_eq!(
        store.view(|r| r.service("s1").map(|s| s.spec.as_ref().map(|s| s.replicas))),
        Some(Some(3))
    );
}

#[tokio::test]
async fn two_writes_to_one_object_in_a_transaction_merge() {
    let store = Store::in_memory();
    store
        .update(|tx| {
            tx.create(Object::Task(Task {
                id: "t1".into(),
                ..Default::default()
            }))?;
            let mut t = tx.task("t1").expect("staged task is visible");
            t.status = Some(TaskStatus {
                state: TaskState::Pending as i32,
                ..Default::default()
            });
            tx.update(Object::Task(t))
        })
        .await
        .expect("txn");
    assert_eq!(
        store.view(|r| r.task("t1").map(|t| t.state())),
        Some(TaskState::Pending)
    );
}

#[tokio::test]
async fn watch_sees_changes_in_order() {
    let store = Store::in_memory();
    let mut watch = store.watch();
    store
        .update(|tx| tx.create(Object::Service(service("s1", "web"))))
        .await
        .expect("create");
    let s = store.view(|r| r.service("s1").cloned()).expect("stored");
    store
        .update(|tx| {
            tx.remove(Object::Service(s));
            Ok::<_, StoreError>(())
        })
        .await
        .expect("remove");
    assert!(matches!(
        watch.recv().await,
        Ok(Event::Created(o)) if matches!(*o, Object::Service(_))
    ));
    assert!(matches!(
        watch.recv().await,
        Ok(Event::Removed(o)) if matches!(*o, Object::Service(_))
    ));
}

#[tokio::test]
async fn snapshot_round_trips_and_signals_resync() {
    let store = Store::in_memory();
    store
        .update(|tx| tx.create(Object::Service(service("s1", "web"))))
        .await
        .expect("create");
    let bytes = store.state().snapshot();
    let other = StoreState::new();
    let mut watch = other.subscribe();
    other.restore(&bytes).expect("restore");
    assert_eq!(other.read().services.len(), 1);
    assert_eq!(watch.recv().await.ok(), Some(Event::Resync));
}

#[test]
fn lookup_by_name_and_prefix() {
    let mut tables = Tables::default();
    for (id, name) in [("abc123", "web"), ("abd456", "db")] {
        tables.services.insert(id.into(), service(id, name));
    }
    let r = ReadTx::new(&tables);
    assert!(matches!(r.find_service("web"), tx::Lookup::Found(s) if s.id == "abc123"));
    assert!(matches!(r.find_service("abd"), tx::Lookup::Found(s) if s.id == "abd456"));
    assert_eq!(r.find_service("ab").map_found(), Err(2));
    assert!(matches!(r.find_service("nope"), tx::Lookup::Missing));
}

#[tokio::test]
async fn an_unknown_action_kind_is_refused_not_taken_for_a_removal() {
    let store = Store::in_memory();
    store
        .update(|tx| tx.create(Object::Service(service("s1", "web"))))
        .await
        .expect("create");
    let stored = store.view(|r| r.service("s1").cloned()).expect("stored");
    // A newer leader's kind 7, in a batch with a change this version knows.
    let batch = StoreActionBatch {
        actions: vec![
            shoal_proto::StoreAction {
                kind: shoal_proto::store_action::Kind::Create as i32,
                object: Some(shoal_proto::store_action::Object::Service(service(
                    "s2", "api",
                ))),
            },
            shoal_proto::StoreAction {
                kind: 7,
                object: Some(shoal_proto::store_action::Object::Service(stored)),
            },
        ],
        format: STORE_FORMAT,
    };
    // Through Raft's applier it stops this manager applying the log (never skipped).
    let stop = store
        .state()
        .apply(99, &batch.encode_to_vec())
        .expect_err("the member stops");
    assert!(
        stop.contains("unknown kind 7") && stop.contains("upgrade this manager"),
        "{stop}"
    );
    let err = store
        .state()
        .apply_batch(99, batch)
        .expect_err("unknown kind");
    assert!(matches!(err, StoreError::UnknownAction(7)), "{err}");
    assert!(store.view(|r| r.service("s1").is_some()), "nothing removed");
    assert!(store.view(|r| r.service("s2").is_none()), "nothing applied");
}

#[tokio::test]
async fn a_batch_of_a_newer_format_or_object_kind_stops_the_manager() {
    let store = Store::in_memory();
    let create = |object| shoal_proto::StoreAction {
        kind: shoal_proto::store_action::Kind::Create as i32,
        object,
    };
    let web = Some(shoal_proto::store_action::Object::Service(service(
        "s1", "web",
    )));
    let newer = StoreActionBatch {
        actions: vec![create(web.clone())],
        format: STORE_FORMAT + 1,
    };
    let stop = store
        .state()
        .apply(5, &newer.encode_to_vec())
        .expect_err("stops");
    assert!(
        stop.contains(&format!("store format {}", STORE_FORMAT + 1)),
        "{stop}"
    );
    // An object kind added later decodes as no object at all.
    let unknown_object = StoreActionBatch {
        actions: vec![create(None)],
        format: STORE_FORMAT,
    };
    let stop = store
        .state()
        .apply(6, &unknown_object.encode_to_vec())
        .expect_err("stops");
    assert!(stop.contains("object of a kind"), "{stop}");
    assert!(
        store.state().apply(7, b"\xff\xff\xff").is_err(),
        "garbage stops it too"
    );
    assert!(store.view(|r| r.service("s1").is_none()), "nothing applied");
    // Batches from before the format field (0) and of this format apply.
    let old = StoreActionBatch {
        actions: vec![create(web)],
        format: 0,
    };
    let response = store
        .state()
        .apply(8, &old.encode_to_vec())
        .expect("applied");
    assert_eq!(apply_response(&response), Ok(()));
    assert!(store.view(|r| r.service("s1").is_some()));
}

use prost::Message;
use shoal_proto::{
    Service, ServiceSpec, StoreActionBatch, StoreEntry, Task, TaskState, TaskStatus,
};
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
    assert_eq!(version, 1, "version is the sequence number of the write");
}

#[tokio::test]
async fn spec_index_moves_with_the_spec_and_stays_through_status_writes() {
    let store = Store::in_memory();
    store
        .update(|tx| tx.create(Object::Service(service("s1", "web"))))
        .await
        .expect("create");
    let meta = |store: &Store| store.view(|r| r.service("s1").and_then(|s| s.meta));
    let created = meta(&store).expect("meta");
    assert_eq!(
        created.spec_index, created.version,
        "a create sets the spec"
    );
    // A status write (a rolling update's progress) leaves the spec's version alone.
    let mut status = store.view(|r| r.service("s1").cloned()).expect("stored");
    status.update_status = Some(shoal_proto::UpdateStatus {
        message: "update in progress".into(),
        ..Default::default()
    });
    store
        .update(|tx| tx.update(Object::Service(status)))
        .await
        .expect("status write");
    let after_status = meta(&store).expect("meta");
    assert!(after_status.version > created.version);
    assert_eq!(after_status.spec_index, created.spec_index);
    // A spec write moves it to its own version.
    let mut spec = store.view(|r| r.service("s1").cloned()).expect("stored");
    spec.spec.get_or_insert_with(Default::default).replicas = 3;
    store
        .update(|tx| tx.update(Object::Service(spec)))
        .await
        .expect("spec write");
    let after_spec = meta(&store).expect("meta");
    assert_eq!(after_spec.spec_index, after_spec.version);
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
    let batch = next_batch(
        &store,
        vec![shoal_proto::StoreAction {
            kind: shoal_proto::store_action::Kind::Update as i32,
            object: Some(service_action(stale)),
        }],
    );
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
        Ok(Event::Created(o)) if matches!(o, Stored::Service(_))
    ));
    assert!(matches!(
        watch.recv().await,
        Ok(Event::Removed(o)) if matches!(o, Stored::Service(_))
    ));
}

#[tokio::test]
async fn snapshot_round_trips_and_signals_resync() {
    let store = Store::in_memory();
    store
        .update(|tx| tx.create(Object::Service(service("s1", "web"))))
        .await
        .expect("create");
    store
        .update(|tx| {
            tx.create(Object::Node(crate::testutil::node("n1")))?;
            tx.create(Object::Task(Task {
                id: "t1".into(),
                service_id: "s1".into(),
                ..Default::default()
            }))
        })
        .await
        .expect("create");
    let bytes = store.state().snapshot()();
    // Encoded from the tables as a copy of them encodes.
    assert_eq!(bytes, store.state().export().encode_to_vec());
    let other = StoreState::new();
    let mut watch = other.subscribe();
    other.restore(&bytes).expect("restore");
    assert_eq!(other.read().services.len(), 1);
    assert_eq!(other.read().tasks.len(), 1);
    assert_eq!(other.read().nodes.len(), 1);
    assert_eq!(other.read().seq, store.state().read().seq);
    assert_eq!(other.read().last_batch, store.state().read().last_batch);
    assert_eq!(watch.recv().await.ok(), Some(Event::Resync));
}

#[test]
fn lookup_by_name_and_prefix() {
    let mut tables = Tables::default();
    for (id, name) in [("abc123", "web"), ("abd456", "db")] {
        tables
            .services
            .insert(id.into(), std::sync::Arc::new(service(id, name)));
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
    let batch = next_batch(
        &store,
        vec![
            shoal_proto::StoreAction {
                kind: shoal_proto::store_action::Kind::Create as i32,
                object: Some(service_action(service("s2", "api"))),
            },
            shoal_proto::StoreAction {
                kind: 7,
                object: Some(service_action(stored)),
            },
        ],
    );
    // Through Raft's applier it stops this manager applying the log (never skipped).
    let stop = store
        .state()
        .apply(99, &entry(vec![batch.clone()]))
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
    let web = Some(service_action(service("s1", "web")));
    let newer = StoreEntry {
        batches: vec![next_batch(&store, vec![create(web.clone())])],
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
    let unknown_object = next_batch(&store, vec![create(None)]);
    let stop = store
        .state()
        .apply(6, &entry(vec![unknown_object]))
        .expect_err("stops");
    assert!(stop.contains("object of a kind"), "{stop}");
    assert!(
        store.state().apply(7, b"\xff\xff\xff").is_err(),
        "garbage stops it too"
    );
    assert!(store.view(|r| r.service("s1").is_none()), "nothing applied");
    // Batches from before the format field (0), and lone batches of format 1, apply: their
    // objects take the log index as version, and the sequence goes on above it.
    let old = StoreActionBatch {
        actions: vec![create(web)],
        format: 0,
        ..Default::default()
    };
    let response = store
        .state()
        .apply(8, &old.encode_to_vec())
        .expect("applied");
    assert!(matches!(apply_response(&response).as_deref(), Ok([Ok(())])));
    let api = Some(service_action(service("s2", "api")));
    let format1 = StoreActionBatch {
        actions: vec![create(api)],
        format: 1,
        ..Default::default()
    };
    store
        .state()
        .apply(12, &format1.encode_to_vec())
        .expect("applied");
    assert_eq!(
        store.view(|r| r.service("s1").map(|s| s.version())),
        Some(8)
    );
    assert_eq!(
        store.view(|r| r.service("s2").map(|s| s.version())),
        Some(12)
    );
    store
        .update(|tx| tx.create(Object::Service(service("s3", "db"))))
        .await
        .expect("a format 2 write after them");
    assert_eq!(
        store.view(|r| r.service("s3").map(|s| s.version())),
        Some(13)
    );
}

#[tokio::test]
async fn a_batch_built_on_a_write_that_did_not_commit_is_refused_whole() {
    let store = Store::in_memory();
    store
        .update(|tx| tx.create(Object::Service(service("s1", "web"))))
        .await
        .expect("create");
    let create = shoal_proto::StoreAction {
        kind: shoal_proto::store_action::Kind::Create as i32,
        object: Some(service_action(service("s2", "api"))),
    };
    // Built on a batch that never committed, and in its place in the sequence.
    let mut skipping = next_batch(&store, vec![create]);
    skipping.parent = 77;
    let response = store
        .state()
        .apply(20, &entry(vec![skipping]))
        .expect("read, and refused");
    let results = apply_response(&response).expect("decodes");
    assert!(
        matches!(
            results.as_slice(),
            [Err(StoreError::Stale { seq: 2, applied: 1 })]
        ),
        "{results:?}"
    );
    assert!(store.view(|r| r.service("s2").is_none()), "nothing applied");
}

/// A format-2 batch of `actions` that follows the store's last.
fn next_batch(store: &Store, actions: Vec<shoal_proto::StoreAction>) -> StoreActionBatch {
    StoreActionBatch {
        actions,
        format: STORE_FORMAT,
        seq: store.state().read().seq + 1,
        id: rand::random::<u64>().max(1),
        parent: store.state().read().last_batch,
    }
}

/// A log entry of `batches`, encoded.
fn entry(batches: Vec<StoreActionBatch>) -> Vec<u8> {
    StoreEntry {
        format: STORE_FORMAT,
        batches,
    }
    .encode_to_vec()
}

#[tokio::test]
async fn a_services_tasks_are_found_by_index_through_writes_and_a_restore() {
    let store = Store::in_memory();
    let task = |id: &str, service: &str| {
        Object::Task(Task {
            id: id.into(),
            service_id: service.into(),
            ..Default::default()
        })
    };
    store
        .update(|tx| {
            for (id, service) in [("t1", "a"), ("t2", "b"), ("t3", "a")] {
                tx.create(task(id, service))?;
            }
            Ok::<_, StoreError>(())
        })
        .await
        .expect("create");
    let of = |store: &Store, service: &str| {
        store.view(|r| {
            r.tasks_of_service(service)
                .map(|t| t.id.clone())
                .collect::<Vec<_>>()
        })
    };
    assert_eq!(of(&store, "a"), ["t1", "t3"]);
    let t3 = store.view(|r| r.task("t3").cloned()).expect("t3");
    store
        .update(|tx| {
            tx.remove(Object::Task(t3));
            Ok::<_, StoreError>(())
        })
        .await
        .expect("remove");
    assert_eq!(of(&store, "a"), ["t1"]);
    assert_eq!(of(&store, "b"), ["t2"]);
    let restored = Store::in_memory();
    restored
        .state()
        .restore(&store.state().snapshot()())
        .expect("restore");
    assert_eq!(of(&restored, "a"), ["t1"]);
    assert!(of(&restored, "c").is_empty());
}

/// The name index and the set of services publishing ports follow every write, and a
/// transaction sees its own writes through them.
#[tokio::test]
async fn service_indexes_follow_writes_and_a_transaction_sees_its_own() {
    let publishing = |id: &str, name: &str| {
        let mut s = service(id, name);
        if let Some(spec) = s.spec.as_mut() {
            spec.endpoint = Some(shoal_proto::EndpointSpec {
                ports: vec![shoal_proto::PortConfig {
                    target_port: 80,
                    published_port: 8080,
                    ..Default::default()
                }],
                ..Default::default()
            });
        }
        s
    };
    let ids = |found: Vec<std::borrow::Cow<'_, Service>>| {
        let mut ids: Vec<String> = found.iter().map(|s| s.id.clone()).collect();
        ids.sort();
        ids
    };
    let store = Store::in_memory();
    store
        .update(|tx| {
            tx.create(Object::Service(publishing("s1", "web")))?;
            tx.create(Object::Service(service("s2", "db")))?;
            // Its own creations, before they commit.
            assert_eq!(ids(tx.services_named_now("web")), ["s1"]);
            assert_eq!(ids(tx.publishing_services_now()), ["s1"]);
            Ok::<_, StoreError>(())
        })
        .await
        .expect("create");
    let stored = |id: &str| store.view(|r| r.service(id).cloned()).expect("stored");
    let s1 = stored("s1");
    store
        .update(|tx| {
            let mut s2 = publishing("s2", "db");
            s2.meta = stored("s2").meta;
            tx.update(Object::Service(s2))?;
            tx.remove(Object::Service(s1));
            assert!(tx.services_named_now("web").is_empty(), "removed here");
            assert_eq!(ids(tx.publishing_services_now()), ["s2"]);
            Ok::<_, StoreError>(())
        })
        .await
        .expect("update");
    store.view(|r| {
        assert_eq!(r.services_named("web").count(), 0);
        let db: Vec<_> = r.services_named("db").map(|s| s.id.clone()).collect();
        assert_eq!(db, ["s2"]);
        let publishing: Vec<_> = r.publishing_services().map(|s| s.id.clone()).collect();
        assert_eq!(publishing, ["s2"]);
        assert!(matches!(r.find_service("db"), tx::Lookup::Found(s) if s.id == "s2"));
        assert!(matches!(r.find_service("s"), tx::Lookup::Found(s) if s.id == "s2"));
    });
}

/// A service as a store action carries it.
fn service_action(service: Service) -> shoal_proto::store_action::Object {
    shoal_proto::store_action::Object::Service(Box::new(service))
}

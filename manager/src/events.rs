//! The event stream (`shoal events`, Docker's `/events`): the store's journal from a
//! position or a time, then live, until a time or until the client goes.

use std::sync::Arc;
use std::time::Duration;

use shoal_proto::{ClusterEvent, WatchEventsMessage, WatchEventsRequest};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::store::StoreState;

/// Events sent in one message at most.
const BATCH: usize = 500;

pub type EventStream = ReceiverStream<Result<WatchEventsMessage, Status>>;

/// Stream `request`'s events from `state`'s journal.
pub fn watch(state: Arc<StoreState>, request: WatchEventsRequest) -> EventStream {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let journal = state.journal();
        let mut changed = journal.subscribe();
        let mut after = request.after.as_ref().map(|p| (p.seq, p.index));
        let mut since = request.since_ms;
        if after.is_none() && since == 0 {
            // Only what happens from now on.
            after = Some(journal.newest());
        }
        let until = request.until_ms;
        let wanted =
            |e: &ClusterEvent| request.types.is_empty() || request.types.contains(&e.r#type);
        loop {
            changed.borrow_and_update();
            let events = match journal.after(after, since, BATCH) {
                Ok(events) => events,
                Err(gone) => {
                    let _ = tx.send(Err(Status::out_of_range(gone.to_string()))).await;
                    return;
                }
            };
            since = 0;
            if let Some(last) = events.last() {
                after = last.position.as_ref().map(|p| (p.seq, p.index));
                let past_until = until > 0 && events.iter().any(|e| e.time_ms > until);
                let events: Vec<ClusterEvent> = events
                    .into_iter()
                    .take_while(|e| until == 0 || e.time_ms <= until)
                    .filter(|e| wanted(e))
                    .collect();
                if !events.is_empty() && tx.send(Ok(WatchEventsMessage { events })).await.is_err() {
                    return;
                }
                if past_until {
                    return;
                }
                continue;
            }
            let left = if until > 0 {
                let left = until - crate::clock::now_ms();
                if left <= 0 {
                    return;
                }
                Duration::from_millis(left as u64)
            } else {
                Duration::from_secs(3600)
            };
            tokio::select! {
                change = changed.changed() => if change.is_err() { return },
                _ = tokio::time::sleep(left) => if until > 0 { return },
                _ = tx.closed() => return,
            }
        }
    });
    ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use shoal_proto::{EventPosition, Service, ServiceSpec};

    use super::*;
    use crate::store::{Object, Store};

    async fn create(store: &Store, id: &str) {
        let service = Service {
            id: id.into(),
            spec: Some(ServiceSpec {
                name: id.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        store
            .update(|tx| tx.create(Object::Service(service)))
            .await
            .expect("create");
    }

    #[tokio::test]
    async fn a_stream_resumes_after_its_last_position_and_ends_at_until() {
        let store = Store::in_memory();
        create(&store, "a").await;
        create(&store, "b").await;
        let request = WatchEventsRequest {
            since_ms: 1,
            types: vec!["service".into()],
            ..Default::default()
        };
        let mut stream = watch(store.state().clone(), request);
        let first = stream.next().await.expect("a message").expect("ok");
        let ids: Vec<_> = first.events.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        // Live: a new change comes without asking again.
        create(&store, "c").await;
        let live = stream.next().await.expect("a message").expect("ok");
        assert_eq!(live.events[0].id, "c");
        drop(stream);

        // A resume after "a" gets b and c, once each, then ends at `until`.
        let a = first.events[0].position;
        let resume = WatchEventsRequest {
            after: a.map(|p| EventPosition { ..p }),
            until_ms: crate::clock::now_ms() + 200,
            ..Default::default()
        };
        let resumed: Vec<String> = watch(store.state().clone(), resume)
            .flat_map(|m| futures::stream::iter(m.expect("ok").events))
            .map(|e| e.id)
            .collect()
            .await;
        assert_eq!(resumed, ["b", "c"]);
    }
}

//! Health changes of this node's containers as the Docker Engine announces them: one event
//! stream per executor (`health_status` and `die` of containers labelled with the node's
//! id), shared by every controller waiting on a healthcheck, so a verdict is seen when the
//! engine gives it and no task polls `inspect` while nothing changes.
//!
//! The stream asks for events since the moment before it (re)connects, which the engine
//! replays, so a reconnect loses nothing. A waiter still looks again after
//! [`SAFETY_NET`] in case the stream is down for longer than the engine keeps events.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::query_parameters::EventsOptions;
use bollard::Docker;
use futures::StreamExt;
use shoal_proto::names;
use tokio::sync::broadcast;

/// Longest a waiter goes without looking at its container itself.
pub const SAFETY_NET: Duration = Duration::from_secs(30);
/// Pause before reconnecting a broken stream.
const RECONNECT: Duration = Duration::from_secs(1);

/// The ids of containers whose health changed or whose process died, as they happen.
pub struct HealthEvents {
    tx: broadcast::Sender<String>,
}

impl HealthEvents {
    /// Starts following `docker`'s events for `node_id`'s containers; the stream stops
    /// when the returned value is dropped.
    pub fn follow(docker: Docker, node_id: String) -> Arc<Self> {
        let events = Arc::new(Self {
            tx: broadcast::channel(256).0,
        });
        tokio::spawn(run(docker, node_id, Arc::downgrade(&events)));
        events
    }

    /// Container ids, from now on. Subscribe before looking at the container, so nothing
    /// falls between the look and the wait.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.tx.subscribe()
    }
}

/// Waits until `rx` names `container_id` (or lags, or the stream is gone), or
/// [`SAFETY_NET`] passes: the caller looks at the container again in every case.
pub async fn changed(rx: &mut broadcast::Receiver<String>, container_id: &str) {
    let wait = async {
        loop {
            match rx.recv().await {
                Ok(id) if id == container_id => return,
                Ok(_) => continue,
                Err(_) => return,
            }
        }
    };
    let _ = tokio::time::timeout(SAFETY_NET, wait).await;
}

async fn run(docker: Docker, node_id: String, events: Weak<HealthEvents>) {
    let mut since = now_secs();
    loop {
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            (
                "event".to_string(),
                vec!["health_status".to_string(), "die".to_string()],
            ),
            (
                "label".to_string(),
                vec![format!("{}={node_id}", names::LABEL_NODE_ID)],
            ),
        ]);
        let options = EventsOptions {
            since: Some(since.clone()),
            until: None,
            filters: Some(filters),
        };
        let mut stream = docker.events(Some(options));
        loop {
            let item = stream.next().await;
            let Some(events) = events.upgrade() else {
                return;
            };
            match item {
                Some(Ok(event)) => {
                    if let Some(t) = event.time_nano {
                        since = format!("{}.{:09}", t / 1_000_000_000, t % 1_000_000_000);
                    }
                    if let Some(id) = event.actor.and_then(|a| a.id) {
                        let _ = events.tx.send(id);
                    }
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "docker event stream broke; reconnecting");
                    break;
                }
                None => break,
            }
        }
        tokio::time::sleep(RECONNECT).await;
        if events.strong_count() == 0 {
            return;
        }
    }
}

/// Now as docker's `since` takes it: Unix seconds with a fraction.
fn now_secs() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

//! `/events`: the swarm's changes as Docker's event messages, one JSON object per line,
//! from the manager's journal: `since` replays what is kept, `until` ends the stream once
//! it passes, filters as dockerd takes them (`type`, `event`, `scope`, and the object
//! kinds by id or name).

use bytes::Bytes;
use futures::StreamExt;
use serde_json::json;
use shoal_proto as pb;

use crate::backend::Backend;
use crate::clock;
use crate::error::{ApiError, ApiResult};
use crate::filters::Filters;
use crate::http::{Reply, Request};

const FILTERS: &[&str] = &[
    "type",
    "event",
    "scope",
    "service",
    "node",
    "network",
    "secret",
    "config",
    "label",
    "container",
    "image",
    "volume",
    "daemon",
    "plugin",
];
/// Docker's event types that are Shoal's objects; the engine's own (container, image,
/// ...) never come from here.
const TYPES: &[&str] = &["service", "node", "network", "secret", "config"];

pub async fn stream(backend: &Backend, request: &Request) -> ApiResult<Reply> {
    let filters = Filters::parse(request.param("filters"), FILTERS)?;
    let now = std::time::SystemTime::now();
    let ms = |name: &str| -> ApiResult<i64> {
        match request.param(name).unwrap_or("") {
            "" => Ok(0),
            value => clock::parse_instant(value, now)
                .map(|ns| (ns / 1_000_000) as i64)
                .map_err(ApiError::bad_request),
        }
    };
    let since_ms = ms("since")?;
    let until_ms = ms("until")?;
    // Tasks are Shoal's addition; ask for them by name.
    let types: Vec<String> = if filters.has("type") {
        filters
            .values("type")
            .iter()
            .filter(|t| TYPES.contains(&t.as_str()) || t.as_str() == "task")
            .cloned()
            .collect()
    } else {
        TYPES.iter().map(|t| t.to_string()).collect()
    };
    let local_only = !filters.any("scope", |s| s == "swarm") || types.is_empty();
    let watch = pb::WatchEventsRequest {
        after: None,
        since_ms: if request.param("since").is_some() {
            since_ms.max(1)
        } else {
            0
        },
        // Only the engine's own events asked for: an open stream that stays quiet, as a
        // dockerd with no containers gives.
        until_ms,
        types,
    };
    let stream = backend
        .answer(
            backend
                .events
                .clone()
                .watch(tonic::Request::new(watch))
                .await,
        )
        .await?;
    let lines = stream.flat_map(move |message| {
        let lines: Vec<Bytes> = match message {
            Ok(message) if !local_only => message
                .events
                .iter()
                .filter(|e| wanted(&filters, e))
                .map(|e| Bytes::from(format!("{}\n", docker_message(e))))
                .collect(),
            _ => Vec::new(),
        };
        futures::stream::iter(lines)
    });
    Ok(Reply::stream("application/json", lines))
}

fn wanted(filters: &Filters, event: &pb::ClusterEvent) -> bool {
    let name = event
        .attributes
        .get("name")
        .map(String::as_str)
        .unwrap_or("");
    let names = |v: &str| v == event.id || v == name || event.id.starts_with(v);
    let kind = |k: &str| !filters.has(k) || (event.r#type == k && filters.any(k, names));
    filters.any("event", |a| a == event.action)
        && ["service", "node", "network", "secret", "config"]
            .iter()
            .all(|k| kind(k))
}

/// Docker's `events.Message`.
fn docker_message(event: &pb::ClusterEvent) -> serde_json::Value {
    json!({
        "Type": event.r#type,
        "Action": event.action,
        "Actor": {"ID": event.id, "Attributes": event.attributes},
        "scope": "swarm",
        "time": event.time_ms / 1000,
        "timeNano": i128::from(event.time_ms) * 1_000_000,
    })
}

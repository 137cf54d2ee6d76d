//! The recent changes of the store, as events with a position: what `shoal events` and
//! Docker's `/events` stream.
//!
//! Every manager applies the same batches in the same order, so every manager's journal
//! holds the same events at the same positions (the batch's sequence number and the
//! change's place in it). A client that resumes after its last position, from any
//! manager, after any leader change, gets no event twice and misses none, as long as the
//! position is still kept ([`CAPACITY`] events, the newest).
//!
//! An entry is a summary (kind, action, id, a few attributes), not the object: the journal
//! must not keep old versions of objects alive.

use std::collections::VecDeque;
use std::sync::Mutex;

use shoal_proto::{ClusterEvent, EventPosition};
use tokio::sync::watch;

use super::{Event, Stored};

/// Events kept: a few minutes of a busy cluster.
pub const CAPACITY: usize = 50_000;

pub struct Journal {
    entries: Mutex<Kept>,
    /// The newest position, for readers waiting on new events.
    newest: watch::Sender<(u64, u32)>,
}

#[derive(Default)]
struct Kept {
    entries: VecDeque<ClusterEvent>,
    /// Events at or before this position were lost (a snapshot replaced the state): a
    /// reader resuming from before it cannot be served without a gap.
    lost_through: (u64, u32),
}

/// Why a resume cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JournalError {
    #[error("events after {seq}.{index} are no longer kept on this manager (it keeps the newest {CAPACITY}; a snapshot may have replaced the rest): start again without a position")]
    Gone { seq: u64, index: u32 },
}

impl Default for Journal {
    fn default() -> Self {
        Journal {
            entries: Mutex::new(Kept::default()),
            newest: watch::channel((0, 0)).0,
        }
    }
}

fn key(p: &Option<EventPosition>) -> (u64, u32) {
    p.as_ref().map_or((0, 0), |p| (p.seq, p.index))
}

impl Journal {
    /// Record the events of the batch at `seq`, applied at `now_ms`.
    pub(crate) fn record(&self, seq: u64, events: &[Event], now_ms: i64) {
        if events.is_empty() {
            return;
        }
        let mut kept = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let mut last = (0, 0);
        for (index, event) in events.iter().enumerate() {
            let index = index as u32;
            if let Some(mut entry) = summary(event, now_ms) {
                entry.position = Some(EventPosition { seq, index });
                last = (seq, index);
                kept.entries.push_back(entry);
            }
        }
        while kept.entries.len() > CAPACITY {
            if let Some(gone) = kept.entries.pop_front() {
                kept.lost_through = key(&gone.position);
            }
        }
        drop(kept);
        if last != (0, 0) {
            self.newest.send_replace(last);
        }
    }

    /// The state was replaced by a snapshot at `seq`: what came before is not kept.
    pub(crate) fn lose_through(&self, seq: u64) {
        let mut kept = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        kept.entries.clear();
        kept.lost_through = (seq, u32::MAX);
        drop(kept);
        self.newest.send_replace((seq, u32::MAX));
    }

    /// Events after `after` (`None`: every event kept) and at or after `since_ms`, at most
    /// `limit`.
    pub fn after(
        &self,
        after: Option<(u64, u32)>,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<ClusterEvent>, JournalError> {
        let kept = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(after) = after {
            if after < kept.lost_through {
                return Err(JournalError::Gone {
                    seq: after.0,
                    index: after.1,
                });
            }
        }
        let from = match after {
            Some(after) => kept.entries.partition_point(|e| key(&e.position) <= after),
            None => 0,
        };
        Ok(kept
            .entries
            .range(from..)
            .filter(|e| e.time_ms >= since_ms)
            .take(limit)
            .cloned()
            .collect())
    }

    /// The newest position (0.0 when nothing was recorded).
    pub fn newest(&self) -> (u64, u32) {
        *self.newest.borrow()
    }

    /// A receiver that changes with every new event.
    pub fn subscribe(&self) -> watch::Receiver<(u64, u32)> {
        self.newest.subscribe()
    }
}

/// An event as Docker's events name it: the object's type, `create`/`update`/`remove`,
/// its id and a few attributes (its name first).
fn summary(event: &Event, now_ms: i64) -> Option<ClusterEvent> {
    let (action, object) = match event {
        Event::Created(o) => ("create", o),
        Event::Updated(o) => ("update", o),
        Event::Removed(o) => ("remove", o),
        Event::Resync => return None,
    };
    let mut attributes = std::collections::HashMap::new();
    let mut attr = |k: &str, v: &str| {
        if !v.is_empty() {
            attributes.insert(k.to_string(), v.to_string());
        }
    };
    let (kind, id, meta) = match object {
        Stored::Node(n) => {
            attr(
                "name",
                n.description.as_ref().map_or("", |d| d.hostname.as_str()),
            );
            if let Some(status) = &n.status {
                attr(
                    "state.new",
                    &lower_name(status.state().as_str_name(), "NODE_STATE_"),
                );
            }
            ("node", &n.id, &n.meta)
        }
        Stored::Service(s) => {
            attr("name", s.name());
            if let Some(update) = &s.update_status {
                attr(
                    "updatestate.new",
                    &lower_name(update.state().as_str_name(), "UPDATE_STATE_"),
                );
            }
            ("service", &s.id, &s.meta)
        }
        Stored::Task(t) => {
            attr(
                "name",
                &shoal_proto::names::task_name(&t.service_name, t.slot, &t.node_id),
            );
            attr("service.id", &t.service_id);
            attr("node.id", &t.node_id);
            attr("state.new", t.state().docker_name());
            attr("desiredstate", t.desired().docker_name());
            ("task", &t.id, &t.meta)
        }
        Stored::Network(n) => {
            attr("name", n.name());
            ("network", &n.id, &n.meta)
        }
        Stored::Secret(s) => {
            attr("name", s.spec.as_ref().map_or("", |s| s.name.as_str()));
            ("secret", &s.id, &s.meta)
        }
        Stored::Config(c) => {
            attr("name", c.spec.as_ref().map_or("", |s| s.name.as_str()));
            ("config", &c.id, &c.meta)
        }
        Stored::Stack(s) => {
            attr("name", s.name());
            ("stack", &s.id, &s.meta)
        }
        Stored::Cluster(c) => ("cluster", &c.id, &c.meta),
    };
    let updated_at = meta.as_ref().map_or(0, |m| m.updated_at_ms);
    Some(ClusterEvent {
        position: None,
        // The writer's time when the object carries one (the same on every manager);
        // the apply time for removals and objects without one.
        time_ms: if action != "remove" && updated_at > 0 {
            updated_at
        } else {
            now_ms
        },
        r#type: kind.into(),
        action: action.into(),
        id: id.clone(),
        attributes,
    })
}

/// "NODE_STATE_READY" as Docker names it: "ready".
fn lower_name(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix)
        .unwrap_or(name)
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use shoal_proto::{Meta, Service, ServiceSpec};

    use super::*;

    fn service(id: &str, at: i64) -> Event {
        Event::Created(Stored::Service(Arc::new(Service {
            id: id.into(),
            meta: Some(Meta {
                updated_at_ms: at,
                ..Default::default()
            }),
            spec: Some(ServiceSpec {
                name: format!("svc-{id}"),
                ..Default::default()
            }),
            ..Default::default()
        })))
    }

    #[test]
    fn a_reader_resumes_after_its_position_with_nothing_twice_and_nothing_missed() {
        let journal = Journal::default();
        journal.record(5, &[service("a", 100), service("b", 100)], 0);
        journal.record(6, &[service("c", 200)], 0);
        let all = journal.after(None, 0, 100).expect("kept");
        let ids: Vec<_> = all.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(
            all[0].attributes.get("name").map(String::as_str),
            Some("svc-a")
        );
        let rest = journal.after(Some((5, 0)), 0, 100).expect("kept");
        assert_eq!(
            rest.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            ["b", "c"]
        );
        assert!(journal
            .after(Some((6, 0)), 0, 100)
            .expect("kept")
            .is_empty());
        let since = journal.after(None, 150, 100).expect("kept");
        assert_eq!(since.len(), 1);
        assert_eq!(journal.newest(), (6, 0));

        journal.lose_through(9);
        assert!(
            journal.after(Some((6, 0)), 0, 100).is_err(),
            "a gap is refused"
        );
        journal.record(10, &[service("d", 300)], 0);
        let after_gap = journal.after(Some((9, u32::MAX)), 0, 100).expect("kept");
        assert_eq!(after_gap.len(), 1);
    }

    #[test]
    fn only_the_newest_are_kept() {
        let journal = Journal::default();
        for seq in 1..=(CAPACITY as u64 + 10) {
            journal.record(seq, &[service("x", 1)], 0);
        }
        assert!(journal.after(Some((1, 0)), 0, 10).is_err());
        let newest = journal
            .after(Some((CAPACITY as u64 + 9, 0)), 0, 10)
            .expect("kept");
        assert_eq!(newest.len(), 1);
    }
}

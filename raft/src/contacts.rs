//! What this member last heard from each peer: when a peer last answered one of its calls
//! or called it (a leader's AppendEntries, a candidate's vote request), and why the last
//! call to it failed since. From this a member says which managers it cannot reach when
//! it has no quorum, and a follower tells a live leader from one gone silent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::NodeId;

#[derive(Clone, Default)]
pub(crate) struct Contacts(Arc<Mutex<HashMap<NodeId, Contact>>>);

#[derive(Clone, Debug, Default)]
struct Contact {
    heard: Option<Instant>,
    /// The last failed call's error, cleared by the next contact.
    failure: Option<String>,
}

/// One peer as [`Contacts::report`] sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerContact {
    pub id: NodeId,
    pub addr: String,
    /// How long ago it was last heard from; `None` if never.
    pub silent_for: Option<Duration>,
    /// Why the last call to it failed, if the last call failed.
    pub failure: Option<String>,
}

impl Contacts {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<NodeId, Contact>) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// `peer` answered a call, or called this member.
    pub(crate) fn heard(&self, peer: NodeId) {
        self.with(|m| {
            let c = m.entry(peer).or_default();
            c.heard = Some(Instant::now());
            c.failure = None;
        });
    }

    /// A call to `peer` failed with `why`.
    pub(crate) fn failed(&self, peer: NodeId, why: String) {
        self.with(|m| m.entry(peer).or_default().failure = Some(why));
    }

    /// `peers` (id, address) as last heard.
    pub(crate) fn report(&self, peers: &[(NodeId, String)]) -> Vec<PeerContact> {
        self.with(|m| {
            peers
                .iter()
                .map(|(id, addr)| {
                    let c = m.get(id).cloned().unwrap_or_default();
                    PeerContact {
                        id: *id,
                        addr: addr.clone(),
                        silent_for: c.heard.map(|t| t.elapsed()),
                        failure: c.failure,
                    }
                })
                .collect()
        })
    }
}

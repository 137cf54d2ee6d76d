//! The production [`Proposer`]: store entries go through Raft.

use std::time::Duration;

use async_trait::async_trait;
use prost::Message;
use shoal_proto::StoreEntry;
use shoal_raft::{RaftError, RaftNode};

use crate::metrics::{recorded, since, InFlight};
use crate::store::{apply_response, Proposer, StoreError, MAX_BATCH_BYTES};

// The store's entries (batches of MAX_BATCH_BYTES in all, and per batch a field tag and
// length: at most 1024 batches of 8 bytes) stay within what Raft takes.
const _: () = assert!(MAX_BATCH_BYTES + 1024 * 8 + 16 <= shoal_raft::MAX_ENTRY_BYTES);

/// How long a new leader's first write waits for the entries of earlier terms to apply.
const SETTLE: Duration = Duration::from_secs(2);

pub struct RaftProposer {
    raft: RaftNode,
}

impl RaftProposer {
    pub fn new(raft: RaftNode) -> Self {
        Self { raft }
    }
}

#[async_trait]
impl Proposer for RaftProposer {
    async fn propose(&self, entry: StoreEntry) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let started = std::time::Instant::now();
        let _in_flight = InFlight::start();
        let (_index, response) = self
            .raft
            .propose(entry.encode_to_vec())
            .await
            .map_err(store_error)?;
        recorded().raft_transaction.observe(since(started));
        apply_response(&response)
    }

    fn require_leader(&self) -> Result<(), StoreError> {
        self.raft.require_leader().map_err(store_error)
    }

    async fn settle(&self) {
        self.raft.settle(SETTLE).await;
    }
}

/// What a Raft refusal means to the store's callers.
fn store_error(e: RaftError) -> StoreError {
    match e {
        RaftError::NotLeader { leader_addr, .. } => StoreError::NotLeader { leader_addr },
        e @ (RaftError::NoQuorum(_)
        | RaftError::Unconfirmed(_)
        | RaftError::NoLeader(_)
        | RaftError::NoSpace(_)
        | RaftError::Stopped(_)) => StoreError::Unavailable(e.to_string()),
        e => StoreError::Propose(e.to_string()),
    }
}

//! The production [`Proposer`]: store batches go through Raft.

use async_trait::async_trait;
use prost::Message;
use shoal_proto::StoreActionBatch;
use shoal_raft::{RaftError, RaftNode};

use crate::store::{apply_response, Proposer, StoreError};

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
    async fn propose(&self, batch: StoreActionBatch) -> Result<(), StoreError> {
        match self.raft.propose(batch.encode_to_vec()).await {
            Ok((_index, response)) => apply_response(&response).map_err(StoreError::Propose),
            Err(RaftError::NotLeader { leader_addr, .. }) => {
                Err(StoreError::NotLeader { leader_addr })
            }
            Err(
                e @ (RaftError::NoQuorum(_)
                | RaftError::Unconfirmed(_)
                | RaftError::NoLeader(_)
                | RaftError::NoSpace(_)
                | RaftError::Stopped(_)),
            ) => Err(StoreError::Unavailable(e.to_string())),
            Err(e) => Err(StoreError::Propose(e.to_string())),
        }
    }

    fn require_leader(&self) -> Result<(), StoreError> {
        let leadership = self.raft.leadership().borrow().clone();
        if leadership.is_leader {
            Ok(())
        } else {
            Err(StoreError::NotLeader {
                leader_addr: leadership.leader_addr,
            })
        }
    }
}

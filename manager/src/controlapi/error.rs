//! The Control API's errors, and the one place they become `tonic::Status`.

use tonic::Status;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{0}")]
    Invalid(String),
    #[error("service {0} not found")]
    ServiceNotFound(String),
    #[error("node {0} not found")]
    NodeNotFound(String),
    #[error("network {0} not found")]
    NetworkNotFound(String),
    /// Any other object (secrets, configs): the message says which and what to do.
    #[error("{0}")]
    NotFound(String),
    #[error("stack {0} not found: `shoal stack ls` lists the stacks")]
    StackNotFound(String),
    #[error("{kind} {key} is ambiguous: it matches {count} objects; use more of the id")]
    Ambiguous {
        kind: &'static str,
        key: String,
        count: usize,
    },
    #[error("service {0} already exists: choose another --name, or change it with `shoal service update`")]
    NameTaken(String),
    /// Another object (network, secret, config) has the name; the message says which.
    #[error("{0}")]
    Exists(String),
    #[error(
        "update out of sequence: {kind} {name} changed since it was read; read it again and retry"
    )]
    OutOfSequence { kind: &'static str, name: String },
    /// The request is valid but the cluster's state forbids it now (quorum, last manager,
    /// a node still up).
    #[error("{0}")]
    Refused(String),
    #[error(
        "this node is not the leader and cannot forward the request yet; try the leader at {0}"
    )]
    NotLeader(String),
    /// The change cannot commit now (no quorum, no leader).
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for ControlError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotLeader { leader_addr } => ControlError::NotLeader(
                leader_addr.unwrap_or_else(|| "(no leader elected yet)".into()),
            ),
            StoreError::Conflict { kind, ref id, .. } => ControlError::OutOfSequence {
                kind,
                name: id.clone(),
            },
            StoreError::Unavailable(why) => ControlError::Unavailable(why),
            e @ StoreError::TooLarge { .. } => ControlError::Invalid(e.to_string()),
            other => ControlError::Store(other),
        }
    }
}

impl From<ControlError> for Status {
    fn from(e: ControlError) -> Self {
        let message = e.to_string();
        match e {
            ControlError::Invalid(_) => Status::invalid_argument(message),
            ControlError::ServiceNotFound(_)
            | ControlError::NodeNotFound(_)
            | ControlError::NetworkNotFound(_)
            | ControlError::StackNotFound(_)
            | ControlError::NotFound(_) => Status::not_found(message),
            ControlError::Ambiguous { .. } => Status::failed_precondition(message),
            ControlError::NameTaken(_) | ControlError::Exists(_) => Status::already_exists(message),
            ControlError::OutOfSequence { .. } => Status::aborted(message),
            ControlError::Refused(_) => Status::failed_precondition(message),
            ControlError::NotLeader(_) | ControlError::Unavailable(_) => {
                Status::unavailable(message)
            }
            ControlError::Store(_) => Status::internal(message),
        }
    }
}

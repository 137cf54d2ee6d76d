//! Who is calling: the node a verified client certificate names.
//!
//! Every per-node service (the dispatcher, the log broker, Raft membership) takes the
//! caller's node id and role from here, never from a message body; a body that names
//! another node is refused with [`must_name`]. The TLS layer (`shoal_pki::incoming`) puts the
//! verified identity in each request's extensions; a request without one, or not from this
//! cluster, never gets here (`shoal_pki::AuthLayer` refuses it first), so a missing identity
//! is refused as unauthenticated.

use std::sync::Arc;

use shoal_pki::Identity;
use shoal_proto::Cluster;
use tonic::{Request, Status};

use crate::store::Store;

/// The caller's verified identity.
pub fn identity<T>(request: &Request<T>) -> Result<Identity, Status> {
    shoal_pki::peer_identity(request).ok_or_else(|| {
        Status::unauthenticated(
            "this call needs the caller's node certificate: connect with mutual TLS",
        )
    })
}

/// `Ok` when `named` (a node id a message carries) is empty or the caller's own node;
/// otherwise PermissionDenied naming both, so a node can never speak for another.
pub fn must_name(caller: &Identity, named: &str, what: &str) -> Result<(), Status> {
    if named.is_empty() || named == caller.node_id {
        return Ok(());
    }
    tracing::warn!(caller = %caller.node_id, named = %named, "refused: {what} for another node");
    Err(Status::permission_denied(format!(
        "permission denied: {what} for node {named} needs that node's certificate (the caller's certificate is node {})",
        caller.node_id
    )))
}

const NOT_IN_SWARM: &str = "is not part of the swarm";

/// "This node is not part of the swarm", for a certificate whose node the store does not
/// hold (removed, or never joined).
pub fn not_in_swarm(node_id: &str) -> Status {
    Status::permission_denied(format!(
        "node {node_id} {NOT_IN_SWARM} (it was removed): leave with `shoal swarm leave --force`, then join again with a token from `shoal swarm join-token`"
    ))
}

/// Whether `cluster` records `node_id` as removed (`node rm`): its certificate opens
/// nothing from then on.
pub fn revoked(cluster: &Cluster, node_id: &str) -> bool {
    cluster.removed_nodes.iter().any(|r| r.node_id == node_id)
}

/// The check [`shoal_pki::AuthLayer`] runs on every call that presents a certificate: a
/// removed node's is refused on every service of this manager, with [`not_in_swarm`].
pub fn revocation_gate(store: Store) -> shoal_pki::Gate {
    Arc::new(move |caller: &Identity| {
        let removed = store.view(|r| r.cluster().is_some_and(|c| revoked(c, &caller.node_id)));
        if removed {
            Err(not_in_swarm(&caller.node_id))
        } else {
            Ok(())
        }
    })
}

/// Whether `status` is [`not_in_swarm`]: the node was removed and must stop trying.
pub fn is_not_in_swarm(status: &Status) -> bool {
    status.code() == tonic::Code::PermissionDenied && status.message().contains(NOT_IN_SWARM)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_pki::{PeerInfo, Role};

    fn request_from(identity: Option<Identity>) -> Request<()> {
        let mut request = Request::new(());
        request.extensions_mut().insert(PeerInfo {
            remote_addr: "127.0.0.1:9".parse().expect("addr"),
            identity,
        });
        request
    }

    #[test]
    fn the_caller_is_the_certificate_not_the_body() {
        let w2 = Identity::new("w2", Role::Worker, "c1");
        let caller = identity(&request_from(Some(w2.clone()))).expect("identified");
        assert_eq!(caller, w2);
        assert!(must_name(&caller, "", "a session").is_ok());
        assert!(must_name(&caller, "w2", "a session").is_ok());
        let refused = must_name(&caller, "w3", "a session").expect_err("another node");
        assert_eq!(refused.code(), tonic::Code::PermissionDenied);
        assert_eq!(
            refused.message(),
            "permission denied: a session for node w3 needs that node's certificate (the caller's certificate is node w2)"
        );
        assert!(is_not_in_swarm(&not_in_swarm("w9")));
        assert!(!is_not_in_swarm(&refused));
        let anonymous = identity(&request_from(None)).expect_err("no certificate");
        assert_eq!(anonymous.code(), tonic::Code::Unauthenticated);
        assert!(
            identity(&Request::new(())).is_err(),
            "not served through TLS"
        );
    }
}

//! Per-RPC authorization: who may call which gRPC method, enforced in one tower layer
//! around the whole tonic router.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{self, Either};
use tonic::codegen::http;

use crate::identity::{Identity, Role};
use crate::tls::server::PeerInfo;

/// Who may call a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, with or without a certificate (joining nodes).
    Anyone,
    /// Any node of this cluster, manager or worker.
    Node,
    /// Managers of this cluster only.
    Manager,
    /// Nobody over the network.
    Nobody,
}

/// The policy: which access a gRPC path (`/package.Service/Method`) needs.
pub fn required_access(path: &str) -> Access {
    let Some((service, _method)) = path.strip_prefix('/').and_then(|p| p.split_once('/')) else {
        return Access::Nobody;
    };
    match (service, path) {
        (_, "/shoal.v1.Ca/GetRootCertificate" | "/shoal.v1.Ca/IssueNodeCertificate") => {
            Access::Anyone
        }
        (_, "/shoal.v1.Ca/RenewNodeCertificate") => Access::Node,
        ("shoal.v1.Dispatcher" | "shoal.v1.LogBroker" | "shoal.v1.Images", _) => Access::Node,
        ("shoal.v1.Control" | "shoal.v1.Logs" | "shoal.v1.Raft" | "shoal.v1.RaftMembership", _) => {
            Access::Manager
        }
        _ => Access::Nobody,
    }
}

/// Whether `peer` (the verified client identity, `None` without a certificate) may call
/// `path` on a manager of `cluster_id`. The error is a PermissionDenied status that says
/// what was needed and what the caller presented.
pub fn authorize(
    path: &str,
    peer: Option<&Identity>,
    cluster_id: &str,
) -> Result<(), tonic::Status> {
    let access = required_access(path);
    let needs = match access {
        Access::Anyone => return Ok(()),
        Access::Nobody => {
            return Err(tonic::Status::permission_denied(format!(
                "permission denied: {path} is not served to remote callers"
            )))
        }
        Access::Node => "a node certificate of this cluster",
        Access::Manager => "a manager certificate of this cluster",
    };
    let presented = match peer {
        None => "no certificate".to_string(),
        Some(id) if id.cluster_id != cluster_id => {
            format!("a certificate of cluster {}", id.cluster_id)
        }
        Some(id) => match (access, id.role) {
            (Access::Node, _) | (Access::Manager, Role::Manager) => return Ok(()),
            (_, Role::Worker) => "a worker certificate".to_string(),
            (_, Role::Manager) => "a manager certificate".to_string(),
        },
    };
    Err(tonic::Status::permission_denied(format!(
        "permission denied: {path} needs {needs} (the caller presented {presented})"
    )))
}

/// A check of the caller's identity beyond its role and cluster, run on every request that
/// presents a certificate (the manager's: the node was not removed).
pub type Gate = Arc<dyn Fn(&Identity) -> Result<(), tonic::Status> + Send + Sync>;

/// A tower layer applying [`authorize`] (and the [`Gate`], if any) to every request before
/// it reaches any service: `Server::builder().layer(AuthLayer::new(cluster_id))`. The
/// caller's identity comes from the [`PeerInfo`] that [`crate::incoming`] attaches; a
/// request without one (served some other way) is treated as anonymous. Refused calls get
/// the refusal's status; the connection stays up.
#[derive(Clone)]
pub struct AuthLayer {
    cluster_id: Arc<str>,
    gate: Option<Gate>,
}

impl std::fmt::Debug for AuthLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthLayer")
            .field("cluster_id", &self.cluster_id)
            .field("gate", &self.gate.is_some())
            .finish()
    }
}

impl AuthLayer {
    pub fn new(cluster_id: impl Into<String>) -> Self {
        AuthLayer {
            cluster_id: Arc::from(cluster_id.into()),
            gate: None,
        }
    }

    /// Also run `gate` on every request that presents a certificate of this cluster.
    pub fn with_gate(mut self, gate: Gate) -> Self {
        self.gate = Some(gate);
        self
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            cluster_id: self.cluster_id.clone(),
            gate: self.gate.clone(),
        }
    }
}

/// The service [`AuthLayer`] wraps around the router.
#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    cluster_id: Arc<str>,
    gate: Option<Gate>,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for AuthService<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    ResBody: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<future::Ready<Result<Self::Response, Self::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let peer = req
            .extensions()
            .get::<PeerInfo>()
            .and_then(|p| p.identity.as_ref());
        let allowed = authorize(req.uri().path(), peer, &self.cluster_id).and_then(|()| {
            match (peer, &self.gate) {
                (Some(id), Some(gate)) if *id.cluster_id == *self.cluster_id => gate(id),
                _ => Ok(()),
            }
        });
        match allowed {
            Ok(()) => Either::Right(self.inner.call(req)),
            Err(status) => {
                tracing::debug!(path = req.uri().path(), "refused: {}", status.message());
                // The inner service was made ready and is not called; tonic's router is
                // always ready, so nothing is held.
                Either::Left(future::ready(Ok(status.into_http())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_table() {
        let manager = Identity::new("m1", Role::Manager, "c1");
        let worker = Identity::new("w1", Role::Worker, "c1");
        let foreign = Identity::new("m9", Role::Manager, "c2");
        // (path, no cert, worker, manager, manager of another cluster)
        let cases: &[(&str, bool, bool, bool, bool)] = &[
            ("/shoal.v1.Ca/GetRootCertificate", true, true, true, true),
            ("/shoal.v1.Ca/IssueNodeCertificate", true, true, true, true),
            (
                "/shoal.v1.Ca/RenewNodeCertificate",
                false,
                true,
                true,
                false,
            ),
            ("/shoal.v1.Ca/Other", false, false, false, false),
            ("/shoal.v1.Dispatcher/Session", false, true, true, false),
            ("/shoal.v1.Dispatcher/Heartbeat", false, true, true, false),
            ("/shoal.v1.LogBroker/PublishLogs", false, true, true, false),
            ("/shoal.v1.Images/Fetch", false, true, true, false),
            ("/shoal.v1.Logs/SubscribeLogs", false, false, true, false),
            ("/shoal.v1.Control/ListNodes", false, false, true, false),
            ("/shoal.v1.Raft/AppendEntries", false, false, true, false),
            ("/shoal.v1.RaftMembership/Join", false, false, true, false),
            ("/shoal.v1.NodeAdmin/Init", false, false, false, false),
            ("/grpc.health.v1.Health/Check", false, false, false, false),
            ("/shoal.v1.Control", false, false, false, false),
            ("", false, false, false, false),
            ("shoal.v1.Control/ListNodes", false, false, false, false),
        ];
        for &(path, anon, w, m, f) in cases {
            assert_eq!(
                authorize(path, None, "c1").is_ok(),
                anon,
                "{path} anonymous"
            );
            assert_eq!(
                authorize(path, Some(&worker), "c1").is_ok(),
                w,
                "{path} worker"
            );
            assert_eq!(
                authorize(path, Some(&manager), "c1").is_ok(),
                m,
                "{path} manager"
            );
            assert_eq!(
                authorize(path, Some(&foreign), "c1").is_ok(),
                f,
                "{path} foreign"
            );
        }
    }

    #[test]
    fn refusals_say_what_was_needed_and_presented() {
        let worker = Identity::new("w1", Role::Worker, "c1");
        let foreign = Identity::new("m9", Role::Manager, "c2");
        let msg = |path, peer| {
            let status = authorize(path, peer, "c1").expect_err("must fail");
            assert_eq!(status.code(), tonic::Code::PermissionDenied);
            status.message().to_string()
        };
        assert_eq!(
            msg("/shoal.v1.Control/ListNodes", Some(&worker)),
            "permission denied: /shoal.v1.Control/ListNodes needs a manager certificate of \
             this cluster (the caller presented a worker certificate)"
        );
        assert_eq!(
            msg("/shoal.v1.Control/ListNodes", None),
            "permission denied: /shoal.v1.Control/ListNodes needs a manager certificate of \
             this cluster (the caller presented no certificate)"
        );
        assert_eq!(
            msg("/shoal.v1.Dispatcher/Session", Some(&foreign)),
            "permission denied: /shoal.v1.Dispatcher/Session needs a node certificate of \
             this cluster (the caller presented a certificate of cluster c2)"
        );
        assert_eq!(
            msg("/shoal.v1.NodeAdmin/Init", None),
            "permission denied: /shoal.v1.NodeAdmin/Init is not served to remote callers"
        );
    }
}

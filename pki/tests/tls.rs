//! An in-process tonic server behind `incoming` + `AuthLayer`, dialled by every kind of
//! client.

use std::net::SocketAddr;
use std::time::Duration;

use shoal_pki::{
    channel, handshake, incoming, peer_identity, verify_node_cert, AuthLayer, Gate, Identity,
    NodeCerts, NodeKey, Refused, Role, RootCa, TlsClient, TlsServer, TunnelTls,
};
use shoal_proto as pb;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::{Code, Request, Response, Status};

fn sign(ca: &RootCa, node_id: &str, role: Role) -> NodeCerts {
    let key = NodeKey::generate().expect("node key");
    let csr = key.csr_pem().expect("csr");
    let identity = Identity::new(node_id, role, ca.cluster_id());
    let cert_pem = ca
        .sign_csr(&csr, &identity, Duration::from_secs(3600))
        .expect("sign");
    NodeCerts {
        cert_pem,
        key_pem: key.key_pem(),
        root_pem: ca.cert_pem().to_string(),
    }
}

struct TestCa {
    root_pem: String,
}

#[tonic::async_trait]
impl pb::Ca for TestCa {
    async fn issue_node_certificate(
        &self,
        _: Request<pb::IssueNodeCertificateRequest>,
    ) -> Result<Response<pb::IssueNodeCertificateResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn get_root_certificate(
        &self,
        _req: Request<pb::GetRootCertificateRequest>,
    ) -> Result<Response<pb::GetRootCertificateResponse>, Status> {
        Ok(Response::new(pb::GetRootCertificateResponse {
            cert_pem: self.root_pem.clone(),
        }))
    }

    /// Answers with the caller's identity as the handler sees it.
    async fn renew_node_certificate(
        &self,
        req: Request<pb::RenewNodeCertificateRequest>,
    ) -> Result<Response<pb::IssueNodeCertificateResponse>, Status> {
        let peer = peer_identity(&req).ok_or_else(|| Status::internal("no peer identity"))?;
        Ok(Response::new(pb::IssueNodeCertificateResponse {
            node_id: peer.node_id,
            cluster_id: peer.cluster_id,
            ..Default::default()
        }))
    }
}

struct TestControl;

/// Every Control method this test does not call: Unimplemented.
macro_rules! not_in_this_test {
    ($($method:ident($req:ident) -> $resp:ident;)*) => {
        $(
            // As `async_trait` writes them: it expands before this macro does.
            fn $method<'life0, 'async_trait>(
                &'life0 self,
                _: Request<pb::$req>,
            ) -> std::pin::Pin<
                Box<
                    dyn std::future::Future<Output = Result<Response<pb::$resp>, Status>>
                        + Send
                        + 'async_trait,
                >,
            >
            where
                'life0: 'async_trait,
                Self: 'async_trait,
            {
                Box::pin(async { Err(Status::unimplemented("not in this test")) })
            }
        )*
    };
}

#[tonic::async_trait]
impl pb::Control for TestControl {
    not_in_this_test! {
    create_network(CreateNetworkRequest) -> CreateNetworkResponse;
    get_network(GetNetworkRequest) -> GetNetworkResponse;
    list_networks(ListNetworksRequest) -> ListNetworksResponse;
    remove_network(RemoveNetworkRequest) -> RemoveNetworkResponse;
    create_secret(CreateSecretRequest) -> CreateSecretResponse;
    get_secret(GetSecretRequest) -> GetSecretResponse;
    list_secrets(ListSecretsRequest) -> ListSecretsResponse;
    remove_secret(RemoveSecretRequest) -> RemoveSecretResponse;
    update_secret(UpdateFileLabelsRequest) -> UpdateSecretResponse;
    update_config(UpdateFileLabelsRequest) -> UpdateConfigResponse;
    create_config(CreateConfigRequest) -> CreateConfigResponse;
    get_config(GetConfigRequest) -> GetConfigResponse;
    list_configs(ListConfigsRequest) -> ListConfigsResponse;
    remove_config(RemoveConfigRequest) -> RemoveConfigResponse;
    deploy_stack(DeployStackRequest) -> DeployStackResponse;
    list_stacks(ListStacksRequest) -> ListStacksResponse;
    get_stack(GetStackRequest) -> GetStackResponse;
    remove_stack(RemoveStackRequest) -> RemoveStackResponse;
    rollback_stack(RollbackStackRequest) -> DeployStackResponse;
    create_service(CreateServiceRequest) -> CreateServiceResponse;
    update_service(UpdateServiceRequest) -> UpdateServiceResponse;
    rollback_service(RollbackServiceRequest) -> RollbackServiceResponse;
    remove_service(RemoveServiceRequest) -> RemoveServiceResponse;
    get_service(GetServiceRequest) -> GetServiceResponse;
    list_services(ListServicesRequest) -> ListServicesResponse;
    list_tasks(ListTasksRequest) -> ListTasksResponse;
    get_node(GetNodeRequest) -> GetNodeResponse;
    update_node(UpdateNodeRequest) -> UpdateNodeResponse;
    remove_node(RemoveNodeRequest) -> RemoveNodeResponse;
    get_join_tokens(GetJoinTokensRequest) -> GetJoinTokensResponse;
    rotate_join_token(RotateJoinTokenRequest) -> GetJoinTokensResponse;
    get_root_ca(GetRootCaRequest) -> GetRootCaResponse;
    rotate_root_ca(RotateRootCaRequest) -> GetRootCaResponse;
        update_swarm(UpdateSwarmRequest) -> UpdateSwarmResponse;
        get_unlock_key(GetUnlockKeyRequest) -> GetUnlockKeyResponse;
    }

    async fn list_nodes(
        &self,
        req: Request<pb::ListNodesRequest>,
    ) -> Result<Response<pb::ListNodesResponse>, Status> {
        // Reached only by managers: the layer refused everyone else.
        match peer_identity(&req) {
            Some(peer) if peer.role == Role::Manager => Ok(Response::new(Default::default())),
            other => Err(Status::internal(format!("reached by {other:?}"))),
        }
    }
}

struct TestServer {
    addr: String,
    tls: TlsServer,
    _stop: oneshot::Sender<()>,
}

async fn serve(certs: &NodeCerts, cluster_id: &str) -> TestServer {
    serve_gated(certs, cluster_id, None).await
}

async fn serve_gated(certs: &NodeCerts, cluster_id: &str, gate: Option<Gate>) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("addr");
    let tls = TlsServer::new(certs).expect("tls server");
    let (stop, stopped) = oneshot::channel::<()>();
    let mut auth = AuthLayer::new(cluster_id);
    if let Some(gate) = gate {
        auth = auth.with_gate(gate);
    }
    let router = tonic::transport::Server::builder()
        .layer(auth)
        .add_service(pb::CaServer::new(TestCa {
            root_pem: certs.root_pem.clone(),
        }))
        .add_service(pb::ControlServer::new(TestControl));
    let conns = incoming(listener, tls.clone());
    tokio::spawn(async move {
        let _ = router
            .serve_with_incoming_shutdown(conns, async {
                let _ = stopped.await;
            })
            .await;
    });
    TestServer {
        addr: addr.to_string(),
        tls,
        _stop: stop,
    }
}

struct Fixture {
    ca: RootCa,
    server: TestServer,
}

async fn fixture() -> Fixture {
    let ca = RootCa::generate("cluster-a").expect("ca");
    let manager = sign(&ca, "mgr1", Role::Manager);
    let server = serve(&manager, "cluster-a").await;
    Fixture { ca, server }
}

async fn list_nodes(addr: &str, tls: &TlsClient) -> Result<(), Status> {
    let ch = channel(addr, tls)
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    pb::ControlClient::new(ch)
        .list_nodes(pb::ListNodesRequest {})
        .await
        .map(|_| ())
}

async fn get_root(addr: &str, tls: &TlsClient) -> Result<String, Status> {
    let ch = channel(addr, tls)
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    pb::CaClient::new(ch)
        .get_root_certificate(pb::GetRootCertificateRequest {})
        .await
        .map(|r| r.into_inner().cert_pem)
}

#[tokio::test]
async fn a_manager_certificate_may_call_control() {
    let f = fixture().await;
    let other_manager = sign(&f.ca, "mgr2", Role::Manager);
    let tls = TlsClient::new(&other_manager).expect("client");
    list_nodes(&f.server.addr, &tls).await.expect("allowed");
}

/// The manager's gate (a removed node) refuses a certificate on every call, the ones open
/// to anyone included; other certificates are untouched.
#[tokio::test]
async fn a_gate_refuses_a_certificate_on_every_call() {
    let ca = RootCa::generate("cluster-a").expect("ca");
    let gate: Gate = std::sync::Arc::new(|id: &Identity| {
        if id.node_id == "gone" {
            Err(Status::permission_denied("node gone was removed"))
        } else {
            Ok(())
        }
    });
    let server = serve_gated(&sign(&ca, "mgr1", Role::Manager), "cluster-a", Some(gate)).await;
    let gone = TlsClient::new(&sign(&ca, "gone", Role::Manager)).expect("client");
    let err = list_nodes(&server.addr, &gone).await.expect_err("refused");
    assert_eq!(
        (err.code(), err.message()),
        (Code::PermissionDenied, "node gone was removed")
    );
    let err = get_root(&server.addr, &gone).await.expect_err("refused");
    assert_eq!(err.message(), "node gone was removed");
    let kept = TlsClient::new(&sign(&ca, "mgr2", Role::Manager)).expect("client");
    list_nodes(&server.addr, &kept).await.expect("allowed");
    get_root(
        &server.addr,
        &TlsClient::anonymous(ca.cert_pem()).expect("client"),
    )
    .await
    .expect("no certificate: nothing to gate");
}

#[tokio::test]
async fn a_worker_certificate_is_denied_control_but_may_renew() {
    let f = fixture().await;
    let worker = sign(&f.ca, "wrk1", Role::Worker);
    let tls = TlsClient::new(&worker).expect("client");
    let err = list_nodes(&f.server.addr, &tls)
        .await
        .expect_err("must fail");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert_eq!(
        err.message(),
        "permission denied: /shoal.v1.Control/ListNodes needs a manager certificate of this \
         cluster (the caller presented a worker certificate)"
    );

    // Same connection-level identity reaches the handler of an allowed call.
    let ch = channel(&f.server.addr, &tls).await.expect("channel");
    let reply = pb::CaClient::new(ch)
        .renew_node_certificate(pb::RenewNodeCertificateRequest::default())
        .await
        .expect("renew allowed")
        .into_inner();
    assert_eq!(reply.node_id, "wrk1");
    assert_eq!(reply.cluster_id, "cluster-a");
}

#[tokio::test]
async fn no_certificate_may_fetch_the_root_and_nothing_else() {
    let f = fixture().await;
    let tls = TlsClient::anonymous(f.ca.cert_pem()).expect("client");
    let root = get_root(&f.server.addr, &tls).await.expect("allowed");
    assert_eq!(root, f.ca.cert_pem());

    let err = list_nodes(&f.server.addr, &tls)
        .await
        .expect_err("must fail");
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(
        err.message(),
        "permission denied: /shoal.v1.Control/ListNodes needs a manager certificate of this \
         cluster (the caller presented no certificate)"
    );

    let ch = channel(&f.server.addr, &tls).await.expect("channel");
    let err = pb::CaClient::new(ch)
        .renew_node_certificate(pb::RenewNodeCertificateRequest::default())
        .await
        .expect_err("must fail");
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message()
            .contains("needs a node certificate of this cluster"),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_certificate_of_another_cluster_is_refused_and_the_server_keeps_serving() {
    let f = fixture().await;
    let other_ca = RootCa::generate("cluster-b").expect("other ca");
    let intruder = sign(&other_ca, "mgr9", Role::Manager);

    // Trusting its own root, the intruder refuses our manager ...
    let tls = TlsClient::new(&intruder).expect("client");
    let err = list_nodes(&f.server.addr, &tls)
        .await
        .expect_err("must fail");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("UnknownIssuer"), "{err:?}");

    // ... and trusting ours, it is refused by our manager.
    let tls = TlsClient::new(&NodeCerts {
        root_pem: f.ca.cert_pem().to_string(),
        ..intruder
    })
    .expect("client");
    let err = list_nodes(&f.server.addr, &tls)
        .await
        .expect_err("must fail");
    // TLS 1.3: the client finishes first and reads the server's alert on its first call.
    assert!(format!("{err:?}").contains("UnknownCA"), "{err:?}");

    // A failed handshake did not end the accept stream.
    let manager = sign(&f.ca, "mgr2", Role::Manager);
    let tls = TlsClient::new(&manager).expect("client");
    list_nodes(&f.server.addr, &tls)
        .await
        .expect("still serving");
}

#[tokio::test]
async fn a_silent_client_does_not_block_others() {
    let f = fixture().await;
    let _silent = tokio::net::TcpStream::connect(&f.server.addr)
        .await
        .expect("tcp");
    let tls = TlsClient::anonymous(f.ca.cert_pem()).expect("client");
    tokio::time::timeout(Duration::from_secs(5), get_root(&f.server.addr, &tls))
        .await
        .expect("not blocked by the silent client")
        .expect("allowed");
}

#[tokio::test]
async fn a_pinned_digest_client_fetches_the_root_only_from_the_right_cluster() {
    let f = fixture().await;
    let tls = TlsClient::pinned_digest(&f.ca.digest()).expect("client");
    let root = get_root(&f.server.addr, &tls).await.expect("right digest");
    assert_eq!(
        shoal_pki::digest_of_pem(&root).expect("digest"),
        f.ca.digest()
    );

    let other = RootCa::generate("cluster-a").expect("other ca");
    let tls = TlsClient::pinned_digest(&other.digest()).expect("client");
    let err = channel(&f.server.addr, &tls).await.expect_err("must fail");
    assert!(
        err.to_string().contains("does not match the join token"),
        "{err}"
    );

    assert!(TlsClient::pinned_digest("abc").is_err());
}

#[tokio::test]
async fn a_worker_certificate_cannot_serve_as_a_manager() {
    // A worker's certificate lacks "manager.shoal": clients refuse it as a server.
    let ca = RootCa::generate("cluster-a").expect("ca");
    let worker = sign(&ca, "wrk1", Role::Worker);
    let server = serve(&worker, "cluster-a").await;
    let tls = TlsClient::anonymous(ca.cert_pem()).expect("client");
    let err = channel(&server.addr, &tls).await.expect_err("must fail");
    assert!(err.to_string().contains("manager at"), "{err}");
}

#[tokio::test]
async fn reload_swaps_the_served_certificate_for_new_connections() {
    let f = fixture().await;
    let tls = TlsClient::anonymous(f.ca.cert_pem()).expect("client");
    let served_serial = |stream: &tokio_rustls::client::TlsStream<shoal_pki::Link>| {
        let leaf = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .expect("server certificate")
            .clone();
        shoal_pki::serial_of_cert_der(&leaf).expect("serial")
    };

    let old = handshake(&f.server.addr, &tls).await.expect("handshake");
    let old_serial = served_serial(&old);

    let renewed = sign(&f.ca, "mgr1", Role::Manager);
    let renewed_serial =
        shoal_pki::serial_of_cert_der(&shoal_pki::first_cert_der(&renewed.cert_pem).expect("der"))
            .expect("serial");
    f.server.tls.reload(&renewed).expect("reload");

    let new = handshake(&f.server.addr, &tls).await.expect("handshake");
    assert_ne!(served_serial(&new), old_serial);
    assert_eq!(served_serial(&new), renewed_serial);
    get_root(&f.server.addr, &tls).await.expect("still serving");

    // A bad reload changes nothing.
    let broken = NodeCerts {
        key_pem: NodeKey::generate().expect("key").key_pem(),
        ..renewed
    };
    assert!(f.server.tls.reload(&broken).is_err());
    let again = handshake(&f.server.addr, &tls).await.expect("handshake");
    assert_eq!(served_serial(&again), renewed_serial);
}

#[tokio::test]
async fn a_lazy_channel_connects_on_first_use() {
    let f = fixture().await;
    let manager = sign(&f.ca, "mgr2", Role::Manager);
    let tls = TlsClient::new(&manager).expect("client");
    let ch = shoal_pki::channel_lazy(&f.server.addr, &tls).expect("lazy channel");
    pb::ControlClient::new(ch)
        .list_nodes(pb::ListNodesRequest {})
        .await
        .expect("allowed");
}

#[tokio::test]
async fn bad_addresses_and_closed_ports_are_errors() {
    let ca = RootCa::generate("c1").expect("ca");
    let tls = TlsClient::anonymous(ca.cert_pem()).expect("client");
    for addr in [
        "",
        "host",
        ":80",
        "host:port",
        "host:99999",
        "http://host:80",
        "a b:1",
    ] {
        let err = channel(addr, &tls).await.expect_err(addr);
        assert_eq!(
            err.to_string(),
            format!("invalid manager address {addr:?}: expected host:port")
        );
    }
    // A port nobody listens on.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    drop(listener);
    let err = channel(&addr, &tls).await.expect_err("closed port");
    assert!(
        err.to_string()
            .starts_with(&format!("cannot connect to manager at {addr}: ")),
        "{err}"
    );
}

/// Root rotation: certificates the new root signs, presented with the cross-signed
/// intermediate, are accepted by nodes that trust only the old root; nodes that trust both
/// accept either; once only the new root is trusted, an old certificate is refused.
#[tokio::test]
async fn a_rotated_root_is_trusted_through_its_cross_signed_intermediate() {
    let old = RootCa::generate("cluster-a").expect("ca");
    let (new, cross) = old.next().expect("next root");
    assert_eq!(new.cluster_id(), "cluster-a");
    assert_ne!(new.digest(), old.digest());
    let bundle = format!("{}{}", old.cert_pem(), new.cert_pem());
    let rotated = |node_id: &str, role: Role, root_pem: &str| {
        let mut certs = sign(&new, node_id, role);
        certs.cert_pem.push_str(&cross);
        certs.root_pem = root_pem.to_string();
        certs
    };

    // The leaf alone verifies under the new root, and under the old one only with the
    // intermediate.
    let m2 = rotated("mgr2", Role::Manager, &bundle);
    verify_node_cert(&m2.cert_pem, new.cert_pem(), false).expect("new root");
    verify_node_cert(&m2.cert_pem, old.cert_pem(), true).expect("old root via the intermediate");
    assert!(verify_node_cert(&m2.cert_pem, old.cert_pem(), false).is_err());
    verify_node_cert(&sign(&old, "w", Role::Worker).cert_pem, &bundle, false).expect("bundle");

    // A manager that still trusts only the old root serves a rotated client; a rotated
    // manager (trusting both) serves a client still on the old root.
    let server = serve(&sign(&old, "mgr1", Role::Manager), "cluster-a").await;
    list_nodes(&server.addr, &TlsClient::new(&m2).expect("client"))
        .await
        .expect("old trust, new certificate");
    let rotated_server = serve(&rotated("mgr3", Role::Manager, &bundle), "cluster-a").await;
    let old_client = TlsClient::new(&sign(&old, "mgr4", Role::Manager)).expect("client");
    list_nodes(&rotated_server.addr, &old_client)
        .await
        .expect("both trusted, old certificate");
    list_nodes(&rotated_server.addr, &TlsClient::new(&m2).expect("client"))
        .await
        .expect("both trusted, new certificate");

    // Done: only the new root is trusted, and the old certificates are refused.
    let done = serve(&rotated("mgr5", Role::Manager, new.cert_pem()), "cluster-a").await;
    list_nodes(&done.addr, &TlsClient::new(&m2).expect("client"))
        .await
        .expect("new certificate");
    assert!(
        list_nodes(&done.addr, &old_client).await.is_err(),
        "old root dropped"
    );
}

/// A certificate of this cluster that has expired is refused at the handshake, whatever
/// role it names; the server keeps serving others.
/// A manager certificate of `ca`'s cluster that expired an hour ago.
fn expired(ca: &RootCa) -> NodeCerts {
    let key = NodeKey::generate().expect("key");
    let issuer = rcgen::Issuer::from_ca_cert_pem(
        ca.cert_pem(),
        rcgen::KeyPair::from_pem(&ca.key_pem()).expect("root key"),
    )
    .expect("issuer");
    let csr = rcgen::CertificateSigningRequestParams::from_pem(&key.csr_pem().expect("csr"))
        .expect("csr parses");
    let mut params = rcgen::CertificateParams::new(vec![
        "manager.shoal".to_string(),
        "node.shoal".to_string(),
        "mgr7".to_string(),
    ])
    .expect("params");
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "mgr7");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationalUnitName, "manager");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "cluster-a");
    let now = std::time::SystemTime::now();
    params.not_before = (now - Duration::from_secs(7200)).into();
    params.not_after = (now - Duration::from_secs(3600)).into();
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params.signed_by(&csr.public_key, &issuer).expect("signed");
    NodeCerts {
        cert_pem: cert.pem(),
        key_pem: key.key_pem(),
        root_pem: ca.cert_pem().to_string(),
    }
}

#[tokio::test]
async fn an_expired_certificate_is_refused() {
    let f = fixture().await;
    let expired = expired(&f.ca);
    let tls = TlsClient::new(&expired).expect("client");
    let err = list_nodes(&f.server.addr, &tls).await.expect_err("expired");
    assert!(format!("{err:?}").contains("Expired"), "{err:?}");
    let err = get_root(&f.server.addr, &tls).await.expect_err("expired");
    assert!(format!("{err:?}").contains("Expired"), "{err:?}");
    let fresh = TlsClient::new(&sign(&f.ca, "mgr8", Role::Manager)).expect("client");
    list_nodes(&f.server.addr, &fresh)
        .await
        .expect("still serving");
}

/// The encrypted overlay's tunnel port (QUIC under [`TunnelTls`], as the tunnel serves it):
/// a live node certificate of this cluster gets a connection; no certificate, another
/// cluster's, an expired one and a removed node's are refused in the handshake (and a
/// dialler refuses a removed node's port), and the port keeps serving.
#[tokio::test]
async fn the_tunnel_port_takes_only_a_live_certificate_of_this_cluster() {
    use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
    use rustls::pki_types::pem::PemObject;
    use std::sync::Arc;

    let ca = RootCa::generate("cluster-a").expect("ca");
    let removed = Refused::default();
    let served =
        TunnelTls::new(&sign(&ca, "node1", Role::Worker), removed.clone()).expect("tunnel tls");
    let server = quinn::Endpoint::server(
        quinn::ServerConfig::with_crypto(Arc::new(
            QuicServerConfig::try_from(served.server).expect("quic server"),
        )),
        "127.0.0.1:0".parse().expect("addr"),
    )
    .expect("endpoint");
    let addr = server.local_addr().expect("bound");
    tokio::spawn(async move {
        while let Some(incoming) = server.accept().await {
            tokio::spawn(async move {
                if let Ok(conn) = incoming.await {
                    if let Ok(mut out) = conn.open_uni().await {
                        let _ = out.write_all(b"hello").await;
                        let _ = out.finish();
                    }
                    conn.closed().await;
                }
            });
        }
    });
    // What a dialler with `client` gets: the server's greeting, or why not.
    let dial = |client: Arc<rustls::ClientConfig>| async move {
        let mut endpoint =
            quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("client endpoint");
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(
            QuicClientConfig::try_from(client).expect("quic client"),
        )));
        let answer = async {
            let conn = endpoint
                .connect(addr, shoal_pki::NODE_SAN)
                .map_err(|e| e.to_string())?
                .await
                .map_err(|e| e.to_string())?;
            let mut greeting = conn.accept_uni().await.map_err(|e| e.to_string())?;
            let said = greeting.read_to_end(64).await.map_err(|e| e.to_string())?;
            Ok::<_, String>(String::from_utf8_lossy(&said).to_string())
        };
        tokio::time::timeout(Duration::from_secs(10), answer)
            .await
            .unwrap_or_else(|_| Err("no answer within 10 s".into()))
    };

    let member =
        TunnelTls::new(&sign(&ca, "node2", Role::Worker), Refused::default()).expect("member");
    assert_eq!(dial(member.client.clone()).await, Ok("hello".into()));

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(
            rustls::pki_types::CertificateDer::from_pem_slice(ca.cert_pem().as_bytes())
                .expect("root der"),
        )
        .expect("root added");
    let mut anonymous = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    anonymous.alpn_protocols = vec![shoal_pki::ALPN_TUNNEL.to_vec()];
    let refused = dial(Arc::new(anonymous)).await.expect_err("no certificate");
    assert!(refused.contains("peer sent no certificates"), "{refused}");

    let other = RootCa::generate("cluster-b").expect("other ca");
    let intruder = NodeCerts {
        root_pem: ca.cert_pem().to_string(),
        ..sign(&other, "node9", Role::Manager)
    };
    let refused = dial(
        TunnelTls::new(&intruder, Refused::default())
            .expect("intruder")
            .client,
    )
    .await
    .expect_err("another cluster");
    assert!(refused.contains("UnknownIssuer"), "{refused}");

    let refused = dial(
        TunnelTls::new(&expired(&ca), Refused::default())
            .expect("expired")
            .client,
    )
    .await
    .expect_err("expired");
    assert!(refused.to_lowercase().contains("expired"), "{refused}");

    assert_eq!(
        dial(member.client.clone()).await,
        Ok("hello".into()),
        "still serving"
    );

    // node2 removed from the swarm: its live certificate is refused in the handshake.
    removed.set(["node2".to_string()]);
    let refused = dial(member.client.clone())
        .await
        .expect_err("a removed node");
    assert!(
        refused.contains("node node2 was removed from the swarm"),
        "{refused}"
    );
    let other = TunnelTls::new(&sign(&ca, "node3", Role::Worker), Refused::default())
        .expect("another member");
    assert_eq!(
        dial(other.client).await,
        Ok("hello".into()),
        "others still served"
    );
    // And a node that knows node1 was removed will not dial into node1's port.
    let wary = Refused::default();
    wary.set(["node1".to_string()]);
    let knowing = TunnelTls::new(&sign(&ca, "node4", Role::Worker), wary).expect("member");
    let refused = dial(knowing.client)
        .await
        .expect_err("a removed node's port");
    assert!(
        refused.contains("node node1 was removed from the swarm"),
        "{refused}"
    );
    removed.set([]);
    assert_eq!(
        dial(member.client).await,
        Ok("hello".into()),
        "the set is live"
    );
}

/// The manager port never resumes a TLS session: a resumed session skips the certificate
/// checks, so a client the server no longer trusts (here: the old root dropped at the end
/// of a rotation) would get back in on its ticket.
#[tokio::test]
async fn a_client_no_longer_trusted_is_refused_on_its_next_connection() {
    let old = RootCa::generate("cluster-a").expect("ca");
    let (new, cross) = old.next().expect("next root");
    let bundle = format!("{}{}", old.cert_pem(), new.cert_pem());
    let mut manager = sign(&new, "mgr1", Role::Manager);
    manager.cert_pem.push_str(&cross);
    manager.root_pem = bundle;
    let server = serve(&manager, "cluster-a").await;
    let old_client = TlsClient::new(&sign(&old, "mgr2", Role::Manager)).expect("client");
    for _ in 0..3 {
        list_nodes(&server.addr, &old_client)
            .await
            .expect("both roots trusted");
    }
    server
        .tls
        .reload(&NodeCerts {
            root_pem: new.cert_pem().to_string(),
            ..manager
        })
        .expect("the old root dropped");
    let refused = list_nodes(&server.addr, &old_client).await;
    assert!(refused.is_err(), "a client of the dropped root got back in");
}

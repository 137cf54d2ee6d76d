//! The client side: rustls configurations for the three ways a node dials a manager, and
//! tonic channels over them.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tonic::transport::{Channel, Endpoint, Uri};

use super::link::{Dialer, Link};
use super::server::HANDSHAKE_TIMEOUT;
use super::{
    presented_chain, private_key, provider, root_store, ALPN_H2, MANAGER_SERVER_NAME, VERSIONS,
};
use crate::error::chain;
use crate::identity::digest_of_der;
use crate::token::DIGEST_LEN;
use crate::{NodeCerts, PkiError};

/// How long dialing a manager (TCP and TLS) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How a node dials managers. Every variant verifies the server's certificate against the
/// name "manager.shoal", never its IP. Clones share one configuration, which
/// [`TlsClient::reload`] swaps: every later handshake of every clone and of every channel
/// made from one (a lazy channel reconnecting included) uses the new certificate and roots.
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<RwLock<Arc<ClientConfig>>>,
    /// Dials in place of TCP (a test harness's links); TCP when `None`.
    dialer: Option<Dialer>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient").finish_non_exhaustive()
    }
}

impl TlsClient {
    /// A node of the cluster: presents its certificate, trusts the cluster root.
    pub fn new(certs: &NodeCerts) -> Result<Self, PkiError> {
        let provider = provider();
        let chain = presented_chain(certs)?;
        let config = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(VERSIONS)?
            .with_webpki_verifier(server_verifier(root_store(&certs.root_pem)?, &provider)?)
            .with_client_auth_cert(chain, private_key(&certs.key_pem)?)?;
        Ok(Self::finish(config))
    }

    /// No client certificate (a joining node that already has the root): may call only
    /// what the CA serves to anyone.
    pub fn anonymous(root_pem: &str) -> Result<Self, PkiError> {
        let provider = provider();
        let config = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(VERSIONS)?
            .with_webpki_verifier(server_verifier(root_store(root_pem)?, &provider)?)
            .with_no_client_auth();
        Ok(Self::finish(config))
    }

    /// No client certificate and no root yet: accepts a manager only if the chain it
    /// presents contains a root whose sha256 is `digest` (from the join token) and its
    /// certificate is valid under that root for "manager.shoal". Used to fetch the root.
    pub fn pinned_digest(digest: &str) -> Result<Self, PkiError> {
        let digest = digest.to_ascii_lowercase();
        if digest.len() != DIGEST_LEN || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(PkiError::BadField {
                field: "root ca digest",
                value: digest,
                reason: "expected 64 hex characters (sha256)",
            });
        }
        let provider = provider();
        let verifier = Arc::new(PinnedRootVerifier {
            digest,
            provider: provider.clone(),
        });
        let config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(VERSIONS)?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(Self::finish(config))
    }

    fn finish(mut config: ClientConfig) -> Self {
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        TlsClient {
            config: Arc::new(RwLock::new(Arc::new(config))),
            dialer: None,
        }
    }

    /// Dial through `dialer` instead of TCP, in this client and its clones made after.
    pub fn with_dialer(mut self, dialer: Dialer) -> Self {
        self.dialer = Some(dialer);
        self
    }

    /// Present `certs` and trust their roots from the next handshake on, in this client and
    /// every clone of it. Nothing changes if `certs` are not usable.
    pub fn reload(&self, certs: &NodeCerts) -> Result<(), PkiError> {
        let fresh = TlsClient::new(certs)?.config();
        *self.config.write().unwrap_or_else(PoisonError::into_inner) = fresh;
        Ok(())
    }

    /// The rustls configuration now.
    pub fn config(&self) -> Arc<ClientConfig> {
        self.config
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A tonic connector that dials `addr` (host:port) and does the TLS handshake,
    /// whatever URI the endpoint carries, with the configuration current at each dial.
    pub fn connector(&self, addr: &str) -> TlsConnector {
        TlsConnector {
            addr: addr.to_string(),
            server_name: MANAGER_SERVER_NAME.to_string(),
            config: self.config.clone(),
            dialer: self.dialer.clone(),
        }
    }

    /// [`TlsClient::connector`] to one node, any role: the certificate must name
    /// `node_id` (every node's names its id), so it is that node and no other.
    pub fn node_connector(&self, addr: &str, node_id: &str) -> TlsConnector {
        TlsConnector {
            server_name: node_id.to_string(),
            ..self.connector(addr)
        }
    }
}

fn server_verifier(
    roots: Arc<RootCertStore>,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, PkiError> {
    WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| PkiError::Tls(rustls::Error::General(e.to_string())))
}

/// Trusts the root in the server's chain whose digest is pinned, and nothing else.
#[derive(Debug)]
struct PinnedRootVerifier {
    digest: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedRootVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let root = intermediates
            .iter()
            .find(|c| digest_of_der(c) == self.digest)
            .ok_or_else(|| {
                rustls::Error::General(format!(
                    "the manager's root ca does not match the join token (expected digest {})",
                    self.digest
                ))
            })?;
        let mut roots = RootCertStore::empty();
        roots.add(root.clone().into_owned())?;
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?
            .verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Dials `addr` and does the TLS handshake as "manager.shoal".
pub async fn handshake(addr: &str, tls: &TlsClient) -> Result<TlsStream<Link>, PkiError> {
    check_addr(addr)?;
    dial(
        addr.to_string(),
        MANAGER_SERVER_NAME.to_string(),
        tls.config(),
        tls.dialer.clone(),
    )
    .await
    .map_err(|e| PkiError::Connect {
        addr: addr.to_string(),
        reason: chain(&e),
    })
}

async fn dial(
    addr: String,
    server_name: String,
    config: Arc<ClientConfig>,
    dialer: Option<Dialer>,
) -> io::Result<TlsStream<Link>> {
    let work = async {
        let link = match dialer {
            Some(dial) => dial(addr).await?,
            None => {
                let tcp = TcpStream::connect(addr.as_str()).await?;
                let _ = tcp.set_nodelay(true);
                Link::new(tcp)
            }
        };
        let name = ServerName::try_from(server_name)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        tokio_rustls::TlsConnector::from(config)
            .connect(name, link)
            .await
    };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, work).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no tls handshake within {HANDSHAKE_TIMEOUT:?}"),
        )),
    }
}

/// The tower service tonic dials through; see [`TlsClient::connector`].
#[derive(Clone)]
pub struct TlsConnector {
    addr: String,
    /// The name the server's certificate must hold.
    server_name: String,
    config: Arc<RwLock<Arc<ClientConfig>>>,
    dialer: Option<Dialer>,
}

impl tower::Service<Uri> for TlsConnector {
    type Response = TokioIo<TlsStream<Link>>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let config = self
            .config
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let fut = dial(
            self.addr.clone(),
            self.server_name.clone(),
            config,
            self.dialer.clone(),
        );
        Box::pin(async move { fut.await.map(TokioIo::new) })
    }
}

/// The endpoint [`channel`] uses for `addr` (host:port): connect timeout and HTTP/2
/// keepalives set. Adjust it and pass it to [`channel_with`] for other settings.
pub fn endpoint(addr: &str) -> Result<Endpoint, PkiError> {
    check_addr(addr)?;
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|_| PkiError::BadAddress {
            addr: addr.to_string(),
        })?
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    Ok(endpoint)
}

/// A connected channel to the manager at `addr` (host:port) over TLS.
pub async fn channel(addr: &str, tls: &TlsClient) -> Result<Channel, PkiError> {
    channel_with(endpoint(addr)?, addr, tls).await
}

/// [`channel`] with an endpoint of the caller's.
pub async fn channel_with(
    endpoint: Endpoint,
    addr: &str,
    tls: &TlsClient,
) -> Result<Channel, PkiError> {
    endpoint
        .connect_with_connector(tls.connector(addr))
        .await
        .map_err(|e| PkiError::Connect {
            addr: addr.to_string(),
            reason: chain(&e),
        })
}

/// A channel that connects on first use and reconnects after failures (Raft peers).
pub fn channel_lazy(addr: &str, tls: &TlsClient) -> Result<Channel, PkiError> {
    Ok(endpoint(addr)?.connect_with_connector_lazy(tls.connector(addr)))
}

/// [`channel_lazy`] to the node `node_id` (any role) at `addr`: its certificate must
/// name that node.
pub fn node_channel_lazy(addr: &str, node_id: &str, tls: &TlsClient) -> Result<Channel, PkiError> {
    Ok(endpoint(addr)?.connect_with_connector_lazy(tls.node_connector(addr, node_id)))
}

fn check_addr(addr: &str) -> Result<(), PkiError> {
    let bad = || PkiError::BadAddress {
        addr: addr.to_string(),
    };
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().is_err() || addr.contains(['/', ' ', '@']) {
        return Err(bad());
    }
    Ok(())
}

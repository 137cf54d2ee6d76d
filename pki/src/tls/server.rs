//! The server side: a TLS acceptor whose certificate can be swapped, and a stream of
//! verified connections for tonic's `serve_with_incoming(_shutdown)`.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DistinguishedName, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::TlsAcceptor;
use tonic::transport::server::Connected;

use super::{certified_key, provider, root_store, ALPN_H2, VERSIONS};
use crate::identity::{identity_of_cert_der, Identity};
use crate::{NodeCerts, PkiError};

/// A handshake that takes longer than this is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// At most this many handshakes run at once; accepting waits beyond it.
const MAX_HANDSHAKES: usize = 256;

/// A node's TLS server configuration. Clients may present a certificate (verified against
/// the cluster root) or none (a joining node); what each caller may do is decided per RPC
/// by [`crate::AuthLayer`]. Cloning shares the certificate, so [`TlsServer::reload`] on
/// any clone affects every listener built from it.
#[derive(Clone)]
pub struct TlsServer {
    config: Arc<ServerConfig>,
    cert: Arc<SwappableCert>,
    clients: Arc<SwappableClientVerifier>,
    provider: Arc<CryptoProvider>,
}

impl std::fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsServer").finish_non_exhaustive()
    }
}

impl TlsServer {
    /// Serves `certs.cert_pem` (with the root appended to the chain) and verifies client
    /// certificates against `certs.root_pem`.
    pub fn new(certs: &NodeCerts) -> Result<Self, PkiError> {
        let provider = provider();
        let cert = Arc::new(SwappableCert {
            current: RwLock::new(certified_key(certs, &provider)?),
        });
        let clients = Arc::new(SwappableClientVerifier {
            current: RwLock::new(client_verifier(&certs.root_pem, &provider)?),
        });
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(VERSIONS)?
            .with_client_cert_verifier(clients.clone())
            .with_cert_resolver(cert.clone());
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        super::no_resumption(&mut config);
        Ok(TlsServer {
            config: Arc::new(config),
            cert,
            clients,
            provider,
        })
    }

    /// Serves new certificates from the next handshake on; open connections keep theirs.
    /// A changed root also changes which client certificates are accepted. Nothing is
    /// swapped if `certs` is not usable.
    pub fn reload(&self, certs: &NodeCerts) -> Result<(), PkiError> {
        let key = certified_key(certs, &self.provider)?;
        let verifier = client_verifier(&certs.root_pem, &self.provider)?;
        *self
            .clients
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner) = verifier;
        *self
            .cert
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner) = key;
        Ok(())
    }

    /// The rustls configuration, for callers that accept connections themselves.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }
}

fn client_verifier(
    root_pem: &str,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, PkiError> {
    WebPkiClientVerifier::builder_with_provider(root_store(root_pem)?, provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| PkiError::Tls(rustls::Error::General(e.to_string())))
}

#[derive(Debug)]
struct SwappableCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for SwappableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

/// Client certificate verification against a root that `reload` can change.
#[derive(Debug)]
struct SwappableClientVerifier {
    current: RwLock<Arc<dyn ClientCertVerifier>>,
}

impl SwappableClientVerifier {
    fn get(&self) -> Arc<dyn ClientCertVerifier> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl ClientCertVerifier for SwappableClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // The hints would borrow from the swappable verifier; nodes hold one certificate
        // each, so they need none.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.get()
            .verify_client_cert(end_entity, intermediates, now)
    }

    signatures_checked_by!(get());
}

/// What the server knows about the other end of a connection; tonic puts it in every
/// request's extensions (read it with [`peer_identity`] or [`peer_info`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    pub remote_addr: SocketAddr,
    /// The identity in the client certificate, verified against the cluster root; `None`
    /// when the client presented no certificate.
    pub identity: Option<Identity>,
}

/// One accepted, handshaken TLS connection.
pub struct TlsConn {
    inner: tokio_rustls::server::TlsStream<TcpStream>,
    info: PeerInfo,
}

impl TlsConn {
    fn new(inner: tokio_rustls::server::TlsStream<TcpStream>, remote_addr: SocketAddr) -> Self {
        let identity = inner
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|leaf| match identity_of_cert_der(leaf) {
                Ok(identity) => Some(identity),
                Err(e) => {
                    tracing::warn!(%remote_addr, "client certificate has no shoal identity: {e}");
                    None
                }
            });
        TlsConn {
            inner,
            info: PeerInfo {
                remote_addr,
                identity,
            },
        }
    }

    pub fn peer_info(&self) -> &PeerInfo {
        &self.info
    }

    pub fn get_ref(&self) -> &tokio_rustls::server::TlsStream<TcpStream> {
        &self.inner
    }
}

impl std::fmt::Debug for TlsConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConn").field("peer", &self.info).finish()
    }
}

impl Connected for TlsConn {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The connections accepted on `listener`, TLS-handshaken with `tls`, for tonic's
/// `serve_with_incoming(_shutdown)`. Each handshake runs in its own task with a timeout, so
/// a slow client never holds up others; a failed one is logged and skipped, never ends the
/// stream. Accepting stops when the stream is dropped. Must be called inside a tokio
/// runtime.
pub fn incoming(
    listener: TcpListener,
    tls: TlsServer,
) -> impl Stream<Item = Result<TlsConn, io::Error>> + Send + 'static {
    let (tx, mut rx) = mpsc::channel(64);
    tokio::spawn(accept_loop(listener, TlsAcceptor::from(tls.config), tx));
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<Result<TlsConn, io::Error>>,
) {
    let permits = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let accepted = tokio::select! {
            () = tx.closed() => return,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => tokio::select! {
                    () = tx.closed() => return,
                    accepted = listener.accept() => accepted.map(|a| (a, permit)),
                },
                Err(_) => return,
            },
        };
        let ((tcp, remote_addr), permit) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::warn!("accepting a connection: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let _ = tx.send(Ok(TlsConn::new(stream, remote_addr))).await;
                }
                Ok(Err(e)) => {
                    tracing::info!(%remote_addr, "tls handshake failed: {e}");
                }
                Err(_) => {
                    tracing::info!(%remote_addr, "tls handshake timed out after {HANDSHAKE_TIMEOUT:?}");
                }
            }
        });
    }
}

/// The connection facts tonic attached to a request served through [`incoming`].
pub fn peer_info<T>(req: &tonic::Request<T>) -> Option<&PeerInfo> {
    req.extensions().get::<PeerInfo>()
}

/// The verified identity of the caller, `None` without a client certificate (or when the
/// request did not come through [`incoming`]).
pub fn peer_identity<T>(req: &tonic::Request<T>) -> Option<Identity> {
    peer_info(req).and_then(|p| p.identity.clone())
}

//! The listeners: HTTP/1.1 connections on a unix socket, or on TCP with mutual TLS (as
//! dockerd's `--tlsverify`: the client's certificate must chain to the given CA), each
//! request answered by [`crate::routes::handle`].

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};

use crate::backend::Backend;
use crate::http::{Body, Headers, Reply, Request};

/// Where `--docker-api` listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Unix(PathBuf),
    /// HOST:PORT, served only with mutual TLS.
    Tcp(String),
}

/// `unix:///PATH` or `tcp://HOST:PORT`, with a clear error for anything else.
pub fn listen_addr(url: &str) -> Result<Listen, String> {
    if let Some(path) = url.strip_prefix("unix://") {
        if path.starts_with('/') {
            return Ok(Listen::Unix(PathBuf::from(path)));
        }
    }
    if let Some(addr) = url.strip_prefix("tcp://") {
        if addr.parse::<std::net::SocketAddr>().is_ok() {
            return Ok(Listen::Tcp(addr.to_string()));
        }
    }
    Err(format!(
        "invalid --docker-api {url:?}: give unix:///PATH, or tcp://IP:PORT (with mutual TLS)"
    ))
}

/// The TLS a TCP listener needs: its certificate and key, and the CA clients' certificates
/// must chain to (PEM files, as dockerd's `--tlscert`, `--tlskey`, `--tlscacert`).
pub fn mutual_tls(ca: &Path, cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, String> {
    let read =
        |path: &Path| std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()));
    let certs = |path: &Path| -> Result<Vec<CertificateDer<'static>>, String> {
        let pem = read(path)?;
        let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: not PEM certificates: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("{}: no certificate in it", path.display()));
        }
        Ok(certs)
    };
    let mut roots = rustls::RootCertStore::empty();
    for ca_cert in certs(ca)? {
        roots
            .add(ca_cert)
            .map_err(|e| format!("{}: not a CA certificate: {e}", ca.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| format!("{}: {e}", ca.display()))?;
    let key = PrivateKeyDer::from_pem_slice(&read(key)?)
        .map_err(|e| format!("{}: not a PEM private key: {e}", key.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(cert)?, key)
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Accept connections with `accept` until `stop` resolves, each served by `serve` on a
/// task of its own; `what` names the server in the log. The loop every HTTP listener of
/// shoald shares (this API's, the web view's, the metrics').
pub async fn accept_until<C, A, AF, S, SF>(
    what: &'static str,
    mut accept: A,
    stop: impl Future<Output = ()>,
    serve: S,
) where
    A: FnMut() -> AF,
    AF: Future<Output = std::io::Result<C>>,
    S: Fn(C) -> SF,
    SF: Future<Output = ()> + Send + 'static,
{
    tokio::pin!(stop);
    loop {
        let conn = tokio::select! {
            _ = &mut stop => return,
            accepted = accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!("{what}: accepting a connection: {e}");
                    continue;
                }
            },
        };
        tokio::spawn(serve(conn));
    }
}

/// Serve HTTP/1.1 on one connection with `service` until it ends.
pub async fn http1_connection<S, Svc, B>(what: &'static str, stream: S, service: Svc)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    Svc: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = hyper::Response<B>,
            Error = std::convert::Infallible,
        > + Send,
    Svc::Future: Send,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if let Err(e) = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!("{what}: connection ended: {e}");
    }
}

/// Serve `listener` until `stop` resolves.
pub async fn serve(listener: UnixListener, backend: Backend, stop: impl Future<Output = ()>) {
    accept_until(
        "docker api",
        || async { listener.accept().await.map(|(stream, _)| stream) },
        stop,
        move |stream| connection(stream, backend.clone()),
    )
    .await
}

/// Serve `listener` until `stop` resolves, each connection only once its TLS handshake,
/// with a client certificate `tls` trusts, is done.
pub async fn serve_tls(
    listener: TcpListener,
    tls: tokio_rustls::TlsAcceptor,
    backend: Backend,
    stop: impl Future<Output = ()>,
) {
    accept_until(
        "docker api",
        || listener.accept(),
        stop,
        move |(stream, peer)| {
            let (tls, backend) = (tls.clone(), backend.clone());
            async move {
                let handshake =
                    tokio::time::timeout(std::time::Duration::from_secs(10), tls.accept(stream))
                        .await;
                match handshake {
                    Ok(Ok(stream)) => connection(stream, backend).await,
                    Ok(Err(e)) => tracing::info!(%peer, "docker api: refused a TLS client: {e}"),
                    Err(_) => tracing::info!(%peer, "docker api: no TLS handshake within 10 s"),
                }
            }
        },
    )
    .await
}

async fn connection<S>(stream: S, backend: Backend)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let backend = backend.clone();
        async move { Ok::<_, std::convert::Infallible>(answer(&backend, request).await) }
    });
    http1_connection("docker api", stream, service).await
}

async fn answer(
    backend: &Backend,
    request: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<Body> {
    let method = request.method().clone();
    let uri = request.uri().clone();
    let mut headers = Headers { swarm: None };
    let reply = match Request::read(request).await {
        Ok(request) => {
            if request.path == ["_ping"] {
                headers.swarm = backend
                    .info()
                    .await
                    .ok()
                    .map(|info| crate::routes::swarm_header(&info).to_string());
            }
            crate::routes::handle(backend, request)
                .await
                .unwrap_or_else(Reply::from)
        }
        Err(e) => Reply::from(e),
    };
    let response = reply.into_response(&headers);
    tracing::debug!(%method, %uri, status = %response.status(), "docker api");
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_are_a_unix_path_or_a_tcp_ip_and_port() {
        assert_eq!(
            listen_addr("unix:///run/shoal/docker-api.sock"),
            Ok(Listen::Unix(PathBuf::from("/run/shoal/docker-api.sock")))
        );
        assert_eq!(
            listen_addr("tcp://127.0.0.1:2376"),
            Ok(Listen::Tcp("127.0.0.1:2376".into()))
        );
        for bad in [
            "unix://relative.sock",
            "tcp://host:2376",
            "tcp://1.2.3.4",
            "http://x",
            "",
        ] {
            let err = listen_addr(bad).expect_err(bad);
            assert!(err.contains("give unix:///PATH, or tcp://IP:PORT"), "{err}");
        }
    }

    #[test]
    fn missing_or_bad_tls_files_are_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("ca.pem");
        let err = mutual_tls(&missing, &missing, &missing)
            .err()
            .expect("refused");
        assert!(err.contains("ca.pem"), "{err}");
        std::fs::write(&missing, "not pem").expect("write");
        let err = mutual_tls(&missing, &missing, &missing)
            .err()
            .expect("refused");
        assert!(err.contains("no certificate"), "{err}");
    }
}

//! The listener: HTTP/1.1 connections on a unix socket, each request answered by
//! [`crate::routes::handle`].

use std::future::Future;
use std::path::Path;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::UnixListener;

use crate::backend::Backend;
use crate::http::{Body, Headers, Reply, Request};

/// `unix:///PATH` as the path, with a clear error for anything else.
pub fn socket_path(url: &str) -> Result<&Path, String> {
    match url.strip_prefix("unix://") {
        Some(path) if path.starts_with('/') => Ok(Path::new(path)),
        _ => Err(format!(
            "invalid --docker-api {url:?}: give unix:///PATH (TCP needs mutual TLS, which is not offered yet)"
        )),
    }
}

/// Serve `listener` until `stop` resolves.
pub async fn serve(listener: UnixListener, backend: Backend, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    loop {
        let stream = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!("docker api: accepting a connection: {e}");
                    continue;
                }
            },
        };
        let backend = backend.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let backend = backend.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&backend, request).await) }
            });
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!("docker api: connection ended: {e}");
            }
        });
    }
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

//! `--metrics-addr`: Prometheus scrapes `GET /metrics` here (plain HTTP, as dockerd's
//! `metrics-addr`: put it on an address only the monitoring network reaches).

use std::convert::Infallible;
use std::future::Future;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper::{Method, Response, StatusCode};
use tokio::net::TcpListener;

use crate::daemon::Daemon;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serve `listener` until `stop` resolves.
pub async fn serve(listener: TcpListener, daemon: Daemon, stop: impl Future<Output = ()>) {
    shoal_dockerapi::accept_until(
        "metrics",
        || async { listener.accept().await.map(|(stream, _)| stream) },
        stop,
        move |stream| {
            let daemon = daemon.clone();
            let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let daemon = daemon.clone();
                async move { Ok::<_, Infallible>(answer(&daemon, &request).await) }
            });
            shoal_dockerapi::http1_connection("metrics", stream, service)
        },
    )
    .await
}

async fn answer<B>(daemon: &Daemon, request: &hyper::Request<B>) -> Response<Full<Bytes>> {
    let (status, kind, body) = match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => (StatusCode::OK, OPENMETRICS, daemon.metrics_text().await),
        (_, "/metrics") => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "GET /metrics\n".to_string(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "Shoal serves its metrics at /metrics\n".to_string(),
        ),
    };
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, kind)
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

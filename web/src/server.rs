//! The listener and the routes: `/login`, the page and its two assets, `/api/state`,
//! `/api/events` (server-sent events) and `/api/logs`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION, SET_COOKIE,
    X_CONTENT_TYPE_OPTIONS,
};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use shoal_dockerapi::Backend;
use shoal_proto::WatchEventsRequest;
use tokio::net::TcpListener;

use crate::auth::Token;
use crate::logs::{self, Of};

type Body = BoxBody<Bytes, Infallible>;

const PAGE: &str = include_str!("../assets/index.html");
const SCRIPT: &str = include_str!("../assets/app.js");
const STYLE: &str = include_str!("../assets/app.css");

/// How often an idle event stream says it is alive (proxies drop silent connections).
const KEEPALIVE: Duration = Duration::from_secs(15);

/// A service's or node's excerpt: at most this many lines per task.
const MAX_TAIL: i64 = 200;

/// Serve the web view on `listener` until `stop` resolves.
pub async fn serve(
    listener: TcpListener,
    backend: Backend,
    token: Token,
    stop: impl Future<Output = ()>,
) {
    shoal_dockerapi::accept_until(
        "web view",
        || async { listener.accept().await.map(|(stream, _)| stream) },
        stop,
        move |stream| {
            let (backend, token) = (backend.clone(), token.clone());
            let service = service_fn(move |request| {
                let (backend, token) = (backend.clone(), token.clone());
                async move { Ok::<_, Infallible>(answer(&backend, &token, request).await) }
            });
            shoal_dockerapi::http1_connection("web view", stream, service)
        },
    )
    .await
}

async fn answer<B>(backend: &Backend, token: &Token, request: Request<B>) -> Response<Body> {
    let query = query_of(request.uri().query());
    let path = request.uri().path().to_string();
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "the web view only reads\n");
    }
    if path == "/login" {
        return login(token, query.get("token").map(String::as_str));
    }
    if !token.admits(request.headers()) {
        return locked();
    }
    match path.as_str() {
        "/" | "/index.html" => asset(PAGE, "text/html; charset=utf-8"),
        "/app.js" => asset(SCRIPT, "text/javascript; charset=utf-8"),
        "/app.css" => asset(STYLE, "text/css; charset=utf-8"),
        "/api/state" => match crate::view::read(backend).await {
            Ok(view) => json(StatusCode::OK, &view),
            Err(status) => refused(&status),
        },
        "/api/logs" => {
            let tail = query
                .get("tail")
                .and_then(|t| t.parse::<i64>().ok())
                .unwrap_or(50)
                .clamp(1, MAX_TAIL);
            let of = match (query.get("service"), query.get("node")) {
                (Some(s), None) => Of::Service(s.clone()),
                (None, Some(n)) => Of::Node(n.clone()),
                _ => {
                    return json(
                        StatusCode::BAD_REQUEST,
                        &Message::new("give service=ID or node=ID"),
                    )
                }
            };
            match logs::recent(backend, &of, tail).await {
                Ok(excerpt) => json(StatusCode::OK, &excerpt),
                Err(status) => refused(&status),
            }
        }
        "/api/events" => events(backend).await,
        _ => text(StatusCode::NOT_FOUND, "no such page\n"),
    }
}

/// `/login?token=T`: the cookie, and on to the page.
fn login(token: &Token, presented: Option<&str>) -> Response<Body> {
    match presented {
        Some(t) if token.matches(t) => Response::builder()
            .status(StatusCode::SEE_OTHER)
            .header(LOCATION, "/")
            .header(SET_COOKIE, token.cookie())
            .header(CACHE_CONTROL, "no-store")
            .body(empty())
            .unwrap_or_else(|_| Response::new(empty())),
        _ => locked(),
    }
}

/// Without the token: how to get in.
fn locked() -> Response<Body> {
    let page = "<!doctype html><meta charset=utf-8><title>Shoal</title>\
        <p>This is Shoal's web view. Open the link <code>shoal web</code> prints on this manager.</p>\n";
    Response::builder()
        .status(StatusCode::UNAUTHORIZED)
        .header(CONTENT_TYPE, "text/html; charset=utf-8")
        .body(full(page))
        .unwrap_or_else(|_| Response::new(empty()))
}

/// The swarm's events as server-sent events: one `change` per event, its type, action,
/// id and name; the page reads the state again on each.
async fn events(backend: &Backend) -> Response<Body> {
    let mut client = backend.events.clone();
    let watched = client
        .watch(WatchEventsRequest {
            since_ms: 0,
            ..Default::default()
        })
        .await;
    let stream = match watched {
        Ok(s) => s.into_inner(),
        Err(status) => return refused(&status),
    };
    let opening = futures::stream::once(async { Bytes::from_static(b"retry: 1000\n: open\n\n") });
    let changes = stream
        .take_while(|m| std::future::ready(m.is_ok()))
        .flat_map(|message| {
            let frames: Vec<Bytes> = message
                .map(|m| m.events)
                .unwrap_or_default()
                .into_iter()
                .map(|e| {
                    let data = serde_json::json!({
                        "type": e.r#type,
                        "action": e.action,
                        "id": e.id,
                        "name": e.attributes.get("name").cloned().unwrap_or_default(),
                        "time_ms": e.time_ms,
                    });
                    Bytes::from(format!("event: change\ndata: {data}\n\n"))
                })
                .collect();
            futures::stream::iter(frames)
        });
    // The stream ends with the watch (shoald stopping): the browser reconnects.
    let changes = changes
        .map(Some)
        .chain(futures::stream::once(async { None }));
    let alive = tokio_stream::wrappers::IntervalStream::new(tokio::time::interval(KEEPALIVE))
        .map(|_| Some(Bytes::from_static(b": alive\n\n")));
    let body = opening
        .map(Some)
        .chain(futures::stream::select(changes, alive))
        .take_while(|frame| std::future::ready(frame.is_some()))
        .filter_map(std::future::ready)
        .map(|bytes| Ok::<_, Infallible>(Frame::data(bytes)));
    Response::builder()
        .header(CONTENT_TYPE, "text/event-stream")
        .header(CACHE_CONTROL, "no-store")
        .body(BodyExt::boxed(StreamBody::new(body)))
        .unwrap_or_else(|_| Response::new(empty()))
}

#[derive(Serialize)]
struct Message {
    message: String,
}

impl Message {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// A Control API refusal, for the page to show (a worker: not a manager).
fn refused(status: &tonic::Status) -> Response<Body> {
    let code = match status.code() {
        tonic::Code::NotFound => StatusCode::NOT_FOUND,
        tonic::Code::InvalidArgument => StatusCode::BAD_REQUEST,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    json(code, &Message::new(status.message()))
}

fn json(code: StatusCode, value: &impl Serialize) -> Response<Body> {
    let body = serde_json::to_vec(value)
        .unwrap_or_else(|e| format!("{{\"message\":\"{e}\"}}").into_bytes());
    Response::builder()
        .status(code)
        .header(CONTENT_TYPE, "application/json")
        .header(CACHE_CONTROL, "no-store")
        .body(full(body))
        .unwrap_or_else(|_| Response::new(empty()))
}

fn asset(content: &'static str, kind: &str) -> Response<Body> {
    Response::builder()
        .header(CONTENT_TYPE, kind)
        .header(CONTENT_SECURITY_POLICY, "default-src 'self'")
        .header(X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(CACHE_CONTROL, "no-cache")
        .body(full(content))
        .unwrap_or_else(|_| Response::new(empty()))
}

fn text(code: StatusCode, body: &'static str) -> Response<Body> {
    Response::builder()
        .status(code)
        .header(CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(full(body))
        .unwrap_or_else(|_| Response::new(empty()))
}

fn full(bytes: impl Into<Bytes>) -> Body {
    BodyExt::boxed(Full::new(bytes.into()))
}

fn empty() -> Body {
    full(Bytes::new())
}

/// `a=1&b=x%20y` as a map, percent-decoded.
fn query_of(query: Option<&str>) -> HashMap<String, String> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let hex = |at: usize| bytes.get(at).and_then(|c| (*c as char).to_digit(16));
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode_as_browsers_encode_them() {
        let q = query_of(Some("service=web%201&tail=20&x&bad=%zz&end=%4"));
        assert_eq!(q["service"], "web 1");
        assert_eq!(q["tail"], "20");
        assert_eq!(q["x"], "");
        assert_eq!(q["bad"], "%zz");
        assert_eq!(q["end"], "%4");
        assert!(query_of(None).is_empty());
    }
}

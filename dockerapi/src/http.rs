//! HTTP as dockerd speaks it: routes under an optional `/vX.Y` prefix (1.24 up to
//! [`API_VERSION`]), the headers every answer carries, JSON bodies and errors, and
//! streamed bodies for logs and events.

use std::collections::HashMap;
use std::convert::Infallible;

use bytes::Bytes;
use futures::Stream;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{HeaderMap, Method, Response, StatusCode};
use serde::Serialize;

use crate::error::{ApiError, ApiResult};

/// The API version Shoal answers as (Docker 20.10's).
pub const API_VERSION: &str = "1.41";
/// The oldest version a client may ask for.
pub const MIN_API_VERSION: &str = "1.24";
/// The largest request body taken (a secret or config is at most 500 KiB; a service spec
/// is a few KiB).
const MAX_BODY: usize = 16 << 20;

pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// One request, its path split and decoded, its version prefix checked and removed.
pub struct Request {
    pub method: Method,
    /// The path's segments after the version prefix, percent-decoded.
    pub path: Vec<String>,
    pub query: HashMap<String, String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Request {
    pub async fn read(request: hyper::Request<Incoming>) -> ApiResult<Request> {
        let (parts, body) = request.into_parts();
        let raw_path = parts.uri.path();
        let mut path: Vec<String> = raw_path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(percent_decode)
            .collect();
        if let Some(version) = path.first().and_then(|s| s.strip_prefix('v')) {
            if let Some(asked) = parse_version(version) {
                check_version(asked, version)?;
                path.remove(0);
            }
        }
        let query = parts
            .uri
            .query()
            .map(|q| {
                q.split('&')
                    .filter(|p| !p.is_empty())
                    .map(|pair| {
                        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                        (percent_decode(k), percent_decode(v))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let body = http_body_util::Limited::new(body, MAX_BODY)
            .collect()
            .await
            .map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?
            .to_bytes();
        Ok(Request {
            method: parts.method,
            path,
            query,
            headers: parts.headers,
            body,
        })
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }

    /// A boolean parameter as Docker reads one: "1", "true", "True" are true; absent,
    /// "", "0", "false" are false.
    pub fn flag(&self, name: &str) -> bool {
        matches!(self.param(name), Some(v) if !matches!(v, "" | "0" | "false" | "False" | "FALSE"))
    }

    /// The JSON body as `T`, its keys matched as Go matches them; 400 when it is not.
    pub fn json<T: serde::de::DeserializeOwned>(&self, what: &str) -> ApiResult<T> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::bad_request(format!(
                "the request has no body: send the {what} as JSON"
            )));
        }
        let value: serde_json::Value = serde_json::from_slice(&self.body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON in the {what}: {e}")))?;
        serde_json::from_value(crate::gokeys::canonical(value))
            .map_err(|e| ApiError::bad_request(format!("invalid {what}: {e}")))
    }

    /// `?version=N`, required by updates.
    pub fn version(&self) -> ApiResult<u64> {
        let raw = self.param("version").unwrap_or("");
        raw.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "invalid version {raw:?}: send the Version.Index of the object as read (?version=N)"
            ))
        })
    }
}

fn parse_version(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

fn check_version(asked: (u32, u32), text: &str) -> ApiResult<()> {
    let max = parse_version(API_VERSION).unwrap_or((1, 41));
    let min = parse_version(MIN_API_VERSION).unwrap_or((1, 24));
    if asked > max {
        return Err(ApiError::bad_request(format!(
            "client version {text} is too new. Maximum supported API version is {API_VERSION}"
        )));
    }
    if asked < min {
        return Err(ApiError::bad_request(format!(
            "client version {text} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
        )));
    }
    Ok(())
}

/// `%2F` and `+`-free percent-decoding (paths and query values).
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An answer: JSON, empty, plain text or a stream.
pub enum Reply {
    Json(StatusCode, Vec<u8>),
    Empty(StatusCode),
    Text(StatusCode, &'static str, String),
    Stream(&'static str, Body),
}

impl Reply {
    pub fn json(status: StatusCode, value: &impl Serialize) -> Reply {
        match serde_json::to_vec(value) {
            Ok(mut bytes) => {
                bytes.push(b'\n');
                Reply::Json(status, bytes)
            }
            Err(e) => Reply::from(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("writing the answer: {e}"),
            )),
        }
    }

    pub fn ok(value: &impl Serialize) -> Reply {
        Reply::json(StatusCode::OK, value)
    }

    /// A body streamed as it comes (logs, events).
    pub fn stream<S>(content_type: &'static str, stream: S) -> Reply
    where
        S: Stream<Item = Bytes> + Send + 'static,
    {
        use futures::StreamExt;
        let frames = stream.map(|chunk| Ok::<_, std::io::Error>(Frame::data(chunk)));
        Reply::Stream(content_type, BodyExt::boxed_unsync(StreamBody::new(frames)))
    }

    pub fn into_response(self, info: &Headers) -> Response<Body> {
        let full = |bytes: Vec<u8>| {
            Full::new(Bytes::from(bytes))
                .map_err(|never: Infallible| match never {})
                .boxed_unsync()
        };
        let (status, content_type, body) = match self {
            Reply::Json(status, bytes) => (status, Some("application/json"), full(bytes)),
            Reply::Empty(status) => (status, None, full(Vec::new())),
            Reply::Text(status, content_type, text) => {
                (status, Some(content_type), full(text.into_bytes()))
            }
            Reply::Stream(content_type, body) => (StatusCode::OK, Some(content_type), body),
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        let headers = response.headers_mut();
        if let Some(content_type) = content_type {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        }
        info.write(headers);
        response
    }
}

impl From<ApiError> for Reply {
    fn from(e: ApiError) -> Reply {
        if e.status.is_server_error() {
            tracing::warn!(status = %e.status, "docker api: {}", e.message);
        }
        Reply::json(e.status, &serde_json::json!({ "message": e.message }))
    }
}

/// The headers dockerd puts on every answer.
#[derive(Clone)]
pub struct Headers {
    /// `Swarm`: "inactive", "active/manager" or "active/worker" (on `/_ping`).
    pub swarm: Option<String>,
}

impl Headers {
    fn write(&self, headers: &mut HeaderMap) {
        headers.insert("Api-Version", HeaderValue::from_static(API_VERSION));
        headers.insert("Docker-Experimental", HeaderValue::from_static("false"));
        headers.insert("Ostype", HeaderValue::from_static("linux"));
        headers.insert(
            "Server",
            HeaderValue::from_static(concat!("Shoal/", env!("CARGO_PKG_VERSION"), " (linux)")),
        );
        if let Some(swarm) = self
            .swarm
            .as_deref()
            .and_then(|s| HeaderValue::from_str(s).ok())
        {
            headers.insert("Swarm", swarm);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_1_24_to_1_41_are_answered() {
        assert!(check_version((1, 24), "1.24").is_ok());
        assert!(check_version((1, 41), "1.41").is_ok());
        let new = check_version((1, 50), "1.50").expect_err("too new");
        assert!(new
            .message
            .contains("Maximum supported API version is 1.41"));
        let old = check_version((1, 12), "1.12").expect_err("too old");
        assert!(old
            .message
            .contains("Minimum supported API version is 1.24"));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb%3A1"), "a/b:1");
        assert_eq!(percent_decode("%7B%22name%22%3A%7B%7D%7D"), "{\"name\":{}}");
        assert_eq!(percent_decode("50%"), "50%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}

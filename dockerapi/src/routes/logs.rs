//! `/services/{id}/logs` and `/tasks/{id}/logs`: lines in Docker's 8-byte-header stream
//! framing (stdout 1, stderr 2, then the length), each line
//! `[TIMESTAMP ]com.docker.swarm.node.id=..,com.docker.swarm.service.id=..,com.docker.swarm.task.id=.. LINE`,
//! the details prefix the docker CLI parses to print `web.1@n2    | LINE`.

use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use shoal_proto as pb;

use crate::backend::Backend;
use crate::clock;
use crate::error::{ApiError, ApiResult};
use crate::http::{Reply, Request};

/// What the request asks for, checked before anything is subscribed.
struct Asked {
    stdout: bool,
    stderr: bool,
    timestamps: bool,
    details: bool,
    options: pb::LogOptions,
}

fn asked(request: &Request) -> ApiResult<Asked> {
    let stdout = request.flag("stdout");
    let stderr = request.flag("stderr");
    if !stdout && !stderr {
        return Err(ApiError::bad_request(
            "Bad parameters: you must choose at least one stream (stdout=1 or stderr=1)",
        ));
    }
    let tail = match request.param("tail").unwrap_or("all") {
        "" | "all" => -1,
        n => n.parse::<i64>().map_err(|_| {
            ApiError::bad_request(format!(
                "invalid tail {n:?}: give a number of lines or \"all\""
            ))
        })?,
    };
    let since_ns = match request.param("since").unwrap_or("") {
        "" | "0" => 0,
        since => clock::parse_instant(since, std::time::SystemTime::now())
            .map_err(ApiError::bad_request)? as i64,
    };
    Ok(Asked {
        stdout,
        stderr,
        timestamps: request.flag("timestamps"),
        details: request.flag("details"),
        options: pb::LogOptions {
            follow: request.flag("follow"),
            tail,
            since_ns,
        },
    })
}

/// The logs of a service or a task (`target`: its id, name or id prefix).
pub async fn stream(backend: &Backend, target: &str, request: &Request) -> ApiResult<Reply> {
    let asked = asked(request)?;
    let mut logs = backend.logs.clone();
    let subscription = logs
        .subscribe_logs(tonic::Request::new(pb::SubscribeLogsRequest {
            target: target.into(),
            options: Some(asked.options),
        }))
        .await;
    let stream = backend.answer(subscription).await?;
    let lines = stream.flat_map(move |message| {
        let chunks: Vec<Bytes> = match message {
            Ok(message) => message
                .messages
                .iter()
                .filter(|m| match m.stream() {
                    pb::LogStream::Stdout => asked.stdout,
                    pb::LogStream::Stderr => asked.stderr,
                })
                .map(|m| frame(m, asked.timestamps, asked.details))
                .collect(),
            Err(status) => {
                tracing::debug!("docker api: a log stream ended: {status}");
                Vec::new()
            }
        };
        futures::stream::iter(chunks)
    });
    Ok(Reply::stream("application/vnd.docker.raw-stream", lines))
}

/// One line, framed.
fn frame(message: &pb::LogMessage, timestamps: bool, details: bool) -> Bytes {
    let context = message.context.clone().unwrap_or_default();
    let mut line = Vec::with_capacity(message.data.len() + 160);
    if timestamps {
        line.extend_from_slice(fixed_rfc3339(message.timestamp_ns).as_bytes());
        line.push(b' ');
    }
    // The docker CLI asks for details whenever it formats (all but `--raw`): the three
    // ids are what it reads to print `web.1@n2    |`.
    if details {
        line.extend_from_slice(
            format!(
                "com.docker.swarm.node.id={},com.docker.swarm.service.id={},com.docker.swarm.task.id={} ",
                query_escape(&context.node_id),
                query_escape(&context.service_id),
                query_escape(&context.task_id)
            )
            .as_bytes(),
        );
    }
    line.extend_from_slice(&message.data);
    line.push(b'\n');
    let mut framed = BytesMut::with_capacity(8 + line.len());
    framed.put_u8(match message.stream() {
        pb::LogStream::Stdout => 1,
        pb::LogStream::Stderr => 2,
    });
    framed.put_slice(&[0, 0, 0]);
    framed.put_u32(line.len() as u32);
    framed.put_slice(&line);
    framed.freeze()
}

/// Go's `jsonmessage.RFC3339NanoFixed`: always nine digits of fraction.
fn fixed_rfc3339(ns: i64) -> String {
    let text = clock::rfc3339_ns(i128::from(ns));
    let Some(base) = text.strip_suffix('Z') else {
        return text;
    };
    let (seconds, fraction) = base.split_once('.').unwrap_or((base, ""));
    format!("{seconds}.{fraction:0<9}Z")
}

/// Go's `url.QueryEscape` for ids (base-36: nothing to escape) and anything else.
fn query_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_framed_with_its_context() {
        let message = pb::LogMessage {
            context: Some(pb::LogContext {
                service_id: "s1".into(),
                node_id: "n1".into(),
                task_id: "t1".into(),
                ..Default::default()
            }),
            timestamp_ns: 1_733_108_645_000_000_001,
            stream: pb::LogStream::Stderr as i32,
            data: b"hello".to_vec(),
        };
        let framed = frame(&message, true, true);
        let text = "2024-12-02T03:04:05.000000001Z com.docker.swarm.node.id=n1,com.docker.swarm.service.id=s1,com.docker.swarm.task.id=t1 hello\n";
        assert_eq!(&framed[..4], &[2, 0, 0, 0]);
        assert_eq!(
            u32::from_be_bytes([framed[4], framed[5], framed[6], framed[7]]) as usize,
            text.len()
        );
        assert_eq!(&framed[8..], text.as_bytes());
        assert_eq!(
            fixed_rfc3339(1_733_108_645_000_000_000),
            "2024-12-02T03:04:05.000000000Z"
        );
    }
}

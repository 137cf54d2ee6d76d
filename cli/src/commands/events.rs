//! `shoal events`: the swarm's changes as they happen (or from `--since`, as far back as
//! the manager keeps them), one line each as `docker events` prints them, or JSON. The
//! stream comes from the contacted manager's own journal, so a leader change does not
//! break it; if the connection itself breaks (shoald restarting), the command connects
//! again and goes on after the last event it printed: nothing twice, nothing missed.

use std::io::{self, Write};
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;
use shoal_proto::{ClusterEvent, EventPosition, WatchEventsRequest};

use crate::client::Client;
use crate::format;
use crate::parse::{self, flag, Since};

/// The object types `--filter type=` takes.
const TYPES: &[&str] = &[
    "service", "node", "task", "network", "secret", "config", "stack", "cluster",
];
/// How long the command keeps trying to reconnect before it gives up.
const RECONNECT_FOR: Duration = Duration::from_secs(60);

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Show events since a time (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m")
    #[arg(long, value_parser = flag(parse::since))]
    pub since: Option<Since>,
    /// Stop at a time (e.g. "2013-01-02T13:23:37Z") or relative to now (e.g. "10s" ago)
    #[arg(long, value_parser = flag(parse::since))]
    pub until: Option<Since>,
    /// Filter: type=service|node|task|network|secret|config, event=create|update|remove
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// "json": one JSON object per line, as Docker's API sends them
    #[arg(long)]
    pub format: Option<String>,
}

struct Filters {
    types: Vec<String>,
    actions: Vec<String>,
}

fn filters(args: &EventsArgs) -> Result<Filters> {
    let mut filters = Filters {
        types: Vec::new(),
        actions: Vec::new(),
    };
    for f in &args.filter {
        match f.split_once('=') {
            Some(("type", t)) if TYPES.contains(&t) => filters.types.push(t.to_string()),
            Some(("type", t)) => bail!("invalid filter type={t}: use one of {}", TYPES.join(", ")),
            Some(("event", a)) if matches!(a, "create" | "update" | "remove") => {
                filters.actions.push(a.to_string())
            }
            Some(("event", a)) => bail!("invalid filter event={a}: use create, update or remove"),
            _ => bail!("invalid filter {f:?}: use type=TYPE or event=ACTION"),
        }
    }
    Ok(filters)
}

pub async fn events(host: &str, args: &EventsArgs) -> Result<()> {
    let filters = filters(args)?;
    let json = match args.format.as_deref() {
        None => false,
        Some("json") => true,
        Some(other) => bail!("invalid --format {other:?}: the only format is json"),
    };
    let now_ns = format::now_ms().saturating_mul(1_000_000);
    let ms = |s: &Since| s.at(now_ns) / 1_000_000;
    let mut request = WatchEventsRequest {
        after: None,
        since_ms: args.since.as_ref().map_or(0, |s| ms(s).max(1)),
        until_ms: args.until.as_ref().map_or(0, ms),
        types: filters.types.clone(),
    };
    let mut out = io::stdout().lock();
    let mut failing_since: Option<std::time::Instant> = None;
    let mut served = false;
    loop {
        let result = stream_once(host, &request, &filters, json, served, &mut out).await;
        match result {
            Ok(Ended::Done) => return Ok(()),
            Ok(Ended::ReaderGone) => return Ok(()),
            Ok(Ended::Broken(last, why)) => {
                served = true;
                if last.is_some() {
                    failing_since = None;
                }
                if let Some(last) = last {
                    request.after = Some(last);
                    request.since_ms = 0;
                }
                let first = *failing_since.get_or_insert_with(std::time::Instant::now);
                if first.elapsed() > RECONNECT_FOR {
                    bail!("the event stream broke and shoald did not come back within a minute: {why}");
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

enum Ended {
    /// `--until` passed.
    Done,
    /// The reader went away (`| head`).
    ReaderGone,
    /// The connection broke: the last position printed (if any), and why.
    Broken(Option<EventPosition>, String),
}

async fn stream_once(
    host: &str,
    request: &WatchEventsRequest,
    filters: &Filters,
    json: bool,
    served: bool,
    out: &mut impl Write,
) -> Result<Ended> {
    let mut client = match Client::connect(host).await {
        Ok(client) => client,
        Err(e) => return Ok(Ended::Broken(None, e.to_string())),
    };
    let mut stream = match client.watch_events(request.clone()).await {
        Ok(stream) => stream,
        // A node that is no manager never will be; one that served us and refuses now is
        // coming back up (its manager not started yet).
        Err(e) if is_refusal(&e) && !served => return Err(e),
        Err(e) => return Ok(Ended::Broken(None, e.to_string())),
    };
    let mut last = None;
    loop {
        match stream.message().await {
            Ok(Some(message)) => {
                for event in &message.events {
                    last = event.position;
                    if !filters.actions.is_empty() && !filters.actions.contains(&event.action) {
                        continue;
                    }
                    let line = if json {
                        json_line(event)
                    } else {
                        text_line(event)
                    };
                    if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
                        return Ok(Ended::ReaderGone);
                    }
                }
            }
            Ok(None) => return Ok(Ended::Done),
            Err(status) if status.code() == tonic::Code::OutOfRange => {
                bail!("{}", status.message())
            }
            Err(status) => return Ok(Ended::Broken(last, status.message().to_string())),
        }
    }
}

/// A refusal to serve at all (not a manager, locked): no use trying again.
fn is_refusal(e: &anyhow::Error) -> bool {
    let text = e.to_string();
    text.contains("not a swarm manager") || text.contains("locked")
}

/// `docker events`' line: `TIME TYPE ACTION ID (k=v, ...)`.
fn text_line(event: &ClusterEvent) -> String {
    let mut attributes: Vec<_> = event.attributes.iter().collect();
    attributes.sort();
    let attributes: Vec<String> = attributes.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "{} {} {} {} ({})",
        format::rfc3339(event.time_ms),
        event.r#type,
        event.action,
        event.id,
        attributes.join(", ")
    )
}

/// Docker's event message, plus the position to resume from.
fn json_line(event: &ClusterEvent) -> String {
    let position = event.position.unwrap_or_default();
    serde_json::json!({
        "Type": event.r#type,
        "Action": event.action,
        "Actor": {"ID": event.id, "Attributes": event.attributes},
        "scope": "swarm",
        "time": event.time_ms / 1000,
        "timeNano": i128::from(event.time_ms) * 1_000_000,
        "Position": format!("{}.{}", position.seq, position.index),
    })
    .to_string()
}

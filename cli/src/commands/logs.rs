//! `service logs SERVICE|TASK`: the output of a service's (or one task's) containers from
//! every node, gathered by the managers, each line prefixed with its task and node as
//! docker prints them. Lines the containers wrote to stderr go to stderr. A node that
//! cannot answer is reported once on stderr ("warning: node n3 is down: ...") and never
//! holds the command up.

use std::io::{self, Write};

use anyhow::{bail, Result};
use clap::Args;
use shoal_proto::names::{short_id, task_name};
use shoal_proto::{LogMessage, LogOptions, LogStream, SubscribeLogsRequest};

use crate::client::Client;
use crate::format;
use crate::parse::{self, flag, Since};

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short, long)]
    pub follow: bool,
    /// Do not map IDs to names in output
    #[arg(long)]
    pub no_resolve: bool,
    /// Do not include task IDs in output
    #[arg(long)]
    pub no_task_ids: bool,
    /// Do not truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Do not neatly format logs (no task and node prefix)
    #[arg(long)]
    pub raw: bool,
    /// Show logs since a time (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m")
    #[arg(long, value_parser = flag(parse::since))]
    pub since: Option<Since>,
    /// Number of lines to show from the end of each task's logs
    #[arg(short = 'n', long, default_value = "all", value_parser = flag(parse::tail))]
    pub tail: i64,
    /// Show timestamps
    #[arg(short, long)]
    pub timestamps: bool,
    /// Service name or id, or task id
    #[arg(value_name = "SERVICE|TASK")]
    pub target: String,
}

pub async fn logs(host: &str, args: &LogsArgs) -> Result<()> {
    let now_ns = format::now_ms().saturating_mul(1_000_000);
    let request = SubscribeLogsRequest {
        target: args.target.clone(),
        options: Some(LogOptions {
            follow: args.follow,
            tail: args.tail,
            since_ns: args.since.map_or(0, |s| s.at(now_ns)),
        }),
    };
    let mut client = Client::connect(host).await?;
    let mut stream = client.subscribe_logs(request).await?;
    let mut lines = Lines::new(args);
    while let Some(message) = client.next_logs(&mut stream).await? {
        if !message.warning.is_empty() {
            eprintln!("warning: {}", message.warning);
        }
        if !lines.write(&message.messages)? {
            // The reader went away (`| head`): stop quietly.
            return Ok(());
        }
    }
    Ok(())
}

/// Formats lines as docker does: `[TIME ]service.slot.task@node    | line`.
struct Lines<'a> {
    args: &'a LogsArgs,
    /// The prefix column grows to the widest prefix seen so far.
    width: usize,
}

impl<'a> Lines<'a> {
    fn new(args: &'a LogsArgs) -> Self {
        Self { args, width: 0 }
    }

    /// Writes the lines to stdout or stderr; false once stdout is closed.
    fn write(&mut self, messages: &[LogMessage]) -> Result<bool> {
        let mut out = io::stdout().lock();
        let mut err = io::stderr().lock();
        for m in messages {
            let line = self.format(m);
            let w: &mut dyn Write = if m.stream == LogStream::Stderr as i32 {
                &mut err
            } else {
                &mut out
            };
            match w.write_all(&line) {
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(false),
                Err(e) => bail!("writing logs: {e}"),
                Ok(()) => {}
            }
        }
        match out.flush() {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
            Err(e) => bail!("writing logs: {e}"),
            Ok(()) => Ok(true),
        }
    }

    fn format(&mut self, m: &LogMessage) -> Vec<u8> {
        let mut line = Vec::with_capacity(m.data.len() + 64);
        if self.args.timestamps {
            line.extend_from_slice(timestamp(m.timestamp_ns).as_bytes());
            line.push(b' ');
        }
        if !self.args.raw {
            let prefix = self.prefix(m);
            self.width = self.width.max(prefix.len());
            line.extend_from_slice(
                format!("{prefix:<width$}    | ", width = self.width).as_bytes(),
            );
        }
        line.extend_from_slice(&m.data);
        line.push(b'\n');
        line
    }

    /// `service.slot.task@node`, names resolved and the task id cut to 12 unless asked not.
    fn prefix(&self, m: &LogMessage) -> String {
        let c = m.context.clone().unwrap_or_default();
        let resolve = |name: &str, id: &str| {
            if self.args.no_resolve || name.is_empty() {
                id.to_string()
            } else {
                name.to_string()
            }
        };
        let service = resolve(&c.service_name, &c.service_id);
        let node = resolve(&c.node_name, &c.node_id);
        let mut name = task_name(&service, c.slot, &c.node_id);
        if !self.args.no_task_ids {
            let id = if self.args.no_trunc {
                c.task_id.as_str()
            } else {
                short_id(&c.task_id)
            };
            name = format!("{name}.{id}");
        }
        format!("{name}@{node}")
    }
}

/// RFC 3339 with nanoseconds, UTC, as docker's `--timestamps`.
fn timestamp(ns: i64) -> String {
    let at =
        std::time::UNIX_EPOCH + std::time::Duration::from_nanos(u64::try_from(ns).unwrap_or(0));
    humantime::format_rfc3339_nanos(at).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use shoal_proto::LogContext;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: LogsArgs,
    }

    fn args(argv: &[&str]) -> Result<LogsArgs, String> {
        let mut full = vec!["logs"];
        full.extend_from_slice(argv);
        Cli::try_parse_from(full)
            .map(|c| c.args)
            .map_err(|e| e.to_string().lines().next().unwrap_or_default().to_string())
    }

    fn message(slot: u64, task: &str, node: &str, data: &str) -> LogMessage {
        LogMessage {
            context: Some(LogContext {
                service_id: "svc0123456789abcdef".into(),
                node_id: format!("{node}-id0123456789"),
                task_id: task.into(),
                service_name: "web".into(),
                node_name: node.into(),
                slot,
            }),
            timestamp_ns: 1_700_000_000_123_456_789,
            stream: LogStream::Stdout as i32,
            data: data.as_bytes().to_vec(),
        }
    }

    fn text(lines: &mut Lines<'_>, m: &LogMessage) -> String {
        String::from_utf8(lines.format(m)).unwrap_or_default()
    }

    #[test]
    fn lines_carry_task_and_node_as_docker_prints_them() {
        let a = args(&["web"]).expect("valid flags");
        let mut lines = Lines::new(&a);
        assert_eq!(
            text(
                &mut lines,
                &message(1, "abcdefghijklmnopqrstuvwxy", "n1", "hello")
            ),
            "web.1.abcdefghijkl@n1    | hello\n"
        );
        // The column widens for a longer prefix and stays wide.
        assert_eq!(
            text(
                &mut lines,
                &message(10, "zbcdefghijklmnopqrstuvwxy", "n1", "x")
            ),
            "web.10.zbcdefghijkl@n1    | x\n"
        );
        assert_eq!(
            text(
                &mut lines,
                &message(2, "ybcdefghijklmnopqrstuvwxy", "n2", "y")
            ),
            "web.2.ybcdefghijkl@n2     | y\n"
        );
    }

    #[test]
    fn flags_change_the_prefix() {
        let m = message(3, "abcdefghijklmnopqrstuvwxy", "n1", "hi");
        let cases = [
            (
                vec!["-t", "web"],
                "2023-11-14T22:13:20.123456789Z web.3.abcdefghijkl@n1    | hi\n",
            ),
            (vec!["--raw", "web"], "hi\n"),
            (
                vec!["--raw", "-t", "web"],
                "2023-11-14T22:13:20.123456789Z hi\n",
            ),
            (vec!["--no-task-ids", "web"], "web.3@n1    | hi\n"),
            (
                vec!["--no-trunc", "web"],
                "web.3.abcdefghijklmnopqrstuvwxy@n1    | hi\n",
            ),
            (
                vec!["--no-resolve", "--no-task-ids", "web"],
                "svc0123456789abcdef.3@n1-id0123456789    | hi\n",
            ),
        ];
        for (argv, want) in cases {
            let a = args(&argv).expect("valid flags");
            assert_eq!(text(&mut Lines::new(&a), &m), want, "{argv:?}");
        }
    }

    #[test]
    fn global_tasks_are_named_by_node() {
        let a = args(&["--no-task-ids", "agent"]).expect("valid flags");
        let m = message(0, "t1", "n2", "up");
        assert_eq!(
            text(&mut Lines::new(&a), &m),
            "web.n2-id0123456789@n2    | up\n"
        );
    }

    #[test]
    fn bad_flags_are_refused_with_the_fix() {
        assert_eq!(
            args(&["--tail", "ten", "web"]).expect_err("refused"),
            "error: invalid line count \"ten\" for --tail: use a whole number of 0 or more, or \"all\""
        );
        assert_eq!(
            args(&["--since", "5x", "web"]).expect_err("refused"),
            "error: invalid time \"5x\" for --since: use a UTC time such as 2013-01-02T13:23:37Z, a Unix time, or a duration before now such as 42m"
        );
        assert!(args(&[]).is_err());
        let a = args(&["-n", "5", "--since", "2013-01-02T13:23:37Z", "web"]).expect("valid flags");
        assert_eq!(a.tail, 5);
        assert_eq!(a.since, Some(Since::At(1_357_133_017_000_000_000)));
        assert_eq!(
            args(&["--since", "42m", "web"]).expect("valid flags").since,
            Some(Since::Ago(std::time::Duration::from_secs(42 * 60)))
        );
        assert_eq!(
            args(&["--since", "1700000000.5", "web"])
                .expect("valid flags")
                .since,
            Some(Since::At(1_700_000_000_500_000_000))
        );
        assert_eq!(args(&["web"]).expect("valid flags").tail, -1);
    }
}

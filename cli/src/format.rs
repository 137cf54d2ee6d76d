//! Printing as docker prints: borderless tables with docker's column spacing, relative
//! times ("5 seconds ago"), state names, truncation, natural ordering and JSON lines.

use std::cmp::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use comfy_table::{presets, ColumnConstraint, ContentArrangement, Table, Width};
use serde::Serialize;

/// docker's tabwriter: cells at least 10 wide, 3 spaces between columns.
const MIN_WIDTH: u16 = 10;
const GAP: u16 = 3;

/// docker's cap on an error in `service ps` unless `--no-trunc`.
pub const MAX_ERROR_LEN: usize = 30;

/// A table with a header row, laid out as docker's `ls` commands print it, without a
/// trailing newline. Newlines inside cells are flattened so each row stays one line.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut t = Table::new();
    t.load_style(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.to_vec());
    for row in rows {
        t.add_row(
            row.iter()
                .map(|c| c.replace(['\n', '\r'], " "))
                .collect::<Vec<_>>(),
        );
    }
    let last = header.len().saturating_sub(1);
    for (i, column) in t.column_iter_mut().enumerate() {
        if i < last {
            column.set_padding((0, GAP));
            column.set_constraint(ColumnConstraint::LowerBoundary(Width::Fixed(MIN_WIDTH)));
        } else {
            column.set_padding((0, 0));
        }
    }
    t.trim_fmt()
}

/// One compact JSON object, as `--format json` prints each row.
pub fn json_line<T: Serialize>(value: &T) -> anyhow::Result<String> {
    Ok(serde_json::to_string(value)?)
}

/// docker inspect's layout: pretty JSON indented by four spaces.
pub fn json_pretty<T: Serialize>(value: &T) -> anyhow::Result<String> {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    value.serialize(&mut ser)?;
    Ok(String::from_utf8(out)?)
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// RFC 3339 with milliseconds, UTC; the epoch for missing or negative times.
pub fn rfc3339(ms: i64) -> String {
    let ms = u64::try_from(ms).unwrap_or(0);
    let t = UNIX_EPOCH
        .checked_add(Duration::from_millis(ms))
        .unwrap_or(UNIX_EPOCH);
    humantime::format_rfc3339_millis(t).to_string()
}

/// go-units' HumanDuration, which docker prints in `ps` and `ls`.
pub fn human_duration(d: Duration) -> String {
    let seconds = d.as_secs();
    if seconds < 1 {
        return "Less than a second".into();
    }
    if seconds == 1 {
        return "1 second".into();
    }
    if seconds < 60 {
        return format!("{seconds} seconds");
    }
    let minutes = seconds / 60;
    if minutes == 1 {
        return "About a minute".into();
    }
    if minutes < 60 {
        return format!("{minutes} minutes");
    }
    // Rounded to the nearest hour, as go-units does.
    let hours = (seconds + 1800) / 3600;
    if hours == 1 {
        return "About an hour".into();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    format!("{} years", seconds / 3600 / 24 / 365)
}

/// "5 seconds ago"; a time in the future (clock skew) counts as now.
pub fn ago(now_ms: i64, then_ms: i64) -> String {
    let elapsed = u64::try_from(now_ms.saturating_sub(then_ms)).unwrap_or(0);
    format!(
        "{} ago",
        human_duration(Duration::from_millis(elapsed)).to_lowercase()
    )
}

/// docker's PrettyPrint of a state: "running" -> "Running".
pub fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// docker's CURRENT STATE: "Running 5 seconds ago"; the state alone if never timestamped.
/// A task with a healthcheck says how it is as `docker ps` does: "(healthy)",
/// "(health: starting)", "(unhealthy)" (only while starting or running).
/// What a preparing task is doing, after its state: "Preparing 3 seconds ago (fetching
/// image from n2: 12.0 MB of 40.1 MB)". Other states, and a plain "preparing", as they are.
pub fn with_progress(shown: String, state: &str, message: &str) -> String {
    if state == "preparing" && !message.is_empty() && message != "preparing" {
        format!("{shown} ({message})")
    } else {
        shown
    }
}

pub fn current_state(state: &str, health: &str, timestamp_ms: i64, now_ms: i64) -> String {
    let mut shown = if timestamp_ms <= 0 {
        capitalize(state)
    } else {
        format!("{} {}", capitalize(state), ago(now_ms, timestamp_ms))
    };
    if matches!(state, "starting" | "running") {
        match health {
            "" => {}
            "starting" => shown.push_str(" (health: starting)"),
            other => shown.push_str(&format!(" ({other})")),
        }
    }
    shown
}

/// Cuts `s` to `max` characters, the last one an ellipsis.
pub fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// docker's ERROR column: quoted, truncated to 30 characters unless `no_trunc`.
pub fn task_error(err: &str, no_trunc: bool) -> String {
    if err.is_empty() {
        return String::new();
    }
    let err = if no_trunc {
        err.to_string()
    } else {
        ellipsis(err, MAX_ERROR_LEN)
    };
    format!("\"{err}\"")
}

/// docker drops the digest of an image reference unless `--no-trunc`.
pub fn image(image: &str, no_trunc: bool) -> &str {
    if no_trunc {
        image
    } else {
        image.split_once('@').map_or(image, |(name, _)| name)
    }
}

/// Natural order, as docker sorts names: "web.2" before "web.10".
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let run = |s: &[u8]| s.iter().take_while(|c| c.is_ascii_digit()).count();
                let (na, nb) = (run(a), run(b));
                let (da, db) = (&a[..na], &b[..nb]);
                let strip = |d: &[u8]| {
                    let zeros = d.iter().take_while(|c| **c == b'0').count();
                    d.len() - zeros
                };
                let ord = strip(da)
                    .cmp(&strip(db))
                    .then_with(|| da[na - strip(da)..].cmp(&db[nb - strip(db)..]))
                    .then_with(|| na.cmp(&nb));
                if ord != Ordering::Equal {
                    return ord;
                }
                a = &a[na..];
                b = &b[nb..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

/// go-units' BytesSize: "64MiB", "1.5GiB".
pub fn bytes_size(bytes: i64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    #[allow(clippy::cast_precision_loss)]
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{}{}", significant(value, 4), UNITS[unit])
}

/// nano CPUs as a decimal count: 500000000 -> "0.5".
pub fn cpus(nano_cpus: i64) -> String {
    let (whole, frac) = (nano_cpus / 1_000_000_000, (nano_cpus % 1_000_000_000).abs());
    if frac == 0 {
        return whole.to_string();
    }
    let frac = format!("{frac:09}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

/// `value` with at most `digits` significant digits, without trailing zeros (Go's %g).
fn significant(value: f64, digits: i32) -> String {
    if value == 0.0 {
        return "0".into();
    }
    #[allow(clippy::cast_possible_truncation)]
    let magnitude = value.abs().log10().floor() as i32 + 1;
    let decimals = usize::try_from((digits - magnitude).max(0)).unwrap_or(0);
    let s = format!("{value:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_spaced_like_docker() {
        let rows = vec![
            vec![
                "abc123def456".to_string(),
                "web".to_string(),
                "replicated".to_string(),
                "3/3".to_string(),
                "nginx:1".to_string(),
                String::new(),
            ],
            vec![
                "0123456789ab".to_string(),
                "a-much-longer-name".to_string(),
                "global".to_string(),
                "1/1".to_string(),
                "alpine".to_string(),
                String::new(),
            ],
        ];
        let got = table(&["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"], &rows);
        let want = "\
ID             NAME                 MODE         REPLICAS   IMAGE     PORTS
abc123def456   web                  replicated   3/3        nginx:1
0123456789ab   a-much-longer-name   global       1/1        alpine";
        assert_eq!(got, want);
    }

    #[test]
    fn empty_table_is_its_header() {
        assert_eq!(
            table(&["ID", "NAME"], &[]),
            format!("ID{}NAME", " ".repeat(8))
        );
    }

    #[test]
    fn cells_stay_on_one_line() {
        let got = table(&["A", "B"], &[vec!["x\ny".into(), "z".into()]]);
        assert_eq!(got, format!("A{}B\nx y{}z", " ".repeat(9), " ".repeat(7)));
    }

    #[test]
    fn human_durations() {
        let cases: &[(u64, &str)] = &[
            (0, "Less than a second"),
            (1, "1 second"),
            (5, "5 seconds"),
            (59, "59 seconds"),
            (60, "About a minute"),
            (119, "About a minute"),
            (120, "2 minutes"),
            (59 * 60, "59 minutes"),
            (3600, "About an hour"),
            (2 * 3600, "2 hours"),
            (47 * 3600, "47 hours"),
            (48 * 3600, "2 days"),
            (15 * 86400, "2 weeks"),
            (90 * 86400, "3 months"),
            (800 * 86400, "2 years"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(Duration::from_secs(*secs)), *want, "{secs}");
        }
    }

    #[test]
    fn current_states() {
        let now = 1_000_000;
        let cases: &[(&str, &str, i64, &str)] = &[
            ("running", "", now - 5_000, "Running 5 seconds ago"),
            ("rejected", "", now - 2_000, "Rejected 2 seconds ago"),
            ("pending", "", now - 500, "Pending less than a second ago"),
            ("running", "", now - 90_000, "Running about a minute ago"),
            ("running", "", now + 3_000, "Running less than a second ago"),
            ("new", "", 0, "New"),
            (
                "running",
                "healthy",
                now - 5_000,
                "Running 5 seconds ago (healthy)",
            ),
            (
                "starting",
                "starting",
                now - 1_000,
                "Starting 1 second ago (health: starting)",
            ),
            (
                "running",
                "unhealthy",
                now - 5_000,
                "Running 5 seconds ago (unhealthy)",
            ),
            // A finished task's last verdict is history, not state.
            ("failed", "unhealthy", now - 5_000, "Failed 5 seconds ago"),
        ];
        for (state, health, ts, want) in cases {
            assert_eq!(current_state(state, health, *ts, now), *want);
        }
    }

    #[test]
    fn a_preparing_task_says_what_it_is_doing() {
        let shown = |state, message| with_progress("Preparing 1 second ago".into(), state, message);
        assert_eq!(
            shown("preparing", "fetching image from n2: 1.0 MB of 4.0 MB"),
            "Preparing 1 second ago (fetching image from n2: 1.0 MB of 4.0 MB)"
        );
        assert_eq!(shown("preparing", "preparing"), "Preparing 1 second ago");
        assert_eq!(shown("preparing", ""), "Preparing 1 second ago");
        assert_eq!(shown("running", "started"), "Preparing 1 second ago");
    }

    #[test]
    fn task_errors() {
        let long = "image shoal-test/nope:1 not found: pull access denied";
        let cases: &[(&str, bool, &str)] = &[
            ("", false, ""),
            ("exit 1", false, "\"exit 1\""),
            (long, false, "\"image shoal-test/nope:1 not f…\""),
            (
                long,
                true,
                "\"image shoal-test/nope:1 not found: pull access denied\"",
            ),
        ];
        for (err, no_trunc, want) in cases {
            assert_eq!(task_error(err, *no_trunc), *want);
        }
    }

    #[test]
    fn images_lose_their_digest_when_truncated() {
        assert_eq!(image("nginx:1@sha256:abc", false), "nginx:1");
        assert_eq!(image("nginx:1@sha256:abc", true), "nginx:1@sha256:abc");
        assert_eq!(image("nginx", false), "nginx");
    }

    #[test]
    fn natural_order() {
        let mut names = vec!["web.10", "web.2", "api.1", "web.1", "web", "web.02"];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            names,
            ["api.1", "web", "web.1", "web.2", "web.02", "web.10"]
        );
    }

    #[test]
    fn sizes_and_cpus() {
        let cases: &[(i64, &str)] = &[
            (0, "0B"),
            (100, "100B"),
            (64 << 20, "64MiB"),
            (3 << 29, "1.5GiB"),
            (8_292_012_032, "7.723GiB"),
        ];
        for (bytes, want) in cases {
            assert_eq!(bytes_size(*bytes), *want);
        }
        assert_eq!(cpus(500_000_000), "0.5");
        assert_eq!(cpus(2_000_000_000), "2");
        assert_eq!(cpus(1_000_000_001), "1.000000001");
    }

    #[test]
    fn capitalizes() {
        assert_eq!(capitalize("running"), "Running");
        assert_eq!(capitalize(""), "");
    }

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(rfc3339(1_500), "1970-01-01T00:00:01.500Z");
        assert_eq!(rfc3339(-5), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn pretty_json_uses_four_spaces() {
        let got = json_pretty(&serde_json::json!([{"ID": "x"}])).unwrap_or_default();
        assert_eq!(got, "[\n    {\n        \"ID\": \"x\"\n    }\n]");
    }
}

//! Times as Docker writes and reads them: RFC 3339 with nanoseconds out
//! (`2026-12-02T03:04:05.123456789Z`, Go's `time.RFC3339Nano`), and `since`/`until` in as
//! Unix seconds (`1733108645`, `1733108645.5`), RFC 3339, or a duration back from now
//! (`10m`, `1h30m`), as the docker CLI accepts them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;

/// Go's zero time, which Docker writes for "never".
pub const ZERO: &str = "0001-01-01T00:00:00Z";

/// `ms` since the Unix epoch as RFC 3339 with the fraction trimmed as Go trims it.
pub fn rfc3339_ms(ms: i64) -> String {
    rfc3339_ns(i128::from(ms) * 1_000_000)
}

/// `ns` since the Unix epoch as RFC 3339; 0 is Go's zero time.
pub fn rfc3339_ns(ns: i128) -> String {
    if ns == 0 {
        return ZERO.to_string();
    }
    let Ok(t) = OffsetDateTime::from_unix_timestamp_nanos(ns) else {
        return ZERO.to_string();
    };
    let mut out = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    let nanos = t.nanosecond();
    if nanos != 0 {
        let fraction = format!("{nanos:09}");
        out.push('.');
        out.push_str(fraction.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// A `since`/`until` value as ns since the Unix epoch.
pub fn parse_instant(value: &str, now: SystemTime) -> Result<i128, String> {
    let value = value.trim();
    if let Some((secs, frac)) = split_unix(value) {
        return Ok(secs * 1_000_000_000 + frac);
    }
    if let Ok(t) = OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339) {
        return Ok(t.unix_timestamp_nanos());
    }
    if let Some(back) = parse_go_duration(value) {
        let now = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        return Ok(now.saturating_sub(back).as_nanos() as i128);
    }
    Err(format!(
        "invalid time {value:?}: give Unix seconds (1733108645), RFC 3339 (2026-12-02T03:04:05Z) or a duration back from now (10m)"
    ))
}

/// "1733108645" or "1733108645.000000001": seconds and nanoseconds.
fn split_unix(value: &str) -> Option<(i128, i128)> {
    let (secs, frac) = value.split_once('.').unwrap_or((value, ""));
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 9 {
        return None;
    }
    let secs: i128 = secs.parse().ok()?;
    let frac: i128 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().ok()?
    };
    Some((secs, frac))
}

/// Go's `time.ParseDuration` for the units people give: "1h30m", "10s", "500ms".
pub fn parse_go_duration(value: &str) -> Option<Duration> {
    let mut rest = value;
    let mut total = Duration::ZERO;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += Duration::try_from_secs_f64(number * scale).ok()?;
    }
    Some(total)
}

/// Now, as ns since the Unix epoch.
pub fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as i128
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_as_go_writes_them() {
        assert_eq!(rfc3339_ms(0), ZERO);
        assert_eq!(rfc3339_ms(1_733_108_645_000), "2024-12-02T03:04:05Z");
        assert_eq!(rfc3339_ms(1_733_108_645_120), "2024-12-02T03:04:05.12Z");
        assert_eq!(
            rfc3339_ns(1_733_108_645_000_000_001),
            "2024-12-02T03:04:05.000000001Z"
        );
    }

    #[test]
    fn since_and_until_take_unix_seconds_rfc3339_and_durations() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(
            parse_instant("1733108645", now),
            Ok(1_733_108_645_000_000_000)
        );
        assert_eq!(parse_instant("10.5", now), Ok(10_500_000_000));
        assert_eq!(
            parse_instant("2024-12-02T03:04:05Z", now),
            Ok(1_733_108_645_000_000_000)
        );
        assert_eq!(parse_instant("1m", now), Ok(999_940_000_000_000));
        assert_eq!(
            parse_instant("1h30m", now),
            Ok((1_000_000 - 5400) * 1_000_000_000)
        );
        let err = parse_instant("yesterday", now).expect_err("not a time");
        assert!(err.contains("Unix seconds"), "{err}");
    }
}

//! Parsing of flag values: durations, memory sizes, CPU counts, constraints, placement
//! preferences, `KEY=VALUE` pairs, label keys, replica counts and `SERVICE=N` scale
//! specifiers.
//!
//! Every parser is a plain function returning [`Invalid`], so it is tested on its own;
//! [`flag`] adapts one to clap, which then names the flag in the message and exits 2.

use std::ffi::OsStr;
use std::fmt;
use std::time::Duration;

/// A flag value that does not parse: what was expected, what was given, how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    what: &'static str,
    value: String,
    hint: &'static str,
}

impl Invalid {
    fn new(what: &'static str, value: &str, hint: &'static str) -> Self {
        Self {
            what,
            value: value.to_string(),
            hint,
        }
    }

    /// `invalid duration "5x" for --restart-delay: use a number with a unit, e.g. 5s`.
    pub fn for_flag(&self, flag: &str) -> String {
        format!(
            "invalid {} {:?} for {flag}: {}",
            self.what, self.value, self.hint
        )
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {} {:?}: {}", self.what, self.value, self.hint)
    }
}

impl std::error::Error for Invalid {}

const DURATION_HINT: &str = "use a number with a unit, e.g. 5s or 1m30s";

/// "5s", "1m30s", "500ms", "0" (humantime's syntax).
pub fn duration(s: &str) -> Result<Duration, Invalid> {
    humantime::parse_duration(s.trim()).map_err(|_| Invalid::new("duration", s, DURATION_HINT))
}

/// A duration in whole milliseconds, as the wire carries it.
pub fn duration_ms(s: &str) -> Result<i64, Invalid> {
    let d = duration(s)?;
    i64::try_from(d.as_millis()).map_err(|_| Invalid::new("duration", s, DURATION_HINT))
}

/// `value * scale` for a non-negative decimal `value` ("1", "0.5", "1.25"), exactly when
/// `exact` (CPUs), rounded down otherwise (memory). None when malformed or too large.
fn scaled_decimal(value: &str, scale: u64, exact: bool) -> Option<u64> {
    let (int, frac) = value.split_once('.').unwrap_or((value, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) {
        return None;
    }
    if value.ends_with('.') {
        return None;
    }
    let int: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    // Digits past the 18th cannot change a result that fits in an i64.
    let kept = &frac[..frac.len().min(18)];
    let dropped_nonzero = frac[kept.len()..].bytes().any(|b| b != b'0');
    let frac_value: u128 = if kept.is_empty() {
        0
    } else {
        kept.parse().ok()?
    };
    let denom = 10u128.checked_pow(u32::try_from(kept.len()).ok()?)?;
    let scale = u128::from(scale);
    let frac_scaled = frac_value.checked_mul(scale)?;
    if exact && (frac_scaled % denom != 0 || dropped_nonzero) {
        return None;
    }
    let total = int.checked_mul(scale)?.checked_add(frac_scaled / denom)?;
    u64::try_from(total)
        .ok()
        .filter(|v| i64::try_from(*v).is_ok())
}

/// CPUs as a decimal ("0.5", "2") to nano CPUs, as docker's `--reserve-cpu` takes them.
pub fn nano_cpus(s: &str) -> Result<i64, Invalid> {
    let bad = || {
        Invalid::new(
            "CPU count",
            s,
            "use a number of CPUs of 0 or more with at most 9 decimals, e.g. 0.5 or 2",
        )
    };
    let v = scaled_decimal(s.trim(), 1_000_000_000, true).ok_or_else(bad)?;
    i64::try_from(v).map_err(|_| bad())
}

/// A memory size with an optional binary unit, case-insensitive, as docker takes it:
/// "64M", "64mb", "1.5g", "512k", "100b", "100" (bytes).
pub fn memory_bytes(s: &str) -> Result<i64, Invalid> {
    let bad = || {
        Invalid::new(
            "memory size",
            s,
            "use a number with an optional unit b, k, m or g, e.g. 64M or 1.5g",
        )
    };
    let lower = s.trim().to_ascii_lowercase();
    let split = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(split);
    let unit = unit.trim_start();
    let unit = unit.strip_suffix('b').unwrap_or(unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let scale: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return Err(bad()),
    };
    // "i" alone ("64i") and "ib" without a prefix ("64ib") are not units.
    let suffix = &lower[split..];
    if unit.is_empty() && suffix.trim_start().starts_with('i') {
        return Err(bad());
    }
    let v = scaled_decimal(number, scale, false).ok_or_else(bad)?;
    i64::try_from(v).map_err(|_| bad())
}

/// A placement constraint: `KEY==VALUE` or `KEY!=VALUE`, returned trimmed.
pub fn constraint(s: &str) -> Result<String, Invalid> {
    let bad = || {
        Invalid::new(
            "constraint",
            s,
            "use KEY==VALUE or KEY!=VALUE, e.g. node.hostname==n1 or node.labels.zone!=b",
        )
    };
    let t = s.trim();
    let (key, value) = t
        .split_once("==")
        .or_else(|| t.split_once("!="))
        .ok_or_else(bad)?;
    let (key, value) = (key.trim(), value.trim());
    if key.is_empty() || value.is_empty() || value.contains("==") || value.contains("!=") {
        return Err(bad());
    }
    Ok(t.to_string())
}

/// `spread=DESCRIPTOR` for `--placement-pref`; returns the descriptor (the daemon checks it
/// names node.labels.X or engine.labels.X).
pub fn placement_pref(s: &str) -> Result<String, Invalid> {
    let bad = || {
        Invalid::new(
            "placement preference",
            s,
            "use spread=node.labels.NAME or spread=engine.labels.NAME, e.g. spread=node.labels.zone",
        )
    };
    let (kind, descriptor) = s.trim().split_once('=').ok_or_else(bad)?;
    if !kind.trim().eq_ignore_ascii_case("spread") || descriptor.trim().is_empty() {
        return Err(bad());
    }
    Ok(descriptor.trim().to_string())
}

/// A label key for `--label-rm`.
pub fn label_key(s: &str) -> Result<String, Invalid> {
    if s.trim().is_empty() || s.contains('=') {
        return Err(Invalid::new(
            "label key",
            s,
            "give the key alone, e.g. zone",
        ));
    }
    Ok(s.to_string())
}

/// `--network NAME`, or the long form `name=NAME,alias=A[,alias=B]` (docker's `target=`
/// for `name=` too): a network and the extra names the service answers to on it.
pub fn network(s: &str) -> Result<shoal_proto::NetworkAttachmentConfig, Invalid> {
    const HINT: &str = "use NAME, or name=NAME,alias=ALIAS";
    let mut config = shoal_proto::NetworkAttachmentConfig::default();
    if !s.contains('=') {
        if s.trim().is_empty() || s.contains(',') {
            return Err(Invalid::new("network", s, HINT));
        }
        config.target = s.trim().to_string();
        return Ok(config);
    }
    for field in s.split(',') {
        match field.split_once('=') {
            Some(("name" | "target", v)) if !v.is_empty() => config.target = v.to_string(),
            Some(("alias", v)) if !v.is_empty() => config.aliases.push(v.to_string()),
            _ => return Err(Invalid::new("network", s, HINT)),
        }
    }
    if config.target.is_empty() {
        return Err(Invalid::new("network", s, HINT));
    }
    Ok(config)
}

/// `--secret` and `--config`: `NAME`, or `source=NAME[,target=T][,uid=U][,gid=G][,mode=0440]`
/// (the mode in octal, as docker's).
pub fn file_reference(s: &str) -> Result<shoal_proto::FileReference, Invalid> {
    const HINT: &str = "use NAME, or source=NAME,target=FILE,uid=0,gid=0,mode=0440";
    let mut r = shoal_proto::FileReference::default();
    if !s.contains('=') {
        if s.trim().is_empty() || s.contains(',') {
            return Err(Invalid::new("secret or config", s, HINT));
        }
        r.name = s.trim().to_string();
        return Ok(r);
    }
    for field in s.split(',') {
        match field.split_once('=') {
            Some(("source" | "src", v)) if !v.is_empty() => r.name = v.to_string(),
            Some(("target", v)) if !v.is_empty() => r.target = v.to_string(),
            Some(("uid", v)) if v.parse::<u32>().is_ok() => r.uid = v.to_string(),
            Some(("gid", v)) if v.parse::<u32>().is_ok() => r.gid = v.to_string(),
            Some(("mode", v)) => {
                r.mode = u32::from_str_radix(v.trim_start_matches("0o"), 8)
                    .ok()
                    .filter(|m| *m <= 0o777)
                    .ok_or_else(|| Invalid::new("secret or config", s, HINT))?;
            }
            _ => return Err(Invalid::new("secret or config", s, HINT)),
        }
    }
    if r.name.is_empty() {
        return Err(Invalid::new("secret or config", s, HINT));
    }
    Ok(r)
}

/// `--publish`: the long form `published=[IP:]8080,target=80[,protocol=tcp|udp]
/// [,mode=ingress|host][,host_ip=IP]`, or docker's short form `[IP:]8080:80[/udp]` (mode
/// ingress, as docker's).
pub fn publish(s: &str) -> Result<shoal_proto::PortConfig, Invalid> {
    use shoal_proto::{PortConfig, PortProtocol, PublishMode};
    const HINT: &str = "use published=8080,target=80[,protocol=udp][,mode=host] or 8080:80[/udp]";
    let bad = || Invalid::new("port", s, HINT);
    let number = |v: &str| {
        v.parse::<u32>()
            .ok()
            .filter(|n| *n <= 65_535)
            .ok_or_else(bad)
    };
    let protocol_of = |v: &str| match v {
        "tcp" => Ok(PortProtocol::Tcp as i32),
        "udp" => Ok(PortProtocol::Udp as i32),
        _ => Err(bad()),
    };
    // "[IP:]PORT" -> (IP, PORT)
    let published_of = |v: &str| -> Result<(String, u32), Invalid> {
        match v.rsplit_once(':') {
            Some((ip, port)) => Ok((ip.to_string(), number(port)?)),
            None => Ok((String::new(), number(v)?)),
        }
    };
    let mut port = PortConfig::default();
    if s.contains('=') {
        for field in s.split(',') {
            let (key, value) = field.split_once('=').ok_or_else(bad)?;
            match key {
                "published" => {
                    let (ip, published) = published_of(value)?;
                    port.published_port = published;
                    if !ip.is_empty() {
                        port.host_ip = ip;
                    }
                }
                "target" => port.target_port = number(value)?,
                "protocol" => port.protocol = protocol_of(value)?,
                "mode" => {
                    port.publish_mode = match value {
                        "ingress" => PublishMode::Ingress,
                        "host" => PublishMode::Host,
                        _ => return Err(bad()),
                    } as i32
                }
                "host_ip" => port.host_ip = value.to_string(),
                _ => return Err(bad()),
            }
        }
    } else {
        let (ports, protocol) = s.split_once('/').unwrap_or((s, "tcp"));
        port.protocol = protocol_of(protocol)?;
        match ports.rsplit_once(':') {
            Some((published, target)) => {
                let (ip, published) = published_of(published)?;
                port.host_ip = ip;
                port.published_port = published;
                port.target_port = number(target)?;
            }
            None => port.target_port = number(ports)?,
        }
    }
    if port.target_port == 0 {
        return Err(bad());
    }
    Ok(port)
}

/// `KEY=VALUE`, or `KEY` alone for an empty value, as docker's `--label` takes it.
pub fn key_value(s: &str) -> Result<(String, String), Invalid> {
    let (key, value) = s.split_once('=').unwrap_or((s, ""));
    if key.trim().is_empty() {
        return Err(Invalid::new(
            "label",
            s,
            "use KEY=VALUE, e.g. com.example.tier=web",
        ));
    }
    Ok((key.to_string(), value.to_string()))
}

/// `KEY=VALUE` as given; `KEY` alone takes the value from `lookup` (the CLI's environment)
/// when it is set there, as docker's `--env` does.
pub fn env_var(s: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, Invalid> {
    let key = s.split_once('=').map_or(s, |(k, _)| k);
    if key.trim().is_empty() {
        return Err(Invalid::new(
            "environment variable",
            s,
            "use KEY=VALUE or KEY, e.g. LOG_LEVEL=debug",
        ));
    }
    if s.contains('=') {
        return Ok(s.to_string());
    }
    Ok(lookup(s).map_or_else(|| s.to_string(), |v| format!("{s}={v}")))
}

/// `--env` against the process environment.
pub fn env_from_process(s: &str) -> Result<String, Invalid> {
    env_var(s, |k| std::env::var(k).ok())
}

/// A replica count: a whole number of 0 or more.
pub fn replicas(s: &str) -> Result<u64, Invalid> {
    s.trim().parse().map_err(|_| {
        Invalid::new(
            "replica count",
            s,
            "use a whole number of 0 or more, e.g. 3",
        )
    })
}

/// A count such as `--restart-max-attempts`: a whole number of 0 or more.
pub fn count(s: &str) -> Result<u64, Invalid> {
    s.trim()
        .parse()
        .map_err(|_| Invalid::new("number", s, "use a whole number of 0 or more, e.g. 3"))
}

/// A ratio such as `--update-max-failure-ratio` (its range is checked with the flag's name).
pub fn ratio(s: &str) -> Result<f32, Invalid> {
    s.trim()
        .parse::<f32>()
        .ok()
        .filter(|r| r.is_finite())
        .ok_or_else(|| Invalid::new("ratio", s, "use a number between 0 and 1, e.g. 0.2"))
}

/// `SERVICE=REPLICAS` for `service scale`.
pub fn scale(s: &str) -> Result<(String, u64), Invalid> {
    let bad = || Invalid::new("scale specifier", s, "use SERVICE=REPLICAS, e.g. web=5");
    let (name, n) = s.split_once('=').ok_or_else(bad)?;
    if name.trim().is_empty() {
        return Err(bad());
    }
    let n = n.trim().parse().map_err(|_| bad())?;
    Ok((name.trim().to_string(), n))
}

/// `KEY=VALUE` for `--filter`.
pub fn filter(s: &str) -> Result<(String, String), Invalid> {
    let bad = || Invalid::new("filter", s, "use KEY=VALUE, e.g. desired-state=running");
    let (key, value) = s.split_once('=').ok_or_else(bad)?;
    let (key, value) = (key.trim(), value.trim());
    if key.is_empty() || value.is_empty() {
        return Err(bad());
    }
    Ok((key.to_ascii_lowercase(), value.to_string()))
}

/// `--tail` of `service logs`: a number of lines, or "all" (-1, as the wire says it).
pub fn tail(s: &str) -> Result<i64, Invalid> {
    match s.trim() {
        "all" => Ok(-1),
        n => n.parse::<u32>().map(i64::from).map_err(|_| {
            Invalid::new(
                "line count",
                s,
                "use a whole number of 0 or more, or \"all\"",
            )
        }),
    }
}

/// `--since` of `service logs`: a moment, or how long before now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// ns since the Unix epoch.
    At(i64),
    Ago(Duration),
}

impl Since {
    /// ns since the Unix epoch, counting back from `now_ns` if relative.
    pub fn at(self, now_ns: i64) -> i64 {
        match self {
            Since::At(ns) => ns,
            Since::Ago(d) => now_ns.saturating_sub(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
        }
    }
}

/// "2013-01-02T13:23:37Z" (RFC 3339, UTC), "1700000000.5" (Unix time) or "42m" (before now).
pub fn since(s: &str) -> Result<Since, Invalid> {
    let t = s.trim();
    let bad = || {
        Invalid::new(
            "time",
            s,
            "use a UTC time such as 2013-01-02T13:23:37Z, a Unix time, or a duration before now such as 42m",
        )
    };
    if let Ok(secs) = t.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Ok(Since::At((secs * 1e9) as i64));
        }
        return Err(bad());
    }
    let at = humantime::parse_rfc3339(t).or_else(|_| humantime::parse_rfc3339_weak(t));
    if let Ok(at) = at {
        let ns = at
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| bad())?
            .as_nanos();
        return i64::try_from(ns).map(Since::At).map_err(|_| bad());
    }
    humantime::parse_duration(t)
        .map(Since::Ago)
        .map_err(|_| bad())
}

/// Adapts a parser to clap: the message names the flag and clap exits 2 with its usage.
pub fn flag<T>(parse: fn(&str) -> Result<T, Invalid>) -> Flag<T> {
    Flag(parse)
}

#[derive(Clone, Copy)]
pub struct Flag<T>(fn(&str) -> Result<T, Invalid>);

impl<T: Clone + Send + Sync + 'static> clap::builder::TypedValueParser for Flag<T> {
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<T, clap::Error> {
        let long = arg.and_then(clap::Arg::get_long);
        let text = value.to_string_lossy();
        (self.0)(&text).map_err(|e| {
            // Flags are named; a positional's value speaks for itself.
            let message = match long {
                Some(long) => e.for_flag(&format!("--{long}")),
                None => e.to_string(),
            };
            clap::Error::raw(clap::error::ErrorKind::ValueValidation, message)
                .format(&mut cmd.clone())
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ports_in_long_and_short_form() {
        use shoal_proto::{PortProtocol, PublishMode};
        let p = super::publish("published=10.78.0.12:8080,target=80,protocol=udp,mode=host")
            .expect("long");
        assert_eq!(
            (p.host_ip.as_str(), p.published_port, p.target_port),
            ("10.78.0.12", 8080, 80)
        );
        assert_eq!(
            (p.protocol, p.publish_mode),
            (PortProtocol::Udp as i32, PublishMode::Host as i32)
        );
        let p = super::publish("8080:80").expect("short");
        assert_eq!(
            (p.published_port, p.target_port, p.publish_mode),
            (8080, 80, PublishMode::Ingress as i32)
        );
        let p = super::publish("10.0.0.5:53:53/udp").expect("short with ip");
        assert_eq!(
            (p.host_ip.as_str(), p.protocol),
            ("10.0.0.5", PortProtocol::Udp as i32)
        );
        for bad in [
            "",
            "x:80",
            "8080:80/sctp",
            "published=8080",
            "target=99999",
            "mode=bridge,target=80",
            "8080:",
        ] {
            assert!(super::publish(bad).is_err(), "{bad}");
        }
    }

    use super::*;

    #[test]
    fn durations() {
        let cases: &[(&str, Option<i64>)] = &[
            ("5s", Some(5_000)),
            ("1m30s", Some(90_000)),
            ("500ms", Some(500)),
            ("1h", Some(3_600_000)),
            ("0", Some(0)),
            (" 2s ", Some(2_000)),
            ("5x", None),
            ("5", None),
            ("", None),
            ("-5s", None),
            ("s", None),
        ];
        for (input, want) in cases {
            assert_eq!(duration_ms(input).ok(), *want, "{input:?}");
        }
    }

    #[test]
    fn duration_message_names_the_flag() {
        let err = duration_ms("5x")
            .err()
            .map(|e| e.for_flag("--restart-delay"));
        assert_eq!(
            err.as_deref(),
            Some(
                r#"invalid duration "5x" for --restart-delay: use a number with a unit, e.g. 5s or 1m30s"#
            )
        );
    }

    #[test]
    fn memory_sizes() {
        let cases: &[(&str, Option<i64>)] = &[
            ("64M", Some(64 << 20)),
            ("64m", Some(64 << 20)),
            ("64mb", Some(64 << 20)),
            ("64MiB", Some(64 << 20)),
            ("512k", Some(512 << 10)),
            ("1g", Some(1 << 30)),
            ("1.5G", Some(3 << 29)),
            ("100", Some(100)),
            ("100b", Some(100)),
            ("100B", Some(100)),
            ("2 m", Some(2 << 20)),
            ("1t", Some(1 << 40)),
            ("0", Some(0)),
            ("64X", None),
            ("64i", None),
            ("m", None),
            ("", None),
            ("-1m", None),
            ("1.", None),
            ("1..5m", None),
            ("99999999999999999999g", None),
        ];
        for (input, want) in cases {
            assert_eq!(memory_bytes(input).ok(), *want, "{input:?}");
        }
    }

    #[test]
    fn cpus() {
        let cases: &[(&str, Option<i64>)] = &[
            ("0.5", Some(500_000_000)),
            ("2", Some(2_000_000_000)),
            (".25", Some(250_000_000)),
            ("1.000000001", Some(1_000_000_001)),
            ("0", Some(0)),
            ("1.0000000001", None),
            ("-1", None),
            ("abc", None),
            ("1.5.2", None),
            ("", None),
            (".", None),
        ];
        for (input, want) in cases {
            assert_eq!(nano_cpus(input).ok(), *want, "{input:?}");
        }
    }

    #[test]
    fn constraints() {
        let cases: &[(&str, bool)] = &[
            ("node.hostname==n1", true),
            ("node.labels.zone != b", true),
            ("node.role==manager", true),
            ("node.hostname=n1", false),
            ("==n1", false),
            ("node.hostname==", false),
            ("node.hostname", false),
            ("a==b==c", false),
        ];
        for (input, ok) in cases {
            assert_eq!(constraint(input).is_ok(), *ok, "{input:?}");
        }
    }

    #[test]
    fn placement_prefs() {
        let cases: &[(&str, Option<&str>)] = &[
            ("spread=node.labels.zone", Some("node.labels.zone")),
            ("Spread = engine.labels.rack ", Some("engine.labels.rack")),
            ("spread=", None),
            ("node.labels.zone", None),
            ("binpack=node.labels.zone", None),
            ("", None),
        ];
        for (input, want) in cases {
            assert_eq!(placement_pref(input).ok().as_deref(), *want, "{input:?}");
        }
        assert_eq!(
            placement_pref("node.labels.zone")
                .err()
                .map(|e| e.for_flag("--placement-pref"))
                .as_deref(),
            Some(
                r#"invalid placement preference "node.labels.zone" for --placement-pref: use spread=node.labels.NAME or spread=engine.labels.NAME, e.g. spread=node.labels.zone"#
            )
        );
    }

    #[test]
    fn label_keys() {
        assert_eq!(label_key("zone").ok().as_deref(), Some("zone"));
        assert!(label_key("").is_err());
        assert!(label_key("zone=a").is_err());
    }

    #[test]
    fn key_values() {
        let kv = |k: &str, v: &str| Some((k.to_string(), v.to_string()));
        let cases = [
            ("a=b", kv("a", "b")),
            ("a=b=c", kv("a", "b=c")),
            ("a=", kv("a", "")),
            ("a", kv("a", "")),
            ("=b", None),
            ("", None),
        ];
        for (input, want) in cases {
            assert_eq!(key_value(input).ok(), want, "{input:?}");
        }
    }

    #[test]
    fn env_vars() {
        let lookup = |k: &str| (k == "HOME").then(|| "/root".to_string());
        let cases: &[(&str, Option<&str>)] = &[
            ("A=1", Some("A=1")),
            ("A=", Some("A=")),
            ("HOME", Some("HOME=/root")),
            ("UNSET", Some("UNSET")),
            ("=1", None),
            ("", None),
        ];
        for (input, want) in cases {
            assert_eq!(env_var(input, lookup).ok().as_deref(), *want, "{input:?}");
        }
    }

    #[test]
    fn replica_counts() {
        let cases: &[(&str, Option<u64>)] = &[
            ("3", Some(3)),
            ("0", Some(0)),
            ("-1", None),
            ("abc", None),
            ("1.5", None),
            ("", None),
        ];
        for (input, want) in cases {
            assert_eq!(replicas(input).ok(), *want, "{input:?}");
        }
        assert_eq!(
            replicas("-1")
                .err()
                .map(|e| e.for_flag("--replicas"))
                .as_deref(),
            Some(
                r#"invalid replica count "-1" for --replicas: use a whole number of 0 or more, e.g. 3"#
            )
        );
    }

    #[test]
    fn scale_specifiers() {
        let cases: &[(&str, Option<(&str, u64)>)] = &[
            ("web=5", Some(("web", 5))),
            ("web=0", Some(("web", 0))),
            ("web", None),
            ("web=-1", None),
            ("web=abc", None),
            ("=3", None),
        ];
        for (input, want) in cases {
            let got = scale(input).ok();
            assert_eq!(
                got.as_ref().map(|(n, r)| (n.as_str(), *r)),
                *want,
                "{input:?}"
            );
        }
    }

    #[test]
    fn filters() {
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            ("desired-state=running", Some(("desired-state", "running"))),
            ("Node=n1", Some(("node", "n1"))),
            ("desired-state", None),
            ("=x", None),
            ("x=", None),
        ];
        for (input, want) in cases {
            let got = filter(input).ok();
            assert_eq!(
                got.as_ref().map(|(k, v)| (k.as_str(), v.as_str())),
                *want,
                "{input:?}"
            );
        }
    }
}

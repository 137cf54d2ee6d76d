//! The typed compose model: what a resolved document means, read from the located tree by
//! serde ([`crate::de`]), so a value of the wrong kind is an error at its own line and
//! column. Keys were checked before ([`crate::keys`]); nested mappings here refuse keys
//! they do not know, with a hint.
//!
//! Forms compose accepts more than one way are read into one shape here: a command as a
//! string or a list, labels and environment as a list or a map, ports, volumes, secrets
//! and configs in short or long syntax, durations ("1m30s") and sizes ("512M").

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// A whole compose document.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Compose {
    #[serde(default)]
    pub services: BTreeMap<String, Service>,
    #[serde(default)]
    pub networks: BTreeMap<String, Option<Network>>,
    #[serde(default)]
    pub volumes: BTreeMap<String, Option<Volume>>,
    #[serde(default)]
    pub secrets: BTreeMap<String, FileObject>,
    #[serde(default)]
    pub configs: BTreeMap<String, FileObject>,
}

/// One service. Keys Shoal does not apply are read past (they were warned about).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Service {
    pub image: Option<String>,
    pub command: Option<Words>,
    pub entrypoint: Option<Words>,
    #[serde(default)]
    pub environment: Pairs,
    pub env_file: Option<EnvFiles>,
    pub deploy: Option<Deploy>,
    pub healthcheck: Option<Healthcheck>,
    #[serde(default)]
    pub labels: Pairs,
    pub networks: Option<ServiceNetworks>,
    #[serde(default)]
    pub ports: Vec<Port>,
    #[serde(default)]
    pub volumes: Vec<Mount>,
    #[serde(default)]
    pub secrets: Vec<FileRef>,
    #[serde(default)]
    pub configs: Vec<FileRef>,
    pub stop_signal: Option<String>,
    pub stop_grace_period: Option<GoDuration>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub hostname: Option<String>,
    #[serde(default)]
    pub cap_add: Vec<String>,
    #[serde(default)]
    pub cap_drop: Vec<String>,
    #[serde(default)]
    pub sysctls: Pairs,
    #[serde(default)]
    pub ulimits: BTreeMap<String, Ulimit>,
    pub tmpfs: Option<Words>,
    pub init: Option<bool>,
    pub read_only: Option<bool>,
    pub depends_on: Option<DependsOn>,
    #[serde(default)]
    pub profiles: Vec<String>,
}

/// A command or entrypoint: a list as given, or a string split as a shell would.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Words(pub Vec<String>);

impl<'de> Deserialize<'de> for Words {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            One(String),
            List(Vec<String>),
        }
        match Form::deserialize(d)
            .map_err(|_| de::Error::custom("expected a string or a list of strings"))?
        {
            Form::One(s) => shell_words(&s).map(Words).map_err(de::Error::custom),
            Form::List(v) => Ok(Words(v)),
        }
    }
}

/// Split `s` into words as a POSIX shell would (quotes and backslashes; no expansion).
pub fn shell_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' | '\r' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(format!("unterminated single quote in {s:?}")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(format!("unterminated double quote in {s:?}")),
                        },
                        Some(c) => word.push(c),
                        None => return Err(format!("unterminated double quote in {s:?}")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    word.push(c);
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Labels, environment, sysctls: `[K=V, ...]` or `{K: V}`. A value may be absent (`K` in
/// a list, `K:` in a map): the environment then takes it from the shell, if set there.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pairs(pub Vec<(String, Option<String>)>);

impl Pairs {
    /// The pairs with a value, in order.
    pub fn with_values(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .iter()
            .filter_map(|(k, v)| v.as_deref().map(|v| (k.as_str(), v)))
    }
}

impl<'de> Deserialize<'de> for Pairs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            List(Vec<String>),
            Map(BTreeMap<String, Option<Scalar>>),
        }
        let form = Form::deserialize(d).map_err(|_| {
            de::Error::custom("expected a list of \"KEY=value\" or a mapping of KEY: value")
        })?;
        Ok(Pairs(match form {
            Form::List(items) => items
                .into_iter()
                .map(|item| match item.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (item, None),
                })
                .collect(),
            Form::Map(map) => map.into_iter().map(|(k, v)| (k, v.map(|v| v.0))).collect(),
        }))
    }
}

/// A string, number or boolean, as its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scalar(pub String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// `env_file:` as one path, or a list of paths or `{path, required}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFiles(pub Vec<EnvFile>);

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvFile {
    pub path: String,
    #[serde(default = "yes")]
    pub required: bool,
    pub format: Option<String>,
}

fn yes() -> bool {
    true
}

impl<'de> Deserialize<'de> for EnvFiles {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Item {
            Path(String),
            Long(EnvFile),
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            One(String),
            List(Vec<Item>),
        }
        let form = Form::deserialize(d).map_err(|_| {
            de::Error::custom("expected a path, or a list of paths or {path, required}")
        })?;
        let path = |path| EnvFile {
            path,
            required: true,
            format: None,
        };
        Ok(EnvFiles(match form {
            Form::One(p) => vec![path(p)],
            Form::List(items) => items
                .into_iter()
                .map(|i| match i {
                    Item::Path(p) => path(p),
                    Item::Long(f) => f,
                })
                .collect(),
        }))
    }
}

/// A Go duration ("1m30s", "500ms", "2h"), as compose and docker write them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GoDuration(pub Duration);

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Scalar::deserialize(d)?.0;
        parse_duration(&text)
            .map(GoDuration)
            .map_err(de::Error::custom)
    }
}

/// Parse a Go duration: numbers (decimals allowed) each with a unit of ns, us, ms, s, m
/// or h; a bare 0 is zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration: write it as 10s, 1m30s, 500ms or 2h");
    let s = text.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if number_len == 0 {
            return Err(bad());
        }
        let number: f64 = rest[..number_len].parse().map_err(|_| bad())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += number * seconds;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

/// A size in bytes: a number, or one with a unit b, k, m, g (kb, mb, gb, any case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Size(pub u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Scalar::deserialize(d)?.0;
        parse_size(&text).map(Size).map_err(de::Error::custom)
    }
}

pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || format!("{text:?} is not a size: write it as 512m, 1g or a number of bytes");
    let s = text.trim().to_ascii_lowercase();
    let digits = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let number: f64 = s[..digits].parse().map_err(|_| bad())?;
    let unit: f64 = match s[digits..].trim() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(bad()),
    };
    let bytes = (number * unit).round();
    if !(0.0..=1.8e19).contains(&bytes) {
        return Err(bad());
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(bytes as u64)
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deploy {
    pub mode: Option<DeployMode>,
    pub replicas: Option<u64>,
    pub endpoint_mode: Option<EndpointMode>,
    #[serde(default)]
    pub labels: Pairs,
    pub placement: Option<Placement>,
    pub resources: Option<Resources>,
    pub restart_policy: Option<RestartPolicy>,
    pub update_config: Option<UpdateConfig>,
    pub rollback_config: Option<UpdateConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeployMode {
    Replicated,
    Global,
    ReplicatedJob,
    GlobalJob,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointMode {
    Vip,
    Dnsrr,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    #[serde(default)]
    pub constraints: Vec<String>,
    #[serde(default)]
    pub preferences: Vec<Preference>,
    pub max_replicas_per_node: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preference {
    pub spread: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    pub limits: Option<ResourceAmounts>,
    pub reservations: Option<ResourceAmounts>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceAmounts {
    pub cpus: Option<Cpus>,
    pub memory: Option<Size>,
    pub pids: Option<i64>,
    /// Read so files holding them load; Shoal schedules no devices (a warning).
    pub devices: Option<Vec<serde::de::IgnoredAny>>,
    pub generic_resources: Option<Vec<serde::de::IgnoredAny>>,
}

/// CPUs as a number or a string of one ("0.5").
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Cpus(pub f64);

impl<'de> Deserialize<'de> for Cpus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Scalar::deserialize(d)?.0;
        match text.trim().parse::<f64>() {
            Ok(n) if n >= 0.0 && n.is_finite() => Ok(Cpus(n)),
            _ => Err(de::Error::custom(format!(
                "{text:?} is not a number of CPUs: write it as 0.5 or 2"
            ))),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartPolicy {
    pub condition: Option<RestartCondition>,
    pub delay: Option<GoDuration>,
    pub max_attempts: Option<u64>,
    pub window: Option<GoDuration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartCondition {
    None,
    OnFailure,
    Any,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateConfig {
    pub parallelism: Option<u64>,
    pub delay: Option<GoDuration>,
    pub failure_action: Option<FailureAction>,
    pub monitor: Option<GoDuration>,
    pub max_failure_ratio: Option<f64>,
    pub order: Option<UpdateOrder>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureAction {
    Continue,
    Rollback,
    Pause,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateOrder {
    StopFirst,
    StartFirst,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Healthcheck {
    pub test: Option<HealthTest>,
    pub interval: Option<GoDuration>,
    pub timeout: Option<GoDuration>,
    pub retries: Option<u64>,
    pub start_period: Option<GoDuration>,
    pub start_interval: Option<GoDuration>,
    #[serde(default)]
    pub disable: bool,
}

/// `test:` as a list (`["CMD", ...]`, `["CMD-SHELL", "..."]`, `["NONE"]`) or a string (a
/// shell command).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthTest(pub Vec<String>);

impl<'de> Deserialize<'de> for HealthTest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            One(String),
            List(Vec<String>),
        }
        match Form::deserialize(d)
            .map_err(|_| de::Error::custom("expected a command string or a list"))?
        {
            Form::One(s) => Ok(HealthTest(vec!["CMD-SHELL".into(), s])),
            Form::List(v) => match v.first().map(String::as_str) {
                Some("CMD" | "CMD-SHELL" | "NONE") => Ok(HealthTest(v)),
                Some(other) => Err(de::Error::custom(format!(
                    "a healthcheck test list starts with CMD, CMD-SHELL or NONE, not {other:?}"
                ))),
                None => Err(de::Error::custom("a healthcheck test may not be empty")),
            },
        }
    }
}

/// A service's networks: a list of names, or a map of name to `{aliases}`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceNetworks(pub Vec<(String, Vec<String>)>);

/// Keys other than `aliases` are accepted and not applied: addresses come from the
/// cluster's allocator.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct ServiceNetwork {
    #[serde(default)]
    aliases: Vec<String>,
    ipv4_address: Option<String>,
    ipv6_address: Option<String>,
    priority: Option<i64>,
    mac_address: Option<String>,
    gw_priority: Option<i64>,
    driver_opts: Option<BTreeMap<String, Scalar>>,
    #[serde(default)]
    link_local_ips: Vec<String>,
}

impl<'de> Deserialize<'de> for ServiceNetworks {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let named = Named::<ServiceNetwork>::deserialize(d)?;
        Ok(ServiceNetworks(
            named
                .0
                .into_iter()
                .map(|(name, body)| (name, body.map(|b| b.aliases).unwrap_or_default()))
                .collect(),
        ))
    }
}

/// Names as a list (`[a, b]`), or as a mapping of name to options (`{a: {...}, b:}`):
/// each name with its options, if it has any.
struct Named<T>(Vec<(String, Option<T>)>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Named<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Named<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of names or a mapping of name: options")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    out.push((name, None));
                }
                Ok(Named(out))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((name, body)) = map.next_entry::<String, Option<T>>()? {
                    out.push((name, body));
                }
                Ok(Named(out))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// A published port, from either syntax.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Port {
    pub target: u16,
    /// None: a port from the cluster's range.
    pub published: Option<u16>,
    pub protocol: Protocol,
    pub mode: PublishMode,
    pub host_ip: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PublishMode {
    #[default]
    Ingress,
    Host,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LongPort {
    target: u16,
    published: Option<Scalar>,
    #[serde(default)]
    protocol: Protocol,
    #[serde(default)]
    mode: PublishMode,
    host_ip: Option<String>,
    name: Option<String>,
    app_protocol: Option<String>,
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Short(Scalar),
            Long(LongPort),
        }
        match Form::deserialize(d).map_err(|_| {
            de::Error::custom(
                "expected a port as \"[HOST_IP:]PUBLISHED:TARGET[/PROTOCOL]\" or {target, published, protocol, mode}",
            )
        })? {
            Form::Short(s) => parse_port(&s.0).map_err(de::Error::custom),
            Form::Long(l) => {
                let published = match l.published {
                    Some(p) => Some(port_number(&p.0).map_err(de::Error::custom)?),
                    None => None,
                };
                let _ = (l.name, l.app_protocol);
                Ok(Port {
                    target: l.target,
                    published,
                    protocol: l.protocol,
                    mode: l.mode,
                    host_ip: l.host_ip,
                })
            }
        }
    }
}

fn port_number(s: &str) -> Result<u16, String> {
    match s.trim().parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{s:?} is not a port number (1-65535)")),
    }
}

/// The short syntax: `80`, `8080:80`, `127.0.0.1:8080:80`, `8080:80/udp`. A range of
/// ports is refused (one service, one port each here).
pub fn parse_port(text: &str) -> Result<Port, String> {
    let (spec, protocol) = match text.rsplit_once('/') {
        Some((spec, "tcp")) => (spec, Protocol::Tcp),
        Some((spec, "udp")) => (spec, Protocol::Udp),
        Some((_, other)) => {
            return Err(format!(
                "port {text:?}: protocol {other:?} is not tcp or udp"
            ))
        }
        None => (text, Protocol::Tcp),
    };
    if spec.contains('-') {
        return Err(format!(
            "port {text:?}: port ranges are not supported; list each port"
        ));
    }
    // An IPv6 host address is bracketed: [::1]:8080:80.
    let (host_ip, rest) = match spec.strip_prefix('[') {
        Some(r) => match r.split_once("]:") {
            Some((ip, rest)) => (Some(ip.to_string()), rest),
            None => return Err(format!("port {text:?}: unclosed [ in the host address")),
        },
        None => {
            let parts: Vec<&str> = spec.split(':').collect();
            match parts.len() {
                3 => (Some(parts[0].to_string()), &spec[parts[0].len() + 1..]),
                1 | 2 => (None, spec),
                _ => {
                    return Err(format!(
                        "port {text:?}: expected [HOST_IP:]PUBLISHED:TARGET"
                    ))
                }
            }
        }
    };
    let (published, target) = match rest.split_once(':') {
        Some(("", target)) => (None, target),
        Some((published, target)) => (
            Some(port_number(published).map_err(|e| format!("port {text:?}: {e}"))?),
            target,
        ),
        None => (None, rest),
    };
    Ok(Port {
        target: port_number(target).map_err(|e| format!("port {text:?}: {e}"))?,
        published,
        protocol,
        mode: PublishMode::Ingress,
        host_ip: host_ip.filter(|ip| !ip.is_empty()),
    })
}

/// A volume or bind mount, from either syntax.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mount {
    pub kind: MountKind,
    /// A named volume, a host path, or none (an anonymous volume, tmpfs).
    pub source: Option<String>,
    pub target: String,
    pub read_only: bool,
    /// tmpfs: size in bytes (0: unlimited).
    pub tmpfs_size: u64,
    /// Volume: don't copy the image's content in.
    pub nocopy: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    #[default]
    Volume,
    Bind,
    Tmpfs,
    Npipe,
    Cluster,
    Image,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LongMount {
    #[serde(rename = "type")]
    kind: MountKind,
    source: Option<String>,
    target: String,
    #[serde(default)]
    read_only: bool,
    consistency: Option<String>,
    bind: Option<BindOptions>,
    volume: Option<VolumeOptions>,
    tmpfs: Option<TmpfsOptions>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BindOptions {
    propagation: Option<String>,
    create_host_path: Option<bool>,
    selinux: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VolumeOptions {
    #[serde(default)]
    nocopy: bool,
    subpath: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TmpfsOptions {
    size: Option<Size>,
    mode: Option<Scalar>,
}

impl<'de> Deserialize<'de> for Mount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Short(String),
            Long(LongMount),
        }
        match Form::deserialize(d).map_err(|_| {
            de::Error::custom(
                "expected a volume as \"SOURCE:TARGET[:ro]\" or {type, source, target, read_only}",
            )
        })? {
            Form::Short(s) => parse_mount(&s).map_err(de::Error::custom),
            Form::Long(l) => {
                let _ = (
                    l.consistency,
                    l.bind
                        .map(|b| (b.propagation, b.create_host_path, b.selinux)),
                );
                let (nocopy, _subpath) =
                    l.volume.map(|v| (v.nocopy, v.subpath)).unwrap_or_default();
                let tmpfs_size = l.tmpfs.as_ref().and_then(|t| t.size).map_or(0, |s| s.0);
                let _ = l.tmpfs.map(|t| t.mode);
                Ok(Mount {
                    kind: l.kind,
                    source: l.source.filter(|s| !s.is_empty()),
                    target: l.target,
                    read_only: l.read_only,
                    tmpfs_size,
                    nocopy,
                })
            }
        }
    }
}

/// The short syntax: `TARGET` (anonymous), `NAME:TARGET[:MODE]`, `/host:TARGET[:MODE]`,
/// `./rel:TARGET` (a bind relative to the compose file).
pub fn parse_mount(text: &str) -> Result<Mount, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [target] => (None, *target, ""),
        [source, target] => (Some(*source), *target, ""),
        [source, target, mode] => (Some(*source), *target, *mode),
        _ => return Err(format!("volume {text:?}: expected SOURCE:TARGET[:MODE]")),
    };
    if !target.starts_with('/') {
        return Err(format!(
            "volume {text:?}: the target {target:?} must be an absolute path in the container"
        ));
    }
    let mut read_only = false;
    for option in mode.split(',').filter(|m| !m.is_empty()) {
        match option {
            "ro" => read_only = true,
            "rw" | "z" | "Z" | "nocopy" | "cached" | "delegated" | "consistent" | "shared"
            | "slave" | "private" | "rshared" | "rslave" | "rprivate" => {}
            other => {
                return Err(format!(
                "volume {text:?}: unknown mode {other:?} (ro, rw, z, Z, nocopy, or a propagation)"
            ))
            }
        }
    }
    let kind = match source {
        Some(s) if s.starts_with('/') || s.starts_with('.') || s.starts_with('~') => {
            MountKind::Bind
        }
        _ => MountKind::Volume,
    };
    Ok(Mount {
        kind,
        source: source.map(str::to_string),
        target: target.to_string(),
        read_only,
        tmpfs_size: 0,
        nocopy: mode.split(',').any(|m| m == "nocopy"),
    })
}

/// A service's use of a secret or config: its name, or `{source, target, uid, gid, mode}`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileRef {
    pub source: String,
    pub target: Option<String>,
    pub uid: Option<String>,
    pub gid: Option<String>,
    pub mode: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LongFileRef {
    source: String,
    target: Option<String>,
    uid: Option<Scalar>,
    gid: Option<Scalar>,
    mode: Option<Scalar>,
}

impl<'de> Deserialize<'de> for FileRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Short(String),
            Long(LongFileRef),
        }
        match Form::deserialize(d)
            .map_err(|_| de::Error::custom("expected a name or {source, target, uid, gid, mode}"))?
        {
            Form::Short(source) => Ok(FileRef {
                source,
                ..FileRef::default()
            }),
            Form::Long(l) => Ok(FileRef {
                source: l.source,
                target: l.target,
                uid: l.uid.map(|s| s.0),
                gid: l.gid.map(|s| s.0),
                mode: match l.mode {
                    Some(m) => Some(parse_mode(&m.0).map_err(de::Error::custom)?),
                    None => None,
                },
            }),
        }
    }
}

/// A file mode: YAML reads 0440 as octal text or as the number 440; both mean 0o440, as
/// compose has it. A decimal above 0o777 (288 from `mode: 0440` read as YAML 1.2) is taken
/// as given when it is not an octal spelling.
fn parse_mode(text: &str) -> Result<u32, String> {
    let t = text.trim();
    let octal = t.strip_prefix("0o").unwrap_or(t);
    u32::from_str_radix(octal, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("{text:?} is not a file mode: write it as 0440"))
}

/// `ulimits: {nofile: 1024}` or `{nofile: {soft: 1024, hard: 2048}}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ulimit {
    pub soft: i64,
    pub hard: i64,
}

impl<'de> Deserialize<'de> for Ulimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Both {
            soft: i64,
            hard: i64,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            One(i64),
            Both(Both),
        }
        match Form::deserialize(d)
            .map_err(|_| de::Error::custom("expected a number or {soft, hard}"))?
        {
            Form::One(n) => Ok(Ulimit { soft: n, hard: n }),
            Form::Both(b) => Ok(Ulimit {
                soft: b.soft,
                hard: b.hard,
            }),
        }
    }
}

/// `depends_on`: a list of names, or a map of name to `{condition, restart, required}`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DependsOn(pub Vec<(String, Condition)>);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    #[default]
    ServiceStarted,
    ServiceHealthy,
    ServiceCompletedSuccessfully,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Dependency {
    #[serde(default)]
    condition: Condition,
    restart: Option<bool>,
    required: Option<bool>,
}

impl<'de> Deserialize<'de> for DependsOn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let named = Named::<Dependency>::deserialize(d)?;
        Ok(DependsOn(
            named
                .0
                .into_iter()
                .map(|(name, dep)| {
                    let condition = dep.map(|d| {
                        let _ = (d.restart, d.required);
                        d.condition
                    });
                    (name, condition.unwrap_or_default())
                })
                .collect(),
        ))
    }
}

/// A top-level network.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    pub driver: Option<String>,
    #[serde(default)]
    pub driver_opts: BTreeMap<String, Scalar>,
    #[serde(default)]
    pub attachable: bool,
    #[serde(default)]
    pub internal: bool,
    pub external: Option<External>,
    pub name: Option<String>,
    #[serde(default)]
    pub labels: Pairs,
    pub ipam: Option<Ipam>,
    pub enable_ipv6: Option<bool>,
    pub enable_ipv4: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ipam {
    pub driver: Option<String>,
    #[serde(default)]
    pub config: Vec<IpamPool>,
    #[serde(default)]
    pub options: BTreeMap<String, Scalar>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpamPool {
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub ip_range: Option<String>,
    #[serde(default)]
    pub aux_addresses: BTreeMap<String, String>,
}

/// `external: true`, or the legacy `external: {name: N}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct External {
    pub external: bool,
    pub name: Option<String>,
}

impl<'de> Deserialize<'de> for External {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Named {
            name: String,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Flag(bool),
            Named(Named),
        }
        match Form::deserialize(d)
            .map_err(|_| de::Error::custom("expected true, false or {name: NAME}"))?
        {
            Form::Flag(external) => Ok(External {
                external,
                name: None,
            }),
            Form::Named(n) => Ok(External {
                external: true,
                name: Some(n.name),
            }),
        }
    }
}

/// A top-level volume.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Volume {
    pub driver: Option<String>,
    #[serde(default)]
    pub driver_opts: BTreeMap<String, Scalar>,
    pub external: Option<External>,
    pub name: Option<String>,
    #[serde(default)]
    pub labels: Pairs,
}

/// A top-level secret or config: from a file, an environment variable or inline content,
/// or external (made with `secret create`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileObject {
    pub file: Option<String>,
    pub environment: Option<String>,
    pub content: Option<String>,
    pub external: Option<External>,
    pub name: Option<String>,
    #[serde(default)]
    pub labels: Pairs,
    pub driver: Option<String>,
    #[serde(default)]
    pub driver_opts: BTreeMap<String, Scalar>,
    pub template_driver: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_split_as_a_shell_would() {
        assert_eq!(
            shell_words(r#"sh -c 'echo "a b"' x\ y "q\"t""#).expect("splits"),
            ["sh", "-c", "echo \"a b\"", "x y", "q\"t"]
        );
        assert!(shell_words("echo 'open").is_err());
        assert_eq!(shell_words("  ").expect("empty"), Vec::<String>::new());
    }

    #[test]
    fn durations_and_sizes_read_as_docker_writes_them() {
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("10 seconds").is_err());
        assert!(parse_duration("-1s").is_err());
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("1gb"), Ok(1 << 30));
        assert_eq!(parse_size("100"), Ok(100));
        assert_eq!(parse_size("0.5g"), Ok(512 << 20));
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn ports_in_short_syntax() {
        let p = parse_port("8080:80").expect("port");
        assert_eq!((p.published, p.target), (Some(8080), 80));
        let p = parse_port("127.0.0.1:53:53/udp").expect("port");
        assert_eq!(p.host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(
            (p.published, p.target, p.protocol),
            (Some(53), 53, Protocol::Udp)
        );
        let p = parse_port("80").expect("port");
        assert_eq!(p.published, None);
        assert!(parse_port("8000-8010:80").is_err());
        assert!(parse_port("80/sctp").is_err());
        assert!(parse_port("99999:80").is_err());
    }

    #[test]
    fn mounts_in_short_syntax() {
        let m = parse_mount("data:/var/lib/db:ro").expect("mount");
        assert_eq!(m.kind, MountKind::Volume);
        assert!(m.read_only);
        let m = parse_mount("./conf:/etc/conf").expect("mount");
        assert_eq!(m.kind, MountKind::Bind);
        assert_eq!(parse_mount("/cache").expect("anonymous").source, None);
        assert!(parse_mount("data:relative").is_err());
        assert!(parse_mount("data:/x:bogus").is_err());
    }

    #[test]
    fn modes_are_octal() {
        assert_eq!(parse_mode("0440"), Ok(0o440));
        assert_eq!(parse_mode("440"), Ok(0o440));
        assert!(parse_mode("999").is_err());
    }
}

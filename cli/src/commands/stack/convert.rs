//! A loaded compose document as the StackSpec `stack deploy` sends: objects named
//! `STACK_x`, services' networks and volumes pointed at the stack's own (or external) ones,
//! env files read, relative bind paths made absolute. As docker/cli's `convert` package:
//! `entrypoint` is the container's command and `command` its args. What cannot be
//! converted is an error at the file, line and column of the key it is about.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use shoal_compose::model::{
    Compose, Condition, DeployMode, EndpointMode as ComposeEndpoint,
    FailureAction as ComposeFailure, FileObject, FileRef, GoDuration, Healthcheck,
    Mount as ComposeMount, MountKind, Protocol, PublishMode as ComposeMode,
    RestartCondition as ComposeRestart, Service as ComposeService, UpdateConfig as ComposeUpdate,
    UpdateOrder as ComposeOrder,
};
use shoal_compose::yaml::Node;
use shoal_compose::Loaded;
use shoal_proto::{
    ConfigSpec, ContainerSpec, Dependency, DependencyCondition, EndpointMode, EndpointSpec,
    FailureAction, FileReference, HealthConfig, IpamConfig, Mount, MountType,
    NetworkAttachmentConfig, NetworkSpec, Placement, PortConfig, PortProtocol, PublishMode,
    Resources, RestartCondition, RestartPolicy, SecretSpec, ServiceMode, ServiceSpec, StackSpec,
    TaskSpec, Ulimit, UpdateConfig, UpdateOrder, STACK_NAMESPACE_LABEL,
};

/// The network a service joins when it names none, as docker's `NAME_default`.
const DEFAULT_NETWORK: &str = "default";

#[derive(Debug)]
pub struct ConvertError {
    /// "file:line:column".
    pub place: String,
    /// "services.web.image".
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for ConvertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.place, self.path, self.message)
    }
}

impl std::error::Error for ConvertError {}

/// `["services", name, key]`: the path of a service's key.
fn at<'x>(name: &'x str, key: &'x str) -> [&'x str; 3] {
    ["services", name, key]
}

/// Converts `loaded` into stack `name`; `environment` answers variables the file leaves
/// to the shell (`environment: [KEY]`). (What the user should know about the file came
/// with loading it: `Loaded::warnings`.)
pub fn stack_spec(
    name: &str,
    loaded: &Loaded,
    document: &str,
    environment: &dyn Fn(&str) -> Option<String>,
) -> Result<StackSpec, ConvertError> {
    let c = Converter {
        stack: name,
        loaded,
        compose: &loaded.compose,
        environment,
    };
    c.check_cycles()?;
    let mut used_networks = BTreeSet::new();
    let mut services = Vec::new();
    for (service_name, service) in &c.compose.services {
        services.push(c.service(service_name, service, &mut used_networks)?);
    }
    let networks = c.networks(&used_networks)?;
    let secrets = c
        .files("secrets", &c.compose.secrets)?
        .into_iter()
        .map(|(name, labels, data)| SecretSpec { name, labels, data })
        .collect();
    let configs = c
        .files("configs", &c.compose.configs)?
        .into_iter()
        .map(|(name, labels, data)| ConfigSpec { name, labels, data })
        .collect();
    Ok(StackSpec {
        name: name.to_string(),
        document: document.to_string(),
        services,
        networks,
        secrets,
        configs,
    })
}

struct Converter<'a> {
    stack: &'a str,
    loaded: &'a Loaded,
    compose: &'a Compose,
    environment: &'a dyn Fn(&str) -> Option<String>,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn opt_ms(d: Option<GoDuration>) -> Option<i64> {
    d.map(|d| ms(d.0))
}

impl Converter<'_> {
    fn error(&self, path: &[&str], message: impl Into<String>) -> ConvertError {
        let node: &Node = self.loaded.document.nearest(path);
        ConvertError {
            place: self.loaded.place(node.pos),
            path: path.join("."),
            message: message.into(),
        }
    }

    fn scoped(&self, name: &str) -> String {
        format!("{}_{name}", self.stack)
    }

    /// The cluster's name of the file's network `key`: its own `name:`, the external
    /// network's, or `STACK_key`.
    fn network_name(&self, key: &str) -> String {
        match self.compose.networks.get(key).and_then(Option::as_ref) {
            Some(n) if n.external.as_ref().is_some_and(|e| e.external) => n
                .external
                .as_ref()
                .and_then(|e| e.name.clone())
                .or_else(|| n.name.clone())
                .unwrap_or_else(|| key.to_string()),
            Some(n) => n.name.clone().unwrap_or_else(|| self.scoped(key)),
            None => self.scoped(key),
        }
    }

    fn service(
        &self,
        name: &str,
        s: &ComposeService,
        used_networks: &mut BTreeSet<String>,
    ) -> Result<ServiceSpec, ConvertError> {
        let image = s.image.clone().filter(|i| !i.trim().is_empty()).ok_or_else(|| {
            self.error(
                &["services", name],
                "no image: Shoal runs images and does not build them (build: is ignored); give image: NAME[:TAG]",
            )
        })?;
        let secrets = self.references(name, "secrets", &s.secrets, &self.compose.secrets)?;
        let configs = self.references(name, "configs", &s.configs, &self.compose.configs)?;
        let mut depends_on = Vec::new();
        for (other, condition) in s.depends_on.iter().flat_map(|d| d.0.iter()) {
            if !self.compose.services.contains_key(other) {
                return Err(self.error(
                    &at(name, "depends_on"),
                    format!("service {other} is not in this deploy (not in the file, or not in an active --profile)"),
                ));
            }
            depends_on.push(Dependency {
                service: self.scoped(other),
                condition: match condition {
                    Condition::ServiceStarted => DependencyCondition::Started,
                    Condition::ServiceHealthy => DependencyCondition::Healthy,
                    Condition::ServiceCompletedSuccessfully => DependencyCondition::Completed,
                } as i32,
            });
        }
        let deploy = s.deploy.clone().unwrap_or_default();
        let mode = match deploy.mode.unwrap_or(DeployMode::Replicated) {
            DeployMode::Replicated => ServiceMode::Replicated,
            DeployMode::Global => ServiceMode::Global,
            DeployMode::ReplicatedJob => ServiceMode::ReplicatedJob,
            DeployMode::GlobalJob => ServiceMode::GlobalJob,
        };
        let replicas = match mode {
            ServiceMode::Replicated | ServiceMode::ReplicatedJob => deploy.replicas.unwrap_or(1),
            ServiceMode::Global | ServiceMode::GlobalJob => {
                if deploy.replicas.is_some() {
                    return Err(self.error(
                        &["services", name, "deploy", "replicas"],
                        "replicas cannot be given in global mode (one task runs on every node)",
                    ));
                }
                0
            }
        };

        let mut networks = Vec::new();
        let joined: Vec<(String, Vec<String>)> = match &s.networks {
            Some(n) => n.0.clone(),
            None => vec![(DEFAULT_NETWORK.to_string(), Vec::new())],
        };
        for (key, aliases) in joined {
            if key != DEFAULT_NETWORK && !self.compose.networks.contains_key(&key) {
                return Err(self.error(
                    &at(name, "networks"),
                    format!("network {key} is not declared under the top-level networks: key: declare it there"),
                ));
            }
            used_networks.insert(key.clone());
            // The service answers by its name in the file on every network it joins.
            let mut all = vec![name.to_string()];
            all.extend(aliases.into_iter().filter(|a| a != name));
            networks.push(NetworkAttachmentConfig {
                target: self.network_name(&key),
                aliases: all,
            });
        }

        let mut env = self.env_files(name, s)?;
        for (key, value) in &s.environment.0 {
            let value = match value {
                Some(v) => Some(v.clone()),
                None => (self.environment)(key),
            };
            env.retain(|(k, _)| k != key);
            if let Some(v) = value {
                env.push((key.clone(), v));
            }
        }

        let mut container_labels: BTreeMap<String, String> = s
            .labels
            .with_values()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        container_labels.insert(STACK_NAMESPACE_LABEL.into(), self.stack.to_string());
        let mut mounts = Vec::new();
        for (i, m) in s.volumes.iter().enumerate() {
            mounts.push(self.mount(name, i, m)?);
        }
        if let Some(tmpfs) = &s.tmpfs {
            for target in &tmpfs.0 {
                let (target, size) = match target.split_once(':') {
                    Some((t, options)) => (t, tmpfs_size(options)),
                    None => (target.as_str(), 0),
                };
                mounts.push(Mount {
                    r#type: MountType::Tmpfs as i32,
                    target: target.to_string(),
                    tmpfs_size_bytes: size,
                    ..Default::default()
                });
            }
        }
        let resources = deploy.resources.clone().unwrap_or_default();
        let amounts = |a: Option<&shoal_compose::model::ResourceAmounts>| {
            a.map(|a| Resources {
                #[allow(clippy::cast_possible_truncation)]
                nano_cpus: a.cpus.map_or(0, |c| (c.0 * 1e9).round() as i64),
                memory_bytes: a
                    .memory
                    .map_or(0, |m| i64::try_from(m.0).unwrap_or(i64::MAX)),
            })
        };
        let placement = deploy.placement.clone().unwrap_or_default();
        for (i, c) in placement.constraints.iter().enumerate() {
            if crate::parse::constraint(c).is_err() {
                let index = i.to_string();
                return Err(self.error(
                    &["services", name, "deploy", "placement", "constraints", &index],
                    format!("invalid constraint {c:?}: use KEY==VALUE or KEY!=VALUE, e.g. node.role==manager"),
                ));
            }
        }
        let restart = deploy.restart_policy.as_ref().map(|r| RestartPolicy {
            condition: match r.condition.unwrap_or(ComposeRestart::Any) {
                ComposeRestart::Any => RestartCondition::Any,
                ComposeRestart::OnFailure => RestartCondition::OnFailure,
                ComposeRestart::None => RestartCondition::None,
            } as i32,
            delay_ms: opt_ms(r.delay),
            max_attempts: r.max_attempts.unwrap_or(0),
            window_ms: opt_ms(r.window).unwrap_or(0),
        });
        let ports = s
            .ports
            .iter()
            .map(|p| PortConfig {
                protocol: match p.protocol {
                    Protocol::Tcp => PortProtocol::Tcp,
                    Protocol::Udp => PortProtocol::Udp,
                } as i32,
                target_port: u32::from(p.target),
                published_port: p.published.map_or(0, u32::from),
                publish_mode: match p.mode {
                    ComposeMode::Ingress => PublishMode::Ingress,
                    ComposeMode::Host => PublishMode::Host,
                } as i32,
                host_ip: p.host_ip.clone().unwrap_or_default(),
            })
            .collect::<Vec<_>>();
        let endpoint_mode = match deploy.endpoint_mode {
            Some(ComposeEndpoint::Dnsrr) => EndpointMode::Dnsrr,
            _ => EndpointMode::Vip,
        };
        let mut labels: BTreeMap<String, String> = deploy
            .labels
            .with_values()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        labels.insert(STACK_NAMESPACE_LABEL.into(), self.stack.to_string());
        labels.insert("com.docker.stack.image".into(), image.clone());
        Ok(ServiceSpec {
            name: self.scoped(name),
            labels: labels.into_iter().collect(),
            task: Some(TaskSpec {
                container: Some(ContainerSpec {
                    image,
                    command: s.entrypoint.clone().map(|w| w.0).unwrap_or_default(),
                    args: s.command.clone().map(|w| w.0).unwrap_or_default(),
                    env: env.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
                    labels: container_labels.into_iter().collect(),
                    stop_signal: s.stop_signal.clone().unwrap_or_default(),
                    stop_grace_period_ms: opt_ms(s.stop_grace_period),
                    healthcheck: s.healthcheck.as_ref().map(health),
                    user: s.user.clone().unwrap_or_default(),
                    working_dir: s.working_dir.clone().unwrap_or_default(),
                    hostname: s.hostname.clone().unwrap_or_default(),
                    cap_add: s.cap_add.clone(),
                    cap_drop: s.cap_drop.clone(),
                    sysctls: s
                        .sysctls
                        .with_values()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    ulimits: s
                        .ulimits
                        .iter()
                        .map(|(name, u)| Ulimit {
                            name: name.clone(),
                            soft: u.soft,
                            hard: u.hard,
                        })
                        .collect(),
                    init: s.init.unwrap_or(false),
                    read_only: s.read_only.unwrap_or(false),
                    mounts,
                    secrets,
                    configs,
                    registry_auth: None,
                    sealed_registry_auth: Vec::new(),
                }),
                limits: amounts(resources.limits.as_ref()),
                reservations: amounts(resources.reservations.as_ref()),
                restart,
                placement: Some(Placement {
                    constraints: placement.constraints.clone(),
                    max_replicas: placement.max_replicas_per_node.unwrap_or(0),
                    spread: placement
                        .preferences
                        .iter()
                        .map(|p| p.spread.clone())
                        .collect(),
                }),
                networks,
            }),
            mode: mode as i32,
            replicas,
            update: deploy.update_config.as_ref().map(update),
            rollback: deploy.rollback_config.as_ref().map(update),
            force_update: 0,
            max_concurrent: 0,
            endpoint: Some(EndpointSpec {
                mode: endpoint_mode as i32,
                ports,
            }),
            depends_on,
        })
    }

    /// A service that depends on itself, through any chain, would never start: an error
    /// naming the cycle.
    fn check_cycles(&self) -> Result<(), ConvertError> {
        let edges = |name: &str| -> Vec<String> {
            self.compose
                .services
                .get(name)
                .and_then(|s| s.depends_on.as_ref())
                .map(|d| d.0.iter().map(|(n, _)| n.clone()).collect())
                .unwrap_or_default()
        };
        // Depth-first, with the path so far: a name met again on the path closes a cycle.
        fn visit(
            name: &str,
            path: &mut Vec<String>,
            done: &mut BTreeSet<String>,
            edges: &dyn Fn(&str) -> Vec<String>,
        ) -> Option<Vec<String>> {
            if let Some(start) = path.iter().position(|p| p == name) {
                let mut cycle = path[start..].to_vec();
                cycle.push(name.to_string());
                return Some(cycle);
            }
            if done.contains(name) {
                return None;
            }
            path.push(name.to_string());
            for next in edges(name) {
                if let Some(cycle) = visit(&next, path, done, edges) {
                    return Some(cycle);
                }
            }
            path.pop();
            done.insert(name.to_string());
            None
        }
        let mut done = BTreeSet::new();
        for name in self.compose.services.keys() {
            if let Some(cycle) = visit(name, &mut Vec::new(), &mut done, &edges) {
                return Err(self.error(
                    &at(&cycle[0], "depends_on"),
                    format!(
                        "depends_on makes a cycle ({}): no service of it could ever start",
                        cycle.join(" -> ")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The cluster's name of the file's secret or config `key`.
    fn file_name(&self, key: &str, declared: &FileObject) -> String {
        if declared.external.as_ref().is_some_and(|e| e.external) {
            return declared
                .external
                .as_ref()
                .and_then(|e| e.name.clone())
                .or_else(|| declared.name.clone())
                .unwrap_or_else(|| key.to_string());
        }
        declared.name.clone().unwrap_or_else(|| self.scoped(key))
    }

    /// A service's `secrets:` or `configs:` as references by name (the managers resolve
    /// them); the target defaults to the key in the file, as Docker's.
    fn references(
        &self,
        service: &str,
        kind: &str,
        refs: &[FileRef],
        declared: &BTreeMap<String, FileObject>,
    ) -> Result<Vec<FileReference>, ConvertError> {
        refs.iter()
            .map(|r| {
                let object = declared.get(&r.source).ok_or_else(|| {
                    self.error(
                        &at(service, kind),
                        format!(
                            "{} {} is not declared under the top-level {kind}: key: declare it there",
                            &kind[..kind.len() - 1],
                            r.source
                        ),
                    )
                })?;
                let target = r.target.clone().unwrap_or_else(|| {
                    if kind == "secrets" {
                        r.source.clone()
                    } else {
                        format!("/{}", r.source)
                    }
                });
                Ok(FileReference {
                    id: String::new(),
                    name: self.file_name(&r.source, object),
                    target,
                    uid: r.uid.clone().unwrap_or_default(),
                    gid: r.gid.clone().unwrap_or_default(),
                    mode: r.mode.unwrap_or(0),
                    version: 0,
                })
            })
            .collect()
    }

    /// The stack's own secrets or configs (external ones exist already): name, labels and
    /// content read from `file:`, `environment:` or `content:`.
    #[allow(clippy::type_complexity)]
    fn files(
        &self,
        kind: &str,
        declared: &BTreeMap<String, FileObject>,
    ) -> Result<Vec<(String, std::collections::HashMap<String, String>, Vec<u8>)>, ConvertError>
    {
        let mut out = Vec::new();
        for (key, object) in declared {
            if object.external.as_ref().is_some_and(|e| e.external) {
                continue;
            }
            let path = [kind, key.as_str()];
            let data = if let Some(file) = &object.file {
                let full = self.loaded.dir.join(file);
                std::fs::read(&full).map_err(|e| {
                    self.error(
                        &[kind, key, "file"],
                        format!("reading {}: {e}", full.display()),
                    )
                })?
            } else if let Some(variable) = &object.environment {
                (self.environment)(variable)
                    .ok_or_else(|| {
                        self.error(
                            &[kind, key, "environment"],
                            format!("variable {variable} is not set: set it, or give file:"),
                        )
                    })?
                    .into_bytes()
            } else if let Some(content) = &object.content {
                content.clone().into_bytes()
            } else {
                return Err(self.error(
                    &path,
                    "give file:, environment: or content:, or declare it external: true",
                ));
            };
            let mut labels: std::collections::HashMap<String, String> = object
                .labels
                .with_values()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            labels.insert(STACK_NAMESPACE_LABEL.into(), self.stack.to_string());
            out.push((self.file_name(key, object), labels, data));
        }
        Ok(out)
    }

    /// The variables of the service's `env_file:` entries, in order (a later file wins).
    fn env_files(
        &self,
        name: &str,
        s: &ComposeService,
    ) -> Result<Vec<(String, String)>, ConvertError> {
        let mut env: Vec<(String, String)> = Vec::new();
        for file in s.env_file.iter().flat_map(|f| f.0.iter()) {
            let path = self.loaded.dir.join(&file.path);
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(_) if !file.required => continue,
                Err(e) => {
                    return Err(self.error(
                        &["services", name, "env_file"],
                        format!("reading {}: {e}", path.display()),
                    ))
                }
            };
            let pairs = shoal_compose::parse_env_file(&text, self.environment).map_err(|e| {
                self.error(
                    &["services", name, "env_file"],
                    format!("{}: {e}", path.display()),
                )
            })?;
            for (k, v) in pairs {
                env.retain(|(key, _)| *key != k);
                env.push((k, v));
            }
        }
        Ok(env)
    }

    fn mount(&self, service: &str, i: usize, m: &ComposeMount) -> Result<Mount, ConvertError> {
        let index = i.to_string();
        let path = ["services", service, "volumes", index.as_str()];
        let (kind, source) = match m.kind {
            MountKind::Volume => {
                let source = match &m.source {
                    None => String::new(),
                    Some(key) => {
                        let declared = self.compose.volumes.get(key).ok_or_else(|| {
                            self.error(
                                &path,
                                format!("volume {key} is not declared under the top-level volumes: key: declare it there, or give a path for a bind mount"),
                            )
                        })?;
                        match declared {
                            Some(v) if v.external.as_ref().is_some_and(|e| e.external) => v
                                .external
                                .as_ref()
                                .and_then(|e| e.name.clone())
                                .or_else(|| v.name.clone())
                                .unwrap_or_else(|| key.clone()),
                            Some(v) => v.name.clone().unwrap_or_else(|| self.scoped(key)),
                            None => self.scoped(key),
                        }
                    }
                };
                (MountType::Volume, source)
            }
            MountKind::Bind => {
                let source = m.source.clone().unwrap_or_default();
                let absolute = if let Some(rest) = source.strip_prefix("~/") {
                    std::env::var("HOME").map_or(source.clone(), |h| format!("{h}/{rest}"))
                } else if Path::new(&source).is_absolute() {
                    source.clone()
                } else {
                    self.loaded.dir.join(&source).display().to_string()
                };
                (MountType::Bind, absolute)
            }
            MountKind::Tmpfs => (MountType::Tmpfs, String::new()),
            other => {
                return Err(self.error(
                    &path,
                    format!("a {other:?} mount is not supported: use volume, bind or tmpfs")
                        .to_lowercase(),
                ))
            }
        };
        let mut volume_labels = BTreeMap::new();
        if kind == MountType::Volume {
            volume_labels.insert(STACK_NAMESPACE_LABEL.to_string(), self.stack.to_string());
        }
        Ok(Mount {
            r#type: kind as i32,
            source,
            target: m.target.clone(),
            read_only: m.read_only,
            no_copy: m.nocopy,
            tmpfs_size_bytes: i64::try_from(m.tmpfs_size).unwrap_or(i64::MAX),
            volume_labels: volume_labels.into_iter().collect(),
        })
    }

    /// The stack's own networks the services join (external ones exist already).
    fn networks(&self, used: &BTreeSet<String>) -> Result<Vec<NetworkSpec>, ConvertError> {
        let mut out = Vec::new();
        for key in used {
            let declared = self
                .compose
                .networks
                .get(key)
                .cloned()
                .flatten()
                .unwrap_or_default();
            if declared.external.as_ref().is_some_and(|e| e.external) {
                continue;
            }
            let path = ["networks", key.as_str()];
            match declared.driver.as_deref() {
                None | Some("overlay") => {}
                Some(other) => {
                    return Err(self.error(
                        &["networks", key, "driver"],
                        format!("driver {other:?} is not supported: a stack's networks are overlay networks (remove driver:, or set it to overlay)"),
                    ))
                }
            }
            let pool = declared
                .ipam
                .as_ref()
                .and_then(|i| i.config.first())
                .cloned()
                .unwrap_or_default();
            let mut labels: BTreeMap<String, String> = declared
                .labels
                .with_values()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            labels.insert(STACK_NAMESPACE_LABEL.into(), self.stack.to_string());
            let _ = path;
            out.push(NetworkSpec {
                name: self.network_name(key),
                labels: labels.into_iter().collect(),
                driver: "overlay".into(),
                ipam: Some(IpamConfig {
                    subnet: pool.subnet.unwrap_or_default(),
                    gateway: pool.gateway.unwrap_or_default(),
                }),
                attachable: declared.attachable,
                internal: declared.internal,
                ingress: false,
                driver_opts: declared
                    .driver_opts
                    .iter()
                    .map(|(k, v)| (k.clone(), v.0.clone()))
                    .collect(),
            });
        }
        Ok(out)
    }
}

/// `size=64m` (and other options) of a short tmpfs entry.
fn tmpfs_size(options: &str) -> i64 {
    options
        .split(',')
        .find_map(|o| o.strip_prefix("size="))
        .and_then(|s| shoal_compose::model::parse_size(s).ok())
        .and_then(|n| i64::try_from(n).ok())
        .unwrap_or(0)
}

fn health(h: &Healthcheck) -> HealthConfig {
    if h.disable {
        return HealthConfig {
            test: vec!["NONE".into()],
            ..Default::default()
        };
    }
    HealthConfig {
        test: h.test.clone().map(|t| t.0).unwrap_or_default(),
        interval_ms: opt_ms(h.interval).unwrap_or(0),
        timeout_ms: opt_ms(h.timeout).unwrap_or(0),
        retries: h.retries.unwrap_or(0),
        start_period_ms: opt_ms(h.start_period).unwrap_or(0),
    }
}

fn update(u: &ComposeUpdate) -> UpdateConfig {
    UpdateConfig {
        parallelism: u.parallelism,
        delay_ms: opt_ms(u.delay).unwrap_or(0),
        order: match u.order {
            Some(ComposeOrder::StartFirst) => UpdateOrder::StartFirst,
            _ => UpdateOrder::StopFirst,
        } as i32,
        failure_action: match u.failure_action {
            Some(ComposeFailure::Continue) => FailureAction::Continue,
            Some(ComposeFailure::Rollback) => FailureAction::Rollback,
            _ => FailureAction::Pause,
        } as i32,
        monitor_ms: opt_ms(u.monitor),
        #[allow(clippy::cast_possible_truncation)]
        max_failure_ratio: u.max_failure_ratio.unwrap_or(0.0) as f32,
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn load(text: &str) -> Loaded {
        let dir = std::env::temp_dir().join(format!("shoal-convert-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("web.env"), "FROM_FILE=1\nBOTH=file\n").expect("env");
        let file = dir.join("stack.yml");
        std::fs::write(&file, text).expect("file");
        let files = [file];
        shoal_compose::load(&shoal_compose::Request {
            files: &files,
            env_file: None,
            profiles: &[],
            environment: &|_| None,
        })
        .expect("loads")
    }

    fn convert(text: &str) -> Result<StackSpec, ConvertError> {
        let loaded = load(text);
        stack_spec("app", &loaded, text, &|name| {
            (name == "FROM_SHELL").then(|| "shell".to_string())
        })
    }

    #[test]
    fn a_service_becomes_a_stack_service_on_its_networks() {
        let spec = convert(
            "services:\n  web:\n    image: web:1\n    entrypoint: [/bin/sh, -c]\n    \
             command: echo hi\n    env_file: web.env\n    environment:\n      BOTH: yaml\n      \
             FROM_SHELL:\n    ports: ['8080:80']\n    networks: [front]\n    volumes: \
             [data:/data, ./conf:/etc/conf:ro]\n    deploy:\n      replicas: 3\n      \
             update_config: {parallelism: 2, order: start-first}\n      resources:\n        \
             limits: {cpus: '0.5', memory: 64M}\n  db:\n    image: db\nnetworks:\n  front:\n    \
             driver_opts: {encrypted: ''}\nvolumes:\n  data:\n",
        )
        .expect("converts");
        let names: Vec<&str> = spec.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["app_db", "app_web"]);
        let web = &spec.services[1];
        let c = web
            .task
            .as_ref()
            .and_then(|t| t.container.as_ref())
            .expect("container");
        assert_eq!(c.command, ["/bin/sh", "-c"]);
        assert_eq!(c.args, ["echo", "hi"]);
        assert_eq!(c.env, ["FROM_FILE=1", "BOTH=yaml", "FROM_SHELL=shell"]);
        assert_eq!(c.mounts[0].source, "app_data");
        assert!(c.mounts[1].source.ends_with("/conf") && c.mounts[1].read_only);
        assert!(PathBuf::from(&c.mounts[1].source).is_absolute());
        assert_eq!(web.replicas, 3);
        assert_eq!(
            web.labels.get(STACK_NAMESPACE_LABEL).map(String::as_str),
            Some("app")
        );
        let task = web.task.as_ref().expect("task");
        assert_eq!(task.networks[0].target, "app_front");
        assert_eq!(task.networks[0].aliases, ["web"]);
        assert_eq!(task.limits.as_ref().map(|l| l.nano_cpus), Some(500_000_000));
        assert_eq!(web.update.as_ref().and_then(|u| u.parallelism), Some(2));
        let ports = &web.endpoint.as_ref().expect("endpoint").ports;
        assert_eq!((ports[0].published_port, ports[0].target_port), (8080, 80));
        // db joins the default network; both networks are the stack's.
        let networks: Vec<&str> = spec.networks.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(networks, ["app_default", "app_front"]);
        assert!(spec.networks[1].driver_opts.contains_key("encrypted"));
    }

    #[test]
    fn what_cannot_convert_names_its_place() {
        let e = convert("services:\n  web:\n    build: .\n").expect_err("no image");
        assert!(
            e.to_string()
                .contains("stack.yml:3:5: services.web: no image"),
            "{e}"
        );
        let e = convert("services:\n  web:\n    image: a\n    networks: [nope]\n")
            .expect_err("undeclared network");
        assert!(
            e.to_string()
                .contains(":4:15: services.web.networks: network nope is not declared"),
            "{e}"
        );
        let e =
            convert("services:\n  web:\n    image: a\nnetworks:\n  default:\n    driver: bridge\n")
                .expect_err("bridge");
        assert!(
            e.to_string().contains(":6:13: networks.default.driver"),
            "{e}"
        );
        let spec = convert(
            "services:\n  web:\n    image: a\n    networks: [ext]\nnetworks:\n  ext:\n    external: true\n",
        )
        .expect("external");
        assert!(spec.networks.is_empty());
        assert_eq!(
            spec.services[0].task.as_ref().expect("task").networks[0].target,
            "ext"
        );
    }

    #[test]
    fn depends_on_names_the_stacks_services_and_a_cycle_is_refused() {
        let e = convert(
            "services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n    \
             depends_on:\n      c: {condition: service_healthy}\n  c:\n    image: x\n    depends_on: [a]\n",
        )
        .expect_err("a cycle");
        assert!(
            e.to_string()
                .contains("services.a.depends_on: depends_on makes a cycle (a -> b -> c -> a)"),
            "{e}"
        );
        assert!(e.to_string().contains("stack.yml:4:"), "{e}");
        let spec = convert(
            "services:\n  a:\n    image: x\n    depends_on:\n      b: {condition: service_healthy}\n  b:\n    image: x\n",
        )
        .expect("a chain");
        assert_eq!(spec.services[0].depends_on[0].service, "app_b");
        assert_eq!(
            spec.services[0].depends_on[0].condition,
            DependencyCondition::Healthy as i32
        );
        let e =
            convert("services:\n  a:\n    image: x\n    depends_on: [zz]\n").expect_err("unknown");
        assert!(
            e.to_string().contains("service zz is not in this deploy"),
            "{e}"
        );
    }
}

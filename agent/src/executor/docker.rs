//! The Docker Engine executor: runs each task as one container of the local engine
//! (bollard, API negotiated down to the engine's, 1.41 on dockerd 20.10).
//!
//! It owns how a task becomes a container: the name (`<service>.<slot>.<task id>`, docker's
//! style), the labels that tie the container to its task, service and node, the command,
//! environment, limits and stop signal. Containers have no Docker restart policy: restarts
//! belong to the orchestrator. Images are never pulled.
//!
//! Architecture invariant: this executor only ever stops, kills or removes containers that
//! carry this node's `shoal.node.id` label; every lookup filters on it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bollard::container::LogOutput;

use crate::files::TaskFiles;
use bollard::auth::DockerCredentials;
use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, HealthConfig, HealthStatusEnum,
    HostConfig, Mount, MountTmpfsOptions, MountType, MountVolumeOptions, NetworkConnectRequest,
    NetworkingConfig, PortBinding, ResourcesUlimits, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, InspectContainerOptions, KillContainerOptions,
    ListContainersOptions, LogsOptions, RemoveContainerOptions, StartContainerOptions,
    StopContainerOptions, WaitContainerOptions,
};
use bollard::Docker;
use futures::StreamExt;
use shoal_proto::{names, ContainerSpec, NodeDescription, Platform, PortConfig, Resources, Task};

use super::docker_health::{self, HealthEvents};
use super::{
    ContainerState, Controller, ExecError, Executor, ExitInfo, Fetched, Health, ImageSource,
    LogLine, LogLines, LogRead,
};
use crate::network::{DockerNetwork, NetworkProvider};

/// Grace period between the stop signal and SIGKILL when the spec sets none (docker's).
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);

/// Runs tasks as containers on one Docker engine, for one node.
#[derive(Clone)]
pub struct DockerExecutor {
    docker: Docker,
    node_id: String,
    node_name: String,
    health: Arc<HealthEvents>,
    /// Where tasks' overlay networks come from (none: tasks with networks are refused).
    networks: Option<Arc<dyn NetworkProvider>>,
    /// Where tasks' secrets and configs are written (none: tasks using them are refused).
    files: Option<Arc<TaskFiles>>,
    /// Where images this node cannot pull come from (none: such tasks are rejected).
    images: Option<Arc<dyn ImageSource>>,
}

impl std::fmt::Debug for DockerExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerExecutor")
            .field("node_id", &self.node_id)
            .field("node_name", &self.node_name)
            .finish_non_exhaustive()
    }
}

impl DockerExecutor {
    /// Connects to the engine at `docker_host` (`unix:///var/run/docker.sock`, `tcp://...`)
    /// and negotiates the API version. `node_name` is the name errors and the node
    /// description use; `node_id` labels every container this executor creates.
    pub async fn connect(
        docker_host: &str,
        node_id: String,
        node_name: String,
    ) -> Result<Self, ExecError> {
        let docker = Docker::connect_with_host(docker_host)
            .map_err(|e| classify("connect to", docker_host, e))?
            .negotiate_version()
            .await
            .map_err(|e| classify("negotiate the api version with", docker_host, e))?;
        let health = HealthEvents::follow(docker.clone(), node_id.clone());
        Ok(Self {
            docker,
            node_id,
            node_name,
            health,
            networks: None,
            files: None,
            images: None,
        })
    }

    /// Give tasks their secrets and configs through `files`.
    pub fn with_files(mut self, files: Arc<TaskFiles>) -> Self {
        self.files = Some(files);
        self
    }

    /// Fetch the images this node cannot pull from other nodes, through `images`.
    pub fn with_images(mut self, images: Arc<dyn ImageSource>) -> Self {
        self.images = Some(images);
        self
    }

    /// Join tasks to their overlay networks through `networks`.
    pub fn with_networks(mut self, networks: Arc<dyn NetworkProvider>) -> Self {
        self.networks = Some(networks);
        self
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// The bollard client, for other parts of the agent that talk to the same engine.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }
}

/// docker's container name for a task: `<service>.<slot>.<task id>` (`<service>.<node
/// id>.<task id>` for a global task), restricted to the characters docker accepts.
pub fn container_name(task: &Task) -> String {
    let service = if task.service_name.is_empty() {
        "task"
    } else {
        task.service_name.as_str()
    };
    let raw = format!(
        "{}.{}",
        names::task_name(service, task.slot, &task.node_id),
        task.id
    );
    let mut name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        name.insert_str(0, "shoal");
    }
    name
}

/// The container labels of a task: the spec's own, then Shoal's (which always win).
pub fn container_labels(
    task: &Task,
    spec: &ContainerSpec,
    node_id: &str,
) -> HashMap<String, String> {
    let mut labels = spec.labels.clone();
    labels.insert(names::LABEL_TASK_ID.to_string(), task.id.clone());
    labels.insert(
        names::LABEL_SERVICE_NAME.to_string(),
        task.service_name.clone(),
    );
    labels.insert(names::LABEL_SERVICE_ID.to_string(), task.service_id.clone());
    labels.insert(names::LABEL_NODE_ID.to_string(), node_id.to_string());
    labels
}

/// The stop grace period of a spec (docker's default when unset or negative).
pub fn stop_grace(spec: &ContainerSpec) -> Duration {
    match spec.stop_grace_period_ms {
        Some(ms) if ms >= 0 => Duration::from_millis(ms.unsigned_abs()),
        _ => DEFAULT_STOP_GRACE,
    }
}

/// docker's Healthcheck for a spec's: `None` keeps the image's own, `["NONE"]` disables it.
/// Durations go from milliseconds to nanoseconds; zero means docker's default.
pub fn health_config(spec: &ContainerSpec) -> Option<HealthConfig> {
    let h = spec.healthcheck.as_ref()?;
    let ns = |ms: i64| (ms > 0).then(|| ms.saturating_mul(1_000_000));
    Some(HealthConfig {
        test: (!h.test.is_empty()).then(|| h.test.clone()),
        interval: ns(h.interval_ms),
        timeout: ns(h.timeout_ms),
        retries: (h.retries > 0).then(|| i64::try_from(h.retries).unwrap_or(i64::MAX)),
        start_period: ns(h.start_period_ms),
        start_interval: None,
    })
}

/// Our word for docker's `State.Health.Status`; `None` for no healthcheck.
fn health_of(status: Option<HealthStatusEnum>) -> Option<Health> {
    match status? {
        HealthStatusEnum::STARTING => Some(Health::Starting),
        HealthStatusEnum::HEALTHY => Some(Health::Healthy),
        HealthStatusEnum::UNHEALTHY => Some(Health::Unhealthy),
        HealthStatusEnum::NONE | HealthStatusEnum::EMPTY => None,
    }
}

/// The engine's key of a container port: "80/tcp".
fn port_key(p: &PortConfig) -> String {
    format!("{}/{}", p.target_port, p.protocol_name())
}

/// Host-mode ports: the engine binds them on this node (on one address when given), and
/// the connection reaches the task with the client's own address.
fn port_bindings(task: &Task) -> HashMap<String, Option<Vec<PortBinding>>> {
    let mut map: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    // Ingress-mode ports are the routing mesh's: the node answers them, not the engine.
    for p in task.ports.iter().filter(|p| !p.is_ingress()) {
        let binding = PortBinding {
            host_ip: (!p.host_ip.is_empty()).then(|| p.host_ip.clone()),
            host_port: Some(if p.published_port == 0 {
                String::new()
            } else {
                p.published_port.to_string()
            }),
        };
        map.entry(port_key(p))
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(binding);
    }
    map
}

/// A template of Swarm's (`{{.Task.Slot}}`, `{{.Node.Hostname}}`, `{{.Service.Name}}`,
/// ...) filled in for `task` on node `node_id` named `node_name`; an unknown one stays.
pub fn expand_template(text: &str, task: &Task, node_id: &str, node_name: &str) -> String {
    if !text.contains("{{") {
        return text.to_string();
    }
    let slot = if task.slot > 0 {
        task.slot.to_string()
    } else {
        node_id.to_string()
    };
    let task_name = format!("{}.{slot}.{}", task.service_name, task.id);
    let values: [(&str, &str); 7] = [
        ("Service.Name", &task.service_name),
        ("Service.ID", &task.service_id),
        ("Task.Slot", &slot),
        ("Task.ID", &task.id),
        ("Task.Name", &task_name),
        ("Node.Hostname", node_name),
        ("Node.ID", node_id),
    ];
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start..].find("}}") else {
            rest = &rest[start..];
            break;
        };
        let inner = rest[start + 2..start + len].trim().trim_start_matches('.');
        match values.iter().find(|(k, _)| *k == inner) {
            Some((_, v)) => out.push_str(v),
            None => out.push_str(&rest[start..start + len + 2]),
        }
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    out
}

/// The engine's mounts of a spec's volumes, bind mounts and tmpfs.
fn mounts(spec: &ContainerSpec) -> Option<Vec<Mount>> {
    use shoal_proto::MountType as Kind;
    let mounts: Vec<Mount> = spec
        .mounts
        .iter()
        .map(|m| {
            let kind = Kind::try_from(m.r#type).unwrap_or(Kind::Volume);
            Mount {
                target: Some(m.target.clone()),
                source: (!m.source.is_empty()).then(|| m.source.clone()),
                typ: Some(match kind {
                    Kind::Volume => MountType::VOLUME,
                    Kind::Bind => MountType::BIND,
                    Kind::Tmpfs => MountType::TMPFS,
                }),
                read_only: Some(m.read_only),
                volume_options: (kind == Kind::Volume).then(|| MountVolumeOptions {
                    no_copy: Some(m.no_copy),
                    labels: (!m.volume_labels.is_empty()).then(|| {
                        m.volume_labels
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect()
                    }),
                    ..Default::default()
                }),
                tmpfs_options: (kind == Kind::Tmpfs && m.tmpfs_size_bytes > 0).then(|| {
                    MountTmpfsOptions {
                        size_bytes: Some(m.tmpfs_size_bytes),
                        ..Default::default()
                    }
                }),
                ..Default::default()
            }
        })
        .collect();
    (!mounts.is_empty()).then_some(mounts)
}

/// The create body for a task's container on node `node_id` (named `node_name`).
pub fn container_config(
    task: &Task,
    spec: &ContainerSpec,
    node_id: &str,
    node_name: &str,
) -> ContainerCreateBody {
    let limits = task.spec.as_ref().and_then(|s| s.limits.as_ref());
    let grace_secs = i64::try_from(stop_grace(spec).as_millis().div_ceil(1000)).unwrap_or(i64::MAX);
    let non_empty = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        entrypoint: non_empty(&spec.command),
        cmd: non_empty(&spec.args),
        env: non_empty(&spec.env),
        labels: Some(container_labels(task, spec, node_id)),
        stop_signal: (!spec.stop_signal.is_empty()).then(|| spec.stop_signal.clone()),
        stop_timeout: Some(grace_secs),
        healthcheck: health_config(spec),
        exposed_ports: (!task.ports.is_empty()).then(|| task.ports.iter().map(port_key).collect()),
        user: (!spec.user.is_empty()).then(|| spec.user.clone()),
        working_dir: (!spec.working_dir.is_empty()).then(|| spec.working_dir.clone()),
        hostname: (!spec.hostname.is_empty())
            .then(|| expand_template(&spec.hostname, task, node_id, node_name)),
        host_config: Some(HostConfig {
            cap_add: non_empty(&spec.cap_add),
            cap_drop: non_empty(&spec.cap_drop),
            sysctls: (!spec.sysctls.is_empty()).then(|| {
                spec.sysctls
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            }),
            ulimits: (!spec.ulimits.is_empty()).then(|| {
                spec.ulimits
                    .iter()
                    .map(|u| ResourcesUlimits {
                        name: Some(u.name.clone()),
                        soft: Some(u.soft),
                        hard: Some(u.hard),
                    })
                    .collect()
            }),
            init: spec.init.then_some(true),
            readonly_rootfs: spec.read_only.then_some(true),
            mounts: mounts(spec),
            port_bindings: task
                .ports
                .iter()
                .any(|p| !p.is_ingress())
                .then(|| port_bindings(task)),
            nano_cpus: limits.map(|l| l.nano_cpus).filter(|n| *n > 0),
            memory: limits.map(|l| l.memory_bytes).filter(|n| *n > 0),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::NO),
                maximum_retry_count: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The engine's form of a task's registry credentials.
pub fn credentials(auth: &shoal_proto::RegistryAuth) -> DockerCredentials {
    DockerCredentials {
        username: Some(auth.username.clone()),
        password: Some(auth.password.clone()),
        serveraddress: Some(auth.server_address.clone()),
        ..Default::default()
    }
}

/// Whether a pull's failure is the registry refusing the credentials given (not a registry
/// that is unreachable or lacks the image).
fn refused_credentials(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    [
        "unauthorized",
        "authentication required",
        "no basic auth credentials",
        "incorrect username or password",
        "denied",
    ]
    .iter()
    .any(|word| message.contains(word))
}

/// A pull the registry refused, as the task's error.
fn pull_failed(image: &str, node: &str, message: String) -> ExecError {
    ExecError::PullFailed {
        image: image.to_string(),
        node: node.to_string(),
        message,
    }
}

/// Maps a bollard error: transport failures are temporary, answers are not.
fn classify(op: &'static str, object: &str, e: DockerError) -> ExecError {
    match e {
        DockerError::IOError { .. }
        | DockerError::HyperResponseError { .. }
        | DockerError::HttpClientError { .. }
        | DockerError::RequestTimeoutError
        | DockerError::SocketNotFoundError(_) => ExecError::Unavailable {
            op,
            message: format!("{object}: {e}"),
        },
        DockerError::DockerResponseServerError {
            status_code,
            message,
        } => ExecError::Engine {
            op,
            object: object.to_string(),
            message: format!("engine answered {status_code}: {message}"),
        },
        e => ExecError::Engine {
            op,
            object: object.to_string(),
            message: e.to_string(),
        },
    }
}

fn status_of(e: &DockerError) -> Option<u16> {
    match e {
        DockerError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

fn label_filters(labels: &[(&str, &str)]) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_string(),
        labels.iter().map(|(k, v)| format!("{k}={v}")).collect(),
    )])
}

/// Ids of every container (running or not) carrying all of `labels`.
async fn find_containers(
    docker: &Docker,
    labels: &[(&str, &str)],
) -> Result<Vec<bollard::models::ContainerSummary>, DockerError> {
    docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(label_filters(labels)),
            ..Default::default()
        }))
        .await
}

#[async_trait]
impl Executor for DockerExecutor {
    async fn describe(&self) -> Result<NodeDescription, ExecError> {
        let info = self
            .docker
            .info()
            .await
            .map_err(|e| classify("describe", "engine", e))?;
        let engine_labels = info
            .labels
            .unwrap_or_default()
            .into_iter()
            .map(|l| match l.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (l, String::new()),
            })
            .collect();
        let hostname = if self.node_name.is_empty() {
            info.name.unwrap_or_default()
        } else {
            self.node_name.clone()
        };
        Ok(NodeDescription {
            hostname,
            platform: Some(Platform {
                os: info.os_type.unwrap_or_default(),
                architecture: info.architecture.unwrap_or_default(),
            }),
            resources: Some(Resources {
                nano_cpus: info.ncpu.unwrap_or(0).saturating_mul(1_000_000_000),
                memory_bytes: info.mem_total.unwrap_or(0),
            }),
            engine_version: info.server_version.unwrap_or_default(),
            engine_labels,
        })
    }

    fn controller(&self, task: &Task) -> Result<Box<dyn Controller>, ExecError> {
        let spec = task
            .spec
            .as_ref()
            .and_then(|s| s.container.clone())
            .ok_or_else(|| ExecError::InvalidSpec {
                task_id: task.id.clone(),
                reason: "no container spec".to_string(),
            })?;
        if spec.image.is_empty() {
            return Err(ExecError::InvalidSpec {
                task_id: task.id.clone(),
                reason: "no image".to_string(),
            });
        }
        Ok(Box::new(DockerController {
            docker: self.docker.clone(),
            health: self.health.clone(),
            node_id: self.node_id.clone(),
            node_name: self.node_name.clone(),
            task: task.clone(),
            spec,
            container_id: None,
            networks: self.networks.clone(),
            files: self.files.clone(),
            images: self.images.clone(),
            progress: Arc::new(tokio::sync::watch::channel(String::new()).0),
            fetched: None,
        }))
    }

    async fn list_task_containers(&self) -> Result<Vec<(String, String)>, ExecError> {
        let found = find_containers(&self.docker, &[(names::LABEL_NODE_ID, &self.node_id)])
            .await
            .map_err(|e| classify("list containers of node", &self.node_id, e))?;
        Ok(found
            .into_iter()
            .filter_map(|c| {
                let task_id = c.labels.as_ref()?.get(names::LABEL_TASK_ID)?.clone();
                Some((task_id, c.id?))
            })
            .collect())
    }

    async fn remove_container(&self, container_id: &str) -> Result<(), ExecError> {
        let inspected = match self
            .docker
            .inspect_container(container_id, None::<InspectContainerOptions>)
            .await
        {
            Ok(c) => c,
            Err(e) if status_of(&e) == Some(404) => return Ok(()),
            Err(e) => return Err(classify("inspect container", container_id, e)),
        };
        let owner = inspected
            .config
            .as_ref()
            .and_then(|c| c.labels.as_ref())
            .and_then(|l| l.get(names::LABEL_NODE_ID));
        if owner != Some(&self.node_id) {
            return Err(ExecError::NotOurs {
                container_id: container_id.to_string(),
                node_id: self.node_id.clone(),
            });
        }
        let task_id = inspected
            .config
            .as_ref()
            .and_then(|c| c.labels.as_ref())
            .and_then(|l| l.get(names::LABEL_TASK_ID))
            .cloned();
        remove(&self.docker, container_id).await?;
        if let (Some(files), Some(task_id)) = (&self.files, task_id) {
            files.release(&task_id);
        }
        Ok(())
    }

    async fn logs(&self, container_id: &str, read: &LogRead) -> Result<LogLines, ExecError> {
        let opts = LogsOptions {
            follow: read.follow,
            stdout: true,
            stderr: true,
            // The engine counts whole seconds; lines of the second before are dropped below.
            since: i32::try_from(read.since_ns / 1_000_000_000).unwrap_or(0),
            until: 0,
            timestamps: true,
            tail: read
                .tail
                .map_or_else(|| "all".to_string(), |n| n.to_string()),
        };
        let since_ns = read.since_ns;
        let id = container_id.to_string();
        let mut joiner = Joiner::default();
        let lines = self
            .docker
            .logs(container_id, Some(opts))
            .filter_map(move |item| {
                let line = match item {
                    Ok(LogOutput::StdOut { message }) => joiner.frame(&message, false).map(Ok),
                    Ok(LogOutput::StdErr { message }) => joiner.frame(&message, true).map(Ok),
                    Ok(LogOutput::StdIn { .. } | LogOutput::Console { .. }) => None,
                    Err(e) => Some(Err(classify("read logs of container", &id, e))),
                };
                let line = line.filter(|l| l.as_ref().map_or(true, |l| l.timestamp_ns >= since_ns));
                futures::future::ready(line)
            });
        Ok(lines.boxed())
    }
}

/// Joins the frames of `docker logs --timestamps` into lines. A frame is
/// `<RFC 3339 time> <text>`; the engine cuts lines longer than 16 KiB into frames that do
/// not end in a newline, each with its own time: the line is their texts joined, stamped
/// with the first one's time.
#[derive(Default)]
struct Joiner {
    /// The unfinished line of stdout and of stderr.
    partial: [Option<LogLine>; 2],
}

impl Joiner {
    fn frame(&mut self, frame: &[u8], stderr: bool) -> Option<LogLine> {
        let (text, complete) = match frame.strip_suffix(b"\n") {
            Some(text) => (text, true),
            None => (frame, false),
        };
        let (stamp, data) = match text.iter().position(|b| *b == b' ') {
            Some(at) => (&text[..at], &text[at + 1..]),
            None => (text, &text[text.len()..]),
        };
        let slot = &mut self.partial[usize::from(stderr)];
        let line = match slot.as_mut() {
            Some(line) => {
                line.data.extend_from_slice(data);
                slot.take()?
            }
            None => LogLine {
                timestamp_ns: timestamp_ns(stamp),
                stderr,
                data: data.to_vec(),
            },
        };
        if complete {
            Some(line)
        } else {
            *slot = Some(line);
            None
        }
    }
}

fn timestamp_ns(stamp: &[u8]) -> i64 {
    std::str::from_utf8(stamp)
        .ok()
        .and_then(|s| humantime::parse_rfc3339(s).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

async fn remove(docker: &Docker, container_id: &str) -> Result<(), ExecError> {
    let opts = RemoveContainerOptions {
        force: true,
        v: true,
        ..Default::default()
    };
    match docker.remove_container(container_id, Some(opts)).await {
        Ok(()) => Ok(()),
        Err(e) if status_of(&e) == Some(404) => Ok(()),
        // 409: removal already in progress.
        Err(e) if status_of(&e) == Some(409) => Ok(()),
        Err(e) => Err(classify("remove container", container_id, e)),
    }
}

/// The [`Controller`] of one task on a Docker engine.
pub struct DockerController {
    docker: Docker,
    health: Arc<HealthEvents>,
    node_id: String,
    node_name: String,
    task: Task,
    spec: ContainerSpec,
    container_id: Option<String>,
    networks: Option<Arc<dyn NetworkProvider>>,
    files: Option<Arc<TaskFiles>>,
    images: Option<Arc<dyn ImageSource>>,
    progress: Arc<tokio::sync::watch::Sender<String>>,
    /// The image fetched from another node for this task, if one was.
    fetched: Option<Fetched>,
}

impl DockerController {
    /// The image is not on this node: pull it; if no registry has it (or none answers),
    /// fetch it from a node that holds it.
    async fn obtain_image(&mut self) -> Result<(), ExecError> {
        let pulled = match self.pull().await {
            Err(ExecError::PullFailed { message, .. }) => message,
            other => return other,
        };
        let Some(images) = self.images.clone() else {
            return Err(pull_failed(&self.spec.image, &self.node_name, pulled));
        };
        // A registry that refused the task's own credentials keeps its word: another
        // node's copy would get round its access control.
        if self.spec.registry_auth.is_some() && refused_credentials(&pulled) {
            return Err(pull_failed(&self.spec.image, &self.node_name, pulled));
        }
        tracing::info!(task = %self.task.id, image = %self.spec.image, "the pull failed ({pulled}): fetching the image from another node");
        let progress = self.progress.clone();
        let tell = move |message: String| {
            progress.send_replace(message);
        };
        match images.fetch(&self.spec.image, &tell).await {
            Ok(fetched) => {
                tracing::info!(task = %self.task.id, image = %self.spec.image, from = %fetched.from, id = %fetched.image_id, "image fetched from another node");
                self.fetched = Some(fetched);
                Ok(())
            }
            Err(shared) => Err(pull_failed(
                &self.spec.image,
                &self.node_name,
                format!("{pulled}; no other node could share it: {shared}"),
            )),
        }
    }

    /// Pull the task's image (the task is PREPARING meanwhile). A registry's refusal is
    /// the task's error, in the engine's words ("pull access denied for ...", "manifest
    /// unknown").
    async fn pull(&self) -> Result<(), ExecError> {
        let image = self.spec.image.clone();
        let credentials = self.spec.registry_auth.as_ref().map(credentials);
        // A reference with neither tag nor digest means :latest, as docker pulls it.
        let last = image.rsplit('/').next().unwrap_or(&image);
        let reference = if last.contains(':') || image.contains('@') {
            image.clone()
        } else {
            format!("{image}:latest")
        };
        tracing::info!(task = %self.task.id, %image, "pulling the task's image");
        let mut stream = self.docker.create_image(
            Some(CreateImageOptions {
                from_image: Some(reference),
                ..Default::default()
            }),
            None,
            credentials,
        );
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(message) = info.error_detail.and_then(|d| d.message) {
                        return Err(pull_failed(&image, &self.node_name, message));
                    }
                }
                Err(DockerError::DockerResponseServerError { message, .. })
                | Err(DockerError::DockerStreamError { error: message }) => {
                    return Err(pull_failed(&image, &self.node_name, message));
                }
                Err(e) => return Err(classify("pull image", &image, e)),
            }
        }
        Ok(())
    }

    fn release_files(&self) {
        if let Some(files) = &self.files {
            files.release(&self.task.id);
        }
    }

    /// Bind mounts of the task's secrets and configs, written for it now.
    fn file_mounts(&self) -> Result<Vec<Mount>, ExecError> {
        if self.spec.secrets.is_empty() && self.spec.configs.is_empty() {
            return Ok(Vec::new());
        }
        let files = self.files.as_ref().ok_or_else(|| {
            ExecError::Files(
                "this node's agent cannot hold secrets (no in-memory file system)".into(),
            )
        })?;
        let mounts = files
            .materialize(&self.task, &self.spec)
            .map_err(|e| ExecError::Files(e.to_string()))?;
        Ok(mounts
            .into_iter()
            .map(|m| Mount {
                target: Some(m.target),
                source: Some(m.source.display().to_string()),
                typ: Some(MountType::BIND),
                read_only: Some(true),
                ..Default::default()
            })
            .collect())
    }

    /// The Docker network and endpoint settings of each of the task's overlay networks, in
    /// the task's order: the container is created on the first and connected to the others
    /// before it starts, each with the address the leader allocated.
    async fn endpoints(&self) -> Result<Vec<(DockerNetwork, EndpointSettings)>, ExecError> {
        if self.task.networks.is_empty() {
            return Ok(Vec::new());
        }
        let provider = self.networks.as_ref().ok_or_else(|| {
            ExecError::Network("this node's agent runs without overlay networks".into())
        })?;
        let mut endpoints = Vec::new();
        for attachment in &self.task.networks {
            let network = provider.docker_network(&attachment.network_id).await?;
            let address = attachment
                .addresses
                .first()
                .and_then(|a| a.split('/').next())
                .unwrap_or_default()
                .to_string();
            // No aliases for the engine: its resolver would answer service names with its
            // own local containers. Shoal's resolver answers them, swarm-wide.
            endpoints.push((
                network,
                EndpointSettings {
                    ipam_config: Some(EndpointIpamConfig {
                        ipv4_address: Some(address),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ));
        }
        Ok(endpoints)
    }

    /// The task's container on this node: the one already known, else found by labels.
    async fn container(&mut self) -> Result<Option<String>, ExecError> {
        if let Some(id) = &self.container_id {
            return Ok(Some(id.clone()));
        }
        let found = find_containers(
            &self.docker,
            &[
                (names::LABEL_TASK_ID, &self.task.id),
                (names::LABEL_NODE_ID, &self.node_id),
            ],
        )
        .await
        .map_err(|e| classify("find container of task", &self.task.id, e))?;
        if found.len() > 1 {
            tracing::warn!(task = %self.task.id, n = found.len(), "several containers for one task");
        }
        // Prefer a running one if there are several.
        let best = found
            .iter()
            .find(|c| c.state.map(|s| s.to_string()) == Some("running".to_string()))
            .or(found.first())
            .and_then(|c| c.id.clone());
        self.container_id = best.clone();
        Ok(best)
    }

    async fn require(&mut self) -> Result<String, ExecError> {
        self.container()
            .await?
            .ok_or_else(|| ExecError::ContainerNotFound {
                task_id: self.task.id.clone(),
            })
    }

    /// Forgets the cached id if the engine says the container is gone.
    fn gone(&mut self, e: &DockerError) -> bool {
        if status_of(e) == Some(404) {
            self.container_id = None;
            true
        } else {
            false
        }
    }
}

#[async_trait]
impl Controller for DockerController {
    async fn prepare(&mut self) -> Result<(), ExecError> {
        if self.container().await?.is_some() {
            return Ok(());
        }
        match self.docker.inspect_image(&self.spec.image).await {
            Ok(_) => {}
            // Not on this node: from its registry, with the credentials sent with the task,
            // else from a node that has it.
            Err(e) if status_of(&e) == Some(404) => self.obtain_image().await?,
            Err(e) => return Err(classify("inspect image", &self.spec.image, e)),
        }
        let name = container_name(&self.task);
        let mut config = container_config(&self.task, &self.spec, &self.node_id, &self.node_name);
        // A reference pinned by a registry digest names no image `docker load` made: the
        // fetched image is run by its id (checked equal to the holder's).
        if let Some(fetched) = self
            .fetched
            .as_ref()
            .filter(|_| self.spec.image.contains('@'))
        {
            config.image = Some(fetched.image_id.clone());
        }
        let file_mounts = self.file_mounts()?;
        if !file_mounts.is_empty() {
            if let Some(host) = config.host_config.as_mut() {
                host.mounts.get_or_insert_with(Vec::new).extend(file_mounts);
            }
        }
        let mut endpoints = self.endpoints().await?.into_iter();
        if let Some((network, settings)) = endpoints.next() {
            if let Some(host) = config.host_config.as_mut() {
                host.network_mode = Some(network.name.clone());
                // The engine's resolver in the container relays the names it does not
                // know (all of the swarm's) to the network's resolver.
                host.dns = Some(vec![network.resolver.to_string()]);
            }
            config.networking_config = Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(network.name, settings)])),
            });
        }
        let opts = CreateContainerOptions {
            name: Some(name.clone()),
            ..Default::default()
        };
        match self.docker.create_container(Some(opts), config).await {
            Ok(created) => {
                for w in created.warnings {
                    tracing::warn!(task = %self.task.id, "docker: {w}");
                }
                // The other networks, before the process starts.
                for (network, settings) in endpoints {
                    let request = NetworkConnectRequest {
                        container: created.id.clone(),
                        endpoint_config: Some(settings),
                    };
                    if let Err(e) = self.docker.connect_network(&network.name, request).await {
                        // Never left behind half-wired: the next prepare makes it again.
                        let _ = remove(&self.docker, &created.id).await;
                        return Err(classify("connect to network", &network.name, e));
                    }
                }
                self.container_id = Some(created.id);
                Ok(())
            }
            // The name is taken: by this task's container (a create that raced us), or by
            // someone else's, which we must not touch.
            Err(e) if status_of(&e) == Some(409) => match self.container().await? {
                Some(_) => Ok(()),
                None => Err(classify("create container", &name, e)),
            },
            Err(e) => Err(classify("create container", &name, e)),
        }
    }

    async fn start(&mut self) -> Result<(), ExecError> {
        let id = self.require().await?;
        // 304 (already started) is success in bollard.
        match self
            .docker
            .start_container(&id, None::<StartContainerOptions>)
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if self.gone(&e) => Err(ExecError::ContainerNotFound {
                task_id: self.task.id.clone(),
            }),
            Err(e) => Err(classify("start container", &id, e)),
        }
    }

    async fn wait(&mut self) -> Result<ExitInfo, ExecError> {
        let id = self.require().await?;
        let mut stream = self.docker.wait_container(
            &id,
            Some(WaitContainerOptions {
                condition: "not-running".to_string(),
            }),
        );
        match stream.next().await {
            Some(Ok(r)) => Ok(ExitInfo {
                exit_code: clamp(r.status_code),
                message: r.error.and_then(|e| e.message).filter(|m| !m.is_empty()),
            }),
            // bollard turns a non-zero exit into this error.
            Some(Err(DockerError::DockerContainerWaitError { error, code })) => Ok(ExitInfo {
                exit_code: clamp(code),
                message: (!error.is_empty()).then_some(error),
            }),
            Some(Err(e)) if self.gone(&e) => Err(ExecError::ContainerNotFound {
                task_id: self.task.id.clone(),
            }),
            Some(Err(e)) => Err(classify("wait for container", &id, e)),
            None => Err(ExecError::Unavailable {
                op: "wait for container",
                message: format!("{id}: the engine closed the wait without an answer"),
            }),
        }
    }

    async fn shutdown(&mut self) -> Result<(), ExecError> {
        let Some(id) = self.container().await? else {
            return Ok(());
        };
        let grace = stop_grace(&self.spec);
        let t = i32::try_from(grace.as_millis().div_ceil(1000)).unwrap_or(i32::MAX);
        // The stop call lasts as long as the grace period: give the client that much time.
        let docker = self
            .docker
            .clone()
            .with_timeout(grace.saturating_add(Duration::from_secs(120)));
        let opts = StopContainerOptions {
            t: Some(t),
            // The stop signal is in the container's config (API 1.41 has no signal here).
            signal: None,
        };
        match docker.stop_container(&id, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) if self.gone(&e) => Ok(()),
            Err(e) => Err(classify("stop container", &id, e)),
        }
    }

    async fn terminate(&mut self) -> Result<(), ExecError> {
        let Some(id) = self.container().await? else {
            return Ok(());
        };
        match self
            .docker
            .kill_container(&id, Some(KillContainerOptions::default()))
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if self.gone(&e) => Ok(()),
            // 409: not running.
            Err(e) if status_of(&e) == Some(409) => Ok(()),
            Err(e) => Err(classify("kill container", &id, e)),
        }
    }

    async fn remove(&mut self) -> Result<(), ExecError> {
        // Only ever a container found by this node's labels (or created by this controller).
        let Some(id) = self.container().await? else {
            self.release_files();
            return Ok(());
        };
        remove(&self.docker, &id).await?;
        self.container_id = None;
        self.release_files();
        Ok(())
    }

    async fn inspect(&mut self) -> Result<Option<ContainerState>, ExecError> {
        let Some(id) = self.container().await? else {
            return Ok(None);
        };
        let c = match self
            .docker
            .inspect_container(&id, None::<InspectContainerOptions>)
            .await
        {
            Ok(c) => c,
            Err(e) if self.gone(&e) => return Ok(None),
            Err(e) => return Err(classify("inspect container", &id, e)),
        };
        let state = c.state.unwrap_or_default();
        let status = state.status.map(|s| s.to_string()).unwrap_or_default();
        let running = state.running.unwrap_or(false);
        // docker's zero time means "never started".
        let started = state
            .started_at
            .as_deref()
            .is_some_and(|t| !t.is_empty() && !t.starts_with("0001-01-01"));
        let exited = !running && started;
        Ok(Some(ContainerState {
            container_id: c.id.unwrap_or(id),
            status,
            running,
            started,
            exit_code: if exited {
                state.exit_code.map(clamp)
            } else {
                None
            },
            // docker calls every stopped container with a healthcheck "unhealthy": the
            // verdict only means something while the process runs.
            health: if running {
                health_of(state.health.and_then(|h| h.status))
            } else {
                None
            },
        }))
    }

    async fn wait_health(&mut self, seen: Health) -> Result<Option<Health>, ExecError> {
        // Subscribe first, then look: a change after the look is an event in the queue.
        let mut events = self.health.subscribe();
        loop {
            let Some(c) = self.inspect().await? else {
                return Ok(None);
            };
            match c.health {
                None => return Ok(None),
                Some(h) if h != seen => return Ok(Some(h)),
                Some(_) => {}
            }
            docker_health::changed(&mut events, &c.container_id).await;
        }
    }

    fn container_id(&self) -> Option<String> {
        self.container_id.clone()
    }

    fn progress(&self) -> Option<tokio::sync::watch::Receiver<String>> {
        Some(self.progress.subscribe())
    }
}

fn clamp(code: i64) -> i32 {
    i32::try_from(code).unwrap_or(if code < 0 { i32::MIN } else { i32::MAX })
}

#[cfg(test)]
mod tests;

//! Docker's JSON objects for swarm, as moby's `api/types/swarm` writes them (API v1.41):
//! Go's field names, durations in nanoseconds, times as RFC 3339 with nanoseconds, file
//! modes in decimal. The same types read what clients send: every field is optional on the
//! way in, unknown fields are ignored, and keys have been put in Go's case by
//! [`crate::gokeys`] first.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub type Labels = BTreeMap<String, String>;

#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct Version {
    #[serde(rename = "Index", default)]
    pub index: u64,
}

/// `Annotations`: a name and labels (services, nodes, secrets, configs, the swarm).
#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct Annotations {
    #[serde(rename = "Name", default)]
    pub name: String,
    #[serde(rename = "Labels", default, deserialize_with = "null_default")]
    pub labels: Labels,
}

/// `null` read as the type's default (Go writes nil maps and slices as `null`).
pub fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

// ------------------------------------------------------------------ nodes

#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct NodeSpec {
    #[serde(rename = "Name", default)]
    pub name: String,
    #[serde(rename = "Labels", default, deserialize_with = "null_default")]
    pub labels: Labels,
    #[serde(rename = "Role", default, skip_serializing_if = "String::is_empty")]
    pub role: String,
    #[serde(
        rename = "Availability",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub availability: String,
}

#[derive(Serialize, Clone, Debug)]
pub struct Node {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Version")]
    pub version: Version,
    #[serde(rename = "CreatedAt")]
    pub created_at: String,
    #[serde(rename = "UpdatedAt")]
    pub updated_at: String,
    #[serde(rename = "Spec")]
    pub spec: NodeSpec,
    #[serde(rename = "Description")]
    pub description: NodeDescription,
    #[serde(rename = "Status")]
    pub status: NodeStatus,
    #[serde(rename = "ManagerStatus", skip_serializing_if = "Option::is_none")]
    pub manager_status: Option<ManagerStatus>,
}

#[derive(Serialize, Clone, Debug)]
pub struct NodeDescription {
    #[serde(rename = "Hostname")]
    pub hostname: String,
    #[serde(rename = "Platform")]
    pub platform: Platform,
    #[serde(rename = "Resources")]
    pub resources: Resources,
    #[serde(rename = "Engine")]
    pub engine: Engine,
    #[serde(rename = "TLSInfo")]
    pub tls_info: TlsInfo,
}

#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct Platform {
    #[serde(rename = "Architecture", default)]
    pub architecture: String,
    #[serde(rename = "OS", default)]
    pub os: String,
}

#[derive(Serialize, Clone, Debug)]
pub struct Engine {
    #[serde(rename = "EngineVersion")]
    pub engine_version: String,
    #[serde(rename = "Labels")]
    pub labels: Labels,
    #[serde(rename = "Plugins")]
    pub plugins: Vec<Plugin>,
}

#[derive(Serialize, Clone, Debug)]
pub struct Plugin {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "Name")]
    pub name: String,
}

#[derive(Serialize, Default, Clone, Debug)]
pub struct TlsInfo {
    #[serde(rename = "TrustRoot", skip_serializing_if = "String::is_empty")]
    pub trust_root: String,
    #[serde(rename = "CertIssuerSubject", skip_serializing_if = "String::is_empty")]
    pub cert_issuer_subject: String,
    #[serde(
        rename = "CertIssuerPublicKey",
        skip_serializing_if = "String::is_empty"
    )]
    pub cert_issuer_public_key: String,
}

#[derive(Serialize, Clone, Debug)]
pub struct NodeStatus {
    #[serde(rename = "State")]
    pub state: String,
    #[serde(rename = "Message", skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(rename = "Addr")]
    pub addr: String,
}

#[derive(Serialize, Clone, Debug)]
pub struct ManagerStatus {
    #[serde(rename = "Leader", skip_serializing_if = "std::ops::Not::not")]
    pub leader: bool,
    #[serde(rename = "Reachability")]
    pub reachability: String,
    #[serde(rename = "Addr")]
    pub addr: String,
}

// ------------------------------------------------------------------ services

#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct Resources {
    #[serde(rename = "NanoCPUs", default, skip_serializing_if = "is_zero_i64")]
    pub nano_cpus: i64,
    #[serde(rename = "MemoryBytes", default, skip_serializing_if = "is_zero_i64")]
    pub memory_bytes: i64,
    /// Not Shoal's: refused when it says anything (see `from_docker`).
    #[serde(rename = "GenericResources", default, skip_serializing)]
    pub generic_resources: Option<serde_json::Value>,
}

#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct ResourceRequirements {
    #[serde(rename = "Limits", default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Resources>,
    #[serde(
        rename = "Reservations",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub reservations: Option<Resources>,
}

#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct RestartPolicy {
    #[serde(
        rename = "Condition",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub condition: String,
    #[serde(rename = "Delay", default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<i64>,
    #[serde(
        rename = "MaxAttempts",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub max_attempts: Option<u64>,
    #[serde(rename = "Window", default, skip_serializing_if = "Option::is_none")]
    pub window: Option<i64>,
}

#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct SpreadOver {
    #[serde(rename = "SpreadDescriptor", default)]
    pub spread_descriptor: String,
}

#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct PlacementPreference {
    #[serde(rename = "Spread", default, skip_serializing_if = "Option::is_none")]
    pub spread: Option<SpreadOver>,
}

#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct Placement {
    #[serde(
        rename = "Constraints",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub constraints: Vec<String>,
    #[serde(
        rename = "Preferences",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub preferences: Vec<PlacementPreference>,
    #[serde(rename = "MaxReplicas", default, skip_serializing_if = "is_zero_u64")]
    pub max_replicas: u64,
    /// The platforms the image runs on, as the CLI reads them from the registry: Shoal's
    /// nodes are Linux (see `from_docker`).
    #[serde(rename = "Platforms", default, skip_serializing)]
    pub platforms: Option<serde_json::Value>,
}

#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct HealthConfig {
    #[serde(
        rename = "Test",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub test: Vec<String>,
    #[serde(rename = "Interval", default, skip_serializing_if = "is_zero_i64")]
    pub interval: i64,
    #[serde(rename = "Timeout", default, skip_serializing_if = "is_zero_i64")]
    pub timeout: i64,
    #[serde(rename = "StartPeriod", default, skip_serializing_if = "is_zero_i64")]
    pub start_period: i64,
    #[serde(rename = "Retries", default, skip_serializing_if = "is_zero_u64")]
    pub retries: u64,
}

#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct VolumeOptions {
    #[serde(rename = "NoCopy", default, skip_serializing_if = "is_false")]
    pub no_copy: bool,
    #[serde(
        rename = "Labels",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: Labels,
}

#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct TmpfsOptions {
    #[serde(rename = "SizeBytes", default, skip_serializing_if = "is_zero_i64")]
    pub size_bytes: i64,
}

#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct Mount {
    #[serde(rename = "Type", default)]
    pub kind: String,
    #[serde(rename = "Source", default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    #[serde(rename = "Target", default)]
    pub target: String,
    #[serde(rename = "ReadOnly", default, skip_serializing_if = "is_false")]
    pub read_only: bool,
    #[serde(
        rename = "VolumeOptions",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub volume_options: Option<VolumeOptions>,
    #[serde(
        rename = "TmpfsOptions",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub tmpfs_options: Option<TmpfsOptions>,
}

#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct FileTarget {
    #[serde(rename = "Name", default)]
    pub name: String,
    #[serde(rename = "UID", default)]
    pub uid: String,
    #[serde(rename = "GID", default)]
    pub gid: String,
    /// Decimal, as Go writes an `os.FileMode` (0444 is 292).
    #[serde(rename = "Mode", default)]
    pub mode: u32,
}

#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct SecretReference {
    #[serde(rename = "File", default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileTarget>,
    #[serde(rename = "SecretID", default)]
    pub secret_id: String,
    #[serde(rename = "SecretName", default)]
    pub secret_name: String,
}

#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct ConfigReference {
    #[serde(rename = "File", default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileTarget>,
    #[serde(rename = "ConfigID", default)]
    pub config_id: String,
    #[serde(rename = "ConfigName", default)]
    pub config_name: String,
}

#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct Ulimit {
    #[serde(rename = "Name", default)]
    pub name: String,
    #[serde(rename = "Soft", default)]
    pub soft: i64,
    #[serde(rename = "Hard", default)]
    pub hard: i64,
}

#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct ContainerSpec {
    #[serde(rename = "Image", default)]
    pub image: String,
    // Docker's fields Shoal does not run: refused when they say anything (`from_docker`).
    #[serde(rename = "Groups", default, skip_serializing)]
    pub groups: Option<serde_json::Value>,
    #[serde(rename = "Privileges", default, skip_serializing)]
    pub privileges: Option<serde_json::Value>,
    #[serde(rename = "TTY", default, skip_serializing)]
    pub tty: Option<serde_json::Value>,
    #[serde(rename = "OpenStdin", default, skip_serializing)]
    pub open_stdin: Option<serde_json::Value>,
    #[serde(rename = "Hosts", default, skip_serializing)]
    pub hosts: Option<serde_json::Value>,
    #[serde(rename = "DNSConfig", default, skip_serializing)]
    pub dns_config: Option<serde_json::Value>,
    #[serde(
        rename = "Labels",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: Labels,
    #[serde(
        rename = "Command",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub command: Vec<String>,
    #[serde(
        rename = "Args",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub args: Vec<String>,
    #[serde(rename = "Hostname", default, skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    #[serde(
        rename = "Env",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub env: Vec<String>,
    #[serde(rename = "Dir", default, skip_serializing_if = "String::is_empty")]
    pub dir: String,
    #[serde(rename = "User", default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(rename = "Init", default, skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
    #[serde(rename = "ReadOnly", default, skip_serializing_if = "is_false")]
    pub read_only: bool,
    #[serde(
        rename = "Mounts",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub mounts: Vec<Mount>,
    #[serde(
        rename = "StopSignal",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub stop_signal: String,
    #[serde(
        rename = "StopGracePeriod",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub stop_grace_period: Option<i64>,
    #[serde(
        rename = "Healthcheck",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub healthcheck: Option<HealthConfig>,
    #[serde(
        rename = "Secrets",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub secrets: Vec<SecretReference>,
    #[serde(
        rename = "Configs",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub configs: Vec<ConfigReference>,
    #[serde(
        rename = "Isolation",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub isolation: String,
    #[serde(
        rename = "Sysctls",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub sysctls: Labels,
    #[serde(
        rename = "CapabilityAdd",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub capability_add: Vec<String>,
    #[serde(
        rename = "CapabilityDrop",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub capability_drop: Vec<String>,
    #[serde(
        rename = "Ulimits",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ulimits: Vec<Ulimit>,
}

#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct NetworkAttachmentConfig {
    #[serde(rename = "Target", default)]
    pub target: String,
    #[serde(
        rename = "Aliases",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub aliases: Vec<String>,
}

#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct TaskSpec {
    #[serde(
        rename = "ContainerSpec",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub container_spec: Option<ContainerSpec>,
    #[serde(rename = "Resources", default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(
        rename = "RestartPolicy",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub restart_policy: Option<RestartPolicy>,
    #[serde(rename = "Placement", default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
    #[serde(
        rename = "Networks",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub networks: Vec<NetworkAttachmentConfig>,
    #[serde(rename = "ForceUpdate", default)]
    pub force_update: u64,
    #[serde(rename = "Runtime", default, skip_serializing_if = "String::is_empty")]
    pub runtime: String,
}

#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct ReplicatedService {
    #[serde(rename = "Replicas", default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u64>,
}

#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct Empty {}

#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct ReplicatedJob {
    #[serde(
        rename = "MaxConcurrent",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub max_concurrent: Option<u64>,
    #[serde(
        rename = "TotalCompletions",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub total_completions: Option<u64>,
}

#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct ServiceMode {
    #[serde(
        rename = "Replicated",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub replicated: Option<ReplicatedService>,
    #[serde(rename = "Global", default, skip_serializing_if = "Option::is_none")]
    pub global: Option<Empty>,
    #[serde(
        rename = "ReplicatedJob",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub replicated_job: Option<ReplicatedJob>,
    #[serde(rename = "GlobalJob", default, skip_serializing_if = "Option::is_none")]
    pub global_job: Option<Empty>,
}

#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct UpdateConfig {
    #[serde(rename = "Parallelism", default)]
    pub parallelism: u64,
    #[serde(rename = "Delay", default, skip_serializing_if = "is_zero_i64")]
    pub delay: i64,
    #[serde(
        rename = "FailureAction",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub failure_action: String,
    #[serde(rename = "Monitor", default, skip_serializing_if = "is_zero_i64")]
    pub monitor: i64,
    #[serde(rename = "MaxFailureRatio", default)]
    pub max_failure_ratio: f32,
    #[serde(rename = "Order", default)]
    pub order: String,
}

#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct PortConfig {
    #[serde(rename = "Name", default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(rename = "Protocol", default)]
    pub protocol: String,
    #[serde(rename = "TargetPort", default)]
    pub target_port: u32,
    #[serde(rename = "PublishedPort", default)]
    pub published_port: u32,
    #[serde(rename = "PublishMode", default)]
    pub publish_mode: String,
}

#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct EndpointSpec {
    #[serde(rename = "Mode", default, skip_serializing_if = "String::is_empty")]
    pub mode: String,
    #[serde(
        rename = "Ports",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ports: Vec<PortConfig>,
}

#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct ServiceSpec {
    #[serde(rename = "Name", default)]
    pub name: String,
    #[serde(rename = "Labels", default, deserialize_with = "null_default")]
    pub labels: Labels,
    #[serde(rename = "TaskTemplate", default)]
    pub task_template: TaskSpec,
    #[serde(rename = "Mode", default)]
    pub mode: ServiceMode,
    #[serde(
        rename = "UpdateConfig",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub update_config: Option<UpdateConfig>,
    #[serde(
        rename = "RollbackConfig",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub rollback_config: Option<UpdateConfig>,
    #[serde(
        rename = "EndpointSpec",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub endpoint_spec: Option<EndpointSpec>,
}

#[derive(Serialize, Clone, Debug)]
pub struct EndpointVirtualIp {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "Addr")]
    pub addr: String,
}

#[derive(Serialize, Clone, Debug)]
pub struct Endpoint {
    #[serde(rename = "Spec")]
    pub spec: EndpointSpec,
    #[serde(rename = "Ports", skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortConfig>,
    #[serde(rename = "VirtualIPs", skip_serializing_if = "Vec::is_empty")]
    pub virtual_ips: Vec<EndpointVirtualIp>,
}

#[derive(Serialize, Clone, Debug)]
pub struct UpdateStatus {
    #[serde(rename = "State", skip_serializing_if = "String::is_empty")]
    pub state: String,
    #[serde(rename = "StartedAt", skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(rename = "CompletedAt", skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    #[serde(rename = "Message", skip_serializing_if = "String::is_empty")]
    pub message: String,
}

#[derive(Serialize, Clone, Debug)]
pub struct ServiceStatus {
    #[serde(rename = "RunningTasks")]
    pub running_tasks: u64,
    #[serde(rename = "DesiredTasks")]
    pub desired_tasks: u64,
    #[serde(rename = "CompletedTasks")]
    pub completed_tasks: u64,
}

#[derive(Serialize, Clone, Debug)]
pub struct JobStatus {
    #[serde(rename = "JobIteration")]
    pub job_iteration: Version,
    #[serde(rename = "LastExecution", skip_serializing_if = "Option::is_none")]
    pub last_execution: Option<String>,
}

#[derive(Serialize, Clone, Debug)]
pub struct Service {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Version")]
    pub version: Version,
    #[serde(rename = "CreatedAt")]
    pub created_at: String,
    #[serde(rename = "UpdatedAt")]
    pub updated_at: String,
    #[serde(rename = "Spec")]
    pub spec: ServiceSpec,
    #[serde(rename = "PreviousSpec", skip_serializing_if = "Option::is_none")]
    pub previous_spec: Option<ServiceSpec>,
    #[serde(rename = "Endpoint")]
    pub endpoint: Endpoint,
    #[serde(rename = "UpdateStatus", skip_serializing_if = "Option::is_none")]
    pub update_status: Option<UpdateStatus>,
    #[serde(rename = "ServiceStatus", skip_serializing_if = "Option::is_none")]
    pub service_status: Option<ServiceStatus>,
    #[serde(rename = "JobStatus", skip_serializing_if = "Option::is_none")]
    pub job_status: Option<JobStatus>,
}

// ------------------------------------------------------------------ tasks

#[derive(Serialize, Clone, Debug)]
pub struct ContainerStatus {
    #[serde(rename = "ContainerID", skip_serializing_if = "String::is_empty")]
    pub container_id: String,
    #[serde(rename = "PID", skip_serializing_if = "is_zero_i64")]
    pub pid: i64,
    #[serde(rename = "ExitCode", skip_serializing_if = "is_zero_i64")]
    pub exit_code: i64,
}

#[derive(Serialize, Clone, Debug)]
pub struct PortStatus {
    #[serde(rename = "Ports", skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortConfig>,
}

#[derive(Serialize, Clone, Debug)]
pub struct TaskStatus {
    #[serde(rename = "Timestamp")]
    pub timestamp: String,
    #[serde(rename = "State")]
    pub state: String,
    #[serde(rename = "Message")]
    pub message: String,
    #[serde(rename = "Err", skip_serializing_if = "String::is_empty")]
    pub err: String,
    #[serde(rename = "ContainerStatus", skip_serializing_if = "Option::is_none")]
    pub container_status: Option<ContainerStatus>,
    #[serde(rename = "PortStatus")]
    pub port_status: PortStatus,
}

#[derive(Serialize, Clone, Debug)]
pub struct NetworkAttachment {
    #[serde(rename = "Network")]
    pub network: SwarmNetwork,
    #[serde(rename = "Addresses")]
    pub addresses: Vec<String>,
}

#[derive(Serialize, Clone, Debug)]
pub struct Task {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Version")]
    pub version: Version,
    #[serde(rename = "CreatedAt")]
    pub created_at: String,
    #[serde(rename = "UpdatedAt")]
    pub updated_at: String,
    #[serde(rename = "Labels")]
    pub labels: Labels,
    #[serde(rename = "Spec")]
    pub spec: TaskSpec,
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    #[serde(rename = "Slot", skip_serializing_if = "is_zero_u64")]
    pub slot: u64,
    #[serde(rename = "NodeID", skip_serializing_if = "String::is_empty")]
    pub node_id: String,
    #[serde(rename = "Status")]
    pub status: TaskStatus,
    #[serde(rename = "DesiredState")]
    pub desired_state: String,
    #[serde(rename = "NetworksAttachments", skip_serializing_if = "Vec::is_empty")]
    pub networks_attachments: Vec<NetworkAttachment>,
    #[serde(rename = "JobIteration", skip_serializing_if = "Option::is_none")]
    pub job_iteration: Option<Version>,
}

// ------------------------------------------------------------------ networks

#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct IpamConfig {
    #[serde(rename = "Subnet", default, skip_serializing_if = "String::is_empty")]
    pub subnet: String,
    #[serde(rename = "IPRange", default, skip_serializing_if = "String::is_empty")]
    pub ip_range: String,
    #[serde(rename = "Gateway", default, skip_serializing_if = "String::is_empty")]
    pub gateway: String,
}

#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct Ipam {
    #[serde(rename = "Driver", default)]
    pub driver: String,
    #[serde(rename = "Options", default, deserialize_with = "null_default")]
    pub options: Labels,
    #[serde(rename = "Config", default, deserialize_with = "null_default")]
    pub config: Vec<IpamConfig>,
}

/// A network as the networks routes write it (`types.NetworkResource`).
#[derive(Serialize, Clone, Debug)]
pub struct NetworkResource {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "Created")]
    pub created: String,
    #[serde(rename = "Scope")]
    pub scope: String,
    #[serde(rename = "Driver")]
    pub driver: String,
    #[serde(rename = "EnableIPv6")]
    pub enable_ipv6: bool,
    #[serde(rename = "IPAM")]
    pub ipam: Ipam,
    #[serde(rename = "Internal")]
    pub internal: bool,
    #[serde(rename = "Attachable")]
    pub attachable: bool,
    #[serde(rename = "Ingress")]
    pub ingress: bool,
    #[serde(rename = "ConfigFrom")]
    pub config_from: ConfigFrom,
    #[serde(rename = "ConfigOnly")]
    pub config_only: bool,
    #[serde(rename = "Containers")]
    pub containers: BTreeMap<String, serde_json::Value>,
    #[serde(rename = "Options")]
    pub options: Labels,
    #[serde(rename = "Labels")]
    pub labels: Labels,
}

#[derive(Serialize, Clone, Debug, Default)]
pub struct ConfigFrom {
    #[serde(rename = "Network")]
    pub network: String,
}

/// A network as a task's attachment names it (`swarm.Network`).
#[derive(Serialize, Clone, Debug)]
pub struct SwarmNetwork {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Version")]
    pub version: Version,
    #[serde(rename = "CreatedAt")]
    pub created_at: String,
    #[serde(rename = "UpdatedAt")]
    pub updated_at: String,
    #[serde(rename = "Spec")]
    pub spec: serde_json::Value,
    #[serde(rename = "DriverState")]
    pub driver_state: serde_json::Value,
    #[serde(rename = "IPAMOptions")]
    pub ipam_options: serde_json::Value,
}

/// What `POST /networks/create` reads (`types.NetworkCreateRequest`).
#[derive(Deserialize, Default, Clone, Debug)]
pub struct NetworkCreate {
    #[serde(rename = "Name", default)]
    pub name: String,
    #[serde(rename = "CheckDuplicate", default)]
    pub check_duplicate: bool,
    #[serde(rename = "Driver", default)]
    pub driver: String,
    #[serde(rename = "Scope", default)]
    pub scope: String,
    #[serde(rename = "EnableIPv6", default)]
    pub enable_ipv6: bool,
    #[serde(rename = "IPAM", default)]
    pub ipam: Option<Ipam>,
    #[serde(rename = "Internal", default)]
    pub internal: bool,
    #[serde(rename = "Attachable", default)]
    pub attachable: bool,
    #[serde(rename = "Ingress", default)]
    pub ingress: bool,
    #[serde(rename = "ConfigOnly", default)]
    pub config_only: bool,
    #[serde(rename = "Options", default, deserialize_with = "null_default")]
    pub options: Labels,
    #[serde(rename = "Labels", default, deserialize_with = "null_default")]
    pub labels: Labels,
}

// ------------------------------------------------------------------ secrets and configs

#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct FileSpec {
    #[serde(rename = "Name", default)]
    pub name: String,
    #[serde(rename = "Labels", default, deserialize_with = "null_default")]
    pub labels: Labels,
    /// Base64 (Go's `[]byte`). Written for configs, never for secrets.
    #[serde(rename = "Data", default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(rename = "Driver", default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<serde_json::Value>,
    #[serde(
        rename = "Templating",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub templating: Option<serde_json::Value>,
}

/// A secret or a config: the same shape.
#[derive(Serialize, Clone, Debug)]
pub struct FileObject {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Version")]
    pub version: Version,
    #[serde(rename = "CreatedAt")]
    pub created_at: String,
    #[serde(rename = "UpdatedAt")]
    pub updated_at: String,
    #[serde(rename = "Spec")]
    pub spec: FileSpec,
}

fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

fn is_false(v: &bool) -> bool {
    !*v
}

//! docker-shaped views of the wire objects for `inspect`: JSON with docker's field names
//! (prost types do not derive serde, so the mapping is written out here) and the
//! `--pretty` text.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use shoal_proto::{
    Availability, ContainerSpec, EndpointMode, FailureAction, HealthConfig, Meta, Node, NodeState,
    Resources, RestartCondition, Service, ServiceMode, ServiceSpec, UpdateConfig, UpdateOrder,
    UpdateState, UpdateStatus,
};

use crate::format;

const NANOS_PER_MS: i64 = 1_000_000;

fn is_zero(v: &i64) -> bool {
    *v == 0
}

fn sorted(map: &HashMap<String, String>) -> BTreeMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Milliseconds to docker's JSON durations, which are nanoseconds.
fn nanos(ms: i64) -> i64 {
    ms.saturating_mul(NANOS_PER_MS)
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VersionView {
    index: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceView {
    #[serde(rename = "ID")]
    id: String,
    version: VersionView,
    created_at: String,
    updated_at: String,
    spec: ServiceSpecView,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_spec: Option<ServiceSpecView>,
    spec_version: VersionView,
    #[serde(skip_serializing_if = "Option::is_none")]
    update_status: Option<UpdateStatusView>,
    endpoint: EndpointView,
}

/// docker's `Endpoint`: the endpoint spec and the VIPs the leader allocated.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct EndpointView {
    spec: EndpointSpecView,
    #[serde(rename = "VirtualIPs", skip_serializing_if = "Vec::is_empty")]
    virtual_ips: Vec<VirtualIpView>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct EndpointSpecView {
    mode: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct VirtualIpView {
    #[serde(rename = "NetworkID")]
    network_id: String,
    addr: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct NetworkAttachmentConfigView {
    target: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    aliases: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateStatusView {
    state: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    started_at: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    completed_at: String,
    message: String,
}

/// docker's `UpdateConfig` / `RollbackConfig`: durations in nanoseconds.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateConfigView {
    parallelism: u64,
    #[serde(skip_serializing_if = "is_zero")]
    delay: i64,
    failure_action: &'static str,
    #[serde(skip_serializing_if = "is_zero")]
    monitor: i64,
    max_failure_ratio: f32,
    order: &'static str,
}

/// docker's update state names.
pub fn update_state_name(state: UpdateState) -> &'static str {
    match state {
        UpdateState::Unknown => "",
        UpdateState::Updating => "updating",
        UpdateState::Paused => "paused",
        UpdateState::Completed => "completed",
        UpdateState::RollbackStarted => "rollback_started",
        UpdateState::RollbackPaused => "rollback_paused",
        UpdateState::RollbackCompleted => "rollback_completed",
    }
}

fn failure_action_name(c: &UpdateConfig) -> &'static str {
    match FailureAction::try_from(c.failure_action).unwrap_or(FailureAction::Pause) {
        FailureAction::Pause => "pause",
        FailureAction::Continue => "continue",
        FailureAction::Rollback => "rollback",
    }
}

fn order_name(c: &UpdateConfig) -> &'static str {
    match UpdateOrder::try_from(c.order).unwrap_or(UpdateOrder::StopFirst) {
        UpdateOrder::StopFirst => "stop-first",
        UpdateOrder::StartFirst => "start-first",
    }
}

/// Swarm's default monitor period, shown when none is set.
const DEFAULT_MONITOR_MS: i64 = 5_000;

fn update_config_view(c: &UpdateConfig) -> UpdateConfigView {
    UpdateConfigView {
        parallelism: c.parallelism.unwrap_or(1),
        delay: nanos(c.delay_ms),
        failure_action: failure_action_name(c),
        monitor: nanos(c.monitor_ms.unwrap_or(DEFAULT_MONITOR_MS)),
        max_failure_ratio: c.max_failure_ratio,
        order: order_name(c),
    }
}

fn update_status_view(u: &UpdateStatus) -> UpdateStatusView {
    let time = |ms: i64| {
        if ms > 0 {
            format::rfc3339(ms)
        } else {
            String::new()
        }
    };
    UpdateStatusView {
        state: update_state_name(u.state()),
        started_at: time(u.started_at_ms),
        completed_at: time(u.completed_at_ms),
        message: u.message.clone(),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ServiceSpecView {
    name: String,
    labels: BTreeMap<String, String>,
    task_template: TaskTemplateView,
    mode: ModeView,
    #[serde(skip_serializing_if = "Option::is_none")]
    update_config: Option<UpdateConfigView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rollback_config: Option<UpdateConfigView>,
    endpoint_spec: EndpointSpecView,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct TaskTemplateView {
    container_spec: ContainerSpecView,
    resources: ResourcesView,
    #[serde(skip_serializing_if = "Option::is_none")]
    restart_policy: Option<RestartPolicyView>,
    placement: PlacementView,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    networks: Vec<NetworkAttachmentConfigView>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerSpecView {
    image: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    command: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    args: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    env: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_grace_period: Option<i64>,
    #[serde(skip_serializing_if = "String::is_empty")]
    stop_signal: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    healthcheck: Option<HealthcheckView>,
}

/// docker's `HealthConfig`: durations in nanoseconds, zero (docker's default) left out.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct HealthcheckView {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    test: Vec<String>,
    #[serde(skip_serializing_if = "is_zero")]
    interval: i64,
    #[serde(skip_serializing_if = "is_zero")]
    timeout: i64,
    #[serde(skip_serializing_if = "is_zero_u64")]
    retries: u64,
    #[serde(skip_serializing_if = "is_zero")]
    start_period: i64,
}

fn healthcheck_view(h: &HealthConfig) -> HealthcheckView {
    HealthcheckView {
        test: h.test.clone(),
        interval: nanos(h.interval_ms),
        timeout: nanos(h.timeout_ms),
        retries: h.retries,
        start_period: nanos(h.start_period_ms),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ResourcesView {
    limits: ResourceView,
    reservations: ResourceView,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ResourceView {
    #[serde(rename = "NanoCPUs", skip_serializing_if = "is_zero")]
    nano_cpus: i64,
    #[serde(skip_serializing_if = "is_zero")]
    memory_bytes: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RestartPolicyView {
    condition: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    delay: Option<i64>,
    max_attempts: u64,
    window: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PlacementView {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    constraints: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    preferences: Vec<PreferenceView>,
    #[serde(skip_serializing_if = "is_zero_u64")]
    max_replicas: u64,
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PreferenceView {
    spread: SpreadView,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct SpreadView {
    spread_descriptor: String,
}

#[derive(Default, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ModeView {
    #[serde(skip_serializing_if = "Option::is_none")]
    replicated: Option<ReplicatedView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    global: Option<GlobalView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replicated_job: Option<ReplicatedJobView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    global_job: Option<GlobalView>,
}

/// docker's `ReplicatedJob` mode object.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ReplicatedJobView {
    max_concurrent: u64,
    total_completions: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ReplicatedView {
    replicas: u64,
}

#[derive(Serialize)]
struct GlobalView {}

fn resource(r: Option<&Resources>) -> ResourceView {
    ResourceView {
        nano_cpus: r.map_or(0, |r| r.nano_cpus),
        memory_bytes: r.map_or(0, |r| r.memory_bytes),
    }
}

/// docker's lowercase restart condition names.
pub fn restart_condition_name(c: RestartCondition) -> &'static str {
    match c {
        RestartCondition::Any => "any",
        RestartCondition::OnFailure => "on-failure",
        RestartCondition::None => "none",
    }
}

/// docker's lowercase service mode names.
pub fn mode_name(mode: ServiceMode) -> &'static str {
    match mode {
        ServiceMode::Replicated => "replicated",
        ServiceMode::Global => "global",
        ServiceMode::ReplicatedJob => "replicated job",
        ServiceMode::GlobalJob => "global job",
    }
}

fn spec_view(spec: &ServiceSpec) -> ServiceSpecView {
    let task = spec.task.clone().unwrap_or_default();
    let container = task.container.clone().unwrap_or_default();
    let mode = ServiceMode::try_from(spec.mode).unwrap_or(ServiceMode::Replicated);
    ServiceSpecView {
        name: spec.name.clone(),
        labels: sorted(&spec.labels),
        task_template: TaskTemplateView {
            container_spec: ContainerSpecView {
                image: container.image.clone(),
                labels: sorted(&container.labels),
                command: container.command.clone(),
                args: container.args.clone(),
                env: container.env.clone(),
                stop_grace_period: container.stop_grace_period_ms.map(nanos),
                stop_signal: container.stop_signal.clone(),
                healthcheck: container.healthcheck.as_ref().map(healthcheck_view),
            },
            resources: ResourcesView {
                limits: resource(task.limits.as_ref()),
                reservations: resource(task.reservations.as_ref()),
            },
            restart_policy: task.restart.as_ref().map(|r| RestartPolicyView {
                condition: restart_condition_name(
                    RestartCondition::try_from(r.condition).unwrap_or(RestartCondition::Any),
                ),
                delay: r.delay_ms.map(nanos),
                max_attempts: r.max_attempts,
                window: nanos(r.window_ms),
            }),
            placement: {
                let p = task.placement.clone().unwrap_or_default();
                PlacementView {
                    constraints: p.constraints,
                    preferences: p
                        .spread
                        .into_iter()
                        .map(|d| PreferenceView {
                            spread: SpreadView {
                                spread_descriptor: d,
                            },
                        })
                        .collect(),
                    max_replicas: p.max_replicas,
                }
            },
            networks: task
                .networks
                .iter()
                .map(|n| NetworkAttachmentConfigView {
                    target: n.target.clone(),
                    aliases: n.aliases.clone(),
                })
                .collect(),
        },
        mode: match mode {
            ServiceMode::Replicated => ModeView {
                replicated: Some(ReplicatedView {
                    replicas: spec.replicas,
                }),
                ..ModeView::default()
            },
            ServiceMode::Global => ModeView {
                global: Some(GlobalView {}),
                ..ModeView::default()
            },
            ServiceMode::ReplicatedJob => ModeView {
                replicated_job: Some(ReplicatedJobView {
                    // As docker shows it: unset is as many as the completions.
                    max_concurrent: match spec.max_concurrent {
                        0 => spec.replicas,
                        n => n,
                    },
                    total_completions: spec.replicas,
                }),
                ..ModeView::default()
            },
            ServiceMode::GlobalJob => ModeView {
                global_job: Some(GlobalView {}),
                ..ModeView::default()
            },
        },
        update_config: spec.update.as_ref().map(update_config_view),
        rollback_config: spec.rollback.as_ref().map(update_config_view),
        endpoint_spec: endpoint_spec_view(spec),
    }
}

fn endpoint_spec_view(spec: &ServiceSpec) -> EndpointSpecView {
    let mode = spec
        .endpoint
        .as_ref()
        .and_then(|e| EndpointMode::try_from(e.mode).ok())
        .unwrap_or(EndpointMode::Vip);
    EndpointSpecView {
        mode: match mode {
            EndpointMode::Vip => "vip",
            EndpointMode::Dnsrr => "dnsrr",
        },
    }
}

fn meta_times(meta: Option<&Meta>) -> (u64, String, String) {
    let m = meta.cloned().unwrap_or_default();
    (
        m.version,
        format::rfc3339(m.created_at_ms),
        format::rfc3339(m.updated_at_ms),
    )
}

pub fn service(s: &Service) -> ServiceView {
    let (version, created_at, updated_at) = meta_times(s.meta.as_ref());
    ServiceView {
        id: s.id.clone(),
        version: VersionView { index: version },
        created_at,
        updated_at,
        spec: spec_view(&s.spec.clone().unwrap_or_default()),
        previous_spec: s.previous_spec.as_ref().map(spec_view),
        spec_version: VersionView {
            index: s.spec_version,
        },
        update_status: s.update_status.as_ref().map(update_status_view),
        endpoint: EndpointView {
            spec: endpoint_spec_view(&s.spec.clone().unwrap_or_default()),
            virtual_ips: s
                .vips
                .iter()
                .map(|v| VirtualIpView {
                    network_id: v.network_id.clone(),
                    addr: v.addr.clone(),
                })
                .collect(),
        },
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeView {
    #[serde(rename = "ID")]
    id: String,
    version: VersionView,
    created_at: String,
    updated_at: String,
    spec: NodeSpecView,
    description: NodeDescriptionView,
    status: NodeStatusView,
    #[serde(skip_serializing_if = "Option::is_none")]
    manager_status: Option<ManagerStatusView>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct NodeSpecView {
    labels: BTreeMap<String, String>,
    role: &'static str,
    availability: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct NodeDescriptionView {
    hostname: String,
    platform: PlatformView,
    resources: ResourceView,
    engine: EngineView,
}

#[derive(Serialize)]
struct PlatformView {
    #[serde(rename = "Architecture")]
    architecture: String,
    #[serde(rename = "OS")]
    os: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct EngineView {
    engine_version: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct NodeStatusView {
    state: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    message: String,
    addr: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ManagerStatusView {
    leader: bool,
    reachability: &'static str,
    addr: String,
    #[serde(rename = "RaftID")]
    raft_id: u64,
}

/// docker's lowercase node state names.
pub fn node_state_name(state: NodeState) -> &'static str {
    match state {
        NodeState::Unknown => "unknown",
        NodeState::Down => "down",
        NodeState::Ready => "ready",
        NodeState::Disconnected => "disconnected",
    }
}

/// docker's lowercase availability names.
pub fn availability_name(a: Availability) -> &'static str {
    match a {
        Availability::Active => "active",
        Availability::Pause => "pause",
        Availability::Drain => "drain",
    }
}

/// docker's lowercase role names.
pub fn role_name(role: shoal_proto::NodeRole) -> &'static str {
    match role {
        shoal_proto::NodeRole::Worker => "worker",
        shoal_proto::NodeRole::Manager => "manager",
    }
}

pub fn node(n: &Node) -> NodeView {
    let (version, created_at, updated_at) = meta_times(n.meta.as_ref());
    let labels = n
        .spec
        .as_ref()
        .map(|s| sorted(&s.labels))
        .unwrap_or_default();
    let desc = n.description.clone().unwrap_or_default();
    let platform = desc.platform.clone().unwrap_or_default();
    let status = n.status.clone().unwrap_or_default();
    NodeView {
        id: n.id.clone(),
        version: VersionView { index: version },
        created_at,
        updated_at,
        spec: NodeSpecView {
            labels,
            role: role_name(n.role()),
            availability: availability_name(n.availability()),
        },
        description: NodeDescriptionView {
            hostname: desc.hostname.clone(),
            platform: PlatformView {
                architecture: platform.architecture,
                os: platform.os,
            },
            resources: resource(desc.resources.as_ref()),
            engine: EngineView {
                engine_version: desc.engine_version.clone(),
                labels: sorted(&desc.engine_labels),
            },
        },
        status: NodeStatusView {
            state: node_state_name(n.state()),
            message: status.message,
            addr: status.addr,
        },
        manager_status: n.manager_status.as_ref().map(|m| ManagerStatusView {
            leader: m.leader,
            // The store records managers, not their health: a listed manager is reachable.
            reachability: "reachable",
            addr: m.addr.clone(),
            raft_id: m.raft_id,
        }),
    }
}

/// Lines of `label: value`, values aligned per block of consecutive valued lines as
/// docker's tabwriter aligns them. A line without a value ends a block.
struct Pretty {
    lines: Vec<(String, Option<String>)>,
}

impl Pretty {
    fn new() -> Self {
        Self { lines: Vec::new() }
    }

    fn kv(&mut self, label: &str, value: impl Into<String>) -> &mut Self {
        self.lines.push((format!("{label}:"), Some(value.into())));
        self
    }

    fn heading(&mut self, label: &str) -> &mut Self {
        self.lines.push((format!("{label}:"), None));
        self
    }

    fn line(&mut self, text: impl Into<String>) -> &mut Self {
        self.lines.push((text.into(), None));
        self
    }

    fn render(&self) -> String {
        let width = self
            .lines
            .iter()
            .filter(|(_, v)| v.is_some())
            .map(|(l, _)| l.chars().count())
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for (label, value) in &self.lines {
            match value {
                Some(v) => {
                    out.push_str(&format!("{label:<width$}  {v}").replace('\n', " "));
                }
                None => out.push_str(label),
            }
            out.push('\n');
        }
        out.trim_end().to_string()
    }
}

fn container_of(spec: &ServiceSpec) -> ContainerSpec {
    spec.task
        .as_ref()
        .and_then(|t| t.container.clone())
        .unwrap_or_default()
}

/// `service inspect --pretty`.
pub fn service_pretty(s: &Service) -> String {
    let spec = s.spec.clone().unwrap_or_default();
    let task = spec.task.clone().unwrap_or_default();
    let container = container_of(&spec);
    let mut p = Pretty::new();
    p.kv("ID", &s.id).kv("Name", &spec.name);
    if !spec.labels.is_empty() {
        p.heading("Labels");
        for (k, v) in sorted(&spec.labels) {
            p.line(if v.is_empty() {
                format!(" {k}")
            } else {
                format!(" {k}={v}")
            });
        }
    }
    match s.mode() {
        ServiceMode::Global => {
            p.kv("Service Mode", "Global");
        }
        ServiceMode::Replicated => {
            p.kv("Service Mode", "Replicated")
                .kv(" Replicas", spec.replicas.to_string());
        }
        ServiceMode::ReplicatedJob => {
            let max = match spec.max_concurrent {
                0 => spec.replicas,
                n => n,
            };
            p.kv("Service Mode", "Replicated Job")
                .kv(" Max Concurrent", max.to_string())
                .kv(" Total Completions", spec.replicas.to_string());
        }
        ServiceMode::GlobalJob => {
            p.kv("Service Mode", "Global Job");
        }
    }
    p.heading("Placement");
    let placement = task.placement.clone().unwrap_or_default();
    if !placement.constraints.is_empty() {
        p.kv(
            " Constraints",
            format!("[{}]", placement.constraints.join(" ")),
        );
    }
    if !placement.spread.is_empty() {
        let prefs: Vec<String> = placement
            .spread
            .iter()
            .map(|d| format!("Spread={d}"))
            .collect();
        p.kv(" Preferences", format!("[{}]", prefs.join(" ")));
    }
    if placement.max_replicas > 0 {
        p.kv(" Max Replicas Per Node", placement.max_replicas.to_string());
    }
    if let Some(r) = &task.restart {
        let condition = RestartCondition::try_from(r.condition).unwrap_or(RestartCondition::Any);
        p.heading("RestartPolicy")
            .kv(" Condition", restart_condition_name(condition));
        if let Some(delay) = r.delay_ms {
            p.kv(" Delay", duration_text(delay));
        }
        p.kv(" Max Attempts", r.max_attempts.to_string());
        if r.window_ms > 0 {
            p.kv(" Window", duration_text(r.window_ms));
        }
    }
    if let Some(u) = s.update_status.as_ref() {
        let now = format::now_ms();
        p.heading("UpdateStatus")
            .kv(" State", update_state_name(u.state()));
        if u.started_at_ms > 0 {
            p.kv(" Started", format::ago(now, u.started_at_ms));
        }
        if u.completed_at_ms > 0 {
            p.kv(" Completed", format::ago(now, u.completed_at_ms));
        }
        p.kv(" Message", &u.message);
    }
    for (heading, verb, config) in [
        ("UpdateConfig", "Update", &spec.update),
        ("RollbackConfig", "Rollback", &spec.rollback),
    ] {
        let c = config.unwrap_or_default();
        let v = update_config_view(&c);
        p.heading(heading)
            .kv(" Parallelism", v.parallelism.to_string());
        if c.delay_ms > 0 {
            p.kv(" Delay", duration_text(c.delay_ms));
        }
        p.kv(" On failure", v.failure_action)
            .kv(
                " Monitor",
                duration_text(c.monitor_ms.unwrap_or(DEFAULT_MONITOR_MS)),
            )
            .kv(" Max failure ratio", v.max_failure_ratio.to_string())
            .kv(&format!(" {verb} order"), v.order);
    }
    p.heading("ContainerSpec").kv(" Image", &container.image);
    if !container.command.is_empty() {
        p.kv(" Command", container.command.join(" "));
    }
    if !container.args.is_empty() {
        p.kv(" Args", container.args.join(" "));
    }
    if !container.env.is_empty() {
        p.kv(" Env", container.env.join(" "));
    }
    if !container.stop_signal.is_empty() {
        p.kv(" Stop Signal", &container.stop_signal);
    }
    if let Some(grace) = container.stop_grace_period_ms {
        p.kv(" Stop Grace Period", duration_text(grace));
    }
    if let Some(h) = &container.healthcheck {
        match h.test.as_slice() {
            [none] if none == "NONE" => {
                p.kv(" Healthcheck", "disabled");
            }
            test => {
                p.heading(" Healthcheck");
                match test {
                    [] => p.kv("  Command", "(the image's)"),
                    [shell, cmd] if shell == "CMD-SHELL" => p.kv("  Command", cmd.as_str()),
                    [exec, rest @ ..] if exec == "CMD" => p.kv("  Command", rest.join(" ")),
                    other => p.kv("  Command", other.join(" ")),
                };
                for (label, ms) in [
                    ("  Interval", h.interval_ms),
                    ("  Timeout", h.timeout_ms),
                    ("  Start Period", h.start_period_ms),
                ] {
                    if ms > 0 {
                        p.kv(label, duration_text(ms));
                    }
                }
                if h.retries > 0 {
                    p.kv("  Retries", h.retries.to_string());
                }
            }
        }
    }
    let has = |r: &Option<Resources>| {
        r.as_ref()
            .is_some_and(|r| r.nano_cpus > 0 || r.memory_bytes > 0)
    };
    if has(&task.reservations) || has(&task.limits) {
        p.heading("Resources");
        for (label, r) in [
            (" Reservations", &task.reservations),
            (" Limits", &task.limits),
        ] {
            if let Some(r) = r.as_ref().filter(|_| has(r)) {
                p.heading(label);
                if r.nano_cpus > 0 {
                    p.kv("  CPU", format::cpus(r.nano_cpus));
                }
                if r.memory_bytes > 0 {
                    p.kv("  Memory", format::bytes_size(r.memory_bytes));
                }
            }
        }
    }
    p.render()
}

fn duration_text(ms: i64) -> String {
    let ms = u64::try_from(ms).unwrap_or(0);
    humantime::format_duration(std::time::Duration::from_millis(ms)).to_string()
}

/// `node inspect --pretty`.
pub fn node_pretty(n: &Node) -> String {
    let desc = n.description.clone().unwrap_or_default();
    let status = n.status.clone().unwrap_or_default();
    let mut p = Pretty::new();
    p.kv("ID", &n.id).kv("Hostname", &desc.hostname).kv(
        "Joined at",
        format::rfc3339(n.meta.as_ref().map_or(0, |m| m.created_at_ms)),
    );
    let labels = n
        .spec
        .as_ref()
        .map(|s| sorted(&s.labels))
        .unwrap_or_default();
    if !labels.is_empty() {
        p.heading("Labels");
        for (k, v) in labels {
            p.line(format!(" - {k}={v}"));
        }
    }
    p.heading("Status")
        .kv(" State", format::capitalize(node_state_name(n.state())))
        .kv(
            " Availability",
            format::capitalize(availability_name(n.availability())),
        )
        .kv(" Address", &status.addr);
    if !status.message.is_empty() {
        p.kv(" Message", &status.message);
    }
    if let Some(m) = &n.manager_status {
        p.heading("Manager Status")
            .kv(" Address", &m.addr)
            .kv(" Raft Status", "Reachable")
            .kv(" Leader", if m.leader { "Yes" } else { "No" });
    }
    let platform = desc.platform.clone().unwrap_or_default();
    p.heading("Platform")
        .kv(" Operating System", &platform.os)
        .kv(" Architecture", &platform.architecture);
    let res = desc.resources.unwrap_or_default();
    p.heading("Resources")
        .kv(" CPUs", format::cpus(res.nano_cpus))
        .kv(" Memory", format::bytes_size(res.memory_bytes));
    p.kv("Engine Version", &desc.engine_version);
    if !desc.engine_labels.is_empty() {
        p.heading("Engine Labels");
        for (k, v) in sorted(&desc.engine_labels) {
            p.line(format!(" - {k}={v}"));
        }
    }
    p.render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::{Placement, RestartPolicy, TaskSpec};

    fn web() -> Service {
        Service {
            id: "svc1".into(),
            meta: Some(Meta {
                version: 7,
                created_at_ms: 1_000,
                updated_at_ms: 2_000,
                ..Default::default()
            }),
            spec: Some(ServiceSpec {
                name: "web".into(),
                labels: HashMap::from([("tier".to_string(), "front".to_string())]),
                task: Some(TaskSpec {
                    container: Some(ContainerSpec {
                        image: "nginx:1".into(),
                        args: vec!["sleep".into(), "10".into()],
                        stop_grace_period_ms: Some(10_000),
                        ..Default::default()
                    }),
                    reservations: Some(Resources {
                        nano_cpus: 500_000_000,
                        memory_bytes: 64 << 20,
                    }),
                    restart: Some(RestartPolicy {
                        condition: RestartCondition::OnFailure as i32,
                        delay_ms: Some(5_000),
                        max_attempts: 3,
                        window_ms: 0,
                    }),
                    placement: Some(Placement {
                        constraints: vec!["node.role==manager".into()],
                        max_replicas: 2,
                        spread: vec!["node.labels.zone".into()],
                    }),
                    ..Default::default()
                }),
                mode: ServiceMode::Replicated as i32,
                replicas: 3,
                ..Default::default()
            }),
            spec_version: 2,
            previous_spec: None,
            ..Default::default()
        }
    }

    #[test]
    fn service_json_has_dockers_shape() {
        let v = serde_json::to_value(service(&web())).unwrap_or_default();
        let want = serde_json::json!({
            "ID": "svc1",
            "Version": {"Index": 7},
            "CreatedAt": "1970-01-01T00:00:01.000Z",
            "UpdatedAt": "1970-01-01T00:00:02.000Z",
            "Spec": {
                "Name": "web",
                "Labels": {"tier": "front"},
                "TaskTemplate": {
                    "ContainerSpec": {
                        "Image": "nginx:1",
                        "Args": ["sleep", "10"],
                        "StopGracePeriod": 10_000_000_000_i64
                    },
                    "Resources": {
                        "Limits": {},
                        "Reservations": {"NanoCPUs": 500_000_000, "MemoryBytes": 67_108_864}
                    },
                    "RestartPolicy": {
                        "Condition": "on-failure",
                        "Delay": 5_000_000_000_i64,
                        "MaxAttempts": 3,
                        "Window": 0
                    },
                    "Placement": {
                        "Constraints": ["node.role==manager"],
                        "Preferences": [{"Spread": {"SpreadDescriptor": "node.labels.zone"}}],
                        "MaxReplicas": 2
                    }
                },
                "Mode": {"Replicated": {"Replicas": 3}},
                "EndpointSpec": {"Mode": "vip"}
            },
            "SpecVersion": {"Index": 2},
            "Endpoint": {"Spec": {"Mode": "vip"}}
        });
        assert_eq!(v, want);
    }

    #[test]
    fn networks_and_vips_show_as_dockers() {
        let service = Service {
            id: "svc1".into(),
            spec: Some(ServiceSpec {
                name: "web".into(),
                task: Some(shoal_proto::TaskSpec {
                    networks: vec![shoal_proto::NetworkAttachmentConfig {
                        target: "net1".into(),
                        aliases: vec!["www".into()],
                    }],
                    ..Default::default()
                }),
                endpoint: Some(shoal_proto::EndpointSpec {
                    mode: EndpointMode::Dnsrr as i32,
                    ports: vec![],
                }),
                ..Default::default()
            }),
            vips: vec![shoal_proto::EndpointVip {
                network_id: "net1".into(),
                addr: "10.0.1.2/24".into(),
            }],
            ..Default::default()
        };
        let v = serde_json::to_value(super::service(&service)).expect("json");
        assert_eq!(
            v["Spec"]["TaskTemplate"]["Networks"],
            serde_json::json!([{"Target": "net1", "Aliases": ["www"]}])
        );
        assert_eq!(v["Spec"]["EndpointSpec"]["Mode"], "dnsrr");
        assert_eq!(
            v["Endpoint"]["VirtualIPs"],
            serde_json::json!([{"NetworkID": "net1", "Addr": "10.0.1.2/24"}])
        );
    }

    #[test]
    fn update_status_and_policies_in_json_and_pretty() {
        let mut s = web();
        if let Some(spec) = s.spec.as_mut() {
            spec.update = Some(UpdateConfig {
                parallelism: Some(2),
                delay_ms: 10_000,
                order: UpdateOrder::StartFirst as i32,
                failure_action: FailureAction::Rollback as i32,
                monitor_ms: None,
                max_failure_ratio: 0.5,
            });
        }
        s.update_status = Some(UpdateStatus {
            state: UpdateState::Paused as i32,
            message: "update paused due to failure or early termination of task t1: exit status 1"
                .into(),
            started_at_ms: 1_000,
            completed_at_ms: 0,
        });
        let v = serde_json::to_value(service(&s)).unwrap_or_default();
        assert_eq!(
            v["Spec"]["UpdateConfig"],
            serde_json::json!({
                "Parallelism": 2,
                "Delay": 10_000_000_000_i64,
                "FailureAction": "rollback",
                "Monitor": 5_000_000_000_i64,
                "MaxFailureRatio": 0.5,
                "Order": "start-first"
            })
        );
        assert_eq!(v["Spec"].get("RollbackConfig"), None);
        assert_eq!(
            v["UpdateStatus"],
            serde_json::json!({
                "State": "paused",
                "StartedAt": "1970-01-01T00:00:01.000Z",
                "Message": "update paused due to failure or early termination of task t1: exit status 1"
            })
        );
        let text = service_pretty(&s);
        for want in [
            "UpdateStatus:",
            " State:",
            "paused",
            " Started:",
            " Message:",
            "exit status 1",
            "UpdateConfig:",
            " Parallelism:",
            " Delay:",
            "10s",
            " On failure:",
            "rollback",
            " Monitor:",
            "5s",
            " Max failure ratio:",
            "0.5",
            " Update order:",
            "start-first",
            "RollbackConfig:",
            " Rollback order:",
        ] {
            assert!(text.contains(want), "{want:?} missing from\n{text}");
        }
        assert!(!text.contains(" Completed:"), "{text}");
    }

    fn with_health(h: HealthConfig) -> Service {
        let mut s = web();
        if let Some(c) = s
            .spec
            .as_mut()
            .and_then(|s| s.task.as_mut())
            .and_then(|t| t.container.as_mut())
        {
            c.healthcheck = Some(h);
        }
        s
    }

    #[test]
    fn healthcheck_in_json_and_pretty() {
        let s = with_health(HealthConfig {
            test: vec!["CMD-SHELL".into(), "test -f /tmp/ok".into()],
            interval_ms: 1_000,
            timeout_ms: 500,
            retries: 3,
            start_period_ms: 0,
        });
        let json = serde_json::to_value(service(&s)).expect("json");
        assert_eq!(
            json["Spec"]["TaskTemplate"]["ContainerSpec"]["Healthcheck"],
            serde_json::json!({
                "Test": ["CMD-SHELL", "test -f /tmp/ok"],
                "Interval": 1_000_000_000_i64,
                "Timeout": 500_000_000_i64,
                "Retries": 3
            })
        );
        let text = service_pretty(&s);
        for want in [
            " Healthcheck:",
            "  Command:",
            "test -f /tmp/ok",
            "  Interval:",
            "1s",
            "  Retries:",
        ] {
            assert!(text.contains(want), "{want:?} missing from\n{text}");
        }
        assert!(!text.contains("Start Period"), "{text}");

        let none = with_health(HealthConfig {
            test: vec!["NONE".into()],
            ..Default::default()
        });
        let json = serde_json::to_value(service(&none)).expect("json");
        assert_eq!(
            json["Spec"]["TaskTemplate"]["ContainerSpec"]["Healthcheck"],
            serde_json::json!({ "Test": ["NONE"] })
        );
        assert!(service_pretty(&none).contains("disabled"));
        let json = serde_json::to_value(service(&web())).expect("json");
        assert!(json["Spec"]["TaskTemplate"]["ContainerSpec"]
            .get("Healthcheck")
            .is_none());
    }

    #[test]
    fn global_mode_is_an_empty_object() {
        let mut s = web();
        if let Some(spec) = s.spec.as_mut() {
            spec.mode = ServiceMode::Global as i32;
        }
        let v = serde_json::to_value(service(&s)).unwrap_or_default();
        assert_eq!(v["Spec"]["Mode"], serde_json::json!({"Global": {}}));
    }

    #[test]
    fn job_modes_as_docker_shows_them() {
        let mut s = web();
        if let Some(spec) = s.spec.as_mut() {
            spec.mode = ServiceMode::ReplicatedJob as i32;
            spec.replicas = 6;
            spec.max_concurrent = 2;
        }
        let v = serde_json::to_value(service(&s)).unwrap_or_default();
        assert_eq!(
            v["Spec"]["Mode"],
            serde_json::json!({"ReplicatedJob": {"MaxConcurrent": 2, "TotalCompletions": 6}})
        );
        let text = service_pretty(&s);
        assert!(text.contains("Replicated Job"), "{text}");
        assert!(text.contains(" Total Completions:"), "{text}");
        if let Some(spec) = s.spec.as_mut() {
            spec.mode = ServiceMode::GlobalJob as i32;
        }
        let v = serde_json::to_value(service(&s)).unwrap_or_default();
        assert_eq!(v["Spec"]["Mode"], serde_json::json!({"GlobalJob": {}}));
        assert_eq!(mode_name(ServiceMode::GlobalJob), "global job");
    }

    #[test]
    fn service_pretty_reads_like_docker() {
        let text = service_pretty(&web());
        for want in [
            "ID:",
            "Service Mode:",
            " Replicas:",
            " Constraints:",
            "[node.role==manager]",
            " Preferences:",
            "[Spread=node.labels.zone]",
            " Max Replicas Per Node:",
            " Args:",
            "sleep 10",
            "  Memory:",
            "64MiB",
            "  CPU:",
            "0.5",
        ] {
            assert!(text.contains(want), "{want:?} missing from\n{text}");
        }
        assert!(text.starts_with("ID:"), "{text}");
    }

    #[test]
    fn node_json_and_pretty() {
        let n = Node {
            id: "node1".into(),
            status: Some(shoal_proto::NodeStatus {
                state: NodeState::Ready as i32,
                message: String::new(),
                addr: "10.0.0.1".into(),
            }),
            manager_status: Some(shoal_proto::ManagerStatus {
                raft_id: 1,
                addr: "10.0.0.1:4242".into(),
                leader: true,
            }),
            ..Default::default()
        };
        let v = serde_json::to_value(node(&n)).unwrap_or_default();
        assert_eq!(v["Status"]["State"], "ready");
        assert_eq!(v["Spec"]["Role"], "worker");
        assert_eq!(v["ManagerStatus"]["Leader"], true);
        let text = node_pretty(&n);
        assert!(text.contains(" State:"), "{text}");
        assert!(text.contains("Ready"), "{text}");
        assert!(text.contains(" Leader:"), "{text}");
    }
}

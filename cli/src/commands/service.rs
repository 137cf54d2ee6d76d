//! `service create|ls|ps|inspect|scale|rm` (update, rollback and restart: [`super::update`];
//! logs: [`super::logs`]).

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};

use anyhow::{bail, Result};
use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;
use shoal_proto::names::{short_id, task_name};
use shoal_proto::{
    ContainerSpec, CreateServiceRequest, GetServiceRequest, ListServicesRequest,
    ListServicesResponse, ListTasksRequest, Placement, RemoveServiceRequest, Service, ServiceMode,
    ServiceSpec, Task, TaskSpec, TaskState, UpdateServiceRequest,
};

use super::logs::{self, LogsArgs};
use super::progress::{self, Op, WaitArgs};
use super::taskflags::{ResourceArgs, RestartArgs};
use super::update::{self, RollbackPolicyArgs, ServiceArg, UpdateArgs, UpdatePolicyArgs};
use super::{failures, print, print_blocks, print_lines, Format, LsArgs};
use crate::client::Client;
use crate::parse::{self, flag};
use crate::{format, view};

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Create a new service
    #[command(override_usage = "shoal service create [OPTIONS] IMAGE [COMMAND] [ARG...]")]
    Create(Box<CreateArgs>),
    /// Display detailed information on one or more services
    Inspect(InspectArgs),
    /// Fetch the logs of a service or task
    Logs(LogsArgs),
    /// List services
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// List the tasks of one or more services
    Ps(PsArgs),
    /// Remove one or more services
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Restart a service's tasks (an update with --force)
    Restart(ServiceArg),
    /// Revert changes to a service's configuration
    Rollback(ServiceArg),
    /// Scale one or more replicated services
    #[command(override_usage = "shoal service scale SERVICE=REPLICAS [SERVICE=REPLICAS...]")]
    Scale(ScaleArgs),
    /// Update a service
    Update(Box<UpdateArgs>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    Replicated,
    Global,
    /// Run the tasks to completion: --replicas completions, --max-concurrent at a time
    ReplicatedJob,
    /// Run one task to completion on every node
    GlobalJob,
}

/// `--endpoint-mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EndpointModeArg {
    Vip,
    Dnsrr,
}

impl EndpointModeArg {
    pub fn mode(self) -> i32 {
        let mode = match self {
            EndpointModeArg::Vip => shoal_proto::EndpointMode::Vip,
            EndpointModeArg::Dnsrr => shoal_proto::EndpointMode::Dnsrr,
        };
        mode as i32
    }
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Service name
    #[arg(long)]
    name: Option<String>,
    /// Send the registry credentials `docker login` saved to the nodes that run the tasks
    #[arg(long)]
    with_registry_auth: bool,
    /// Number of tasks (default 1)
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = flag(parse::replicas))]
    replicas: Option<u64>,
    /// Service mode
    #[arg(long, value_enum, default_value = "replicated")]
    mode: Mode,
    /// Number of job tasks to run at once (default equal to --replicas)
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = flag(parse::count))]
    max_concurrent: Option<u64>,
    /// Set environment variables
    #[arg(short, long = "env", value_name = "KEY=VALUE", value_parser = flag(parse::env_from_process))]
    env: Vec<String>,
    /// Service labels
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = flag(parse::key_value))]
    labels: Vec<(String, String)>,
    /// Container labels
    #[arg(long = "container-label", value_name = "KEY=VALUE", value_parser = flag(parse::key_value))]
    container_labels: Vec<(String, String)>,
    /// Placement constraints, e.g. node.hostname==n1
    #[arg(long = "constraint", value_name = "KEY==VALUE", value_parser = flag(parse::constraint))]
    constraints: Vec<String>,
    /// Add a placement preference, e.g. spread=node.labels.zone
    #[arg(long = "placement-pref", value_name = "spread=DESCRIPTOR", value_parser = flag(parse::placement_pref))]
    placement_prefs: Vec<String>,
    /// Maximum number of tasks per node (default 0 = unlimited)
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = flag(parse::count))]
    replicas_max_per_node: Option<u64>,
    /// Network attachments: NAME, or name=NAME,alias=ALIAS (repeatable)
    #[arg(long = "network", value_name = "NETWORK", value_parser = flag(parse::network))]
    networks: Vec<shoal_proto::NetworkAttachmentConfig>,
    /// A secret the tasks read at /run/secrets/TARGET: NAME, or
    /// source=NAME,target=T,uid=U,gid=G,mode=0440 (repeatable)
    #[arg(long = "secret", value_name = "SECRET", value_parser = flag(parse::file_reference))]
    secrets: Vec<shoal_proto::FileReference>,
    /// A config the tasks read at its target (default /NAME), same forms as --secret
    #[arg(long = "config", value_name = "CONFIG", value_parser = flag(parse::file_reference))]
    configs: Vec<shoal_proto::FileReference>,
    /// Endpoint mode: vip (one virtual IP) or dnsrr (DNS round robin)
    #[arg(long, value_enum, default_value = "vip")]
    endpoint_mode: EndpointModeArg,
    /// Publish a port: published=8080,target=80[,protocol=udp][,mode=host] or 8080:80
    #[arg(short = 'p', long = "publish", value_name = "PORT", value_parser = flag(parse::publish))]
    publish: Vec<shoal_proto::PortConfig>,
    #[command(flatten)]
    restart: RestartArgs,
    /// Signal to stop the container
    #[arg(long, value_name = "SIGNAL")]
    stop_signal: Option<String>,
    /// Time to wait before force killing a container, e.g. 10s
    #[arg(long, value_name = "DURATION", value_parser = flag(parse::duration_ms))]
    stop_grace_period: Option<i64>,
    #[command(flatten)]
    resources: ResourceArgs,
    #[command(flatten)]
    update: UpdatePolicyArgs,
    #[command(flatten)]
    rollback: RollbackPolicyArgs,
    #[command(flatten)]
    health: super::health::HealthArgs,
    #[command(flatten)]
    wait: WaitArgs,
    /// Image to run
    #[arg(value_name = "IMAGE")]
    image: String,
    /// Command and arguments, passed to the container as its arguments
    #[arg(
        value_name = "COMMAND",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Service names, ids or id prefixes
    #[arg(value_name = "SERVICE", required = true)]
    services: Vec<String>,
    #[command(flatten)]
    list: TaskListArgs,
}

/// How `service ps` and `node ps` list tasks.
#[derive(Debug, Args)]
pub struct TaskListArgs {
    /// Do not truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Only display task IDs
    #[arg(short, long)]
    quiet: bool,
    /// Filter output: desired-state=running|shutdown|accepted, id=, name=, node=
    #[arg(short, long = "filter", value_name = "KEY=VALUE", value_parser = flag(parse::filter))]
    pub filters: Vec<(String, String)>,
    /// Output format
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Service names, ids or id prefixes
    #[arg(value_name = "SERVICE", required = true)]
    services: Vec<String>,
    /// Print the information in a human friendly format
    #[arg(long)]
    pretty: bool,
    /// Output format: one JSON object per line
    #[arg(short, long, value_enum)]
    format: Option<Format>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Service names, ids or id prefixes
    #[arg(value_name = "SERVICE", required = true)]
    services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// SERVICE=REPLICAS pairs
    #[arg(value_name = "SERVICE=REPLICAS", required = true, value_parser = flag(parse::scale))]
    scales: Vec<(String, u64)>,
    #[command(flatten)]
    wait: WaitArgs,
}

pub async fn run(host: &str, command: ServiceCommand) -> Result<()> {
    match command {
        ServiceCommand::Create(args) => {
            // A mistake in the flags is reported before the daemon is asked anything.
            let spec = spec_from(&args)?;
            let mut client = Client::connect(host).await?;
            let resp = client
                .create_service(CreateServiceRequest { spec: Some(spec) })
                .await?;
            let id = resp.service.map(|s| s.id).unwrap_or_default();
            print(&id)?;
            progress::wait(&mut client, &id, Op::Update, None, &args.wait).await
        }
        ServiceCommand::Ls(args) => {
            let mut client = Client::connect(host).await?;
            let resp = client.list_services(ListServicesRequest {}).await?;
            print_services(&mut client, &resp, &args).await
        }
        ServiceCommand::Ps(args) => {
            let filters = Filters::new(&args.list.filters)?;
            let mut client = Client::connect(host).await?;
            ps(&mut client, &args, &filters).await
        }
        ServiceCommand::Inspect(args) => {
            let mut client = Client::connect(host).await?;
            inspect(&mut client, &args).await
        }
        ServiceCommand::Rm(args) => {
            let mut client = Client::connect(host).await?;
            let mut errors = Vec::new();
            for name in &args.services {
                let req = RemoveServiceRequest {
                    service: name.clone(),
                };
                match client.remove_service(req).await {
                    Ok(_) => print(name)?,
                    Err(e) => errors.push(e),
                }
            }
            failures(errors)
        }
        ServiceCommand::Logs(args) => logs::logs(host, &args).await,
        ServiceCommand::Update(args) => update::update(host, &args).await,
        ServiceCommand::Rollback(args) => update::rollback(host, &args).await,
        ServiceCommand::Restart(args) => update::restart(host, &args).await,
        ServiceCommand::Scale(args) => {
            let mut client = Client::connect(host).await?;
            let mut errors = Vec::new();
            let mut scaled = Vec::new();
            for (name, replicas) in &args.scales {
                match scale(&mut client, name, *replicas).await {
                    Ok(before) => {
                        print(&format!("{name} scaled to {replicas}"))?;
                        scaled.push((name, before));
                    }
                    Err(e) => errors.push(e),
                }
            }
            for (name, before) in scaled {
                if let Err(e) =
                    progress::wait(&mut client, name, Op::Update, before, &args.wait).await
                {
                    errors.push(e);
                }
            }
            failures(errors)
        }
    }
}

/// The spec `service create` sends: COMMAND and ARGs become the container's args, as
/// docker does, leaving the image's entrypoint in place.
fn spec_from(args: &CreateArgs) -> Result<ServiceSpec> {
    let replicas = match (args.mode, args.replicas) {
        (Mode::Global, Some(_)) => {
            bail!("--replicas can only be used with replicated mode")
        }
        (Mode::GlobalJob, Some(_)) => {
            bail!("--replicas can only be used with replicated-job mode")
        }
        (Mode::Global | Mode::GlobalJob, None) => 0,
        (Mode::Replicated | Mode::ReplicatedJob, n) => n.unwrap_or(1),
    };
    if matches!(args.mode, Mode::Global | Mode::GlobalJob) && args.replicas_max_per_node.is_some() {
        bail!("--replicas-max-per-node can only be used with replicated mode");
    }
    if args.max_concurrent.is_some() && args.mode != Mode::ReplicatedJob {
        bail!("--max-concurrent can only be used with replicated-job mode");
    }
    let max_replicas = args.replicas_max_per_node.unwrap_or(0);
    Ok(ServiceSpec {
        name: args.name.clone().unwrap_or_default(),
        labels: args.labels.iter().cloned().collect(),
        task: Some(TaskSpec {
            container: Some(ContainerSpec {
                image: args.image.clone(),
                command: Vec::new(),
                args: args.args.clone(),
                env: args.env.clone(),
                labels: args.container_labels.iter().cloned().collect(),
                stop_signal: args.stop_signal.clone().unwrap_or_default(),
                stop_grace_period_ms: args.stop_grace_period,
                healthcheck: args.health.healthcheck(),
                secrets: args.secrets.clone(),
                configs: args.configs.clone(),
                registry_auth: if args.with_registry_auth {
                    crate::registry_auth::for_image(&args.image)?
                } else {
                    None
                },
                ..Default::default()
            }),
            limits: args.resources.limits(None),
            reservations: args.resources.reservations(None),
            restart: args.restart.apply(None),
            placement: (!args.constraints.is_empty()
                || !args.placement_prefs.is_empty()
                || max_replicas > 0)
                .then(|| Placement {
                    constraints: args.constraints.clone(),
                    max_replicas,
                    spread: args.placement_prefs.clone(),
                }),
            networks: args.networks.clone(),
        }),
        mode: match args.mode {
            Mode::Replicated => ServiceMode::Replicated,
            Mode::Global => ServiceMode::Global,
            Mode::ReplicatedJob => ServiceMode::ReplicatedJob,
            Mode::GlobalJob => ServiceMode::GlobalJob,
        } as i32,
        replicas,
        update: update::apply_policy("update", None, &args.update.flags())?,
        rollback: update::apply_policy("rollback", None, &args.rollback.flags())?,
        force_update: 0,
        max_concurrent: args.max_concurrent.unwrap_or(0),
        endpoint: Some(shoal_proto::EndpointSpec {
            mode: args.endpoint_mode.mode(),
            ports: args.publish.clone(),
        }),
        depends_on: Vec::new(),
    })
}

/// docker's PORTS cell: `*:8080->80/tcp`, `10.0.0.5:53->53/udp`, comma-separated.
fn ports_of(ports: &[shoal_proto::PortConfig]) -> String {
    ports
        .iter()
        .map(|p| {
            let ip = if p.host_ip.is_empty() {
                "*"
            } else {
                p.host_ip.as_str()
            };
            format!(
                "{ip}:{}->{}/{}",
                p.published_port,
                p.target_port,
                p.protocol_name()
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn json_lines<T: Serialize>(rows: &[T]) -> Result<Vec<String>> {
    rows.iter().map(format::json_line).collect()
}

fn image_of(spec: Option<&TaskSpec>) -> &str {
    spec.and_then(|t| t.container.as_ref())
        .map_or("", |c| c.image.as_str())
}

/// A `service ls` row; serialized with docker's `--format json` field names.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
struct ServiceRow {
    #[serde(rename = "ID")]
    id: String,
    image: String,
    mode: String,
    name: String,
    ports: String,
    replicas: String,
}

impl ServiceRow {
    fn cells(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.name.clone(),
            self.mode.clone(),
            self.replicas.clone(),
            self.image.clone(),
            self.ports.clone(),
        ]
    }
}

fn is_job(mode: ServiceMode) -> bool {
    matches!(mode, ServiceMode::ReplicatedJob | ServiceMode::GlobalJob)
}

/// Jobs' tasks of the current iteration running now, by service id (`service ls` shows
/// them beside the completions, which `ListServices` counts).
/// `service ls` of the services in `resp`.
pub async fn print_services(
    client: &mut Client,
    resp: &ListServicesResponse,
    args: &LsArgs,
) -> Result<()> {
    let running = job_tasks_running(client, resp).await?;
    let rows = service_rows(resp, &running);
    if args.quiet {
        return print_lines(&rows.into_iter().map(|r| r.id).collect::<Vec<_>>());
    }
    match args.format {
        Format::Json => print_lines(&json_lines(&rows)?),
        Format::Table => print(&format::table(
            &["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"],
            &rows.iter().map(ServiceRow::cells).collect::<Vec<_>>(),
        )),
    }
}

async fn job_tasks_running(
    client: &mut Client,
    resp: &ListServicesResponse,
) -> Result<HashMap<String, u64>> {
    let mut running = HashMap::new();
    for s in resp.services.iter().filter(|s| is_job(s.mode())) {
        let iteration = s.job_status.as_ref().map_or(0, |j| j.iteration);
        let tasks = client
            .list_tasks(ListTasksRequest {
                service: s.id.clone(),
                node: String::new(),
            })
            .await?
            .tasks;
        let n = tasks
            .iter()
            .filter(|t| {
                t.job_iteration == iteration
                    && t.desired() == TaskState::Running
                    && t.state() == TaskState::Running
            })
            .count();
        running.insert(s.id.clone(), n as u64);
    }
    Ok(running)
}

/// `service ls` rows, by name. REPLICAS is "running/desired" for services and, for jobs,
/// "R running, C/T completed": R tasks of the current run running now, C of its T
/// completions done (T: --replicas, or the eligible nodes of a global job).
fn service_rows(
    resp: &ListServicesResponse,
    job_running: &HashMap<String, u64>,
) -> Vec<ServiceRow> {
    let mut services: Vec<&Service> = resp.services.iter().collect();
    services.sort_by(|a, b| format::natural_cmp(a.name(), b.name()).then(a.id.cmp(&b.id)));
    services
        .into_iter()
        .map(|s| {
            let desired = match s.mode() {
                ServiceMode::Replicated | ServiceMode::ReplicatedJob => {
                    s.spec.as_ref().map_or(0, |spec| spec.replicas)
                }
                ServiceMode::Global | ServiceMode::GlobalJob => 0,
            };
            let (running, desired) = resp
                .replicas
                .get(&s.id)
                .map_or((0, desired), |r| (r.running, r.desired));
            let replicas = if is_job(s.mode()) {
                let now = job_running.get(&s.id).copied().unwrap_or(0);
                format!("{now} running, {running}/{desired} completed")
            } else {
                format!("{running}/{desired}")
            };
            ServiceRow {
                id: short_id(&s.id).to_string(),
                image: format::image(
                    image_of(s.spec.as_ref().and_then(|sp| sp.task.as_ref())),
                    false,
                )
                .to_string(),
                mode: view::mode_name(s.mode()).to_string(),
                name: s.name().to_string(),
                ports: String::new(),
                replicas,
            }
        })
        .collect()
}

/// `service ps --filter`: values of one key are alternatives, keys must all match.
#[derive(Debug, Default)]
pub struct Filters {
    desired: Vec<TaskState>,
    ids: Vec<String>,
    names: Vec<String>,
    nodes: Vec<String>,
}

impl Filters {
    pub fn new(pairs: &[(String, String)]) -> Result<Self> {
        let mut f = Self::default();
        for (key, value) in pairs {
            match key.as_str() {
                "desired-state" => f.desired.push(match value.to_ascii_lowercase().as_str() {
                    "running" => TaskState::Running,
                    "shutdown" => TaskState::Shutdown,
                    "accepted" => TaskState::Accepted,
                    "ready" => TaskState::Ready,
                    _ => bail!(
                        "invalid filter 'desired-state={value}': use running, shutdown, accepted or ready"
                    ),
                }),
                "id" => f.ids.push(value.clone()),
                "name" => f.names.push(value.clone()),
                "node" => f.nodes.push(value.clone()),
                _ => bail!("invalid filter '{key}': use desired-state, id, name or node"),
            }
        }
        Ok(f)
    }

    fn keep(&self, task: &Task, name: &str, node_name: &str) -> bool {
        let any = |values: &[String], pred: &dyn Fn(&str) -> bool| {
            values.is_empty() || values.iter().any(|v| pred(v))
        };
        (self.desired.is_empty() || self.desired.contains(&task.desired()))
            && any(&self.ids, &|v| task.id.starts_with(v))
            && any(&self.names, &|v| name.starts_with(v))
            && any(&self.nodes, &|v| {
                (!task.node_id.is_empty() && task.node_id.starts_with(v)) || node_name == v
            })
    }
}

/// A `service ps` row; serialized with docker's `--format json` field names.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
struct TaskRow {
    current_state: String,
    desired_state: String,
    error: String,
    #[serde(rename = "ID")]
    id: String,
    image: String,
    name: String,
    node: String,
    ports: String,
    /// Its addresses, as Swarm's task `NetworksAttachments` (JSON only).
    #[serde(rename = "NetworksAttachments", skip_serializing_if = "Vec::is_empty")]
    networks: Vec<AttachmentRow>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
struct AttachmentRow {
    #[serde(rename = "NetworkID")]
    network_id: String,
    addresses: Vec<String>,
}

impl TaskRow {
    fn cells(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.name.clone(),
            self.image.clone(),
            self.node.clone(),
            self.desired_state.clone(),
            self.current_state.clone(),
            self.error.clone(),
            self.ports.clone(),
        ]
    }
}

/// How a task list is printed.
struct TaskView<'a> {
    node_names: &'a HashMap<String, String>,
    /// Service id -> name, for tasks that do not carry their service's name.
    service_names: &'a HashMap<String, String>,
    no_trunc: bool,
    /// Tables mark history rows with ` \_ `; JSON keeps the plain name.
    indent: bool,
    now_ms: i64,
}

impl TaskView<'_> {
    fn name(&self, t: &Task) -> String {
        let service = if t.service_name.is_empty() {
            self.service_names
                .get(&t.service_id)
                .map_or(t.service_id.as_str(), String::as_str)
        } else {
            t.service_name.as_str()
        };
        task_name(service, t.slot, &t.node_id)
    }

    fn node(&self, t: &Task) -> String {
        match self.node_names.get(&t.node_id) {
            Some(host) if !host.is_empty() => host.clone(),
            _ => short_id(&t.node_id).to_string(),
        }
    }

    /// Sorts as docker does: by task name, naturally, and within a slot newest first.
    fn sort(&self, tasks: &mut [Task]) {
        tasks.sort_by_cached_key(|t| {
            (
                NaturalKey(self.name(t)),
                Reverse(t.meta.as_ref().map_or(0, |m| m.created_at_ms)),
                Reverse(t.version()),
            )
        });
    }

    /// Rows for tasks sorted by [`TaskView::sort`].
    fn rows(&self, tasks: &[Task]) -> Vec<TaskRow> {
        let mut previous = String::new();
        tasks
            .iter()
            .map(|t| {
                let name = self.name(t);
                let shown = if self.indent && name == previous {
                    format!(" \\_ {name}")
                } else {
                    name.clone()
                };
                previous = name;
                let status = t.status.clone().unwrap_or_default();
                TaskRow {
                    current_state: format::with_progress(
                        format::current_state(
                            t.state().docker_name(),
                            &status.health,
                            status.timestamp_ms,
                            self.now_ms,
                        ),
                        t.state().docker_name(),
                        &status.message,
                    ),
                    // A job's task is meant to complete, as docker shows it.
                    desired_state: if t.job_iteration > 0 && t.desired() == TaskState::Running {
                        "Complete".to_string()
                    } else {
                        format::capitalize(t.desired().docker_name())
                    },
                    error: format::task_error(&status.err, self.no_trunc),
                    id: if self.no_trunc {
                        t.id.clone()
                    } else {
                        short_id(&t.id).to_string()
                    },
                    image: format::image(image_of(t.spec.as_ref()), self.no_trunc).to_string(),
                    name: shown,
                    node: self.node(t),
                    ports: ports_of(&t.ports),
                    networks: t
                        .networks
                        .iter()
                        .map(|a| AttachmentRow {
                            network_id: a.network_id.clone(),
                            addresses: a.addresses.clone(),
                        })
                        .collect(),
                }
            })
            .collect()
    }
}

/// A string ordered naturally ("web.2" < "web.10").
#[derive(PartialEq, Eq)]
struct NaturalKey(String);

impl Ord for NaturalKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        format::natural_cmp(&self.0, &other.0)
    }
}

impl PartialOrd for NaturalKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

async fn ps(client: &mut Client, args: &PsArgs, filters: &Filters) -> Result<()> {
    print_service_tasks(client, &args.services, &args.list, filters).await
}

/// `service ps` of `services` (names, ids or prefixes), each once.
pub async fn print_service_tasks(
    client: &mut Client,
    services: &[String],
    list: &TaskListArgs,
    filters: &Filters,
) -> Result<()> {
    let mut tasks = Vec::new();
    let mut node_names = HashMap::new();
    let mut service_names = HashMap::new();
    let mut seen = HashSet::new();
    for name in services {
        // Resolves the name first, so a missing service is an error and not an empty list.
        let service = client
            .get_service(GetServiceRequest {
                service: name.clone(),
            })
            .await?
            .service
            .unwrap_or_default();
        if !seen.insert(service.id.clone()) {
            continue;
        }
        service_names.insert(service.id.clone(), service.name().to_string());
        let resp = client
            .list_tasks(ListTasksRequest {
                service: service.id.clone(),
                node: String::new(),
            })
            .await?;
        tasks.extend(resp.tasks);
        node_names.extend(resp.node_names);
    }
    print_tasks(tasks, &node_names, &service_names, list, filters)
}

/// Prints tasks as `service ps` and `node ps` do: filtered, sorted by name with each
/// slot's history under it, as a table, JSON lines, or ids.
pub fn print_tasks(
    mut tasks: Vec<Task>,
    node_names: &HashMap<String, String>,
    service_names: &HashMap<String, String>,
    args: &TaskListArgs,
    filters: &Filters,
) -> Result<()> {
    let table = args.format == Format::Table && !args.quiet;
    let view = TaskView {
        node_names,
        service_names,
        no_trunc: args.no_trunc,
        indent: table,
        now_ms: format::now_ms(),
    };
    tasks.retain(|t| filters.keep(t, &view.name(t), &view.node(t)));
    view.sort(&mut tasks);
    let rows = view.rows(&tasks);
    if args.quiet {
        return print_lines(&rows.into_iter().map(|r| r.id).collect::<Vec<_>>());
    }
    match args.format {
        Format::Json => print_lines(&json_lines(&rows)?),
        Format::Table => print(&format::table(
            &[
                "ID",
                "NAME",
                "IMAGE",
                "NODE",
                "DESIRED STATE",
                "CURRENT STATE",
                "ERROR",
                "PORTS",
            ],
            &rows.iter().map(TaskRow::cells).collect::<Vec<_>>(),
        )),
    }
}

async fn inspect(client: &mut Client, args: &InspectArgs) -> Result<()> {
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for name in &args.services {
        let req = GetServiceRequest {
            service: name.clone(),
        };
        match client.get_service(req).await {
            Ok(resp) => found.extend(resp.service),
            Err(e) => errors.push(e),
        }
    }
    if args.pretty {
        print_blocks(&found.iter().map(view::service_pretty).collect::<Vec<_>>())?;
    } else if args.format == Some(Format::Json) {
        print_lines(&json_lines(
            &found.iter().map(view::service).collect::<Vec<_>>(),
        )?)?;
    } else {
        let views: Vec<_> = found.iter().map(view::service).collect();
        print(&format::json_pretty(&views)?)?;
    }
    failures(errors)
}

/// `service scale NAME=N`: a read, then a write guarded by the version read.
/// Sets the replicas; the update status before the write.
async fn scale(
    client: &mut Client,
    name: &str,
    replicas: u64,
) -> Result<Option<shoal_proto::UpdateStatus>> {
    let service = client
        .get_service(GetServiceRequest {
            service: name.to_string(),
        })
        .await?
        .service
        .unwrap_or_default();
    if matches!(service.mode(), ServiceMode::Global | ServiceMode::GlobalJob) {
        bail!("{name}: scale can only be used with replicated or replicated-job mode");
    }
    let mut spec = service.spec.clone().unwrap_or_default();
    spec.replicas = replicas;
    client
        .update_service(UpdateServiceRequest {
            service: service.id.clone(),
            version: service.version(),
            spec: Some(spec),
        })
        .await?;
    Ok(service.update_status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Cli;
    use clap::Parser;
    use shoal_proto::{Meta, ReplicaCount, TaskStatus};
    use shoal_proto::{Resources, RestartCondition, RestartPolicy};

    fn create(argv: &[&str]) -> Result<ServiceSpec, String> {
        let mut full = vec!["shoal", "service", "create"];
        full.extend_from_slice(argv);
        let cli = Cli::try_parse_from(full).map_err(|e| e.to_string())?;
        match cli.command {
            crate::Command::Service(ServiceCommand::Create(args)) => {
                spec_from(&args).map_err(|e| e.to_string())
            }
            _ => Err("not a create".into()),
        }
    }

    #[test]
    fn create_builds_the_spec() {
        let spec = create(&[
            "--name",
            "web",
            "--replicas",
            "3",
            "-e",
            "A=1",
            "--label",
            "tier=front",
            "--container-label",
            "c=d",
            "--constraint",
            "node.role==manager",
            "--restart-condition",
            "on-failure",
            "--restart-delay",
            "1m30s",
            "--restart-max-attempts",
            "4",
            "--restart-window",
            "500ms",
            "--stop-signal",
            "SIGINT",
            "--stop-grace-period",
            "20s",
            "--reserve-cpu",
            "0.5",
            "--reserve-memory",
            "64M",
            "--limit-memory",
            "1g",
            "--network",
            "front",
            "--network",
            "name=back,alias=api,alias=v1",
            "--endpoint-mode",
            "dnsrr",
            "-d",
            "nginx:1",
            "sleep",
            "-x",
            "100",
        ]);
        let want = ServiceSpec {
            name: "web".into(),
            labels: HashMap::from([("tier".into(), "front".into())]),
            task: Some(TaskSpec {
                container: Some(ContainerSpec {
                    image: "nginx:1".into(),
                    command: vec![],
                    args: vec!["sleep".into(), "-x".into(), "100".into()],
                    env: vec!["A=1".into()],
                    labels: HashMap::from([("c".into(), "d".into())]),
                    stop_signal: "SIGINT".into(),
                    stop_grace_period_ms: Some(20_000),
                    healthcheck: None,
                    ..Default::default()
                }),
                limits: Some(Resources {
                    nano_cpus: 0,
                    memory_bytes: 1 << 30,
                }),
                reservations: Some(Resources {
                    nano_cpus: 500_000_000,
                    memory_bytes: 64 << 20,
                }),
                restart: Some(RestartPolicy {
                    condition: RestartCondition::OnFailure as i32,
                    delay_ms: Some(90_000),
                    max_attempts: 4,
                    window_ms: 500,
                }),
                placement: Some(Placement {
                    constraints: vec!["node.role==manager".into()],
                    ..Default::default()
                }),
                networks: vec![
                    shoal_proto::NetworkAttachmentConfig {
                        target: "front".into(),
                        aliases: vec![],
                    },
                    shoal_proto::NetworkAttachmentConfig {
                        target: "back".into(),
                        aliases: vec!["api".into(), "v1".into()],
                    },
                ],
            }),
            mode: ServiceMode::Replicated as i32,
            replicas: 3,
            endpoint: Some(shoal_proto::EndpointSpec {
                mode: shoal_proto::EndpointMode::Dnsrr as i32,
                ports: vec![],
            }),
            ..Default::default()
        };
        assert!(create(&[]).is_err());
        assert_eq!(spec, Ok(want));
    }

    #[test]
    fn create_placement_preferences_and_maximum() {
        let spec = create(&[
            "--placement-pref",
            "spread=node.labels.zone",
            "--placement-pref",
            "spread=node.labels.rack",
            "--replicas-max-per-node",
            "2",
            "alpine",
        ])
        .unwrap_or_default();
        assert_eq!(
            spec.task.and_then(|t| t.placement),
            Some(Placement {
                constraints: vec![],
                max_replicas: 2,
                spread: vec!["node.labels.zone".into(), "node.labels.rack".into()],
            })
        );
    }

    #[test]
    fn create_defaults() {
        let spec = create(&["alpine"]).unwrap_or_default();
        assert_eq!(spec.replicas, 1);
        let task = spec.task.unwrap_or_default();
        assert_eq!(task.restart, None);
        assert_eq!(task.reservations, None);
        assert_eq!(task.placement, None);
        let global = create(&["--mode", "global", "alpine"]).unwrap_or_default();
        assert_eq!(global.mode, ServiceMode::Global as i32);
        assert_eq!(global.replicas, 0);
    }

    #[test]
    fn create_rejects_bad_flags() {
        let cases: &[(&[&str], &str)] = &[
            (
                &["--replicas", "-1", "img"],
                r#"invalid replica count "-1" for --replicas"#,
            ),
            (
                &["--replicas", "abc", "img"],
                r#"invalid replica count "abc" for --replicas"#,
            ),
            (
                &["--restart-delay", "5x", "img"],
                r#"invalid duration "5x" for --restart-delay: use a number with a unit, e.g. 5s or 1m30s"#,
            ),
            (
                &["--reserve-memory", "64X", "img"],
                r#"invalid memory size "64X" for --reserve-memory"#,
            ),
            (
                &["--reserve-cpu", "-1", "img"],
                r#"invalid CPU count "-1" for --reserve-cpu"#,
            ),
            (
                &["--constraint", "node.hostname=n1", "img"],
                "invalid constraint",
            ),
            (&["--mode", "both", "img"], "invalid value 'both'"),
            (
                &["--placement-pref", "node.labels.zone", "img"],
                r#"invalid placement preference "node.labels.zone" for --placement-pref: use spread=node.labels.NAME or spread=engine.labels.NAME"#,
            ),
            (
                &["--replicas-max-per-node", "-1", "img"],
                r#"invalid number "-1" for --replicas-max-per-node"#,
            ),
            (
                &["--mode", "global", "--replicas-max-per-node", "1", "img"],
                "--replicas-max-per-node can only be used with replicated mode",
            ),
            (
                &["--mode", "global", "--replicas", "2", "img"],
                "--replicas can only be used with replicated mode",
            ),
        ];
        for (argv, want) in cases {
            let err = create(argv).err().unwrap_or_default();
            assert!(err.contains(want), "{argv:?}: {err}");
        }
    }

    fn service(id: &str, name: &str, mode: ServiceMode, replicas: u64) -> Service {
        Service {
            id: id.into(),
            spec: Some(ServiceSpec {
                name: name.into(),
                mode: mode as i32,
                replicas,
                task: Some(TaskSpec {
                    container: Some(ContainerSpec {
                        image: "nginx:1@sha256:abc".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn service_ls_rows() {
        let resp = ListServicesResponse {
            services: vec![
                service("zzzzzzzzzzzzzzzz", "web", ServiceMode::Replicated, 3),
                service("aaaaaaaaaaaaaaaa", "agent", ServiceMode::Global, 0),
            ],
            replicas: HashMap::from([(
                "zzzzzzzzzzzzzzzz".to_string(),
                ReplicaCount {
                    running: 2,
                    desired: 3,
                },
            )]),
        };
        let rows: Vec<Vec<String>> = service_rows(&resp, &HashMap::new())
            .iter()
            .map(ServiceRow::cells)
            .collect();
        assert_eq!(
            rows,
            [
                ["aaaaaaaaaaaa", "agent", "global", "0/0", "nginx:1", ""],
                ["zzzzzzzzzzzz", "web", "replicated", "2/3", "nginx:1", ""],
            ]
        );
        let json = format::json_line(&service_rows(&resp, &HashMap::new())[1]).unwrap_or_default();
        assert_eq!(
            json,
            r#"{"ID":"zzzzzzzzzzzz","Image":"nginx:1","Mode":"replicated","Name":"web","Ports":"","Replicas":"2/3"}"#
        );
    }

    fn task(
        id: &str,
        slot: u64,
        created: i64,
        desired: TaskState,
        state: TaskState,
        err: &str,
    ) -> Task {
        Task {
            id: id.into(),
            meta: Some(Meta {
                version: 1,
                created_at_ms: created,
                updated_at_ms: created,
                ..Default::default()
            }),
            service_id: "svc".into(),
            service_name: "web".into(),
            slot,
            node_id: "node-1-id".into(),
            spec: Some(TaskSpec {
                container: Some(ContainerSpec {
                    image: "shoal-test/nope:1".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            desired_state: desired as i32,
            status: Some(TaskStatus {
                state: state as i32,
                err: err.into(),
                timestamp_ms: created,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn service_ps_rows_show_history_under_each_slot() {
        let now = 100_000;
        let mut tasks = vec![
            task(
                "t-old-1-aaaaaaaa",
                1,
                90_000,
                TaskState::Shutdown,
                TaskState::Rejected,
                "image shoal-test/nope:1 not found: pull access denied",
            ),
            task(
                "t-2-bbbbbbbbbbbb",
                2,
                97_000,
                TaskState::Running,
                TaskState::Pending,
                "",
            ),
            task(
                "t-10-cccccccccccc",
                10,
                95_000,
                TaskState::Running,
                TaskState::Running,
                "",
            ),
            task(
                "t-new-1-dddddddd",
                1,
                98_000,
                TaskState::Running,
                TaskState::Rejected,
                "image shoal-test/nope:1 not found",
            ),
        ];
        let node_names = HashMap::from([("node-1-id".to_string(), "n1".to_string())]);
        let service_names = HashMap::new();
        let view = TaskView {
            node_names: &node_names,
            service_names: &service_names,
            no_trunc: false,
            indent: true,
            now_ms: now,
        };
        view.sort(&mut tasks);
        let rows: Vec<Vec<String>> = view.rows(&tasks).iter().map(TaskRow::cells).collect();
        let want = [
            [
                "t-new-1-dddd",
                "web.1",
                "shoal-test/nope:1",
                "n1",
                "Running",
                "Rejected 2 seconds ago",
                "\"image shoal-test/nope:1 not f…\"",
                "",
            ],
            [
                "t-old-1-aaaa",
                " \\_ web.1",
                "shoal-test/nope:1",
                "n1",
                "Shutdown",
                "Rejected 10 seconds ago",
                "\"image shoal-test/nope:1 not f…\"",
                "",
            ],
            [
                "t-2-bbbbbbbb",
                "web.2",
                "shoal-test/nope:1",
                "n1",
                "Running",
                "Pending 3 seconds ago",
                "",
                "",
            ],
            [
                "t-10-ccccccc",
                "web.10",
                "shoal-test/nope:1",
                "n1",
                "Running",
                "Running 5 seconds ago",
                "",
                "",
            ],
        ];
        assert_eq!(rows, want);
    }

    #[test]
    fn service_ps_filters() {
        let running = task("t1", 1, 1, TaskState::Running, TaskState::Running, "");
        let shutdown = task("t2", 1, 1, TaskState::Shutdown, TaskState::Failed, "");
        let filters = |pairs: &[(&str, &str)]| {
            let pairs: Vec<(String, String)> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Filters::new(&pairs)
        };
        // Filters, then whether the running and the shut-down task are kept.
        type Case<'a> = (&'a [(&'a str, &'a str)], bool, bool);
        let cases: &[Case] = &[
            (&[], true, true),
            (&[("desired-state", "running")], true, false),
            (&[("desired-state", "shutdown")], false, true),
            (
                &[("desired-state", "running"), ("desired-state", "shutdown")],
                true,
                true,
            ),
            (&[("node", "n1")], true, true),
            (&[("node", "node-1")], true, true),
            (&[("node", "n2")], false, false),
            (&[("id", "t1")], true, false),
            (&[("name", "web.1")], true, true),
        ];
        for (pairs, keep_running, keep_shutdown) in cases {
            let f = filters(pairs).unwrap_or_default();
            assert_eq!(f.keep(&running, "web.1", "n1"), *keep_running, "{pairs:?}");
            assert_eq!(
                f.keep(&shutdown, "web.1", "n1"),
                *keep_shutdown,
                "{pairs:?}"
            );
        }
        assert!(filters(&[("desired-state", "sleeping")]).is_err());
        assert!(filters(&[("colour", "red")]).is_err());
    }

    #[test]
    fn create_jobs() {
        let job = create(&[
            "--mode",
            "replicated-job",
            "--replicas",
            "6",
            "--max-concurrent",
            "2",
            "alpine",
        ])
        .unwrap_or_default();
        assert_eq!(job.mode, ServiceMode::ReplicatedJob as i32);
        assert_eq!((job.replicas, job.max_concurrent), (6, 2));
        let one = create(&["--mode", "replicated-job", "alpine"]).unwrap_or_default();
        assert_eq!(
            (one.replicas, one.max_concurrent),
            (1, 0),
            "one completion by default"
        );
        let global = create(&["--mode", "global-job", "alpine"]).unwrap_or_default();
        assert_eq!(global.mode, ServiceMode::GlobalJob as i32);
        assert_eq!(global.replicas, 0);
        let cases: &[(&[&str], &str)] = &[
            (
                &["--max-concurrent", "2", "img"],
                "--max-concurrent can only be used with replicated-job mode",
            ),
            (
                &["--mode", "global-job", "--max-concurrent", "2", "img"],
                "--max-concurrent can only be used with replicated-job mode",
            ),
            (
                &["--mode", "global-job", "--replicas", "2", "img"],
                "--replicas can only be used with replicated-job mode",
            ),
            (
                &["--mode", "replicated-job", "--max-concurrent", "-1", "img"],
                r#"invalid number "-1" for --max-concurrent"#,
            ),
            (&["--mode", "job", "img"], "invalid value 'job'"),
        ];
        for (argv, want) in cases {
            let err = create(argv).err().unwrap_or_default();
            assert!(err.contains(want), "{argv:?}: {err}");
        }
    }

    #[test]
    fn service_ls_rows_of_jobs() {
        let resp = ListServicesResponse {
            services: vec![
                service("jjjjjjjjjjjjjjjj", "batch", ServiceMode::ReplicatedJob, 6),
                service("gggggggggggggggg", "sweep", ServiceMode::GlobalJob, 0),
            ],
            replicas: HashMap::from([
                (
                    "jjjjjjjjjjjjjjjj".to_string(),
                    ReplicaCount {
                        running: 4,
                        desired: 6,
                    },
                ),
                (
                    "gggggggggggggggg".to_string(),
                    ReplicaCount {
                        running: 3,
                        desired: 3,
                    },
                ),
            ]),
        };
        let running = HashMap::from([("jjjjjjjjjjjjjjjj".to_string(), 2)]);
        let rows: Vec<Vec<String>> = service_rows(&resp, &running)
            .iter()
            .map(ServiceRow::cells)
            .collect();
        assert_eq!(
            rows,
            [
                [
                    "jjjjjjjjjjjj",
                    "batch",
                    "replicated job",
                    "2 running, 4/6 completed",
                    "nginx:1",
                    ""
                ],
                [
                    "gggggggggggg",
                    "sweep",
                    "global job",
                    "0 running, 3/3 completed",
                    "nginx:1",
                    ""
                ],
            ]
        );
    }

    #[test]
    fn service_ps_shows_completed_job_tasks() {
        let mut tasks = vec![task(
            "t-done-aaaaaaaaa",
            1,
            90_000,
            TaskState::Running,
            TaskState::Complete,
            "",
        )];
        let node_names = HashMap::from([("node-1-id".to_string(), "n1".to_string())]);
        let service_names = HashMap::new();
        let view = TaskView {
            node_names: &node_names,
            service_names: &service_names,
            no_trunc: false,
            indent: true,
            now_ms: 100_000,
        };
        view.sort(&mut tasks);
        let rows: Vec<Vec<String>> = view.rows(&tasks).iter().map(TaskRow::cells).collect();
        assert_eq!(rows[0][4], "Running", "not a job's task");
        assert_eq!(rows[0][5], "Complete 10 seconds ago");
        tasks[0].job_iteration = 1;
        let rows: Vec<Vec<String>> = view.rows(&tasks).iter().map(TaskRow::cells).collect();
        assert_eq!(rows[0][4], "Complete", "a job's task is meant to complete");
    }
}

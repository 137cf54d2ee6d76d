//! `node ls|inspect|ps|update|promote|demote|rm`.

use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;
use shoal_proto::{
    Availability, GetNodeRequest, InfoRequest, ListNodesRequest, ListTasksRequest, Node, NodeRole,
    NodeSpec, NodeState, RemoveNodeRequest, TaskState, UpdateNodeRequest,
};

use super::service::{print_tasks, Filters, TaskListArgs};
use super::{failures, print, print_blocks, print_lines, Format, LsArgs};
use crate::client::Client;
use crate::parse::{self, flag};
use crate::{format, view};

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// List nodes in the swarm
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more nodes
    Inspect(InspectArgs),
    /// List tasks running on one or more nodes, defaults to the current node
    Ps(PsArgs),
    /// Update a node
    Update(UpdateArgs),
    /// Promote one or more nodes to manager in the swarm
    Promote(NodesArgs),
    /// Demote one or more nodes from manager in the swarm
    Demote(NodesArgs),
    /// Remove one or more nodes from the swarm
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AvailabilityArg {
    Active,
    Pause,
    Drain,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    Manager,
    Worker,
}

impl From<RoleArg> for NodeRole {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Manager => NodeRole::Manager,
            RoleArg::Worker => NodeRole::Worker,
        }
    }
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Availability of the node
    #[arg(long, value_enum)]
    availability: Option<AvailabilityArg>,
    /// Add or update a node label
    #[arg(long = "label-add", value_name = "KEY=VALUE", value_parser = flag(parse::key_value))]
    label_add: Vec<(String, String)>,
    /// Remove a node label if exists
    #[arg(long = "label-rm", value_name = "KEY", value_parser = flag(parse::label_key))]
    label_rm: Vec<String>,
    /// Role of the node
    #[arg(long, value_enum)]
    role: Option<RoleArg>,
    /// With --availability drain: return once no task is meant to run on the node
    #[arg(long)]
    wait: bool,
    /// How long --wait waits, e.g. 10m
    #[arg(long, value_name = "DURATION", default_value = "5m", requires = "wait",
        value_parser = flag(parse::duration))]
    timeout: Duration,
    /// Node id, hostname or id prefix
    #[arg(value_name = "NODE")]
    node: String,
}

#[derive(Debug, Args)]
pub struct NodesArgs {
    /// Node ids, hostnames or id prefixes
    #[arg(value_name = "NODE", required = true)]
    nodes: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Force remove a node from the swarm
    #[arg(short, long)]
    force: bool,
    /// Node ids, hostnames or id prefixes
    #[arg(value_name = "NODE", required = true)]
    nodes: Vec<String>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Node ids, hostnames or id prefixes ("self" for this node)
    #[arg(value_name = "NODE", required = true)]
    nodes: Vec<String>,
    /// Print the information in a human friendly format
    #[arg(long)]
    pretty: bool,
    /// Output format: one JSON object per line
    #[arg(short, long, value_enum)]
    format: Option<Format>,
}

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Node names, ids or id prefixes ("self": this node)
    #[arg(value_name = "NODE", default_value = "self")]
    nodes: Vec<String>,
    #[command(flatten)]
    list: TaskListArgs,
}

pub async fn run(host: &str, command: NodeCommand) -> Result<()> {
    let mut client = Client::connect(host).await?;
    match command {
        NodeCommand::Ls(args) => ls(&mut client, args).await,
        NodeCommand::Ps(args) => ps(&mut client, &args).await,
        NodeCommand::Inspect(args) => inspect(&mut client, args).await,
        NodeCommand::Update(args) => update(&mut client, args).await,
        NodeCommand::Promote(args) => set_roles(&mut client, &args.nodes, NodeRole::Manager).await,
        NodeCommand::Demote(args) => set_roles(&mut client, &args.nodes, NodeRole::Worker).await,
        NodeCommand::Rm(args) => {
            let mut errors = Vec::new();
            for name in &args.nodes {
                let req = RemoveNodeRequest {
                    node: name.clone(),
                    force: args.force,
                };
                match client.remove_node(req).await {
                    Ok(_) => print(name)?,
                    Err(e) => errors.push(e),
                }
            }
            failures(errors)
        }
    }
}

/// How often `node update --wait` looks at the node's tasks.
const WAIT_POLL: Duration = Duration::from_millis(500);

async fn get_node(client: &mut Client, name: &str) -> Result<Node> {
    let node = client
        .get_node(GetNodeRequest {
            node: name.to_string(),
        })
        .await?
        .node;
    node.ok_or_else(|| anyhow::anyhow!("node {name} not found"))
}

/// Write `spec` over `node`, guarded by the version read.
async fn write_spec(client: &mut Client, node: &Node, spec: NodeSpec) -> Result<Node> {
    let resp = client
        .update_node(UpdateNodeRequest {
            node: node.id.clone(),
            version: node.meta.as_ref().map_or(0, |m| m.version),
            spec: Some(spec),
        })
        .await?;
    Ok(resp.node.unwrap_or_default())
}

/// `node update`: a read, the flags applied to the spec, a write guarded by the version.
async fn update(client: &mut Client, args: UpdateArgs) -> Result<()> {
    if args.wait && args.availability != Some(AvailabilityArg::Drain) {
        bail!("--wait can only be used with --availability drain");
    }
    let node = get_node(client, &args.node).await?;
    let spec = updated_spec(node.spec.clone().unwrap_or_default(), &args)?;
    write_spec(client, &node, spec).await?;
    if args.wait {
        wait_drained(client, &node.id, &args.node, args.timeout).await?;
    }
    print(&args.node)
}

/// The node's spec with `node update`'s flags applied.
fn updated_spec(mut spec: NodeSpec, args: &UpdateArgs) -> Result<NodeSpec> {
    if let Some(a) = args.availability {
        spec.availability = match a {
            AvailabilityArg::Active => Availability::Active,
            AvailabilityArg::Pause => Availability::Pause,
            AvailabilityArg::Drain => Availability::Drain,
        } as i32;
    }
    for key in &args.label_rm {
        if spec.labels.remove(key).is_none() {
            bail!("key {key} doesn't exist in node's labels");
        }
    }
    for (key, value) in &args.label_add {
        spec.labels.insert(key.clone(), value.clone());
    }
    if let Some(role) = args.role {
        spec.role = NodeRole::from(role) as i32;
    }
    Ok(spec)
}

/// Wait until no task is meant to run on the node, printing how many are left as it goes.
async fn wait_drained(client: &mut Client, id: &str, name: &str, timeout: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut shown = None;
    loop {
        let tasks = client
            .list_tasks(ListTasksRequest {
                service: String::new(),
                node: id.to_string(),
            })
            .await?
            .tasks;
        let left = tasks
            .iter()
            .filter(|t| t.desired() <= TaskState::Running)
            .count();
        if left == 0 {
            return Ok(());
        }
        if shown != Some(left) {
            print(&format!("{name}: {}", tasks_left(left)))?;
            shown = Some(left);
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            bail!(
                "{name} still has {} after {}: their replacements have not started elsewhere (see `shoal service ps`); the drain goes on",
                tasks_text(left),
                humantime::format_duration(timeout)
            );
        }
        tokio::time::sleep(WAIT_POLL.min(deadline - now)).await;
    }
}

fn tasks_text(n: usize) -> String {
    if n == 1 {
        "1 task".into()
    } else {
        format!("{n} tasks")
    }
}

fn tasks_left(n: usize) -> String {
    format!("{} left", tasks_text(n))
}

/// `node promote` / `node demote`, with docker's messages; goes on past a failure.
async fn set_roles(client: &mut Client, names: &[String], role: NodeRole) -> Result<()> {
    let mut errors = Vec::new();
    for name in names {
        match set_role(client, name, role).await {
            Ok(message) => print(&message)?,
            Err(e) => errors.push(e),
        }
    }
    failures(errors)
}

async fn set_role(client: &mut Client, name: &str, role: NodeRole) -> Result<String> {
    let node = get_node(client, name).await?;
    if node.role() == role {
        return Ok(format!(
            "Node {name} is already a {}.",
            view::role_name(role)
        ));
    }
    let mut spec = node.spec.clone().unwrap_or_default();
    spec.role = role as i32;
    write_spec(client, &node, spec).await?;
    Ok(match role {
        NodeRole::Manager => format!("Node {name} promoted to a manager in the swarm."),
        NodeRole::Worker => format!("Manager {name} demoted in the swarm."),
    })
}

/// This daemon's node id, to mark it in lists and resolve "self"; empty when unknown.
async fn self_id(client: &mut Client) -> String {
    client
        .info(InfoRequest {})
        .await
        .map(|info| info.node_id)
        .unwrap_or_default()
}

async fn ls(client: &mut Client, args: LsArgs) -> Result<()> {
    let me = self_id(client).await;
    let mut nodes = client.list_nodes(ListNodesRequest {}).await?.nodes;
    nodes.sort_by(|a, b| format::natural_cmp(a.hostname(), b.hostname()).then(a.id.cmp(&b.id)));
    let rows: Vec<NodeRow> = nodes.iter().map(|n| NodeRow::new(n, &me)).collect();
    if args.quiet {
        return print_lines(&rows.iter().map(|r| r.id.clone()).collect::<Vec<_>>());
    }
    match args.format {
        Format::Json => print_lines(
            &rows
                .iter()
                .map(format::json_line)
                .collect::<Result<Vec<_>>>()?,
        ),
        Format::Table => print(&format::table(
            &[
                "ID",
                "HOSTNAME",
                "STATUS",
                "AVAILABILITY",
                "MANAGER STATUS",
                "ENGINE VERSION",
            ],
            &rows.iter().map(NodeRow::cells).collect::<Vec<_>>(),
        )),
    }
}

/// A `node ls` row; serialized with docker's `--format json` field names.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
struct NodeRow {
    availability: String,
    engine_version: String,
    hostname: String,
    #[serde(rename = "ID")]
    id: String,
    manager_status: String,
    #[serde(rename = "Self")]
    is_self: bool,
    status: String,
}

impl NodeRow {
    fn new(n: &Node, self_id: &str) -> Self {
        let manager_status = match &n.manager_status {
            Some(m) if m.leader => "Leader",
            Some(_) if n.state() == NodeState::Ready => "Reachable",
            Some(_) => "Unreachable",
            None => "",
        };
        Self {
            availability: format::capitalize(view::availability_name(n.availability())),
            engine_version: n
                .description
                .as_ref()
                .map(|d| d.engine_version.clone())
                .unwrap_or_default(),
            hostname: n.hostname().to_string(),
            id: n.id.clone(),
            manager_status: manager_status.to_string(),
            is_self: !self_id.is_empty() && n.id == self_id,
            status: format::capitalize(view::node_state_name(n.state())),
        }
    }

    fn cells(&self) -> Vec<String> {
        let id = if self.is_self {
            format!("{} *", self.id)
        } else {
            self.id.clone()
        };
        vec![
            id,
            self.hostname.clone(),
            self.status.clone(),
            self.availability.clone(),
            self.manager_status.clone(),
            self.engine_version.clone(),
        ]
    }
}

async fn inspect(client: &mut Client, args: InspectArgs) -> Result<()> {
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for name in &args.nodes {
        let name = if name == "self" {
            self_id(client).await
        } else {
            name.clone()
        };
        match client.get_node(GetNodeRequest { node: name }).await {
            Ok(resp) => found.extend(resp.node),
            Err(e) => errors.push(e),
        }
    }
    if args.pretty {
        let blocks: Vec<String> = found.iter().map(view::node_pretty).collect();
        print_blocks(&blocks)?;
    } else if args.format == Some(Format::Json) {
        let lines = found
            .iter()
            .map(|n| format::json_line(&view::node(n)))
            .collect::<Result<Vec<_>>>()?;
        print_lines(&lines)?;
    } else {
        let views: Vec<_> = found.iter().map(view::node).collect();
        print(&format::json_pretty(&views)?)?;
    }
    failures(errors)
}

/// `node ps`: the tasks of the nodes named ("self" is the node the CLI talks to).
async fn ps(client: &mut Client, args: &PsArgs) -> Result<()> {
    let filters = Filters::new(&args.list.filters)?;
    let mut tasks = Vec::new();
    let mut node_names = std::collections::HashMap::new();
    let mut seen = std::collections::HashSet::new();
    for name in &args.nodes {
        let key = if name == "self" {
            let info = client.info(InfoRequest {}).await?;
            if info.node_id.is_empty() {
                bail!("this node is not part of a swarm: name a node, or run `shoal swarm init`");
            }
            info.node_id
        } else {
            name.clone()
        };
        // Resolves the name first, so a missing node is an error and not an empty list.
        let node = client
            .get_node(GetNodeRequest { node: key })
            .await?
            .node
            .unwrap_or_default();
        if !seen.insert(node.id.clone()) {
            continue;
        }
        let resp = client
            .list_tasks(ListTasksRequest {
                service: String::new(),
                node: node.id.clone(),
            })
            .await?;
        tasks.extend(resp.tasks);
        node_names.extend(resp.node_names);
    }
    print_tasks(
        tasks,
        &node_names,
        &Default::default(),
        &args.list,
        &filters,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::{ManagerStatus, NodeDescription, NodeStatus};

    fn node(id: &str, host: &str, state: NodeState, leader: Option<bool>) -> Node {
        Node {
            id: id.into(),
            spec: Some(NodeSpec {
                role: if leader.is_some() {
                    NodeRole::Manager as i32
                } else {
                    NodeRole::Worker as i32
                },
                availability: Availability::Drain as i32,
                labels: Default::default(),
            }),
            description: Some(NodeDescription {
                hostname: host.into(),
                engine_version: "27.1.0".into(),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                state: state as i32,
                ..Default::default()
            }),
            manager_status: leader.map(|leader| ManagerStatus {
                leader,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn rows() {
        let cases = [
            (
                node("a1", "n1", NodeState::Ready, Some(true)),
                "a1",
                vec!["a1 *", "n1", "Ready", "Drain", "Leader", "27.1.0"],
            ),
            (
                node("b2", "n2", NodeState::Down, Some(false)),
                "a1",
                vec!["b2", "n2", "Down", "Drain", "Unreachable", "27.1.0"],
            ),
            (
                node("d4", "n4", NodeState::Ready, Some(false)),
                "a1",
                vec!["d4", "n4", "Ready", "Drain", "Reachable", "27.1.0"],
            ),
            (
                node("c3", "n3", NodeState::Unknown, None),
                "",
                vec!["c3", "n3", "Unknown", "Drain", "", "27.1.0"],
            ),
        ];
        for (n, me, want) in cases {
            assert_eq!(NodeRow::new(&n, me).cells(), want);
        }
    }

    #[test]
    fn json_rows_use_dockers_names() {
        let row = NodeRow::new(&node("a1", "n1", NodeState::Ready, Some(true)), "a1");
        assert_eq!(
            format::json_line(&row).unwrap_or_default(),
            r#"{"Availability":"Drain","EngineVersion":"27.1.0","Hostname":"n1","ID":"a1","ManagerStatus":"Leader","Self":true,"Status":"Ready"}"#
        );
    }
}

#[cfg(test)]
mod update_tests {
    use super::*;
    use crate::Cli;
    use clap::Parser;

    fn parse(argv: &[&str]) -> Result<UpdateArgs, String> {
        let mut full = vec!["shoal", "node", "update"];
        full.extend_from_slice(argv);
        match Cli::try_parse_from(full)
            .map_err(|e| e.to_string())?
            .command
        {
            crate::Command::Node(NodeCommand::Update(args)) => Ok(args),
            _ => Err("not an update".into()),
        }
    }

    fn spec() -> NodeSpec {
        NodeSpec {
            role: NodeRole::Worker as i32,
            availability: Availability::Active as i32,
            labels: [("zone".to_string(), "a".to_string())].into(),
        }
    }

    #[test]
    fn flags_change_the_spec() {
        let args = parse(&[
            "--availability",
            "drain",
            "--label-add",
            "rack=3",
            "--label-add",
            "zone=b",
            "--role",
            "manager",
            "n2",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let got = updated_spec(spec(), &args).map_err(|e| e.to_string());
        let want = NodeSpec {
            role: NodeRole::Manager as i32,
            availability: Availability::Drain as i32,
            labels: [
                ("zone".to_string(), "b".to_string()),
                ("rack".to_string(), "3".to_string()),
            ]
            .into(),
        };
        assert_eq!(got, Ok(want));
        assert_eq!(args.timeout, Duration::from_secs(300));
        let args = parse(&["--label-rm", "zone", "n2"]).unwrap_or_else(|e| panic!("{e}"));
        let got = updated_spec(spec(), &args).map_err(|e| e.to_string());
        assert_eq!(got.map(|s| s.labels.is_empty()), Ok(true));
    }

    #[test]
    fn bad_flags() {
        let cases: &[(&[&str], &str)] = &[
            (&["--availability", "off", "n2"], "invalid value 'off'"),
            (&["--role", "boss", "n2"], "invalid value 'boss'"),
            (&["--label-add", "=x", "n2"], "invalid label"),
            (&["--label-rm", "a=b", "n2"], "invalid label key"),
            (&["--timeout", "1m", "n2"], "--wait"),
            (&["--wait", "--timeout", "soon", "n2"], "invalid duration"),
            (&[], "NODE"),
        ];
        for (argv, want) in cases {
            let err = parse(argv).err().unwrap_or_default();
            assert!(err.contains(want), "{argv:?}: {err}");
        }
        let args = parse(&["--label-rm", "rack", "n2"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            updated_spec(spec(), &args).map_err(|e| e.to_string()),
            Err("key rack doesn't exist in node's labels".into())
        );
    }

    #[test]
    fn progress_lines() {
        assert_eq!(tasks_left(1), "1 task left");
        assert_eq!(tasks_left(3), "3 tasks left");
    }
}

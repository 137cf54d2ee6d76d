//! `node ls` and `node inspect`.

use anyhow::Result;
use clap::{Args, Subcommand};
use serde::Serialize;
use shoal_proto::{GetNodeRequest, InfoRequest, ListNodesRequest, Node};

use super::{failures, print, print_blocks, print_lines, Format};
use crate::client::Client;
use crate::{format, view};

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// List nodes in the swarm
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more nodes
    Inspect(InspectArgs),
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only display IDs
    #[arg(short, long)]
    quiet: bool,
    /// Output format
    #[arg(long, value_enum, default_value_t)]
    format: Format,
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

pub async fn run(host: &str, command: NodeCommand) -> Result<()> {
    let mut client = Client::connect(host).await?;
    match command {
        NodeCommand::Ls(args) => ls(&mut client, args).await,
        NodeCommand::Inspect(args) => inspect(&mut client, args).await,
    }
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
            Some(_) => "Reachable",
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

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::{
        Availability, ManagerStatus, NodeDescription, NodeRole, NodeSpec, NodeState, NodeStatus,
    };

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
                vec!["b2", "n2", "Down", "Drain", "Reachable", "27.1.0"],
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

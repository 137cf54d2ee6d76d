//! `swarm init`, `swarm leave` and `info`: the local daemon's NodeAdmin service.

use anyhow::Result;
use clap::{Args, Subcommand};
use shoal_proto::{InfoRequest, InfoResponse, InitRequest, LeaveRequest};

use super::print;
use crate::client::Client;

#[derive(Debug, Subcommand)]
pub enum SwarmCommand {
    /// Initialize a swarm with this node as its first manager
    Init(InitArgs),
    /// Leave the swarm
    Leave(LeaveArgs),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Address other nodes reach this manager on (host or host:port)
    #[arg(long, value_name = "ADDR")]
    advertise_addr: Option<String>,
    /// Address to listen on for nodes (default 0.0.0.0:4242)
    #[arg(long, value_name = "ADDR")]
    listen_addr: Option<String>,
}

#[derive(Debug, Args)]
pub struct LeaveArgs {
    /// Leave even if this is a manager (it may cost the swarm its quorum)
    #[arg(short, long)]
    force: bool,
}

pub async fn run(host: &str, command: SwarmCommand) -> Result<()> {
    let mut client = Client::connect(host).await?;
    match command {
        SwarmCommand::Init(args) => {
            let resp = client
                .init(InitRequest {
                    advertise_addr: args.advertise_addr.unwrap_or_default(),
                    listen_addr: args.listen_addr.unwrap_or_default(),
                    ..Default::default()
                })
                .await?;
            print(&format!(
                "Swarm initialized: current node ({}) is now a manager.",
                resp.node_id
            ))
        }
        SwarmCommand::Leave(args) => {
            client.leave(LeaveRequest { force: args.force }).await?;
            print("Node left the swarm.")
        }
    }
}

pub async fn info(host: &str) -> Result<()> {
    let mut client = Client::connect(host).await?;
    let info = client.info(InfoRequest {}).await?;
    print(&info_text(&info))
}

/// The "Swarm:" section of `docker info`, then what identifies this daemon.
fn info_text(info: &InfoResponse) -> String {
    fn add(lines: &mut Vec<String>, label: &str, value: &str) {
        if !value.is_empty() {
            lines.push(format!("{label}: {value}"));
        }
    }
    let state = if info.swarm_state.is_empty() {
        "inactive"
    } else {
        info.swarm_state.as_str()
    };
    let mut lines = vec![format!("Swarm: {state}")];
    if state == "active" {
        add(&mut lines, " NodeID", &info.node_id);
        add(&mut lines, " Is Manager", &info.is_manager.to_string());
        if info.is_manager {
            add(&mut lines, " ClusterID", &info.cluster_id);
            add(&mut lines, " Managers", &info.managers.to_string());
            add(&mut lines, " Nodes", &info.nodes.to_string());
            lines.push(" Raft:".into());
            lines.push(format!("  Term: {}", info.raft_term));
            lines.push(format!("  Commit Index: {}", info.raft_commit_index));
        }
        add(&mut lines, " Node Address", &info.node_addr);
        if !info.leader_addr.is_empty() {
            lines.push(" Manager Addresses:".into());
            lines.push(format!("  {}", info.leader_addr));
        }
    }
    add(&mut lines, "Name", &info.node_name);
    add(&mut lines, "Data Dir", &info.data_dir);
    add(&mut lines, "Docker Host", &info.docker_host);
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_manager() {
        let info = InfoResponse {
            node_id: "n1".into(),
            node_name: "host1".into(),
            swarm_state: "active".into(),
            is_manager: true,
            manager_addrs: Vec::new(),
            cluster_id: "c1".into(),
            node_addr: "10.0.0.1".into(),
            leader_addr: "10.0.0.1:4242".into(),
            managers: 1,
            nodes: 3,
            raft_term: 2,
            raft_commit_index: 42,
            data_dir: "/var/lib/shoal".into(),
            docker_host: String::new(),
        };
        let want = "\
Swarm: active
 NodeID: n1
 Is Manager: true
 ClusterID: c1
 Managers: 1
 Nodes: 3
 Raft:
  Term: 2
  Commit Index: 42
 Node Address: 10.0.0.1
 Manager Addresses:
  10.0.0.1:4242
Name: host1
Data Dir: /var/lib/shoal";
        assert_eq!(info_text(&info), want);
    }

    #[test]
    fn inactive_shows_no_swarm_details() {
        let info = InfoResponse {
            swarm_state: "inactive".into(),
            node_name: "host1".into(),
            ..Default::default()
        };
        assert_eq!(info_text(&info), "Swarm: inactive\nName: host1");
    }
}

//! `swarm init|join|join-token|leave|ca|update|unlock|unlock-key` and `info`: the local daemon's NodeAdmin service,
//! and the managers' join tokens and root CA.

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
use shoal_proto::{
    GetJoinTokensRequest, GetJoinTokensResponse, GetRootCaRequest, InfoRequest, InfoResponse,
    InitRequest, JoinRequest, LeaveRequest, NodeRole, RotateJoinTokenRequest, RotateRootCaRequest,
};
use shoal_proto::{GetUnlockKeyRequest, UnlockRequest, UpdateSwarmRequest};

use super::print;
use crate::client::Client;
use crate::parse::{self, flag};

#[derive(Debug, Subcommand)]
pub enum SwarmCommand {
    /// Initialize a swarm with this node as its first manager
    Init(InitArgs),
    /// Join a swarm as a node and/or manager
    #[command(override_usage = "shoal swarm join [OPTIONS] --token TOKEN HOST:PORT")]
    Join(JoinArgs),
    /// Manage join tokens
    JoinToken(JoinTokenArgs),
    /// Leave the swarm
    Leave(LeaveArgs),
    /// Display and rotate the root CA
    Ca(CaArgs),
    /// Update the swarm
    Update(UpdateArgs),
    /// Unlock a locked manager (reads the unlock key from stdin)
    Unlock,
    /// Manage the unlock key
    UnlockKey(UnlockKeyArgs),
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Change manager autolocking setting (true|false)
    #[arg(long, value_name = "true|false", num_args = 0..=1, default_missing_value = "true")]
    autolock: Option<bool>,
}

#[derive(Debug, Args)]
pub struct UnlockKeyArgs {
    /// Only display the key
    #[arg(short, long)]
    quiet: bool,
    /// Rotate the unlock key (the old one is kept and shown, for a manager down meanwhile)
    #[arg(long)]
    rotate: bool,
}

#[derive(Debug, Args)]
pub struct CaArgs {
    /// Rotate the swarm CA: every node gets a certificate from a new root
    #[arg(long)]
    rotate: bool,
    /// Validity period for node certificates from now on, e.g. 2160h
    #[arg(long, value_name = "DURATION", value_parser = flag(parse::duration_ms))]
    cert_expiry: Option<i64>,
    /// Return once the rotation started, without waiting for every node
    #[arg(short, long)]
    detach: bool,
    /// Suppress progress output
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Debug, Args)]
pub struct JoinArgs {
    /// Token for entry into the swarm
    #[arg(long, value_name = "TOKEN")]
    token: String,
    /// Address other nodes reach this node on (host or host:port)
    #[arg(long, value_name = "ADDR")]
    advertise_addr: Option<String>,
    /// Address to listen on (default 0.0.0.0:4242)
    #[arg(long, value_name = "ADDR")]
    listen_addr: Option<String>,
    /// A manager's address
    #[arg(value_name = "HOST:PORT")]
    remote: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TokenRole {
    Worker,
    Manager,
}

impl TokenRole {
    fn name(self) -> &'static str {
        match self {
            TokenRole::Worker => "worker",
            TokenRole::Manager => "manager",
        }
    }
}

#[derive(Debug, Args)]
pub struct JoinTokenArgs {
    /// Only display token
    #[arg(short, long)]
    quiet: bool,
    /// Rotate join token
    #[arg(long)]
    rotate: bool,
    #[arg(value_enum, value_name = "worker|manager")]
    role: TokenRole,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Address other nodes reach this manager on (host or host:port)
    #[arg(long, value_name = "ADDR")]
    advertise_addr: Option<String>,
    /// Address to listen on for nodes (default 0.0.0.0:4242)
    #[arg(long, value_name = "ADDR")]
    listen_addr: Option<String>,
    /// Force create a new cluster from current state (after losing the managers' quorum)
    #[arg(long)]
    force_new_cluster: bool,
    /// Enable manager autolocking (a restarted manager needs the unlock key)
    #[arg(long)]
    autolock: bool,
    /// Validity period for node certificates, e.g. 2160h (default 90 days)
    #[arg(long, value_name = "DURATION", value_parser = flag(parse::duration_ms))]
    cert_expiry: Option<i64>,
    /// Address pool overlay subnets come from, in CIDR form (repeatable; default 10.0.0.0/8)
    #[arg(long, value_name = "CIDR")]
    default_addr_pool: Vec<String>,
    /// Prefix length of each network's subnet from the pool (default 24)
    #[arg(long, value_name = "N", default_value_t = 24)]
    default_addr_pool_mask_length: u32,
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
                    force_new_cluster: args.force_new_cluster,
                    cert_expiry_ms: args.cert_expiry.unwrap_or(0),
                    default_addr_pool: args.default_addr_pool,
                    default_addr_pool_mask_length: args.default_addr_pool_mask_length,
                    autolock: args.autolock,
                })
                .await?;
            print(&format!(
                "Swarm initialized: current node ({}) is now a manager.",
                resp.node_id
            ))?;
            if resp.unlock_key.is_empty() {
                return Ok(());
            }
            print(&format!("\n{}", unlock_key_text(&resp.unlock_key)))
        }
        SwarmCommand::Join(args) => {
            let resp = client
                .join(JoinRequest {
                    token: args.token,
                    remote_addr: args.remote,
                    advertise_addr: args.advertise_addr.unwrap_or_default(),
                    listen_addr: args.listen_addr.unwrap_or_default(),
                })
                .await?;
            let role = if resp.manager { "manager" } else { "worker" };
            print(&format!("This node joined a swarm as a {role}."))
        }
        SwarmCommand::JoinToken(args) => {
            let tokens = if args.rotate {
                let role = match args.role {
                    TokenRole::Worker => NodeRole::Worker,
                    TokenRole::Manager => NodeRole::Manager,
                };
                let tokens = client
                    .rotate_join_token(RotateJoinTokenRequest { role: role as i32 })
                    .await?;
                if !args.quiet {
                    print(&format!(
                        "Successfully rotated {} join token.\n",
                        args.role.name()
                    ))?;
                }
                tokens
            } else {
                client.get_join_tokens(GetJoinTokensRequest {}).await?
            };
            print(&join_token_text(&tokens, args.role, args.quiet))
        }
        SwarmCommand::Leave(args) => {
            client.leave(LeaveRequest { force: args.force }).await?;
            print("Node left the swarm.")
        }
        SwarmCommand::Ca(args) => ca(&mut client, args).await,
        SwarmCommand::Update(args) => {
            let Some(autolock) = args.autolock else {
                return print("Swarm updated.");
            };
            let resp = client
                .update_swarm(UpdateSwarmRequest {
                    set_autolock: true,
                    autolock,
                })
                .await?;
            print("Swarm updated.")?;
            if resp.unlock_key.is_empty() {
                return Ok(());
            }
            print(&unlock_key_text(&resp.unlock_key))
        }
        SwarmCommand::Unlock => {
            let mut key = String::new();
            if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                eprint!("Please enter unlock key: ");
            }
            std::io::stdin()
                .read_line(&mut key)
                .map_err(|e| anyhow::anyhow!("reading the unlock key from stdin: {e}"))?;
            client
                .unlock(UnlockRequest {
                    unlock_key: key.trim().to_string(),
                })
                .await?;
            Ok(())
        }
        SwarmCommand::UnlockKey(args) => {
            let resp = client
                .get_unlock_key(GetUnlockKeyRequest {
                    rotate: args.rotate,
                })
                .await?;
            if args.quiet {
                return print(&resp.unlock_key);
            }
            if args.rotate {
                print("Successfully rotated manager unlock key.\n")?;
            }
            print(&unlock_key_text(&resp.unlock_key))?;
            if resp.previous_unlock_key.is_empty() {
                return Ok(());
            }
            print(&format!(
                "\nA manager that was down when the key was last rotated still opens with the\n\
                 previous key:\n\n    {}",
                resp.previous_unlock_key
            ))
        }
    }
}

/// docker's words around an unlock key.
fn unlock_key_text(key: &str) -> String {
    format!(
        "To unlock a swarm manager after it restarts, run the `shoal swarm unlock`\n\
         command and provide the following key:\n\n    {key}\n\n\
         Please remember to store this key in a password manager, since without it you\n\
         will not be able to restart the manager."
    )
}

/// `swarm ca [--rotate]`: the root certificate, after the rotation when one is asked for
/// (progress on stderr while nodes move to the new root).
async fn ca(client: &mut Client, args: CaArgs) -> Result<()> {
    if !args.rotate {
        if args.cert_expiry.is_some() {
            anyhow::bail!(
                "--cert-expiry needs --rotate (or set it with `shoal swarm init --cert-expiry`)"
            );
        }
        return print(
            client
                .get_root_ca(GetRootCaRequest {})
                .await?
                .cert_pem
                .trim_end(),
        );
    }
    let mut status = client
        .rotate_root_ca(RotateRootCaRequest {
            cert_expiry_ms: args.cert_expiry.unwrap_or(0),
        })
        .await?;
    let mut said = String::new();
    let mut since_said = std::time::Instant::now();
    while status.rotating && !args.detach {
        let line = format!(
            "rotating the root CA: {}/{} nodes on the new root",
            status.nodes_done, status.nodes_total
        );
        let slow = since_said.elapsed() > std::time::Duration::from_secs(10);
        if !args.quiet && (line != said || slow) {
            let left = if slow && !status.nodes_left.is_empty() {
                format!(
                    " (waiting for {}: a node that is down holds the rotation until it is back or removed)",
                    status.nodes_left.join(", ")
                )
            } else {
                String::new()
            };
            eprintln!("{line}{left}");
            said = line;
            since_said = std::time::Instant::now();
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        status = client.get_root_ca(GetRootCaRequest {}).await?;
    }
    if !args.quiet && !status.rotating {
        eprintln!(
            "root CA rotated: {}/{} nodes on the new root; the join tokens changed",
            status.nodes_done, status.nodes_total
        );
    }
    print(status.cert_pem.trim_end())
}

/// docker's `swarm join-token` text, or the token alone with -q.
fn join_token_text(tokens: &GetJoinTokensResponse, role: TokenRole, quiet: bool) -> String {
    let token = match role {
        TokenRole::Worker => &tokens.worker,
        TokenRole::Manager => &tokens.manager,
    };
    if quiet {
        return token.clone();
    }
    let addr = tokens
        .managers
        .first()
        .map_or("MANAGER-HOST:PORT", String::as_str);
    format!(
        "To add a {} to this swarm, run the following command:\n\n    shoal swarm join --token {token} {addr}\n",
        role.name()
    )
}

pub async fn info(host: &str) -> Result<()> {
    let mut client = Client::connect(host).await?;
    let info = client.info(InfoRequest {}).await?;
    print(&info_text(&info))
}

/// `shoal web`: the web view's login link, or how to turn it on.
pub async fn web(host: &str) -> Result<()> {
    let mut client = Client::connect(host).await?;
    let info = client.info(InfoRequest {}).await?;
    if info.web_url.is_empty() {
        anyhow::bail!(
            "this node serves no web view: start shoald with --web-addr HOST:PORT (on a manager)"
        );
    }
    print(&info.web_url)
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
    // The link without its token: `shoal web` prints it whole.
    add(
        &mut lines,
        "Web View",
        info.web_url.split("/login?").next().unwrap_or(""),
    );
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
            web_url: "http://10.0.0.1:8080/login?token=secret".into(),
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
Data Dir: /var/lib/shoal
Web View: http://10.0.0.1:8080";
        assert_eq!(info_text(&info), want);
    }

    #[test]
    fn join_token_texts() {
        let tokens = GetJoinTokensResponse {
            worker: "SHTKN-1-abc-w".into(),
            manager: "SHTKN-1-abc-m".into(),
            managers: vec!["10.0.0.1:4242".into(), "10.0.0.2:4242".into()],
        };
        assert_eq!(
            join_token_text(&tokens, TokenRole::Worker, false),
            "To add a worker to this swarm, run the following command:\n\n    shoal swarm join --token SHTKN-1-abc-w 10.0.0.1:4242\n"
        );
        assert_eq!(
            join_token_text(&tokens, TokenRole::Manager, true),
            "SHTKN-1-abc-m"
        );
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

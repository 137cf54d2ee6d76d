//! `shoal`, Shoal's command-line client, modelled on docker's swarm commands.
//!
//! The CLI owns argument parsing and printing: it turns flags into wire requests, sends
//! them to shoald over gRPC (a unix socket by default) and prints the answers as docker
//! would. It depends on `shoal-proto` only.
//!
//! Architecture invariant: the CLI does not know the manager's internals. It never
//! imports the manager, agent or raft crates, and it learns everything through the
//! Control and NodeAdmin services; names and id prefixes are resolved by the daemon.
//!
//! Every failure is one line on stderr, `Error: <message>`, and exit status 1; usage
//! mistakes are clap's, with exit status 2.

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod client;
mod commands;
mod format;
mod parse;
mod registry_auth;
mod view;

use commands::files::FileCommand;
use commands::network::NetworkCommand;
use commands::node::NodeCommand;
use commands::service::ServiceCommand;
use commands::stack::StackCommand;
use commands::swarm::SwarmCommand;

const DEFAULT_HOST: &str = "unix:///run/shoal/shoald.sock";

/// Run services across a swarm of Docker hosts
#[derive(Debug, Parser)]
#[command(name = "shoal", version)]
pub struct Cli {
    /// Daemon to connect to: unix:///path or tcp://host:port
    #[arg(short = 'H', long, value_name = "URL", env = "SHOAL_HOST",
        hide_env_values = true, default_value = DEFAULT_HOST, global = true)]
    host: String,

    /// Read this manager's own state without asking the leader: answers even without a
    /// quorum, but may be behind (a warning says so)
    #[arg(long, global = true)]
    stale: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage the swarm
    #[command(subcommand)]
    Swarm(SwarmCommand),
    /// Manage swarm nodes
    #[command(subcommand)]
    Node(NodeCommand),
    /// Manage services
    #[command(subcommand)]
    Service(ServiceCommand),
    /// Manage overlay networks
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Manage stacks (compose files)
    #[command(subcommand)]
    Stack(StackCommand),
    /// Manage secrets (content tasks read in memory, at /run/secrets/NAME)
    #[command(subcommand)]
    Secret(FileCommand),
    /// Manage configs (files tasks read at a path of their own)
    #[command(subcommand)]
    Config(FileCommand),
    /// Display swarm-wide information
    Info,
    /// Stream the swarm's events (services, nodes, tasks, networks, secrets, configs)
    Events(commands::events::EventsArgs),
    /// Print the link that opens this manager's live web view (shoald --web-addr)
    Web,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write man pages (shoal.1 and one per subcommand) into a directory
    Man {
        /// Where the pages go (e.g. /usr/local/share/man/man1)
        dir: std::path::PathBuf,
    },
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Swarm(command) => commands::swarm::run(&cli.host, command).await,
        Command::Info => commands::swarm::info(&cli.host).await,
        Command::Web => commands::swarm::web(&cli.host).await,
        Command::Events(args) => commands::events::events(&cli.host, &args).await,
        Command::Completion { shell } => commands::docs::completion(shell),
        Command::Man { dir } => commands::docs::man(&dir),
        Command::Node(command) => commands::node::run(&cli.host, command).await,
        Command::Service(command) => commands::service::run(&cli.host, command).await,
        Command::Network(command) => commands::network::run(&cli.host, command).await,
        Command::Stack(command) => commands::stack::run(&cli.host, command).await,
        Command::Secret(command) => {
            commands::files::run(&cli.host, commands::files::Kind::Secret, command).await
        }
        Command::Config(command) => {
            commands::files::run(&cli.host, commands::files::Kind::Config, command).await
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    client::allow_stale_reads(cli.stale);
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, whatever the cause chain holds.
            let message = format!("{e:#}").replace(['\n', '\r'], " ");
            let _ = writeln!(std::io::stderr(), "Error: {message}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn host_defaults_to_the_unix_socket() {
        if std::env::var_os("SHOAL_HOST").is_none() {
            let cli = Cli::try_parse_from(["shoal", "info"]).ok();
            assert_eq!(cli.map(|c| c.host).as_deref(), Some(DEFAULT_HOST));
        }
        let cli = Cli::try_parse_from(["shoal", "service", "ls", "-H", "tcp://h:1"]).ok();
        assert_eq!(cli.map(|c| c.host).as_deref(), Some("tcp://h:1"));
    }
}

//! `stack config`: a compose file resolved as `stack deploy` will read it, without a
//! cluster (shoal-compose does the reading). The other stack commands come with issue 10.

use std::path::PathBuf;

use std::io::Write;

use anyhow::Result;
use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum StackCommand {
    /// Print the fully resolved compose file (no cluster needed)
    Config(ConfigArgs),
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Path to a compose file
    #[arg(
        short = 'c',
        long = "compose-file",
        value_name = "FILE",
        required = true
    )]
    files: Vec<PathBuf>,
    /// Read variables from this file instead of the .env beside the compose file
    #[arg(long, value_name = "FILE")]
    env_file: Option<PathBuf>,
    /// Include the services of this profile (repeatable)
    #[arg(long = "profile", value_name = "NAME")]
    profiles: Vec<String>,
}

pub fn run(command: StackCommand) -> Result<()> {
    match command {
        StackCommand::Config(args) => config(args),
    }
}

fn config(args: ConfigArgs) -> Result<()> {
    let environment = |name: &str| std::env::var(name).ok();
    let loaded = shoal_compose::load(&shoal_compose::Request {
        files: &args.files,
        env_file: args.env_file.as_deref(),
        profiles: &args.profiles,
        environment: &environment,
    })?;
    for warning in &loaded.warnings {
        eprintln!("Warning: {warning}");
    }
    let text = shoal_compose::to_yaml(&loaded.document)?;
    // A reader that stops early (`| head`) is not an error.
    match std::io::stdout().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

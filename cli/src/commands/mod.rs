//! One module per command group; each owns its clap subtree and the rows it prints.

use std::io::{self, Write};

use anyhow::{bail, Result};
use clap::Args;

pub mod docs;
pub mod events;
pub mod files;
pub mod health;
pub mod logs;
pub mod network;
pub mod node;
pub mod progress;
pub mod service;
pub mod stack;
pub mod swarm;
pub mod taskflags;
pub mod update;

/// `--format` of the list and inspect commands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    // Columns, as docker prints them.
    #[default]
    Table,
    // One JSON object per line.
    Json,
}

/// Writes `text` and a newline to stdout. A closed pipe (`shoal service ls | head -1`)
/// ends the output quietly.
pub fn print(text: &str) -> Result<()> {
    let mut out = io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// Prints every line; nothing at all for none.
pub fn print_lines(lines: &[String]) -> Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    print(&lines.join("\n"))
}

/// Prints blocks of text separated by a blank line; nothing at all for none.
pub fn print_blocks(blocks: &[String]) -> Result<()> {
    if blocks.is_empty() {
        return Ok(());
    }
    print(&blocks.join("\n\n"))
}

/// Commands that act on several objects go on past a failure, as docker's do, then
/// report every failure on one line.
pub fn failures(errors: Vec<anyhow::Error>) -> Result<()> {
    if errors.is_empty() {
        return Ok(());
    }
    let messages: Vec<String> = errors.iter().map(|e| format!("{e:#}")).collect();
    bail!("{}", messages.join("; "))
}

/// `ls` of nodes and services.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only display IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Output format
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

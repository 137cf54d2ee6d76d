//! `shoal completion SHELL` and `shoal man DIR`: shell completions and man pages, made
//! from the same clap definitions that parse the commands, so they never drift from them.
//! `deploy/install.sh` installs both.

use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;

/// The completion script for `shell` on stdout.
pub fn completion(shell: Shell) -> Result<()> {
    let mut command = crate::Cli::command();
    // Into a buffer first: clap_complete panics on a write error (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "shoal", &mut script);
    match std::io::Write::write_all(&mut std::io::stdout(), &script) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// `shoal.1` and one page per subcommand (`shoal-service-create.1`, ...) in `dir`; the
/// pages written, one per line.
pub fn man(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let command = crate::Cli::command();
    write_pages(dir, &command, "shoal")
}

fn write_pages(dir: &Path, command: &clap::Command, name: &str) -> Result<()> {
    let page = command.clone().name(name.to_string());
    let mut text = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut text)
        .with_context(|| format!("rendering the man page of {name}"))?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    println!("{}", path.display());
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.get_name() == "help" {
            continue;
        }
        write_pages(dir, sub, &format!("{name}-{}", sub.get_name()))?;
    }
    Ok(())
}

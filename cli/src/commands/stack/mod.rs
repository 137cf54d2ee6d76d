//! `stack config|deploy|ls|services|ps|rm|history|rollback`. The compose file is read
//! here (shoal-compose) and converted ([`convert`]) into the StackSpec the managers apply
//! as one change and keep as a revision; `stack config` needs no cluster.

mod convert;
mod wait;

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use shoal_proto::{
    DeployStackRequest, DeployStackResponse, GetStackRequest, ListServicesRequest,
    ListStacksRequest, RemoveStackRequest, RollbackStackRequest, Service,
};

use super::service::{print_service_tasks, print_services, Filters, TaskListArgs};
use super::{print, print_lines, LsArgs};
use crate::client::Client;
use crate::format;
use crate::parse::{self, flag};

#[derive(Debug, Subcommand)]
pub enum StackCommand {
    /// Print the fully resolved compose file (no cluster needed)
    Config(ConfigArgs),
    /// Deploy a new stack or update an existing one, and wait until it converges
    #[command(visible_alias = "up")]
    Deploy(DeployArgs),
    /// List stacks
    #[command(visible_alias = "list")]
    Ls(StackLsArgs),
    /// List the services of a stack
    Services(ServicesArgs),
    /// List the tasks of a stack
    Ps(PsArgs),
    /// Remove stacks, and wait until their containers are gone
    #[command(visible_alias = "remove", visible_alias = "down")]
    Rm(RmArgs),
    /// Show a stack's revisions: when each was deployed and what it changed
    History(HistoryArgs),
    /// Deploy an earlier revision of a stack again
    Rollback(RollbackArgs),
}

/// The compose files and what their variables and profiles come from.
#[derive(Debug, Args)]
pub struct FileArgs {
    /// Path to a compose file (repeatable: merged in order)
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

#[derive(Debug, Args)]
pub struct DeployArgs {
    #[command(flatten)]
    compose: FileArgs,
    /// Remove the stack's services and networks the file no longer names
    #[arg(long)]
    prune: bool,
    /// Send the registry credentials `docker login` saved to the nodes that run the tasks
    #[arg(long)]
    with_registry_auth: bool,
    /// Pin each image to the digest its registry names now, so every node runs the same
    /// image: always, only for images that changed, or never
    #[arg(long, value_enum, default_value_t = Resolve::Always)]
    resolve_image: Resolve,
    /// Return once the managers have the stack, without waiting for it to converge
    #[arg(short, long)]
    detach: bool,
    /// Suppress progress output
    #[arg(short, long)]
    quiet: bool,
    /// Give up waiting after this long
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = flag(parse::duration_ms))]
    timeout: i64,
    /// Stack name
    #[arg(value_name = "STACK")]
    name: String,
}

/// `--resolve-image`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Resolve {
    Always,
    Changed,
    Never,
}

#[derive(Debug, Args)]
pub struct StackLsArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t)]
    format: super::Format,
}

#[derive(Debug, Args)]
pub struct ServicesArgs {
    #[command(flatten)]
    ls: LsArgs,
    /// Stack name
    #[arg(value_name = "STACK")]
    name: String,
}

#[derive(Debug, Args)]
pub struct PsArgs {
    #[command(flatten)]
    list: TaskListArgs,
    /// Stack name
    #[arg(value_name = "STACK")]
    name: String,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Return once removed, without waiting for the containers to stop
    #[arg(short, long)]
    detach: bool,
    /// Stack names
    #[arg(value_name = "STACK", required = true)]
    names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Stack name
    #[arg(value_name = "STACK")]
    name: String,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The revision to deploy again (default: the one before the current)
    #[arg(long, value_name = "N")]
    revision: Option<u64>,
    /// Return at once instead of waiting for the stack to converge
    #[arg(short, long)]
    detach: bool,
    /// Give up waiting after this long
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = flag(parse::duration_ms))]
    timeout: i64,
    /// Stack name
    #[arg(value_name = "STACK")]
    name: String,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(flatten)]
    compose: FileArgs,
}

pub async fn run(host: &str, command: StackCommand) -> Result<()> {
    match command {
        StackCommand::Config(args) => config(args),
        StackCommand::Deploy(args) => deploy(host, args).await,
        StackCommand::Ls(args) => ls(host, &args).await,
        StackCommand::Services(args) => {
            let mut client = Client::connect(host).await?;
            let mut resp = client.list_services(ListServicesRequest {}).await?;
            resp.services = stack_services(&mut client, &args.name, resp.services).await?;
            print_services(&mut client, &resp, &args.ls).await
        }
        StackCommand::Ps(args) => {
            let filters = Filters::new(&args.list.filters)?;
            let mut client = Client::connect(host).await?;
            let services = client.list_services(ListServicesRequest {}).await?.services;
            let ids: Vec<String> = stack_services(&mut client, &args.name, services)
                .await?
                .into_iter()
                .map(|s| s.id)
                .collect();
            print_service_tasks(&mut client, &ids, &args.list, &filters).await
        }
        StackCommand::Rm(args) => rm(host, &args).await,
        StackCommand::History(args) => history(host, &args).await,
        StackCommand::Rollback(args) => {
            let mut client = Client::connect(host).await?;
            let resp = client
                .rollback_stack(RollbackStackRequest {
                    name: args.name.clone(),
                    revision: args.revision.unwrap_or(0),
                })
                .await?;
            report(&resp)?;
            if args.detach {
                return Ok(());
            }
            wait::converged(&mut client, &args.name, args.timeout, false).await
        }
    }
}

/// The stack's services; a stack that has none and no record is an error.
async fn stack_services(
    client: &mut Client,
    name: &str,
    services: Vec<Service>,
) -> Result<Vec<Service>> {
    let of_stack: Vec<Service> = services
        .into_iter()
        .filter(|s| s.stack() == Some(name))
        .collect();
    if of_stack.is_empty() {
        // A stack with no service left is still a stack; an unknown name is an error.
        client
            .get_stack(GetStackRequest {
                name: name.to_string(),
            })
            .await?;
    }
    Ok(of_stack)
}

/// Load the files as `stack config` does, printing the warnings.
fn load(args: &FileArgs) -> Result<shoal_compose::Loaded> {
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
    Ok(loaded)
}

async fn deploy(host: &str, args: DeployArgs) -> Result<()> {
    // The file is read and converted before the cluster is asked anything.
    let loaded = load(&args.compose)?;
    let document = shoal_compose::to_yaml(&loaded.document)?;
    let environment = |name: &str| std::env::var(name).ok();
    let mut spec = convert::stack_spec(&args.name, &loaded, &document, &environment)?;
    if args.with_registry_auth {
        for service in spec.services.iter_mut() {
            if let Some(c) = service.task.as_mut().and_then(|t| t.container.as_mut()) {
                c.registry_auth = crate::registry_auth::for_image(&c.image)?;
            }
        }
    }
    let mut client = Client::connect(host).await?;
    resolve_images(&mut client, &mut spec, args.resolve_image).await?;
    let resp = client
        .deploy_stack(DeployStackRequest {
            spec: Some(spec),
            prune: args.prune,
        })
        .await?;
    report(&resp)?;
    if args.detach {
        return Ok(());
    }
    wait::converged(&mut client, &args.name, args.timeout, args.quiet).await
}

/// Pin the services' images to their registries' digests (`--resolve-image`). An image
/// no registry knows (built locally) keeps its tag, with docker's warning; `changed` asks
/// only for images that differ from the ones deployed now and keeps the others' pins.
async fn resolve_images(
    client: &mut Client,
    spec: &mut shoal_proto::StackSpec,
    mode: Resolve,
) -> Result<()> {
    if mode == Resolve::Never {
        return Ok(());
    }
    let deployed: HashMap<String, (String, String)> = if mode == Resolve::Changed {
        client
            .list_services(ListServicesRequest {})
            .await?
            .services
            .into_iter()
            .filter_map(|s| {
                let spec = s.spec?;
                let asked = spec.labels.get("com.docker.stack.image")?.clone();
                let running = spec.task?.container?.image;
                Some((spec.name, (asked, running)))
            })
            .collect()
    } else {
        HashMap::new()
    };
    // Each image is asked for once, however many services run it.
    let mut pinned: HashMap<String, Option<String>> = HashMap::new();
    for service in spec.services.iter_mut() {
        let Some(container) = service.task.as_mut().and_then(|t| t.container.as_mut()) else {
            continue;
        };
        if container.image.contains('@') {
            continue;
        }
        if let Some((asked, running)) = deployed.get(&service.name) {
            if *asked == container.image {
                container.image = running.clone();
                continue;
            }
        }
        if !pinned.contains_key(&container.image) {
            let auth = match &container.registry_auth {
                Some(auth) => Some(auth.clone()),
                None => crate::registry_auth::for_image(&container.image)?,
            };
            let request = shoal_proto::ResolveImageRequest {
                image: container.image.clone(),
                auth,
            };
            let reference = client
                .resolve_image(request)
                .await
                .ok()
                .map(|r| r.reference);
            if reference.is_none() {
                eprintln!(
                    "Warning: image {} could not be accessed on a registry to record its digest: each node will access {} independently, possibly leading to different nodes running different versions of the image",
                    container.image, container.image
                );
            }
            pinned.insert(container.image.clone(), reference);
        }
        if let Some(Some(reference)) = pinned.get(&container.image) {
            container.image = reference.clone();
        }
    }
    Ok(())
}

/// What a deploy or rollback did, one line each, as docker prints them.
fn report(resp: &DeployStackResponse) -> Result<()> {
    for warning in &resp.warnings {
        eprintln!("Warning: {warning}");
    }
    if resp.changes.is_empty() {
        print("Nothing to change: the stack is already as the file says")?;
    }
    let lines: Vec<String> = resp.changes.iter().map(|c| capitalised(c)).collect();
    print_lines(&lines)?;
    if let Some(stack) = &resp.stack {
        print(&format!(
            "Stack {} at revision {}",
            stack.name(),
            stack.revision()
        ))?;
    }
    Ok(())
}

fn capitalised(change: &str) -> String {
    let (verb, rest) = change.split_once(' ').unwrap_or((change, ""));
    let verb = match verb {
        "create" => "Creating",
        "update" => "Updating",
        "remove" => "Removing",
        other => other,
    };
    format!("{verb} {rest}")
}

async fn ls(host: &str, args: &StackLsArgs) -> Result<()> {
    let mut client = Client::connect(host).await?;
    let stacks = client.list_stacks(ListStacksRequest {}).await?.stacks;
    match args.format {
        super::Format::Json => {
            let lines: Vec<String> = stacks
                .iter()
                .map(|s| {
                    serde_json::json!({
                        "Name": s.name,
                        "Services": s.services.to_string(),
                        "Revision": s.revision,
                        "Orchestrator": "Swarm",
                    })
                    .to_string()
                })
                .collect();
            print_lines(&lines)
        }
        super::Format::Table => print(&format::table(
            &["NAME", "SERVICES", "REVISION", "UPDATED"],
            &stacks
                .iter()
                .map(|s| {
                    vec![
                        s.name.clone(),
                        s.services.to_string(),
                        s.revision.to_string(),
                        format::ago(format::now_ms(), s.updated_at_ms),
                    ]
                })
                .collect::<Vec<_>>(),
        )),
    }
}

async fn history(host: &str, args: &HistoryArgs) -> Result<()> {
    let mut client = Client::connect(host).await?;
    let stack = client
        .get_stack(GetStackRequest {
            name: args.name.clone(),
        })
        .await?
        .stack
        .unwrap_or_default();
    let rows: Vec<Vec<String>> = stack
        .revisions
        .iter()
        .map(|r| {
            let what = if r.rolled_back_to > 0 {
                format!("rollback to {}: ", r.rolled_back_to)
            } else {
                String::new()
            };
            let changes = if r.changes.is_empty() {
                "no change".to_string()
            } else {
                r.changes.join(", ")
            };
            vec![
                r.revision.to_string(),
                format::ago(format::now_ms(), r.deployed_at_ms),
                format!("{what}{changes}"),
            ]
        })
        .collect();
    print(&format::table(&["REVISION", "DEPLOYED", "CHANGES"], &rows))
}

async fn rm(host: &str, args: &RmArgs) -> Result<()> {
    let mut client = Client::connect(host).await?;
    let mut errors = Vec::new();
    for name in &args.names {
        if let Err(e) = remove_one(&mut client, name, args.detach).await {
            errors.push(e);
        }
    }
    super::failures(errors)
}

/// Remove one stack: its services now; then, unless detached, ask again until its
/// networks are gone too (they wait for their tasks to stop) and no container is left.
async fn remove_one(client: &mut Client, name: &str, detach: bool) -> Result<()> {
    let request = || RemoveStackRequest {
        name: name.to_string(),
    };
    let service_ids: std::collections::HashSet<String> = client
        .list_services(ListServicesRequest {})
        .await?
        .services
        .into_iter()
        .filter(|s| s.stack() == Some(name))
        .map(|s| s.id)
        .collect();
    let resp = client.remove_stack(request()).await?;
    for removed in &resp.removed {
        print(&format!("Removing {removed}"))?;
    }
    if detach {
        return Ok(());
    }
    let mut waiting = resp.waiting;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut shown: HashMap<String, ()> = HashMap::new();
    while !waiting.is_empty() {
        for w in &waiting {
            if shown.insert(w.clone(), ()).is_none() {
                eprintln!("Waiting for {w}");
            }
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "stack {name}: still waiting after 2m for {}; run `shoal stack rm {name}` again later",
                waiting.join(", ")
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        match client.remove_stack(request()).await {
            Ok(resp) => {
                for removed in &resp.removed {
                    print(&format!("Removing {removed}"))?;
                }
                waiting = resp.waiting;
            }
            // Everything went between two asks.
            Err(e) if e.to_string().contains("not found") => break,
            Err(e) => return Err(e),
        }
    }
    wait::tasks_gone(client, name, &service_ids).await
}

fn config(args: ConfigArgs) -> Result<()> {
    let loaded = load(&args.compose)?;
    let text = shoal_compose::to_yaml(&loaded.document)?;
    // A reader that stops early (`| head`) is not an error.
    match std::io::stdout().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

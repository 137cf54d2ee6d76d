//! `network create|ls|inspect|rm`, printed as docker prints swarm-scoped overlay networks.

use std::collections::BTreeMap;

use anyhow::Result;
use clap::{Args, Subcommand};
use serde::Serialize;
use shoal_proto::{
    CreateNetworkRequest, GetNetworkRequest, IpamConfig, ListNetworksRequest, Network, NetworkSpec,
    RemoveNetworkRequest,
};

use super::{failures, print, print_lines, Format, LsArgs};
use crate::client::Client;
use crate::format;
use crate::parse::{self, flag};

#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a network
    Create(CreateArgs),
    /// Display detailed information on one or more networks
    Inspect(InspectArgs),
    /// List networks
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Remove one or more networks
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Driver to manage the network (only overlay)
    #[arg(short, long, default_value = "overlay")]
    driver: String,
    /// Subnet in CIDR format (default: the next free one of the swarm's address pool)
    #[arg(long, value_name = "CIDR")]
    subnet: Option<String>,
    /// Gateway of the subnet (default: its first address)
    #[arg(long, value_name = "IP")]
    gateway: Option<String>,
    /// Enable manual container attachment
    #[arg(long)]
    attachable: bool,
    /// Restrict external access to the network
    #[arg(long)]
    internal: bool,
    /// Create the routing mesh's ingress network (one per swarm)
    #[arg(long)]
    ingress: bool,
    /// Driver options: encrypted, com.docker.network.driver.mtu=N
    #[arg(short, long = "opt", value_name = "KEY=VALUE", value_parser = flag(parse::key_value))]
    opts: Vec<(String, String)>,
    /// Network labels
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = flag(parse::key_value))]
    labels: Vec<(String, String)>,
    /// Network name
    #[arg(value_name = "NAME")]
    name: String,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Network names, ids or id prefixes
    #[arg(value_name = "NETWORK", required = true)]
    networks: Vec<String>,
    /// Output format: one JSON object per line
    #[arg(short, long, value_enum)]
    format: Option<Format>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Network names, ids or id prefixes
    #[arg(value_name = "NETWORK", required = true)]
    networks: Vec<String>,
}

pub async fn run(host: &str, command: NetworkCommand) -> Result<()> {
    let mut client = Client::connect(host).await?;
    match command {
        NetworkCommand::Create(args) => {
            let network = client
                .create_network(CreateNetworkRequest {
                    spec: Some(spec_from(args)),
                })
                .await?
                .network
                .unwrap_or_default();
            print(&network.id)
        }
        NetworkCommand::Ls(args) => {
            let mut networks = client.list_networks(ListNetworksRequest {}).await?.networks;
            networks.sort_by(|a, b| a.name().cmp(b.name()));
            if args.quiet {
                let ids: Vec<String> = networks.iter().map(|n| short_id(&n.id)).collect();
                return print_lines(&ids);
            }
            let rows: Vec<ListView> = networks.iter().map(list_view).collect();
            match args.format {
                Format::Json => print_lines(
                    &rows
                        .iter()
                        .map(format::json_line)
                        .collect::<Result<Vec<_>>>()?,
                ),
                Format::Table => print(&format::table(
                    &["NETWORK ID", "NAME", "DRIVER", "SCOPE"],
                    &rows
                        .iter()
                        .map(|r| {
                            vec![
                                short_id(&r.id),
                                r.name.clone(),
                                r.driver.clone(),
                                r.scope.into(),
                            ]
                        })
                        .collect::<Vec<_>>(),
                )),
            }
        }
        NetworkCommand::Inspect(args) => {
            let mut found = Vec::new();
            let mut errors = Vec::new();
            for key in &args.networks {
                let request = GetNetworkRequest {
                    network: key.clone(),
                };
                match client.get_network(request).await {
                    Ok(resp) => found.push(inspect_view(
                        &resp.network.unwrap_or_default(),
                        resp.services,
                    )),
                    Err(e) => errors.push(e),
                }
            }
            if args.format == Some(Format::Json) {
                print_lines(
                    &found
                        .iter()
                        .map(format::json_line)
                        .collect::<Result<Vec<_>>>()?,
                )?;
            } else {
                print(&format::json_pretty(&found)?)?;
            }
            failures(errors)
        }
        NetworkCommand::Rm(args) => {
            let mut errors = Vec::new();
            for key in &args.networks {
                let request = RemoveNetworkRequest {
                    network: key.clone(),
                };
                match client.remove_network(request).await {
                    Ok(_) => print(key)?,
                    Err(e) => errors.push(e),
                }
            }
            failures(errors)
        }
    }
}

fn spec_from(args: CreateArgs) -> NetworkSpec {
    NetworkSpec {
        name: args.name,
        labels: args.labels.into_iter().collect(),
        driver: args.driver,
        ipam: Some(IpamConfig {
            subnet: args.subnet.unwrap_or_default(),
            gateway: args.gateway.unwrap_or_default(),
        }),
        attachable: args.attachable,
        internal: args.internal,
        ingress: args.ingress,
        driver_opts: args.opts.into_iter().collect(),
    }
}

/// docker's 12-character network id.
fn short_id(id: &str) -> String {
    id.chars().take(12).collect()
}

/// A row of `network ls --format json`, with docker's keys.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ListView {
    created_at: String,
    driver: String,
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "IPv6")]
    ipv6: bool,
    internal: bool,
    labels: String,
    name: String,
    scope: &'static str,
}

fn list_view(n: &Network) -> ListView {
    let spec = n.spec.clone().unwrap_or_default();
    let labels: BTreeMap<_, _> = spec.labels.iter().collect();
    ListView {
        created_at: format::rfc3339(n.meta.as_ref().map_or(0, |m| m.created_at_ms)),
        driver: spec.driver.clone(),
        id: n.id.clone(),
        ipv6: false,
        internal: spec.internal,
        labels: labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
        name: spec.name,
        scope: "swarm",
    }
}

/// `network inspect`, with docker's keys; `Services` names the services attached.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct InspectView {
    name: String,
    id: String,
    created: String,
    scope: &'static str,
    driver: String,
    #[serde(rename = "EnableIPv6")]
    enable_ipv6: bool,
    #[serde(rename = "IPAM")]
    ipam: IpamView,
    internal: bool,
    attachable: bool,
    ingress: bool,
    options: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    services: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct IpamView {
    driver: &'static str,
    config: Vec<IpamConfigView>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct IpamConfigView {
    subnet: String,
    gateway: String,
}

fn inspect_view(n: &Network, services: Vec<String>) -> InspectView {
    let spec = n.spec.clone().unwrap_or_default();
    let allocation = n.allocation.clone().unwrap_or_default();
    let mut options: BTreeMap<String, String> = spec.driver_opts.clone().into_iter().collect();
    options.insert(
        "com.docker.network.driver.overlay.vxlanid_list".into(),
        allocation.vni.to_string(),
    );
    InspectView {
        name: spec.name.clone(),
        id: n.id.clone(),
        created: format::rfc3339(n.meta.as_ref().map_or(0, |m| m.created_at_ms)),
        scope: "swarm",
        driver: spec.driver.clone(),
        enable_ipv6: false,
        ipam: IpamView {
            driver: "default",
            config: vec![IpamConfigView {
                subnet: allocation.subnet,
                gateway: allocation.gateway,
            }],
        },
        internal: spec.internal,
        attachable: spec.attachable,
        ingress: spec.ingress,
        options,
        labels: spec.labels.into_iter().collect(),
        services,
    }
}

//! `secret create|ls|inspect|rm` and `config create|ls|inspect|rm`, as docker's: content
//! from a file or stdin (`-`); a secret's content is never shown again.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::json;
use shoal_proto::{
    ConfigSpec, CreateConfigRequest, CreateSecretRequest, GetConfigRequest, GetSecretRequest,
    ListConfigsRequest, ListSecretsRequest, Meta, RemoveConfigRequest, RemoveSecretRequest,
    SecretSpec,
};

use super::{failures, print, print_lines, Format};
use crate::client::Client;
use crate::format;
use crate::parse::{self, flag};

#[derive(Debug, Subcommand)]
pub enum FileCommand {
    /// Create from a file, or from stdin with "-"
    Create(CreateArgs),
    /// Display detailed information (never a secret's content)
    Inspect(InspectArgs),
    /// List them
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Remove one or more (refused while a service uses it)
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Labels
    #[arg(short, long = "label", value_name = "KEY=VALUE", value_parser = flag(parse::key_value))]
    labels: Vec<(String, String)>,
    /// Name
    #[arg(value_name = "NAME")]
    name: String,
    /// File with the content, or "-" for stdin
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Names, ids or id prefixes
    #[arg(value_name = "NAME", required = true)]
    names: Vec<String>,
    /// Print the information in a human friendly format
    #[arg(long)]
    pretty: bool,
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
pub struct RmArgs {
    /// Names, ids or id prefixes
    #[arg(value_name = "NAME", required = true)]
    names: Vec<String>,
}

/// Which of the two the command is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Secret,
    Config,
}

/// One secret or config as the CLI shows it.
#[derive(Default)]
struct Shown {
    id: String,
    name: String,
    labels: std::collections::HashMap<String, String>,
    meta: Option<Meta>,
    version: u64,
    /// A config's content (a secret's never comes back).
    data: Option<Vec<u8>>,
    services: Vec<String>,
}

impl Shown {
    fn secret(s: shoal_proto::Secret, services: Vec<String>) -> Self {
        let spec = s.spec.unwrap_or_default();
        Shown {
            id: s.id,
            name: spec.name,
            labels: spec.labels,
            meta: s.meta,
            version: s.version,
            data: None,
            services,
        }
    }

    fn config(c: shoal_proto::Config, services: Vec<String>) -> Self {
        let spec = c.spec.unwrap_or_default();
        Shown {
            id: c.id,
            name: spec.name,
            labels: spec.labels,
            meta: c.meta,
            version: c.version,
            data: Some(spec.data),
            services,
        }
    }
}

fn read_content(file: &PathBuf) -> Result<Vec<u8>> {
    if file.as_os_str() == "-" {
        let mut data = Vec::new();
        std::io::stdin()
            .read_to_end(&mut data)
            .context("reading the content from stdin")?;
        return Ok(data);
    }
    std::fs::read(file).with_context(|| format!("reading {}", file.display()))
}

pub async fn run(host: &str, kind: Kind, command: FileCommand) -> Result<()> {
    match command {
        FileCommand::Create(args) => {
            let data = read_content(&args.file)?;
            if data.is_empty() {
                bail!("{} is empty: give it some content", args.file.display());
            }
            let labels = args.labels.into_iter().collect();
            let mut client = Client::connect(host).await?;
            let id = match kind {
                Kind::Secret => client
                    .create_secret(CreateSecretRequest {
                        spec: Some(SecretSpec {
                            name: args.name,
                            labels,
                            data,
                        }),
                    })
                    .await?
                    .secret
                    .map(|s| s.id),
                Kind::Config => client
                    .create_config(CreateConfigRequest {
                        spec: Some(ConfigSpec {
                            name: args.name,
                            labels,
                            data,
                        }),
                    })
                    .await?
                    .config
                    .map(|c| c.id),
            };
            print(&id.unwrap_or_default())
        }
        FileCommand::Ls(args) => {
            let mut client = Client::connect(host).await?;
            let mut all = list(&mut client, kind).await?;
            all.sort_by(|a, b| a.name.cmp(&b.name));
            if args.quiet {
                return print_lines(&all.iter().map(|s| s.id.clone()).collect::<Vec<_>>());
            }
            let now = format::now_ms();
            let when = |m: &Option<Meta>, created: bool| {
                let at = m.as_ref().map_or(0, |m| {
                    if created {
                        m.created_at_ms
                    } else {
                        m.updated_at_ms
                    }
                });
                format::ago(now, at)
            };
            match args.format {
                Format::Json => print_lines(
                    &all.iter()
                        .map(|s| {
                            json!({
                                "ID": s.id,
                                "Name": s.name,
                                "CreatedAt": when(&s.meta, true),
                                "UpdatedAt": when(&s.meta, false),
                            })
                            .to_string()
                        })
                        .collect::<Vec<_>>(),
                ),
                Format::Table => print(&format::table(
                    &["ID", "NAME", "CREATED", "UPDATED"],
                    &all.iter()
                        .map(|s| {
                            vec![
                                s.id.clone(),
                                s.name.clone(),
                                when(&s.meta, true),
                                when(&s.meta, false),
                            ]
                        })
                        .collect::<Vec<_>>(),
                )),
            }
        }
        FileCommand::Inspect(args) => {
            let mut client = Client::connect(host).await?;
            let mut out = Vec::new();
            for name in &args.names {
                let s = get(&mut client, kind, name).await?;
                if args.pretty {
                    out.push(format!(
                        "ID:              {}\nName:            {}\nVersion:         {}\nUsed by:         {}",
                        s.id,
                        s.name,
                        s.version,
                        s.services.join(", ")
                    ));
                } else {
                    let mut spec = json!({ "Name": s.name, "Labels": s.labels });
                    if let Some(data) = &s.data {
                        spec["Data"] = json!(base64(data));
                    }
                    out.push(
                        serde_json::to_string_pretty(&json!({
                            "ID": s.id,
                            "Version": { "Index": s.version },
                            "CreatedAt": s.meta.as_ref().map_or(0, |m| m.created_at_ms),
                            "UpdatedAt": s.meta.as_ref().map_or(0, |m| m.updated_at_ms),
                            "Spec": spec,
                            "Services": s.services,
                        }))
                        .context("printing")?,
                    );
                }
            }
            print_lines(&out)
        }
        FileCommand::Rm(args) => {
            let mut client = Client::connect(host).await?;
            let mut errors = Vec::new();
            for name in &args.names {
                let result = match kind {
                    Kind::Secret => client
                        .remove_secret(RemoveSecretRequest {
                            secret: name.clone(),
                        })
                        .await
                        .map(|_| ()),
                    Kind::Config => client
                        .remove_config(RemoveConfigRequest {
                            config: name.clone(),
                        })
                        .await
                        .map(|_| ()),
                };
                match result {
                    Ok(()) => print(name)?,
                    Err(e) => errors.push(e),
                }
            }
            failures(errors)
        }
    }
}

async fn list(client: &mut Client, kind: Kind) -> Result<Vec<Shown>> {
    Ok(match kind {
        Kind::Secret => client
            .list_secrets(ListSecretsRequest {})
            .await?
            .secrets
            .into_iter()
            .map(|s| Shown::secret(s, Vec::new()))
            .collect(),
        Kind::Config => client
            .list_configs(ListConfigsRequest {})
            .await?
            .configs
            .into_iter()
            .map(|c| Shown::config(c, Vec::new()))
            .collect(),
    })
}

async fn get(client: &mut Client, kind: Kind, key: &str) -> Result<Shown> {
    Ok(match kind {
        Kind::Secret => {
            let resp = client
                .get_secret(GetSecretRequest {
                    secret: key.to_string(),
                })
                .await?;
            Shown::secret(resp.secret.unwrap_or_default(), resp.services)
        }
        Kind::Config => {
            let resp = client
                .get_config(GetConfigRequest {
                    config: key.to_string(),
                })
                .await?;
            Shown::config(resp.config.unwrap_or_default(), resp.services)
        }
    })
}

/// Standard base64, as docker prints a config's data.
fn base64(data: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(TABLE[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_as_docker_prints_data() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"hello world"), "aGVsbG8gd29ybGQ=");
    }
}

//! Loading a compose file as `stack config` shows it: read, `.env` beside it (or
//! `--env-file`), keys checked, variables interpolated, services outside the active
//! profiles dropped, `env_file:` entries checked to exist. Every problem names its file
//! and line; what Shoal reads past comes back as warnings.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

use crate::de::from_node;
use crate::env::{parse_env_file, EnvError};
use crate::keys::{check_keys, UnknownKey};
use crate::model::Compose;
use crate::resolve::{interpolate_tree, Place, ResolveError};
use crate::yaml::{parse, Node, Pos, Value};

/// A loaded document, what it means, and what the user should know about it.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The (first) compose file, as given.
    pub file: String,
    /// Where relative paths in it start: its directory.
    pub dir: PathBuf,
    pub document: Node,
    pub compose: Compose,
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("{file}: {error}")]
    Env { file: String, error: EnvError },
    #[error("{place}: {message}")]
    Yaml { place: Place, message: String },
    #[error(transparent)]
    Key(#[from] UnknownKey),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error("{place}: {message}")]
    Invalid { place: Place, message: String },
    #[error("{0}")]
    NotYet(String),
}

/// What to load: the `-c` files, `--env-file`, `--profile`s, and the environment.
pub struct Request<'a> {
    pub files: &'a [PathBuf],
    pub env_file: Option<&'a Path>,
    pub profiles: &'a [String],
    pub environment: &'a dyn Fn(&str) -> Option<String>,
}

/// Load `request` into one resolved document.
pub fn load(request: &Request<'_>) -> Result<Loaded, LoadError> {
    let [file] = request.files else {
        return Err(LoadError::NotYet(format!(
            "{} compose files given: merging several -c files is not supported yet in this version of Shoal; give one",
            request.files.len()
        )));
    };
    let name = file.display().to_string();
    let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let text = read(file)?;
    let dotenv = match request.env_file {
        Some(path) => Some(path.to_path_buf()),
        None => Some(dir.join(".env")).filter(|p| p.is_file()),
    };
    let mut variables: HashMap<String, String> = HashMap::new();
    if let Some(path) = dotenv {
        let env_text = read(&path)?;
        let env =
            parse_env_file(&env_text, request.environment).map_err(|error| LoadError::Env {
                file: path.display().to_string(),
                error,
            })?;
        variables.extend(env);
    }
    // The environment wins over the .env file, as compose has it.
    let lookup = |name: &str| (request.environment)(name).or_else(|| variables.get(name).cloned());
    let doc = parse(&text).map_err(|e| LoadError::Yaml {
        place: Place {
            file: name.clone(),
            pos: e.pos,
        },
        message: e.message,
    })?;
    let mut warnings: Vec<String> = check_keys(&doc, &name)?
        .iter()
        .map(ToString::to_string)
        .collect();
    let (mut doc, unset) = interpolate_tree(&doc, &name, &lookup)?;
    warnings.extend(unset.iter().map(ToString::to_string));
    keep_active_profiles(&mut doc, request.profiles);
    check_services(&doc, &name, &dir)?;
    let compose = read_model(&doc, &name)?;
    Ok(Loaded {
        file: name,
        dir,
        document: doc,
        compose,
        warnings,
    })
}

/// The typed model of a resolved document; a value it cannot take is an error at its
/// line and column, naming its path.
fn read_model(doc: &Node, file: &str) -> Result<Compose, LoadError> {
    let mut bare = doc.clone();
    drop_extensions(&mut bare);
    from_node::<Compose>(&bare).map_err(|e| {
        let path = e.path_text();
        LoadError::Invalid {
            place: place(file, e.pos.unwrap_or(doc.pos)),
            message: if path.is_empty() {
                e.message
            } else {
                format!("{path}: {}", e.message)
            },
        }
    })
}

/// `x-*` keys (compose's extensions) go, at every level.
fn drop_extensions(node: &mut Node) {
    match &mut node.value {
        Value::Map(entries) => {
            entries.retain(|(k, _)| !k.name.starts_with("x-"));
            entries.iter_mut().for_each(|(_, v)| drop_extensions(v));
        }
        Value::Seq(items) => items.iter_mut().for_each(drop_extensions),
        _ => {}
    }
}

fn read(path: &Path) -> Result<String, LoadError> {
    std::fs::read_to_string(path).map_err(|error| LoadError::Read {
        path: path.display().to_string(),
        error,
    })
}

fn services_mut(doc: &mut Node) -> Option<&mut Vec<(crate::yaml::Key, Node)>> {
    let Value::Map(top) = &mut doc.value else {
        return None;
    };
    let (_, services) = top.iter_mut().find(|(k, _)| k.name == "services")?;
    match &mut services.value {
        Value::Map(s) => Some(s),
        _ => None,
    }
}

fn get<'a>(node: &'a Node, key: &str) -> Option<&'a Node> {
    node.get(key)
}

/// Services whose `profiles` name none of the active ones go, as compose drops them.
fn keep_active_profiles(doc: &mut Node, active: &[String]) {
    let Some(services) = services_mut(doc) else {
        return;
    };
    services.retain(
        |(_, service)| match get(service, "profiles").map(|p| &p.value) {
            Some(Value::Seq(names)) => names.iter().any(|n| match &n.value {
                Value::Str(s) => active.contains(s),
                _ => false,
            }),
            _ => true,
        },
    );
}

/// What only the file system can tell: every `env_file:` a service names exists.
fn check_services(doc: &Node, file: &str, dir: &Path) -> Result<(), LoadError> {
    let Some(Value::Map(services)) = get(doc, "services").map(|s| &s.value) else {
        return Ok(());
    };
    for (name, service) in services {
        if let Some(extends) = get(service, "extends") {
            return Err(LoadError::Invalid {
                place: place(file, extends.pos),
                message: format!(
                    "services.{}.extends is not supported yet in this version of Shoal: write the service out in full",
                    name.name
                ),
            });
        }
        let Some(env_files) = get(service, "env_file") else {
            continue;
        };
        let entries: Vec<(&Node, bool)> = match &env_files.value {
            Value::Str(_) => vec![(env_files, true)],
            Value::Seq(items) => items
                .iter()
                .map(|item| match get(item, "path") {
                    Some(path) => {
                        let required = !matches!(
                            get(item, "required").map(|r| &r.value),
                            Some(Value::Bool(false))
                        );
                        (path, required)
                    }
                    None => (item, true),
                })
                .collect(),
            _ => Vec::new(),
        };
        for (entry, required) in entries {
            let Value::Str(path) = &entry.value else {
                continue;
            };
            if required && !dir.join(path).is_file() {
                return Err(LoadError::Invalid {
                    place: place(file, entry.pos),
                    message: format!(
                        "services.{}.env_file {path} not found (looked in {}): create it, or remove it from env_file",
                        name.name,
                        dir.join(path).display()
                    ),
                });
            }
        }
    }
    Ok(())
}

fn place(file: &str, pos: Pos) -> Place {
    Place {
        file: file.to_string(),
        pos,
    }
}

impl Serialize for Node {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.value {
            Value::Null => serializer.serialize_unit(),
            Value::Bool(b) => serializer.serialize_bool(*b),
            Value::Int(i) => serializer.serialize_i64(*i),
            Value::Float(f) => serializer.serialize_f64(*f),
            Value::Str(s) => serializer.serialize_str(s),
            Value::Seq(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Value::Map(entries) => {
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (key, value) in entries {
                    map.serialize_entry(&key.name, value)?;
                }
                map.end()
            }
        }
    }
}

/// The document as YAML text.
pub fn to_yaml(doc: &Node) -> Result<String, LoadError> {
    serde_saphyr::to_string(doc)
        .map_err(|e| LoadError::NotYet(format!("printing the document: {e}")))
}

impl fmt::Display for Loaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match to_yaml(&self.document) {
            Ok(text) => f.write_str(&text),
            Err(e) => write!(f, "{e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("written");
        path
    }

    #[test]
    fn a_file_is_resolved_with_its_env_and_profiles() {
        let dir = std::env::temp_dir().join(format!("shoal-compose-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        write(&dir, ".env", "TAG=1.2\n");
        write(&dir, "web.env", "A=1\n");
        let file = write(
            &dir,
            "stack.yml",
            "services:\n  web:\n    image: web:${TAG}\n    env_file: web.env\n    build: .\n  \
             debug:\n    image: busybox\n    profiles: [debug]\n",
        );
        let files = [file.clone()];
        let environment = |_: &str| None;
        let request = Request {
            files: &files,
            env_file: None,
            profiles: &[],
            environment: &environment,
        };
        let loaded = load(&request).expect("loads");
        let text = loaded.to_string();
        assert!(text.contains("image: web:1.2"), "{text}");
        assert!(!text.contains("debug"), "not an active profile: {text}");
        assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
        assert!(
            loaded.warnings[0].ends_with("services.web.build is not applied by Shoal (ignored)")
        );
        let debug = [String::from("debug")];
        let loaded = load(&Request {
            profiles: &debug,
            ..request
        })
        .expect("loads");
        assert!(loaded.to_string().contains("debug"));

        let missing = write(
            &dir,
            "missing.yml",
            "services:\n  web:\n    image: a\n    env_file:\n      - nope.env\n",
        );
        let files = [missing];
        let err = load(&Request {
            files: &files,
            env_file: None,
            profiles: &[],
            environment: &environment,
        })
        .expect_err("missing env_file")
        .to_string();
        assert!(
            err.contains("missing.yml:5:9: services.web.env_file nope.env not found"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

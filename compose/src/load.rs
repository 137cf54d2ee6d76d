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
use crate::merge::{merge_documents, merge_service};
use crate::model::Compose;
use crate::resolve::{interpolate_tree, Place, ResolveError};
use crate::yaml::{parse, stamp_file, Node, Pos, Value};

/// A loaded document, what it means, and what the user should know about it.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The (first) compose file, as given.
    pub file: String,
    /// Every file read, by the index positions carry (`-c` files in order, then the files
    /// `extends` named).
    pub files: Vec<String>,
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

/// Load `request` into one resolved document: each file read, its keys checked and its
/// variables interpolated, the files merged in order, `extends` resolved, inactive
/// profiles dropped, then the typed model read.
pub fn load(request: &Request<'_>) -> Result<Loaded, LoadError> {
    let Some(first) = request.files.first() else {
        return Err(LoadError::NotYet(
            "no compose file given: name one with -c FILE".into(),
        ));
    };
    let dir = first.parent().map(Path::to_path_buf).unwrap_or_default();
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
    let mut files = Files {
        names: Vec::new(),
        warnings: Vec::new(),
        lookup: &lookup,
    };
    let mut doc: Option<Node> = None;
    for file in request.files {
        let next = files.read(file)?;
        doc = Some(match doc {
            None => next,
            Some(base) => merge_documents(base, next),
        });
    }
    let mut doc = doc.unwrap_or_else(|| Node {
        pos: Pos::default(),
        value: Value::Map(Vec::new()),
    });
    resolve_extends(&mut doc, &mut files)?;
    keep_active_profiles(&mut doc, request.profiles);
    check_services(&doc, &files.names, &dir)?;
    let compose = read_model(&doc, &files.names)?;
    Ok(Loaded {
        file: files.names[0].clone(),
        files: files.names,
        dir,
        document: doc,
        compose,
        warnings: files.warnings,
    })
}

/// The files read so far (a position's `file` indexes `names`), and what to tell the user.
struct Files<'a> {
    names: Vec<String>,
    warnings: Vec<String>,
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl Files<'_> {
    /// One file parsed, its keys checked and its variables interpolated.
    fn read(&mut self, path: &Path) -> Result<Node, LoadError> {
        let name = path.display().to_string();
        let index = u16::try_from(self.names.len())
            .map_err(|_| LoadError::NotYet("too many compose files".into()))?;
        self.names.push(name.clone());
        let text = read(path)?;
        let mut doc = parse(&text).map_err(|e| LoadError::Yaml {
            place: Place {
                file: name.clone(),
                pos: e.pos,
            },
            message: e.message,
        })?;
        stamp_file(&mut doc, index);
        self.warnings
            .extend(check_keys(&doc, &name)?.iter().map(ToString::to_string));
        let (doc, unset) = interpolate_tree(&doc, &name, self.lookup)?;
        self.warnings.extend(unset.iter().map(ToString::to_string));
        Ok(doc)
    }

    fn place(&self, pos: Pos) -> Place {
        place(&self.names, pos)
    }
}

/// Every service's `extends` replaced by the service it extends, merged under it (in this
/// file, or another one relative to the file that names it).
fn resolve_extends(doc: &mut Node, files: &mut Files<'_>) -> Result<(), LoadError> {
    let Some(services) = services_mut(doc) else {
        return Ok(());
    };
    let snapshot = services.clone();
    for (name, service) in services.iter_mut() {
        if service.get("extends").is_some() {
            let mut chain = Vec::new();
            *service = extended(&name.name, service.clone(), &snapshot, files, &mut chain)?;
        }
    }
    Ok(())
}

/// `service` (named `name`, among `siblings` of its own file) with its `extends` resolved.
fn extended(
    name: &str,
    service: Node,
    siblings: &[(crate::yaml::Key, Node)],
    files: &mut Files<'_>,
    chain: &mut Vec<String>,
) -> Result<Node, LoadError> {
    let Some(extends) = service.get("extends").cloned() else {
        return Ok(service);
    };
    let invalid = |files: &Files<'_>, message: String| LoadError::Invalid {
        place: files.place(extends.pos),
        message,
    };
    let text = |node: Option<&Node>| match node.map(|n| &n.value) {
        Some(Value::Str(s)) => Some(s.clone()),
        _ => None,
    };
    let (base_name, base_file) = match &extends.value {
        Value::Str(s) => (s.clone(), None),
        Value::Map(_) => match text(extends.get("service")) {
            Some(s) => (s, text(extends.get("file"))),
            None => {
                return Err(invalid(
                    files,
                    format!(
                    "services.{name}.extends needs service: NAME (and file: PATH for another file)"
                ),
                ))
            }
        },
        _ => {
            return Err(invalid(
                files,
                format!("services.{name}.extends: give a service name, or {{service, file}}"),
            ))
        }
    };
    let link = format!(
        "{}:{base_name}",
        base_file
            .clone()
            .unwrap_or_else(|| files.names[usize::from(extends.pos.file)].clone())
    );
    if chain.contains(&link) || chain.len() > 16 {
        chain.push(link);
        return Err(invalid(
            files,
            format!(
                "services.{name}.extends makes a cycle: {}",
                chain.join(" -> ")
            ),
        ));
    }
    chain.push(link);
    let (base_siblings, where_) = match base_file {
        None => (siblings.to_vec(), "this file".to_string()),
        Some(file) => {
            let here = Path::new(&files.names[usize::from(extends.pos.file)])
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default();
            let other = files.read(&here.join(&file))?;
            let others = match other.get("services").map(|s| &s.value) {
                Some(Value::Map(entries)) => entries.clone(),
                _ => Vec::new(),
            };
            (others, file)
        }
    };
    let base = base_siblings
        .iter()
        .find(|(k, _)| k.name == base_name)
        .map(|(_, n)| n.clone())
        .ok_or_else(|| {
            invalid(
                files,
                format!("services.{name}.extends: there is no service {base_name} in {where_}"),
            )
        })?;
    let base = extended(&base_name, base, &base_siblings, files, chain)?;
    let mut over = service;
    if let Value::Map(entries) = &mut over.value {
        entries.retain(|(k, _)| k.name != "extends");
    }
    Ok(merge_service(name, base, over))
}

/// The typed model of a resolved document; a value it cannot take is an error at its
/// line and column, naming its path.
fn read_model(doc: &Node, names: &[String]) -> Result<Compose, LoadError> {
    let mut bare = doc.clone();
    drop_extensions(&mut bare);
    from_node::<Compose>(&bare).map_err(|e| {
        let path = e.path_text();
        LoadError::Invalid {
            place: place(names, e.pos.unwrap_or(doc.pos)),
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

/// Services whose `profiles` name none of the active ones go, as compose drops them.
fn keep_active_profiles(doc: &mut Node, active: &[String]) {
    let Some(services) = services_mut(doc) else {
        return;
    };
    services.retain(
        |(_, service)| match service.get("profiles").map(|p| &p.value) {
            Some(Value::Seq(names)) => names.iter().any(|n| match &n.value {
                Value::Str(s) => active.contains(s),
                _ => false,
            }),
            _ => true,
        },
    );
}

/// What only the file system can tell: every `env_file:` a service names exists.
fn check_services(doc: &Node, names: &[String], dir: &Path) -> Result<(), LoadError> {
    let Some(Value::Map(services)) = doc.get("services").map(|s| &s.value) else {
        return Ok(());
    };
    for (name, service) in services {
        let Some(env_files) = service.get("env_file") else {
            continue;
        };
        let entries: Vec<(&Node, bool)> = match &env_files.value {
            Value::Str(_) => vec![(env_files, true)],
            Value::Seq(items) => items
                .iter()
                .map(|item| match item.get("path") {
                    Some(path) => {
                        let required = !matches!(
                            item.get("required").map(|r| &r.value),
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
                    place: place(names, entry.pos),
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

/// Where `pos` is, by the name of the file it is in.
fn place(names: &[String], pos: Pos) -> Place {
    Place {
        file: names
            .get(usize::from(pos.file))
            .cloned()
            .unwrap_or_default(),
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

impl Loaded {
    /// "file:line:column" of `pos`.
    pub fn place(&self, pos: Pos) -> String {
        place(&self.files, pos).to_string()
    }
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

    /// `files` loaded with no variable set and no profile.
    fn load_files(files: &[PathBuf]) -> Result<Loaded, LoadError> {
        load(&Request {
            files,
            env_file: None,
            profiles: &[],
            environment: &|_: &str| None,
        })
    }

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
        let err = load_files(&files)
            .expect_err("missing env_file")
            .to_string();
        assert!(
            err.contains("missing.yml:5:9: services.web.env_file nope.env not found"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn several_files_merge_in_order_and_extends_pulls_a_service_in() {
        let dir = std::env::temp_dir().join(format!("shoal-compose-merge-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("common")).expect("dir");
        let base = write(
            &dir,
            "base.yml",
            "services:\n  web:\n    extends: app\n    image: web:1\n    ports: ['80:80']\n  \
             app:\n    image: app:1\n    environment: [A=1]\n    deploy: {replicas: 2}\n  \
             worker:\n    extends:\n      file: common/base.yml\n      service: runner\n",
        );
        write(
            &dir.join("common"),
            "base.yml",
            "services:\n  runner:\n    extends: root\n    command: run\n  root:\n    image: runner:1\n    labels: [tier=back]\n",
        );
        let over = write(
            &dir,
            "prod.yml",
            "services:\n  web:\n    image: web:2\n    environment: {B: '2'}\n    deploy: {replicas: 5}\n",
        );
        let files = [base.clone(), over];
        let loaded = load_files(&files).expect("loads");
        let web = &loaded.compose.services["web"];
        assert_eq!(web.image.as_deref(), Some("web:2"), "the later file wins");
        let env: Vec<_> = web.environment.with_values().collect();
        assert_eq!(env, [("A", "1"), ("B", "2")], "extended, then merged");
        assert_eq!(web.deploy.as_ref().and_then(|d| d.replicas), Some(5));
        let worker = &loaded.compose.services["worker"];
        assert_eq!(
            worker.image.as_deref(),
            Some("runner:1"),
            "through two extends"
        );
        assert_eq!(
            worker.command.as_ref().map(|c| c.0.clone()),
            Some(vec!["run".to_string()])
        );
        assert!(!loaded.to_string().contains("extends"), "{loaded}");
        // Positions name the file a value came from.
        let image = loaded.document.nearest(&["services", "web", "image"]);
        assert!(loaded
            .place(image.pos)
            .starts_with(&files[1].display().to_string()));

        let cycle = write(
            &dir,
            "cycle.yml",
            "services:\n  a:\n    extends: b\n  b:\n    extends: a\n",
        );
        let files = [cycle];
        let e = load_files(&files).expect_err("a cycle").to_string();
        assert!(e.contains("extends makes a cycle"), "{e}");
        assert!(e.contains("cycle.yml:"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! Secrets and configs on this node. Their content arrives with the node's assignments
//! (only what its tasks use) and is kept in memory; for each task it is written into a
//! tmpfs shoald mounts for itself, never onto a disk, and bind-mounted read-only into the
//! task's container: secrets at `/run/secrets/TARGET`, configs at their target. A task's
//! files go with its container.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use shoal_proto::{ContainerSpec, FileContent, FileReference, Task};

/// Where secrets appear in a container.
pub const SECRETS_DIR: &str = "/run/secrets";

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("preparing {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("mounting a tmpfs on {path} for secrets: {message}")]
    Mount { path: PathBuf, message: String },
    #[error("{kind} {name} has not reached this node (it is sent with the task): retrying")]
    Missing { kind: &'static str, name: String },
    #[error("{kind} {name}: {message}")]
    Invalid {
        kind: &'static str,
        name: String,
        message: String,
    },
}

/// One file for a container: where it is on the node, where it goes in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMount {
    pub source: PathBuf,
    pub target: String,
}

/// (kind, id) -> (version, content): what the node's tasks use now.
type Content = HashMap<(String, String), (u64, Vec<u8>)>;

/// The node's secrets and configs, and the tmpfs their files are written to.
#[derive(Debug)]
pub struct TaskFiles {
    root: PathBuf,
    content: Mutex<Content>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FilesError + '_ {
    move |error| FilesError::Io {
        path: path.to_path_buf(),
        error,
    }
}

impl TaskFiles {
    /// Use `root` for the files, a tmpfs mounted there now unless one is already.
    pub fn open(root: &Path) -> Result<Self, FilesError> {
        std::fs::create_dir_all(root).map_err(io(root))?;
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700)).map_err(io(root))?;
        if !is_tmpfs(root) {
            let out = std::process::Command::new("mount")
                .args([
                    "-t",
                    "tmpfs",
                    "-o",
                    "mode=0700,size=64m,nosuid,nodev,noexec",
                ])
                .arg("shoal-files")
                .arg(root)
                .output()
                .map_err(|e| FilesError::Mount {
                    path: root.to_path_buf(),
                    message: e.to_string(),
                })?;
            if !out.status.success() {
                return Err(FilesError::Mount {
                    path: root.to_path_buf(),
                    message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                });
            }
        }
        Ok(Self::in_memory_at(root))
    }

    /// Files under `root` as it is (tests: a directory of their own).
    pub fn in_memory_at(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            content: Mutex::new(HashMap::new()),
        }
    }

    /// The content the node's tasks use now (replaces what was known).
    pub fn update(&self, files: Vec<FileContent>) {
        let map = files
            .into_iter()
            .map(|f| ((f.kind, f.id), (f.version, f.data)))
            .collect();
        *self.content.lock().unwrap_or_else(|p| p.into_inner()) = map;
    }

    fn task_dir(&self, task_id: &str) -> PathBuf {
        self.root.join(sanitize(task_id))
    }

    /// Write `task`'s secrets and configs into its directory; the bind mounts its container
    /// needs.
    pub fn materialize(
        &self,
        task: &Task,
        spec: &ContainerSpec,
    ) -> Result<Vec<FileMount>, FilesError> {
        if spec.secrets.is_empty() && spec.configs.is_empty() {
            return Ok(Vec::new());
        }
        let dir = self.task_dir(&task.id);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let mut mounts = Vec::new();
        let kinds: [(&'static str, &[FileReference]); 2] =
            [("secret", &spec.secrets), ("config", &spec.configs)];
        for (kind, refs) in kinds {
            for (i, r) in refs.iter().enumerate() {
                let data = {
                    let content = self.content.lock().unwrap_or_else(|p| p.into_inner());
                    content
                        .get(&(kind.to_string(), r.id.clone()))
                        .map(|(_, d)| d.clone())
                }
                .ok_or_else(|| FilesError::Missing {
                    kind,
                    name: r.name.clone(),
                })?;
                let source = dir.join(format!("{kind}-{i}"));
                write_file(&source, &data, r).map_err(|message| FilesError::Invalid {
                    kind,
                    name: r.name.clone(),
                    message,
                })?;
                let target = if kind == "secret" {
                    format!("{SECRETS_DIR}/{}", r.target)
                } else {
                    r.target.clone()
                };
                mounts.push(FileMount { source, target });
            }
        }
        Ok(mounts)
    }

    /// Forget `task_id`'s files (its container is gone).
    pub fn release(&self, task_id: &str) {
        let dir = self.task_dir(task_id);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(task = task_id, "removing the task's secrets: {e}");
            }
        }
    }
}

/// A task id as a directory name (ids are hex; anything else is replaced).
fn sanitize(id: &str) -> String {
    id.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn write_file(path: &Path, data: &[u8], r: &FileReference) -> Result<(), String> {
    let mode = if r.mode == 0 { 0o444 } else { r.mode };
    // Written fresh each time: a new version of the content replaces the old.
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    file.write_all(data)
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    let id = |s: &str, what: &str| -> Result<Option<u32>, String> {
        if s.is_empty() {
            return Ok(None);
        }
        s.parse::<u32>()
            .map(Some)
            .map_err(|_| format!("{what} {s:?} must be a number (names are not looked up)"))
    };
    let uid = id(&r.uid, "uid")?;
    let gid = id(&r.gid, "gid")?;
    if uid.is_some() || gid.is_some() {
        std::os::unix::fs::chown(path, uid, gid)
            .map_err(|e| format!("owning {}: {e}", path.display()))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("mode of {}: {e}", path.display()))
}

/// Whether `path` is a tmpfs mount point.
fn is_tmpfs(path: &Path) -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return false;
    };
    let want = path.display().to_string();
    mounts.lines().any(|line| {
        let mut fields = line.split_whitespace();
        let (_, point, fstype) = (fields.next(), fields.next(), fields.next());
        point == Some(want.as_str()) && fstype == Some("tmpfs")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tasks_files_are_written_with_their_modes_and_released_with_it() {
        let root = std::env::temp_dir().join(format!("shoal-files-{}", std::process::id()));
        let files = TaskFiles::in_memory_at(&root);
        let spec = ContainerSpec {
            secrets: vec![FileReference {
                id: "s1".into(),
                name: "app_token".into(),
                target: "token".into(),
                mode: 0o400,
                ..Default::default()
            }],
            configs: vec![FileReference {
                id: "c1".into(),
                name: "app_conf".into(),
                target: "/etc/app.conf".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let task = Task {
            id: "t1".into(),
            ..Default::default()
        };
        let missing = files.materialize(&task, &spec).expect_err("no content yet");
        assert!(
            missing
                .to_string()
                .contains("secret app_token has not reached"),
            "{missing}"
        );
        files.update(vec![
            FileContent {
                kind: "secret".into(),
                id: "s1".into(),
                version: 1,
                data: b"hunter2".to_vec(),
            },
            FileContent {
                kind: "config".into(),
                id: "c1".into(),
                version: 1,
                data: b"x=1".to_vec(),
            },
        ]);
        let mounts = files.materialize(&task, &spec).expect("written");
        assert_eq!(mounts[0].target, "/run/secrets/token");
        assert_eq!(mounts[1].target, "/etc/app.conf");
        assert_eq!(
            std::fs::read(&mounts[0].source).expect("secret"),
            b"hunter2"
        );
        let mode = std::fs::metadata(&mounts[0].source)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o400);
        // Again (a restarted prepare): the files are rewritten, not refused.
        files.materialize(&task, &spec).expect("rewritten");
        files.release("t1");
        assert!(!mounts[0].source.exists());
        let _ = std::fs::remove_dir_all(&root);
    }
}

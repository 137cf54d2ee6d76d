//! A register workload over the Control API, recorded for the linearizability checker
//! ([`crate::linear`]): K services with 0 replicas are K registers, each holding its value
//! in the label `v`. Clients, each on a manager's local socket, loop: read a register
//! (`GetService`, linearizable by default), then compare-and-set it (`UpdateService` at the
//! version just read, with a value never written before). A version check passes only if
//! nothing wrote the service since the read, so a write that succeeds expected the value
//! it read: [`RegisterOp::Write`] with `expect`.
//!
//! Outcomes: an answer is recorded as such; a refusal that proves nothing was applied (out
//! of sequence, invalid, not found) is not recorded; anything else (a timeout, a lost
//! connection, no quorum, a leader lost mid-call) is recorded as unknown.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use shoal_proto::{
    ControlClient, CreateServiceRequest, GetServiceRequest, ServiceSpec, UpdateServiceRequest,
};
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::Code;

use crate::fuzz::Rng;
use crate::linear::{self, Recorder, Register, RegisterOp, RegisterOut, Verdict};

/// The label that holds a register's value.
pub const LABEL: &str = "v";
/// Every register's value before the first write.
pub const INITIAL: &str = "0";

/// How long one call may take before its outcome counts as unknown.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// The pause after a call that failed, before the next.
const RETRY: Duration = Duration::from_millis(25);

pub type History = Recorder<RegisterOp, RegisterOut>;

/// The model the registers follow.
pub fn model() -> Register {
    Register {
        initial: INITIAL.into(),
    }
}

/// Where a client sends its calls.
#[derive(Clone)]
pub enum Via {
    /// A shoald's local socket, as the CLI.
    Socket(PathBuf),
    /// A manager's address, over mTLS, as another node (the in-process harness).
    Manager {
        addr: String,
        tls: shoal_pki::TlsClient,
    },
}

impl From<PathBuf> for Via {
    fn from(socket: PathBuf) -> Self {
        Via::Socket(socket)
    }
}

/// A Control API client through `via`.
pub async fn connect_via(via: &Via) -> anyhow::Result<ControlClient<Channel>> {
    match via {
        Via::Socket(path) => Ok(connect(path).await?),
        Via::Manager { addr, tls } => {
            let endpoint = shoal_pki::endpoint(addr)?.timeout(CALL_TIMEOUT);
            Ok(ControlClient::new(
                shoal_pki::channel_with(endpoint, addr, tls).await?,
            ))
        }
    }
}

/// A Control API client on a shoald's local socket (as the CLI's).
pub async fn connect(socket: &Path) -> Result<ControlClient<Channel>, tonic::transport::Error> {
    let path = socket.to_path_buf();
    let channel = Endpoint::from_static("http://localhost")
        .timeout(CALL_TIMEOUT)
        .connect_timeout(Duration::from_secs(2))
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await?;
    Ok(ControlClient::new(channel))
}

fn spec(name: &str, value: &str) -> ServiceSpec {
    ServiceSpec {
        labels: [(LABEL.to_string(), value.to_string())].into(),
        ..crate::sleeping_service(name, 0)
    }
}

/// Create the registers `reg-0` .. `reg-{count-1}`, each holding [`INITIAL`].
pub async fn create(via: impl Into<Via>, count: usize) -> anyhow::Result<Vec<String>> {
    let mut control = connect_via(&via.into()).await?;
    let mut names = Vec::new();
    for k in 0..count {
        let name = format!("reg-{k}");
        control
            .create_service(CreateServiceRequest {
                spec: Some(spec(&name, INITIAL)),
            })
            .await?;
        names.push(name);
    }
    Ok(names)
}

/// What one register read gave: its value and the version to write at.
async fn read(
    control: &mut ControlClient<Channel>,
    key: &str,
) -> Result<(String, u64), tonic::Status> {
    let service = control
        .get_service(GetServiceRequest {
            service: key.into(),
        })
        .await?
        .into_inner()
        .service
        .unwrap_or_default();
    let value = service
        .spec
        .as_ref()
        .and_then(|s| s.labels.get(LABEL).cloned())
        .unwrap_or_default();
    Ok((value, service.version()))
}

/// Whether a refusal proves the call changed nothing.
fn refused(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        Code::Aborted | Code::InvalidArgument | Code::NotFound | Code::AlreadyExists
    )
}

/// Counts of what the clients saw.
#[derive(Default)]
pub struct Tally {
    pub reads: AtomicU64,
    pub writes_acknowledged: AtomicU64,
    pub writes_refused: AtomicU64,
    pub writes_unknown: AtomicU64,
    pub failed_reads: AtomicU64,
    /// Calls that could not even connect (the manager down).
    pub unreachable: AtomicU64,
}

impl Tally {
    pub fn summary(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "{} reads answered ({} failed), writes: {} acknowledged, {} refused out of sequence, \
             {} of unknown outcome; {} connects failed",
            g(&self.reads),
            g(&self.failed_reads),
            g(&self.writes_acknowledged),
            g(&self.writes_refused),
            g(&self.writes_unknown),
            g(&self.unreachable)
        )
    }
}

/// One client: read then compare-and-set a random register, until `stop`.
pub async fn client(
    id: usize,
    via: Via,
    keys: Arc<Vec<String>>,
    history: Arc<History>,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (id as u64 + 1));
    let mut control = None;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let Some(c) = control.as_mut() else {
            match connect_via(&via).await {
                Ok(c) => control = Some(c),
                Err(_) => {
                    tally.unreachable.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(4 * RETRY).await;
                }
            }
            continue;
        };
        let key = &keys[rng.below(keys.len())];
        let call = history.now();
        let (value, version) = match read(c, key).await {
            Ok(found) => found,
            Err(_) => {
                tally.failed_reads.fetch_add(1, Ordering::Relaxed);
                control = None;
                // No leader yet, or this manager cut off: ask again soon, not in a spin.
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        history.done(
            id,
            key,
            call,
            RegisterOp::Read,
            RegisterOut::Read(value.clone()),
        );
        tally.reads.fetch_add(1, Ordering::Relaxed);
        n += 1;
        let new = format!("c{id}-{n}");
        let write = RegisterOp::Write {
            expect: Some(value),
            value: new.clone(),
        };
        let call = history.now();
        let result = c
            .update_service(UpdateServiceRequest {
                service: key.clone(),
                version,
                spec: Some(spec(key, &new)),
            })
            .await;
        match result {
            Ok(_) => {
                history.done(id, key, call, write, RegisterOut::Written);
                tally.writes_acknowledged.fetch_add(1, Ordering::Relaxed);
            }
            Err(status) if refused(&status) => {
                tally.writes_refused.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                history.unknown(id, key, call, write);
                tally.writes_unknown.fetch_add(1, Ordering::Relaxed);
                control = None;
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

/// A final read of every register through `socket` (so that a lost write shows), recorded
/// as client `id`.
pub async fn read_all(
    via: impl Into<Via>,
    id: usize,
    keys: &[String],
    history: &History,
) -> anyhow::Result<()> {
    let mut control = connect_via(&via.into()).await?;
    for key in keys {
        let call = history.now();
        let (value, _) = read(&mut control, key).await?;
        history.done(id, key, call, RegisterOp::Read, RegisterOut::Read(value));
    }
    Ok(())
}

/// Register clients on the current runtime (two per way in), recording one history.
pub struct Workload {
    keys: Arc<Vec<String>>,
    history: Arc<History>,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    clients: Vec<tokio::task::JoinHandle<()>>,
}

impl Workload {
    /// Create `registers` registers through `vias[0]`, then start the clients.
    pub async fn start(vias: &[Via], registers: usize) -> anyhow::Result<Workload> {
        let first = vias.first().ok_or_else(|| anyhow::anyhow!("no way in"))?;
        let keys = Arc::new(create(first.clone(), registers).await?);
        let (history, tally, stop) = (
            Arc::new(History::default()),
            Arc::new(Tally::default()),
            Arc::new(AtomicBool::new(false)),
        );
        let clients = vias
            .iter()
            .cycle()
            .take(vias.len() * 2)
            .enumerate()
            .map(|(id, via)| {
                tokio::spawn(client(
                    id,
                    via.clone(),
                    keys.clone(),
                    history.clone(),
                    tally.clone(),
                    stop.clone(),
                ))
            })
            .collect();
        Ok(Workload {
            keys,
            history,
            tally,
            stop,
            clients,
        })
    }

    /// Writes acknowledged so far.
    pub fn acknowledged(&self) -> u64 {
        self.tally.writes_acknowledged.load(Ordering::Relaxed)
    }

    pub fn summary(&self) -> String {
        self.tally.summary()
    }

    /// Stop the clients, read every register through each of `finals`, and check the
    /// whole history: the verdict, how many operations, and the tally.
    pub async fn finish(self, finals: &[Via]) -> anyhow::Result<(Verdict, usize, String)> {
        self.stop.store(true, Ordering::Relaxed);
        for c in self.clients {
            let _ = c.await;
        }
        for (i, via) in finals.iter().enumerate() {
            read_all(via.clone(), 1000 + i, &self.keys, &self.history).await?;
        }
        let history = self.history.history();
        let verdict = linear::check(&model(), &history, Duration::from_secs(120));
        Ok((verdict, history.len(), self.tally.summary()))
    }
}

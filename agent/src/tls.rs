//! The node's TLS identity as its running member uses it. Renewal swaps the certificate in
//! place: the server presents the new one to new connections, and every new outgoing
//! connection (sessions, Raft peers, forwarded calls) picks up the new client config.
//! Established connections keep going; a certificate is only checked at the handshake.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use shoal_pki::vault::DataKey;
use shoal_pki::{NodeCerts, PkiError, Role, TlsClient, TlsServer};
use shoal_proto::NodeRole;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

/// Renew once less than this share of a certificate's life is left.
const RENEW_AT_REMAINING: f64 = 0.3;
/// Never try to renew more often than this, whatever the clock says.
const MIN_RETRY: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct NodeTls {
    dir: PathBuf,
    /// Seals the node key on disk (the node's data key); clear when `None`.
    data_key: Option<DataKey>,
    certs: Arc<RwLock<NodeCerts>>,
    /// Shared by every channel made from it: a reload reaches their next handshakes.
    client: TlsClient,
    server: TlsServer,
    /// Wakes [`renew_loop`] before the certificate's time (a root CA rotation).
    renew: Arc<Notify>,
    /// Nodes removed from the swarm, refused on this node's own ports (its tunnels).
    refused: shoal_pki::Refused,
    /// Held while certificates are written and swapped: a renewal and a change of trusted
    /// roots never interleave. It holds the roots the swarm last said to trust (sessions):
    /// a renewal's answer may carry older ones (asked for before a rotation ended), and
    /// must not undo the newer.
    installing: Arc<Mutex<Option<String>>>,
}

impl NodeTls {
    /// The certificates stored under `dir`, the key sealed with `data_key` (and kept so,
    /// across renewals).
    pub fn load(dir: &Path, data_key: Option<DataKey>) -> Result<Option<Self>, PkiError> {
        let Some(certs) = NodeCerts::load(dir, data_key.as_ref())? else {
            return Ok(None);
        };
        Ok(Some(Self {
            dir: dir.to_path_buf(),
            data_key,
            client: TlsClient::new(&certs)?,
            server: TlsServer::new(&certs)?,
            certs: Arc::new(RwLock::new(certs)),
            renew: Arc::new(Notify::new()),
            refused: shoal_pki::Refused::default(),
            installing: Arc::new(Mutex::new(None)),
        }))
    }

    /// Dial every outgoing connection through `dialer` (a test harness's links).
    pub fn with_dialer(mut self, dialer: shoal_pki::Dialer) -> Self {
        self.client = self.client.with_dialer(dialer);
        self
    }

    pub fn client(&self) -> TlsClient {
        self.client.clone()
    }

    pub fn server(&self) -> TlsServer {
        self.server.clone()
    }

    pub fn certs(&self) -> NodeCerts {
        self.certs.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Store `certs` and use them from now on.
    pub fn install(&self, mut certs: NodeCerts) -> Result<(), PkiError> {
        let trusted = self.installing.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(roots) = trusted.as_ref() {
            certs.root_pem = roots.clone();
        }
        self.install_locked(certs)
    }

    fn install_locked(&self, certs: NodeCerts) -> Result<(), PkiError> {
        TlsClient::new(&certs)?;
        certs.save(&self.dir, self.data_key.as_ref())?;
        self.server.reload(&certs)?;
        self.client.reload(&certs)?;
        *self.certs.write().unwrap_or_else(|p| p.into_inner()) = certs;
        Ok(())
    }

    /// The nodes this node refuses (removed from the swarm), as its sessions last heard.
    pub fn refused(&self) -> shoal_pki::Refused {
        self.refused.clone()
    }

    /// Renew the certificate now rather than at its time.
    pub fn renew_now(&self) {
        self.renew.notify_one();
    }

    /// Trust `root_pem` (one root or a bundle) from now on, keeping the certificate.
    pub fn trust(&self, root_pem: &str) -> Result<(), PkiError> {
        let mut trusted = self.installing.lock().unwrap_or_else(|p| p.into_inner());
        *trusted = Some(root_pem.to_string());
        let certs = NodeCerts {
            root_pem: root_pem.to_string(),
            ..self.certs()
        };
        self.install_locked(certs)
    }

    /// When the current certificate should be renewed.
    fn renew_at(&self) -> SystemTime {
        let cert = self.certs().cert_pem;
        let (Ok(not_before), Ok(not_after)) =
            (shoal_pki::not_before(&cert), shoal_pki::not_after(&cert))
        else {
            return SystemTime::now();
        };
        let issued = not_before + shoal_pki::BACKDATE;
        let life = not_after.duration_since(issued).unwrap_or_default();
        not_after - life.mul_f64(RENEW_AT_REMAINING)
    }
}

/// Renew the node certificate before it expires, for as long as the member runs. A renewal
/// that comes back with another role (a promotion or demotion the session has not told
/// yet) is handed to the daemon as a role change instead.
pub async fn renew_loop(
    tls: NodeTls,
    managers: Vec<String>,
    manager: bool,
    roles: mpsc::Sender<crate::session::Heard>,
    cancel: CancellationToken,
) {
    // Set while a renewal asked for now (a rotation) has not succeeded: retried soon.
    let mut urgent = false;
    loop {
        let wait = if urgent {
            MIN_RETRY
        } else {
            tls.renew_at()
                .duration_since(SystemTime::now())
                .unwrap_or_default()
                .max(MIN_RETRY)
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
            () = tls.renew.notified() => {
                tracing::info!("renewing the node certificate now: the swarm's root CA is rotating");
                urgent = true;
            }
        }
        let renewed =
            match crate::daemon::renew_certificate(&tls.client(), &managers, &tls.certs()).await {
                Ok(certs) => certs,
                Err(e) => {
                    tracing::warn!(error = %e, "renewing the node certificate failed; retrying");
                    continue;
                }
            };
        let role = match renewed.identity() {
            Ok(identity) => identity.role,
            Err(e) => {
                tracing::warn!(error = %e, "the renewed certificate is unreadable; retrying");
                continue;
            }
        };
        if (role == Role::Manager) != manager {
            let role = if role == Role::Manager {
                NodeRole::Manager
            } else {
                NodeRole::Worker
            };
            let _ = roles.send(crate::session::Heard::Role(role)).await;
            return;
        }
        match tls.install(renewed) {
            Ok(()) => {
                urgent = false;
                tracing::info!("node certificate renewed");
            }
            Err(e) => {
                tracing::warn!(error = %e, "installing the renewed certificate failed; retrying")
            }
        }
    }
}

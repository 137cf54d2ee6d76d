//! An in-process cluster: N managers and M agents in one test process, on 127.0.0.1, with
//! real Raft on disk (temporary directories), real mTLS, the real join path (CA and Raft
//! membership), the real Control API gate (forwarding, read index, quorum refusals) and
//! the real agent (worker and session), over the FAKE executor: no Docker, no root. Every
//! connection between members goes through a [`Net`] that can cut, one way or both, slow
//! or sever the links between named members, so failover, forwarding, partitions and
//! revocation are tested without a lab. The lab tests stay for what only real daemons,
//! engines and kernels can show.
//!
//! Members are named m1..mN (managers) and a1..aM (agents); a member's Control API is
//! served on its own address, as shoald serves it on the manager port.

pub mod net;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use shoal_agent::daemon::gate::ControlGate;
use shoal_agent::daemon::{join, serve_manager_port};
use shoal_agent::executor::fake::FakeEngine;
use shoal_agent::executor::Executor;
use shoal_agent::session::{self, AgentIdentity};
use shoal_agent::taskdb::TaskDb;
use shoal_agent::tls::NodeTls;
use shoal_agent::worker::Worker;
use shoal_manager::allocator::AddrPool;
use shoal_manager::controlapi::ControlApi;
use shoal_manager::{Manager, ManagerConfig};
use shoal_pki::vault::DataKey;
use shoal_pki::{Identity, NodeCerts, NodeKey, Role, RootCa, TlsClient};
use shoal_proto::{ControlClient, NodeDescription, RootCa as RootCaObject};
use shoal_raft::{PeerConnector, PeerFault, PeerFaults};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use net::Net;

const CERT_EXPIRY: Duration = Duration::from_secs(24 * 3600);
/// How often agents beat (short, so a dead one is noticed within seconds).
const HEARTBEAT: Duration = Duration::from_secs(1);

/// A running manager.
pub struct ManagerMember {
    pub name: String,
    pub node_id: String,
    pub addr: String,
    pub manager: Manager,
    pub tls: NodeTls,
    /// What it restarts with, on its own disk.
    raft_id: u64,
    cluster_id: String,
    data_key: DataKey,
    cancel: CancellationToken,
}

/// Who a manager is, across restarts.
#[derive(Clone)]
struct Seed<'a> {
    name: &'a str,
    node_id: String,
    raft_id: u64,
    cluster_id: &'a str,
    data_key: DataKey,
}

/// A running agent (a worker node).
pub struct AgentMember {
    pub name: String,
    pub node_id: String,
    pub tls: NodeTls,
    cancel: CancellationToken,
}

/// The cluster.
pub struct Harness {
    dir: tempfile::TempDir,
    pub net: Net,
    pub engine: FakeEngine,
    pub managers: Vec<ManagerMember>,
    pub agents: Vec<AgentMember>,
    /// A manager's client identity, for Control calls made by the test.
    client_tls: Option<NodeTls>,
}

impl Harness {
    /// `managers` managers (the first bootstraps, the others join it) and `agents` agents.
    pub async fn start(managers: usize, agents: usize) -> anyhow::Result<Harness> {
        let mut h = Harness {
            dir: tempfile::tempdir()?,
            net: Net::default(),
            engine: FakeEngine::new(),
            managers: Vec::new(),
            agents: Vec::new(),
            client_tls: None,
        };
        h.bootstrap().await?;
        for _ in 1..managers {
            h.add_manager().await?;
        }
        for _ in 0..agents {
            h.add_agent().await?;
        }
        Ok(h)
    }

    fn member_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn description(name: &str) -> NodeDescription {
        NodeDescription {
            hostname: name.to_string(),
            ..Default::default()
        }
    }

    async fn bootstrap(&mut self) -> anyhow::Result<()> {
        let name = "m1".to_string();
        let cluster_id = shoal_manager::ids::new_id();
        let node_id = shoal_manager::ids::new_id();
        let root = RootCa::generate(&cluster_id)?;
        let key = NodeKey::generate()?;
        let identity = Identity::new(&node_id, Role::Manager, &cluster_id);
        let certs = NodeCerts {
            cert_pem: root.sign_csr(&key.csr_pem()?, &identity, CERT_EXPIRY)?,
            key_pem: key.key_pem(),
            root_pem: root.cert_pem().to_string(),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let seed = Seed {
            name: &name,
            node_id,
            raft_id: 1,
            cluster_id: &cluster_id,
            data_key: DataKey::generate()?,
        };
        let member = self.serve_manager(seed, Some(certs), listener).await?;
        member
            .manager
            .bootstrap(
                &cluster_id,
                Self::description(&name),
                RootCaObject {
                    cert_pem: root.cert_pem().to_string(),
                    key_pem: root.key_pem(),
                    digest: root.digest(),
                    rotation: None,
                },
                CERT_EXPIRY,
                AddrPool {
                    cidrs: Vec::new(),
                    subnet_size: 0,
                },
                None,
            )
            .await?;
        self.client_tls = Some(member.tls.clone());
        self.start_manager_session(&member).await?;
        self.managers.push(member);
        Ok(())
    }

    /// Serve a manager on `listener` (not yet in Raft unless it bootstraps, or it restarts
    /// on its disk), saving `certs` first when given.
    async fn serve_manager(
        &self,
        seed: Seed<'_>,
        certs: Option<NodeCerts>,
        listener: TcpListener,
    ) -> anyhow::Result<ManagerMember> {
        let Seed {
            name,
            node_id,
            raft_id,
            cluster_id,
            data_key,
        } = seed;
        let dir = self.member_dir(name);
        let addr = listener.local_addr()?.to_string();
        self.net.name(&addr, name);
        let tls = self.node_tls(name, certs, &data_key)?;
        let mut config =
            ManagerConfig::new(node_id.clone(), raft_id, dir.to_path_buf(), addr.clone());
        config.heartbeat_period = HEARTBEAT;
        // Raft ids are joining order, so peer `to` is m{to}.
        let (net, me) = (self.net.clone(), name.to_string());
        config.peer_faults = Some(PeerFaults(Arc::new(move |to: u64| {
            if net.duplicates(&me, &format!("m{to}")) {
                PeerFault::Duplicate
            } else {
                PeerFault::Deliver
            }
        })));
        let peer_tls = tls.client();
        config.connector = Some(PeerConnector(Arc::new(move |addr: &str| {
            shoal_pki::channel_lazy(addr, &peer_tls).map_err(|e| e.to_string())
        })));
        let manager = Manager::open(config).await?;
        let gate = ControlGate::default();
        let cancel = CancellationToken::new();
        serve_manager_port(
            &manager,
            &gate,
            cluster_id,
            listener,
            &tls,
            None,
            cancel.clone(),
        );
        tokio::spawn(manager.clone().run(cancel.clone()));
        gate.open(
            ControlApi::new(manager.store().clone()),
            manager.logs_api(),
            manager.raft().clone(),
            tls.clone(),
        );
        Ok(ManagerMember {
            name: name.to_string(),
            node_id,
            addr,
            manager,
            tls,
            raft_id,
            cluster_id: cluster_id.to_string(),
            data_key,
            cancel,
        })
    }

    /// The cluster's join token for `role`, as the first live manager's store has it.
    fn token(&self, manager: bool) -> anyhow::Result<String> {
        let m = self.managers.first().context("no manager")?;
        m.manager
            .store()
            .view(|r| r.cluster().and_then(|c| c.tokens.clone()))
            .map(|t| if manager { t.manager } else { t.worker })
            .context("no join tokens in the store")
    }

    /// Join one more manager (m{n+1}) through the CA and Raft membership, as `swarm join`.
    pub async fn add_manager(&mut self) -> anyhow::Result<()> {
        let name = format!("m{}", self.managers.len() + 1);
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        let token = self.token(true)?;
        let remote = self.managers[0].addr.clone();
        let joined = join::request_certificate(&remote, &token, &name, &addr).await?;
        let seed = Seed {
            name: &name,
            node_id: joined.node_id,
            // Raft ids in joining order: m1 is 1 (the Net's duplicating hook relies on it).
            raft_id: self.managers.len() as u64 + 1,
            cluster_id: &joined.cluster_id,
            data_key: DataKey::generate()?,
        };
        let member = self
            .serve_manager(seed, Some(joined.certs), listener)
            .await?;
        join::raft_join(
            &member.tls.client(),
            &joined.managers,
            member.manager.config().raft_id,
            &addr,
            &member.node_id,
        )
        .await?;
        self.start_manager_session(&member).await?;
        self.managers.push(member);
        Ok(())
    }

    /// Join one more agent (a{n+1}), a worker on the fake engine.
    pub async fn add_agent(&mut self) -> anyhow::Result<()> {
        self.add_agent_with(0, &[]).await
    }

    /// [`Harness::add_agent`], joining through manager `join_via` and opening its session
    /// to `session_to` in that order (the managers the join named when empty).
    pub async fn add_agent_with(
        &mut self,
        join_via: usize,
        session_to: &[usize],
    ) -> anyhow::Result<()> {
        let name = format!("a{}", self.agents.len() + 1);
        let token = self.token(false)?;
        let remote = self.managers[join_via].addr.clone();
        // An agent listens on nothing; its address only names it.
        let addr = format!("127.0.0.1:{}", 40000 + self.agents.len());
        let joined = join::request_certificate(&remote, &token, &name, &addr).await?;
        let tls = self.node_tls(&name, Some(joined.certs), &DataKey::generate()?)?;
        let cancel = CancellationToken::new();
        let managers = match session_to {
            [] => joined.managers.clone(),
            chosen => chosen
                .iter()
                .map(|&i| self.managers[i].addr.clone())
                .collect(),
        };
        self.start_session(
            &name,
            &joined.node_id,
            &addr,
            &tls,
            managers,
            cancel.clone(),
        )
        .await?;
        self.agents.push(AgentMember {
            name,
            node_id: joined.node_id,
            tls,
            cancel,
        });
        Ok(())
    }

    /// Member `name`'s TLS identity from its dir (saving `certs` there first when given, the
    /// key sealed with `data_key`), dialling through the harness's links.
    fn node_tls(
        &self,
        name: &str,
        certs: Option<NodeCerts>,
        data_key: &DataKey,
    ) -> anyhow::Result<NodeTls> {
        let dir = self.member_dir(name).join("certificates");
        if let Some(certs) = certs {
            certs.save(&dir, Some(data_key))?;
        }
        Ok(NodeTls::load(&dir, Some(data_key.clone()))?
            .context("no certificates saved")?
            .with_dialer(self.net.dialer(name)))
    }

    /// Manager `member`'s own agent, as shoald runs it once the manager is in Raft (a
    /// session opened before would find no node in its empty store, and stop for good):
    /// its session to itself first, then to the others.
    async fn start_manager_session(&self, member: &ManagerMember) -> anyhow::Result<()> {
        let mut managers = vec![member.addr.clone()];
        managers.extend(
            self.managers
                .iter()
                .map(|m| m.addr.clone())
                .filter(|a| *a != member.addr),
        );
        self.start_session(
            &member.name,
            &member.node_id,
            &member.addr,
            &member.tls,
            managers,
            member.cancel.clone(),
        )
        .await
    }

    /// Run node `name`'s agent, as shoald runs one on every node (managers included): a
    /// worker on the fake engine with its task database under the member's dir, and a
    /// session to `managers`, until `cancel`.
    async fn start_session(
        &self,
        name: &str,
        node_id: &str,
        addr: &str,
        tls: &NodeTls,
        managers: Vec<String>,
        cancel: CancellationToken,
    ) -> anyhow::Result<()> {
        let executor: Arc<dyn Executor> = Arc::new(self.engine.executor(node_id));
        let (status_tx, status_rx) = tokio::sync::mpsc::channel(1024);
        let db = TaskDb::open(self.member_dir(name), None)?;
        let worker = Worker::new(executor.clone(), db, status_tx).await?;
        let mut description = executor.describe().await?;
        description.hostname = name.to_string();
        let identity = AgentIdentity {
            node_id: node_id.to_string(),
            description,
            addr: addr.to_string(),
        };
        // What sessions tell the daemon (roles, managers) is not acted on here.
        let (heard_tx, mut heard) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move { while heard.recv().await.is_some() {} });
        let tls = tls.clone();
        tokio::spawn(async move {
            session::run(
                identity,
                managers,
                tls,
                session::Local {
                    worker: &worker,
                    networks: None,
                    files: None,
                },
                status_rx,
                heard_tx,
                cancel,
            )
            .await;
            worker.shutdown().await;
        });
        Ok(())
    }

    /// A Control API client on manager `i`'s address (0-based), as another manager would
    /// call it (the test's own link is never cut).
    pub async fn control(
        &self,
        i: usize,
    ) -> anyhow::Result<ControlClient<tonic::transport::Channel>> {
        let certs = self.client_tls.as_ref().context("no manager")?.certs();
        let tls = TlsClient::new(&certs)?;
        let channel = shoal_pki::channel(&self.managers[i].addr, &tls).await?;
        Ok(ControlClient::new(channel))
    }

    /// The managers that believe they lead now (indexes): more than one while a cut-off
    /// leader has not yet noticed.
    pub fn leaders(&self) -> Vec<usize> {
        (0..self.managers.len())
            .filter(|&i| {
                let m = &self.managers[i];
                !m.cancel.is_cancelled() && m.manager.raft().leadership().borrow().is_leader
            })
            .collect()
    }

    /// Wait until some manager leads (other than `not`), up to `within`.
    pub async fn wait_for_leader(
        &self,
        not: Option<usize>,
        within: Duration,
    ) -> anyhow::Result<usize> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(l) = self.leaders().into_iter().find(|&l| Some(l) != not) {
                return Ok(l);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(anyhow!("no leader (other than {not:?}) within {within:?}"));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Wait until exactly one manager believes it leads (a healed cut-off leader has
    /// stepped down), up to `within`.
    pub async fn wait_for_one_leader(&self, within: Duration) -> anyhow::Result<usize> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let [only] = self.leaders()[..] {
                return Ok(only);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(anyhow!(
                    "not exactly one leader within {within:?}: {:?}",
                    self.leaders()
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Crash the leader and wait for another: (old leader, new leader, how long after the
    /// crash the new one led).
    pub async fn crash_leader(&self, within: Duration) -> anyhow::Result<(usize, usize, Duration)> {
        let old = self.wait_for_one_leader(within).await?;
        let crashed = tokio::time::Instant::now();
        self.crash_manager(old).await;
        let new = self.wait_for_leader(Some(old), within).await?;
        Ok((old, new, crashed.elapsed()))
    }

    /// Stop manager `i` as a crash would: its server, loops and Raft end; its disk stays.
    pub async fn crash_manager(&self, i: usize) {
        let m = &self.managers[i];
        m.cancel.cancel();
        let _ = m.manager.shutdown().await;
    }

    /// Start crashed manager `i` again on its own disk and address, as shoald restarts.
    pub async fn restart_manager(&mut self, i: usize) -> anyhow::Result<()> {
        let old = self.managers.remove(i);
        let (name, cluster_id, addr) = (old.name.clone(), old.cluster_id.clone(), old.addr.clone());
        let seed = Seed {
            name: &name,
            node_id: old.node_id.clone(),
            raft_id: old.raft_id,
            cluster_id: &cluster_id,
            data_key: old.data_key.clone(),
        };
        old.cancel.cancel();
        drop(old);
        // Its server and loops let go of its address and Raft store as they wind down.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let member = loop {
            let attempt = async {
                let listener = TcpListener::bind(&addr).await?;
                self.serve_manager(seed.clone(), None, listener).await
            };
            match attempt.await {
                Ok(member) => break member,
                // Most likely its address or the store's lock, still held.
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(e.context(format!("restarting {name}"))),
            }
        };
        self.start_manager_session(&member).await?;
        self.managers.insert(i, member);
        Ok(())
    }

    /// Stop agent `i` (its session ends; the fake engine keeps its containers).
    pub fn stop_agent(&self, i: usize) {
        self.agents[i].cancel.cancel();
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        for m in &self.managers {
            m.cancel.cancel();
        }
        for a in &self.agents {
            a.cancel.cancel();
        }
    }
}

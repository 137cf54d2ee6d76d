//! Tests: openraft's storage conformance suite over the sled store and the segmented log,
//! restarts (log re-apply and snapshot restore), the wire codec, and an in-process
//! three-node cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageIOError;
use shoal_proto::{Raft as _, RaftPayload};

use crate::store::{LogStore, SegmentLog, StateMachineStore};
use crate::types::{decode, encode, StorageError, TypeConfig};
use crate::{Applier, Leadership, RaftConfig, RaftError, RaftNode};

const WAIT: Duration = Duration::from_secs(20);

/// An in-memory applier: log index -> command.
#[derive(Default)]
struct MapApplier {
    state: Mutex<BTreeMap<u64, Vec<u8>>>,
    restores: AtomicU64,
}

impl MapApplier {
    fn commands(&self) -> BTreeSet<Vec<u8>> {
        self.state
            .lock()
            .expect("applier lock")
            .values()
            .cloned()
            .collect()
    }
    fn len(&self) -> usize {
        self.state.lock().expect("applier lock").len()
    }
}

impl Applier for MapApplier {
    fn apply(&self, index: u64, command: &[u8]) -> Result<Vec<u8>, String> {
        if command.starts_with(b"future") {
            return Err(format!("entry {index} was written by a newer version"));
        }
        self.state
            .lock()
            .expect("applier lock")
            .insert(index, command.to_vec());
        Ok(format!("applied {index}").into_bytes())
    }
    fn snapshot(&self) -> crate::SnapshotWriter {
        let bytes =
            encode(&*self.state.lock().expect("applier lock")).expect("encode applier state");
        Box::new(move || bytes)
    }
    fn restore(&self, snapshot: &[u8]) -> Result<(), String> {
        let state = if snapshot.is_empty() {
            BTreeMap::new()
        } else {
            decode(snapshot).map_err(|e| e.to_string())?
        };
        *self.state.lock().expect("applier lock") = state;
        self.restores.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// A stand-in for the node's data key (the raft crate only calls the hook): every byte
/// XORed, so clear text never reaches the disk, and a wrong key reads garbage.
#[derive(Debug)]
pub(crate) struct XorKey(pub(crate) u8);

impl crate::AtRest for XorKey {
    fn seal(&self, plain: &[u8]) -> Result<Vec<u8>, String> {
        let mut out = vec![0xAE];
        out.extend(plain.iter().map(|b| b ^ self.0));
        Ok(out)
    }
    fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, String> {
        match sealed.split_first() {
            Some((0xAE, body)) => Ok(body.iter().map(|b| b ^ self.0).collect()),
            _ => Err("not sealed by this key".into()),
        }
    }
}

/// The storage suite runs with sealing on.
struct SledBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for SledBuilder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| StorageIOError::write(&e))?;
        let (_db, logs, sm) = crate::store::open_sled(
            dir.path(),
            Arc::new(MapApplier::default()),
            Some(Arc::new(XorKey(0x5a))),
        )
        .map_err(|e| StorageIOError::write(&e))?;
        Ok((dir, logs, sm))
    }
}

#[test]
fn sled_store_passes_openraft_storage_suite() {
    Suite::test_all(SledBuilder).expect("openraft storage suite");
}

/// The storage suite over the segmented log, sealed too, with segments of a few entries so
/// that the suite's appends, truncations and purges cross segment boundaries.
struct SegmentBuilder;

impl StoreBuilder<TypeConfig, SegmentLog, StateMachineStore, tempfile::TempDir> for SegmentBuilder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, SegmentLog, StateMachineStore), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| StorageIOError::write(&e))?;
        let (_db, logs, sm) = crate::store::open_segmented(
            dir.path(),
            Arc::new(MapApplier::default()),
            Some(Arc::new(XorKey(0x5a))),
            256,
        )
        .await
        .map_err(|e| StorageIOError::write(&e))?;
        Ok((dir, logs, sm))
    }
}

#[test]
fn segmented_log_passes_openraft_storage_suite() {
    Suite::test_all(SegmentBuilder).expect("openraft storage suite");
}

/// A log written in clear stays readable when the node later has a data key: the database
/// does not look new just because the log lives outside it.
#[tokio::test]
async fn a_segmented_log_written_in_clear_is_read_in_clear_with_a_key() {
    use openraft::storage::{RaftLogStorage as _, RaftLogStorageExt as _};
    use openraft::RaftLogReader as _;

    let dir = tempfile::tempdir().expect("tempdir");
    let open = |at_rest: Option<Arc<dyn crate::AtRest>>| {
        crate::store::open_segmented(dir.path(), Arc::new(MapApplier::default()), at_rest, 4096)
    };
    let (db, mut logs, sm) = open(None).await.expect("open the stores");
    let log_id = |i| openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), i);
    let entry = |i| crate::types::Entry {
        log_id: log_id(i),
        payload: openraft::EntryPayload::Normal(crate::types::Command(cmd(i as usize))),
    };
    logs.blocking_append((1..=3).map(entry))
        .await
        .expect("append");
    drop((db, logs, sm));

    let (_db, mut logs, _sm) = open(Some(Arc::new(XorKey(0x5a))))
        .await
        .expect("open the stores");
    let held = logs.try_get_log_entries(..).await.expect("read in clear");
    assert_eq!(held, (1..=3).map(entry).collect::<Vec<_>>());
    assert_eq!(
        logs.get_log_state().await.expect("log state").last_log_id,
        Some(log_id(3))
    );
}

/// A database whose log sled kept (shoald before the segmented log) opens with the same
/// log, vote, purge point and committed id, now in segment files, and its sled log
/// cleared; an unfinished copy left by a crash is made again.
#[tokio::test]
async fn a_sled_log_moves_into_segment_files_at_open() {
    use openraft::storage::{RaftLogStorage as _, RaftLogStorageExt as _};
    use openraft::RaftLogReader as _;

    let key = || -> Option<Arc<dyn crate::AtRest>> { Some(Arc::new(XorKey(0x5a))) };
    let log_id = |i| openraft::LogId::new(openraft::CommittedLeaderId::new(2, 1), i);
    let entry = |i| crate::types::Entry {
        log_id: log_id(i),
        payload: openraft::EntryPayload::Normal(crate::types::Command(cmd(i as usize))),
    };
    let vote = openraft::Vote::new_committed(2, 1);
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (_db, mut logs, _sm) =
            crate::store::open_sled(dir.path(), Arc::new(MapApplier::default()), key())
                .expect("open the sled stores");
        logs.save_vote(&vote).await.expect("vote");
        logs.blocking_append((1..=2500).map(entry))
            .await
            .expect("append");
        logs.purge(log_id(3)).await.expect("purge");
        logs.save_committed(Some(log_id(2400)))
            .await
            .expect("committed");
    }
    // A copy a crash cut short, to be thrown away.
    let staging = dir.path().join("log.migrating");
    std::fs::create_dir_all(&staging).expect("staging dir");
    std::fs::write(staging.join("00000000000000000001.seg"), b"half a copy").expect("junk");

    for round in ["moved", "reopened"] {
        let (db, mut logs, _sm) =
            crate::store::open(dir.path(), Arc::new(MapApplier::default()), key())
                .await
                .expect("open the stores");
        let state = logs.get_log_state().await.expect("log state");
        assert_eq!(state.last_purged_log_id, Some(log_id(3)), "{round}");
        assert_eq!(state.last_log_id, Some(log_id(2500)), "{round}");
        assert_eq!(logs.read_vote().await.expect("vote"), Some(vote), "{round}");
        assert_eq!(
            logs.read_committed().await.expect("committed"),
            Some(log_id(2400)),
            "{round}"
        );
        let held = logs.try_get_log_entries(..).await.expect("entries");
        assert_eq!(held, (4..=2500).map(entry).collect::<Vec<_>>(), "{round}");
        assert!(
            db.open_tree("logs").expect("logs tree").is_empty(),
            "{round}"
        );
        assert!(!staging.exists(), "{round}");
        assert!(dir.path().join("log").is_dir(), "{round}");
    }
}

fn test_config(id: u64, dir: &std::path::Path) -> RaftConfig {
    RaftConfig {
        node_id: id,
        data_dir: dir.to_path_buf(),
        heartbeat_interval_ms: 50,
        election_timeout_min_ms: 150,
        election_timeout_max_ms: 300,
        snapshot_every: 5000,
        connector: None,
        at_rest: None,
        peer_faults: None,
    }
}

async fn wait_leader(node: &RaftNode, want: impl Fn(&Leadership) -> bool) -> Leadership {
    let mut rx = node.leadership();
    let got = tokio::time::timeout(WAIT, rx.wait_for(|l| want(l)))
        .await
        .expect("timed out waiting for leadership")
        .expect("leadership watch closed")
        .clone();
    got
}

async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    tokio::time::timeout(WAIT, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

fn cmd(i: usize) -> Vec<u8> {
    format!("cmd-{i}").into_bytes()
}

fn all_cmds(n: usize) -> BTreeSet<Vec<u8>> {
    (0..n).map(cmd).collect()
}

async fn single_node(cfg: RaftConfig) -> (RaftNode, Arc<MapApplier>) {
    let applier = Arc::new(MapApplier::default());
    let node = RaftNode::open(cfg, applier.clone())
        .await
        .expect("open raft node");
    (node, applier)
}

#[tokio::test]
async fn single_node_restart_reapplies_committed_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, applier) = single_node(test_config(1, dir.path())).await;
    assert!(!node.is_initialized().await.expect("is_initialized"));
    node.initialize("127.0.0.1:1".into())
        .await
        .expect("initialize");
    // Initializing twice is fine.
    node.initialize("127.0.0.1:1".into())
        .await
        .expect("initialize again");
    let l = wait_leader(&node, |l| l.is_leader).await;
    assert_eq!(l.leader_id, Some(1));
    assert_eq!(l.leader_addr.as_deref(), Some("127.0.0.1:1"));

    let mut last = 0;
    for i in 0..100 {
        let (index, resp) = node.propose(cmd(i)).await.expect("propose");
        assert!(index > last, "indexes increase");
        last = index;
        assert_eq!(resp, format!("applied {index}").into_bytes());
    }
    assert_eq!(applier.commands(), all_cmds(100));
    let status = node.status();
    assert_eq!(status.last_applied, Some(last));
    assert_eq!(status.voters, vec![(1, "127.0.0.1:1".to_string())]);
    node.shutdown().await.expect("shutdown");
    drop(node);

    let (node, applier) = single_node(test_config(1, dir.path())).await;
    // Committed entries are re-applied while opening, before any election.
    assert_eq!(applier.commands(), all_cmds(100));
    assert_eq!(
        applier.restores.load(Ordering::SeqCst),
        0,
        "no snapshot yet"
    );
    assert!(node.is_initialized().await.expect("is_initialized"));
    wait_leader(&node, |l| l.is_leader).await;
    let (index, _) = node.propose(cmd(100)).await.expect("propose after restart");
    assert!(index > last);
    assert_eq!(applier.commands(), all_cmds(101));
    node.shutdown().await.expect("shutdown");
}

/// A command this member cannot understand stops it: nothing after it is applied, and it
/// no longer leads (so it never serves a state the others moved past).
#[tokio::test]
async fn an_entry_the_applier_cannot_read_stops_the_member() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, applier) = single_node(test_config(1, dir.path())).await;
    node.initialize("127.0.0.1:1".into())
        .await
        .expect("initialize");
    wait_leader(&node, |l| l.is_leader).await;
    node.propose(cmd(0)).await.expect("propose");
    node.propose(b"future-kind".to_vec())
        .await
        .expect_err("the member stops");
    wait_leader(&node, |l| !l.is_leader).await;
    assert!(node.propose(cmd(1)).await.is_err(), "nothing more is taken");
    assert_eq!(applier.commands(), all_cmds(1));
    let _ = node.shutdown().await;
}

/// With a data key, nothing Raft writes (entries, vote, snapshots) shows in clear on
/// disk; the node reads it all back with the key, and refuses to start without it.
#[tokio::test]
async fn sealed_storage_holds_no_clear_text_and_needs_its_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sealed_config = || RaftConfig {
        snapshot_every: 20,
        at_rest: Some(Arc::new(XorKey(0x5a))),
        ..test_config(1, dir.path())
    };
    let (node, _) = single_node(sealed_config()).await;
    node.initialize("127.0.0.1:1".into())
        .await
        .expect("initialize");
    wait_leader(&node, |l| l.is_leader).await;
    for i in 0..50 {
        node.propose(cmd(i)).await.expect("propose");
    }
    node.shutdown().await.expect("shutdown");
    drop(node);
    let mut files = vec![dir.path().to_path_buf()];
    let mut scanned = 0;
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(
                std::fs::read_dir(&path)
                    .expect("dir")
                    .map(|e| e.expect("entry").path()),
            );
        } else {
            let bytes = std::fs::read(&path).expect("file");
            scanned += bytes.len();
            assert!(
                !bytes.windows(4).any(|w| w == b"cmd-"),
                "clear text in {}",
                path.display()
            );
        }
    }
    assert!(scanned > 0, "the scan read the database");

    let (node, applier) = single_node(sealed_config()).await;
    assert_eq!(applier.commands(), all_cmds(50), "read back with the key");
    node.shutdown().await.expect("shutdown");
    drop(node);
    let err = RaftNode::open(test_config(1, dir.path()), Arc::new(MapApplier::default()))
        .await
        .err()
        .expect("no key, no start");
    assert!(err.to_string().contains("encrypted"), "{err}");
}

#[tokio::test]
async fn snapshots_purge_the_log_and_restore_on_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = test_config(1, dir.path());
    cfg.snapshot_every = 10;
    let (node, _applier) = single_node(cfg.clone()).await;
    node.initialize("127.0.0.1:1".into())
        .await
        .expect("initialize");
    wait_leader(&node, |l| l.is_leader).await;
    for i in 0..100 {
        node.propose(cmd(i)).await.expect("propose");
    }
    let m = node
        .raft()
        .wait(Some(WAIT))
        .metrics(
            |m| m.purged.is_some() && m.snapshot.as_ref().is_some_and(|s| s.index >= 90),
            "snapshot and purge",
        )
        .await
        .expect("snapshot and purge happen");
    let purged = m.purged.map(|p| p.index).expect("purged");
    assert!(purged > 0);
    node.shutdown().await.expect("shutdown");
    drop(node);

    let (node, applier) = single_node(cfg).await;
    assert_eq!(
        applier.restores.load(Ordering::SeqCst),
        1,
        "restored from snapshot"
    );
    assert_eq!(applier.commands(), all_cmds(100));
    node.raft()
        .wait(Some(WAIT))
        .metrics(
            |m| m.purged.as_ref().is_some_and(|p| p.index >= purged) && m.snapshot.is_some(),
            "purge and snapshot survive restart",
        )
        .await
        .expect("purge and snapshot survive restart");
    wait_leader(&node, |l| l.is_leader).await;
    node.propose(cmd(100)).await.expect("propose after restart");
    assert_eq!(applier.commands(), all_cmds(101));
    node.shutdown().await.expect("shutdown");
}

#[test]
fn wire_codec_round_trips_openraft_messages() {
    use openraft::error::{ForwardToLeader, InstallSnapshotError, RaftError as ORaftError};
    use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, VoteRequest};
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Membership, Vote};

    let log_id = |t, i| LogId::new(CommittedLeaderId::new(t, 1), i);
    let req = AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(3, 1),
        prev_log_id: Some(log_id(2, 7)),
        entries: vec![
            Entry {
                log_id: log_id(3, 8),
                payload: EntryPayload::Normal(crate::types::Command(vec![0, 1, 2, 255])),
            },
            Entry {
                log_id: log_id(3, 9),
                payload: EntryPayload::Membership(Membership::new(
                    vec![BTreeSet::from([1, 2])],
                    BTreeMap::from([
                        (1, openraft::BasicNode::new("a:1")),
                        (2, openraft::BasicNode::new("b:2")),
                    ]),
                )),
            },
            Entry {
                log_id: log_id(3, 10),
                payload: EntryPayload::Blank,
            },
        ],
        leader_commit: Some(log_id(2, 7)),
    };
    let back: AppendEntriesRequest<TypeConfig> =
        decode(&encode(&req).expect("encode")).expect("decode");
    assert_eq!(back.vote, req.vote);
    assert_eq!(back.prev_log_id, req.prev_log_id);
    assert_eq!(back.leader_commit, req.leader_commit);
    assert_eq!(back.entries, req.entries);

    let vote = VoteRequest::new(Vote::new(4, 2), Some(log_id(3, 10)));
    let back: VoteRequest<u64> = decode(&encode(&vote).expect("encode")).expect("decode");
    assert_eq!(back, vote);

    let answers: Vec<Result<AppendEntriesResponse<u64>, ORaftError<u64>>> = vec![
        Ok(AppendEntriesResponse::Success),
        Ok(AppendEntriesResponse::HigherVote(Vote::new(5, 3))),
        Ok(AppendEntriesResponse::Conflict),
    ];
    for a in answers {
        let back: Result<AppendEntriesResponse<u64>, ORaftError<u64>> =
            decode(&encode(&a).expect("encode")).expect("decode");
        assert_eq!(back, a);
    }
    let err: Result<(), ORaftError<u64, InstallSnapshotError>> =
        Err(ORaftError::Fatal(openraft::error::Fatal::Stopped));
    let back: Result<(), ORaftError<u64, InstallSnapshotError>> =
        decode(&encode(&err).expect("encode")).expect("decode");
    assert_eq!(back, err);
    let fwd = ForwardToLeader::<u64, openraft::BasicNode>::new(1, openraft::BasicNode::new("a:1"));
    let back: ForwardToLeader<u64, openraft::BasicNode> =
        decode(&encode(&fwd).expect("encode")).expect("decode");
    assert_eq!(back, fwd);

    // Trailing or truncated bytes are errors, not panics.
    let mut bytes = encode(&vote).expect("encode");
    bytes.push(0);
    assert!(decode::<VoteRequest<u64>>(&bytes).is_err());
    assert!(decode::<VoteRequest<u64>>(&bytes[..3]).is_err());
}

#[tokio::test]
async fn malformed_peer_input_is_invalid_argument() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, _applier) = single_node(test_config(1, dir.path())).await;
    let svc = crate::server::PeerService {
        raft: node.raft().clone(),
        contacts: Default::default(),
        leader: node.leader_contact.clone(),
        timing: node.timing,
        last_log: node.last_log.clone(),
    };
    for garbage in [vec![], vec![0xff; 3], vec![0xff; 64]] {
        let req = || {
            tonic::Request::new(RaftPayload {
                data: garbage.clone(),
            })
        };
        for status in [
            svc.append_entries(req()).await.expect_err("garbage append"),
            svc.vote(req()).await.expect_err("garbage vote"),
            svc.pre_vote(req()).await.expect_err("garbage pre-vote"),
            svc.install_snapshot(req())
                .await
                .expect_err("garbage snapshot"),
        ] {
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status}");
        }
    }
    node.shutdown().await.expect("shutdown");
}

struct Peer {
    node: RaftNode,
    addr: String,
    applier: Arc<MapApplier>,
    server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    _dir: tempfile::TempDir,
}

async fn start_peer(id: u64) -> Peer {
    start_peer_with(id, |_| {}).await
}

async fn start_peer_with(id: u64, tweak: impl FnOnce(&mut RaftConfig)) -> Peer {
    let dir = tempfile::tempdir().expect("tempdir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr").to_string();
    let mut cfg = test_config(id, dir.path());
    tweak(&mut cfg);
    let (node, applier) = single_node(cfg).await;
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(node.grpc_service())
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    Peer {
        node,
        addr,
        applier,
        server,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_node_cluster_replicates_and_followers_report_the_leader() {
    let peers = [
        start_peer(1).await,
        start_peer(2).await,
        start_peer(3).await,
    ];
    let [p1, p2, p3] = &peers;

    p1.node
        .initialize(p1.addr.clone())
        .await
        .expect("initialize");
    wait_leader(&p1.node, |l| l.is_leader).await;
    // Both at once (two managers promoted together): neither change may drop the other.
    let (two, three) = tokio::join!(
        p1.node.add_voter(2, p2.addr.clone()),
        p1.node.add_voter(3, p3.addr.clone())
    );
    two.expect("add voter 2");
    three.expect("add voter 3");
    let status = p1.node.status();
    assert_eq!(
        status.voters,
        vec![
            (1, p1.addr.clone()),
            (2, p2.addr.clone()),
            (3, p3.addr.clone())
        ]
    );
    assert!(status.learners.is_empty());

    for i in 0..20 {
        p1.node.propose(cmd(i)).await.expect("propose on leader");
    }
    for p in &peers {
        wait_until("replication to every node", || p.applier.len() == 20).await;
        assert_eq!(p.applier.commands(), all_cmds(20));
    }

    for p in [p2, p3] {
        let l = wait_leader(&p.node, |l| l.leader_id == Some(1)).await;
        assert!(!l.is_leader);
        assert_eq!(l.leader_addr.as_deref(), Some(p1.addr.as_str()));
        match p.node.propose(cmd(99)).await {
            Err(RaftError::NotLeader {
                leader_id,
                leader_addr,
            }) => {
                assert_eq!(leader_id, Some(1));
                assert_eq!(leader_addr.as_deref(), Some(p1.addr.as_str()));
            }
            other => panic!("follower propose: want NotLeader, got {other:?}"),
        }
    }

    // The leader stops: one of the others takes over and keeps accepting writes.
    p1.node.shutdown().await.expect("shutdown leader");
    p1.server.abort();
    let new_leader = tokio::time::timeout(WAIT, async {
        loop {
            for p in [p2, p3] {
                if p.node.leadership().borrow().is_leader {
                    return p;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("a new leader is elected");
    new_leader
        .node
        .propose(cmd(20))
        .await
        .expect("propose on new leader");
    for p in [p2, p3] {
        wait_until("replication after failover", || p.applier.len() == 21).await;
    }

    for p in [p2, p3] {
        p.node.shutdown().await.expect("shutdown");
        p.server.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_learner_catches_up_from_a_snapshot_over_grpc() {
    let leader = start_peer_with(1, |c| c.snapshot_every = 10).await;
    leader
        .node
        .initialize(leader.addr.clone())
        .await
        .expect("initialize");
    wait_leader(&leader.node, |l| l.is_leader).await;
    for i in 0..50 {
        leader.node.propose(cmd(i)).await.expect("propose");
    }
    leader
        .node
        .raft()
        .wait(Some(WAIT))
        .metrics(|m| m.purged.is_some(), "leader purges its log")
        .await
        .expect("leader purges its log");

    // The purged prefix can only reach the new node as an InstallSnapshot.
    let learner = start_peer_with(2, |c| c.snapshot_every = 10).await;
    leader
        .node
        .add_voter(2, learner.addr.clone())
        .await
        .expect("add voter");
    wait_until("learner catches up", || learner.applier.len() == 50).await;
    assert!(
        learner.applier.restores.load(Ordering::SeqCst) >= 1,
        "learner installed a snapshot"
    );
    assert_eq!(learner.applier.commands(), all_cmds(50));
    assert!(leader
        .node
        .status()
        .voters
        .contains(&(2, learner.addr.clone())));

    for p in [&leader, &learner] {
        p.node.shutdown().await.expect("shutdown");
        p.server.abort();
    }
}

/// How long `a_thousand_writers_never_stall_the_log` writes: a few seconds in CI, ten
/// minutes by hand (`SHOAL_RAFT_SOAK_SECS=600 cargo test --release -p shoal-raft --lib
/// a_thousand_writers -- --nocapture`; nextest would end it at 3 minutes).
const SOAK_SECS_ENV: &str = "SHOAL_RAFT_SOAK_SECS";
/// The longest the cluster may go without committing anything while writers wait.
const STALL: Duration = Duration::from_secs(10);

/// 1000 writers propose to a three-member cluster (segmented logs on disk) without pause
/// for `SHOAL_RAFT_SOAK_SECS` (8 by default): commits never stop for [`STALL`], every
/// writer gets writes through, and every member applies every acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_writers_never_stall_the_log() {
    use std::sync::atomic::AtomicUsize;

    let secs: u64 = std::env::var(SOAK_SECS_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    // Elections only when a member is really gone: a loaded debug build on two cores may
    // answer heartbeats late.
    let slow = |cfg: &mut RaftConfig| {
        cfg.heartbeat_interval_ms = 100;
        cfg.election_timeout_min_ms = 1000;
        cfg.election_timeout_max_ms = 2000;
        cfg.snapshot_every = 20_000;
    };
    let peers = Arc::new([
        start_peer_with(1, slow).await,
        start_peer_with(2, slow).await,
        start_peer_with(3, slow).await,
    ]);
    let [p1, p2, p3] = &*peers;
    p1.node
        .initialize(p1.addr.clone())
        .await
        .expect("initialize");
    wait_leader(&p1.node, |l| l.is_leader).await;
    p1.node
        .add_voter(2, p2.addr.clone())
        .await
        .expect("add voter 2");
    p1.node
        .add_voter(3, p3.addr.clone())
        .await
        .expect("add voter 3");

    let committed = Arc::new(AtomicU64::new(0));
    let leader = Arc::new(AtomicUsize::new(0));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let writers: Vec<_> = (0..1000usize)
        .map(|w| {
            let (peers, committed, leader) = (peers.clone(), committed.clone(), leader.clone());
            tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut n = 0;
                while tokio::time::Instant::now() < deadline {
                    let command = format!("w{w}-{n}").into_bytes();
                    let at = leader.load(Ordering::Relaxed);
                    match peers[at].node.propose(command.clone()).await {
                        Ok(_) => {
                            acked.push(command);
                            n += 1;
                            committed.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(RaftError::NotLeader {
                            leader_id: Some(id),
                            ..
                        }) => {
                            leader.store((id - 1) as usize, Ordering::Relaxed);
                        }
                        Err(RaftError::NotLeader { .. } | RaftError::NoQuorum(_)) => {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(e) => panic!("writer {w}: {e}"),
                    }
                }
                acked
            })
        })
        .collect();

    // Watch progress until the writers are done: the count must move within STALL.
    let mut seen = 0;
    let mut moved = tokio::time::Instant::now();
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = committed.load(Ordering::Relaxed);
        if now != seen {
            (seen, moved) = (now, tokio::time::Instant::now());
        }
        assert!(
            moved.elapsed() < STALL,
            "no commit for {STALL:?} with 1000 writers waiting ({seen} so far)"
        );
    }
    let mut all = BTreeSet::new();
    for (w, writer) in writers.into_iter().enumerate() {
        let acked = tokio::time::timeout(STALL, writer)
            .await
            .unwrap_or_else(|_| panic!("writer {w} still waits {STALL:?} after the end"))
            .expect("writer task");
        assert!(!acked.is_empty(), "writer {w} got no write through");
        all.extend(acked);
    }
    eprintln!(
        "{} writes acknowledged in {secs} s ({}/s)",
        all.len(),
        all.len() as u64 / secs.max(1)
    );
    for p in peers.iter() {
        wait_until("every member applies every acknowledged write", || {
            p.applier.commands().is_superset(&all)
        })
        .await;
    }
    for p in peers.iter() {
        p.node.shutdown().await.expect("shutdown");
        p.server.abort();
    }
}

const CRASH_DIR_ENV: &str = "SHOAL_RAFT_CRASH_CHILD_DIR";

/// The child half of `acknowledged_writes_survive_kill_9`: proposes forever, printing
/// every acknowledged command, until the parent kills it. Does nothing when run normally.
#[test]
#[ignore = "run only as the child process of acknowledged_writes_survive_kill_9"]
fn crash_child() {
    let Ok(dir) = std::env::var(CRASH_DIR_ENV) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut cfg = test_config(1, std::path::Path::new(&dir));
        cfg.snapshot_every = 50;
        let (node, _applier) = single_node(cfg).await;
        node.initialize("127.0.0.1:1".into())
            .await
            .expect("initialize");
        wait_leader(&node, |l| l.is_leader).await;
        for i in 0.. {
            node.propose(cmd(i)).await.expect("propose");
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            writeln!(out, "acked {i}").expect("stdout");
            out.flush().expect("stdout");
        }
    });
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    use std::io::BufRead as _;

    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("current exe");
    let mut child = std::process::Command::new(exe)
        .args(["--exact", "tests::crash_child", "--ignored", "--nocapture"])
        .env(CRASH_DIR_ENV, dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(i) = line
                .strip_prefix("acked ")
                .and_then(|i| i.parse::<usize>().ok())
            {
                if tx.send(i).is_err() {
                    break;
                }
            }
        }
    });
    let mut last_acked = None;
    while last_acked.is_none_or(|i| i < 300) {
        match rx.recv_timeout(WAIT) {
            Ok(i) => last_acked = Some(i),
            Err(e) => {
                let _ = child.kill();
                panic!("child stopped acknowledging writes: {e}");
            }
        }
    }
    child.kill().expect("kill -9 the child"); // SIGKILL on unix
    child.wait().expect("reap child");
    // Anything the child printed before dying was acknowledged too.
    while let Ok(i) = rx.try_recv() {
        last_acked = Some(i);
    }
    let acked = last_acked.expect("some writes acknowledged") + 1;

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut cfg = test_config(1, dir.path());
        cfg.snapshot_every = 50;
        let (node, applier) = single_node(cfg).await;
        wait_leader(&node, |l| l.is_leader).await;
        // After re-election the leader commits (and applies) everything it logged.
        node.propose(b"after restart".to_vec())
            .await
            .expect("propose after restart");
        let got = applier.commands();
        for i in 0..acked {
            assert!(
                got.contains(&cmd(i)),
                "acknowledged command {i} of {acked} lost"
            );
        }
        node.shutdown().await.expect("shutdown");
    });
}

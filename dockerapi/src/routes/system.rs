//! `/_ping`, `/version`, `/info` and `/swarm`: what the node is and the swarm it is in.

use hyper::StatusCode;
use serde_json::json;
use shoal_proto as pb;

use crate::backend::{call, Backend};
use crate::clock::ZERO;
use crate::error::ApiResult;
use crate::http::{Reply, API_VERSION, MIN_API_VERSION};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// "OK" (the `Swarm` header is the server's: `server.rs` asks for it on `/_ping`).
pub fn ping(head: bool) -> Reply {
    if head {
        Reply::Empty(StatusCode::OK)
    } else {
        Reply::Text(StatusCode::OK, "text/plain; charset=utf-8", "OK".into())
    }
}

pub fn version() -> Reply {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    Reply::ok(&json!({
        "Platform": {"Name": "Shoal"},
        "Components": [{
            "Name": "Engine",
            "Version": VERSION,
            "Details": {
                "ApiVersion": API_VERSION,
                "MinAPIVersion": MIN_API_VERSION,
                "Os": "linux",
                "Arch": arch(),
                "KernelVersion": kernel.trim(),
                "Orchestrator": "shoal",
            }
        }],
        "Version": VERSION,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "",
        "Os": "linux",
        "Arch": arch(),
        "KernelVersion": kernel.trim(),
        "BuildTime": "",
    }))
}

/// Go's GOARCH for this machine.
pub(super) fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The `Swarm` header `/_ping` carries.
pub fn swarm_header(info: &pb::InfoResponse) -> &'static str {
    match (info.swarm_state.as_str(), info.is_manager) {
        ("active", true) => "active/manager",
        ("active", false) => "active/worker",
        _ => "inactive",
    }
}

pub async fn info(backend: &Backend) -> ApiResult<Reply> {
    let info = backend.info().await?;
    let active = info.swarm_state == "active";
    let remote_managers: Vec<_> = info
        .manager_addrs
        .iter()
        .map(|addr| json!({"NodeID": "", "Addr": addr}))
        .collect();
    let cluster = if active && info.is_manager {
        json!({
            "ID": info.cluster_id,
            "Version": {"Index": info.raft_commit_index},
            "CreatedAt": ZERO,
            "UpdatedAt": ZERO,
            "Spec": {"Name": "default", "Labels": {}},
            "TLSInfo": {},
            "RootRotationInProgress": false,
            "DataPathPort": 4789,
            "SubnetSize": 24,
        })
    } else {
        serde_json::Value::Null
    };
    let memory = mem_total();
    Ok(Reply::ok(&json!({
        "ID": info.node_id,
        "Name": info.node_name,
        "ServerVersion": VERSION,
        "OperatingSystem": "Shoal",
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "NCPU": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "MemTotal": memory,
        "DockerRootDir": info.data_dir,
        "Driver": "",
        "Labels": [],
        "ExperimentalBuild": false,
        "Swarm": {
            "NodeID": info.node_id,
            "NodeAddr": pb::names::host_of(&info.node_addr),
            "LocalNodeState": if active { "active" } else { "inactive" },
            "ControlAvailable": active && info.is_manager,
            "Error": "",
            "RemoteManagers": remote_managers,
            "Nodes": info.nodes,
            "Managers": info.managers,
            "Cluster": cluster,
        },
    })))
}

fn mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        })
        .unwrap_or(0)
}

pub async fn swarm(backend: &Backend) -> ApiResult<Reply> {
    let info = backend.info().await?;
    let mut control = backend.control.clone();
    let tokens = match control
        .get_join_tokens(call(pb::GetJoinTokensRequest {}))
        .await
    {
        Ok(tokens) => tokens.into_inner(),
        Err(status) => return Err(backend.refusal(status).await),
    };
    let ca = control
        .get_root_ca(call(pb::GetRootCaRequest {}))
        .await
        .map_err(crate::error::ApiError::from)?
        .into_inner();
    Ok(Reply::ok(&json!({
        "ID": info.cluster_id,
        "Version": {"Index": info.raft_commit_index},
        "CreatedAt": ZERO,
        "UpdatedAt": ZERO,
        "Spec": {
            "Name": "default",
            "Labels": {},
            "Orchestration": {"TaskHistoryRetentionLimit": 5},
            "Raft": {"SnapshotInterval": 10000, "KeepOldSnapshots": 0,
                     "LogEntriesForSlowFollowers": 500, "ElectionTick": 10, "HeartbeatTick": 1},
            "Dispatcher": {"HeartbeatPeriod": 5_000_000_000i64},
            "CAConfig": {"NodeCertExpiry": ca.cert_expiry_ms * 1_000_000},
            "TaskDefaults": {},
            "EncryptionConfig": {"AutoLockManagers": false},
        },
        "TLSInfo": {"TrustRoot": ca.cert_pem},
        "RootRotationInProgress": ca.rotating,
        "DefaultAddrPool": ["10.0.0.0/8"],
        "SubnetSize": 24,
        "DataPathPort": 4789,
        "JoinTokens": {"Worker": tokens.worker, "Manager": tokens.manager},
    })))
}

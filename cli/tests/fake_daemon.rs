//! The `shoal` binary against a fake shoald on a unix socket: the connector, the
//! requests each command sends, what it prints and how it exits.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Output;
use std::sync::{Arc, Mutex};

use shoal_proto::*;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn service(id: &str, name: &str, mode: ServiceMode, replicas: u64) -> Service {
    Service {
        id: id.into(),
        meta: Some(Meta {
            version: 41,
            created_at_ms: 1_000,
            updated_at_ms: 2_000,
            ..Default::default()
        }),
        spec: Some(ServiceSpec {
            name: name.into(),
            task: Some(TaskSpec {
                container: Some(ContainerSpec {
                    image: "nginx:1".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            mode: mode as i32,
            replicas,
            ..Default::default()
        }),
        spec_version: 1,
        previous_spec: None,
        ..Default::default()
    }
}

fn task(id: &str, slot: u64, age_ms: i64, desired: TaskState, state: TaskState, err: &str) -> Task {
    let at = now_ms() - age_ms;
    Task {
        id: id.into(),
        meta: Some(Meta {
            version: 1,
            created_at_ms: at,
            updated_at_ms: at,
            ..Default::default()
        }),
        service_id: "svc0123456789abcdef".into(),
        service_name: "web".into(),
        slot,
        node_id: "node1".into(),
        spec: Some(TaskSpec {
            container: Some(ContainerSpec {
                image: "shoal-test/nope:1".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        desired_state: desired as i32,
        status: Some(TaskStatus {
            state: state as i32,
            err: err.into(),
            timestamp_ms: at,
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[derive(Default, Clone)]
struct Fake {
    created: Arc<Mutex<Vec<ServiceSpec>>>,
    updated: Arc<Mutex<Vec<UpdateServiceRequest>>>,
    rollbacks: Arc<Mutex<Vec<RollbackServiceRequest>>>,
    node_updates: Arc<Mutex<Vec<UpdateNodeRequest>>>,
    removed: Arc<Mutex<Vec<RemoveNodeRequest>>>,
    joined: Arc<Mutex<Vec<JoinRequest>>>,
    inits: Arc<Mutex<Vec<InitRequest>>>,
    /// How many times the tasks of a node were listed (a drain in progress).
    node_task_lists: Arc<Mutex<usize>>,
    /// `service ls` also lists a replicated job, "batch" (6 completions, 4 done, 2 running).
    with_job: bool,
    /// web's tasks roll out: listing i (from 1) shows i-1 of its 3 new tasks running.
    rollout: Option<Arc<Mutex<i64>>>,
    /// web's update status says PAUSED.
    paused: bool,
}

/// The nodes `get_node` knows: node1 (n1, a manager), node2 (n2, a worker) and node3
/// (stuck, a worker whose tasks never leave).
fn fake_node(key: &str) -> Option<Node> {
    let (id, host, role) = match key {
        "node1" | "n1" => ("node1", "n1", NodeRole::Manager),
        "node2" | "n2" => ("node2", "n2", NodeRole::Worker),
        "node3" | "stuck" => ("node3", "stuck", NodeRole::Worker),
        _ => return None,
    };
    Some(Node {
        id: id.into(),
        meta: Some(Meta {
            version: 7,
            ..Default::default()
        }),
        spec: Some(NodeSpec {
            role: role as i32,
            availability: Availability::Active as i32,
            labels: HashMap::from([("zone".to_string(), "a".to_string())]),
        }),
        description: Some(NodeDescription {
            hostname: host.into(),
            ..Default::default()
        }),
        ..Default::default()
    })
}

impl Fake {
    fn find(&self, name: &str) -> Result<Service, Status> {
        let all = [
            service("svc0123456789abcdef", "web", ServiceMode::Replicated, 3),
            service("glob0123456789abcdef", "agent", ServiceMode::Global, 0),
        ];
        let mut found = all
            .into_iter()
            .find(|s| s.name() == name || s.id.starts_with(name))
            .ok_or_else(|| Status::not_found(format!("service {name} not found")))?;
        if self.paused {
            found.update_status = Some(UpdateStatus {
                state: UpdateState::Paused as i32,
                message: "task web.1 failed: exit 1".into(),
                ..Default::default()
            });
        }
        Ok(found)
    }
}

const FAKE_UNLOCK_KEY: &str = "SHKEY-1-fake";

/// The fake's root: PEM-shaped text, and a rotation that is done (`rotated`) or not needed.
fn fake_root(rotated: bool) -> GetRootCaResponse {
    GetRootCaResponse {
        cert_pem: format!(
            "-----BEGIN CERTIFICATE-----\nFAKE{}\n-----END CERTIFICATE-----\n",
            if rotated { "NEW" } else { "OLD" }
        ),
        digest: "d1".into(),
        rotating: false,
        nodes_done: 2,
        nodes_total: 2,
        nodes_left: Vec::new(),
        cert_expiry_ms: 90 * 24 * 3_600_000,
    }
}

#[tonic::async_trait]
impl Control for Fake {
    async fn update_node(
        &self,
        request: Request<UpdateNodeRequest>,
    ) -> Result<Response<UpdateNodeResponse>, Status> {
        let req = request.into_inner();
        self.node_updates.lock().unwrap().push(req.clone());
        let mut node = fake_node(&req.node)
            .ok_or_else(|| Status::not_found(format!("node {} not found", req.node)))?;
        node.spec = req.spec;
        Ok(Response::new(UpdateNodeResponse { node: Some(node) }))
    }

    async fn remove_node(
        &self,
        request: Request<RemoveNodeRequest>,
    ) -> Result<Response<RemoveNodeResponse>, Status> {
        let req = request.into_inner();
        self.removed.lock().unwrap().push(req.clone());
        if req.node == "n1" {
            return Err(Status::failed_precondition(
                "node n1 is a manager: demote it first with `shoal node demote n1`",
            ));
        }
        Ok(Response::new(RemoveNodeResponse {}))
    }

    async fn get_join_tokens(
        &self,
        _: Request<GetJoinTokensRequest>,
    ) -> Result<Response<GetJoinTokensResponse>, Status> {
        Ok(Response::new(GetJoinTokensResponse {
            worker: "SHTKN-1-digest-worker".into(),
            manager: "SHTKN-1-digest-manager".into(),
            managers: vec!["10.0.0.1:4242".into()],
        }))
    }

    async fn get_root_ca(
        &self,
        _request: Request<GetRootCaRequest>,
    ) -> Result<Response<GetRootCaResponse>, Status> {
        Ok(Response::new(fake_root(false)))
    }

    async fn rotate_root_ca(
        &self,
        request: Request<RotateRootCaRequest>,
    ) -> Result<Response<GetRootCaResponse>, Status> {
        if request.into_inner().cert_expiry_ms == 3_600_000 {
            return Err(Status::invalid_argument("refused by the fake"));
        }
        Ok(Response::new(fake_root(true)))
    }

    async fn update_swarm(
        &self,
        request: Request<UpdateSwarmRequest>,
    ) -> Result<Response<UpdateSwarmResponse>, Status> {
        let on = request.into_inner().autolock;
        Ok(Response::new(UpdateSwarmResponse {
            unlock_key: if on {
                FAKE_UNLOCK_KEY.into()
            } else {
                String::new()
            },
        }))
    }

    async fn get_unlock_key(
        &self,
        request: Request<GetUnlockKeyRequest>,
    ) -> Result<Response<GetUnlockKeyResponse>, Status> {
        let rotate = request.into_inner().rotate;
        Ok(Response::new(GetUnlockKeyResponse {
            unlock_key: if rotate {
                "SHKEY-1-rotated".into()
            } else {
                FAKE_UNLOCK_KEY.into()
            },
            previous_unlock_key: if rotate {
                FAKE_UNLOCK_KEY.into()
            } else {
                String::new()
            },
        }))
    }

    async fn rotate_join_token(
        &self,
        request: Request<RotateJoinTokenRequest>,
    ) -> Result<Response<GetJoinTokensResponse>, Status> {
        let worker = request.into_inner().role == NodeRole::Worker as i32;
        Ok(Response::new(GetJoinTokensResponse {
            worker: if worker {
                "SHTKN-1-digest-new"
            } else {
                "SHTKN-1-digest-worker"
            }
            .into(),
            manager: "SHTKN-1-digest-manager".into(),
            managers: vec!["10.0.0.1:4242".into()],
        }))
    }

    async fn create_service(
        &self,
        request: Request<CreateServiceRequest>,
    ) -> Result<Response<CreateServiceResponse>, Status> {
        let spec = request.into_inner().spec.unwrap_or_default();
        self.created.lock().unwrap().push(spec.clone());
        Ok(Response::new(CreateServiceResponse {
            service: Some(Service {
                id: "newservice0123456789abc".into(),
                spec: Some(spec),
                ..Default::default()
            }),
        }))
    }

    async fn update_service(
        &self,
        request: Request<UpdateServiceRequest>,
    ) -> Result<Response<UpdateServiceResponse>, Status> {
        let req = request.into_inner();
        self.updated.lock().unwrap().push(req.clone());
        Ok(Response::new(UpdateServiceResponse {
            service: Some(self.find(&req.service)?),
        }))
    }

    async fn rollback_service(
        &self,
        request: Request<RollbackServiceRequest>,
    ) -> Result<Response<RollbackServiceResponse>, Status> {
        let req = request.into_inner();
        self.rollbacks.lock().unwrap().push(req.clone());
        let service = self.find(&req.service)?;
        if service.name() != "web" {
            return Err(Status::invalid_argument(format!(
                "service {} has no previous spec to roll back to",
                service.name()
            )));
        }
        Ok(Response::new(RollbackServiceResponse {
            service: Some(service),
        }))
    }

    async fn remove_service(
        &self,
        request: Request<RemoveServiceRequest>,
    ) -> Result<Response<RemoveServiceResponse>, Status> {
        self.find(&request.into_inner().service)?;
        Ok(Response::new(RemoveServiceResponse {}))
    }

    async fn get_service(
        &self,
        request: Request<GetServiceRequest>,
    ) -> Result<Response<GetServiceResponse>, Status> {
        Ok(Response::new(GetServiceResponse {
            service: Some(self.find(&request.into_inner().service)?),
        }))
    }

    async fn list_services(
        &self,
        _: Request<ListServicesRequest>,
    ) -> Result<Response<ListServicesResponse>, Status> {
        let mut resp = ListServicesResponse {
            services: vec![service(
                "svc0123456789abcdef",
                "web",
                ServiceMode::Replicated,
                3,
            )],
            replicas: HashMap::from([(
                "svc0123456789abcdef".to_string(),
                ReplicaCount {
                    running: 2,
                    desired: 3,
                },
            )]),
        };
        if self.with_job {
            let mut job = service(
                "job0123456789abcdef",
                "batch",
                ServiceMode::ReplicatedJob,
                6,
            );
            job.job_status = Some(JobStatus {
                iteration: 2,
                started_at_ms: 1_000,
            });
            resp.services.push(job);
            resp.replicas.insert(
                "job0123456789abcdef".into(),
                ReplicaCount {
                    running: 4,
                    desired: 6,
                },
            );
        }
        Ok(Response::new(resp))
    }

    async fn create_network(
        &self,
        _request: Request<shoal_proto::CreateNetworkRequest>,
    ) -> Result<Response<shoal_proto::CreateNetworkResponse>, Status> {
        Err(Status::unimplemented("the fake daemon has no networks"))
    }

    async fn get_network(
        &self,
        _request: Request<shoal_proto::GetNetworkRequest>,
    ) -> Result<Response<shoal_proto::GetNetworkResponse>, Status> {
        Err(Status::unimplemented("the fake daemon has no networks"))
    }

    async fn list_networks(
        &self,
        _request: Request<shoal_proto::ListNetworksRequest>,
    ) -> Result<Response<shoal_proto::ListNetworksResponse>, Status> {
        Err(Status::unimplemented("the fake daemon has no networks"))
    }

    async fn remove_network(
        &self,
        _request: Request<shoal_proto::RemoveNetworkRequest>,
    ) -> Result<Response<shoal_proto::RemoveNetworkResponse>, Status> {
        Err(Status::unimplemented("the fake daemon has no networks"))
    }

    async fn create_secret(
        &self,
        _request: Request<shoal_proto::CreateSecretRequest>,
    ) -> Result<Response<shoal_proto::CreateSecretResponse>, Status> {
        Err(Status::unimplemented(
            "the fake daemon has no secrets or configs",
        ))
    }

    async fn get_secret(
        &self,
        _request: Request<shoal_proto::GetSecretRequest>,
    ) -> Result<Response<shoal_proto::GetSecretResponse>, Status> {
        Err(Status::unimplemented(
            "the fake daemon has no secrets or configs",
        ))
    }

    async fn list_secrets(
        &self,
        _request: Request<shoal_proto::ListSecretsRequest>,
    ) -> Result<Response<shoal_proto::ListSecretsResponse>, Status> {
        Err(Status::unimplemented(
            "the fake daemon has no secrets or configs",
        ))
    }

    async fn update_secret(
        &self,
        _request: Request<shoal_proto::UpdateFileLabelsRequest>,
    ) -> Result<Response<shoal_proto::UpdateSecretResponse>, Status> {
        Err(Status::unimplemented(
            "the fake daemon has no secrets or configs",
        ))
    }

    async fn update_config(
        &self,
        _request: Request<shoal_proto::UpdateFileLabelsRequest>,
    ) -> Result<Response<shoal_proto::UpdateConfigResponse>, Status> {
        Err(Status::unimplemented(
            "the fake daemon has no secrets or configs",
        ))
    }

    async fn remove_secret(
        &self,
        _request: Request<shoal_proto::RemoveSecretRequest>,
    ) -> Result<Response<shoal_proto::RemoveSecretResponse>, Status> {
        Err(Status::unimplemented(
            "the fake daemon has no secrets or configs",
        ))
    }

    async fn create_config(
        &self,
        _request: Request<shoal_proto::CreateConfigRequest>,
    ) -> Result<Response<shoal_proto::CreateConfigResponse>, Status> {
        Err(Status::unimplemented(
            "the fake daemon has no secrets or configs",
        ))
    }

    async fn get_config(
        &self,
        _request: Request<shoal_proto::GetConfigRequest>,
    ) -> Result<Response<shoal_proto::GetConfigResponse>, Status> {
        Err(Status::unimplemented(
            "the fake daemon has no secrets or configs",
        ))
    }

    async fn list_configs(
        &self,
        _request: Request<shoal_proto::ListConfigsRequest>,
    ) -> Result<Response<shoal_proto::ListConfigsResponse>, Status> {
        Err(Status::unimplemented(
            "the fake daemon has no secrets or configs",
        ))
    }

    async fn remove_config(
        &self,
        _request: Request<shoal_proto::RemoveConfigRequest>,
    ) -> Result<Response<shoal_proto::RemoveConfigResponse>, Status> {
        Err(Status::unimplemented(
            "the fake daemon has no secrets or configs",
        ))
    }

    async fn deploy_stack(
        &self,
        _request: Request<shoal_proto::DeployStackRequest>,
    ) -> Result<Response<shoal_proto::DeployStackResponse>, Status> {
        Err(Status::unimplemented("the fake daemon has no stacks"))
    }

    async fn list_stacks(
        &self,
        _request: Request<shoal_proto::ListStacksRequest>,
    ) -> Result<Response<shoal_proto::ListStacksResponse>, Status> {
        Err(Status::unimplemented("the fake daemon has no stacks"))
    }

    async fn get_stack(
        &self,
        _request: Request<shoal_proto::GetStackRequest>,
    ) -> Result<Response<shoal_proto::GetStackResponse>, Status> {
        Err(Status::unimplemented("the fake daemon has no stacks"))
    }

    async fn remove_stack(
        &self,
        _request: Request<shoal_proto::RemoveStackRequest>,
    ) -> Result<Response<shoal_proto::RemoveStackResponse>, Status> {
        Err(Status::unimplemented("the fake daemon has no stacks"))
    }

    async fn rollback_stack(
        &self,
        _request: Request<shoal_proto::RollbackStackRequest>,
    ) -> Result<Response<shoal_proto::DeployStackResponse>, Status> {
        Err(Status::unimplemented("the fake daemon has no stacks"))
    }

    async fn list_tasks(
        &self,
        request: Request<ListTasksRequest>,
    ) -> Result<Response<ListTasksResponse>, Status> {
        let req = request.into_inner();
        if !req.node.is_empty() {
            // A drain: node2's tasks leave over a few looks; node3's never do.
            let mut looks = self.node_task_lists.lock().unwrap();
            *looks += 1;
            let left = match (req.node.as_str(), *looks) {
                ("node3", _) => 2,
                (_, 1 | 2) => 3,
                (_, 3) => 1,
                _ => 0,
            };
            let mut tasks: Vec<Task> = (0..left)
                .map(|i| {
                    task(
                        &format!("t{i}"),
                        i,
                        0,
                        TaskState::Running,
                        TaskState::Running,
                        "",
                    )
                })
                .collect();
            // A task told to stop does not count.
            tasks.push(task(
                "gone",
                9,
                0,
                TaskState::Shutdown,
                TaskState::Running,
                "",
            ));
            return Ok(Response::new(ListTasksResponse {
                tasks,
                node_names: HashMap::new(),
            }));
        }
        if req.service == "job0123456789abcdef" {
            // Two running tasks of this run, one of the previous run, four completions.
            let mut tasks: Vec<Task> = (1..=6)
                .map(|slot| {
                    let state = if slot <= 4 {
                        TaskState::Complete
                    } else {
                        TaskState::Running
                    };
                    let mut t = task(&format!("j{slot}"), slot, 0, TaskState::Running, state, "");
                    t.job_iteration = 2;
                    t
                })
                .collect();
            let mut old = task("old", 1, 0, TaskState::Running, TaskState::Running, "");
            old.job_iteration = 1;
            tasks.push(old);
            return Ok(Response::new(ListTasksResponse {
                tasks,
                node_names: HashMap::new(),
            }));
        }
        assert_eq!(req.service, "svc0123456789abcdef");
        if let Some(looks) = &self.rollout {
            let mut looks = looks.lock().unwrap();
            *looks += 1;
            let mut tasks: Vec<Task> = (1..=3)
                .map(|slot| {
                    let state = if (slot as i64) < *looks {
                        TaskState::Running
                    } else {
                        TaskState::Starting
                    };
                    let mut t = task(
                        &format!("new{slot}"),
                        slot,
                        0,
                        TaskState::Running,
                        state,
                        "",
                    );
                    t.spec_version = 1;
                    t
                })
                .collect();
            // The old version's tasks, still running, do not count.
            tasks.extend((1..=3).map(|slot| {
                task(
                    &format!("old{slot}"),
                    slot,
                    9,
                    TaskState::Running,
                    TaskState::Running,
                    "",
                )
            }));
            return Ok(Response::new(ListTasksResponse {
                tasks,
                node_names: HashMap::new(),
            }));
        }
        Ok(Response::new(ListTasksResponse {
            tasks: vec![
                task(
                    "task-old-0123456789",
                    1,
                    10_000,
                    TaskState::Shutdown,
                    TaskState::Rejected,
                    "image shoal-test/nope:1 not found",
                ),
                task(
                    "task-new-0123456789",
                    1,
                    2_000,
                    TaskState::Running,
                    TaskState::Rejected,
                    "image shoal-test/nope:1 not found",
                ),
                task(
                    "task-two-0123456789",
                    2,
                    5_000,
                    TaskState::Running,
                    TaskState::Running,
                    "",
                ),
            ],
            node_names: HashMap::from([("node1".to_string(), "n1".to_string())]),
        }))
    }

    async fn list_nodes(
        &self,
        _: Request<ListNodesRequest>,
    ) -> Result<Response<ListNodesResponse>, Status> {
        let node = |id: &str, host: &str, leader: Option<bool>| Node {
            id: id.into(),
            description: Some(NodeDescription {
                hostname: host.into(),
                engine_version: "27.1.0".into(),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                state: if id == "node3" {
                    NodeState::Down
                } else {
                    NodeState::Ready
                } as i32,
                ..Default::default()
            }),
            manager_status: leader.map(|leader| ManagerStatus {
                leader,
                ..Default::default()
            }),
            ..Default::default()
        };
        Ok(Response::new(ListNodesResponse {
            nodes: vec![
                node("node3", "n3", Some(false)),
                node("node2", "n2", None),
                node("node1", "n1", Some(true)),
            ],
        }))
    }

    async fn get_node(
        &self,
        request: Request<GetNodeRequest>,
    ) -> Result<Response<GetNodeResponse>, Status> {
        let name = request.into_inner().node;
        let node =
            fake_node(&name).ok_or_else(|| Status::not_found(format!("node {name} not found")))?;
        Ok(Response::new(GetNodeResponse { node: Some(node) }))
    }
}

#[tonic::async_trait]
impl NodeAdmin for Fake {
    async fn resolve_image(
        &self,
        _request: Request<ResolveImageRequest>,
    ) -> Result<Response<ResolveImageResponse>, Status> {
        Err(Status::unimplemented("the fake daemon has no registry"))
    }

    async fn join(&self, request: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        let req = request.into_inner();
        self.joined.lock().unwrap().push(req.clone());
        Ok(Response::new(JoinResponse {
            node_id: "node9".into(),
            manager: req.token.ends_with("manager"),
        }))
    }

    async fn init(&self, request: Request<InitRequest>) -> Result<Response<InitResponse>, Status> {
        let request = request.into_inner();
        let autolock = request.autolock;
        self.inits.lock().unwrap().push(request);
        Ok(Response::new(InitResponse {
            node_id: "node1".into(),
            cluster_id: "cluster1".into(),
            unlock_key: if autolock {
                FAKE_UNLOCK_KEY.into()
            } else {
                String::new()
            },
        }))
    }

    async fn unlock(
        &self,
        request: Request<UnlockRequest>,
    ) -> Result<Response<UnlockResponse>, Status> {
        if request.into_inner().unlock_key != FAKE_UNLOCK_KEY {
            return Err(Status::invalid_argument(
                "the unlock key is not this node's",
            ));
        }
        Ok(Response::new(UnlockResponse {}))
    }

    async fn leave(
        &self,
        request: Request<LeaveRequest>,
    ) -> Result<Response<LeaveResponse>, Status> {
        if !request.into_inner().force {
            return Err(Status::failed_precondition(
                "this node is a manager: leaving may cost the swarm its quorum; use --force",
            ));
        }
        Ok(Response::new(LeaveResponse {}))
    }

    async fn info(&self, _: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        Ok(Response::new(InfoResponse {
            node_id: "node1".into(),
            swarm_state: "active".into(),
            is_manager: true,
            managers: 1,
            nodes: 2,
            ..Default::default()
        }))
    }
}

/// A fake daemon on a fresh socket; the URL to pass as `-H`.
fn serve(fake: Fake) -> String {
    let dir = std::env::temp_dir().join(format!(
        "shoal-cli-test-{}-{}",
        std::process::id(),
        now_ms()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path: PathBuf = dir.join("shoald.sock");
    let listener = UnixListener::bind(&path).unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(ControlServer::new(fake.clone()))
            .add_service(NodeAdminServer::new(fake))
            .serve_with_incoming(UnixListenerStream::new(listener)),
    );
    format!("unix://{}", path.display())
}

async fn shoal(host: &str, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .arg("-H")
        .arg(host)
        .args(args)
        .output()
        .await
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test]
async fn service_ls_prints_table_json_and_ids() {
    let host = serve(Fake::default());
    let out = shoal(&host, &["service", "ls"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "ID             NAME      MODE         REPLICAS   IMAGE     PORTS\n\
         svc012345678   web       replicated   2/3        nginx:1\n"
    );
    let out = shoal(&host, &["service", "ls", "--format", "json"]).await;
    assert_eq!(
        stdout(&out),
        "{\"ID\":\"svc012345678\",\"Image\":\"nginx:1\",\"Mode\":\"replicated\",\"Name\":\"web\",\"Ports\":\"\",\"Replicas\":\"2/3\"}\n"
    );
    let out = shoal(&host, &["service", "ls", "-q"]).await;
    assert_eq!(stdout(&out), "svc012345678\n");
}

#[tokio::test]
async fn service_ls_shows_job_progress() {
    let host = serve(Fake {
        with_job: true,
        ..Fake::default()
    });
    let out = shoal(&host, &["service", "ls"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "ID             NAME      MODE             REPLICAS                   IMAGE     PORTS\n\
         job012345678   batch     replicated job   2 running, 4/6 completed   nginx:1\n\
         svc012345678   web       replicated       2/3                        nginx:1\n"
    );
}

#[tokio::test]
async fn service_create_job_modes() {
    let fake = Fake::default();
    let host = serve(fake.clone());
    let out = shoal(
        &host,
        &[
            "service",
            "create",
            "-d",
            "--mode",
            "replicated-job",
            "--replicas",
            "6",
            "--max-concurrent",
            "2",
            "alpine",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = shoal(
        &host,
        &["service", "create", "-d", "--mode", "global-job", "alpine"],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let created = fake.created.lock().unwrap().clone();
    assert_eq!(created.len(), 2);
    assert_eq!(created[0].mode, ServiceMode::ReplicatedJob as i32);
    assert_eq!((created[0].replicas, created[0].max_concurrent), (6, 2));
    assert_eq!(created[1].mode, ServiceMode::GlobalJob as i32);
    assert_eq!((created[1].replicas, created[1].max_concurrent), (0, 0));
    // Refused before the daemon is asked.
    let out = shoal(
        &host,
        &["service", "create", "--max-concurrent", "2", "alpine"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "Error: --max-concurrent can only be used with replicated-job mode\n"
    );
    let out = shoal(&host, &["service", "create", "--mode", "job", "alpine"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("invalid value 'job'"),
        "{}",
        stderr(&out)
    );
    assert_eq!(fake.created.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn service_ps_shows_history_and_errors() {
    let host = serve(Fake::default());
    let out = shoal(&host, &["service", "ps", "web"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].starts_with("ID "), "{text}");
    assert!(
        lines[1].contains("web.1 ") && lines[1].contains("Rejected 2 seconds ago"),
        "{text}"
    );
    assert!(
        lines[1].contains("\"image shoal-test/nope:1 not f…\""),
        "{text}"
    );
    assert!(
        lines[2].contains(" \\_ web.1") && lines[2].contains("Shutdown"),
        "{text}"
    );
    assert!(
        lines[3].contains("web.2") && lines[3].contains("Running 5 seconds ago"),
        "{text}"
    );
    let out = shoal(
        &host,
        &[
            "service",
            "ps",
            "web",
            "--no-trunc",
            "-f",
            "desired-state=running",
        ],
    )
    .await;
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(
        text.contains("\"image shoal-test/nope:1 not found\""),
        "{text}"
    );
    assert!(text.contains("task-new-0123456789"), "{text}");
    let out = shoal(&host, &["service", "ps", "nope"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), "Error: service nope not found\n");
}

#[tokio::test]
async fn service_create_sends_args_and_prints_the_id() {
    let fake = Fake::default();
    let host = serve(fake.clone());
    let out = shoal(
        &host,
        &[
            "service",
            "create",
            "-d",
            "--name",
            "web",
            "--replicas",
            "2",
            "--reserve-memory",
            "64M",
            "alpine",
            "sleep",
            "100",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "newservice0123456789abc\n");
    let created = fake.created.lock().unwrap().clone();
    assert_eq!(created.len(), 1);
    let container = created[0].task.clone().unwrap().container.unwrap();
    assert_eq!(container.args, ["sleep", "100"]);
    assert!(container.command.is_empty());
    assert_eq!(created[0].replicas, 2);
}

#[tokio::test]
async fn service_scale_updates_with_the_read_version() {
    let fake = Fake::default();
    let host = serve(fake.clone());
    let out = shoal(&host, &["service", "scale", "-d", "web=5"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "web scaled to 5\n");
    let updated = fake.updated.lock().unwrap().clone();
    assert_eq!(updated.len(), 1);
    assert_eq!(updated[0].version, 41);
    assert_eq!(updated[0].spec.as_ref().map(|s| s.replicas), Some(5));

    let out = shoal(&host, &["service", "scale", "agent=2"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "Error: agent: scale can only be used with replicated or replicated-job mode\n"
    );
}

#[tokio::test]
async fn service_rm_goes_on_past_a_missing_service() {
    let host = serve(Fake::default());
    let out = shoal(&host, &["service", "rm", "web", "nope"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "web\n");
    assert_eq!(stderr(&out), "Error: service nope not found\n");
}

#[tokio::test]
async fn service_inspect_is_a_json_array() {
    let host = serve(Fake::default());
    let out = shoal(&host, &["service", "inspect", "web"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["Spec"]["Name"], "web");
    assert_eq!(v[0]["Spec"]["Mode"]["Replicated"]["Replicas"], 3);
}

#[tokio::test]
async fn node_ls_marks_this_node() {
    let host = serve(Fake::default());
    let out = shoal(&host, &["node", "ls"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[1].starts_with("node1 *"), "{text}");
    assert!(lines[1].contains("Leader"), "{text}");
    assert!(lines[2].starts_with("node2 "), "{text}");
    assert!(
        lines[3].starts_with("node3 ")
            && lines[3].contains("Down")
            && lines[3].contains("Unreachable"),
        "{text}"
    );
    let out = shoal(&host, &["node", "inspect", "self", "--format", "json"]).await;
    assert!(
        stdout(&out).starts_with("{\"ID\":\"node1\""),
        "{}",
        stdout(&out)
    );
}

#[tokio::test]
async fn swarm_init_info_and_leave() {
    let host = serve(Fake::default());
    let out = shoal(&host, &["swarm", "init", "--advertise-addr", "10.0.0.1"]).await;
    assert_eq!(
        stdout(&out),
        "Swarm initialized: current node (node1) is now a manager.\n"
    );
    let out = shoal(&host, &["info"]).await;
    assert!(
        stdout(&out).starts_with("Swarm: active\n NodeID: node1\n"),
        "{}",
        stdout(&out)
    );
    let out = shoal(&host, &["swarm", "leave"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "Error: this node is a manager: leaving may cost the swarm its quorum; use --force\n"
    );
    let out = shoal(&host, &["swarm", "leave", "--force"]).await;
    assert_eq!(stdout(&out), "Node left the swarm.\n");
}

#[tokio::test]
async fn a_missing_daemon_is_one_line() {
    let url = "unix:///nonexistent/shoal-cli-test/shoald.sock";
    let out = shoal(url, &["service", "ls"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!("Error: cannot reach shoald at {url}: is it running?\n")
    );
    let out = shoal("tcp://127.0.0.1:1", &["service", "ls"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "Error: cannot reach shoald at tcp://127.0.0.1:1: is it running?\n"
    );
}

#[tokio::test]
async fn node_update_sends_the_spec_with_the_read_version() {
    let fake = Fake::default();
    let host = serve(fake.clone());
    let out = shoal(
        &host,
        &[
            "node",
            "update",
            "--availability",
            "pause",
            "--label-add",
            "rack=1",
            "--label-rm",
            "zone",
            "n2",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "n2\n");
    let updates = fake.node_updates.lock().unwrap().clone();
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].node, "node2");
    assert_eq!(updates[0].version, 7);
    let spec = updates[0].spec.clone().unwrap();
    assert_eq!(spec.availability, Availability::Pause as i32);
    assert_eq!(spec.role, NodeRole::Worker as i32);
    assert_eq!(spec.labels, HashMap::from([("rack".into(), "1".into())]));

    let out = shoal(
        &host,
        &["node", "update", "--availability", "drain", "nope"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), "Error: node nope not found\n");
    let out = shoal(&host, &["node", "update", "--wait", "n2"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "Error: --wait can only be used with --availability drain\n"
    );
}

#[tokio::test]
async fn node_drain_waits_for_the_tasks_to_leave() {
    let fake = Fake::default();
    let host = serve(fake.clone());
    let out = shoal(
        &host,
        &["node", "update", "--availability", "drain", "--wait", "n2"],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "n2: 3 tasks left\nn2: 1 task left\nn2\n");

    let out = shoal(
        &host,
        &[
            "node",
            "update",
            "--availability",
            "drain",
            "--wait",
            "--timeout",
            "1s",
            "stuck",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "stuck: 2 tasks left\n");
    assert!(
        stderr(&out).starts_with("Error: stuck still has 2 tasks after 1s: "),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn node_promote_and_demote() {
    let fake = Fake::default();
    let host = serve(fake.clone());
    let out = shoal(&host, &["node", "promote", "n2", "n1"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "Node n2 promoted to a manager in the swarm.\nNode n1 is already a manager.\n"
    );
    let out = shoal(&host, &["node", "demote", "n1", "nope"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "Manager n1 demoted in the swarm.\n");
    assert_eq!(stderr(&out), "Error: node nope not found\n");
    let roles: Vec<(String, i32)> = fake
        .node_updates
        .lock()
        .unwrap()
        .iter()
        .map(|u| (u.node.clone(), u.spec.as_ref().unwrap().role))
        .collect();
    assert_eq!(
        roles,
        [
            ("node2".to_string(), NodeRole::Manager as i32),
            ("node1".to_string(), NodeRole::Worker as i32)
        ]
    );
}

#[tokio::test]
async fn node_rm_goes_on_past_a_refusal() {
    let fake = Fake::default();
    let host = serve(fake.clone());
    let out = shoal(&host, &["node", "rm", "--force", "n1", "n2"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "n2\n");
    assert_eq!(
        stderr(&out),
        "Error: node n1 is a manager: demote it first with `shoal node demote n1`\n"
    );
    let removed = fake.removed.lock().unwrap().clone();
    assert_eq!(removed.len(), 2);
    assert!(removed.iter().all(|r| r.force));
}

#[tokio::test]
async fn swarm_join_and_join_tokens() {
    let fake = Fake::default();
    let host = serve(fake.clone());
    let out = shoal(
        &host,
        &[
            "swarm",
            "join",
            "--token",
            "SHTKN-1-digest-worker",
            "--advertise-addr",
            "10.0.0.2",
            "10.0.0.1:4242",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "This node joined a swarm as a worker.\n");
    let joined = fake.joined.lock().unwrap().clone();
    assert_eq!(joined[0].remote_addr, "10.0.0.1:4242");
    assert_eq!(joined[0].advertise_addr, "10.0.0.2");
    let out = shoal(
        &host,
        &[
            "swarm",
            "join",
            "--token",
            "SHTKN-1-digest-manager",
            "10.0.0.1:4242",
        ],
    )
    .await;
    assert_eq!(stdout(&out), "This node joined a swarm as a manager.\n");

    let out = shoal(&host, &["swarm", "join-token", "worker"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "To add a worker to this swarm, run the following command:\n\n    shoal swarm join --token SHTKN-1-digest-worker 10.0.0.1:4242\n\n"
    );
    let out = shoal(&host, &["swarm", "join-token", "-q", "manager"]).await;
    assert_eq!(stdout(&out), "SHTKN-1-digest-manager\n");
    let out = shoal(&host, &["swarm", "join-token", "--rotate", "worker"]).await;
    assert_eq!(
        stdout(&out),
        "Successfully rotated worker join token.\n\nTo add a worker to this swarm, run the following command:\n\n    shoal swarm join --token SHTKN-1-digest-new 10.0.0.1:4242\n\n"
    );
    let out = shoal(&host, &["swarm", "join-token", "boss"]).await;
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn swarm_init_recovery_flags() {
    let fake = Fake::default();
    let host = serve(fake.clone());
    let out = shoal(
        &host,
        &[
            "swarm",
            "init",
            "--force-new-cluster",
            "--cert-expiry",
            "48h",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let inits = fake.inits.lock().unwrap().clone();
    assert!(inits[0].force_new_cluster);
    assert_eq!(inits[0].cert_expiry_ms, 48 * 3_600_000);
}

#[tokio::test]
async fn service_create_sends_placement_preferences() {
    let fake = Fake::default();
    let host = serve(fake.clone());
    let out = shoal(
        &host,
        &[
            "service",
            "create",
            "-d",
            "--placement-pref",
            "spread=node.labels.zone",
            "--replicas-max-per-node",
            "1",
            "alpine",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let created = fake.created.lock().unwrap().clone();
    let placement = created[0].task.clone().unwrap().placement.unwrap();
    assert_eq!(placement.spread, ["node.labels.zone"]);
    assert_eq!(placement.max_replicas, 1);
    let out = shoal(
        &host,
        &["service", "create", "--placement-pref", "zone", "alpine"],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("invalid placement preference \"zone\" for --placement-pref"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn service_update_applies_flags_to_the_read_spec() {
    let fake = Fake::default();
    let host = serve(fake.clone());
    let out = shoal(
        &host,
        &[
            "service",
            "update",
            "--image",
            "nginx:2",
            "--env-add",
            "A=1",
            "--args",
            "sleep  100",
            "--replicas",
            "5",
            "--constraint-add",
            "node.role==worker",
            "--update-parallelism",
            "2",
            "--update-delay",
            "10s",
            "--update-order",
            "start-first",
            "--update-failure-action",
            "rollback",
            "--update-monitor",
            "30s",
            "--update-max-failure-ratio",
            "0.25",
            "--rollback-parallelism",
            "0",
            "--force",
            "-d",
            "web",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "web\n");
    let updated = fake.updated.lock().unwrap().clone();
    assert_eq!(updated.len(), 1);
    assert_eq!(updated[0].version, 41, "guarded by the version read");
    let spec = updated[0].spec.clone().unwrap();
    assert_eq!(spec.replicas, 5);
    assert_eq!(spec.force_update, 1);
    let task = spec.task.clone().unwrap();
    let container = task.container.unwrap();
    assert_eq!(container.image, "nginx:2");
    assert_eq!(container.env, ["A=1"]);
    assert_eq!(container.args, ["sleep", "100"]);
    assert_eq!(task.placement.unwrap().constraints, ["node.role==worker"]);
    assert_eq!(
        spec.update,
        Some(UpdateConfig {
            parallelism: Some(2),
            delay_ms: 10_000,
            order: UpdateOrder::StartFirst as i32,
            failure_action: FailureAction::Rollback as i32,
            monitor_ms: Some(30_000),
            max_failure_ratio: 0.25,
        })
    );
    assert_eq!(spec.rollback.and_then(|r| r.parallelism), Some(0));
}

#[tokio::test]
async fn service_update_refuses_bad_values_before_asking() {
    let fake = Fake::default();
    let host = serve(fake.clone());
    let cases: &[(&[&str], &str)] = &[
        (
            &["--update-delay", "5x"],
            r#"invalid duration "5x" for --update-delay: use a number with a unit, e.g. 5s or 1m30s"#,
        ),
        (
            &["--update-max-failure-ratio", "1.5"],
            "--update-max-failure-ratio must be between 0 and 1",
        ),
        (
            &["--rollback-max-failure-ratio", "-0.1"],
            "--rollback-max-failure-ratio must be between 0 and 1",
        ),
        (&["--update-order", "sideways"], "invalid value 'sideways'"),
        (
            &["--update-parallelism", "-1"],
            r#"invalid number "-1" for --update-parallelism"#,
        ),
    ];
    for (flags, want) in cases {
        let mut argv = vec!["service", "update"];
        argv.extend_from_slice(flags);
        argv.push("web");
        let out = shoal(&host, &argv).await;
        assert!(!out.status.success(), "{flags:?}");
        assert!(stderr(&out).contains(want), "{flags:?}: {}", stderr(&out));
    }
    assert!(fake.updated.lock().unwrap().is_empty());
    let out = shoal(&host, &["service", "update", "--replicas", "2", "agent"]).await;
    assert_eq!(
        stderr(&out),
        "Error: --replicas can only be used with replicated mode\n"
    );
}

#[tokio::test]
async fn service_rollback_and_restart() {
    let fake = Fake::default();
    let host = serve(fake.clone());
    let out = shoal(&host, &["service", "rollback", "-d", "web"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "web\n");
    assert_eq!(fake.rollbacks.lock().unwrap()[0].service, "web");
    let out = shoal(&host, &["service", "rollback", "agent"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "Error: service agent has no previous spec to roll back to\n"
    );

    let out = shoal(&host, &["service", "restart", "-d", "web"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "web\n");
    let updated = fake.updated.lock().unwrap().clone();
    assert_eq!(updated.len(), 1);
    let spec = updated[0].spec.clone().unwrap();
    assert_eq!(spec.force_update, 1, "a forced update");
    assert_eq!(
        spec.task.unwrap().container.unwrap().image,
        "nginx:1",
        "nothing else changes"
    );
}

#[tokio::test]
async fn service_create_takes_update_and_rollback_policies() {
    let fake = Fake::default();
    let host = serve(fake.clone());
    let out = shoal(
        &host,
        &[
            "service",
            "create",
            "-d",
            "--update-parallelism",
            "3",
            "--rollback-failure-action",
            "continue",
            "nginx:1",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let created = fake.created.lock().unwrap().clone();
    assert_eq!(created[0].update.and_then(|u| u.parallelism), Some(3));
    assert_eq!(
        created[0].rollback.map(|r| r.failure_action),
        Some(FailureAction::Continue as i32)
    );
}

#[tokio::test]
async fn service_create_and_update_send_the_healthcheck() {
    let fake = Fake::default();
    let host = serve(fake.clone());
    let out = shoal(
        &host,
        &[
            "service",
            "create",
            "-d",
            "--health-cmd",
            "test -f /tmp/ok",
            "--health-interval",
            "1s",
            "--health-retries",
            "2",
            "alpine",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let created = fake.created.lock().unwrap().clone();
    let h = created[0]
        .task
        .clone()
        .unwrap()
        .container
        .unwrap()
        .healthcheck
        .expect("healthcheck");
    assert_eq!(h.test, ["CMD-SHELL", "test -f /tmp/ok"]);
    assert_eq!((h.interval_ms, h.retries), (1_000, 2));

    let out = shoal(
        &host,
        &["service", "update", "-d", "--no-healthcheck", "web"],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let updated = fake.updated.lock().unwrap().clone();
    let h = updated[0]
        .spec
        .clone()
        .and_then(|s| s.task)
        .and_then(|t| t.container)
        .and_then(|c| c.healthcheck)
        .expect("healthcheck");
    assert_eq!(h.test, ["NONE"]);

    // --no-healthcheck with another health flag is a usage error.
    let out = shoal(
        &host,
        &[
            "service",
            "create",
            "--no-healthcheck",
            "--health-cmd",
            "true",
            "alpine",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--no-healthcheck"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn service_update_waits_for_the_new_tasks() {
    let looks = Arc::new(Mutex::new(0));
    let host = serve(Fake {
        rollout: Some(looks.clone()),
        ..Fake::default()
    });
    let out = shoal(&host, &["service", "update", "--image", "nginx:2", "web"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "web\n", "nothing else on a pipe");
    assert_eq!(*looks.lock().unwrap(), 4, "until the three new tasks run");

    // --timeout gives up.
    *looks.lock().unwrap() = -10;
    let out = shoal(&host, &["service", "restart", "--timeout", "300ms", "web"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("Error: service web did not converge within 300ms"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn service_update_fails_when_the_update_pauses() {
    let fake = Fake {
        rollout: Some(Arc::default()),
        paused: true,
        ..Fake::default()
    };
    let host = serve(fake.clone());
    let out = shoal(&host, &["service", "update", "--image", "nginx:2", "web"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "web\n");
    assert_eq!(
        stderr(&out),
        "Error: update paused: task web.1 failed: exit 1\n"
    );
    assert_eq!(fake.updated.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn swarm_ca_shows_and_rotates_the_root() {
    let host = serve(Fake::default());
    let out = shoal(&host, &["swarm", "ca"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "-----BEGIN CERTIFICATE-----\nFAKEOLD\n-----END CERTIFICATE-----\n"
    );
    let out = shoal(&host, &["swarm", "ca", "--rotate"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("FAKENEW"), "{}", stdout(&out));
    assert_eq!(
        stderr(&out),
        "root CA rotated: 2/2 nodes on the new root; the join tokens changed\n"
    );
    let out = shoal(&host, &["swarm", "ca", "--rotate", "--cert-expiry", "1h"]).await;
    assert_eq!(stderr(&out), "Error: refused by the fake\n");
    let out = shoal(&host, &["swarm", "ca", "--cert-expiry", "1h"]).await;
    assert!(
        stderr(&out).contains("--cert-expiry needs --rotate"),
        "{}",
        stderr(&out)
    );
    let out = shoal(&host, &["swarm", "ca", "--rotate", "--cert-expiry", "soon"]).await;
    assert!(!out.status.success());
}

#[tokio::test]
async fn autolock_commands_show_the_key_and_unlock_reads_stdin() {
    let host = serve(Fake::default());
    let out = shoal(&host, &["swarm", "init", "--autolock"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("run the `shoal swarm unlock`"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("    SHKEY-1-fake\n"),
        "{}",
        stdout(&out)
    );
    let out = shoal(&host, &["swarm", "unlock-key", "-q"]).await;
    assert_eq!(stdout(&out), "SHKEY-1-fake\n");
    let out = shoal(&host, &["swarm", "unlock-key", "--rotate"]).await;
    assert!(
        stdout(&out).starts_with("Successfully rotated manager unlock key.\n"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("SHKEY-1-rotated"), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("still opens with the\nprevious key:\n\n    SHKEY-1-fake\n"),
        "{}",
        stdout(&out)
    );
    let out = shoal(&host, &["swarm", "update", "--autolock=true"]).await;
    assert!(stdout(&out).contains("SHKEY-1-fake"), "{}", stdout(&out));
    let out = shoal(&host, &["swarm", "update", "--autolock=false"]).await;
    assert_eq!(stdout(&out), "Swarm updated.\n");
    let out = shoal(&host, &["swarm", "update", "--autolock=maybe"]).await;
    assert!(!out.status.success());

    let unlock = |key: &'static str| {
        let host = host.clone();
        async move {
            let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
                .args(["-H", &host, "swarm", "unlock"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("shoal runs");
            use tokio::io::AsyncWriteExt;
            let mut stdin = child.stdin.take().expect("stdin");
            stdin.write_all(key.as_bytes()).await.expect("written");
            drop(stdin);
            child.wait_with_output().await.expect("ran")
        }
    };
    let out = unlock("SHKEY-1-fake\n").await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = unlock("SHKEY-1-wrong\n").await;
    assert_eq!(stderr(&out), "Error: the unlock key is not this node's\n");
}

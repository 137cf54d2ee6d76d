//! The Control API: what the CLI asks of the managers.
//!
//! Each call validates its input ([`validate`]), then reads or writes the store in one
//! transaction. This module is the only place where manager errors become `tonic::Status`
//! ([`error`]). Calls that reach a follower are refused with the leader's address until
//! forwarding lands with multi-manager clusters.

mod error;
pub mod files;
mod image;
mod networks;
mod nodes;
pub mod ports;
mod stacks;
mod swarm;
pub mod validate;

use shoal_proto::{
    CreateConfigRequest, CreateConfigResponse, CreateSecretRequest, CreateSecretResponse,
    GetConfigRequest, GetConfigResponse, GetSecretRequest, GetSecretResponse, ListConfigsRequest,
    ListConfigsResponse, ListSecretsRequest, ListSecretsResponse, RemoveConfigRequest,
    RemoveConfigResponse, RemoveSecretRequest, RemoveSecretResponse,
};
use shoal_proto::{
    CreateNetworkRequest, CreateNetworkResponse, CreateServiceRequest, CreateServiceResponse,
    GetJoinTokensRequest, GetJoinTokensResponse, GetNetworkRequest, GetNetworkResponse,
    GetNodeRequest, GetNodeResponse, GetRootCaRequest, GetRootCaResponse, GetServiceRequest,
    GetServiceResponse, JobStatus, ListNetworksRequest, ListNetworksResponse, ListNodesRequest,
    ListNodesResponse, ListServicesRequest, ListServicesResponse, ListTasksRequest,
    ListTasksResponse, RemoveNetworkRequest, RemoveNetworkResponse, RemoveNodeRequest,
    RemoveNodeResponse, RemoveServiceRequest, RemoveServiceResponse, ReplicaCount,
    RollbackServiceRequest, RollbackServiceResponse, RotateJoinTokenRequest, RotateRootCaRequest,
    Service, ServiceMode, TaskState, UpdateNodeRequest, UpdateNodeResponse, UpdateServiceRequest,
    UpdateServiceResponse, UpdateState, UpdateStatus,
};
use shoal_proto::{
    DeployStackRequest, DeployStackResponse, GetStackRequest, GetStackResponse, ListStacksRequest,
    ListStacksResponse, RemoveStackRequest, RemoveStackResponse, RollbackStackRequest,
};
use shoal_proto::{
    GetUnlockKeyRequest, GetUnlockKeyResponse, UpdateSwarmRequest, UpdateSwarmResponse,
};
use std::collections::HashSet;

use tonic::{Request, Response, Status};

use crate::ids::new_id;
use crate::orchestrator::{is_job, jobs};
use crate::scheduler::constraint;
use crate::store::{Lookup, Object, ReadTx, Store, WriteTx};
pub use error::ControlError;

/// The Control service over the store.
#[derive(Clone)]
pub struct ControlApi {
    store: Store,
}

impl ControlApi {
    /// The swarm's recent changes from this manager's journal (`shoal events`).
    pub fn watch_events(
        &self,
        request: shoal_proto::WatchEventsRequest,
    ) -> crate::events::EventStream {
        crate::events::watch(self.store.state().clone(), request)
    }

    pub fn new(store: Store) -> Self {
        Self { store }
    }

    pub async fn create_service(
        &self,
        request: CreateServiceRequest,
    ) -> Result<Service, ControlError> {
        let spec = validate::service_spec(request.spec.unwrap_or_default())?;
        let service = new_service(spec);
        let id = service.id.clone();
        self.store
            .update(|tx| {
                if !tx.services_named_now(service.name()).is_empty() {
                    return Err(ControlError::NameTaken(service.name().to_string()));
                }
                let mut service = service;
                if let Some(spec) = service.spec.as_mut() {
                    bind_spec(tx, spec, None)?;
                }
                tx.create(Object::Service(service))?;
                Ok(())
            })
            .await?;
        self.stored_service(id)
    }

    /// The service as stored now (after a write).
    fn stored_service(&self, id: String) -> Result<Service, ControlError> {
        self.store
            .view(|r| r.service(&id).cloned())
            .ok_or(ControlError::ServiceNotFound(id))
    }

    pub async fn update_service(
        &self,
        request: UpdateServiceRequest,
    ) -> Result<Service, ControlError> {
        let mut spec = validate::service_spec(request.spec.unwrap_or_default())?;
        let id = self
            .store
            .update(|tx| {
                let mut service = find_service(tx.read(), &request.service)?.clone();
                bind_spec(tx, &mut spec, Some(&service))?;
                if request.version != service.version() {
                    return Err(ControlError::OutOfSequence {
                        kind: "service",
                        name: service.name().to_string(),
                    });
                }
                apply_spec(&mut service, spec)?;
                let id = service.id.clone();
                tx.update(Object::Service(service))?;
                Ok(id)
            })
            .await?;
        self.stored_service(id)
    }

    /// `service rollback`: the previous spec comes back, and its tasks are rolled out again.
    pub async fn rollback_service(
        &self,
        request: RollbackServiceRequest,
    ) -> Result<Service, ControlError> {
        let id = self
            .store
            .update(|tx| {
                let mut service = find_service(tx.read(), &request.service)?.clone();
                let Some(previous) = service.previous_spec.take() else {
                    return Err(ControlError::Invalid(format!(
                        "service {} has no previous spec to roll back to",
                        service.name()
                    )));
                };
                service.previous_spec = service.spec.replace(previous);
                std::mem::swap(
                    &mut service.spec_version,
                    &mut service.previous_spec_version,
                );
                if is_job(service.mode()) {
                    // A job runs again with the previous spec.
                    next_iteration(&mut service);
                } else {
                    service.update_status = Some(UpdateStatus {
                        state: UpdateState::RollbackStarted as i32,
                        ..updating("manually requested rollback")
                    });
                }
                let id = service.id.clone();
                tx.update(Object::Service(service))?;
                Ok(id)
            })
            .await?;
        self.stored_service(id)
    }

    pub async fn remove_service(&self, request: RemoveServiceRequest) -> Result<(), ControlError> {
        self.store
            .update(|tx| {
                let service = find_service(tx.read(), &request.service)?.clone();
                stage_removal(tx, service)
            })
            .await
    }

    pub fn get_service(&self, request: GetServiceRequest) -> Result<Service, ControlError> {
        self.store
            .view(|r| find_service(r, &request.service).cloned())
    }

    pub fn list_services(&self, _request: ListServicesRequest) -> ListServicesResponse {
        self.store.view(|r| {
            let services: Vec<Service> = r.services().cloned().collect();
            let replicas = services
                .iter()
                .map(|s| (s.id.clone(), replica_count(r, s)))
                .collect();
            ListServicesResponse { services, replicas }
        })
    }

    pub fn list_tasks(&self, request: ListTasksRequest) -> Result<ListTasksResponse, ControlError> {
        self.store.view(|r| {
            let service_id = match request.service.as_str() {
                "" => None,
                key => Some(find_service(r, key)?.id.clone()),
            };
            let node_id = match request.node.as_str() {
                "" => None,
                key => Some(find_node(r, key)?.id.clone()),
            };
            let tasks = r
                .tasks()
                .filter(|t| service_id.as_ref().is_none_or(|s| &t.service_id == s))
                .filter(|t| node_id.as_ref().is_none_or(|n| &t.node_id == n))
                .cloned()
                .collect();
            let node_names = r
                .nodes()
                .map(|n| (n.id.clone(), n.hostname().to_string()))
                .collect();
            Ok(ListTasksResponse { tasks, node_names })
        })
    }

    pub fn list_nodes(&self, _request: ListNodesRequest) -> ListNodesResponse {
        ListNodesResponse {
            nodes: self.store.view(|r| r.nodes().cloned().collect()),
        }
    }

    pub fn get_node(&self, request: GetNodeRequest) -> Result<GetNodeResponse, ControlError> {
        let node = self.store.view(|r| find_node(r, &request.node).cloned())?;
        Ok(GetNodeResponse { node: Some(node) })
    }
}

/// A new service of `spec` (validated), not yet stored.
fn new_service(spec: shoal_proto::ServiceSpec) -> Service {
    let mode = ServiceMode::try_from(spec.mode).unwrap_or(ServiceMode::Replicated);
    Service {
        id: new_id(),
        meta: None,
        spec: Some(spec),
        spec_version: 1,
        previous_spec: None,
        update_status: None,
        previous_spec_version: 0,
        // A job's first run.
        job_status: is_job(mode).then(|| JobStatus {
            iteration: 1,
            started_at_ms: crate::clock::now_ms(),
        }),
        vips: Vec::new(),
    }
}

/// Bind `spec` (validated) to the cluster as the transaction sees it: its networks,
/// secrets and configs resolved to ids (and versions), its registry credentials sealed
/// (kept from `existing`'s when none come), its published ports claimed.
fn bind_spec(
    tx: &mut WriteTx<'_>,
    spec: &mut shoal_proto::ServiceSpec,
    existing: Option<&Service>,
) -> Result<(), ControlError> {
    let networks = tx.networks_now();
    networks::resolve(&networks, spec)?;
    files::resolve(&tx.secrets_now(), &tx.configs_now(), spec)?;
    files::seal_registry_auth(tx, spec, existing.and_then(|s| s.spec.as_ref()))?;
    ports::claim(
        &tx.publishing_services_now(),
        &networks,
        spec,
        existing.map(|s| s.id.as_str()),
    )
}

/// `spec` (validated, then bound by [`bind_spec`]) becomes `service`'s spec:
/// a new version and a rolling update (a new iteration for a job) when its tasks change.
fn apply_spec(
    service: &mut Service,
    mut spec: shoal_proto::ServiceSpec,
) -> Result<(), ControlError> {
    if spec.name != service.name() {
        return Err(ControlError::Invalid(format!(
            "renaming a service is not supported: {} stays {}",
            service.name(),
            service.name()
        )));
    }
    if spec.mode != service.spec.as_ref().map_or(0, |s| s.mode) {
        return Err(ControlError::Invalid(
            "the mode of a service cannot change: remove it and create it again".into(),
        ));
    }
    if matches!(service.mode(), ServiceMode::Global | ServiceMode::GlobalJob) {
        spec.replicas = 0;
    }
    let old = service.spec.clone().unwrap_or_default();
    let state = service.update_status.as_ref().map_or(0, |s| s.state);
    let ports = |s: &shoal_proto::ServiceSpec| s.endpoint.as_ref().map(|e| e.ports.clone());
    let tasks = |s: &shoal_proto::ServiceSpec| s.task.as_ref().map(|t| t.normalized());
    if tasks(&old) != tasks(&spec)
        || old.force_update != spec.force_update
        || ports(&old) != ports(&spec)
    {
        // A new update: tasks of every other version are old. Versions only
        // grow (a rollback swaps two of them), so a new one is never reused.
        let version = service.spec_version.max(service.previous_spec_version) + 1;
        service.previous_spec_version = service.spec_version;
        service.spec_version = version;
        service.previous_spec = service.spec.replace(spec);
        // Services roll to the new spec; a job runs again instead, as a new
        // iteration.
        if matches!(
            service.mode(),
            ServiceMode::Replicated | ServiceMode::Global
        ) {
            service.update_status = Some(updating("update in progress"));
        } else if is_job(service.mode()) {
            next_iteration(service);
        }
    } else {
        // Nothing to replace: the previous spec stays what a rollback returns
        // to (a scale in the middle of an update must not lose it).
        service.spec = Some(spec);
        if state == UpdateState::Paused as i32 || state == UpdateState::RollbackPaused as i32 {
            service.update_status = Some(updating("update resumed"));
        }
    }
    Ok(())
}

/// Stage the removal of `service`. Its tasks are the orchestrator's to shut down (a
/// service may have more than one transaction holds), and the reaper's to remove once
/// they have.
fn stage_removal(tx: &mut WriteTx<'_>, service: Service) -> Result<(), ControlError> {
    tx.remove(Object::Service(service));
    Ok(())
}

/// `service ls`'s count. Services: tasks running (a slot, or a global task's node, counts
/// once: while a drained node's task hands over, the old and the new one both run) over
/// tasks wanted. Jobs: completions of the current iteration (a slot or node counts once)
/// over completions wanted (`replicas`, or the eligible nodes of a global job).
fn replica_count(r: &ReadTx<'_>, s: &Service) -> ReplicaCount {
    let mut count = ReplicaCount::default();
    let mode = s.mode();
    if is_job(mode) {
        let iteration = crate::orchestrator::job_iteration(s);
        let mut done = HashSet::new();
        for t in r.tasks_of_service(&s.id) {
            if t.job_iteration == iteration && t.state() == TaskState::Complete {
                done.insert((t.slot, t.node_id.as_str()));
            }
        }
        if mode == ServiceMode::ReplicatedJob {
            let total = s.spec.as_ref().map_or(0, |spec| spec.replicas);
            count.desired = total;
            count.running = done
                .iter()
                .filter(|(slot, _)| (1..=total).contains(slot))
                .map(|(slot, _)| slot)
                .collect::<HashSet<_>>()
                .len() as u64;
        } else {
            let constraints = constraint::of_service(s);
            // Eligible nodes, and nodes that completed it before they stopped being eligible.
            let nodes: HashSet<&str> = r
                .nodes()
                .filter(|n| jobs::eligible(n, &constraints))
                .map(|n| n.id.as_str())
                .collect();
            let done: HashSet<&str> = done.iter().map(|(_, n)| *n).collect();
            count.running = done.len() as u64;
            count.desired = nodes.union(&done).count() as u64;
        }
        return count;
    }
    let mut running = HashSet::new();
    for t in r.tasks_of_service(&s.id) {
        if t.desired() == TaskState::Running && t.state() == TaskState::Running {
            running.insert((t.slot, t.node_id.as_str()));
        }
        if mode == ServiceMode::Global && t.desired() == TaskState::Running {
            count.desired += 1;
        }
    }
    if mode == ServiceMode::Global {
        count.running = running.len() as u64;
    } else {
        count.running = running
            .iter()
            .map(|(slot, _)| slot)
            .collect::<HashSet<_>>()
            .len() as u64;
        count.desired = s.spec.as_ref().map_or(0, |spec| spec.replicas);
    }
    count
}

/// A job's spec changed (or was forced, or rolled back): it runs again.
fn next_iteration(service: &mut Service) {
    let iteration = crate::orchestrator::job_iteration(service) + 1;
    service.job_status = Some(JobStatus {
        iteration,
        started_at_ms: crate::clock::now_ms(),
    });
}

fn updating(message: &str) -> UpdateStatus {
    UpdateStatus {
        state: UpdateState::Updating as i32,
        message: message.into(),
        started_at_ms: crate::clock::now_ms(),
        completed_at_ms: 0,
    }
}

fn find_service<'a>(r: &ReadTx<'a>, key: &str) -> Result<&'a Service, ControlError> {
    match r.find_service(key) {
        Lookup::Found(s) => Ok(s),
        Lookup::Missing => Err(ControlError::ServiceNotFound(key.to_string())),
        Lookup::Ambiguous(count) => Err(ControlError::Ambiguous {
            kind: "service",
            key: key.to_string(),
            count,
        }),
    }
}

fn find_node<'a>(r: &ReadTx<'a>, key: &str) -> Result<&'a shoal_proto::Node, ControlError> {
    match r.find_node(key) {
        Lookup::Found(n) => Ok(n),
        Lookup::Missing => Err(ControlError::NodeNotFound(key.to_string())),
        Lookup::Ambiguous(count) => Err(ControlError::Ambiguous {
            kind: "node",
            key: key.to_string(),
            count,
        }),
    }
}

#[tonic::async_trait]
impl shoal_proto::Control for ControlApi {
    async fn create_service(
        &self,
        request: Request<CreateServiceRequest>,
    ) -> Result<Response<CreateServiceResponse>, Status> {
        let service = ControlApi::create_service(self, request.into_inner()).await?;
        Ok(Response::new(CreateServiceResponse {
            service: Some(service),
        }))
    }

    async fn update_service(
        &self,
        request: Request<UpdateServiceRequest>,
    ) -> Result<Response<UpdateServiceResponse>, Status> {
        let service = ControlApi::update_service(self, request.into_inner()).await?;
        Ok(Response::new(UpdateServiceResponse {
            service: Some(service),
        }))
    }

    async fn rollback_service(
        &self,
        request: Request<RollbackServiceRequest>,
    ) -> Result<Response<RollbackServiceResponse>, Status> {
        let service = ControlApi::rollback_service(self, request.into_inner()).await?;
        Ok(Response::new(RollbackServiceResponse {
            service: Some(service),
        }))
    }

    async fn remove_service(
        &self,
        request: Request<RemoveServiceRequest>,
    ) -> Result<Response<RemoveServiceResponse>, Status> {
        ControlApi::remove_service(self, request.into_inner()).await?;
        Ok(Response::new(RemoveServiceResponse {}))
    }

    async fn get_service(
        &self,
        request: Request<GetServiceRequest>,
    ) -> Result<Response<GetServiceResponse>, Status> {
        let service = ControlApi::get_service(self, request.into_inner())?;
        Ok(Response::new(GetServiceResponse {
            service: Some(service),
        }))
    }

    async fn list_services(
        &self,
        request: Request<ListServicesRequest>,
    ) -> Result<Response<ListServicesResponse>, Status> {
        Ok(Response::new(ControlApi::list_services(
            self,
            request.into_inner(),
        )))
    }

    async fn list_tasks(
        &self,
        request: Request<ListTasksRequest>,
    ) -> Result<Response<ListTasksResponse>, Status> {
        Ok(Response::new(ControlApi::list_tasks(
            self,
            request.into_inner(),
        )?))
    }

    async fn list_nodes(
        &self,
        request: Request<ListNodesRequest>,
    ) -> Result<Response<ListNodesResponse>, Status> {
        Ok(Response::new(ControlApi::list_nodes(
            self,
            request.into_inner(),
        )))
    }

    async fn get_node(
        &self,
        request: Request<GetNodeRequest>,
    ) -> Result<Response<GetNodeResponse>, Status> {
        Ok(Response::new(ControlApi::get_node(
            self,
            request.into_inner(),
        )?))
    }

    async fn update_node(
        &self,
        request: Request<UpdateNodeRequest>,
    ) -> Result<Response<UpdateNodeResponse>, Status> {
        let node = ControlApi::update_node(self, request.into_inner()).await?;
        Ok(Response::new(UpdateNodeResponse { node: Some(node) }))
    }

    async fn remove_node(
        &self,
        request: Request<RemoveNodeRequest>,
    ) -> Result<Response<RemoveNodeResponse>, Status> {
        ControlApi::remove_node(self, request.into_inner()).await?;
        Ok(Response::new(RemoveNodeResponse {}))
    }

    async fn get_join_tokens(
        &self,
        _request: Request<GetJoinTokensRequest>,
    ) -> Result<Response<GetJoinTokensResponse>, Status> {
        Ok(Response::new(crate::ca::join_tokens(&self.store)?))
    }

    async fn create_network(
        &self,
        request: Request<CreateNetworkRequest>,
    ) -> Result<Response<CreateNetworkResponse>, Status> {
        let spec = request.into_inner().spec.unwrap_or_default();
        let network = ControlApi::create_network(self, spec).await?;
        Ok(Response::new(CreateNetworkResponse {
            network: Some(network),
        }))
    }

    async fn get_network(
        &self,
        request: Request<GetNetworkRequest>,
    ) -> Result<Response<GetNetworkResponse>, Status> {
        let (network, services) = ControlApi::get_network(self, &request.into_inner().network)?;
        Ok(Response::new(GetNetworkResponse {
            network: Some(network),
            services,
        }))
    }

    async fn list_networks(
        &self,
        _request: Request<ListNetworksRequest>,
    ) -> Result<Response<ListNetworksResponse>, Status> {
        Ok(Response::new(ListNetworksResponse {
            networks: ControlApi::list_networks(self),
        }))
    }

    async fn remove_network(
        &self,
        request: Request<RemoveNetworkRequest>,
    ) -> Result<Response<RemoveNetworkResponse>, Status> {
        ControlApi::remove_network(self, &request.into_inner().network).await?;
        Ok(Response::new(RemoveNetworkResponse {}))
    }

    async fn create_secret(
        &self,
        request: Request<CreateSecretRequest>,
    ) -> Result<Response<CreateSecretResponse>, Status> {
        let spec = request.into_inner().spec.unwrap_or_default();
        let secret = ControlApi::create_secret(self, spec).await?;
        Ok(Response::new(CreateSecretResponse {
            secret: Some(secret),
        }))
    }

    async fn get_secret(
        &self,
        request: Request<GetSecretRequest>,
    ) -> Result<Response<GetSecretResponse>, Status> {
        let (secret, services) = ControlApi::get_secret(self, &request.into_inner().secret)?;
        Ok(Response::new(GetSecretResponse {
            secret: Some(secret),
            services,
        }))
    }

    async fn list_secrets(
        &self,
        _request: Request<ListSecretsRequest>,
    ) -> Result<Response<ListSecretsResponse>, Status> {
        Ok(Response::new(ListSecretsResponse {
            secrets: ControlApi::list_secrets(self),
        }))
    }

    async fn update_secret(
        &self,
        request: Request<shoal_proto::UpdateFileLabelsRequest>,
    ) -> Result<Response<shoal_proto::UpdateSecretResponse>, Status> {
        let secret = self.update_secret_labels(request.into_inner()).await?;
        Ok(Response::new(shoal_proto::UpdateSecretResponse {
            secret: Some(secret),
        }))
    }

    async fn update_config(
        &self,
        request: Request<shoal_proto::UpdateFileLabelsRequest>,
    ) -> Result<Response<shoal_proto::UpdateConfigResponse>, Status> {
        let config = self.update_config_labels(request.into_inner()).await?;
        Ok(Response::new(shoal_proto::UpdateConfigResponse {
            config: Some(config),
        }))
    }

    async fn remove_secret(
        &self,
        request: Request<RemoveSecretRequest>,
    ) -> Result<Response<RemoveSecretResponse>, Status> {
        ControlApi::remove_secret(self, &request.into_inner().secret).await?;
        Ok(Response::new(RemoveSecretResponse {}))
    }

    async fn create_config(
        &self,
        request: Request<CreateConfigRequest>,
    ) -> Result<Response<CreateConfigResponse>, Status> {
        let spec = request.into_inner().spec.unwrap_or_default();
        let config = ControlApi::create_config(self, spec).await?;
        Ok(Response::new(CreateConfigResponse {
            config: Some(config),
        }))
    }

    async fn get_config(
        &self,
        request: Request<GetConfigRequest>,
    ) -> Result<Response<GetConfigResponse>, Status> {
        let (config, services) = ControlApi::get_config(self, &request.into_inner().config)?;
        Ok(Response::new(GetConfigResponse {
            config: Some(config),
            services,
        }))
    }

    async fn list_configs(
        &self,
        _request: Request<ListConfigsRequest>,
    ) -> Result<Response<ListConfigsResponse>, Status> {
        Ok(Response::new(ListConfigsResponse {
            configs: ControlApi::list_configs(self),
        }))
    }

    async fn remove_config(
        &self,
        request: Request<RemoveConfigRequest>,
    ) -> Result<Response<RemoveConfigResponse>, Status> {
        ControlApi::remove_config(self, &request.into_inner().config).await?;
        Ok(Response::new(RemoveConfigResponse {}))
    }

    async fn deploy_stack(
        &self,
        request: Request<DeployStackRequest>,
    ) -> Result<Response<DeployStackResponse>, Status> {
        let request = request.into_inner();
        let spec = request.spec.unwrap_or_default();
        Ok(Response::new(
            ControlApi::deploy_stack(self, spec, request.prune).await?,
        ))
    }

    async fn list_stacks(
        &self,
        _request: Request<ListStacksRequest>,
    ) -> Result<Response<ListStacksResponse>, Status> {
        Ok(Response::new(ListStacksResponse {
            stacks: ControlApi::list_stacks(self),
        }))
    }

    async fn get_stack(
        &self,
        request: Request<GetStackRequest>,
    ) -> Result<Response<GetStackResponse>, Status> {
        let stack = ControlApi::get_stack(self, &request.into_inner().name)?;
        Ok(Response::new(GetStackResponse { stack: Some(stack) }))
    }

    async fn remove_stack(
        &self,
        request: Request<RemoveStackRequest>,
    ) -> Result<Response<RemoveStackResponse>, Status> {
        let (removed, waiting) = ControlApi::remove_stack(self, &request.into_inner().name).await?;
        Ok(Response::new(RemoveStackResponse { removed, waiting }))
    }

    async fn rollback_stack(
        &self,
        request: Request<RollbackStackRequest>,
    ) -> Result<Response<DeployStackResponse>, Status> {
        let request = request.into_inner();
        Ok(Response::new(
            ControlApi::rollback_stack(self, &request.name, request.revision).await?,
        ))
    }

    async fn get_root_ca(
        &self,
        _request: Request<GetRootCaRequest>,
    ) -> Result<Response<GetRootCaResponse>, Status> {
        Ok(Response::new(crate::ca::rotation::status(&self.store)))
    }

    async fn rotate_root_ca(
        &self,
        request: Request<RotateRootCaRequest>,
    ) -> Result<Response<GetRootCaResponse>, Status> {
        let expiry = request.into_inner().cert_expiry_ms;
        Ok(Response::new(
            crate::ca::rotation::rotate(&self.store, expiry).await?,
        ))
    }

    async fn update_swarm(
        &self,
        request: Request<UpdateSwarmRequest>,
    ) -> Result<Response<UpdateSwarmResponse>, Status> {
        Ok(Response::new(
            ControlApi::update_swarm(self, request.into_inner()).await?,
        ))
    }

    async fn get_unlock_key(
        &self,
        request: Request<GetUnlockKeyRequest>,
    ) -> Result<Response<GetUnlockKeyResponse>, Status> {
        Ok(Response::new(
            self.unlock_key(request.into_inner().rotate).await?,
        ))
    }

    async fn rotate_join_token(
        &self,
        request: Request<RotateJoinTokenRequest>,
    ) -> Result<Response<GetJoinTokensResponse>, Status> {
        let role = shoal_proto::NodeRole::try_from(request.into_inner().role).map_err(|_| {
            Status::invalid_argument("unknown role: rotate the worker or the manager token")
        })?;
        Ok(Response::new(
            crate::ca::rotate_join_token(&self.store, role).await?,
        ))
    }
}

//! Fuzz targets for what arrives from the network or the user before anything trusts it:
//! join tokens and unlock keys, certificate requests and certificates, every Control
//! request through decoding and the Control API, store batches through Raft's applier, and
//! Raft's peer messages. Each target takes raw bytes and must neither panic nor hang.
//!
//! Two drivers share them: `cargo run -p shoal-tests --example fuzz` (a mutation loop on
//! stable Rust, seconds per target in the test command), and the cargo-fuzz crate in
//! `fuzz/` (libFuzzer, for the long runs recorded in docs/RELIABILITY.md).

use std::sync::OnceLock;
use std::time::Duration;

use prost::Message;
use shoal_manager::controlapi::ControlApi;
use shoal_manager::store::{Object, Store, StoreState};
use shoal_pki::vault::UnlockKey;
use shoal_pki::{Identity, JoinToken, Role, RootCa};
use shoal_proto as pb;
use tonic::Request;

/// A target: bytes in, nothing out; a panic is the failure.
pub type Target = fn(&[u8]);

/// Every target by name, with seeds to mutate from.
pub fn targets() -> Vec<(&'static str, Target, Vec<Vec<u8>>)> {
    vec![
        ("join_token", join_token, token_seeds()),
        ("certificate", certificate, certificate_seeds()),
        ("control_request", control_request, control_seeds()),
        ("store_batch", store_batch, batch_seeds()),
        (
            "raft_peer_message",
            raft_peer_message,
            vec![vec![0; 64], vec![1; 16]],
        ),
    ]
}

fn root() -> &'static RootCa {
    static ROOT: OnceLock<RootCa> = OnceLock::new();
    ROOT.get_or_init(|| RootCa::generate("fuzz-cluster").expect("a root CA"))
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

/// `swarm join --token`, `swarm unlock`: the texts a user pastes.
pub fn join_token(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = JoinToken::parse(&text);
    let _ = text.parse::<UnlockKey>();
    let cluster = cluster();
    let _ = shoal_manager::ca::role_of_token(&cluster, &text);
}

fn token_seeds() -> Vec<Vec<u8>> {
    let cluster = cluster();
    let tokens = cluster.tokens.unwrap_or_default();
    vec![
        tokens.worker.into_bytes(),
        tokens.manager.into_bytes(),
        UnlockKey::generate().expect("key").to_string().into_bytes(),
    ]
}

/// A joining node's CSR (signed by the CA), and certificates read back from peers.
pub fn certificate(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let identity = Identity::new("fuzznode", Role::Worker, "fuzz-cluster");
    let _ = root().sign_csr(&text, &identity, Duration::from_secs(3600));
    let _ = shoal_pki::identity_of_cert_pem(&text);
    let _ = shoal_pki::identity_of_cert_der(data);
    let _ = shoal_pki::verify_node_cert(&text, root().cert_pem(), true);
    let _ = shoal_pki::digest_of_pem(&text);
}

fn certificate_seeds() -> Vec<Vec<u8>> {
    let key = shoal_pki::NodeKey::generate().expect("key");
    let csr = key.csr_pem().expect("csr");
    let identity = Identity::new("seed", Role::Manager, "fuzz-cluster");
    let cert = root()
        .sign_csr(&csr, &identity, Duration::from_secs(60))
        .expect("signed");
    vec![
        csr.into_bytes(),
        cert.into_bytes(),
        root().cert_pem().as_bytes().to_vec(),
    ]
}

fn cluster() -> pb::Cluster {
    pb::Cluster {
        id: "fuzz-cluster".into(),
        root_ca: Some(pb::RootCa {
            cert_pem: root().cert_pem().to_string(),
            key_pem: root().key_pem(),
            digest: root().digest(),
            rotation: None,
        }),
        tokens: Some(shoal_manager::ca::new_tokens(&root().digest())),
        spec: Some(pb::ClusterSpec {
            name: "default".into(),
            ..Default::default()
        }),
        default_addr_pool: vec!["10.0.0.0/8".into()],
        subnet_size: 24,
        ..Default::default()
    }
}

/// The Control requests a manager takes, in the order the first byte picks them.
const CONTROL_KINDS: u8 = 10;

/// One Control request: the first byte picks its type, the rest is its protobuf body,
/// decoded and (when it decodes) served by the Control API on a fresh in-memory store.
pub fn control_request(data: &[u8]) {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    runtime().block_on(async {
        let store = Store::in_memory();
        let node = pb::Node {
            id: "n1".into(),
            description: Some(pb::NodeDescription {
                hostname: "n1".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let seeded = store
            .update(|tx| {
                tx.create(Object::Cluster(cluster()))?;
                tx.create(Object::Node(node))
            })
            .await;
        if seeded.is_err() {
            return;
        }
        let api = ControlApi::new(store);
        macro_rules! serve {
            ($method:ident, $req:ty) => {
                if let Ok(request) = <$req>::decode(body) {
                    let _ = pb::Control::$method(&api, Request::new(request)).await;
                }
            };
        }
        match kind % CONTROL_KINDS {
            0 => serve!(create_service, pb::CreateServiceRequest),
            1 => serve!(update_service, pb::UpdateServiceRequest),
            2 => serve!(create_network, pb::CreateNetworkRequest),
            3 => serve!(create_secret, pb::CreateSecretRequest),
            4 => serve!(create_config, pb::CreateConfigRequest),
            5 => serve!(deploy_stack, pb::DeployStackRequest),
            6 => serve!(update_node, pb::UpdateNodeRequest),
            7 => serve!(remove_node, pb::RemoveNodeRequest),
            8 => serve!(update_swarm, pb::UpdateSwarmRequest),
            _ => serve!(list_tasks, pb::ListTasksRequest),
        }
    });
}

fn control_seeds() -> Vec<Vec<u8>> {
    let spec = pb::ServiceSpec {
        name: "web".into(),
        task: Some(pb::TaskSpec {
            container: Some(pb::ContainerSpec {
                image: "busybox:1".into(),
                env: vec!["A=1".into()],
                command: vec!["sleep".into(), "1".into()],
                ..Default::default()
            }),
            ..Default::default()
        }),
        replicas: 3,
        ..Default::default()
    };
    let with_kind = |kind: u8, body: Vec<u8>| {
        let mut out = vec![kind];
        out.extend(body);
        out
    };
    vec![
        with_kind(
            0,
            pb::CreateServiceRequest {
                spec: Some(spec.clone()),
            }
            .encode_to_vec(),
        ),
        with_kind(
            2,
            pb::CreateNetworkRequest {
                spec: Some(pb::NetworkSpec {
                    name: "front".into(),
                    driver: "overlay".into(),
                    ..Default::default()
                }),
            }
            .encode_to_vec(),
        ),
        with_kind(
            5,
            pb::DeployStackRequest {
                spec: Some(pb::StackSpec {
                    name: "app".into(),
                    services: vec![spec],
                    ..Default::default()
                }),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        with_kind(
            8,
            pb::UpdateSwarmRequest {
                set_autolock: true,
                autolock: true,
            }
            .encode_to_vec(),
        ),
    ]
}

/// A committed store batch as a follower applies it: decoded, checked, applied or
/// refused, or (unreadable) stopping the member; never a panic.
pub fn store_batch(data: &[u8]) {
    let state = StoreState::new();
    let _ = shoal_raft::Applier::apply(&state, 1, data);
    let _ = shoal_raft::Applier::restore(&state, data);
}

fn batch_seeds() -> Vec<Vec<u8>> {
    let action = |object| pb::StoreAction {
        kind: pb::store_action::Kind::Create as i32,
        object: Some(object),
    };
    let batch = |seq, parent, format| pb::StoreActionBatch {
        actions: vec![
            action(pb::store_action::Object::Cluster(Box::new(cluster()))),
            action(pb::store_action::Object::Node(Box::new(pb::Node {
                id: format!("n{seq}"),
                ..Default::default()
            }))),
        ],
        format,
        seq,
        id: seq,
        parent,
    };
    vec![
        // An entry of two batches, the second built on the first, as the leader writes.
        pb::StoreEntry {
            format: shoal_manager::store::STORE_FORMAT,
            batches: vec![
                batch(1, 0, shoal_manager::store::STORE_FORMAT),
                batch(2, 1, shoal_manager::store::STORE_FORMAT),
            ],
        }
        .encode_to_vec(),
        // A lone batch as managers before group commit wrote it.
        batch(0, 0, 1).encode_to_vec(),
    ]
}

/// What a Raft peer sends (append entries, vote, snapshot), decoded as the server does.
pub fn raft_peer_message(data: &[u8]) {
    shoal_raft::fuzzing::decode_peer_messages(data);
}

/// xorshift64*: enough randomness to mutate with, reproducible from its seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
}

/// `seed` with a few random byte-level changes: flips, inserts, deletes, duplicated runs,
/// and boundary values (0, 0xff, varint-ish 0x80 runs) that protobuf and DER trip on.
pub fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for _ in 0..=rng.below(8) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(6) {
            0 if at < bytes.len() => bytes[at] ^= 1 << rng.below(8),
            1 if !bytes.is_empty() => {
                let end = (at + rng.below(16)).min(bytes.len());
                bytes.drain(at.min(end)..end);
            }
            2 => {
                let n = rng.below(8) + 1;
                let fill = [0u8, 0xff, 0x80, 0x7f][rng.below(4)];
                bytes.splice(at..at, std::iter::repeat_n(fill, n));
            }
            3 if !bytes.is_empty() => {
                let from = rng.below(bytes.len());
                let end = (from + rng.below(32) + 1).min(bytes.len());
                let run = bytes[from..end].to_vec();
                bytes.splice(at..at, run);
            }
            4 if at < bytes.len() => bytes[at] = (rng.next_u64() & 0xff) as u8,
            _ => bytes.truncate(at),
        }
    }
    bytes
}

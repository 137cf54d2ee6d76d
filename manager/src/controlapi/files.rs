//! Secrets and configs: named content tasks see as files. Both behave alike here (created
//! once under a unique name, refused removal while a service uses them, resolved in
//! service specs from a name to an id and version); a secret's content never leaves the
//! managers through this API, a config's does (`config inspect`, as Docker's).

use shoal_proto::{
    Config, ConfigSpec, FileReference, Secret, SecretSpec, Service, ServiceSpec,
    UpdateFileLabelsRequest,
};
use std::borrow::Borrow;

use super::{validate, ControlApi, ControlError};
use crate::ids::new_id;
use crate::seal;
use crate::store::{lookup, Lookup, Object, ReadTx, WriteTx};

/// Swarm's limit on a secret's or config's size.
pub const MAX_SIZE: usize = 500 * 1024;

/// What secrets and configs have in common, for the code that treats them alike.
pub trait FileObject: Clone + Sized {
    /// "secret" or "config".
    const KIND: &'static str;
    fn id(&self) -> &str;
    fn name(&self) -> &str;
    fn version(&self) -> u64;
    fn data(&self) -> &[u8];
    /// sha256 of the content (as given, before any sealing), hex.
    fn digest(&self) -> &str;
    fn set_data(&mut self, data: Vec<u8>, labels: std::collections::HashMap<String, String>);
    /// New labels, the content and its version kept.
    fn set_labels(&mut self, labels: std::collections::HashMap<String, String>);
    /// The store's version of the object (`Meta::version`).
    fn meta_version(&self) -> u64;
    /// Ready the content for the store: its digest taken, and a secret's sealed with `key`.
    fn seal(&mut self, key: &[u8]) -> Result<(), ControlError>;
    /// Whether this kind's content is sealed in the store.
    const SEALED: bool;
    fn into_object(self) -> Object;
    /// All of them, as a transaction sees them.
    fn all_now(tx: &WriteTx<'_>) -> Vec<Self>;
    fn all(r: &ReadTx<'_>) -> Vec<Self>;
    /// The references of this kind in a service spec.
    fn references(spec: &mut ServiceSpec) -> Option<&mut Vec<FileReference>>;
    /// The same, to read.
    fn references_of(spec: &ServiceSpec) -> &[FileReference];
}

macro_rules! file_object {
    ($ty:ty, $kind:literal, $field:ident, $now:ident, $iter:ident, $sealed:literal) => {
        impl FileObject for $ty {
            const KIND: &'static str = $kind;
            fn id(&self) -> &str {
                &self.id
            }
            fn name(&self) -> &str {
                self.spec.as_ref().map_or("", |s| s.name.as_str())
            }
            fn version(&self) -> u64 {
                self.version
            }
            fn data(&self) -> &[u8] {
                self.spec.as_ref().map_or(&[], |s| s.data.as_slice())
            }
            fn digest(&self) -> &str {
                &self.digest
            }
            const SEALED: bool = $sealed;
            fn seal(&mut self, key: &[u8]) -> Result<(), ControlError> {
                let spec = self.spec.get_or_insert_with(Default::default);
                self.digest = seal::digest(&spec.data);
                if $sealed {
                    spec.data = seal::seal(key, &spec.data)
                        .map_err(|e| ControlError::Refused(e.to_string()))?;
                }
                Ok(())
            }
            fn set_data(
                &mut self,
                data: Vec<u8>,
                labels: std::collections::HashMap<String, String>,
            ) {
                let spec = self.spec.get_or_insert_with(Default::default);
                spec.data = data;
                spec.labels = labels;
                self.version += 1;
            }
            fn set_labels(&mut self, labels: std::collections::HashMap<String, String>) {
                self.spec.get_or_insert_with(Default::default).labels = labels;
            }
            fn meta_version(&self) -> u64 {
                self.meta.as_ref().map_or(0, |m| m.version)
            }
            fn into_object(self) -> Object {
                Object::$field(self)
            }
            fn all_now(tx: &WriteTx<'_>) -> Vec<Self> {
                tx.$now()
            }
            fn all(r: &ReadTx<'_>) -> Vec<Self> {
                r.$iter().cloned().collect()
            }
            fn references(spec: &mut ServiceSpec) -> Option<&mut Vec<FileReference>> {
                let container = spec.task.as_mut()?.container.as_mut()?;
                Some(&mut container.$iter)
            }
            fn references_of(spec: &ServiceSpec) -> &[FileReference] {
                spec.task
                    .as_ref()
                    .and_then(|t| t.container.as_ref())
                    .map_or(&[], |c| c.$iter.as_slice())
            }
        }
    };
}

file_object!(Secret, "secret", Secret, secrets_now, secrets, true);
file_object!(Config, "config", Config, configs_now, configs, false);

/// The cluster's secrets key, made (in this transaction) the first time one is needed.
pub fn secrets_key(tx: &mut WriteTx<'_>) -> Result<Vec<u8>, ControlError> {
    let mut cluster = tx
        .cluster()
        .ok_or_else(|| ControlError::Refused("the swarm has no cluster record yet".into()))?;
    if cluster.secrets_key.len() == 32 {
        return Ok(cluster.secrets_key);
    }
    let key = seal::new_key().map_err(|e| ControlError::Refused(e.to_string()))?;
    cluster.secrets_key = key.clone();
    tx.update(Object::Cluster(cluster))?;
    Ok(key)
}

/// A spec's registry credentials, sealed for the store: the same sealed bytes as `old`'s
/// when the credentials are the same (a redeploy then changes nothing), `old`'s when the
/// request brings none (as docker keeps them without `--with-registry-auth`).
pub fn seal_registry_auth(
    tx: &mut WriteTx<'_>,
    spec: &mut ServiceSpec,
    old: Option<&ServiceSpec>,
) -> Result<(), ControlError> {
    let old_sealed = old
        .and_then(|s| s.task.as_ref())
        .and_then(|t| t.container.as_ref())
        .map(|c| c.sealed_registry_auth.clone())
        .unwrap_or_default();
    let Some(container) = spec.task.as_mut().and_then(|t| t.container.as_mut()) else {
        return Ok(());
    };
    match container.registry_auth.take() {
        None => {
            if container.sealed_registry_auth.is_empty() {
                container.sealed_registry_auth = old_sealed;
            }
        }
        Some(auth) => {
            let plain = prost::Message::encode_to_vec(&auth);
            let key = secrets_key(tx)?;
            let same =
                !old_sealed.is_empty() && seal::open(&key, &old_sealed).is_ok_and(|p| p == plain);
            container.sealed_registry_auth = if same {
                old_sealed
            } else {
                seal::seal(&key, &plain).map_err(|e| ControlError::Refused(e.to_string()))?
            };
        }
    }
    Ok(())
}

/// `object` ready for the store (digest, sealed content).
pub fn sealed<T: FileObject>(tx: &mut WriteTx<'_>, mut object: T) -> Result<T, ControlError> {
    let key = if T::SEALED {
        secrets_key(tx)?
    } else {
        Vec::new()
    };
    object.seal(&key)?;
    Ok(object)
}

/// Checks a new secret's or config's name and content.
fn check(kind: &str, name: &str, data: &[u8]) -> Result<(), ControlError> {
    if !validate::valid_name(name) {
        return Err(ControlError::Invalid(format!(
            "invalid {kind} name {name:?}: use letters, digits, '_', '.' and '-', starting with a letter or digit"
        )));
    }
    if data.len() > MAX_SIZE {
        return Err(ControlError::Invalid(format!(
            "{kind} {name} is {} bytes: at most {MAX_SIZE} bytes are allowed",
            data.len()
        )));
    }
    Ok(())
}

/// Names of the services whose tasks use `id`.
pub fn users<T: FileObject>(services: &[impl Borrow<Service>], id: &str) -> Vec<String> {
    services
        .iter()
        .map(Borrow::borrow)
        .filter(|s: &&Service| {
            s.spec
                .as_ref()
                .is_some_and(|spec| T::references_of(spec).iter().any(|r| r.id == id))
        })
        .map(|s| s.name().to_string())
        .collect()
}

fn find<T: FileObject>(all: &[T], key: &str) -> Result<T, ControlError> {
    let exact = all.iter().find(|o| o.id() == key);
    match lookup(key, exact, all.iter(), |o| o.name(), |o| o.id()) {
        Lookup::Found(o) => Ok(o.clone()),
        Lookup::Missing => Err(ControlError::NotFound(format!(
            "{} {key} not found: create it with `shoal {} create {key} FILE`",
            T::KIND,
            T::KIND
        ))),
        Lookup::Ambiguous(count) => Err(ControlError::Ambiguous {
            kind: T::KIND,
            key: key.to_string(),
            count,
        }),
    }
}

/// A spec's secret and config references, by id: a name or prefix resolved, the content's
/// version and the defaults (target, mode) filled in.
pub fn resolve(
    secrets: &[Secret],
    configs: &[Config],
    spec: &mut ServiceSpec,
) -> Result<(), ControlError> {
    resolve_kind(secrets, spec)?;
    resolve_kind(configs, spec)
}

fn resolve_kind<T: FileObject>(all: &[T], spec: &mut ServiceSpec) -> Result<(), ControlError> {
    let Some(refs) = T::references(spec) else {
        return Ok(());
    };
    let mut targets = std::collections::BTreeSet::new();
    for r in refs.iter_mut() {
        let key = if r.id.is_empty() { &r.name } else { &r.id };
        let found = find(all, key)?;
        r.id = found.id().to_string();
        r.name = found.name().to_string();
        r.version = found.version();
        if r.target.is_empty() {
            r.target = if T::KIND == "secret" {
                r.name.clone()
            } else {
                format!("/{}", r.name)
            };
        }
        if T::KIND == "secret" && (r.target.contains('/') || r.target == "." || r.target == "..") {
            return Err(ControlError::Invalid(format!(
                "secret {} target {:?}: give a file name; secrets are files under /run/secrets",
                r.name, r.target
            )));
        }
        if T::KIND == "config" && !r.target.starts_with('/') {
            return Err(ControlError::Invalid(format!(
                "config {} target {:?}: give an absolute path in the container",
                r.name, r.target
            )));
        }
        if r.mode == 0 {
            r.mode = 0o444;
        }
        if r.mode > 0o777 {
            return Err(ControlError::Invalid(format!(
                "{} {}: mode {:o} is not a file mode",
                T::KIND,
                r.name,
                r.mode
            )));
        }
        if !targets.insert(r.target.clone()) {
            return Err(ControlError::Invalid(format!(
                "two {}s go to the same file {}",
                T::KIND,
                r.target
            )));
        }
    }
    Ok(())
}

/// Stage a new secret or config (its name unused).
pub fn stage_create<T: FileObject>(tx: &mut WriteTx<'_>, object: T) -> Result<(), ControlError> {
    if let Some(other) = T::all_now(tx).iter().find(|o| o.name() == object.name()) {
        return Err(ControlError::Exists(format!(
            "{} {} already exists (id {}): choose another name",
            T::KIND,
            object.name(),
            other.id()
        )));
    }
    let object = sealed(tx, object)?;
    tx.create(object.into_object())?;
    Ok(())
}

/// Stage new labels on a secret or config (its content and version stay); its id.
fn stage_labels<T: FileObject>(
    tx: &mut WriteTx<'_>,
    mut object: T,
    request: &UpdateFileLabelsRequest,
) -> Result<String, ControlError> {
    if request.version != 0 && request.version != object.meta_version() {
        return Err(ControlError::OutOfSequence {
            kind: T::KIND,
            name: object.name().to_string(),
        });
    }
    object.set_labels(request.labels.clone());
    let id = object.id().to_string();
    tx.update(object.into_object())?;
    Ok(id)
}

/// Stage the removal of a secret or config no service uses.
pub fn stage_remove<T: FileObject>(tx: &mut WriteTx<'_>, object: T) -> Result<(), ControlError> {
    let services = users::<T>(&tx.services_now(), object.id());
    if !services.is_empty() {
        return Err(ControlError::Refused(format!(
            "{} {} is in use by service{} {}: remove it from {} first",
            T::KIND,
            object.name(),
            if services.len() == 1 { "" } else { "s" },
            services.join(", "),
            if services.len() == 1 { "it" } else { "them" },
        )));
    }
    tx.remove(object.into_object());
    Ok(())
}

impl ControlApi {
    pub async fn create_secret(&self, spec: SecretSpec) -> Result<Secret, ControlError> {
        check("secret", &spec.name, &spec.data)?;
        let secret = Secret {
            id: new_id(),
            meta: None,
            spec: Some(spec),
            version: 1,
            digest: String::new(),
        };
        let id = secret.id.clone();
        self.store.update(|tx| stage_create(tx, secret)).await?;
        Ok(without_data(
            self.store
                .view(|r| r.tables().secrets.get(&id).cloned())
                .unwrap_or_default(),
        ))
    }

    pub async fn create_config(&self, spec: ConfigSpec) -> Result<Config, ControlError> {
        check("config", &spec.name, &spec.data)?;
        let config = Config {
            id: new_id(),
            meta: None,
            spec: Some(spec),
            version: 1,
            digest: String::new(),
        };
        let id = config.id.clone();
        self.store.update(|tx| stage_create(tx, config)).await?;
        Ok(self
            .store
            .view(|r| r.tables().configs.get(&id).cloned())
            .unwrap_or_default())
    }

    /// The secret (without its content) and the services using it.
    pub fn get_secret(&self, key: &str) -> Result<(Secret, Vec<String>), ControlError> {
        self.store.view(|r| {
            let secret = find(&Secret::all(r), key)?;
            let services: Vec<Service> = r.services().cloned().collect();
            let users = users::<Secret>(&services, &secret.id);
            Ok((without_data(secret), users))
        })
    }

    pub fn get_config(&self, key: &str) -> Result<(Config, Vec<String>), ControlError> {
        self.store.view(|r| {
            let config = find(&Config::all(r), key)?;
            let services: Vec<Service> = r.services().cloned().collect();
            let users = users::<Config>(&services, &config.id);
            Ok((config, users))
        })
    }

    pub fn list_secrets(&self) -> Vec<Secret> {
        self.store
            .view(|r| r.secrets().cloned().map(without_data).collect())
    }

    pub fn list_configs(&self) -> Vec<Config> {
        self.store.view(|r| r.configs().cloned().collect())
    }

    pub async fn update_secret_labels(
        &self,
        request: UpdateFileLabelsRequest,
    ) -> Result<Secret, ControlError> {
        let id = self
            .store
            .update(|tx| {
                let secret = find(&tx.secrets_now(), &request.key)?;
                stage_labels(tx, secret, &request)
            })
            .await?;
        let (secret, _) = self.get_secret(&id)?;
        Ok(secret)
    }

    pub async fn update_config_labels(
        &self,
        request: UpdateFileLabelsRequest,
    ) -> Result<Config, ControlError> {
        let id = self
            .store
            .update(|tx| {
                let config = find(&tx.configs_now(), &request.key)?;
                stage_labels(tx, config, &request)
            })
            .await?;
        let (config, _) = self.get_config(&id)?;
        Ok(config)
    }

    pub async fn remove_secret(&self, key: &str) -> Result<(), ControlError> {
        self.store
            .update(|tx| {
                let secret = find(&tx.secrets_now(), key)?;
                stage_remove(tx, secret)
            })
            .await
    }

    pub async fn remove_config(&self, key: &str) -> Result<(), ControlError> {
        self.store
            .update(|tx| {
                let config = find(&tx.configs_now(), key)?;
                stage_remove(tx, config)
            })
            .await
    }
}

/// A secret as the API shows it: everything but its content.
pub fn without_data(mut secret: Secret) -> Secret {
    if let Some(spec) = secret.spec.as_mut() {
        spec.data.clear();
    }
    secret
}

#[cfg(test)]
mod tests {
    use shoal_proto::{ContainerSpec, TaskSpec};

    use super::*;
    use crate::store::Store;

    fn using(secret: &str, target: &str) -> ServiceSpec {
        ServiceSpec {
            name: "web".into(),
            task: Some(TaskSpec {
                container: Some(ContainerSpec {
                    image: "web".into(),
                    secrets: vec![FileReference {
                        name: secret.into(),
                        target: target.into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn secrets_are_named_once_resolved_by_name_and_kept_while_used() {
        let store = Store::in_memory();
        crate::testutil::put(&store, vec![Object::Cluster(Default::default())]).await;
        let api = ControlApi::new(store);
        let spec = |name: &str| SecretSpec {
            name: name.into(),
            data: b"s3cret".to_vec(),
            ..Default::default()
        };
        let token = api.create_secret(spec("token")).await.expect("created");
        assert!(
            token.spec.as_ref().expect("spec").data.is_empty(),
            "no content back"
        );
        let again = api.create_secret(spec("token")).await.expect_err("taken");
        assert!(again.to_string().contains("already exists"), "{again}");
        assert!(api.create_secret(spec("bad name")).await.is_err());

        let mut web = using("token", "");
        let secrets = api.store.view(Secret::all);
        resolve(&secrets, &[], &mut web).expect("resolved");
        let r = &web
            .task
            .as_ref()
            .and_then(|t| t.container.as_ref())
            .expect("c")
            .secrets[0];
        assert_eq!(
            (r.id.as_str(), r.target.as_str(), r.mode),
            (token.id.as_str(), "token", 0o444)
        );
        assert!(resolve(&secrets, &[], &mut using("nope", "")).is_err());
        assert!(resolve(&secrets, &[], &mut using("token", "../x")).is_err());

        api.create_service(shoal_proto::CreateServiceRequest { spec: Some(web) })
            .await
            .expect("service");
        let refused = api.remove_secret("token").await.expect_err("in use");
        assert!(
            refused.to_string().contains("in use by service web"),
            "{refused}"
        );
        let (_, users) = api.get_secret("token").expect("found");
        assert_eq!(users, ["web"]);
        // Sealed in the store: no clear text in any object the log or a snapshot holds.
        let snapshot = api.store.view(|r| format!("{:?}", r.tables()));
        assert!(!snapshot.contains("s3cret"), "the store holds it sealed");
        let stored = api
            .store
            .view(|r| r.secrets().next().cloned())
            .expect("stored");
        assert_eq!(stored.digest, seal::digest(b"s3cret"));
    }
}

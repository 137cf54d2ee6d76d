//! `swarm update` and `swarm unlock-key`: the cluster-wide settings a user changes, today
//! autolock. The Cluster object carries the unlock key (in the Raft log, which every
//! manager keeps sealed); each manager's shoald locks its own data key with it.

use shoal_pki::vault::UnlockKey;
use shoal_proto::{GetUnlockKeyResponse, UpdateSwarmRequest, UpdateSwarmResponse};

use super::{ControlApi, ControlError};
use crate::store::Object;

impl ControlApi {
    pub async fn update_swarm(
        &self,
        request: UpdateSwarmRequest,
    ) -> Result<UpdateSwarmResponse, ControlError> {
        let key = self
            .store
            .update(|tx| {
                let mut cluster = tx.cluster().ok_or_else(no_cluster)?;
                if request.set_autolock {
                    let spec = cluster.spec.get_or_insert_with(Default::default);
                    spec.autolock = request.autolock;
                    cluster.unlock_key = match (request.autolock, cluster.unlock_key.len()) {
                        (true, 32) => cluster.unlock_key.clone(),
                        (true, _) => new_key()?.bytes().to_vec(),
                        (false, _) => Vec::new(),
                    };
                    if !request.autolock {
                        cluster.previous_unlock_key = Vec::new();
                    }
                }
                let key = cluster.unlock_key.clone();
                tx.update(Object::Cluster(cluster))?;
                Ok::<_, ControlError>(key)
            })
            .await?;
        Ok(UpdateSwarmResponse {
            unlock_key: shown(&key),
        })
    }

    /// The unlock key, replaced first when `rotate` (every manager then locks its data key
    /// with the new one), with the one before the last rotation: a manager down during it
    /// still opens only with that one.
    pub async fn unlock_key(&self, rotate: bool) -> Result<GetUnlockKeyResponse, ControlError> {
        let refused = || {
            ControlError::Refused(
                "autolock is off, so there is no unlock key: turn it on with `shoal swarm update --autolock=true`"
                    .into(),
            )
        };
        let keys = |c: &shoal_proto::Cluster| (c.unlock_key.clone(), c.previous_unlock_key.clone());
        let (key, previous) = if rotate {
            self.store
                .update(|tx| {
                    let mut cluster = tx.cluster().ok_or_else(no_cluster)?;
                    if cluster.unlock_key.len() != 32 {
                        return Err(refused());
                    }
                    cluster.previous_unlock_key =
                        std::mem::replace(&mut cluster.unlock_key, new_key()?.bytes().to_vec());
                    let both = keys(&cluster);
                    tx.update(Object::Cluster(cluster))?;
                    Ok(both)
                })
                .await?
        } else {
            self.store
                .view(|r| r.cluster().map(keys))
                .unwrap_or_default()
        };
        if key.len() != 32 {
            return Err(refused());
        }
        Ok(GetUnlockKeyResponse {
            unlock_key: shown(&key),
            previous_unlock_key: shown(&previous),
        })
    }
}

fn no_cluster() -> ControlError {
    ControlError::Refused("the swarm has no cluster record yet".into())
}

fn new_key() -> Result<UnlockKey, ControlError> {
    UnlockKey::generate().map_err(|e| ControlError::Refused(e.to_string()))
}

/// The key as users type it; empty when there is none.
fn shown(key: &[u8]) -> String {
    UnlockKey::from_bytes(key)
        .map(|k| k.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    async fn api() -> ControlApi {
        let store = Store::in_memory();
        let cluster = shoal_proto::Cluster {
            id: "c1".into(),
            ..Default::default()
        };
        crate::testutil::put(&store, vec![Object::Cluster(cluster)]).await;
        ControlApi::new(store)
    }

    #[tokio::test]
    async fn autolock_on_gives_a_key_rotation_replaces_it_off_drops_it() {
        let api = api().await;
        let err = api.unlock_key(false).await.expect_err("off");
        assert!(err.to_string().contains("autolock is off"), "{err}");
        let on = UpdateSwarmRequest {
            set_autolock: true,
            autolock: true,
        };
        let first = api.update_swarm(on).await.expect("on").unlock_key;
        assert!(first.starts_with("SHKEY-1-"), "{first}");
        assert_eq!(
            api.update_swarm(on).await.expect("again").unlock_key,
            first,
            "kept"
        );
        assert_eq!(
            api.unlock_key(false).await.expect("shown").unlock_key,
            first
        );
        assert_eq!(
            api.unlock_key(false)
                .await
                .expect("shown")
                .previous_unlock_key,
            ""
        );
        let rotated = api.unlock_key(true).await.expect("rotated");
        assert_ne!(rotated.unlock_key, first);
        assert_eq!(
            rotated.previous_unlock_key, first,
            "the previous key is kept"
        );
        let shown = api.unlock_key(false).await.expect("shown");
        assert_eq!(
            (
                shown.unlock_key.as_str(),
                shown.previous_unlock_key.as_str()
            ),
            (rotated.unlock_key.as_str(), first.as_str())
        );
        let again = api.unlock_key(true).await.expect("rotated again");
        assert_eq!(
            again.previous_unlock_key, rotated.unlock_key,
            "only the last one"
        );
        let off = api
            .update_swarm(UpdateSwarmRequest {
                set_autolock: true,
                autolock: false,
            })
            .await
            .expect("off");
        assert_eq!(off.unlock_key, "");
        let cluster = api.store.view(|r| r.cluster().cloned()).expect("cluster");
        assert!(cluster.unlock_key.is_empty() && cluster.previous_unlock_key.is_empty());
        assert!(!cluster.spec.unwrap_or_default().autolock);
    }
}

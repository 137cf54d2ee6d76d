//! A manager's data key follows the swarm's autolock setting: kept sealed by the cluster's
//! unlock key while autolock is on (sealed again when the key is rotated), kept in the
//! open once it is off. Workers never lock.

use std::path::{Path, PathBuf};

use shoal_manager::runloop::{self, Wake};
use shoal_manager::store::{Event, Store, Stored};
use shoal_pki::vault::{self, DataKey, UnlockKey};
use tokio_util::sync::CancellationToken;

/// Keep this manager's keys file as the cluster wants it, until `cancel`.
pub async fn follow(store: Store, data_dir: PathBuf, key: DataKey, cancel: CancellationToken) {
    let mut events = store.watch();
    loop {
        let unlock_key = store.view(|r| {
            r.cluster()
                .filter(|c| c.spec.as_ref().is_some_and(|s| s.autolock))
                .map(|c| c.unlock_key.clone())
        });
        let unlock_key = unlock_key.and_then(|bytes| UnlockKey::from_bytes(&bytes).ok());
        keep(&data_dir, &key, unlock_key.as_ref());
        let clusters = |e: &Event| matches!(e.object(), Some(Stored::Cluster(_)));
        if runloop::next(&mut events, clusters, None, &cancel).await == Wake::Shutdown {
            break;
        }
    }
}

/// Seal the data key by `unlock_key`, or keep it in the open when there is none; writes
/// only when the file is not already so.
pub fn keep(data_dir: &Path, key: &DataKey, unlock_key: Option<&UnlockKey>) {
    let (done, what) = match unlock_key {
        Some(u) => (
            vault::is_locked_with(data_dir, u),
            "locked with the swarm's unlock key",
        ),
        None => (vault::is_open(data_dir), "no longer locked"),
    };
    if done {
        return;
    }
    match vault::store(data_dir, key, unlock_key) {
        Ok(()) => tracing::info!("this node's data key is {what}"),
        Err(e) => tracing::error!(error = %e, "keeping this node's data key {what} failed"),
    }
}

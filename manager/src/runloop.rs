//! The shape every leader-only component shares: wait for relevant store events (or a
//! timer), swallow the burst that follows, then act on the whole state once.

use std::time::Duration;

use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::store::{Event, Store};

/// Why a run loop woke up.
#[derive(Debug, PartialEq, Eq)]
pub enum Wake {
    /// Relevant changes arrived (or the stream lagged: re-read everything).
    Changed,
    /// The deadline the loop asked for passed.
    Timer,
    Shutdown,
}

/// Bursts of events closer together than this are handled in one pass.
pub const DEBOUNCE: Duration = Duration::from_millis(5);

/// Wait for the next relevant event, a deadline, or cancellation; then drain whatever else
/// arrives within [`DEBOUNCE`].
pub async fn next(
    events: &mut broadcast::Receiver<Event>,
    relevant: impl Fn(&Event) -> bool,
    deadline: Option<Instant>,
    cancel: &CancellationToken,
) -> Wake {
    let timer = async {
        match deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(timer);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Wake::Shutdown,
            _ = &mut timer => return Wake::Timer,
            event = events.recv() => match event {
                Ok(e) if relevant(&e) || e == Event::Resync => break,
                Ok(_) => continue,
                Err(RecvError::Lagged(_)) => break,
                Err(RecvError::Closed) => return Wake::Shutdown,
            },
        }
    }
    let settle = tokio::time::sleep(DEBOUNCE);
    tokio::pin!(settle);
    loop {
        tokio::select! {
            _ = &mut settle => return Wake::Changed,
            event = events.recv() => if let Err(RecvError::Closed) = event { return Wake::Shutdown },
        }
    }
}

/// The whole life of a component that acts on the entire state: one pass now, then one
/// after each burst of relevant events, until `cancel`. A failed pass is logged (naming
/// `what`) and retried on the next change.
pub async fn run_passes<T, E, F, Fut>(
    store: &Store,
    what: &str,
    relevant: impl Fn(&Event) -> bool,
    cancel: &CancellationToken,
    mut pass: F,
) where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut events = store.watch();
    loop {
        if let Err(e) = pass().await {
            tracing::warn!(error = %e, "{what} pass failed; retrying on the next change");
        }
        if next(&mut events, &relevant, None, cancel).await == Wake::Shutdown {
            return;
        }
    }
}

//! The data plane's own thread: every kernel change runs there, one at a time, so the async
//! runtime never blocks on iproute2 and changes never interleave.

use std::sync::mpsc;

use tokio::sync::oneshot;

use crate::dataplane::{Dataplane, DataplaneError};

type Job = Box<dyn FnOnce(&mut dyn Dataplane) + Send>;

/// A handle to the thread; cheap to clone. The thread ends when the last handle goes.
#[derive(Clone)]
pub struct DataplaneThread {
    tx: mpsc::Sender<Job>,
}

impl DataplaneThread {
    pub fn spawn(mut dataplane: Box<dyn Dataplane>) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("shoal-dataplane".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    job(dataplane.as_mut());
                }
            })?;
        Ok(Self { tx })
    }

    /// Run `f` on the thread and wait for its result.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Dataplane) -> Result<T, DataplaneError> + Send + 'static,
    ) -> Result<T, DataplaneError> {
        let (done, result) = oneshot::channel();
        let job: Job = Box::new(move |dp| {
            let _ = done.send(f(dp));
        });
        self.tx.send(job).map_err(|_| DataplaneError::Gone)?;
        result.await.map_err(|_| DataplaneError::Gone)?
    }
}

//! The gateway's handle on its message store ([`store`]): opened at start-up, and reopened in
//! the background while the database cannot be reached, so that a PostgreSQL server that is
//! down when the gateway starts costs the requests that need it a clear error, not the calls.
//! Retention runs here too, once an hour. Every operation is timed into the metrics
//! (`timed.rs`).

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use store::{SqlStore, Store};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::StorageConfig;
use crate::error::{Error, Result};
use crate::metrics::Metrics;

mod timed;

/// How often an unreachable database is tried again.
const RETRY: Duration = Duration::from_secs(5);
/// How often retention runs.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// The store, once it is open.
#[derive(Debug)]
pub(crate) struct Storage {
    store: OnceLock<Arc<dyn Store>>,
    /// Why it is not open, while it is not.
    failure: Mutex<String>,
}

impl Storage {
    /// Opens the store. A database that cannot be reached is tried again every few seconds
    /// until it can; a configuration or schema the store refuses stops the gateway.
    pub(crate) async fn open(
        config: &StorageConfig,
        metrics: Arc<Metrics>,
        stop: CancellationToken,
    ) -> Result<Arc<Storage>> {
        let storage = Arc::new(Storage {
            store: OnceLock::new(),
            failure: Mutex::new(String::new()),
        });
        let options = config.options();
        let place = config.describe();
        match SqlStore::open(&options).await {
            Ok(store) => {
                info!("message store: {place}");
                let _ = storage.store.set(timed(store, &metrics));
            }
            Err(store::Error::Unavailable(reason)) => {
                warn!(
                    "message store: {place} cannot be reached ({reason}); trying again every {} s",
                    RETRY.as_secs()
                );
                storage.set_failure(reason);
                let retrying = storage.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    loop {
                        tokio::select! {
                            () = stop.cancelled() => return,
                            () = tokio::time::sleep(RETRY) => {}
                        }
                        match SqlStore::open(&options).await {
                            Ok(store) => {
                                info!("message store: {place} reached");
                                let _ = retrying.store.set(timed(store, &metrics));
                                return;
                            }
                            Err(error) => retrying.set_failure(error.to_string()),
                        }
                    }
                });
            }
            Err(error) => return Err(Error::Store(error)),
        }
        let retention = config.retention();
        if retention != store::Retention::default() {
            let pruning = storage.clone();
            tokio::spawn(async move {
                loop {
                    if let Ok(store) = pruning.get() {
                        match store.prune(retention, store::now_millis()).await {
                            Ok(0) => {}
                            Ok(removed) => info!(removed, "message store: retention applied"),
                            Err(error) => warn!("message store: retention failed: {error}"),
                        }
                    }
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(PRUNE_EVERY) => {}
                    }
                }
            });
        }
        Ok(storage)
    }

    /// The store, or why there is none yet.
    pub(crate) fn get(&self) -> std::result::Result<Arc<dyn Store>, store::Error> {
        match self.store.get() {
            Some(store) => Ok(store.clone()),
            None => Err(store::Error::Unavailable(
                self.failure
                    .lock()
                    .map(|failure| failure.clone())
                    .unwrap_or_default(),
            )),
        }
    }

    fn set_failure(&self, reason: String) {
        if let Ok(mut failure) = self.failure.lock() {
            *failure = reason;
        }
    }
}

/// The opened store, its operations timed into `metrics`.
fn timed(store: SqlStore, metrics: &Arc<Metrics>) -> Arc<dyn Store> {
    Arc::new(timed::Timed {
        inner: Arc::new(store),
        metrics: metrics.clone(),
    })
}

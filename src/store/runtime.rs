//! The store's own runtime: sqlx pools are bound to the runtime that made
//! them, and the gateway has several (each Pingora service has its own),
//! so every store call is spawned on one runtime kept for the process's
//! life and awaited from wherever it was made.

use super::{Store, StoreError};
use std::future::Future;
use std::sync::Arc;

#[derive(Clone)]
pub struct StoreHandle {
    runtime: &'static tokio::runtime::Runtime,
    store: Arc<dyn Store>,
}

impl StoreHandle {
    /// A runtime for the store; never dropped (dropping a runtime inside
    /// another's task panics, and the process ends with it anyway).
    pub fn runtime() -> Result<&'static tokio::runtime::Runtime, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("tollgate-store")
            .enable_all()
            .build()
            .map_err(|e| format!("store runtime: {e}"))?;
        Ok(Box::leak(Box::new(runtime)))
    }

    pub fn new(runtime: &'static tokio::runtime::Runtime, store: Arc<dyn Store>) -> Self {
        Self { runtime, store }
    }

    /// Runs `f` with the store on the store's runtime.
    pub async fn run<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(Arc<dyn Store>) -> Fut,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
        T: Send + 'static,
    {
        let fut = f(self.store.clone());
        self.runtime.spawn(fut).await.map_err(|e| StoreError(format!("store task: {e}")))?
    }

    /// The same, from outside any runtime (start-up, the CLI).
    pub fn block_on<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(Arc<dyn Store>) -> Fut,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
        T: Send + 'static,
    {
        self.runtime.block_on(f(self.store.clone()))
    }

    /// The runtime itself (other clients bound to a runtime live on it too).
    pub fn runtime_ref(&self) -> &'static tokio::runtime::Runtime {
        self.runtime
    }

    pub fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        self.runtime.spawn(fut);
    }
}

//! The guard a registered server keeps: dropping it (or calling `deregister`) removes the
//! server from the registry.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use super::DiscoveryError;

type Undo =
    Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = Result<(), DiscoveryError>> + Send>> + Send>;

/// A server's entry in Consul or etcd, removed when this guard is dropped or
/// [`deregister`](Self::deregister)ed.
///
/// Dropping spawns the removal on the current tokio runtime (best effort: a runtime
/// that is shutting down may not run it). On a graceful shutdown, await
/// [`deregister`](Self::deregister) instead. A process that dies without either is
/// removed by the registry itself: Consul after the check's
/// `DeregisterCriticalServiceAfter`, etcd when the lease's TTL runs out.
pub struct Registration {
    description: String,
    id: String,
    keepalive: Option<tokio::task::AbortHandle>,
    undo: Option<Undo>,
}

impl Registration {
    pub(crate) fn new(
        description: String,
        id: String,
        keepalive: Option<tokio::task::AbortHandle>,
        undo: Undo,
    ) -> Self {
        Registration {
            description,
            id,
            keepalive,
            undo: Some(undo),
        }
    }

    /// The entry's id: the Consul service id, or the etcd key.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Removes the entry now and waits for the registry to confirm.
    pub async fn deregister(mut self) -> Result<(), DiscoveryError> {
        if let Some(k) = self.keepalive.take() {
            k.abort();
        }
        match self.undo.take() {
            Some(undo) => undo().await,
            None => Ok(()),
        }
    }

    /// Waits for `shutdown` (a signal, the server's own shutdown future), then
    /// deregisters.
    pub async fn deregister_on(
        self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), DiscoveryError> {
        shutdown.await;
        self.deregister().await
    }
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("entry", &self.description)
            .field("id", &self.id)
            .finish()
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(k) = self.keepalive.take() {
            k.abort();
        }
        let Some(undo) = self.undo.take() else {
            return;
        };
        let description = std::mem::take(&mut self.description);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(error) = undo().await {
                        tracing::warn!(%error, entry = %description, "deregistration failed");
                    }
                });
            }
            Err(_) => tracing::warn!(
                entry = %description,
                "registration dropped outside a tokio runtime; the registry removes it when it expires"
            ),
        }
    }
}

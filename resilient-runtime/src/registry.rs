//! Every live breaker in the process, by id and by (service, rpc), for metrics, the
//! dashboard and naming breakers in converted errors; and process-wide observers.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

use crate::breaker::{CircuitBreaker, Inner};
use crate::observe::Observer;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static BREAKERS: Mutex<BTreeMap<u64, Weak<Inner>>> = Mutex::new(BTreeMap::new());
static OBSERVERS: RwLock<Vec<Arc<dyn Observer>>> = RwLock::new(Vec::new());

pub(crate) fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

fn breakers() -> std::sync::MutexGuard<'static, BTreeMap<u64, Weak<Inner>>> {
    BREAKERS.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn register(inner: &Arc<Inner>) {
    breakers().insert(inner.id(), Arc::downgrade(inner));
}

pub(crate) fn unregister(id: u64) {
    breakers().remove(&id);
}

/// The live breaker with this id.
#[cfg_attr(not(feature = "grpc"), allow(dead_code))]
pub(crate) fn by_id(id: u64) -> Option<CircuitBreaker> {
    breakers()
        .get(&id)
        .and_then(Weak::upgrade)
        .map(CircuitBreaker::from_inner)
}

/// Every live breaker, oldest first.
pub fn all() -> Vec<CircuitBreaker> {
    // Only upgrades happen under the lock; nothing upgraded is dropped before it is released.
    let live: Vec<Arc<Inner>> = breakers().values().filter_map(Weak::upgrade).collect();
    live.into_iter().map(CircuitBreaker::from_inner).collect()
}

/// The live breakers labelled with `service` and `rpc` (newest last).
pub fn find(service: &str, rpc: &str) -> Vec<CircuitBreaker> {
    // Filter after the lock is released: a breaker upgraded here may be the last handle
    // (its owner dropped it meanwhile), and dropping it unregisters, which locks again.
    let mut found = all();
    found.retain(|b| b.service() == service && b.rpc() == rpc);
    found
}

/// Adds an observer to every breaker built from now on (metrics exporters use this).
/// Breakers that already exist keep the observers they were built with.
pub fn add_global_observer(observer: Arc<dyn Observer>) {
    OBSERVERS
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .push(observer);
}

pub(crate) fn global_observers() -> Vec<Arc<dyn Observer>> {
    OBSERVERS.read().unwrap_or_else(|p| p.into_inner()).clone()
}

//! Atomics and locks, swapped for loom's under `--cfg resilient_loom` so that the
//! admission logic can be model-checked.

#[cfg(resilient_loom)]
pub(crate) use loom::sync::Mutex;
#[cfg(resilient_loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};

#[cfg(not(resilient_loom))]
pub(crate) use std::sync::Mutex;
#[cfg(not(resilient_loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Locks `m`, recovering the data if a previous holder panicked: breaker bookkeeping
/// stays usable whatever a user's callback did.
pub(crate) fn lock<T>(m: &Mutex<T>) -> impl std::ops::DerefMut<Target = T> + '_ {
    #[cfg(not(resilient_loom))]
    {
        m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
    #[cfg(resilient_loom)]
    {
        m.lock().unwrap()
    }
}

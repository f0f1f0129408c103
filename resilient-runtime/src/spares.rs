//! Idle copies of a tonic client, reused from call to call.
//!
//! tonic's client methods take `&mut self`; a generated client's take `&self`, so each
//! call needs a client of its own. Cloning one per call is what tonic suggests, but a
//! `Channel` clone is not free: its buffer handle allocates on clone and frees on drop.
//! [`Spares`] keeps the copies that finished calls hand back and gives them to later
//! calls; it clones only when no copy is idle. A client so ends up holding as many
//! copies as it had calls in flight at once, at most [`Spares::CAPACITY`].
//!
//! A call that is cancelled (its future dropped) drops its copy instead of handing it
//! back; the next call that finds none idle clones again.

use std::fmt;
use std::sync::{Mutex, PoisonError};

/// Idle copies of a client, shared by the clones of one generated client.
///
/// ```
/// use resilient_runtime::spares::Spares;
///
/// let spares = Spares::new();
/// let client = String::from("a client handle");
/// let mut copy = spares.take(&client); // none idle yet: a clone
/// copy.push_str(" (used)");
/// spares.put(copy); // the call is done with it
/// assert_eq!(spares.idle(), 1);
/// assert_eq!(spares.take(&client), "a client handle (used)"); // reused, not cloned
/// ```
pub struct Spares<C> {
    idle: Mutex<Vec<C>>,
}

impl<C> Spares<C> {
    /// Copies kept idle at most; a copy handed back beyond that is dropped.
    pub const CAPACITY: usize = 128;

    /// No copies yet.
    pub fn new() -> Self {
        Spares {
            idle: Mutex::new(Vec::new()),
        }
    }

    /// A copy of `client` for one call: an idle one when there is one, else a clone.
    pub fn take(&self, client: &C) -> C
    where
        C: Clone,
    {
        let idle = self.lock().pop();
        idle.unwrap_or_else(|| client.clone())
    }

    /// Hands back the copy a call is done with, for a later call to take.
    pub fn put(&self, copy: C) {
        let mut idle = self.lock();
        if idle.len() < Self::CAPACITY {
            idle.push(copy);
        }
        // a copy not kept is dropped after the lock is released (parameters drop last)
    }

    /// How many copies are idle.
    pub fn idle(&self) -> usize {
        self.lock().len()
    }

    // Nothing can panic while the lock is held (a `Vec` push or pop), so a poisoned
    // lock still holds a sound list.
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<C>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<C> Default for Spares<C> {
    fn default() -> Self {
        Spares::new()
    }
}

impl<C> fmt::Debug for Spares<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spares")
            .field("idle", &self.idle())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::Spares;

    /// A client whose clones are counted.
    struct Counted(Arc<AtomicUsize>);

    impl Clone for Counted {
        fn clone(&self) -> Self {
            self.0.fetch_add(1, Ordering::Relaxed);
            Counted(Arc::clone(&self.0))
        }
    }

    #[test]
    fn clones_only_as_many_copies_as_calls_in_flight_at_once() {
        let clones = Arc::new(AtomicUsize::new(0));
        let client = Counted(Arc::clone(&clones));
        let spares = Spares::new();
        for _ in 0..100 {
            let (a, b) = (spares.take(&client), spares.take(&client));
            spares.put(a);
            spares.put(b);
        }
        assert_eq!(clones.load(Ordering::Relaxed), 2);
        assert_eq!(spares.idle(), 2);
    }

    #[test]
    fn keeps_at_most_its_capacity() {
        let client = Counted(Arc::new(AtomicUsize::new(0)));
        let spares = Spares::new();
        let copies: Vec<_> = (0..Spares::<Counted>::CAPACITY + 5)
            .map(|_| spares.take(&client))
            .collect();
        for copy in copies {
            spares.put(copy);
        }
        assert_eq!(spares.idle(), Spares::<Counted>::CAPACITY);
        // the extra copies were dropped: only the kept ones still share the counter
        assert_eq!(
            Arc::strong_count(&client.0),
            Spares::<Counted>::CAPACITY + 1
        );
    }

    #[test]
    fn a_copy_not_handed_back_is_replaced_by_a_clone() {
        let clones = Arc::new(AtomicUsize::new(0));
        let client = Counted(Arc::clone(&clones));
        let spares = Spares::new();
        drop(spares.take(&client)); // a cancelled call
        drop(spares.take(&client));
        assert_eq!(clones.load(Ordering::Relaxed), 2);
        assert_eq!(spares.idle(), 0);
    }
}

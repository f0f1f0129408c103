//! Bulkheads: a limit on the calls in flight to one dependency, so that a slow one can
//! hold at most its share of the caller's concurrency.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;
use tonic::metadata::MetadataValue;

/// Metadata key on a status produced by a full bulkhead; its value is the bulkhead's name.
pub const BULKHEAD_METADATA: &str = "resilient-bulkhead";

/// A concurrency limit. Clones share it.
///
/// ```
/// use resilient_runtime::bulkhead::Bulkhead;
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let b = Bulkhead::new("media-service", 1, Duration::ZERO);
/// let first = b.acquire().await.unwrap();
/// assert!(b.acquire().await.is_err()); // full: rejected at once
/// drop(first);
/// assert!(b.acquire().await.is_ok());
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Bulkhead {
    name: Arc<str>,
    semaphore: Arc<Semaphore>,
    max_concurrent: u32,
    max_wait: Duration,
}

/// A slot in a bulkhead, freed on drop.
#[derive(Debug)]
pub struct BulkheadPermit {
    _permit: OwnedSemaphorePermit,
}

/// A call rejected by a full bulkhead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkheadFull {
    name: Arc<str>,
    max_concurrent: u32,
}

impl BulkheadFull {
    /// The bulkhead's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `RESOURCE_EXHAUSTED`, naming the bulkhead (message and metadata).
    pub fn into_status(self) -> Status {
        let mut status = Status::resource_exhausted(self.to_string());
        if let Ok(v) = MetadataValue::try_from(self.name.as_ref()) {
            status.metadata_mut().insert(BULKHEAD_METADATA, v);
        }
        status
    }
}

impl std::fmt::Display for BulkheadFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "bulkhead `{}` is full ({} calls in flight)",
            self.name, self.max_concurrent
        )
    }
}

impl std::error::Error for BulkheadFull {}

/// True when `status` is a rejection by one of our bulkheads.
pub fn is_bulkhead_rejection(status: &Status) -> bool {
    status.code() == tonic::Code::ResourceExhausted
        && status.metadata().contains_key(BULKHEAD_METADATA)
}

impl Bulkhead {
    /// At most `max_concurrent` calls at once (at least 1, and at most what a tokio
    /// semaphore holds); a call over the limit waits up to `max_wait` for a slot, then is
    /// rejected.
    pub fn new(name: impl Into<Arc<str>>, max_concurrent: u32, max_wait: Duration) -> Self {
        let max_concurrent = max_concurrent
            .max(1)
            .min(u32::try_from(Semaphore::MAX_PERMITS).unwrap_or(u32::MAX));
        Self {
            name: name.into(),
            semaphore: Arc::new(Semaphore::new(max_concurrent as usize)),
            max_concurrent,
            max_wait,
        }
    }

    /// Takes a slot, waiting at most `max_wait`.
    pub async fn acquire(&self) -> Result<BulkheadPermit, BulkheadFull> {
        self.acquire_within(self.max_wait).await
    }

    /// Takes a slot if one is free now.
    pub fn try_acquire(&self) -> Option<BulkheadPermit> {
        let permit = self.semaphore.clone().try_acquire_owned().ok()?;
        Some(BulkheadPermit { _permit: permit })
    }

    /// Takes a slot, waiting at most the smaller of `max_wait` and `limit` (what is left
    /// of a call's deadline).
    pub async fn acquire_within(&self, limit: Duration) -> Result<BulkheadPermit, BulkheadFull> {
        if let Some(permit) = self.try_acquire() {
            return Ok(permit);
        }
        let wait = self.max_wait.min(limit);
        if !wait.is_zero()
            && let Ok(Ok(permit)) =
                tokio::time::timeout(wait, self.semaphore.clone().acquire_owned()).await
        {
            return Ok(BulkheadPermit { _permit: permit });
        }
        Err(BulkheadFull {
            name: self.name.clone(),
            max_concurrent: self.max_concurrent,
        })
    }

    /// Calls in flight now.
    pub fn in_flight(&self) -> u32 {
        self.max_concurrent - self.semaphore.available_permits() as u32
    }

    /// The limit.
    pub fn max_concurrent(&self) -> u32 {
        self.max_concurrent
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waits_up_to_max_wait_then_rejects_naming_itself() {
        let b = Bulkhead::new("media", 2, Duration::from_millis(100));
        let p1 = b.acquire().await.unwrap();
        let _p2 = b.acquire().await.unwrap();
        assert_eq!(b.in_flight(), 2);
        let started = tokio::time::Instant::now();
        let err = b.acquire().await.unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_millis(100));
        let status = err.into_status();
        assert!(is_bulkhead_rejection(&status));
        assert!(status.message().contains("media"));
        // a slot freed while waiting is taken
        let b2 = b.clone();
        let waiter = tokio::spawn(async move { b2.acquire().await.is_ok() });
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(p1);
        assert!(waiter.await.unwrap());
    }
}

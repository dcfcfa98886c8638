//! The seam where background jobs are persisted.
//!
//! The engine calls the store when a background job is created and when it ends
//! (completed, failed, cancelled, or dropped after its retries). The default,
//! [`InMemory`], keeps nothing outside the engine: that is gearmand's `-q builtin`.
//! Durable stores implement the same trait.

/// A background job as a store sees it.
#[derive(Debug, Clone, Copy)]
pub struct StoredJob<'a> {
    /// The number in the job's handle; unique per process, so it tells apart jobs
    /// that share an empty unique (gearmand's stores overwrite those).
    pub id: u64,
    pub function: &'a [u8],
    pub unique: &'a [u8],
    pub data: &'a [u8],
    /// 0 = HIGH, 1 = NORMAL, 2 = LOW, as in gearmand's queue tables.
    pub priority: u8,
    /// Epoch seconds before which the job must not run; 0 for none.
    pub when: u64,
}

#[derive(Debug)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Persistence for background jobs.
///
/// Calls are made with the engine's lock held, so an implementation must not
/// block on I/O here; a durable store queues the work for a writer of its own.
pub trait QueueStore: Send {
    /// A background job was accepted. An error refuses it with QUEUE_ERROR
    /// instead of acknowledging a job the store cannot keep.
    fn add(&mut self, job: &StoredJob<'_>) -> Result<(), StoreError>;
    /// The job ended and must not be replayed.
    fn remove(&mut self, job: &StoredJob<'_>);
}

/// No persistence: queued jobs live only in the engine (`-q builtin`).
#[derive(Debug, Default)]
pub struct InMemory;

impl QueueStore for InMemory {
    fn add(&mut self, _job: &StoredJob<'_>) -> Result<(), StoreError> {
        Ok(())
    }
    fn remove(&mut self, _job: &StoredJob<'_>) {}
}

//! Bounded password hashing. Argon2id with the default parameters needs ~19 MiB and tens of
//! milliseconds of one core per hash or check, by design. Unbounded, a burst of password
//! checks (which needs no API key: `POST /api/verify/{code}`) piled up hundreds of them on
//! the blocking pool and took every API process past its memory limit at once (hardening
//! issue, finding 2). So each process runs at most `PASSWORD_HASH_CONCURRENCY` (default: the
//! core count) at a time, lets a few more wait briefly, and refuses the rest with
//! [`PoolBusy`] (503 with `Retry-After` at the edge). Memory for hashing is then bounded by
//! the concurrency, whatever the request mix.
//!
//! A hash that started runs to completion even if its request is abandoned, and keeps its
//! slot until then: the bound is on the work, not on the requests.
//!
//! Hashes run on the pool's own threads, one per slot, each keeping its Argon2 memory
//! between hashes. Before, each hash allocated its ~19 MiB afresh on tokio's blocking pool
//! and glibc kept the freed blocks in whichever arena the thread used: two slots left 2-3
//! blocks resident in each of four arenas (a process peaked at 246 MiB, 212 above its start,
//! in the burst test). Now what is resident for hashing is the slot count × 19 MiB, and a
//! hash no longer faults in fresh pages.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::domain::{hash_password, verify_password, DomainError, PasswordMemory};

/// Requests that may wait for a slot, per slot.
const WAITERS_PER_SLOT: usize = 4;
/// How long a request waits for a slot before it is refused.
const MAX_WAIT: Duration = Duration::from_secs(2);

/// Every slot is busy and the short queue is full (or the wait timed out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many password checks in progress")]
pub struct PoolBusy;

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error(transparent)]
    Busy(#[from] PoolBusy),
    #[error("password hashing failed: {0}")]
    Failed(String),
}

type Job = Box<dyn FnOnce(&mut PasswordMemory) + Send>;

pub struct PasswordPool {
    slots: Arc<Semaphore>,
    /// To the hashing threads; they exit when the pool (this sender) is dropped.
    jobs: mpsc::Sender<Job>,
    size: usize,
    waiting: AtomicUsize,
    refused_total: AtomicU64,
}

impl PasswordPool {
    pub fn new(concurrency: usize) -> Self {
        let size = concurrency.max(1);
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..size {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("password-hash-{i}"))
                .spawn(move || {
                    let mut memory = PasswordMemory::new();
                    loop {
                        // The lock is held only while taking a job, never while running it.
                        let job = match queue.lock() {
                            Ok(queue) => queue.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(&mut memory),
                            Err(_) => return,
                        }
                    }
                })
                .expect("spawn a password hashing thread");
        }
        Self {
            slots: Arc::new(Semaphore::new(size)),
            jobs,
            size,
            waiting: AtomicUsize::new(0),
            refused_total: AtomicU64::new(0),
        }
    }

    /// Hashes a new password (shorten, PATCH).
    pub async fn hash(&self, password: &str) -> Result<String, PoolError> {
        let password = password.to_string();
        self.run(move |memory| hash_password(&password, memory))
            .await?
            .map_err(|e: DomainError| PoolError::Failed(e.to_string()))
    }

    /// Checks a password against a stored PHC string (verify).
    pub async fn verify(&self, password: &str, phc: &str) -> Result<bool, PoolError> {
        let (password, phc) = (password.to_string(), phc.to_string());
        self.run(move |memory| verify_password(&password, &phc, memory))
            .await
    }

    /// Hashes running now.
    pub fn in_progress(&self) -> usize {
        self.size - self.slots.available_permits()
    }

    /// Requests refused because every slot was busy.
    pub fn refused_total(&self) -> u64 {
        self.refused_total.load(Ordering::Relaxed)
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut PasswordMemory) -> T + Send + 'static,
    ) -> Result<T, PoolError> {
        let slot = match self.slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => self.wait_for_slot().await.inspect_err(|_| {
                self.refused_total.fetch_add(1, Ordering::Relaxed);
            })?,
        };
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |memory| {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(memory)));
            // The slot is free before the answer is: whoever reads the answer sees it free.
            drop(slot);
            // The request may have been abandoned: then nobody waits for the answer.
            let _ = done.send(outcome.map_err(|_| "the hashing thread panicked".to_string()));
        });
        if self.jobs.send(job).is_err() {
            return Err(PoolError::Failed("the hashing threads are gone".into()));
        }
        match result.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(message)) => Err(PoolError::Failed(message)),
            Err(_) => Err(PoolError::Failed(
                "the hashing thread dropped the work".into(),
            )),
        }
    }

    async fn wait_for_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, PoolBusy> {
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.size * WAITERS_PER_SLOT {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(PoolBusy);
        }
        let slot = tokio::time::timeout(MAX_WAIT, self.slots.clone().acquire_owned()).await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        match slot {
            Ok(Ok(slot)) => Ok(slot),
            _ => Err(PoolBusy),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_most_the_pool_size_hashes_run_and_the_overflow_is_refused() {
        let pool = Arc::new(PasswordPool::new(1));
        let hash = pool.hash("s3cret").await.expect("a hash when idle");
        // 1 running + 4 waiting fit; the sixth and later are refused at once.
        let tasks: Vec<_> = (0..12)
            .map(|_| {
                let pool = pool.clone();
                let hash = hash.clone();
                tokio::spawn(async move { pool.verify("s3cret", &hash).await })
            })
            .collect();
        let mut ok = 0;
        let mut busy = 0;
        for t in tasks {
            match t.await.expect("task") {
                Ok(true) => ok += 1,
                Err(PoolError::Busy(_)) => busy += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(ok >= 1, "some checks ran");
        assert!(busy >= 1, "the overflow was refused");
        assert_eq!(ok + busy, 12);
        assert_eq!(pool.refused_total(), busy as u64);
        assert_eq!(pool.in_progress(), 0);
    }
}

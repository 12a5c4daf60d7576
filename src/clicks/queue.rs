//! The API side of the click path: the bounded in-memory queue between the redirect and the
//! click stream, and the flusher task that ships it.
//!
//! The redirect pushes an event and returns; [`run_flusher`] hands queued events to a
//! [`ClickShipper`] (the Redis adapter: one packed stream entry per batch, see
//! [`super::event::pack`]). While the shipper fails, events stay queued (oldest first) up to
//! `CLICK_QUEUE_CAPACITY`; past it new events are dropped, counted in
//! `boltlink_clicks_dropped_total` and logged, never silently.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use uuid::Uuid;

use super::event::ClickEvent;

/// Most click events per flush, and so per packed stream entry.
pub const FLUSH_BATCH: usize = 2000;
/// How long the flusher lets clicks gather after the first one before it ships them: one
/// stream entry per instance per few milliseconds instead of one per handful of requests. No
/// request waits for it (the redirect only queues).
pub const FLUSH_LINGER: Duration = Duration::from_millis(2);

/// What one flush did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushOutcome {
    /// Something was shipped; there may be more.
    Delivered,
    /// Nothing to ship.
    Empty,
    /// The shipper failed; the batch is held and resent first next time.
    Failed,
}

/// Where the flusher ships batches (implemented by the Redis adapter, which also ships the
/// rate limiter's pending increments in the same round trip).
pub trait ClickShipper: Send + Sync + 'static {
    /// Ships the next batch of `queue` (a held batch first); on failure the batch goes back
    /// with [`ClickQueue::hold`].
    fn flush_once(&self, queue: &ClickQueue) -> impl Future<Output = FlushOutcome> + Send;
    /// Called on every wake-up of the flusher, for the shipper's own housekeeping.
    fn tick(&self) {}
}

/// Ships queued clicks until `shutdown`, then drains what is left for at most
/// `drain_deadline` (the server has stopped taking requests by then, so nothing new comes).
pub async fn run_flusher<S: ClickShipper>(
    shipper: S,
    queue: Arc<ClickQueue>,
    shutdown: impl Future<Output = ()>,
    drain_deadline: Duration,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = queue.notify.notified() => {
                // Let the clicks of the next few milliseconds join this batch.
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = tokio::time::sleep(FLUSH_LINGER) => {}
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
        shipper.tick();
        while shipper.flush_once(&queue).await == FlushOutcome::Delivered {}
    }
    let deadline = tokio::time::Instant::now() + drain_deadline;
    while !queue.is_empty() && tokio::time::Instant::now() < deadline {
        if shipper.flush_once(&queue).await == FlushOutcome::Failed {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    if !queue.is_empty() {
        tracing::error!(
            clicks.lost = queue.len(),
            "shutting down with click events Redis did not accept; they are lost"
        );
    }
}

/// A batch on its way to Redis. It keeps its sequence number until Redis confirms it, so a
/// resend after an ambiguous failure (applied, but the reply was lost) is recognised and not
/// applied twice: batches of one queue are sent strictly in order (a held batch goes before
/// anything newer), so Redis only has to remember the last sequence number per producer.
#[derive(Debug, Clone)]
pub struct Batch {
    pub seq: u64,
    pub events: Vec<ClickEvent>,
}

pub struct ClickQueue {
    /// This queue's identity towards Redis (a fresh one per process start).
    producer: Uuid,
    next_seq: AtomicU64,
    events: Mutex<VecDeque<ClickEvent>>,
    /// The batch that failed last; it is resent, unchanged, before anything else.
    held: Mutex<Option<Batch>>,
    capacity: usize,
    notify: Notify,
    dropped: AtomicU64,
    enqueued: AtomicU64,
}

impl ClickQueue {
    pub fn new(capacity: usize) -> Self {
        Self {
            producer: Uuid::new_v4(),
            next_seq: AtomicU64::new(1),
            events: Mutex::new(VecDeque::new()),
            held: Mutex::new(None),
            capacity,
            notify: Notify::new(),
            dropped: AtomicU64::new(0),
            enqueued: AtomicU64::new(0),
        }
    }

    pub fn producer(&self) -> Uuid {
        self.producer
    }

    /// Never blocks and never fails the caller; returns false when the event was dropped.
    pub fn push(&self, event: ClickEvent) -> bool {
        let accepted = {
            let mut q = self.events.lock().unwrap_or_else(|p| p.into_inner());
            if q.len() >= self.capacity {
                false
            } else {
                q.push_back(event);
                true
            }
        };
        if accepted {
            self.enqueued.fetch_add(1, Ordering::Relaxed);
            self.notify.notify_one();
        } else {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // Log the first drop and then every 10 000th, not every event.
            if n == 1 || n % 10_000 == 0 {
                tracing::error!(
                    clicks.dropped_total = n,
                    queue.capacity = self.capacity,
                    "click queue full: dropping click events until Redis accepts them again"
                );
            }
        }
        accepted
    }

    /// The next batch to ship: the held (failed) batch if there is one, else up to `max`
    /// events from the front, oldest first, under the next sequence number.
    pub fn next_batch(&self, max: usize) -> Option<Batch> {
        if let Some(b) = self.held.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Some(b);
        }
        let mut q = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if q.is_empty() {
            return None;
        }
        let n = q.len().min(max);
        Some(Batch {
            seq: self.next_seq.fetch_add(1, Ordering::Relaxed),
            events: q.drain(..n).collect(),
        })
    }

    /// Keeps a batch Redis did not confirm, to be resent as it is.
    pub fn hold(&self, batch: Batch) {
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) = Some(batch);
    }

    /// Events not yet confirmed by Redis (queued plus held).
    pub fn len(&self) -> usize {
        let held = self
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map_or(0, |b| b.events.len());
        held + self.events.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Timestamp (ms) of the oldest undelivered event.
    pub fn oldest_at_ms(&self) -> Option<i64> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .front()
            .map(|e| e.at_ms)
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub fn enqueued_total(&self) -> u64 {
        self.enqueued.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clicks::event::sample_event as ev;

    #[test]
    fn queue_is_bounded_and_counts_drops() {
        let q = ClickQueue::new(2);
        assert!(q.push(ev(1)));
        assert!(q.push(ev(2)));
        assert!(!q.push(ev(3)));
        assert_eq!(q.dropped_total(), 1);
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn a_held_batch_is_resent_unchanged_before_newer_events() {
        let q = ClickQueue::new(10);
        for i in 0..4 {
            q.push(ev(i));
        }
        let first = q.next_batch(3).expect("batch");
        q.push(ev(99));
        let id = first.seq;
        q.hold(first);
        assert_eq!(q.len(), 5);
        let again = q.next_batch(10).expect("held batch");
        assert_eq!(again.seq, id);
        assert_eq!(
            again.events.iter().map(|e| e.at_ms).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        let rest = q.next_batch(10).expect("rest");
        assert!(rest.seq > id, "a new batch gets a later sequence number");
        assert_eq!(
            rest.events.iter().map(|e| e.at_ms).collect::<Vec<_>>(),
            vec![3, 99]
        );
        assert!(q.next_batch(10).is_none());
    }
}

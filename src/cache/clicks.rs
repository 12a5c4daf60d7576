//! Click events and the bounded in-memory queue between the redirect path and the stream.
//!
//! The redirect pushes an event and returns; the flusher task (see `super::flush`) ships
//! queued events to the Redis Stream in pipelined batches. While Redis is unreachable events
//! stay queued (oldest first) up to `CLICK_QUEUE_CAPACITY`; past it new events are dropped,
//! counted in `boltlink_clicks_dropped_total` and logged, never silently.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::sync::Notify;
use uuid::Uuid;

/// Version of the stream entry layout, written as field `v`.
pub const CLICK_EVENT_VERSION: &str = "1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClickKind {
    /// The visitor reached the target (302, XHR redirect answer, or successful verify).
    Click,
    /// The visitor was stopped before the target (password form, per-link cap).
    Gated,
}

impl ClickKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ClickKind::Click => "click",
            ClickKind::Gated => "gated",
        }
    }
}

/// One visit, as appended to the stream. `id` is unique per event so consumers can drop
/// duplicates (a batch resent after an ambiguous Redis failure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickEvent {
    pub id: Uuid,
    pub link_id: Uuid,
    pub owner_key_id: Uuid,
    pub at_ms: i64,
    pub region: String,
    pub user_agent: String,
    pub referer: String,
    /// Server-side time from request to answer, microseconds.
    pub latency_us: u32,
    pub kind: ClickKind,
}

impl ClickEvent {
    /// Stream entry fields, in `XADD` order.
    pub fn fields(&self) -> [(&'static str, String); 10] {
        [
            ("v", CLICK_EVENT_VERSION.to_string()),
            ("id", self.id.to_string()),
            ("link", self.link_id.to_string()),
            ("owner", self.owner_key_id.to_string()),
            ("at", self.at_ms.to_string()),
            ("region", self.region.clone()),
            ("ua", self.user_agent.clone()),
            ("ref", self.referer.clone()),
            ("lat", self.latency_us.to_string()),
            ("kind", self.kind.as_str().to_string()),
        ]
    }
}

/// Truncates to at most `max` bytes on a character boundary (user agents can be huge).
pub fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

pub struct ClickQueue {
    events: Mutex<VecDeque<ClickEvent>>,
    capacity: usize,
    pub(super) notify: Notify,
    dropped: AtomicU64,
    enqueued: AtomicU64,
}

impl ClickQueue {
    pub fn new(capacity: usize) -> Self {
        Self {
            events: Mutex::new(VecDeque::new()),
            capacity,
            notify: Notify::new(),
            dropped: AtomicU64::new(0),
            enqueued: AtomicU64::new(0),
        }
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

    /// Takes up to `max` events from the front, oldest first.
    pub fn take_batch(&self, max: usize) -> Vec<ClickEvent> {
        let mut q = self.events.lock().unwrap_or_else(|p| p.into_inner());
        let n = q.len().min(max);
        q.drain(..n).collect()
    }

    /// Puts a batch that could not be delivered back at the front, keeping order. Events that
    /// no longer fit (new ones arrived meanwhile) are dropped from the newest end and counted.
    pub fn requeue_front(&self, batch: Vec<ClickEvent>) {
        let mut q = self.events.lock().unwrap_or_else(|p| p.into_inner());
        for e in batch.into_iter().rev() {
            q.push_front(e);
        }
        let mut dropped = 0;
        while q.len() > self.capacity {
            q.pop_back();
            dropped += 1;
        }
        if dropped > 0 {
            let n = self.dropped.fetch_add(dropped, Ordering::Relaxed) + dropped;
            tracing::error!(
                clicks.dropped_total = n,
                "click queue overflowed while Redis was unreachable"
            );
        }
    }

    pub fn len(&self) -> usize {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).len()
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

    fn ev(n: i64) -> ClickEvent {
        ClickEvent {
            id: Uuid::now_v7(),
            link_id: Uuid::nil(),
            owner_key_id: Uuid::nil(),
            at_ms: n,
            region: "UNKNOWN".into(),
            user_agent: String::new(),
            referer: String::new(),
            latency_us: 1,
            kind: ClickKind::Click,
        }
    }

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
    fn requeued_batches_keep_their_order_at_the_front() {
        let q = ClickQueue::new(10);
        for i in 0..4 {
            q.push(ev(i));
        }
        let batch = q.take_batch(3);
        q.push(ev(99));
        q.requeue_front(batch);
        let all: Vec<i64> = q.take_batch(10).iter().map(|e| e.at_ms).collect();
        assert_eq!(all, vec![0, 1, 2, 3, 99]);
    }

    #[test]
    fn clip_respects_character_boundaries() {
        assert_eq!(clip("héllo", 2), "h");
        assert_eq!(clip("abc", 10), "abc");
    }
}

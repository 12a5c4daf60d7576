//! Rate limiting, shared across instances through Redis, per-instance when Redis is down.
//!
//! Both limiters count in fixed windows and estimate a sliding window from the current and
//! previous one (`prev * (1 - elapsed) + current`): two keys per subject, never a scan of
//! per-second keys.
//!
//! - [`HotLimiter`] serves the redirect path (per-IP limit and per-link cap). Deciding never
//!   waits for Redis: increments are counted locally and shipped by the click flusher in the
//!   same pipeline as the click events (`INCRBY`), whose replies bring back the cluster-wide
//!   totals. Another instance's clicks are therefore seen one flush (milliseconds) late; the
//!   overshoot across N instances is bounded by what they serve in one flush interval.
//!   A client address is shared (shipped) only once this instance has counted
//!   1/[`SHARE_FRACTION`] of its limit from it in the current window: most addresses make a
//!   handful of requests, and shipping each of them would cost Redis two commands and a key
//!   per request. The cluster may then let an address through up to
//!   (instances − 1) × limit / [`SHARE_FRACTION`] requests beyond its limit. Per-link caps are
//!   always shared. At most [`MAX_SUBJECTS_PER_SHARD`] × 16 subjects are kept per process:
//!   under a flood of distinct addresses, the unshared ones are forgotten first.
//! - [`SharedLimiter`] serves low-volume routes (shorten, generate-key, wrong passwords, per-key
//!   limits), where exactness matters more than a round trip: it awaits `INCR` in Redis.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use uuid::Uuid;

use super::RedisHandle;

/// The outcome of a check, with what the `RateLimit-*` headers need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    /// Requests counted in the sliding window, this one included when it was counted.
    pub count: u64,
    pub remaining: u32,
    /// Until the current fixed window ends.
    pub reset_after: Duration,
}

pub fn window_index(now_ms: i64, window_ms: i64) -> i64 {
    now_ms.div_euclid(window_ms)
}

/// Sliding-window estimate from the previous and current fixed windows.
pub fn sliding_count(prev: u64, cur: u64, now_ms: i64, window_ms: i64) -> u64 {
    let elapsed = now_ms.rem_euclid(window_ms) as f64 / window_ms as f64;
    (prev as f64 * (1.0 - elapsed)).floor() as u64 + cur
}

fn decision(limit: u32, count: u64, allowed: bool, now_ms: i64, window_ms: i64) -> Decision {
    Decision {
        allowed,
        limit,
        count,
        remaining: (limit as u64).saturating_sub(count) as u32,
        reset_after: Duration::from_millis((window_ms - now_ms.rem_euclid(window_ms)) as u64),
    }
}

/// What the hot path limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HotSubject {
    /// Redirects and verifies per client IP.
    ClientIp(IpAddr),
    /// The per-link cap (`isRateLimited`, `maxClicksPerMin`).
    Link(Uuid),
}

impl HotSubject {
    /// Counter name and subject for [`super::Keys::rate_window`].
    pub fn key_parts(&self) -> (&'static str, String) {
        match self {
            HotSubject::ClientIp(ip) => ("redirect", ip.to_string()),
            HotSubject::Link(id) => ("linkcap", id.to_string()),
        }
    }
}

#[derive(Debug, Default)]
struct HotEntry {
    /// This window's count is shipped to Redis (always for links; for a client address once
    /// it reached its share threshold).
    shared: bool,
    window: i64,
    /// Cluster-wide total of `window` as last reported by Redis (our shipped increments included).
    known: u64,
    /// Increments of `window` not shipped yet.
    unflushed: u32,
    /// Increments shipped but not yet answered.
    inflight: u32,
    /// Total of the previous window.
    prev: u64,
    dirty: bool,
}

impl HotEntry {
    fn roll(&mut self, window: i64) {
        if window != self.window {
            self.prev = if window == self.window + 1 {
                self.known + self.unflushed as u64 + self.inflight as u64
            } else {
                0
            };
            self.window = window;
            self.known = 0;
            self.unflushed = 0;
            self.inflight = 0;
            self.shared = false;
        }
    }
}

/// An increment to ship to Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingIncrement {
    pub subject: HotSubject,
    pub window: i64,
    pub window_ms: i64,
    pub delta: u32,
}

const SHARDS: usize = 16;
/// A client address is shipped to Redis once one instance counted this share of its limit.
pub const SHARE_FRACTION: u32 = 32;
/// Subjects kept per shard before the unshared ones are forgotten (16 shards).
pub const MAX_SUBJECTS_PER_SHARD: usize = 4096;

impl HotSubject {
    /// From which local count in a window this subject's increments are shipped.
    fn share_from(&self, limit: u32) -> u64 {
        match self {
            HotSubject::Link(_) => 1,
            HotSubject::ClientIp(_) => (limit / SHARE_FRACTION).max(1) as u64,
        }
    }
}

pub struct HotLimiter {
    shards: Vec<Mutex<HashMap<HotSubject, HotEntry>>>,
    dirty: Mutex<Vec<(HotSubject, i64)>>,
}

impl Default for HotLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl HotLimiter {
    pub fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            dirty: Mutex::new(Vec::new()),
        }
    }

    fn shard(&self, s: &HotSubject) -> &Mutex<HashMap<HotSubject, HotEntry>> {
        let mut h = DefaultHasher::new();
        s.hash(&mut h);
        &self.shards[(h.finish() as usize) % SHARDS]
    }

    /// Counts one request if it is within `limit`; denied requests are not counted.
    pub fn check(&self, subject: HotSubject, limit: u32, window_ms: i64, now_ms: i64) -> Decision {
        let window = window_index(now_ms, window_ms);
        let mut newly_dirty = false;
        let d = {
            let mut shard = self
                .shard(&subject)
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if shard.len() >= MAX_SUBJECTS_PER_SHARD && !shard.contains_key(&subject) {
                forget_unshared(&mut shard, window);
            }
            let e = shard.entry(subject).or_default();
            e.roll(window);
            let cur = e.known + e.unflushed as u64 + e.inflight as u64;
            let count = sliding_count(e.prev, cur, now_ms, window_ms);
            if count < limit as u64 {
                e.unflushed += 1;
                if !e.shared && cur + 1 >= subject.share_from(limit) {
                    e.shared = true;
                }
                if e.shared && !e.dirty {
                    e.dirty = true;
                    newly_dirty = true;
                }
                decision(limit, count + 1, true, now_ms, window_ms)
            } else {
                decision(limit, count, false, now_ms, window_ms)
            }
        };
        if newly_dirty {
            self.dirty
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((subject, window_ms));
        }
        d
    }

    /// The current sliding count without counting anything.
    pub fn peek(&self, subject: HotSubject, window_ms: i64, now_ms: i64) -> u64 {
        let mut shard = self
            .shard(&subject)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match shard.get_mut(&subject) {
            Some(e) => {
                e.roll(window_index(now_ms, window_ms));
                sliding_count(
                    e.prev,
                    e.known + e.unflushed as u64 + e.inflight as u64,
                    now_ms,
                    window_ms,
                )
            }
            None => 0,
        }
    }

    /// Takes every unshipped increment, marking it in flight.
    pub fn take_pending(&self) -> Vec<PendingIncrement> {
        let dirty = std::mem::take(&mut *self.dirty.lock().unwrap_or_else(|p| p.into_inner()));
        let mut out = Vec::with_capacity(dirty.len());
        for (subject, window_ms) in dirty {
            let mut shard = self
                .shard(&subject)
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if let Some(e) = shard.get_mut(&subject) {
                e.dirty = false;
                if e.unflushed > 0 {
                    out.push(PendingIncrement {
                        subject,
                        window: e.window,
                        window_ms,
                        delta: e.unflushed,
                    });
                    e.inflight += e.unflushed;
                    e.unflushed = 0;
                }
            }
        }
        out
    }

    /// Applies Redis's answer to a shipped increment: `Some(total)` is the cluster-wide count
    /// of that window; `None` (Redis unreachable) keeps the count local only.
    pub fn report(&self, inc: &PendingIncrement, total: Option<u64>) {
        let mut shard = self
            .shard(&inc.subject)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(e) = shard.get_mut(&inc.subject) {
            if e.window == inc.window {
                e.inflight = e.inflight.saturating_sub(inc.delta);
                match total {
                    Some(t) => e.known = e.known.max(t),
                    None => e.known += inc.delta as u64,
                }
            }
        }
    }

    /// Forgets subjects idle for two windows (keeps memory bounded by active clients).
    pub fn evict_idle(&self, now_ms: i64) {
        for shard in &self.shards {
            shard
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|_, e| {
                    // Windows differ per subject kind; both are at most 1 minute on the hot path.
                    e.dirty || e.inflight > 0 || window_index(now_ms, 60_000) - e.window <= 2
                });
        }
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Makes room in a full shard: first every subject that was never shipped (local counts below
/// the share threshold), then, if shared subjects alone fill it, those of older windows.
fn forget_unshared(shard: &mut HashMap<HotSubject, HotEntry>, window: i64) {
    shard.retain(|_, e| e.shared || e.dirty || e.inflight > 0);
    if shard.len() >= MAX_SUBJECTS_PER_SHARD {
        shard.retain(|_, e| e.dirty || e.inflight > 0 || e.window == window);
    }
}

/// Awaited, exact-across-instances limiter for low-volume routes.
pub struct SharedLimiter {
    redis: RedisHandle,
    /// Fallback counters while Redis is unreachable: key -> (window, current, previous).
    local: Mutex<HashMap<String, (i64, u64, u64)>>,
}

impl SharedLimiter {
    pub fn new(redis: RedisHandle) -> Self {
        Self {
            redis,
            local: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one request and decides. `name` is the limit's name, `subject` who is limited.
    pub async fn hit(
        &self,
        name: &str,
        subject: &str,
        limit: u32,
        window: Duration,
        now_ms: i64,
    ) -> Decision {
        self.apply(name, subject, limit, window, now_ms, 1).await
    }

    /// Decides without counting (e.g. "may this client try another password?").
    pub async fn peek(
        &self,
        name: &str,
        subject: &str,
        limit: u32,
        window: Duration,
        now_ms: i64,
    ) -> Decision {
        let d = self.apply(name, subject, limit, window, now_ms, 0).await;
        Decision {
            allowed: d.count < limit as u64,
            ..d
        }
    }

    async fn apply(
        &self,
        name: &str,
        subject: &str,
        limit: u32,
        window: Duration,
        now_ms: i64,
        delta: u64,
    ) -> Decision {
        let window_ms = window.as_millis().max(1) as i64;
        let idx = window_index(now_ms, window_ms);
        let keys = self.redis.keys();
        let cur_key = keys.rate_window(name, subject, idx);
        let prev_key = keys.rate_window(name, subject, idx - 1);
        let mut pipe = redis::pipe();
        if delta > 0 {
            pipe.cmd("INCRBY").arg(&cur_key).arg(delta);
            pipe.cmd("PEXPIRE")
                .arg(&cur_key)
                .arg(window_ms * 2)
                .ignore();
        } else {
            pipe.cmd("GET").arg(&cur_key);
        }
        pipe.cmd("GET").arg(&prev_key);
        let answer: Option<(Option<u64>, Option<u64>)> = self.redis.query_pipe(&pipe).await;
        let (cur, prev) = match answer {
            Some((cur, prev)) => (cur.unwrap_or(0), prev.unwrap_or(0)),
            None => self.local_counts(&cur_key, idx, name, subject, delta),
        };
        let count = sliding_count(prev, cur, now_ms, window_ms);
        decision(limit, count, count <= limit as u64, now_ms, window_ms)
    }

    fn local_counts(
        &self,
        cur_key: &str,
        idx: i64,
        name: &str,
        subject: &str,
        delta: u64,
    ) -> (u64, u64) {
        // Keyed without the window index so one entry rolls over from window to window.
        let _ = cur_key;
        let key = format!("{name}:{subject}");
        let mut map = self.local.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            map.retain(|_, (w, _, _)| *w >= idx - 1);
        }
        let e = map.entry(key).or_insert((idx, 0, 0));
        if e.0 != idx {
            *e = (idx, 0, if e.0 == idx - 1 { e.1 } else { 0 });
        }
        e.1 += delta;
        (e.1, e.2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_count_weights_the_previous_window() {
        assert_eq!(sliding_count(100, 10, 0, 60_000), 110);
        assert_eq!(sliding_count(100, 10, 30_000, 60_000), 60);
        assert_eq!(sliding_count(100, 10, 59_999, 60_000), 10);
    }

    #[test]
    fn hot_limiter_allows_up_to_the_limit_then_denies() {
        let l = HotLimiter::new();
        let s = HotSubject::Link(Uuid::nil());
        let now = 1_000_000 * 60_000;
        for i in 0..3 {
            let d = l.check(s, 3, 60_000, now);
            assert!(d.allowed, "request {i}");
        }
        let d = l.check(s, 3, 60_000, now);
        assert!(!d.allowed);
        assert_eq!(d.remaining, 0);
        assert_eq!(l.peek(s, 60_000, now), 3);
    }

    #[test]
    fn hot_limiter_ships_increments_and_learns_cluster_totals() {
        let l = HotLimiter::new();
        // Limit 10: below SHARE_FRACTION, so shared from the first request.
        let s = HotSubject::ClientIp("192.0.2.1".parse().expect("ip"));
        let now = 5 * 60_000;
        l.check(s, 10, 60_000, now);
        l.check(s, 10, 60_000, now);
        let pending = l.take_pending();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].delta, 2);
        assert!(l.take_pending().is_empty());
        // Another instance counted 7 in the same window: Redis answers 9.
        l.report(&pending[0], Some(9));
        assert_eq!(l.peek(s, 60_000, now), 9);
        assert!(l.check(s, 10, 60_000, now).allowed);
        assert!(!l.check(s, 10, 60_000, now).allowed);
    }

    #[test]
    fn client_addresses_are_shared_only_from_their_threshold_and_then_exactly() {
        let l = HotLimiter::new();
        let s = HotSubject::ClientIp("192.0.2.7".parse().expect("ip"));
        let now = 9 * 60_000;
        // Limit 320: shared from the 10th request (320 / 32) of this window on.
        for _ in 0..9 {
            assert!(l.check(s, 320, 60_000, now).allowed);
        }
        assert!(
            l.take_pending().is_empty(),
            "below the threshold nothing goes to Redis"
        );
        assert!(l.check(s, 320, 60_000, now).allowed);
        let pending = l.take_pending();
        assert_eq!(pending.len(), 1);
        assert_eq!(
            pending[0].delta, 10,
            "every request of the window is shipped at once"
        );
        l.report(&pending[0], Some(10));
        l.check(s, 320, 60_000, now);
        assert_eq!(l.take_pending()[0].delta, 1, "then each one");
        // A new window starts unshared again.
        l.check(s, 320, 60_000, now + 60_000);
        assert!(l.take_pending().is_empty());
        // Links are always shared: a per-link cap is a setting users rely on.
        let link = HotSubject::Link(Uuid::nil());
        l.check(link, 320, 60_000, now);
        assert_eq!(l.take_pending().len(), 1);
    }

    #[test]
    fn a_flood_of_distinct_addresses_keeps_memory_bounded_and_shared_subjects() {
        let l = HotLimiter::new();
        let now = 11 * 60_000;
        let heavy = HotSubject::ClientIp("198.51.100.1".parse().expect("ip"));
        for _ in 0..40 {
            l.check(heavy, 1000, 60_000, now);
        }
        let shipped = l.take_pending();
        assert_eq!(shipped.len(), 1, "1000 / 32 = 31 requests make it shared");
        l.report(&shipped[0], Some(40));
        for i in 0..200_000u32 {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            l.check(HotSubject::ClientIp(IpAddr::V4(ip)), 1000, 60_000, now);
        }
        assert!(
            l.len() <= MAX_SUBJECTS_PER_SHARD * SHARDS,
            "{} subjects kept",
            l.len()
        );
        assert_eq!(
            l.peek(heavy, 60_000, now),
            40,
            "the shared address is remembered"
        );
        assert!(
            l.take_pending().is_empty(),
            "one-off addresses cost Redis nothing"
        );
    }

    #[test]
    fn hot_limiter_counts_locally_when_redis_is_unreachable() {
        let l = HotLimiter::new();
        let s = HotSubject::Link(Uuid::nil());
        let now = 7 * 60_000;
        l.check(s, 10, 60_000, now);
        let p = l.take_pending();
        l.report(&p[0], None);
        assert_eq!(l.peek(s, 60_000, now), 1);
    }

    #[test]
    fn hot_limiter_carries_the_previous_window_into_the_estimate() {
        let l = HotLimiter::new();
        let s = HotSubject::Link(Uuid::nil());
        let w0 = 10 * 60_000;
        for _ in 0..4 {
            l.check(s, 4, 60_000, w0);
        }
        // Half-way through the next window half of the previous count still counts.
        assert_eq!(l.peek(s, 60_000, w0 + 90_000), 2);
        // Two windows later nothing is left.
        assert_eq!(l.peek(s, 60_000, w0 + 181_000), 0);
    }
}

//! [`HotLimiter`]: the redirect path's counters (per-IP limit and per-link cap), decided in
//! memory and shipped to Redis by the click flusher, whose replies bring back the
//! cluster-wide totals (see the module doc of [`super`]).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use uuid::Uuid;

use super::window::{decision, sliding_count, window_index};
use super::Decision;

/// What the hot path limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HotSubject {
    /// Redirects and verifies per client IP.
    ClientIp(IpAddr),
    /// The per-link cap (`isRateLimited`, `maxClicksPerMin`).
    Link(Uuid),
}

impl HotSubject {
    /// Counter name and subject for [`crate::redis::keys::Keys::rate_window`].
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
    /// When Redis last reported `known` (unix ms; 0: not in this window).
    known_at_ms: i64,
    /// Increments of `window` not shipped yet.
    unflushed: u32,
    /// Increments shipped but not yet answered.
    inflight: u32,
    /// Total of the previous window.
    prev: u64,
    /// The most this instance shipped for the subject in one flush lately: its share of the
    /// traffic one flush interval carries (halved at each new window).
    flush_worth: u32,
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
            self.known_at_ms = 0;
            self.unflushed = 0;
            self.inflight = 0;
            self.shared = false;
            self.flush_worth /= 2;
        }
    }

    fn current(&self) -> u64 {
        self.known + self.unflushed as u64 + self.inflight as u64
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
/// A link's cap is decided locally only while Redis reported its cluster-wide count this
/// recently (under traffic the flusher reports every few milliseconds).
pub const LINK_FRESH_MS: i64 = 50;

/// How close to its cap a link is decided on the shared counter: what the other instances may
/// have let through and not shipped yet (twice one flush's worth each, as seen here), and at
/// least a tenth of the cap.
pub fn link_margin(limit: u32, instances: u32, flush_worth: u32) -> u64 {
    let unseen = 2 * instances.max(1) as u64 * flush_worth.max(1) as u64 + 1;
    unseen.max(limit as u64 / 10)
}

impl HotSubject {
    /// From which local count in a window this subject's increments are shipped.
    fn share_from(&self, limit: u32) -> u64 {
        match self {
            HotSubject::Link(_) => 1,
            HotSubject::ClientIp(_) => (limit / SHARE_FRACTION).max(1) as u64,
        }
    }
}

/// How [`HotLimiter::check_link`] wants a capped link decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkCheck {
    /// Decided (and counted when allowed) locally.
    Local(Decision),
    /// Near the cap, or this instance's view of the cluster-wide count is stale: decide on
    /// the shared counter ([`check_link_cap`](super::check_link_cap)).
    Shared,
}

/// Subjects of one shard. Keys come from clients (their addresses), so the hash is keyed
/// with a random seed per map, and fast: it runs on every request (SipHash, the standard
/// one, cost 2 % of an API instance's CPU on the redirect path).
type Shard = HashMap<HotSubject, HotEntry, foldhash::fast::RandomState>;

pub struct HotLimiter {
    /// Picks a subject's shard; its own seed, independent of the maps' (a shard's keys
    /// would otherwise share low hash bits and crowd its buckets).
    shard_of: foldhash::fast::RandomState,
    shards: Vec<Mutex<Shard>>,
    dirty: Mutex<Vec<(HotSubject, i64)>>,
    /// Signalled whenever shipped increments are answered (see [`HotLimiter::report`]).
    reported: tokio::sync::Notify,
    /// Live API instances, as the heartbeat registry last counted them.
    instances: AtomicU32,
}

impl Default for HotLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl HotLimiter {
    pub fn new() -> Self {
        Self {
            shard_of: foldhash::fast::RandomState::default(),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            dirty: Mutex::new(Vec::new()),
            reported: tokio::sync::Notify::new(),
            // Until the registry answers, assume company: it only widens the margin.
            instances: AtomicU32::new(2),
        }
    }

    /// Records how many API instances share the counters (from the heartbeat registry).
    pub fn set_instances(&self, n: u32) {
        self.instances.store(n.max(1), Ordering::Relaxed);
    }

    fn shard(&self, s: &HotSubject) -> &Mutex<Shard> {
        &self.shards[(self.shard_of.hash_one(s) as usize) % SHARDS]
    }

    /// Counts one request if it is within `limit`; denied requests are not counted.
    pub fn check(&self, subject: HotSubject, limit: u32, window_ms: i64, now_ms: i64) -> Decision {
        let window = window_index(now_ms, window_ms);
        let (d, newly_dirty) = {
            let mut shard = self
                .shard(&subject)
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if shard.len() >= MAX_SUBJECTS_PER_SHARD && !shard.contains_key(&subject) {
                forget_unshared(&mut shard, window);
            }
            let e = shard.entry(subject).or_default();
            e.roll(window);
            count_locally(e, subject, limit, now_ms, window_ms)
        };
        if newly_dirty {
            self.mark_dirty(subject, window_ms);
        }
        d
    }

    fn mark_dirty(&self, subject: HotSubject, window_ms: i64) {
        self.dirty
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((subject, window_ms));
    }

    /// The per-link cap, locally when that is safe (see [`LinkCheck`]); with `redis_up` false
    /// the local count alone decides (per-instance limits while Redis is away).
    pub fn check_link(
        &self,
        link: Uuid,
        limit: u32,
        window_ms: i64,
        now_ms: i64,
        redis_up: bool,
    ) -> LinkCheck {
        let subject = HotSubject::Link(link);
        let window = window_index(now_ms, window_ms);
        let instances = self.instances.load(Ordering::Relaxed);
        let (d, newly_dirty) = {
            let mut shard = self
                .shard(&subject)
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let e = shard.entry(subject).or_default();
            e.roll(window);
            let count = sliding_count(e.prev, e.current(), now_ms, window_ms);
            // Our count never exceeds the cluster's (Redis's total plus what we have not
            // shipped), so a local refusal is always right.
            let refuse_here = count >= limit as u64;
            let fresh = e.known_at_ms > 0 && now_ms - e.known_at_ms <= LINK_FRESH_MS;
            let far = count + link_margin(limit, instances, e.flush_worth) < limit as u64;
            if redis_up && !refuse_here && !(fresh && far) {
                return LinkCheck::Shared;
            }
            count_locally(e, subject, limit, now_ms, window_ms)
        };
        if newly_dirty {
            self.mark_dirty(subject, window_ms);
        }
        LinkCheck::Local(d)
    }

    /// Waits (at most `within`) until none of `subject`'s shipped increments is unanswered,
    /// so that a decision on the shared counter sees every click this instance allowed.
    pub async fn wait_for_inflight(&self, subject: HotSubject, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.reported.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let inflight = self
                .shard(&subject)
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&subject)
                .map_or(0, |e| e.inflight);
            if inflight == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    }

    /// Takes `subject`'s unshipped increments of the window of `now_ms` for a shared decision,
    /// marking them in flight (answer with [`HotLimiter::report`]). The delta may be 0.
    pub fn take_unflushed(
        &self,
        subject: HotSubject,
        window_ms: i64,
        now_ms: i64,
    ) -> PendingIncrement {
        let window = window_index(now_ms, window_ms);
        let mut shard = self
            .shard(&subject)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let e = shard.entry(subject).or_default();
        e.roll(window);
        let delta = std::mem::take(&mut e.unflushed);
        e.inflight += delta;
        PendingIncrement {
            subject,
            window,
            window_ms,
            delta,
        }
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
                sliding_count(e.prev, e.current(), now_ms, window_ms)
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
                    e.flush_worth = e.flush_worth.max(e.unflushed);
                    e.inflight += e.unflushed;
                    e.unflushed = 0;
                }
            }
        }
        out
    }

    /// Applies Redis's answer to a shipped increment: `Some(total)` is the cluster-wide count
    /// of that window; `None` (Redis unreachable) keeps the count local only.
    pub fn report(&self, inc: &PendingIncrement, total: Option<u64>, now_ms: i64) {
        self.settle(inc, total, None, now_ms);
    }

    /// Applies the answer of a shared decision: the window's total (`cur`, our increments and
    /// this request included when allowed) and the previous window's, both cluster-wide.
    pub(super) fn settle(
        &self,
        inc: &PendingIncrement,
        total: Option<u64>,
        prev: Option<u64>,
        now_ms: i64,
    ) {
        {
            let mut shard = self
                .shard(&inc.subject)
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if let Some(e) = shard.get_mut(&inc.subject) {
                if e.window == inc.window {
                    e.inflight = e.inflight.saturating_sub(inc.delta);
                    match total {
                        Some(t) => {
                            e.known = e.known.max(t);
                            e.known_at_ms = now_ms;
                        }
                        None => e.known += inc.delta as u64,
                    }
                    if let Some(p) = prev {
                        e.prev = e.prev.max(p);
                    }
                }
            }
        }
        self.reported.notify_waiters();
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

/// Counts one request on `e` if it is within `limit`. Returns the decision and whether the
/// subject newly needs shipping.
fn count_locally(
    e: &mut HotEntry,
    subject: HotSubject,
    limit: u32,
    now_ms: i64,
    window_ms: i64,
) -> (Decision, bool) {
    let cur = e.current();
    let count = sliding_count(e.prev, cur, now_ms, window_ms);
    if count < limit as u64 {
        e.unflushed += 1;
        if !e.shared && cur + 1 >= subject.share_from(limit) {
            e.shared = true;
        }
        let newly_dirty = e.shared && !e.dirty;
        if newly_dirty {
            e.dirty = true;
        }
        (
            decision(limit, e.prev, cur + 1, true, now_ms, window_ms),
            newly_dirty,
        )
    } else {
        (
            decision(limit, e.prev, cur, false, now_ms, window_ms),
            false,
        )
    }
}

/// Makes room in a full shard: first every subject that was never shipped (local counts below
/// the share threshold), then, if shared subjects alone fill it, those of older windows.
fn forget_unshared(shard: &mut Shard, window: i64) {
    shard.retain(|_, e| e.shared || e.dirty || e.inflight > 0);
    if shard.len() >= MAX_SUBJECTS_PER_SHARD {
        shard.retain(|_, e| e.dirty || e.inflight > 0 || e.window == window);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        l.report(&pending[0], Some(9), now);
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
        l.report(&pending[0], Some(10), now);
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
        l.report(&shipped[0], Some(40), now);
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
        l.report(&p[0], None, now);
        assert_eq!(l.peek(s, 60_000, now), 1);
    }

    #[test]
    fn refusals_carry_a_retry_after_and_allowances_none() {
        let l = HotLimiter::new();
        let s = HotSubject::ClientIp("192.0.2.9".parse().expect("ip"));
        let now = 30 * 60_000 + 15_000;
        assert_eq!(l.check(s, 1, 60_000, now).retry_after, Duration::ZERO);
        let refused = l.check(s, 1, 60_000, now);
        assert!(!refused.allowed);
        // Counted 1 of 1 at 15 s into the window: the next window's first millisecond
        // still weighs it as 0.99998 → 0, so 45 s and a millisecond.
        assert_eq!(refused.retry_after, Duration::from_millis(45_001));
    }

    #[test]
    fn a_capped_link_is_decided_on_the_shared_counter_until_redis_reported_a_fresh_count() {
        let l = HotLimiter::new();
        l.set_instances(2);
        let link = Uuid::from_u128(7);
        let now = 40 * 60_000;
        assert_eq!(
            l.check_link(link, 1000, 60_000, now, true),
            LinkCheck::Shared,
            "nothing known about this window yet"
        );
        // Redis said 10 clicks so far: far from 1000, fresh → local.
        let taken = l.take_unflushed(HotSubject::Link(link), 60_000, now);
        l.settle(&taken, Some(10), Some(0), now);
        assert!(matches!(
            l.check_link(link, 1000, 60_000, now + 10, true),
            LinkCheck::Local(d) if d.allowed
        ));
        // The same count known 1 s ago is stale.
        assert_eq!(
            l.check_link(link, 1000, 60_000, now + 1_000, true),
            LinkCheck::Shared
        );
        // Near the cap (within a tenth of it) the shared counter decides, however fresh.
        let taken = l.take_unflushed(HotSubject::Link(link), 60_000, now);
        l.settle(&taken, Some(950), Some(0), now + 1_000);
        assert_eq!(
            l.check_link(link, 1000, 60_000, now + 1_001, true),
            LinkCheck::Shared
        );
        // Small caps are always shared: the margin covers them whole.
        let small = Uuid::from_u128(8);
        let taken = l.take_unflushed(HotSubject::Link(small), 60_000, now);
        l.settle(&taken, Some(0), Some(0), now);
        assert_eq!(l.check_link(small, 3, 60_000, now, true), LinkCheck::Shared);
        // Without Redis the local count decides.
        assert!(matches!(
            l.check_link(small, 3, 60_000, now, false),
            LinkCheck::Local(d) if d.allowed
        ));
    }

    #[test]
    fn a_link_at_its_cap_is_refused_locally_without_a_round_trip() {
        let l = HotLimiter::new();
        let link = Uuid::from_u128(9);
        let now = 50 * 60_000;
        let taken = l.take_unflushed(HotSubject::Link(link), 60_000, now);
        l.settle(&taken, Some(3), Some(0), now - 5_000);
        assert!(matches!(
            l.check_link(link, 3, 60_000, now, true),
            LinkCheck::Local(d) if !d.allowed && d.retry_after > Duration::ZERO
        ));
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

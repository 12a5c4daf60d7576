//! Rate limiting, shared across instances through Redis, per-instance when Redis is down.
//!
//! Every limiter counts in fixed windows and estimates a sliding window from the current and
//! previous one (`prev × (window − elapsed) / window + current`, in integers): two keys per
//! subject, never a scan of per-second keys. A refused request is never counted, and every
//! refusal says how long to wait ([`Decision::retry_after`]): until the estimate has decayed
//! below the limit, so a client that waits as told gets through.
//!
//! - [`HotLimiter`] serves the redirect path (per-IP limit and per-link cap). Far from a limit
//!   it decides locally and ships increments with the click flusher in the same pipeline as
//!   the click events (`INCRBY`), whose replies bring back the cluster-wide totals. Another
//!   instance's clicks are therefore seen one flush (milliseconds) late.
//!   - Per-IP: a client address is shared (shipped) only once this instance has counted
//!     1/[`SHARE_FRACTION`] of its limit from it in the current window: most addresses make a
//!     handful of requests, and shipping each of them would cost Redis two commands and a key
//!     per request. The cluster may then let an address through up to
//!     (instances − 1) × limit / [`SHARE_FRACTION`] requests beyond its limit. At most
//!     [`MAX_SUBJECTS_PER_SHARD`] × 16 subjects are kept per process: under a flood of
//!     distinct addresses, the unshared ones are forgotten first.
//!   - Per-link cap (a setting users rely on): always shipped, and decided on the shared
//!     counter ([`check_link_cap`], one awaited script) whenever this instance's view of the
//!     cluster-wide count is older than [`LINK_FRESH_MS`] or the count is near the cap
//!     ([`link_margin`]). So the cap holds exactly across instances, and a refusal is never
//!     followed by an allowance in the same window because of a stale local view.
//! - [`SharedLimiter`] serves low-volume routes (shorten, generate-key, per-key limits): one
//!   atomic check-and-count script in Redis, exact across instances. It also takes the
//!   wrong-password attempt slots of verify ([`SharedLimiter::reserve_attempt`]): the slot is
//!   counted *before* the password is checked, atomically for the client and the link, and
//!   only one attempt per link and client may be in flight, so parallel guesses cannot
//!   outrun the throttle.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use uuid::Uuid;

use super::RedisHandle;

/// The outcome of a check, with what the `RateLimit-*` and `Retry-After` headers need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    /// Requests counted in the sliding window, this one included when it was counted.
    pub count: u64,
    pub remaining: u32,
    /// Until the current fixed window ends.
    pub reset_after: Duration,
    /// For a refusal: how long until one more request would be allowed if nothing else is
    /// counted meanwhile. Zero when allowed.
    pub retry_after: Duration,
}

impl Decision {
    /// A refusal because another attempt of the same kind is in flight (one at a time):
    /// limit 1, retry after `wait`.
    pub fn one_at_a_time(wait: Duration) -> Self {
        Self {
            allowed: false,
            limit: 1,
            count: 1,
            remaining: 0,
            reset_after: wait,
            retry_after: wait,
        }
    }
}

pub fn window_index(now_ms: i64, window_ms: i64) -> i64 {
    now_ms.div_euclid(window_ms)
}

/// Sliding-window estimate from the previous and current fixed windows:
/// `⌊prev × (window − elapsed) / window⌋ + cur`, in integers (the Redis scripts compare the
/// same quantity exactly).
pub fn sliding_count(prev: u64, cur: u64, now_ms: i64, window_ms: i64) -> u64 {
    let w = window_ms.max(1) as u128;
    let left = w - now_ms.rem_euclid(window_ms.max(1)) as u128;
    (prev as u128 * left / w) as u64 + cur
}

/// Elapsed milliseconds into a window from which the estimate is below `limit`, or `None`
/// when `cur` alone reaches it (nothing in this window helps).
fn first_allowed_elapsed(prev: u64, cur: u64, limit: u32, window_ms: i64) -> Option<u128> {
    let (prev, cur, limit, w) = (prev as u128, cur as u128, limit as u128, window_ms as u128);
    if cur >= limit {
        return None;
    }
    if prev == 0 {
        return Some(0);
    }
    // ⌊prev × (w − e) / w⌋ < limit − cur  ⟺  prev × (w − e) < (limit − cur) × w
    //                                      ⟺  e ≥ w − ⌈(limit − cur) × w / prev⌉ + 1
    let q = ((limit - cur) * w).div_ceil(prev);
    Some(if q > w { 0 } else { w - q + 1 })
}

/// How long from `now_ms` until one more request fits under `limit`, if nothing else is
/// counted: later in this window as the previous window's weight decays, or in the next one.
pub fn wait_until_allowed(
    prev: u64,
    cur: u64,
    limit: u32,
    now_ms: i64,
    window_ms: i64,
) -> Duration {
    let window_ms = window_ms.max(1);
    let elapsed = now_ms.rem_euclid(window_ms) as u128;
    let wait = match first_allowed_elapsed(prev, cur, limit, window_ms) {
        Some(e) => e.saturating_sub(elapsed),
        // Next window: this window's count becomes the previous one.
        None => {
            (window_ms as u128 - elapsed)
                + first_allowed_elapsed(cur, 0, limit.max(1), window_ms).unwrap_or(0)
        }
    };
    Duration::from_millis(wait.min(u64::MAX as u128) as u64)
}

/// A decision from the window's counts. `cur` includes this request when it was counted.
fn decision(
    limit: u32,
    prev: u64,
    cur: u64,
    allowed: bool,
    now_ms: i64,
    window_ms: i64,
) -> Decision {
    let count = sliding_count(prev, cur, now_ms, window_ms);
    Decision {
        allowed,
        limit,
        count,
        remaining: (limit as u64).saturating_sub(count) as u32,
        reset_after: Duration::from_millis((window_ms - now_ms.rem_euclid(window_ms)) as u64),
        retry_after: if allowed {
            Duration::ZERO
        } else {
            wait_until_allowed(prev, cur, limit, now_ms, window_ms)
        },
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
    /// the shared counter ([`check_link_cap`]).
    Shared,
}

pub struct HotLimiter {
    shards: Vec<Mutex<HashMap<HotSubject, HotEntry>>>,
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
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
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

    fn shard(&self, s: &HotSubject) -> &Mutex<HashMap<HotSubject, HotEntry>> {
        let mut h = DefaultHasher::new();
        s.hash(&mut h);
        &self.shards[(h.finish() as usize) % SHARDS]
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
    fn settle(&self, inc: &PendingIncrement, total: Option<u64>, prev: Option<u64>, now_ms: i64) {
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
fn forget_unshared(shard: &mut HashMap<HotSubject, HotEntry>, window: i64) {
    shard.retain(|_, e| e.shared || e.dirty || e.inflight > 0);
    if shard.len() >= MAX_SUBJECTS_PER_SHARD {
        shard.retain(|_, e| e.dirty || e.inflight > 0 || e.window == window);
    }
}

/// Sliding-window check-and-count in one atomic step. `KEYS[1]`/`KEYS[2]`: the current and
/// previous window's counters. `ARGV`: limit, window ms, elapsed ms of the current window,
/// `pending` (added unconditionally first: increments already allowed locally), `want` (1:
/// count this request if the estimate is below the limit; 0: only look). Returns
/// `{allowed, current, previous}`. The comparison is the integer form of
/// `⌊prev × (w − e) / w⌋ + cur < limit`, exact in Lua's doubles for any count we keep.
pub const WINDOW_SCRIPT: &str = r#"
local limit = tonumber(ARGV[1])
local w = tonumber(ARGV[2])
local e = tonumber(ARGV[3])
local pending = tonumber(ARGV[4])
local cur
if pending > 0 then
  cur = redis.call('INCRBY', KEYS[1], pending)
  redis.call('PEXPIRE', KEYS[1], w * 2)
else
  cur = tonumber(redis.call('GET', KEYS[1]) or '0')
end
local prev = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[5]) > 0 and cur < limit and prev * (w - e) < (limit - cur) * w then
  cur = redis.call('INCR', KEYS[1])
  redis.call('PEXPIRE', KEYS[1], w * 2)
  return {1, cur, prev}
end
return {0, cur, prev}
"#;

/// Takes an attempt slot for every subject at once, or none. `KEYS[1]`: the in-flight lock
/// (one attempt at a time), then a (current, previous) counter pair per subject. `ARGV`: lock
/// token, lock lifetime ms, window ms, elapsed ms, then each subject's limit. Returns
/// `{1}` taken, `{-1}` another attempt is in flight, `{0, i, current, previous}` subject `i`
/// is at its limit.
const ATTEMPT_SCRIPT: &str = r#"
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {-1} end
local w = tonumber(ARGV[3])
local e = tonumber(ARGV[4])
local n = (#KEYS - 1) / 2
for i = 1, n do
  local cur = tonumber(redis.call('GET', KEYS[2 * i]) or '0')
  local prev = tonumber(redis.call('GET', KEYS[2 * i + 1]) or '0')
  local limit = tonumber(ARGV[4 + i])
  if cur >= limit or prev * (w - e) >= (limit - cur) * w then
    redis.call('DEL', KEYS[1])
    return {0, i, cur, prev}
  end
end
for i = 1, n do
  redis.call('INCR', KEYS[2 * i])
  redis.call('PEXPIRE', KEYS[2 * i], w * 2)
end
return {1}
"#;

/// Ends an attempt: frees the lock if it is still ours (`KEYS[1]`, `ARGV[1]` the token) and
/// gives back one count on each further key (a right password is not a failure).
const RELEASE_SCRIPT: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
for i = 2, #KEYS do
  if tonumber(redis.call('GET', KEYS[i]) or '0') > 0 then redis.call('DECR', KEYS[i]) end
end
return 1
"#;

/// Decides a link's cap: locally far from it, on the shared counter near it (see the module
/// doc). Allowed visits are counted; refused ones are not.
pub async fn check_link_cap(
    hot: &HotLimiter,
    redis: &RedisHandle,
    link: Uuid,
    limit: u32,
    window_ms: i64,
    now_ms: i64,
) -> Decision {
    match hot.check_link(link, limit, window_ms, now_ms, redis.is_healthy()) {
        LinkCheck::Local(d) => return d,
        LinkCheck::Shared => {}
    }
    let subject = HotSubject::Link(link);
    // Increments the flusher is shipping must land before we look, or we would undercount.
    hot.wait_for_inflight(subject, Duration::from_millis(250))
        .await;
    let taken = hot.take_unflushed(subject, window_ms, now_ms);
    let (name, subject_key) = subject.key_parts();
    let keys = redis.keys();
    let mut cmd = ::redis::cmd("EVAL");
    cmd.arg(WINDOW_SCRIPT)
        .arg(2)
        .arg(keys.rate_window(name, &subject_key, taken.window))
        .arg(keys.rate_window(name, &subject_key, taken.window - 1))
        .arg(limit)
        .arg(window_ms)
        .arg(now_ms.rem_euclid(window_ms))
        .arg(taken.delta)
        .arg(1);
    match redis.query_cmd::<(u8, u64, u64)>(&cmd).await {
        Some((allowed, cur, prev)) => {
            hot.settle(&taken, Some(cur), Some(prev), now_ms);
            decision(limit, prev, cur, allowed == 1, now_ms, window_ms)
        }
        None => {
            hot.report(&taken, None, now_ms);
            match hot.check_link(link, limit, window_ms, now_ms, false) {
                LinkCheck::Local(d) => d,
                LinkCheck::Shared => unreachable_shared(limit, now_ms, window_ms),
            }
        }
    }
}

/// `check_link` with `redis_up = false` always decides locally; should that ever change,
/// refuse rather than allow unchecked.
fn unreachable_shared(limit: u32, now_ms: i64, window_ms: i64) -> Decision {
    decision(limit, 0, limit as u64, false, now_ms, window_ms)
}

/// One rate-limit subject of a [`SharedLimiter`] call: the limit's name, who is limited, and
/// the limit.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub name: &'a str,
    pub subject: &'a str,
    pub limit: u32,
}

/// The answer of [`SharedLimiter::reserve_attempt`].
pub enum Attempt {
    /// The slots are taken (counted as failures) and the lock held: check the password, then
    /// [`AttemptSlot::succeeded`] or [`AttemptSlot::failed`].
    Reserved(AttemptSlot),
    /// Another attempt for the same lock is in flight.
    Busy,
    /// The subject at this index of the call is at its limit.
    Limited(usize, Decision),
}

/// Held attempt slots. Dropped without an outcome (the client went away mid-check) it stays
/// counted as a failure and the lock is freed in the background.
pub struct AttemptSlot {
    limiter: Arc<SharedLimiterInner>,
    lock_key: String,
    token: String,
    counters: Vec<String>,
    /// Taken in the local fallback (Redis was unreachable), not in Redis.
    local: bool,
    done: bool,
}

impl AttemptSlot {
    /// The password was right: the slots are given back.
    pub async fn succeeded(mut self) {
        self.done = true;
        self.limiter
            .release(&self.lock_key, &self.token, &self.counters, self.local)
            .await;
    }

    /// The password was wrong: the slots stay counted.
    pub async fn failed(mut self) {
        self.done = true;
        self.limiter
            .release(&self.lock_key, &self.token, &[], self.local)
            .await;
    }
}

impl Drop for AttemptSlot {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let limiter = self.limiter.clone();
        let lock_key = std::mem::take(&mut self.lock_key);
        let token = std::mem::take(&mut self.token);
        let local = self.local;
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { limiter.release(&lock_key, &token, &[], local).await });
        } else if local {
            limiter.local_unlock(&lock_key);
        }
    }
}

/// How long an attempt lock lives if its holder dies without freeing it.
const ATTEMPT_LOCK_TTL: Duration = Duration::from_secs(15);

/// Awaited, exact-across-instances limiter for low-volume routes.
#[derive(Clone)]
pub struct SharedLimiter {
    inner: Arc<SharedLimiterInner>,
}

struct SharedLimiterInner {
    redis: RedisHandle,
    /// Fallback window counters while Redis is unreachable, under the same names as in Redis:
    /// key -> (expiry in unix ms, count).
    local: Mutex<HashMap<String, (i64, u64)>>,
    /// Fallback attempt locks while Redis is unreachable.
    local_locks: Mutex<HashSet<String>>,
}

impl SharedLimiter {
    pub fn new(redis: RedisHandle) -> Self {
        Self {
            inner: Arc::new(SharedLimiterInner {
                redis,
                local: Mutex::new(HashMap::new()),
                local_locks: Mutex::new(HashSet::new()),
            }),
        }
    }

    /// Counts one request if it is within the limit, and decides. `name` is the limit's
    /// name, `subject` who is limited. A refused request is not counted.
    pub async fn hit(
        &self,
        name: &str,
        subject: &str,
        limit: u32,
        window: Duration,
        now_ms: i64,
    ) -> Decision {
        self.inner
            .apply(name, subject, limit, window, now_ms, true)
            .await
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
        self.inner
            .apply(name, subject, limit, window, now_ms, false)
            .await
    }

    /// Takes one attempt slot from every subject at once (all or none, atomically across
    /// instances) and the lock `lock` (one attempt in flight per lock), before the attempt is
    /// checked. The slots count as failures until [`AttemptSlot::succeeded`] gives them back.
    pub async fn reserve_attempt(
        &self,
        lock: &str,
        subjects: &[Subject<'_>],
        window: Duration,
        now_ms: i64,
    ) -> Attempt {
        let inner = &self.inner;
        let window_ms = window.as_millis().max(1) as i64;
        let idx = window_index(now_ms, window_ms);
        let keys = inner.redis.keys();
        let lock_key = keys.attempt_lock(lock);
        let token = Uuid::new_v4().simple().to_string();
        let counters: Vec<(String, String)> = subjects
            .iter()
            .map(|s| {
                (
                    keys.rate_window(s.name, s.subject, idx),
                    keys.rate_window(s.name, s.subject, idx - 1),
                )
            })
            .collect();
        let mut cmd = ::redis::cmd("EVAL");
        cmd.arg(ATTEMPT_SCRIPT)
            .arg(1 + 2 * subjects.len())
            .arg(&lock_key);
        for (cur, prev) in &counters {
            cmd.arg(cur).arg(prev);
        }
        cmd.arg(&token)
            .arg(ATTEMPT_LOCK_TTL.as_millis() as u64)
            .arg(window_ms)
            .arg(now_ms.rem_euclid(window_ms));
        for s in subjects {
            cmd.arg(s.limit);
        }
        let slot = |local: bool| AttemptSlot {
            limiter: inner.clone(),
            lock_key: lock_key.clone(),
            token: token.clone(),
            counters: counters.iter().map(|(cur, _)| cur.clone()).collect(),
            local,
            done: false,
        };
        match inner.redis.query_cmd::<Vec<i64>>(&cmd).await {
            Some(reply) => match reply.as_slice() {
                [1, ..] => Attempt::Reserved(slot(false)),
                [0, i, cur, prev] => {
                    let i = (*i as usize)
                        .saturating_sub(1)
                        .min(subjects.len().saturating_sub(1));
                    let limit = subjects.get(i).map_or(0, |s| s.limit);
                    Attempt::Limited(
                        i,
                        decision(limit, *prev as u64, *cur as u64, false, now_ms, window_ms),
                    )
                }
                _ => Attempt::Busy,
            },
            None => inner.local_attempt(&lock_key, subjects, &counters, now_ms, window_ms, slot),
        }
    }
}

impl SharedLimiterInner {
    async fn apply(
        &self,
        name: &str,
        subject: &str,
        limit: u32,
        window: Duration,
        now_ms: i64,
        count: bool,
    ) -> Decision {
        let window_ms = window.as_millis().max(1) as i64;
        let idx = window_index(now_ms, window_ms);
        let keys = self.redis.keys();
        let mut cmd = ::redis::cmd("EVAL");
        cmd.arg(WINDOW_SCRIPT)
            .arg(2)
            .arg(keys.rate_window(name, subject, idx))
            .arg(keys.rate_window(name, subject, idx - 1))
            .arg(limit)
            .arg(window_ms)
            .arg(now_ms.rem_euclid(window_ms))
            .arg(0)
            .arg(u8::from(count));
        let (allowed, cur, prev) = match self.redis.query_cmd::<(u8, u64, u64)>(&cmd).await {
            Some((allowed, cur, prev)) if count => (allowed == 1, cur, prev),
            Some((_, cur, prev)) => (
                sliding_count(prev, cur, now_ms, window_ms) < limit as u64,
                cur,
                prev,
            ),
            None => self.local_apply(
                &keys.rate_window(name, subject, idx),
                &keys.rate_window(name, subject, idx - 1),
                limit,
                now_ms,
                window_ms,
                count,
            ),
        };
        decision(limit, prev, cur, allowed, now_ms, window_ms)
    }

    /// The fallback: the same window counters in this process's memory.
    /// Returns (allowed, current, previous).
    fn local_apply(
        &self,
        cur_key: &str,
        prev_key: &str,
        limit: u32,
        now_ms: i64,
        window_ms: i64,
        count: bool,
    ) -> (bool, u64, u64) {
        let mut map = self.local_windows(now_ms);
        let prev = map.get(prev_key).map_or(0, |e| e.1);
        let cur = map.get(cur_key).map_or(0, |e| e.1);
        let allowed = sliding_count(prev, cur, now_ms, window_ms) < limit as u64;
        if allowed && count {
            map.insert(cur_key.to_string(), (now_ms + 2 * window_ms, cur + 1));
            return (true, cur + 1, prev);
        }
        (allowed, cur, prev)
    }

    /// The fallback counters, pruned of expired windows when they grow large.
    fn local_windows(&self, now_ms: i64) -> std::sync::MutexGuard<'_, HashMap<String, (i64, u64)>> {
        let mut map = self.local.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            map.retain(|_, (expires, _)| *expires > now_ms);
        }
        map
    }

    #[allow(clippy::too_many_arguments)]
    fn local_attempt(
        &self,
        lock_key: &str,
        subjects: &[Subject<'_>],
        counters: &[(String, String)],
        now_ms: i64,
        window_ms: i64,
        slot: impl Fn(bool) -> AttemptSlot,
    ) -> Attempt {
        if !self
            .local_locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(lock_key.to_string())
        {
            return Attempt::Busy;
        }
        let mut map = self.local_windows(now_ms);
        for (i, (s, (cur_key, prev_key))) in subjects.iter().zip(counters).enumerate() {
            let prev = map.get(prev_key).map_or(0, |e| e.1);
            let cur = map.get(cur_key).map_or(0, |e| e.1);
            if sliding_count(prev, cur, now_ms, window_ms) >= s.limit as u64 {
                drop(map);
                self.local_unlock(lock_key);
                return Attempt::Limited(i, decision(s.limit, prev, cur, false, now_ms, window_ms));
            }
        }
        for (cur_key, _) in counters {
            let e = map.entry(cur_key.clone()).or_insert((0, 0));
            *e = (now_ms + 2 * window_ms, e.1 + 1);
        }
        Attempt::Reserved(slot(true))
    }

    fn local_unlock(&self, lock_key: &str) {
        self.local_locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(lock_key);
    }

    async fn release(&self, lock_key: &str, token: &str, refund: &[String], local: bool) {
        if local {
            self.local_unlock(lock_key);
            let mut map = self.local.lock().unwrap_or_else(|p| p.into_inner());
            for key in refund {
                if let Some(e) = map.get_mut(key) {
                    e.1 = e.1.saturating_sub(1);
                }
            }
            return;
        }
        let mut cmd = ::redis::cmd("EVAL");
        cmd.arg(RELEASE_SCRIPT)
            .arg(1 + refund.len())
            .arg(lock_key)
            .arg(refund)
            .arg(token);
        // Unreachable Redis: the lock expires by itself (ATTEMPT_LOCK_TTL).
        let _: Option<i64> = self.redis.query_cmd(&cmd).await;
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
    fn retry_after_is_when_the_estimate_has_decayed_below_the_limit() {
        let w = 300_000; // 5 minutes
        let start = 1_000 * w;
        // 100 of 100 in this window, nothing before: the next window's first moment still
        // weighs 99.99 %, which is below 100, so one more fits right after the boundary.
        let wait = wait_until_allowed(0, 100, 100, start + 5_000, w);
        assert_eq!(wait, Duration::from_millis((w - 5_000 + 1) as u64));
        assert!(sliding_count(100, 0, start + w + 1, w) < 100);
        assert_eq!(sliding_count(100, 0, start + w, w), 100);
        // Previous window full, this one empty, at its first moment: one millisecond later
        // the previous window weighs 99.9997 % → 99.
        let wait = wait_until_allowed(100, 0, 100, start, w).as_millis() as i64;
        assert_eq!(wait, 1);
        assert_eq!(sliding_count(100, 0, start + wait, w), 99);
        assert_eq!(sliding_count(100, 0, start, w), 100);
        // Mixed: the wait ends exactly where the estimate drops below the limit.
        for (prev, cur, limit) in [(50, 30, 60), (7, 2, 5), (1000, 999, 1000), (3, 3, 3)] {
            let now = start + 12_345;
            let wait = wait_until_allowed(prev, cur, limit, now, w).as_millis() as i64;
            assert!(sliding_count(prev, cur, now, w) >= limit as u64 || wait == 0);
            let later = now + wait;
            let (p, c) = if window_index(later, w) == window_index(now, w) {
                (prev, cur)
            } else {
                (cur, 0)
            };
            assert!(
                sliding_count(p, c, later, w) < limit as u64,
                "{prev} {cur} {limit}"
            );
            if wait > 0 {
                let before = later - 1;
                let (p, c) = if window_index(before, w) == window_index(now, w) {
                    (prev, cur)
                } else {
                    (cur, 0)
                };
                assert!(
                    sliding_count(p, c, before, w) >= limit as u64,
                    "{prev} {cur} {limit}"
                );
            }
        }
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

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
//!
//! # Files
//!
//! - `window.rs`: fixed windows, the sliding-window estimate and how long a refused client
//!   waits (pure arithmetic, shared by every limiter and mirrored by the scripts).
//! - `hot.rs`: [`HotLimiter`], the redirect path's in-memory counters and what it ships.
//! - `link_cap.rs`: [`check_link_cap`], the per-link cap decided locally or on the shared
//!   counter.
//! - `shared.rs`: [`SharedLimiter`], one script per check, with its in-process fallback.
//! - `attempt.rs`: the wrong-password attempt slots of verify and their lock.
//! - `scripts.rs`: the Lua scripts, each one atomic step in Redis.

mod attempt;
mod hot;
mod link_cap;
mod scripts;
mod shared;
mod window;

use std::time::Duration;

pub use attempt::{Attempt, AttemptSlot, Subject};
pub use hot::{
    link_margin, HotLimiter, HotSubject, LinkCheck, PendingIncrement, LINK_FRESH_MS,
    MAX_SUBJECTS_PER_SHARD, SHARE_FRACTION,
};
pub use link_cap::check_link_cap;
pub use scripts::WINDOW_SCRIPT;
pub use shared::{Limit, SharedLimiter, Verdict};
pub use window::{sliding_count, wait_until_allowed, window_index};

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

//! Fixed windows and the sliding-window estimate every limiter computes (and the Redis
//! scripts compare exactly), and how long a refused client has to wait. Pure arithmetic.

use std::time::Duration;

use super::Decision;

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
pub(super) fn decision(
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
}

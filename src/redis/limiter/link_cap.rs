//! The per-link cap (`isRateLimited`, `maxClicksPerMin`): decided in memory far from the cap,
//! on the shared counter in Redis near it or when this instance's view is stale.

use std::time::Duration;

use uuid::Uuid;

use super::hot::{HotLimiter, HotSubject, LinkCheck};
use super::scripts::WINDOW_SCRIPT;
use super::window::decision;
use super::Decision;
use crate::redis::RedisHandle;

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

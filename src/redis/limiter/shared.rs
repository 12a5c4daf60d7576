//! [`SharedLimiter`]: awaited, exact across instances, for low-volume routes: one script per
//! check in Redis, the same window counters in this process's memory while Redis is away.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::scripts::WINDOW_SCRIPT;
use super::window::{decision, sliding_count, window_index};
use super::Decision;
use crate::redis::RedisHandle;

/// Awaited, exact-across-instances limiter for low-volume routes.
#[derive(Clone)]
pub struct SharedLimiter {
    pub(super) inner: Arc<SharedLimiterInner>,
}

pub(super) struct SharedLimiterInner {
    pub(super) redis: RedisHandle,
    /// Fallback window counters while Redis is unreachable, under the same names as in Redis:
    /// key -> (expiry in unix ms, count).
    pub(super) local: Mutex<HashMap<String, (i64, u64)>>,
    /// Fallback attempt locks while Redis is unreachable.
    pub(super) local_locks: Mutex<HashSet<String>>,
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
    pub(super) fn local_windows(
        &self,
        now_ms: i64,
    ) -> std::sync::MutexGuard<'_, HashMap<String, (i64, u64)>> {
        let mut map = self.local.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            map.retain(|_, (expires, _)| *expires > now_ms);
        }
        map
    }
}

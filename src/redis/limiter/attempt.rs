//! The wrong-password attempt slots of verify ([`SharedLimiter::reserve_attempt`]): counted
//! *before* the password is checked, atomically for every subject (the client and the link),
//! with one attempt in flight per lock, so parallel guesses cannot outrun the throttle.

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::scripts::{ATTEMPT_SCRIPT, RELEASE_SCRIPT};
use super::shared::{SharedLimiter, SharedLimiterInner};
use super::window::{decision, sliding_count, window_index};
use super::Decision;

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

impl SharedLimiter {
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

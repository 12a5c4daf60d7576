//! [`SharedLimiter`]: awaited, exact across instances, for low-volume routes: one script per
//! request in Redis (every limit that covers it checked and counted together, all or none),
//! the same window counters in this process's memory while Redis is away.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::scripts::{WINDOWS_SCRIPT, WINDOW_SCRIPT};
use super::window::{decision, sliding_count, window_index};
use super::Decision;
use crate::redis::{LuaScript, RedisHandle};

static WINDOWS: LuaScript = LuaScript::new(WINDOWS_SCRIPT);

/// One limit a request is counted against: the limit's name, who is limited (an API key's
/// id, a client address), how many requests per sliding window.
#[derive(Debug, Clone, Copy)]
pub struct Limit<'a> {
    pub name: &'static str,
    pub subject: &'a str,
    pub limit: u32,
    pub window: Duration,
}

/// What [`SharedLimiter::hit_all`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<const N: usize> {
    /// Every limit allowed the request, and it was counted in each: their decisions, in the
    /// order the limits were given.
    Allowed([Decision; N]),
    /// The limit at `index` (the first, in the order given, that refused) refused; the request
    /// was counted in none.
    Refused { index: usize, decision: Decision },
}

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
        name: &'static str,
        subject: &str,
        limit: u32,
        window: Duration,
        now_ms: i64,
    ) -> Decision {
        let limits = [Limit {
            name,
            subject,
            limit,
            window,
        }];
        match self.hit_all(&limits, now_ms).await {
            Verdict::Allowed([decision]) => decision,
            Verdict::Refused { decision, .. } => decision,
        }
    }

    /// Counts one request against every limit in `limits` if each allows it, else against
    /// none; one round trip to Redis (one atomic script) however many limits there are.
    pub async fn hit_all<const N: usize>(
        &self,
        limits: &[Limit<'_>; N],
        now_ms: i64,
    ) -> Verdict<N> {
        self.inner.hit_all(limits, now_ms).await
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
        self.inner.peek(name, subject, limit, window, now_ms).await
    }
}

impl SharedLimiterInner {
    async fn hit_all<const N: usize>(&self, limits: &[Limit<'_>; N], now_ms: i64) -> Verdict<N> {
        let keys = self.redis.keys();
        let mut names = Vec::with_capacity(limits.len() * 2);
        let mut args = Vec::with_capacity(limits.len() * 3);
        for l in limits {
            let window_ms = window_ms(l.window);
            let idx = window_index(now_ms, window_ms);
            names.push(keys.rate_window(l.name, l.subject, idx));
            names.push(keys.rate_window(l.name, l.subject, idx - 1));
            args.extend([l.limit as i64, window_ms, now_ms.rem_euclid(window_ms)]);
        }
        let counts = if self.redis.is_cluster() && limits.len() > 1 {
            self.hit_each(&names, &args, limits, now_ms).await
        } else {
            self.hit_together(&names, &args, limits, now_ms).await
        };
        match counts {
            Ok(counts) => Verdict::Allowed(std::array::from_fn(|i| {
                let l = &limits[i];
                let (cur, prev) = (counts[2 * i], counts[2 * i + 1]);
                decision(l.limit, prev, cur, true, now_ms, window_ms(l.window))
            })),
            Err((index, cur, prev)) => {
                let l = &limits[index];
                Verdict::Refused {
                    index,
                    decision: decision(l.limit, prev, cur, false, now_ms, window_ms(l.window)),
                }
            }
        }
    }

    /// Every limit in one script: all counted or none, in one round trip.
    async fn hit_together(
        &self,
        names: &[String],
        args: &[i64],
        limits: &[Limit<'_>],
        now_ms: i64,
    ) -> Result<Vec<u64>, (usize, u64, u64)> {
        match self
            .redis
            .run_script::<Vec<u64>>(&WINDOWS, names, args)
            .await
        {
            Some(reply) => match reply.as_slice() {
                [1, counts @ ..] if counts.len() == limits.len() * 2 => Ok(counts.to_vec()),
                &[0, i, cur, prev] if (1..=limits.len() as u64).contains(&i) => {
                    Err((i as usize - 1, cur, prev))
                }
                // Not the script's reply shape: decide in memory rather than guess.
                _ => self.local_hit_all(names, limits, now_ms),
            },
            None => self.local_hit_all(names, limits, now_ms),
        }
    }

    /// On a Redis Cluster the limits' counters are in different slots, which one script may
    /// not touch: each limit is checked and counted by its own script, in order, and when one
    /// refuses, the counts already taken are given back (`DECR`). Until then a concurrent
    /// request may see them: near a limit the cluster errs on refusing, never on allowing.
    async fn hit_each(
        &self,
        names: &[String],
        args: &[i64],
        limits: &[Limit<'_>],
        now_ms: i64,
    ) -> Result<Vec<u64>, (usize, u64, u64)> {
        let mut counts = Vec::with_capacity(names.len());
        for i in 0..limits.len() {
            let reply = self
                .redis
                .run_script::<Vec<u64>>(&WINDOWS, &names[2 * i..2 * i + 2], &args[3 * i..3 * i + 3])
                .await;
            match reply.as_deref() {
                Some(&[1, cur, prev]) => counts.extend([cur, prev]),
                Some(&[0, 1, cur, prev]) => {
                    self.give_back(&names[..2 * i]).await;
                    return Err((i, cur, prev));
                }
                _ => {
                    self.give_back(&names[..2 * i]).await;
                    return self.local_hit_all(names, limits, now_ms);
                }
            }
        }
        Ok(counts)
    }

    /// Takes back one count from each current window among `pairs` (current, previous names).
    async fn give_back(&self, pairs: &[String]) {
        if pairs.is_empty() {
            return;
        }
        let mut pipe = ::redis::pipe();
        for pair in pairs.chunks_exact(2) {
            pipe.cmd("DECR").arg(&pair[0]).ignore();
        }
        let _: Option<()> = self.redis.query_pipe(&pipe).await;
    }

    /// The fallback of [`Self::hit_all`], with the same all-or-none rule, on this process's
    /// counters. `names` are the (current, previous) counter names per limit. Returns each
    /// limit's (current, previous) counts when all allowed, else the first refusing limit's
    /// index and counts.
    fn local_hit_all(
        &self,
        names: &[String],
        limits: &[Limit<'_>],
        now_ms: i64,
    ) -> Result<Vec<u64>, (usize, u64, u64)> {
        let mut map = self.local_windows(now_ms);
        let mut counts = Vec::with_capacity(limits.len() * 2);
        for (index, (l, pair)) in limits.iter().zip(names.chunks_exact(2)).enumerate() {
            let cur = map.get(&pair[0]).map_or(0, |e| e.1);
            let prev = map.get(&pair[1]).map_or(0, |e| e.1);
            if sliding_count(prev, cur, now_ms, window_ms(l.window)) >= l.limit as u64 {
                return Err((index, cur, prev));
            }
            counts.extend([cur + 1, prev]);
        }
        for (l, pair) in limits.iter().zip(names.chunks_exact(2)) {
            let expires = now_ms + 2 * window_ms(l.window);
            let entry = map.entry(pair[0].clone()).or_insert((expires, 0));
            *entry = (expires, entry.1 + 1);
        }
        Ok(counts)
    }

    /// Decides without counting (see [`SharedLimiter::peek`]).
    async fn peek(
        &self,
        name: &str,
        subject: &str,
        limit: u32,
        window: Duration,
        now_ms: i64,
    ) -> Decision {
        let window_ms = window_ms(window);
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
            .arg(0);
        let (cur, prev) = match self.redis.query_cmd::<(u8, u64, u64)>(&cmd).await {
            Some((_, cur, prev)) => (cur, prev),
            None => {
                let map = self.local_windows(now_ms);
                (
                    map.get(&keys.rate_window(name, subject, idx))
                        .map_or(0, |e| e.1),
                    map.get(&keys.rate_window(name, subject, idx - 1))
                        .map_or(0, |e| e.1),
                )
            }
        };
        let allowed = sliding_count(prev, cur, now_ms, window_ms) < limit as u64;
        decision(limit, prev, cur, allowed, now_ms, window_ms)
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

fn window_ms(window: Duration) -> i64 {
    window.as_millis().max(1) as i64
}

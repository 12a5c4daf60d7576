//! The in-process link cache in front of Redis.
//!
//! Process memory only, no I/O: it lives outside [`crate::redis`] because it is not Redis,
//! and it must keep answering when Redis is gone. Redis drives it from the outside: the
//! invalidation listener ([`crate::redis::RedisHandle::run_invalidation_listener`]) removes
//! entries and reports the subscription state.
//!
//! Entries are fresh for `LOCAL_CACHE_TTL_MS` (1 s by default), which bounds how long another
//! instance may serve an old link state even when the pub/sub invalidation is lost (Redis
//! down). While this process's invalidation listener is subscribed, no invalidation can be
//! missed, so entries are fresh for `LOCAL_CACHE_SUBSCRIBED_TTL_MS` (60 s) instead — unless an
//! invalidation arrived while the value was being looked up (the [`LocalLinkCache::epoch`]
//! moved: the value may predate the change), and when the subscription drops every entry is
//! cut back to the short lifetime at once. Past freshness an entry is kept as *stale* for a
//! while: it is served only when both Redis and PostgreSQL fail to answer, so an outage of
//! both still redirects known links. Invalidation removes an entry outright, so a changed or
//! deleted link is never served stale.
//!
//! Sharded std `Mutex`es: held for a hash-map operation only, never across `.await`.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::domain::RedirectTarget;

const SHARDS: usize = 16;
const STALE_FOR: Duration = Duration::from_secs(3600);

/// `None` inside means "known not to exist" (negative entry).
pub type CachedValue = Option<Arc<RedirectTarget>>;

pub enum LocalLookup {
    Fresh(CachedValue),
    /// Past its freshness; only for use when the authoritative layers fail.
    Stale(CachedValue),
    Absent,
}

struct Entry {
    value: CachedValue,
    fresh_until: Instant,
    stale_until: Instant,
}

/// Entries of one shard: codes come from request paths, so the hash is keyed with a random
/// seed per map, and fast (it runs on every redirect).
type Shard = HashMap<Box<str>, Entry, foldhash::fast::RandomState>;

pub struct LocalLinkCache {
    /// Picks a code's shard; its own seed, independent of the maps'.
    shard_of: foldhash::fast::RandomState,
    shards: Vec<Mutex<Shard>>,
    max_per_shard: usize,
    /// Moves on every invalidation, clear and cut-back.
    epoch: AtomicU64,
    /// The invalidation listener is subscribed (and cleared the cache when it subscribed).
    subscribed: AtomicBool,
}

impl LocalLinkCache {
    pub fn new(max_entries: usize) -> Self {
        Self {
            shard_of: foldhash::fast::RandomState::default(),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            max_per_shard: (max_entries / SHARDS).max(16),
            epoch: AtomicU64::new(0),
            subscribed: AtomicBool::new(false),
        }
    }

    /// Read before a lookup in Redis or PostgreSQL; see [`LocalLinkCache::ttl_for`].
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The lifetime for a value looked up since `epoch`: `long` only if the invalidation
    /// listener is subscribed and nothing was invalidated meanwhile, else `short`.
    pub fn ttl_for(&self, epoch: u64, short: Duration, long: Duration) -> Duration {
        if self.subscribed.load(Ordering::Acquire) && self.epoch() == epoch {
            long.max(short)
        } else {
            short
        }
    }

    /// The listener subscribed: drops everything (messages sent while it was not subscribed
    /// are lost) and allows long lifetimes from now on.
    pub fn subscribed(&self) {
        self.clear();
        self.subscribed.store(true, Ordering::Release);
    }

    /// The listener lost its subscription: from now on only short lifetimes, and entries
    /// already cached are cut back to at most `short` from `now`.
    pub fn unsubscribed(&self, short: Duration, now: Instant) {
        self.subscribed.store(false, Ordering::Release);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        for shard in &self.shards {
            for e in shard.lock().unwrap_or_else(|p| p.into_inner()).values_mut() {
                e.fresh_until = e.fresh_until.min(now + short);
            }
        }
    }

    fn shard(&self, code: &str) -> &Mutex<Shard> {
        &self.shards[(self.shard_of.hash_one(code) as usize) % SHARDS]
    }

    pub fn get(&self, code: &str, now: Instant) -> LocalLookup {
        let shard = self.shard(code).lock().unwrap_or_else(|p| p.into_inner());
        match shard.get(code) {
            Some(e) if now < e.fresh_until => LocalLookup::Fresh(e.value.clone()),
            Some(e) if now < e.stale_until => LocalLookup::Stale(e.value.clone()),
            _ => LocalLookup::Absent,
        }
    }

    pub fn put(&self, code: &str, value: CachedValue, ttl: Duration, now: Instant) {
        let mut shard = self.shard(code).lock().unwrap_or_else(|p| p.into_inner());
        if shard.len() >= self.max_per_shard && !shard.contains_key(code) {
            shard.retain(|_, e| now < e.fresh_until);
            if shard.len() >= self.max_per_shard {
                // Still full of fresh entries: drop one arbitrary entry rather than grow.
                if let Some(k) = shard.keys().next().cloned() {
                    shard.remove(&k);
                }
            }
        }
        // Negative entries are never served stale: a code created during an outage must work.
        let stale_until = if value.is_some() {
            now + STALE_FOR
        } else {
            now + ttl
        };
        shard.insert(
            code.into(),
            Entry {
                value,
                fresh_until: now + ttl,
                stale_until,
            },
        );
    }

    pub fn invalidate(&self, code: &str) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.shard(code)
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(code);
    }

    /// Drops everything, e.g. after the invalidation channel reconnects (messages may be lost).
    pub fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        for shard in &self.shards {
            shard.lock().unwrap_or_else(|p| p.into_inner()).clear();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn target(code: &str) -> Arc<RedirectTarget> {
        Arc::new(RedirectTarget {
            link_id: uuid::Uuid::nil(),
            owner_key_id: uuid::Uuid::nil(),
            code: code.into(),
            url: "https://example.com".into(),
            is_protected: false,
            expires_at_ms: None,
            is_rate_limited: false,
            max_clicks_per_min: 100,
            redirect_type: 302,
            forward_query: false,
            rules: Vec::new(),
            location: Default::default(),
        })
    }

    #[test]
    fn entries_are_fresh_then_stale_then_gone() {
        let c = LocalLinkCache::new(100);
        let t0 = Instant::now();
        c.put("abc", Some(target("abc")), Duration::from_secs(1), t0);
        assert!(matches!(c.get("abc", t0), LocalLookup::Fresh(Some(_))));
        assert!(matches!(
            c.get("abc", t0 + Duration::from_secs(2)),
            LocalLookup::Stale(Some(_))
        ));
        assert!(matches!(
            c.get("abc", t0 + STALE_FOR + Duration::from_secs(2)),
            LocalLookup::Absent
        ));
    }

    #[test]
    fn negative_entries_expire_without_a_stale_period() {
        let c = LocalLinkCache::new(100);
        let t0 = Instant::now();
        c.put("nope", None, Duration::from_secs(1), t0);
        assert!(matches!(c.get("nope", t0), LocalLookup::Fresh(None)));
        assert!(matches!(
            c.get("nope", t0 + Duration::from_secs(2)),
            LocalLookup::Absent
        ));
    }

    #[test]
    fn invalidate_removes_the_entry_entirely() {
        let c = LocalLinkCache::new(100);
        let t0 = Instant::now();
        c.put("abc", Some(target("abc")), Duration::from_secs(1), t0);
        c.invalidate("abc");
        assert!(matches!(c.get("abc", t0), LocalLookup::Absent));
    }

    #[test]
    fn long_lifetimes_only_while_subscribed_and_nothing_moved() {
        let c = LocalLinkCache::new(100);
        let (short, long) = (Duration::from_secs(1), Duration::from_secs(60));
        let e = c.epoch();
        assert_eq!(c.ttl_for(e, short, long), short, "not subscribed yet");
        c.subscribed();
        let e = c.epoch();
        assert_eq!(c.ttl_for(e, short, long), long);
        // An invalidation during the lookup: the value may be older than the change.
        c.invalidate("other");
        assert_eq!(c.ttl_for(e, short, long), short);
        let t0 = Instant::now();
        c.put("abc", Some(target("abc")), long, t0);
        assert!(matches!(
            c.get("abc", t0 + Duration::from_secs(30)),
            LocalLookup::Fresh(Some(_))
        ));
        // The subscription drops: what is cached is fresh for at most `short` more.
        c.unsubscribed(short, t0);
        assert_eq!(c.ttl_for(c.epoch(), short, long), short);
        assert!(matches!(c.get("abc", t0), LocalLookup::Fresh(Some(_))));
        assert!(matches!(
            c.get("abc", t0 + Duration::from_secs(2)),
            LocalLookup::Stale(Some(_))
        ));
    }

    #[test]
    fn the_cache_stays_bounded() {
        let c = LocalLinkCache::new(16 * 16);
        let t0 = Instant::now();
        for i in 0..10_000 {
            c.put(
                &format!("code{i}"),
                Some(target("x")),
                Duration::from_secs(60),
                t0,
            );
        }
        assert!(c.len() <= 16 * 16);
    }
}

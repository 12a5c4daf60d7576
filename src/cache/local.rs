//! The in-process link cache in front of Redis.
//!
//! Entries are fresh for `LOCAL_CACHE_TTL_MS` (1 s by default), which bounds how long another
//! instance may serve an old link state even when the pub/sub invalidation is lost (Redis
//! down). Past freshness an entry is kept as *stale* for a while: it is served only when both
//! Redis and PostgreSQL fail to answer, so an outage of both still redirects known links.
//! Invalidation removes an entry outright, so a changed or deleted link is never served stale.
//!
//! Sharded std `Mutex`es: held for a hash-map operation only, never across `.await`.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
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

pub struct LocalLinkCache {
    shards: Vec<Mutex<HashMap<Box<str>, Entry>>>,
    max_per_shard: usize,
}

impl LocalLinkCache {
    pub fn new(max_entries: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            max_per_shard: (max_entries / SHARDS).max(16),
        }
    }

    fn shard(&self, code: &str) -> &Mutex<HashMap<Box<str>, Entry>> {
        let mut h = DefaultHasher::new();
        code.hash(&mut h);
        &self.shards[(h.finish() as usize) % SHARDS]
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
        self.shard(code)
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(code);
    }

    /// Drops everything, e.g. after the invalidation channel reconnects (messages may be lost).
    pub fn clear(&self) {
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

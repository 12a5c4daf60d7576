//! Section CACHES AND QUEUES: link cache lifetimes in the process and in Redis, and the
//! in-memory click queue.

use std::time::Duration;

use super::read::Reader;
use super::vars::{
    CLICK_QUEUE_CAPACITY, LOCAL_CACHE_SUBSCRIBED_TTL_MS, LOCAL_CACHE_TTL_MS,
    NEGATIVE_CACHE_TTL_SECS, REDIS_CACHE_TTL_SECS,
};
use super::ConfigError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// The local cache lifetime while the invalidation listener is not subscribed.
    pub local_ttl: Duration,
    /// The local cache lifetime while the invalidation listener is subscribed.
    pub local_subscribed_ttl: Duration,
    pub redis_ttl: Duration,
    /// Lifetime of a cached "no such code" in Redis.
    pub negative_ttl: Duration,
    /// Click events kept in memory while Redis is unreachable.
    pub click_queue_capacity: usize,
}

pub(super) fn caches(r: &Reader<'_>) -> Result<CacheConfig, ConfigError> {
    Ok(CacheConfig {
        local_ttl: r.millis(LOCAL_CACHE_TTL_MS)?,
        local_subscribed_ttl: r.millis(LOCAL_CACHE_SUBSCRIBED_TTL_MS)?,
        redis_ttl: r.secs(REDIS_CACHE_TTL_SECS)?,
        negative_ttl: r.secs(NEGATIVE_CACHE_TTL_SECS)?,
        click_queue_capacity: r.number(CLICK_QUEUE_CAPACITY)?,
    })
}

//! The link cache in Redis (`{prefix}link:{code}`: the cached [`RedirectTarget`] as JSON, or a
//! negative marker) and its invalidation: `DEL` plus a `PUBLISH` on the invalidation channel,
//! which every instance's listener applies to its [`LocalLinkCache`].

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use super::{Error, RedisHandle};
use crate::domain::RedirectTarget;
use crate::local_cache::LocalLinkCache;

/// Marker stored under a link key for a code known not to exist (negative caching).
const MISSING_MARKER: &str = "-";

/// Result of a Redis link-cache read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisLookup {
    Unavailable,
    Miss,
    Missing,
    Found(RedirectTarget),
}

impl RedisHandle {
    pub async fn get_link(&self, code: &str) -> RedisLookup {
        let cmd = ::redis::cmd("GET").arg(self.keys().link(code)).clone();
        match self.query_cmd::<Option<String>>(&cmd).await {
            None => RedisLookup::Unavailable,
            Some(None) => RedisLookup::Miss,
            Some(Some(v)) if v == MISSING_MARKER => RedisLookup::Missing,
            Some(Some(v)) => match serde_json::from_str(&v) {
                Ok(t) => RedisLookup::Found(t),
                // An entry written by an incompatible version: treat as a miss and overwrite.
                Err(_) => RedisLookup::Miss,
            },
        }
    }

    /// Caches a lookup result; `None` stores the negative marker.
    pub async fn put_link(&self, code: &str, target: Option<&RedirectTarget>, ttl: Duration) {
        let value = match target {
            Some(t) => match serde_json::to_string(t) {
                Ok(v) => v,
                Err(_) => return,
            },
            None => MISSING_MARKER.to_string(),
        };
        let cmd = ::redis::cmd("SET")
            .arg(self.keys().link(code))
            .arg(value)
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .clone();
        let _: Option<()> = self.query_cmd(&cmd).await;
    }

    /// Removes the cached state of a code everywhere: the Redis entry and, through pub/sub,
    /// every instance's local cache. If Redis is down the code is remembered and retried.
    pub async fn invalidate_link(&self, code: &str) {
        self.invalidate_links(std::slice::from_ref(&code.to_string()))
            .await;
    }

    /// [`Self::invalidate_link`] for many codes in one round trip (bulk import, retries).
    pub async fn invalidate_links(&self, codes: &[String]) {
        if codes.is_empty() {
            return;
        }
        let mut pipe = ::redis::pipe();
        for code in codes {
            pipe.cmd("DEL").arg(self.keys().link(code)).ignore();
            pipe.cmd("PUBLISH")
                .arg(self.keys().invalidation_channel())
                .arg(code)
                .ignore();
        }
        if self.query_pipe::<()>(&pipe).await.is_none() {
            self.inner
                .pending_invalidations
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(codes.iter().cloned());
        }
    }

    pub(super) async fn retry_pending_invalidations(&self) {
        let codes: Vec<String> = self
            .inner
            .pending_invalidations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .collect();
        self.invalidate_links(&codes).await;
    }

    /// Listens for invalidations from other instances and applies them to `local`.
    /// After every (re)subscription the local cache is cleared: messages sent while we were
    /// disconnected are lost. While subscribed, entries may live `LOCAL_CACHE_SUBSCRIBED_TTL_MS`;
    /// when the subscription drops they are cut back to `short_ttl` (see [`LocalLinkCache`]).
    pub async fn run_invalidation_listener(
        self,
        local: Arc<LocalLinkCache>,
        short_ttl: Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let channel = self.keys().invalidation_channel();
        loop {
            let subscribed = async {
                let mut pubsub = tokio::time::timeout(
                    Duration::from_secs(2),
                    self.subscription_client().get_async_pubsub(),
                )
                .await
                .map_err(|_| Error::Timeout)?
                .map_err(Error::from_redis)?;
                pubsub
                    .subscribe(&channel)
                    .await
                    .map_err(Error::from_redis)?;
                Ok::<_, Error>(pubsub)
            };
            let mut pubsub = tokio::select! {
                _ = &mut shutdown => return,
                r = subscribed => match r {
                    Ok(p) => p,
                    Err(_) => {
                        tokio::select! {
                            _ = &mut shutdown => return,
                            _ = tokio::time::sleep(Duration::from_millis(250)) => continue,
                        }
                    }
                }
            };
            local.subscribed();
            let mut messages = pubsub.on_message();
            // A connection that dies silently (no FIN) would keep the stream open: when the
            // supervisor finds Redis unreachable, give up the subscription and resubscribe.
            let mut health = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = health.tick() => {
                        if !self.is_healthy() {
                            local.unsubscribed(short_ttl, std::time::Instant::now());
                            break;
                        }
                    }
                    msg = messages.next() => match msg {
                        Some(m) => {
                            if let Ok(code) = m.get_payload::<String>() {
                                local.invalidate(&code);
                            }
                        }
                        None => {
                            local.unsubscribed(short_ttl, std::time::Instant::now());
                            break;
                        }
                    }
                }
            }
        }
    }
}

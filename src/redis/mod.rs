//! Redis: link cache, click stream, rate-limit counters, invalidation channel, heartbeats.
//! The only module that talks to Redis; every key comes from [`keys::Keys`].
//!
//! Redis is never a single point of failure for the API. [`RedisHandle`] tracks whether Redis
//! answers; while it does not, calls return `None` at once instead of waiting on timeouts,
//! and a supervisor task reconnects in the background. Callers fall back to PostgreSQL, the
//! local cache and per-instance counters.

pub mod keys;
pub mod limiter;
pub mod local;
pub mod stream;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::FromRedisValue;
use futures_util::StreamExt;

use crate::clicks::event::{pack, PACKED_VERSION};
use crate::clicks::queue::{ClickQueue, ClickShipper, FlushOutcome, FLUSH_BATCH};
use crate::domain::RedirectTarget;
use keys::Keys;
use limiter::HotLimiter;
use local::LocalLinkCache;

/// Marker stored under a link key for a code known not to exist (negative caching).
const MISSING_MARKER: &str = "-";
/// Upper bound on one Redis command from the request path.
const OP_TIMEOUT: Duration = Duration::from_millis(500);
/// Appends one batch of click events to the stream as ONE packed entry, unless this producer
/// already appended a batch with this sequence number or a later one (`KEYS[2]` holds the
/// producer's last sequence number, kept a day after its last batch). Atomic: Redis runs a
/// script as one unit, so a batch is either wholly in the stream or not at all, and a resend
/// after a lost reply changes nothing. `ARGV[1]` is the sequence number, the rest the entry's
/// fields and values.
pub const APPEND_SCRIPT: &str = r#"
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[1]) <= last then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'EX', 86400)
redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
return 1
"#;

/// Result of a Redis link-cache read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisLookup {
    Unavailable,
    Miss,
    Missing,
    Found(RedirectTarget),
}

#[derive(Clone)]
pub struct RedisHandle {
    inner: Arc<RedisInner>,
}

struct RedisInner {
    client: ::redis::Client,
    conn: RwLock<Option<ConnectionManager>>,
    healthy: AtomicBool,
    keys: Keys,
    /// Upper bound on one call (longer for blocking stream reads).
    op_timeout: Duration,
    errors_total: AtomicU64,
    flushed_total: AtomicU64,
    /// Codes whose invalidation could not be published; retried when Redis is back.
    pending_invalidations: Mutex<HashSet<String>>,
    /// What this process does while Redis is away, for the outage warning.
    outage_note: &'static str,
}

impl RedisHandle {
    /// Parses the URL; connecting happens in [`RedisHandle::run_supervisor`] (or
    /// [`RedisHandle::connect_now`]), so the process starts even when Redis is down.
    pub fn new(url: &str, prefix: &str) -> anyhow::Result<Self> {
        Self::with_timeout(url, prefix, OP_TIMEOUT)
    }

    /// Like [`RedisHandle::new`] with a different per-call bound; the stream consumers need
    /// room for blocking reads.
    pub fn with_timeout(url: &str, prefix: &str, op_timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            inner: Arc::new(RedisInner {
                client: ::redis::Client::open(url)?,
                conn: RwLock::new(None),
                healthy: AtomicBool::new(false),
                keys: Keys::new(prefix),
                op_timeout,
                errors_total: AtomicU64::new(0),
                flushed_total: AtomicU64::new(0),
                pending_invalidations: Mutex::new(HashSet::new()),
                outage_note: "serving from PostgreSQL and local caches, buffering clicks",
            }),
        })
    }

    /// Replaces what the outage warning says this process does meanwhile (the API's text by
    /// default). Only before the handle is cloned.
    pub fn with_outage_note(mut self, note: &'static str) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.outage_note = note;
        }
        self
    }

    pub fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    pub fn client(&self) -> &::redis::Client {
        &self.inner.client
    }

    pub fn is_healthy(&self) -> bool {
        self.inner.healthy.load(Ordering::Relaxed)
    }

    pub fn errors_total(&self) -> u64 {
        self.inner.errors_total.load(Ordering::Relaxed)
    }

    fn conn(&self) -> Option<ConnectionManager> {
        self.inner
            .conn
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_healthy(&self, healthy: bool) {
        let was = self.inner.healthy.swap(healthy, Ordering::Relaxed);
        if was && !healthy {
            tracing::warn!("redis unreachable: {}", self.inner.outage_note);
        } else if !was && healthy {
            tracing::info!("redis reachable");
        }
    }

    /// Tries once to connect (bounded by a short timeout). Returns whether Redis answered.
    pub async fn connect_now(&self) -> bool {
        if self.conn().is_none() {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(OP_TIMEOUT)
                .set_response_timeout(self.inner.op_timeout)
                .set_number_of_retries(1)
                .set_max_delay(200);
            let attempt = tokio::time::timeout(
                Duration::from_secs(2),
                ConnectionManager::new_with_config(self.inner.client.clone(), config),
            )
            .await;
            match attempt {
                Ok(Ok(c)) => *self.inner.conn.write().unwrap_or_else(|p| p.into_inner()) = Some(c),
                _ => {
                    self.set_healthy(false);
                    return false;
                }
            }
        }
        let ok = self.ping().await.is_ok();
        self.set_healthy(ok);
        ok
    }

    /// Round-trip time of a `PING`, or why it failed.
    pub async fn ping(&self) -> Result<Duration, String> {
        let Some(mut c) = self.conn() else {
            return Err("not connected".to_string());
        };
        let start = std::time::Instant::now();
        // Commands on one connection are answered in order: on a stream consumer's handle a
        // PING may queue behind a blocking XREADGROUP, so it gets the same (longer) bound.
        let bound = self.inner.op_timeout.max(OP_TIMEOUT);
        match tokio::time::timeout(bound, ::redis::cmd("PING").query_async::<String>(&mut c)).await
        {
            Ok(Ok(_)) => Ok(start.elapsed()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".to_string()),
        }
    }

    /// Keeps the connection alive: reconnects while Redis is down, pings while it is up,
    /// and retries invalidations that could not be published during an outage.
    pub async fn run_supervisor(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let ok = self.connect_now().await;
            if ok {
                self.retry_pending_invalidations().await;
            }
            let pause = if ok {
                Duration::from_secs(1)
            } else {
                Duration::from_millis(250)
            };
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Runs a pipeline; `None` when Redis is down or the call failed (marks Redis unhealthy).
    pub async fn query_pipe<T: FromRedisValue>(&self, pipe: &::redis::Pipeline) -> Option<T> {
        self.try_pipe(pipe).await.ok()
    }

    pub async fn try_pipe<T: FromRedisValue>(&self, pipe: &::redis::Pipeline) -> Result<T, String> {
        if !self.is_healthy() {
            return Err("redis unavailable".to_string());
        }
        let Some(mut c) = self.conn() else {
            return Err("redis not connected".to_string());
        };
        match tokio::time::timeout(self.inner.op_timeout, pipe.query_async::<T>(&mut c)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                self.inner.errors_total.fetch_add(1, Ordering::Relaxed);
                // Only a broken connection means Redis is away; a server-side error reply
                // (BUSYGROUP, NOGROUP, WRONGTYPE...) comes from a Redis that answers.
                if e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_timeout()
                {
                    self.set_healthy(false);
                }
                Err(e.to_string())
            }
            Err(_) => {
                self.inner.errors_total.fetch_add(1, Ordering::Relaxed);
                self.set_healthy(false);
                Err("redis timed out".to_string())
            }
        }
    }

    pub async fn query_cmd<T: FromRedisValue>(&self, cmd: &::redis::Cmd) -> Option<T> {
        let mut pipe = ::redis::pipe();
        pipe.add_command(cmd.clone());
        self.query_pipe::<(T,)>(&pipe).await.map(|(v,)| v)
    }

    /// Takes `key` for `owner` for `ttl` unless someone holds it: `Some(true)` taken,
    /// `Some(false)` held by another, `None` Redis unreachable.
    pub async fn try_lease(&self, key: &str, owner: &str, ttl: Duration) -> Option<bool> {
        let cmd = ::redis::cmd("SET")
            .arg(key)
            .arg(owner)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .clone();
        self.query_cmd::<Option<String>>(&cmd)
            .await
            .map(|reply| reply.is_some())
    }

    // ---- link cache -------------------------------------------------------------------

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
        let mut pipe = ::redis::pipe();
        pipe.cmd("DEL").arg(self.keys().link(code)).ignore();
        pipe.cmd("PUBLISH")
            .arg(self.keys().invalidation_channel())
            .arg(code)
            .ignore();
        if self.query_pipe::<()>(&pipe).await.is_none() {
            self.inner
                .pending_invalidations
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(code.to_string());
        }
    }

    async fn retry_pending_invalidations(&self) {
        let codes: Vec<String> = self
            .inner
            .pending_invalidations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .collect();
        for code in codes {
            self.invalidate_link(&code).await;
        }
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
                    self.inner.client.get_async_pubsub(),
                )
                .await
                .map_err(|_| "timed out".to_string())?
                .map_err(|e| e.to_string())?;
                pubsub
                    .subscribe(&channel)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>(pubsub)
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

    // ---- click stream -----------------------------------------------------------------

    /// One pipeline: a batch of up to [`FLUSH_BATCH`] events (appended as one packed entry by
    /// [`APPEND_SCRIPT`], at most once per batch) plus every pending limiter increment.
    pub async fn flush_once(&self, queue: &ClickQueue, limiter: &HotLimiter) -> FlushOutcome {
        if !self.is_healthy() {
            return FlushOutcome::Failed;
        }
        let batch = queue.next_batch(FLUSH_BATCH);
        let increments = limiter.take_pending();
        if batch.is_none() && increments.is_empty() {
            return FlushOutcome::Empty;
        }
        let mut pipe = ::redis::pipe();
        if let Some(batch) = &batch {
            let mut cmd = ::redis::cmd("EVAL");
            cmd.arg(APPEND_SCRIPT)
                .arg(2)
                .arg(self.keys().click_stream())
                .arg(self.keys().click_producer(&queue.producer().to_string()))
                .arg(batch.seq)
                .arg("v")
                .arg(PACKED_VERSION)
                .arg("n")
                .arg(batch.events.len())
                .arg("events")
                .arg(pack(&batch.events));
            pipe.add_command(cmd).ignore();
        }
        for inc in &increments {
            let (name, subject) = inc.subject.key_parts();
            let key = self.keys().rate_window(name, &subject, inc.window);
            pipe.cmd("INCRBY").arg(&key).arg(inc.delta);
            pipe.cmd("PEXPIRE")
                .arg(&key)
                .arg(inc.window_ms * 2)
                .ignore();
        }
        match self.try_pipe::<Vec<u64>>(&pipe).await {
            Ok(totals) => {
                let now_ms = chrono::Utc::now().timestamp_millis();
                for (inc, total) in increments
                    .iter()
                    .zip(totals.into_iter().map(Some).chain(std::iter::repeat(None)))
                {
                    limiter.report(inc, total, now_ms);
                }
                if let Some(batch) = batch {
                    self.inner
                        .flushed_total
                        .fetch_add(batch.events.len() as u64, Ordering::Relaxed);
                }
                FlushOutcome::Delivered
            }
            Err(_) => {
                let now_ms = chrono::Utc::now().timestamp_millis();
                for inc in &increments {
                    limiter.report(inc, None, now_ms);
                }
                if let Some(batch) = batch {
                    queue.hold(batch);
                }
                FlushOutcome::Failed
            }
        }
    }

    pub fn flushed_events_total(&self) -> u64 {
        self.inner.flushed_total.load(Ordering::Relaxed)
    }

    /// Number of entries in the click stream (`XLEN`), `None` if Redis is down.
    pub async fn click_stream_len(&self) -> Option<u64> {
        let cmd = ::redis::cmd("XLEN").arg(self.keys().click_stream()).clone();
        self.query_cmd(&cmd).await
    }
}

/// The click flusher's way out ([`crate::clicks::queue::run_flusher`]): each flush ships a
/// batch of clicks and every pending rate-limit increment in one pipeline, and idle limiter
/// windows are evicted every 10 s.
pub struct RedisShipper {
    pub redis: RedisHandle,
    pub limiter: Arc<HotLimiter>,
    last_eviction: std::sync::Mutex<std::time::Instant>,
}

impl RedisShipper {
    pub fn new(redis: RedisHandle, limiter: Arc<HotLimiter>) -> Self {
        Self {
            redis,
            limiter,
            last_eviction: std::sync::Mutex::new(std::time::Instant::now()),
        }
    }
}

impl ClickShipper for RedisShipper {
    async fn flush_once(&self, queue: &ClickQueue) -> FlushOutcome {
        self.redis.flush_once(queue, &self.limiter).await
    }

    fn tick(&self) {
        let mut last = self
            .last_eviction
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.elapsed() > Duration::from_secs(10) {
            self.limiter
                .evict_idle(chrono::Utc::now().timestamp_millis());
            *last = std::time::Instant::now();
        }
    }
}

/// A heartbeat hash as stored (field -> value).
pub type Heartbeat = std::collections::HashMap<String, String>;

impl RedisHandle {
    /// Every registered API instance with its heartbeat (`None` once expired). Expired
    /// members are removed from the registry after being reported once.
    pub async fn instance_heartbeats(&self) -> Option<Vec<(String, Option<Heartbeat>)>> {
        let cmd = ::redis::cmd("SMEMBERS")
            .arg(self.keys().instances())
            .clone();
        let mut names: Vec<String> = self.query_cmd(&cmd).await?;
        names.sort();
        let mut pipe = ::redis::pipe();
        for name in &names {
            pipe.cmd("HGETALL").arg(self.keys().instance(name));
        }
        let beats: Vec<Heartbeat> = if names.is_empty() {
            Vec::new()
        } else {
            self.query_pipe(&pipe).await?
        };
        let mut out = Vec::new();
        let mut expired = Vec::new();
        for (name, beat) in names.into_iter().zip(beats) {
            if beat.is_empty() {
                expired.push(name.clone());
                out.push((name, None));
            } else {
                out.push((name, Some(beat)));
            }
        }
        if !expired.is_empty() {
            let cmd = ::redis::cmd("SREM")
                .arg(self.keys().instances())
                .arg(&expired)
                .clone();
            let _: Option<u64> = self.query_cmd(&cmd).await;
        }
        Some(out)
    }

    /// The heartbeat of a background process, `Some(None)` if it has none.
    pub async fn process_heartbeat(&self, process: &str) -> Option<Option<Heartbeat>> {
        let cmd = ::redis::cmd("HGETALL")
            .arg(self.keys().process_heartbeat(process))
            .clone();
        let h: Heartbeat = self.query_cmd(&cmd).await?;
        Some(if h.is_empty() { None } else { Some(h) })
    }

    /// Seconds since the Redis server started.
    pub async fn server_uptime_secs(&self) -> Option<u64> {
        let cmd = ::redis::cmd("INFO").arg("server").clone();
        let info: String = self.query_cmd(&cmd).await?;
        info.lines()
            .find_map(|l| l.strip_prefix("uptime_in_seconds:"))
            .and_then(|v| v.trim().parse().ok())
    }

    /// Metrics snapshots (JSON) published by the given instances; expired ones are absent.
    pub async fn metrics_snapshots(&self, instances: &[String]) -> Option<Vec<String>> {
        if instances.is_empty() {
            return Some(Vec::new());
        }
        let keys: Vec<String> = instances
            .iter()
            .map(|i| self.keys().instance_metrics(i))
            .collect();
        let cmd = ::redis::cmd("MGET").arg(keys).clone();
        let values: Vec<Option<String>> = self.query_cmd(&cmd).await?;
        Some(values.into_iter().flatten().collect())
    }
}

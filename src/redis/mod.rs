//! The Redis adapter: the only code using the `redis` crate (named `::redis` inside this
//! crate, so it is never confused with this module); every key comes from [`keys::Keys`].
//!
//! Redis is never a single point of failure for the API. [`RedisHandle`] tracks whether Redis
//! answers; while it does not, calls return `None` (or [`Error::Unavailable`]) at
//! once instead of waiting on timeouts, and a supervisor task reconnects in the background.
//! Callers fall back to PostgreSQL, the local cache and per-instance counters.
//!
//! # Layout
//!
//! - `mod.rs`: [`RedisHandle`]: the connection, its supervisor, health, the bounded command
//!   calls everything else goes through, leases.
//! - [`cluster`]: a Redis Cluster's own view of its nodes, for `boltlinkctl status`.
//! - [`conn`]: [`conn::Conn`], a standalone server's or a Redis Cluster's connection, and how
//!   a pipeline crosses the cluster's slots.
//! - [`error`]: [`Error`], what a Redis call can fail with (one type for the adapter).
//! - [`keys`]: every key and channel name.
//! - [`links`]: the link cache and its invalidation (`DEL` + pub/sub) and listener.
//! - [`limiter`]: rate limits and password attempt slots, shared through Redis.
//! - [`shipper`]: [`RedisShipper`], the producing side of the click stream (the click
//!   flusher's way out, with the hot limiter's increments).
//! - [`stream`]: the consuming side: [`crate::clicks::ports::ClickLog`] for [`RedisHandle`]
//!   (consumer groups, reads, claims, acknowledgements, dead letters, lag, trimming).
//! - [`heartbeat`]: instance and process heartbeats, metrics snapshots.
//! - [`fence`]: read-your-writes fences for a read replica.
//!
//! The in-process link cache is not Redis and lives in [`crate::local_cache`]. This adapter
//! depends on [`crate::clicks`] (it implements its ports), never the other way round.

pub mod cluster;
pub mod conn;
pub mod error;
pub mod fence;
pub mod heartbeat;
pub mod keys;
pub mod limiter;
pub mod links;
pub mod shipper;
pub mod stream;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::{ClusterClient, ClusterClientBuilder};
use ::redis::FromRedisValue;

use conn::Conn;

pub use error::Error;
pub use heartbeat::{Heartbeat, InstanceHeartbeat};
use keys::Keys;
pub use links::RedisLookup;
pub use shipper::RedisShipper;

/// Upper bound on one Redis command from the request path.
const OP_TIMEOUT: Duration = Duration::from_millis(500);

/// A Lua script that Redis runs by its SHA1 ([`RedisHandle::run_script`]).
pub struct LuaScript {
    text: &'static str,
    sha: OnceLock<String>,
}

impl LuaScript {
    pub const fn new(text: &'static str) -> Self {
        Self {
            text,
            sha: OnceLock::new(),
        }
    }

    pub fn text(&self) -> &'static str {
        self.text
    }

    /// The SHA1 of the text, in hex, as `EVALSHA` and `SCRIPT LOAD` name it.
    pub fn sha(&self) -> &str {
        self.sha
            .get_or_init(|| ::redis::Script::new(self.text).get_hash().to_owned())
    }
}

#[derive(Clone)]
pub struct RedisHandle {
    inner: Arc<RedisInner>,
    /// Key names; the click stream's those of this handle's shard (see
    /// [`RedisHandle::for_shard`]; shard 0 unless asked).
    keys: Arc<Keys>,
}

/// Where Redis is: one server, or the seed nodes of a cluster.
enum Target {
    Single(::redis::Client),
    Cluster {
        client: ClusterClient,
        /// One client per seed node, for the invalidation subscription: a message published
        /// on any node of a cluster reaches the subscribers of every node.
        nodes: Vec<::redis::Client>,
    },
}

struct RedisInner {
    target: Target,
    /// Which seed node the next subscription attempt uses (cluster mode).
    next_node: AtomicU64,
    conn: RwLock<Option<Conn>>,
    healthy: AtomicBool,
    /// Shards of the click stream (`CLICK_STREAM_SHARDS`).
    shards: u16,
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
    /// [`RedisHandle::connect_now`]), so the process starts even when Redis is down. Several
    /// URLs, comma-separated, are the seed nodes of a Redis Cluster.
    pub fn new(url: &str, prefix: &str) -> anyhow::Result<Self> {
        Self::build(url, prefix, OP_TIMEOUT, 2)
    }

    /// The stream consumers' handle: [`RedisHandle::new`] with a different per-call bound
    /// (room for blocking reads), and on a cluster without the client's own retries. The
    /// cluster client sends a command again when its connection broke, and an `XREADGROUP`
    /// whose reply was lost already delivered its entries: sent again it reads newer ones, and
    /// the consumer, never told that a read failed, would count them before the lost batch
    /// (its offset past entries it never counted). Failing instead puts it into recovery, which
    /// re-reads its pending entries first, as on a standalone server, where nothing is resent.
    pub fn for_stream_consumers(
        url: &str,
        prefix: &str,
        op_timeout: Duration,
    ) -> anyhow::Result<Self> {
        Self::build(url, prefix, op_timeout, 0)
    }

    /// `cluster_retries`: how often the cluster client sends a command again (after a
    /// redirect, a broken connection or a failover in progress) before it fails the call.
    fn build(
        url: &str,
        prefix: &str,
        op_timeout: Duration,
        cluster_retries: u32,
    ) -> anyhow::Result<Self> {
        let urls: Vec<&str> = url.split(',').map(str::trim).collect();
        let target = if urls.len() > 1 {
            let nodes = urls
                .iter()
                .map(|u| ::redis::Client::open(*u))
                .collect::<Result<Vec<_>, _>>()?;
            let client = ClusterClientBuilder::new(urls.clone())
                .connection_timeout(OP_TIMEOUT)
                .response_timeout(op_timeout)
                // A failover takes seconds: commands in the meantime fail fast (and are
                // counted as an outage) instead of piling up behind retries.
                .retries(cluster_retries)
                .min_retry_wait(50)
                .max_retry_wait(200)
                .build()?;
            Target::Cluster { client, nodes }
        } else {
            Target::Single(::redis::Client::open(url)?)
        };
        let cluster = matches!(target, Target::Cluster { .. });
        Ok(Self {
            inner: Arc::new(RedisInner {
                target,
                next_node: AtomicU64::new(0),
                conn: RwLock::new(None),
                healthy: AtomicBool::new(false),
                shards: 1,
                op_timeout,
                errors_total: AtomicU64::new(0),
                flushed_total: AtomicU64::new(0),
                pending_invalidations: Mutex::new(HashSet::new()),
                outage_note: "serving from PostgreSQL and local caches, buffering clicks",
            }),
            keys: Arc::new(Keys::new(prefix, cluster)),
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

    /// The key names, the stream's those of this handle's shard.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Spreads the click stream over `shards` keys (`CLICK_STREAM_SHARDS`). Only before the
    /// handle is cloned.
    pub fn with_click_stream_shards(mut self, shards: u16) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.shards = shards.max(1);
        }
        self
    }

    /// How many shards the click stream has.
    pub fn click_stream_shards(&self) -> u16 {
        self.inner.shards
    }

    /// This handle (same connection, health and settings), with its stream operations on
    /// `shard`, which may lie beyond [`Self::click_stream_shards`] (a shard left over from a
    /// larger setting, being drained).
    pub fn for_shard(&self, shard: u16) -> Self {
        Self {
            inner: self.inner.clone(),
            keys: Arc::new(self.keys.for_shard(shard)),
        }
    }

    /// The shard this handle's stream operations use.
    pub fn shard(&self) -> u16 {
        self.keys.shard()
    }

    /// Whether `REDIS_URL` named the nodes of a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.inner.target, Target::Cluster { .. })
    }

    /// A client for a subscription: the server, or the next seed node of a cluster in turn
    /// (so that a node that is down is not tried forever).
    fn subscription_client(&self) -> &::redis::Client {
        match &self.inner.target {
            Target::Single(client) => client,
            Target::Cluster { nodes, .. } => {
                let i = self.inner.next_node.fetch_add(1, Ordering::Relaxed) as usize;
                &nodes[i % nodes.len()]
            }
        }
    }

    pub fn is_healthy(&self) -> bool {
        self.inner.healthy.load(Ordering::Relaxed)
    }

    pub fn errors_total(&self) -> u64 {
        self.inner.errors_total.load(Ordering::Relaxed)
    }

    fn conn(&self) -> Option<Conn> {
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
            let connect = async {
                match &self.inner.target {
                    Target::Single(client) => {
                        let config = ConnectionManagerConfig::new()
                            .set_connection_timeout(OP_TIMEOUT)
                            .set_response_timeout(self.inner.op_timeout)
                            .set_number_of_retries(1)
                            .set_max_delay(200);
                        ConnectionManager::new_with_config(client.clone(), config)
                            .await
                            .map(Conn::Single)
                    }
                    Target::Cluster { client, .. } => {
                        client.get_async_connection().await.map(Conn::Cluster)
                    }
                }
            };
            match tokio::time::timeout(Duration::from_secs(2), connect).await {
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
    pub async fn ping(&self) -> Result<Duration, Error> {
        let Some(mut c) = self.conn() else {
            return Err(Error::NotConnected);
        };
        let start = std::time::Instant::now();
        // Commands on one connection are answered in order: on a stream consumer's handle a
        // PING may queue behind a blocking XREADGROUP, so it gets the same (longer) bound.
        let bound = self.inner.op_timeout.max(OP_TIMEOUT);
        match tokio::time::timeout(bound, ::redis::cmd("PING").query_async::<String>(&mut c)).await
        {
            Ok(Ok(_)) => Ok(start.elapsed()),
            Ok(Err(e)) => Err(Error::from_redis(e)),
            Err(_) => Err(Error::Timeout),
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

    pub async fn try_pipe<T: FromRedisValue>(&self, pipe: &::redis::Pipeline) -> Result<T, Error> {
        if !self.is_healthy() {
            return Err(Error::Unavailable);
        }
        let Some(mut c) = self.conn() else {
            return Err(Error::NotConnected);
        };
        match tokio::time::timeout(self.inner.op_timeout, pipe.query_async::<T>(&mut c)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                self.inner.errors_total.fetch_add(1, Ordering::Relaxed);
                // Only a broken connection means Redis is away; a server-side error reply
                // (BUSYGROUP, NOGROUP, WRONGTYPE...) comes from a Redis that answers.
                let error = Error::from_redis(e);
                if error.is_unreachable() {
                    self.set_healthy(false);
                }
                Err(error)
            }
            Err(_) => {
                self.inner.errors_total.fetch_add(1, Ordering::Relaxed);
                self.set_healthy(false);
                Err(Error::Timeout)
            }
        }
    }

    pub async fn query_cmd<T: FromRedisValue>(&self, cmd: &::redis::Cmd) -> Option<T> {
        let mut pipe = ::redis::pipe();
        pipe.add_command(cmd.clone());
        self.query_pipe::<(T,)>(&pipe).await.map(|(v,)| v)
    }

    /// Runs a Lua script by its SHA1 (`EVALSHA`): Redis keeps compiled scripts, so its text
    /// is sent only when Redis answers `NOSCRIPT` (first use after a start, a restart or a
    /// `SCRIPT FLUSH`), then by `EVAL`, which also loads it. `None` as [`Self::query_cmd`].
    pub async fn run_script<T: FromRedisValue>(
        &self,
        script: &LuaScript,
        keys: &[String],
        args: &[i64],
    ) -> Option<T> {
        let invocation = |verb: &str, body: &str| {
            let mut cmd = ::redis::cmd(verb);
            cmd.arg(body).arg(keys.len()).arg(keys).arg(args);
            let mut pipe = ::redis::pipe();
            pipe.add_command(cmd);
            pipe
        };
        match self
            .try_pipe::<(T,)>(&invocation("EVALSHA", script.sha()))
            .await
        {
            Ok((v,)) => Some(v),
            Err(e) if e.code() == Some("NOSCRIPT") => self
                .query_pipe::<(T,)>(&invocation("EVAL", script.text))
                .await
                .map(|(v,)| v),
            Err(_) => None,
        }
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

    /// Seconds since the Redis server started; of a cluster, since its youngest master did.
    pub async fn server_uptime_secs(&self) -> Option<u64> {
        let cmd = ::redis::cmd("INFO").arg("server").clone();
        let uptime = |info: &str| -> Option<u64> {
            info.lines()
                .find_map(|l| l.strip_prefix("uptime_in_seconds:"))
                .and_then(|v| v.trim().parse().ok())
        };
        if self.is_cluster() {
            // Asked of every master; the answer maps each node's address to its text.
            let infos: std::collections::HashMap<String, String> = self.query_cmd(&cmd).await?;
            infos.values().filter_map(|i| uptime(i)).min()
        } else {
            let info: String = self.query_cmd(&cmd).await?;
            uptime(&info)
        }
    }
}

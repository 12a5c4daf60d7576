//! The application state shared by every request and background task, how it is built, and
//! the link resolution chain (local cache → Redis → PostgreSQL) the redirect path uses.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::clicks::queue::{run_flusher, ClickQueue};
use crate::clicks::ClickEvent;
use crate::config::Config;
use crate::connections::Connections;
use crate::daemon::Shutdown;
use crate::domain::RedirectTarget;
use crate::local_cache::{LocalLinkCache, LocalLookup};
use crate::metadata::{FetchPolicy, MetadataFetcher};
use crate::metrics::{Metrics, Sample, Snapshot};
use crate::passwords::PasswordPool;
use crate::redis::limiter::{HotLimiter, SharedLimiter};
use crate::redis::{InstanceHeartbeat, RedisHandle, RedisLookup, RedisShipper};
use crate::store::{Store, StoreError};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub struct AppState {
    pub config: Config,
    pub store: Store,
    pub redis: RedisHandle,
    pub local: Arc<LocalLinkCache>,
    pub clicks: Arc<ClickQueue>,
    pub hot_limiter: Arc<HotLimiter>,
    pub shared_limiter: SharedLimiter,
    pub metrics: Metrics,
    pub metadata: MetadataFetcher,
    /// Password hashing and checking, at most `PASSWORD_HASH_CONCURRENCY` at a time.
    pub passwords: PasswordPool,
    /// Open client connections, their caps and deadlines.
    pub connections: Arc<Connections>,
    pub started: Instant,
    pub started_at: DateTime<Utc>,
    pub in_flight: AtomicU64,
    /// Set on SIGTERM: readiness answers 503 while in-flight requests drain.
    pub stopping: std::sync::atomic::AtomicBool,
    /// `GEOIP_DB`, opened on first use by a redirect rule's country condition (most
    /// installations never pay its memory in the API).
    geo: std::sync::OnceLock<Option<Arc<crate::clicks::enrich::Geo>>>,
}

pub type App = Arc<AppState>;

/// Why a link could not be resolved.
#[derive(Debug, thiserror::Error)]
#[error("link lookup unavailable: {0}")]
pub struct ResolveError(pub StoreError);

impl AppState {
    /// Builds the state without touching the network: PostgreSQL and Redis connect lazily.
    pub fn build(config: Config, route_names: Vec<&'static str>) -> anyhow::Result<App> {
        let mut store = Store::connect_lazy(&config.database.url, config.database.pool_size)?;
        if let Some(replica) = &config.database.read_replica {
            store = store.with_replica(replica)?;
        }
        Self::build_with_store(config, store, route_names)
    }

    pub fn build_with_store(
        config: Config,
        store: Store,
        route_names: Vec<&'static str>,
    ) -> anyhow::Result<App> {
        let redis = RedisHandle::new(&config.redis.url, &config.redis.key_prefix)?
            .with_click_stream_shards(config.redis.click_stream_shards);
        let metadata = MetadataFetcher::new(FetchPolicy {
            allowed_addrs: config.metadata.allowlist.clone(),
            ..FetchPolicy::default()
        })
        .map_err(|e| anyhow::anyhow!("metadata fetcher: {e}"))?;
        Ok(Arc::new(AppState {
            store,
            shared_limiter: SharedLimiter::new(redis.clone()),
            redis,
            local: Arc::new(LocalLinkCache::new(200_000)),
            clicks: Arc::new(ClickQueue::new(config.cache.click_queue_capacity)),
            hot_limiter: Arc::new(HotLimiter::new()),
            metrics: Metrics::new(Box::leak(route_names.into_boxed_slice())),
            metadata,
            passwords: PasswordPool::new(config.http.password_hash_concurrency),
            connections: Connections::new(config.http.limits.clone()),
            started: Instant::now(),
            started_at: Utc::now(),
            in_flight: AtomicU64::new(0),
            stopping: std::sync::atomic::AtomicBool::new(false),
            geo: std::sync::OnceLock::new(),
            config,
        }))
    }

    /// The country of a visitor: Cloudflare's `cf-ipcountry` when it is a two-letter code,
    /// else the `GEOIP_DB` database's answer for the client address (opened on first use;
    /// a database that cannot be opened is logged once and answers nothing).
    pub fn country_of(&self, header: Option<&str>, ip: std::net::IpAddr) -> Option<String> {
        if let Some(c) =
            header.filter(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic()))
        {
            return Some(c.to_ascii_uppercase());
        }
        let geo = self.geo.get_or_init(|| {
            let path = self.config.pipeline.geoip_db.as_deref()?;
            match crate::clicks::enrich::Geo::open(path) {
                Ok(geo) => Some(Arc::new(geo)),
                Err(e) => {
                    tracing::error!(
                        "country conditions of redirect rules cannot use GEOIP_DB: {e:#}"
                    );
                    None
                }
            }
        });
        geo.as_ref()?.country(ip)
    }

    /// Runs a list or analytics `read` for `key_id`'s caller on the read replica when it may
    /// serve that caller (usable, and caught up past the caller's last write), else on the
    /// primary. A read the replica fails is run again on the primary: the replica only ever
    /// takes load off, it never adds an error.
    pub async fn read_for<T, F, Fut>(&self, key_id: uuid::Uuid, read: F) -> Result<T, StoreError>
    where
        F: Fn(Store) -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let (Some(replica), Some(on_replica)) = (self.store.replica(), self.store.on_replica())
        else {
            return read(self.store.clone()).await;
        };
        // A missing fence answer (Redis down) cannot rule a recent write out: primary.
        let may_serve = replica.usable_now()
            && matches!(self.redis.read_fence(&key_id).await, Ok(w) if replica.may_serve(w));
        if may_serve {
            match read(on_replica).await {
                Ok(v) => {
                    replica.count_read(true);
                    return Ok(v);
                }
                Err(e) => replica.mark_failed(&e.to_string()),
            }
        }
        replica.count_read(false);
        read(self.store.clone()).await
    }

    /// After `key_id`'s caller changed something: with a read replica, its reads stay on the
    /// primary until the replica has replayed the change (see [`crate::redis::fence`]).
    pub async fn wrote(&self, key_id: uuid::Uuid) {
        let Some(replica) = self.store.replica() else {
            return;
        };
        let now_ms = Utc::now().timestamp_millis();
        // Past this, a replica still behind the write is lagging and serves nobody anyway.
        let keep = replica.max_lag() + crate::store::replica::CHECK_INTERVAL * 4;
        if !self.redis.set_read_fence(&key_id, now_ms, keep).await {
            tracing::warn!(
                key.id = %key_id,
                "Redis did not take a read fence: this key's next list reads may miss its write \
                 while the replica catches up"
            );
        }
    }

    /// Local cache, then Redis, then PostgreSQL. A cache hit touches neither Redis nor
    /// PostgreSQL. When PostgreSQL fails, a stale local entry is better than an error.
    pub async fn resolve_link(
        &self,
        code: &str,
    ) -> Result<Option<Arc<RedirectTarget>>, ResolveError> {
        let now = Instant::now();
        let epoch = self.local.epoch();
        let stale = match self.local.get(code, now) {
            LocalLookup::Fresh(v) => {
                self.metrics
                    .cache_local_hits
                    .fetch_add(1, Ordering::Relaxed);
                return Ok(v);
            }
            LocalLookup::Stale(v) => v,
            LocalLookup::Absent => None,
        };
        let ttl = self.local.ttl_for(
            epoch,
            self.config.cache.local_ttl,
            self.config.cache.local_subscribed_ttl,
        );
        if self.redis.is_healthy() {
            match self.redis.get_link(code).await {
                RedisLookup::Found(t) => {
                    self.metrics
                        .cache_redis_hits
                        .fetch_add(1, Ordering::Relaxed);
                    let t = Arc::new(t);
                    self.local.put(code, Some(t.clone()), ttl, Instant::now());
                    return Ok(Some(t));
                }
                RedisLookup::Missing => {
                    self.metrics
                        .cache_redis_hits
                        .fetch_add(1, Ordering::Relaxed);
                    self.local.put(code, None, ttl, Instant::now());
                    return Ok(None);
                }
                RedisLookup::Miss | RedisLookup::Unavailable => {}
            }
        }
        self.metrics.cache_misses.fetch_add(1, Ordering::Relaxed);
        match self.store.find_redirect_target(code).await {
            Ok(found) => {
                let found = found.map(Arc::new);
                self.local.put(code, found.clone(), ttl, Instant::now());
                if self.redis.is_healthy() {
                    let redis = self.redis.clone();
                    let code = code.to_string();
                    let value = found.clone();
                    let redis_ttl = if value.is_some() {
                        self.config.cache.redis_ttl
                    } else {
                        self.config.cache.negative_ttl
                    };
                    tokio::spawn(async move {
                        redis.put_link(&code, value.as_deref(), redis_ttl).await
                    });
                }
                Ok(found)
            }
            Err(e) => match stale {
                Some(t) => {
                    tracing::debug!(
                        link.code = code,
                        "serving a stale cached link: PostgreSQL unavailable"
                    );
                    Ok(Some(t))
                }
                None => Err(ResolveError(e)),
            },
        }
    }

    /// Drops a code's cached state here at once, and everywhere else via Redis. A second
    /// invalidation a second later closes the race with an instance that read the old row
    /// from PostgreSQL just before our write and writes it to Redis just after our delete.
    pub async fn invalidate_link(self: &Arc<Self>, code: &str) {
        self.invalidate_links(vec![code.to_string()]).await;
    }

    /// [`Self::invalidate_link`] for many codes: one Redis round trip now, one a second later.
    pub async fn invalidate_links(self: &Arc<Self>, codes: Vec<String>) {
        for code in &codes {
            self.local.invalidate(code);
        }
        self.redis.invalidate_links(&codes).await;
        let app = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            for code in &codes {
                app.local.invalidate(code);
            }
            app.redis.invalidate_links(&codes).await;
        });
    }

    /// Records a visit; never waits and never fails the caller.
    pub fn record_click(&self, event: ClickEvent) {
        self.clicks.push(event);
    }

    /// This instance's metrics with its live gauges.
    pub fn metrics_snapshot(&self) -> Snapshot {
        let now_ms = Utc::now().timestamp_millis();
        let lag = self
            .clicks
            .oldest_at_ms()
            .map(|at| (now_ms - at).max(0) as f64 / 1000.0)
            .unwrap_or(0.0);
        let extra = vec![
            Sample::new(
                "boltlink_clicks_recorded_total",
                &[],
                self.clicks.enqueued_total() as f64,
            ),
            Sample::new(
                "boltlink_clicks_delivered_total",
                &[],
                self.redis.flushed_events_total() as f64,
            ),
            Sample::new(
                "boltlink_clicks_dropped_total",
                &[],
                self.clicks.dropped_total() as f64,
            ),
            Sample::new("boltlink_click_queue_depth", &[], self.clicks.len() as f64),
            Sample::new("boltlink_click_queue_lag_seconds", &[], lag),
            Sample::new(
                "boltlink_redis_up",
                &[],
                if self.redis.is_healthy() { 1.0 } else { 0.0 },
            ),
            Sample::new(
                "boltlink_redis_errors_total",
                &[],
                self.redis.errors_total() as f64,
            ),
            Sample::new("boltlink_local_cache_entries", &[], self.local.len() as f64),
            Sample::new(
                "boltlink_http_connections_open",
                &[],
                self.connections.open() as f64,
            ),
            Sample::new(
                "boltlink_password_hashes_in_progress",
                &[],
                self.passwords.in_progress() as f64,
            ),
            Sample::new(
                "boltlink_password_hash_refused_total",
                &[],
                self.passwords.refused_total() as f64,
            ),
            Sample::new(
                "process_start_time_seconds",
                &[],
                self.started_at.timestamp() as f64,
            ),
        ];
        let mut extra = extra;
        if let Some(replica) = self.store.replica() {
            extra.extend(replica.samples());
        }
        for (cap, n) in self.connections.refused() {
            extra.push(Sample::new(
                "boltlink_http_connections_refused_total",
                &[("cap", cap)],
                n as f64,
            ));
        }
        for (reason, n) in self.connections.closed() {
            extra.push(Sample::new(
                "boltlink_http_connections_closed_total",
                &[("reason", reason)],
                n as f64,
            ));
        }
        self.metrics.snapshot(&self.config.process.instance, extra)
    }

    /// Publishes this instance's heartbeat and metrics snapshot to Redis.
    pub async fn publish_heartbeat(&self) {
        let snapshot = match serde_json::to_string(&self.metrics_snapshot()) {
            Ok(s) => s,
            Err(_) => return,
        };
        let beat = InstanceHeartbeat {
            instance: &self.config.process.instance,
            started_at_ms: self.started_at.timestamp_millis(),
            last_seen_ms: Utc::now().timestamp_millis(),
            pid: std::process::id(),
            version: VERSION,
            requests: self.metrics.requests_total(),
            metrics_json: &snapshot,
            ttl_ms: HEARTBEAT_TTL_MS,
        };
        // How many instances share the limiter's counters (expired members included until
        // pruned: a larger count only makes the per-link cap more careful).
        if let Some(instances) = self.redis.publish_instance_heartbeat(&beat).await {
            self.hot_limiter.set_instances(instances);
        }
    }

    /// Removes this instance's heartbeat on a clean stop, so status views do not show it.
    pub async fn retract_heartbeat(&self) {
        self.redis
            .retract_instance_heartbeat(&self.config.process.instance)
            .await;
    }
}

/// A heartbeat older than this is gone (the instance stopped or is wedged).
pub const HEARTBEAT_TTL_MS: u64 = 15_000;
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(2);

/// Background tasks of an API process. `shutdown` stops the Redis supervisor, invalidation
/// listener and heartbeat; `flush_stop` (triggered once the server has drained, so no click
/// can arrive any more) makes the click flusher drain its queue within `drain_deadline`.
/// The returned handle finishes once all of them have.
pub fn spawn_background(
    app: &App,
    shutdown: &Shutdown,
    flush_stop: &Shutdown,
    drain_deadline: Duration,
) -> tokio::task::JoinHandle<()> {
    let supervisor = tokio::spawn(app.redis.clone().run_supervisor(flush_stop.wait()));
    let listener = tokio::spawn(app.redis.clone().run_invalidation_listener(
        app.local.clone(),
        app.config.cache.local_ttl,
        shutdown.wait(),
    ));
    let flusher = tokio::spawn(run_flusher(
        RedisShipper::new(app.redis.clone(), app.hot_limiter.clone()),
        app.clicks.clone(),
        flush_stop.wait(),
        drain_deadline,
    ));
    let replica_watch = app.store.replica().cloned().map(|replica| {
        let stop_replica = shutdown.wait();
        let primary = app.store.pool().clone();
        tokio::spawn(async move { replica.watch(primary, stop_replica).await })
    });
    let heartbeat = {
        let app = app.clone();
        let stop = shutdown.wait();
        tokio::spawn(async move {
            tokio::pin!(stop);
            loop {
                app.publish_heartbeat().await;
                tokio::select! {
                    _ = &mut stop => break,
                    _ = tokio::time::sleep(HEARTBEAT_INTERVAL) => {}
                }
            }
            app.retract_heartbeat().await;
        })
    };
    tokio::spawn(async move {
        let _ = flusher.await;
        if let Some(watch) = replica_watch {
            let _ = watch.await;
        }
        let _ = heartbeat.await;
        let _ = listener.await;
        let _ = supervisor.await;
    })
}

/// Fills title/description/favicon in the background after a link is created. Failures are
/// logged at debug level: a page without metadata is normal.
/// [`spawn_metadata_fill`] for the links of a bulk import: one task, at most four fetches at
/// a time, so a thousand rows do not open a thousand outbound connections at once.
pub fn spawn_metadata_fills(app: &App, links: Vec<(uuid::Uuid, String)>) {
    if !app.config.metadata.fetch || links.is_empty() {
        return;
    }
    let app = app.clone();
    tokio::spawn(async move {
        use futures_util::StreamExt;
        futures_util::stream::iter(links)
            .for_each_concurrent(4, |(link_id, url)| {
                let app = app.clone();
                async move { fill_metadata(&app, link_id, &url).await }
            })
            .await;
    });
}

pub fn spawn_metadata_fill(app: &App, link_id: uuid::Uuid, url: String) {
    if !app.config.metadata.fetch {
        return;
    }
    let app = app.clone();
    tokio::spawn(async move { fill_metadata(&app, link_id, &url).await });
}

async fn fill_metadata(app: &App, link_id: uuid::Uuid, url: &str) {
    let Ok(parsed) = url::Url::parse(url) else {
        return;
    };
    match app.metadata.fetch(&parsed).await {
        Ok(meta) => {
            if let Err(e) = app
                .store
                .fill_link_metadata(
                    link_id,
                    meta.title.as_deref(),
                    meta.description.as_deref(),
                    meta.favicon.as_deref(),
                )
                .await
            {
                tracing::warn!(error = %e, "could not store fetched link metadata");
            }
        }
        Err(e) => tracing::debug!(error = %e, "link metadata not fetched"),
    }
}

pub fn in_flight_guard(app: &App) -> InFlight {
    app.in_flight.fetch_add(1, Ordering::Relaxed);
    InFlight(app.clone())
}

/// Counts a request in flight for its lifetime.
pub struct InFlight(App);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

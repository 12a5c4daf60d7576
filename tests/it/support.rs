//! Test harness: a fresh PostgreSQL database and a Redis key prefix per test, the API served
//! in-process on 127.0.0.1:0 (bound before spawning, so no sleeps), keys made through the
//! store, and helpers to poll with a deadline.
//!
//! Needs `DATABASE_URL` (a role that may CREATE DATABASE) and `REDIS_URL`; `scripts/test`
//! provides both from private servers.

#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use boltlink::config::Config;
use boltlink::daemon::Shutdown;
use boltlink::domain::ApiKeySecret;
use boltlink::store::{NewApiKey, Store};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

const API_BIN: &str = env!("CARGO_BIN_EXE_boltlink-api");

pub fn admin_database_url() -> String {
    std::env::var("DATABASE_URL").expect("DATABASE_URL must point at a PostgreSQL role that may create databases (scripts/test sets it)")
}

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").expect("REDIS_URL must be set (scripts/test sets it)")
}

/// Replaces the database name of a PostgreSQL URL.
pub fn with_database(url: &str, db: &str) -> String {
    let mut u = url::Url::parse(url).expect("DATABASE_URL parses");
    u.set_path(&format!("/{db}"));
    u.to_string()
}

static CLEANUP: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();

/// Creates an empty database for one test (earlier runs' test databases are dropped once).
pub async fn fresh_database() -> String {
    let admin = PgPoolOptions::new()
        .max_connections(2)
        .connect(&admin_database_url())
        .await
        .expect("connect to DATABASE_URL");
    CLEANUP
        .get_or_init(|| async {
            let old: Vec<String> = sqlx::query_scalar(
                "SELECT datname FROM pg_database WHERE datname LIKE 'bl_test_%'",
            )
            .fetch_all(&admin)
            .await
            .unwrap_or_default();
            for db in old {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"))
                    .execute(&admin)
                    .await;
            }
        })
        .await;
    let name = format!("bl_test_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&admin)
        .await
        .expect("create test database");
    admin.close().await;
    with_database(&admin_database_url(), &name)
}

/// Base configuration for a test; `overrides` win.
pub fn config_map(
    database_url: &str,
    redis_url: &str,
    prefix: &str,
    overrides: &[(&str, &str)],
) -> HashMap<String, String> {
    let mut m: HashMap<String, String> = [
        ("DATABASE_URL", database_url),
        ("REDIS_URL", redis_url),
        ("REDIS_KEY_PREFIX", prefix),
        ("BIND_ADDR", "127.0.0.1:0"),
        ("PUBLIC_BASE_URL", "https://bl.example"),
        ("LOG_LEVEL", "warn"),
        ("METADATA_FETCH", "false"),
        ("DB_POOL_SIZE", "5"),
        // In-process apps share the test binary's memory: a per-process limit means nothing.
        ("MEMORY_RESTART_MB", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in overrides {
        m.insert(k.to_string(), v.to_string());
    }
    m
}

pub fn init_tracing() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let level = std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".to_string());
        boltlink::telemetry::init(&level, "boltlink-tests");
    });
}

/// A key prefix of its own for one app (or one group of apps sharing a key space).
pub fn new_prefix() -> String {
    format!("t{}:", uuid::Uuid::new_v4().simple())
}

/// What `TestApp::start` waits for before handing the app to the test.
#[derive(Clone, Copy)]
enum WaitFor {
    /// `/ready` answers 200: PostgreSQL reachable and migrated.
    Ready,
    /// `/health` answers at all.
    AnyHealthAnswer,
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub client: reqwest::Client,
    pub db: PgPool,
    pub store: Store,
    pub database_url: String,
    pub redis_url: String,
    pub prefix: String,
    /// The test's own connection for inspecting this test's keys (for `spawn_degraded`, to
    /// the harness's Redis, since the app's may be unreachable).
    pub redis: redis::aio::MultiplexedConnection,
    shutdown: Shutdown,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(&[]).await
    }

    /// Starts an API with its own database and key prefix; `overrides` are config variables.
    pub async fn spawn_with(overrides: &[(&str, &str)]) -> TestApp {
        let database_url = fresh_database().await;
        Self::spawn_on(database_url, redis_url(), overrides).await
    }

    /// Starts an API on the given database and Redis (e.g. a proxy or a private Redis).
    pub async fn spawn_on(
        database_url: String,
        redis_url: String,
        overrides: &[(&str, &str)],
    ) -> TestApp {
        let inspect_redis = redis_url.clone();
        Self::start(
            database_url,
            redis_url,
            &inspect_redis,
            new_prefix(),
            overrides,
            WaitFor::Ready,
        )
        .await
    }

    /// Starts an API on the harness's Redis with an explicit key prefix, so several apps
    /// can share one database and one key space like instances of one deployment. Give each
    /// a distinct `BOLTLINK_INSTANCE` in `overrides` (the default is derived from the pid,
    /// which every in-process app shares).
    pub async fn spawn_shared(
        database_url: String,
        prefix: String,
        overrides: &[(&str, &str)],
    ) -> TestApp {
        let redis_url = redis_url();
        Self::start(
            database_url,
            redis_url.clone(),
            &redis_url,
            prefix,
            overrides,
            WaitFor::Ready,
        )
        .await
    }

    /// Starts an API whose PostgreSQL or Redis may be unreachable from the start: waits only
    /// until `/health` answers at all (whatever its status), and opens the test's own Redis
    /// connection (`app.redis`) to the harness's `REDIS_URL` rather than to `redis_url`.
    pub async fn spawn_degraded(
        database_url: String,
        redis_url: String,
        overrides: &[(&str, &str)],
    ) -> TestApp {
        Self::start(
            database_url,
            redis_url,
            &crate::support::redis_url(),
            new_prefix(),
            overrides,
            WaitFor::AnyHealthAnswer,
        )
        .await
    }

    async fn start(
        database_url: String,
        redis_url: String,
        inspect_redis_url: &str,
        prefix: String,
        overrides: &[(&str, &str)],
        wait: WaitFor,
    ) -> TestApp {
        init_tracing();
        let map = config_map(&database_url, &redis_url, &prefix, overrides);
        let config = Config::from_map(&map).expect("test config is valid");
        let listener =
            boltlink::daemon::systemd::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let shutdown = Shutdown::new();
        let server = tokio::spawn(boltlink::api::run(config, listener, shutdown.clone()));
        let real_db = map
            .get("TEST_REAL_DATABASE_URL")
            .cloned()
            .unwrap_or(database_url.clone());
        let db = PgPoolOptions::new()
            .max_connections(3)
            .connect_lazy(&real_db)
            .expect("pool");
        let redis_client = redis::Client::open(inspect_redis_url).expect("redis url");
        let redis = redis_client
            .get_multiplexed_async_connection()
            .await
            .expect("test's own Redis connection");
        let app = TestApp {
            addr,
            base: format!("http://{addr}"),
            client: http_client(),
            store: Store::from_pool(db.clone()),
            db,
            database_url,
            redis_url,
            prefix,
            redis,
            shutdown,
            server: Some(server),
        };
        match wait {
            WaitFor::Ready => app.wait_until_serving().await,
            WaitFor::AnyHealthAnswer => app.wait_until_answering().await,
        }
        app
    }

    /// Polls `/ready` until the server (and its migrations) are up.
    pub async fn wait_until_serving(&self) {
        eventually(Duration::from_secs(30), || async {
            matches!(self.client.get(self.url("/ready")).send().await, Ok(r) if r.status() == 200)
        })
        .await;
    }

    /// Polls `/health` until the server answers it with any status (dependencies may be down;
    /// start-up, migrations included, ends before the server answers anything).
    pub async fn wait_until_answering(&self) {
        eventually(Duration::from_secs(30), || async {
            self.client.get(self.url("/health")).send().await.is_ok()
        })
        .await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A new API key (plain or admin) created through the store.
    pub async fn key(&self, admin: bool) -> String {
        self.key_with_limits(admin, 100_000, 1_000_000).await
    }

    /// A new API key with its own per-minute and per-hour request limits.
    pub async fn key_with_limits(&self, admin: bool, per_min: u32, per_hour: u32) -> String {
        let secret = ApiKeySecret::generate();
        self.store
            .create_api_key(NewApiKey {
                hash: secret.hash(),
                prefix: secret.prefix(),
                name: Some("test"),
                email: Some("test@example.com"),
                is_admin: admin,
                rate_limit_per_min: per_min,
                rate_limit_per_hour: per_hour,
            })
            .await
            .expect("create key");
        secret.expose().to_string()
    }

    /// The body of `GET /metrics` (Prometheus text).
    pub async fn metrics_text(&self) -> String {
        self.get("/metrics")
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(self.url(path))
    }

    pub fn post_json(
        &self,
        path: &str,
        key: &str,
        body: serde_json::Value,
    ) -> reqwest::RequestBuilder {
        self.client
            .post(self.url(path))
            .header("x-api-key", key)
            .json(&body)
    }

    /// Creates a link and returns its JSON.
    pub async fn shorten(&self, key: &str, body: serde_json::Value) -> serde_json::Value {
        let resp = self
            .post_json("/api/shorten", key, body)
            .send()
            .await
            .expect("shorten");
        assert_eq!(resp.status(), 201, "shorten should answer 201");
        resp.json().await.expect("json")
    }

    /// Entries in this test's click stream (`XLEN`; a flushed batch of clicks is one entry).
    pub async fn stream_entry_count(&self) -> u64 {
        let mut c = self.redis.clone();
        redis::cmd("XLEN")
            .arg(format!("{}clicks", self.prefix))
            .query_async(&mut c)
            .await
            .unwrap_or(0)
    }

    /// Clicks in this test's click stream, however they are packed into entries.
    pub async fn stream_click_count(&self) -> u64 {
        self.stream_clicks().await.len() as u64
    }

    /// Every click in this test's click stream, in order, as a map of its (version-1) field
    /// names to values; packed entries are unpacked with the consumers' own reader.
    pub async fn stream_clicks(&self) -> Vec<HashMap<String, String>> {
        let mut c = self.redis.clone();
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(format!("{}clicks", self.prefix))
            .arg("-")
            .arg("+")
            .query_async(&mut c)
            .await
            .expect("XRANGE");
        let mut clicks = Vec::new();
        for id in reply.ids {
            let fields: HashMap<String, String> = id
                .map
                .into_iter()
                .map(|(k, v)| (k, redis::from_redis_value::<String>(&v).unwrap_or_default()))
                .collect();
            for record in
                boltlink::clicks::event::events_of_entry(&fields).expect("a readable entry")
            {
                let event = record.expect("a valid click");
                clicks.push(
                    event
                        .fields()
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect(),
                );
            }
        }
        clicks
    }

    /// Waits until the stream holds `n` clicks (the flusher ships within milliseconds).
    pub async fn wait_for_stream_clicks(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let len = self.stream_click_count().await;
            if len == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "click stream holds {len} clicks, expected {n}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        self.shutdown.trigger();
        if let Some(s) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), s).await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// Polls `check` until it returns true or `within` passes (then panics).
pub async fn eventually<F, Fut>(within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "condition not met within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits (polling, bounded) until at least 10 s remain in the current fixed window of
/// `window_secs`, so a scenario that counts towards a limit stays inside one window.
pub async fn wait_for_room_in_window(window_secs: i64) {
    let secs_left = || {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let window_ms = window_secs * 1000;
        (window_ms - now_ms.rem_euclid(window_ms)) / 1000
    };
    eventually(Duration::from_secs(15), || async { secs_left() >= 10 }).await;
}

/// Asserts the contract's error shape and returns the message.
pub async fn error_message(resp: reqwest::Response, status: u16) -> String {
    assert_eq!(resp.status().as_u16(), status, "unexpected status");
    let body: serde_json::Value = resp.json().await.expect("error body is JSON");
    body["error"]
        .as_str()
        .expect("error field is a string")
        .to_string()
}

/// Real `boltlink-api` processes on one inherited socket (the `LISTEN_FDS` protocol systemd
/// uses), like `scripts/run` and the units start them.
pub struct Suite {
    pub base: String,
    pub children: Vec<Child>,
    _listener: std::net::TcpListener,
}

impl Suite {
    pub fn start(instances: usize, database_url: &str, prefix: &str) -> Suite {
        Self::start_with(instances, database_url, prefix, &[])
    }

    /// [`Suite::start`] with extra configuration for every process (`envs` win).
    pub fn start_with(
        instances: usize,
        database_url: &str,
        prefix: &str,
        envs: &[(&str, &str)],
    ) -> Suite {
        let listener =
            boltlink::daemon::systemd::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let children = (1..=instances)
            .map(|i| {
                let mut cmd =
                    boltlink::daemon::systemd::spawn_with_listener(&listener, Path::new(API_BIN))
                        .expect("cmd");
                cmd.env("DATABASE_URL", database_url)
                    .env("REDIS_URL", redis_url())
                    .env("REDIS_KEY_PREFIX", prefix)
                    .env("BOLTLINK_INSTANCE", format!("api-{i}"))
                    .env("BOLTLINK_ENV_FILE", "/dev/null")
                    .env("PUBLIC_BASE_URL", "https://bl.example")
                    .env("METADATA_FETCH", "false")
                    .env("LOG_LEVEL", "warn")
                    .env("DB_POOL_SIZE", "4")
                    .envs(envs.iter().copied())
                    .stdout(Stdio::null());
                cmd.spawn().expect("spawn boltlink-api")
            })
            .collect();
        Suite {
            base,
            children,
            _listener: listener,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Waits until `/ready` answers 200 and every process has answered `/health` on the shared
    /// socket (names `api-1` … `api-N`).
    pub async fn wait_until_all_serve(&self) {
        let client = fresh_connection_client();
        eventually(Duration::from_secs(30), || async {
            matches!(client.get(self.url("/ready")).send().await, Ok(r) if r.status() == 200)
        })
        .await;
        let mut seen = std::collections::HashSet::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while seen.len() < self.children.len() {
            assert!(
                Instant::now() < deadline,
                "only {seen:?} answered on the shared socket"
            );
            if let Ok(r) = client.get(self.url("/health")).send().await {
                if let Ok(body) = r.json::<serde_json::Value>().await {
                    seen.insert(body["instance"].as_str().unwrap_or("").to_string());
                }
            }
        }
    }

    /// SIGTERM to every process; returns their exit codes.
    pub fn terminate(&mut self) -> Vec<Option<i32>> {
        for c in &self.children {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        self.children
            .iter_mut()
            .map(|c| loop {
                match c.try_wait() {
                    Ok(Some(status)) => break status.code(),
                    _ if Instant::now() > deadline => {
                        let _ = c.kill();
                        break None;
                    }
                    _ => std::thread::sleep(Duration::from_millis(20)),
                }
            })
            .collect()
    }
}

impl Drop for Suite {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A client that opens a new connection per request, so the kernel spreads requests over
/// every process accepting on the shared socket.
pub fn fresh_connection_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

pub async fn create_key(database_url: &str) -> String {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(database_url)
        .await
        .expect("connect");
    let secret = ApiKeySecret::generate();
    Store::from_pool(pool)
        .create_api_key(NewApiKey {
            hash: secret.hash(),
            prefix: secret.prefix(),
            name: None,
            email: None,
            is_admin: false,
            rate_limit_per_min: 100_000,
            rate_limit_per_hour: 1_000_000,
        })
        .await
        .expect("key");
    secret.expose().to_string()
}

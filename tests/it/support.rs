//! Test harness: a fresh PostgreSQL database ([`TestDatabase`]) and a Redis key prefix per
//! test, the API served in-process on 127.0.0.1:0 (bound before spawning, so no sleeps), keys
//! made through the store, and helpers to poll with a deadline.
//!
//! # Layout
//! - [`TestApp::builder`]: the one way to start an app (`.set`/`.config` for configuration,
//!   `.database`/`.app_database_url`/`.redis`/`.prefix`/`.degraded` for what it runs on);
//!   [`TestApp::start`] for the defaults, [`TestApp::two_instances`] for one deployment of two.
//! - Dropping a [`TestApp`] stops its server and waits for it (bounded), then drops its
//!   database, also when the test panics: tests never write `app.stop().await`.
//! - Typed request helpers, declared once: `app.create_link`, `app.visit`, `app.get_json`,
//!   `app.links().patch(..)`, `app.set_clicks`, `app.click_totals`, `app.set_webhook`, ….
//! - Tables of cases: [`case_error`] and [`Says`] label each case in the failure message.
//! - [`Suite`]: real `boltlink-api` processes on one inherited socket.
//!
//! Needs `DATABASE_URL` (a role that may CREATE DATABASE) and `REDIS_URL`; `scripts/test`
//! provides both from private servers, and runs the suite a second time with `REDIS_URL`
//! naming the nodes of its Redis Cluster. So tests reach Redis only through
//! [`redis_connection`] (`app.redis`) and name keys only through [`Keys`] (`app.keys`), which
//! work the same on both.

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
use boltlink::redis::conn::Conn;
use boltlink::redis::keys::Keys;
use boltlink::store::{NewApiKey, Store};
use serde_json::Value;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

const API_BIN: &str = env!("CARGO_BIN_EXE_boltlink-api");

pub fn admin_database_url() -> String {
    std::env::var("DATABASE_URL").expect("DATABASE_URL must point at a PostgreSQL role that may create databases (scripts/test sets it)")
}

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").expect("REDIS_URL must be set (scripts/test sets it)")
}

/// A test's own connection to a Redis as `REDIS_URL` names it: one server, or the nodes of a
/// Redis Cluster (several URLs, comma-separated), where each command goes to the master of
/// its key's slot. The app's own connection type, so tests inspect keys in either deployment.
pub async fn redis_connection(url: &str) -> Conn {
    let nodes: Vec<&str> = url.split(',').map(str::trim).collect();
    if nodes.len() > 1 {
        let client = redis::cluster::ClusterClient::new(nodes).expect("Redis Cluster URLs");
        Conn::Cluster(
            client
                .get_async_connection()
                .await
                .expect("test's own Redis Cluster connection"),
        )
    } else {
        let client = redis::Client::open(url).expect("redis url");
        Conn::Single(
            redis::aio::ConnectionManager::new(client)
                .await
                .expect("test's own Redis connection"),
        )
    }
}

/// The key names of an app on `redis_url` under `prefix`, as the app builds them (on a
/// cluster some carry hash tags: the click stream is `{prefix}{clicks}` there).
pub fn redis_keys(redis_url: &str, prefix: &str) -> Keys {
    boltlink::redis::RedisHandle::new(redis_url, prefix)
        .expect("redis url")
        .keys()
        .clone()
}

/// The address (`host:port`) of the Redis server that holds `key`: the one server, or on a
/// cluster the master of the key's slot (from `CLUSTER SLOTS`). For tests that must act on
/// one node, e.g. drop one client's connection to it (`CLIENT KILL` goes to a random node of
/// a cluster).
pub async fn redis_server_of(url: &str, key: &str) -> String {
    let nodes: Vec<&str> = url.split(',').map(str::trim).collect();
    if nodes.len() == 1 {
        let u = url::Url::parse(url).expect("redis url");
        let host = u.host_str().expect("redis url host");
        return format!("{host}:{}", u.port().unwrap_or(6379));
    }
    let mut c = redis_connection(url).await;
    let slots: Vec<redis::Value> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(&mut c)
        .await
        .expect("CLUSTER SLOTS");
    let slot = i64::from(redis::cluster_routing::get_slot(key.as_bytes()));
    for range in slots {
        let (lo, hi, master): (i64, i64, (String, i64)) = match range {
            redis::Value::Array(parts) if parts.len() >= 3 => (
                redis::from_redis_value(&parts[0]).expect("slot range start"),
                redis::from_redis_value(&parts[1]).expect("slot range end"),
                match &parts[2] {
                    redis::Value::Array(node) => (
                        redis::from_redis_value(&node[0]).expect("master host"),
                        redis::from_redis_value(&node[1]).expect("master port"),
                    ),
                    other => panic!("CLUSTER SLOTS master: {other:?}"),
                },
            ),
            other => panic!("CLUSTER SLOTS range: {other:?}"),
        };
        if (lo..=hi).contains(&slot) {
            return format!("{}:{}", master.0, master.1);
        }
    }
    panic!("no master serves slot {slot} of {key}")
}

/// The harness's own connections to `DATABASE_URL`: creating and dropping databases is slow
/// by design, so their statements are not logged as slow.
fn admin_connect_options() -> sqlx::postgres::PgConnectOptions {
    use sqlx::ConnectOptions;
    admin_database_url()
        .parse::<sqlx::postgres::PgConnectOptions>()
        .expect("DATABASE_URL parses")
        .disable_statement_logging()
}

/// Replaces the database name of a PostgreSQL URL.
pub fn with_database(url: &str, db: &str) -> String {
    let mut u = url::Url::parse(url).expect("DATABASE_URL parses");
    u.set_path(&format!("/{db}"));
    u.to_string()
}

static CLEANUP: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();

/// How long dropping a [`TestApp`] waits for its server to stop (the app's own drain deadline,
/// `SHUTDOWN_TIMEOUT_MS`, is 4 s, plus the click drain).
const STOP_WITHIN: Duration = Duration::from_secs(15);

/// An empty PostgreSQL database for one test, dropped (`WITH (FORCE)`) when the last clone
/// goes: at the end of the test, passed or panicked. Clones share it, so several apps can
/// serve one database like instances of one deployment.
#[derive(Clone)]
pub struct TestDatabase(std::sync::Arc<DatabaseName>);

struct DatabaseName {
    name: String,
    url: String,
}

impl TestDatabase {
    /// Creates the database (earlier runs' leftovers are dropped once per test binary).
    pub async fn create() -> TestDatabase {
        let admin = PgPoolOptions::new()
            .max_connections(2)
            .connect_with(admin_connect_options())
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
        let url = with_database(&admin_database_url(), &name);
        TestDatabase(std::sync::Arc::new(DatabaseName { name, url }))
    }

    pub fn url(&self) -> &str {
        &self.0.url
    }
}

impl Drop for DatabaseName {
    /// `Drop` cannot await and may run inside the test's runtime, so the `DROP DATABASE` runs
    /// on a thread of its own with a runtime of its own, joined here.
    fn drop(&mut self) {
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime for DROP DATABASE");
            rt.block_on(async {
                let admin = PgPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(admin_connect_options())
                    .await?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .execute(&admin)
                    .await?;
                admin.close().await;
                Ok::<_, sqlx::Error>(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            // Not fatal: the next run drops every `bl_test_%` database it finds.
            eprintln!("could not drop test database {}", self.name);
        }
    }
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

/// What [`TestAppBuilder::start`] waits for before handing the app to the test.
#[derive(Clone, Copy)]
enum WaitFor {
    /// `/ready` answers 200: PostgreSQL reachable and migrated.
    Ready,
    /// `/health` answers at all.
    AnyHealthAnswer,
}

/// An in-process `boltlink-api` with its own database and key prefix.
///
/// The server runs on a thread with a runtime of its own, so dropping the app (at the end of
/// the test, or while a failed test unwinds) can trigger its shutdown and *wait* for it, with
/// a bound, without an `.await`; the test's database goes after the server has stopped. Tests
/// that stop the app on purpose mid-test call [`TestApp::stop`].
pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub client: reqwest::Client,
    /// The test's own pool, on the real database (not through any proxy the app is given).
    pub db: PgPool,
    pub store: Store,
    /// The database URL the app was given (a proxy's, when the test put one in between).
    pub database_url: String,
    pub redis_url: String,
    pub prefix: String,
    /// This app's key names (`app.keys.click_stream()`), as the app builds them.
    pub keys: Keys,
    /// The test's own connection for inspecting this test's keys (for a `degraded` app, to
    /// the harness's Redis, since the app's may be unreachable).
    pub redis: Conn,
    server: Option<ServerThread>,
    /// Dropped after the server has stopped (see `Drop`).
    _database: Option<TestDatabase>,
}

/// The app's thread: its shutdown trigger, and the channel it reports its end on.
struct ServerThread {
    shutdown: Shutdown,
    /// In a mutex only so that `TestApp` stays `Sync` (tests share `&app` across tasks).
    finished: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
    thread: std::thread::JoinHandle<()>,
}

impl ServerThread {
    fn spawn(config: Config, listener: std::net::TcpListener) -> ServerThread {
        let shutdown = Shutdown::new();
        let (tx, finished) = std::sync::mpsc::channel();
        let stop = shutdown.clone();
        let thread = std::thread::Builder::new()
            .name("test-app".to_string())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("the test app's runtime");
                let _ = rt.block_on(boltlink::api::run(config, listener, stop));
                // Whatever the server left behind (detached tasks) goes with its runtime.
                rt.shutdown_timeout(Duration::from_secs(1));
                let _ = tx.send(());
            })
            .expect("spawn the test app's thread");
        ServerThread {
            shutdown,
            finished: std::sync::Mutex::new(finished),
            thread,
        }
    }

    /// Triggers the shutdown and waits (blocking, bounded) until the server has stopped.
    fn stop_blocking(self) {
        self.shutdown.trigger();
        let finished = self
            .finished
            .into_inner()
            .unwrap_or_else(|p| p.into_inner());
        match finished.recv_timeout(STOP_WITHIN) {
            Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                let _ = self.thread.join();
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                // A second panic while unwinding would abort the whole test binary.
                if std::thread::panicking() {
                    eprintln!("the test app did not stop within {STOP_WITHIN:?}");
                } else {
                    panic!("the test app did not stop within {STOP_WITHIN:?}");
                }
            }
        }
    }
}

/// Builds a [`TestApp`]: `TestApp::builder().set("X", "1").start().await`. By default the app
/// gets a fresh database, the harness's Redis, a fresh key prefix and [`config_map`]'s base
/// configuration, and is handed over once `/ready` answers 200.
#[must_use]
pub struct TestAppBuilder {
    database: Option<TestDatabase>,
    app_database_url: Option<String>,
    redis_url: Option<String>,
    prefix: Option<String>,
    settings: Vec<(String, String)>,
    wait: WaitFor,
}

impl TestAppBuilder {
    /// One configuration variable; later settings win.
    pub fn set(mut self, name: &str, value: &str) -> Self {
        self.settings.push((name.to_string(), value.to_string()));
        self
    }

    /// Several configuration variables; later settings win.
    pub fn config(mut self, settings: &[(&str, &str)]) -> Self {
        for (name, value) in settings {
            self = self.set(name, value);
        }
        self
    }

    /// Serves this database (shared with whoever holds a clone) instead of a fresh one.
    pub fn database(mut self, database: TestDatabase) -> Self {
        self.database = Some(database);
        self
    }

    /// Gives the app this database URL (a proxy in front of the test's database, or an
    /// unreachable address) while the test's own pool keeps using the real database.
    pub fn app_database_url(mut self, url: impl Into<String>) -> Self {
        self.app_database_url = Some(url.into());
        self
    }

    /// Gives the app this Redis (a private or unreachable one) instead of the harness's.
    pub fn redis(mut self, url: impl Into<String>) -> Self {
        self.redis_url = Some(url.into());
        self
    }

    /// Uses this key prefix, so several apps share one key space like instances of one
    /// deployment. Give each a distinct `BOLTLINK_INSTANCE` (the default is derived from the
    /// pid, which every in-process app shares).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// For an app whose PostgreSQL or Redis is unreachable from the start: waits only until
    /// `/health` answers at all (whatever its status), and opens the test's own Redis
    /// connection (`app.redis`) to the harness's `REDIS_URL` rather than to the app's.
    pub fn degraded(mut self) -> Self {
        self.wait = WaitFor::AnyHealthAnswer;
        self
    }

    pub async fn start(self) -> TestApp {
        init_tracing();
        let database = match self.database {
            Some(db) => db,
            None => TestDatabase::create().await,
        };
        let database_url = self
            .app_database_url
            .unwrap_or_else(|| database.url().to_string());
        let redis_url = self.redis_url.unwrap_or_else(redis_url);
        let inspect_redis_url = match self.wait {
            WaitFor::Ready => redis_url.clone(),
            WaitFor::AnyHealthAnswer => crate::support::redis_url(),
        };
        let prefix = self.prefix.unwrap_or_else(new_prefix);
        let settings: Vec<(&str, &str)> = self
            .settings
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let map = config_map(&database_url, &redis_url, &prefix, &settings);
        let config = Config::from_map(&map).expect("test config is valid");
        // Bound before the server starts: the address is known and no sleep is needed.
        let listener =
            boltlink::daemon::systemd::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let server = ServerThread::spawn(config, listener);
        let db = PgPoolOptions::new()
            .max_connections(3)
            .connect_lazy(database.url())
            .expect("pool");
        let redis = redis_connection(&inspect_redis_url).await;
        let keys = redis_keys(&redis_url, &prefix);
        let app = TestApp {
            addr,
            base: format!("http://{addr}"),
            client: http_client(),
            store: Store::from_pool(db.clone()),
            db,
            database_url,
            redis_url,
            prefix,
            keys,
            redis,
            server: Some(server),
            _database: Some(database),
        };
        match self.wait {
            WaitFor::Ready => app.wait_until_serving().await,
            WaitFor::AnyHealthAnswer => app.wait_until_answering().await,
        }
        app
    }
}

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

impl TestApp {
    pub fn builder() -> TestAppBuilder {
        TestAppBuilder {
            database: None,
            app_database_url: None,
            redis_url: None,
            prefix: None,
            settings: Vec::new(),
            wait: WaitFor::Ready,
        }
    }

    /// `TestApp::builder().start()`: the defaults.
    pub async fn start() -> TestApp {
        Self::builder().start().await
    }

    /// Two instances of one deployment, named `a` and `b` (`BOLTLINK_INSTANCE`): one
    /// database, one key prefix.
    pub async fn two_instances(a: &str, b: &str) -> (TestApp, TestApp) {
        let database = TestDatabase::create().await;
        let prefix = new_prefix();
        let first = Self::builder()
            .database(database.clone())
            .prefix(&prefix)
            .set("BOLTLINK_INSTANCE", a)
            .start()
            .await;
        let second = Self::builder()
            .database(database)
            .prefix(prefix)
            .set("BOLTLINK_INSTANCE", b)
            .start()
            .await;
        (first, second)
    }

    /// Stops the server on purpose (mid-test) and waits for it; dropping the app does the
    /// same at the end of a test.
    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            tokio::task::spawn_blocking(move || server.stop_blocking())
                .await
                .expect("stopping the test app");
        }
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
            .arg(self.keys.click_stream())
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
            .arg(self.keys.click_stream())
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
                let mut click: HashMap<String, String> = event
                    .fields()
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect();
                if let Some(url) = &event.rule_url {
                    click.insert("url".to_string(), url.clone());
                }
                clicks.push(click);
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
}

impl Drop for TestApp {
    /// Stops the server and waits for it (bounded), then lets the database go.
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop_blocking();
        }
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
    case_error("", resp, status).await
}

/// [`error_message`] for one case of a table: a failure names the case.
pub async fn case_error(case: &str, resp: reqwest::Response, status: u16) -> String {
    let got = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or_else(|e| {
        panic!("{case}: answered {got}, expected {status}, and the error body is not JSON: {e}")
    });
    assert_eq!(got, status, "{case}: unexpected status, body {body}");
    body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{case}: error field is a string: {body}"))
        .to_string()
}

/// What a refusal's error message must say, in a table of cases.
#[derive(Clone, Copy, Debug)]
pub enum Says<'a> {
    /// The message names this (a field, a limit, a word).
    Mentions(&'a str),
    /// The message is exactly this.
    Exactly(&'a str),
}

impl Says<'_> {
    pub fn check(self, case: &str, message: &str) {
        match self {
            Says::Mentions(part) => assert!(
                message.contains(part),
                "{case}: the message {message:?} mentions {part:?}"
            ),
            Says::Exactly(expected) => assert_eq!(message, expected, "{case}"),
        }
    }
}

/// Real `boltlink-api` processes on one inherited socket (the `LISTEN_FDS` protocol systemd
/// uses), like `scripts/run` and the units start them.
pub struct Suite {
    pub base: String,
    pub children: Vec<Child>,
    _listener: std::net::TcpListener,
    /// Dropped after the processes are killed (see `Drop`).
    _database: TestDatabase,
}

impl Suite {
    pub fn start(instances: usize, database: &TestDatabase, prefix: &str) -> Suite {
        Self::start_with(instances, database, prefix, &[])
    }

    /// [`Suite::start`] with extra configuration for every process (`envs` win).
    pub fn start_with(
        instances: usize,
        database: &TestDatabase,
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
                cmd.env("DATABASE_URL", database.url())
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
            _database: database.clone(),
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

/// The click pipeline's binaries, for tests that run them as processes.
pub const WORKER_BIN: &str = env!("CARGO_BIN_EXE_boltlink-worker");
pub const AGGREGATOR_BIN: &str = env!("CARGO_BIN_EXE_boltlink-aggregator");

/// A desktop browser's User-Agent: its clicks are counted (bots' are stored, not counted).
pub const BROWSER_UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0 Safari/537.36";

/// The environment of a worker or aggregator process on `database_url` and `redis_url`
/// under `prefix`, reading every 100 ms; `extra` settings are added last.
pub fn pipeline_env(
    database_url: &str,
    redis_url: &str,
    prefix: &str,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    [
        ("DATABASE_URL", database_url),
        ("REDIS_URL", redis_url),
        ("REDIS_KEY_PREFIX", prefix),
        ("BOLTLINK_ENV_FILE", "/dev/null"),
        ("LOG_LEVEL", "warn"),
        ("PIPELINE_POLL_MS", "100"),
    ]
    .iter()
    .chain(extra)
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// A client that visits as a browser: redirects are not followed, and its clicks count.
pub fn browser_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(BROWSER_UA)
        // A bound against a hang, not a timing check.
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// Creates a link through a suite's socket and returns its JSON.
pub async fn shorten_on(client: &reqwest::Client, suite: &Suite, key: &str, body: Value) -> Value {
    let resp = client
        .post(suite.url("/api/shorten"))
        .header("x-api-key", key)
        .json(&body)
        .send()
        .await
        .expect("shorten");
    assert_eq!(resp.status(), 201, "shorten answers 201");
    resp.json().await.expect("link JSON")
}

/// A client that opens a new connection per request, so the kernel spreads requests over
/// every process accepting on the shared socket.
pub fn fresh_connection_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        // A bound against a hang, not a timing check: CI hosts stall for seconds at times
        // (a 5 s bound once failed a 30-request burst there).
        .timeout(Duration::from_secs(30))
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

// ---------------------------------------------------------------------------------------------
// Typed request helpers, declared once for every module
// ---------------------------------------------------------------------------------------------

/// The URL links are created for when a test does not care where they go.
pub const TARGET: &str = "https://example.com/landing?from=boltlink";

/// The `shortCode` of a link object.
pub fn code_of(link: &Value) -> String {
    link["shortCode"]
        .as_str()
        .unwrap_or_else(|| panic!("shortCode is a string: {link}"))
        .to_string()
}

/// The `id` of a link or campaign object.
pub fn id_of(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("id is a string: {v}"))
        .to_string()
}

/// `v` is a JSON object with exactly the fields `expected` (a `what`: link, campaign).
pub fn assert_fields(v: &Value, expected: &[&str], what: &str) {
    let keys: std::collections::BTreeSet<&str> = v
        .as_object()
        .unwrap_or_else(|| panic!("a {what} is a JSON object: {v}"))
        .keys()
        .map(String::as_str)
        .collect();
    let expected: std::collections::BTreeSet<&str> = expected.iter().copied().collect();
    assert_eq!(keys, expected, "{what} object fields: {v}");
}

/// A header that must be present and hold a whole number.
pub fn header_number(resp: &reqwest::Response, name: &str) -> u64 {
    resp.headers()
        .get(name)
        .unwrap_or_else(|| panic!("{name} header present"))
        .to_str()
        .expect("header is text")
        .parse()
        .unwrap_or_else(|e| panic!("{name} is a number: {e}"))
}

/// A finished process's exit code and output, for assertion messages.
pub fn output_text(out: &std::process::Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// What `links.clicks`, the rollups and the raw events add up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClickTotals {
    /// `sum(links.clicks)`.
    pub links: i64,
    /// `sum(click_rollups_hourly.clicks)` (the all-time and daily rollups are asserted equal).
    pub rollups: i64,
    /// `sum(click_rollups_hourly.gated)` (the all-time rollup is asserted equal).
    pub gated: i64,
    /// `count(click_events)`.
    pub raw: i64,
}

impl TestApp {
    /// `GET path` with an API key.
    pub fn get_with_key(&self, path: &str, key: &str) -> reqwest::RequestBuilder {
        self.get(path).header("x-api-key", key)
    }

    /// `PATCH path` with an API key and a JSON body.
    pub fn patch_json(&self, path: &str, key: &str, body: Value) -> reqwest::RequestBuilder {
        self.client
            .patch(self.url(path))
            .header("x-api-key", key)
            .json(&body)
    }

    /// `DELETE path` with an API key.
    pub fn delete_with_key(&self, path: &str, key: &str) -> reqwest::RequestBuilder {
        self.client.delete(self.url(path)).header("x-api-key", key)
    }

    /// `GET path` (optionally with a key): the status and the JSON body.
    pub async fn get_json(&self, path: &str, key: Option<&str>) -> (u16, Value) {
        let mut req = self.get(path);
        if let Some(key) = key {
            req = req.header("x-api-key", key);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let body = resp.json().await.expect("body is JSON");
        (status, body)
    }

    /// `GET path` with a key, asserting 200: the JSON body.
    pub async fn get_ok_json(&self, path: &str, key: &str) -> Value {
        let (status, body) = self.get_json(path, Some(key)).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// Creates a link to [`TARGET`] with `extra` fields (an `url` in `extra` wins) and returns
    /// its JSON.
    pub async fn create_link(&self, key: &str, extra: Value) -> Value {
        let mut body = serde_json::json!({ "url": TARGET });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        self.shorten(key, body).await
    }

    /// `PATCH /api/settings/developer/webhook` with a JSON body.
    pub async fn set_webhook(&self, key: &str, body: Value) -> reqwest::Response {
        self.patch_json("/api/settings/developer/webhook", key, body)
            .send()
            .await
            .expect("webhook")
    }

    /// The key's webhook URL as its developer settings show it (`null` when none).
    pub async fn stored_webhook(&self, key: &str) -> Value {
        self.get_ok_json("/api/settings/developer", key).await["webhookUrl"].clone()
    }

    /// `GET path` as a browser would, without following the redirect.
    pub async fn visit(&self, path: &str) -> reqwest::Response {
        self.get(path).send().await.expect("visit")
    }

    /// Sets a link's click counter in PostgreSQL directly.
    pub async fn set_clicks(&self, code: &str, clicks: i64) {
        let done = sqlx::query("UPDATE links SET clicks = $1 WHERE short_code = $2")
            .bind(clicks)
            .bind(code)
            .execute(&self.db)
            .await
            .expect("set clicks");
        assert_eq!(done.rows_affected(), 1, "link {code} exists");
    }

    /// The click totals in PostgreSQL, asserting that the all-time and daily rollups agree
    /// with the hourly ones (they move in one transaction, so one snapshot suffices).
    pub async fn click_totals(&self) -> ClickTotals {
        let links: i64 = sqlx::query_scalar("SELECT COALESCE(sum(clicks), 0)::bigint FROM links")
            .fetch_one(&self.db)
            .await
            .expect("clicks");
        let (rollups, gated, total, total_gated, daily): (i64, i64, i64, i64, i64) =
            sqlx::query_as(
                "SELECT (SELECT COALESCE(sum(clicks), 0)::bigint FROM click_rollups_hourly), \
                 (SELECT COALESCE(sum(gated), 0)::bigint FROM click_rollups_hourly), \
                 (SELECT COALESCE(sum(clicks), 0)::bigint FROM click_rollups_total), \
                 (SELECT COALESCE(sum(gated), 0)::bigint FROM click_rollups_total), \
                 (SELECT COALESCE(sum(clicks), 0)::bigint FROM click_rollups_daily)",
            )
            .fetch_one(&self.db)
            .await
            .expect("rollups");
        assert_eq!(
            (total, total_gated, daily),
            (rollups, gated, rollups),
            "all-time and daily rollups agree with the hourly ones"
        );
        let raw: i64 = sqlx::query_scalar("SELECT count(*) FROM click_events")
            .fetch_one(&self.db)
            .await
            .expect("raw");
        ClickTotals {
            links,
            rollups,
            gated,
            raw,
        }
    }

    /// The sum of every sample of the metric `name` in this app's scrape (0 when absent).
    pub async fn metric(&self, name: &str) -> f64 {
        metric(&parse_metrics(&self.metrics_text().await), name, &[]).unwrap_or(0.0)
    }
}

/// One sample line of a Prometheus text scrape.
#[derive(Debug)]
pub struct MetricSample {
    pub name: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub value: f64,
}

/// Parses a Prometheus text scrape into samples.
pub fn parse_metrics(text: &str) -> Vec<MetricSample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .unwrap_or_else(|| panic!("sample line without value: {line}"));
        let name = line[..name_end].to_string();
        let mut labels = std::collections::BTreeMap::new();
        let mut rest = &line[name_end..];
        if let Some(after_brace) = rest.strip_prefix('{') {
            let mut chars = after_brace.char_indices();
            let mut key = String::new();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '}' => {
                        end = Some(i);
                        break;
                    }
                    ',' => {}
                    '=' => {
                        assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line}");
                        let mut value = String::new();
                        loop {
                            match chars.next().map(|(_, c)| c) {
                                Some('"') => break,
                                Some('\\') => match chars.next().map(|(_, c)| c) {
                                    Some('n') => value.push('\n'),
                                    Some(c) => value.push(c),
                                    None => panic!("unterminated label value: {line}"),
                                },
                                Some(c) => value.push(c),
                                None => panic!("unterminated label value: {line}"),
                            }
                        }
                        labels.insert(std::mem::take(&mut key), value);
                    }
                    c => key.push(c),
                }
            }
            let end = end.unwrap_or_else(|| panic!("unterminated labels: {line}"));
            rest = &after_brace[end + 1..];
        }
        let value = rest
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("sample value is a number: {line}"));
        out.push(MetricSample {
            name,
            labels,
            value,
        });
    }
    out
}

/// Sum of the samples of `name` whose labels include all of `labels`; `None` when none match.
pub fn metric(samples: &[MetricSample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .collect();
    (!matching.is_empty()).then(|| matching.iter().sum())
}

/// A collection of the API (`/api/links`, `/api/campaigns`): requests on one item by id.
pub struct Collection<'a> {
    app: &'a TestApp,
    path: &'static str,
}

impl TestApp {
    /// `/api/links/{id}`.
    pub fn links(&self) -> Collection<'_> {
        Collection {
            app: self,
            path: "/api/links",
        }
    }

    /// `/api/campaigns/{id}`.
    pub fn campaigns(&self) -> Collection<'_> {
        Collection {
            app: self,
            path: "/api/campaigns",
        }
    }
}

impl Collection<'_> {
    fn item(&self, id: &str) -> String {
        format!("{}/{id}", self.path)
    }

    pub fn get(&self, key: &str, id: &str) -> reqwest::RequestBuilder {
        self.app.get_with_key(&self.item(id), key)
    }

    pub fn patch(&self, key: &str, id: &str, body: Value) -> reqwest::RequestBuilder {
        self.app.patch_json(&self.item(id), key, body)
    }

    pub fn delete(&self, key: &str, id: &str) -> reqwest::RequestBuilder {
        self.app.delete_with_key(&self.item(id), key)
    }

    /// `GET`, `PATCH` (with `patch`) and `DELETE` of the item each answer `status` with the
    /// error `message`; a failure names the request.
    pub async fn assert_item_routes_refuse(
        &self,
        key: &str,
        id: &str,
        patch: Value,
        status: u16,
        message: &str,
    ) {
        let requests = [
            ("GET", self.get(key, id)),
            ("PATCH", self.patch(key, id, patch)),
            ("DELETE", self.delete(key, id)),
        ];
        for (method, request) in requests {
            let case = format!("{method} {}", self.item(id));
            let resp = request.send().await.expect("request");
            Says::Exactly(message).check(&case, &case_error(&case, resp, status).await);
        }
    }

    /// `PATCH`es the item, asserting 200: the updated JSON.
    pub async fn patch_ok(&self, key: &str, id: &str, body: Value) -> Value {
        let resp = self.patch(key, id, body).send().await.expect("patch");
        assert_eq!(resp.status(), 200, "PATCH {}", self.item(id));
        resp.json().await.expect("json")
    }

    /// `DELETE`s the item, asserting 200: the answer's JSON.
    pub async fn delete_ok(&self, key: &str, id: &str) -> Value {
        let resp = self.delete(key, id).send().await.expect("delete");
        assert_eq!(resp.status(), 200, "DELETE {}", self.item(id));
        resp.json().await.expect("json")
    }

    /// The item's JSON, asserting 200.
    pub async fn fetch(&self, key: &str, id: &str) -> Value {
        let resp = self.get(key, id).send().await.expect("get");
        assert_eq!(resp.status(), 200, "GET {}", self.item(id));
        resp.json().await.expect("json")
    }
}

/// The CC0 country database of ip-location-db (`geo-whois-asn-country.mmdb`, `country_code`
/// records), for the tests that check GeoIP against a real database. scripts/test fetches it
/// once (`npm pack`, cached in target/geoip/) and names it in `BOLTLINK_TEST_GEOIP_DB`.
pub fn real_geoip_db() -> String {
    let path = std::env::var("BOLTLINK_TEST_GEOIP_DB").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/target/geoip/geo-whois-asn-country.mmdb"
        )
        .to_string()
    });
    assert!(
        std::path::Path::new(&path).is_file(),
        "this test needs the real GeoIP database at {path}: scripts/test fetches it (npm pack \
         @ip-location-db/geo-whois-asn-country-mmdb into target/geoip/); or run \
         `source scripts/lib/services.sh && bl_fetch_geoip_db target/geoip`, or set \
         BOLTLINK_TEST_GEOIP_DB"
    );
    path
}

/// The peak resident memory (`VmHWM`) of process `pid`, in KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM")
}

/// A `boltlink-worker`, `boltlink-aggregator` or `boltlink-webhooks` process with exactly
/// `env` (nothing inherited), its stderr appended to `log` if given; killed when dropped.
pub struct Daemon {
    bin: &'static str,
    env: Vec<(String, String)>,
    log: Option<String>,
    child: Option<Child>,
}

impl Daemon {
    pub fn start(bin: &'static str, env: Vec<(String, String)>, log: Option<String>) -> Self {
        let mut d = Daemon {
            bin,
            env,
            log,
            child: None,
        };
        d.spawn();
        d
    }

    fn spawn(&mut self) {
        let stderr = match &self.log {
            Some(path) => Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .expect("log file"),
            ),
            None => Stdio::null(),
        };
        let child = Command::new(self.bin)
            .env_clear()
            .envs(self.env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.bin));
        self.child = Some(child);
    }

    /// Sends `signal` (`STOP`, `CONT`, ...) to the process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// SIGKILL, then a new process with the same environment.
    pub fn kill9_and_restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.spawn();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Whether the file at `path` (a [`Daemon`]'s log) has a line containing `needle`.
pub fn logged(path: &Path, needle: &str) -> bool {
    std::fs::read_to_string(path).is_ok_and(|log| log.contains(needle))
}

/// Ends the PostgreSQL session holding an advisory lock in `pool`'s database (the aggregator's
/// or the webhook sender's singleton lock), as a restart of the primary would, asserting it
/// was the only one.
pub async fn end_the_lock_holders_session(pool: &PgPool) {
    let ended: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_locks \
         WHERE locktype = 'advisory' AND granted \
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_all(pool)
    .await
    .expect("terminate the lock's session");
    assert_eq!(ended, vec![true], "one session held the lock");
}

//! A restart of the PostgreSQL primary under redirect load (issue 17): the primary is a
//! private cluster of this test's own ([`PrivatePrimary`]), so restarting it touches no other
//! test. Two `boltlink-api` processes, `boltlink-worker` and `boltlink-aggregator` run on it
//! while browsers follow cached links; the primary goes through a real `pg_ctl restart -m
//! fast`, then an immediate stop (a crash: no shutdown checkpoint, crash recovery on start)
//! and a start. The promise ("Degraded modes"): redirects of cached links never fail, the
//! clicks wait in the stream while PostgreSQL is away, and afterwards every answered click
//! is counted exactly once by the same consumer processes, with no restart.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use boltlink::redis::keys::Keys;
use futures_util::StreamExt;
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;

use crate::fixtures::PrivateRedis;
use crate::support::{
    browser_client, code_of, create_key, eventually, fresh_connection_client, new_prefix,
    pipeline_env, shorten_on, Daemon, Suite, TestDatabase, AGGREGATOR_BIN, WORKER_BIN,
};

/// A throwaway PostgreSQL cluster (`initdb` from `BOLTLINK_PG_BIN`) on a port of its own, with
/// trust authentication on 127.0.0.1. As root, every `initdb`/`pg_ctl` runs as `postgres`
/// (PostgreSQL refuses root). Stopped (immediately) and removed when dropped.
struct PrivatePrimary {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    as_root: bool,
}

impl PrivatePrimary {
    fn start() -> PrivatePrimary {
        let bin = PathBuf::from(std::env::var("BOLTLINK_PG_BIN").expect(
            "BOLTLINK_PG_BIN must name PostgreSQL's bin directory with initdb and pg_ctl \
             (scripts/test sets it)",
        ));
        let dir = std::env::temp_dir().join(format!("bl-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(dir.join("run")).expect("cluster directory");
        let uid = Command::new("id").arg("-u").output().expect("id -u");
        let as_root = String::from_utf8_lossy(&uid.stdout).trim() == "0";
        if as_root {
            let chown = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .expect("chown");
            assert!(chown.success(), "chown {dir:?} to postgres");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let primary = PrivatePrimary {
            bin,
            dir,
            port,
            as_root,
        };
        let data = primary.data();
        primary.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-locale",
                "--auth=trust",
                "--no-sync",
            ],
        );
        // fsync off: a stop in immediate mode is a crash of PostgreSQL, not of the machine;
        // what it wrote is in the page cache, and crash recovery replays it from there.
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
             fsync = off\nmax_connections = 100\n",
            primary.dir.join("run").display()
        );
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(format!("{data}/postgresql.conf"))
            .expect("postgresql.conf");
        std::io::Write::write_all(&mut file, conf.as_bytes()).expect("write postgresql.conf");
        primary.start_again();
        primary
    }

    /// The application's URL: the superuser's `postgres` database (this cluster serves one test).
    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn log(&self) -> String {
        self.dir.join("postgres.log").display().to_string()
    }

    /// `program` of `BOLTLINK_PG_BIN`, as `postgres` when root, in `/` (the postgres user may
    /// not be able to resolve the test's working directory).
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        let mut cmd = if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        cmd.current_dir("/");
        cmd
    }

    /// Runs `program` of `BOLTLINK_PG_BIN` (see [`Self::command`]), asserting success.
    fn run(&self, program: &str, args: &[&str]) {
        let out = self
            .command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run {program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?}: {}\nserver log: {}",
            crate::support::output_text(&out),
            std::fs::read_to_string(self.log()).unwrap_or_default()
        );
    }

    /// Starts the server and waits until it accepts connections (after crash recovery, if any).
    fn start_again(&self) {
        let (data, log) = (self.data(), self.log());
        self.run(
            "pg_ctl",
            &["-D", &data, "-l", &log, "-w", "-t", "60", "start"],
        );
    }

    /// `pg_ctl restart -m fast`: sessions are disconnected, a shutdown checkpoint, a new start.
    fn restart_fast(&self) {
        let (data, log) = (self.data(), self.log());
        self.run(
            "pg_ctl",
            &[
                "-D", &data, "-l", &log, "-m", "fast", "-w", "-t", "60", "restart",
            ],
        );
    }

    /// `pg_ctl stop -m immediate`: every server process quits at once, as in a crash.
    fn stop_immediately(&self) {
        let data = self.data();
        self.run(
            "pg_ctl",
            &["-D", &data, "-m", "immediate", "-w", "-t", "60", "stop"],
        );
    }
}

impl Drop for PrivatePrimary {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["-D", &self.data(), "-m", "immediate", "-w", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Where the primary was while a redirect was answered.
#[derive(Clone, Copy, Debug)]
enum Phase {
    Before,
    FastRestart,
    Between,
    /// From the immediate stop until the start has returned (PostgreSQL is down).
    Down,
    After,
}

const PHASES: [Phase; 5] = [
    Phase::Before,
    Phase::FastRestart,
    Phase::Between,
    Phase::Down,
    Phase::After,
];

/// Redirects answered 302 and otherwise, per [`Phase`].
#[derive(Default)]
struct Answers {
    found: [AtomicU64; 5],
    failed: [AtomicU64; 5],
    /// The first few failures, for the assertion message.
    failures: std::sync::Mutex<Vec<String>>,
}

impl Answers {
    fn total_found(&self) -> u64 {
        self.found.iter().map(|n| n.load(Ordering::Relaxed)).sum()
    }

    fn table(&self) -> String {
        PHASES
            .iter()
            .enumerate()
            .map(|(i, p)| {
                format!(
                    "{p:?}: {} found, {} failed",
                    self.found[i].load(Ordering::Relaxed),
                    self.failed[i].load(Ordering::Relaxed)
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Browsers following the cached links in turn until the scenario ends, each at most once
/// per `PACE` (a bound, so that the suite's other tests keep some CPU), `MAX_REDIRECTS` in all.
const CLIENTS: usize = 8;
const PACE: Duration = Duration::from_millis(1);
const MAX_REDIRECTS: u64 = 300_000;

/// `links.clicks` summed, the hourly rollups summed and the raw events, on the private primary.
async fn counted(pool: &sqlx::PgPool) -> Result<(i64, i64, i64), sqlx::Error> {
    sqlx::query_as(
        "SELECT (SELECT COALESCE(sum(clicks), 0)::bigint FROM links), \
         (SELECT COALESCE(sum(clicks), 0)::bigint FROM click_rollups_hourly), \
         (SELECT count(*) FROM click_events)",
    )
    .fetch_one(pool)
    .await
}

/// Stream entries a consumer group has not acknowledged: delivered and pending, plus not yet
/// delivered (`lag`; nil when Redis cannot tell, taken as 0).
async fn unacknowledged(
    redis: &mut redis::aio::MultiplexedConnection,
    stream: &str,
    group: &str,
) -> i64 {
    let groups: Vec<HashMap<String, redis::Value>> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(stream)
        .query_async(redis)
        .await
        .expect("XINFO GROUPS");
    let number = |g: &HashMap<String, redis::Value>, field: &str| -> i64 {
        g.get(field)
            .and_then(|v| redis::from_redis_value::<Option<i64>>(v).ok().flatten())
            .unwrap_or(0)
    };
    groups
        .iter()
        .find(|g| {
            g.get("name")
                .and_then(|v| redis::from_redis_value::<String>(v).ok())
                .as_deref()
                == Some(group)
        })
        .map(|g| number(g, "pending") + number(g, "lag"))
        .unwrap_or_else(|| panic!("consumer group {group} exists on {stream}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_of_the_primary_fails_no_cached_redirect_and_every_answered_click_is_counted_once(
) {
    let primary = PrivatePrimary::start();
    // A Redis of its own too: this test is about PostgreSQL, whatever Redis the suite runs on.
    let redis_server = PrivateRedis::start();
    let redis_url = redis_server.url();
    let prefix = new_prefix();
    let keys = Keys::new(&prefix, false);
    // The suite holds a database of the shared server for its lifetime; the processes are
    // given the private primary and Redis instead (`start_with`'s settings win).
    let unused = TestDatabase::create().await;
    let database_url = primary.url();
    let mut suite = Suite::start_with(
        2,
        &unused,
        &prefix,
        &[
            ("DATABASE_URL", &database_url),
            ("REDIS_URL", &redis_url),
            ("RATE_LIMIT_REDIRECT_PER_MIN", "100000000"),
            ("LOG_LEVEL", "error"),
        ],
    );
    suite.wait_until_all_serve().await;
    let log = std::env::var("PRIMARY_RESTART_LOG").ok();
    let env = pipeline_env(&database_url, &redis_url, &prefix, &[]);
    let worker = Daemon::start(WORKER_BIN, env.clone(), log.clone());
    let aggregator = Daemon::start(AGGREGATOR_BIN, env.clone(), log.clone());
    // A standby aggregator, as every host of a fleet runs one (docs/DEPLOYMENT.md): when the
    // restart ends the first one's session, and with it the lock, the standby takes the lock
    // and the first one may not count any more.
    let standby = Daemon::start(AGGREGATOR_BIN, env, log);

    // The links the load follows, cached before the primary goes. A create invalidates its
    // code twice, at once and a second later (`AppState::invalidate_links`), so each link is
    // followed once only after its second invalidation, and then until Redis holds it. (The
    // first version of this test followed them in between: the second invalidation emptied
    // the caches as the fast restart began, and those lookups, uncached, answered 503.)
    let key = create_key(&database_url).await;
    let browser = browser_client();
    let mut invalidations = redis::Client::open(redis_url.as_str())
        .expect("redis url")
        .get_async_pubsub()
        .await
        .expect("the test's Redis subscription");
    invalidations
        .subscribe(keys.invalidation_channel())
        .await
        .expect("subscribe to invalidations");
    let mut codes = Vec::new();
    for i in 0..5 {
        let body = json!({"url": format!("https://example.com/primary/{i}")});
        codes.push(code_of(&shorten_on(&browser, &suite, &key, body).await));
    }
    let mut seen: HashMap<String, u32> = HashMap::new();
    let twice = tokio::time::timeout(Duration::from_secs(10), async {
        let mut messages = invalidations.on_message();
        while codes.iter().any(|c| seen.get(c).copied().unwrap_or(0) < 2) {
            let message = messages.next().await.expect("the subscription stays open");
            let code: String = message.get_payload().expect("a code");
            *seen.entry(code).or_default() += 1;
        }
    })
    .await;
    assert!(
        twice.is_ok(),
        "each new code is invalidated twice within 10 s: {seen:?}"
    );
    let redis = redis::Client::open(redis_url.as_str())
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("the test's Redis connection");
    let mut paths = Vec::new();
    for code in &codes {
        let resp = browser
            .get(suite.url(&format!("/{code}")))
            .send()
            .await
            .expect("first visit");
        assert_eq!(resp.status(), 302, "first visit of {code}");
        paths.push(format!("/{code}"));
        let cached = keys.link(code);
        eventually(Duration::from_secs(10), || {
            let (mut redis, cached) = (redis.clone(), cached.clone());
            async move {
                redis::cmd("EXISTS")
                    .arg(&cached)
                    .query_async::<i64>(&mut redis)
                    .await
                    == Ok(1)
            }
        })
        .await;
    }
    let first_visits = paths.len() as u64;

    // The load: CLIENTS browsers, each on its own keep-alive connection (so both processes
    // answer), counting every answer under the phase it was answered in.
    let answers = Arc::new(Answers::default());
    let phase = Arc::new(AtomicUsize::new(Phase::Before as usize));
    let stop = Arc::new(AtomicBool::new(false));
    let issued = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (answers, phase, stop, issued) =
            (answers.clone(), phase.clone(), stop.clone(), issued.clone());
        let urls: Vec<String> = paths.iter().map(|p| suite.url(p)).collect();
        clients.push(tokio::spawn(async move {
            let client = browser_client();
            let mut pace = tokio::time::interval(PACE);
            pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n = c;
            while !stop.load(Ordering::Relaxed)
                && issued.fetch_add(1, Ordering::Relaxed) < MAX_REDIRECTS
            {
                pace.tick().await;
                n += 1;
                let result = client.get(&urls[n % urls.len()]).send().await;
                let at = phase.load(Ordering::Relaxed);
                match result {
                    Ok(r) if r.status() == 302 => {
                        answers.found[at].fetch_add(1, Ordering::Relaxed);
                    }
                    other => {
                        answers.failed[at].fetch_add(1, Ordering::Relaxed);
                        let what = match other {
                            Ok(r) => {
                                format!("{} {}", r.status(), r.text().await.unwrap_or_default())
                            }
                            Err(e) => format!("{e}"),
                        };
                        let mut failures = answers.failures.lock().expect("failures");
                        if failures.len() < 5 {
                            failures.push(format!("{:?}: {what}", PHASES[at]));
                        }
                    }
                }
            }
        }));
    }
    let set_phase = |p: Phase| phase.store(p as usize, Ordering::Relaxed);
    let ready = || async {
        let client = fresh_connection_client();
        eventually(Duration::from_secs(30), || async {
            matches!(client.get(suite.url("/ready")).send().await, Ok(r) if r.status() == 200)
        })
        .await;
    };
    tokio::time::sleep(Duration::from_secs(1)).await;

    // 1. `pg_ctl restart -m fast`, with the load running.
    set_phase(Phase::FastRestart);
    let restarted = Instant::now();
    let primary = tokio::task::spawn_blocking(move || {
        primary.restart_fast();
        primary
    })
    .await
    .expect("fast restart");
    set_phase(Phase::Between);
    ready().await;
    let fast_ready_after = restarted.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;

    // 2. A crash: immediate stop, then a start (crash recovery).
    set_phase(Phase::Down);
    let primary = tokio::task::spawn_blocking(move || {
        primary.stop_immediately();
        primary
    })
    .await
    .expect("immediate stop");
    let stopped = Instant::now();
    // While it is down, /health says so and names nothing else ...
    let health = fresh_connection_client();
    let deadline = Instant::now() + Duration::from_secs(15);
    let down_health = loop {
        if let Ok(r) = health.get(suite.url("/health")).send().await {
            if r.status() == 503 {
                let body: Value = r.json().await.expect("health JSON");
                if body["checks"]["database"] == "failing" {
                    break body;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "/health did not report the database down within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(down_health["status"], "unhealthy", "{down_health}");
    assert_eq!(down_health["checks"]["redis"], "ok", "{down_health}");
    // ... and clicks wait in the stream, unacknowledged by either consumer.
    let stream = keys.click_stream();
    let deadline = Instant::now() + Duration::from_secs(15);
    let waiting = loop {
        let waiting = (
            unacknowledged(&mut redis.clone(), &stream, "worker").await,
            unacknowledged(&mut redis.clone(), &stream, "aggregator").await,
        );
        if waiting.0 > 0 && waiting.1 > 0 {
            break waiting;
        }
        assert!(
            Instant::now() < deadline,
            "no clicks waiting in the stream while PostgreSQL is down: {waiting:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    // Down for a while longer than any single retry of the consumers.
    if let Some(rest) = Duration::from_millis(1500).checked_sub(stopped.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    let primary = tokio::task::spawn_blocking(move || {
        primary.start_again();
        primary
    })
    .await
    .expect("start after the crash");
    let down_for = stopped.elapsed();
    set_phase(Phase::After);
    let started = Instant::now();
    ready().await;
    let crash_ready_after = started.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;

    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.expect("client task");
    }
    let table = answers.table();
    eprintln!(
        "primary restart: {table}; ready {fast_ready_after:?} after the fast restart began, \
         {crash_ready_after:?} after the start that followed {down_for:?} down; waiting in the \
         stream while down (worker, aggregator entries): {waiting:?}"
    );
    let failed: u64 = answers
        .failed
        .iter()
        .map(|n| n.load(Ordering::Relaxed))
        .sum();
    assert_eq!(
        failed,
        0,
        "no redirect of a cached link may fail while the primary restarts: {table}; first \
         failures: {:?}",
        answers.failures.lock().expect("failures")
    );
    for p in [Phase::FastRestart, Phase::Down, Phase::After] {
        assert!(
            answers.found[p as usize].load(Ordering::Relaxed) > 0,
            "the load ran during {p:?}: {table}"
        );
    }
    assert!(
        issued.load(Ordering::Relaxed) < MAX_REDIRECTS,
        "the load ran until the end of the scenario: {table}"
    );

    // Every answered click counted exactly once, by the same consumer processes.
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect_lazy(&database_url)
        .expect("pool");
    let expected = (first_visits + answers.total_found()) as i64;
    let drain_started = Instant::now();
    let drained = |expected: i64| {
        let pool = pool.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let now = counted(&pool).await.expect("totals");
                if now == (expected, expected, expected) {
                    return;
                }
                assert!(
                    now.0 <= expected && now.1 <= expected && now.2 <= expected,
                    "over-counted: (links.clicks, rollups, raw events) = {now:?}, expected \
                     {expected} each"
                );
                assert!(
                    Instant::now() < deadline,
                    "not drained within 60 s: (links.clicks, rollups, raw events) = {now:?}, \
                     expected {expected} each"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    drained(expected).await;
    let drain_took = drain_started.elapsed();
    eventually(Duration::from_secs(15), || async {
        unacknowledged(&mut redis.clone(), &stream, "worker").await == 0
            && unacknowledged(&mut redis.clone(), &stream, "aggregator").await == 0
    })
    .await;

    // Healthy again without a restart: new clicks still flow through both consumers.
    for i in 0..20 {
        let resp = browser
            .get(suite.url(&paths[i % paths.len()]))
            .send()
            .await
            .expect("visit after the restarts");
        assert_eq!(resp.status(), 302);
    }
    drained(expected + 20).await;
    let (status, body) = {
        let r = fresh_connection_client()
            .get(suite.url("/health"))
            .send()
            .await
            .expect("health");
        (r.status(), r.json::<Value>().await.expect("health JSON"))
    };
    assert_eq!(status, 200, "{body}");
    for child in &mut suite.children {
        assert!(
            matches!(child.try_wait(), Ok(None)),
            "every boltlink-api process still runs"
        );
    }
    eprintln!(
        "primary restart: {expected} clicks counted once, drained {drain_took:?} after the load"
    );
    drop(worker);
    drop(aggregator);
    drop(standby);
    drop(suite);
    drop(primary);
    drop(redis_server);
}

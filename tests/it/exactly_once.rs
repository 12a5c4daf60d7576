//! The exactly-once claim, end to end with real processes and real failures: ≥ 20 000
//! redirects with concurrency while boltlink-worker and boltlink-aggregator are each killed
//! with SIGKILL twice at random moments and restarted, Redis is stopped (SIGTERM) and
//! restarted and also killed (SIGKILL) and restarted, and the consumers' PostgreSQL link is
//! cut for a while and, separately, paused (open but silent) for a while. Afterwards `links.clicks`, the rollup totals
//! and the raw event count all equal the number of redirects answered 302.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::json;

use crate::fixtures::{database_socket_addr, database_url_via, CuttableProxy, PrivateRedis};
use crate::support::{Daemon, TestApp, TestDatabase};

const WORKER_BIN: &str = env!("CARGO_BIN_EXE_boltlink-worker");
const AGGREGATOR_BIN: &str = env!("CARGO_BIN_EXE_boltlink-aggregator");
const REDIRECTS: u64 = 20_000;
const CONCURRENCY: usize = 16;
const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0 Safari/537.36";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answered_redirect_is_counted_exactly_once_through_kills_and_outages() {
    let mut redis = PrivateRedis::start();
    let database = TestDatabase::create().await;
    let proxy = CuttableProxy::start(database_socket_addr(database.url())).await;
    let app = TestApp::builder()
        .database(database.clone())
        .redis(redis.url())
        .set("RATE_LIMIT_REDIRECT_PER_MIN", "100000000")
        .set("LOG_LEVEL", "error")
        .start()
        .await;
    let key = app.key(false).await;
    let mut paths = Vec::new();
    for i in 0..10 {
        let link = app
            .shorten(&key, json!({"url": format!("https://example.com/{i}")}))
            .await;
        paths.push(format!("/{}", link["shortCode"].as_str().expect("code")));
    }

    let env: Vec<(String, String)> = [
        ("DATABASE_URL", database_url_via(database.url(), proxy.addr)),
        ("REDIS_URL", redis.url()),
        ("REDIS_KEY_PREFIX", app.prefix.clone()),
        ("BOLTLINK_ENV_FILE", "/dev/null".to_string()),
        (
            "LOG_LEVEL",
            if std::env::var("EXACTLY_ONCE_LOG").is_ok() {
                "info,boltlink=debug"
            } else {
                "error"
            }
            .to_string(),
        ),
        ("PIPELINE_POLL_MS", "100".to_string()),
        ("PIPELINE_BATCH_SIZE", "500".to_string()),
        ("AGGREGATOR_BATCH_SIZE", "500".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let log = std::env::var("EXACTLY_ONCE_LOG").ok();
    let mut worker = Daemon::start(WORKER_BIN, env.clone(), log.clone());
    let mut aggregator = Daemon::start(AGGREGATOR_BIN, env, log);

    // Load: CONCURRENCY clients share a budget of REDIRECTS requests.
    let issued = Arc::new(AtomicU64::new(0));
    let found = Arc::new(AtomicU64::new(0));
    let other = Arc::new(AtomicU64::new(0));
    let load_done = Arc::new(AtomicU64::new(0));
    let chaos_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..CONCURRENCY {
        let (issued, found, other, load_done) = (
            issued.clone(),
            found.clone(),
            other.clone(),
            load_done.clone(),
        );
        let chaos_done = chaos_done.clone();
        let base = app.base.clone();
        let paths = paths.clone();
        clients.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(BROWSER)
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client");
            // At least REDIRECTS requests, and traffic for as long as the faults go on.
            while issued.fetch_add(1, Ordering::Relaxed) < REDIRECTS
                || !chaos_done.load(Ordering::Relaxed)
            {
                let n = found.load(Ordering::Relaxed) as usize + c;
                match client
                    .get(format!("{base}{}", paths[n % paths.len()]))
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 302 => found.fetch_add(1, Ordering::Relaxed),
                    _ => other.fetch_add(1, Ordering::Relaxed),
                };
            }
            load_done.fetch_add(1, Ordering::Relaxed);
        }));
    }

    // Chaos while the load runs, in random order at random moments.
    #[derive(Clone, Copy, Debug)]
    enum Fault {
        KillWorker,
        KillAggregator,
        RestartRedis,
        KillRedis,
        CutDatabase,
        PauseDatabase,
    }
    let mut faults = vec![
        Fault::KillWorker,
        Fault::KillWorker,
        Fault::KillAggregator,
        Fault::KillAggregator,
        Fault::RestartRedis,
        Fault::KillRedis,
        Fault::CutDatabase,
        Fault::PauseDatabase,
    ];
    faults.shuffle(&mut rand::thread_rng());
    let started = Instant::now();
    for fault in &faults {
        let pause = rand::thread_rng().gen_range(150..600);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        match fault {
            Fault::KillWorker => worker.kill9_and_restart(),
            Fault::KillAggregator => aggregator.kill9_and_restart(),
            Fault::RestartRedis => {
                redis.stop_gracefully();
                tokio::time::sleep(Duration::from_millis(300)).await;
                redis.restart();
            }
            Fault::KillRedis => {
                // SIGKILL: what Redis acknowledged is on disk (appendfsync always).
                redis.kill();
                tokio::time::sleep(Duration::from_millis(300)).await;
                redis.restart();
            }
            Fault::CutDatabase => {
                proxy.cut();
                tokio::time::sleep(Duration::from_millis(1500)).await;
                proxy.restore();
            }
            Fault::PauseDatabase => {
                // Connections stay open and nothing answers, as with a SIGSTOPped server.
                proxy.pause();
                tokio::time::sleep(Duration::from_millis(1500)).await;
                proxy.resume();
            }
        }
    }
    let chaos_time = started.elapsed();
    chaos_done.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.expect("client task");
    }
    let answered = found.load(Ordering::Relaxed);
    assert_eq!(load_done.load(Ordering::Relaxed), CONCURRENCY as u64);
    assert!(
        answered >= REDIRECTS,
        "only {answered} redirects answered 302"
    );
    assert_eq!(
        other.load(Ordering::Relaxed),
        0,
        "no redirect may fail, whatever broke"
    );
    eprintln!("exactly-once: {answered} redirects during {chaos_time:?} of faults {faults:?}");

    // Drain: everything answered reaches every table exactly once, then nothing more.
    let deadline = Instant::now() + Duration::from_secs(120);
    let expected = answered as i64;
    loop {
        let t = app.click_totals().await;
        let t = (t.links, t.rollups, t.raw);
        if t == (expected, expected, expected) {
            break;
        }
        assert!(
            t.0 <= expected && t.1 <= expected && t.2 <= expected,
            "over-counted: (links.clicks, rollups, raw) = {t:?}, expected {expected} each (faults: {faults:?})"
        );
        if Instant::now() >= deadline {
            let mut c = redis::Client::open(redis.url())
                .expect("url")
                .get_multiplexed_async_connection()
                .await
                .expect("conn");
            let groups: redis::Value = redis::cmd("XINFO")
                .arg("GROUPS")
                .arg(app.keys.click_stream())
                .query_async(&mut c)
                .await
                .expect("xinfo");
            let dead: u64 = redis::cmd("XLEN")
                .arg(app.keys.dead_letters())
                .query_async(&mut c)
                .await
                .unwrap_or(0);
            let offset: Option<(i64, i64)> =
                sqlx::query_as("SELECT last_ms, last_seq FROM stream_offsets")
                    .fetch_optional(&app.db)
                    .await
                    .expect("offset");
            let per_link: Vec<(i64, i64)> = sqlx::query_as("SELECT l.clicks, (SELECT count(*) FROM click_events e WHERE e.link_id = l.id) FROM links l").fetch_all(&app.db).await.expect("per link");
            let minmax: (
                Option<chrono::DateTime<chrono::Utc>>,
                Option<chrono::DateTime<chrono::Utc>>,
            ) = sqlx::query_as("SELECT min(at), max(at) FROM click_events")
                .fetch_one(&app.db)
                .await
                .expect("mm");
            let metrics = app.metrics_text().await;
            let clicks_metrics: Vec<&str> = metrics
                .lines()
                .filter(|l| l.starts_with("boltlink_click"))
                .collect();
            panic!(
                "metrics {clicks_metrics:?}; not drained: (links.clicks, rollups, raw) = {t:?}, expected {expected} each (faults: {faults:?}); groups {groups:?}; dead {dead}; offset {offset:?}; per link {per_link:?}; at {minmax:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Still exact after the consumers have had time to (wrongly) count anything twice.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        {
            let t = app.click_totals().await;
            (t.links, t.rollups, t.raw)
        },
        (expected, expected, expected),
        "faults: {faults:?}"
    );
    drop(worker);
    drop(aggregator);
}

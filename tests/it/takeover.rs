//! Entries a consumer read but never finished — its host died, and every host's worker shares
//! the group's consumer name — are taken over by a running consumer after
//! `PIPELINE_TAKEOVER_MS`, without waiting for a restart, and counted once. And the aggregator
//! lock: one that lost it to another stands by again, ready to take over.

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::json;

use crate::support::{
    browser_client, code_of, create_key, end_the_lock_holders_session, logged, new_prefix,
    pipeline_env, redis_connection, redis_keys, redis_url, shorten_on, Daemon, Suite, TestDatabase,
    AGGREGATOR_BIN, WORKER_BIN,
};

async fn totals(pool: &sqlx::PgPool) -> (i64, i64) {
    sqlx::query_as(
        "SELECT (SELECT COALESCE(sum(clicks), 0)::bigint FROM links), \
                (SELECT count(*) FROM click_events WHERE kind = 'click')",
    )
    .fetch_one(pool)
    .await
    .expect("totals")
}

/// A one-instance suite serving one link (of a new key), seen as a browser sees it.
struct Linked {
    _suite: Suite,
    client: reqwest::Client,
    /// The link's short URL on the suite.
    url: String,
    /// On the suite's database.
    pool: sqlx::PgPool,
}

impl Linked {
    async fn start(database: &TestDatabase, prefix: &str, target: &str) -> Self {
        let suite = Suite::start_with(1, database, prefix, &[]);
        suite.wait_until_all_serve().await;
        let client = browser_client();
        let key = create_key(database.url()).await;
        let link = shorten_on(&client, &suite, &key, json!({ "url": target })).await;
        let url = suite.url(&format!("/{}", code_of(&link)));
        let pool = sqlx::PgPool::connect(database.url()).await.expect("db");
        Linked {
            _suite: suite,
            client,
            url,
            pool,
        }
    }
}

/// `n` concurrent visits of `url`, each answered 302.
async fn visit_times(client: &reqwest::Client, url: &str, n: usize) {
    for r in join_all((0..n).map(|_| client.get(url).send())).await {
        assert_eq!(r.expect("redirect").status(), 302);
    }
}

async fn wait_for(pool: &sqlx::PgPool, want: (i64, i64), within: Duration, what: &str) {
    let deadline = std::time::Instant::now() + within;
    loop {
        let got = totals(pool).await;
        assert!(
            got.0 <= want.0 && got.1 <= want.1,
            "never more: {got:?} of {want:?}"
        );
        if got == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: (counted, stored) {got:?}, expected {want:?} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_a_dead_reader_left_pending_are_taken_over_by_a_running_worker() {
    let (database, prefix) = (TestDatabase::create().await, new_prefix());
    let linked = Linked::start(&database, &prefix, "https://example.com/takeover").await;
    let env = pipeline_env(
        database.url(),
        &redis_url(),
        &prefix,
        &[("LOG_LEVEL", "error"), ("PIPELINE_TAKEOVER_MS", "1500")],
    );
    let worker = Daemon::start(WORKER_BIN, env.clone(), None);
    let _aggregator = Daemon::start(AGGREGATOR_BIN, env, None);
    let visit = |n: usize| visit_times(&linked.client, &linked.url, n);
    let pool = &linked.pool;
    visit(10).await;
    wait_for(pool, (10, 10), Duration::from_secs(30), "the first clicks").await;

    // The running worker pauses (its blocked read expires meanwhile); another reader of the
    // group — a host that dies next — takes the new entries and never finishes them.
    worker.signal("STOP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    visit(12).await;
    // The aggregator counts them from the stream on its own; the worker's rows wait.
    wait_for(
        pool,
        (22, 10),
        Duration::from_secs(30),
        "counted, not stored",
    )
    .await;
    let mut redis = redis_connection(&redis_url()).await;
    let taken: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("worker")
        .arg("worker")
        .arg("COUNT")
        .arg(1000)
        .arg("STREAMS")
        .arg(redis_keys(&redis_url(), &prefix).click_stream())
        .arg(">")
        .query_async(&mut redis)
        .await
        .expect("the dead reader's read");
    assert_ne!(
        taken,
        redis::Value::Nil,
        "the dead reader got the new entries"
    );
    worker.signal("CONT");

    // Without a takeover these would wait for the worker's next restart.
    wait_for(pool, (22, 22), Duration::from_secs(15), "taken over").await;
}

/// Every host of a fleet runs an aggregator; one holds the lock and counts, the others stand
/// by. Found in the fleet work: one whose lock session ended (a PostgreSQL restart, a broken
/// connection) while another took the lock kept failing its steps with backoff — reading
/// batches it could not commit and publishing the aggregator's heartbeat beside the new
/// holder's — instead of standing by again, ready for the next takeover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aggregator_that_lost_its_lock_to_another_stands_by_and_takes_over_when_that_one_dies() {
    let (database, prefix) = (TestDatabase::create().await, new_prefix());
    let linked = Linked::start(&database, &prefix, "https://example.com/standby").await;
    let env = pipeline_env(
        database.url(),
        &redis_url(),
        &prefix,
        &[("LOG_LEVEL", "info")],
    );
    let logs = std::env::temp_dir().join(format!("bl-agg-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&logs).expect("log dir");
    let (first_log, second_log) = (logs.join("first.log"), logs.join("second.log"));
    let _worker = Daemon::start(WORKER_BIN, env.clone(), None);
    let first = Daemon::start(
        AGGREGATOR_BIN,
        env.clone(),
        Some(first_log.display().to_string()),
    );
    let visit = |n: usize| visit_times(&linked.client, &linked.url, n);
    let pool = &linked.pool;
    visit(10).await;
    let mut sent = 10;
    wait_for(
        pool,
        (sent, sent),
        Duration::from_secs(30),
        "the first clicks",
    )
    .await;

    let second = Daemon::start(AGGREGATOR_BIN, env, Some(second_log.display().to_string()));
    crate::support::eventually(Duration::from_secs(30), || async {
        logged(&second_log, "boltlink-aggregator on standby")
    })
    .await;
    // The first one's lock session ends, as on a PostgreSQL restart, while it is paused: the
    // standby, retrying every second, takes the lock before the first could take it back.
    first.signal("STOP");
    end_the_lock_holders_session(pool).await;
    crate::support::eventually(Duration::from_secs(30), || async {
        logged(&second_log, "lock taken; leaving standby")
    })
    .await;
    first.signal("CONT");
    // The first one learns of it when it next commits: clicks until it has, and stood by.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !logged(&first_log, "back to standby") {
        assert!(
            std::time::Instant::now() < deadline,
            "the first aggregator never stood by again: {}",
            std::fs::read_to_string(&first_log).unwrap_or_default()
        );
        visit(5).await;
        sent += 5;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    wait_for(
        pool,
        (sent, sent),
        Duration::from_secs(30),
        "counted by the second",
    )
    .await;

    // The holder dies: the first takes the lock again and counts what follows, once.
    second.signal("KILL");
    visit(10).await;
    sent += 10;
    wait_for(
        pool,
        (sent, sent),
        Duration::from_secs(30),
        "counted after the holder died",
    )
    .await;
    assert!(
        logged(&first_log, "lock taken; leaving standby"),
        "{}",
        std::fs::read_to_string(&first_log).unwrap_or_default()
    );
    let _ = std::fs::remove_dir_all(&logs);
}

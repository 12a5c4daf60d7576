//! Entries a consumer read but never finished — its host died, and every host's worker shares
//! the group's consumer name — are taken over by a running consumer after
//! `PIPELINE_TAKEOVER_MS`, without waiting for a restart, and counted once.

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::json;

use crate::support::{
    browser_client, code_of, create_key, new_prefix, pipeline_env, redis_connection, redis_keys,
    redis_url, shorten_on, Daemon, Suite, TestDatabase, AGGREGATOR_BIN, WORKER_BIN,
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
    let database = TestDatabase::create().await;
    let prefix = new_prefix();
    let suite = Suite::start_with(1, &database, &prefix, &[]);
    suite.wait_until_all_serve().await;
    let env = pipeline_env(
        database.url(),
        &redis_url(),
        &prefix,
        &[("LOG_LEVEL", "error"), ("PIPELINE_TAKEOVER_MS", "1500")],
    );
    let worker = Daemon::start(WORKER_BIN, env.clone(), None);
    let _aggregator = Daemon::start(AGGREGATOR_BIN, env, None);
    let client = browser_client();
    let key = create_key(database.url()).await;
    let link = shorten_on(
        &client,
        &suite,
        &key,
        json!({"url": "https://example.com/takeover"}),
    )
    .await;
    let code = code_of(&link);
    let visit = |n: usize| {
        let (client, url) = (client.clone(), suite.url(&format!("/{code}")));
        async move {
            for r in join_all((0..n).map(|_| client.get(&url).send())).await {
                assert_eq!(r.expect("redirect").status(), 302);
            }
        }
    };
    let pool = sqlx::PgPool::connect(database.url()).await.expect("db");
    visit(10).await;
    wait_for(&pool, (10, 10), Duration::from_secs(30), "the first clicks").await;

    // The running worker pauses (its blocked read expires meanwhile); another reader of the
    // group — a host that dies next — takes the new entries and never finishes them.
    worker.signal("STOP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    visit(12).await;
    // The aggregator counts them from the stream on its own; the worker's rows wait.
    wait_for(
        &pool,
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
    wait_for(&pool, (22, 22), Duration::from_secs(15), "taken over").await;
}

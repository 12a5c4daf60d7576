//! `CLICK_STREAM_SHARDS`: the click stream spread over several keys, each consumed by every
//! group with its own consumer (and the aggregator's own offset row), every click counted
//! exactly once; a lower setting drains the shards beyond it.

use std::time::Duration;

use futures_util::future::join_all;
use redis::AsyncCommands;
use serde_json::json;

use crate::support::{
    browser_client, code_of, create_key, new_prefix, pipeline_env, redis_connection, redis_keys,
    redis_url, shorten_on, Daemon, Suite, TestDatabase, AGGREGATOR_BIN, WORKER_BIN,
};

fn daemon_env(database: &TestDatabase, prefix: &str, shards: &str) -> Vec<(String, String)> {
    pipeline_env(
        database.url(),
        &redis_url(),
        prefix,
        &[("CLICK_STREAM_SHARDS", shards)],
    )
}

async fn make_links(client: &reqwest::Client, suite: &Suite, key: &str, n: usize) -> Vec<String> {
    let mut codes = Vec::new();
    for i in 0..n {
        let body = json!({"url": format!("https://example.com/shard/{i}")});
        codes.push(code_of(&shorten_on(client, suite, key, body).await));
    }
    codes
}

/// `rounds` visits of every code, 8 at a time; all must answer 302. Returns how many.
async fn visit(client: &reqwest::Client, suite: &Suite, codes: &[String], rounds: usize) -> i64 {
    let mut answered = 0;
    for _ in 0..rounds {
        for chunk in codes.chunks(8) {
            let visits = chunk
                .iter()
                .map(|c| client.get(suite.url(&format!("/{c}"))).send());
            for r in join_all(visits).await {
                assert_eq!(r.expect("redirect").status(), 302);
                answered += 1;
            }
        }
    }
    answered
}

/// Waits until `links.clicks`, the rollups and the stored clicks all equal `answered`.
async fn wait_until_counted(database: &TestDatabase, answered: i64) {
    let pool = sqlx::PgPool::connect(database.url()).await.expect("db");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (clicks, rolled, stored): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT COALESCE(sum(clicks), 0)::bigint FROM links), \
                    (SELECT COALESCE(sum(clicks), 0)::bigint FROM click_rollups_total), \
                    (SELECT count(*) FROM click_events WHERE kind = 'click')",
        )
        .fetch_one(&pool)
        .await
        .expect("totals");
        assert!(
            clicks <= answered && rolled <= answered && stored <= answered,
            "never more than answered ({answered}): {clicks} in links, {rolled} rolled up, {stored} stored"
        );
        if (clicks, rolled, stored) == (answered, answered, answered) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{answered} answered, after 60 s {clicks} in links, {rolled} rolled up, {stored} stored"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `XLEN` of the click stream's shards 0 to `shards - 1`.
async fn stream_lengths(prefix: &str, shards: u16) -> Vec<u64> {
    let mut c = redis_connection(&redis_url()).await;
    let keys = redis_keys(&redis_url(), prefix);
    let mut out = Vec::new();
    for shard in 0..shards {
        let stream = keys.for_shard(shard).click_stream();
        let len: u64 = c.xlen(stream).await.expect("xlen");
        out.push(len);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clicks_spread_over_three_shards_are_each_counted_once() {
    let database = TestDatabase::create().await;
    let prefix = new_prefix();
    let suite = Suite::start_with(
        2,
        &database,
        &prefix,
        &[
            ("CLICK_STREAM_SHARDS", "3"),
            ("RATE_LIMIT_REDIRECT_PER_MIN", "100000"),
        ],
    );
    suite.wait_until_all_serve().await;
    let _worker = Daemon::start(WORKER_BIN, daemon_env(&database, &prefix, "3"), None);
    let _aggregator = Daemon::start(AGGREGATOR_BIN, daemon_env(&database, &prefix, "3"), None);
    let client = browser_client();
    let key = create_key(database.url()).await;
    let codes = make_links(&client, &suite, &key, 12).await;
    let mut answered = 0;
    // In bursts with pauses, so that the flushes (one batch each) land on every shard.
    for _ in 0..6 {
        answered += visit(&client, &suite, &codes, 2).await;
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
    wait_until_counted(&database, answered).await;
    let lengths = stream_lengths(&prefix, 3).await;
    assert!(
        lengths.iter().filter(|&&l| l > 0).count() >= 2,
        "batches on several shards: {lengths:?}"
    );
    let pool = sqlx::PgPool::connect(database.url()).await.expect("db");
    let offsets: Vec<String> =
        sqlx::query_scalar("SELECT consumer FROM stream_offsets ORDER BY consumer")
            .fetch_all(&pool)
            .await
            .expect("offsets");
    assert!(
        offsets.iter().all(|o| o.starts_with("aggregator")) && offsets.len() >= 2,
        "one offset per shard the aggregator counted: {offsets:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_set_to_fewer_shards_drain_the_shards_beyond() {
    let database = TestDatabase::create().await;
    let prefix = new_prefix();
    let mut suite = Suite::start_with(
        1,
        &database,
        &prefix,
        &[
            ("CLICK_STREAM_SHARDS", "4"),
            ("RATE_LIMIT_REDIRECT_PER_MIN", "100000"),
        ],
    );
    suite.wait_until_all_serve().await;
    let client = browser_client();
    let key = create_key(database.url()).await;
    let codes = make_links(&client, &suite, &key, 8).await;
    let mut answered = 0;
    for _ in 0..8 {
        answered += visit(&client, &suite, &codes, 1).await;
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
    // The API flushes what it holds on its way out.
    assert_eq!(suite.terminate(), vec![Some(0)]);
    let lengths = stream_lengths(&prefix, 4).await;
    assert!(
        lengths[1..].iter().any(|&l| l > 0),
        "entries beyond shard 0 wait: {lengths:?}"
    );
    // The consumers come back configured for one shard only: nothing may be left behind.
    let _worker = Daemon::start(WORKER_BIN, daemon_env(&database, &prefix, "1"), None);
    let _aggregator = Daemon::start(AGGREGATOR_BIN, daemon_env(&database, &prefix, "1"), None);
    wait_until_counted(&database, answered).await;
}

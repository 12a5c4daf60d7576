//! Degraded modes with real failures: Redis killed mid-test, PostgreSQL cut by a proxy.

use std::time::Duration;

use serde_json::json;

use crate::fixtures::{database_socket_addr, database_url_via, CuttableProxy, PrivateRedis};
use crate::support::{eventually, TestApp, TestDatabase};

#[tokio::test]
async fn redirects_survive_a_redis_outage_and_its_clicks_reach_the_stream_afterwards() {
    let mut redis = PrivateRedis::start();
    let app = TestApp::builder()
        .redis(redis.url())
        .set("LOCAL_CACHE_TTL_MS", "200")
        .start()
        .await;
    let key = app.key(false).await;
    let link = app
        .shorten(&key, json!({"url": "https://example.com/outage"}))
        .await;
    let path = format!("/{}", link["shortCode"].as_str().expect("code"));
    let stream = app.keys.click_stream();

    let resp = app.get(&path).send().await.expect("redirect");
    assert_eq!(resp.status(), 302);
    eventually(Duration::from_secs(5), || async {
        redis.stream_clicks(&stream).await == Some(1)
    })
    .await;

    redis.kill();
    // While Redis is gone (and past the local cache lifetime, so PostgreSQL answers):
    // no redirect fails.
    let during = 60;
    for i in 0..during {
        let resp = app.get(&path).send().await.expect("redirect during outage");
        assert_eq!(resp.status(), 302, "redirect {i} during the Redis outage");
        assert_eq!(resp.headers()["location"], "https://example.com/outage");
        if i == during / 2 {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    // The API keeps working and says Redis is down.
    let health = app.get("/health").send().await.expect("health");
    assert_eq!(health.status(), 503);
    let body: serde_json::Value = health.json().await.expect("json");
    assert_eq!(body["status"], "unhealthy");
    assert_ne!(body["checks"]["redis"], "ok");
    assert_eq!(body["checks"]["database"], "ok");
    let created = app
        .post_json(
            "/api/shorten",
            &key,
            json!({"url": "https://example.com/during"}),
        )
        .send()
        .await
        .expect("shorten");
    assert_eq!(created.status(), 201, "writes keep working without Redis");

    redis.restart();
    // Every click made during the outage is delivered once Redis is back: 1 + 60.
    let expected = 1 + during as u64;
    eventually(Duration::from_secs(15), || async {
        redis.stream_clicks(&stream).await == Some(expected)
    })
    .await;
    eventually(Duration::from_secs(10), || async {
        matches!(app.get("/health").send().await, Ok(r) if r.status() == 200)
    })
    .await;
}

#[tokio::test]
async fn with_postgresql_unreachable_cached_redirects_work_and_writes_answer_503() {
    let database = TestDatabase::create().await;
    let proxy = CuttableProxy::start(database_socket_addr(database.url())).await;
    let app = TestApp::builder()
        .database(database.clone())
        .app_database_url(database_url_via(database.url(), proxy.addr))
        .set("LOCAL_CACHE_TTL_MS", "200")
        .start()
        .await;
    let key = app.key(false).await;
    let link = app
        .shorten(&key, json!({"url": "https://example.com/cached"}))
        .await;
    let path = format!("/{}", link["shortCode"].as_str().expect("code"));
    assert_eq!(app.get(&path).send().await.expect("warm").status(), 302);

    proxy.cut();
    // Past the local lifetime the Redis cache still answers: no PostgreSQL needed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..20 {
        let resp = app.get(&path).send().await.expect("cached redirect");
        assert_eq!(resp.status(), 302);
        assert_eq!(resp.headers()["location"], "https://example.com/cached");
    }
    let resp = app
        .post_json(
            "/api/shorten",
            &key,
            json!({"url": "https://example.com/new"}),
        )
        .send()
        .await
        .expect("shorten");
    assert_eq!(resp.status(), 503);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .contains("Database unavailable"),
        "{body}"
    );
    let resp = app.get("/ready").send().await.expect("ready");
    assert_eq!(resp.status(), 503);
    // A code nobody ever looked up cannot be answered from any cache.
    let resp = app.get("/neverseen1").send().await.expect("uncached");
    assert_eq!(resp.status(), 503);

    proxy.restore();
    eventually(Duration::from_secs(15), || async {
        matches!(
            app.post_json("/api/shorten", &key, json!({"url": "https://example.com/back"})).send().await,
            Ok(r) if r.status() == 201
        )
    })
    .await;
}

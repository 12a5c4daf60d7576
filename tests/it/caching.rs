//! The link cache layers: negative caching of unknown codes, and creation clearing a
//! negative entry at once.

use serde_json::json;

use crate::support::TestApp;

#[tokio::test]
async fn unknown_codes_do_not_reach_postgresql_on_every_request() {
    let app = TestApp::start().await;
    for _ in 0..50 {
        let resp = app.get("/unknownCode").send().await.expect("req");
        assert_eq!(resp.status(), 404);
        assert_eq!(resp.text().await.expect("body"), "Link not found");
    }
    // One database lookup; every later request was answered by a negative cache entry.
    assert_eq!(app.metric("boltlink_cache_misses_total").await, 1.0);
    assert!(app.metric("boltlink_cache_hits_total").await >= 49.0);
}

#[tokio::test]
async fn creating_a_link_clears_a_cached_not_found_for_its_code() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    assert_eq!(
        app.get("/fresh-code").send().await.expect("req").status(),
        404
    );
    app.shorten(
        &key,
        json!({"url": "https://example.com/fresh", "customCode": "fresh-code"}),
    )
    .await;
    let resp = app.get("/fresh-code").send().await.expect("req");
    assert_eq!(resp.status(), 302);
    assert_eq!(resp.headers()["location"], "https://example.com/fresh");
}

#[tokio::test]
async fn a_cached_redirect_makes_no_database_lookup() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let link = app
        .shorten(&key, json!({"url": "https://example.com/hot"}))
        .await;
    let path = format!("/{}", link["shortCode"].as_str().expect("code"));
    for _ in 0..30 {
        assert_eq!(app.get(&path).send().await.expect("req").status(), 302);
    }
    assert_eq!(app.metric("boltlink_cache_misses_total").await, 1.0);
    app.wait_for_stream_clicks(30).await;
}

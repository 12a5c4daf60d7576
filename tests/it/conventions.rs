//! Conventions every response follows: security headers, request ids, CORS, 404/405.

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{code_of, TestApp};

#[tokio::test]
async fn every_response_carries_the_security_headers_and_a_request_id() {
    let app = TestApp::start().await;
    for path in ["/health", "/does/not/exist", "/nOpE"] {
        let resp = app.get(path).send().await.expect("request");
        let h = resp.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(
            h["strict-transport-security"], "max-age=31536000; includeSubDomains",
            "{path}"
        );
        assert!(!h["x-request-id"].is_empty(), "{path}");
    }
}

#[tokio::test]
async fn a_sane_incoming_request_id_is_echoed_and_an_insane_one_replaced() {
    let app = TestApp::start().await;
    let resp = app
        .get("/health")
        .header("x-request-id", "trace-42.a_b")
        .send()
        .await
        .expect("req");
    assert_eq!(resp.headers()["x-request-id"], "trace-42.a_b");
    let resp = app
        .get("/health")
        .header("x-request-id", "x".repeat(500))
        .send()
        .await
        .expect("req");
    assert_ne!(resp.headers()["x-request-id"], "x".repeat(500).as_str());
}

#[tokio::test]
async fn unknown_routes_answer_404_json_and_wrong_methods_405() {
    let app = TestApp::start().await;
    let resp = app.get("/a/b/c").send().await.expect("req");
    assert_eq!(crate::support::error_message(resp, 404).await, "Not found");
    let resp = app
        .client
        .delete(app.url("/health"))
        .send()
        .await
        .expect("req");
    assert_eq!(resp.status(), 405);
    assert!(resp.headers()["allow"]
        .to_str()
        .expect("allow")
        .contains("GET"));
    let resp = app
        .client
        .put(app.url("/api/shorten"))
        .send()
        .await
        .expect("req");
    assert_eq!(resp.status(), 405);
}

#[tokio::test]
async fn cors_preflight_answers_204_for_allowed_origins_only() {
    let app = TestApp::builder()
        .set("ALLOWED_ORIGINS", "https://app.example")
        .start()
        .await;
    let resp = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/api/shorten"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .expect("req");
    assert_eq!(resp.status(), 204);
    let h = resp.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example");
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(h["access-control-max-age"], "3600");
    assert!(h["access-control-allow-methods"]
        .to_str()
        .expect("m")
        .contains("PATCH"));
    assert!(h["access-control-allow-headers"]
        .to_str()
        .expect("h")
        .contains("x-api-key"));
    assert!(h["access-control-expose-headers"]
        .to_str()
        .expect("e")
        .contains("X-Total-Count"));

    let resp = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/api/shorten"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .expect("req");
    assert_eq!(resp.status(), 204);
    assert!(resp.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn wildcard_origins_echo_the_caller_origin() {
    let app = TestApp::start().await;
    let resp = app
        .get("/health")
        .header("origin", "https://any.example")
        .send()
        .await
        .expect("req");
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://any.example"
    );
}

/// Every keyed route answers 401 `API Key missing` without a usable key header and 403
/// `Invalid API Key` with a key that is not ours, and does nothing either way.
#[tokio::test]
async fn keyed_routes_answer_401_without_a_key_and_403_with_an_unknown_one() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let code = code_of(&app.create_link(&key, json!({})).await);
    let analytics_of_a_link = format!("/api/analytics/{code}");
    let routes: Vec<(Method, &str, Option<Value>)> = vec![
        (
            Method::POST,
            "/api/shorten",
            Some(json!({"url": "https://example.com/"})),
        ),
        (Method::GET, "/api/links", None),
        (Method::GET, "/api/top-links", None),
        (Method::POST, "/api/campaigns", Some(json!({"name": "x"}))),
        (Method::GET, "/api/campaigns", None),
        (Method::GET, "/api/auth/me", None),
        (Method::GET, "/api/settings/developer", None),
        (
            Method::PATCH,
            "/api/settings/developer/webhook",
            Some(json!({ "url": "https://hooks.example/" })),
        ),
        (
            Method::POST,
            "/api/metadata",
            Some(json!({ "url": "https://example.com/" })),
        ),
        (Method::GET, "/api/analytics/global", None),
        (Method::GET, "/api/stats/overview", None),
        (Method::GET, &analytics_of_a_link, None),
    ];
    let unknown_but_well_formed = ["ab", "cd", "ef", "a", "f", "0"].map(|c| c.repeat(64 / c.len()));
    let missing = [None, Some(""), Some("   ")];
    let unknown = unknown_but_well_formed
        .iter()
        .map(String::as_str)
        .chain(["not-a-key", "0123"]);
    let cases = missing
        .into_iter()
        .map(|header| (header, 401, "API Key missing"))
        .chain(unknown.map(|key| (Some(key), 403, "Invalid API Key")));
    for (header, status, error) in cases {
        for (method, path, body) in &routes {
            let case = format!("{method} {path} with x-api-key {header:?}");
            let mut req = app.client.request(method.clone(), app.url(path));
            if let Some(body) = body {
                req = req.json(body);
            }
            if let Some(h) = header {
                req = req.header("x-api-key", h);
            }
            let resp = req.send().await.expect("request");
            assert_eq!(resp.status().as_u16(), status, "{case}");
            let body: Value = resp.json().await.expect("json");
            assert_eq!(body, json!({ "error": error }), "{case}");
        }
    }
    let (links, campaigns): (i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM links), (SELECT count(*) FROM campaigns)")
            .fetch_one(&app.db)
            .await
            .expect("count");
    assert_eq!((links, campaigns), (1, 0), "nothing was created");
}

/// An id that is not a UUID, or that nobody has, is a 404 in the JSON error shape on every
/// item route of every collection.
#[tokio::test]
async fn an_id_that_is_not_a_uuid_or_unknown_answers_404_on_get_patch_and_delete() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let unknown = uuid::Uuid::new_v4().to_string();
    let collections = [
        (app.links(), json!({"title": "x"}), "Link not found"),
        (app.campaigns(), json!({"name": "x"}), "Campaign not found"),
    ];
    for (collection, patch, message) in &collections {
        for id in ["not-a-uuid", "123", unknown.as_str()] {
            collection
                .assert_item_routes_refuse(&key, id, patch.clone(), 404, message)
                .await;
        }
    }
}

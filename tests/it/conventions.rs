//! Conventions every response follows: security headers, request ids, CORS, 404/405.

use crate::support::TestApp;

#[tokio::test]
async fn every_response_carries_the_security_headers_and_a_request_id() {
    let app = TestApp::spawn().await;
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
    app.stop().await;
}

#[tokio::test]
async fn a_sane_incoming_request_id_is_echoed_and_an_insane_one_replaced() {
    let app = TestApp::spawn().await;
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
    app.stop().await;
}

#[tokio::test]
async fn unknown_routes_answer_404_json_and_wrong_methods_405() {
    let app = TestApp::spawn().await;
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
    app.stop().await;
}

#[tokio::test]
async fn cors_preflight_answers_204_for_allowed_origins_only() {
    let app = TestApp::spawn_with(&[("ALLOWED_ORIGINS", "https://app.example")]).await;
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
    app.stop().await;
}

#[tokio::test]
async fn wildcard_origins_echo_the_caller_origin() {
    let app = TestApp::spawn().await;
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
    app.stop().await;
}

//! The redirect path over HTTP: `GET|HEAD /{code}`, `GET /api/{code}`, `POST
//! /api/verify/{code}` and `GET /api/rate-limit-status/{code}`, against a real PostgreSQL and
//! Redis. Clicks are observed where the contract puts them: in this test's click stream
//! (`app.keys.click_stream()`), which the flusher fills within milliseconds of the answer.
//!
//! Rate-limit windows are fixed minutes (or 15 minutes for wrong passwords) with a sliding
//! estimate; a scenario that straddles a window boundary would see part of its count fade, so
//! scenarios that count to a limit first make sure their window has room left
//! ([`wait_for_room_in_window`]).

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::{
    case_error, code_of, error_message, eventually, header_number, id_of, wait_for_room_in_window,
    Says, TestApp, TARGET,
};

async fn owner_key_id(app: &TestApp, code: &str) -> Uuid {
    sqlx::query_scalar("SELECT owner_key_id FROM links WHERE short_code = $1")
        .bind(code)
        .fetch_one(&app.db)
        .await
        .expect("owner of link")
}

/// Makes a link expired in PostgreSQL directly (before anything cached it).
async fn expire(app: &TestApp, code: &str) {
    let done = sqlx::query(
        "UPDATE links SET is_expiring = true, expires_at = now() - interval '1 minute' \
         WHERE short_code = $1",
    )
    .bind(code)
    .execute(&app.db)
    .await
    .expect("expire link");
    assert_eq!(done.rows_affected(), 1, "link {code} exists");
}

async fn visit_with_ua(app: &TestApp, path: &str, ua: &str) -> reqwest::Response {
    app.get(path)
        .header("user-agent", ua)
        .send()
        .await
        .expect("visit")
}

fn location(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("location")
        .expect("a redirect carries Location")
        .to_str()
        .expect("Location is text")
        .to_string()
}

async fn verify(app: &TestApp, code: &str, body: Value) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/api/verify/{code}")))
        .json(&body)
        .send()
        .await
        .expect("verify")
}

fn kinds(entries: &[HashMap<String, String>]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e.get("kind").cloned().unwrap_or_default())
        .collect()
}

/// Visits `barrier_code` with a unique user agent and waits until that visit is in the
/// stream. The click queue is first in, first out, so every event recorded before the barrier
/// has been shipped by then: what the stream holds before it is complete.
async fn flush_barrier(app: &TestApp, barrier_code: &str) -> Vec<HashMap<String, String>> {
    let marker = format!("barrier-{}", Uuid::new_v4().simple());
    let resp = visit_with_ua(app, &format!("/{barrier_code}"), &marker).await;
    assert_eq!(resp.status(), 302, "barrier link redirects");
    eventually(Duration::from_secs(10), || async {
        app.stream_clicks().await.iter().any(|e| e["ua"] == marker)
    })
    .await;
    let mut entries = app.stream_clicks().await;
    let at = entries
        .iter()
        .position(|e| e["ua"] == marker)
        .expect("barrier entry");
    entries.truncate(at);
    entries
}

// ---------------------------------------------------------------------------------------
// GET /{code}
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn redirect_answers_302_to_the_original_url_and_records_exactly_one_click() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let link = app.create_link(&key, json!({})).await;
    let code = code_of(&link);
    let before_ms = Utc::now().timestamp_millis();

    let resp = app
        .get(&format!("/{code}"))
        .header("cf-ipcountry", "DE")
        .header("user-agent", "BoltLinkTest/1.0 (first)")
        .header("referer", "https://ref.example/page")
        .send()
        .await
        .expect("visit");
    assert_eq!(resp.status(), 302);
    assert_eq!(location(&resp), TARGET);
    let after_ms = Utc::now().timestamp_millis();

    app.wait_for_stream_clicks(1).await;
    let entries = app.stream_clicks().await;
    let e = &entries[0];
    assert_eq!(e["link"], id_of(&link));
    assert_eq!(e["owner"], owner_key_id(&app, &code).await.to_string());
    assert_eq!(e["region"], "DE");
    assert_eq!(e["ua"], "BoltLinkTest/1.0 (first)");
    assert_eq!(e["ref"], "https://ref.example/page");
    assert_eq!(e["kind"], "click");
    let at: i64 = e["at"].parse().expect("at is epoch milliseconds");
    assert!(
        (before_ms..=after_ms).contains(&at),
        "click time {at} within the request ({before_ms}..={after_ms})"
    );

    // A second visit without cf-ipcountry: the stream grows by exactly one more entry, in
    // order, so the first visit cannot have written two.
    let resp = visit_with_ua(&app, &format!("/{code}"), "BoltLinkTest/1.0 (second)").await;
    assert_eq!(resp.status(), 302);
    app.wait_for_stream_clicks(2).await;
    let entries = app.stream_clicks().await;
    assert_eq!(entries[1]["ua"], "BoltLinkTest/1.0 (second)");
    assert_eq!(entries[1]["region"], "UNKNOWN");
    assert_eq!(entries[1]["ref"], "");
    assert_eq!(entries[1]["kind"], "click");
}

#[tokio::test]
async fn the_api_prefixed_redirect_answers_302_and_records_one_click() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let link = app.create_link(&key, json!({})).await;
    let code = code_of(&link);

    let resp = app
        .get(&format!("/api/{code}"))
        .header("cf-ipcountry", "JP")
        .header("user-agent", "via-api-path")
        .send()
        .await
        .expect("visit");
    assert_eq!(resp.status(), 302);
    assert_eq!(location(&resp), TARGET);
    app.wait_for_stream_clicks(1).await;
    let entries = app.stream_clicks().await;
    assert_eq!(entries[0]["link"], id_of(&link));
    assert_eq!(entries[0]["region"], "JP");
    assert_eq!(entries[0]["ua"], "via-api-path");
    assert_eq!(entries[0]["kind"], "click");

    let resp = visit_with_ua(&app, &format!("/api/{code}"), "second").await;
    assert_eq!(resp.status(), 302);
    app.wait_for_stream_clicks(2).await;
    assert_eq!(app.stream_clicks().await[1]["ua"], "second");
}

#[tokio::test]
async fn head_answers_302_and_records_no_click() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let code = code_of(&app.create_link(&key, json!({})).await);

    let resp = app
        .client
        .head(app.url(&format!("/{code}")))
        .header("user-agent", "head-probe")
        .send()
        .await
        .expect("HEAD");
    assert_eq!(resp.status(), 302);
    assert_eq!(location(&resp), TARGET);

    // The GET after it proves the flusher ran: the queue is FIFO, so had HEAD recorded a
    // click it would be the first entry (and the stream would reach 2).
    let resp = visit_with_ua(&app, &format!("/{code}"), "real-visit").await;
    assert_eq!(resp.status(), 302);
    app.wait_for_stream_clicks(1).await;
    let entries = app.stream_clicks().await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["ua"], "real-visit");

    // And again, now that the link is cached.
    let resp = app
        .client
        .head(app.url(&format!("/{code}")))
        .header("user-agent", "head-probe")
        .send()
        .await
        .expect("HEAD");
    assert_eq!(resp.status(), 302);
    let resp = visit_with_ua(&app, &format!("/{code}"), "real-visit-2").await;
    assert_eq!(resp.status(), 302);
    app.wait_for_stream_clicks(2).await;
    let uas: Vec<String> = app
        .stream_clicks()
        .await
        .iter()
        .map(|e| e["ua"].clone())
        .collect();
    assert_eq!(uas, ["real-visit", "real-visit-2"]);
}

#[tokio::test]
async fn an_unknown_code_answers_404_with_plain_text_link_not_found() {
    let app = TestApp::start().await;
    for path in ["/NoSuchCode1", "/api/NoSuchCode1", "/no.such.code"] {
        let resp = app.visit(path).await;
        assert_eq!(resp.status(), 404, "{path}");
        let ct = resp.headers()["content-type"]
            .to_str()
            .expect("content-type")
            .to_string();
        assert!(ct.starts_with("text/plain"), "{path}: content-type {ct}");
        assert_eq!(resp.text().await.expect("body"), "Link not found", "{path}");
    }
    let resp = app
        .client
        .head(app.url("/NoSuchCode1"))
        .send()
        .await
        .expect("HEAD");
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn every_route_of_an_expired_link_answers_410() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let expires = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let open = code_of(
        &app.create_link(&key, json!({"isExpiring": true, "expiresAt": expires}))
            .await,
    );
    let protected = code_of(
        &app.create_link(
            &key,
            json!({"isExpiring": true, "expiresAt": expires, "isProtected": true, "password": "pw-123"}),
        )
        .await,
    );
    // Expired before the first redirect, so no cache holds the live state.
    expire(&app, &open).await;
    expire(&app, &protected).await;
    let verify_path = |code: &str| format!("/api/verify/{code}");
    let cases = [
        (Method::GET, format!("/{open}"), None),
        (Method::GET, format!("/api/{open}"), None),
        (Method::HEAD, format!("/{open}"), None),
        (Method::POST, verify_path(&open), Some(json!({}))),
        (
            Method::POST,
            verify_path(&protected),
            Some(json!({"password": "pw-123"})),
        ),
    ];
    for (method, path, body) in cases {
        let case = format!("{method} {path}");
        let mut req = app.client.request(method, app.url(&path));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("request");
        assert_eq!(resp.status(), 410, "{case}");
        assert!(resp.headers().get("location").is_none(), "{case}");
    }
}

#[tokio::test]
async fn a_protected_link_without_frontend_url_serves_a_password_form_that_posts_to_verify() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let code = code_of(
        &app.create_link(
            &key,
            json!({"isProtected": true, "password": "s3cret-pass"}),
        )
        .await,
    );
    let resp = app.visit(&format!("/{code}")).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("location").is_none());
    let ct = resp.headers()["content-type"]
        .to_str()
        .expect("content-type")
        .to_string();
    assert!(ct.starts_with("text/html"), "content-type {ct}");
    let html = resp.text().await.expect("body");
    assert!(html.contains("<form"), "a form: {html}");
    assert!(html.contains("type=\"password\""), "a password field");
    assert!(
        html.contains(&format!("/api/verify/{code}")),
        "the form posts to the verify route"
    );
    assert!(
        !html.contains(TARGET),
        "the form does not reveal the target"
    );
    assert!(!html.contains("s3cret-pass"));
}

#[tokio::test]
async fn a_protected_link_with_frontend_url_redirects_to_the_frontend_verify_page() {
    let app = TestApp::builder()
        .set("FRONTEND_URL", "https://app.example")
        .start()
        .await;
    let key = app.key(false).await;
    let code = code_of(
        &app.create_link(
            &key,
            json!({"isProtected": true, "password": "s3cret-pass"}),
        )
        .await,
    );
    for path in [format!("/{code}"), format!("/api/{code}")] {
        let resp = app.visit(&path).await;
        assert_eq!(resp.status(), 302, "{path}");
        assert_eq!(
            location(&resp),
            format!("https://app.example/verify?code={code}"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn visiting_a_protected_link_records_no_click_until_the_password_is_verified() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let link = app
        .create_link(
            &key,
            json!({"isProtected": true, "password": "s3cret-pass"}),
        )
        .await;
    let code = code_of(&link);
    let barrier = code_of(&app.create_link(&key, json!({})).await);

    assert_eq!(app.visit(&format!("/{code}")).await.status(), 200);
    let before = flush_barrier(&app, &barrier).await;
    // The form view may be counted as a gated visit, never as a click.
    assert_eq!(kinds(&before).iter().filter(|k| *k == "click").count(), 0);
    assert!(before.len() <= 1, "at most one gated visit: {before:?}");

    let resp = verify(&app, &code, json!({"password": "s3cret-pass"})).await;
    assert_eq!(resp.status(), 200);
    let all = flush_barrier(&app, &barrier).await;
    let link_clicks: Vec<_> = all
        .iter()
        .filter(|e| e["link"] == id_of(&link) && e["kind"] == "click")
        .collect();
    assert_eq!(link_clicks.len(), 1, "the verify is the one click: {all:?}");
}

// ---------------------------------------------------------------------------------------
// Per-link cap
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn the_per_link_cap_answers_429_on_the_third_visit_within_a_minute() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let code = code_of(
        &app.create_link(&key, json!({"isRateLimited": true, "maxClicksPerMin": 2}))
            .await,
    );
    let other = code_of(&app.create_link(&key, json!({})).await);
    wait_for_room_in_window(60).await;
    for i in 0..2 {
        let resp = app.visit(&format!("/{code}")).await;
        assert_eq!(resp.status(), 302, "visit {i}");
        assert_eq!(location(&resp), TARGET);
    }
    let resp = app.visit(&format!("/{code}")).await;
    assert!(resp.headers().get("location").is_none());
    assert!(header_number(&resp, "retry-after") >= 1);
    assert!(!error_message(resp, 429).await.is_empty());
    // Two clicks reached the target; the refused visit is not one of them. (The barrier
    // visit also shows the cap is per link: another link of the same owner is unaffected.)
    let entries = flush_barrier(&app, &other).await;
    let k = kinds(&entries);
    assert_eq!(
        k.iter().filter(|k| *k == "click").count(),
        2,
        "two clicks: {k:?}"
    );
}

#[tokio::test]
async fn the_per_link_cap_redirects_to_the_frontend_rate_limit_page_when_configured() {
    let app = TestApp::builder()
        .set("FRONTEND_URL", "https://app.example")
        .start()
        .await;
    let key = app.key(false).await;
    let code = code_of(
        &app.create_link(&key, json!({"isRateLimited": true, "maxClicksPerMin": 2}))
            .await,
    );
    wait_for_room_in_window(60).await;
    for i in 0..2 {
        let resp = app.visit(&format!("/{code}")).await;
        assert_eq!(resp.status(), 302, "visit {i}");
        assert_eq!(location(&resp), TARGET, "visit {i}");
    }
    let resp = app.visit(&format!("/{code}")).await;
    assert_eq!(resp.status(), 302);
    assert_eq!(
        location(&resp),
        format!("https://app.example/rate-limit?code={code}")
    );
}

#[tokio::test]
async fn verify_counts_towards_the_per_link_cap_and_answers_429_past_it() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let link = app
        .create_link(&key, json!({"isRateLimited": true, "maxClicksPerMin": 2}))
        .await;
    let code = code_of(&link);
    wait_for_room_in_window(60).await;
    // One redirect and one verify use up the cap of two...
    assert_eq!(app.visit(&format!("/{code}")).await.status(), 302);
    let resp = verify(&app, &code, json!({})).await;
    assert_eq!(resp.status(), 200);
    // ...so the next verify is refused, and so is the next redirect.
    let resp = verify(&app, &code, json!({})).await;
    assert!(header_number(&resp, "retry-after") >= 1);
    assert!(!error_message(resp, 429).await.is_empty());
    assert_eq!(app.visit(&format!("/{code}")).await.status(), 429);
}

// ---------------------------------------------------------------------------------------
// XHR answers
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn xhr_requests_get_200_with_the_redirect_in_json_and_record_a_click() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let link = app.create_link(&key, json!({})).await;
    let code = code_of(&link);

    let resp = app
        .get(&format!("/{code}"))
        .header("x-requested-with", "XMLHttpRequest")
        .header("user-agent", "xhr-header")
        .send()
        .await
        .expect("xhr");
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("location").is_none());
    let body: Value = resp.json().await.expect("JSON body");
    assert_eq!(body, json!({ "redirect": TARGET }));
    app.wait_for_stream_clicks(1).await;

    let resp = visit_with_ua(&app, &format!("/{code}?xhr=1"), "xhr-query").await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("JSON body");
    assert_eq!(body, json!({ "redirect": TARGET }));
    app.wait_for_stream_clicks(2).await;

    let entries = app.stream_clicks().await;
    let uas: Vec<&str> = entries.iter().map(|e| e["ua"].as_str()).collect();
    assert_eq!(uas, ["xhr-header", "xhr-query"]);
    assert_eq!(kinds(&entries), ["click", "click"]);
    assert!(entries.iter().all(|e| e["link"] == id_of(&link)));
}

// ---------------------------------------------------------------------------------------
// Per-IP limit
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn the_sixth_redirect_from_one_ip_answers_429_with_retry_after_and_rate_limit_headers() {
    let app = TestApp::builder()
        .set("RATE_LIMIT_REDIRECT_PER_MIN", "5")
        .start()
        .await;
    let key = app.key(false).await;
    let code = code_of(&app.create_link(&key, json!({})).await);
    wait_for_room_in_window(60).await;
    for i in 0..5 {
        let resp = app.visit(&format!("/{code}")).await;
        assert_eq!(resp.status(), 302, "redirect {i}");
    }
    let resp = app.visit(&format!("/{code}")).await;
    assert_eq!(resp.status(), 429);
    let retry_after = header_number(&resp, "retry-after");
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(header_number(&resp, "ratelimit-limit"), 5);
    assert_eq!(header_number(&resp, "ratelimit-remaining"), 0);
    let reset = header_number(&resp, "ratelimit-reset");
    assert!((1..=60).contains(&reset), "RateLimit-Reset {reset}");
    assert!(!error_message(resp, 429).await.is_empty());

    // The limit covers the route, not the code: unknown codes and the verify route too.
    assert_eq!(app.visit("/NoSuchCode1").await.status(), 429);
    assert_eq!(
        verify(&app, &code, json!({})).await.status(),
        429,
        "verify shares the redirect limit"
    );

    // Only the five redirects were clicks.
    app.wait_for_stream_clicks(5).await;
}

#[tokio::test]
async fn with_trust_proxy_each_forwarded_address_has_its_own_redirect_limit() {
    let app = TestApp::builder()
        .set("RATE_LIMIT_REDIRECT_PER_MIN", "2")
        .set("TRUST_PROXY", "1")
        .start()
        .await;
    let key = app.key(false).await;
    let code = code_of(&app.create_link(&key, json!({})).await);
    let from = |ip: &'static str| {
        app.get(&format!("/{code}"))
            .header("x-forwarded-for", ip)
            .send()
    };
    wait_for_room_in_window(60).await;
    for i in 0..2 {
        assert_eq!(
            from("203.0.113.10").await.expect("visit").status(),
            302,
            "first client, visit {i}"
        );
    }
    assert_eq!(from("203.0.113.10").await.expect("visit").status(), 429);
    for i in 0..2 {
        assert_eq!(
            from("198.51.100.20").await.expect("visit").status(),
            302,
            "second client, visit {i}"
        );
    }
    assert_eq!(from("198.51.100.20").await.expect("visit").status(), 429);
    assert_eq!(from("203.0.113.10").await.expect("visit").status(), 429);
}

#[tokio::test]
async fn without_trust_proxy_forwarded_addresses_do_not_escape_the_peer_limit() {
    let app = TestApp::builder()
        .set("RATE_LIMIT_REDIRECT_PER_MIN", "2")
        .start()
        .await;
    let key = app.key(false).await;
    let code = code_of(&app.create_link(&key, json!({})).await);
    wait_for_room_in_window(60).await;
    let mut statuses = Vec::new();
    for ip in ["203.0.113.10", "198.51.100.20", "192.0.2.30"] {
        let resp = app
            .get(&format!("/{code}"))
            .header("x-forwarded-for", ip)
            .send()
            .await
            .expect("visit");
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses, [302, 302, 429]);
}

// ---------------------------------------------------------------------------------------
// POST /api/verify/{code}
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn verify_of_an_unprotected_link_answers_the_redirect_and_records_one_click() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let link = app.create_link(&key, json!({})).await;
    let code = code_of(&link);
    let resp = app
        .client
        .post(app.url(&format!("/api/verify/{code}")))
        .header("user-agent", "verify-open")
        .header("cf-ipcountry", "FR")
        .json(&json!({}))
        .send()
        .await
        .expect("verify");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(body, json!({ "redirect": TARGET }));
    app.wait_for_stream_clicks(1).await;
    let e = &app.stream_clicks().await[0];
    assert_eq!(e["link"], id_of(&link));
    assert_eq!(e["kind"], "click");
    assert_eq!(e["region"], "FR");
    assert_eq!(e["ua"], "verify-open");

    // With any password too, and again exactly one more click.
    let resp = verify(&app, &code, json!({"password": "whatever"})).await;
    assert_eq!(resp.status(), 200);
    app.wait_for_stream_clicks(2).await;
}

#[tokio::test]
async fn verify_of_a_protected_link_checks_the_password() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let link = app
        .create_link(
            &key,
            json!({"isProtected": true, "password": "correct horse"}),
        )
        .await;
    let code = code_of(&link);

    let resp = verify(&app, &code, json!({})).await;
    assert!(!error_message(resp, 400).await.is_empty());
    let resp = verify(&app, &code, json!({"password": ""})).await;
    assert!(!error_message(resp, 400).await.is_empty());
    let resp = app
        .client
        .post(app.url(&format!("/api/verify/{code}")))
        .send()
        .await
        .expect("verify without body");
    assert!(!error_message(resp, 400).await.is_empty());

    let resp = verify(&app, &code, json!({"password": "wrong horse"})).await;
    assert_eq!(error_message(resp, 403).await, "Incorrect password");

    let resp = app
        .client
        .post(app.url(&format!("/api/verify/{code}")))
        .header("user-agent", "verified")
        .json(&json!({"password": "correct horse"}))
        .send()
        .await
        .expect("verify");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(body, json!({ "redirect": TARGET }));

    // Neither the refused attempts nor anything else recorded a click: the one entry is
    // the successful verify.
    app.wait_for_stream_clicks(1).await;
    let e = &app.stream_clicks().await[0];
    assert_eq!(e["link"], id_of(&link));
    assert_eq!(e["kind"], "click");
    assert_eq!(e["ua"], "verified");
}

#[tokio::test]
async fn the_json_routes_of_an_unknown_code_answer_404_in_the_json_error_shape() {
    let app = TestApp::start().await;
    // API routes called by scripts (the password form reads `error` from the JSON): the
    // contract's error shape, unlike the browser-facing redirect's plain text.
    let cases = [
        ("NoSuchCode1", Some(json!({"password": "x"}))),
        ("NoSuchCode1", Some(json!({}))),
        ("no.such.code", Some(json!({}))),
        ("NoSuchCode1", None),
        ("no.such.code", None),
    ];
    for (code, verify_body) in cases {
        let (case, resp) = match verify_body {
            Some(body) => (
                format!("POST /api/verify/{code} {body}"),
                verify(&app, code, body).await,
            ),
            None => (
                format!("GET /api/rate-limit-status/{code}"),
                app.visit(&format!("/api/rate-limit-status/{code}")).await,
            ),
        };
        Says::Exactly("Link not found").check(&case, &case_error(&case, resp, 404).await);
    }
}

#[tokio::test]
async fn verify_rejects_a_password_of_the_wrong_type_naming_the_field() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let code = code_of(
        &app.create_link(&key, json!({"isProtected": true, "password": "pw-123"}))
            .await,
    );
    let message = error_message(verify(&app, &code, json!({"password": 12345})).await, 400).await;
    assert!(message.contains("password"), "names the field: {message}");
    let resp = app
        .client
        .post(app.url(&format!("/api/verify/{code}")))
        .header("content-type", "application/json")
        .body("{\"password\": ")
        .send()
        .await
        .expect("verify");
    assert!(!error_message(resp, 400).await.is_empty());
}

#[tokio::test]
async fn after_too_many_wrong_passwords_even_the_right_one_answers_429() {
    let app = TestApp::builder()
        .set("RATE_LIMIT_VERIFY_FAILURES_PER_CLIENT", "3")
        .set("TRUST_PROXY", "1")
        .start()
        .await;
    let key = app.key(false).await;
    let code = code_of(
        &app.create_link(&key, json!({"isProtected": true, "password": "right-one"}))
            .await,
    );
    let attempt = |ip: &'static str, password: &'static str| {
        app.client
            .post(app.url(&format!("/api/verify/{code}")))
            .header("x-forwarded-for", ip)
            .json(&json!({ "password": password }))
            .send()
    };
    wait_for_room_in_window(15 * 60).await;
    for i in 0..3 {
        let resp = attempt("203.0.113.10", "wrong").await.expect("verify");
        assert_eq!(
            error_message(resp, 403).await,
            "Incorrect password",
            "attempt {i}"
        );
    }
    let resp = attempt("203.0.113.10", "right-one").await.expect("verify");
    assert_eq!(resp.status(), 429);
    assert!(header_number(&resp, "retry-after") >= 1);
    assert!(!error_message(resp, 429).await.is_empty());
    let resp = attempt("203.0.113.10", "wrong").await.expect("verify");
    assert_eq!(resp.status(), 429, "wrong passwords are refused unchecked");

    // The throttle is per client: another address with the right password still gets in.
    let resp = attempt("198.51.100.20", "right-one").await.expect("verify");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(body, json!({ "redirect": TARGET }));
}

#[tokio::test]
async fn wrong_passwords_from_many_clients_are_throttled_per_link() {
    let app = TestApp::builder()
        .set("RATE_LIMIT_VERIFY_FAILURES_PER_LINK", "3")
        .set("TRUST_PROXY", "1")
        .start()
        .await;
    let key = app.key(false).await;
    let code = code_of(
        &app.create_link(&key, json!({"isProtected": true, "password": "right-one"}))
            .await,
    );
    let other = code_of(
        &app.create_link(&key, json!({"isProtected": true, "password": "right-one"}))
            .await,
    );
    let attempt = |code: &str, ip: &'static str, password: &'static str| {
        app.client
            .post(app.url(&format!("/api/verify/{code}")))
            .header("x-forwarded-for", ip)
            .json(&json!({ "password": password }))
            .send()
    };
    wait_for_room_in_window(15 * 60).await;
    // A distributed guesser: each address tries once.
    for ip in ["203.0.113.1", "203.0.113.2", "203.0.113.3"] {
        let resp = attempt(&code, ip, "wrong").await.expect("verify");
        assert_eq!(error_message(resp, 403).await, "Incorrect password", "{ip}");
    }
    let resp = attempt(&code, "203.0.113.4", "wrong")
        .await
        .expect("verify");
    assert_eq!(resp.status(), 429, "the link is throttled for every client");
    let resp = attempt(&code, "198.51.100.9", "right-one")
        .await
        .expect("verify");
    assert_eq!(resp.status(), 429);
    // Another link is not.
    let resp = attempt(&other, "203.0.113.4", "right-one")
        .await
        .expect("verify");
    assert_eq!(resp.status(), 200);
}

// ---------------------------------------------------------------------------------------
// GET /api/rate-limit-status/{code}
// ---------------------------------------------------------------------------------------

async fn rate_limit_status(app: &TestApp, code: &str) -> Value {
    let resp = app
        .get(&format!("/api/rate-limit-status/{code}"))
        .send()
        .await
        .expect("status");
    assert_eq!(resp.status(), 200, "rate-limit-status needs no key");
    resp.json().await.expect("JSON")
}

fn assert_reset_time_within_a_minute(status: &Value) {
    let s = status["resetTime"].as_str().expect("resetTime is a string");
    let reset = chrono::DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("resetTime {s:?} is RFC 3339: {e}"))
        .with_timezone(&Utc);
    let now = Utc::now();
    assert!(
        reset > now - chrono::Duration::seconds(2) && reset <= now + chrono::Duration::seconds(61),
        "resetTime {s} within the next minute"
    );
}

#[tokio::test]
async fn rate_limit_status_reports_the_cap_and_the_clicks_of_the_last_minute() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let code = code_of(
        &app.create_link(&key, json!({"isRateLimited": true, "maxClicksPerMin": 3}))
            .await,
    );
    wait_for_room_in_window(60).await;
    let status = rate_limit_status(&app, &code).await;
    let fields: std::collections::BTreeSet<&str> = status
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields,
        [
            "clicksInLastMinute",
            "isCurrentlyLimited",
            "isRateLimited",
            "maxClicksPerMin",
            "remainingClicks",
            "resetTime",
            "shortCode"
        ]
        .into_iter()
        .collect(),
        "{status}"
    );
    assert_eq!(status["shortCode"], code.as_str());
    assert_eq!(status["isRateLimited"], true);
    assert_eq!(status["maxClicksPerMin"], 3);
    assert_eq!(status["clicksInLastMinute"], 0);
    assert_eq!(status["remainingClicks"], 3);
    assert_eq!(status["isCurrentlyLimited"], false);
    assert_reset_time_within_a_minute(&status);

    for _ in 0..2 {
        assert_eq!(app.visit(&format!("/{code}")).await.status(), 302);
    }
    eventually(Duration::from_secs(10), || async {
        rate_limit_status(&app, &code).await["clicksInLastMinute"] == 2
    })
    .await;
    let status = rate_limit_status(&app, &code).await;
    assert_eq!(status["remainingClicks"], 1);
    assert_eq!(status["isCurrentlyLimited"], false);

    assert_eq!(app.visit(&format!("/{code}")).await.status(), 302);
    assert_eq!(app.visit(&format!("/{code}")).await.status(), 429);
    eventually(Duration::from_secs(10), || async {
        rate_limit_status(&app, &code).await["clicksInLastMinute"] == 3
    })
    .await;
    let status = rate_limit_status(&app, &code).await;
    assert_eq!(status["remainingClicks"], 0);
    assert_eq!(status["isCurrentlyLimited"], true);
    assert_reset_time_within_a_minute(&status);
}

#[tokio::test]
async fn rate_limit_status_on_another_instance_sees_the_clicks_within_moments() {
    let (a, b) = TestApp::two_instances("it-a", "it-b").await;
    let key = a.key(false).await;
    let code = code_of(
        &a.create_link(&key, json!({"isRateLimited": true, "maxClicksPerMin": 10}))
            .await,
    );
    wait_for_room_in_window(60).await;
    assert_eq!(rate_limit_status(&b, &code).await["clicksInLastMinute"], 0);
    for _ in 0..2 {
        assert_eq!(a.visit(&format!("/{code}")).await.status(), 302);
    }
    // Counted on instance a, shipped to Redis by its flusher, read by instance b.
    eventually(Duration::from_secs(10), || async {
        rate_limit_status(&b, &code).await["clicksInLastMinute"] == 2
    })
    .await;
    assert_eq!(rate_limit_status(&b, &code).await["remainingClicks"], 8);
}

#[tokio::test]
async fn rate_limit_status_of_an_unlimited_link_reports_its_default_cap() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let code = code_of(&app.create_link(&key, json!({})).await);
    let status = rate_limit_status(&app, &code).await;
    assert_eq!(status["isRateLimited"], false);
    assert_eq!(status["maxClicksPerMin"], 100);
    assert_eq!(status["isCurrentlyLimited"], false);
}

//! Link management over HTTP: `POST /api/shorten`, `GET /api/links`, `GET/PATCH/DELETE
//! /api/links/{id}` and `GET /api/top-links`, against a real PostgreSQL and Redis. Covers the
//! link object's shape, every validation the contract names, key checks, ownership isolation,
//! and the **fix** points (no password or hash in any answer; Argon2id at rest).

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::support::{assert_fields, case_error, error_message, Says, TestApp};

const CODE_ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";

/// Every field of the contract's link object, and nothing else.
const LINK_FIELDS: &[&str] = &[
    "id",
    "shortCode",
    "shortUrl",
    "originalUrl",
    "clicks",
    "title",
    "description",
    "favicon",
    "isProtected",
    "isExpiring",
    "expiresAt",
    "isRateLimited",
    "maxClicksPerMin",
    "campaignId",
    "createdAt",
    "updatedAt",
    "redirectType",
    "forwardQuery",
    "tags",
    "redirectRules",
];

fn assert_is_link_object(link: &Value) {
    assert_fields(link, LINK_FIELDS, "link");
}

/// RFC 3339 UTC with milliseconds, as in the contract: `2026-11-23T08:00:00.000Z`.
fn assert_millis_utc_timestamp(value: &Value, field: &str) -> DateTime<Utc> {
    let s = value
        .as_str()
        .unwrap_or_else(|| panic!("{field} is a string: {value}"));
    assert_eq!(
        s.len(),
        24,
        "{field} = {s:?} has the shape YYYY-MM-DDTHH:MM:SS.mmmZ"
    );
    assert!(s.ends_with('Z'), "{field} = {s:?} is UTC with a Z");
    assert_eq!(&s[19..20], ".", "{field} = {s:?} carries milliseconds");
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{field} = {s:?} is RFC 3339: {e}"))
        .with_timezone(&Utc)
}

fn assert_generated_code(code: &str) {
    assert_eq!(code.len(), 8, "generated code {code:?} has 8 characters");
    assert!(
        code.chars().all(|c| CODE_ALPHABET.contains(c)),
        "generated code {code:?} uses only [A-Za-z0-9_-]"
    );
}

/// An answer must never carry a password or its hash, under any key name or in any value.
fn assert_no_secret(body: &str, plaintext: &str) {
    assert!(
        !body.contains("\"password\""),
        "answer has a password key: {body}"
    );
    assert!(
        !body.contains("\"passwordHash\"") && !body.contains("\"password_hash\""),
        "answer has a password hash key: {body}"
    );
    assert!(
        !body.contains("$argon2"),
        "answer has an Argon2 hash: {body}"
    );
    assert!(
        !body.contains(plaintext),
        "answer has the plaintext password: {body}"
    );
}

fn str_field<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} is a string: {v}"))
}

async fn shorten_error(app: &TestApp, key: &str, body: Value, status: u16) -> String {
    let resp = app
        .post_json("/api/shorten", key, body)
        .send()
        .await
        .expect("shorten");
    error_message(resp, status).await
}

async fn list_links(app: &TestApp, key: &str, query: &str) -> (Vec<Value>, String) {
    let resp = app
        .get_with_key(&format!("/api/links{query}"), key)
        .send()
        .await
        .expect("list links");
    assert_eq!(resp.status(), 200, "GET /api/links{query}");
    let total = resp
        .headers()
        .get("x-total-count")
        .expect("X-Total-Count header")
        .to_str()
        .expect("X-Total-Count is text")
        .to_string();
    let links: Vec<Value> = resp.json().await.expect("list is a JSON array");
    (links, total)
}

fn codes(links: &[Value]) -> Vec<String> {
    links
        .iter()
        .map(|l| str_field(l, "shortCode").to_string())
        .collect()
}

async fn stored_password_hash(app: &TestApp, id: &str) -> Option<String> {
    sqlx::query_scalar("SELECT password_hash FROM links WHERE id = $1::uuid")
        .bind(id)
        .fetch_one(&app.db)
        .await
        .expect("link row")
}

async fn link_row_exists(app: &TestApp, id: &str) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM links WHERE id = $1::uuid)")
        .bind(id)
        .fetch_one(&app.db)
        .await
        .expect("exists query")
}

async fn location_of(app: &TestApp, code: &str) -> String {
    let resp = app.visit(&format!("/{code}")).await;
    assert_eq!(resp.status(), 302, "GET /{code} redirects");
    resp.headers()["location"]
        .to_str()
        .expect("Location is text")
        .to_string()
}

/// Creates a link with a custom code and follows it twice, so every cache layer holds it:
/// the link's id.
async fn warm_link(app: &TestApp, key: &str, url: &str, code: &str) -> String {
    let link = app
        .shorten(key, json!({"url": url, "customCode": code}))
        .await;
    for _ in 0..2 {
        assert_eq!(location_of(app, code).await, url);
    }
    str_field(&link, "id").to_string()
}

// ---------------------------------------------------------------------------------------
// POST /api/shorten
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn shorten_answers_201_with_every_field_of_the_link_object() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let before = Utc::now() - chrono::Duration::seconds(5);
    let resp = app
        .post_json(
            "/api/shorten",
            &key,
            json!({"url": "https://example.com/page?q=1"}),
        )
        .send()
        .await
        .expect("shorten");
    assert_eq!(resp.status(), 201);
    let link: Value = resp.json().await.expect("json");
    assert_is_link_object(&link);

    let id = str_field(&link, "id");
    uuid::Uuid::parse_str(id).expect("id is a UUID");
    let code = str_field(&link, "shortCode");
    assert_generated_code(code);
    assert_eq!(link["shortUrl"], format!("https://bl.example/{code}"));
    assert_eq!(link["originalUrl"], "https://example.com/page?q=1");
    assert_eq!(link["clicks"], 0);
    assert_eq!(link["title"], Value::Null);
    assert_eq!(link["description"], Value::Null);
    assert_eq!(link["favicon"], Value::Null);
    assert_eq!(link["isProtected"], false);
    assert_eq!(link["isExpiring"], false);
    assert_eq!(link["expiresAt"], Value::Null);
    assert_eq!(link["isRateLimited"], false);
    assert_eq!(link["maxClicksPerMin"], 100);
    assert_eq!(link["campaignId"], Value::Null);
    let created = assert_millis_utc_timestamp(&link["createdAt"], "createdAt");
    let updated = assert_millis_utc_timestamp(&link["updatedAt"], "updatedAt");
    let after = Utc::now() + chrono::Duration::seconds(5);
    assert!(before < created && created < after, "createdAt is now");
    assert!(updated >= created, "updatedAt is not before createdAt");

    // The link really exists and redirects.
    assert_eq!(
        location_of(&app, code).await,
        "https://example.com/page?q=1"
    );
}

#[tokio::test]
async fn shorten_generates_distinct_eight_character_codes() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let mut seen = BTreeSet::new();
    for i in 0..10 {
        let link = app
            .shorten(&key, json!({"url": format!("https://example.com/{i}")}))
            .await;
        let code = str_field(&link, "shortCode").to_string();
        assert_generated_code(&code);
        assert!(seen.insert(code), "codes are distinct");
    }
}

#[tokio::test]
async fn shorten_accepts_a_custom_code_and_every_option() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let expires = Utc::now() + chrono::Duration::hours(3);
    let link = app
        .shorten(
            &key,
            json!({
                "url": "http://example.org/landing",
                "customCode": "my-Code_42",
                "isExpiring": true,
                "expiresAt": expires.to_rfc3339(),
                "isRateLimited": true,
                "maxClicksPerMin": 7,
            }),
        )
        .await;
    assert_is_link_object(&link);
    assert_eq!(link["shortCode"], "my-Code_42");
    assert_eq!(link["shortUrl"], "https://bl.example/my-Code_42");
    assert_eq!(link["originalUrl"], "http://example.org/landing");
    assert_eq!(link["isExpiring"], true);
    let at = assert_millis_utc_timestamp(&link["expiresAt"], "expiresAt");
    assert!(
        (at - expires).num_milliseconds().abs() < 1000,
        "expiresAt is the requested instant"
    );
    assert_eq!(link["isRateLimited"], true);
    assert_eq!(link["maxClicksPerMin"], 7);
    assert_eq!(link["isProtected"], false);

    // Codes at both ends of the allowed length.
    for code in ["abc".to_string(), "x".repeat(64)] {
        let link = app
            .shorten(
                &key,
                json!({"url": "https://example.com/", "customCode": code}),
            )
            .await;
        assert_eq!(link["shortCode"], code.as_str());
    }
}

#[tokio::test]
async fn shorten_answers_409_when_the_custom_code_is_taken() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let other = app.key(false).await;
    app.shorten(
        &key,
        json!({"url": "https://example.com/a", "customCode": "taken-code"}),
    )
    .await;
    for k in [&key, &other] {
        let message = shorten_error(
            &app,
            k,
            json!({"url": "https://example.com/b", "customCode": "taken-code"}),
            409,
        )
        .await;
        assert!(!message.is_empty());
    }
    // The first link is untouched.
    assert_eq!(
        location_of(&app, "taken-code").await,
        "https://example.com/a"
    );
}

#[tokio::test]
async fn concurrent_requests_for_one_custom_code_create_exactly_one_link() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let requests = (0..6).map(|i| {
        app.post_json(
            "/api/shorten",
            &key,
            json!({"url": format!("https://example.com/{i}"), "customCode": "race"}),
        )
        .send()
    });
    let mut statuses: Vec<u16> = futures_statuses(requests).await;
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409, 409, 409, 409, 409]);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM links WHERE short_code = 'race'")
        .fetch_one(&app.db)
        .await
        .expect("count");
    assert_eq!(count, 1);
}

/// Runs the requests concurrently on this task and returns their statuses.
async fn futures_statuses<F>(requests: impl Iterator<Item = F>) -> Vec<u16>
where
    F: std::future::Future<Output = reqwest::Result<reqwest::Response>> + Send + 'static,
{
    let handles: Vec<_> = requests.map(tokio::spawn).collect();
    let mut statuses = Vec::new();
    for h in handles {
        statuses.push(
            h.await
                .expect("request task")
                .expect("request")
                .status()
                .as_u16(),
        );
    }
    statuses
}

/// Every body `POST /api/shorten` must refuse with 400, labelled, and what the message says.
fn invalid_shorten_bodies() -> Vec<(String, Value, Says<'static>)> {
    let url = "https://example.com/";
    let mut cases = Vec::new();
    for code in ["api", "health", "ready", "metrics"] {
        cases.push((
            format!("reserved customCode {code:?}"),
            json!({"url": url, "customCode": code}),
            Says::Mentions("reserved"),
        ));
    }
    let too_long = "a".repeat(65);
    for code in [
        "ab",
        too_long.as_str(),
        "has space",
        "slash/x",
        "dot.x",
        "ümlaut",
        "semi;colon",
        "q?x=1",
    ] {
        cases.push((
            format!("customCode {code:?} with bad characters or length"),
            json!({"url": url, "customCode": code}),
            Says::Mentions("customCode"),
        ));
    }
    for bad in [
        "",
        "example.com",
        "/relative/path",
        "ftp://files.example/x",
        "javascript:alert(1)",
        "data:text/html,<b>x</b>",
        "https://",
        "http://a b.example/",
    ] {
        cases.push((
            format!("url {bad:?} is not absolute http(s)"),
            json!({ "url": bad }),
            Says::Mentions("url"),
        ));
    }
    cases.push(("missing url".into(), json!({}), Says::Mentions("url")));
    let over = format!("{url}{}", "a".repeat(2049 - url.len()));
    cases.push((
        "url of 2049 characters".into(),
        json!({ "url": over }),
        Says::Mentions("2048"),
    ));
    for (flag, field, message) in [
        (
            "isProtected",
            "password",
            "Password required for protected links",
        ),
        ("isExpiring", "expiresAt", "Expiration date required"),
    ] {
        for (label, value) in [
            ("no", None),
            ("empty", Some(json!(""))),
            ("null", Some(Value::Null)),
        ] {
            let mut body = json!({ "url": url });
            body[flag] = json!(true);
            if let Some(value) = value {
                body[field] = value;
            }
            cases.push((
                format!("{flag} with {label} {field}"),
                body,
                Says::Exactly(message),
            ));
        }
    }
    let past = (Utc::now() - chrono::Duration::minutes(1)).to_rfc3339();
    cases.push((
        "expiry date in the past".into(),
        json!({"url": url, "isExpiring": true, "expiresAt": past}),
        Says::Exactly("Expiration date must be in the future"),
    ));
    // Not a date at all is a 400 as well, never a 500.
    cases.push((
        "expiry date that is not a date".into(),
        json!({"url": url, "isExpiring": true, "expiresAt": "tomorrow"}),
        Says::Mentions("expiresAt"),
    ));
    for n in [0_i64, -5, 1_000_001] {
        cases.push((
            format!("maxClicksPerMin {n} outside 1..=1000000"),
            json!({"url": url, "isRateLimited": true, "maxClicksPerMin": n}),
            Says::Mentions("maxClicksPerMin"),
        ));
    }
    for (body, field) in [
        (json!({"url": 5}), "url"),
        (
            json!({"url": url, "isProtected": "yes", "password": "p"}),
            "isProtected",
        ),
        (
            json!({"url": url, "maxClicksPerMin": "ten"}),
            "maxClicksPerMin",
        ),
        (json!({"url": url, "customCode": ["a", "b"]}), "customCode"),
        (
            json!({"url": url, "campaignId": "not-a-uuid"}),
            "campaignId",
        ),
        (
            json!({"url": url, "maxClicksPerMin": 1.5}),
            "maxClicksPerMin",
        ),
        (
            json!({"url": url, "maxClicksPerMin": 1e20}),
            "maxClicksPerMin",
        ),
        (
            json!({"url": url, "isExpiring": true, "expiresAt": 1_900_000_000}),
            "expiresAt",
        ),
    ] {
        cases.push((format!("wrong type: {body}"), body, Says::Mentions(field)));
    }
    cases
}

#[tokio::test]
async fn shorten_refuses_each_invalid_body_with_400_saying_what_is_wrong() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    for (case, body, says) in invalid_shorten_bodies() {
        let resp = app
            .post_json("/api/shorten", &key, body)
            .send()
            .await
            .expect("shorten");
        says.check(&case, &case_error(&case, resp, 400).await);
    }
    let (links, total) = list_links(&app, &key, "").await;
    assert!(links.is_empty(), "no refused body created a link");
    assert_eq!(total, "0");
}

#[tokio::test]
async fn shorten_accepts_2048_character_urls_and_1_to_1000000_clicks_per_min() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let prefix = "https://example.com/";
    let exactly = format!("{prefix}{}", "a".repeat(2048 - prefix.len()));
    assert_eq!(exactly.len(), 2048);
    let link = app.shorten(&key, json!({ "url": exactly })).await;
    assert_eq!(link["originalUrl"], exactly.as_str());

    for n in [1_i64, 1_000_000] {
        let link = app
            .shorten(
                &key,
                json!({"url": "https://example.com/", "isRateLimited": true, "maxClicksPerMin": n}),
            )
            .await;
        assert_eq!(link["maxClicksPerMin"], n);
    }
}

#[tokio::test]
async fn a_revoked_key_is_refused_with_403() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let link = app
        .shorten(&key, json!({"url": "https://example.com/"}))
        .await;
    let id = str_field(&link, "id").to_string();
    let revoked = sqlx::query("UPDATE api_keys SET revoked_at = now()")
        .execute(&app.db)
        .await
        .expect("revoke");
    assert_eq!(revoked.rows_affected(), 1);

    let resp = app
        .post_json("/api/shorten", &key, json!({"url": "https://example.com/"}))
        .send()
        .await
        .expect("shorten");
    let body: Value = {
        assert_eq!(resp.status(), 403);
        resp.json().await.expect("json")
    };
    assert_eq!(body, json!({"error": "Invalid API Key"}));
    for resp in [
        app.get_with_key("/api/links", &key)
            .send()
            .await
            .expect("list"),
        app.links().get(&key, &id).send().await.expect("get"),
        app.links().delete(&key, &id).send().await.expect("delete"),
    ] {
        assert_eq!(error_message(resp, 403).await, "Invalid API Key");
    }
    assert!(link_row_exists(&app, &id).await);
}

#[tokio::test]
async fn shorten_rejects_malformed_json_with_400() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    for raw in [
        r#"{"url": "https://example.com/""#,
        "{url: 1}",
        "not json",
        "",
    ] {
        let resp = app
            .client
            .post(app.url("/api/shorten"))
            .header("x-api-key", &key)
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .expect("shorten");
        let message = error_message(resp, 400).await;
        assert!(!message.is_empty(), "{raw:?}");
    }
}

#[tokio::test]
async fn shorten_refuses_a_body_over_one_mebibyte_with_413() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let padding = "x".repeat(1024 * 1024);
    let raw = format!(r#"{{"url": "https://example.com/", "pad": "{padding}"}}"#);
    let resp = app
        .client
        .post(app.url("/api/shorten"))
        .header("x-api-key", &key)
        .header("content-type", "application/json")
        .body(raw)
        .send()
        .await
        .expect("shorten");
    let message = error_message(resp, 413).await;
    assert!(!message.is_empty());
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM links")
        .fetch_one(&app.db)
        .await
        .expect("count");
    assert_eq!(count, 0, "nothing was created");
}

#[tokio::test]
async fn the_shorten_limit_per_ip_answers_429_with_retry_after_and_rate_limit_headers() {
    let app = TestApp::builder()
        .set("RATE_LIMIT_SHORTEN_PER_5MIN", "3")
        .start()
        .await;
    let key = app.key(false).await;
    for remaining in ["2", "1", "0"] {
        let resp = app
            .post_json("/api/shorten", &key, json!({"url": "https://example.com/"}))
            .send()
            .await
            .expect("shorten");
        assert_eq!(resp.status(), 201);
        assert_eq!(resp.headers()["ratelimit-limit"], "3");
        assert_eq!(resp.headers()["ratelimit-remaining"], remaining);
    }
    // A different key from the same IP shares the per-IP budget.
    let other = app.key(false).await;
    for k in [&key, &other] {
        let resp = app
            .post_json("/api/shorten", k, json!({"url": "https://example.com/"}))
            .send()
            .await
            .expect("shorten");
        assert_eq!(resp.status(), 429);
        let h = resp.headers().clone();
        let retry_after: u64 = h["retry-after"]
            .to_str()
            .expect("Retry-After is text")
            .parse()
            .expect("Retry-After is seconds");
        assert!(
            (1..=300).contains(&retry_after),
            "Retry-After {retry_after}"
        );
        assert_eq!(h["ratelimit-limit"], "3");
        assert_eq!(h["ratelimit-remaining"], "0");
        let reset: u64 = h["ratelimit-reset"]
            .to_str()
            .expect("RateLimit-Reset is text")
            .parse()
            .expect("RateLimit-Reset is seconds");
        assert!((1..=300).contains(&reset), "RateLimit-Reset {reset}");
        assert!(!error_message(resp, 429).await.is_empty());
    }
    let (_, total) = list_links(&app, &key, "").await;
    assert_eq!(total, "3", "refused requests created nothing");
}

/// The key's limits and the address's shorten limit are decided in one step, all or nothing:
/// a create refused by the address limit is counted against none of them, so a client that
/// keeps retrying a refused create does not use up its key's budget for other routes.
#[tokio::test]
async fn a_create_refused_by_the_address_limit_is_not_counted_against_the_key() {
    let app = TestApp::builder()
        .set("RATE_LIMIT_SHORTEN_PER_5MIN", "2")
        .start()
        .await;
    let key = app.key_with_limits(false, 5, 1_000).await;
    for _ in 0..2 {
        app.shorten(&key, json!({"url": "https://example.com/"}))
            .await;
    }
    for attempt in 0..6 {
        let resp = app
            .post_json("/api/shorten", &key, json!({"url": "https://example.com/"}))
            .send()
            .await
            .expect("shorten");
        assert_eq!(
            error_message(resp, 429).await,
            "Too many links created from this IP, please try again later",
            "refused create {attempt}"
        );
    }
    // Two requests counted of the key's five per minute: three more are allowed.
    for n in 0..3 {
        let resp = app
            .get_with_key("/api/links", &key)
            .send()
            .await
            .expect("list");
        assert_eq!(resp.status(), 200, "list {n} after the refused creates");
    }
}

/// The limits are sent by digest (EVALSHA); a Redis that lost its scripts (restarted,
/// `SCRIPT FLUSH`) gets the text again and the limits still hold.
#[tokio::test]
async fn limits_still_hold_after_redis_forgets_its_scripts() {
    let app = TestApp::builder()
        .set("RATE_LIMIT_SHORTEN_PER_5MIN", "2")
        .start()
        .await;
    let key = app.key_with_limits(false, 100, 1_000).await;
    app.shorten(&key, json!({"url": "https://example.com/"}))
        .await;
    let mut redis = app.redis.clone();
    let flushed: String = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut redis)
        .await
        .expect("script flush");
    assert_eq!(flushed, "OK");
    app.shorten(&key, json!({"url": "https://example.com/"}))
        .await;
    let resp = app
        .post_json("/api/shorten", &key, json!({"url": "https://example.com/"}))
        .send()
        .await
        .expect("shorten");
    assert_eq!(
        error_message(resp, 429).await,
        "Too many links created from this IP, please try again later"
    );
}

// ---------------------------------------------------------------------------------------
// fix: passwords never leave the store; Argon2id at rest
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn no_answer_about_a_protected_link_contains_its_password_or_hash() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let secret = "Sup3r-s3cret-pw";
    let resp = app
        .post_json(
            "/api/shorten",
            &key,
            json!({"url": "https://example.com/private", "isProtected": true, "password": secret}),
        )
        .send()
        .await
        .expect("shorten");
    assert_eq!(resp.status(), 201);
    let body = resp.text().await.expect("body");
    assert_no_secret(&body, secret);
    let link: Value = serde_json::from_str(&body).expect("json");
    assert_is_link_object(&link);
    assert_eq!(link["isProtected"], true);
    let id = str_field(&link, "id").to_string();

    let resp = app.links().get(&key, &id).send().await.expect("get");
    assert_eq!(resp.status(), 200);
    assert_no_secret(&resp.text().await.expect("body"), secret);

    let resp = app
        .get_with_key("/api/links", &key)
        .send()
        .await
        .expect("list");
    assert_eq!(resp.status(), 200);
    assert_no_secret(&resp.text().await.expect("body"), secret);

    let resp = app
        .get_with_key("/api/top-links", &key)
        .send()
        .await
        .expect("top");
    assert_eq!(resp.status(), 200);
    assert_no_secret(&resp.text().await.expect("body"), secret);

    let new_secret = "an0ther-s3cret";
    let resp = app
        .links()
        .patch(
            &key,
            &id,
            json!({"title": "Private", "isProtected": true, "password": new_secret}),
        )
        .send()
        .await
        .expect("patch");
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.expect("body");
    assert_no_secret(&body, secret);
    assert_no_secret(&body, new_secret);
}

#[tokio::test]
async fn protected_link_passwords_are_stored_as_argon2id_hashes() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let link = app
        .shorten(
            &key,
            json!({"url": "https://example.com/private", "isProtected": true, "password": "first-pw"}),
        )
        .await;
    let id = str_field(&link, "id").to_string();
    let code = str_field(&link, "shortCode").to_string();
    let first = stored_password_hash(&app, &id)
        .await
        .expect("a protected link has a stored hash");
    assert!(first.starts_with("$argon2id$"), "stored hash: {first}");
    assert!(!first.contains("first-pw"));

    // A new password through PATCH is hashed the same way and replaces the old one.
    let resp = app
        .links()
        .patch(&key, &id, json!({"password": "second-pw"}))
        .send()
        .await
        .expect("patch");
    assert_eq!(resp.status(), 200);
    let second = stored_password_hash(&app, &id).await.expect("hash");
    assert!(second.starts_with("$argon2id$"), "stored hash: {second}");
    assert_ne!(first, second);

    let verify = |password: &'static str| {
        app.client
            .post(app.url(&format!("/api/verify/{code}")))
            .json(&json!({ "password": password }))
            .send()
    };
    assert_eq!(verify("first-pw").await.expect("verify").status(), 403);
    let resp = verify("second-pw").await.expect("verify");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body, json!({"redirect": "https://example.com/private"}));
}

// ---------------------------------------------------------------------------------------
// GET /api/links
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn list_returns_only_the_callers_links_newest_first_with_the_total_count() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let other = app.key(false).await;
    let mut created = Vec::new();
    for i in 0..3 {
        let link = app
            .shorten(
                &key,
                json!({"url": format!("https://example.com/{i}"), "customCode": format!("mine-{i}")}),
            )
            .await;
        created.push(link);
    }
    app.shorten(
        &other,
        json!({"url": "https://example.com/theirs", "customCode": "theirs"}),
    )
    .await;

    let (links, total) = list_links(&app, &key, "").await;
    assert_eq!(total, "3");
    assert_eq!(codes(&links), ["mine-2", "mine-1", "mine-0"]);
    for link in &links {
        assert_is_link_object(link);
    }
    // The list carries the same objects as the create answers.
    created.reverse();
    assert_eq!(links, created);

    let (links, total) = list_links(&app, &other, "").await;
    assert_eq!(total, "1");
    assert_eq!(codes(&links), ["theirs"]);

    let fresh = app.key(false).await;
    let (links, total) = list_links(&app, &fresh, "").await;
    assert!(links.is_empty());
    assert_eq!(total, "0");
}

#[tokio::test]
async fn list_pages_with_limit_and_offset() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    for i in 0..5 {
        app.shorten(
            &key,
            json!({"url": "https://example.com/", "customCode": format!("page-{i}")}),
        )
        .await;
    }
    let (links, total) = list_links(&app, &key, "?limit=2&offset=0").await;
    assert_eq!(
        (codes(&links), total.as_str()),
        (vec!["page-4".to_string(), "page-3".to_string()], "5")
    );
    let (links, total) = list_links(&app, &key, "?limit=2&offset=2").await;
    assert_eq!(
        (codes(&links), total.as_str()),
        (vec!["page-2".to_string(), "page-1".to_string()], "5")
    );
    let (links, total) = list_links(&app, &key, "?limit=2&offset=4").await;
    assert_eq!(
        (codes(&links), total.as_str()),
        (vec!["page-0".to_string()], "5")
    );
    let (links, total) = list_links(&app, &key, "?offset=9").await;
    assert!(links.is_empty());
    assert_eq!(total, "5");
    let (links, _) = list_links(&app, &key, "?limit=1").await;
    assert_eq!(codes(&links), ["page-4"]);
}

#[tokio::test]
async fn list_and_top_links_refuse_a_limit_or_offset_out_of_range_with_400_naming_it() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let list = [
        "limit=0",
        "limit=501",
        "limit=-1",
        "limit=ten",
        "offset=-1",
        "offset=x",
    ]
    .map(|query| ("/api/links", query));
    let top = ["limit=0", "limit=101", "limit=abc"].map(|query| ("/api/top-links", query));
    for (path, query) in list.into_iter().chain(top) {
        let case = format!("GET {path}?{query}");
        let resp = app
            .get_with_key(&format!("{path}?{query}"), &key)
            .send()
            .await
            .expect("request");
        let name = query.split('=').next().expect("name");
        Says::Mentions(name).check(&case, &case_error(&case, resp, 400).await);
    }
    // The limits themselves are accepted.
    for query in ["?limit=1", "?limit=500"] {
        let (links, total) = list_links(&app, &key, query).await;
        assert!(links.is_empty());
        assert_eq!(total, "0");
    }
}

#[tokio::test]
async fn an_admin_key_lists_every_link() {
    let app = TestApp::start().await;
    let alice = app.key(false).await;
    let bob = app.key(false).await;
    let admin = app.key(true).await;
    app.shorten(
        &alice,
        json!({"url": "https://example.com/a", "customCode": "alice"}),
    )
    .await;
    app.shorten(
        &bob,
        json!({"url": "https://example.com/b", "customCode": "bob"}),
    )
    .await;
    let (links, total) = list_links(&app, &admin, "").await;
    assert_eq!(total, "2");
    assert_eq!(codes(&links), ["bob", "alice"]);
}

// ---------------------------------------------------------------------------------------
// GET / PATCH / DELETE /api/links/{id}
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn get_returns_the_callers_link_by_id() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let link = app
        .shorten(&key, json!({"url": "https://example.com/one"}))
        .await;
    let got = app.links().fetch(&key, str_field(&link, "id")).await;
    assert_is_link_object(&got);
    assert_eq!(got, link);
}

#[tokio::test]
async fn another_keys_link_answers_404_on_get_patch_and_delete_and_survives() {
    let app = TestApp::start().await;
    let owner = app.key(false).await;
    let intruder = app.key(false).await;
    let link = app
        .shorten(
            &owner,
            json!({"url": "https://example.com/owned", "customCode": "owned-link"}),
        )
        .await;
    let id = str_field(&link, "id").to_string();

    app.links()
        .assert_item_routes_refuse(
            &intruder,
            &id,
            json!({"originalUrl": "https://evil.example/", "title": "pwned"}),
            404,
            "Link not found",
        )
        .await;

    assert!(link_row_exists(&app, &id).await, "the link still exists");
    let unchanged = app.links().fetch(&owner, &id).await;
    assert_eq!(unchanged, link, "the intruder changed nothing");
    assert_eq!(
        location_of(&app, "owned-link").await,
        "https://example.com/owned"
    );
}

#[tokio::test]
async fn an_admin_key_reads_changes_and_deletes_any_link() {
    let app = TestApp::start().await;
    let owner = app.key(false).await;
    let admin = app.key(true).await;
    let link = app
        .shorten(
            &owner,
            json!({"url": "https://example.com/a", "customCode": "admin-target"}),
        )
        .await;
    let id = str_field(&link, "id").to_string();

    let resp = app.links().get(&admin, &id).send().await.expect("get");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.expect("json"), link);

    let patched = app
        .links()
        .patch_ok(&admin, &id, json!({"title": "Moderated"}))
        .await;
    assert_eq!(patched["title"], "Moderated");
    // Still the owner's link.
    let resp = app.links().get(&owner, &id).send().await.expect("get");
    assert_eq!(
        resp.json::<Value>().await.expect("json")["title"],
        "Moderated"
    );

    assert_eq!(
        app.links().delete_ok(&admin, &id).await,
        json!({"message": "Link deleted"})
    );
    assert!(!link_row_exists(&app, &id).await);
}

#[tokio::test]
async fn patch_changes_every_editable_field() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let link = app
        .shorten(&key, json!({"url": "https://example.com/old"}))
        .await;
    let id = str_field(&link, "id").to_string();
    let campaign: Value = app
        .post_json("/api/campaigns", &key, json!({"name": "Spring"}))
        .send()
        .await
        .expect("campaign")
        .json()
        .await
        .expect("json");
    let campaign_id = str_field(&campaign, "id").to_string();
    let expires = Utc::now() + chrono::Duration::days(2);

    let patched = app
        .links()
        .patch_ok(
            &key,
            &id,
            json!({
                "originalUrl": "https://example.com/new",
                "title": "New title",
                "description": "New description",
                "isExpiring": true,
                "expiresAt": expires.to_rfc3339(),
                "isRateLimited": true,
                "maxClicksPerMin": 12,
                "campaignId": campaign_id,
            }),
        )
        .await;
    assert_is_link_object(&patched);
    assert_eq!(patched["id"], link["id"]);
    assert_eq!(patched["shortCode"], link["shortCode"]);
    assert_eq!(patched["shortUrl"], link["shortUrl"]);
    assert_eq!(patched["createdAt"], link["createdAt"]);
    assert_eq!(patched["originalUrl"], "https://example.com/new");
    assert_eq!(patched["title"], "New title");
    assert_eq!(patched["description"], "New description");
    assert_eq!(patched["isExpiring"], true);
    let at = assert_millis_utc_timestamp(&patched["expiresAt"], "expiresAt");
    assert!((at - expires).num_milliseconds().abs() < 1000);
    assert_eq!(patched["isRateLimited"], true);
    assert_eq!(patched["maxClicksPerMin"], 12);
    assert_eq!(patched["campaignId"], campaign_id.as_str());
    assert_eq!(patched["isProtected"], false);
    let created = assert_millis_utc_timestamp(&patched["createdAt"], "createdAt");
    let updated = assert_millis_utc_timestamp(&patched["updatedAt"], "updatedAt");
    assert!(updated >= created);

    // GET sees the same state.
    let resp = app.links().get(&key, &id).send().await.expect("get");
    assert_eq!(resp.json::<Value>().await.expect("json"), patched);

    // Fields can be cleared again; a PATCH leaves unnamed fields alone.
    let cleared = app
        .links()
        .patch_ok(
            &key,
            &id,
            json!({"title": null, "isExpiring": false, "isRateLimited": false, "campaignId": null}),
        )
        .await;
    assert_eq!(cleared["title"], Value::Null);
    assert_eq!(cleared["isExpiring"], false);
    assert_eq!(cleared["expiresAt"], Value::Null);
    assert_eq!(cleared["isRateLimited"], false);
    assert_eq!(cleared["campaignId"], Value::Null);
    assert_eq!(cleared["description"], "New description");
    assert_eq!(cleared["maxClicksPerMin"], 12);
    assert_eq!(cleared["originalUrl"], "https://example.com/new");
}

#[tokio::test]
async fn patch_applies_the_same_validation_as_shorten() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let other = app.key(false).await;
    let link = app
        .shorten(&key, json!({"url": "https://example.com/keep"}))
        .await;
    let id = str_field(&link, "id").to_string();
    let theirs: Value = app
        .post_json("/api/campaigns", &other, json!({"name": "Theirs"}))
        .send()
        .await
        .expect("campaign")
        .json()
        .await
        .expect("json");
    let past = (Utc::now() - chrono::Duration::minutes(1)).to_rfc3339();
    let too_long = format!("https://example.com/{}", "a".repeat(2048));

    let cases: Vec<(Value, Option<&str>, &str)> = vec![
        (
            json!({"originalUrl": "ftp://x.example/"}),
            None,
            "originalUrl",
        ),
        (json!({"originalUrl": "example.com"}), None, "originalUrl"),
        (json!({"originalUrl": too_long}), None, "originalUrl"),
        (
            json!({"isProtected": true}),
            Some("Password required for protected links"),
            "isProtected",
        ),
        (
            json!({"isProtected": true, "password": ""}),
            Some("Password required for protected links"),
            "isProtected",
        ),
        (
            json!({"isExpiring": true}),
            Some("Expiration date required"),
            "isExpiring",
        ),
        (
            json!({"isExpiring": true, "expiresAt": past}),
            Some("Expiration date must be in the future"),
            "expiresAt",
        ),
        (json!({"maxClicksPerMin": 0}), None, "maxClicksPerMin"),
        (
            json!({"maxClicksPerMin": 1_000_001}),
            None,
            "maxClicksPerMin",
        ),
        (json!({"maxClicksPerMin": "many"}), None, "maxClicksPerMin"),
        (json!({"isRateLimited": "yes"}), None, "isRateLimited"),
        (json!({"title": "t".repeat(501)}), None, "title"),
        (
            json!({"description": "d".repeat(2001)}),
            None,
            "description",
        ),
        (json!({"title": 5}), None, "title"),
        (json!({"campaignId": "nope"}), None, "campaignId"),
        (json!({"campaignId": theirs["id"]}), None, "campaignId"),
        (
            json!({"campaignId": uuid::Uuid::new_v4()}),
            None,
            "campaignId",
        ),
    ];
    for (body, exact, _) in &cases {
        let resp = app
            .links()
            .patch(&key, &id, body.clone())
            .send()
            .await
            .expect("patch");
        let message = error_message(resp, 400).await;
        match exact {
            Some(m) => assert_eq!(&message, m, "{body}"),
            None => assert!(!message.is_empty(), "{body}"),
        }
    }
    // Messages about a bad URL or number name what was wrong.
    for (body, _, field) in cases.iter().filter(|(_, exact, _)| exact.is_none()) {
        let resp = app
            .links()
            .patch(&key, &id, body.clone())
            .send()
            .await
            .expect("patch");
        let message = error_message(resp, 400).await;
        let named = message.contains(field) || (*field == "originalUrl" && message.contains("url"));
        assert!(named, "{body} -> {message}");
    }

    let resp = app
        .client
        .patch(app.url(&format!("/api/links/{id}")))
        .header("x-api-key", &key)
        .header("content-type", "application/json")
        .body("{\"title\": ")
        .send()
        .await
        .expect("patch");
    assert_eq!(resp.status(), 400);

    // Nothing was changed by any refused request.
    let resp = app.links().get(&key, &id).send().await.expect("get");
    assert_eq!(resp.json::<Value>().await.expect("json"), link);
}

#[tokio::test]
async fn patch_protects_and_unprotects_a_link() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let link = app
        .shorten(
            &key,
            json!({"url": "https://example.com/door", "customCode": "door"}),
        )
        .await;
    let id = str_field(&link, "id").to_string();
    assert_eq!(location_of(&app, "door").await, "https://example.com/door");

    let patched = app
        .links()
        .patch_ok(&key, &id, json!({"isProtected": true, "password": "knock"}))
        .await;
    assert_eq!(patched["isProtected"], true);
    assert!(stored_password_hash(&app, &id)
        .await
        .is_some_and(|h| h.starts_with("$argon2id$")));
    // The redirect no longer goes straight to the target.
    let resp = app.visit("/door").await;
    let straight_through =
        resp.status() == 302 && resp.headers()["location"] == "https://example.com/door";
    assert!(!straight_through, "a protected link asks for the password");

    let open = app
        .links()
        .patch_ok(&key, &id, json!({"isProtected": false}))
        .await;
    assert_eq!(open["isProtected"], false);
    assert_eq!(stored_password_hash(&app, &id).await, None);
    assert_eq!(location_of(&app, "door").await, "https://example.com/door");
}

#[tokio::test]
async fn after_a_patch_of_the_url_the_code_redirects_to_the_new_url_at_once() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    // Every cache layer holds the old target first.
    let id = warm_link(&app, &key, "https://example.com/before", "moving").await;
    let resp = app
        .links()
        .patch(
            &key,
            &id,
            json!({"originalUrl": "https://example.com/after"}),
        )
        .send()
        .await
        .expect("patch");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.expect("json")["originalUrl"],
        "https://example.com/after"
    );
    assert_eq!(
        location_of(&app, "moving").await,
        "https://example.com/after"
    );
    let resp = app.get("/api/moving").send().await.expect("api redirect");
    assert_eq!(resp.status(), 302);
    assert_eq!(resp.headers()["location"], "https://example.com/after");
}

#[tokio::test]
async fn after_delete_the_code_answers_404_link_not_found_at_once() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let id = warm_link(&app, &key, "https://example.com/gone", "short-lived").await;

    assert_eq!(
        app.links().delete_ok(&key, &id).await,
        json!({"message": "Link deleted"})
    );

    let resp = app.visit("/short-lived").await;
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.text().await.expect("text"), "Link not found");
    assert!(!link_row_exists(&app, &id).await);

    let resp = app.links().get(&key, &id).send().await.expect("get");
    assert_eq!(error_message(resp, 404).await, "Link not found");
    let resp = app.links().delete(&key, &id).send().await.expect("delete");
    assert_eq!(error_message(resp, 404).await, "Link not found");
    let (links, total) = list_links(&app, &key, "").await;
    assert!(links.is_empty());
    assert_eq!(total, "0");

    // The code is free again.
    let again = app
        .shorten(
            &key,
            json!({"url": "https://example.com/reborn", "customCode": "short-lived"}),
        )
        .await;
    assert_eq!(again["shortCode"], "short-lived");
    // A new link under a deleted code is reachable at once (no stale negative cache).
    assert_eq!(
        location_of(&app, "short-lived").await,
        "https://example.com/reborn"
    );
}

#[tokio::test]
async fn a_code_looked_up_before_it_existed_redirects_as_soon_as_it_is_created() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    for _ in 0..2 {
        let resp = app.visit("/not-yet").await;
        assert_eq!(resp.status(), 404);
        assert_eq!(resp.text().await.expect("text"), "Link not found");
    }
    app.shorten(
        &key,
        json!({"url": "https://example.com/now", "customCode": "not-yet"}),
    )
    .await;
    assert_eq!(
        location_of(&app, "not-yet").await,
        "https://example.com/now"
    );
}

#[tokio::test]
async fn patching_away_the_expiry_of_an_expired_link_revives_it_at_once() {
    // The expiry is changed behind the API's back below; a short cache lifetime bounds how
    // long the old date is served.
    let app = TestApp::builder()
        .set("REDIS_CACHE_TTL_SECS", "1")
        .start()
        .await;
    let key = app.key(false).await;
    let link = app
        .shorten(
            &key,
            json!({
                "url": "https://example.com/sale",
                "customCode": "sale",
                "isExpiring": true,
                "expiresAt": (Utc::now() + chrono::Duration::hours(1)).to_rfc3339(),
            }),
        )
        .await;
    let id = str_field(&link, "id").to_string();
    assert_eq!(location_of(&app, "sale").await, "https://example.com/sale");
    sqlx::query("UPDATE links SET expires_at = now() - interval '1 minute' WHERE id = $1::uuid")
        .bind(&id)
        .execute(&app.db)
        .await
        .expect("expire");
    // Cached targets still carry the old expiry until their lifetime ends.
    crate::support::eventually(Duration::from_secs(5), || async {
        app.visit("/sale").await.status() == 410
    })
    .await;

    let patched = app
        .links()
        .patch_ok(&key, &id, json!({"isExpiring": false}))
        .await;
    assert_eq!(patched["isExpiring"], false);
    assert_eq!(patched["expiresAt"], Value::Null);
    assert_eq!(location_of(&app, "sale").await, "https://example.com/sale");

    // And a new future date through PATCH alone (expiresAt implies isExpiring).
    let later = Utc::now() + chrono::Duration::days(3);
    let patched = app
        .links()
        .patch_ok(&key, &id, json!({"expiresAt": later.to_rfc3339()}))
        .await;
    assert_eq!(patched["isExpiring"], true);
    let at = assert_millis_utc_timestamp(&patched["expiresAt"], "expiresAt");
    assert!((at - later).num_milliseconds().abs() < 1000);
}

// ---------------------------------------------------------------------------------------
// GET /api/top-links
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn top_links_lists_the_callers_links_by_clicks_descending() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let other = app.key(false).await;
    for (code, clicks) in [("few", 3), ("most", 50), ("none", 0), ("some", 10)] {
        app.shorten(
            &key,
            json!({"url": "https://example.com/", "customCode": code}),
        )
        .await;
        app.set_clicks(code, clicks).await;
    }
    app.shorten(
        &other,
        json!({"url": "https://example.com/", "customCode": "foreign"}),
    )
    .await;
    app.set_clicks("foreign", 1_000).await;

    let top = |query: &'static str| {
        let app = &app;
        let key = key.clone();
        async move {
            let resp = app
                .get_with_key(&format!("/api/top-links{query}"), &key)
                .send()
                .await
                .expect("top links");
            assert_eq!(resp.status(), 200, "{query}");
            resp.json::<Vec<Value>>().await.expect("array")
        }
    };
    let links = top("").await;
    assert_eq!(codes(&links), ["most", "some", "few", "none"]);
    let clicks: Vec<i64> = links
        .iter()
        .map(|l| l["clicks"].as_i64().expect("clicks"))
        .collect();
    assert_eq!(clicks, [50, 10, 3, 0]);
    for link in &links {
        assert_is_link_object(link);
    }
    assert_eq!(codes(&top("?limit=2").await), ["most", "some"]);
    assert_eq!(codes(&top("?limit=1").await), ["most"]);
    assert_eq!(top("?limit=100").await.len(), 4);
}

/// Keys are revoked, never deleted, by the application; an operator who deletes one in psql
/// still takes its links with it (a trigger since the owner foreign key was dropped for the
/// cost of create) and leaves every other key's links alone.
#[tokio::test]
async fn deleting_an_api_key_in_the_database_deletes_its_links_and_no_others() {
    let app = TestApp::start().await;
    let gone = app.key(false).await;
    let kept = app.key(false).await;
    let gone_link = app
        .shorten(&gone, json!({"url": "https://example.com/owned"}))
        .await;
    let kept_link = app
        .shorten(&kept, json!({"url": "https://example.com/owned"}))
        .await;
    let deleted = sqlx::query("DELETE FROM api_keys WHERE key_prefix = left($1, 10)")
        .bind(&gone)
        .execute(&app.db)
        .await
        .expect("delete the key");
    assert_eq!(deleted.rows_affected(), 1);
    assert!(!link_row_exists(&app, gone_link["id"].as_str().expect("id")).await);
    assert!(link_row_exists(&app, kept_link["id"].as_str().expect("id")).await);
    let orphans: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM links l WHERE NOT EXISTS (SELECT 1 FROM api_keys k WHERE k.id = l.owner_key_id)",
    )
    .fetch_one(&app.db)
    .await
    .expect("count");
    assert_eq!(orphans, 0);
}

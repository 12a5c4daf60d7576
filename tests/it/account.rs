//! Keys, account and settings over HTTP: `POST /api/generate-key`, `GET /api/auth/me`, `GET
//! /api/settings/developer`, `PATCH /api/settings/developer/webhook`, and the server-side
//! fetch behind `POST /api/metadata`, whose SSRF guard (the **fix**) is tested against tiny
//! local HTTP servers written here: only the exact `ip:port` in `METADATA_ALLOWLIST` may be
//! fetched, on the first hop and on every redirect hop.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use uuid::Uuid;

use crate::support::{
    case_error, error_message, header_number, wait_for_room_in_window, Says, TestApp,
};

async fn generate_key(app: &TestApp) -> reqwest::Response {
    app.client
        .post(app.url("/api/generate-key"))
        .send()
        .await
        .expect("generate-key")
}

async fn key_row(app: &TestApp, key: &str) -> (Uuid, DateTime<Utc>) {
    sqlx::query_as("SELECT id, created_at FROM api_keys WHERE key_prefix = $1")
        .bind(&key[..10])
        .fetch_one(&app.db)
        .await
        .expect("key row")
}

// ---------------------------------------------------------------------------------------
// POST /api/generate-key, GET /api/auth/me
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn generate_key_answers_a_64_hex_key_that_works_at_once() {
    let app = TestApp::start().await;
    let resp = generate_key(&app).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("JSON");
    let obj = body.as_object().expect("object");
    assert_eq!(obj.len(), 1, "only apiKey: {body}");
    let key = body["apiKey"].as_str().expect("apiKey is a string");
    assert_eq!(key.len(), 64, "{key}");
    assert!(
        key.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "lowercase hex: {key}"
    );

    let me = app.get_ok_json("/api/auth/me", key).await;
    let (id, _) = key_row(&app, key).await;
    assert_eq!(
        me,
        json!({ "id": id.to_string(), "email": null, "name": null })
    );

    // Only the hash is stored.
    let stored: (Vec<u8>, String) =
        sqlx::query_as("SELECT key_hash, key_prefix FROM api_keys WHERE id = $1")
            .bind(id)
            .fetch_one(&app.db)
            .await
            .expect("row");
    assert_eq!(stored.0.len(), 32, "a SHA-256 digest");
    assert_ne!(hex_of(&stored.0), key);
    assert_eq!(stored.1, &key[..10]);

    // Two keys are different keys.
    let other: Value = generate_key(&app).await.json().await.expect("JSON");
    assert_ne!(other["apiKey"], body["apiKey"]);
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn auth_me_answers_the_keys_own_identity() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let other = app.key(false).await;
    let (id, _) = key_row(&app, &key).await;
    let me = app.get_ok_json("/api/auth/me", &key).await;
    assert_eq!(
        me,
        json!({ "id": id.to_string(), "email": "test@example.com", "name": "test" })
    );
    let (other_id, _) = key_row(&app, &other).await;
    let them = app.get_ok_json("/api/auth/me", &other).await;
    assert_eq!(them["id"], other_id.to_string());
}

#[tokio::test]
async fn the_sixth_generate_key_within_an_hour_from_one_ip_answers_429() {
    let app = TestApp::start().await;
    wait_for_room_in_window(3600).await;
    for i in 0..5 {
        let resp = generate_key(&app).await;
        assert_eq!(resp.status(), 200, "key {i}");
        assert_eq!(header_number(&resp, "ratelimit-limit"), 5);
        assert_eq!(header_number(&resp, "ratelimit-remaining"), 4 - i);
    }
    let keys_before: i64 = sqlx::query_scalar("SELECT count(*) FROM api_keys")
        .fetch_one(&app.db)
        .await
        .expect("count");
    let resp = generate_key(&app).await;
    assert_eq!(resp.status(), 429);
    let retry_after = header_number(&resp, "retry-after");
    assert!(
        (1..=3600).contains(&retry_after),
        "Retry-After {retry_after}"
    );
    assert_eq!(header_number(&resp, "ratelimit-limit"), 5);
    assert_eq!(header_number(&resp, "ratelimit-remaining"), 0);
    assert!(!error_message(resp, 429).await.is_empty());
    let keys_after: i64 = sqlx::query_scalar("SELECT count(*) FROM api_keys")
        .fetch_one(&app.db)
        .await
        .expect("count");
    assert_eq!(keys_after, keys_before, "the refused request made no key");
}

#[tokio::test]
async fn with_trust_proxy_each_forwarded_address_gets_its_own_five_keys() {
    let app = TestApp::builder().set("TRUST_PROXY", "1").start().await;
    wait_for_room_in_window(3600).await;
    let from = |ip: &'static str| {
        app.client
            .post(app.url("/api/generate-key"))
            .header("x-forwarded-for", ip)
            .send()
    };
    for i in 0..5 {
        assert_eq!(from("203.0.113.7").await.expect("req").status(), 200, "{i}");
    }
    assert_eq!(from("203.0.113.7").await.expect("req").status(), 429);
    assert_eq!(from("198.51.100.8").await.expect("req").status(), 200);
}

// ---------------------------------------------------------------------------------------
// Developer settings and webhook
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn developer_settings_show_the_real_values_of_the_key() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let (_, created_at) = key_row(&app, &key).await;
    let body = app.get_ok_json("/api/settings/developer", &key).await;
    let created = DateTime::parse_from_rfc3339(body["createdAt"].as_str().expect("createdAt"))
        .expect("createdAt is RFC 3339")
        .with_timezone(&Utc);
    assert!(
        (created - created_at).num_milliseconds().abs() <= 1,
        "createdAt {created} is the key's ({created_at})"
    );
    assert_eq!(
        body,
        json!({
            "apiKey": format!("{}...", &key[..10]),
            "webhookUrl": null,
            "webhookSecret": null,
            "rateLimitPerMin": 100_000,
            "rateLimitPerHour": 1_000_000,
            "logsEnabled": true,
            "analyticsLevel": "full",
            "createdAt": body["createdAt"].clone(),
        })
    );
    assert!(
        !body.to_string().contains(&key[10..]),
        "the rest of the key is never shown"
    );
}

#[tokio::test]
async fn generated_keys_get_the_configured_per_key_rate_limits() {
    let app = TestApp::builder()
        .set("RATE_LIMIT_KEY_PER_MIN", "77")
        .set("RATE_LIMIT_KEY_PER_HOUR", "8888")
        .start()
        .await;
    let body: Value = generate_key(&app).await.json().await.expect("JSON");
    let key = body["apiKey"].as_str().expect("apiKey").to_string();
    let settings = app.get_ok_json("/api/settings/developer", &key).await;
    assert_eq!(settings["rateLimitPerMin"], 77);
    assert_eq!(settings["rateLimitPerHour"], 8888);
    assert_eq!(settings["apiKey"], format!("{}...", &key[..10]));
}

#[tokio::test]
async fn a_webhook_url_is_stored_for_the_key_and_shown_in_settings() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let other = app.key(false).await;
    let url = "https://hooks.example/boltlink?token=abc";
    let resp = app.set_webhook(&key, json!({ "url": url })).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(body["success"], true);
    assert!(
        !body["message"].as_str().expect("message").is_empty(),
        "{body}"
    );
    assert_eq!(body["webhookUrl"], url);

    let settings = app.get_ok_json("/api/settings/developer", &key).await;
    assert_eq!(settings["webhookUrl"], url, "stored, not just logged");
    let (id, _) = key_row(&app, &key).await;
    let stored: Option<String> =
        sqlx::query_scalar("SELECT webhook_url FROM api_keys WHERE id = $1")
            .bind(id)
            .fetch_one(&app.db)
            .await
            .expect("row");
    assert_eq!(stored.as_deref(), Some(url));

    // Another key's settings are untouched.
    let theirs = app.get_ok_json("/api/settings/developer", &other).await;
    assert_eq!(theirs["webhookUrl"], Value::Null);

    // A second PATCH replaces it.
    let resp = app
        .set_webhook(&key, json!({ "url": "https://hooks.example/v2" }))
        .await;
    assert_eq!(resp.status(), 200);
    let settings = app.get_ok_json("/api/settings/developer", &key).await;
    assert_eq!(settings["webhookUrl"], "https://hooks.example/v2");
}

#[tokio::test]
async fn webhook_settings_refuse_each_invalid_body_with_400_and_keep_the_stored_url() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let resp = app
        .set_webhook(&key, json!({ "url": "https://hooks.example/ok" }))
        .await;
    assert_eq!(resp.status(), 200);
    let mut cases: Vec<(String, Value, &str)> = vec![
        ("a number".into(), json!({ "url": 42 }), "url"),
        // A typo is not a removal.
        ("no `url` field".into(), json!({ "uri": "x" }), "`url`"),
    ];
    for url in ["not a url", "ftp://hooks.example/x", "/relative/path"] {
        let case = format!("{url:?} is not an absolute http(s) URL");
        cases.push((case, json!({ "url": url }), "url"));
    }
    // Hardening finding 10: addresses in our own network are refused when set.
    for url in [
        "http://169.254.169.254/latest/meta-data",
        "http://127.0.0.1:6379/",
        "http://localhost/hook",
        "http://[::1]/hook",
        "http://10.1.2.3/hook",
    ] {
        let case = format!("{url} is in our own network");
        cases.push((case, json!({ "url": url }), "refusing"));
    }
    for (case, body, mentions) in cases {
        let message = case_error(&case, app.set_webhook(&key, body).await, 400).await;
        Says::Mentions(mentions).check(&case, &message);
        // The refusal does not say how the address was classified.
        assert!(
            !message.contains("169.254") && !message.contains("loopback"),
            "{case}: {message}"
        );
    }
    let resp = app
        .client
        .patch(app.url("/api/settings/developer/webhook"))
        .header("x-api-key", &key)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("webhook");
    assert!(!error_message(resp, 400).await.is_empty());
    assert_eq!(
        app.stored_webhook(&key).await,
        json!("https://hooks.example/ok"),
        "no refused body changed the stored URL"
    );
}

// ---------------------------------------------------------------------------------------
// POST /api/metadata and its SSRF guard
// ---------------------------------------------------------------------------------------

/// What a [`LocalServer`] does with each request.
#[derive(Clone)]
enum Answer {
    /// Writes these bytes (a whole HTTP/1.1 response) and closes.
    Fixed(String),
    /// Writes this response head and page start, then filler forever (no Content-Length).
    Endless(String),
    /// Reads the request and never answers (until the client hangs up).
    Never,
}

/// A tiny HTTP/1.1 server on 127.0.0.1, written by hand. Counts connections, so a test can
/// prove the API never reached it.
struct LocalServer {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

async fn read_request_head(stream: &mut tokio::net::TcpStream) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
}

impl LocalServer {
    async fn bind() -> TcpListener {
        TcpListener::bind("127.0.0.1:0").await.expect("bind")
    }

    fn serve(listener: TcpListener, answer: Answer) -> LocalServer {
        let addr = listener.local_addr().expect("addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                let answer = answer.clone();
                tokio::spawn(async move {
                    // A GET has no body: the head is the whole request.
                    read_request_head(&mut stream).await;
                    match answer {
                        Answer::Fixed(response) => {
                            let _ = stream.write_all(response.as_bytes()).await;
                        }
                        Answer::Endless(start) => {
                            if stream.write_all(start.as_bytes()).await.is_ok() {
                                let filler = "<!-- filler -->".repeat(4096);
                                while stream.write_all(filler.as_bytes()).await.is_ok() {}
                            }
                        }
                        Answer::Never => {
                            let mut buf = [0u8; 1024];
                            while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
                        }
                    }
                    let _ = stream.shutdown().await;
                });
            }
        });
        LocalServer {
            addr,
            connections,
            task,
        }
    }

    async fn start(answer: Answer) -> LocalServer {
        Self::serve(Self::bind().await, answer)
    }

    async fn html(body: &str) -> LocalServer {
        Self::start(Answer::Fixed(format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )))
        .await
    }

    fn redirect_response(location: &str) -> Answer {
        Answer::Fixed(format!(
            "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ))
    }

    async fn redirect_to(location: &str) -> LocalServer {
        Self::start(Self::redirect_response(location)).await
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const PAGE: &str = "<!doctype html><html><head><meta charset=\"utf-8\">\
<title>Local Preview Page</title>\
<meta name=\"description\" content=\"A page served by the test itself.\">\
</head><body><p>hello</p></body></html>";

/// An app whose metadata fetcher may reach `allow` (`METADATA_ALLOWLIST`), and a key.
async fn app_fetching_metadata_from(allow: &str) -> (TestApp, String) {
    let app = TestApp::builder()
        .set("METADATA_ALLOWLIST", allow)
        .start()
        .await;
    let key = app.key(false).await;
    (app, key)
}

async fn fetch_metadata(app: &TestApp, key: &str, url: &str) -> reqwest::Response {
    app.post_json("/api/metadata", key, json!({ "url": url }))
        .send()
        .await
        .expect("metadata")
}

#[tokio::test]
async fn metadata_of_an_allowlisted_local_page_answers_title_description_favicon_and_url() {
    let page = LocalServer::html(PAGE).await;
    let allow = page.addr.to_string();
    let (app, key) = app_fetching_metadata_from(allow.as_str()).await;
    let resp = fetch_metadata(&app, &key, &page.url()).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(
        body,
        json!({
            "title": "Local Preview Page",
            "description": "A page served by the test itself.",
            "favicon": format!("http://{}/favicon.ico", page.addr),
            "url": page.url(),
        })
    );
    assert_eq!(page.connections(), 1);
}

#[tokio::test]
async fn metadata_follows_a_redirect_between_allowlisted_addresses_and_reports_the_final_url() {
    let page = LocalServer::html(PAGE).await;
    let hop = LocalServer::redirect_to(&format!("{}landing", page.url())).await;
    let allow = format!("{},{}", hop.addr, page.addr);
    let (app, key) = app_fetching_metadata_from(allow.as_str()).await;
    let resp = fetch_metadata(&app, &key, &hop.url()).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(body["title"], "Local Preview Page");
    assert_eq!(body["url"], format!("{}landing", page.url()));
}

#[tokio::test]
async fn metadata_refuses_a_redirect_from_an_allowlisted_server_to_another_local_port() {
    // The redirect target is a real server that would answer: a refusal is the policy, not a
    // failed connection.
    let inner = LocalServer::html("<title>internal admin</title>").await;
    let outer = LocalServer::redirect_to(&inner.url()).await;
    let allow = outer.addr.to_string();
    let (app, key) = app_fetching_metadata_from(allow.as_str()).await;
    let resp = fetch_metadata(&app, &key, &outer.url()).await;
    let message = error_message(resp, 400).await;
    assert!(
        message.to_lowercase().contains("refus"),
        "the error names the refusal: {message}"
    );
    assert!(!message.contains("internal admin"));
    assert_eq!(outer.connections(), 1, "the allowlisted hop was fetched");
    assert_eq!(inner.connections(), 0, "the other port was never reached");
}

#[tokio::test]
async fn metadata_refuses_what_it_must_not_fetch_with_400() {
    // A live local server that is not on the allowlist (another port is).
    let unlisted = LocalServer::html(PAGE).await;
    let listed = LocalServer::html(PAGE).await;
    let allow = listed.addr.to_string();
    let (app, key) = app_fetching_metadata_from(&allow).await;
    let local_and_cloud = [
        "http://169.254.169.254/latest/meta-data".to_string(),
        "http://localhost:1/".to_string(),
        unlisted.url(),
        format!("http://localhost:{}/", unlisted.addr.port()),
        "http://[::1]:1/".to_string(),
        "http://10.0.0.1/".to_string(),
        "http://192.168.1.1/".to_string(),
        "http://[::ffff:127.0.0.1]:1/".to_string(),
    ]
    .map(|url| {
        (
            format!("local or cloud metadata address {url}"),
            json!({ "url": url }),
        )
    });
    let not_absolute_http = [
        "ftp://example.com/",
        "not a url",
        "/relative",
        "file:///etc/passwd",
    ]
    .map(|url| (format!("not absolute http: {url}"), json!({ "url": url })));
    for (case, body) in local_and_cloud.into_iter().chain(not_absolute_http) {
        let resp = app
            .post_json("/api/metadata", &key, body)
            .send()
            .await
            .expect("metadata");
        let message = case_error(&case, resp, 400).await;
        assert!(!message.is_empty(), "{case}: the error says why");
    }
    let resp = app
        .post_json("/api/metadata", &key, json!({}))
        .send()
        .await
        .expect("metadata");
    Says::Mentions("url").check("missing url", &case_error("missing url", resp, 400).await);
    let resp = fetch_metadata(&app, &key, "http://169.254.169.254/latest/meta-data").await;
    let message = error_message(resp, 400).await;
    assert!(
        message.to_lowercase().contains("refus"),
        "the error names the refusal: {message}"
    );
    assert_eq!(unlisted.connections(), 0, "never reached");
}

#[tokio::test]
async fn metadata_follows_at_most_five_redirects() {
    // A server that redirects to itself, forever.
    let listener = LocalServer::bind().await;
    let addr = listener.local_addr().expect("addr");
    let looping = LocalServer::serve(
        listener,
        LocalServer::redirect_response(&format!("http://{addr}/again")),
    );
    let allow = addr.to_string();
    let (app, key) = app_fetching_metadata_from(allow.as_str()).await;
    let resp = fetch_metadata(&app, &key, &looping.url()).await;
    let status = resp.status().as_u16();
    assert!(
        (400..600).contains(&status) && status != 500,
        "an error that is not a crash: {status}"
    );
    assert!(!error_message(resp, status).await.is_empty());
    assert_eq!(
        looping.connections(),
        6,
        "the first request and five redirects, no more"
    );
}

#[tokio::test]
async fn metadata_reads_at_most_one_mebibyte_of_an_endless_page() {
    let endless = LocalServer::start(Answer::Endless(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n\r\n\
         <html><head><title>Endless Page</title></head><body>"
            .to_string(),
    ))
    .await;
    let allow = endless.addr.to_string();
    let (app, key) = app_fetching_metadata_from(allow.as_str()).await;
    let started = std::time::Instant::now();
    let resp = fetch_metadata(&app, &key, &endless.url()).await;
    // Without the size cap the read would only end at the 5 s deadline, with an error.
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(body["title"], "Endless Page");
    assert!(
        started.elapsed() < Duration::from_millis(4500),
        "answered from the first MiB, took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn metadata_gives_up_on_a_silent_server_after_about_five_seconds() {
    let silent = LocalServer::start(Answer::Never).await;
    let allow = silent.addr.to_string();
    let (app, key) = app_fetching_metadata_from(allow.as_str()).await;
    let started = std::time::Instant::now();
    let resp = fetch_metadata(&app, &key, &silent.url()).await;
    let took = started.elapsed();
    let status = resp.status().as_u16();
    assert!(
        (400..600).contains(&status) && status != 500,
        "an error that is not a crash: {status}"
    );
    assert!(!error_message(resp, status).await.is_empty());
    assert!(
        took >= Duration::from_millis(4500) && took < Duration::from_secs(8),
        "the 5 s cap, took {took:?}"
    );
    assert_eq!(silent.connections(), 1);
}

/// API 0.2: the key's webhook signing secret is made with the first URL, kept when the URL
/// changes or goes, shown in the developer settings, and replaced by the rotate route.
#[tokio::test]
async fn the_webhook_secret_is_made_with_the_first_url_and_rotated_on_request() {
    let app = TestApp::builder()
        .set("METADATA_ALLOWLIST", "127.0.0.1:9")
        .start()
        .await;
    let key = app.key(false).await;
    let settings = app.get_ok_json("/api/settings/developer", &key).await;
    assert_eq!(
        settings["webhookSecret"],
        serde_json::Value::Null,
        "none before a URL"
    );
    let is_secret = |v: &serde_json::Value| {
        v.as_str().is_some_and(|s| {
            s.len() == 70
                && s.starts_with("whsec_")
                && s[6..]
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        })
    };
    let set: serde_json::Value = app
        .set_webhook(&key, serde_json::json!({"url": "http://127.0.0.1:9/hook"}))
        .await
        .json()
        .await
        .expect("json");
    assert!(is_secret(&set["webhookSecret"]), "{set}");
    let first = set["webhookSecret"].clone();
    let again: serde_json::Value = app
        .set_webhook(&key, serde_json::json!({"url": "http://127.0.0.1:9/other"}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        again["webhookSecret"], first,
        "a changed URL keeps the secret"
    );
    let removed: serde_json::Value = app
        .set_webhook(&key, serde_json::json!({"url": null}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(removed["webhookSecret"], first, "so does removing it");
    assert_eq!(
        app.get_ok_json("/api/settings/developer", &key).await["webhookSecret"],
        first
    );
    let resp = app
        .client
        .post(app.url("/api/settings/developer/webhook/rotate"))
        .header("x-api-key", &key)
        .send()
        .await
        .expect("rotate");
    assert_eq!(resp.status(), 200);
    let rotated: serde_json::Value = resp.json().await.expect("json");
    assert!(is_secret(&rotated["webhookSecret"]), "{rotated}");
    assert_ne!(rotated["webhookSecret"], first);
    assert_eq!(
        app.get_ok_json("/api/settings/developer", &key).await["webhookSecret"],
        rotated["webhookSecret"]
    );
    // Another key's secret is its own; no key, no secret.
    let other = app.key(false).await;
    assert_eq!(
        app.get_ok_json("/api/settings/developer", &other).await["webhookSecret"],
        serde_json::Value::Null
    );
    let resp = app
        .client
        .post(app.url("/api/settings/developer/webhook/rotate"))
        .send()
        .await
        .expect("rotate");
    assert_eq!(resp.status(), 401);
}

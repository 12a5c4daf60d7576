//! API 0.2, "Bulk import and export": `POST /api/links/bulk` (JSON array or CSV) and the
//! streamed `GET /api/links/export`, against the running API on a real PostgreSQL and Redis.

use serde_json::{json, Value};

use crate::support::{
    case_error, code_of, create_key, id_of, new_prefix, Suite, TestApp, TestDatabase, TARGET,
};

async fn bulk_json(app: &TestApp, key: &str, rows: Value) -> Value {
    let resp = app
        .post_json("/api/links/bulk", key, rows)
        .send()
        .await
        .expect("bulk");
    assert_eq!(resp.status(), 200, "bulk answers 200");
    resp.json().await.expect("json")
}

async fn bulk_csv(app: &TestApp, key: &str, csv: &str) -> reqwest::Response {
    app.client
        .post(app.url("/api/links/bulk"))
        .header("x-api-key", key)
        .header("content-type", "text/csv; charset=utf-8")
        .body(csv.to_string())
        .send()
        .await
        .expect("bulk csv")
}

#[tokio::test]
async fn json_rows_are_independent_and_answered_in_input_order() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    app.create_link(&key, json!({"customCode": "taken-code"}))
        .await;
    let body = bulk_json(
        &app,
        &key,
        json!([
            {"url": "https://example.com/one", "tags": ["Import"]},
            {"url": "not a url"},
            {"url": "https://example.com/two", "customCode": "bulk-two", "redirectType": 301},
            {"url": "https://example.com/three", "customCode": "taken-code"},
            "a string",
            {"url": "https://example.com/four", "isProtected": true},
            {"url": "https://example.com/five", "customCode": "bulk-two"},
            {"url": "https://example.com/six", "campaignId": "00000000-0000-7000-8000-000000000000"},
        ]),
    )
    .await;
    assert_eq!(body["created"], 2);
    assert_eq!(body["failed"], 6);
    let results = body["results"].as_array().expect("results");
    assert_eq!(results.len(), 8);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["index"], i, "in input order");
    }
    assert_eq!(results[0]["link"]["tags"], json!(["import"]));
    assert!(results[1]["error"].as_str().expect("error").contains("url"));
    assert_eq!(results[2]["link"]["shortCode"], "bulk-two");
    assert_eq!(results[2]["link"]["redirectType"], 301);
    assert_eq!(results[3]["error"], "Custom code already in use");
    assert_eq!(results[4]["error"], "a row must be a JSON object");
    assert_eq!(results[5]["error"], "Password required for protected links");
    assert_eq!(
        results[6]["error"], "Custom code already in use",
        "the batch's own duplicate"
    );
    assert_eq!(
        results[7]["error"],
        "campaignId does not name one of your campaigns"
    );
    // The created links exist and redirect at once (no cached "does not exist" in the way).
    let created = &results[2]["link"];
    let read = app
        .get_ok_json(&format!("/api/links/{}", id_of(created)), &key)
        .await;
    assert_eq!(read["originalUrl"], "https://example.com/two");
    let visit = app.visit("/bulk-two").await;
    assert_eq!(visit.status(), 301);
}

#[tokio::test]
async fn a_code_looked_up_before_its_import_redirects_right_after_it() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    assert_eq!(
        app.visit("/later-code").await.status(),
        404,
        "cached as missing"
    );
    let body = bulk_json(
        &app,
        &key,
        json!([{"url": TARGET, "customCode": "later-code"}]),
    )
    .await;
    assert_eq!(body["created"], 1);
    assert_eq!(app.visit("/later-code").await.status(), 302);
}

#[tokio::test]
async fn csv_rows_with_a_header_are_imported_with_their_types() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let csv = "\u{feff}url,customCode,tags,isRateLimited,maxClicksPerMin,forwardQuery,redirectRules\n\
               https://example.com/a,csv-a,promo|Q4,true,50,yes,\n\
               https://example.com/b,,,false,,,\"[{\"\"conditions\"\":[{\"\"type\"\":\"\"device\"\",\"\"value\"\":\"\"ios\"\"}],\"\"url\"\":\"\"https://example.com/ios\"\"}]\"\n\
               https://example.com/c,csv-c,,maybe,,,\n\
               https://example.com/d,csv-d\n\
               ftp://example.com/e,,,,,,\n";
    let resp = bulk_csv(&app, &key, csv).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["created"], 2, "{body}");
    let r = body["results"].as_array().expect("results");
    assert_eq!(r[0]["link"]["shortCode"], "csv-a");
    assert_eq!(r[0]["link"]["tags"], json!(["promo", "q4"]));
    assert_eq!(r[0]["link"]["isRateLimited"], true);
    assert_eq!(r[0]["link"]["maxClicksPerMin"], 50);
    assert_eq!(r[0]["link"]["forwardQuery"], true);
    assert_eq!(
        r[1]["link"]["redirectRules"][0]["url"],
        "https://example.com/ios"
    );
    assert!(r[2]["error"]
        .as_str()
        .expect("error")
        .contains("isRateLimited"));
    assert!(r[3]["error"].as_str().expect("error").contains("fields"));
    assert!(r[4]["error"].as_str().expect("error").contains("url"));
}

#[tokio::test]
async fn bad_bulk_bodies_are_refused_as_a_whole_with_400() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let many: Vec<Value> = (0..1001).map(|_| json!({"url": TARGET})).collect();
    for (case, body) in [
        ("empty array", json!([])),
        ("an object", json!({"url": TARGET})),
        ("1001 rows", Value::Array(many)),
    ] {
        let resp = app
            .post_json("/api/links/bulk", &key, body)
            .send()
            .await
            .expect("bulk");
        case_error(case, resp, 400).await;
    }
    for (case, csv) in [
        ("unknown column", "url,colour\nhttps://example.com/,red\n"),
        ("no url column", "customCode\nabc\n"),
        ("header only", "url\n"),
    ] {
        let resp = bulk_csv(&app, &key, csv).await;
        let message = case_error(case, resp, 400).await;
        assert!(!message.is_empty(), "{case}");
    }
    let (_, list) = app.get_json("/api/links", Some(&key)).await;
    assert_eq!(
        list.as_array().expect("list").len(),
        0,
        "nothing was created"
    );
}

#[tokio::test]
async fn bulk_imports_are_limited_per_client_address() {
    let app = TestApp::builder()
        .set("RATE_LIMIT_BULK_PER_5MIN", "2")
        .start()
        .await;
    let key = app.key(false).await;
    for _ in 0..2 {
        bulk_json(&app, &key, json!([{"url": TARGET}])).await;
    }
    let resp = app
        .post_json("/api/links/bulk", &key, json!([{"url": TARGET}]))
        .send()
        .await
        .expect("bulk");
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(
        case_error("third bulk", resp, 429).await,
        "Too many bulk imports from this IP, please try again later"
    );
}

#[tokio::test]
async fn an_export_imported_into_another_key_recreates_the_links() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let rules = json!([{"conditions": [{"type": "language", "value": "de"}], "url": "https://example.com/de"}]);
    let a = app
        .create_link(
            &key,
            json!({"url": "https://example.com/x?q=1,2", "customCode": "exp-a", "tags": ["one", "two"],
                   "redirectType": 307, "forwardQuery": true, "redirectRules": rules,
                   "isRateLimited": true, "maxClicksPerMin": 42}),
        )
        .await;
    let b = app.create_link(&key, json!({"customCode": "exp-b"})).await;
    let resp = app
        .get_with_key("/api/links/export", &key)
        .send()
        .await
        .expect("export");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = resp.text().await.expect("csv");
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("url,customCode,isProtected,isExpiring,expiresAt,isRateLimited,maxClicksPerMin,redirectType,forwardQuery,tags,redirectRules,shortCode,shortUrl,clicks,createdAt")
    );
    assert_eq!(csv.lines().count(), 3, "{csv}");
    // Free the codes, then import the file into another key.
    for link in [&a, &b] {
        let resp = app
            .delete_with_key(&format!("/api/links/{}", id_of(link)), &key)
            .send()
            .await
            .expect("delete");
        assert_eq!(resp.status(), 200);
    }
    let other = app.key(false).await;
    let resp = bulk_csv(&app, &other, &csv).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["created"], 2, "{body}");
    let again = &body["results"][0]["link"];
    assert_eq!(code_of(again), "exp-a");
    for field in [
        "originalUrl",
        "tags",
        "redirectType",
        "forwardQuery",
        "redirectRules",
        "isRateLimited",
        "maxClicksPerMin",
    ] {
        assert_eq!(again[field], a[field], "{field} survives the round trip");
    }
    assert_eq!(code_of(&body["results"][1]["link"]), "exp-b");
}

/// 100 000 links leave the API as CSV in pages: the process's peak memory grows by far less
/// than the file (about 14 MB) or the rows it holds.
#[tokio::test]
async fn an_export_of_100_000_links_streams_in_constant_memory() {
    let database = TestDatabase::create().await;
    let suite = Suite::start_with(1, &database, &new_prefix(), &[]);
    suite.wait_until_all_serve().await;
    let key = create_key(database.url()).await;
    let pool = sqlx::PgPool::connect(database.url()).await.expect("db");
    let inserted = sqlx::query(
        "INSERT INTO links (id, owner_key_id, short_code, original_url, tags) \
         SELECT gen_random_uuid(), (SELECT id FROM api_keys LIMIT 1), 'exp' || n, \
                'https://example.com/page/' || n || '?utm_source=newsletter&utm_medium=email', '{a,b}' \
         FROM generate_series(1, 100000) AS n",
    )
    .execute(&pool)
    .await
    .expect("insert");
    assert_eq!(inserted.rows_affected(), 100_000);
    let pid = suite.children[0].id();
    let before = crate::support::peak_rss_kib(pid);
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(120))
        .build()
        .expect("client");
    let started = std::time::Instant::now();
    let mut resp = client
        .get(suite.url("/api/links/export"))
        .header("x-api-key", &key)
        .send()
        .await
        .expect("export");
    assert_eq!(resp.status(), 200);
    let (mut bytes, mut lines) = (0usize, 0usize);
    while let Some(chunk) = resp.chunk().await.expect("chunk") {
        bytes += chunk.len();
        lines += chunk.iter().filter(|b| **b == b'\n').count();
    }
    assert_eq!(lines, 100_001, "a header and every link");
    assert!(bytes > 10_000_000, "{bytes} bytes");
    let grown = crate::support::peak_rss_kib(pid).saturating_sub(before);
    eprintln!(
        "export of 100 000 links: {bytes} bytes in {:?}, peak memory +{grown} KiB",
        started.elapsed()
    );
    assert!(
        grown < 8 * 1024,
        "peak memory grew by {grown} KiB while sending {bytes} bytes"
    );
}

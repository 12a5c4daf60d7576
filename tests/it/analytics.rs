//! Analytics over HTTP: `GET /api/analytics/{code}`, `GET /api/analytics/global` and `GET
//! /api/stats/overview`. They answer from the rollups, which the click pipeline
//! fills later; here the rollup rows are written by the aggregator's own store call from fixed
//! numbers (not from clicks), so every number in the answers is
//! known exactly (the **fix**: real numbers, never placeholders) and the owner scoping can be
//! checked: another key's rollups never leak into a caller's numbers.
//!
//! Days are UTC days. The fixture puts rows at 00:00 UTC of "today minus n days", always in
//! the past, and the expectations are computed from the same `today`.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use boltlink::clicks::aggregator::RollupDelta;
use boltlink::clicks::offset::StreamId;
use boltlink::clicks::ports::ClickStore;

use crate::support::{code_of, error_message, TestApp};

fn today() -> NaiveDate {
    Utc::now().date_naive()
}

fn day(days_back: i64) -> NaiveDate {
    today() - Duration::days(days_back)
}

fn bucket(days_back: i64) -> DateTime<Utc> {
    day(days_back)
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc()
}

fn ymd(days_back: i64) -> String {
    day(days_back).format("%Y-%m-%d").to_string()
}

async fn link_ids(app: &TestApp, code: &str) -> (Uuid, Uuid) {
    sqlx::query_as("SELECT id, owner_key_id FROM links WHERE short_code = $1")
        .bind(code)
        .fetch_one(&app.db)
        .await
        .expect("link row")
}

/// One rollup row: (link code, days back, region, device class, clicks, gated, latency µs).
type Row = (&'static str, i64, &'static str, &'static str, i64, i64, i64);

async fn insert_rollups(app: &TestApp, codes: &[(&'static str, String)], rows: &[Row]) {
    for (name, days_back, region, device, clicks, gated, latency) in rows {
        let code = &codes
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("fixture link {name}"))
            .1;
        let (link_id, _owner) = link_ids(app, code).await;
        // Through the aggregator's own write, so the hourly, daily and all-time rows and
        // links.clicks agree as they do in production.
        let row = RollupDelta {
            link_id,
            bucket: bucket(*days_back),
            region: region.to_string(),
            device_class: device.to_string(),
            clicks: *clicks,
            gated: *gated,
            latency_us_sum: *latency,
        };
        app.store
            .apply_aggregates(
                "analytics-fixture",
                StreamId::default(),
                &[row],
                &[(link_id, *clicks)],
            )
            .await
            .expect("insert rollup row");
    }
}

fn field_names(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("an object: {v}"))
        .keys()
        .cloned()
        .collect()
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Two owners. Key A has four links: l1, l2, l3 live and l4 expired (no rollups); key B has
/// one link with big numbers that must never show up in A's answers.
struct Fixture {
    key_a: String,
    key_b: String,
    codes: Vec<(&'static str, String)>,
}

impl Fixture {
    fn code(&self, name: &str) -> &str {
        &self
            .codes
            .iter()
            .find(|(n, _)| *n == name)
            .expect("fixture link")
            .1
    }
}

/// Key A's rollups. Over all time: US 12, DE 5, FR 4, GB 3, JP 2, BR 1 = 27 clicks; gated 8;
/// latency 40 500 µs (1.5 ms per click); desktop 17, mobile 8, tablet 2.
/// This week (days 0-6): 24 clicks on l1, l2, l3. The week before (days 7-13): 3 clicks on
/// l1 and l2 (l3 only had gated visits then).
const ROWS_A: &[Row] = &[
    ("l1", 0, "US", "desktop", 12, 0, 18_000),
    ("l3", 1, "JP", "tablet", 2, 0, 3_000),
    ("l1", 2, "DE", "mobile", 5, 5, 7_500),
    ("l2", 3, "BR", "desktop", 1, 0, 1_500),
    ("l2", 6, "FR", "desktop", 4, 0, 6_000),
    ("l2", 7, "GB", "mobile", 2, 0, 3_000),
    ("l3", 8, "US", "desktop", 0, 3, 0),
    ("l1", 13, "GB", "mobile", 1, 0, 1_500),
];

/// Key B's rollups: 1 500 clicks, all in CN, 10 seconds per click.
const ROWS_B: &[Row] = &[
    ("b1", 0, "CN", "bot", 1_000, 1_000, 10_000_000_000),
    ("b1", 9, "CN", "bot", 500, 0, 5_000_000_000),
];

async fn seed(app: &TestApp) -> Fixture {
    let key_a = app.key(false).await;
    let key_b = app.key(false).await;
    let mut codes = Vec::new();
    for name in ["l1", "l2", "l3", "l4"] {
        let code = code_of(
            &app.create_link(
                &key_a,
                json!({ "url": &format!("https://a.example/{name}") }),
            )
            .await,
        );
        codes.push((name, code));
    }
    codes.push((
        "b1",
        code_of(
            &app.create_link(&key_b, json!({ "url": "https://b.example/only" }))
                .await,
        ),
    ));
    let expired = sqlx::query(
        "UPDATE links SET is_expiring = true, expires_at = now() - interval '1 minute' \
         WHERE short_code = $1",
    )
    .bind(&codes[3].1)
    .execute(&app.db)
    .await
    .expect("expire l4");
    assert_eq!(expired.rows_affected(), 1);
    insert_rollups(app, &codes, ROWS_A).await;
    insert_rollups(app, &codes, ROWS_B).await;
    Fixture {
        key_a,
        key_b,
        codes,
    }
}

// ---------------------------------------------------------------------------------------
// GET /api/analytics/{code}
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn link_analytics_summarize_the_links_rollups_exactly() {
    let app = TestApp::start().await;
    let fx = seed(&app).await;
    let l1 = fx.code("l1").to_string();
    sqlx::query("UPDATE links SET title = 'Page one', favicon = 'https://a.example/icon.png' WHERE short_code = $1")
        .bind(&l1)
        .execute(&app.db)
        .await
        .expect("set title");

    let body = app
        .get_ok_json(&format!("/api/analytics/{l1}"), &fx.key_a)
        .await;
    assert_eq!(
        field_names(&body),
        names(&[
            "summary",
            "points",
            "topRegions",
            "shortCode",
            "originalUrl",
            "title",
            "favicon"
        ]),
        "{body}"
    );
    // l1: US 12 (desktop, today), DE 5 (+5 gated, mobile, 2 days ago), GB 1 (mobile, 13
    // days ago): 18 clicks, 5 gated, 27 000 µs.
    assert_eq!(
        body["summary"],
        json!({
            "totalClicks": 18,
            "topRegion": "US",
            "topDevice": "desktop",
            "avgLatency": 1.5,
            "conversionRate": 78.3,
        })
    );
    assert_eq!(
        body["points"],
        json!([
            {"timestamp": ymd(13), "clicks": 1, "region": "GB"},
            {"timestamp": ymd(2), "clicks": 5, "region": "DE"},
            {"timestamp": ymd(0), "clicks": 12, "region": "US"},
        ])
    );
    assert_eq!(
        body["topRegions"],
        json!([
            {"region": "US", "clicks": 12, "percentage": "66.7"},
            {"region": "DE", "clicks": 5, "percentage": "27.8"},
            {"region": "GB", "clicks": 1, "percentage": "5.6"},
        ])
    );
    assert_eq!(body["shortCode"], l1.as_str());
    assert_eq!(body["originalUrl"], "https://a.example/l1");
    assert_eq!(body["title"], "Page one");
    assert_eq!(body["favicon"], "https://a.example/icon.png");
}

#[tokio::test]
async fn link_analytics_of_a_link_with_several_days_and_devices_pick_the_top_ones() {
    let app = TestApp::start().await;
    let fx = seed(&app).await;
    // l2: BR 1 desktop, FR 4 desktop, GB 2 mobile: 7 clicks, 0 gated, 10 500 µs.
    let l2 = fx.code("l2").to_string();
    let body = app
        .get_ok_json(&format!("/api/analytics/{l2}"), &fx.key_a)
        .await;
    assert_eq!(
        body["summary"],
        json!({
            "totalClicks": 7,
            "topRegion": "FR",
            "topDevice": "desktop",
            "avgLatency": 1.5,
            "conversionRate": 100.0,
        })
    );
    assert_eq!(
        body["points"],
        json!([
            {"timestamp": ymd(7), "clicks": 2, "region": "GB"},
            {"timestamp": ymd(6), "clicks": 4, "region": "FR"},
            {"timestamp": ymd(3), "clicks": 1, "region": "BR"},
        ])
    );
    assert_eq!(
        body["topRegions"],
        json!([
            {"region": "FR", "clicks": 4, "percentage": "57.1"},
            {"region": "GB", "clicks": 2, "percentage": "28.6"},
            {"region": "BR", "clicks": 1, "percentage": "14.3"},
        ])
    );
    // l3 had gated visits in a region (US) with no clicks: not a top region.
    let l3 = fx.code("l3").to_string();
    let body = app
        .get_ok_json(&format!("/api/analytics/{l3}"), &fx.key_a)
        .await;
    assert_eq!(body["summary"]["totalClicks"], 2);
    assert_eq!(body["summary"]["topRegion"], "JP");
    assert_eq!(body["summary"]["topDevice"], "tablet");
    assert_eq!(body["summary"]["conversionRate"], 40.0);
    assert_eq!(
        body["topRegions"],
        json!([{"region": "JP", "clicks": 2, "percentage": "100.0"}])
    );
}

#[tokio::test]
async fn link_analytics_of_a_link_without_clicks_are_zero_and_empty() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let code = code_of(
        &app.create_link(&key, json!({ "url": "https://example.com/quiet" }))
            .await,
    );
    let body = app
        .get_ok_json(&format!("/api/analytics/{code}"), &key)
        .await;
    assert_eq!(
        body["summary"],
        json!({
            "totalClicks": 0,
            "topRegion": null,
            "topDevice": null,
            "avgLatency": 0.0,
            "conversionRate": 0.0,
        })
    );
    assert_eq!(body["points"], json!([]));
    assert_eq!(body["topRegions"], json!([]));
    assert_eq!(body["shortCode"], code.as_str());
    assert_eq!(body["originalUrl"], "https://example.com/quiet");
    assert_eq!(body["title"], Value::Null);
    assert_eq!(body["favicon"], Value::Null);
}

#[tokio::test]
async fn link_analytics_of_another_keys_link_answer_404() {
    let app = TestApp::start().await;
    let fx = seed(&app).await;
    let b1 = fx.code("b1").to_string();
    let l1 = fx.code("l1").to_string();
    for (key, code) in [(&fx.key_a, &b1), (&fx.key_b, &l1)] {
        let resp = app
            .get_with_key(&format!("/api/analytics/{code}"), key.as_str())
            .send()
            .await
            .expect("request");
        assert!(!error_message(resp, 404).await.is_empty(), "{code}");
    }
    let resp = app
        .get_with_key("/api/analytics/NoSuchCode1", fx.key_a.as_str())
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 404);

    // Key B sees its own link's numbers, and only those.
    let body = app
        .get_ok_json(&format!("/api/analytics/{b1}"), &fx.key_b)
        .await;
    assert_eq!(body["summary"]["totalClicks"], 1500);
    assert_eq!(body["summary"]["topRegion"], "CN");
}

#[tokio::test]
async fn an_admin_key_sees_the_analytics_of_any_link() {
    let app = TestApp::start().await;
    let fx = seed(&app).await;
    let admin = app.key(true).await;
    let l1 = fx.code("l1").to_string();
    let body = app
        .get_ok_json(&format!("/api/analytics/{l1}"), &admin)
        .await;
    // The admin scope widens which links are visible, not which rows count for one link.
    assert_eq!(body["summary"]["totalClicks"], 18);
    let global = app.get_ok_json("/api/analytics/global", &admin).await;
    assert_eq!(global["summary"]["totalClicks"], 27 + 1500);
    assert_eq!(global["summary"]["totalLinks"], 5);
}

// ---------------------------------------------------------------------------------------
// GET /api/analytics/global
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn global_analytics_cover_the_callers_links_with_seven_zero_filled_days() {
    let app = TestApp::start().await;
    let fx = seed(&app).await;
    // Key A's rows were last touched at a known time; key B's later (now): lastUpdated must
    // come from the caller's rows only.
    // (The aggregator's writes stamp the all-time rollup rows, which the route reads.)
    sqlx::query(
        "UPDATE click_rollups_total SET updated_at = \
         CASE WHEN link_id = (SELECT id FROM links WHERE short_code = $1) \
         THEN '2026-02-03T04:05:06.789Z'::timestamptz \
         ELSE '2026-01-01T00:00:00Z'::timestamptz END \
         WHERE owner_key_id = (SELECT owner_key_id FROM links WHERE short_code = $1)",
    )
    .bind(fx.code("l1"))
    .execute(&app.db)
    .await
    .expect("set updated_at");

    let body = app.get_ok_json("/api/analytics/global", &fx.key_a).await;
    assert_eq!(
        field_names(&body),
        names(&["summary", "points", "topRegions", "lastUpdated"]),
        "{body}"
    );
    assert_eq!(
        body["summary"],
        json!({
            "totalClicks": 27,
            "totalLinks": 4,
            "topRegion": "US",
            "topDevice": "desktop",
            "avgLatency": 1.5,
            "conversionRate": 77.1,
        })
    );
    assert_eq!(
        body["points"],
        json!([
            {"timestamp": ymd(6), "clicks": 4, "region": "FR"},
            {"timestamp": ymd(5), "clicks": 0, "region": null},
            {"timestamp": ymd(4), "clicks": 0, "region": null},
            {"timestamp": ymd(3), "clicks": 1, "region": "BR"},
            {"timestamp": ymd(2), "clicks": 5, "region": "DE"},
            {"timestamp": ymd(1), "clicks": 2, "region": "JP"},
            {"timestamp": ymd(0), "clicks": 12, "region": "US"},
        ])
    );
    // Six regions have clicks; the top five are listed.
    assert_eq!(
        body["topRegions"],
        json!([
            {"region": "US", "clicks": 12, "percentage": "44.4"},
            {"region": "DE", "clicks": 5, "percentage": "18.5"},
            {"region": "FR", "clicks": 4, "percentage": "14.8"},
            {"region": "GB", "clicks": 3, "percentage": "11.1"},
            {"region": "JP", "clicks": 2, "percentage": "7.4"},
        ])
    );
    assert_eq!(body["lastUpdated"], "2026-02-03T04:05:06.789Z");

    // Key B's view holds only its own link.
    let body = app.get_ok_json("/api/analytics/global", &fx.key_b).await;
    assert_eq!(
        body["summary"],
        json!({
            "totalClicks": 1500,
            "totalLinks": 1,
            "topRegion": "CN",
            "topDevice": "bot",
            "avgLatency": 10000.0,
            "conversionRate": 60.0,
        })
    );
    let clicks: Vec<i64> = body["points"]
        .as_array()
        .expect("points")
        .iter()
        .map(|p| p["clicks"].as_i64().expect("clicks"))
        .collect();
    assert_eq!(clicks, [0, 0, 0, 0, 0, 0, 1000]);
    assert_eq!(
        body["topRegions"],
        json!([{"region": "CN", "clicks": 1500, "percentage": "100.0"}])
    );
}

#[tokio::test]
async fn global_analytics_of_a_key_without_links_are_seven_zero_days() {
    let app = TestApp::start().await;
    // Other keys have links and rollups; none of it may show up for a fresh key.
    let _others = seed(&app).await;
    let fresh = app.key(false).await;
    let body = app.get_ok_json("/api/analytics/global", &fresh).await;
    assert_eq!(
        body["summary"],
        json!({
            "totalClicks": 0,
            "totalLinks": 0,
            "topRegion": null,
            "topDevice": null,
            "avgLatency": 0.0,
            "conversionRate": 0.0,
        })
    );
    let points = body["points"].as_array().expect("points");
    assert_eq!(points.len(), 7);
    for (i, p) in points.iter().enumerate() {
        assert_eq!(
            *p,
            json!({"timestamp": ymd(6 - i as i64), "clicks": 0, "region": null})
        );
    }
    assert_eq!(body["topRegions"], json!([]));
    let last = DateTime::parse_from_rfc3339(body["lastUpdated"].as_str().expect("lastUpdated"))
        .expect("lastUpdated is RFC 3339")
        .with_timezone(&Utc);
    assert!(
        last <= Utc::now() + Duration::seconds(5),
        "lastUpdated {last}"
    );
}

// ---------------------------------------------------------------------------------------
// GET /api/stats/overview
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn stats_overview_reports_clicks_active_links_trend_and_weekdays() {
    let app = TestApp::start().await;
    let fx = seed(&app).await;
    for (name, clicks) in [("l1", 100), ("l2", 40), ("l3", 7), ("l4", 3), ("b1", 5000)] {
        app.set_clicks(fx.code(name), clicks).await;
    }
    let body = app.get_ok_json("/api/stats/overview", &fx.key_a).await;
    assert_eq!(
        field_names(&body),
        names(&["totalClicks", "activeLinks", "topRegion", "trend", "points"]),
        "{body}"
    );
    assert_eq!(body["totalClicks"], 150, "sum of the caller's links.clicks");
    assert_eq!(body["activeLinks"], 3, "l4 has expired");
    assert_eq!(body["topRegion"], "US");
    // Clicks: 24 this week against 3 the week before (+700 %). Links with clicks: l1, l2, l3
    // this week against l1, l2 the week before (+50 %).
    assert_eq!(body["trend"], json!({"clicks": 700.0, "active": 50.0}));
    let expected: Vec<Value> = [(6, 4), (5, 0), (4, 0), (3, 1), (2, 5), (1, 2), (0, 12)]
        .into_iter()
        .map(|(back, clicks)| json!({"day": day(back).weekday().to_string(), "clicks": clicks}))
        .collect();
    assert_eq!(body["points"], Value::Array(expected));
    assert_eq!(
        body["points"][6]["day"],
        today().weekday().to_string(),
        "the last point is today"
    );

    let body = app.get_ok_json("/api/stats/overview", &fx.key_b).await;
    assert_eq!(body["totalClicks"], 5000);
    assert_eq!(body["activeLinks"], 1);
    assert_eq!(body["topRegion"], "CN");
    // 1000 this week against 500 the week before; one active link in both.
    assert_eq!(body["trend"], json!({"clicks": 100.0, "active": 0.0}));
}

#[tokio::test]
async fn stats_overview_uses_three_letter_weekday_names() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let body = app.get_ok_json("/api/stats/overview", &key).await;
    let days: Vec<&str> = body["points"]
        .as_array()
        .expect("points")
        .iter()
        .map(|p| p["day"].as_str().expect("day"))
        .collect();
    let week = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    assert_eq!(days.len(), 7);
    let first = week
        .iter()
        .position(|d| *d == days[0])
        .expect("a weekday name");
    for (i, d) in days.iter().enumerate() {
        assert_eq!(*d, week[(first + i) % 7], "consecutive days: {days:?}");
    }
    assert_eq!(body["totalClicks"], 0);
    assert_eq!(body["activeLinks"], 0);
    assert_eq!(body["topRegion"], Value::Null);
    assert_eq!(body["trend"], json!({"clicks": 0.0, "active": 0.0}));
}

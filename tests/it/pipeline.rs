//! The click pipeline driven step by step: worker and aggregator against a real stream and
//! database, until nothing is pending.

use std::collections::HashMap;
use std::time::Duration;

use boltlink::clicks::queue::{ClickQueue, FlushOutcome, FLUSH_BATCH};
use boltlink::clicks::{aggregator, worker, ClickEvent, ClickKind, ClickLog};
use boltlink::config::Config;
use boltlink::pipeline::{Consumer, Pipeline, StepOutcome};
use boltlink::redis::limiter::HotLimiter;
use chrono::Utc;
use serde_json::json;
use uuid::Uuid;

use crate::support::{config_map, redis_connection, redis_server_of, ClickTotals, TestApp};

const BROWSER: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Safari/605.1.15";

async fn pipeline_for(app: &TestApp, overrides: &[(&str, &str)]) -> Pipeline {
    let mut o = vec![
        ("PIPELINE_POLL_MS", "20"),
        ("PIPELINE_BATCH_SIZE", "7"),
        ("AGGREGATOR_BATCH_SIZE", "7"),
    ];
    o.extend_from_slice(overrides);
    // Both consumers take steps of the same small size: the tests exercise many steps.
    if let Some(&(_, size)) = overrides.iter().find(|(k, _)| *k == "PIPELINE_BATCH_SIZE") {
        o.push(("AGGREGATOR_BATCH_SIZE", size));
    }
    let config = Config::from_map(&config_map(
        &app.database_url,
        &app.redis_url,
        &app.prefix,
        &o,
    ))
    .expect("config");
    let p = boltlink::pipeline::build(&config).expect("pipeline");
    assert!(p.stream.connect_now().await, "redis reachable");
    p.stream.ensure_groups().await.expect("groups");
    p
}

/// Appends events through the API's own append path (batch script).
async fn append(p: &Pipeline, events: Vec<ClickEvent>) {
    let queue = ClickQueue::new(100_000);
    for e in events {
        assert!(queue.push(e));
    }
    let limiter = HotLimiter::new();
    while p.stream.flush_once(&queue, &limiter).await == FlushOutcome::Delivered {}
    assert!(queue.is_empty());
}

fn event(link: &serde_json::Value, owner: Uuid, region: &str, kind: ClickKind) -> ClickEvent {
    ClickEvent {
        id: Uuid::now_v7(),
        link_id: link["id"].as_str().expect("id").parse().expect("uuid"),
        owner_key_id: owner,
        at_ms: Utc::now().timestamp_millis(),
        region: region.into(),
        user_agent: BROWSER.into(),
        referer: "https://news.example/".into(),
        latency_us: 1500,
        kind,
        client_ip: Some("198.51.100.4".parse().expect("ip")),
        rule_url: None,
    }
}

/// `events` as packed stream entries of `per_entry` clicks each (several flushes).
async fn append_entries(p: &Pipeline, events: Vec<ClickEvent>, per_entry: usize) {
    let mut events = events.into_iter().peekable();
    while events.peek().is_some() {
        append(p, events.by_ref().take(per_entry).collect()).await;
    }
}

async fn drain_worker(p: &Pipeline) -> usize {
    let mut c = Consumer::new(worker::GROUP, "worker");
    let mut total = 0;
    loop {
        match worker::step(p, &mut c).await.expect("worker step") {
            StepOutcome::Processed(n) => total += n,
            StepOutcome::Empty => return total,
        }
    }
}

async fn drain_aggregator(p: &Pipeline) -> usize {
    let mut c = Consumer::new(aggregator::GROUP, "aggregator");
    let mut total = 0;
    loop {
        match aggregator::step(p, &mut c).await.expect("aggregator step") {
            StepOutcome::Processed(n) => total += n,
            StepOutcome::Empty => return total,
        }
    }
}

/// `n` ordinary clicks on `link`.
fn clicks(link: &serde_json::Value, owner: Uuid, n: usize) -> Vec<ClickEvent> {
    (0..n)
        .map(|_| event(link, owner, "US", ClickKind::Click))
        .collect()
}

async fn drain_webhooks(p: &Pipeline) -> usize {
    let mut c = Consumer::new(boltlink::webhooks::clicks::GROUP, "webhooks");
    let mut total = 0;
    loop {
        match boltlink::webhooks::clicks::step(p, &mut c)
            .await
            .expect("webhooks step")
        {
            StepOutcome::Processed(n) => total += n,
            StepOutcome::Empty => return total,
        }
    }
}

/// Steps the aggregator with one consumer until nothing is left, treating a failed step the
/// way `run_loop` does (recover, try again), for at most 20 s.
async fn aggregate_until_empty(p: &Pipeline, consumer: &mut Consumer) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match aggregator::step(p, consumer).await {
            Ok(StepOutcome::Empty) => return,
            Ok(StepOutcome::Processed(_)) => {}
            Err(_) => consumer.recover(),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "aggregator did not drain"
        );
    }
}

async fn owner_of(app: &TestApp, link: &serde_json::Value) -> Uuid {
    sqlx::query_scalar("SELECT owner_key_id FROM links WHERE id = $1::uuid")
        .bind(link["id"].as_str().expect("id"))
        .fetch_one(&app.db)
        .await
        .expect("owner")
}

/// An app with one link made by a fresh key: the app, the link's JSON and its owner's id.
async fn app_with_one_link(url: &str) -> (TestApp, serde_json::Value, Uuid) {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let link = app.shorten(&key, json!({ "url": url })).await;
    let owner = owner_of(&app, &link).await;
    (app, link, owner)
}

async fn pending(app: &TestApp, group: &str) -> u64 {
    let mut c = app.redis.clone();
    let reply: redis::Value = redis::cmd("XPENDING")
        .arg(app.keys.click_stream())
        .arg(group)
        .query_async(&mut c)
        .await
        .expect("XPENDING");
    match reply {
        redis::Value::Array(items) => redis::from_redis_value(&items[0]).expect("count"),
        _ => panic!("unexpected XPENDING reply"),
    }
}

#[tokio::test]
async fn n_events_in_give_exact_rows_rollups_and_link_counts_out() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let a = app
        .shorten(&key, json!({"url": "https://example.com/a"}))
        .await;
    let b = app
        .shorten(&key, json!({"url": "https://example.com/b"}))
        .await;
    let owner = owner_of(&app, &a).await;
    let p = pipeline_for(&app, &[]).await;
    let mut events = Vec::new();
    for i in 0..23 {
        events.push(event(
            &a,
            owner,
            if i % 2 == 0 { "US" } else { "DE" },
            ClickKind::Click,
        ));
    }
    for _ in 0..5 {
        events.push(event(&b, owner, "FR", ClickKind::Click));
    }
    events.push(event(&b, owner, "FR", ClickKind::Gated));
    append(&p, events).await;

    assert_eq!(drain_worker(&p).await, 29);
    assert_eq!(drain_aggregator(&p).await, 29);
    assert_eq!(
        app.click_totals().await,
        ClickTotals {
            links: 28,
            rollups: 28,
            gated: 1,
            raw: 29
        }
    );
    let a_clicks: i64 = sqlx::query_scalar("SELECT clicks FROM links WHERE id = $1::uuid")
        .bind(a["id"].as_str().expect("id"))
        .fetch_one(&app.db)
        .await
        .expect("a");
    assert_eq!(a_clicks, 23);
    let regions: Vec<(String, i64)> = sqlx::query_as(
        "SELECT region, sum(clicks)::bigint FROM click_rollups_hourly WHERE link_id = $1::uuid GROUP BY 1 ORDER BY 1",
    )
    .bind(a["id"].as_str().expect("id"))
    .fetch_all(&app.db)
    .await
    .expect("regions");
    assert_eq!(
        regions,
        vec![("DE".to_string(), 11), ("US".to_string(), 12)]
    );
    let (device, browser, referrer, bot): (String, String, Option<String>, bool) = sqlx::query_as(
        "SELECT device_class, browser, referrer_host, is_bot FROM click_events LIMIT 1",
    )
    .fetch_one(&app.db)
    .await
    .expect("row");
    assert_eq!(
        (device.as_str(), browser.as_str(), referrer.as_deref(), bot),
        ("desktop", "Safari", Some("news.example"), false)
    );
    assert_eq!(pending(&app, "worker").await, 0);
    assert_eq!(pending(&app, "aggregator").await, 0);

    // The analytics routes now answer from these rollups.
    let analytics: serde_json::Value = app
        .get_with_key(
            &format!("/api/analytics/{}", a["shortCode"].as_str().expect("code")),
            &key,
        )
        .send()
        .await
        .expect("analytics")
        .json()
        .await
        .expect("json");
    assert_eq!(analytics["summary"]["totalClicks"], 23);
    assert_eq!(analytics["summary"]["topRegion"], "US");
    assert_eq!(analytics["summary"]["topDevice"], "desktop");
    assert_eq!(analytics["summary"]["avgLatency"], 1.5);
}

#[tokio::test]
async fn clicks_of_a_link_deleted_before_counting_are_skipped_and_the_rest_counted() {
    let app = TestApp::start().await;
    let key = app.key(false).await;
    let kept = app
        .shorten(&key, json!({"url": "https://example.com/kept"}))
        .await;
    let gone = app
        .shorten(&key, json!({"url": "https://example.com/gone"}))
        .await;
    let gated_only = app
        .shorten(&key, json!({"url": "https://example.com/gated"}))
        .await;
    let owner = owner_of(&app, &kept).await;
    let p = pipeline_for(&app, &[("PIPELINE_BATCH_SIZE", "1000")]).await;
    let mut events = clicks(&kept, owner, 4);
    events.extend(clicks(&gone, owner, 3));
    events.push(event(&gone, owner, "US", ClickKind::Gated));
    events.push(event(&gated_only, owner, "FR", ClickKind::Gated));
    append(&p, events).await;
    let res = app
        .delete_with_key(
            &format!("/api/links/{}", gone["id"].as_str().expect("id")),
            &key,
        )
        .send()
        .await
        .expect("delete");
    assert_eq!(res.status(), 200);

    // One step holds all of them: the deleted link's rows must not fail the transaction.
    assert_eq!(drain_aggregator(&p).await, 9);
    assert_eq!(
        app.click_totals().await,
        ClickTotals {
            links: 4,
            rollups: 4,
            gated: 1,
            raw: 0
        }
    );
    let gone_rows: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM click_rollups_hourly WHERE link_id = $1::uuid) \
         + (SELECT count(*) FROM click_rollups_total WHERE link_id = $1::uuid) \
         + (SELECT count(*) FROM click_rollups_daily WHERE link_id = $1::uuid)",
    )
    .bind(gone["id"].as_str().expect("id"))
    .fetch_one(&app.db)
    .await
    .expect("rows");
    assert_eq!(gone_rows, 0, "no rollup rows for a deleted link");
    let gated: (i64, i64) = sqlx::query_as(
        "SELECT clicks, (SELECT gated FROM click_rollups_total WHERE link_id = l.id) \
         FROM links l WHERE id = $1::uuid",
    )
    .bind(gated_only["id"].as_str().expect("id"))
    .fetch_one(&app.db)
    .await
    .expect("gated-only link");
    assert_eq!(
        gated,
        (0, 1),
        "a gated visit adds to rollups, not to clicks"
    );
    assert_eq!(pending(&app, "aggregator").await, 0);
}

#[tokio::test]
async fn a_redelivered_event_creates_no_second_row() {
    let (app, link, owner) = app_with_one_link("https://example.com/r").await;
    let p = pipeline_for(&app, &[]).await;
    let events: Vec<ClickEvent> = clicks(&link, owner, 10);
    append(&p, events.clone()).await;
    drain_worker(&p).await;
    // The same events again, as new stream entries (a producer's resend).
    append(&p, events).await;
    assert_eq!(drain_worker(&p).await, 10);
    assert_eq!(app.click_totals().await.raw, 10);
}

#[tokio::test]
async fn a_resent_batch_with_the_same_id_is_appended_once() {
    let app = TestApp::start().await;
    let p = pipeline_for(&app, &[]).await;
    let queue = ClickQueue::new(100);
    let limiter = HotLimiter::new();
    let link = json!({"id": Uuid::now_v7().to_string()});
    for _ in 0..3 {
        queue.push(event(&link, Uuid::nil(), "US", ClickKind::Click));
    }
    let batch = queue.next_batch(100).expect("batch");
    // Deliver it, then behave as if the reply had been lost: hold it and send it again.
    queue.hold(batch.clone());
    assert_eq!(
        p.stream.flush_once(&queue, &limiter).await,
        FlushOutcome::Delivered
    );
    queue.hold(batch);
    assert_eq!(
        p.stream.flush_once(&queue, &limiter).await,
        FlushOutcome::Delivered
    );
    assert_eq!(app.stream_entry_count().await, 1);
    assert_eq!(app.stream_click_count().await, 3);
}

#[tokio::test]
async fn a_crash_between_commit_and_acknowledgement_recounts_nothing() {
    let (app, link, owner) = app_with_one_link("https://example.com/c").await;
    let p = pipeline_for(&app, &[("PIPELINE_BATCH_SIZE", "100")]).await;
    // Four packed entries of three clicks.
    append_entries(&p, clicks(&link, owner, 12), 3).await;

    // Commit the counts, then "die" before acknowledging. A consumer that has seen entries
    // of three clicks asks for batch size / 3 = 33 entries: all four in one batch. (Read
    // batch by batch, unacknowledged, the second would find the first pending before it
    // and re-read it instead, as after another aggregator's read.)
    let mut dying = Consumer::new(aggregator::GROUP, "aggregator");
    dying.done(3);
    let a = aggregator::apply(&p, &mut dying).await.expect("apply");
    let applied = (a.ids.len(), a.clicks);
    assert_eq!(applied, (4, 12));
    drop(dying);
    assert_eq!(pending(&app, "aggregator").await, 4);
    assert_eq!(app.click_totals().await.links, 12);

    // The restarted aggregator re-reads its pending entries and skips them.
    assert_eq!(drain_aggregator(&p).await, 12);
    assert_eq!(app.click_totals().await.links, 12);
    assert_eq!(app.click_totals().await.rollups, 12);
    assert_eq!(pending(&app, "aggregator").await, 0);
}

#[tokio::test]
async fn a_crash_before_commit_counts_the_batch_after_restart() {
    let (app, link, owner) = app_with_one_link("https://example.com/d").await;
    let p = pipeline_for(&app, &[("PIPELINE_BATCH_SIZE", "100")]).await;
    // Four packed entries of two clicks.
    append_entries(&p, clicks(&link, owner, 8), 2).await;
    // Entries delivered to a consumer that died before doing anything (another name, too).
    let delivered = p
        .stream
        .read_group(
            aggregator::GROUP,
            "old-aggregator",
            100,
            std::time::Duration::from_millis(10),
            false,
        )
        .await
        .expect("read");
    assert_eq!(delivered.len(), 4);
    assert_eq!(drain_aggregator(&p).await, 8);
    assert_eq!(app.click_totals().await.links, 8);
    assert_eq!(pending(&app, "aggregator").await, 0);
}

#[tokio::test]
async fn invalid_stream_entries_go_to_dead_letters_and_do_not_block_the_rest() {
    let (app, link, owner) = app_with_one_link("https://example.com/e").await;
    let p = pipeline_for(&app, &[]).await;
    let mut c = app.redis.clone();
    let _: String = redis::cmd("XADD")
        .arg(app.keys.click_stream())
        .arg("*")
        .arg("v")
        .arg("1")
        .arg("id")
        .arg("not-a-uuid")
        .query_async(&mut c)
        .await
        .expect("xadd");
    append(&p, vec![event(&link, owner, "US", ClickKind::Click)]).await;
    assert_eq!(drain_worker(&p).await, 2);
    assert_eq!(drain_aggregator(&p).await, 2);
    assert_eq!(
        app.click_totals().await,
        ClickTotals {
            links: 1,
            rollups: 1,
            gated: 0,
            raw: 1
        }
    );
    let dead: u64 = redis::cmd("XLEN")
        .arg(app.keys.dead_letters())
        .query_async(&mut c)
        .await
        .expect("xlen");
    // Each consumer dead-letters what it cannot read.
    assert_eq!(dead, 2);
    let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(app.keys.dead_letters())
        .arg("-")
        .arg("+")
        .query_async(&mut c)
        .await
        .expect("xrange");
    let reason: String = redis::from_redis_value(&entries.ids[0].map["reason"]).expect("reason");
    assert!(reason.contains("id"), "{reason}");
}

#[tokio::test]
async fn a_bad_click_inside_a_packed_entry_is_dead_lettered_alone() {
    let (app, link, owner) = app_with_one_link("https://example.com/packed").await;
    let p = pipeline_for(&app, &[]).await;
    let good = [
        event(&link, owner, "US", ClickKind::Click),
        event(&link, owner, "DE", ClickKind::Click),
    ];
    // Record 1 of 3 has a link id that is no UUID; records 0 and 2 are fine.
    let packed = boltlink::clicks::event::pack(&good);
    let mut records: Vec<String> = packed.events.split('\x1e').map(str::to_string).collect();
    let broken = records[0].replacen(&good[0].link_id.to_string(), "no-such-link", 1);
    records.insert(1, broken.clone());
    let mut c = app.redis.clone();
    let _: String = redis::cmd("XADD")
        .arg(app.keys.click_stream())
        .arg("*")
        .arg("v")
        .arg(boltlink::clicks::event::PACKED_VERSION)
        .arg("n")
        .arg(3)
        .arg("strings")
        .arg(&packed.strings)
        .arg("events")
        .arg(records.join("\x1e"))
        .query_async(&mut c)
        .await
        .expect("xadd");
    // A packed entry whose count does not match its records cannot be trusted at all.
    let _: String = redis::cmd("XADD")
        .arg(app.keys.click_stream())
        .arg("*")
        .arg("v")
        .arg(boltlink::clicks::event::PACKED_VERSION)
        .arg("n")
        .arg(5)
        .arg("strings")
        .arg(&packed.strings)
        .arg("events")
        .arg(&records[0])
        .query_async(&mut c)
        .await
        .expect("xadd");
    // Each step counts the clicks it handled: three, then one unreadable entry.
    assert_eq!(drain_worker(&p).await, 4);
    assert_eq!(drain_aggregator(&p).await, 4);
    assert_eq!(
        app.click_totals().await,
        ClickTotals {
            links: 2,
            rollups: 2,
            gated: 0,
            raw: 2
        }
    );
    let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(app.keys.dead_letters())
        .arg("-")
        .arg("+")
        .query_async(&mut c)
        .await
        .expect("xrange");
    // Worker and aggregator each dead-letter the bad record and the bad entry.
    assert_eq!(entries.ids.len(), 4);
    let text = |i: usize, f: &str| -> String {
        entries.ids[i]
            .map
            .get(f)
            .map(|v| redis::from_redis_value(v).expect("text"))
            .unwrap_or_default()
    };
    assert!(
        text(0, "reason").contains("record 1") && text(0, "reason").contains("`link`"),
        "{}",
        text(0, "reason")
    );
    // The record as it was, with the entry's strings in place of their indexes.
    assert_eq!(
        text(0, "record"),
        broken.replacen(
            &format!("\x1f0\x1f1\x1f{}", good[0].latency_us),
            &format!(
                "\x1f{BROWSER}\x1f{}\x1f{}",
                good[0].referer, good[0].latency_us
            ),
            1
        )
    );
    assert!(
        text(1, "reason").contains("says 5 clicks"),
        "{}",
        text(1, "reason")
    );
    assert_eq!(text(1, "field.n"), "5");
    assert_eq!(pending(&app, "worker").await, 0);
    assert_eq!(pending(&app, "aggregator").await, 0);
}

#[tokio::test]
async fn bots_are_stored_flagged_and_counted_only_when_the_operator_says_so() {
    let (app, link, owner) = app_with_one_link("https://example.com/f").await;
    let p = pipeline_for(&app, &[]).await;
    let mut bot = event(&link, owner, "US", ClickKind::Click);
    bot.user_agent = "Googlebot/2.1 (+http://www.google.com/bot.html)".into();
    append(&p, vec![bot, event(&link, owner, "US", ClickKind::Click)]).await;
    drain_worker(&p).await;
    drain_aggregator(&p).await;
    assert_eq!(
        app.click_totals().await,
        ClickTotals {
            links: 1,
            rollups: 1,
            gated: 0,
            raw: 2
        }
    );
    let flagged: i64 = sqlx::query_scalar("SELECT count(*) FROM click_events WHERE is_bot")
        .fetch_one(&app.db)
        .await
        .expect("bots");
    assert_eq!(flagged, 1);

    // One aggregator at a time: the first one's lock goes with it.
    drop(p);
    let counting = pipeline_for(&app, &[("COUNT_BOTS", "true")]).await;
    let mut bot = event(&link, owner, "US", ClickKind::Click);
    bot.user_agent = "curl/8.4.0".into();
    append(&counting, vec![bot]).await;
    drain_aggregator(&counting).await;
    assert_eq!(app.click_totals().await.links, 2);
}

#[tokio::test]
async fn with_geoip_db_events_without_a_region_get_the_country_of_their_address() {
    let (app, link, owner) = app_with_one_link("https://example.com/geo").await;
    let db = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/country.mmdb");
    let p = pipeline_for(&app, &[("GEOIP_DB", db)]).await;
    let mut german = event(&link, owner, "UNKNOWN", ClickKind::Click);
    german.client_ip = Some("198.51.100.20".parse().expect("ip"));
    let mut unknown = event(&link, owner, "UNKNOWN", ClickKind::Click);
    unknown.client_ip = Some("192.0.2.20".parse().expect("ip"));
    let headed = event(&link, owner, "US", ClickKind::Click);
    append(&p, vec![german, unknown, headed]).await;
    drain_worker(&p).await;
    drain_aggregator(&p).await;
    let raw: Vec<String> = sqlx::query_scalar("SELECT region FROM click_events ORDER BY region")
        .fetch_all(&app.db)
        .await
        .expect("raw regions");
    assert_eq!(raw, ["DE", "UNKNOWN", "US"]);
    let rolled: Vec<String> =
        sqlx::query_scalar("SELECT region FROM click_rollups_total ORDER BY region")
            .fetch_all(&app.db)
            .await
            .expect("rollup regions");
    assert_eq!(rolled, ["DE", "UNKNOWN", "US"]);
}

/// The same with the real CC0 database of ip-location-db (its `country_code` layout).
#[tokio::test]
async fn with_a_real_ip_location_db_database_regions_come_from_the_address() {
    let (app, link, owner) = app_with_one_link("https://example.com/geo").await;
    let db = crate::support::real_geoip_db();
    let p = pipeline_for(&app, &[("GEOIP_DB", db.as_str())]).await;
    let mut events = Vec::new();
    for ip in [
        "81.169.145.1",
        "133.11.0.1",
        "2001:67c:2e8:22::c100:68b",
        "10.1.2.3",
    ] {
        let mut e = event(&link, owner, "UNKNOWN", ClickKind::Click);
        e.client_ip = Some(ip.parse().expect("ip"));
        events.push(e);
    }
    append(&p, events).await;
    drain_worker(&p).await;
    drain_aggregator(&p).await;
    let raw: Vec<String> = sqlx::query_scalar("SELECT region FROM click_events ORDER BY region")
        .fetch_all(&app.db)
        .await
        .expect("raw regions");
    assert_eq!(raw, ["DE", "JP", "NL", "UNKNOWN"]);
    let rolled: Vec<String> =
        sqlx::query_scalar("SELECT region FROM click_rollups_total ORDER BY region")
            .fetch_all(&app.db)
            .await
            .expect("rollup regions");
    assert_eq!(rolled, ["DE", "JP", "NL", "UNKNOWN"]);
}

#[tokio::test]
async fn retention_removes_old_raw_events_in_batches_and_keeps_rollups() {
    let (app, link, owner) = app_with_one_link("https://example.com/g").await;
    let p = pipeline_for(&app, &[("CLICK_RETENTION_DAYS", "30")]).await;
    let mut events = Vec::new();
    for i in 0..25 {
        let mut e = event(&link, owner, "US", ClickKind::Click);
        if i < 15 {
            e.at_ms -= 40 * 86_400_000;
        }
        events.push(e);
    }
    append(&p, events).await;
    drain_worker(&p).await;
    drain_aggregator(&p).await;
    assert_eq!(worker::apply_retention(&p).await.expect("retention"), 15);
    let ClickTotals {
        links: clicks,
        rollups: rolled,
        raw,
        ..
    } = app.click_totals().await;
    assert_eq!((clicks, rolled, raw), (25, 25, 10));
}

#[tokio::test]
async fn the_stream_is_trimmed_only_below_what_every_group_has_finished() {
    let (app, link, owner) = app_with_one_link("https://example.com/h").await;
    let p = pipeline_for(&app, &[]).await;
    // Five packed entries of four clicks.
    append_entries(&p, clicks(&link, owner, 20), 4).await;
    drain_worker(&p).await;
    // The aggregator has not read anything: nothing may go.
    assert_eq!(p.stream.trim_consumed().await.expect("trim"), 0);
    assert_eq!(app.stream_entry_count().await, 5);
    assert_eq!(app.stream_click_count().await, 20);
    drain_aggregator(&p).await;
    // The webhook sender's group has not read anything either.
    assert_eq!(p.stream.trim_consumed().await.expect("trim"), 0);
    drain_webhooks(&p).await;
    let removed = p.stream.trim_consumed().await.expect("trim");
    assert!(removed >= 4, "removed {removed} of 5 entries");
    let lag = p.stream.group_lag("aggregator").await.expect("lag");
    assert_eq!((lag.events, lag.pending), (0, 0));
    append(&p, clicks(&link, owner, 3)).await;
    // Lag counts stream entries: the three clicks were flushed as one.
    let lag = p.stream.group_lag("worker").await.expect("lag");
    assert_eq!(lag.events, 1);
    assert!(lag.oldest_ms.is_some());
    let counts: HashMap<&str, usize> = HashMap::from([
        ("worker", drain_worker(&p).await),
        ("aggregator", drain_aggregator(&p).await),
    ]);
    assert_eq!(counts["worker"], 3);
    assert_eq!(counts["aggregator"], 3);
    assert_eq!(app.click_totals().await.links, 23);
}

#[tokio::test]
async fn a_batch_whose_write_failed_is_counted_before_anything_newer() {
    use crate::fixtures::{database_socket_addr, database_url_via, CuttableProxy};
    let (app, link, owner) = app_with_one_link("https://example.com/i").await;
    let proxy = CuttableProxy::start(database_socket_addr(&app.database_url)).await;
    let via_proxy = database_url_via(&app.database_url, proxy.addr);
    let config = Config::from_map(&config_map(
        &via_proxy,
        &app.redis_url,
        &app.prefix,
        &[
            ("PIPELINE_POLL_MS", "20"),
            ("PIPELINE_BATCH_SIZE", "100"),
            ("AGGREGATOR_BATCH_SIZE", "100"),
        ],
    ))
    .expect("config");
    let p = boltlink::pipeline::build(&config).expect("pipeline");
    assert!(p.stream.connect_now().await);
    p.stream.ensure_groups().await.expect("groups");

    append(&p, clicks(&link, owner, 5)).await;
    let mut consumer = Consumer::new(aggregator::GROUP, "aggregator");
    proxy.cut();
    assert!(
        aggregator::step(&p, &mut consumer).await.is_err(),
        "the write must fail while the database is cut"
    );
    consumer.recover();
    proxy.restore();
    append(&p, clicks(&link, owner, 5)).await;
    // The loop retries with the same consumer: the failed batch first, then the newer one.
    aggregate_until_empty(&p, &mut consumer).await;
    assert_eq!(app.click_totals().await.links, 10);
    assert_eq!(pending(&app, "aggregator").await, 0);
}

#[tokio::test]
async fn entries_delivered_by_a_read_whose_reply_was_lost_are_counted_before_anything_newer() {
    // Redis delivers a batch (it is pending for the consumer) but the reply never arrives: the
    // connection drops. The consumer must re-read its pending entries before new ones, or the
    // aggregator's offset moves past a batch it never counted.
    let (app, link, owner) = app_with_one_link("https://example.com/lost").await;
    let p = pipeline_for(&app, &[("PIPELINE_BATCH_SIZE", "100")]).await;
    let mut consumer = Consumer::new(aggregator::GROUP, "aggregator");
    // Past its start-up recovery: reading new entries only.
    assert_eq!(
        aggregator::step(&p, &mut consumer)
            .await
            .expect("idle step"),
        StepOutcome::Empty
    );
    assert!(!consumer.is_recovering());

    append_entries(&p, clicks(&link, owner, 5), 1).await;
    // The delivery whose reply is lost: the entries become pending for "aggregator".
    let mut c = app.redis.clone();
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(aggregator::GROUP)
        .arg("aggregator")
        .arg("COUNT")
        .arg(100)
        .arg("STREAMS")
        .arg(app.keys.click_stream())
        .arg(">")
        .query_async(&mut c)
        .await
        .expect("delivery");
    assert_eq!(pending(&app, "aggregator").await, 5);
    // ... and the consumer's own connection to the stream's server drops (only that one: other
    // tests share this Redis): its next read fails. On a cluster the consumer holds a
    // connection per node and `CLIENT INFO` goes to any of them: asked until the stream's
    // master answers, which then drops that connection.
    let server = redis_server_of(&app.redis_url, &app.keys.click_stream()).await;
    let mut id = None;
    for _ in 0..200 {
        let info: String = p
            .stream
            .query_cmd(&redis::cmd("CLIENT").arg("INFO").clone())
            .await
            .expect("the consumer's connection");
        let field = |name: &str| {
            info.split_whitespace()
                .find_map(|f| f.strip_prefix(name))
                .map(str::to_string)
        };
        if field("laddr=").as_deref() == Some(server.as_str()) {
            id = field("id=");
            break;
        }
    }
    let id = id.unwrap_or_else(|| panic!("the consumer's connection to {server}"));
    let mut stream_server = redis_connection(&format!("redis://{server}/")).await;
    let _: redis::Value = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(id)
        .query_async(&mut stream_server)
        .await
        .expect("client kill");
    assert!(aggregator::step(&p, &mut consumer).await.is_err());
    assert!(p.stream.connect_now().await, "reconnects");

    append(&p, clicks(&link, owner, 5)).await;
    // No manual help: the failed read itself put the consumer back into recovery.
    assert!(consumer.is_recovering());
    aggregate_until_empty(&p, &mut consumer).await;
    assert_eq!(
        app.click_totals().await.links,
        10,
        "every click counted once"
    );
    assert_eq!(pending(&app, "aggregator").await, 0);
}

#[tokio::test]
async fn trimming_never_removes_entries_a_consumer_has_read_but_not_finished() {
    let (app, link, owner) = app_with_one_link("https://example.com/j").await;
    let p = pipeline_for(&app, &[("PIPELINE_BATCH_SIZE", "100")]).await;
    // Five packed entries of two clicks.
    append_entries(&p, clicks(&link, owner, 10), 2).await;
    drain_worker(&p).await;
    // The aggregator has read everything but finished nothing (say its commit failed).
    let delivered = p
        .stream
        .read_group(
            aggregator::GROUP,
            "aggregator",
            100,
            std::time::Duration::from_millis(10),
            false,
        )
        .await
        .expect("read");
    assert_eq!(delivered.len(), 5);
    assert_eq!(p.stream.trim_consumed().await.expect("trim"), 0);
    assert_eq!(app.stream_entry_count().await, 5);
    assert_eq!(app.stream_click_count().await, 10);
    assert_eq!(drain_aggregator(&p).await, 10);
    assert_eq!(app.click_totals().await.links, 10);
}

#[tokio::test]
async fn a_full_batch_of_queued_clicks_reaches_the_stream_in_one_flush() {
    let app = TestApp::start().await;
    let p = pipeline_for(&app, &[]).await;
    let queue = ClickQueue::new(100_000);
    let limiter = HotLimiter::new();
    let link = json!({"id": Uuid::now_v7().to_string()});
    let n = FLUSH_BATCH + 500;
    for _ in 0..n {
        queue.push(event(&link, Uuid::nil(), "US", ClickKind::Click));
    }
    assert_eq!(
        p.stream.flush_once(&queue, &limiter).await,
        FlushOutcome::Delivered
    );
    assert_eq!(app.stream_entry_count().await, 1);
    assert_eq!(app.stream_click_count().await, FLUSH_BATCH as u64);
    assert_eq!(
        p.stream.flush_once(&queue, &limiter).await,
        FlushOutcome::Delivered
    );
    assert_eq!(app.stream_entry_count().await, 2);
    assert_eq!(app.stream_click_count().await, n as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_consumer_blocked_in_its_read_keeps_redis_healthy() {
    // The blocking XREADGROUP and the supervisor's PING share one connection; a PING queued
    // behind a long poll must not be taken for an outage.
    let app = TestApp::start().await;
    let p = pipeline_for(&app, &[("PIPELINE_POLL_MS", "1500")]).await;
    let mut c = Consumer::new(worker::GROUP, "worker");
    let read = tokio::spawn({
        let p = p.clone();
        async move { worker::step(&p, &mut c).await.map_err(|e| format!("{e:#}")) }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ping = p.stream.ping().await;
    assert!(ping.is_ok(), "ping behind a blocking read: {ping:?}");
    assert!(p.stream.is_healthy());
    assert_eq!(
        read.await.expect("join").expect("step"),
        StepOutcome::Empty,
        "nothing to read"
    );
    assert!(p.stream.is_healthy(), "still healthy after the poll");
}

/// The URL a redirect rule chose is stored with the raw event, on the `COPY` path and on the
/// redelivery path (`INSERT ... ON CONFLICT`) alike; other clicks store none.
#[tokio::test]
async fn the_worker_stores_the_url_a_rule_chose() {
    let (app, link, owner) = app_with_one_link("https://example.com/a").await;
    let p = pipeline_for(&app, &[]).await;
    let plain = event(&link, owner, "US", ClickKind::Click);
    let mut routed = event(&link, owner, "US", ClickKind::Click);
    routed.rule_url = Some("https://example.com/ios".into());
    append(&p, vec![plain.clone(), routed.clone()]).await;
    assert_eq!(drain_worker(&p).await, 2);
    // A redelivered batch with one new routed click goes through the slow path.
    let mut later = event(&link, owner, "US", ClickKind::Click);
    later.rule_url = Some("https://example.com/android".into());
    append(&p, vec![routed.clone(), later.clone()]).await;
    assert_eq!(drain_worker(&p).await, 2);
    let stored: Vec<(Uuid, Option<String>)> =
        sqlx::query_as("SELECT id, rule_url FROM click_events ORDER BY at, id")
            .fetch_all(&app.db)
            .await
            .expect("events");
    let by_id = |id: Uuid| {
        stored
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, url)| url.clone())
            .expect("stored")
    };
    assert_eq!(stored.len(), 3);
    assert_eq!(by_id(plain.id), None);
    assert_eq!(by_id(routed.id).as_deref(), Some("https://example.com/ios"));
    assert_eq!(
        by_id(later.id).as_deref(),
        Some("https://example.com/android")
    );
}

#[tokio::test]
async fn webhook_clicks_are_staged_once_and_batched_per_key_by_the_thousand() {
    let (app, link, owner) = app_with_one_link("https://example.com/w").await;
    let p = pipeline_for(&app, &[]).await;
    // Without a webhook URL the key's clicks are read and acknowledged, not staged.
    append_entries(&p, clicks(&link, owner, 10), 5).await;
    assert_eq!(drain_webhooks(&p).await, 10);
    let staged = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM webhook_clicks")
            .fetch_one(&app.db)
            .await
            .expect("count")
    };
    assert_eq!(staged().await, 0);
    assert_eq!(pending(&app, "webhooks").await, 0);

    sqlx::query("UPDATE api_keys SET webhook_url = 'https://hooks.example/x' WHERE id = $1")
        .bind(owner)
        .execute(&app.db)
        .await
        .expect("set url");
    let batch = clicks(&link, owner, 2500);
    append_entries(&p, batch.clone(), 500).await;
    // One invalid entry among them is skipped (the worker dead-letters it), not fatal.
    let mut c = app.redis.clone();
    let _: String = redis::cmd("XADD")
        .arg(app.keys.click_stream())
        .arg("*")
        .arg("v")
        .arg("99")
        .query_async(&mut c)
        .await
        .expect("xadd");
    assert_eq!(drain_webhooks(&p).await, 2501);
    assert_eq!(staged().await, 2500);
    // A batch handled again (a crash between the write and the acknowledgement) stages
    // nothing twice: the clicks are keyed by their id.
    append_entries(&p, batch[..700].to_vec(), 100).await;
    assert_eq!(drain_webhooks(&p).await, 700);
    assert_eq!(staged().await, 2500);

    // Batching: the oldest thousand per key per run.
    let made = || async { p.store.batch_staged_clicks(1000).await.expect("batch") };
    assert_eq!(made().await, 1);
    assert_eq!(staged().await, 1500);
    assert_eq!(made().await, 1);
    assert_eq!(made().await, 1);
    assert_eq!(made().await, 0);
    let sizes: Vec<i32> = sqlx::query_scalar(
        "SELECT jsonb_array_length(data->'clicks') FROM webhook_events WHERE type = 'link.clicked' \
         ORDER BY created_at, id",
    )
    .fetch_all(&app.db)
    .await
    .expect("events");
    let mut sorted = sizes.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [500, 1000, 1000]);
    let first: serde_json::Value = sqlx::query_scalar(
        "SELECT data->'clicks'->0 FROM webhook_events WHERE type = 'link.clicked' \
         AND jsonb_array_length(data->'clicks') = 1000 LIMIT 1",
    )
    .fetch_one(&app.db)
    .await
    .expect("a click");
    assert_eq!(first["linkId"], link["id"]);
    assert_eq!(first["shortCode"], link["shortCode"]);
    assert_eq!(first["url"], "https://example.com/w");
    assert_eq!(first["device"], "desktop");
    assert_eq!(first["referrerHost"], "news.example");
    assert_eq!(first["bot"], false);
}

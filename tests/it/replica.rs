//! `DATABASE_READ_URL`: link lists and analytics from a real streaming replica of the test
//! cluster (started by `scripts/test` with `bl_start_replica`), a key's own writes read at
//! once, and the primary taking over whenever the replica lags, fails or is no standby.
//!
//! The tests that pause the replica's replay hold [`SHARED_REPLICA`]: a paused replica is
//! paused for every database on it.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{
    code_of, eventually, id_of, metric, parse_metrics, with_database, TestApp, TestDatabase,
};

static SHARED_REPLICA: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The replica's URL of the boltlink database (its superuser role, as on the primary).
fn replica_base_url() -> String {
    std::env::var("BOLTLINK_TEST_REPLICA_URL").expect(
        "BOLTLINK_TEST_REPLICA_URL must name a streaming replica of DATABASE_URL's cluster \
         (scripts/test starts one with bl_start_replica in scripts/lib/services.sh)",
    )
}

/// The replica's URL of `database` (created on the primary, so on the replica too once
/// replayed).
fn replica_url_of(database: &TestDatabase) -> String {
    let name = url::Url::parse(database.url())
        .expect("database url")
        .path()
        .trim_start_matches('/')
        .to_string();
    with_database(&replica_base_url(), &name)
}

/// Replay on the shared replica paused until dropped (also when the test panics), so the
/// replica falls behind while the primary moves on.
struct ReplayPaused;

impl ReplayPaused {
    async fn start() -> ReplayPaused {
        replica_sql("SELECT pg_wal_replay_pause()").await;
        ReplayPaused
    }
}

impl Drop for ReplayPaused {
    fn drop(&mut self) {
        std::thread::spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(replica_sql("SELECT pg_wal_replay_resume()"))
        })
        .join()
        .expect("replay resumed");
    }
}

async fn replica_sql(statement: &str) {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&replica_base_url())
        .await
        .expect("connect to the replica");
    sqlx::query(statement)
        .execute(&pool)
        .await
        .expect("replica statement");
    pool.close().await;
}

async fn start_with_replica(max_lag_ms: &str) -> (TestApp, TestDatabase) {
    let database = TestDatabase::create().await;
    let app = TestApp::builder()
        .database(database.clone())
        .set("DATABASE_READ_URL", &replica_url_of(&database))
        .set("DATABASE_READ_MAX_LAG_MS", max_lag_ms)
        .start()
        .await;
    (app, database)
}

async fn replica_check(app: &TestApp) -> (String, Value) {
    let (status, health) = app.get_json("/health", None).await;
    assert_eq!(
        status, 200,
        "the replica never makes /health fail: {health}"
    );
    assert_eq!(health["status"], "healthy", "{health}");
    (
        health["checks"]["databaseReplica"]
            .as_str()
            .unwrap_or("")
            .to_string(),
        health,
    )
}

async fn wait_for_replica_state(app: &TestApp, state: &str) {
    eventually(Duration::from_secs(30), || async {
        replica_check(app).await.0 == state
    })
    .await;
}

/// The link with `code` in a list answer, as the list shows it.
fn listed<'a>(list: &'a Value, code: &str) -> Option<&'a Value> {
    list.as_array()
        .expect("a list")
        .iter()
        .find(|l| l["shortCode"] == code)
}

fn reads_by(text: &str, server: &str) -> f64 {
    metric(
        &parse_metrics(text),
        "boltlink_database_reads_total",
        &[("server", server)],
    )
    .unwrap_or(0.0)
}

#[tokio::test]
async fn lists_and_analytics_come_from_the_replica_and_a_keys_own_writes_are_read_at_once() {
    let _serial = SHARED_REPLICA.lock().await;
    let (app, _database) = start_with_replica("60000").await;
    wait_for_replica_state(&app, "ok").await;
    // The admin key only reads (its lists show every link); the writer's changes fence it.
    let admin = app.key(true).await;
    let writer = app.key(false).await;
    let link = app.create_link(&writer, json!({})).await;
    let code = code_of(&link);
    eventually(Duration::from_secs(30), || async {
        listed(&app.get_ok_json("/api/links", &admin).await, &code).is_some()
    })
    .await;

    let paused = ReplayPaused::start().await;
    // A change straight in the primary, as the aggregator makes them.
    app.set_clicks(&code, 42).await;
    let before = app.metrics_text().await;
    let list = app.get_ok_json("/api/links", &admin).await;
    assert_eq!(
        listed(&list, &code).expect("listed")["clicks"],
        0,
        "the list came from the paused replica"
    );
    let top = app.get_ok_json("/api/top-links", &admin).await;
    assert_eq!(listed(&top, &code).expect("top")["clicks"], 0);
    let overview = app.get_ok_json("/api/stats/overview", &admin).await;
    assert_eq!(overview["totalClicks"], 0, "{overview}");
    let after = app.metrics_text().await;
    assert_eq!(
        reads_by(&after, "replica") - reads_by(&before, "replica"),
        3.0,
        "three reads counted as the replica's"
    );
    // One link by id is never read from the replica.
    let one = app
        .get_ok_json(&format!("/api/links/{}", id_of(&link)), &writer)
        .await;
    assert_eq!(one["clicks"], 42);

    // The writer's own change is in its very next list, though the replica has not seen it.
    let newer = app.create_link(&writer, json!({})).await;
    let list = app.get_ok_json("/api/links", &writer).await;
    assert!(
        listed(&list, &code_of(&newer)).is_some(),
        "a key's own new link is listed at once: {list}"
    );
    assert_eq!(listed(&list, &code).expect("listed")["clicks"], 42);
    let export = app
        .get_with_key("/api/links/export", &writer)
        .send()
        .await
        .expect("export");
    assert_eq!(export.status(), 200);
    let csv = export.text().await.expect("csv");
    assert!(csv.contains(&code_of(&newer)), "{csv}");

    drop(paused);
    eventually(Duration::from_secs(30), || async {
        let list = app.get_ok_json("/api/links", &admin).await;
        listed(&list, &code).is_some_and(|l| l["clicks"] == 42)
    })
    .await;
}

#[tokio::test]
async fn a_replica_further_behind_than_allowed_is_named_and_reads_go_to_the_primary() {
    let _serial = SHARED_REPLICA.lock().await;
    let (app, _database) = start_with_replica("1000").await;
    wait_for_replica_state(&app, "ok").await;
    let admin = app.key(true).await;
    let writer = app.key(false).await;
    let code = code_of(&app.create_link(&writer, json!({})).await);
    eventually(Duration::from_secs(30), || async {
        listed(&app.get_ok_json("/api/links", &admin).await, &code).is_some()
    })
    .await;

    let paused = ReplayPaused::start().await;
    app.set_clicks(&code, 7).await;
    wait_for_replica_state(&app, "lagging").await;
    let (_, health) = replica_check(&app).await;
    let why = health["errors"]["databaseReplica"].as_str().unwrap_or("");
    assert!(
        why.contains("behind the primary (DATABASE_READ_MAX_LAG_MS=1000): reads go to the primary"),
        "{health}"
    );
    let list = app.get_ok_json("/api/links", &admin).await;
    assert_eq!(
        listed(&list, &code).expect("listed")["clicks"],
        7,
        "read from the primary"
    );
    let system = app.get_ok_json("/api/system/health", &admin).await;
    let entry = system
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["service"] == "database-replica")
        .cloned()
        .expect("a database-replica entry");
    assert_eq!(entry["status"], "warning", "{entry}");
    let text = app.metrics_text().await;
    assert_eq!(
        metric(
            &parse_metrics(&text),
            "boltlink_database_replica_usable",
            &[]
        ),
        Some(0.0)
    );
    assert!(
        metric(
            &parse_metrics(&text),
            "boltlink_database_replica_lag_seconds",
            &[]
        )
        .is_some_and(|lag| lag > 1.0),
        "the lag is exported"
    );

    drop(paused);
    wait_for_replica_state(&app, "ok").await;
    assert!(replica_check(&app).await.1.get("errors").is_none());
}

#[tokio::test]
async fn an_unreachable_replica_or_a_server_that_is_no_standby_is_named_and_never_fails_a_read() {
    for (replica, why) in [
        (
            "postgres://boltlink:boltlink@127.0.0.1:1/boltlink".to_string(),
            "database unavailable",
        ),
        // The primary itself: answers, but is no replica of anything.
        (
            crate::support::admin_database_url(),
            "not a standby (pg_is_in_recovery() is false)",
        ),
    ] {
        let app = TestApp::builder()
            .set("DATABASE_READ_URL", &replica)
            .start()
            .await;
        wait_for_replica_state(&app, "failing").await;
        let (_, health) = replica_check(&app).await;
        let error = health["errors"]["databaseReplica"].as_str().unwrap_or("");
        assert!(
            error.contains(why) && error.ends_with("reads go to the primary"),
            "{health}"
        );
        let key = app.key(false).await;
        let code = code_of(&app.create_link(&key, json!({})).await);
        let list = app.get_ok_json("/api/links", &key).await;
        assert!(listed(&list, &code).is_some());
        for path in [
            "/api/analytics/global",
            "/api/stats/overview",
            "/api/campaigns",
        ] {
            let (status, body) = app.get_json(path, Some(&key)).await;
            assert_eq!(status, 200, "{path}: {body}");
        }
        let (status, _) = app
            .get_json(&format!("/api/analytics/{code}"), Some(&key))
            .await;
        assert_eq!(status, 200);
        let system = app.get_ok_json("/api/system/health", &key).await;
        assert!(
            system
                .as_array()
                .expect("entries")
                .iter()
                .any(|e| e["service"] == "database-replica" && e["status"] == "error"),
            "{system}"
        );
        let text = app.metrics_text().await;
        // The list, three analytics views and the campaigns: five reads, all on the primary.
        assert_eq!(reads_by(&text, "primary"), 5.0, "{text}");
        assert_eq!(reads_by(&text, "replica"), 0.0);
    }
}

#[tokio::test]
async fn without_a_replica_health_has_no_replica_check() {
    let app = TestApp::start().await;
    let (status, health) = app.get_json("/health", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        health["checks"],
        json!({"database": "ok", "redis": "ok"}),
        "the 0.1 shape, unchanged"
    );
    assert!(!app
        .metrics_text()
        .await
        .contains("boltlink_database_reads_total"));
}

//! The harness itself: what it promises every other module.

use std::time::Duration;

use crate::support::{admin_database_url, TestApp};

/// A failing test must not leave a server running or a database behind: dropping the app
/// while the panic unwinds stops the server (bounded) and then drops the database.
#[tokio::test]
async fn a_test_that_panics_still_stops_its_app_and_drops_its_database() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let failed = tokio::spawn(async move {
        let app = TestApp::start().await;
        let database = url::Url::parse(&app.database_url).expect("url").path()[1..].to_string();
        tx.send((app.addr, database)).expect("send");
        panic!("a test failing on purpose, with its app running");
    })
    .await;
    assert!(failed.expect_err("the test panicked").is_panic());
    let (addr, database) = rx.await.expect("the app started");

    let connect =
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr));
    assert!(
        !matches!(connect.await, Ok(Ok(_))),
        "the server at {addr} was stopped before the panic left the test"
    );
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&admin_database_url())
        .await
        .expect("connect to DATABASE_URL");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(&database)
        .fetch_one(&admin)
        .await
        .expect("pg_database");
    assert_eq!(left, 0, "database {database} was dropped");
}

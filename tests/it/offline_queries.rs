//! `.sqlx/` against the schema. Builds check the store's queries against the descriptions
//! committed in `.sqlx/`, never against a database (`SQLX_OFFLINE=true`), so a new or changed
//! query without a `scripts/sqlx-prepare` run already fails the build. This catches the other
//! half: a migration that changes what an unchanged query returns or takes (a column's type or
//! nullability), which would otherwise compile against the old description and fail at run time.

use serde_json::Value;
use sqlx::{Column, Either, Executor, TypeInfo};

use crate::support::TestDatabase;

/// The name `PgTypeInfo::name` gives a type, from its serialized form in `.sqlx/`: a `PgType`
/// variant (`"Int8"`, `"TimestamptzArray"`) or a custom type with its name.
fn type_name(serialized: &Value) -> String {
    match serialized {
        Value::String(variant) => match variant.strip_suffix("Array") {
            Some(element) => format!("{}[]", element.to_uppercase()),
            None => variant.to_uppercase(),
        },
        Value::Object(custom) => custom
            .get("Custom")
            .and_then(|c| c.get("name"))
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("unknown type_info shape in .sqlx/: {serialized}"))
            .to_uppercase(),
        other => panic!("unknown type_info shape in .sqlx/: {other}"),
    }
}

#[tokio::test]
async fn every_committed_query_description_matches_a_freshly_migrated_database() {
    let database = TestDatabase::create().await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(database.url())
        .await
        .expect("connect to the test database");
    boltlink::store::MIGRATOR
        .run(&pool)
        .await
        .expect("migrations apply");

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".sqlx");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("read .sqlx/")
        .map(|entry| entry.expect("entry of .sqlx/").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no query data", dir.display());

    let mut stale = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).expect("read query data");
        let committed: Value = serde_json::from_str(&text).expect("query data is JSON");
        let query = committed["query"].as_str().expect("query text");
        let describe = &committed["describe"];

        let live = match pool.describe(query).await {
            Ok(live) => live,
            Err(e) => {
                stale.push(format!("{}: {e}\n  {query}", path.display()));
                continue;
            }
        };
        let columns: Vec<(String, String, Option<bool>)> = live
            .columns()
            .iter()
            .enumerate()
            .map(|(i, c)| {
                (
                    c.name().to_string(),
                    c.type_info().name().to_string(),
                    live.nullable(i),
                )
            })
            .collect();
        let committed_columns: Vec<(String, String, Option<bool>)> = describe["columns"]
            .as_array()
            .expect("columns")
            .iter()
            .zip(describe["nullable"].as_array().expect("nullable"))
            .map(|(c, nullable)| {
                (
                    c["name"].as_str().expect("column name").to_string(),
                    type_name(&c["type_info"]),
                    nullable.as_bool(),
                )
            })
            .collect();
        let parameters: Vec<String> = match live.parameters() {
            Some(Either::Left(types)) => types.iter().map(|t| t.name().to_string()).collect(),
            other => panic!("PostgreSQL describes parameter types, got {other:?}"),
        };
        let committed_parameters: Vec<String> = describe["parameters"]["Left"]
            .as_array()
            .expect("parameter types")
            .iter()
            .map(type_name)
            .collect();

        let mut differences = Vec::new();
        for i in 0..columns.len().max(committed_columns.len()) {
            if columns.get(i) != committed_columns.get(i) {
                differences.push(format!(
                    "column {i} (name, type, nullable): committed {:?}, database {:?}",
                    committed_columns.get(i),
                    columns.get(i)
                ));
            }
        }
        if parameters != committed_parameters {
            differences.push(format!(
                "parameters: committed {committed_parameters:?}, database {parameters:?}"
            ));
        }
        if !differences.is_empty() {
            stale.push(format!(
                "{}\n  {query}\n  {}",
                path.display(),
                differences.join("\n  ")
            ));
        }
    }
    pool.close().await;
    assert!(
        stale.is_empty(),
        ".sqlx/ is stale against migrations/; run scripts/sqlx-prepare and commit .sqlx/:\n{}",
        stale.join("\n")
    );
}

//! Operations routes: health and readiness (also with PostgreSQL or Redis unreachable), system
//! health from real checks and heartbeats, the OpenAPI document and its parity with the route
//! table, and metrics that show every instance. Response bodies are also checked against the
//! schemas the OpenAPI document gives for them, so the document describes what the code returns.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::{Duration, Instant};

use boltlink::http::openapi::document_json;
use boltlink::http::ROUTES;
use serde_json::{json, Value};

use crate::support::{error_message, metric, parse_metrics, MetricSample, TestApp};

/// Nothing listens on port 1.
const UNREACHABLE_REDIS: &str = "redis://127.0.0.1:1/";
const UNREACHABLE_DATABASE: &str = "postgres://boltlink:boltlink@127.0.0.1:1/none";

/// Methods an OpenAPI path item may hold; its other keys (`parameters`, `summary`, ...) are not
/// operations.
const OPENAPI_METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Polls `fetch` until `done` holds for what it returns, and returns that; panics with the
/// last value when `within` passes.
async fn poll<T, F, Fut>(within: Duration, what: &str, mut fetch: F, done: impl Fn(&T) -> bool) -> T
where
    T: std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let deadline = Instant::now() + within;
    loop {
        let last = fetch().await;
        if done(&last) {
            return last;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not reached within {within:?}; last seen: {last:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn assert_rfc3339(v: &Value, what: &str) {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("{what} is a string: {v}"));
    assert!(
        chrono::DateTime::parse_from_rfc3339(s).is_ok(),
        "{what} is RFC 3339: {s}"
    );
}

fn openapi_document() -> Value {
    serde_json::from_str(document_json()).expect("the OpenAPI document is JSON")
}

/// The committed snapshot of the served document (see the test that compares them).
const OPENAPI_SNAPSHOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");

/// Follows `$ref` pointers within the document.
fn resolve<'a>(doc: &'a Value, mut v: &'a Value) -> &'a Value {
    while let Some(r) = v.get("$ref").and_then(Value::as_str) {
        let pointer = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("only local $refs are expected: {r}"));
        v = doc
            .pointer(pointer)
            .unwrap_or_else(|| panic!("$ref {r} points at nothing"));
    }
    v
}

fn has_type(v: &Value, ty: &str) -> bool {
    match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        other => panic!("unexpected schema type {other}"),
    }
}

/// The subset of JSON Schema the operations schemas use: `type`, `const`, `enum`,
/// `format: date-time`, `properties`/`required`/`additionalProperties` and `items`. A property
/// the schema does not list is reported: the document must describe every field returned.
fn schema_violations(doc: &Value, schema: &Value, value: &Value, at: &str, out: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            other => panic!("unexpected `type` {other}"),
        };
        if !types.iter().any(|ty| has_type(value, ty)) {
            out.push(format!("{at}: {value} is not of type {types:?}"));
            return;
        }
    }
    if let Some(c) = schema.get("const") {
        if c != value {
            out.push(format!("{at}: {value} is not the documented constant {c}"));
        }
    }
    if let Some(Value::Array(allowed)) = schema.get("enum") {
        if !allowed.contains(value) {
            out.push(format!("{at}: {value} is not one of {allowed:?}"));
        }
    }
    if schema.get("format").and_then(Value::as_str) == Some("date-time") {
        if let Some(s) = value.as_str() {
            if chrono::DateTime::parse_from_rfc3339(s).is_err() {
                out.push(format!("{at}: {s} is not a date-time"));
            }
        }
    }
    if let Value::Object(obj) = value {
        if let Some(Value::Array(required)) = schema.get("required") {
            for r in required.iter().filter_map(Value::as_str) {
                if !obj.contains_key(r) {
                    out.push(format!("{at}: required property `{r}` is missing"));
                }
            }
        }
        let props = schema.get("properties").and_then(Value::as_object);
        if props.is_some() || schema.get("additionalProperties").is_some() {
            for (k, v) in obj {
                let here = format!("{at}.{k}");
                match (
                    props.and_then(|p| p.get(k)),
                    schema.get("additionalProperties"),
                ) {
                    (Some(s), _) => schema_violations(doc, s, v, &here, out),
                    (None, Some(extra @ Value::Object(_))) => {
                        schema_violations(doc, extra, v, &here, out)
                    }
                    (None, Some(Value::Bool(true))) => {}
                    (None, _) => out.push(format!("{here}: property is not documented")),
                }
            }
        }
    }
    if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            schema_violations(doc, item_schema, item, &format!("{at}[{i}]"), out);
        }
    }
}

/// Asserts `body` matches the schema the OpenAPI document gives for this response.
fn assert_documented(method: &str, path: &str, status: u16, body: &Value) {
    let doc = openapi_document();
    let response = doc["paths"][path][method]["responses"]
        .get(status.to_string())
        .unwrap_or_else(|| {
            panic!("the OpenAPI document lists no {status} response for {method} {path}")
        });
    let response = resolve(&doc, response);
    let schema = response["content"]
        .get("application/json")
        .and_then(|c| c.get("schema"))
        .unwrap_or_else(|| {
            panic!("the OpenAPI document gives no JSON schema for {status} of {method} {path}")
        });
    let mut violations = Vec::new();
    schema_violations(&doc, schema, body, "body", &mut violations);
    assert!(
        violations.is_empty(),
        "the {status} body of {method} {path} disagrees with the OpenAPI document:\n  {}\nbody: {body:#}",
        violations.join("\n  ")
    );
}

/// Asserts every `# TYPE` family is declared once and every sample belongs to a declared family.
fn assert_families_declared_once(text: &str, samples: &[MetricSample]) {
    let mut declared = BTreeMap::<&str, usize>::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let family = rest.split_whitespace().next().expect("family name");
            *declared.entry(family).or_default() += 1;
        }
    }
    let repeated: Vec<_> = declared.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        repeated.is_empty(),
        "families declared more than once: {repeated:?}"
    );
    for s in samples {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                s.name
                    .strip_suffix(suffix)
                    .filter(|f| declared.contains_key(f))
            })
            .unwrap_or(&s.name);
        assert!(
            declared.contains_key(family),
            "sample {} has no # TYPE line",
            s.name
        );
    }
}

async fn scrape(app: &TestApp) -> String {
    let resp = app.get("/metrics").send().await.expect("metrics");
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers()["content-type"]
        .to_str()
        .expect("content type")
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "Prometheus text format 0.0.4, got {content_type}"
    );
    resp.text().await.expect("metrics text")
}

fn assert_healthy_body(body: &Value, what: &str) {
    assert_eq!(body["status"], "healthy", "{what}: {body}");
    assert_rfc3339(&body["timestamp"], &format!("{what} timestamp"));
    let uptime = body["uptime"]
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: uptime is a number: {body}"));
    assert!(uptime >= 0.0, "{what}: uptime {uptime}");
    assert_eq!(body["service"], "boltlink-api", "{what}");
    assert_eq!(body["version"], boltlink::app::VERSION, "{what}");
    assert_eq!(body["checks"]["database"], "ok", "{what}: {body}");
    assert_eq!(body["checks"]["redis"], "ok", "{what}: {body}");
}

// ---------------------------------------------------------------------------------------------
// Health and readiness
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn health_answers_200_healthy_with_both_checks_ok_on_both_paths() {
    let app = TestApp::start().await;
    for path in ["/health", "/api/health"] {
        let (status, body) = app.get_json(path, None).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert_healthy_body(&body, path);
        assert_documented("get", path, 200, &body);
    }
}

#[tokio::test]
async fn ready_answers_200_ready_true_on_both_paths() {
    let app = TestApp::start().await;
    for path in ["/ready", "/api/ready"] {
        let (status, body) = app.get_json(path, None).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(body, json!({"ready": true}), "{path}");
        assert_documented("get", path, 200, &body);
    }
}

#[tokio::test]
async fn with_redis_unreachable_health_names_redis_but_redirects_and_readiness_still_work() {
    let app = TestApp::builder()
        .redis(UNREACHABLE_REDIS)
        .degraded()
        .start()
        .await;

    for path in ["/health", "/api/health"] {
        let (status, body) = app.get_json(path, None).await;
        assert_eq!(status, 503, "{path}: {body}");
        assert_eq!(body["status"], "unhealthy", "{path}");
        let redis = body["checks"]["redis"]
            .as_str()
            .unwrap_or_else(|| panic!("{path}: checks.redis is a string: {body}"));
        assert_ne!(redis, "ok", "{path}: the failing check is named");
        assert_eq!(
            body["checks"]["database"], "ok",
            "{path}: PostgreSQL is fine: {body}"
        );
        assert_eq!(body["service"], "boltlink-api");
        assert_rfc3339(&body["timestamp"], "timestamp");
        assert_documented("get", path, 503, &body);
    }

    // Degraded, not unready: PostgreSQL answers, so the instance takes traffic.
    for path in ["/ready", "/api/ready"] {
        let (status, body) = app.get_json(path, None).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert_eq!(body, json!({"ready": true}), "{path}");
    }

    // A link created through this very instance redirects from PostgreSQL.
    let key = app.key(false).await;
    let link = app
        .shorten(&key, json!({"url": "https://example.com/no-redis"}))
        .await;
    let code = link["shortCode"].as_str().expect("shortCode");
    for _ in 0..3 {
        let resp = app.get(&format!("/{code}")).send().await.expect("redirect");
        assert_eq!(resp.status(), 302);
        assert_eq!(resp.headers()["location"], "https://example.com/no-redis");
    }

    // The scrape still answers and says Redis is down.
    let text = scrape(&app).await;
    let samples = parse_metrics(&text);
    assert_eq!(
        metric(&samples, "boltlink_redis_up", &[]),
        Some(0.0),
        "{text}"
    );

    // System health reports the cache as failing rather than failing itself.
    let (status, entries) = app.get_json("/api/system/health", Some(&key)).await;
    assert_eq!(status, 200, "{entries}");
    let by_service = entries_by_service(&entries);
    assert_eq!(by_service["cache"]["status"], "error", "{entries}");
    assert_eq!(by_service["database"]["status"], "healthy", "{entries}");
    assert_documented("get", "/api/system/health", 200, &entries);
}

#[tokio::test]
async fn with_postgresql_unreachable_ready_and_health_answer_503_naming_the_database() {
    let app = TestApp::builder()
        .app_database_url(UNREACHABLE_DATABASE)
        .degraded()
        .start()
        .await;

    for path in ["/ready", "/api/ready"] {
        let (status, body) = app.get_json(path, None).await;
        assert_eq!(status, 503, "{path}: {body}");
        assert_eq!(body["ready"], false, "{path}: {body}");
        let error = body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{path}: error is a string: {body}"));
        assert!(!error.is_empty(), "{path}: the error says why");
        assert_documented("get", path, 503, &body);
    }

    for path in ["/health", "/api/health"] {
        let (status, body) = app.get_json(path, None).await;
        assert_eq!(status, 503, "{path}: {body}");
        assert_eq!(body["status"], "unhealthy", "{path}");
        let database = body["checks"]["database"]
            .as_str()
            .unwrap_or_else(|| panic!("{path}: checks.database is a string: {body}"));
        assert_ne!(database, "ok", "{path}: the failing check is named");
        assert_eq!(
            body["checks"]["redis"], "ok",
            "{path}: Redis is fine: {body}"
        );
        assert_documented("get", path, 503, &body);
    }
}

// ---------------------------------------------------------------------------------------------
// System health
// ---------------------------------------------------------------------------------------------

fn entries_by_service(entries: &Value) -> BTreeMap<String, Value> {
    let list = entries
        .as_array()
        .unwrap_or_else(|| panic!("system health is an array: {entries}"));
    let mut out = BTreeMap::new();
    for e in list {
        let service = e["service"]
            .as_str()
            .unwrap_or_else(|| panic!("service is a string: {e}"));
        assert!(
            ["healthy", "warning", "error"].contains(&e["status"].as_str().unwrap_or("")),
            "status is healthy, warning or error: {e}"
        );
        assert!(e.get("uptime").is_some(), "every entry has an uptime: {e}");
        assert_rfc3339(&e["lastCheck"], &format!("{service} lastCheck"));
        assert!(
            out.insert(service.to_string(), e.clone()).is_none(),
            "{service} is listed once: {entries}"
        );
    }
    out
}

#[tokio::test]
async fn system_health_reports_instances_dependencies_and_background_processes_from_heartbeats() {
    let app = TestApp::builder()
        .set("BOLTLINK_INSTANCE", "ops-sys-1")
        .start()
        .await;
    let key = app.key(false).await;

    // The instance's own heartbeat is published at start and every 2 s.
    let entries = poll(
        Duration::from_secs(5),
        "api:ops-sys-1 healthy, database and cache healthy",
        || async {
            let (status, body) = app.get_json("/api/system/health", Some(&key)).await;
            assert_eq!(status, 200, "{body}");
            body
        },
        |body| {
            let by = entries_by_service(body);
            by.get("api:ops-sys-1").map(|e| &e["status"]) == Some(&json!("healthy"))
                && by.get("database").map(|e| &e["status"]) == Some(&json!("healthy"))
                && by.get("cache").map(|e| &e["status"]) == Some(&json!("healthy"))
        },
    )
    .await;
    assert_documented("get", "/api/system/health", 200, &entries);
    let by = entries_by_service(&entries);
    assert!(
        by["api:ops-sys-1"]["uptime"].is_number(),
        "a running instance knows its uptime: {entries}"
    );
    assert!(
        by["database"]["uptime"].as_f64().is_some_and(|u| u >= 0.0),
        "PostgreSQL's uptime is real: {entries}"
    );
    // Neither background process runs in this test: no heartbeat, so they are errors.
    assert_eq!(by["analytics-worker"]["status"], "error", "{entries}");
    assert_eq!(by["aggregator"]["status"], "error", "{entries}");

    // A worker starts (90 s ago) and beats now.
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut redis = app.redis.clone();
    let _: () = redis::cmd("HSET")
        .arg(app.keys.process_heartbeat("worker"))
        .arg("started_at")
        .arg(now_ms - 90_000)
        .arg("last_seen")
        .arg(now_ms)
        .arg("lag_events")
        .arg(17)
        .arg("lag_seconds")
        .arg(2.5)
        .arg("processed_total")
        .arg(1234)
        .query_async(&mut redis)
        .await
        .expect("HSET worker heartbeat");

    // The same heartbeat feeds the consumer families of /metrics (the shipped alert rules
    // BoltLinkConsumerLagging / BoltLinkConsumerDown read them).
    let samples = parse_metrics(&app.metrics_text().await);
    let worker = [("group", "worker")];
    assert_eq!(
        metric(&samples, "boltlink_consumer_lag_events", &worker),
        Some(17.0)
    );
    assert_eq!(
        metric(&samples, "boltlink_consumer_lag_seconds", &worker),
        Some(2.5)
    );
    assert_eq!(
        metric(&samples, "boltlink_consumer_processed_total", &worker),
        Some(1234.0)
    );
    let age = metric(&samples, "boltlink_consumer_heartbeat_age_seconds", &worker)
        .expect("heartbeat age of the worker");
    assert!((0.0..30.0).contains(&age), "heartbeat age {age}");
    assert_eq!(
        metric(
            &samples,
            "boltlink_consumer_lag_events",
            &[("group", "aggregator")]
        ),
        None,
        "no aggregator heartbeat, no aggregator samples"
    );

    let entries = poll(
        Duration::from_secs(5),
        "analytics-worker healthy",
        || async { app.get_json("/api/system/health", Some(&key)).await.1 },
        |body| entries_by_service(body)["analytics-worker"]["status"] == "healthy",
    )
    .await;
    let by = entries_by_service(&entries);
    let uptime = by["analytics-worker"]["uptime"]
        .as_f64()
        .unwrap_or_else(|| panic!("the worker's uptime comes from its heartbeat: {entries}"));
    assert!(
        (89.0..=120.0).contains(&uptime),
        "worker started 90 s ago, uptime {uptime}"
    );
    assert_eq!(
        by["aggregator"]["status"], "error",
        "the aggregator still has no heartbeat"
    );
    assert_documented("get", "/api/system/health", 200, &entries);

    let resp = app.get("/api/system/health").send().await.expect("no key");
    assert_eq!(error_message(resp, 401).await, "API Key missing");
}

// ---------------------------------------------------------------------------------------------
// OpenAPI
// ---------------------------------------------------------------------------------------------

#[test]
fn the_openapi_document_lists_exactly_the_routes_the_router_serves() {
    let doc = openapi_document();
    let paths = doc["paths"]
        .as_object()
        .expect("the document has a `paths` object");
    let documented: BTreeSet<(String, String)> = paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .into_iter()
                .flat_map(|ops| ops.keys())
                .filter(|k| OPENAPI_METHODS.contains(&k.to_lowercase().as_str()))
                .map(move |m| (m.to_lowercase(), path.clone()))
        })
        .collect();
    let served: BTreeSet<(String, String)> = ROUTES
        .iter()
        .flat_map(|r| {
            r.methods
                .iter()
                .map(move |m| (m.as_str().to_lowercase(), r.path.to_string()))
        })
        .collect();
    let show = |set: Vec<&(String, String)>| {
        set.iter()
            .map(|(m, p)| format!("{} {p}", m.to_uppercase()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let undocumented = show(served.difference(&documented).collect());
    let not_served = show(documented.difference(&served).collect());
    assert!(
        undocumented.is_empty() && not_served.is_empty(),
        "OpenAPI document and route table disagree.\n  served but not documented: [{undocumented}]\n  documented but not served: [{not_served}]"
    );
    assert!(!served.is_empty(), "the route table is not empty");
}

/// The document is generated from the code (`src/http/openapi.rs`, `schema.rs` and the `doc`
/// operations next to the handlers); its snapshot `docs/openapi.json` is committed, so any
/// change to what is served shows in review. `BOLTLINK_BLESS_OPENAPI=1` rewrites the snapshot.
#[test]
fn the_served_openapi_document_matches_the_committed_snapshot() {
    let served = document_json();
    if std::env::var_os("BOLTLINK_BLESS_OPENAPI").is_some_and(|v| v == "1") {
        std::fs::write(OPENAPI_SNAPSHOT, served).expect("write docs/openapi.json");
        return;
    }
    let snapshot = std::fs::read_to_string(OPENAPI_SNAPSHOT).unwrap_or_default();
    if snapshot == served {
        return;
    }
    let first_difference = snapshot
        .lines()
        .zip(served.lines())
        .position(|(a, b)| a != b)
        .unwrap_or_else(|| snapshot.lines().count().min(served.lines().count()));
    panic!(
        "the served OpenAPI document differs from docs/openapi.json (first at line {}: snapshot {:?}, served {:?}).\n\
         If the change is intended, refresh the snapshot and commit it:\n\
         \tBOLTLINK_BLESS_OPENAPI=1 cargo test --test it openapi",
        first_difference + 1,
        snapshot.lines().nth(first_difference).unwrap_or("<end>"),
        served.lines().nth(first_difference).unwrap_or("<end>"),
    );
}

/// Every operation of the document is the one its route-table entry names, with a unique
/// `operationId`.
#[test]
fn the_openapi_operations_are_those_the_route_table_names() {
    let doc = openapi_document();
    let mut ids = BTreeSet::new();
    for route in ROUTES {
        for operation in route.operations {
            let built = (operation.doc)();
            let id = built.operation_id.clone().expect("an operationId");
            assert!(ids.insert(id.clone()), "operationId {id} is used twice");
            let method = operation.method.as_str().to_lowercase();
            assert_eq!(
                doc["paths"][route.path][&method]["operationId"], id,
                "{} {}",
                operation.method, route.path
            );
        }
    }
}

#[tokio::test]
async fn the_openapi_document_is_served_as_json_version_3_1() {
    let app = TestApp::start().await;
    let resp = app.get("/api/openapi.json").send().await.expect("openapi");
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .expect("content type")
            .starts_with("application/json"),
        "served as JSON"
    );
    let doc: Value = resp.json().await.expect("the document is JSON");
    let version = doc["openapi"].as_str().expect("`openapi` is a string");
    assert!(version.starts_with("3.1"), "OpenAPI 3.1, got {version}");
    assert_eq!(
        doc,
        openapi_document(),
        "the served document is the generated one"
    );
}

/// Every operation of the document: (method, path, operation).
fn documented_operations(doc: &Value) -> Vec<(String, String, Value)> {
    let paths = doc["paths"].as_object().expect("paths");
    let mut out = Vec::new();
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("path item") {
            if OPENAPI_METHODS.contains(&method.as_str()) {
                out.push((method.clone(), path.clone(), op.clone()));
            }
        }
    }
    out
}

/// The names of the headers a documented response declares.
fn response_headers(doc: &Value, response: &Value) -> BTreeSet<String> {
    resolve(doc, response)["headers"]
        .as_object()
        .map(|h| h.keys().map(|k| k.to_ascii_lowercase()).collect())
        .unwrap_or_default()
}

/// What the server answers on every route of a kind is documented on each of them (hardening
/// issue, finding 9: "the spec says less than the server does"): the per-key 429 on every keyed
/// route, 408 and 413 wherever a body is read (every POST and PATCH), the password pool's 503
/// with `Retry-After` where passwords are hashed or checked, and the metadata fetch's 502/504.
#[test]
fn the_openapi_document_lists_the_answers_every_route_of_a_kind_can_give() {
    let doc = openapi_document();
    let mut missing = Vec::new();
    for (method, path, op) in documented_operations(&doc) {
        let responses = &op["responses"];
        let mut want = |status: &str, headers: &[&str]| match responses.get(status) {
            None => missing.push(format!("{} {path}: no {status}", method.to_uppercase())),
            Some(r) => {
                let have = response_headers(&doc, r);
                for h in headers {
                    if !have.contains(*h) {
                        missing.push(format!(
                            "{} {path}: {status} does not declare {h}",
                            method.to_uppercase()
                        ));
                    }
                }
            }
        };
        let rate_limited = [
            "retry-after",
            "ratelimit-limit",
            "ratelimit-remaining",
            "ratelimit-reset",
        ];
        if op.get("security").is_some() {
            want("429", &rate_limited);
        }
        if method == "post" || method == "patch" {
            want("408", &[]);
            want("413", &[]);
        }
        if ["verifyLink", "shortenLink", "updateLink"]
            .contains(&op["operationId"].as_str().unwrap_or(""))
        {
            want("503", &["retry-after"]);
        }
        if op["operationId"] == "fetchMetadata" {
            want("502", &[]);
            want("504", &[]);
        }
    }
    assert!(
        missing.is_empty(),
        "undocumented answers:\n  {}",
        missing.join("\n  ")
    );
    let api_key = doc["components"]["securitySchemes"]["apiKey"]["description"]
        .as_str()
        .unwrap_or("");
    assert!(
        api_key.contains("RATE_LIMIT_KEY_PER_MIN") && api_key.contains("RATE_LIMIT_KEY_PER_HOUR"),
        "the apiKey scheme describes the per-key limits: {api_key}"
    );
}

/// A key over its own per-minute limit gets 429 on every keyed route, with `Retry-After` and the
/// `RateLimit-*` headers, in the shape the document gives (the per-key limit is checked before
/// anything else the route does, so any path parameter and an empty object body will do).
#[tokio::test]
async fn a_key_over_its_own_limit_gets_the_documented_429_on_every_keyed_route() {
    let app = TestApp::start().await;
    let key = app.key_with_limits(false, 1, 1000).await;
    let (status, _) = app.get_json("/api/auth/me", Some(&key)).await;
    assert_eq!(status, 200, "the first request fits");

    let doc = openapi_document();
    let keyed: Vec<_> = documented_operations(&doc)
        .into_iter()
        .filter(|(_, _, op)| op.get("security").is_some())
        .collect();
    assert!(keyed.len() >= 20, "every keyed route: {}", keyed.len());
    let some_id = uuid::Uuid::new_v4().to_string();
    for (method, path, _) in keyed {
        let url = app.url(&path.replace("{id}", &some_id).replace("{code}", "aB3_x9Qz"));
        let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
        let mut req = app.client.request(m.clone(), url).header("x-api-key", &key);
        if m == reqwest::Method::POST || m == reqwest::Method::PATCH {
            req = req.json(&json!({}));
        }
        let resp = req.send().await.expect("request");
        assert_eq!(resp.status(), 429, "{m} {path}");
        for h in [
            "retry-after",
            "ratelimit-limit",
            "ratelimit-remaining",
            "ratelimit-reset",
        ] {
            assert!(resp.headers().contains_key(h), "{m} {path}: {h}");
        }
        let body: Value = resp.json().await.expect("JSON error");
        assert_documented(&method, &path, 429, &body);
    }
}

// ---------------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn metrics_count_earlier_requests_by_route_and_status_in_prometheus_text() {
    let app = TestApp::builder()
        .set("BOLTLINK_INSTANCE", "ops-metrics-1")
        .set("LOCAL_CACHE_TTL_MS", "60000")
        .start()
        .await;
    let key = app.key(false).await;
    let link = app
        .shorten(&key, json!({"url": "https://example.com/measured"}))
        .await;
    let code = link["shortCode"].as_str().expect("shortCode");
    for _ in 0..2 {
        let resp = app.get(&format!("/{code}")).send().await.expect("redirect");
        assert_eq!(resp.status(), 302);
    }
    assert_eq!(
        app.get("/health").send().await.expect("health").status(),
        200
    );
    assert_eq!(
        app.get("/no/such/route")
            .send()
            .await
            .expect("404")
            .status(),
        404
    );

    let text = scrape(&app).await;
    let samples = parse_metrics(&text);
    let me = ("instance", "ops-metrics-1");
    let requests = |route: &str, status: &str| {
        metric(
            &samples,
            "http_requests_total",
            &[me, ("route", route), ("status", status)],
        )
    };
    assert_eq!(requests("redirect", "302"), Some(2.0), "{text}");
    assert_eq!(requests("shorten", "201"), Some(1.0), "{text}");
    assert_eq!(requests("health", "200"), Some(1.0), "{text}");
    assert_eq!(requests("unmatched", "404"), Some(1.0), "{text}");
    assert!(
        requests("ready", "200").is_some_and(|n| n >= 1.0),
        "the harness's readiness polls count too: {text}"
    );

    let bucket = |le: &str| {
        metric(
            &samples,
            "http_request_duration_seconds_bucket",
            &[me, ("route", "redirect"), ("le", le)],
        )
    };
    assert_eq!(bucket("+Inf"), Some(2.0), "{text}");
    assert!(
        bucket("0.0005").is_some(),
        "every bucket is exposed: {text}"
    );
    assert_eq!(
        metric(
            &samples,
            "http_request_duration_seconds_count",
            &[me, ("route", "redirect")]
        ),
        Some(2.0),
        "{text}"
    );
    assert!(
        metric(
            &samples,
            "http_request_duration_seconds_sum",
            &[me, ("route", "redirect")]
        )
        .is_some_and(|s| s > 0.0),
        "{text}"
    );

    assert_eq!(
        metric(&samples, "boltlink_clicks_recorded_total", &[me]),
        Some(2.0),
        "one click per redirect: {text}"
    );
    assert!(
        metric(&samples, "boltlink_click_queue_depth", &[me]).is_some_and(|d| d >= 0.0),
        "{text}"
    );
    assert!(
        metric(&samples, "boltlink_click_queue_lag_seconds", &[me]).is_some(),
        "{text}"
    );
    // The second redirect is answered by the in-process cache.
    assert!(
        metric(
            &samples,
            "boltlink_cache_hits_total",
            &[me, ("layer", "local")]
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert!(
        metric(&samples, "boltlink_cache_misses_total", &[me]).is_some(),
        "{text}"
    );
    for family in [
        "http_requests_total",
        "http_request_duration_seconds",
        "boltlink_clicks_recorded_total",
        "boltlink_click_queue_depth",
        "boltlink_cache_hits_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family} is declared: {text}"
        );
    }
    assert_families_declared_once(&text, &samples);
}

#[tokio::test]
async fn a_scrape_of_one_instance_shows_the_requests_another_instance_answered() {
    let (a, b) = TestApp::two_instances("ops-shared-a", "ops-shared-b").await;

    // Only B answers the OpenAPI document.
    for _ in 0..3 {
        let resp = b.get("/api/openapi.json").send().await.expect("openapi");
        assert_eq!(resp.status(), 200);
    }
    let from_b = [
        ("instance", "ops-shared-b"),
        ("route", "openapi"),
        ("status", "200"),
    ];

    // B publishes its snapshot every 2 s; A's scrape merges it.
    let text = poll(
        Duration::from_secs(10),
        "A's scrape shows B's three requests",
        || scrape(&a),
        |text| metric(&parse_metrics(text), "http_requests_total", &from_b) == Some(3.0),
    )
    .await;
    let samples = parse_metrics(&text);
    assert_eq!(
        metric(
            &samples,
            "http_requests_total",
            &[("instance", "ops-shared-a"), ("route", "openapi")]
        ),
        None,
        "A answered no OpenAPI request: {text}"
    );
    assert!(
        metric(
            &samples,
            "http_requests_total",
            &[("instance", "ops-shared-a"), ("route", "ready")]
        )
        .is_some(),
        "A's own counters are in the same scrape: {text}"
    );
    assert!(
        metric(
            &samples,
            "boltlink_clicks_recorded_total",
            &[("instance", "ops-shared-b")]
        )
        .is_some(),
        "B's other families are merged too: {text}"
    );
    assert_families_declared_once(&text, &samples);
}

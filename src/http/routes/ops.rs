//! Operations: health, readiness, system health from real checks and heartbeats, the OpenAPI
//! document, and cluster-wide metrics.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::http::body::full;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{header, HeaderValue, Response, StatusCode};
use serde::Serialize;
use utoipa::ToSchema;

use super::timestamp;
use crate::app::{App, VERSION};
use crate::clicks::consumer::{Process, GROUPS};
use crate::http::error::{json, ApiError, Body};
use crate::http::request::{authenticate, RequestCtx};
use crate::metrics::{render, Sample, Snapshot};
use crate::redis::Heartbeat;
use crate::store::replica::ReplicaState;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// A consumer this far behind is reported as a warning.
const LAG_WARNING_SECS: f64 = 30.0;

async fn check_database(app: &App) -> Result<(), String> {
    match tokio::time::timeout(CHECK_TIMEOUT, app.store.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".to_string()),
    }
}

pub async fn health(app: &App) -> Result<Response<Body>, ApiError> {
    let (db, redis) = tokio::join!(check_database(app), app.redis.ping());
    let healthy = db.is_ok() && redis.is_ok();
    let mut errors = serde_json::Map::new();
    if let Err(e) = &db {
        errors.insert("database".into(), e.clone().into());
    }
    if let Err(e) = &redis {
        errors.insert("redis".into(), e.to_string().into());
    }
    let mut body = serde_json::json!({
        "status": if healthy { "healthy" } else { "unhealthy" },
        "timestamp": timestamp(Utc::now()),
        "uptime": app.started.elapsed().as_secs_f64().floor(),
        "service": "boltlink-api",
        "version": VERSION,
        "instance": app.config.process.instance,
        "checks": {
            "database": if db.is_ok() { "ok" } else { "failing" },
            "redis": if redis.is_ok() { "ok" } else { "failing" },
        },
    });
    // The replica only takes load off the primary: named when degraded, never unhealthy.
    if let Some(replica) = app.store.replica() {
        let health = replica.health();
        body["checks"]["databaseReplica"] = health.state.word().into();
        if let Some(problem) = health.problem() {
            errors.insert("databaseReplica".into(), problem.into());
        }
    }
    if !errors.is_empty() {
        body["errors"] = serde_json::Value::Object(errors);
    }
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok(json(status, &body))
}

/// Ready when this process serves and PostgreSQL answers; Redis being down is a degraded
/// mode, not unreadiness. Not ready once shutdown has begun.
pub async fn ready(app: &App) -> Result<Response<Body>, ApiError> {
    if app.stopping.load(Ordering::Relaxed) {
        return Ok(json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({"ready": false, "error": "shutting down"}),
        ));
    }
    match check_database(app).await {
        Ok(()) => Ok(json(StatusCode::OK, &serde_json::json!({"ready": true}))),
        Err(e) => Ok(json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({"ready": false, "error": format!("database: {e}")}),
        )),
    }
}

// One entry of `GET /api/system/health`, and its OpenAPI schema `SystemHealthEntry`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = SystemHealthEntry)]
pub struct ServiceHealth {
    /// API instance, database, database replica (with `DATABASE_READ_URL`), cache, analytics
    /// worker or aggregator.
    service: String,
    #[schema(value_type = crate::http::schema::SystemHealthEntryStatus, inline)]
    status: &'static str,
    /// Seconds the component has been up; null when unknown (e.g. a process with no heartbeat).
    #[schema(required = true)]
    uptime: Option<i64>,
    /// Time of the last real check or heartbeat.
    #[schema(format = DateTime)]
    last_check: String,
    /// Present when the status is not `healthy`: why, e.g. `no heartbeat: not running` or `last heartbeat 42s ago`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false)]
    detail: Option<String>,
}

fn ms_field(h: &Heartbeat, field: &str) -> Option<i64> {
    h.get(field).and_then(|v| v.parse().ok())
}

/// Status from a heartbeat's age: fresh is healthy, late is a warning, missing is an error.
fn heartbeat_health(
    service: String,
    beat: Option<&Heartbeat>,
    now: DateTime<Utc>,
) -> ServiceHealth {
    let now_ms = now.timestamp_millis();
    match beat {
        None => ServiceHealth {
            service,
            status: "error",
            uptime: None,
            last_check: timestamp(now),
            detail: Some("no heartbeat: not running".to_string()),
        },
        Some(h) => {
            let last_seen = ms_field(h, "last_seen").unwrap_or(0);
            let age_ms = now_ms - last_seen;
            let lag_seconds = h
                .get("lag_seconds")
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0);
            let status = if age_ms > 60_000 {
                "error"
            } else if age_ms > 10_000 || lag_seconds > LAG_WARNING_SECS {
                "warning"
            } else {
                "healthy"
            };
            ServiceHealth {
                service,
                status,
                uptime: ms_field(h, "started_at").map(|s| (now_ms - s) / 1000),
                last_check: timestamp(DateTime::from_timestamp_millis(last_seen).unwrap_or(now)),
                detail: (status != "healthy")
                    .then(|| format!("last heartbeat {}s ago", age_ms / 1000)),
            }
        }
    }
}

pub async fn system_health(app: &App, ctx: &RequestCtx) -> Result<Response<Body>, ApiError> {
    authenticate(app, ctx).await?;
    let now = Utc::now();
    let mut out = Vec::new();

    match app.redis.instance_heartbeats().await {
        Some(instances) => {
            for (name, beat) in instances {
                out.push(heartbeat_health(format!("api:{name}"), beat.as_ref(), now));
            }
        }
        None => out.push(ServiceHealth {
            service: format!("api:{}", app.config.process.instance),
            status: "warning",
            uptime: Some(app.started.elapsed().as_secs() as i64),
            last_check: timestamp(now),
            detail: Some("other instances unknown while Redis is unreachable".to_string()),
        }),
    }

    let db = match tokio::time::timeout(CHECK_TIMEOUT, app.store.server_uptime_secs()).await {
        Ok(Ok(uptime)) => ServiceHealth {
            service: "database".into(),
            status: "healthy",
            uptime: Some(uptime),
            last_check: timestamp(now),
            detail: None,
        },
        Ok(Err(e)) => error_entry("database", e.to_string(), now),
        Err(_) => error_entry("database", "timed out".into(), now),
    };
    out.push(db);
    if let (Some(replica), Some(on_replica)) = (app.store.replica(), app.store.on_replica()) {
        let health = replica.health();
        let problem = health.problem();
        let uptime = match health.state {
            ReplicaState::Down(_) => None,
            _ => tokio::time::timeout(CHECK_TIMEOUT, on_replica.server_uptime_secs())
                .await
                .ok()
                .and_then(Result::ok),
        };
        out.push(ServiceHealth {
            service: "database-replica".into(),
            status: match health.state {
                ReplicaState::Usable => "healthy",
                ReplicaState::Lagging | ReplicaState::Unknown => "warning",
                ReplicaState::Down(_) => "error",
            },
            uptime,
            last_check: timestamp(now),
            detail: problem,
        });
    }

    let cache = match app.redis.ping().await {
        Ok(rtt) => ServiceHealth {
            service: "cache".into(),
            status: if rtt > Duration::from_millis(100) {
                "warning"
            } else {
                "healthy"
            },
            uptime: app.redis.server_uptime_secs().await.map(|u| u as i64),
            last_check: timestamp(now),
            detail: (rtt > Duration::from_millis(100))
                .then(|| format!("ping took {} ms", rtt.as_millis())),
        },
        Err(e) => error_entry("cache", e.to_string(), now),
    };
    out.push(cache);

    for (service, process) in [("analytics-worker", "worker"), ("aggregator", "aggregator")] {
        match app.redis.process_heartbeat(process).await {
            Some(beat) => out.push(heartbeat_health(service.to_string(), beat.as_ref(), now)),
            None => out.push(ServiceHealth {
                service: service.into(),
                status: "warning",
                uptime: None,
                last_check: timestamp(now),
                detail: Some("heartbeat unknown while Redis is unreachable".into()),
            }),
        }
    }
    Ok(json(StatusCode::OK, &out))
}

fn error_entry(service: &str, detail: String, now: DateTime<Utc>) -> ServiceHealth {
    ServiceHealth {
        service: service.into(),
        status: "error",
        uptime: None,
        last_check: timestamp(now),
        detail: Some(detail),
    }
}

pub fn openapi() -> Response<Body> {
    let mut resp = Response::new(full(Bytes::from_static(
        crate::http::openapi::document_json().as_bytes(),
    )));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

/// This instance's live counters plus every other live instance's last published snapshot.
pub async fn metrics(app: &App) -> Response<Body> {
    let own = app.metrics_snapshot();
    let mut snapshots = vec![own];
    let mut cluster = Vec::new();
    if let Some(instances) = app.redis.instance_heartbeats().await {
        let others: Vec<String> = instances
            .into_iter()
            .filter(|(name, beat)| beat.is_some() && *name != app.config.process.instance)
            .map(|(name, _)| name)
            .collect();
        for raw in app
            .redis
            .metrics_snapshots(&others)
            .await
            .unwrap_or_default()
        {
            if let Ok(s) = serde_json::from_str::<Snapshot>(&raw) {
                snapshots.push(s);
            }
        }
    }
    if let Some(len) = app.redis.click_stream_len().await {
        cluster.push(Sample::new("boltlink_click_stream_length", &[], len as f64));
    }
    let now_ms = Utc::now().timestamp_millis();
    for group in GROUPS {
        if let Some(Some(beat)) = app.redis.process_heartbeat(group).await {
            let labels = [("group", group)];
            let num = |field: &str| beat.get(field).and_then(|v| v.parse::<f64>().ok());
            for (family, field) in [
                ("boltlink_consumer_lag_events", "lag_events"),
                ("boltlink_consumer_lag_seconds", "lag_seconds"),
                ("boltlink_consumer_processed_total", "processed_total"),
            ] {
                if let Some(v) = num(field) {
                    cluster.push(Sample::new(family, &labels, v));
                }
            }
            if let Some(seen) = num("last_seen") {
                let age = ((now_ms as f64 - seen) / 1000.0).max(0.0);
                cluster.push(Sample::new(
                    "boltlink_consumer_heartbeat_age_seconds",
                    &labels,
                    age,
                ));
            }
            if group == Process::Webhooks.group() {
                for (family, field) in [
                    ("boltlink_webhook_deliveries_pending", "deliveries_pending"),
                    (
                        "boltlink_webhook_oldest_pending_seconds",
                        "deliveries_oldest_seconds",
                    ),
                ] {
                    if let Some(v) = num(field) {
                        cluster.push(Sample::new(family, &[], v));
                    }
                }
                for (result, field) in [
                    ("delivered", "deliveries_delivered_total"),
                    ("retried", "deliveries_retried_total"),
                    ("failed", "deliveries_failed_total"),
                ] {
                    if let Some(v) = num(field) {
                        cluster.push(Sample::new(
                            "boltlink_webhook_attempts_total",
                            &[("result", result)],
                            v,
                        ));
                    }
                }
            }
        }
    }
    let text = render(&snapshots, &cluster);
    let mut resp = Response::new(full(text));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

/// The OpenAPI operations of these routes, named by their entries in `routes!`.
pub mod doc {
    use crate::http::openapi::*;
    use serde_json::json;

    /// `GET /health`
    pub fn get_health() -> Operation {
        op("getHealth", "operations", "Liveness and dependency health")
            .response("200", respond("Healthy.")
                .content("application/json", content(schema("Health"), None)))
            .response("503", respond("A dependency is down: `status` is `unhealthy`, the failing check reads `failing` and `errors` says why.")
                .content("application/json", content(schema("Health"), Some(json!({"status": "unhealthy", "timestamp": "2026-11-23T08:00:00.000Z", "uptime": 3600, "service": "boltlink-api", "version": "0.1.0", "instance": "api-1", "checks": {"database": "failing", "redis": "ok"}, "errors": {"database": "database unavailable: pool timed out while waiting for an open connection"}})))))
            .build()
    }

    /// `GET /api/health`
    pub fn get_api_health() -> Operation {
        op("getApiHealth", "operations", "Liveness and dependency health")
            .response("200", respond("Healthy.")
                .content("application/json", content(schema("Health"), None)))
            .response("503", respond("A dependency is down: `status` is `unhealthy`, the failing check reads `failing` and `errors` says why.")
                .content("application/json", content(schema("Health"), Some(json!({"status": "unhealthy", "timestamp": "2026-11-23T08:00:00.000Z", "uptime": 3600, "service": "boltlink-api", "version": "0.1.0", "instance": "api-1", "checks": {"database": "failing", "redis": "ok"}, "errors": {"database": "database unavailable: pool timed out while waiting for an open connection"}})))))
            .build()
    }

    /// `GET /ready`
    pub fn get_ready() -> Operation {
        op("getReady", "operations", "Readiness")
            .response("200", respond("Ready.")
                .content("application/json", content(schema("Ready"), Some(json!({"ready": true})))))
            .response("503", respond("Not ready.")
                .content("application/json", content(schema("Ready"), Some(json!({"ready": false, "error": "database: database unavailable: pool timed out while waiting for an open connection"})))))
            .build()
    }

    /// `GET /api/ready`
    pub fn get_api_ready() -> Operation {
        op("getApiReady", "operations", "Readiness")
            .response("200", respond("Ready.")
                .content("application/json", content(schema("Ready"), Some(json!({"ready": true})))))
            .response("503", respond("Not ready.")
                .content("application/json", content(schema("Ready"), Some(json!({"ready": false, "error": "database: database unavailable: pool timed out while waiting for an open connection"})))))
            .build()
    }

    /// `GET /api/system/health`
    pub fn get_system_health() -> Operation {
        op("getSystemHealth", "operations", "Health of every component").keyed()
            .response("200", respond("API instances, database, cache, analytics worker and aggregator, from real checks and heartbeats.")
                .content("application/json", content(array_of("SystemHealthEntry"), None)))
            .build()
    }

    /// `GET /api/openapi.json`
    pub fn get_open_api() -> Operation {
        op("getOpenApi", "operations", "This OpenAPI 3.1 document")
            .response(
                "200",
                respond("The OpenAPI document.")
                    .content("application/json", content(any_object(), None)),
            )
            .build()
    }

    /// `GET /metrics`
    pub fn get_metrics() -> Operation {
        op("getMetrics", "operations", "Prometheus metrics")
            .response("200", respond("Prometheus text exposition (version 0.0.4), aggregated so a scrape does not see only one instance: at least `http_requests_total{route,status}`, the `http_request_duration_seconds` histogram, clicks recorded, click queue depth and lag, cache hits/misses.")
                .content("text/plain; version=0.0.4", content(text(), None)))
            .build()
    }
}

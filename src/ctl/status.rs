//! `boltlinkctl status`: every unit judged by its role, the click stream and the consumers'
//! heartbeats, PostgreSQL and Redis, as a [`StatusReport`] (text form: [`super::render`]).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::render::human_duration;
use super::units::{
    api_instance_number, api_unit, background, ensure_installed, loaded_api_instances, show,
    wanted_api_instances, UnitState, BACKGROUND, SOCKET, TARGET,
};
use crate::config::{Config, ReadReplicaConfig};
use crate::redis::RedisHandle;
use crate::store::replica::probe;
use crate::store::Store;

/// A consumer's heartbeat older than this means it is stopped or stuck.
const HEARTBEAT_STALE_MS: i64 = 30_000;

#[derive(Debug, Clone, Serialize)]
pub struct UnitReport {
    #[serde(flatten)]
    pub state: UnitState,
    /// `target`, `socket`, `api`, or the background service's name (`worker`, `aggregator`,
    /// `webhooks`).
    pub role: &'static str,
    /// Wanted by the target (API instances), or always part of the suite.
    pub expected: bool,
    pub healthy: bool,
    /// Why not healthy, or a remark (e.g. "not installed").
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DependencyReport {
    pub name: &'static str,
    pub ok: bool,
    pub latency_ms: Option<f64>,
    pub error: Option<String>,
    /// The read replica only: how far behind the primary (present when it answered).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConsumerReport {
    pub name: &'static str,
    pub lag_events: Option<u64>,
    pub lag_seconds: Option<f64>,
    /// Milliseconds since its last heartbeat.
    pub heartbeat_age_ms: Option<i64>,
    /// Webhook events waiting for delivery (webhooks only: absent for the others).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deliveries_pending: Option<u64>,
    /// Webhook deliveries given up since the process started (webhooks only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deliveries_failed_total: Option<u64>,
    pub healthy: bool,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub healthy: bool,
    pub problems: Vec<String>,
    pub units: Vec<UnitReport>,
    /// Entries in the click stream (`XLEN`), when Redis answered.
    pub click_stream_length: Option<u64>,
    pub consumers: Vec<ConsumerReport>,
    pub dependencies: Vec<DependencyReport>,
    /// With a Redis Cluster: its nodes as the cluster sees them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_cluster: Option<crate::redis::cluster::ClusterView>,
}

/// Judges units: which are expected, which are healthy, and why not.
pub fn judge_units(states: Vec<UnitState>, wanted_api: &[u32]) -> Vec<UnitReport> {
    states
        .into_iter()
        .map(|state| {
            let (role, expected) = if state.unit == TARGET {
                ("target", true)
            } else if state.unit == SOCKET {
                ("socket", true)
            } else if let Some(b) = background(&state.unit) {
                (b.name, true)
            } else {
                let wanted = api_instance_number(&state.unit)
                    .map(|n| wanted_api.contains(&n))
                    .unwrap_or(false);
                ("api", wanted)
            };
            let (healthy, note) = judge_one(&state, role, expected);
            UnitReport {
                state,
                role,
                expected,
                healthy,
                note,
            }
        })
        .collect()
}

fn judge_one(state: &UnitState, role: &str, expected: bool) -> (bool, Option<String>) {
    if !state.is_installed() {
        // The background services ship with the suite; until one is installed the click
        // stream (and the webhook outbox) just holds the events, which `status` reports as
        // the stream length.
        let background = BACKGROUND.iter().any(|b| b.name == role);
        return (background, Some("not installed".to_string()));
    }
    let ok = match role {
        "target" => state.is_active(),
        "socket" => state.is_active(),
        _ if !expected => !state.is_failed(),
        _ => state.is_running(),
    };
    let note = if ok {
        (!expected).then(|| "not wanted by boltlink.target (API_INSTANCES)".to_string())
    } else if state.is_failed() {
        Some(format!(
            "failed ({}{})",
            state.result,
            state
                .exit_status
                .filter(|s| *s != 0)
                .map(|s| format!(", exit status {s}"))
                .unwrap_or_default()
        ))
    } else {
        Some(format!("{}/{}", state.active_state, state.sub_state))
    };
    (ok, note)
}

/// Gathers the whole picture. `config` is `Err` when the configuration does not parse; the
/// units are reported anyway and the configuration error counts as a problem.
pub async fn status(config: Result<&Config, String>) -> anyhow::Result<StatusReport> {
    ensure_installed()?;
    let wanted = wanted_api_instances()?;
    let mut api: Vec<u32> = wanted.clone();
    for n in loaded_api_instances()? {
        if !api.contains(&n) {
            api.push(n);
        }
    }
    api.sort_unstable();
    let mut names = vec![TARGET.to_string(), SOCKET.to_string()];
    names.extend(api.iter().map(|n| api_unit(*n)));
    names.extend(BACKGROUND.iter().map(|b| b.unit.to_string()));
    let units = judge_units(show(&names)?, &wanted);

    let mut problems: Vec<String> = units
        .iter()
        .filter(|u| !u.healthy)
        .map(|u| {
            format!(
                "{} is {}",
                u.state.unit,
                u.note.clone().unwrap_or_else(|| "unhealthy".to_string())
            )
        })
        .collect();
    if wanted.is_empty() {
        problems.push(format!(
            "{TARGET} wants no API instance: is boltlink-generator installed in \
             /usr/lib/systemd/system-generators/?"
        ));
    }

    let mut dependencies = Vec::new();
    let mut consumers = Vec::new();
    let mut click_stream_length = None;
    let mut redis_cluster = None;
    match config {
        Err(e) => problems.push(format!("configuration: {e}")),
        Ok(config) => {
            let replica = async {
                match &config.database.read_replica {
                    Some(replica) => Some(check_replica(config, replica).await),
                    None => None,
                }
            };
            let (pg, replica, redis) =
                tokio::join!(check_postgres(config), replica, connect_redis(config));
            let (redis_report, redis) = redis;
            dependencies.push(pg);
            dependencies.extend(replica);
            dependencies.push(redis_report);
            if let Some(redis) = redis {
                match redis.cluster_view().await {
                    None => {}
                    Some(Ok(view)) => {
                        problems.extend(view.problems());
                        redis_cluster = Some(view);
                    }
                    Some(Err(e)) => problems.push(format!("redis cluster: {e}")),
                }
                click_stream_length = redis.click_stream_len().await;
                let now_ms = chrono::Utc::now().timestamp_millis();
                for b in BACKGROUND {
                    let Some(u) = units.iter().find(|u| u.state.unit == b.unit) else {
                        continue;
                    };
                    if !u.state.is_installed() {
                        continue;
                    }
                    let beat = redis.process_heartbeat(b.name).await.flatten();
                    consumers.push(judge_consumer(b.name, beat.as_ref(), now_ms));
                }
            }
            for d in &dependencies {
                if !d.ok {
                    problems.push(format!(
                        "{} {}: {}",
                        d.name,
                        if d.lag_seconds.is_some() {
                            "is lagging"
                        } else {
                            "is unreachable"
                        },
                        d.error.as_deref().unwrap_or("no answer")
                    ));
                }
            }
            for c in &consumers {
                if !c.healthy {
                    problems.push(format!(
                        "{}: {}",
                        c.name,
                        c.note.as_deref().unwrap_or("unhealthy")
                    ));
                }
            }
        }
    }
    Ok(StatusReport {
        healthy: problems.is_empty(),
        problems,
        units,
        click_stream_length,
        consumers,
        dependencies,
        redis_cluster,
    })
}

/// A background service's heartbeat hash (`lag_events`, `lag_seconds`, `last_seen` ms; the
/// webhook sender's also `deliveries_pending` and `deliveries_failed_total`).
pub fn judge_consumer(
    name: &'static str,
    beat: Option<&HashMap<String, String>>,
    now_ms: i64,
) -> ConsumerReport {
    let Some(beat) = beat else {
        return ConsumerReport {
            name,
            lag_events: None,
            lag_seconds: None,
            heartbeat_age_ms: None,
            deliveries_pending: None,
            deliveries_failed_total: None,
            healthy: false,
            note: Some("no heartbeat in Redis".to_string()),
        };
    };
    let age = beat
        .get("last_seen")
        .and_then(|v| v.parse::<i64>().ok())
        .map(|at| (now_ms - at).max(0));
    let healthy = matches!(age, Some(a) if a <= HEARTBEAT_STALE_MS);
    ConsumerReport {
        name,
        lag_events: beat.get("lag_events").and_then(|v| v.parse().ok()),
        lag_seconds: beat.get("lag_seconds").and_then(|v| v.parse().ok()),
        heartbeat_age_ms: age,
        deliveries_pending: beat.get("deliveries_pending").and_then(|v| v.parse().ok()),
        deliveries_failed_total: beat
            .get("deliveries_failed_total")
            .and_then(|v| v.parse().ok()),
        healthy,
        note: (!healthy).then(|| match age {
            Some(a) => format!("last heartbeat {} ago", human_duration(a as f64 / 1000.0)),
            None => "heartbeat without last_seen".to_string(),
        }),
    }
}

async fn check_postgres(config: &Config) -> DependencyReport {
    let started = Instant::now();
    let result = match Store::connect_lazy(&config.database.url, 1) {
        Err(e) => Err(e.to_string()),
        Ok(store) => match tokio::time::timeout(Duration::from_secs(3), store.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out after 3 s".to_string()),
        },
    };
    DependencyReport {
        name: "postgresql",
        ok: result.is_ok(),
        latency_ms: result
            .is_ok()
            .then(|| started.elapsed().as_secs_f64() * 1000.0),
        error: result.err(),
        lag_seconds: None,
    }
}

/// `DATABASE_READ_URL`'s standby: answering, replaying, and within `DATABASE_READ_MAX_LAG_MS`.
async fn check_replica(config: &Config, replica: &ReadReplicaConfig) -> DependencyReport {
    let started = Instant::now();
    let result = match (
        Store::connect_lazy(&config.database.url, 1),
        Store::connect_lazy(&replica.url, 1),
    ) {
        (Ok(primary), Ok(standby)) => probe(primary.pool(), standby.pool()).await,
        (Err(e), _) | (_, Err(e)) => Err(e.to_string()),
    };
    let latency_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
    match result {
        Ok(lag) => DependencyReport {
            name: "postgresql-replica",
            ok: lag <= replica.max_lag,
            latency_ms,
            error: (lag > replica.max_lag).then(|| {
                format!(
                    "{} behind the primary, over DATABASE_READ_MAX_LAG_MS={}: the API reads from the primary",
                    human_duration(lag.as_secs_f64()),
                    replica.max_lag.as_millis()
                )
            }),
            lag_seconds: Some(lag.as_secs_f64()),
        },
        Err(e) => DependencyReport {
            name: "postgresql-replica",
            ok: false,
            latency_ms: None,
            error: Some(e),
            lag_seconds: None,
        },
    }
}

pub(crate) async fn connect_redis(config: &Config) -> (DependencyReport, Option<RedisHandle>) {
    let handle = match RedisHandle::new(&config.redis.url, &config.redis.key_prefix) {
        Ok(h) => h.with_click_stream_shards(config.redis.click_stream_shards),
        Err(e) => {
            return (
                DependencyReport {
                    name: "redis",
                    ok: false,
                    latency_ms: None,
                    error: Some(e.to_string()),
                    lag_seconds: None,
                },
                None,
            )
        }
    };
    if !handle.connect_now().await {
        return (
            DependencyReport {
                name: "redis",
                ok: false,
                latency_ms: None,
                error: Some("no answer within 2 s".to_string()),
                lag_seconds: None,
            },
            None,
        );
    }
    match handle.ping().await {
        Ok(rtt) => (
            DependencyReport {
                name: "redis",
                ok: true,
                latency_ms: Some(rtt.as_secs_f64() * 1000.0),
                error: None,
                lag_seconds: None,
            },
            Some(handle),
        ),
        Err(e) => (
            DependencyReport {
                name: "redis",
                ok: false,
                latency_ms: None,
                error: Some(e.to_string()),
                lag_seconds: None,
            },
            None,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::units::{AGGREGATOR, WEBHOOKS, WORKER};

    fn unit(name: &str, active: &str, sub: &str) -> UnitState {
        UnitState {
            unit: name.to_string(),
            load_state: "loaded".to_string(),
            active_state: active.to_string(),
            sub_state: sub.to_string(),
            result: if active == "failed" {
                "exit-code".to_string()
            } else {
                "success".to_string()
            },
            exit_status: (active == "failed").then_some(78),
            ..UnitState::default()
        }
    }

    #[test]
    fn units_are_judged_by_role_and_whether_the_target_wants_them() {
        let mut worker = unit(WORKER, "inactive", "dead");
        worker.load_state = "not-found".to_string();
        let reports = judge_units(
            vec![
                unit(TARGET, "active", "active"),
                unit(SOCKET, "active", "listening"),
                unit(&api_unit(1), "active", "running"),
                unit(&api_unit(2), "activating", "start"),
                unit(&api_unit(3), "active", "running"),
                unit(&api_unit(99), "failed", "failed"),
                unit(&api_unit(7), "inactive", "dead"),
                worker,
                unit(AGGREGATOR, "active", "running"),
                unit(WEBHOOKS, "failed", "failed"),
            ],
            &[1, 2],
        );
        let verdict: Vec<(bool, Option<String>)> = reports
            .iter()
            .map(|r| (r.healthy, r.note.clone()))
            .collect();
        assert_eq!(
            verdict,
            vec![
                (true, None),
                (true, None),
                (true, None),
                (false, Some("activating/start".to_string())),
                (
                    true,
                    Some("not wanted by boltlink.target (API_INSTANCES)".to_string())
                ),
                (
                    false,
                    Some("failed (exit-code, exit status 78)".to_string())
                ),
                (
                    true,
                    Some("not wanted by boltlink.target (API_INSTANCES)".to_string())
                ),
                (true, Some("not installed".to_string())),
                (true, None),
                (
                    false,
                    Some("failed (exit-code, exit status 78)".to_string())
                ),
            ]
        );
        let roles: Vec<&str> = reports.iter().map(|r| r.role).collect();
        assert_eq!(
            roles,
            [
                "target",
                "socket",
                "api",
                "api",
                "api",
                "api",
                "api",
                "worker",
                "aggregator",
                "webhooks"
            ]
        );
    }

    #[test]
    fn a_missing_socket_or_target_is_unhealthy() {
        let mut socket = unit(SOCKET, "inactive", "dead");
        socket.load_state = "not-found".to_string();
        let reports = judge_units(vec![unit(TARGET, "inactive", "dead"), socket], &[]);
        assert!(reports.iter().all(|r| !r.healthy));
    }

    #[test]
    fn consumers_are_healthy_with_a_fresh_heartbeat_only() {
        let now = 1_000_000;
        let beat: HashMap<String, String> = [
            ("lag_events", "12"),
            ("lag_seconds", "0.4"),
            ("last_seen", "995000"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let fresh = judge_consumer("worker", Some(&beat), now);
        assert!(fresh.healthy);
        assert_eq!(fresh.lag_events, Some(12));
        assert_eq!(fresh.lag_seconds, Some(0.4));
        assert_eq!(fresh.heartbeat_age_ms, Some(5000));
        let stale = judge_consumer("worker", Some(&beat), now + 60_000);
        assert!(!stale.healthy);
        assert_eq!(stale.note.as_deref(), Some("last heartbeat 1m05s ago"));
        assert!(!judge_consumer("aggregator", None, now).healthy);
        assert_eq!(fresh.deliveries_pending, None);
        let json = serde_json::to_value(&fresh).expect("json");
        assert!(
            json.get("deliveries_pending").is_none(),
            "only the webhook sender has deliveries: {json}"
        );
    }

    #[test]
    fn the_webhook_senders_heartbeat_also_reports_its_deliveries() {
        let now = 1_000_000;
        let beat: HashMap<String, String> = [
            ("lag_events", "0"),
            ("lag_seconds", "0.000"),
            ("pending", "0"),
            ("processed_total", "40"),
            ("deliveries_pending", "7"),
            ("deliveries_failed_total", "2"),
            ("last_seen", "999000"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let report = judge_consumer("webhooks", Some(&beat), now);
        assert!(report.healthy);
        assert_eq!(report.lag_events, Some(0));
        assert_eq!(report.deliveries_pending, Some(7));
        assert_eq!(report.deliveries_failed_total, Some(2));
        let json = serde_json::to_value(&report).expect("json");
        assert_eq!(json["name"], "webhooks");
        assert_eq!(json["deliveries_pending"], 7);
        assert_eq!(json["deliveries_failed_total"], 2);
        let stale = judge_consumer("webhooks", Some(&beat), now + 31_000);
        assert!(!stale.healthy, "judged like the worker and the aggregator");
    }
}

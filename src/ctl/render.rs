//! The one-screen text form of a `boltlinkctl status` report, with sizes and durations
//! written the way `systemctl status` writes them.

use super::status::StatusReport;

/// The one-screen text form of a status report.
pub fn render_status(report: &StatusReport, now_unix: i64) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<29} {:<18} {:>7} {:>9} {:>8} {:>8} {:>8}  {}\n",
        "UNIT", "STATE", "PID", "UPTIME", "MEMORY", "CPU", "RESTARTS", "STATUS"
    ));
    for u in &report.units {
        let s = &u.state;
        let state = if !s.is_installed() {
            "not installed".to_string()
        } else {
            format!("{}/{}", s.active_state, s.sub_state)
        };
        let uptime = match (s.is_active(), s.active_since) {
            // Whole seconds: systemd's timestamps have no more precision here.
            (true, Some(since)) => human_seconds((now_unix - since).max(0) as u64),
            _ => "-".to_string(),
        };
        let detail = if u.role == "socket" {
            s.listen.join(", ")
        } else {
            s.status_text.clone()
        };
        let detail = match (&u.note, u.healthy) {
            (Some(note), false) => format!("!! {note}{}", prefixed(" — ", &detail)),
            (Some(note), true) if s.is_installed() => format!("({note}){}", prefixed(" ", &detail)),
            _ => detail,
        };
        out.push_str(&format!(
            "{:<29} {:<18} {:>7} {:>9} {:>8} {:>8} {:>8}  {}\n",
            s.unit,
            state,
            s.main_pid
                .map(|p| p.to_string())
                .unwrap_or_else(|| "-".into()),
            uptime,
            s.memory_bytes
                .map(human_bytes)
                .unwrap_or_else(|| "-".into()),
            s.cpu_seconds
                .map(human_duration)
                .unwrap_or_else(|| "-".into()),
            if s.is_installed() && !matches!(u.role, "target" | "socket") {
                s.restarts
                    .map(|r| r.to_string())
                    .unwrap_or_else(|| "-".into())
            } else {
                "-".to_string()
            },
            detail
        ));
    }
    out.push('\n');
    out.push_str(&format!(
        "click stream      {}\n",
        match report.click_stream_length {
            Some(n) => format!("{n} entries"),
            None => "unknown (Redis unreachable)".to_string(),
        }
    ));
    for c in &report.consumers {
        // The webhook sender also has deliveries waiting (and given up on).
        let deliveries = match (c.deliveries_pending, c.deliveries_failed_total) {
            (Some(pending), failed) => format!(
                "; {pending} deliveries pending{}",
                failed.map(|f| format!(", {f} failed")).unwrap_or_default()
            ),
            (None, _) => String::new(),
        };
        out.push_str(&format!(
            "{:<17} lag {} stream entries, {} s{deliveries}; last heartbeat {}{}\n",
            c.name,
            c.lag_events
                .map(|v| v.to_string())
                .unwrap_or_else(|| "?".into()),
            c.lag_seconds
                .map(|v| format!("{v:.1}"))
                .unwrap_or_else(|| "?".into()),
            c.heartbeat_age_ms
                .map(|a| format!("{} ago", human_duration(a as f64 / 1000.0)))
                .unwrap_or_else(|| "never".into()),
            if c.healthy { "" } else { "  !!" }
        ));
    }
    for d in &report.dependencies {
        out.push_str(&format!(
            "{:<17} {}\n",
            d.name,
            match (d.ok, d.lag_seconds) {
                (true, None) => format!("ok ({:.2} ms)", d.latency_ms.unwrap_or(0.0)),
                (true, Some(lag)) => format!(
                    "ok ({:.2} ms, {} behind)",
                    d.latency_ms.unwrap_or(0.0),
                    human_duration(lag)
                ),
                (false, Some(_)) => {
                    format!(
                        "!! lagging: {}",
                        d.error.as_deref().unwrap_or("too far behind")
                    )
                }
                (false, None) => format!(
                    "!! unreachable: {}",
                    d.error.as_deref().unwrap_or("no answer")
                ),
            }
        ));
    }
    if let Some(cluster) = &report.redis_cluster {
        out.push_str(&render_cluster(cluster));
    }
    out.push('\n');
    if report.healthy {
        out.push_str("healthy\n");
    } else {
        out.push_str("UNHEALTHY:\n");
        for p in &report.problems {
            out.push_str(&format!("  - {p}\n"));
        }
    }
    out
}

/// The cluster's summary line and one line per node, masters first, each followed by its
/// replicas.
fn render_cluster(c: &crate::redis::cluster::ClusterView) -> String {
    use crate::redis::cluster::SLOTS;
    let mut out = format!(
        "{:<17} {} masters, {} replicas, {} of {SLOTS} slots served{}\n",
        "redis cluster",
        c.masters,
        c.replicas,
        c.slots_served,
        if c.problems().is_empty() { "" } else { "  !!" }
    );
    let mut masters: Vec<_> = c.nodes.iter().filter(|n| n.role == "master").collect();
    masters.sort_by(|a, b| a.addr.cmp(&b.addr));
    let line = |n: &crate::redis::cluster::ClusterNode, what: String| {
        format!(
            "  {:<21} {what}{}\n",
            n.addr,
            if n.failing { "  !! failing" } else { "" }
        )
    };
    for m in &masters {
        out.push_str(&line(m, format!("master, {} slots", m.slots)));
        for r in c
            .nodes
            .iter()
            .filter(|r| r.role == "replica" && r.replica_of.as_deref() == Some(&m.addr))
        {
            out.push_str(&line(r, "  replica".to_string()));
        }
    }
    for r in c.nodes.iter().filter(|r| {
        r.role == "replica"
            && !masters
                .iter()
                .any(|m| r.replica_of.as_deref() == Some(&m.addr))
    }) {
        out.push_str(&line(r, "replica of an unknown master".to_string()));
    }
    out
}

fn prefixed(prefix: &str, text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!("{prefix}{text}")
    }
}

/// `512B`, `12.3K`, `45.6M`, `1.2G` (powers of 1024, like systemctl).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["K", "M", "G", "T"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1}{}", UNITS[unit])
}

/// `0.42s` below ten seconds, else like [`human_seconds`].
pub fn human_duration(secs: f64) -> String {
    if secs < 10.0 {
        return format!("{secs:.2}s");
    }
    human_seconds(secs as u64)
}

/// `7s`, `42s`, `5m12s`, `3h04m`, `2d03h`.
pub fn human_seconds(s: u64) -> String {
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::status::{judge_consumer, judge_units, StatusReport};
    use crate::ctl::units::{UnitState, SOCKET, TARGET, WEBHOOKS, WORKER};
    use std::collections::HashMap;

    fn beat(fields: &[(&str, &str)]) -> HashMap<String, String> {
        fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn running(unit: &str, pid: u32, status_text: &str) -> UnitState {
        UnitState {
            unit: unit.to_string(),
            load_state: "loaded".to_string(),
            active_state: "active".to_string(),
            sub_state: if unit == TARGET || unit == SOCKET {
                "active".to_string()
            } else {
                "running".to_string()
            },
            main_pid: (pid > 0).then_some(pid),
            active_since: Some(1_000),
            restarts: Some(0),
            status_text: status_text.to_string(),
            ..UnitState::default()
        }
    }

    #[test]
    fn status_shows_the_webhook_sender_with_its_lag_and_deliveries() {
        let now_ms = 1_060_000;
        let report = StatusReport {
            healthy: true,
            problems: Vec::new(),
            units: judge_units(
                vec![
                    running(TARGET, 0, ""),
                    running(WORKER, 41, "worker: 9 clicks processed"),
                    running(WEBHOOKS, 42, "webhooks: 3 deliveries pending"),
                ],
                &[],
            ),
            click_stream_length: Some(12),
            consumers: vec![
                judge_consumer(
                    "worker",
                    Some(&beat(&[
                        ("lag_events", "1"),
                        ("lag_seconds", "0.2"),
                        ("last_seen", "1059000"),
                    ])),
                    now_ms,
                ),
                judge_consumer(
                    "webhooks",
                    Some(&beat(&[
                        ("lag_events", "2"),
                        ("lag_seconds", "0.5"),
                        ("deliveries_pending", "3"),
                        ("deliveries_failed_total", "1"),
                        ("last_seen", "1059000"),
                    ])),
                    now_ms,
                ),
            ],
            dependencies: Vec::new(),
            redis_cluster: None,
        };
        let text = render_status(&report, 1_060);
        let line = |start: &str| {
            text.lines()
                .find(|l| l.starts_with(start))
                .unwrap_or_else(|| panic!("no line starting {start:?} in:\n{text}"))
                .to_string()
        };
        let unit = line(WEBHOOKS);
        assert!(unit.contains("active/running"), "{unit}");
        assert!(unit.contains(" 42 "), "{unit}");
        assert!(unit.ends_with("webhooks: 3 deliveries pending"), "{unit}");
        assert_eq!(
            line("webhooks "),
            "webhooks          lag 2 stream entries, 0.5 s; 3 deliveries pending, 1 failed; \
             last heartbeat 1.00s ago"
        );
        assert_eq!(
            line("worker "),
            "worker            lag 1 stream entries, 0.2 s; last heartbeat 1.00s ago"
        );
    }

    #[test]
    fn status_shows_the_replica_lag_and_the_redis_cluster_node_by_node() {
        let dependency = |name, ok, lag_seconds: Option<f64>, error: Option<&str>| {
            crate::ctl::status::DependencyReport {
                name,
                ok,
                latency_ms: Some(1.5),
                error: error.map(str::to_string),
                lag_seconds,
            }
        };
        let cluster = crate::redis::cluster::parse_cluster_nodes(
            "\
m1 10.0.0.1:6379@16379 master - 0 0 1 connected 0-5460
m2 10.0.0.2:6379@16379 master,fail - 0 0 2 disconnected 5461-10922
m3 10.0.0.3:6379@16379 myself,master - 0 0 3 connected 10923-16383
r1 10.0.0.4:6379@16379 slave m1 0 0 1 connected
r2 10.0.0.5:6379@16379 slave m2 0 0 2 connected
r3 10.0.0.6:6379@16379 slave m3 0 0 3 connected
",
        )
        .expect("parses");
        let report = StatusReport {
            healthy: false,
            problems: cluster.problems(),
            units: Vec::new(),
            click_stream_length: Some(0),
            consumers: Vec::new(),
            dependencies: vec![
                dependency("postgresql-replica", true, Some(0.25), None),
                dependency(
                    "postgresql-replica",
                    false,
                    Some(12.0),
                    Some("12s behind the primary"),
                ),
            ],
            redis_cluster: Some(cluster),
        };
        let text = render_status(&report, 1_060);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines.contains(&"postgresql-replica ok (1.50 ms, 0.25s behind)"),
            "{text}"
        );
        assert!(
            lines.contains(&"postgresql-replica !! lagging: 12s behind the primary"),
            "{text}"
        );
        let at = lines
            .iter()
            .position(|l| l.starts_with("redis cluster "))
            .unwrap_or_else(|| panic!("no cluster line in:\n{text}"));
        assert_eq!(
            &lines[at..at + 7],
            [
                "redis cluster     3 masters, 3 replicas, 10922 of 16384 slots served  !!",
                "  10.0.0.1:6379         master, 5461 slots",
                "  10.0.0.4:6379           replica",
                "  10.0.0.2:6379         master, 5462 slots  !! failing",
                "  10.0.0.5:6379           replica",
                "  10.0.0.3:6379         master, 5461 slots",
                "  10.0.0.6:6379           replica",
            ]
        );
        assert!(
            text.contains("  - redis cluster node 10.0.0.2:6379 (master) is failing"),
            "{text}"
        );
    }

    #[test]
    fn sizes_and_durations_read_like_systemctl() {
        assert_eq!(human_bytes(512), "512B");
        assert_eq!(human_bytes(12 * 1024 * 1024 + 300 * 1024), "12.3M");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0G");
        assert_eq!(human_duration(0.4213), "0.42s");
        assert_eq!(human_duration(42.0), "42s");
        assert_eq!(human_duration(312.0), "5m12s");
        assert_eq!(human_duration(3.0 * 3600.0 + 240.0), "3h04m");
        assert_eq!(human_duration(2.0 * 86_400.0 + 3.0 * 3600.0), "2d03h");
        assert_eq!(human_seconds(7), "7s");
    }
}

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
            if s.is_installed() && matches!(u.role, "api" | "worker" | "aggregator") {
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
        out.push_str(&format!(
            "{:<17} lag {} stream entries, {} s; last heartbeat {}{}\n",
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
            if d.ok {
                format!("ok ({:.2} ms)", d.latency_ms.unwrap_or(0.0))
            } else {
                format!(
                    "!! unreachable: {}",
                    d.error.as_deref().unwrap_or("no answer")
                )
            }
        ));
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

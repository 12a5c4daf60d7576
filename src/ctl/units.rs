//! `boltlinkctl`'s systemd side: `status`, rolling `restart`, `stop`, `scale`, `logs`.
//!
//! Everything goes through `systemctl` and `journalctl` (no D-Bus library): `systemctl show`
//! output is parsed here, so what `boltlinkctl status` says is exactly what systemd says.
//! PostgreSQL and Redis are reached through `store` and `cache`, like everywhere else.
//!
//! The suite's units (see `systemd/` in the source tree):
//! - `boltlink.target` wants the socket, the worker, the aggregator and — through
//!   `boltlink-generator` — `boltlink-api@1..N`;
//! - `boltlink-api.socket`, shared by every API instance;
//! - `boltlink-api@N.service`, `boltlink-worker.service`, `boltlink-aggregator.service`.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;

use crate::cache::RedisHandle;
use crate::config::Config;
use crate::store::Store;

pub const TARGET: &str = "boltlink.target";
pub const SOCKET: &str = "boltlink-api.socket";
pub const WORKER: &str = "boltlink-worker.service";
pub const AGGREGATOR: &str = "boltlink-aggregator.service";
const API_PREFIX: &str = "boltlink-api@";
const API_SUFFIX: &str = ".service";

/// A consumer's heartbeat older than this means it is stopped or stuck.
const HEARTBEAT_STALE_MS: i64 = 30_000;
/// How long `restart` waits for a restarted instance to answer through the socket.
const ANSWER_DEADLINE: Duration = Duration::from_secs(30);

const SHOW_PROPERTIES: &[&str] = &[
    "Id",
    "LoadState",
    "ActiveState",
    "SubState",
    "Result",
    "MainPID",
    "ActiveEnterTimestamp",
    "MemoryCurrent",
    "CPUUsageNSec",
    "NRestarts",
    "StatusText",
    "ExecMainStatus",
    "Listen",
];

/// `boltlink-api@N.service` for N.
pub fn api_unit(n: u32) -> String {
    format!("{API_PREFIX}{n}{API_SUFFIX}")
}

/// N of `boltlink-api@N.service`, if that is what `unit` is.
pub fn api_instance_number(unit: &str) -> Option<u32> {
    unit.strip_prefix(API_PREFIX)?
        .strip_suffix(API_SUFFIX)?
        .parse()
        .ok()
}

/// The instance name an API unit gives its process (`Environment=BOLTLINK_INSTANCE=api-%i`).
pub fn api_instance_name(n: u32) -> String {
    format!("api-{n}")
}

// ---- systemctl ------------------------------------------------------------------------------

/// Fails clearly unless this machine runs systemd and has `systemctl`.
pub fn ensure_systemd() -> anyhow::Result<()> {
    // The same test as sd_booted(3).
    if !Path::new("/run/systemd/system").is_dir() {
        bail!(
            "systemd is not running on this machine (no /run/systemd/system), so there are no \
             BoltLink units to operate; for development run the suite with `boltlinkctl run`"
        );
    }
    Ok(())
}

fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program).args(args).output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow::anyhow!("{program} is not installed (it comes with systemd)")
        } else {
            anyhow::anyhow!("cannot run {program}: {e}")
        }
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        bail!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            stderr.trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn systemctl(args: &[&str]) -> anyhow::Result<String> {
    run("systemctl", args)
}

/// What `systemctl show` says about one unit.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UnitState {
    pub unit: String,
    pub load_state: String,
    pub active_state: String,
    pub sub_state: String,
    /// `success`, `exit-code`, `signal`, `watchdog`, ... for the last run.
    pub result: String,
    pub main_pid: Option<u32>,
    /// When the unit last became active (Unix seconds).
    pub active_since: Option<i64>,
    /// From the cgroup, or the main process's resident memory where cgroup accounting is
    /// unavailable (cgroup v1 hosts).
    pub memory_bytes: Option<u64>,
    pub cpu_seconds: Option<f64>,
    pub restarts: Option<u64>,
    /// The process's `STATUS=` line.
    pub status_text: String,
    pub exit_status: Option<i32>,
    /// Listening addresses (sockets only).
    pub listen: Vec<String>,
}

impl UnitState {
    pub fn is_installed(&self) -> bool {
        self.load_state != "not-found" && !self.load_state.is_empty()
    }

    pub fn is_running(&self) -> bool {
        self.active_state == "active" && self.sub_state == "running"
    }

    pub fn is_active(&self) -> bool {
        self.active_state == "active"
    }

    pub fn is_failed(&self) -> bool {
        self.active_state == "failed"
    }

    fn from_properties(props: &[(String, String)]) -> Self {
        let get = |name: &str| {
            props
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .unwrap_or("")
        };
        let number = |name: &str| -> Option<u64> {
            // systemd prints "[not set]" or u64::MAX for values it does not track.
            get(name).parse::<u64>().ok().filter(|v| *v != u64::MAX)
        };
        UnitState {
            unit: get("Id").to_string(),
            load_state: get("LoadState").to_string(),
            active_state: get("ActiveState").to_string(),
            sub_state: get("SubState").to_string(),
            result: get("Result").to_string(),
            main_pid: number("MainPID").filter(|p| *p > 0).map(|p| p as u32),
            active_since: get("ActiveEnterTimestamp")
                .strip_prefix('@')
                .and_then(|v| v.parse::<i64>().ok())
                .filter(|v| *v > 0),
            memory_bytes: number("MemoryCurrent"),
            cpu_seconds: number("CPUUsageNSec").map(|ns| ns as f64 / 1e9),
            restarts: number("NRestarts"),
            status_text: get("StatusText").to_string(),
            exit_status: get("ExecMainStatus").parse().ok(),
            listen: props
                .iter()
                .filter(|(k, v)| k == "Listen" && !v.is_empty())
                .map(|(_, v)| v.clone())
                .collect(),
        }
    }
}

/// Splits `systemctl show` output for several units (blank-line separated blocks of
/// `Key=Value` lines) into property lists, in order.
pub fn parse_show(text: &str) -> Vec<Vec<(String, String)>> {
    let mut blocks = Vec::new();
    let mut current = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            if !current.is_empty() {
                blocks.push(std::mem::take(&mut current));
            }
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            current.push((k.to_string(), v.to_string()));
        }
    }
    if !current.is_empty() {
        blocks.push(current);
    }
    blocks
}

/// `systemctl show` for `units`, in the same order. Memory and CPU fall back to the main
/// process's own figures when systemd has no cgroup accounting for them.
pub fn show(units: &[String]) -> anyhow::Result<Vec<UnitState>> {
    if units.is_empty() {
        return Ok(Vec::new());
    }
    let props = format!("--property={}", SHOW_PROPERTIES.join(","));
    let mut args = vec!["show", "--timestamp=unix", props.as_str(), "--"];
    args.extend(units.iter().map(String::as_str));
    let text = systemctl(&args)?;
    let mut states: Vec<UnitState> = parse_show(&text)
        .iter()
        .map(|b| UnitState::from_properties(b))
        .collect();
    if states.len() != units.len() {
        bail!(
            "systemctl show answered for {} units, asked for {}",
            states.len(),
            units.len()
        );
    }
    for (state, name) in states.iter_mut().zip(units) {
        if state.unit.is_empty() {
            state.unit = name.clone();
        }
        if let Some(pid) = state.main_pid {
            if state.memory_bytes.is_none() {
                state.memory_bytes = process_rss_bytes(pid);
            }
            if state.cpu_seconds.is_none() {
                state.cpu_seconds = process_cpu_seconds(pid);
            }
        }
    }
    Ok(states)
}

fn show_one(unit: &str) -> anyhow::Result<UnitState> {
    show(&[unit.to_string()])?
        .pop()
        .context("systemctl show printed nothing")
}

fn process_rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 here (0-based 11, 12).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every Linux architecture we ship for.
    Some((utime + stime) as f64 / 100.0)
}

/// The suite must be installed: `boltlink.target` known to systemd.
fn ensure_installed() -> anyhow::Result<UnitState> {
    ensure_systemd()?;
    let target = show_one(TARGET)?;
    if !target.is_installed() {
        bail!(
            "{TARGET} is not installed (systemd reports LoadState={}): install the unit files \
             and boltlink-generator (see `systemd/` and the README's Operations section)",
            if target.load_state.is_empty() {
                "unknown"
            } else {
                &target.load_state
            }
        );
    }
    Ok(target)
}

/// The API instances `boltlink.target` wants (what the generator made of API_INSTANCES),
/// sorted by number.
pub fn wanted_api_instances() -> anyhow::Result<Vec<u32>> {
    let wants = systemctl(&["show", "--property=Wants", "--value", "--", TARGET])?;
    Ok(api_numbers(wants.split_whitespace()))
}

/// API instances systemd has loaded (running, failed, or otherwise still known).
pub fn loaded_api_instances() -> anyhow::Result<Vec<u32>> {
    let list = systemctl(&[
        "list-units",
        "--all",
        "--plain",
        "--no-legend",
        "--full",
        "--type=service",
        "--",
        "boltlink-api@*.service",
    ])?;
    Ok(api_numbers(
        list.lines().filter_map(|l| l.split_whitespace().next()),
    ))
}

fn api_numbers<'a>(names: impl Iterator<Item = &'a str>) -> Vec<u32> {
    let mut numbers: Vec<u32> = names.filter_map(api_instance_number).collect();
    numbers.sort_unstable();
    numbers.dedup();
    numbers
}

// ---- status ---------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize)]
pub struct UnitReport {
    #[serde(flatten)]
    pub state: UnitState,
    /// `target`, `socket`, `api`, `worker`, `aggregator`.
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
}

#[derive(Debug, Clone, Serialize)]
pub struct ConsumerReport {
    pub name: &'static str,
    pub lag_events: Option<u64>,
    pub lag_seconds: Option<f64>,
    /// Milliseconds since its last heartbeat.
    pub heartbeat_age_ms: Option<i64>,
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
            } else if state.unit == WORKER {
                ("worker", true)
            } else if state.unit == AGGREGATOR {
                ("aggregator", true)
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
        // The worker and aggregator ship with the suite; until they are installed the click
        // stream just holds the events, which `status` reports as the stream length.
        return match role {
            "worker" | "aggregator" => (true, Some("not installed".to_string())),
            _ => (false, Some("not installed".to_string())),
        };
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
    names.push(WORKER.to_string());
    names.push(AGGREGATOR.to_string());
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
    match config {
        Err(e) => problems.push(format!("configuration: {e}")),
        Ok(config) => {
            let (pg, redis) = tokio::join!(check_postgres(config), connect_redis(config));
            let (redis_report, redis) = redis;
            dependencies.push(pg);
            dependencies.push(redis_report);
            if let Some(redis) = redis {
                click_stream_length = redis.click_stream_len().await;
                let now_ms = chrono::Utc::now().timestamp_millis();
                for (name, unit) in [("worker", WORKER), ("aggregator", AGGREGATOR)] {
                    let Some(u) = units.iter().find(|u| u.state.unit == unit) else {
                        continue;
                    };
                    if !u.state.is_installed() {
                        continue;
                    }
                    let beat = redis.process_heartbeat(name).await.flatten();
                    consumers.push(judge_consumer(name, beat.as_ref(), now_ms));
                }
            }
            for d in &dependencies {
                if !d.ok {
                    problems.push(format!(
                        "{} is unreachable: {}",
                        d.name,
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
    })
}

/// A worker's or aggregator's heartbeat hash (`lag_events`, `lag_seconds`, `last_seen` ms).
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
    }
}

pub(crate) async fn connect_redis(config: &Config) -> (DependencyReport, Option<RedisHandle>) {
    let handle = match RedisHandle::new(&config.redis.url, &config.redis.key_prefix) {
        Ok(h) => h,
        Err(e) => {
            return (
                DependencyReport {
                    name: "redis",
                    ok: false,
                    latency_ms: None,
                    error: Some(e.to_string()),
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
            },
            Some(handle),
        ),
        Err(e) => (
            DependencyReport {
                name: "redis",
                ok: false,
                latency_ms: None,
                error: Some(e),
            },
            None,
        ),
    }
}

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

// ---- restart --------------------------------------------------------------------------------

/// Where a client reaches the shared socket, from the socket unit's `Listen=` value
/// (`[::]:5000 (Stream)`); wildcard addresses become loopback.
pub fn connect_address(listen: &str) -> Option<SocketAddr> {
    let addr = listen.split_whitespace().next()?;
    let parsed: SocketAddr = addr.parse().ok()?;
    let ip = parsed.ip();
    let ip = if ip.is_unspecified() {
        if parsed.is_ipv6() && addr.starts_with("[::]") {
            // Dual-stack wildcard: IPv4 loopback works unless BindIPv6Only=ipv6-only.
            std::net::IpAddr::from([127, 0, 0, 1])
        } else if parsed.is_ipv6() {
            std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST)
        } else {
            std::net::IpAddr::from([127, 0, 0, 1])
        }
    } else {
        ip
    };
    Some(SocketAddr::new(ip, parsed.port()))
}

/// Rolling restart: each wanted API instance in turn — the next only once the previous is
/// active again with a new process and answers on the shared socket, and the suite answers
/// `/ready` — then the worker, then the aggregator. Stops at the first failure.
///
/// `if_running`: a suite that is not running is left alone (exit 0) instead of being an error;
/// the package's postinst restarts with it after an upgrade.
pub async fn rolling_restart(out: &mut impl Write, if_running: bool) -> anyhow::Result<()> {
    let target = ensure_installed()?;
    if !target.is_active() && if_running {
        writeln!(
            out,
            "{TARGET} is {}: nothing to restart",
            target.active_state
        )?;
        return Ok(());
    }
    if !target.is_active() {
        bail!(
            "{TARGET} is {}: start the suite first (systemctl start {TARGET})",
            target.active_state
        );
    }
    let socket = show_one(SOCKET)?;
    let addr = socket
        .listen
        .iter()
        .find_map(|l| connect_address(l))
        .with_context(|| {
            format!(
                "{SOCKET} has no TCP address to check instances on (Listen={:?})",
                socket.listen
            )
        })?;
    let wanted = wanted_api_instances()?;
    if wanted.is_empty() {
        bail!("{TARGET} wants no API instance: is boltlink-generator installed?");
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(3))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("building the HTTP client")?;
    let base = format!("http://{addr}");
    let total = Instant::now();
    for n in &wanted {
        let unit = api_unit(*n);
        let started = Instant::now();
        let before = restart_unit(&unit)?;
        let after = show_one(&unit)?;
        if after.main_pid.is_some() && after.main_pid == before.main_pid {
            bail!(
                "{unit} still has the same process ({:?}) after the restart",
                after.main_pid
            );
        }
        wait_until_answering(&client, &base, &api_instance_name(*n))
            .await
            .with_context(|| {
                format!(
                    "{unit} is active but did not answer on {addr} within {} s; stopping the \
                     rolling restart (see journalctl -u {unit})",
                    ANSWER_DEADLINE.as_secs()
                )
            })?;
        writeln!(
            out,
            "{unit}: restarted (pid {} -> {}), serving after {:.1} s",
            pid_text(before.main_pid),
            pid_text(after.main_pid),
            started.elapsed().as_secs_f64()
        )?;
    }
    for unit in [WORKER, AGGREGATOR] {
        let state = show_one(unit)?;
        if !state.is_installed() {
            writeln!(out, "{unit}: not installed, skipped")?;
            continue;
        }
        let started = Instant::now();
        let before = restart_unit(unit)?;
        let after = show_one(unit)?;
        writeln!(
            out,
            "{unit}: restarted (pid {} -> {}) in {:.1} s",
            pid_text(before.main_pid),
            pid_text(after.main_pid),
            started.elapsed().as_secs_f64()
        )?;
    }
    writeln!(
        out,
        "rolling restart finished in {:.1} s",
        total.elapsed().as_secs_f64()
    )?;
    Ok(())
}

fn pid_text(pid: Option<u32>) -> String {
    pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into())
}

/// `systemctl restart` (which for `Type=notify` returns once the new process sent READY=1),
/// then checks the unit is running. Returns the state from before the restart.
fn restart_unit(unit: &str) -> anyhow::Result<UnitState> {
    let before = show_one(unit)?;
    if let Err(e) = systemctl(&["restart", "--", unit]) {
        let now = show_one(unit).ok();
        bail!(
            "restarting {unit} failed; stopping the rolling restart. {e:#}{} (see journalctl -u {unit})",
            now.map(|s| format!("; it is now {}/{} (result {})", s.active_state, s.sub_state, s.result))
                .unwrap_or_default()
        );
    }
    let after = show_one(unit)?;
    if !after.is_running() {
        bail!(
            "{unit} is {}/{} after its restart (result {}); stopping the rolling restart (see journalctl -u {unit})",
            after.active_state,
            after.sub_state,
            after.result
        );
    }
    Ok(before)
}

/// Polls `/health` over fresh connections until the instance named `instance` answers (the
/// kernel hands each new connection to one of the processes accepting on the shared
/// socket), then requires `/ready` to answer 200.
async fn wait_until_answering(
    client: &reqwest::Client,
    base: &str,
    instance: &str,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + ANSWER_DEADLINE;
    let mut seen = false;
    let mut last_error = String::from("no answer yet");
    while Instant::now() < deadline {
        if !seen {
            match client.get(format!("{base}/health")).send().await {
                Ok(resp) => match resp.json::<serde_json::Value>().await {
                    Ok(body) if body["instance"] == instance => seen = true,
                    Ok(_) => {}
                    Err(e) => last_error = e.to_string(),
                },
                Err(e) => last_error = e.to_string(),
            }
        }
        if seen {
            match client.get(format!("{base}/ready")).send().await {
                Ok(resp) if resp.status() == reqwest::StatusCode::OK => return Ok(()),
                Ok(resp) => last_error = format!("/ready answered {}", resp.status()),
                Err(e) => last_error = e.to_string(),
            }
        }
        tokio::time::sleep(Duration::from_millis(if seen { 200 } else { 20 })).await;
    }
    bail!("{instance}: {last_error}")
}

// ---- stop -----------------------------------------------------------------------------------

/// Stops every service and the socket (which is not part of the target, so that restarting
/// the target never resets queued connections).
pub fn stop(out: &mut impl Write) -> anyhow::Result<()> {
    ensure_installed()?;
    let mut units = vec![TARGET.to_string(), SOCKET.to_string()];
    units.extend(loaded_api_instances()?.into_iter().map(api_unit));
    units.push(WORKER.to_string());
    units.push(AGGREGATOR.to_string());
    // Every unit named: systemctl waits only for the jobs of the units it is given, and the
    // target's own stop job finishes before the services it stops (they are ordered before it).
    let mut args = vec!["stop", "--"];
    args.extend(units.iter().map(String::as_str));
    systemctl(&args)?;
    let still: Vec<String> = show(&units)?
        .into_iter()
        .filter(|s| s.is_active())
        .map(|s| s.unit)
        .collect();
    if !still.is_empty() {
        bail!("still active after stopping: {}", still.join(", "));
    }
    writeln!(out, "stopped {TARGET} and {SOCKET}")?;
    Ok(())
}

// ---- scale ----------------------------------------------------------------------------------

/// `scale N|auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Auto,
    Count(u32),
}

impl Scale {
    pub fn parse(v: &str) -> Result<Self, String> {
        if v == "auto" {
            return Ok(Scale::Auto);
        }
        match v.parse::<u32>() {
            Ok(n) if (1..=256).contains(&n) => Ok(Scale::Count(n)),
            _ => Err(format!("{v:?} is not a number from 1 to 256 or \"auto\"")),
        }
    }

    fn value(&self) -> String {
        match self {
            Scale::Auto => "auto".to_string(),
            Scale::Count(n) => n.to_string(),
        }
    }
}

/// Sets `key=value` in env-file text: the first assignment of `key` is replaced in place
/// (keeping `export `), later ones are removed, and the line is appended if there was none.
/// Everything else, comments included, stays as it was.
pub fn set_env_assignment(text: &str, key: &str, value: &str) -> String {
    let assigns = |line: &str| {
        let l = line.trim_start();
        let l = l.strip_prefix("export ").map(str::trim_start).unwrap_or(l);
        l.strip_prefix(key)
            .map(|rest| rest.trim_start().starts_with('='))
            .unwrap_or(false)
    };
    let mut out = String::with_capacity(text.len() + key.len() + value.len() + 2);
    let mut done = false;
    for line in text.lines() {
        if assigns(line) {
            if !done {
                let export = line.trim_start().starts_with("export ");
                out.push_str(&format!(
                    "{}{key}={value}\n",
                    if export { "export " } else { "" }
                ));
                done = true;
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if !done {
        out.push_str(&format!("{key}={value}\n"));
    }
    out
}

/// The env file `boltlinkctl scale` edits: `BOLTLINK_ENV_FILE`, else the default.
pub fn env_file_path() -> PathBuf {
    let env = std::env::var("BOLTLINK_ENV_FILE")
        .map(|v| std::collections::HashMap::from([("BOLTLINK_ENV_FILE".to_string(), v)]))
        .unwrap_or_default();
    crate::config::env_file_for(&env).0
}

/// Rewrites `path` atomically with `text`, keeping the old file's mode and owner (new files:
/// 0640, readable by the services' group once an administrator chowns it).
fn write_env_file(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let old = std::fs::metadata(path).ok();
    let tmp = dir.join(format!(
        ".{}.boltlinkctl-{}",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    let mode = old.as_ref().map(|m| m.mode() & 0o7777).unwrap_or(0o640);
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    if let Some(m) = &old {
        std::os::unix::fs::chown(&tmp, Some(m.uid()), Some(m.gid()))
            .with_context(|| format!("keeping the owner of {}", path.display()))?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

/// Writes `API_INSTANCES`, reloads systemd (which re-runs the generator), starts the
/// instances now wanted and stops the running ones that are not.
pub fn scale(to: Scale, out: &mut impl Write) -> anyhow::Result<()> {
    let target = ensure_installed()?;
    let path = env_file_path();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    write_env_file(
        &path,
        &set_env_assignment(&text, "API_INSTANCES", &to.value()),
    )?;
    writeln!(
        out,
        "API_INSTANCES={} written to {}",
        to.value(),
        path.display()
    )?;
    systemctl(&["daemon-reload"])?;
    let wanted = wanted_api_instances()?;
    let expected = match to {
        Scale::Count(n) => Some(n as usize),
        Scale::Auto => None,
    };
    if wanted.is_empty() || expected.is_some_and(|n| n != wanted.len()) {
        bail!(
            "after daemon-reload {TARGET} wants {} API instance(s), expected {}: is \
             boltlink-generator installed in /usr/lib/systemd/system-generators/?",
            wanted.len(),
            to.value()
        );
    }
    if !target.is_active() {
        writeln!(
            out,
            "{TARGET} is {}: {} instance(s) will start with it",
            target.active_state,
            wanted.len()
        )?;
        return Ok(());
    }
    let start: Vec<String> = wanted.iter().map(|n| api_unit(*n)).collect();
    let mut args = vec!["start", "--"];
    args.extend(start.iter().map(String::as_str));
    systemctl(&args)?;
    let extra: Vec<String> = show(
        &loaded_api_instances()?
            .into_iter()
            .filter(|n| !wanted.contains(n))
            .map(api_unit)
            .collect::<Vec<_>>(),
    )?
    .into_iter()
    .filter(|s| s.is_active() || s.active_state == "activating")
    .map(|s| s.unit)
    .collect();
    if !extra.is_empty() {
        let mut args = vec!["stop", "--"];
        args.extend(extra.iter().map(String::as_str));
        systemctl(&args)?;
        writeln!(out, "stopped {}", extra.join(", "))?;
    }
    let not_running: Vec<String> = show(&start)?
        .into_iter()
        .filter(|s| !s.is_running())
        .map(|s| format!("{} ({}/{})", s.unit, s.active_state, s.sub_state))
        .collect();
    if !not_running.is_empty() {
        bail!("not running after scaling: {}", not_running.join(", "));
    }
    writeln!(
        out,
        "{} API instance(s) running: boltlink-api@{{{}}}",
        wanted.len(),
        wanted
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",")
    )?;
    Ok(())
}

// ---- logs -----------------------------------------------------------------------------------

/// The units `logs [unit]` shows: short names (`api`, `api@2`, `2`, `worker`, `aggregator`,
/// `socket`, `target`) or full unit names; everything of the suite by default.
pub fn log_units(unit: Option<&str>) -> Result<Vec<String>, String> {
    let all = || {
        vec![
            "boltlink-api@*.service".to_string(),
            WORKER.to_string(),
            AGGREGATOR.to_string(),
            SOCKET.to_string(),
            TARGET.to_string(),
        ]
    };
    let Some(unit) = unit else {
        return Ok(all());
    };
    let unit = unit.trim();
    Ok(match unit {
        "all" => all(),
        "api" => vec!["boltlink-api@*.service".to_string()],
        "worker" => vec![WORKER.to_string()],
        "aggregator" => vec![AGGREGATOR.to_string()],
        "socket" => vec![SOCKET.to_string()],
        "target" => vec![TARGET.to_string()],
        u if u.starts_with("boltlink") => vec![u.to_string()],
        u => {
            let n = u
                .strip_prefix("api@")
                .or_else(|| u.strip_prefix("api-"))
                .unwrap_or(u);
            match n.parse::<u32>() {
                Ok(n) if n > 0 => vec![api_unit(n)],
                _ => {
                    return Err(format!(
                        "unknown unit {u:?}: use api, api@N, worker, aggregator, socket, target \
                         or a full unit name"
                    ))
                }
            }
        }
    })
}

/// The `journalctl` command line for `logs`.
pub fn journalctl_args(units: &[String], follow: bool, lines: Option<u32>) -> Vec<String> {
    let mut args = Vec::new();
    for u in units {
        args.push("--unit".to_string());
        args.push(u.clone());
    }
    if let Some(n) = lines {
        args.push(format!("--lines={n}"));
    }
    if follow {
        args.push("--follow".to_string());
    }
    args
}

/// Replaces this process with `journalctl` for the suite's units.
pub fn logs(unit: Option<&str>, follow: bool, lines: Option<u32>) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    ensure_systemd()?;
    let units = log_units(unit).map_err(anyhow::Error::msg)?;
    let err = Command::new("journalctl")
        .args(journalctl_args(&units, follow, lines))
        .exec();
    if err.kind() == std::io::ErrorKind::NotFound {
        bail!("journalctl is not installed (it comes with systemd)");
    }
    Err(err).context("running journalctl")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOW: &str = "\
Id=boltlink-api@1.service
LoadState=loaded
ActiveState=active
SubState=running
Result=success
MainPID=812
ActiveEnterTimestamp=@1795438974
MemoryCurrent=[not set]
CPUUsageNSec=1500000000
NRestarts=2
StatusText=serving: 10 requests, 0 in flight, cache hits 90.0%, click queue 0 (lag 0.0 s)
ExecMainStatus=0
Listen=

Id=boltlink-api.socket
LoadState=loaded
ActiveState=active
SubState=running
Result=success
MainPID=0
ActiveEnterTimestamp=@1795438970
MemoryCurrent=18446744073709551615
NRestarts=[not set]
StatusText=
Listen=[::]:5000 (Stream)

Id=boltlink-worker.service
LoadState=not-found
ActiveState=inactive
SubState=dead
ActiveEnterTimestamp=
";

    #[test]
    fn systemctl_show_output_parses_into_unit_states() {
        let states: Vec<UnitState> = parse_show(SHOW)
            .iter()
            .map(|b| UnitState::from_properties(b))
            .collect();
        assert_eq!(states.len(), 3);
        let api = &states[0];
        assert_eq!(api.unit, "boltlink-api@1.service");
        assert!(api.is_running());
        assert_eq!(api.main_pid, Some(812));
        assert_eq!(api.active_since, Some(1795438974));
        assert_eq!(api.memory_bytes, None);
        assert_eq!(api.cpu_seconds, Some(1.5));
        assert_eq!(api.restarts, Some(2));
        assert!(api.status_text.starts_with("serving: 10 requests"));
        let socket = &states[1];
        assert_eq!(socket.main_pid, None);
        assert_eq!(socket.memory_bytes, None, "u64::MAX means unknown");
        assert_eq!(socket.listen, vec!["[::]:5000 (Stream)".to_string()]);
        assert!(!states[2].is_installed());
        assert_eq!(states[2].active_since, None);
    }

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
    }

    #[test]
    fn api_unit_names_round_trip() {
        assert_eq!(api_unit(3), "boltlink-api@3.service");
        assert_eq!(api_instance_number("boltlink-api@3.service"), Some(3));
        assert_eq!(api_instance_number("boltlink-api.socket"), None);
        assert_eq!(api_instance_number("boltlink-api@x.service"), None);
        assert_eq!(
            api_numbers(
                "boltlink-api@10.service boltlink-api@2.service boltlink-api.socket boltlink-worker.service boltlink-api@2.service"
                    .split_whitespace()
            ),
            vec![2, 10]
        );
    }

    #[test]
    fn socket_listen_values_become_connectable_addresses() {
        assert_eq!(
            connect_address("[::]:5000 (Stream)"),
            Some("127.0.0.1:5000".parse().expect("addr"))
        );
        assert_eq!(
            connect_address("0.0.0.0:8080 (Stream)"),
            Some("127.0.0.1:8080".parse().expect("addr"))
        );
        assert_eq!(
            connect_address("10.0.0.5:80 (Stream)"),
            Some("10.0.0.5:80".parse().expect("addr"))
        );
        assert_eq!(
            connect_address("[::1]:5000 (Stream)"),
            Some("[::1]:5000".parse().expect("addr"))
        );
        assert_eq!(connect_address("/run/boltlink.sock (Stream)"), None);
    }

    #[test]
    fn scale_edits_only_the_api_instances_line() {
        let text = "# BoltLink\nDATABASE_URL=postgres://x\nexport API_INSTANCES=2\nLOG_LEVEL=info\nAPI_INSTANCES = 9\n";
        assert_eq!(
            set_env_assignment(text, "API_INSTANCES", "auto"),
            "# BoltLink\nDATABASE_URL=postgres://x\nexport API_INSTANCES=auto\nLOG_LEVEL=info\n"
        );
        assert_eq!(
            set_env_assignment("DATABASE_URL=postgres://x", "API_INSTANCES", "4"),
            "DATABASE_URL=postgres://x\nAPI_INSTANCES=4\n"
        );
        // A variable whose name merely starts with the key is left alone.
        assert_eq!(
            set_env_assignment("API_INSTANCES_MAX=3\n", "API_INSTANCES", "4"),
            "API_INSTANCES_MAX=3\nAPI_INSTANCES=4\n"
        );
        assert_eq!(Scale::parse("auto"), Ok(Scale::Auto));
        assert_eq!(Scale::parse("3"), Ok(Scale::Count(3)));
        assert!(Scale::parse("0").is_err());
        assert!(Scale::parse("257").is_err());
        assert!(Scale::parse("many").is_err());
    }

    #[test]
    fn logs_takes_short_names_and_builds_a_journalctl_command() {
        assert_eq!(
            log_units(Some("api")),
            Ok(vec!["boltlink-api@*.service".to_string()])
        );
        assert_eq!(log_units(Some("api@2")), Ok(vec![api_unit(2)]));
        assert_eq!(log_units(Some("2")), Ok(vec![api_unit(2)]));
        assert_eq!(log_units(Some("worker")), Ok(vec![WORKER.to_string()]));
        assert_eq!(
            log_units(Some("boltlink-api@3.service")),
            Ok(vec![api_unit(3)])
        );
        assert!(log_units(Some("nginx")).is_err());
        assert_eq!(log_units(None).map(|u| u.len()), Ok(5));
        assert_eq!(
            journalctl_args(&[WORKER.to_string()], true, Some(50)),
            vec!["--unit", WORKER, "--lines=50", "--follow"]
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

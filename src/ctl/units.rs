//! `boltlinkctl`'s view of the suite's units: their names, `systemctl` and `systemctl show`
//! parsing, and which API instances the target wants. Everything goes through `systemctl`
//! and `journalctl` (no D-Bus library), so what `boltlinkctl` says is exactly what systemd
//! says. The commands built on it: [`super::status`], [`super::lifecycle`] (rolling restart,
//! stop), [`super::scale`], [`super::logs`].
//!
//! The suite's units (see `systemd/` in the source tree):
//! - `boltlink.target` wants the socket, the background services and — through
//!   `boltlink-generator` — `boltlink-api@1..N`;
//! - `boltlink-api.socket`, shared by every API instance;
//! - `boltlink-api@N.service`;
//! - the background services, one process each, listed once in [`BACKGROUND`]:
//!   `boltlink-worker.service`, `boltlink-aggregator.service`, `boltlink-webhooks.service`.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context};
use serde::Serialize;

pub const TARGET: &str = "boltlink.target";
pub const SOCKET: &str = "boltlink-api.socket";
pub const WORKER: &str = "boltlink-worker.service";
pub const AGGREGATOR: &str = "boltlink-aggregator.service";
pub const WEBHOOKS: &str = "boltlink-webhooks.service";
const API_PREFIX: &str = "boltlink-api@";
const API_SUFFIX: &str = ".service";

/// A background service of the suite: one process that consumes the click stream (and, for
/// webhooks, the outbox), with a heartbeat in Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Background {
    /// The unit, `boltlink-<name>.service`; its binary is `/usr/bin/boltlink-<name>`.
    pub unit: &'static str,
    /// The one name it goes by everywhere: its role in `status`, its short name in `logs`,
    /// its `BOLTLINK_INSTANCE`, its heartbeat in Redis and its consumer group.
    pub name: &'static str,
}

impl Background {
    /// The binary's file name (`boltlink-worker`), as installed in `/usr/bin` and built by cargo.
    pub fn binary(&self) -> &'static str {
        self.unit.trim_end_matches(".service")
    }
}

/// Every background service, in the order `restart` restarts them and `status` lists them.
pub const BACKGROUND: [Background; 3] = [
    Background {
        unit: WORKER,
        name: "worker",
    },
    Background {
        unit: AGGREGATOR,
        name: "aggregator",
    },
    Background {
        unit: WEBHOOKS,
        name: "webhooks",
    },
];

/// The background service `unit` is, if it is one.
pub fn background(unit: &str) -> Option<Background> {
    BACKGROUND.into_iter().find(|b| b.unit == unit)
}

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

pub(super) fn systemctl(args: &[&str]) -> anyhow::Result<String> {
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

pub(super) fn show_one(unit: &str) -> anyhow::Result<UnitState> {
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
pub(super) fn ensure_installed() -> anyhow::Result<UnitState> {
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

    #[test]
    fn background_services_are_named_once_and_consistently() {
        assert_eq!(
            BACKGROUND.map(|b| b.binary()),
            [
                "boltlink-worker",
                "boltlink-aggregator",
                "boltlink-webhooks"
            ]
        );
        for b in BACKGROUND {
            assert_eq!(b.unit, format!("boltlink-{}.service", b.name));
            assert_eq!(background(b.unit), Some(b));
        }
        assert_eq!(background(&api_unit(1)), None);
        assert_eq!(background(TARGET), None);
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
}

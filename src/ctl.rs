//! `boltlinkctl` commands: migrations, key management, capability dropping shared by the
//! service binaries, and `run`, a foreground supervisor for development that starts one
//! `boltlink-api` per core on one shared socket through the `LISTEN_FDS` protocol.
//! Operating the installed suite under systemd (`status`, `restart`, `stop`, `scale`,
//! `logs`) lives in [`units`].

pub mod setup;
pub mod units;

use std::path::PathBuf;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::config::Config;
use crate::domain::ApiKeySecret;
use crate::store::{NewApiKey, Store};

/// Clears every capability set of the calling thread (call while it is the only thread) and
/// says what was held before, for the start-up log line: `none`, or the permitted set.
///
/// Under the units (unprivileged user, empty `CapabilityBoundingSet=`) nothing is held, and
/// nothing is cleared: `capset` is outside the units' `SystemCallFilter=`, so it is only
/// called when there is something to drop (a process started by root by hand).
pub fn drop_capabilities() -> String {
    use caps::CapSet;
    let sets = [
        CapSet::Ambient,
        CapSet::Effective,
        CapSet::Inheritable,
        CapSet::Permitted,
    ];
    let mut held_anything = false;
    for set in sets {
        match caps::read(None, set) {
            Ok(s) if s.is_empty() => {}
            Ok(_) => held_anything = true,
            // Cannot tell: try to clear anyway.
            Err(_) => held_anything = true,
        }
    }
    let held = caps::read(None, CapSet::Permitted)
        .map(|set| {
            let mut names: Vec<String> = set.iter().map(|c| c.to_string()).collect();
            names.sort();
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(",")
            }
        })
        .unwrap_or_else(|e| format!("unknown ({e})"));
    if !held_anything {
        return held;
    }
    for set in sets {
        if let Err(e) = caps::clear(None, set) {
            return format!("{held} (clearing {set:?} failed: {e})");
        }
    }
    held
}

pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    let store = Store::connect_lazy(&config.database.url, 2)?;
    store.migrate().await.context("applying migrations")?;
    Ok(())
}

pub struct KeyOptions<'a> {
    pub admin: bool,
    pub name: Option<&'a str>,
    pub email: Option<&'a str>,
}

/// Creates a key and returns the secret (shown once; only its hash is stored).
pub async fn create_key(
    config: &Config,
    opts: KeyOptions<'_>,
) -> anyhow::Result<(String, uuid::Uuid)> {
    let store = Store::connect_lazy(&config.database.url, 2)?;
    let secret = ApiKeySecret::generate();
    let record = store
        .create_api_key(NewApiKey {
            hash: secret.hash(),
            prefix: secret.prefix(),
            name: opts.name,
            email: opts.email,
            is_admin: opts.admin,
            rate_limit_per_min: config.rate_limits.key_per_min,
            rate_limit_per_hour: config.rate_limits.key_per_hour,
        })
        .await
        .context("creating the key")?;
    Ok((secret.expose().to_string(), record.id))
}

pub async fn list_keys(config: &Config) -> anyhow::Result<String> {
    let store = Store::connect_lazy(&config.database.url, 2)?;
    let keys = store.list_api_keys().await.context("listing keys")?;
    let mut out = format!(
        "{:<36}  {:<13}  {:<5}  {:<8}  {:<20}  {}\n",
        "ID", "KEY", "ADMIN", "STATE", "CREATED", "NAME"
    );
    for k in keys {
        out.push_str(&format!(
            "{:<36}  {:<13}  {:<5}  {:<8}  {:<20}  {}\n",
            k.id,
            format!("{}...", k.key_prefix),
            if k.is_admin { "yes" } else { "no" },
            if k.revoked_at.is_some() {
                "revoked"
            } else {
                "active"
            },
            k.created_at.format("%Y-%m-%d %H:%M:%S"),
            k.name.unwrap_or_default()
        ));
    }
    Ok(out)
}

pub async fn revoke_key(config: &Config, id_or_prefix: &str) -> anyhow::Result<u64> {
    let store = Store::connect_lazy(&config.database.url, 2)?;
    store
        .revoke_api_key(id_or_prefix)
        .await
        .context("revoking the key")
}

/// The directory of the running executable, where sibling binaries live.
pub fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating boltlinkctl")?;
    let dir = exe
        .parent()
        .context("boltlinkctl has no parent directory")?;
    Ok(dir.join(name))
}

/// Instances for `auto`: the CPUs this process may run on.
pub fn auto_instances() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

struct Supervised {
    name: String,
    program: PathBuf,
    shares_socket: bool,
    child: Option<Child>,
    restarts: u32,
}

fn spawn_one(listener: &std::net::TcpListener, unit: &Supervised) -> anyhow::Result<Child> {
    let mut cmd = if unit.shares_socket {
        crate::systemd::spawn_with_listener(listener, &unit.program)?
    } else {
        std::process::Command::new(&unit.program)
    };
    cmd.env("BOLTLINK_INSTANCE", &unit.name);
    cmd.spawn()
        .with_context(|| format!("starting {}", unit.program.display()))
}

fn terminate(child: &Child) {
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
}

/// Runs the suite in the foreground until SIGINT/SIGTERM: `instances` API processes on one
/// socket bound to `BIND_ADDR`, plus `boltlink-worker` and `boltlink-aggregator` when those
/// binaries exist. A process that exits is restarted after a second, except on exit 78
/// (configuration error), which stops everything: restarting cannot fix configuration.
pub fn run_suite(
    config: &Config,
    instances: usize,
    stop: &std::sync::atomic::AtomicBool,
) -> anyhow::Result<i32> {
    let listener = crate::systemd::bind(config.http.bind_addr)
        .with_context(|| format!("binding BIND_ADDR {}", config.http.bind_addr))?;
    let api = sibling_binary("boltlink-api")?;
    let mut units: Vec<Supervised> = (1..=instances)
        .map(|i| Supervised {
            name: format!("api-{i}"),
            program: api.clone(),
            shares_socket: true,
            child: None,
            restarts: 0,
        })
        .collect();
    for extra in ["boltlink-worker", "boltlink-aggregator"] {
        let program = sibling_binary(extra)?;
        if program.exists() {
            units.push(Supervised {
                name: extra.trim_start_matches("boltlink-").to_string(),
                program,
                shares_socket: false,
                child: None,
                restarts: 0,
            });
        }
    }
    for u in &mut units {
        u.child = Some(spawn_one(&listener, u)?);
    }
    eprintln!(
        "boltlinkctl: started {} API instance(s) on http://{} sharing one socket{}",
        instances,
        config.http.bind_addr,
        if units.len() > instances {
            ", plus worker and aggregator"
        } else {
            ""
        }
    );
    let mut exit_code = 0;
    let mut pending_restart: Vec<(usize, Instant)> = Vec::new();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        for (i, u) in units.iter_mut().enumerate() {
            let Some(child) = u.child.as_mut() else {
                continue;
            };
            if let Ok(Some(status)) = child.try_wait() {
                u.child = None;
                if status.code() == Some(crate::config::EXIT_CONFIG) {
                    eprintln!(
                        "boltlinkctl: {} exited with a configuration error (78); stopping",
                        u.name
                    );
                    exit_code = crate::config::EXIT_CONFIG;
                    stop.store(true, std::sync::atomic::Ordering::Relaxed);
                } else {
                    eprintln!(
                        "boltlinkctl: {} exited ({}); restarting in 1 s",
                        u.name,
                        describe(status)
                    );
                    pending_restart.push((i, Instant::now() + Duration::from_secs(1)));
                }
            }
        }
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) =
            pending_restart.into_iter().partition(|(_, at)| *at <= now);
        pending_restart = later;
        if !stop.load(std::sync::atomic::Ordering::Relaxed) {
            for (i, _) in due {
                let u = &mut units[i];
                u.restarts += 1;
                match spawn_one(&listener, u) {
                    Ok(c) => u.child = Some(c),
                    Err(e) => eprintln!("boltlinkctl: {e:#}"),
                }
            }
        }
    }
    eprintln!("boltlinkctl: stopping");
    for u in &units {
        if let Some(c) = &u.child {
            terminate(c);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for u in &mut units {
        let Some(child) = u.child.as_mut() else {
            continue;
        };
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    eprintln!("boltlinkctl: {} did not stop in time; killing it", u.name);
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
            }
        }
    }
    drop(listener);
    Ok(exit_code)
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => "unknown status".to_string(),
    }
}

/// Resolves `--instances`: a number from 1 to 256, or `auto`.
pub fn parse_instances(v: &str) -> Result<usize, String> {
    if v == "auto" {
        return Ok(auto_instances());
    }
    match v.parse::<usize>() {
        Ok(n) if (1..=256).contains(&n) => Ok(n),
        _ => Err(format!("{v:?} is not a number from 1 to 256 or \"auto\"")),
    }
}

//! `boltlinkctl run`: a foreground supervisor for development that binds `BIND_ADDR` and
//! starts one `boltlink-api` per core on that one socket through the `LISTEN_FDS` protocol
//! (as systemd would), plus the background services (`boltlink-worker`,
//! `boltlink-aggregator`, `boltlink-webhooks`), until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::units::BACKGROUND;
use crate::config::Config;
use crate::daemon::Exit;

/// [`run_suite`] until SIGINT or SIGTERM; the exit status it asks for (78 after a
/// configuration error of a child).
pub fn run_until_signalled(config: &Config, instances: usize) -> anyhow::Result<i32> {
    let stop = Arc::new(AtomicBool::new(false));
    // Signals arrive on a small runtime thread; the supervisor loop polls the flag.
    let flag = stop.clone();
    let signals = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                return;
            };
            loop {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                    _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {
                        if flag.load(Ordering::Relaxed) { return; }
                        continue;
                    }
                }
                flag.store(true, Ordering::Relaxed);
                return;
            }
        });
    });
    let result = run_suite(config, instances, &stop);
    stop.store(true, Ordering::Relaxed);
    let _ = signals.join();
    result
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
    /// An API instance: it inherits the socket, and shares its connection counts through
    /// this run's directory (`RUNTIME_DIRECTORY`, as systemd's `RuntimeDirectory=` gives it).
    shares_socket: bool,
    child: Option<Child>,
    restarts: u32,
}

/// The niceness of the background services, as their units set it (`Nice=`): when the CPUs
/// are busy, redirects come first and the click stream absorbs the difference.
pub const BACKGROUND_NICE: &str = "5";

fn spawn_one(
    listener: &std::net::TcpListener,
    runtime_dir: &std::path::Path,
    unit: &Supervised,
) -> anyhow::Result<Child> {
    let mut cmd = if unit.shares_socket {
        let mut cmd = crate::daemon::systemd::spawn_with_listener(listener, &unit.program)?;
        cmd.env(crate::config::vars::RUNTIME_DIRECTORY.name, runtime_dir);
        cmd
    } else {
        // nice(1) execs the program in its own process: same pid, lower priority.
        let mut cmd = std::process::Command::new("nice");
        cmd.args(["-n", BACKGROUND_NICE]).arg(&unit.program);
        cmd
    };
    cmd.env(crate::config::vars::BOLTLINK_INSTANCE.name, &unit.name);
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
/// socket bound to `BIND_ADDR`, plus each background service (`boltlink-worker`,
/// `boltlink-aggregator`, `boltlink-webhooks`) whose binary exists. A process that exits is
/// restarted after a second, except on exit 78 (configuration error), which stops everything:
/// restarting cannot fix configuration.
pub fn run_suite(config: &Config, instances: usize, stop: &AtomicBool) -> anyhow::Result<i32> {
    let listener = crate::daemon::systemd::bind(config.http.bind_addr)
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
    for background in BACKGROUND {
        let program = sibling_binary(background.binary())?;
        if program.exists() {
            units.push(Supervised {
                name: background.name.to_string(),
                program,
                shares_socket: false,
                child: None,
                restarts: 0,
            });
        }
    }
    // The API instances' shared directory, as systemd's RuntimeDirectory= would give them;
    // removed when the run ends.
    let runtime_dir = std::env::temp_dir().join(format!("boltlink-run-{}", std::process::id()));
    std::fs::create_dir_all(&runtime_dir)
        .with_context(|| format!("creating {}", runtime_dir.display()))?;
    let _remove = RemoveOnDrop(runtime_dir.clone());
    for u in &mut units {
        u.child = Some(spawn_one(&listener, &runtime_dir, u)?);
    }
    let background: Vec<&str> = units[instances..].iter().map(|u| u.name.as_str()).collect();
    eprintln!(
        "boltlinkctl: started {} API instance(s) on http://{} sharing one socket{}",
        instances,
        config.http.bind_addr,
        if background.is_empty() {
            String::new()
        } else {
            format!(", plus {}", background.join(", "))
        }
    );
    let mut exit_code = 0;
    let mut pending_restart: Vec<(usize, Instant)> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        for (i, u) in units.iter_mut().enumerate() {
            let Some(child) = u.child.as_mut() else {
                continue;
            };
            if let Ok(Some(status)) = child.try_wait() {
                u.child = None;
                if status.code() == Some(i32::from(Exit::Config.code())) {
                    eprintln!(
                        "boltlinkctl: {} exited with a configuration error (78); stopping",
                        u.name
                    );
                    exit_code = i32::from(Exit::Config.code());
                    stop.store(true, Ordering::Relaxed);
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
        if !stop.load(Ordering::Relaxed) {
            for (i, _) in due {
                let u = &mut units[i];
                u.restarts += 1;
                match spawn_one(&listener, &runtime_dir, u) {
                    Ok(c) => u.child = Some(c),
                    Err(e) => eprintln!("boltlinkctl: {e:#}"),
                }
            }
        }
    }
    stop_all(&mut units);
    drop(listener);
    Ok(exit_code)
}

/// Removes a directory and what it holds when dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// SIGTERM to every child, then up to 10 s for all of them to exit; the rest are killed.
fn stop_all(units: &mut [Supervised]) {
    eprintln!("boltlinkctl: stopping");
    for u in units.iter() {
        if let Some(c) = &u.child {
            terminate(c);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for u in units.iter_mut() {
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

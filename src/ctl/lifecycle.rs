//! `boltlinkctl restart` (rolling, one instance at a time, each back on the socket before
//! the next) and `boltlinkctl stop` (the target and the socket).

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::units::{
    api_instance_name, api_unit, ensure_installed, loaded_api_instances, show, show_one, systemctl,
    wanted_api_instances, UnitState, BACKGROUND, SOCKET, TARGET,
};

/// How long `restart` waits for a restarted instance to answer through the socket.
const ANSWER_DEADLINE: Duration = Duration::from_secs(30);

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
/// `/ready` — then the background services in [`BACKGROUND`] order (worker, aggregator,
/// webhooks). Stops at the first failure.
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
    for unit in BACKGROUND.map(|b| b.unit) {
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
    units.extend(BACKGROUND.iter().map(|b| b.unit.to_string()));
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

#[cfg(test)]
mod tests {
    use super::*;

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
}

//! `boltlinkctl logs`: `journalctl` for the suite's units, by short name.

use std::process::Command;

use anyhow::{bail, Context};

use super::units::{api_unit, ensure_systemd, AGGREGATOR, SOCKET, TARGET, WORKER};

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
}

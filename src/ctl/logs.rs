//! `boltlinkctl logs`: `journalctl` for the suite's units, by short name.

use std::process::Command;

use anyhow::{bail, Context};

use super::units::{api_unit, ensure_systemd, BACKGROUND, SOCKET, TARGET};

/// The units `logs [unit]` shows: short names (`api`, `api@2`, `2`, `worker`, `aggregator`,
/// `webhooks`, `socket`, `target`) or full unit names; everything of the suite by default.
pub fn log_units(unit: Option<&str>) -> Result<Vec<String>, String> {
    let all = || {
        let mut units = vec!["boltlink-api@*.service".to_string()];
        units.extend(BACKGROUND.iter().map(|b| b.unit.to_string()));
        units.extend([SOCKET.to_string(), TARGET.to_string()]);
        units
    };
    let Some(unit) = unit else {
        return Ok(all());
    };
    let unit = unit.trim();
    if let Some(b) = BACKGROUND.iter().find(|b| b.name == unit) {
        return Ok(vec![b.unit.to_string()]);
    }
    Ok(match unit {
        "all" => all(),
        "api" => vec!["boltlink-api@*.service".to_string()],
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
                        "unknown unit {u:?}: use api, api@N, worker, aggregator, webhooks, \
                         socket, target or a full unit name"
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
    use crate::ctl::units::{WEBHOOKS, WORKER};

    #[test]
    fn logs_takes_short_names_and_builds_a_journalctl_command() {
        assert_eq!(
            log_units(Some("api")),
            Ok(vec!["boltlink-api@*.service".to_string()])
        );
        assert_eq!(log_units(Some("api@2")), Ok(vec![api_unit(2)]));
        assert_eq!(log_units(Some("2")), Ok(vec![api_unit(2)]));
        assert_eq!(log_units(Some("worker")), Ok(vec![WORKER.to_string()]));
        assert_eq!(log_units(Some("webhooks")), Ok(vec![WEBHOOKS.to_string()]));
        assert_eq!(
            log_units(Some("boltlink-webhooks")),
            Ok(vec!["boltlink-webhooks".to_string()]),
            "journalctl -u takes a unit name without its suffix"
        );
        assert_eq!(
            log_units(Some("boltlink-api@3.service")),
            Ok(vec![api_unit(3)])
        );
        assert!(log_units(Some("nginx")).is_err());
        assert_eq!(
            log_units(None),
            Ok(vec![
                "boltlink-api@*.service".to_string(),
                "boltlink-worker.service".to_string(),
                "boltlink-aggregator.service".to_string(),
                "boltlink-webhooks.service".to_string(),
                SOCKET.to_string(),
                TARGET.to_string(),
            ])
        );
        assert_eq!(log_units(Some("all")), log_units(None));
        assert_eq!(
            journalctl_args(&[WORKER.to_string()], true, Some(50)),
            vec!["--unit", WORKER, "--lines=50", "--follow"]
        );
    }
}

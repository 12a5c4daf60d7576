//! `boltlinkctl scale N|auto`: `API_INSTANCES` in the env file, a daemon-reload (which
//! re-runs `boltlink-generator`), then the instances now wanted started and the surplus
//! stopped.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::config::vars::API_INSTANCES;

use super::units::{
    api_unit, ensure_installed, loaded_api_instances, show, systemctl, wanted_api_instances, TARGET,
};

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
    let name = crate::config::vars::BOLTLINK_ENV_FILE.name;
    let env = std::env::var(name)
        .map(|v| std::collections::HashMap::from([(name.to_string(), v)]))
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
        &set_env_assignment(&text, API_INSTANCES.name, &to.value()),
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

#[cfg(test)]
mod tests {
    use super::*;

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
}

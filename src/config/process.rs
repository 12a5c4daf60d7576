//! Section PROCESSES: what every BoltLink process is called, how it logs, its threads,
//! memory bound and drain deadline, and whether it migrates at start. (`API_INSTANCES` and
//! `BOLTLINK_ENV_FILE` are declared in this section too, but are read by the generator and
//! by the env-file loader.)

use std::path::PathBuf;
use std::time::Duration;

use super::read::Reader;
use super::vars::{
    ACCESS_LOG, API_WORKER_THREADS, BOLTLINK_INSTANCE, LOG_LEVEL, MEMORY_RESTART_MB,
    MIGRATE_ON_START, RUNTIME_DIRECTORY, SHUTDOWN_TIMEOUT_MS,
};
use super::ConfigError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessConfig {
    /// Name in logs, metrics and heartbeats (`api-1`, `worker`, … under the units).
    pub instance: String,
    pub log_level: String,
    /// One `boltlink::access` line per request (off by default: see the README).
    pub access_log: bool,
    /// Tokio worker threads of `boltlink-api`.
    pub worker_threads: usize,
    /// Resident memory above which the API drains and exits 75 so that systemd restarts it
    /// (PM2's graceful max_memory_restart; the unit's MemoryMax= is a hard kill without a
    /// drain). `None` when MEMORY_RESTART_MB=0.
    pub memory_restart_bytes: Option<u64>,
    pub shutdown_timeout: Duration,
    pub migrate_on_start: bool,
    /// Where the API instances share their open connection counts (`http::balance`);
    /// `None`: every instance accepts whatever it can, as a lone process does.
    pub runtime_dir: Option<PathBuf>,
}

pub(super) fn process(r: &mut Reader<'_>) -> Result<ProcessConfig, ConfigError> {
    let log_level = r.required(LOG_LEVEL)?.to_string();
    if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
        return Err(ConfigError::new(
            LOG_LEVEL.name,
            format!(
                "{log_level:?} is not a level or filter (try info, debug, or boltlink=debug,info)"
            ),
        ));
    }
    let memory_restart_mb: u64 = r.number(MEMORY_RESTART_MB)?;
    Ok(ProcessConfig {
        instance: instance(r)?,
        log_level,
        access_log: r.flag(ACCESS_LOG)?,
        worker_threads: r.number(API_WORKER_THREADS)?,
        memory_restart_bytes: (memory_restart_mb > 0).then_some(memory_restart_mb << 20),
        shutdown_timeout: r.millis(SHUTDOWN_TIMEOUT_MS)?,
        migrate_on_start: r.flag(MIGRATE_ON_START)?,
        runtime_dir: runtime_dir(r)?,
    })
}

fn runtime_dir(r: &Reader<'_>) -> Result<Option<PathBuf>, ConfigError> {
    let Some(v) = r.set(RUNTIME_DIRECTORY) else {
        return Ok(None);
    };
    // systemd may list several directories, separated by colons: the first is ours.
    let first = PathBuf::from(v.split(':').next().unwrap_or(v));
    if !first.is_dir() {
        return Err(ConfigError::new(
            RUNTIME_DIRECTORY.name,
            format!("{v:?} is not a directory"),
        ));
    }
    Ok(Some(first))
}

fn instance(r: &mut Reader<'_>) -> Result<String, ConfigError> {
    let Some(v) = r.set(BOLTLINK_INSTANCE) else {
        let name = format!("pid{}", std::process::id());
        r.resolved(BOLTLINK_INSTANCE, &name);
        return Ok(name);
    };
    if v.len() > 64
        || !v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
    {
        return Err(ConfigError::new(
            BOLTLINK_INSTANCE.name,
            "must be at most 64 characters of A-Z a-z 0-9 - _ . @",
        ));
    }
    Ok(v.to_string())
}

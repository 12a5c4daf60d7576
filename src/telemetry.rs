//! Logging: structured records to journald when stderr is journald's stream, readable text to
//! stderr otherwise. Fields are dotted (`link.code`, `duration_ms`); messages read alone.
//! Never log API keys, passwords or raw client addresses.
//!
//! In the journal every field becomes a journal field of its own, upper-cased with dots
//! turned into underscores and no prefix: `REQUEST_ID`, `ROUTE`, `HTTP_STATUS`,
//! `DURATION_MS`, `LINK_CODE`; every record of a process also carries `INSTANCE` (e.g.
//! `api-2`), so `journalctl -u 'boltlink-api@*' ROUTE=redirect HTTP_STATUS=503` works.

use std::os::unix::fs::MetadataExt;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Whether stderr is the journal stream systemd connected us to. `JOURNAL_STREAM` alone is not
/// proof (a child with redirected stderr inherits it), so compare its `device:inode` with
/// stderr's.
pub fn stderr_is_journal() -> bool {
    let Ok(value) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    match std::fs::metadata("/proc/self/fd/2") {
        Ok(m) => m.dev() == dev && m.ino() == ino,
        Err(_) => false,
    }
}

/// Installs the global subscriber. `identifier` is the journal's `SYSLOG_IDENTIFIER`.
pub fn init(level: &str, identifier: &str) {
    init_with_instance(level, identifier, None);
}

/// [`init`], tagging every journal record with `INSTANCE=<instance>`.
pub fn init_with_instance(level: &str, identifier: &str, instance: Option<&str>) {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    if stderr_is_journal() {
        if let Ok(journald) = tracing_journald::layer() {
            let journald = journald
                .with_syslog_identifier(identifier.to_string())
                .with_field_prefix(None)
                .with_custom_fields(instance.map(|i| ("INSTANCE", i.to_string())));
            let _ = tracing_subscriber::registry()
                .with(filter)
                .with(journald)
                .try_init();
            return;
        }
    }
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(false),
        )
        .try_init();
}

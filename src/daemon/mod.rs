//! The lifecycle every BoltLink process shares, in one place: exit codes ([`Exit`]),
//! capability dropping ([`capabilities`]), signals and shutdown ([`signals`]), systemd's
//! socket and notifications ([`systemd`]), and [`Daemon::main`], the start-up order that
//! the three daemons' `main` functions run through.
//!
//! Start-up order, and why: configuration first (a bad one exits 78 before anything is
//! bound); then what must happen while the process has one thread (taking the listener
//! from `LISTEN_FDS`, which edits the environment; dropping capabilities, which are per
//! thread); then telemetry; then the runtime, with SIGTERM/SIGINT wired to a [`Shutdown`]
//! that the process body is handed.

pub mod capabilities;
pub mod signals;
pub mod systemd;

use std::future::Future;

pub use signals::{wire_signals, Shutdown};

use crate::config::Config;

/// How a process ends. The codes are the `sysexits.h` ones the units rely on:
/// `RestartPreventExitStatus=78` (a bad configuration is not retried), and 75 is restarted
/// by `Restart=on-failure` like any failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success,
    /// Anything else that went wrong; logged where it happened.
    Failure,
    /// `EX_OSERR`: the operating system refused something we need (the listening socket, the
    /// runtime's threads).
    OsError,
    /// `EX_TEMPFAIL`: the API drained and stopped because its memory passed
    /// `MEMORY_RESTART_MB`, so that systemd starts a fresh process.
    MemoryRestart,
    /// `EX_CONFIG`: the configuration is invalid; one line on stderr says which variable.
    Config,
}

impl Exit {
    pub const fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Failure => 1,
            Exit::OsError => 71,
            Exit::MemoryRestart => 75,
            Exit::Config => 78,
        }
    }

    /// The exit for an error that ended a process body: the kinds that have a code of their
    /// own are recognised by type, everything else is a plain failure.
    pub fn for_error(e: &anyhow::Error) -> Exit {
        if e.downcast_ref::<MemoryRestart>().is_some() {
            Exit::MemoryRestart
        } else if e.downcast_ref::<BadConfig>().is_some() {
            Exit::Config
        } else {
            Exit::Failure
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit.code())
    }
}

/// Why the API ended on its own: resident memory passed `MEMORY_RESTART_MB`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("resident memory {} MiB exceeded MEMORY_RESTART_MB={}: drained and stopped so that systemd starts a fresh process", .rss_bytes >> 20, .limit_bytes >> 20)]
pub struct MemoryRestart {
    pub rss_bytes: u64,
    pub limit_bytes: u64,
}

/// A configuration problem found after the variables parsed (a GeoIP file that does not
/// open, a URL a client refuses): exits 78 like a bad variable.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0:#}")]
pub struct BadConfig(pub anyhow::Error);

/// One daemon's identity for [`Daemon::main`].
pub struct Daemon {
    /// The binary's name: log identifier, thread names, the prefix of stderr lines.
    pub name: &'static str,
    /// Tag every journal entry with `INSTANCE=` (the API, whose instances share a unit
    /// template).
    pub tag_instance: bool,
}

impl Daemon {
    /// Runs a daemon through the start-up order in the module doc. `single_threaded` does
    /// what must happen before any thread exists and hands its result to `body`; `threads`
    /// sizes the runtime. Errors are printed once, prefixed with the binary's name, and
    /// mapped to their [`Exit`].
    pub fn main<T, Fut>(
        &self,
        threads: impl FnOnce(&Config) -> usize,
        single_threaded: impl FnOnce(&Config) -> Result<T, (Exit, String)>,
        body: impl FnOnce(Config, T, Shutdown) -> Fut,
    ) -> Exit
    where
        Fut: Future<Output = anyhow::Result<()>>,
    {
        let name = self.name;
        let config = match Config::from_process_env() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{name}: {e}");
                return Exit::Config;
            }
        };
        let prepared = match single_threaded(&config) {
            Ok(p) => p,
            Err((exit, message)) => {
                eprintln!("{name}: {message}");
                return exit;
            }
        };
        let dropped = capabilities::drop_all();
        let instance = self
            .tag_instance
            .then_some(config.process.instance.as_str());
        crate::telemetry::init_with_instance(&config.process.log_level, name, instance);
        tracing::info!(capabilities.held = %dropped, "{name} starting; capabilities: {dropped}");
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads(&config))
            .thread_name(name)
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("{name}: cannot start the runtime: {e}");
                return Exit::OsError;
            }
        };
        let result = runtime.block_on(async {
            let shutdown = Shutdown::new();
            wire_signals(shutdown.clone()).await?;
            body(config, prepared, shutdown).await
        });
        match result {
            Ok(()) => Exit::Success,
            Err(e) => {
                let exit = Exit::for_error(&e);
                if exit == Exit::Failure {
                    tracing::error!(error = format!("{e:#}"), "{name} failed");
                }
                eprintln!("{name}: {e:#}");
                exit
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_with_a_code_of_their_own_map_to_it_and_the_rest_to_failure() {
        let memory = anyhow::Error::new(MemoryRestart {
            rss_bytes: 600 << 20,
            limit_bytes: 500 << 20,
        });
        assert_eq!(Exit::for_error(&memory), Exit::MemoryRestart);
        assert_eq!(Exit::for_error(&memory).code(), 75);
        let config = anyhow::Error::new(BadConfig(anyhow::anyhow!("GEOIP_DB: no such file")));
        assert_eq!(Exit::for_error(&config).code(), 78);
        let other = anyhow::anyhow!("PostgreSQL went away");
        assert_eq!(Exit::for_error(&other), Exit::Failure);
        assert_eq!(Exit::OsError.code(), 71);
        assert_eq!(Exit::Success.code(), 0);
    }
}

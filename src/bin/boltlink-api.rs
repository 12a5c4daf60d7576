//! `boltlink-api`: take the listener, run the API until SIGTERM, map the exit code (the
//! start-up order is [`boltlink::daemon::Daemon::main`]'s).

use boltlink::daemon::{systemd, Daemon, Exit};

fn main() -> std::process::ExitCode {
    boltlink::config::daemon_command_line(
        "boltlink-api",
        "BoltLink HTTP API and redirects; one process per instance, all on one shared socket",
    );
    let daemon = Daemon {
        name: "boltlink-api",
        tag_instance: true,
    };
    daemon
        .main(
            |config| config.process.worker_threads,
            |config| {
                systemd::take_listener(config.http.bind_addr).map_err(|e| {
                    let why = format!("cannot listen on BIND_ADDR {}: {e}", config.http.bind_addr);
                    (Exit::OsError, why)
                })
            },
            |config, (listener, source), shutdown| async move {
                tracing::info!(listener.source = ?source, "listening on the {source:?} socket");
                boltlink::api::run(config, listener, shutdown).await
            },
        )
        .into()
}

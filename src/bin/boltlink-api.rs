//! `boltlink-api`: parse config, take the listener, start telemetry, run, map the exit code.

use std::process::ExitCode;

use boltlink::app::Shutdown;
use boltlink::config::{Config, EXIT_CONFIG};

fn main() -> ExitCode {
    boltlink::config::daemon_command_line(
        "boltlink-api",
        "BoltLink HTTP API and redirects; one process per instance, all on one shared socket",
    );
    let config = match Config::from_process_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("boltlink-api: {e}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    // Before the runtime exists: listenfd edits the environment, and capability sets are
    // per thread, so both must happen while this is the only thread.
    let (listener, source) = match boltlink::systemd::take_listener(config.http.bind_addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "boltlink-api: cannot listen on BIND_ADDR {}: {e}",
                config.http.bind_addr
            );
            return ExitCode::from(71); // EX_OSERR
        }
    };
    let held = boltlink::ctl::drop_capabilities();
    boltlink::telemetry::init_with_instance(
        &config.process.log_level,
        "boltlink-api",
        Some(&config.process.instance),
    );
    tracing::info!(
        listener.source = ?source,
        capabilities.held = %held,
        "boltlink-api starting; capabilities held at start: {held}; all cleared"
    );

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.process.worker_threads)
        .thread_name("boltlink-api")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("boltlink-api: cannot start the runtime: {e}");
            return ExitCode::from(71);
        }
    };
    let result = runtime.block_on(async {
        let shutdown = Shutdown::new();
        boltlink::api::wire_signals(shutdown.clone()).await?;
        boltlink::api::run(config, listener, shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<boltlink::api::MemoryRestart>().is_some() => {
            eprintln!("boltlink-api: {e}");
            ExitCode::from(boltlink::api::EXIT_MEMORY_RESTART)
        }
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "boltlink-api failed");
            eprintln!("boltlink-api: {e:#}");
            ExitCode::FAILURE
        }
    }
}

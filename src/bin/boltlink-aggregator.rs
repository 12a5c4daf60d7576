//! `boltlink-aggregator`: parse config, drop capabilities, start telemetry, run, map the exit code.

use std::process::ExitCode;

use boltlink::app::Shutdown;
use boltlink::config::{Config, EXIT_CONFIG};
use boltlink::pipeline::Pipeline;

fn main() -> ExitCode {
    let config = match Config::from_process_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("boltlink-aggregator: {e}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    // While this is the only thread: capability sets are per thread.
    let dropped = boltlink::ctl::drop_capabilities();
    boltlink::telemetry::init(&config.log_level, "boltlink-aggregator");
    tracing::info!(capabilities.dropped = %dropped, "boltlink-aggregator starting");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("boltlink-aggregator")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("boltlink-aggregator: cannot start the runtime: {e}");
            return ExitCode::from(71);
        }
    };
    // sqlx pools need the runtime's context even to be created.
    let pipeline = {
        let _context = runtime.enter();
        match Pipeline::build(&config) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("boltlink-aggregator: configuration error: {e:#}");
                return ExitCode::from(EXIT_CONFIG as u8);
            }
        }
    };
    let result: anyhow::Result<()> = runtime.block_on(async {
        let shutdown = Shutdown::new();
        boltlink::api::wire_signals(shutdown.clone()).await?;
        boltlink::aggregator::run(
            pipeline,
            &config.instance,
            config.migrate_on_start,
            shutdown,
        )
        .await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("boltlink-aggregator: {e:#}");
            ExitCode::FAILURE
        }
    }
}

//! The `boltlink-worker`, `boltlink-aggregator` and `boltlink-webhooks` processes: the click
//! stream's consumers ([`crate::clicks`], [`crate::webhooks`]) wired to the real stream
//! (Redis, [`RedisHandle`]) and tables (PostgreSQL, [`Store`]), and the `main` the three
//! binaries run.

use std::sync::Arc;
use std::time::Duration;

use crate::clicks::enrich::Geo;
use crate::clicks::{aggregator, worker};
use crate::config::Config;
use crate::daemon::{BadConfig, Daemon, Exit};
use crate::redis::RedisHandle;
use crate::store::Store;

pub use crate::clicks::consumer::{Consumer, Process, StepOutcome};

/// The pipeline as the processes run it.
pub type Pipeline = crate::clicks::consumer::Pipeline<RedisHandle, Store>;

/// Builds the handles (nothing connects yet) and opens the GeoIP database if configured.
pub fn build(config: &Config) -> anyhow::Result<Pipeline> {
    let store = Store::connect_lazy(&config.database.url, 4)?;
    // Blocking reads wait up to the poll interval: leave room beyond it.
    let redis = RedisHandle::for_stream_consumers(
        &config.redis.url,
        &config.redis.key_prefix,
        config.pipeline.poll_interval + Duration::from_secs(5),
    )?
    .with_outage_note(
        "reconnecting; stream entries wait in Redis, nothing is acknowledged meanwhile",
    )
    .with_click_stream_shards(config.redis.click_stream_shards);
    let geo = config
        .pipeline
        .geoip_db
        .as_deref()
        .map(Geo::open)
        .transpose()?
        .map(Arc::new);
    Ok(Pipeline::new(redis, store, config.pipeline.clone(), geo))
}

/// The whole `main` of `boltlink-worker`, `boltlink-aggregator` and `boltlink-webhooks`
/// (start-up order: [`Daemon::main`]). The pipeline is built inside the runtime: sqlx pools need its context
/// even to be created.
pub fn process_main(process: Process) -> Exit {
    let daemon = Daemon {
        name: process.binary(),
        tag_instance: false,
    };
    daemon.main(
        |_| 2,
        |_| Ok(()),
        |config, (), shutdown| async move {
            let pipeline = build(&config).map_err(BadConfig)?;
            // Reconnects Redis after an outage, until the process stops.
            tokio::spawn(pipeline.stream.clone().run_supervisor(shutdown.wait()));
            let (instance, migrate) = (
                config.process.instance.as_str(),
                config.process.migrate_on_start,
            );
            match process {
                Process::Worker => {
                    worker::run(pipeline, instance, migrate, shutdown).await;
                    Ok(())
                }
                Process::Aggregator => aggregator::run(pipeline, instance, migrate, shutdown).await,
                Process::Webhooks => crate::webhooks::run(pipeline, &config, shutdown).await,
            }
        },
    )
}

//! Section CLICK PIPELINE: settings of `boltlink-worker` and `boltlink-aggregator`.

use std::path::PathBuf;
use std::time::Duration;

use super::read::Reader;
use super::vars::{
    AGGREGATOR_BATCH_SIZE, AGGREGATOR_WINDOW_MS, CLICK_RETENTION_DAYS, COUNT_BOTS, GEOIP_DB,
    PIPELINE_BATCH_SIZE, PIPELINE_LINGER_MS, PIPELINE_POLL_MS, PIPELINE_TAKEOVER_MS,
};
use super::ConfigError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineConfig {
    /// The worker's clicks per step, about (a large backlog is drained in batches this big).
    pub batch_size: usize,
    /// How long one read waits for new entries when the stream is idle.
    pub poll_interval: Duration,
    /// Entries of the group left pending (read, not finished) this long are taken over.
    pub takeover_after: Duration,
    /// The worker's pace: after a step that caught up with the stream, the next one starts no
    /// sooner than this after it began, so clicks gather into fewer, larger transactions.
    pub linger: Duration,
    /// The aggregator's clicks per step at most: all of them are folded in memory and
    /// written as one transaction, each touched (link, hour, region, device) row once.
    pub aggregate_batch_size: usize,
    /// The aggregator's pace, as `linger` for the worker: the longer, the more clicks of a
    /// link share one row write, and the later they show in `links.clicks`.
    pub aggregate_window: Duration,
    /// Raw click events older than this many days are deleted (rollups are kept).
    pub retention_days: u32,
    /// Whether clicks flagged as bots count in `links.clicks` and rollups.
    pub count_bots: bool,
    /// MaxMind-format country database for events without a `cf-ipcountry` region.
    pub geoip_db: Option<PathBuf>,
}

pub(super) fn pipeline(r: &Reader<'_>) -> Result<PipelineConfig, ConfigError> {
    let geoip_db = match r.set(GEOIP_DB) {
        None => None,
        Some(path) => {
            let p = PathBuf::from(path);
            if !p.is_file() {
                return Err(ConfigError::new(
                    GEOIP_DB.name,
                    format!("{path:?} is not a readable file"),
                ));
            }
            Some(p)
        }
    };
    Ok(PipelineConfig {
        batch_size: r.number(PIPELINE_BATCH_SIZE)?,
        poll_interval: r.millis(PIPELINE_POLL_MS)?,
        takeover_after: r.millis(PIPELINE_TAKEOVER_MS)?,
        linger: r.millis(PIPELINE_LINGER_MS)?,
        aggregate_batch_size: r.number(AGGREGATOR_BATCH_SIZE)?,
        aggregate_window: r.millis(AGGREGATOR_WINDOW_MS)?,
        retention_days: r.number(CLICK_RETENTION_DAYS)?,
        count_bots: r.flag(COUNT_BOTS)?,
        geoip_db,
    })
}

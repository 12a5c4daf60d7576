//! Section CLICK PIPELINE: settings of `boltlink-worker` and `boltlink-aggregator`.

use std::path::PathBuf;
use std::time::Duration;

use super::read::Reader;
use super::vars::{
    CLICK_RETENTION_DAYS, COUNT_BOTS, GEOIP_DB, PIPELINE_BATCH_SIZE, PIPELINE_LINGER_MS,
    PIPELINE_POLL_MS,
};
use super::ConfigError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineConfig {
    /// Clicks per step, about (a large backlog is drained in batches this big).
    pub batch_size: usize,
    /// How long one read waits for new entries when the stream is idle.
    pub poll_interval: Duration,
    /// After a step that found less than a quarter of `batch_size` and the stream caught up, wait this long before the
    /// next read, so clicks gather into bigger batches (fewer, larger transactions).
    pub linger: Duration,
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
        linger: r.millis(PIPELINE_LINGER_MS)?,
        retention_days: r.number(CLICK_RETENTION_DAYS)?,
        count_bots: r.flag(COUNT_BOTS)?,
        geoip_db,
    })
}

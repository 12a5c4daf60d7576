//! `boltlink-worker`: click stream → enriched raw events in PostgreSQL, idempotently, plus
//! retention of old raw events.

use std::time::Duration;

use anyhow::anyhow;
use chrono::Utc;

use super::consumer::{
    acknowledge, consume, parse_batch, prepare, spawn_periodic, Consumer, Pipeline, Process,
    StepOutcome,
};
use super::enrich::enrich;
use super::ports::{ClickLog, ClickStore};
use crate::daemon::systemd::{self, NotifyState};
use crate::daemon::Shutdown;

pub const GROUP: &str = Process::Worker.group();
/// Rows per retention `DELETE`: small enough to keep each transaction short.
const RETENTION_BATCH: i64 = 10_000;

/// Reads one batch, writes its events (a redelivered event id is skipped by the primary
/// key), and only then acknowledges the batch.
pub async fn step<L: ClickLog, S: ClickStore>(
    p: &Pipeline<L, S>,
    consumer: &mut Consumer,
) -> anyhow::Result<StepOutcome> {
    let entries = consumer
        .read(p)
        .await
        .map_err(|e| anyhow!("reading the click stream: {e}"))?;
    if entries.is_empty() {
        return Ok(StepOutcome::Empty);
    }
    tracing::debug!(
        batch.first = %entries.first().map(|e| e.id).unwrap_or_default(),
        batch.last = %entries.last().map(|e| e.id).unwrap_or_default(),
        batch.size = entries.len(),
        recovering = consumer.is_recovering(),
        "storing a batch"
    );
    let parsed = parse_batch(p, &entries)
        .await
        .map_err(|e| anyhow!("dead-lettering: {e}"))?;
    let enriched: Vec<_> = parsed
        .events
        .into_iter()
        .map(|(_, e)| enrich(e, p.geo.as_deref()))
        .collect();
    p.store
        .insert_click_events(&enriched)
        .await
        .map_err(|e| anyhow!("writing click events: {e}"))?;
    let ids: Vec<_> = entries.iter().map(|e| e.id).collect();
    acknowledge(p, consumer, &ids, parsed.clicks, parsed.clicks_per_entry).await
}

/// Deletes raw events older than the retention period, in short batches. Rollups stay.
pub async fn apply_retention<L: ClickLog, S: ClickStore>(
    p: &Pipeline<L, S>,
) -> anyhow::Result<u64> {
    let before = Utc::now() - chrono::Duration::days(p.config.retention_days as i64);
    let mut total = 0;
    loop {
        let n = p
            .store
            .delete_click_events_before(before, RETENTION_BATCH)
            .await?;
        total += n;
        if n < RETENTION_BATCH as u64 {
            return Ok(total);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The worker process: the step loop, retention every hour, and the heartbeat.
pub async fn run<L: ClickLog, S: ClickStore>(
    p: Pipeline<L, S>,
    instance: &str,
    migrate: bool,
    shutdown: Shutdown,
) {
    // systemd may count watchdog time from the start: ping through start-up too.
    p.spawn_watchdog(&shutdown);
    prepare(&p, migrate).await;
    let retention = spawn_periodic(&shutdown, Duration::from_secs(3600), {
        let p = p.clone();
        move || {
            let p = p.clone();
            async move {
                match apply_retention(&p).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(
                        click_events.deleted = n,
                        "retention removed old raw click events"
                    ),
                    Err(e) => tracing::warn!(
                        error = format!("{e:#}"),
                        "retention failed; retrying in an hour"
                    ),
                }
            }
        }
    });
    systemd::notify(&[NotifyState::Ready]);
    tracing::info!(instance, "boltlink-worker ready");
    consume(&p, Process::Worker, &shutdown, |p, c| Box::pin(step(p, c))).await;
    retention.abort();
    tracing::info!("boltlink-worker stopped");
}

//! `boltlink-aggregator`: click stream → `links.clicks` and hourly rollups, exactly once.
//!
//! Why exactly once: the aggregator (one at a time, enforced by a PostgreSQL advisory lock)
//! reads entries in stream order. For every batch it commits, in ONE transaction, the counts
//! of the entries newer than its stored offset *and* the new offset (the batch's last id).
//! Only after the commit does it acknowledge the batch. If it dies before the commit,
//! nothing was counted and the entries are still pending: they are re-read and counted. If it
//! dies after the commit but before the acknowledgement, the re-read entries are not newer
//! than the stored offset and are skipped. Either way each entry is counted once.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{anyhow, bail};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::consumer::{
    acknowledge, consume_until, consumer_name, hold_singleton, parse_batch, prepare,
    spawn_periodic, Consumer, Pipeline, Process, StepOutcome,
};
use super::enrich::{enrich, Enriched};
use super::offset::StreamId;
use super::ports::{ClickLog, ClickStore, HeldLock};
use crate::daemon::systemd::{self, NotifyState};
use crate::daemon::Shutdown;

pub const GROUP: &str = Process::Aggregator.group();
/// The offset row in `stream_offsets` of shard 0 (and of the one stream before there were
/// shards); shard N's is `aggregator.N` ([`consumer_name`]).
pub const OFFSET_NAME: &str = "aggregator";

/// Additions to one hourly rollup row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollupDelta {
    pub link_id: Uuid,
    pub bucket: DateTime<Utc>,
    pub region: String,
    pub device_class: String,
    pub clicks: i64,
    pub gated: i64,
    pub latency_us_sum: i64,
}

/// Additions to one all-time rollup row (link × region × device class).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotalDelta {
    pub link_id: Uuid,
    pub region: String,
    pub device_class: String,
    pub clicks: i64,
    pub gated: i64,
    pub latency_us_sum: i64,
}

/// Additions to one daily rollup row (link × UTC day × region).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyDelta {
    pub link_id: Uuid,
    pub day: chrono::NaiveDate,
    pub region: String,
    pub clicks: i64,
}

/// A rollup row's identity (link, hour start in ms, region, device class) and its sums
/// (clicks, gated visits, latency in µs).
type RollupKey<'a> = (Uuid, i64, &'a str, &'static str);
type RollupSums = (i64, i64, i64);

/// Sums a batch into hourly rollup rows (link × hour × region × device class) and per-link
/// clicks. Every link with a rollup row is in the second list, with 0 when only gated visits
/// were seen (the store locks each of them against deletion while it writes their rows).
pub fn aggregate(events: &[Enriched], count_bots: bool) -> (Vec<RollupDelta>, Vec<(Uuid, i64)>) {
    let mut rollups: HashMap<RollupKey<'_>, RollupSums> = HashMap::new();
    let mut links: HashMap<Uuid, i64> = HashMap::new();
    for e in events {
        let click = e.counts_as_click(count_bots);
        let gated = e.counts_as_gated(count_bots);
        if !click && !gated {
            continue;
        }
        let hour = e.event.at_ms.div_euclid(3_600_000) * 3_600_000;
        let r = rollups
            .entry((e.event.link_id, hour, e.region.as_str(), e.device_class))
            .or_default();
        let link = links.entry(e.event.link_id).or_default();
        if click {
            r.0 += 1;
            r.2 += e.event.latency_us as i64;
            *link += 1;
        } else {
            r.1 += 1;
        }
    }
    let rollups = rollups
        .into_iter()
        .map(
            |((link_id, hour, region, device), (clicks, gated, lat))| RollupDelta {
                link_id,
                bucket: DateTime::from_timestamp_millis(hour).unwrap_or_default(),
                region: region.to_string(),
                device_class: device.to_string(),
                clicks,
                gated,
                latency_us_sum: lat,
            },
        )
        .collect();
    (rollups, links.into_iter().collect())
}

/// The all-time rows the hourly deltas add to.
pub fn totals<'a>(hourly: impl IntoIterator<Item = &'a RollupDelta>) -> Vec<TotalDelta> {
    let mut sums: HashMap<(Uuid, &str, &str), RollupSums> = HashMap::new();
    for r in hourly {
        let s = sums
            .entry((r.link_id, r.region.as_str(), r.device_class.as_str()))
            .or_default();
        s.0 += r.clicks;
        s.1 += r.gated;
        s.2 += r.latency_us_sum;
    }
    sums.into_iter()
        .map(
            |((link_id, region, device), (clicks, gated, lat))| TotalDelta {
                link_id,
                region: region.to_string(),
                device_class: device.to_string(),
                clicks,
                gated,
                latency_us_sum: lat,
            },
        )
        .collect()
}

/// The daily rows (UTC days) the hourly deltas add clicks to (a day of gated visits alone
/// gets its row too, with 0 clicks, as the hourly rows do).
pub fn daily<'a>(hourly: impl IntoIterator<Item = &'a RollupDelta>) -> Vec<DailyDelta> {
    let mut sums: HashMap<(Uuid, chrono::NaiveDate, &str), i64> = HashMap::new();
    for r in hourly {
        *sums
            .entry((r.link_id, r.bucket.date_naive(), r.region.as_str()))
            .or_default() += r.clicks;
    }
    sums.into_iter()
        .map(|((link_id, day, region), clicks)| DailyDelta {
            link_id,
            day,
            region: region.to_string(),
            clicks,
        })
        .collect()
}

/// What [`apply`] committed.
#[derive(Debug, Default)]
pub struct Applied {
    /// The entries to acknowledge (empty when there was nothing to read).
    pub ids: Vec<StreamId>,
    /// Clicks they carried (valid or dead-lettered).
    pub clicks: usize,
    /// Clicks per entry, on average.
    pub clicks_per_entry: usize,
}

/// Reads a batch and commits its counts with the offset; returns what to acknowledge.
/// Split from [`step`] so a test can stop between the commit and the acknowledgement, as a
/// crash would.
pub async fn apply<L: ClickLog, S: ClickStore>(
    p: &Pipeline<L, S>,
    consumer: &mut Consumer,
) -> anyhow::Result<Applied> {
    let entries = consumer
        .read(p)
        .await
        .map_err(|e| anyhow!("reading the click stream: {e}"))?;
    if entries.is_empty() {
        return Ok(Applied::default());
    }
    // Entries older than the batch that are still pending were read by another aggregator
    // (one that lost the lock to this one without knowing yet: a PostgreSQL restart ends its
    // session silently). Committing this batch would move the offset past them, and they
    // would never be counted: count them first, in order, by re-reading every pending entry.
    // Any such read came before this batch's (Redis hands out new entries in order), so
    // asking after the read cannot miss one.
    let first = entries.iter().map(|e| e.id).min().unwrap_or_default();
    let oldest = p
        .stream
        .oldest_pending(GROUP)
        .await
        .map_err(|e| anyhow!("reading the oldest pending entry: {e}"))?;
    if oldest.is_some_and(|oldest| oldest < first) {
        consumer.reread();
        bail!("entries older than the batch are pending (another aggregator read them): re-reading them first");
    }
    let offset_name = consumer_name(GROUP, p.stream.shard());
    let offset = p
        .store
        .stream_offset(&offset_name)
        .await
        .map_err(|e| anyhow!("reading the aggregator offset: {e}"))?
        .unwrap_or_default();
    let parsed = parse_batch(p, &entries)
        .await
        .map_err(|e| anyhow!("dead-lettering: {e}"))?;
    let fresh: Vec<Enriched> = parsed
        .events
        .into_iter()
        .filter(|(id, _)| *id > offset)
        .map(|(_, e)| enrich(e, p.geo.as_deref()))
        .collect();
    let ids: Vec<StreamId> = entries.iter().map(|e| e.id).collect();
    let upto = ids.iter().copied().max().unwrap_or_default();
    tracing::debug!(
        batch.first = %ids.first().copied().unwrap_or_default(),
        batch.last = %upto,
        batch.size = ids.len(),
        batch.fresh = fresh.len(),
        offset = %offset,
        recovering = consumer.is_recovering(),
        "aggregating a batch"
    );
    if upto > offset {
        let (rollups, links) = aggregate(&fresh, p.config.count_bots);
        p.store
            .apply_aggregates(&offset_name, upto, &rollups, &links)
            .await
            .map_err(|e| anyhow!("committing counts: {e}"))?;
    }
    Ok(Applied {
        ids,
        clicks: parsed.clicks,
        clicks_per_entry: parsed.clicks_per_entry,
    })
}

pub async fn step<L: ClickLog, S: ClickStore>(
    p: &Pipeline<L, S>,
    consumer: &mut Consumer,
) -> anyhow::Result<StepOutcome> {
    let applied = apply(p, consumer).await?;
    if applied.ids.is_empty() {
        return Ok(StepOutcome::Empty);
    }
    acknowledge(
        p,
        consumer,
        &applied.ids,
        applied.clicks,
        applied.clicks_per_entry,
    )
    .await
}

/// The aggregator process: singleton lock, the step loop, stream trimming, heartbeat.
pub async fn run<L: ClickLog, S: ClickStore>(
    p: Pipeline<L, S>,
    instance: &str,
    migrate: bool,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    // systemd may count watchdog time from the start: ping through start-up too.
    p.spawn_watchdog(&shutdown);
    prepare(&p, migrate).await;
    // Ready before the lock: a standby aggregator waiting for another one's lock is a
    // healthy process, not a start-up that systemd should time out.
    systemd::notify(&[NotifyState::Ready]);
    while let Some(lock) = hold_singleton(&p, &shutdown, Process::Aggregator, || {
        p.store.try_lock_aggregator()
    })
    .await
    {
        tracing::info!(instance, "boltlink-aggregator ready");
        // A turn: until the process stops, or the lock turns out to be another's (its
        // session ended, and a standby took it: see `AggregatorSession`).
        let turn = Shutdown::new();
        let watch = async {
            loop {
                tokio::select! {
                    _ = shutdown.wait() => break,
                    _ = tokio::time::sleep(LOCK_CHECK) => if lock.lost_to_another() {
                        tracing::warn!(
                            "the aggregator lock's session had ended and another aggregator holds the lock now; back to standby"
                        );
                        break;
                    }
                }
            }
            turn.trigger();
        };
        tokio::join!(watch, hold_turn(&p, &turn));
        drop(lock);
        if shutdown.is_triggered() {
            break;
        }
    }
    systemd::notify(&[NotifyState::Stopping]);
    tracing::info!("boltlink-aggregator stopped");
    Ok(())
}

/// How often a holder looks whether its lock turned out to be another's.
const LOCK_CHECK: Duration = Duration::from_secs(1);

/// The aggregator's work while it holds the lock: steps and stream trimming until `turn` ends.
async fn hold_turn<L: ClickLog, S: ClickStore>(p: &Pipeline<L, S>, turn: &Shutdown) {
    let trimmer = spawn_periodic(turn, Duration::from_secs(5), {
        let p = p.clone();
        move || {
            let p = p.clone();
            async move {
                let Some(shards) = p.shards().await else {
                    return;
                };
                for shard in shards {
                    match p.stream.for_shard(shard).trim_consumed().await {
                        Ok(0) => {}
                        Ok(n) => tracing::debug!(
                            shard,
                            stream.trimmed = n,
                            "trimmed consumed click events"
                        ),
                        Err(e) => tracing::debug!(shard, error = %e, "stream trim skipped"),
                    }
                }
            }
        }
    });
    consume_until(p, Process::Aggregator, turn, |p, c| Box::pin(step(p, c))).await;
    trimmer.abort();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clicks::event::{ClickEvent, ClickKind};
    use chrono::Timelike;

    fn ev(link: Uuid, at_ms: i64, region: &str, kind: ClickKind, ua: &str) -> Enriched {
        enrich(
            ClickEvent {
                id: Uuid::now_v7(),
                link_id: link,
                owner_key_id: Uuid::nil(),
                at_ms,
                region: region.into(),
                user_agent: ua.into(),
                referer: String::new(),
                latency_us: 1000,
                kind,
                client_ip: None,
                rule_url: None,
            },
            None,
        )
    }

    const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";

    #[test]
    fn hourly_rows_fold_into_all_time_and_daily_rows() {
        let a = Uuid::now_v7();
        let day = 1_700_006_400_000 / 86_400_000 * 86_400_000; // a UTC midnight
        let events = vec![
            ev(a, day + 10, "US", ClickKind::Click, BROWSER),
            ev(a, day + 3_600_000, "US", ClickKind::Click, BROWSER),
            ev(a, day + 7_200_000, "DE", ClickKind::Click, BROWSER),
            ev(a, day + 86_400_000, "US", ClickKind::Click, BROWSER),
            ev(a, day + 2 * 86_400_000, "FR", ClickKind::Gated, BROWSER),
        ];
        let (hourly, links) = aggregate(&events, false);
        assert_eq!(hourly.len(), 5);
        assert_eq!(links, vec![(a, 4)]);
        let mut totals: Vec<(String, i64, i64, i64)> = totals(&hourly)
            .into_iter()
            .map(|t| (t.region, t.clicks, t.gated, t.latency_us_sum))
            .collect();
        totals.sort();
        assert_eq!(
            totals,
            vec![
                ("DE".to_string(), 1, 0, 1000),
                ("FR".to_string(), 0, 1, 0),
                ("US".to_string(), 3, 0, 3000),
            ]
        );
        let first = DateTime::from_timestamp_millis(day)
            .expect("day")
            .date_naive();
        let mut daily: Vec<(i64, String, i64)> = daily(&hourly)
            .into_iter()
            .map(|d| ((d.day - first).num_days(), d.region, d.clicks))
            .collect();
        daily.sort();
        assert_eq!(
            daily,
            vec![
                (0, "DE".to_string(), 1),
                (0, "US".to_string(), 2),
                (1, "US".to_string(), 1),
                (2, "FR".to_string(), 0),
            ],
            "a day of gated visits alone keeps its row, with 0 clicks"
        );
    }

    #[test]
    fn a_link_with_gated_visits_only_is_listed_with_no_clicks() {
        let a = Uuid::now_v7();
        let (_, links) = aggregate(&[ev(a, 0, "US", ClickKind::Gated, BROWSER)], false);
        assert_eq!(links, vec![(a, 0)]);
    }

    #[test]
    fn a_batch_sums_into_hourly_rollups_and_link_counts() {
        let a = Uuid::now_v7();
        let b = Uuid::now_v7();
        let h = 1_700_000_000_000 / 3_600_000 * 3_600_000;
        let events = vec![
            ev(a, h + 10, "US", ClickKind::Click, BROWSER),
            ev(a, h + 20, "US", ClickKind::Click, BROWSER),
            ev(a, h + 3_600_000, "US", ClickKind::Click, BROWSER),
            ev(a, h + 30, "US", ClickKind::Gated, BROWSER),
            ev(b, h, "DE", ClickKind::Click, BROWSER),
            ev(b, h, "DE", ClickKind::Click, "curl/8.0"),
        ];
        let (rollups, links) = aggregate(&events, false);
        let links: HashMap<Uuid, i64> = links.into_iter().collect();
        assert_eq!(links[&a], 3);
        assert_eq!(links[&b], 1, "the bot click does not count by default");
        let first_hour = rollups
            .iter()
            .find(|r| r.link_id == a && r.bucket.timestamp_millis() == h)
            .expect("row");
        assert_eq!(
            (
                first_hour.clicks,
                first_hour.gated,
                first_hour.latency_us_sum
            ),
            (2, 1, 2000)
        );
        assert_eq!(first_hour.device_class, "desktop");
        assert_eq!(first_hour.bucket.minute(), 0);
        assert_eq!(rollups.iter().map(|r| r.clicks).sum::<i64>(), 4);
        let (_, with_bots) = aggregate(&events, true);
        assert_eq!(with_bots.iter().map(|(_, n)| n).sum::<i64>(), 5);
    }
}

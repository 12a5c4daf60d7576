//! Writes of the click pipeline: raw events (idempotent by event id), rollups and link
//! counters applied together with the consumer's stream offset (exactly-once), retention.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Store, StoreError, StoreResult};
use crate::clicks::aggregator::RollupDelta;
use crate::clicks::enrich::Enriched;
use crate::clicks::offset::StreamId;
use crate::clicks::ports::ClickStore;

/// Holds a session-level advisory lock for as long as it lives (one aggregator at a time).
pub struct SingletonLock {
    _conn: sqlx::pool::PoolConnection<sqlx::Postgres>,
}

/// Key of the aggregator's advisory lock (`pg_advisory_lock` takes a bigint).
const AGGREGATOR_LOCK: i64 = 0x0042_6f6c_7441_6767; // "BoltAgg"

impl ClickStore for Store {
    type Error = StoreError;
    type AggregatorLock = SingletonLock;

    async fn migrate(&self) -> StoreResult<()> {
        Store::migrate(self).await
    }

    /// Inserts enriched events; a redelivered event (same id) is skipped. Returns rows added.
    async fn insert_click_events(&self, events: &[Enriched]) -> StoreResult<u64> {
        if events.is_empty() {
            return Ok(0);
        }
        let n = events.len();
        let mut ids = Vec::with_capacity(n);
        let mut ats = Vec::with_capacity(n);
        let mut links = Vec::with_capacity(n);
        let mut owners = Vec::with_capacity(n);
        let mut regions = Vec::with_capacity(n);
        let mut devices = Vec::with_capacity(n);
        let mut browsers = Vec::with_capacity(n);
        let mut oses = Vec::with_capacity(n);
        let mut referrers: Vec<Option<&str>> = Vec::with_capacity(n);
        let mut bots = Vec::with_capacity(n);
        let mut kinds = Vec::with_capacity(n);
        let mut latencies = Vec::with_capacity(n);
        for e in events {
            ids.push(e.event.id);
            ats.push(DateTime::from_timestamp_millis(e.event.at_ms).unwrap_or_default());
            links.push(e.event.link_id);
            owners.push(e.event.owner_key_id);
            regions.push(e.region.as_str());
            devices.push(e.device_class);
            browsers.push(e.browser.as_str());
            oses.push(e.os.as_str());
            referrers.push(e.referrer_host.as_deref());
            bots.push(e.is_bot);
            kinds.push(e.event.kind.as_str());
            latencies.push(e.event.latency_us.min(i32::MAX as u32) as i32);
        }
        let result = sqlx::query!(
            "INSERT INTO click_events (id, at, link_id, owner_key_id, region, device_class, browser, os, \
             referrer_host, is_bot, kind, latency_us) \
             SELECT * FROM UNNEST($1::uuid[], $2::timestamptz[], $3::uuid[], $4::uuid[], $5::text[], $6::text[], \
             $7::text[], $8::text[], $9::text[], $10::bool[], $11::text[], $12::int4[]) \
             ON CONFLICT (id) DO NOTHING",
            &ids,
            &ats,
            &links,
            &owners,
            // sqlx's compile-time check knows only `String` for text[]; the casts name the
            // borrowed form it encodes just the same, without copying every string.
            &regions[..] as &[&str],
            &devices[..] as &[&str],
            &browsers[..] as &[&str],
            &oses[..] as &[&str],
            &referrers[..] as &[Option<&str>],
            &bots,
            &kinds[..] as &[&str],
            &latencies,
        )
        .execute(self.pool())
        .await?;
        Ok(result.rows_affected())
    }

    /// The last stream entry whose effects `consumer` has committed.
    async fn stream_offset(&self, consumer: &str) -> StoreResult<Option<StreamId>> {
        let row = sqlx::query!(
            "SELECT last_ms, last_seq FROM stream_offsets WHERE consumer = $1",
            consumer,
        )
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|row| StreamId {
            ms: row.last_ms as u64,
            seq: row.last_seq as u64,
        }))
    }

    /// In ONE transaction: adds `rollups` (rows of deleted links are skipped), adds
    /// `link_clicks` to `links.clicks`, and moves `consumer`'s offset to `upto`. Either all of
    /// it is committed or none, which is what makes a recount after a crash impossible.
    async fn apply_aggregates(
        &self,
        consumer: &str,
        upto: StreamId,
        rollups: &[RollupDelta],
        link_clicks: &[(Uuid, i64)],
    ) -> StoreResult<()> {
        let mut tx = self.pool().begin().await?;
        if !rollups.is_empty() {
            let link_ids: Vec<Uuid> = rollups.iter().map(|r| r.link_id).collect();
            let buckets: Vec<DateTime<Utc>> = rollups.iter().map(|r| r.bucket).collect();
            let regions: Vec<String> = rollups.iter().map(|r| r.region.clone()).collect();
            let devices: Vec<String> = rollups.iter().map(|r| r.device_class.clone()).collect();
            let clicks: Vec<i64> = rollups.iter().map(|r| r.clicks).collect();
            let gated: Vec<i64> = rollups.iter().map(|r| r.gated).collect();
            let latency: Vec<i64> = rollups.iter().map(|r| r.latency_us_sum).collect();
            sqlx::query!(
                "INSERT INTO click_rollups_hourly (link_id, owner_key_id, bucket, region, device_class, clicks, gated, \
                 latency_us_sum) \
                 SELECT u.link_id, l.owner_key_id, u.bucket, u.region, u.device_class, u.clicks, u.gated, u.lat \
                 FROM UNNEST($1::uuid[], $2::timestamptz[], $3::text[], $4::text[], $5::int8[], $6::int8[], $7::int8[]) \
                   AS u(link_id, bucket, region, device_class, clicks, gated, lat) \
                 JOIN links l ON l.id = u.link_id \
                 ON CONFLICT (link_id, bucket, region, device_class) DO UPDATE SET \
                   clicks = click_rollups_hourly.clicks + EXCLUDED.clicks, \
                   gated = click_rollups_hourly.gated + EXCLUDED.gated, \
                   latency_us_sum = click_rollups_hourly.latency_us_sum + EXCLUDED.latency_us_sum, \
                   updated_at = now()",
                &link_ids,
                &buckets,
                &regions,
                &devices,
                &clicks,
                &gated,
                &latency,
            )
            .execute(&mut *tx)
            .await?;
        }
        if !link_clicks.is_empty() {
            let ids: Vec<Uuid> = link_clicks.iter().map(|(id, _)| *id).collect();
            let deltas: Vec<i64> = link_clicks.iter().map(|(_, d)| *d).collect();
            sqlx::query!(
                "UPDATE links SET clicks = links.clicks + u.delta FROM UNNEST($1::uuid[], $2::int8[]) AS u(id, delta) \
                 WHERE links.id = u.id",
                &ids,
                &deltas,
            )
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query!(
            "INSERT INTO stream_offsets (consumer, last_ms, last_seq) VALUES ($1, $2, $3) \
             ON CONFLICT (consumer) DO UPDATE SET last_ms = EXCLUDED.last_ms, last_seq = EXCLUDED.last_seq, \
             updated_at = now() \
             WHERE (stream_offsets.last_ms, stream_offsets.last_seq) < (EXCLUDED.last_ms, EXCLUDED.last_seq)",
            consumer,
            upto.ms as i64,
            upto.seq as i64,
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes up to `batch` raw events older than `before`; returns how many went.
    /// Retention calls it repeatedly: short transactions, never one huge DELETE.
    async fn delete_click_events_before(
        &self,
        before: DateTime<Utc>,
        batch: i64,
    ) -> StoreResult<u64> {
        let result = sqlx::query!(
            "DELETE FROM click_events WHERE id IN (SELECT id FROM click_events WHERE at < $1 LIMIT $2)",
            before,
            batch,
        )
        .execute(self.pool())
        .await?;
        Ok(result.rows_affected())
    }

    /// Takes the aggregator's singleton lock if no other aggregator holds it (`None` then).
    /// The lock lives as long as the returned guard's connection.
    async fn try_lock_aggregator(&self) -> StoreResult<Option<SingletonLock>> {
        let mut conn = self.pool().acquire().await?;
        let got = sqlx::query_scalar!(
            r#"SELECT pg_try_advisory_lock($1) AS "locked!""#,
            AGGREGATOR_LOCK,
        )
        .fetch_one(&mut *conn)
        .await?;
        Ok(got.then_some(SingletonLock { _conn: conn }))
    }
}

impl Store {
    /// Raw events stored, for tests and benchmarks.
    pub async fn count_click_events(&self) -> StoreResult<i64> {
        Ok(
            sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM click_events"#)
                .fetch_one(self.pool())
                .await?,
        )
    }
}

//! Writes of the click pipeline: raw events (idempotent by event id), rollups and link
//! counters applied together with the consumer's stream offset (exactly-once), retention.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Store, StoreError, StoreResult};
use crate::clicks::aggregator::{self, RollupDelta};
use crate::clicks::enrich::Enriched;
use crate::clicks::offset::StreamId;
use crate::clicks::ports::{ClickStore, HeldLock};

/// A session-level advisory lock (one aggregator, one webhook sender at a time), held by a
/// connection kept out of the pool for as long as it lives and closed when dropped: handed
/// back to the pool, it would keep the lock.
pub struct SingletonLock(Option<sqlx::pool::PoolConnection<sqlx::Postgres>>);

impl Drop for SingletonLock {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            drop(conn.detach());
        }
    }
}

impl SingletonLock {
    /// Whether the lock's session still answers (within 2 s). A session ends without a word
    /// when PostgreSQL restarts or the connection breaks, and the lock with it: another
    /// process may hold it by now.
    pub async fn alive(&mut self) -> bool {
        let Some(conn) = self.0.as_mut() else {
            return false;
        };
        tokio::time::timeout(Duration::from_secs(2), sqlx::Connection::ping(&mut **conn))
            .await
            .is_ok_and(|ping| ping.is_ok())
    }
}

/// The session holding the aggregator's advisory lock, kept in the [`Store`] because the
/// aggregator's commits run on it: the lock is only as good as its session, and a session
/// ends without a word when PostgreSQL restarts (or a connection breaks). A commit on the
/// lock's own session cannot outlive the lock, so two aggregators never both count, whatever
/// happened in between (a standby takes the lock as soon as the session is gone).
#[derive(Default)]
pub(super) enum AggregatorSession {
    /// This store never took the lock.
    #[default]
    None,
    Held(SingletonLock),
    /// It had the lock, and the session ended: whatever it read since may have been counted
    /// by another aggregator.
    Lost,
    /// Lost, and another aggregator holds the lock now: this one stands by
    /// ([`HeldLock::lost_to_another`]).
    Elsewhere,
}

pub(super) type SharedAggregatorSession = std::sync::Arc<tokio::sync::Mutex<AggregatorSession>>;

/// The aggregator's singleton lock, for as long as it lives.
pub struct AggregatorLock {
    session: SharedAggregatorSession,
}

impl HeldLock for AggregatorLock {
    fn lost_to_another(&self) -> bool {
        // Busy: a commit is running on the session, so it is not known to be elsewhere.
        self.session
            .try_lock()
            .is_ok_and(|session| matches!(*session, AggregatorSession::Elsewhere))
    }
}

impl Drop for AggregatorLock {
    fn drop(&mut self) {
        if let Ok(mut session) = self.session.try_lock() {
            *session = AggregatorSession::None;
        }
    }
}

/// Key of the aggregator's advisory lock (`pg_advisory_lock` takes a bigint).
const AGGREGATOR_LOCK: i64 = 0x0042_6f6c_7441_6767; // "BoltAgg"

impl ClickStore for Store {
    type Error = StoreError;
    type AggregatorLock = AggregatorLock;

    async fn migrate(&self) -> StoreResult<()> {
        Store::migrate(self).await
    }

    /// Inserts enriched events; a redelivered event (same id) is skipped. Returns rows added.
    ///
    /// Binary `COPY` first: the cheapest way into PostgreSQL, and nearly always all of it.
    /// `COPY` cannot skip a row, so when an event is already stored (a batch redelivered after
    /// a crash between its write and its acknowledgement) it fails as a whole on the primary
    /// key, nothing of it is kept, and the batch goes again through
    /// `INSERT ... ON CONFLICT DO NOTHING`.
    async fn insert_click_events(&self, events: &[Enriched]) -> StoreResult<u64> {
        if events.is_empty() {
            return Ok(0);
        }
        let mut conn = self.pool().acquire().await?;
        let mut copy = conn
            .copy_in_raw(
                "COPY click_events (id, at, link_id, owner_key_id, region, device_class, browser, os, \
                 referrer_host, is_bot, kind, latency_us, rule_url) FROM STDIN (FORMAT binary)",
            )
            .await?;
        copy.send(copy_rows(events)).await?;
        match copy.finish().await {
            Ok(n) => Ok(n),
            Err(e) if StoreError::is_unique_violation(&e).is_some() => {
                drop(conn);
                self.insert_click_events_skipping_stored(events).await
            }
            Err(e) => Err(e.into()),
        }
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

    /// In ONE transaction: adds `link_clicks` to `links.clicks`, `rollups` to the hourly rows
    /// and their sums to the all-time and daily rows (rows of links deleted meanwhile are
    /// skipped), and moves `consumer`'s offset to `upto`. Either all of it is committed or
    /// none, which is what makes a recount after a crash impossible.
    ///
    /// Only the holder of the aggregator's lock commits, on the lock's own session
    /// ([`AggregatorLock`]). When that session has ended, the batch is refused and the lock
    /// taken again if it is free; either way the caller starts over from the stored offset
    /// (the consumer's recovery), since another aggregator may have counted meanwhile.
    async fn apply_aggregates(
        &self,
        consumer: &str,
        upto: StreamId,
        rollups: &[RollupDelta],
        link_clicks: &[(Uuid, i64)],
    ) -> StoreResult<()> {
        let mut session = self.aggregator.lock().await;
        match *session {
            AggregatorSession::Held(_) => {}
            // Not through the aggregator's start (tests, fixtures): take it now, waiting a
            // little for a lock just let go.
            AggregatorSession::None => {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
                loop {
                    if let Some(held) = self.take_aggregator_lock().await? {
                        *session = held;
                        break;
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return Err(StoreError::Conflict(
                            "another aggregator holds the aggregator lock".to_string(),
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            AggregatorSession::Lost | AggregatorSession::Elsewhere => {
                let why = match self.take_aggregator_lock().await? {
                    Some(held) => {
                        *session = held;
                        "the aggregator lock's session had ended; the lock is taken again, and the batch goes again from the stored offset"
                    }
                    None => {
                        *session = AggregatorSession::Elsewhere;
                        "the aggregator lock's session had ended and another aggregator holds the lock now"
                    }
                };
                return Err(StoreError::Conflict(why.to_string()));
            }
        }
        let gone = || StoreError::Conflict("the aggregator lock's session is gone".to_string());
        let AggregatorSession::Held(lock) = &mut *session else {
            return Err(gone());
        };
        let Some(conn) = lock.0.as_mut() else {
            return Err(gone());
        };
        let applied = apply_aggregates_on(conn, consumer, upto, rollups, link_clicks).await;
        if applied.is_err() && !lock.alive().await {
            tracing::warn!("the aggregator lock's PostgreSQL session has ended; the lock is lost");
            *session = AggregatorSession::Lost;
        }
        applied
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
    /// Its session stays in this store, where [`ClickStore::apply_aggregates`] commits on it,
    /// until the returned guard is dropped.
    async fn try_lock_aggregator(&self) -> StoreResult<Option<AggregatorLock>> {
        let mut session = self.aggregator.lock().await;
        if !matches!(*session, AggregatorSession::Held(_)) {
            match self.take_aggregator_lock().await? {
                Some(held) => *session = held,
                None => return Ok(None),
            }
        }
        Ok(Some(AggregatorLock {
            session: self.aggregator.clone(),
        }))
    }
}

impl Store {
    /// The aggregator's lock on a session of its own, if no other session holds it.
    async fn take_aggregator_lock(&self) -> StoreResult<Option<AggregatorSession>> {
        let lock = self.try_advisory_lock(AGGREGATOR_LOCK).await?;
        Ok(lock.map(AggregatorSession::Held))
    }

    /// A session-level advisory lock on `key`, held by a pooled connection kept out of the
    /// pool for as long as the returned lock lives; `None` if another session holds it.
    pub(super) async fn try_advisory_lock(&self, key: i64) -> StoreResult<Option<SingletonLock>> {
        let mut conn = self.pool().acquire().await?;
        let got = sqlx::query_scalar!(r#"SELECT pg_try_advisory_lock($1) AS "locked!""#, key)
            .fetch_one(&mut *conn)
            .await?;
        Ok(got.then_some(SingletonLock(Some(conn))))
    }
}

impl Store {
    /// The slow path of [`ClickStore::insert_click_events`]: one statement that skips the
    /// events already stored.
    async fn insert_click_events_skipping_stored(&self, events: &[Enriched]) -> StoreResult<u64> {
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
        let mut rule_urls: Vec<Option<&str>> = Vec::with_capacity(n);
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
            rule_urls.push(e.event.rule_url.as_deref());
        }
        let result = sqlx::query!(
            "INSERT INTO click_events (id, at, link_id, owner_key_id, region, device_class, browser, os, \
             referrer_host, is_bot, kind, latency_us, rule_url) \
             SELECT * FROM UNNEST($1::uuid[], $2::timestamptz[], $3::uuid[], $4::uuid[], $5::text[], $6::text[], \
             $7::text[], $8::text[], $9::text[], $10::bool[], $11::text[], $12::int4[], $13::text[]) \
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
            &rule_urls[..] as &[Option<&str>],
        )
        .execute(self.pool())
        .await?;
        Ok(result.rows_affected())
    }

    /// Raw events stored, for tests and benchmarks.
    pub async fn count_click_events(&self) -> StoreResult<i64> {
        Ok(
            sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM click_events"#)
                .fetch_one(self.pool())
                .await?,
        )
    }
}

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC).
const PG_EPOCH_US: i64 = 946_684_800_000_000;

/// `events` as the rows of a binary `COPY` into `click_events` (header, one tuple per event in
/// the statement's column order, trailer). The layout is PostgreSQL's documented one: per
/// field a 32-bit length (-1 for NULL) and the type's binary send format.
fn copy_rows(events: &[Enriched]) -> Vec<u8> {
    fn text(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as i32).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    fn uuid(out: &mut Vec<u8>, id: &Uuid) {
        out.extend_from_slice(&16i32.to_be_bytes());
        out.extend_from_slice(id.as_bytes());
    }
    let mut out = Vec::with_capacity(19 + events.len() * 220 + 2);
    out.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    out.extend_from_slice(&0i32.to_be_bytes()); // flags
    out.extend_from_slice(&0i32.to_be_bytes()); // header extension
    for e in events {
        out.extend_from_slice(&13i16.to_be_bytes());
        uuid(&mut out, &e.event.id);
        out.extend_from_slice(&8i32.to_be_bytes());
        let at_us = e
            .event
            .at_ms
            .saturating_mul(1000)
            .saturating_sub(PG_EPOCH_US);
        out.extend_from_slice(&at_us.to_be_bytes());
        uuid(&mut out, &e.event.link_id);
        uuid(&mut out, &e.event.owner_key_id);
        text(&mut out, &e.region);
        text(&mut out, e.device_class);
        text(&mut out, &e.browser);
        text(&mut out, &e.os);
        match &e.referrer_host {
            Some(host) => text(&mut out, host),
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        }
        out.extend_from_slice(&1i32.to_be_bytes());
        out.push(u8::from(e.is_bot));
        text(&mut out, e.event.kind.as_str());
        out.extend_from_slice(&4i32.to_be_bytes());
        out.extend_from_slice(&(e.event.latency_us.min(i32::MAX as u32) as i32).to_be_bytes());
        match &e.event.rule_url {
            Some(url) => text(&mut out, url),
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    out
}

/// [`ClickStore::apply_aggregates`]'s transaction, on the aggregator lock's session.
///
/// Two statements: the first updates (or, for links with gated visits only, share-locks)
/// the links and answers which still exist, with their owners; the second writes the
/// three rollups and the offset together. Every counter update can stay HOT (see the
/// migration `counted_click_costs`).
async fn apply_aggregates_on(
    conn: &mut sqlx::PgConnection,
    consumer: &str,
    upto: StreamId,
    rollups: &[RollupDelta],
    link_clicks: &[(Uuid, i64)],
) -> StoreResult<()> {
    let mut tx = sqlx::Connection::begin(conn).await?;
    let mut owners: HashMap<Uuid, Uuid> = HashMap::with_capacity(link_clicks.len());
    if !link_clicks.is_empty() {
        let ids: Vec<Uuid> = link_clicks.iter().map(|(id, _)| *id).collect();
        let deltas: Vec<i64> = link_clicks.iter().map(|(_, d)| *d).collect();
        let live = sqlx::query!(
            r#"WITH u AS (SELECT * FROM UNNEST($1::uuid[], $2::int8[]) AS u(id, delta)),
                   counted AS (
                       UPDATE links SET clicks = links.clicks + u.delta FROM u
                       WHERE links.id = u.id AND u.delta <> 0
                       RETURNING links.id, links.owner_key_id),
                   gated AS (
                       SELECT l.id, l.owner_key_id FROM links l JOIN u ON l.id = u.id
                       WHERE u.delta = 0 FOR KEY SHARE OF l)
                   SELECT id AS "id!", owner_key_id AS "owner_key_id!" FROM counted
                   UNION ALL SELECT id, owner_key_id FROM gated"#,
            &ids,
            &deltas,
        )
        .fetch_all(&mut *tx)
        .await?;
        owners.extend(live.into_iter().map(|r| (r.id, r.owner_key_id)));
    }
    let hourly: Vec<&RollupDelta> = rollups
        .iter()
        .filter(|r| owners.contains_key(&r.link_id))
        .collect();
    let owner = |link: &Uuid| owners[link];
    let h_links: Vec<Uuid> = hourly.iter().map(|r| r.link_id).collect();
    let h_owners: Vec<Uuid> = h_links.iter().map(owner).collect();
    let h_buckets: Vec<DateTime<Utc>> = hourly.iter().map(|r| r.bucket).collect();
    let h_regions: Vec<&str> = hourly.iter().map(|r| r.region.as_str()).collect();
    let h_devices: Vec<&str> = hourly.iter().map(|r| r.device_class.as_str()).collect();
    let h_clicks: Vec<i64> = hourly.iter().map(|r| r.clicks).collect();
    let h_gated: Vec<i64> = hourly.iter().map(|r| r.gated).collect();
    let h_latency: Vec<i64> = hourly.iter().map(|r| r.latency_us_sum).collect();
    let totals = aggregator::totals(hourly.iter().copied());
    let t_links: Vec<Uuid> = totals.iter().map(|r| r.link_id).collect();
    let t_owners: Vec<Uuid> = t_links.iter().map(owner).collect();
    let t_regions: Vec<&str> = totals.iter().map(|r| r.region.as_str()).collect();
    let t_devices: Vec<&str> = totals.iter().map(|r| r.device_class.as_str()).collect();
    let t_clicks: Vec<i64> = totals.iter().map(|r| r.clicks).collect();
    let t_gated: Vec<i64> = totals.iter().map(|r| r.gated).collect();
    let t_latency: Vec<i64> = totals.iter().map(|r| r.latency_us_sum).collect();
    let daily = aggregator::daily(hourly.iter().copied());
    let d_links: Vec<Uuid> = daily.iter().map(|r| r.link_id).collect();
    let d_owners: Vec<Uuid> = d_links.iter().map(owner).collect();
    let d_days: Vec<chrono::NaiveDate> = daily.iter().map(|r| r.day).collect();
    let d_regions: Vec<&str> = daily.iter().map(|r| r.region.as_str()).collect();
    let d_clicks: Vec<i64> = daily.iter().map(|r| r.clicks).collect();
    // One statement, one round trip: data-modifying CTEs all run, whatever the final
    // SELECT reads. Empty arrays insert nothing.
    sqlx::query!(
            "WITH hourly AS ( \
                 INSERT INTO click_rollups_hourly AS r (link_id, owner_key_id, bucket, region, device_class, clicks, \
                     gated, latency_us_sum) \
                 SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::timestamptz[], $4::text[], $5::text[], $6::int8[], \
                     $7::int8[], $8::int8[]) \
                 ON CONFLICT (link_id, bucket, region, device_class) DO UPDATE SET \
                     clicks = r.clicks + EXCLUDED.clicks, gated = r.gated + EXCLUDED.gated, \
                     latency_us_sum = r.latency_us_sum + EXCLUDED.latency_us_sum), \
             total AS ( \
                 INSERT INTO click_rollups_total AS r (link_id, owner_key_id, region, device_class, clicks, gated, \
                     latency_us_sum) \
                 SELECT * FROM UNNEST($9::uuid[], $10::uuid[], $11::text[], $12::text[], $13::int8[], $14::int8[], \
                     $15::int8[]) \
                 ON CONFLICT (link_id, region, device_class) DO UPDATE SET \
                     clicks = r.clicks + EXCLUDED.clicks, gated = r.gated + EXCLUDED.gated, \
                     latency_us_sum = r.latency_us_sum + EXCLUDED.latency_us_sum, updated_at = now()), \
             daily AS ( \
                 INSERT INTO click_rollups_daily AS r (link_id, owner_key_id, day, region, clicks) \
                 SELECT * FROM UNNEST($16::uuid[], $17::uuid[], $18::date[], $19::text[], $20::int8[]) \
                 ON CONFLICT (link_id, day, region) DO UPDATE SET clicks = r.clicks + EXCLUDED.clicks) \
             INSERT INTO stream_offsets (consumer, last_ms, last_seq) VALUES ($21, $22, $23) \
             ON CONFLICT (consumer) DO UPDATE SET last_ms = EXCLUDED.last_ms, last_seq = EXCLUDED.last_seq, \
             updated_at = now() \
             WHERE (stream_offsets.last_ms, stream_offsets.last_seq) < (EXCLUDED.last_ms, EXCLUDED.last_seq)",
            &h_links,
            &h_owners,
            &h_buckets,
            // sqlx's compile-time check knows only `String` for text[]; the casts name the
            // borrowed form it encodes just the same, without copying every string.
            &h_regions[..] as &[&str],
            &h_devices[..] as &[&str],
            &h_clicks,
            &h_gated,
            &h_latency,
            &t_links,
            &t_owners,
            &t_regions[..] as &[&str],
            &t_devices[..] as &[&str],
            &t_clicks,
            &t_gated,
            &t_latency,
            &d_links,
            &d_owners,
            &d_days,
            &d_regions[..] as &[&str],
            &d_clicks,
            consumer,
            upto.ms as i64,
            upto.seq as i64,
        )
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

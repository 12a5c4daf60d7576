//! Webhook delivery's tables (migration `20261206000003_webhook_delivery.sql`): the outbox
//! of events with their delivery state, one row per attempt, and the clicks staged per key
//! until they are batched. Link events are written by triggers in the transaction that
//! changes the link; everything else here is `boltlink-webhooks`' and the deliveries route's.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::pipeline::SingletonLock;
use super::{Store, StoreResult};

/// Key of `boltlink-webhooks`' advisory lock: one process delivers at a time.
const WEBHOOKS_LOCK: i64 = 0x0042_6f6c_7457_6862; // "BoltWhb"

/// A click of a key that has a webhook, ready to stage: what the click stream carries,
/// enriched. The link's code and destination are added from `links` when it is staged.
pub struct StagedClick {
    pub click_id: Uuid,
    pub link_id: Uuid,
    pub at: DateTime<Utc>,
    pub region: String,
    pub device: &'static str,
    pub referrer_host: Option<String>,
    pub bot: bool,
    /// The URL a redirect rule served; `None`: the link's own.
    pub rule_url: Option<String>,
}

/// An event due for delivery, with where and how to sign it (read at every attempt, so a
/// changed URL or rotated secret applies to retries at once).
#[derive(Debug, Clone)]
pub struct DueEvent {
    pub id: Uuid,
    pub api_key_id: Uuid,
    pub kind: String,
    pub created_at: DateTime<Utc>,
    pub data: serde_json::Value,
    pub attempts: i32,
    pub webhook_url: Option<String>,
    pub webhook_secret: Option<String>,
    pub key_revoked: bool,
}

/// What became of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    Delivered {
        status_code: u16,
    },
    /// Retried at `next_attempt_at`, or (`None`) given up: recorded as failed.
    Failed {
        status_code: Option<u16>,
        error: String,
        next_attempt_at: Option<DateTime<Utc>>,
    },
}

/// One row of `GET /api/settings/developer/webhook/deliveries`.
#[derive(Debug, Clone)]
pub struct DeliveryRecord {
    pub id: Uuid,
    pub kind: String,
    pub status: String,
    pub attempts: i32,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// Waiting and failed events, for the heartbeat.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeliveryBacklog {
    pub pending: i64,
    pub oldest_pending_at: Option<DateTime<Utc>>,
}

impl Store {
    /// Which of `keys` have a webhook URL now.
    pub async fn keys_with_webhooks(&self, keys: &[Uuid]) -> StoreResult<Vec<Uuid>> {
        Ok(sqlx::query_scalar!(
            "SELECT id FROM api_keys WHERE id = ANY($1) AND webhook_url IS NOT NULL",
            keys,
        )
        .fetch_all(self.pool())
        .await?)
    }

    /// Stages clicks in one statement, each once (a batch read again after a crash stages
    /// nothing twice), with the link's code and the URL served. Clicks of links deleted
    /// since are dropped (`link.deleted` was their last word). Returns how many were new.
    pub async fn stage_webhook_clicks(&self, clicks: &[StagedClick]) -> StoreResult<u64> {
        if clicks.is_empty() {
            return Ok(0);
        }
        let ids: Vec<Uuid> = clicks.iter().map(|c| c.click_id).collect();
        let links: Vec<Uuid> = clicks.iter().map(|c| c.link_id).collect();
        let ats: Vec<DateTime<Utc>> = clicks.iter().map(|c| c.at).collect();
        let regions: Vec<&str> = clicks.iter().map(|c| c.region.as_str()).collect();
        let devices: Vec<&str> = clicks.iter().map(|c| c.device).collect();
        let referrers: Vec<Option<&str>> =
            clicks.iter().map(|c| c.referrer_host.as_deref()).collect();
        let bots: Vec<bool> = clicks.iter().map(|c| c.bot).collect();
        let urls: Vec<Option<&str>> = clicks.iter().map(|c| c.rule_url.as_deref()).collect();
        let result = sqlx::query!(
            r#"INSERT INTO webhook_clicks (click_id, api_key_id, at, data)
               SELECT c.id, l.owner_key_id, c.at, jsonb_build_object(
                   'linkId', l.id, 'shortCode', l.short_code,
                   'at', to_char(c.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                   'region', c.region, 'device', c.device, 'referrerHost', c.referrer,
                   'bot', c.bot, 'url', COALESCE(c.url, l.original_url))
               FROM UNNEST($1::uuid[], $2::uuid[], $3::timestamptz[], $4::text[], $5::text[],
                           $6::text[], $7::bool[], $8::text[])
                    AS c(id, link_id, at, region, device, referrer, bot, url)
               JOIN links l ON l.id = c.link_id
               ON CONFLICT (click_id) DO NOTHING"#,
            &ids,
            &links,
            &ats,
            &regions[..] as &[&str],
            &devices[..] as &[&str],
            &referrers[..] as &[Option<&str>],
            &bots,
            &urls[..] as &[Option<&str>],
        )
        .execute(self.pool())
        .await?;
        Ok(result.rows_affected())
    }

    /// Turns staged clicks into `link.clicked` events, in one statement: per key the oldest
    /// `per_event` clicks become one event. Run once a second, this is the contract's "at
    /// most one delivery per key per second, up to 1000 clicks". Returns events made.
    pub async fn batch_staged_clicks(&self, per_event: i64) -> StoreResult<u64> {
        let result = sqlx::query!(
            r#"WITH ranked AS (
                   SELECT click_id, row_number() OVER (PARTITION BY api_key_id ORDER BY at, click_id) AS n
                   FROM webhook_clicks),
               picked AS (
                   DELETE FROM webhook_clicks w USING ranked r
                   WHERE w.click_id = r.click_id AND r.n <= $1
                   RETURNING w.api_key_id, w.at, w.click_id, w.data)
               INSERT INTO webhook_events (id, api_key_id, type, data)
               SELECT gen_random_uuid(), api_key_id, 'link.clicked',
                      jsonb_build_object('clicks', jsonb_agg(data ORDER BY at, click_id))
               FROM picked GROUP BY api_key_id"#,
            per_event,
        )
        .execute(self.pool())
        .await?;
        Ok(result.rows_affected())
    }

    /// Up to `limit` events due now, the oldest due one of each key, skipping `busy` keys
    /// (one delivery per key at a time: a slow receiver holds up its own key only).
    pub async fn due_webhook_events(
        &self,
        busy: &[Uuid],
        limit: i64,
    ) -> StoreResult<Vec<DueEvent>> {
        let rows = sqlx::query!(
            r#"SELECT e.id AS "id!", e.api_key_id AS "api_key_id!", e.type AS "kind!",
                      e.created_at AS "created_at!", e.data AS "data!", e.attempts AS "attempts!",
                      k.webhook_url, k.webhook_secret, k.revoked_at IS NOT NULL AS "key_revoked!"
               FROM (SELECT DISTINCT ON (api_key_id) id, api_key_id, type, created_at, data, attempts,
                            next_attempt_at
                     FROM webhook_events
                     WHERE status = 'pending' AND next_attempt_at <= now()
                       AND NOT (api_key_id = ANY($1))
                     ORDER BY api_key_id, next_attempt_at, created_at, id) e
               JOIN api_keys k ON k.id = e.api_key_id
               ORDER BY e.next_attempt_at
               LIMIT $2"#,
            busy,
            limit,
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| DueEvent {
                id: r.id,
                api_key_id: r.api_key_id,
                kind: r.kind,
                created_at: r.created_at,
                data: r.data,
                attempts: r.attempts,
                webhook_url: r.webhook_url,
                webhook_secret: r.webhook_secret,
                key_revoked: r.key_revoked,
            })
            .collect())
    }

    /// Records attempt number `attempt` of `event` (begun at `at`, lasting `duration_ms`)
    /// and the event's new state, in one statement.
    pub async fn record_webhook_attempt(
        &self,
        event: Uuid,
        attempt: i32,
        at: DateTime<Utc>,
        duration_ms: i32,
        result: &AttemptResult,
    ) -> StoreResult<()> {
        let (status, code, error, next, delivered_at) = match result {
            AttemptResult::Delivered { status_code } => (
                "delivered",
                Some(*status_code as i32),
                None,
                None,
                Some(Utc::now()),
            ),
            AttemptResult::Failed {
                status_code,
                error,
                next_attempt_at,
            } => (
                if next_attempt_at.is_some() {
                    "pending"
                } else {
                    "failed"
                },
                status_code.map(i32::from),
                Some(error.as_str()),
                *next_attempt_at,
                None,
            ),
        };
        sqlx::query!(
            r#"WITH attempt AS (
                   INSERT INTO webhook_attempts (event_id, attempt, at, status_code, error, duration_ms)
                   VALUES ($1, $2, $3, $4, $5, $6)
                   ON CONFLICT (event_id, attempt) DO NOTHING)
               UPDATE webhook_events SET attempts = $2, last_status_code = $4, last_error = $5,
                   status = $7, next_attempt_at = COALESCE($8, next_attempt_at), delivered_at = $9,
                   finished_at = CASE WHEN $7 = 'pending' THEN NULL ELSE now() END
               WHERE id = $1"#,
            event,
            attempt,
            at,
            code,
            error,
            duration_ms,
            status,
            next,
            delivered_at,
        )
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// A key's events, newest first.
    pub async fn webhook_deliveries(
        &self,
        key: Uuid,
        limit: i64,
    ) -> StoreResult<Vec<DeliveryRecord>> {
        Ok(sqlx::query_as!(
            DeliveryRecord,
            r#"SELECT id, type AS kind, status, attempts, last_status_code, last_error,
                      CASE WHEN status = 'pending' THEN next_attempt_at END AS next_attempt_at,
                      delivered_at
               FROM webhook_events WHERE api_key_id = $1
               ORDER BY created_at DESC, id DESC LIMIT $2"#,
            key,
            limit,
        )
        .fetch_all(self.pool())
        .await?)
    }

    /// How many events wait for delivery, and since when.
    pub async fn webhook_backlog(&self) -> StoreResult<DeliveryBacklog> {
        let row = sqlx::query!(
            r#"SELECT count(*) AS "pending!", min(created_at) AS oldest
               FROM webhook_events WHERE status = 'pending'"#
        )
        .fetch_one(self.pool())
        .await?;
        Ok(DeliveryBacklog {
            pending: row.pending,
            oldest_pending_at: row.oldest,
        })
    }

    /// Deletes up to `limit` finished (delivered or failed) events older than `before`,
    /// with their attempts; how many.
    pub async fn delete_finished_webhook_events(
        &self,
        before: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<u64> {
        let result = sqlx::query!(
            "DELETE FROM webhook_events WHERE id IN (
                 SELECT id FROM webhook_events WHERE status <> 'pending' AND finished_at < $1 LIMIT $2)",
            before,
            limit,
        )
        .execute(self.pool())
        .await?;
        Ok(result.rows_affected())
    }

    /// `boltlink-webhooks`' singleton lock, if no other process holds it.
    pub async fn try_lock_webhooks(&self) -> StoreResult<Option<SingletonLock>> {
        self.try_advisory_lock(WEBHOOKS_LOCK).await
    }
}

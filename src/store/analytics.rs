//! Rollup queries behind the analytics routes. They read `click_rollups_hourly` only (never
//! raw click events), grouped coarsely, so a link with millions of clicks costs a few thousand
//! rows at most. Shaping the numbers into responses is `crate::analytics` (pure code).

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use super::{Scope, Store, StoreResult};

/// Which rollup rows to read.
#[derive(Debug, Clone, Copy)]
pub enum RollupFilter {
    Link(Uuid),
    Owner(Scope),
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RegionDeviceTotal {
    pub region: String,
    pub device_class: String,
    pub clicks: i64,
    pub gated: i64,
    pub latency_us_sum: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DailyRegionTotal {
    pub day: NaiveDate,
    pub region: String,
    pub clicks: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OwnerLinkCounts {
    pub total_links: i64,
    pub active_links: i64,
    pub total_clicks: i64,
}

/// `WHERE` clause and its binds for a filter: ($1, $2, $3) = (link id, owner id, admin).
fn filter_binds(filter: RollupFilter) -> (Option<Uuid>, Uuid, bool) {
    match filter {
        RollupFilter::Link(id) => (Some(id), Uuid::nil(), true),
        RollupFilter::Owner(scope) => (None, scope.key_id, scope.admin),
    }
}

const FILTER_SQL: &str = "($1::uuid IS NULL OR link_id = $1) AND (owner_key_id = $2 OR $3)";

impl Store {
    /// All-time clicks, gated visits and latency per region and device class.
    pub async fn rollup_totals(&self, filter: RollupFilter) -> StoreResult<Vec<RegionDeviceTotal>> {
        let (link, owner, admin) = filter_binds(filter);
        let sql = format!(
            "SELECT region, device_class, sum(clicks)::bigint AS clicks, sum(gated)::bigint AS gated, \
             sum(latency_us_sum)::bigint AS latency_us_sum FROM click_rollups_hourly WHERE {FILTER_SQL} \
             GROUP BY region, device_class"
        );
        Ok(sqlx::query_as::<_, RegionDeviceTotal>(&sql)
            .bind(link)
            .bind(owner)
            .bind(admin)
            .fetch_all(self.pool())
            .await?)
    }

    /// Clicks per UTC day and region from `since` on.
    pub async fn rollup_daily(
        &self,
        filter: RollupFilter,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<DailyRegionTotal>> {
        let (link, owner, admin) = filter_binds(filter);
        let sql = format!(
            "SELECT (bucket AT TIME ZONE 'UTC')::date AS day, region, sum(clicks)::bigint AS clicks \
             FROM click_rollups_hourly WHERE {FILTER_SQL} AND bucket >= $4 GROUP BY 1, 2 ORDER BY 1, 2"
        );
        Ok(sqlx::query_as::<_, DailyRegionTotal>(&sql)
            .bind(link)
            .bind(owner)
            .bind(admin)
            .bind(since)
            .fetch_all(self.pool())
            .await?)
    }

    /// Number of distinct links with clicks in `[from, to)`.
    pub async fn links_clicked_between(
        &self,
        scope: Scope,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<i64> {
        Ok(sqlx::query_scalar(
            "SELECT count(DISTINCT link_id) FROM click_rollups_hourly \
             WHERE (owner_key_id = $1 OR $2) AND bucket >= $3 AND bucket < $4 AND clicks > 0",
        )
        .bind(scope.key_id)
        .bind(scope.admin)
        .bind(from)
        .bind(to)
        .fetch_one(self.pool())
        .await?)
    }

    /// Totals over the caller's links: all links, live links (not expired), clicks.
    pub async fn owner_link_counts(&self, scope: Scope) -> StoreResult<OwnerLinkCounts> {
        Ok(sqlx::query_as::<_, OwnerLinkCounts>(
            "SELECT count(*) AS total_links, \
             count(*) FILTER (WHERE NOT is_expiring OR expires_at > now()) AS active_links, \
             COALESCE(sum(clicks), 0)::bigint AS total_clicks \
             FROM links WHERE (owner_key_id = $1 OR $2)",
        )
        .bind(scope.key_id)
        .bind(scope.admin)
        .fetch_one(self.pool())
        .await?)
    }

    /// When the aggregator last touched any of the caller's rollups.
    pub async fn rollups_last_updated(&self, scope: Scope) -> StoreResult<Option<DateTime<Utc>>> {
        Ok(sqlx::query_scalar(
            "SELECT max(updated_at) FROM click_rollups_hourly WHERE (owner_key_id = $1 OR $2)",
        )
        .bind(scope.key_id)
        .bind(scope.admin)
        .fetch_one(self.pool())
        .await?)
    }
}

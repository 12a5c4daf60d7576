//! Rollup queries behind the analytics routes. They read the all-time and daily rollups
//! (`click_rollups_total`, `click_rollups_daily`, folded from the hourly ones in the same
//! transaction), never raw click events, so a link with millions of clicks costs a few hundred
//! rows. Shaping the numbers into responses is `crate::analytics` (pure code).

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

/// The `WHERE` condition of a filter and the one value it binds as `$1`. Each filter is its
/// own SQL text (no `$1 IS NULL OR ...`), so every prepared statement gets a plan that uses
/// its index instead of a generic plan that scans.
enum Cond {
    Link(Uuid),
    Scope(Scope),
}

impl Cond {
    fn of(filter: RollupFilter) -> Self {
        match filter {
            RollupFilter::Link(id) => Cond::Link(id),
            RollupFilter::Owner(scope) => Cond::Scope(scope),
        }
    }

    fn sql(&self) -> String {
        match self {
            Cond::Link(_) => "link_id = $1".to_string(),
            Cond::Scope(scope) => scope.owner_filter("owner_key_id"),
        }
    }

    fn bind(&self) -> Uuid {
        match self {
            Cond::Link(id) => *id,
            Cond::Scope(scope) => scope.key_id,
        }
    }
}

impl Store {
    /// All-time clicks, gated visits and latency per region and device class
    /// (`click_rollups_total`: at most regions x device classes rows per link).
    pub async fn rollup_totals(&self, filter: RollupFilter) -> StoreResult<Vec<RegionDeviceTotal>> {
        let cond = Cond::of(filter);
        let sql = format!(
            "SELECT region, device_class, sum(clicks)::bigint AS clicks, sum(gated)::bigint AS gated, \
             sum(latency_us_sum)::bigint AS latency_us_sum FROM click_rollups_total WHERE {} \
             GROUP BY region, device_class",
            cond.sql()
        );
        Ok(sqlx::query_as::<_, RegionDeviceTotal>(&sql)
            .bind(cond.bind())
            .fetch_all(self.pool())
            .await?)
    }

    /// Clicks per UTC day and region from `since` on (`click_rollups_daily`).
    pub async fn rollup_daily(
        &self,
        filter: RollupFilter,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<DailyRegionTotal>> {
        let cond = Cond::of(filter);
        let sql = format!(
            "SELECT day, region, sum(clicks)::bigint AS clicks FROM click_rollups_daily \
             WHERE {} AND day >= $2 GROUP BY 1, 2 ORDER BY 1, 2",
            cond.sql()
        );
        Ok(sqlx::query_as::<_, DailyRegionTotal>(&sql)
            .bind(cond.bind())
            .bind(since.date_naive())
            .fetch_all(self.pool())
            .await?)
    }

    /// Number of distinct links with clicks on the UTC days `[from, to)`.
    pub async fn links_clicked_between(
        &self,
        scope: Scope,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<i64> {
        let cond = Cond::Scope(scope);
        let sql = format!(
            "SELECT count(DISTINCT link_id) FROM click_rollups_daily \
             WHERE {} AND day >= $2 AND day < $3 AND clicks > 0",
            cond.sql()
        );
        Ok(sqlx::query_scalar(&sql)
            .bind(cond.bind())
            .bind(from.date_naive())
            .bind(to.date_naive())
            .fetch_one(self.pool())
            .await?)
    }

    /// Totals over the caller's links: all links, live links (not expired), clicks.
    pub async fn owner_link_counts(&self, scope: Scope) -> StoreResult<OwnerLinkCounts> {
        let cond = Cond::Scope(scope);
        let sql = format!(
            "SELECT count(*) AS total_links, \
             count(*) FILTER (WHERE NOT is_expiring OR expires_at > now()) AS active_links, \
             COALESCE(sum(clicks), 0)::bigint AS total_clicks \
             FROM links WHERE {}",
            cond.sql()
        );
        Ok(sqlx::query_as::<_, OwnerLinkCounts>(&sql)
            .bind(cond.bind())
            .fetch_one(self.pool())
            .await?)
    }

    /// When the aggregator last touched any of the caller's rollups.
    pub async fn rollups_last_updated(&self, scope: Scope) -> StoreResult<Option<DateTime<Utc>>> {
        let cond = Cond::Scope(scope);
        let sql = format!(
            "SELECT max(updated_at) FROM click_rollups_total WHERE {}",
            cond.sql()
        );
        Ok(sqlx::query_scalar(&sql)
            .bind(cond.bind())
            .fetch_one(self.pool())
            .await?)
    }
}

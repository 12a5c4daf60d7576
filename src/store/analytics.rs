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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionDeviceTotal {
    pub region: String,
    pub device_class: String,
    pub clicks: i64,
    pub gated: i64,
    pub latency_us_sum: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyRegionTotal {
    pub day: NaiveDate,
    pub region: String,
    pub clicks: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerLinkCounts {
    pub total_links: i64,
    pub active_links: i64,
    pub total_clicks: i64,
}

/// One compile-checked query per owner case: `sqlx::$macro!` over `$head`, the condition and
/// `$tail`, with the key id as `$1` and the `$arg`s from `$2` on; `$run` gets the query as `$q`.
/// Each case is its own SQL text (no `$1 IS NULL OR ...`), so every prepared statement gets a
/// plan that uses its index instead of a generic plan that scans. The admin case still names
/// `$1`, so the parameters after it are numbered the same in both.
macro_rules! query_by_scope {
    (
        $scope:expr,
        $macro:ident!($($out:ident,)? $head:literal, $tail:literal $(, $arg:expr)* $(,)?),
        |$q:ident| $run:expr $(,)?
    ) => {{
        let scope: Scope = $scope;
        if scope.admin {
            let $q = sqlx::$macro!($($out,)? $head + "$1::uuid IS NOT NULL" + $tail, scope.key_id $(, $arg)*);
            $run
        } else {
            let $q = sqlx::$macro!($($out,)? $head + "owner_key_id = $1" + $tail, scope.key_id $(, $arg)*);
            $run
        }
    }};
}

/// [`query_by_scope!`] with a third case for one link's rows (`link_id = $1`).
macro_rules! query_by_filter {
    (
        $filter:expr,
        $macro:ident!($($out:ident,)? $head:literal, $tail:literal $(, $arg:expr)* $(,)?),
        |$q:ident| $run:expr $(,)?
    ) => {
        match $filter {
            RollupFilter::Link(link_id) => {
                let $q = sqlx::$macro!($($out,)? $head + "link_id = $1" + $tail, link_id $(, $arg)*);
                $run
            }
            RollupFilter::Owner(scope) => query_by_scope!(
                scope,
                $macro!($($out,)? $head, $tail $(, $arg)*),
                |$q| $run
            ),
        }
    };
}

impl Store {
    /// All-time clicks, gated visits and latency per region and device class
    /// (`click_rollups_total`: at most regions x device classes rows per link).
    pub async fn rollup_totals(&self, filter: RollupFilter) -> StoreResult<Vec<RegionDeviceTotal>> {
        Ok(query_by_filter!(
            filter,
            query_as!(
                RegionDeviceTotal,
                r#"SELECT region, device_class, sum(clicks)::bigint AS "clicks!", sum(gated)::bigint AS "gated!",
                     sum(latency_us_sum)::bigint AS "latency_us_sum!" FROM click_rollups_total WHERE "#,
                " GROUP BY region, device_class",
            ),
            |query| query.fetch_all(self.pool()).await?,
        ))
    }

    /// Clicks per UTC day and region from `since` on (`click_rollups_daily`).
    pub async fn rollup_daily(
        &self,
        filter: RollupFilter,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<DailyRegionTotal>> {
        Ok(query_by_filter!(
            filter,
            query_as!(
                DailyRegionTotal,
                r#"SELECT day, region, sum(clicks)::bigint AS "clicks!" FROM click_rollups_daily WHERE "#,
                " AND day >= $2 GROUP BY 1, 2 ORDER BY 1, 2",
                since.date_naive(),
            ),
            |query| query.fetch_all(self.pool()).await?,
        ))
    }

    /// Number of distinct links with clicks on the UTC days `[from, to)`.
    pub async fn links_clicked_between(
        &self,
        scope: Scope,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<i64> {
        Ok(query_by_scope!(
            scope,
            query_scalar!(
                r#"SELECT count(DISTINCT link_id) AS "count!" FROM click_rollups_daily WHERE "#,
                " AND day >= $2 AND day < $3 AND clicks > 0",
                from.date_naive(),
                to.date_naive(),
            ),
            |query| query.fetch_one(self.pool()).await?,
        ))
    }

    /// Totals over the caller's links: all links, live links (not expired), clicks.
    pub async fn owner_link_counts(&self, scope: Scope) -> StoreResult<OwnerLinkCounts> {
        Ok(query_by_scope!(
            scope,
            query_as!(
                OwnerLinkCounts,
                r#"SELECT count(*) AS "total_links!",
                     count(*) FILTER (WHERE NOT is_expiring OR expires_at > now()) AS "active_links!",
                     COALESCE(sum(clicks), 0)::bigint AS "total_clicks!"
                   FROM links WHERE "#,
                "",
            ),
            |query| query.fetch_one(self.pool()).await?,
        ))
    }

    /// When the aggregator last touched any of the caller's rollups.
    pub async fn rollups_last_updated(&self, scope: Scope) -> StoreResult<Option<DateTime<Utc>>> {
        Ok(query_by_scope!(
            scope,
            query_scalar!("SELECT max(updated_at) FROM click_rollups_total WHERE ", ""),
            |query| query.fetch_one(self.pool()).await?,
        ))
    }
}

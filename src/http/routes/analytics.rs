//! Analytics routes: answered from the all-time and daily rollups (never raw click rows),
//! owner-scoped; each route's independent queries run concurrently, on the read replica when
//! one may serve the caller ([`crate::app::AppState::read_for`]).

use chrono::Utc;
use http::{Response, StatusCode};

use super::timestamp;
use crate::analytics::{
    daily_points, day_start, percent_change, summarize, top_regions, weekday_points,
};
use crate::app::App;
use crate::http::error::{json, ApiError, Body};
use crate::http::request::{authenticate, RequestCtx};
use crate::store::RollupFilter;

/// Days of history in a link's `points`.
const LINK_HISTORY_DAYS: i64 = 30;

pub async fn link(app: &App, ctx: &RequestCtx, code: &str) -> Result<Response<Body>, ApiError> {
    let caller = authenticate(app, ctx).await?;
    let scope = caller.scope();
    let now = Utc::now();
    let found = app
        .read_for(caller.key.id, |store| async move {
            let Some(link) = store.get_link_by_code(scope, code).await? else {
                return Ok(None);
            };
            let filter = RollupFilter::Link(link.id);
            let (totals, daily) = tokio::try_join!(
                store.rollup_totals(filter),
                store.rollup_daily(filter, day_start(now, LINK_HISTORY_DAYS - 1)),
            )?;
            Ok(Some((link, totals, daily)))
        })
        .await?;
    let (link, totals, daily) =
        found.ok_or_else(|| ApiError::NotFound("Link not found".to_string()))?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "summary": summarize(&totals, None),
            "points": daily_points(&daily, None, now.date_naive()),
            "topRegions": top_regions(&totals, 10),
            "shortCode": link.short_code,
            "originalUrl": link.original_url,
            "title": link.title,
            "favicon": link.favicon,
        }),
    ))
}

pub async fn global(app: &App, ctx: &RequestCtx) -> Result<Response<Body>, ApiError> {
    let caller = authenticate(app, ctx).await?;
    let scope = caller.scope();
    let now = Utc::now();
    let filter = RollupFilter::Owner(scope);
    let first_day = day_start(now, 6);
    let (totals, daily, counts, last_updated) = app
        .read_for(caller.key.id, |store| async move {
            tokio::try_join!(
                store.rollup_totals(filter),
                store.rollup_daily(filter, first_day),
                store.owner_link_counts(scope),
                store.rollups_last_updated(scope),
            )
        })
        .await?;
    let last_updated = last_updated.unwrap_or(now);
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "summary": summarize(&totals, Some(counts.total_links)),
            "points": daily_points(&daily, Some(first_day.date_naive()), now.date_naive()),
            "topRegions": top_regions(&totals, 5),
            "lastUpdated": timestamp(last_updated),
        }),
    ))
}

/// `trend.clicks`: percent change of clicks, last 7 days against the 7 before.
/// `trend.active`: the same for the number of links that received clicks.
pub async fn overview(app: &App, ctx: &RequestCtx) -> Result<Response<Body>, ApiError> {
    let caller = authenticate(app, ctx).await?;
    let scope = caller.scope();
    let now = Utc::now();
    let filter = RollupFilter::Owner(scope);
    let tomorrow = day_start(now, -1);
    let (daily, active_now, active_before, counts, totals) = app
        .read_for(caller.key.id, |store| async move {
            tokio::try_join!(
                store.rollup_daily(filter, day_start(now, 13)),
                store.links_clicked_between(scope, day_start(now, 6), tomorrow),
                store.links_clicked_between(scope, day_start(now, 13), day_start(now, 6)),
                store.owner_link_counts(scope),
                store.rollup_totals(filter),
            )
        })
        .await?;
    let this_week_start = day_start(now, 6).date_naive();
    let (this_week, last_week): (Vec<_>, Vec<_>) = daily
        .iter()
        .cloned()
        .partition(|d| d.day >= this_week_start);
    let clicks_now: i64 = this_week.iter().map(|d| d.clicks).sum();
    let clicks_before: i64 = last_week.iter().map(|d| d.clicks).sum();
    let summary = summarize(&totals, None);
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "totalClicks": counts.total_clicks,
            "activeLinks": counts.active_links,
            "topRegion": summary.top_region,
            "trend": {
                "clicks": percent_change(clicks_before, clicks_now),
                "active": percent_change(active_before, active_now),
            },
            "points": weekday_points(&this_week, now.date_naive()),
        }),
    ))
}

/// The OpenAPI operations of these routes, named by their entries in `routes!`.
pub mod doc {
    use crate::http::openapi::*;

    /// `GET /api/analytics/{code}`
    pub fn get_link_analytics() -> Operation {
        op(
            "getLinkAnalytics",
            "analytics",
            "Analytics of one of the caller's links",
        )
        .keyed()
        .parameter(code_param())
        .response(
            "200",
            respond("Analytics from rollups.")
                .content("application/json", content(schema("Analytics"), None)),
        )
        .response("404", shared("NotFound"))
        .build()
    }

    /// `GET /api/analytics/global`
    pub fn get_global_analytics() -> Operation {
        op(
            "getGlobalAnalytics",
            "analytics",
            "Analytics over all of the caller's links",
        )
        .keyed()
        .response(
            "200",
            respond("Analytics from rollups.")
                .content("application/json", content(schema("GlobalAnalytics"), None)),
        )
        .build()
    }

    /// `GET /api/stats/overview`
    pub fn get_stats_overview() -> Operation {
        op(
            "getStatsOverview",
            "analytics",
            "Dashboard overview for the last 7 days",
        )
        .keyed()
        .response(
            "200",
            respond("Overview from rollups.")
                .content("application/json", content(schema("StatsOverview"), None)),
        )
        .build()
    }
}

//! The routes, declared once (the `routes!` invocation below), and their handlers, one module
//! per area of the contract.

pub mod account;
pub mod analytics;
pub mod bulk;
pub mod campaigns;
pub mod links;
pub mod ops;
pub mod redirect;

use std::time::Instant;

use http::{Method, Response};

use super::error::{ApiError, Body};
use super::request::{read_body, RequestCtx};
use super::router::RouteSpec;
use super::PathParam;
use crate::app::App;

super::router::routes! {
    // One entry per path: `path => Route variant as "metric name"`, then per method the
    // function building its OpenAPI operation (`<area>::doc`) and the handler call. Dispatch,
    // `Allow`, metric names, reserved codes and the OpenAPI paths all come from here. The handler expressions may use `app` (&App),
    // `ctx` (RequestCtx), `param` (the path parameter, `code` or `id`), `body` (the request
    // body, read for POST and PATCH) and `started` (when the request arrived).
    |app, ctx, param, body, started|

    "/{code}" => Redirect as "redirect" {
        GET redirect::doc::get_redirect => redirect::redirect(app, ctx, &param, false, started).await,
        HEAD redirect::doc::head_redirect => redirect::redirect(app, ctx, &param, true, started).await,
    },
    "/api/{code}" => ApiRedirect as "redirect_api" {
        GET redirect::doc::get_api_redirect => redirect::redirect(app, ctx, &param, false, started).await,
        HEAD redirect::doc::head_api_redirect => redirect::redirect(app, ctx, &param, true, started).await,
    },
    "/api/verify/{code}" => Verify as "verify" {
        POST redirect::doc::verify_link => redirect::verify(app, ctx, &param, &body, started).await,
    },
    "/api/shorten" => Shorten as "shorten" {
        POST links::doc::shorten_link => links::shorten(app, ctx, &body).await,
    },
    "/api/links" => Links as "links_list" {
        GET links::doc::list_links => links::list(app, ctx).await,
    },
    "/api/links/{id}" => Link as "link" {
        GET links::doc::get_link => links::get(app, ctx, &param).await,
        PATCH links::doc::update_link => links::patch(app, ctx, &param, &body).await,
        DELETE links::doc::delete_link => links::delete(app, ctx, &param).await,
    },
    "/api/links/bulk" => LinksBulk as "links_bulk" {
        POST bulk::doc::bulk_create_links => bulk::import(app, ctx, &body).await,
    },
    "/api/links/export" => LinksExport as "links_export" {
        GET bulk::doc::export_links => bulk::export(app, ctx).await,
    },
    "/api/links/{id}/qr" => LinkQr as "link_qr" {
        GET links::doc::get_link_qr => links::qr(app, ctx, &param).await,
    },
    "/api/top-links" => TopLinks as "top_links" {
        GET links::doc::list_top_links => links::top(app, ctx).await,
    },
    "/api/rate-limit-status/{code}" => RateLimitStatus as "rate_limit_status" {
        GET redirect::doc::get_rate_limit_status => redirect::rate_limit_status(app, ctx, &param).await,
    },
    "/api/analytics/{code}" => LinkAnalytics as "analytics_link" {
        GET analytics::doc::get_link_analytics => analytics::link(app, ctx, &param).await,
    },
    "/api/analytics/global" => GlobalAnalytics as "analytics_global" {
        GET analytics::doc::get_global_analytics => analytics::global(app, ctx).await,
    },
    "/api/stats/overview" => StatsOverview as "stats_overview" {
        GET analytics::doc::get_stats_overview => analytics::overview(app, ctx).await,
    },
    "/api/campaigns" => Campaigns as "campaigns" {
        GET campaigns::doc::list_campaigns => campaigns::list(app, ctx).await,
        POST campaigns::doc::create_campaign => campaigns::create(app, ctx, &body).await,
    },
    "/api/campaigns/{id}" => Campaign as "campaign" {
        GET campaigns::doc::get_campaign => campaigns::get(app, ctx, &param).await,
        PATCH campaigns::doc::update_campaign => campaigns::patch(app, ctx, &param, &body).await,
        DELETE campaigns::doc::delete_campaign => campaigns::delete(app, ctx, &param).await,
    },
    "/api/campaigns/link" => CampaignLink as "campaign_link" {
        POST campaigns::doc::add_link_to_campaign => campaigns::assign_link(app, ctx, &body).await,
    },
    "/api/generate-key" => GenerateKey as "generate_key" {
        POST account::doc::generate_key => account::generate_key(app, ctx).await,
    },
    "/api/auth/me" => AuthMe as "auth_me" {
        GET account::doc::get_me => account::me(app, ctx).await,
    },
    "/api/settings/developer" => DeveloperSettings as "settings_developer" {
        GET account::doc::get_developer_settings => account::developer_settings(app, ctx).await,
    },
    "/api/settings/developer/webhook" => Webhook as "settings_webhook" {
        PATCH account::doc::update_webhook => account::set_webhook(app, ctx, &body).await,
    },
    "/api/settings/developer/webhook/rotate" => WebhookRotate as "settings_webhook_rotate" {
        POST account::doc::rotate_webhook_secret => account::rotate_webhook_secret(app, ctx).await,
    },
    "/api/settings/developer/webhook/deliveries" => WebhookDeliveries as "settings_webhook_deliveries" {
        GET account::doc::list_webhook_deliveries => account::webhook_deliveries(app, ctx).await,
    },
    "/api/metadata" => Metadata as "metadata" {
        POST account::doc::fetch_metadata => account::metadata(app, ctx, &body).await,
    },
    "/health" => Health as "health" {
        GET ops::doc::get_health => ops::health(app).await,
    },
    "/api/health" => ApiHealth as "health" {
        GET ops::doc::get_api_health => ops::health(app).await,
    },
    "/ready" => Ready as "ready" {
        GET ops::doc::get_ready => ops::ready(app).await,
    },
    "/api/ready" => ApiReady as "ready" {
        GET ops::doc::get_api_ready => ops::ready(app).await,
    },
    "/api/system/health" => SystemHealth as "system_health" {
        GET ops::doc::get_system_health => ops::system_health(app, ctx).await,
    },
    "/api/openapi.json" => OpenApi as "openapi" {
        GET ops::doc::get_open_api => Ok(ops::openapi()),
    },
    "/metrics" => Metrics as "metrics" {
        GET ops::doc::get_metrics => Ok(ops::metrics(app).await),
    },
}

/// Reads the body where the method takes one and calls the route's handler.
pub async fn dispatch<B>(
    app: &App,
    spec: &'static RouteSpec,
    ctx: RequestCtx,
    PathParam(param): PathParam,
    body: B,
    started: Instant,
) -> Result<Response<Body>, ApiError>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let method = spec.handler_method(&ctx.parts.method).clone();
    // Bodies are read only where the method takes one.
    let takes_body = matches!(method, Method::POST | Method::PATCH | Method::PUT);
    let bytes = if takes_body {
        read_body(
            &ctx.parts.headers,
            body,
            app.config.http.limits.body_timeout,
        )
        .await?
    } else {
        drop(body);
        bytes::Bytes::new()
    };
    let resp = call(spec.route, &method, app, &ctx, param, bytes, started).await?;
    // A key's change: with a read replica, its next reads stay on the primary until the
    // replica has replayed it (before the answer goes out, so no later read can miss it).
    if !method.is_safe() && resp.status().is_success() {
        if let Some(key_id) = ctx.caller.get() {
            app.wrote(*key_id).await;
        }
    }
    Ok(resp)
}

/// RFC 3339 UTC with milliseconds, as the contract's examples (`2026-11-23T08:00:00.000Z`).
pub fn timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Parses a path id; anything that is not a UUID cannot exist (404, not 400).
pub fn parse_id(param: &str, what: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(param).map_err(|_| ApiError::NotFound(format!("{what} not found")))
}

//! Handlers, one module per area of the contract.

pub mod account;
pub mod analytics;
pub mod campaigns;
pub mod links;
pub mod ops;
pub mod redirect;

use std::time::Instant;

use http::{Method, Response};

use super::error::{ApiError, Body};
use super::request::{read_body, RequestCtx};
use super::{PathParam, Route};
use crate::app::App;

pub async fn dispatch<B>(
    app: &App,
    route: Route,
    ctx: RequestCtx,
    PathParam(param): PathParam,
    body: B,
    started: Instant,
) -> Result<Response<Body>, ApiError>
where
    B: hyper::body::Body + Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let method = match ctx.parts.method.clone() {
        // HEAD is answered like GET (hyper drops the body); only the redirect tells them apart.
        Method::HEAD if !matches!(route, Route::Redirect | Route::ApiRedirect) => Method::GET,
        m => m,
    };
    // Bodies are read only where the route takes one.
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
    match (route, method) {
        (Route::Redirect | Route::ApiRedirect, m) => {
            redirect::redirect(app, &ctx, &param, m == Method::HEAD, started).await
        }
        (Route::Verify, _) => redirect::verify(app, &ctx, &param, &bytes, started).await,
        (Route::Shorten, _) => links::shorten(app, &ctx, &bytes).await,
        (Route::Links, _) => links::list(app, &ctx).await,
        (Route::Link, Method::GET) => links::get(app, &ctx, &param).await,
        (Route::Link, Method::PATCH) => links::patch(app, &ctx, &param, &bytes).await,
        (Route::Link, _) => links::delete(app, &ctx, &param).await,
        (Route::TopLinks, _) => links::top(app, &ctx).await,
        (Route::RateLimitStatus, _) => redirect::rate_limit_status(app, &ctx, &param).await,
        (Route::LinkAnalytics, _) => analytics::link(app, &ctx, &param).await,
        (Route::GlobalAnalytics, _) => analytics::global(app, &ctx).await,
        (Route::StatsOverview, _) => analytics::overview(app, &ctx).await,
        (Route::Campaigns, Method::GET) => campaigns::list(app, &ctx).await,
        (Route::Campaigns, _) => campaigns::create(app, &ctx, &bytes).await,
        (Route::Campaign, Method::GET) => campaigns::get(app, &ctx, &param).await,
        (Route::Campaign, Method::PATCH) => campaigns::patch(app, &ctx, &param, &bytes).await,
        (Route::Campaign, _) => campaigns::delete(app, &ctx, &param).await,
        (Route::CampaignLink, _) => campaigns::assign_link(app, &ctx, &bytes).await,
        (Route::GenerateKey, _) => account::generate_key(app, &ctx).await,
        (Route::AuthMe, _) => account::me(app, &ctx).await,
        (Route::DeveloperSettings, _) => account::developer_settings(app, &ctx).await,
        (Route::Webhook, _) => account::set_webhook(app, &ctx, &bytes).await,
        (Route::Metadata, _) => account::metadata(app, &ctx, &bytes).await,
        (Route::Health, _) => ops::health(app).await,
        (Route::Ready, _) => ops::ready(app).await,
        (Route::SystemHealth, _) => ops::system_health(app, &ctx).await,
        (Route::OpenApi, _) => Ok(ops::openapi()),
        (Route::Metrics, _) => Ok(ops::metrics(app).await),
    }
}

/// RFC 3339 UTC with milliseconds, as the contract's examples (`2026-11-23T08:00:00.000Z`).
pub fn timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Parses a path id; anything that is not a UUID cannot exist (404, not 400).
pub fn parse_id(param: &str, what: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(param).map_err(|_| ApiError::NotFound(format!("{what} not found")))
}

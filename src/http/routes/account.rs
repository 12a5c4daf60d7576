//! Keys, account, developer settings, and the on-demand metadata fetch.

use std::time::Duration;

use http::{Response, StatusCode};
use serde::Deserialize;

use super::timestamp;
use crate::app::App;
use crate::domain::{new_webhook_secret, ApiKeySecret, TargetUrl};
use crate::http::error::{json, rate_limit_headers, too_many, ApiError, Body};
use crate::http::request::{authenticate, parse_json, RequestCtx};
use crate::metadata::MetadataError;
use crate::store::NewApiKey;

/// The answer for a URL whose host is, or resolves to, a non-public address. It names no
/// address and no range, so it says nothing about how our resolver sees a name.
const REFUSED_ADDRESS: &str =
    "refusing to fetch this URL: its host is not a public Internet address";

pub async fn generate_key(app: &App, ctx: &RequestCtx) -> Result<Response<Body>, ApiError> {
    let decision = app
        .shared_limiter
        .hit(
            "genkey",
            &ctx.client_ip.to_string(),
            app.config.rate_limits.generate_key_per_hour,
            Duration::from_secs(3600),
            ctx.now_ms,
        )
        .await;
    if !decision.allowed {
        return Err(too_many(
            "Too many API keys generated from this IP, please try again later",
            decision,
        ));
    }
    let secret = ApiKeySecret::generate();
    let limits = &app.config.rate_limits;
    app.store
        .create_api_key(NewApiKey {
            hash: secret.hash(),
            prefix: secret.prefix(),
            name: None,
            email: None,
            is_admin: false,
            rate_limit_per_min: limits.key_per_min,
            rate_limit_per_hour: limits.key_per_hour,
        })
        .await?;
    let mut resp = json(
        StatusCode::OK,
        &serde_json::json!({ "apiKey": secret.expose() }),
    );
    rate_limit_headers(&mut resp, &decision, false);
    Ok(resp)
}

pub async fn me(app: &App, ctx: &RequestCtx) -> Result<Response<Body>, ApiError> {
    let caller = authenticate(app, ctx).await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "id": caller.key.id, "email": caller.key.email, "name": caller.key.name }),
    ))
}

pub async fn developer_settings(app: &App, ctx: &RequestCtx) -> Result<Response<Body>, ApiError> {
    let caller = authenticate(app, ctx).await?;
    let k = &caller.key;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "apiKey": format!("{}...", k.key_prefix),
            "webhookUrl": k.webhook_url,
            "webhookSecret": k.webhook_secret,
            "rateLimitPerMin": k.rate_limit_per_min,
            "rateLimitPerHour": k.rate_limit_per_hour,
            "logsEnabled": k.logs_enabled,
            "analyticsLevel": k.analytics_level,
            "createdAt": timestamp(k.created_at),
        }),
    ))
}

#[derive(Deserialize)]
struct WebhookBody {
    /// Required: a URL sets the webhook, `null` or `""` removes it, a missing field is a 400
    /// (it used to mean "remove", which a client sending the wrong field name would not expect).
    #[serde(default, deserialize_with = "crate::http::request::double_option")]
    url: Option<Option<String>>,
}

pub async fn set_webhook(
    app: &App,
    ctx: &RequestCtx,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let caller = authenticate(app, ctx).await?;
    let input: WebhookBody = parse_json(body)?;
    let Some(url) = input.url else {
        return Err(ApiError::BadRequest(
            "missing field `url` (a URL sets the webhook; null or \"\" removes it)".to_string(),
        ));
    };
    // An empty or null url removes the webhook.
    let url = match url.as_deref().map(str::trim).filter(|u| !u.is_empty()) {
        None => None,
        Some(u) => {
            let url = TargetUrl::parse(u)
                .map_err(|e| ApiError::BadRequest(e.to_string().replacen("url", "webhook url", 1)))?
                .into_string();
            // The fetcher's address rules apply when the URL is set, not only when it is used:
            // a webhook must not point into our own network (loopback, private, metadata),
            // unless the operator allowed that (WEBHOOK_ALLOW_PRIVATE).
            let parsed = url::Url::parse(&url).map_err(|_| {
                ApiError::BadRequest("webhook url must be an absolute http(s) URL".to_string())
            })?;
            if app.config.webhooks.allow_private {
                // Checked for form only (absolute http(s), above).
            } else if let Err(e) = app
                .metadata
                .check_destination(&parsed, Duration::from_secs(2))
                .await
            {
                tracing::debug!(error = %e, "webhook url refused");
                return Err(ApiError::BadRequest(
                    REFUSED_ADDRESS.replace("this URL", "this webhook url"),
                ));
            }
            Some(url)
        }
    };
    let secret = app
        .store
        .set_webhook_url(caller.key.id, url.as_deref(), &new_webhook_secret())
        .await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "success": true,
            "message": if url.is_some() { "Webhook URL saved" } else { "Webhook URL removed" },
            "webhookUrl": url,
            "webhookSecret": secret,
        }),
    ))
}

/// `POST /api/settings/developer/webhook/rotate`: a new signing secret, at once in force.
pub async fn rotate_webhook_secret(
    app: &App,
    ctx: &RequestCtx,
) -> Result<Response<Body>, ApiError> {
    let caller = authenticate(app, ctx).await?;
    let secret = new_webhook_secret();
    app.store
        .rotate_webhook_secret(caller.key.id, &secret)
        .await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "webhookSecret": secret }),
    ))
}

/// `GET /api/settings/developer/webhook/deliveries?limit=50`: the key's webhook events with
/// their delivery state, newest first.
pub async fn webhook_deliveries(app: &App, ctx: &RequestCtx) -> Result<Response<Body>, ApiError> {
    let caller = authenticate(app, ctx).await?;
    let limit = ctx.query_int("limit", 50, 1, 500)?;
    let rows = app.store.webhook_deliveries(caller.key.id, limit).await?;
    let out: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|d| {
            serde_json::json!({
                "eventId": d.id,
                "type": d.kind,
                "status": d.status,
                "attempts": d.attempts,
                "lastStatusCode": d.last_status_code,
                "lastError": d.last_error,
                "nextAttemptAt": d.next_attempt_at.map(timestamp),
                "deliveredAt": d.delivered_at.map(timestamp),
            })
        })
        .collect();
    Ok(json(StatusCode::OK, &out))
}

#[derive(Deserialize)]
struct MetadataBody {
    url: String,
}

pub async fn metadata(
    app: &App,
    ctx: &RequestCtx,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    authenticate(app, ctx).await?;
    let input: MetadataBody = parse_json(body)?;
    let target = TargetUrl::parse(&input.url).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let url = url::Url::parse(target.as_str())
        .map_err(|_| ApiError::BadRequest("url must be an absolute http(s) URL".to_string()))?;
    match app.metadata.fetch(&url).await {
        Ok(meta) => Ok(json(StatusCode::OK, &meta)),
        Err(e) => Err(match e {
            MetadataError::InvalidUrl(_) => ApiError::BadRequest(e.to_string()),
            // Which range an address is in, or what a name resolved to, is nobody's business
            // outside: the detail goes to the debug log only.
            MetadataError::ForbiddenAddress(detail) => {
                tracing::debug!(error = %detail, "metadata fetch refused");
                ApiError::BadRequest(REFUSED_ADDRESS.to_string())
            }
            MetadataError::Network(detail) => {
                tracing::debug!(error = %detail, "metadata fetch failed");
                ApiError::BadGateway("could not fetch the page".to_string())
            }
            MetadataError::Timeout => ApiError::GatewayTimeout(e.to_string()),
            MetadataError::TooManyRedirects | MetadataError::UpstreamStatus(_) => {
                ApiError::BadGateway(e.to_string())
            }
        }),
    }
}

/// The OpenAPI operations of these routes, named by their entries in `routes!`.
pub mod doc {
    use crate::http::openapi::*;

    /// `POST /api/generate-key`
    pub fn generate_key() -> Operation {
        op("generateKey", "keys", "Create an API key").reads_body()
            .description(Some("No API key needed. At most 5 per hour per client IP. A request body, if any, is read and ignored. The key gets the default per-key limits (`RATE_LIMIT_KEY_PER_MIN`, `RATE_LIMIT_KEY_PER_HOUR`)."))
            .response("200", respond("The new key, shown once. The `RateLimit-*` headers are those of the per-client-IP limit.")
                .content("application/json", content(schema("GeneratedKey"), None))
                .headers(&RATE_LIMIT))
            .response("429", error("Over the per-client-IP limit of 5 per hour.", "Too many API keys generated from this IP, please try again later")
                .headers(&RATE_LIMITED))
            .response("503", shared("ServiceUnavailable"))
            .build()
    }

    /// `GET /api/auth/me`
    pub fn get_me() -> Operation {
        op("getMe", "keys", "The account behind the API key")
            .keyed()
            .response(
                "200",
                respond("The account.").content("application/json", content(schema("Me"), None)),
            )
            .build()
    }

    /// `GET /api/settings/developer`
    pub fn get_developer_settings() -> Operation {
        op(
            "getDeveloperSettings",
            "keys",
            "Developer settings of the API key",
        )
        .keyed()
        .response(
            "200",
            respond("Real settings for the key.").content(
                "application/json",
                content(schema("DeveloperSettings"), None),
            ),
        )
        .build()
    }

    /// `PATCH /api/settings/developer/webhook`
    pub fn update_webhook() -> Operation {
        op("updateWebhook", "keys", "Set the key's webhook URL").keyed().reads_body()
            .description(Some("`url` is required: a URL sets the webhook, `null` or `\"\"` removes it. A URL must pass the metadata fetcher's address rules when it is set (its host, and every address its name resolves to now, must be public; `METADATA_ALLOWLIST` applies): 400 otherwise. A name that does not resolve yet is accepted."))
            .request_body(Some(json_body("WebhookUpdateRequest", true)))
            .response("200", respond("Stored for the key.")
                .content("application/json", content(schema("WebhookUpdateResponse"), None)))
            .response("400", shared("BadRequest"))
            .build()
    }

    /// `POST /api/settings/developer/webhook/rotate`
    pub fn rotate_webhook_secret() -> Operation {
        op("rotateWebhookSecret", "keys", "Replace the key's webhook signing secret")
            .keyed()
            .reads_body()
            .description(Some("A new `whsec_` secret, in force at once: deliveries are signed with it from now on (receivers must switch). Works with or without a webhook URL set."))
            .response("200", respond("The new secret.")
                .content("application/json", content(schema("WebhookSecret"), None)))
            .build()
    }

    /// `GET /api/settings/developer/webhook/deliveries`
    pub fn list_webhook_deliveries() -> Operation {
        op("listWebhookDeliveries", "keys", "List the key's webhook events and their delivery")
            .keyed()
            .description(Some("Newest first. Events: `link.created`, `link.updated`, `link.deleted` (data: the link object) and `link.clicked` (batches of up to 1000 clicks, at most one per key per second). `pending` events are retried with exponential backoff from `WEBHOOK_RETRY_BASE_MS` (10 s), doubling, for `WEBHOOK_RETRY_WINDOW_S` (24 h), then `failed`; a 2xx answer within 5 s is `delivered`. Finished events are kept 7 days."))
            .parameter(query_int("limit", "How many, 1–500.", 1, 500, 50))
            .response("200", respond("The key's events, newest first.")
                .content("application/json", content(array_of("WebhookDelivery"), None)))
            .response("400", shared("BadRequest"))
            .build()
    }

    /// `POST /api/metadata`
    pub fn fetch_metadata() -> Operation {
        op("fetchMetadata", "links", "Fetch a page's title, description and favicon").keyed().reads_body()
            .description(Some("Server-side fetch capped at 5 s, 1 MiB and 5 redirects. Loopback, private, link-local and metadata-service addresses are refused (after DNS resolution and on every redirect hop; `METADATA_ALLOWLIST` excepted). Neither the 400 nor the 502 message names an address, a range or a resolver error."))
            .request_body(Some(json_body("MetadataRequest", true)))
            .response("200", respond("Metadata of the page.")
                .content("application/json", content(schema("MetadataResponse"), None)))
            .response("400", error("Invalid URL, or its host is, or resolves to, a non-public address (loopback, private, link-local or metadata service, checked after DNS resolution and on every redirect hop).", "refusing to fetch this URL: its host is not a public Internet address"))
            .response("502", error("The page could not be fetched: the host does not resolve or does not answer, it answered with an error status, or it redirected more than 5 times.", "could not fetch the page"))
            .response("504", error("Fetching the page took longer than 5 s.", "fetching the page took too long"))
            .build()
    }
}

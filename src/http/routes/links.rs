//! Link management: shorten, list, read, change, delete, top links. Owner-scoped throughout
//! (the store filters by key); another key's link answers 404 as if it did not exist.

use std::time::Duration;

use chrono::{DateTime, Utc};
use http::{HeaderValue, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{parse_id, timestamp};
use crate::app::{spawn_metadata_fill, App};
use crate::domain::{parse_max_clicks_per_min, parse_password, ShortCode, TargetUrl};
use crate::http::error::{json, rate_limit_headers, ApiError, Body};
use crate::http::is_reserved_code;
use crate::http::request::{
    authenticate, authenticate_and_limit, double_option, non_null, parse_json, RequestCtx,
    RouteLimit, Text,
};
use crate::qr;
use crate::redis::limiter::Limit;
use crate::rules::{self, RedirectRule};
use crate::store::{
    CreateLinkOutcome, LinkChanges, LinkFilter, LinkRecord, NewLink, UpdateLinkOutcome,
};

// The link object of the contract, and its OpenAPI schema `Link` (described by the doc
// comment). Deliberately has no password field of any kind.
/// A short link. Never contains a password or its hash. Timestamps are RFC 3339 UTC.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Link, example = json!({
    "id": "0b8f3c1e-6a2d-4b7e-9f10-2c3d4e5f6a7b", "shortCode": "aB3_x9Qz",
    "shortUrl": "https://bl.example/aB3_x9Qz", "originalUrl": "https://example.com/page",
    "clicks": 0, "title": null, "description": null, "favicon": null, "isProtected": false,
    "isExpiring": false, "expiresAt": null, "isRateLimited": false, "maxClicksPerMin": 100,
    "campaignId": null, "createdAt": "2026-11-23T08:00:00.000Z",
    "updatedAt": "2026-11-23T08:00:00.000Z", "redirectType": 302, "forwardQuery": false,
    "tags": ["launch"], "redirectRules": [{"conditions": [{"type": "device", "value": "ios"}],
    "url": "https://apps.apple.com/app/id1"}]
}))]
pub struct LinkView<'a> {
    /// Opaque link id.
    #[schema(value_type = String, format = "uuid")]
    id: Uuid,
    #[schema(pattern = r"^[A-Za-z0-9_-]{3,64}$", examples(json!("aB3_x9Qz")))]
    short_code: &'a str,
    /// `PUBLIC_BASE_URL` + `/` + shortCode.
    #[schema(format = "uri", examples(json!("https://bl.example/aB3_x9Qz")))]
    short_url: String,
    #[schema(format = "uri", max_length = 2048, examples(json!("https://example.com/page")))]
    original_url: &'a str,
    #[schema(minimum = 0)]
    clicks: i64,
    /// Fetched in the background after creation; null until known.
    #[schema(required = true)]
    title: Option<&'a str>,
    #[schema(required = true)]
    description: Option<&'a str>,
    #[schema(required = true)]
    favicon: Option<&'a str>,
    is_protected: bool,
    is_expiring: bool,
    #[schema(required = true, format = DateTime)]
    expires_at: Option<String>,
    is_rate_limited: bool,
    #[schema(minimum = 1, maximum = 1000000)]
    max_clicks_per_min: i32,
    /// The campaign the link belongs to, if any.
    #[schema(required = true, value_type = Option<String>, format = "uuid")]
    campaign_id: Option<Uuid>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
    /// The redirect's HTTP status. 301 and 308 are cached by browsers: repeat visits from one browser may not reach the server (and are then not counted).
    #[schema(value_type = i32, minimum = 301, maximum = 308, examples(json!(302)))]
    redirect_type: i16,
    /// Whether the visit's query string is added to the destination's (the visit's value wins for a parameter in both).
    forward_query: bool,
    /// Up to 10 tags of `[a-z0-9_-]`, 1–32 characters each.
    tags: &'a [String],
    /// Tried in order; the first whose conditions all hold gives the destination.
    #[schema(value_type = Vec<crate::http::schema::RedirectRule>)]
    redirect_rules: &'a [RedirectRule],
}

impl<'a> LinkView<'a> {
    pub fn new(app: &App, l: &'a LinkRecord) -> Self {
        Self::of(&app.config.http.public_base_url, l)
    }

    /// The link object of `l` whose short URL starts with `public_base_url` (also the
    /// `data` of webhook link events, rendered by `boltlink-webhooks`).
    pub fn of(public_base_url: &str, l: &'a LinkRecord) -> Self {
        Self {
            id: l.id,
            short_code: &l.short_code,
            short_url: format!("{public_base_url}/{}", l.short_code),
            original_url: &l.original_url,
            clicks: l.clicks,
            title: l.title.as_deref(),
            description: l.description.as_deref(),
            favicon: l.favicon.as_deref(),
            is_protected: l.is_protected,
            is_expiring: l.is_expiring,
            expires_at: l.expires_at.map(timestamp),
            is_rate_limited: l.is_rate_limited,
            max_clicks_per_min: l.max_clicks_per_min,
            campaign_id: l.campaign_id,
            created_at: timestamp(l.created_at),
            updated_at: timestamp(l.updated_at),
            redirect_type: l.redirect_type,
            forward_query: l.forward_query,
            tags: &l.tags,
            redirect_rules: &l.redirect_rules.0,
        }
    }
}

pub fn link_response(app: &App, status: StatusCode, l: &LinkRecord) -> Response<Body> {
    json(status, &LinkView::new(app, l))
}

fn parse_future_date(value: &str, now_ms: i64) -> Result<DateTime<Utc>, ApiError> {
    let t = DateTime::parse_from_rfc3339(value.trim())
        .map_err(|_| ApiError::BadRequest("expiresAt must be an RFC 3339 date-time".to_string()))?
        .with_timezone(&Utc);
    if t.timestamp_millis() <= now_ms {
        return Err(ApiError::BadRequest(
            "Expiration date must be in the future".to_string(),
        ));
    }
    Ok(t)
}

fn bad(e: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest(e.to_string())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ShortenBody {
    url: String,
    #[serde(default)]
    custom_code: Option<String>,
    #[serde(default, deserialize_with = "non_null")]
    is_protected: Option<bool>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default, deserialize_with = "non_null")]
    is_expiring: Option<bool>,
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default, deserialize_with = "non_null")]
    is_rate_limited: Option<bool>,
    #[serde(default, deserialize_with = "non_null")]
    max_clicks_per_min: Option<i64>,
    #[serde(default)]
    campaign_id: Option<Uuid>,
    #[serde(default, deserialize_with = "non_null")]
    redirect_type: Option<Value>,
    #[serde(default, deserialize_with = "non_null")]
    forward_query: Option<bool>,
    #[serde(default, deserialize_with = "non_null")]
    tags: Option<Value>,
    #[serde(default, deserialize_with = "non_null")]
    redirect_rules: Option<Value>,
}

/// The 0.2 fields of a shorten or PATCH body, validated (each error names its field).
struct Behaviour {
    redirect_type: Option<i16>,
    tags: Option<Vec<String>>,
    redirect_rules: Option<Vec<RedirectRule>>,
}

impl Behaviour {
    fn parse(
        redirect_type: Option<&Value>,
        tags: Option<&Value>,
        redirect_rules: Option<&Value>,
    ) -> Result<Self, ApiError> {
        Ok(Self {
            redirect_type: redirect_type
                .map(|v| rules::parse_redirect_type(v).map(|t| t as i16))
                .transpose()
                .map_err(bad)?,
            tags: tags.map(rules::parse_tags).transpose().map_err(bad)?,
            redirect_rules: redirect_rules
                .map(rules::parse_rules)
                .transpose()
                .map_err(bad)?,
        })
    }
}

/// A shorten body validated into a new link (a password hashed on the pool): the one
/// validation of `POST /api/shorten` and of every row of `POST /api/links/bulk`.
pub(super) async fn new_link(
    app: &App,
    owner: Uuid,
    input: ShortenBody,
    now_ms: i64,
) -> Result<NewLink, ApiError> {
    let url = TargetUrl::parse(&input.url).map_err(bad)?;
    let behaviour = Behaviour::parse(
        input.redirect_type.as_ref(),
        input.tags.as_ref(),
        input.redirect_rules.as_ref(),
    )?;
    let custom_code = match input
        .custom_code
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty())
    {
        None => None,
        Some(c) => {
            let code = ShortCode::parse(c).map_err(bad)?;
            if is_reserved_code(code.as_str()) {
                return Err(ApiError::BadRequest(format!(
                    "customCode {c:?} is reserved"
                )));
            }
            Some(code)
        }
    };
    let password_hash = if input.is_protected.unwrap_or(false) {
        let Some(p) = input.password.as_deref().filter(|p| !p.is_empty()) else {
            return Err(ApiError::BadRequest(
                "Password required for protected links".to_string(),
            ));
        };
        Some(app.passwords.hash(parse_password(p).map_err(bad)?).await?)
    } else {
        None
    };
    let expires_at = if input.is_expiring.unwrap_or(false) {
        let Some(e) = input.expires_at.as_deref().filter(|e| !e.trim().is_empty()) else {
            return Err(ApiError::BadRequest("Expiration date required".to_string()));
        };
        Some(parse_future_date(e, now_ms)?)
    } else {
        None
    };
    let max_clicks_per_min = match input.max_clicks_per_min {
        Some(n) => parse_max_clicks_per_min(n).map_err(bad)?,
        None => 100,
    };
    Ok(NewLink {
        owner_key_id: owner,
        custom_code,
        original_url: url.into_string(),
        password_hash,
        expires_at,
        is_rate_limited: input.is_rate_limited.unwrap_or(false),
        max_clicks_per_min,
        campaign_id: input.campaign_id,
        redirect_type: behaviour.redirect_type.unwrap_or(302),
        forward_query: input.forward_query.unwrap_or(false),
        tags: behaviour.tags.unwrap_or_default(),
        redirect_rules: behaviour.redirect_rules.unwrap_or_default(),
    })
}

pub async fn shorten(app: &App, ctx: &RequestCtx, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let client_ip = ctx.client_ip.to_string();
    let route = RouteLimit {
        limit: Limit {
            name: "shorten",
            subject: &client_ip,
            limit: app.config.rate_limits.shorten_per_5min,
            window: Duration::from_secs(300),
        },
        refusal: "Too many links created from this IP, please try again later",
    };
    let (caller, decision) = authenticate_and_limit(app, ctx, route).await?;
    let input: ShortenBody = parse_json(body)?;
    let new = new_link(app, caller.key.id, input, ctx.now_ms).await?;
    match app.store.create_link(new).await? {
        CreateLinkOutcome::Created(link) => {
            // A negative cache entry for this code may exist anywhere: drop it.
            app.invalidate_link(&link.short_code).await;
            spawn_metadata_fill(app, link.id, link.original_url.clone());
            let mut resp = link_response(app, StatusCode::CREATED, &link);
            rate_limit_headers(&mut resp, &decision, false);
            Ok(resp)
        }
        CreateLinkOutcome::CodeTaken => {
            Err(ApiError::Conflict("Custom code already in use".to_string()))
        }
        CreateLinkOutcome::CampaignNotFound => Err(ApiError::BadRequest(
            "campaignId does not name one of your campaigns".to_string(),
        )),
    }
}

pub async fn list(app: &App, ctx: &RequestCtx) -> Result<Response<Body>, ApiError> {
    let caller = authenticate(app, ctx).await?;
    let limit = ctx.query_int("limit", 100, 1, 500)?;
    let offset = ctx.query_int("offset", 0, 0, i64::MAX / 2)?;
    let filter = LinkFilter {
        tag: match ctx.query("tag") {
            None => None,
            Some(t) => Some(rules::parse_tag(&t).map_err(|e| bad(format!("tag {e}")))?),
        },
        text: match ctx.query("q").as_deref() {
            None | Some("") => None,
            Some(q) if q.contains('\0') => return Err(bad("q must not contain NUL")),
            Some(q) if q.chars().count() > 200 => {
                return Err(bad("q must be at most 200 characters"))
            }
            Some(q) => Some(q.to_string()),
        },
    };
    let scope = caller.scope();
    let filter = &filter;
    let (links, total) = app
        .read_for(caller.key.id, |store| async move {
            store.list_links(scope, filter, limit, offset).await
        })
        .await?;
    let views: Vec<LinkView<'_>> = links.iter().map(|l| LinkView::new(app, l)).collect();
    let mut resp = json(StatusCode::OK, &views);
    resp.headers_mut()
        .insert("x-total-count", HeaderValue::from(total));
    Ok(resp)
}

pub async fn top(app: &App, ctx: &RequestCtx) -> Result<Response<Body>, ApiError> {
    let caller = authenticate(app, ctx).await?;
    let limit = ctx.query_int("limit", 10, 1, 100)?;
    let scope = caller.scope();
    let links = app
        .read_for(caller.key.id, |store| async move {
            store.top_links(scope, limit).await
        })
        .await?;
    let views: Vec<LinkView<'_>> = links.iter().map(|l| LinkView::new(app, l)).collect();
    Ok(json(StatusCode::OK, &views))
}

pub async fn get(app: &App, ctx: &RequestCtx, id: &str) -> Result<Response<Body>, ApiError> {
    let caller = authenticate(app, ctx).await?;
    let id = parse_id(id, "Link")?;
    match app.store.get_link(caller.scope(), id).await? {
        Some(link) => Ok(link_response(app, StatusCode::OK, &link)),
        None => Err(ApiError::NotFound("Link not found".to_string())),
    }
}

/// `GET /api/links/{id}/qr`: the link's short URL as a QR code (PNG or SVG).
pub async fn qr(app: &App, ctx: &RequestCtx, id: &str) -> Result<Response<Body>, ApiError> {
    let caller = authenticate(app, ctx).await?;
    let id = parse_id(id, "Link")?;
    let format = match ctx.query("format").as_deref() {
        None => qr::Format::Png,
        Some(f) => qr::Format::parse(f).ok_or_else(|| bad("format must be png or svg"))?,
    };
    let size = ctx.query_int(
        "size",
        qr::DEFAULT_SIZE.into(),
        qr::MIN_SIZE.into(),
        qr::MAX_SIZE.into(),
    )? as u32;
    let Some(link) = app.store.get_link(caller.scope(), id).await? else {
        return Err(ApiError::NotFound("Link not found".to_string()));
    };
    let short_url = format!("{}/{}", app.config.http.public_base_url, link.short_code);
    // Up to a few milliseconds for 2048 px: off the request threads.
    let image = tokio::task::spawn_blocking(move || qr::render(&short_url, format, size))
        .await
        .map_err(|e| ApiError::Internal(format!("QR rendering stopped: {e}")))?
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut resp = Response::new(crate::http::body::full(image));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    // A link's short URL never changes: the image may be kept as long as the link lives.
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=86400"),
    );
    Ok(resp)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PatchBody {
    #[serde(default, deserialize_with = "non_null")]
    original_url: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    title: Option<Option<Text>>,
    #[serde(default, deserialize_with = "double_option")]
    description: Option<Option<Text>>,
    #[serde(default, deserialize_with = "non_null")]
    is_protected: Option<bool>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default, deserialize_with = "non_null")]
    is_expiring: Option<bool>,
    #[serde(default, deserialize_with = "double_option")]
    expires_at: Option<Option<String>>,
    #[serde(default, deserialize_with = "non_null")]
    is_rate_limited: Option<bool>,
    #[serde(default, deserialize_with = "non_null")]
    max_clicks_per_min: Option<i64>,
    #[serde(default, deserialize_with = "double_option")]
    campaign_id: Option<Option<Uuid>>,
    #[serde(default, deserialize_with = "non_null")]
    redirect_type: Option<Value>,
    #[serde(default, deserialize_with = "non_null")]
    forward_query: Option<bool>,
    #[serde(default, deserialize_with = "non_null")]
    tags: Option<Value>,
    #[serde(default, deserialize_with = "non_null")]
    redirect_rules: Option<Value>,
}

fn clean_text(field: &str, v: Option<Text>, max: usize) -> Result<Option<String>, ApiError> {
    match v {
        None => Ok(None),
        Some(s) if s.as_str().chars().count() > max => Err(ApiError::BadRequest(format!(
            "{field} must be at most {max} characters"
        ))),
        Some(s) => Ok(Some(s.into_string())),
    }
}

pub async fn patch(
    app: &App,
    ctx: &RequestCtx,
    id: &str,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let caller = authenticate(app, ctx).await?;
    let id = parse_id(id, "Link")?;
    let input: PatchBody = parse_json(body)?;
    let behaviour = Behaviour::parse(
        input.redirect_type.as_ref(),
        input.tags.as_ref(),
        input.redirect_rules.as_ref(),
    )?;
    let mut changes = LinkChanges {
        redirect_type: behaviour.redirect_type,
        forward_query: input.forward_query,
        tags: behaviour.tags,
        redirect_rules: behaviour.redirect_rules,
        ..LinkChanges::default()
    };
    if let Some(u) = input.original_url {
        changes.original_url = Some(TargetUrl::parse(&u).map_err(bad)?.into_string());
    }
    if let Some(t) = input.title {
        changes.title = Some(clean_text("title", t, 500)?);
    }
    if let Some(d) = input.description {
        changes.description = Some(clean_text("description", d, 2000)?);
    }
    match (
        input.is_protected,
        input.password.as_deref().filter(|p| !p.is_empty()),
    ) {
        (Some(true), Some(p)) | (None, Some(p)) => {
            changes.protection = Some(Some(
                app.passwords.hash(parse_password(p).map_err(bad)?).await?,
            ));
        }
        (Some(true), None) => {
            return Err(ApiError::BadRequest(
                "Password required for protected links".to_string(),
            ));
        }
        (Some(false), _) => changes.protection = Some(None),
        (None, None) => {}
    }
    match (input.is_expiring, input.expires_at) {
        (Some(false), _) => changes.expiry = Some(None),
        (Some(true), Some(Some(e))) | (None, Some(Some(e))) if !e.trim().is_empty() => {
            changes.expiry = Some(Some(parse_future_date(&e, ctx.now_ms)?));
        }
        (Some(true), _) => {
            return Err(ApiError::BadRequest("Expiration date required".to_string()))
        }
        (None, Some(_)) => changes.expiry = Some(None),
        (None, None) => {}
    }
    changes.is_rate_limited = input.is_rate_limited;
    if let Some(n) = input.max_clicks_per_min {
        changes.max_clicks_per_min = Some(parse_max_clicks_per_min(n).map_err(bad)?);
    }
    changes.campaign_id = input.campaign_id;
    match app.store.update_link(caller.scope(), id, changes).await? {
        UpdateLinkOutcome::Updated(link) => {
            app.invalidate_link(&link.short_code).await;
            Ok(link_response(app, StatusCode::OK, &link))
        }
        UpdateLinkOutcome::LinkNotFound => Err(ApiError::NotFound("Link not found".to_string())),
        UpdateLinkOutcome::CampaignNotFound => Err(ApiError::BadRequest(
            "campaignId does not name one of your campaigns".to_string(),
        )),
    }
}

pub async fn delete(app: &App, ctx: &RequestCtx, id: &str) -> Result<Response<Body>, ApiError> {
    let caller = authenticate(app, ctx).await?;
    let id = parse_id(id, "Link")?;
    match app.store.delete_link(caller.scope(), id).await? {
        Some(code) => {
            app.invalidate_link(&code).await;
            Ok(json(
                StatusCode::OK,
                &serde_json::json!({"message": "Link deleted"}),
            ))
        }
        None => Err(ApiError::NotFound("Link not found".to_string())),
    }
}

/// The OpenAPI operations of these routes, named by their entries in `routes!`.
pub mod doc {
    use crate::http::openapi::*;
    use serde_json::json;

    /// `POST /api/shorten`
    pub fn shorten_link() -> Operation {
        op("shortenLink", "links", "Create a short link").keyed().reads_body()
            .description(Some("Generated codes are 8 characters of `[A-Za-z0-9_-]`, collision-free. Title, description and favicon are fetched in the background."))
            .request_body(Some(json_body("ShortenRequest", true)))
            .response("201", respond("The created link. The `RateLimit-*` headers are those of the per-client-IP shorten limit.")
                .content("application/json", content(schema("Link"), None))
                .headers(&RATE_LIMIT))
            .response("400", error("Invalid input, e.g. `url` not an absolute http(s) URL or longer than 2048 characters, bad or reserved `customCode`, `Password required for protected links`, a password over 256 characters, `Expiration date required`, `Expiration date must be in the future`, `maxClicksPerMin` outside 1–1000000, `null` for a field that is not nullable, unknown `campaignId`, a `redirectType` other than 301/302/307/308, bad `tags` or `redirectRules` (the message names the field, e.g. `redirectRules[0].conditions[1].value`).", "Password required for protected links"))
            .response("409", shared("Conflict"))
            .response("429", error("Over the per-client-IP limit of 100 per 5 minutes (`RATE_LIMIT_SHORTEN_PER_5MIN`), or over the API key's own limit (`RATE_LIMIT_KEY_PER_MIN`, `RATE_LIMIT_KEY_PER_HOUR`).", "Too many links created from this IP, please try again later")
                .headers(&RATE_LIMITED))
            .response("503", shared("PasswordChecksBusy"))
            .build()
    }

    /// `GET /api/links`
    pub fn list_links() -> Operation {
        op("listLinks", "links", "List the caller's links")
            .keyed()
            .parameter(query_int("limit", "Page size, 1–500.", 1, 500, 100))
            .parameter(query_int(
                "offset",
                "Links to skip.",
                0,
                4611686018427387903,
                0,
            ))
            .parameter(query_text(
                "tag",
                "Only links carrying this tag (compared lowercased).",
                Some(r"^[A-Za-z0-9_-]{1,32}$"),
                32,
            ))
            .parameter(query_text(
                "q",
                "Only links whose code, destination or title contains this text, ignoring case. Empty: no filter.",
                None,
                200,
            ))
            .response(
                "200",
                respond("The caller's links, newest first; `X-Total-Count` counts the filtered set.")
                    .content("application/json", content(array_of("Link"), None))
                    .header("X-Total-Count", header("X-Total-Count")),
            )
            .response("400", shared("BadRequest"))
            .build()
    }

    /// `GET /api/links/{id}`
    pub fn get_link() -> Operation {
        op("getLink", "links", "Get one of the caller's links")
            .keyed()
            .parameter(link_id_param())
            .response(
                "200",
                respond("The link.").content("application/json", content(schema("Link"), None)),
            )
            .response("404", shared("NotFound"))
            .build()
    }

    /// `GET /api/links/{id}/qr`
    pub fn get_link_qr() -> Operation {
        op("getLinkQr", "links", "The link's short URL as a QR code")
            .keyed()
            .description(Some("Rendered on request (error correction level M, a quiet zone of 4 modules included in the size)."))
            .parameter(link_id_param())
            .parameter(query_text("format", "`png` (default) or `svg`.", Some("^(png|svg)$"), 3))
            .parameter(query_int("size", "Width and height in pixels, 64–2048.", 64, 2048, 256))
            .response(
                "200",
                respond("The QR code of `shortUrl`.")
                    .content("image/png", content(text(), None))
                    .content("image/svg+xml", content(text(), None))
                    .header("Cache-Control", header_const("The image of a link never changes: browsers may keep it a day.", "private, max-age=86400")),
            )
            .response("400", shared("BadRequest"))
            .response("404", shared("NotFound"))
            .build()
    }

    /// `PATCH /api/links/{id}`
    pub fn update_link() -> Operation {
        op("updateLink", "links", "Change one of the caller's links").keyed().reads_body()
            .description(Some("Changes the fields given; absent fields stay as they are. Redirects use the new state at once on the answering instance and within 1 s everywhere else."))
            .parameter(link_id_param())
            .request_body(Some(json_body("LinkPatch", true)))
            .response("200", respond("The updated link.")
                .content("application/json", content(schema("Link"), None)))
            .response("400", shared("BadRequest"))
            .response("404", shared("NotFound"))
            .response("503", shared("PasswordChecksBusy"))
            .build()
    }

    /// `DELETE /api/links/{id}`
    pub fn delete_link() -> Operation {
        op("deleteLink", "links", "Delete one of the caller's links")
            .keyed()
            .description(Some(
                "Redirects stop at once on the answering instance and within 1 s everywhere else.",
            ))
            .parameter(link_id_param())
            .response(
                "200",
                respond("Deleted.").content(
                    "application/json",
                    content(
                        schema("LinkDeleted"),
                        Some(json!({"message": "Link deleted"})),
                    ),
                ),
            )
            .response("404", shared("NotFound"))
            .build()
    }

    /// `GET /api/top-links`
    pub fn list_top_links() -> Operation {
        op("listTopLinks", "links", "The caller's most-clicked links")
            .keyed()
            .parameter(query_int("limit", "How many, 1–100.", 1, 100, 10))
            .response(
                "200",
                respond("The caller's links by clicks, descending.")
                    .content("application/json", content(array_of("Link"), None)),
            )
            .response("400", shared("BadRequest"))
            .build()
    }
}

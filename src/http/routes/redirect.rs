//! The redirect hot path, password verification, and the per-link rate-limit status.
//!
//! Architecture invariant: the redirect never waits on analytics. A cache hit costs a local
//! hash lookup, two in-memory rate-limit counters and a push onto the click queue; Redis and
//! PostgreSQL are not touched until the flusher ships the batch.

use std::time::{Duration, Instant};

use crate::http::body::full;
use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use serde::Deserialize;

use crate::app::App;
use crate::clicks::event::{clip, event_id, ClickEvent, ClickKind};
use crate::domain::{RedirectTarget, ShortCode};
use crate::http::error::{json, too_many, ApiError, Body};
use crate::http::request::{parse_json, RequestCtx};
use crate::redis::limiter::{check_link_cap, Attempt, Decision, HotSubject, Subject};
use crate::rules::{first_match, forward_query, Visit};

const MINUTE_MS: i64 = 60_000;
const VERIFY_FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);

fn is_xhr(ctx: &RequestCtx) -> bool {
    ctx.header("x-requested-with")
        .is_some_and(|v| v.eq_ignore_ascii_case("XMLHttpRequest"))
        || ctx.query("xhr").is_some_and(|v| v == "1" || v == "true")
}

/// Region from Cloudflare's `cf-ipcountry`, else `UNKNOWN`. Only two-letter codes pass.
fn region(ctx: &RequestCtx) -> String {
    match ctx.header("cf-ipcountry") {
        Some(c) if c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphanumeric()) => {
            c.to_ascii_uppercase()
        }
        _ => "UNKNOWN".to_string(),
    }
}

fn click(
    ctx: &RequestCtx,
    target: &RedirectTarget,
    kind: ClickKind,
    started: Instant,
    rule_url: Option<&str>,
) -> ClickEvent {
    ClickEvent {
        id: event_id(ctx.now_ms),
        link_id: target.link_id,
        owner_key_id: target.owner_key_id,
        at_ms: ctx.now_ms,
        region: region(ctx),
        user_agent: clip(ctx.header("user-agent").unwrap_or(""), 512),
        referer: clip(ctx.header("referer").unwrap_or(""), 1024),
        latency_us: started.elapsed().as_micros().min(u32::MAX as u128) as u32,
        kind,
        client_ip: Some(ctx.client_ip),
        rule_url: rule_url.map(str::to_string),
    }
}

fn found(location: &str) -> Result<Response<Body>, ApiError> {
    let value = HeaderValue::from_str(location)
        .map_err(|_| ApiError::Internal("stored URL is not a valid Location header".to_string()))?;
    Ok(found_at(value))
}

/// The 302 of a redirect (its `Location` prebuilt, see [`RedirectTarget::location`]).
fn found_at(value: HeaderValue) -> Response<Body> {
    redirect_at(StatusCode::FOUND, value)
}

/// A redirect with the link's status (`redirectType`).
fn redirect_at(status: StatusCode, value: HeaderValue) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::LOCATION, value);
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    resp
}

fn per_ip_check(app: &App, ctx: &RequestCtx) -> Result<(), ApiError> {
    let d = app.hot_limiter.check(
        HotSubject::ClientIp(ctx.client_ip),
        app.config.rate_limits.redirect_per_min,
        MINUTE_MS,
        ctx.now_ms,
    );
    if d.allowed {
        Ok(())
    } else {
        Err(too_many(
            "Too many requests from this IP, please try again later",
            d,
        ))
    }
}

/// Per-link cap: whether this visit may go through (it is then counted), decided on the
/// shared counter near the cap so that it holds exactly across instances.
async fn link_cap_allows(
    app: &App,
    ctx: &RequestCtx,
    target: &RedirectTarget,
) -> (bool, crate::redis::limiter::Decision) {
    let d = check_link_cap(
        &app.hot_limiter,
        &app.redis,
        target.link_id,
        target.max_clicks_per_min,
        MINUTE_MS,
        ctx.now_ms,
    )
    .await;
    (d.allowed, d)
}

async fn lookup(app: &App, code: &str) -> Result<std::sync::Arc<RedirectTarget>, ApiError> {
    // Codes outside the alphabet cannot exist: answer without any lookup.
    if ShortCode::parse(code).is_err() {
        return Err(ApiError::LinkNotFound);
    }
    app.resolve_link(code).await?.ok_or(ApiError::LinkNotFound)
}

/// The API routes (verify, rate-limit status) answer an unknown code in the contract's JSON
/// error shape; only the browser-facing redirect answers plain text `Link not found`.
fn json_not_found(e: ApiError) -> ApiError {
    match e {
        ApiError::LinkNotFound => ApiError::NotFound("Link not found".to_string()),
        other => other,
    }
}

pub async fn redirect(
    app: &App,
    ctx: &RequestCtx,
    code: &str,
    head: bool,
    started: Instant,
) -> Result<Response<Body>, ApiError> {
    per_ip_check(app, ctx)?;
    let target = lookup(app, code).await?;
    if target.is_expired_at(ctx.now_ms) {
        return Err(ApiError::Gone("Link has expired".to_string()));
    }
    // HEAD is a probe (link unfurlers, monitors), not a visit: it records nothing.
    let record = |kind, rule_url| {
        if !head {
            app.record_click(click(ctx, &target, kind, started, rule_url));
        }
    };
    if target.is_protected {
        record(ClickKind::Gated, None);
        return match &app.config.http.frontend_url {
            Some(front) => found(&format!("{front}/verify?code={}", target.code)),
            None => Ok(password_form(&target.code)),
        };
    }
    if target.is_rate_limited {
        let (allowed, decision) = link_cap_allows(app, ctx, &target).await;
        if !allowed {
            record(ClickKind::Gated, None);
            return match &app.config.http.frontend_url {
                Some(front) => found(&format!("{front}/rate-limit?code={}", target.code)),
                None => Err(too_many(
                    "This link has reached its click limit, please try again later",
                    decision,
                )),
            };
        }
    }
    if target.is_plain() {
        record(ClickKind::Click, None);
        if is_xhr(ctx) {
            return Ok(json(
                StatusCode::OK,
                &serde_json::json!({ "redirect": target.url }),
            ));
        }
        let status = redirect_status(&target);
        return match target.location() {
            Some(location) => Ok(redirect_at(status, location.clone())),
            None => found(&target.url),
        };
    }
    let (destination, rule_url) = destination(app, ctx, &target);
    record(ClickKind::Click, rule_url);
    if is_xhr(ctx) {
        return Ok(json(
            StatusCode::OK,
            &serde_json::json!({ "redirect": destination }),
        ));
    }
    let value = HeaderValue::from_str(&destination).map_err(|_| {
        ApiError::Internal("destination is not a valid Location header".to_string())
    })?;
    Ok(redirect_at(redirect_status(&target), value))
}

fn redirect_status(target: &RedirectTarget) -> StatusCode {
    StatusCode::from_u16(target.redirect_type)
        .ok()
        .filter(StatusCode::is_redirection)
        .unwrap_or(StatusCode::FOUND)
}

/// Where a link with rules or query forwarding sends this visit, and the rule's URL when a
/// rule chose it (recorded with the click).
fn destination<'t>(
    app: &App,
    ctx: &RequestCtx,
    target: &'t RedirectTarget,
) -> (std::borrow::Cow<'t, str>, Option<&'t str>) {
    let mut rule_url = None;
    if !target.rules.is_empty() {
        let country_of = || app.country_of(ctx.header("cf-ipcountry"), ctx.client_ip);
        let visit = Visit::new(
            ctx.header("user-agent").unwrap_or(""),
            ctx.header("accept-language"),
            ctx.parts.uri.query(),
            &country_of,
        );
        rule_url = first_match(&target.rules, &visit).map(|r| r.url.as_str());
    }
    let url = rule_url.unwrap_or(&target.url);
    match ctx.parts.uri.query() {
        Some(q) if target.forward_query && !q.is_empty() => {
            (forward_query(url, q).into(), rule_url)
        }
        _ => (url.into(), rule_url),
    }
}

#[derive(Deserialize)]
struct VerifyBody {
    #[serde(default)]
    password: Option<String>,
}

pub async fn verify(
    app: &App,
    ctx: &RequestCtx,
    code: &str,
    body: &[u8],
    started: Instant,
) -> Result<Response<Body>, ApiError> {
    per_ip_check(app, ctx)?;
    let input: VerifyBody = if body.iter().all(u8::is_ascii_whitespace) {
        VerifyBody { password: None }
    } else {
        parse_json(body)?
    };
    let target = lookup(app, code).await.map_err(json_not_found)?;
    if target.is_expired_at(ctx.now_ms) {
        return Err(ApiError::Gone("Link has expired".to_string()));
    }
    if target.is_protected {
        let Some(password) = input.password.filter(|p| !p.is_empty()) else {
            return Err(ApiError::BadRequest("Password required".to_string()));
        };
        check_password(app, ctx, code, &target, &password).await?;
    }
    if target.is_rate_limited {
        let (allowed, decision) = link_cap_allows(app, ctx, &target).await;
        if !allowed {
            app.record_click(click(ctx, &target, ClickKind::Gated, started, None));
            return Err(too_many(
                "This link has reached its click limit, please try again later",
                decision,
            ));
        }
    }
    // The same destination a redirect would give this browser: its rules apply here too.
    let (destination, rule_url) = destination(app, ctx, &target);
    app.record_click(click(ctx, &target, ClickKind::Click, started, rule_url));
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "redirect": destination }),
    ))
}

/// Checks a password for a protected link under the wrong-password throttle. The attempt's
/// slots (per link and client, per link) are taken atomically across instances *before* the
/// check, and only one attempt per link and client may be in flight, so parallel guesses
/// cannot outrun the throttle (hardening issue, finding 1). A right password gives its
/// slots back; an attempt that fails for another reason (database, busy hashing) too.
async fn check_password(
    app: &App,
    ctx: &RequestCtx,
    code: &str,
    target: &RedirectTarget,
    password: &str,
) -> Result<(), ApiError> {
    let limits = &app.config.rate_limits;
    // The link id as a hash tag: every key of one attempt lives in one Redis Cluster slot.
    let link = format!("{{{}}}", target.link_id);
    let client = format!("{link}:{}", ctx.client_ip);
    let subjects = [
        Subject {
            name: "verifyfail",
            subject: &client,
            limit: limits.verify_failures_per_client,
        },
        Subject {
            name: "verifyfail",
            subject: &link,
            limit: limits.verify_failures_per_link,
        },
    ];
    let slot =
        match app
            .shared_limiter
            .reserve_attempt(
                &format!("verify:{client}"),
                &subjects,
                VERIFY_FAILURE_WINDOW,
                ctx.now_ms,
            )
            .await
        {
            Attempt::Reserved(slot) => slot,
            Attempt::Busy => return Err(too_many(
                "A password check for this link is already in progress, please wait for its answer",
                Decision::one_at_a_time(Duration::from_secs(1)),
            )),
            Attempt::Limited(_, d) => {
                return Err(too_many(
                    "Too many wrong passwords, please try again later",
                    d,
                ))
            }
        };
    // The hash must come from PostgreSQL: caches never hold it.
    let checked = match app.store.find_protected_target(code).await {
        Ok(Some(protected)) => {
            let hash = protected.password_hash.unwrap_or_default();
            app.passwords
                .verify(password, &hash)
                .await
                .map_err(ApiError::from)
        }
        Ok(None) => Err(json_not_found(ApiError::LinkNotFound)),
        Err(e) => Err(e.into()),
    };
    match checked {
        Ok(true) => {
            slot.succeeded().await;
            Ok(())
        }
        Ok(false) => {
            slot.failed().await;
            Err(ApiError::Forbidden("Incorrect password".to_string()))
        }
        // Not an attempt: nothing was checked.
        Err(e) => {
            slot.succeeded().await;
            Err(e)
        }
    }
}

pub async fn rate_limit_status(
    app: &App,
    ctx: &RequestCtx,
    code: &str,
) -> Result<Response<Body>, ApiError> {
    let target = lookup(app, code).await.map_err(json_not_found)?;
    let window_ms = MINUTE_MS;
    let now = ctx.now_ms;
    // Ask Redis for the cluster-wide count; fall back to what this instance has seen.
    let decision = app
        .shared_limiter
        .peek(
            "linkcap",
            &target.link_id.to_string(),
            target.max_clicks_per_min,
            Duration::from_millis(window_ms as u64),
            now,
        )
        .await;
    let local = app
        .hot_limiter
        .peek(HotSubject::Link(target.link_id), window_ms, now);
    let clicks = decision.count.max(local);
    let max = target.max_clicks_per_min as u64;
    let reset =
        chrono::DateTime::from_timestamp_millis(now + decision.reset_after.as_millis() as i64)
            .unwrap_or_default();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "shortCode": target.code,
            "isRateLimited": target.is_rate_limited,
            "maxClicksPerMin": target.max_clicks_per_min,
            "clicksInLastMinute": clicks,
            "remainingClicks": max.saturating_sub(clicks),
            "isCurrentlyLimited": target.is_rate_limited && clicks >= max,
            "resetTime": super::timestamp(reset),
        }),
    ))
}

/// The password page served when no `FRONTEND_URL` is configured.
fn password_form(code: &str) -> Response<Body> {
    // `code` passed ShortCode::parse, so it contains only [A-Za-z0-9_-]: safe in HTML and JS.
    let html = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Protected link</title>
<style>body{{font-family:system-ui,sans-serif;max-width:24rem;margin:4rem auto;padding:0 1rem}}input,button{{font-size:1rem;padding:.5rem;width:100%;box-sizing:border-box;margin-top:.5rem}}#e{{color:#b00}}</style>
</head><body>
<h1>Protected link</h1>
<form id="f"><label for="p">This link needs a password.</label>
<input id="p" name="password" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Continue</button></form>
<p id="e" role="alert"></p>
<script>
document.getElementById('f').addEventListener('submit', async function (ev) {{
  ev.preventDefault();
  var r = await fetch('/api/verify/{code}', {{method: 'POST', headers: {{'Content-Type': 'application/json'}},
    body: JSON.stringify({{password: document.getElementById('p').value}})}});
  var b = await r.json().catch(function () {{ return {{}}; }});
  if (r.ok && b.redirect) {{ window.location.href = b.redirect; }}
  else {{ document.getElementById('e').textContent = b.error || 'Something went wrong'; }}
}});
</script>
</body></html>
"#
    );
    let mut resp = Response::new(full(html));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; form-action 'self'",
        ),
    );
    resp
}

/// The OpenAPI operations of these routes, named by their entries in `routes!`.
pub mod doc {
    use crate::http::openapi::*;
    use serde_json::json;

    /// `GET /{code}`
    pub fn get_redirect() -> Operation {
        redirect_operation("getRedirect", Visit::Get, Path::Short)
    }

    /// `HEAD /{code}`
    pub fn head_redirect() -> Operation {
        redirect_operation("headRedirect", Visit::Head, Path::Short)
    }

    /// `GET /api/{code}`
    pub fn get_api_redirect() -> Operation {
        redirect_operation("getApiRedirect", Visit::Get, Path::Api)
    }

    /// `HEAD /api/{code}`
    pub fn head_api_redirect() -> Operation {
        redirect_operation("headApiRedirect", Visit::Head, Path::Api)
    }

    #[derive(PartialEq)]
    enum Visit {
        Get,
        /// Answered like GET without a body, and no click recorded.
        Head,
    }

    enum Path {
        /// `/{code}`
        Short,
        /// `/api/{code}`, kept for old clients.
        Api,
    }

    const FOLLOWS: &str = "Follows a short link. Codes `api`, `health`, `ready`, `metrics` and every other top-level path the router serves are reserved.";
    const API_PATH: &str = "Same as `/{code}`, kept for old clients. A code that equals a path the router serves under `/api/` (e.g. `links`, `shorten`, `campaigns`, `health`) reaches that route instead; such a link is reachable at `/{code}`.";
    const HEAD_PROBE: &str =
        "HEAD answers like GET without a body and records no click (it is a probe, not a visit).";
    const CLICK_RECORDS: &str = "click records `{linkId, at, region, userAgent, referer}`; region comes from the `cf-ipcountry` header, else `UNKNOWN`.";
    const EXPIRED: &str = "The link has expired (`isExpiring` and `expiresAt` past).";
    const CAPPED: &str = "Per-link cap exceeded (`isRateLimited` and more than `maxClicksPerMin` clicks in the last 60 s) with no `FRONTEND_URL`, or over the per-client-IP limit of 1000 per minute.";
    const NO_DATABASE: &str = "PostgreSQL is unavailable and the link is not cached.";

    /// The four redirect operations: GET or HEAD, on `/{code}` or `/api/{code}`.
    fn redirect_operation(operation_id: &str, visit: Visit, path: Path) -> Operation {
        let head = visit == Visit::Head;
        let mut description = String::new();
        if let Path::Api = path {
            description.push_str(API_PATH);
            description.push(' ');
        }
        description.push_str(FOLLOWS);
        if head {
            description.push(' ');
            description.push_str(HEAD_PROBE);
            description.push_str(" A GET's ");
        } else {
            description.push_str(" A ");
        }
        description.push_str(CLICK_RECORDS);
        let recorded = if head {
            "no click is recorded"
        } else {
            "exactly one click is recorded"
        };
        let summary = if head {
            "Follow a short link (headers only)"
        } else {
            "Follow a short link"
        };
        let moved = || {
            respond(&format!("Known, live link with `redirectType` 302 (the default): `Location` is the destination (the `url` of the first matching redirect rule, else the originalUrl; with `forwardQuery`, the visit's query merged in) and {recorded}. Protected link: `Location` is `{{FRONTEND_URL}}/verify?code={{code}}`. Per-link cap exceeded (with `FRONTEND_URL`): `Location` is `{{FRONTEND_URL}}/rate-limit?code={{code}}`."))
            .header("Location", header("Location"))
            .header("Cache-Control", header_const("Redirects are not cached: a changed or deleted link takes effect at once.", "private, no-store"))
        };
        let other_type = |status: &str| {
            respond(&format!("As 302, for a link whose `redirectType` is {status}. Browsers cache 301 and 308: a repeat visit from the same browser may not reach the server."))
            .header("Location", header("Location"))
            .header("Cache-Control", header_const("Sent with every redirect; browsers still cache 301 and 308 by their own rules.", "private, no-store"))
        };
        let operation = op(operation_id, "redirect", summary)
            .description(Some(description))
            .parameter(code_param())
            .parameter(xhr_param())
            .parameter(x_requested_with_param())
            .response("301", other_type("301"))
            .response("302", moved())
            .response("307", other_type("307"))
            .response("308", other_type("308"));
        let operation = if head {
            operation
                .response("200", respond("The XHR form of the redirect, or the password form of a protected link (see GET); headers only, no click recorded."))
                .response("404", respond("Unknown code."))
                .response("410", respond(EXPIRED))
                .response("429", respond(CAPPED).headers(&RATE_LIMITED))
                .response("503", respond(NO_DATABASE).header("Retry-After", header("Retry-After")))
        } else {
            operation
                .response("200", respond("Either the XHR form of the redirect (`X-Requested-With: XMLHttpRequest` or `?xhr=1`): `{\"redirect\": originalUrl}` with one click recorded; or, for a protected link when no `FRONTEND_URL` is configured, a small HTML password form that posts to `POST /api/verify/{code}`.")
                    .content("application/json", content(schema("Redirect"), Some(json!({"redirect": "https://example.com/page"}))))
                    .content("text/html", content(text(), None)))
                .response("404", respond("Unknown code.")
                    .content("text/plain", content(text_const("Link not found"), Some(json!("Link not found")))))
                .response("410", error(EXPIRED, "Link has expired"))
                .response("429", error(CAPPED, "This link has reached its click limit, please try again later").headers(&RATE_LIMITED))
                .response("503", error(NO_DATABASE, "Database unavailable, please retry shortly").header("Retry-After", header("Retry-After")))
        };
        operation.build()
    }

    /// `POST /api/verify/{code}`
    pub fn verify_link() -> Operation {
        op("verifyLink", "redirect", "Unlock a password-protected link").reads_body()
            .description(Some("Unlocks a protected link with its password. An unprotected link answers 200 with the redirect and needs no password (and no body). Wrong passwords are throttled per link and client and per link; only one check per link and client runs at a time."))
            .parameter(code_param())
            .request_body(Some(json_body("VerifyRequest", false)))
            .response("200", respond("Correct password (or the link is not protected): the destination (the `url` of the first redirect rule that matches this browser, else the originalUrl), with one click recorded.")
                .content("application/json", content(schema("Redirect"), Some(json!({"redirect": "https://example.com/page"})))))
            .response("400", error("The link is protected and `password` is missing, null or empty; or the body is not a JSON object, or malformed JSON.", "Password required"))
            .response("403", error("Wrong password.", "Incorrect password"))
            .response("404", error("Unknown code.", "Link not found"))
            .response("410", error("The link has expired.", "Link has expired"))
            .response("429", error("Per-link cap exceeded; too many wrong passwords (per link and client, and per link); another password check for this link from this client is still in flight (`Retry-After: 1`); or over the per-client-IP limit of 1000 per minute.", "Too many wrong passwords, please try again later")
                .headers(&RATE_LIMITED))
            .response("503", shared("PasswordChecksBusy"))
            .build()
    }

    /// `GET /api/rate-limit-status/{code}`
    pub fn get_rate_limit_status() -> Operation {
        op("getRateLimitStatus", "links", "Per-link click cap status")
            .description(Some("No API key needed."))
            .parameter(code_param())
            .response(
                "200",
                respond("Status of the link's per-link cap.")
                    .content("application/json", content(schema("RateLimitStatus"), None)),
            )
            .response("404", error("Unknown code.", "Link not found"))
            .response("503", shared("ServiceUnavailable"))
            .build()
    }
}

//! HTTP: the route table, dispatch, and what every response carries (security headers,
//! request id, CORS), on hyper 1.x with `matchit` for path matching.
//!
//! [`ROUTES`] is the single source of truth for paths and methods: the router is built from
//! it, the reserved short codes are derived from it, metrics label requests with its names,
//! and a test compares it with the OpenAPI document in both directions.
//! Architecture invariant: `http` imports neither sqlx nor redis.

pub mod edge;
pub mod error;
pub mod request;
pub mod routes;
pub mod server;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use http::{header, HeaderValue, Method, Request, Response, StatusCode};

use crate::app::{in_flight_guard, App};
pub use error::{ApiError, Body};
use request::RequestCtx;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Redirect,
    ApiRedirect,
    Verify,
    Shorten,
    Links,
    Link,
    TopLinks,
    RateLimitStatus,
    LinkAnalytics,
    GlobalAnalytics,
    StatsOverview,
    Campaigns,
    Campaign,
    CampaignLink,
    GenerateKey,
    AuthMe,
    DeveloperSettings,
    Webhook,
    Metadata,
    Health,
    Ready,
    SystemHealth,
    OpenApi,
    Metrics,
}

pub struct RouteSpec {
    pub path: &'static str,
    pub methods: &'static [Method],
    pub route: Route,
    /// The `route` label in metrics and logs.
    pub name: &'static str,
}

const GET_HEAD: &[Method] = &[Method::GET, Method::HEAD];
const GET: &[Method] = &[Method::GET];
const POST: &[Method] = &[Method::POST];
const PATCH: &[Method] = &[Method::PATCH];
const GET_POST: &[Method] = &[Method::GET, Method::POST];
const GET_PATCH_DELETE: &[Method] = &[Method::GET, Method::PATCH, Method::DELETE];

macro_rules! route {
    ($path:expr, $methods:expr, $route:ident, $name:expr) => {
        RouteSpec {
            path: $path,
            methods: $methods,
            route: Route::$route,
            name: $name,
        }
    };
}

pub static ROUTES: &[RouteSpec] = &[
    route!("/{code}", GET_HEAD, Redirect, "redirect"),
    route!("/api/{code}", GET_HEAD, ApiRedirect, "redirect_api"),
    route!("/api/verify/{code}", POST, Verify, "verify"),
    route!("/api/shorten", POST, Shorten, "shorten"),
    route!("/api/links", GET, Links, "links_list"),
    route!("/api/links/{id}", GET_PATCH_DELETE, Link, "link"),
    route!("/api/top-links", GET, TopLinks, "top_links"),
    route!(
        "/api/rate-limit-status/{code}",
        GET,
        RateLimitStatus,
        "rate_limit_status"
    ),
    route!(
        "/api/analytics/{code}",
        GET,
        LinkAnalytics,
        "analytics_link"
    ),
    route!(
        "/api/analytics/global",
        GET,
        GlobalAnalytics,
        "analytics_global"
    ),
    route!("/api/stats/overview", GET, StatsOverview, "stats_overview"),
    route!("/api/campaigns", GET_POST, Campaigns, "campaigns"),
    route!(
        "/api/campaigns/{id}",
        GET_PATCH_DELETE,
        Campaign,
        "campaign"
    ),
    route!("/api/campaigns/link", POST, CampaignLink, "campaign_link"),
    route!("/api/generate-key", POST, GenerateKey, "generate_key"),
    route!("/api/auth/me", GET, AuthMe, "auth_me"),
    route!(
        "/api/settings/developer",
        GET,
        DeveloperSettings,
        "settings_developer"
    ),
    route!(
        "/api/settings/developer/webhook",
        PATCH,
        Webhook,
        "settings_webhook"
    ),
    route!("/api/metadata", POST, Metadata, "metadata"),
    route!("/health", GET, Health, "health"),
    route!("/api/health", GET, Health, "health"),
    route!("/ready", GET, Ready, "ready"),
    route!("/api/ready", GET, Ready, "ready"),
    route!("/api/system/health", GET, SystemHealth, "system_health"),
    route!("/api/openapi.json", GET, OpenApi, "openapi"),
    route!("/metrics", GET, Metrics, "metrics"),
];

impl RouteSpec {
    /// Whether the route answers `method`: its own methods, and HEAD wherever GET is served
    /// (answered like GET, without the body).
    pub fn serves(&self, method: &Method) -> bool {
        self.methods.contains(method)
            || (*method == Method::HEAD && self.methods.contains(&Method::GET))
    }

    /// The `Allow` header: the route's methods, HEAD with GET, and OPTIONS.
    pub fn allow(&self) -> &'static HeaderValue {
        static ALLOW: OnceLock<Vec<HeaderValue>> = OnceLock::new();
        let all = ALLOW.get_or_init(|| {
            ROUTES
                .iter()
                .map(|r| {
                    let mut names: Vec<&str> = Vec::new();
                    for m in r.methods {
                        names.push(m.as_str());
                        if *m == Method::GET && !r.methods.contains(&Method::HEAD) {
                            names.push("HEAD");
                        }
                    }
                    names.push("OPTIONS");
                    HeaderValue::from_str(&names.join(", "))
                        .unwrap_or_else(|_| HeaderValue::from_static("OPTIONS"))
                })
                .collect()
        });
        let idx = ROUTES
            .iter()
            .position(|r| std::ptr::eq(r, self))
            .unwrap_or(0);
        &all[idx]
    }
}

/// The headers every response carries, the router's and the edge's (see [`edge`]).
pub const SECURITY_HEADERS: [(&str, &str); 3] = [
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    (
        "strict-transport-security",
        "max-age=31536000; includeSubDomains",
    ),
];

/// Metric label for requests that matched no route.
const UNMATCHED: &str = "unmatched";

/// Route names indexed like [`ROUTES`], plus [`UNMATCHED`] last.
pub fn route_names() -> Vec<&'static str> {
    ROUTES
        .iter()
        .map(|r| r.name)
        .chain(std::iter::once(UNMATCHED))
        .collect()
}

/// Top-level path segments the router serves; a custom code may not take one.
pub fn is_reserved_code(code: &str) -> bool {
    ROUTES.iter().any(|r| {
        let first = r
            .path
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or("");
        !first.starts_with('{') && first.eq_ignore_ascii_case(code)
    })
}

fn router() -> &'static matchit::Router<usize> {
    static ROUTER: OnceLock<matchit::Router<usize>> = OnceLock::new();
    ROUTER.get_or_init(|| {
        let mut r = matchit::Router::new();
        for (i, spec) in ROUTES.iter().enumerate() {
            // The table is static and covered by tests; a conflict is a programming error.
            #[allow(clippy::expect_used)]
            r.insert(spec.path, i)
                .expect("route table has no conflicts");
        }
        r
    })
}

/// Path parameter of a matched route (`code` or `id`).
pub struct PathParam(pub String);

static REQUEST_COUNTER: AtomicU64 = AtomicU64::new(0);

fn request_id(incoming: Option<&HeaderValue>) -> HeaderValue {
    if let Some(v) = incoming {
        if let Ok(s) = v.to_str() {
            if !s.is_empty()
                && s.len() <= 128
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
            {
                return v.clone();
            }
        }
    }
    new_request_id()
}

/// A request id of this process: a random prefix per process and a counter.
pub fn new_request_id() -> HeaderValue {
    static PREFIX: OnceLock<String> = OnceLock::new();
    let prefix = PREFIX.get_or_init(|| format!("{:08x}", rand::random::<u32>()));
    let n = REQUEST_COUNTER.fetch_add(1, Ordering::Relaxed);
    HeaderValue::from_str(&format!("{prefix}-{n:x}"))
        .unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// Serves one request. Never fails: every error becomes a response.
pub async fn handle<B>(app: App, req: Request<B>, peer: SocketAddr) -> Response<Body>
where
    B: hyper::body::Body + Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let started = Instant::now();
    let _in_flight = in_flight_guard(&app);
    let (parts, body) = req.into_parts();
    let rid = request_id(parts.headers.get("x-request-id"));
    let origin = parts.headers.get(header::ORIGIN).cloned();
    let method = parts.method.clone();
    let version = parts.version;
    let client_ip = request::client_ip(peer, &parts.headers, app.config.http.trust_proxy);
    let matched = router().at(parts.uri.path()).ok().map(|m| {
        let param = m.params.iter().next().map(|(_, v)| v.to_string());
        (*m.value, param)
    });
    let route_idx = matched.as_ref().map(|(i, _)| *i).unwrap_or(ROUTES.len());
    let ctx = RequestCtx {
        parts,
        client_ip,
        now_ms: chrono::Utc::now().timestamp_millis(),
    };

    let mut resp = match matched {
        None => error::json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"error": "Not found"}),
        ),
        Some((idx, param)) => {
            let spec = &ROUTES[idx];
            if method == Method::OPTIONS {
                let mut r = error::empty(StatusCode::NO_CONTENT);
                r.headers_mut().insert(header::ALLOW, spec.allow().clone());
                r
            } else if !spec.serves(&method) {
                ApiError::MethodNotAllowed(spec.allow()).into_response()
            } else {
                let param = PathParam(param.unwrap_or_default());
                match routes::dispatch(&app, spec.route, ctx, param, body, started).await {
                    Ok(r) => r,
                    Err(e) => {
                        if let ApiError::Internal(detail) = &e {
                            tracing::error!(
                                request_id = rid.to_str().unwrap_or(""),
                                route = spec.name,
                                error = %detail,
                                "request failed"
                            );
                        }
                        e.into_response()
                    }
                }
            }
        }
    };

    decorate(&app, &mut resp, rid.clone(), origin.as_ref(), &method);
    if app.stopping.load(Ordering::Relaxed) && version <= http::Version::HTTP_11 {
        // Draining: tell a keep-alive client to reconnect (to another instance) after this
        // answer, rather than have it send its next request into our closing connection.
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let status = resp.status().as_u16();
    let elapsed = started.elapsed();
    app.metrics.observe_request(route_idx, status, elapsed);
    if app.config.process.access_log {
        tracing::info!(
            target: "boltlink::access",
            request_id = rid.to_str().unwrap_or(""),
            route = ROUTES.get(route_idx).map(|r| r.name).unwrap_or(UNMATCHED),
            http.method = %method,
            http.status = status,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            "request served"
        );
    }
    resp
}

/// Headers every response carries, and CORS for allowed origins.
fn decorate(
    app: &App,
    resp: &mut Response<Body>,
    rid: HeaderValue,
    origin: Option<&HeaderValue>,
    method: &Method,
) {
    let h = resp.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        h.insert(name, HeaderValue::from_static(value));
    }
    h.insert("x-request-id", rid);
    let Some(origin) = origin.and_then(|o| o.to_str().ok()) else {
        return;
    };
    let Some(grant) = app.config.http.allowed_origins.allow(origin) else {
        return;
    };
    if let Ok(v) = HeaderValue::from_str(origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        if grant.credentials {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("X-Total-Count, X-Request-Id"),
        );
        h.append(header::VARY, HeaderValue::from_static("Origin"));
        if method == Method::OPTIONS {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, POST, PUT, DELETE, PATCH, OPTIONS"),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("Content-Type, Authorization, x-api-key"),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("3600"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_table_builds_a_router() {
        let r = router();
        assert_eq!(
            ROUTES[*r.at("/abc").expect("match").value].route,
            Route::Redirect
        );
        assert_eq!(
            ROUTES[*r.at("/api/abc").expect("match").value].route,
            Route::ApiRedirect
        );
        assert_eq!(
            ROUTES[*r.at("/api/analytics/global").expect("match").value].route,
            Route::GlobalAnalytics
        );
        assert_eq!(
            ROUTES[*r.at("/api/analytics/abc").expect("match").value].route,
            Route::LinkAnalytics
        );
        assert_eq!(
            ROUTES[*r.at("/api/campaigns/link").expect("match").value].route,
            Route::CampaignLink
        );
        assert_eq!(
            ROUTES[*r.at("/health").expect("match").value].route,
            Route::Health
        );
        assert!(r.at("/a/b/c/d").is_err());
    }

    #[test]
    fn top_level_paths_are_reserved_codes() {
        for code in ["api", "health", "ready", "metrics", "API"] {
            assert!(is_reserved_code(code), "{code}");
        }
        assert!(!is_reserved_code("hello"));
    }

    #[test]
    fn request_ids_are_taken_when_sane_and_generated_otherwise() {
        let sane = HeaderValue::from_static("abc-123");
        assert_eq!(request_id(Some(&sane)), sane);
        let insane = HeaderValue::from_static("has spaces and <tags>");
        assert_ne!(request_id(Some(&insane)), insane);
        assert_ne!(request_id(None), request_id(None));
    }
}

//! HTTP: the route table, dispatch, and what every response carries (security headers,
//! request id, CORS), on hyper 1.x with `matchit` for path matching.
//!
//! Routes are declared once, in the `routes!` invocation of [`routes`]: it expands to the
//! [`ROUTES`] table, the [`Route`] enum and the dispatch `match`. The router, `Allow`, the
//! reserved short codes and the metric names come from the table ([`mod@router`]), and so does the
//! OpenAPI document ([`openapi`], generated with `utoipa`; body schemas in [`schema`]).
//! Architecture invariant: `http` imports neither sqlx nor redis.

pub mod balance;
pub mod body;
pub mod edge;
pub mod error;
pub mod openapi;
pub mod request;
pub mod router;
pub mod routes;
pub mod schema;
pub mod server;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use http::{header, HeaderValue, Method, Request, Response, StatusCode};

use crate::app::{in_flight_guard, App};
pub use error::{ApiError, Body};
use request::RequestCtx;
pub use router::{is_reserved_code, route_names, RouteSpec};
use router::{router, UNMATCHED};
pub use routes::{Route, ROUTES};

/// The headers every response carries, the router's and the edge's (see [`edge`]).
pub const SECURITY_HEADERS: [(&str, &str); 3] = [
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    (
        "strict-transport-security",
        "max-age=31536000; includeSubDomains",
    ),
];

/// [`SECURITY_HEADERS`] parsed once: inserting them costs no parsing or allocation per
/// response (every name is one of the `http` crate's standard headers, every value static).
fn security_headers() -> &'static [(header::HeaderName, HeaderValue)] {
    static PARSED: OnceLock<Vec<(header::HeaderName, HeaderValue)>> = OnceLock::new();
    PARSED.get_or_init(|| {
        SECURITY_HEADERS
            .iter()
            .map(|(name, value)| {
                (
                    header::HeaderName::from_static(name),
                    HeaderValue::from_static(value),
                )
            })
            .collect()
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
    let prefix = PREFIX.get_or_init(|| format!("{:08x}-", rand::random::<u32>()));
    let n = REQUEST_COUNTER.fetch_add(1, Ordering::Relaxed);
    // One allocation, no formatting machinery: this runs on every request.
    let mut id = Vec::with_capacity(prefix.len() + 16);
    id.extend_from_slice(prefix.as_bytes());
    let digits = (64 - n.leading_zeros()).div_ceil(4).max(1);
    for i in (0..digits).rev() {
        id.push(b"0123456789abcdef"[((n >> (4 * i)) & 0xf) as usize]);
    }
    HeaderValue::from_maybe_shared(bytes::Bytes::from(id))
        .unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// Serves one request. Never fails: every error becomes a response.
pub async fn handle<B>(app: App, req: Request<B>, peer: SocketAddr) -> Response<Body>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
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
        caller: std::sync::OnceLock::new(),
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
                match routes::dispatch(&app, spec, ctx, param, body, started).await {
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
    for (name, value) in security_headers() {
        h.insert(name.clone(), value.clone());
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
    fn request_ids_are_taken_when_sane_and_generated_otherwise() {
        let sane = HeaderValue::from_static("abc-123");
        assert_eq!(request_id(Some(&sane)), sane);
        let insane = HeaderValue::from_static("has spaces and <tags>");
        assert_ne!(request_id(Some(&insane)), insane);
        assert_ne!(request_id(None), request_id(None));
    }

    #[test]
    fn generated_request_ids_are_the_process_prefix_and_the_counter_in_hex() {
        let a = new_request_id();
        let b = new_request_id();
        let (pa, na) = a
            .to_str()
            .expect("ascii")
            .split_once('-')
            .expect("prefix-n");
        let (pb, nb) = b
            .to_str()
            .expect("ascii")
            .split_once('-')
            .expect("prefix-n");
        assert_eq!(pa, pb);
        assert_eq!(pa.len(), 8);
        assert!(pa.bytes().all(|c| c.is_ascii_hexdigit()));
        let na = u64::from_str_radix(na, 16).expect("hex");
        let nb = u64::from_str_radix(nb, 16).expect("hex");
        assert!(nb > na, "{na} then {nb}");
        // The counter's digits at the edges: 0, one digit, and all sixteen.
        REQUEST_COUNTER.store(u64::MAX, Ordering::Relaxed);
        assert!(new_request_id()
            .to_str()
            .expect("ascii")
            .ends_with("-ffffffffffffffff"));
        assert!(new_request_id().to_str().expect("ascii").ends_with("-0"));
        assert!(new_request_id().to_str().expect("ascii").ends_with("-1"));
    }

    #[test]
    fn every_response_gets_the_security_headers() {
        assert_eq!(security_headers().len(), SECURITY_HEADERS.len());
        for ((name, value), (want_name, want_value)) in
            security_headers().iter().zip(SECURITY_HEADERS)
        {
            assert_eq!(name.as_str(), want_name);
            assert_eq!(value, want_value);
        }
    }
}

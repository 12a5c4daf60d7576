//! axum 0.8 + tower-http 0.6 doing what BoltLink's edge does for a redirect: the same 26 routes,
//! `/{code}` answering 302 with a Location built from the code, the three security headers,
//! and an `X-Request-Id` (a counter, as cheap as BoltLink's) set and propagated.
use axum::{
    extract::Path,
    http::{header, HeaderValue, StatusCode},
    response::IntoResponse,
    routing::get,
    Router,
};
use tower_http::{
    request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer},
    set_header::SetResponseHeaderLayer,
};

async fn redirect(Path(code): Path<String>) -> impl IntoResponse {
    let loc = HeaderValue::from_str(&format!("https://example.com/{code}"))
        .unwrap_or(HeaderValue::from_static("https://example.com/"));
    (StatusCode::FOUND, [(header::LOCATION, loc)])
}
async fn other() -> &'static str {
    "x"
}

fn main() {
    let addr: std::net::SocketAddr = std::env::args().nth(1).unwrap().parse().unwrap();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async move {
            let mut app = Router::new();
            for p in [
                "/api/shorten",
                "/api/links",
                "/api/links/{code}",
                "/api/links/top",
                "/api/analytics/{code}",
                "/api/analytics/global",
                "/api/stats/overview",
                "/api/campaigns",
                "/api/campaigns/{id}",
                "/api/campaigns/link",
                "/api/generate-key",
                "/api/auth/me",
                "/api/settings/developer",
                "/api/settings/developer/webhook",
                "/api/metadata",
                "/health",
                "/api/health",
                "/ready",
                "/api/ready",
                "/api/system/health",
                "/api/openapi.json",
                "/metrics",
                "/api/verify/{code}",
                "/api/rate-limit/{code}",
                "/api/r/{code}",
            ] {
                app = app.route(p, get(other));
            }
            let app = app
                .route("/{code}", get(redirect))
                .layer(SetResponseHeaderLayer::overriding(
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ))
                .layer(SetResponseHeaderLayer::overriding(
                    header::X_FRAME_OPTIONS,
                    HeaderValue::from_static("DENY"),
                ))
                .layer(SetResponseHeaderLayer::overriding(
                    header::STRICT_TRANSPORT_SECURITY,
                    HeaderValue::from_static("max-age=31536000; includeSubDomains"),
                ))
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(SetRequestIdLayer::x_request_id(Counter));
            use axum::serve::ListenerExt;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .unwrap()
                .tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                });
            axum::serve(listener, app).await.unwrap();
        });
}

static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
#[derive(Clone, Copy)]
struct Counter;
impl MakeRequestId for Counter {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some(RequestId::new(
            HeaderValue::from_str(&format!("{id:016x}")).unwrap(),
        ))
    }
}

//! hyper + matchit with the same 26 routes, the three security headers and an X-Request-Id,
//! as BoltLink's edge does it (static dispatch, no tower).
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{header, header::HeaderValue, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

static NEXT: AtomicU64 = AtomicU64::new(1);
fn router() -> &'static matchit::Router<usize> {
    static R: OnceLock<matchit::Router<usize>> = OnceLock::new();
    R.get_or_init(|| {
        let mut r = matchit::Router::new();
        for (i, p) in [
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
            "/{code}",
        ]
        .iter()
        .enumerate()
        {
            r.insert(*p, i).unwrap();
        }
        r
    })
}

fn main() {
    let addr: std::net::SocketAddr = std::env::args().nth(1).unwrap().parse().unwrap();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async move {
            let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder.http1().keep_alive(true);
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let _ = stream.set_nodelay(true);
                let conn = builder
                    .serve_connection(
                        TokioIo::new(stream),
                        service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                            let mut resp = Response::new(Full::new(Bytes::new()));
                            match router().at(req.uri().path()) {
                                Ok(m) if *m.value == 25 => {
                                    let code = m.params.get("code").unwrap_or("");
                                    *resp.status_mut() = StatusCode::FOUND;
                                    resp.headers_mut().insert(
                                        header::LOCATION,
                                        HeaderValue::from_str(&format!(
                                            "https://example.com/{code}"
                                        ))
                                        .unwrap(),
                                    );
                                }
                                Ok(_) => {}
                                Err(_) => *resp.status_mut() = StatusCode::NOT_FOUND,
                            }
                            let h = resp.headers_mut();
                            h.insert(
                                header::X_CONTENT_TYPE_OPTIONS,
                                HeaderValue::from_static("nosniff"),
                            );
                            h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
                            h.insert(
                                header::STRICT_TRANSPORT_SECURITY,
                                HeaderValue::from_static("max-age=31536000; includeSubDomains"),
                            );
                            let id = NEXT.fetch_add(1, Ordering::Relaxed);
                            h.insert(
                                "x-request-id",
                                HeaderValue::from_str(&format!("{id:016x}")).unwrap(),
                            );
                            Ok::<_, Infallible>(resp)
                        }),
                    )
                    .into_owned();
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
        });
}

//! The HTTP side of a metadata fetch: one pinned client per hop, redirects followed by hand,
//! the whole fetch under one deadline, the body read up to a cap and decoded by its charset.

use std::sync::Arc;

use bytes::Bytes;
use reqwest::header::{HeaderValue, ACCEPT, CONTENT_TYPE, LOCATION};
use reqwest::{redirect, StatusCode};
use url::Url;

use super::extract::{extract_metadata, sniff_meta_charset};
use super::policy::{checked_destination, require_http_url, Destination};
use super::{FetchPolicy, MetadataError, PageMetadata};

/// Sent with every request so site owners can tell what is fetching their pages.
const USER_AGENT: &str = "BoltLink-Metadata/0.1 (+link preview)";
const ACCEPT_HTML: &str = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.1";

/// Fetches `url` (following redirects) and extracts its metadata, all within
/// [`FetchPolicy::timeout`].
pub(super) async fn fetch(policy: &FetchPolicy, url: &Url) -> Result<PageMetadata, MetadataError> {
    require_http_url(url)?;
    match tokio::time::timeout(policy.timeout, fetch_without_deadline(policy, url)).await {
        Ok(result) => result,
        Err(_elapsed) => Err(MetadataError::Timeout),
    }
}

async fn fetch_without_deadline(
    policy: &FetchPolicy,
    url: &Url,
) -> Result<PageMetadata, MetadataError> {
    let mut current = url.clone();
    let mut redirects_followed = 0;
    loop {
        let response = send_one_hop(policy, &current).await?;
        let status = response.status();
        if is_followed_redirect(status) {
            // A redirect status without a Location is a final answer like any other 3xx.
            if let Some(location) = response.headers().get(LOCATION) {
                if redirects_followed >= policy.max_redirects {
                    return Err(MetadataError::TooManyRedirects);
                }
                current = redirect_target(&current, location)?;
                redirects_followed += 1;
                tracing::debug!(
                    metadata.redirects = redirects_followed,
                    "metadata fetch follows a redirect"
                );
                continue;
            }
        }
        if !status.is_success() {
            return Err(MetadataError::UpstreamStatus(status.as_u16()));
        }
        return read_metadata(policy, response, current).await;
    }
}

/// Checks where `url` would connect, then sends one GET there and nowhere else.
async fn send_one_hop(policy: &FetchPolicy, url: &Url) -> Result<reqwest::Response, MetadataError> {
    pinned_client(policy, url)
        .await?
        .get(url.clone())
        .header(ACCEPT, ACCEPT_HTML)
        .send()
        .await
        .map_err(network_error)
}

/// Checks where `url` would connect; a client that connects there and nowhere else.
async fn pinned_client(policy: &FetchPolicy, url: &Url) -> Result<reqwest::Client, MetadataError> {
    match checked_destination(&policy.allowed_addrs, url).await? {
        // reqwest connects to IP literals directly, without any resolver.
        Destination::Literal => build_client(None),
        // Pin the connection to exactly the checked addresses: no later lookup can swap in
        // another one (DNS rebinding).
        Destination::Resolved { domain, addrs } => build_client(Some((&domain, &addrs))),
    }
}

/// POSTs `body` to `url` once (a webhook delivery): the address rules as for a page unless
/// `open`, no redirect followed (a 3xx is an answer like any other), everything within
/// [`FetchPolicy::timeout`]. Returns the answer's status; its body is not read.
pub(super) async fn post_once(
    policy: &FetchPolicy,
    url: &Url,
    headers: reqwest::header::HeaderMap,
    body: Bytes,
    open: bool,
) -> Result<StatusCode, MetadataError> {
    require_http_url(url)?;
    let send = async {
        let client = if open {
            open_client()?
        } else {
            pinned_client(policy, url).await?
        };
        client
            .post(url.clone())
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(network_error)
    };
    match tokio::time::timeout(policy.timeout, send).await {
        Ok(response) => response.map(|r| r.status()),
        Err(_elapsed) => Err(MetadataError::Timeout),
    }
}

/// A client with the system's resolver and no address check, for an operator who allowed
/// private destinations (`WEBHOOK_ALLOW_PRIVATE`). Still no proxy and no redirects.
fn open_client() -> Result<reqwest::Client, MetadataError> {
    reqwest::Client::builder()
        .redirect(redirect::Policy::none())
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .map_err(|error| {
            MetadataError::Network(format!(
                "could not set up the HTTP client: {}",
                error_chain(&error)
            ))
        })
}

fn is_followed_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

fn redirect_target(current: &Url, location: &HeaderValue) -> Result<Url, MetadataError> {
    // Some servers send raw UTF-8 in Location; `Url::join` percent-encodes it.
    let location = String::from_utf8_lossy(location.as_bytes());
    let next = current.join(location.trim()).map_err(|error| {
        MetadataError::InvalidUrl(format!(
            "the page redirected to {location:?}, which is not a valid URL: {error}"
        ))
    })?;
    require_http_url(&next)?;
    Ok(next)
}

/// A client for one hop. `pinned` maps the hop's host name to the addresses we checked.
/// Building a client per hop costs a little (TLS roots are loaded again) but is the only way
/// reqwest offers to tie one request to one set of addresses; link previews are rare enough.
/// Proxies from the environment are ignored: a proxy would resolve names itself, after our
/// check.
pub(super) fn build_client(
    pinned: Option<(&str, &[std::net::SocketAddr])>,
) -> Result<reqwest::Client, MetadataError> {
    let mut builder = reqwest::Client::builder()
        .redirect(redirect::Policy::none())
        .no_proxy()
        .dns_resolver(Arc::new(RefuseToResolve))
        .pool_max_idle_per_host(0)
        .user_agent(USER_AGENT);
    if let Some((domain, addrs)) = pinned {
        builder = builder.resolve_to_addrs(domain, addrs);
    }
    builder.build().map_err(|error| {
        MetadataError::Network(format!(
            "could not set up the HTTP client: {}",
            error_chain(&error)
        ))
    })
}

/// The resolver behind the pinned addresses. It is never meant to be reached: if it were
/// (a name we did not pin), resolving here would skip the address check, so it refuses.
struct RefuseToResolve;

impl reqwest::dns::Resolve for RefuseToResolve {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let message = format!(
            "refusing to resolve {} outside the address check",
            name.as_str()
        );
        Box::pin(std::future::ready(Err(message.into())))
    }
}

fn network_error(error: reqwest::Error) -> MetadataError {
    if error.is_timeout() {
        return MetadataError::Timeout;
    }
    MetadataError::Network(error_chain(&error))
}

/// `error: cause: cause…`, because reqwest's own message hides the useful part in `source()`.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

async fn read_metadata(
    policy: &FetchPolicy,
    response: reqwest::Response,
    final_url: Url,
) -> Result<PageMetadata, MetadataError> {
    let content_type = response.headers().get(CONTENT_TYPE).cloned();
    if !is_html(content_type.as_ref()) {
        return Ok(PageMetadata {
            title: None,
            description: None,
            favicon: None,
            url: final_url.to_string(),
        });
    }
    let body = read_capped_body(response, policy.max_bytes).await?;
    let html = decode_html(body, content_type).await;
    let (title, description, favicon) = extract_metadata(&html, &final_url);
    Ok(PageMetadata {
        title,
        description,
        favicon,
        url: final_url.to_string(),
    })
}

/// HTML, XHTML, or no declared type (many small servers send none).
fn is_html(content_type: Option<&HeaderValue>) -> bool {
    let Some(value) = content_type else {
        return true;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence.is_empty()
        || essence.eq_ignore_ascii_case("text/html")
        || essence.eq_ignore_ascii_case("application/xhtml+xml")
}

/// Reads the body chunk by chunk and stops at `max_bytes`: a huge page is not an error, we
/// just never read past the cap. A connection that breaks after some bytes still leaves us
/// a usable head of the page, so only a failure before any byte is an error.
async fn read_capped_body(
    mut response: reqwest::Response,
    max_bytes: usize,
) -> Result<Vec<u8>, MetadataError> {
    let mut body = Vec::new();
    while body.len() < max_bytes {
        let chunk = match response.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(error) if body.is_empty() => return Err(network_error(error)),
            Err(_) => break,
        };
        let room = max_bytes - body.len();
        body.extend_from_slice(chunk.get(..room).unwrap_or(&chunk));
    }
    if body.len() >= max_bytes {
        tracing::debug!(
            metadata.max_bytes = max_bytes,
            "page body reached the size cap; parsing the part read"
        );
    }
    Ok(body)
}

/// Decodes the body with the charset of the Content-Type header, else of `<meta charset>`,
/// else UTF-8 (a BOM wins over all of them). reqwest's `charset` feature does the decoding;
/// we hand it an in-memory response so it never reads past our cap.
async fn decode_html(body: Vec<u8>, content_type: Option<HeaderValue>) -> String {
    let default_charset = sniff_meta_charset(&body).unwrap_or_else(|| "utf-8".to_owned());
    let body = Bytes::from(body);
    let mut response = http::Response::new(body.clone());
    if let Some(content_type) = content_type {
        response.headers_mut().insert(CONTENT_TYPE, content_type);
    }
    match reqwest::Response::from(response)
        .text_with_charset(&default_charset)
        .await
    {
        Ok(text) => text,
        Err(_) => String::from_utf8_lossy(&body).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use crate::metadata::MetadataFetcher;

    fn url(text: &str) -> Url {
        Url::parse(text).expect("test URLs are valid")
    }

    #[test]
    fn html_content_types_are_recognised() {
        let header = |value: &'static str| HeaderValue::from_static(value);
        assert!(is_html(None));
        assert!(is_html(Some(&header("text/html"))));
        assert!(is_html(Some(&header("Text/HTML; charset=utf-8"))));
        assert!(is_html(Some(&header("application/xhtml+xml"))));
        assert!(!is_html(Some(&header("application/json"))));
        assert!(!is_html(Some(&header("image/png"))));
    }

    // --- fetching, against a tiny HTTP/1.1 server on 127.0.0.1:0 ---

    fn http_response(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
        let mut response = format!("HTTP/1.1 {status}\r\n");
        for (name, value) in headers {
            response.push_str(&format!("{name}: {value}\r\n"));
        }
        response.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        ));
        let mut response = response.into_bytes();
        response.extend_from_slice(body);
        response
    }

    fn redirect_to(location: &str) -> Vec<u8> {
        http_response("302 Found", &[("Location", location)], b"")
    }

    fn html_page(body: &str) -> Vec<u8> {
        http_response(
            "200 OK",
            &[("Content-Type", "text/html; charset=utf-8")],
            body.as_bytes(),
        )
    }

    /// The path of the request line, once the whole request head has arrived.
    async fn read_request_path(stream: &mut TcpStream) -> Option<String> {
        let mut head = Vec::new();
        let mut buffer = [0_u8; 1024];
        while !head.windows(4).any(|window| window == b"\r\n\r\n") && head.len() < 16 * 1024 {
            let read = stream.read(&mut buffer).await.ok()?;
            if read == 0 {
                return None;
            }
            head.extend_from_slice(&buffer[..read]);
        }
        let head = String::from_utf8_lossy(&head);
        head.split_whitespace().nth(1).map(str::to_owned)
    }

    /// Serves every request with `respond(path)`. The listener is bound before this returns,
    /// so tests need no sleeps.
    async fn spawn_server<F>(respond: F) -> SocketAddr
    where
        F: Fn(&str) -> Vec<u8> + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind test server");
        let addr = listener.local_addr().expect("test server address");
        let respond = Arc::new(respond);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let respond = Arc::clone(&respond);
                tokio::spawn(async move {
                    if let Some(path) = read_request_path(&mut stream).await {
                        let _ = stream.write_all(&respond(&path)).await;
                        let _ = stream.shutdown().await;
                    }
                });
            }
        });
        addr
    }

    /// Accepts connections and never answers them.
    async fn spawn_silent_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind test server");
        let addr = listener.local_addr().expect("test server address");
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        addr
    }

    fn fetcher_allowing(allowed_addrs: Vec<SocketAddr>) -> MetadataFetcher {
        MetadataFetcher::new(FetchPolicy {
            allowed_addrs,
            ..FetchPolicy::default()
        })
        .expect("the HTTP client builds")
    }

    fn page_url(addr: SocketAddr, path: &str) -> Url {
        url(&format!("http://{addr}{path}"))
    }

    #[tokio::test]
    async fn a_hop_client_connects_only_to_the_pinned_addresses() {
        let addr = spawn_server(|_| html_page("<title>pinned</title>")).await;
        let target = format!("http://pinned.invalid:{}/", addr.port());

        let pinned = build_client(Some(("pinned.invalid", &[addr]))).expect("client builds");
        let response = pinned
            .get(&target)
            .send()
            .await
            .expect("the pinned address answers");
        assert!(response.status().is_success());

        // Without a pin, no name is ever resolved: there is no second lookup to rebind.
        let unpinned = build_client(None).expect("client builds");
        let error = unpinned
            .get(&target)
            .send()
            .await
            .expect_err("an unpinned name is not resolved");
        assert!(
            error_chain(&error).contains("refusing to resolve pinned.invalid"),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn fetching_loopback_without_an_allowlist_is_refused() {
        let served = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&served);
        let addr = spawn_server(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
            html_page("<title>secret</title>")
        })
        .await;

        let error = fetcher_allowing(Vec::new())
            .fetch(&page_url(addr, "/"))
            .await
            .expect_err("loopback must be refused");

        assert!(
            matches!(&error, MetadataError::ForbiddenAddress(why) if why == "host 127.0.0.1 resolves to a loopback address"),
            "{error:?}"
        );
        assert_eq!(
            served.load(Ordering::SeqCst),
            0,
            "no request may reach the server"
        );
    }

    #[tokio::test]
    async fn a_redirect_from_an_allowlisted_server_to_another_local_port_is_refused() {
        let other_served = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&other_served);
        let other = spawn_server(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
            html_page("<title>internal admin</title>")
        })
        .await;
        let allowed =
            spawn_server(move |_| redirect_to(&format!("http://127.0.0.1:{}/", other.port())))
                .await;

        let error = fetcher_allowing(vec![allowed])
            .fetch(&page_url(allowed, "/"))
            .await
            .expect_err("the redirect hop must be refused");

        assert!(
            matches!(error, MetadataError::ForbiddenAddress(_)),
            "{error:?}"
        );
        assert_eq!(other_served.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_redirect_to_the_cloud_metadata_service_is_refused() {
        let allowed =
            spawn_server(|_| redirect_to("http://169.254.169.254/latest/meta-data")).await;

        let error = fetcher_allowing(vec![allowed])
            .fetch(&page_url(allowed, "/"))
            .await
            .expect_err("the metadata service must be refused");

        assert!(
            matches!(&error, MetadataError::ForbiddenAddress(why) if why.contains("169.254.169.254") && why.contains("link-local")),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn an_allowlisted_page_yields_its_metadata_and_final_url() {
        let addr = spawn_server(|path| match path {
            "/start" => redirect_to("/article"),
            "/article" => html_page(
                r#"<html><head><title>A  page</title>
                <meta name="description" content="What it is about">
                <link rel="icon" href="/img/icon.png"></head><body>hi</body></html>"#,
            ),
            _ => http_response("404 Not Found", &[], b"nope"),
        })
        .await;

        let metadata = fetcher_allowing(vec![addr])
            .fetch(&page_url(addr, "/start"))
            .await
            .expect("the page is fetched");

        assert_eq!(
            metadata,
            PageMetadata {
                title: Some("A page".into()),
                description: Some("What it is about".into()),
                favicon: Some(format!("http://{addr}/img/icon.png")),
                url: format!("http://{addr}/article"),
            }
        );
    }

    #[tokio::test]
    async fn a_redirect_loop_ends_with_too_many_redirects() {
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&requests);
        let addr = spawn_server(move |path| {
            counter.fetch_add(1, Ordering::SeqCst);
            redirect_to(if path == "/a" { "/b" } else { "/a" })
        })
        .await;

        let error = fetcher_allowing(vec![addr])
            .fetch(&page_url(addr, "/a"))
            .await
            .expect_err("a loop never ends");

        assert!(
            matches!(error, MetadataError::TooManyRedirects),
            "{error:?}"
        );
        // The first request plus the five redirects the policy allows.
        assert_eq!(requests.load(Ordering::SeqCst), 6);
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out() {
        let addr = spawn_silent_server().await;
        let fetcher = MetadataFetcher::new(FetchPolicy {
            timeout: Duration::from_millis(300),
            allowed_addrs: vec![addr],
            ..FetchPolicy::default()
        })
        .expect("the HTTP client builds");

        let started = Instant::now();
        let error = fetcher
            .fetch(&page_url(addr, "/"))
            .await
            .expect_err("a silent server times out");

        assert!(matches!(error, MetadataError::Timeout), "{error:?}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[tokio::test]
    async fn non_http_schemes_are_invalid() {
        let fetcher = fetcher_allowing(Vec::new());
        for target in [
            "ftp://example.com/file",
            "file:///etc/passwd",
            "gopher://example.com/",
        ] {
            let error = fetcher.fetch(&url(target)).await.expect_err("only http(s)");
            assert!(
                matches!(error, MetadataError::InvalidUrl(_)),
                "{target}: {error:?}"
            );
        }
    }

    #[tokio::test]
    async fn localhost_is_refused_because_it_resolves_to_loopback() {
        let error = fetcher_allowing(Vec::new())
            .fetch(&url("http://localhost/"))
            .await
            .expect_err("localhost is loopback");

        assert!(
            matches!(&error, MetadataError::ForbiddenAddress(why) if why.starts_with("host localhost resolves to")),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_redirect_to_a_non_http_scheme_is_invalid() {
        let addr = spawn_server(|_| redirect_to("ftp://example.com/")).await;

        let error = fetcher_allowing(vec![addr])
            .fetch(&page_url(addr, "/"))
            .await
            .expect_err("ftp is not followed");

        assert!(matches!(error, MetadataError::InvalidUrl(_)), "{error:?}");
    }

    #[tokio::test]
    async fn an_error_status_is_reported_as_upstream_status() {
        let addr = spawn_server(|_| http_response("404 Not Found", &[], b"gone")).await;

        let error = fetcher_allowing(vec![addr])
            .fetch(&page_url(addr, "/missing"))
            .await
            .expect_err("404 is an error");

        assert!(
            matches!(error, MetadataError::UpstreamStatus(404)),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_non_html_page_yields_empty_metadata_with_its_url() {
        let addr = spawn_server(|_| {
            http_response(
                "200 OK",
                &[("Content-Type", "application/json")],
                b"{\"title\":\"<title>no</title>\"}",
            )
        })
        .await;

        let metadata = fetcher_allowing(vec![addr])
            .fetch(&page_url(addr, "/data.json"))
            .await
            .expect("a JSON page is not an error");

        assert_eq!(
            metadata,
            PageMetadata {
                title: None,
                description: None,
                favicon: None,
                url: format!("http://{addr}/data.json"),
            }
        );
    }

    #[tokio::test]
    async fn a_page_larger_than_the_cap_is_parsed_up_to_the_cap() {
        let mut page = String::from("<title>Early title</title>");
        page.push_str(&"<p>filler</p>".repeat(2000));
        page.push_str("<meta name=description content=\"past the cap\">");
        let addr = spawn_server(move |_| html_page(&page)).await;
        let fetcher = MetadataFetcher::new(FetchPolicy {
            max_bytes: 4096,
            allowed_addrs: vec![addr],
            ..FetchPolicy::default()
        })
        .expect("the HTTP client builds");

        let metadata = fetcher
            .fetch(&page_url(addr, "/"))
            .await
            .expect("a big page is not an error");

        assert_eq!(metadata.title.as_deref(), Some("Early title"));
        assert_eq!(metadata.description, None);
    }

    #[tokio::test]
    async fn a_latin1_page_is_decoded_by_its_meta_charset() {
        let mut body = b"<meta charset=\"iso-8859-1\"><title>Caf".to_vec();
        body.push(0xe9);
        body.extend_from_slice(b" cr\xe8me</title>");
        let addr =
            spawn_server(move |_| http_response("200 OK", &[("Content-Type", "text/html")], &body))
                .await;

        let metadata = fetcher_allowing(vec![addr])
            .fetch(&page_url(addr, "/"))
            .await
            .expect("the page is fetched");

        assert_eq!(metadata.title.as_deref(), Some("Café crème"));
    }

    #[tokio::test]
    async fn the_request_carries_the_boltlink_user_agent() {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind test server");
        let addr = listener.local_addr().expect("test server address");
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("one connection");
            let mut head = Vec::new();
            let mut buffer = [0_u8; 1024];
            while !head.windows(4).any(|window| window == b"\r\n\r\n") {
                let read = stream.read(&mut buffer).await.expect("read request");
                if read == 0 {
                    break;
                }
                head.extend_from_slice(&buffer[..read]);
            }
            let _ = stream.write_all(&html_page("<title>ua</title>")).await;
            String::from_utf8_lossy(&head).to_ascii_lowercase()
        });

        fetcher_allowing(vec![addr])
            .fetch(&page_url(addr, "/"))
            .await
            .expect("the page is fetched");

        let head = server.await.expect("server task");
        assert!(
            head.contains("user-agent: boltlink-metadata/0.1 (+link preview)"),
            "{head}"
        );
    }

    #[tokio::test]
    async fn a_meta_tag_cut_by_the_size_cap_is_still_read() {
        let page = r#"<title>Cut</title><meta name="description" content="kept up to the cap, never past it">"#;
        let cap = page.find("never").expect("the page has the marker");
        let addr = spawn_server(move |_| html_page(page)).await;
        let fetcher = MetadataFetcher::new(FetchPolicy {
            max_bytes: cap,
            allowed_addrs: vec![addr],
            ..FetchPolicy::default()
        })
        .expect("the HTTP client builds");

        let metadata = fetcher
            .fetch(&page_url(addr, "/"))
            .await
            .expect("a cut page is not an error");

        assert_eq!(metadata.title.as_deref(), Some("Cut"));
        assert_eq!(metadata.description.as_deref(), Some("kept up to the cap,"));
    }
}

//! Fetch a web page's title, description and favicon for link previews
//! (`POST /api/metadata`) without letting the fetch reach what a user must not reach.
//!
//! # Why this module is careful
//! The endpoint makes *our* server request a URL chosen by a user. Our server sits in a
//! network the user does not: it can reach loopback services (Redis, Postgres, admin ports),
//! the private network, and the cloud metadata service at `169.254.169.254` (or
//! `fd00:ec2::254`) that hands out credentials. A naive fetcher turns the endpoint into a
//! proxy into all of that (server-side request forgery, SSRF).
//!
//! # Rules
//! - Only absolute `http`/`https` URLs are fetched ([`MetadataError::InvalidUrl`]).
//! - Every address a host name resolves to is checked with [`is_forbidden_ip`] (loopback,
//!   private, link-local, CGNAT, documentation, multicast, reserved, and IPv6 forms that embed
//!   an IPv4 address). If *any* address is forbidden the hop is refused: the connector may try
//!   the addresses in any order, so one bad record is enough for an attacker.
//! - The connection goes only to the addresses we checked. Each hop builds a client whose
//!   resolver is pinned to exactly those addresses (`resolve_to_addrs`), and whose fallback
//!   resolver refuses every name. There is no second DNS lookup an attacker could answer
//!   differently (DNS rebinding). IP-literal hosts never reach a resolver in reqwest, so they
//!   are checked directly.
//! - The address check runs in our own per-hop code, not inside a reqwest resolver, because a
//!   resolver sees the host but not the port, and the operator allowlist is per `ip:port`.
//! - Redirects are followed by hand (301/302/303/307/308, `Location` resolved against the
//!   current URL), every hop checked again, at most [`FetchPolicy::max_redirects`] of them.
//! - Proxies from the environment are ignored: a proxy resolves names itself, after our check.
//! - The whole fetch (every hop and the body) is bounded by [`FetchPolicy::timeout`]; the body
//!   is read up to [`FetchPolicy::max_bytes`] and parsed as far as it was read.
//! - [`FetchPolicy::allowed_addrs`] is an operator allowlist of exact `ip:port` pairs that
//!   skip the range check (an internal preview target, or a test's local server). It is per
//!   port so that allowing one local service does not open every port on that host: a
//!   redirect from an allowed `127.0.0.1:A` to `127.0.0.1:B` is still refused.
//!
//! # Architecture Invariant
//! This is the only code that fetches user-given URLs, and it parses HTML with a small
//! hand-rolled tag scanner ([`extract_metadata`]) that never panics, on purpose: all we need
//! are a few tags from the head of a page, not a DOM.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderValue, ACCEPT, CONTENT_TYPE, LOCATION};
use reqwest::{redirect, StatusCode};
use url::{Host, Url};

/// Sent with every request so site owners can tell what is fetching their pages.
const USER_AGENT: &str = "BoltLink-Metadata/0.1 (+link preview)";
const ACCEPT_HTML: &str = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.1";
/// Titles longer than this are cut; a preview card shows far less anyway.
const TITLE_MAX_CHARS: usize = 300;
/// Descriptions are cut too, so one page cannot blow up the JSON answer.
const DESCRIPTION_MAX_CHARS: usize = 1000;
/// How far into the body to look for `<meta charset>`, as browsers do (HTML "prescan").
const CHARSET_PRESCAN_BYTES: usize = 1024;

/// Limits of one metadata fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPolicy {
    /// Deadline of the whole fetch: DNS, every redirect hop and the body.
    pub timeout: Duration,
    /// The body is read up to this many bytes; the rest is never read.
    pub max_bytes: usize,
    /// How many redirects are followed before giving up.
    pub max_redirects: usize,
    /// Exact `ip:port` pairs that may be fetched even though their address is forbidden.
    pub allowed_addrs: Vec<SocketAddr>,
}

impl Default for FetchPolicy {
    /// 5 s, 1 MiB and 5 redirects, as the `POST /api/metadata` contract promises; no allowlist.
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            max_bytes: 1_048_576,
            max_redirects: 5,
            allowed_addrs: Vec::new(),
        }
    }
}

/// What a link preview shows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PageMetadata {
    pub title: Option<String>,
    pub description: Option<String>,
    /// Absolute URL of the page's icon (`/favicon.ico` of the page's origin when none is declared).
    pub favicon: Option<String>,
    /// The final URL, after redirects.
    pub url: String,
}

/// Why a page's metadata could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    #[error("refusing to fetch this URL: {0}")]
    ForbiddenAddress(String),
    #[error("the page redirected too many times")]
    TooManyRedirects,
    #[error("fetching the page took too long")]
    Timeout,
    #[error("the page answered with HTTP status {0}")]
    UpstreamStatus(u16),
    #[error("could not fetch the page: {0}")]
    Network(String),
}

/// Fetches page metadata under a [`FetchPolicy`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct MetadataFetcher {
    policy: Arc<FetchPolicy>,
}

impl MetadataFetcher {
    /// Builds a fetcher. Fails only when the HTTP client cannot be set up (TLS backend),
    /// which we find out here, at startup, rather than on the first request.
    pub fn new(policy: FetchPolicy) -> Result<Self, MetadataError> {
        build_client(None)?;
        Ok(Self {
            policy: Arc::new(policy),
        })
    }

    /// Fetches `url` (following redirects) and extracts its metadata.
    pub async fn fetch(&self, url: &Url) -> Result<PageMetadata, MetadataError> {
        require_http_url(url)?;
        match tokio::time::timeout(self.policy.timeout, self.fetch_without_deadline(url)).await {
            Ok(result) => result,
            Err(_elapsed) => Err(MetadataError::Timeout),
        }
    }

    async fn fetch_without_deadline(&self, url: &Url) -> Result<PageMetadata, MetadataError> {
        let mut current = url.clone();
        let mut redirects_followed = 0;
        loop {
            let response = self.send_one_hop(&current).await?;
            let status = response.status();
            if is_followed_redirect(status) {
                // A redirect status without a Location is a final answer like any other 3xx.
                if let Some(location) = response.headers().get(LOCATION) {
                    if redirects_followed >= self.policy.max_redirects {
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
            return self.read_metadata(response, current).await;
        }
    }

    /// Applies the address rules to a URL that will be fetched later (a webhook target, when
    /// it is set): an IP-literal host and every address a host name resolves to (within
    /// `within`) must be allowed. A name that does not resolve now passes — it is checked
    /// again at every fetch, and DNS answers change anyway.
    pub async fn check_destination(
        &self,
        url: &Url,
        within: Duration,
    ) -> Result<(), MetadataError> {
        require_http_url(url)?;
        let port = url
            .port_or_known_default()
            .ok_or_else(|| MetadataError::InvalidUrl(format!("{url} has no port")))?;
        match url.host() {
            Some(Host::Ipv4(ip)) => {
                self.check_address(&ip.to_string(), SocketAddr::new(ip.into(), port))
            }
            Some(Host::Ipv6(ip)) => {
                self.check_address(&ip.to_string(), SocketAddr::new(ip.into(), port))
            }
            Some(Host::Domain(domain)) => {
                match tokio::time::timeout(within, resolve_host(domain, port)).await {
                    Ok(Ok(addrs)) => addrs
                        .iter()
                        .try_for_each(|a| self.check_address(domain, *a)),
                    _ => Ok(()),
                }
            }
            None => Err(MetadataError::InvalidUrl(format!("{url} has no host"))),
        }
    }

    /// Checks where `url` would connect, then sends one GET there and nowhere else.
    async fn send_one_hop(&self, url: &Url) -> Result<reqwest::Response, MetadataError> {
        let port = url
            .port_or_known_default()
            .ok_or_else(|| MetadataError::InvalidUrl(format!("{url} has no port")))?;
        let client = match url.host() {
            // reqwest connects to IP literals directly, without any resolver: check here.
            Some(Host::Ipv4(ip)) => {
                self.check_address(&ip.to_string(), SocketAddr::new(ip.into(), port))?;
                build_client(None)?
            }
            Some(Host::Ipv6(ip)) => {
                self.check_address(&ip.to_string(), SocketAddr::new(ip.into(), port))?;
                build_client(None)?
            }
            Some(Host::Domain(domain)) => {
                // Resolve once, check every address with its port, and pin the connection to
                // exactly these addresses: no later lookup can swap in another one.
                let addrs = resolve_host(domain, port).await?;
                for addr in &addrs {
                    self.check_address(domain, *addr)?;
                }
                build_client(Some((domain, &addrs)))?
            }
            None => return Err(MetadataError::InvalidUrl(format!("{url} has no host"))),
        };
        client
            .get(url.clone())
            .header(ACCEPT, ACCEPT_HTML)
            .send()
            .await
            .map_err(network_error)
    }

    /// Refuses `addr` unless the operator allowlisted this exact `ip:port`, or the address
    /// is in no forbidden range.
    fn check_address(&self, host: &str, addr: SocketAddr) -> Result<(), MetadataError> {
        if self.is_allowlisted(addr) {
            return Ok(());
        }
        match forbidden_reason(addr.ip()) {
            Some(reason) => Err(MetadataError::ForbiddenAddress(format!(
                "host {host} resolves to {reason}"
            ))),
            None => Ok(()),
        }
    }

    /// Compares ip and port only: a resolved IPv6 address may carry flow info or a scope id,
    /// and `::ffff:127.0.0.1` is the same destination as `127.0.0.1`.
    fn is_allowlisted(&self, addr: SocketAddr) -> bool {
        self.policy.allowed_addrs.iter().any(|allowed| {
            allowed.port() == addr.port() && allowed.ip().to_canonical() == addr.ip().to_canonical()
        })
    }

    async fn read_metadata(
        &self,
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
        let body = read_capped_body(response, self.policy.max_bytes).await?;
        let html = decode_html(body, content_type).await;
        let (title, description, favicon) = extract_metadata(&html, &final_url);
        Ok(PageMetadata {
            title,
            description,
            favicon,
            url: final_url.to_string(),
        })
    }
}

fn require_http_url(url: &Url) -> Result<(), MetadataError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(MetadataError::InvalidUrl(format!(
            "only http and https URLs can be fetched, not {}:",
            url.scheme()
        )));
    }
    if url.host().is_none() {
        return Err(MetadataError::InvalidUrl(format!("{url} has no host")));
    }
    Ok(())
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

async fn resolve_host(domain: &str, port: u16) -> Result<Vec<SocketAddr>, MetadataError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((domain, port))
        .await
        .map_err(|error| {
            MetadataError::Network(format!("could not resolve host {domain}: {error}"))
        })?
        .collect();
    if addrs.is_empty() {
        return Err(MetadataError::Network(format!(
            "host {domain} did not resolve to any address"
        )));
    }
    Ok(addrs)
}

/// A client for one hop. `pinned` maps the hop's host name to the addresses we checked.
/// Building a client per hop costs a little (TLS roots are loaded again) but is the only way
/// reqwest offers to tie one request to one set of addresses; link previews are rare enough.
fn build_client(pinned: Option<(&str, &[SocketAddr])>) -> Result<reqwest::Client, MetadataError> {
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

/// The charset a page declares in a `<meta>` tag within its first 1024 bytes.
fn sniff_meta_charset(body: &[u8]) -> Option<String> {
    let head = String::from_utf8_lossy(body.get(..CHARSET_PRESCAN_BYTES).unwrap_or(body));
    for tag in TagScanner::new(&head) {
        if tag.is_end || tag.name != "meta" {
            continue;
        }
        let label = if let Some(charset) = tag.attribute("charset") {
            Some(charset)
        } else if tag
            .attribute("http-equiv")
            .is_some_and(|value| value.trim().eq_ignore_ascii_case("content-type"))
        {
            tag.attribute("content").and_then(charset_parameter)
        } else {
            None
        };
        let label = label
            .map(|label| label.trim().trim_matches(['"', '\'']).trim())
            .filter(|label| !label.is_empty());
        if let Some(label) = label {
            // A page that declares UTF-16 in ASCII-compatible markup is not UTF-16: the HTML
            // standard says to read it as UTF-8.
            if label.to_ascii_lowercase().starts_with("utf-16") {
                return Some("utf-8".to_owned());
            }
            return Some(label.to_owned());
        }
    }
    None
}

/// `charset` out of `text/html; charset=iso-8859-1`.
fn charset_parameter(content: &str) -> Option<&str> {
    let lower = content.to_ascii_lowercase();
    let start = lower.find("charset=")? + "charset=".len();
    // `lower` has the same byte offsets as `content` (ASCII lowercasing keeps lengths).
    let rest = content.get(start..)?;
    let end = rest.find([';', ' ', '\t']).unwrap_or(rest.len());
    rest.get(..end)
}

/// Whether fetching from `ip` must be refused: loopback, unspecified, private, link-local
/// (cloud metadata services), CGNAT, "this network", broadcast, multicast, documentation,
/// benchmarking and reserved ranges, and the IPv6 equivalents. IPv6 forms that embed an
/// IPv4 address (mapped, compatible, NAT64, 6to4) are judged by that IPv4 address.
pub fn is_forbidden_ip(ip: IpAddr) -> bool {
    forbidden_reason(ip).is_some()
}

/// Why `ip` is forbidden, phrased to follow "resolves to".
fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(ip) => forbidden_ipv4_reason(ip),
        IpAddr::V6(ip) => forbidden_ipv6_reason(ip),
    }
}

/// IPv4 ranges we never fetch from, with the reason. Broadcast comes before 240/4 so it gets
/// its own name.
const FORBIDDEN_IPV4: &[(Ipv4Addr, u32, &str)] = &[
    (
        Ipv4Addr::new(0, 0, 0, 0),
        8,
        "an unspecified (\"this network\") address",
    ),
    (Ipv4Addr::new(10, 0, 0, 0), 8, "a private address"),
    (
        Ipv4Addr::new(100, 64, 0, 0),
        10,
        "a carrier-grade NAT (shared) address",
    ),
    (Ipv4Addr::new(127, 0, 0, 0), 8, "a loopback address"),
    (
        Ipv4Addr::new(169, 254, 0, 0),
        16,
        "a link-local address (where cloud metadata services live)",
    ),
    (Ipv4Addr::new(172, 16, 0, 0), 12, "a private address"),
    (
        Ipv4Addr::new(192, 0, 0, 0),
        24,
        "an IETF protocol assignment address",
    ),
    (Ipv4Addr::new(192, 0, 2, 0), 24, "a documentation address"),
    (Ipv4Addr::new(192, 168, 0, 0), 16, "a private address"),
    (Ipv4Addr::new(198, 18, 0, 0), 15, "a benchmarking address"),
    (
        Ipv4Addr::new(198, 51, 100, 0),
        24,
        "a documentation address",
    ),
    (Ipv4Addr::new(203, 0, 113, 0), 24, "a documentation address"),
    (Ipv4Addr::new(224, 0, 0, 0), 4, "a multicast address"),
    (
        Ipv4Addr::new(255, 255, 255, 255),
        32,
        "the broadcast address",
    ),
    (Ipv4Addr::new(240, 0, 0, 0), 4, "a reserved address"),
];

fn forbidden_ipv4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let ip = u32::from(ip);
    FORBIDDEN_IPV4
        .iter()
        .find(|(network, prefix, _)| {
            let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
            ip & mask == u32::from(*network) & mask
        })
        .map(|(_, _, reason)| *reason)
}

/// IPv6 ranges we never fetch from. Anything outside 2000::/3 (global unicast) is refused
/// after this table too; the table only gives the common ranges a clearer reason.
const FORBIDDEN_IPV6: &[(Ipv6Addr, u32, &str)] = &[
    (
        Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0),
        48,
        "a local-use NAT64 address",
    ),
    (
        Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0),
        64,
        "a discard-only address",
    ),
    (
        Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0),
        32,
        "a Teredo tunnel address",
    ),
    (
        Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0),
        48,
        "a benchmarking address",
    ),
    (
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0),
        32,
        "a documentation address",
    ),
    (
        Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0),
        20,
        "a documentation address",
    ),
    (
        Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0),
        7,
        "a unique-local (private) address",
    ),
    (
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0),
        10,
        "a link-local address",
    ),
    (
        Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0),
        10,
        "a site-local address",
    ),
    (
        Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0),
        8,
        "a multicast address",
    ),
];

fn forbidden_ipv6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("the unspecified address");
    }
    if ip.is_loopback() {
        return Some("a loopback address");
    }
    if let Some(embedded) = embedded_ipv4(ip) {
        return forbidden_ipv4_reason(embedded);
    }
    let bits = u128::from(ip);
    let in_range = |network: Ipv6Addr, prefix: u32| {
        let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
        bits & mask == u128::from(network) & mask
    };
    if let Some((_, _, reason)) = FORBIDDEN_IPV6
        .iter()
        .find(|(network, prefix, _)| in_range(*network, *prefix))
    {
        return Some(reason);
    }
    if !in_range(Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3) {
        return Some("a reserved IPv6 address");
    }
    None
}

/// The IPv4 address an IPv6 address stands for, when connecting to it reaches that IPv4
/// host: IPv4-mapped `::ffff:a.b.c.d`, IPv4-translated `::ffff:0:a.b.c.d`, IPv4-compatible
/// `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d` and 6to4 `2002:aabb:ccdd::`.
fn embedded_ipv4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let segments = ip.segments();
    let octets = ip.octets();
    let last_four = Ipv4Addr::new(octets[12], octets[13], octets[14], octets[15]);
    match segments {
        [0, 0, 0, 0, 0, 0xffff, _, _]
        | [0, 0, 0, 0, 0xffff, 0, _, _]
        | [0, 0, 0, 0, 0, 0, _, _]
        | [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(last_four),
        [0x2002, _, _, _, _, _, _, _] => {
            Some(Ipv4Addr::new(octets[2], octets[3], octets[4], octets[5]))
        }
        _ => None,
    }
}

/// Title, description and favicon (absolute URL) of an HTML page.
///
/// The title comes from `<title>`, else `og:title`; the description from
/// `<meta name="description">`, else `og:description`; the favicon from the first
/// `<link rel="icon">` (or `shortcut icon`), else `apple-touch-icon`, resolved against
/// `<base href>` or `base`, else `/favicon.ico` of `base`'s origin. Tolerates any input.
pub fn extract_metadata(
    html: &str,
    base: &Url,
) -> (Option<String>, Option<String>, Option<String>) {
    let mut title = None;
    let mut og_title = None;
    let mut description = None;
    let mut og_description = None;
    // (priority, href): lower priority wins, the first one seen wins a tie.
    let mut icon: Option<(u8, &str)> = None;
    let mut document_base: Option<Url> = None;

    for tag in TagScanner::new(html) {
        if tag.is_end {
            continue;
        }
        match tag.name.as_str() {
            "title" if title.is_none() => {
                title = tag.text.and_then(|text| clean_text(text, TITLE_MAX_CHARS));
            }
            "meta" => {
                let Some(content) = tag.attribute("content") else {
                    continue;
                };
                let keys = [tag.attribute("name"), tag.attribute("property")];
                for key in keys.into_iter().flatten() {
                    let slot = match key.trim().to_ascii_lowercase().as_str() {
                        "description" => &mut description,
                        "og:description" => &mut og_description,
                        "og:title" => &mut og_title,
                        _ => continue,
                    };
                    let max_chars = if key.trim().eq_ignore_ascii_case("og:title") {
                        TITLE_MAX_CHARS
                    } else {
                        DESCRIPTION_MAX_CHARS
                    };
                    if slot.is_none() {
                        *slot = clean_text(content, max_chars);
                    }
                }
            }
            "link" => {
                let (Some(rel), Some(href)) = (tag.attribute("rel"), tag.attribute("href")) else {
                    continue;
                };
                if let Some(priority) = icon_priority(rel) {
                    if icon.is_none_or(|(best, _)| priority < best) {
                        icon = Some((priority, href));
                    }
                }
            }
            "base" if document_base.is_none() => {
                document_base = tag
                    .attribute("href")
                    .and_then(|href| base.join(decode_entities(href).trim()).ok());
            }
            _ => {}
        }
    }

    let favicon = icon
        .and_then(|(_, href)| {
            let href = decode_entities(href);
            document_base
                .as_ref()
                .unwrap_or(base)
                .join(href.trim())
                .ok()
        })
        .filter(is_http_url)
        .or_else(|| base.join("/favicon.ico").ok().filter(is_http_url))
        .map(String::from);

    (title.or(og_title), description.or(og_description), favicon)
}

fn is_http_url(url: &Url) -> bool {
    matches!(url.scheme(), "http" | "https")
}

/// 0 for `icon` / `shortcut icon`, 1 for `apple-touch-icon` (bigger, but a fine fallback).
fn icon_priority(rel: &str) -> Option<u8> {
    let mut best = None;
    for token in rel.split_ascii_whitespace() {
        if token.eq_ignore_ascii_case("icon") {
            return Some(0);
        }
        if token.to_ascii_lowercase().starts_with("apple-touch-icon") {
            best = Some(1);
        }
    }
    best
}

/// Decodes entities, turns control characters into spaces, collapses whitespace, trims,
/// and cuts to `max_chars` characters. `None` when nothing is left.
fn clean_text(raw: &str, max_chars: usize) -> Option<String> {
    let decoded: String = decode_entities(raw)
        .chars()
        .map(|ch| if ch.is_control() { ' ' } else { ch })
        .collect();
    let collapsed = decoded.split_whitespace().collect::<Vec<_>>().join(" ");
    let cut: String = collapsed.chars().take(max_chars).collect();
    let cut = cut.trim_end();
    (!cut.is_empty()).then(|| cut.to_owned())
}

/// Decodes `&amp; &lt; &gt; &quot; &apos; &#39; &#NN; &#xHH;` and a few named entities common
/// in titles. Anything else is left as written.
fn decode_entities(text: &str) -> String {
    let mut decoded = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        decoded.push_str(rest.get(..amp).unwrap_or_default());
        let after = rest.get(amp + 1..).unwrap_or_default();
        match decode_entity(after) {
            Some((ch, consumed)) => {
                decoded.push(ch);
                rest = after.get(consumed..).unwrap_or_default();
            }
            None => {
                decoded.push('&');
                rest = after;
            }
        }
    }
    decoded.push_str(rest);
    decoded
}

/// The character of the entity at the start of `text` (just after `&`), and how many bytes
/// it took including the `;`.
fn decode_entity(text: &str) -> Option<(char, usize)> {
    let semicolon = text.bytes().take(12).position(|byte| byte == b';')?;
    let name = text.get(..semicolon)?;
    let ch = match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => '\u{a0}',
        "ndash" => '\u{2013}',
        "mdash" => '\u{2014}',
        "hellip" => '\u{2026}',
        "lsquo" => '\u{2018}',
        "rsquo" => '\u{2019}',
        "ldquo" => '\u{201c}',
        "rdquo" => '\u{201d}',
        "laquo" => '\u{ab}',
        "raquo" => '\u{bb}',
        "middot" => '\u{b7}',
        "bull" => '\u{2022}',
        "copy" => '\u{a9}',
        "reg" => '\u{ae}',
        "trade" => '\u{2122}',
        _ => {
            let number = name.strip_prefix('#')?;
            let code = match number.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => number.parse::<u32>().ok()?,
            };
            // NUL and values that are no character (surrogates, > U+10FFFF) become U+FFFD.
            char::from_u32(code)
                .filter(|ch| *ch != '\0')
                .unwrap_or(char::REPLACEMENT_CHARACTER)
        }
    };
    Some((ch, semicolon + 1))
}

/// A start or end tag found by [`TagScanner`].
struct Tag<'a> {
    /// Lowercased.
    name: String,
    is_end: bool,
    /// Lowercased names, raw (still entity-encoded) values.
    attributes: Vec<(String, &'a str)>,
    /// For `title`, `textarea`, `script` and `style`: the raw text up to the end tag.
    text: Option<&'a str>,
}

impl<'a> Tag<'a> {
    fn attribute(&self, name: &str) -> Option<&'a str> {
        self.attributes
            .iter()
            .find(|(attribute, _)| attribute == name)
            .map(|(_, value)| *value)
    }
}

/// Elements whose content is text, not markup: a `<meta>` inside a `<script>` string or a
/// `<title>` is not a tag.
const RAW_TEXT_ELEMENTS: &[&str] = &["title", "textarea", "script", "style"];

/// A small, tolerant scanner over the tags of an HTML document, roughly following the HTML
/// tokenizer: comments, doctypes and processing instructions are skipped, attribute values
/// may be quoted with `"` or `'` or unquoted, names are case-insensitive.
///
/// It works on bytes but only ever cuts the text right before or after an ASCII byte (or
/// at either end), which is always a character boundary; every cut still goes through
/// `str::get`, so even a mistake could not panic.
struct TagScanner<'a> {
    html: &'a str,
    pos: usize,
}

impl<'a> TagScanner<'a> {
    fn new(html: &'a str) -> Self {
        Self { html, pos: 0 }
    }

    /// Text from the current position to the end tag `</name`, moving past that end tag.
    fn take_raw_text(&mut self, name: &str) -> &'a str {
        let bytes = self.html.as_bytes();
        let start = self.pos;
        let end = match find_end_tag(bytes, start, name) {
            Some(end_tag) => {
                self.pos = skip_past_gt(bytes, end_tag + 2);
                end_tag
            }
            // An unclosed title most likely lost its end tag: stop at the next tag rather
            // than swallowing the page. An unclosed script runs to the end, as in browsers.
            None if matches!(name, "title" | "textarea") => {
                let end = find_byte(bytes, start, b'<').unwrap_or(bytes.len());
                self.pos = end;
                end
            }
            None => {
                self.pos = bytes.len();
                bytes.len()
            }
        };
        self.html.get(start..end).unwrap_or_default()
    }
}

impl<'a> Iterator for TagScanner<'a> {
    type Item = Tag<'a>;

    fn next(&mut self) -> Option<Tag<'a>> {
        let bytes = self.html.as_bytes();
        loop {
            let open = find_byte(bytes, self.pos, b'<')?;
            let next = open + 1;
            match bytes.get(next).copied() {
                None => {
                    self.pos = bytes.len();
                    return None;
                }
                Some(b'!')
                    if bytes
                        .get(next..)
                        .is_some_and(|rest| rest.starts_with(b"!--")) =>
                {
                    self.pos =
                        find_subslice(bytes, next + 3, b"-->").map_or(bytes.len(), |at| at + 3);
                }
                Some(b'!' | b'?') => self.pos = skip_past_gt(bytes, next),
                Some(b'/') => {
                    let name_start = next + 1;
                    let name_end = scan_tag_name(bytes, name_start);
                    self.pos = skip_past_gt(bytes, name_end);
                    if name_end > name_start {
                        return Some(Tag {
                            name: lowercase_slice(self.html, name_start, name_end),
                            is_end: true,
                            attributes: Vec::new(),
                            text: None,
                        });
                    }
                }
                Some(byte) if byte.is_ascii_alphabetic() => {
                    let name_end = scan_tag_name(bytes, next);
                    let name = lowercase_slice(self.html, next, name_end);
                    let (attributes, tag_end) = parse_attributes(self.html, name_end);
                    self.pos = tag_end;
                    let text = RAW_TEXT_ELEMENTS
                        .contains(&name.as_str())
                        .then(|| self.take_raw_text(&name));
                    return Some(Tag {
                        name,
                        is_end: false,
                        attributes,
                        text,
                    });
                }
                // A `<` that starts no tag is text.
                Some(_) => self.pos = next,
            }
        }
    }
}

fn is_html_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c')
}

fn find_byte(bytes: &[u8], from: usize, needle: u8) -> Option<usize> {
    bytes
        .get(from..)?
        .iter()
        .position(|byte| *byte == needle)
        .map(|at| from + at)
}

fn find_subslice(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    bytes
        .get(from..)?
        .windows(needle.len())
        .position(|window| window == needle)
        .map(|at| from + at)
}

/// Position just after the next `>` at or after `from`, or the end.
fn skip_past_gt(bytes: &[u8], from: usize) -> usize {
    find_byte(bytes, from, b'>').map_or(bytes.len(), |at| at + 1)
}

/// End of a tag name starting at `from`: it runs to whitespace, `/` or `>`.
fn scan_tag_name(bytes: &[u8], from: usize) -> usize {
    let mut at = from;
    while let Some(&byte) = bytes.get(at) {
        if is_html_space(byte) || byte == b'/' || byte == b'>' {
            break;
        }
        at += 1;
    }
    at
}

fn lowercase_slice(html: &str, start: usize, end: usize) -> String {
    html.get(start..end)
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// Position of `</name` (followed by whitespace, `/`, `>` or the end), case-insensitively.
fn find_end_tag(bytes: &[u8], from: usize, name: &str) -> Option<usize> {
    let mut search = from;
    loop {
        let at = find_subslice(bytes, search, b"</")?;
        let name_start = at + 2;
        let name_matches = bytes
            .get(name_start..name_start + name.len())
            .is_some_and(|candidate| candidate.eq_ignore_ascii_case(name.as_bytes()));
        let boundary = bytes
            .get(name_start + name.len())
            .is_none_or(|byte| is_html_space(*byte) || *byte == b'/' || *byte == b'>');
        if name_matches && boundary {
            return Some(at);
        }
        search = at + 1;
    }
}

/// Attributes of a start tag from `from` (just after its name) and the position after its
/// `>` (or the end of the text, for a tag that never closes).
fn parse_attributes(html: &str, from: usize) -> (Vec<(String, &str)>, usize) {
    let bytes = html.as_bytes();
    let mut attributes = Vec::new();
    let mut at = from;
    loop {
        while let Some(&byte) = bytes.get(at) {
            if !(is_html_space(byte) || byte == b'/') {
                break;
            }
            at += 1;
        }
        match bytes.get(at) {
            None => return (attributes, bytes.len()),
            Some(b'>') => return (attributes, at + 1),
            Some(_) => {}
        }
        // The first byte always belongs to the name (even a stray `=`), so every round moves on.
        let name_start = at;
        at += 1;
        while let Some(&byte) = bytes.get(at) {
            if is_html_space(byte) || matches!(byte, b'/' | b'>' | b'=') {
                break;
            }
            at += 1;
        }
        let name = lowercase_slice(html, name_start, at);

        let mut value_at = at;
        while bytes.get(value_at).is_some_and(|byte| is_html_space(*byte)) {
            value_at += 1;
        }
        let mut value = "";
        if bytes.get(value_at) == Some(&b'=') {
            value_at += 1;
            while bytes.get(value_at).is_some_and(|byte| is_html_space(*byte)) {
                value_at += 1;
            }
            match bytes.get(value_at).copied() {
                Some(quote @ (b'"' | b'\'')) => {
                    let start = value_at + 1;
                    let end = find_byte(bytes, start, quote).unwrap_or(bytes.len());
                    value = html.get(start..end).unwrap_or_default();
                    at = (end + 1).min(bytes.len());
                }
                Some(_) => {
                    let start = value_at;
                    let mut end = start;
                    while let Some(&byte) = bytes.get(end) {
                        if is_html_space(byte) || byte == b'>' {
                            break;
                        }
                        end += 1;
                    }
                    value = html.get(start..end).unwrap_or_default();
                    at = end;
                }
                None => at = value_at,
            }
        }
        attributes.push((name, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test IP addresses are valid")
    }

    fn url(text: &str) -> Url {
        Url::parse(text).expect("test URLs are valid")
    }

    #[test]
    fn forbidden_ip_covers_every_special_ipv4_range() {
        for address in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "127.1.2.3",
            "169.254.0.1",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.1",
            "192.0.0.170",
            "192.0.2.10",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "250.1.2.3",
            "255.255.255.255",
        ] {
            assert!(
                is_forbidden_ip(ip(address)),
                "{address} should be forbidden"
            );
        }
    }

    #[test]
    fn forbidden_ip_leaves_the_neighbours_of_special_ranges_alone() {
        for address in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.1",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.1",
            "169.253.255.255",
            "169.255.0.1",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.1",
            "192.0.3.1",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "198.51.101.1",
            "203.0.114.1",
            "223.255.255.255",
        ] {
            assert!(!is_forbidden_ip(ip(address)), "{address} should be allowed");
        }
    }

    #[test]
    fn forbidden_ip_covers_special_ipv6_ranges_and_embedded_ipv4() {
        for address in [
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fd00:ec2::254",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "ff05::1:3",
            "2001:db8::1",
            "2001:db8:ffff::1",
            "2001::1",
            "100::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::ffff:169.254.169.254",
            "::ffff:0:192.168.0.1",
            "::127.0.0.1",
            "::0.0.0.2",
            "64:ff9b::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "2002:7f00:1::",
            "2002:c0a8:101::1",
            "4000::1",
        ] {
            assert!(
                is_forbidden_ip(ip(address)),
                "{address} should be forbidden"
            );
        }
    }

    #[test]
    fn forbidden_ip_allows_public_ipv6_and_public_embedded_ipv4() {
        for address in [
            "2606:4700::1111",
            "2a00:1450:4001:80b::200e",
            "2001:4860:4860::8888",
            "::ffff:93.184.216.34",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(!is_forbidden_ip(ip(address)), "{address} should be allowed");
        }
    }

    #[test]
    fn forbidden_reason_names_the_kind_of_range() {
        assert_eq!(
            forbidden_reason(ip("127.0.0.1")),
            Some("a loopback address")
        );
        assert_eq!(
            forbidden_reason(ip("::ffff:127.0.0.1")),
            Some("a loopback address")
        );
        assert!(
            forbidden_reason(ip("169.254.169.254")).is_some_and(|why| why.contains("link-local"))
        );
        assert_eq!(
            forbidden_reason(ip("255.255.255.255")),
            Some("the broadcast address")
        );
        assert_eq!(forbidden_reason(ip("93.184.216.34")), None);
    }

    #[test]
    fn extract_metadata_reads_a_realistic_page() {
        let html = r#"<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <!-- <title>Not this one</title> -->
  <TITLE>
      Rust   &amp; Cargo &#8211; the &quot;book&quot; &#x1F980;
  </TITLE>
  <meta name="viewport" content="width=device-width">
  <meta property="og:title" content="OG title">
  <meta NAME="Description" CONTENT='Learn Rust &lt;fast&gt;, it&#39;s fun.'>
  <meta property="og:description" content="OG description">
  <link rel="stylesheet" href="/style.css">
  <link rel="apple-touch-icon" href="/apple.png">
  <link rel="shortcut icon" href="/static/favicon.png?v=1&amp;x=2">
  <script>document.write("<meta name='description' content='script'>")</script>
</head>
<body><h1>Hello</h1></body>
</html>"#;
        let (title, description, favicon) =
            extract_metadata(html, &url("https://example.com/docs/page"));
        assert_eq!(
            title.as_deref(),
            Some("Rust & Cargo \u{2013} the \"book\" \u{1F980}")
        );
        assert_eq!(description.as_deref(), Some("Learn Rust <fast>, it's fun."));
        assert_eq!(
            favicon.as_deref(),
            Some("https://example.com/static/favicon.png?v=1&x=2")
        );
    }

    #[test]
    fn extract_metadata_falls_back_to_open_graph_and_the_default_favicon() {
        let html = r#"<head><meta property="og:title" content=" Only OG "><meta property=og:description content=Unquoted></head>"#;
        let (title, description, favicon) =
            extract_metadata(html, &url("http://example.org:8080/a/b?c"));
        assert_eq!(title.as_deref(), Some("Only OG"));
        assert_eq!(description.as_deref(), Some("Unquoted"));
        assert_eq!(
            favicon.as_deref(),
            Some("http://example.org:8080/favicon.ico")
        );
    }

    #[test]
    fn extract_metadata_resolves_a_relative_favicon_against_the_page() {
        let base = url("https://example.com/blog/post/");
        let (_, _, favicon) = extract_metadata(r#"<link rel=icon href="../icon.svg">"#, &base);
        assert_eq!(
            favicon.as_deref(),
            Some("https://example.com/blog/icon.svg")
        );

        let (_, _, favicon) =
            extract_metadata(r#"<link href='//cdn.example.net/i.ico' rel='ICON'>"#, &base);
        assert_eq!(favicon.as_deref(), Some("https://cdn.example.net/i.ico"));

        let (_, _, favicon) = extract_metadata(
            r#"<base href="https://static.example.com/x/"><link rel="icon" href="f.ico">"#,
            &base,
        );
        assert_eq!(
            favicon.as_deref(),
            Some("https://static.example.com/x/f.ico")
        );
    }

    #[test]
    fn extract_metadata_prefers_icon_over_apple_touch_icon_whatever_the_order() {
        let html =
            r#"<link rel="apple-touch-icon" href="/apple.png"><link rel="icon" href="/icon.png">"#;
        let (_, _, favicon) = extract_metadata(html, &url("https://example.com/"));
        assert_eq!(favicon.as_deref(), Some("https://example.com/icon.png"));

        let html = r#"<link rel="apple-touch-icon-precomposed" href="/apple.png">"#;
        let (_, _, favicon) = extract_metadata(html, &url("https://example.com/"));
        assert_eq!(favicon.as_deref(), Some("https://example.com/apple.png"));
    }

    #[test]
    fn extract_metadata_ignores_non_http_favicons() {
        let html = r#"<link rel="icon" href="javascript:alert(1)"><link rel="icon" href="data:image/png;base64,AAAA">"#;
        let (_, _, favicon) = extract_metadata(html, &url("https://example.com/x"));
        assert_eq!(favicon.as_deref(), Some("https://example.com/favicon.ico"));
    }

    #[test]
    fn extract_metadata_survives_malformed_html() {
        let base = url("https://example.com/");
        let html = "<<title>>Broken <b>title < 3\n<meta name=description content=\"unterminated";
        let (title, description, _) = extract_metadata(html, &base);
        assert_eq!(title.as_deref(), Some(">Broken"));
        assert_eq!(description.as_deref(), Some("unterminated"));

        let (title, ..) = extract_metadata("<title>Only text, no end", &base);
        assert_eq!(title.as_deref(), Some("Only text, no end"));

        let (title, description, favicon) =
            extract_metadata("<meta =x name= content= ><title></title></", &base);
        assert_eq!((title, description), (None, None));
        assert_eq!(favicon.as_deref(), Some("https://example.com/favicon.ico"));

        let (title, ..) = extract_metadata("<title>a</titlex>b</title >", &base);
        assert_eq!(title.as_deref(), Some("a</titlex>b"));

        let (title, ..) = extract_metadata(
            "<title>&bogus; &#xZZ; &#99999999999; &#0; & amp</title>",
            &base,
        );
        assert_eq!(
            title.as_deref(),
            Some("&bogus; &#xZZ; &#99999999999; \u{fffd} & amp")
        );
    }

    #[test]
    fn extract_metadata_keeps_multibyte_text_around_tags_intact() {
        let html = "é<tïtle>x</tïtle>😀<title>Ünïcødé 😀 ✓</title>日本<meta name=\"description\" content=日本語の説明>ß<link rel=icon href=/ïcon.png>";
        let (title, description, favicon) = extract_metadata(html, &url("https://例え.jp/"));
        assert_eq!(title.as_deref(), Some("Ünïcødé 😀 ✓"));
        assert_eq!(description.as_deref(), Some("日本語の説明"));
        assert_eq!(
            favicon.as_deref(),
            Some("https://xn--r8jz45g.jp/%C3%AFcon.png")
        );
    }

    #[test]
    fn extract_metadata_cuts_titles_at_300_characters() {
        let html = format!("<title>{}</title>", "é".repeat(1000));
        let (title, ..) = extract_metadata(&html, &url("https://example.com/"));
        assert_eq!(title.map(|title| title.chars().count()), Some(300));
    }

    #[test]
    fn extract_metadata_never_panics_on_any_prefix_or_scrambled_input() {
        let base = url("https://example.com/");
        let html = r#"<!doctype html><title a='é'>Ti&amp;tle 😀</title><meta name="description" content='dé&#233;'><link rel=icon href="ü.png"><!-- c --><script>"<"</script>"#;
        for (index, _) in html.char_indices() {
            let _ = extract_metadata(&html[..index], &base);
            let _ = extract_metadata(&html[index..], &base);
        }

        let pieces = [
            "<",
            ">",
            "/",
            "'",
            "\"",
            "=",
            "&",
            "#",
            ";",
            "x",
            "!--",
            "-->",
            " ",
            "é",
            "😀",
            "title",
            "meta",
            "link",
            "script",
            "name",
            "content",
            "rel",
            "icon",
            "href",
            "description",
            "&#",
            "&amp;",
            "</",
        ];
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..3000 {
            let mut input = String::new();
            for _ in 0..(state % 40) {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let index = usize::try_from((state >> 33) % pieces.len() as u64).unwrap_or(0);
                input.push_str(pieces[index]);
            }
            let _ = extract_metadata(&input, &base);
            let _ = sniff_meta_charset(input.as_bytes());
        }
    }

    #[test]
    fn meta_charset_is_found_in_both_spellings() {
        assert_eq!(
            sniff_meta_charset(br#"<html><head><meta charset="ISO-8859-1">"#).as_deref(),
            Some("ISO-8859-1")
        );
        assert_eq!(
            sniff_meta_charset(
                br#"<meta http-equiv="Content-Type" content="text/html; charset=windows-1251">"#
            )
            .as_deref(),
            Some("windows-1251")
        );
        assert_eq!(
            sniff_meta_charset(b"<meta charset=utf-16>").as_deref(),
            Some("utf-8")
        );
        assert_eq!(sniff_meta_charset(b"<title>no charset</title>"), None);
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

    #[test]
    fn default_policy_matches_the_api_promise() {
        let policy = FetchPolicy::default();
        assert_eq!(policy.timeout, Duration::from_secs(5));
        assert_eq!(policy.max_bytes, 1_048_576);
        assert_eq!(policy.max_redirects, 5);
        assert!(policy.allowed_addrs.is_empty());
    }

    #[test]
    fn page_metadata_serializes_in_camel_case() {
        let metadata = PageMetadata {
            title: Some("T".into()),
            description: None,
            favicon: Some("https://example.com/favicon.ico".into()),
            url: "https://example.com/".into(),
        };
        let json = serde_json::to_value(&metadata).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({
                "title": "T",
                "description": null,
                "favicon": "https://example.com/favicon.ico",
                "url": "https://example.com/"
            })
        );
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
}

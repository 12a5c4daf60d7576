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
//! # Layout
//! - `policy`: which URLs and addresses may be fetched (the SSRF guard and the allowlist);
//!   the special-purpose ranges are `ipnet` tables.
//! - `fetch`: the HTTP side — pinned client per hop, redirects, deadline, size cap, charset.
//! - `extract`: HTML → title, description, favicon ([`extract_metadata`]), on the `lol_html`
//!   streaming parser under a memory limit, entities decoded by `htmlize`.
//!
//! # Architecture Invariant
//! This is the only code that fetches user-given URLs. It never builds a DOM: all we need
//! are a few tags from the head of a page, so the HTML is streamed through a tokenizer that
//! reports start tags and never panics on any input.

mod extract;
mod fetch;
mod policy;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

pub use extract::extract_metadata;
pub use policy::is_forbidden_ip;

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
        fetch::build_client(None)?;
        Ok(Self {
            policy: Arc::new(policy),
        })
    }

    /// Fetches `url` (following redirects) and extracts its metadata.
    pub async fn fetch(&self, url: &Url) -> Result<PageMetadata, MetadataError> {
        fetch::fetch(&self.policy, url).await
    }

    /// POSTs `body` with `headers` to `url` once (a webhook delivery) under the address
    /// rules, unless `open` (the operator allowed private destinations); no redirect is
    /// followed, the whole exchange is bounded by the policy's timeout. The answer's status.
    pub async fn post(
        &self,
        url: &Url,
        headers: reqwest::header::HeaderMap,
        body: bytes::Bytes,
        open: bool,
    ) -> Result<u16, MetadataError> {
        fetch::post_once(&self.policy, url, headers, body, open)
            .await
            .map(|s| s.as_u16())
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
        policy::check_later_destination(&self.policy.allowed_addrs, url, within).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}

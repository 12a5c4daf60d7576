//! Request-side helpers: the client address, JSON bodies with field-naming errors, query
//! parameters, and API-key authentication.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::request::Parts;
use http::HeaderMap;
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::error::{too_many, ApiError};
use crate::app::App;
use crate::domain::{hash_api_key, looks_like_api_key};
use crate::redis::limiter::{Decision, Limit, Verdict};
use crate::store::{ApiKeyRecord, Scope};

pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Per-request facts every handler may need.
pub struct RequestCtx {
    pub parts: Parts,
    pub client_ip: IpAddr,
    pub now_ms: i64,
    /// The API key the request authenticated with, once [`authenticate`] has accepted it.
    pub caller: std::sync::OnceLock<uuid::Uuid>,
}

impl RequestCtx {
    pub fn headers(&self) -> &HeaderMap {
        &self.parts.headers
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.parts.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The value of query parameter `name`, percent-decoded.
    pub fn query(&self, name: &str) -> Option<String> {
        let q = self.parts.uri.query()?;
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// An integer query parameter within `[min, max]`, `default` when absent.
    pub fn query_int(&self, name: &str, default: i64, min: i64, max: i64) -> Result<i64, ApiError> {
        match self.query(name) {
            None => Ok(default),
            Some(v) => match v.trim().parse::<i64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(n),
                _ => Err(ApiError::BadRequest(format!(
                    "{name} must be a whole number from {min} to {max}"
                ))),
            },
        }
    }
}

/// The client address: the peer, or with `TRUST_PROXY = n` the address `n` hops back in
/// `X-Forwarded-For` (each trusted proxy appends the address it saw).
pub fn client_ip(peer: SocketAddr, headers: &HeaderMap, trust_proxy: usize) -> IpAddr {
    let peer_ip = canonical(peer.ip());
    if trust_proxy == 0 {
        return peer_ip;
    }
    let mut hops: Vec<IpAddr> = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(s) = value.to_str() else {
            return peer_ip;
        };
        for part in s.split(',') {
            match part.trim().parse::<IpAddr>() {
                Ok(ip) => hops.push(canonical(ip)),
                // A malformed chain cannot be trusted at all.
                Err(_) => return peer_ip,
            }
        }
    }
    if hops.is_empty() {
        return peer_ip;
    }
    // hops (right to left) are what each trusted proxy saw; the peer is the nearest proxy.
    let idx = hops.len().saturating_sub(trust_proxy);
    hops[idx]
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// Reads a body of at most [`MAX_BODY_BYTES`] (413 past it) arriving whole within `within`
/// (`HTTP_BODY_TIMEOUT_MS`; 408 past it: a slow body must not hold a connection for minutes).
/// The rest of a body refused as too large is read and discarded in the background
/// ([`linger`]), so the client reads the 413 instead of a reset.
pub async fn read_body<B>(headers: &HeaderMap, body: B, within: Duration) -> Result<Bytes, ApiError>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let mut body = Box::pin(body);
    if let Some(len) = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > MAX_BODY_BYTES as u64 {
            linger(body);
            return Err(ApiError::PayloadTooLarge);
        }
    }
    let read = async {
        let mut buf = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.map_err(|_| BodyError::Unreadable)?.into_data() else {
                continue; // trailers
            };
            if buf.len() + data.remaining() > MAX_BODY_BYTES {
                return Err(BodyError::TooLarge);
            }
            buf.put(data);
        }
        Ok(buf.freeze())
    };
    match tokio::time::timeout(within, read).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(BodyError::TooLarge)) => {
            linger(body);
            Err(ApiError::PayloadTooLarge)
        }
        Ok(Err(BodyError::Unreadable)) => Err(ApiError::BadRequest(
            "could not read the request body".to_string(),
        )),
        Err(_) => Err(ApiError::RequestTimeout(format!(
            "Request body not received within {} s",
            within.as_secs_f64()
        ))),
    }
}

enum BodyError {
    TooLarge,
    Unreadable,
}

/// How much of a refused body [`linger`] reads at most, and for how long.
const LINGER_BYTES: usize = 16 * 1024 * 1024;
const LINGER_TIME: Duration = Duration::from_secs(2);

/// Reads and discards what is left of a body refused as too large, for at most
/// [`LINGER_TIME`] and [`LINGER_BYTES`], while the 413 is sent (a lingering close, as nginx
/// does). A connection closed with the client's bytes unread is reset by the kernel, and the
/// reset can destroy the answer before the client, still sending, reads it. If the body ends
/// within the bounds the connection stays usable; otherwise it is closed.
fn linger<B>(mut body: Pin<Box<B>>)
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
{
    tokio::spawn(async move {
        let mut left = LINGER_BYTES;
        let drain = async {
            while let Some(Ok(frame)) = body.frame().await {
                if let Some(data) = frame.data_ref() {
                    left = left.saturating_sub(data.remaining());
                    if left == 0 {
                        break;
                    }
                }
            }
        };
        let _ = tokio::time::timeout(LINGER_TIME, drain).await;
    });
}

/// Parses a JSON body into `T`; errors name the offending field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // serde would also accept an array for a struct (fields by position): insist on an object.
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        Some(_) if serde_json::from_slice::<serde_json::Value>(bytes).is_err() => {
            return Err(ApiError::BadRequest(
                "malformed JSON: request body is not valid JSON".to_string(),
            ));
        }
        _ => {
            return Err(ApiError::BadRequest(
                "request body must be a JSON object".to_string(),
            ))
        }
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize::<_, T>(&mut de).map_err(field_error)
}

/// [`parse_json`] for a JSON object already parsed (a row of a bulk import), with the same
/// messages.
pub fn parse_json_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    if !value.is_object() {
        return Err(ApiError::BadRequest(
            "request body must be a JSON object".to_string(),
        ));
    }
    serde_path_to_error::deserialize::<_, T>(value).map_err(field_error)
}

/// A deserialisation error as a 400 naming the field.
fn field_error(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    let message = match inner.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            format!("malformed JSON: {inner}")
        }
        _ if path == "." || path.is_empty() => {
            // Missing fields are reported at the root; serde's message names them.
            let m = strip_position(&inner.to_string());
            if m.starts_with("invalid type") {
                format!("request body must be a JSON object ({m})")
            } else {
                m
            }
        }
        _ => format!(
            "invalid field `{path}`: {}",
            strip_position(&inner.to_string())
        ),
    };
    ApiError::BadRequest(message)
}

fn strip_position(m: &str) -> String {
    match m.find(" at line ") {
        Some(i) => m[..i].to_string(),
        None => m.to_string(),
    }
}

/// Deserializes a field that may be absent (`None`), `null` (`Some(None)`) or a value.
pub fn double_option<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: serde::Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Deserializes a field that may be absent (`None`) but not `null`: for fields whose schema is
/// not nullable (a boolean, a count, a name), `null` is a 400 naming the field, not "absent".
pub fn non_null<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
where
    T: serde::Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    T::deserialize(d).map(Some)
}

/// Text a request stores in PostgreSQL (names, titles, descriptions). PostgreSQL's `text`
/// cannot hold NUL (U+0000), and JSON can carry it (`"\u0000"`): refused with a 400 naming the
/// field, instead of the database refusing it later as a 500 (hardening issue, finding 4).
/// JSON strings are valid UTF-8 otherwise (serde refuses lone surrogates), so NUL is the one
/// character to refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text(pub String);

impl<'de> serde::Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.contains('\0') {
            return Err(serde::de::Error::custom(
                "must not contain NUL characters (\\u0000)",
            ));
        }
        Ok(Text(s))
    }
}

impl Text {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// The authenticated caller.
pub struct Caller {
    pub key: ApiKeyRecord,
}

impl Caller {
    pub fn scope(&self) -> Scope {
        Scope {
            key_id: self.key.id,
            admin: self.key.is_admin,
        }
    }
}

/// Checks `x-api-key` (401 missing, 403 unknown or revoked) and the key's own rate limits.
pub async fn authenticate(app: &App, ctx: &RequestCtx) -> Result<Caller, ApiError> {
    let key = find_key(app, ctx).await?;
    let subject = key.id.to_string();
    let [(min, min_refusal), (hour, hour_refusal)] = key_limits(&key, &subject);
    check_limits(app, ctx, [min, hour], [min_refusal, hour_refusal]).await?;
    let _ = ctx.caller.set(key.id);
    Ok(Caller { key })
}

/// A route's own limit, checked with the key's ([`authenticate_and_limit`]), and what a
/// refusal by it says.
pub struct RouteLimit<'a> {
    pub limit: Limit<'a>,
    pub refusal: &'static str,
}

/// [`authenticate`], plus the route's own limit (e.g. creates per client address) decided in
/// the same step as the key's per-minute and per-hour limits: one round trip to Redis, and
/// the request is counted in all three or, when one refuses, in none. Returns the route
/// limit's decision, for the response's `RateLimit-*` headers.
pub async fn authenticate_and_limit(
    app: &App,
    ctx: &RequestCtx,
    route: RouteLimit<'_>,
) -> Result<(Caller, Decision), ApiError> {
    let key = find_key(app, ctx).await?;
    let subject = key.id.to_string();
    let [(min, min_refusal), (hour, hour_refusal)] = key_limits(&key, &subject);
    let [_, _, decision] = check_limits(
        app,
        ctx,
        [min, hour, route.limit],
        [min_refusal, hour_refusal, route.refusal],
    )
    .await?;
    let _ = ctx.caller.set(key.id);
    Ok((Caller { key }, decision))
}

/// The key named by `x-api-key`: 401 when missing, 403 when unknown or revoked.
async fn find_key(app: &App, ctx: &RequestCtx) -> Result<ApiKeyRecord, ApiError> {
    let Some(presented) = ctx
        .header("x-api-key")
        .map(str::trim)
        .filter(|k| !k.is_empty())
    else {
        return Err(ApiError::KeyMissing);
    };
    if !looks_like_api_key(presented) {
        return Err(ApiError::KeyInvalid);
    }
    app.store
        .find_api_key(&hash_api_key(&presented.to_ascii_lowercase()))
        .await?
        .ok_or(ApiError::KeyInvalid)
}

/// A key's own limits (`subject` is its id), with what each refusal says.
fn key_limits<'a>(key: &ApiKeyRecord, subject: &'a str) -> [(Limit<'a>, &'static str); 2] {
    let limit = |name, per_window: i32, secs| Limit {
        name,
        subject,
        limit: per_window.max(1) as u32,
        window: Duration::from_secs(secs),
    };
    [
        (
            limit("key-min", key.rate_limit_per_min, 60),
            "Too many requests for this API key, please slow down",
        ),
        (
            limit("key-hour", key.rate_limit_per_hour, 3600),
            "Hourly request limit for this API key reached",
        ),
    ]
}

/// Counts the request against every limit or none (one step in Redis); 429 with the first
/// refusing limit's message.
async fn check_limits<const N: usize>(
    app: &App,
    ctx: &RequestCtx,
    limits: [Limit<'_>; N],
    refusals: [&'static str; N],
) -> Result<[Decision; N], ApiError> {
    match app.shared_limiter.hit_all(&limits, ctx.now_ms).await {
        Verdict::Allowed(decisions) => Ok(decisions),
        Verdict::Refused { index, decision } => Err(too_many(refusals[index], decision)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", v.parse().expect("header"));
        }
        h
    }

    fn peer() -> SocketAddr {
        "10.0.0.1:1234".parse().expect("addr")
    }

    #[test]
    fn without_trust_proxy_the_peer_is_the_client() {
        assert_eq!(
            client_ip(peer(), &headers(&["203.0.113.9"]), 0).to_string(),
            "10.0.0.1"
        );
    }

    #[test]
    fn trusted_hops_pick_the_address_that_many_hops_back() {
        let h = headers(&["198.51.100.7, 203.0.113.9"]);
        assert_eq!(client_ip(peer(), &h, 1).to_string(), "203.0.113.9");
        assert_eq!(client_ip(peer(), &h, 2).to_string(), "198.51.100.7");
        assert_eq!(client_ip(peer(), &h, 5).to_string(), "198.51.100.7");
    }

    #[test]
    fn malformed_forwarded_chains_fall_back_to_the_peer() {
        assert_eq!(
            client_ip(peer(), &headers(&["not-an-ip"]), 1).to_string(),
            "10.0.0.1"
        );
    }

    #[test]
    fn ipv4_mapped_peers_are_reported_as_ipv4() {
        let p: SocketAddr = "[::ffff:192.0.2.5]:80".parse().expect("addr");
        assert_eq!(client_ip(p, &HeaderMap::new(), 0).to_string(), "192.0.2.5");
    }

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Body {
        url: String,
        #[serde(default)]
        flag: Option<bool>,
    }

    #[test]
    fn json_errors_name_the_field() {
        let e = parse_json::<Body>(br#"{"url": 5}"#).expect_err("type");
        assert!(e.to_string().contains("`url`"), "{e}");
        let e = parse_json::<Body>(br#"{"url": "x", "flag": "yes"}"#).expect_err("type");
        assert!(e.to_string().contains("`flag`"), "{e}");
        let e = parse_json::<Body>(br#"{}"#).expect_err("missing");
        assert!(e.to_string().contains("missing field `url`"), "{e}");
        let e = parse_json::<Body>(br#"{"url": "#).expect_err("syntax");
        assert!(e.to_string().starts_with("malformed JSON"), "{e}");
        let e = parse_json::<Body>(b"[1]").expect_err("not object");
        assert!(e.to_string().contains("JSON object"), "{e}");
    }
}

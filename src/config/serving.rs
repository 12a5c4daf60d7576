//! Section HTTP: how `boltlink-api` serves — its address and public URLs, CORS, the client
//! address behind proxies, connection bounds and the password-hashing bound.

use std::net::SocketAddr;
use std::time::Duration;

use url::Url;

use super::read::Reader;
use super::vars::{
    ALLOWED_ORIGINS, BIND_ADDR, FRONTEND_URL, HTTP_BODY_TIMEOUT_MS, HTTP_HEADER_TIMEOUT_MS,
    HTTP_IDLE_TIMEOUT_MS, HTTP_MAX_CONNECTIONS, HTTP_MAX_CONNECTIONS_PER_CLIENT,
    PASSWORD_HASH_CONCURRENCY, PUBLIC_BASE_URL, TRUST_PROXY,
};
use super::ConfigError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    pub bind_addr: SocketAddr,
    /// Base of `shortUrl`, without a trailing slash.
    pub public_base_url: String,
    /// Dashboard origin for the verify and rate-limit pages, without a trailing slash.
    pub frontend_url: Option<String>,
    pub allowed_origins: AllowedOrigins,
    /// How many `X-Forwarded-For` hops to trust (0: use the peer address).
    pub trust_proxy: usize,
    /// Password hashes and checks running at once per process.
    pub password_hash_concurrency: usize,
    pub limits: HttpLimits,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigins {
    Any,
    List(Vec<String>),
}

impl AllowedOrigins {
    /// Whether `origin` may read responses, and with credentials. `*` lets any origin read
    /// (the origin is echoed) but never with credentials: reflecting every origin *with*
    /// credentials would let any site, or a sandboxed `null` origin, act with a visitor's
    /// cookies or HTTP auth. Listed origins get credentials, as the contract says.
    pub fn allow(&self, origin: &str) -> Option<CorsGrant> {
        match self {
            AllowedOrigins::Any => Some(CorsGrant { credentials: false }),
            AllowedOrigins::List(list) => list
                .iter()
                .any(|o| o == origin)
                .then_some(CorsGrant { credentials: true }),
        }
    }
}

/// What an allowed origin gets (see [`AllowedOrigins::allow`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CorsGrant {
    pub credentials: bool,
}

/// Connection and request-time bounds of the HTTP edge (hardening issue, finding 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// A request head must arrive within this, counted from the accept or from the end of
    /// the previous response (so it also closes idle HTTP/1.1 keep-alive connections).
    pub header_timeout: Duration,
    /// A request body must arrive whole within this (else 408).
    pub body_timeout: Duration,
    /// A connection with no request in flight for this long is closed (HTTP/2: GOAWAY).
    pub idle_timeout: Duration,
    /// Open connections per process; over it the oldest idle one is shed, or the new one
    /// refused when none is idle.
    pub max_connections: usize,
    /// Open connections per client address (the peer) per process, the same way; 0 = no cap.
    pub max_connections_per_client: usize,
}

/// The soft limit on open files of this process (`/proc/self/limits`), if it can be read.
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()?;
    if soft == "unlimited" {
        return Some(u64::MAX);
    }
    soft.parse().ok()
}

/// File descriptors kept free of client connections for PostgreSQL, Redis, the listener,
/// journald and outgoing fetches.
pub const RESERVED_FDS: u64 = 128;
/// `HTTP_MAX_CONNECTIONS=auto` never goes above this: each open connection costs a few
/// kilobytes even idle, and more than this per process means a flood, not clients.
pub const AUTO_MAX_CONNECTIONS: u64 = 4096;
/// `HTTP_MAX_CONNECTIONS_PER_CLIENT=auto` without `TRUST_PROXY`.
pub const AUTO_MAX_CONNECTIONS_PER_CLIENT: usize = 256;

pub(super) fn http(r: &mut Reader<'_>) -> Result<HttpConfig, ConfigError> {
    let bind_addr: SocketAddr = r.parse(BIND_ADDR, |v| {
        v.parse::<SocketAddr>()
            .map_err(|_| "expected IP:PORT, for example 127.0.0.1:5000".to_string())
    })?;
    let public_base_url = match r.set(PUBLIC_BASE_URL) {
        Some(v) => parse_base_url(PUBLIC_BASE_URL.name, v)?,
        None => {
            let derived = format!("http://{bind_addr}");
            r.resolved(PUBLIC_BASE_URL, &derived);
            derived
        }
    };
    let frontend_url = r
        .set(FRONTEND_URL)
        .map(|v| parse_base_url(FRONTEND_URL.name, v))
        .transpose()?;
    let allowed_origins = parse_origins(r.required(ALLOWED_ORIGINS)?)?;
    let trust_proxy = parse_trust_proxy(r.required(TRUST_PROXY)?)?;
    let password_hash_concurrency = match r.set(PASSWORD_HASH_CONCURRENCY) {
        Some(v) => r.number_from(PASSWORD_HASH_CONCURRENCY, v)?,
        None => {
            let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
            r.resolved(PASSWORD_HASH_CONCURRENCY, cpus);
            cpus
        }
    };
    let limits = limits(r, trust_proxy)?;
    Ok(HttpConfig {
        bind_addr,
        public_base_url,
        frontend_url,
        allowed_origins,
        trust_proxy,
        password_hash_concurrency,
        limits,
    })
}

fn limits(r: &mut Reader<'_>, trust_proxy: usize) -> Result<HttpLimits, ConfigError> {
    let fds = open_files_limit().unwrap_or(1024);
    let room = fds.saturating_sub(RESERVED_FDS).max(16);
    let max_connections = match r.required(HTTP_MAX_CONNECTIONS)? {
        "auto" => {
            let n = (room * 3 / 4).clamp(16, AUTO_MAX_CONNECTIONS) as usize;
            r.resolved(HTTP_MAX_CONNECTIONS, format!("auto ({n})"));
            n
        }
        v => {
            let n: u64 = r.number_from(HTTP_MAX_CONNECTIONS, v)?;
            if n > room {
                return Err(ConfigError::new(
                    HTTP_MAX_CONNECTIONS.name,
                    format!(
                        "{n} does not fit under the open-file limit of this process ({fds}, of which {RESERVED_FDS} stay free for other uses); raise LimitNOFILE= or use auto"
                    ),
                ));
            }
            n as usize
        }
    };
    let max_connections_per_client = match r.required(HTTP_MAX_CONNECTIONS_PER_CLIENT)? {
        "auto" => {
            // Behind a proxy every connection comes from the proxy: no per-peer cap by default.
            let n = if trust_proxy > 0 {
                0
            } else {
                AUTO_MAX_CONNECTIONS_PER_CLIENT
            };
            r.resolved(HTTP_MAX_CONNECTIONS_PER_CLIENT, format!("auto ({n})"));
            n
        }
        v => r.number_from(HTTP_MAX_CONNECTIONS_PER_CLIENT, v)?,
    };
    Ok(HttpLimits {
        header_timeout: r.millis(HTTP_HEADER_TIMEOUT_MS)?,
        body_timeout: r.millis(HTTP_BODY_TIMEOUT_MS)?,
        idle_timeout: r.millis(HTTP_IDLE_TIMEOUT_MS)?,
        max_connections,
        max_connections_per_client,
    })
}

fn parse_base_url(var: &str, value: &str) -> Result<String, ConfigError> {
    let url = Url::parse(value)
        .map_err(|e| ConfigError::new(var, format!("{value:?} is not an absolute URL ({e})")))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(ConfigError::new(
            var,
            format!("{value:?} must start with http:// or https://"),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::new(
            var,
            format!("{value:?} must not have a query or fragment"),
        ));
    }
    Ok(value.trim_end_matches('/').to_string())
}

fn parse_origins(value: &str) -> Result<AllowedOrigins, ConfigError> {
    if value == "*" {
        return Ok(AllowedOrigins::Any);
    }
    let var = ALLOWED_ORIGINS.name;
    let mut list = Vec::new();
    for origin in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let url = Url::parse(origin).map_err(|_| {
            ConfigError::new(
                var,
                format!("{origin:?} is not an origin like https://app.example"),
            )
        })?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(ConfigError::new(var, format!("{origin:?} must be http(s)")));
        }
        list.push(origin.trim_end_matches('/').to_string());
    }
    if list.is_empty() {
        return Err(ConfigError::new(
            var,
            "is empty; use * or a comma-separated list of origins",
        ));
    }
    Ok(AllowedOrigins::List(list))
}

fn parse_trust_proxy(value: &str) -> Result<usize, ConfigError> {
    match value.to_ascii_lowercase().as_str() {
        "false" | "no" | "off" => Ok(0),
        "true" | "yes" | "on" => Ok(1),
        other => match other.parse::<usize>() {
            Ok(n) if n <= 16 => Ok(n),
            _ => Err(ConfigError::new(
                TRUST_PROXY.name,
                format!("{value:?} must be the number of proxy hops to trust (0-16), true (1) or false (0)"),
            )),
        },
    }
}

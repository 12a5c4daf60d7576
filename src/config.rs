//! Configuration: the environment plus an env file, parsed and validated before anything binds.
//!
//! Precedence: a variable set in the process environment wins over the same variable in the
//! env file (`/etc/boltlink/boltlink.env`, or `BOLTLINK_ENV_FILE`). systemd's
//! `EnvironmentFile=` feeds the same file into the environment, so both paths agree.
//!
//! Parsing works on a plain `HashMap` so tests never touch the process environment.
//! A bad value is a [`ConfigError`] naming the variable; binaries print it on one line and
//! exit with [`EXIT_CONFIG`] (78, `EX_CONFIG`), which the units list in
//! `RestartPreventExitStatus=` so a typo never becomes a restart loop.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use url::Url;

/// `EX_CONFIG` from sysexits.h.
pub const EXIT_CONFIG: i32 = 78;

pub const DEFAULT_ENV_FILE: &str = "/etc/boltlink/boltlink.env";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration error: {var}: {message}")]
pub struct ConfigError {
    pub var: String,
    pub message: String,
}

impl ConfigError {
    fn new(var: &str, message: impl Into<String>) -> Self {
        Self {
            var: var.to_string(),
            message: message.into(),
        }
    }
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

/// Per-client and per-key limits. Windows are fixed by the contract; counts are configurable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimits {
    /// `POST /api/shorten` per client IP per 5 minutes.
    pub shorten_per_5min: u32,
    /// Redirects and verifies per client IP per minute.
    pub redirect_per_min: u32,
    /// `POST /api/generate-key` per client IP per hour.
    pub generate_key_per_hour: u32,
    /// Wrong passwords per (link, client IP) per 15 minutes before verify answers 429.
    pub verify_failures_per_client: u32,
    /// Wrong passwords per link (all clients) per 15 minutes before verify answers 429.
    pub verify_failures_per_link: u32,
    /// Default per-key limits for authenticated routes (stored per key at creation).
    pub key_per_min: u32,
    pub key_per_hour: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            shorten_per_5min: 100,
            redirect_per_min: 1000,
            generate_key_per_hour: 5,
            verify_failures_per_client: 5,
            verify_failures_per_link: 50,
            key_per_min: 600,
            key_per_hour: 20_000,
        }
    }
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

#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: String,
    pub redis_url: String,
    pub bind_addr: SocketAddr,
    /// Base of `shortUrl`, without a trailing slash.
    pub public_base_url: String,
    /// Dashboard origin for the verify and rate-limit pages, without a trailing slash.
    pub frontend_url: Option<String>,
    pub allowed_origins: AllowedOrigins,
    /// How many `X-Forwarded-For` hops to trust (0: use the peer address).
    pub trust_proxy: usize,
    pub db_pool_size: u32,
    pub redis_key_prefix: String,
    pub rate_limits: RateLimits,
    pub log_level: String,
    /// One `boltlink::access` line per request (off by default: see the README).
    pub access_log: bool,
    pub migrate_on_start: bool,
    pub shutdown_timeout: Duration,
    pub local_cache_ttl: Duration,
    /// The local cache lifetime while the invalidation listener is subscribed.
    pub local_cache_subscribed_ttl: Duration,
    pub redis_cache_ttl: Duration,
    pub negative_cache_ttl: Duration,
    pub click_queue_capacity: usize,
    pub worker_threads: usize,
    /// Resident memory above which the API drains and exits 75 so that systemd restarts it
    /// (PM2's graceful max_memory_restart; the unit's MemoryMax= is a hard kill without a
    /// drain). `None` when MEMORY_RESTART_MB=0.
    pub memory_restart_bytes: Option<u64>,
    pub instance: String,
    pub metadata_fetch: bool,
    pub metadata_allowlist: Vec<SocketAddr>,
    /// Password hashes and checks running at once per process.
    pub password_hash_concurrency: usize,
    pub http: HttpLimits,
    pub pipeline: PipelineConfig,
}

/// Settings of `boltlink-worker` and `boltlink-aggregator`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineConfig {
    /// Clicks per step, about (a large backlog is drained in batches this big).
    pub batch_size: usize,
    /// How long one read waits for new entries when the stream is idle.
    pub poll_interval: Duration,
    /// After a step that found less than a quarter of `batch_size` and the stream caught up, wait this long before the
    /// next read, so clicks gather into bigger batches (fewer, larger transactions).
    pub linger: Duration,
    /// Raw click events older than this many days are deleted (rollups are kept).
    pub retention_days: u32,
    /// Whether clicks flagged as bots count in `links.clicks` and rollups.
    pub count_bots: bool,
    /// MaxMind-format country database for events without a `cf-ipcountry` region.
    pub geoip_db: Option<std::path::PathBuf>,
}

impl Config {
    /// Reads the env file (if any) and the process environment, then validates.
    pub fn from_process_env() -> Result<Self, ConfigError> {
        Self::from_map(&with_env_files(std::env::vars().collect())?)
    }

    /// Validates a complete variable map (env file already merged in).
    pub fn from_map(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let get = |name: &str| vars.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());

        let database_url = match get("DATABASE_URL") {
            Some(v) => parse_database_url(v)?,
            None => {
                return Err(ConfigError::new(
                    "DATABASE_URL",
                    "is not set (expected postgres://user:password@host:port/database)",
                ))
            }
        };
        let redis_url = parse_redis_url(get("REDIS_URL").unwrap_or("redis://127.0.0.1:6379/"))?;
        let bind_addr: SocketAddr = parse_with(
            "BIND_ADDR",
            get("BIND_ADDR").unwrap_or("127.0.0.1:5000"),
            |v| {
                v.parse::<SocketAddr>()
                    .map_err(|_| "expected IP:PORT, for example 127.0.0.1:5000".to_string())
            },
        )?;
        let public_base_url = match get("PUBLIC_BASE_URL") {
            Some(v) => parse_base_url("PUBLIC_BASE_URL", v)?,
            None => format!("http://{bind_addr}"),
        };
        let frontend_url = get("FRONTEND_URL")
            .map(|v| parse_base_url("FRONTEND_URL", v))
            .transpose()?;
        let allowed_origins = parse_origins(get("ALLOWED_ORIGINS").unwrap_or("*"))?;
        let trust_proxy = parse_trust_proxy(get("TRUST_PROXY").unwrap_or("0"))?;
        let db_pool_size = parse_number("DB_POOL_SIZE", get("DB_POOL_SIZE"), 10, 1, 500)?;
        let redis_key_prefix = get("REDIS_KEY_PREFIX").unwrap_or("boltlink:").to_string();
        if redis_key_prefix
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(ConfigError::new(
                "REDIS_KEY_PREFIX",
                "must not contain whitespace or control characters",
            ));
        }
        let defaults = RateLimits::default();
        let rate_limits = RateLimits {
            shorten_per_5min: parse_number(
                "RATE_LIMIT_SHORTEN_PER_5MIN",
                get("RATE_LIMIT_SHORTEN_PER_5MIN"),
                defaults.shorten_per_5min,
                1,
                10_000_000,
            )?,
            redirect_per_min: parse_number(
                "RATE_LIMIT_REDIRECT_PER_MIN",
                get("RATE_LIMIT_REDIRECT_PER_MIN"),
                defaults.redirect_per_min,
                1,
                100_000_000,
            )?,
            generate_key_per_hour: parse_number(
                "RATE_LIMIT_GENERATE_KEY_PER_HOUR",
                get("RATE_LIMIT_GENERATE_KEY_PER_HOUR"),
                defaults.generate_key_per_hour,
                1,
                1_000_000,
            )?,
            verify_failures_per_client: parse_number(
                "RATE_LIMIT_VERIFY_FAILURES_PER_CLIENT",
                get("RATE_LIMIT_VERIFY_FAILURES_PER_CLIENT"),
                defaults.verify_failures_per_client,
                1,
                1_000_000,
            )?,
            verify_failures_per_link: parse_number(
                "RATE_LIMIT_VERIFY_FAILURES_PER_LINK",
                get("RATE_LIMIT_VERIFY_FAILURES_PER_LINK"),
                defaults.verify_failures_per_link,
                1,
                1_000_000,
            )?,
            key_per_min: parse_number(
                "RATE_LIMIT_KEY_PER_MIN",
                get("RATE_LIMIT_KEY_PER_MIN"),
                defaults.key_per_min,
                1,
                100_000_000,
            )?,
            key_per_hour: parse_number(
                "RATE_LIMIT_KEY_PER_HOUR",
                get("RATE_LIMIT_KEY_PER_HOUR"),
                defaults.key_per_hour,
                1,
                1_000_000_000,
            )?,
        };
        let log_level = get("LOG_LEVEL").unwrap_or("info").to_string();
        if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
            return Err(ConfigError::new(
                "LOG_LEVEL",
                format!("{log_level:?} is not a level or filter (try info, debug, or boltlink=debug,info)"),
            ));
        }
        let access_log = parse_bool("ACCESS_LOG", get("ACCESS_LOG"), false)?;
        let migrate_on_start = parse_bool("MIGRATE_ON_START", get("MIGRATE_ON_START"), true)?;
        let shutdown_timeout = Duration::from_millis(parse_number(
            "SHUTDOWN_TIMEOUT_MS",
            get("SHUTDOWN_TIMEOUT_MS"),
            4000u64,
            100,
            600_000,
        )?);
        let local_cache_ttl = Duration::from_millis(parse_number(
            "LOCAL_CACHE_TTL_MS",
            get("LOCAL_CACHE_TTL_MS"),
            1000u64,
            0,
            60_000,
        )?);
        let local_cache_subscribed_ttl = Duration::from_millis(parse_number(
            "LOCAL_CACHE_SUBSCRIBED_TTL_MS",
            get("LOCAL_CACHE_SUBSCRIBED_TTL_MS"),
            60_000u64,
            0,
            3_600_000,
        )?);
        let redis_cache_ttl = Duration::from_secs(parse_number(
            "REDIS_CACHE_TTL_SECS",
            get("REDIS_CACHE_TTL_SECS"),
            300u64,
            1,
            86_400,
        )?);
        let negative_cache_ttl = Duration::from_secs(parse_number(
            "NEGATIVE_CACHE_TTL_SECS",
            get("NEGATIVE_CACHE_TTL_SECS"),
            30u64,
            1,
            3600,
        )?);
        let click_queue_capacity = parse_number(
            "CLICK_QUEUE_CAPACITY",
            get("CLICK_QUEUE_CAPACITY"),
            200_000usize,
            100,
            100_000_000,
        )?;
        let worker_threads = parse_number(
            "API_WORKER_THREADS",
            get("API_WORKER_THREADS"),
            2usize,
            1,
            256,
        )?;
        let memory_restart_mb: u64 = parse_number(
            "MEMORY_RESTART_MB",
            get("MEMORY_RESTART_MB"),
            400,
            0,
            1_000_000,
        )?;
        let memory_restart_bytes = (memory_restart_mb > 0).then_some(memory_restart_mb << 20);
        let instance = match get("BOLTLINK_INSTANCE") {
            Some(v) => {
                if v.len() > 64
                    || !v
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
                {
                    return Err(ConfigError::new(
                        "BOLTLINK_INSTANCE",
                        "must be at most 64 characters of A-Z a-z 0-9 - _ . @",
                    ));
                }
                v.to_string()
            }
            None => format!("pid{}", std::process::id()),
        };
        let metadata_fetch = parse_bool("METADATA_FETCH", get("METADATA_FETCH"), true)?;
        let metadata_allowlist = match get("METADATA_ALLOWLIST") {
            None => Vec::new(),
            Some(v) => v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.parse::<SocketAddr>().map_err(|_| {
                        ConfigError::new(
                            "METADATA_ALLOWLIST",
                            format!("{s:?} is not an IP:PORT address"),
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        let password_hash_concurrency = parse_number(
            "PASSWORD_HASH_CONCURRENCY",
            get("PASSWORD_HASH_CONCURRENCY"),
            std::thread::available_parallelism().map_or(2, |n| n.get()),
            1,
            256,
        )?;
        let http = parse_http_limits(&get, trust_proxy)?;

        let pipeline = PipelineConfig {
            batch_size: parse_number(
                "PIPELINE_BATCH_SIZE",
                get("PIPELINE_BATCH_SIZE"),
                5000usize,
                1,
                100_000,
            )?,
            poll_interval: Duration::from_millis(parse_number(
                "PIPELINE_POLL_MS",
                get("PIPELINE_POLL_MS"),
                500u64,
                1,
                60_000,
            )?),
            linger: Duration::from_millis(parse_number(
                "PIPELINE_LINGER_MS",
                get("PIPELINE_LINGER_MS"),
                200u64,
                0,
                10_000,
            )?),
            retention_days: parse_number(
                "CLICK_RETENTION_DAYS",
                get("CLICK_RETENTION_DAYS"),
                90u32,
                1,
                36_500,
            )?,
            count_bots: parse_bool("COUNT_BOTS", get("COUNT_BOTS"), false)?,
            geoip_db: match get("GEOIP_DB") {
                None => None,
                Some(path) => {
                    let p = std::path::PathBuf::from(path);
                    if !p.is_file() {
                        return Err(ConfigError::new(
                            "GEOIP_DB",
                            format!("{path:?} is not a readable file"),
                        ));
                    }
                    Some(p)
                }
            },
        };

        Ok(Config {
            database_url,
            redis_url,
            bind_addr,
            public_base_url,
            frontend_url,
            allowed_origins,
            trust_proxy,
            db_pool_size,
            redis_key_prefix,
            rate_limits,
            log_level,
            access_log,
            migrate_on_start,
            shutdown_timeout,
            local_cache_ttl,
            local_cache_subscribed_ttl,
            redis_cache_ttl,
            negative_cache_ttl,
            click_queue_capacity,
            worker_threads,
            memory_restart_bytes,
            instance,
            metadata_fetch,
            metadata_allowlist,
            password_hash_concurrency,
            http,
            pipeline,
        })
    }
}

/// The daemons' command line: none besides `--help` and `--version`. Everything else is
/// configuration (environment and env files), so a stray argument is refused with exit
/// status 2 and a pointer to where settings go, instead of being ignored.
pub fn daemon_command_line(name: &'static str, about: &'static str) {
    clap::Command::new(name)
        .version(env!("CARGO_PKG_VERSION"))
        .about(about)
        .after_help(format!(
            "{name} takes no arguments. It is configured by the environment and the env files \
             {setup} and {DEFAULT_ENV_FILE} (later ones win; the environment wins over both), \
             and is normally started by systemd as part of boltlink.target. Exit status 78: \
             configuration error. See {name}(8) and boltlink.env(5).",
            setup = "/etc/boltlink/setup.env",
        ))
        .get_matches();
}

/// The file `boltlinkctl setup` writes its database settings to, beside the env file
/// (`/etc/boltlink/setup.env`). It is read first, so the administrator's env file wins; the
/// units list it before `boltlink.env` in `EnvironmentFile=` for the same order.
pub const SETUP_ENV_FILE_NAME: &str = "setup.env";

/// The env file: `BOLTLINK_ENV_FILE` when set, else [`DEFAULT_ENV_FILE`]; and whether it was
/// named explicitly.
pub fn env_file_for(env: &HashMap<String, String>) -> (std::path::PathBuf, bool) {
    match env.get("BOLTLINK_ENV_FILE").filter(|p| !p.is_empty()) {
        Some(p) => (p.into(), true),
        None => (DEFAULT_ENV_FILE.into(), false),
    }
}

/// `setup.env` in the env file's directory.
pub fn setup_env_file_beside(env_file: &Path) -> std::path::PathBuf {
    env_file
        .parent()
        .unwrap_or(Path::new("/"))
        .join(SETUP_ENV_FILE_NAME)
}

/// `env` over the env files it names (see [`read_env_file_for`]): the variable map every
/// process and `boltlinkctl setup` decide from.
pub fn with_env_files(
    env: HashMap<String, String>,
) -> Result<HashMap<String, String>, ConfigError> {
    let mut merged = read_env_file_for(&env)?;
    merged.extend(env);
    Ok(merged)
}

/// Loads `setup.env` (when it exists) and then the env file named by `BOLTLINK_ENV_FILE`, or
/// the default one when it exists; a variable in the env file overrides the same variable in
/// `setup.env`. An explicitly named env file that is missing is an error; a missing default
/// file is not.
pub fn read_env_file_for(
    env: &HashMap<String, String>,
) -> Result<HashMap<String, String>, ConfigError> {
    let (path, explicit) = env_file_for(env);
    let mut merged = read_one_env_file(&setup_env_file_beside(&path), false)?;
    merged.extend(read_one_env_file(&path, explicit)?);
    Ok(merged)
}

fn read_one_env_file(path: &Path, required: bool) -> Result<HashMap<String, String>, ConfigError> {
    let shown = path.display();
    match std::fs::read_to_string(path) {
        Ok(text) => parse_env_file(&text).map_err(|(line, msg)| {
            ConfigError::new("BOLTLINK_ENV_FILE", format!("{shown}:{line}: {msg}"))
        }),
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => Ok(HashMap::new()),
        Err(e) => Err(ConfigError::new(
            "BOLTLINK_ENV_FILE",
            format!("cannot read {shown}: {e}"),
        )),
    }
}

/// Parses `KEY=VALUE` lines as systemd's `EnvironmentFile=` does for the common cases:
/// comments (`#`, `;`), blank lines, optional `export `, single or double quotes.
pub fn parse_env_file(text: &str) -> Result<HashMap<String, String>, (usize, String)> {
    let mut out = HashMap::new();
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err((line_no, "expected KEY=VALUE".to_string()));
        };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err((line_no, format!("{key:?} is not a valid variable name")));
        }
        let value = value.trim();
        let value = if value.len() >= 2
            && ((value.starts_with('"') && value.ends_with('"'))
                || (value.starts_with('\'') && value.ends_with('\'')))
        {
            &value[1..value.len() - 1]
        } else {
            value
        };
        out.insert(key.to_string(), value.to_string());
    }
    Ok(out)
}

fn parse_with<T>(
    var: &str,
    value: &str,
    f: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, ConfigError> {
    f(value).map_err(|m| ConfigError::new(var, format!("{value:?}: {m}")))
}

fn parse_number<T>(
    var: &str,
    value: Option<&str>,
    default: T,
    min: T,
    max: T,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let Some(value) = value else {
        return Ok(default);
    };
    match value.parse::<T>() {
        Ok(n) if n >= min && n <= max => Ok(n),
        _ => Err(ConfigError::new(
            var,
            format!("{value:?} is not a whole number from {min} to {max}"),
        )),
    }
}

fn parse_http_limits<'a>(
    get: &impl Fn(&str) -> Option<&'a str>,
    trust_proxy: usize,
) -> Result<HttpLimits, ConfigError> {
    let millis = |var: &str, default: u64| -> Result<Duration, ConfigError> {
        Ok(Duration::from_millis(parse_number(
            var,
            get(var),
            default,
            100,
            3_600_000,
        )?))
    };
    let fds = open_files_limit().unwrap_or(1024);
    let room = fds.saturating_sub(RESERVED_FDS).max(16);
    let max_connections = match get("HTTP_MAX_CONNECTIONS") {
        None | Some("auto") => (room * 3 / 4).clamp(16, AUTO_MAX_CONNECTIONS) as usize,
        Some(v) => {
            let n: u64 = parse_number("HTTP_MAX_CONNECTIONS", Some(v), 0, 1, 10_000_000)?;
            if n > room {
                return Err(ConfigError::new(
                    "HTTP_MAX_CONNECTIONS",
                    format!(
                        "{n} does not fit under the open-file limit of this process ({fds}, of which {RESERVED_FDS} stay free for other uses); raise LimitNOFILE= or use auto"
                    ),
                ));
            }
            n as usize
        }
    };
    let max_connections_per_client = match get("HTTP_MAX_CONNECTIONS_PER_CLIENT") {
        // Behind a proxy every connection comes from the proxy: no per-peer cap by default.
        None | Some("auto") if trust_proxy > 0 => 0,
        None | Some("auto") => AUTO_MAX_CONNECTIONS_PER_CLIENT,
        Some(v) => parse_number("HTTP_MAX_CONNECTIONS_PER_CLIENT", Some(v), 0, 0, 10_000_000)?,
    };
    Ok(HttpLimits {
        header_timeout: millis("HTTP_HEADER_TIMEOUT_MS", 10_000)?,
        body_timeout: millis("HTTP_BODY_TIMEOUT_MS", 10_000)?,
        idle_timeout: millis("HTTP_IDLE_TIMEOUT_MS", 30_000)?,
        max_connections,
        max_connections_per_client,
    })
}

fn parse_bool(var: &str, value: Option<&str>, default: bool) -> Result<bool, ConfigError> {
    match value.map(|v| v.to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) => match v.as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(ConfigError::new(
                var,
                format!("{v:?} is not a boolean (true/false)"),
            )),
        },
    }
}

fn parse_database_url(value: &str) -> Result<String, ConfigError> {
    let url = Url::parse(value).map_err(|e| {
        ConfigError::new(
            "DATABASE_URL",
            format!(
                "is not a valid URL ({e}); expected postgres://user:password@host:port/database"
            ),
        )
    })?;
    if url.scheme() != "postgres" && url.scheme() != "postgresql" {
        return Err(ConfigError::new(
            "DATABASE_URL",
            format!(
                "scheme {:?} is not supported; expected postgres://",
                url.scheme()
            ),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) && !url.query().unwrap_or("").contains("host=") {
        return Err(ConfigError::new("DATABASE_URL", "has no host"));
    }
    Ok(value.to_string())
}

fn parse_redis_url(value: &str) -> Result<String, ConfigError> {
    let url = Url::parse(value).map_err(|e| {
        ConfigError::new(
            "REDIS_URL",
            format!("is not a valid URL ({e}); expected redis://host:port/"),
        )
    })?;
    match url.scheme() {
        "redis" | "rediss" => {
            if url.host_str().is_none_or(str::is_empty) {
                return Err(ConfigError::new("REDIS_URL", "has no host"));
            }
        }
        "unix" | "redis+unix" => {}
        other => {
            return Err(ConfigError::new(
                "REDIS_URL",
                format!("scheme {other:?} is not supported; expected redis://"),
            ))
        }
    }
    Ok(value.to_string())
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
    let mut list = Vec::new();
    for origin in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let url = Url::parse(origin).map_err(|_| {
            ConfigError::new(
                "ALLOWED_ORIGINS",
                format!("{origin:?} is not an origin like https://app.example"),
            )
        })?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(ConfigError::new(
                "ALLOWED_ORIGINS",
                format!("{origin:?} must be http(s)"),
            ));
        }
        list.push(origin.trim_end_matches('/').to_string());
    }
    if list.is_empty() {
        return Err(ConfigError::new(
            "ALLOWED_ORIGINS",
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
                "TRUST_PROXY",
                format!("{value:?} must be the number of proxy hops to trust (0-16), true (1) or false (0)"),
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> HashMap<String, String> {
        HashMap::from([(
            "DATABASE_URL".to_string(),
            "postgres://u:p@127.0.0.1:5432/db".to_string(),
        )])
    }

    fn with(extra: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut m = base();
        for (k, v) in extra {
            m.insert(k.to_string(), v.to_string());
        }
        Config::from_map(&m)
    }

    #[test]
    fn defaults_apply_when_only_database_url_is_set() {
        let c = with(&[]).expect("valid");
        assert_eq!(c.bind_addr.to_string(), "127.0.0.1:5000");
        assert_eq!(c.public_base_url, "http://127.0.0.1:5000");
        assert_eq!(c.allowed_origins, AllowedOrigins::Any);
        assert_eq!(c.trust_proxy, 0);
        assert_eq!(c.rate_limits, RateLimits::default());
        assert_eq!(c.shutdown_timeout, Duration::from_secs(4));
        assert!(c.migrate_on_start);
        assert!(!c.access_log);
        assert!(with(&[("ACCESS_LOG", "true")]).expect("ok").access_log);
        assert_eq!(c.memory_restart_bytes, Some(400 << 20));
    }

    #[test]
    fn memory_restart_takes_megabytes_and_zero_turns_it_off() {
        let c = with(&[("MEMORY_RESTART_MB", "128")]).expect("ok");
        assert_eq!(c.memory_restart_bytes, Some(128 * 1024 * 1024));
        let c = with(&[("MEMORY_RESTART_MB", "0")]).expect("ok");
        assert_eq!(c.memory_restart_bytes, None);
    }

    #[test]
    fn missing_database_url_names_the_variable() {
        let err = Config::from_map(&HashMap::new()).expect_err("must fail");
        assert_eq!(err.var, "DATABASE_URL");
        assert!(err.to_string().contains("DATABASE_URL"));
    }

    #[test]
    fn malformed_database_url_is_rejected() {
        for bad in ["not a url", "mysql://x@h/db", "postgres://"] {
            let err = with(&[("DATABASE_URL", bad)]).expect_err(bad);
            assert_eq!(err.var, "DATABASE_URL", "{bad}");
        }
    }

    #[test]
    fn bad_values_name_their_variable() {
        let cases = [
            ("BIND_ADDR", "localhost"),
            ("REDIS_URL", "http://x"),
            ("PUBLIC_BASE_URL", "ftp://x"),
            ("FRONTEND_URL", "nope"),
            ("ALLOWED_ORIGINS", "not-an-origin"),
            ("TRUST_PROXY", "many"),
            ("DB_POOL_SIZE", "0"),
            ("RATE_LIMIT_REDIRECT_PER_MIN", "-5"),
            ("LOG_LEVEL", "lots[["),
            ("MIGRATE_ON_START", "maybe"),
            ("ACCESS_LOG", "verbose"),
            ("LOCAL_CACHE_SUBSCRIBED_TTL_MS", "forever"),
            ("PIPELINE_LINGER_MS", "-1"),
            ("METADATA_ALLOWLIST", "127.0.0.1"),
            ("BOLTLINK_INSTANCE", "has space"),
            ("PIPELINE_BATCH_SIZE", "0"),
            ("PIPELINE_POLL_MS", "soon"),
            ("CLICK_RETENTION_DAYS", "0"),
            ("COUNT_BOTS", "sometimes"),
            ("GEOIP_DB", "/nonexistent/country.mmdb"),
            ("MEMORY_RESTART_MB", "lots"),
        ];
        for (var, value) in cases {
            let err = with(&[(var, value)]).expect_err(var);
            assert_eq!(err.var, var, "value {value}");
        }
    }

    #[test]
    fn trust_proxy_accepts_numbers_and_booleans() {
        assert_eq!(with(&[("TRUST_PROXY", "2")]).expect("ok").trust_proxy, 2);
        assert_eq!(with(&[("TRUST_PROXY", "true")]).expect("ok").trust_proxy, 1);
        assert_eq!(
            with(&[("TRUST_PROXY", "false")]).expect("ok").trust_proxy,
            0
        );
    }

    #[test]
    fn origin_list_is_parsed_and_matched_exactly() {
        let c = with(&[(
            "ALLOWED_ORIGINS",
            "https://a.example, http://b.example:3000/",
        )])
        .expect("ok");
        let listed = Some(CorsGrant { credentials: true });
        assert_eq!(c.allowed_origins.allow("https://a.example"), listed);
        assert_eq!(c.allowed_origins.allow("http://b.example:3000"), listed);
        assert_eq!(c.allowed_origins.allow("https://evil.example"), None);
        assert_eq!(c.allowed_origins.allow("null"), None);
    }

    #[test]
    fn any_origin_may_read_but_never_with_credentials() {
        let c = with(&[("ALLOWED_ORIGINS", "*")]).expect("ok");
        for origin in ["https://any.example", "null"] {
            assert_eq!(
                c.allowed_origins.allow(origin),
                Some(CorsGrant { credentials: false }),
                "{origin}"
            );
        }
    }

    #[test]
    fn base_urls_lose_their_trailing_slash() {
        let c = with(&[
            ("PUBLIC_BASE_URL", "https://bl.example/"),
            ("FRONTEND_URL", "https://app.example/"),
        ])
        .expect("ok");
        assert_eq!(c.public_base_url, "https://bl.example");
        assert_eq!(c.frontend_url.as_deref(), Some("https://app.example"));
    }

    #[test]
    fn env_file_handles_comments_quotes_and_export() {
        let text = "# comment\n\nexport A=1\nB=\"two words\"\nC='x=y'\n; other comment\nD=\n";
        let m = parse_env_file(text).expect("ok");
        assert_eq!(m["A"], "1");
        assert_eq!(m["B"], "two words");
        assert_eq!(m["C"], "x=y");
        assert_eq!(m["D"], "");
    }

    #[test]
    fn env_file_reports_the_bad_line() {
        let err = parse_env_file("A=1\nthis is wrong\n").expect_err("bad");
        assert_eq!(err.0, 2);
        let err = parse_env_file("BAD-NAME=1\n").expect_err("bad");
        assert_eq!(err.0, 1);
    }

    #[test]
    fn explicit_env_file_that_is_missing_is_an_error() {
        let env = HashMap::from([(
            "BOLTLINK_ENV_FILE".to_string(),
            "/nonexistent/boltlink.env".to_string(),
        )]);
        let err = read_env_file_for(&env).expect_err("missing");
        assert_eq!(err.var, "BOLTLINK_ENV_FILE");
    }

    #[test]
    fn setup_env_is_read_first_and_the_env_file_overrides_it() {
        let dir = std::env::temp_dir().join(format!("boltlink-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let env_file = dir.join("boltlink.env");
        let env = HashMap::from([(
            "BOLTLINK_ENV_FILE".to_string(),
            env_file.display().to_string(),
        )]);
        std::fs::write(&env_file, "REDIS_KEY_PREFIX=admin:\n").expect("write");
        // No setup.env yet: only the env file.
        let m = read_env_file_for(&env).expect("read");
        assert_eq!(m.get("DATABASE_URL"), None);
        std::fs::write(
            dir.join(SETUP_ENV_FILE_NAME),
            "DATABASE_URL=postgres://boltlink:pw@127.0.0.1:5432/boltlink\nREDIS_KEY_PREFIX=setup:\n",
        )
        .expect("write");
        let m = read_env_file_for(&env).expect("read");
        assert_eq!(
            m["DATABASE_URL"],
            "postgres://boltlink:pw@127.0.0.1:5432/boltlink"
        );
        assert_eq!(
            m["REDIS_KEY_PREFIX"], "admin:",
            "the env file wins over setup.env"
        );
        std::fs::write(dir.join(SETUP_ENV_FILE_NAME), "not a line\n").expect("write");
        let err = read_env_file_for(&env).expect_err("bad setup.env");
        assert!(err.message.contains("setup.env:1"), "{err}");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}

//! Every environment variable BoltLink knows, declared once: name, section, type with its
//! range or form, default, and one line of doc.
//!
//! The section builders (`connections.rs`, `serving.rs`, …) read variables only through these
//! declarations, so a range or a default lives here and nowhere else in the code.
//! `boltlinkctl config` prints [`ALL`]; tests check the README's configuration table,
//! `boltlink.env(5)` and the commented `packaging/boltlink.env` against it, so a variable added
//! here and not documented (or the reverse) fails the build's tests.

use serde::Serialize;

/// The groups variables are documented in: the headings of `boltlink.env(5)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Section {
    Connections,
    Http,
    RateLimits,
    Caches,
    Processes,
    Metadata,
    Pipeline,
    Webhooks,
}

impl Section {
    /// The heading in `boltlink.env(5)` and in `boltlinkctl config`.
    pub fn title(self) -> &'static str {
        match self {
            Section::Connections => "CONNECTIONS",
            Section::Http => "HTTP",
            Section::RateLimits => "RATE LIMITS",
            Section::Caches => "CACHES AND QUEUES",
            Section::Processes => "PROCESSES",
            Section::Metadata => "LINK METADATA",
            Section::Pipeline => "CLICK PIPELINE",
            Section::Webhooks => "WEBHOOKS",
        }
    }
}

/// What a variable holds. Numbers carry their inclusive range, which the reader enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A whole number from `min` to `max` (durations: in the unit their name ends with).
    Number { min: u64, max: u64 },
    /// `auto`, or a whole number from `min` to `max`.
    AutoNumber { min: u64, max: u64 },
    /// `true`/`yes`/`on`/`1` or `false`/`no`/`off`/`0`, any letter case.
    Bool,
    /// Text in the form described, checked by its section's parser.
    Text(&'static str),
}

impl Kind {
    /// The allowed values in words, for `boltlinkctl config --json` and messages.
    pub fn describe(self) -> String {
        match self {
            Kind::Number { min, max } => format!("a whole number from {min} to {max}"),
            Kind::AutoNumber { min, max } => {
                format!("auto, or a whole number from {min} to {max}")
            }
            Kind::Bool => "true or false".to_string(),
            Kind::Text(form) => form.to_string(),
        }
    }
}

/// What applies when a variable is unset (or set to an empty value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// This literal, parsed exactly like a value that was set.
    Value(&'static str),
    /// Nothing: the variable must be set.
    Required,
    /// Nothing: the setting is off or empty.
    Unset,
    /// Worked out at start; the text (Markdown, as the README's table shows it) says how.
    Computed(&'static str),
}

impl Fallback {
    /// The default as the README's configuration table shows it.
    pub fn readme_cell(self) -> String {
        match self {
            Fallback::Value(v) => format!("`{v}`"),
            Fallback::Required => "(required)".to_string(),
            Fallback::Unset => "(unset)".to_string(),
            Fallback::Computed(how) => how.to_string(),
        }
    }
}

/// One environment variable.
#[derive(Debug, PartialEq, Eq)]
pub struct Var {
    pub name: &'static str,
    pub section: Section,
    pub kind: Kind,
    pub default: Fallback,
    /// Whole value hidden by `boltlinkctl config` (URL passwords are hidden in every value).
    pub secret: bool,
    doc: &'static str,
}

impl Var {
    /// The one line of doc.
    pub fn doc(&self) -> &'static str {
        self.doc.trim()
    }

    /// The declared variable called `name`.
    pub fn named(name: &str) -> Option<&'static Var> {
        ALL.iter().copied().find(|v| v.name == name)
    }
}

/// Declares each variable as a `pub const NAME: &Var` whose one-line `///` doc is also its
/// runtime doc, and lists them all, in order, in [`ALL`]: adding a line here is all it takes
/// for `boltlinkctl config` and the documentation checks to know the variable.
macro_rules! declare {
    ($( #[doc = $doc:literal] $name:ident: $section:ident, $kind:expr, $default:expr $(, $secret:ident)?; )*) => {
        $(
            #[doc = $doc]
            pub const $name: &Var = &Var {
                name: stringify!($name),
                section: Section::$section,
                kind: $kind,
                default: $default,
                secret: declare!(@secret $($secret)?),
                doc: $doc,
            };
        )*
        /// Every variable, in declaration order (the order `boltlinkctl config` prints).
        pub static ALL: &[&Var] = &[$($name),*];
    };
    (@secret secret) => { true };
    (@secret) => { false };
}

use Fallback::{Computed, Required, Unset, Value};
use Kind::{AutoNumber, Bool, Number, Text};

// Columns: NAME: section, type (range or form), default [, secret];
declare! {
    /// PostgreSQL URL.
    DATABASE_URL: Connections, Text("postgres://user:password@host:port/database"), Required;
    /// Redis URL (redis://, rediss://, unix://); several, comma-separated: the seed nodes of a Redis Cluster.
    REDIS_URL: Connections, Text("redis://host:port/[,redis://host:port/...]"), Value("redis://127.0.0.1:6379/");
    /// Prefix of every Redis key (several installations can share a Redis).
    REDIS_KEY_PREFIX: Connections, Text("no blanks or control characters"), Value("boltlink:");
    /// Keys the click stream is spread over (the same on every host and process; on a Redis Cluster, as many as masters or more). Lowering it is safe: the consumers drain the shards beyond it.
    CLICK_STREAM_SHARDS: Connections, Number { min: 1, max: 64 }, Value("1");
    /// PostgreSQL connections per process.
    DB_POOL_SIZE: Connections, Number { min: 1, max: 500 }, Value("10");
    /// A streaming replica of DATABASE_URL for link lists and analytics (unset: all on the primary).
    DATABASE_READ_URL: Connections, Text("postgres://user:password@host:port/database"), Unset;
    /// Replica further behind than this: its reads go to the primary.
    DATABASE_READ_MAX_LAG_MS: Connections, Number { min: 100, max: 3_600_000 }, Value("5000");

    /// Address to bind when no socket is passed by systemd.
    BIND_ADDR: Http, Text("IP:PORT, for example 127.0.0.1:5000"), Value("127.0.0.1:5000");
    /// Base of shortUrl in link objects.
    PUBLIC_BASE_URL: Http, Text("an http(s) URL without query or fragment"), Computed("`http://{BIND_ADDR}`");
    /// Dashboard origin for the verify and rate-limit pages.
    FRONTEND_URL: Http, Text("an http(s) URL without query or fragment"), Unset;
    /// CORS: * or a comma-separated list of origins.
    ALLOWED_ORIGINS: Http, Text("* or a comma-separated list of http(s) origins"), Value("*");
    /// How many proxy hops of X-Forwarded-For to trust.
    TRUST_PROXY: Http, Text("0 to 16, true (1) or false (0)"), Value("0");
    /// A request head must arrive within this (ms).
    HTTP_HEADER_TIMEOUT_MS: Http, Number { min: 100, max: 3_600_000 }, Value("10000");
    /// A request body must arrive whole within this, else 408 (ms).
    HTTP_BODY_TIMEOUT_MS: Http, Number { min: 100, max: 3_600_000 }, Value("10000");
    /// A connection with no request in flight for this long is closed (ms).
    HTTP_IDLE_TIMEOUT_MS: Http, Number { min: 100, max: 3_600_000 }, Value("30000");
    /// Open client connections per API process.
    HTTP_MAX_CONNECTIONS: Http, AutoNumber { min: 1, max: 10_000_000 }, Value("auto");
    /// Open client connections per client address per API process (0: no cap).
    HTTP_MAX_CONNECTIONS_PER_CLIENT: Http, AutoNumber { min: 0, max: 10_000_000 }, Value("auto");
    /// Password hashes and checks running at once per API process.
    PASSWORD_HASH_CONCURRENCY: Http, Number { min: 1, max: 256 }, Computed("number of CPUs");

    /// POST /api/shorten per client IP per 5 minutes.
    RATE_LIMIT_SHORTEN_PER_5MIN: RateLimits, Number { min: 1, max: 10_000_000 }, Value("100");
    /// POST /api/links/bulk per client IP per 5 minutes.
    RATE_LIMIT_BULK_PER_5MIN: RateLimits, Number { min: 1, max: 1_000_000 }, Value("10");
    /// Redirects and verifies per client IP per minute.
    RATE_LIMIT_REDIRECT_PER_MIN: RateLimits, Number { min: 1, max: 100_000_000 }, Value("1000");
    /// POST /api/generate-key per client IP per hour.
    RATE_LIMIT_GENERATE_KEY_PER_HOUR: RateLimits, Number { min: 1, max: 1_000_000 }, Value("5");
    /// Wrong passwords per link and client per 15 minutes before verify answers 429.
    RATE_LIMIT_VERIFY_FAILURES_PER_CLIENT: RateLimits, Number { min: 1, max: 1_000_000 }, Value("5");
    /// Wrong passwords per link (all clients) per 15 minutes before verify answers 429.
    RATE_LIMIT_VERIFY_FAILURES_PER_LINK: RateLimits, Number { min: 1, max: 1_000_000 }, Value("50");
    /// Default per-minute limit of a new API key.
    RATE_LIMIT_KEY_PER_MIN: RateLimits, Number { min: 1, max: 100_000_000 }, Value("600");
    /// Default per-hour limit of a new API key.
    RATE_LIMIT_KEY_PER_HOUR: RateLimits, Number { min: 1, max: 1_000_000_000 }, Value("20000");

    /// In-process link cache lifetime while the invalidation subscription is down (ms).
    LOCAL_CACHE_TTL_MS: Caches, Number { min: 0, max: 60_000 }, Value("1000");
    /// In-process link cache lifetime while subscribed to invalidations (ms).
    LOCAL_CACHE_SUBSCRIBED_TTL_MS: Caches, Number { min: 0, max: 3_600_000 }, Value("60000");
    /// Lifetime of a cached link in Redis (s).
    REDIS_CACHE_TTL_SECS: Caches, Number { min: 1, max: 86_400 }, Value("300");
    /// Lifetime of a cached "no such code" in Redis (s).
    NEGATIVE_CACHE_TTL_SECS: Caches, Number { min: 1, max: 3600 }, Value("30");
    /// Click events buffered in memory while Redis is unreachable.
    CLICK_QUEUE_CAPACITY: Caches, Number { min: 100, max: 100_000_000 }, Value("200000");

    /// API instances boltlink.target starts (read by boltlink-generator, not the processes).
    API_INSTANCES: Processes, AutoNumber { min: 1, max: 256 }, Value("auto");
    /// Tokio worker threads per API process.
    API_WORKER_THREADS: Processes, Number { min: 1, max: 256 }, Value("2");
    /// Resident memory (MiB) above which an API process drains and exits 75 (0: off).
    MEMORY_RESTART_MB: Processes, Number { min: 0, max: 1_000_000 }, Value("400");
    /// Drain deadline after SIGTERM (ms).
    SHUTDOWN_TIMEOUT_MS: Processes, Number { min: 100, max: 600_000 }, Value("4000");
    /// Apply pending migrations at start.
    MIGRATE_ON_START: Processes, Bool, Value("true");
    /// Log level or filter.
    LOG_LEVEL: Processes, Text("a level or filter: info, debug, boltlink=debug,info"), Value("info");
    /// One boltlink::access log line per request.
    ACCESS_LOG: Processes, Bool, Value("false");
    /// Instance name in logs, metrics and heartbeats (the units set it).
    BOLTLINK_INSTANCE: Processes, Text("at most 64 characters of A-Z a-z 0-9 - _ . @"), Computed("`pid<PID>`");
    /// The env file to read (only meaningful in the process environment).
    BOLTLINK_ENV_FILE: Processes, Text("a file path"), Value("/etc/boltlink/boltlink.env");
    /// API: directory the instances share for their connection counts (systemd's RuntimeDirectory= sets it).
    RUNTIME_DIRECTORY: Processes, Text("a directory"), Unset;

    /// Fetch title, description and favicon in the background after shorten.
    METADATA_FETCH: Metadata, Bool, Value("true");
    /// IP:PORT addresses the metadata fetcher may reach even though private.
    METADATA_ALLOWLIST: Metadata, Text("comma-separated IP:PORT addresses"), Unset;

    /// Worker: clicks per step, about.
    PIPELINE_BATCH_SIZE: Pipeline, Number { min: 1, max: 100_000 }, Value("5000");
    /// Worker/aggregator: how long a read waits for new entries when idle (ms).
    PIPELINE_POLL_MS: Pipeline, Number { min: 1, max: 60_000 }, Value("500");
    /// Worker: a step that caught up is followed by the next one no sooner than this (ms).
    PIPELINE_LINGER_MS: Pipeline, Number { min: 0, max: 10_000 }, Value("200");
    /// Stream entries read by a consumer of the same group but left unfinished this long (a host or process that died after reading them) are taken over (ms).
    PIPELINE_TAKEOVER_MS: Pipeline, Number { min: 1_000, max: 3_600_000 }, Value("30000");
    /// Aggregator: most clicks folded into one transaction.
    AGGREGATOR_BATCH_SIZE: Pipeline, Number { min: 1, max: 1_000_000 }, Value("50000");
    /// Aggregator: a step that caught up is followed by the next one no sooner than this (ms).
    AGGREGATOR_WINDOW_MS: Pipeline, Number { min: 0, max: 10_000 }, Value("1000");
    /// Raw click events older than this many days are deleted (rollups are kept).
    CLICK_RETENTION_DAYS: Pipeline, Number { min: 1, max: 36_500 }, Value("90");
    /// Whether clicks flagged as bots count in links.clicks and rollups.
    COUNT_BOTS: Pipeline, Bool, Value("false");
    /// MaxMind-format country database for events without a cf-ipcountry region.
    GEOIP_DB: Pipeline, Text("a readable .mmdb file"), Unset;

    /// Webhook URLs may point at loopback and private addresses (tests, closed networks).
    WEBHOOK_ALLOW_PRIVATE: Webhooks, Bool, Value("false");
    /// Webhooks: wait before the first retry of a failed delivery, doubling after each (ms).
    WEBHOOK_RETRY_BASE_MS: Webhooks, Number { min: 10, max: 3_600_000 }, Value("10000");
    /// Webhooks: an event not delivered this long after it happened is recorded as failed (s).
    WEBHOOK_RETRY_WINDOW_S: Webhooks, Number { min: 1, max: 604_800 }, Value("86400");
    /// Webhooks: deliveries in flight at once, to different keys (one per key at a time).
    WEBHOOK_CONCURRENCY: Webhooks, Number { min: 1, max: 1024 }, Value("16");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_every_doc_is_one_line() {
        let mut names: Vec<&str> = ALL.iter().map(|v| v.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len(), "a variable is declared twice");
        for var in ALL {
            assert!(!var.doc().is_empty(), "{} has no doc", var.name);
            assert!(!var.doc().contains('\n'), "{}: one line of doc", var.name);
        }
    }

    #[test]
    fn variables_of_a_section_are_declared_together() {
        // `boltlinkctl config` prints one heading per section, in declaration order.
        let mut seen: Vec<Section> = Vec::new();
        for var in ALL {
            if seen.last() != Some(&var.section) {
                assert!(
                    !seen.contains(&var.section),
                    "{} is declared away from the rest of {:?}",
                    var.name,
                    var.section
                );
                seen.push(var.section);
            }
        }
    }

    #[test]
    fn key_like_variables_are_declared_secret() {
        // `boltlinkctl config` shows every value except secret ones: a new variable holding a
        // key, token or password must say so, or it would be printed.
        for var in ALL {
            assert!(
                !crate::config::looks_secret(var.name) || var.secret,
                "{} looks secret",
                var.name
            );
        }
    }

    #[test]
    fn ranges_are_ordered_and_number_defaults_lie_inside_them() {
        for var in ALL {
            let (Kind::Number { min, max } | Kind::AutoNumber { min, max }) = var.kind else {
                continue;
            };
            assert!(min <= max, "{}", var.name);
            if let Fallback::Value(v) = var.default {
                if v != "auto" {
                    let n: u64 = v.parse().expect("a numeric default");
                    assert!((min..=max).contains(&n), "{}={v}", var.name);
                }
            }
        }
    }
}

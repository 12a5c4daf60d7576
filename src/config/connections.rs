//! Section CONNECTIONS: where PostgreSQL and Redis are.

use url::Url;

use super::read::Reader;
use std::time::Duration;

use super::vars::{
    CLICK_STREAM_SHARDS, DATABASE_READ_MAX_LAG_MS, DATABASE_READ_URL, DATABASE_URL, DB_POOL_SIZE,
    REDIS_KEY_PREFIX, REDIS_URL,
};
use super::ConfigError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseConfig {
    /// `postgres://…`, as given (sqlx parses it again when connecting).
    pub url: String,
    /// PostgreSQL connections per API process.
    pub pool_size: u32,
    /// The streaming replica list and analytics reads may use.
    pub read_replica: Option<ReadReplicaConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadReplicaConfig {
    /// `postgres://…` of a hot standby streaming from the primary.
    pub url: String,
    /// Further behind than this, the replica serves nothing.
    pub max_lag: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    pub url: String,
    /// Prefix of every Redis key.
    pub key_prefix: String,
    /// Keys the click stream is spread over.
    pub click_stream_shards: u16,
}

pub(super) fn database(r: &Reader<'_>) -> Result<DatabaseConfig, ConfigError> {
    let url = parse_database_url(DATABASE_URL.name, r.required(DATABASE_URL)?)?;
    // Checked even without a replica, so a typo shows before the day one is added.
    let max_lag = r.millis(DATABASE_READ_MAX_LAG_MS)?;
    Ok(DatabaseConfig {
        url,
        pool_size: r.number(DB_POOL_SIZE)?,
        read_replica: match r.set(DATABASE_READ_URL) {
            None => None,
            Some(url) => Some(ReadReplicaConfig {
                url: parse_database_url(DATABASE_READ_URL.name, url)?,
                max_lag,
            }),
        },
    })
}

pub(super) fn redis(r: &Reader<'_>) -> Result<RedisConfig, ConfigError> {
    let value = r.required(REDIS_URL)?;
    let nodes: Vec<&str> = value.split(',').map(str::trim).collect();
    let cluster = nodes.len() > 1;
    for node in &nodes {
        parse_redis_url(node, cluster)?;
    }
    let key_prefix = r.required(REDIS_KEY_PREFIX)?.to_string();
    if key_prefix
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ConfigError::new(
            REDIS_KEY_PREFIX.name,
            "must not contain whitespace or control characters",
        ));
    }
    if cluster && key_prefix.contains(['{', '}']) {
        return Err(ConfigError::new(
            REDIS_KEY_PREFIX.name,
            "must not contain { or } with a Redis Cluster: braces mark the hash tags that keep keys used together in one slot",
        ));
    }
    Ok(RedisConfig {
        url: nodes.join(","),
        key_prefix,
        click_stream_shards: r.number(CLICK_STREAM_SHARDS)?,
    })
}

fn parse_database_url(var: &str, value: &str) -> Result<String, ConfigError> {
    let url = Url::parse(value).map_err(|e| {
        ConfigError::new(
            var,
            format!(
                "is not a valid URL ({e}); expected postgres://user:password@host:port/database"
            ),
        )
    })?;
    if url.scheme() != "postgres" && url.scheme() != "postgresql" {
        return Err(ConfigError::new(
            var,
            format!(
                "scheme {:?} is not supported; expected postgres://",
                url.scheme()
            ),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) && !url.query().unwrap_or("").contains("host=") {
        return Err(ConfigError::new(var, "has no host"));
    }
    Ok(value.to_string())
}

/// One URL of `REDIS_URL`; in a list (`cluster`), a node of a Redis Cluster: TCP only, and
/// database 0, the only one a cluster has.
fn parse_redis_url(value: &str, cluster: bool) -> Result<(), ConfigError> {
    let var = REDIS_URL.name;
    let what = if cluster {
        "a comma-separated list of the cluster's nodes, redis://host:port/ each"
    } else {
        "redis://host:port/, or several of them, comma-separated, for a Redis Cluster"
    };
    if value.is_empty() {
        return Err(ConfigError::new(
            var,
            format!("has an empty entry; expected {what}"),
        ));
    }
    let url = Url::parse(value).map_err(|e| {
        ConfigError::new(
            var,
            format!("{value:?} is not a valid URL ({e}); expected {what}"),
        )
    })?;
    match url.scheme() {
        "redis" | "rediss" => {
            if url.host_str().is_none_or(str::is_empty) {
                return Err(ConfigError::new(var, format!("{value:?} has no host")));
            }
        }
        "unix" | "redis+unix" if !cluster => {}
        other => {
            return Err(ConfigError::new(
                var,
                format!("{value:?}: scheme {other:?} is not supported; expected {what}"),
            ))
        }
    }
    if cluster && !matches!(url.path().trim_matches('/'), "" | "0") {
        return Err(ConfigError::new(
            var,
            format!(
                "{value:?} names database {}, but a Redis Cluster has only database 0",
                url.path().trim_matches('/')
            ),
        ));
    }
    Ok(())
}

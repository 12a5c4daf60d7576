//! Section CONNECTIONS: where PostgreSQL and Redis are.

use url::Url;

use super::read::Reader;
use std::time::Duration;

use super::vars::{
    DATABASE_READ_MAX_LAG_MS, DATABASE_READ_URL, DATABASE_URL, DB_POOL_SIZE, REDIS_KEY_PREFIX,
    REDIS_URL,
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
    let url = parse_redis_url(r.required(REDIS_URL)?)?;
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
    Ok(RedisConfig { url, key_prefix })
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

fn parse_redis_url(value: &str) -> Result<String, ConfigError> {
    let var = REDIS_URL.name;
    let url = Url::parse(value).map_err(|e| {
        ConfigError::new(
            var,
            format!("is not a valid URL ({e}); expected redis://host:port/"),
        )
    })?;
    match url.scheme() {
        "redis" | "rediss" => {
            if url.host_str().is_none_or(str::is_empty) {
                return Err(ConfigError::new(var, "has no host"));
            }
        }
        "unix" | "redis+unix" => {}
        other => {
            return Err(ConfigError::new(
                var,
                format!("scheme {other:?} is not supported; expected redis://"),
            ))
        }
    }
    Ok(value.to_string())
}

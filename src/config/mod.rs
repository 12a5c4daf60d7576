//! Configuration: the environment plus the env files, parsed and validated before anything
//! binds.
//!
//! Precedence: a variable set in the process environment wins over the same variable in the
//! env file (`/etc/boltlink/boltlink.env`, or `BOLTLINK_ENV_FILE`), which wins over
//! `setup.env` beside it. systemd's `EnvironmentFile=` feeds the same files into the
//! environment, so both paths agree.
//!
//! # Layout
//!
//! - [`vars`]: every variable declared once — name, section, type and range, default, doc.
//! - `read`: typed reads of a declared variable (range checks, one message shape).
//! - one builder per section, each making its struct from the declared variables:
//!   `connections` ([`DatabaseConfig`] with [`ReadReplicaConfig`], [`RedisConfig`]),
//!   `serving` ([`HttpConfig`] with [`HttpLimits`]), `rate_limits` ([`RateLimits`]), `caches`
//!   ([`CacheConfig`]), `process` ([`ProcessConfig`]), `metadata` ([`MetadataConfig`]),
//!   `pipeline` ([`PipelineConfig`]), `webhooks` ([`WebhookConfig`]).
//! - `env_files`: the env files and their layering ([`Layers`]).
//! - `explain`: effective values and their sources, redacted, for `boltlinkctl config`.
//!
//! Parsing works on a plain `HashMap` so tests never touch the process environment.
//! A bad value is a [`ConfigError`] naming the variable; binaries print it on one line and
//! exit with [`crate::daemon::Exit::Config`] (78, `EX_CONFIG`), which the units list in
//! `RestartPreventExitStatus=` so a typo never becomes a restart loop.

mod caches;
mod connections;
mod env_files;
mod explain;
mod metadata;
mod pipeline;
mod process;
mod rate_limits;
mod read;
mod serving;
pub mod vars;
mod webhooks;

#[cfg(test)]
mod tests;

use std::collections::HashMap;

pub use caches::CacheConfig;
pub use connections::{DatabaseConfig, ReadReplicaConfig, RedisConfig};
pub use env_files::{
    env_file_for, parse_env_file, read_env_file_for, setup_env_file_beside, with_env_files, Layers,
    DEFAULT_ENV_FILE, SETUP_ENV_FILE_NAME,
};
pub use explain::{
    explain, looks_secret, redact_url, redact_urls, source_of, Explained, Setting, Source, Unknown,
};
pub use metadata::MetadataConfig;
pub use pipeline::PipelineConfig;
pub use process::ProcessConfig;
pub use rate_limits::RateLimits;
pub use serving::{
    open_files_limit, AllowedOrigins, CorsGrant, HttpConfig, HttpLimits, AUTO_MAX_CONNECTIONS,
    AUTO_MAX_CONNECTIONS_PER_CLIENT, RESERVED_FDS,
};
pub use vars::Var;
pub use webhooks::WebhookConfig;

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

/// The whole configuration, one field per section (see [`vars::Section`]).
#[derive(Debug, Clone)]
pub struct Config {
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub http: HttpConfig,
    pub rate_limits: RateLimits,
    pub cache: CacheConfig,
    pub process: ProcessConfig,
    pub metadata: MetadataConfig,
    pub pipeline: PipelineConfig,
    pub webhooks: WebhookConfig,
}

/// What computed defaults and `auto` values worked out to, by variable name.
pub type Resolved = Vec<(&'static str, String)>;

impl Config {
    /// Reads the env files and the process environment, then validates.
    pub fn from_process_env() -> Result<Self, ConfigError> {
        Self::from_map(&with_env_files(std::env::vars().collect())?)
    }

    /// Validates a complete variable map (env files already merged in).
    pub fn from_map(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        Ok(Self::resolve(vars)?.0)
    }

    /// [`Config::from_map`], plus what each computed default or `auto` worked out to.
    pub fn resolve(vars: &HashMap<String, String>) -> Result<(Self, Resolved), ConfigError> {
        let mut r = read::Reader::new(vars);
        let config = Config {
            database: connections::database(&r)?,
            redis: connections::redis(&r)?,
            http: serving::http(&mut r)?,
            rate_limits: rate_limits::rate_limits(&r)?,
            cache: caches::caches(&r)?,
            process: process::process(&mut r)?,
            metadata: metadata::metadata(&r)?,
            pipeline: pipeline::pipeline(&r)?,
            webhooks: webhooks::webhooks(&r)?,
        };
        Ok((config, r.into_resolved()))
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
             configuration error. See {name}(8) and boltlink.env(5); `boltlinkctl config` \
             shows every setting in effect.",
            setup = "/etc/boltlink/setup.env",
        ))
        .get_matches();
}

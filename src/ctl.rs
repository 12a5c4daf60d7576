//! `boltlinkctl`: its command line ([`cli`]) and its commands. Here: migrations, key
//! management.
//!
//! - [`cli`]: the clap command tree and the dispatch; the binary only calls it.
//! - [`setup`]: role, database and `setup.env` for a new installation.
//! - [`settings`]: `config`, every variable in effect and where it comes from.
//! - [`units`]: the suite's units and `systemctl show`; on it [`status`] (with [`render`]
//!   for its text form), [`lifecycle`] (rolling `restart`, `stop`), [`scale`], [`logs`].
//! - [`run`]: the foreground supervisor for development (`boltlinkctl run`).

pub mod cli;
pub mod lifecycle;
pub mod logs;
pub mod render;
pub mod run;
pub mod scale;
pub mod settings;
pub mod setup;
pub mod status;
pub mod units;

use anyhow::Context;

use crate::config::Config;
use crate::domain::ApiKeySecret;
use crate::store::{NewApiKey, Store};

pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    let store = Store::connect_lazy(&config.database.url, 2)?;
    store.migrate().await.context("applying migrations")?;
    Ok(())
}

pub struct KeyOptions<'a> {
    pub admin: bool,
    pub name: Option<&'a str>,
    pub email: Option<&'a str>,
}

/// Creates a key and returns the secret (shown once; only its hash is stored).
pub async fn create_key(
    config: &Config,
    opts: KeyOptions<'_>,
) -> anyhow::Result<(String, uuid::Uuid)> {
    let store = Store::connect_lazy(&config.database.url, 2)?;
    let secret = ApiKeySecret::generate();
    let record = store
        .create_api_key(NewApiKey {
            hash: secret.hash(),
            prefix: secret.prefix(),
            name: opts.name,
            email: opts.email,
            is_admin: opts.admin,
            rate_limit_per_min: config.rate_limits.key_per_min,
            rate_limit_per_hour: config.rate_limits.key_per_hour,
        })
        .await
        .context("creating the key")?;
    Ok((secret.expose().to_string(), record.id))
}

pub async fn list_keys(config: &Config) -> anyhow::Result<String> {
    let store = Store::connect_lazy(&config.database.url, 2)?;
    let keys = store.list_api_keys().await.context("listing keys")?;
    let mut out = format!(
        "{:<36}  {:<13}  {:<5}  {:<8}  {:<20}  {}\n",
        "ID", "KEY", "ADMIN", "STATE", "CREATED", "NAME"
    );
    for k in keys {
        out.push_str(&format!(
            "{:<36}  {:<13}  {:<5}  {:<8}  {:<20}  {}\n",
            k.id,
            format!("{}...", k.key_prefix),
            if k.is_admin { "yes" } else { "no" },
            if k.revoked_at.is_some() {
                "revoked"
            } else {
                "active"
            },
            k.created_at.format("%Y-%m-%d %H:%M:%S"),
            k.name.unwrap_or_default()
        ));
    }
    Ok(out)
}

pub async fn revoke_key(config: &Config, id_or_prefix: &str) -> anyhow::Result<u64> {
    let store = Store::connect_lazy(&config.database.url, 2)?;
    store
        .revoke_api_key(id_or_prefix)
        .await
        .context("revoking the key")
}

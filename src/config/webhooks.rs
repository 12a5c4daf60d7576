//! Section WEBHOOKS: how `boltlink-webhooks` retries, how many deliveries it runs at once,
//! and whether webhook URLs may name private addresses (the API checks that too, when a URL
//! is set).

use std::time::Duration;

use super::read::Reader;
use super::vars::{
    WEBHOOK_ALLOW_PRIVATE, WEBHOOK_CONCURRENCY, WEBHOOK_RETRY_BASE_MS, WEBHOOK_RETRY_WINDOW_S,
};
use super::ConfigError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Skip the address rules (loopback, private, link-local, metadata service) for webhook
    /// URLs, when they are set and at every delivery.
    pub allow_private: bool,
    /// The wait before the first retry; each later one waits twice the one before.
    pub retry_base: Duration,
    /// An event still undelivered this long after it happened is recorded as failed.
    pub retry_window: Duration,
    /// Deliveries in flight at once (each to a different key).
    pub concurrency: usize,
}

pub(super) fn webhooks(r: &Reader<'_>) -> Result<WebhookConfig, ConfigError> {
    Ok(WebhookConfig {
        allow_private: r.flag(WEBHOOK_ALLOW_PRIVATE)?,
        retry_base: r.millis(WEBHOOK_RETRY_BASE_MS)?,
        retry_window: r.secs(WEBHOOK_RETRY_WINDOW_S)?,
        concurrency: r.number(WEBHOOK_CONCURRENCY)?,
    })
}

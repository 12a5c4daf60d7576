//! Section RATE LIMITS: per-client and per-key limits. Windows are fixed by the contract;
//! counts are configurable.

use super::read::Reader;
use super::vars::{
    RATE_LIMIT_BULK_PER_5MIN, RATE_LIMIT_GENERATE_KEY_PER_HOUR, RATE_LIMIT_KEY_PER_HOUR,
    RATE_LIMIT_KEY_PER_MIN, RATE_LIMIT_REDIRECT_PER_MIN, RATE_LIMIT_SHORTEN_PER_5MIN,
    RATE_LIMIT_VERIFY_FAILURES_PER_CLIENT, RATE_LIMIT_VERIFY_FAILURES_PER_LINK,
};
use super::ConfigError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimits {
    /// `POST /api/shorten` per client IP per 5 minutes.
    pub shorten_per_5min: u32,
    /// `POST /api/links/bulk` per client IP per 5 minutes.
    pub bulk_per_5min: u32,
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
    /// The declared defaults.
    fn default() -> Self {
        let none = std::collections::HashMap::new();
        rate_limits(&Reader::new(&none)).expect("the declared defaults are within their ranges")
    }
}

pub(super) fn rate_limits(r: &Reader<'_>) -> Result<RateLimits, ConfigError> {
    Ok(RateLimits {
        shorten_per_5min: r.number(RATE_LIMIT_SHORTEN_PER_5MIN)?,
        bulk_per_5min: r.number(RATE_LIMIT_BULK_PER_5MIN)?,
        redirect_per_min: r.number(RATE_LIMIT_REDIRECT_PER_MIN)?,
        generate_key_per_hour: r.number(RATE_LIMIT_GENERATE_KEY_PER_HOUR)?,
        verify_failures_per_client: r.number(RATE_LIMIT_VERIFY_FAILURES_PER_CLIENT)?,
        verify_failures_per_link: r.number(RATE_LIMIT_VERIFY_FAILURES_PER_LINK)?,
        key_per_min: r.number(RATE_LIMIT_KEY_PER_MIN)?,
        key_per_hour: r.number(RATE_LIMIT_KEY_PER_HOUR)?,
    })
}

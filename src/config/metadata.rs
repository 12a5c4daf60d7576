//! Section LINK METADATA: the background page-metadata fetch and the private addresses it
//! may reach.

use std::net::SocketAddr;

use super::read::Reader;
use super::vars::{METADATA_ALLOWLIST, METADATA_FETCH};
use super::ConfigError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataConfig {
    /// Fetch title, description and favicon in the background after shorten.
    pub fetch: bool,
    /// Addresses the fetcher may reach although they are not public.
    pub allowlist: Vec<SocketAddr>,
}

pub(super) fn metadata(r: &Reader<'_>) -> Result<MetadataConfig, ConfigError> {
    let allowlist = match r.set(METADATA_ALLOWLIST) {
        None => Vec::new(),
        Some(v) => v
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<SocketAddr>().map_err(|_| {
                    ConfigError::new(
                        METADATA_ALLOWLIST.name,
                        format!("{s:?} is not an IP:PORT address"),
                    )
                })
            })
            .collect::<Result<_, _>>()?,
    };
    Ok(MetadataConfig {
        fetch: r.flag(METADATA_FETCH)?,
        allowlist,
    })
}

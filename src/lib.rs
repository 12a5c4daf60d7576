//! BoltLink: a self-hosted URL shortener with click analytics, built as a systemd-native
//! service suite. One library, thin binaries.
//!
//! # Layout
//!
//! - [`config`]: environment + env file → validated [`config::Config`] (exit 78 on error).
//! - [`telemetry`]: tracing to journald or stderr.
//! - [`systemd`]: the only code touching `LISTEN_FDS` / `NOTIFY_SOCKET`.
//! - [`domain`]: parsed newtypes (`ShortCode`, `TargetUrl`, API keys, password hashing).
//! - [`passwords`]: bounded password hashing (a few Argon2 computations at a time).
//! - [`store`]: PostgreSQL (the only sqlx user), owner-scoped queries, migrations.
//! - [`cache`]: Redis (the only redis user): link cache, click stream, limiters, pub/sub;
//!   plus the in-process link cache and click queue.
//! - [`analytics`]: pure shaping of rollups into analytics responses.
//! - [`metadata`]: SSRF-safe page metadata fetcher: address policy, fetching, HTML extraction.
//! - [`metrics`]: Prometheus counters and cross-instance rendering.
//! - [`app`]: shared state, link resolution chain, background tasks.
//! - [`http`]: route table, dispatch, handlers per area, accept loop and graceful shutdown.
//! - [`api`]: the `boltlink-api` process lifecycle.
//! - [`ctl`]: `boltlinkctl` commands.

pub mod aggregator;
pub mod analytics;
pub mod api;
pub mod app;
pub mod cache;
pub mod config;
pub mod ctl;
pub mod domain;
pub mod enrich;
pub mod http;
pub mod metadata;
pub mod metrics;
pub mod passwords;
pub mod pipeline;
pub mod store;
pub mod systemd;
pub mod telemetry;
pub mod worker;

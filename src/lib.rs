//! BoltLink: a self-hosted URL shortener with click analytics, built as a systemd-native
//! service suite. One library, thin binaries.
//!
//! # Layout
//!
//! - [`config`]: environment + env file → validated [`config::Config`] (exit 78 on error).
//! - [`telemetry`]: tracing to journald or stderr.
//! - [`daemon`]: the lifecycle every process shares: exit codes, capability drop, signals
//!   and shutdown, and (in [`daemon::systemd`], the only code touching `LISTEN_FDS` /
//!   `NOTIFY_SOCKET`) socket activation, readiness, status and watchdog.
//! - [`domain`]: parsed newtypes (`ShortCode`, `TargetUrl`, API keys, password hashing).
//! - [`passwords`]: bounded password hashing (a few Argon2 computations at a time).
//! - [`qr`]: QR codes of short URLs, as SVG or PNG (pure).
//! - [`rules`]: a link's redirect rules, query forwarding, redirect status and tags: parsed
//!   from the API, evaluated on the redirect path (pure).
//! - [`connections`]: the open connections of a process: caps, deadlines, shedding.
//! - [`store`]: PostgreSQL (the only sqlx user), owner-scoped queries, migrations.
//! - [`clicks`]: the click path: event and wire format, the API-side queue and flusher,
//!   the consumer loop, enrichment, worker and aggregator (ports to Redis and PostgreSQL).
//! - [`redis`]: the Redis adapter, the only user of the `redis` crate: connection and
//!   supervisor, link cache and invalidation, rate limiters, the click stream's producing
//!   (shipper) and consuming ([`clicks::ports::ClickLog`]) sides, heartbeats.
//! - [`local_cache`]: the in-process link cache in front of Redis (memory only).
//! - [`analytics`]: pure shaping of rollups into analytics responses.
//! - [`metadata`]: SSRF-safe page metadata fetcher: address policy, fetching, HTML extraction.
//! - [`metrics`]: Prometheus counters and cross-instance rendering.
//! - [`app`]: shared state, link resolution chain, background tasks.
//! - [`http`]: routes declared once (`routes!`: table, dispatch, `Allow`, OpenAPI operations),
//!   handlers per area, the OpenAPI document generated with `utoipa`, accept loop and graceful
//!   shutdown.
//! - [`api`]: the `boltlink-api` process: start-up, readiness, memory guard, drain.
//! - [`webhooks`]: `boltlink-webhooks`: link events from the outbox and click batches from
//!   the stream, signed and delivered at least once, each attempt recorded.
//! - [`pipeline`]: the `boltlink-worker`, `boltlink-aggregator` and `boltlink-webhooks`
//!   processes: the stream's consumers wired to Redis and PostgreSQL.
//! - [`ctl`]: `boltlinkctl` commands.

pub mod analytics;
pub mod api;
pub mod app;
pub mod clicks;
pub mod config;
pub mod connections;
pub mod ctl;
pub mod daemon;
pub mod domain;
pub mod http;
pub mod local_cache;
pub mod metadata;
pub mod metrics;
pub mod passwords;
pub mod pipeline;
pub mod qr;
pub mod redis;
pub mod rules;
pub mod store;
pub mod telemetry;
pub mod webhooks;

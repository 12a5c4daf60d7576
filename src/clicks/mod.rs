//! The click, from the redirect that records it to the rollup that counts it.
//!
//! - [`event`]: a click ([`event::ClickEvent`]) and its wire format in the stream (one
//!   packed entry per flushed batch, see [`event::pack`]; the older one-click layout is
//!   still read).
//! - [`queue`]: the API side: the bounded in-process queue the redirect pushes to, and the
//!   flusher that ships it ([`queue::run_flusher`] over a [`queue::ClickShipper`]).
//! - [`offset`]: stream entry ids (the aggregator's offset), entries as read, group lag.
//! - [`ports`]: what the click path needs from Redis ([`ports::ClickLog`]) and PostgreSQL
//!   ([`ports::ClickStore`]); the adapters implement these traits and depend on this
//!   module, never the other way round.
//! - [`consumer`]: what the worker and aggregator share: [`consumer::Pipeline`], the
//!   consumer that recovers its pending entries, dead letters, the step loop, heartbeat.
//! - [`enrich`]: user agent, bot, device class, referrer host and GeoIP region of a click.
//! - [`worker`]: stream → raw `click_events` (idempotent), plus retention.
//! - [`aggregator`]: stream → per-link counts and hourly rollups, exactly once.
//!
//! The processes themselves (configuration, adapters, `main`) are in [`crate::pipeline`].

pub mod aggregator;
pub mod consumer;
pub mod enrich;
pub mod event;
pub mod offset;
pub mod ports;
pub mod queue;
pub mod worker;

pub use event::{ClickEvent, ClickKind};
pub use ports::{ClickLog, ClickStore};

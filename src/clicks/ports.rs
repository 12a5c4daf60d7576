//! What the click path needs from the outside, as traits the adapters implement: the click
//! stream and its consumer groups ([`ClickLog`], Redis: `crate::redis::stream`) and the
//! click tables ([`ClickStore`], PostgreSQL: `crate::store::pipeline`). The dependency points
//! from the adapters to `clicks`, never back, so the click path reads without the storage
//! code and the storage code names the click types it stores.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::aggregator::RollupDelta;
use super::enrich::Enriched;
use super::offset::{GroupLag, StreamEntry, StreamId};

/// A failure of the click stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// The stream or a consumer group does not exist (Redis lost its data or started
    /// empty): [`ClickLog::ensure_groups`] recreates them.
    #[error("the click stream or its consumer group is missing: {0}")]
    MissingGroup(String),
    /// Unreachable, timed out, or an unexpected reply.
    #[error("{0}")]
    Failed(String),
}

/// The click stream as its consumers use it: one shard of it (`CLICK_STREAM_SHARDS`); every
/// operation below is on that shard, [`ClickLog::for_shard`] gives the others.
pub trait ClickLog: Clone + Send + Sync + 'static {
    /// Connects now if not connected; whether the stream is reachable.
    fn connect_now(&self) -> impl Future<Output = bool> + Send;
    /// The shard this handle reads.
    fn shard(&self) -> u16;
    /// The same stream, on `shard`.
    fn for_shard(&self, shard: u16) -> Self;
    /// The shards to consume: the configured ones, and any beyond them that still hold
    /// entries (left by a larger setting: drained, never written to again). `None` when the
    /// stream cannot be asked.
    fn shards_in_use(&self) -> impl Future<Output = Option<Vec<u16>>> + Send;
    /// Creates the consumer groups (from the start of the stream) where they are missing.
    fn ensure_groups(&self) -> impl Future<Output = Result<(), LogError>> + Send;
    /// Up to `count` entries for `consumer` of `group`: its own unacknowledged ones when
    /// `pending`, else new ones, waiting up to `block` for them.
    fn read_group(
        &self,
        group: &str,
        consumer: &str,
        count: usize,
        block: Duration,
        pending: bool,
    ) -> impl Future<Output = Result<Vec<StreamEntry>, LogError>> + Send;
    /// Moves every pending entry of `group` to `consumer` (a crashed consumer may have had
    /// another name).
    fn claim_all_pending(
        &self,
        group: &str,
        consumer: &str,
    ) -> impl Future<Output = Result<(), LogError>> + Send;
    /// Up to `count` entries of `group` that were delivered at least `min_idle` ago and are
    /// still not acknowledged (their reader died), now delivered to `consumer`.
    fn claim_idle(
        &self,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> impl Future<Output = Result<Vec<StreamEntry>, LogError>> + Send;
    /// Acknowledges entries for `group`.
    fn ack(
        &self,
        group: &str,
        ids: &[StreamId],
    ) -> impl Future<Output = Result<(), LogError>> + Send;
    /// Keeps an unreadable entry, with the reason, in the dead-letter stream.
    fn dead_letter(
        &self,
        entry: &StreamEntry,
        reason: &str,
    ) -> impl Future<Output = Result<(), LogError>> + Send;
    /// Keeps one unreadable click of a packed entry (its raw record) in the dead-letter
    /// stream.
    fn dead_letter_record(
        &self,
        stream_id: StreamId,
        reason: &str,
        record: &str,
    ) -> impl Future<Output = Result<(), LogError>> + Send;
    /// The oldest entry delivered to `group` and not yet acknowledged, if any.
    fn oldest_pending(
        &self,
        group: &str,
    ) -> impl Future<Output = Result<Option<StreamId>, LogError>> + Send;
    /// How far `group` is behind.
    fn group_lag(&self, group: &str) -> impl Future<Output = Result<GroupLag, LogError>> + Send;
    /// Removes the entries every group has finished; how many.
    fn trim_consumed(&self) -> impl Future<Output = Result<u64, LogError>> + Send;
    /// Publishes a consumer process's heartbeat (for `boltlinkctl status` and metrics).
    fn publish_process_heartbeat(
        &self,
        process: &str,
        fields: &[(&str, String)],
    ) -> impl Future<Output = Result<(), LogError>> + Send;
}

/// A singleton lock as its holder sees it.
pub trait HeldLock: Send + Sync {
    /// Whether the lock turned out to be gone (its session ended) and another process holds
    /// it now: the holder stands by again.
    fn lost_to_another(&self) -> bool;
}

/// The click tables as the worker and aggregator use them.
pub trait ClickStore: Clone + Send + Sync + 'static {
    type Error: std::error::Error + Send + Sync + 'static;
    /// Held while this process is the one aggregator; released on drop.
    type AggregatorLock: HeldLock;

    /// Applies pending schema migrations (locked against other processes).
    fn migrate(&self) -> impl Future<Output = Result<(), Self::Error>> + Send;
    /// Stores raw events; an event id already stored is skipped. How many were new.
    fn insert_click_events(
        &self,
        events: &[Enriched],
    ) -> impl Future<Output = Result<u64, Self::Error>> + Send;
    /// The last stream entry the consumer `name` has counted.
    fn stream_offset(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<StreamId>, Self::Error>> + Send;
    /// In ONE transaction: adds the rollup and per-link counts and moves the offset of
    /// `name` to `upto` (the aggregator's exactly-once step).
    fn apply_aggregates(
        &self,
        name: &str,
        upto: StreamId,
        rollups: &[RollupDelta],
        links: &[(Uuid, i64)],
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
    /// Deletes up to `limit` raw events older than `before`; how many.
    fn delete_click_events_before(
        &self,
        before: DateTime<Utc>,
        limit: i64,
    ) -> impl Future<Output = Result<u64, Self::Error>> + Send;
    /// The aggregator's singleton lock, if no other process holds it.
    fn try_lock_aggregator(
        &self,
    ) -> impl Future<Output = Result<Option<Self::AggregatorLock>, Self::Error>> + Send;
}

//! What `boltlink-worker` and `boltlink-aggregator` share: a stream consumer that recovers its
//! unacknowledged entries after a restart, parsing with dead letters, the retry loop around a
//! one-step function, and the heartbeat that reports lag.
//!
//! Each process is "one step" (read a batch, write it, acknowledge it: [`super::worker::step`],
//! [`super::aggregator::step`]) plus [`run_loop`], so tests drive the steps directly. The
//! stream and the database are reached through the ports ([`ClickLog`], [`ClickStore`]);
//! `crate::pipeline` wires the real ones.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::enrich::Geo;
use super::event::{events_of_entry, ClickEvent};
use super::offset::{GroupLag, StreamEntry, StreamId};
use super::ports::{ClickLog, ClickStore, LogError};
use crate::config::PipelineConfig;
use crate::daemon::systemd::{self, LoopHeartbeat};
use crate::daemon::Shutdown;

/// Which consumer process a binary is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    Worker,
    Aggregator,
    /// `boltlink-webhooks`, which reads the stream for the clicks of keys with a webhook.
    Webhooks,
}

impl Process {
    pub const fn binary(self) -> &'static str {
        match self {
            Process::Worker => "boltlink-worker",
            Process::Aggregator => "boltlink-aggregator",
            Process::Webhooks => "boltlink-webhooks",
        }
    }

    /// Its consumer group, which is also its heartbeat's and its consumer's name.
    pub const fn group(self) -> &'static str {
        match self {
            Process::Worker => "worker",
            Process::Aggregator => "aggregator",
            Process::Webhooks => "webhooks",
        }
    }
}

/// The name of a group's consumer of `shard` (also the aggregator's offset row): the group's
/// own name for shard 0, as before there were shards, `{group}.{shard}` for the others. Stable
/// across restarts: a restarted process must find its own pending entries.
pub fn consumer_name(group: &str, shard: u16) -> String {
    match shard {
        0 => group.to_string(),
        n => format!("{group}.{n}"),
    }
}

/// The webhook sender's pace: a step that caught up is followed by the next one no sooner
/// than this after it began.
const WEBHOOKS_PACE: Duration = Duration::from_secs(1);

/// The consumer groups reading the click stream. All are created by whichever process
/// starts first, from the beginning of the stream, so trimming never outruns a group that
/// has not started yet.
pub const GROUPS: [&str; 3] = [
    Process::Worker.group(),
    Process::Aggregator.group(),
    Process::Webhooks.group(),
];

/// Everything a step needs: the stream (`L`, Redis in production) and the click tables
/// (`S`, PostgreSQL).
#[derive(Clone)]
pub struct Pipeline<L, S> {
    pub store: S,
    pub stream: L,
    pub config: PipelineConfig,
    pub geo: Option<Arc<Geo>>,
    pub processed: Arc<AtomicU64>,
    /// Advanced on every turn of the step loop; the systemd watchdog's proof of progress.
    pub liveness: Arc<LoopHeartbeat>,
    /// Migrations were due at start but PostgreSQL did not take them: the step loop retries.
    migrations_pending: Arc<std::sync::atomic::AtomicBool>,
    /// The stream's shards in use, found once Redis first answers ([`Pipeline::shards`]).
    shards: Arc<std::sync::OnceLock<Vec<u16>>>,
}

impl<L: ClickLog, S: ClickStore> Pipeline<L, S> {
    /// A pipeline over `stream` and `store`; `geo` is the opened GeoIP database, if any.
    pub fn new(stream: L, store: S, config: PipelineConfig, geo: Option<Arc<Geo>>) -> Self {
        Self {
            store,
            stream,
            config,
            geo,
            processed: Arc::new(AtomicU64::new(0)),
            liveness: Arc::new(LoopHeartbeat::new()),
            migrations_pending: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            shards: Arc::new(std::sync::OnceLock::new()),
        }
    }

    /// The shards this process consumes ([`ClickLog::shards_in_use`]), asked of Redis once and
    /// kept: a shard left over from a larger setting stays in the list once drained, and is
    /// never written to again. `None` while Redis has not answered yet.
    pub async fn shards(&self) -> Option<Vec<u16>> {
        if let Some(shards) = self.shards.get() {
            return Some(shards.clone());
        }
        let found = self.stream.shards_in_use().await?;
        Some(self.shards.get_or_init(|| found).clone())
    }

    /// This pipeline on one shard of the stream (same store, counters and liveness).
    pub fn for_shard(&self, shard: u16) -> Self {
        Self {
            stream: self.stream.for_shard(shard),
            ..self.clone()
        }
    }

    /// Sleeps `period` unless `shutdown` comes first (then returns false). Waiting out an
    /// outage is progress too: the watchdog heartbeat is advanced every second meanwhile.
    pub async fn backoff(&self, period: Duration, shutdown: &Shutdown) -> bool {
        let until = tokio::time::Instant::now() + period;
        loop {
            self.liveness.beat();
            let now = tokio::time::Instant::now();
            if now >= until {
                return true;
            }
            tokio::select! {
                _ = shutdown.wait() => return false,
                _ = tokio::time::sleep_until(until.min(now + Duration::from_secs(1))) => {}
            }
        }
    }

    /// Applies pending migrations, bounded in time (advisory-locked against other processes).
    async fn migrate_now(&self) -> anyhow::Result<()> {
        match tokio::time::timeout(Duration::from_secs(30), self.store.migrate()).await {
            Ok(result) => Ok(result.map_err(anyhow::Error::new)?),
            Err(_) => anyhow::bail!("PostgreSQL did not answer within 30 s"),
        }
    }

    /// Pings the systemd watchdog (when `WatchdogSec=` is set) while the runtime runs and
    /// the step loop has gone round within [`Pipeline::loop_grace`]; a frozen process or a
    /// loop stuck beyond that stops the pings and systemd restarts the process.
    pub fn spawn_watchdog(&self, shutdown: &Shutdown) {
        tokio::spawn(systemd::run_watchdog(
            systemd::watchdog_interval(),
            self.liveness.clone().progress_probe(self.loop_grace()),
            shutdown.wait(),
        ));
    }

    /// The longest a turn of the step loop may take before the process counts as wedged: a
    /// blocking read's wait plus time for a slow write (PostgreSQL paused for a while is an
    /// outage to wait out, not a reason to restart).
    pub fn loop_grace(&self) -> Duration {
        self.config.poll_interval + Duration::from_secs(30)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    /// A batch of this many clicks (valid or dead-lettered) was handled and acknowledged.
    Processed(usize),
    /// Nothing to do (the read waited up to the poll interval).
    Empty,
}

/// One consumer of one group. After a (re)start it first re-reads its own unacknowledged
/// entries, then new ones.
pub struct Consumer {
    pub group: &'static str,
    pub name: String,
    recovering: bool,
    claimed: bool,
    /// The batch being handled. If its step fails it is handled again, from memory: the
    /// pending-entries list alone is not enough, since a Redis restart right after a read
    /// was seen to lose the delivery record while keeping the group's position.
    /// Shared, not copied: handing it out again costs a reference count.
    in_flight: Option<Arc<Vec<StreamEntry>>>,
    /// Clicks per entry in the last batch, on average: reads ask for the group's batch size
    /// (`PIPELINE_BATCH_SIZE`, `AGGREGATOR_BATCH_SIZE`) / this many entries, so a step holds
    /// about that many clicks whether entries are packed (up to 2000 clicks) or not (one).
    clicks_per_entry: usize,
    /// The last read of new entries got fewer than it asked for: the stream is caught up.
    caught_up: bool,
    /// When this consumer last looked for entries another reader left unfinished.
    last_takeover_check: std::time::Instant,
}

impl Consumer {
    pub fn new(group: &'static str, name: &str) -> Self {
        Self {
            group,
            name: name.to_string(),
            recovering: true,
            claimed: false,
            in_flight: None,
            // Until a read says otherwise, assume the largest entries a flush writes.
            clicks_per_entry: super::queue::FLUSH_BATCH,
            caught_up: false,
            last_takeover_check: std::time::Instant::now(),
        }
    }

    /// After any failed step: the entries of the failed batch (or of a read whose reply was
    /// lost) are pending for this consumer, and must be handled before anything newer, or the
    /// aggregator's offset would move past them.
    pub fn recover(&mut self) {
        self.recovering = true;
    }

    /// Drops the batch in hand and recovers: the next read takes every pending entry again,
    /// in order, this batch's among them (the aggregator, when older entries are pending).
    pub fn reread(&mut self) {
        self.in_flight = None;
        self.recovering = true;
    }

    pub fn is_recovering(&self) -> bool {
        self.recovering
    }

    /// Marks the current batch as finished (written and acknowledged); `clicks_per_entry`
    /// is how many clicks its entries held on average.
    pub fn done(&mut self, clicks_per_entry: usize) {
        self.in_flight = None;
        self.clicks_per_entry = clicks_per_entry.max(1);
    }

    /// Whether the last read of new entries found the stream caught up (fewer entries than
    /// asked for): then waiting a little before the next read loses nothing.
    pub fn is_caught_up(&self) -> bool {
        self.caught_up
    }

    /// Clicks this consumer's group handles per step, about: the aggregator folds many more
    /// into one transaction than the worker writes in one.
    pub fn batch_size(&self, config: &PipelineConfig) -> usize {
        if self.group == Process::Worker.group() {
            config.batch_size
        } else {
            // The webhook sender writes only the few clicks of keys with a webhook: like the
            // aggregator, it reads in large steps.
            config.aggregate_batch_size
        }
    }

    /// The least time from the start of a step that caught up to the start of the next.
    pub fn pace(&self, config: &PipelineConfig) -> Duration {
        if self.group == Process::Aggregator.group() {
            config.aggregate_window
        } else if self.group == Process::Webhooks.group() {
            // Clicks leave in batches once a second anyway (`link.clicked`).
            WEBHOOKS_PACE
        } else {
            config.linger
        }
    }

    /// Entries to ask for in one read.
    fn read_count(&self, batch_size: usize) -> usize {
        (batch_size / self.clicks_per_entry).clamp(1, batch_size.max(1))
    }

    /// The batch to handle next: the unfinished one if a step failed, else a fresh read.
    pub async fn read<L: ClickLog, S: ClickStore>(
        &mut self,
        p: &Pipeline<L, S>,
    ) -> Result<Arc<Vec<StreamEntry>>, LogError> {
        if let Some(batch) = &self.in_flight {
            return Ok(batch.clone());
        }
        match self.read_inner(p).await {
            Ok(entries) => {
                let entries = Arc::new(entries);
                if !entries.is_empty() {
                    self.in_flight = Some(entries.clone());
                }
                Ok(entries)
            }
            Err(e) => {
                // A read whose reply was lost (connection dropped, timeout, Redis killed
                // after answering) may still have delivered entries to this consumer: they
                // are pending and must be handled before anything newer.
                self.recovering = true;
                // The stream or group vanished (Redis lost its data, or started empty):
                // recreate.
                if matches!(e, LogError::MissingGroup(_)) {
                    let _ = p.stream.ensure_groups().await;
                }
                Err(e)
            }
        }
    }

    async fn read_inner<L: ClickLog, S: ClickStore>(
        &mut self,
        p: &Pipeline<L, S>,
    ) -> Result<Vec<StreamEntry>, LogError> {
        let count = self.read_count(self.batch_size(&p.config));
        if self.recovering && !self.claimed {
            p.stream.claim_all_pending(self.group, &self.name).await?;
            self.claimed = true;
        }
        self.caught_up = false;
        if self.recovering {
            let pending = p
                .stream
                .read_group(self.group, &self.name, count, p.config.poll_interval, true)
                .await?;
            if !pending.is_empty() {
                return Ok(pending);
            }
            self.recovering = false;
        }
        // Entries another reader took and never finished (its host died; several hosts' workers
        // share this consumer name) would otherwise wait for a restart: a few times per
        // takeover period, take those idle for a whole period. Only here, between batches:
        // this consumer's own batch in flight is never among them.
        let takeover = p.config.takeover_after;
        if self.last_takeover_check.elapsed() >= takeover / 3 {
            self.last_takeover_check = std::time::Instant::now();
            let left = p
                .stream
                .claim_idle(self.group, &self.name, takeover, count)
                .await?;
            if !left.is_empty() {
                tracing::warn!(
                    entries = left.len(),
                    idle_ms = takeover.as_millis() as u64,
                    "taking over stream entries another reader left unfinished"
                );
                return Ok(left);
            }
        }
        let entries = p
            .stream
            .read_group(self.group, &self.name, count, p.config.poll_interval, false)
            .await?;
        self.caught_up = entries.len() < count;
        Ok(entries)
    }
}

/// The clicks of a batch of stream entries.
pub struct ParsedBatch {
    /// Valid clicks with the id of the entry that carried them.
    pub events: Vec<(StreamId, ClickEvent)>,
    /// Clicks handled: the valid ones plus the dead-lettered ones.
    pub clicks: usize,
    /// Clicks per entry, on average (for the next read's size).
    pub clicks_per_entry: usize,
}

/// Splits entries (packed or one-click, see [`events_of_entry`]) into valid clicks and
/// invalid ones; invalid clicks (or whole entries that cannot be read) are moved to the
/// dead-letter stream with the reason (and acknowledged with the batch by the caller), so
/// one bad click never blocks the stream nor costs the clicks packed beside it.
pub async fn parse_batch<L: ClickLog, S: ClickStore>(
    p: &Pipeline<L, S>,
    entries: &[StreamEntry],
) -> Result<ParsedBatch, LogError> {
    let mut out = ParsedBatch {
        events: Vec::new(),
        clicks: 0,
        clicks_per_entry: 1,
    };
    for entry in entries {
        match events_of_entry(&entry.fields) {
            Ok(records) => {
                out.clicks += records.len();
                out.events.reserve(records.len());
                for record in records {
                    match record {
                        Ok(event) => out.events.push((entry.id, event)),
                        Err(bad) if bad.raw.is_empty() => {
                            tracing::warn!(stream.id = %entry.id, error = %bad.error, "moving an invalid click event to the dead-letter stream");
                            p.stream.dead_letter(entry, &bad.error.to_string()).await?;
                        }
                        Err(bad) => {
                            tracing::warn!(stream.id = %entry.id, error = %bad.error, "moving an invalid click of a packed entry to the dead-letter stream");
                            p.stream
                                .dead_letter_record(entry.id, &bad.error.to_string(), &bad.raw)
                                .await?;
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(stream.id = %entry.id, error = %e, "moving an unreadable stream entry to the dead-letter stream");
                out.clicks += 1;
                p.stream.dead_letter(entry, &e.to_string()).await?;
            }
        }
    }
    out.clicks_per_entry = out.clicks.div_ceil(entries.len().max(1)).max(1);
    Ok(out)
}

/// The end of a step whose batch is written: acknowledges `ids` for the consumer's group,
/// marks the batch finished, counts its clicks.
pub async fn acknowledge<L: ClickLog, S: ClickStore>(
    p: &Pipeline<L, S>,
    consumer: &mut Consumer,
    ids: &[StreamId],
    clicks: usize,
    clicks_per_entry: usize,
) -> anyhow::Result<StepOutcome> {
    p.stream
        .ack(consumer.group, ids)
        .await
        .map_err(|e| anyhow::anyhow!("acknowledging click events: {e}"))?;
    consumer.done(clicks_per_entry);
    p.processed.fetch_add(clicks as u64, Ordering::Relaxed);
    Ok(StepOutcome::Processed(clicks))
}

/// A step function: one batch in, written, acknowledged.
pub type StepFn<L, S> = for<'a> fn(
    &'a Pipeline<L, S>,
    &'a mut Consumer,
) -> std::pin::Pin<
    Box<dyn std::future::Future<Output = anyhow::Result<StepOutcome>> + Send + 'a>,
>;

/// Runs `step` until `shutdown`. Failures (Redis or PostgreSQL away) are retried with
/// backoff, logged once per outage; nothing is acknowledged that was not written.
pub async fn run_loop<L: ClickLog, S: ClickStore>(
    what: &'static str,
    shutdown: Shutdown,
    p: &Pipeline<L, S>,
    consumer: &mut Consumer,
    step: StepFn<L, S>,
) {
    let mut backoff = Duration::from_millis(100);
    let mut in_outage = false;
    while !shutdown.is_triggered() {
        p.liveness.beat();
        let began = std::time::Instant::now();
        match step(p, consumer).await {
            Ok(outcome) => {
                if in_outage {
                    tracing::info!("{what}: dependencies reachable again, catching up");
                    in_outage = false;
                }
                backoff = Duration::from_millis(100);
                // A step that caught up with the stream: let clicks gather for the next one,
                // which starts one pace after this one began. Per click, a step of a few
                // clicks costs PostgreSQL several times what one of thousands does
                // (statements, commit, WAL flush), and the aggregator writes a link's row
                // once per step however many of its clicks the step holds. A backlog is
                // read in full batches without pause.
                let pace = consumer.pace(&p.config);
                if matches!(outcome, StepOutcome::Processed(_))
                    && consumer.is_caught_up()
                    && !pace.is_zero()
                {
                    let rest = pace.saturating_sub(began.elapsed());
                    if !rest.is_zero() && !p.backoff(rest, &shutdown).await {
                        break;
                    }
                }
            }
            Err(e) => {
                // Whatever failed, entries may be pending for this consumer that it does not
                // hold in memory: re-read them before anything newer.
                consumer.recover();
                if p.migrations_pending.load(Ordering::Relaxed) && p.migrate_now().await.is_ok() {
                    tracing::info!("database migrations applied");
                    p.migrations_pending.store(false, Ordering::Relaxed);
                }
                if !in_outage {
                    tracing::error!(
                        error = format!("{e:#}"),
                        "{what}: step failed; retrying with backoff until it succeeds"
                    );
                    in_outage = true;
                }
                if !p.backoff(backoff, &shutdown).await {
                    break;
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// `group`'s lag over `shards`: entries summed, the oldest of all.
pub async fn total_lag<L: ClickLog>(
    stream: &L,
    group: &str,
    shards: &[u16],
) -> Result<GroupLag, LogError> {
    let mut total = GroupLag::default();
    for &shard in shards {
        let lag = stream.for_shard(shard).group_lag(group).await?;
        total.events += lag.events;
        total.pending += lag.pending;
        total.oldest_ms = match (total.oldest_ms, lag.oldest_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    Ok(total)
}

/// Publishes `process`'s heartbeat with its group's lag every 2 s until `shutdown`.
pub async fn run_heartbeat<L: ClickLog, S: ClickStore>(
    p: Pipeline<L, S>,
    process: &'static str,
    group: &'static str,
    shutdown: Shutdown,
) {
    let started = Utc::now().timestamp_millis();
    loop {
        let now = Utc::now().timestamp_millis();
        let processed = p.processed.load(Ordering::Relaxed);
        let mut fields = vec![
            ("started_at", started.to_string()),
            ("last_seen", now.to_string()),
            ("pid", std::process::id().to_string()),
            ("processed_total", processed.to_string()),
        ];
        // Until the shards are known (Redis not answering yet), shard 0's lag says as much.
        let shards = p.shards.get().cloned().unwrap_or_else(|| vec![0]);
        match total_lag(&p.stream, group, &shards).await {
            Ok(lag) => {
                let age = lag
                    .oldest_ms
                    .map(|ms| (now - ms as i64).max(0) as f64 / 1000.0)
                    .unwrap_or(0.0);
                fields.push(("lag_events", lag.events.to_string()));
                fields.push(("pending", lag.pending.to_string()));
                fields.push(("lag_seconds", format!("{age:.3}")));
                systemd::notify_status(&format!(
                    "{group}: {processed} clicks processed, lag {} stream entries ({age:.1} s), {} pending",
                    lag.events, lag.pending
                ));
            }
            Err(e) => systemd::notify_status(&format!(
                "{group}: {processed} clicks processed; Redis unreachable ({e})"
            )),
        }
        let _ = p.stream.publish_process_heartbeat(process, &fields).await;
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// Common start-up of both processes: migrations (advisory-locked), the stream,
/// consumer groups.
pub async fn prepare<L: ClickLog, S: ClickStore>(p: &Pipeline<L, S>, migrate: bool) {
    use systemd::{notify, NotifyState};
    if migrate {
        // A slow migration (a lock held by another process, a slow database) is progress,
        // not a hang; and a PostgreSQL that is away must not hold the start up for ever.
        notify(&[
            NotifyState::ExtendTimeoutUsec(60_000_000),
            NotifyState::Status("starting: applying database migrations"),
        ]);
        if let Err(e) = p.migrate_now().await {
            tracing::warn!(
                error = %e,
                "migrations not applied at start; retried with the step loop until they are"
            );
            p.migrations_pending.store(true, Ordering::Relaxed);
        }
    }
    p.liveness.beat();
    notify(&[NotifyState::Status("starting: connecting to Redis")]);
    if !p.stream.connect_now().await {
        tracing::warn!("Redis unreachable at start; waiting for it");
    }
    p.liveness.beat();
    for shard in p.shards().await.unwrap_or_else(|| vec![0]) {
        if let Err(e) = p.stream.for_shard(shard).ensure_groups().await {
            tracing::warn!(error = %e, shard, "consumer groups not created yet; will retry");
        }
    }
}

/// What the pipeline's processes do once started: [`consume_until`] `shutdown`, then say
/// `STOPPING=1`.
pub async fn consume<L: ClickLog, S: ClickStore>(
    p: &Pipeline<L, S>,
    process: Process,
    shutdown: &Shutdown,
    step: StepFn<L, S>,
) {
    consume_until(p, process, shutdown, step).await;
    systemd::notify(&[systemd::NotifyState::Stopping]);
}

/// Publishes the heartbeat and runs `step` with one consumer per shard until `shutdown` (the
/// process's, or the end of a singleton's turn), then lets the heartbeat finish.
pub async fn consume_until<L: ClickLog, S: ClickStore>(
    p: &Pipeline<L, S>,
    process: Process,
    shutdown: &Shutdown,
    step: StepFn<L, S>,
) {
    let group = process.group();
    let heartbeat = tokio::spawn(run_heartbeat(p.clone(), group, group, shutdown.clone()));
    // Every shard in use, each by its own consumer and loop. Which shards those are is known
    // once Redis answers: until then, wait (an outage at start is waited out like any other).
    let shards = loop {
        if let Some(shards) = p.shards().await {
            break Some(shards);
        }
        if !p.backoff(Duration::from_secs(1), shutdown).await {
            break None;
        }
    };
    if let Some(shards) = shards {
        if shards.len() > 1 {
            tracing::info!(shards = ?shards, "consuming the click stream's shards");
        }
        let loops = shards.into_iter().map(|shard| {
            let p = p.for_shard(shard);
            let shutdown = shutdown.clone();
            async move {
                let mut consumer = Consumer::new(group, &consumer_name(group, shard));
                run_loop(process.binary(), shutdown, &p, &mut consumer, step).await;
            }
        });
        futures_util::future::join_all(loops).await;
    }
    let _ = heartbeat.await;
}

/// Takes the lock that makes `process` the only one of its kind at work (the aggregator,
/// the webhook sender), waiting on standby, retrying every second, while another holds it.
/// `None`: `shutdown` came first. Ready is sent before: a standby process is healthy, not a
/// start-up for systemd to time out.
pub async fn hold_singleton<L, S, T, E, F, Fut>(
    p: &Pipeline<L, S>,
    shutdown: &Shutdown,
    process: Process,
    mut try_lock: F,
) -> Option<T>
where
    L: ClickLog,
    S: ClickStore,
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, E>>,
{
    let name = process.binary();
    let mut waiting = false;
    loop {
        let why = match try_lock().await {
            Ok(Some(lock)) => {
                if waiting {
                    tracing::info!("{name} lock taken; leaving standby");
                }
                return Some(lock);
            }
            Ok(None) => format!("another {name} holds the lock"),
            Err(e) => format!("cannot take the {name} lock: {e}"),
        };
        if !waiting {
            tracing::warn!(reason = %why, "{name} on standby; retrying every second");
            systemd::notify_status(&format!("standby: {why}"));
            waiting = true;
        }
        if !p.backoff(Duration::from_secs(1), shutdown).await {
            return None;
        }
    }
}

/// Runs `chore` now and then every `every` until `shutdown` (retention, stream trimming).
pub fn spawn_periodic<F, Fut>(
    shutdown: &Shutdown,
    every: Duration,
    mut chore: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let stop = shutdown.clone();
    tokio::spawn(async move {
        loop {
            chore().await;
            tokio::select! {
                _ = stop.wait() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    })
}

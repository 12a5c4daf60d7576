//! `boltlink-webhooks`: webhook delivery, at least once, never on the API's request path.
//!
//! # Where events come from
//! - `link.created`, `link.updated`, `link.deleted`: triggers on `links` write them into the
//!   outbox (`webhook_events`) in the transaction that changes the link, for keys that have a
//!   webhook URL then (migration `20261206000003_webhook_delivery.sql`). Nothing on the
//!   request path knows about webhooks; a change that commits has its event, one that rolls
//!   back has none.
//! - `link.clicked`: this process reads the click stream with its own consumer group
//!   ([`clicks::step`]), stages the clicks of keys with a webhook in `webhook_clicks` (each
//!   click once, by id), and once a second turns each key's oldest 1000 staged clicks into
//!   one event ([`crate::store::Store::batch_staged_clicks`]).
//!
//! # How they leave
//! [`deliver::run_dispatcher`] picks due events, one per key at a time, and POSTs them signed
//! ([`signature`]) under the metadata fetcher's address rules (unless
//! `WEBHOOK_ALLOW_PRIVATE`), within 5 s. A 2xx is delivered; anything else is retried after
//! `WEBHOOK_RETRY_BASE_MS`, doubling, for `WEBHOOK_RETRY_WINDOW_S` (24 h), then recorded as
//! failed. Every attempt is a row of `webhook_attempts`; the event's state is what
//! `GET /api/settings/developer/webhook/deliveries` lists.
//!
//! # Why nothing is lost
//! Events live in PostgreSQL until delivered or given up; an attempt cut short by a crash
//! leaves its event pending, so it is sent again after the restart (the receiver
//! deduplicates on `BoltLink-Event-Id`). Clicks stay in the stream until staged. One process
//! delivers at a time (an advisory lock; a second one waits on standby).

pub mod clicks;
pub mod deliver;
pub mod signature;

/// The click stream and tables as this process has them: Redis and PostgreSQL. (Named here,
/// not taken from `crate::pipeline`, which starts this process: no import goes both ways.)
pub type Pipeline =
    crate::clicks::consumer::Pipeline<crate::redis::RedisHandle, crate::store::Store>;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use crate::clicks::consumer::Process;
use crate::clicks::consumer::{consume_until, hold_singleton, prepare, spawn_periodic};
use crate::clicks::ClickLog;
use crate::config::Config;
use crate::daemon::systemd::{self, NotifyState};
use crate::daemon::Shutdown;
use crate::metadata::{FetchPolicy, MetadataFetcher};
use deliver::{Counters, Sender};

/// Clicks per `link.clicked` event at most.
pub const CLICKS_PER_EVENT: i64 = 1000;
/// Delivered and failed events (with their attempts) are kept this long, for the
/// deliveries route.
pub const KEEP_FINISHED: chrono::Duration = chrono::Duration::days(7);

/// The `boltlink-webhooks` process: the singleton lock, the click consumer (its step loop is
/// what the watchdog watches), the batcher, the dispatcher, retention and the heartbeat.
pub async fn run(p: Pipeline, config: &Config, shutdown: Shutdown) -> anyhow::Result<()> {
    p.spawn_watchdog(&shutdown);
    prepare(&p, config.process.migrate_on_start).await;
    systemd::notify(&[NotifyState::Ready]);
    while let Some(mut lock) = hold_singleton(&p, &shutdown, Process::Webhooks, || {
        p.store.try_lock_webhooks()
    })
    .await
    {
        // A turn: until the process stops, or the lock's session ends and another sender
        // takes the lock (then this one stands by again). Two senders at once would deliver
        // the same events twice; the lock is looked at every second.
        let turn = Shutdown::new();
        let watch = async {
            loop {
                tokio::select! {
                    _ = shutdown.wait() => break,
                    _ = tokio::time::sleep(LOCK_CHECK) => {}
                }
                if lock.alive().await {
                    continue;
                }
                match p.store.try_lock_webhooks().await {
                    Ok(Some(again)) => {
                        tracing::warn!(
                            "the webhook lock's session had ended; the lock is taken again"
                        );
                        lock = again;
                    }
                    Ok(None) => {
                        tracing::warn!(
                            "the webhook lock's session had ended and another sender holds the lock now; back to standby"
                        );
                        break;
                    }
                    // PostgreSQL unreachable: nothing is delivered meanwhile (events are
                    // claimed there); look again.
                    Err(_) => {}
                }
            }
            turn.trigger();
        };
        let (_, result) = tokio::join!(watch, hold_turn(&p, config, &turn));
        drop(lock);
        result?;
        if shutdown.is_triggered() {
            break;
        }
    }
    systemd::notify(&[NotifyState::Stopping]);
    tracing::info!("boltlink-webhooks stopped");
    Ok(())
}

/// How often the sender looks whether its lock's session is still there.
const LOCK_CHECK: Duration = Duration::from_secs(1);

/// The sender's work while it holds the lock, until `shutdown` (the end of its turn).
async fn hold_turn(p: &Pipeline, config: &Config, shutdown: &Shutdown) -> anyhow::Result<()> {
    let fetcher = MetadataFetcher::new(FetchPolicy {
        allowed_addrs: config.metadata.allowlist.clone(),
        ..FetchPolicy::default()
    })
    .map_err(|e| anyhow::anyhow!("webhook HTTP client: {e}"))?;
    let counters = Arc::new(Counters::default());
    let sender = Arc::new(Sender {
        store: p.store.clone(),
        fetcher,
        config: config.webhooks.clone(),
        public_base_url: config.http.public_base_url.clone(),
        counters: counters.clone(),
    });
    let batcher = spawn_periodic(shutdown, Duration::from_secs(1), {
        let store = p.store.clone();
        let failing = Arc::new(AtomicBool::new(false));
        move || {
            let (store, failing) = (store.clone(), failing.clone());
            async move {
                match store.batch_staged_clicks(CLICKS_PER_EVENT).await {
                    Ok(_) if failing.swap(false, Ordering::Relaxed) => {
                        tracing::info!("batching staged clicks again")
                    }
                    Ok(_) => {}
                    Err(e) if !failing.swap(true, Ordering::Relaxed) => tracing::warn!(
                        error = %e,
                        "cannot batch staged clicks; retrying every second"
                    ),
                    Err(_) => {}
                }
            }
        }
    });
    let retention = spawn_periodic(shutdown, Duration::from_secs(3600), {
        let store = p.store.clone();
        move || {
            let store = store.clone();
            async move {
                match apply_retention(&store).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(
                        webhook_events.deleted = n,
                        "removed old finished webhook events"
                    ),
                    Err(e) => tracing::warn!(
                        error = %e,
                        "webhook retention failed; retrying in an hour"
                    ),
                }
            }
        }
    });
    let backlog = spawn_periodic(shutdown, Duration::from_secs(2), {
        let p = p.clone();
        move || {
            let (p, counters) = (p.clone(), counters.clone());
            async move {
                let mut fields = vec![
                    (
                        "deliveries_delivered_total",
                        counters.delivered.load(Ordering::Relaxed).to_string(),
                    ),
                    (
                        "deliveries_failed_total",
                        counters.failed.load(Ordering::Relaxed).to_string(),
                    ),
                    (
                        "deliveries_retried_total",
                        counters.retried.load(Ordering::Relaxed).to_string(),
                    ),
                ];
                if let Ok(b) = p.store.webhook_backlog().await {
                    let age = b
                        .oldest_pending_at
                        .map(|t| (Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0)
                        .unwrap_or(0.0);
                    fields.push(("deliveries_pending", b.pending.to_string()));
                    fields.push(("deliveries_oldest_seconds", format!("{age:.3}")));
                }
                let _ = p
                    .stream
                    .publish_process_heartbeat(Process::Webhooks.group(), &fields)
                    .await;
            }
        }
    });
    let dispatcher = tokio::spawn(deliver::run_dispatcher(sender, shutdown.clone()));
    tracing::info!(
        instance = config.process.instance.as_str(),
        "boltlink-webhooks ready"
    );
    consume_until(p, Process::Webhooks, shutdown, |p, c| {
        Box::pin(clicks::step(p, c))
    })
    .await;
    let _ = dispatcher.await;
    for task in [batcher, retention, backlog] {
        task.abort();
    }
    Ok(())
}

/// Deletes finished events older than [`KEEP_FINISHED`] (with their attempts) in batches
/// until none is left: a busy hour makes thousands of `link.clicked` events per key.
pub async fn apply_retention(store: &crate::store::Store) -> Result<u64, crate::store::StoreError> {
    const BATCH: i64 = 10_000;
    let before = Utc::now() - KEEP_FINISHED;
    let mut total = 0;
    loop {
        let n = store.delete_finished_webhook_events(before, BATCH).await?;
        total += n;
        if n < BATCH as u64 {
            return Ok(total);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

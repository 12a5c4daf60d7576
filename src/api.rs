//! The `boltlink-api` process once configuration and listener are in hand: build the state,
//! migrate, start background tasks, declare readiness, serve, and shut down in order.
//!
//! systemd sees (all no-ops outside systemd):
//! - `EXTEND_TIMEOUT_USEC` before migrations, which may wait on a lock or a slow database;
//! - `READY=1` only once the listener is held (it is taken before the runtime starts) and
//!   PostgreSQL and Redis have answered, or the process has decided to serve degraded;
//! - `WATCHDOG=1` at half of `WATCHDOG_USEC` from a task that, once serving, asks the accept
//!   loop to answer (`server::LivenessProbe`); during start-up, whose steps are bounded by
//!   their own timeouts, it pings as long as the runtime runs it;
//! - `STATUS=` refreshed every few seconds with a one-line summary ([`status_line`]);
//! - `STOPPING=1` on SIGTERM, then the drain described in `http::server`.
//!
//! Above `MEMORY_RESTART_MB` of resident memory the process stops itself through the same
//! drain and [`run`] returns [`MemoryRestart`]; the binary exits 75 and `Restart=on-failure`
//! starts a fresh process. The unit's `MemoryMax=` stays as the hard backstop (an OOM kill
//! has no drain), with `MemoryHigh=` in between.

use std::net::TcpListener as StdListener;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{mpsc, oneshot};

use crate::app::{spawn_background, App, AppState};
use crate::config::Config;
use crate::daemon::systemd::{self, notify, NotifyState};
use crate::daemon::{MemoryRestart, Shutdown};
use crate::http::server::LivenessProbe;
use crate::http::{route_names, server};
use crate::store::StoreError;

/// Upper bound on delivering queued clicks after the server has drained.
const CLICK_DRAIN_DEADLINE: Duration = Duration::from_millis(750);
/// How often `STATUS=` is refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(3);
/// Upper bound on waiting for PostgreSQL (migrations or a ping) before serving degraded.
const DATABASE_START_TIMEOUT: Duration = Duration::from_secs(30);

/// How often resident memory is compared with `MEMORY_RESTART_MB`.
const MEMORY_CHECK_EVERY: Duration = Duration::from_secs(2);
/// Memory restarts of the instances sharing a Redis are at least this far apart: one
/// instance drains and restarts while the others serve (a burst that grew all of them must
/// not leave the socket with no process at all).
const MEMORY_RESTART_SPACING: Duration = Duration::from_secs(10);
/// Above `MEMORY_RESTART_MB` plus this, an instance restarts without waiting for its turn:
/// the units' `MemoryHigh=` (throttling, then the `MemoryMax=` kill without a drain) is 50 MiB
/// above the default limit.
const MEMORY_URGENT_MARGIN: u64 = 50 << 20;

const PHASE_STARTING: u8 = 0;
const PHASE_SERVING: u8 = 1;

/// Runs the API until `shutdown` fires (the binary wires SIGTERM/SIGINT to it).
pub async fn run(config: Config, listener: StdListener, shutdown: Shutdown) -> anyhow::Result<()> {
    let shutdown_timeout = config.process.shutdown_timeout;
    let migrate = config.process.migrate_on_start;
    let app = AppState::build(config, route_names())?;

    // systemd arms the watchdog when the process starts, so pinging starts now too.
    let phase = Arc::new(AtomicU8::new(PHASE_STARTING));
    let (probe_tx, probe_rx) = mpsc::channel::<LivenessProbe>(1);
    tokio::spawn(systemd::run_watchdog(
        systemd::watchdog_interval(),
        accept_loop_probe(phase.clone(), probe_tx),
        shutdown.wait(),
    ));

    if migrate {
        // Tell systemd a slow migration is progress, not a hang.
        notify(&[
            NotifyState::ExtendTimeoutUsec(120_000_000),
            NotifyState::Status("starting: applying database migrations"),
        ]);
        match tokio::time::timeout(DATABASE_START_TIMEOUT, app.store.migrate()).await {
            Ok(Ok(())) => tracing::info!("database migrations are up to date"),
            Ok(Err(e @ StoreError::Unavailable(_))) => {
                tracing::warn!(error = %e, "PostgreSQL unreachable at start: serving in degraded mode, migrations pending")
            }
            Ok(Err(e)) => return Err(e).context("applying database migrations"),
            Err(_) => {
                tracing::warn!("PostgreSQL did not answer within 30 s: serving in degraded mode")
            }
        }
    } else {
        // Readiness means PostgreSQL answered or degraded mode was decided, migrations or not.
        notify(&[NotifyState::Status("starting: checking PostgreSQL")]);
        match tokio::time::timeout(DATABASE_START_TIMEOUT, app.store.ping()).await {
            Ok(Ok(())) => tracing::info!("PostgreSQL answers"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "PostgreSQL unreachable at start: serving in degraded mode")
            }
            Err(_) => {
                tracing::warn!("PostgreSQL did not answer within 30 s: serving in degraded mode")
            }
        }
    }
    notify(&[NotifyState::Status("starting: connecting to Redis")]);
    if !app.redis.connect_now().await {
        tracing::warn!("Redis unreachable at start: serving in degraded mode");
    }

    let flush_stop = Shutdown::new();
    let background = spawn_background(&app, &shutdown, &flush_stop, CLICK_DRAIN_DEADLINE);
    let listener = tokio::net::TcpListener::from_std(listener)
        .context("registering the listener with tokio")?;
    let addr = listener.local_addr().ok();

    {
        let app = app.clone();
        let stop = shutdown.wait();
        tokio::spawn(async move {
            stop.await;
            app.stopping.store(true, Ordering::Relaxed);
            notify(&[
                NotifyState::Stopping,
                NotifyState::Status("stopping: draining connections"),
            ]);
            tracing::info!("shutdown requested: draining in-flight requests");
        });
    }

    {
        let app = app.clone();
        tokio::spawn(systemd::run_status_updates(
            STATUS_EVERY,
            move || status_line(&app),
            shutdown.wait(),
        ));
    }

    let memory_restart = spawn_memory_watch(&app, &shutdown);

    phase.store(PHASE_SERVING, Ordering::Relaxed);
    let status = status_line(&app);
    notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
    tracing::info!(
        listen.addr = addr.map(|a| a.to_string()).unwrap_or_default(),
        instance = %app.config.process.instance,
        watchdog.interval_ms = systemd::watchdog_interval().map(|d| d.as_millis() as u64),
        "boltlink-api ready"
    );
    let left_open = server::serve_with_probes(
        app.clone(),
        listener,
        shutdown.clone(),
        shutdown_timeout,
        probe_rx,
    )
    .await;
    flush_stop.trigger();
    let _ = tokio::time::timeout(
        CLICK_DRAIN_DEADLINE + Duration::from_millis(250),
        background,
    )
    .await;
    tracing::info!(connections.left_open = left_open, "boltlink-api stopped");
    let exceeded = memory_restart
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    match exceeded {
        Some(m) => Err(m.into()),
        None => Ok(()),
    }
}

/// Compares resident memory with `MEMORY_RESTART_MB` every few seconds; once above, records
/// why and triggers the ordinary shutdown (drain included).
fn spawn_memory_watch(
    app: &App,
    shutdown: &Shutdown,
) -> Arc<std::sync::Mutex<Option<MemoryRestart>>> {
    let exceeded = Arc::new(std::sync::Mutex::new(None));
    let Some(limit_bytes) = app.config.process.memory_restart_bytes else {
        return exceeded;
    };
    let record = exceeded.clone();
    let shutdown = shutdown.clone();
    let app = app.clone();
    tokio::spawn(async move {
        let stop = shutdown.wait();
        tokio::pin!(stop);
        let mut waiting_logged = false;
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(MEMORY_CHECK_EVERY) => {}
            }
            let Some(rss_bytes) = crate::metrics::resident_memory_bytes() else {
                continue;
            };
            if rss_bytes > limit_bytes {
                let urgent = rss_bytes > limit_bytes + MEMORY_URGENT_MARGIN;
                // Unreachable Redis (`None`): no one to agree with, go ahead.
                let turn = app
                    .redis
                    .try_lease(
                        &app.redis.keys().memory_restart_turn(),
                        &app.config.process.instance,
                        MEMORY_RESTART_SPACING,
                    )
                    .await
                    .unwrap_or(true);
                if !turn && !urgent {
                    if !waiting_logged {
                        tracing::info!(
                            memory.rss_bytes = rss_bytes,
                            memory.limit_bytes = limit_bytes,
                            "above MEMORY_RESTART_MB, but another instance restarted for memory moments ago: serving on until it is back"
                        );
                        waiting_logged = true;
                    }
                    continue;
                }
                let why = MemoryRestart {
                    rss_bytes,
                    limit_bytes,
                };
                tracing::warn!(
                    memory.rss_bytes = rss_bytes,
                    memory.limit_bytes = limit_bytes,
                    "{why}"
                );
                *record.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
                shutdown.trigger();
                return;
            }
        }
    });
    exceeded
}

/// The watchdog's probe: during start-up, the task running at all is enough (each start-up
/// step has its own timeout); once serving, the accept loop must answer within the probe's
/// deadline.
fn accept_loop_probe(
    phase: Arc<AtomicU8>,
    probes: mpsc::Sender<LivenessProbe>,
) -> impl FnMut() -> futures_util::future::BoxFuture<'static, Result<(), String>> {
    move || {
        let phase = phase.load(Ordering::Relaxed);
        let probes = probes.clone();
        Box::pin(async move {
            if phase != PHASE_SERVING {
                return Ok(());
            }
            let (reply, answer) = oneshot::channel();
            probes
                .send(reply)
                .await
                .map_err(|_| "the accept loop has stopped".to_string())?;
            answer
                .await
                .map(|_| ())
                .map_err(|_| "the accept loop dropped the liveness probe".to_string())
        })
    }
}

/// The one-line live summary for `STATUS=` (what `systemctl status` and `boltlinkctl status`
/// show for this instance).
pub fn status_line(app: &App) -> String {
    let m = &app.metrics;
    let hits =
        m.cache_local_hits.load(Ordering::Relaxed) + m.cache_redis_hits.load(Ordering::Relaxed);
    let misses = m.cache_misses.load(Ordering::Relaxed);
    let now_ms = chrono::Utc::now().timestamp_millis();
    let lag_secs = app
        .clicks
        .oldest_at_ms()
        .map(|at| (now_ms - at).max(0) as f64 / 1000.0)
        .unwrap_or(0.0);
    format_status(&StatusFigures {
        stopping: app.stopping.load(Ordering::Relaxed),
        requests: m.requests_total(),
        in_flight: app.in_flight.load(Ordering::Relaxed),
        cache_hits: hits,
        cache_misses: misses,
        click_queue: app.clicks.len(),
        click_lag_secs: lag_secs,
        clicks_dropped: app.clicks.dropped_total(),
        redis_up: app.redis.is_healthy(),
    })
}

/// The figures [`status_line`] reports.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusFigures {
    pub stopping: bool,
    pub requests: u64,
    pub in_flight: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub click_queue: usize,
    pub click_lag_secs: f64,
    pub clicks_dropped: u64,
    pub redis_up: bool,
}

/// `serving: 1520 requests, 3 in flight, cache hits 97.1%, click queue 0 (lag 0.0 s)`, plus
/// what is wrong when something is.
pub fn format_status(f: &StatusFigures) -> String {
    let lookups = f.cache_hits + f.cache_misses;
    let hit_rate = if lookups == 0 {
        "-".to_string()
    } else {
        format!("{:.1}%", f.cache_hits as f64 * 100.0 / lookups as f64)
    };
    let mut line = format!(
        "{}: {} requests, {} in flight, cache hits {}, click queue {} (lag {:.1} s)",
        if f.stopping { "stopping" } else { "serving" },
        f.requests,
        f.in_flight,
        hit_rate,
        f.click_queue,
        f.click_lag_secs,
    );
    if f.clicks_dropped > 0 {
        line.push_str(&format!(", {} clicks dropped", f.clicks_dropped));
    }
    if !f.redis_up {
        line.push_str(", degraded: Redis unreachable");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures() -> StatusFigures {
        StatusFigures {
            stopping: false,
            requests: 1520,
            in_flight: 3,
            cache_hits: 971,
            cache_misses: 29,
            click_queue: 0,
            click_lag_secs: 0.0,
            clicks_dropped: 0,
            redis_up: true,
        }
    }

    #[test]
    fn the_status_line_summarises_traffic_cache_and_click_queue() {
        assert_eq!(
            format_status(&figures()),
            "serving: 1520 requests, 3 in flight, cache hits 97.1%, click queue 0 (lag 0.0 s)"
        );
    }

    #[test]
    fn the_status_line_says_what_is_degraded() {
        let f = StatusFigures {
            redis_up: false,
            click_queue: 40,
            click_lag_secs: 12.34,
            clicks_dropped: 2,
            cache_hits: 0,
            cache_misses: 0,
            stopping: true,
            ..figures()
        };
        assert_eq!(
            format_status(&f),
            "stopping: 1520 requests, 3 in flight, cache hits -, click queue 40 (lag 12.3 s), 2 clicks dropped, degraded: Redis unreachable"
        );
    }
}

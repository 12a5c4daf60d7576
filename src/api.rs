//! The `boltlink-api` process once configuration and listener are in hand: build the state,
//! migrate, start background tasks, declare readiness, serve, and shut down in order.

use std::net::TcpListener as StdListener;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;

use crate::app::{spawn_background, AppState, Shutdown};
use crate::config::Config;
use crate::http::{route_names, server};
use crate::store::StoreError;
use crate::systemd::{notify, NotifyState};

/// Upper bound on delivering queued clicks after the server has drained.
const CLICK_DRAIN_DEADLINE: Duration = Duration::from_millis(750);

/// Runs the API until `shutdown` fires (the binary wires SIGTERM/SIGINT to it).
pub async fn run(config: Config, listener: StdListener, shutdown: Shutdown) -> anyhow::Result<()> {
    let shutdown_timeout = config.shutdown_timeout;
    let migrate = config.migrate_on_start;
    let app = AppState::build(config, route_names())?;

    if migrate {
        // Tell systemd a slow migration is progress, not a hang.
        notify(&[NotifyState::ExtendTimeoutUsec(120_000_000)]);
        match tokio::time::timeout(Duration::from_secs(30), app.store.migrate()).await {
            Ok(Ok(())) => tracing::info!("database migrations are up to date"),
            Ok(Err(e @ StoreError::Unavailable(_))) => {
                tracing::warn!(error = %e, "PostgreSQL unreachable at start: serving in degraded mode, migrations pending")
            }
            Ok(Err(e)) => return Err(e).context("applying database migrations"),
            Err(_) => {
                tracing::warn!("PostgreSQL did not answer within 30 s: serving in degraded mode")
            }
        }
    }
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

    notify(&[NotifyState::Ready, NotifyState::Status("serving")]);
    tracing::info!(
        listen.addr = addr.map(|a| a.to_string()).unwrap_or_default(),
        instance = %app.config.instance,
        "boltlink-api ready"
    );
    let left_open = server::serve(app.clone(), listener, shutdown.clone(), shutdown_timeout).await;
    flush_stop.trigger();
    let _ = tokio::time::timeout(
        CLICK_DRAIN_DEADLINE + Duration::from_millis(250),
        background,
    )
    .await;
    tracing::info!(connections.left_open = left_open, "boltlink-api stopped");
    Ok(())
}

/// Waits for SIGTERM or SIGINT, then triggers `shutdown`.
pub async fn wire_signals(shutdown: Shutdown) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        shutdown.trigger();
    });
    Ok(())
}

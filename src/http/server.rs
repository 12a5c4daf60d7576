//! The accept loop and graceful shutdown. The server is *handed* its listener and shutdown
//! signal; it never binds or installs signal handlers (systemd, `boltlinkctl run` and tests
//! all hand it a socket).
//!
//! Shutdown order matters with a socket shared by several processes (DESIGN.md finding 5):
//! 1. drop our listener fd: stop accepting, but never `shutdown()` the shared socket, which
//!    would break every other instance;
//! 2. keep serving for a short grace period: hyper treats a just-accepted connection whose
//!    first request has not been read yet as idle and would close it unanswered;
//! 3. ask every connection to finish (in-flight requests complete, keep-alive connections
//!    close after their current response) and wait for that up to the deadline.
//!
//! Responses written once shutdown has begun carry `Connection: close` (see `http::handle`),
//! so a busy keep-alive client learns to reconnect — to another instance, through the shared
//! socket — from an answer, instead of racing its next request against our close.
//!
//! Liveness: the accept loop also answers [`LivenessProbe`]s from the systemd watchdog task,
//! by spawning a task that replies, exactly as it spawns a connection. An answer proves the
//! accept loop is being polled and the runtime still runs newly spawned tasks; a wedged
//! loop (a blocking call, a stuck runtime) answers nothing and the watchdog stops pinging.

use std::convert::Infallible;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use crate::app::{App, Shutdown};

/// How long accepted connections keep being served after the listener is dropped.
pub const ACCEPT_GRACE: Duration = Duration::from_millis(250);

/// A question to the accept loop; the answer is the number of connections accepted so far.
pub type LivenessProbe = oneshot::Sender<u64>;

/// Serves until `shutdown`, then drains within `deadline`. Returns how many connections were
/// still open when the deadline passed (0 on a clean drain).
pub async fn serve(
    app: App,
    listener: TcpListener,
    shutdown: Shutdown,
    deadline: Duration,
) -> usize {
    let (_no_probes, probes) = mpsc::channel(1);
    serve_with_probes(app, listener, shutdown, deadline, probes).await
}

/// [`serve`], also answering liveness probes sent on `probes` while accepting.
pub async fn serve_with_probes(
    app: App,
    listener: TcpListener,
    shutdown: Shutdown,
    deadline: Duration,
    mut probes: mpsc::Receiver<LivenessProbe>,
) -> usize {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    let stop = shutdown.wait();
    tokio::pin!(stop);
    let mut accepted_total: u64 = 0;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            Some(probe) = probes.recv() => {
                tokio::spawn(async move {
                    let _ = probe.send(accepted_total);
                });
            }
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                accepted_total += 1;
                let _ = stream.set_nodelay(true);
                let app = app.clone();
                let service = service_fn(move |req| {
                    let app = app.clone();
                    async move { Ok::<_, Infallible>(crate::http::handle(app, req, peer).await) }
                });
                let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
        }
    }
    drop(listener);
    tokio::time::sleep(ACCEPT_GRACE).await;
    let remaining = deadline.saturating_sub(ACCEPT_GRACE);
    match tokio::time::timeout(remaining, graceful.shutdown()).await {
        Ok(()) => 0,
        Err(_) => {
            tracing::warn!("shutdown deadline reached with connections still open; closing them");
            1
        }
    }
}

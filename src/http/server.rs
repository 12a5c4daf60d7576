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
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

use super::balance::{self, ShareTable};
use super::edge::{EdgeIo, OnEdgeError};
use crate::app::App;
use crate::connections::{CloseReason, Ticket};
use crate::daemon::Shutdown;

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

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The connection settings: HTTP/1 head deadline (also the keep-alive idle limit, since
/// hyper starts it when it waits for the next head), HTTP/2 keep-alive pings that find dead
/// peers. Idle HTTP/2 connections and the first request's deadline are the connection
/// task's (see [`serve_connection`]).
fn builder(app: &App) -> auto::Builder<TokioExecutor> {
    let limits = &app.config.http.limits;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(10))
        .max_concurrent_streams(128);
    builder
}

/// [`serve`], also answering liveness probes sent on `probes` while accepting.
pub async fn serve_with_probes(
    app: App,
    listener: TcpListener,
    shutdown: Shutdown,
    deadline: Duration,
    mut probes: mpsc::Receiver<LivenessProbe>,
) -> usize {
    let builder = Arc::new(builder(&app));
    // Every connection task holds a receiver: `true` asks it to finish; the sender's
    // `closed()` resolves once every task has ended.
    let (stop_tx, stop_rx) = watch::channel(false);
    let on_edge_error: OnEdgeError = {
        let app = app.clone();
        Arc::new(move |status, request_id| {
            app.metrics.observe_edge_error(status);
            tracing::debug!(
                request_id,
                http.status = status,
                "request refused before routing: it could not be parsed"
            );
        })
    };
    let stop = shutdown.wait();
    tokio::pin!(stop);
    let mut accepted_total: u64 = 0;
    // Fair shares of the shared socket (see `super::balance`): the table, when the instances
    // have a runtime directory, a beat that keeps this instance's slot fresh while nothing
    // is accepted, and since when this instance has been holding back.
    let shares = app
        .config
        .process
        .runtime_dir
        .as_deref()
        .and_then(|dir| ShareTable::open(dir, &app.config.process.instance));
    let mut beat = tokio::time::interval(balance::STALE / 3);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut held_since: Option<Instant> = None;
    let mut full_since: Option<Instant> = None;
    loop {
        // At the process cap while connections told to close are still open: leave the next
        // one in the listen queue (another instance may take it) until they have closed,
        // never longer than they may take. Accepting it now would only refuse it.
        let full = if app.connections.full_while_closing() {
            full_since.get_or_insert_with(Instant::now).elapsed() < CLOSE_GRACE
        } else {
            full_since = None;
            false
        };
        let hold = full
            || match &shares {
                Some(table) if table.over_share(app.connections.open(), unix_ms()) => {
                    let since = *held_since.get_or_insert_with(Instant::now);
                    // Never longer than MAX_HOLD: a peer that cannot accept must not leave a
                    // client waiting.
                    since.elapsed() < balance::MAX_HOLD
                }
                _ => {
                    held_since = None;
                    false
                }
            };
        tokio::select! {
            _ = &mut stop => break,
            Some(probe) = probes.recv() => {
                tokio::spawn(async move {
                    let _ = probe.send(accepted_total);
                });
            }
            _ = beat.tick(), if shares.is_some() => {}
            _ = tokio::time::sleep(balance::RECHECK), if hold => {}
            accepted = listener.accept(), if !hold => {
                held_since = None;
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
                let client = super::request::canonical(peer.ip());
                let Ok(ticket) = app.connections.admit(client) else {
                    // At a cap with nothing idle to shed: close at once (counted).
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve_connection(
                    app.clone(),
                    builder.clone(),
                    stream,
                    peer,
                    ticket,
                    stop_rx.clone(),
                    on_edge_error.clone(),
                ));
            }
        }
    }
    drop(listener);
    if let Some(table) = &shares {
        table.leave();
    }
    drop(stop_rx);
    tokio::time::sleep(ACCEPT_GRACE).await;
    let _ = stop_tx.send(true);
    let remaining = deadline.saturating_sub(ACCEPT_GRACE);
    match tokio::time::timeout(remaining, stop_tx.closed()).await {
        Ok(()) => 0,
        Err(_) => {
            tracing::warn!("shutdown deadline reached with connections still open; closing them");
            1
        }
    }
}

/// Waits for a new connection's first bytes, at most the head deadline, and not past a
/// stop. `false`: close it unanswered (nothing was asked).
async fn first_bytes(
    stream: &TcpStream,
    ticket: &Ticket,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let Some(deadline) = ticket.deadline() else {
        return true;
    };
    let mut byte = [0u8; 1];
    tokio::select! {
        peeked = stream.peek(&mut byte) => matches!(peeked, Ok(n) if n > 0),
        _ = tokio::time::sleep_until(deadline) => {
            ticket.closed(CloseReason::NoRequest);
            false
        }
        _ = stop.wait_for(|stopping| *stopping) => false,
    }
}

/// One connection, HTTP/1 or HTTP/2, until it ends: closed by the client, after a stop
/// (graceful: in-flight requests finish), when shed for a new connection over a cap, or after
/// its head or idle deadline (see [`super::connections`]).
async fn serve_connection(
    app: App,
    builder: Arc<auto::Builder<TokioExecutor>>,
    stream: TcpStream,
    peer: SocketAddr,
    ticket: Ticket,
    mut stop: watch::Receiver<bool>,
    on_edge_error: OnEdgeError,
) {
    if !first_bytes(&stream, &ticket, &mut stop).await {
        return;
    }
    let requests = ticket.request_counter();
    let service = service_fn(move |req| {
        let guard = requests.begin();
        let app = app.clone();
        async move {
            let resp = crate::http::handle(app, req, peer).await;
            drop(guard);
            Ok::<_, Infallible>(resp)
        }
    });
    let io = TokioIo::new(EdgeIo::new(stream, on_edge_error));
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    // Set when we close an idle connection ourselves: a graceful HTTP/2 close waits for the
    // client to acknowledge a PING, which a hostile client never does.
    let mut close_by: Option<tokio::time::Instant> = None;
    let mut stopping = false;
    loop {
        let closing = stopping || close_by.is_some();
        let deadline = if closing { close_by } else { ticket.deadline() };
        tokio::select! {
            _ = conn.as_mut() => break,
            _ = stop.wait_for(|stopping| *stopping), if !closing => {
                conn.as_mut().graceful_shutdown();
                stopping = true;
            }
            _ = ticket.state.shed.notified(), if !closing => {
                ticket.closed(CloseReason::Shed);
                conn.as_mut().graceful_shutdown();
                close_by = Some(tokio::time::Instant::now() + CLOSE_GRACE);
            }
            _ = sleep_until_or_forever(deadline) => {
                if closing {
                    // Our close was not honoured in time: drop the connection.
                    break;
                }
                // Re-read: a request may have started (or ended) since the deadline was set.
                if ticket.deadline().is_some_and(|d| d <= tokio::time::Instant::now()) {
                    ticket.closed(if ticket.state.requests() == 0 {
                        CloseReason::NoRequest
                    } else {
                        CloseReason::Idle
                    });
                    conn.as_mut().graceful_shutdown();
                    close_by = Some(tokio::time::Instant::now() + CLOSE_GRACE);
                }
            }
            // While a request is in flight there is no deadline: look again shortly after.
            _ = tokio::time::sleep(Duration::from_secs(1)), if !closing && deadline.is_none() => {}
        }
    }
}

/// How long an idle connection we asked to close may take to do so before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

async fn sleep_until_or_forever(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

//! systemd integration: the only code that reads `LISTEN_FDS` or writes to `NOTIFY_SOCKET`.
//!
//! - [`take_listener`]: the socket systemd passed (socket activation) or one bound to
//!   `BIND_ADDR`. Must run in the synchronous `main`, before the runtime: `listenfd` clears
//!   `LISTEN_FDS`/`LISTEN_PID` from the environment, which is not thread-safe.
//! - [`notify`]: `READY=1`, `STOPPING=1`, `STATUS=`; no-ops without `NOTIFY_SOCKET`.
//!   [`notify_status`] for the one-line live summary `systemctl status` shows.
//! - [`watchdog_interval`] and [`run_watchdog`]: `WATCHDOG=1` at half of `WATCHDOG_USEC`, but
//!   only while a caller-supplied probe proves the process does its work. A bare timer would
//!   keep pinging while the serving path is wedged (DESIGN.md finding 7), so every process
//!   hands in a probe of its own main loop (the API asks its accept loop; the worker and
//!   aggregator can check that their consume loop advanced a [`LoopHeartbeat`]).
//! - [`run_status_updates`]: refreshes `STATUS=` every few seconds from a closure.
//! - [`spawn_with_listener`]: hands one listening socket to a child through the same
//!   `LISTEN_FDS` protocol, so `boltlinkctl run` and the tests start several API processes
//!   on one shared socket exactly as systemd does.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use sd_notify::NotifyState;

/// Name given to the socket in `LISTEN_FDNAMES` (the unit's `FileDescriptorName=`).
pub const SOCKET_NAME: &str = "boltlink-api";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerSource {
    /// Inherited through `LISTEN_FDS`.
    Inherited,
    /// Bound here to `BIND_ADDR`.
    Bound,
}

/// The inherited socket if there is one, else a new one bound to `bind_addr`.
/// The returned listener is non-blocking, ready for `tokio::net::TcpListener::from_std`.
pub fn take_listener(bind_addr: SocketAddr) -> std::io::Result<(TcpListener, ListenerSource)> {
    let mut fds = listenfd::ListenFd::from_env();
    if fds.len() > 0 {
        if let Ok(names) = std::env::var("LISTEN_FDNAMES") {
            let first = names.split(':').next().unwrap_or("");
            if !first.is_empty() && first != SOCKET_NAME && first != "unknown" {
                tracing::warn!(
                    socket.name = first,
                    "inherited socket is not named {SOCKET_NAME}; serving it anyway"
                );
            }
        }
        if let Some(listener) = fds.take_tcp_listener(0)? {
            // systemd may hand over a blocking socket; tokio requires non-blocking.
            listener.set_nonblocking(true)?;
            return Ok((listener, ListenerSource::Inherited));
        }
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "LISTEN_FDS is set but fd 3 is not a listening TCP socket",
        ));
    }
    Ok((bind(bind_addr)?, ListenerSource::Bound))
}

/// Binds a listening socket with a sized backlog, non-blocking.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Sends states to systemd when `NOTIFY_SOCKET` is set; errors are logged, never fatal.
pub fn notify(states: &[NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}

/// Sets the one-line status `systemctl status` and `boltlinkctl status` show (`STATUS=`).
pub fn notify_status(line: &str) {
    notify(&[NotifyState::Status(line)]);
}

/// The interval systemd expects `WATCHDOG=1` within (`WatchdogSec=` of the unit), when the
/// watchdog is enabled for this process: `WATCHDOG_USEC` is set and `WATCHDOG_PID`, if
/// present, is our pid (a child inheriting the variables must not think it is supervised).
/// Reads the environment without changing it, so it is safe from any thread.
pub fn watchdog_interval() -> Option<Duration> {
    watchdog_interval_from(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

fn watchdog_interval_from(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|u| *u > 0)?;
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok() != Some(own_pid) {
            return None;
        }
    }
    Some(Duration::from_micros(usec))
}

/// Sends `WATCHDOG=1`.
pub fn notify_watchdog() {
    notify(&[NotifyState::Watchdog]);
}

/// When a main loop last went round, for a watchdog probe to check that it still does (the
/// worker's and aggregator's consume loops).
#[derive(Debug)]
pub struct LoopHeartbeat {
    /// Reference point for `last_beat_ms`.
    origin: std::time::Instant,
    /// Milliseconds after `origin` of the last turn.
    last_beat_ms: AtomicU64,
}

impl Default for LoopHeartbeat {
    fn default() -> Self {
        Self::new()
    }
}

impl LoopHeartbeat {
    /// Counts as a turn: a loop that is just being started has not had its chance yet.
    pub fn new() -> Self {
        Self {
            origin: std::time::Instant::now(),
            last_beat_ms: AtomicU64::new(0),
        }
    }

    /// Called by the loop on every turn (cheap: one relaxed atomic store).
    pub fn beat(&self) {
        self.last_beat_ms
            .store(self.origin.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Time since the last turn.
    pub fn since_last_beat(&self) -> Duration {
        let last = Duration::from_millis(self.last_beat_ms.load(Ordering::Relaxed));
        self.origin.elapsed().saturating_sub(last)
    }

    /// A probe for [`run_watchdog`]: healthy while the loop went round within `grace`. Set
    /// `grace` above the longest legitimate turn (a blocking read's wait plus a slow write):
    /// a loop waiting on a slow dependency is not wedged, one stuck beyond it is. A stopped or
    /// blocked runtime fails anyway, since then the probe itself does not run.
    pub fn progress_probe(
        self: std::sync::Arc<Self>,
        grace: Duration,
    ) -> impl FnMut() -> std::future::Ready<Result<(), String>> + Send + 'static {
        move || {
            let since = self.since_last_beat();
            std::future::ready(if since <= grace {
                Ok(())
            } else {
                Err(format!(
                    "the main loop has not gone round for {} s (allowed: {} s)",
                    since.as_secs(),
                    grace.as_secs()
                ))
            })
        }
    }
}

/// Pings the systemd watchdog every `interval / 2` for as long as `probe` succeeds, until
/// `stop` resolves. A probe that fails or takes longer than a quarter of the interval skips
/// the ping (and is logged), so a wedged process stops pinging and systemd restarts it after
/// `WatchdogSec=`. Returns at once when `interval` is `None` (no watchdog configured).
///
/// ```no_run
/// # async fn demo(stop: impl std::future::Future<Output = ()> + Send + 'static) {
/// use std::sync::Arc;
/// use boltlink::daemon::systemd::{run_watchdog, watchdog_interval, LoopHeartbeat};
/// let heartbeat = Arc::new(LoopHeartbeat::new());
/// // ... the consume loop calls heartbeat.beat() on every turn ...
/// let grace = std::time::Duration::from_secs(30);
/// tokio::spawn(run_watchdog(watchdog_interval(), heartbeat.clone().progress_probe(grace), stop));
/// # }
/// ```
pub async fn run_watchdog<P, F>(
    interval: Option<Duration>,
    probe: P,
    stop: impl Future<Output = ()>,
) where
    P: FnMut() -> F,
    F: Future<Output = Result<(), String>>,
{
    let Some(interval) = interval else {
        return;
    };
    watchdog_loop(interval, probe, notify_watchdog, stop).await;
}

/// [`run_watchdog`] with the ping passed in, so tests can count pings.
async fn watchdog_loop<P, F>(
    interval: Duration,
    mut probe: P,
    mut ping: impl FnMut(),
    stop: impl Future<Output = ()>,
) where
    P: FnMut() -> F,
    F: Future<Output = Result<(), String>>,
{
    let every = interval / 2;
    let probe_deadline = interval / 4;
    tokio::pin!(stop);
    let mut failing = false;
    loop {
        let verdict = tokio::select! {
            _ = &mut stop => return,
            v = tokio::time::timeout(probe_deadline, probe()) => match v {
                Ok(result) => result,
                Err(_) => Err(format!(
                    "the liveness probe did not answer within {} ms",
                    probe_deadline.as_millis()
                )),
            },
        };
        match verdict {
            Ok(()) => {
                if failing {
                    tracing::warn!("liveness probe healthy again: resuming watchdog pings");
                    failing = false;
                }
                ping();
            }
            Err(reason) => {
                if !failing {
                    tracing::error!(
                        reason = %reason,
                        watchdog.interval_ms = interval.as_millis() as u64,
                        "liveness probe failed: withholding watchdog pings; systemd restarts this process if it persists"
                    );
                    failing = true;
                }
            }
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// Refreshes `STATUS=` with `line()` every `every` until `stop` resolves. Does nothing
/// without `NOTIFY_SOCKET`.
pub async fn run_status_updates<L>(every: Duration, mut line: L, stop: impl Future<Output = ()>)
where
    L: FnMut() -> String,
{
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(every) => {}
        }
        notify_status(&line());
    }
}

/// Prepares `cmd` to receive `listener` as fd 3 with `LISTEN_FDS=1`, `LISTEN_PID` set to the
/// child's own pid and `LISTEN_FDNAMES`. A tiny `bash` wrapper does what systemd does between
/// fork and exec (move the fd to 3, learn its pid), so no unsafe `pre_exec` is needed.
/// The listener must outlive the spawn; it is made inheritable (no `FD_CLOEXEC`).
pub fn spawn_with_listener(
    listener: &TcpListener,
    program: &std::path::Path,
) -> std::io::Result<Command> {
    let sock = socket2::SockRef::from(listener);
    sock.set_cloexec(false)?;
    let fd = listener.as_raw_fd();
    // bash, not sh: dash only redirects single-digit descriptors.
    let mut cmd = Command::new("/bin/bash");
    cmd.arg("-c")
        .arg(
            "if [ \"$BL_LISTEN_FD\" != 3 ]; then eval \"exec 3<&$BL_LISTEN_FD $BL_LISTEN_FD<&-\"; fi; \
             unset BL_LISTEN_FD; LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=boltlink-api; \
             export LISTEN_PID LISTEN_FDS LISTEN_FDNAMES; exec \"$@\"",
        )
        .arg("boltlink-spawn")
        .arg(program)
        .env("BL_LISTEN_FD", fd.to_string());
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_interval_comes_from_watchdog_usec_for_our_own_pid_only() {
        assert_eq!(
            watchdog_interval_from(Some("10000000"), Some("42"), 42),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            watchdog_interval_from(Some("10000000"), None, 42),
            Some(Duration::from_secs(10))
        );
        // Inherited from a supervised parent: not ours.
        assert_eq!(
            watchdog_interval_from(Some("10000000"), Some("41"), 42),
            None
        );
        assert_eq!(watchdog_interval_from(None, Some("42"), 42), None);
        assert_eq!(watchdog_interval_from(Some("0"), None, 42), None);
        assert_eq!(watchdog_interval_from(Some("ten"), None, 42), None);
    }

    #[tokio::test]
    async fn a_loop_heartbeat_probe_fails_when_the_loop_stops_turning() {
        let heartbeat = std::sync::Arc::new(LoopHeartbeat::new());
        let mut probe = heartbeat.clone().progress_probe(Duration::from_millis(100));
        assert!(
            probe().await.is_ok(),
            "a loop just started counts as turning"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
        let err = probe()
            .await
            .expect_err("no turn for longer than the grace");
        assert!(err.contains("has not gone round"), "{err}");
        heartbeat.beat();
        assert!(probe().await.is_ok());
        assert!(probe().await.is_ok(), "still within the grace");
    }

    #[tokio::test]
    async fn the_watchdog_pings_only_while_the_probe_succeeds() {
        use std::sync::atomic::AtomicBool;
        use std::sync::Arc;
        let healthy = Arc::new(AtomicBool::new(true));
        let pings = Arc::new(AtomicU64::new(0));
        let stop = crate::daemon::Shutdown::new();
        let task = {
            let healthy = healthy.clone();
            let pings = pings.clone();
            let stop = stop.wait();
            tokio::spawn(async move {
                watchdog_loop(
                    Duration::from_millis(40),
                    move || {
                        let ok = healthy.load(Ordering::Relaxed);
                        std::future::ready(if ok {
                            Ok(())
                        } else {
                            Err("wedged".to_string())
                        })
                    },
                    move || {
                        pings.fetch_add(1, Ordering::Relaxed);
                    },
                    stop,
                )
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(150)).await;
        let while_healthy = pings.load(Ordering::Relaxed);
        assert!(
            while_healthy >= 3,
            "pinged {while_healthy} times in 150 ms at a 20 ms period"
        );
        healthy.store(false, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(30)).await;
        let at_wedge = pings.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(
            pings.load(Ordering::Relaxed),
            at_wedge,
            "no pings while the probe fails"
        );
        healthy.store(true, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(pings.load(Ordering::Relaxed) > at_wedge, "pings resume");
        stop.trigger();
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .expect("stops when asked")
            .expect("join");
    }

    #[tokio::test]
    async fn a_probe_that_hangs_counts_as_failed() {
        let pings = std::sync::Arc::new(AtomicU64::new(0));
        let counted = pings.clone();
        let run = watchdog_loop(
            Duration::from_millis(40),
            std::future::pending::<Result<(), String>>,
            move || {
                counted.fetch_add(1, Ordering::Relaxed);
            },
            tokio::time::sleep(Duration::from_millis(200)),
        );
        run.await;
        assert_eq!(pings.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn without_a_watchdog_run_watchdog_returns_at_once() {
        let probed = std::sync::atomic::AtomicBool::new(false);
        run_watchdog(
            None,
            || {
                probed.store(true, Ordering::Relaxed);
                std::future::ready(Ok(()))
            },
            std::future::pending::<()>(),
        )
        .await;
        assert!(!probed.load(Ordering::Relaxed));
    }
}

//! systemd integration: the only code that reads `LISTEN_FDS` or writes to `NOTIFY_SOCKET`.
//!
//! - [`take_listener`]: the socket systemd passed (socket activation) or one bound to
//!   `BIND_ADDR`. Must run in the synchronous `main`, before the runtime: `listenfd` clears
//!   `LISTEN_FDS`/`LISTEN_PID` from the environment, which is not thread-safe.
//! - [`notify`]: `READY=1`, `STOPPING=1`, `STATUS=`; no-ops without `NOTIFY_SOCKET`.
//! - [`spawn_with_listener`]: hands one listening socket to a child through the same
//!   `LISTEN_FDS` protocol, so `boltlinkctl run` and the tests start several API processes
//!   on one shared socket exactly as systemd does.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::process::Command;

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

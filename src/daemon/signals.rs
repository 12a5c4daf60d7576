//! Shutdown: one flag every task of a process can wait on, and the signals that raise it.
//! Servers and loops are handed a [`Shutdown`]; only [`wire_signals`] (called by
//! [`super::Daemon::main`]) connects it to SIGTERM and SIGINT, so tests trigger it by hand.

use std::sync::Arc;

use tokio::sync::watch;

/// A shutdown flag: cheap to clone, set once, awaited by any number of tasks.
#[derive(Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
    rx: watch::Receiver<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        let (tx, rx) = watch::channel(false);
        Self {
            tx: Arc::new(tx),
            rx,
        }
    }

    pub fn trigger(&self) {
        let _ = self.tx.send(true);
    }

    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    pub fn wait(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.rx.clone();
        async move {
            let _ = rx.wait_for(|v| *v).await;
        }
    }
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

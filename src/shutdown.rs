//! How `serve` is told to stop: SIGTERM (what orchestrators send) drains, SIGINT (Ctrl-C)
//! stops now, and a second SIGTERM cuts a drain short. Tests drive the same type through
//! [`Shutdown::channel`].

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

/// One request to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Keep serving through the drain window (`server.drain_seconds`) with `/readyz` at 503,
    /// then stop accepting and finish in-flight requests.
    Drain,
    /// Skip (the rest of) the drain window.
    Now,
}

/// The stream of stop requests `server::run` listens to.
pub struct Shutdown {
    requests: mpsc::UnboundedReceiver<Stop>,
}

impl Shutdown {
    /// A shutdown driven by hand (tests, embedding): send [`Stop`]s on the sender; dropping
    /// it counts as [`Stop::Now`].
    pub fn channel() -> (mpsc::UnboundedSender<Stop>, Self) {
        let (tx, requests) = mpsc::unbounded_channel();
        (tx, Self { requests })
    }

    /// SIGTERM → [`Stop::Drain`], SIGINT → [`Stop::Now`]. The handlers are installed before
    /// this returns, so a signal that arrives while the server starts is not lost.
    pub fn on_signals() -> std::io::Result<Self> {
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        let (tx, shutdown) = Self::channel();
        tokio::spawn(async move {
            loop {
                let stop = tokio::select! {
                    _ = terminate.recv() => Stop::Drain,
                    _ = interrupt.recv() => Stop::Now,
                };
                tracing::info!(?stop, "shutdown signal received");
                if tx.send(stop).is_err() {
                    return;
                }
            }
        });
        Ok(shutdown)
    }

    /// The next request to stop.
    pub async fn next(&mut self) -> Stop {
        self.requests.recv().await.unwrap_or(Stop::Now)
    }
}

//! The stop request of one command, handed to every task that must notice it (the streaming
//! loop, the sink waiting for the broker, the background tasks) as a parameter, never a global.
//!
//! A command is stopped by the future its caller passes (SIGINT/SIGTERM in the binary, a
//! oneshot in tests) or from inside, by a task that found a reason to stop (the slot watchdog).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A cloneable handle: every clone sees the same request, and the moment it was made, so all
/// the stages of a stop share one deadline.
#[derive(Debug, Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<Option<Instant>>>,
    rx: watch::Receiver<Option<Instant>>,
}

/// Listens to the caller's signal; stops listening when dropped.
#[derive(Debug)]
pub struct SignalListener(JoinHandle<()>);

impl Drop for SignalListener {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        let (tx, rx) = watch::channel(None);
        Shutdown {
            tx: Arc::new(tx),
            rx,
        }
    }
}

impl Shutdown {
    /// A handle that is requested when `signal` completes (or by [`Shutdown::request`]).
    pub fn on(signal: impl Future<Output = ()> + Send + 'static) -> (Shutdown, SignalListener) {
        let shutdown = Shutdown::default();
        let trigger = shutdown.clone();
        let listener = tokio::spawn(async move {
            signal.await;
            trigger.request();
        });
        (shutdown, SignalListener(listener))
    }

    /// Ask every holder to stop (the first request sets the deadline's start).
    pub fn request(&self) {
        self.tx.send_if_modified(|at| {
            let first = at.is_none();
            at.get_or_insert_with(Instant::now);
            first
        });
    }

    pub fn is_requested(&self) -> bool {
        self.rx.borrow().is_some()
    }

    /// When a stop requested so far must be over: `timeout` after the request.
    pub fn deadline(&self, timeout: Duration) -> Option<Instant> {
        self.rx.borrow().map(|at| at + timeout)
    }

    /// Completes once a stop was requested (at once if it already was).
    pub async fn requested(&mut self) {
        // The sender lives in `self`, so the channel cannot close before a request.
        let _ = self.rx.wait_for(Option::is_some).await;
    }
}

/// Sleep for `delay`; true when a stop was requested meanwhile (never, without a handle).
pub async fn sleep_or_stop(delay: Duration, stop: Option<&mut Shutdown>) -> bool {
    let Some(stop) = stop else {
        tokio::time::sleep(delay).await;
        return false;
    };
    tokio::select! {
        _ = tokio::time::sleep(delay) => stop.is_requested(),
        _ = stop.requested() => true,
    }
}

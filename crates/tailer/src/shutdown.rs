//! The stop request of one command, handed to every task that must notice it (the streaming
//! loop, the sink waiting for the broker, the background tasks) as a parameter, never a global.
//!
//! A command is stopped by the future its caller passes (SIGINT/SIGTERM in the binary, a
//! oneshot in tests) or from inside, by a task that found a reason to stop (the slot watchdog).

use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A cloneable handle: every clone sees the same request.
#[derive(Debug, Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
    rx: watch::Receiver<bool>,
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
        let (tx, rx) = watch::channel(false);
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

    /// Ask every holder to stop.
    pub fn request(&self) {
        self.tx.send_replace(true);
    }

    pub fn is_requested(&self) -> bool {
        *self.rx.borrow()
    }

    /// Completes once a stop was requested (at once if it already was).
    pub async fn requested(&mut self) {
        // The sender lives in `self`, so the channel cannot close before a request.
        let _ = self.rx.wait_for(|stop| *stop).await;
    }
}

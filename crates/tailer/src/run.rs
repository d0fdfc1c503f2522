//! `outbox-tailer run`: the relay's stream plus the background tasks beside it (slot watchdog,
//! replay window, metrics endpoint), all stopped by one [`Shutdown`].

use std::future::Future;
use std::sync::Arc;

use crate::background::publication_guard::{self, Ceiling};
use crate::background::{metrics_server, retention, watchdog};
use crate::config::TailerConfig;
use crate::error::TailerError;
use crate::metrics::{health, Metrics};
use crate::relay::pipeline::Stats;
use crate::relay::stream::stream_until;
use crate::shutdown::Shutdown;

/// Stream until `shutdown` completes (then finish the open transaction, wait for acks, confirm,
/// and return) or a fatal error. Transient errors reconnect with backoff and jitter.
///
/// With `metrics_addr` set, `/metrics`, `/healthz` and `/readyz` are served for as long as
/// this runs. The slot watchdog checks the slot every `slot_check_interval`; when it finds
/// the slot invalidated, the tailer stops like on shutdown and returns
/// [`TailerError::SlotInvalidated`] with the recovery steps.
pub async fn run(
    config: TailerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Stats, TailerError> {
    let metrics = Arc::new(Metrics::new());
    let limits = metrics_server::ProbeLimits {
        ready_max_stall: config.ready_max_stall,
        wedged_after: health::wedged_after(config.status_interval),
    };
    let _server = match config.metrics_addr {
        Some(addr) => Some(metrics_server::serve(addr, Arc::clone(&metrics), limits).await?),
        None => None,
    };
    let (mut stop, _signal) = Shutdown::on(shutdown);
    let watchdog = {
        let (source, thresholds, interval) = (
            config.source.clone(),
            config.thresholds,
            config.slot_check_interval,
        );
        let metrics = Arc::clone(&metrics);
        let stop = stop.clone();
        tokio::spawn(async move {
            let reason = watchdog::watch(source, thresholds, interval, Arc::clone(&metrics)).await;
            tracing::error!(reason = %reason, "slot invalidated, stopping");
            // Counted now, not at the end: a scrape during the stop can still see it.
            metrics.error("slot_invalidated");
            stop.request();
            reason
        })
    };
    let ceiling = Ceiling::closed();
    let guard = {
        let (source, interval) = (config.source.clone(), config.status_interval);
        let (ceiling, stop) = (ceiling.clone(), stop.clone());
        tokio::spawn(async move {
            let gone = publication_guard::guard(source, interval, ceiling).await;
            if let Some(e) = &gone {
                tracing::error!(error = %e, "publication changed, stopping");
                stop.request();
            }
            gone
        })
    };
    let trailing = tokio::spawn(retention::keep_trailing(
        config.source.clone(),
        config.replay_retention,
        config.slot_check_interval,
    ));
    let result = stream_until(&config, &mut stop, &metrics, &ceiling).await;
    trailing.abort();
    let publication_gone = if guard.is_finished() {
        guard.await.ok().flatten()
    } else {
        guard.abort();
        None
    };
    metrics.streaming.set(0);
    let invalidated = if watchdog.is_finished() {
        watchdog.await.ok()
    } else {
        watchdog.abort();
        None
    };
    // The watchdog's reason explains a stop it caused; an error of the tailer's own (preflight
    // refusing the lost slot before the watchdog's first check completed, say) speaks for itself.
    let result = match (invalidated, publication_gone, result) {
        (Some(reason), _, Ok(_)) => return Err(TailerError::SlotInvalidated(reason)),
        (_, Some(gone), Ok(_)) => Err(gone),
        (_, _, result) => result,
    };
    if let Err(e) = &result {
        metrics.error(e.kind());
    }
    result
}

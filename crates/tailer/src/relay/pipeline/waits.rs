//! Waiting in the pipeline: for the acks of what is in flight (at a stop or after a lost
//! stream), for a deadline, a shutdown, or the publication guard's ceiling to rise.

use std::time::Instant;

use super::Pipeline;
use crate::error::TailerError;
use crate::relay::sink::Sink;
use crate::relay::source::Source;
use crate::shutdown::Shutdown;

impl<K: Sink> Pipeline<K> {
    /// At a stop, nothing in flight: confirm everything acked (and committed), waiting by
    /// `deadline` for the publication guard to verify it first (PostgreSQL 18+), so a clean
    /// stop leaves nothing to re-send.
    pub async fn confirm_all<S: Source>(&mut self, source: &mut S, deadline: Instant) {
        let durable = self.durable();
        if let Some((ceiling, _)) = &self.ceiling {
            let verified = tokio::time::timeout_at(deadline.into(), ceiling.reach(durable)).await;
            if verified.is_err() {
                tracing::warn!(
                    "shutdown timeout before the publication check: the last events are sent \
                     again on restart"
                );
            }
        }
        let durable = self.tracker.durable();
        self.confirm(Some(source), durable);
    }

    /// Wait for acks until nothing is in flight, confirming as they come, or until `deadline`.
    /// Fails on a refused record. `source` is `None` when the connection is gone.
    pub async fn drain<S: Source>(
        &mut self,
        mut source: Option<&mut S>,
        deadline: Option<Instant>,
        stop: Option<&mut Shutdown>,
    ) -> Result<bool, TailerError> {
        let mut stop = stop;
        while self.tracker.in_flight_events() > 0 {
            let ack = tokio::select! {
                ack = self.acks.recv() => ack,
                _ = sleep_until(deadline) => return Ok(false),
                _ = stopped_or_pending(stop.as_deref_mut()) => return Ok(false),
            };
            let Some(ack) = ack else { return Ok(false) };
            self.on_ack(ack, source.as_deref_mut())?;
            self.update_in_flight();
        }
        Ok(true)
    }
}

pub(super) async fn ceiling_rose(
    ceiling: Option<&mut tokio::sync::watch::Receiver<u64>>,
) -> Result<(), tokio::sync::watch::error::RecvError> {
    match ceiling {
        Some(c) => c.changed().await,
        None => std::future::pending().await,
    }
}

pub(super) async fn stopped_or_pending(stop: Option<&mut Shutdown>) {
    match stop {
        Some(stop) => stop.requested().await,
        None => std::future::pending().await,
    }
}

pub(super) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

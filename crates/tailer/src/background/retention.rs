//! The replay window: a second slot (`--replay-slot`) that trails the live one by
//! `--replay-retention-secs`, so `replay` can re-publish events that were already confirmed.
//!
//! PostgreSQL never decodes a transaction committed before a slot's `confirmed_flush_lsn`, and
//! the live slot confirms within seconds. The replay slot is never streamed from; the running
//! tailer moves it forward with `pg_replication_slot_advance`: every check it notes the LSN it
//! has confirmed, and advances the replay slot to the newest LSN noted at least the retention
//! ago. It reads the live slot's `confirmed_flush_lsn` from the server, the durable truth.
//! Everything committed after that moment stays replayable; the cost is the WAL (and
//! catalog rows) the slot holds back, which `status` shows like for the live slot.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use pgoutput::Lsn;

use crate::config::SourceConfig;
use crate::pg::slots;

/// Confirmed positions noted over time; which one is old enough to advance to.
#[derive(Debug, Default)]
pub struct Trail {
    noted: VecDeque<(Instant, Lsn)>,
}

impl Trail {
    /// Note that everything below `lsn` was confirmed by `at`.
    pub fn note(&mut self, at: Instant, lsn: Lsn) {
        if self.noted.back().is_none_or(|&(_, last)| lsn > last) {
            self.noted.push_back((at, lsn));
        }
    }

    /// The newest LSN confirmed at least `retention` before `now` (forgetting older ones).
    pub fn due(&mut self, now: Instant, retention: Duration) -> Option<Lsn> {
        let mut due = None;
        while let Some(&(at, lsn)) = self.noted.front() {
            if now.duration_since(at) < retention {
                break;
            }
            due = Some(lsn);
            self.noted.pop_front();
        }
        due
    }
}

/// Keep the replay slot trailing until the task is aborted. Failures are logged and retried
/// at the next check: the replay window never stops the tailer.
pub async fn keep_trailing(config: SourceConfig, retention: Duration, interval: Duration) {
    let Some(replay) = config.replay_slot.clone() else {
        return;
    };
    let mut trail = Trail::default();
    let mut ticker = tokio::time::interval(interval);
    loop {
        ticker.tick().await;
        let advanced = async {
            let client = crate::pg::connect::connect(&config).await?;
            let now = Instant::now();
            if let Some(live) = slots::slot_info(&client, &config.slot).await? {
                trail.note(now, live.confirmed_flush_lsn);
            }
            match trail.due(now, retention) {
                Some(to) => slots::advance(&client, &replay, to).await.map(Some),
                None => Ok(None),
            }
        }
        .await;
        match advanced {
            Ok(Some(at)) => tracing::debug!(slot = %replay, at = %at, "replay slot advanced"),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(slot = %replay, error = %e, "cannot advance the replay slot; retrying at the next check")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trails_by_the_retention() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut trail = Trail::default();
        trail.note(t0, Lsn::new(10));
        trail.note(t0 + s(1), Lsn::new(20));
        trail.note(t0 + s(2), Lsn::new(20));
        trail.note(t0 + s(3), Lsn::new(30));
        assert_eq!(trail.due(t0 + s(5), s(10)), None, "nothing is old enough");
        assert_eq!(trail.due(t0 + s(11), s(10)), Some(Lsn::new(20)));
        assert_eq!(trail.due(t0 + s(12), s(10)), None, "already advanced to 20");
        assert_eq!(trail.due(t0 + s(13), s(10)), Some(Lsn::new(30)));
    }
}

//! What `/healthz` decides from: is the relay's loop still turning?
//!
//! ```text
//!   Pipeline::stream ──turn()──▶ Heartbeat ◀──since_last_turn()── /healthz
//!        (every source event, ack and commit, and every IDLE_TURN while nothing happens)
//! ```
//!
//! The loop wakes up every [`IDLE_TURN`] even with no traffic, so an idle tailer keeps beating.
//! A step inside the loop that does not finish stops the beat: a lost wakeup, a call that
//! blocks, a hand-over waiting for room in librdkafka's queue while the broker is gone. After
//! [`wedged_after`] without a turn the tailer is *wedged*, and `/healthz` answers 503.
//!
//! Only the streaming loop beats. While the tailer waits for PostgreSQL, backs off before a
//! reconnect or drains at a stop, the heartbeat rests and `/healthz` answers 200 (`/readyz`
//! does not): a restart would not bring the server back.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the loop turns while nothing happens.
pub const IDLE_TURN: Duration = Duration::from_millis(250);

/// Status intervals without a turn after which the loop counts as wedged.
const WEDGED_AFTER_STATUS_INTERVALS: u32 = 60;

/// The shortest limit, whatever the status interval: many idle turns, so a busy machine's
/// scheduling hiccup is never taken for a wedge.
const WEDGED_AFTER_AT_LEAST: Duration = Duration::from_secs(2);

/// How long the loop may go without a turn before `/healthz` fails: 60 status intervals
/// (`--status-interval-ms`; 60 s by default), at least 2 s.
pub fn wedged_after(status_interval: Duration) -> Duration {
    status_interval
        .saturating_mul(WEDGED_AFTER_STATUS_INTERVALS)
        .max(WEDGED_AFTER_AT_LEAST)
}

/// The liveness rule: alive while the loop is not running (`None`) or turned within
/// `wedged_after`; the reason otherwise.
pub fn liveness(since_last_turn: Option<Duration>, wedged_after: Duration) -> Result<(), String> {
    match since_last_turn {
        Some(since) if since > wedged_after => Err(format!(
            "wedged: the relay loop has not turned for {:.1}s (limit {}s)",
            since.as_secs_f64(),
            wedged_after.as_secs_f64()
        )),
        _ => Ok(()),
    }
}

/// When the relay loop last turned; shared by the loop and the HTTP endpoint.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    inner: Arc<Beat>,
}

#[derive(Debug)]
struct Beat {
    /// The monotonic clock's origin: a wall-clock step must not look like a wedge.
    origin: Instant,
    /// µs after `origin` of the last turn; [`NOT_RUNNING`] while the loop is not running.
    last_turn: AtomicI64,
}

const NOT_RUNNING: i64 = i64::MIN;

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat {
            inner: Arc::new(Beat {
                origin: Instant::now(),
                last_turn: AtomicI64::new(NOT_RUNNING),
            }),
        }
    }
}

impl Heartbeat {
    /// The loop starts: it beats until the returned guard is dropped.
    pub fn enter(&self) -> InLoop {
        let in_loop = InLoop(self.clone());
        in_loop.turn();
        in_loop
    }

    /// Time since the loop last turned; `None` while it is not running.
    pub fn since_last_turn(&self) -> Option<Duration> {
        let last = self.inner.last_turn.load(Ordering::Relaxed);
        if last == NOT_RUNNING {
            return None;
        }
        let since = self.micros_now().saturating_sub(last).max(0);
        Some(Duration::from_micros(since.unsigned_abs()))
    }

    fn micros_now(&self) -> i64 {
        i64::try_from(self.inner.origin.elapsed().as_micros()).unwrap_or(i64::MAX)
    }

    /// Pretend the last turn was `ago` (tests of the rule and of `/healthz`).
    #[cfg(test)]
    pub(crate) fn turned_ago(&self, ago: Duration) {
        let ago = i64::try_from(ago.as_micros()).unwrap_or(i64::MAX);
        let at = self.micros_now().saturating_sub(ago).max(NOT_RUNNING + 1);
        self.inner.last_turn.store(at, Ordering::Relaxed);
    }
}

/// The relay loop is running; dropping this (leaving the loop, on any path) rests the beat.
#[derive(Debug)]
pub struct InLoop(Heartbeat);

impl InLoop {
    /// One turn of the loop.
    pub fn turn(&self) {
        let now = self.0.micros_now();
        self.0.inner.last_turn.store(now, Ordering::Relaxed);
    }
}

impl Drop for InLoop {
    fn drop(&mut self) {
        self.0.inner.last_turn.store(NOT_RUNNING, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wedged_after_is_sixty_status_intervals_and_at_least_two_seconds() {
        assert_eq!(
            wedged_after(Duration::from_secs(1)),
            Duration::from_secs(60)
        );
        assert_eq!(
            wedged_after(Duration::from_secs(10)),
            Duration::from_secs(600)
        );
        assert_eq!(
            wedged_after(Duration::from_millis(10)),
            Duration::from_secs(2)
        );
        assert!(wedged_after(Duration::from_millis(1)) > IDLE_TURN * 4);
    }

    #[test]
    fn liveness_fails_only_when_the_running_loop_stopped_turning() {
        let limit = Duration::from_secs(60);
        assert!(liveness(None, limit).is_ok(), "not streaming is not wedged");
        assert!(liveness(Some(Duration::ZERO), limit).is_ok());
        assert!(
            liveness(Some(limit), limit).is_ok(),
            "the limit itself is fine"
        );
        let reason = liveness(Some(Duration::from_secs(75)), limit).unwrap_err();
        assert!(reason.contains("not turned for 75.0s"), "{reason}");
        assert!(reason.contains("limit 60s"), "{reason}");
    }

    #[test]
    fn the_beat_rests_when_the_loop_is_left() {
        let heartbeat = Heartbeat::default();
        assert_eq!(heartbeat.since_last_turn(), None);
        let in_loop = heartbeat.enter();
        assert!(heartbeat.since_last_turn().unwrap() < Duration::from_secs(1));
        heartbeat.turned_ago(Duration::from_secs(90));
        assert!(heartbeat.since_last_turn().unwrap() >= Duration::from_secs(90));
        in_loop.turn();
        assert!(heartbeat.since_last_turn().unwrap() < Duration::from_secs(1));
        drop(in_loop);
        assert_eq!(heartbeat.since_last_turn(), None);
    }
}

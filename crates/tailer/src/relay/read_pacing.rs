//! Reading the replication stream in large pieces while it is far behind.
//!
//! The walsender writes every message as soon as it has decoded it. A tailer that keeps pace
//! with it reads each piece as it lands, a few messages per wake-up: on the 1M-event drain that
//! was ~0.8 system calls per event and a context switch per ten, most of the tailer's kernel
//! time (docs/benchmarks.md, "Round two"). While the walsender is sending transactions that
//! committed more than [`BEHIND`] ago, nobody is waiting for the next message, so when the
//! socket has nothing left the source holds off reading for a moment (`--catch-up-pause-ms`)
//! and lets the stream pile up in the kernel's buffer; the next read takes it in one piece.
//!
//! "Behind" is measured on the server's clock alone (the send time in each `XLogData` header
//! against the commit time of the transaction it belongs to), so clock skew between the hosts
//! does not matter. A keepalive means the walsender had nothing to send: pacing stops until
//! data shows it behind again. A live stream is never paced: its lag is the commit-to-send
//! time of one transaction, milliseconds.

use std::time::Duration;

use prometheus::IntCounter;

/// How far behind the walsender must be (send time minus commit time) before reads are paced.
pub const BEHIND: Duration = Duration::from_millis(100);

/// What the stream said about its lag, and how long to hold off reading while it is behind.
#[derive(Debug, Clone, Default)]
pub struct ReadPacing {
    /// Zero: never hold off.
    pause: Duration,
    /// Counts the pauses (`outbox_tailer_catch_up_pauses_total`).
    pauses: Option<IntCounter>,
    /// Commit time of the transaction being received (server clock, PostgreSQL micros).
    commit_us: Option<i64>,
    behind: bool,
}

impl ReadPacing {
    /// Hold off reading for `pause` (zero: never) while behind, counting each in `pauses`.
    pub fn new(pause: Duration, pauses: Option<IntCounter>) -> ReadPacing {
        ReadPacing {
            pause,
            pauses,
            ..ReadPacing::default()
        }
    }

    /// A transaction begins; it committed at `commit_us`.
    pub fn begin(&mut self, commit_us: i64) {
        self.commit_us = Some(commit_us);
    }

    /// A message of the current transaction, sent by the server at `sent_us`.
    pub fn data(&mut self, sent_us: i64) {
        if let Some(commit_us) = self.commit_us {
            self.behind = sent_us.saturating_sub(commit_us) > BEHIND.as_micros() as i64;
        }
    }

    /// The walsender had nothing else to send.
    pub fn keepalive(&mut self) {
        self.behind = false;
    }

    /// How long to let the stream pile up once the socket is empty; `None`: read at once.
    pub fn pause(&self) -> Option<Duration> {
        (self.behind && !self.pause.is_zero()).then_some(self.pause)
    }

    /// A pause was taken.
    pub fn paused(&self) {
        if let Some(pauses) = &self.pauses {
            pauses.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_000;
    const PAUSE: Duration = Duration::from_millis(2);

    #[test]
    fn a_live_stream_is_read_at_once() {
        let mut p = ReadPacing::new(PAUSE, None);
        assert_eq!(p.pause(), None, "nothing received yet");
        p.begin(1_000 * MS);
        p.data(1_000 * MS + 3 * MS);
        assert_eq!(p.pause(), None);
    }

    #[test]
    fn a_stream_far_behind_is_paced_until_a_keepalive() {
        let mut p = ReadPacing::new(PAUSE, None);
        p.begin(1_000 * MS);
        p.data(1_000 * MS + 150 * MS);
        assert_eq!(p.pause(), Some(PAUSE));
        // The next transaction is still old: still paced, also across its Begin.
        p.begin(1_010 * MS);
        assert_eq!(p.pause(), Some(PAUSE));
        p.data(1_200 * MS);
        assert_eq!(p.pause(), Some(PAUSE));
        p.keepalive();
        assert_eq!(p.pause(), None, "the walsender caught up");
    }

    #[test]
    fn catching_up_ends_when_a_transaction_arrives_fresh() {
        let mut p = ReadPacing::new(PAUSE, None);
        p.begin(0);
        p.data(5_000 * MS);
        assert!(p.pause().is_some());
        p.begin(5_000 * MS);
        p.data(5_000 * MS + 2 * MS);
        assert_eq!(p.pause(), None);
    }

    #[test]
    fn a_zero_pause_never_paces() {
        let mut p = ReadPacing::new(Duration::ZERO, None);
        p.begin(0);
        p.data(5_000 * MS);
        assert_eq!(p.pause(), None);
    }

    #[test]
    fn pauses_are_counted() {
        let counter = IntCounter::new("pauses", "pauses").unwrap();
        let p = ReadPacing::new(PAUSE, Some(counter.clone()));
        p.paused();
        p.paused();
        assert_eq!(counter.get(), 2);
    }

    #[test]
    fn data_outside_a_transaction_changes_nothing() {
        let mut p = ReadPacing::new(PAUSE, None);
        p.data(i64::MAX);
        assert_eq!(p.pause(), None);
    }
}

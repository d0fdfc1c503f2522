//! Sending at once when the stream is light, batching when it is not.
//!
//! librdkafka holds each record up to `linger.ms` so that the next ones share its produce
//! request: the right trade under load, and pure waiting when a lone event arrives. So when
//! the source has nothing more queued (the pipeline calls [`SendNow::idle`]) and records arrive
//! slower than `--send-at-once-below` events per second, a helper thread asks librdkafka to send
//! what it holds now. Above that rate records batch for the linger as before: sending each
//! transaction at once costs a produce request per partition it touches, and on two cores
//! those requests cost more latency than the linger saves (docs/benchmarks.md, "Round two").
//! Like Nagle's rule, one "send now" is in flight at a time; a drain never waits on the
//! source, so it always batches.
//!
//! librdkafka's only "ignore the linger" switch is `rd_kafka_flush`: while a call waits, its
//! broker threads treat the linger as over. The rdkafka crate's own `flush` waits zero
//! milliseconds per call (the switch is off again before a broker thread wakes up to read it),
//! so the helper calls librdkafka directly and waits until what it holds is delivered, or one
//! linger at most (the time those records would have waited anyway; the first records after a
//! start wait there for the connection). That call is the one `unsafe` block of the
//! workspace.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::producer::{Producer as _, ProducerContext, ThreadedProducer};

/// The span over which the arrival rate is counted.
const WINDOW: Duration = Duration::from_millis(10);

/// The pipeline's side: Nagle's count, the arrival rate, and the helper thread's wake-up.
#[derive(Debug)]
pub struct SendNow {
    /// `None` only while dropping: closing it ends the helper thread.
    wake: Option<SyncSender<()>>,
    /// The helper thread, joined on drop so that the producer it shares is destroyed with the
    /// sink, not later on the helper (when the broker may already be gone).
    helper: Option<JoinHandle<()>>,
    /// Records whose delivery report came back (counted by the producer's context).
    delivered: Arc<AtomicU64>,
    /// Records handed to the producer.
    handed: u64,
    /// `handed` at the last "send now".
    nudged: u64,
    rate: ArrivalRate,
}

impl SendNow {
    /// Start the helper thread for `producer`, whose context counts deliveries in
    /// `delivered`; `None` when `below` (events per second) is 0.
    pub fn start<C: ProducerContext + 'static>(
        producer: Arc<ThreadedProducer<C>>,
        delivered: Arc<AtomicU64>,
        below: u64,
        linger: Duration,
    ) -> std::io::Result<Option<SendNow>> {
        if below == 0 {
            return Ok(None);
        }
        // One pending wake-up is enough: the helper sends everything held when it runs.
        let (wake, rx) = sync_channel(1);
        let wait_ms = i32::try_from(linger.as_millis()).unwrap_or(i32::MAX).max(1);
        let helper = std::thread::Builder::new()
            .name("send-now".into())
            .spawn(move || run(&producer, &rx, wait_ms))?;
        Ok(Some(SendNow {
            wake: Some(wake),
            helper: Some(helper),
            delivered,
            handed: 0,
            nudged: 0,
            rate: ArrivalRate::new(below, Instant::now()),
        }))
    }

    /// A record went to the producer.
    pub fn handed_over(&mut self) {
        self.handed += 1;
    }

    /// The source has nothing queued: send what the producer holds if the stream is light and
    /// the previous "send now" is acked (otherwise these records batch, as under load).
    pub fn idle(&mut self) {
        if self.handed == self.nudged || self.delivered.load(Ordering::Relaxed) < self.nudged {
            return;
        }
        if !self.rate.light(self.handed, Instant::now()) {
            return;
        }
        self.nudged = self.handed;
        // Full: a wake-up is already pending, and it sends these too.
        if let Some(wake) = &self.wake {
            let _ = wake.try_send(());
        }
    }
}

impl Drop for SendNow {
    fn drop(&mut self) {
        drop(self.wake.take());
        if let Some(helper) = self.helper.take() {
            let _ = helper.join();
        }
    }
}

/// Records handed over per [`WINDOW`], counted at the moments the source is idle.
#[derive(Debug)]
struct ArrivalRate {
    /// Events per second for a light stream.
    below: u64,
    /// Most records in the current window for a light stream.
    per_window: u64,
    window_start: Instant,
    /// Records handed over when the current window started.
    at_window: u64,
    /// The stream was above the rate over the previous window.
    was_busy: bool,
}

impl ArrivalRate {
    fn new(below: u64, now: Instant) -> ArrivalRate {
        let window_ms = u64::try_from(WINDOW.as_millis()).unwrap_or(u64::MAX);
        ArrivalRate {
            below,
            per_window: (below.saturating_mul(window_ms) / 1000).max(1),
            window_start: now,
            at_window: 0,
            was_busy: false,
        }
    }

    /// Neither the current window nor the previous one had more records than the light rate
    /// allows (`handed` is the running count). A window lasts until the first idle moment
    /// [`WINDOW`] after its start, so the previous one's rate is its count over its length: a
    /// quiet spell followed by one large transaction is light, a backlog read without an idle
    /// moment is not.
    fn light(&mut self, handed: u64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= WINDOW {
            let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
            let count = handed - self.at_window;
            self.was_busy = count.saturating_mul(1_000_000) > self.below.saturating_mul(us);
            self.at_window = handed;
            self.window_start = now;
        }
        !self.was_busy && handed - self.at_window <= self.per_window
    }
}

/// Until the sink (and with it the sender) is dropped.
fn run<C: ProducerContext>(producer: &ThreadedProducer<C>, wake: &Receiver<()>, wait_ms: i32) {
    while wake.recv().is_ok() {
        send_held(producer, wait_ms);
    }
}

#[allow(unsafe_code)]
fn send_held<C: ProducerContext>(producer: &ThreadedProducer<C>, wait_ms: i32) {
    let rk = producer.client().native_ptr();
    // SAFETY: `rk` is the handle of a producer borrowed for the whole call, so it stays valid.
    // `rd_kafka_flush` may be called from any thread. The rdkafka crate asks for delivery
    // reports as events, so this call only waits (it polls nothing, and no report is taken
    // from the producer's own polling thread). Its result (records still in flight after
    // `wait_ms`) is expected and carries no error.
    let _ = unsafe { rdkafka::bindings::rd_kafka_flush(rk, wait_ms) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(start: Instant, n: u64) -> Instant {
        start + Duration::from_millis(n)
    }

    #[test]
    fn a_stream_below_the_rate_is_light() {
        let t0 = Instant::now();
        // 2,000 events/s: 20 records per 10 ms window.
        let mut rate = ArrivalRate::new(2_000, t0);
        // 1,000 events/s, one record per millisecond, for a second.
        for i in 1..=1_000 {
            assert!(rate.light(i, ms(t0, i)), "record {i}");
        }
    }

    #[test]
    fn a_stream_above_the_rate_is_not_light_and_becomes_light_when_it_slows() {
        let t0 = Instant::now();
        let mut rate = ArrivalRate::new(2_000, t0);
        // 10,000 events/s in 10-event transactions: 10 records per millisecond.
        let mut handed = 0;
        let mut light = Vec::new();
        for i in 1..=100 {
            handed += 10;
            light.push(rate.light(handed, ms(t0, i)));
        }
        assert!(
            light[..2].iter().all(|l| *l),
            "the first 20 records are within the budget"
        );
        assert!(
            !light[2..].iter().any(|l| *l),
            "then the stream is busy: {light:?}"
        );
        // Then one record per millisecond: busy while the last busy window is the previous one.
        let mut after = Vec::new();
        for i in 101..=130 {
            handed += 1;
            after.push(rate.light(handed, ms(t0, i)));
        }
        assert!(
            !after[0],
            "the window of the busy stream is still the current one"
        );
        assert!(
            after[25..].iter().all(|l| *l),
            "two windows later it is light: {after:?}"
        );
    }

    #[test]
    fn one_large_transaction_after_a_quiet_spell_is_sent_at_once() {
        let t0 = Instant::now();
        let mut rate = ArrivalRate::new(2_000, t0);
        assert!(rate.light(1, ms(t0, 1)));
        // A second later, 1,000 records of one transaction, handed over before the source
        // went idle again: sent at once.
        assert!(rate.light(1_001, ms(t0, 1_001)));
        // Another 1,000 right behind them are a busy stream.
        assert!(!rate.light(2_001, ms(t0, 1_002)));
    }

    #[test]
    fn a_backlog_read_without_an_idle_moment_is_busy() {
        let t0 = Instant::now();
        let mut rate = ArrivalRate::new(2_000, t0);
        // 10,000 records over 50 ms, the source idle only at the end.
        assert!(!rate.light(10_000, ms(t0, 50)));
        // A lone record right after is still judged by that window.
        assert!(!rate.light(10_001, ms(t0, 52)));
    }

    #[test]
    fn the_lowest_rate_still_lets_one_record_per_window_through() {
        let t0 = Instant::now();
        let mut rate = ArrivalRate::new(1, t0);
        assert!(rate.light(1, ms(t0, 0)));
        assert!(!rate.light(2, ms(t0, 1)));
    }
}

//! Which LSN may be confirmed to PostgreSQL: the ack tracker.
//!
//! ```text
//!   received in commit order ─▶ [T1 closed, 0 pending][T2 closed, 3 pending][T3 open, 5 pending]
//!                                 └─ head                                      └─ tail
//!   durable = end_lsn of the longest prefix of closed transactions with nothing pending
//! ```
//!
//! Invariants (the correctness argument of docs/architecture.md):
//! - `durable` only ever takes a `Commit.end_lsn` whose transaction and every earlier one are
//!   fully acked, or a keepalive LSN while nothing at all is open or pending;
//! - `durable` never decreases.
//!
//! Acks arrive out of order across partitions; a transaction is identified by its sequence
//! number, assigned in commit order.

use std::collections::VecDeque;
use std::time::Instant;

use pgoutput::Lsn;

/// One event in this many of a transaction is timed for the publish latency metric.
pub const TIMED_EVERY: u64 = 16;

/// What an ack refers to: the transaction (by sequence number) and the bytes it held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    pub txn: u64,
    pub bytes: u32,
    /// When the event was handed to the sink, for the publish latency metric: taken for the
    /// first event of each transaction and every [`TIMED_EVERY`]th after it (two clock reads
    /// per event were 3 % of the relay's CPU on a drain).
    pub handed_over: Option<Instant>,
}

#[derive(Debug)]
struct Entry {
    /// `Commit.end_lsn`, once the Commit arrived.
    end_lsn: Option<Lsn>,
    pending: u64,
    /// Events ever published in this transaction.
    published: u64,
    /// The stream broke before its Commit: it will be re-sent whole, so it never confirms.
    abandoned: bool,
}

/// Tracks published-but-unacked events per transaction and the confirmable LSN.
#[derive(Debug)]
pub struct AckTracker {
    head_seq: u64,
    entries: VecDeque<Entry>,
    open: bool,
    durable: Lsn,
    in_flight_events: u64,
    in_flight_bytes: u64,
}

impl AckTracker {
    /// A tracker whose durable position starts at `start` (what the slot already confirmed).
    pub fn new(start: Lsn) -> Self {
        AckTracker {
            head_seq: 0,
            entries: VecDeque::new(),
            open: false,
            durable: start,
            in_flight_events: 0,
            in_flight_bytes: 0,
        }
    }

    /// A transaction's Begin arrived. The assembler refuses a Begin inside a transaction, so
    /// none is open here.
    pub fn begin(&mut self) {
        debug_assert!(!self.open, "Begin inside an open transaction");
        self.entries.push_back(Entry {
            end_lsn: None,
            pending: 0,
            published: 0,
            abandoned: false,
        });
        self.open = true;
    }

    /// An event of the open transaction is being published; returns its ticket.
    pub fn publish(&mut self, bytes: u32) -> Option<Ticket> {
        if !self.open {
            return None;
        }
        let seq = self.head_seq + self.entries.len() as u64 - 1;
        let entry = self.entries.back_mut()?;
        let timed = entry.published % TIMED_EVERY == 0;
        entry.pending += 1;
        entry.published += 1;
        self.in_flight_events += 1;
        self.in_flight_bytes += u64::from(bytes);
        Some(Ticket {
            txn: seq,
            bytes,
            handed_over: timed.then(Instant::now),
        })
    }

    /// The hand-over of `ticket` failed: it will never be acked, so stop waiting for it. The
    /// transaction does not confirm either way (the tailer stops or abandons it).
    pub fn unpublish(&mut self, ticket: Ticket) {
        let Some(idx) = ticket.txn.checked_sub(self.head_seq) else {
            return;
        };
        let Some(entry) = usize::try_from(idx)
            .ok()
            .and_then(|i| self.entries.get_mut(i))
        else {
            return;
        };
        if entry.pending > 0 {
            entry.pending -= 1;
            entry.abandoned = true;
            self.in_flight_events = self.in_flight_events.saturating_sub(1);
            self.in_flight_bytes = self.in_flight_bytes.saturating_sub(u64::from(ticket.bytes));
        }
    }

    /// The open transaction's Commit arrived; returns a new durable LSN if it moved.
    pub fn commit(&mut self, end_lsn: Lsn) -> Option<Lsn> {
        if !self.open {
            return None;
        }
        self.open = false;
        if let Some(entry) = self.entries.back_mut() {
            entry.end_lsn = Some(end_lsn);
        }
        // A transaction without events that follows a committed one merges into it, so the
        // queue grows with transactions that hold events (bounded by the window), not with
        // every transaction received while an earlier ack is outstanding.
        let n = self.entries.len();
        if n >= 2 && self.entries[n - 1].published == 0 {
            let prev = &self.entries[n - 2];
            if prev.end_lsn.is_some() && !prev.abandoned {
                self.entries.pop_back();
                if let Some(prev) = self.entries.back_mut() {
                    prev.end_lsn = Some(end_lsn);
                }
            }
        }
        self.advance()
    }

    /// An event was acked; returns a new durable LSN if it moved.
    pub fn acked(&mut self, ticket: Ticket) -> Option<Lsn> {
        let idx = ticket.txn.checked_sub(self.head_seq)?;
        let entry = self.entries.get_mut(usize::try_from(idx).ok()?)?;
        if entry.pending == 0 {
            return None;
        }
        entry.pending -= 1;
        self.in_flight_events = self.in_flight_events.saturating_sub(1);
        self.in_flight_bytes = self.in_flight_bytes.saturating_sub(u64::from(ticket.bytes));
        self.advance()
    }

    /// A keepalive with the walsender's position: confirmable only when nothing is open or
    /// in flight. Returns a new durable LSN if it moved.
    pub fn keepalive(&mut self, wal_end: Lsn) -> Option<Lsn> {
        if self.open || !self.entries.is_empty() || wal_end <= self.durable {
            return None;
        }
        self.durable = wal_end;
        Some(wal_end)
    }

    /// The stream broke: the open transaction will be re-sent whole and must never confirm.
    pub fn abandon_open(&mut self) {
        if self.open {
            if let Some(entry) = self.entries.back_mut() {
                entry.abandoned = true;
            }
            self.open = false;
        }
        self.advance();
    }

    fn advance(&mut self) -> Option<Lsn> {
        let before = self.durable;
        while let Some(head) = self.entries.front() {
            let open_tail = self.open && self.entries.len() == 1;
            if head.pending > 0 || open_tail {
                break;
            }
            match (head.abandoned, head.end_lsn) {
                (true, _) => {}
                (false, Some(end)) => self.durable = self.durable.max(end),
                (false, None) => break,
            }
            self.entries.pop_front();
            self.head_seq += 1;
        }
        (self.durable > before).then_some(self.durable)
    }

    /// The open transaction has handed events over.
    pub fn open_has_events(&self) -> bool {
        self.open && self.entries.back().is_some_and(|e| e.published > 0)
    }

    /// Committed transactions still waiting for acks (or behind one that is).
    pub fn unconfirmed_transactions(&self) -> u64 {
        self.entries.len() as u64
    }

    /// Highest LSN such that every transaction committed up to it is acked.
    pub fn durable(&self) -> Lsn {
        self.durable
    }

    /// Nothing open, nothing waiting for an ack.
    pub fn is_idle(&self) -> bool {
        !self.open && self.entries.is_empty()
    }

    pub fn in_flight_events(&self) -> u64 {
        self.in_flight_events
    }

    pub fn in_flight_bytes(&self) -> u64 {
        self.in_flight_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lsn(n: u64) -> Lsn {
        Lsn::from(n)
    }

    #[test]
    fn confirms_end_lsn_only_after_all_acks() {
        let mut t = AckTracker::new(lsn(10));
        t.begin();
        let a = t.publish(1).unwrap();
        let b = t.publish(1).unwrap();
        assert_eq!(t.commit(lsn(100)), None);
        assert_eq!(t.acked(b), None);
        assert_eq!(t.acked(a), Some(lsn(100)));
        assert!(t.is_idle());
    }

    #[test]
    fn later_transaction_acked_first_waits_for_the_earlier() {
        let mut t = AckTracker::new(lsn(0));
        t.begin();
        let a = t.publish(1).unwrap();
        t.commit(lsn(100));
        t.begin();
        let b = t.publish(1).unwrap();
        t.commit(lsn(200));
        assert_eq!(t.acked(b), None);
        assert_eq!(t.durable(), lsn(0));
        assert_eq!(t.acked(a), Some(lsn(200)));
    }

    #[test]
    fn empty_transaction_confirms_at_commit() {
        let mut t = AckTracker::new(lsn(0));
        t.begin();
        assert_eq!(t.commit(lsn(50)), Some(lsn(50)));
    }

    #[test]
    fn keepalive_ignored_while_anything_is_in_flight() {
        let mut t = AckTracker::new(lsn(0));
        t.begin();
        let a = t.publish(1).unwrap();
        assert_eq!(t.keepalive(lsn(500)), None, "open transaction");
        t.commit(lsn(100));
        assert_eq!(t.keepalive(lsn(500)), None, "pending ack");
        assert_eq!(t.acked(a), Some(lsn(100)));
        assert_eq!(t.keepalive(lsn(500)), Some(lsn(500)));
        assert_eq!(t.keepalive(lsn(400)), None, "never backwards");
        assert_eq!(t.durable(), lsn(500));
    }

    #[test]
    fn abandoned_transaction_never_confirms() {
        let mut t = AckTracker::new(lsn(0));
        t.begin();
        let a = t.publish(1).unwrap();
        t.abandon_open();
        assert_eq!(t.acked(a), None);
        assert!(t.is_idle());
        assert_eq!(t.durable(), lsn(0));
    }

    #[test]
    fn empty_transactions_behind_an_unacked_one_do_not_grow_the_queue() {
        let mut t = AckTracker::new(lsn(0));
        t.begin();
        let a = t.publish(1).unwrap();
        t.commit(lsn(100));
        for i in 0..10_000u64 {
            t.begin();
            assert_eq!(
                t.commit(lsn(200 + i)),
                None,
                "nothing confirmed while A is unacked"
            );
        }
        assert_eq!(t.entries.len(), 1);
        assert_eq!(
            t.acked(a),
            Some(lsn(200 + 9_999)),
            "A and every empty one after it"
        );
    }

    #[test]
    fn in_flight_counts_follow_publish_and_ack() {
        let mut t = AckTracker::new(lsn(0));
        t.begin();
        let a = t.publish(300).unwrap();
        let b = t.publish(200).unwrap();
        assert_eq!((t.in_flight_events(), t.in_flight_bytes()), (2, 500));
        t.acked(a);
        t.acked(b);
        assert_eq!((t.in_flight_events(), t.in_flight_bytes()), (0, 0));
    }

    #[test]
    fn unknown_or_repeated_tickets_are_ignored() {
        let mut t = AckTracker::new(lsn(0));
        let stray = Ticket {
            txn: 7,
            bytes: 1,
            handed_over: None,
        };
        assert_eq!(t.acked(stray), None);
        t.begin();
        let a = t.publish(1).unwrap();
        t.commit(lsn(10));
        assert_eq!(t.acked(a), Some(lsn(10)));
        assert_eq!(t.acked(a), None);
    }

    proptest! {
        /// Any interleaving of acks: durable is monotonic, is always some committed end_lsn
        /// (or the start), and never passes a transaction with an unacked event.
        #[test]
        fn durable_is_a_fully_acked_prefix(
            sizes in proptest::collection::vec(0usize..4, 1..12),
            order in proptest::collection::vec(any::<prop::sample::Index>(), 0..64),
        ) {
            let mut t = AckTracker::new(lsn(0));
            let mut tickets = Vec::new();
            for (i, n) in sizes.iter().enumerate() {
                t.begin();
                for _ in 0..*n {
                    tickets.push((i, t.publish(1).unwrap()));
                }
                t.commit(lsn(100 * (i as u64 + 1)));
            }
            let mut acked = vec![0usize; sizes.len()];
            let mut last = t.durable();
            for idx in order {
                if tickets.is_empty() { break; }
                let (txn, ticket) = tickets.remove(idx.index(tickets.len()));
                acked[txn] += 1;
                t.acked(ticket);
                let d = t.durable();
                prop_assert!(d >= last);
                last = d;
                let confirmed_txns = (d.as_u64() / 100) as usize;
                for (k, size) in sizes.iter().enumerate().take(confirmed_txns) {
                    prop_assert_eq!(acked[k], *size, "txn {} confirmed with unacked events", k);
                }
            }
        }
    }
}

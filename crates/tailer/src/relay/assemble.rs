//! Assemble stage: source events in, outbox events placed in their transaction out.
//!
//! `run` (the pipeline) and `peek` both go through [`TxnAssembler`], so an event gets the same
//! position and index whichever of them reads it, and what `peek` shows is what `run` publishes:
//!
//! ```text
//!   Begin ─────────────────────────────▶ open at (commit LSN, xid, commit time)
//!   outbox Insert / message with prefix ─▶ event seq 0, 1, … of the open transaction
//!   Commit ────────────────────────────▶ close: Commit.end_lsn, confirmable once all acked
//!   non-transactional message ─────────▶ a one-event unit of its own at the message's LSN
//! ```
//!
//! A non-transactional message never commits, so its position carries no commit time: an
//! invented one (the time it was read) would differ between a peek and the run after it.

use bytes::Bytes;
use pgoutput::{Lsn, Message, PgTimestamp};

use crate::error::TailerError;
use crate::relay::decode::{Decoded, EventDecoder, OutboxRow};
use crate::relay::route::{Routed, Router, TxnPosition};
use crate::relay::source::SourceEvent;

/// One outbox event at its place in the stream, ready to route.
#[derive(Debug, Clone)]
pub struct OutboxEvent {
    pub row: OutboxRow,
    pub position: TxnPosition,
    /// Index among the events of its transaction (header `outbox-seq`).
    pub seq: u32,
    /// Why the event could not even be read: it is dead-lettered, or stops `run`.
    pub malformed: Option<String>,
}

impl OutboxEvent {
    /// The record `run` publishes for this event, or its dead-letter record; an error when it
    /// cannot be routed and there is no dead-letter topic.
    pub fn route(&self, router: &Router) -> Result<Routed, TailerError> {
        router.route_event(&self.row, &self.position, self.seq, self.malformed.clone())
    }
}

/// What one source event means for publishing.
#[derive(Debug)]
pub enum Step {
    /// Nothing to publish: schema, another table, another prefix, a keepalive.
    Skip,
    /// A transaction opened.
    Begin,
    /// An event of the open transaction.
    Event(OutboxEvent),
    /// A non-transactional message, a unit of its own: `end_lsn` is the end of its WAL
    /// record, so confirming it once acked skips exactly it.
    Standalone { event: OutboxEvent, end_lsn: Lsn },
    /// The open transaction committed: `end_lsn` may be confirmed once all its events are
    /// acked. No commit time when no transaction was open.
    Commit {
        end_lsn: Lsn,
        commit_time: Option<PgTimestamp>,
    },
}

#[derive(Debug)]
struct OpenTxn {
    position: TxnPosition,
    next_seq: u32,
}

/// Tracks the open transaction and turns source events into [`Step`]s.
#[derive(Debug)]
pub struct TxnAssembler {
    decoder: EventDecoder,
    message_prefix: Option<String>,
    open: Option<OpenTxn>,
}

impl TxnAssembler {
    /// `message_prefix`: also take logical decoding messages written with this prefix.
    pub fn new(decoder: EventDecoder, message_prefix: Option<String>) -> Self {
        TxnAssembler {
            decoder,
            message_prefix,
            open: None,
        }
    }

    pub fn set_message_prefix(&mut self, prefix: Option<String>) {
        self.message_prefix = prefix;
    }

    /// A transaction has begun and not yet committed.
    pub fn in_transaction(&self) -> bool {
        self.open.is_some()
    }

    /// Forget the open transaction: the stream broke or stops, it will be re-sent whole.
    pub fn abandon(&mut self) {
        self.open = None;
    }

    /// After a disconnect: forget relations too, PostgreSQL re-sends them before first use.
    pub fn reset(&mut self) {
        self.abandon();
        self.decoder.reset();
    }

    pub fn step(&mut self, event: SourceEvent) -> Result<Step, TailerError> {
        match event {
            SourceEvent::Begin {
                final_lsn,
                xid,
                commit_time,
            } => {
                // One stream sends whole transactions one after another; a Begin inside one
                // means the stream is not what the correctness argument assumes, and going on
                // would let the next Commit confirm past the unfinished transaction.
                if let Some(open) = &self.open {
                    return Err(TailerError::Bug(format!(
                        "a Begin (commit LSN {final_lsn}) arrived while the transaction with \
                         commit LSN {} was open: the replication stream broke protocol",
                        open.position.commit_lsn
                    )));
                }
                self.open = Some(OpenTxn {
                    position: TxnPosition {
                        commit_lsn: final_lsn,
                        xid,
                        commit_time: Some(commit_time),
                    },
                    next_seq: 0,
                });
                Ok(Step::Begin)
            }
            SourceEvent::Data(bytes) => match self.decoder.on_message(pgoutput::decode(&bytes)?)? {
                Decoded::Row(row) => self.in_open(row, None).map(Step::Event),
                Decoded::Nothing => Ok(Step::Skip),
            },
            SourceEvent::Commit { end_lsn, .. } => Ok(Step::Commit {
                end_lsn,
                commit_time: self.open.take().and_then(|t| t.position.commit_time),
            }),
            SourceEvent::Message {
                transactional,
                lsn,
                prefix,
                content,
            } => self.on_message(transactional, lsn, &prefix, &content),
            SourceEvent::Keepalive { .. } | SourceEvent::End => Ok(Step::Skip),
        }
    }

    fn on_message(
        &mut self,
        transactional: bool,
        lsn: Lsn,
        prefix: &str,
        content: &Bytes,
    ) -> Result<Step, TailerError> {
        if self.message_prefix.as_deref() != Some(prefix) {
            return Ok(Step::Skip);
        }
        let (row, malformed) = match self.decoder.on_logical_message(content) {
            Ok(row) => (row, None),
            Err((row, reason)) => (row, Some(reason)),
        };
        if transactional || self.open.is_some() {
            return self.in_open(row, malformed).map(Step::Event);
        }
        Ok(Step::Standalone {
            event: OutboxEvent {
                row,
                position: standalone_position(lsn),
                seq: 0,
                malformed,
            },
            end_lsn: lsn,
        })
    }

    /// The next event of the open transaction.
    fn in_open(
        &mut self,
        row: OutboxRow,
        malformed: Option<String>,
    ) -> Result<OutboxEvent, TailerError> {
        let Some(open) = self.open.as_mut() else {
            return Err(TailerError::Bug(
                "an outbox event arrived outside a transaction".into(),
            ));
        };
        let seq = open.next_seq;
        open.next_seq += 1;
        Ok(OutboxEvent {
            row,
            position: open.position,
            seq,
            malformed,
        })
    }
}

/// The position of a non-transactional message whose WAL record ends at `end`. PostgreSQL
/// reports the end, which is where the next record begins, and that may be the commit record
/// of a transaction (one that emitted the message itself, say), whose events are positioned
/// at their commit record's start. One byte before the end is no record's start (records are
/// 8-byte aligned), so the message's position is unique and sorts before that transaction's
/// events, as it is delivered before them.
fn standalone_position(end: Lsn) -> TxnPosition {
    TxnPosition {
        commit_lsn: Lsn::from(end.as_u64().saturating_sub(1)),
        xid: 0,
        commit_time: None,
    }
}

/// The source event for one pgoutput message as the slot SQL functions return it: the same
/// event the replication stream delivers for it.
pub fn event_from_pgoutput(data: Bytes) -> Result<SourceEvent, TailerError> {
    // Only these are decoded here; everything else is decoded once, by the assembler.
    if !matches!(data.first(), Some(b'B' | b'C' | b'M')) {
        return Ok(SourceEvent::Data(data));
    }
    Ok(match pgoutput::decode(&data)? {
        Message::Begin(b) => SourceEvent::Begin {
            final_lsn: b.final_lsn,
            xid: b.xid,
            commit_time: b.commit_time,
        },
        Message::Commit(c) => SourceEvent::Commit {
            commit_lsn: c.commit_lsn,
            end_lsn: c.end_lsn,
        },
        Message::LogicalMessage(m) => SourceEvent::Message {
            transactional: m.flags & 1 == 1,
            lsn: m.lsn,
            prefix: m.prefix,
            content: m.content,
        },
        _ => SourceEvent::Data(data),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RouteConfig;
    use crate::pg::names::TableName;

    fn assembler() -> TxnAssembler {
        let decoder = EventDecoder::new(
            TableName::parse("public.outbox").unwrap(),
            RouteConfig::default(),
        )
        .unwrap();
        TxnAssembler::new(decoder, Some("outbox".into()))
    }

    fn message(transactional: bool, lsn: u64, prefix: &str) -> SourceEvent {
        SourceEvent::Message {
            transactional,
            lsn: Lsn::from(lsn),
            prefix: prefix.into(),
            content: Bytes::from_static(
                b"{\"id\":\"m\",\"aggregatetype\":\"a\",\"aggregateid\":\"k\"}",
            ),
        }
    }

    fn begin(lsn: u64) -> SourceEvent {
        SourceEvent::Begin {
            final_lsn: Lsn::from(lsn),
            xid: 7,
            commit_time: PgTimestamp::from_unix_micros(5),
        }
    }

    fn event(step: Step) -> OutboxEvent {
        match step {
            Step::Event(e) | Step::Standalone { event: e, .. } => e,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    #[test]
    fn events_of_a_transaction_share_its_position_and_count_up() {
        let mut a = assembler();
        assert!(matches!(a.step(begin(100)).unwrap(), Step::Begin));
        let first = event(a.step(message(true, 90, "outbox")).unwrap());
        let second = event(a.step(message(true, 95, "outbox")).unwrap());
        assert_eq!((first.seq, second.seq), (0, 1));
        assert_eq!(first.position, second.position);
        assert_eq!(first.position.commit_lsn, Lsn::from(100));
        assert_eq!(
            first.position.commit_time,
            Some(PgTimestamp::from_unix_micros(5))
        );
        let commit = a
            .step(SourceEvent::Commit {
                commit_lsn: Lsn::from(100),
                end_lsn: Lsn::from(108),
            })
            .unwrap();
        assert!(matches!(
            commit,
            Step::Commit { end_lsn, commit_time: Some(_) } if end_lsn == Lsn::from(108)
        ));
        assert!(!a.in_transaction());
    }

    #[test]
    fn a_standalone_message_is_its_own_unit_without_a_commit_time() {
        let mut a = assembler();
        let step = a.step(message(false, 304, "outbox")).unwrap();
        assert!(
            matches!(step, Step::Standalone { end_lsn, .. } if end_lsn == Lsn::from(304)),
            "confirmed at the record's end: {step:?}"
        );
        let e = event(step);
        // A transaction whose commit record starts where the message ends is positioned at
        // 304: the message sorts just before it.
        assert_eq!(e.position.commit_lsn, Lsn::from(303));
        assert_eq!(e.position.commit_time, None);
        assert_eq!(e.seq, 0);
        assert!(!a.in_transaction());
    }

    #[test]
    fn messages_with_another_prefix_are_skipped() {
        let mut a = assembler();
        assert!(matches!(
            a.step(message(false, 300, "other")).unwrap(),
            Step::Skip
        ));
    }

    #[test]
    fn a_transactional_message_outside_a_transaction_is_a_bug() {
        let mut a = assembler();
        assert!(matches!(
            a.step(message(true, 300, "outbox")),
            Err(TailerError::Bug(_))
        ));
    }

    #[test]
    fn content_that_is_not_json_is_malformed() {
        let mut a = assembler();
        let step = a
            .step(SourceEvent::Message {
                transactional: false,
                lsn: Lsn::from(300),
                prefix: "outbox".into(),
                content: Bytes::from_static(b"not json"),
            })
            .unwrap();
        assert!(event(step).malformed.is_some());
    }
}

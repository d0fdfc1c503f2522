//! The parts of a record that say where and when the event happened: the trace context the
//! writer left, the record timestamp, and the tailer's own position headers.

use bytes::Bytes;

use super::{text, timestamp, trace, Router, TxnPosition};
use crate::config::settings::RecordTimestamp;
use crate::relay::decode::OutboxRow;
use crate::relay::record::{HEADER_COMMIT_TIME, HEADER_LSN, HEADER_SEQ, HEADER_SOURCE, HEADER_XID};

impl Router {
    /// `traceparent`/`tracestate` from the tracing column, else from plain columns.
    pub(super) fn trace_headers(&self, row: &OutboxRow) -> Option<Vec<(String, Bytes)>> {
        let layout = &row.layout;
        let (parent, state) = match layout.tracing.and_then(|i| text(row, i)) {
            Some(props) => trace::from_properties(&props),
            None => (
                layout.traceparent.and_then(|i| text(row, i)),
                layout.tracestate.and_then(|i| text(row, i)),
            ),
        };
        let given = parent.is_some();
        let headers = trace::headers(parent, state);
        if given && headers.is_none() {
            tracing::warn!(
                event_id = %Self::event_id(row),
                "the event's traceparent is not a valid W3C trace context; sent without trace \
                 headers"
            );
        }
        headers
    }

    /// The record's timestamp in ms since the Unix epoch (`None`: the producer's clock).
    pub(super) fn timestamp(&self, row: &OutboxRow, txn: &TxnPosition) -> Option<i64> {
        let commit = txn.commit_time.map(|t| t.unix_micros().div_euclid(1000));
        match &self.config.timestamp {
            RecordTimestamp::Produce => None,
            RecordTimestamp::Commit => commit,
            RecordTimestamp::Column(_) => {
                let (i, _) = row.layout.timestamp?;
                // A NULL or unreadable value falls back to the commit time, as Debezium
                // falls back to its event time.
                text(row, i).and_then(|t| timestamp::millis(&t)).or(commit)
            }
        }
    }

    /// Position headers. A polled row has no WAL position (commit LSN 0/0): it gets only its
    /// index in the poll batch and its insert time.
    pub(super) fn push_position(
        &self,
        headers: &mut Vec<(String, Option<Bytes>)>,
        txn: &TxnPosition,
        seq: u32,
    ) {
        if !txn.commit_lsn.is_zero() {
            headers.push((
                HEADER_LSN.to_owned(),
                Some(Bytes::from(txn.commit_lsn.to_string())),
            ));
        }
        headers.push((HEADER_SEQ.to_owned(), Some(Bytes::from(seq.to_string()))));
        if !txn.commit_lsn.is_zero() {
            headers.push((
                HEADER_XID.to_owned(),
                Some(Bytes::from(txn.xid.to_string())),
            ));
        }
        if let Some(time) = txn.commit_time {
            let micros = Bytes::from(time.unix_micros().to_string());
            headers.push((HEADER_COMMIT_TIME.to_owned(), Some(micros)));
        }
        if let Some(source) = &self.source {
            headers.push((HEADER_SOURCE.to_owned(), Some(source.clone())));
        }
    }
}

//! The parts of a record that say where and when the event happened: the trace context the
//! writer left, the record timestamp, and the tailer's own position headers.

use bytes::Bytes;

use super::{text, timestamp, trace, Router, TxnPosition};
use crate::config::settings::RecordTimestamp;
use crate::relay::decode::OutboxRow;
use crate::relay::record::{
    HeaderName, HEADER_COMMIT_TIME, HEADER_LSN, HEADER_SEQ, HEADER_SOURCE, HEADER_XID,
};

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
        headers: &mut Vec<(HeaderName, Option<Bytes>)>,
        txn: &TxnPosition,
        seq: u32,
    ) {
        let rendered = self.rendered_position(txn);
        if let Some(lsn) = rendered.lsn {
            headers.push((HEADER_LSN.into(), Some(lsn)));
        }
        headers.push((HEADER_SEQ.into(), Some(Bytes::from(seq.to_string()))));
        if let Some(xid) = rendered.xid {
            headers.push((HEADER_XID.into(), Some(xid)));
        }
        if let Some(micros) = rendered.commit_time {
            headers.push((HEADER_COMMIT_TIME.into(), Some(micros)));
        }
        if let Some(source) = &self.source {
            headers.push((HEADER_SOURCE.into(), Some(source.clone())));
        }
    }

    /// The transaction's header values, formatted once per transaction: every event of it
    /// shares them (a drain of 100-event transactions formatted them 100 times over).
    fn rendered_position(&self, txn: &TxnPosition) -> RenderedPosition {
        let mut last = self.rendered.lock().unwrap_or_else(|e| e.into_inner());
        match &*last {
            Some((of, rendered)) if of == txn => rendered.clone(),
            _ => {
                let wal = !txn.commit_lsn.is_zero();
                let rendered = RenderedPosition {
                    lsn: wal.then(|| Bytes::from(txn.commit_lsn.to_string())),
                    xid: wal.then(|| Bytes::from(txn.xid.to_string())),
                    commit_time: txn
                        .commit_time
                        .map(|t| Bytes::from(t.unix_micros().to_string())),
                };
                *last = Some((*txn, rendered.clone()));
                rendered
            }
        }
    }
}

/// A transaction's position header values, ready to send.
#[derive(Debug, Clone, Default)]
pub(super) struct RenderedPosition {
    lsn: Option<Bytes>,
    xid: Option<Bytes>,
    commit_time: Option<Bytes>,
}

//! What the route stage hands the sink: a Kafka record, its position in the stream, and the
//! names of the headers the tailer sets itself.

use std::borrow::Cow;

use bytes::Bytes;
use pgoutput::Lsn;

/// A header's name: the tailer's own names are static, a user's column name is owned.
pub type HeaderName = Cow<'static, str>;

pub const HEADER_ID: &str = "id";
pub const HEADER_TYPE: &str = "type";
pub const HEADER_LSN: &str = "outbox-lsn";
pub const HEADER_SEQ: &str = "outbox-seq";
pub const HEADER_XID: &str = "outbox-xid";
pub const HEADER_COMMIT_TIME: &str = "outbox-commit-time-us";
pub const HEADER_ERROR: &str = "outbox-error";
pub const HEADER_SOURCE: &str = "outbox-source";

/// A record ready for the sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub topic: String,
    pub key: Option<Bytes>,
    pub payload: Option<Bytes>,
    /// Name and value; a `None` value is a header with a null value (a placed column that
    /// is NULL, as Debezium sends it).
    pub headers: Vec<(HeaderName, Option<Bytes>)>,
    /// Where the event sits in the WAL (its `outbox-lsn` and `outbox-seq` headers); none for
    /// a polled row, which has no WAL position.
    pub position: Option<EventPosition>,
    /// The record's timestamp, ms since the Unix epoch (`None`: when it is produced).
    pub timestamp_ms: Option<i64>,
}

/// An event's place in the stream: unique per event, and growing in publishing order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventPosition {
    pub lsn: Lsn,
    pub seq: u32,
}

impl EventPosition {
    /// The position a record's headers state, when they state one.
    pub fn from_headers<'a>(mut header: impl FnMut(&str) -> Option<&'a [u8]>) -> Option<Self> {
        let text = |v: &'a [u8]| std::str::from_utf8(v).ok();
        Some(EventPosition {
            lsn: text(header(HEADER_LSN)?)?.parse().ok()?,
            seq: text(header(HEADER_SEQ)?)?.parse().ok()?,
        })
    }
}

impl Record {
    /// Bytes the broker counts against its size limit (approximately: key, value, headers).
    pub fn size(&self) -> usize {
        let h: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, Bytes::len))
            .sum();
        self.key.as_ref().map_or(0, Bytes::len) + self.payload.as_ref().map_or(0, Bytes::len) + h
    }
}

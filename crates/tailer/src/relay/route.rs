//! Route stage: an outbox row plus its transaction's position becomes a Kafka record.
//!
//! Defaults follow Debezium's Outbox Event Router: topic `outbox.event.<aggregatetype>`, key =
//! `aggregateid`, value = payload bytes unchanged, headers `id` and `type`; plus the tailer's
//! own position headers, which make every record's origin unique and ordered:
//! `outbox-lsn` (the transaction's commit LSN), `outbox-seq` (index in the transaction),
//! `outbox-xid` and `outbox-commit-time-us` (µs since the Unix epoch).

use bytes::Bytes;
use pgoutput::{Lsn, PgTimestamp, TupleValue};

use crate::config::topic_template::{Segment, TopicTemplate};
use crate::config::RouteConfig;
use crate::error::TailerError;
use crate::relay::decode::OutboxRow;

pub const HEADER_ID: &str = "id";
pub const HEADER_TYPE: &str = "type";
pub const HEADER_LSN: &str = "outbox-lsn";
pub const HEADER_SEQ: &str = "outbox-seq";
pub const HEADER_XID: &str = "outbox-xid";
pub const HEADER_COMMIT_TIME: &str = "outbox-commit-time-us";
pub const HEADER_ERROR: &str = "outbox-error";

/// A record ready for the sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub topic: String,
    pub key: Option<Bytes>,
    pub payload: Option<Bytes>,
    pub headers: Vec<(String, Bytes)>,
}

impl Record {
    /// Bytes the broker counts against its size limit (approximately: key, value, headers).
    pub fn size(&self) -> usize {
        let h: usize = self.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
        self.key.as_ref().map_or(0, Bytes::len) + self.payload.as_ref().map_or(0, Bytes::len) + h
    }
}

/// What [`Router::route_event`] made of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    pub record: Record,
    /// Set when `record` is a dead-letter record: why the event could not be routed.
    pub dead_letter_reason: Option<String>,
}

/// The transaction an event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnPosition {
    /// `Begin.final_lsn`: start of the commit record, known before the first row arrives.
    pub commit_lsn: Lsn,
    pub xid: u32,
    pub commit_time: PgTimestamp,
}

/// Why a row cannot become a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unroutable {
    pub reason: String,
}

/// Builds records from rows according to a [`RouteConfig`].
#[derive(Debug)]
pub struct Router {
    config: RouteConfig,
    template: TopicTemplate,
}

impl Router {
    pub fn new(config: RouteConfig) -> Result<Self, TailerError> {
        let template = TopicTemplate::parse(&config.topic)?;
        Ok(Router { config, template })
    }

    /// The event id of a row, for error messages (`<null>` when missing).
    pub fn event_id(row: &OutboxRow) -> String {
        text(row, row.layout.id).unwrap_or_else(|| "<null>".into())
    }

    /// Route one row; `seq` is its index among the transaction's events.
    pub fn route(
        &self,
        row: &OutboxRow,
        txn: &TxnPosition,
        seq: u32,
    ) -> Result<Record, Unroutable> {
        let layout = &row.layout;
        let fail = |reason: String| Err(Unroutable { reason });
        let Some(id) = bytes(row, layout.id) else {
            return fail(format!(
                "event id column `{}` is NULL",
                self.config.id_column
            ));
        };
        let Some(key) = bytes(row, layout.key) else {
            return fail(format!("key column `{}` is NULL", self.config.key_column));
        };
        let mut topic = String::new();
        for seg in self.template.segments() {
            match seg {
                Segment::Literal(s) => topic.push_str(s),
                Segment::RoutedBy => match text(row, layout.route_by) {
                    Some(v) if !v.is_empty() => topic.push_str(&v),
                    _ => {
                        return fail(format!(
                            "route-by column `{}` is NULL or empty",
                            self.config.route_by
                        ))
                    }
                },
                Segment::Column(name) => {
                    match layout.by_name.get(name).and_then(|i| text(row, *i)) {
                        Some(v) if !v.is_empty() => topic.push_str(&v),
                        _ => {
                            return fail(format!(
                                "topic template column `{name}` is missing, NULL or empty"
                            ))
                        }
                    }
                }
            }
        }
        if !valid_topic(&topic) {
            return fail(format!(
                "topic {topic:?} is not a valid Kafka topic name (1-249 of [a-zA-Z0-9._-])"
            ));
        }
        let payload = match bytes(row, layout.payload) {
            None => None,
            Some(raw) if layout.payload_is_bytea => match decode_bytea_hex(&raw) {
                Some(b) => Some(b),
                None => return fail("bytea payload is not in hex output format".into()),
            },
            Some(raw) => Some(raw),
        };
        let mut headers = vec![(HEADER_ID.to_owned(), id)];
        if let Some(t) = bytes(row, layout.event_type) {
            headers.push((HEADER_TYPE.to_owned(), t));
        }
        for (idx, name) in &layout.extra_headers {
            if let Some(v) = bytes(row, *idx) {
                headers.push((name.clone(), v));
            }
        }
        if let Some(raw) = layout.headers.and_then(|i| bytes(row, i)) {
            match serde_json::from_slice::<serde_json::Value>(&raw) {
                Ok(serde_json::Value::Object(map)) => {
                    for (k, v) in map {
                        let v = match v {
                            serde_json::Value::String(s) => Bytes::from(s),
                            other => Bytes::from(other.to_string()),
                        };
                        headers.push((k, v));
                    }
                }
                Ok(serde_json::Value::Null) => {}
                _ => {
                    return fail(format!(
                        "headers column `{}` is not a JSON object",
                        self.config.headers_column
                    ))
                }
            }
        }
        push_position(&mut headers, txn, seq);
        let record = Record {
            topic,
            key: Some(key),
            payload,
            headers,
        };
        if record.size() > self.config.max_message_bytes {
            return fail(format!(
                "record of {} bytes exceeds max_message_bytes {}",
                record.size(),
                self.config.max_message_bytes
            ));
        }
        Ok(record)
    }

    /// Route one event as `run` publishes it: its record, or the dead-letter record (with the
    /// reason) when it cannot be routed; `malformed` carries the reason when the event could
    /// not even be read. Without a dead-letter topic an unroutable event is an error.
    pub fn route_event(
        &self,
        row: &OutboxRow,
        txn: &TxnPosition,
        seq: u32,
        malformed: Option<String>,
    ) -> Result<Routed, TailerError> {
        let routed = match malformed {
            Some(reason) => Err(Unroutable { reason }),
            None => self.route(row, txn, seq),
        };
        let unroutable = match routed {
            Ok(record) => {
                return Ok(Routed {
                    record,
                    dead_letter_reason: None,
                })
            }
            Err(unroutable) => unroutable,
        };
        match self.dead_letter(row, txn, seq, &unroutable.reason) {
            Some(record) => Ok(Routed {
                record,
                dead_letter_reason: Some(unroutable.reason),
            }),
            None => Err(TailerError::Unroutable {
                event_id: Self::event_id(row),
                commit_lsn: txn.commit_lsn.to_string(),
                reason: unroutable.reason,
            }),
        }
    }

    /// The dead-letter record for a row that could not be routed: the row's key and payload
    /// (payload dropped when it is what made the row too large), its id, and the reason.
    pub fn dead_letter(
        &self,
        row: &OutboxRow,
        txn: &TxnPosition,
        seq: u32,
        reason: &str,
    ) -> Option<Record> {
        let topic = self.config.dead_letter_topic.clone()?;
        let layout = &row.layout;
        let mut headers = Vec::new();
        if let Some(id) = bytes(row, layout.id) {
            headers.push((HEADER_ID.to_owned(), id));
        }
        if let Some(t) = bytes(row, layout.event_type) {
            headers.push((HEADER_TYPE.to_owned(), t));
        }
        headers.push((HEADER_ERROR.to_owned(), Bytes::from(reason.to_owned())));
        push_position(&mut headers, txn, seq);
        let mut record = Record {
            topic,
            key: bytes(row, layout.key),
            payload: bytes(row, layout.payload),
            headers,
        };
        if record.size() > self.config.max_message_bytes {
            record.payload = None;
        }
        Some(record)
    }
}

/// Position headers. A polled row has no WAL position (commit LSN 0/0): it gets only its
/// index in the poll batch and its insert time.
fn push_position(headers: &mut Vec<(String, Bytes)>, txn: &TxnPosition, seq: u32) {
    if !txn.commit_lsn.is_zero() {
        headers.push((
            HEADER_LSN.to_owned(),
            Bytes::from(txn.commit_lsn.to_string()),
        ));
    }
    headers.push((HEADER_SEQ.to_owned(), Bytes::from(seq.to_string())));
    if !txn.commit_lsn.is_zero() {
        headers.push((HEADER_XID.to_owned(), Bytes::from(txn.xid.to_string())));
    }
    headers.push((
        HEADER_COMMIT_TIME.to_owned(),
        Bytes::from(txn.commit_time.unix_micros().to_string()),
    ));
}

fn bytes(row: &OutboxRow, idx: usize) -> Option<Bytes> {
    match row.tuple.get(idx)? {
        TupleValue::Text(b) | TupleValue::Binary(b) => Some(b.clone()),
        TupleValue::Null | TupleValue::UnchangedToast => None,
    }
}

fn text(row: &OutboxRow, idx: usize) -> Option<String> {
    bytes(row, idx).map(|b| String::from_utf8_lossy(&b).into_owned())
}

fn valid_topic(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= 249
        && topic != "."
        && topic != ".."
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// bytea's text output (`\x` + hex) back to the raw bytes.
fn decode_bytea_hex(raw: &[u8]) -> Option<Bytes> {
    let hex = raw.strip_prefix(b"\\x")?;
    if hex.len() % 2 != 0 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    hex.chunks_exact(2)
        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect::<Option<Vec<u8>>>()
        .map(Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytea_hex_decodes() {
        assert_eq!(
            decode_bytea_hex(b"\\x00ff10").unwrap().as_ref(),
            &[0, 255, 16]
        );
        assert!(decode_bytea_hex(b"00ff").is_none());
        assert!(decode_bytea_hex(b"\\x0").is_none());
        assert!(decode_bytea_hex(b"\\xzz").is_none());
    }

    #[test]
    fn topic_names() {
        assert!(valid_topic("outbox.event.order"));
        assert!(!valid_topic("outbox event"));
        assert!(!valid_topic(""));
    }

    fn row(config: &RouteConfig, key: Option<&str>, payload: &str) -> OutboxRow {
        let decoder = crate::relay::decode::EventDecoder::new(
            crate::pg::names::TableName::parse("outbox").unwrap(),
            config.clone(),
        )
        .unwrap();
        let text = |s: &str| TupleValue::Text(Bytes::from(s.to_owned()));
        // Envelope order: id, route-by, key, type, payload, headers.
        decoder.row_from_values(vec![
            text("e-1"),
            text("order"),
            key.map_or(TupleValue::Null, text),
            text("Created"),
            text(payload),
            TupleValue::Null,
        ])
    }

    fn position() -> TxnPosition {
        TxnPosition {
            commit_lsn: Lsn::from(0x100),
            xid: 9,
            commit_time: PgTimestamp::from_unix_micros(0),
        }
    }

    #[test]
    fn a_record_over_the_size_limit_is_unroutable_or_dead_lettered() {
        let mut config = RouteConfig {
            max_message_bytes: 1_000,
            ..RouteConfig::default()
        };
        let big = format!("\"{}\"", "x".repeat(2_000));
        let router = Router::new(config.clone()).unwrap();
        let err = router
            .route(&row(&config, Some("k"), &big), &position(), 0)
            .unwrap_err();
        assert!(
            err.reason.contains("exceeds max_message_bytes"),
            "{}",
            err.reason
        );
        assert!(matches!(
            router.route_event(&row(&config, Some("k"), &big), &position(), 0, None),
            Err(TailerError::Unroutable { .. })
        ));

        config.dead_letter_topic = Some("outbox.dlq".into());
        let router = Router::new(config.clone()).unwrap();
        let routed = router
            .route_event(&row(&config, Some("k"), &big), &position(), 0, None)
            .unwrap();
        assert_eq!(routed.record.topic, "outbox.dlq");
        assert_eq!(
            routed.record.payload, None,
            "the oversized payload is dropped"
        );
        assert!(routed.dead_letter_reason.is_some());
    }

    #[test]
    fn a_null_key_is_unroutable() {
        let config = RouteConfig::default();
        let router = Router::new(config.clone()).unwrap();
        let err = router
            .route(&row(&config, None, "{}"), &position(), 0)
            .unwrap_err();
        assert!(err.reason.contains("aggregateid"), "{}", err.reason);
    }

    #[test]
    fn defaults_route_like_debezium() {
        let config = RouteConfig::default();
        let router = Router::new(config.clone()).unwrap();
        let r = router
            .route(&row(&config, Some("o-1"), "{\"a\": 1}"), &position(), 3)
            .unwrap();
        assert_eq!(r.topic, "outbox.event.order");
        assert_eq!(r.key.as_deref(), Some(&b"o-1"[..]));
        assert_eq!(r.payload.as_deref(), Some(&b"{\"a\": 1}"[..]));
        let h = |k: &str| {
            r.headers
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(h(HEADER_ID).as_deref(), Some(&b"e-1"[..]));
        assert_eq!(h(HEADER_TYPE).as_deref(), Some(&b"Created"[..]));
        assert_eq!(h(HEADER_LSN).as_deref(), Some(&b"0/100"[..]));
        assert_eq!(h(HEADER_SEQ).as_deref(), Some(&b"3"[..]));
    }
}

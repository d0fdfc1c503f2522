//! Route stage: an outbox row plus its transaction's position becomes a Kafka record.
//!
//! Defaults follow Debezium's Outbox Event Router: topic `outbox.event.<aggregatetype>`, key =
//! `aggregateid`, value = payload bytes unchanged, headers `id` and `type`; plus the tailer's
//! own position headers, which make every record's origin unique and ordered:
//! `outbox-lsn` (the transaction's commit LSN), `outbox-seq` (index in the transaction),
//! `outbox-xid` and `outbox-commit-time-us` (µs since the Unix epoch; absent on a
//! non-transactional logical message, which has no commit); and `outbox-source`, which names
//! the relay (the database cluster's system identifier and the slot), so the tailer can tell its
//! own records from other producers' in a shared topic.

use bytes::Bytes;
use pgoutput::{Lsn, PgTimestamp, TupleValue};

use crate::config::settings::{is_reserved_header, RESERVED_HEADER_PREFIX};
use crate::config::topic_template::{Segment, TopicTemplate};
use crate::config::RouteConfig;
use crate::error::TailerError;
use crate::relay::decode::OutboxRow;

mod format;
mod jackson;
mod position;
mod timestamp;
pub mod trace;
pub use crate::relay::record::{
    EventPosition, HeaderName, Record, HEADER_COMMIT_TIME, HEADER_ERROR, HEADER_ID, HEADER_LSN,
    HEADER_SEQ, HEADER_SOURCE, HEADER_TYPE, HEADER_XID,
};

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
    /// `None` for a non-transactional logical message: it never commits.
    pub commit_time: Option<PgTimestamp>,
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
    /// `route.topic.regex`, anchored to match the whole route-by value.
    topic_regex: Option<regex::Regex>,
    source: Option<Bytes>,
    /// The last transaction's position headers (see `push_position`).
    rendered: std::sync::Mutex<Option<(TxnPosition, position::RenderedPosition)>>,
}

impl Router {
    pub fn new(config: RouteConfig) -> Result<Self, TailerError> {
        let template = TopicTemplate::parse(&config.topic)?;
        let topic_regex = match &config.topic_regex {
            None => None,
            Some(r) => Some(regex::Regex::new(&format!("^(?:{r})$")).map_err(|e| {
                TailerError::Config(format!("route_topic_regex {r:?} does not compile: {e}"))
            })?),
        };
        Ok(Router {
            config,
            template,
            topic_regex,
            source: None,
            rendered: std::sync::Mutex::default(),
        })
    }

    /// Name the relay in every record's `outbox-source` header.
    pub fn with_source(mut self, source: &str) -> Self {
        self.source = Some(Bytes::from(source.to_owned()));
        self
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
        let Some(id) = bytes(row, layout.id) else {
            return unroutable(format!(
                "event id column `{}` is NULL",
                self.config.id_column
            ));
        };
        let Some(key) = bytes(row, layout.key) else {
            return unroutable(format!("key column `{}` is NULL", self.config.key_column));
        };
        let key = format::key(self.config.key_format, layout.key_type, key);
        let topic = self.topic(row)?;
        let payload = format::value(&self.config, row, payload(row)?);
        let mut headers = vec![(HEADER_ID.into(), Some(id))];
        self.user_headers(row, &mut headers)?;
        if let Some(trace) = self.trace_headers(row) {
            headers.extend(trace.into_iter().map(|(k, v)| (k.into(), Some(v))));
        }
        if self.config.position_headers {
            self.push_position(&mut headers, txn, seq);
        }
        let record = Record {
            topic,
            key: Some(key),
            payload,
            headers,
            position: position_of(txn, seq),
            timestamp_ms: self.timestamp(row, txn),
        };
        if record.size() > self.config.max_message_bytes {
            return unroutable(format!(
                "record of {} bytes exceeds max_message_bytes {}",
                record.size(),
                self.config.max_message_bytes
            ));
        }
        Ok(record)
    }

    /// The topic template filled in from the row.
    fn topic(&self, row: &OutboxRow) -> Result<String, Unroutable> {
        let layout = &row.layout;
        let routed = text(row, layout.route_by).filter(|v| !v.is_empty());
        let no_route = || {
            format!(
                "route-by column `{}` is NULL or empty",
                self.config.route_by
            )
        };
        // Debezium's `route.topic.regex`: the template applies only when the regex matches
        // the whole value, and its groups fill the template; otherwise the topic is the value.
        let groups = match &self.topic_regex {
            None => None,
            Some(regex) => {
                let value = routed
                    .clone()
                    .ok_or_else(|| Unroutable { reason: no_route() })?;
                match regex.captures(&value) {
                    None => return self.checked_topic(value),
                    Some(caps) => Some(group_values(regex, &caps)),
                }
            }
        };
        let mut topic = String::new();
        for seg in self.template.segments() {
            let value = match seg {
                Segment::Literal(s) => {
                    topic.push_str(s);
                    continue;
                }
                Segment::RoutedBy => match groups.as_ref().and_then(|g| g.get("routedByValue")) {
                    Some(group) => Ok(group.clone()),
                    None => routed.clone().ok_or_else(no_route),
                },
                Segment::Column(name) => match groups.as_ref().and_then(|g| g.get(name)) {
                    Some(group) => Ok(group.clone()),
                    None => layout
                        .by_name
                        .get(name)
                        .and_then(|i| text(row, *i))
                        .filter(|v| !v.is_empty())
                        .ok_or_else(|| {
                            format!("topic template column `{name}` is missing, NULL or empty")
                        }),
                },
            };
            topic.push_str(&value.map_err(|reason| Unroutable { reason })?);
        }
        self.checked_topic(topic)
    }

    fn checked_topic(&self, topic: String) -> Result<String, Unroutable> {
        if !valid_topic(&topic) {
            return unroutable(format!(
                "topic {topic:?} is not a valid Kafka topic name (1-249 of [a-zA-Z0-9._-])"
            ));
        }
        Ok(topic)
    }

    /// The `type` header, the extra header columns, then the headers column's entries.
    fn user_headers(
        &self,
        row: &OutboxRow,
        headers: &mut Vec<(HeaderName, Option<Bytes>)>,
    ) -> Result<(), Unroutable> {
        let layout = &row.layout;
        // Not when a placement already names a `type` header (it would be sent twice).
        let placed_type = layout.extra_headers.iter().any(|(_, h)| h == HEADER_TYPE);
        if self.config.position_headers && !placed_type {
            if let Some(t) = layout.event_type.and_then(|i| bytes(row, i)) {
                headers.push((HEADER_TYPE.into(), Some(t)));
            }
        }
        // A placed column that is NULL is a header with a null value, as Debezium sends it.
        for (idx, name) in &layout.extra_headers {
            headers.push((name.clone().into(), bytes(row, *idx)));
        }
        let Some(raw) = layout.headers.and_then(|i| bytes(row, i)) else {
            return Ok(());
        };
        match serde_json::from_slice::<serde_json::Value>(&raw) {
            Ok(serde_json::Value::Object(map)) => {
                if let Some(k) = map.keys().find(|k| is_reserved_header(k)) {
                    return unroutable(format!(
                        "headers column `{}` holds `{k}`, which would shadow the tailer's own \
                         position header (names starting with `{RESERVED_HEADER_PREFIX}` are \
                         reserved)",
                        self.config.headers_column
                    ));
                }
                for (k, v) in map {
                    let v = match v {
                        serde_json::Value::String(s) => Bytes::from(s),
                        other => Bytes::from(other.to_string()),
                    };
                    headers.push((k.into(), Some(v)));
                }
                Ok(())
            }
            Ok(serde_json::Value::Null) => Ok(()),
            _ => unroutable(format!(
                "headers column `{}` is not a JSON object",
                self.config.headers_column
            )),
        }
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
            headers.push((HEADER_ID.into(), Some(id)));
        }
        if let Some(t) = layout.event_type.and_then(|i| bytes(row, i)) {
            headers.push((HEADER_TYPE.into(), Some(t)));
        }
        headers.push((HEADER_ERROR.into(), Some(Bytes::from(reason.to_owned()))));
        self.push_position(&mut headers, txn, seq);
        let mut record = Record {
            topic,
            key: bytes(row, layout.key),
            payload: bytes(row, layout.payload),
            headers,
            position: position_of(txn, seq),
            timestamp_ms: self.timestamp(row, txn),
        };
        if record.size() > self.config.max_message_bytes {
            record.payload = None;
        }
        Some(record)
    }
}

/// A regex match's groups by name and by number (`0` is the whole value).
fn group_values(
    regex: &regex::Regex,
    caps: &regex::Captures<'_>,
) -> std::collections::HashMap<String, String> {
    let mut out = std::collections::HashMap::new();
    for (i, name) in regex.capture_names().enumerate() {
        let value = caps.get(i).map_or("", |m| m.as_str()).to_owned();
        if let Some(name) = name {
            out.insert(name.to_owned(), value.clone());
        }
        out.insert(i.to_string(), value);
    }
    out
}

fn unroutable<T>(reason: String) -> Result<T, Unroutable> {
    Err(Unroutable { reason })
}

/// The payload bytes unchanged; a bytea payload arrives in hex output format and is decoded.
fn payload(row: &OutboxRow) -> Result<Option<Bytes>, Unroutable> {
    let layout = &row.layout;
    match bytes(row, layout.payload) {
        None => Ok(None),
        Some(raw) if layout.payload_is_bytea => match decode_bytea_hex(&raw) {
            Some(b) => Ok(Some(b)),
            None => unroutable("bytea payload is not in hex output format".into()),
        },
        Some(raw) => Ok(Some(raw)),
    }
}

fn position_of(txn: &TxnPosition, seq: u32) -> Option<EventPosition> {
    (!txn.commit_lsn.is_zero()).then_some(EventPosition {
        lsn: txn.commit_lsn,
        seq,
    })
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
mod debezium_tests;
#[cfg(test)]
mod tests;

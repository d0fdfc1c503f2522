//! The outbox writer: record events inside the caller's own transaction.
//!
//! ```text
//!   BEGIN
//!     INSERT INTO orders …            ← the caller's business write
//!     emit(&tx, &event)               ← INSERT INTO outbox …   (or emit_message: a WAL message)
//!   COMMIT                            ← both become visible together, or neither does
//! ```
//!
//! Nothing here opens or commits a transaction: every function takes the caller's
//! [`tokio_postgres::Transaction`], so the event shares its fate (an autocommit client would
//! commit the event apart from the business change, and does not compile). Event ids are UUID v7 (time
//! ordered, so the primary-key index stays append-mostly) unless the caller gives one.
//!
//! [`emit_message`] writes no row at all: `pg_logical_emit_message(true, prefix, envelope)`
//! puts a transactional message in the WAL that the tailer publishes like a row when it is
//! configured with the same prefix. The envelope keys are the outbox column names, as the
//! tailer reads them: [`OutboxColumns`] names them when the table's differ from Debezium's.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_postgres::Transaction;
use uuid::Uuid;

use crate::error::{AppError, Result};

/// The table [`emit`] writes to.
pub const DEFAULT_OUTBOX_TABLE: &str = "outbox";

/// The prefix [`emit_message`] uses unless told otherwise; the tailer's must match.
pub const DEFAULT_MESSAGE_PREFIX: &str = "outbox";

/// One event to record. Build with [`NewEvent::new`] and the `with_*` methods.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// The event id; a UUID v7 is generated when `None`.
    pub id: Option<Uuid>,
    /// Routes the event (default topic `outbox.event.<aggregate_type>`).
    pub aggregate_type: String,
    /// The Kafka key: events of one aggregate stay in order.
    pub aggregate_id: String,
    /// What happened, e.g. `OrderCreated`.
    pub event_type: String,
    /// The record value, published unchanged.
    pub payload: Value,
    /// Extra record headers: a JSON object, or `None`.
    pub headers: Option<Value>,
    /// The writer's trace context, stored in the `tracingspancontext` column as Debezium
    /// stores it; the tailer sends it on as W3C `traceparent`/`tracestate` headers.
    pub trace: Option<TraceContext>,
}

/// The column [`TraceContext`] is stored in: Debezium's name, so either relay reads it.
pub const TRACING_COLUMN: &str = "tracingspancontext";

/// A W3C trace context (<https://www.w3.org/TR/trace-context/>) to carry across the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    traceparent: String,
    tracestate: Option<String>,
}

impl TraceContext {
    /// From the `traceparent` (`00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`) and
    /// `tracestate` values of the caller's current span.
    pub fn new(traceparent: &str, tracestate: Option<&str>) -> Result<TraceContext> {
        let parts: Vec<&str> = traceparent.split('-').collect();
        let hex = |p: &str, n: usize| {
            p.len() == n
                && p.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        let valid = parts.len() == 4
            && hex(parts[0], 2)
            && hex(parts[1], 32)
            && hex(parts[2], 16)
            && hex(parts[3], 2)
            && parts[1].bytes().any(|b| b != b'0')
            && parts[2].bytes().any(|b| b != b'0');
        if !valid {
            return Err(AppError::InvalidConfig(
                "traceparent is not a W3C trace context (00-<32 hex>-<16 hex>-<2 hex>)".into(),
            ));
        }
        Ok(TraceContext {
            traceparent: traceparent.to_owned(),
            tracestate: tracestate.filter(|s| !s.is_empty()).map(str::to_owned),
        })
    }

    /// From the map an OpenTelemetry propagator injects into (`TextMapPropagator::inject`
    /// on a `HashMap<String, String>`).
    pub fn from_carrier(
        carrier: &std::collections::HashMap<String, String>,
    ) -> Result<TraceContext> {
        let parent = carrier
            .get("traceparent")
            .ok_or_else(|| AppError::InvalidConfig("the carrier holds no traceparent".into()))?;
        TraceContext::new(parent, carrier.get("tracestate").map(String::as_str))
    }

    pub fn traceparent(&self) -> &str {
        &self.traceparent
    }

    /// The 32-hex-digit trace id.
    pub fn trace_id(&self) -> &str {
        &self.traceparent[3..35]
    }

    /// The column's text, as Java's `Properties.store` writes it (`=` and `:` escaped).
    pub fn to_properties(&self) -> String {
        let escape = |v: &str| {
            v.replace('\\', "\\\\")
                .replace('=', "\\=")
                .replace(':', "\\:")
        };
        let mut out = format!("traceparent={}\n", self.traceparent);
        if let Some(state) = &self.tracestate {
            out.push_str(&format!("tracestate={}\n", escape(state)));
        }
        out
    }
}

impl NewEvent {
    /// An event with a generated id and no headers.
    pub fn new(
        aggregate_type: impl Into<String>,
        aggregate_id: impl Into<String>,
        event_type: impl Into<String>,
        payload: Value,
    ) -> NewEvent {
        NewEvent {
            id: None,
            aggregate_type: aggregate_type.into(),
            aggregate_id: aggregate_id.into(),
            event_type: event_type.into(),
            payload,
            headers: None,
            trace: None,
        }
    }

    /// Carry the caller's trace context to the consumer.
    pub fn with_trace(mut self, trace: TraceContext) -> NewEvent {
        self.trace = Some(trace);
        self
    }

    /// Use this id instead of a generated one (e.g. to make a retry idempotent).
    pub fn with_id(mut self, id: Uuid) -> NewEvent {
        self.id = Some(id);
        self
    }

    /// Attach headers; they must be a JSON object.
    pub fn with_headers(mut self, headers: Value) -> NewEvent {
        self.headers = Some(headers);
        self
    }

    fn id_or_new(&self) -> Uuid {
        self.id.unwrap_or_else(Uuid::now_v7)
    }

    fn check_headers(&self) -> Result<()> {
        match &self.headers {
            None | Some(Value::Object(_)) | Some(Value::Null) => Ok(()),
            Some(other) => Err(AppError::InvalidHeaders {
                kind: json_kind(other),
            }),
        }
    }

    /// Headers as stored: JSON `null` and absent are the same thing.
    fn stored_headers(&self) -> Option<&Value> {
        self.headers.as_ref().filter(|h| !h.is_null())
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The content of an [`emit_message`] message, as the tailer parses it:
/// `{"id", "aggregatetype", "aggregateid", "type", "payload", "headers"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageEnvelope {
    pub id: Uuid,
    pub aggregatetype: String,
    pub aggregateid: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub payload: Value,
    /// A JSON object or `null`.
    pub headers: Option<Value>,
}

impl MessageEnvelope {
    /// The envelope of `event` with the given id.
    pub fn new(id: Uuid, event: &NewEvent) -> Result<MessageEnvelope> {
        event.check_headers()?;
        Ok(MessageEnvelope {
            id,
            aggregatetype: event.aggregate_type.clone(),
            aggregateid: event.aggregate_id.clone(),
            event_type: event.event_type.clone(),
            payload: event.payload.clone(),
            headers: event.stored_headers().cloned(),
        })
    }

    /// The JSON text written into the WAL, with the default column names as keys.
    pub fn to_json(&self) -> String {
        OutboxColumns::default().render(self)
    }
}

/// A validated outbox table name, `table` or `schema.table`, quoted when used in SQL so its
/// case is kept exactly as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxTable {
    schema: Option<String>,
    table: String,
}

impl OutboxTable {
    /// Parses `table` or `schema.table`; each part is 1–63 ASCII letters, digits, `_` or `$`,
    /// not starting with a digit or `$`.
    pub fn new(name: &str) -> Result<OutboxTable> {
        let invalid = || AppError::InvalidIdentifier {
            name: name.to_owned(),
        };
        let mut parts = name.split('.');
        let (first, second) = (parts.next(), parts.next());
        if parts.next().is_some() {
            return Err(invalid());
        }
        let valid = |part: &str| is_identifier(part).then(|| part.to_owned());
        match (first, second) {
            (Some(table), None) => Ok(OutboxTable {
                schema: None,
                table: valid(table).ok_or_else(invalid)?,
            }),
            (Some(schema), Some(table)) => Ok(OutboxTable {
                schema: Some(valid(schema).ok_or_else(invalid)?),
                table: valid(table).ok_or_else(invalid)?,
            }),
            _ => Err(invalid()),
        }
    }

    /// The name as SQL: `"schema"."table"` or `"table"`.
    pub fn quoted(&self) -> String {
        match &self.schema {
            Some(schema) => format!("\"{schema}\".\"{}\"", self.table),
            None => format!("\"{}\"", self.table),
        }
    }
}

impl Default for OutboxTable {
    fn default() -> OutboxTable {
        OutboxTable {
            schema: None,
            table: DEFAULT_OUTBOX_TABLE.to_owned(),
        }
    }
}

impl std::str::FromStr for OutboxTable {
    type Err = AppError;

    fn from_str(s: &str) -> Result<OutboxTable> {
        OutboxTable::new(s)
    }
}

impl std::fmt::Display for OutboxTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.quoted())
    }
}

/// Whether `s` is an identifier that needs no escaping inside double quotes.
fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    s.len() <= 63
        && (first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

/// The outbox's column names, which are also the keys of a message envelope. The defaults are
/// Debezium's; set them like the tailer's `--id-column`, `--route-by`, `--key-column`,
/// `--type-column`, `--payload-column` and `--headers-column`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxColumns {
    pub id: String,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub event_type: String,
    pub payload: String,
    pub headers: String,
}

impl Default for OutboxColumns {
    fn default() -> OutboxColumns {
        OutboxColumns {
            id: "id".into(),
            aggregate_type: "aggregatetype".into(),
            aggregate_id: "aggregateid".into(),
            event_type: "type".into(),
            payload: "payload".into(),
            headers: "headers".into(),
        }
    }
}

impl OutboxColumns {
    fn names(&self) -> [&str; 6] {
        [
            &self.id,
            &self.aggregate_type,
            &self.aggregate_id,
            &self.event_type,
            &self.payload,
            &self.headers,
        ]
    }

    fn check(&self) -> Result<()> {
        for name in self.names() {
            if !is_identifier(name) {
                return Err(AppError::InvalidConfig(format!(
                    "outbox column {name:?}: use a plain identifier"
                )));
            }
        }
        Ok(())
    }

    /// `"id", "aggregatetype", …` for an INSERT's column list.
    fn quoted(&self) -> String {
        self.names().map(|n| format!("\"{n}\"")).join(", ")
    }

    /// The message content the tailer reads for `event`: its fields under these names.
    fn envelope(&self, id: Uuid, event: &NewEvent) -> Result<String> {
        Ok(self.render(&MessageEnvelope::new(id, event)?))
    }

    /// An envelope as JSON text with these names as keys.
    pub fn render(&self, envelope: &MessageEnvelope) -> String {
        let mut content = serde_json::Map::new();
        content.insert(self.id.clone(), envelope.id.to_string().into());
        content.insert(
            self.aggregate_type.clone(),
            envelope.aggregatetype.clone().into(),
        );
        content.insert(
            self.aggregate_id.clone(),
            envelope.aggregateid.clone().into(),
        );
        content.insert(self.event_type.clone(), envelope.event_type.clone().into());
        content.insert(self.payload.clone(), envelope.payload.clone());
        let headers = envelope.headers.clone().unwrap_or(Value::Null);
        content.insert(self.headers.clone(), headers);
        Value::Object(content).to_string()
    }
}

/// Writes events to one outbox table; [`emit`] and [`emit_many`] use the default `outbox`.
#[derive(Debug, Clone)]
pub struct OutboxWriter {
    table: OutboxTable,
    columns: OutboxColumns,
    insert_one: String,
    insert_many: String,
    insert_one_traced: String,
    insert_many_traced: String,
}

impl OutboxWriter {
    pub fn new(table: OutboxTable) -> OutboxWriter {
        OutboxWriter::with_columns(table, OutboxColumns::default())
            .expect("the default columns are identifiers")
    }

    /// A writer for a table whose columns have other names; they must be plain identifiers.
    pub fn with_columns(table: OutboxTable, columns: OutboxColumns) -> Result<OutboxWriter> {
        columns.check()?;
        let t = table.quoted();
        let c = columns.quoted();
        Ok(OutboxWriter {
            insert_one_traced: format!(
                "INSERT INTO {t} ({c}, \"{TRACING_COLUMN}\") VALUES ($1, $2, $3, $4, $5, $6, $7)"
            ),
            insert_many_traced: format!(
                "INSERT INTO {t} ({c}, \"{TRACING_COLUMN}\") \
                 SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], \
                 $5::jsonb[], $6::jsonb[], $7::text[])"
            ),
            insert_one: format!("INSERT INTO {t} ({c}) VALUES ($1, $2, $3, $4, $5, $6)"),
            // unnest keeps array order, so rows reach the WAL in the order given.
            insert_many: format!(
                "INSERT INTO {t} ({c}) \
                 SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], \
                 $5::jsonb[], $6::jsonb[])"
            ),
            table,
            columns,
        })
    }

    pub fn columns(&self) -> &OutboxColumns {
        &self.columns
    }

    pub fn table(&self) -> &OutboxTable {
        &self.table
    }

    /// Inserts one event in the caller's transaction; returns its id.
    pub async fn emit(&self, tx: &Transaction<'_>, event: &NewEvent) -> Result<Uuid> {
        event.check_headers()?;
        let id = event.id_or_new();
        let headers = event.stored_headers();
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![
            &id,
            &event.aggregate_type,
            &event.aggregate_id,
            &event.event_type,
            &event.payload,
            &headers,
        ];
        // Only a traced event names the column, so tables without it keep working.
        let trace = event.trace.as_ref().map(TraceContext::to_properties);
        let sql = match &trace {
            Some(t) => {
                params.push(t);
                &self.insert_one_traced
            }
            None => &self.insert_one,
        };
        tx.execute(sql, &params)
            .await
            .map_err(AppError::pg("inserting an outbox event"))?;
        Ok(id)
    }

    /// Inserts events in one statement, in order, in the caller's transaction; returns their
    /// ids in the same order.
    pub async fn emit_many(&self, tx: &Transaction<'_>, events: &[NewEvent]) -> Result<Vec<Uuid>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        for event in events {
            event.check_headers()?;
        }
        let ids: Vec<Uuid> = events.iter().map(NewEvent::id_or_new).collect();
        let column = |f: fn(&NewEvent) -> &String| events.iter().map(f).collect::<Vec<_>>();
        let payloads: Vec<&Value> = events.iter().map(|e| &e.payload).collect();
        let headers: Vec<Option<&Value>> = events.iter().map(NewEvent::stored_headers).collect();
        let (types, keys, kinds) = (
            column(|e| &e.aggregate_type),
            column(|e| &e.aggregate_id),
            column(|e| &e.event_type),
        );
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
            vec![&ids, &types, &keys, &kinds, &payloads, &headers];
        let traces: Vec<Option<String>> = events
            .iter()
            .map(|e| e.trace.as_ref().map(TraceContext::to_properties))
            .collect();
        let sql = if traces.iter().any(Option::is_some) {
            params.push(&traces);
            &self.insert_many_traced
        } else {
            &self.insert_many
        };
        tx.execute(sql, &params)
            .await
            .map_err(AppError::pg("inserting outbox events"))?;
        Ok(ids)
    }
}

impl Default for OutboxWriter {
    fn default() -> OutboxWriter {
        OutboxWriter::new(OutboxTable::default())
    }
}

/// Inserts one event into `outbox` in the caller's transaction; returns its id.
pub async fn emit(tx: &Transaction<'_>, event: &NewEvent) -> Result<Uuid> {
    OutboxWriter::default().emit(tx, event).await
}

/// Inserts events into `outbox`, in order, in the caller's transaction.
pub async fn emit_many(tx: &Transaction<'_>, events: &[NewEvent]) -> Result<Vec<Uuid>> {
    OutboxWriter::default().emit_many(tx, events).await
}

/// Writes the event as a transactional logical decoding message with `prefix` (no table),
/// its envelope keyed by the default column names; it is decoded only if the transaction
/// commits. Returns the event id.
pub async fn emit_message(tx: &Transaction<'_>, prefix: &str, event: &NewEvent) -> Result<Uuid> {
    OutboxWriter::default()
        .emit_message(tx, prefix, event)
        .await
}

/// Writes events as transactional logical decoding messages with `prefix`, in order, in one
/// statement; returns their ids in the same order.
pub async fn emit_messages(
    tx: &Transaction<'_>,
    prefix: &str,
    events: &[NewEvent],
) -> Result<Vec<Uuid>> {
    OutboxWriter::default()
        .emit_messages(tx, prefix, events)
        .await
}

impl OutboxWriter {
    /// [`emit_message`] with this writer's column names as the envelope keys.
    pub async fn emit_message(
        &self,
        tx: &Transaction<'_>,
        prefix: &str,
        event: &NewEvent,
    ) -> Result<Uuid> {
        let id = event.id_or_new();
        let content = self.columns.envelope(id, event)?;
        tx.execute(
            "SELECT pg_logical_emit_message(true, $1::text, $2::text)",
            &[&prefix, &content],
        )
        .await
        .map_err(AppError::pg("emitting an outbox message"))?;
        Ok(id)
    }

    /// [`emit_messages`] with this writer's column names as the envelope keys.
    pub async fn emit_messages(
        &self,
        tx: &Transaction<'_>,
        prefix: &str,
        events: &[NewEvent],
    ) -> Result<Vec<Uuid>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = events.iter().map(NewEvent::id_or_new).collect();
        let contents = ids
            .iter()
            .zip(events)
            .map(|(id, event)| self.columns.envelope(*id, event))
            .collect::<Result<Vec<String>>>()?;
        // Volatile target-list functions run after the sort, so messages follow array order.
        tx.execute(
            "SELECT pg_logical_emit_message(true, $1::text, m.content) \
             FROM unnest($2::text[]) WITH ORDINALITY AS m(content, n) ORDER BY m.n",
            &[&prefix, &contents],
        )
        .await
        .map_err(AppError::pg("emitting outbox messages"))?;
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event() -> NewEvent {
        NewEvent::new(
            "order",
            "o-1",
            "OrderCreated",
            json!({"amount_cents": 4200}),
        )
    }

    #[test]
    fn envelope_has_the_outbox_column_names() {
        let id = Uuid::parse_str("0190f7a8-1111-7000-8000-000000000001").unwrap();
        let e = event().with_headers(json!({"trace": "t-1"}));
        let text = MessageEnvelope::new(id, &e).unwrap().to_json();
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            parsed,
            json!({
                "id": "0190f7a8-1111-7000-8000-000000000001",
                "aggregatetype": "order",
                "aggregateid": "o-1",
                "type": "OrderCreated",
                "payload": {"amount_cents": 4200},
                "headers": {"trace": "t-1"},
            })
        );
    }

    #[test]
    fn envelope_keys_follow_the_configured_columns() {
        let columns = OutboxColumns {
            id: "event_id".into(),
            aggregate_type: "kind".into(),
            aggregate_id: "entity".into(),
            event_type: "event_type".into(),
            payload: "body".into(),
            headers: "meta".into(),
        };
        let text = columns.envelope(Uuid::nil(), &event()).unwrap();
        let parsed: Value = serde_json::from_str(&text).unwrap();
        let mut keys: Vec<_> = parsed.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            ["body", "entity", "event_id", "event_type", "kind", "meta"]
        );
        assert_eq!(parsed["kind"], "order");
        assert!(OutboxWriter::with_columns(
            OutboxTable::default(),
            OutboxColumns {
                id: "id; DROP".into(),
                ..OutboxColumns::default()
            }
        )
        .is_err());
    }

    #[test]
    fn envelope_without_headers_has_null_headers() {
        let text = MessageEnvelope::new(Uuid::nil(), &event())
            .unwrap()
            .to_json();
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["headers"], Value::Null);
        assert!(parsed.as_object().unwrap().contains_key("headers"));
    }

    #[test]
    fn envelope_round_trips() {
        let env = MessageEnvelope::new(Uuid::now_v7(), &event()).unwrap();
        let back: MessageEnvelope = serde_json::from_str(&env.to_json()).unwrap();
        assert_eq!(back, env);
    }

    #[test]
    fn envelope_keeps_any_payload_json() {
        for payload in [json!(null), json!("text"), json!([1, 2]), json!(1.5)] {
            let mut e = event();
            e.payload = payload.clone();
            let text = MessageEnvelope::new(Uuid::nil(), &e).unwrap().to_json();
            let parsed: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(parsed["payload"], payload);
        }
    }

    #[test]
    fn headers_must_be_an_object() {
        let e = event().with_headers(json!(["not", "an", "object"]));
        assert!(matches!(
            MessageEnvelope::new(Uuid::nil(), &e),
            Err(AppError::InvalidHeaders { kind: "an array" })
        ));
        let null_headers = event().with_headers(Value::Null);
        assert_eq!(
            MessageEnvelope::new(Uuid::nil(), &null_headers)
                .unwrap()
                .headers,
            None
        );
    }

    #[test]
    fn given_id_is_kept_and_missing_id_is_generated() {
        let id = Uuid::new_v4();
        assert_eq!(event().with_id(id).id_or_new(), id);
        let generated = event().id_or_new();
        assert_eq!(generated.get_version_num(), 7);
    }

    #[test]
    fn table_names_are_validated_and_quoted() {
        assert_eq!(OutboxTable::new("outbox").unwrap().quoted(), "\"outbox\"");
        assert_eq!(
            OutboxTable::new("public.Outbox_2").unwrap().quoted(),
            "\"public\".\"Outbox_2\""
        );
        assert_eq!(OutboxTable::default().quoted(), "\"outbox\"");
        assert!(OutboxTable::new("_t$1").is_ok());
        for bad in [
            "",
            ".",
            "a.",
            ".a",
            "a.b.c",
            "1abc",
            "$abc",
            "out box",
            "outbox\"; DROP TABLE orders; --",
            "ünïcode",
            &"x".repeat(64),
        ] {
            assert!(
                matches!(
                    OutboxTable::new(bad),
                    Err(AppError::InvalidIdentifier { .. })
                ),
                "{bad:?} should be rejected"
            );
        }
        assert!(OutboxTable::new(&"x".repeat(63)).is_ok());
    }
}

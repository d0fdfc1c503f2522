//! The settings of the route stage: which columns make the key, value, topic and headers of a
//! record, and how they are written. Names follow Debezium's Outbox Event Router where the
//! option exists there (docs/migrating-from-debezium.md maps them one by one).

use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

/// How a key or value is written to Kafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordFormat {
    /// The column's bytes unchanged (Kafka Connect's StringConverter).
    #[default]
    String,
    /// Kafka Connect's JsonConverter with `schemas.enable=false`.
    Json,
}

/// Where a record's timestamp comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestampSource {
    #[default]
    Commit,
    Produce,
}

/// The route stage's settings, flattened into `run`'s (and `peek`'s, `replay`'s, `poll`'s).
#[derive(Debug, Clone, Args, Default, Serialize, Deserialize)]
pub struct RouteArgs {
    /// Topic template; `${column}` is replaced by that column's value, `${routedByValue}` by
    /// the route-by column's [default: outbox.event.${routedByValue}].
    #[arg(long, env = "OUTBOX_TOPIC")]
    pub topic: Option<String>,

    /// Column whose value routes the event [default: aggregatetype].
    #[arg(long, env = "OUTBOX_ROUTE_BY")]
    pub route_by: Option<String>,

    /// Column used as the Kafka key [default: aggregateid].
    #[arg(long, env = "OUTBOX_KEY_COLUMN")]
    pub key_column: Option<String>,

    /// Event id column, sent as header `id` [default: id].
    #[arg(long, env = "OUTBOX_ID_COLUMN")]
    pub id_column: Option<String>,

    /// Event type column, sent as header `type` [default: type].
    #[arg(long, env = "OUTBOX_TYPE_COLUMN")]
    pub type_column: Option<String>,

    /// Payload column (jsonb, json, text or bytea; bytes passed unchanged) [default: payload].
    #[arg(long, env = "OUTBOX_PAYLOAD_COLUMN")]
    pub payload_column: Option<String>,

    /// Optional jsonb column whose object entries become headers [default: headers].
    #[arg(long, env = "OUTBOX_HEADERS_COLUMN")]
    pub headers_column: Option<String>,

    /// Extra column sent as a header, `column` or `column:header-name` (repeatable; in the
    /// environment comma-separated).
    #[arg(
        long = "header-column",
        value_name = "COLUMN[:HEADER]",
        env = "OUTBOX_HEADER_COLUMNS",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub header_columns: Vec<String>,

    /// Topic for rows that cannot be routed (NULL key, missing route value, too large).
    /// Without it such a row stops the tailer.
    #[arg(long, env = "OUTBOX_DEAD_LETTER_TOPIC")]
    pub dead_letter_topic: Option<String>,

    /// Largest record accepted, in bytes (key + value + headers) [default: 1000000]. Larger rows
    /// are unroutable (dead-letter topic, or the tailer stops). Keep it at or below every
    /// topic's `max.message.bytes` (broker default 1048588): see docs/operations.md.
    #[arg(long, env = "OUTBOX_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,

    /// How the key is written: `string` (the column's text, as Kafka Connect's StringConverter
    /// writes it) or `json` (as the JsonConverter without schemas: a text key `order-1` becomes
    /// `"order-1"`, quotes included) [default: string].
    #[arg(long, value_enum, env = "OUTBOX_KEY_FORMAT")]
    pub key_format: Option<RecordFormat>,

    /// How the value is written: `string` (the payload unchanged) or `json` (as Debezium's
    /// JsonConverter without schemas: the payload as a JSON string, or as the JSON document
    /// itself with --expand-json-payload) [default: string].
    #[arg(long, value_enum, env = "OUTBOX_VALUE_FORMAT")]
    pub value_format: Option<RecordFormat>,

    /// With --value-format json: write a JSON payload as the document itself rather than as a
    /// JSON string holding it (Debezium's `table.expand.json.payload`).
    #[arg(long, env = "OUTBOX_EXPAND_JSON_PAYLOAD")]
    #[serde(default)]
    pub expand_json_payload: bool,

    /// Debezium's `table.fields.additional.placement`: `column:header[:alias]` sends a column
    /// as a header, `column:envelope[:alias]` puts it beside the payload in a JSON object
    /// value `{"payload":…,"<alias>":…}` (needs --value-format json). Repeatable; in the
    /// environment comma-separated.
    #[arg(
        long = "field-placement",
        value_name = "COLUMN:PLACEMENT[:ALIAS]",
        env = "OUTBOX_FIELD_PLACEMENTS",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub field_placements: Vec<String>,

    /// Debezium's `route.topic.regex`: a regular expression over the route-by value whose
    /// named groups (and `$1`…) the topic template may use, e.g. `(?<routedByValue>.*)Created`.
    /// A value it does not match is unroutable.
    #[arg(long, env = "OUTBOX_ROUTE_TOPIC_REGEX")]
    pub route_topic_regex: Option<String>,

    /// Debezium's `route.tombstone.on.empty.payload`: a NULL payload becomes a tombstone (a
    /// record with a key and no value) rather than a record with an empty value.
    #[arg(long, env = "OUTBOX_TOMBSTONE_ON_EMPTY_PAYLOAD")]
    #[serde(default)]
    pub tombstone_on_empty_payload: bool,

    /// The record's timestamp: `commit` (the transaction's commit time, the same on every
    /// re-send) or `produce` (when the tailer hands the record over, close to what Debezium
    /// sets) [default: commit]. --timestamp-column overrides both.
    #[arg(long, value_enum, env = "OUTBOX_RECORD_TIMESTAMP")]
    pub record_timestamp: Option<TimestampSource>,

    /// Debezium's `table.field.event.timestamp`: a timestamp/timestamptz column, or a bigint
    /// of milliseconds since the epoch, that becomes the record's timestamp.
    #[arg(long, env = "OUTBOX_TIMESTAMP_COLUMN")]
    pub timestamp_column: Option<String>,

    /// Column holding the writer's trace context as Debezium writes it (`traceparent=…` and
    /// `tracestate=…` lines); sent as W3C `traceparent`/`tracestate` headers. A `traceparent`
    /// (and `tracestate`) column is read too when the table has one
    /// [default: tracingspancontext, when the table has it].
    #[arg(long, env = "OUTBOX_TRACING_COLUMN")]
    pub tracing_column: Option<String>,

    /// Send only the headers Debezium's router sends (`id`, placed fields, the headers
    /// column, trace context): no `type` unless placed, no `outbox-*` position headers. Those
    /// headers are what idempotent resume and `replay` read back, so this needs
    /// `--resume-scan-records 0` and re-sends events after a crash, as Debezium does.
    #[arg(long, env = "OUTBOX_DEBEZIUM_HEADERS_ONLY")]
    #[serde(default)]
    pub debezium_headers_only: bool,
}

//! Decode stage: pgoutput messages in, outbox rows out.
//!
//! Relation messages describe tables; for the configured outbox table the column positions of
//! every role (id, route-by, key, type, payload, headers, extra headers) are resolved once per
//! Relation, so each Insert is routed by index without looking names up. After a reconnect the
//! cache starts empty: PostgreSQL re-sends Relation messages before first use.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use pgoutput::{Message, Relation, RelationCache, TupleData, TupleValue};

use crate::config::settings::RecordTimestamp;
use crate::config::RouteConfig;
use crate::error::TailerError;
use crate::pg::names::TableName;

const BYTEA_OID: u32 = 17;

/// A column placed beside the payload (`--field-placement column:envelope:alias`).
#[derive(Debug, Clone)]
pub struct EnvelopeField {
    pub index: usize,
    pub alias: String,
    pub type_oid: u32,
}

/// Where each role's column sits in the outbox relation.
#[derive(Debug)]
pub struct OutboxLayout {
    pub id: usize,
    pub route_by: usize,
    pub key: usize,
    /// None: the table has no `type` column (and none was named).
    pub event_type: Option<usize>,
    pub key_type: u32,
    pub payload: usize,
    pub payload_type: u32,
    pub payload_is_bytea: bool,
    pub headers: Option<usize>,
    pub extra_headers: Vec<(usize, String)>,
    /// Fields beside the payload in a JSON object value.
    pub envelope: Vec<EnvelopeField>,
    /// The record timestamp column and its type.
    pub timestamp: Option<(usize, u32)>,
    /// Debezium's `tracingspancontext`, and plain `traceparent`/`tracestate` columns.
    pub tracing: Option<usize>,
    pub traceparent: Option<usize>,
    pub tracestate: Option<usize>,
    /// Column name → position, for `${column}` in the topic template.
    pub by_name: HashMap<String, usize>,
}

impl OutboxLayout {
    fn resolve(
        rel: &Relation,
        route: &RouteConfig,
        table: &TableName,
    ) -> Result<Self, TailerError> {
        let need = |col: &str, flag: &str| {
            rel.column_index(col).ok_or_else(|| {
                TailerError::Config(format!(
                    "outbox table {table} has no column `{col}`: set {flag} to the column that \
                     holds it (columns: {})",
                    rel.columns
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
        };
        let payload = need(&route.payload_column, "--payload-column")?;
        let mut extra_headers = Vec::new();
        for (col, header) in &route.header_columns {
            extra_headers.push((need(col, "--header-column")?, header.clone()));
        }
        let mut envelope = Vec::new();
        for (col, alias) in &route.envelope_fields {
            let index = need(col, "--field-placement")?;
            envelope.push(EnvelopeField {
                index,
                alias: alias.clone(),
                type_oid: rel.columns[index].type_oid,
            });
        }
        let optional = |col: &str, required: bool, flag: &str| {
            if required {
                need(col, flag).map(Some)
            } else {
                Ok(rel.column_index(col))
            }
        };
        let timestamp = match &route.timestamp {
            RecordTimestamp::Column(col) => {
                let i = need(col, "--timestamp-column")?;
                Some((i, rel.columns[i].type_oid))
            }
            _ => None,
        };
        let key = need(&route.key_column, "--key-column")?;
        Ok(OutboxLayout {
            id: need(&route.id_column, "--id-column")?,
            route_by: need(&route.route_by, "--route-by")?,
            key,
            key_type: rel.columns[key].type_oid,
            event_type: optional(
                &route.type_column,
                route.type_column_required,
                "--type-column",
            )?,
            payload,
            payload_type: rel.columns[payload].type_oid,
            payload_is_bytea: rel.columns[payload].type_oid == BYTEA_OID,
            headers: rel.column_index(&route.headers_column),
            extra_headers,
            envelope,
            timestamp,
            tracing: optional(
                &route.tracing_column,
                route.tracing_column_required,
                "--tracing-column",
            )?,
            traceparent: rel.column_index(crate::relay::route::trace::TRACEPARENT),
            tracestate: rel.column_index(crate::relay::route::trace::TRACESTATE),
            by_name: rel
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| (c.name.clone(), i))
                .collect(),
        })
    }
}

/// One inserted outbox row, its values still borrowed from the WAL message.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub layout: Arc<OutboxLayout>,
    pub tuple: TupleData,
}

/// What a pgoutput message means for the pipeline.
#[derive(Debug)]
pub enum Decoded {
    Row(OutboxRow),
    /// Schema or a change the outbox does not care about.
    Nothing,
}

/// Turns pgoutput messages into outbox rows.
#[derive(Debug)]
pub struct EventDecoder {
    table: TableName,
    route: RouteConfig,
    relations: RelationCache,
    outbox: HashMap<u32, Arc<OutboxLayout>>,
    envelope: Arc<OutboxLayout>,
    envelope_columns: Vec<String>,
}

impl EventDecoder {
    pub fn new(table: TableName, route: RouteConfig) -> Result<Self, TailerError> {
        let (envelope, envelope_columns) = envelope_layout(&route, &table)?;
        Ok(EventDecoder {
            table,
            route,
            relations: RelationCache::new(),
            outbox: HashMap::new(),
            envelope: Arc::new(envelope),
            envelope_columns,
        })
    }

    /// The column names of a synthetic row (see [`EventDecoder::row_from_values`]), in order.
    pub fn envelope_columns(&self) -> &[String] {
        &self.envelope_columns
    }

    /// A row from values in [`EventDecoder::envelope_columns`] order (the polling relay reads
    /// rows with SQL instead of from the WAL).
    pub fn row_from_values(&self, values: Vec<TupleValue>) -> OutboxRow {
        OutboxRow {
            layout: Arc::clone(&self.envelope),
            tuple: TupleData::new(values),
        }
    }

    /// An event written with `pg_logical_emit_message`: its content is a JSON envelope whose
    /// keys are the outbox column names (`{"id": …, "aggregatetype": …, "aggregateid": …,
    /// "type": …, "payload": …, "headers": {…}}`). String values are taken as text, other
    /// values as their JSON text; a missing key is NULL. Content that is not a JSON object
    /// comes back as a row with only the payload set (the raw bytes) plus the reason.
    pub fn on_logical_message(&self, content: &Bytes) -> Result<OutboxRow, (OutboxRow, String)> {
        let values = match serde_json::from_slice::<serde_json::Value>(content) {
            Ok(serde_json::Value::Object(map)) => self
                .envelope_columns
                .iter()
                .map(|name| match map.get(name) {
                    None | Some(serde_json::Value::Null) => TupleValue::Null,
                    Some(serde_json::Value::String(s)) if name != &self.route.payload_column => {
                        TupleValue::Text(Bytes::from(s.clone()))
                    }
                    Some(other) => TupleValue::Text(Bytes::from(other.to_string())),
                })
                .collect(),
            _ => {
                let values = self
                    .envelope_columns
                    .iter()
                    .map(|name| {
                        if name == &self.route.payload_column {
                            TupleValue::Text(content.clone())
                        } else {
                            TupleValue::Null
                        }
                    })
                    .collect();
                let row = OutboxRow {
                    layout: Arc::clone(&self.envelope),
                    tuple: TupleData::new(values),
                };
                return Err((row, "logical message content is not a JSON object".into()));
            }
        };
        Ok(OutboxRow {
            layout: Arc::clone(&self.envelope),
            tuple: TupleData::new(values),
        })
    }

    /// Forget every relation: called on reconnect.
    pub fn reset(&mut self) {
        self.relations.clear();
        self.outbox.clear();
    }

    pub fn on_message(&mut self, message: Message) -> Result<Decoded, TailerError> {
        match message {
            Message::Relation(rel) => {
                if rel.namespace_or_public() == self.table.schema && rel.name == self.table.name {
                    let layout = OutboxLayout::resolve(&rel, &self.route, &self.table)?;
                    self.outbox.insert(rel.oid, Arc::new(layout));
                } else {
                    self.outbox.remove(&rel.oid);
                }
                self.relations.insert_relation(rel);
                Ok(Decoded::Nothing)
            }
            Message::Type(ty) => {
                self.relations.insert_type(ty);
                Ok(Decoded::Nothing)
            }
            Message::Insert(insert) => {
                let Some(layout) = self.outbox.get(&insert.relation_oid) else {
                    if self.relations.relation(insert.relation_oid).is_none() {
                        return Err(TailerError::Bug(format!(
                            "an Insert arrived for relation OID {} before its Relation message",
                            insert.relation_oid
                        )));
                    }
                    return Ok(Decoded::Nothing);
                };
                if insert.new.len() != layout.by_name.len() {
                    return Err(TailerError::Bug(format!(
                        "an outbox Insert carries {} columns but its Relation announced {}",
                        insert.new.len(),
                        layout.by_name.len()
                    )));
                }
                Ok(Decoded::Row(OutboxRow {
                    layout: Arc::clone(layout),
                    tuple: insert.new,
                }))
            }
            _ => Ok(Decoded::Nothing),
        }
    }
}

/// The layout of message envelopes: the configured column names, in a fixed order.
fn envelope_layout(
    route: &RouteConfig,
    table: &TableName,
) -> Result<(OutboxLayout, Vec<String>), TailerError> {
    let mut names: Vec<String> = vec![
        route.id_column.clone(),
        route.route_by.clone(),
        route.key_column.clone(),
        route.type_column.clone(),
        route.payload_column.clone(),
        route.headers_column.clone(),
    ];
    names.extend(route.header_columns.iter().map(|(c, _)| c.clone()));
    names.extend(route.envelope_fields.iter().map(|(c, _)| c.clone()));
    if let RecordTimestamp::Column(col) = &route.timestamp {
        names.push(col.clone());
    }
    if route.tracing_column_required {
        names.push(route.tracing_column.clone());
    }
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    let rel = Relation {
        stream_xid: None,
        oid: 0,
        namespace: table.schema.clone(),
        name: table.name.clone(),
        replica_identity: pgoutput::ReplicaIdentity::Nothing,
        columns: names
            .iter()
            .map(|n| pgoutput::Column {
                flags: 0,
                name: n.clone(),
                type_oid: 3802,
                type_modifier: -1,
            })
            .collect(),
    };
    Ok((OutboxLayout::resolve(&rel, route, table)?, names))
}

trait NamespaceExt {
    fn namespace_or_public(&self) -> &str;
}

impl NamespaceExt for Relation {
    /// pgoutput sends an empty namespace for `pg_catalog`; tables elsewhere carry theirs.
    fn namespace_or_public(&self) -> &str {
        if self.namespace.is_empty() {
            "pg_catalog"
        } else {
            &self.namespace
        }
    }
}

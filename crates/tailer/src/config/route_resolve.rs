//! From [`RouteArgs`] to the [`RouteConfig`] the route stage is built from: defaults applied,
//! header names and placements checked, the topic template and regex compiled once so a bad
//! one stops the tailer before it connects.

use crate::config::route_args::{RecordFormat, RouteArgs, TimestampSource};
use crate::config::settings::{is_reserved_header, RecordTimestamp, RouteConfig};
use crate::config::topic_template::TopicTemplate;
use crate::error::TailerError;

impl RouteArgs {
    pub fn settings(&self) -> Result<RouteConfig, TailerError> {
        let d = RouteConfig::default();
        let mut header_columns = Vec::new();
        for spec in &self.header_columns {
            let (col, header) = spec.split_once(':').unwrap_or((spec, spec));
            if col.is_empty() || header.is_empty() {
                return Err(TailerError::Config(format!(
                    "header column {spec:?}: expected `column` or `column:header-name`"
                )));
            }
            header_columns.push((col.to_owned(), header.to_owned()));
        }
        let mut envelope_fields = Vec::new();
        for spec in &self.field_placements {
            let (col, placement, alias) = placement(spec)?;
            match placement {
                "header" => header_columns.push((col.to_owned(), alias.to_owned())),
                "envelope" => envelope_fields.push((col.to_owned(), alias.to_owned())),
                "partition" => {
                    return Err(TailerError::Config(format!(
                        "field placement {spec:?}: `partition` placement is not supported (the \
                         tailer places a key's records on the partition Kafka's Java producer \
                         would, so the key keeps per-aggregate order); drop it or use a key \
                         column"
                    )))
                }
                other => {
                    return Err(TailerError::Config(format!(
                        "field placement {spec:?}: placement `{other}` is not one of header, \
                         envelope"
                    )))
                }
            }
        }
        for (col, header) in &header_columns {
            if is_reserved_header(header) {
                return Err(TailerError::Config(format!(
                    "header column `{col}`: `{header}` would shadow the tailer's own position \
                     headers (names starting with `outbox-` are reserved): name it \
                     `{col}:<another-header>`"
                )));
            }
        }
        let value_format = self.value_format.unwrap_or_default();
        if !envelope_fields.is_empty() && value_format != RecordFormat::Json {
            return Err(TailerError::Config(
                "envelope field placement builds a JSON object value: set --value-format json"
                    .into(),
            ));
        }
        if let Some((_, field)) = envelope_fields.iter().find(|(_, f)| f == "payload") {
            return Err(TailerError::Config(format!(
                "envelope field `{field}` would replace the payload itself: give it an alias \
                 (`column:envelope:<alias>`)"
            )));
        }
        if self.expand_json_payload && value_format != RecordFormat::Json {
            return Err(TailerError::Config(
                "--expand-json-payload writes the payload as a JSON document: set \
                 --value-format json (with the string format the payload is sent unchanged \
                 already)"
                    .into(),
            ));
        }
        if let Some(regex) = &self.route_topic_regex {
            regex::Regex::new(regex).map_err(|e| {
                TailerError::Config(format!("route_topic_regex {regex:?} does not compile: {e}"))
            })?;
        }
        let timestamp = match (&self.timestamp_column, self.record_timestamp) {
            (Some(col), _) => RecordTimestamp::Column(col.clone()),
            (None, Some(TimestampSource::Produce)) => RecordTimestamp::Produce,
            (None, _) => RecordTimestamp::Commit,
        };
        let route = RouteConfig {
            topic: or_default(&self.topic, &d.topic),
            topic_regex: self.route_topic_regex.clone(),
            route_by: or_default(&self.route_by, &d.route_by),
            key_column: or_default(&self.key_column, &d.key_column),
            id_column: or_default(&self.id_column, &d.id_column),
            type_column: or_default(&self.type_column, &d.type_column),
            type_column_required: self.type_column.is_some(),
            payload_column: or_default(&self.payload_column, &d.payload_column),
            headers_column: or_default(&self.headers_column, &d.headers_column),
            header_columns,
            envelope_fields,
            key_format: self.key_format.unwrap_or_default(),
            value_format,
            expand_json_payload: self.expand_json_payload,
            tombstone_on_empty_payload: self.tombstone_on_empty_payload,
            timestamp,
            tracing_column: or_default(&self.tracing_column, &d.tracing_column),
            tracing_column_required: self.tracing_column.is_some(),
            position_headers: !self.debezium_headers_only,
            dead_letter_topic: self.dead_letter_topic.clone(),
            max_message_bytes: self.max_message_bytes.unwrap_or(d.max_message_bytes),
        };
        TopicTemplate::parse(&route.topic)?;
        Ok(route)
    }
}

/// `column:placement[:alias]`; the alias defaults to the column.
fn placement(spec: &str) -> Result<(&str, &str, &str), TailerError> {
    let mut parts = spec.split(':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(col), Some(placement), alias, None) if !col.is_empty() && !placement.is_empty() => {
            let alias = alias.filter(|a| !a.is_empty()).unwrap_or(col);
            Ok((col, placement, alias))
        }
        _ => Err(TailerError::Config(format!(
            "field placement {spec:?}: expected `column:header[:alias]` or \
             `column:envelope[:alias]`"
        ))),
    }
}

fn or_default(value: &Option<String>, default: &str) -> String {
    value.clone().unwrap_or_else(|| default.to_owned())
}

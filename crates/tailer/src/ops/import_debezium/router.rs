//! The Outbox Event Router's own options (`transforms.<router>.*`): each mapped to a setting,
//! noted as without effect, or listed as not honoured.

use super::{set, set_bool, toml_string, Imported, DEFAULT_TOPIC_REGEX};

/// One `transforms.<router>.<option>`; false for an option the router does not have.
pub(super) fn option(out: &mut Imported, key: &str, option: &str, value: &str) -> bool {
    match option {
        "type" => {}
        "table.field.event.id" => set(out, "id_column", value),
        "table.field.event.key" => set(out, "key_column", value),
        "table.field.event.type" => set(out, "type_column", value),
        "table.field.event.payload" => set(out, "payload_column", value),
        "table.field.event.timestamp" => set(out, "timestamp_column", value),
        "route.by.field" => set(out, "route_by", value),
        "route.topic.replacement" => set(out, "topic", &java_replacement(value)),
        "route.topic.regex" if value == DEFAULT_TOPIC_REGEX => {}
        "route.topic.regex" => set(out, "route_topic_regex", value),
        "table.expand.json.payload" => set_bool(out, "expand_json_payload", value),
        "route.tombstone.on.empty.payload" => set_bool(out, "tombstone_on_empty_payload", value),
        "tracing.span.context.field" => set(out, "tracing_column", value),
        "table.fields.additional.placement" => {
            let mut placements = Vec::new();
            for spec in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                if spec.split(':').nth(1).map(str::trim) == Some("partition") {
                    out.unsupported.push((
                        key.to_owned(),
                        format!(
                            "`{spec}`: partition placement; the tailer places each key where \
                             Kafka's Java producer does (murmur2 of the key)"
                        ),
                    ));
                } else {
                    placements.push(toml_string(spec));
                }
            }
            if !placements.is_empty() {
                out.settings.insert(
                    "field_placements".into(),
                    format!("[{}]", placements.join(", ")),
                );
            }
        }
        "table.fields.additional.error.on.missing" if value == "true" => {}
        "table.json.payload.null.behavior" if value == "ignore" => {}
        "table.op.invalid.behavior" | "debezium.op.invalid.behavior" => out.ignored.push((
            key.to_owned(),
            "updates and deletes of the outbox are never published".into(),
        )),
        "tracing.operation.name" | "tracing.with.context.field.only" => out.ignored.push((
            key.to_owned(),
            "the tailer passes the writer's trace context on as W3C headers and starts no \
             spans of its own"
                .into(),
        )),
        "table.fields.additional.error.on.missing"
        | "table.json.payload.null.behavior"
        | "table.field.event.schema.version" => out.unsupported.push((
            key.to_owned(),
            format!("{option}={value} is not supported (see docs/migrating-from-debezium.md)"),
        )),
        _ if option.starts_with("predicate") || option == "negate" => out.unsupported.push((
            key.to_owned(),
            "predicates: the tailer routes every insert into the outbox table".into(),
        )),
        _ => return false,
    }
    true
}

/// Java's `$1` group references as the template's `${1}`.
fn java_replacement(value: &str) -> String {
    let mut out = String::new();
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push_str("${");
            while let Some(d) = chars.next_if(char::is_ascii_digit) {
                out.push(d);
            }
            out.push('}');
        } else {
            out.push(c);
        }
    }
    out
}

//! `outbox-tailer import-debezium FILE`: a Debezium PostgreSQL connector's configuration (the
//! JSON posted to Kafka Connect's REST API, or a `.properties` file) as the equivalent TOML
//! for `outbox-tailer run --config`.
//!
//! Every option is accounted for: mapped to a setting, noted as having no effect here (with
//! why), or listed as not honoured. An option the importer has never heard of is refused by
//! name rather than dropped. The password is never copied: it belongs in
//! `OUTBOX_POSTGRES_PASSWORD`.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::config::java_properties;
use crate::error::TailerError;

const EVENT_ROUTER: &str = "io.debezium.transforms.outbox.EventRouter";
const POSTGRES_CONNECTOR: &str = "io.debezium.connector.postgresql.PostgresConnector";
const DEFAULT_TOPIC_REGEX: &str = "(?<routedByValue>.*)";

/// What the importer made of a configuration.
#[derive(Debug, Default)]
pub struct Imported {
    /// TOML keys and their values (already TOML literals).
    pub settings: BTreeMap<String, String>,
    /// librdkafka options for the `[kafka]` table.
    pub kafka: BTreeMap<String, String>,
    /// Options with no effect on the tailer, and why.
    pub ignored: Vec<(String, String)>,
    /// Options the tailer cannot honour, and why.
    pub unsupported: Vec<(String, String)>,
}

/// Read a connector configuration: a JSON object (`{"name": …, "config": {…}}` or the config
/// map itself) or a properties text.
pub fn parse(text: &str) -> Result<BTreeMap<String, String>, TailerError> {
    let trimmed = text.trim_start();
    if !trimmed.starts_with('{') {
        return Ok(java_properties::parse(text).into_iter().collect());
    }
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| TailerError::Config(format!("the connector JSON does not parse: {e}")))?;
    let map = match value.get("config") {
        Some(serde_json::Value::Object(config)) => config.clone(),
        _ => match value {
            serde_json::Value::Object(map) => map,
            _ => unreachable!("text starting with `{{` parsed to an object"),
        },
    };
    Ok(map
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            (k, v)
        })
        .collect())
}

/// Map a configuration; unknown options are an error naming them.
pub fn import(config: &BTreeMap<String, String>) -> Result<Imported, TailerError> {
    let mut out = Imported::default();
    let mut unknown = Vec::new();
    let router = router_name(config)?;
    let mut conn = Vec::new();
    let mut key_converter = None;
    let mut value_converter = None;
    for (key, value) in config {
        if let Some(option) = router
            .as_deref()
            .and_then(|r| key.strip_prefix(&format!("transforms.{r}.")))
        {
            if !router::option(&mut out, key, option, value) {
                unknown.push(key.clone());
            }
            continue;
        }
        if let Some(option) = key.strip_prefix("producer.override.") {
            out.kafka.insert(option.to_owned(), value.clone());
            continue;
        }
        match key.as_str() {
            "connector.class" if value == POSTGRES_CONNECTOR => {}
            "connector.class" => {
                return Err(TailerError::Config(format!(
                    "connector.class is {value}: only Debezium's PostgreSQL connector \
                     ({POSTGRES_CONNECTOR}) can be imported"
                )))
            }
            "database.hostname" => conn.push(conn_param("host", value)),
            "database.port" => conn.push(conn_param("port", value)),
            "database.user" => conn.push(conn_param("user", value)),
            "database.dbname" => conn.push(conn_param("dbname", value)),
            "database.sslmode" => conn.push(conn_param("sslmode", value)),
            "database.sslrootcert" => conn.push(conn_param("sslrootcert", value)),
            "database.sslcert" => conn.push(conn_param("sslcert", value)),
            "database.sslkey" => conn.push(conn_param("sslkey", value)),
            "database.password" => out.ignored.push((
                key.clone(),
                "not copied into the file: pass it as OUTBOX_POSTGRES_PASSWORD".into(),
            )),
            "slot.name" => set(&mut out, "slot", value),
            "publication.name" => set(&mut out, "publication", value),
            "table.include.list" | "table.whitelist" => {
                if value.contains(',') {
                    out.unsupported.push((
                        key.clone(),
                        "more than one table: the tailer reads one outbox table; run one \
                         tailer per table"
                            .into(),
                    ));
                } else {
                    set(&mut out, "table", value);
                }
            }
            "plugin.name" if value == "pgoutput" => {}
            "plugin.name" => out.unsupported.push((
                key.clone(),
                format!("{value}: the tailer decodes pgoutput only (PostgreSQL's built-in)"),
            )),
            "slot.drop.on.stop" if value == "false" => {}
            "slot.drop.on.stop" => out.unsupported.push((
                key.clone(),
                "the tailer never drops its slot (that would lose events)".into(),
            )),
            "key.converter" => key_converter = Some(converter(&mut out, key, value)),
            "value.converter" => value_converter = Some(converter(&mut out, key, value)),
            "key.converter.schemas.enable" | "value.converter.schemas.enable" => {
                if value != "false" {
                    out.unsupported.push((
                        key.clone(),
                        "JsonConverter with schemas: the tailer writes the schemaless JSON \
                         (schemas.enable=false); consumers that need schemas keep Debezium"
                            .into(),
                    ));
                }
            }
            "transforms" | "transforms.outbox.type" => {}
            k if k.starts_with("transforms.") && k.ends_with(".type") => {}
            "name" | "tasks.max" => out
                .ignored
                .push((key.clone(), "a Kafka Connect setting".into())),
            "topic.prefix" | "database.server.name" => out.ignored.push((
                key.clone(),
                "names Debezium's change-event topics; outbox topics come from the route \
                 settings"
                    .into(),
            )),
            "schema.include.list" | "schema.whitelist" => out
                .ignored
                .push((key.clone(), "the outbox table is named by `table`".into())),
            "snapshot.mode" => out.ignored.push((
                key.clone(),
                "the tailer never snapshots: an outbox is insert-only and streams from the slot"
                    .into(),
            )),
            "tombstones.on.delete" => out.ignored.push((
                key.clone(),
                "deletes from the outbox are never published".into(),
            )),
            "publication.autocreate.mode" => out.ignored.push((
                key.clone(),
                "`outbox-tailer setup` creates the publication (FOR TABLE <outbox>, inserts \
                 only) when missing and never alters an existing one"
                    .into(),
            )),
            "heartbeat.interval.ms" | "heartbeat.action.query" => out.ignored.push((
                key.clone(),
                "the tailer confirms the slot on every status interval, also when the outbox \
                 is idle (no heartbeat table needed)"
                    .into(),
            )),
            "offset.flush.interval.ms" | "offset.storage" | "offset.storage.file.filename" => {
                out.ignored.push((
                    key.clone(),
                    "the slot's confirmed LSN is the tailer's only offset, moved after Kafka's \
                     acks"
                        .into(),
                ))
            }
            "decimal.handling.mode" | "time.precision.mode" | "binary.handling.mode" => {
                out.ignored.push((
                    key.clone(),
                    "applies to Debezium's change events; outbox columns are sent as text".into(),
                ))
            }
            "extended.headers.enabled" => out.ignored.push((
                key.clone(),
                "the tailer never sends Debezium's __debezium.context.* headers".into(),
            )),
            _ => unknown.push(key.clone()),
        }
    }
    if router.is_none() {
        return Err(TailerError::Config(format!(
            "no Outbox Event Router among `transforms`: a connector without {EVENT_ROUTER} \
             publishes change events, not outbox events, and is not one the tailer replaces"
        )));
    }
    if !unknown.is_empty() {
        return Err(TailerError::Config(format!(
            "unknown options, not imported: {} (remove them, or tell us what they should \
             become)",
            unknown.join(", ")
        )));
    }
    if !conn.is_empty() {
        set(&mut out, "postgres", &conn.join(" "));
    }
    // JsonConverter's `schemas.enable` defaults to true.
    for (side, format) in [("key", key_converter), ("value", value_converter)] {
        let flag = format!("{side}.converter.schemas.enable");
        if format == Some(Some("json")) && !config.contains_key(&flag) {
            out.unsupported.push((
                flag,
                "not set, so JsonConverter writes schemas (its default): the tailer writes \
                 the schemaless JSON; set it to false in Debezium first, or keep Debezium"
                    .into(),
            ));
        }
    }
    for (setting, format) in [
        ("key_format", key_converter),
        ("value_format", value_converter),
    ] {
        match format {
            Some(Some(f)) => set(&mut out, setting, f),
            Some(None) => {}
            None => out.ignored.push((
                setting.replace("_format", ".converter"),
                "not in the file: the Connect worker's default applied (often JsonConverter); \
                 set key_format/value_format to match it"
                    .into(),
            )),
        }
    }
    Ok(out)
}

/// The name of the Outbox Event Router transform, if there is one; another transform in
/// the chain is refused.
fn router_name(config: &BTreeMap<String, String>) -> Result<Option<String>, TailerError> {
    let Some(chain) = config.get("transforms") else {
        return Ok(None);
    };
    let mut router = None;
    for name in chain.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let class = config
            .get(&format!("transforms.{name}.type"))
            .map(String::as_str);
        if class == Some(EVENT_ROUTER) {
            router = Some(name.to_owned());
        } else {
            return Err(TailerError::Config(format!(
                "transform `{name}` ({}) cannot be imported: the tailer applies the Outbox \
                 Event Router only; drop it from the chain or keep Debezium",
                class.unwrap_or("no type")
            )));
        }
    }
    Ok(router)
}

/// `Some(format)` for a converter the tailer writes, `None` (listed) for one it cannot.
fn converter(out: &mut Imported, key: &str, class: &str) -> Option<&'static str> {
    match class {
        "org.apache.kafka.connect.storage.StringConverter" => Some("string"),
        "org.apache.kafka.connect.json.JsonConverter" => Some("json"),
        other => {
            out.unsupported.push((
                key.to_owned(),
                format!(
                    "{other}: the tailer writes StringConverter's or JsonConverter's \
                     (schemaless) bytes"
                ),
            ));
            None
        }
    }
}

/// `key=value` for a libpq connection string, the value quoted when it needs it.
fn conn_param(key: &str, value: &str) -> String {
    if !value.is_empty() && !value.contains(|c: char| c.is_whitespace() || c == '\'' || c == '\\') {
        return format!("{key}={value}");
    }
    let escaped = value.replace('\\', "\\\\").replace('\'', "\\'");
    format!("{key}='{escaped}'")
}

fn set(out: &mut Imported, key: &str, value: &str) {
    out.settings.insert(key.to_owned(), toml_string(value));
}

fn set_bool(out: &mut Imported, key: &str, value: &str) {
    out.settings
        .insert(key.to_owned(), (value.trim() == "true").to_string());
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// The TOML file, with what was not carried over as comments.
pub fn render(imported: &Imported, source: &str) -> String {
    let mut out = format!(
        "# outbox-tailer configuration imported from {source}\n\
         # (outbox-tailer import-debezium; docs/migrating-from-debezium.md has the cut-over)\n"
    );
    for (reason_kind, list) in [
        ("NOT HONOURED", &imported.unsupported),
        ("no effect here", &imported.ignored),
    ] {
        for (key, why) in list {
            let _ = writeln!(out, "# {reason_kind}: {key}: {why}");
        }
    }
    out.push('\n');
    for (key, value) in &imported.settings {
        let _ = writeln!(out, "{key} = {value}");
    }
    if !imported.kafka.is_empty() {
        out.push_str("\n[kafka]\n");
        for (key, value) in &imported.kafka {
            let _ = writeln!(out, "{} = {}", toml_string(key), toml_string(value));
        }
    }
    out
}

mod router;

#[cfg(test)]
mod tests;

use std::path::Path;

use super::*;
use crate::config::file::SettingsFile;

/// `debezium-examples/outbox/register-postgres.json`, as its README posts it.
const EXAMPLE_JSON: &str = r#"{
    "name": "outbox-connector",
    "config": {
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "tasks.max": "1",
        "database.hostname": "order-db",
        "database.port": "5432",
        "database.user": "postgresuser",
        "database.password": "postgrespw",
        "database.dbname": "orderdb",
        "topic.prefix": "dbserver1",
        "schema.include.list": "inventory",
        "table.include.list": "inventory.outboxevent",
        "tombstones.on.delete": "false",
        "transforms": "outbox",
        "transforms.outbox.type": "io.debezium.transforms.outbox.EventRouter",
        "transforms.outbox.route.topic.replacement": "${routedByValue}.events",
        "transforms.outbox.table.field.event.timestamp": "timestamp",
        "transforms.outbox.table.fields.additional.placement": "type:header:eventType"
    }
}"#;

/// The options of the router's documentation, in a properties file.
const EXAMPLE_PROPERTIES: &str = "\
name=outbox
connector.class=io.debezium.connector.postgresql.PostgresConnector
database.hostname=db
database.port=5432
database.user=app
database.dbname=shop
plugin.name=pgoutput
slot.name=debezium
publication.name=dbz_publication
table.include.list=public.outbox
key.converter=org.apache.kafka.connect.json.JsonConverter
key.converter.schemas.enable=false
value.converter=org.apache.kafka.connect.json.JsonConverter
value.converter.schemas.enable=false
producer.override.compression.type=zstd
transforms=outbox
transforms.outbox.type=io.debezium.transforms.outbox.EventRouter
transforms.outbox.table.expand.json.payload=true
transforms.outbox.route.topic.regex=(?<routedByValue>.*)Aggregate
transforms.outbox.route.topic.replacement=$1.events
transforms.outbox.route.tombstone.on.empty.payload=true
transforms.outbox.table.fields.additional.placement=type:header:type,type:envelope:eventType,partitionColumn:partition
";

/// The imported file must load as a configuration: every key it writes is a known setting.
fn loads(toml: &str) {
    let dir = std::env::temp_dir().join(format!("import-debezium-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{:x}.toml", toml.len()));
    std::fs::write(&path, toml).unwrap();
    let loaded = SettingsFile::load(Some(Path::new(&path)));
    std::fs::remove_file(&path).unwrap();
    loaded.unwrap_or_else(|e| panic!("{e}\n{toml}"));
}

#[test]
fn the_examples_json_connector_imports() {
    let imported = import(&parse(EXAMPLE_JSON).unwrap()).unwrap();
    let s = &imported.settings;
    assert_eq!(
        s["postgres"],
        "\"dbname=orderdb host=order-db port=5432 user=postgresuser\""
    );
    assert_eq!(s["table"], "\"inventory.outboxevent\"");
    assert_eq!(s["topic"], "\"${routedByValue}.events\"");
    assert_eq!(s["timestamp_column"], "\"timestamp\"");
    assert_eq!(s["field_placements"], "[\"type:header:eventType\"]");
    assert!(
        imported.unsupported.is_empty(),
        "{:?}",
        imported.unsupported
    );
    let toml = render(&imported, "register-postgres.json");
    assert!(!toml.contains("postgrespw"), "the password is never copied");
    assert!(toml.contains("OUTBOX_POSTGRES_PASSWORD"));
    assert!(toml.contains("value.converter: not in the file"));
    loads(&toml);
}

#[test]
fn a_properties_file_imports_and_lists_what_it_cannot_honour() {
    let imported = import(&parse(EXAMPLE_PROPERTIES).unwrap()).unwrap();
    let s = &imported.settings;
    assert_eq!(s["key_format"], "\"json\"");
    assert_eq!(s["value_format"], "\"json\"");
    assert_eq!(s["expand_json_payload"], "true");
    assert_eq!(s["tombstone_on_empty_payload"], "true");
    assert_eq!(s["route_topic_regex"], "\"(?<routedByValue>.*)Aggregate\"");
    assert_eq!(s["topic"], "\"${1}.events\"");
    assert_eq!(s["slot"], "\"debezium\"");
    assert_eq!(
        s["field_placements"],
        "[\"type:header:type\", \"type:envelope:eventType\"]"
    );
    assert_eq!(imported.kafka["compression.type"], "zstd");
    let unsupported: Vec<&str> = imported
        .unsupported
        .iter()
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(
        unsupported,
        ["transforms.outbox.table.fields.additional.placement"],
        "partition placement is listed, not dropped"
    );
    let toml = render(&imported, "outbox.properties");
    assert!(toml.contains("# NOT HONOURED: transforms.outbox.table.fields.additional.placement"));
    loads(&toml);
}

#[test]
fn unknown_options_and_other_transforms_are_refused_by_name() {
    let mut config = parse(EXAMPLE_JSON).unwrap();
    config.insert(
        "transforms.outbox.table.field.payload.id".into(),
        "x".into(),
    );
    config.insert("max.queue.size".into(), "8192".into());
    let err = import(&config).unwrap_err().to_string();
    assert!(
        err.contains("max.queue.size") && err.contains("transforms.outbox.table.field.payload.id"),
        "{err}"
    );
    let mut config = parse(EXAMPLE_JSON).unwrap();
    config.insert("transforms".into(), "outbox,unwrap".into());
    config.insert(
        "transforms.unwrap.type".into(),
        "io.debezium.transforms.ExtractNewRecordState".into(),
    );
    let err = import(&config).unwrap_err().to_string();
    assert!(err.contains("transform `unwrap`"), "{err}");
    let mut config = parse(EXAMPLE_JSON).unwrap();
    config.remove("transforms");
    assert!(import(&config)
        .unwrap_err()
        .to_string()
        .contains("no Outbox Event Router"));
}

#[test]
fn schemas_and_other_converters_are_not_honoured() {
    let mut config = parse(EXAMPLE_JSON).unwrap();
    config.insert(
        "value.converter".into(),
        "org.apache.kafka.connect.json.JsonConverter".into(),
    );
    config.insert(
        "key.converter".into(),
        "io.confluent.connect.avro.AvroConverter".into(),
    );
    let imported = import(&config).unwrap();
    let unsupported: Vec<&str> = imported
        .unsupported
        .iter()
        .map(|(k, _)| k.as_str())
        .collect();
    assert!(unsupported.contains(&"key.converter"), "{unsupported:?}");
    // JsonConverter's schemas.enable defaults to true.
    assert!(
        unsupported.contains(&"value.converter.schemas.enable"),
        "{unsupported:?}"
    );
}

#[test]
fn connection_values_are_quoted_when_they_need_it() {
    assert_eq!(conn_param("host", "db"), "host=db");
    assert_eq!(conn_param("dbname", "my db"), "dbname='my db'");
    assert_eq!(conn_param("user", "o'neil"), "user='o\\'neil'");
}

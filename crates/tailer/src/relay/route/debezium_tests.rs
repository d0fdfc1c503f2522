//! The route stage with Debezium's options, on rows with real column types.

use super::*;
use crate::config::settings::{RecordFormat, RecordTimestamp};
use crate::relay::decode::{Decoded, EventDecoder};
use pgoutput::{Column, Insert, Message, Relation, TupleData};

const TEXT: u32 = 25;
const UUID: u32 = 2950;
const INT4: u32 = 23;
const JSONB: u32 = 3802;
const TIMESTAMP: u32 = 1114;

/// A table of `(name, type OID)` columns and one inserted row of texts.
fn route(config: RouteConfig, columns: &[(&str, u32)], values: &[Option<&str>]) -> Record {
    let mut decoder = EventDecoder::new(
        crate::pg::names::TableName::parse("outbox").unwrap(),
        config.clone(),
    )
    .unwrap();
    let rel = Relation {
        stream_xid: None,
        oid: 42,
        namespace: "public".into(),
        name: "outbox".into(),
        replica_identity: pgoutput::ReplicaIdentity::Default,
        columns: columns
            .iter()
            .map(|(name, oid)| Column {
                flags: 0,
                name: (*name).into(),
                type_oid: *oid,
                type_modifier: -1,
            })
            .collect(),
    };
    decoder.on_message(Message::Relation(rel)).unwrap();
    let tuple = TupleData::new(
        values
            .iter()
            .map(|v| {
                v.map_or(TupleValue::Null, |s| {
                    TupleValue::Text(Bytes::from(s.to_owned()))
                })
            })
            .collect(),
    );
    let Decoded::Row(row) = decoder
        .on_message(Message::Insert(Insert {
            stream_xid: None,
            relation_oid: 42,
            new: tuple,
        }))
        .unwrap()
    else {
        panic!("an outbox insert decodes to a row")
    };
    let txn = TxnPosition {
        commit_lsn: Lsn::from(0x100),
        xid: 9,
        commit_time: Some(PgTimestamp::from_unix_micros(1_556_890_294_484_123)),
    };
    Router::new(config).unwrap().route(&row, &txn, 0).unwrap()
}

/// Debezium's documented basic outbox table.
const BASIC: &[(&str, u32)] = &[
    ("id", UUID),
    ("aggregatetype", TEXT),
    ("aggregateid", TEXT),
    ("type", TEXT),
    ("payload", JSONB),
];
const ID: &str = "4d47e190-0402-4048-bc2c-89dd54343cdc";
const PAYLOAD: &str = r#"{"id": 1, "price": 39.98, "items": ["a"]}"#;

fn basic(config: RouteConfig, payload: Option<&str>) -> Record {
    route(
        config,
        BASIC,
        &[
            Some(ID),
            Some("Order"),
            Some("1"),
            Some("OrderCreated"),
            payload,
        ],
    )
}

fn header<'a>(r: &'a Record, name: &str) -> Option<&'a [u8]> {
    r.headers
        .iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.as_deref())
}

fn json() -> RouteConfig {
    RouteConfig {
        key_format: RecordFormat::Json,
        value_format: RecordFormat::Json,
        ..RouteConfig::default()
    }
}

#[test]
fn json_format_writes_what_the_json_converter_writes() {
    let r = basic(json(), Some(PAYLOAD));
    assert_eq!(r.key.as_deref(), Some(&b"\"1\""[..]));
    assert_eq!(
        r.payload.as_deref(),
        Some(&br#""{\"id\": 1, \"price\": 39.98, \"items\": [\"a\"]}""#[..])
    );
    assert_eq!(
        r.topic, "outbox.event.Order",
        "no lower-casing, as Debezium"
    );
    let expanded = basic(
        RouteConfig {
            expand_json_payload: true,
            ..json()
        },
        Some(PAYLOAD),
    );
    assert_eq!(
        expanded.payload.as_deref(),
        Some(&br#"{"id":1,"price":39.98,"items":["a"]}"#[..])
    );
}

#[test]
fn an_integer_key_stays_a_number_and_a_null_payload_is_json_null_or_a_tombstone() {
    let cols = &[
        ("id", UUID),
        ("aggregatetype", TEXT),
        ("aggregateid", INT4),
        ("payload", JSONB),
    ];
    let r = route(json(), cols, &[Some(ID), Some("Order"), Some("7"), None]);
    assert_eq!(r.key.as_deref(), Some(&b"7"[..]));
    assert_eq!(r.payload.as_deref(), Some(&b"null"[..]));
    let config = RouteConfig {
        tombstone_on_empty_payload: true,
        ..json()
    };
    let r = route(config, cols, &[Some(ID), Some("Order"), Some("7"), None]);
    assert_eq!(r.payload, None);
    assert!(
        header(&r, "type").is_none(),
        "a table without `type` is fine"
    );
}

#[test]
fn envelope_placement_puts_fields_beside_the_payload_in_config_order() {
    let config = RouteConfig {
        envelope_fields: vec![
            ("type".into(), "eventType".into()),
            ("aggregateid".into(), "k".into()),
        ],
        ..json()
    };
    let r = basic(config, Some(r#"{"a": 1}"#));
    assert_eq!(
        r.payload.as_deref(),
        Some(&br#"{"payload":"{\"a\": 1}","eventType":"OrderCreated","k":"1"}"#[..])
    );
}

#[test]
fn debezium_headers_only_sends_id_and_placed_fields() {
    let config = RouteConfig {
        position_headers: false,
        header_columns: vec![("type".into(), "eventType".into())],
        ..RouteConfig::default()
    };
    let r = basic(config, Some(PAYLOAD));
    let names: Vec<&str> = r.headers.iter().map(|(k, _)| k.as_ref()).collect();
    assert_eq!(names, ["id", "eventType"]);
    assert_eq!(header(&r, "id"), Some(ID.as_bytes()));
}

#[test]
fn a_placed_null_column_is_a_null_header_and_type_is_sent_once() {
    let config = RouteConfig {
        header_columns: vec![("type".into(), "type".into())],
        ..RouteConfig::default()
    };
    let r = route(
        config.clone(),
        BASIC,
        &[Some(ID), Some("Order"), Some("1"), None, Some("{}")],
    );
    let types: Vec<_> = r.headers.iter().filter(|(k, _)| k == "type").collect();
    assert_eq!(
        types,
        [&("type".into(), None)],
        "one `type`, null as Debezium sends it"
    );
    let r = basic(config, Some("{}"));
    let types = r.headers.iter().filter(|(k, _)| k == "type").count();
    assert_eq!(types, 1);
}

#[test]
fn topic_regex_fills_the_template_from_its_groups_or_leaves_the_value() {
    let config = RouteConfig {
        topic: "${routedByValue}.events".into(),
        topic_regex: Some("(?<routedByValue>.*)Aggregate".into()),
        ..RouteConfig::default()
    };
    let cols = BASIC;
    let at = |value: &str| {
        route(
            config.clone(),
            cols,
            &[Some(ID), Some(value), Some("1"), Some("t"), Some("{}")],
        )
        .topic
    };
    assert_eq!(
        at("OrderAggregate"),
        "OrderAggregate".replace("Aggregate", ".events")
    );
    assert_eq!(
        at("Customer"),
        "Customer",
        "no match: the value itself, as Debezium"
    );
}

#[test]
fn record_timestamp_is_the_commit_time_or_the_column() {
    let r = basic(RouteConfig::default(), Some("{}"));
    assert_eq!(r.timestamp_ms, Some(1_556_890_294_484));
    let produce = basic(
        RouteConfig {
            timestamp: RecordTimestamp::Produce,
            ..RouteConfig::default()
        },
        Some("{}"),
    );
    assert_eq!(produce.timestamp_ms, None);
    let mut cols = BASIC.to_vec();
    cols.push(("timestamp", TIMESTAMP));
    let config = RouteConfig {
        timestamp: RecordTimestamp::Column("timestamp".into()),
        ..RouteConfig::default()
    };
    let values = [Some(ID), Some("Order"), Some("1"), Some("t"), Some("{}")];
    let with = |ts: Option<&str>| {
        let mut v = values.to_vec();
        v.push(ts);
        route(config.clone(), &cols, &v).timestamp_ms
    };
    assert_eq!(with(Some("2020-01-01 00:00:00.5")), Some(1_577_836_800_500));
    assert_eq!(with(None), Some(1_556_890_294_484), "NULL: the commit time");
}

#[test]
fn trace_context_becomes_w3c_headers() {
    let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let mut cols = BASIC.to_vec();
    cols.push(("tracingspancontext", TEXT));
    let props = format!("#Sat Dec 05 03:14:44 UTC 2026\ntraceparent={parent}\ntracestate=k\\=v\n");
    let mut values = vec![Some(ID), Some("Order"), Some("1"), Some("t"), Some("{}")];
    values.push(Some(&props));
    let r = route(RouteConfig::default(), &cols, &values);
    assert_eq!(header(&r, "traceparent"), Some(parent.as_bytes()));
    assert_eq!(header(&r, "tracestate"), Some(&b"k=v"[..]));
    // A plain traceparent column, and a malformed one that is dropped.
    let mut cols = BASIC.to_vec();
    cols.push(("traceparent", TEXT));
    let mut values = vec![Some(ID), Some("Order"), Some("1"), Some("t"), Some("{}")];
    values.push(Some(parent));
    let r = route(RouteConfig::default(), &cols, &values);
    assert_eq!(header(&r, "traceparent"), Some(parent.as_bytes()));
    values[5] = Some("not-a-trace");
    let r = route(RouteConfig::default(), &cols, &values);
    assert_eq!(header(&r, "traceparent"), None);
}

//! How a key and a value are written: the column's bytes unchanged (`string`, Kafka Connect's
//! StringConverter), or as Kafka Connect's JsonConverter without schemas writes the value
//! Debezium's router builds (`json`): a text key `order-1` becomes `"order-1"`, an integer key
//! `7` stays `7`, a JSON payload becomes a JSON string holding it, or the document itself when
//! expanded, and envelope fields make the value `{"payload":…,"<alias>":…}`.

use base64::Engine;
use bytes::Bytes;
use pgoutput::TupleValue;

use crate::config::settings::RecordFormat;
use crate::config::RouteConfig;
use crate::relay::decode::OutboxRow;
use crate::relay::route::jackson;

pub const BOOL_OID: u32 = 16;
pub const BYTEA_OID: u32 = 17;
const INT8_OID: u32 = 20;
const INT2_OID: u32 = 21;
const INT4_OID: u32 = 23;
const FLOAT4_OID: u32 = 700;
const FLOAT8_OID: u32 = 701;

/// The key's bytes in `format`; `raw` is the column's text (a bytea already decoded).
pub fn key(format: RecordFormat, type_oid: u32, raw: Bytes) -> Bytes {
    match format {
        RecordFormat::String => raw,
        RecordFormat::Json => {
            let mut out = Vec::with_capacity(raw.len() + 2);
            typed_json(&mut out, type_oid, &raw);
            Bytes::from(out)
        }
    }
}

/// The value's bytes (`None`: no value, a tombstone). `payload` is the payload column's text
/// (a bytea already decoded).
pub fn value(config: &RouteConfig, row: &OutboxRow, payload: Option<Bytes>) -> Option<Bytes> {
    let empty = payload
        .as_ref()
        .is_none_or(|p| p.iter().all(u8::is_ascii_whitespace));
    if config.tombstone_on_empty_payload && empty {
        return None;
    }
    match config.value_format {
        RecordFormat::String => payload,
        RecordFormat::Json => {
            let layout = &row.layout;
            let mut out = Vec::with_capacity(payload.as_ref().map_or(4, Bytes::len) + 16);
            if layout.envelope.is_empty() {
                json_payload(&mut out, config, layout.payload_type, payload.as_deref());
                return Some(Bytes::from(out));
            }
            out.extend_from_slice(b"{\"payload\":");
            json_payload(&mut out, config, layout.payload_type, payload.as_deref());
            for field in &layout.envelope {
                out.push(b',');
                jackson::write_string(&mut out, &field.alias);
                out.push(b':');
                match row.tuple.get(field.index) {
                    Some(TupleValue::Text(b) | TupleValue::Binary(b)) => {
                        typed_json(&mut out, field.type_oid, b)
                    }
                    _ => out.extend_from_slice(b"null"),
                }
            }
            out.push(b'}');
            Some(Bytes::from(out))
        }
    }
}

fn json_payload(out: &mut Vec<u8>, config: &RouteConfig, type_oid: u32, payload: Option<&[u8]>) {
    let Some(payload) = payload else {
        out.extend_from_slice(b"null");
        return;
    };
    if config.expand_json_payload && type_oid != BYTEA_OID {
        if let Some(doc) = jackson::expand(payload) {
            out.extend_from_slice(&doc);
            return;
        }
    }
    if type_oid == BYTEA_OID {
        // `payload` is already the decoded bytes.
        jackson::write_string(
            out,
            &base64::engine::general_purpose::STANDARD.encode(payload),
        );
    } else {
        jackson::write_string(out, &String::from_utf8_lossy(payload));
    }
}

/// A column's text as JsonConverter writes the Connect value Debezium gives that column type:
/// integers and booleans as JSON literals, floats as Java prints them, bytea as base64, every
/// other type (text, uuid, json, timestamps as Debezium's string forms) as a JSON string.
fn typed_json(out: &mut Vec<u8>, type_oid: u32, text: &[u8]) {
    let s = String::from_utf8_lossy(text);
    match type_oid {
        INT2_OID | INT4_OID | INT8_OID if s.parse::<i64>().is_ok() => {
            out.extend_from_slice(s.as_bytes())
        }
        BOOL_OID => out.extend_from_slice(if s == "t" { b"true" } else { b"false" }),
        FLOAT4_OID | FLOAT8_OID => match s.parse::<f64>() {
            Ok(x) if x.is_finite() => out.extend_from_slice(jackson::java_double(x).as_bytes()),
            _ => jackson::write_string(out, &s),
        },
        BYTEA_OID => match super::decode_bytea_hex(text) {
            Some(raw) => {
                jackson::write_string(out, &base64::engine::general_purpose::STANDARD.encode(&raw))
            }
            None => jackson::write_string(out, &s),
        },
        _ => jackson::write_string(out, &s),
    }
}

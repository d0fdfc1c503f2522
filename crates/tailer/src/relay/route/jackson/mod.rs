//! JSON text as Kafka Connect's JsonConverter writes it (Jackson's defaults): compact, strings
//! escaped like Jackson (`"`, `\`, control characters; `\u00XX` in upper-case hex), doubles in
//! Java's `Double.toString` form (`120.0`, `1.0E20`, `1.0E-4`).
//!
//! And the expansion of a JSON payload into a document as Debezium's
//! `table.expand.json.payload` does it (`JsonSchemaData`): integers that fit 32 or 64 bits stay
//! integers, every other number becomes a double, null fields and empty arrays are dropped
//! from objects, and a payload that cannot be typed (an array mixing kinds, an integer beyond
//! 64 bits) is not expanded.

use std::fmt::Write;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A parsed JSON document that keeps object fields in document order.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Null,
    Bool(bool),
    Int(i64),
    /// An integer beyond `i64`: Debezium cannot type it.
    BigInt,
    Double(f64),
    Str(String),
    Array(Vec<Node>),
    Object(Vec<(String, Node)>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_unit<E>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
                Ok(Node::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
                Ok(Node::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
                Ok(i64::try_from(v).map_or(Node::BigInt, Node::Int))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
                Ok(Node::Double(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Node, E> {
                Ok(Node::Str(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Node, E> {
                Ok(Node::Str(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Node::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut fields: Vec<(String, Node)> = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Node>()? {
                    // The last of duplicate names wins, as in Jackson's tree.
                    match fields.iter_mut().find(|(name, _)| *name == k) {
                        Some(slot) => slot.1 = v,
                        None => fields.push((k, v)),
                    }
                }
                Ok(Node::Object(fields))
            }
        }
        d.deserialize_any(V)
    }
}

/// Append `s` as a JSON string literal, escaped as Jackson escapes it: `"`, `\`, control
/// characters, and characters beyond the Basic Multilingual Plane as a `\uD83D\uDE00`
/// surrogate pair (Kafka Connect's JsonConverter does; other non-ASCII stays UTF-8).
pub fn write_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let mut start = 0;
    for (i, c) in s.char_indices() {
        if c.len_utf8() == 4 {
            write_escaped(out, &s[start..i]);
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.extend_from_slice(format!("\\u{unit:04X}").as_bytes());
            }
            start = i + c.len_utf8();
        }
    }
    write_escaped(out, &s[start..]);
    out.push(b'"');
}

/// `s` (no character beyond the BMP) with Jackson's escapes, without quotes.
fn write_escaped(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(format!("\\u{b:04X}").as_bytes());
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Java's `Double.toString`: plain notation with at least one fractional digit for
/// 10^-3 <= |x| < 10^7, otherwise `d.dddE<exp>`; the shortest digits that read back.
pub fn java_double(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // Rust's `{:e}` gives the shortest round-trip digits: `-1.2345e-5`.
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` has an exponent");
    let exp: i32 = exp.parse().expect("`{:e}` exponent is an integer");
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut out = String::from(sign);
    if (-3..7).contains(&exp) {
        if exp < 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
            out.push_str(&digits);
        } else {
            let int_len = exp as usize + 1;
            let padded = format!("{digits:0<int_len$}");
            let (int, frac) = padded.split_at(int_len);
            out.push_str(int);
            out.push('.');
            out.push_str(if frac.is_empty() { "0" } else { frac });
        }
    } else {
        out.push_str(&digits[..1]);
        out.push('.');
        out.push_str(if digits.len() > 1 { &digits[1..] } else { "0" });
        let _ = write!(out, "E{exp}");
    }
    out
}

/// Write `node` compactly, as JsonConverter writes the Connect value Debezium built from it.
pub fn write_node(out: &mut Vec<u8>, node: &Node) {
    match node {
        Node::Null | Node::BigInt => out.extend_from_slice(b"null"),
        Node::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Node::Int(i) => out.extend_from_slice(i.to_string().as_bytes()),
        Node::Double(d) => out.extend_from_slice(java_double(*d).as_bytes()),
        Node::Str(s) => write_string(out, s),
        Node::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_node(out, item);
            }
            out.push(b']');
        }
        Node::Object(fields) => {
            out.push(b'{');
            for (i, (k, v)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(out, k);
                out.push(b':');
                write_node(out, v);
            }
            out.push(b'}');
        }
    }
}

/// The Connect type Debezium infers for a value (`None`: null, or an empty array, which have
/// no type and are dropped from objects).
#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Bool,
    Int32,
    Int64,
    Double,
    Str,
    Array(Box<Kind>),
    /// Fields in order of first appearance.
    Struct(Vec<(String, Kind)>),
}

/// Why a payload is not expanded.
#[derive(Debug)]
struct Untypable;

fn kind(node: &Node) -> Result<Option<Kind>, Untypable> {
    Ok(Some(match node {
        Node::Null => return Ok(None),
        Node::BigInt => return Err(Untypable),
        Node::Bool(_) => Kind::Bool,
        Node::Int(i) if i32::try_from(*i).is_ok() => Kind::Int32,
        Node::Int(_) => Kind::Int64,
        Node::Double(_) => Kind::Double,
        Node::Str(_) => Kind::Str,
        Node::Object(fields) => {
            let mut out = Vec::new();
            for (k, v) in fields {
                if let Some(kind) = kind(v)? {
                    out.push((k.clone(), kind));
                }
            }
            Kind::Struct(out)
        }
        Node::Array(items) => {
            // Debezium types an array by its first non-null element: objects are merged with
            // the other elements' objects, anything else must be of the same kind (an array
            // of arrays takes the first inner array's kind as it is).
            let mut non_null = items.iter().filter(|i| !matches!(i, Node::Null));
            let Some(first) = non_null.next() else {
                return if items.is_empty() {
                    Ok(None)
                } else {
                    // Only nulls: Debezium cannot type the array.
                    Err(Untypable)
                };
            };
            let mut element = kind(first)?.ok_or(Untypable)?;
            for item in non_null {
                let k = kind(item)?;
                element = match (element, k) {
                    (Kind::Struct(a), Some(Kind::Struct(b))) => {
                        merge(Kind::Struct(a), Kind::Struct(b))?
                    }
                    (Kind::Array(a), Some(Kind::Array(_)) | None)
                        if matches!(item, Node::Array(_)) =>
                    {
                        Kind::Array(a)
                    }
                    (a, Some(b)) if a == b => a,
                    _ => return Err(Untypable),
                };
            }
            Kind::Array(Box::new(element))
        }
    }))
}

/// Element kinds of one array: equal, or structs whose fields are merged.
fn merge(a: Kind, b: Kind) -> Result<Kind, Untypable> {
    match (a, b) {
        (Kind::Struct(mut fa), Kind::Struct(fb)) => {
            for (name, kb) in fb {
                match fa.iter().position(|(n, _)| *n == name) {
                    Some(i) => {
                        let ka = fa[i].1.clone();
                        fa[i].1 = merge(ka, kb)?;
                    }
                    None => fa.push((name, kb)),
                }
            }
            Ok(Kind::Struct(fa))
        }
        (Kind::Array(a), Kind::Array(b)) => Ok(Kind::Array(Box::new(merge(*a, *b)?))),
        (a, b) if a == b => Ok(a),
        _ => Err(Untypable),
    }
}

/// The value Debezium builds for `node` under the inferred `kind`: struct fields in the
/// kind's order, absent ones null.
fn shape(node: &Node, kind: &Kind) -> Node {
    match (node, kind) {
        (Node::Object(fields), Kind::Struct(kinds)) => Node::Object(
            kinds
                .iter()
                .map(|(name, k)| {
                    let value = fields
                        .iter()
                        .find(|(n, _)| n == name)
                        .map_or(Node::Null, |(_, v)| shape(v, k));
                    (name.clone(), value)
                })
                .collect(),
        ),
        (Node::Array(items), Kind::Array(k)) => {
            Node::Array(items.iter().map(|i| shape(i, k)).collect())
        }
        (other, _) => other.clone(),
    }
}

/// The expanded payload as JsonConverter writes it, or `None` when Debezium would leave it a
/// string (not an object or array, not JSON, or not typable).
pub fn expand(text: &[u8]) -> Option<Vec<u8>> {
    if !matches!(text.first(), Some(b'{' | b'[')) {
        return None;
    }
    let node: Node = serde_json::from_slice(text).ok()?;
    // A document Debezium cannot type (`[]`) stays a string, as there.
    let kind = kind(&node).ok()??;
    let mut out = Vec::with_capacity(text.len());
    write_node(&mut out, &shape(&node, &kind));
    Some(out)
}

#[cfg(test)]
mod tests;

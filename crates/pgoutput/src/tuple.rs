//! TupleData: the column values of one row, in the relation's column order.
//!
//! Text and binary values are `Bytes` slices of the received message (zero-copy); keeping a
//! value keeps the whole message buffer alive. The column count is checked against the bytes
//! left before anything is allocated: each column needs at least its kind byte.

use bytes::Bytes;

use crate::error::DecodeError;
use crate::reader::Reader;

/// One column value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TupleValue {
    /// `n`: SQL NULL.
    Null,
    /// `u`: an out-of-line (TOASTed) value the change did not modify, so it was not sent.
    UnchangedToast,
    /// `t`: the type's text output, in the connection's client encoding.
    Text(Bytes),
    /// `b`: the type's binary `send` output (only with the `binary` option).
    Binary(Bytes),
}

impl TupleValue {
    pub(crate) const NULL: u8 = b'n';
    pub(crate) const UNCHANGED_TOAST: u8 = b'u';
    pub(crate) const TEXT: u8 = b't';
    pub(crate) const BINARY: u8 = b'b';

    /// The value's bytes, for `Text` and `Binary`.
    pub fn bytes(&self) -> Option<&Bytes> {
        match self {
            TupleValue::Text(b) | TupleValue::Binary(b) => Some(b),
            TupleValue::Null | TupleValue::UnchangedToast => None,
        }
    }

    /// The text form as `&str`, if this is a `Text` value holding UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            TupleValue::Text(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, TupleValue::Null)
    }
}

/// The values of one row.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct TupleData {
    pub values: Vec<TupleValue>,
}

impl TupleData {
    pub fn new(values: Vec<TupleValue>) -> Self {
        TupleData { values }
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn get(&self, index: usize) -> Option<&TupleValue> {
        self.values.get(index)
    }

    pub fn iter(&self) -> std::slice::Iter<'_, TupleValue> {
        self.values.iter()
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<TupleData, DecodeError> {
        let ncols = usize::from(r.u16("column count")?);
        r.ensure_room("tuple columns", ncols, 1)?;
        let mut values = Vec::with_capacity(ncols);
        for _ in 0..ncols {
            let at = r.offset();
            let value = match r.u8("column kind")? {
                TupleValue::TEXT => {
                    let len = r.length("column length")?;
                    TupleValue::Text(r.bytes(len, "column value")?)
                }
                TupleValue::NULL => TupleValue::Null,
                TupleValue::UNCHANGED_TOAST => TupleValue::UnchangedToast,
                TupleValue::BINARY => {
                    let len = r.length("column length")?;
                    TupleValue::Binary(r.bytes(len, "column value")?)
                }
                found => {
                    return Err(DecodeError::InvalidTupleKind {
                        kind: r.kind(),
                        offset: at,
                        found,
                    })
                }
            };
            values.push(value);
        }
        Ok(TupleData { values })
    }
}

impl<'a> IntoIterator for &'a TupleData {
    type Item = &'a TupleValue;
    type IntoIter = std::slice::Iter<'a, TupleValue>;

    fn into_iter(self) -> Self::IntoIter {
        self.values.iter()
    }
}

//! Errors of this crate: [`DecodeError`] for bytes that are not a valid pgoutput message,
//! [`ResolveError`] for a valid row that the [`RelationCache`](crate::RelationCache) cannot
//! name. Both are definite, not transient: retrying the same bytes gives the same error.
//!
//! Every decode error names the message kind and the byte offset (from the tag byte) where
//! decoding stopped, so a log line is enough to find the bad field in a hex dump.

use crate::message::MessageKind;
use crate::Oid;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty pgoutput message")]
    Empty,

    #[error("unknown pgoutput message tag {:?} (0x{tag:02x})", char::from(*tag))]
    UnknownTag { tag: u8 },

    #[error("{kind}: truncated at byte {offset}: {field} needs {needed} bytes, {remaining} left")]
    Truncated {
        kind: MessageKind,
        field: &'static str,
        offset: usize,
        needed: usize,
        remaining: usize,
    },

    #[error("{kind}: negative {field} {length} at byte {offset}")]
    NegativeLength {
        kind: MessageKind,
        field: &'static str,
        offset: usize,
        length: i64,
    },

    #[error(
        "{kind}: invalid tuple column kind {:?} (0x{found:02x}) at byte {offset}, expected one of n u t b",
        char::from(*found)
    )]
    InvalidTupleKind {
        kind: MessageKind,
        offset: usize,
        found: u8,
    },

    #[error("{kind}: {field} at byte {offset} is {:?} (0x{found:02x}), expected {expected}", char::from(*found))]
    UnexpectedByte {
        kind: MessageKind,
        field: &'static str,
        offset: usize,
        expected: &'static str,
        found: u8,
    },

    #[error("{kind}: string {field} starting at byte {offset} has no NUL terminator")]
    MissingNul {
        kind: MessageKind,
        field: &'static str,
        offset: usize,
    },

    #[error("{kind}: string {field} starting at byte {offset} is not valid UTF-8")]
    InvalidUtf8 {
        kind: MessageKind,
        field: &'static str,
        offset: usize,
    },

    #[error("{kind}: {count} trailing bytes after the message, starting at byte {offset}")]
    TrailingBytes {
        kind: MessageKind,
        offset: usize,
        count: usize,
    },
}

impl DecodeError {
    /// The byte offset (from the tag) where decoding stopped; `0` for an empty or unknown message.
    pub fn offset(&self) -> usize {
        match self {
            DecodeError::Empty | DecodeError::UnknownTag { .. } => 0,
            DecodeError::Truncated { offset, .. }
            | DecodeError::NegativeLength { offset, .. }
            | DecodeError::InvalidTupleKind { offset, .. }
            | DecodeError::UnexpectedByte { offset, .. }
            | DecodeError::MissingNul { offset, .. }
            | DecodeError::InvalidUtf8 { offset, .. }
            | DecodeError::TrailingBytes { offset, .. } => *offset,
        }
    }
}

/// A row could not be matched to its relation's columns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// No Relation message for this OID since the cache was created or cleared; pgoutput always
    /// sends one first, so this means the stream was joined midway or the cache was cleared early.
    #[error("row for relation OID {oid}, but no Relation message was seen for it")]
    UnknownRelation { oid: Oid },

    #[error("relation {relation} (OID {oid}) has {expected} columns but the row has {found}")]
    ColumnCountMismatch {
        oid: Oid,
        relation: String,
        expected: usize,
        found: usize,
    },
}

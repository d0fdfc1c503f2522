//! Sans-IO decoding of PostgreSQL's `pgoutput` logical replication messages (protocol v1–v4),
//! plus the [`Lsn`] and [`PgTimestamp`] types.
//!
//! ```text
//!  XLogData payload ──▶ Decoder::decode / decode_with ──▶ Message ──▶ RelationCache::resolve ──▶ Row
//!   (Bytes)              (tracks Stream Start/Stop)         (values are Bytes slices)   (named columns)
//! ```
//!
//! Invariants, each relied on by the tailer and checked by the test suite (unit tests, golden
//! bytes from PostgreSQL 15, property tests, a fuzz corpus):
//! - no IO and no async runtime;
//! - no input makes any function here panic; lengths are checked against the bytes that are
//!   actually there before any slice or allocation;
//! - column values and logical-message contents are zero-copy slices of the input `Bytes`;
//! - a message decodes only if it is consumed exactly, with no trailing bytes.

mod decode;
#[cfg(any(test, feature = "encode"))]
pub mod encode;
mod error;
mod lsn;
mod message;
mod reader;
mod relation;
mod time;
mod tuple;

/// Re-exported so callers can build inputs without naming the `bytes` crate themselves.
pub use bytes::Bytes;
pub use decode::{decode, decode_with, DecodeContext, Decoder};
pub use error::{DecodeError, ResolveError};
pub use lsn::{Lsn, ParseLsnError};
pub use message::{
    AbortPosition, Begin, BeginPrepare, Column, Commit, CommitPrepared, Delete, Insert,
    LogicalMessage, Message, MessageKind, OldRow, Origin, Prepare, Relation, ReplicaIdentity,
    RollbackPrepared, StreamAbort, StreamCommit, StreamStart, Truncate, Type, Update,
};
pub use relation::{RelationCache, Row};
pub use time::PgTimestamp;
pub use tuple::{TupleData, TupleValue};

/// A PostgreSQL object identifier (relation or type).
pub type Oid = u32;

/// A PostgreSQL transaction id (32-bit, as pgoutput sends it).
pub type Xid = u32;

#[cfg(test)]
mod tests;

//! Decoding one pgoutput message from the payload of one XLogData frame.
//!
//! ```text
//!   B  R  I  I  C        S  R* I* I*  E   …   S  I*  E   c        (* = xid after the tag)
//!   └ plain transaction ┘ └ chunk of a streamed txn ┘     └ its Stream Commit
//! ```
//!
//! The bytes alone do not say whether R/Y/I/U/D/T/M carry an xid: only messages between
//! Stream Start and Stream Stop do. [`decode_with`] takes that fact as a [`DecodeContext`];
//! [`Decoder`] tracks it from the S/E messages it has decoded, which is what a consumer of
//! one replication connection wants. [`decode`] is the common case: no streaming.
//!
//! Invariants: every message must be consumed exactly (trailing bytes are an error); no read
//! happens without a length check; no allocation is larger than the input could fill.

use bytes::Bytes;

use crate::error::DecodeError;
use crate::message::*;
use crate::reader::Reader;
use crate::tuple::TupleData;

/// Whether the message was received inside a Stream Start … Stream Stop block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DecodeContext {
    pub in_stream: bool,
}

/// Decodes a message received outside any streaming block (protocol v1, or streaming off).
pub fn decode(bytes: &Bytes) -> Result<Message, DecodeError> {
    decode_with(bytes, DecodeContext::default())
}

/// Decodes one message; `context.in_stream` says whether R/Y/I/U/D/T/M carry an xid.
pub fn decode_with(bytes: &Bytes, context: DecodeContext) -> Result<Message, DecodeError> {
    let &tag = bytes.first().ok_or(DecodeError::Empty)?;
    let kind = MessageKind::from_tag(tag).ok_or(DecodeError::UnknownTag { tag })?;
    let mut r = Reader::after_tag(bytes, kind);
    let stream_xid = if context.in_stream && kind.has_stream_xid() {
        Some(r.u32("xid")?)
    } else {
        None
    };
    let message = match kind {
        MessageKind::Begin => Message::Begin(Begin {
            final_lsn: r.lsn("final lsn")?,
            commit_time: r.timestamp("commit time")?,
            xid: r.u32("xid")?,
        }),
        MessageKind::Commit => Message::Commit(Commit {
            flags: r.u8("flags")?,
            commit_lsn: r.lsn("commit lsn")?,
            end_lsn: r.lsn("end lsn")?,
            commit_time: r.timestamp("commit time")?,
        }),
        MessageKind::Origin => Message::Origin(Origin {
            commit_lsn: r.lsn("commit lsn")?,
            name: r.string("origin name")?,
        }),
        MessageKind::Relation => Message::Relation(relation(&mut r, stream_xid)?),
        MessageKind::Type => Message::Type(Type {
            stream_xid,
            oid: r.u32("type oid")?,
            namespace: r.string("namespace")?,
            name: r.string("type name")?,
        }),
        MessageKind::Insert => {
            let relation_oid = r.u32("relation oid")?;
            new_tuple_marker(&mut r)?;
            Message::Insert(Insert {
                stream_xid,
                relation_oid,
                new: TupleData::decode(&mut r)?,
            })
        }
        MessageKind::Update => Message::Update(update(&mut r, stream_xid)?),
        MessageKind::Delete => {
            let relation_oid = r.u32("relation oid")?;
            let marker = r.expect_byte("old tuple marker", "'K' or 'O'", |b| {
                matches!(b, b'K' | b'O')
            })?;
            Message::Delete(Delete {
                stream_xid,
                relation_oid,
                old: old_row(marker, TupleData::decode(&mut r)?),
            })
        }
        MessageKind::Truncate => Message::Truncate(truncate(&mut r, stream_xid)?),
        MessageKind::LogicalMessage => {
            let flags = r.u8("flags")?;
            let lsn = r.lsn("message lsn")?;
            let prefix = r.string("prefix")?;
            let len = r.length("content length")?;
            Message::LogicalMessage(LogicalMessage {
                stream_xid,
                flags,
                lsn,
                prefix,
                content: r.bytes(len, "content")?,
            })
        }
        MessageKind::StreamStart => Message::StreamStart(StreamStart {
            xid: r.u32("xid")?,
            first_segment: r.expect_byte("first segment flag", "0 or 1", |b| b <= 1)? == 1,
        }),
        MessageKind::StreamStop => Message::StreamStop,
        MessageKind::StreamCommit => Message::StreamCommit(StreamCommit {
            xid: r.u32("xid")?,
            flags: r.u8("flags")?,
            commit_lsn: r.lsn("commit lsn")?,
            end_lsn: r.lsn("end lsn")?,
            commit_time: r.timestamp("commit time")?,
        }),
        MessageKind::StreamAbort => {
            let xid = r.u32("xid")?;
            let subxid = r.u32("subxid")?;
            // v4 with `streaming parallel` appends 16 bytes; any other length is malformed.
            let abort = if r.remaining() == 0 {
                None
            } else {
                Some(AbortPosition {
                    lsn: r.lsn("abort lsn")?,
                    time: r.timestamp("abort time")?,
                })
            };
            Message::StreamAbort(StreamAbort { xid, subxid, abort })
        }
        MessageKind::BeginPrepare => Message::BeginPrepare(BeginPrepare {
            prepare_lsn: r.lsn("prepare lsn")?,
            end_lsn: r.lsn("end lsn")?,
            prepare_time: r.timestamp("prepare time")?,
            xid: r.u32("xid")?,
            gid: r.string("gid")?,
        }),
        MessageKind::Prepare => Message::Prepare(prepare(&mut r)?),
        MessageKind::StreamPrepare => Message::StreamPrepare(prepare(&mut r)?),
        MessageKind::CommitPrepared => Message::CommitPrepared(CommitPrepared {
            flags: r.u8("flags")?,
            commit_lsn: r.lsn("commit lsn")?,
            end_lsn: r.lsn("end lsn")?,
            commit_time: r.timestamp("commit time")?,
            xid: r.u32("xid")?,
            gid: r.string("gid")?,
        }),
        MessageKind::RollbackPrepared => Message::RollbackPrepared(RollbackPrepared {
            flags: r.u8("flags")?,
            prepare_end_lsn: r.lsn("prepare end lsn")?,
            rollback_end_lsn: r.lsn("rollback end lsn")?,
            prepare_time: r.timestamp("prepare time")?,
            rollback_time: r.timestamp("rollback time")?,
            xid: r.u32("xid")?,
            gid: r.string("gid")?,
        }),
    };
    r.finish()?;
    Ok(message)
}

fn relation(r: &mut Reader<'_>, stream_xid: Option<u32>) -> Result<Relation, DecodeError> {
    let oid = r.u32("relation oid")?;
    let namespace = r.string("namespace")?;
    let name = r.string("relation name")?;
    let at = r.offset();
    let identity = r.u8("replica identity")?;
    let replica_identity =
        ReplicaIdentity::from_byte(identity).ok_or(DecodeError::UnexpectedByte {
            kind: r.kind(),
            field: "replica identity",
            offset: at,
            expected: "one of d n f i",
            found: identity,
        })?;
    let ncols = usize::from(r.u16("column count")?);
    // flags (1) + name NUL (1) + type oid (4) + typmod (4)
    r.ensure_room("relation columns", ncols, 10)?;
    let mut columns = Vec::with_capacity(ncols);
    for _ in 0..ncols {
        columns.push(Column {
            flags: r.u8("column flags")?,
            name: r.string("column name")?,
            type_oid: r.u32("column type oid")?,
            type_modifier: r.i32("column type modifier")?,
        });
    }
    Ok(Relation {
        stream_xid,
        oid,
        namespace,
        name,
        replica_identity,
        columns,
    })
}

fn update(r: &mut Reader<'_>, stream_xid: Option<u32>) -> Result<Update, DecodeError> {
    let relation_oid = r.u32("relation oid")?;
    let marker = r.expect_byte("tuple marker", "'K', 'O' or 'N'", |b| {
        matches!(b, b'K' | b'O' | b'N')
    })?;
    let old = if marker == b'N' {
        None
    } else {
        let old = old_row(marker, TupleData::decode(r)?);
        new_tuple_marker(r)?;
        Some(old)
    };
    Ok(Update {
        stream_xid,
        relation_oid,
        old,
        new: TupleData::decode(r)?,
    })
}

fn truncate(r: &mut Reader<'_>, stream_xid: Option<u32>) -> Result<Truncate, DecodeError> {
    let at = r.offset();
    let nrels = r.i32("relation count")?;
    let nrels = usize::try_from(nrels).map_err(|_| DecodeError::NegativeLength {
        kind: r.kind(),
        field: "relation count",
        offset: at,
        length: i64::from(nrels),
    })?;
    let options = r.u8("options")?;
    r.ensure_room("relation oids", nrels, 4)?;
    let mut relation_oids = Vec::with_capacity(nrels);
    for _ in 0..nrels {
        relation_oids.push(r.u32("relation oid")?);
    }
    Ok(Truncate {
        stream_xid,
        options,
        relation_oids,
    })
}

fn prepare(r: &mut Reader<'_>) -> Result<Prepare, DecodeError> {
    Ok(Prepare {
        flags: r.u8("flags")?,
        prepare_lsn: r.lsn("prepare lsn")?,
        end_lsn: r.lsn("end lsn")?,
        prepare_time: r.timestamp("prepare time")?,
        xid: r.u32("xid")?,
        gid: r.string("gid")?,
    })
}

fn new_tuple_marker(r: &mut Reader<'_>) -> Result<(), DecodeError> {
    r.expect_byte("new tuple marker", "'N'", |b| b == b'N')
        .map(drop)
}

fn old_row(marker: u8, tuple: TupleData) -> OldRow {
    if marker == b'K' {
        OldRow::Key(tuple)
    } else {
        OldRow::Full(tuple)
    }
}

/// Decodes the messages of one replication connection in order, knowing from Stream Start and
/// Stream Stop whether later messages carry a streaming xid. Reset it when reconnecting.
#[derive(Debug, Clone, Default)]
pub struct Decoder {
    in_stream: bool,
}

impl Decoder {
    pub fn new() -> Self {
        Decoder::default()
    }

    /// Whether the last Stream Start has not yet been followed by a Stream Stop.
    pub fn in_stream(&self) -> bool {
        self.in_stream
    }

    /// Forgets any open streaming block (for a new connection).
    pub fn reset(&mut self) {
        self.in_stream = false;
    }

    /// Decodes `bytes`; a failed decode leaves the streaming state unchanged.
    pub fn decode(&mut self, bytes: &Bytes) -> Result<Message, DecodeError> {
        let message = decode_with(
            bytes,
            DecodeContext {
                in_stream: self.in_stream,
            },
        )?;
        match message {
            Message::StreamStart(_) => self.in_stream = true,
            Message::StreamStop => self.in_stream = false,
            _ => {}
        }
        Ok(message)
    }
}

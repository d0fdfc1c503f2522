//! The pgoutput messages of protocol versions 1–4, as plain data.
//!
//! Field names follow PostgreSQL's `proto.c`. Values are kept as sent (flags as raw bytes,
//! timestamps in PostgreSQL's epoch) so that decoding then encoding any message reproduces its
//! bytes exactly. `stream_xid` is `Some` exactly when the message was sent inside a
//! Stream Start … Stream Stop block, where pgoutput adds the (sub)transaction id after the tag.

use std::fmt;

use bytes::Bytes;

use crate::lsn::Lsn;
use crate::time::PgTimestamp;
use crate::tuple::TupleData;
use crate::{Oid, Xid};

/// One decoded pgoutput message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Begin(Begin),
    Commit(Commit),
    Origin(Origin),
    Relation(Relation),
    Type(Type),
    Insert(Insert),
    Update(Update),
    Delete(Delete),
    Truncate(Truncate),
    LogicalMessage(LogicalMessage),
    StreamStart(StreamStart),
    StreamStop,
    StreamCommit(StreamCommit),
    StreamAbort(StreamAbort),
    BeginPrepare(BeginPrepare),
    Prepare(Prepare),
    CommitPrepared(CommitPrepared),
    RollbackPrepared(RollbackPrepared),
    StreamPrepare(Prepare),
}

impl Message {
    pub fn kind(&self) -> MessageKind {
        match self {
            Message::Begin(_) => MessageKind::Begin,
            Message::Commit(_) => MessageKind::Commit,
            Message::Origin(_) => MessageKind::Origin,
            Message::Relation(_) => MessageKind::Relation,
            Message::Type(_) => MessageKind::Type,
            Message::Insert(_) => MessageKind::Insert,
            Message::Update(_) => MessageKind::Update,
            Message::Delete(_) => MessageKind::Delete,
            Message::Truncate(_) => MessageKind::Truncate,
            Message::LogicalMessage(_) => MessageKind::LogicalMessage,
            Message::StreamStart(_) => MessageKind::StreamStart,
            Message::StreamStop => MessageKind::StreamStop,
            Message::StreamCommit(_) => MessageKind::StreamCommit,
            Message::StreamAbort(_) => MessageKind::StreamAbort,
            Message::BeginPrepare(_) => MessageKind::BeginPrepare,
            Message::Prepare(_) => MessageKind::Prepare,
            Message::CommitPrepared(_) => MessageKind::CommitPrepared,
            Message::RollbackPrepared(_) => MessageKind::RollbackPrepared,
            Message::StreamPrepare(_) => MessageKind::StreamPrepare,
        }
    }
}

/// Which message, by its tag byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    Begin,
    Commit,
    Origin,
    Relation,
    Type,
    Insert,
    Update,
    Delete,
    Truncate,
    LogicalMessage,
    StreamStart,
    StreamStop,
    StreamCommit,
    StreamAbort,
    BeginPrepare,
    Prepare,
    CommitPrepared,
    RollbackPrepared,
    StreamPrepare,
}

impl MessageKind {
    pub const ALL: [MessageKind; 19] = [
        MessageKind::Begin,
        MessageKind::Commit,
        MessageKind::Origin,
        MessageKind::Relation,
        MessageKind::Type,
        MessageKind::Insert,
        MessageKind::Update,
        MessageKind::Delete,
        MessageKind::Truncate,
        MessageKind::LogicalMessage,
        MessageKind::StreamStart,
        MessageKind::StreamStop,
        MessageKind::StreamCommit,
        MessageKind::StreamAbort,
        MessageKind::BeginPrepare,
        MessageKind::Prepare,
        MessageKind::CommitPrepared,
        MessageKind::RollbackPrepared,
        MessageKind::StreamPrepare,
    ];

    pub const fn tag(self) -> u8 {
        match self {
            MessageKind::Begin => b'B',
            MessageKind::Commit => b'C',
            MessageKind::Origin => b'O',
            MessageKind::Relation => b'R',
            MessageKind::Type => b'Y',
            MessageKind::Insert => b'I',
            MessageKind::Update => b'U',
            MessageKind::Delete => b'D',
            MessageKind::Truncate => b'T',
            MessageKind::LogicalMessage => b'M',
            MessageKind::StreamStart => b'S',
            MessageKind::StreamStop => b'E',
            MessageKind::StreamCommit => b'c',
            MessageKind::StreamAbort => b'A',
            MessageKind::BeginPrepare => b'b',
            MessageKind::Prepare => b'P',
            MessageKind::CommitPrepared => b'K',
            MessageKind::RollbackPrepared => b'r',
            MessageKind::StreamPrepare => b'p',
        }
    }

    pub const fn from_tag(tag: u8) -> Option<Self> {
        Some(match tag {
            b'B' => MessageKind::Begin,
            b'C' => MessageKind::Commit,
            b'O' => MessageKind::Origin,
            b'R' => MessageKind::Relation,
            b'Y' => MessageKind::Type,
            b'I' => MessageKind::Insert,
            b'U' => MessageKind::Update,
            b'D' => MessageKind::Delete,
            b'T' => MessageKind::Truncate,
            b'M' => MessageKind::LogicalMessage,
            b'S' => MessageKind::StreamStart,
            b'E' => MessageKind::StreamStop,
            b'c' => MessageKind::StreamCommit,
            b'A' => MessageKind::StreamAbort,
            b'b' => MessageKind::BeginPrepare,
            b'P' => MessageKind::Prepare,
            b'K' => MessageKind::CommitPrepared,
            b'r' => MessageKind::RollbackPrepared,
            b'p' => MessageKind::StreamPrepare,
            _ => return None,
        })
    }

    /// Whether pgoutput prefixes this message with an xid when it is inside a streaming block.
    pub const fn has_stream_xid(self) -> bool {
        matches!(
            self,
            MessageKind::Relation
                | MessageKind::Type
                | MessageKind::Insert
                | MessageKind::Update
                | MessageKind::Delete
                | MessageKind::Truncate
                | MessageKind::LogicalMessage
        )
    }

    pub const fn name(self) -> &'static str {
        match self {
            MessageKind::Begin => "Begin",
            MessageKind::Commit => "Commit",
            MessageKind::Origin => "Origin",
            MessageKind::Relation => "Relation",
            MessageKind::Type => "Type",
            MessageKind::Insert => "Insert",
            MessageKind::Update => "Update",
            MessageKind::Delete => "Delete",
            MessageKind::Truncate => "Truncate",
            MessageKind::LogicalMessage => "Message",
            MessageKind::StreamStart => "Stream Start",
            MessageKind::StreamStop => "Stream Stop",
            MessageKind::StreamCommit => "Stream Commit",
            MessageKind::StreamAbort => "Stream Abort",
            MessageKind::BeginPrepare => "Begin Prepare",
            MessageKind::Prepare => "Prepare",
            MessageKind::CommitPrepared => "Commit Prepared",
            MessageKind::RollbackPrepared => "Rollback Prepared",
            MessageKind::StreamPrepare => "Stream Prepare",
        }
    }
}

impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ('{}')", self.name(), char::from(self.tag()))
    }
}

/// `B`: a committed transaction follows (protocol v1 or a non-streamed transaction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Begin {
    /// Start of the commit record; equals [`Commit::commit_lsn`].
    pub final_lsn: Lsn,
    pub commit_time: PgTimestamp,
    pub xid: Xid,
}

/// `C`: end of the transaction opened by the last Begin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// Always 0 in PostgreSQL up to 18.
    pub flags: u8,
    pub commit_lsn: Lsn,
    /// End of the commit record: the position to confirm once the transaction is durable downstream.
    pub end_lsn: Lsn,
    pub commit_time: PgTimestamp,
}

/// `O`: the transaction was replayed from another node through a replication origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub commit_lsn: Lsn,
    pub name: String,
}

/// `R`: the shape of a published table, sent before its first row in a session and after any change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub stream_xid: Option<Xid>,
    pub oid: Oid,
    /// Empty for `pg_catalog`.
    pub namespace: String,
    pub name: String,
    pub replica_identity: ReplicaIdentity,
    pub columns: Vec<Column>,
}

impl Relation {
    /// Position of the column called `name`, for looking values up by index in every row.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }
}

/// `relreplident`: which old values UPDATE and DELETE carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplicaIdentity {
    /// `d`: the primary key.
    Default,
    /// `n`: nothing.
    Nothing,
    /// `f`: all columns.
    Full,
    /// `i`: the columns of a chosen unique index.
    Index,
}

impl ReplicaIdentity {
    pub const fn as_byte(self) -> u8 {
        match self {
            ReplicaIdentity::Default => b'd',
            ReplicaIdentity::Nothing => b'n',
            ReplicaIdentity::Full => b'f',
            ReplicaIdentity::Index => b'i',
        }
    }

    pub const fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            b'd' => Some(ReplicaIdentity::Default),
            b'n' => Some(ReplicaIdentity::Nothing),
            b'f' => Some(ReplicaIdentity::Full),
            b'i' => Some(ReplicaIdentity::Index),
            _ => None,
        }
    }
}

/// One published column of a [`Relation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Bit 0 set: the column is part of the replica identity key.
    pub flags: u8,
    pub name: String,
    pub type_oid: Oid,
    /// `atttypmod`, -1 when the type has none.
    pub type_modifier: i32,
}

impl Column {
    pub const fn is_key(&self) -> bool {
        self.flags & 1 != 0
    }
}

/// `Y`: a user-defined type (OID ≥ 10000) used by a following Relation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Type {
    pub stream_xid: Option<Xid>,
    pub oid: Oid,
    /// Empty for `pg_catalog`.
    pub namespace: String,
    pub name: String,
}

/// `I`: a new row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insert {
    pub stream_xid: Option<Xid>,
    pub relation_oid: Oid,
    pub new: TupleData,
}

/// `U`: a changed row. `old` is present only when the key changed (`K`) or with REPLICA IDENTITY FULL (`O`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub stream_xid: Option<Xid>,
    pub relation_oid: Oid,
    pub old: Option<OldRow>,
    pub new: TupleData,
}

/// `D`: a removed row, identified by its key or, with REPLICA IDENTITY FULL, its whole old value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    pub stream_xid: Option<Xid>,
    pub relation_oid: Oid,
    pub old: OldRow,
}

/// The old-row part of an Update or Delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OldRow {
    /// `K`: replica-identity columns; the others are sent as NULL.
    Key(TupleData),
    /// `O`: every column (REPLICA IDENTITY FULL).
    Full(TupleData),
}

impl OldRow {
    pub fn tuple(&self) -> &TupleData {
        match self {
            OldRow::Key(t) | OldRow::Full(t) => t,
        }
    }
}

/// `T`: one TRUNCATE statement over one or more published relations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncate {
    pub stream_xid: Option<Xid>,
    /// Bit 0: CASCADE; bit 1: RESTART IDENTITY.
    pub options: u8,
    pub relation_oids: Vec<Oid>,
}

impl Truncate {
    pub const fn cascade(&self) -> bool {
        self.options & 1 != 0
    }

    pub const fn restart_identity(&self) -> bool {
        self.options & 2 != 0
    }
}

/// `M`: a message written with `pg_logical_emit_message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalMessage {
    pub stream_xid: Option<Xid>,
    /// Bit 0: transactional (sent between Begin and Commit, dropped on abort).
    pub flags: u8,
    /// End of the message's WAL record.
    pub lsn: Lsn,
    pub prefix: String,
    /// Raw bytes, not converted to the client encoding.
    pub content: Bytes,
}

impl LogicalMessage {
    pub const fn is_transactional(&self) -> bool {
        self.flags & 1 != 0
    }
}

/// `S`: a chunk of an in-progress transaction follows, until Stream Stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamStart {
    pub xid: Xid,
    /// First chunk sent for this transaction.
    pub first_segment: bool,
}

/// `c`: a streamed transaction committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamCommit {
    pub xid: Xid,
    pub flags: u8,
    pub commit_lsn: Lsn,
    pub end_lsn: Lsn,
    pub commit_time: PgTimestamp,
}

/// `A`: a streamed (sub)transaction aborted; discard what was streamed for `subxid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamAbort {
    pub xid: Xid,
    /// Equals `xid` when the whole top-level transaction aborted.
    pub subxid: Xid,
    /// Only with protocol v4 and `streaming = parallel`.
    pub abort: Option<AbortPosition>,
}

/// Where and when a streamed transaction aborted (protocol v4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortPosition {
    pub lsn: Lsn,
    pub time: PgTimestamp,
}

/// `b`: a transaction being prepared (two-phase) follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeginPrepare {
    pub prepare_lsn: Lsn,
    pub end_lsn: Lsn,
    pub prepare_time: PgTimestamp,
    pub xid: Xid,
    pub gid: String,
}

/// `P` (after Begin Prepare) or `p` (Stream Prepare): the transaction was prepared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepare {
    pub flags: u8,
    pub prepare_lsn: Lsn,
    pub end_lsn: Lsn,
    pub prepare_time: PgTimestamp,
    pub xid: Xid,
    pub gid: String,
}

/// `K`: a prepared transaction committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitPrepared {
    pub flags: u8,
    pub commit_lsn: Lsn,
    pub end_lsn: Lsn,
    pub commit_time: PgTimestamp,
    pub xid: Xid,
    pub gid: String,
}

/// `r`: a prepared transaction was rolled back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackPrepared {
    pub flags: u8,
    pub prepare_end_lsn: Lsn,
    pub rollback_end_lsn: Lsn,
    pub prepare_time: PgTimestamp,
    pub rollback_time: PgTimestamp,
    pub xid: Xid,
    pub gid: String,
}

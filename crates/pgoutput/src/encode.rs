//! The inverse of [`decode_with`](crate::decode_with): exact pgoutput wire bytes for any
//! [`Message`], for tests, benchmarks and fuzzing (feature `encode`).
//!
//! `decode_with(&encode(m), DecodeContext { in_stream: <m has a stream_xid> }) == m` for every
//! message whose strings contain no NUL byte. Panics only on values the protocol cannot carry
//! (more than 65,535 columns, a value longer than `i32::MAX` bytes).

use bytes::{BufMut, Bytes, BytesMut};

use crate::message::*;
use crate::tuple::{TupleData, TupleValue};

pub fn encode(message: &Message) -> Bytes {
    let mut buf = BytesMut::new();
    encode_into(message, &mut buf);
    buf.freeze()
}

pub fn encode_into(message: &Message, buf: &mut BytesMut) {
    buf.put_u8(message.kind().tag());
    match message {
        Message::Begin(m) => {
            buf.put_u64(m.final_lsn.as_u64());
            buf.put_i64(m.commit_time.pg_micros());
            buf.put_u32(m.xid);
        }
        Message::Commit(m) => {
            buf.put_u8(m.flags);
            buf.put_u64(m.commit_lsn.as_u64());
            buf.put_u64(m.end_lsn.as_u64());
            buf.put_i64(m.commit_time.pg_micros());
        }
        Message::Origin(m) => {
            buf.put_u64(m.commit_lsn.as_u64());
            put_string(buf, &m.name);
        }
        Message::Relation(m) => {
            put_stream_xid(buf, m.stream_xid);
            buf.put_u32(m.oid);
            put_string(buf, &m.namespace);
            put_string(buf, &m.name);
            buf.put_u8(m.replica_identity.as_byte());
            buf.put_u16(u16::try_from(m.columns.len()).expect("at most 65535 columns"));
            for c in &m.columns {
                buf.put_u8(c.flags);
                put_string(buf, &c.name);
                buf.put_u32(c.type_oid);
                buf.put_i32(c.type_modifier);
            }
        }
        Message::Type(m) => {
            put_stream_xid(buf, m.stream_xid);
            buf.put_u32(m.oid);
            put_string(buf, &m.namespace);
            put_string(buf, &m.name);
        }
        Message::Insert(m) => {
            put_stream_xid(buf, m.stream_xid);
            buf.put_u32(m.relation_oid);
            buf.put_u8(b'N');
            put_tuple(buf, &m.new);
        }
        Message::Update(m) => {
            put_stream_xid(buf, m.stream_xid);
            buf.put_u32(m.relation_oid);
            if let Some(old) = &m.old {
                put_old_row(buf, old);
            }
            buf.put_u8(b'N');
            put_tuple(buf, &m.new);
        }
        Message::Delete(m) => {
            put_stream_xid(buf, m.stream_xid);
            buf.put_u32(m.relation_oid);
            put_old_row(buf, &m.old);
        }
        Message::Truncate(m) => {
            put_stream_xid(buf, m.stream_xid);
            buf.put_i32(i32::try_from(m.relation_oids.len()).expect("relation count fits Int32"));
            buf.put_u8(m.options);
            for oid in &m.relation_oids {
                buf.put_u32(*oid);
            }
        }
        Message::LogicalMessage(m) => {
            put_stream_xid(buf, m.stream_xid);
            buf.put_u8(m.flags);
            buf.put_u64(m.lsn.as_u64());
            put_string(buf, &m.prefix);
            put_len(buf, m.content.len());
            buf.put_slice(&m.content);
        }
        Message::StreamStart(m) => {
            buf.put_u32(m.xid);
            buf.put_u8(u8::from(m.first_segment));
        }
        Message::StreamStop => {}
        Message::StreamCommit(m) => {
            buf.put_u32(m.xid);
            buf.put_u8(m.flags);
            buf.put_u64(m.commit_lsn.as_u64());
            buf.put_u64(m.end_lsn.as_u64());
            buf.put_i64(m.commit_time.pg_micros());
        }
        Message::StreamAbort(m) => {
            buf.put_u32(m.xid);
            buf.put_u32(m.subxid);
            if let Some(abort) = m.abort {
                buf.put_u64(abort.lsn.as_u64());
                buf.put_i64(abort.time.pg_micros());
            }
        }
        Message::BeginPrepare(m) => {
            buf.put_u64(m.prepare_lsn.as_u64());
            buf.put_u64(m.end_lsn.as_u64());
            buf.put_i64(m.prepare_time.pg_micros());
            buf.put_u32(m.xid);
            put_string(buf, &m.gid);
        }
        Message::Prepare(m) | Message::StreamPrepare(m) => {
            buf.put_u8(m.flags);
            buf.put_u64(m.prepare_lsn.as_u64());
            buf.put_u64(m.end_lsn.as_u64());
            buf.put_i64(m.prepare_time.pg_micros());
            buf.put_u32(m.xid);
            put_string(buf, &m.gid);
        }
        Message::CommitPrepared(m) => {
            buf.put_u8(m.flags);
            buf.put_u64(m.commit_lsn.as_u64());
            buf.put_u64(m.end_lsn.as_u64());
            buf.put_i64(m.commit_time.pg_micros());
            buf.put_u32(m.xid);
            put_string(buf, &m.gid);
        }
        Message::RollbackPrepared(m) => {
            buf.put_u8(m.flags);
            buf.put_u64(m.prepare_end_lsn.as_u64());
            buf.put_u64(m.rollback_end_lsn.as_u64());
            buf.put_i64(m.prepare_time.pg_micros());
            buf.put_i64(m.rollback_time.pg_micros());
            buf.put_u32(m.xid);
            put_string(buf, &m.gid);
        }
    }
}

fn put_stream_xid(buf: &mut BytesMut, xid: Option<u32>) {
    if let Some(xid) = xid {
        buf.put_u32(xid);
    }
}

fn put_string(buf: &mut BytesMut, s: &str) {
    buf.put_slice(s.as_bytes());
    buf.put_u8(0);
}

fn put_len(buf: &mut BytesMut, len: usize) {
    buf.put_i32(i32::try_from(len).expect("value length fits Int32"));
}

fn put_old_row(buf: &mut BytesMut, old: &OldRow) {
    let (marker, tuple) = match old {
        OldRow::Key(t) => (b'K', t),
        OldRow::Full(t) => (b'O', t),
    };
    buf.put_u8(marker);
    put_tuple(buf, tuple);
}

fn put_tuple(buf: &mut BytesMut, tuple: &TupleData) {
    buf.put_u16(u16::try_from(tuple.len()).expect("at most 65535 columns"));
    for value in tuple {
        match value {
            TupleValue::Null => buf.put_u8(TupleValue::NULL),
            TupleValue::UnchangedToast => buf.put_u8(TupleValue::UNCHANGED_TOAST),
            TupleValue::Text(b) => {
                buf.put_u8(TupleValue::TEXT);
                put_len(buf, b.len());
                buf.put_slice(b);
            }
            TupleValue::Binary(b) => {
                buf.put_u8(TupleValue::BINARY);
                put_len(buf, b.len());
                buf.put_slice(b);
            }
        }
    }
}
